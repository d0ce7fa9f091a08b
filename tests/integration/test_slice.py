"""The walking skeleton end to end: web chat → broker → router → PostgreSQL, events, metrics."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from schemas import ROUTING_DECODER, ConversationAssigned, MessageRouted, decode_headers, topics
from tests.conftest import Infrastructure
from tests.support import TopicReader, make_config, running_service, wait_until
from tests.traffic import Traffic


async def test_a_web_chat_message_is_assigned_to_an_online_agent_and_recorded(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    admin = {"Authorization": "Bearer slice-admin-token"}
    async with (
        running_service(config, {"SWITCHBOARD_ADMIN_TOKEN": "slice-admin-token"}) as service,
        TopicReader(config, "conversations.routing") as routing,
    ):
        http = service.session
        agent_url = service.url("/v1/domains/acme/agents/ann")
        profile = {"name": "Ann", "capacity": {"webchat": 3}}
        async with http.put(agent_url, json=profile, headers=admin) as r:
            assert r.status == 202, await r.text()
        async with http.post(
            agent_url + "/presence", json={"status": "online"}, headers=admin
        ) as r:
            assert r.status == 202
        pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT presence = 'online' FROM agents WHERE domain = 'acme' AND agent_id = 'ann'"
                ),
                what="ann online in PostgreSQL",
            )
            message = {"session_id": "visitor-0001", "message_id": "m1", "text": "Hello, my order?"}
            status, accepted = await service.webchat(message)
            assert status == 202, accepted

            records = await routing.wait_for(
                lambda rs: (
                    {dict(r.headers)["ce_type"] for r in rs}
                    >= {b"conversation.assigned", b"message.routed"}
                )
            )
            events = [ROUTING_DECODER.decode(r.value) for r in records]
            assigned = next(e for e in events if isinstance(e, ConversationAssigned))
            routed = next(e for e in events if isinstance(e, MessageRouted))
            assert assigned.agent_id == "ann"
            assert assigned.domain == "acme"
            assert assigned.channel == "webchat"
            assert routed.message_id == accepted["event_id"]
            assert routed.conversation_id == assigned.conversation_id
            headers = decode_headers(records[0].headers)
            assert headers.specversion == "1.0"
            assert headers.source == config.source
            assert {r.key for r in records} == {b"acme"}

            conversation = await pool.fetchrow(
                "SELECT status, owner_agent_id, channel FROM conversations WHERE conversation_id = $1",
                assigned.conversation_id,
            )
            assert dict(conversation) == {
                "status": "assigned",
                "owner_agent_id": "ann",
                "channel": "webchat",
            }
            stored = await pool.fetch("SELECT message_id, text, direction FROM messages")
            assert [dict(r) for r in stored] == [
                {
                    "message_id": accepted["event_id"],
                    "text": "Hello, my order?",
                    "direction": "inbound",
                }
            ]
            assignment = await pool.fetchrow("SELECT agent_id, strategy, ended_at FROM assignments")
            assert assignment["agent_id"] == "ann"
            assert assignment["strategy"] == str(assigned.strategy)
            assert assignment["ended_at"] is None
        finally:
            await pool.close()

        async with http.get(service.url("/metrics")) as r:
            scrape = await r.text()
        assert (
            f'switchboard_assignments_total{{channel="webchat",domain="acme",'
            f'queue="{assigned.queue}",strategy="{assigned.strategy}"}} 1.0' in scrape
        )
        assert 'switchboard_routed_messages_total{channel="webchat",domain="acme"} 1.0' in scrape
        assert 'switchboard_inbound_messages_total{channel="webchat",domain="acme"} 1.0' in scrape


async def test_a_retried_web_chat_message_is_routed_once(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    async with (
        running_service(config) as service,
        TopicReader(config, "conversations.routing") as routing,
    ):
        message = {"session_id": "visitor-0002", "message_id": "same", "text": "hi"}
        for _ in range(3):
            status, answer = await service.webchat(message)
            assert status == 202, answer
        await routing.wait_for(
            lambda rs: any(dict(r.headers)["ce_type"] == b"message.routed" for r in rs)
        )
        conn = await asyncpg.connect(database_url)
        try:
            await wait_until(
                lambda: _scrape_has(service, "switchboard_duplicate_messages_total"),
                what="duplicates",
            )
            assert await conn.fetchval("SELECT count(*) FROM messages") == 1
        finally:
            await conn.close()
        routed = [
            r for r in await routing.poll() if dict(r.headers)["ce_type"] == b"message.routed"
        ]
        assert len(routed) == 1


async def test_a_stored_message_read_again_is_dropped_whether_its_headers_name_it_or_not(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """The router checks the messages its records' headers name while it fetches their
    keys, and the others once they are decoded: a provider retry is dropped either way."""
    config = make_config(infrastructure.bootstrap_servers, database_url)
    async with (
        running_service(config) as service,
        Traffic(config, ["acme"], agents_per_domain=1) as traffic,
        TopicReader(config, "conversations.routing") as routing,
    ):
        await traffic.register_agents()
        message = traffic.message("acme", 1)
        await traffic.publish([message])
        conn = await asyncpg.connect(database_url)
        try:
            await wait_until(
                lambda: conn.fetchval("SELECT count(*) = 1 FROM messages"), what="stored"
            )
            # Another message after it (and after each copy below): the router no longer
            # holds the first among the ids of its last transaction, only PostgreSQL knows it.
            await traffic.publish([traffic.message("acme", 2)])
            await wait_until(
                lambda: conn.fetchval("SELECT count(*) = 2 FROM messages"), what="stored"
            )
            producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
            await producer.start()
            try:
                # The same event again, with no headers (a producer of its own)…
                await producer.send_and_wait(
                    config.topic(topics.INBOUND), msgspec.json.encode(message), key=b"acme"
                )
            finally:
                await producer.stop()
            await wait_until(
                lambda: _scrape_has(service, f"{DUPLICATES} 1.0"), what="the first copy dropped"
            )
            # … then as the service publishes it, in a batch of its own, after another.
            await traffic.publish([traffic.message("acme", 3)])
            await wait_until(
                lambda: conn.fetchval("SELECT count(*) = 3 FROM messages"), what="stored"
            )
            await traffic.publish([message])
            await wait_until(
                lambda: _scrape_has(service, f"{DUPLICATES} 2.0"), what="the second copy dropped"
            )
            assert await conn.fetchval("SELECT count(*) FROM messages") == 3
        finally:
            await conn.close()

        def routed(records: list[Any]) -> list[Any]:
            return [r for r in records if dict(r.headers)["ce_type"] == b"message.routed"]

        assert len(routed(await routing.wait_for(lambda rs: len(routed(rs)) >= 3))) == 3


DUPLICATES = 'switchboard_duplicate_messages_total{channel="sms",domain="acme"}'


async def _scrape_has(service: object, text: str) -> bool:
    from tests.support import Service

    assert isinstance(service, Service)
    async with service.session.get(service.url("/metrics")) as r:
        body = await r.text()
    return any(line.startswith(text) and not line.endswith(" 0.0") for line in body.splitlines())


async def test_a_malformed_web_chat_request_gets_a_reason_and_publishes_nothing(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    async with (
        running_service(config) as service,
        TopicReader(config, "conversations.inbound") as inbound,
    ):
        url = service.url("/v1/domains/acme/webchat/messages")
        visitor = await service.visitor("visitor-0003")
        other = await service.visitor("visitor-0004")
        cases = [
            (b"{not json", 400, "not valid JSON"),
            (msgspec.json.encode({"session_id": visitor.session_id}), 400, "message_id"),
            (
                msgspec.json.encode({"session_id": "x", "message_id": "1", "text": "hi"}),
                400,
                "session_id",
            ),
            (
                msgspec.json.encode(
                    {"session_id": visitor.session_id, "message_id": "1", "text": " "}
                ),
                400,
                "text",
            ),
            (
                msgspec.json.encode(
                    {"session_id": other.session_id, "message_id": "1", "text": "hi"}
                ),
                403,
                "another session",
            ),
            (b"x" * (config.http.max_body_bytes + 1), 413, "larger than"),
        ]
        for body, status, reason in cases:
            async with service.session.post(
                url, data=body, headers={"Content-Type": "application/json", **visitor.auth}
            ) as r:
                assert r.status == status, (body[:40], await r.text())
                assert reason in (await r.json())["error"]
        async with service.session.post(url, json={"message_id": "1", "text": "hi"}) as r:
            assert r.status == 401, await r.text()
            assert "Authorization" in (await r.json())["error"]
        async with service.session.post(
            service.url("/v1/domains/nowhere/webchat/messages"),
            json={"session_id": "visitor-0003"},
            headers=visitor.auth,
        ) as r:
            assert r.status == 404
        # A good message afterwards is the only record on the topic.
        status, _ = await service.webchat(
            {"session_id": "visitor-0003", "message_id": "ok", "text": "hi"}
        )
        assert status == 202
        records = await inbound.wait_for(lambda rs: len(rs) >= 1)
        assert len(records) == 1
