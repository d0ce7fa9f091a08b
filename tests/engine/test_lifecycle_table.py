"""The conversation lifecycle table (``router.engine.lifecycle``): the setter makes exactly
the moves the table lists, and the engine makes no other, whatever the input sequence.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from router.engine import (
    ConversationStatus,
    DomainPolicy,
    EngineError,
    QueueMode,
    apply,
    new_state,
)
from router.engine.call import Call
from router.engine.lifecycle import TRANSITIONS, set_status
from router.engine.state import Conversation
from schemas import Channel, Presence
from tests.engine.builders import (
    DOMAIN,
    T0,
    agent,
    assigned_to,
    domain,
    examples,
    message,
    presence,
    transfer,
)
from tests.engine.test_properties import (
    AGENTS,
    capacities,
    op,
    policy_variant,
    resolve,
    setup,
    step,
)

ENGINE = Path(__file__).resolve().parents[2] / "router" / "engine"

Move = tuple[ConversationStatus | None, ConversationStatus]
LISTED = [(before, after) for before, targets in TRANSITIONS.items() for after in sorted(targets)]
UNLISTED = [
    (before, after)
    for before in ConversationStatus
    for after in ConversationStatus
    if after not in TRANSITIONS[before]
]


def conversation_in(status: ConversationStatus) -> tuple[Call, Conversation]:
    """An open conversation in ``status``, and a call to change it in."""
    state = new_state(DOMAIN, DomainPolicy())
    conversation = Conversation(
        "conv-1",
        Channel.SMS,
        "+15550000000",
        "addr:cust-1",
        "cust-1",
        "key-1",
        state.compiled.queues["default"],
        0,
        T0,
        status,
    )
    state.conversations[conversation.conversation_id] = conversation
    return Call(state, T0, "test"), conversation


class MoveRecorder:
    """Stands in for the ``status`` slot of ``Conversation``: every write, the setter's or
    anyone's, is recorded as (status before, or None for a new conversation; after)."""

    def __init__(self, slot: Any) -> None:
        self.slot = slot
        self.moves: list[Move] = []

    def __get__(self, conversation: Conversation | None, owner: type | None = None) -> object:
        if conversation is None:
            return self
        return self.slot.__get__(conversation, owner)

    def __set__(self, conversation: Conversation, status: ConversationStatus) -> None:
        try:
            before = self.slot.__get__(conversation, Conversation)
        except AttributeError:
            before = None  # the constructor: the conversation did not exist
        self.moves.append((before, status))
        self.slot.__set__(conversation, status)


@contextlib.contextmanager
def recording_moves() -> Iterator[list[Move]]:
    slot = Conversation.__dict__["status"]
    recorder = MoveRecorder(slot)
    Conversation.status = recorder
    try:
        yield recorder.moves
    finally:
        Conversation.status = slot


# -- the table and its setter -------------------------------------------------------


def test_the_table_has_a_row_for_every_status_and_for_no_conversation_yet() -> None:
    assert set(TRANSITIONS) == {None, *ConversationStatus}
    assert TRANSITIONS[ConversationStatus.CLOSED] == frozenset()


@pytest.mark.parametrize(("before", "after"), [m for m in LISTED if m[0] is not None], ids=str)
def test_the_setter_makes_every_move_of_the_table(
    before: ConversationStatus, after: ConversationStatus
) -> None:
    call, conversation = conversation_in(before)
    set_status(call, conversation, after)
    assert conversation.status is after
    assert call.conversations == {conversation.conversation_id: conversation}, "not saved"


@pytest.mark.parametrize(("before", "after"), UNLISTED, ids=str)
def test_the_setter_refuses_every_move_not_in_the_table(
    before: ConversationStatus, after: ConversationStatus
) -> None:
    call, conversation = conversation_in(before)
    with pytest.raises(EngineError, match=f"no move from {before} to {after}"):
        set_status(call, conversation, after)
    assert conversation.status is before
    assert call.conversations == {}


def test_a_new_conversation_opens_with_the_move_from_no_conversation() -> None:
    state = domain()
    with recording_moves() as moves:
        apply(state, message(), T0)
    assert moves[0] == (None, ConversationStatus.WAITING)
    assert moves[0][1] in TRANSITIONS[None]


def test_only_the_setter_writes_a_status() -> None:
    """Besides ``set_status``, only the constructor sets ``status`` (a new conversation,
    or one ``restore`` rebuilds in its saved status)."""
    writers = set()
    for path in sorted(ENGINE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, ast.AugAssign | ast.AnnAssign)
                    else []
                )
                for target in targets:
                    if isinstance(target, ast.Attribute) and target.attr == "status":
                        writers.add((path.stem, function.name))
    assert writers == {("lifecycle", "set_status"), ("state", "__init__")}


# -- every move the engine makes is in the table ------------------------------------


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    affinity=st.booleans(),
    release=st.booleans(),
    capacities=capacities,
    operations=st.lists(op, min_size=15, max_size=50),
)
def test_every_status_move_the_engine_makes_is_in_the_table(
    mode: QueueMode,
    affinity: bool,
    release: bool,
    capacities: list[tuple[int, int, bool]],
    operations: list[tuple[object, ...]],
) -> None:
    state = new_state(DOMAIN, policy_variant(mode, affinity=affinity, release=release))
    now = T0
    with recording_moves() as moves:
        for item in setup(mode, capacities):
            step(state, item)
        for operation in operations:
            if operation[0] == "advance":
                assert isinstance(operation[1], float)
                now += operation[1]
                step(state, (None, now))
            else:
                step(state, resolve(state, operation, now))
        for agent_id in AGENTS:  # a backlog meets free agents
            step(state, (presence(agent_id, Presence.ONLINE), now))
        step(state, (None, now + 5000))
    for before, after in moves:
        event(f"{before} -> {after}")
        assert after in TRANSITIONS[before], (before, after)


def test_recording_moves_sees_the_engine_work() -> None:
    """The recorder of the property above does observe moves (it is not vacuous)."""
    state = domain([agent("ann")])
    with recording_moves() as moves:
        step(state, (message("k"), T0))
    assert moves == [
        (None, ConversationStatus.WAITING),
        (ConversationStatus.WAITING, ConversationStatus.WAITING),
        (ConversationStatus.WAITING, ConversationStatus.ASSIGNED),
    ]


def test_a_transfer_between_agents_moves_from_assigned_to_assigned() -> None:
    """The one move to the same status that changes the owner (a new owner period)."""
    state = domain([agent("ann"), agent("bob")])
    opening = message("k")
    assert assigned_to(apply(state, opening, T0)) == "ann"
    with recording_moves() as moves:
        effects = apply(state, transfer(opening.id, to_agent="bob"), T0)
    assert assigned_to(effects) == "bob"
    assert moves == [(ConversationStatus.ASSIGNED, ConversationStatus.ASSIGNED)]
