"""A process asked to stop stops within its deployment's grace period, whatever its broker
does meanwhile: a consumer that cannot leave its group is given up after
``runtime.kafka.CONSUMER_STOP_SECONDS``, and the background tasks are asked to stop all at
once (``runtime.tasks.Stops``), so that their waits overlap instead of adding up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from runtime import kafka
from runtime.tasks import Stops, TaskFailures, background
from schemas import topics
from switchboard.embedded import EmbeddedBroker
from tests.logcapture import captured_logs, lines_of
from tests.support import make_config


@contextlib.asynccontextmanager
async def rejoining_unanswered(tmp_path: Path, group: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group consumer that joined its group on a broker of its own, then must join again
    (here for a subscription that changed; in a restart, for members that came and went)
    while the broker, frozen, answers nothing."""
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    assert broker.pid is not None
    frozen = False
    try:
        config = make_config(broker.bootstrap_servers, "postgresql://unused/unused")
        await kafka.ensure_topics(config, {})
        topic = config.topic(topics.OUTBOUND)
        consumer = kafka.group_consumer(config, {}, group, topic)
        await consumer.start()
        for _ in range(100):
            await consumer.getmany(timeout_ms=100)
            if consumer.assignment():
                break
        assert consumer.assignment(), "the consumer never joined its group"
        os.kill(broker.pid, signal.SIGSTOP)
        frozen = True
        consumer.subscribe([topic, config.topic(topics.DLQ)])
        yield consumer
    finally:
        if frozen:
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


async def test_a_consumer_whose_broker_stopped_answering_is_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with rejoining_unanswered(tmp_path, "shutdown") as consumer:
        # The stop waits for the join to be answered.
        await asyncio.sleep(0.5)
        monkeypatch.setattr(kafka, "CONSUMER_STOP_SECONDS", 1.0)
        started = time.monotonic()
        await asyncio.wait_for(kafka.stop_consumer(consumer, name="shutdown-test"), 30)
        # It waited the bound out: the stop itself was stuck, and was given up.
        assert time.monotonic() - started >= 1.0


async def test_a_fetch_waiting_for_a_rebalance_ends_when_the_loop_is_asked_to_stop(
    tmp_path: Path,
) -> None:
    """While its group rebalances, ``getmany`` waits for the new assignment whatever its
    timeout (up to the rebalance timeout, 5 minutes: seen in a restart of three adapters,
    a recorder that did not stop in 30 s). ``kafka.fetch`` gives the wait up on the stop."""
    async with rejoining_unanswered(tmp_path, "rebalancing") as consumer:
        stopping = asyncio.Event()
        fetching = asyncio.create_task(kafka.fetch(consumer, stopping, timeout_ms=100))
        await asyncio.sleep(1.0)
        assert not fetching.done(), "the premise: the fetch waits for the rebalance"
        stopping.set()
        assert await asyncio.wait_for(fetching, 5) == {}


async def test_the_background_tasks_are_asked_to_stop_together() -> None:
    """Each task takes a while to wind down once asked; asked together, the second has
    finished by the time the first is waited for, where one at a time it would only then
    be asked."""
    asked: dict[str, asyncio.Event] = {name: asyncio.Event() for name in ("first", "second")}
    finished: list[str] = []

    async def work(name: str) -> None:
        await asked[name].wait()
        await asyncio.sleep(0.05)  # its last batch, its commit
        finished.append(name)

    stops = Stops()
    async with background("first", work("first"), asked["first"].set, stops=stops):
        async with background("second", work("second"), asked["second"].set, stops=stops):
            stops.ask_all()
            assert all(event.is_set() for event in asked.values())
        # Only the second was waited for so far, and the first is done too.
        assert "first" in finished
    assert finished == ["first", "second"]


async def test_a_task_that_fails_before_its_block_ends_is_reported_at_once() -> None:
    """Reported when it fails (logged without its message, ``failed`` set), not raised when
    the block ends: by then the process has stopped because of it."""

    said = "+14155550123 wrote: my card number is 4111"

    async def work() -> None:
        await asyncio.sleep(0)
        raise RuntimeError(said)

    failures = TaskFailures()
    with captured_logs([]) as buffer:
        async with background("worker", work(), failures=failures):
            await asyncio.wait_for(failures.failed.wait(), 5)
    assert failures.names == ["worker"]
    [line] = [line for line in lines_of(buffer) if line["event"] == "background_task_failed"]
    assert (line["level"], line["task"], line["error"]) == ("error", "worker", "RuntimeError")
    assert "in work" in line["exception"], "where it failed"
    assert "4155550123" not in buffer.getvalue()
    assert "card" not in buffer.getvalue()


async def test_a_task_that_ends_when_asked_is_no_failure() -> None:
    failures = TaskFailures()
    stopping = asyncio.Event()
    async with background("worker", stopping.wait(), stopping.set, failures=failures):
        await asyncio.sleep(0)
    assert failures.names == []
    assert not failures.failed.is_set()
