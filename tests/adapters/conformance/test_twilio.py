"""Twilio conformance: every documented webhook shape, the signature against Twilio's own
vectors and twilio-python's ``RequestValidator`` (form and JSON ``bodySHA256``), the URLs
Twilio signs, refusals, and what a reply through Twilio may carry.

Documentation the fixtures (``tests/adapters/fixtures/twilio/``) come from, placeholders
(``SMXXXX…``, ``ACXXXX…``) filled with our values:
- https://www.twilio.com/docs/messaging/guides/webhook-request: the incoming message
  parameters (``sms_*``, ``mms_incoming``: standard, media, geographic,
  ``MessagingServiceSid``, Advanced Opt-Out's ``OptOutType``; ``whatsapp_*``:
  ``ProfileName``, ``WaId``, ``Forwarded``, ``FrequentlyForwarded``, ``MessageType``,
  ``ChannelMetadata``, ``ButtonText``/``ButtonPayload``, ``Latitude``/``Longitude``/
  ``Address``/``Label``, ``OriginalRepliedMessageSender``/``OriginalRepliedMessageSid``,
  the click-to-WhatsApp ``Referral*`` parameters);
- https://www.twilio.com/docs/messaging/guides/track-outbound-message-status: status
  callbacks (``status_sent``: the guide's example, verbatim, no ``To``; ``RawDlrDoneDate``
  of SMS ``delivered``/``undelivered``; ``ErrorCode``; ``MessagingServiceSid``;
  WhatsApp's ``ChannelInstallSid``, ``ChannelStatusMessage``, ``ChannelPrefix``,
  ``EventType`` ``READ``);
- https://www.twilio.com/docs/messaging/api/message-resource: the ``status`` values;
- https://www.twilio.com/docs/usage/webhooks/webhooks-security: the signature, its worked
  example (``L/OH5YylLD5NRKLltdqwSvS0BnU=``) and the JSON example's ``bodySHA256``;
- https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys: webhooks a Webhook Rule
  has signed with a SharedKey's secret, named with the algorithm in
  ``X-Twilio-Webhooks-Signature-Settings``;
- https://www.twilio.com/docs/messaging/guides/accepted-mime-types and
  https://www.twilio.com/docs/whatsapp/guidance-whatsapp-media-messages: media limits;
- https://www.twilio.com/docs/whatsapp/message-features: ``PersistentAction`` ``geo:``.
twilio-python's own test vectors are from its ``tests/unit/test_request_validator.py``.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import (  # type: ignore[import-untyped]  # twilio ships no types
    RequestValidator,
    get_signature_algorithm,
)
from twilio.rest.api.v2010.account.message import (  # type: ignore[import-untyped]
    MessageInstance,
)

from adapters import twilio, twilio_routes
from adapters.base import SignatureRejected, inbound_event_id
from adapters.config import ChannelsConfig
from adapters.egress import twilio_request
from adapters.media import MediaRefused
from adapters.webhooks import WebhookContext, refuse_encoded_bodies
from runtime.metrics import Metrics
from schemas import (
    Attachment,
    Channel,
    Consent,
    DeliveryStatus,
    DeliveryStatusChanged,
    Location,
    MessageReceived,
    ReplyRequested,
)
from tests.adapters.conftest import Harness, MemoryNonces, RecordingPublisher

FIXTURES = Path(__file__).parent.parent / "fixtures" / "twilio"
TOKEN = "twilio-conformance-token"
SHARED_KEYS = {"webhooks_sharedkey_old": "shared-secret-old", "webhooks_sharedkey_new": "x" * 40}
"""Two SharedKeys configured, as while one is rotated to the other."""
ENVIRON = {
    "TWILIO_AUTH_TOKEN": TOKEN,
    "TWILIO_SHARED_KEY_OLD": SHARED_KEYS["webhooks_sharedkey_old"],
    "TWILIO_SHARED_KEY_NEW": SHARED_KEYS["webhooks_sharedkey_new"],
}
PUBLIC_URL = "https://switchboard.example.com"
NOW = 1_700_000_000.0
OURS, CUSTOMER = "+15017250604", "+15558675310"
WA_OURS, WA_CUSTOMER = "+14155238886", "+15005550006"
PROXIED = "https://gateway.example.com:8443/proxy/sms?tenant=acme&key=a%20b"
SERVICE = "https://hooks.example.com/proxy/service?svc=MG1#rc=2"
NUMBER_STATUS = "https://gateway.example.com/proxy/status?tenant=acme"
CHANNELS = msgspec.toml.decode(
    f"""
phone_identity_domains = ["acme"]

[twilio]
account_sid = "AC{"a" * 32}"
webhook_urls = ["{SERVICE}"]
shared_keys = [
  {{ key = "webhooks_sharedkey_old", secret_env = "TWILIO_SHARED_KEY_OLD" }},
  {{ key = "webhooks_sharedkey_new", secret_env = "TWILIO_SHARED_KEY_NEW" }},
  {{ key = "webhooks_sharedkey_unset", secret_env = "TWILIO_SHARED_KEY_UNSET" }},
]

[[twilio.numbers]]
number = "{OURS}"
domain = "acme"
queue = "sms"
webhook_url = "{PROXIED}"
status_callback_url = "{NUMBER_STATUS}"

[[twilio.numbers]]
number = "{WA_OURS}"
domain = "acme"
queue = "whatsapp"
""",
    type=ChannelsConfig,
)
SDK = RequestValidator(TOKEN)


def fixture(name: str) -> dict[str, str]:
    params: dict[str, str] = json.loads((FIXTURES / f"{name}.json").read_text())
    return params


FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def signed(url: str, params: dict[str, str]) -> dict[str, str]:
    """The ``X-Twilio-Signature`` twilio-python computes for ``url`` and ``params``."""
    return {twilio.SIGNATURE_HEADER: SDK.compute_signature(url, params)}


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    publisher, metrics, nonces = RecordingPublisher(), Metrics(), MemoryNonces()
    ctx = WebhookContext(
        channels=CHANNELS,
        environ=ENVIRON,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        public_url=PUBLIC_URL,
        clock=lambda: NOW,
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    app.add_routes(twilio_routes.routes(ctx))  # webhook_routes registers these: see the e2e
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Harness(client, publisher, metrics, nonces)
    await client.close()


# --- The signature against Twilio's published vectors and twilio-python ---------------

DOCS_URL = "https://example.com/myapp.php?foo=1&bar=2"
DOCS_PARAMS = {
    "Digits": "1234",
    "To": "+18005551212",
    "From": "+14158675310",
    "Caller": "+14158675310",
    "CallSid": "CA1234567890ABCDE",
}
SDK_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
SDK_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
SDK_BODY = '{"property": "value", "boolean": true}'
SDK_BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


def test_the_documented_worked_example() -> None:
    """The security guide's example: Auth Token 12345, the URL with its query, the POST
    parameters sorted by name."""
    pairs = list(DOCS_PARAMS.items())
    assert twilio.compute_signature("12345", DOCS_URL, pairs) == "L/OH5YylLD5NRKLltdqwSvS0BnU="
    assert RequestValidator("12345").validate(DOCS_URL, DOCS_PARAMS, "L/OH5YylLD5NRKLltdqwSvS0BnU=")
    assert twilio.verified_url("12345", [DOCS_URL], pairs, "L/OH5YylLD5NRKLltdqwSvS0BnU=") == (
        DOCS_URL
    )


def test_twilio_python_vectors_repeated_values_sorted_and_deduplicated() -> None:
    assert (
        twilio.compute_signature("12345", SDK_URL, list(SDK_PARAMS.items()))
        == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    repeated = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert twilio.compute_signature("12345", SDK_URL, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        (SDK_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        (
            SDK_URL.replace(".com", ".com:1234").replace("https", "http"),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
        (SDK_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        (SDK_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),
    ],
    ids=["https-port-removed", "http-port-removed", "https-443-added", "http-80-added"],
)
def test_port_variants_are_those_twilio_python_accepts(url: str, signature: str) -> None:
    assert RequestValidator("12345").validate(url, SDK_PARAMS, signature)
    assert twilio.verified_url("12345", [url], list(SDK_PARAMS.items()), signature) == url


@pytest.mark.parametrize(
    ("configured", "signed_for"),
    [
        ("https://MyCompany.com/myapp.php?foo=1", "https://MyCompany.com:443/myapp.php?foo=1"),
        ("https://MyCompany.com:443/myapp.php?foo=1", "https://MyCompany.com/myapp.php?foo=1"),
    ],
)
def test_port_variants_keep_the_host_as_written(configured: str, signed_for: str) -> None:
    """twilio-python adds or removes the port and leaves the host's letters alone."""
    signature = RequestValidator("12345").compute_signature(signed_for, SDK_PARAMS)
    assert RequestValidator("12345").validate(configured, SDK_PARAMS, signature)
    params = list(SDK_PARAMS.items())
    assert twilio.verified_url("12345", [configured], params, signature) == configured


def test_an_ipv6_hosts_port_variants_keep_its_brackets() -> None:
    """(twilio-python cuts such a host at its first colon.)"""
    assert twilio._port_variants("http://[::1]:8080/a") == (
        "http://[::1]:8080/a",
        "http://[::1]/a",
    )
    assert twilio._port_variants("https://[::1]/a") == ("https://[::1]/a", "https://[::1]:443/a")


def test_a_json_body_is_signed_through_its_hash_in_the_url() -> None:
    """twilio-python's JSON vector, and the guide's JSON example body and its hash."""
    url = SDK_URL + "&bodySHA256=" + SDK_BODY_HASH
    body = SDK_BODY.encode()
    assert RequestValidator("12345").validate(url, SDK_BODY, "a9nBmqA0ju/hNViExpshrM61xv4=")
    assert twilio.verified_json_url("12345", [url], body, "a9nBmqA0ju/hNViExpshrM61xv4=") == url
    documented = b'{"CallSid":"CA1234567890ABCDE","Caller":"+12349013030"}'
    assert hashlib.sha256(documented).hexdigest() == (
        "5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9"
    )
    docs_url = "https://example.com/myapp?bodySHA256=" + hashlib.sha256(documented).hexdigest()
    signature = RequestValidator("12345").compute_signature(docs_url, {})
    assert RequestValidator("12345").validate(docs_url, documented.decode(), signature)
    assert twilio.verified_json_url("12345", [docs_url], documented, signature) == docs_url


def test_a_tampered_json_body_fails_like_the_sdk() -> None:
    url = SDK_URL + "&bodySHA256=" + SDK_BODY_HASH
    tampered = SDK_BODY.replace("value", "VALUE")
    assert not RequestValidator("12345").validate(url, tampered, "a9nBmqA0ju/hNViExpshrM61xv4=")
    with pytest.raises(SignatureRejected):
        twilio.verified_json_url("12345", [url], tampered.encode(), "a9nBmqA0ju/hNViExpshrM61xv4=")


class MultiDict(dict[str, str]):
    """The multi-valued mapping RequestValidator reads repeated parameters from."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


urls = st.builds(
    lambda scheme, host, port, path, query: urllib.parse.urlunsplit(
        (scheme, host + (f":{port}" if port else ""), path, query, "")
    ),
    st.sampled_from(["http", "https"]),
    st.sampled_from(["example.com", "hooks.example.org"]),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.sampled_from(["/", "/webhooks/twilio/sms", "/a/b.php"]),
    st.sampled_from(["", "x=1", "a=1&b=%20c", "tenant=acme&outbound_id=out-1"]),
)


@given(urls, st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=12)), max_size=8))
def test_form_verification_agrees_with_the_sdk(url: str, pairs: list[tuple[str, str]]) -> None:
    """Whatever the URL's port and the parameters, a signature twilio-python computes for
    the URL without port or with the default port is accepted as it accepts it."""
    parsed = urllib.parse.urlsplit(url)
    default = 443 if parsed.scheme == "https" else 80
    bare = parsed._replace(netloc=parsed.hostname or "").geturl()
    with_default = parsed._replace(netloc=f"{parsed.hostname}:{parsed.port or default}").geturl()
    for signed_url in (bare, with_default):
        signature = SDK.compute_signature(signed_url, MultiDict(pairs))
        assert SDK.validate(url, MultiDict(pairs), signature)
        assert twilio.verified_url(TOKEN, [url], pairs, signature) == url


@given(urls, st.binary(max_size=200), st.booleans())
def test_json_verification_agrees_with_the_sdk(url: str, raw: bytes, tamper: bool) -> None:
    body = raw.decode("utf-8", "replace")
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    signed_url = url + separator + "bodySHA256=" + hashlib.sha256(body.encode()).hexdigest()
    signature = SDK.compute_signature(signed_url, {})
    sent = body + "x" if tamper else body
    expected = SDK.validate(signed_url, sent, signature)
    assert expected is not tamper
    if expected:
        assert twilio.verified_json_url(TOKEN, [signed_url], sent.encode(), signature)
    else:
        with pytest.raises(SignatureRejected):
            twilio.verified_json_url(TOKEN, [signed_url], sent.encode(), signature)


# --- Every documented shape through the real route -------------------------------------


def route_of(name: str) -> str:
    return twilio.STATUS_PATH if name.startswith("status_") else twilio.SMS_PATH


@pytest.mark.parametrize("name", FIXTURE_NAMES)
async def test_every_documented_shape_is_accepted_and_published(hook: Harness, name: str) -> None:
    params = fixture(name)
    path = route_of(name)
    resp = await hook.client.post(path, data=params, headers=signed(PUBLIC_URL + path, params))
    assert resp.status == 200, await resp.text()
    assert "<Response/>" in await resp.text()
    assert hook.publisher.dead_letters == []
    [event] = hook.publisher.events
    expected = DeliveryStatusChanged if name.startswith("status_") else MessageReceived
    assert isinstance(event, expected)
    assert event.provider_message_id == params["MessageSid"]
    assert hook.count("twilio", "accepted") == 1


async def post_fixture(hook: Harness, name: str) -> Any:
    params = fixture(name)
    path = route_of(name)
    resp = await hook.client.post(path, data=params, headers=signed(PUBLIC_URL + path, params))
    assert resp.status == 200, await resp.text()
    [event] = hook.publisher.events
    return event


async def test_mms_media_keep_twilio_urls_types_and_media_sids(hook: Harness) -> None:
    msg = await post_fixture(hook, "mms_incoming")
    params = fixture("mms_incoming")
    assert [(a.url, a.content_type, a.media_id) for a in msg.attachments] == [
        (params["MediaUrl0"], "image/jpeg", "ME" + "d" * 32),
        (params["MediaUrl1"], "application/pdf", "ME" + "e" * 32),
    ]
    assert (msg.channel, msg.endpoint, msg.customer_address) == (Channel.SMS, OURS, CUSTOMER)
    assert msg.id == inbound_event_id("acme", "sms", params["MessageSid"])


async def test_a_shared_whatsapp_location_is_a_location(hook: Harness) -> None:
    msg = await post_fixture(hook, "whatsapp_location")
    assert msg.channel is Channel.WHATSAPP
    assert msg.location == Location(
        latitude=37.78789,
        longitude=-122.391664,
        name="Twilio HQ",
        address="375 Beale St, San Francisco, CA 94105",
    )
    assert msg.text == ""
    assert msg.reply_window_ends_at == NOW + 24 * 3600


async def test_a_button_answer_is_its_text_in_reply_to_our_message(hook: Harness) -> None:
    msg = await post_fixture(hook, "whatsapp_button_reply")
    assert (msg.text, msg.in_reply_to) == ("Yes", "SM" + "8" * 32)


async def test_a_button_answer_without_body_is_its_button_text() -> None:
    params = {**fixture("whatsapp_button_reply"), "Body": ""}
    [msg] = twilio.parse_webhook(list(params.items()), CHANNELS, NOW)
    assert isinstance(msg, MessageReceived)
    assert msg.text == "Yes"


async def test_a_quoted_reply_names_the_message_it_quotes(hook: Harness) -> None:
    msg = await post_fixture(hook, "whatsapp_quoted_reply")
    assert msg.in_reply_to == "SM" + "a" * 32


async def test_an_advanced_opt_out_stop_is_the_providers_opt_out(hook: Harness) -> None:
    msg = await post_fixture(hook, "sms_opt_out")
    assert (msg.consent, msg.consent_source) == (Consent.OPT_OUT, "provider")


async def test_whatsapp_media_and_ad_referrals_are_messages(hook: Harness) -> None:
    image = await post_fixture(hook, "whatsapp_image")
    assert [(a.content_type, a.media_id) for a in image.attachments] == [
        ("image/jpeg", "ME" + "f" * 32)
    ]
    hook.publisher.batches.clear()
    referral = await post_fixture(hook, "whatsapp_referral")
    assert referral.text == "Hi, I saw your ad"


async def test_the_documented_sent_callback_without_to_is_a_status(hook: Harness) -> None:
    status = await post_fixture(hook, "status_sent")
    assert (status.status, status.provider_status, status.domain) == (
        DeliveryStatus.SENT,
        "sent",
        "acme",
    )
    assert status.outbound_id is None


@pytest.mark.parametrize(
    ("name", "status", "channel", "error"),
    [
        ("status_delivered", DeliveryStatus.DELIVERED, Channel.SMS, None),
        ("status_undelivered", DeliveryStatus.UNDELIVERED, Channel.SMS, "30003"),
        ("status_failed", DeliveryStatus.FAILED, Channel.SMS, "30008"),
        ("status_messaging_service", DeliveryStatus.SENT, Channel.SMS, None),
        ("status_whatsapp_read", DeliveryStatus.READ, Channel.WHATSAPP, None),
        ("status_whatsapp_failed", DeliveryStatus.FAILED, Channel.WHATSAPP, "63016"),
    ],
)
async def test_status_callbacks_map_and_keep_twilios_word(
    hook: Harness, name: str, status: DeliveryStatus, channel: Channel, error: str | None
) -> None:
    event = await post_fixture(hook, name)
    assert (event.status, event.channel, event.error_code) == (status, channel, error)
    assert event.provider_status == fixture(name)["MessageStatus"]


def test_the_status_map_is_total_over_the_documented_statuses() -> None:
    assert set(twilio.STATUS_MAP) == set(twilio.DOCUMENTED_STATUSES)
    sdk_statuses = {value for name, value in vars(MessageInstance.Status).items() if name.isupper()}
    assert sdk_statuses <= set(twilio.DOCUMENTED_STATUSES)
    assert twilio.STATUS_MAP["undelivered"] is DeliveryStatus.UNDELIVERED


@pytest.mark.parametrize(
    "word", [s for s in twilio.DOCUMENTED_STATUSES if twilio.STATUS_MAP[s] is not None]
)
def test_every_delivery_status_is_reported_with_its_raw_name(word: str) -> None:
    params = {**fixture("status_sent"), "MessageStatus": word, "SmsStatus": word}
    [event] = twilio.parse_webhook(list(params.items()), CHANNELS, NOW)
    assert isinstance(event, DeliveryStatusChanged)
    assert (event.status, event.provider_status) == (twilio.STATUS_MAP[word], word)


def test_a_status_twilio_does_not_document_or_without_a_sender_says_nothing() -> None:
    unknown = {**fixture("status_sent"), "MessageStatus": "teleported"}
    assert twilio.parse_webhook(list(unknown.items()), CHANNELS, NOW) == []
    no_sender = {k: v for k, v in fixture("status_sent").items() if k != "From"}
    assert twilio.parse_webhook(list(no_sender.items()), CHANNELS, NOW) == []


# --- JSON bodies signed with bodySHA256 ------------------------------------------------


def json_request(params: dict[str, str], path: str = twilio.SMS_PATH) -> tuple[str, bytes, str]:
    """A JSON webhook as Twilio sends it: the path with ``bodySHA256``, the body, and the
    URL signed (no POST parameters)."""
    body = json.dumps(params).encode()
    query = "bodySHA256=" + hashlib.sha256(body).hexdigest()
    return f"{path}?{query}", body, SDK.compute_signature(f"{PUBLIC_URL}{path}?{query}", {})


async def test_a_json_body_signed_with_body_sha256_is_accepted(hook: Harness) -> None:
    params = fixture("sms_incoming")
    target, body, signature = json_request(params)
    assert SDK.validate(PUBLIC_URL + target, body.decode(), signature)
    resp = await hook.client.post(
        target,
        data=body,
        headers={"Content-Type": "application/json", twilio.SIGNATURE_HEADER: signature},
    )
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert (msg.text, msg.provider_message_id) == (params["Body"], params["MessageSid"])


async def test_a_tampered_json_body_is_403_and_nothing_published(hook: Harness) -> None:
    target, body, signature = json_request(fixture("sms_incoming"))
    resp = await hook.client.post(
        target,
        data=body.replace(b"parcel", b"PARCEL"),
        headers={"Content-Type": "application/json", twilio.SIGNATURE_HEADER: signature},
    )
    assert resp.status == 403
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
    assert hook.signature_failures("twilio") == 1


async def test_json_without_body_sha256_is_415_and_unsigned_json_401(hook: Harness) -> None:
    resp = await hook.client.post(twilio.SMS_PATH, json=fixture("sms_incoming"))
    assert resp.status == 415
    target, body, _ = json_request(fixture("sms_incoming"))
    resp = await hook.client.post(target, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 401


async def test_signed_json_that_is_not_an_object_is_set_aside(hook: Harness) -> None:
    body = b'["not", "an", "object"]'
    query = "bodySHA256=" + hashlib.sha256(body).hexdigest()
    signature = SDK.compute_signature(f"{PUBLIC_URL}{twilio.SMS_PATH}?{query}", {})
    resp = await hook.client.post(
        f"{twilio.SMS_PATH}?{query}",
        data=body,
        headers={"Content-Type": "application/json", twilio.SIGNATURE_HEADER: signature},
    )
    assert "malformed" in await hook.set_aside(resp, "twilio")


# --- The URLs Twilio signs ---------------------------------------------------------------


def test_every_configured_path_is_served() -> None:
    assert twilio.served_paths(CHANNELS) == [
        twilio.SMS_PATH,
        twilio.STATUS_PATH,
        "/proxy/service",
        "/proxy/sms",
        "/proxy/status",
    ]


@pytest.mark.parametrize(
    "target",
    ["/proxy/sms?tenant=acme&key=a%20b", "/proxy/sms"],
    ids=["query-passed-on", "query-stripped-by-the-proxy"],
)
async def test_a_number_behind_a_proxy_is_verified_against_its_configured_url(
    hook: Harness, target: str
) -> None:
    params = fixture("sms_incoming")
    resp = await hook.client.post(target, data=params, headers=signed(PROXIED, params))
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.endpoint == OURS


async def test_the_configured_url_without_its_port_verifies_as_the_sdk_accepts(
    hook: Harness,
) -> None:
    params = fixture("sms_incoming")
    without_port = PROXIED.replace(":8443", "")
    assert SDK.validate(PROXIED, params, SDK.compute_signature(without_port, params))
    resp = await hook.client.post(
        "/proxy/sms?tenant=acme&key=a%20b", data=params, headers=signed(without_port, params)
    )
    assert resp.status == 200


@pytest.mark.parametrize(
    "signed_for",
    [
        PROXIED.replace("tenant=acme", "tenant=globex"),
        PROXIED.replace("/proxy/sms", "/proxy/other"),
        PROXIED.replace("gateway.example.com", "evil.example.com"),
        PUBLIC_URL + twilio.SMS_PATH,
    ],
    ids=["other-query", "other-path", "other-host", "not-this-route"],
)
async def test_a_signature_for_another_url_is_403(hook: Harness, signed_for: str) -> None:
    params = fixture("sms_incoming")
    resp = await hook.client.post(
        "/proxy/sms?tenant=acme&key=a%20b", data=params, headers=signed(signed_for, params)
    )
    assert resp.status == 403
    assert hook.publisher.batches == []


async def test_a_messaging_service_url_with_connection_overrides(hook: Harness) -> None:
    """Twilio never sends the ``#rc=…`` fragment: the URL verifies without it."""
    params = fixture("sms_messaging_service")
    bare = SERVICE.partition("#")[0]
    resp = await hook.client.post(
        "/proxy/service?svc=MG1", data=params, headers=signed(bare, params)
    )
    assert resp.status == 200, await resp.text()
    assert hook.publisher.messages[0].endpoint == OURS


async def test_a_status_callback_names_our_message_from_its_signed_url(hook: Harness) -> None:
    params = fixture("status_delivered")
    target = twilio.STATUS_PATH + "?outbound_id=out-0001"
    resp = await hook.client.post(target, data=params, headers=signed(PUBLIC_URL + target, params))
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert (status.outbound_id, status.status, status.provider_status) == (
        "out-0001",
        DeliveryStatus.DELIVERED,
        "delivered",
    )


async def test_a_numbers_own_status_url_carries_the_id_after_its_query(hook: Harness) -> None:
    params = fixture("status_undelivered")
    url = twilio.with_query(NUMBER_STATUS, twilio.OUTBOUND_ID, "out-0002")
    assert url == NUMBER_STATUS + "&outbound_id=out-0002"
    target = url.removeprefix("https://gateway.example.com")
    resp = await hook.client.post(target, data=params, headers=signed(url, params))
    assert resp.status == 200, await resp.text()
    [status] = hook.publisher.statuses
    assert (status.outbound_id, status.status) == ("out-0002", DeliveryStatus.UNDELIVERED)


async def test_an_outbound_id_added_after_signing_is_403(hook: Harness) -> None:
    params = fixture("status_delivered")
    signed_target = twilio.STATUS_PATH + "?outbound_id=out-0001"
    resp = await hook.client.post(
        twilio.STATUS_PATH + "?outbound_id=out-9999",
        data=params,
        headers=signed(PUBLIC_URL + signed_target, params),
    )
    assert resp.status == 403
    assert hook.publisher.batches == []


async def test_a_signed_outbound_id_that_cannot_be_ours_is_left_out(hook: Harness) -> None:
    params = fixture("status_delivered")
    target = twilio.STATUS_PATH + "?outbound_id=" + "x" * 200
    resp = await hook.client.post(target, data=params, headers=signed(PUBLIC_URL + target, params))
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert status.outbound_id is None  # still counted by its MessageSid


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://user:secret@gateway.example.com/sms", "user name"),
        ("https://gateway.example.com/v1/domains/acme", "another part"),
        ("https://gateway.example.com/webhooks/meta", "another part"),
        ("ftp://gateway.example.com/sms", "http or https"),
        ("https://gateway.example.com/sms/{x}", "only letters"),
    ],
)
def test_a_url_that_cannot_be_served_is_refused_at_load(url: str, reason: str) -> None:
    toml = f'[twilio]\nnumbers = [{{ number = "{OURS}", domain = "acme", webhook_url = "{url}" }}]'
    with pytest.raises(msgspec.ValidationError, match=reason):
        msgspec.toml.decode(toml, type=ChannelsConfig)


# --- Refusals -----------------------------------------------------------------------------


async def test_a_missing_signature_is_401(hook: Harness) -> None:
    resp = await hook.client.post(twilio.SMS_PATH, data=fixture("sms_incoming"))
    assert resp.status == 401
    assert hook.publisher.batches == []


async def test_a_signature_with_another_token_is_403(hook: Harness) -> None:
    params = fixture("sms_incoming")
    wrong = RequestValidator("another-token").compute_signature(
        PUBLIC_URL + twilio.SMS_PATH, params
    )
    resp = await hook.client.post(
        twilio.SMS_PATH, data=params, headers={twilio.SIGNATURE_HEADER: wrong}
    )
    assert resp.status == 403
    assert hook.signature_failures("twilio") == 1


async def test_a_tampered_parameter_is_403(hook: Harness) -> None:
    params = fixture("sms_incoming")
    headers = signed(PUBLIC_URL + twilio.SMS_PATH, params)
    resp = await hook.client.post(
        twilio.SMS_PATH, data={**params, "Body": "Refund me"}, headers=headers
    )
    assert resp.status == 403


async def test_a_replay_cannot_be_told_apart_and_publishes_the_same_event(hook: Harness) -> None:
    """Twilio signs no timestamp or nonce (nothing makes a request stale), and its
    ``I-Twilio-Idempotency-Token`` is outside the signature: a replay, whatever that header
    says, is the same event, dropped downstream by its id."""
    params = fixture("sms_incoming")
    headers = signed(PUBLIC_URL + twilio.SMS_PATH, params)
    for token in ("idem-1", "idem-2"):
        resp = await hook.client.post(
            twilio.SMS_PATH,
            data=params,
            headers={**headers, "I-Twilio-Idempotency-Token": token},
        )
        assert resp.status == 200
    first, second = hook.publisher.messages
    assert first.id == second.id == inbound_event_id("acme", "sms", params["MessageSid"])
    assert "none signed" in twilio.DECLARATION.replay_protection


def shared_key_signed(
    params: dict[str, str], key: str, algorithm: str, secret: str | None = None
) -> dict[str, str]:
    """Headers of a webhook a Webhook Rule has Twilio sign with the SharedKey ``key``
    (its configured secret unless ``secret`` says otherwise), as twilio-python computes it."""
    validator = RequestValidator(SHARED_KEYS.get(key, "") if secret is None else secret)
    return {
        twilio.SIGNATURE_HEADER: validator.compute_signature(
            PUBLIC_URL + twilio.SMS_PATH, params, algorithm
        ),
        twilio.SIGNATURE_SETTINGS_HEADER: f"key={key},algorithm={algorithm}",
    }


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
@pytest.mark.parametrize("key", sorted(SHARED_KEYS))
async def test_a_sharedkey_signature_verifies_as_the_sdk_computes_it(
    hook: Harness, key: str, algorithm: str
) -> None:
    """Either key of a rotation, either algorithm: the secret the header's key names."""
    params = fixture("sms_incoming")
    headers = shared_key_signed(params, key, algorithm)
    assert RequestValidator(SHARED_KEYS[key]).validate(
        PUBLIC_URL + twilio.SMS_PATH, params, headers[twilio.SIGNATURE_HEADER], algorithm
    )
    resp = await hook.client.post(twilio.SMS_PATH, data=params, headers=headers)
    assert resp.status == 200
    assert len(hook.publisher.messages) == 1


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("webhooks_sharedkey_new", TOKEN),  # the Auth Token, under a SharedKey's header
        ("webhooks_sharedkey_new", SHARED_KEYS["webhooks_sharedkey_old"]),  # the other key
        ("webhooks_sharedkey_elsewhere", SHARED_KEYS["webhooks_sharedkey_new"]),  # not ours
        ("", SHARED_KEYS["webhooks_sharedkey_new"]),  # the header names no key
    ],
    ids=["auth-token", "other-key", "key-not-configured", "no-key"],
)
async def test_a_signature_by_another_secret_than_the_named_sharedkeys_is_403(
    hook: Harness, key: str, secret: str
) -> None:
    params = fixture("sms_incoming")
    headers = shared_key_signed(params, key, "HMAC_SHA256", secret)
    resp = await hook.client.post(twilio.SMS_PATH, data=params, headers=headers)
    assert resp.status == 403
    assert hook.publisher.messages == []


async def test_the_auth_token_signs_what_carries_no_settings_header(hook: Harness) -> None:
    """Without ``X-Twilio-Webhooks-Signature-Settings`` (or with it empty), the Auth Token and
    HMAC-SHA1, SharedKeys configured or not; a SharedKey's signature is then refused."""
    params = fixture("sms_incoming")
    by_token = signed(PUBLIC_URL + twilio.SMS_PATH, params)
    empty = {**by_token, twilio.SIGNATURE_SETTINGS_HEADER: " "}
    for headers in (by_token, empty):
        resp = await hook.client.post(twilio.SMS_PATH, data=params, headers=headers)
        assert resp.status == 200
    by_key = shared_key_signed(params, "webhooks_sharedkey_new", "HMAC_SHA1")
    del by_key[twilio.SIGNATURE_SETTINGS_HEADER]
    resp = await hook.client.post(twilio.SMS_PATH, data=params, headers=by_key)
    assert resp.status == 403


async def test_a_sharedkey_whose_variable_is_unset_is_503(hook: Harness) -> None:
    """Our deployment is incomplete, not the request wrong: Twilio retries."""
    params = fixture("sms_incoming")
    headers = shared_key_signed(params, "webhooks_sharedkey_unset", "HMAC_SHA256", "anything")
    resp = await hook.client.post(twilio.SMS_PATH, data=params, headers=headers)
    assert resp.status == 503
    assert "TWILIO_SHARED_KEY_UNSET" not in await resp.text()


async def test_an_unsupported_algorithm_is_403(hook: Harness) -> None:
    params = fixture("sms_incoming")
    headers = shared_key_signed(params, "webhooks_sharedkey_new", "HMAC_SHA256")
    headers[twilio.SIGNATURE_SETTINGS_HEADER] = "key=webhooks_sharedkey_new,algorithm=HMAC_MD5"
    resp = await hook.client.post(twilio.SMS_PATH, data=params, headers=headers)
    assert resp.status == 403


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
        "algorithm=HMAC_SHA256 , key=webhooks_sharedkey_1",
        "key=webhooks_sharedkey_1",
        "key=webhooks_sharedkey_1,algorithm=",
        "key=webhooks_sharedkey_1,algorithm=hmac_sha256",
        "key=webhooks_sharedkey_1,algorithm=HMAC_MD5",
        "nonsense",
    ],
)
def test_the_settings_header_names_the_algorithm_twilio_python_reads(header: str | None) -> None:
    _, algorithm = twilio.signature_settings(header)
    assert algorithm == get_signature_algorithm(header).upper()


async def test_a_channel_twilio_carries_that_we_do_not_is_set_aside(hook: Harness) -> None:
    params = {**fixture("sms_incoming"), "From": "rcs:+15558675310", "To": "rcs:acme_agent"}
    resp = await hook.client.post(
        twilio.SMS_PATH, data=params, headers=signed(PUBLIC_URL + twilio.SMS_PATH, params)
    )
    assert "not carried" in await hook.set_aside(resp, "twilio")


@pytest.mark.parametrize("value", ["north", "inf", "nan"])
async def test_a_signed_location_that_is_not_a_place_is_set_aside(
    hook: Harness, value: str
) -> None:
    params = {**fixture("whatsapp_location"), "Latitude": value}
    resp = await hook.client.post(
        twilio.SMS_PATH, data=params, headers=signed(PUBLIC_URL + twilio.SMS_PATH, params)
    )
    assert "Latitude" in await hook.set_aside(resp, "twilio")


# --- Replies through Twilio -----------------------------------------------------------------


def reply(channel: Channel, endpoint: str, customer: str, **kw: Any) -> ReplyRequested:
    return ReplyRequested(
        id=kw.pop("id", "out-0001"),
        domain="acme",
        occurred_at=NOW,
        conversation_id="conv-1",
        agent_id="ann",
        channel=channel,
        endpoint=endpoint,
        customer_address=customer,
        text=kw.pop("text", "Your parcel ships today."),
        **kw,
    )


def form_of(message: ReplyRequested, environ: dict[str, str] | None = None) -> dict[str, list[str]]:
    request = twilio_request(message, CHANNELS, {**ENVIRON, **(environ or {})})
    form: dict[str, list[str]] = {}
    for name, value in request.form or []:
        form.setdefault(name, []).append(value)
    return form


def test_replies_call_back_on_the_status_route_with_our_id() -> None:
    sent = form_of(
        reply(Channel.WHATSAPP, WA_OURS, WA_CUSTOMER),
        {twilio.PUBLIC_URL_ENV: PUBLIC_URL + "/"},
    )
    assert sent["StatusCallback"] == [PUBLIC_URL + "/webhooks/twilio/status?outbound_id=out-0001"]
    assert form_of(reply(Channel.WHATSAPP, WA_OURS, WA_CUSTOMER)).get("StatusCallback") is None


def test_a_numbers_own_status_url_wins() -> None:
    sent = form_of(reply(Channel.SMS, OURS, CUSTOMER), {twilio.PUBLIC_URL_ENV: PUBLIC_URL})
    assert sent["StatusCallback"] == [NUMBER_STATUS + "&outbound_id=out-0001"]


def test_the_id_goes_before_a_fragment_of_connection_overrides() -> None:
    assert (
        twilio.with_query("https://h.example.com/s#rc=3", "outbound_id", "out 1")
        == "https://h.example.com/s?outbound_id=out+1#rc=3"
    )


def attachment(content_type: str, size: int | None = None) -> Attachment:
    return Attachment(url="https://cdn.example.com/f", content_type=content_type, size_bytes=size)


MB = 1024 * 1024


@pytest.mark.parametrize(
    ("channel", "attachments", "reason"),
    [
        (Channel.SMS, [attachment("image/png")] * 11, "at most 10"),
        (Channel.SMS, [attachment("image/jpeg", 6 * MB)], "over"),
        (Channel.SMS, [attachment("image/jpeg", 3 * MB), attachment("video/mp4", 3 * MB)], "total"),
        (Channel.SMS, [attachment("application/zip")], "does not send"),
        (Channel.WHATSAPP, [attachment("image/png")] * 2, "at most 1"),
        (Channel.WHATSAPP, [attachment("image/gif")], "does not send"),
        (Channel.WHATSAPP, [attachment("image/jpeg", 6 * MB)], "over"),
    ],
)
def test_media_over_twilios_limits_are_refused_before_sending(
    channel: Channel, attachments: list[Attachment], reason: str
) -> None:
    endpoint, customer = (WA_OURS, WA_CUSTOMER) if channel is Channel.WHATSAPP else (OURS, CUSTOMER)
    with pytest.raises(MediaRefused, match=reason):
        twilio_request(
            reply(channel, endpoint, customer, attachments=tuple(attachments)), CHANNELS, ENVIRON
        )


def test_media_within_the_limits_are_sent_as_media_urls() -> None:
    mms = [attachment("image/jpeg", MB), attachment("application/pdf", MB)]
    sent = form_of(reply(Channel.SMS, OURS, CUSTOMER, attachments=tuple(mms)))
    assert sent["MediaUrl"] == ["https://cdn.example.com/f"] * 2
    video = form_of(
        reply(
            Channel.WHATSAPP, WA_OURS, WA_CUSTOMER, attachments=(attachment("video/mp4", 10 * MB),)
        )
    )
    assert video["MediaUrl"] == ["https://cdn.example.com/f"]


PLACE = Location(latitude=37.78789, longitude=-122.391664, name="Twilio HQ", address="375 Beale St")


def test_a_whatsapp_location_is_a_persistent_action() -> None:
    sent = form_of(reply(Channel.WHATSAPP, WA_OURS, WA_CUSTOMER, text="", location=PLACE))
    assert sent["PersistentAction"] == ["geo:37.78789,-122.391664|Twilio HQ"]
    assert sent["Body"] == ["Twilio HQ"]
    with pytest.raises(MediaRefused, match="location"):
        twilio_request(
            reply(
                Channel.WHATSAPP,
                WA_OURS,
                WA_CUSTOMER,
                location=PLACE,
                attachments=(attachment("image/png"),),
            ),
            CHANNELS,
            ENVIRON,
        )


def test_an_sms_location_is_written_after_the_text() -> None:
    sent = form_of(reply(Channel.SMS, OURS, CUSTOMER, text="We are here:", location=PLACE))
    assert sent["Body"] == [
        "We are here:\n\nTwilio HQ, 375 Beale St (37.78789, -122.391664) geo:37.78789,-122.391664"
    ]
    assert "PersistentAction" not in sent


def test_the_declaration_names_what_the_adapter_does() -> None:
    declared = twilio.DECLARATION
    assert declared.channels == ("sms", "whatsapp")
    assert "undelivered" in declared.statuses
    assert "delivery_unknown" in declared.statuses
    assert twilio.STATUS_PATH in declared.inbound
    assert twilio.MEDIA_LIMITS is twilio.MMS_LIMITS
