"""Poison records never stop routing: the router sets them aside and goes on.

A record reaches ``conversations.inbound`` or ``agents.events`` from the adapters and the
API, which refuse or clean what storage cannot hold, but also from older versions and
other producers. Whatever it holds, the router routes everything else: records it cannot
decode or that hold a NUL are dead-lettered on reading; a record whose effects PostgreSQL
refuses (here: a CHECK constraint the test adds to the real database) is found by
replaying the failed transaction's records one at a time, dead-lettered with its reason,
and the others are committed.
"""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from schemas import AgentRegistered, Channel
from switchboard.config import Config
from tests.conftest import Infrastructure
from tests.support import TopicReader, make_config, running_service, wait_until
from tests.traffic import Traffic

pytestmark = pytest.mark.integration

DOMAINS = {
    "domains": {
        "acme": {"webchat": {"enabled": True}},
        "beta": {"webchat": {"enabled": True}},
    }
}


async def _routed(conn: asyncpg.Connection, ids: list[str]) -> bool:
    stored = await conn.fetchval("SELECT count(*) FROM messages WHERE message_id = ANY($1)", ids)
    return bool(stored == len(ids))


async def _dead_letters(
    conn: asyncpg.Connection, config: Config
) -> list[tuple[str, str | None, str]]:
    """(topic without the test's prefix, domain, reason) of every dead letter."""
    rows = await conn.fetch("SELECT topic, domain, reason FROM dead_letters")
    prefix = config.topic("")
    return sorted((r["topic"].removeprefix(prefix), r["domain"], r["reason"]) for r in rows)


async def test_records_that_cannot_be_stored_are_dead_lettered_on_reading(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """The four stalls of a router before its inputs were bounded: a NUL in a message's
    text, in an agent's name, in a provider message id, and a customer address of 8,000
    characters. Each is set aside; messages before and after them, in the same domain and
    in another, are routed."""
    config = make_config(infrastructure.bootstrap_servers, database_url, DOMAINS)
    async with (
        running_service(config) as service,
        Traffic(config, ["acme", "beta"], agents_per_domain=2) as traffic,
        TopicReader(config, "switchboard.dlq") as dlq,
    ):
        await traffic.register_agents()
        before = [traffic.message("acme", 1), traffic.message("beta", 1)]
        after = [traffic.message("acme", 2), traffic.message("beta", 2)]
        poison = [
            msgspec.structs.replace(traffic.message("acme", 3), text="hello\x00world"),
            msgspec.structs.replace(traffic.message("acme", 4), provider_message_id="SM\x00"),
            msgspec.structs.replace(traffic.message("acme", 5), customer_address="+1" + "5" * 7998),
        ]
        nul_name = AgentRegistered(
            id="agent-with-nul",
            domain="acme",
            occurred_at=before[0].occurred_at,
            agent_id="nul",
            name="Ann\x00",
            capacity={Channel.WEBCHAT: 1},
        )
        producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
        await producer.start()
        try:
            inbound = config.topic("conversations.inbound")
            for message in [*before, *poison, *after]:
                await producer.send_and_wait(
                    inbound, msgspec.json.encode(message), key=message.domain.encode()
                )
            await producer.send_and_wait(
                config.topic("agents.events"), msgspec.json.encode(nul_name), key=b"acme"
            )
        finally:
            await producer.stop()
        conn = await asyncpg.connect(database_url)
        try:
            await wait_until(
                lambda: _routed(conn, [m.id for m in [*before, *after]]),
                timeout=20,
                what="the good messages routed",
            )
            await wait_until(
                lambda: conn.fetchval("SELECT count(*) = 4 FROM dead_letters"),
                what="four dead letters",
            )
            letters = await _dead_letters(conn, config)
            assert await conn.fetchval("SELECT count(*) FROM agents WHERE agent_id = 'nul'") == 0
        finally:
            await conn.close()
        assert letters == [
            ("agents.events", "acme", "invalid: a string holds U+0000 (NUL)"),
            (
                "conversations.inbound",
                "acme",
                "invalid: Expected `str` of length <= 320 - at `$.customer_address`",
            ),
            ("conversations.inbound", "acme", "invalid: a string holds U+0000 (NUL)"),
            ("conversations.inbound", "acme", "invalid: a string holds U+0000 (NUL)"),
        ]
        published = await dlq.wait_for(lambda records: len(records) >= 4)
        assert sorted(r.value for r in published) == sorted(
            [msgspec.json.encode(m) for m in poison] + [msgspec.json.encode(nul_name)]
        )
        async with service.session.get(service.url("/readyz")) as response:
            assert response.status == 200


async def test_a_record_postgresql_refuses_is_found_and_set_aside_and_the_rest_commits(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {**DOMAINS, "kafka": {"max_batch_records": 500}},
    )
    conn = await asyncpg.connect(database_url)
    try:
        # A real refusal by the database, for one record's effects only.
        await conn.execute(
            "ALTER TABLE messages ADD CONSTRAINT refuses_the_pill CHECK (text <> 'poison pill')"
        )
        async with (
            running_service(config) as service,
            Traffic(config, ["acme", "beta"], agents_per_domain=2) as traffic,
        ):
            await traffic.register_agents()
            messages = [
                traffic.message(domain, n) for n in range(20) for domain in DOMAINS["domains"]
            ]
            pill = msgspec.structs.replace(traffic.message("acme", 99), text="poison pill")
            messages.insert(17, pill)
            # One publish: the router reads them in one or a few batches, so the failed
            # transaction holds good records around the pill, of both domains.
            await traffic.publish(messages)
            good = [m.id for m in messages if m is not pill]
            await wait_until(lambda: _routed(conn, good), timeout=30, what="every good message")
            letters = await _dead_letters(conn, config)
            assert letters == [
                (
                    "conversations.inbound",
                    "acme",
                    "unstorable: CheckViolationError (SQLSTATE 23514)",
                )
            ]
            assert await conn.fetchval("SELECT value FROM dead_letters") == msgspec.json.encode(
                pill
            )
            # Routing goes on in batches, in both domains.
            later = [traffic.message("acme", 50), traffic.message("beta", 50)]
            await traffic.publish(later)
            await wait_until(lambda: _routed(conn, [m.id for m in later]), what="later messages")
            assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 1
            async with service.session.get(service.url("/readyz")) as response:
                assert response.status == 200
            async with service.session.get(service.url("/metrics")) as response:
                scrape = await response.text()
            assert (
                'switchboard_dead_letters_total{domain="acme",reason="unstorable",topic="'
                + config.topic("conversations.inbound")
                + '"} 1.0'
            ) in scrape
    finally:
        await conn.close()


async def test_a_poison_record_is_dead_lettered_once_across_restarts(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """Poison published while no router runs is found by the next one; a later restart
    does not find it again: the dead letter and the offset past it committed together."""
    config = make_config(infrastructure.bootstrap_servers, database_url, DOMAINS)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "ALTER TABLE messages ADD CONSTRAINT refuses_the_pill CHECK (text <> 'poison pill')"
        )
        async with running_service(config):
            pass  # the topics exist from here on
        async with Traffic(config, ["acme"], agents_per_domain=1) as traffic:
            pill = msgspec.structs.replace(traffic.message("acme", 1), text="poison pill")
            await traffic.publish([pill, traffic.message("acme", 2)])
        for _ in range(2):
            async with running_service(config):
                await wait_until(
                    lambda: conn.fetchval("SELECT count(*) = 1 FROM messages"),
                    timeout=20,
                    what="the good message",
                )
        assert [r[2] for r in await _dead_letters(conn, config)] == [
            "unstorable: CheckViolationError (SQLSTATE 23514)"
        ]
    finally:
        await conn.close()
