"""``switchboard forecast`` and ``switchboard staffing`` against a database holding five
weeks of measured web chat workload (the known process of ``tests.planning_workload``)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest

from router.api.planning_models import StaffingIn
from tests.planning_workload import HOLDING, WORK, seed_workload
from tests.readme.shell import BIN

pytestmark = pytest.mark.timeout(240)


def switchboard(environ: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "switchboard"), *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def seeded(database_url: str) -> datetime:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        await seed_workload(pool, end)
        return end
    finally:
        await pool.close()


async def test_forecast_prints_the_models_error_and_the_coming_days(
    cli_environ: dict[str, str], database_url: str
) -> None:
    await seeded(database_url)
    run = await asyncio.to_thread(
        switchboard, cli_environ, "forecast", "--domain", "acme", "--days", "2"
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("default/webchat: weekly model; arrivals last week held out: MAPE ")
    assert "; workload last week held out: MAPE " in lines[0]
    assert lines[2].split() == ["default/webchat"]
    assert lines[3].split() == ["interval", "(UTC)", "arrivals", "working"]
    rows = lines[4:]
    assert len(rows) == 48
    arrivals = [float(row.split()[-2]) for row in rows]
    working = [float(row.split()[-1]) for row in rows]
    assert max(arrivals) > 4 * min(arrivals)  # the afternoon peaks stand out from the night
    # 150 s of work per conversation served, 9 in 10 served: working = arrivals x 0.9 x 150 / 3600
    peak = arrivals.index(max(arrivals))
    assert working[peak] == pytest.approx(arrivals[peak] * 0.9 * WORK / 3600, rel=0.2)

    as_json = await asyncio.to_thread(
        switchboard, cli_environ, "forecast", "--domain", "acme", "--days", "1", "--json"
    )
    (stream,) = json.loads(as_json.stdout)["streams"]
    assert len(stream["forecast"]) == len(stream["handling_forecast"]) == 24
    assert stream["backtest"]["wape"] < 0.35


async def test_staffing_searches_a_roster_with_progress_and_prints_it(
    cli_environ: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    await seeded(database_url)
    roster = tmp_path / "roster.toml"
    roster.write_text(
        'search = "chat"\n\n[target]\nwithin_seconds = 60\nshare = 0.8\n\n'
        '[[groups]]\nname = "chat"\nqueues = ["default"]\ncapacity = { webchat = 3 }\n'
    )
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    run = await asyncio.to_thread(
        switchboard, cli_environ, "staffing", "--domain", "acme", "--roster", str(roster),
        "--from", tomorrow,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    progress = run.stderr.splitlines()
    assert progress[-1] == "acme search: 48/48 steps"
    assert len(progress) == 48
    table = run.stdout.splitlines()
    assert table[0].split()[:4] == ["interval", "(UTC)", "arrivals", "agents"]
    hours = table[1:25]
    assert len(hours) == 24
    assert all("missed" not in hour for hour in hours)
    assert "(24/24 intervals met)" in table[25]
    assert table[-1].endswith("simulated seconds per second")

    as_json = await asyncio.to_thread(
        switchboard, cli_environ, "staffing", "--domain", "acme", "--roster", str(roster),
        "--from", tomorrow, "--json",
    )  # fmt: skip
    result = json.loads(as_json.stdout)
    staffed = result["staffed"]["chat"]
    assert [int(hour.split()[4]) for hour in hours] == staffed
    assert result["demand"]["streams"][0]["holding_seconds"] == HOLDING


async def test_staffing_refuses_a_broken_roster_with_a_reason(
    cli_environ: dict[str, str], tmp_path: Path
) -> None:
    roster = tmp_path / "roster.json"
    roster.write_text('{"groups": [{"name": "chat", "capacity": {"webchat": "many"}}]}')
    run = await asyncio.to_thread(
        switchboard, cli_environ, "staffing", "--domain", "acme", "--roster", str(roster)
    )
    assert run.returncode == 2
    assert "Expected `int`" in run.stderr
    run = await asyncio.to_thread(
        switchboard, cli_environ, "staffing", "--domain", "nowhere", "--roster", str(roster)
    )
    assert (run.returncode, run.stderr.strip()) == (2, "switchboard: unknown domain 'nowhere'")


def test_the_readme_roster_is_a_staffing_request() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = re.findall(r"```toml\n(# roster.toml .*?)```", readme, re.S)
    request = msgspec.convert(tomllib.loads(block), StaffingIn)
    assert request.search == "chat"
    assert [group.name for group in request.groups] == ["chat", "email-team", "evenings"]
    assert request.groups[1].staffed == (2,)
    assert [shift.agents for shift in request.groups[2].shifts] == [2, 1]
