"""With the broker gone, a webhook answers 503 (the provider retries); once the broker is
back, the retry goes through. A producer may still deliver the refused attempt when the
broker returns (nothing can recall a buffered record), so what reaches the topic is the
one message under one event id, however often: the router stores it once."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from runtime import kafka
from switchboard.embedded import EmbeddedBroker
from tests.support import TopicReader, make_config, running_service


async def test_a_webhook_answers_503_while_the_broker_is_down(
    database_url: str, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        config = make_config(broker.bootstrap_servers, database_url)
        url = f"http://{config.http.host}:{config.http.port}/v1/domains/acme/webchat/messages"
        async with running_service(config) as service:
            # The session is opened while the broker is up (it publishes nothing).
            visitor = await service.visitor("visitor-down1")
            message = {"session_id": visitor.session_id, "message_id": "m1", "text": "anyone?"}
            broker.stop()
            started = time.monotonic()
            async with service.session.post(url, json=message, headers=visitor.auth) as r:
                assert r.status == 503, await r.text()
                assert r.headers["Retry-After"]
                assert "broker unavailable" in (await r.json())["error"]
            assert time.monotonic() - started < 15
            broker = EmbeddedBroker(tmp_path / "broker", port=broker.port)  # back, empty
            broker.start()
            async with TopicReader(config, "conversations.inbound") as inbound:
                retried = False
                for _ in range(40):
                    async with service.session.post(url, json=message, headers=visitor.auth) as r:
                        if r.status == 202:
                            retried = True
                            break
                    await asyncio.sleep(0.5)
                assert retried, "the provider's retry never went through"
                records = await inbound.wait_for(lambda rs: len(rs) >= 1)
                assert len({dict(r.headers)["ce_id"] for r in records}) == 1, records
    finally:
        broker.stop()


async def test_a_worker_started_during_an_outage_starts_once_the_broker_is_back(
    tmp_path: Path,
) -> None:
    """Workers start their consumers in the background: one that finds the broker gone
    keeps trying (it does not die and leave the process half-working) until the broker is
    back, or until it is asked to stop."""
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    broker.stop()
    address = broker.bootstrap_servers
    consumer = AIOKafkaConsumer(bootstrap_servers=address)
    stopping = asyncio.Event()
    starting = asyncio.create_task(
        kafka.start_consumer_when_reachable(consumer, stopping, name="test")
    )
    try:
        await asyncio.sleep(1.5)
        assert not starting.done()
        broker = EmbeddedBroker(tmp_path / "broker", port=broker.port)
        broker.start()
        assert await asyncio.wait_for(starting, timeout=30)
        assert await consumer.topics() is not None
    finally:
        stopping.set()
        await starting
        await consumer.stop()
        broker.stop()

    gone = AIOKafkaConsumer(bootstrap_servers=address)
    stopping = asyncio.Event()
    starting = asyncio.create_task(kafka.start_consumer_when_reachable(gone, stopping, name="test"))
    await asyncio.sleep(0.5)
    stopping.set()
    assert await asyncio.wait_for(starting, timeout=5) is False


_MEMBER_THAT_DIES = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer

async def main():
    consumer = AIOKafkaConsumer(
        sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
        session_timeout_ms=15_000, heartbeat_interval_ms=1_000,
    )
    await consumer.start()
    print("assigned", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_worker_asked_to_stop_while_its_group_assigns_stops(tmp_path: Path) -> None:
    """A group consumer's start waits for its first assignment: with a member of the group
    killed (its session still counted for 15 s), the rebalance cannot end soon. A stop
    asked meanwhile gives the start up within the consumer's stop bound, where waiting for
    the assignment kept a restarted process from stopping for minutes."""
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    member = None
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic("work", 2, 1)])
        await admin.close()
        member = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _MEMBER_THAT_DIES,
            broker.bootstrap_servers,
            "work",
            "g",
            stdout=asyncio.subprocess.PIPE,
        )
        assert member.stdout is not None
        line = await asyncio.wait_for(member.stdout.readline(), timeout=60)
        assert line.strip() == b"assigned"
        member.kill()
        await member.wait()

        consumer = AIOKafkaConsumer(
            "work",
            bootstrap_servers=broker.bootstrap_servers,
            group_id="g",
            session_timeout_ms=15_000,
            heartbeat_interval_ms=1_000,
        )
        stopping = asyncio.Event()
        starting = asyncio.create_task(
            kafka.start_consumer_when_reachable(consumer, stopping, name="test")
        )
        await asyncio.sleep(2)
        assert not starting.done(), "assigned while the killed member was still counted"
        stopping.set()
        asked = time.monotonic()
        assert await asyncio.wait_for(starting, timeout=30) is False
        assert time.monotonic() - asked < kafka.CONSUMER_STOP_SECONDS + 2
    finally:
        if member is not None and member.returncode is None:
            member.kill()
            await member.wait()
        broker.stop()
