"""Live wait estimates: how long a waiting conversation will wait for an agent, from now.

The model (a queue at saturation: the only time anyone waits):

- **Handling rate.** An agent frees slots on a channel, when all of them are taken, at
  ``rate = capacity / slot time``: conversations finished per second, where the slot time
  is how long a conversation held one of the agent's slots (assigned until it went idle,
  was transferred, closed or re-routed). ``HandlingMeter`` measures it from the records
  the engine saves: an exponentially weighted mean of the agent's recent slot times on
  the channel (the newest weighs ``AGENT_WEIGHT``); an agent with fewer than
  ``MIN_SAMPLES`` of them counts at the queue's mean on the channel (weight
  ``QUEUE_WEIGHT``), else is unmeasured.
- **Queue line.** The conversation at position ``k`` of a line waits for ``k`` slots to
  free among the agents serving the line, after the conversations held for those agents
  (their preferred holds go first) and minus the free slots they already have:
  ``d = k + held - free_slots`` departures. Departures of a pool whose agents free slots
  at rates ``r_i`` come at the total rate ``R = sum(r_i)`` (an unmeasured agent counts at
  the mean of the measured ones), so the ``d``-th comes after ``d / R`` seconds on
  average (exact for exponential slot times: the time is Gamma(``d``, ``R``)). ``d <= 0``:
  0 seconds. Nobody serving the line, or no rate measured at all: unknown (None).
- **Preferred hold.** Held at position ``j`` for an agent online with ``f`` free slots and
  rate ``r``: ``T`` ~ Gamma(``j - f``, ``r``) until the agent takes it, but the hold gives
  up at its deadline ``D`` seconds from now (``wait_until``), and the conversation then
  joins the queue's first step behind those waiting there (the queue estimate ``Q`` of a
  newcomer). Expected wait ``E[min(T, D)] + P(T > D) * Q``: at most ``D + Q`` and at most
  ``j / r`` plus the late share of ``Q``. The agent away, offline or unmeasured: ``D + Q``.
  ``Q`` unknown: unknown, unless the agent surely takes it in time.

``expected_wait`` takes plain numbers; ``conversation_wait`` reads them from the engine's
state and a meter. Deliberately simple: lines of other pools competing for the same
agents, and the steps after the current one, are not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from router.engine import (
    ConversationRecord,
    ConversationStatus,
    DomainState,
    line_length,
    line_position,
    serving_agents,
    step_line,
)
from router.engine.state import Conversation, LadderStep
from schemas import Channel, Presence

AGENT_WEIGHT = 0.05
"""Weight of an agent's newest slot time in their mean (about their last 40 count)."""
QUEUE_WEIGHT = 0.01
"""Weight of a queue's newest slot time on a channel in its mean."""
MIN_SAMPLES = 5
"""Slot times an agent's (or a queue's) own mean needs before it is used."""
HOLDING_MAX = 1_000_000
"""Slots being held that a meter remembers (the oldest are forgotten beyond)."""
MEANS_MAX = 200_000
"""(agent, channel) and (queue, channel) means a meter keeps (the oldest go beyond)."""

_ASSIGNED = ConversationStatus.ASSIGNED
_PREFERRED = LadderStep.PREFERRED
_ONLINE = Presence.ONLINE


@dataclass(frozen=True, slots=True)
class LineState:
    """A queue line as the estimate sees it."""

    waiting: int
    """Conversations waiting on the line."""
    free_slots: int
    """Free slots of the agents serving it, on its channel."""
    rates: tuple[float | None, ...]
    """Per agent serving it: slots freed per second at full load (None: unmeasured)."""
    held: int = 0
    """Conversations held for those agents on the channel (they go first)."""


@dataclass(frozen=True, slots=True)
class PreferredHold:
    """The preferred agent a conversation is held for."""

    online: bool
    load: int
    """Slots in use on the channel."""
    capacity: int
    rate: float | None
    """Slots freed per second at full load (None: unmeasured)."""
    seconds_left: float
    """Until the hold gives up (``wait_until - now``)."""


def pool_rate(rates: Sequence[float | None]) -> float | None:
    """The total rate of a pool: the measured rates, and the mean of them for each
    unmeasured agent (None: nobody, or nobody measured)."""
    known = [rate for rate in rates if rate is not None and rate > 0]
    if not known:
        return None
    total = math.fsum(known)
    return total + (len(rates) - len(known)) * total / len(known)


def queue_wait(position: int, line: LineState) -> float | None:
    """Seconds until ``position`` on ``line`` is assigned: ``d / R`` (see the model)."""
    departures = position + line.held - line.free_slots
    if departures <= 0:
        return 0.0
    total = pool_rate(line.rates)
    if total is None:
        return None
    return departures / total


def truncated_gamma(shape: int, rate: float, limit: float) -> tuple[float, float]:
    """For ``T`` ~ Gamma(``shape``, ``rate``) (the ``shape``-th event of a Poisson process
    of ``rate``): ``(E[min(T, limit)], P(T > limit))``.

    ``E[min(T, D)] = (1 / rate) * sum(P(N >= i) for i in 1..shape)`` and
    ``P(T > D) = P(N < shape)`` for ``N`` ~ Poisson(``rate * D``), summed in log space."""
    mean_events = rate * limit
    if mean_events <= 0:
        return 0.0, 1.0
    log_mean = math.log(mean_events)
    below = 0.0
    """P(N <= m) as m grows."""
    expected = 0.0
    for m in range(shape):
        below = min(1.0, below + math.exp(-mean_events + m * log_mean - math.lgamma(m + 1)))
        expected += 1.0 - below
    return expected / rate, below


def expected_wait(
    position: int, line: LineState, hold: PreferredHold | None = None
) -> float | None:
    """Expected seconds from now until the conversation is assigned (see the model).

    Without ``hold``: the conversation is at ``position`` (1: next) on ``line``. With
    ``hold``: it is at ``position`` among those held for the preferred agent, and ``line``
    is the queue's first step, which it joins at the hold's deadline. None: unknown."""
    if hold is None:
        return _rounded(queue_wait(position, line))
    free = hold.capacity - hold.load if hold.online else 0
    departures = position - free
    if hold.online and departures <= 0:
        return 0.0
    left = max(0.0, hold.seconds_left)
    later = queue_wait(line.waiting + 1, line)
    if not hold.online or hold.rate is None or hold.rate <= 0:
        return None if later is None else _rounded(left + later)
    in_time, late = truncated_gamma(departures, hold.rate, left)
    if later is None:
        return _rounded(in_time) if late < 1e-9 else None
    return _rounded(in_time + late * later)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(max(0.0, seconds), 3)


class _Mean:
    """An exponentially weighted mean and how many values it has seen."""

    __slots__ = ("count", "value")

    def __init__(self, value: float) -> None:
        self.value = value
        self.count = 1

    def add(self, value: float, weight: float) -> None:
        self.count += 1
        # The first values weigh 1/count, so the mean does not lean on the first one.
        self.value += (value - self.value) * max(weight, 1.0 / self.count)


class HandlingMeter:
    """Slot times measured from the conversation records the engine saves (fed with the
    time they were saved at), per (domain, agent, channel) and (domain, queue, channel).

    A slot is held from the save that shows the conversation assigned to an agent until
    the first save that shows it otherwise (idle, closed, waiting again, another owner).
    Memory is bounded: ``HOLDING_MAX`` slots being held, ``MEANS_MAX`` means."""

    def __init__(self, *, holding_max: int = HOLDING_MAX, means_max: int = MEANS_MAX) -> None:
        self._holding: dict[tuple[str, str], tuple[str, Channel, str, float]] = {}
        """(domain, conversation) -> (agent, channel, queue, since) of slots held."""
        self._agents: dict[tuple[str, str, Channel], _Mean] = {}
        self._queues: dict[tuple[str, str, Channel], _Mean] = {}
        self._holding_max = holding_max
        self._means_max = means_max

    def observe(self, domain: str, record: ConversationRecord, now: float) -> None:
        """A conversation record saved at ``now``."""
        owner = record.owner_agent_id if record.status is _ASSIGNED else None
        self.observe_owner(domain, record.conversation_id, owner, record.channel, record.queue, now)

    def holds(self, domain: str, conversation_id: str) -> bool:
        """A slot of the conversation is being held (by the owner its last save showed)."""
        return (domain, conversation_id) in self._holding

    def observe_owner(
        self,
        domain: str,
        conversation_id: str,
        owner: str | None,
        channel: Channel,
        queue: str,
        now: float,
    ) -> None:
        """A conversation saved at ``now`` held by ``owner`` (None: by no agent): what
        ``observe`` reads of a record, for saves that carry no whole record (a message's
        activity alone, ``router.engine.SaveActivity``)."""
        key = (domain, conversation_id)
        held = self._holding.get(key)
        if held is not None:
            if held[0] == owner:
                return
            del self._holding[key]
            self.note_slot_time(domain, held[0], held[1], held[2], now - held[3])
        if owner is not None:
            if len(self._holding) >= self._holding_max:
                del self._holding[next(iter(self._holding))]
            self._holding[key] = (owner, channel, queue, now)

    def release(self, domains: Container[str]) -> None:
        """Drop the slots held in ``domains``: their conversations are saved by another
        process now (their partition left this one). Should the partition come back, a
        slot kept would run from a save before the absence to one after it, the absence
        counted as handling time; it starts at the first save after the return instead,
        as at any takeover."""
        for key in [key for key in self._holding if key[0] in domains]:
            del self._holding[key]

    def note_slot_time(
        self, domain: str, agent_id: str, channel: Channel, queue: str, seconds: float
    ) -> None:
        """One slot time: ``agent_id`` held a conversation of ``queue`` for ``seconds``."""
        seconds = max(0.0, seconds)
        for means, key, weight in (
            (self._agents, (domain, agent_id, channel), AGENT_WEIGHT),
            (self._queues, (domain, queue, channel), QUEUE_WEIGHT),
        ):
            mean = means.get(key)
            if mean is None:
                if len(means) >= self._means_max:
                    del means[next(iter(means))]
                means[key] = _Mean(seconds)
            else:
                mean.add(seconds, weight)

    def slot_time(self, domain: str, agent_id: str, queue: str, channel: Channel) -> float | None:
        """The agent's mean slot time on the channel, else the queue's (None: neither has
        ``MIN_SAMPLES`` yet)."""
        for mean in (
            self._agents.get((domain, agent_id, channel)),
            self._queues.get((domain, queue, channel)),
        ):
            if mean is not None and mean.count >= MIN_SAMPLES and mean.value > 0:
                return mean.value
        return None

    def rate(
        self, domain: str, agent_id: str, queue: str, channel: Channel, capacity: int
    ) -> float | None:
        """Slots the agent frees per second at full load: ``capacity / slot time``."""
        seconds = self.slot_time(domain, agent_id, queue, channel)
        return None if seconds is None or capacity <= 0 else capacity / seconds


LineReader = Callable[[DomainState, Conversation, int, HandlingMeter], LineState]


def line_state(
    state: DomainState, conversation: Conversation, step_index: int, meter: HandlingMeter
) -> LineState:
    """The queue step ``step_index``'s line for the conversation, read from the state."""
    channel = conversation.channel
    queue = conversation.queue.name
    domain = state.domain
    rates: list[float | None] = []
    free = held = 0
    for agent in serving_agents(state, conversation, step_index):
        capacity = agent.capacity.get(channel, 0)
        rates.append(meter.rate(domain, agent.agent_id, queue, channel, capacity))
        if agent.has_slot(channel):
            free += capacity - agent.load.get(channel, 0)
        held += line_length(state, agent.held.get(channel))
    waiting = line_length(state, step_line(state, conversation, step_index))
    return LineState(waiting=waiting, free_slots=free, rates=tuple(rates), held=held)


def conversation_wait(
    state: DomainState,
    conversation: Conversation,
    meter: HandlingMeter,
    now: float,
    lines: LineReader = line_state,
    position: int | None = None,
) -> float | None:
    """``expected_wait`` of a waiting conversation, its inputs read from the state and the
    meter (``lines`` reads a queue line: a caller may cache it; ``position``: the one the
    caller read, else read now). None: on no line (held outside business hours), or
    unknown."""
    if position is None:
        position = line_position(state, conversation)
    if position is None:
        return None
    if conversation.step_index != _PREFERRED:
        line = lines(state, conversation, conversation.step_index, meter)
        return expected_wait(position, line)
    agent = state.agents.get(conversation.preferred or "")
    if agent is None:
        return None
    channel = conversation.channel
    until = conversation.step_until
    hold = PreferredHold(
        online=agent.presence is _ONLINE and agent.pace_due is None,
        load=agent.load.get(channel, 0),
        capacity=agent.capacity.get(channel, 0),
        rate=meter.rate(
            state.domain,
            agent.agent_id,
            conversation.queue.name,
            channel,
            agent.capacity.get(channel, 0),
        ),
        seconds_left=0.0 if until is None else until - now,
    )
    return expected_wait(position, lines(state, conversation, 0, meter), hold)
