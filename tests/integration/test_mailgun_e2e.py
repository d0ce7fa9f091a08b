"""Mailgun end to end: an email in through a signed route POST → routed to an agent → the
agent's reply with an attachment, fetched and uploaded as a multipart ``attachment`` to a
stand-in of Mailgun's messages API (``tests.fakes.mailgun``: basic auth, required
fields, files as multipart parts), threaded under the customer's Message-Id → Mailgun's
signed ``delivered`` event → ``outbound.status_changed`` with its provider status."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import asyncpg
from aiohttp.test_utils import TestServer

from schemas import ROUTING_DECODER, ConversationAssigned, DeliveryStatus, OutboundStatusChanged
from tests.conftest import Infrastructure
from tests.fakes.mailgun import FakeMailgun
from tests.support import Feed, make_config, running_service, sent_reply, wait_until

SIGNING_KEY = "e2e-mailgun-signing-key"
API_KEY = "e2e-mailgun-api-key"
OURS = "support@acme.example"
CUSTOMER = "ann@example.org"
ADMIN = {"Authorization": "Bearer mailgun-admin"}
LABEL = b"%PDF-1.7\r\n%\xe2\xe3\xcf\xd3 return label\r\n%%EOF"


def _signature() -> dict[str, str]:
    """Mailgun's signature of now and a fresh token ("Securing Webhooks")."""
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    mac = hmac.new(SIGNING_KEY.encode(), (timestamp + token).encode(), hashlib.sha256)
    return {"timestamp": timestamp, "token": token, "signature": mac.hexdigest()}


def _customer_mail(
    message_id: str = "<CAF=first-1@mail.example.org>", answers: str | None = None
) -> dict[str, str]:
    """A forward() route POST of the customer's mail (parsed, url-encoded): the first, or,
    ``answers`` naming our reply's headers, an answer to it as mail clients write one
    (``In-Reply-To`` our reply, ``References`` its ``References`` and its id)."""
    mail = {
        "recipient": OURS,
        "sender": CUSTOMER,
        "from": f"Ann Customer <{CUSTOMER}>",
        "subject": "Return my order",
        "body-plain": "The box arrived crushed. How do I return it?",
        "stripped-text": "The box arrived crushed. How do I return it?",
        "Message-Id": message_id,
        "attachment-count": "0",
        **_signature(),
    }
    if answers is not None:
        mail |= {"In-Reply-To": answers.split()[-1], "References": answers}
    return mail


def _delivered(message_id: str, outbound_id: str) -> dict[str, Any]:
    """Mailgun's ``delivered`` event webhook for the message we sent."""
    return {
        "signature": _signature(),
        "event-data": {
            "event": "delivered",
            "id": "hK7mQVt1QtqRiOfQXta4sw",
            "timestamp": time.time(),
            "log-level": "info",
            "envelope": {"transport": "smtp", "sender": OURS, "targets": CUSTOMER},
            "delivery-status": {"code": 250, "message": "OK", "attempt-no": 1},
            "message": {
                "headers": {
                    "to": CUSTOMER,
                    "message-id": message_id,
                    "from": OURS,
                    "subject": "Re: Return my order",
                },
                "attachments": [],
                "size": 3172,
            },
            "recipient": CUSTOMER,
            "user-variables": {
                "switchboard-outbound-id": outbound_id,
                "switchboard-domain": "acme",
            },
        },
    }


async def test_an_email_reply_with_an_attachment_and_its_delivery(
    infrastructure: Infrastructure, database_url: str
) -> None:
    fake = FakeMailgun(api_key=API_KEY)
    fake.hosted["return-label.pdf"] = ("application/pdf", LABEL)
    mailgun = TestServer(fake.app(), host="127.0.0.1")
    await mailgun.start_server()
    base = str(mailgun.make_url("")).rstrip("/")
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "media_fetch_allow_private": True,  # files on loopback
                "email": {
                    "mailgun": {"api_base_url": base},
                    "addresses": [{"address": OURS, "domain": "acme"}],
                },
            }
        },
    )
    environ = {
        "MAILGUN_SIGNING_KEY": SIGNING_KEY,
        "MAILGUN_API_KEY": API_KEY,
        "SWITCHBOARD_ADMIN_TOKEN": "mailgun-admin",
    }
    try:
        async with (
            running_service(config, environ) as service,
            Feed(config, "conversations.routing", ROUTING_DECODER) as routing,
        ):
            http = service.session
            await service.online_agent("ann", {"email": 2}, ADMIN)
            conn = await asyncpg.connect(database_url)
            try:
                route = service.url("/webhooks/email/mailgun")
                async with http.post(route, data=_customer_mail()) as r:
                    assert r.status == 200, await r.text()

                assignment = await routing.first(ConversationAssigned)
                assert assignment.agent_id == "ann"

                label = {"url": f"{base}/files/return-label.pdf", "filename": "label.pdf"}
                reply_id, message_id = await sent_reply(
                    service,
                    conn,
                    assignment.conversation_id,
                    {
                        "text": "Print the label attached.",
                        "subject": "Re: Return my order",
                        "attachments": [label],
                    },
                    ADMIN,
                )
                assert fake.refused == []
                [sent] = fake.sent
                assert sent.domain == "acme.example"
                assert sent.content_type == "multipart/form-data"
                assert sent.fields["from"] == [OURS]
                assert sent.fields["to"] == [CUSTOMER]
                assert sent.fields["text"] == ["Print the label attached."]
                assert sent.fields["h:In-Reply-To"] == ["<CAF=first-1@mail.example.org>"]
                assert sent.fields["h:Message-Id"] == [f"<{reply_id}@acme.example>"]
                assert sent.fields["v:switchboard-outbound-id"] == [reply_id]
                [file] = sent.files
                assert (file.field, file.filename, file.content_type, file.data) == (
                    "attachment",
                    "label.pdf",
                    "application/pdf",
                    LABEL,
                )
                assert message_id == f"{reply_id}@acme.example"

                events = service.url("/webhooks/email/mailgun/events")
                async with http.post(events, json=_delivered(message_id, reply_id)) as r:
                    assert r.status == 200, await r.text()

                changed = await routing.first(
                    OutboundStatusChanged,
                    lambda event: event.status is DeliveryStatus.DELIVERED,
                )
                assert (changed.outbound_id, changed.provider_message_id) == (
                    reply_id,
                    message_id,
                )
                assert changed.provider_status == "delivered"
                assert changed.channel.value == "email"
                await wait_until(
                    lambda: conn.fetchval(
                        "SELECT status = 'delivered' FROM outbound_messages WHERE outbound_id = $1",
                        reply_id,
                    ),
                    what="the delivery recorded",
                )
            finally:
                await conn.close()
    finally:
        await mailgun.close()


async def test_a_thread_of_three_mails_stays_one_conversation(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """Each of our replies names the thread's first mail first in ``References``, so the
    customer's third mail, which answers our second reply, still has it as its root: one
    conversation, not a new one from the second exchange on."""
    fake = FakeMailgun(api_key=API_KEY)
    mailgun = TestServer(fake.app(), host="127.0.0.1")
    await mailgun.start_server()
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "email": {
                    "mailgun": {"api_base_url": str(mailgun.make_url("")).rstrip("/")},
                    "addresses": [{"address": OURS, "domain": "acme"}],
                }
            }
        },
    )
    environ = {
        "MAILGUN_SIGNING_KEY": SIGNING_KEY,
        "MAILGUN_API_KEY": API_KEY,
        "SWITCHBOARD_ADMIN_TOKEN": "mailgun-admin",
    }
    first, second, third = (f"<CAF=thread-{n}@mail.example.org>" for n in (1, 2, 3))
    try:
        async with running_service(config, environ) as service:
            http = service.session
            await service.online_agent("ann", {"email": 2}, ADMIN)
            conn = await asyncpg.connect(database_url)
            try:
                route = service.url("/webhooks/email/mailgun")

                async def customer_writes(mail: dict[str, str], count: int) -> str:
                    async with http.post(route, data=mail) as r:
                        assert r.status == 200, await r.text()
                    rows = await wait_until(
                        lambda: _conversations_of_messages(conn, count),
                        what=f"{count} customer mails stored",
                    )
                    return rows[-1]

                conversation = await customer_writes(_customer_mail(first), 1)
                references = []
                for mail_id, count in ((second, 2), (third, 3)):
                    await wait_until(
                        lambda: conn.fetchval(
                            "SELECT owner_agent_id IS NOT NULL FROM conversations"
                            " WHERE conversation_id = $1",
                            conversation,
                        ),
                        what="the conversation assigned",
                    )
                    await sent_reply(service, conn, conversation, {"text": "On it."}, ADMIN)
                    [ours] = fake.sent[-1].fields["h:References"]
                    references.append(ours)
                    our_id = fake.sent[-1].fields["h:Message-Id"][0]
                    answered = await customer_writes(
                        _customer_mail(mail_id, f"{ours} {our_id}"), count
                    )
                    assert answered == conversation, f"mail {count} opened another conversation"
                assert references == [first, f"{first} {second}"]
            finally:
                await conn.close()
    finally:
        await mailgun.close()


async def _conversations_of_messages(conn: asyncpg.Connection, count: int) -> list[str] | None:
    """The conversation of each customer mail stored, oldest first, once ``count`` are."""
    rows = await conn.fetch(
        "SELECT conversation_id FROM messages WHERE direction = 'inbound' ORDER BY occurred_at"
    )
    return [row[0] for row in rows] if len(rows) >= count else None
