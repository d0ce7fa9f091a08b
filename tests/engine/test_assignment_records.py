"""The persisted assignment rows tell the truth: at most one open owner period per
conversation, and it is the conversation's current one."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.engine import (
    AssignmentRecord,
    ConversationStatus,
    Effect,
    QueueMode,
    SaveAssignment,
    SaveConversation,
    new_state,
)
from tests.engine.builders import examples
from tests.engine.test_properties import (
    DOMAIN,
    T0,
    Step,
    capacities,
    op,
    policy_for,
    resolve,
    setup,
    step,
)


def open_periods_match_conversations(
    assignments: dict[str, AssignmentRecord], current: dict[str, str | None]
) -> None:
    open_by_conversation: dict[str, list[str]] = {}
    for record in assignments.values():
        if record.ended_at is None:
            open_by_conversation.setdefault(record.conversation_id, []).append(record.assignment_id)
    for conversation_id, open_ids in open_by_conversation.items():
        assert len(open_ids) == 1, f"{conversation_id} has open periods {open_ids}"
        assert current.get(conversation_id) == open_ids[0], (
            f"{conversation_id}: open period {open_ids[0]} is not its current one"
            f" ({current.get(conversation_id)})"
        )


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    capacities=capacities,
    operations=st.lists(op, min_size=15, max_size=60),
)
def test_at_most_one_open_assignment_per_conversation(
    mode: QueueMode, capacities: list[tuple[int, int, bool]], operations: list[tuple[object, ...]]
) -> None:
    state = new_state(DOMAIN, policy_for(mode))
    assignments: dict[str, AssignmentRecord] = {}
    current: dict[str, str | None] = {}
    now = T0

    def run(item: Step) -> None:
        effects: list[Effect] = step(state, item)
        for effect in effects:
            if isinstance(effect, SaveAssignment):
                assignments[effect.record.assignment_id] = effect.record
            elif isinstance(effect, SaveConversation):
                record = effect.record
                period = record.assignment
                current[record.conversation_id] = (
                    None
                    if period is None or record.status is ConversationStatus.CLOSED
                    else period.assignment_id
                )
        open_periods_match_conversations(assignments, current)

    for item in setup(mode, capacities):
        run(item)
    for operation in operations:
        if operation[0] == "advance":
            assert isinstance(operation[1], float)
            now += operation[1]
            run((None, now))
        else:
            run(resolve(state, operation, now))
