"""End-to-end benchmark on real infrastructure, with this machine's raw limit beside it.

Everything runs on the embedded broker and PostgreSQL (or the ones named by
``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``), in one run, so the ratios compare like
with like:

- raw pipeline: consume → decode → COPY one row per message, one transaction per batch →
  produce one event per message → commit. No routing. The best this machine does.
- naive pipeline: the same with one transaction per message (what a careless design gets).
- Switchboard: the router (engine, one transaction per batch with outbox and offsets,
  outbox publish) from ``conversations.inbound`` to committed outcome + routing event.
  Its messages are sealed as the adapters seal them (``runtime.sealing``, with keys of
  their own), so the router opens each and seals what it publishes, as in production.
- throughput in ``THROUGHPUT_ROUNDS`` rounds, each a raw run then a Switchboard run on
  fresh databases and topics: the figures are the median round's, so a drift of the
  machine's speed within the run weighs on both sides alike.
- latency at a fixed 1,000 msg/s: produce time → the output event seen by a consumer,
  for the raw pipeline and for Switchboard, in three rounds each, alternating (figures:
  the median round's; the worst round's p99 is printed too).
- recovery: taking over a partition whose domain holds 100,000 open conversations, from
  the start of the load to the first new event applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from router.engine import (
    ConversationActivity,
    DomainPolicy,
    apply,
    conversation_activity,
    make_id,
    new_state,
    snapshot,
)
from router.engine.state import Conversation
from router.shell.worker import RouterWorker
from runtime import collector, db, kafka
from runtime import logging as logs
from runtime.metrics import Metrics
from runtime.sealing import TopicKeys
from schemas import (
    INBOUND_DECODER,
    AgentRegistered,
    Channel,
    MessageReceived,
    Presence,
    PresenceChanged,
    topics,
)
from switchboard.cli import prepare
from switchboard.config import Config
from switchboard.control import store as control_store
from switchboard.embedded import missing_services
from tools.stats import sampled_percentile

THROUGHPUT_MESSAGES = 100_000
THROUGHPUT_ROUNDS = 3
"""Throughput rounds per side, raw and Switchboard alternating: figures are the median
round's. One round of each gave ratios from 0.45 to 0.55 within an hour on one machine
(the raw pipeline's rate moved most: 38,600 to 44,200 msg/s)."""
INPUT_SOURCE = "switchboard"
"""The CloudEvents source of Switchboard's input records (the default ``source``)."""
NAIVE_MESSAGES = 1_000
LATENCY_RATE = 1_000
LATENCY_SECONDS = 6
LATENCY_ROUNDS = 3
WARM_MESSAGES = 2_000
"""Messages through a pipeline before a latency round; Switchboard's open as many
conversations, so the measured load is steady traffic."""
RECOVERY_CONVERSATIONS = 100_000
FETCH_MAX_WAIT_MS = 10


@dataclass(frozen=True)
class Services:
    bootstrap: str
    server_url: str


@contextlib.asynccontextmanager
async def services() -> AsyncIterator[Services]:
    """The broker and PostgreSQL the environment names, or embedded ones (stopped, and their
    state directory removed, on the way out: the scale benchmark's database alone holds
    more than a gigabyte)."""
    with (
        tempfile.TemporaryDirectory(
            prefix="switchboard-bench-", ignore_cleanup_errors=True
        ) as state,
        missing_services(
            Path(state), os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
        ) as (bootstrap, url),
    ):
        yield Services(bootstrap, db.with_database(url, "postgres"))


async def fresh_database(services: Services) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(services.server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return db.with_database(services.server_url, name)


async def drop_database(services: Services, url: str) -> None:
    conn = await asyncpg.connect(services.server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


def message(domain: str, index: int, conversations: int) -> MessageReceived:
    return message_from(domain, f"+1555{index % conversations:07d}", index)


def message_from(
    domain: str, address: str, index: int, text: str = "where is my parcel?"
) -> MessageReceived:
    """The ``index``-th benchmark SMS, from ``address``."""
    return MessageReceived(
        id=str(uuid.uuid4()),
        domain=domain,
        occurred_at=time.time(),
        channel=Channel.SMS,
        endpoint="+15550000000",
        customer_address=address,
        customer_id=f"phone:{address}",
        conversation_key=f"sms:{address}",
        provider_message_id=f"SM{index}-{uuid.uuid4().hex[:6]}",
        text=text,
    )


# -- the raw pipeline ------------------------------------------------------------------


async def raw_pipeline(
    services: Services,
    url: str,
    source: str,
    sink: str,
    count: int,
    *,
    per_message_transaction: bool = False,
    stop: asyncio.Event | None = None,
) -> float:
    """Consume ``count`` records (or until ``stop``), return seconds from first to last."""
    conn = await asyncpg.connect(url)
    await conn.execute("DROP TABLE IF EXISTS raw_messages")
    await conn.execute("CREATE TABLE raw_messages (id text PRIMARY KEY, domain text, body jsonb)")
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=services.bootstrap,
        group_id=None,  # no group join delay: the pipeline owns its one partition
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_poll_records=2000,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=services.bootstrap, linger_ms=2, max_batch_size=1024 * 1024
    )
    await consumer.start()
    await producer.start()
    # The collector as a service process has it (``switchboard.cli.serve``), for both sides.
    collector.settle()
    done = 0
    first = last = 0.0
    inflight: list[asyncio.Future[list[Any]]] = []
    try:
        while done < count and not (stop is not None and stop.is_set()):
            batch = await consumer.getmany(timeout_ms=100)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            if not first:
                first = time.perf_counter()
            events = [INBOUND_DECODER.decode(r.value) for r in records]
            rows = [(e.id, e.domain, msgspec.json.encode(e).decode()) for e in events]
            if per_message_transaction:
                for row in rows:
                    async with conn.transaction():
                        await conn.execute(
                            "INSERT INTO raw_messages VALUES ($1, $2, $3::jsonb)", *row
                        )
            else:
                async with conn.transaction():
                    await conn.copy_records_to_table("raw_messages", records=rows)
            futures = [
                await producer.send(sink, value=r.value, key=r.key, headers=list(r.headers))
                for r in records
            ]
            # Acknowledgements are awaited, but not before the next batch: the same
            # discipline as the router's outbox.
            inflight.append(asyncio.gather(*futures))
            done += len(records)
            last = time.perf_counter()
        await asyncio.gather(*inflight)
        last = time.perf_counter()
    finally:
        await consumer.stop()
        await producer.stop()
        await conn.close()
    return last - first


async def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def adapter_keys(url: str) -> AsyncIterator[TopicKeys]:
    """The topic keys the messages are sealed with: a process's of its own, as the
    adapters' are, so that the router's cache starts empty as it does in production."""
    pool = await db.create_pool(url, min_size=1, max_size=2)
    try:
        yield TopicKeys(pool)
    finally:
        await pool.close()


async def produce(
    bootstrap: str,
    topic: str,
    events: list[MessageReceived],
    keys: TopicKeys | None = None,
    version: int | None = None,
) -> None:
    """``events`` on ``topic``, sealed with ``keys`` and stamped with configuration
    ``version`` (None: plain, the raw pipeline's)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for start in range(0, len(events), 1000):
            chunk = events[start : start + 1000]
            records = await _records(chunk, keys, version)
            futures = [
                await producer.send(topic, value=value, key=e.domain.encode(), headers=headers)
                for e, (value, headers) in zip(chunk, records, strict=True)
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _records(
    events: list[MessageReceived], keys: TopicKeys | None, version: int | None
) -> list[tuple[bytes, list[tuple[str, bytes]] | None]]:
    """The value and headers of each event's record: with ``keys``, as the adapters publish
    it (``runtime.kafka.event_headers``: sealed, with its CloudEvents headers and the
    configuration ``version`` it was made under, which the router reads); without, plain
    and without headers (the raw pipeline's)."""
    values = [msgspec.json.encode(e) for e in events]
    if keys is None:
        return [(value, None) for value in values]
    stamp = None if version is None else str(version).encode()
    return [
        (sealed.value, kafka.event_headers(event, INPUT_SOURCE, stamp, sealed))
        for event, sealed in zip(events, await keys.sealed(events, values), strict=True)
    ]


async def _read_up(reader: AIOKafkaConsumer) -> None:
    """Read what ``reader`` finds before the load starts. The embedded broker's "latest"
    offset is the start of a topic's last record batch (``EMBEDDED_BROKER.md``), so a
    reader put at the end still has that batch to read: a router's warm-up batch holds
    thousands of events, and reading them while the load ran delayed the load's first
    messages by up to 200 ms, a round's p99."""
    while True:
        if await reader.getmany(timeout_ms=200):
            continue
        behind = False
        for tp in reader.assignment():
            highwater = reader.highwater(tp)
            behind = behind or highwater is None or await reader.position(tp) < highwater
        if not behind:
            return


async def paced_latencies(
    bootstrap: str,
    topic: str,
    out_topic: str,
    make: Callable[[int], MessageReceived],
    *,
    rate: int,
    seconds: float,
    matches: Callable[[Any], str | None],
    output_of: Callable[[MessageReceived], str] = lambda event: event.id,
    keys: TopicKeys | None = None,
    version: int | None = None,
) -> list[float]:
    """Produce at ``rate`` for ``seconds`` (sealed with ``keys`` and stamped with
    ``version``, as ``produce``: the sealing is part of the time); return produce→output
    latencies in ms, an output record found by ``matches`` = ``output_of`` its message."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    reader = AIOKafkaConsumer(
        out_topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await reader.start()
    await reader.seek_to_end()
    await _read_up(reader)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set() or len(latencies) < len(sent):
            batch = await reader.getmany(timeout_ms=50)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    key = matches(record)
                    if key is not None and key in sent:
                        latencies.append((now - sent.pop(key)) * 1000)
            if stop.is_set() and not sent:
                break

    reading = asyncio.create_task(read())
    try:
        interval = 1 / rate
        start = time.perf_counter()
        index = 0
        while time.perf_counter() - start < seconds:
            event = make(index)
            sent[output_of(event)] = time.perf_counter()
            ((value, headers),) = await _records([event], keys, version)
            await producer.send(topic, value=value, key=event.domain.encode(), headers=headers)
            index += 1
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reading, timeout=15)
    finally:
        reading.cancel()
        await producer.stop()
        await reader.stop()
    return latencies


async def latency_rounds(
    raw_round: Callable[[], Awaitable[list[float]]],
    our_round: Callable[[], Awaitable[list[float]]],
) -> tuple[list[list[float]], list[list[float]]]:
    """``LATENCY_ROUNDS`` paced runs per side, raw and Switchboard alternating (as the
    throughput rounds do: the broker keeps every topic in memory, and a side whose rounds
    all came after the other's would meet a fuller broker), each on a database and topics of
    its own after the same warm-up (``WARM_MESSAGES`` through the pipeline). The embedded broker's
    produce → consume latency grows with a partition's size (p50 4 ms on an empty topic,
    46 ms once it holds 24,000 records, measured here), so rounds on the same topics would
    measure how full the broker is, and Switchboard, which writes more records per message
    than the raw pipeline, would look slower than it is. It also stalls now and then for
    about 200 ms (the raw pipeline sees it as often as Switchboard): one such stall in a
    single run moves its p99 by a factor of five, so figures are the median round's."""
    raw: list[list[float]] = []
    ours: list[list[float]] = []
    for _ in range(LATENCY_ROUNDS):
        raw.append(await raw_round())
        ours.append(await our_round())
    return raw, ours


def median_round(rounds: list[list[float]], q: float) -> float:
    return statistics.median(sampled_percentile(latencies, q) for latencies in rounds)


# -- Switchboard -----------------------------------------------------------------------


def service_sections(services: Services, url: str, name: str, pool_size: int) -> dict[str, Any]:
    """The ``kafka`` and ``database`` sections of a benchmark's service: topics and a
    consumer group of its own (``name`` and a fresh tag) on the shared broker."""
    tag = uuid.uuid4().hex[:6]
    return {
        "kafka": {
            "bootstrap_servers": services.bootstrap,
            "topic_prefix": f"{name}{tag}.",
            "consumer_group": f"{name}-{tag}",
            "partitions": 1,
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        },
        "database": {"url": url, "pool_max_size": pool_size},
    }


def bench_config(services: Services, url: str, domains: list[str]) -> Config:
    return msgspec.convert(
        {**service_sections(services, url, "bench", 4), "domains": {d: {} for d in domains}},
        Config,
    )


class AcknowledgementClock:
    """When the broker last acknowledged a record batch of the router's producer: the end
    of the throughput window, as the raw pipeline's is its last acknowledgement. The router
    counts what the broker acknowledged when its loop next turns; once the input has run
    dry, that is a fetch's wait later (up to ``kafka.fetch_max_wait_ms`` + 200 ms)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.last_cpu: float | None = None
        """This process's CPU time (``time.process_time``) at ``last``."""

    def watching(self, producer: AIOKafkaProducer) -> AIOKafkaProducer:
        """``producer``, its record batches' acknowledgements noted."""
        return cast(AIOKafkaProducer, _Watched(producer, self))

    def noted(self, sent: asyncio.Future[Any]) -> None:
        if not sent.cancelled() and sent.exception() is None:
            self.last = time.perf_counter()
            self.last_cpu = time.process_time()


class _Watched:
    """A producer whose ``send_batch`` acknowledgements an ``AcknowledgementClock`` notes;
    every other call goes to the producer as it is."""

    def __init__(self, producer: AIOKafkaProducer, clock: AcknowledgementClock) -> None:
        self._producer = producer
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    async def send_batch(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        sent: asyncio.Future[Any] = await self._producer.send_batch(*args, **kwargs)
        sent.add_done_callback(self._clock.noted)
        return sent


@contextlib.asynccontextmanager
async def router(
    config: Config,
    metrics: Metrics | None = None,
    *,
    acknowledgements: AcknowledgementClock | None = None,
) -> AsyncIterator[RouterWorker]:
    assert config.database.url
    pool = await db.create_pool(config.database.url, max_size=4)
    producer = kafka.make_producer(config, {})
    await producer.start()
    policies = {name: domain.routing for name, domain in config.domains.items()}
    async with pool.acquire() as conn:
        applied = await control_store.current(conn)
    worker = RouterWorker(
        config,
        policies,
        {},
        pool,
        producer if acknowledgements is None else acknowledgements.watching(producer),
        metrics or Metrics(config=config.metrics),
        # As ``switchboard.cli.serve`` starts it: under the stored version, which the input
        # records are stamped with (a newer stamp holds them, ``router.shell.config_hold``).
        config_version=0 if applied is None else applied.version,
    )
    collector.settle()  # as ``switchboard.cli.serve`` does once the service has started
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)
        await producer.stop()
        await pool.close()


async def register_agents(config: Config, domain: str, agents: int, capacity: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, linger_ms=5)
    await producer.start()
    publisher = kafka.EventPublisher(producer, config.topic(topics.AGENTS), "bench", timeout=60)
    try:
        events: list[Any] = []
        for i in range(agents):
            agent = f"agent-{i:05d}"
            now = time.time()
            events.append(
                AgentRegistered(
                    id=str(uuid.uuid4()),
                    domain=domain,
                    occurred_at=now,
                    agent_id=agent,
                    capacity={Channel.SMS: capacity},
                )
            )
            events.append(
                PresenceChanged(
                    id=str(uuid.uuid4()),
                    domain=domain,
                    occurred_at=now,
                    agent_id=agent,
                    status=Presence.ONLINE,
                )
            )
        await publisher.publish(events)
    finally:
        await producer.stop()


async def count_records(
    bootstrap: str,
    topic: str,
    expected: int,
    identify: Callable[[Any], bytes | None],
    timeout: float = 120,
) -> float:
    """Seconds until ``expected`` distinct records (by ``identify``; None: not counted)
    were seen on ``topic``."""
    reader = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await reader.start()
    seen: set[bytes] = set()
    started = time.perf_counter()
    try:
        while len(seen) < expected and time.perf_counter() - started < timeout:
            batch = await reader.getmany(timeout_ms=100, max_records=5000)
            for records in batch.values():
                for record in records:
                    if (identity := identify(record)) is not None:
                        seen.add(identity)
    finally:
        await reader.stop()
    if len(seen) < expected:
        raise RuntimeError(f"only {len(seen)} of {expected} records on {topic} within {timeout} s")
    return time.perf_counter() - started


def _event_id(ce_type: bytes) -> Callable[[Any], bytes | None]:
    def identify(record: Any) -> bytes | None:
        headers = dict(record.headers)
        return headers["ce_id"] if headers.get("ce_type") == ce_type else None

    return identify


async def count_routed(config: Config, expected: int, timeout: float = 120) -> float:
    """Seconds until ``expected`` message.routed events were seen on the routing topic."""
    assert config.kafka.bootstrap_servers
    return await count_records(
        config.kafka.bootstrap_servers,
        config.topic(topics.ROUTING),
        expected,
        _event_id(b"message.routed"),
        timeout,
    )


def published_routed(metrics: Metrics) -> float:
    """message.routed events the broker acknowledged to the router."""
    value = metrics.registry.get_sample_value(
        "switchboard_routing_events_total", {"type": "message.routed"}
    )
    return value or 0.0


async def bench_switchboard_throughput(services: Services) -> tuple[float, float]:
    """Messages per second, and the router's CPU time per message in microseconds (this
    process's user and system time over the same window: the broker and PostgreSQL run in
    processes of their own, so it is what the router spends, and it depends far less on
    what else the machine does than the rate)."""
    url = await fresh_database(services)
    try:
        config = bench_config(services, url, ["bench"])
        version = (await prepare(config, {})).version
        await register_agents(config, "bench", agents=200, capacity=10)
        events = [message("bench", i, conversations=2000) for i in range(THROUGHPUT_MESSAGES)]
        async with adapter_keys(url) as keys:
            await produce(services.bootstrap, config.topic(topics.INBOUND), events, keys, version)
        metrics = Metrics(config=config.metrics)
        clock = AcknowledgementClock()
        async with router(config, metrics, acknowledgements=clock) as worker:
            # Timed from the router's first records, as the raw pipeline is from its first
            # (joining a consumer group, loading the partition and the first fetch are
            # start-up, not throughput), to the broker's acknowledgement of the last
            # message.routed, as the raw pipeline is to its last ack: the router counts the
            # acknowledged events. A reader in this process would take the router's core;
            # the events are read and checked afterwards.
            while worker.first_batch_after_load is None:
                await asyncio.sleep(0.001)
            started = worker.first_batch_after_load
            cpu_started = time.process_time()
            deadline = time.perf_counter() + 120
            while published_routed(metrics) < THROUGHPUT_MESSAGES:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"only {published_routed(metrics)} messages routed in 120 s")
                # Reading the registry costs the router's core: not too often.
                await asyncio.sleep(0.02)
            assert clock.last is not None
            assert clock.last_cpu is not None
            seconds = clock.last - started
            # To the same acknowledgement: not the wait until this loop noticed the count.
            cpu_seconds = clock.last_cpu - cpu_started
        await count_routed(config, THROUGHPUT_MESSAGES)
        return THROUGHPUT_MESSAGES / seconds, cpu_seconds / THROUGHPUT_MESSAGES * 1e6
    finally:
        await drop_database(services, url)


async def switchboard_latency_round(services: Services) -> list[float]:
    """One latency round of Switchboard, on a fresh database and topics."""

    # The routed event is recognised by its headers: a message's message.routed has an id
    # made from the message's (``router.engine.messages``), so the reader opens nothing
    # and takes none of the router's core.
    def routed_id(record: Any) -> str | None:
        headers = dict(record.headers)
        if headers.get("ce_type") != b"message.routed":
            return None
        return str(headers["ce_id"].decode())

    def routed_id_of(message: MessageReceived) -> str:
        return make_id(f"{message.id}/0")

    url = await fresh_database(services)
    try:
        config = bench_config(services, url, ["bench"])  # topics of its own
        version = (await prepare(config, {})).version
        await register_agents(config, "bench", agents=200, capacity=10)
        async with adapter_keys(url) as keys, router(config):
            # Warm up: open the conversations so the measured load is steady traffic.
            # A message can be routed before the agents' presence is applied (another
            # topic): the conversations are assigned then, all at once. Wait for that.
            warm = [message("bench", i, WARM_MESSAGES) for i in range(WARM_MESSAGES)]
            await produce(services.bootstrap, config.topic(topics.INBOUND), warm, keys, version)
            await count_records(
                services.bootstrap,
                config.topic(topics.ROUTING),
                WARM_MESSAGES,
                _event_id(b"conversation.assigned"),
            )
            return await paced_latencies(
                services.bootstrap,
                config.topic(topics.INBOUND),
                config.topic(topics.ROUTING),
                lambda i: message("bench", i, WARM_MESSAGES),
                rate=LATENCY_RATE,
                seconds=LATENCY_SECONDS,
                matches=routed_id,
                output_of=routed_id_of,
                keys=keys,
                version=version,
            )
    finally:
        await drop_database(services, url)


async def bench_raw_throughput(services: Services) -> float:
    """The raw pipeline's messages per second over ``THROUGHPUT_MESSAGES``, on a fresh
    database and topics."""
    url = await fresh_database(services)
    try:
        tag = uuid.uuid4().hex[:6]
        source, sink = f"raw{tag}.in", f"raw{tag}.out"
        await create_topics(services.bootstrap, [source, sink])
        events = [message("bench", i, 2000) for i in range(THROUGHPUT_MESSAGES)]
        await produce(services.bootstrap, source, events)
        seconds = await raw_pipeline(services, url, source, sink, THROUGHPUT_MESSAGES)
        return THROUGHPUT_MESSAGES / seconds
    finally:
        await drop_database(services, url)


async def bench_naive(services: Services) -> float:
    """The naive pipeline's messages per second (one transaction per message)."""
    url = await fresh_database(services)
    try:
        tag = uuid.uuid4().hex[:6]
        events = [message("bench", i, 2000) for i in range(NAIVE_MESSAGES)]
        naive_source, naive_sink = f"naive{tag}.in", f"naive{tag}.out"
        await create_topics(services.bootstrap, [naive_source, naive_sink])
        await produce(services.bootstrap, naive_source, events)
        naive_seconds = await raw_pipeline(
            services, url, naive_source, naive_sink, NAIVE_MESSAGES, per_message_transaction=True
        )
        return NAIVE_MESSAGES / naive_seconds
    finally:
        await drop_database(services, url)


async def raw_latency_round(services: Services) -> list[float]:
    """One latency round of the raw pipeline, on a fresh database and topics."""

    def same_id(record: Any) -> str | None:
        return str(msgspec.json.decode(record.value)["id"])

    def value_of(record: Any) -> bytes:
        return bytes(record.value)

    url = await fresh_database(services)
    try:
        lat_source, lat_sink = [f"rawlat{uuid.uuid4().hex[:6]}.{end}" for end in ("in", "out")]
        await create_topics(services.bootstrap, [lat_source, lat_sink])
        stop = asyncio.Event()
        pipeline = asyncio.create_task(
            raw_pipeline(services, url, lat_source, lat_sink, 10**9, stop=stop)
        )
        try:
            warm = [message("bench", i, WARM_MESSAGES) for i in range(WARM_MESSAGES)]
            await produce(services.bootstrap, lat_source, warm)
            await count_records(services.bootstrap, lat_sink, WARM_MESSAGES, value_of)
            return await paced_latencies(
                services.bootstrap,
                lat_source,
                lat_sink,
                lambda i: message("bench", i, WARM_MESSAGES),
                rate=LATENCY_RATE,
                seconds=LATENCY_SECONDS,
                matches=same_id,
            )
        finally:
            stop.set()
            await pipeline
    finally:
        await drop_database(services, url)


def later_activity(conversation: Conversation) -> ConversationActivity:
    """The conversation's activity after one more customer message: later than its record,
    so that a takeover merges the two (``router.engine.with_activity``)."""
    activity = conversation_activity(conversation)
    return msgspec.structs.replace(activity, message_count=activity.message_count + 1)


async def seed_open_work(url: str, domain: str, conversations: int) -> None:
    """Store ``conversations`` open conversations of as many customers, assigned to
    ``conversations // 10`` online agents of 10 SMS slots each, as the router saved them,
    each with its activity in a row of its own, as after a customer message to its owner
    (``router.save_activity_alone``): a takeover merges every one."""
    state = new_state(domain, DomainPolicy())
    agents = conversations // 10
    now = time.time()
    for i in range(agents):
        agent = f"agent-{i:05d}"
        apply(
            state,
            AgentRegistered(
                id=f"r{i}",
                domain=domain,
                occurred_at=now,
                agent_id=agent,
                capacity={Channel.SMS: 10},
            ),
            now,
        )
        apply(
            state,
            PresenceChanged(
                id=f"p{i}",
                domain=domain,
                occurred_at=now,
                agent_id=agent,
                status=Presence.ONLINE,
            ),
            now,
        )
    for i in range(conversations):
        apply(state, message(domain, i, conversations), now)
    agent_records, conversation_records, customer_records = snapshot(state)
    encode = msgspec.json.encode
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "agents",
            columns=["domain", "agent_id", "name", "presence", "record"],
            records=[
                (domain, r.agent_id, r.name, str(r.presence), encode(r).decode())
                for r in agent_records
            ],
        )
        await conn.copy_records_to_table(
            "customers",
            columns=["domain", "customer_id", "record"],
            records=[(domain, r.customer_id, encode(r).decode()) for r in customer_records],
        )
        await conn.copy_records_to_table(
            "conversations",
            columns=[
                "domain",
                "conversation_id",
                "channel",
                "customer_id",
                "conversation_key",
                "queue",
                "status",
                "owner_agent_id",
                "opened_at",
                "record",
            ],
            records=[
                (
                    domain,
                    r.conversation_id,
                    str(r.channel),
                    r.customer_id,
                    r.conversation_key,
                    r.queue,
                    str(r.status),
                    r.owner_agent_id,
                    datetime.fromtimestamp(r.opened_at, UTC),
                    encode(r).decode(),
                )
                for r in conversation_records
            ],
        )
        await conn.copy_records_to_table(
            "conversation_activity",
            columns=["domain", "conversation_id", "activity"],
            records=[
                (domain, c.conversation_id, encode(later_activity(c)).decode())
                for c in state.conversations.values()
            ],
        )
    finally:
        await conn.close()
    del state


async def bench_recovery(services: Services) -> tuple[float, float]:
    """Seconds from starting a router on a domain with 100,000 open conversations to the
    first new event applied (the partition's state loaded from PostgreSQL), and the
    router's resident memory per open conversation: measured by ``tools.bench.takeover``
    in a process of its own."""
    url = await fresh_database(services)
    try:
        config = bench_config(services, url, ["bench"])
        version = (await prepare(config, {})).version
        await seed_open_work(url, "bench", RECOVERY_CONVERSATIONS)
        probe = message("bench", 1, RECOVERY_CONVERSATIONS)  # continues an open conversation
        async with adapter_keys(url) as keys:
            await produce(services.bootstrap, config.topic(topics.INBOUND), [probe], keys, version)
        takeover = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.bench.takeover",
            msgspec.json.encode(config).decode(),
            str(RECOVERY_CONVERSATIONS),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(takeover.communicate(), 300)
        if takeover.returncode != 0:
            raise RuntimeError(f"the takeover measurement failed ({takeover.returncode})")
        await count_routed(config, 1)
        figures = msgspec.json.decode(out.splitlines()[-1])
        return figures["seconds"], figures["rss_bytes_per_open_conversation"]
    finally:
        await drop_database(services, url)


async def run_e2e_bench_async() -> dict[str, float]:
    async with services() as running:
        raw_rates: list[float] = []
        rounds: list[tuple[float, float]] = []
        for _ in range(THROUGHPUT_ROUNDS):
            raw_rates.append(await bench_raw_throughput(running))
            rounds.append(await bench_switchboard_throughput(running))
        naive_rate = await bench_naive(running)
        raw_latencies, our_latencies = await latency_rounds(
            lambda: raw_latency_round(running), lambda: switchboard_latency_round(running)
        )
        recovery, rss_per_conversation = await bench_recovery(running)
    raw_p99 = median_round(raw_latencies, 0.99)
    our_p99 = median_round(our_latencies, 0.99)
    raw_rate = statistics.median(raw_rates)
    ours = statistics.median(rate for rate, _ in rounds)
    cpu_per_message = statistics.median(cpu for _, cpu in rounds)
    ratios = [rate / raw for (rate, _), raw in zip(rounds, raw_rates, strict=True)]
    results = {
        "raw_pipeline_messages_per_s": round(raw_rate, 1),
        "naive_pipeline_messages_per_s": round(naive_rate, 1),
        "e2e_messages_per_s": round(ours, 1),
        "e2e_ratio_to_raw": round(ours / raw_rate, 3),
        "e2e_ratio_to_raw_lowest_round": round(min(ratios), 3),
        "e2e_ratio_to_raw_highest_round": round(max(ratios), 3),
        "e2e_router_cpu_us_per_message": round(cpu_per_message, 1),
        "e2e_p50_ms_at_1000": round(median_round(our_latencies, 0.5), 2),
        "e2e_p99_ms_at_1000": round(our_p99, 2),
        "e2e_p99_ms_at_1000_worst_round": round(
            max(sampled_percentile(latencies, 0.99) for latencies in our_latencies), 2
        ),
        "raw_pipeline_p50_ms_at_1000": round(median_round(raw_latencies, 0.5), 2),
        "raw_pipeline_p99_ms_at_1000": round(raw_p99, 2),
        "raw_pipeline_p99_ms_at_1000_worst_round": round(
            max(sampled_percentile(latencies, 0.99) for latencies in raw_latencies), 2
        ),
        "e2e_p99_ratio_to_raw": round(our_p99 / raw_p99, 3),
        "e2e_latency_samples": float(sum(len(latencies) for latencies in our_latencies)),
        "recovery_seconds_100k_open": round(recovery, 3),
        "router_rss_bytes_per_open_conversation": round(rss_per_conversation),
    }
    return results


def run_e2e_bench() -> dict[str, float]:
    return asyncio.run(run_e2e_bench_async())


def log_as_deployed() -> None:
    """Log as a service process does (``switchboard.cli``: JSON lines at ``INFO``), for the
    routers the end-to-end and scale benchmarks run in the benchmark's own process. Left
    unconfigured, structlog writes its console lines, about four times the CPU a line (66
    against 16 µs, measured), and the router writes one for each assignment."""
    logs.configure("json", "INFO")


if __name__ == "__main__":
    log_as_deployed()
    for key, value in run_e2e_bench().items():
        print(f"{key:36} {value}")
