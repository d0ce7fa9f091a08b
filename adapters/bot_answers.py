"""Bots' answers, ``bots.events`` → ``agents.events``: the adapters forward them to the router.

Bots (and the HTTP bot bridge, ``adapters.bots``) publish their answers on a topic of
their own, so that a bot's credentials reach that topic only and nothing it writes can be
taken for an agent's command. The router reads two topics, as before bots: every record
of a topic it consumes costs it on every message (measured with ``make bench``). So the
adapters move the answers, unchanged (key, value and headers), onto ``agents.events``,
where the router applies them in order with the agents' commands:

1. ``getmany`` from ``bots.events`` (consumer group ``<kafka.consumer_group>-bot-answers``).
2. Each record, opened when sealed (``runtime.sealing``), must decode as a bot answer
   (``bot.replied``, ``bot.handoff_requested``, ``bot.resolved``, ``bot.failed``) and be
   keyed by its domain; anything else is set aside on the dead-letter topic (and table)
   with the reason, never forwarded, and so is a record that does not open (its customer
   was erased). What is forwarded is the record as it came: a sealed answer stays sealed
   with its key (the ``sealed_with`` header goes with it), for the router to open.
3. Produce the batch to ``agents.events`` (acks=all), then commit the offsets. A failure
   before the commit forwards the batch again: the router takes an answer twice as it
   takes any redelivered record (a reply's outbound id comes from the answer's id, and
   egress sends an id once; a second hand-off or resolve is refused).

While no domain has a bot, nothing is read (the partitions are paused: no fetch every
``kafka.fetch_max_wait_ms`` for answers that no bot can send); an answer published
meanwhile is forwarded once a bot is configured, for the router to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import asyncpg
import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from runtime import kafka
from runtime.config import ServiceConfig
from runtime.db import DATABASE_ERRORS
from runtime.dead_letters import INSERT_RECORD, UNOPENABLE, DeadRecord, invalid
from runtime.metrics import Metrics
from runtime.sealing import TopicKeys
from schemas import BOT_EVENT_DECODER, topics
from schemas.limits import domain_of_key

log = structlog.get_logger(__name__)

BATCH_MAX = 500


class BotAnswerForwarder:
    def __init__(
        self,
        config: ServiceConfig,
        environ: Mapping[str, str],
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        keys: TopicKeys,
        *,
        bots: bool,
    ) -> None:
        self._config = config
        self._bots = bots
        self._keys = keys
        self._environ = environ
        self._pool = pool
        self._producer = producer
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._source = config.topic(topics.BOTS)
        self._target = config.topic(topics.AGENTS)

    def stop(self) -> None:
        self._stopping.set()

    def reconfigure(self, bots: bool) -> None:
        """Whether any domain has a bot (the next step pauses or resumes reading)."""
        self._bots = bots

    async def run(self) -> None:
        consumer = kafka.group_consumer(self._config, self._environ, "bot-answers", self._source)
        if not await kafka.start_consumer_when_reachable(
            consumer, self._stopping, name="bot-answers"
        ):
            return
        try:
            while not self._stopping.is_set():
                self._pause_or_resume(consumer)
                try:
                    batch = await kafka.fetch(
                        consumer, self._stopping, timeout_ms=500, max_records=BATCH_MAX
                    )
                    if not batch:
                        continue
                    await self._forward(batch)
                    await consumer.commit()
                except (KafkaError, *DATABASE_ERRORS) as error:
                    log.warning("bot_answers_forward_failed", error=type(error).__name__)
                    await asyncio.sleep(1)
                    with contextlib.suppress(KafkaError):
                        await consumer.seek_to_committed()
        finally:
            await kafka.stop_consumer(consumer, name="bot-answers")

    def _pause_or_resume(self, consumer: AIOKafkaConsumer) -> None:
        """Paused while no domain has a bot; each step, as a rebalance may assign more."""
        if not self._bots:
            consumer.pause(*consumer.assignment())
        elif paused := consumer.paused():
            consumer.resume(*paused)

    async def _forward(
        self, batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        sends = []
        fetched = [record for records in batch.values() for record in records]
        for record, value in await self._keys.opened(fetched):
            reason = UNOPENABLE if value is None else _refusal(record, value)
            if reason is not None:
                await self._dead_letter(record, reason)
                continue
            sends.append(
                await self._producer.send(
                    self._target,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                )
            )
        for sent in sends:
            await sent  # acks=all: the batch is on agents.events before its offsets commit
        if sends:
            log.debug("bot_answers_forwarded", count=len(sends))

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        letter = DeadRecord.read(record, reason)
        self._metrics.for_domain(letter.domain).counter(
            self._metrics.dead_letters, letter.topic, letter.reason.split(":")[0]
        ).inc()
        log.warning(
            "dead_letter",
            topic=letter.topic,
            partition=letter.partition,
            offset=letter.offset,
            reason=letter.reason,
        )
        await self._producer.send_and_wait(
            self._config.topic(topics.DLQ),
            value=letter.value or b"",
            key=letter.key,
            headers=list(letter.dlq_headers()),
        )
        await self._pool.execute(INSERT_RECORD, *letter.row())


def _refusal(record: ConsumerRecord[bytes, bytes], value: bytes) -> str | None:
    """Why a record of ``bots.events``, its value opened, is not forwarded (None: it is a
    bot's answer)."""
    try:
        answer = BOT_EVENT_DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        return invalid(error)
    if domain_of_key(record.key) != answer.domain:
        return "invalid: the record's key is not its domain"
    return None
