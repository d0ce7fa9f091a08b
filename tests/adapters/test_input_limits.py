"""Input limits at the webhooks (``schemas.limits``), rule by rule, through the real routes.

1. Free text is cleaned: NUL removed, a lone surrogate replaced by U+FFFD, cut at the
   channel's maximum.
2. A correctly signed item holding an identifier or address no event may carry is set aside
   on the dead-letter topic and answered 2xx; the other items of its request go on.
3. A provider's timestamp outside the plausible window becomes our receive time.
4. Bodies: a Content-Encoding is refused with 415 before anything reads the body; JSON
   nested too deeply is a 400; a multipart body is cut without recursion, within a part
   count, and its signature is checked before its fields are decoded.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import urllib.parse
import uuid
import zlib
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import (  # type: ignore[import-untyped]  # twilio ships no types
    RequestValidator,
)
from yarl import URL

from adapters import rbm, sendgrid, vonage, x_dm
from adapters.base import hmac_hex
from adapters.webhook_serving import without_values
from schemas import INBOUND_DECODER, MessageReceived, encode_headers
from schemas.limits import ADDRESS_MAX, CHANNEL_TEXT_MAX, PLAUSIBLE_PAST_SECONDS, SUBJECT_MAX
from tests.adapters.conftest import (
    ENVIRON,
    NOW,
    PUBLIC_URL,
    SENDGRID_EVENT_KEY,
    SENDGRID_PARSE_KEY,
    Harness,
    start_harness,
)
from tests.adapters.test_email import mailgun_post, signed_with
from tests.adapters.test_hostile_fields import (
    BOUNDARY,
    form_data,
    mailgun_signature,
    sendgrid_signed,
    sha256_hex,
    twilio_request,
    vonage_jwt,
    vonage_sms_sig,
)
from tests.adapters.test_meta import (
    PAGE_ID,
    page_notification,
    signed,
    wa_notification,
    wa_text,
    wa_value,
)
from tests.adapters.test_telegram import SECRET, update
from tests.adapters.test_twilio import inbound_sms, sign

TWILIO = "/webhooks/twilio/sms"
META = "/webhooks/meta"
TELEGRAM = "/webhooks/telegram/acme_support_bot"
MAILGUN = "/webhooks/email/mailgun"
MAILGUN_KEY = ENVIRON["MAILGUN_SIGNING_KEY"]


def router_accepts(event: MessageReceived) -> bool:
    """The router decodes it with the strict types and its CloudEvents headers encode."""
    encode_headers(event, source="test")
    return INBOUND_DECODER.decode(msgspec.json.encode(event)) == event


async def post_twilio(hook: Harness, **fields: str) -> int:
    params = inbound_sms(**fields)
    resp = await hook.client.post(TWILIO, data=params, headers=sign(params))
    return resp.status


def messenger_item(sender: str = "6783125368444163", **message: Any) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": PAGE_ID},
        "timestamp": message.pop("timestamp", int(NOW * 1000)),
        "message": {"mid": "m_1", "text": "hi", **message},
    }


def signed_mailgun(timestamp: str, **fields: str) -> dict[str, str]:
    token = "f" * 50
    return mailgun_post(
        timestamp=timestamp,
        token=token,
        signature=hmac_hex(MAILGUN_KEY, (timestamp + token).encode()),
        **fields,
    )


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"xyz") -> tuple[bytes, str]:
    """A multipart/form-data body from (header block, content) pairs, as raw bytes."""
    body = b"".join(
        b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
        for headers, content in parts
    )
    return body + b"--" + boundary + b"--\r\n", "multipart/form-data; boundary=" + boundary.decode()


def field(name: str, value: str | bytes) -> tuple[bytes, bytes]:
    data = value.encode() if isinstance(value, str) else value
    return b'Content-Disposition: form-data; name="' + name.encode() + b'"', data


# -- 1. free text is cleaned ----------------------------------------------------------------


async def test_a_nul_in_a_signed_twilio_body_is_removed(hook: Harness) -> None:
    assert await post_twilio(hook, Body="a\x00b") == 200
    [msg] = hook.publisher.messages
    assert msg.text == "ab"
    assert router_accepts(msg)


async def test_sms_text_is_cut_at_twilios_maximum(hook: Harness) -> None:
    assert await post_twilio(hook, Body="x" * 5000) == 200
    [msg] = hook.publisher.messages
    assert len(msg.text) == CHANNEL_TEXT_MAX["sms"]
    assert msg.text.endswith("…")


async def test_a_lone_surrogate_escape_in_whatsapp_text_becomes_a_replacement_character(
    hook: Harness,
) -> None:
    message = wa_text()
    message["text"] = {"body": "PLACEHOLDER"}
    body, _ = signed(wa_notification(wa_value(messages=[message])))
    body = body.replace(b"PLACEHOLDER", b"broken \\ud83d emoji, kept \\\\ud800 text")
    headers = {"X-Hub-Signature-256": "sha256=" + hmac_hex(ENVIRON["META_APP_SECRET"], body)}
    resp = await hook.client.post(META, data=body, headers=headers)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.text == "broken \ufffd emoji, kept \\ud800 text"
    assert router_accepts(msg)


async def test_mailgun_body_subject_and_file_names_are_cleaned(hook: Harness) -> None:
    fields = signed_mailgun("1700000000", **{"stripped-text": "hel\x00lo", "subject": "s\x00"})
    parts = [field(name, value) for name, value in fields.items()]
    # A file name with a raw non-ASCII byte: the MIME parser reads it as a lone surrogate.
    parts.append(
        (
            b'Content-Disposition: form-data; name="attachment-1"; filename="r\xe9sum\xe9.pdf"\r\n'
            b"Content-Type: application/pdf",
            b"%PDF",
        )
    )
    body, content_type = multipart(parts)
    resp = await hook.client.post(MAILGUN, data=body, headers={"Content-Type": content_type})
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert (msg.text, msg.subject) == ("hello", "s")
    [attachment] = msg.attachments
    assert attachment.filename == "r\ufffdsum\ufffd.pdf"
    assert router_accepts(msg)


async def test_a_message_id_no_event_may_carry_is_replaced_by_a_digest(hook: Harness) -> None:
    resp = await hook.client.post(
        MAILGUN, data=mailgun_post(**{"Message-Id": "<" + "m" * 600 + "@x.org>"})
    )
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.provider_message_id.startswith("sha256:")
    assert router_accepts(msg)


# -- 2. unusable identifiers are set aside --------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"From": "+1" + "5" * 8000}, f"customer address is longer than {ADDRESS_MAX}"),
        ({"From": "+1415\x00555"}, "customer address holds a control character"),
        ({"MessageSid": "SM\x001", "SmsSid": ""}, "provider message id holds a control"),
        ({"NumMedia": "1", "MediaUrl0": "https://x/\x00"}, "attachment url holds a control"),
    ],
    ids=["long-from", "nul-from", "nul-sid", "nul-media-url"],
)
async def test_a_signed_twilio_message_that_cannot_be_stored_is_dead_lettered(
    hook: Harness, fields: dict[str, str], reason: str
) -> None:
    params = inbound_sms(**fields)
    resp = await hook.client.post(TWILIO, data=params, headers=sign(params))
    assert resp.status == 200  # Twilio gets its empty TwiML: nothing to redeliver
    assert await resp.text() == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert hook.publisher.batches == []
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith(reason)
    assert (letter.source, letter.domain) == ("webhook/twilio", "acme")
    assert letter.content_type == "application/x-www-form-urlencoded"
    assert b"MessageSid" in letter.body
    assert hook.count("twilio", "dead_lettered") == 1
    assert "+1" not in letter.reason  # the reason never quotes the value


async def test_one_unusable_meta_item_is_set_aside_and_the_others_are_published(
    hook: Harness,
) -> None:
    payload = page_notification(
        messenger_item(text="first"),
        messenger_item(sender="9" * 5000, mid="m_2", text="unusable sender"),
        messenger_item(mid="m_3", text="third"),
    )
    body, headers = signed(payload)
    resp = await hook.client.post(META, data=body, headers=headers)
    assert resp.status == 200
    assert [m.text for m in hook.publisher.messages] == ["first", "third"]
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("entry[0].messaging[1]: customer address is longer")
    assert letter.body == body
    assert hook.count("meta", "dead_lettered") == 1


async def test_a_signed_mailgun_post_from_a_huge_address_is_dead_lettered(hook: Harness) -> None:
    fields = mailgun_post(**{"from": "a" * 1000 + "@example.org"})
    resp = await hook.client.post(MAILGUN, data=fields)
    assert resp.status == 200  # not 406: the mail stays, on the dead-letter topic
    assert hook.publisher.batches == []
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("customer address is longer")


async def test_a_mailgun_sender_nested_too_deeply_is_dead_lettered_not_a_crash(
    hook: Harness,
) -> None:
    # Found by the hostile-fields property: email.utils recurses once per comment level.
    resp = await hook.client.post(MAILGUN, data=mailgun_post(**{"from": "(" * 3000 + "a@b.c"}))
    assert await hook.set_aside(resp, "mailgun") == "from: nested too deeply"
    resp = await hook.client.post(
        MAILGUN, data=signed_with("1700000000", "e" * 50, recipient="(" * 3000)
    )
    assert await hook.set_aside(resp, "mailgun") == (
        "recipient is not an address list: nested too deeply"
    )


async def test_a_dead_letter_is_acknowledged_by_the_broker_before_the_answer(
    hook: Harness,
) -> None:
    hook.publisher.down = True
    assert await post_twilio(hook, From="+1" + "5" * 8000) == 503
    assert hook.publisher.dead_letters == []
    hook.publisher.down = False
    assert await post_twilio(hook, From="+1" + "5" * 8000) == 200
    assert len(hook.publisher.dead_letters) == 1


# -- 3. implausible provider timestamps become the receive time ---------------------------


async def test_an_out_of_range_telegram_date_is_the_receive_time(hook: Harness) -> None:
    resp = await hook.client.post(TELEGRAM, json=update(date=10**12), headers=SECRET)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.occurred_at == NOW
    assert router_accepts(msg)


@pytest.mark.parametrize("timestamp", ["1e12", "-5", "NaN", "soon", "9" * 400])
async def test_an_out_of_range_whatsapp_timestamp_is_the_receive_time(
    hook: Harness, timestamp: str
) -> None:
    message = {**wa_text(), "timestamp": timestamp}
    body, headers = signed(wa_notification(wa_value(messages=[message])))
    resp = await hook.client.post(META, data=body, headers=headers)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.occurred_at == NOW
    assert msg.reply_window_ends_at == NOW + 24 * 3600
    assert router_accepts(msg)


@pytest.mark.parametrize("timestamp", [10**20, 10**400, -1])
async def test_an_out_of_range_messenger_timestamp_is_the_receive_time(
    hook: Harness, timestamp: int
) -> None:
    body, headers = signed(page_notification(messenger_item(timestamp=timestamp)))
    resp = await hook.client.post(META, data=body, headers=headers)
    assert resp.status == 200  # was 503 "broker unavailable": ce_time overflowed
    [msg] = hook.publisher.messages
    assert msg.occurred_at == NOW
    assert router_accepts(msg)


async def test_a_huge_signed_mailgun_timestamp_is_refused(hook: Harness) -> None:
    # Beyond the 15 minutes of clock skew the replay window allows (test_email.py).
    resp = await hook.client.post(MAILGUN, data=signed_mailgun("9" * 30))
    assert resp.status == 403
    assert hook.publisher.batches == []


async def test_a_provider_time_within_the_window_is_kept(hook: Harness) -> None:
    sent = NOW - PLAUSIBLE_PAST_SECONDS + 60
    resp = await hook.client.post(TELEGRAM, json=update(date=int(sent)), headers=SECRET)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.occurred_at == int(sent)


# -- 4. bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TWILIO, META, TELEGRAM, MAILGUN])
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"\x00not gzip at all" * 8),
        ("deflate", b"\x00not deflate" * 8),
        ("gzip", gzip.compress(b"Body=hi")),
        ("deflate", zlib.compress(b"\0" * 50_000_000)),  # 50 MB of zeros in 49 kB
        ("x-custom", b"{}"),
    ],
    ids=["gzip-junk", "deflate-junk", "gzip", "deflate-bomb", "unknown"],
)
async def test_a_body_with_a_content_encoding_is_415_before_it_is_read(
    hook: Harness, path: str, encoding: str, body: bytes
) -> None:
    resp = await hook.client.post(
        path,
        data=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    assert resp.status == 415
    assert resp.headers["Accept-Encoding"] == "identity"
    assert (await resp.json())["error"]
    assert hook.publisher.batches == []


async def test_an_encoding_aiohttp_cannot_decode_is_refused_by_aiohttp(hook: Harness) -> None:
    # Brotli and zstd are not installed: aiohttp answers 400 before any handler runs.
    for encoding in ("br", "zstd"):
        resp = await hook.client.post(TWILIO, data=b"junk", headers={"Content-Encoding": encoding})
        assert resp.status == 400
    assert hook.publisher.batches == []


async def test_an_identity_content_encoding_is_read_as_usual(hook: Harness) -> None:
    params = inbound_sms()
    resp = await hook.client.post(
        TWILIO, data=params, headers={**sign(params), "Content-Encoding": "identity"}
    )
    assert resp.status == 200


DEEP = b"[" * 5000 + b"]" * 5000


async def test_signed_json_nested_thousands_deep_is_set_aside(hook: Harness) -> None:
    doc = update()
    doc["extra"] = "DEEP"
    telegram = msgspec.json.encode(doc).replace(b'"DEEP"', DEEP)
    resp = await hook.client.post(TELEGRAM, data=telegram, headers=SECRET)
    assert "nested too deeply" in await hook.set_aside(resp, "telegram")

    note = wa_notification(wa_value(messages=[wa_text()]))
    note["entry"][0]["changes"][0]["value"]["contacts"] = "DEEP"
    for payload in (msgspec.json.encode(note), msgspec.json.encode({"object": "page", "x": 1})):
        body = payload.replace(b'"DEEP"', DEEP).replace(b'"x":1', b'"x":' + DEEP)
        headers = {"X-Hub-Signature-256": "sha256=" + hmac_hex(ENVIRON["META_APP_SECRET"], body)}
        resp = await hook.client.post(META, data=body, headers=headers)
        assert await hook.set_aside(resp, "meta")

    fields = mailgun_post(attachments=DEEP.decode())
    resp = await hook.client.post(MAILGUN, data=fields)
    assert "malformed attachments" in await hook.set_aside(resp, "mailgun")


def nested_multipart(depth: int) -> bytes:
    """A part whose content is a multipart nested ``depth`` levels."""
    inner = b"x"
    for level in range(depth):
        boundary = b"b%d" % level
        inner = (
            b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
            b"--" + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"--"
        )
    return inner


async def test_an_unsigned_multipart_body_nested_1200_levels_is_401_not_a_crash(
    hook: Harness,
) -> None:
    body, content_type = multipart(
        [(b'Content-Disposition: form-data; name="x"\r\n' + nested_multipart(1200), b"y")]
    )
    resp = await hook.client.post(MAILGUN, data=body, headers={"Content-Type": content_type})
    assert resp.status == 401
    assert hook.publisher.batches == []


async def test_a_nested_part_of_a_signed_post_stays_opaque(hook: Harness) -> None:
    parts = [field(name, value) for name, value in mailgun_post().items()]
    parts.append(
        (
            b'Content-Disposition: form-data; name="attachment-1"; filename="a.eml"\r\n'
            b"Content-Type: multipart/mixed; boundary=b0",
            nested_multipart(1200),
        )
    )
    body, content_type = multipart(parts)
    resp = await hook.client.post(MAILGUN, data=body, headers={"Content-Type": content_type})
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert [a.filename for a in msg.attachments] == ["a.eml"]


async def test_a_multipart_body_of_too_many_parts_is_400(hook: Harness) -> None:
    body, content_type = multipart([field(f"f{i}", "v") for i in range(300)])
    resp = await hook.client.post(MAILGUN, data=body, headers={"Content-Type": content_type})
    assert resp.status == 400
    assert "parts" in (await resp.json())["error"]


async def test_the_mailgun_signature_is_checked_before_the_fields_are_decoded(
    hook: Harness,
) -> None:
    # A field in an unknown charset would be a 400 once decoded: unsigned, it is a 401.
    fields = mailgun_post(signature="0" * 64)
    parts = [field(name, value) for name, value in fields.items()]
    parts.append(
        (b'Content-Disposition: form-data; name="x"\r\nContent-Type: text/plain; charset=nope', b"")
    )
    body, content_type = multipart(parts)
    resp = await hook.client.post(MAILGUN, data=body, headers={"Content-Type": content_type})
    assert resp.status == 403


async def test_a_twilio_form_of_too_many_fields_is_400(hook: Harness) -> None:
    params = {**inbound_sms(), **{f"X{i}": "" for i in range(1500)}}
    resp = await hook.client.post(TWILIO, data=params, headers=sign(params))
    assert resp.status == 400


# -- The providers added later: Twilio's other routes and JSON bodies, Mailgun events,
# -- SendGrid, Vonage, Google RBM, X ----------------------------------------------------------

SENDGRID_OURS = "help@acme.example"
VONAGE_NUMBER = "14155550123"
RBM_AGENT = "acme-agent"
X_ACCOUNT, X_CUSTOMER = "4337869213", "3001969357"
ISO_9999 = "9999-12-31T23:59:59Z"


def sendgrid_parse(**fields: str | bytes) -> tuple[bytes, dict[str, str]]:
    """A signed Inbound Parse POST (parsed mode) to our SendGrid address."""
    values = {"to": SENDGRID_OURS, "from": "Ann <ann@example.org>", "text": "hi", **fields}
    body = form_data(
        [(k, None, v.encode() if isinstance(v, str) else v) for k, v in values.items()]
    )
    headers = {
        **sendgrid_signed(SENDGRID_PARSE_KEY, body, str(int(NOW))),
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    return body, headers


def sendgrid_events(events: list[dict[str, Any]] | bytes) -> tuple[bytes, dict[str, str]]:
    body = events if isinstance(events, bytes) else msgspec.json.encode(events)
    return body, sendgrid_signed(SENDGRID_EVENT_KEY, body, str(int(NOW)))


def sendgrid_event(**fields: Any) -> dict[str, Any]:
    return {
        "event": "delivered",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "sg_event_id": "ZGVsaXZlcmVkLTAtMjQ1",
        "timestamp": int(NOW) - 60,
        "switchboard_endpoint": SENDGRID_OURS,
        **fields,
    }


def vonage_message(**fields: Any) -> dict[str, Any]:
    return {
        "channel": "sms",
        "message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
        "to": VONAGE_NUMBER,
        "from": "447700900001",
        "timestamp": "2023-11-14T22:12:20Z",
        "message_type": "text",
        "text": "hi",
        **fields,
    }


def vonage_signed(body: bytes) -> dict[str, str]:
    return {"Authorization": f"Bearer {vonage_jwt(body, NOW)}", "Content-Type": "application/json"}


def vonage_sms(**fields: str) -> dict[str, str]:
    """A signed SMS API inbound message, as query parameters."""
    params = {
        "msisdn": "447700900001",
        "to": VONAGE_NUMBER,
        "messageId": "0A0000000123ABCD1",
        "text": "hi",
        "type": "text",
        "timestamp": str(int(NOW)),
        "nonce": str(uuid.uuid4()),
        **fields,
    }
    return {**params, "sig": vonage_sms_sig(params)}


def rbm_delivery(inner: dict[str, Any] | bytes, path: str = rbm.WEBHOOK_PATH) -> Any:
    data = inner if isinstance(inner, bytes) else msgspec.json.encode(inner)
    mac = hmac.new(ENVIRON["RBM_CLIENT_TOKEN"].encode(), data, hashlib.sha512).digest()
    envelope = {"message": {"data": base64.b64encode(data).decode()}, "subscription": "s"}
    headers = {rbm.SIGNATURE_HEADER: base64.b64encode(mac).decode()}
    return path, msgspec.json.encode(envelope), headers


def rbm_message(**fields: Any) -> dict[str, Any]:
    return {
        "agentId": RBM_AGENT + rbm.AGENT_SUFFIX,
        "senderPhoneNumber": "+12223334444",
        "messageId": "msg-0001",
        "sendTime": "2023-11-14T22:12:20Z",
        "text": "hi",
        **fields,
    }


def x_signed(body: bytes) -> dict[str, str]:
    mac = hmac.new(ENVIRON["X_CONSUMER_SECRET"].encode(), body, hashlib.sha256).digest()
    return {
        x_dm.SIGNATURE_HEADER: "sha256=" + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }


def x_dm_event(dm_id: str = "1100000000000000001", **data: Any) -> dict[str, Any]:
    return {
        "type": "message_create",
        "id": dm_id,
        "created_timestamp": str(int(NOW * 1000) - 60_000),
        "message_create": {
            "target": {"recipient_id": X_ACCOUNT},
            "sender_id": X_CUSTOMER,
            "message_data": {"text": "hi", **data},
        },
    }


def x_activity(*dms: dict[str, Any], **extra: Any) -> bytes:
    return msgspec.json.encode(
        {"for_user_id": X_ACCOUNT, "direct_message_events": list(dms), **extra}
    )


def twilio_json(doc: dict[str, Any] | bytes, url: str = PUBLIC_URL + "/webhooks/twilio/sms") -> Any:
    """A JSON webhook Twilio signs through ``bodySHA256`` in the URL."""
    body = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
    path, signed_url = twilio_request(url, [("bodySHA256", sha256_hex(body))])
    signature = RequestValidator(ENVIRON["TWILIO_AUTH_TOKEN"]).compute_signature(signed_url, {})
    return path, body, {"X-Twilio-Signature": signature, "Content-Type": "application/json"}


# -- 1. free text is cleaned, and cut at each new channel's maximum -------------------------


async def test_vonage_sms_text_is_cleaned_and_cut_at_the_sms_maximum(hook: Harness) -> None:
    params = vonage_sms(text="a\x00b" + "x" * 5000)
    resp = await hook.client.post(vonage.SMS_INBOUND_PATH, data=params)
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text.startswith("abx")
    assert len(msg.text) == CHANNEL_TEXT_MAX["sms"]
    assert router_accepts(msg)


@pytest.mark.parametrize(
    ("channel", "ours"), [("viber", "viber_service"), ("whatsapp", "whatsapp")]
)
async def test_vonage_text_is_cut_at_the_channels_maximum(
    hook: Harness, channel: str, ours: str
) -> None:
    body = msgspec.json.encode(vonage_message(channel=ours, text="CUT" + "x" * 9000))
    body = body.replace(b"CUT", b"\\ud83d")  # an emoji cut in half: a lone surrogate
    resp = await hook.client.post(vonage.INBOUND_PATH, data=body, headers=vonage_signed(body))
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text[0] == "\ufffd"
    assert len(msg.text) == CHANNEL_TEXT_MAX[channel]
    assert router_accepts(msg)


async def test_rbm_text_is_cut_at_the_rcs_maximum(hook: Harness) -> None:
    path, body, headers = rbm_delivery(rbm_message(text="a\x00" + "x" * 5000))
    resp = await hook.client.post(path, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text.startswith("ax")
    assert len(msg.text) == CHANNEL_TEXT_MAX["rcs"] == 3072
    assert router_accepts(msg)


async def test_x_text_is_cut_at_the_x_maximum(hook: Harness) -> None:
    body = x_activity(x_dm_event(text="a\x00" + "x" * 12_000))
    resp = await hook.client.post(x_dm.WEBHOOK_PATH, data=body, headers=x_signed(body))
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text.startswith("ax")
    assert len(msg.text) == CHANNEL_TEXT_MAX["x"] == 10_000
    assert router_accepts(msg)


async def test_sendgrid_text_subject_and_file_names_are_cleaned(hook: Harness) -> None:
    info = '{"attachment1": {"filename": "r\\u0000\\ud800.pdf", "type": "application/pdf"}}'
    body, headers = sendgrid_parse(
        text="hel\x00lo", subject="s\x00" + "u" * 2000, attachments="1", **{"attachment-info": info}
    )
    body = body.replace(
        f"--{BOUNDARY}--".encode(),
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="attachment1"; filename=""\r\n\r\n'
        f"%PDF\r\n--{BOUNDARY}--".encode(),
    )
    headers = {**headers, **sendgrid_signed(SENDGRID_PARSE_KEY, body, str(int(NOW)))}
    resp = await hook.client.post(sendgrid.PARSE_PATH, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    [msg] = hook.publisher.messages
    assert msg.text == "hello"
    assert msg.subject is not None
    assert msg.subject.startswith("su")
    assert len(msg.subject) == SUBJECT_MAX
    [attachment] = msg.attachments
    assert attachment.filename == "r\ufffd.pdf"
    assert router_accepts(msg)


# -- 2. unusable identifiers are set aside ----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"msisdn": "44" + "7" * 400}, f"customer address is longer than {ADDRESS_MAX}"),
        ({"msisdn": "44770\x00900001"}, "customer address holds a control character"),
        ({"messageId": "0A\x1b1"}, "provider message id holds a control character"),
    ],
    ids=["long-msisdn", "nul-msisdn", "esc-message-id"],
)
async def test_a_signed_vonage_sms_that_cannot_be_stored_is_dead_lettered(
    hook: Harness, fields: dict[str, str], reason: str
) -> None:
    url = URL(f"{vonage.SMS_INBOUND_PATH}?{urllib.parse.urlencode(vonage_sms(**fields))}")
    resp = await hook.client.get(url)
    assert (await hook.set_aside(resp, "vonage")).startswith(reason)


async def test_a_signed_twilio_json_message_that_cannot_be_stored_is_dead_lettered(
    hook: Harness,
) -> None:
    path, body, headers = twilio_json({**inbound_sms(), "MessageSid": "SM\x001"})
    resp = await hook.client.post(path, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("provider message id holds a control character")
    assert (letter.content_type, letter.body) == ("application/json", body)


async def test_one_unusable_sendgrid_event_is_set_aside_and_the_others_are_published(
    hook: Harness,
) -> None:
    events = [
        sendgrid_event(),
        sendgrid_event(sg_message_id="m\x00", smtp_id=None),
        sendgrid_event(event="open", sg_event_id="b3Blbi0xMjM"),
    ]
    body, headers = sendgrid_events(events)
    resp = await hook.client.post(sendgrid.EVENTS_PATH, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert [s.provider_status for s in hook.publisher.statuses] == ["delivered", "open"]
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("event 1: provider message id holds a control character")


async def test_one_unusable_x_dm_is_set_aside_and_the_others_are_published(hook: Harness) -> None:
    body = x_activity(
        x_dm_event("1100000000000000001", text="first"),
        x_dm_event("9" * 600, text="unusable id"),
        x_dm_event("1100000000000000003", text="third"),
    )
    resp = await hook.client.post(x_dm.WEBHOOK_PATH, data=body, headers=x_signed(body))
    assert resp.status == 200, await resp.text()
    assert [m.text for m in hook.publisher.messages] == ["first", "third"]
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("direct_message_events[1]: provider message id is longer")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"senderPhoneNumber": "+1" + "5" * 400}, "senderPhoneNumber is not an E.164 number"),
        ({"messageId": "m\x00"}, "provider message id holds a control character"),
        ({"text": None, "userFile": {"payload": {"fileUri": "https://x/\x7f"}}}, "attachment url"),
    ],
    ids=["long-phone", "nul-id", "del-file-uri"],
)
async def test_a_signed_rbm_message_that_cannot_be_stored_is_dead_lettered(
    hook: Harness, fields: dict[str, Any], reason: str
) -> None:
    message = {k: v for k, v in rbm_message(**fields).items() if v is not None}
    path, body, headers = rbm_delivery(message)
    resp = await hook.client.post(path, data=body, headers=headers)
    assert (await hook.set_aside(resp, "rbm")).startswith(reason)


async def test_a_signed_sendgrid_mail_from_a_huge_address_is_dead_lettered(hook: Harness) -> None:
    body, headers = sendgrid_parse(**{"from": "a" * 1000 + "@example.org"})
    resp = await hook.client.post(sendgrid.PARSE_PATH, data=body, headers=headers)
    assert (await hook.set_aside(resp, "sendgrid")).startswith("customer address is longer")


# -- 3. implausible provider timestamps become the receive time -------------------------


async def test_out_of_range_times_of_the_new_providers_are_the_receive_time(
    hook: Harness,
) -> None:
    body = msgspec.json.encode(vonage_message(timestamp=ISO_9999))
    await hook.client.post(vonage.INBOUND_PATH, data=body, headers=vonage_signed(body))
    sms = vonage_sms(**{"message-timestamp": "0001-01-01 00:00:00"})
    await hook.client.get(vonage.SMS_INBOUND_PATH, params=sms)
    path, body, headers = rbm_delivery(rbm_message(sendTime=ISO_9999))
    await hook.client.post(path, data=body, headers=headers)
    dm = x_dm_event()
    dm["created_timestamp"] = "9" * 30
    body = x_activity(dm)
    await hook.client.post(x_dm.WEBHOOK_PATH, data=body, headers=x_signed(body))
    body, headers = sendgrid_events([sendgrid_event(timestamp=10**12)])
    await hook.client.post(sendgrid.EVENTS_PATH, data=body, headers=headers)
    delivered = {
        "event": "delivered",
        "timestamp": 1e12,
        "message": {"headers": {"message-id": "m1@acme.example"}},
        "envelope": {"sender": "support@acme.example"},
    }
    body = msgspec.json.encode(
        {"signature": mailgun_signature(str(int(NOW))), "event-data": delivered}
    )
    await hook.client.post(
        "/webhooks/email/mailgun/events", data=body, headers={"Content-Type": "application/json"}
    )
    events = hook.publisher.events
    assert len(events) == 6, hook.publisher.dead_letters
    assert [e.occurred_at for e in events] == [NOW] * 6


# -- 4. bodies --------------------------------------------------------------------------------

NEW_ROUTES = [
    "/webhooks/twilio/status",
    "/twilio/in",
    "/webhooks/email/mailgun/events",
    sendgrid.PARSE_PATH,
    sendgrid.EVENTS_PATH,
    vonage.INBOUND_PATH,
    vonage.STATUS_PATH,
    vonage.SMS_INBOUND_PATH,
    vonage.SMS_DLR_PATH,
    rbm.WEBHOOK_PATH,
    f"{rbm.WEBHOOK_PATH}/{RBM_AGENT}",
    x_dm.WEBHOOK_PATH,
]


@pytest.mark.parametrize("path", NEW_ROUTES)
async def test_a_body_with_a_content_encoding_is_415_on_every_new_route(
    hook: Harness, path: str
) -> None:
    bomb = zlib.compress(b"\0" * 5_000_000)
    resp = await hook.client.post(
        path, data=bomb, headers={"Content-Encoding": "deflate", "Content-Type": "application/json"}
    )
    assert resp.status == 415
    assert hook.publisher.batches == []


async def test_a_sendgrid_mail_larger_than_the_body_limit_is_413() -> None:
    """Inbound Parse posts the whole mail, attachments included: ``max_email_body_bytes``
    bounds it (``http.max_email_body_bytes``, 32 MiB by default)."""
    harness = await start_harness(max_email_body_bytes=4096)
    try:
        body, headers = sendgrid_parse(attachment1=b"x" * 5000)
        resp = await harness.client.post(sendgrid.PARSE_PATH, data=body, headers=headers)
        assert resp.status == 413
        assert harness.count("sendgrid", "too_large") == 1
    finally:
        await harness.client.close()


async def test_signed_json_of_the_new_providers_nested_thousands_deep_is_set_aside(
    hook: Harness,
) -> None:
    def deep(doc: Any) -> bytes:
        return msgspec.json.encode(doc).replace(b'"DEEP"', DEEP)

    body = deep(vonage_message(extra="DEEP"))
    resp = await hook.client.post(vonage.INBOUND_PATH, data=body, headers=vonage_signed(body))
    assert "nested too deeply" in await hook.set_aside(resp, "vonage")

    path, body, headers = rbm_delivery(deep(rbm_message(extra="DEEP")))
    resp = await hook.client.post(path, data=body, headers=headers)
    assert "nested too deeply" in await hook.set_aside(resp, "rbm")

    body = deep({"for_user_id": X_ACCOUNT, "direct_message_events": [], "extra": "DEEP"})
    resp = await hook.client.post(x_dm.WEBHOOK_PATH, data=body, headers=x_signed(body))
    assert "nested too deeply" in await hook.set_aside(resp, "x")

    body, headers = sendgrid_events(deep([sendgrid_event(), "DEEP"]))
    resp = await hook.client.post(sendgrid.EVENTS_PATH, data=body, headers=headers)
    assert "nested too deeply" in await hook.set_aside(resp, "sendgrid_events")

    path, body, headers = twilio_json(deep({**inbound_sms(), "extra": "DEEP"}))
    resp = await hook.client.post(path, data=body, headers=headers)
    assert "nested too deeply" in await hook.set_aside(resp, "twilio")

    signature = mailgun_signature(str(int(NOW)))
    body = deep({"signature": signature, "event-data": {"event": "delivered", "x": "DEEP"}})
    resp = await hook.client.post(
        "/webhooks/email/mailgun/events", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400  # the signature object is read first: the whole body is
    assert hook.publisher.batches == []


async def test_sendgrid_multipart_is_bounded_and_checked_before_it_is_read(
    hook: Harness,
) -> None:
    many = form_data([(f"f{i}", None, b"v") for i in range(300)])
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    resp = await hook.client.post(sendgrid.PARSE_PATH, data=many, headers=headers)
    assert resp.status == 401  # unsigned: refused before anything is parsed

    signed = {**headers, **sendgrid_signed(SENDGRID_PARSE_KEY, many, str(int(NOW)))}
    resp = await hook.client.post(sendgrid.PARSE_PATH, data=many, headers=signed)
    assert await hook.set_aside(resp, "sendgrid") == "multipart body of more than 256 parts"


def raw_mail(nesting: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nhello"
    for level in range(nesting):
        b = b"n%d" % level
        inner = (
            b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n"
            + inner + b"\r\n--" + b + b"--"
        )  # fmt: skip
    return b"From: ann@example.org\r\nMessage-Id: <m1@example.org>\r\n" + inner


@pytest.mark.parametrize(("nesting", "published"), [(250, True), (1200, False)])
async def test_a_raw_sendgrid_mail_is_read_without_recursion_within_its_part_count(
    hook: Harness, nesting: int, published: bool
) -> None:
    body, headers = sendgrid_parse(email=raw_mail(nesting))
    resp = await hook.client.post(sendgrid.PARSE_PATH, data=body, headers=headers)
    if published:
        assert resp.status == 200
        [msg] = hook.publisher.messages
        assert msg.text == "hello"
    else:
        reason = await hook.set_aside(resp, "sendgrid")
        assert reason == "raw message of more than 256 parts"


async def test_more_sendgrid_events_than_the_maximum_are_set_aside(hook: Harness) -> None:
    body, headers = sendgrid_events([{}] * 10_001)
    resp = await hook.client.post(sendgrid.EVENTS_PATH, data=body, headers=headers)
    assert await hook.set_aside(resp, "sendgrid_events") == "more than 10000 events"


@pytest.mark.parametrize(("padding", "status"), [(7800, 403), (8200, 400)])
async def test_a_long_vonage_token_is_refused_unread(
    hook: Harness, padding: int, status: int
) -> None:
    """Within aiohttp's 8,190 bytes of a header line, a token is refused by its signature
    (403); a longer line is aiohttp's 400 before any handler (``vonage_signatures.TOKEN_MAX``, 8,192,
    is never reached over HTTP)."""
    body = msgspec.json.encode(vonage_message())
    header, claims, signature = vonage_jwt(body, NOW).split(".")
    padded = f"{header}.{claims}{'A' * padding}.{signature}"
    resp = await hook.client.post(
        vonage.INBOUND_PATH, data=body, headers={"Authorization": f"Bearer {padded}"}
    )
    assert resp.status == status
    assert hook.publisher.batches == []


async def test_vonage_sms_parameters_are_bounded_and_unambiguous(hook: Harness) -> None:
    params = vonage_sms(**{f"x{i}": "" for i in range(1001)})
    resp = await hook.client.post(vonage.SMS_INBOUND_PATH, data=params)
    assert resp.status == 400
    assert "at most 1000 fields" in (await resp.json())["error"]
    resp = await hook.client.get(vonage.SMS_INBOUND_PATH, params=params)
    assert resp.status == 400
    assert "more than 1000 parameters" in (await resp.json())["error"]

    twice = urllib.parse.urlencode(vonage_sms()) + "&text=again"
    resp = await hook.client.get(URL(f"{vonage.SMS_INBOUND_PATH}?{twice}", encoded=True))
    assert resp.status == 400
    assert "given twice" in (await resp.json())["error"]
    assert hook.publisher.batches == []


@pytest.mark.parametrize(
    ("token", "status"),
    [("c" * 1024, 200), ("c" * 1025, 400), ("c\x00c", 400), ("c\u2028c", 400)],
    ids=["1024", "1025", "nul", "line-separator"],
)
async def test_an_x_crc_token_is_answered_within_its_maximum(
    hook: Harness, token: str, status: int
) -> None:
    resp = await hook.client.get(x_dm.WEBHOOK_PATH, params={"crc_token": token})
    assert resp.status == status


@pytest.mark.parametrize(
    ("secret", "status"), [("1" * 1024, 200), ("1" * 1025, 400), ("1\x002", 400)]
)
async def test_an_rbm_handshake_secret_is_echoed_within_its_maximum(
    hook: Harness, secret: str, status: int
) -> None:
    handshake = {"clientToken": ENVIRON["RBM_CLIENT_TOKEN"], "secret": secret}
    resp = await hook.client.post(
        rbm.WEBHOOK_PATH, json=handshake, headers={"X-Goog-Webhook-Type": "verification"}
    )
    assert resp.status == status
    if status == 200:
        assert await resp.text() == secret


async def test_a_twilio_json_body_of_too_many_fields_is_set_aside(hook: Harness) -> None:
    path, body, headers = twilio_json({**inbound_sms(), **{f"X{i}": "" for i in range(1500)}})
    resp = await hook.client.post(path, data=body, headers=headers)
    assert "more than 1000 fields" in await hook.set_aside(resp, "twilio")


async def test_a_twilio_json_body_that_is_not_the_signed_one_is_403(hook: Harness) -> None:
    path, body, headers = twilio_json(inbound_sms())
    resp = await hook.client.post(path, data=body + b" ", headers=headers)
    assert resp.status == 403
    assert hook.publisher.batches == []


# -- a dead letter's reason names what was wrong, never the value ---------------------------

PERSON = 'Jane "JR" O\'Roe +14155550123 jane.roe@example.com'


def _without_the_person(text: str) -> bool:
    return not any(part in text for part in ("Jane", "Roe", "4155550123", "example.com"))


@given(value=st.text(min_size=1), cut=st.integers(min_value=0))
def test_a_quoted_value_is_left_out_whole_or_cut(value: str, cut: int) -> None:
    """``repr`` quotes with either quote, escaping the one it uses; a reason cut in the
    middle of its value (at 500 characters) has no closing quote."""
    reason = f"unknown value {value!r}"
    assert without_values(reason) == "unknown value …"
    assert without_values(reason[: len("unknown value ") + 1 + cut]) == "unknown value …"


@pytest.mark.parametrize("padding", [0, 600])
async def test_a_signed_meta_object_we_do_not_know_is_set_aside_without_its_value(
    hook: Harness, padding: int
) -> None:
    body, headers = signed({"object": PERSON + " " + "x" * padding, "entry": [{"id": "1"}]})
    resp = await hook.client.post(META, data=body, headers=headers)
    assert resp.status == 200
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("unsupported object")
    assert _without_the_person(letter.reason), letter.reason


async def test_a_vonage_content_item_of_the_senders_own_type_is_not_named(
    hook: Harness,
) -> None:
    body = msgspec.json.encode(
        vonage_message(message_type="content", content=[{"type": PERSON}], text=None)
    )
    resp = await hook.client.post(vonage.INBOUND_PATH, data=body, headers=vonage_signed(body))
    assert resp.status == 200
    [letter] = hook.publisher.dead_letters
    assert letter.reason == "a content item without a url"
