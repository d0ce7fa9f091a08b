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


def _customer_mail() -> dict[str, str]:
    """A forward() route POST of the customer's first mail (parsed, url-encoded)."""
    return {
        "recipient": OURS,
        "sender": CUSTOMER,
        "from": f"Ann Customer <{CUSTOMER}>",
        "subject": "Return my order",
        "body-plain": "The box arrived crushed. How do I return it?",
        "stripped-text": "The box arrived crushed. How do I return it?",
        "Message-Id": "<CAF=first-1@mail.example.org>",
        "attachment-count": "0",
        **_signature(),
    }


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
