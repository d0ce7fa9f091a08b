"""The router under failure, on the real broker and PostgreSQL: kill -9, failover,
database outage, poison records, and a broker that lost its log."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from runtime.kafka import EventPublisher, partition_for
from schemas import (
    ROUTING_DECODER,
    BotReplied,
    BotResolved,
    BotStatusChanged,
    BotTurn,
    Channel,
    CommandRejected,
    ConversationBotAssigned,
    ConversationClosed,
    ConversationOverflowed,
    ConversationQueued,
    MessageReceived,
    MessageRouted,
    topics,
)
from switchboard.app import ROUTER_WORKER
from switchboard.cli import prepare
from switchboard.config import Config
from switchboard.embedded import EmbeddedBroker
from tests.conftest import Infrastructure
from tests.support import (
    CuttableProxy,
    RouterProcess,
    TopicReader,
    make_config,
    make_raw_config,
    running_service,
    wait_until,
)
from tests.traffic import (
    Traffic,
    check_routing_invariants,
    stored_message_ids,
)

DOMAINS = [f"d{i}" for i in range(8)]
DOMAIN_TABLES = {name: {} for name in DOMAINS}


async def _all_stored(conn: asyncpg.Connection, traffic: Traffic, timeout: float = 90) -> None:
    async def done() -> bool:
        return len(set(await stored_message_ids(conn))) >= len(set(traffic.sent))

    await wait_until(done, timeout=timeout, interval=0.3, what="every message stored")
    try:
        await wait_until(
            lambda: conn.fetchval("SELECT count(*) = 0 FROM outbox"),
            timeout=30,
            what="outbox drained",
        )
    except AssertionError:
        left = await conn.fetch(
            "SELECT partition, count(*) AS batches, sum(event_count) AS events,"
            " min(created_at), max(created_at) FROM outbox GROUP BY 1"
        )
        raise AssertionError(f"outbox not drained: {[dict(r) for r in left]}") from None


async def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    raw = make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"domains": DOMAIN_TABLES, "kafka": {"partitions": 4}},
    )
    config = msgspec.convert(raw, type=Config)
    await prepare(config, {})
    router = RouterProcess(raw, tmp_path)
    router.start()
    await router.wait_ready()
    # The process set its collector once started (``runtime.collector``): the kills below
    # then land on a router that runs as deployed.
    settled = [
        msgspec.json.decode(line)
        for line in router.log_path.read_text().splitlines()
        if '"collector_settled"' in line
    ]
    assert settled
    assert settled[0]["frozen"] > 0
    chaos = random.Random(1234)
    async with Traffic(config, DOMAINS, agents_per_domain=8, customers_per_domain=60) as traffic:
        await traffic.register_agents()
        load = asyncio.create_task(traffic.run(seconds=12, rate=400))
        kills = 0
        while not load.done():
            await asyncio.sleep(chaos.uniform(0.8, 2.5))
            router.kill()
            kills += 1
            await asyncio.sleep(chaos.uniform(0.0, 0.5))
            router.start()
        await load
        await traffic.everyone_online()
        assert kills >= 3
        assert len(traffic.sent) > 3000
        conn = await asyncpg.connect(database_url)
        try:
            await _all_stored(conn, traffic)
            async with TopicReader(config, "conversations.routing") as routing:
                await check_routing_invariants(conn, traffic.sent, routing)
        finally:
            await conn.close()
    assert router.terminate() == 0


async def test_a_killed_routers_partitions_move_and_its_deadlines_still_fire(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    # One step with a 4 s wait and then overflow: every waiting conversation has a deadline.
    routing = {"queues": {"default": {"steps": [{"name": "queue", "wait": 4}]}}}
    domains = {name: {"routing": routing} for name in DOMAINS}
    raw = make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"domains": domains, "kafka": {"partitions": 4}},
    )
    config = msgspec.convert(raw, type=Config)
    await prepare(config, {})
    routers = [RouterProcess(raw, tmp_path, name=f"router{i}") for i in range(3)]
    for router in routers:
        router.start()
    for router in routers:
        await router.wait_ready()

    async with aiohttp.ClientSession() as http:

        async def owned(router: RouterProcess) -> list[int]:
            async with http.get(f"http://127.0.0.1:{router.port}/readyz") as r:
                return list((await r.json()).get("partitions", []))

        await wait_until(
            lambda: _sum_partitions([owned(r) for r in routers]),
            timeout=30,
            what="partitions spread over the routers",
        )
        victim = routers[0]
        for router in routers:
            if await owned(router):
                victim = router
                break

    async with (
        Traffic(
            config, DOMAINS, agents_per_domain=1, customers_per_domain=6, capacity=1
        ) as traffic,
        TopicReader(config, "conversations.routing") as routing_topic,
    ):
        await traffic.register_agents()
        for domain in DOMAINS:
            for customer in range(4):  # one agent with one slot: three of them wait
                await traffic._inbound.publish([traffic.message(domain, customer)])
                traffic.sent.append("-")
        queued = await routing_topic.wait_for(
            lambda rs: (
                sum(dict(r.headers)["ce_type"] == b"conversation.queued" for r in rs)
                >= 3 * len(DOMAINS)
            ),
            timeout=30,
        )
        waiting = {
            e.conversation_id
            for e in (ROUTING_DECODER.decode(r.value) for r in queued)
            if isinstance(e, ConversationQueued)
        }
        victim.kill()
        records = await routing_topic.wait_for(
            lambda rs: (
                {
                    e.conversation_id
                    for e in (ROUTING_DECODER.decode(r.value) for r in rs)
                    if isinstance(e, ConversationOverflowed)
                }
                >= waiting
            ),
            timeout=45,
        )
        overflowed = [
            e
            for e in (ROUTING_DECODER.decode(r.value) for r in records)
            if isinstance(e, ConversationOverflowed)
        ]
        by_conversation: dict[str, set[str]] = {}
        for event in overflowed:
            by_conversation.setdefault(event.conversation_id, set()).add(event.id)
        assert all(len(ids) == 1 for ids in by_conversation.values()), "a deadline fired twice"
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM messages") == 4 * len(DOMAINS)
            assert await conn.fetchval(
                "SELECT count(*) FROM conversations WHERE status = 'overflowed'"
            ) == 3 * len(DOMAINS)
        finally:
            await conn.close()
    for router in routers:
        if router is not victim:
            assert router.terminate() == 0


async def _sum_partitions(lists: list[object]) -> bool:
    results = [await c for c in lists]  # type: ignore[misc]
    return sum(len(r) for r in results) == 4 and sum(1 for r in results if r) >= 2


async def test_a_database_outage_pauses_the_router_which_recovers_with_nothing_lost(
    infrastructure: Infrastructure, database_url: str
) -> None:
    proxy, proxied = await CuttableProxy.before_database(database_url)
    config = make_config(
        infrastructure.bootstrap_servers,
        proxied,
        {"domains": {name: {} for name in DOMAINS[:4]}},
    )
    try:
        async with running_service(config) as service, Traffic(config, DOMAINS[:4]) as traffic:
            await traffic.register_agents()
            load = asyncio.create_task(traffic.run(seconds=8, rate=300))
            await asyncio.sleep(2.5)
            proxy.cut()
            problems: list[object] = []

            async def not_ready() -> bool:
                # The loop may notice first (``router``); the background check names the
                # database within its next round.
                async with service.session.get(service.url("/readyz")) as r:
                    body = await r.json()
                    problems.append(body.get("problems"))
                    return r.status == 503 and "database" in body.get("problems", {})

            await wait_until(not_ready, timeout=10, what="/readyz to report the outage")
            await asyncio.sleep(3)
            proxy.restore()
            await load
            await wait_until(
                lambda: _ready(service.session, service.url("/readyz")),
                timeout=30,
                what="ready again",
            )
            assert any(p and "database" in p for p in problems if isinstance(p, dict))
            conn = await asyncpg.connect(database_url)
            try:
                await _all_stored(conn, traffic)
                async with TopicReader(config, "conversations.routing") as routing:
                    await check_routing_invariants(conn, traffic.sent, routing)
            finally:
                await conn.close()
    finally:
        await proxy.stop()


async def _ready(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.get(url) as r:
        return r.status == 200


async def test_poison_records_go_to_the_dead_letter_topic_and_processing_goes_on(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    async with (
        running_service(config) as service,
        Traffic(config, ["acme"], agents_per_domain=1) as traffic,
        TopicReader(config, "switchboard.dlq") as dlq,
    ):
        await traffic.register_agents()
        producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
        await producer.start()
        try:
            inbound = config.topic("conversations.inbound")
            await traffic.send_messages(1)
            await producer.send_and_wait(inbound, b"\x00\xffnot json", key=b"acme")
            await producer.send_and_wait(
                inbound, b'{"type":"message.received","id":"x"}', key=b"acme"
            )
            stranger = msgspec.json.encode(
                msgspec.structs.replace(traffic.message("acme", 1), domain="nowhere")
            )
            await producer.send_and_wait(inbound, stranger, key=b"nowhere")
            # acme's own message, keyed to the other partition by a faulty producer.
            partitions = config.kafka.partitions
            home = partition_for("acme", partitions)
            misplaced = msgspec.json.encode(traffic.message("acme", 1))
            await producer.send_and_wait(
                inbound, misplaced, key=b"acme", partition=(home + 1) % partitions
            )
            await producer.send_and_wait(config.topic("agents.events"), b"[]", key=b"acme")
            await traffic.send_messages(1)
        finally:
            await producer.stop()
        letters = await dlq.wait_for(lambda rs: len(rs) >= 5)
        reasons = sorted(
            dict(r.headers)["dlq_reason"].decode().split(":")[0].split(" ")[0] for r in letters
        )
        assert reasons == ["invalid", "invalid", "invalid", "misplaced", "unknown"]
        [why] = [dict(r.headers)["dlq_reason"].decode() for r in letters if r.value == misplaced]
        assert why.startswith(f"misplaced: domain 'acme' is routed from partition {home}, not ")
        assert {r.value for r in letters} >= {b"\x00\xffnot json", stranger, misplaced}
        assert all(
            dict(r.headers)["dlq_topic"].startswith(config.topic("").encode()) for r in letters
        )
        conn = await asyncpg.connect(database_url)
        try:
            await wait_until(
                lambda: conn.fetchval("SELECT count(*) = 2 FROM messages"), what="good messages"
            )
            assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 5
        finally:
            await conn.close()
        async with service.session.get(service.url("/metrics")) as r:
            scrape = await r.text()
        assert "switchboard_dead_letters_total" in scrape


@contextlib.asynccontextmanager
async def broker_lost_its_log(
    database_url: str, tmp_path: Path, messages: int
) -> AsyncIterator[tuple[Config, Traffic]]:
    """A router ran on a broker of its own and stored ``messages`` messages; the broker is
    then restarted at the same address with an empty log (as the embedded one always
    does), PostgreSQL keeping the router's offsets. Yields the configuration and the
    first run's traffic."""
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        config = make_config(broker.bootstrap_servers, database_url, {"kafka": {"partitions": 1}})
        async with (
            running_service(config),
            Traffic(config, ["acme"], agents_per_domain=2) as traffic,
        ):
            await traffic.register_agents()
            await traffic.send_messages(messages)
            conn = await asyncpg.connect(database_url)
            try:
                await _all_stored(conn, traffic)
            finally:
                await conn.close()
        broker.stop()
        broker = EmbeddedBroker(tmp_path / "broker", port=broker.port)  # same address, empty log
        broker.start()
        yield config, traffic
    finally:
        broker.stop()


async def test_a_broker_that_lost_its_log_is_detected_and_the_router_starts_over(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        broker_lost_its_log(database_url, tmp_path, 30) as (config, traffic),
        running_service(config) as service,
        Traffic(config, ["acme"], seed=8) as traffic2,
    ):
        await traffic2.send_messages(3)
        conn = await asyncpg.connect(database_url)
        try:
            await wait_until(
                lambda: conn.fetchval("SELECT count(*) FROM messages"),
                what="messages",
            )
            await wait_until(
                lambda: _count_is(conn, len(traffic.sent) + 3),
                timeout=30,
                what="new messages routed",
            )
        finally:
            await conn.close()
        async with service.session.get(service.url("/metrics")) as r:
            scrape = await r.text()
        assert any(
            line.startswith("switchboard_offset_resets_total") and not line.endswith(" 0.0")
            for line in scrape.splitlines()
        )


async def test_a_broker_that_lost_its_log_and_filled_again_before_the_router_read_is_read_whole(
    database_url: str, tmp_path: Path
) -> None:
    """``switchboard run`` starts its embedded broker empty and takes webhooks while its
    router starts: the new topic can hold more records than the old stored offset before
    the router reads, and that offset then looks valid. The offsets of an embedded broker's
    last run are forgotten when it starts (``prepare(empty_broker=True)``), so the router
    reads the new topic from its first record."""
    async with broker_lost_its_log(database_url, tmp_path, 20) as (config, traffic):
        await prepare(config, {}, empty_broker=True)
        async with Traffic(config, ["acme"], seed=8) as traffic2:
            await traffic2.send_messages(60)  # past every offset stored before
        async with running_service(config):
            conn = await asyncpg.connect(database_url)
            try:
                await wait_until(
                    lambda: _count_is(conn, len(traffic.sent) + 60),
                    timeout=30,
                    what="every message of the new topic routed",
                )
            finally:
                await conn.close()


async def test_a_router_whose_broker_loses_its_log_reads_its_partitions_out_before_it_stops(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """``switchboard run``'s embedded broker keeps its log in memory: what the router has
    not read when the process stops is lost with it. Asked to stop, such a router reads
    its partitions to their ends first: a backlog it is asked to stop in is stored whole."""
    config = make_config(
        infrastructure.bootstrap_servers, database_url, {"kafka": {"partitions": 1}}
    )
    await prepare(config, {})
    async with Traffic(config, ["acme"], agents_per_domain=2) as traffic:
        await traffic.send_messages(20_000)
    async with running_service(config, log_dies_with_broker=True) as service:
        service.app[ROUTER_WORKER].stop()  # at once: the router has read little of it
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 20_000
    finally:
        await conn.close()


async def _count_is(conn: asyncpg.Connection, expected: int) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM messages") == expected)


def first_sms(index: int, prefix: str) -> MessageReceived:
    """Customer ``<prefix><index>``'s first SMS to the ``bots`` domain (a new conversation,
    whose id is the message id ``m-<index>``)."""
    number = f"{prefix}{index:04d}"
    return MessageReceived(
        id=f"m-{index}",
        domain="bots",
        occurred_at=time.time(),
        channel=Channel.SMS,
        endpoint="+15550000000",
        customer_address=number,
        customer_id=f"sms:{number}",
        conversation_key=f"sms:+15550000000:{number}",
        provider_message_id=f"SM{index:032d}",
        text="hello",
    )


async def test_kill_9_while_a_bot_answers_applies_each_answer_once(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """A bot answers every turn (a reply, then a resolve) while the router is killed at
    random: every conversation ends contained with one reply, and no answer is applied
    twice (a second application would be refused: the conversation is gone)."""
    raw = make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "domains": {
                "bots": {
                    "routing": {
                        "bots": {"helper": {"answer_timeout": 120}},
                        "queues": {"default": {"bot": "helper"}},
                    }
                }
            },
            "kafka": {"partitions": 2},
        },
    )
    config = msgspec.convert(raw, type=Config)
    await prepare(config, {})
    router = RouterProcess(raw, tmp_path)
    router.start()
    await router.wait_ready()
    chaos = random.Random(4321)
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, linger_ms=5)
    await producer.start()
    inbound = EventPublisher(producer, config.topic(topics.INBOUND), "test", timeout=30)
    # The router reads bots' answers on agents.events (the adapters forward them there).
    answers = EventPublisher(producer, config.topic(topics.AGENTS), "test", timeout=30)
    count = 300
    opened = [first_sms(index, "+1555100") for index in range(count)]

    async def bot() -> None:
        """Answers each turn once: a reply, then a resolve (ids from the turn's id)."""
        answered: set[str] = set()
        async with TopicReader(config, topics.ROUTING) as routing:
            while len(answered) < count:
                for record in await routing.poll():
                    turn = ROUTING_DECODER.decode(record.value)
                    if not isinstance(turn, BotTurn) or turn.id in answered:
                        continue
                    answered.add(turn.id)
                    now = time.time()
                    await answers.publish(
                        [
                            BotReplied(
                                id=f"{turn.id}/0",
                                domain="bots",
                                occurred_at=now,
                                conversation_id=turn.conversation_id,
                                bot_id="helper",
                                turn_id=turn.id,
                                text="Hi!",
                            ),
                            BotResolved(
                                id=f"{turn.id}/1",
                                domain="bots",
                                occurred_at=now,
                                conversation_id=turn.conversation_id,
                                bot_id="helper",
                                turn_id=turn.id,
                            ),
                        ]
                    )
                routing.records.clear()

    answering = asyncio.create_task(bot())
    try:
        for start in range(0, count, 30):
            await inbound.publish(opened[start : start + 30])
            await asyncio.sleep(chaos.uniform(0.1, 0.4))
            if start % 90 == 0:
                router.kill()
                await asyncio.sleep(chaos.uniform(0.0, 0.5))
                router.start()
        await asyncio.wait_for(answering, timeout=120)
        conn = await asyncpg.connect(database_url)
        try:

            async def all_closed() -> bool:
                closed = await conn.fetchval(
                    "SELECT count(*) FROM conversations WHERE domain = 'bots' AND status = 'closed'"
                )
                return bool(closed == count)

            await wait_until(all_closed, timeout=90, what="every conversation closed")
            replies = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE domain = 'bots' AND bot_id = 'helper'"
            )
            assert replies == count
        finally:
            await conn.close()
        async with TopicReader(config, topics.ROUTING) as routing:

            def settled(records: list[Any]) -> bool:
                closed = {
                    event.conversation_id
                    for event in map(ROUTING_DECODER.decode, (r.value for r in records))
                    if isinstance(event, ConversationClosed)
                }
                return len(closed) == count

            records = await routing.wait_for(settled, timeout=60)
        events = {
            event.id: event for event in map(ROUTING_DECODER.decode, (r.value for r in records))
        }
        closes = [e for e in events.values() if isinstance(e, ConversationClosed)]
        assert len(closes) == count
        assert all(close.contained for close in closes)
        refused = [e for e in events.values() if isinstance(e, CommandRejected)]
        assert refused == [], refused[:3]
    finally:
        answering.cancel()
        await producer.stop()
    assert router.terminate() == 0


async def test_a_down_bot_stays_down_across_a_router_restart(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """A bot that failed its turn (down_after = 1) is down; a router restarted from
    PostgreSQL knows it, and sends the next new conversation straight to people."""
    raw = make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "domains": {
                "bots": {
                    "routing": {
                        "bots": {
                            "helper": {"answer_timeout": 1, "down_after": 1, "retry_after": 600}
                        },
                        "queues": {"default": {"bot": "helper"}},
                    }
                }
            },
        },
    )
    config = msgspec.convert(raw, type=Config)
    await prepare(config, {})
    router = RouterProcess(raw, tmp_path)
    router.start()
    await router.wait_ready()
    producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, linger_ms=5)
    await producer.start()
    inbound = EventPublisher(producer, config.topic(topics.INBOUND), "test", timeout=30)

    try:
        async with TopicReader(config, topics.ROUTING) as routing:
            await inbound.publish([first_sms(1, "+1555200")])

            def events(records: list[Any]) -> list[Any]:
                return [ROUTING_DECODER.decode(record.value) for record in records]

            def went_down(records: list[Any]) -> bool:
                return any(
                    isinstance(e, BotStatusChanged) and not e.available for e in events(records)
                )

            await routing.wait_for(went_down, timeout=30)
            router.kill()
            router.start()
            await router.wait_ready()
            await inbound.publish([first_sms(2, "+1555200")])

            def second_routed(records: list[Any]) -> bool:
                return any(
                    isinstance(e, MessageRouted) and e.conversation_id == "m-2"
                    for e in events(records)
                )

            records = await routing.wait_for(second_routed, timeout=60)
            second = [e for e in events(records) if getattr(e, "conversation_id", None) == "m-2"]
            assert not any(isinstance(e, ConversationBotAssigned) for e in second), second
            routed = next(e for e in second if isinstance(e, MessageRouted))
            assert routed.bot_id is None
    finally:
        await producer.stop()
    assert router.terminate() == 0
