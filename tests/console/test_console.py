"""The supervisor console: served by the router, authenticated like the API, and live in a
real browser (headless Chromium) while a simulation runs against the real service."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time

import pytest

from tests.conftest import Infrastructure
from tests.console.chromium import ARTIFACTS, ROOT, chromium_page
from tests.simulate.demo import ADMIN, demo_service, options
from tests.support import wait_until
from tools.simulate import simulate

pytestmark = pytest.mark.integration

DOCS_PICTURE = ROOT / "docs" / "console.png"
"""Refreshed from the browser test when ``SWITCHBOARD_CONSOLE_DOCS`` is set."""
SECONDS = float(os.environ.get("SWITCHBOARD_CONSOLE_SECONDS", "8"))
"""How long the simulation behind the browser test runs (longer for the README picture)."""


async def test_the_console_page_and_its_assets_are_served(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with demo_service(infrastructure, database_url) as service:
        http = service.session
        async with http.get(service.url("/console")) as r:
            assert r.status == 200
            assert "<canvas" in await r.text()
        for name, kind in (("console.js", "javascript"), ("console.css", "text/css")):
            async with http.get(service.url(f"/console/{name}")) as r:
                assert r.status == 200
                assert kind in r.headers["Content-Type"]
        async with http.get(service.url("/console/__init__.py")) as r:
            assert r.status == 404


async def test_the_agents_listing_needs_an_admin_token(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with demo_service(infrastructure, database_url) as service:
        http = service.session
        url = service.url("/v1/domains/demo/console/agents")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with http.get(url) as r:
            assert r.status == 401
            assert "error" in await r.json()
        async with http.put(
            service.url("/v1/domains/demo/agents/ann"),
            json={"name": "Ann", "capacity": {"webchat": 2}},
            headers=admin,
        ) as r:
            assert r.status == 202

        async def listed() -> list[dict[str, object]]:
            async with http.get(url, headers=admin) as r:
                assert r.status == 200
                body = await r.json()
                return list(body["agents"])

        agents = await wait_until(listed, what="ann listed")
        assert agents == [
            {
                "agent_id": "ann",
                "name": "Ann",
                "presence": "offline",
                "capacity": {"webchat": 2},
                "load": {},
            }
        ]
        async with http.get(service.url("/v1/domains/nowhere/console/agents"), headers=admin) as r:
            assert r.status == 404


def _number(text: str) -> int:
    return int(text.strip()) if text.strip().isdigit() else 0


async def test_the_console_follows_a_running_simulation_in_a_browser(
    infrastructure: Infrastructure, database_url: str
) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    async with (
        demo_service(infrastructure, database_url) as service,
        chromium_page("console", viewport={"width": 1440, "height": 900}) as browsed,
    ):
        page, errors = browsed.page, browsed.errors
        await page.goto(service.url("/console"))
        await page.fill("#domain", "demo")
        await page.fill("#token", ADMIN)
        await page.click("button[type=submit]")
        await page.wait_for_function(
            "document.getElementById('status').textContent === 'live'", timeout=10_000
        )
        speed = min(3000.0, 18_000 / SECONDS)  # at most 5 simulated hours: shifts overlap
        started = time.monotonic()
        run = asyncio.create_task(
            simulate(
                options(service, duration=SECONDS, rate=15.0, speed=speed, agents=8, customers=40)
            )
        )
        try:
            await page.wait_for_function(
                "Number(document.getElementById('messages').textContent) > 0",
                timeout=15_000,
            )
            first = _number(await page.inner_text("#messages"))
            await page.wait_for_function(
                f"Number(document.getElementById('messages').textContent) > {first}",
                timeout=15_000,
            )
            await page.wait_for_function(
                "document.querySelectorAll('#agents tbody tr').length > 0"
                " && document.querySelectorAll('#queues tbody tr').length > 0",
                timeout=15_000,
            )
            # A picture of the floor while it is busy, then the final figures.
            await asyncio.sleep(max(0.0, started + 0.8 * SECONDS - time.monotonic()))
            live = ARTIFACTS / "console-live.png"
            await page.screenshot(path=str(live), full_page=True)
            if os.environ.get("SWITCHBOARD_CONSOLE_DOCS"):
                shutil.copy(live, DOCS_PICTURE)
            summary = await run
        finally:
            if not run.done():
                run.cancel()
        # The page and the simulation follow the same stream from before the first
        # event to after the last (the simulation drains the router's deadlines), so
        # their counts agree; but the page redraws its figures once a second, so wait
        # for the redraw showing the last events before reading them.
        final = {"messages": summary.messages_routed, "assigned": summary.assignments}
        with contextlib.suppress(PlaywrightTimeoutError):
            await page.wait_for_function(
                "final => Object.entries(final).every("
                "([id, count]) => Number(document.getElementById(id).textContent) === count)",
                arg=final,
                timeout=10_000,
            )
        shown = {figure: _number(await page.inner_text(f"#{figure}")) for figure in final}
        assert shown == final
        assert "%" in await page.inner_text("#hit-ratio")
        assert await page.inner_text("#queues tbody tr td") == "support"
        assert await page.evaluate("sessionStorage.getItem('switchboard.token')") == ADMIN
        assert errors == []
        await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
