"""Properties every webhook keeps: no 5xx for client input, no publish without a signature,
nothing acknowledged before the broker, bounded bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import (  # type: ignore[import-untyped]  # twilio ships no types
    RequestValidator,
)
from yarl import URL

from adapters import rbm, sendgrid, twilio, vonage, x_dm
from adapters.config import ChannelsConfig
from tests.adapters.conftest import (
    CHANNELS,
    ENVIRON,
    NOW,
    PUBLIC_URL,
    SENDGRID_EVENT_KEY,
    Harness,
    start_harness,
)
from tests.adapters.test_hostile_fields import (
    mailgun_signature,
    sendgrid_signed,
    sha256_hex,
    twilio_request,
    vonage_jwt,
)
from tests.adapters.test_meta import signed, wa_notification, wa_text, wa_value
from tests.adapters.test_twilio import inbound_sms, sign
from tests.logcapture import captured_logs, lines_of

WEBHOOKS = [
    ("POST", "/webhooks/twilio/sms"),
    ("POST", "/webhooks/twilio/status"),
    ("POST", "/twilio/in"),  # a number's own webhook_url (its query arrives or not)
    ("POST", "/twilio/out"),  # a number's own status_callback_url
    ("GET", "/webhooks/meta"),
    ("POST", "/webhooks/meta"),
    ("POST", "/webhooks/telegram/acme_support_bot"),
    ("POST", "/webhooks/telegram/unknown"),
    ("POST", "/webhooks/email/mailgun"),
    ("POST", "/webhooks/email/mailgun/events"),
    ("POST", "/webhooks/email/sendgrid"),
    ("POST", "/webhooks/email/sendgrid/events"),
    ("POST", "/webhooks/email/other"),
    ("POST", "/webhooks/vonage/inbound"),
    ("POST", "/webhooks/vonage/status"),
    ("GET", "/webhooks/vonage/sms/inbound"),
    ("POST", "/webhooks/vonage/sms/inbound"),
    ("GET", "/webhooks/vonage/sms/dlr"),
    ("POST", "/webhooks/vonage/sms/dlr"),
    ("POST", "/webhooks/rbm"),
    ("POST", "/webhooks/rbm/acme-agent"),
    ("POST", "/webhooks/rbm/unknown"),
    ("GET", "/webhooks/x"),
    ("POST", "/webhooks/x"),
]
HEADER_NAMES = [
    "Content-Type",
    "Authorization",
    "X-Twilio-Signature",
    "X-Twilio-Webhooks-Signature-Settings",
    "X-Hub-Signature-256",
    "X-Telegram-Bot-Api-Secret-Token",
    "X-Twilio-Email-Event-Webhook-Signature",
    "X-Twilio-Email-Event-Webhook-Timestamp",
    "X-Goog-Signature",
    "X-Goog-Webhook-Type",
    "x-twitter-webhooks-signature",
]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/json",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "text/plain",
]
# Header values must be sendable: visible ASCII and spaces.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
headers = st.dictionaries(
    st.sampled_from(HEADER_NAMES),
    st.one_of(
        header_text,
        st.sampled_from(CONTENT_TYPES),
        st.sampled_from(["sha256=00", "Bearer a.b.c", "Basic Og==", "verification", "1700000000"]),
    ),
    max_size=len(HEADER_NAMES),
)
bodies = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=300).map(str.encode),
    st.sampled_from(
        [
            b'{"object": "page", "entry": [{"id": "1234567890", "messaging": []}]}',
            b'{"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "x"}}',
            b"Body=hi&From=%2B1&To=%2B14155550100&MessageSid=SM1",
            b'--xyz\r\nContent-Disposition: form-data; name="recipient"\r\n\r\nx\r\n--xyz--\r\n',
            b'--xyz\r\nContent-Disposition: form-data; name="email"\r\n\r\nTo: help@acme.example\r\n--xyz--\r\n',
            b'{"signature": {"timestamp": "1700000000", "token": "t", "signature": "00"}, "event-data": {"event": "delivered"}}',
            b'[{"event": "delivered", "sg_message_id": "m", "switchboard_endpoint": "help@acme.example"}]',
            b'{"channel": "sms", "message_uuid": "u", "to": "14155550123", "from": "1", "message_type": "text", "text": "x"}',
            b"msisdn=447700900001&to=14155550123&messageId=1&text=x&timestamp=1700000000&nonce=n&sig=00",
            b'{"message": {"data": "e30="}, "subscription": "s"}',
            b'{"clientToken": "rbm-client-token", "secret": "123"}',
            b'{"for_user_id": "4337869213", "direct_message_events": [{"type": "message_create", "id": "1"}]}',
        ]
    ),
)
QUERY_NAMES = [
    "hub.mode", "hub.verify_token", "hub.challenge", "x", "crc_token", "bodySHA256",
    "outbound_id", "tenant", "sig", "timestamp", "nonce", "messageId", "to", "msisdn", "text",
    "status",
]  # fmt: skip
queries = st.dictionaries(st.sampled_from(QUERY_NAMES), header_text, max_size=4)


@pytest.fixture(scope="module")
async def fuzz_target() -> AsyncIterator[Harness]:
    """One server for all examples of a property (starting one per example is slow)."""
    harness = await start_harness()
    yield harness
    await harness.client.close()


@pytest.fixture(scope="module")
async def signed_fuzz_target() -> AsyncIterator[Harness]:
    """A server of its own: correctly signed examples may publish, unsigned ones must not."""
    harness = await start_harness()
    yield harness
    await harness.client.close()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(WEBHOOKS), body=bodies, hdrs=headers, query=queries)
async def test_random_requests_never_5xx_and_never_publish(
    fuzz_target: Harness,
    route: tuple[str, str],
    body: bytes,
    hdrs: dict[str, str],
    query: dict[str, str],
) -> None:
    method, path = route
    resp = await fuzz_target.client.request(method, path, data=body, headers=hdrs, params=query)
    assert resp.status < 500, (resp.status, await resp.text())
    assert fuzz_target.publisher.batches == []


async def test_broker_down_is_503_and_nothing_acknowledged(hook: Harness) -> None:
    hook.publisher.down = True
    params = inbound_sms()
    resp = await hook.client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
    assert resp.status == 503
    body, hdrs = signed(wa_notification(wa_value(messages=[wa_text()])))
    resp = await hook.client.post("/webhooks/meta", data=body, headers=hdrs)
    assert resp.status == 503
    assert hook.publisher.batches == []
    assert hook.count("twilio", "unavailable") == 1
    assert hook.count("meta", "unavailable") == 1
    assert (
        hook.metrics.registry.get_sample_value(
            "switchboard_inbound_messages_total", {"domain": "acme", "channel": "sms"}
        )
        is None
    )

    hook.publisher.down = False  # the provider's retry then goes through
    resp = await hook.client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
    assert resp.status == 200
    assert len(hook.publisher.messages) == 1


async def test_an_outage_logs_a_few_lines_not_one_per_webhook(hook: Harness) -> None:
    hook.publisher.down = True
    params = inbound_sms()
    with captured_logs([]) as buffer:
        for _ in range(30):
            resp = await hook.client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
            assert resp.status == 503
    lines = [line for line in lines_of(buffer) if line["event"] == "webhook_unavailable"]
    assert 1 <= len(lines) <= 10
    assert hook.count("twilio", "unavailable") == 30  # the counter counts every one


async def test_keys_out_of_reach_say_so_not_broker(hook: Harness) -> None:
    """PostgreSQL away with no spare key left: the 503 names the database, not the broker."""
    hook.publisher.keys_down = True
    params = inbound_sms()
    with captured_logs([]) as buffer:
        resp = await hook.client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
    assert resp.status == 503
    assert resp.headers["Retry-After"]
    assert (await resp.json())["error"] == "topic keys unavailable (database), retry later"
    assert [line["event"] for line in lines_of(buffer)] == ["webhook_keys_unavailable"]


async def test_oversized_body_is_413() -> None:
    harness = await start_harness(max_body_bytes=1024)
    try:
        params = inbound_sms(Body="x" * 2000)
        resp = await harness.client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
        assert resp.status == 413
        assert harness.count("twilio", "too_large") == 1

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(4):
                yield b"{" * 512

        resp = await harness.client.post(
            "/webhooks/meta", data=chunks(), headers={"X-Hub-Signature-256": "sha256=00"}
        )
        assert resp.status == 413
        assert harness.publisher.batches == []
    finally:
        await harness.client.close()


async def test_missing_secret_is_503_not_a_crash() -> None:
    harness = await start_harness(
        environ={k: v for k, v in ENVIRON.items() if k != "TWILIO_AUTH_TOKEN"}
    )
    try:
        params = inbound_sms()
        resp = await harness.client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
        assert resp.status == 503
        assert "TWILIO_AUTH_TOKEN" not in await resp.text()
    finally:
        await harness.client.close()
    assert harness.publisher.batches == []


async def test_a_provider_without_endpoints_is_404_and_a_missing_secret_logs_sparingly() -> None:
    """Anyone can call a provider's webhook that this deployment does not use: that is a
    404, not our incomplete deployment's 503. Where the provider has endpoints, the 503's
    error line is let through 10 times a minute, the next one counting the rest."""
    environ = {
        k: v for k, v in ENVIRON.items() if k not in ("TWILIO_AUTH_TOKEN", "X_CONSUMER_SECRET")
    }
    no_x = msgspec.structs.replace(CHANNELS, x=msgspec.structs.replace(CHANNELS.x, accounts=[]))
    assert CHANNELS.x.accounts
    assert not no_x.serves("x")
    assert no_x.serves("twilio")
    with captured_logs([]) as buffer:
        harness = await start_harness(channels=no_x, environ=environ)
        try:
            for _ in range(3):
                resp = await harness.client.post("/webhooks/x", data=b"{}")
                assert resp.status == 404
                assert await resp.json() == {"error": "no x endpoint is configured in [channels]"}
            params = inbound_sms()
            for _ in range(25):
                resp = await harness.client.post(
                    "/webhooks/twilio/sms", data=params, headers=sign(params)
                )
                assert resp.status == 503
        finally:
            await harness.client.close()
    missing = [line for line in lines_of(buffer) if line["event"] == "webhook_secret_missing"]
    assert len(missing) == 10
    assert {line["provider"] for line in missing} == {"twilio"}
    assert {line["variable"] for line in missing} == {"TWILIO_AUTH_TOKEN"}


async def test_no_webhook_of_an_unconfigured_deployment_answers_5xx() -> None:
    """With no endpoint and no secret configured, whatever comes is a client's mistake."""
    harness = await start_harness(channels=ChannelsConfig(), environ={})
    bodies = [b"", b"{}", b"a=b", b"\xff"]
    try:
        for method, path in WEBHOOKS:
            for body in bodies:
                resp = await harness.client.request(
                    method,
                    path + "?crc_token=abc",
                    data=body if method == "POST" else None,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                assert 400 <= resp.status < 500, (method, path, body, resp.status)
    finally:
        await harness.client.close()


KEYS = [
    "object", "entry", "id", "changes", "messaging", "field", "value", "metadata",
    "phone_number_id", "messages", "statuses", "from", "timestamp", "type", "text", "body",
    "image", "sender", "recipient", "message", "mid", "delivery", "mids", "update_id", "chat",
    "date", "message_id", "photo", "file_id", "document", "errors", "code", "status",
    "attachments", "payload", "url", "postback", "is_echo",
    # Twilio JSON, Mailgun events, SendGrid events, Vonage, RBM, X
    "From", "To", "Body", "MessageSid", "MessageStatus", "NumMedia", "event-data", "event",
    "headers", "message-id", "user-variables", "sg_message_id", "switchboard_endpoint",
    "channel", "message_uuid", "message_type", "to", "location", "lat", "long", "contact",
    "agentId", "senderPhoneNumber", "messageId", "eventType", "sendTime", "userFile",
    "fileUri", "latitude", "for_user_id", "direct_message_events", "message_create",
    "target", "recipient_id", "sender_id", "message_data", "last_read_event_id",
]  # fmt: skip
json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6) | st.sampled_from(
        ["whatsapp_business_account", "page", "instagram", "private", "106540352242922",
         "1234567890", "text", "image", "+14155550177", "delivered", "help@acme.example",
         "support@acme.example", "sms", "whatsapp", "14155550123", "acme-agent",
         "+12223334444", "READ", "4337869213", "message_create", "3001969357"]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    max_leaves=30,
)  # fmt: skip


Signed = tuple[str | URL, bytes, dict[str, str]]


def _meta(doc: object) -> Signed:
    body, hdrs = signed(doc)
    return "/webhooks/meta", body, hdrs


def _telegram(doc: object) -> Signed:
    hdrs = {"X-Telegram-Bot-Api-Secret-Token": ENVIRON["TELEGRAM_SECRET_TOKEN"]}
    return "/webhooks/telegram/acme_support_bot", msgspec.json.encode(doc), hdrs


def _twilio_json(doc: object) -> Signed:
    body = msgspec.json.encode(doc)
    path, url = twilio_request(PUBLIC_URL + twilio.STATUS_PATH, [("bodySHA256", sha256_hex(body))])
    signature = RequestValidator(ENVIRON["TWILIO_AUTH_TOKEN"]).compute_signature(url, {})
    return path, body, {twilio.SIGNATURE_HEADER: signature, "Content-Type": "application/json"}


def _mailgun_events(doc: object) -> Signed:
    body = msgspec.json.encode({"signature": mailgun_signature(str(int(NOW))), "event-data": doc})
    return "/webhooks/email/mailgun/events", body, {"Content-Type": "application/json"}


def _sendgrid_events(doc: object) -> Signed:
    body = msgspec.json.encode(doc)
    hdrs = sendgrid_signed(SENDGRID_EVENT_KEY, body, str(int(NOW)))
    return sendgrid.EVENTS_PATH, body, hdrs


def _vonage(doc: object) -> Signed:
    body = msgspec.json.encode(doc)
    hdrs = {"Authorization": f"Bearer {vonage_jwt(body, NOW)}", "Content-Type": "application/json"}
    return vonage.INBOUND_PATH, body, hdrs


def _rbm(doc: object) -> Signed:
    data = msgspec.json.encode(doc)
    mac = hmac.new(ENVIRON["RBM_CLIENT_TOKEN"].encode(), data, hashlib.sha512).digest()
    envelope = {"message": {"data": base64.b64encode(data).decode()}}
    hdrs = {rbm.SIGNATURE_HEADER: base64.b64encode(mac).decode()}
    return rbm.WEBHOOK_PATH, msgspec.json.encode(envelope), hdrs


def _x(doc: object) -> Signed:
    body = msgspec.json.encode(doc)
    mac = hmac.new(ENVIRON["X_CONSUMER_SECRET"].encode(), body, hashlib.sha256).digest()
    return (
        x_dm.WEBHOOK_PATH,
        body,
        {x_dm.SIGNATURE_HEADER: "sha256=" + base64.b64encode(mac).decode()},
    )


SIGNED_JSON = {
    "meta": _meta,
    "telegram": _telegram,
    "twilio": _twilio_json,
    "mailgun_events": _mailgun_events,
    "sendgrid_events": _sendgrid_events,
    "vonage": _vonage,
    "rbm": _rbm,
    "x": _x,
}
"""Each provider that posts JSON: ``doc`` as its correctly signed request."""


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=json_docs, provider=st.sampled_from(sorted(SIGNED_JSON)))
async def test_correctly_signed_odd_json_is_never_a_5xx(
    signed_fuzz_target: Harness, doc: object, provider: str
) -> None:
    """With a valid signature the parsers themselves meet odd shapes: 2xx or 4xx, no crash."""
    path, body, hdrs = SIGNED_JSON[provider](doc)
    resp = await signed_fuzz_target.client.post(path, data=body, headers=hdrs)
    assert resp.status < 500, (resp.status, await resp.text())
