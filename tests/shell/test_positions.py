"""Where a router resumes a partition it takes over (``PartitionLoader``): its stored
offset, unless the partition no longer holds it. No broker here: the embedded one keeps
every record (it deletes none by retention), so the consumer is a stand-in answering the
partition's first and next offsets."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from router.shell.recovery import PartitionLoader
from runtime.config import ServiceConfig
from runtime.metrics import Metrics

INBOUND = TopicPartition("conversations.inbound", 0)
AGENTS = TopicPartition("agents.events", 0)


class Partitions:
    """``beginning_offsets`` and ``end_offsets`` as a consumer answers them."""

    def __init__(self, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]):
        self.starts, self.ends = starts, ends

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.starts[tp] for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}


async def test_a_stored_offset_retention_deleted_resumes_at_the_first_record() -> None:
    """Stopped for longer than the topic keeps records: the consumer would reset to the
    first record by itself, and the router, expecting the stored offset, rewind to it at
    every fetch. It continues from the first record, counted as a reset."""
    metrics = Metrics(CollectorRegistry())
    loader = PartitionLoader(ServiceConfig(), {}, {}, None, metrics)  # type: ignore[arg-type]
    partitions = Partitions({INBOUND: 500, AGENTS: 0}, {INBOUND: 900, AGENTS: 40})
    stored = {(INBOUND.topic, 0): 120, (AGENTS.topic, 0): 30}
    positions = await loader._validated_positions(partitions, {INBOUND, AGENTS}, stored)  # type: ignore[arg-type]
    assert positions == {INBOUND: 500, AGENTS: 30}
    resets = metrics.registry.get_sample_value(
        "switchboard_offset_resets_total", {"topic": INBOUND.topic}
    )
    assert resets == 1
