"""Web chat and business-started messages, on the real service (broker and PostgreSQL):

1. A ``NotificationRequested`` of the web chat channel on ``conversations.outbound``
   reaches the socket of the session its address names, as ``{"type": "notification"}``;
   one of another channel does not.
2. One to a signed-in ``user:<id>`` customer reaches every session of that user with a
   socket open, whatever session its address names.
3. With no socket open, it is kept for the session its address names and delivered when
   the visitor connects.
4. A web chat message that is a consent keyword carries the consent when the domain
   lists ``webchat`` in its ``keyword_channels`` (not by default); a new configuration
   version's keywords apply from then on.
5. Replies are sealed on the topic (``runtime.sealing``); one that does not open (its key
   is gone: its customer was erased) reaches no socket, is recorded nowhere as a reply,
   and the egress worker sets it aside on the dead-letter topic and table.

Ordering, not time, tells a record was handled: the outbound records of one domain share
one partition, and each adapter process hands them to its sockets in order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.webchat import SOCKET_PROTOCOL
from adapters.webchat_tokens import LoginIn, sign_login
from runtime.appkeys import OUTBOUND_PUBLISHER, PRODUCER
from runtime.dead_letters import UNOPENABLE
from runtime.sealing import SEALED_WITH, SealingKey, seal
from schemas import (
    INBOUND_DECODER,
    Answerer,
    Channel,
    Consent,
    MessageReceived,
    NotificationRequested,
    ReplyRequested,
)
from tests.conftest import Infrastructure
from tests.support import (
    Service,
    TopicReader,
    WebchatSession,
    make_config,
    open_webchat_session,
    running_service,
    wait_until,
)

pytestmark = pytest.mark.integration

SECRETS = {"WEBCHAT_SESSION": "webchat-session-secret", "WEBCHAT_IDENTITY": "identity-secret"}
DOMAINS = {
    "domains": {
        "acme": {
            "webchat": {
                "enabled": True,
                "session_secret_env": "WEBCHAT_SESSION",
                "identity_secret_env": "WEBCHAT_IDENTITY",
            },
            "outbound": {"keyword_channels": ["sms", "whatsapp", "webchat"]},
        },
        "globex": {"webchat": {"enabled": True, "session_secret_env": "WEBCHAT_SESSION"}},
    },
    "api": {"auth": "disabled"},
}
RECEIVE_SECONDS = 15
"""How long a socket waits for a record already published (a failure, not a pace)."""


@pytest.fixture
async def service(infrastructure: Infrastructure, database_url: str) -> AsyncIterator[Service]:
    config = make_config(infrastructure.bootstrap_servers, database_url, DOMAINS)
    async with running_service(config, SECRETS) as running:
        yield running


def notification(
    session: WebchatSession,
    *,
    customer_id: str | None = None,
    channel: Channel = Channel.WEBCHAT,
    text: str = "Your order A-1001 ships today.",
) -> NotificationRequested:
    now = time.time()
    return NotificationRequested(
        id=str(uuid.uuid4()),
        domain=session.domain,
        occurred_at=now,
        conversation_id=str(uuid.uuid4()),
        customer_id=customer_id or session.customer_id,
        channel=channel,
        endpoint="webchat",
        customer_address=session.session_id,
        text=text,
        subject="Order A-1001",
        agent_id="ann",
        answer=Answerer(until=now + 3600),
    )


def reply(session: WebchatSession, text: str = "Hello from ann") -> ReplyRequested:
    return ReplyRequested(
        id=str(uuid.uuid4()),
        domain=session.domain,
        occurred_at=time.time(),
        conversation_id=str(uuid.uuid4()),
        agent_id="ann",
        channel=Channel.WEBCHAT,
        endpoint="webchat",
        customer_address=session.session_id,
        text=text,
    )


async def publish(service: Service, *records: NotificationRequested | ReplyRequested) -> None:
    await service.app[OUTBOUND_PUBLISHER].publish(records)


def socket_url(service: Service, session: WebchatSession) -> str:
    return service.url(f"/v1/domains/{session.domain}/webchat/sessions/{session.session_id}/socket")


async def connect(service: Service, session: WebchatSession) -> aiohttp.ClientWebSocketResponse:
    return await service.session.ws_connect(
        socket_url(service, session), protocols=(SOCKET_PROTOCOL, f"bearer.{session.token}")
    )


async def received(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    answer: dict[str, Any] = await ws.receive_json(timeout=RECEIVE_SECONDS)
    return answer


async def signed_in(service: Service, user_id: str) -> WebchatSession:
    unsigned = {"user_id": user_id, "expires_at": int(time.time()) + 300, "signature": ""}
    login = msgspec.convert(unsigned, LoginIn)
    signature = sign_login(SECRETS["WEBCHAT_IDENTITY"], "acme", login)
    return await open_webchat_session(
        service.session, service.base_url, login={**unsigned, "signature": signature}
    )


# -- 1. to the session the address names ------------------------------------------------------


async def test_a_web_chat_notification_reaches_the_sessions_socket(service: Service) -> None:
    ann = await service.visitor("ann")
    ws = await connect(service, ann)
    try:
        # The reply pump is reading: a reply arrives as always.
        await publish(service, reply(ann))
        assert (await received(ws))["type"] == "reply"

        by_sms = notification(ann, channel=Channel.SMS, text="not for the web chat")
        sent = notification(ann)
        await publish(service, by_sms, sent)
        got = await received(ws)  # the SMS one, published first, was passed over
        assert got == {
            "type": "notification",
            "id": sent.id,
            "conversation_id": sent.conversation_id,
            "agent_id": "ann",
            "text": "Your order A-1001 ships today.",
            "attachments": [],
            "subject": "Order A-1001",
            "sent_at": pytest.approx(sent.occurred_at),
        }
    finally:
        await ws.close()


# -- 2. to every open session of a signed-in user -------------------------------------------


async def test_a_notification_to_a_user_reaches_each_of_their_open_sessions(
    service: Service,
) -> None:
    laptop = await signed_in(service, "42")
    phone = await signed_in(service, "42")
    bob = await service.visitor("bob")
    sockets = [await connect(service, s) for s in (laptop, phone, bob)]
    try:
        await publish(service, reply(bob))
        assert (await received(sockets[2]))["type"] == "reply"

        # Its address names bob's session: the user's own open sessions win.
        to_user = notification(bob, customer_id="user:42")
        after = reply(bob, "next")
        await publish(service, to_user, after)
        for ws in sockets[:2]:
            got = await received(ws)
            assert (got["type"], got["id"]) == ("notification", to_user.id)
        got = await received(sockets[2])  # bob's next record is the reply after it
        assert (got["type"], got["id"]) == ("reply", after.id)
    finally:
        for ws in sockets:
            await ws.close()


# -- 3. kept for a session without a socket ---------------------------------------------------


async def test_a_notification_waits_for_its_session_to_connect(service: Service) -> None:
    carol = await service.visitor("carol")
    dave = await service.visitor("dave")
    watcher = await connect(service, dave)
    try:
        # A user with no session open here: the session the address names keeps it.
        waiting = notification(carol, customer_id="user:77")
        marker = reply(dave)
        await publish(service, waiting, marker)
        assert (await received(watcher))["id"] == marker.id  # so ``waiting`` was handled
    finally:
        await watcher.close()
    ws = await connect(service, carol)
    try:
        got = await received(ws)
        assert (got["type"], got["id"]) == ("notification", waiting.id)
    finally:
        await ws.close()


# -- 4. consent keywords on the web chat -------------------------------------------------------


async def test_web_chat_keywords_count_where_the_domain_lists_the_web_chat(
    service: Service,
) -> None:
    async with TopicReader(service.config, "conversations.inbound") as inbound:
        for text, message_id, domain in (
            ("Stop!", "m1", "acme"),
            ("please stop", "m2", "acme"),
            ("START", "m3", "acme"),
            ("STOP", "m4", "globex"),  # globex keeps the default channels: SMS, WhatsApp
        ):
            status, answer = await service.webchat(
                {"session_id": f"erin-{domain}", "message_id": message_id, "text": text}, domain
            )
            assert status == 202, answer
        records = await inbound.wait_for(lambda rs: len(rs) >= 4)
    messages = [INBOUND_DECODER.decode(r.value) for r in records]
    said = sorted(
        (m.domain, m.text, m.consent, m.consent_source)
        for m in messages
        if isinstance(m, MessageReceived)
    )
    assert said == [
        ("acme", "START", Consent.OPT_IN, "keyword"),
        ("acme", "Stop!", Consent.OPT_OUT, "keyword"),
        ("acme", "please stop", None, None),
        ("globex", "STOP", None, None),
    ]


async def test_a_new_configuration_versions_keywords_apply_to_the_next_message(
    service: Service,
) -> None:
    path = service.url("/v1/domains/globex/config")
    async with service.session.get(path) as response:
        assert response.status == 200
        domain = await response.json()
    outbound = {"opt_out_keywords": ["BASTA"], "keyword_channels": ["webchat"]}
    async with service.session.put(
        path, json={**domain, "outbound": outbound}, headers={"If-Match": "*"}
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
        version = answer["version"]

    async def at_version() -> bool:
        async with service.session.get(service.url("/metrics")) as response:
            return f"switchboard_config_version {float(version)}" in await response.text()

    await wait_until(at_version, what="the service at the new version")
    async with TopicReader(service.config, "conversations.inbound") as inbound:
        status, answer = await service.webchat(
            {"session_id": "frank", "message_id": "m1", "text": "Basta."}, "globex"
        )
        assert status == 202, answer
        [record] = await inbound.wait_for(lambda rs: len(rs) >= 1)
    message = INBOUND_DECODER.decode(record.value)
    assert isinstance(message, MessageReceived)
    assert (message.consent, message.consent_source) == (Consent.OPT_OUT, "keyword")


# -- 5. a reply that does not open ----------------------------------------------------------


async def test_a_reply_that_does_not_open_reaches_no_one_and_is_set_aside(
    service: Service,
) -> None:
    gina = await service.visitor("gina")
    ws = await connect(service, gina)
    erased = reply(gina, "for a customer erased since")
    after = reply(gina, "next")
    # Sealed with a key that is in no database: what is left of an erased customer's key.
    gone = SealingKey(uuid.uuid4().bytes, AESGCM.generate_key(bit_length=256))
    topic = service.config.topic("conversations.outbound")
    try:
        await service.app[PRODUCER].send_and_wait(
            topic,
            value=seal(gone, msgspec.json.encode(erased)),
            key=b"acme",
            headers=[("ce_type", b"reply.requested"), (SEALED_WITH, gone.key_id)],
        )
        await publish(service, after)
        got = await received(ws)  # same partition: the one before it was passed over
        assert (got["type"], got["id"]) == ("reply", after.id)
    finally:
        await ws.close()
    async with TopicReader(service.config, "conversations.outbound") as outbound:
        first, second = await outbound.wait_for(lambda rs: len(rs) >= 2)
    assert dict(second.headers).get(SEALED_WITH), "replies are sealed on the topic"
    assert msgspec.json.decode(second.value)["id"] == after.id  # opened by the reader
    assert b"erased since" not in first.value, "one that does not open stays sealed"
    assert service.config.database.url is not None
    conn = await asyncpg.connect(service.config.database.url)
    try:
        await wait_until(
            lambda: conn.fetchval(
                "SELECT status = 'sent' FROM outbound_messages WHERE outbound_id = $1", after.id
            ),
            what="the reply after it marked sent",
        )
        letters = await conn.fetch("SELECT topic, reason FROM dead_letters")
        assert [(r["topic"], r["reason"]) for r in letters] == [(topic, UNOPENABLE)]
        assert not await conn.fetchval(
            "SELECT count(*) FROM outbound_messages WHERE outbound_id = $1", erased.id
        )
    finally:
        await conn.close()
