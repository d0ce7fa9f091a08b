"""Agent commands (rule 9): accept, close, transfer.

Each command is answered with ``command.completed`` or ``command.rejected`` and a reason;
a refused command changes nothing: every check runs before the first mutation.
"""

from __future__ import annotations

from router.engine.assignment import assign, close, end_assignment
from router.engine.call import Call
from router.engine.deadlines import withdraw_offer
from router.engine.events import conversation_event
from router.engine.lifecycle import set_status
from router.engine.outbound import record_consent
from router.engine.records import ConversationStatus
from router.engine.routing import enqueue, enter_step, fall_back, held_outside_hours, try_step
from router.engine.state import Conversation, LadderStep
from schemas import (
    CommandCompleted,
    CommandRejected,
    ConversationAcceptRequested,
    ConversationCloseRequested,
    ConversationDeclineRequested,
    ConversationReassigned,
    ConversationTransferRequested,
    ConversationUpdated,
    ConversationUpdateRequested,
    CustomerConsentRequested,
    Strategy,
)

_WAITING = ConversationStatus.WAITING
_OFFERED = ConversationStatus.OFFERED
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_OVERFLOWED = ConversationStatus.OVERFLOWED


def reject(call: Call, command_id: str, reason: str, conversation_id: str | None = None) -> None:
    call.emit(
        CommandRejected(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            command_id=command_id,
            reason=reason,
            conversation_id=conversation_id,
        )
    )


def complete(call: Call, command_id: str, conversation_id: str | None = None) -> None:
    call.emit(
        CommandCompleted(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            command_id=command_id,
            conversation_id=conversation_id,
        )
    )


def on_accept(call: Call, event: ConversationAcceptRequested) -> None:
    state = call.state
    conversation = state.conversations.get(event.conversation_id)
    agent = state.agents.get(event.agent_id)
    refusal: str | None = None
    if conversation is None:
        refusal = "unknown_conversation"
    elif agent is None:
        refusal = "unknown_agent"
    elif conversation.status is _OFFERED:
        if conversation.offered_to is not agent:
            refusal = "not_offered_to_agent"
    elif conversation.status in (_WAITING, _OVERFLOWED):
        reason = agent.unavailable_reason(conversation.channel)
        if reason != "chosen":
            refusal = reason
    elif conversation.status is ConversationStatus.BOT:
        refusal = "bot_owned"  # a person takes it with a takeover
    elif conversation.owner is agent:
        refusal = "already_owner"
    else:
        refusal = "owned_by_another_agent"
    if refusal is not None or conversation is None or agent is None:
        reject(call, event.id, refusal or "unknown", event.conversation_id)
        return
    if conversation.status is _OFFERED:
        offer = conversation.assignment
        assert offer is not None
        agent.missed_offers = 0
        call.agents[agent.agent_id] = agent
        assign(call, conversation, agent, offer.strategy, offer)
    else:
        conversation.step_index = LadderStep.MANUAL
        assign(call, conversation, agent, Strategy.MANUAL, None)
    complete(call, event.id, conversation.conversation_id)


def on_update(call: Call, event: ConversationUpdateRequested) -> None:
    """Set a conversation's priority, required skills, language or attributes (its owner,
    or an admin). Waiting, it re-enters its step with the new context at once: a priority
    reorders its waiting list, required skills change who may take it."""
    state = call.state
    conversation = commanded(call, event.id, event.conversation_id, event.agent_id)
    if conversation is None:
        return
    if event.priority is not None:
        conversation.priority = event.priority
    conversation.set_context(
        conversation.skills if event.skills is None else tuple(sorted(set(event.skills))),
        conversation.language if event.language is None else event.language,
        conversation.attributes if event.attributes is None else dict(event.attributes),
        state.policy.language_skill,
    )
    call.conversations[conversation.conversation_id] = conversation
    holder = conversation.owner or conversation.offered_to
    call.emit(
        conversation_event(
            ConversationUpdated,
            call,
            conversation,
            agent_id=None if holder is None else holder.agent_id,
            priority=conversation.priority,
            skills=conversation.skills,
            language=conversation.language,
            attributes=dict(conversation.attributes or {}),
        )
    )
    if conversation.status is _WAITING and conversation.wait_entry is not None:
        if conversation.step_index >= 0:
            state.leave_line(conversation)
            try_step(call, conversation)  # an agent may suit it now; else it waits again
        elif conversation.step_index == LadderStep.PREFERRED and not (
            conversation.preferred is not None
            and conversation.required <= state.agents[conversation.preferred].skill_set
        ):
            state.schedule(conversation, None, None)
            state.leave_line(conversation)
            fall_back(call, conversation, "missing_skill")
        else:
            enqueue(state, conversation)  # held for its preferred agent, in its new order
    complete(call, event.id, conversation.conversation_id)


def on_decline(call: Call, event: ConversationDeclineRequested) -> None:
    """The agent turns down an offer made to them: it moves on at once (the agent passed
    over, ``declined``), and it is not a missed offer."""
    state = call.state
    conversation = state.conversations.get(event.conversation_id)
    agent = state.agents.get(event.agent_id)
    refusal: str | None = None
    if conversation is None:
        refusal = "unknown_conversation"
    elif agent is None:
        refusal = "unknown_agent"
    elif conversation.status is not _OFFERED or conversation.offered_to is not agent:
        refusal = "not_offered_to_agent"
    if refusal is not None or conversation is None:
        reject(call, event.id, refusal or "unknown", event.conversation_id)
        return
    withdraw_offer(
        call, conversation, "declined", missed=False, end_reason=f"declined:{event.reason}"
    )
    complete(call, event.id, conversation.conversation_id)


def acting_agent_refusal(conversation: Conversation, agent_id: str | None) -> str | None:
    """Agents act only on conversations they own; ``None`` is an admin."""
    if agent_id is None:
        return None
    owner = conversation.owner
    if owner is None or owner.agent_id != agent_id:
        return "not_owner"
    return None


def commanded(
    call: Call, command_id: str, conversation_id: str, agent_id: str | None
) -> Conversation | None:
    """The conversation a command names, when the acting agent (None: an admin) may act on
    it; else the command is rejected with why, and None."""
    conversation = call.state.conversations.get(conversation_id)
    refusal = (
        "unknown_conversation"
        if conversation is None
        else acting_agent_refusal(conversation, agent_id)
    )
    if refusal is not None:
        reject(call, command_id, refusal, conversation_id)
        return None
    return conversation


def on_close(call: Call, event: ConversationCloseRequested) -> None:
    conversation = commanded(call, event.id, event.conversation_id, event.agent_id)
    if conversation is None:
        return
    call.conversations[conversation.conversation_id] = conversation
    close(call, conversation, event.reason)
    complete(call, event.id, conversation.conversation_id)


def on_transfer(call: Call, event: ConversationTransferRequested) -> None:
    state = call.state
    conversation = state.conversations.get(event.conversation_id)
    if conversation is None:
        reject(call, event.id, "unknown_conversation", event.conversation_id)
        return
    refusal = acting_agent_refusal(conversation, event.agent_id)
    target = None
    queue = None
    if refusal is None and (event.to_agent_id is None) == (event.to_queue is None):
        refusal = "needs_exactly_one_of_to_agent_id_or_to_queue"
    if refusal is None and event.to_agent_id is not None:
        target = state.agents.get(event.to_agent_id)
        if target is None:
            refusal = "unknown_agent"
        elif target is conversation.owner:
            refusal = "already_owner"
        elif target is conversation.offered_to:
            refusal = "already_offered"
        else:
            reason = target.unavailable_reason(conversation.channel)
            refusal = None if reason == "chosen" else reason
    if refusal is None and event.to_queue is not None:
        queue = state.compiled.queues.get(event.to_queue)
        if queue is None:
            refusal = "unknown_queue"
    if refusal is not None:
        reject(call, event.id, refusal, event.conversation_id)
        return
    previous = conversation.owner
    was_owned = conversation.status in (_ASSIGNED, _IDLE)
    end_assignment(call, conversation, "transferred")
    if queue is not None:
        conversation.queue = queue
    call.emit(
        conversation_event(
            ConversationReassigned,
            call,
            conversation,
            from_agent_id=None if previous is None else previous.agent_id,
            to_agent_id=None if target is None else target.agent_id,
            to_queue=event.to_queue,
        )
    )
    state.leave_line(conversation)
    if was_owned:
        conversation.waiting_since = call.now
    if target is not None:
        conversation.step_index = LadderStep.TRANSFER
        assign(call, conversation, target, Strategy.TRANSFER, None)
    else:
        set_status(call, conversation, _WAITING)
        conversation.waiting_since = call.now
        conversation.fell_back = False
        conversation.preferred = None
        conversation.passed_over = None if previous is None else {previous.agent_id: "transferred"}
        if not held_outside_hours(call, conversation):
            enter_step(call, conversation, 0)
    complete(call, event.id, conversation.conversation_id)


def on_consent_requested(call: Call, event: CustomerConsentRequested) -> None:
    """An admin records a customer's consent (``router.engine.outbound`` rule 4)."""
    record_consent(
        call,
        call.state.customer_of(event.customer_id),
        event.channel,
        event.customer_address,
        event.consent,
        source="api",
        message_id=None,
        actor=event.agent_id,
        scope=event.scope,
    )
    complete(call, event.id)
