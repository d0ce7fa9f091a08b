"""A bot's replies on their way out: each channel's quick replies against the local provider
stand-ins of ``test_egress`` (request shapes as the providers document them), the web chat
frame that names the bot, and the ``outbound_messages`` row that records it.

The documented shapes:
- Messenger / Instagram Send API: ``message.quick_replies`` of ``{"content_type": "text",
  "title", "payload"}`` (at most 13, titles of at most 20 characters);
- WhatsApp Cloud API: ``"type": "interactive"`` with ``interactive.type`` ``button``, a
  ``body.text`` of at most 1,024 characters and at most 3 ``action.buttons`` of ``type``
  ``reply`` (``reply.id``, ``reply.title`` of at most 20 characters);
- Telegram ``sendMessage``: ``reply_markup`` a ``ReplyKeyboardMarkup`` (``keyboard``: rows
  of ``KeyboardButton`` ``{"text"}``, ``one_time_keyboard``, ``resize_keyboard``).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.egress import (
    Egress,
    InMemorySentLedger,
    RetryPolicy,
    SendOutcome,
    SendResult,
    SentLedger,
)
from adapters.egress_worker import PostgresSentLedger
from adapters.webchat import WebchatConfig, WebchatHub
from runtime.metrics import Metrics
from schemas import Attachment, Channel, ReplyRequested, TemplateUse
from tests.adapters.conftest import ENVIRON, frames_on_connect
from tests.adapters.test_egress import FakeProvider, pointed_at

PAGE, PSID = "1234567890", "6783125368444163"
IG_ACCOUNT, IGSID = "17841400000000000", "1254459154682919"
WA_NUMBER, WA_CUSTOMER = "106540352242922", "+16505551234"
TELEGRAM_BOT, TELEGRAM_CHAT = "acme_support_bot", "1111111"
SMS_NUMBER, SMS_CUSTOMER = "+14155550100", "+14155552671"
_numbers = itertools.count(1)


def bot_reply(channel: Channel, endpoint: str, customer: str, **kw: Any) -> ReplyRequested:
    """A bot's reply (``bot_id``, no agent) with quick replies unless told, each with an id
    of its own (egress sends an id once)."""
    fields: dict[str, Any] = {
        "id": f"out-bot-{next(_numbers)}",
        "domain": "acme",
        "occurred_at": 1_700_000_000.0,
        "conversation_id": "conv-1",
        "bot_id": "helper",
        "channel": channel,
        "endpoint": endpoint,
        "customer_address": customer,
        "text": "Did that solve it?",
        "quick_replies": ("Yes", "No"),
    }
    return ReplyRequested(**(fields | kw))


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    app = web.Application()
    app.router.add_post("/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def egress_to(base: str, session: aiohttp.ClientSession, ledger: SentLedger) -> Egress:
    return Egress(
        channels=pointed_at(base),
        environ=ENVIRON,
        session=session,
        metrics=Metrics(),
        ledger=ledger,
        retry=RetryPolicy(max_attempts=1),
    )


@pytest.fixture
async def egress(provider: tuple[FakeProvider, str]) -> AsyncIterator[Egress]:
    _, base = provider
    async with aiohttp.ClientSession() as session:
        yield egress_to(base, session, InMemorySentLedger())


async def sent(egress: Egress, fake: FakeProvider, reply: ReplyRequested) -> Any:
    """Send ``reply``; the request the provider received (JSON body, or form fields)."""
    fake.seen.clear()
    result = await egress.send(reply)
    assert result.outcome is SendOutcome.SENT, result.error
    [request] = fake.seen
    return request.json if request.json is not None else request.form


# -- Messenger and Instagram ---------------------------------------------------------------


async def test_messenger_and_instagram_send_quick_replies_whose_payload_is_the_title(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"recipient_id": PSID, "message_id": "m_sent"}
    expected = {
        "text": "Did that solve it?",
        "quick_replies": [
            {"content_type": "text", "title": "Yes", "payload": "Yes"},
            {"content_type": "text", "title": "No", "payload": "No"},
        ],
    }
    messenger = await sent(egress, fake, bot_reply(Channel.MESSENGER, PAGE, PSID))
    assert messenger == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": expected,
    }
    instagram = await sent(egress, fake, bot_reply(Channel.INSTAGRAM, IG_ACCOUNT, IGSID))
    assert instagram["message"] == expected
    assert fake.seen[0].path == f"/v23.0/{IG_ACCOUNT}/messages"


async def test_the_same_quick_reply_twice_is_offered_once(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"message_id": "m_sent"}
    reply = bot_reply(Channel.MESSENGER, PAGE, PSID, quick_replies=("Yes", "No", "Yes"))
    titles = [q["title"] for q in (await sent(egress, fake, reply))["message"]["quick_replies"]]
    assert titles == ["Yes", "No"]


async def test_thirteen_quick_replies_of_twenty_characters_go_to_messenger_as_they_are(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"message_id": "m_sent"}
    options = tuple(f"{n:02d} " + "x" * 17 for n in range(13))
    reply = bot_reply(Channel.MESSENGER, PAGE, PSID, quick_replies=options)
    quick = (await sent(egress, fake, reply))["message"]["quick_replies"]
    assert [q["title"] for q in quick] == list(options)
    assert {len(q["title"]) for q in quick} == {20}


# -- WhatsApp ------------------------------------------------------------------------------


async def test_whatsapp_gets_reply_buttons_for_up_to_three_short_answers(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"messages": [{"id": "wamid.OUT"}]}
    reply = bot_reply(
        Channel.WHATSAPP, WA_NUMBER, WA_CUSTOMER, quick_replies=("Yes", "No", "Agent")
    )
    request = await sent(egress, fake, reply)
    assert request == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Did that solve it?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "Yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "No", "title": "No"}},
                    {"type": "reply", "reply": {"id": "Agent", "title": "Agent"}},
                ]
            },
        },
        "biz_opaque_callback_data": reply.id,
    }


async def test_whatsapp_lists_the_answers_in_the_text_when_buttons_cannot_carry_them(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"messages": [{"id": "wamid.OUT"}]}
    four = bot_reply(
        Channel.WHATSAPP, WA_NUMBER, WA_CUSTOMER, quick_replies=("Red", "Green", "Blue", "Pink")
    )
    request = await sent(egress, fake, four)
    assert request["type"] == "text"
    assert request["text"]["body"] == "Did that solve it?\n\n1. Red\n2. Green\n3. Blue\n4. Pink"
    assert "interactive" not in request
    long_text = bot_reply(Channel.WHATSAPP, WA_NUMBER, WA_CUSTOMER, text="x" * 1025)
    request = await sent(egress, fake, long_text)
    assert request["type"] == "text"
    assert request["text"]["body"] == "x" * 1025 + "\n\n1. Yes\n2. No"
    fits = bot_reply(Channel.WHATSAPP, WA_NUMBER, WA_CUSTOMER, text="x" * 1024)
    assert (await sent(egress, fake, fits))["type"] == "interactive"


async def test_whatsapp_button_body_carries_the_attachment_links(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"messages": [{"id": "wamid.OUT"}]}
    reply = bot_reply(
        Channel.WHATSAPP,
        WA_NUMBER,
        WA_CUSTOMER,
        text="",
        attachments=(Attachment(url="https://cdn.example.com/manual.pdf"),),
    )
    request = await sent(egress, fake, reply)
    assert request["interactive"]["body"] == {"text": "https://cdn.example.com/manual.pdf"}


async def test_a_whatsapp_template_goes_without_the_answers(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"messages": [{"id": "wamid.OUT"}]}
    template = TemplateUse(name="follow_up", language="en-US", provider_template="follow_up_v2")
    request = await sent(
        egress, fake, bot_reply(Channel.WHATSAPP, WA_NUMBER, WA_CUSTOMER, template=template)
    )
    assert request["type"] == "template"
    assert "interactive" not in request
    assert "text" not in request


# -- Telegram ------------------------------------------------------------------------------


async def test_telegram_gets_a_one_time_keyboard(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"ok": True, "result": {"message_id": 77}}
    request = await sent(egress, fake, bot_reply(Channel.TELEGRAM, TELEGRAM_BOT, TELEGRAM_CHAT))
    assert request == {
        "chat_id": TELEGRAM_CHAT,
        "text": "Did that solve it?",
        "reply_markup": {
            "keyboard": [[{"text": "Yes"}], [{"text": "No"}]],
            "one_time_keyboard": True,
            "resize_keyboard": True,
        },
    }


# -- SMS and email: listed in the text -----------------------------------------------------


async def test_sms_twilio_whatsapp_and_email_list_the_answers_numbered(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"sid": "SM1", "id": "<1@acme.example>"}
    listed = "Did that solve it?\n\n1. Yes\n2. No"
    sms = await sent(egress, fake, bot_reply(Channel.SMS, SMS_NUMBER, SMS_CUSTOMER))
    assert sms["Body"] == [listed]
    twilio_whatsapp = await sent(
        egress, fake, bot_reply(Channel.WHATSAPP, SMS_NUMBER, SMS_CUSTOMER)
    )
    assert twilio_whatsapp["Body"] == [listed]
    mail = bot_reply(Channel.EMAIL, "support@acme.example", "ann@example.org", subject="Re: 1")
    assert (await sent(egress, fake, mail))["text"] == [listed]


# -- replies without quick replies are as before -------------------------------------------


async def test_a_reply_without_quick_replies_has_no_buttons_anywhere(
    egress: Egress, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"message_id": "m", "messages": [{"id": "w"}], "ok": True, "sid": "SM1"}
    plain = {"quick_replies": (), "text": "Hello"}
    messenger = await sent(egress, fake, bot_reply(Channel.MESSENGER, PAGE, PSID, **plain))
    assert messenger["message"] == {"text": "Hello"}
    whatsapp = await sent(
        egress, fake, bot_reply(Channel.WHATSAPP, WA_NUMBER, WA_CUSTOMER, **plain)
    )
    assert (whatsapp["type"], whatsapp["text"]["body"]) == ("text", "Hello")
    telegram = await sent(egress, fake, bot_reply(Channel.TELEGRAM, TELEGRAM_BOT, "1", **plain))
    assert telegram == {"chat_id": "1", "text": "Hello"}
    sms = await sent(egress, fake, bot_reply(Channel.SMS, SMS_NUMBER, SMS_CUSTOMER, **plain))
    assert sms["Body"] == ["Hello"]


# -- web chat: the frame names the bot -----------------------------------------------------


async def frames(*replies: ReplyRequested) -> list[dict[str, Any]]:
    """What a visitor's socket receives of ``replies`` (sent before it connected, so kept
    for it by the hub and delivered on connect)."""
    hub, config = WebchatHub(), WebchatConfig(enabled=True)
    for reply in replies:
        assert not await hub.deliver(reply, config)  # no socket yet: kept
    return await frames_on_connect(hub, config, "visitor-0001", len(replies))


async def test_the_web_chat_frame_names_the_bot_and_carries_its_quick_replies() -> None:
    bot = bot_reply(
        Channel.WEBCHAT,
        "webchat",
        "visitor-0001",
        id="out-bot-1",
        quick_replies=("Yes", "No", "Yes"),
    )
    agent = msgspec.structs.replace(
        bot, id="out-ann-1", bot_id=None, agent_id="ann", quick_replies=()
    )
    by_bot, by_agent = await frames(bot, agent)
    assert by_bot == {
        "type": "reply",
        "id": "out-bot-1",
        "conversation_id": "conv-1",
        "agent_id": None,
        "bot_id": "helper",
        "notice": None,
        "text": "Did that solve it?",
        "attachments": [],
        "quick_replies": ["Yes", "No"],
        "sent_at": 1_700_000_000.0,
    }
    assert (by_agent["agent_id"], by_agent["bot_id"], by_agent["quick_replies"]) == (
        "ann",
        None,
        [],
    )


# -- the ledger row names the bot ----------------------------------------------------------


async def test_the_ledger_row_of_a_bot_reply_names_the_bot_and_no_agent(
    database_url: str, provider: tuple[FakeProvider, str]
) -> None:
    fake, base = provider
    fake.ok_body = {"message_id": "m_sent"}
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        ledger = PostgresSentLedger(pool)
        bot = bot_reply(Channel.MESSENGER, PAGE, PSID, id="out-bot-1")
        agent = msgspec.structs.replace(bot, id="out-ann-1", bot_id=None, agent_id="ann")
        async with aiohttp.ClientSession() as session:
            egress = egress_to(base, session, ledger)
            for reply in (bot, agent):
                await ledger.prepare(reply)
                assert (await egress.send(reply)).outcome is SendOutcome.SENT
        rows = await pool.fetch(
            "SELECT outbound_id, agent_id, bot_id, status, provider_message_id"
            " FROM outbound_messages WHERE domain = 'acme' ORDER BY outbound_id"
        )
    finally:
        await pool.close()
    assert [tuple(row) for row in rows] == [
        ("out-ann-1", "ann", None, "sent", "m_sent"),
        ("out-bot-1", None, "helper", "sent", "m_sent"),
    ]


async def test_a_status_report_that_came_first_is_not_taken_back(database_url: str) -> None:
    """The provider's ``delivered`` may be applied between the send and the egress's record
    of it (a callback faster than our write): the row keeps ``delivered``; a send that
    failed before is recorded again when retried."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        ledger = PostgresSentLedger(pool)
        for outbound_id, before, after in (
            ("out-bot-fast", "delivered", "delivered"),
            ("out-bot-retried", "failed", "sent"),
        ):
            reply = bot_reply(Channel.MESSENGER, PAGE, PSID, id=outbound_id)
            await ledger.prepare(reply)
            await pool.execute(
                "UPDATE outbound_messages SET status = $1 WHERE outbound_id = $2",
                before,
                outbound_id,
            )
            await ledger.record(
                SendResult(
                    outbound_id=outbound_id,
                    domain="acme",
                    channel=Channel.MESSENGER,
                    outcome=SendOutcome.SENT,
                    provider_message_id="m_1",
                    attempts=1,
                )
            )
            status = await pool.fetchval(
                "SELECT status FROM outbound_messages WHERE outbound_id = $1", outbound_id
            )
            assert status == after, outbound_id
    finally:
        await pool.close()
