"""The fewest agents per interval that meet a service target, by running the engine.

``required_staffing`` varies one agent group's count per interval (the other groups work
as scheduled) over the simulation of ``router.planning.staffing``, on the same customers
(one seed) for every candidate:

1. **Chronological bisection.** With the intervals before *i* settled, the smallest count
   for *i* (the same count continuing after it) whose run meets *i* and every earlier
   interval still being judged (an arrival is judged ``within_seconds`` after it came, so
   the next interval's staffing can still save it). Each candidate continues a copy of the
   run at *i*'s start and stops when the intervals it affects are judged, so the search
   costs a few intervals of simulation per candidate, not a day.
2. **Replay and raise.** The whole roster is replayed; intervals that fail (a later,
   smaller count left an earlier interval's late arrivals waiting) are raised by one until
   every interval meets.
3. **Trim.** Each interval in turn is tried with one agent fewer, continuing a copy of the
   replay at its start to the end of the run; kept when every interval still meets, and
   tried again one fewer, until the next one misses.

So the result, replayed, meets the target in every interval, and one agent fewer in any
interval misses it somewhere (``infeasible`` lists intervals ``max_agents`` could not meet;
they keep ``max_agents``). Cost, measured on this repository's 2-core machine: a day of
24 hourly intervals takes a few dozen simulations and a few seconds (``make bench``'s: 49).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import msgspec

from router.engine import DomainPolicy
from router.planning.staffing import (
    AGENTS_MAX,
    AgentGroup,
    Demand,
    Roster,
    Run,
    ServiceTarget,
    StaffingReport,
    check_roster,
    draw_arrivals,
    staffed_as,
)

Progress = Callable[[int, int], None]
"""Called with (steps done, steps in all) as the search goes."""


class StaffingSearch(msgspec.Struct, frozen=True, kw_only=True):
    """The fewest agents of the searched group per interval meeting the target, the replay
    of that roster, and how many simulations it took."""

    staffed: tuple[int, ...]
    infeasible: tuple[int, ...]
    """Intervals not met even with ``max_agents`` (they keep ``max_agents``)."""
    report: StaffingReport
    simulations: int
    simulated_seconds: float
    """Simulated time played in all, over every simulation (most play part of the run:
    from an interval's start to a few intervals on)."""


def required_staffing(
    domain: str,
    policy: DomainPolicy,
    demand: Demand,
    group: AgentGroup,
    target: ServiceTarget,
    *,
    others: Sequence[AgentGroup] = (),
    seed: int = 1,
    max_agents: int = 200,
    progress: Progress | None = None,
) -> StaffingSearch:
    """The fewest agents of ``group`` per interval such that every interval meets ``target``
    (``group.staffed`` is ignored; ``others`` work as scheduled). See the module's rules."""
    search = _Search(domain, policy, demand, group, target, others, seed, max_agents, progress)
    return search.run()


class _Search:
    def __init__(
        self,
        domain: str,
        policy: DomainPolicy,
        demand: Demand,
        group: AgentGroup,
        target: ServiceTarget,
        others: Sequence[AgentGroup],
        seed: int,
        max_agents: int,
        progress: Progress | None,
    ) -> None:
        self.domain = domain
        self.policy = policy
        self.demand = demand
        self.group = group
        self.target = target
        self.others = tuple(others)
        self.max_agents = max(1, min(max_agents, AGENTS_MAX))
        self.progress = progress
        self.arrivals = draw_arrivals(demand, seed)
        self.intervals = demand.intervals
        self.counts = [0] * self.intervals
        self.infeasible: set[int] = set()
        self.simulations = 0
        self.simulated_seconds = 0.0
        self.judged = math.ceil(target.within_seconds / demand.interval_seconds)

    def run(self) -> StaffingSearch:
        self._bisect()
        self._raise_failing()
        final = self._trim()
        return StaffingSearch(
            staffed=tuple(self.counts),
            infeasible=tuple(sorted(self.infeasible)),
            report=final.report(),
            simulations=self.simulations,
            simulated_seconds=self.simulated_seconds,
        )

    # the pieces

    def _fresh(self) -> Run:
        """A run with every agent the search may use registered (all offline at first)."""
        largest = staffed_as(self.group, [self.max_agents] * self.intervals)
        roster = Roster(groups=(*self.others, largest))
        check_roster(self.demand, roster)
        return Run(self.domain, self.policy, self.demand, roster, self.target, self.arrivals)

    def _boundary(self, interval: int) -> float:
        return self.demand.start + interval * self.demand.interval_seconds

    def _staff(self, run: Run, counts: Sequence[int]) -> None:
        run.groups[-1] = staffed_as(self.group, counts)

    def _step(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.intervals * 2)

    def _play(self, run: Run, until: float) -> None:
        """``run.run_until(until)``, counted in ``simulated_seconds``."""
        began = run.now
        run.run_until(until)
        self.simulated_seconds += run.now - began

    def _meets_from(self, base: Run, interval: int, count: int) -> bool:
        self.simulations += 1
        candidate = copy.deepcopy(base)
        self._staff(candidate, [*self.counts[:interval], *[count] * (self.intervals - interval)])
        self._play(candidate, self._boundary(interval + 1 + self.judged))
        first = max(0, interval - self.judged)
        earlier = range(first, interval)
        return candidate.met(interval) and all(
            candidate.met(index) or index in self.infeasible for index in earlier
        )

    def _bisect(self) -> None:
        base = self._fresh()
        for interval in range(self.intervals):
            low, high = 0, max(1, self.counts[interval - 1] if interval else 1)
            while high < self.max_agents and not self._meets_from(base, interval, high):
                low, high = high + 1, min(self.max_agents, high * 2)
            if high >= self.max_agents and not self._meets_from(base, interval, high):
                self.infeasible.add(interval)
                low = high
            while low < high:
                middle = (low + high) // 2
                if self._meets_from(base, interval, middle):
                    high = middle
                else:
                    low = middle + 1
            self.counts[interval] = high
            self._staff(base, [*self.counts[:interval], *[high] * (self.intervals - interval)])
            self._play(base, self._boundary(interval + 1))
            self._step(interval + 1)

    def _replay(self, counts: Sequence[int]) -> Run:
        self.simulations += 1
        run = self._fresh()
        self._staff(run, counts)
        self._play(run, run.end)
        return run

    def _all_met(self, run: Run) -> bool:
        return all(run.met(i) or i in self.infeasible for i in range(self.intervals))

    def _raise_failing(self) -> None:
        for _ in range(self.intervals):
            run = self._replay(self.counts)
            failing = [i for i in range(self.intervals) if not run.met(i)]
            failing = [i for i in failing if i not in self.infeasible]
            if not failing:
                return
            for index in failing:
                self.counts[index] = min(self.max_agents, self.counts[index] + 1)
                if self.counts[index] == self.max_agents:
                    self.infeasible.add(index)

    def _trim(self) -> Run:
        reference = self._fresh()
        self._staff(reference, self.counts)
        for interval in range(self.intervals):
            self._play(reference, self._boundary(interval))
            # One agent fewer at a time, while every interval still meets the target: the
            # bisections may leave more than one too many.
            while self.counts[interval] > 0 and interval not in self.infeasible:
                fewer = list(self.counts)
                fewer[interval] -= 1
                self.simulations += 1
                trial = copy.deepcopy(reference)
                self._staff(trial, fewer)
                self._play(trial, trial.end)
                if not self._all_met(trial):
                    break
                self.counts = fewer
                self._staff(reference, fewer)
            self._step(self.intervals + interval + 1)
        self._play(reference, reference.end)
        return reference
