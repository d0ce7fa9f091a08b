"""The adapters' egress loop: replies on ``conversations.outbound`` → the providers' APIs.

A reply is an agent's (``agent_id``) or a bot's (``bot_id``, relayed by the router): its
``outbound_messages`` row names whichever wrote it.

1. ``getmany`` a batch from ``conversations.outbound`` (consumer group
   ``<consumer_group>-egress``) and open its sealed records (``runtime.sealing``); an
   undecodable record goes to the dead-letter topic, and so does one that does not open
   (its customer was erased): its reply is sent to no one.
2. Record each reply in ``outbound_messages`` (status ``queued``) if the API did not.
3. Send: one reply at a time per conversation (replies keep their order), conversations
   in parallel (bounded). ``adapters.egress.Egress`` retries 429/5xx with backoff and
   consults the ledger so an id already sent is never sent again.
4. Record each result (``sent`` with the provider's message id, or ``failed`` with the
   reason); delivery callbacks later move ``sent`` on to ``delivered`` / ``read``.
5. Commit the consumer offsets. A database failure rewinds to the committed offsets and
   tries again; the ledger keeps that from sending twice.

Quiet for ``kafka.background_fetch_max_wait_ms``, the loop rests that long between reads
(``runtime.kafka.rest``), where it fetched every ``kafka.fetch_max_wait_ms``: the first
reply after a quiet spell waits up to that long, those that follow it do not. Idle, the
adapters process and the broker spent about 50 and 35 ms of CPU a second on those fetches
(``make bench``'s services, the embedded broker, whose fetches do not wake on new data).

Web chat replies are delivered by every adapter instance's WebSocket hub; here they are
only marked ``sent``.

Business-started messages (``NotificationRequested``) are rows in PostgreSQL already: the
paced sender (``adapters.outbound_sender``) sends them, not this loop. Web chat ones are
delivered by the hub like replies: here their row is marked ``sent`` and its status
reported (``delivery.status`` on ``conversations.inbound``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping

import aiohttp
import asyncpg
import msgspec
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from adapters.config import ChannelsConfig
from adapters.egress import Egress, SendOutcome, SendResult
from adapters.outbound_sender import StatusPublisher, StatusReports, webchat_notification_sent
from runtime import kafka
from runtime.config import ServiceConfig
from runtime.db import DATABASE_ERRORS
from runtime.dead_letters import INSERT_RECORD, UNOPENABLE, DeadRecord, invalid
from runtime.metrics import Metrics
from runtime.sealing import TopicKeys
from runtime.tasks import all_finished
from schemas import OUTBOUND_DECODER, Channel, NotificationRequested, ReplyRequested, topics

log = structlog.get_logger(__name__)

PARALLEL_CONVERSATIONS = 16


class PostgresSentLedger:
    """``SentLedger`` on the ``outbound_messages`` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._domains: dict[str, str] = {}

    async def prepare(self, reply: ReplyRequested) -> None:
        """Make sure the reply has its row (the API writes it first; other producers may not),
        naming its author: an agent (``agent_id``) or a bot (``bot_id``), the other NULL."""
        self._domains[reply.id] = reply.domain
        await self._pool.execute(
            "INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel,"
            " agent_id, bot_id, status) VALUES ($1, $2, $3, $4, $5, $6, 'queued')"
            " ON CONFLICT DO NOTHING",
            reply.domain,
            reply.id,
            reply.conversation_id,
            str(reply.channel),
            reply.agent_id,
            reply.bot_id,
        )

    async def already_sent(self, outbound_id: str) -> bool:
        return bool(
            await self._pool.fetchval(
                "SELECT status IN ('sent', 'delivered', 'read') FROM outbound_messages"
                " WHERE domain = $1 AND outbound_id = $2",
                self._domains.get(outbound_id, ""),
                outbound_id,
            )
        )

    async def record(self, result: SendResult) -> None:
        """The send's outcome on the reply's row, unless a provider's status report got
        there first (a ``delivered`` that arrived before this write): statuses only move
        forward (``router.shell.store.STATUS_RANK``)."""
        self._domains.pop(result.outbound_id, None)
        if result.outcome is SendOutcome.DUPLICATE:
            return
        await self._pool.execute(
            "UPDATE outbound_messages SET status = $3, provider_message_id = $4,"
            " attempts = attempts + $5, error = $6, updated_at = now()"
            " WHERE domain = $1 AND outbound_id = $2"
            " AND status IN ('queued', 'sending', 'failed')",
            result.domain,
            result.outbound_id,
            str(result.outcome),
            result.provider_message_id,
            result.attempts,
            result.error,
        )


class EgressWorker:
    def __init__(
        self,
        config: ServiceConfig,
        channels: ChannelsConfig,
        environ: Mapping[str, str],
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        *,
        statuses: StatusPublisher,
        keys: TopicKeys,
    ) -> None:
        self._config = config
        self._keys = keys
        self._channels = channels
        self._environ = environ
        self._pool = pool
        self._producer = producer
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._topic = config.topic(topics.OUTBOUND)
        self._egress: Egress | None = None
        self._reports = StatusReports(pool, statuses)
        self._resting = False

    @property
    def resting(self) -> bool:
        """Quiet, between reads: its consumer paused, fetching nothing (see the docstring)."""
        return self._resting

    def stop(self) -> None:
        self._stopping.set()

    def reconfigure(self, channels: ChannelsConfig) -> None:
        """A new configuration version: replies from now on use these endpoints."""
        self._channels = channels
        if self._egress is not None:
            self._egress.channels = channels

    async def run(self) -> None:
        consumer = kafka.group_consumer(self._config, self._environ, "egress", self._topic)
        ledger = PostgresSentLedger(self._pool)
        if not await kafka.start_consumer_when_reachable(consumer, self._stopping, name="egress"):
            return
        try:
            async with aiohttp.ClientSession() as session:
                egress = self._egress = Egress(
                    channels=self._channels,
                    environ=self._environ,
                    session=session,
                    metrics=self._metrics,
                    ledger=ledger,
                )
                loop = asyncio.get_running_loop()
                rest_seconds = self._config.kafka.background_fetch_max_wait_ms / 1000
                last_batch = loop.time()
                while not self._stopping.is_set():
                    quiet = loop.time() - last_batch >= rest_seconds
                    try:
                        if quiet:
                            self._resting = True
                            try:
                                await kafka.rest(consumer, rest_seconds, self._stopping)
                            finally:
                                self._resting = False
                        batch = await kafka.fetch(
                            consumer,
                            self._stopping,
                            timeout_ms=kafka.RESTED_READ_MS if quiet else 500,
                            max_records=200,
                        )
                    except KafkaError as error:
                        log.warning("egress_fetch_failed", error=type(error).__name__)
                        await asyncio.sleep(1)
                        continue
                    if not batch:
                        continue
                    last_batch = loop.time()
                    try:
                        await self._handle(batch, ledger, egress)
                        await consumer.commit()
                    except DATABASE_ERRORS as error:
                        log.warning("egress_database_failed", error=type(error).__name__)
                        await asyncio.sleep(1)
                        await consumer.seek_to_committed()
                    except KafkaError as error:
                        log.warning("egress_commit_failed", error=type(error).__name__)
        finally:
            await kafka.stop_consumer(consumer, name="egress")

    async def _handle(
        self,
        batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        ledger: PostgresSentLedger,
        egress: Egress,
    ) -> None:
        by_conversation: dict[tuple[str, str], list[ReplyRequested]] = defaultdict(list)
        notified: list[NotificationRequested] = []
        fetched = [record for records in batch.values() for record in records]
        for record, value in await self._keys.opened(fetched):
            if value is None:
                await self._dead_letter(record, UNOPENABLE)
                continue
            try:
                reply = OUTBOUND_DECODER.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                await self._dead_letter(record, invalid(error))
                continue
            if isinstance(reply, NotificationRequested):
                if reply.channel is Channel.WEBCHAT:
                    notified.append(reply)
                continue  # the paced sender sends it from its row
            by_conversation[(reply.domain, reply.conversation_id)].append(reply)
        for notification in notified:
            await webchat_notification_sent(self._pool, self._reports, notification)
        await self._reports.flush()
        gate = asyncio.Semaphore(PARALLEL_CONVERSATIONS)

        async def deliver(replies: list[ReplyRequested]) -> None:
            async with gate:
                for reply in replies:
                    await ledger.prepare(reply)
                    if reply.channel is Channel.WEBCHAT:
                        await ledger.record(
                            SendResult(
                                outbound_id=reply.id,
                                domain=reply.domain,
                                channel=reply.channel,
                                outcome=SendOutcome.SENT,
                            )
                        )
                        continue
                    await egress.send(reply)

        # Every conversation's sends finish before a failure is raised: the batch is then
        # read again, and a send still running (in its retry back-off) would be made twice
        # where the provider takes no idempotency key.
        await all_finished(deliver(replies) for replies in by_conversation.values())

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        letter = DeadRecord.read(record, reason)
        # An unreadable reply's key is not trusted to name a domain: counted under none.
        unowned = self._metrics.for_domain(None)
        unowned.counter(self._metrics.dead_letters, letter.topic, reason.split(":")[0]).inc()
        log.warning(
            "dead_letter",
            topic=letter.topic,
            partition=letter.partition,
            offset=letter.offset,
            reason=letter.reason,
        )
        with contextlib.suppress(KafkaError):
            await self._producer.send_and_wait(
                self._config.topic(topics.DLQ),
                value=letter.value or b"",
                key=letter.key,
                headers=list(letter.dlq_headers()),
            )
        await self._pool.execute(INSERT_RECORD, *letter.row())
