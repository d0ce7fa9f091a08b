"""A conversation's writes in a batch (``router.shell.store.BatchWrites``): whole records
and activities (``SaveActivity``) noted in any order, in one batch or in batches absorbed
into one, store what applying each save in turn would: the latest record with every later
activity over it. A conversation is in the record part or the activity part of a batch,
never both (the batch's statement may touch a row only once). With
``router.save_activity_alone`` false, the intake saves the whole record instead."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from router.engine import (
    ConversationActivity,
    ConversationRecord,
    ConversationStatus,
    DeadlineKind,
    DomainState,
    apply,
    conversation_record,
    with_activity,
)
from router.shell.intake import Intake
from router.shell.store import BatchWrites
from runtime.metrics import Metrics
from schemas import Channel, RoutingEvent
from tests.engine.builders import DOMAIN, T0, agent, domain, message

Key = tuple[str, str]
Stored = dict[Key, tuple[ConversationRecord, ConversationActivity | None]]

save = st.tuples(st.sampled_from(["record", "message", "activity"]), st.integers(0, 3))
"""What is saved of which conversation: its whole record without a customer message
since the last save, its whole record after one, or its activity after one."""
batches = st.lists(st.lists(save, max_size=8), min_size=1, max_size=5)


def record(conversation: int, count: int, version: int) -> ConversationRecord:
    """A whole record; its step (not part of the activity) tells which save it was."""
    return ConversationRecord(
        f"conv-{conversation}",
        Channel.SMS,
        "+15550000000",
        "addr",
        "cust",
        f"key-{conversation}",
        "default",
        ConversationStatus.ASSIGNED,
        f"step-{version}",
        T0,
        T0,
        T0,
        T0,
        message_count=count,
        deadline=T0 + version,
        deadline_kind=DeadlineKind.RELEASE,
    )


def activity(count: int, version: int) -> ConversationActivity:
    return ConversationActivity(
        T0 + version,
        T0 + version,
        count,
        None if version % 2 else T0 + 10 * version,
        version % 3 == 0,
        version % 5 == 0,
        None if version % 4 == 0 else T0 + version,
        None if version % 4 == 0 else DeadlineKind.CLOSE,
    )


def key(conversation: int) -> Key:
    return (DOMAIN, f"conv-{conversation}")


def saves_of(batches: list[list[tuple[str, int]]]) -> list[list[tuple[Key, object]]]:
    """The saves, each conversation counting its customer messages, in order."""
    counts = [0, 0, 0, 0]
    version = 0
    made: list[list[tuple[Key, object]]] = []
    for drawn in batches:
        batch: list[tuple[Key, object]] = []
        for kind, conversation in drawn:
            version += 1
            if kind != "record":
                counts[conversation] += 1
            count = counts[conversation]
            saved = record(conversation, count, version) if kind != "activity" else None
            batch.append((key(conversation), saved or activity(count, version)))
        made.append(batch)
    return made


def noted(saves: list[tuple[Key, object]]) -> BatchWrites:
    writes = BatchWrites()
    for conversation, saved in saves:
        if isinstance(saved, ConversationRecord):
            writes.note_conversation(conversation, saved)
        else:
            assert isinstance(saved, ConversationActivity)
            writes.note_activity(conversation, saved)
    return writes


def written(stored: Stored, writes: BatchWrites) -> None:
    """What ``write_batch`` does to the rows (none of these is closed): a record replaces
    the conversation's row, its activity row stays; an activity replaces the activity row
    (no conversation row: nothing)."""
    assert writes.conversations.keys().isdisjoint(writes.activities)
    for conversation, whole in writes.conversations.items():
        stored[conversation] = (whole, stored.get(conversation, (whole, None))[1])
    for conversation, latest in writes.activities.items():
        if conversation in stored:
            stored[conversation] = (stored[conversation][0], latest)


def current(stored: Stored) -> dict[Key, ConversationRecord]:
    return {k: with_activity(whole, latest) for k, (whole, latest) in stored.items()}


@given(batches=batches)
def test_records_and_activities_store_what_each_save_in_turn_would(
    batches: list[list[tuple[str, int]]],
) -> None:
    made = saves_of(batches)
    expected: dict[Key, ConversationRecord] = {}
    for saves in made:
        for conversation, saved in saves:
            if isinstance(saved, ConversationRecord):
                expected[conversation] = saved
            elif conversation in expected:
                assert isinstance(saved, ConversationActivity)
                last = expected[conversation]
                expected[conversation] = msgspec.structs.replace(
                    last, **msgspec.structs.asdict(saved)
                )

    one_by_one: Stored = {}
    for saves in made:
        written(one_by_one, noted(saves))
    assert current(one_by_one) == expected

    absorbed = noted(made[0])
    for saves in made[1:]:
        absorbed.absorb(noted(saves))
    together: Stored = {}
    written(together, absorbed)
    assert current(together) == expected


def test_an_activity_replaces_exactly_the_fields_it_names() -> None:
    whole = record(1, 7, 7)
    latest = activity(8, 8)
    merged = with_activity(whole, latest)
    for name in ConversationActivity.__struct_fields__:
        assert getattr(merged, name) == getattr(latest, name)
    others = set(ConversationRecord.__struct_fields__) - set(ConversationActivity.__struct_fields__)
    assert {name: getattr(merged, name) for name in others} == {
        name: getattr(whole, name) for name in others
    }
    assert msgspec.json.decode(msgspec.json.encode(latest), type=ConversationActivity) == latest
    # at an equal or lower count the record is the later of the two
    assert with_activity(whole, activity(7, 9)) == whole
    assert with_activity(whole, activity(6, 9)) == whole


def new_intake(*, alone: bool) -> Intake:
    return Intake(
        inbound="in",
        agents="agents",
        routing="routing",
        dlq="dlq",
        source="test",
        metrics=Metrics(CollectorRegistry()),
        save_activity_alone=alone,
    )


def test_with_the_activity_alone_off_the_whole_record_is_saved() -> None:
    for alone in (True, False):
        intake = new_intake(alone=alone)
        state = domain([agent("ann")])
        opening, follow = BatchWrites(), BatchWrites()
        emitted: list[RoutingEvent] = []
        intake._collect(0, state, apply(state, message("k"), T0), opening, emitted, T0)
        intake._collect(0, state, apply(state, message("k"), T0 + 5), follow, emitted, T0 + 5)
        (conversation,) = state.conversations.values()
        (first,) = opening.conversations.values()
        if alone:
            assert not follow.conversations
            (latest,) = follow.activities.values()
            assert with_activity(first, latest) == conversation_record(conversation)
        else:
            assert not follow.activities
            assert list(follow.conversations.values()) == [conversation_record(conversation)]


def ann_slot_time_once_all_closed(intake: Intake, state: DomainState, now: float) -> float | None:
    """Ann's mean slot time on SMS once the meter saw every conversation closed at ``now``."""
    for conversation in state.conversations.values():
        closed = msgspec.structs.replace(
            conversation_record(conversation), status=ConversationStatus.CLOSED
        )
        intake.waits.meter.observe(DOMAIN, closed, now)
    queue = next(iter(state.conversations.values())).queue.name
    return intake.waits.meter.slot_time(DOMAIN, "ann", queue, Channel.SMS)


def test_a_slot_held_at_a_takeover_is_measured_from_the_first_save_of_either_kind() -> None:
    """The handling-time meter (``router.planning.eta.HandlingMeter``) of a router that
    took assigned conversations over starts each one's slot at its first save after the
    takeover: a follow-up message's activity saved alone counts as its whole record does."""
    conversations = 5  # ``MIN_SAMPLES`` slot times before the agent's mean is used
    for alone in (True, False):
        state = domain([agent("ann", capacity={Channel.SMS: conversations})])
        before = new_intake(alone=alone)
        for index in range(conversations):
            opened = apply(state, message(f"k{index}", customer=f"c{index}"), T0)
            before._collect(0, state, opened, BatchWrites(), [], T0)
        after = new_intake(alone=alone)  # its meter holds nothing: a takeover's
        follow_ups = BatchWrites()
        for index in range(conversations):
            follow_up = apply(state, message(f"k{index}", customer=f"c{index}"), T0 + 5)
            after._collect(0, state, follow_up, follow_ups, [], T0 + 5)
        assert bool(follow_ups.activities) is alone
        for conversation in state.conversations.values():
            assert conversation.owner is not None
            assert conversation.owner.agent_id == "ann"
        assert ann_slot_time_once_all_closed(after, state, T0 + 65) == 60.0


def test_slots_of_a_partition_that_left_and_came_back_start_at_its_first_save_after() -> None:
    """A partition revoked and later assigned again: the meter forgot the slots it held in
    its domains when it left, so the time in another router's hands is not counted as
    handling time (a slot runs from the first save after the return, as at a takeover)."""
    conversations = 5  # ``MIN_SAMPLES`` slot times before the agent's mean is used
    for alone in (True, False):
        state = domain([agent("ann", capacity={Channel.SMS: conversations})])
        intake = new_intake(alone=alone)
        intake.partitions[0] = {DOMAIN: state}
        for index in range(conversations):
            opened = apply(state, message(f"k{index}", customer=f"c{index}"), T0)
            intake._collect(0, state, opened, BatchWrites(), [], T0)
        assert intake.waits.meter.holds(DOMAIN, next(iter(state.conversations)))
        intake.release([0])
        assert not intake.partitions
        assert not intake.waits.meter.holds(DOMAIN, next(iter(state.conversations)))
        intake.partitions[0] = {DOMAIN: state}  # back, an hour later
        for index in range(conversations):
            follow_up = apply(state, message(f"k{index}", customer=f"c{index}"), T0 + 3600)
            intake._collect(0, state, follow_up, BatchWrites(), [], T0 + 3600)
        assert ann_slot_time_once_all_closed(intake, state, T0 + 3660) == 60.0
