"""Correctly signed webhooks of every provider with hostile field values (any Unicode, NUL,
lone surrogates, huge, deeply nested, out-of-range numbers): invariants, as properties.

- ``no_server_error``: the answer is never 5xx.
- ``router_would_accept``: every published event decodes with the strict contract types
  (the router's decoder) and its CloudEvents headers encode.
- ``storable``: no text of a published event holds NUL or a lone surrogate.
- ``identifiers_clean``: no identifier, address or attachment URL holds a control character.
- ``set_aside_with_reason``: every dead letter says why, without the request's values.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.base import BadRequest, hmac_hex
from adapters.webchat import WebchatConfig, parse_message
from schemas import INBOUND_DECODER, InboundEvent, MessageReceived, encode_headers
from tests.adapters.conftest import ENVIRON, NOW, Harness, start_harness
from tests.adapters.test_email import KEY as MAILGUN_KEY
from tests.adapters.test_meta import IG_ID, PAGE_ID, WA_NUMBER_ID
from tests.adapters.test_telegram import SECRET as TELEGRAM_SECRET
from tests.adapters.test_twilio import sign as twilio_sign

EXAMPLES = 120
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


def identifiers_clean(event: InboundEvent) -> bool:
    values = [event.id, event.domain, event.provider_message_id]
    if isinstance(event, MessageReceived):
        values += [event.endpoint, event.customer_address, event.customer_id]
        values += [event.conversation_key, *(a.url for a in event.attachments)]
    return not any(re.search("[\x00-\x1f\x7f]", value) for value in values)


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


def json_body(doc: Any, deep: int) -> bytes:
    """``doc`` as JSON (lone surrogates escaped, as JavaScript senders write them), with an
    unknown field nested ``deep`` levels."""
    text = json.dumps({**doc, "extra": "DEEP"}, ensure_ascii=True)
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


async def post(harness: Harness, path: str, body: bytes, headers: dict[str, str]) -> None:
    events, letters = len(harness.publisher.events), len(harness.publisher.dead_letters)
    resp = await harness.client.post(path, data=body, headers=headers)
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
        }
    ),
    deep=depth,
)
async def test_telegram(target: Harness, message: dict[str, Any], deep: int) -> None:
    body = json_body({"update_id": 1, "message": message}, deep)
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
            "timestamp": st.one_of(form_text, hostile_int.map(str)),
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
    token = "t" * 50
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


def mostly(usual: str) -> st.SearchStrategy[str]:
    return st.one_of(st.just(usual), st.just(usual), st.just(usual), json_text)


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
