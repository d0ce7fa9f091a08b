"""``conversation_record`` passes its 41 values by position (``router.engine.snapshots``):
here the same record is expected by field name, from a conversation whose every value is
an object of its own, so that two values swapped or shifted cannot go unseen."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from router.engine.snapshots import conversation_record
from router.engine.state import Conversation, WindowState

_PASSED_THROUGH = {
    # record field: the conversation's attribute
    "conversation_id": "conversation_id",
    "channel": "channel",
    "endpoint": "endpoint",
    "customer_address": "customer_address",
    "customer_id": "customer_id",
    "conversation_key": "key",
    "status": "status",
    "waiting_since": "waiting_since",
    "opened_at": "opened_at",
    "last_customer_message_at": "last_customer_message_at",
    "last_activity_at": "last_activity_at",
    "priority": "priority",
    "preferred_agent_id": "preferred",
    "fell_back": "fell_back",
    "last_agent_reply_at": "last_agent_reply_at",
    "first_response_at": "first_response_at",
    "deadline": "deadline",
    "deadline_kind": "deadline_kind",
    "step_until": "step_until",
    "assignment": "assignment",
    "message_count": "message_count",
    "reply_window_ends_at": "window_ends_at",
    "skills": "skills",
    "language": "language",
    "attributes": "attributes",
    "snoozed_until": "snoozed_until",
    "bot_id": "bot",
    "bot_turn_id": "bot_turn_id",
    "bot_turns": "bot_turns",
    "handoff": "handoff",
    "handoff_open": "handoff_open",
    "had_human": "had_human",
}


def _conversation(window_state: WindowState) -> tuple[Conversation, dict[str, Any]]:
    """A conversation of distinct objects, and the record fields they should become."""
    conversation = Conversation.__new__(Conversation)
    expected: dict[str, Any] = {}
    for field, attribute in _PASSED_THROUGH.items():
        value = object()
        setattr(conversation, attribute, value)
        expected[field] = value
    queue_name, step_name, owner_id, offered_id = object(), object(), object(), object()
    conversation.queue = SimpleNamespace(name=queue_name, names={3: step_name})  # type: ignore[assignment]
    conversation.step_index = 3
    conversation.owner = SimpleNamespace(agent_id=owner_id)  # type: ignore[assignment]
    conversation.offered_to = SimpleNamespace(agent_id=offered_id)  # type: ignore[assignment]
    conversation.passed_over = {"agent-1": "offer_missed"}
    conversation.window_state = window_state
    expected.update(
        queue=queue_name,
        step=step_name,
        owner_agent_id=owner_id,
        offered_to=offered_id,
        passed_over={"agent-1": "offer_missed"},
        reply_window_urgent=window_state == WindowState.URGENT,
        reply_window_closed=window_state == WindowState.CLOSED,
        wait_estimate=None,  # the shell's to set
    )
    return conversation, expected


@pytest.mark.parametrize("window_state", [WindowState.URGENT, WindowState.CLOSED])
def test_every_field_of_the_record_comes_from_its_own_attribute(window_state: WindowState) -> None:
    conversation, expected = _conversation(window_state)
    when, why = object(), object()
    expected.update(closed_at=when, close_reason=why)

    record = msgspec.structs.asdict(conversation_record(conversation, (when, why)))  # type: ignore[arg-type]

    assert set(record) == set(expected)
    assert sorted(name for name in record if record[name] != expected[name]) == []


def test_a_record_of_an_open_conversation_has_no_close() -> None:
    conversation, _ = _conversation(WindowState.OPEN)

    record = conversation_record(conversation)

    assert (record.closed_at, record.close_reason) == (None, None)
