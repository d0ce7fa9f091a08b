"""The router process's consume → apply → persist → publish loop.

One loop per process owns every partition assigned to it, so each routing domain has a
single writer. Deadlines fire from the same loop. For each batch:

1. ``getmany`` a bounded batch from ``conversations.inbound`` and ``agents.events``;
   decode with msgspec; an undecodable, invalid or unknown-domain record becomes a dead
   letter (an outbox event for ``switchboard.dlq`` plus a ``dead_letters`` row) and the
   batch goes on. Provider retries of a stored message are dropped.
2. Apply the events, then the due deadlines, to the pure engine; collect its effects.
3. In ONE PostgreSQL transaction write the effects' rows, the outbox (one row per
   partition), the dead letters and the partitions' next input offsets.
4. Publish the outbox; acknowledgements are collected later and the acknowledged rows'
   deletion rides along with a later transaction. Kafka offsets are committed now and
   then, for lag tools only: the offsets of record are the ones in PostgreSQL.

Step 3 runs in a writer task and step 4 in a publisher task, while the loop goes on with
steps 1 and 2 for the next batches: PostgreSQL and the engine work at the same time.
Batches applied while a transaction is in flight are merged into the next one, so
commits keep the input order (and at four batches' worth queued the loop waits).

A database failure leaves the in-memory state ahead of PostgreSQL, so the loop reloads the
owned domains from PostgreSQL and seeks back to the stored offsets once it is reachable
again: nothing is lost and nothing is applied twice. A broker failure keeps the committed
outbox rows and publishes them before consuming anything new.

A record the router cannot apply (the engine raised) or whose effects PostgreSQL refuses
(a data error: a NUL in text, a value out of range, an index row too large) is poison,
not an outage: retrying would fail the same way forever, and stall every domain of the
process. The loop then reloads from PostgreSQL like after an outage, and replays the
records it had applied since the last commit one at a time, each in a transaction of its
own (``_process_carefully``): the record that fails again is dead-lettered with its reason
(``dead_letters`` row and ``switchboard.dlq``, its offset passed in the same transaction),
and every other record goes through. Then batches resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import assert_never

import asyncpg
import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from router.engine import (
    DomainPolicy,
    DomainState,
    Effect,
    Emit,
    EngineInput,
    SaveAgent,
    SaveAssignment,
    SaveConversation,
    SaveCustomer,
    SaveMessage,
    apply,
    new_state,
    next_deadline,
    restore,
    tick,
)
from router.shell import store
from router.shell.observe import (
    observe_dead_letter,
    observe_duplicate,
    observe_first_response,
    observe_published,
    observe_routing_events,
    observe_saved_assignment,
    refresh_gauges,
)
from runtime import db, kafka
from runtime.config import ServiceConfig
from runtime.dead_letters import DeadRecord
from runtime.metrics import Metrics
from schemas import (
    AGENT_EVENT_DECODER,
    INBOUND_DECODER,
    DeliveryStatusChanged,
    MessageReceived,
    RoutingEvent,
    topics,
)
from schemas.cloudevents import encode_headers
from schemas.common import Event

log = structlog.get_logger(__name__)

_DATABASE_ERRORS = (*db.DATABASE_ERRORS, store.FencedOut)
_DATA_ERRORS = (
    asyncpg.DataError,  # text PostgreSQL cannot hold, numbers out of range, bad encoding
    asyncpg.ProgramLimitExceededError,  # e.g. an index row larger than a btree page allows
    asyncpg.IntegrityConstraintViolationError,
)
"""Errors of a transaction caused by what it writes: the same rows fail the same way again."""
_encode = msgspec.json.Encoder().encode
_PARTITIONER = DefaultPartitioner()
_APPLY_SLICE = 100


class _Unappliable(Exception):
    """The engine, or the encoding of what it emitted, failed on one record."""


def _poison_reason(error: BaseException) -> str:
    """Why a record is set aside: the error's type and SQLSTATE, never its message, which
    can quote the record's content."""
    if isinstance(error, _Unappliable) and error.__cause__ is not None:
        return f"unappliable: {type(error.__cause__).__name__}"
    sqlstate = getattr(error, "sqlstate", None)
    return f"unstorable: {type(error).__name__}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")


def _holds_nul(value: bytes) -> bool:
    """Whether a JSON document holds U+0000 in a string (``\\u0000`` not preceded by an
    odd run of backslashes): PostgreSQL's text and jsonb cannot store it. Most records hold
    no backslash at all, and looking for one byte (memchr) is cheaper than for six."""
    if b"\\" not in value:
        return False
    start = value.find(b"\\u0000")
    while start >= 0:
        backslashes = len(value[:start]) - len(value[:start].rstrip(b"\\"))
        if backslashes % 2 == 0:
            return True
        start = value.find(b"\\u0000", start + 1)
    return False


@dataclass(slots=True)
class _Partition:
    number: int
    domains: dict[str, DomainState] = field(default_factory=dict)


@dataclass(slots=True)
class _Decoded:
    partition: int
    topic: str
    offset: int
    timestamp: int
    event: Event


@dataclass(slots=True)
class _WriteJob:
    """Applied batches to commit in one transaction."""

    writes: store.BatchWrites
    emitted: list[RoutingEvent]
    records: int
    started: float
    message_ids: set[str]

    def absorb(self, later: _WriteJob) -> None:
        self.writes.absorb(later.writes)
        self.emitted.extend(later.emitted)
        self.records += later.records
        self.message_ids.update(later.message_ids)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading a partition builds hundreds of thousands of long-lived objects: the cyclic
    collector would rescan them again and again (5x slower), so it waits, and what was
    loaded is then frozen out of future collections."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()


class RouterWorker:
    """Owns the assigned partitions' domains and runs the batch loop."""

    def __init__(
        self,
        config: ServiceConfig,
        policies: Mapping[str, DomainPolicy],
        environ: Mapping[str, str],
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._policies = policies
        """Routing policy by domain: the domains this deployment routes."""
        self._environ = environ
        self._pool = pool
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._group = config.kafka.consumer_group
        self._inbound = config.topic(topics.INBOUND)
        self._agents = config.topic(topics.AGENTS)
        self._dlq = config.topic(topics.DLQ)
        self._routing = config.topic(topics.ROUTING)
        self._partitions: dict[int, _Partition] = {}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._pending: list[store.OutboxBatch] = []
        """Committed outbox rows the broker refused (or not yet published after a load)."""
        self._inflight: list[tuple[store.OutboxBatch, asyncio.Future[list[object]]]] = []
        self._acked: list[int] = []
        """Outbox rows (``seq``) fully acknowledged, to delete with a later transaction."""
        self._consumer: AIOKafkaConsumer | None = None
        self._joined = False
        self._last_kafka_commit = 0.0
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leases: dict[int, int] = {}
        self._first_responses_seen: set[tuple[str, str]] = set()
        self._committing: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        """Writes the queued jobs (``_write_queued``) while the loop goes on."""
        self._queued: _WriteJob | None = None
        """Applied batches waiting for the transaction in flight to commit, merged."""
        self._writing_ids: set[str] = set()
        """Message ids of the transaction in flight."""
        self._queue_limit = 4 * config.kafka.max_batch_records
        self._to_publish: deque[store.OutboxBatch] = deque()
        """Committed outbox rows for ``_publish_queued`` to hand to the producer."""
        self._publishing: asyncio.Task[None] | None = None
        self._expected: dict[TopicPartition, int | None] = {}
        """The next offset to apply per input partition (None: whatever comes first)."""
        self._committed_at = time.monotonic()
        """When a transaction last committed (or the partitions were loaded)."""
        self._careful_until: dict[TopicPartition, int] = {}
        """Per input partition, the offset up to which records are applied and committed one
        at a time, to find the poison record among those a failed transaction held."""
        self.problem: str | None = "starting"
        """Why the router is not ready, or None when it is."""
        self.last_load_started: float | None = None
        """``perf_counter`` when the latest partition load began (takeover timing)."""
        self.first_applied_after_load: float | None = None
        """``perf_counter`` when the first batch after that load was committed."""

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    def domain_states(self) -> list[DomainState]:
        return [state for part in self._partitions.values() for state in part.domains.values()]

    def stop(self) -> None:
        self._stopping.set()

    def stalled_partitions(self, seconds: float) -> list[int]:
        """Owned partitions with input beyond what was applied while nothing committed for
        ``seconds``: the loop is not getting through them."""
        consumer = self._consumer
        if consumer is None or time.monotonic() - self._committed_at < seconds:
            return []
        waiting = set()
        for tp, expected in self._expected.items():
            highwater = consumer.highwater(tp)
            if highwater is not None and highwater > (expected or 0):
                waiting.add(tp.partition)
        return sorted(waiting)

    async def run(self) -> None:
        """Consume until ``stop()``; then finish the batch, flush, and leave the group."""
        kafka_config = self._config.kafka
        consumer = AIOKafkaConsumer(
            **kafka.client_options(self._config, self._environ),
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=kafka_config.fetch_max_wait_ms,
            session_timeout_ms=kafka_config.session_timeout_ms,
            heartbeat_interval_ms=max(100, kafka_config.session_timeout_ms // 4),
            max_poll_records=kafka_config.max_batch_records,
        )
        self._consumer = consumer
        consumer.subscribe([self._inbound, self._agents], listener=_Rebalance(self, consumer))
        await consumer.start()
        log.info("router_started", group=self._group)
        try:
            while not self._stopping.is_set():
                await self._step(consumer)
        finally:
            async with self._lock:
                await self._settle_writing()
                await self._settle(wait=True)
                await self._flush_acked()
            await consumer.stop()
            self._partitions.clear()
            self._metrics.partitions_owned.set(0)
            log.info("router_stopped")

    # -- the loop ----------------------------------------------------------------------

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        if self._pending:
            async with self._lock:
                published = await self._publish_pending()
            if not published:
                await asyncio.sleep(0.5)
                return
        try:
            batch = await consumer.getmany(
                timeout_ms=self._poll_timeout_ms(),
                max_records=self._config.kafka.max_batch_records,
            )
        except KafkaError as error:
            self.problem = f"broker: {type(error).__name__}"
            log.warning("consume_failed", error=type(error).__name__)
            await asyncio.sleep(0.5)
            return
        async with self._lock:
            if not self._joined:
                return
            try:
                if self._careful_until:
                    await self._process_carefully(consumer, batch)
                else:
                    await self._process(batch)
            except (_Unappliable, *_DATA_ERRORS) as error:  # before their base classes
                await self._quarantine(consumer, error)
                return
            except _DATABASE_ERRORS as error:
                await self._recover_from_database(consumer, error)
                return
        await self._commit_kafka(consumer)

    def _poll_timeout_ms(self) -> int:
        wait = self._config.kafka.fetch_max_wait_ms + 200
        due = min(
            (d for s in self.domain_states() if (d := next_deadline(s)) is not None),
            default=None,
        )
        if due is not None:
            wait = min(wait, max(0, int((due - self._clock()) * 1000)))
        return wait

    async def _process(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        *,
        deadlines: bool = True,
    ) -> None:
        started = time.perf_counter()
        writes = store.BatchWrites()
        decoded = self._decode(batch, writes)
        known: set[str] = set()
        messages = [
            (d.event.domain, d.event.id) for d in decoded if isinstance(d.event, MessageReceived)
        ]
        if messages:
            # Taken before the query, as a write may commit while it runs (the writer
            # replaces these sets, it does not change them).
            writing, queued = self._writing_ids, self._queued
            async with self._pool.acquire() as conn:
                known = await store.known_message_ids(conn, messages)
            known.update(writing)
            if queued is not None:
                known.update(queued.message_ids)
        emitted: list[RoutingEvent] = []
        now = self._clock()
        decoded.sort(key=lambda d: (d.partition, d.timestamp, d.topic != self._agents, d.offset))
        for index, item in enumerate(decoded):
            if index % _APPLY_SLICE == _APPLY_SLICE - 1:
                # Let the transaction in flight send its next statement: it advances only
                # when this loop yields.
                await asyncio.sleep(0)
            try:
                self._apply(item, now, known, writes, emitted)
            except Exception as error:  # any failure on one record is that record's: isolated
                raise _Unappliable() from error
        for part in self._partitions.values() if deadlines else ():
            for state in part.domains.values():
                due = next_deadline(state)
                if due is not None and due <= now:
                    self._collect(part.number, state, tick(state, now), writes, emitted)
        self._raise_write_failure()
        await self._settle(wait=False)
        if writes.is_empty() and not self._acked:
            return
        # Taken now: publishing meanwhile may append more acknowledgements.
        writes.published.extend(self._acked)
        self._acked = []
        job = _WriteJob(
            writes,
            emitted,
            records=sum(len(records) for records in batch.values()),
            started=started,
            message_ids={d.event.id for d in decoded if isinstance(d.event, MessageReceived)},
        )
        if self._queued is None:
            self._queued = job
        else:
            self._queued.absorb(job)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_queued())
        if self._queued is not None and self._queued.records >= self._queue_limit:
            # PostgreSQL is the slower side: wait for it rather than pile up more.
            await self._finish_writing()

    async def _write_queued(self) -> None:
        """Commit what the loop queued, one transaction at a time, until nothing is left.

        The loop keeps fetching and applying while a transaction is in flight; whatever it
        applies meanwhile is merged into one job, written by the next transaction. So
        PostgreSQL and the engine work at the same time, transactions grow with the
        database's latency, and commits keep the input order.
        """
        while self._queued is not None:
            job, self._queued = self._queued, None
            self._writing_ids = job.message_ids
            await self._write(job)

    async def _write(self, job: _WriteJob) -> None:
        """Commit one job, then hand its outbox rows to the publisher task."""
        try:
            async with self._pool.acquire() as conn:
                outbox = await store.write_batch(conn, self._group, self._leases, job.writes)
        except BaseException:
            self._acked = job.writes.published + self._acked
            raise
        self.problem = None
        self._committed_at = time.monotonic()
        if job.emitted and self.first_applied_after_load is None:
            self.first_applied_after_load = time.perf_counter()
        observe_routing_events(self._metrics, job.emitted)
        if job.records:
            self._metrics.batch_size.observe(job.records)
        self._metrics.batch_seconds.observe(time.perf_counter() - job.started)
        self._to_publish.extend(outbox)
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.create_task(self._publish_queued())

    def _raise_write_failure(self) -> None:
        """A failed transaction's error, raised in the loop (which then recovers)."""
        writing = self._writing
        if writing is not None and writing.done():
            self._writing = None
            writing.result()
        publishing = self._publishing
        if publishing is not None and publishing.done():
            self._publishing = None
            publishing.result()

    async def _publish_queued(self) -> None:
        """Hand committed outbox rows to the producer in commit order. A task of its own:
        the producer may make it wait (one request in flight per broker), and neither the
        next transaction nor the loop should."""
        while self._to_publish:
            await self._publish(self._to_publish.popleft())

    async def _finish_writing(self) -> None:
        """Wait until everything queued is committed; a database error is raised here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _settle_writing(self) -> None:
        """Before a rebalance, a stop or a reload: what is queued commits or is given up (its
        input is read again from the stored offsets by whoever owns the partition next)."""
        try:
            await self._finish_writing()
        except _DATABASE_ERRORS as error:
            log.warning("batch_abandoned", error=type(error).__name__)
        publishing, self._publishing = self._publishing, None
        if publishing is not None:
            await publishing
        if self._queued is not None:
            # Acknowledged outbox rows it was to delete stay deletable.
            self._acked = self._queued.writes.published + self._acked
            self._queued = None
        self._writing_ids = set()

    def _decode(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        writes: store.BatchWrites,
    ) -> list[_Decoded]:
        decoded: list[_Decoded] = []
        for tp, fetched in batch.items():
            if tp.partition not in self._partitions or tp not in self._expected:
                continue  # revoked while the fetch was in flight: the new owner reads it
            records = self._in_sequence(tp, fetched)
            if not records:
                continue
            decoder = INBOUND_DECODER if tp.topic == self._inbound else AGENT_EVENT_DECODER
            for record in records:
                value = record.value or b""
                try:
                    event: Event = decoder.decode(value)
                except (msgspec.DecodeError, msgspec.ValidationError) as error:
                    self._dead_letter(writes, record, f"invalid: {error}")
                    continue
                except RecursionError:
                    self._dead_letter(writes, record, "invalid: nested too deeply")
                    continue
                if _holds_nul(value):
                    self._dead_letter(writes, record, "invalid: a string holds U+0000 (NUL)")
                    continue
                if event.domain not in self._partitions[tp.partition].domains:
                    self._dead_letter(writes, record, f"unknown domain {event.domain!r}")
                    continue
                decoded.append(
                    _Decoded(tp.partition, tp.topic, record.offset, record.timestamp, event)
                )
            writes.offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        return decoded

    def _in_sequence(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """The records that continue exactly where this partition's state stands.

        A fetch that raced with a reload can hand back records from before the rewind
        (already applied: dropped) or skip ahead of it (a gap: rewind and read again).
        """
        expected = self._expected[tp]
        if expected is not None:
            records = [record for record in records if record.offset >= expected]
            if records and records[0].offset != expected:
                log.warning(
                    "fetch_gap_rewound",
                    topic=tp.topic,
                    partition=tp.partition,
                    expected=expected,
                    fetched=records[0].offset,
                )
                assert self._consumer is not None
                self._consumer.seek(tp, expected)
                return []
        if records:
            self._expected[tp] = records[-1].offset + 1
        return records

    def _apply(
        self,
        item: _Decoded,
        now: float,
        known: set[str],
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
    ) -> None:
        event = item.event
        state = self._partitions[item.partition].domains[event.domain]
        if isinstance(event, DeliveryStatusChanged):
            writes.delivery_statuses.append(
                (
                    str(event.channel),
                    event.provider_message_id,
                    str(event.status),
                    event.error_code or "",
                )
            )
            self._metrics.delivery_statuses.labels(str(event.channel), str(event.status)).inc()
            return
        if isinstance(event, MessageReceived):
            if event.id in known:
                observe_duplicate(self._metrics, event.channel)
                return
            known.add(event.id)  # a retry later in the same batch is a duplicate too
        assert isinstance(event, EngineInput)
        if not isinstance(event, MessageReceived):  # the agent event log `switchboard replay` reads
            writes.agent_events.append(event)
        self._collect(item.partition, state, apply(state, event, now), writes, emitted)

    def _collect(
        self,
        partition: int,
        state: DomainState,
        effects: list[Effect],
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
    ) -> None:
        domain = state.domain
        for effect in effects:
            match effect:
                case Emit(event=event):
                    writes.outbox.setdefault(partition, []).append(self._outbox_event(event))
                    emitted.append(event)
                case SaveMessage(message=message, conversation_id=conversation_id):
                    writes.messages.append((message, conversation_id))
                case SaveConversation(record=record):
                    writes.conversations[(domain, record.conversation_id)] = record
                    observe_first_response(self._metrics, self._first_responses_seen, state, record)
                case SaveAgent(record=record):
                    writes.agents[(domain, record.agent_id)] = record
                case SaveCustomer(record=record):
                    writes.customers[(domain, record.customer_id)] = record
                case SaveAssignment(record=record):
                    writes.assignments[(domain, record.assignment_id)] = record
                    observe_saved_assignment(self._metrics, record)
                case _:
                    assert_never(effect)

    def _outbox_event(self, event: RoutingEvent) -> store.OutboxEvent:
        subject = getattr(event, "conversation_id", None)
        return store.OutboxEvent(
            topic=self._routing,
            key=event.domain.encode(),
            value=_encode(event),
            headers=tuple(encode_headers(event, source=self._config.source, subject=subject)),
        )

    def _dead_letter(
        self, writes: store.BatchWrites, record: ConsumerRecord[bytes, bytes], reason: str
    ) -> None:
        letter = DeadRecord(
            record.topic,
            record.partition,
            record.offset,
            reason,
            record.key,
            record.value,
            tuple(record.headers),
        )
        reason = letter.reason
        writes.dead_letters.append(letter)
        writes.outbox.setdefault(record.partition, []).append(
            store.OutboxEvent(
                topic=self._dlq,
                key=record.key,
                value=record.value or b"",
                headers=letter.dlq_headers(),
            )
        )
        observe_dead_letter(self._metrics, record.topic, reason)
        log.warning(
            "dead_letter",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )

    # -- publishing --------------------------------------------------------------------

    async def _publish(self, batch: store.OutboxBatch) -> None:
        """Hand an outbox row's events to the producer, as record batches per destination
        partition (one future per record batch, not per event). Their acknowledgements are
        collected by ``_settle``, so the next batch does not wait for the broker; only a
        fully acknowledged row is deleted."""
        producer = self._producer
        futures: list[asyncio.Future[object]] = []
        try:
            for (topic, partition), events in (await self._by_destination(batch.events)).items():
                builder = producer.create_batch()
                for event in events:
                    # A full builder refuses the record; a fresh one always takes it.
                    while (
                        builder.append(
                            timestamp=None,
                            key=event.key,
                            value=event.value,
                            headers=list(event.headers),
                        )
                        is None
                    ):
                        futures.append(
                            await producer.send_batch(builder, topic, partition=partition)
                        )
                        builder = producer.create_batch()
                futures.append(await producer.send_batch(builder, topic, partition=partition))
        except (KafkaError, OSError) as error:
            self._publish_failed(batch, error)
            return
        self._inflight.append((batch, asyncio.gather(*futures)))

    async def _by_destination(
        self, events: list[store.OutboxEvent]
    ) -> dict[tuple[str, int], list[store.OutboxEvent]]:
        """Events by (topic, partition), in order, partitioned as the producer itself would
        (murmur2 of the key): a domain's events keep one partition whichever way they go."""
        destinations: dict[tuple[str, int], list[store.OutboxEvent]] = {}
        chosen: dict[tuple[str, bytes | None], int] = {}
        for event in events:
            partition = chosen.get((event.topic, event.key))
            if partition is None:
                partitions = sorted(await self._producer.partitions_for(event.topic))
                partition = _PARTITIONER(event.key, partitions, partitions)
                if event.key is not None:
                    chosen[(event.topic, event.key)] = partition
            destinations.setdefault((event.topic, partition), []).append(event)
        return destinations

    async def _settle(self, *, wait: bool) -> None:
        """Acknowledged rows become deletable; rows the broker refused go back to pending."""
        inflight, self._inflight = self._inflight, []
        for batch, acks in inflight:
            if not wait and not acks.done():
                self._inflight.append((batch, acks))
                continue
            try:
                await acks
            except (KafkaError, OSError) as error:
                self._publish_failed(batch, error)
                continue
            self._acked.append(batch.seq)
            observe_published(self._metrics, batch.events, self._dlq)

    def _publish_failed(self, batch: store.OutboxBatch, error: BaseException) -> None:
        self._pending.append(batch)
        self.problem = f"broker: cannot publish ({type(error).__name__})"
        log.warning("publish_failed", events=len(batch.events), error=type(error).__name__)

    async def _publish_pending(self) -> bool:
        batches, self._pending = self._pending, []
        for batch in batches:
            await self._publish(batch)
        await self._settle(wait=True)
        return not self._pending

    async def _flush_acked(self) -> None:
        if not self._acked:
            return
        deleting, self._acked = self._acked, []
        try:
            async with self._pool.acquire() as conn:
                await store.delete_published(conn, deleting)
        except _DATABASE_ERRORS:
            # Kept for the next transaction; after a restart they are republished and
            # consumers drop them by event id.
            self._acked = deleting + self._acked

    async def _commit_kafka(self, consumer: AIOKafkaConsumer) -> None:
        """Now and then: Kafka offsets (for lag tools only) and the gauges, off the hot path."""
        now = time.monotonic()
        if now - self._last_kafka_commit < 5:
            return
        self._last_kafka_commit = now
        refresh_gauges(
            self._metrics,
            self.domain_states(),
            self._partitions,
            [*self._pending, *self._to_publish, *(batch for batch, _ in self._inflight)],
        )
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_and_measure_lag(consumer))

    async def _commit_and_measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await consumer.commit()
        except KafkaError as error:
            log.info("kafka_commit_skipped", error=type(error).__name__)
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            expected = self._expected.get(tp)
            if highwater is not None and expected is not None:
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - expected)
                )

    # -- recovery ----------------------------------------------------------------------

    async def _recover_from_database(
        self, consumer: AIOKafkaConsumer, error: BaseException
    ) -> None:
        """Reload the owned domains and rewind to the stored offsets once the database is back.

        Also the way back after being fenced out: the reload takes the partitions anew, and
        the consumer group settles which router keeps them.
        """
        await self._settle_writing()
        if isinstance(error, store.FencedOut):
            self.problem = "fenced out: reloading partitions"
            log.warning("fenced_out", partitions=error.partitions)
        else:
            self._metrics.database_errors.inc()
            self.problem = f"database: {type(error).__name__}"
            # The type only: a server message can quote the values of a statement.
            log.warning("database_failed", error=type(error).__name__)
        delay = 0.2
        while not self._stopping.is_set():
            await asyncio.sleep(delay)
            try:
                await self._load(consumer, list(self._partitions), consumer.assignment())
            except _DATABASE_ERRORS as again:
                self._metrics.database_errors.inc()
                self.problem = f"database: {type(again).__name__}"
                delay = min(delay * 2, 5.0)
                continue
            self.problem = None
            log.info("database_recovered")
            return

    async def _quarantine(self, consumer: AIOKafkaConsumer, error: BaseException) -> None:
        """A record applied since the last commit is poison: reload, then replay those
        records one at a time (``_process_carefully``) to find it."""
        reached = {tp: offset for tp, offset in self._expected.items() if offset is not None}
        log.warning("batch_unwritable", reason=_poison_reason(error), partitions=self.partitions)
        await self._settle_writing()
        try:
            await self._load(consumer, list(self._partitions), consumer.assignment())
        except _DATABASE_ERRORS as outage:
            await self._recover_from_database(consumer, outage)
        self._careful_until = {
            tp: end for tp, end in reached.items() if (self._expected.get(tp) or 0) < end
        }
        if not self._careful_until:
            # Nothing applied since the last commit to blame: deadlines' effects failed.
            self.problem = f"stuck: deadlines of partitions {self.partitions} cannot be written"
            log.error("deadlines_unwritable", reason=_poison_reason(error))
            await asyncio.sleep(1.0)

    async def _process_carefully(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """Steps 1 to 3 one record at a time, each committed before the next: the record
        that cannot be applied or written is set aside and the others go through.
        Deadlines wait until the suspect records are behind (a tick blames no record)."""
        for tp, records in batch.items():
            for record in records:
                try:
                    await self._process({tp: [record]}, deadlines=False)
                    await self._finish_writing()
                except (_Unappliable, *_DATA_ERRORS) as error:
                    await self._settle_writing()
                    await self._load(consumer, list(self._partitions), consumer.assignment())
                    await self._set_aside(consumer, tp, record, _poison_reason(error))
        self._careful_until = {
            tp: end
            for tp, end in self._careful_until.items()
            if tp in self._expected and (self._expected[tp] or 0) < end
        }
        if not self._careful_until:
            log.info("quarantine_finished")

    async def _set_aside(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        record: ConsumerRecord[bytes, bytes],
        reason: str,
    ) -> None:
        """Dead-letter ``record`` and move the partition past it, in one transaction."""
        if self._expected.get(tp) not in (None, record.offset):
            return  # the reload rewound elsewhere (another owner moved it on): nothing to do
        writes = store.BatchWrites()
        self._dead_letter(writes, record, reason)
        writes.offsets[(tp.topic, tp.partition)] = record.offset + 1
        await self._write(_WriteJob(writes, [], 1, time.perf_counter(), set()))
        self._expected[tp] = record.offset + 1
        consumer.seek(tp, record.offset + 1)

    async def _load(
        self, consumer: AIOKafkaConsumer, numbers: list[int], assigned: set[TopicPartition]
    ) -> None:
        """Load the partitions' domains from PostgreSQL and seek to the stored offsets."""
        started = time.perf_counter()
        await self._settle_writing()
        total = (
            len(consumer.partitions_for_topic(self._inbound) or ()) or self._config.kafka.partitions
        )
        owned = {
            number: [d for d in self._policies if kafka.partition_for(d, total) == number]
            for number in numbers
        }
        domains = [d for names in owned.values() for d in names]
        async with self._pool.acquire() as conn:
            # The lease's row locks wait for any in-flight batch of a previous owner; once
            # committed, no previous owner can write, so what is read next is final.
            async with conn.transaction():
                leases = await store.acquire_leases(conn, self._group, numbers, self._owner)
            offsets = await store.stored_offsets(
                conn, self._group, [self._inbound, self._agents], numbers
            )
            pending = await store.unpublished(conn, numbers)
        with _collector_paused():
            snapshots = await store.load_domains(self._pool, domains)
            states = {
                name: (
                    restore(
                        name,
                        self._policies[name],
                        snap.agents,
                        snap.conversations,
                        snap.customers,
                    )
                    if snap.agents or snap.conversations or snap.customers
                    else new_state(name, self._policies[name])
                )
                for name, snap in snapshots.items()
            }
            del snapshots
        self._leases = leases
        positions = await self._validated_positions(consumer, assigned, offsets)
        if positions != {tp: offsets.get((tp.topic, tp.partition)) for tp in assigned}:
            async with self._pool.acquire() as conn:
                await store.reset_offsets(
                    conn,
                    self._group,
                    {(tp.topic, tp.partition): o for tp, o in positions.items() if o is not None},
                )
        for number, names in owned.items():
            part = _Partition(number)
            for name in names:
                part.domains[name] = states[name]
            self._partitions[number] = part
        for tp, position in positions.items():
            self._expected[tp] = position
            if position is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, position)
        # Rows already acknowledged are only waiting for their deletion: not republished.
        known = {batch.seq for batch in [*self._pending, *self._to_publish]} | set(self._acked)
        known.update(batch.seq for batch, _ in self._inflight)
        republish = [batch for batch in pending if batch.seq not in known]
        if republish:
            log.info(
                "outbox_republishing",
                events=sum(len(batch.events) for batch in republish),
                partitions=numbers,
            )
        self._pending.extend(republish)
        self._metrics.partition_load_seconds.observe(time.perf_counter() - started)
        self.last_load_started = started
        self.first_applied_after_load = None
        self._committed_at = time.monotonic()
        self._metrics.partitions_owned.set(len(self._partitions))

    async def _validated_positions(
        self,
        consumer: AIOKafkaConsumer,
        assigned: set[TopicPartition],
        offsets: dict[tuple[str, int], int],
    ) -> dict[TopicPartition, int | None]:
        """Stored offsets, except those past the partition's end (a broker that lost its log):
        those restart from the beginning, with a warning."""
        positions: dict[TopicPartition, int | None] = {
            tp: offsets.get((tp.topic, tp.partition)) for tp in assigned
        }
        stored = [tp for tp, o in positions.items() if o]
        if not stored:
            return positions
        ends = await consumer.end_offsets(stored)
        for tp in stored:
            offset = positions[tp]
            assert offset is not None
            if offset <= ends[tp]:
                continue
            true_end = await self._probe_end(tp, ends[tp])
            if offset > true_end:
                log.warning(
                    "stored_offset_past_partition_end",
                    topic=tp.topic,
                    partition=tp.partition,
                    stored=offset,
                    end=true_end,
                    action="restart from the beginning",
                )
                self._metrics.offset_resets.labels(tp.topic).inc()
                positions[tp] = 0
        return positions

    async def _probe_end(self, tp: TopicPartition, hint: int) -> int:
        """The partition's true end, read by fetching its last batch.

        ``end_offsets`` is only trusted as a lower bound: some Kafka-compatible brokers
        answer the last batch's base offset instead of the next offset.
        """
        probe = AIOKafkaConsumer(
            **kafka.client_options(self._config, self._environ),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._config.kafka.fetch_max_wait_ms,
        )
        await probe.start()
        try:
            probe.assign([tp])
            probe.seek(tp, hint)
            end = hint
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                records = (await probe.getmany(tp, timeout_ms=300)).get(tp, [])
                if not records:
                    if end > hint or probe.highwater(tp) is not None:
                        break
                    continue
                end = records[-1].offset + 1
            highwater = probe.highwater(tp)
            return max(end, highwater or 0)
        finally:
            await probe.stop()

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            numbers = sorted({tp.partition for tp in assigned})
            delay = 0.2
            while True:
                try:
                    await self._load(consumer, numbers, assigned)
                    break
                except _DATABASE_ERRORS as error:
                    self.problem = f"database: {type(error).__name__}"
                    log.warning("partition_load_failed", error=type(error).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self._joined = True
            self.problem = None
            log.info("partitions_assigned", partitions=numbers)
            if self._pending:
                await self._publish_pending()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            numbers = {tp.partition for tp in revoked}
            await self._settle_writing()
            await self._settle(wait=True)
            if self._pending:
                await self._publish_pending()
            await self._flush_acked()
            # Whatever is still unpublished stays in the outbox for the next owner.
            self._pending = [batch for batch in self._pending if batch.partition not in numbers]
            for number in numbers:
                self._partitions.pop(number, None)
                self._leases.pop(number, None)
            for tp in revoked:
                self._expected.pop(tp, None)
                self._careful_until.pop(tp, None)
            self._metrics.partitions_owned.set(len(self._partitions))
            if numbers:
                log.info("partitions_revoked", partitions=sorted(numbers))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, worker: RouterWorker, consumer: AIOKafkaConsumer) -> None:
        self._worker = worker
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker.on_assigned(self._consumer, assigned)
