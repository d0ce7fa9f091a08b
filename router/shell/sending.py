"""Step 4 of the router's loop (``router.shell.worker``): outbox rows handed to the producer.

The rows taken at once share record batches (``outbox`` rule 6): one future per record
batch, each row waiting for the futures of every record batch holding one of its events.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from router.shell.outbox import rows_by_destination
from router.shell.store import OutboxBatch


async def send_rows(
    producer: AIOKafkaProducer, rows: list[OutboxBatch]
) -> dict[int, list[asyncio.Future[object]]]:
    """Hand the rows' events (as they are published: sealed) to the producer; each row's
    acknowledgement futures by ``seq``. Raises what the producer raises (``KafkaError``,
    ``OSError``)."""
    acks: dict[int, list[asyncio.Future[object]]] = {row.seq: [] for row in rows}
    partitions = {
        topic: sorted(await producer.partitions_for(topic))
        for topic in {event.topic for row in rows for event in row.events}
    }
    for (topic, partition), records in rows_by_destination(rows, partitions).items():
        builder, holding = producer.create_batch(), set[int]()
        for seq, event in records:
            # A full builder refuses the record; a fresh one always takes it.
            while (
                builder.append(
                    timestamp=None, key=event.key, value=event.value, headers=list(event.headers)
                )
                is None
            ):
                sent = await producer.send_batch(builder, topic, partition=partition)
                for held in holding:
                    acks[held].append(sent)
                builder, holding = producer.create_batch(), set()
            holding.add(seq)
        # Closed, a batch goes out at once: an open one would wait the producer's
        # ``linger_ms`` for records no one will add (the rows are all here).
        builder.close()
        sent = await producer.send_batch(builder, topic, partition=partition)
        for held in holding:
            acks[held].append(sent)
    return acks
