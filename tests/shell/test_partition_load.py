"""A router whose partitions were assigned but could not be loaded (``RouterWorker.
on_assigned``): the group coordinator swallows what its listener raises, so a failure
retrying cannot mend must stop the loop, not leave the partitions assigned, unloaded and
their records dropped unseen while the router looks ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from router.shell.worker import RouterWorker
from runtime.config import ServiceConfig
from runtime.metrics import Metrics

ASSIGNED = {TopicPartition("conversations.inbound", 0)}


@pytest.fixture
async def worker(database_url: str) -> AsyncIterator[RouterWorker]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield RouterWorker(ServiceConfig(), {}, {}, pool, None, Metrics(CollectorRegistry()))  # type: ignore[arg-type]
    finally:
        await pool.close()


async def test_a_load_that_fails_for_good_stops_the_loop(
    worker: RouterWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> None:
        raise ValueError("a stored record this release cannot read")

    monkeypatch.setattr(worker, "_load", broken)
    await worker.on_assigned(None, ASSIGNED)  # type: ignore[arg-type]
    assert worker.problem == "partition load failed: ValueError"
    with pytest.raises(ValueError, match="cannot read"):
        await worker._step(None)  # type: ignore[arg-type]


async def test_a_broker_that_times_out_while_loading_is_waited_for(
    worker: RouterWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def slow_broker(*_: Any) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaTimeoutError

    monkeypatch.setattr(worker, "_load", slow_broker)
    await worker.on_assigned(None, ASSIGNED)  # type: ignore[arg-type]
    assert (len(calls), worker.problem) == (3, None)
