"""Telegram end to end: a photo in through the bot's webhook (secret token) → routed to an
agent, the photo's ``file_id`` kept with the message → the agent's reply with a photo →
``sendPhoto`` by URL with its caption, received by a stand-in of the Bot API
(``tests.fakes.telegram``: it checks the bot token, the method and the parameters as
the Bot API documents them). Telegram reports no delivery status to bots: the reply is
``sent`` once the API accepted it."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
from aiohttp.test_utils import TestServer

from router.shell.replay import load_recording
from schemas import (
    INBOUND_DECODER,
    ROUTING_DECODER,
    ConversationAssigned,
    ConversationReplyWindowClosed,
    MessageReceived,
    MessageRouted,
)
from switchboard.config import Config
from tests.conftest import Infrastructure
from tests.fakes.telegram import FakeBotApi
from tests.support import (
    Service,
    TopicReader,
    make_config,
    running_service,
    sent_reply,
    wait_until,
)

BOT = "acme_support_bot"
TOKEN = "7000000001:AAE2e-telegram-bot-token"
SECRET = "e2e-telegram-secret_token"
CHAT = 1111111
ADMIN = {"Authorization": "Bearer telegram-admin"}
FILE_ID = "AgACAgQAAxkBAAIBZ2X-large"
ENVIRON = {
    "TELEGRAM_SECRET_TOKEN": SECRET,
    "TELEGRAM_BOT_TOKEN": TOKEN,
    "SWITCHBOARD_ADMIN_TOKEN": "telegram-admin",
}


@contextlib.asynccontextmanager
async def _telegram_config(
    infrastructure: Infrastructure, database_url: str, fake: FakeBotApi
) -> AsyncIterator[Config]:
    """The configuration of ``BOT`` for ``acme``, sending to ``fake`` served on loopback
    while it is open."""
    bot_api = TestServer(fake.app(), host="127.0.0.1")
    await bot_api.start_server()
    try:
        yield make_config(
            infrastructure.bootstrap_servers,
            database_url,
            {
                "channels": {
                    "telegram": {
                        "api_base_url": str(bot_api.make_url("")).rstrip("/"),
                        "bots": [{"name": BOT, "domain": "acme"}],
                    }
                }
            },
        )
    finally:
        await bot_api.close()


def _photo_update() -> dict[str, Any]:
    """A customer's photo, as the Bot API reference describes ``Message.photo``."""
    return {
        "update_id": 912000001,
        "message": {
            "message_id": 1366,
            "date": int(time.time()),
            "chat": {"id": CHAT, "type": "private", "first_name": "Ann"},
            "from": {"id": CHAT, "is_bot": False, "first_name": "Ann"},
            "caption": "The box arrived like this",
            "photo": [
                {
                    "file_id": "AgACAgQAAxkBAAIBZ2X-small",
                    "file_unique_id": "AQADsmall",
                    "width": 90,
                    "height": 67,
                    "file_size": 1270,
                },
                {
                    "file_id": FILE_ID,
                    "file_unique_id": "AQADlarge",
                    "width": 1280,
                    "height": 960,
                    "file_size": 98234,
                },
            ],
        },
    }


async def test_a_photo_in_and_a_photo_reply_out(
    infrastructure: Infrastructure, database_url: str
) -> None:
    fake = FakeBotApi(tokens=frozenset({TOKEN}))
    async with (
        _telegram_config(infrastructure, database_url, fake) as config,
        running_service(config, ENVIRON) as service,
        TopicReader(config, "conversations.routing") as routing,
        TopicReader(config, "conversations.inbound") as inbound,
    ):
        await service.online_agent("ann", {"telegram": 2}, ADMIN)
        conn = await asyncpg.connect(database_url)
        try:
            await _post_update(service, _photo_update())

            async def assigned() -> tuple[ConversationAssigned, MessageRouted] | None:
                events = [ROUTING_DECODER.decode(r.value) for r in await routing.poll()]
                found = [e for e in events if isinstance(e, ConversationAssigned)]
                routed = [e for e in events if isinstance(e, MessageRouted)]
                return (found[0], routed[0]) if found and routed else None

            assignment, routed = await wait_until(assigned, what="assignment")
            assert assignment.agent_id == "ann"
            assert routed.provider_message_id == f"{BOT}:{CHAT}:1366"

            # The message the routing event names keeps Telegram's file_id beside ours.
            records = await inbound.wait_for(lambda rs: len(rs) >= 1)
            [message] = [INBOUND_DECODER.decode(r.value) for r in records]
            assert isinstance(message, MessageReceived)
            assert message.id == routed.message_id
            [photo] = message.attachments
            assert (photo.url, photo.media_id) == (f"tg-file:{BOT}/{FILE_ID}", FILE_ID)
            assert photo.caption == "The box arrived like this"
            stored = await conn.fetchval(
                "SELECT attachments::text FROM messages WHERE message_id = $1",
                routed.message_id,
            )
            assert msgspec.json.decode(stored)[0]["media_id"] == FILE_ID

            label = {"url": "https://cdn.example.com/return-label.png"}
            reply = {"text": "Sorry! Here is your return label.", "attachments": [label]}
            _, sent_id = await sent_reply(service, conn, assignment.conversation_id, reply, ADMIN)
            assert fake.refused == []
            [call] = fake.calls
            assert (call.token, call.method) == (TOKEN, "sendPhoto")
            assert call.params == {
                "chat_id": str(CHAT),
                "photo": "https://cdn.example.com/return-label.png",
                "caption": "Sorry! Here is your return label.",
            }
            assert sent_id == f"{BOT}:{CHAT}:{call.message_id}"
        finally:
            await conn.close()


async def _post_update(service: Service, update: dict[str, Any]) -> None:
    """``update`` to ``BOT``'s webhook, as Telegram sends it (with the secret token)."""
    async with service.session.post(
        service.url(f"/webhooks/telegram/{BOT}"),
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    ) as r:
        assert r.status == 200, await r.text()


CONNECTION = "AQADxyz-Biz_Conn1"
BUSINESS = f"{BOT}/{CONNECTION}"


def _text_update(
    update_id: int, kind: str, message_id: int, text: str, date: int | None = None
) -> dict[str, Any]:
    """A customer's text, in the bot's own chat (``message``) or in the chat of the
    business account the bot is connected to (``business_message``, Bot API 7.2), sent
    at ``date`` (now when None)."""
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()) if date is None else date,
        "chat": {"id": CHAT, "type": "private", "first_name": "Ann"},
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ann"},
        "text": text,
    }
    if kind == "business_message":
        message["business_connection_id"] = CONNECTION
    return {"update_id": update_id, kind: message}


async def test_a_business_accounts_chat_is_routed_and_answered_through_its_connection(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """The customer wrote to the bot before; their message to the business account the
    bot is connected to is a conversation of its own, assigned to the agent who served
    them (of two online), and the reply goes out on the account's behalf."""
    fake = FakeBotApi(tokens=frozenset({TOKEN}), business_connections=frozenset({CONNECTION}))
    async with (
        _telegram_config(infrastructure, database_url, fake) as config,
        running_service(config, ENVIRON) as service,
        TopicReader(config, "conversations.routing") as routing,
    ):
        await service.online_agent("ann", {"telegram": 2}, ADMIN)
        await service.online_agent("bob", {"telegram": 2}, ADMIN)

        async def assignments(n: int) -> list[ConversationAssigned] | None:
            events = [ROUTING_DECODER.decode(r.value) for r in await routing.poll()]
            found = [e for e in events if isinstance(e, ConversationAssigned)]
            return found if len(found) >= n else None

        await _post_update(service, _text_update(912000010, "message", 1400, "hello bot"))
        [with_bot] = await wait_until(lambda: assignments(1), what="the bot chat's")
        await _post_update(service, _text_update(912000011, "business_message", 1400, "hello shop"))
        _, with_business = await wait_until(lambda: assignments(2), what="the business chat's")
        assert with_business.conversation_id != with_bot.conversation_id
        assert with_business.agent_id == with_bot.agent_id
        assert with_business.preferred_agent_id == with_bot.agent_id
        assert with_business.customer_id == with_bot.customer_id == f"telegram:{CHAT}"

        conn = await asyncpg.connect(database_url)
        try:
            endpoint = await conn.fetchval(
                "SELECT record->>'endpoint' FROM conversations WHERE conversation_id = $1",
                with_business.conversation_id,
            )
            assert endpoint == BUSINESS
            _, sent_id = await sent_reply(
                service,
                conn,
                with_business.conversation_id,
                {"text": "Your parcel left today."},
                ADMIN,
            )
            assert fake.refused == []
            [call] = fake.calls
            assert (call.method, call.params) == (
                "sendMessage",
                {
                    "chat_id": str(CHAT),
                    "text": "Your parcel left today.",
                    "business_connection_id": CONNECTION,
                },
            )
            assert sent_id == f"{BUSINESS}:{CHAT}:{call.message_id}"
        finally:
            await conn.close()


async def test_a_business_chat_past_telegrams_24_hours_takes_no_reply(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """A business bot may answer only chats with an incoming message in the last 24 hours.
    A business chat's message written 24 hours less a few seconds ago: its window closes
    (``conversation.reply_window_closed``, with its owner) and a reply is refused, 409,
    before any call to Telegram; the bot's own chat, as old, is still answered."""
    fake = FakeBotApi(tokens=frozenset({TOKEN}), business_connections=frozenset({CONNECTION}))
    async with (
        _telegram_config(infrastructure, database_url, fake) as config,
        running_service(config, ENVIRON) as service,
        TopicReader(config, "conversations.routing") as routing,
    ):
        http = service.session
        await service.online_agent("ann", {"telegram": 2}, ADMIN)
        sent = int(time.time()) - 24 * 3600 + 8
        for update in (
            _text_update(912000020, "business_message", 1500, "still there?", sent),
            _text_update(912000021, "message", 1501, "and here?", sent),
        ):
            await _post_update(service, update)
        events: list[Any] = []

        async def closed() -> ConversationReplyWindowClosed | None:
            events.extend(ROUTING_DECODER.decode(r.value) for r in await routing.poll())
            found = [e for e in events if isinstance(e, ConversationReplyWindowClosed)]
            return found[0] if found else None

        window = await wait_until(closed, timeout=30, what="the business chat's window closed")
        assigned = {e.conversation_id: e for e in events if isinstance(e, ConversationAssigned)}
        business = assigned[window.conversation_id]
        [own_chat] = [c for c in assigned if c != window.conversation_id]
        assert (window.reply_window_ends_at, window.agent_id) == (sent + 24 * 3600.0, "ann")
        assert business.agent_id == "ann"

        reply = service.url(f"/v1/domains/acme/conversations/{window.conversation_id}/reply")
        async with http.post(reply, json={"text": "Sorry for the wait."}, headers=ADMIN) as r:
            assert (r.status, await r.json()) == (409, {"error": "reply_window_closed"})
        conn = await asyncpg.connect(database_url)
        try:
            await sent_reply(service, conn, own_chat, {"text": "Here we are."}, ADMIN)
            # A replay (``switchboard replay``) gives the business chat's messages the window.
            recording = await load_recording(
                conn, "acme", dt.datetime.fromtimestamp(0, dt.UTC), dt.datetime.now(dt.UTC)
            )
        finally:
            await conn.close()
        replayed = {
            r.event.conversation_key: r.event.reply_window_ends_at
            for r in recording
            if isinstance(r.event, MessageReceived)
        }
        assert replayed == {
            f"telegram:{BUSINESS}:{CHAT}": sent + 24 * 3600.0,
            f"telegram:{BOT}:{CHAT}": None,
        }
        [call] = fake.calls
        assert (call.method, call.params["text"]) == ("sendMessage", "Here we are.")
        assert "business_connection_id" not in call.params
