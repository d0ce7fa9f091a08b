"""Vonage end to end: an SMS through the Messages API's signed inbound webhook into the real
service, the conversation routed to an agent, the agent's reply sent through a stand-in of
the Messages API (``tests.fakes.vonage``: it verifies the application JWT with the public
key and checks the body against Vonage's SDK models), then the Messages API's signed
``delivered`` status → ``outbound.status_changed``. Webhook tokens are made with PyJWT as
Vonage documents them (developer.vonage.com/en/messages/concepts/signed-webhooks)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import jwt
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from schemas import ROUTING_DECODER, ConversationAssigned, DeliveryStatus, OutboundStatusChanged
from tests.conftest import Infrastructure
from tests.fakes.vonage import FakeVonage
from tests.support import Feed, make_config, running_service, sent_reply, wait_until

SECRET = "vonage-e2e-signature-secret-0123456789"
API_KEY = "abcd1234"
APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
OUR_NUMBER = "447700900000"
CUSTOMER = "447700900001"
ADMIN = {"Authorization": "Bearer vonage-admin"}


async def _webhook(http: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> None:
    """POST ``payload`` as the Messages API does: JSON with a JWT (HS256, the signature
    secret) whose ``payload_hash`` is the SHA-256 of the body."""
    body = json.dumps(payload).encode()
    claims = {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": API_KEY,
        "application_id": APPLICATION_ID,
    }
    headers = {
        "Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}",
        "Content-Type": "application/json",
    }
    async with http.post(url, data=body, headers=headers) as response:
        assert response.status == 200, await response.text()


async def test_an_sms_reply_goes_out_through_the_messages_api_and_its_status_comes_back(
    infrastructure: Infrastructure, database_url: str
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    fake = FakeVonage(application_id=APPLICATION_ID, public_key_pem=public)
    api = TestServer(fake.app(), host="127.0.0.1")
    await api.start_server()
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "phone_identity_domains": ["acme"],
                "vonage": {
                    "api_key": API_KEY,
                    "application_id": APPLICATION_ID,
                    "messages_api_base_url": str(api.make_url("")).rstrip("/"),
                    "numbers": [{"number": OUR_NUMBER, "domain": "acme"}],
                },
            }
        },
    )
    environ = {
        "VONAGE_SIGNATURE_SECRET": SECRET,
        "VONAGE_PRIVATE_KEY": private,
        "SWITCHBOARD_ADMIN_TOKEN": "vonage-admin",
    }
    try:
        async with (
            running_service(config, environ) as service,
            Feed(config, "conversations.routing", ROUTING_DECODER) as routing,
        ):
            http = service.session
            await service.online_agent("ann", {"sms": 2}, ADMIN)
            conn = await asyncpg.connect(database_url)
            try:
                # The Messages API's inbound SMS, as its reference documents it.
                await _webhook(
                    http,
                    service.url("/webhooks/vonage/inbound"),
                    {
                        "channel": "sms",
                        "message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
                        "to": OUR_NUMBER,
                        "from": CUSTOMER,
                        "timestamp": "2025-02-03T12:14:25Z",
                        "text": "Is my order shipped?",
                        "sms": {"num_messages": "1", "keyword": "IS"},
                        "usage": {"currency": "EUR", "price": "0.0333"},
                        "origin": {"network_code": "12345"},
                        "message_type": "text",
                    },
                )

                assignment = await routing.first(ConversationAssigned)
                assert assignment.agent_id == "ann"
                conversation = await conn.fetchrow(
                    "SELECT channel, customer_id FROM conversations WHERE conversation_id = $1",
                    assignment.conversation_id,
                )
                assert dict(conversation) == {"channel": "sms", "customer_id": f"phone:+{CUSTOMER}"}

                reply_id, message_id = await sent_reply(
                    service,
                    conn,
                    assignment.conversation_id,
                    {"text": "Yes, it left today."},
                    ADMIN,
                )
                assert fake.refused == []
                [sent] = fake.sent
                assert sent.body == {
                    "from": OUR_NUMBER,
                    "to": CUSTOMER,
                    "channel": "sms",
                    "message_type": "text",
                    "text": "Yes, it left today.",
                    "client_ref": reply_id,
                }
                assert sent.claims["application_id"] == APPLICATION_ID
                assert message_id == sent.message_uuid

                # Vonage's signed status of the reply, naming our client_ref.
                await _webhook(
                    http,
                    service.url("/webhooks/vonage/status"),
                    {
                        "message_uuid": sent.message_uuid,
                        "to": CUSTOMER,
                        "from": OUR_NUMBER,
                        "timestamp": "2025-02-03T12:16:25Z",
                        "status": "delivered",
                        "client_ref": reply_id,
                        "channel": "sms",
                        "destination": {"network_code": "12345"},
                    },
                )

                changed = await routing.first(
                    OutboundStatusChanged,
                    lambda event: (
                        event.outbound_id == reply_id and event.status is DeliveryStatus.DELIVERED
                    ),
                )
                assert (changed.channel, changed.provider_message_id) == ("sms", sent.message_uuid)
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
        await api.close()
