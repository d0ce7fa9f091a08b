"""Staffing what-if: the real routing engine in simulated time, over a demand and a roster.

``simulate(domain, policy, demand, roster, target, seed=…)`` feeds the engine
(``router.engine.apply`` / ``tick``, the same code that routes live traffic) with
generated customers and a scripted agent team, and measures per interval what the
customers got. ``router.planning.search`` finds the fewest agents meeting a service target with it. Same input and seed, same report, to the byte.

The simulated contact centre (the rules, and what they leave out):

- **Arrivals.** Each demand stream (a queue and a channel) has an expected number of new
  conversations per interval; the count is Poisson with that mean (a recorded day's
  counts, ``exact_counts``, are taken as they came) and the times are uniform within the
  interval. Each arrival is a new conversation (its own thread). With
  probability ``returning_share`` it comes from a customer who wrote earlier in the run
  (uniformly among them), so the engine's preferred-agent rules apply to it exactly as live;
  otherwise from a new customer. All randomness is drawn before the run, from ``seed``
  alone: two rosters are compared on the same customers (common random numbers).
- **Handling.** A conversation holds its agent's slot from its first assignment for a
  holding time drawn from an exponential distribution with the stream's mean
  (``holding_seconds``: measured as the assigned time per conversation, not the active
  work, so the engine's per-channel capacity is the concurrency). The agent replies
  ``first_reply_seconds`` after the assignment and closes the conversation at the end of
  the holding time. Offers are accepted at once. An agent who goes offline at the end of
  their shift still finishes (closes) what they hold; the engine routes nothing new to them.
- **Patience.** With ``patience_seconds`` set, each customer gives up after an exponential
  time with that mean if no agent was assigned yet (the conversation is closed, reason
  ``abandoned``). A conversation the engine overflows (its queue's final timeout) is closed
  at once, reason ``overflowed``: another system would take it.
- **The roster.** Each group's agents ``<group>-0001``, ``<group>-0002``, … are registered at
  the start with the group's queues, skills and per-channel capacity; in interval *i* the
  first ``staffed[i]`` of them are online and the others offline.
- **Service level** of an interval: of the conversations that arrived in it, the share a
  person was assigned to within ``target.within_seconds`` (abandoned, overflowed and never
  assigned count as missed). An interval without arrivals meets any target. The run lasts
  ``within_seconds`` past the last interval, with the last interval's staffing, so every
  arrival is judged.
- **Occupancy** of an interval: busy slots over the slots of the agents online, averaged
  over the interval's time.
- **Wait estimates.** Every ``conversation.queued`` gets the router's live estimate
  (``router.planning.eta``, fed with the slot times the run measured, as the router's
  shell feeds it); when the conversation is assigned, each estimate's error (the wait that
  followed it, minus the estimate) is counted in the interval it arrived in: what the live
  estimates' calibration would be under this demand and roster. **Preferred-agent hit ratio**: of the first assignments that had
  a preferred agent, the share that went to that agent.

Not modelled: bots, customers writing again into an open conversation, transfers, agents'
breaks within an interval, and business calendars beyond what the engine's policy applies.
"""

from __future__ import annotations

import copy
import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec

from router.engine import (
    DomainPolicy,
    DomainState,
    Emit,
    EngineInput,
    SaveConversation,
    apply,
    new_state,
    next_deadline,
    tick,
)
from router.planning.eta import HandlingMeter, conversation_wait
from router.planning.shifts import SHIFTS_MAX, Shift
from runtime.stats import percentile
from schemas import (
    AgentRegistered,
    AgentReplied,
    Channel,
    ConversationAcceptRequested,
    ConversationAssigned,
    ConversationClosed,
    ConversationCloseRequested,
    ConversationOffered,
    ConversationOverflowed,
    ConversationQueued,
    MessageReceived,
    Presence,
    PresenceChanged,
    Strategy,
)
from schemas.limits import LIST_MAX, QueueName, SkillName

INTERVALS_MAX = 2016
"""Three weeks of 15-minute intervals."""
STREAMS_MAX = 100
GROUPS_MAX = 50
AGENTS_MAX = 2000
"""Agents of one group online in one interval."""
ARRIVALS_MAX = 20_000.0
"""Expected new conversations of one stream in one interval."""
SECONDS_MAX = 30 * 86400.0
NAME_MAX = 64

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX, pattern=r"^[A-Za-z0-9_.-]+$")]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=SECONDS_MAX)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
ROUTED = frozenset({Strategy.PREFERRED, Strategy.FALLBACK, Strategy.QUEUE})


class DemandStream(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """New conversations of one queue on one channel, per interval, and how they are handled."""

    queue: QueueName
    channel: Channel
    arrivals: Annotated[
        tuple[Annotated[float, msgspec.Meta(ge=0, le=ARRIVALS_MAX)], ...],
        msgspec.Meta(min_length=1, max_length=INTERVALS_MAX),
    ]
    """Expected new conversations in each interval (the forecast, or a recorded day)."""
    holding_seconds: Seconds = 900.0
    """Mean time a conversation holds its agent's slot, from assignment to close."""
    first_reply_seconds: Annotated[float, msgspec.Meta(ge=0, le=SECONDS_MAX)] = 30.0
    """Time from the assignment to the agent's first reply."""
    returning_share: Share = 0.3
    """Share of arrivals from a customer who wrote earlier in the run."""
    patience_seconds: Seconds | None = None
    """Mean time a customer waits for a person before giving up; None: nobody gives up."""


class Demand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    start: Annotated[float, msgspec.Meta(ge=0)]
    """Start of the first interval (seconds since the Unix epoch)."""
    interval_seconds: Literal[900, 1800, 3600]
    streams: Annotated[tuple[DemandStream, ...], msgspec.Meta(min_length=1, max_length=STREAMS_MAX)]
    exact_counts: bool = False
    """The arrivals are counts that came (a recorded day), not expectations: each interval
    gets exactly that many (rounded), at uniform times."""

    def __post_init__(self) -> None:
        if len({len(stream.arrivals) for stream in self.streams}) != 1:
            raise ValueError("every stream needs one figure per interval, the same count")

    @property
    def intervals(self) -> int:
        return len(self.streams[0].arrivals)


class AgentGroup(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Agents alike in queues, skills and capacity, and how many of them work each interval."""

    name: Name
    queues: Annotated[tuple[QueueName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    capacity: dict[Channel, Annotated[int, msgspec.Meta(ge=0, le=100)]]
    """Concurrent conversations per channel; a channel absent here is not served."""
    staffed: Annotated[
        tuple[Annotated[int, msgspec.Meta(ge=0, le=AGENTS_MAX)], ...],
        msgspec.Meta(max_length=INTERVALS_MAX),
    ] = ()
    """Agents online in each interval (one figure per interval)."""
    shifts: Annotated[tuple[Shift, ...], msgspec.Meta(max_length=SHIFTS_MAX)] = ()
    """Or the group's shifts in local time, which ``router.planning.shifts`` turns into
    ``staffed`` before a run (the API and ``switchboard staffing`` do)."""


class Roster(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    groups: Annotated[tuple[AgentGroup, ...], msgspec.Meta(min_length=1, max_length=GROUPS_MAX)]

    def __post_init__(self) -> None:
        names = [group.name for group in self.groups]
        if len(set(names)) != len(names):
            raise ValueError("group names must differ")


class ServiceTarget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``share`` of each interval's arrivals get a person within ``within_seconds``."""

    within_seconds: Annotated[float, msgspec.Meta(ge=0, le=SECONDS_MAX)] = 60.0
    share: Share = 0.8


class IntervalOutcome(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    agents: int
    """Agents scheduled online (all groups)."""
    arrivals: int
    assigned: int
    """Arrivals a person was assigned to, at any time."""
    within_target: int
    abandoned: int
    overflowed: int
    service_level: float | None
    """``within_target / arrivals``; None without arrivals."""
    met: bool
    wait_mean_seconds: float | None
    wait_p90_seconds: float | None
    with_preferred: int
    preferred_hits: int
    preferred_hit_ratio: float | None
    occupancy: float | None
    """Busy slots over online agents' slots, time-averaged; None with nobody online."""
    wait_estimates: int = 0
    """Live wait estimates published for the interval's arrivals and judged (assigned)."""
    wait_estimate_median_error_seconds: float | None = None
    """Median absolute error of those estimates."""
    wait_estimate_p90_error_seconds: float | None = None


class StaffingReport(msgspec.Struct, frozen=True, kw_only=True):
    intervals: tuple[IntervalOutcome, ...]
    arrivals: int
    service_level: float | None
    intervals_met: int
    preferred_hit_ratio: float | None
    occupancy: float | None
    simulated_seconds: float
    wait_estimates: int = 0
    """Every live wait estimate judged, and their errors (see ``IntervalOutcome``)."""
    wait_estimate_median_error_seconds: float | None = None
    wait_estimate_p90_error_seconds: float | None = None
    wait_estimate_bias_seconds: float | None = None
    """Mean of actual minus estimated wait: above 0, customers waited longer than told."""


# -- what is drawn before the run --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float
    interval: int
    stream: int
    number: int
    customer: str
    holding: float
    patience: float | None

    def __deepcopy__(self, memo: dict[int, object]) -> Arrival:
        return self  # immutable: copies of a run share their arrivals


def draw_arrivals(demand: Demand, seed: int) -> list[Arrival]:
    """Every arrival of the run, in time order, from ``seed`` alone."""
    rng = random.Random(seed)
    drawn: list[tuple[float, int, int, float, float | None, float]] = []
    for interval in range(demand.intervals):
        begin = demand.start + interval * demand.interval_seconds
        for index, stream in enumerate(demand.streams):
            expected = stream.arrivals[interval]
            count = round(expected) if demand.exact_counts else _poisson(rng, expected)
            for _ in range(count):
                at = begin + rng.random() * demand.interval_seconds
                holding = rng.expovariate(1.0 / stream.holding_seconds)
                patience = (
                    None
                    if stream.patience_seconds is None
                    else rng.expovariate(1.0 / stream.patience_seconds)
                )
                drawn.append((at, interval, index, holding, patience, rng.random()))
    drawn.sort(key=lambda item: (item[0], item[2]))
    arrivals: list[Arrival] = []
    customers: list[str] = []
    for number, (at, interval, index, holding, patience, returning) in enumerate(drawn):
        stream = demand.streams[index]
        if customers and returning < stream.returning_share:
            customer = customers[int(rng.random() * len(customers))]
        else:
            customer = f"customer-{len(customers) + 1}"
            customers.append(customer)
        arrivals.append(Arrival(at, interval, index, number, customer, holding, patience))
    return arrivals


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count: Knuth's product method in chunks of mean 30 (``exp(-mean)`` would
    underflow for large means)."""
    count = 0
    while mean > 0:
        chunk = min(mean, 30.0)
        mean -= chunk
        limit = math.exp(-chunk)
        product = rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    return count


# -- the run -------------------------------------------------------------------------------

_ARRIVE, _SHIFT, _ACCEPT, _REPLY, _CLOSE, _ABANDON = range(6)


@dataclass(slots=True)
class _Tally:
    arrivals: int = 0
    assigned: int = 0
    within_target: int = 0
    abandoned: int = 0
    overflowed: int = 0
    with_preferred: int = 0
    preferred_hits: int = 0
    waits: list[float] = field(default_factory=list)
    estimate_errors: list[float] = field(default_factory=list)
    """Actual minus estimated wait, of each wait estimate published."""
    busy_slot_seconds: float = 0.0
    slot_seconds: float = 0.0


@dataclass(slots=True)
class _Conversation:
    arrival: Arrival
    assigned: bool = False
    closed: bool = False
    estimates: list[tuple[float, float]] = field(default_factory=list)
    """(made at, expected wait) of each estimate published while it waited."""


class Run:
    """One simulation: the engine's state, the pending actions, the tallies. Deep-copied at
    interval boundaries by the search, so each candidate continues the same past."""

    def __init__(
        self,
        domain: str,
        policy: DomainPolicy,
        demand: Demand,
        roster: Roster,
        target: ServiceTarget,
        arrivals: Sequence[Arrival],
    ) -> None:
        self.domain = domain
        self.demand = demand
        self.groups = list(roster.groups)
        self.target = target
        self.state: DomainState = new_state(domain, policy)
        self.now = demand.start
        self.tallies = [_Tally() for _ in range(demand.intervals)]
        self.conversations: dict[str, _Conversation] = {}
        self.online: dict[str, int] = {group.name: 0 for group in self.groups}
        self.working: list[str] = []
        """The agents put online (the engine may set some away)."""
        self.meter = HandlingMeter()
        self.actions: list[tuple[float, int, int, str]] = []
        self.arrivals = arrivals
        self.next_arrival = 0
        self.seq = 0
        self.ids = 0
        for group in self.groups:
            for number in range(1, max(group.staffed, default=0) + 1):
                self._apply(
                    AgentRegistered(
                        id=self._id("agent"),
                        domain=domain,
                        occurred_at=self.now,
                        agent_id=_agent_id(group.name, number),
                        skills=group.skills,
                        queues=group.queues,
                        capacity=dict(group.capacity),
                    )
                )
        for interval in range(demand.intervals):
            self._push(demand.start + interval * demand.interval_seconds, _SHIFT, str(interval))

    def __deepcopy__(self, memo: dict[int, object]) -> Run:
        """A copy that continues independently; what no run changes is shared."""
        for shared in (self.arrivals, self.demand, self.target, self.state.policy):
            memo[id(shared)] = shared
        memo[id(self.state.compiled)] = self.state.compiled
        clone = Run.__new__(Run)
        for name, value in vars(self).items():
            setattr(clone, name, copy.deepcopy(value, memo))
        return clone

    # the clock and the queue of actions

    @property
    def end(self) -> float:
        last = self.demand.start + self.demand.intervals * self.demand.interval_seconds
        return last + self.target.within_seconds

    def _id(self, kind: str) -> str:
        self.ids += 1
        return f"{kind}-{self.ids}"

    def _push(self, at: float, kind: int, subject: str) -> None:
        self.seq += 1
        heapq.heappush(self.actions, (at, kind, self.seq, subject))

    def run_until(self, until: float) -> None:
        """Play every action and deadline due before ``until``."""
        until = min(until, self.end)
        while True:
            candidates: list[float] = []
            if self.actions:
                candidates.append(self.actions[0][0])
            if self.next_arrival < len(self.arrivals):
                candidates.append(self.arrivals[self.next_arrival].at)
            due = next_deadline(self.state)
            if due is not None:
                candidates.append(max(due, self.now))
            at = min(candidates, default=until)
            if at >= until:
                self._advance(until)
                return
            self._advance(at)
            if due is not None and max(due, self.now) <= at:
                self._observe(tick(self.state, self.now))
            elif self.actions and self.actions[0][0] <= at:
                _, kind, _, subject = heapq.heappop(self.actions)
                self._act(kind, subject)
            else:
                self._arrive(self.arrivals[self.next_arrival])
                self.next_arrival += 1

    def _advance(self, at: float) -> None:
        """Move the clock to ``at``, counting busy and online slots in each interval crossed."""
        if at <= self.now:
            return
        busy = slots = 0
        for agent_id in self.working:
            agent = self.state.agents[agent_id]
            if agent.presence is Presence.ONLINE:
                busy += sum(agent.load.values())
                slots += sum(agent.capacity.values())
        demand = self.demand
        while self.now < at:
            interval = int((self.now - demand.start) // demand.interval_seconds)
            if interval >= demand.intervals:
                self.now = at
                return
            boundary = demand.start + (interval + 1) * demand.interval_seconds
            step = min(at, boundary) - self.now
            tally = self.tallies[interval]
            tally.busy_slot_seconds += busy * step
            tally.slot_seconds += slots * step
            self.now = min(at, boundary)

    # inputs to the engine

    def _apply(self, event: EngineInput) -> None:
        self._observe(apply(self.state, event, self.now))

    def _arrive(self, arrival: Arrival) -> None:
        stream = self.demand.streams[arrival.stream]
        conversation_id = f"arrival-{arrival.number}"
        self.conversations[conversation_id] = _Conversation(arrival)
        self.tallies[arrival.interval].arrivals += 1
        if arrival.patience is not None:
            self._push(arrival.at + arrival.patience, _ABANDON, conversation_id)
        self._apply(
            MessageReceived(
                id=conversation_id,
                domain=self.domain,
                occurred_at=self.now,
                channel=stream.channel,
                endpoint="simulated",
                customer_address=arrival.customer,
                customer_id=arrival.customer,
                conversation_key=conversation_id,
                provider_message_id=conversation_id,
                queue=stream.queue,
            )
        )

    def _act(self, kind: int, subject: str) -> None:
        if kind == _SHIFT:
            self._shift(int(subject))
            return
        if kind == _ACCEPT:
            conversation_id, agent_id = subject.split(" ", 1)
            self._apply(
                ConversationAcceptRequested(
                    id=self._id("accept"),
                    domain=self.domain,
                    occurred_at=self.now,
                    conversation_id=conversation_id,
                    agent_id=agent_id,
                )
            )
            return
        if kind == _REPLY:
            conversation_id, agent_id = subject.split(" ", 1)
            conversation = self.state.conversations.get(conversation_id)
            owner = None if conversation is None else conversation.owner
            if conversation is None or owner is None or owner.agent_id != agent_id:
                return
            self._apply(
                AgentReplied(
                    id=self._id("reply"),
                    domain=self.domain,
                    occurred_at=self.now,
                    conversation_id=conversation_id,
                    agent_id=agent_id,
                    outbound_id=self._id("outbound"),
                    channel=conversation.channel,
                )
            )
            return
        tracked = self.conversations.get(subject)
        if tracked is None or tracked.closed or (kind == _ABANDON and tracked.assigned):
            return
        if kind == _ABANDON:
            self.tallies[tracked.arrival.interval].abandoned += 1
        self._close(subject, "abandoned" if kind == _ABANDON else "resolved")

    def _close(self, conversation_id: str, reason: str) -> None:
        if conversation_id not in self.state.conversations:
            return
        self._apply(
            ConversationCloseRequested(
                id=self._id("close"),
                domain=self.domain,
                occurred_at=self.now,
                conversation_id=conversation_id,
                reason=reason,
            )
        )

    def _shift(self, interval: int) -> None:
        for group in self.groups:
            wanted = group.staffed[interval] if interval < len(group.staffed) else 0
            was = self.online[group.name]
            if wanted == was:
                continue
            self.online[group.name] = wanted
            if wanted > was:
                numbers, status = range(was + 1, wanted + 1), Presence.ONLINE
            else:
                numbers, status = range(wanted + 1, was + 1), Presence.OFFLINE
            for number in numbers:
                agent_id = _agent_id(group.name, number)
                if status is Presence.ONLINE:
                    self.working.append(agent_id)
                else:
                    self.working.remove(agent_id)
                self._apply(
                    PresenceChanged(
                        id=self._id("presence"),
                        domain=self.domain,
                        occurred_at=self.now,
                        agent_id=agent_id,
                        status=status,
                    )
                )

    # what the engine decided

    def _observe(self, effects: Sequence[object]) -> None:
        for effect in effects:
            if isinstance(effect, SaveConversation):
                self.meter.observe(self.domain, effect.record, self.now)
                continue
            if not isinstance(effect, Emit):
                continue
            event = effect.event
            if isinstance(event, ConversationQueued):
                self._estimate(event.conversation_id)
            elif isinstance(event, ConversationAssigned):
                self._assigned(event)
            elif isinstance(event, ConversationOffered):
                self._push(self.now, _ACCEPT, f"{event.conversation_id} {event.agent_id}")
            elif isinstance(event, ConversationOverflowed):
                tracked = self.conversations.get(event.conversation_id)
                if tracked is not None and not tracked.assigned and not tracked.closed:
                    self.tallies[tracked.arrival.interval].overflowed += 1
                    self._push(self.now, _CLOSE, event.conversation_id)
            elif isinstance(event, ConversationClosed):
                tracked = self.conversations.pop(event.conversation_id, None)
                if tracked is not None:
                    tracked.closed = True

    def _estimate(self, conversation_id: str) -> None:
        tracked = self.conversations.get(conversation_id)
        waiting = self.state.conversations.get(conversation_id)
        if tracked is None or tracked.assigned or waiting is None:
            return
        expected = conversation_wait(self.state, waiting, self.meter, self.now)
        if expected is not None:
            tracked.estimates.append((self.now, expected))

    def _assigned(self, event: ConversationAssigned) -> None:
        tracked = self.conversations.get(event.conversation_id)
        if tracked is None or tracked.assigned:
            return
        tracked.assigned = True
        arrival = tracked.arrival
        tally = self.tallies[arrival.interval]
        tally.estimate_errors.extend(
            (self.now - made) - expected for made, expected in tracked.estimates
        )
        waited = self.now - arrival.at
        tally.assigned += 1
        tally.waits.append(waited)
        if waited <= self.target.within_seconds:
            tally.within_target += 1
        if event.preferred_agent_id is not None and event.strategy in ROUTED:
            tally.with_preferred += 1
            tally.preferred_hits += event.agent_id == event.preferred_agent_id
        stream = self.demand.streams[arrival.stream]
        if stream.first_reply_seconds < arrival.holding:
            self._push(
                self.now + stream.first_reply_seconds,
                _REPLY,
                f"{event.conversation_id} {event.agent_id}",
            )
        self._push(self.now + arrival.holding, _CLOSE, event.conversation_id)

    # the figures

    def outcome(self, interval: int) -> IntervalOutcome:
        tally = self.tallies[interval]
        service = tally.within_target / tally.arrivals if tally.arrivals else None
        mean = sum(tally.waits) / len(tally.waits) if tally.waits else None
        p90_wait = percentile(tally.waits, 0.9)
        median, p90 = _error_quantiles(tally.estimate_errors)
        return IntervalOutcome(
            start=self.demand.start + interval * self.demand.interval_seconds,
            agents=sum(
                group.staffed[interval] if interval < len(group.staffed) else 0
                for group in self.groups
            ),
            arrivals=tally.arrivals,
            assigned=tally.assigned,
            within_target=tally.within_target,
            abandoned=tally.abandoned,
            overflowed=tally.overflowed,
            service_level=_rounded(service),
            met=self.met(interval),
            wait_mean_seconds=_rounded(mean),
            wait_p90_seconds=_rounded(p90_wait),
            with_preferred=tally.with_preferred,
            preferred_hits=tally.preferred_hits,
            preferred_hit_ratio=_rounded(
                tally.preferred_hits / tally.with_preferred if tally.with_preferred else None
            ),
            occupancy=_rounded(
                tally.busy_slot_seconds / tally.slot_seconds if tally.slot_seconds else None
            ),
            wait_estimates=len(tally.estimate_errors),
            wait_estimate_median_error_seconds=median,
            wait_estimate_p90_error_seconds=p90,
        )

    def met(self, interval: int) -> bool:
        """The interval's share within target reaches the target's: the one test of the
        search and of the report (``share * arrivals`` rounds: 0.55 * 100 is above 55)."""
        tally = self.tallies[interval]
        return not tally.arrivals or tally.within_target / tally.arrivals >= self.target.share

    def report(self) -> StaffingReport:
        outcomes = tuple(self.outcome(interval) for interval in range(self.demand.intervals))
        arrivals = sum(tally.arrivals for tally in self.tallies)
        within = sum(tally.within_target for tally in self.tallies)
        with_preferred = sum(tally.with_preferred for tally in self.tallies)
        hits = sum(tally.preferred_hits for tally in self.tallies)
        errors = [error for tally in self.tallies for error in tally.estimate_errors]
        median, p90 = _error_quantiles(errors)
        busy = sum(tally.busy_slot_seconds for tally in self.tallies)
        slots = sum(tally.slot_seconds for tally in self.tallies)
        return StaffingReport(
            intervals=outcomes,
            arrivals=arrivals,
            service_level=_rounded(within / arrivals if arrivals else None),
            intervals_met=sum(outcome.met for outcome in outcomes),
            preferred_hit_ratio=_rounded(hits / with_preferred if with_preferred else None),
            occupancy=_rounded(busy / slots if slots else None),
            simulated_seconds=self.end - self.demand.start,
            wait_estimates=len(errors),
            wait_estimate_median_error_seconds=median,
            wait_estimate_p90_error_seconds=p90,
            wait_estimate_bias_seconds=_rounded(sum(errors) / len(errors) if errors else None),
        )


def _agent_id(group: str, number: int) -> str:
    return f"{group}-{number:04d}"


def _error_quantiles(errors: Sequence[float]) -> tuple[float | None, float | None]:
    """The median and p90 of the absolute errors."""
    absolute = [abs(error) for error in errors]
    return _rounded(percentile(absolute, 0.5)), _rounded(percentile(absolute, 0.9))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- the entry points ---------------------------------------------------------------------


def simulate(
    domain: str,
    policy: DomainPolicy,
    demand: Demand,
    roster: Roster,
    target: ServiceTarget,
    *,
    seed: int = 1,
) -> StaffingReport:
    """Run ``roster`` against ``demand`` under ``policy``; the figures per interval."""
    check_roster(demand, roster)
    run = Run(domain, policy, demand, roster, target, draw_arrivals(demand, seed))
    run.run_until(run.end)
    return run.report()


def staffed_as(group: AgentGroup, staffed: Sequence[int]) -> AgentGroup:
    return msgspec.structs.replace(group, staffed=tuple(staffed))


def check_roster(demand: Demand, roster: Roster) -> None:
    for group in roster.groups:
        if len(group.staffed) != demand.intervals:
            raise ValueError(
                f"group {group.name}: {len(group.staffed)} staffing figures for"
                f" {demand.intervals} intervals"
            )
