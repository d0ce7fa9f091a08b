"""The outbox rows' lifecycle, driven directly: no producer, no database.

A model plays the worker, PostgreSQL and the broker around an ``Outbox``: it commits rows,
sends them (the producer taking or refusing them), acknowledges or refuses what is in
flight, deletes acknowledged rows in transactions that commit or fail, hands partitions
over and loads them back. Each example checks, after every step: every row held is in
exactly one state, no row is lost, a row is deleted only once acknowledged, each successful
send is acknowledged at most once, and rows leave in order; at the end, once the broker and
the database work again, every committed row is acknowledged and deleted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.shell import outbox as outbox_module
from router.shell.outbox import (
    TRANSITIONS,
    Outbox,
    OutboxError,
    Row,
    destinations,
    rows_by_destination,
)
from router.shell.store import OutboxBatch, OutboxEvent
from runtime.kafka import partition_for
from tests.engine.builders import examples

ROUTING = "conversations.routing"
DLQ = "switchboard.dlq"
PARTITIONS = {ROUTING: [0, 1, 2], DLQ: [0, 1]}
DOMAINS = (b"d0", b"d1", b"d2", b"d3")


@dataclass(frozen=True)
class Acks:
    """What the worker would wait on: here only which row it is for."""

    seq: int


# -- builders ---------------------------------------------------------------------------


def event(value: str, *, key: bytes | None = b"d0", topic: str = ROUTING) -> OutboxEvent:
    return OutboxEvent(topic=topic, key=key, value=value.encode(), headers=())


def row(seq: int, partition: int = 0, events: int = 1) -> OutboxBatch:
    return OutboxBatch(seq, partition, [event(f"{seq}.{i}") for i in range(events)])


def view(outbox: Outbox[Acks], seqs: range) -> tuple[object, ...]:
    """Everything the outbox shows: each row's state, and the order rows go out in."""
    return (
        [outbox.state(seq) for seq in seqs],
        [batch.seq for batch in outbox.unpublished()],
        [batch.seq for batch, _ in outbox.in_flight()],
        outbox.has_pending,
        outbox.has_acked,
    )


# -- examples -------------------------------------------------------------------------------


def test_a_row_goes_from_commit_to_deletion() -> None:
    outbox: Outbox[Acks] = Outbox()
    outbox.committed([row(1)])
    assert outbox.state(1) is Row.QUEUED
    batch = outbox.send_next()
    assert batch is not None
    assert outbox.state(1) is Row.SENDING
    outbox.sent(batch, Acks(1))
    assert outbox.in_flight() == [(batch, Acks(1))]
    outbox.acknowledged(batch)
    assert outbox.state(1) is Row.ACKED
    assert outbox.delete_acked() == [1]
    assert outbox.state(1) is Row.DELETING
    outbox.deleted([1])
    assert outbox.state(1) is None
    assert outbox.unpublished() == []


def test_a_refused_row_goes_back_to_pending_in_the_order_refused() -> None:
    outbox: Outbox[Acks] = Outbox()
    outbox.committed([row(1), row(2)])
    first = outbox.send_next()
    assert first is not None
    outbox.failed(first)  # the producer refused it
    second = outbox.send_next()
    assert second is not None
    outbox.sent(second, Acks(2))
    outbox.failed(second)  # the broker refused it later
    assert outbox.has_pending
    assert [batch.seq for batch in outbox.send_pending()] == [1, 2]
    assert not outbox.has_pending


def test_a_failed_deletion_keeps_the_rows_for_a_later_transaction() -> None:
    outbox: Outbox[Acks] = Outbox()
    outbox.committed([row(1), row(2), row(3)])
    for seq in (1, 2, 3):
        batch = outbox.send_next()
        assert batch is not None
        outbox.sent(batch, Acks(seq))
    for batch, _ in outbox.in_flight()[:2]:
        outbox.acknowledged(batch)
    deleting = outbox.delete_acked()
    assert deleting == [1, 2]
    third = outbox.in_flight()[0][0]
    outbox.acknowledged(third)
    outbox.not_deleted(deleting)
    assert outbox.delete_acked() == [1, 2, 3]


def test_a_load_republishes_only_the_rows_not_held() -> None:
    outbox: Outbox[Acks] = Outbox()
    outbox.committed([row(1), row(2)])
    batch = outbox.send_next()
    assert batch is not None
    outbox.sent(batch, Acks(1))
    outbox.acknowledged(batch)  # acknowledged, waiting for its deletion: not sent again
    found = outbox.found([row(1), row(2), row(3), row(4, partition=1)])
    assert [batch.seq for batch in found] == [3, 4]
    assert [batch.seq for batch in outbox.send_pending()] == [3, 4]


def test_revoking_forgets_only_the_pending_rows_of_those_partitions() -> None:
    outbox: Outbox[Acks] = Outbox()
    outbox.found([row(1, partition=0), row(2, partition=1), row(3, partition=0)])
    outbox.committed([row(4, partition=0)])
    outbox.revoked([0])
    assert [outbox.state(seq) for seq in (1, 2, 3, 4)] == [None, Row.PENDING, None, Row.QUEUED]


def _illegal_calls() -> dict[str, Callable[[Outbox[Acks]], object]]:
    return {
        "commit a row held": lambda o: o.committed([row(1)]),
        "commit a row twice": lambda o: o.committed([row(9), row(9)]),
        "mark a pending row sent": lambda o: o.sent(row(3), Acks(3)),
        "acknowledge a pending row": lambda o: o.acknowledged(row(1)),
        "fail an acknowledged row": lambda o: o.failed(row(2)),
        "delete an acknowledged row not taken": lambda o: o.deleted([2]),
        "delete a pending and an acknowledged row": lambda o: o.deleted([1, 2]),
        "keep a row never deleted": lambda o: o.not_deleted([1]),
        "acknowledge an unknown row": lambda o: o.acknowledged(row(7)),
    }


@pytest.mark.parametrize("call", _illegal_calls().values(), ids=_illegal_calls().keys())
def test_an_illegal_transition_raises_and_changes_nothing(
    call: Callable[[Outbox[Acks]], object],
) -> None:
    outbox: Outbox[Acks] = Outbox()
    outbox.committed([row(1), row(2)])
    outbox.found([row(3)])
    outbox.send_next()
    batch = outbox.send_next()
    assert batch is not None
    outbox.sent(batch, Acks(2))
    outbox.acknowledged(batch)
    outbox.failed(row(1))  # 1 pending, 2 acknowledged, 3 pending
    before = view(outbox, range(10))
    with pytest.raises(OutboxError):
        call(outbox)
    assert view(outbox, range(10)) == before


def test_the_transitions_are_the_documented_table() -> None:
    assert outbox_module.__doc__ is not None
    documented: dict[Row | None, dict[str, Row | None]] = {}
    for state, transition, target in re.findall(
        r"^ +(\(none\)|[A-Z_]+) +([a-z_]+) +(\(none\)|[A-Z_]+) ", outbox_module.__doc__, re.M
    ):
        row_state = None if state == "(none)" else Row[state]
        documented.setdefault(row_state, {})[transition] = (
            None if target == "(none)" else Row[target]
        )
    assert documented == TRANSITIONS
    for transition in {name for moves in TRANSITIONS.values() for name in moves}:
        assert callable(getattr(Outbox, transition)), transition


# -- destinations -------------------------------------------------------------------------

outbox_events = st.lists(
    st.builds(
        event,
        st.uuids().map(str),
        key=st.one_of(st.none(), st.sampled_from(DOMAINS)),
        topic=st.sampled_from((ROUTING, DLQ)),
    ),
    max_size=30,
)


@settings(max_examples=examples(200), deadline=None)
@given(events=outbox_events)
def test_destinations_keep_each_keys_order_and_the_producers_partition(
    events: list[OutboxEvent],
) -> None:
    by_destination = destinations(events, PARTITIONS)
    sent = [e for grouped in by_destination.values() for e in grouped]
    assert sorted(sent, key=events.index) == events, "every event goes exactly once"
    for (topic, partition), grouped in by_destination.items():
        assert grouped == [e for e in events if e in grouped], "order kept per destination"
        for e in grouped:
            assert e.topic == topic
            if e.key is not None:
                assert partition == partition_for(e.key.decode(), len(PARTITIONS[topic]))


@settings(max_examples=examples(200), deadline=None)
@given(rows=st.lists(outbox_events, max_size=4))
def test_rows_sent_together_share_each_destination_in_row_order(
    rows: list[list[OutboxEvent]],
) -> None:
    batches = [OutboxBatch(seq, 0, events) for seq, events in enumerate(rows, start=10)]
    merged = rows_by_destination(batches, PARTITIONS)
    sent = [(seq, e) for grouped in merged.values() for seq, e in grouped]
    expected = [(batch.seq, e) for batch in batches for e in batch.events]
    assert sorted(sent, key=expected.index) == expected, "every event goes once, with its row"
    for (topic, partition), grouped in merged.items():
        assert grouped == sorted(grouped, key=expected.index), "rows in order, events in order"
        for _, e in grouped:
            assert e.topic == topic
            if e.key is not None:
                assert partition == partition_for(e.key.decode(), len(PARTITIONS[topic]))


# -- any interleaving -----------------------------------------------------------------------

op = st.one_of(
    st.tuples(st.just("commit"), st.integers(0, 2), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("commit"), st.integers(0, 2), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("send_next"), st.booleans()),
    st.tuples(st.just("send_next"), st.just(True)),
    st.tuples(st.just("send_pending"), st.lists(st.booleans(), min_size=1, max_size=3)),
    st.tuples(st.just("settle"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("settle"), st.integers(0, 5), st.just(True)),
    st.tuples(st.just("delete_acked")),
    st.tuples(st.just("transaction"), st.booleans()),
    st.tuples(st.just("revoke"), st.integers(0, 2)),
    st.tuples(st.just("assign"), st.integers(0, 2)),
    st.tuples(st.just("load")),
)


@dataclass
class World:
    """The outbox with what surrounds it: PostgreSQL's outbox table and the broker."""

    outbox: Outbox[Acks] = field(default_factory=Outbox)
    table: dict[int, OutboxBatch] = field(default_factory=dict)
    """Rows committed and not deleted."""
    owned: set[int] = field(default_factory=lambda: {0, 1, 2})
    committed: list[int] = field(default_factory=list)
    rows: dict[int, OutboxBatch] = field(default_factory=dict)
    """Every row committed, deleted or not."""
    sends: Counter[int] = field(default_factory=Counter)
    """Sends the producer took, per row."""
    refusals: Counter[int] = field(default_factory=Counter)
    """Sends the broker refused after taking them."""
    acks: Counter[int] = field(default_factory=Counter)
    deletions: list[list[int]] = field(default_factory=list)
    """Rows in transactions not committed yet, oldest first."""
    queue_left: list[int] = field(default_factory=list)
    became_pending: list[int] = field(default_factory=list)
    log: dict[tuple[str, int], list[OutboxEvent]] = field(default_factory=dict)
    """What the broker holds per destination."""

    def commit(self, partition: int, events: int, two: bool) -> None:
        partitions = sorted({partition, (partition + 1) % 3} if two else {partition})
        rows = []
        for number in partitions:
            if number not in self.owned:
                continue
            seq = len(self.committed) + 1
            rows.append(row(seq, number, events))
            self.committed.append(seq)
            self.rows[seq] = self.table[seq] = rows[-1]
        self.outbox.committed(rows)

    def send(self, batch: OutboxBatch, taken: bool) -> None:
        if taken:
            self.sends[batch.seq] += 1
            for destination, grouped in destinations(batch.events, PARTITIONS).items():
                self.log.setdefault(destination, []).extend(grouped)
            self.outbox.sent(batch, Acks(batch.seq))
        else:
            self.outbox.failed(batch)
            self.became_pending.append(batch.seq)

    def settle(self, index: int, acknowledged: bool) -> None:
        in_flight = self.outbox.in_flight()
        if not in_flight:
            return
        batch, acks = in_flight[index % len(in_flight)]
        assert acks == Acks(batch.seq)
        if acknowledged:
            self.outbox.acknowledged(batch)
            self.acks[batch.seq] += 1
        else:
            self.outbox.failed(batch)
            self.refusals[batch.seq] += 1
            self.became_pending.append(batch.seq)

    def transaction(self, commits: bool) -> None:
        if not self.deletions:
            return
        seqs = self.deletions.pop(0)
        if commits:
            deleted_only_once_acknowledged(self, seqs)
            for seq in seqs:
                del self.table[seq]
            self.outbox.deleted(seqs)
        else:
            self.outbox.not_deleted(seqs)

    def load(self, numbers: set[int]) -> None:
        found = self.outbox.found(
            [self.table[seq] for seq in sorted(self.table) if self.table[seq].partition in numbers]
        )
        self.became_pending.extend(batch.seq for batch in found)

    def run(self, operation: tuple[object, ...]) -> None:
        kind = operation[0]
        if kind == "commit":
            partition, events, two = operation[1:]
            assert isinstance(partition, int)
            assert isinstance(events, int)
            assert isinstance(two, bool)
            self.commit(partition, events, two)
        elif kind == "send_next":
            batch = self.outbox.send_next()
            if batch is not None:
                leaves_in_commit_order(self, batch.seq)
                self.send(batch, bool(operation[1]))
        elif kind == "send_pending":
            taken = operation[1]
            assert isinstance(taken, list)
            batches = self.outbox.send_pending()
            pending_leaves_in_the_order_it_came(self, [batch.seq for batch in batches])
            for index, batch in enumerate(batches):
                self.send(batch, taken[index % len(taken)])
        elif kind == "settle":
            index, acknowledged = operation[1:]
            assert isinstance(index, int)
            self.settle(index, bool(acknowledged))
        elif kind == "delete_acked":
            seqs = self.outbox.delete_acked()
            if seqs:
                self.deletions.append(seqs)
        elif kind == "transaction":
            self.transaction(bool(operation[1]))
        elif kind == "revoke":
            number = operation[1]
            assert isinstance(number, int)
            self.outbox.revoked([number])
            self.owned.discard(number)
            self.became_pending = [
                seq for seq in self.became_pending if self.rows[seq].partition != number
            ]
        elif kind == "assign":
            number = operation[1]
            assert isinstance(number, int)
            if number not in self.owned:
                self.owned.add(number)
                self.load({number})
        elif kind == "load":
            self.load(self.owned)
        else:
            raise AssertionError(kind)

    def drain(self) -> None:
        """The broker and the database work again: the worker's loop until nothing is left."""
        for _ in range(4 * len(self.committed) + 4):
            for batch in self.outbox.send_pending():
                self.send(batch, True)
            while (batch := self.outbox.send_next()) is not None:
                self.send(batch, True)
            for batch, _ in self.outbox.in_flight():
                self.outbox.acknowledged(batch)
                self.acks[batch.seq] += 1
            while self.deletions:
                self.transaction(True)
            if seqs := self.outbox.delete_acked():
                self.deletions.append(seqs)
                self.transaction(True)
            if not self.outbox.unpublished() and not self.outbox.has_acked:
                return
        raise AssertionError("the outbox does not drain")


# -- invariants -----------------------------------------------------------------------------


def each_row_in_one_state(world: World) -> None:
    """Every row held has one state, and each view lists the rows of its states once."""
    outbox = world.outbox
    states = {seq: outbox.state(seq) for seq in world.committed}
    unpublished = [batch.seq for batch in outbox.unpublished()]
    assert len(unpublished) == len(set(unpublished))
    assert set(unpublished) == {
        seq
        for seq, state in states.items()
        if state in (Row.QUEUED, Row.PENDING, Row.SENDING, Row.IN_FLIGHT)
    }
    in_flight = [batch.seq for batch, _ in outbox.in_flight()]
    assert len(in_flight) == len(set(in_flight))
    assert set(in_flight) == {seq for seq, state in states.items() if state is Row.IN_FLIGHT}
    assert outbox.has_pending == any(state is Row.PENDING for state in states.values())
    assert outbox.has_acked == any(state is Row.ACKED for state in states.values())


def nothing_lost(world: World) -> None:
    """A committed row of an owned partition stays held until deleted; a row held is in the
    table (forgotten once deleted)."""
    for seq, batch in world.table.items():
        if batch.partition in world.owned:
            assert world.outbox.state(seq) is not None, seq
    for seq in world.committed:
        if world.outbox.state(seq) is not None:
            assert seq in world.table, seq


def acknowledged_once_per_successful_send(world: World) -> None:
    """Each send the producer took ends once, acknowledged or refused."""
    for seq in world.committed:
        in_flight = world.outbox.state(seq) is Row.IN_FLIGHT
        assert world.acks[seq] + world.refusals[seq] + in_flight == world.sends[seq], seq


def deleted_only_once_acknowledged(world: World, seqs: list[int]) -> None:
    for seq in seqs:
        assert world.outbox.state(seq) is Row.DELETING
        assert world.acks[seq] >= 1, seq


def leaves_in_commit_order(world: World, seq: int) -> None:
    assert not world.queue_left or seq > world.queue_left[-1]
    world.queue_left.append(seq)


def pending_leaves_in_the_order_it_came(world: World, seqs: list[int]) -> None:
    assert seqs == world.became_pending
    world.became_pending = []


def every_row_acknowledged_and_deleted(world: World) -> None:
    for seq in world.committed:
        if seq in world.table:  # handed over with its partition, to the next owner
            assert world.table[seq].partition not in world.owned
        else:
            assert world.acks[seq] >= 1, seq
        assert world.outbox.state(seq) is None


# -- the properties -------------------------------------------------------------------------


@settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(operations=st.lists(op, max_size=60))
def test_every_row_is_acknowledged_then_deleted_whatever_the_interleaving(
    operations: list[tuple[object, ...]],
) -> None:
    world = World()
    for operation in operations:
        world.run(operation)
        each_row_in_one_state(world)
        nothing_lost(world)
        acknowledged_once_per_successful_send(world)
    world.drain()
    each_row_in_one_state(world)
    acknowledged_once_per_successful_send(world)
    every_row_acknowledged_and_deleted(world)


reliable_op = st.one_of(
    st.tuples(st.just("commit"), st.integers(0, 2), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("send_next"), st.just(True)),
    st.tuples(st.just("settle"), st.integers(0, 5), st.just(True)),
    st.tuples(st.just("delete_acked")),
    st.tuples(st.just("transaction"), st.booleans()),
)


@settings(max_examples=examples(300), deadline=None)
@given(operations=st.lists(reliable_op, max_size=60))
def test_a_broker_that_takes_everything_gets_each_destinations_events_in_commit_order(
    operations: list[tuple[object, ...]],
) -> None:
    world = World()
    for operation in operations:
        world.run(operation)
    world.drain()
    expected: dict[tuple[str, int], list[OutboxEvent]] = {}
    for seq in world.committed:
        for destination, grouped in destinations(world.rows[seq].events, PARTITIONS).items():
            expected.setdefault(destination, []).extend(grouped)
    assert world.log == expected
    assert all(count == 1 for count in world.sends.values())
