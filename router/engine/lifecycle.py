"""The conversation lifecycle: the legal status moves, and the one setter that makes them.

``TRANSITIONS`` maps a status (``None``: no conversation yet) to the statuses it may move
to; ``set_status`` is the only code that changes the status of a conversation, and a
move the table does not list is our bug (``EngineError``, raised before anything
changes). The statuses are ``router.engine.records.ConversationStatus``.

==========  ==========  ==========================================================
from        to          when
==========  ==========  ==========================================================
(none)      waiting     a customer message opens a conversation
waiting     waiting     routing starts or waits at a step; transfer to a queue
waiting     offered     offer mode: the engine's pick is offered
waiting     assigned    the engine's pick (assign mode), a manual pick-up, a transfer
waiting     overflowed  the last step gave up
waiting     bot         a new conversation of a bot-first queue
waiting     closed      a close command
offered     waiting     the offer expired (next candidate); transfer to a queue
offered     assigned    accepted; transfer to another agent
offered     closed      a close command
assigned    waiting     a customer message finds the owner away or offline, shift end
                        (``rehome``), transfer to a queue
assigned    assigned    transfer to another agent (a new owner period)
assigned    idle        inactivity releases the slot
assigned    bot         its owner hands it back to a bot
assigned    closed      a close command; inactivity with no slot release configured
idle        waiting     a customer message finds no free slot of the owner, shift end
                        (``rehome``), transfer to a queue
idle        assigned    a customer message and the owner has a free slot; transfer to
                        an agent
idle        closed      inactivity; a close command
idle        bot         its owner hands it back to a bot
overflowed  waiting     a customer message restarts routing; transfer to a queue
overflowed  assigned    a manual pick-up; transfer to an agent
overflowed  closed      inactivity; a close command
bot         waiting     the bot hands off (asked, timed out, failed, looping), a person
                        replied from elsewhere; an admin transfers it to a queue
bot         assigned    a person takes it over; an admin transfers it to an agent
bot         closed      the bot resolves it; inactivity; a close command
closed      (none)      the conversation leaves the state
==========  ==========  ==========================================================

``restore`` is no move: it rebuilds each open conversation in its saved status. Leaving
``bot``, the conversation forgets its bot: one owner at a time.
"""

from __future__ import annotations

from router.engine.call import Call
from router.engine.errors import EngineError
from router.engine.records import ConversationStatus
from router.engine.state import Conversation

_WAITING = ConversationStatus.WAITING
_OFFERED = ConversationStatus.OFFERED
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_OVERFLOWED = ConversationStatus.OVERFLOWED
_BOT = ConversationStatus.BOT
_CLOSED = ConversationStatus.CLOSED

TRANSITIONS: dict[ConversationStatus | None, frozenset[ConversationStatus]] = {
    None: frozenset({_WAITING}),
    _WAITING: frozenset({_WAITING, _OFFERED, _ASSIGNED, _OVERFLOWED, _BOT, _CLOSED}),
    _OFFERED: frozenset({_WAITING, _ASSIGNED, _CLOSED}),
    _ASSIGNED: frozenset({_WAITING, _ASSIGNED, _IDLE, _BOT, _CLOSED}),
    _IDLE: frozenset({_WAITING, _ASSIGNED, _BOT, _CLOSED}),
    _OVERFLOWED: frozenset({_WAITING, _ASSIGNED, _CLOSED}),
    _BOT: frozenset({_WAITING, _ASSIGNED, _CLOSED}),
    _CLOSED: frozenset(),
}
"""From-status (``None``: no conversation yet) -> the statuses it may move to."""


def set_status(call: Call, conversation: Conversation, status: ConversationStatus) -> None:
    """Move ``conversation`` to ``status`` (a move of ``TRANSITIONS``) and mark it changed."""
    if status not in TRANSITIONS[conversation.status]:
        raise EngineError(
            f"conversation {conversation.conversation_id}: no move from"
            f" {conversation.status} to {status}"
        )
    if conversation.status is _BOT:
        conversation.bot = None
        conversation.bot_turn_id = None
        conversation.bot_turns = 0
    conversation.status = status
    if status is not _IDLE:
        conversation.snoozed_until = None  # a snooze lasts while it is idle
    call.conversations[conversation.conversation_id] = conversation
