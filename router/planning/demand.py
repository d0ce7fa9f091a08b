"""From measured workload to a staffing demand: a recorded day as it came, or the forecast
of the coming days.

Each queue and channel with history is one stream. Its arrivals per interval are either
the recorded ones, simulated as they came (``recorded_demand``) or ``router.planning.forecast``'s forecast fitted on
the history (``forecast_demand``, with its backtest on the last week held out when the
history is longer than a week). How its conversations are handled comes from the whole
history's sums (``HandlingHistory``; see ``runtime.workload`` for how each is measured):

- ``holding_seconds``: ``conversation_seconds / assigned``, the time a person owned a
  conversation per conversation assigned (``DEFAULT_HOLDING_SECONDS`` with none);
- ``first_reply_seconds``: ``first_reply_seconds_sum / first_reply_count``;
- ``patience_seconds``: ``wait_seconds_sum / abandoned``, the time served customers
  waited per customer who gave up, the usual estimate of an exponential patience
  (abandonments over time spent waiting), biased long because the waits of those who gave
  up are not measured; None (nobody gives up) without abandonments, or when it is longer
  than ``SECONDS_MAX`` (a long history with a rare abandonment: as good as nobody);
- ``returning_share``: the share of the stream's conversations whose customer had an
  earlier conversation in the domain.

The caller may override any of these per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from router.planning.forecast import Backtest, backtest, forecast
from router.planning.staffing import SECONDS_MAX, Demand, DemandStream, Seconds, Share
from schemas import Channel

DEFAULT_HOLDING_SECONDS = 900.0
DEFAULT_FIRST_REPLY_SECONDS = 30.0
WEEK_SECONDS = 7 * 86400


class HandlingHistory(msgspec.Struct, frozen=True, kw_only=True):
    """A stream's history: arrivals per interval start, and the sums of how it was handled."""

    queue: str
    channel: Channel
    arrivals: Mapping[int, float]
    handle_seconds: Mapping[int, float] = {}
    """Seconds people actively worked per interval (the workload)."""
    assigned: int = 0
    conversation_seconds: float = 0.0
    first_reply_count: int = 0
    first_reply_seconds_sum: float = 0.0
    abandoned: int = 0
    wait_seconds_sum: float = 0.0
    returning_share: float = 0.0


class HandlingOverrides(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Figures to use instead of the measured ones (None: as measured)."""

    holding_seconds: Seconds | None = None
    first_reply_seconds: Seconds | None = None
    patience_seconds: Seconds | None = None
    returning_share: Share | None = None


class StreamForecast(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    channel: Channel
    model: str
    backtest: Backtest | None
    """The error on the last week held out (None when the history is a week or less)."""


def stream_of(
    history: HandlingHistory, arrivals: Sequence[float], overrides: HandlingOverrides
) -> DemandStream:
    """The demand stream of ``history`` with ``arrivals`` per interval."""
    holding = (
        history.conversation_seconds / history.assigned
        if history.assigned and history.conversation_seconds > 0
        else DEFAULT_HOLDING_SECONDS
    )
    first_reply = (
        history.first_reply_seconds_sum / history.first_reply_count
        if history.first_reply_count
        else DEFAULT_FIRST_REPLY_SECONDS
    )
    patience = (
        history.wait_seconds_sum / history.abandoned
        if history.abandoned and history.wait_seconds_sum > 0
        else None
    )
    if patience is not None and patience > SECONDS_MAX:
        patience = None
    # Measured figures are kept within what a stream takes (a conversation held for weeks).
    holding, first_reply = min(holding, SECONDS_MAX), min(first_reply, SECONDS_MAX)
    return msgspec.convert(
        {
            "queue": history.queue,
            "channel": history.channel,
            "arrivals": [round(value, 4) for value in arrivals],
            "holding_seconds": _pick(overrides.holding_seconds, round(holding, 3)),
            "first_reply_seconds": _pick(overrides.first_reply_seconds, round(first_reply, 3)),
            "patience_seconds": _pick(
                overrides.patience_seconds, None if patience is None else round(patience, 3)
            ),
            "returning_share": _pick(overrides.returning_share, round(history.returning_share, 4)),
        },
        DemandStream,
    )


def _pick(override: float | None, measured: float | None) -> float | None:
    return measured if override is None else override


def recorded_demand(
    histories: Sequence[HandlingHistory],
    *,
    start: int,
    intervals: int,
    interval_seconds: int,
    overrides: HandlingOverrides | None = None,
) -> Demand:
    """The demand of ``intervals`` recorded intervals from ``start``, as they came."""
    overrides = overrides or HandlingOverrides()
    streams = [
        stream_of(
            history,
            [history.arrivals.get(start + i * interval_seconds, 0.0) for i in range(intervals)],
            overrides,
        )
        for history in histories
    ]
    return _demand(start, interval_seconds, streams, exact_counts=True)


def forecast_demand(
    histories: Sequence[HandlingHistory],
    *,
    start: int,
    intervals: int,
    interval_seconds: int,
    tz: str,
    overrides: HandlingOverrides | None = None,
) -> tuple[Demand, tuple[StreamForecast, ...]]:
    """The forecast demand of ``intervals`` intervals from ``start``, and how each stream's
    forecast was made and how wrong it was on the last week of its history."""
    overrides = overrides or HandlingOverrides()
    streams = []
    made = []
    for history in histories:
        predicted = forecast(
            history.arrivals,
            interval_seconds=interval_seconds,
            tz=tz,
            start=start,
            intervals=intervals,
        )
        streams.append(stream_of(history, predicted.values, overrides))
        made.append(
            StreamForecast(
                queue=history.queue,
                channel=history.channel,
                model=predicted.model,
                backtest=_backtest(history.arrivals, interval_seconds, tz),
            )
        )
    return _demand(start, interval_seconds, streams), tuple(made)


def _backtest(arrivals: Mapping[int, float], interval_seconds: int, tz: str) -> Backtest | None:
    if not arrivals or max(arrivals) - min(arrivals) < WEEK_SECONDS:
        return None
    try:
        return backtest(arrivals, interval_seconds=interval_seconds, tz=tz, held_out_weeks=1)
    except ValueError:
        return None


def _demand(
    start: int,
    interval_seconds: int,
    streams: Sequence[DemandStream],
    *,
    exact_counts: bool = False,
) -> Demand:
    if not streams:
        raise ValueError("no measured workload in the history: nothing to plan for")
    return msgspec.convert(
        {
            "start": start,
            "interval_seconds": interval_seconds,
            "streams": streams,
            "exact_counts": exact_counts,
        },
        Demand,
    )
