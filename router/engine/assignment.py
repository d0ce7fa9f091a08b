"""Owner periods and the slots they hold: offers, assignments, their end, and closing.

An offer or an assignment takes a capacity slot of its agent; ending it frees the slot,
and the agent is then drained (``router.engine.routing.finish``). Inactivity deadlines
follow ownership (rule 8).
"""

from __future__ import annotations

import msgspec

from router.engine.affinity import bump_affinity
from router.engine.call import Call
from router.engine.errors import EngineError
from router.engine.events import conversation_event
from router.engine.lifecycle import set_status
from router.engine.records import AssignmentRecord, ConversationStatus, DeadlineKind
from router.engine.state import Agent, Conversation, DomainState, WindowState
from schemas import (
    CandidateNote,
    ConversationAssigned,
    ConversationClosed,
    ConversationOffered,
    Strategy,
)

MAX_CANDIDATES = 10
"""Candidate notes kept per assignment (the chosen agent is always the last one)."""

_ZERO = 0.0
_OFFERED = ConversationStatus.OFFERED
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_CLOSED = ConversationStatus.CLOSED
_WINDOW_CLOSED = WindowState.CLOSED


def candidates(
    state: DomainState, conversation: Conversation, chosen: Agent
) -> tuple[CandidateNote, ...]:
    """Who else was considered and why they were passed over (kept short)."""
    passed = conversation.passed_over
    preferred_id = conversation.preferred
    if passed is None and (preferred_id is None or preferred_id == chosen.agent_id):
        return chosen.chosen
    passed = passed or {}
    notes: list[CandidateNote] = []
    if preferred_id is not None and preferred_id != chosen.agent_id:
        reason = passed.get(preferred_id)
        if reason is None:
            preferred = state.agents.get(preferred_id)
            reason = (
                "unknown_agent" if preferred is None else _passed_reason(preferred, conversation)
            )
        notes.append(CandidateNote(agent_id=preferred_id, reason=reason))
    for agent_id in sorted(passed):
        if len(notes) >= MAX_CANDIDATES - 1:
            break
        if agent_id != preferred_id and agent_id != chosen.agent_id:
            notes.append(CandidateNote(agent_id=agent_id, reason=passed[agent_id]))
    notes.append(CandidateNote(agent_id=chosen.agent_id, reason="chosen"))
    return tuple(notes)


def _passed_reason(agent: Agent, conversation: Conversation) -> str:
    """Why the preferred agent did not take the conversation: no slot on its channel, or,
    with one, a skill it needs, the queue's ``max_per_agent``, or login pacing."""
    reason = agent.unavailable_reason(conversation.channel)
    if reason != "chosen":
        return reason
    if not conversation.required <= agent.skill_set:
        return "missing_skill"
    if not agent.under_limit(conversation):
        return "at_queue_limit"
    if agent.pace_due is not None:
        return "paced"
    return reason


def hand_to(call: Call, conversation: Conversation, agent: Agent, strategy: Strategy) -> None:
    """The engine picked ``agent``: an offer in offer mode, else an assignment."""
    if conversation.queue.offer:
        offer(call, conversation, agent, strategy)
    else:
        assign(call, conversation, agent, strategy, None)


def offer(call: Call, conversation: Conversation, agent: Agent, strategy: Strategy) -> None:
    state = call.state
    now = call.now
    state.leave_line(conversation)
    record = AssignmentRecord(
        assignment_id=call.new_id(),
        conversation_id=conversation.conversation_id,
        agent_id=agent.agent_id,
        channel=conversation.channel,
        queue=conversation.queue.name,
        strategy=strategy,
        step=conversation.step_name,
        waited_seconds=now - conversation.waiting_since,
        candidates=candidates(state, conversation, agent),
        offered_at=now,
    )
    conversation.assignment = record
    call.assignments[record.assignment_id] = record
    set_status(call, conversation, _OFFERED)
    conversation.offered_to = agent
    take_slot(call, agent, conversation)
    expires_at = now + conversation.queue.offer_timeout
    state.schedule(conversation, expires_at, DeadlineKind.OFFER)
    call.emit(
        conversation_event(
            ConversationOffered,
            call,
            conversation,
            agent_id=agent.agent_id,
            strategy=strategy,
            step=conversation.step_name,
            expires_at=expires_at,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == _WINDOW_CLOSED,
        )
    )


def assign(
    call: Call,
    conversation: Conversation,
    agent: Agent,
    strategy: Strategy,
    offer: AssignmentRecord | None,
) -> None:
    """Make ``agent`` the owner; ``offer`` is the accepted offer (its slot is held)."""
    state = call.state
    now = call.now
    state.leave_line(conversation)
    if offer is not None:
        record = msgspec.structs.replace(offer, accepted_at=now)
    else:
        record = AssignmentRecord(
            assignment_id=call.new_id(),
            conversation_id=conversation.conversation_id,
            agent_id=agent.agent_id,
            channel=conversation.channel,
            queue=conversation.queue.name,
            strategy=strategy,
            step=conversation.step_name,
            waited_seconds=(now - conversation.waiting_since) or _ZERO,
            candidates=candidates(state, conversation, agent),
            offered_at=now,
            accepted_at=now,
        )
        take_slot(call, agent, conversation)
    conversation.assignment = record
    call.assignments[record.assignment_id] = record
    set_status(call, conversation, _ASSIGNED)
    conversation.owner = agent
    conversation.offered_to = None
    conversation.step_until = None
    conversation.last_activity_at = now
    schedule_inactivity(state, conversation)
    conversation.had_human = True
    handoff = conversation.handoff if conversation.handoff_open else None
    conversation.handoff_open = False
    customer = call.customer(conversation.customer_id)
    customer.last_agent_id = agent.agent_id
    customer.last_handled_at = now
    bump_affinity(
        call, conversation.customer_id, agent.agent_id, state.policy.affinity.assigned_weight
    )
    call.emit(
        conversation_event(
            ConversationAssigned,
            call,
            conversation,
            agent_id=agent.agent_id,
            assignment_id=record.assignment_id,
            strategy=record.strategy,
            step=record.step,
            waited_seconds=record.waited_seconds,
            preferred_agent_id=conversation.preferred,
            candidates=record.candidates,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == _WINDOW_CLOSED,
            handoff=handoff,
        )
    )


def end_assignment(call: Call, conversation: Conversation, reason: str) -> None:
    """Close the current owner period (or pending offer) and free its slot."""
    record = conversation.assignment
    if record is not None:
        ended = msgspec.structs.replace(record, ended_at=call.now, end_reason=reason)
        call.assignments[ended.assignment_id] = ended
        conversation.assignment = None
    if conversation.status is _ASSIGNED and conversation.owner is not None:
        free_slot(call, conversation.owner, conversation)
    elif conversation.status is _OFFERED and conversation.offered_to is not None:
        free_slot(call, conversation.offered_to, conversation)
    conversation.owner = None
    conversation.offered_to = None
    call.conversations[conversation.conversation_id] = conversation


def take_slot(call: Call, agent: Agent, conversation: Conversation) -> None:
    channel = conversation.channel
    agent.load[channel] = agent.load.get(channel, 0) + 1
    key = (conversation.queue.name, channel)
    agent.queue_load[key] = agent.queue_load.get(key, 0) + 1
    agent.idle_since[channel] = call.now
    call.state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent


def free_slot(call: Call, agent: Agent, conversation: Conversation) -> None:
    channel = conversation.channel
    load = agent.load.get(channel, 0)
    if load <= 0:
        raise EngineError(f"agent {agent.agent_id} has no {channel} slot to free")
    agent.load[channel] = load - 1
    key = (conversation.queue.name, channel)
    held = agent.queue_load.get(key, 0)
    if held <= 1:
        agent.queue_load.pop(key, None)
    else:
        agent.queue_load[key] = held - 1
    call.state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    call.drain.append((agent, channel))


def schedule_inactivity(state: DomainState, conversation: Conversation) -> None:
    """Rule 8: release the slot of an assigned conversation, close an idle/overflowed one
    (a snoozed one keeps its snooze deadline: it does not close while snoozed)."""
    if conversation.snoozed_until is not None:
        state.schedule(conversation, conversation.snoozed_until, DeadlineKind.SNOOZE)
        return
    compiled = state.compiled
    channel = conversation.channel
    if conversation.status is _ASSIGNED:
        release = compiled.release_after[channel]
        if release is not None:
            state.schedule(
                conversation, conversation.last_activity_at + release, DeadlineKind.RELEASE
            )
            return
    close = compiled.close_after[channel]
    state.schedule(
        conversation,
        None if close is None else conversation.last_activity_at + close,
        DeadlineKind.CLOSE,
    )


def close(call: Call, conversation: Conversation, reason: str, *, announce: bool = True) -> None:
    """End the conversation: its owner period ends, it leaves the state (the last save
    carries when and why), and ``conversation.closed`` says so unless ``announce`` is
    false (an erasure: ``customer.erased`` names it instead)."""
    state = call.state
    owner = conversation.owner
    bot = conversation.bot
    contained = bot is not None and not conversation.had_human
    if reason == "resolved" and owner is not None and conversation.status in (_ASSIGNED, _IDLE):
        weight = state.policy.affinity.resolved_weight
        bump_affinity(call, conversation.customer_id, owner.agent_id, weight)
    end_assignment(call, conversation, f"closed:{reason}")
    set_status(call, conversation, _CLOSED)
    call.closed[conversation.conversation_id] = (call.now, reason)
    state.leave_line(conversation)
    conversation.step_until = None
    state.schedule(conversation, None, None)
    del state.conversations[conversation.conversation_id]
    if state.by_key.get(conversation.key) is conversation:
        del state.by_key[conversation.key]
    if not announce:
        return
    call.emit(
        conversation_event(
            ConversationClosed,
            call,
            conversation,
            agent_id=None if owner is None else owner.agent_id,
            reason=reason,
            bot_id=bot,
            contained=contained,
        )
    )
