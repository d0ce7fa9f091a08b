"""The committed outbox rows of this router, from their transaction to their deletion.

A batch's transaction writes one outbox row per input partition (``store.OutboxBatch``).
The worker hands the row's events to the producer; once the broker acknowledged every one
of them, a later transaction deletes the row. ``Outbox`` keeps each row's state and the
order rows go out in; the worker makes the producer and database calls and tells it what
happened. Nothing here does I/O.

Rules:
1. Every row takes the transitions of ``TRANSITIONS`` and no other: an illegal one raises
   ``OutboxError`` and changes nothing.

       state      transition     next state   when
       (none)     committed      QUEUED       its transaction committed
       (none)     found          PENDING      a load read it from the table (unless known here)
       QUEUED     send_next      SENDING      the publisher takes the oldest one
       PENDING    send_pending   SENDING      the loop sends them all again, before new input
       PENDING    revoked        (none)       its partition went to another router, which
                                              republishes it from the table
       SENDING    sent           IN_FLIGHT    every record batch is with the producer
       SENDING    failed         PENDING      the producer refused one
       IN_FLIGHT  acknowledged   ACKED        the broker acknowledged every event
       IN_FLIGHT  failed         PENDING      the broker refused one
       ACKED      delete_acked   DELETING     its DELETE joins a transaction
       DELETING   deleted        (none)       that transaction committed
       DELETING   not_deleted    ACKED        it failed: a later one deletes the row

2. Rows go out in the order they entered their state: queued ones in commit order (which is
   ``seq`` order), pending ones in the order they failed or were found.
3. Within a row, the events for one destination partition keep their order, and the events
   of one key (a domain) all go to the partition the producer itself would pick
   (``destinations``): a domain's events keep their order and their partition.
4. A row is deleted only once acknowledged, and forgotten only once deleted, or handed over
   with its partition: a crash at any point republishes it from the table, and consumers
   drop the duplicates by event id.
5. An event that names whose key seals it (``OutboxEvent.seal``) leaves sealed with that
   key, its id in the ``sealed_with`` header (``sealed``, ``runtime.sealing``); the row
   keeps it in clear.
6. The rows taken at once go out together (``rows_by_destination``): the events of all of
   them for one destination partition share record batches, rows in order. The producer
   sends one record batch of a partition per request and waits for its acknowledgement,
   so a row per record batch would queue the rows committed meanwhile behind each other.
   A row is acknowledged once every record batch holding any of its events is.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from aiokafka.partitioner import DefaultPartitioner

from router.shell.store import OutboxBatch, OutboxEvent
from runtime.sealing import SEALED_WITH, SealingKey, fresh_nonces, seal

_PARTITIONER = DefaultPartitioner()


class Row(enum.Enum):
    QUEUED = "queued"
    """Committed, waiting for its first send."""
    PENDING = "pending"
    """Committed, refused by the broker or found by a load: sent again before new input."""
    SENDING = "sending"
    """Being handed to the producer, record batch by record batch."""
    IN_FLIGHT = "in flight"
    """With the producer, its acknowledgements outstanding."""
    ACKED = "acked"
    """Every event acknowledged: the row waits for a transaction to delete it."""
    DELETING = "deleting"
    """Its DELETE is in a transaction not committed yet."""


TRANSITIONS: dict[Row | None, dict[str, Row | None]] = {
    None: {"committed": Row.QUEUED, "found": Row.PENDING},
    Row.QUEUED: {"send_next": Row.SENDING},
    Row.PENDING: {"send_pending": Row.SENDING, "revoked": None},
    Row.SENDING: {"sent": Row.IN_FLIGHT, "failed": Row.PENDING},
    Row.IN_FLIGHT: {"acknowledged": Row.ACKED, "failed": Row.PENDING},
    Row.ACKED: {"delete_acked": Row.DELETING},
    Row.DELETING: {"deleted": None, "not_deleted": Row.ACKED},
}
"""Row state -> transition -> the next state (None: not, or no longer, held here)."""


class OutboxError(Exception):
    """A transition the row's state does not allow: our bug."""


Acks = TypeVar("Acks")
"""What the worker waits on for a row's acknowledgements (a future)."""


class Outbox(Generic[Acks]):
    """The rows by state, each state's rows in the order they go out."""

    def __init__(self) -> None:
        self._states: dict[int, Row] = {}
        """Row (``seq``) -> its state, for every row held."""
        self._queued: deque[OutboxBatch] = deque()
        self._pending: list[OutboxBatch] = []
        self._sending: dict[int, OutboxBatch] = {}
        self._in_flight: dict[int, tuple[OutboxBatch, Acks]] = {}
        self._acked: list[int] = []
        """Only the ``seq`` is kept: the events were published."""

    def state(self, seq: int) -> Row | None:
        return self._states.get(seq)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    @property
    def has_acked(self) -> bool:
        return bool(self._acked)

    def unpublished(self) -> list[OutboxBatch]:
        """Rows not acknowledged yet (the outbox backlog)."""
        return [
            *self._pending,
            *self._queued,
            *self._sending.values(),
            *(batch for batch, _ in self._in_flight.values()),
        ]

    def in_flight(self) -> list[tuple[OutboxBatch, Acks]]:
        """The rows in flight with what to wait on, oldest first (a copy)."""
        return list(self._in_flight.values())

    def _move(self, seqs: Iterable[int], transition: str) -> Row | None:
        """Check that every row may take ``transition`` (all from one state), then record
        their next state; the caller moves the rows between collections."""
        seqs = list(seqs)
        if len(set(seqs)) != len(seqs):
            raise OutboxError(f"outbox rows {seqs}: {transition} twice for one row")
        target: Row | None = None
        for seq in seqs:
            current = self._states.get(seq)
            allowed = TRANSITIONS[current]
            if transition not in allowed:
                raise OutboxError(f"outbox row {seq}: {transition} when {current}")
            target = allowed[transition]
        for seq in seqs:
            if target is None:
                del self._states[seq]
            else:
                self._states[seq] = target
        return target

    # -- transitions, named as in the table -----------------------------------------------

    def committed(self, rows: Sequence[OutboxBatch]) -> None:
        """Rows a transaction just wrote, in ``seq`` order."""
        self._move((batch.seq for batch in rows), "committed")
        self._queued.extend(rows)

    def found(self, rows: Sequence[OutboxBatch]) -> list[OutboxBatch]:
        """Rows a load read from the table: those not held here yet become pending (the
        others, acknowledged ones included, are on their way already). Returns those."""
        new = [batch for batch in rows if batch.seq not in self._states]
        self._move((batch.seq for batch in new), "found")
        self._pending.extend(new)
        return new

    def send_next(self) -> OutboxBatch | None:
        """The oldest queued row, now being sent; None when none is queued."""
        if not self._queued:
            return None
        batch = self._queued[0]
        self._move((batch.seq,), "send_next")
        self._queued.popleft()
        self._sending[batch.seq] = batch
        return batch

    def send_pending(self) -> list[OutboxBatch]:
        """Every pending row, in order, now being sent."""
        batches = self._pending
        self._move((batch.seq for batch in batches), "send_pending")
        self._pending = []
        for batch in batches:
            self._sending[batch.seq] = batch
        return batches

    def sent(self, batch: OutboxBatch, acks: Acks) -> None:
        self._move((batch.seq,), "sent")
        del self._sending[batch.seq]
        self._in_flight[batch.seq] = (batch, acks)

    def failed(self, batch: OutboxBatch) -> None:
        """The producer or the broker refused some of the row's events: all go again."""
        self._move((batch.seq,), "failed")
        if self._sending.pop(batch.seq, None) is None:
            del self._in_flight[batch.seq]
        self._pending.append(batch)

    def acknowledged(self, batch: OutboxBatch) -> None:
        self._move((batch.seq,), "acknowledged")
        del self._in_flight[batch.seq]
        self._acked.append(batch.seq)

    def delete_acked(self) -> list[int]:
        """The acknowledged rows, for the caller to delete in a transaction."""
        deleting = self._acked
        self._move(deleting, "delete_acked")
        self._acked = []
        return deleting

    def deleted(self, seqs: Sequence[int]) -> None:
        self._move(seqs, "deleted")

    def not_deleted(self, seqs: Sequence[int]) -> None:
        """The transaction that was to delete them failed: a later one will."""
        self._move(seqs, "not_deleted")
        self._acked = [*seqs, *self._acked]

    def revoked(self, partitions: Iterable[int]) -> None:
        """Forget the pending rows of partitions another router takes over."""
        numbers = set(partitions)
        leaving = [batch for batch in self._pending if batch.partition in numbers]
        self._move((batch.seq for batch in leaving), "revoked")
        self._pending = [batch for batch in self._pending if batch.partition not in numbers]


def destinations(
    events: Sequence[OutboxEvent], partitions: Mapping[str, Sequence[int]]
) -> dict[tuple[str, int], list[OutboxEvent]]:
    """Events by (topic, partition), in order, partitioned as the producer itself would
    (murmur2 of the key over the topic's ``partitions``, sorted): a key's events keep one
    partition whichever way they go. A keyless event goes to any partition."""
    by_destination: dict[tuple[str, int], list[OutboxEvent]] = {}
    chosen: dict[tuple[str, bytes | None], int] = {}
    for event in events:
        partition = chosen.get((event.topic, event.key))
        if partition is None:
            available = partitions[event.topic]
            partition = _PARTITIONER(event.key, available, available)
            if event.key is not None:
                chosen[(event.topic, event.key)] = partition
        destination = by_destination.get((event.topic, partition))
        if destination is None:
            by_destination[(event.topic, partition)] = [event]
        else:
            destination.append(event)
    return by_destination


def rows_by_destination(
    rows: Sequence[OutboxBatch], partitions: Mapping[str, Sequence[int]]
) -> dict[tuple[str, int], list[tuple[int, OutboxEvent]]]:
    """Rule 6: for each destination partition, the events of every row bound there (as
    ``destinations`` places them), rows in order, each with its row's ``seq``."""
    merged: dict[tuple[str, int], list[tuple[int, OutboxEvent]]] = {}
    for row in rows:
        for destination, events in destinations(row.events, partitions).items():
            merged.setdefault(destination, []).extend((row.seq, event) for event in events)
    return merged


Subject = tuple[bytes | None, str]
"""An event's record key (its domain) and the subject whose key seals it."""


def sealing_subjects(events: Iterable[OutboxEvent]) -> set[Subject]:
    return {(event.key, event.seal) for event in events if event.seal is not None}


def sealed(events: list[OutboxEvent], keys: Mapping[Subject, SealingKey]) -> list[OutboxEvent]:
    """``events`` as they are published: rule 5, with ``keys`` for ``sealing_subjects``."""
    if not keys:
        return events
    published = []
    nonces = fresh_nonces(len(events))
    for event, nonce in zip(events, nonces, strict=True):
        if event.seal is None:
            published.append(event)
            continue
        key = keys[(event.key, event.seal)]
        published.append(
            OutboxEvent(
                event.topic,
                event.key,
                seal(key, event.value, nonce),
                (*event.headers, (SEALED_WITH, key.key_id)),
            )
        )
    return published
