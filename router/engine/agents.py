"""Agents and customers: profiles, presence (rule 7), owners, replies, login pacing and
shifts.

An agent who comes online, gains capacity or frees a slot is drained: they take waiting
work when the call finishes. Login pacing and shift boundaries are the agent's own
deadlines (due, agent id, kind), stale unless the agent's ``pace_due`` / ``shift_due``
still equals the due.
"""

from __future__ import annotations

import heapq

from router.engine.assignment import end_assignment, schedule_inactivity
from router.engine.call import Call
from router.engine.commands import complete, reject
from router.engine.deadlines import withdraw_offer
from router.engine.effects import DropAgent, Effect
from router.engine.lifecycle import set_status
from router.engine.policy import ShiftEnd
from router.engine.records import AgentDeadlineKind, ConversationStatus
from router.engine.routing import fall_back, finish, take_held, take_one
from router.engine.schedule import on_shift
from router.engine.state import (
    COMPACT_SLACK,
    Agent,
    AgentDeadline,
    Conversation,
    DomainState,
    LadderStep,
    compact,
)
from schemas import (
    AgentRegistered,
    AgentRemoved,
    AgentReplied,
    Channel,
    CustomerOwnerSet,
    Presence,
    PresenceChanged,
)

_WAITING = ConversationStatus.WAITING
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_OFFERED = ConversationStatus.OFFERED
_OVERFLOWED = ConversationStatus.OVERFLOWED
_ONLINE = Presence.ONLINE
_PREFERRED = LadderStep.PREFERRED


def set_profile(
    state: DomainState,
    agent: Agent,
    name: str,
    skills: tuple[str, ...],
    queues: tuple[str, ...],
    capacity: dict[Channel, int],
) -> None:
    agent.name = name
    agent.skills = skills
    agent.queues = queues
    agent.capacity = {channel: n for channel, n in capacity.items() if n > 0}
    for channel in agent.capacity:
        agent.load.setdefault(channel, 0)  # allocated once, not on the first assignment
    agent.skill_set = skill_set = frozenset(skills)
    agent.pools = tuple(pool for pool in state.compiled.pools if pool.admits(queues, skill_set))


def on_agent_registered(call: Call, event: AgentRegistered) -> None:
    state = call.state
    agent = state.agents.get(event.agent_id)
    if agent is None:
        agent = state.agents[event.agent_id] = Agent(event.agent_id)
    set_profile(state, agent, event.name, event.skills, event.queues, event.capacity)
    agent.schedule = event.schedule
    schedule_shift(state, agent, call.now)
    for channel in agent.capacity:
        agent.idle_since.setdefault(channel, call.now)
    for channel in sorted(set(agent.capacity) | set(agent.version)):
        state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    _drain_all(call, agent)


def on_presence_changed(call: Call, event: PresenceChanged) -> None:
    state = call.state
    agent = state.agents.get(event.agent_id)
    if agent is None or agent.presence is event.status:
        return
    agent.presence = event.status
    if event.status is _ONLINE:
        agent.missed_offers = 0
    for channel in sorted(set(agent.capacity) | set(agent.version)):
        state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    if event.status is _ONLINE:
        if state.policy.login_pace is not None:
            _pace_next(call, agent)
        else:
            _drain_all(call, agent)


def on_agent_removed(call: Call, event: AgentRemoved) -> None:
    """Offboarding: the agent leaves the domain and is nobody's preferred agent from now
    on (``routing.route`` skips agents who left). What they held goes back to routing at
    once, in conversation id order: an offer made to them moves on (not a miss); each
    conversation they own goes through the ladder with them passed over (``agent_removed``),
    whoever wrote last; one held for them as its preferred agent falls back. Customers'
    owner and last agent keep naming them as history."""
    state = call.state
    agent = state.agents.get(event.agent_id)
    if agent is None:
        reject(call, event.id, "unknown_agent")
        return
    agent.presence = Presence.OFFLINE  # no slot: nothing freed below comes back to them
    agent.pace_due = agent.shift_due = None
    _reindex_all(state, agent)
    del state.agents[agent.agent_id]
    affected = sorted(
        (
            conversation
            for conversation in state.conversations.values()
            if conversation.owner is agent
            or conversation.offered_to is agent
            or (conversation.step_index == _PREFERRED and conversation.preferred == agent.agent_id)
        ),
        key=_conversation_id,
    )
    for conversation in affected:
        if conversation.status is _OFFERED and conversation.offered_to is agent:
            withdraw_offer(call, conversation, "agent_removed", missed=False)
        elif conversation.owner is agent:
            _rehome(call, conversation, agent, "agent_removed")
        elif conversation.status is _WAITING:
            state.schedule(conversation, None, None)
            fall_back(call, conversation, "agent_removed")
    call.agents.pop(agent.agent_id, None)
    call.effects.append(DropAgent(agent.agent_id))
    complete(call, event.id)


def on_customer_owner_set(call: Call, event: CustomerOwnerSet) -> None:
    customer = call.customer(call.state.customer_of(event.customer_id))
    customer.owner_agent_id = event.agent_id


def on_agent_replied(call: Call, event: AgentReplied) -> None:
    conversation = call.state.conversations.get(event.conversation_id)
    if conversation is None:
        return
    now = call.now
    conversation.last_agent_reply_at = now
    if conversation.first_response_at is None:
        conversation.first_response_at = now
    conversation.last_activity_at = now
    if conversation.status in (_ASSIGNED, _IDLE, _OVERFLOWED):
        schedule_inactivity(call.state, conversation)
    call.conversations[conversation.conversation_id] = conversation


def _drain_all(call: Call, agent: Agent) -> None:
    for channel in sorted(agent.capacity):
        call.drain.append((agent, channel))


def _reindex_all(state: DomainState, agent: Agent) -> None:
    for channel in sorted(set(agent.capacity) | set(agent.version)):
        state.reindex(agent, channel)


# -- pacing and shifts: the agents' own deadlines -------------------------------------


def next_agent_deadline(state: DomainState) -> float | None:
    heap = state.agent_deadlines
    while heap:
        if _live_agent_deadline(state, heap[0]) is not None:
            return heap[0][0]
        heapq.heappop(heap)
    return None


def tick_agents(state: DomainState, now: float, effects: list[Effect]) -> bool:
    """Fire the agents' pacing and shift deadlines due at or before ``now`` (due, agent
    id); whether any fired."""
    heap = state.agent_deadlines
    fired = False
    while heap and heap[0][0] <= now:
        entry = heapq.heappop(heap)
        agent = _live_agent_deadline(state, entry)
        if agent is None:
            continue
        due, agent_id, kind = entry
        call = Call(state, now, f"agent-deadline:{agent_id}:{due!r}:{kind}")
        if kind == AgentDeadlineKind.PACE:
            _pace_next(call, agent)
        else:
            _fire_shift(call, agent)
        effects.extend(finish(call))
        fired = True
    return fired


def _push_agent_deadline(state: DomainState, entry: AgentDeadline) -> None:
    """Each agent has a pacing and a shift deadline at most: the others are stale."""
    heapq.heappush(state.agent_deadlines, entry)
    if len(state.agent_deadlines) > 4 * len(state.agents) + COMPACT_SLACK:
        compact(state.agent_deadlines, lambda kept: _live_agent_deadline(state, kept))


def _live_agent_deadline(state: DomainState, entry: AgentDeadline) -> Agent | None:
    agent = state.agents.get(entry[1])
    if agent is None:
        return None
    current = agent.pace_due if entry[2] == AgentDeadlineKind.PACE else agent.shift_due
    return agent if current == entry[0] else None


def _pace_next(call: Call, agent: Agent) -> None:
    """Login pacing: hand the agent at most one waiting conversation now; if one was
    handed, no automatic hand-over until ``login_pace`` seconds later (a deadline)."""
    state = call.state
    agent.pace_due = None
    _reindex_all(state, agent)
    call.agents[agent.agent_id] = agent
    channels = [channel for channel in sorted(agent.capacity) if agent.has_slot(channel)]
    # What is held for them first, on any channel (rule 3), then their pools' lines.
    handed = any(take_held(call, agent, channel) for channel in channels) or any(
        take_one(call, agent, channel) for channel in channels
    )
    pace = state.policy.login_pace
    if handed and pace is not None:
        agent.pace_due = due = call.now + pace
        _push_agent_deadline(state, (due, agent.agent_id, AgentDeadlineKind.PACE))
        _reindex_all(state, agent)
    else:  # nothing to pace (any more: a new policy without it), or nothing waiting
        _drain_all(call, agent)


def schedule_shift(state: DomainState, agent: Agent, now: float) -> None:
    """Re-homing at shift end needs the next boundary of the agent's schedule."""
    agent.shift_due = None
    if agent.schedule is None or state.policy.on_shift_end is not ShiftEnd.REHOME:
        return
    _, boundary = on_shift(agent.schedule, now)
    if boundary is not None:
        agent.shift_due = boundary
        _push_agent_deadline(state, (boundary, agent.agent_id, AgentDeadlineKind.SHIFT))


def waiting_on_business(conversation: Conversation) -> bool:
    """The customer wrote last: no agent reply since their last message."""
    reply = conversation.last_agent_reply_at
    return reply is None or reply < conversation.last_customer_message_at


def _fire_shift(call: Call, agent: Agent) -> None:
    """A shift boundary: at shift end, the agent's owned conversations waiting on the
    business go back through the ladder (the agent passed over); those waiting on the
    customer stay theirs."""
    state = call.state
    schedule = agent.schedule
    call.agents[agent.agent_id] = agent
    if schedule is None or state.policy.on_shift_end is not ShiftEnd.REHOME:
        agent.shift_due = None  # the policy changed since the deadline was set
        return
    working, _ = on_shift(schedule, call.now)
    if not working:
        owned = sorted(
            (
                conversation
                for conversation in state.conversations.values()
                if conversation.owner is agent
                and conversation.status in (_ASSIGNED, _IDLE)
                and waiting_on_business(conversation)
            ),
            key=_conversation_id,
        )
        for conversation in owned:
            _rehome(call, conversation, agent, "shift_ended")
        # The slots they freed are not theirs to fill again at once: their shift is over.
        call.drain[:] = [(other, channel) for other, channel in call.drain if other is not agent]
    schedule_shift(state, agent, call.now)


def _conversation_id(conversation: Conversation) -> str:
    return conversation.conversation_id


def _rehome(call: Call, conversation: Conversation, agent: Agent, reason: str) -> None:
    """The owner can no longer keep the conversation: through the ladder past them."""
    call.state.schedule(conversation, None, None)
    end_assignment(call, conversation, reason)
    set_status(call, conversation, _WAITING)
    conversation.waiting_since = call.now
    conversation.preferred = agent.agent_id
    conversation.passed_over = {agent.agent_id: reason}
    conversation.step_until = None
    conversation.step_index = LadderStep.PREFERRED
    fall_back(call, conversation, reason)
