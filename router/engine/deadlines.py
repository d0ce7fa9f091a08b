"""What a conversation's deadline does when it fires, by ``DeadlineKind`` (``FIRE``).

A conversation has at most one deadline (``Conversation.deadline`` and ``deadline_kind``):
its step gives up (rule 4), its offer expires (rule 6), its slot is released or it closes
after inactivity (rule 8), its queue opens (business hours). ``router.engine.core.tick`` pops them in (due, conversation
id) order and clears each before firing it.
"""

from __future__ import annotations

from collections.abc import Callable

from router.engine.assignment import (
    close,
    end_assignment,
    free_slot,
    schedule_inactivity,
)
from router.engine.call import Call
from router.engine.errors import EngineError
from router.engine.events import conversation_event
from router.engine.lifecycle import set_status
from router.engine.records import ConversationStatus, DeadlineKind
from router.engine.routing import fall_back, reclaim, route, try_step
from router.engine.state import Conversation, LadderStep
from schemas import ConversationSnoozed, Presence

_WAITING = ConversationStatus.WAITING
_OFFERED = ConversationStatus.OFFERED
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_ONLINE = Presence.ONLINE
_PREFERRED = LadderStep.PREFERRED
_AFFINITY = LadderStep.AFFINITY
_AFTER_HOURS = LadderStep.AFTER_HOURS


def _fire_step(call: Call, conversation: Conversation) -> None:
    if conversation.status is not _WAITING:
        raise EngineError(f"step deadline of {conversation.status} {conversation.conversation_id}")
    fall_back(call, conversation, "timeout")


def _fire_offer(call: Call, conversation: Conversation) -> None:
    if conversation.status is not _OFFERED or conversation.offered_to is None:
        raise EngineError(f"offer deadline of {conversation.status} {conversation.conversation_id}")
    withdraw_offer(call, conversation, "offer_missed", missed=True)


def withdraw_offer(
    call: Call,
    conversation: Conversation,
    reason: str,
    *,
    missed: bool,
    end_reason: str | None = None,
) -> None:
    """The pending offer ends unaccepted (expired, declined, the agent left): the agent is
    passed over with ``reason`` and routing goes on at the step. Only an expiry is a
    ``missed`` offer: N in a row set the agent away. The offer's record ends with
    ``end_reason`` (default: ``reason``). At a step that never times out, once everyone who
    could take it there has passed it over, a new round starts (nobody passed over): the
    step would otherwise hold it for good (one with a wait falls back when it ends)."""
    agent = conversation.offered_to
    assert agent is not None
    call.state.schedule(conversation, None, None)
    end_assignment(call, conversation, end_reason or reason)
    set_status(call, conversation, _WAITING)
    passed = conversation.passed_over
    if passed is None:
        passed = conversation.passed_over = {}
    passed[agent.agent_id] = reason
    if missed:
        agent.missed_offers += 1
        limit = call.state.policy.away_after_missed_offers
        if limit is not None and agent.missed_offers >= limit and agent.presence is _ONLINE:
            agent.presence = Presence.AWAY
            for channel in sorted(set(agent.capacity) | set(agent.version)):
                call.state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    if conversation.step_index in (_PREFERRED, _AFFINITY):
        fall_back(call, conversation, reason)
    elif conversation.step_until is not None and conversation.step_until <= call.now:
        fall_back(call, conversation, "timeout")
    else:
        if conversation.step_until is None and _everyone_passed(call, conversation, passed):
            conversation.passed_over = None
        try_step(call, conversation)


def _everyone_passed(call: Call, conversation: Conversation, passed: dict[str, str]) -> bool:
    """Every agent of the step's pool who could take the conversation now (online, serving
    its channel, suiting it) has passed it over. One who serves another channel, or is
    away or offline, is no one to wait for: counting them held it for good."""
    pool = conversation.queue.steps[conversation.step_index].pool
    channel = conversation.channel
    return all(
        agent.agent_id in passed
        for agent in call.state.agents.values()
        if pool in agent.pools
        and agent.presence is Presence.ONLINE
        and agent.capacity.get(channel, 0) > 0
        and agent.suits(conversation)
    )


def _fire_release(call: Call, conversation: Conversation) -> None:
    owner = conversation.owner
    if conversation.status is not _ASSIGNED or owner is None:
        raise EngineError(f"release of {conversation.status} {conversation.conversation_id}")
    set_status(call, conversation, _IDLE)
    free_slot(call, owner, conversation)
    schedule_inactivity(call.state, conversation)


def _fire_opens(call: Call, conversation: Conversation) -> None:
    if conversation.status is not _WAITING or conversation.step_index != _AFTER_HOURS:
        raise EngineError(f"opening of {conversation.status} {conversation.conversation_id}")
    # Waiting since it arrived: those who waited overnight go first.
    route(call, conversation, None, since=conversation.waiting_since)


def _fire_snooze(call: Call, conversation: Conversation) -> None:
    """A snooze's time came: back to the owner if they may take it, else routed with them
    as its last owner (``reclaim``)."""
    owner = conversation.owner
    if conversation.status is not _IDLE or owner is None:
        raise EngineError(f"snooze of {conversation.status} {conversation.conversation_id}")
    wake(call, conversation)
    conversation.last_activity_at = call.now  # inactivity counts from its coming back
    reclaim(call, conversation)


def wake(call: Call, conversation: Conversation) -> None:
    """A snooze ends (its time came, or the customer wrote): say so."""
    owner = conversation.owner
    assert owner is not None
    conversation.snoozed_until = None
    call.conversations[conversation.conversation_id] = conversation
    call.emit(
        conversation_event(
            ConversationSnoozed, call, conversation, agent_id=owner.agent_id, until=None
        )
    )


def _fire_close(call: Call, conversation: Conversation) -> None:
    call.conversations[conversation.conversation_id] = conversation
    close(call, conversation, "inactive")


FIRE: dict[DeadlineKind, Callable[[Call, Conversation], None]] = {
    DeadlineKind.STEP: _fire_step,
    DeadlineKind.OFFER: _fire_offer,
    DeadlineKind.RELEASE: _fire_release,
    DeadlineKind.CLOSE: _fire_close,
    DeadlineKind.OPENS: _fire_opens,
    DeadlineKind.SNOOZE: _fire_snooze,
}
