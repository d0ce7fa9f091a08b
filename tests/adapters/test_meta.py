"""Meta: WhatsApp Cloud API, Messenger and Instagram payloads as Meta documents them, and
replies with attachments in the shapes Meta's APIs take (``tests/adapters/conformance/
test_meta.py`` holds the conformance suite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from adapters import meta
from adapters.base import hmac_hex, inbound_event_id
from adapters.egress import Egress, InMemorySentLedger, RetryPolicy, SendOutcome
from runtime.metrics import Metrics
from schemas import (
    Attachment,
    Channel,
    DeliveryStatus,
    Location,
    MessageChanged,
    ReplyRequested,
)
from tests.adapters.conftest import CHANNELS, ENVIRON, NOW, Harness, start_harness
from tests.adapters.test_egress import pointed_at
from tools.bench.providers import FakeProviders

PATH = "/webhooks/meta"
SECRET = ENVIRON["META_APP_SECRET"]
WA_NUMBER_ID = "106540352242922"
PAGE_ID = "1234567890"
IG_ID = "17841400000000000"


def signed(payload: Any, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode(payload)
    return body, {
        "X-Hub-Signature-256": "sha256=" + hmac_hex(secret, body),
        "Content-Type": "application/json",
    }


def wa_notification(*values: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [{"value": v, "field": "messages"} for v in values],
            }
        ],
    }


def wa_value(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    number_id: str = WA_NUMBER_ID,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": number_id},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
    }
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return value


def wa_text(
    mid: str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
) -> dict[str, Any]:
    return {
        "from": "16505551234",
        "id": mid,
        "timestamp": "1699999383",
        "type": "text",
        "text": {"body": "Does it come in another color?"},
    }


def page_notification(
    *messaging: dict[str, Any], obj: str = "page", entry_id: str = PAGE_ID
) -> dict[str, Any]:
    return {
        "object": obj,
        "entry": [{"id": entry_id, "time": 1699999752478, "messaging": list(messaging)}],
    }


async def test_subscribe_handshake_echoes_the_challenge(hook: Harness) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": ENVIRON["META_VERIFY_TOKEN"],
        "hub.challenge": "1158201444",
    }
    resp = await hook.client.get(PATH, params=query)
    assert resp.status == 200
    assert await resp.text() == "1158201444"
    assert hook.count("meta", "accepted") == 1


async def test_subscribe_handshake_with_a_wrong_token_is_403(hook: Harness) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    resp = await hook.client.get(PATH, params=query)
    assert resp.status == 403
    assert (await resp.json())["error"]


async def test_whatsapp_text_message(hook: Harness) -> None:
    body, headers = signed(wa_notification(wa_value(messages=[wa_text()])))
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    assert await resp.text() == "EVENT_RECEIVED"
    [msg] = hook.publisher.messages
    assert msg.channel is Channel.WHATSAPP
    assert msg.domain == "acme"
    assert msg.queue == "whatsapp"
    assert msg.endpoint == WA_NUMBER_ID
    assert msg.customer_address == "+16505551234"
    assert msg.customer_id == "phone:+16505551234"
    assert msg.text == "Does it come in another color?"
    assert msg.occurred_at == 1699999383
    assert msg.reply_window_ends_at == 1699999383 + 24 * 3600
    assert msg.id == inbound_event_id("acme", "whatsapp", wa_text()["id"])


async def test_whatsapp_image_is_an_attachment_with_a_graph_reference(hook: Harness) -> None:
    image = {
        "from": "16505551234",
        "id": "wamid.IMAGE",
        "timestamp": "1699999383",
        "type": "image",
        "image": {
            "caption": "The box arrived like this",
            "mime_type": "image/jpeg",
            "sha256": "6a6d1f3e0c5ef5e7b3c5f3f5e7d1c0a0b9d8c7e6f5a4b3c2d1e0f9a8b7c6d5e4",
            "id": "1003383421387256",
        },
    }
    body, headers = signed(wa_notification(wa_value(messages=[image])))
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.text == "The box arrived like this"
    [att] = msg.attachments
    assert att.url == "https://graph.facebook.com/v23.0/1003383421387256"
    assert att.content_type == "image/jpeg"
    # Meta's own references are kept beside ours.
    assert (att.media_id, att.caption) == ("1003383421387256", "The box arrived like this")
    assert att.sha256 == image["image"]["sha256"]  # type: ignore[index]


async def test_one_request_with_many_changes_messages_and_statuses(hook: Harness) -> None:
    statuses: list[dict[str, Any]] = [
        {
            "id": "wamid.OUT1",
            "status": "delivered",
            "timestamp": "1699999773",
            "recipient_id": "16505551234",
        },
        {
            "id": "wamid.OUT2",
            "status": "failed",
            "timestamp": "1699999774",
            "recipient_id": "16505551234",
            "errors": [{"code": 131047, "title": "Re-engagement message"}],
        },
    ]
    reaction = {
        "from": "16505551234",
        "id": "wamid.REACT",
        "timestamp": "1699999390",
        "type": "reaction",
        "reaction": {"message_id": "wamid.OUT1", "emoji": "👍"},
    }
    payload = wa_notification(
        wa_value(messages=[wa_text("wamid.A"), wa_text("wamid.B"), reaction]),
        wa_value(statuses=statuses),
    )
    body, headers = signed(payload)
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    assert [m.provider_message_id for m in hook.publisher.messages] == ["wamid.A", "wamid.B"]
    assert [(s.provider_message_id, s.status, s.error_code) for s in hook.publisher.statuses] == [
        ("wamid.OUT1", DeliveryStatus.DELIVERED, None),
        ("wamid.OUT2", DeliveryStatus.FAILED, "131047"),
    ]
    assert len(hook.publisher.batches) == 1  # one publish, one broker acknowledgement


async def test_whatsapp_status_only_is_not_a_message(hook: Harness) -> None:
    status = {"id": "wamid.OUT", "status": "read", "timestamp": "1699999773"}
    body, headers = signed(wa_notification(wa_value(statuses=[status])))
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    assert hook.publisher.messages == []
    assert [s.status for s in hook.publisher.statuses] == [DeliveryStatus.READ]


OUTBOUND_ID = "3f1c1b8e-5d1e-4f7e-9a44-2f6f0d1c9b77"


def wa_status(mid: str, status: str, callback_data: str | None) -> dict[str, Any]:
    """A WhatsApp status as the Cloud API documents it, echoing the send's
    ``biz_opaque_callback_data`` when it carried one."""
    item: dict[str, Any] = {
        "id": mid,
        "status": status,
        "timestamp": "1699999773",
        "recipient_id": "16505551234",
        "conversation": {"id": "CONVERSATION_ID", "origin": {"type": "utility"}},
        "pricing": {"billable": True, "pricing_model": "CBP", "category": "utility"},
    }
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    return item


def test_a_whatsapp_status_names_the_outbound_id_it_echoes() -> None:
    payload = wa_notification(
        wa_value(
            statuses=[
                wa_status("wamid.A", "sent", OUTBOUND_ID),
                wa_status("wamid.B", "delivered", None),
                wa_status("wamid.C", "read", "x" * 512),  # another app's data, not our id
                wa_status("wamid.D", "failed", "ours?\n"),
                wa_status("wamid.E", "delivered", ""),
            ]
        )
    )
    out = meta.parse_webhook(msgspec.json.encode(payload), CHANNELS, NOW)
    assert out.set_aside == []
    assert [(e.provider_message_id, getattr(e, "outbound_id", "?")) for e in out.events] == [
        ("wamid.A", OUTBOUND_ID),
        ("wamid.B", None),
        ("wamid.C", None),
        ("wamid.D", None),
        ("wamid.E", None),
    ]


async def test_a_whatsapp_status_through_the_webhook_carries_its_outbound_id(
    hook: Harness,
) -> None:
    statuses = [wa_status("wamid.OUT", "delivered", OUTBOUND_ID)]
    body, headers = signed(wa_notification(wa_value(statuses=statuses)))
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert (status.provider_message_id, status.status, status.outbound_id) == (
        "wamid.OUT",
        DeliveryStatus.DELIVERED,
        OUTBOUND_ID,
    )


async def test_messenger_text_and_attachment(hook: Harness) -> None:
    payload = page_notification(
        {
            "sender": {"id": "6783125368444163"},
            "recipient": {"id": PAGE_ID},
            "timestamp": 1699999752478,
            "message": {
                "mid": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P",
                "text": "hello, world!",
                "attachments": [
                    {
                        "type": "image",
                        "payload": {"url": "https://scontent.xx.fbcdn.net/v/photo.jpg"},
                    }
                ],
            },
        }
    )
    body, headers = signed(payload)
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.channel is Channel.MESSENGER
    assert msg.customer_address == "6783125368444163"
    assert msg.customer_id == "messenger:6783125368444163"
    assert msg.text == "hello, world!"
    assert msg.occurred_at == 1699999752.478
    assert msg.reply_window_ends_at == 1699999752.478 + 24 * 3600
    assert [a.url for a in msg.attachments] == ["https://scontent.xx.fbcdn.net/v/photo.jpg"]


async def test_messenger_echo_and_read_are_not_routed_delivery_is_a_status_reaction_a_change(
    hook: Harness,
) -> None:
    payload = page_notification(
        {
            "sender": {"id": PAGE_ID},
            "recipient": {"id": "6783125368444163"},
            "timestamp": 1699999752478,
            "message": {"is_echo": True, "app_id": 1517776481860111, "mid": "m_echo", "text": "hi"},
        },
        {
            "sender": {"id": "6783125368444163"},
            "recipient": {"id": PAGE_ID},
            "timestamp": 1699999856463,
            "read": {"watermark": 1458668856253},
        },
        {
            "sender": {"id": "6783125368444163"},
            "recipient": {"id": PAGE_ID},
            "timestamp": 1699999856463,
            "reaction": {"reaction": "love", "emoji": "❤️", "action": "react", "mid": "m_x"},
        },
        {
            "sender": {"id": "6783125368444163"},
            "recipient": {"id": PAGE_ID},
            "delivery": {"mids": ["m_out1"], "watermark": 1458668856253},
        },
    )
    body, headers = signed(payload)
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    assert hook.publisher.messages == []
    assert [(s.provider_message_id, s.status) for s in hook.publisher.statuses] == [
        ("m_out1", DeliveryStatus.DELIVERED)
    ]
    [reaction] = [e for e in hook.publisher.events if isinstance(e, MessageChanged)]
    assert (reaction.provider_message_id, reaction.reaction) == ("m_x", "❤️")


async def test_only_non_message_items_is_answered_and_counted_as_ignored(hook: Harness) -> None:
    payload = page_notification(
        {
            "sender": {"id": "6783125368444163"},
            "recipient": {"id": PAGE_ID},
            "timestamp": 1699999856463,
            "read": {"watermark": 1458668856253},
        }
    )
    body, headers = signed(payload)
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    assert hook.publisher.batches == []
    assert hook.count("meta", "ignored") == 1


async def test_instagram_message(hook: Harness) -> None:
    payload = page_notification(
        {
            "sender": {"id": "1254459154682919"},
            "recipient": {"id": IG_ID},
            "timestamp": 1699999486134,
            "message": {
                "mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3",
                "text": "is this in stock?",
            },
        },
        obj="instagram",
        entry_id=IG_ID,
    )
    body, headers = signed(payload)
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.channel is Channel.INSTAGRAM
    assert msg.domain == "globex"
    assert msg.customer_id == "instagram:1254459154682919"
    assert msg.conversation_key == f"instagram:{IG_ID}:1254459154682919"


async def test_bad_signature_is_403_missing_is_401(hook: Harness) -> None:
    body, _ = signed(wa_notification(wa_value(messages=[wa_text()])))
    _, wrong = signed({"other": 1})
    resp = await hook.client.post(PATH, data=body, headers=wrong)
    assert resp.status == 403
    resp = await hook.client.post(PATH, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 401
    assert hook.publisher.batches == []
    assert hook.signature_failures("meta") == 2


INSTAGRAM_SECRET = "instagram-app-secret"


def ig_message(mid: str = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3") -> dict[str, Any]:
    return page_notification(
        {
            "sender": {"id": "1254459154682919"},
            "recipient": {"id": IG_ID},
            "timestamp": 1699999486134,
            "message": {"mid": mid, "text": "is this in stock?"},
        },
        obj="instagram",
        entry_id=IG_ID,
    )


async def instagram_login_harness(environ: dict[str, str]) -> Harness:
    """An app on the Instagram API with Instagram Login beside WhatsApp and Messenger."""
    meta_config = msgspec.structs.replace(
        CHANNELS.meta, instagram_app_secret_env="INSTAGRAM_APP_SECRET"
    )
    return await start_harness(
        channels=msgspec.structs.replace(CHANNELS, meta=meta_config), environ=environ
    )


async def test_the_instagram_app_secret_vouches_for_instagram_notifications_alone() -> None:
    harness = await instagram_login_harness({**ENVIRON, "INSTAGRAM_APP_SECRET": INSTAGRAM_SECRET})
    try:
        for secret, mid in ((INSTAGRAM_SECRET, "ig-mid-1"), (SECRET, "ig-mid-2")):
            body, headers = signed(ig_message(mid), secret)
            assert (await harness.client.post(PATH, data=body, headers=headers)).status == 200
        assert [m.provider_message_id for m in harness.publisher.messages] == [
            "ig-mid-1",
            "ig-mid-2",
        ]
        # The Instagram app secret signs no WhatsApp notification, nor what names no object.
        whatsapp, _ = signed(wa_notification(wa_value(messages=[wa_text()])))
        for body in (whatsapp, b"{not json"):
            headers = {"X-Hub-Signature-256": "sha256=" + hmac_hex(INSTAGRAM_SECRET, body)}
            assert (await harness.client.post(PATH, data=body, headers=headers)).status == 403
        assert len(harness.publisher.messages) == 2
        assert harness.signature_failures("meta") == 2
    finally:
        await harness.client.close()


async def test_without_the_setting_the_instagram_app_secret_signs_nothing(hook: Harness) -> None:
    body, headers = signed(ig_message(), INSTAGRAM_SECRET)
    assert (await hook.client.post(PATH, data=body, headers=headers)).status == 403
    assert hook.publisher.batches == []


async def test_the_instagram_app_secret_named_and_unset_is_503() -> None:
    harness = await instagram_login_harness(dict(ENVIRON))
    try:
        body, headers = signed(ig_message(), INSTAGRAM_SECRET)
        resp = await harness.client.post(PATH, data=body, headers=headers)
        assert resp.status == 503
        assert "INSTAGRAM_APP_SECRET" not in await resp.text()
    finally:
        await harness.client.close()
    assert harness.publisher.batches == []


async def test_replay_gets_the_same_event_id(hook: Harness) -> None:
    body, headers = signed(wa_notification(wa_value(messages=[wa_text()])))
    for _ in range(2):
        assert (await hook.client.post(PATH, data=body, headers=headers)).status == 200
    first, second = hook.publisher.messages
    assert first.id == second.id


async def test_a_signed_body_that_cannot_be_read_is_set_aside(hook: Harness) -> None:
    # Meta retries what it did not get a 200 for, then unsubscribes the app.
    for payload in (b"{not json", b'{"object": "page"}', b'{"object": "page", "entry": [{}]}'):
        headers = {"X-Hub-Signature-256": "sha256=" + hmac_hex(SECRET, payload)}
        resp = await hook.client.post(PATH, data=payload, headers=headers)
        assert (await hook.set_aside(resp, "meta")).startswith("malformed"), payload


async def test_senders_cut_inside_a_surrogate_pair_are_set_aside_not_made_one(
    hook: Harness,
) -> None:
    """A lone surrogate escape is read as U+FFFD: in free text that is the repair, in an id
    it would make ``12345\\ud801`` and ``12345\\udbff`` the same customer."""
    reasons = []
    for escape, text in (("\\ud801", "A"), ("\\udbff", "B")):
        item = {
            "sender": {"id": "SENDER"},
            "recipient": {"id": PAGE_ID},
            "timestamp": 1699999752478,
            "message": {"mid": f"m_{text}", "text": text},
        }
        body = msgspec.json.encode(page_notification(item)).replace(
            b'"SENDER"', b'"12345' + escape.encode() + b'"'
        )
        headers = {"X-Hub-Signature-256": "sha256=" + hmac_hex(SECRET, body)}
        resp = await hook.client.post(PATH, data=body, headers=headers)
        reasons.append(await hook.set_aside(resp, "meta"))
    assert hook.publisher.messages == []
    assert all("U+FFFD" in reason for reason in reasons), reasons


async def test_an_unsigned_body_that_cannot_be_read_is_refused(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=b"{not json")
    assert resp.status == 401
    assert hook.publisher.dead_letters == []


async def test_a_notification_for_an_unknown_number_is_set_aside(hook: Harness) -> None:
    body, headers = signed(wa_notification(wa_value(messages=[wa_text()], number_id="999")))
    resp = await hook.client.post(PATH, data=body, headers=headers)
    reason = await hook.set_aside(resp, "meta")
    assert reason == "no entry of this notification is configured in [channels]"


# -- replies with attachments, through a Graph stand-in that refuses what Graph refuses ----
#
# Cloud API: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages
# (media by ``link``, ``caption`` on image/video/document, ``filename`` on document,
# ``location``, interactive ``header``); Send API:
# https://developers.facebook.com/docs/messenger-platform/reference/send-api (one
# ``attachment`` of ``type`` image/audio/video/file with ``payload.url`` a message).

WA_CUSTOMER = "+16505551234"
PSID, IGSID = "6783125368444163", "1254459154682919"


@pytest.fixture
async def graph() -> AsyncIterator[tuple[FakeProviders, Egress]]:
    fake = FakeProviders()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        yield (
            fake,
            Egress(
                channels=pointed_at(base),
                environ=ENVIRON,
                session=session,
                metrics=Metrics(),
                ledger=InMemorySentLedger(),
                retry=RetryPolicy(max_attempts=1),
            ),
        )
    await server.close()


def reply(channel: Channel, endpoint: str, customer: str, **kw: Any) -> ReplyRequested:
    fields: dict[str, Any] = {
        "id": "out-media-1",
        "domain": "acme",
        "occurred_at": NOW,
        "conversation_id": "conv-1",
        "agent_id": "ann",
        "channel": channel,
        "endpoint": endpoint,
        "customer_address": customer,
        "text": "Here is your label.",
    }
    return ReplyRequested(**(fields | kw))


def whatsapp(**kw: Any) -> ReplyRequested:
    return reply(Channel.WHATSAPP, WA_NUMBER_ID, WA_CUSTOMER, **kw)


IMAGE = Attachment(url="https://cdn.example.com/box.jpg", content_type="image/jpeg")
LABEL = Attachment(url="https://cdn.example.com/label.pdf", filename="label.pdf")
VOICE = Attachment(url="https://cdn.example.com/hello.ogg", content_type="audio/ogg")


async def sent(graph: tuple[FakeProviders, Egress], message: ReplyRequested) -> list[Any]:
    """The bodies the Graph stand-in accepted for ``message``, which was sent."""
    fake, egress = graph
    fake.requests.clear()
    result = await egress.send(message)
    assert result.outcome is SendOutcome.SENT, result.error
    assert [r.status for r in fake.requests] == [200] * len(fake.requests)
    return [r.json for r in fake.requests]


async def test_a_whatsapp_image_goes_by_link_with_the_text_as_its_caption(
    graph: tuple[FakeProviders, Egress],
) -> None:
    [body] = await sent(graph, whatsapp(attachments=(IMAGE,)))
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "image",
        "image": {"link": IMAGE.url, "caption": "Here is your label."},
        "biz_opaque_callback_data": "out-media-1",
    }


async def test_a_whatsapp_user_known_only_by_a_business_scoped_id_is_sent_to_as_recipient(
    graph: tuple[FakeProviders, Egress],
) -> None:
    fake, _ = graph
    bsuid = "US.13491208655302741918"
    message = reply(Channel.WHATSAPP, WA_NUMBER_ID, bsuid, attachments=(IMAGE,))
    [body] = await sent(graph, message)
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "recipient": bsuid,  # Meta: ``to`` is a phone number, and would win over it
        "type": "image",
        "image": {"link": IMAGE.url, "caption": "Here is your label."},
        "biz_opaque_callback_data": "out-media-1",
    }
    assert fake.delivered[-1].to == bsuid


async def test_a_whatsapp_document_keeps_its_file_name_and_each_media_is_a_message(
    graph: tuple[FakeProviders, Egress],
) -> None:
    fake, egress = graph
    result = await egress.send(whatsapp(attachments=(LABEL, IMAGE, VOICE)))
    assert result.outcome is SendOutcome.SENT
    bodies = [r.json for r in fake.requests]
    assert [(b["type"], b[b["type"]]) for b in bodies] == [
        (
            "document",
            {"link": LABEL.url, "caption": "Here is your label.", "filename": "label.pdf"},
        ),
        ("image", {"link": IMAGE.url}),
        ("audio", {"link": VOICE.url}),
    ]
    assert {b["biz_opaque_callback_data"] for b in bodies} == {"out-media-1"}
    # The message's provider id is the first call's (every status names our id anyway).
    assert result.provider_message_id == f"wamid.{1:024d}"
    assert result.attempts == 3


async def test_whatsapp_audio_takes_no_caption_so_the_text_goes_first(
    graph: tuple[FakeProviders, Egress],
) -> None:
    bodies = await sent(graph, whatsapp(attachments=(VOICE,)))
    assert [b["type"] for b in bodies] == ["text", "audio"]
    assert bodies[0]["text"] == {"body": "Here is your label.", "preview_url": False}


async def test_a_caption_over_1024_characters_goes_as_a_text_message(
    graph: tuple[FakeProviders, Egress],
) -> None:
    bodies = await sent(graph, whatsapp(text="x" * 1025, attachments=(IMAGE,)))
    assert [b["type"] for b in bodies] == ["text", "image"]
    assert "caption" not in bodies[1]["image"]


async def test_a_whatsapp_reply_sends_its_place_as_a_location_message(
    graph: tuple[FakeProviders, Egress],
) -> None:
    place = Location(
        latitude=37.44216, longitude=-122.16131, name="Lucky Shrub", address="101 Forest Ave"
    )
    bodies = await sent(graph, whatsapp(location=place))
    assert [b["type"] for b in bodies] == ["text", "location"]
    assert bodies[1]["location"] == {
        "latitude": 37.44216,
        "longitude": -122.16131,
        "name": "Lucky Shrub",
        "address": "101 Forest Ave",
    }
    [only] = await sent(graph, whatsapp(text="", location=place, id="out-media-2"))
    assert only["type"] == "location"


async def test_whatsapp_reply_buttons_carry_the_image_as_their_header(
    graph: tuple[FakeProviders, Egress],
) -> None:
    bot = whatsapp(agent_id=None, bot_id="helper", quick_replies=("Yes", "No"))
    [body] = await sent(graph, msgspec.structs.replace(bot, attachments=(IMAGE,)))
    assert body["interactive"]["header"] == {"type": "image", "image": {"link": IMAGE.url}}
    assert body["interactive"]["body"] == {"text": "Here is your label."}


async def test_media_whatsapp_refuses_fail_the_reply_without_a_call(
    graph: tuple[FakeProviders, Egress],
) -> None:
    fake, egress = graph
    too_big = Attachment(url="https://cdn.example.com/big.png", size_bytes=6 * 1024 * 1024)
    gif = Attachment(url="https://cdn.example.com/a.gif")
    for attachments, reason in (((too_big,), "over WhatsApp's"), ((gif,), "image/gif")):
        result = await egress.send(whatsapp(attachments=attachments, id=f"out-{reason}"))
        assert result.outcome is SendOutcome.FAILED
        assert reason in (result.error or "")
    assert fake.requests == []


async def test_messenger_sends_the_text_then_one_message_an_attachment(
    graph: tuple[FakeProviders, Egress],
) -> None:
    fake, _ = graph
    bot = reply(Channel.MESSENGER, PAGE_ID, PSID, agent_id=None, bot_id="helper")
    message = msgspec.structs.replace(bot, attachments=(IMAGE, LABEL), quick_replies=("Thanks",))
    bodies = await sent(graph, message)
    assert [b["message"] for b in bodies] == [
        {"text": "Here is your label."},
        {"attachment": {"type": "image", "payload": {"url": IMAGE.url, "is_reusable": False}}},
        {
            "attachment": {"type": "file", "payload": {"url": LABEL.url, "is_reusable": False}},
            "quick_replies": [{"content_type": "text", "title": "Thanks", "payload": "Thanks"}],
        },
    ]
    assert {b["messaging_type"] for b in bodies} == {"RESPONSE"}
    assert {r.path for r in fake.requests} == {"/v23.0/me/messages"}


@pytest.mark.parametrize(
    ("channel", "endpoint", "customer", "longest"),
    [
        (Channel.WHATSAPP, WA_NUMBER_ID, WA_CUSTOMER, 4096),
        (Channel.MESSENGER, PAGE_ID, PSID, 2000),
        (Channel.INSTAGRAM, IG_ID, IGSID, 1000),
    ],
)
async def test_a_text_longer_than_a_message_goes_on_in_further_messages(
    graph: tuple[FakeProviders, Egress],
    channel: Channel,
    endpoint: str,
    customer: str,
    longest: int,
) -> None:
    """A bot's answer may be longer than one message's text: the rest follows."""
    text = "answer " * (longest * 3 // 2 // 7)
    bot = reply(channel, endpoint, customer, text=text, agent_id=None, bot_id="helper")
    bodies = await sent(graph, bot)
    texts = [
        b["text"]["body"] if channel is Channel.WHATSAPP else b["message"]["text"] for b in bodies
    ]
    assert len(texts) == 2
    assert all(len(part) <= longest for part in texts)
    assert " ".join(texts).split() == text.split()


async def test_instagram_sends_an_attachment_alone_and_refuses_what_it_cannot_show(
    graph: tuple[FakeProviders, Egress],
) -> None:
    fake, egress = graph
    [body] = await sent(
        graph, reply(Channel.INSTAGRAM, IG_ID, IGSID, text="", attachments=(IMAGE,))
    )
    assert body == {
        "recipient": {"id": IGSID},
        "messaging_type": "RESPONSE",
        "message": {
            "attachment": {"type": "image", "payload": {"url": IMAGE.url, "is_reusable": False}}
        },
    }
    assert fake.requests[0].path == f"/v23.0/{IG_ID}/messages"
    webp = Attachment(url="https://cdn.example.com/a.webp")
    result = await egress.send(
        reply(Channel.INSTAGRAM, IG_ID, IGSID, attachments=(webp,), id="out-ig-webp")
    )
    assert (result.outcome, result.error) == (
        SendOutcome.FAILED,
        "attachment 1: Instagram does not send image/webp",
    )


async def test_a_place_is_written_into_the_text_where_there_is_no_location_message(
    graph: tuple[FakeProviders, Egress],
) -> None:
    place = Location(latitude=48.8584, longitude=2.2945, name="Eiffel Tower")
    [body] = await sent(graph, reply(Channel.MESSENGER, PAGE_ID, PSID, location=place))
    assert body["message"] == {
        "text": "Here is your label.\nEiffel Tower (48.8584, 2.2945) geo:48.8584,2.2945"
    }


async def test_a_later_part_graph_refuses_fails_the_reply_saying_the_customer_has_a_part(
    graph: tuple[FakeProviders, Egress],
) -> None:
    fake, egress = graph
    unreachable = Attachment(
        url="ftp://files.example.com/label.pdf", content_type="application/pdf"
    )
    result = await egress.send(reply(Channel.MESSENGER, PAGE_ID, PSID, attachments=(unreachable,)))
    assert [r.status for r in fake.requests] == [200, 400]  # the text went, the file did not
    assert result.outcome is SendOutcome.FAILED
    assert result.error == "sent in part: (#100) Invalid parameter"
    assert result.provider_message_id == f"m_{1:024d}"  # what the customer has
