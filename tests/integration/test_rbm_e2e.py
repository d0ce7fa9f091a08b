"""RCS through Google RBM, end to end: a signed RBM message in through the real service, the
conversation routed to an agent, the agent's reply sent through a stand-in of Google's
token endpoint and ``phones.agentMessages`` (``tests.fakes.rbm``: it checks the JWT
assertion with the service account's public key, the bearer token and the message's
shape), then RBM's signed READ event → ``outbound.status_changed``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from schemas import ROUTING_DECODER, ConversationAssigned, DeliveryStatus, OutboundStatusChanged
from tests.conftest import Infrastructure
from tests.fakes.rbm import FakeRbm
from tests.support import Feed, make_config, running_service, sent_reply, wait_until

CLIENT_TOKEN = "rbm-e2e-client-token"
CLIENT_EMAIL = "rbm-agent@rbm-e2e.iam.gserviceaccount.com"
AGENT = "acme-support"
CUSTOMER = "+12223334444"
ADMIN = {"Authorization": "Bearer rbm-admin"}


def _service_account(key: rsa.RSAPrivateKey, token_uri: str) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "private_key_id": "e2e",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "token_uri": token_uri,
        }
    )


async def _deliver(http: aiohttp.ClientSession, url: str, inner: dict[str, Any]) -> None:
    """POST ``inner`` as RBM does: base64 in a Pub/Sub-style envelope, signed over the
    decoded data with HMAC-SHA512 (the guide's Node.js sample, written with hmac)."""
    data = json.dumps(inner).encode()
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": "14150481888479752",
            "publishTime": "2023-11-14T22:13:19.962Z",
        },
        "subscription": "projects/rbm-e2e/subscriptions/rbm-webhook",
    }
    mac = hmac.new(CLIENT_TOKEN.encode(), data, hashlib.sha512).digest()
    headers = {"X-Goog-Signature": base64.b64encode(mac).decode()}
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == 200, await response.text()


async def test_an_rcs_reply_goes_out_through_rbm_and_its_read_event_comes_back(
    infrastructure: Infrastructure, database_url: str
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    fake = FakeRbm(public_key_pem=public, client_email=CLIENT_EMAIL)
    google = TestServer(fake.app(), host="127.0.0.1")
    await google.start_server()
    fake.token_url = str(google.make_url("/token"))
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "phone_identity_domains": ["acme"],
                "rbm": {
                    "api_base_url": str(google.make_url("")).rstrip("/"),
                    "agents": [{"agent_id": AGENT, "domain": "acme"}],
                },
            }
        },
    )
    environ = {
        "RBM_CLIENT_TOKEN": CLIENT_TOKEN,
        "RBM_SERVICE_ACCOUNT": _service_account(key, fake.token_url),
        "SWITCHBOARD_ADMIN_TOKEN": "rbm-admin",
    }
    try:
        async with (
            running_service(config, environ) as service,
            Feed(config, "conversations.routing", ROUTING_DECODER) as routing,
        ):
            http = service.session
            await service.online_agent("ann", {"rcs": 2}, ADMIN)
            conn = await asyncpg.connect(database_url)
            try:
                webhook = service.url("/webhooks/rbm")
                await _deliver(
                    http,
                    webhook,
                    {
                        "senderPhoneNumber": CUSTOMER,
                        "messageId": "MxCxZ3TXLBT1uO7rYjC4Ilkg",
                        "agentId": f"{AGENT}@rbm.goog",
                        "text": "Where is my parcel?",
                    },
                )

                assignment = await routing.first(ConversationAssigned)
                assert assignment.agent_id == "ann"
                conversation = await conn.fetchrow(
                    "SELECT channel, customer_id FROM conversations WHERE conversation_id = $1",
                    assignment.conversation_id,
                )
                assert dict(conversation) == {"channel": "rcs", "customer_id": f"phone:{CUSTOMER}"}

                place = {"latitude": 48.8584, "longitude": 2.2945, "name": "Pickup point"}
                reply_id, message_id = await sent_reply(
                    service,
                    conn,
                    assignment.conversation_id,
                    {"text": "It waits at the pickup point.", "location": place},
                    ADMIN,
                )
                assert message_id == reply_id
                assert fake.refused == []
                [grant] = fake.grants
                assert grant["iss"] == CLIENT_EMAIL
                [sent] = fake.sent
                assert (sent.phone, sent.message_id, sent.agent_id) == (CUSTOMER, reply_id, AGENT)
                assert sent.authorization.removeprefix("Bearer ") in fake.issued
                assert sent.content == {
                    "text": "It waits at the pickup point.",
                    "suggestions": [
                        {
                            "action": {
                                "text": "View location",
                                "postbackData": "view_location",
                                "viewLocationAction": {
                                    "latLong": {"latitude": 48.8584, "longitude": 2.2945},
                                    "label": "Pickup point",
                                },
                            }
                        }
                    ],
                }

                await _deliver(
                    http,
                    webhook,
                    {
                        "senderPhoneNumber": CUSTOMER,
                        "agentId": f"{AGENT}@rbm.goog",
                        "eventType": "READ",
                        "eventId": "Ms6oOiEli6QS-ge9ZFsmgTj",
                        "messageId": reply_id,
                    },
                )

                changed = await routing.first(
                    OutboundStatusChanged,
                    lambda event: event.status is DeliveryStatus.READ,
                )
                assert changed.provider_message_id == reply_id
                assert changed.channel.value == "rcs"
                await wait_until(
                    lambda: conn.fetchval(
                        "SELECT status = 'read' FROM outbound_messages WHERE outbound_id = $1",
                        reply_id,
                    ),
                    what="the read recorded",
                )
            finally:
                await conn.close()
    finally:
        await google.close()
