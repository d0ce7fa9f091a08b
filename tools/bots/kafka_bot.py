"""The reference bot over Kafka: reads its turns and hand-offs from the routing topic,
answers on ``bots.events``.

``DATABASE_URL=… python -m tools.bots.kafka_bot --bootstrap HOST:PORT --domain acme --bot helper``

A bot without a ``webhook`` in ``[domains.<d>.routing.bots.<bot>]`` takes part this way:

1. Consume ``conversations.routing`` in a consumer group of its own (default
   ``bot-<domain>-<bot>``; a new group starts from the earliest record), and open the
   sealed records (``runtime.sealing``) with the topic keys of the service's database
   (``--database-url``, default ``$DATABASE_URL``). A record that does not open (its
   customer was erased) is skipped, as one that does not decode; while the database
   fails, the batch is read again a second later.
2. Keep the ``bot.turn`` events of its domain and bot; a turn whose ``answer_by`` has
   passed is skipped (the router has handed the conversation to people already). Keep
   too its own ``conversation.handed_off`` events whose customer waits for a person
   (``adapters.bots.relayable``: ``position`` or ``opens_at`` set, not a takeover). The
   conversation's ``bot_assigned``, ``handed_off`` and ``closed`` events reset what the
   bot remembers of it.
3. Run the rules (``tools.bots.logic``) and publish the answer on ``bots.events``, keyed
   by domain, sealed like the service's records, each event with ``turn_id`` = the
   turn's id and an id derived from it: a turn answered twice (the record read again
   after a crash) is dropped by the router.
   A hand-off gets what the customer can expect (``logic.relay``) as ``bot.replied``
   without a turn, ids derived from the hand-off's (``adapters.bots.relay_events``): the
   router sends it while the conversation waits for a person, and refuses it after.
4. Commit the record's offset once the broker acknowledged the answer.

Without a database URL it opens nothing and seals nothing: it reads plain records only
and publishes its answers plain, for a deployment that does not seal
(``kafka.seal_personal_data = false``); where the service seals, every turn is skipped.

``--delay SECONDS`` answers each turn that much later (to see ``bot_timeout`` or a
takeover mid-turn; a hand-off is relayed at once); ``--stop-after N`` exits after
answering N turns. SIGTERM or SIGINT stop it cleanly (exit status 0), a turn in its delay
left unanswered and uncommitted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord

from adapters.bots import answer_events, relay_events, relayable
from runtime import db
from runtime import logging as logs
from runtime.config import KafkaConfig, ServiceConfig
from runtime.db import DATABASE_ERRORS
from runtime.kafka import (
    BrokerUnavailable,
    EventPublisher,
    client_options,
    make_producer,
    start_consumer_when_reachable,
)
from runtime.sealing import TopicKeys, sealed_with
from schemas import BotEvent, topics
from schemas.routing import (
    BotTurn,
    ConversationBotAssigned,
    ConversationClosed,
    ConversationHandedOff,
)
from tools.bots.logic import Memories, relay

log = structlog.get_logger(__name__)

WATCHED = BotTurn | ConversationBotAssigned | ConversationHandedOff | ConversationClosed
_WATCHED_TYPES = frozenset(
    {b"bot.turn", b"conversation.bot_assigned", b"conversation.handed_off", b"conversation.closed"}
)
_decoder: msgspec.json.Decoder[WATCHED] = msgspec.json.Decoder(WATCHED)

PUBLISH_RETRY_SECONDS = 1.0
OPEN_RETRY_SECONDS = 1.0


class Options(msgspec.Struct, frozen=True, kw_only=True):
    bootstrap: str
    domain: str
    bot: str
    topic_prefix: str = ""
    group: str | None = None
    delay: float = 0.0
    stop_after: int | None = None
    source: str | None = None
    database_url: str | None = None
    """The service's database, whose topic keys open the turns and seal the answers."""

    @property
    def consumer_group(self) -> str:
        return self.group or f"bot-{self.domain}-{self.bot}"


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc] # aiokafka is untyped
    """Logs ``bot_partitions_assigned`` once the group gave this bot its partitions: from
    then on it reads every turn (the tests wait for this line)."""

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("bot_partitions_assigned", partitions=sorted(tp.partition for tp in assigned))


class KafkaBot:
    """One bot of one domain, reading ``consumer`` and publishing with ``publisher``."""

    def __init__(
        self,
        options: Options,
        consumer: AIOKafkaConsumer,
        publisher: EventPublisher,
        stopping: asyncio.Event,
        keys: TopicKeys | None = None,
    ) -> None:
        self.options = options
        self.consumer = consumer
        self.publisher = publisher
        self.stopping = stopping
        self.keys = keys
        self.memories = Memories()
        self.answered = 0
        self.relayed = 0

    async def run(self) -> None:
        """Until stopped or ``stop_after`` turns answered."""
        while not self.stopping.is_set():
            # Step 1
            batch = await self.consumer.getmany(timeout_ms=200)
            fetched = [record for records in batch.values() for record in records]
            try:
                opened = {
                    (record.partition, record.offset): value
                    for record, value in await self.opened(list(filter(self.watches, fetched)))
                }
            except DATABASE_ERRORS as error:
                log.warning("records_not_opened", error=type(error).__name__)
                for partition, records in batch.items():
                    with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                        self.consumer.seek(partition, records[0].offset)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=OPEN_RETRY_SECONDS)
                continue
            for record in fetched:
                watched = (record.partition, record.offset) in opened
                if watched and not await self.handle(
                    record, opened[record.partition, record.offset]
                ):
                    return
                # Step 4
                partition = TopicPartition(record.topic, record.partition)
                await self.consumer.commit({partition: record.offset + 1})
                if self.done:
                    return

    def watches(self, record: ConsumerRecord) -> bool:
        """Whether ``record`` may be an event this bot acts on (step 2), by its key and
        headers alone: the others' values are neither opened nor decoded."""
        kind = dict(record.headers).get("ce_type")
        return record.key == self.options.domain.encode() and kind in _WATCHED_TYPES

    async def opened(
        self, records: Sequence[ConsumerRecord]
    ) -> list[tuple[ConsumerRecord, bytes | None]]:
        """Each record with its value opened; None where it cannot be (without keys: every
        sealed record)."""
        if self.keys is None:
            return [
                (record, None if sealed_with(record.headers or ()) else record.value)
                for record in records
            ]
        return await self.keys.opened(records)

    @property
    def done(self) -> bool:
        return self.options.stop_after is not None and self.answered >= self.options.stop_after

    async def handle(self, record: ConsumerRecord, value: bytes | None) -> bool:
        """Steps 2 and 3 for a record it ``watches``, its ``value`` opened (None: it does
        not open); False when stopped before the answer went out."""
        # Step 2
        if value is None:
            log.warning("record_skipped", offset=record.offset, error="sealed, does not open")
            return True
        try:
            event = _decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            log.warning("record_skipped", offset=record.offset, error=str(error)[:200])
            return True
        if event.domain != self.options.domain:
            return True
        match event:
            case BotTurn() if event.bot_id == self.options.bot:
                return await self.answer(event)
            case ConversationBotAssigned() if event.reason == "bot_first":
                self.memories.forget(event.conversation_id)
            case ConversationHandedOff() if event.bot_id == self.options.bot and relayable(event):
                self.memories.forget(event.conversation_id)
                return await self.relay_handoff(event)
            case ConversationHandedOff() | ConversationClosed():
                self.memories.forget(event.conversation_id)
        return True

    async def answer(self, turn: BotTurn) -> bool:
        if turn.answer_by < time.time():
            log.info("turn_expired", conversation_id=turn.conversation_id, turn_id=turn.id)
            return True
        # Step 3
        actions = self.memories.answer(turn)
        if self.options.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.options.delay)
            if self.stopping.is_set():
                return False
        events = answer_events(turn, actions, time.time())
        if not await self.publish(events):
            return False
        self.answered += 1
        log.info(
            "turn_answered",
            conversation_id=turn.conversation_id,
            turn_id=turn.id,
            answers=[type(event).__struct_config__.tag for event in events],
        )
        return True

    async def relay_handoff(self, handed_off: ConversationHandedOff) -> bool:
        """Tell the waiting customer what to expect (step 3 for a hand-off)."""
        events = relay_events(handed_off, relay(handed_off), time.time())
        if events and not await self.publish(events):
            return False
        self.relayed += 1
        log.info(
            "handoff_relayed",
            conversation_id=handed_off.conversation_id,
            handed_off_id=handed_off.id,
            replies=len(events),
        )
        return True

    async def publish(self, events: Sequence[BotEvent]) -> bool:
        """Until the broker acknowledges; False when stopped first."""
        while True:
            try:
                await self.publisher.publish(events)
                return True
            except BrokerUnavailable as error:
                log.warning("answer_not_published", error=str(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=PUBLISH_RETRY_SECONDS)
                if self.stopping.is_set():
                    return False


async def serve(options: Options, environ: Mapping[str, str], stopping: asyncio.Event) -> None:
    config = ServiceConfig(
        kafka=KafkaConfig(bootstrap_servers=options.bootstrap, topic_prefix=options.topic_prefix)
    )
    # No connection yet (min_size 0): the bot starts while the database is down, and each
    # opening or sealing tries it again.
    pool = (
        None
        if options.database_url is None
        else await db.create_pool(options.database_url, min_size=0, max_size=2)
    )
    keys = None if pool is None else TopicKeys(pool, cache_seconds=config.kafka.key_cache_seconds)
    if keys is None:
        log.warning(
            "bot_without_database",
            hint="sealed turns are skipped and answers published plain: give --database-url"
            " (or DATABASE_URL) where the service seals (kafka.seal_personal_data)",
        )
    consumer = AIOKafkaConsumer(
        **client_options(config, environ),
        group_id=options.consumer_group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    consumer.subscribe([config.topic(topics.ROUTING)], listener=_Assigned())
    producer = make_producer(config, environ)
    source = options.source or f"bot/{options.domain}/{options.bot}"
    publisher = EventPublisher(producer, config.topic(topics.BOTS), source, keys=keys)
    try:
        if not await start_consumer_when_reachable(consumer, stopping, name="bot"):
            return
        try:
            await producer.start()
            log.info(
                "bot_started", domain=options.domain, bot=options.bot, group=options.consumer_group
            )
            bot = KafkaBot(options, consumer, publisher, stopping, keys)
            await bot.run()
            log.info("bot_stopped", answered=bot.answered, relayed=bot.relayed)
        finally:
            await consumer.stop()
            await producer.stop()
    finally:
        if pool is not None:
            await pool.close()


def parse(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bots.kafka_bot",
        description="The reference bot: answers its bot.turn and waiting hand-off events on"
        " bots.events.",
    )
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument(
        "--database-url",
        default=environ.get("DATABASE_URL") or None,
        help="the service's PostgreSQL, whose topic keys open the sealed turns and seal the"
        " answers (default: $DATABASE_URL); without it, sealed turns are skipped and answers"
        " published plain",
    )
    parser.add_argument("--domain", required=True, help="routing domain")
    parser.add_argument("--bot", required=True, help="bot id ([domains.<d>.routing.bots.<id>])")
    parser.add_argument("--topic-prefix", default="", help="the deployment's kafka.topic_prefix")
    parser.add_argument("--group", help="consumer group (default: bot-<domain>-<bot>)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--stop-after", type=int, help="exit after answering this many turns")
    args = parser.parse_args(argv)
    if args.delay < 0 or (args.stop_after is not None and args.stop_after < 1):
        parser.error("--delay must be >= 0 and --stop-after >= 1")
    return Options(
        bootstrap=args.bootstrap,
        domain=args.domain,
        bot=args.bot,
        topic_prefix=args.topic_prefix,
        group=args.group,
        delay=args.delay,
        stop_after=args.stop_after,
        database_url=args.database_url,
    )


async def main_async(options: Options) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await serve(options, os.environ, stopping)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    logs.configure(os.environ.get("SWITCHBOARD_LOG_FORMAT"))
    asyncio.run(main_async(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
