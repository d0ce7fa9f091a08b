"""SendGrid against its own documentation and SDK: the ECDSA signature of the Event Webhook
and of Inbound Parse, every documented event, both Inbound Parse modes, Mail Send.

Sources (fixtures in ``tests/adapters/fixtures/sendgrid/`` are copied from them):
- Signature: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
  ("Verify the signature": ECDSA over timestamp + raw payload, headers
  ``X-Twilio-Email-Event-Webhook-Signature`` / ``-Timestamp``) and
  https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/securing-your-parse-webhooks
  (Inbound Parse security policies: the same signature, its own public key). The reference
  validator is ``sendgrid.helpers.eventwebhook.EventWebhook``; ``signed_event_vector.json``
  is the published vector of sendgrid-python's ``test/unit/test_eventwebhook.py``.
- Events: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
  (``event_<name>.json``: the example of each delivery and engagement event, Blocked being
  a ``bounce`` of ``type`` ``blocked``; ``event_each_type.json``: the example "of each type
  of event"; ``event_custom_args.json``: custom arguments as events carry them).
- Inbound Parse: https://www.twilio.com/docs/sendgrid/for-developers/parsing-email/setting-up-the-inbound-parse-webhook
  ("Default Parameters", "Raw Parameters", "Example Default Payload": rebuilt as a form in
  ``parse_default_documented.txt``, its ``from`` with the angle brackets the page's
  rendering lost and stand-in bytes for its two files) and sendgrid-python's
  ``sendgrid/helpers/inbound/sample_data/`` (``parse_default_data.txt``,
  ``parse_raw_data.txt``, ``parse_raw_data_with_attachments.txt``: stored with LF line
  ends, posted with CRLF as SendGrid posts them, RFC 7578).
- Mail Send: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
  (request body, limits, reserved headers; 202 with ``X-Message-Id``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sendgrid.helpers.eventwebhook import (  # type: ignore[import-untyped]  # no hints shipped
    EventWebhook,
)
from sendgrid.helpers.eventwebhook.eventwebhook_header import (  # type: ignore[import-untyped]
    EventWebhookHeader,
)

from adapters import email as email_adapter
from adapters import sendgrid
from adapters.base import SignatureRejected, inbound_event_id
from adapters.config import ChannelsConfig, EmailConfig, SendGridConfig
from adapters.egress import Egress, InMemorySentLedger, RetryPolicy, SendOutcome, build_request
from adapters.media import MediaRefused
from adapters.provider_api import EgressUnroutable, PrepareFailed
from adapters.webhooks import WebhookContext, refuse_encoded_bodies, webhook_routes
from runtime.metrics import Metrics
from schemas import (
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    DeliveryStatus,
    Location,
    MessageReceived,
    ReplyRequested,
)
from tests.adapters.conftest import NOW, Harness, MemoryNonces, RecordingPublisher
from tests.fakes.sendgrid import FakeSendGrid

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sendgrid"
PARSE = sendgrid.PARSE_PATH
EVENTS = sendgrid.EVENTS_PATH
BOUNDARY = "xYzZY"
FORM = f"multipart/form-data; boundary={BOUNDARY}"
API_KEY = "SG.test-api-key"
BASIC = "parse-user:parse-password"
OUR = "support@acme.example"
OUTBOUND_ID = "6d3c1b0e-8f4a-4c55-9b1e-2d7f1c0a9e11"

EVENT_KEY = ec.generate_private_key(ec.SECP256R1())
PARSE_KEY = ec.generate_private_key(ec.SECP256R1())

#: The events the Event Webhook reference documents (Blocked: a ``bounce`` of ``type``
#: ``blocked``; account status changes: the reference's "account events").
DOCUMENTED_EVENTS = (
    "processed",
    "dropped",
    "delivered",
    "deferred",
    "bounce",
    "blocked",
    "open",
    "click",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
    "account_status_change",
)


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """A verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """SendGrid's signature of a request: ECDSA P-256 / SHA-256 of timestamp + body."""
    der = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def signed(
    key: ec.EllipticCurvePrivateKey, body: bytes, at: float = NOW, **extra: str
) -> dict[str, str]:
    timestamp = str(int(at))
    return {
        EventWebhookHeader.SIGNATURE: sign(key, timestamp, body),
        EventWebhookHeader.TIMESTAMP: timestamp,
        **extra,
    }


def channels(**sendgrid_config: Any) -> ChannelsConfig:
    return msgspec.convert(
        {
            "media_fetch_allow_private": True,  # the tests' files are on loopback
            "email": {
                "sendgrid": {
                    "event_public_key": public_b64(EVENT_KEY),
                    "parse_public_key": public_b64(PARSE_KEY),
                    **sendgrid_config,
                },
                "addresses": [
                    {"address": OUR, "domain": "acme", "queue": "email", "provider": "sendgrid"},
                    {"address": "mailgun@acme.example", "domain": "acme"},
                    # The addresses of the documented payloads.
                    {"address": "inbound@inbound.example.com", "domain": "acme"},
                    {"address": "inbound@inbound.inbound.com", "domain": "acme"},
                    {"address": "example@example.comom", "domain": "globex"},
                ],
            },
        },
        ChannelsConfig,
    )


ENVIRON = {
    "SENDGRID_API_KEY": API_KEY,
    "SENDGRID_PARSE_BASIC_AUTH": BASIC,
    "MAILGUN_SIGNING_KEY": "key-mailgun-signing",
    "MAILGUN_API_KEY": "mailgun-api-key",
}


async def start(config: ChannelsConfig | None = None) -> Harness:
    publisher, metrics, nonces = RecordingPublisher(), Metrics(), MemoryNonces()
    ctx = WebhookContext(
        channels=config or channels(),
        environ=ENVIRON,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        clock=lambda: NOW,
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    app.add_routes(webhook_routes(ctx))  # as switchboard.app does: the real registration
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Harness(client, publisher, metrics, nonces)


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    harness = await start()
    yield harness
    await harness.client.close()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def posted(name: str) -> bytes:
    """A stored form fixture as SendGrid posts it: CRLF line ends."""
    return fixture(name).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def form(
    fields: Sequence[tuple[str, str | bytes]], files: Sequence[tuple[str, str, str, bytes]] = ()
) -> bytes:
    """A multipart/form-data body as Inbound Parse posts it (fields, then files)."""
    chunks = []
    for name, value in fields:
        data = value.encode() if isinstance(value, str) else value
        chunks.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    for name, filename, content_type, data in files:
        chunks.append(
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}";'
                f' filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


def mail_headers(**overrides: str) -> str:
    headers = {
        "From": "Ann Customer <Ann@Example.org>",
        "To": OUR,
        "Subject": "Re: Order 1234",
        "Date": "Tue, 14 Nov 2023 22:13:20 +0000",
        "Message-ID": "<CAF=reply-2@mail.example.org>",
        "In-Reply-To": "<outbound-1@acme.example>",
        "References": "<CAF=first-1@mail.example.org> <outbound-1@acme.example>",
        **overrides,
    }
    return "".join(f"{k}: {v}\n" for k, v in headers.items() if v)


def parsed_mail(**headers: str) -> bytes:
    """A parsed-mode Inbound Parse POST of a customer's answer in a thread."""
    return form(
        [
            ("headers", mail_headers(**headers)),
            ("to", OUR),
            ("from", "Ann Customer <Ann@Example.org>"),
            ("subject", "Re: Order 1234"),
            ("text", "Still waiting."),
            ("html", "<p>Still waiting.</p>"),
            ("envelope", json.dumps({"to": [OUR], "from": "ann@example.org"})),
            ("charsets", json.dumps({"to": "UTF-8", "subject": "UTF-8", "text": "UTF-8"})),
            ("attachments", "0"),
            ("spam_score", "0.1"),
            ("SPF", "pass"),
        ]
    )


# --- The signature: SendGrid's published vector, its SDK as the reference ------------------


VECTOR = json.loads(fixture("signed_event_vector.json"))


def test_the_published_vector_verifies_as_the_sdk_verifies_it() -> None:
    key = sendgrid.public_key(VECTOR["public_key"])
    payload, timestamp = VECTOR["payload"].encode(), VECTOR["timestamp"]
    verified = sendgrid.verify_signature(
        key, payload, VECTOR["signature"], timestamp, float(timestamp) + 10, 600
    )
    assert verified.signed_at == float(timestamp)
    assert verified.nonce.expires_at == float(timestamp) + 600
    assert EventWebhook(VECTOR["public_key"]).verify_signature(
        VECTOR["payload"], VECTOR["signature"], timestamp
    )


@pytest.mark.parametrize(
    ("key", "payload", "signature", "timestamp"),
    [
        pytest.param("other_public_key", "payload", "signature", "timestamp", id="bad key"),
        pytest.param("public_key", None, "signature", "timestamp", id="bad payload"),
        pytest.param("public_key", "payload", "other_signature", "timestamp", id="bad signature"),
    ],
)
def test_the_published_refusals_are_refused_as_the_sdk_refuses_them(
    key: str, payload: str | None, signature: str, timestamp: str
) -> None:
    body = "payload" if payload is None else VECTOR[payload]
    args = (body, VECTOR[signature], VECTOR[timestamp])
    assert not EventWebhook(VECTOR[key]).verify_signature(*args)
    with pytest.raises(SignatureRejected) as refused:
        sendgrid.verify_signature(
            sendgrid.public_key(VECTOR[key]),
            body.encode(),
            VECTOR[signature],
            VECTOR[timestamp],
            float(VECTOR["timestamp"]),
            600,
        )
    assert refused.value.status == 403


def test_a_timestamp_that_is_no_number_is_refused_as_the_sdk_refuses_it() -> None:
    assert not EventWebhook(VECTOR["public_key"]).verify_signature(
        VECTOR["payload"], VECTOR["signature"], "timestamp"
    )
    with pytest.raises(SignatureRejected, match="timestamp"):
        sendgrid.verify_signature(
            sendgrid.public_key(VECTOR["public_key"]),
            VECTOR["payload"].encode(),
            VECTOR["signature"],
            "timestamp",
            NOW,
            600,
        )


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("event_*.json")))
def test_documented_payloads_signed_with_a_new_key_verify_with_the_sdk_and_ours(
    name: str,
) -> None:
    body, timestamp = fixture(name), str(int(NOW))
    signature = sign(EVENT_KEY, timestamp, body)
    assert EventWebhook(public_b64(EVENT_KEY)).verify_signature(body.decode(), signature, timestamp)
    sendgrid.verify_signature(
        sendgrid.public_key(public_b64(EVENT_KEY)), body, signature, timestamp, NOW, 600
    )


@settings(max_examples=50, deadline=None)
@given(body=st.text(max_size=300), tamper=st.booleans(), timestamp=st.integers(0, 2**40))
def test_ours_and_the_sdk_agree_on_every_body(body: str, tamper: bool, timestamp: int) -> None:
    raw = body.encode()
    signature = sign(EVENT_KEY, str(timestamp), raw)
    sent = body + "x" if tamper else body
    sdk = EventWebhook(public_b64(EVENT_KEY)).verify_signature(sent, signature, str(timestamp))
    try:
        sendgrid.verify_signature(
            sendgrid.public_key(public_b64(EVENT_KEY)),
            sent.encode(),
            signature,
            str(timestamp),
            float(timestamp),
            600,
        )
        ours = True
    except SignatureRejected:
        ours = False
    assert ours == sdk == (not tamper)


# --- Event Webhook refusals: missing, bad, stale, replayed ---------------------------------


def delivered(**custom: str) -> bytes:
    events = json.loads(fixture("event_delivered.json"))
    events[0].update({sendgrid.OUTBOUND_ID_ARG: OUTBOUND_ID, sendgrid.ENDPOINT_ARG: OUR, **custom})
    return json.dumps(events).encode()


async def test_a_request_without_a_signature_is_refused_401(hook: Harness) -> None:
    body = delivered()
    for headers in (
        {},
        {EventWebhookHeader.TIMESTAMP: str(int(NOW))},
        {EventWebhookHeader.SIGNATURE: sign(EVENT_KEY, str(int(NOW)), body)},
    ):
        resp = await hook.client.post(EVENTS, data=body, headers=headers)
        assert resp.status == 401
    assert hook.publisher.batches == []
    assert hook.signature_failures("sendgrid_events") == 3


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(signed(PARSE_KEY, delivered()), id="another key"),
        pytest.param(signed(EVENT_KEY, b"[]"), id="another body"),
        pytest.param(
            {**signed(EVENT_KEY, delivered()), EventWebhookHeader.TIMESTAMP: str(int(NOW) - 1)},
            id="another timestamp",
        ),
        pytest.param(
            {**signed(EVENT_KEY, delivered()), EventWebhookHeader.SIGNATURE: "bm90IERFUg=="},
            id="not DER",
        ),
        pytest.param(
            {**signed(EVENT_KEY, delivered()), EventWebhookHeader.SIGNATURE: "*not base64*"},
            id="not base64",
        ),
        pytest.param(
            {**signed(EVENT_KEY, delivered()), EventWebhookHeader.TIMESTAMP: "1.7e9"},
            id="not a number",
        ),
    ],
)
async def test_a_bad_signature_is_refused_403(hook: Harness, headers: dict[str, str]) -> None:
    resp = await hook.client.post(EVENTS, data=delivered(), headers=headers)
    assert resp.status == 403
    assert hook.publisher.batches == []
    assert hook.nonces.claimed == {}


async def test_a_stale_signature_is_refused_and_a_fresh_one_at_the_limit_accepted(
    hook: Harness,
) -> None:
    max_age = SendGridConfig().event_max_age_seconds
    body = delivered()
    stale = await hook.client.post(
        EVENTS, data=body, headers=signed(EVENT_KEY, body, NOW - max_age - 1)
    )
    assert stale.status == 403
    assert "expired" in (await stale.json())["error"]
    future = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body, NOW + 3600))
    assert future.status == 403
    at_limit = await hook.client.post(
        EVENTS, data=body, headers=signed(EVENT_KEY, body, NOW - max_age)
    )
    assert at_limit.status == 200
    assert len(hook.publisher.statuses) == 1


async def test_a_replayed_request_is_refused_409_and_publishes_nothing(hook: Harness) -> None:
    body = delivered()
    headers = signed(EVENT_KEY, body)
    assert (await hook.client.post(EVENTS, data=body, headers=headers)).status == 200
    replay = await hook.client.post(EVENTS, data=body, headers=headers)
    assert replay.status == 409
    assert len(hook.publisher.batches) == 1
    assert hook.count("sendgrid_events", "replayed") == 1


async def test_a_re_encoded_signature_is_the_same_request(hook: Harness) -> None:
    """ECDSA's (r, n - s) verifies as (r, s) does: it must not pass as a new request."""
    body = delivered()
    headers = signed(EVENT_KEY, body)
    assert (await hook.client.post(EVENTS, data=body, headers=headers)).status == 200
    r, s = decode_dss_signature(base64.b64decode(headers[EventWebhookHeader.SIGNATURE]))
    twin = base64.b64encode(encode_dss_signature(r, sendgrid.P256_ORDER - s)).decode()
    assert EventWebhook(public_b64(EVENT_KEY)).verify_signature(
        body.decode(), twin, headers[EventWebhookHeader.TIMESTAMP]
    )
    replay = await hook.client.post(
        EVENTS, data=body, headers={**headers, EventWebhookHeader.SIGNATURE: twin}
    )
    assert replay.status == 409
    assert len(hook.publisher.batches) == 1


async def test_a_replay_is_accepted_again_once_the_first_was_not() -> None:
    harness = await start()
    try:
        body = delivered()
        headers = signed(EVENT_KEY, body)
        harness.publisher.down = True
        assert (await harness.client.post(EVENTS, data=body, headers=headers)).status == 503
        harness.publisher.down = False
        assert (await harness.client.post(EVENTS, data=body, headers=headers)).status == 200
        assert len(harness.publisher.statuses) == 1
    finally:
        await harness.client.close()


async def test_without_a_verification_key_events_are_never_accepted() -> None:
    harness = await start(channels(event_public_key=""))
    try:
        body = delivered()
        resp = await harness.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
        assert resp.status == 503
        assert harness.publisher.batches == []
    finally:
        await harness.client.close()


# --- Events: every documented one, mapped ----------------------------------------------------


def test_the_status_map_is_total_over_the_documented_events() -> None:
    assert set(sendgrid.STATUS_MAP) == set(DOCUMENTED_EVENTS)
    documented = {e["event"] for e in json.loads(fixture("event_each_type.json"))}
    assert documented <= set(sendgrid.STATUS_MAP)


EXPECTED = {
    # fixture: (provider_status, status, error_code)
    "event_processed.json": ("processed", DeliveryStatus.QUEUED, None),
    "event_deferred.json": ("deferred", DeliveryStatus.QUEUED, None),
    "event_delivered.json": ("delivered", DeliveryStatus.DELIVERED, None),
    "event_bounce.json": ("bounce", DeliveryStatus.UNDELIVERED, "5.0.0"),
    "event_blocked.json": ("blocked", DeliveryStatus.UNDELIVERED, "5.0.0"),
    "event_dropped.json": ("dropped", DeliveryStatus.FAILED, "Bounced Address"),
    "event_open.json": ("open", DeliveryStatus.READ, None),
    "event_click.json": ("click", DeliveryStatus.READ, None),
    "event_spamreport.json": ("spamreport", DeliveryStatus.DELIVERED, None),
    "event_unsubscribe.json": ("unsubscribe", DeliveryStatus.DELIVERED, None),
    "event_group_unsubscribe.json": ("group_unsubscribe", DeliveryStatus.DELIVERED, None),
    "event_group_resubscribe.json": ("group_resubscribe", DeliveryStatus.DELIVERED, None),
}


#: The events that also report the customer's consent (fixture: provider status).
CONSENTS = {"event_spamreport.json": "spamreport", "event_unsubscribe.json": "unsubscribe"}


def consents(hook: Harness) -> list[ConsentReported]:
    return [e for e in hook.publisher.events if isinstance(e, ConsentReported)]


def ours(name: str, **custom: Any) -> bytes:
    """A documented event as it comes for a message we sent: our custom arguments added."""
    events = json.loads(fixture(name))
    for event in events:
        event.update({sendgrid.OUTBOUND_ID_ARG: OUTBOUND_ID, sendgrid.ENDPOINT_ARG: OUR, **custom})
    return json.dumps(events).encode()


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_documented_event_becomes_its_status(hook: Harness, name: str) -> None:
    body = ours(name)
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    assert await resp.text() == "ok"
    [status] = hook.publisher.statuses
    provider_status, mapped, error_code = EXPECTED[name]
    assert status.channel is Channel.EMAIL
    assert status.domain == "acme"
    assert status.provider_status == provider_status
    assert status.status is mapped
    assert status.error_code == error_code
    assert status.outbound_id == OUTBOUND_ID
    # The X-Message-Id of the send: sg_message_id without SendGrid's filter suffix.
    assert status.provider_message_id == "14c5d75ce93.dfd.64b469"
    assert status.occurred_at == NOW  # the documented 2017 is not believed: our receive time
    assert status.id == inbound_event_id(
        "acme", "email", f"14c5d75ce93.dfd.64b469/status/{provider_status}"
    )
    # Group (un)subscribes concern one unsubscribe group: statuses only.
    assert [c.provider_status for c in consents(hook)] == (
        [CONSENTS[name]] if name in CONSENTS else []
    )


async def test_documented_events_of_mail_we_did_not_send_are_ignored(hook: Harness) -> None:
    for name in ("event_each_type.json", "event_custom_args.json"):
        body = fixture(name)
        resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
        assert resp.status == 200
    assert hook.publisher.events == []
    assert hook.publisher.dead_letters == []
    assert hook.count("sendgrid_events", "ignored") == 2


async def test_every_event_of_a_batch_is_reported(hook: Harness) -> None:
    body = ours("event_each_type.json", sg_message_id="LRzXl_NHStOGhQ4kofSm_A.filterdrecv-1")
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    assert [s.provider_status for s in hook.publisher.statuses] == [
        "processed",
        "deferred",
        "delivered",
        "open",
        "click",
        "bounce",  # documented without a type: a bounce
        "dropped",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    ]
    # Without smtp-id matching it, sg_message_id is kept whole.
    assert {s.provider_message_id for s in hook.publisher.statuses} == {
        "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-1"
    }
    assert [c.provider_status for c in consents(hook)] == ["spamreport", "unsubscribe"]


async def test_machine_opens_are_not_reads(hook: Harness) -> None:
    body = ours("event_open.json", sg_machine_open=True)
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    assert hook.publisher.events == []


@pytest.mark.parametrize("name", sorted(CONSENTS))
async def test_spam_reports_and_unsubscribes_opt_the_recipient_out(
    hook: Harness, name: str
) -> None:
    """Besides their status, as Mailgun's ``complained`` and ``unsubscribed`` do."""
    [documented] = json.loads(fixture(name))
    body = ours(name)
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert (status.provider_status, status.status) == (CONSENTS[name], DeliveryStatus.DELIVERED)
    assert not any(isinstance(e, MessageReceived) for e in hook.publisher.events)
    [report] = consents(hook)
    assert report == ConsentReported(
        id=inbound_event_id(
            "acme", "email", f"{documented['sg_event_id']}/consent/{Consent.OPT_OUT.value}"
        ),
        domain="acme",
        occurred_at=NOW,  # the documented 2017 is not believed: our receive time
        channel=Channel.EMAIL,
        endpoint=OUR,  # the address it was sent from (our custom argument)
        customer_address="example@test.com",
        customer_id="email:example@test.com",
        consent=Consent.OPT_OUT,
        provider_status=CONSENTS[name],
    )


async def test_a_redelivered_consent_report_is_the_same_report(hook: Harness) -> None:
    # SendGrid retries a batch it got no 2xx for: a new signature, the same sg_event_id.
    body = ours("event_unsubscribe.json")
    later = ours("event_unsubscribe.json")
    for payload, at in ((body, NOW - 5), (later, NOW)):
        resp = await hook.client.post(
            EVENTS, data=payload, headers=signed(EVENT_KEY, payload, at=at)
        )
        assert resp.status == 200
    first, again = consents(hook)
    assert first == again


async def test_the_reported_address_is_spelled_as_the_customers_own_mail_spells_it(
    hook: Harness,
) -> None:
    mail = parsed_mail()
    assert (await post_parse(hook, mail)).status == 200
    [message] = hook.publisher.messages  # from "Ann Customer <Ann@Example.org>"
    body = ours("event_spamreport.json", email="Ann@Example.org")
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    [report] = consents(hook)
    assert (report.endpoint, report.customer_address, report.customer_id) == (
        message.endpoint,
        message.customer_address,
        message.customer_id,
    )


async def test_an_unsubscribe_without_a_message_id_still_opts_out(hook: Harness) -> None:
    body = ours("event_unsubscribe.json", sg_message_id=None, **{"smtp-id": None})
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    assert hook.publisher.statuses == []
    assert hook.publisher.dead_letters == []
    assert [c.customer_address for c in consents(hook)] == ["example@test.com"]


@pytest.mark.parametrize(
    ("custom", "reason"),
    [
        ({"email": None}, "event 0: email is not an email address"),
        ({"email": "a\u0000b@test.com"}, "event 0: customer address"),
        ({"sg_event_id": None}, "event 0: unsubscribe event without sg_event_id"),
    ],
    ids=["no-email", "control-character", "no-event-id"],
)
async def test_an_unsubscribe_naming_no_usable_customer_is_set_aside(
    hook: Harness, custom: dict[str, Any], reason: str
) -> None:
    body = ours("event_unsubscribe.json", **custom)
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    assert hook.publisher.events == []
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith(reason)


async def test_events_of_an_address_no_longer_configured_are_ignored(hook: Harness) -> None:
    body = ours("event_delivered.json", **{sendgrid.ENDPOINT_ARG: "gone@acme.example"})
    assert (
        await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    ).status == 200
    assert hook.publisher.events == []


async def test_an_unusable_event_is_set_aside_and_the_others_go_on(hook: Harness) -> None:
    events = json.loads(ours("event_each_type.json"))[:3]
    events[1]["sg_message_id"] = "x" * 600  # longer than any provider message id
    events[2]["timestamp"] = {"not": "a time"}  # not SendGrid's shape
    body = json.dumps(events).encode()
    resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
    assert resp.status == 200
    assert [s.provider_status for s in hook.publisher.statuses] == ["processed"]
    letters = hook.publisher.dead_letters
    assert [letter.source for letter in letters] == ["webhook/sendgrid_events"] * 2
    assert letters[0].reason.startswith("event 1: provider message id")
    assert letters[1].reason.startswith("event 2: malformed event")
    assert letters[0].body == body


async def test_a_signed_body_that_is_not_an_event_list_is_set_aside(hook: Harness) -> None:
    for body in (b'{"event": "delivered"}', b"not json", b"[" * 5000):
        resp = await hook.client.post(EVENTS, data=body, headers=signed(EVENT_KEY, body))
        reason = await hook.set_aside(resp, "sendgrid_events")
        assert "Event Webhook body" in reason


def test_the_x_message_id_is_read_back_from_smtp_id() -> None:
    assert (
        sendgrid.message_id_of(
            "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
            "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
        )
        == "LRzXl_NHStOGhQ4kofSm_A"
    )
    assert sendgrid.message_id_of(None, "<abc@ismtpd-1>") == "abc"
    assert sendgrid.message_id_of("whole.id", None) == "whole.id"
    assert sendgrid.message_id_of(None, None) is None


def test_the_declaration_lists_the_statuses_it_maps() -> None:
    declared = set(sendgrid.DECLARATION.statuses.split(", "))
    assert declared == {s for s, mapped in sendgrid.STATUS_MAP.items() if mapped is not None}
    assert sendgrid.DECLARATION.channels == ("email",)


# --- Inbound Parse: both modes, every documented shape -------------------------------------


async def post_parse(hook: Harness, body: bytes, **extra: str) -> aiohttp.ClientResponse:
    headers = {"Content-Type": FORM, **signed(PARSE_KEY, body), **extra}
    return await hook.client.post(PARSE, data=body, headers=headers)


async def test_the_documented_default_payload(hook: Harness) -> None:
    resp = await post_parse(hook, posted("parse_default_documented.txt"))
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    message_id = "CAN_P_JMvV7ZpAQhOnDienypLrJmuhN=LQWweu4yScw4jQyXY2w@mail.gmail.com"
    assert msg.channel is Channel.EMAIL
    assert msg.domain == "globex"
    assert msg.endpoint == "example@example.comom"
    assert msg.customer_address == "example@example.com"
    assert msg.customer_id == "email:example@example.com"
    assert msg.subject == "Different File Types"
    assert msg.text == "Here's an email with multiple attachments"
    assert msg.provider_message_id == message_id
    assert msg.conversation_key == f"email:example@example.comom:{message_id}"
    assert msg.id == inbound_event_id("globex", "email", message_id)
    assert msg.occurred_at == NOW  # signed now
    assert msg.attachments == (
        Attachment(
            url=f"urn:switchboard:email:{message_id}:attachment1",
            content_type="image/jpeg",
            filename="MG_2359.jpg",
            size_bytes=len(b"stand-in for the JPEG's bytes (not in the documentation)"),
            media_id="ii_1562e2169c132d83",
        ),
        Attachment(
            url=f"urn:switchboard:email:{message_id}:attachment2",
            content_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            filename="DockMcWordface.docx",
            size_bytes=len(b"stand-in for the DOCX's bytes"),
        ),
    )


@pytest.mark.parametrize(
    ("name", "endpoint", "subject", "files"),
    [
        ("parse_default_data.txt", "inbound@inbound.example.com", "Testing non-raw", ()),
        ("parse_raw_data.txt", "inbound@inbound.inbound.com", "Testing with Request.bin", ()),
        (
            "parse_raw_data_with_attachments.txt",
            "inbound@inbound.inbound.com",
            "Raw Payload",
            (("SendGrid.jpg", "image/jpeg"),),
        ),
    ],
)
async def test_the_sdk_sample_payloads(
    hook: Harness, name: str, endpoint: str, subject: str, files: tuple[tuple[str, str], ...]
) -> None:
    resp = await post_parse(hook, posted(name))
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.endpoint == endpoint
    assert msg.customer_address == "test@example.com"
    assert msg.subject == subject
    assert msg.text == "Hello Twilio SendGrid!"
    # No Message-Id: the digest the Mailgun path makes, so a retry is the same message.
    assert msg.provider_message_id.startswith("sha256:")
    assert msg.conversation_key == f"email:{endpoint}:{msg.provider_message_id}"
    assert [(a.filename, a.content_type) for a in msg.attachments] == list(files)
    for attachment in msg.attachments:
        assert attachment.url == f"urn:switchboard:email:{msg.provider_message_id}:attachment1"
        assert attachment.size_bytes == 10295  # the JPEG, base64-decoded


async def test_a_reply_continues_the_thread_as_on_mailgun(hook: Harness) -> None:
    resp = await post_parse(hook, parsed_mail())
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.endpoint == OUR
    assert msg.queue == "email"
    assert msg.customer_address == "ann@example.org"
    assert msg.text == "Still waiting."
    assert msg.provider_message_id == "CAF=reply-2@mail.example.org"
    assert msg.in_reply_to == "outbound-1@acme.example"
    assert msg.conversation_key == f"email:{OUR}:CAF=first-1@mail.example.org"
    # The same mail through Mailgun: the same message, in the same conversation.
    [through_mailgun] = email_adapter.parse_mailgun(
        email_adapter.Form(
            [
                ("recipient", OUR),
                ("from", "Ann Customer <Ann@Example.org>"),
                ("subject", "Re: Order 1234"),
                ("stripped-text", "Still waiting."),
                ("Message-Id", "<CAF=reply-2@mail.example.org>"),
                ("In-Reply-To", "<outbound-1@acme.example>"),
                ("References", "<CAF=first-1@mail.example.org> <outbound-1@acme.example>"),
            ],
            [],
        ),
        channels(),
        NOW,
    )
    assert isinstance(through_mailgun, MessageReceived)
    for field in ("id", "conversation_key", "provider_message_id", "customer_id", "in_reply_to"):
        assert getattr(msg, field) == getattr(through_mailgun, field), field


async def test_raw_mode_threads_by_the_message_headers(hook: Harness) -> None:
    mime = (
        mail_headers(
            **{"Content-Type": 'multipart/alternative; boundary="alt"', "MIME-Version": "1.0"}
        )
        + "\n--alt\nContent-Type: text/html; charset=utf-8\n\n<p>Still <b>waiting</b>.</p>"
        + "\n--alt\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding:"
        + " quoted-printable\n\nToujours en attente, d=E9j=E0.\n--alt--\n"
    ).replace("\n", "\r\n")
    body = form(
        [
            ("email", mime),
            ("to", OUR),
            ("from", "Ann Customer <Ann@Example.org>"),
            ("envelope", json.dumps({"to": [OUR], "from": "ann@example.org"})),
            ("charsets", json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"})),
        ]
    )
    resp = await post_parse(hook, body)
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text == "Toujours en attente, déjà."
    assert msg.subject == "Re: Order 1234"
    assert msg.provider_message_id == "CAF=reply-2@mail.example.org"
    assert msg.conversation_key == f"email:{OUR}:CAF=first-1@mail.example.org"
    assert msg.attachments == ()


async def test_raw_mode_files_keep_their_name_type_size_and_content_id(hook: Harness) -> None:
    pdf = b"%PDF-1.4 stand-in"
    mime = (
        mail_headers(**{"Content-Type": 'multipart/mixed; boundary="mix"', "MIME-Version": "1.0"})
        + "\n--mix\nContent-Type: text/html; charset=utf-8\n\n<div>Here<br>it is &amp; more</div>"
        + "\n--mix\nContent-Type: application/pdf\nContent-Disposition: attachment;"
        + ' filename="=?utf-8?q?re=C3=A7u.pdf?="\nContent-Transfer-Encoding: base64\n\n'
        + base64.b64encode(pdf).decode()
        + "\n--mix\nContent-Type: image/png\nContent-ID: <logo@acme>\nContent-Transfer-Encoding:"
        + " base64\n\n"
        + base64.b64encode(b"png").decode()
        + "\n--mix\nContent-Type: message/rfc822\n\nSubject: forwarded\n\nold mail\n--mix--\n"
    ).replace("\n", "\r\n")
    resp = await post_parse(hook, form([("email", mime), ("to", OUR), ("from", "ann@example.org")]))
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text == "Here\nit is & more"  # HTML only: its text
    prefix = "urn:switchboard:email:CAF=reply-2@mail.example.org"
    assert msg.attachments == (
        Attachment(
            url=f"{prefix}:attachment1",
            content_type="application/pdf",
            filename="reçu.pdf",
            size_bytes=len(pdf),
        ),
        Attachment(
            url=f"{prefix}:attachment2",
            content_type="image/png",
            size_bytes=3,
            media_id="logo@acme",
        ),
        Attachment(url=f"{prefix}:attachment3", content_type="message/rfc822"),
    )


async def test_text_fields_are_read_in_the_charset_sendgrid_names(hook: Harness) -> None:
    body = form(
        [
            ("headers", mail_headers()),
            ("to", OUR),
            ("from", "Zoë <zoe@example.org>"),
            ("subject", "Déjà vu"),
            ("text", "Ça marche très bien.".encode("iso-8859-1")),
            (
                "charsets",
                json.dumps(
                    {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "iso-8859-1"}
                ),
            ),
        ]
    )
    resp = await post_parse(hook, body)
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text == "Ça marche très bien."
    assert msg.subject == "Déjà vu"
    assert msg.customer_address == "zoe@example.org"


async def test_a_charset_no_codec_decodes_falls_back_to_utf8(hook: Harness) -> None:
    body = form(
        [
            ("headers", mail_headers()),
            ("to", OUR),
            ("from", "ann@example.org"),
            ("text", b"caf\xc3\xa9 \xff"),
            ("charsets", json.dumps({"text": "rot13"})),
        ]
    )
    assert (await post_parse(hook, body)).status == 200
    [msg] = hook.publisher.messages
    assert msg.text == "café \ufffd"


@pytest.mark.parametrize("charset", ["unicode_escape", "Raw-Unicode-Escape", "idna"])
async def test_an_escape_codec_is_no_charset(hook: Harness, charset: str) -> None:
    """A sender's ``\\x00`` stays four characters: an escape codec would make it U+0000."""
    body = form(
        [
            ("headers", mail_headers()),
            ("to", OUR),
            ("from", "ann@example.org"),
            ("text", b"a\\x00b \\| c"),
            ("charsets", json.dumps({"text": charset})),
        ]
    )
    assert (await post_parse(hook, body)).status == 200
    [msg] = hook.publisher.messages
    assert msg.text == "a\\x00b \\| c"


async def test_the_envelope_recipient_picks_our_address(hook: Harness) -> None:
    body = form(
        [
            ("headers", mail_headers(To="list@lists.example.org")),
            ("to", "list@lists.example.org"),
            ("cc", "someone@example.org"),
            ("from", "ann@example.org"),
            ("text", "Bcc'd to support"),
            ("envelope", json.dumps({"to": [OUR.upper()], "from": "ann@example.org"})),
        ]
    )
    assert (await post_parse(hook, body)).status == 200
    [msg] = hook.publisher.messages
    assert msg.endpoint == OUR


async def test_a_mail_with_an_attachment_of_some_megabytes_is_taken(hook: Harness) -> None:
    """Inbound Parse posts the whole mail (SendGrid takes up to 30 MB), attachments included:
    one of 5 MB, over the other webhooks' body limit, is read and its mail routed."""
    scan = b"%PDF-1.4 " + b"0" * (5 * 1024 * 1024)
    body = form(
        [
            ("headers", mail_headers()),
            ("to", OUR),
            ("from", "Ann Customer <Ann@Example.org>"),
            ("text", "The scan you asked for."),
            ("envelope", json.dumps({"to": [OUR], "from": "ann@example.org"})),
            ("attachments", "1"),
            ("attachment-info", json.dumps({"attachment1": {"filename": "scan.pdf"}})),
        ],
        [("attachment1", "scan.pdf", "application/pdf", scan)],
    )
    assert (await post_parse(hook, body)).status == 200
    [msg] = hook.publisher.messages
    [att] = msg.attachments
    assert (att.filename, att.size_bytes) == ("scan.pdf", len(scan))


async def test_mail_to_no_address_of_ours_is_set_aside(hook: Harness) -> None:
    body = form([("to", "nobody@elsewhere.example"), ("from", "ann@example.org"), ("text", "hi")])
    reason = await hook.set_aside(await post_parse(hook, body), "sendgrid")
    assert "recipient" in reason


async def test_a_signed_body_that_is_not_a_form_is_set_aside(hook: Harness) -> None:
    body = b"--xYzZY\r\nno headers end"
    reason = await hook.set_aside(await post_parse(hook, body), "sendgrid")
    assert "multipart" in reason


async def test_a_raw_message_nesting_too_deep_is_set_aside(hook: Harness) -> None:
    nested = "".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n' for n in range(300)
    )
    body = form([("email", mail_headers() + nested), ("to", OUR), ("from", "ann@example.org")])
    reason = await hook.set_aside(await post_parse(hook, body), "sendgrid")
    assert "parts" in reason


# --- Inbound Parse authentication: signature, basic auth, both, explicitly none ------------


async def test_an_unsigned_parse_post_is_refused_401(hook: Harness) -> None:
    body = parsed_mail()
    resp = await hook.client.post(PARSE, data=body, headers={"Content-Type": FORM})
    assert resp.status == 401
    assert hook.publisher.batches == []


async def test_parse_refusals_bad_stale_and_replayed(hook: Harness) -> None:
    body = parsed_mail()
    bad = await hook.client.post(
        PARSE, data=body, headers={"Content-Type": FORM, **signed(EVENT_KEY, body)}
    )
    assert bad.status == 403
    max_age = SendGridConfig().parse_max_age_seconds
    stale = await hook.client.post(
        PARSE,
        data=body,
        headers={"Content-Type": FORM, **signed(PARSE_KEY, body, NOW - max_age - 1)},
    )
    assert stale.status == 403
    headers = {"Content-Type": FORM, **signed(PARSE_KEY, body)}
    assert (await hook.client.post(PARSE, data=body, headers=headers)).status == 200
    assert (await hook.client.post(PARSE, data=body, headers=headers)).status == 409
    assert len(hook.publisher.messages) == 1
    [claimed] = hook.nonces.claimed.values()
    assert claimed == NOW + max_age


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


async def test_basic_auth_from_the_parse_url() -> None:
    harness = await start(
        channels(parse_public_key="", parse_basic_auth_env="SENDGRID_PARSE_BASIC_AUTH")
    )
    try:
        body = parsed_mail()
        post = harness.client.post
        missing = await post(PARSE, data=body, headers={"Content-Type": FORM})
        assert missing.status == 401
        wrong = await post(
            PARSE,
            data=body,
            headers={"Content-Type": FORM, "Authorization": basic("parse-user:nope")},
        )
        assert wrong.status == 403
        bearer = await post(
            PARSE, data=body, headers={"Content-Type": FORM, "Authorization": "Bearer " + BASIC}
        )
        assert bearer.status == 401
        ok = await post(
            PARSE, data=body, headers={"Content-Type": FORM, "Authorization": basic(BASIC)}
        )
        assert ok.status == 200
        # No timestamp to sign: the same mail again is accepted, and is the same event.
        again = await post(
            PARSE, data=body, headers={"Content-Type": FORM, "Authorization": basic(BASIC)}
        )
        assert again.status == 200
        first, second = harness.publisher.messages
        assert first.id == second.id
        assert first.occurred_at == NOW
    finally:
        await harness.client.close()


async def test_signature_and_basic_auth_together_both_count() -> None:
    harness = await start(channels(parse_basic_auth_env="SENDGRID_PARSE_BASIC_AUTH"))
    try:
        body = parsed_mail()
        only_signed = await harness.client.post(
            PARSE, data=body, headers={"Content-Type": FORM, **signed(PARSE_KEY, body)}
        )
        assert only_signed.status == 401
        only_basic = await harness.client.post(
            PARSE, data=body, headers={"Content-Type": FORM, "Authorization": basic(BASIC)}
        )
        assert only_basic.status == 401
        both = await harness.client.post(
            PARSE,
            data=body,
            headers={
                "Content-Type": FORM,
                "Authorization": basic(BASIC),
                **signed(PARSE_KEY, body),
            },
        )
        assert both.status == 200
    finally:
        await harness.client.close()


async def test_without_any_authentication_configured_parse_answers_503() -> None:
    harness = await start(channels(parse_public_key=""))
    try:
        resp = await harness.client.post(PARSE, data=parsed_mail(), headers={"Content-Type": FORM})
        assert resp.status == 503
        assert harness.publisher.batches == []
    finally:
        await harness.client.close()


async def test_unauthenticated_parse_only_when_configured_so() -> None:
    harness = await start(channels(parse_public_key="", parse_unauthenticated=True))
    try:
        resp = await harness.client.post(PARSE, data=parsed_mail(), headers={"Content-Type": FORM})
        assert resp.status == 200
        assert len(harness.publisher.messages) == 1
    finally:
        await harness.client.close()


async def test_the_mailgun_route_still_answers_beside_sendgrids(hook: Harness) -> None:
    resp = await hook.client.post("/webhooks/email/mailgun", data={"recipient": OUR})
    assert resp.status == 401  # Mailgun's own refusal: no timestamp, token, signature
    unknown = await hook.client.post("/webhooks/email/postmark", data={})
    assert unknown.status == 404


@pytest.mark.parametrize(
    ("settings_", "error"),
    [
        ({"event_public_key": "not base64!"}, "event_public_key"),
        ({"parse_public_key": base64.b64encode(b"not a key").decode()}, "parse_public_key"),
        (
            {
                "event_public_key": base64.b64encode(
                    ec.generate_private_key(ec.SECP384R1())
                    .public_key()
                    .public_bytes(
                        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                    )
                ).decode()
            },
            "P-256",
        ),
        ({"event_max_age_seconds": 0}, "replay window"),
        ({"parse_max_age_seconds": 31 * 24 * 3600}, "replay window"),
        ({"parse_unauthenticated": True, "parse_basic_auth_env": "X"}, "contradicts"),
    ],
)
def test_the_configuration_refuses_what_cannot_authenticate(
    settings_: dict[str, Any], error: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=error):
        msgspec.convert({"sendgrid": settings_}, type=EmailConfig)


# --- Mail Send ----------------------------------------------------------------------------


def reply(**kw: Any) -> ReplyRequested:
    return ReplyRequested(
        id=kw.pop("id", OUTBOUND_ID),
        domain="acme",
        occurred_at=NOW,
        conversation_id="conv-1",
        agent_id="ann",
        channel=Channel.EMAIL,
        endpoint=kw.pop("endpoint", OUR),
        customer_address="ann@example.org",
        text=kw.pop("text", "Your parcel ships today."),
        **kw,
    )


def test_the_mail_send_request() -> None:
    request = build_request(
        reply(
            subject="Re: Order 1234",
            in_reply_to="CAF=reply-2@mail.example.org",
            quick_replies=("Yes", "No"),
        ),
        channels(),
        ENVIRON,
    )
    assert request.provider == "sendgrid"
    assert request.url == "https://api.sendgrid.com/v3/mail/send"
    assert request.headers == {"Authorization": f"Bearer {API_KEY}"}
    assert request.message_id_header == "X-Message-Id"
    assert request.prepare is None
    assert request.json == {
        "personalizations": [{"to": [{"email": "ann@example.org"}]}],
        "from": {"email": OUR},
        "subject": "Re: Order 1234",
        "content": [{"type": "text/plain", "value": "Your parcel ships today.\n\n1. Yes\n2. No"}],
        "headers": {
            "Message-ID": f"<{OUTBOUND_ID}@acme.example>",
            "In-Reply-To": "<CAF=reply-2@mail.example.org>",
            "References": "<CAF=reply-2@mail.example.org>",
        },
        "custom_args": {"switchboard_outbound_id": OUTBOUND_ID, "switchboard_endpoint": OUR},
    }


def test_a_reply_without_a_subject_gets_one_sendgrid_accepts() -> None:
    answer = build_request(reply(in_reply_to="x@y"), channels(), ENVIRON).json
    started = build_request(reply(), channels(), ENVIRON).json
    assert answer is not None
    assert started is not None
    assert answer["subject"] == "Re:"
    assert started["subject"] == "(no subject)"


def test_a_place_is_sent_as_text() -> None:
    request = build_request(
        reply(text="", location=Location(latitude=48.8584, longitude=2.2945, name="Tour Eiffel")),
        channels(),
        ENVIRON,
    )
    assert request.json is not None
    assert request.json["content"][0]["value"] == "Tour Eiffel (48.8584, 2.2945) geo:48.8584,2.2945"


def test_only_addresses_configured_for_sendgrid_send_through_it() -> None:
    config = channels()
    assert sendgrid.owns(reply(), config)
    assert not sendgrid.owns(reply(endpoint="mailgun@acme.example"), config)
    assert (
        build_request(reply(endpoint="mailgun@acme.example"), config, ENVIRON).provider == "mailgun"
    )
    with pytest.raises(EgressUnroutable):
        sendgrid.sendgrid_request(reply(endpoint="mailgun@acme.example"), config, ENVIRON)


def test_attachments_over_sendgrids_limits_are_refused_before_sending() -> None:
    too_big = Attachment(url="https://files.example/big.pdf", size_bytes=21 * 1024 * 1024)
    with pytest.raises(MediaRefused, match="SendGrid"):
        build_request(reply(attachments=(too_big,)), channels(), ENVIRON)
    unknown = Attachment(url="https://files.example/blob")
    with pytest.raises(MediaRefused, match="media type unknown"):
        build_request(reply(attachments=(unknown,)), channels(), ENVIRON)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeSendGrid, str]]:
    provider = FakeSendGrid(API_KEY)
    server = TestServer(provider.app(), host="127.0.0.1")
    await server.start_server()
    yield provider, str(server.make_url("")).rstrip("/")
    await server.close()


async def _no_sleep(_seconds: float) -> None:
    return None


async def send(config: ChannelsConfig, message: ReplyRequested) -> Any:
    async with aiohttp.ClientSession() as session:
        egress = Egress(
            channels=config,
            environ=ENVIRON,
            session=session,
            metrics=Metrics(),
            ledger=InMemorySentLedger(),
            retry=RetryPolicy(max_attempts=2, base_delay=0),
            sleep=_no_sleep,
        )
        return await egress.send(message)


async def test_a_reply_with_files_reaches_sendgrid(fake: tuple[FakeSendGrid, str]) -> None:
    provider, base = fake
    provider.hosted["invoice.pdf"] = ("application/pdf", b"%PDF-1.4 invoice")
    provider.hosted["photo"] = ("image/png", b"\x89PNG photo")
    message = reply(
        attachments=(
            Attachment(url=f"{base}/files/invoice.pdf"),
            Attachment(url=f"{base}/files/photo", content_type="image/png", filename="parcel.png"),
        )
    )
    result = await send(channels(api_base_url=base), message)
    assert result.outcome is SendOutcome.SENT, result.error
    [mail] = provider.sent
    assert result.provider_message_id == mail.message_id  # X-Message-Id
    assert mail.json["attachments"] == [
        {
            "content": base64.b64encode(b"%PDF-1.4 invoice").decode(),
            "type": "application/pdf",
            "filename": "invoice.pdf",
            "disposition": "attachment",
        },
        {
            "content": base64.b64encode(b"\x89PNG photo").decode(),
            "type": "image/png",
            "filename": "parcel.png",
            "disposition": "attachment",
        },
    ]
    assert mail.json["custom_args"]["switchboard_outbound_id"] == OUTBOUND_ID


async def test_a_file_that_cannot_be_fetched_fails_the_send(fake: tuple[FakeSendGrid, str]) -> None:
    provider, base = fake
    message = reply(attachments=(Attachment(url=f"{base}/files/gone.pdf"),))
    result = await send(channels(api_base_url=base), message)
    assert result.outcome is SendOutcome.FAILED
    assert result.error == "attachment 1: HTTP 404"
    assert provider.sent == []


async def test_sendgrid_refusing_the_key_fails_the_send(fake: tuple[FakeSendGrid, str]) -> None:
    provider, base = fake
    result = await send(channels(api_base_url=base, api_key_env="OTHER_KEY"), reply())
    assert result.outcome is SendOutcome.FAILED
    assert "OTHER_KEY" in (result.error or "")
    environ_key = await _send_with(base, {"SENDGRID_API_KEY": "SG.wrong"})
    assert environ_key.outcome is SendOutcome.FAILED
    assert environ_key.status_code == 401
    assert provider.refused[-1][0] == 401


async def _send_with(base: str, environ: dict[str, str]) -> Any:
    async with aiohttp.ClientSession() as session:
        egress = Egress(
            channels=channels(api_base_url=base),
            environ=environ,
            session=session,
            metrics=Metrics(),
            ledger=InMemorySentLedger(),
            retry=RetryPolicy(max_attempts=1),
            sleep=_no_sleep,
        )
        return await egress.send(reply())


async def test_prepare_stops_at_sendgrids_size_for_all_files(
    fake: tuple[FakeSendGrid, str],
) -> None:
    provider, base = fake
    megabytes = 8 * 1024 * 1024
    for n in range(3):
        provider.hosted[f"f{n}.bin"] = ("application/octet-stream", bytes(megabytes - 1))
    message = reply(attachments=tuple(Attachment(url=f"{base}/files/f{n}.bin") for n in range(3)))
    request = build_request(message, channels(api_base_url=base), ENVIRON)
    assert request.prepare is not None
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrepareFailed, match="larger than"):
            await request.prepare(session)
    assert provider.sent == []
