"""Google RBM conformance: the webhook's documented shapes, its signature, and the send call.

Documentation the fixtures (``tests/adapters/fixtures/rbm/``) come from:
- https://developers.google.com/business-communications/rcs-business-messaging/guides/integrate/webhooks
  (``verification.json``; the signature: Google's Node.js sample hashes the base64-decoded
  ``message.data`` with HMAC-SHA512 keyed by the client token, base64, compared with
  ``X-Goog-Signature``);
- …/guides/learn/conversation-flows (``user_event_delivered.json``, ``user_event_read.json``:
  verbatim);
- …/guides/build/events/receive-events (``user_event_is_typing.json``,
  ``user_message_text.json``, ``user_message_file.json``: verbatim but for the
  placeholders, filled with the conversation-flow example's number and agent);
- …/guides/build/events (``server_event_ttl_*.json``: placeholders filled; ``envelope.json``:
  the Pub/Sub delivery example's ``attributes`` and ``messageId``, with our
  ``publishTime`` and ``subscription``);
- …/reference/rest/v1/UserMessage, SuggestionResponse, LatLng, UserFile, FileInfo,
  ServerEvent, AgentLaunchEvent, UserEvent.EventType, ServerEvent.EventType
  (``user_message_reference.json``, ``user_message_suggestion.json``,
  ``user_message_location.json``, ``user_message_file_thumbnail.json``,
  ``agent_launch_event.json``: the reference's shapes, our values; no example is given);
- …/reference/rest/v1/UserEvent and UserEvent.EventType (``user_event_unsubscribe.json``,
  ``user_event_subscribe.json``: the reference's shape, our values; the reference notes
  that RBM does not send these two yet).

Google ships no Python validator of ``X-Goog-Signature`` (its RBM client libraries send;
the webhook check exists only as the guide's Node.js snippet): ``google_signature`` below
is that snippet's algorithm written independently with ``hmac``/``hashlib``, the reference
the adapter is checked against. Google publishes no signature test vector either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters import rbm, rbm_tokens
from adapters.base import inbound_event_id
from adapters.config import ChannelsConfig
from adapters.media import MediaRefused
from adapters.provider_api import Outbound, PrepareFailed
from adapters.webhooks import WebhookContext, refuse_encoded_bodies
from runtime.metrics import Metrics
from schemas import (
    Answerer,
    AnswerMode,
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    DeliveryStatus,
    Location,
    MessageReceived,
    NotificationRequested,
    ReplyRequested,
)
from tests.adapters.conftest import Harness, MemoryNonces, RecordingPublisher
from tests.fakes.rbm import FakeRbm, content_problem

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rbm"
PATH = "/webhooks/rbm"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
CLIENT_TOKEN = "SJENCPGJESMGUFPY"  # the guide's example client token
GLOBEX_TOKEN = "globex-agent-client-token"
PHONE = "+12223334444"
ENVIRON = {"RBM_CLIENT_TOKEN": CLIENT_TOKEN, "RBM_GLOBEX_CLIENT_TOKEN": GLOBEX_TOKEN}
CHANNELS = msgspec.toml.decode(
    """
phone_identity_domains = ["acme"]

[rbm]
agents = [
  { agent_id = "welcome-bot", domain = "acme", queue = "rcs" },
  { agent_id = "globex-bot", domain = "globex", client_token_env = "RBM_GLOBEX_CLIENT_TOKEN" },
]
""",
    type=ChannelsConfig,
)

#: Every enum value of UserEvent.EventType and ServerEvent.EventType.
DOCUMENTED_EVENT_TYPES = (
    "EVENT_TYPE_UNSPECIFIED",
    "DELIVERED",
    "IS_TYPING",
    "READ",
    "UNSUBSCRIBE",
    "SUBSCRIBE",
    "TTL_EXPIRATION_REVOKED",
    "TTL_EXPIRATION_REVOKE_FAILED",
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def received(name: str | dict[str, Any]) -> MessageReceived:
    """The one customer message a fixture (or a payload) normalizes into."""
    payload = fixture(name) if isinstance(name, str) else name
    [event] = rbm.parse_notification(json.dumps(payload).encode(), CHANNELS, NOW)
    assert isinstance(event, MessageReceived)
    return event


def google_signature(client_token: str, data: bytes) -> str:
    """The guide's Node.js check: ``createHmac('sha512', CLIENT_TOKEN)`` over
    ``Buffer.from(message.data, 'base64')``, ``digest('base64')``."""
    return base64.b64encode(hmac.new(client_token.encode(), data, hashlib.sha512).digest()).decode()


def delivery(inner: Any, token: str = CLIENT_TOKEN) -> tuple[bytes, dict[str, str]]:
    """A webhook POST as RBM makes it: the documented envelope around ``inner``, signed."""
    data = inner if isinstance(inner, bytes) else json.dumps(inner).encode()
    envelope = fixture("envelope")
    envelope["message"]["data"] = base64.b64encode(data).decode()
    headers = {
        "Content-Type": "application/json",
        "X-Goog-Signature": google_signature(token, data),
        "X-Goog-Webhook-Type": "message_callback",
    }
    return json.dumps(envelope).encode(), headers


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
    app.add_routes(rbm.routes(ctx))  # registered in webhook_routes: see the e2e test
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Harness(client, publisher, metrics, nonces)
    await client.close()


async def post(hook: Harness, inner: Any, path: str = PATH, token: str = CLIENT_TOKEN) -> Any:
    body, headers = delivery(inner, token)
    return await hook.client.post(path, data=body, headers=headers)


# --- Signature -------------------------------------------------------------------------


def test_the_signature_is_the_google_sample_over_the_decoded_data() -> None:
    data = json.dumps(fixture("user_event_read")).encode()
    assert rbm.signature(CLIENT_TOKEN, data) == google_signature(CLIENT_TOKEN, data)
    rbm.verify_signature(CLIENT_TOKEN, data, google_signature(CLIENT_TOKEN, data))


async def test_verification_handshake_echoes_the_secret_for_our_client_token(
    hook: Harness,
) -> None:
    response = await hook.client.post(
        PATH,
        json=fixture("verification"),
        headers={"X-Goog-Webhook-Type": "verification"},
    )
    assert response.status == 200
    assert await response.text() == "1234567890"
    assert hook.publisher.batches == []
    assert hook.count("rbm", "accepted") == 1


async def test_verification_handshake_with_another_client_token_is_403(hook: Harness) -> None:
    response = await hook.client.post(
        PATH, json={"clientToken": "NOT-OURS", "secret": "1234567890"}
    )
    assert response.status == 403
    assert "1234567890" not in await response.text()
    assert hook.signature_failures("rbm") == 1


async def test_verification_secret_that_cannot_be_echoed_as_text_is_400(hook: Harness) -> None:
    response = await hook.client.post(
        PATH, json={"clientToken": CLIENT_TOKEN, "secret": "12\r\n<script>"}
    )
    assert response.status == 400


async def test_an_agent_webhook_answers_with_its_own_client_token(hook: Harness) -> None:
    path = PATH + "/globex-bot"
    ours = await hook.client.post(path, json={"clientToken": GLOBEX_TOKEN, "secret": "s3"})
    assert (ours.status, await ours.text()) == (200, "s3")
    partners = await hook.client.post(path, json={"clientToken": CLIENT_TOKEN, "secret": "s3"})
    assert partners.status == 403


async def test_missing_signature_is_401_and_bad_signature_403(hook: Harness) -> None:
    body, headers = delivery(fixture("user_message_text"))
    del headers["X-Goog-Signature"]
    assert (await hook.client.post(PATH, data=body, headers=headers)).status == 401
    headers["X-Goog-Signature"] = google_signature("another-token", b"{}")
    assert (await hook.client.post(PATH, data=body, headers=headers)).status == 403
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
    assert hook.signature_failures("rbm") == 2


async def test_a_signature_over_the_body_instead_of_the_data_is_refused(hook: Harness) -> None:
    body, headers = delivery(fixture("user_message_text"))
    headers["X-Goog-Signature"] = google_signature(CLIENT_TOKEN, body)
    assert (await hook.client.post(PATH, data=body, headers=headers)).status == 403


async def test_an_agent_webhook_checks_its_own_token(hook: Harness) -> None:
    inner = {**fixture("user_message_text"), "agentId": "globex-bot@rbm.goog"}
    refused = await post(hook, inner, PATH + "/globex-bot", token=CLIENT_TOKEN)
    assert refused.status == 403
    accepted = await post(hook, inner, PATH + "/globex-bot", token=GLOBEX_TOKEN)
    assert accepted.status == 200
    [message] = hook.publisher.messages
    assert (message.domain, message.endpoint) == ("globex", "globex-bot")


async def test_unsigned_malformed_envelopes_are_refused(hook: Harness) -> None:
    headers = {"X-Goog-Signature": google_signature(CLIENT_TOKEN, b"x")}
    for body in (b"not json", b"[]", b"{}", b'{"message": {"data": ""}}'):
        assert (await hook.client.post(PATH, data=body, headers=headers)).status == 400
    not_base64 = json.dumps({"message": {"data": "%%%"}}).encode()
    assert (await hook.client.post(PATH, data=not_base64, headers=headers)).status == 400
    assert (await hook.client.post(PATH + "/nobody-bot", data=b"{}")).status == 404
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []


async def test_signed_data_that_is_not_a_notification_is_set_aside(hook: Harness) -> None:
    for inner in (b"not json", b"[1, 2]", json.dumps({"senderPhoneNumber": 5}).encode()):
        reason = await hook.set_aside(await post(hook, inner), "rbm")
        assert "RBM notification" in reason


async def test_url_safe_unpadded_base64_data_is_read(hook: Harness) -> None:
    inner = {**fixture("user_message_text"), "text": "ÿÿ?>"}
    data = json.dumps(inner, ensure_ascii=False).encode()
    encoded = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    assert {"-", "_"} & set(encoded)
    assert len(encoded) % 4
    body = json.dumps({"message": {"data": encoded}}).encode()
    headers = {"X-Goog-Signature": google_signature(CLIENT_TOKEN, data)}
    assert (await hook.client.post(PATH, data=body, headers=headers)).status == 200
    assert hook.publisher.messages[0].text == "ÿÿ?>"


# --- Documented shapes -----------------------------------------------------------------


async def test_user_message_text_as_the_receive_guide_shows_it(hook: Harness) -> None:
    response = await post(hook, fixture("user_message_text"))
    assert response.status == 200
    [message] = hook.publisher.messages
    assert message.channel is Channel.RCS
    assert (message.domain, message.endpoint, message.queue) == ("acme", "welcome-bot", "rcs")
    assert message.customer_address == PHONE
    assert message.customer_id == f"phone:{PHONE}"  # a phone channel, linked in acme
    assert message.provider_message_id == "EVENT_ID"  # the guide names it eventId
    assert message.id == inbound_event_id("acme", "rcs", "EVENT_ID")
    assert message.text == "Hi"
    assert message.occurred_at == NOW  # no sendTime: our receive time


def test_user_message_as_the_reference_shows_it() -> None:
    message = received("user_message_reference")
    assert message.provider_message_id == "MxCxZ3TXLBT1uO7rYjC4Ilkg"
    assert message.text == "Hello to you!"
    assert message.occurred_at == pytest.approx(NOW - 1.954876544)


def test_a_tapped_suggested_reply_is_its_text() -> None:
    message = received("user_message_suggestion")
    assert message.text == "Yes"
    assert message.occurred_at == NOW - 2


def test_a_shared_location_is_a_location() -> None:
    message = received("user_message_location")
    assert message.location == Location(latitude=37.4220188, longitude=-122.0844786)
    assert message.text == ""
    assert message.occurred_at == NOW - 2  # +01:00 offset read


def test_a_user_file_keeps_every_reference_google_gives() -> None:
    documented = fixture("user_message_file")
    message = received(documented)
    payload = documented["userFile"]["payload"]
    assert message.attachments == (
        Attachment(
            url=payload["fileUri"],
            content_type="image/gif",
            filename="4_animated.gif",
            size_bytes=127806,
        ),
    )
    [attachment] = received(
        "user_message_file_thumbnail"
    ).attachments  # the payload; the thumbnail is not an attachment
    assert (attachment.content_type, attachment.size_bytes) == ("video/mp4", 3456789)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("user_event_delivered", DeliveryStatus.DELIVERED),
        ("user_event_read", DeliveryStatus.READ),
        ("server_event_ttl_revoked", DeliveryStatus.UNDELIVERED),
    ],
)
async def test_delivery_events_are_statuses_of_our_message(
    hook: Harness, name: str, status: DeliveryStatus
) -> None:
    documented = fixture(name)
    assert (await post(hook, documented)).status == 200
    [report] = hook.publisher.statuses
    assert report.channel is Channel.RCS
    assert report.provider_message_id == "123"
    assert report.status is status
    assert report.provider_status == documented["eventType"]
    assert report.domain == "acme"


@pytest.mark.parametrize(
    "name", ["user_event_is_typing", "server_event_ttl_revoke_failed", "agent_launch_event"]
)
async def test_events_that_say_nothing_of_delivery_are_ignored(hook: Harness, name: str) -> None:
    response = await post(hook, fixture(name))
    assert response.status == 200
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
    assert hook.count("rbm", "ignored") == 1


def test_the_status_map_covers_every_documented_event_type() -> None:
    assert sorted(rbm.STATUS_MAP) == sorted(DOCUMENTED_EVENT_TYPES)
    assert sorted(rbm.DOCUMENTED_EVENT_TYPES) == sorted(DOCUMENTED_EVENT_TYPES)
    # A consent is not a status: the (un)subscribes are ignored as statuses.
    assert all(rbm.STATUS_MAP[t] is None for t in rbm.CONSENT_MAP)


# --- Unsubscribe and subscribe: the user's consent --------------------------------------


def consents(hook: Harness) -> list[ConsentReported]:
    return [e for e in hook.publisher.events if isinstance(e, ConsentReported)]


@pytest.mark.parametrize(
    ("name", "consent"),
    [("user_event_unsubscribe", Consent.OPT_OUT), ("user_event_subscribe", Consent.OPT_IN)],
)
async def test_an_unsubscribe_or_subscribe_reports_the_users_consent(
    hook: Harness, name: str, consent: Consent
) -> None:
    documented = fixture(name)
    assert (await post(hook, documented)).status == 200
    assert hook.publisher.statuses == []
    assert hook.publisher.messages == []
    assert consents(hook) == [
        ConsentReported(
            id=inbound_event_id("acme", "rcs", f"{documented['eventId']}/consent/{consent.value}"),
            domain="acme",
            occurred_at=rbm.parse_time(documented["sendTime"]) or 0.0,
            channel=Channel.RCS,
            endpoint="welcome-bot",
            customer_address=PHONE,
            customer_id=f"phone:{PHONE}",  # a phone channel, linked in acme
            consent=consent,
            provider_status=documented["eventType"],
        )
    ]
    assert hook.count("rbm", "accepted") == 1


async def test_the_reported_address_is_the_one_the_users_messages_carry(hook: Harness) -> None:
    assert (await post(hook, fixture("user_message_text"))).status == 200
    assert (await post(hook, fixture("user_event_unsubscribe"))).status == 200
    [message] = hook.publisher.messages
    [report] = consents(hook)
    assert (report.endpoint, report.customer_address, report.customer_id) == (
        message.endpoint,
        message.customer_address,
        message.customer_id,
    )


async def test_a_redelivered_unsubscribe_is_the_same_report(hook: Harness) -> None:
    for _ in range(2):
        assert (await post(hook, fixture("user_event_unsubscribe"))).status == 200
    first, again = consents(hook)
    assert first == again


async def test_an_unsubscribe_that_cannot_be_told_is_set_aside(hook: Harness) -> None:
    unsubscribe = fixture("user_event_unsubscribe")
    for inner, reason in (
        ({**unsubscribe, "senderPhoneNumber": "12223334444"}, "E.164"),
        ({**unsubscribe, "eventId": None}, "UNSUBSCRIBE without eventId"),
        ({**unsubscribe, "eventId": "x" * 600}, "report id"),
        ({**unsubscribe, "sendTime": "2023-11-06T22:13:19Z"}, "older than"),
        ({**unsubscribe, "agentId": "nobody@rbm.goog"}, "not configured"),
    ):
        assert reason in await hook.set_aside(await post(hook, inner), "rbm")
    assert consents(hook) == []


# --- Set aside, replays -----------------------------------------------------------------


async def test_a_message_for_an_unknown_agent_is_set_aside(hook: Harness) -> None:
    inner = {**fixture("user_message_text"), "agentId": "nobody@rbm.goog"}
    assert "not configured" in await hook.set_aside(await post(hook, inner), "rbm")


async def test_an_agent_webhook_sets_aside_another_agents_message(hook: Harness) -> None:
    response = await post(hook, fixture("user_message_text"), PATH + "/globex-bot", GLOBEX_TOKEN)
    assert "agent of this webhook" in await hook.set_aside(response, "rbm")


async def test_unusable_values_are_set_aside(hook: Harness) -> None:
    text = fixture("user_message_text")
    for inner, reason in (
        ({**text, "senderPhoneNumber": "12223334444"}, "E.164"),
        ({**text, "eventId": None}, "messageId"),
        ({**text, "eventId": "a\x00b"}, "provider message id"),
        ({k: v for k, v in text.items() if k != "text"}, "without text"),
        ({**fixture("user_event_read"), "messageId": None}, "without messageId"),
        ({**fixture("user_message_location"), "location": {"latitude": 1.0}}, "longitude"),
        ({**fixture("user_message_file"), "userFile": {"payload": {}}}, "fileUri"),
    ):
        assert reason in await hook.set_aside(await post(hook, inner), "rbm")


async def test_a_stale_signed_send_time_is_set_aside(hook: Harness) -> None:
    max_age = CHANNELS.rbm.max_age_seconds
    assert max_age == 8 * 24 * 3600
    old = {**fixture("user_message_reference"), "sendTime": "2023-11-06T22:13:19Z"}
    assert "older than" in await hook.set_aside(await post(hook, old), "rbm")
    fresh = {**fixture("user_message_reference"), "sendTime": "2023-11-06T22:13:21Z"}
    assert (await post(hook, fresh)).status == 200
    assert len(hook.publisher.messages) == 1


async def test_a_replayed_delivery_is_the_same_event(hook: Harness) -> None:
    """Pub/Sub redelivers at least once, and nothing signed can be claimed once: the same
    request publishes the same event ids, which the router drops as duplicates."""
    for _ in range(2):
        assert (await post(hook, fixture("user_message_text"))).status == 200
        assert (await post(hook, fixture("user_event_read"))).status == 200
    first, second = hook.publisher.messages
    assert first.id == second.id
    assert hook.publisher.statuses[0].id == hook.publisher.statuses[1].id


def test_rfc3339_times_as_the_reference_writes_them() -> None:
    assert rbm.parse_time("2014-10-02T15:01:23Z") == 1412262083.0
    assert rbm.parse_time("2014-10-02T15:01:23.045123456Z") == pytest.approx(1412262083.045123456)
    assert rbm.parse_time("2014-10-02T15:01:23+05:30") == 1412262083.0 - 5.5 * 3600
    for bad in (None, "", "2014-10-02", "2014-13-02T15:01:23Z", "yesterday"):
        assert rbm.parse_time(bad) is None


# --- Egress -----------------------------------------------------------------------------


def reply(**overrides: Any) -> ReplyRequested:
    fields: dict[str, Any] = {
        "id": "6b0f7c4e-4d8a-4f43-9a53-1f6c1e2b3a4d",
        "domain": "acme",
        "occurred_at": NOW,
        "conversation_id": "c1",
        "agent_id": "ann",
        "channel": Channel.RCS,
        "endpoint": "welcome-bot",
        "customer_address": PHONE,
        "text": "Your order left today.",
    }
    return ReplyRequested(**{**fields, **overrides})


def sent_content(message: Outbound) -> dict[str, Any]:
    request = rbm.rbm_request(message, CHANNELS, {"RBM_SERVICE_ACCOUNT": "{}"})
    assert request.json is not None
    assert content_problem(request.json) is None  # the fake's reading of RBM's rules
    content: dict[str, Any] = request.json["contentMessage"]
    return content


def test_the_send_call_is_phones_agent_messages_with_our_id() -> None:
    message = reply()
    request = rbm.rbm_request(message, CHANNELS, {"RBM_SERVICE_ACCOUNT": "{}"})
    assert request.provider == "rbm"
    assert request.method == "POST"
    assert request.url == (
        "https://rcsbusinessmessaging.googleapis.com/v1/phones/+12223334444/agentMessages"
        f"?messageId={message.id}&agentId=welcome-bot"
    )
    assert request.json == {"contentMessage": {"text": "Your order left today."}}
    assert request.prepare is not None  # the access token comes before the first attempt
    assert "Authorization" not in request.headers
    assert request.message_id({"name": "phones/+12223334444/agentMessages/x"}) == message.id


def test_an_outbound_id_that_is_not_a_uuid_becomes_a_stable_uuid() -> None:
    first = rbm.outbound_message_id("bot-reply-17")
    assert first == rbm.outbound_message_id("bot-reply-17") == str(uuid.UUID(first))
    assert rbm.outbound_message_id("6B0F7C4E-4D8A-4F43-9A53-1F6C1E2B3A4D") == (
        "6b0f7c4e-4d8a-4f43-9a53-1f6c1e2b3a4d"
    )


def test_ownership_is_an_rcs_reply_from_a_configured_agent() -> None:
    assert rbm.owns(reply(), CHANNELS)
    assert not rbm.owns(reply(endpoint="nobody-bot"), CHANNELS)
    assert not rbm.owns(reply(channel=Channel.SMS), CHANNELS)


def test_quick_replies_are_suggested_replies_when_they_fit() -> None:
    content = sent_content(reply(agent_id=None, bot_id="faq", quick_replies=("Yes", "No")))
    assert content == {
        "text": "Your order left today.",
        "suggestions": [
            {"reply": {"text": "Yes", "postbackData": "Yes"}},
            {"reply": {"text": "No", "postbackData": "No"}},
        ],
    }
    many = tuple(f"Option {n}" for n in range(12))
    listed = sent_content(reply(agent_id=None, bot_id="faq", quick_replies=many))
    assert "suggestions" not in listed
    assert listed["text"].endswith("11. Option 10\n12. Option 11")


def test_a_location_is_a_view_location_action() -> None:
    place = Location(latitude=37.42, longitude=-122.08, name="Googleplex")
    content = sent_content(reply(text="", location=place))
    assert content == {
        "text": "Googleplex",
        "suggestions": [
            {
                "action": {
                    "text": "View location",
                    "postbackData": "view_location",
                    "viewLocationAction": {
                        "latLong": {"latitude": 37.42, "longitude": -122.08},
                        "label": "Googleplex",
                    },
                }
            }
        ],
    }


def test_a_file_alone_is_content_info_and_with_text_a_rich_card() -> None:
    pdf = Attachment(url="https://cdn.example/terms.pdf", content_type="application/pdf")
    assert sent_content(reply(text="", attachments=(pdf,))) == {
        "contentInfo": {"fileUrl": "https://cdn.example/terms.pdf"}
    }
    photo = Attachment(url="https://cdn.example/parcel.jpg", size_bytes=120_000)
    assert sent_content(reply(attachments=(photo,))) == {
        "richCard": {
            "standaloneCard": {
                "cardOrientation": "VERTICAL",
                "cardContent": {
                    "description": "Your order left today.",
                    "media": {
                        "height": "MEDIUM",
                        "contentInfo": {"fileUrl": "https://cdn.example/parcel.jpg"},
                    },
                },
            }
        }
    }


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"attachments": (Attachment(url="https://x/a.pdf"),)}, "rich card"),
        ({"attachments": (Attachment(url="https://x/a.zip"),)}, "does not send"),
        (
            {"attachments": (Attachment(url="https://x/a.png"), Attachment(url="https://x/b.png"))},
            "at most 1",
        ),
        (
            {"attachments": (Attachment(url="https://x/a.mp4", size_bytes=100_000_001),)},
            "100000000",
        ),
        ({"text": "x" * 3073}, "3072"),
        ({"text": ""}, "needs text"),
    ],
)
def test_what_rbm_cannot_send_is_refused_before_sending(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(MediaRefused) as refused:
        rbm.rbm_request(reply(**overrides), CHANNELS, {"RBM_SERVICE_ACCOUNT": "{}"})
    assert reason in refused.value.reason


def test_a_notification_is_sent_like_a_reply() -> None:
    notice = NotificationRequested(
        id="0a5a1a8e-7a36-4bd6-8d4e-0f7a3f2f5c01",
        domain="acme",
        occurred_at=NOW,
        conversation_id="c2",
        customer_id=f"phone:{PHONE}",
        channel=Channel.RCS,
        endpoint="welcome-bot",
        customer_address=PHONE,
        text="Your parcel arrives tomorrow.",
        answer=Answerer(mode=AnswerMode.QUEUE, queue="rcs", until=NOW + 86400),
    )
    assert sent_content(notice) == {"text": "Your parcel arrives tomorrow."}


def test_media_limits_follow_the_documentation() -> None:
    limits = rbm.MEDIA_LIMITS
    assert limits.max_count == 1
    assert {rule.kind for rule in limits.rules} == {"image", "video", "audio", "document"}
    assert all(rule.max_bytes == 100_000_000 for rule in limits.rules)
    assert limits.rule_for("application/pdf") is not None
    assert limits.rule_for("image/webp") is None


# --- Service account tokens --------------------------------------------------------------


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def service_account(key: rsa.RSAPrivateKey, token_uri: str) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "rbm-welcome-bot",
            "private_key_id": "a1b2c3",
            "private_key": pem,
            "client_email": "rbm-agent@rbm-welcome-bot.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": token_uri,
        }
    )


def test_the_assertion_verifies_with_the_public_key(private_key: rsa.RSAPrivateKey) -> None:
    key = service_account(private_key, "https://oauth2.googleapis.com/token")
    signed = rbm_tokens.assertion(rbm_tokens.ServiceAccount.parse(key), NOW)
    header = jwt.get_unverified_header(signed)
    assert (header["alg"], header["kid"]) == ("RS256", "a1b2c3")
    claims = jwt.decode(
        signed,
        public_pem(private_key),
        algorithms=["RS256"],
        audience="https://oauth2.googleapis.com/token",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {
        "iss": "rbm-agent@rbm-welcome-bot.iam.gserviceaccount.com",
        "scope": "https://www.googleapis.com/auth/rcsbusinessmessaging",
        "aud": "https://oauth2.googleapis.com/token",
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"client_email": "a@b"}',
        '{"client_email": "", "private_key": "k", "token_uri": "u"}',
    ],
)
def test_a_key_that_is_not_a_service_account_fails_the_send(raw: str) -> None:
    with pytest.raises(PrepareFailed) as failed:
        rbm_tokens.ServiceAccount.parse(raw)
    assert not failed.value.retryable


async def test_tokens_are_fetched_once_and_renewed_before_they_expire(
    private_key: rsa.RSAPrivateKey,
) -> None:
    fake = FakeRbm(
        public_key_pem=public_pem(private_key),
        client_email="rbm-agent@rbm-welcome-bot.iam.gserviceaccount.com",
        leeway=3600,  # this test moves the clock an hour ahead of the fake's
    )
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    fake.token_url = str(server.make_url("/token"))
    now = [time.time()]
    tokens = rbm_tokens.AccessTokens(clock=lambda: now[0])
    key = service_account(private_key, fake.token_url)
    try:
        async with aiohttp.ClientSession() as session:
            first = await tokens.token(session, key)
            assert await tokens.token(session, key) == first
            now[0] += 3599 - 301  # still more than 5 minutes left
            assert await tokens.token(session, key) == first
            now[0] += 2
            renewed = await tokens.token(session, key)
            assert renewed != first
            assert renewed in fake.issued
            assert len(fake.grants) == 2
            wrong = service_account(rsa.generate_private_key(65537, 2048), fake.token_url)
            with pytest.raises(PrepareFailed) as refused:
                await tokens.token(session, wrong)
            assert refused.value.reason == "RBM token endpoint answered HTTP 400 invalid_grant"
            assert not refused.value.retryable
    finally:
        await server.close()


async def test_an_unreachable_or_failing_token_endpoint_is_retryable(
    private_key: rsa.RSAPrivateKey,
) -> None:
    async def broken(_request: web.Request) -> web.Response:
        return web.json_response({"error": "internal_failure"}, status=503)

    app = web.Application()
    app.router.add_post("/token", broken)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            key = service_account(private_key, str(server.make_url("/token")))
            with pytest.raises(PrepareFailed) as failed:
                await rbm_tokens.AccessTokens().token(session, key)
            assert failed.value.retryable
            closed = service_account(private_key, "http://127.0.0.1:9/token")
            with pytest.raises(PrepareFailed) as unreachable:
                await rbm_tokens.AccessTokens().token(session, closed)
            assert unreachable.value.retryable
    finally:
        await server.close()


def test_the_declaration_names_what_the_adapter_does() -> None:
    declaration = rbm.DECLARATION
    assert declaration.channels == ("rcs",)
    assert "HMAC-SHA512" in declaration.signature
    assert "READ" in declaration.read_receipts


@pytest.mark.parametrize(
    "section",
    [
        {"max_age_seconds": 59},
        {"max_age_seconds": 31 * 24 * 3600},
        {"agents": [{"agent_id": "a/b", "domain": "acme"}]},
        {"agents": [{"agent_id": "", "domain": "acme"}]},
        {"agents": [{"agent_id": "x", "domain": "acme"}, {"agent_id": "x", "domain": "acme"}]},
    ],
)
def test_the_rbm_section_refuses_what_cannot_work(section: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"rbm": section}, ChannelsConfig)
