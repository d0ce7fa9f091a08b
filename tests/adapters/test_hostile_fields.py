"""Correctly signed webhooks of every provider with hostile field values (any Unicode, NUL,
lone surrogates, huge, deeply nested, out-of-range numbers): invariants, as properties.

- ``no_server_error``: the answer is never 5xx.
- ``router_would_accept``: every published event decodes with the strict contract types
  (the router's decoder) and its CloudEvents headers encode.
- ``storable``: no text of a published event holds NUL or a lone surrogate.
- ``identifiers_clean``: no identifier, address or attachment URL holds a control character
  or U+FFFD (what a lone surrogate escape is read as: two ids cut differently are not one).
- ``set_aside_with_reason``: every dead letter says why, without the request's values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twilio.request_validator import (  # type: ignore[import-untyped]  # twilio ships no types
    RequestValidator,
)
from yarl import URL

from adapters import rbm, sendgrid, twilio, vonage, x_dm
from adapters.base import BadRequest, hmac_hex
from adapters.webchat import WebchatConfig, parse_message
from schemas import INBOUND_DECODER, InboundEvent, MessageReceived, encode_headers
from tests.adapters.conftest import (
    CHANNELS,
    ENVIRON,
    NOW,
    PUBLIC_URL,
    SENDGRID_EVENT_KEY,
    SENDGRID_PARSE_KEY,
    Harness,
    start_harness,
)
from tests.adapters.test_email import KEY as MAILGUN_KEY
from tests.adapters.test_meta import IG_ID, PAGE_ID, WA_NUMBER_ID
from tests.adapters.test_telegram import SECRET as TELEGRAM_SECRET
from tests.adapters.test_twilio import sign as twilio_sign

EXAMPLES = 120
T = TypeVar("T")
SURROGATES = ("\ud800", "\udfff", "a\udc80b", "\ud83d")
NASTY = (
    "",
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "\u2028",
    "\ufeff",
    "9" * 400,
    "1e12",
    "-1",
    "NaN",
    "+1" + "5" * 3000,
    "x" * 70_000,
)


def no_server_error(status: int) -> bool:
    return status < 500


def router_would_accept(event: InboundEvent) -> bool:
    encode_headers(event, source="test")
    return INBOUND_DECODER.decode(msgspec.json.encode(event)) == event


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    return []


def storable(event: InboundEvent) -> bool:
    return not any(
        "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text)
        for text in _texts(msgspec.to_builtins(event))
    )


IDENTIFIERS = (
    "id",
    "domain",
    "provider_message_id",
    "change_id",
    "endpoint",
    "customer_address",
    "customer_id",
    "conversation_key",
    "outbound_id",
    "in_reply_to",
    "error_code",
    "provider_status",
)
"""The identifier fields of every kind of inbound event (each kind has some of them)."""


def identifiers_clean(event: InboundEvent) -> bool:
    values = [getattr(event, name, None) for name in IDENTIFIERS]
    if isinstance(event, MessageReceived):
        values += [value for a in event.attachments for value in (a.url, a.media_id)]
    return not any(
        isinstance(value, str) and re.search("[\x00-\x1f\x7f\ufffd]", value) for value in values
    )


def set_aside_with_reason(harness: Harness, before: int) -> bool:
    return all(
        letter.reason and "\x00" not in letter.reason
        for letter in harness.publisher.dead_letters[before:]
    )


def with_one_of(characters: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Short text with one of ``characters`` somewhere inside."""
    return st.builds(
        lambda before, char, after: before + char + after,
        st.text(max_size=10),
        st.sampled_from(characters),
        st.text(max_size=10),
    )


# Form values cannot hold a lone surrogate (UTF-8 cannot encode one), JSON strings can.
form_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(NASTY),
    with_one_of(("\x00", "\x07", "\x1f", "\x7f", "\n")),
    st.text(min_size=1, max_size=3).map(lambda s: s * 2000),
)
json_text = st.one_of(form_text, with_one_of(SURROGATES), st.text(st.characters(), max_size=20))
hostile_int = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 10**12, 10**20, 2**63, 10**400]),
)
depth = st.integers(min_value=1, max_value=3000)


def usually(common: st.SearchStrategy[T], otherwise: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``common`` three times in four (a configured endpoint, a fresh timestamp, the
    provider's shape), so that most examples get past the routing and the signature's age
    to the fields. (Not ``one_of``: it flattens ``otherwise``'s own branches, each of
    which would weigh as much as ``common``.)"""
    return st.sampled_from((True, True, True, False)).flatmap(
        lambda usual: common if usual else otherwise
    )


def mostly(usual: str, otherwise: st.SearchStrategy[str] = json_text) -> st.SearchStrategy[str]:
    """``usual`` three times in four, else ``otherwise`` (see ``usually``)."""
    return usually(st.just(usual), otherwise)


HUGE = "HUGE-NUMBER"
"""Written ``1e400`` by ``json_body``: a number JSON allows and no float holds."""
hostile_number = st.one_of(
    hostile_int,
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([HUGE, -0.0, 1e308, 91.0, -181.0]),
)
coordinate_number = usually(st.floats(-90, 90), hostile_number)
provider_id = usually(st.uuids().map(str), json_text)
"""A provider's message or event id: a UUID, else hostile text."""


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def json_body(doc: Any, deep: int) -> bytes:
    """``doc`` as JSON (lone surrogates escaped, as JavaScript senders write them), with an
    unknown field (an array: item) nested ``deep`` levels (none when 0), and ``HUGE``
    written ``1e400``."""
    if deep:
        doc = [*doc, "DEEP"] if isinstance(doc, list) else {**doc, "extra": "DEEP"}
    text = json.dumps(doc, ensure_ascii=True)
    text = text.replace(f'"{HUGE}"', "1e400")
    return text.replace('"DEEP"', "[" * deep + "]" * deep).encode()


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[Harness]:
    harness = await start_harness()
    yield harness
    await harness.client.close()


async def check(harness: Harness, status: int, events_before: int, letters_before: int) -> None:
    assert no_server_error(status), status
    for published in harness.publisher.events[events_before:]:
        assert router_would_accept(published), published
        assert storable(published), published
        assert identifiers_clean(published), published
    assert set_aside_with_reason(harness, letters_before)


async def post(
    harness: Harness,
    path: str | URL,
    body: bytes | None,
    headers: dict[str, str],
    method: str = "POST",
) -> None:
    events, letters = len(harness.publisher.events), len(harness.publisher.dead_letters)
    resp = await harness.client.request(method, path, data=body, headers=headers)
    event(  # shown by --hypothesis-show-statistics
        f"{resp.status}, published {len(harness.publisher.events) > events}, "
        f"set aside {len(harness.publisher.dead_letters) > letters}"
    )
    await check(harness, resp.status, events, letters)


PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(
    fields=st.fixed_dictionaries(
        {
            "From": form_text,
            "Body": form_text,
            "MessageSid": form_text,
            "NumMedia": st.sampled_from(["0", "1", "2"]),
            "MediaUrl0": form_text,
            "MediaUrl1": form_text,
            "MediaContentType0": form_text,
            "MessageStatus": st.sampled_from(["", "received", "delivered", "failed"]),
            "ErrorCode": form_text,
        }
    ),
    whatsapp=st.booleans(),
)
async def test_twilio(target: Harness, fields: dict[str, str], whatsapp: bool) -> None:
    params = {**fields, "To": "+14155550100", "AccountSid": "AC1"}
    if whatsapp:
        params = {**params, "From": "whatsapp:" + params["From"], "To": "whatsapp:+14155550100"}
    if params["MessageStatus"] not in ("", "received"):
        params = {**params, "From": params["To"], "To": params["From"]}
        del params["Body"]
    body = urllib.parse.urlencode(params).encode()
    headers = {**twilio_sign(params), "Content-Type": "application/x-www-form-urlencoded"}
    await post(target, "/webhooks/twilio/sms", body, headers)


wa_message = st.fixed_dictionaries(
    {
        "from": json_text,
        "id": json_text,
        "timestamp": st.one_of(json_text, hostile_int.map(str)),
        "type": st.sampled_from(["text", "image", "document", "location", "interactive"]),
        "text": st.fixed_dictionaries({"body": json_text}),
        "image": st.fixed_dictionaries({"id": json_text, "mime_type": json_text}),
        "document": st.fixed_dictionaries(
            {"id": json_text, "filename": json_text, "caption": json_text}
        ),
        "location": st.fixed_dictionaries({"name": json_text, "address": json_text}),
        "interactive": st.fixed_dictionaries(
            {
                "type": st.just("button_reply"),
                "button_reply": st.fixed_dictionaries({"title": json_text}),
            }
        ),
    }
)
wa_status = st.fixed_dictionaries(
    {
        "id": json_text,
        "status": st.sampled_from(["sent", "delivered", "read", "failed"]),
        "timestamp": json_text,
        "errors": st.lists(
            st.fixed_dictionaries({"code": st.one_of(hostile_int, json_text)}), max_size=1
        ),
    }
)
messaging = st.fixed_dictionaries(
    {
        "sender": st.fixed_dictionaries({"id": json_text}),
        "recipient": st.fixed_dictionaries({"id": json_text}),
        "timestamp": hostile_int,
        "message": st.fixed_dictionaries(
            {
                "mid": json_text,
                "text": json_text,
                "attachments": st.lists(
                    st.fixed_dictionaries(
                        {"type": json_text, "payload": st.fixed_dictionaries({"url": json_text})}
                    ),
                    max_size=3,
                ),
            }
        ),
    }
) | st.fixed_dictionaries(
    {
        "sender": st.fixed_dictionaries({"id": json_text}),
        "recipient": st.fixed_dictionaries({"id": json_text}),
        "timestamp": hostile_int,
        "delivery": st.fixed_dictionaries({"mids": st.lists(json_text, max_size=3)}),
    }
)


@PROPERTY
@given(
    messages=st.lists(wa_message, max_size=3),
    statuses=st.lists(wa_status, max_size=2),
    items=st.lists(messaging, max_size=3),
    kind=st.sampled_from(["whatsapp", "page", "instagram"]),
    deep=depth,
)
async def test_meta(
    target: Harness,
    messages: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    items: list[dict[str, Any]],
    kind: str,
    deep: int,
) -> None:
    if kind == "whatsapp":
        value = {
            "metadata": {"phone_number_id": WA_NUMBER_ID},
            "messages": messages,
            "statuses": statuses,
        }
        doc = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        }
    else:
        entry = PAGE_ID if kind == "page" else IG_ID
        doc = {"object": kind, "entry": [{"id": entry, "messaging": items}]}
    body = json_body(doc, deep)
    headers = {"X-Hub-Signature-256": "sha256=" + hmac_hex(ENVIRON["META_APP_SECRET"], body)}
    await post(target, "/webhooks/meta", body, headers)


telegram_file = st.fixed_dictionaries(
    {"file_id": json_text, "file_name": json_text, "mime_type": json_text, "file_size": hostile_int}
)


@PROPERTY
@given(
    message=st.fixed_dictionaries(
        {
            "message_id": hostile_int,
            "date": hostile_int,
            "chat": st.fixed_dictionaries(
                {"id": hostile_int, "type": st.sampled_from(["private", "group"])}
            ),
            "text": json_text,
            "caption": json_text,
            "document": telegram_file,
            "business_connection_id": json_text,
            "from": st.fixed_dictionaries({"id": hostile_int}),
        }
    ),
    kind=st.sampled_from(["message", "business_message", "edited_business_message"]),
    from_the_chat=st.booleans(),
    deleted=st.fixed_dictionaries(
        {
            "business_connection_id": json_text,
            "chat": st.fixed_dictionaries({"id": hostile_int, "type": st.just("private")}),
            "message_ids": st.lists(hostile_int, max_size=5),
        }
    ),
    deep=depth,
)
async def test_telegram(
    target: Harness,
    message: dict[str, Any],
    kind: str,
    from_the_chat: bool,
    deleted: dict[str, Any],
    deep: int,
) -> None:
    if from_the_chat:  # a business chat's customer, else the account itself
        message["from"] = {"id": message["chat"]["id"]}
    body = json_body({"update_id": 1, kind: message}, deep)
    await post(target, "/webhooks/telegram/acme_support_bot", body, TELEGRAM_SECRET)
    body = json_body({"update_id": 2, "deleted_business_messages": deleted}, deep)
    await post(target, "/webhooks/telegram/acme_support_bot", body, TELEGRAM_SECRET)


stored_attachment = st.fixed_dictionaries(
    {"url": json_text, "content-type": json_text, "name": json_text, "size": hostile_int}
)


@PROPERTY
@given(
    fields=st.fixed_dictionaries(
        {
            "from": form_text.map(lambda s: f"{s} <{s}@example.org>"),
            "subject": form_text,
            "body-plain": form_text,
            "Message-Id": form_text,
            "References": form_text,
            "timestamp": mostly(str(int(NOW)), st.one_of(form_text, hostile_int.map(str))),
        }
    ),
    attachments=st.lists(stored_attachment, max_size=3),
    deep=st.one_of(st.just(0), depth),
    as_multipart=st.booleans(),
    filename=st.binary(max_size=30),
)
async def test_mailgun(
    target: Harness,
    fields: dict[str, str],
    attachments: list[dict[str, Any]],
    deep: int,
    as_multipart: bool,
    filename: bytes,
) -> None:
    token = uuid.uuid4().hex  # claimed once: a new one per example
    stored = json.dumps(attachments, ensure_ascii=True)
    if deep:
        stored = "[" * deep + "]" * deep
    form = {
        **fields,
        "recipient": "support@acme.example",
        "attachments": stored,
        "token": token,
        "signature": hmac_hex(MAILGUN_KEY, (fields["timestamp"] + token).encode()),
    }
    if not as_multipart:
        body = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        parts = [
            b'--b\r\nContent-Disposition: form-data; name="'
            + name.encode()
            + b'"\r\n\r\n'
            + value.encode()
            + b"\r\n"
            for name, value in form.items()
        ]
        parts.append(
            b'--b\r\nContent-Disposition: form-data; name="attachment-1"; filename="'
            + filename.replace(b'"', b"").replace(b"\r", b"").replace(b"\n", b"")
            + b'"\r\n\r\ndata\r\n'
        )
        body = b"".join(parts) + b"--b--\r\n"
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
    await post(target, "/webhooks/email/mailgun", body, headers)


@settings(max_examples=EXAMPLES * 2, deadline=None)
@given(
    message=st.fixed_dictionaries(
        {
            "session_id": mostly("visitor-0001"),
            "message_id": mostly("m1"),
            "text": json_text,
            "attachments": st.lists(
                st.fixed_dictionaries(
                    {"url": mostly("https://x.example/a.png"), "filename": json_text}
                ),
                max_size=2,
            ),
        }
    ),
    deep=st.one_of(st.just(0), st.just(0), depth),
)
def test_webchat(message: dict[str, Any], deep: int) -> None:
    """Web chat is not signed: its messages are refused with 4xx or accepted, storable.
    (Its body has no room for unknown fields: the nesting goes into ``text``.)"""
    if deep:
        message = {**message, "text": "DEEP"}
    text = json.dumps(message, ensure_ascii=True)
    body = text.replace('"DEEP"', "[" * deep + "]" * deep).encode()
    outcome: MessageReceived | BadRequest
    try:
        outcome = parse_message("acme", WebchatConfig(enabled=True), body, None, NOW)
    except BadRequest as refused:
        outcome = refused
    event("refused" if isinstance(outcome, BadRequest) else "accepted")
    if isinstance(outcome, BadRequest):
        assert 400 <= outcome.status < 500
    else:
        assert router_would_accept(outcome)
        assert storable(outcome)
        assert identifiers_clean(outcome)


# -- Twilio: the status route, a number's own URLs, JSON bodies signed through bodySHA256 --

TWILIO_NUMBER = next(n for n in CHANNELS.twilio.numbers if n.webhook_url)
TWILIO_URLS = [
    PUBLIC_URL + twilio.SMS_PATH,
    PUBLIC_URL + twilio.STATUS_PATH,
    *twilio.configured_urls(CHANNELS),
]
"""The URLs Twilio signs: ours, and the configured ones (a number's own webhook and status
callback URLs: their paths served, their queries kept)."""
coordinate = st.one_of(form_text, st.sampled_from(["nan", "-inf", "1e400", "91", "-0", "1_0"]))
json_value = st.one_of(
    json_text,
    hostile_number,
    st.booleans(),
    st.none(),
    st.lists(json_text, max_size=2),
    st.dictionaries(json_text, json_text, max_size=2),
)


def twilio_request(signed_url: str, extra: list[tuple[str, str]]) -> tuple[URL, str]:
    """The path Twilio calls and the URL it signs: ``signed_url`` with ``extra`` added to
    its query (an ``outbound_id``, a ``bodySHA256``), sent exactly as written."""
    parts = urllib.parse.urlsplit(signed_url)
    query = "&".join(q for q in (parts.query, urllib.parse.urlencode(extra)) if q)
    path = URL(parts.path + (f"?{query}" if query else ""), encoded=True)
    return path, parts._replace(query=query).geturl()


@PROPERTY
@given(
    fields=st.fixed_dictionaries(
        {
            "From": mostly("+14155552671", form_text),
            "To": mostly(TWILIO_NUMBER.number, form_text),
            "MessageSid": usually(st.just("SM1f0e8ae6ade43cb3c0ce4525424e404f"), form_text),
            "MessageStatus": st.sampled_from(["", *twilio.DOCUMENTED_STATUSES, "unknown"]),
        },
        optional={
            "Body": form_text,
            "NumMedia": st.sampled_from(["0", "1", "11", "-1", "1e3", " 1"]),
            "MediaUrl0": form_text,
            "MediaContentType0": form_text,
            "ErrorCode": form_text,
            "Latitude": coordinate,
            "Longitude": coordinate,
            "Label": form_text,
            "Address": form_text,
            "ButtonText": form_text,
            "OriginalRepliedMessageSid": form_text,
            "OptOutType": st.sampled_from(["STOP", "start", "HELP", "\x00"]),
            "ChannelPrefix": st.sampled_from(["sms", "whatsapp", "rcs"]),
        },
    ),
    signed_url=st.sampled_from(TWILIO_URLS),
    outbound_id=st.none() | form_text,
    as_json=st.booleans(),
    json_values=st.dictionaries(
        st.sampled_from(["NumMedia", "Latitude", "Body", "MessageSid", "From", "Extra"]),
        json_value,
        max_size=3,
    ),
    deep=st.one_of(st.just(0), depth),
)
async def test_twilio_routes(
    target: Harness,
    fields: dict[str, str],
    signed_url: str,
    outbound_id: str | None,
    as_json: bool,
    json_values: dict[str, Any],
    deep: int,
) -> None:
    params = {**fields, "AccountSid": "AC1"}
    if params["MessageStatus"] not in ("", "received"):
        params = {**params, "From": params["To"], "To": params["From"]}
    extra = [] if outbound_id is None else [(twilio.OUTBOUND_ID, outbound_id)]
    if as_json:
        body = json_body({**params, **json_values}, deep)
        path, url = twilio_request(signed_url, [*extra, (twilio.BODY_HASH, sha256_hex(body))])
        signature = RequestValidator(ENVIRON["TWILIO_AUTH_TOKEN"]).compute_signature(url, {})
        content_type = "application/json"
    else:
        body = urllib.parse.urlencode(params).encode()
        path, url = twilio_request(signed_url, extra)
        signature = RequestValidator(ENVIRON["TWILIO_AUTH_TOKEN"]).compute_signature(url, params)
        content_type = "application/x-www-form-urlencoded"
    headers = {twilio.SIGNATURE_HEADER: signature, "Content-Type": content_type}
    await post(target, path, body, headers)


# -- Mailgun events ------------------------------------------------------------------------


MAILGUN_EVENTS = (
    "accepted", "delivered", "failed", "rejected", "opened", "clicked", "unsubscribed",
    "complained", "stored", "",
)  # fmt: skip


def mailgun_signature(timestamp: str) -> dict[str, str]:
    token = uuid.uuid4().hex  # claimed once: a new one per example
    signature = hmac_hex(MAILGUN_KEY, (timestamp + token).encode())
    return {"timestamp": timestamp, "token": token, "signature": signature}


@PROPERTY
@given(
    data=st.fixed_dictionaries(
        {
            "event": st.sampled_from(MAILGUN_EVENTS),
            "timestamp": usually(st.just(NOW - 60), st.one_of(hostile_number, json_text)),
            "severity": usually(st.sampled_from(["permanent", "temporary"]), json_text),
            "id": json_text,
            "recipient": json_text,
            "message": st.fixed_dictionaries(
                {
                    "headers": st.fixed_dictionaries(
                        {
                            "message-id": json_text,
                            "from": mostly("Acme <support@acme.example>"),
                        }
                    )
                }
            ),
            "envelope": st.fixed_dictionaries({"sender": mostly("support@acme.example")}),
            "delivery-status": st.fixed_dictionaries(
                {"code": usually(st.just(550), st.one_of(hostile_number, json_text))}
            ),
            "user-variables": st.fixed_dictionaries(
                {"switchboard-outbound-id": json_text, "switchboard-domain": mostly("acme")}
            ),
        }
    ),
    timestamp=mostly(str(int(NOW)), form_text),
    deep=st.one_of(st.just(0), depth),
)
async def test_mailgun_events(
    target: Harness, data: dict[str, Any], timestamp: str, deep: int
) -> None:
    body = json_body({"signature": mailgun_signature(timestamp), "event-data": data}, deep)
    headers = {"Content-Type": "application/json"}
    await post(target, "/webhooks/email/mailgun/events", body, headers)


# -- SendGrid: Inbound Parse (parsed and raw) and the Event Webhook, ECDSA-signed ---------

SENDGRID_OURS = next(a.address for a in CHANNELS.email.addresses if a.provider == "sendgrid")
BOUNDARY = "xYzZYswitchboardBoundary"
CODECS = (
    "utf-8", "iso-8859-1", "utf-16", "utf-32", "utf-7", "unicode_escape",
    "raw_unicode_escape", "punycode", "idna", "rot13", "base64", "hex", "zlib", "nope",
)  # fmt: skip
"""Character sets a hostile ``charsets`` may name: text codecs that make NULs and lone
surrogates out of ASCII, codecs that are not text encodings, names of no codec."""


def sendgrid_signed(key: ec.EllipticCurvePrivateKey, body: bytes, at: str) -> dict[str, str]:
    """SendGrid's headers: ECDSA P-256 / SHA-256 of timestamp + body, base64 DER."""
    der = key.sign(at.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        sendgrid.SIGNATURE_HEADER: base64.b64encode(der).decode(),
        sendgrid.TIMESTAMP_HEADER: at,
    }


def form_data(fields: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body of (name, file name, content) parts."""
    parts = []
    for name, filename, content in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        parts.append(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def header_value(text: str) -> str:
    """``text`` as one header line (a new line would end it)."""
    return text.replace("\r", " ").replace("\n", " ")


def mime_message(headers: dict[str, str], nesting: int, filename: str, text: bytes) -> bytes:
    """A raw message: ``headers``, then its text inside ``nesting`` multiparts, with a
    file beside it."""
    inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
    inner += (
        f"\r\n--f\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;"
        f' filename="{header_value(filename)}"\r\n\r\n%PDF'
    ).encode("utf-8", "surrogatepass")
    inner = b"Content-Type: multipart/mixed; boundary=f\r\n\r\n--f\r\n" + inner + b"\r\n--f--"
    for level in range(nesting):
        b = f"n{level}".encode()
        inner = (
            b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n"
            + inner + b"\r\n--" + b + b"--"
        )  # fmt: skip
    lines = "".join(f"{name}: {header_value(value)}\r\n" for name, value in headers.items())
    return lines.encode("utf-8", "surrogatepass") + inner


signed_at = mostly(
    str(int(NOW)),
    st.one_of(
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30),
        st.sampled_from(["9" * 30, "-1", "1e9", str(int(NOW) - 10**6), str(int(NOW) + 10**6)]),
    ),
)
"""A signature's ``X-Twilio-Email-Event-Webhook-Timestamp``: a header value (visible ASCII)."""
sendgrid_address = usually(
    st.sampled_from([SENDGRID_OURS, f"Help <{SENDGRID_OURS.upper()}>"]),
    st.one_of(form_text.map(lambda s: f"{s} <{SENDGRID_OURS}>"), form_text),
)
sendgrid_sender = usually(
    st.just("Ann <ann@example.org>"),
    st.one_of(form_text.map(lambda s: f"{s} <{s}@example.org>"), st.just("(" * 3000 + "a@b.c")),
)


@PROPERTY
@given(
    fields=st.fixed_dictionaries(
        {
            "to": sendgrid_address,
            "from": sendgrid_sender,
            "subject": form_text,
            "Message-Id": form_text,
            "In-Reply-To": form_text,
            "References": form_text,
        }
    ),
    text=st.one_of(form_text.map(str.encode), st.binary(max_size=60)),
    html=st.one_of(
        form_text,
        st.sampled_from(["<p>a</p><script>x", "<br>" * 5000, "<div>" * 3000, "&#0;&#xD800;"]),
    ),
    envelope=st.one_of(
        st.fixed_dictionaries(
            {"to": st.lists(sendgrid_address, max_size=2), "from": sendgrid_sender}
        ).map(json.dumps),
        form_text,
    ),
    charsets=st.dictionaries(
        st.sampled_from(["to", "from", "subject", "text", "html", "headers"]),
        st.sampled_from(CODECS),
        max_size=4,
    ),
    files=st.lists(st.tuples(form_text, form_text, json_text), max_size=3),
    raw=st.booleans(),
    nesting=st.integers(min_value=0, max_value=300),
    timestamp=signed_at,
)
async def test_sendgrid_inbound_parse(
    target: Harness,
    fields: dict[str, str],
    text: bytes,
    html: str,
    envelope: str,
    charsets: dict[str, str],
    files: list[tuple[str, str, str]],
    raw: bool,
    nesting: int,
    timestamp: str,
) -> None:
    """SendGrid's two modes, each field in the character set ``charsets`` names for it;
    ``attachment-info`` (JSON) says what each file is."""
    headers = {k: fields[k] for k in ("Message-Id", "In-Reply-To", "References")}
    parts: list[tuple[str, str | None, bytes]] = [
        ("to", None, fields["to"].encode()),
        ("from", None, fields["from"].encode()),
        ("envelope", None, envelope.encode()),
        ("charsets", None, json.dumps(charsets).encode()),
    ]
    if raw:
        message = {"From": fields["from"], "To": fields["to"], "Subject": fields["subject"]}
        filename = files[0][0] if files else "a.pdf"
        email = mime_message({**message, **headers}, nesting, filename, text)
        parts.append(("email", None, email))
    else:
        info = {
            f"attachment{n}": {"filename": name, "type": kind, "content-id": cid}
            for n, (name, kind, cid) in enumerate(files, 1)
        }
        block = "".join(f"{name}: {header_value(value)}\n" for name, value in headers.items())
        parts += [
            ("subject", None, fields["subject"].encode()),
            ("text", None, text),
            ("html", None, html.encode()),
            ("headers", None, block.encode()),
            ("attachments", None, str(len(files)).encode()),
            ("attachment-info", None, json.dumps(info).encode()),
        ]
        parts += [
            (f"attachment{n}", header_value(name).replace('"', ""), b"data")
            for n, (name, _, _) in enumerate(files, 1)
        ]
    body = form_data(parts)
    headers = {
        **sendgrid_signed(SENDGRID_PARSE_KEY, body, timestamp),
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    await post(target, sendgrid.PARSE_PATH, body, headers)


sendgrid_scalar = st.one_of(json_text, hostile_number, st.booleans(), st.none())
sendgrid_event = st.fixed_dictionaries(
    {
        "event": usually(st.sampled_from(list(sendgrid.STATUS_MAP)), json_text),
        "switchboard_endpoint": mostly(SENDGRID_OURS),
        "sg_message_id": mostly("14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"),
        "sg_event_id": provider_id,
    },
    optional={
        "timestamp": usually(st.just(int(NOW) - 60), st.one_of(hostile_number, json_text)),
        "smtp-id": json_text,
        "type": st.one_of(st.just("blocked"), sendgrid_scalar, st.lists(json_text)),
        "status": st.one_of(sendgrid_scalar, st.dictionaries(json_text, json_text)),
        "reason": sendgrid_scalar,
        "sg_machine_open": sendgrid_scalar,
        "switchboard_outbound_id": json_text,
        "email": json_text,
    },
)


@PROPERTY
@given(
    events=st.lists(usually(sendgrid_event, json_value), max_size=4),
    timestamp=signed_at,
    deep=st.one_of(st.just(0), depth),
)
async def test_sendgrid_events(
    target: Harness, events: list[Any], timestamp: str, deep: int
) -> None:
    body = json_body(events, deep)
    headers = {
        **sendgrid_signed(SENDGRID_EVENT_KEY, body, timestamp),
        "Content-Type": "application/json",
    }
    await post(target, sendgrid.EVENTS_PATH, body, headers)


# -- Vonage: the Messages API (HS256 JWT with payload_hash) and the SMS API (sig) ----------

VONAGE_NUMBER = CHANNELS.vonage.numbers[0].number
VONAGE_SECRET = ENVIRON["VONAGE_SIGNATURE_SECRET"]


def vonage_jwt(body: bytes, issued_at: float) -> str:
    """The Messages API's webhook token, made with PyJWT (not our code); a new ``jti``."""
    claims = {
        "iat": int(issued_at),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": sha256_hex(body),
        "api_key": CHANNELS.vonage.api_key,
    }
    return jwt.encode(claims, VONAGE_SECRET, algorithm="HS256")


STATUS = "(a status)"
VONAGE_MESSAGE_TYPES = (
    "text", "image", "audio", "video", "file", "vcard", "sticker", "content", "location",
    "contact", "reply", "button", "unsupported", "reaction", "order", STATUS, STATUS, STATUS,
)  # fmt: skip
"""Each ``message_type``, and one time in six a status report (no ``message_type``)."""
vonage_media = st.fixed_dictionaries(
    {}, optional={"url": json_text, "name": json_text, "caption": json_text}
)
vonage_contact = st.fixed_dictionaries(
    {},
    optional={
        "name": st.fixed_dictionaries(
            {}, optional={"formatted_name": json_text, "first_name": json_text}
        ),
        "phones": st.lists(st.fixed_dictionaries({"phone": json_text}), max_size=2),
        "emails": st.lists(st.fixed_dictionaries({"email": json_text}), max_size=2),
        "org": st.fixed_dictionaries({"company": json_text}),
    },
)


@PROPERTY
@given(
    hook=st.fixed_dictionaries(
        {
            "channel": usually(st.sampled_from(list(vonage.CHANNELS)), json_text),
            "message_uuid": provider_id,
            "to": mostly(VONAGE_NUMBER),
            "from": mostly("447700900001"),
            "message_type": usually(st.sampled_from(VONAGE_MESSAGE_TYPES), json_text),
        },
        optional={
            "status": usually(st.sampled_from(list(vonage.STATUS_MAP)), json_text),
            "timestamp": st.one_of(
                json_text, st.sampled_from(["2025-02-03T12:14:25Z", "9999-12-31T23:59:59Z"])
            ),
            "client_ref": json_text,
            "text": json_text,
            "image": vonage_media,
            "file": vonage_media,
            "sticker": vonage_media,
            "content": st.lists(
                st.fixed_dictionaries({"type": json_text, "url": json_text}), max_size=2
            ),
            "location": st.fixed_dictionaries(
                {"lat": coordinate_number, "long": coordinate_number},
                optional={"name": json_text, "address": json_text, "url": json_text},
            ),
            "contact": st.one_of(vonage_contact, st.lists(vonage_contact, max_size=2)),
            "reply": st.fixed_dictionaries({}, optional={"id": json_text, "title": json_text}),
            "button": st.fixed_dictionaries({}, optional={"text": json_text, "payload": json_text}),
            "reaction": st.fixed_dictionaries(
                {"action": st.sampled_from(["react", "unreact"]), "emoji": json_text}
            ),
            "context": st.fixed_dictionaries({"message_uuid": json_text}),
            "error": st.fixed_dictionaries(
                {},
                optional={
                    "title": st.one_of(json_text, hostile_number),
                    "code": st.one_of(json_text, hostile_number),
                    "detail": json_text,
                },
            ),
        },
    ),
    status_route=st.booleans(),
    deep=st.one_of(st.just(0), depth),
)
async def test_vonage_messages(
    target: Harness, hook: dict[str, Any], status_route: bool, deep: int
) -> None:
    if hook["message_type"] == STATUS:  # a report on a message our number sent
        hook = {k: v for k, v in hook.items() if k != "message_type"}
        hook = {"status": "delivered", **hook, "from": hook["to"], "to": hook["from"]}
    body = json_body(hook, deep)
    headers = {
        "Authorization": f"Bearer {vonage_jwt(body, NOW)}",
        "Content-Type": "application/json",
    }
    path = vonage.STATUS_PATH if status_route else vonage.INBOUND_PATH
    await post(target, path, body, headers)


def vonage_sms_sig(params: dict[str, str]) -> str:
    """The SMS API's ``md5hash`` signature, as Vonage's documentation describes it: every
    parameter but ``sig``, sorted, as ``&name=value`` (``&`` and ``=`` in values made
    ``_``), then the secret, MD5, hex."""
    text = "".join(
        f"&{name}={value.replace('&', '_').replace('=', '_')}"
        for name, value in sorted(params.items())
    )
    return hashlib.md5((text + VONAGE_SECRET).encode(), usedforsecurity=False).hexdigest()


sms_time = st.one_of(
    form_text,
    st.sampled_from(["2023-11-14 22:13:20", "9999-12-31 23:59:59", "0001-01-01 00:00:00"]),
)


@PROPERTY
@given(
    params=st.fixed_dictionaries(
        {
            "msisdn": mostly("447700900001", form_text),
            "to": usually(st.sampled_from([VONAGE_NUMBER, "AcmeInc"]), form_text),
            "messageId": usually(st.uuids().map(str), form_text),
        },
        optional={
            "text": form_text,
            "type": usually(st.sampled_from(["text", "unicode", "binary"]), form_text),
            "keyword": form_text,
            "message-timestamp": sms_time,
            "concat": st.sampled_from(["true", "false"]),
            "concat-ref": form_text,
            "concat-part": form_text,
            "status": usually(st.sampled_from(list(vonage.SMS_DLR_STATUS_MAP)), form_text),
            "err-code": form_text,
            "client-ref": form_text,
            "price": form_text,
            "scts": form_text,
            "api-key": mostly(CHANNELS.vonage.api_key, form_text),
        },
    ),
    dlr=st.booleans(),
    carrier=st.sampled_from(["GET", "form", "json"]),
    timestamp=mostly(str(int(NOW)), form_text),
)
async def test_vonage_sms(
    target: Harness, params: dict[str, str], dlr: bool, carrier: str, timestamp: str
) -> None:
    signed = {**params, "timestamp": timestamp, "nonce": str(uuid.uuid4())}
    signed["sig"] = vonage_sms_sig(signed)
    path = vonage.SMS_DLR_PATH if dlr else vonage.SMS_INBOUND_PATH
    if carrier == "GET":
        url = URL(f"{path}?{urllib.parse.urlencode(signed)}", encoded=True)
        await post(target, url, None, {}, method="GET")
    elif carrier == "form":
        body = urllib.parse.urlencode(signed).encode()
        await post(target, path, body, {"Content-Type": "application/x-www-form-urlencoded"})
    else:
        body = json.dumps(signed, ensure_ascii=True).encode()
        await post(target, path, body, {"Content-Type": "application/json"})


# -- Google RBM: HMAC-SHA512 of the decoded message.data ------------------------------------

RBM_AGENT = CHANNELS.rbm.agents[0].agent_id
RBM_RECENTLY = datetime.fromtimestamp(NOW - 60, UTC).isoformat().replace("+00:00", "Z")
rbm_time = st.one_of(
    json_text,
    st.sampled_from(
        ["2023-11-14T22:13:20.123456789Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+23:59",
         "2023-11-14T22:13:20-23:59", "2023-02-30T00:00:00Z", "2023-11-14T22:13:20+24:00"]
    ),
)  # fmt: skip
rbm_file = st.fixed_dictionaries(
    {},
    optional={
        "mimeType": json_text,
        "fileSizeBytes": st.one_of(hostile_number, json_text),
        "fileName": json_text,
        "fileUri": json_text,
    },
)


@PROPERTY
@given(
    item=st.fixed_dictionaries(
        {
            "agentId": usually(
                st.sampled_from([RBM_AGENT, RBM_AGENT + rbm.AGENT_SUFFIX]), json_text
            ),
            "senderPhoneNumber": mostly("+12223334444"),
            "messageId": provider_id,
            "sendTime": usually(st.just(RBM_RECENTLY), rbm_time),
        },
        optional={
            "eventId": provider_id,
            "text": json_text,
            "suggestionResponse": st.fixed_dictionaries(
                {}, optional={"postbackData": json_text, "text": json_text, "type": json_text}
            ),
            "location": st.fixed_dictionaries(
                {"latitude": coordinate_number, "longitude": coordinate_number}
            ),
            "userFile": st.fixed_dictionaries(
                {}, optional={"payload": rbm_file, "thumbnail": rbm_file}
            ),
        },
    ),
    kind=st.sampled_from(["message", "message", "message", "event", "launch"]),
    event_type=usually(st.sampled_from(list(rbm.STATUS_MAP)), json_text),
    agent_route=st.booleans(),
    url_safe=st.booleans(),
    deep=st.one_of(st.just(0), depth),
)
async def test_rbm(
    target: Harness,
    item: dict[str, Any],
    kind: str,
    event_type: str,
    agent_route: bool,
    url_safe: bool,
    deep: int,
) -> None:
    """A user message, a user event (``eventType``) or an agent launch event."""
    if kind == "event":
        item = {**item, "eventType": event_type}
    elif kind == "launch":
        item = {**item, "newLaunchState": "LAUNCH_STATE_LAUNCHED"}
    data = json_body(item, deep)
    encode = base64.urlsafe_b64encode if url_safe else base64.b64encode
    envelope = {"message": {"data": encode(data).decode(), "messageId": "1"}, "subscription": "s"}
    mac = hmac.new(ENVIRON["RBM_CLIENT_TOKEN"].encode(), data, hashlib.sha512).digest()
    headers = {rbm.SIGNATURE_HEADER: base64.b64encode(mac).decode()}
    path = f"{rbm.WEBHOOK_PATH}/{RBM_AGENT}" if agent_route else rbm.WEBHOOK_PATH
    await post(target, path, json.dumps(envelope).encode(), headers)


# -- X: HMAC-SHA256 of the body --------------------------------------------------------------

X_ACCOUNT = CHANNELS.x.accounts[0].user_id
X_CUSTOMER = "3001969357"
x_sender = usually(st.sampled_from([X_CUSTOMER, X_CUSTOMER, X_ACCOUNT]), json_text)
x_recipient = usually(st.sampled_from([X_ACCOUNT, X_ACCOUNT, X_CUSTOMER]), json_text)
x_media = st.fixed_dictionaries(
    {},
    optional={
        "id_str": json_text,
        "media_url_https": json_text,
        "type": st.sampled_from(["photo", "video", "animated_gif"]),
        "video_info": st.fixed_dictionaries(
            {
                "variants": st.lists(
                    st.fixed_dictionaries(
                        {
                            "content_type": st.sampled_from(["video/mp4", "x"]),
                            "url": json_text,
                            "bitrate": hostile_number,
                        }
                    ),
                    max_size=3,
                )
            }
        ),
    },
)
x_dm_event = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["message_create", "other"]),
        "id": usually(st.from_regex(r"[1-9][0-9]{17}", fullmatch=True), json_text),
        "message_create": st.fixed_dictionaries(
            {
                "target": st.fixed_dictionaries({"recipient_id": x_recipient}),
                "sender_id": x_sender,
            },
            optional={
                "source_app_id": st.one_of(st.just("13090192"), json_text),
                "message_data": st.fixed_dictionaries(
                    {"text": json_text},
                    optional={
                        "attachment": st.fixed_dictionaries(
                            {"type": st.just("media"), "media": x_media}
                        )
                    },
                ),
            },
        ),
    },
    optional={"created_timestamp": st.one_of(hostile_number, json_text)},
)
x_read = st.fixed_dictionaries(
    {
        "sender_id": x_sender,
        "target": st.fixed_dictionaries({"recipient_id": x_recipient}),
        "last_read_event_id": usually(st.from_regex(r"[1-9][0-9]{17}", fullmatch=True), json_text),
    },
    optional={"created_timestamp": st.one_of(hostile_number, json_text)},
)


@PROPERTY
@given(
    for_user_id=mostly(X_ACCOUNT),
    dms=st.lists(usually(x_dm_event, json_value), max_size=3),
    reads=st.lists(usually(x_read, json_value), max_size=2),
    deep=st.one_of(st.just(0), depth),
)
async def test_x(
    target: Harness, for_user_id: str, dms: list[Any], reads: list[Any], deep: int
) -> None:
    activity = {
        "for_user_id": for_user_id,
        "direct_message_events": dms,
        "direct_message_mark_read_events": reads,
        "users": {X_CUSTOMER: {"name": "\x00\ud800"}},
    }
    body = json_body(activity, deep)
    mac = hmac.new(ENVIRON["X_CONSUMER_SECRET"].encode(), body, hashlib.sha256).digest()
    headers = {
        x_dm.SIGNATURE_HEADER: "sha256=" + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }
    await post(target, x_dm.WEBHOOK_PATH, body, headers)
