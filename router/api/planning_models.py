"""Bodies and answers of the planning API (``router.api.planning``), and its operations in
the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from router.api.operation import DOMAIN_PARAMETER, Operation, parameter
from router.api.planning_jobs import PlanningJob
from router.planning.compare import ErlangInterval
from router.planning.demand import HandlingOverrides, StreamForecast
from router.planning.forecast import Backtest
from router.planning.staffing import (
    AGENTS_MAX,
    GROUPS_MAX,
    AgentGroup,
    Demand,
    Name,
    ServiceTarget,
    StaffingReport,
)
from runtime.workload import WAIT_LIMITS, WorkloadFigures
from schemas import Channel
from schemas.limits import EPOCH_MAX, LIST_MAX, QUEUE_MAX, QueueName, TimeZone

DAYS_MAX = 7
"""Days one staffing run covers."""
FORECAST_DAYS_MAX = 28
HISTORY_WEEKS_MAX = 52
SEED_MAX = 2**32 - 1


class StaffingIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A staffing what-if: which demand, which roster, which target; and, with ``search``,
    the fewest agents of that group per interval meeting the target."""

    source: Literal["forecast", "recorded"] = "forecast"
    """``forecast``: the forecast of the measured workload; ``recorded``: the intervals as
    they were measured (a past day)."""
    start: Annotated[float, msgspec.Meta(ge=0, le=EPOCH_MAX)] | None = None
    """First interval (seconds since the epoch, aligned down to the interval). Default for a
    forecast: the next interval; a recorded run needs it."""
    days: Annotated[int, msgspec.Meta(ge=1, le=DAYS_MAX)] = 1
    interval_seconds: Literal[900, 1800, 3600] = 3600
    history_weeks: Annotated[int, msgspec.Meta(ge=1, le=HISTORY_WEEKS_MAX)] = 8
    """Weeks of measured workload before ``start`` that the forecast and the handling
    figures come from."""
    time_zone: TimeZone | None = None
    """The seasonality's local time (default: the domain's first business calendar's, else UTC)."""
    queues: Annotated[tuple[QueueName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    """Only these queues' workload (default: every queue measured)."""
    channels: Annotated[tuple[Channel, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    handling: HandlingOverrides = HandlingOverrides()
    groups: Annotated[tuple[AgentGroup, ...], msgspec.Meta(min_length=1, max_length=GROUPS_MAX)]
    """The roster. ``staffed`` has one figure per interval, or one for all of them, or the
    group has ``shifts`` (local times of ``time_zone``); the searched group's are ignored."""
    search: Name | None = None
    """The group whose agents per interval are searched (None: simulate the roster as given)."""
    target: ServiceTarget = ServiceTarget()
    seed: Annotated[int, msgspec.Meta(ge=0, le=SEED_MAX)] = 1
    max_agents: Annotated[int, msgspec.Meta(ge=1, le=AGENTS_MAX)] = 200
    """The most agents the search tries in one interval."""


class StaffingResult(msgspec.Struct, frozen=True, kw_only=True):
    """A staffing job's result (``GET …/planning/jobs/{job_id}``, ``result``)."""

    demand: Demand
    """The demand simulated: per queue and channel, arrivals per interval and handling."""
    forecasts: tuple[StreamForecast, ...]
    """How each stream was forecast, and the forecast's error on the last week of history."""
    staffed: dict[str, tuple[int, ...]]
    """Agents online per interval of each group, as simulated (the searched group's: the
    search's answer)."""
    searched: str | None
    infeasible: tuple[int, ...]
    """Intervals the search could not meet with ``max_agents``."""
    report: StaffingReport
    erlang: tuple[ErlangInterval, ...]
    """Erlang C and A per interval for the searched group (else the first), beside the
    simulation's."""
    simulations: int
    simulated_seconds_per_second: float
    """Simulated time over the wall time it took, all simulations counted."""


class BackfillIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    since: Annotated[float, msgspec.Meta(ge=0, le=EPOCH_MAX)] | None = None
    """From (default: the oldest recorded conversation)."""
    until: Annotated[float, msgspec.Meta(ge=0, le=EPOCH_MAX)] | None = None
    """To (default: now)."""


class WorkloadPage(msgspec.Struct, frozen=True, kw_only=True):
    domain: str
    interval_seconds: int
    queue: str | None
    channel: str | None
    intervals: list[WorkloadFigures]


class ForecastStream(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    channel: Channel
    model: str
    """The model of the coming days' forecast."""
    backtest: Backtest | None
    """The error on the last week of history held out (MAPE, WAPE), None with a week or less."""
    actual: tuple[float, ...]
    """Measured arrivals of each interval of the chart that is past."""
    forecast: tuple[float, ...]
    """The forecast of each interval of the chart: the past ones fitted on the history
    before them, the coming ones on all of it (the past week included)."""
    handling_backtest: Backtest | None = None
    """The same for the workload: seconds people actively worked per interval."""
    handling_actual: tuple[float, ...] = ()
    handling_forecast: tuple[float, ...] = ()


class ForecastView(msgspec.Struct, frozen=True, kw_only=True):
    """Arrivals and workload per interval: the last week measured and forecast (fitted on
    the weeks before it), then the coming days forecast (fitted on every week, the last
    one included)."""

    domain: str
    time_zone: str
    interval_seconds: int
    start: float
    """First interval of the chart: a week before ``now``."""
    now: float
    """First interval not measured yet (the forecast alone from here)."""
    streams: list[ForecastStream]


_BASE = "/v1/domains/{domain}"
_ERRORS = (400, 401, 403, 404, 503)
_MOMENT_SCHEMA = {"type": "string", "maxLength": 64}
_INTERVAL = parameter(
    "query",
    "interval",
    "Interval length in seconds (default 3600)",
    {"type": "integer", "enum": [900, 1800, 3600]},
)
_QUEUE = parameter(
    "query", "queue", "Only this queue", {"type": "string", "minLength": 1, "maxLength": QUEUE_MAX}
)
_CHANNEL = parameter(
    "query", "channel", "Only this channel", {"type": "string", "enum": [c.value for c in Channel]}
)

PLANNING_OPERATIONS = (
    Operation(
        "get",
        _BASE + "/workload",
        "getWorkload",
        "Measured workload per interval: arrivals, waits, handling, replies, concurrency",
        (
            DOMAIN_PARAMETER,
            parameter(
                "query",
                "since",
                "From (epoch seconds or ISO 8601; default a day ago)",
                _MOMENT_SCHEMA,
            ),
            parameter("query", "until", "To (as `since`; default now)", _MOMENT_SCHEMA),
            _INTERVAL,
            _QUEUE,
            _CHANNEL,
            parameter(
                "query",
                "target",
                "Wait target of the service level, seconds (default 60)",
                {"type": "integer", "enum": list(WAIT_LIMITS)},
            ),
        ),
        200,
        WorkloadPage,
        errors=_ERRORS,
        description="An admin token only. At most 31 days at once. See README "
        "`Measured workload` for each figure's definition.",
    ),
    Operation(
        "get",
        _BASE + "/forecast",
        "getForecast",
        "Forecast of arrivals per queue and channel, with last week's actual and error",
        (
            DOMAIN_PARAMETER,
            _INTERVAL,
            parameter(
                "query",
                "days",
                f"Days forecast ahead (1 to {FORECAST_DAYS_MAX}, default 7)",
                {"type": "integer", "minimum": 1, "maximum": FORECAST_DAYS_MAX},
            ),
            parameter(
                "query",
                "history_weeks",
                f"Weeks of history fitted (1 to {HISTORY_WEEKS_MAX}, default 8)",
                {"type": "integer", "minimum": 1, "maximum": HISTORY_WEEKS_MAX},
            ),
            parameter(
                "query",
                "time_zone",
                "IANA zone of the seasonality (default: the domain's first calendar's, else UTC)",
                {"type": "string", "maxLength": 64},
            ),
            _QUEUE,
            _CHANNEL,
        ),
        200,
        ForecastView,
        errors=_ERRORS,
        description="An admin token only. The model and its error measure are described "
        "in the README (`Forecast`).",
    ),
    Operation(
        "post",
        _BASE + "/staffing",
        "startStaffing",
        "Start a staffing what-if (and search): the routing engine in simulated time",
        (DOMAIN_PARAMETER,),
        202,
        PlanningJob,
        request=StaffingIn,
        errors=(*_ERRORS, 422, 429),
        description="An admin token only. Answers 202 with the job at once; "
        "`GET …/planning/jobs/{job_id}` follows its progress and holds the `StaffingResult`. "
        "422 when there is no measured workload to plan from; 429 when this process runs "
        "its most jobs already.",
    ),
    Operation(
        "post",
        _BASE + "/workload/backfill",
        "startWorkloadBackfill",
        "Measure the workload of recorded history (a job)",
        (DOMAIN_PARAMETER,),
        202,
        PlanningJob,
        request=BackfillIn,
        errors=(*_ERRORS, 429),
        description="An admin token only. Re-measuring is idempotent.",
    ),
    Operation(
        "get",
        _BASE + "/planning/jobs/{job_id}",
        "getPlanningJob",
        "A planning job's progress, and its result once completed",
        (
            DOMAIN_PARAMETER,
            parameter(
                "path",
                "job_id",
                "The job's id",
                {"type": "string", "minLength": 1, "maxLength": 64},
            ),
        ),
        200,
        PlanningJob,
        errors=_ERRORS,
        description="An admin token only. `interrupted`: its process ended first.",
    ),
)
