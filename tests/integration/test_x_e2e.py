"""X DMs through the real service: a signed Account Activity webhook in, routed to an agent,
the agent's reply (with an image) out through a stand-in of the X API that checks OAuth 1.0a
signatures and X's JSON shapes (``tests.fakes.x``), and the customer's read mark back as
``outbound.status_changed``.

X's documentation: https://docs.x.com/x-api/webhooks/quickstart (CRC, signature),
https://docs.x.com/x-api/account-activity/introduction (payloads),
https://docs.x.com/x-api/direct-messages/manage/integrate (sending, media).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import asyncpg
import msgspec
from aiohttp.test_utils import TestServer

from schemas import (
    ROUTING_DECODER,
    ConversationAssigned,
    DeliveryStatus,
    MessageRouted,
    OutboundStatusChanged,
)
from tests.conftest import Infrastructure
from tests.fakes.x import FakeX
from tests.support import TopicReader, make_config, running_service, sent_reply, wait_until

CONSUMER_KEY = "x-e2e-consumer-key"
CONSUMER_SECRET = "x-e2e-consumer-secret"
TOKEN = "4337869213-x-e2e-access-token"
TOKEN_SECRET = "x-e2e-access-token-secret"
OUR_APP = "13090192"
ACCOUNT = "4337869213"
CUSTOMER = "3001969357"
ADMIN = {"Authorization": "Bearer x-e2e-admin"}
ENVIRON = {
    "X_CONSUMER_KEY": CONSUMER_KEY,
    "X_CONSUMER_SECRET": CONSUMER_SECRET,
    "X_ACCESS_TOKEN": TOKEN,
    "X_ACCESS_TOKEN_SECRET": TOKEN_SECRET,
    "SWITCHBOARD_ADMIN_TOKEN": "x-e2e-admin",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"receipt" * 500


def signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body as X sends it, with its ``x-twitter-webhooks-signature``."""
    raw = msgspec.json.encode(body)
    mac = hmac.new(CONSUMER_SECRET.encode(), raw, hashlib.sha256).digest()
    return raw, {
        "Content-Type": "application/json",
        "x-twitter-webhooks-signature": "sha256=" + base64.b64encode(mac).decode(),
    }


def customer_dm(dm_id: str, text: str) -> dict[str, Any]:
    return {
        "for_user_id": ACCOUNT,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": dm_id,
                "created_timestamp": str(int(time.time() * 1000)),
                "message_create": {
                    "target": {"recipient_id": ACCOUNT},
                    "sender_id": CUSTOMER,
                    "message_data": {"text": text, "entities": {"urls": []}},
                },
            }
        ],
        "users": {CUSTOMER: {"id": CUSTOMER, "name": "A Customer", "screen_name": "customer"}},
    }


def read_mark(last_read_event_id: str) -> dict[str, Any]:
    return {
        "for_user_id": ACCOUNT,
        "direct_message_mark_read_events": [
            {
                "created_timestamp": str(int(time.time() * 1000)),
                "sender_id": CUSTOMER,
                "target": {"recipient_id": ACCOUNT},
                "last_read_event_id": last_read_event_id,
            }
        ],
    }


async def test_an_x_dm_is_answered_through_x_and_its_read_mark_recorded(
    infrastructure: Infrastructure, database_url: str
) -> None:
    fake = FakeX(CONSUMER_KEY, CONSUMER_SECRET, {TOKEN: TOKEN_SECRET})
    fake.files["receipt.png"] = (PNG, "image/png")
    provider = TestServer(fake.app, host="127.0.0.1")
    await provider.start_server()
    base = str(provider.make_url("")).rstrip("/")
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "media_fetch_allow_private": True,  # files on loopback
                "x": {
                    "api_base_url": base,
                    "app_id": OUR_APP,
                    "accounts": [{"user_id": ACCOUNT, "domain": "acme"}],
                },
            }
        },
    )
    conn = await asyncpg.connect(database_url)
    try:
        async with (
            running_service(config, ENVIRON) as service,
            TopicReader(config, "conversations.routing") as routing,
        ):
            http = service.session
            # X's challenge, as it comes when the webhook is registered.
            async with http.get(service.url("/webhooks/x"), params={"crc_token": "e2e"}) as r:
                assert r.status == 200
                mac = hmac.new(CONSUMER_SECRET.encode(), b"e2e", hashlib.sha256).digest()
                assert await r.json() == {
                    "response_token": "sha256=" + base64.b64encode(mac).decode()
                }

            await service.online_agent("ann", {"x": 2}, ADMIN)

            # 1. The customer's DM, signed as X signs it, is routed to ann.
            body, headers = signed(customer_dm("1800000000000000001", "Where is my parcel?"))
            async with http.post(service.url("/webhooks/x"), data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            records = await routing.wait_for(
                lambda rs: any(
                    isinstance(ROUTING_DECODER.decode(r.value), ConversationAssigned) for r in rs
                )
            )
            events = [ROUTING_DECODER.decode(r.value) for r in records]
            assigned = next(e for e in events if isinstance(e, ConversationAssigned))
            assert assigned.agent_id == "ann"
            routed = next(e for e in events if isinstance(e, MessageRouted))
            assert routed.conversation_id == assigned.conversation_id

            # 2. ann answers with an image: uploaded to X, then sent as a signed v2 DM.
            reply = {
                "text": "It left today, here is the receipt.",
                "attachments": [{"url": f"{base}/files/receipt.png", "content_type": "image/png"}],
            }
            reply_id, _ = await sent_reply(service, conn, assigned.conversation_id, reply, ADMIN)
            assert fake.refused == []
            [upload] = fake.uploads.values()
            assert (upload.media_category, upload.content, upload.owner) == (
                "dm_image",
                PNG,
                TOKEN,
            )
            [sent] = fake.sent
            assert sent.participant_id == CUSTOMER
            assert sent.body == {
                "text": "It left today, here is the receipt.",
                "attachments": [{"media_id": upload.media_id}],
            }
            row = await conn.fetchrow(
                "SELECT provider_message_id, channel FROM outbound_messages WHERE outbound_id = $1",
                reply_id,
            )
            assert dict(row) == {"provider_message_id": sent.dm_event_id, "channel": "x"}

            # 3. X delivers our own send back: an echo of our app, dropped.
            echo = customer_dm(sent.dm_event_id, sent.body["text"])
            create = echo["direct_message_events"][0]["message_create"]
            create.update(
                sender_id=ACCOUNT, target={"recipient_id": CUSTOMER}, source_app_id=OUR_APP
            )
            body, headers = signed(echo)
            async with http.post(service.url("/webhooks/x"), data=body, headers=headers) as r:
                assert r.status == 200

            # 4. The customer reads it: the reply is read, and the routing topic says so.
            body, headers = signed(read_mark(sent.dm_event_id))
            async with http.post(service.url("/webhooks/x"), data=body, headers=headers) as r:
                assert r.status == 200
            await wait_until(
                lambda: conn.fetchval(
                    "SELECT status = 'read' FROM outbound_messages WHERE outbound_id = $1",
                    reply_id,
                ),
                what="the read mark recorded",
            )

            def read_reported(records: list[Any]) -> bool:
                return any(
                    isinstance(e, OutboundStatusChanged) and e.status is DeliveryStatus.READ
                    for e in (ROUTING_DECODER.decode(r.value) for r in records)
                )

            records = await routing.wait_for(read_reported)
            statuses = [
                e
                for e in (ROUTING_DECODER.decode(r.value) for r in records)
                if isinstance(e, OutboundStatusChanged)
            ]
            read = next(e for e in statuses if e.status is DeliveryStatus.READ)
            assert (read.channel.value, read.provider_message_id) == ("x", sent.dm_event_id)
            # The echo published nothing (our own app's send, not a person's answer).
            assert (
                service.metrics.registry.get_sample_value(
                    "switchboard_webhook_requests_total", {"provider": "x", "outcome": "ignored"}
                )
                == 1
            )
    finally:
        await conn.close()
        await provider.close()
