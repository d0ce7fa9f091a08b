"""Provider reply windows (WhatsApp, Meta: 24 h after the customer's last message).

Each customer message may say when the window closes. Within the policy's
``urgent_within`` of that, a waiting conversation's priority is boosted; once closed,
the boost ends (no answer fits the window any more), the conversation is flagged
(replies need a template) and ``conversation.reply_window_closed`` is emitted. The
window deadlines live in their own heap, stale unless the conversation's window still
gives that due (``window_due``).
"""

from __future__ import annotations

import heapq

from router.engine.call import Call
from router.engine.effects import Effect
from router.engine.events import conversation_event
from router.engine.records import ConversationStatus
from router.engine.routing import emit_queued, enqueue, finish
from router.engine.state import (
    COMPACT_SLACK,
    Conversation,
    DomainState,
    WindowState,
    compact,
    window_due,
)
from schemas import ConversationReplyWindowClosed

_WAITING = ConversationStatus.WAITING
_WINDOW_OPEN = WindowState.OPEN
_WINDOW_URGENT = WindowState.URGENT
_WINDOW_CLOSED = WindowState.CLOSED


def note_window(state: DomainState, conversation: Conversation, ends_at: float, now: float) -> None:
    """A customer message (re)opened the provider's reply window until ``ends_at``."""
    urgent_within = state.policy.reply_window.urgent_within
    before = conversation.window_state
    conversation.window_ends_at = ends_at
    if ends_at <= now:
        conversation.window_state = _WINDOW_CLOSED
    elif urgent_within is not None and ends_at - urgent_within <= now:
        conversation.window_state = _WINDOW_URGENT
    else:
        conversation.window_state = _WINDOW_OPEN
    push_window(state, conversation)
    if (
        before != conversation.window_state
        and conversation.status is _WAITING
        and conversation.wait_entry is not None
    ):
        enqueue(state, conversation)  # the priority boost changed


def push_window(state: DomainState, conversation: Conversation) -> None:
    due = window_due(conversation, state.policy.reply_window.urgent_within)
    if due is not None:
        heapq.heappush(state.windows, (due, conversation.conversation_id))
        if len(state.windows) > 2 * len(state.conversations) + COMPACT_SLACK:
            compact(state.windows, lambda entry: _live_window(state, entry))


def next_window(state: DomainState) -> float | None:
    heap = state.windows
    while heap:
        if _live_window(state, heap[0]) is not None:
            return heap[0][0]
        heapq.heappop(heap)
    return None


def tick_windows(state: DomainState, now: float, effects: list[Effect]) -> bool:
    """Fire the reply-window deadlines due at or before ``now`` (due, conversation id);
    whether any fired."""
    heap = state.windows
    fired = False
    while heap and heap[0][0] <= now:
        entry = heapq.heappop(heap)
        conversation = _live_window(state, entry)
        if conversation is None:
            continue
        cause = f"window:{conversation.conversation_id}:{entry[0]!r}:{conversation.window_state}"
        call = Call(state, now, cause)
        _fire_window(call, conversation)
        effects.extend(finish(call))
        fired = True
    return fired


def _live_window(state: DomainState, entry: tuple[float, str]) -> Conversation | None:
    conversation = state.conversations.get(entry[1])
    if conversation is None:
        return None
    urgent_within = state.policy.reply_window.urgent_within
    return conversation if window_due(conversation, urgent_within) == entry[0] else None


def _fire_window(call: Call, conversation: Conversation) -> None:
    """The reply window is about to close (priority boost) or closed (flagged: replies
    need a template; a waiting conversation is back on its line at its own priority,
    boost gone, and announced again with the flag)."""
    state = call.state
    call.conversations[conversation.conversation_id] = conversation
    ends_at = conversation.window_ends_at
    assert ends_at is not None
    if conversation.window_state == _WINDOW_OPEN and ends_at > call.now:
        conversation.window_state = _WINDOW_URGENT
        push_window(state, conversation)
        if conversation.status is _WAITING and conversation.wait_entry is not None:
            enqueue(state, conversation)
        return
    conversation.window_state = _WINDOW_CLOSED
    if conversation.status is _WAITING and conversation.wait_entry is not None:
        enqueue(state, conversation)  # an urgent boost ends: no answer fits the window now
    owner = conversation.owner
    call.emit(
        conversation_event(
            ConversationReplyWindowClosed,
            call,
            conversation,
            reply_window_ends_at=ends_at,
            status=str(conversation.status),
            agent_id=owner.agent_id if owner is not None else None,
        )
    )
    if conversation.status is _WAITING:
        emit_queued(call, conversation)
