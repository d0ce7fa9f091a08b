"""Kafka wiring shared by adapters and router: topic names, clients, publishing.

Records are keyed by routing domain (so one router owns a domain's events, in order),
carry CloudEvents attributes as headers and a msgspec-encoded JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition

from runtime.config import ServiceConfig
from runtime.db import DATABASE_ERRORS
from runtime.sealing import SealedValue, TopicKeys
from runtime.timeouts import SharedTimeout
from schemas import topics
from schemas.cloudevents import encode_headers
from schemas.common import Event

log = structlog.get_logger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time: nothing may be taken as published."""


class KeysUnavailable(BrokerUnavailable):
    """Nothing was published: the records' topic keys could not be had from PostgreSQL (an
    outage, once the spare keys a producer keeps for one are used up)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something accepted but not published as an event: a provider's request, or an item
    of one, that no event may carry (``EventPublisher.dead_letter``)."""

    source: str
    """Who set it aside: ``webhook/<provider>``."""
    reason: str
    domain: str | None
    """The routing domain of its endpoint, when known (the record key)."""
    body: bytes
    """The request body as received, for an operator to inspect."""
    content_type: str | None


async def start_consumer_when_reachable(
    consumer: AIOKafkaConsumer, stopping: asyncio.Event, *, name: str
) -> bool:
    """Start ``consumer``, trying again while the broker cannot be reached, so a worker
    started during an outage waits it out instead of dying. False when ``stopping`` is set
    first (the consumer is then not started).

    A group consumer's start waits for its first assignment, which takes as long as its
    group's rebalance: while members that died are still counted, up to their session
    timeout, and on some brokers longer (a process restarted with two others waited there
    for minutes, its shutdown with it). ``stopping`` ends that wait too: the start is
    given up and the consumer stopped (``stop_consumer``)."""
    delay = CONSUMER_START_RETRY_MIN
    while not stopping.is_set():
        starting = asyncio.ensure_future(consumer.start())
        stopped = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait((starting, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not starting.done():
                starting.cancel()
        if starting.cancelled() or not starting.done():
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                await starting
            log.info("consumer_start_given_up", consumer=name)
            await stop_consumer(consumer, name=name)
            return False
        try:
            starting.result()
            return True
        except KafkaConnectionError as error:
            log.warning("consumer_start_failed", consumer=name, error=type(error).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=delay)
        delay = min(delay * 2, CONSUMER_START_RETRY_MAX)
    return False


async def stop_consumer(consumer: AIOKafkaConsumer, *, name: str) -> None:
    """Stop ``consumer``, leaving its group, for at most ``CONSUMER_STOP_SECONDS``.

    A group consumer stops once its coordinator has finished what it was doing, and while
    the group rebalances that is a JoinGroup the broker answers only when every member has
    rejoined or its rebalance timeout has passed: a process stopping while others come and
    go waited for that, one consumer after another, past the grace period of its
    deployment (seen in a restart with three adapters). Given up, the group drops the
    member once its session times out."""
    try:
        await asyncio.wait_for(consumer.stop(), CONSUMER_STOP_SECONDS)
    except TimeoutError:
        log.warning("consumer_stop_timed_out", consumer=name, seconds=CONSUMER_STOP_SECONDS)


CONSUMER_STOP_SECONDS = 5.0
"""How long a consumer's stop may wait for its group (``stop_consumer``)."""

CONSUMER_START_RETRY_MIN = 0.5
CONSUMER_START_RETRY_MAX = 10.0
"""Seconds between attempts to start a consumer while the broker is unreachable."""


def partition_for(key: str, partitions: int) -> int:
    """The partition the Java client's (and aiokafka's) default partitioner picks for ``key``."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


_DEFAULT_PARTITIONER = DefaultPartitioner()


class KeyedPartitioner:
    """aiokafka's default partitioner (the Java client's murmur2 of the key; a keyless
    record to a random partition), remembering the hash of each key it has seen. Records
    are keyed by domain, so a producer sees a handful of keys, and the pure-Python hash
    cost 2.4 µs a record."""

    KEYS_REMEMBERED = 4096

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(_DEFAULT_PARTITIONER(key, all_partitions, available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.KEYS_REMEMBERED:
                self._hashes.clear()
            hashed = self._hashes[key] = int(murmur2(key) & 0x7FFFFFFF)
        return all_partitions[hashed % len(all_partitions)]


def client_options(config: ServiceConfig, environ: Mapping[str, str]) -> dict[str, Any]:
    kafka = config.kafka
    assert kafka.bootstrap_servers, "bootstrap servers are resolved before clients are made"
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        if kafka.sasl_username_env:
            options["sasl_plain_username"] = environ.get(kafka.sasl_username_env, "")
        if kafka.sasl_password_env:
            options["sasl_plain_password"] = environ.get(kafka.sasl_password_env, "")
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        options["ssl_context"] = ssl.create_default_context()
    return options


def group_consumer(
    config: ServiceConfig, environ: Mapping[str, str], group: str, *topics_: str
) -> AIOKafkaConsumer:
    """A consumer of the deployment's consumer group ``<kafka.consumer_group>-<group>``
    that commits by hand, starts a new group at the earliest record, and polls as fast as
    ``kafka.fetch_max_wait_ms`` says (the adapters' egress, bot bridge and forwarder)."""
    kafka_config = config.kafka
    return AIOKafkaConsumer(
        *topics_,
        **client_options(config, environ),
        group_id=f"{kafka_config.consumer_group}-{group}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=kafka_config.fetch_max_wait_ms,
        session_timeout_ms=kafka_config.session_timeout_ms,
        heartbeat_interval_ms=max(100, kafka_config.session_timeout_ms // 4),
    )


RESTED_READ_MS = 100
"""How long a consumer back from ``rest`` reads before it may rest again: a few fetches."""


Fetched = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


async def fetch(
    consumer: AIOKafkaConsumer,
    stopping: asyncio.Event,
    *,
    timeout_ms: int,
    max_records: int | None = None,
) -> Fetched:
    """``consumer.getmany``, given up (nothing fetched) once ``stopping`` is set.

    While its group rebalances, a group consumer's ``getmany`` waits for the new assignment
    whatever its timeout: until every member has rejoined, up to the group's rebalance
    timeout (aiokafka's ``max_poll_interval_ms``, 5 minutes). A process asked to stop then
    (a deploy stopping several adapters at once) waited for that, past its grace period.
    The stop ends the wait; the consumer is stopped next (``stop_consumer``)."""
    fetching: asyncio.Future[Fetched] = asyncio.ensure_future(
        consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    )
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((fetching, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when the caller is cancelled: no fetch outlives its wait.
        stopped.cancel()
        given_up = not fetching.done()
        if given_up:
            fetching.cancel()
    if not given_up:
        return fetching.result()
    with contextlib.suppress(asyncio.CancelledError, KafkaError):
        await fetching
    return {}


async def rest(consumer: AIOKafkaConsumer, seconds: float, wake: asyncio.Event) -> None:
    """Fetch nothing for ``seconds``, or until ``wake`` is set: the consumer's partitions
    are paused meanwhile (a paused consumer sends no fetch), then resumed.

    For a consumer with nothing to do: on a broker whose fetches do not wake on new data,
    it would otherwise fetch every ``kafka.fetch_max_wait_ms``, costing its own process and
    the broker CPU for nothing."""
    consumer.pause(*consumer.assignment())
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
    finally:
        consumer.resume(*consumer.paused())


async def ensure_topics(config: ServiceConfig, environ: Mapping[str, str]) -> None:
    """Create missing topics; refuse to run when inbound and agents partitions differ (one
    router must own partition i of both)."""
    admin = AIOKafkaAdminClient(**client_options(config, environ))
    await admin.start()
    try:
        wanted = [config.topic(name) for name in (*topics.ALL_TOPICS, topics.CONFIG)]
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing and config.kafka.create_topics:
            # Another process may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([_new_topic(config, name) for name in missing])
            log.info("topics_created", topics=missing, partitions=config.kafka.partitions)
        described = await admin.describe_topics(
            [config.topic(topics.INBOUND), config.topic(topics.AGENTS)]
        )
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        if len(set(counts.values())) > 1:
            raise RuntimeError(
                f"{topics.INBOUND} and {topics.AGENTS} must have the same partition count,"
                f" found {counts}"
            )
    finally:
        await admin.close()


def _new_topic(config: ServiceConfig, name: str) -> NewTopic:
    if name == config.topic(topics.CONFIG):
        # One partition keeps versions in order; compaction keeps the latest for ever.
        return NewTopic(
            name,
            1,
            config.kafka.replication_factor,
            topic_configs={"cleanup.policy": "compact"},
        )
    retention = config.kafka.topic_retention_ms
    return NewTopic(
        name,
        config.kafka.partitions,
        config.kafka.replication_factor,
        # The topics carry message texts and addresses: they keep them no longer than the
        # domains' retention periods allow (README "Topic retention").
        topic_configs={} if retention is None else {"retention.ms": str(retention)},
    )


def make_producer(config: ServiceConfig, environ: Mapping[str, str]) -> AIOKafkaProducer:
    # Idempotence stays off: exactly-once effects come from the outbox and event ids.
    return AIOKafkaProducer(
        **client_options(config, environ),
        acks="all",
        linger_ms=2,
        max_batch_size=1024 * 1024,
        enable_idempotence=False,
        request_timeout_ms=10000,
        max_request_size=4 * 1024 * 1024,
        partitioner=KeyedPartitioner(),
    )


async def _acks(futures: list[asyncio.Future[Any]]) -> None:
    """Every send's acknowledgement. A webhook's one event is awaited as it is: a gather
    of one future costs more than the rest of the send (11.8 against 0.4 µs, measured)."""
    if len(futures) == 1:
        await futures[0]
    else:
        await asyncio.gather(*futures)


def event_headers(
    event: Event, source: str, version: bytes | None, sealed: SealedValue | None
) -> list[tuple[str, bytes]]:
    """A published event's record headers: its CloudEvents attributes, the configuration
    version it was made under (None: none stamped) and the key that sealed it, if any."""
    headers = encode_headers(event, source=source)
    if version is not None:
        headers.append((topics.CONFIG_VERSION, version))
    return headers if sealed is None else sealed.headers(headers)


class EventPublisher:
    """Publishes ``schemas`` events on one topic, keyed by domain, awaiting the broker's ack.

    With a ``dead_letter_topic`` it also sets aside what an adapter accepted but could not
    publish (``dead_letter``), in the router's dead-letter format: the original bytes as
    the value, the domain as the key, ``dlq_reason`` and ``dlq_topic`` (here: the topic
    the item was meant for) headers, plus ``dlq_source`` and the body's ``content-type``.

    With ``config_version`` each record carries the ``config_version`` header: the
    runtime configuration version the process runs (see ``schemas.topics.CONFIG_VERSION``).

    With ``keys`` it seals the events holding a customer's personal data
    (``runtime.sealing``).
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        source: str,
        *,
        timeout: float = 5.0,
        dead_letter_topic: str | None = None,
        config_version: Callable[[], int] | None = None,
        keys: TopicKeys | None = None,
    ) -> None:
        self._config_version = config_version
        self._keys = keys
        self._producer = producer
        self._topic = topic
        self._source = source
        self._timeout = SharedTimeout(timeout)
        self._dead_letter_topic = dead_letter_topic

    async def publish(self, events: Sequence[Event]) -> None:
        values = [msgspec.json.encode(event) for event in events]
        sealed = None
        if self._keys is not None:
            # Keys come from PostgreSQL: without them nothing is published either.
            try:
                sealed = await self._keys.sealed(events, values)
            except DATABASE_ERRORS as error:
                raise KeysUnavailable(f"topic keys unavailable: {type(error).__name__}") from error
        await self._acknowledged(self._send_all(events, values, sealed))

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        assert self._dead_letter_topic is not None, "built without a dead-letter topic"
        await self._acknowledged(self._send_dead_letters(self._dead_letter_topic, letters))

    async def _acknowledged(self, sending: Coroutine[Any, Any, None]) -> None:
        try:
            await self._timeout.within(sending)
        except (KafkaError, KafkaConnectionError, OSError, TimeoutError) as error:
            raise BrokerUnavailable(
                f"broker did not acknowledge: {type(error).__name__}"
            ) from error

    async def _send_dead_letters(self, topic: str, letters: Sequence[DeadLetter]) -> None:
        futures = []
        for letter in letters:
            headers = [
                (topics.DLQ_REASON, letter.reason[:500].encode()),
                (topics.DLQ_TOPIC, self._topic.encode()),
                (topics.DLQ_SOURCE, letter.source.encode()),
            ]
            if letter.content_type:
                headers.append(("content-type", letter.content_type.encode()))
            futures.append(
                await self._producer.send(
                    topic,
                    value=letter.body,
                    key=None if letter.domain is None else letter.domain.encode(),
                    headers=headers,
                )
            )
        await _acks(futures)

    async def _send_all(
        self,
        events: Sequence[Event],
        values: Sequence[bytes],
        sealed: Sequence[SealedValue] | None,
    ) -> None:
        version = None if self._config_version is None else str(self._config_version()).encode()
        futures = []
        for index, event in enumerate(events):
            seal = None if sealed is None else sealed[index]
            headers = event_headers(event, self._source, version, seal)
            value = values[index] if seal is None else seal.value
            futures.append(
                await self._producer.send(
                    self._topic,
                    value=value,
                    key=event.domain.encode(),
                    headers=headers,
                )
            )
        await _acks(futures)
