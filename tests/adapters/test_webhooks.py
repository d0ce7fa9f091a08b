"""Properties every webhook keeps: no 5xx for client input, no publish without a signature,
nothing acknowledged before the broker, bounded bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.webhooks import WebhookContext, webhook_routes
from runtime.metrics import Metrics
from tests.adapters.conftest import (
    CHANNELS,
    ENVIRON,
    Harness,
    MemoryNonces,
    RecordingPublisher,
    start_harness,
)
from tests.adapters.test_meta import signed, wa_notification, wa_text, wa_value
from tests.adapters.test_twilio import inbound_sms, sign

WEBHOOKS = [
    ("POST", "/webhooks/twilio/sms"),
    ("GET", "/webhooks/meta"),
    ("POST", "/webhooks/meta"),
    ("POST", "/webhooks/telegram/acme_support_bot"),
    ("POST", "/webhooks/telegram/unknown"),
    ("POST", "/webhooks/email/mailgun"),
    ("POST", "/webhooks/email/other"),
]
HEADER_NAMES = [
    "Content-Type",
    "X-Twilio-Signature",
    "X-Twilio-Webhooks-Signature-Settings",
    "X-Hub-Signature-256",
    "X-Telegram-Bot-Api-Secret-Token",
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
    st.one_of(header_text, st.sampled_from(CONTENT_TYPES), st.just("sha256=00")),
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
        ]
    ),
)
queries = st.dictionaries(
    st.sampled_from(["hub.mode", "hub.verify_token", "hub.challenge", "x"]), header_text, max_size=4
)


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
    publisher = RecordingPublisher()
    ctx = WebhookContext(
        channels=CHANNELS,
        environ={k: v for k, v in ENVIRON.items() if k != "TWILIO_AUTH_TOKEN"},
        publisher=publisher,
        nonces=MemoryNonces(),
        metrics=Metrics(),
    )
    app = web.Application()
    app.add_routes(webhook_routes(ctx))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        params = inbound_sms()
        resp = await client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
        assert resp.status == 503
        assert "TWILIO_AUTH_TOKEN" not in await resp.text()
    assert publisher.batches == []


KEYS = [
    "object", "entry", "id", "changes", "messaging", "field", "value", "metadata",
    "phone_number_id", "messages", "statuses", "from", "timestamp", "type", "text", "body",
    "image", "sender", "recipient", "message", "mid", "delivery", "mids", "update_id", "chat",
    "date", "message_id", "photo", "file_id", "document", "errors", "code", "status",
    "attachments", "payload", "url", "postback", "is_echo",
]  # fmt: skip
json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6) | st.sampled_from(
        ["whatsapp_business_account", "page", "instagram", "private", "106540352242922",
         "1234567890", "text", "image"]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    max_leaves=30,
)  # fmt: skip


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=json_docs, to_meta=st.booleans())
async def test_correctly_signed_odd_json_is_never_a_5xx(
    signed_fuzz_target: Harness, doc: object, to_meta: bool
) -> None:
    """With a valid signature the parsers themselves meet odd shapes: 2xx or 4xx, no crash."""
    if to_meta:
        body, hdrs = signed(doc)
        path = "/webhooks/meta"
    else:
        body = msgspec.json.encode(doc)
        hdrs = {"X-Telegram-Bot-Api-Secret-Token": ENVIRON["TELEGRAM_SECRET_TOKEN"]}
        path = "/webhooks/telegram/acme_support_bot"
    resp = await signed_fuzz_target.client.post(path, data=body, headers=hdrs)
    assert resp.status < 500, (resp.status, await resp.text())
