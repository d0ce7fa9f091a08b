"""Taking partitions on: their leases, their domains' states, and where to resume reading.

The router loads what it owns from PostgreSQL when partitions are assigned to it, and
again after a database outage or a batch it could not write (its memory is then ahead of
the database). ``PartitionLoader.load`` reads, in this order:

1. the partitions' leases, taken in a transaction of their own: their row locks wait for
   any batch a previous owner has in flight, and once committed no previous owner can
   write (``store.write_batch`` checks the epochs), so what is read next is final. When
   this router does not save activity alone (its setting, or a router of a version before
   migration 0027 in the group: ``router.shell.group_protocol``), the same transaction
   folds the domains' saved activities into their records (``fold_activities``),
   so that such a router, taking the partitions later, restores them whole;
2. the stored input offsets, and the outbox rows not deleted yet (to publish again);
3. the domains' agents, open conversations and customers, restored into engine states
   (the conversations as they arrive, while PostgreSQL reads the rest);
4. the stored offsets checked against the partitions' ends: a broker that lost its log
   restarts them from the beginning, with a warning, and the corrected offsets are stored.

The worker then installs the states, seeks the consumer and queues the outbox rows.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from router.engine import DomainPolicy, DomainState
from router.shell import reads, store
from runtime import kafka
from runtime.config import ServiceConfig
from runtime.metrics import Metrics
from schemas import topics

log = structlog.get_logger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, where the C library has it (None elsewhere)."""
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading a partition builds hundreds of thousands of long-lived objects: the cyclic
    collector would rescan them again and again (5x slower), so it waits, and what was
    loaded is then frozen out of future collections. The load's transient records (the
    decoded JSON) are gone by then: the C heap gives their pages back to the system, or
    the process would keep a takeover's peak for good (a fifth of its memory, measured)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()
        if _TRIM is not None:
            _TRIM(0)


# Each activity saved alone goes into its conversation's record where it is the later
# (switchboard_conversation_record's rule), and its row goes.
_FOLD_ACTIVITIES = """
WITH folded AS (
    DELETE FROM conversation_activity WHERE domain = ANY($1::text[])
    RETURNING domain, conversation_id, activity, updated_at
)
UPDATE conversations c
SET record = (c.record::jsonb || f.activity::jsonb)::json,
    updated_at = greatest(c.updated_at, f.updated_at)
FROM folded f
WHERE c.domain = f.domain AND c.conversation_id = f.conversation_id
    AND coalesce((f.activity->>'message_count')::bigint, 0)
        > coalesce((c.record->>'message_count')::bigint, 0)
"""


async def fold_activities(conn: asyncpg.Connection, domains: list[str]) -> int:
    """Fold the ``domains``' activities saved alone into their conversations' records, for
    routers that read the records alone (step 1 of the module docstring); the number
    of records that took one."""
    status = await conn.execute(_FOLD_ACTIVITIES, domains)
    return int(status.rsplit(" ", 1)[1])


@dataclass(slots=True)
class Loaded:
    """What a load read: the owned domains' states, where to resume, what to publish."""

    partitions: dict[int, dict[str, DomainState]]
    """Every loaded partition number, with its domains' states (maybe none)."""
    positions: dict[TopicPartition, int | None]
    """The next offset per assigned input partition (None: from the beginning)."""
    unpublished: list[store.OutboxBatch]
    """The partitions' outbox rows not deleted yet, in ``seq`` order."""
    homes: dict[str, int]
    """Every routed domain's input partition number (``PartitionLoader.homes``)."""


def owned_domains(homes: Mapping[str, int], numbers: Iterable[int]) -> dict[int, list[str]]:
    """The domains of each partition number, by their ``homes``."""
    return {number: [d for d, home in homes.items() if home == number] for number in numbers}


class PartitionLoader:
    """Loads partitions for one router, and holds the leases it took."""

    def __init__(
        self,
        config: ServiceConfig,
        policies: Mapping[str, DomainPolicy],
        environ: Mapping[str, str],
        pool: asyncpg.Pool,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self.policies = policies
        """The routing policy of every domain of the deployment (the current version)."""
        self._environ = environ
        self._pool = pool
        self._metrics = metrics
        self._group = config.kafka.consumer_group
        self._inbound = config.topic(topics.INBOUND)
        self._agents = config.topic(topics.AGENTS)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leases: dict[int, int] = {}
        """Partition -> the lease epoch this router holds (checked by every transaction)."""

    def release(self, numbers: set[int]) -> None:
        for number in numbers:
            self.leases.pop(number, None)

    def homes(self, consumer: AIOKafkaConsumer) -> dict[str, int]:
        """Each routed domain's input partition number, by the producers' partitioner."""
        total = (
            len(consumer.partitions_for_topic(self._inbound) or ()) or self._config.kafka.partitions
        )
        return {d: kafka.partition_for(d, total) for d in self.policies}

    async def load(
        self,
        consumer: AIOKafkaConsumer,
        numbers: list[int],
        assigned: set[TopicPartition],
        *,
        fold_saved_activities: bool = False,
    ) -> Loaded:
        """Steps 1 to 4 of the module docstring for partitions ``numbers``, whose input
        partitions are ``assigned``."""
        homes = self.homes(consumer)
        owned = owned_domains(homes, numbers)
        domains = [d for names in owned.values() for d in names]
        async with self._pool.acquire() as conn:
            # Step 1
            async with conn.transaction():
                leases = await store.acquire_leases(conn, self._group, numbers, self.owner)
                if fold_saved_activities and domains:
                    folded = await fold_activities(conn, domains)
                    if folded:
                        log.info("activities_folded", conversations=folded, partitions=numbers)
            # Step 2
            offsets = await store.stored_offsets(
                conn, self._group, [self._inbound, self._agents], numbers
            )
            unpublished = await store.unpublished(conn, numbers)
        # Step 3
        with _collector_paused():
            states = await reads.restore_domains(self._pool, domains, self.policies)
        self.leases = leases
        # Step 4
        positions = await self._validated_positions(consumer, assigned, offsets)
        if positions != {tp: offsets.get((tp.topic, tp.partition)) for tp in assigned}:
            async with self._pool.acquire() as conn:
                await store.reset_offsets(
                    conn,
                    self._group,
                    {(tp.topic, tp.partition): o for tp, o in positions.items() if o is not None},
                )
        return Loaded(
            partitions={
                number: {name: states[name] for name in names} for number, names in owned.items()
            },
            positions=positions,
            unpublished=unpublished,
            homes=homes,
        )

    async def _validated_positions(
        self,
        consumer: AIOKafkaConsumer,
        assigned: set[TopicPartition],
        offsets: dict[tuple[str, int], int],
    ) -> dict[TopicPartition, int | None]:
        """Stored offsets, except those past the partition's end (a broker that lost its log):
        those restart from the beginning, with a warning; and those before the partition's
        first record (retention deleted records the router never read: it was stopped for
        longer than the topic keeps them, or its database was restored from an old backup):
        those continue from the first record, with a warning, since the consumer resets
        there by itself and the router would otherwise rewind to the missing offset at every
        fetch."""
        positions: dict[TopicPartition, int | None] = {
            tp: offsets.get((tp.topic, tp.partition)) for tp in assigned
        }
        stored = [tp for tp, o in positions.items() if o]
        if not stored:
            return positions
        ends = await consumer.end_offsets(stored)
        starts = await consumer.beginning_offsets(stored)
        for tp in stored:
            offset = positions[tp]
            assert offset is not None
            if offset < starts[tp]:
                log.warning(
                    "stored_offset_before_partition_start",
                    topic=tp.topic,
                    partition=tp.partition,
                    stored=offset,
                    start=starts[tp],
                    action="continue from the first record",
                )
                self._metrics.offset_resets.labels(tp.topic).inc()
                positions[tp] = starts[tp]
                continue
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
