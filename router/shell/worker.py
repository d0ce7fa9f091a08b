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

What needs no I/O lives beside this module, and the loop drives it: ``intake`` holds the
owned domains and input positions and the per-record rules of steps 1 and 2, ``outbox``
the state of every committed outbox row through step 4, and ``recovery`` reads what a
partition load needs (leases, states, validated offsets).

Step 3 runs in a writer task and step 4 in a publisher task (``publishing``), while the
loop goes on with steps 1 and 2 for the next batches: PostgreSQL and the engine work at
the same time. Batches applied while a transaction is in flight are merged into the next
one, so commits keep the input order (and at four batches' worth queued the loop waits).

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
import time
from collections.abc import Callable, Mapping

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from router.engine import DomainPolicy, DomainState, deadline_bound, reconfigure
from router.shell import reads, store
from router.shell.config_hold import ConfigHold
from router.shell.erasure import ErasureRequest, load_requests
from router.shell.gathering import Gathering
from router.shell.group_protocol import range_assignor
from router.shell.intake import Intake, Unappliable, poison_reason, sealed_ids
from router.shell.observe import gauge_slices, observe_routing_events
from router.shell.outbox import Outbox
from router.shell.publishing import Acks, Publisher
from router.shell.recovery import PartitionLoader, owned_domains
from router.shell.residents import ResidentCustomers, RouterConfig
from runtime import db, kafka
from runtime.config import ServiceConfig
from runtime.metrics import Metrics
from runtime.sealing import TopicKeys
from schemas import topics

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 10.0
"""How long a router draining its partitions on stop (``drain_on_stop``) reads at most."""

_DATABASE_ERRORS = (*db.DATABASE_ERRORS, store.FencedOut)
_DATA_ERRORS = (
    asyncpg.DataError,  # text PostgreSQL cannot hold, numbers out of range, bad encoding
    asyncpg.ProgramLimitExceededError,  # e.g. an index row larger than a btree page allows
    asyncpg.IntegrityConstraintViolationError,
)
"""Errors of a transaction caused by what it writes: the same rows fail the same way again."""

_Fetched = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
DEFAULT_ROUTER_CONFIG = RouterConfig()


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
        config_version: int = 0,
        keys: TopicKeys | None = None,
        router_config: RouterConfig = DEFAULT_ROUTER_CONFIG,
        drain_on_stop: bool = False,
    ) -> None:
        self._config = config
        self._drain_on_stop = drain_on_stop
        """Asked to stop, read what the partitions hold first (``DRAIN_SECONDS`` at most):
        for a broker whose log dies with it (the embedded one of ``switchboard run``),
        where what is left unread when it stops is lost."""
        self._keys = keys or TopicKeys(pool, cache_seconds=config.kafka.key_cache_seconds)
        self._environ = environ
        self._pool = pool
        # The loop's reads and the writer's transactions, each on a connection kept.
        self._reader, self._writer = db.held_connections(pool, 2)
        self._metrics = metrics
        self._clock = clock
        self._group = config.kafka.consumer_group
        self._inbound = config.topic(topics.INBOUND)
        self._agents = config.topic(topics.AGENTS)
        self._dlq = config.topic(topics.DLQ)
        self._intake = Intake(
            inbound=self._inbound,
            agents=self._agents,
            routing=config.topic(topics.ROUTING),
            dlq=self._dlq,
            source=config.source,
            metrics=metrics,
            outbound=config.topic(topics.OUTBOUND),
            save_activity_alone=router_config.save_activity_alone,
        )
        """The owned domains (``policies`` says which: the domains this deployment routes),
        their input positions, and steps 1 and 2 for each record."""
        self._residents = ResidentCustomers(router_config.customer_cache)
        """The customers in memory beyond open work, and what each batch must load."""
        self._outbox: Outbox[Acks] = Outbox()
        self._publisher = Publisher(
            self._outbox,
            producer,
            self._keys,
            metrics,
            dlq=self._dlq,
            seals=config.kafka.seal_personal_data,
            report=self._publishing_failed,
        )
        """Step 4, in a task of its own (``router.shell.publishing``)."""
        self._loader = PartitionLoader(config, policies, environ, pool, metrics)
        self.gathering = Gathering(router_config.gather_ms, router_config.gather_above_per_s)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._joined = False
        self._last_kafka_commit = 0.0
        self._committing: asyncio.Task[None] | None = None
        self._gauging: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        """Writes the queued jobs (``_write_queued``) while the loop goes on."""
        self._queued: store.WriteJob | None = None
        """Applied batches waiting for the transaction in flight to commit, merged."""
        self._writing_ids: set[str] = set()
        """Message ids of the transaction in flight."""
        self._queue_limit = 4 * config.kafka.max_batch_records
        self._committed_at = time.monotonic()
        """When a transaction last committed (or the partitions were taken)."""
        self._failed_in_a_row = 0
        """Database failures since a transaction last committed: the pause before the next
        reload doubles with each (a full disk fails every write, and reads go on)."""
        self._careful_until: dict[TopicPartition, int] = {}
        """Per input partition, the offset up to which records are applied and committed one
        at a time, to find the poison record among those a failed transaction held."""
        self.config_version = config_version
        """The runtime configuration version whose policies the loop applies."""
        self._pending_config: tuple[Mapping[str, DomainPolicy], int] | None = None
        self._config_hold = ConfigHold()
        """Input made under a version the loop has not applied yet, paused for it."""
        self.problem: str | None = "starting"
        """Why the router is not ready, or None when it is."""
        self._load_failure: BaseException | None = None
        """An error loading assigned partitions that retrying cannot mend (the group
        coordinator swallows what the listener raises): the loop raises it."""
        self.last_load_started: float | None = None
        """``perf_counter`` when the latest partition load began (takeover timing)."""
        self.first_applied_after_load: float | None = None
        """``perf_counter`` when the first batch after that load was committed."""
        self.first_batch_after_load: float | None = None
        """``perf_counter`` when the loop began on its first records after that load
        (throughput timing starts there, as a consumer's does at its first records)."""

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def partitions(self) -> list[int]:
        return sorted(self._intake.partitions)

    def domain_states(self) -> list[DomainState]:
        return self._intake.states()

    def stop(self) -> None:
        self._stopping.set()

    def reconfigure(self, policies: Mapping[str, DomainPolicy], version: int) -> None:
        """A new configuration version, applied whole by the loop between two batches."""
        if version > self.config_version:
            self._pending_config = (policies, version)

    def stalled_partitions(self, seconds: float) -> list[int]:
        """Owned partitions with input beyond what was applied while nothing committed for
        ``seconds``: the loop is not getting through them."""
        consumer = self._consumer
        if consumer is None or time.monotonic() - self._committed_at < seconds:
            return []
        waiting = set()
        for tp, expected in self._intake.expected.items():
            highwater = consumer.highwater(tp)
            if highwater is not None and highwater > (expected or 0):
                waiting.add(tp[1])
        return sorted(waiting)

    async def run(self) -> None:
        """Consume until ``stop()`` (with ``drain_on_stop``, then on to the partitions'
        ends); then finish the batch, flush, and leave the group."""
        kafka_config = self._config.kafka
        consumer = AIOKafkaConsumer(
            **kafka.client_options(self._config, self._environ),
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(range_assignor(self._group_reads_activity),),
            fetch_max_wait_ms=kafka_config.fetch_max_wait_ms,
            session_timeout_ms=kafka_config.session_timeout_ms,
            heartbeat_interval_ms=max(100, kafka_config.session_timeout_ms // 4),
            max_poll_records=kafka_config.max_batch_records,
        )
        self._consumer = consumer
        consumer.subscribe([self._inbound, self._agents], listener=_Rebalance(self, consumer))
        if not await kafka.start_consumer_when_reachable(consumer, self._stopping, name="router"):
            return
        log.info("router_started", group=self._group)
        try:
            while not self._stopping.is_set():
                await self._step(consumer)
            if self._drain_on_stop:
                await self._drain(consumer)
        finally:
            if self._gauging is not None:
                self._gauging.cancel()
            try:
                async with self._lock:
                    await self._settle_writing()
                    await self._publisher.settle(wait=True)
                    await self._publisher.flush_acked(self._pool)
            finally:  # cancelled before it settled too: the pool's close waits for them
                await self._reader.release()
                await self._writer.release()
            await kafka.stop_consumer(consumer, name="router")
            self._intake.partitions.clear()
            self._metrics.partitions_owned.set(0)
            log.info("router_stopped")

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        """Batches until the owned partitions are read to their high-water marks (one at
        least: a fetch brings them up to date), or ``DRAIN_SECONDS`` have passed."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while True:
            await self._step(consumer)
            unread = [
                tp
                for tp, expected in self._intake.expected.items()
                if (consumer.highwater(tp) or 0) > (expected or 0)
            ]
            if not unread or time.monotonic() >= deadline:
                log.info("router_drained", unread_partitions=len(unread))
                return

    def _group_reads_activity(self, every_router: bool) -> None:
        """At each assignment, before its partitions load: whether every router of the
        group reads activity saved alone (``router.shell.group_protocol``)."""
        if every_router != self._intake.group_reads_activity:
            log.info("group_reads_activity", every_router=every_router)
        self._intake.group_reads_activity = every_router
        self._metrics.saves_activity_alone.set(self._intake.saves_activity_alone)

    # -- the loop ----------------------------------------------------------------------

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        """Steps 1 to 4 of the module docstring for one batch (3 and 4 go on in tasks)."""
        if self._load_failure is not None:
            raise self._load_failure
        if self._outbox.has_pending:
            # Step 4, again: what the broker refused goes out before anything new comes in.
            async with self._lock:
                published = await self._publisher.publish_pending()
            if not published:
                await asyncio.sleep(0.5)
                return
        # Step 1
        try:
            batch = await self._fetch(consumer)
        except KafkaError as error:
            self.problem = f"broker: {type(error).__name__}"
            log.warning("consume_failed", error=type(error).__name__)
            await asyncio.sleep(0.5)
            return
        async with self._lock:
            if not self._joined:
                return
            try:
                if self._pending_config is not None and await self._apply_config(consumer):
                    return  # reloaded: the batch is read again from the stored offsets
                self._config_hold.hold(consumer, batch, self.config_version)
                if self._careful_until:
                    await self._process_carefully(consumer, batch)
                else:
                    await self._process(batch)
            except (Unappliable, *_DATA_ERRORS) as error:  # before their base classes
                await self._quarantine(consumer, error)
                return
            except _DATABASE_ERRORS as error:
                await self._recover_from_database(consumer, error)
                return
        # Step 4: Kafka offsets, now and then
        await self._commit_kafka(consumer)

    async def _fetch(self, consumer: AIOKafkaConsumer) -> _Fetched:
        """A batch; under load, once records gathered (``router.shell.gathering``)."""
        gathering = self.gathering.active and self._joined and not self._careful_until
        if gathering and (wait := self.gathering.wait(time.monotonic(), self._due_in())) > 0:
            await asyncio.sleep(wait)
        started = time.monotonic()
        batch: _Fetched = await consumer.getmany(
            timeout_ms=self._poll_timeout_ms(), max_records=self._config.kafka.max_batch_records
        )
        self.gathering.fetched(sum(map(len, batch.values())), started)
        return batch

    async def _apply_config(self, consumer: AIOKafkaConsumer) -> bool:
        """Apply the pending configuration version to every owned domain; True when the
        owned domains changed, which takes a reload from PostgreSQL (a new domain may have
        a past, a removed one leaves its state there)."""
        assert self._pending_config is not None
        policies, version = self._pending_config
        self._pending_config = None
        self._loader.policies = policies
        self.config_version = version
        partitions = self._intake.partitions
        homes = self._loader.homes(consumer)
        owned = owned_domains(homes, partitions)
        self._intake.homes = homes
        log.info("config_applied", version=version)
        if any(set(owned[number]) != set(domains) for number, domains in partitions.items()):
            await self._reload(consumer)
            return True
        for domains in partitions.values():
            for name, state in domains.items():
                if state.policy != policies[name]:
                    domains[name] = reconfigure(state, policies[name], self._clock())
        return False

    def _poll_timeout_ms(self) -> int:
        wait = self._config.kafka.fetch_max_wait_ms + 200
        if not self._joined or self._careful_until:
            # No deadline fires before the partitions are ours, nor while suspect records
            # are replayed one by one: waking up for one would only spin the loop.
            return wait
        if (due_in := self._due_in()) is not None and due_in * 1000 < wait:
            # Compared as floats: a far deadline in ms may be infinite, which int() refuses.
            wait = max(0, int(due_in * 1000))
        return wait

    def _due_in(self) -> float | None:
        """Seconds until the owned domains' next deadline, or a time before it (None: none):
        woken then, the loop finds nothing due, re-files what moved and waits again
        (``router.engine.deadline_bound``)."""
        due = min(
            (d for s in self.domain_states() if (d := deadline_bound(s)) is not None),
            default=None,
        )
        return None if due is None else due - self._clock()

    async def _process(self, fetched: _Fetched, *, deadlines: bool = True) -> None:
        """Steps 1 to 3 of one fetched batch: the transaction is queued for the writer."""
        started = time.perf_counter()
        if fetched and self.first_batch_after_load is None:
            self.first_batch_after_load = started
        intake = self._intake
        # Step 1: open and decode; the poison becomes dead letters; provider retries are
        # looked up. Taken before the first query, as a write may commit while it runs (the
        # writer replaces these sets, it does not change them).
        writing, queued = self._writing_ids, self._queued
        sealed = sealed_ids(fetched)
        keys, checked, stored = await reads.before_decoding(
            self._keys, self._reader, fetched, self._inbound, sealed
        )
        batch = intake.decode(fetched, keys, sealed)
        self._keys.sealing_too(batch.opened_with)
        for (topic, partition), offset in batch.rewinds.items():
            assert self._consumer is not None
            self._consumer.seek(TopicPartition(topic, partition), offset)
        erasures: dict[str, ErasureRequest] = {}
        if batch.erasures:
            async with self._pool.acquire() as conn:
                erasures = await load_requests(conn, batch.erasures)
        residents = self._residents
        residents.next_batch()
        states = intake.domains()
        wanted = residents.to_load(states, (item.event for item in batch.decoded), erasures)
        known = stored
        unchecked = [message for message in batch.messages if message not in checked]
        if unchecked or wanted:
            more, customers = await reads.before_applying(self._reader, unchecked, wanted)
            known.update(more)
            if wanted:
                residents.loaded(states, wanted, customers)
                self._metrics.customer_lookups.inc(len(wanted))
        if batch.messages:
            known.update(writing)
            if queued is not None:
                known.update(queued.message_ids)
        # Step 2
        now = self._clock()
        for _ in intake.apply_events(batch, now, known, erasures):
            # The transaction in flight sends its next statement only when this loop yields.
            await asyncio.sleep(0)
        for (topic, partition), offset in batch.rewinds.items():
            assert self._consumer is not None  # an erasure ended the batch (intake rule 6)
            self._consumer.seek(TopicPartition(topic, partition), offset)
        if deadlines:
            intake.fire_deadlines(batch, now)
        residents.note(states, batch.writes)
        residents.sweep(states)
        self._metrics.customers_resident.set(len(residents))
        # Step 3: queued for the writer task, with the acknowledged outbox rows' deletion
        self._raise_write_failure()
        await self._publisher.settle(wait=False)
        writes = batch.writes
        if writes.is_empty() and not self._outbox.has_acked:
            if self._queued is None and (self._writing is None or self._writing.done()):
                residents.committed = residents.batch  # nothing of it, or before it, to store
            return
        # Taken now: publishing meanwhile may acknowledge more.
        writes.published.extend(self._outbox.delete_acked())
        job = store.WriteJob(
            writes,
            batch.emitted,
            records=batch.records,
            started=started,
            message_ids={message_id for _, message_id in batch.messages},
            batch=residents.batch,
        )
        if self._queued is None:
            self._queued = job
        else:
            self._queued.absorb(job)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_queued())
        if writes.erasures or (
            self._queued is not None and self._queued.records >= self._queue_limit
        ):
            # PostgreSQL is the slower side: wait for it rather than pile up more. An
            # erasure's deletions come after every write of its transaction: no later
            # batch may join it.
            await self._finish_writing()
        if writes.erasures:
            # Keys the erasure took away seal nothing more here.
            self._keys.forget()

    async def _write_queued(self) -> None:
        """Step 3: commit what the loop queued, one transaction at a time, until nothing is
        left.

        The loop keeps fetching and applying while a transaction is in flight; whatever it
        applies meanwhile is merged into one job, written by the next transaction. So
        PostgreSQL and the engine work at the same time, transactions grow with the
        database's latency, and commits keep the input order.
        """
        while self._queued is not None:
            job, self._queued = self._queued, None
            self._writing_ids = job.message_ids
            await self._write(job)

    async def _write(self, job: store.WriteJob) -> None:
        """Commit one job, then hand its outbox rows to the publisher task."""
        try:
            async with self._writer.acquire() as conn:
                outbox = await store.write_batch(
                    conn,
                    self._group,
                    self._loader.leases,
                    job.writes,
                    key_shred_delay=self._config.kafka.key_shred_delay_seconds,
                )
        except BaseException:
            self._outbox.not_deleted(job.writes.published)
            raise
        self._outbox.deleted(job.writes.published)
        if job.batch:
            self._residents.committed = job.batch
        self.problem = None
        self._committed_at = time.monotonic()
        self._failed_in_a_row = 0
        if job.emitted and self.first_applied_after_load is None:
            self.first_applied_after_load = time.perf_counter()
        observe_routing_events(self._metrics, job.emitted)
        if job.records:
            self._metrics.batch_size.observe(job.records)
        self._metrics.batch_seconds.observe(time.perf_counter() - job.started)
        self._publisher.committed(outbox)  # step 4

    def _raise_write_failure(self) -> None:
        """A failed transaction's error, raised in the loop (which then recovers)."""
        writing = self._writing
        if writing is not None and writing.done():
            self._writing = None
            writing.result()
        self._publisher.raise_failure()

    async def _finish_writing(self) -> None:
        """Wait until everything queued is committed; a database error is raised here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _settle_writing(self) -> None:
        """Before a rebalance, a stop or a reload: what is queued commits or is given up (its
        input is read again from the stored offsets by whoever owns the partition next);
        then the kept connections go back to the pool, as a load reads on several."""
        try:
            await self._finish_writing()
        except _DATABASE_ERRORS as error:
            log.warning("batch_abandoned", error=type(error).__name__)
        finally:
            await self._reader.release()
            await self._writer.release()
        await self._publisher.finish()
        if self._queued is not None:
            # Acknowledged outbox rows it was to delete stay deletable.
            self._outbox.not_deleted(self._queued.writes.published)
            self._queued = None
        self._writing_ids = set()

    def _publishing_failed(self, problem: str) -> None:
        self.problem = problem

    async def _commit_kafka(self, consumer: AIOKafkaConsumer) -> None:
        """Now and then: Kafka offsets (for lag tools only) and the gauges, off the hot path."""
        now = time.monotonic()
        if now - self._last_kafka_commit < 5:
            return
        self._last_kafka_commit = now
        if self._gauging is None or self._gauging.done():
            self._gauging = asyncio.create_task(self._refresh_gauges())
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_and_measure_lag(consumer))

    async def _refresh_gauges(self) -> None:
        """The gauges, counted while batches go on (``gauge_slices``)."""
        partitions, unpublished = list(self._intake.partitions), self._outbox.unpublished()
        for _ in gauge_slices(self._metrics, self.domain_states(), partitions, unpublished):
            await asyncio.sleep(0)

    async def _commit_and_measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        try:
            await consumer.commit()
        except KafkaError as error:
            log.info("kafka_commit_skipped", error=type(error).__name__)
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            expected = self._intake.expected.get(tp)
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
        committed_at = self._committed_at
        if fenced := isinstance(error, store.FencedOut):
            self.problem = "fenced out: reloading partitions"
            log.warning("fenced_out", partitions=error.partitions)
        else:
            self._metrics.database_errors.inc()
            self._failed_in_a_row += 1
            self.problem = f"database: {type(error).__name__}"
            # The type only: a server message can quote the values of a statement.
            log.warning(
                "database_failed", error=type(error).__name__, in_a_row=self._failed_in_a_row
            )
        delay = 0.2 if fenced else min(0.2 * 2 ** min(self._failed_in_a_row - 1, 5), 5.0)
        while not self._stopping.is_set():
            await asyncio.sleep(delay)
            try:
                await self._reload(consumer)
            except _DATABASE_ERRORS as again:
                self._metrics.database_errors.inc()
                self.problem = f"database: {type(again).__name__}"
                delay = min(delay * 2, 5.0)
                continue
            if fenced:
                self.problem = None
            else:
                # A reload reads: PostgreSQL may answer reads and still fail every write (a
                # full disk). Ready once the input read again is written, and no stall
                # forgiven for the reload.
                self._committed_at = committed_at
                waiting = self.stalled_partitions(0)
                reloaded = f"database: {type(error).__name__}; reloaded, partitions {waiting}"
                self.problem = f"{reloaded} not written since" if waiting else None
            log.info("database_recovered", writes_pending=self.problem is not None)
            return

    async def _quarantine(self, consumer: AIOKafkaConsumer, error: BaseException) -> None:
        """A record applied since the last commit is poison: reload, then replay those
        records one at a time (``_process_carefully``) to find it."""
        expected = self._intake.expected
        reached = {tp: offset for tp, offset in expected.items() if offset is not None}
        log.warning("batch_unwritable", reason=poison_reason(error), partitions=self.partitions)
        await self._settle_writing()
        try:
            await self._reload(consumer)
        except _DATABASE_ERRORS as outage:
            await self._recover_from_database(consumer, outage)
        self._careful_until = {
            tp: end for tp, end in reached.items() if (expected.get(tp) or 0) < end
        }
        if not self._careful_until:
            # Nothing applied since the last commit to blame: deadlines' effects failed.
            self.problem = f"stuck: deadlines of partitions {self.partitions} cannot be written"
            log.error("deadlines_unwritable", reason=poison_reason(error))
            await asyncio.sleep(1.0)

    async def _process_carefully(self, consumer: AIOKafkaConsumer, fetched: _Fetched) -> None:
        """Steps 1 to 3 one record at a time, each committed before the next: the record
        that cannot be applied or written is set aside and the others go through.
        Deadlines wait until the suspect records are behind (a tick blames no record)."""
        for tp, records in fetched.items():
            for record in records:
                try:
                    await self._process({tp: [record]}, deadlines=False)
                    await self._finish_writing()
                except (Unappliable, *_DATA_ERRORS) as error:
                    await self._settle_writing()
                    await self._reload(consumer)
                    await self._set_aside(consumer, tp, record, poison_reason(error))
        expected = self._intake.expected
        self._careful_until = {
            tp: end
            for tp, end in self._careful_until.items()
            if tp in expected and (expected[tp] or 0) < end
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
        if self._intake.expected.get(tp) not in (None, record.offset):
            return  # the reload rewound elsewhere (another owner moved it on): nothing to do
        writes = store.BatchWrites()
        self._intake.dead_letter(writes, record, reason)
        writes.offsets[(tp.topic, tp.partition)] = record.offset + 1
        await self._write(store.WriteJob(writes, [], 1, time.perf_counter(), set()))
        self._intake.expected[tp] = record.offset + 1
        consumer.seek(tp, record.offset + 1)

    async def _reload(self, consumer: AIOKafkaConsumer) -> None:
        """Load every owned partition again: memory went ahead of PostgreSQL."""
        await self._load(consumer, list(self._intake.partitions), consumer.assignment())

    async def _load(
        self, consumer: AIOKafkaConsumer, numbers: list[int], assigned: set[TopicPartition]
    ) -> None:
        """Load the partitions' domains from PostgreSQL and seek to the stored offsets."""
        started = time.perf_counter()
        await self._settle_writing()
        loaded = await self._loader.load(
            consumer, numbers, assigned, fold_saved_activities=not self._intake.saves_activity_alone
        )
        self._intake.partitions.update(loaded.partitions)
        self._intake.homes = loaded.homes
        self._residents.adopt(self.domain_states())
        for tp, position in loaded.positions.items():
            self._intake.expected[tp] = position
            if position is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, position)
        # Rows already acknowledged are only waiting for their deletion: not republished.
        republish = self._outbox.found(loaded.unpublished)
        if republish:
            log.info(
                "outbox_republishing",
                events=sum(len(batch.events) for batch in republish),
                partitions=numbers,
            )
        self._metrics.partition_load_seconds.observe(time.perf_counter() - started)
        self.last_load_started = started
        self.first_applied_after_load = None
        self.first_batch_after_load = None
        self._committed_at = time.monotonic()
        self._metrics.partitions_owned.set(len(self._intake.partitions))

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            numbers = sorted({tp.partition for tp in assigned})
            delay = 0.2
            while True:
                try:
                    await self._load(consumer, numbers, assigned)
                    break
                except (*_DATABASE_ERRORS, KafkaError) as error:
                    source = "broker" if isinstance(error, KafkaError) else "database"
                    self.problem = f"{source}: {type(error).__name__}"
                    log.warning("partition_load_failed", error=type(error).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                except Exception as error:
                    # Not the broker's or the database's passing failure: partitions left
                    # assigned and unloaded would drop their records unseen, so the
                    # process stops (its supervisor starts it again).
                    self.problem = f"partition load failed: {type(error).__name__}"
                    self._load_failure = error
                    log.error(
                        "partition_load_failed", error=type(error).__name__, partitions=numbers
                    )
                    return
            self._joined = True
            self.problem = None
            log.info("partitions_assigned", partitions=numbers)
            if self._outbox.has_pending:
                await self._publisher.publish_pending()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:
            numbers = {tp.partition for tp in revoked}
            await self._settle_writing()
            await self._publisher.settle(wait=True)
            if self._outbox.has_pending:
                await self._publisher.publish_pending()
            await self._publisher.flush_acked(self._pool)
            # Whatever is still unpublished stays in the outbox for the next owner.
            self._outbox.revoked(numbers)
            self._intake.release(numbers)
            self._loader.release(numbers)
            for tp in revoked:
                self._intake.expected.pop(tp, None)
                self._careful_until.pop(tp, None)
            self._metrics.partitions_owned.set(len(self._intake.partitions))
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
