"""Planning benchmark: the staffing simulation (the routing engine in simulated time) and
the staffing search, on one core.

- simulation: a week at 15-minute intervals of a contact centre with web chat, WhatsApp
  and email (an office curve, about 4,300 conversations), 60 agents in three groups;
  the figure is simulated seconds per wall second (the issue's bar: at least 50);
- search: the fewest chat agents per hour for one day of the same demand.

``python -m tools.bench.planning_bench`` prints the figures; ``run_planning_bench()``
returns them.
"""

from __future__ import annotations

import math
import time
from typing import Literal

from router.engine import DomainPolicy
from router.planning.search import required_staffing
from router.planning.staffing import (
    AgentGroup,
    Demand,
    DemandStream,
    Roster,
    ServiceTarget,
    simulate,
)
from schemas import Channel

MONDAY = 1_788_998_400.0  # 2026-09-07 00:00 UTC
QUARTER: Literal[900] = 900
TARGET = ServiceTarget(within_seconds=60, share=0.8)


def _rate_per_hour(hour: float, weekday: int, peak: float) -> float:
    scale = 0.3 if weekday >= 5 else 1.0
    return scale * (0.1 * peak + peak * math.exp(-(((hour - 14.0) / 3.0) ** 2)))


def week_demand(interval: Literal[900, 1800, 3600] = QUARTER, days: int = 7) -> Demand:
    intervals = days * 86400 // interval
    streams = []
    for queue, channel, peak, holding in (
        ("support", Channel.WEBCHAT, 60.0, 600.0),
        ("support", Channel.WHATSAPP, 30.0, 1800.0),
        ("billing", Channel.EMAIL, 12.0, 3600.0),
    ):
        arrivals = []
        for index in range(intervals):
            moment = index * interval
            hour = (moment % 86400) / 3600
            weekday = (moment // 86400) % 7
            arrivals.append(_rate_per_hour(hour, weekday, peak) * interval / 3600)
        streams.append(
            DemandStream(
                queue=queue,
                channel=channel,
                arrivals=tuple(arrivals),
                holding_seconds=holding,
                patience_seconds=600.0,
                returning_share=0.3,
            )
        )
    return Demand(start=MONDAY, interval_seconds=interval, streams=tuple(streams))


def _groups(intervals: int) -> tuple[AgentGroup, ...]:
    return (
        AgentGroup(
            name="chat",
            queues=("support",),
            capacity={Channel.WEBCHAT: 3, Channel.WHATSAPP: 3},
            staffed=(30,) * intervals,
        ),
        AgentGroup(
            name="email",
            queues=("billing",),
            capacity={Channel.EMAIL: 5},
            staffed=(10,) * intervals,
        ),
        AgentGroup(
            name="floaters",
            capacity={Channel.WEBCHAT: 2, Channel.WHATSAPP: 2, Channel.EMAIL: 2},
            staffed=(20,) * intervals,
        ),
    )


def run_planning_bench() -> dict[str, float]:
    demand = week_demand()
    roster = Roster(groups=_groups(demand.intervals))
    began = time.perf_counter()
    report = simulate("bench", DomainPolicy(), demand, roster, TARGET, seed=1)
    simulated = time.perf_counter() - began
    day = week_demand(interval=3600, days=1)
    groups = _groups(day.intervals)
    began = time.perf_counter()
    search = required_staffing(
        "bench", DomainPolicy(), day, groups[0], TARGET, others=groups[1:], seed=1
    )
    searched = time.perf_counter() - began
    figures = {
        "staffing_week_conversations": float(report.arrivals),
        "staffing_week_simulation_seconds": round(simulated, 2),
        "staffing_simulated_seconds_per_second": round(report.simulated_seconds / simulated),
        "staffing_day_search_seconds": round(searched, 2),
        "staffing_day_search_simulations": float(search.simulations),
    }
    for key, value in figures.items():
        print(f"  {key:44} {value}")
    return figures


if __name__ == "__main__":
    run_planning_bench()
