"""Telegram webhook: Bot API ``Update`` objects with the secret-token header."""

from __future__ import annotations

from typing import Any

from adapters.base import inbound_event_id
from adapters.telegram import SECRET_HEADER
from schemas import Channel, MessageChange, MessageChanged
from tests.adapters.conftest import ENVIRON, Harness

PATH = "/webhooks/telegram/acme_support_bot"
SECRET = {SECRET_HEADER: ENVIRON["TELEGRAM_SECRET_TOKEN"]}
CUSTOMER = {"id": 1111111, "is_bot": False, "first_name": "Ann", "language_code": "en"}
PRIVATE_CHAT = {"id": 1111111, "first_name": "Ann", "type": "private"}


def update(kind: str = "message", **message: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": 42,
        "from": CUSTOMER,
        "chat": PRIVATE_CHAT,
        "date": 1699999532,
        "text": "/start",
    }
    body.update(message)
    return {"update_id": 10000, kind: body}


async def test_private_text_message(hook: Harness) -> None:
    resp = await hook.client.post(PATH, json=update(text="my parcel is late"), headers=SECRET)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.channel is Channel.TELEGRAM
    assert msg.domain == "acme"
    assert msg.endpoint == "acme_support_bot"
    assert msg.customer_address == "1111111"
    assert msg.customer_id == "telegram:1111111"
    assert msg.conversation_key == "telegram:acme_support_bot:1111111"
    assert msg.text == "my parcel is late"
    assert msg.occurred_at == 1699999532
    assert msg.id == inbound_event_id("acme", "telegram", "acme_support_bot:1111111:42")


async def test_photo_and_document_become_file_references(hook: Harness) -> None:
    photo = [
        {
            "file_id": "AgAD-small",
            "file_unique_id": "s",
            "width": 90,
            "height": 67,
            "file_size": 1200,
        },
        {
            "file_id": "AgAD-large",
            "file_unique_id": "l",
            "width": 1280,
            "height": 960,
            "file_size": 98000,
        },
    ]
    payload = update(text=None, photo=photo, caption="the damage")
    del payload["message"]["text"]
    resp = await hook.client.post(PATH, json=payload, headers=SECRET)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.text == "the damage"
    [att] = msg.attachments
    assert att.url == "tg-file:acme_support_bot/AgAD-large"
    assert (att.media_id, att.caption) == ("AgAD-large", "the damage")
    assert att.size_bytes == 98000

    doc = {
        "file_id": "BQAD-doc",
        "file_unique_id": "d",
        "file_name": "invoice.pdf",
        "mime_type": "application/pdf",
        "file_size": 5000,
    }
    payload = update(message_id=43, document=doc)
    del payload["message"]["text"]
    resp = await hook.client.post(PATH, json=payload, headers=SECRET)
    assert resp.status == 200
    att = hook.publisher.messages[1].attachments[0]
    assert (att.filename, att.content_type) == ("invoice.pdf", "application/pdf")


async def test_an_edit_is_a_change_of_the_message(hook: Harness) -> None:
    edit = update("edited_message", text="my parcel is very late", edit_date=1699999600)
    resp = await hook.client.post(PATH, json=edit, headers=SECRET)
    assert resp.status == 200
    [change] = hook.publisher.events
    assert isinstance(change, MessageChanged)
    assert change.change is MessageChange.EDITED
    assert change.provider_message_id == "acme_support_bot:1111111:42"
    assert change.conversation_key == "telegram:acme_support_bot:1111111"
    assert (change.text, change.occurred_at) == ("my parcel is very late", 1699999600)


async def test_channel_posts_callbacks_groups_and_bots_are_not_routed(hook: Harness) -> None:
    group = {"id": -100222, "title": "Friends", "type": "group"}
    payloads = [
        update("edited_message", chat=group, edit_date=1441645600),
        update("edited_message", text=None, location={"latitude": 1.0, "longitude": 2.0}),
        update("channel_post", chat={"id": -100333, "title": "News", "type": "channel"}),
        {"update_id": 10001, "callback_query": {"id": "4382", "from": CUSTOMER, "data": "x"}},
        update(chat=group),
        update(**{"from": {"id": 5, "is_bot": True, "first_name": "OtherBot"}}),  # type: ignore[arg-type]  # "from" is a keyword
        update(text=None),  # a service message (e.g. a pinned message) has no text
    ]
    for payload in payloads:
        resp = await hook.client.post(PATH, json=payload, headers=SECRET)
        assert resp.status == 200, payload
    assert hook.publisher.batches == []
    assert hook.count("telegram", "ignored") == len(payloads)


async def test_a_bot_that_allows_groups_routes_group_messages(hook: Harness) -> None:
    group = {"id": -100222, "title": "Friends", "type": "supergroup"}
    resp = await hook.client.post(
        "/webhooks/telegram/groups_bot", json=update(chat=group), headers=SECRET
    )
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.customer_address == "-100222"


async def test_bad_secret_403_missing_401(hook: Harness) -> None:
    resp = await hook.client.post(PATH, json=update(), headers={SECRET_HEADER: "wrong"})
    assert resp.status == 403
    resp = await hook.client.post(PATH, json=update())
    assert resp.status == 401
    assert hook.publisher.batches == []
    assert hook.signature_failures("telegram") == 2


async def test_unknown_bot_is_404(hook: Harness) -> None:
    resp = await hook.client.post("/webhooks/telegram/nobody_bot", json=update(), headers=SECRET)
    assert resp.status == 404


async def test_replay_gets_the_same_event_id(hook: Harness) -> None:
    for _ in range(2):
        assert (await hook.client.post(PATH, json=update(), headers=SECRET)).status == 200
    first, second = hook.publisher.messages
    assert first.id == second.id


async def test_a_signed_update_that_cannot_be_read_is_set_aside(hook: Harness) -> None:
    # Telegram retries an update it did not get a 2xx for.
    for body in (b"[]", b"{", b'{"update_id": "x"}', b'{"update_id": 1, "message": {"chat": 1}}'):
        resp = await hook.client.post(PATH, data=body, headers=SECRET)
        assert (await hook.set_aside(resp, "telegram")).startswith("malformed"), body


async def test_an_unsigned_update_is_refused_before_it_is_read(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=b"{")
    assert resp.status == 401
    assert hook.publisher.dead_letters == []
