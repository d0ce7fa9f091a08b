"""``adapters.webchat_routes.reply_pump`` against the real broker and PostgreSQL: while no
domain has web chat enabled its consumer is paused (a paused consumer fetches nothing),
and once one has, replies published meanwhile reach the hub."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from adapters import webchat
from adapters.webchat import WebchatConfig, WebchatHub
from adapters.webchat_routes import reply_pump
from runtime import db, kafka
from runtime.sealing import TopicKeys
from schemas import Channel, ReplyRequested, topics
from tests.adapters.conftest import frames_on_connect, served_socket
from tests.conftest import Infrastructure
from tests.support import make_config, wait_until

pytestmark = pytest.mark.integration

SESSION = "visitor-0001"


def reply() -> ReplyRequested:
    return ReplyRequested(
        id=str(uuid.uuid4()),
        domain="acme",
        occurred_at=time.time(),
        conversation_id=str(uuid.uuid4()),
        agent_id="ann",
        channel=Channel.WEBCHAT,
        endpoint="webchat",
        customer_address=SESSION,
        text="Hello from ann",
    )


async def test_the_pump_is_paused_while_no_domain_has_web_chat_and_reads_on_after(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    await kafka.ensure_topics(config, {})
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    producer = kafka.make_producer(config, {})
    await producer.start()
    consumer = AIOKafkaConsumer(
        config.topic(topics.OUTBOUND),
        bootstrap_servers=config.kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    hub = WebchatHub()
    domains = {"acme": WebchatConfig(enabled=False)}
    pump = asyncio.create_task(reply_pump(consumer, hub, domains, TopicKeys(pool)))
    try:
        await wait_until(
            lambda: consumer.assignment() and consumer.paused() == consumer.assignment(),
            what="paused",
        )
        enabled = domains["acme"] = WebchatConfig(enabled=True)
        await wait_until(lambda: not consumer.paused(), what="resumed")
        sent = reply()
        publisher = kafka.EventPublisher(
            producer, config.topic(topics.OUTBOUND), config.source, keys=TopicKeys(pool)
        )
        await publisher.publish([sent])
        # Kept for the session (no socket yet), then handed to the visitor on connect.
        (frame,) = await frames_on_connect(hub, enabled, SESSION, 1)
        assert (frame["type"], frame["id"], frame["text"]) == ("reply", sent.id, sent.text)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await pool.close()


async def test_kept_replies_expire_without_their_visitor_coming_back() -> None:
    """A reply kept for a visitor who never comes back is gone once
    ``reply_backlog_seconds`` have passed, not only when they reconnect (what an erasure
    and the memory bound count on)."""
    now = [1_000.0]
    hub = WebchatHub(clock=lambda: now[0])
    config = WebchatConfig(enabled=True, reply_backlog_seconds=60)
    away = msgspec.structs.replace(reply(), customer_address="session-away-1")
    assert not await hub.deliver(away, config)
    assert list(hub._backlog) == [("acme", "session-away-1")]
    now[0] += 61
    later = msgspec.structs.replace(reply(), customer_address="session-later-2")
    assert not await hub.deliver(later, config)
    assert list(hub._backlog) == [("acme", "session-later-2")]


def test_a_reply_backlog_beyond_its_bounds_is_refused() -> None:
    for settings in ({"reply_backlog": -1}, {"reply_backlog_seconds": 10**9}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(settings, WebchatConfig)


async def test_a_visitor_who_stops_reading_does_not_hold_back_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A socket whose visitor reads nothing fills its buffers and then blocks every send
    to it: the hub cuts it off (keeping the reply), so the next visitor's reply goes."""
    monkeypatch.setattr(webchat, "SEND_SECONDS", 0.5)
    hub, config = WebchatHub(), WebchatConfig(enabled=True)
    async with served_socket(hub, config) as server:
        # A WebSocket handshake by hand, then nothing read.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /socket?session=stuck-0001 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        await wait_until(lambda: hub.connected("acme", "stuck-0001") == 1, what="attached")
        big = msgspec.structs.replace(reply(), customer_address="stuck-0001", text="x" * 4000)
        started = time.monotonic()
        while hub.connected("acme", "stuck-0001"):
            await hub.deliver(big, config)
            await asyncio.sleep(0)  # as the pump's reads do: the cut-off handler ends
            assert time.monotonic() - started < 60, "the socket never blocked"
        other = msgspec.structs.replace(reply(), customer_address=SESSION)
        started = time.monotonic()
        assert not await hub.deliver(other, config)  # no socket: kept at once
        assert time.monotonic() - started < 0.5
        writer.close()


async def test_kept_replies_a_socket_did_not_get_wait_for_the_next_one() -> None:
    """The socket goes while the kept replies are sent on connecting: those it did not
    get are kept again (they were all dropped)."""

    class Leaving:
        closed = False

        def __init__(self) -> None:
            self.got: list[str] = []

        async def send_str(self, text: str) -> None:
            if self.got:
                raise ConnectionResetError("the visitor left")
            self.got.append(text)

    hub, config = WebchatHub(), WebchatConfig(enabled=True)
    texts = [f"reply {n}" for n in range(3)]
    for text in texts:
        assert not await hub.deliver(msgspec.structs.replace(reply(), text=text), config)
    leaving = Leaving()
    with pytest.raises(ConnectionResetError):
        await hub.attach("acme", SESSION, leaving, config)  # type: ignore[arg-type]
    hub.detach("acme", SESSION, leaving)  # type: ignore[arg-type]
    assert [msgspec.json.decode(t)["text"] for t in leaving.got] == texts[:1]
    frames = await frames_on_connect(hub, config, SESSION, 2)
    assert [frame["text"] for frame in frames] == texts[1:]


async def test_a_socket_is_closed_when_its_token_expires() -> None:
    """The token was checked when the socket opened; the socket ends with it (4001), and
    the visitor connects again with the token it refreshed meanwhile."""
    hub, config = WebchatHub(), WebchatConfig(enabled=True)
    async with served_socket(hub, config, SESSION, expires_at=time.time() + 0.5) as server:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(server.make_url("/socket")) as ws,
        ):
            frame = await ws.receive(timeout=10)
        assert (frame.type, frame.data) == (aiohttp.WSMsgType.CLOSE, webchat.TOKEN_EXPIRED)
        await wait_until(lambda: hub.connected("acme", SESSION) == 0, what="detached")
