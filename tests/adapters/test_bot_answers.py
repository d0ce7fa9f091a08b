"""The adapters forward bots' answers from ``bots.events`` to ``agents.events`` unchanged
(a sealed one stays sealed), and set aside on the dead-letter topic and table what is not
a bot's answer keyed by its domain, or does not open (``adapters.bot_answers``): real
broker, real PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from runtime import kafka
from runtime.dead_letters import UNOPENABLE
from runtime.sealing import SEALED_WITH
from schemas import AGENT_EVENT_DECODER, BotReplied, Presence, PresenceChanged, topics
from switchboard.app import Role
from tests.conftest import Infrastructure
from tests.support import TopicReader, make_config, running_service, topic_keys, wait_until

ADAPTERS = frozenset({Role.ADAPTERS})
A_BOT = {"domains": {"acme": {"routing": {"bots": {"helper": {}}}}}}
"""The forwarder reads nothing while no domain has a bot."""


def answer(answer_id: str, domain: str = "acme", conversation_id: str = "c-1") -> BotReplied:
    return BotReplied(
        id=answer_id,
        domain=domain,
        occurred_at=time.time(),
        conversation_id=conversation_id,
        bot_id="helper",
        turn_id="t-1",
        text="Hello",
    )


async def test_answers_are_forwarded_unchanged_and_anything_else_is_set_aside(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url, A_BOT)
    async with running_service(config, roles=ADAPTERS):
        producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
        await producer.start()
        try:
            source = config.topic(topics.BOTS)
            valid = msgspec.json.encode(answer("a-1"))
            headers = [("ce_id", b"a-1"), ("ce_type", b"bot.replied")]
            await producer.send_and_wait(source, valid, key=b"acme", headers=headers)
            # An agent's command is no bot answer: it must never reach agents.events from here.
            command = msgspec.json.encode(
                PresenceChanged(
                    id="p-1",
                    domain="acme",
                    occurred_at=time.time(),
                    agent_id="ann",
                    status=Presence.OFFLINE,
                )
            )
            await producer.send_and_wait(source, command, key=b"acme")
            await producer.send_and_wait(source, b"{not json", key=b"acme")
            await producer.send_and_wait(source, msgspec.json.encode(answer("a-2")), key=b"other")
            await producer.send_and_wait(source, msgspec.json.encode(answer("a-3")), key=b"acme")
        finally:
            await producer.stop()
        async with TopicReader(config, topics.AGENTS) as agents:
            records = await agents.wait_for(lambda records: len(records) >= 2, timeout=30)
            assert [AGENT_EVENT_DECODER.decode(r.value).id for r in records] == ["a-1", "a-3"]
            assert records[0].value == valid
            assert records[0].key == b"acme"
            assert ("ce_type", b"bot.replied") in list(records[0].headers)
        conn = await asyncpg.connect(database_url)
        try:

            async def three_set_aside() -> bool:
                count = await conn.fetchval(
                    "SELECT count(*) FROM dead_letters WHERE topic = $1", source
                )
                return bool(count == 3)

            await wait_until(three_set_aside, timeout=30, what="three dead letters")
            reasons = sorted(
                await conn.fetchval(
                    "SELECT array_agg(reason) FROM dead_letters WHERE topic = $1", source
                )
            )
            assert all(reason.startswith("invalid") for reason in reasons), reasons
            assert any("key is not its domain" in reason for reason in reasons)
        finally:
            await conn.close()
        async with TopicReader(config, topics.AGENTS) as again:
            await again.poll()
            assert len(await again.poll()) == 2  # still only the two answers


async def test_a_sealed_answer_goes_on_sealed_and_one_that_does_not_open_is_set_aside(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url, A_BOT)
    await kafka.ensure_topics(config, {})
    producer = kafka.make_producer(config, {})
    await producer.start()
    conn = await asyncpg.connect(database_url)
    try:
        async with topic_keys(database_url) as keys:
            bot = kafka.EventPublisher(
                producer, config.topic(topics.BOTS), "bot/acme/helper", keys=keys
            )
            await bot.publish([answer("gone", conversation_id="c-gone")])
            # Its customer was erased before the adapters read it: its key is gone.
            assert await conn.execute("DELETE FROM topic_keys") == "DELETE 1"
            keys.forget()
            await bot.publish([answer("kept", conversation_id="c-kept")])
        async with (
            running_service(config, roles=ADAPTERS),
            TopicReader(config, topics.AGENTS) as agents,
        ):
            [forwarded] = await agents.wait_for(lambda records: len(records) >= 1, timeout=30)
            assert AGENT_EVENT_DECODER.decode(forwarded.value).id == "kept"
            assert dict(forwarded.headers).get(SEALED_WITH), "forwarded as it came: sealed"

            async def set_aside() -> bool:
                count = await conn.fetchval(
                    "SELECT count(*) FROM dead_letters WHERE topic = $1", config.topic(topics.BOTS)
                )
                return bool(count == 1)

            await wait_until(set_aside, timeout=30, what="the answer that does not open set aside")
            letter = await conn.fetchrow("SELECT reason, value FROM dead_letters")
            assert letter["reason"] == UNOPENABLE
            assert b"Hello" not in letter["value"], "kept sealed"
            await asyncio.sleep(0.5)
            assert len(await agents.poll()) == 1
    finally:
        await conn.close()
        await producer.stop()


async def test_with_no_bot_configured_nothing_is_read_until_one_is(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """No domain has a bot: the forwarder fetches nothing (its partitions paused), and an
    answer published meanwhile is forwarded once a bot is added through the API."""
    config = make_config(
        infrastructure.bootstrap_servers, database_url, {"api": {"auth": "disabled"}}
    )
    async with running_service(config) as service, TopicReader(config, topics.AGENTS) as agents:
        await asyncio.sleep(1)  # the forwarder's first read ends: the next step pauses
        producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                config.topic(topics.BOTS), msgspec.json.encode(answer("early")), key=b"acme"
            )
        finally:
            await producer.stop()
        await asyncio.sleep(1.5)  # loops enough to have forwarded it, were it read
        assert await agents.poll() == []
        domain = service.url("/v1/domains/acme/config")
        async with service.session.get(domain) as response:
            document, tag = await response.json(), response.headers["ETag"]
        document["routing"]["bots"] = {"helper": {}}
        async with service.session.put(
            domain, json=document, headers={"If-Match": tag}
        ) as response:
            assert response.status == 200, await response.text()
        [forwarded] = await agents.wait_for(lambda records: len(records) >= 1, timeout=15)
        assert AGENT_EVENT_DECODER.decode(forwarded.value).id == "early"
