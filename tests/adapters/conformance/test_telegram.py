"""Telegram Bot API conformance: every documented update shape, the secret token, and the
calls that send a reply.

Documentation the fixtures (``tests/adapters/fixtures/telegram/``) come from:
- https://core.telegram.org/bots/webhooks#testing-your-bot-with-updates, the example
  updates, verbatim: ``message_text_untyped_chat`` (the guide's first, whose chat has no
  ``type``), ``message_text``, ``message_forwarded``,
  ``message_forwarded_channel``, ``message_reply``, ``edited_message``,
  ``message_entities``, ``message_audio``, ``message_voice``, ``message_document``,
  ``inline_query``, ``chosen_inline_result``, ``callback_query``;
- https://core.telegram.org/bots/api (Update, Message, PhotoSize, Video, VideoNote,
  Animation, Sticker, Location, Venue, Contact, MessageReactionUpdated,
  MessageReactionCountUpdated, ReactionType, ChatMemberUpdated), which gives no example:
  ``message_photo``, ``message_video``, ``message_video_note``, ``message_animation``
  (with the ``document`` twin the reference says is set beside it), ``message_sticker``,
  ``message_location``, ``message_venue`` (with its ``location`` twin),
  ``message_contact``, ``message_reaction``, ``message_reaction_count``, ``channel_post``,
  ``my_chat_member`` are built field by field from it, around the examples' chat;
- the same reference's business parts (Bot API 7.2: Update's ``business_connection``,
  ``business_message``, ``edited_business_message``, ``deleted_business_messages``;
  Message's ``business_connection_id`` and ``sender_business_bot``; BusinessConnection,
  BusinessMessagesDeleted), likewise built around the examples' chat:
  ``business_message`` (the customer's), ``business_message_from_business`` (the account
  owner's, from the Telegram app), ``business_message_by_bot`` (sent by the bot on the
  account's behalf), ``edited_business_message``, ``deleted_business_messages``,
  ``business_connection``.

Authenticity (https://core.telegram.org/bots/api#setwebhook): the ``secret_token`` given
to ``setWebhook`` comes back in ``X-Telegram-Bot-Api-Secret-Token``. Telegram signs
nothing, with no timestamp or nonce: there is no stale case to refuse, and a replayed
update is accepted as the same event (same id), for consumers to drop. Telegram ships no
validator (no official Python SDK).

Sending: https://core.telegram.org/bots/api#sending-files (by URL: photos 5 MB, other
files 20 MB; sendDocument by URL only GIF, PDF, ZIP), #sendphoto … #sendvenue (captions
of 1,024 characters), #replykeyboardmarkup; ``tests/fakes/telegram.py`` checks them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters import telegram, webhooks
from adapters.base import inbound_event_id
from adapters.egress import Egress, InMemorySentLedger, RetryPolicy, SendOutcome
from adapters.media import MediaRefused
from adapters.webhooks import WebhookContext, refuse_encoded_bodies
from runtime.metrics import Metrics
from schemas import (
    Attachment,
    Channel,
    Contact,
    HumanReplied,
    Location,
    MessageChange,
    MessageChanged,
    MessageReceived,
    ReplyRequested,
)
from tests.adapters.conftest import (
    CHANNELS,
    ENVIRON,
    NOW,
    Harness,
    MemoryNonces,
    RecordingPublisher,
)
from tests.fakes.telegram import FakeBotApi

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"
BOT = "acme_support_bot"
PATH = f"/webhooks/telegram/{BOT}"
SECRET = {telegram.SECRET_HEADER: ENVIRON["TELEGRAM_SECRET_TOKEN"]}
TOKEN = ENVIRON["TELEGRAM_BOT_TOKEN"]
CHAT = "1111111"
CONNECTION = "AQADxyz-Biz_Conn1"
BUSINESS = f"{BOT}/{CONNECTION}"
"""The endpoint of the business account's chats reached through the bot."""

#: Every fixture and what it becomes: a customer message, a change, or nothing.
OUTCOMES = {
    "message_text": "message",
    "message_text_untyped_chat": "message",
    "message_forwarded": "message",
    "message_forwarded_channel": "message",
    "message_reply": "message",
    "message_entities": "message",
    "message_audio": "message",
    "message_voice": "message",
    "message_document": "message",
    "message_photo": "message",
    "message_video": "message",
    "message_video_note": "message",
    "message_animation": "message",
    "message_sticker": "message",
    "message_location": "message",
    "message_venue": "message",
    "message_contact": "message",
    "edited_message": "changed",
    "message_reaction": "changed",
    "inline_query": "ignored",
    "chosen_inline_result": "ignored",
    "callback_query": "ignored",
    "message_reaction_count": "ignored",  # anonymous counts in a channel: nobody to route
    "channel_post": "ignored",
    "my_chat_member": "ignored",
    "business_message": "message",
    "business_message_from_business": "human",
    "business_message_by_bot": "ignored",  # our own replies come back so
    "edited_business_message": "changed",
    "deleted_business_messages": "changed",
    "business_connection": "ignored",
}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    publisher, metrics, nonces = RecordingPublisher(), Metrics(), MemoryNonces()
    ctx = WebhookContext(
        channels=CHANNELS,
        environ=ENVIRON,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        clock=lambda: NOW,
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    # The handler ``webhook_routes`` registers (the e2e test goes through all of them).
    app.router.add_post("/webhooks/telegram/{bot}", webhooks._telegram(ctx))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Harness(client, publisher, metrics, nonces)
    await client.close()


async def received(hook: Harness, name: str) -> MessageReceived:
    response = await hook.client.post(PATH, json=fixture(name), headers=SECRET)
    assert response.status == 200
    [message] = hook.publisher.messages
    return message


# --- The secret token ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({telegram.SECRET_HEADER: ""}, 401),
        ({telegram.SECRET_HEADER: "tg-secret_token-2"}, 403),
        ({telegram.SECRET_HEADER: "TG-SECRET_TOKEN-1"}, 403),
        ({telegram.SECRET_HEADER: ENVIRON["TELEGRAM_SECRET_TOKEN"] + "x"}, 403),
    ],
    ids=["missing", "empty", "another", "case", "longer"],
)
async def test_an_update_without_our_secret_token_is_refused_unread(
    hook: Harness, headers: dict[str, str], status: int
) -> None:
    response = await hook.client.post(PATH, data=b"{not json", headers=headers)
    assert response.status == status
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
    assert hook.signature_failures("telegram") == 1


async def test_another_bots_secret_is_refused(hook: Harness) -> None:
    # Both test bots read the same variable; a bot of another deployment is unknown.
    response = await hook.client.post(
        "/webhooks/telegram/another_bot", json=fixture("message_text"), headers=SECRET
    )
    assert response.status == 404


async def test_a_replayed_update_is_the_same_event(hook: Harness) -> None:
    # Nothing Telegram sends can tell a replay from its own retry: both are accepted, as
    # the same event, which consumers drop by its id.
    for _ in range(2):
        response = await hook.client.post(PATH, json=fixture("message_text"), headers=SECRET)
        assert response.status == 200
    first, second = hook.publisher.messages
    assert first.id == second.id == inbound_event_id("acme", "telegram", f"{BOT}:{CHAT}:1365")


# --- Every documented update shape -----------------------------------------------------


def test_every_fixture_has_an_expected_outcome() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(OUTCOMES)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_each_documented_update_is_routed_or_deliberately_ignored(
    hook: Harness, name: str
) -> None:
    response = await hook.client.post(PATH, json=fixture(name), headers=SECRET)
    assert response.status == 200
    assert hook.publisher.dead_letters == []
    events = hook.publisher.events
    match OUTCOMES[name]:
        case "message":
            assert [type(e) for e in events] == [MessageReceived]
        case "changed":
            assert events
            assert all(isinstance(e, MessageChanged) for e in events)
        case "human":
            assert [type(e) for e in events] == [HumanReplied]
        case _:
            assert events == []
            assert hook.count("telegram", "ignored") == 1


async def test_text_message(hook: Harness) -> None:
    message = await received(hook, "message_text")
    assert message.channel is Channel.TELEGRAM
    assert (message.endpoint, message.customer_address) == (BOT, CHAT)
    assert message.provider_message_id == f"{BOT}:{CHAT}:1365"
    assert (message.text, message.occurred_at) == ("/start", NOW)  # 2015 is not plausible


async def test_a_chat_without_its_type_is_told_by_its_id(hook: Harness) -> None:
    """A positive id is a user's private chat (routed), a negative one a group's (not
    routed while the bot does not take groups)."""
    message = await received(hook, "message_text_untyped_chat")
    assert (message.customer_address, message.text) == (CHAT, "/start")
    update = fixture("message_text_untyped_chat")
    update["message"]["chat"]["id"] = -1001182736542
    response = await hook.client.post(PATH, json=update, headers=SECRET)
    assert response.status == 200
    assert len(hook.publisher.messages) == 1
    assert hook.publisher.dead_letters == []


async def test_a_reply_names_the_message_it_answers(hook: Harness) -> None:
    message = await received(hook, "message_reply")
    assert message.in_reply_to == f"{BOT}:{CHAT}:1334"


async def test_a_photo_keeps_its_largest_size_and_every_reference(hook: Harness) -> None:
    message = await received(hook, "message_photo")
    [photo] = message.attachments
    assert photo == Attachment(
        url=f"tg-file:{BOT}/AgACAgQAAxkBAAIBZ2X-large",
        content_type="image/jpeg",
        size_bytes=98234,
        media_id="AgACAgQAAxkBAAIBZ2X-large",
        caption="The damage",
    )
    assert message.text == "The damage"


@pytest.mark.parametrize(
    ("name", "file_id", "content_type", "filename", "size"),
    [
        ("message_audio", "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX", "audio/mpeg", None, 3897500),
        ("message_voice", "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX", "audio/ogg", None, 23000),
        (
            "message_document",
            "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX",
            "application/pdf",
            "Testfile.pdf",
            536392,
        ),
        ("message_video", "BAACAgQAAxkBAAIBaGX-video", "video/mp4", "unboxing.mp4", 2483011),
        ("message_video_note", "DQACAgQAAxkBAAIBaWX-note", "video/mp4", None, 312877),
        ("message_animation", "CgACAgQAAxkBAAIBamX-gif", "video/mp4", "shrug.mp4", 140881),
        ("message_sticker", "CAACAgIAAxkBAAIBa2X-sticker", "image/webp", None, 28746),
    ],
)
async def test_each_kind_of_file_keeps_its_file_id_type_name_and_size(
    hook: Harness,
    name: str,
    file_id: str,
    content_type: str,
    filename: str | None,
    size: int,
) -> None:
    message = await received(hook, name)
    [file] = message.attachments  # an animation's ``document`` twin is the same file
    assert (file.url, file.media_id) == (f"tg-file:{BOT}/{file_id}", file_id)
    assert (file.content_type, file.filename, file.size_bytes) == (content_type, filename, size)


async def test_a_location_and_a_venue(hook: Harness) -> None:
    message = await received(hook, "message_location")
    assert message.location == Location(latitude=48.858093, longitude=2.294694)
    hook.publisher.batches.clear()
    venue = await received(hook, "message_venue")
    assert venue.location == Location(
        latitude=48.858093,
        longitude=2.294694,
        name="Eiffel Tower",
        address="Champ de Mars, 5 Av. Anatole France, 75007 Paris",
    )
    assert (venue.text, venue.attachments) == ("", ())


async def test_a_contact_with_its_vcard(hook: Harness) -> None:
    message = await received(hook, "message_contact")
    assert message.contacts == (
        Contact(
            name="Jean Dupont",
            phones=("+33612345678", "+33140000000"),
            emails=("jean.dupont@example.fr",),
            organization="Acme Paris",
        ),
    )


async def test_an_edit(hook: Harness) -> None:
    response = await hook.client.post(PATH, json=fixture("edited_message"), headers=SECRET)
    assert response.status == 200
    [edit] = hook.publisher.events
    assert isinstance(edit, MessageChanged)
    assert (edit.change, edit.text) == (MessageChange.EDITED, "Edited text")
    assert edit.provider_message_id == f"{BOT}:{CHAT}:1365"
    assert edit.change_id == f"{BOT}:10000"


async def test_a_reaction_changed_is_one_change_per_reaction(hook: Harness) -> None:
    response = await hook.client.post(PATH, json=fixture("message_reaction"), headers=SECRET)
    assert response.status == 200
    changes = hook.publisher.events
    assert [(c.change, c.reaction) for c in changes if isinstance(c, MessageChanged)] == [
        (MessageChange.UNREACTED, "\U0001f44d"),
        (MessageChange.REACTED, "\u2764"),
        (MessageChange.REACTED, "custom_emoji:5368324170671202286"),
    ]
    assert {c.provider_message_id for c in changes if isinstance(c, MessageChanged)} == {
        f"{BOT}:{CHAT}:1365"
    }
    assert len({c.id for c in changes}) == 3


# --- A business account's chats --------------------------------------------------------


async def post(hook: Harness, update: Any) -> None:
    response = await hook.client.post(PATH, json=update, headers=SECRET)
    assert response.status == 200


async def test_a_business_chat_is_its_own_conversation_of_the_same_customer(
    hook: Harness,
) -> None:
    await post(hook, fixture("message_text"))
    await post(hook, fixture("business_message"))
    with_bot, with_business = hook.publisher.messages
    assert (with_business.endpoint, with_business.customer_address) == (BUSINESS, CHAT)
    assert with_business.text == "Is my order shipped?"
    assert with_business.customer_id == with_bot.customer_id == f"telegram:{CHAT}"
    assert with_business.conversation_key == f"telegram:{BUSINESS}:{CHAT}"
    assert with_business.conversation_key != with_bot.conversation_key
    assert with_business.provider_message_id == f"{BUSINESS}:{CHAT}:3001"


async def test_a_business_chat_can_be_answered_for_24_hours(hook: Harness) -> None:
    """A business bot may answer only chats "that had incoming messages in the last 24
    hours" (``BusinessBotRights.can_reply``): the customer's message carries that window,
    from the message's time; the bot's own chats have none."""
    await post(hook, fixture("message_text"))
    update = fixture("business_message")
    update["business_message"]["date"] = int(NOW) - 600
    await post(hook, update)
    with_bot, with_business = hook.publisher.messages
    assert with_bot.reply_window_ends_at is None
    assert with_business.reply_window_ends_at == with_business.occurred_at + 24 * 3600
    assert with_business.occurred_at == NOW - 600


async def test_the_same_message_id_in_both_chats_is_two_messages(hook: Harness) -> None:
    # Telegram numbers a business chat's messages apart from the bot's own chat.
    update = fixture("business_message")
    update["business_message"]["message_id"] = 1365
    await post(hook, fixture("message_text"))
    await post(hook, update)
    with_bot, with_business = hook.publisher.messages
    assert with_bot.id != with_business.id


async def test_the_business_accounts_own_message_is_a_persons_reply(hook: Harness) -> None:
    await post(hook, fixture("business_message"))
    await post(hook, fixture("business_message_from_business"))
    [customers] = hook.publisher.messages
    [reply] = [e for e in hook.publisher.events if isinstance(e, HumanReplied)]
    assert (reply.endpoint, reply.customer_address) == (BUSINESS, CHAT)
    assert (reply.customer_id, reply.conversation_key) == (
        customers.customer_id,
        customers.conversation_key,
    )
    assert reply.provider_message_id == f"{BUSINESS}:{CHAT}:3002"


async def test_the_business_accounts_service_messages_are_not_routed(hook: Harness) -> None:
    update = fixture("business_message_from_business")
    del update["business_message"]["text"]
    update["business_message"]["pinned_message"] = {"message_id": 3001, "date": 1441647000}
    await post(hook, update)
    assert hook.publisher.events == []


async def test_an_edit_and_deletions_in_a_business_chat(hook: Harness) -> None:
    await post(hook, fixture("edited_business_message"))
    await post(hook, fixture("deleted_business_messages"))
    edit, *deletions = hook.publisher.events
    assert isinstance(edit, MessageChanged)
    assert (edit.change, edit.text) == (MessageChange.EDITED, "Is my order 1234 shipped?")
    assert (edit.endpoint, edit.provider_message_id) == (BUSINESS, f"{BUSINESS}:{CHAT}:3001")
    assert [
        (d.change, d.provider_message_id) for d in deletions if isinstance(d, MessageChanged)
    ] == [
        (MessageChange.DELETED, f"{BUSINESS}:{CHAT}:3001"),
        (MessageChange.DELETED, f"{BUSINESS}:{CHAT}:3002"),
    ]
    assert {d.conversation_key for d in deletions} == {f"telegram:{BUSINESS}:{CHAT}"}
    assert len({e.id for e in hook.publisher.events}) == 3


async def test_deletions_past_the_bound_are_not_routed(hook: Harness) -> None:
    update = fixture("deleted_business_messages")
    update["deleted_business_messages"]["message_ids"] = list(range(1, 5001))
    await post(hook, update)
    assert len(hook.publisher.events) == telegram.DELETED_IDS_MAX


@pytest.mark.parametrize(
    ("edit", "routed"),
    [
        (lambda m: m.update(business_connection_id="x" * telegram.BUSINESS_CONNECTION_MAX), True),
        (lambda m: m.pop("business_connection_id"), False),
        (lambda m: m.update(business_connection_id=""), False),
        (
            lambda m: m.update(business_connection_id="x" * (telegram.BUSINESS_CONNECTION_MAX + 1)),
            False,
        ),
        (lambda m: m.update(business_connection_id="conn\x00"), False),
    ],
    ids=["longest", "missing", "empty", "too-long", "nul"],
)
async def test_a_business_message_without_a_usable_connection_is_set_aside(
    hook: Harness, edit: Any, routed: bool
) -> None:
    update = fixture("business_message")
    edit(update["business_message"])
    await post(hook, update)
    assert len(hook.publisher.messages) == int(routed)
    assert len(hook.publisher.dead_letters) == int(not routed)


async def test_the_business_accounts_edits_are_not_routed(hook: Harness) -> None:
    update = fixture("edited_business_message")
    update["edited_business_message"]["from"] = fixture("business_message_from_business")[
        "business_message"
    ]["from"]
    await post(hook, update)
    assert hook.publisher.events == []
    assert hook.publisher.dead_letters == []


# --- Replies ---------------------------------------------------------------------------


@pytest.fixture
async def bot_api() -> AsyncIterator[tuple[FakeBotApi, Egress]]:
    fake = FakeBotApi(tokens=frozenset({TOKEN}), business_connections=frozenset({CONNECTION}))
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    channels = msgspec.structs.replace(
        CHANNELS, telegram=msgspec.structs.replace(CHANNELS.telegram, api_base_url=base)
    )

    async def no_wait(_seconds: float) -> None:
        return None

    async with aiohttp.ClientSession() as session:
        yield (
            fake,
            Egress(
                channels=channels,
                environ=ENVIRON,
                session=session,
                metrics=Metrics(),
                ledger=InMemorySentLedger(),
                retry=RetryPolicy(max_attempts=2, base_delay=0.01, jitter=0.0),
                sleep=no_wait,
            ),
        )
    await server.close()


def reply(**kw: Any) -> ReplyRequested:
    return ReplyRequested(
        id=kw.pop("id", "out-tg-1"),
        domain="acme",
        occurred_at=NOW,
        conversation_id="conv-1",
        agent_id="ann",
        channel=Channel.TELEGRAM,
        endpoint=kw.pop("endpoint", BOT),
        customer_address=CHAT,
        **kw,
    )


PHOTO = Attachment(url="https://cdn.example.com/label.jpg", content_type="image/jpeg")


async def test_a_photo_with_its_caption_is_one_call(
    bot_api: tuple[FakeBotApi, Egress],
) -> None:
    fake, egress = bot_api
    result = await egress.send(reply(text="Your label", attachments=(PHOTO,)))
    assert (result.outcome, result.attempts) == (SendOutcome.SENT, 1)
    [call] = fake.calls
    assert call.method == "sendPhoto"
    assert call.params == {
        "chat_id": CHAT,
        "photo": "https://cdn.example.com/label.jpg",
        "caption": "Your label",
    }
    assert result.provider_message_id == f"{BOT}:{CHAT}:{call.message_id}"


async def test_each_kind_goes_through_its_method(bot_api: tuple[FakeBotApi, Egress]) -> None:
    fake, egress = bot_api
    files = (
        Attachment(url="https://cdn.example.com/a.gif"),
        Attachment(url="https://cdn.example.com/a.mp4"),
        Attachment(url="https://cdn.example.com/a.ogg", content_type="audio/ogg"),
        Attachment(url="https://cdn.example.com/a.mp3"),
        Attachment(url="https://cdn.example.com/a.pdf"),
        Attachment(url=f"tg-file:{BOT}/BQACAgQAAxkB-doc", content_type="application/zip"),
    )
    result = await egress.send(reply(attachments=files))
    assert result.outcome is SendOutcome.SENT
    assert [(c.method, c.params) for c in fake.calls] == [
        ("sendAnimation", {"chat_id": CHAT, "animation": "https://cdn.example.com/a.gif"}),
        ("sendVideo", {"chat_id": CHAT, "video": "https://cdn.example.com/a.mp4"}),
        ("sendVoice", {"chat_id": CHAT, "voice": "https://cdn.example.com/a.ogg"}),
        ("sendAudio", {"chat_id": CHAT, "audio": "https://cdn.example.com/a.mp3"}),
        ("sendDocument", {"chat_id": CHAT, "document": "https://cdn.example.com/a.pdf"}),
        # A file this bot received goes back by its file_id.
        ("sendDocument", {"chat_id": CHAT, "document": "BQACAgQAAxkB-doc"}),
    ]
    assert result.provider_message_id == f"{BOT}:{CHAT}:{fake.calls[0].message_id}"
    assert result.attempts == 6


async def test_text_longer_than_a_caption_goes_first_on_its_own(
    bot_api: tuple[FakeBotApi, Egress],
) -> None:
    fake, egress = bot_api
    text = "\U0001f4e6" * 513  # 513 characters, 1,026 UTF-16 code units
    result = await egress.send(reply(text=text, attachments=(PHOTO,), quick_replies=("OK",)))
    assert result.outcome is SendOutcome.SENT
    first, second = fake.calls
    assert (first.method, first.params["text"]) == ("sendMessage", text)
    assert first.params["reply_markup"]["keyboard"] == [[{"text": "OK"}]]
    assert (second.method, "caption" in second.params) == ("sendPhoto", False)


async def test_a_place_after_the_text(bot_api: tuple[FakeBotApi, Egress]) -> None:
    fake, egress = bot_api
    shop = Location(latitude=48.8584, longitude=2.2945, name="Acme Paris", address="5 Av. A")
    await egress.send(reply(text="Come by", location=shop))
    await egress.send(reply(id="out-tg-2", location=Location(latitude=1.5, longitude=-2.25)))
    assert [(c.method, c.params) for c in fake.calls] == [
        ("sendMessage", {"chat_id": CHAT, "text": "Come by"}),
        (
            "sendVenue",
            {
                "chat_id": CHAT,
                "latitude": 48.8584,
                "longitude": 2.2945,
                "title": "Acme Paris",
                "address": "5 Av. A",
            },
        ),
        ("sendLocation", {"chat_id": CHAT, "latitude": 1.5, "longitude": -2.25}),
    ]


@pytest.mark.parametrize(
    ("attachments", "reason"),
    [
        ((Attachment(url="https://x.example/a.txt"),), "Telegram does not send text/plain"),
        (
            (Attachment(url="https://x.example/a.jpg", size_bytes=5 * 1024 * 1024 + 1),),
            "over Telegram's 5242880 for photo",
        ),
        ((PHOTO,) * 11, "at most 10 attachment(s)"),
        ((Attachment(url="https://x.example/file"),), "media type unknown"),
    ],
    ids=["type", "size", "count", "unknown"],
)
async def test_media_beyond_telegrams_limits_fail_before_any_call(
    bot_api: tuple[FakeBotApi, Egress], attachments: tuple[Attachment, ...], reason: str
) -> None:
    fake, egress = bot_api
    result = await egress.send(reply(text="here", attachments=attachments))
    assert result.outcome is SendOutcome.FAILED
    assert reason in (result.error or "")
    assert fake.calls == []
    assert fake.refused == []
    with pytest.raises(MediaRefused):
        telegram.reply_calls(BOT, CHAT, "here", attachments, None, ())


@pytest.mark.parametrize(("word", "parts"), [("answer ", 2), ("\U0001f600 ", 3)])
async def test_a_text_longer_than_a_message_goes_on_in_further_messages(
    bot_api: tuple[FakeBotApi, Egress], word: str, parts: int
) -> None:
    """A bot's answer may be longer than Telegram's 4,096 characters (UTF-16 code units:
    an emoji counts two), which refuses it whole ("message is too long")."""
    fake, egress = bot_api
    text = word * (5000 // len(word))
    result = await egress.send(reply(text=text, quick_replies=("OK",)))
    assert result.outcome is SendOutcome.SENT, result.error
    assert [call.method for call in fake.calls] == ["sendMessage"] * parts
    assert " ".join(call.params["text"] for call in fake.calls).split() == text.split()
    assert "reply_markup" in fake.calls[0].params
    assert result.provider_message_id == f"{BOT}:{CHAT}:{fake.calls[0].message_id}"


async def test_a_later_call_refused_fails_the_send_in_part(
    bot_api: tuple[FakeBotApi, Egress],
) -> None:
    fake, egress = bot_api
    pdf = Attachment(url="ftp://files.example/a.pdf")  # Telegram fetches http(s) only
    result = await egress.send(reply(text="two files", attachments=(PHOTO, pdf)))
    assert result.outcome is SendOutcome.FAILED
    assert result.error == "sent in part: Bad Request: wrong remote file identifier specified"
    [photo] = fake.calls
    assert result.provider_message_id == f"{BOT}:{CHAT}:{photo.message_id}"


async def test_a_reply_in_a_business_chat_goes_through_its_connection(
    bot_api: tuple[FakeBotApi, Egress],
) -> None:
    fake, egress = bot_api
    result = await egress.send(
        reply(endpoint=BUSINESS, text="Shipped today", attachments=(PHOTO,), quick_replies=("OK",))
    )
    assert (result.outcome, result.attempts) == (SendOutcome.SENT, 1)
    [call] = fake.calls
    assert (call.token, call.method) == (TOKEN, "sendPhoto")
    assert call.params["business_connection_id"] == CONNECTION
    assert (call.params["chat_id"], call.params["caption"]) == (CHAT, "Shipped today")
    assert result.provider_message_id == f"{BUSINESS}:{CHAT}:{call.message_id}"
    place = Location(latitude=1.5, longitude=-2.25)
    long_text = "a" * 1100  # longer than a caption: a message of its own
    await egress.send(
        reply(
            id="out-tg-2", endpoint=BUSINESS, text=long_text, attachments=(PHOTO,), location=place
        )
    )
    assert [(c.method, c.params["business_connection_id"]) for c in fake.calls[1:]] == [
        ("sendMessage", CONNECTION),
        ("sendPhoto", CONNECTION),
        ("sendLocation", CONNECTION),
    ]


async def test_a_reply_through_a_connection_gone_fails(
    bot_api: tuple[FakeBotApi, Egress],
) -> None:
    fake, egress = bot_api
    result = await egress.send(reply(endpoint=f"{BOT}/AQAD-disconnected", text="hello"))
    assert result.outcome is SendOutcome.FAILED
    assert result.error == "Bad Request: business connection not found"
    assert fake.calls == []


async def test_a_reply_from_an_unknown_bots_business_chat_is_unroutable(
    bot_api: tuple[FakeBotApi, Egress],
) -> None:
    fake, egress = bot_api
    result = await egress.send(reply(endpoint=f"another_bot/{CONNECTION}", text="hello"))
    assert result.outcome is SendOutcome.FAILED
    assert fake.calls == []


def test_the_caption_limit_counts_utf16_code_units() -> None:
    assert telegram.caption_fits("a" * 1024)
    assert not telegram.caption_fits("a" * 1025)
    assert not telegram.caption_fits("\U0001f4e6" * 513)
