"""The engine's step and window enums keep the values that reach records, events and ids."""

from __future__ import annotations

import uuid

from router.engine import NAMESPACE, DomainPolicy, ReplyWindowPolicy, apply, tick
from router.engine.policy import RESERVED_STEP_NAMES
from router.engine.state import LadderStep, WindowState
from schemas import ConversationReplyWindowClosed
from tests.engine.builders import T0, conversation, domain, emitted, message


def test_the_engine_steps_are_the_reserved_step_names() -> None:
    assert {step.step_name for step in LadderStep} == RESERVED_STEP_NAMES
    assert [int(step) for step in LadderStep] == [-1, -2, -3, -4, -5, -6, -7]


def test_a_reply_window_keeps_the_number_of_its_state_in_its_ids() -> None:
    """The cause of a window firing ends with the window state as a number (``1``:
    urgent), as when the states were plain integers."""
    state = domain(policy=DomainPolicy(reply_window=ReplyWindowPolicy(urgent_within=600)))
    opening = message(reply_window_ends_at=T0 + 1000)
    apply(state, opening, T0)
    tick(state, T0 + 400)  # urgent: the priority of the waiting conversation is boosted
    record = conversation(state, opening.id)
    assert record is not None
    assert record.reply_window_urgent
    closed = emitted(tick(state, T0 + 1000), ConversationReplyWindowClosed)
    cause = f"window:{opening.id}:{T0 + 1000!r}:{int(WindowState.URGENT)}"
    assert cause.endswith(":1")
    assert [event.id for event in closed] == [str(uuid.uuid5(NAMESPACE, f"{cause}/0"))]
