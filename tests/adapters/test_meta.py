"""Meta webhook: WhatsApp Cloud API, Messenger and Instagram payloads as Meta documents them."""

from __future__ import annotations

from typing import Any

import msgspec

from adapters import meta
from adapters.base import hmac_hex, inbound_event_id
from schemas import Channel, DeliveryStatus
from tests.adapters.conftest import CHANNELS, ENVIRON, NOW, Harness

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
    assert (
        hook.metrics.registry.get_sample_value(
            "switchboard_delivery_status_updates_total", {"channel": "whatsapp", "status": "failed"}
        )
        == 1
    )


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


async def test_messenger_echo_read_and_reaction_are_not_routed_delivery_is_a_status(
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


async def test_an_unsigned_body_that_cannot_be_read_is_refused(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=b"{not json")
    assert resp.status == 401
    assert hook.publisher.dead_letters == []


async def test_a_notification_for_an_unknown_number_is_set_aside(hook: Harness) -> None:
    body, headers = signed(wa_notification(wa_value(messages=[wa_text()], number_id="999")))
    resp = await hook.client.post(PATH, data=body, headers=headers)
    reason = await hook.set_aside(resp, "meta")
    assert reason == "no entry of this notification is configured in [channels]"
