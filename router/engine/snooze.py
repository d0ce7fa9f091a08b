"""Snooze: the owner puts a conversation aside until a time, freeing its slot meanwhile.

A snoozed conversation is ``idle`` with ``snoozed_until`` set and a ``snooze`` deadline
at that time (which replaces its inactivity deadlines: it does not auto-close while
snoozed). It comes back when the deadline fires — to its owner if they may take it, else
through routing with the owner as its last owner (the customer's explicit owner comes
first: ``routing.reclaim``) — or earlier when the customer writes
(the idle rules then apply). Leaving ``idle`` any other way (transfer, close, shift end)
ends the snooze. ``conversation.snoozed`` says so both ways (``until`` None: back). The
coming back is ``router.engine.deadlines`` (``wake``).
"""

from __future__ import annotations

from router.engine.assignment import free_slot
from router.engine.call import Call
from router.engine.commands import commanded, complete, reject
from router.engine.events import conversation_event
from router.engine.lifecycle import set_status
from router.engine.records import ConversationStatus, DeadlineKind
from schemas import ConversationSnoozed, ConversationSnoozeRequested

_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE

SNOOZE_MAX_SECONDS = 90 * 24 * 3600.0
"""The longest snooze: a conversation put aside for longer should be closed instead."""


def on_snooze(call: Call, event: ConversationSnoozeRequested) -> None:
    state = call.state
    conversation = commanded(call, event.id, event.conversation_id, event.agent_id)
    if conversation is None:
        return
    owner = conversation.owner
    refusal: str | None = None
    if conversation.status not in (_ASSIGNED, _IDLE) or owner is None:
        refusal = "not_owned"
    if refusal is None and event.until <= call.now:
        refusal = "until_not_in_future"
    if refusal is None and event.until > call.now + SNOOZE_MAX_SECONDS:
        refusal = "until_too_far"
    if refusal is not None or owner is None:
        reject(call, event.id, refusal or "not_owned", event.conversation_id)
        return
    if conversation.status is _ASSIGNED:
        set_status(call, conversation, _IDLE)
        free_slot(call, owner, conversation)
    conversation.snoozed_until = event.until
    state.schedule(conversation, event.until, DeadlineKind.SNOOZE)
    call.conversations[conversation.conversation_id] = conversation
    call.emit(
        conversation_event(
            ConversationSnoozed, call, conversation, agent_id=owner.agent_id, until=event.until
        )
    )
    complete(call, event.id, conversation.conversation_id)
