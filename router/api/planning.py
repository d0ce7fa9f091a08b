"""Workforce planning over HTTP (admin only): the measured workload, its forecast, and
staffing what-ifs run on the routing engine in simulated time (``router.planning``).

- ``GET …/workload``: the measured figures per interval (``runtime.workload``).
- ``GET …/forecast``: arrivals and active handling seconds (the workload) per queue and
  channel; the last week measured beside what the model, fitted on the weeks before it,
  forecast for it; then the coming days.
- ``POST …/staffing``: a job (``router.api.planning_jobs``) simulating a roster against a
  forecast or recorded demand, or searching the fewest agents of one group per interval;
  its result sets the simulation's figures beside Erlang C and A.
- ``POST …/workload/backfill``: a job measuring recorded history.
- ``GET …/planning/jobs/{job_id}``: a job's progress and result.

The demand's handling figures come from the measured history (``router.planning.demand``):
``load_histories`` reads them, one query per queue and channel plus one for returning
customers; ``switchboard staffing`` and ``switchboard forecast`` read them the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
from aiohttp import web

from router.api.desktop import moment_query, query_one
from router.api.planning_jobs import (
    PLANNING_JOBS,
    JobFailed,
    Report,
    job_by_id,
)
from router.api.planning_models import (
    FORECAST_DAYS_MAX,
    HISTORY_WEEKS_MAX,
    BackfillIn,
    ForecastStream,
    ForecastView,
    StaffingIn,
    StaffingResult,
    WorkloadPage,
)
from router.api.routes import (
    API,
    bad_request,
    enter,
    guarded,
    not_found,
    path_value,
    query_int,
    read_json,
    require_admin,
    respond,
)
from router.engine import DomainPolicy, time_zone
from router.planning.compare import side_by_side
from router.planning.demand import (
    HandlingHistory,
    forecast_demand,
    recorded_demand,
)
from router.planning.forecast import Backtest, Forecast, backtest, forecast
from router.planning.search import required_staffing
from router.planning.shifts import staffed_from_shifts
from router.planning.staffing import AgentGroup, Roster, simulate, staffed_as
from runtime.appkeys import DB_POOL
from runtime.workload import FIGURES_MAX_SPAN, WAIT_LIMITS, backfill, figures, history_start
from schemas import Channel
from schemas.limits import QUEUE_MAX

WORKLOAD_SPAN_MAX = timedelta(days=31)
WEEK = timedelta(days=7)

_STREAMS = """
SELECT queue, channel, min(interval_start) AS first FROM workload_intervals
WHERE domain = $1 AND interval_start >= $2 AND interval_start < $3
  AND ($4::text[] IS NULL OR queue = ANY($4)) AND ($5::text[] IS NULL OR channel = ANY($5))
GROUP BY queue, channel
ORDER BY queue, channel
"""
_RETURNING = """
SELECT c.queue, c.channel, count(*) AS conversations,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM conversations e
           WHERE e.domain = c.domain AND e.customer_id = c.customer_id
             AND e.opened_at < c.opened_at)) AS returning
FROM conversations c
WHERE c.domain = $1 AND c.opened_at >= $2 AND c.opened_at < $3
GROUP BY 1, 2
"""


def forecast_window(now: int, weeks: int) -> tuple[int, datetime]:
    """Where the charted week starts, and where the history read for the forecast starts:
    ``weeks`` before the charted week, within what one read takes (52 weeks of history
    and the week charted are more than a year: a read of them was refused, a 500)."""
    chart_start = now - int(WEEK.total_seconds())
    history_start_at = max(
        datetime.fromtimestamp(chart_start, UTC) - weeks * WEEK,
        datetime.fromtimestamp(now, UTC) - FIGURES_MAX_SPAN,
    )
    return chart_start, history_start_at


def domain_time_zone(policy: DomainPolicy) -> str:
    """The zone a domain's seasonality follows: its first business calendar's, else UTC."""
    for name in sorted(policy.calendars):
        return policy.calendars[name].time_zone
    return "UTC"


def checked_zone(name: str) -> str:
    time_zone(name)  # ValueError: no such zone
    return name


async def load_histories(
    conn: asyncpg.Connection,
    domain: str,
    *,
    start: datetime,
    end: datetime,
    interval_seconds: int,
    queues: Sequence[str] = (),
    channels: Sequence[str] = (),
) -> list[HandlingHistory]:
    """Each measured queue and channel's arrivals per interval and handling sums over
    ``[start, end)``, from the stream's first stored interval when that is later: the hours
    before a stream was measured at all are not hours without arrivals (taken as zeros,
    they would pull its forecast down)."""
    streams = await conn.fetch(
        _STREAMS, domain, start, end, list(queues) or None, list(channels) or None
    )
    returning = {
        (row["queue"], row["channel"]): row["returning"] / row["conversations"]
        for row in await conn.fetch(_RETURNING, domain, start, end)
        if row["conversations"]
    }
    histories = []
    for stream in streams:
        queue, channel = stream["queue"], stream["channel"]
        if channel not in Channel._value2member_map_:
            continue  # a channel this version does not know: nothing to simulate it with
        rows = await figures(
            conn,
            domain,
            start=max(start, stream["first"]),
            end=end,
            interval_seconds=interval_seconds,
            queue=queue,
            channel=channel,
        )
        histories.append(
            HandlingHistory(
                queue=queue,
                channel=Channel(channel),
                arrivals={int(row.interval_start.timestamp()): float(row.arrivals) for row in rows},
                handle_seconds={
                    int(row.interval_start.timestamp()): row.active_handle_seconds for row in rows
                },
                assigned=sum(row.assigned for row in rows),
                conversation_seconds=sum(row.conversation_seconds for row in rows),
                first_reply_count=sum(row.first_reply_count for row in rows),
                first_reply_seconds_sum=sum(row.first_reply_seconds_sum for row in rows),
                abandoned=sum(row.abandoned for row in rows),
                wait_seconds_sum=sum(row.wait_seconds_sum for row in rows),
                returning_share=returning.get((queue, channel), 0.0),
            )
        )
    return histories


def _aligned(moment: float, interval_seconds: int) -> int:
    return int(moment // interval_seconds) * interval_seconds


def _policy(request: web.Request, domain: str) -> DomainPolicy:
    return request.app[API].policies[domain]


# -- workload ---------------------------------------------------------------------------


def _interval(request: web.Request) -> int:
    raw = query_one(request, "interval")
    if raw is None:
        return 3600
    if raw not in ("900", "1800", "3600"):
        raise bad_request("interval must be 900, 1800 or 3600")
    return int(raw)


def _filter(request: web.Request, name: str) -> str | None:
    value = query_one(request, name)
    if value is None:
        return None
    if name == "channel" and value not in Channel._value2member_map_:
        raise bad_request(f"channel must be one of {', '.join(c.value for c in Channel)}")
    if not 1 <= len(value) <= QUEUE_MAX or not value.isprintable():
        raise bad_request(f"{name} must be 1 to {QUEUE_MAX} printable characters")
    return value


async def get_workload(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    now = datetime.now(UTC)
    until = moment_query(request, "until") or now
    since = moment_query(request, "since") or until - timedelta(days=1)
    if not since < until or until - since > WORKLOAD_SPAN_MAX:
        raise bad_request("since must be before until, at most 31 days before")
    interval = _interval(request)
    target = query_int(request, "target", 60, 0, max(WAIT_LIMITS))
    if target not in WAIT_LIMITS:
        raise bad_request(f"target must be one of {', '.join(map(str, WAIT_LIMITS))}")
    queue, channel = _filter(request, "queue"), _filter(request, "channel")
    async with request.app[DB_POOL].acquire() as conn:
        rows = await figures(
            conn,
            domain,
            start=since,
            end=until,
            interval_seconds=interval,
            queue=queue,
            channel=channel,
            service_target=target,
        )
    return respond(
        WorkloadPage(
            domain=domain, interval_seconds=interval, queue=queue, channel=channel, intervals=rows
        )
    )


# -- forecast ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chart:
    model: str
    backtest: Backtest | None
    actual: tuple[float, ...]
    forecast: tuple[float, ...]


def chart(
    series: Mapping[int, float], start: int, past: int, ahead: int, interval: int, zone: str
) -> Chart:
    """A series' ``past`` measured intervals from ``start`` beside their forecast fitted
    on the history before them, then ``ahead`` intervals forecast from all of it, as a
    staffing run and ``switchboard forecast`` fit them (the past week included); and the
    error on the history's last week held out (None with a week or less of history)."""

    def fitted_before(first: int, intervals: int) -> Forecast:
        history = {at: value for at, value in series.items() if at < first}
        return forecast(
            history, interval_seconds=interval, tz=zone, start=first, intervals=intervals
        )

    fitted = fitted_before(start, past)
    predicted = fitted_before(start + past * interval, ahead)
    measured = None
    if series and max(series) - min(series) >= WEEK.total_seconds():
        measured = backtest(series, interval_seconds=interval, tz=zone)
    return Chart(
        model=predicted.model,
        backtest=measured,
        actual=tuple(series.get(start + i * interval, 0.0) for i in range(past)),
        forecast=tuple(round(value, 3) for value in (*fitted.values, *predicted.values)),
    )


async def get_forecast(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    interval = _interval(request)
    days = query_int(request, "days", 7, 1, FORECAST_DAYS_MAX)
    weeks = query_int(request, "history_weeks", 8, 1, HISTORY_WEEKS_MAX)
    raw_zone = query_one(request, "time_zone")
    try:
        zone = checked_zone(raw_zone or domain_time_zone(_policy(request, domain)))
    except ValueError as error:
        raise bad_request(str(error)) from None
    queue, channel = _filter(request, "queue"), _filter(request, "channel")
    now = _aligned(time.time(), interval)
    chart_start, history_start_at = forecast_window(now, weeks)
    async with request.app[DB_POOL].acquire() as conn:
        histories = await load_histories(
            conn,
            domain,
            start=history_start_at,
            end=datetime.fromtimestamp(now, UTC),
            interval_seconds=interval,
            queues=[queue] if queue else (),
            channels=[channel] if channel else (),
        )
    past = (now - chart_start) // interval
    ahead = days * 86400 // interval
    streams = []
    for history in histories:
        arrivals = chart(history.arrivals, chart_start, past, ahead, interval, zone)
        handling = chart(history.handle_seconds, chart_start, past, ahead, interval, zone)
        streams.append(
            ForecastStream(
                queue=history.queue,
                channel=history.channel,
                model=arrivals.model,
                backtest=arrivals.backtest,
                actual=arrivals.actual,
                forecast=arrivals.forecast,
                handling_backtest=handling.backtest,
                handling_actual=handling.actual,
                handling_forecast=handling.forecast,
            )
        )
    return respond(
        ForecastView(
            domain=domain,
            time_zone=zone,
            interval_seconds=interval,
            start=chart_start,
            now=now,
            streams=streams,
        )
    )


# -- staffing ---------------------------------------------------------------------------


def _roster(
    body: StaffingIn, intervals: int, start: int, zone: str
) -> tuple[list[AgentGroup], AgentGroup | None]:
    """The groups with one staffing figure per interval (from their shifts, if they have
    any), and the searched group."""
    names = [group.name for group in body.groups]
    if len(set(names)) != len(names):
        raise ValueError("group names must differ")
    if body.search is not None and body.search not in names:
        raise ValueError(f"search names no group: {body.search!r}")
    groups = []
    searched = None
    for group in body.groups:
        if group.name == body.search:
            searched = group
            continue
        staffed = group.staffed
        if group.shifts:
            if staffed:
                raise ValueError(f"group {group.name}: give staffed or shifts, not both")
            staffed = staffed_from_shifts(
                group.shifts,
                start=start,
                intervals=intervals,
                interval_seconds=body.interval_seconds,
                tz=zone,
            )
        if len(staffed) == 1:
            staffed = staffed * intervals
        if len(staffed) != intervals:
            raise ValueError(
                f"group {group.name}: give 1 or {intervals} staffing figures, not {len(staffed)}"
            )
        groups.append(staffed_as(group, staffed))
    return groups, searched


def run_staffing(
    domain: str, policy: DomainPolicy, body: StaffingIn, prepared: PreparedStaffing, report: Report
) -> bytes:
    """The staffing job's work (in a worker thread): the demand, the simulation or search,
    the Erlang figures."""
    began = time.perf_counter()
    histories, start, zone = prepared.histories, prepared.start, prepared.zone
    intervals = body.days * 86400 // body.interval_seconds
    groups, searched = _roster(body, intervals, start, zone)
    if body.source == "forecast":
        demand, made = forecast_demand(
            histories,
            start=start,
            intervals=intervals,
            interval_seconds=body.interval_seconds,
            tz=zone,
            overrides=body.handling,
        )
    else:
        demand = recorded_demand(
            histories,
            start=start,
            intervals=intervals,
            interval_seconds=body.interval_seconds,
            overrides=body.handling,
        )
        made = ()
    if searched is not None:
        search = required_staffing(
            domain,
            policy,
            demand,
            searched,
            body.target,
            others=groups,
            seed=body.seed,
            max_agents=body.max_agents,
            progress=report,
        )
        outcome, simulations, infeasible = search.report, search.simulations, search.infeasible
        simulated = search.simulated_seconds
        sized = staffed_as(searched, search.staffed)
        groups = [*groups, sized]
    else:
        report(0, 1)
        outcome = simulate(
            domain, policy, demand, Roster(groups=tuple(groups)), body.target, seed=body.seed
        )
        simulations, infeasible, sized = 1, (), groups[0]
        simulated = outcome.simulated_seconds
        report(1, 1)
    elapsed = max(time.perf_counter() - began, 1e-9)
    result = StaffingResult(
        demand=demand,
        forecasts=made,
        staffed={group.name: group.staffed for group in groups},
        searched=body.search,
        infeasible=infeasible,
        report=outcome,
        erlang=side_by_side(demand, sized, body.target, sized.staffed),
        simulations=simulations,
        simulated_seconds_per_second=round(simulated / elapsed, 1),
    )
    return msgspec.json.encode(result)


def staffing_window(body: StaffingIn, now: float) -> tuple[int, int, int]:
    """The first interval simulated, and the history ``[begin, end)`` its demand comes
    from: the ``history_weeks`` before ``start`` (a forecast; measured intervals only) or
    around the recorded days (ValueError: what the request cannot mean)."""
    interval = body.interval_seconds
    span = body.days * 86400
    weeks = body.history_weeks * int(WEEK.total_seconds())
    if body.source == "recorded":
        if body.start is None:
            raise ValueError("a recorded run needs start")
        start = _aligned(body.start, interval)
        if start + span > now:
            raise ValueError("a recorded run covers the past only")
        return start, start - weeks, start + span
    if body.start is None:
        start = _aligned(now, interval) + interval
    else:
        start = _aligned(body.start, interval)
    end = min(start, _aligned(now, interval))
    return start, end - weeks, end


class NothingMeasured(LookupError):
    """No measured workload in the history a demand would come from."""


@dataclass(frozen=True, slots=True)
class PreparedStaffing:
    histories: list[HandlingHistory]
    start: int
    zone: str


async def prepare_staffing(
    conn: asyncpg.Connection, domain: str, policy: DomainPolicy, body: StaffingIn, now: float
) -> PreparedStaffing:
    """What a staffing run needs read before it runs: the window, the zone and the measured
    histories (ValueError: the request cannot mean anything; NothingMeasured)."""
    zone = checked_zone(body.time_zone or domain_time_zone(policy))
    start, history_begin, history_end = staffing_window(body, now)
    _roster(body, body.days * 86400 // body.interval_seconds, start, zone)
    histories = await load_histories(
        conn,
        domain,
        start=datetime.fromtimestamp(history_begin, UTC),
        end=datetime.fromtimestamp(history_end, UTC),
        interval_seconds=body.interval_seconds,
        queues=body.queues,
        channels=[channel.value for channel in body.channels],
    )
    if not histories:
        raise NothingMeasured("no measured workload in the history: nothing to plan for")
    return PreparedStaffing(histories, start, zone)


async def post_staffing(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    body = await read_json(request, StaffingIn)
    policy = _policy(request, domain)
    pool = request.app[DB_POOL]
    try:
        async with pool.acquire() as conn:
            prepared = await prepare_staffing(conn, domain, policy, body, time.time())
    except ValueError as error:
        raise bad_request(str(error)) from None
    except NothingMeasured as error:
        raise web.HTTPUnprocessableEntity(
            text=msgspec.json.encode({"error": str(error)}).decode(),
            content_type="application/json",
        ) from None

    async def work(report: Report) -> bytes:
        try:
            return await asyncio.to_thread(run_staffing, domain, policy, body, prepared, report)
        except ValueError as error:
            raise JobFailed(str(error)) from None

    job = await request.app[PLANNING_JOBS].start(
        pool, domain, "staffing", principal.actor, body, work
    )
    return respond(job, status=202)


# -- back-fill and jobs -----------------------------------------------------------------


async def post_backfill(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    body = await read_json(request, BackfillIn)
    pool = request.app[DB_POOL]
    until = datetime.fromtimestamp(body.until if body.until is not None else time.time(), UTC)
    if body.since is not None:
        since: datetime | None = datetime.fromtimestamp(body.since, UTC)
    else:
        async with pool.acquire() as conn:
            since = await history_start(conn, domain)
    if since is not None and not since < until:
        raise bad_request("since must be before until")

    async def work(report: Report) -> bytes:
        if since is None:
            return msgspec.json.encode({"days": 0, "rows": 0})
        done = await backfill(pool, domain, since, until, progress=report)
        return msgspec.json.encode(done)

    job = await request.app[PLANNING_JOBS].start(
        pool, domain, "backfill", principal.actor, body, work
    )
    return respond(job, status=202)


async def get_job(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    job_id = path_value(request, "job_id", 64)
    job = await job_by_id(request, domain, job_id)
    if job is None:
        raise not_found("unknown planning job")
    return respond(job)


def planning_routes(base: str) -> list[web.RouteDef]:
    return [
        web.get(base + "/workload", guarded(get_workload)),
        web.get(base + "/forecast", guarded(get_forecast)),
        web.post(base + "/staffing", guarded(post_staffing)),
        web.post(base + "/workload/backfill", guarded(post_backfill)),
        web.get(base + "/planning/jobs/{job_id}", guarded(get_job)),
    ]
