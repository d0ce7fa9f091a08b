"""Instagram through the real service, both ways: a customer's signed message with an
image comes in (``X-Hub-Signature-256``) and keeps Meta's own media URL; the agent answers
with text and an image through the API; the Instagram API stand-in on loopback
(``tools.bench.providers``, which refuses what Graph refuses) receives the text, then the
image as a Send API attachment by URL; the customer's signed ``messaging_seen`` event
marks the reply read (``outbound.status_changed``).

Shapes: https://developers.facebook.com/docs/instagram-platform/webhooks/examples (the
``messages`` and ``messaging_seen`` notifications) and
https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/messaging-api
(``POST /{ig-user-id}/messages`` with ``message.attachment``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec

from schemas import (
    INBOUND_DECODER,
    ROUTING_DECODER,
    Attachment,
    ConversationAssigned,
    DeliveryStatus,
    MessageReceived,
    MessageRouted,
    OutboundStatusChanged,
)
from switchboard.config import Config
from tests.conftest import Infrastructure
from tests.support import (
    Service,
    TopicReader,
    make_config,
    reply_sent,
    running_service,
    sent_reply,
    wait_until,
)
from tools.bench.providers import FakeProviders

SECRET = "e2e-meta-app-secret"
TOKEN = "e2e-instagram-access-token"
ENVIRON = {
    "META_APP_SECRET": SECRET,
    "INSTAGRAM_ACCESS_TOKEN": TOKEN,
    "SWITCHBOARD_ADMIN_TOKEN": "meta-admin",
}
ADMIN = {"Authorization": "Bearer meta-admin"}
IG_ID = "17841400000000000"
IGSID = "1254459154682919"
MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAw"
THEIR_IMAGE = (
    "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17916231716041254&signature=AbX"
)
OUR_IMAGE = "https://cdn.acme.example/size-chart.png"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _instagram(service: Service, *items: dict[str, Any]) -> None:
    """A signed Instagram notification of ``items`` (messaging events of the customer)."""
    await _notify(service, "instagram", IG_ID, IGSID, *items)


async def _notify(
    service: Service, kind: str, ours: str, customer: str, *items: dict[str, Any]
) -> None:
    """A signed notification (``object`` ``kind``) of the customer's messaging ``items``."""
    note = {
        "object": kind,
        "entry": [
            {
                "id": ours,
                "time": _now_ms(),
                "messaging": [
                    {
                        "sender": {"id": customer},
                        "recipient": {"id": ours},
                        "timestamp": _now_ms(),
                        **item,
                    }
                    for item in items
                ],
            }
        ],
    }
    await _signed(service, note)


async def _signed(service: Service, note: dict[str, Any]) -> None:
    """``note`` posted to the Meta webhook, signed with the app secret, and accepted."""
    body = msgspec.json.encode(note)
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with service.session.post(
        service.url("/webhooks/meta"),
        data=body,
        headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
    ) as resp:
        assert (resp.status, await resp.text()) == (200, "EVENT_RECEIVED")


def _decoded(records: list[Any], decoder: Any) -> list[Any]:
    return [decoder.decode(record.value) for record in records]


async def test_an_instagram_image_in_an_image_reply_out_and_the_customer_reading_it(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    fake, base = provider
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "meta": {
                    "instagram_api_base_url": base,
                    "instagram": [{"account_id": IG_ID, "domain": "acme"}],
                }
            }
        },
    )
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running_service(config, ENVIRON) as service,
            TopicReader(config, "conversations.inbound") as inbound,
            TopicReader(config, "conversations.routing") as routing,
        ):
            await service.online_agent("ann", {"instagram": 2}, ADMIN)

            # 1. The customer's message with an image keeps the URL Meta sent.
            image = {"type": "image", "payload": {"url": THEIR_IMAGE}}
            await _instagram(
                service, {"message": {"mid": MID, "text": "Which size?", "attachments": [image]}}
            )
            records = await inbound.wait_for(
                lambda rs: any(
                    isinstance(e, MessageReceived) for e in _decoded(rs, INBOUND_DECODER)
                )
            )
            [message] = [
                e for e in _decoded(records, INBOUND_DECODER) if isinstance(e, MessageReceived)
            ]
            assert (message.provider_message_id, message.text) == (MID, "Which size?")
            assert message.attachments == (Attachment(url=THEIR_IMAGE, content_type="image"),)
            records = await routing.wait_for(
                lambda rs: any(isinstance(e, MessageRouted) for e in _decoded(rs, ROUTING_DECODER))
            )
            events = _decoded(records, ROUTING_DECODER)
            routed = next(e for e in events if isinstance(e, MessageRouted))
            assert (routed.provider_message_id, routed.agent_id) == (MID, "ann")
            assigned = next(e for e in events if isinstance(e, ConversationAssigned))
            stored = await pool.fetchval(
                "SELECT attachments::text FROM messages WHERE domain = 'acme'"
                " AND conversation_id = $1 AND direction = 'inbound'",
                assigned.conversation_id,
            )
            assert msgspec.json.decode(stored, type=tuple[Attachment, ...]) == message.attachments

            # 2. ann answers with text and an image: two Send API messages, the text first.
            reply = {
                "text": "This chart shows the sizes.",
                "attachments": [{"url": OUR_IMAGE, "content_type": "image/png"}],
            }
            reply_id, sent_id = await sent_reply(
                service, pool, assigned.conversation_id, reply, ADMIN
            )
            assert [(r.status, r.path, r.auth) for r in fake.requests] == [
                (200, f"/v23.0/{IG_ID}/messages", f"Bearer {TOKEN}")
            ] * 2
            text, picture = (r.json for r in fake.requests)
            assert text == {
                "recipient": {"id": IGSID},
                "messaging_type": "RESPONSE",
                "message": {"text": "This chart shows the sizes."},
            }
            assert picture == {
                "recipient": {"id": IGSID},
                "messaging_type": "RESPONSE",
                "message": {
                    "attachment": {
                        "type": "image",
                        "payload": {"url": OUR_IMAGE, "is_reusable": False},
                    }
                },
            }
            assert sent_id == f"m_{1:024d}"  # the first message's id names the reply

            # 3. The customer sees it: Instagram's messaging_seen names the message read.
            await _instagram(service, {"read": {"mid": sent_id}})
            records = await routing.wait_for(
                lambda rs: any(
                    isinstance(e, OutboundStatusChanged) and e.status is DeliveryStatus.READ
                    for e in _decoded(rs, ROUTING_DECODER)
                )
            )
            [read] = [
                e
                for e in _decoded(records, ROUTING_DECODER)
                if isinstance(e, OutboundStatusChanged) and e.status is DeliveryStatus.READ
            ]
            assert (read.provider_message_id, read.channel.value) == (sent_id, "instagram")
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT status = 'read' FROM outbound_messages WHERE outbound_id = $1",
                    reply_id,
                ),
                what="the reply read",
            )
    finally:
        await pool.close()


PAGE_ID = "1234567890"
PSID = "6783125368444163"
PAGE_TOKEN = "e2e-page-access-token"


async def test_a_messenger_read_watermark_marks_the_replies_sent_before_it_read(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    """Messenger's ``read`` names no message, only a watermark: every reply of the
    conversation sent before it is read, a reply sent after it is not."""
    _fake, base = provider
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "meta": {
                    "graph_api_base_url": base,
                    "messenger": [{"page_id": PAGE_ID, "domain": "acme"}],
                }
            }
        },
    )
    environ = {**ENVIRON, "MESSENGER_PAGE_ACCESS_TOKEN": PAGE_TOKEN}
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running_service(config, environ) as service,
            TopicReader(config, "conversations.routing") as routing,
        ):
            await service.online_agent("ann", {"messenger": 2}, ADMIN)
            await _notify(
                service, "page", PAGE_ID, PSID, {"message": {"mid": "m_in1", "text": "Hello?"}}
            )
            records = await routing.wait_for(
                lambda rs: any(
                    isinstance(e, ConversationAssigned) for e in _decoded(rs, ROUTING_DECODER)
                )
            )
            assigned = next(
                e for e in _decoded(records, ROUTING_DECODER) if isinstance(e, ConversationAssigned)
            )
            reply_url = service.url(
                f"/v1/domains/acme/conversations/{assigned.conversation_id}/reply"
            )

            async def reply(text: str) -> str:
                async with service.session.post(reply_url, json={"text": text}, headers=ADMIN) as r:
                    assert r.status == 202, await r.text()
                    reply_id: str = (await r.json())["reply_id"]
                await reply_sent(pool, reply_id)
                return reply_id

            first, second = await reply("One moment."), await reply("Found it.")
            sent_at = await pool.fetchval(
                "SELECT max(created_at) FROM outbound_messages WHERE outbound_id = ANY($1)",
                [first, second],
            )
            watermark_ms = int(sent_at.timestamp() * 1000) + 1
            later = await reply("Anything else?")
            await pool.execute(  # sent after the watermark, whatever the clocks say
                "UPDATE outbound_messages SET created_at = created_at + interval '1 minute'"
                " WHERE outbound_id = $1",
                later,
            )

            await _notify(service, "page", PAGE_ID, PSID, {"read": {"watermark": watermark_ms}})
            records = await routing.wait_for(
                lambda rs: any(
                    isinstance(e, OutboundStatusChanged) and e.read_through is not None
                    for e in _decoded(rs, ROUTING_DECODER)
                )
            )
            [read] = [
                e
                for e in _decoded(records, ROUTING_DECODER)
                if isinstance(e, OutboundStatusChanged) and e.read_through is not None
            ]
            assert (read.conversation_id, read.status) == (
                assigned.conversation_id,
                DeliveryStatus.READ,
            )
            assert (read.provider_message_id, read.provider_status) == ("", "read")
            assert read.read_through == watermark_ms / 1000
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT count(*) = 2 FROM outbound_messages"
                    " WHERE outbound_id = ANY($1) AND status = 'read'",
                    [first, second],
                ),
                what="the two replies before the watermark read",
            )
            status = await pool.fetchval(
                "SELECT status FROM outbound_messages WHERE outbound_id = $1", later
            )
            assert status == "sent"
    finally:
        await pool.close()


WA_NUMBER_ID = "106540352242922"
WA_TOKEN = "e2e-whatsapp-access-token"
BSUID = "US.13491208655302741918"
METADATA = {"display_phone_number": "15550783881", "phone_number_id": WA_NUMBER_ID}


def _whatsapp_config(infrastructure: Infrastructure, database_url: str, graph: str) -> Config:
    """A WhatsApp number of ``acme``, whose phone channels share an identity, sending to
    the Graph stand-in at ``graph``."""
    whatsapp = {"phone_number_id": WA_NUMBER_ID, "domain": "acme", "access_token_env": "WA_TOKEN"}
    return make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "phone_identity_domains": ["acme"],
                "meta": {"graph_api_base_url": graph, "whatsapp": [whatsapp]},
            }
        },
    )


@contextlib.asynccontextmanager
async def _whatsapp_service(
    infrastructure: Infrastructure, database_url: str, graph: str
) -> AsyncIterator[tuple[Service, TopicReader, asyncpg.Pool]]:
    """The service with ``_whatsapp_config``, ann and bob online for WhatsApp, a reader of
    the routing topic and a pool on its database."""
    config = _whatsapp_config(infrastructure, database_url, graph)
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running_service(config, {**ENVIRON, "WA_TOKEN": WA_TOKEN}) as service,
            TopicReader(config, "conversations.routing") as routing,
        ):
            await service.online_agent("ann", {"whatsapp": 2}, ADMIN)
            await service.online_agent("bob", {"whatsapp": 2}, ADMIN)
            yield service, routing, pool
    finally:
        await pool.close()


async def _assignments(routing: TopicReader, count: int) -> list[ConversationAssigned]:
    """The first ``count`` assignments on the routing topic, once there."""

    def found(records: list[Any]) -> list[ConversationAssigned]:
        events = _decoded(records, ROUTING_DECODER)
        return [e for e in events if isinstance(e, ConversationAssigned)]

    return found(await routing.wait_for(lambda rs: len(found(rs)) >= count))


async def _whatsapp(service: Service, value: dict[str, Any]) -> None:
    """A signed WhatsApp Cloud API notification of one ``messages`` change."""
    note = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }
    await _signed(service, note)


async def test_a_whatsapp_user_who_hides_their_number_stays_the_same_customer_and_is_reached(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    """A user first writes with their number and their business-scoped user id
    (``from_user_id``): the id is linked to the number's customer. Having adopted a
    username, they write with the id alone: a conversation of the same customer, for the
    agent who served them; the reply goes to the id as ``recipient``; the delivered status,
    which names them by ``recipient_user_id`` alone, marks it delivered."""
    fake, base = provider
    async with _whatsapp_service(infrastructure, database_url, base) as (service, routing, pool):

        def text(message_id: str, body: str, **sender: str) -> dict[str, Any]:
            return {
                **sender,
                "id": message_id,
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": body},
            }

        # 1. With the number: the number's customer, the user id linked to it.
        await _whatsapp(
            service,
            {
                "messaging_product": "whatsapp",
                "metadata": METADATA,
                "contacts": [
                    {"profile": {"name": "Sheena"}, "wa_id": "16505551234", "user_id": BSUID}
                ],
                "messages": [
                    text("wamid.number-1", "Hello", **{"from": "16505551234"}, from_user_id=BSUID)
                ],
            },
        )
        [first] = await _assignments(routing, 1)
        assert first.customer_id == "phone:+16505551234"
        linked = await wait_until(
            lambda: pool.fetchrow(
                "SELECT customer_id, source FROM customer_identities"
                " WHERE domain = 'acme' AND identity = $1",
                f"whatsapp:{BSUID}",
            ),
            what="the user id linked",
        )
        assert tuple(linked) == ("phone:+16505551234", "provider")

        # 2. A username hides the number: the id alone, the same customer and agent.
        await _whatsapp(
            service,
            {
                "messaging_product": "whatsapp",
                "metadata": METADATA,
                "contacts": [
                    {"profile": {"name": "Sheena", "username": "@sheena"}, "user_id": BSUID}
                ],
                "messages": [
                    text("wamid.username-1", "Is my order on its way?", from_user_id=BSUID)
                ],
            },
        )
        assigned = (await _assignments(routing, 2))[1]
        assert (assigned.agent_id, assigned.customer_id) == (first.agent_id, first.customer_id)
        assert assigned.conversation_id != first.conversation_id

        reply_id, sent_id = await sent_reply(
            service, pool, assigned.conversation_id, {"text": "It arrives today."}, ADMIN
        )
        [request] = fake.requests
        assert (request.status, request.path, request.auth) == (
            200,
            f"/v23.0/{WA_NUMBER_ID}/messages",
            f"Bearer {WA_TOKEN}",
        )
        assert request.json["recipient"] == BSUID
        assert "to" not in request.json
        assert request.json["text"] == {"body": "It arrives today.", "preview_url": False}

        await _whatsapp(
            service,
            {
                "messaging_product": "whatsapp",
                "metadata": METADATA,
                "contacts": [{"user_id": BSUID}],
                "statuses": [
                    {
                        "id": sent_id,
                        "status": "delivered",
                        "timestamp": str(int(time.time())),
                        "recipient_user_id": BSUID,
                        "biz_opaque_callback_data": reply_id,
                    }
                ],
            },
        )
        await wait_until(
            lambda: pool.fetchval(
                "SELECT status = 'delivered' FROM outbound_messages WHERE outbound_id = $1",
                reply_id,
            ),
            what="the reply delivered",
        )


NEW_BSUID = "US.10000384916574829356"


async def test_a_whatsapp_user_who_changes_their_number_stays_the_same_customer(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    """A user writes from their number, then changes it: WhatsApp's ``system`` notice
    (``user_changed_number``) names the new number and the new business-scoped user id.
    Both are linked to the customer, so the first message from the new number is the same
    customer's, for the agent who served them, and the reply goes to the new number."""
    fake, base = provider
    async with _whatsapp_service(infrastructure, database_url, base) as (service, routing, pool):

        def message(message_id: str, body: str, number: str, user_id: str) -> dict[str, Any]:
            return {
                "messaging_product": "whatsapp",
                "metadata": METADATA,
                "contacts": [{"profile": {"name": "Sheena"}, "wa_id": number, "user_id": user_id}],
                "messages": [
                    {
                        "from": number,
                        "from_user_id": user_id,
                        "id": message_id,
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": body},
                    }
                ],
            }

        await _whatsapp(service, message("wamid.old-1", "Hello", "16505551234", BSUID))
        [first] = await _assignments(routing, 1)
        assert first.customer_id == "phone:+16505551234"

        await _whatsapp(
            service,
            {
                "messaging_product": "whatsapp",
                "metadata": METADATA,
                "messages": [
                    {
                        "from": "16505551234",
                        "id": "wamid.system-1",
                        "timestamp": str(int(time.time())),
                        "type": "system",
                        "system": {
                            "body": "User Sheena changed from 16505551234 to 12195555358",
                            "wa_id": "12195555358",
                            "user_id": NEW_BSUID,
                            "previous_user_id": BSUID,
                            "type": "user_changed_number",
                        },
                    }
                ],
            },
        )

        new_identities = ["phone:+12195555358", f"whatsapp:{NEW_BSUID}"]
        await wait_until(
            lambda: pool.fetchval(
                "SELECT count(*) = 2 FROM customer_identities"
                " WHERE domain = 'acme' AND identity = ANY($1::text[])",
                new_identities,
            ),
            what="the new number and id linked",
        )
        rows = await pool.fetch(
            "SELECT identity, customer_id, source FROM customer_identities"
            " WHERE domain = 'acme' AND identity = ANY($1::text[]) ORDER BY identity",
            new_identities,
        )
        assert [tuple(r) for r in rows] == [
            ("phone:+12195555358", "phone:+16505551234", "provider"),
            (f"whatsapp:{NEW_BSUID}", "phone:+16505551234", "provider"),
        ]
        # The notice is in the log `switchboard replay` reads.
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM agent_events WHERE domain = 'acme' AND type = $1",
                "identity.changed",
            )
            == 2
        )

        await _whatsapp(service, message("wamid.new-1", "It's me again", "12195555358", NEW_BSUID))
        assigned = (await _assignments(routing, 2))[1]
        assert (assigned.agent_id, assigned.customer_id) == (first.agent_id, first.customer_id)

        await sent_reply(service, pool, assigned.conversation_id, {"text": "Welcome back."}, ADMIN)
        [request] = fake.requests
        assert request.json["to"] == "12195555358"
