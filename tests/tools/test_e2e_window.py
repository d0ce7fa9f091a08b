"""The end-to-end benchmark's throughput window ends where the broker acknowledged the
router's last record batch, as the raw pipeline's ends at its last acknowledgement."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer

from tests.conftest import Infrastructure
from tools.bench.e2e_bench import AcknowledgementClock, create_topics


async def test_the_clock_notes_each_acknowledged_batch_and_passes_the_rest_through(
    infrastructure: Infrastructure,
) -> None:
    topic = f"window{uuid.uuid4().hex[:6]}"
    await create_topics(infrastructure.bootstrap_servers, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.bootstrap_servers)
    await producer.start()
    try:
        clock = AcknowledgementClock()
        watched = clock.watching(producer)
        assert await watched.partitions_for(topic) == {0}  # what it does not time, it passes on
        builder = watched.create_batch()
        builder.append(timestamp=None, key=b"bench", value=b"routed")
        builder.close()
        before = time.perf_counter()
        sent = await watched.send_batch(builder, topic, partition=0)
        await sent
        await asyncio.sleep(0)  # the future's callbacks run on the loop's next turn
        assert clock.last is not None
        assert before < clock.last <= time.perf_counter()
    finally:
        await producer.stop()


async def test_a_batch_that_failed_is_no_acknowledgement() -> None:
    clock = AcknowledgementClock()
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[object] = loop.create_future()
    failed.set_exception(OSError("connection reset"))
    cancelled: asyncio.Future[object] = loop.create_future()
    cancelled.cancel()
    clock.noted(failed)
    clock.noted(cancelled)
    assert clock.last is None
    failed.exception()  # retrieved: no "never retrieved" warning
