"""Customer messages (rules 1 and 2): the fast path, and the ``_ON_MESSAGE`` table.

A message for an open conversation is filed under it and handled by the conversation's
status; otherwise it opens a new conversation (whose id is the message id) and routes it.
"""

from __future__ import annotations

from collections.abc import Callable

from router.engine.assignment import end_assignment, schedule_inactivity
from router.engine.bots import bot_first, on_bot_message
from router.engine.call import Call, make_id
from router.engine.deadlines import wake
from router.engine.effects import Effect, Emit, SaveActivity, SaveMessage
from router.engine.errors import EngineError
from router.engine.events import conversation_event
from router.engine.identity import link_unless_linked
from router.engine.outbound import (
    answered_expectation,
    answering_queue,
    forget_expectation,
    record_message_consent,
)
from router.engine.records import ConversationStatus, DeadlineKind
from router.engine.routing import reclaim, route
from router.engine.snapshots import conversation_activity
from router.engine.state import Conversation, DomainState, WindowState
from router.engine.windows import note_window
from schemas import MessageChanged, MessageChangeRouted, MessageReceived, MessageRouted, Presence

_WAITING = ConversationStatus.WAITING
_OFFERED = ConversationStatus.OFFERED
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_OVERFLOWED = ConversationStatus.OVERFLOWED
_BOT = ConversationStatus.BOT
_CLOSED = ConversationStatus.CLOSED
_ONLINE = Presence.ONLINE
_WINDOW_CLOSED = WindowState.CLOSED


def fast_path(state: DomainState, message: MessageReceived, now: float) -> list[Effect] | None:
    """Rule 1 without the bookkeeping of a full call: owned, owner online (None: the
    message needs the general path, ``on_message``). Only the conversation's activity
    changes, and only it is saved (``SaveActivity``): the general path saves the whole
    record, which equals the last one with this activity (the fast path property)."""
    conversation = state.by_key.get(message.conversation_key)
    if conversation is None or conversation.status is not _ASSIGNED:
        return None
    if message.consent is not None:
        return None  # the general path records it
    known = message.known_customer_id
    if known is not None and known != conversation.customer_id:
        return None  # a lookup names another customer: the general path may link them
    other = message.other_identity
    if other is not None and other not in state.identities and other != conversation.customer_id:
        return None  # a second identity to link: the general path links it
    owner = conversation.owner
    if owner is None or owner.presence is not _ONLINE:
        return None
    conversation.last_customer_message_at = now
    conversation.last_activity_at = now
    conversation.message_count += 1
    if message.reply_window_ends_at is not None:
        note_window(state, conversation, message.reply_window_ends_at, now)
    release = state.compiled.release_after[conversation.channel]
    heap_due = conversation.heap_due
    if release is not None and heap_due is not None and now + release >= heap_due:
        conversation.deadline = now + release  # the heap entry stays; it re-pushes when popped
        conversation.deadline_kind = DeadlineKind.RELEASE
    else:
        schedule_inactivity(state, conversation)
    # Spelled out, not built by ``conversation_event``: on this path, the keyword dict
    # that helper fills costs a sixth of the time per message. The fast path property
    # (tests/engine/test_fast_path.py) checks the event equals the general path's.
    routed = MessageRouted(
        id=make_id(f"{message.id}/0"),  # the first id of a call for this message
        domain=state.domain,
        occurred_at=now,
        conversation_id=conversation.conversation_id,
        channel=conversation.channel,
        customer_id=conversation.customer_id,
        queue=conversation.queue.name,
        message_id=message.id,
        provider_message_id=message.provider_message_id,
        agent_id=owner.agent_id,
        reply_window_ends_at=conversation.window_ends_at,
        reply_window_closed=conversation.window_state == _WINDOW_CLOSED,
    )
    return [
        SaveMessage(message, conversation.conversation_id),
        Emit(routed),
        SaveActivity(conversation.conversation_id, conversation_activity(conversation)),
    ]


def on_message(call: Call, message: MessageReceived) -> None:
    state = call.state
    now = call.now
    if message.known_customer_id is not None:
        link_unless_linked(call, message.customer_id, message.known_customer_id)
    if message.other_identity is not None:
        link_unless_linked(call, message.other_identity, message.customer_id, "provider")
    conversation = state.by_key.get(message.conversation_key)
    customer_id = state.customer_of(message.customer_id)
    if message.consent is not None:
        record_message_consent(call, customer_id, message)
    answered = None
    if conversation is None:
        if message.id in state.conversations:
            return  # the opening message of an open conversation, delivered again
        if message.consent is not None:
            return  # outbound rule 4: a keyword opens no conversation
        compiled = state.compiled
        answered = answered_expectation(call, customer_id, message.channel, state.conversations)
        customer = state.customers.get(customer_id)
        if customer is not None and customer.expectation is not None:
            forget_expectation(call, customer)  # here only: the fast path never opens one
        queues = compiled.queues
        # A queue the domain no longer has is passed over: the answerer's, then the
        # message's, then the default.
        queue = queues.get(answering_queue(answered, now) or "") or queues.get(message.queue or "")
        if queue is None:
            queue = queues[compiled.default_queue]
        endpoint = state.interned.setdefault(message.endpoint, message.endpoint)
        conversation = Conversation(
            message.id if answered is None else answered.conversation_id,
            message.channel,
            endpoint,
            message.customer_address,
            customer_id,
            message.conversation_key,
            queue,
            message.priority,
            now,
        )
        attributes = dict(message.attributes)
        if answered is not None and answered.attributes:
            attributes = {**answered.attributes, **attributes}
        if message.skills or message.language or attributes:
            conversation.set_context(
                message.skills,
                message.language,
                attributes,
                state.policy.language_skill,
            )
        state.conversations[conversation.conversation_id] = conversation
        state.by_key[conversation.key] = conversation
        call.effects.append(SaveMessage(message, conversation.conversation_id))
        if message.reply_window_ends_at is not None:
            note_window(state, conversation, message.reply_window_ends_at, now)
        if not bot_first(call, conversation, message, answered):
            route(call, conversation, None)
    else:
        call.effects.append(SaveMessage(message, conversation.conversation_id))
        conversation.last_customer_message_at = now
        conversation.last_activity_at = now
        conversation.message_count += 1
        if message.reply_window_ends_at is not None:
            note_window(state, conversation, message.reply_window_ends_at, now)
        if conversation.status is _BOT:
            on_bot_message(call, conversation, message)
        else:
            _ON_MESSAGE[conversation.status](call, conversation)
    call.conversations[conversation.conversation_id] = conversation
    owner = conversation.owner
    call.emit(
        conversation_event(
            MessageRouted,
            call,
            conversation,
            message_id=message.id,
            provider_message_id=message.provider_message_id,
            agent_id=owner.agent_id
            if owner is not None and conversation.status is _ASSIGNED
            else None,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == _WINDOW_CLOSED,
            answers_outbound_id=None if answered is None else answered.outbound_id,
            bot_id=conversation.bot,
        )
    )


def _message_to_assigned(call: Call, conversation: Conversation) -> None:
    owner = conversation.owner
    assert owner is not None
    if owner.presence is _ONLINE:
        schedule_inactivity(call.state, conversation)
        return
    end_assignment(call, conversation, "owner_unavailable")
    route(call, conversation, owner)


def _message_to_idle(call: Call, conversation: Conversation) -> None:
    if conversation.snoozed_until is not None:
        wake(call, conversation)
    reclaim(call, conversation)


def _message_while_routing(call: Call, conversation: Conversation) -> None:
    """Waiting or offered: the message is filed, routing goes on as it was."""


def _message_to_overflowed(call: Call, conversation: Conversation) -> None:
    route(call, conversation, None)


def _message_to_closed(call: Call, conversation: Conversation) -> None:
    raise EngineError(f"closed conversation {conversation.conversation_id} is still indexed")


def _message_to_bot(call: Call, conversation: Conversation) -> None:
    raise EngineError(f"bot-owned {conversation.conversation_id} takes messages with the message")


_ON_MESSAGE: dict[ConversationStatus, Callable[[Call, Conversation], None]] = {
    _ASSIGNED: _message_to_assigned,
    _IDLE: _message_to_idle,
    _WAITING: _message_while_routing,
    _OFFERED: _message_while_routing,
    _OVERFLOWED: _message_to_overflowed,
    _BOT: _message_to_bot,
    _CLOSED: _message_to_closed,
}
"""What a customer message does to an open conversation, by its status (a bot-owned one:
``router.engine.bots.on_bot_message``, which needs the message)."""


def on_message_changed(call: Call, change: MessageChanged) -> None:
    """A customer reacted to, edited or deleted a message: shown to whoever has the open
    conversation (``message.change_routed``); nothing about routing changes. A change in a
    conversation that is no longer open reaches nobody."""
    conversation = call.state.by_key.get(change.conversation_key)
    if conversation is None:
        return
    owner = conversation.owner
    call.emit(
        conversation_event(
            MessageChangeRouted,
            call,
            conversation,
            change_event_id=change.id,
            provider_message_id=change.provider_message_id,
            change=change.change,
            reaction=change.reaction,
            text=change.text,
            agent_id=None if owner is None else owner.agent_id,
            bot_id=conversation.bot,
        )
    )
