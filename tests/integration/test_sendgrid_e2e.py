"""Email through SendGrid, end to end: a signed Inbound Parse POST in through the real
service, the conversation routed to an agent, the agent's reply (with a file) sent through
a stand-in of Mail Send (``tests.fakes.sendgrid``: bearer key, JSON shape, base64 files,
202 with ``X-Message-Id``), SendGrid's signed ``delivered`` event → ``outbound.status_changed``,
and the customer's answer to the reply (raw mode) routed into the same conversation."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from schemas import (
    ROUTING_DECODER,
    ConversationAssigned,
    DeliveryStatus,
    MessageRouted,
    OutboundStatusChanged,
)
from tests.conftest import Infrastructure
from tests.fakes.sendgrid import FakeSendGrid
from tests.support import Feed, make_config, running_service, sent_reply, wait_until

API_KEY = "SG.e2e-api-key"
OUR = "support@acme.example"
CUSTOMER = "ann@example.org"
FIRST = "CAF=first-1@mail.example.org"
ADMIN = {"Authorization": "Bearer sendgrid-admin"}
BOUNDARY = "xYzZY"


def _public(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def _signed(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    """SendGrid's signature headers: ECDSA P-256 / SHA-256 of timestamp + body."""
    timestamp = str(int(time.time()))
    der = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(der).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def _form(fields: dict[str, str]) -> bytes:
    return (
        "".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        + f"--{BOUNDARY}--\r\n"
    ).encode()


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with http.post(url, data=body, headers=headers) as response:
        assert response.status == 200, await response.text()


async def test_an_email_reply_goes_out_through_sendgrid_and_its_delivery_comes_back(
    infrastructure: Infrastructure, database_url: str
) -> None:
    parse_key = ec.generate_private_key(ec.SECP256R1())
    event_key = ec.generate_private_key(ec.SECP256R1())
    fake = FakeSendGrid(API_KEY)
    fake.hosted["label.pdf"] = ("application/pdf", b"%PDF-1.4 return label")
    sendgrid = TestServer(fake.app(), host="127.0.0.1")
    await sendgrid.start_server()
    base = str(sendgrid.make_url("")).rstrip("/")
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "media_fetch_allow_private": True,  # files on loopback
                "email": {
                    "sendgrid": {
                        "api_base_url": base,
                        "parse_public_key": _public(parse_key),
                        "event_public_key": _public(event_key),
                    },
                    "addresses": [{"address": OUR, "domain": "acme", "provider": "sendgrid"}],
                },
            }
        },
    )
    environ = {"SENDGRID_API_KEY": API_KEY, "SWITCHBOARD_ADMIN_TOKEN": "sendgrid-admin"}
    try:
        async with (
            running_service(config, environ) as service,
            Feed(config, "conversations.routing", ROUTING_DECODER) as routing,
        ):
            http = service.session
            await service.online_agent("ann", {"email": 2}, ADMIN)
            conn = await asyncpg.connect(database_url)
            try:
                # 1. The customer's mail, as Inbound Parse posts it (parsed mode), signed.
                parse_url = service.url("/webhooks/email/sendgrid")
                mail = _form(
                    {
                        "headers": f"From: Ann <{CUSTOMER}>\nTo: {OUR}\nSubject: Order 1234\n"
                        f"Message-ID: <{FIRST}>\n",
                        "to": OUR,
                        "from": f"Ann <{CUSTOMER}>",
                        "subject": "Order 1234",
                        "text": "Where is my parcel?",
                        "envelope": json.dumps({"to": [OUR], "from": CUSTOMER}),
                        "charsets": json.dumps({"to": "UTF-8", "text": "UTF-8"}),
                        "attachments": "0",
                    }
                )
                form_type = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
                await _post(http, parse_url, mail, {**form_type, **_signed(parse_key, mail)})

                assignment = await routing.first(ConversationAssigned)
                assert assignment.agent_id == "ann"
                conversation_id = assignment.conversation_id
                conversation = await conn.fetchrow(
                    "SELECT channel, customer_id FROM conversations WHERE conversation_id = $1",
                    conversation_id,
                )
                assert dict(conversation) == {
                    "channel": "email",
                    "customer_id": f"email:{CUSTOMER}",
                }

                # 2. The agent's reply, with a file, through the API → Mail Send.
                label = {
                    "url": f"{base}/files/label.pdf",
                    "content_type": "application/pdf",
                    "filename": "label.pdf",
                }
                reply_id, message_id = await sent_reply(
                    service,
                    conn,
                    conversation_id,
                    {
                        "text": "It left today; the return label is attached.",
                        "subject": "Re: Order 1234",
                        "attachments": [label],
                    },
                    ADMIN,
                )
                assert fake.refused == []
                [sent] = fake.sent
                assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
                expected: dict[str, Any] = {
                    "personalizations": [{"to": [{"email": CUSTOMER}]}],
                    "from": {"email": OUR},
                    "subject": "Re: Order 1234",
                    "content": [
                        {
                            "type": "text/plain",
                            "value": "It left today; the return label is attached.",
                        }
                    ],
                    "headers": {
                        "Message-ID": f"<{reply_id}@acme.example>",
                        "In-Reply-To": f"<{FIRST}>",
                        "References": f"<{FIRST}>",
                    },
                    "custom_args": {
                        "switchboard_outbound_id": reply_id,
                        "switchboard_endpoint": OUR,
                    },
                    "attachments": [
                        {
                            "content": base64.b64encode(b"%PDF-1.4 return label").decode(),
                            "type": "application/pdf",
                            "filename": "label.pdf",
                            "disposition": "attachment",
                        }
                    ],
                }
                assert sent.json == expected
                assert message_id == sent.message_id

                # 3. SendGrid's signed ``delivered`` event, our custom args on it.
                events = json.dumps(
                    [
                        {
                            "email": CUSTOMER,
                            "timestamp": int(time.time()),
                            "smtp-id": f"<{sent.message_id}@geopod-ismtpd-1>",
                            "event": "delivered",
                            "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==",
                            "sg_message_id": f"{sent.message_id}.recvd-7c6c9d8d9-abcde-1-0",
                            "response": "250 OK",
                            "switchboard_outbound_id": reply_id,
                            "switchboard_endpoint": OUR,
                        }
                    ]
                ).encode()
                await _post(
                    http,
                    service.url("/webhooks/email/sendgrid/events"),
                    events,
                    {"Content-Type": "application/json", **_signed(event_key, events)},
                )

                changed = await routing.first(
                    OutboundStatusChanged,
                    lambda event: event.status is DeliveryStatus.DELIVERED,
                )
                assert changed.outbound_id == reply_id
                assert changed.provider_message_id == sent.message_id
                assert changed.channel.value == "email"
                await wait_until(
                    lambda: conn.fetchval(
                        "SELECT status = 'delivered' FROM outbound_messages WHERE outbound_id = $1",
                        reply_id,
                    ),
                    what="the delivery recorded",
                )

                # 4. The customer answers the reply (raw mode): the same conversation.
                answer = (
                    f"From: Ann <{CUSTOMER}>\r\nTo: {OUR}\r\nSubject: Re: Order 1234\r\n"
                    "Message-ID: <CAF=answer-3@mail.example.org>\r\n"
                    f"In-Reply-To: <{reply_id}@acme.example>\r\n"
                    f"References: <{FIRST}> <{reply_id}@acme.example>\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\nThank you!\r\n"
                )
                raw = _form(
                    {
                        "email": answer,
                        "to": OUR,
                        "from": f"Ann <{CUSTOMER}>",
                        "envelope": json.dumps({"to": [OUR], "from": CUSTOMER}),
                    }
                )
                await _post(http, parse_url, raw, {**form_type, **_signed(parse_key, raw)})

                routed = await routing.first(
                    MessageRouted,
                    lambda event: event.provider_message_id == "CAF=answer-3@mail.example.org",
                )
                assert routed.conversation_id == conversation_id
                assert routed.agent_id == "ann"
            finally:
                await conn.close()
    finally:
        await sendgrid.close()
