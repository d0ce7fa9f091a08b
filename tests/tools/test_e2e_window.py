"""The end-to-end benchmark's throughput window ends where the broker acknowledged the
router's last record batch, as the raw pipeline's ends at its last acknowledgement; its
embedded services go away with their state."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import Infrastructure
from tools.bench.e2e_bench import AcknowledgementClock, create_topics, services


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


async def test_the_benchmarks_embedded_services_leave_no_state_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Embedded ones whatever the environment names: their data directory is the point. A
    # short parent directory: PostgreSQL's socket path must stay under 108 bytes.
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    parent = tempfile.mkdtemp(prefix="sb-")
    monkeypatch.setattr(tempfile, "tempdir", parent)
    try:
        async with services() as running:
            (state,) = os.listdir(parent)
            assert os.listdir(os.path.join(parent, state))  # the embedded services' data
            conn = await asyncpg.connect(running.server_url)
            try:
                assert await conn.fetchval("SELECT 1") == 1
            finally:
                await conn.close()
        assert os.listdir(parent) == []
    finally:
        shutil.rmtree(parent, ignore_errors=True)
