"""``router.api.feed.pump`` against the real broker and PostgreSQL: while no stream is open
and no command awaits its verdict, the feed's consumer stays paused between reads (a
paused consumer fetches nothing); a stream or a command resumes it at once, and nothing
published meanwhile is skipped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from router.api.feed import RoutingFeed, pump, start_consumer
from runtime import db, kafka
from runtime.sealing import TopicKeys
from schemas import CommandCompleted, topics
from tests.api.support import assigned
from tests.conftest import Infrastructure
from tests.support import make_config, wait_until

pytestmark = pytest.mark.integration

HOUR = 3600.0
"""The pause between reads nobody awaits, longer than any test: only a wake-up reads."""


@dataclass
class Running:
    feed: RoutingFeed
    consumer: AIOKafkaConsumer
    publisher: kafka.EventPublisher

    def paused(self) -> bool:
        partitions = self.consumer.assignment()
        return bool(partitions) and self.consumer.paused() == partitions


@pytest.fixture
async def running(infrastructure: Infrastructure, database_url: str) -> AsyncIterator[Running]:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    await kafka.ensure_topics(config, {})
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    producer: AIOKafkaProducer = kafka.make_producer(config, {})
    await producer.start()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    await start_consumer(consumer, config.topic(topics.ROUTING))
    feed = RoutingFeed(buffer=100)
    task = asyncio.create_task(pump(consumer, feed, TopicKeys(pool), HOUR))
    publisher = kafka.EventPublisher(
        producer, config.topic(topics.ROUTING), config.source, keys=TopicKeys(pool)
    )
    try:
        yield Running(feed, consumer, publisher)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await pool.close()


async def test_a_feed_nobody_awaits_is_paused_and_a_stream_reads_what_came_meanwhile(
    running: Running,
) -> None:
    await wait_until(running.paused, what="paused")
    await running.publisher.publish([assigned(f"e{n}") for n in range(1, 4)])
    # Paused for an hour: read only when something wakes it.
    await asyncio.sleep(0.5)
    assert running.feed.recent("acme", None) == ([], True)
    assert running.paused()

    subscriber = running.feed.subscribe("acme")
    got = [(await asyncio.wait_for(subscriber.queue.get(), 30)) for _ in range(3)]
    assert [event.event_id for event in got if event] == ["e1", "e2", "e3"]
    assert not running.paused()
    # While the stream is open, the feed reads on.
    await running.publisher.publish([assigned("e4")])
    event = await asyncio.wait_for(subscriber.queue.get(), 30)
    assert event is not None
    assert event.event_id == "e4"

    running.feed.unsubscribe(subscriber)
    await wait_until(running.paused, what="paused again")


async def test_a_command_awaiting_its_verdict_resumes_the_feed(running: Running) -> None:
    await wait_until(running.paused, what="paused")
    command_id = str(uuid.uuid4())
    verdict = running.feed.expect(command_id, "ann")
    await running.publisher.publish(
        [
            CommandCompleted(
                id=str(uuid.uuid4()), domain="acme", occurred_at=1.0, command_id=command_id
            )
        ]
    )
    settled = await asyncio.wait_for(verdict, 30)
    assert settled.command_id == command_id
    # Settled, nobody awaits the feed any more.
    await wait_until(running.paused, what="paused again")
