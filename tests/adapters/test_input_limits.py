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

import gzip
import zlib
from typing import Any

import msgspec
import pytest

from adapters.base import hmac_hex
from schemas import INBOUND_DECODER, MessageReceived, encode_headers
from schemas.limits import ADDRESS_MAX, CHANNEL_TEXT_MAX, PLAUSIBLE_PAST_SECONDS
from tests.adapters.conftest import ENVIRON, NOW, Harness
from tests.adapters.test_email import mailgun_post, signed_with
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
