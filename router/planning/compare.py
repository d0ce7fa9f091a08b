"""The textbook figures beside the simulation's, per interval, so planners see the gap.

For each interval of a demand, the streams served by the sized group are pooled into one
Erlang queue: the arrival rate is their sum; the handling time and patience are their
arrivals-weighted means; each agent is ``concurrency`` servers, the group's capacity on
those channels weighted by arrivals and rounded (at least 1). Erlang C and Erlang A
(``router.planning.erlang``) then give the fewest agents meeting the same target as the
simulation (``ServiceTarget``: ``share`` answered within ``within_seconds``), and the
service level they promise for the agents scheduled. Erlang A needs a patience: without one
on any stream it is not computed. Neither formula models the preferred-agent holds, the
fallback ladder, skills or an interval's backlog from the one before: that is what the
simulation adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from router.planning.erlang import (
    agents_for_service_level,
    agents_for_service_level_with_abandonment,
    erlang_a,
    erlang_c,
)
from router.planning.staffing import AgentGroup, Demand, ServiceTarget

SHARE_CEILING = 0.999_999
"""The formulas need a target below 1: a target of 1 is read as this."""


class ErlangInterval(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    arrival_rate_per_hour: float
    handle_seconds: float | None
    """Arrivals-weighted mean holding time (None without arrivals)."""
    concurrency: int
    patience_seconds: float | None
    erlang_c_agents: int | None
    """Fewest agents Erlang C says meet the target; None when it cannot be met."""
    erlang_a_agents: int | None
    """The same with abandonment (None without a patience)."""
    scheduled: int
    erlang_c_service_level: float | None
    """What Erlang C promises for ``scheduled`` agents (None beyond what the formulas take:
    more than 10,000 Erlangs offered)."""
    erlang_a_service_level: float | None


def side_by_side(
    demand: Demand, group: AgentGroup, target: ServiceTarget, scheduled: Sequence[int]
) -> tuple[ErlangInterval, ...]:
    """The Erlang C and A figures of each interval of ``demand`` for ``group``."""
    served = [
        stream
        for stream in demand.streams
        if group.capacity.get(stream.channel, 0) > 0
        and (not group.queues or stream.queue in group.queues)
    ]
    share = min(target.share, SHARE_CEILING)
    rows: list[ErlangInterval] = []
    for interval in range(demand.intervals):
        counts = [stream.arrivals[interval] for stream in served]
        total = sum(counts)
        start = demand.start + interval * demand.interval_seconds
        agents = scheduled[interval] if interval < len(scheduled) else 0
        if total <= 0:
            rows.append(_quiet(start, agents))
            continue
        rate = total / demand.interval_seconds
        handle = sum(c * s.holding_seconds for c, s in zip(counts, served, strict=True)) / total
        capacity = sum(c * group.capacity[s.channel] for c, s in zip(counts, served, strict=True))
        concurrency = max(1, round(capacity / total))
        patient = [(c, s.patience_seconds) for c, s in zip(counts, served, strict=True)]
        weighted = [(c, p) for c, p in patient if p is not None and c > 0]
        patience = (
            sum(c * p for c, p in weighted) / sum(c for c, _ in weighted) if weighted else None
        )
        c_agents = _agents_c(rate, handle, target.within_seconds, share, concurrency)
        a_agents = (
            None
            if patience is None
            else _agents_a(rate, handle, patience, target.within_seconds, share, concurrency)
        )
        c_level = _level_c(agents, rate, handle, target.within_seconds, concurrency)
        a_level = (
            None
            if patience is None
            else _level_a(agents, rate, handle, patience, target.within_seconds, concurrency)
        )
        rows.append(
            ErlangInterval(
                start=start,
                arrival_rate_per_hour=round(rate * 3600, 3),
                handle_seconds=round(handle, 3),
                concurrency=concurrency,
                patience_seconds=None if patience is None else round(patience, 3),
                erlang_c_agents=c_agents,
                erlang_a_agents=a_agents,
                scheduled=agents,
                erlang_c_service_level=None if c_level is None else round(c_level, 4),
                erlang_a_service_level=None if a_level is None else round(a_level, 4),
            )
        )
    return tuple(rows)


def _quiet(start: float, agents: int) -> ErlangInterval:
    return ErlangInterval(
        start=start,
        arrival_rate_per_hour=0.0,
        handle_seconds=None,
        concurrency=1,
        patience_seconds=None,
        erlang_c_agents=0,
        erlang_a_agents=0,
        scheduled=agents,
        erlang_c_service_level=None,
        erlang_a_service_level=None,
    )


def _level_c(
    agents: int, rate: float, handle: float, within: float, concurrency: int
) -> float | None:
    """Erlang C's service level for ``agents``; None beyond what the formula takes."""
    try:
        return erlang_c(
            agents,
            arrival_rate_per_second=rate,
            handle_seconds=handle,
            target_seconds=within,
            concurrency=concurrency,
        ).service_level
    except ValueError:
        return None


def _level_a(
    agents: int, rate: float, handle: float, patience: float, within: float, concurrency: int
) -> float | None:
    """Erlang A's service level for ``agents``; None beyond what the formula takes."""
    try:
        return erlang_a(
            agents,
            arrival_rate_per_second=rate,
            handle_seconds=handle,
            patience_seconds=patience,
            target_seconds=within,
            concurrency=concurrency,
        ).service_level
    except ValueError:
        return None


def _agents_c(
    rate: float, handle: float, within: float, share: float, concurrency: int
) -> int | None:
    try:
        return agents_for_service_level(rate, handle, within, share, concurrency=concurrency).agents
    except ValueError:
        return None


def _agents_a(
    rate: float, handle: float, patience: float, within: float, share: float, concurrency: int
) -> int | None:
    try:
        return agents_for_service_level_with_abandonment(
            rate, handle, patience, within, share, concurrency=concurrency
        ).agents
    except ValueError:
        return None
