"""The console's planning page (``GET /console/planning``): served by the router with its
assets only, and a supervisor's forecast and staffing search in a real browser (headless
Chromium) against the real service, each figure checked against the planning API's."""

from __future__ import annotations

import math
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from router.console import FILES, STATIC
from tests.api.support import api_service
from tests.conftest import Infrastructure
from tests.console.chromium import ARTIFACTS, ROOT, chromium_page
from tests.planning_workload import seed_workload

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ACME = "/v1/domains/acme"
ASSETS = ("console.css", "planning.css", "figures.js", "planning.js")
DOCS_PICTURE = ROOT / "docs" / "planning.png"
"""Refreshed from the browser test when ``SWITCHBOARD_CONSOLE_DOCS`` is set."""
ACTUAL, FORECAST = (0x5A, 0xA9, 0xF5), (0xF0, 0xB4, 0x29)
"""The forecast chart's colours of the measured arrivals and of the forecast (planning.js)."""
COLOURED_PIXELS = """([canvas, colours]) => {
  const ratio = window.devicePixelRatio || 1;
  // The plot area: inside the axis labels and below the legend.
  const x = Math.round(40 * ratio), y = Math.round(26 * ratio);
  const data = canvas.getContext("2d")
    .getImageData(x, y, canvas.width - x - Math.round(8 * ratio), canvas.height - y - Math.round(18 * ratio)).data;
  const counts = colours.map(() => 0);
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] < 128) continue;
    colours.forEach(([r, g, b], n) => {
      if (Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 60) counts[n]++;
    });
  }
  return counts;
}"""
"""Opaque pixels of each colour in a canvas's plot area."""
WAIT_MS = 15_000


async def test_the_planning_page_and_its_assets_are_served_with_a_strict_policy(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        http = api.service.session
        async with http.get(api.service.url("/console/planning")) as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            policy = r.headers["Content-Security-Policy"]
            for directive in (
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
            ):
                assert directive in policy
            page = await r.text()
        # Everything the page loads is one of the router's own assets: no CDN, no inline code.
        loaded = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert sorted(loaded) == sorted(
            ["/console", "/console/planning", *(f"/console/{a}" for a in ASSETS)]
        )
        assert "<script>" not in page
        assert " style=" not in page
        for name in ASSETS:
            assert name in FILES
            async with http.get(api.service.url(f"/console/{name}")) as r:
                assert r.status == 200
                kind = "javascript" if name.endswith(".js") else "text/css"
                assert kind in r.headers["Content-Type"]
        for name in ("planning.html", "planning.jsx", "chart.js"):
            async with http.get(api.service.url(f"/console/{name}")) as r:
                assert r.status == 404, name
        async with http.get(api.service.url("/console")) as r:
            assert 'href="/console/planning"' in await r.text()
            assert "/console/figures.js" in await r.text()
    # What the API answers only ever goes in as text, and the files stay readable.
    for name in ("planning.html", *ASSETS):
        source = (STATIC / name).read_text()
        assert "innerHTML" not in source
        assert "insertAdjacentHTML" not in source
        assert len(source.splitlines()) < 800, name


def percent(share: float | None) -> str:
    """A share as the page shows it (JavaScript's ``Math.round`` rounds halves up)."""
    return "–" if share is None else f"{math.floor(share * 100 + 0.5)}%"


def _shown_start(epoch: float) -> str:
    """An interval's start as the page shows it in the domain's zone (UTC here)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%a %d/%m %H:%M")


async def test_a_supervisor_finds_the_required_agents_in_a_browser(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with (
        api_service(infrastructure.bootstrap_servers, database_url) as api,
        chromium_page("planning", viewport={"width": 1440, "height": 1000}) as browsed,
    ):
        page = browsed.page
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        refused: list[str] = []
        page.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        await seed_workload(api.pool, now - timedelta(hours=3))  # older than routers re-measure
        status, view = await api.call("GET", f"{ACME}/forecast", params={"days": "7"})
        assert status == 200, view
        (stream,) = view["streams"]

        await page.goto(api.service.url("/console/planning"))
        await page.fill("#domain", "acme")
        await page.fill("#token", api.tokens["admin"])
        await page.click("#login button[type=submit]")
        await page.wait_for_function(
            "() => document.getElementById('chart-forecast').dataset.intervals !== undefined",
            timeout=WAIT_MS,
        )
        assert await page.inner_text("#status") == "signed in: acme"
        assert await page.get_attribute("#chart-forecast", "data-intervals") == str(
            len(stream["forecast"])
        )
        assert len(stream["forecast"]) == 14 * 24
        actual, forecast = await page.evaluate(
            COLOURED_PIXELS, [await page.query_selector("#chart-forecast"), [ACTUAL, FORECAST]]
        )
        assert actual > 500, actual  # a line across the past week
        assert forecast > 1000, forecast  # a line across the past week and the next
        backtest = await page.inner_text("#backtest li")
        assert f"WAPE {percent(stream['backtest']['wape'])}" in backtest, backtest
        assert await page.eval_on_selector_all(
            "#queue option, #channel option", "options => options.map(o => o.value)"
        ) == ["", "default", "", "webchat"]
        assert await page.eval_on_selector_all(
            "#capacity input", "inputs => inputs.map(i => i.dataset.channel)"
        ) == ["webchat"]

        await page.click("#find")
        await page.wait_for_function(
            "() => document.getElementById('job').dataset.status === 'completed'", timeout=120_000
        )
        job_id = await page.get_attribute("#job", "data-job-id")
        status, job = await api.call("GET", f"{ACME}/planning/jobs/{job_id}")
        assert (status, job["status"]) == (200, "completed"), job
        progress = await page.evaluate(
            "(() => { const p = document.getElementById('job-progress'); return [p.value, p.max]; })()"
        )
        assert progress == [job["done"], job["total"]] == [48, 48]
        assert await page.inner_text("#job-status") == "completed: 48 / 48 steps"

        result: dict[str, Any] = job["result"]
        required = result["staffed"]["agents"]
        outcomes = result["report"]["intervals"]
        assert len(required) == len(outcomes) == 24
        rows = await page.eval_on_selector_all(
            "#intervals tbody tr",
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))",
        )
        assert len(rows) == len(outcomes)
        assert [row[2] for row in rows] == [str(n) for n in required]
        assert [row[0] for row in rows] == [_shown_start(o["start"]) for o in outcomes]
        assert [row[1] for row in rows] == [str(o["arrivals"]) for o in outcomes]
        assert [row[7] for row in rows] == [
            "–" if e["erlang_c_agents"] is None else str(e["erlang_c_agents"])
            for e in result["erlang"]
        ]
        assert await page.get_attribute("#chart-agents", "data-intervals") == "24"
        (required_pixels,) = await page.evaluate(
            COLOURED_PIXELS, [await page.query_selector("#chart-agents"), [(0x4C, 0xC3, 0x8A)]]
        )
        assert required_pixels > 500, required_pixels

        # A roster as given: a wrong count of figures is refused with the API's reason ...
        await page.fill("#staffed", "1,2")
        await page.click("#simulate")
        await page.wait_for_selector("#notice:not([hidden])", timeout=WAIT_MS)
        assert (
            await page.inner_text("#notice") == "group agents: give 1 or 24 staffing figures, not 2"
        )
        # ... and two agents all day are simulated beside what the search required.
        await page.fill("#staffed", "2")
        await page.click("#simulate")
        await page.wait_for_function(
            "first => document.getElementById('job').dataset.jobId !== first"
            " && document.getElementById('job').dataset.status === 'completed'",
            arg=job_id,
            timeout=120_000,
        )
        assert await page.is_hidden("#notice")
        status, job = await api.call(
            "GET", f"{ACME}/planning/jobs/{await page.get_attribute('#job', 'data-job-id')}"
        )
        assert (status, job["result"]["staffed"], job["result"]["searched"]) == (
            200,
            {"agents": [2] * 24},
            None,
        ), job
        rows = await page.eval_on_selector_all(
            "#intervals tbody tr",
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))",
        )
        assert [row[2] for row in rows] == ["2"] * 24
        assert [row[3] for row in rows] == [
            percent(o["service_level"]) for o in job["result"]["report"]["intervals"]
        ]
        scheduled, required_pixels = await page.evaluate(
            COLOURED_PIXELS,
            [await page.query_selector("#chart-agents"), [ACTUAL, (0x4C, 0xC3, 0x8A)]],
        )
        assert scheduled > 500, scheduled  # the scheduled roster's line (blue)
        assert required_pixels > 300, required_pixels  # the search's still shown beside it
        assert browsed.errors == []
        # Nothing else the page asked for was refused (a browser asks for a favicon itself),
        # and nothing broke the page's Content-Security-Policy.
        assert [url for url in refused if not url.endswith("/favicon.ico")] == [
            api.service.url(f"{ACME}/staffing")  # the wrong count of figures
        ]
        assert [text for text in console_errors if "Content Security Policy" in text] == []
        picture = ARTIFACTS / "planning.png"
        await page.screenshot(path=str(picture), full_page=True)
        if os.environ.get("SWITCHBOARD_CONSOLE_DOCS"):
            shutil.copy(picture, DOCS_PICTURE)
