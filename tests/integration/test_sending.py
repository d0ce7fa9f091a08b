"""Outbox rows go to the broker as soon as they are handed over (``router.shell.sending``):
the record batches are complete, so they do not wait the producer's ``linger_ms`` for
records no one will add."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from router.shell.sending import send_rows
from router.shell.store import OutboxBatch, OutboxEvent
from runtime import kafka
from schemas import topics
from tests.conftest import Infrastructure
from tests.support import make_config

LINGER_MS = 20_000
"""Longer than the test waits for the acknowledgements: a batch that lingers fails it."""


async def test_the_rows_batches_go_out_without_lingering(infrastructure: Infrastructure) -> None:
    config = make_config(infrastructure.bootstrap_servers, "postgresql://unused/unused")
    await kafka.ensure_topics(config, {})
    topic = config.topic(topics.ROUTING)
    producer = AIOKafkaProducer(
        bootstrap_servers=infrastructure.bootstrap_servers, acks="all", linger_ms=LINGER_MS
    )
    await producer.start()
    try:
        rows = [
            OutboxBatch(
                seq,
                0,
                [
                    OutboxEvent(topic=topic, key=f"d{seq}".encode(), value=b"{}", headers=())
                    for _ in range(3)
                ],
            )
            for seq in (1, 2, 3)
        ]
        acks = await send_rows(producer, rows)
        await asyncio.wait_for(
            asyncio.gather(*(sent for futures in acks.values() for sent in futures)), 10
        )
        assert set(acks) == {1, 2, 3}
        assert all(acks.values())
    finally:
        await producer.stop()
