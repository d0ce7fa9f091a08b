"""Workforce planning through the running service: the measured workload, its forecast,
staffing what-ifs and searches as jobs with progress, and the workload back-fill."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import web

from router.api.planning import chart, forecast_window
from router.api.planning_jobs import RUNNING_MAX, PlanningJobs, Report
from router.api.planning_models import HISTORY_WEEKS_MAX
from runtime.workload import FIGURES_MAX_SPAN
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.integration.workload_history import History, at
from tests.planning_workload import HOLDING, known_rate_wape, seed_workload
from tests.support import wait_until

pytestmark = pytest.mark.timeout(300)


async def finished_job(api: Api, job: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/domains/acme/planning/jobs/{job['job_id']}"

    async def finished() -> dict[str, Any] | None:
        status, body = await api.call("GET", path)
        assert status == 200, body
        return body if body["status"] != "running" else None

    body: dict[str, Any] = await wait_until(finished, timeout=120, what="the planning job finishes")
    return body


async def test_forecast_and_staffing_search_from_the_measured_workload(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        end = now - timedelta(hours=3)  # older than what the routers re-measure
        drawn = await seed_workload(api.pool, end)

        status, page = await api.call(
            "GET",
            "/v1/domains/acme/workload",
            params={
                "since": str((end - timedelta(hours=24)).timestamp()),
                "until": str(end.timestamp()),
            },
        )
        assert status == 200, page
        assert len(page["intervals"]) == 24
        assert [i["arrivals"] for i in page["intervals"]] == [
            drawn[int((end - timedelta(hours=24 - n)).timestamp())] for n in range(24)
        ]

        status, view = await api.call("GET", "/v1/domains/acme/forecast", params={"days": "2"})
        assert status == 200, view
        (stream,) = view["streams"]
        assert (stream["queue"], stream["channel"], stream["model"]) == (
            "default",
            "webchat",
            "weekly",
        )
        assert len(stream["actual"]) == 7 * 24
        assert len(stream["forecast"]) == 9 * 24
        backtest = stream["backtest"]
        # Poisson noise around a forecastable profile: near the best forecast of those hours.
        best = known_rate_wape(drawn, backtest["held_out_start"], backtest["held_out_end"])
        assert backtest["wape"] < 1.25 * best, (backtest, best)
        # the workload: seconds of active work per interval, measured and forecast
        assert len(stream["handling_actual"]) == 7 * 24
        assert len(stream["handling_forecast"]) == 9 * 24
        assert sum(stream["handling_actual"]) > 0
        handling = stream["handling_backtest"]
        best_handling = known_rate_wape(
            drawn, handling["held_out_start"], handling["held_out_end"], served=True
        )
        assert handling["wape"] < 1.25 * best_handling, (handling, best_handling)
        assert view["time_zone"] == "UTC"

        # the next weekday from midnight (UTC, the domain's zone): hour i of the roster is i
        # o'clock. Not a Sunday: the known workload is quiet all that day (``hourly_rate``),
        # and one agent covers its afternoon as well as its night.
        day = (now + timedelta(days=1)).replace(hour=0)
        if day.weekday() == 6:
            day += timedelta(days=1)
        request: dict[str, Any] = {
            "start": day.timestamp(),
            "days": 1,
            "groups": [{"name": "chat", "queues": ["default"], "capacity": {"webchat": 3}}],
            "search": "chat",
            "target": {"within_seconds": 60, "share": 0.8},
        }
        status, job = await api.call("POST", "/v1/domains/acme/staffing", json=request)
        assert (status, job["status"], job["kind"]) == (202, "running", "staffing"), job
        done = await finished_job(api, job)
        assert done["status"] == "completed", done
        assert done["done"] == done["total"] == 48
        result = done["result"]
        staffed = result["staffed"]["chat"]
        assert len(staffed) == 24
        assert result["infeasible"] == []
        assert all(interval["met"] for interval in result["report"]["intervals"])
        # the afternoon peak needs more people than the night
        assert max(staffed[12:17]) > max(staffed[0:5])
        stream = result["demand"]["streams"][0]
        assert stream["holding_seconds"] == HOLDING
        assert stream["patience_seconds"] == 40.0
        erlang = result["erlang"]
        assert [row["scheduled"] for row in erlang] == staffed
        assert all(row["erlang_c_agents"] is not None for row in erlang)
        assert result["simulated_seconds_per_second"] > 50

        # the same roster, simulated as given: the same figures
        request = {**request, "search": None}
        request["groups"] = [{**request["groups"][0], "staffed": staffed}]
        status, job = await api.call("POST", "/v1/domains/acme/staffing", json=request)
        assert status == 202, job
        replay = await finished_job(api, job)
        assert replay["result"]["report"] == result["report"]

        # a roster of shifts in local time (the domain's: UTC here)
        shifts = [
            {"start": "08:00", "end": "20:00", "agents": 3},
            {"start": "20:00", "end": "08:00", "agents": 1},
        ]
        request["groups"] = [{**request["groups"][0], "staffed": [], "shifts": shifts}]
        status, job = await api.call("POST", "/v1/domains/acme/staffing", json=request)
        assert status == 202, job
        shifted = await finished_job(api, job)
        expected = [3 if 8 <= (day + timedelta(hours=h)).hour < 20 else 1 for h in range(24)]
        assert shifted["result"]["staffed"]["chat"] == expected


async def test_planning_refuses_what_it_cannot_do_with_a_reason(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        group = {"name": "chat", "capacity": {"webchat": 3}}
        path = "/v1/domains/acme/staffing"
        status, body = await api.call("POST", path, "ann", json={"groups": [group]})
        assert status == 403, body
        both = {
            **group,
            "staffed": [1],
            "shifts": [{"start": "09:00", "end": "17:00", "agents": 1}],
        }
        status, body = await api.call("POST", path, json={"groups": [both]})
        assert (status, body["error"]) == (400, "group chat: give staffed or shifts, not both")
        status, body = await api.call("POST", path, json={"groups": [group], "search": "nobody"})
        assert (status, body["error"]) == (400, "search names no group: 'nobody'")
        status, body = await api.call("POST", path, json={"groups": [{**group, "staffed": [1, 2]}]})
        assert status == 400
        assert "give 1 or 24 staffing figures" in body["error"]
        status, body = await api.call(
            "POST", path, json={"groups": [group], "time_zone": "Mars/Base"}
        )
        assert status == 400
        status, body = await api.call(
            "POST", path, json={"groups": [group], "search": "chat", "source": "recorded"}
        )
        assert (status, body["error"]) == (400, "a recorded run needs start")
        status, body = await api.call(
            "POST", path, json={"groups": [group], "search": "chat", "days": 99}
        )
        assert status == 400
        status, body = await api.call("POST", path, json={"groups": [group], "search": "chat"})
        assert status == 422, body  # nothing measured yet
        status, body = await api.call("GET", "/v1/domains/acme/workload", params={"interval": "60"})
        assert status == 400
        status, body = await api.call("GET", "/v1/domains/acme/planning/jobs/nope")
        assert status == 404


async def test_a_job_whose_process_ended_reads_as_interrupted(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        await api.pool.execute(
            "INSERT INTO planning_jobs (domain, job_id, kind, status, request, created_by,"
            " heartbeat_at) VALUES ('acme', 'j1', 'staffing', 'running', '{}', 'test',"
            " now() - interval '5 minutes')"
        )
        status, job = await api.call("GET", "/v1/domains/acme/planning/jobs/j1")
        assert (status, job["status"]) == (200, "interrupted")
        status, _ = await api.call("GET", "/v1/domains/globex/planning/jobs/j1", "globex")
        assert status == 404


async def test_times_at_the_end_of_9999_are_answered_not_500(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """The latest times the API accepts: an interval or a day after them is past what
    ``datetime`` holds (``runtime.workload.MEASURED_UNTIL``)."""
    since, until = 253_402_300_000, 253_402_300_799
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        status, page = await api.call(
            "GET", "/v1/domains/acme/workload", params={"since": since, "until": until}
        )
        assert status == 200, page
        body = {"since": since, "until": until}
        status, job = await api.call("POST", "/v1/domains/acme/workload/backfill", json=body)
        assert status == 202, job
        done = await finished_job(api, job)
        assert done["status"] == "completed", done


async def test_the_backfill_measures_recorded_history_as_a_job(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        history = History(api.pool)
        await history.conversation(
            "c1", at("09:00"), channel="webchat", queue="default", closed=at("09:50")
        )
        body = {"since": at("00:00").timestamp(), "until": at("00:00", day=6).timestamp()}
        status, job = await api.call("POST", "/v1/domains/acme/workload/backfill", json=body)
        assert (status, job["kind"]) == (202, "backfill"), job
        done = await finished_job(api, job)
        assert done["status"] == "completed", done
        assert (done["done"], done["total"], done["result"]["days"]) == (2, 2, 2)
        arrivals = await api.pool.fetchval(
            "SELECT sum(arrivals) FROM workload_intervals WHERE domain = 'acme'"
        )
        assert arrivals == 1


async def test_starts_at_once_are_held_to_the_running_bound(database_url: str) -> None:
    """Each start checks the bound, then awaits the database: starts at the same moment
    all passed the check (six ran with a bound of two). The bound counts them."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    jobs = PlanningJobs()
    release = asyncio.Event()

    async def work(report: Report) -> bytes:
        await release.wait()
        return b"{}"

    async def start() -> int:
        request = msgspec.Struct()
        try:
            await jobs.start(pool, "acme", "staffing", "test", request, work)
        except web.HTTPTooManyRequests:
            return 429
        return 202

    try:
        answers = await asyncio.gather(*(start() for _ in range(6)))
        assert sorted(answers) == [202] * RUNNING_MAX + [429] * (6 - RUNNING_MAX)
        assert len(jobs.tasks) == RUNNING_MAX
    finally:
        release.set()
        await jobs.stop()
        await pool.execute("DELETE FROM planning_jobs WHERE domain = 'acme'")
        await pool.close()


def test_the_longest_forecast_history_is_one_read() -> None:
    """52 weeks of history and the week charted: the read is held to what one read takes
    (``FIGURES_MAX_SPAN``), the history's start moved up, the chart's kept."""
    now = int(datetime(2026, 12, 7, tzinfo=UTC).timestamp())
    chart_start, history_start = forecast_window(now, HISTORY_WEEKS_MAX)
    assert chart_start == now - 7 * 86400
    assert datetime.fromtimestamp(now, UTC) - history_start == FIGURES_MAX_SPAN
    _, short = forecast_window(now, 8)
    assert datetime.fromtimestamp(chart_start, UTC) - short == timedelta(weeks=8)


def test_the_coming_days_are_forecast_from_the_week_just_measured_too() -> None:
    """Eight weeks at 10 an hour, then a week at 20: the week charted is fitted on the
    weeks before it (10), the coming days on every week (above 10, as a staffing run and
    ``switchboard forecast`` see them; they were 10, fitted a week ago)."""
    hour, start = 3600, 9 * 7 * 24 * 3600
    series = {at: 10.0 for at in range(0, start - 7 * 24 * hour, hour)}
    series |= {at: 20.0 for at in range(start - 7 * 24 * hour, start, hour)}
    week = 7 * 24
    charted = chart(series, start - week * hour, week, 24, hour, "UTC")
    assert sum(charted.forecast[:week]) / week == pytest.approx(10.0, abs=0.5)
    assert sum(charted.forecast[week:]) / 24 > 12.0
