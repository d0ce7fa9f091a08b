"""Step 4 of the router's loop (``router.shell.worker``): committed outbox rows published.

The writer hands each committed transaction's outbox rows to ``Publisher.committed``; a
task of the publisher's own gives them to the producer in commit order, those queued at
once together (``outbox`` rule 6), sealed as they go out (``runtime.sealing``). The
producer may make that task wait (one request in flight per broker): neither the next
transaction nor the loop does. Acknowledgements are collected by ``settle``, so no row
waits for the broker before the next goes out; a row the broker refused goes back to
pending, and the loop publishes what is pending before it consumes anything new
(``publish_pending``). Only a fully acknowledged row is deleted: by a later transaction
(``Outbox.delete_acked``) or, before partitions are given up, by ``flush_acked``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from router.shell import store
from router.shell.observe import observe_published
from router.shell.outbox import Outbox, sealed, sealing_subjects
from router.shell.sending import send_rows
from runtime import db
from runtime.metrics import Metrics
from runtime.sealing import TopicKeys

log = structlog.get_logger(__name__)

Acks = asyncio.Future[list[object]]


class Publisher:
    """Publishes the committed rows of ``outbox`` and follows their acknowledgements;
    ``report`` hears why publishing failed (the router is not ready meanwhile)."""

    def __init__(
        self,
        outbox: Outbox[Acks],
        producer: AIOKafkaProducer,
        keys: TopicKeys,
        metrics: Metrics,
        *,
        dlq: str,
        seals: bool,
        report: Callable[[str], None],
    ) -> None:
        self._outbox = outbox
        self._producer = producer
        self._keys = keys
        self._metrics = metrics
        self._dlq = dlq
        self._seals = seals
        self._report = report
        self._publishing: asyncio.Task[None] | None = None
        """Hands the queued outbox rows to the producer (``_publish_queued``)."""

    def committed(self, rows: Sequence[store.OutboxBatch]) -> None:
        """Rows a transaction just committed: published next, in commit order."""
        self._outbox.committed(rows)
        if self._publishing is None or self._publishing.done():
            self._publishing = asyncio.create_task(self._publish_queued())

    def raise_failure(self) -> None:
        """The publishing task's error, raised in the loop."""
        publishing = self._publishing
        if publishing is not None and publishing.done():
            self._publishing = None
            publishing.result()

    async def finish(self) -> None:
        """Wait until every committed row has been handed to the producer."""
        publishing, self._publishing = self._publishing, None
        if publishing is not None:
            await publishing

    async def settle(self, *, wait: bool) -> None:
        """Acknowledged rows become deletable; rows the broker refused go back to pending.
        Without ``wait``, only the rows whose acknowledgements are in."""
        for batch, acks in self._outbox.in_flight():
            if not wait and not acks.done():
                continue
            try:
                await acks
            except (KafkaError, OSError) as error:
                self._failed([batch], error)
                continue
            self._outbox.acknowledged(batch)
            observe_published(self._metrics, batch.events, self._dlq)

    async def publish_pending(self) -> bool:
        """Publish again what the broker refused and wait for every acknowledgement; True
        when nothing is left pending."""
        if pending := self._outbox.send_pending():
            await self._publish(pending)
        await self.settle(wait=True)
        return not self._outbox.has_pending

    async def flush_acked(self, pool: asyncpg.Pool) -> None:
        """Delete the acknowledged rows now, in a statement of their own (before the
        partitions go to another router); kept for a later transaction when it fails."""
        deleting = self._outbox.delete_acked()
        if not deleting:
            return
        try:
            async with pool.acquire() as conn:
                await store.delete_published(conn, deleting)
        except db.DATABASE_ERRORS:
            # Kept for the next transaction (republished after a restart: dropped by id).
            self._outbox.not_deleted(deleting)
            return
        self._outbox.deleted(deleting)

    async def _publish_queued(self) -> None:
        while rows := list(iter(self._outbox.send_next, None)):
            await self._publish(rows)

    async def _publish(self, rows: list[store.OutboxBatch]) -> None:
        """Hand outbox rows' events to the producer, as record batches per destination
        partition (one future per record batch, not per event)."""
        try:
            events = await self._sealed([event for row in rows for event in row.events])
        except db.DATABASE_ERRORS as error:
            self._failed(rows, error)
            return
        ready = iter(events)
        to_send = [
            store.OutboxBatch(row.seq, row.partition, [next(ready) for _ in row.events])
            for row in rows
        ]
        try:
            acks = await send_rows(self._producer, to_send)
        except (KafkaError, OSError) as error:
            self._failed(rows, error)
            return
        for row in rows:
            self._outbox.sent(row, asyncio.gather(*acks[row.seq]))

    async def _sealed(self, events: list[store.OutboxEvent]) -> list[store.OutboxEvent]:
        subjects = sealing_subjects(events) if self._seals else set()
        if not subjects:
            return events
        named = await self._keys.for_sealing((key.decode(), s) for key, s in subjects if key)
        return sealed(events, {(key, s): named[(key.decode(), s)] for key, s in subjects if key})

    def _failed(self, rows: list[store.OutboxBatch], error: BaseException) -> None:
        for row in rows:
            self._outbox.failed(row)
        self._report(f"broker: cannot publish ({type(error).__name__})")
        log.warning(
            "publish_failed",
            events=sum(len(row.events) for row in rows),
            error=type(error).__name__,
        )
