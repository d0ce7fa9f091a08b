"""``router.api.feed.pump`` against the real broker and PostgreSQL: while no stream is open
and no command awaits its verdict, the feed's consumer stays paused between reads (a
paused consumer fetches nothing) and what it reads is held sealed; a stream or a command
resumes it at once, and nothing published meanwhile is skipped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from router.api.feed import FeedEvent, RoutingFeed, pump, start_consumer
from runtime import db, kafka
from runtime.sealing import TopicKeys
from schemas import CommandCompleted, CustomerErased, topics
from tests.api.support import assigned
from tests.conftest import Infrastructure
from tests.support import make_config, wait_until

pytestmark = pytest.mark.integration

HOUR = 3600.0
"""The pause between reads nobody awaits, longer than any test: only a wake-up reads."""
BRIEF = 0.05
"""A pause between reads short enough that the feed reads what comes, unawaited."""
BUFFER = 5


@dataclass
class Running:
    feed: RoutingFeed
    consumer: AIOKafkaConsumer
    publisher: kafka.EventPublisher
    keys: TopicKeys

    def paused(self) -> bool:
        partitions = self.consumer.assignment()
        return bool(partitions) and self.consumer.paused() == partitions


@pytest.fixture(params=[HOUR])
async def running(
    infrastructure: Infrastructure, database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Running]:
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
    feed = RoutingFeed(buffer=BUFFER)
    keys = TopicKeys(pool)
    task = asyncio.create_task(pump(consumer, feed, keys, request.param))
    publisher = kafka.EventPublisher(
        producer, config.topic(topics.ROUTING), config.source, keys=TopicKeys(pool)
    )
    try:
        yield Running(feed, consumer, publisher, keys)
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


def ids(events: list[FeedEvent]) -> list[str]:
    return [event.event_id for event in events]


async def held_e1_to_e3(running: Running) -> None:
    """Events e1, e2 and e3 published and read while nobody awaits the feed."""
    await running.publisher.publish([assigned(f"e{n}") for n in range(1, 4)])
    await wait_until(lambda: running.feed.held == 3, what="three records held")


@pytest.mark.parametrize("running", [BRIEF], indirect=True)
async def test_what_nobody_awaits_is_held_unopened_and_fed_to_a_new_streams_replay(
    running: Running,
) -> None:
    feed = running.feed
    await held_e1_to_e3(running)
    # Held, not fed: the ring does not know them yet.
    assert feed.recent("acme", "e1") == ([], False)

    await feed.catch_up(running.keys)
    assert feed.held == 0
    after, found = feed.recent("acme", "e1")
    assert (ids(after), found) == (["e2", "e3"], True)


async def read_to_the_end(consumer: AIOKafkaConsumer) -> bool:
    assignment = list(consumer.assignment())
    ends = await consumer.end_offsets(assignment)
    return all([await consumer.position(tp) >= ends[tp] for tp in assignment])


@pytest.mark.parametrize("running", [BRIEF], indirect=True)
async def test_a_domain_holds_only_as_many_records_as_its_ring_keeps(running: Running) -> None:
    feed = running.feed
    await running.publisher.publish([assigned(f"e{n}") for n in range(1, BUFFER + 4)])
    await wait_until(lambda: read_to_the_end(running.consumer), what="everything read")
    assert feed.held == BUFFER
    await feed.catch_up(running.keys)
    after, found = feed.recent("acme", "e1")
    assert not found
    assert ids(after) == [f"e{n}" for n in range(4, BUFFER + 4)]


@pytest.mark.parametrize("running", [BRIEF], indirect=True)
async def test_an_erasure_read_unawaited_first_feeds_what_is_held_then_takes_it_out(
    running: Running,
) -> None:
    feed = running.feed
    theirs = msgspec.structs.replace(assigned("theirs"), conversation_id="c-erased")
    await running.publisher.publish([assigned("before"), theirs])
    await wait_until(lambda: feed.held == 2, what="two records held")
    erased = CustomerErased(
        id="erased", domain="acme", occurred_at=2.0, erasure_id="x", conversation_ids=("c-erased",)
    )
    await running.publisher.publish([erased])
    # Nothing held is left to replay the erased customer's event later.
    await wait_until(lambda: feed.held == 0, what="the held records fed")
    after, found = feed.recent("acme", "before")
    assert (ids(after), found) == (["erased"], True)


@pytest.mark.parametrize("running", [BRIEF], indirect=True)
async def test_a_new_stream_is_not_handed_what_was_held_before_it_opened(
    running: Running,
) -> None:
    # Held events came before the stream: they are in the replay buffer for a client
    # resuming from one of them, not sent to a stream that starts from now.
    feed = running.feed
    await held_e1_to_e3(running)
    subscriber = feed.subscribe("acme")
    await feed.catch_up(running.keys)
    await running.publisher.publish([assigned("e4")])
    event = await asyncio.wait_for(subscriber.queue.get(), 30)
    assert event is not None
    assert event.event_id == "e4"
    after, found = feed.recent("acme", "e1")
    assert (ids(after), found) == (["e2", "e3", "e4"], True)
    feed.unsubscribe(subscriber)
