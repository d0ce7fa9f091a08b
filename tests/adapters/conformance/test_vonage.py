"""Vonage conformance: signatures checked against Vonage's own validators and published
vectors, every documented webhook shape, refusals, and the Messages API sends.

Documentation the fixtures (tests/adapters/fixtures/vonage/) are copied from:
- Messages API webhooks (inbound message, message status), v1:
  https://developer.vonage.com/en/api/messages#webhooks
- Messages API statuses: https://developer.vonage.com/en/messages/concepts/messages-status-callbacks
- Signed webhooks (JWT, payload_hash):
  https://developer.vonage.com/en/messages/concepts/signed-webhooks
- SMS API signatures: https://developer.vonage.com/en/getting-started/concepts/signing-messages
- SMS API inbound and receipts: https://developer.vonage.com/en/messaging/sms/guides/inbound-sms,
  https://developer.vonage.com/en/messaging/sms/guides/delivery-receipts, and
  https://developer.vonage.com/en/api/sms (example values)
- Sends: https://developer.vonage.com/en/api/messages#SendMessage and Vonage's cURL snippets
  (github.com/Vonage/vonage-curl-code-snippets, messages/whatsapp/send-location.sh …)

The WhatsApp contact card fixture is WhatsApp's own contact object (name, phones, emails,
org) under ``contact``: Vonage's reference lists the ``contact`` message type without an
example we could find.

References: ``vonage_jwt.verify_signature`` (Messages API webhooks), ``vonage_http_client``'s
``Auth.sign_params``/``check_signature`` (SMS API HMAC signatures), and the signature
vectors Vonage's Node SDK publishes for all five SMS API methods
(vonage-node-sdk packages/sms/__tests__/__dataSets__/signature.ts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vonage_http_client.auth import Auth  # type: ignore[import-untyped]  # no types shipped
from vonage_jwt import JwtClient, VonageVerifyJwtError, verify_signature  # type: ignore[import-untyped]

from adapters import vonage, vonage_send, vonage_signatures
from adapters.base import SignatureRejected
from adapters.config import ChannelsConfig, VonageConfig
from adapters.egress import build_request
from adapters.media import MediaRefused
from adapters.provider_api import EgressUnroutable, PrepareFailed
from adapters.webhooks import WebhookContext, refuse_encoded_bodies, webhook_routes
from runtime.metrics import Metrics
from schemas import (
    Answerer,
    Attachment,
    Channel,
    Contact,
    DeliveryStatus,
    DeliveryStatusChanged,
    Location,
    MessageChange,
    MessageChanged,
    MessageReceived,
    MessageTag,
    NotificationRequested,
    ReplyRequested,
    TemplateUse,
)
from tests.adapters.conftest import Harness, MemoryNonces, RecordingPublisher
from tests.fakes.vonage import FakeVonage

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vonage"
SECRET = "vonage-signature-secret-0123456789"
API_KEY = "abcd1234"
APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
TS = datetime(2025, 2, 3, 12, 14, 25, tzinfo=UTC).timestamp()
"""The documented examples' ``timestamp``."""
NOW = TS + 120.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
ENVIRON = {"VONAGE_SIGNATURE_SECRET": SECRET, "VONAGE_PRIVATE_KEY": PEM}
CHANNELS = msgspec.toml.decode(
    f"""
phone_identity_domains = ["acme"]

[vonage]
api_key = "{API_KEY}"
application_id = "{APPLICATION_ID}"
messages_api_base_url = "https://api.vonage.test"
numbers = [
  {{ number = "447700900000", domain = "acme", queue = "sms" }},
  {{ number = "447700900001", domain = "acme" }},
  {{ number = "0123456789012345", domain = "acme" }},
  {{ number = "16273", domain = "globex" }},
  {{ number = "Vonage", domain = "acme" }},
  {{ number = "AcmeInc", domain = "acme" }},
]
""",
    type=ChannelsConfig,
)
CUSTOMER = "+447700900001"
MESSAGE_UUID = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
QUOTED_UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
DOC_JTI = "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5"
"""The ``jti`` of the documented sample token."""


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def body_of(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def messages_token(
    body: bytes,
    *,
    iat: float = NOW,
    jti: str | None = None,
    secret: str = SECRET,
    **claims: Any,
) -> str:
    """A webhook JWT as Vonage documents it, made with PyJWT (not our code); a new ``jti``
    unless given."""
    payload = {
        "iat": int(iat),
        "jti": jti or str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": API_KEY,
        "application_id": APPLICATION_ID,
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def signed_sms(
    params: Mapping[str, str], *, timestamp: float = NOW, nonce: str = "n-1"
) -> dict[str, str]:
    """``params`` signed as the SMS API signs (``md5hash``, the account default)."""
    out = {**params, "timestamp": str(int(timestamp)), "nonce": nonce}
    out["sig"] = vonage_signatures.sms_signature(SECRET, out, "md5hash")
    return out


# --- Harness ---------------------------------------------------------------------------


async def start(config: ChannelsConfig = CHANNELS) -> Harness:
    publisher, nonces, metrics = RecordingPublisher(), MemoryNonces(), Metrics()
    ctx = WebhookContext(
        channels=config,
        environ=ENVIRON,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        clock=lambda: NOW,
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    app.add_routes(webhook_routes(ctx))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Harness(client, publisher, metrics, nonces)


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    harness = await start()
    yield harness
    await harness.client.close()


async def post_message(
    hook: Harness, payload: Mapping[str, Any], path: str = vonage.INBOUND_PATH, **claims: Any
) -> ClientResponse:
    body = body_of(payload)
    return await hook.client.post(path, data=body, headers=bearer(messages_token(body, **claims)))


async def one_event(
    hook: Harness, payload: Mapping[str, Any], path: str = vonage.INBOUND_PATH
) -> Any:
    response = await post_message(hook, payload, path)
    assert response.status == 200, await response.text()
    assert hook.publisher.dead_letters == []
    [event] = hook.publisher.events
    return event


# --- Signatures: the Messages API's JWT ----------------------------------------------


def test_documented_sample_claims_verify_and_the_sdk_agrees() -> None:
    body = body_of(fixture("inbound_sms_text.json"))
    now = time.time()  # the SDK's validator reads the clock itself (iat, exp)
    token = messages_token(body, iat=now, jti=DOC_JTI)
    assert verify_signature(token, SECRET) is True
    nonce = vonage_signatures.verify_messages_signature(
        SECRET, f"Bearer {token}", body, now, 60, API_KEY
    )
    assert (nonce.provider, nonce.value) == ("vonage", DOC_JTI)
    assert nonce.expires_at == int(now) + 60


def test_a_token_of_another_secret_fails_here_as_in_the_sdk() -> None:
    body = b'{"channel":"sms"}'
    now = time.time()
    token = messages_token(body, iat=now, secret="another-secret-of-32-characters!")
    assert verify_signature(token, SECRET) is False
    with pytest.raises(SignatureRejected) as refused:
        vonage_signatures.verify_messages_signature(SECRET, f"Bearer {token}", body, now, 60)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("", 401),
        ("Basic dXNlcjpwYXNz", 401),
        ("Bearer ", 401),
        ("Bearer not-a-jwt", 403),
        ("Bearer a.b.c", 403),
        ("Bearer " + "a" * 9000, 403),
    ],
)
def test_missing_or_malformed_tokens_are_refused(authorization: str | None, status: int) -> None:
    with pytest.raises(SignatureRejected) as refused:
        vonage_signatures.verify_messages_signature(SECRET, authorization, b"{}", NOW, 60)
    assert refused.value.status == status


def test_an_unsigned_alg_none_token_is_refused() -> None:
    body = b"{}"
    claims = {"iat": int(NOW), "jti": "x", "payload_hash": hashlib.sha256(body).hexdigest()}
    token = jwt.encode(claims, key="", algorithm="none")
    with pytest.raises(SignatureRejected):
        vonage_signatures.verify_messages_signature(SECRET, f"Bearer {token}", body, NOW, 60)


def test_a_token_whose_header_names_another_alg_is_refused() -> None:
    body = b"{}"
    claims = {"iat": int(NOW), "jti": "x", "payload_hash": hashlib.sha256(body).hexdigest()}
    header = base64.urlsafe_b64encode(b'{"alg":"HS512","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    mac = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(SignatureRejected, match="not HS256"):
        vonage_signatures.verify_messages_signature(SECRET, f"Bearer {token}", body, NOW, 60)


# --- Signatures: the SMS API's sig -----------------------------------------------------

#: Vonage's published vectors (Node SDK signature data set): one request, five methods.
VECTOR_PARAMS = {
    "message-timestamp": "2013-11-21 15:27:30",
    "messageId": "020000001B0FE827",
    "msisdn": "14843472194",
    "text": "Test again",
    "timestamp": "1385047698",
    "to": "13239877404",
    "type": "text",
}
VECTOR_SECRET = "my_secret_key_for_testing"


@pytest.mark.parametrize(
    ("method", "signature"),
    [
        ("md5hash", "d2e7b1dc968737c5998ad624e02f90b7"),
        ("md5", "DDEBD46008C2D4E93CCE578A332A52D5"),
        ("sha1", "27D0D05C2876C7CB1720DBCDBA4D492E1E55C09A"),
        ("sha256", "DDB8397C2B90AAC7F3882D306475C9A5058C92322EEF43C92B298B6E0FC0D330"),
        (
            "sha512",
            "E0D3C650F8C9D1A5C174D10DDDBFB003E561F59B265616208B0487C5D819481CD3C311D59CF6165ECD1139622D5BA3A256C0D763AC4A9AD9144B5A426B94FE82",
        ),
    ],
)
def test_sms_signatures_match_vonages_published_vectors(method: str, signature: str) -> None:
    assert (
        vonage_signatures.sms_signature(VECTOR_SECRET, VECTOR_PARAMS, method) == signature.lower()
    )
    params = {**VECTOR_PARAMS, "sig": signature}
    nonce = vonage_signatures.verify_sms_signature(VECTOR_SECRET, params, method, 1385047698.0, 60)
    assert nonce.value == signature  # no nonce in the vector: the sig is claimed


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_sms_hmac_signatures_agree_with_the_python_sdk(method: str) -> None:
    params = {**VECTOR_PARAMS, "text": "a=b & c", "nonce": "5e7d1d1c"}
    auth = Auth(api_key=API_KEY, signature_secret=SECRET, signature_method=method)
    assert vonage_signatures.sms_signature(SECRET, params, method) == auth.sign_params(dict(params))
    signed = {**params, "sig": vonage_signatures.sms_signature(SECRET, params, method).upper()}
    assert auth.check_signature(dict(signed)) is True
    vonage_signatures.verify_sms_signature(SECRET, signed, method, 1385047698.0, 60)


def test_a_tampered_parameter_fails_the_sms_signature() -> None:
    signed = signed_sms(fixture("sms_inbound.json"))
    with pytest.raises(SignatureRejected) as refused:
        vonage_signatures.verify_sms_signature(
            SECRET, {**signed, "text": "send money"}, "md5hash", NOW, 60
        )
    assert refused.value.status == 403


# --- Messages API inbound: every documented shape ----------------------------------------


async def test_sms_text(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_sms_text.json"))
    assert isinstance(msg, MessageReceived)
    assert (msg.channel, msg.endpoint, msg.customer_address) == (
        Channel.SMS,
        "447700900000",
        CUSTOMER,
    )
    assert (msg.domain, msg.queue, msg.customer_id) == ("acme", "sms", f"phone:{CUSTOMER}")
    assert (msg.provider_message_id, msg.text, msg.occurred_at) == (
        MESSAGE_UUID,
        "Hello From Vonage!",
        TS,
    )


@pytest.mark.parametrize(
    ("name", "kind", "url", "content_type", "caption"),
    [
        ("inbound_mms_image.json", "image", "https://example.com/image.jpg", None, True),
        ("inbound_mms_audio.json", "audio", "https://example.com/audio.mp3", None, False),
        ("inbound_mms_video.json", "video", "https://example.com/video.mp4", None, True),
        ("inbound_mms_vcard.json", "vcard", "https://example.com/contact.vcf", "text/vcard", False),
        ("inbound_mms_file.json", "file", "https://example.com/file.pdf", None, True),
    ],
)
async def test_mms_media(
    hook: Harness, name: str, kind: str, url: str, content_type: str | None, caption: bool
) -> None:
    payload = fixture(name)
    msg = await one_event(hook, payload)
    assert isinstance(msg, MessageReceived)
    assert msg.channel is Channel.SMS
    [attachment] = msg.attachments
    assert (attachment.url, attachment.content_type) == (url, content_type)
    expected_caption = payload[kind].get("caption")
    assert attachment.caption == expected_caption
    assert msg.text == (expected_caption or "")
    assert bool(expected_caption) is caption


async def test_mms_content_carries_every_item(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_mms_content.json"))
    assert [(a.url, a.content_type) for a in msg.attachments] == [
        ("https://example.com/image.jpg", None),
        ("https://example.com/contact.vcf", "text/vcard"),
    ]


async def test_mms_text(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_mms_text.json"))
    assert (msg.channel, msg.text) == (Channel.SMS, "Hello From Vonage!")


async def test_whatsapp_text_has_the_reply_window(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_whatsapp_text.json"))
    assert (msg.channel, msg.text, msg.in_reply_to) == (
        Channel.WHATSAPP,
        "Hello From Vonage!",
        None,
    )
    assert msg.customer_id == f"phone:{CUSTOMER}"  # the same customer as on SMS
    assert msg.reply_window_ends_at == TS + 24 * 3600


async def test_whatsapp_quote_names_the_quoted_message(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_whatsapp_quote.json"))
    assert (msg.text, msg.in_reply_to) == ("Yes please", QUOTED_UUID)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("inbound_whatsapp_image.json", "image"),
        ("inbound_whatsapp_audio.json", "audio"),
        ("inbound_whatsapp_video.json", "video"),
        ("inbound_whatsapp_file.json", "file"),
    ],
)
async def test_whatsapp_media_keeps_vonages_references(hook: Harness, name: str, kind: str) -> None:
    payload = fixture(name)
    msg = await one_event(hook, payload)
    [attachment] = msg.attachments
    media = payload[kind]
    assert attachment.url == media["url"]
    assert attachment.media_id == media["url"].rsplit("/", 1)[1]
    assert attachment.filename == media["name"]
    assert attachment.caption == media.get("caption")
    assert msg.text == (media.get("caption") or "")


async def test_whatsapp_sticker_is_a_webp_image(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_whatsapp_sticker.json"))
    [attachment] = msg.attachments
    assert attachment == Attachment(
        url="https://api-us.nexmo.com/v3/media/1b456509-974c-458b-aafa-45fc48a4d976",
        content_type="image/webp",
        media_id="1b456509-974c-458b-aafa-45fc48a4d976",
    )


async def test_whatsapp_location(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_whatsapp_location.json"))
    assert msg.location == Location(
        latitude=40.34772,
        longitude=-74.18847,
        name="Vonage",
        address="23 Main St, Holmdel, NJ 07733, USA",
        url="https://www.vonage.com/",
    )
    assert msg.text == ""


async def test_whatsapp_contact_card(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_whatsapp_contact.json"))
    assert msg.contacts == (
        Contact(
            name="John Smith",
            phones=("+1 (650) 555-1234",),
            emails=("test@fb.com",),
            organization="WhatsApp",
        ),
    )


async def test_whatsapp_interactive_reply_is_its_title(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_whatsapp_reply.json"))
    assert (msg.text, msg.in_reply_to) == ("9am", QUOTED_UUID)


async def test_whatsapp_template_button_is_its_text(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_whatsapp_button.json"))
    assert msg.text == "Yes"
    payload = fixture("inbound_whatsapp_button.json")
    del payload["button"]["text"]
    hook.publisher.batches.clear()
    assert (await one_event(hook, payload)).text == "Yes-Button-Payload"


@pytest.mark.parametrize(
    ("name", "change", "emoji"),
    [
        ("inbound_whatsapp_reaction.json", MessageChange.REACTED, "\N{GRINNING FACE}"),
        ("inbound_whatsapp_unreaction.json", MessageChange.UNREACTED, None),
    ],
)
async def test_whatsapp_reactions_change_the_reacted_message(
    hook: Harness, name: str, change: MessageChange, emoji: str | None
) -> None:
    event = await one_event(hook, fixture(name))
    assert isinstance(event, MessageChanged)
    assert (event.provider_message_id, event.change, event.change_id, event.reaction) == (
        QUOTED_UUID,
        change,
        MESSAGE_UUID,
        emoji,
    )
    assert (event.channel, event.customer_address, event.endpoint) == (
        Channel.WHATSAPP,
        CUSTOMER,
        "447700900000",
    )


async def test_a_reaction_naming_no_message_is_set_aside(hook: Harness) -> None:
    payload = fixture("inbound_whatsapp_reaction.json")
    del payload["context"]
    reason = await hook.set_aside(await post_message(hook, payload), "vonage")
    assert "reaction naming no message" in reason


@pytest.mark.parametrize(
    "name", ["inbound_whatsapp_unsupported.json", "inbound_messenger_unsupported.json"]
)
async def test_unsupported_is_an_empty_message_a_person_can_answer(
    hook: Harness, name: str
) -> None:
    msg = await one_event(hook, fixture(name))
    assert (msg.text, msg.attachments) == ("", ())


async def test_an_order_is_accepted_and_not_routed(hook: Harness) -> None:
    response = await post_message(hook, fixture("inbound_whatsapp_order.json"))
    assert response.status == 200
    assert hook.publisher.events == [] == hook.publisher.dead_letters


async def test_messenger_customer_is_the_psid(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_messenger_text.json"))
    assert (msg.channel, msg.endpoint, msg.customer_address, msg.customer_id) == (
        Channel.MESSENGER,
        "0123456789012345",
        "9876543210987654",
        "messenger:9876543210987654",
    )
    hook.publisher.batches.clear()
    image = await one_event(hook, fixture("inbound_messenger_image.json"))
    assert [a.url for a in image.attachments] == ["https://example.com/image.jpg"]


async def test_viber(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_viber_text.json"))
    assert (msg.channel, msg.domain, msg.endpoint, msg.customer_address) == (
        Channel.VIBER,
        "globex",
        "16273",
        CUSTOMER,
    )
    assert msg.reply_window_ends_at is None
    hook.publisher.batches.clear()
    image = await one_event(hook, fixture("inbound_viber_image.json"))
    assert [a.url for a in image.attachments] == ["https://example.com/image.jpg"]


async def test_the_status_route_takes_a_message_too(hook: Harness) -> None:
    msg = await one_event(hook, fixture("inbound_sms_text.json"), vonage.STATUS_PATH)
    assert isinstance(msg, MessageReceived)


# --- Messages API statuses ---------------------------------------------------------------

DOCUMENTED_STATUSES = {"submitted", "delivered", "read", "rejected", "undeliverable"}
DOCUMENTED_DLR_STATUSES = {
    "accepted",
    "buffered",
    "delivered",
    "expired",
    "failed",
    "rejected",
    "unknown",
}


def test_the_status_maps_are_total_over_the_documented_statuses() -> None:
    assert set(vonage.STATUS_MAP) == DOCUMENTED_STATUSES
    assert set(vonage.SMS_DLR_STATUS_MAP) == DOCUMENTED_DLR_STATUSES


@pytest.mark.parametrize(
    ("name", "channel", "status", "error", "outbound_id"),
    [
        ("status_sms_submitted.json", Channel.SMS, DeliveryStatus.SENT, None, "abc123"),
        ("status_sms_delivered.json", Channel.SMS, DeliveryStatus.DELIVERED, None, "abc123"),
        ("status_whatsapp_delivered.json", Channel.WHATSAPP, DeliveryStatus.DELIVERED, None, None),
        ("status_whatsapp_read.json", Channel.WHATSAPP, DeliveryStatus.READ, None, None),
        ("status_messenger_read.json", Channel.MESSENGER, DeliveryStatus.READ, None, None),
        ("status_viber_delivered.json", Channel.VIBER, DeliveryStatus.DELIVERED, None, None),
        ("status_mms_rejected.json", Channel.SMS, DeliveryStatus.UNDELIVERED, "1000", "abc123"),
        (
            "status_whatsapp_undeliverable.json",
            Channel.WHATSAPP,
            DeliveryStatus.UNDELIVERED,
            "1300",
            None,
        ),
    ],
)
async def test_statuses(
    hook: Harness,
    name: str,
    channel: Channel,
    status: DeliveryStatus,
    error: str | None,
    outbound_id: str | None,
) -> None:
    payload = fixture(name)
    event = await one_event(hook, payload, vonage.STATUS_PATH)
    assert isinstance(event, DeliveryStatusChanged)
    assert (event.channel, event.status, event.provider_status) == (
        channel,
        status,
        payload["status"],
    )
    assert (event.provider_message_id, event.error_code, event.outbound_id) == (
        MESSAGE_UUID,
        error,
        outbound_id,
    )


async def test_an_undocumented_status_is_set_aside(hook: Harness) -> None:
    payload = {**fixture("status_sms_delivered.json"), "status": "teleported"}
    reason = await hook.set_aside(await post_message(hook, payload, vonage.STATUS_PATH), "vonage")
    assert reason == "status is not one Vonage documents"  # never the value itself


# --- Messages API refusals ---------------------------------------------------------------


async def test_missing_token_is_401_bad_is_403_and_nothing_is_published(hook: Harness) -> None:
    body = body_of(fixture("inbound_sms_text.json"))
    missing = await hook.client.post(vonage.INBOUND_PATH, data=body)
    assert missing.status == 401
    wrong = messages_token(body, secret="another-secret-of-32-characters!")
    assert (
        await hook.client.post(vonage.INBOUND_PATH, data=body, headers=bearer(wrong))
    ).status == 403
    assert hook.publisher.events == [] == hook.publisher.dead_letters
    assert hook.signature_failures("vonage") == 2


async def test_a_body_other_than_the_signed_one_is_403(hook: Harness) -> None:
    signed = body_of(fixture("inbound_sms_text.json"))
    tampered = signed.replace(b"Hello From Vonage!", b"Send me the codes")
    response = await hook.client.post(
        vonage.INBOUND_PATH, data=tampered, headers=bearer(messages_token(signed))
    )
    assert response.status == 403
    assert "payload_hash" in (await response.json())["error"]
    assert hook.publisher.events == []


@pytest.mark.parametrize("iat", [NOW - VonageConfig().max_age_seconds - 1, NOW + 16 * 60])
async def test_a_stale_or_future_token_is_403(hook: Harness, iat: float) -> None:
    response = await post_message(hook, fixture("inbound_sms_text.json"), iat=iat)
    assert response.status == 403
    assert hook.publisher.events == []


async def test_the_edges_of_the_window_are_accepted(hook: Harness) -> None:
    oldest = NOW - VonageConfig().max_age_seconds
    assert (await post_message(hook, fixture("inbound_sms_text.json"), iat=oldest)).status == 200
    newest = await post_message(hook, fixture("inbound_sms_text.json"), iat=NOW + 15 * 60, jti="2")
    assert newest.status == 200


async def test_an_expired_exp_is_403(hook: Harness) -> None:
    response = await post_message(hook, fixture("inbound_sms_text.json"), exp=int(NOW) - 1)
    assert response.status == 403


@pytest.mark.parametrize("nbf", [NOW + 16 * 60, NOW + 10 * 365 * 86400, "soon"])
async def test_a_token_not_valid_yet_is_403_as_the_sdk_refuses_it(hook: Harness, nbf: Any) -> None:
    """RFC 7519's ``nbf``: the SDK (PyJWT) refuses a token before it; we allow the clock skew
    ``iat`` is allowed (``PLAUSIBLE_FUTURE_SECONDS``)."""
    body = body_of(fixture("inbound_sms_text.json"))
    if not isinstance(nbf, str):
        with pytest.raises(VonageVerifyJwtError):
            verify_signature(
                messages_token(body, iat=time.time(), nbf=time.time() + nbf - NOW), SECRET
            )
    response = await post_message(hook, fixture("inbound_sms_text.json"), nbf=nbf)
    assert response.status == 403
    assert hook.publisher.events == []


async def test_a_token_valid_from_now_or_within_the_skew_is_accepted(hook: Harness) -> None:
    for jti, nbf in (("1", NOW - 60), ("2", NOW), ("3", NOW + 15 * 60)):
        response = await post_message(hook, fixture("inbound_sms_text.json"), nbf=nbf, jti=jti)
        assert response.status == 200


async def test_a_replayed_token_is_409_and_published_once(hook: Harness) -> None:
    body = body_of(fixture("inbound_sms_text.json"))
    headers = bearer(messages_token(body, jti=DOC_JTI))
    assert (await hook.client.post(vonage.INBOUND_PATH, data=body, headers=headers)).status == 200
    again = await hook.client.post(vonage.INBOUND_PATH, data=body, headers=headers)
    assert again.status == 409
    assert len(hook.publisher.events) == 1
    assert hook.nonces.claimed == {("vonage", DOC_JTI): NOW + VonageConfig().max_age_seconds}


async def test_a_failed_publish_releases_the_jti_for_vonages_retry(hook: Harness) -> None:
    body = body_of(fixture("inbound_sms_text.json"))
    headers = bearer(messages_token(body))
    hook.publisher.down = True
    assert (await hook.client.post(vonage.INBOUND_PATH, data=body, headers=headers)).status == 503
    hook.publisher.down = False
    assert (await hook.client.post(vonage.INBOUND_PATH, data=body, headers=headers)).status == 200


async def test_a_token_of_another_account_is_403(hook: Harness) -> None:
    response = await post_message(hook, fixture("inbound_sms_text.json"), api_key="zzzz9999")
    assert response.status == 403


async def test_an_unusable_jti_is_400(hook: Harness) -> None:
    response = await post_message(hook, fixture("inbound_sms_text.json"), jti="x" * 300)
    assert response.status == 400


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed"),
        (b'{"channel":"sms","message_uuid":"u","to":{"type":"sms"},"from":"1"}', "malformed"),
        (body_of({**fixture("inbound_sms_text.json"), "to": "15550000000"}), "not configured"),
        (
            body_of({**fixture("inbound_sms_text.json"), "channel": "rcs"}),
            "not one Switchboard handles",
        ),
        (body_of({"channel": "sms", "message_uuid": "u"}), "neither a message"),
        (body_of({**fixture("inbound_whatsapp_image.json"), "image": {}}), "without a url"),
    ],
)
async def test_signed_but_unusable_is_set_aside(hook: Harness, payload: bytes, reason: str) -> None:
    response = await hook.client.post(
        vonage.INBOUND_PATH, data=payload, headers=bearer(messages_token(payload))
    )
    assert reason in await hook.set_aside(response, "vonage")


async def test_a_customer_address_that_cannot_be_stored_is_set_aside(hook: Harness) -> None:
    payload = {**fixture("inbound_sms_text.json"), "from": "4477\x00"}
    assert "customer address" in await hook.set_aside(await post_message(hook, payload), "vonage")


async def test_missing_secret_is_503() -> None:
    unset = msgspec.structs.replace(CHANNELS.vonage, signature_secret_env="VONAGE_UNSET")
    harness = await start(msgspec.structs.replace(CHANNELS, vonage=unset))
    try:
        response = await post_message(harness, fixture("inbound_sms_text.json"))
        assert response.status == 503
    finally:
        await harness.client.close()


# --- SMS API webhooks ------------------------------------------------------------------


async def sms_get(hook: Harness, path: str, params: Mapping[str, str]) -> ClientResponse:
    return await hook.client.get(path + "?" + urllib.parse.urlencode(params))


async def test_sms_inbound_by_get_post_form_and_post_json(hook: Harness) -> None:
    params = fixture("sms_inbound.json")
    by_get = await sms_get(hook, vonage.SMS_INBOUND_PATH, signed_sms(params, nonce="a"))
    by_form = await hook.client.post(vonage.SMS_INBOUND_PATH, data=signed_sms(params, nonce="b"))
    by_json = await hook.client.post(vonage.SMS_INBOUND_PATH, json=signed_sms(params, nonce="c"))
    assert [r.status for r in (by_get, by_form, by_json)] == [200, 200, 200]
    messages = hook.publisher.messages
    assert len(messages) == 3
    assert len({m.id for m in messages}) == 1  # one message, however it came
    msg = messages[0]
    assert (msg.channel, msg.endpoint, msg.customer_address, msg.text) == (
        Channel.SMS,
        "447700900000",
        CUSTOMER,
        "Hello world",
    )
    assert msg.provider_message_id == "0A0000000123ABCD1"


async def test_sms_unicode_text(hook: Harness) -> None:
    params = signed_sms(fixture("sms_inbound_unicode.json"))
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=params)).status == 200
    assert hook.publisher.messages[0].text == "こんにちは世界"


async def test_concatenated_parts_are_published_one_by_one_into_one_conversation(
    hook: Harness,
) -> None:
    for nonce, name in (("p2", "sms_inbound_concat_2.json"), ("p1", "sms_inbound_concat_1.json")):
        response = await hook.client.post(
            vonage.SMS_INBOUND_PATH, data=signed_sms(fixture(name), nonce=nonce)
        )
        assert response.status == 200
    texts = [m.text for m in hook.publisher.messages]
    assert texts == ["and its second part.", "First part of a long message, "]  # as they came
    assert len({m.conversation_key for m in hook.publisher.messages}) == 1


async def test_a_binary_sms_is_accepted_and_not_routed(hook: Harness) -> None:
    params = signed_sms(fixture("sms_inbound_binary.json"))
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=params)).status == 200
    assert hook.publisher.events == [] == hook.publisher.dead_letters


async def test_delivery_receipts(hook: Harness) -> None:
    documented = signed_sms(fixture("sms_dlr.json"), nonce="d1")
    assert (await sms_get(hook, vonage.SMS_DLR_PATH, documented)).status == 200
    with_ref = signed_sms(fixture("sms_dlr_client_ref.json"), nonce="d2")
    assert (await hook.client.post(vonage.SMS_DLR_PATH, data=with_ref)).status == 200
    delivered, failed = hook.publisher.statuses
    assert (delivered.provider_message_id, delivered.status, delivered.provider_status) == (
        "0B00000127FDBC63",
        DeliveryStatus.DELIVERED,
        "delivered",
    )
    assert (delivered.error_code, delivered.outbound_id) == (None, None)
    assert (failed.status, failed.provider_status, failed.error_code, failed.outbound_id) == (
        DeliveryStatus.UNDELIVERED,
        "failed",
        "6",
        "my-personal-reference",
    )


@pytest.mark.parametrize("status", sorted(DOCUMENTED_DLR_STATUSES))
async def test_every_documented_receipt_status(hook: Harness, status: str) -> None:
    params = signed_sms({**fixture("sms_dlr.json"), "status": status})
    assert (await hook.client.post(vonage.SMS_DLR_PATH, data=params)).status == 200
    mapped = vonage.SMS_DLR_STATUS_MAP[status]
    assert [s.status for s in hook.publisher.statuses] == ([] if mapped is None else [mapped])


async def test_sms_refusals(hook: Harness) -> None:
    params = fixture("sms_inbound.json")
    unsigned = await hook.client.post(vonage.SMS_INBOUND_PATH, data=params)
    assert unsigned.status == 401
    bad = {**signed_sms(params), "sig": "0" * 32}
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=bad)).status == 403
    tampered = {**signed_sms(params), "text": "Send me the codes"}
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=tampered)).status == 403
    stale = signed_sms(params, timestamp=NOW - VonageConfig().sms_max_age_seconds - 1)
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=stale)).status == 403
    future = signed_sms(params, timestamp=NOW + 16 * 60)
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=future)).status == 403
    other_account = signed_sms({**params, "api-key": "zzzz9999"})
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=other_account)).status == 403
    assert hook.publisher.events == []
    good = signed_sms(params, nonce="once")
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=good)).status == 200
    assert (await sms_get(hook, vonage.SMS_INBOUND_PATH, good)).status == 409
    assert len(hook.publisher.events) == 1


async def test_ambiguous_sms_requests_are_4xx_before_the_signature(hook: Harness) -> None:
    signed = signed_sms(fixture("sms_inbound.json"))
    twice = urllib.parse.urlencode([*signed.items(), ("text", "again")])
    response = await hook.client.get(vonage.SMS_INBOUND_PATH + "?" + twice)
    assert response.status == 400
    nested = await hook.client.post(vonage.SMS_INBOUND_PATH, json={**signed, "text": {"a": 1}})
    assert nested.status == 400
    xml = await hook.client.post(
        vonage.SMS_INBOUND_PATH, data=b"<sms/>", headers={"Content-Type": "text/xml"}
    )
    assert xml.status == 415
    long_nonce = {**signed, "nonce": "n" * 300}
    assert (await hook.client.post(vonage.SMS_INBOUND_PATH, data=long_nonce)).status == 400
    assert hook.publisher.events == []


async def test_a_signed_sms_to_an_unknown_number_is_set_aside(hook: Harness) -> None:
    params = signed_sms({**fixture("sms_inbound.json"), "to": "15550000000"})
    response = await hook.client.post(vonage.SMS_INBOUND_PATH, data=params)
    assert "not configured" in await hook.set_aside(response, "vonage")


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
async def test_the_accounts_hmac_method_is_used(method: str) -> None:
    config = msgspec.structs.replace(
        CHANNELS, vonage=msgspec.structs.replace(CHANNELS.vonage, sms_signature_method=method)
    )
    harness = await start(config)
    try:
        params = {**fixture("sms_inbound.json"), "timestamp": str(int(NOW)), "nonce": "h"}
        auth = Auth(api_key=API_KEY, signature_secret=SECRET, signature_method=method)
        params["sig"] = auth.sign_params(dict(params))  # signed by Vonage's SDK
        response = await harness.client.post(vonage.SMS_INBOUND_PATH, data=params)
        assert response.status == 200
        md5hash_signed = signed_sms(fixture("sms_inbound.json"), nonce="m")
        refused = await harness.client.post(vonage.SMS_INBOUND_PATH, data=md5hash_signed)
        assert refused.status == 403
    finally:
        await harness.client.close()


# --- Configuration -----------------------------------------------------------------------


def test_numbers_are_written_as_vonage_writes_them() -> None:
    with pytest.raises(msgspec.ValidationError, match="without"):
        msgspec.convert({"numbers": [{"number": "+447700900000", "domain": "acme"}]}, VonageConfig)


@pytest.mark.parametrize("field", ["max_age_seconds", "sms_max_age_seconds"])
@pytest.mark.parametrize("value", [0, 30 * 24 * 3600 + 1])
def test_the_replay_windows_cannot_be_turned_off(field: str, value: int) -> None:
    with pytest.raises(msgspec.ValidationError, match="replay window"):
        msgspec.convert({field: value}, VonageConfig)


# --- Egress ------------------------------------------------------------------------------


def reply(channel: Channel = Channel.SMS, **overrides: Any) -> ReplyRequested:
    fields: dict[str, Any] = {
        "id": "7f1c1f2e-2d2e-4b8e-9a55-0b4a7e1d9c01",
        "domain": "acme",
        "occurred_at": NOW,
        "conversation_id": "c1",
        "agent_id": "ann",
        "channel": channel,
        "endpoint": "447700900000",
        "customer_address": CUSTOMER,
        "text": "Your order left today.",
    }
    fields.update(overrides)
    return ReplyRequested(**fields)


def send_body(message: ReplyRequested) -> dict[str, Any]:
    request = vonage_send.vonage_request(message, CHANNELS, ENVIRON)
    assert request.url == "https://api.vonage.test/v1/messages"
    assert request.json is not None
    return dict(request.json)


def test_an_sms_reply_is_a_text_message() -> None:
    assert send_body(reply()) == {
        "from": "447700900000",
        "to": "447700900001",
        "channel": "sms",
        "message_type": "text",
        "text": "Your order left today.",
        "client_ref": "7f1c1f2e-2d2e-4b8e-9a55-0b4a7e1d9c01",
    }


async def test_the_jwt_is_rs256_with_the_claims_vonage_sdks_send() -> None:
    request = vonage_send.vonage_request(reply(), CHANNELS, ENVIRON)
    assert request.prepare is not None
    prepared = await request.prepare(None)  # type: ignore[arg-type]  # no I/O: signs only
    scheme, token = prepared.headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, KEY.public_key(), algorithms=["RS256"])
    assert claims["application_id"] == APPLICATION_ID
    assert claims["exp"] - claims["iat"] == 15 * 60
    sdk = jwt.decode(
        JwtClient(APPLICATION_ID, PEM).generate_application_jwt(),
        KEY.public_key(),
        algorithms=["RS256"],
    )
    assert set(claims) == set(sdk)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT"}
    again = await request.prepare(None)  # type: ignore[arg-type]
    assert (
        jwt.decode(again.headers["Authorization"][7:], KEY.public_key(), algorithms=["RS256"])[
            "jti"
        ]
        != claims["jti"]
    )


async def test_a_key_written_on_one_line_is_read_and_a_bad_key_fails_the_send() -> None:
    one_line = {**ENVIRON, "VONAGE_PRIVATE_KEY": PEM.replace("\n", "\\n")}
    request = vonage_send.vonage_request(reply(), CHANNELS, one_line)
    assert request.prepare is not None
    await request.prepare(None)  # type: ignore[arg-type]
    broken = vonage_send.vonage_request(
        reply(), CHANNELS, {**ENVIRON, "VONAGE_PRIVATE_KEY": "nope"}
    )
    assert broken.prepare is not None
    with pytest.raises(PrepareFailed, match="not an unencrypted PEM RSA key"):
        await broken.prepare(None)  # type: ignore[arg-type]


def test_an_sms_reply_with_an_image_is_mms_with_the_text_as_caption() -> None:
    image = Attachment(url="https://cdn.example/receipt.png", content_type="image/png")
    body = send_body(reply(attachments=(image,)))
    assert (body["channel"], body["message_type"]) == ("mms", "image")
    assert body["image"] == {
        "url": "https://cdn.example/receipt.png",
        "caption": "Your order left today.",
    }


def test_whatsapp_image_with_caption_and_file_with_name() -> None:
    image = Attachment(url="https://cdn.example/a.jpg", content_type="image/jpeg")
    body = send_body(reply(Channel.WHATSAPP, attachments=(image,)))
    assert body["image"] == {
        "url": "https://cdn.example/a.jpg",
        "caption": "Your order left today.",
    }
    pdf = Attachment(
        url="https://cdn.example/inv", content_type="application/pdf", filename="invoice.pdf"
    )
    body = send_body(reply(Channel.WHATSAPP, text="", attachments=(pdf,)))
    assert (body["message_type"], body["file"]) == (
        "file",
        {"url": "https://cdn.example/inv", "name": "invoice.pdf"},
    )


@pytest.mark.parametrize(("channel", "longest"), [(Channel.WHATSAPP, 3000), (Channel.SMS, 3000)])
def test_text_longer_than_a_caption_goes_as_a_text_with_the_link(
    channel: Channel, longest: int
) -> None:
    """Vonage's models take captions of up to 3,000 characters (WhatsApp, MMS): a longer
    text is sent as text, the image as its link, rather than refused by Vonage."""
    image = Attachment(url="https://cdn.example/a.jpg", content_type="image/jpeg")
    body = send_body(reply(channel, text="x" * longest, attachments=(image,)))
    assert (body["message_type"], len(body["image"]["caption"])) == ("image", longest)
    body = send_body(reply(channel, text="x" * (longest + 1), attachments=(image,)))
    assert (body["message_type"], body["text"]) == (
        "text",
        "x" * (longest + 1) + "\nhttps://cdn.example/a.jpg",
    )


def test_text_beside_media_without_a_caption_goes_as_a_link() -> None:
    audio = Attachment(url="https://cdn.example/v.ogg", content_type="audio/ogg")
    body = send_body(reply(Channel.WHATSAPP, attachments=(audio,)))
    assert (body["message_type"], body["text"]) == (
        "text",
        "Your order left today.\nhttps://cdn.example/v.ogg",
    )
    alone = send_body(reply(Channel.WHATSAPP, text="", attachments=(audio,)))
    assert (alone["message_type"], alone["audio"]) == (
        "audio",
        {"url": "https://cdn.example/v.ogg"},
    )
    image = Attachment(url="https://cdn.example/a.jpg", content_type="image/jpeg")
    messenger = send_body(
        reply(
            Channel.MESSENGER,
            customer_address="9876543210987654",
            endpoint="0123456789012345",
            attachments=(image,),
        )
    )
    assert messenger["message_type"] == "text"


@pytest.mark.parametrize(
    ("channel", "attachment", "reason"),
    [
        (
            Channel.WHATSAPP,
            Attachment(url="https://x/a.gif", content_type="image/gif"),
            "does not send image/gif",
        ),
        (
            Channel.WHATSAPP,
            Attachment(url="https://x/a.png", content_type="image/png", size_bytes=6 * 1024 * 1024),
            "over",
        ),
        (
            Channel.VIBER,
            Attachment(url="https://x/v.mp4", content_type="video/mp4"),
            "does not send video/mp4",
        ),
        (
            Channel.SMS,
            Attachment(url="https://x/a.zip", content_type="application/zip"),
            "does not send",
        ),
        (Channel.SMS, Attachment(url="https://x/noext"), "media type unknown"),
    ],
)
def test_attachments_beyond_vonages_limits_are_refused_before_sending(
    channel: Channel, attachment: Attachment, reason: str
) -> None:
    endpoint = "16273" if channel is Channel.VIBER else "447700900000"
    with pytest.raises(MediaRefused, match=reason):
        vonage_send.vonage_request(
            reply(channel, endpoint=endpoint, attachments=(attachment,)), CHANNELS, ENVIRON
        )


def test_one_attachment_per_reply() -> None:
    two = tuple(Attachment(url=f"https://x/{n}.jpg", content_type="image/jpeg") for n in "ab")
    with pytest.raises(MediaRefused, match="at most 1"):
        vonage_send.vonage_request(reply(Channel.WHATSAPP, attachments=two), CHANNELS, ENVIRON)


def test_whatsapp_quick_replies_are_buttons_when_they_fit() -> None:
    body = send_body(
        reply(Channel.WHATSAPP, quick_replies=("Yes", "No"), bot_id="b", agent_id=None)
    )
    assert body["message_type"] == "custom"
    assert body["custom"] == {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Your order left today."},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "Yes", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "No", "title": "No"}},
                ]
            },
        },
    }
    many = send_body(
        reply(Channel.WHATSAPP, quick_replies=("A", "B", "C", "D"), bot_id="b", agent_id=None)
    )
    assert (many["message_type"], many["text"]) == (
        "text",
        "Your order left today.\n\n1. A\n2. B\n3. C\n4. D",
    )


def test_sms_quick_replies_are_numbered() -> None:
    body = send_body(reply(quick_replies=("Yes", "No"), bot_id="b", agent_id=None))
    assert body["text"] == "Your order left today.\n\n1. Yes\n2. No"


def test_locations() -> None:
    place = Location(
        latitude=37.758056,
        longitude=-122.425332,
        name="Facebook HQ",
        address="1 Hacker Way, Menlo Park, CA 94025",
    )
    body = send_body(reply(Channel.WHATSAPP, text="", location=place))
    assert body["custom"] == {
        "type": "location",
        "location": {
            "latitude": 37.758056,
            "longitude": -122.425332,
            "name": "Facebook HQ",
            "address": "1 Hacker Way, Menlo Park, CA 94025",
        },
    }
    sms = send_body(reply(location=place))
    assert sms["text"] == (
        "Your order left today.\nhttps://www.google.com/maps/search/?api=1&query=37.758056,-122.425332"
    )


def test_messenger_sends_to_the_psid_with_its_category() -> None:
    messenger = {"endpoint": "0123456789012345", "customer_address": "9876543210987654"}
    body = send_body(reply(Channel.MESSENGER, **messenger))
    assert (body["to"], body["messenger"]) == ("9876543210987654", {"category": "response"})
    tagged = send_body(reply(Channel.MESSENGER, message_tag=MessageTag.HUMAN_AGENT, **messenger))
    assert tagged["messenger"] == {"category": "message_tag", "tag": "HUMAN_AGENT"}


def test_viber_file_names_longer_than_25_characters_are_left_out() -> None:
    short = Attachment(url="https://x/f", content_type="application/pdf", filename="invoice.pdf")
    long = Attachment(url="https://x/f", content_type="application/pdf", filename="a" * 26 + ".pdf")
    viber = {"endpoint": "16273", "text": ""}
    assert send_body(reply(Channel.VIBER, attachments=(short,), **viber))["file"] == {
        "url": "https://x/f",
        "name": "invoice.pdf",
    }
    assert send_body(reply(Channel.VIBER, attachments=(long,), **viber))["file"] == {
        "url": "https://x/f"
    }
    assert send_body(reply(Channel.VIBER, endpoint="16273"))["channel"] == "viber_service"


def test_whatsapp_templates() -> None:
    template = TemplateUse(
        name="shipped",
        language="en-US",
        provider_template="order_shipped",
        parameters=("Ann", "42"),
    )
    body = send_body(reply(Channel.WHATSAPP, template=template))
    assert {k: body[k] for k in ("message_type", "template", "whatsapp")} == {
        "message_type": "template",
        "template": {"name": "order_shipped", "parameters": ["Ann", "42"]},
        "whatsapp": {"policy": "deterministic", "locale": "en_US"},
    }


def test_vonage_numbers_own_their_replies_and_egress_routes_them() -> None:
    assert vonage_send.owns(reply(), CHANNELS)
    assert not vonage_send.owns(reply(endpoint="+14155550100"), CHANNELS)
    assert (
        build_request(reply(Channel.VIBER, endpoint="16273"), CHANNELS, ENVIRON).provider
        == "vonage"
    )
    with pytest.raises(EgressUnroutable):
        vonage_send.vonage_request(reply(endpoint="15550000000"), CHANNELS, ENVIRON)


def test_the_answer_names_the_message_uuid() -> None:
    request = vonage_send.vonage_request(reply(), CHANNELS, ENVIRON)
    assert request.message_id({"message_uuid": MESSAGE_UUID}) == MESSAGE_UUID
    assert request.message_id({"type": "https://developer.vonage.com/api-errors"}) is None


def every_reply_shape() -> list[ReplyRequested]:
    """One reply of every shape the builder makes."""
    image = Attachment(url="https://cdn.example/a.jpg", content_type="image/jpeg")
    pdf = Attachment(url="https://cdn.example/f", content_type="application/pdf", filename="f.pdf")
    audio = Attachment(url="https://cdn.example/v.ogg", content_type="audio/ogg")
    vcard = Attachment(url="https://cdn.example/c.vcf", content_type="text/vcard")
    place = Location(latitude=37.758056, longitude=-122.425332, name="HQ")
    bot = {"bot_id": "b", "agent_id": None}
    messenger = {"endpoint": "0123456789012345", "customer_address": "9876543210987654"}
    template = TemplateUse(name="t", language="en-US", provider_template="order_shipped")
    return [
        reply(),
        reply(attachments=(image,)),
        reply(attachments=(vcard,)),
        reply(text="", attachments=(pdf,)),
        reply(Channel.WHATSAPP),
        reply(Channel.WHATSAPP, attachments=(image,)),
        reply(Channel.WHATSAPP, text="", attachments=(audio,)),
        reply(Channel.WHATSAPP, attachments=(pdf,)),
        reply(Channel.WHATSAPP, quick_replies=("Yes", "No"), **bot),
        reply(Channel.WHATSAPP, text="", location=place),
        reply(Channel.WHATSAPP, template=template),
        reply(Channel.MESSENGER, **messenger),
        reply(Channel.MESSENGER, text="", attachments=(image,), **messenger),
        reply(Channel.MESSENGER, message_tag=MessageTag.HUMAN_AGENT, **messenger),
        reply(Channel.VIBER, endpoint="16273"),
        reply(Channel.VIBER, endpoint="16273", attachments=(image,)),
        reply(Channel.VIBER, endpoint="16273", text="", attachments=(pdf,)),
    ]


@pytest.mark.parametrize("message", every_reply_shape(), ids=lambda r: f"{r.channel}")
def test_every_send_is_a_message_vonages_sdk_models_accept(message: ReplyRequested) -> None:
    fake = FakeVonage(application_id=APPLICATION_ID, public_key_pem="")
    assert fake.problem(send_body(message)) is None


def test_the_fake_refuses_what_vonage_would() -> None:
    fake = FakeVonage(application_id=APPLICATION_ID, public_key_pem="")
    good = send_body(reply())
    assert fake.problem({**good, "to": "+447700900001"}) is not None
    assert fake.problem({**good, "channel": "fax"}) is not None
    assert fake.problem({**good, "txt": "typo"}) is not None
    assert fake.problem({**good, "client_ref": "x" * 101}) is not None


# --- Hostile input -----------------------------------------------------------------------

ROUTES = [
    ("POST", vonage.INBOUND_PATH),
    ("POST", vonage.STATUS_PATH),
    ("GET", vonage.SMS_INBOUND_PATH),
    ("POST", vonage.SMS_INBOUND_PATH),
    ("GET", vonage.SMS_DLR_PATH),
    ("POST", vonage.SMS_DLR_PATH),
]
text = st.text(max_size=60)
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            body_of(fixture("inbound_sms_text.json")),
            b"msisdn=447700900001&to=447700900000&messageId=1&text=hi&sig=00&timestamp=1",
            b'{"msisdn": "1", "to": "2", "sig": "00", "timestamp": "1", "nonce": "x"}',
            b"[1, 2",
        ]
    ),
)
hostile_headers = st.fixed_dictionaries(
    {},
    optional={
        "Authorization": st.one_of(header_text, header_text.map(lambda t: "Bearer " + t)),
        "Content-Type": st.sampled_from(
            ["application/json", "application/x-www-form-urlencoded", "text/plain", "x/\u00e9"]
        ),
    },
)
queries = st.dictionaries(
    st.sampled_from(["sig", "timestamp", "nonce", "to", "msisdn", "messageId", "text"]),
    text.filter(lambda t: "\x00" not in t),
    max_size=6,
)


@pytest.fixture(scope="module")
async def fuzz_target() -> AsyncIterator[Harness]:
    harness = await start()
    yield harness
    await harness.client.close()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), body=bodies, headers=hostile_headers, query=queries)
async def test_unsigned_requests_are_4xx_and_publish_nothing(
    fuzz_target: Harness,
    route: tuple[str, str],
    body: bytes,
    headers: dict[str, str],
    query: dict[str, str],
) -> None:
    method, path = route
    response = await fuzz_target.client.request(
        method, path, data=body, headers=headers, params=query
    )
    assert 400 <= response.status < 500, (response.status, await response.text())
    assert fuzz_target.publisher.batches == [] == fuzz_target.publisher.dead_letters


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
near_documented = st.builds(
    lambda base, overrides: {**base, **overrides},
    st.sampled_from([fixture(p.name) for p in sorted(FIXTURES.glob("[is]*_*.json"))]),
    st.dictionaries(
        st.sampled_from(
            [
                "channel",
                "message_type",
                "to",
                "from",
                "text",
                "status",
                "context",
                "image",
                "location",
                "reaction",
                "contact",
                "content",
                "error",
                "client_ref",
                "timestamp",
            ]
        ),
        json_values,
        max_size=3,
    ),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=st.one_of(near_documented, json_values))
async def test_correctly_signed_odd_json_is_accepted_or_set_aside_never_5xx(
    fuzz_target: Harness, payload: Any
) -> None:
    body = json.dumps(payload).encode()
    response = await fuzz_target.client.post(
        vonage.INBOUND_PATH, data=body, headers=bearer(messages_token(body))
    )
    assert response.status == 200, (response.status, await response.text())


def test_a_business_started_messenger_message_is_an_update() -> None:
    notification = NotificationRequested(
        id="5b0b7e8e-8c1d-4d7e-9a43-3c2f0f9f5d11",
        domain="acme",
        occurred_at=NOW,
        conversation_id="c2",
        customer_id="messenger:9876543210987654",
        channel=Channel.MESSENGER,
        endpoint="0123456789012345",
        customer_address="9876543210987654",
        text="Your table is ready.",
        answer=Answerer(until=NOW + 3600),
    )
    request = vonage_send.vonage_request(notification, CHANNELS, ENVIRON)
    assert request.json is not None
    assert request.json["messenger"] == {"category": "update"}
    assert request.json["client_ref"] == notification.id
