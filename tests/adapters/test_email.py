"""Email webhook: Mailgun route POSTs (url-encoded and multipart) with their signature."""

from __future__ import annotations

import io
import json

import aiohttp
import pytest

from adapters import email, sendgrid_inbound
from adapters.base import BadRequest, hmac_hex, inbound_event_id
from adapters.config import MAILGUN_MAX_AGE_SECONDS, MailgunConfig
from adapters.provider_api import location_text
from schemas import (
    Channel,
    Location,
    ReplyRequested,
    email_conversation_key,
    email_thread_root,
)
from schemas.limits import NONCE_MAX
from tests.adapters.conftest import ENVIRON, NOW, Harness, start_harness
from tests.adapters.test_egress import reply

PATH = "/webhooks/email/mailgun"
KEY = ENVIRON["MAILGUN_SIGNING_KEY"]


def mailgun_post(**overrides: str) -> dict[str, str]:
    """The fields of Mailgun's documented forward() POST."""
    timestamp, token = "1700000000", "c5f8a1e3d2b4a6c8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1"
    fields = {
        "recipient": "support@acme.example",
        "sender": "bounce+ann=example.org@mail.example.org",
        "from": "Ann Customer <Ann@Example.org>",
        "subject": "Re: Order 1234",
        "body-plain": "Still waiting.\n\nOn Mon, support wrote:\n> We are on it",
        "stripped-text": "Still waiting.",
        "stripped-signature": "",
        "body-html": "<p>Still waiting.</p>",
        "Message-Id": "<CAF=reply-2@mail.example.org>",
        "In-Reply-To": "<outbound-1@acme.example>",
        "References": "<CAF=first-1@mail.example.org> <outbound-1@acme.example>",
        "message-headers": json.dumps(
            [["Subject", "Re: Order 1234"], ["Message-Id", "<CAF=reply-2@mail.example.org>"]]
        ),
        "attachment-count": "0",
        "timestamp": timestamp,
        "token": token,
        "signature": hmac_hex(KEY, (timestamp + token).encode()),
    }
    fields.update(overrides)
    return fields


def test_thread_root() -> None:
    assert email.thread_root("own", "<b@x>", "<a@x> <b@x>") == "a@x"
    assert email.thread_root("own", "<b@x>", None) == "b@x"
    assert email.thread_root("own", None, "") == "own"


async def test_reply_continues_the_thread_of_its_root(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=mailgun_post())
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.channel is Channel.EMAIL
    assert msg.domain == "acme"
    assert msg.queue == "email"
    assert msg.endpoint == "support@acme.example"
    assert msg.customer_address == "ann@example.org"
    assert msg.customer_id == "email:ann@example.org"
    assert msg.subject == "Re: Order 1234"
    assert msg.text == "Still waiting."
    assert msg.provider_message_id == "CAF=reply-2@mail.example.org"
    assert msg.conversation_key == "email:support@acme.example:CAF=first-1@mail.example.org"
    assert msg.id == inbound_event_id("acme", "email", "CAF=reply-2@mail.example.org")
    assert msg.occurred_at == 1700000000


async def test_first_message_of_a_thread_is_its_own_root(hook: Harness) -> None:
    fields = mailgun_post(**{"Message-Id": "<first@x.org>", "In-Reply-To": "", "References": ""})
    resp = await hook.client.post(PATH, data=fields)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.conversation_key == "email:support@acme.example:first@x.org"


async def test_multipart_with_an_attachment(hook: Harness) -> None:
    form = aiohttp.FormData()
    for name, value in mailgun_post(**{"attachment-count": "1"}).items():
        form.add_field(name, value)
    form.add_field(
        "attachment-1",
        io.BytesIO(b"%PDF-1.4 ..."),
        filename="invoice.pdf",
        content_type="application/pdf",
    )
    resp = await hook.client.post(PATH, data=form)
    assert resp.status == 200
    [msg] = hook.publisher.messages
    [att] = msg.attachments
    assert (att.filename, att.content_type, att.size_bytes) == (
        "invoice.pdf",
        "application/pdf",
        12,
    )


def forwarded_with(attachment: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in mailgun_post(**{"attachment-count": "1"}).items():
        form.add_field(name, value)
    form.add_field(
        "attachment-1", io.BytesIO(attachment), filename="scan.pdf", content_type="application/pdf"
    )
    return form


async def test_a_mail_with_a_scan_of_some_megabytes_is_taken(hook: Harness) -> None:
    """Mailgun posts the whole mail (up to 25 MB): a 5 MB attachment, far over the limit of
    other webhooks' bodies, is read, its mail routed; Mailgun would retry a 413 for 8 hours,
    then drop the mail."""
    scan = b"%PDF-1.4 " + b"0" * (5 * 1024 * 1024)
    resp = await hook.client.post(PATH, data=forwarded_with(scan))
    assert resp.status == 200
    [msg] = hook.publisher.messages
    [att] = msg.attachments
    assert (att.filename, att.size_bytes) == ("scan.pdf", len(scan))


async def test_a_mail_over_the_email_body_limit_is_413() -> None:
    harness = await start_harness(max_email_body_bytes=1024 * 1024)
    try:
        resp = await harness.client.post(PATH, data=forwarded_with(b"0" * (2 * 1024 * 1024)))
        assert resp.status == 413
        assert harness.publisher.batches == []
    finally:
        await harness.client.close()


async def test_store_notify_attachments_keep_their_urls(hook: Harness) -> None:
    stored = [
        {
            "url": "https://storage.mailgun.net/v3/domains/acme.example/messages/K/attachments/0",
            "content-type": "image/png",
            "name": "photo.png",
            "size": 2048,
        }
    ]
    resp = await hook.client.post(PATH, data=mailgun_post(attachments=json.dumps(stored)))
    assert resp.status == 200
    [att] = hook.publisher.messages[0].attachments
    assert att.url == stored[0]["url"]
    assert att.content_type == "image/png"


async def test_bad_signature_403_missing_401(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=mailgun_post(signature="0" * 64))
    assert resp.status == 403
    fields = mailgun_post()
    del fields["signature"]
    resp = await hook.client.post(PATH, data=fields)
    assert resp.status == 401
    assert hook.publisher.batches == []
    assert hook.signature_failures("mailgun") == 2


def signed_with(timestamp: str, token: str, **overrides: str) -> dict[str, str]:
    """``mailgun_post`` signed with another timestamp or token."""
    signature = hmac_hex(KEY, (timestamp + token).encode())
    return mailgun_post(timestamp=timestamp, token=token, signature=signature, **overrides)


async def test_the_same_message_under_two_tokens_gets_the_same_event_id(hook: Harness) -> None:
    for token in ("a" * 50, "b" * 50):
        assert (await hook.client.post(PATH, data=signed_with("1700000000", token))).status == 200
    first, second = hook.publisher.messages
    assert first.id == second.id


async def test_a_replayed_token_is_409_and_nothing_is_published(hook: Harness) -> None:
    assert (await hook.client.post(PATH, data=mailgun_post())).status == 200
    replay = mailgun_post(**{"Message-Id": "<forged@x.org>", "stripped-text": "pay here"})
    resp = await hook.client.post(PATH, data=replay)
    assert resp.status == 409
    assert len(hook.publisher.messages) == 1
    assert hook.count("mailgun", "replayed") == 1


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        (str(int(NOW) - 90 * 24 * 3600), "signature expired"),
        (str(int(NOW) - MAILGUN_MAX_AGE_SECONDS - 1), "signature expired"),
        (str(int(NOW) + 15 * 60 + 1), "timestamp in the future"),
        ("nan", "timestamp is not a number"),
        # what float() takes and Mailgun never writes: other scripts' digits, underscores,
        # exponents, blanks
        ("".join(chr(0x0660 + int(d)) for d in str(int(NOW))), "timestamp is not a number"),
        (f"{int(NOW):_}", "timestamp is not a number"),
        ("1.7e9", "timestamp is not a number"),
        (f" {int(NOW)}", "timestamp is not a number"),
    ],
)
async def test_a_stale_or_future_signature_is_403(
    hook: Harness, timestamp: str, reason: str
) -> None:
    resp = await hook.client.post(PATH, data=signed_with(timestamp, "c" * 50))
    assert resp.status == 403
    assert (await resp.json())["error"] == reason
    assert hook.publisher.batches == []
    assert hook.nonces.claimed == {}


async def test_a_signature_at_the_edges_of_the_window_is_accepted(hook: Harness) -> None:
    oldest, latest = int(NOW) - MAILGUN_MAX_AGE_SECONDS, int(NOW) + 15 * 60
    for token, timestamp in (("d" * 50, oldest), ("e" * 50, latest)):
        resp = await hook.client.post(PATH, data=signed_with(str(timestamp), token))
        assert resp.status == 200
    assert hook.nonces.claimed[("mailgun", "d" * 50)] == NOW


async def test_an_over_long_token_is_400_before_the_cache(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=signed_with("1700000000", "f" * (NONCE_MAX + 1)))
    assert resp.status == 400
    assert hook.publisher.batches == []
    assert hook.nonces.claimed == {}


async def test_a_failed_publish_releases_the_token_for_the_retry(hook: Harness) -> None:
    hook.publisher.down = True
    assert (await hook.client.post(PATH, data=mailgun_post())).status == 503
    assert hook.nonces.claimed == {}
    hook.publisher.down = False
    assert (await hook.client.post(PATH, data=mailgun_post())).status == 200
    assert len(hook.publisher.messages) == 1


def test_the_replay_window_cannot_be_turned_off() -> None:
    assert MailgunConfig().max_age_seconds == MAILGUN_MAX_AGE_SECONDS == 8.5 * 3600
    with pytest.raises(ValueError, match="cannot be turned off"):
        MailgunConfig(max_age_seconds=0)


async def test_a_signed_post_to_an_unknown_recipient_is_set_aside(hook: Harness) -> None:
    # Mailgun retries anything but 200 and 406 for 8 hours: refusing would only repeat it.
    resp = await hook.client.post(PATH, data=mailgun_post(recipient="sales@other.example"))
    reason = await hook.set_aside(resp, "mailgun")
    assert reason == "this recipient address is not configured in [channels]"


async def test_unknown_provider_is_404(hook: Harness) -> None:
    resp = await hook.client.post("/webhooks/email/postmark", data=mailgun_post())
    assert resp.status == 404


@pytest.mark.parametrize(
    "fields",
    [
        mailgun_post(**{"from": "not an address", "sender": ""}),
        mailgun_post(**{"message-headers": "{not json"}),
        mailgun_post(recipient=""),
    ],
    ids=["no-sender", "bad-headers-json", "no-recipient"],
)
async def test_signed_posts_that_cannot_be_read_are_set_aside(
    hook: Harness, fields: dict[str, str]
) -> None:
    resp = await hook.client.post(PATH, data=fields)
    assert await hook.set_aside(resp, "mailgun")
    assert hook.count("mailgun", "dead_lettered") == 1


async def test_json_body_is_415(hook: Harness) -> None:
    resp = await hook.client.post(PATH, json=mailgun_post())
    assert resp.status == 415


async def test_a_reply_names_the_message_it_answers(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=mailgun_post())
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.in_reply_to == "outbound-1@acme.example"


async def test_delivery_events_arrive_on_their_own_route(hook: Harness) -> None:
    timestamp, token = "1700000000", "e" * 50
    body = {
        "signature": {
            "timestamp": timestamp,
            "token": token,
            "signature": hmac_hex(KEY, (timestamp + token).encode()),
        },
        "event-data": {
            "event": "delivered",
            "timestamp": NOW,
            "id": "hK7mQVt1QtqRiOfQXta4sw",
            "message": {"headers": {"message-id": "out-0001@acme.example"}},
            "user-variables": {
                "switchboard-outbound-id": "out-0001",
                "switchboard-domain": "acme",
            },
        },
    }
    resp = await hook.client.post(PATH + "/events", json=body)
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert (status.outbound_id, status.provider_status) == ("out-0001", "delivered")
    assert hook.nonces.claimed[("mailgun", token)] == 1700000000 + MAILGUN_MAX_AGE_SECONDS


def test_a_place_as_text() -> None:
    shop = Location(latitude=48.8584, longitude=2.2945, name="Acme", address="5 Av. A")
    assert location_text(shop) == "Acme, 5 Av. A (48.8584, 2.2945) geo:48.8584,2.2945"
    linked = Location(latitude=1.0, longitude=2.0, url="https://maps.example/acme")
    assert location_text(linked) == "1.0, 2.0 https://maps.example/acme"


NESTED = b"(" * 1500 + b")" * 1500
"""A comment nested past the standard library's header parser, which reads comments
recursively."""


def test_a_part_header_nested_past_the_parser_is_a_400_for_either_provider() -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="zz" ' + NESTED + b"\r\n\r\nv\r\n--b--\r\n"
    split = email.split_form(body, "multipart/form-data; boundary=b")
    with pytest.raises(BadRequest, match="RecursionError"):
        split.decoded()
    with pytest.raises(BadRequest, match="RecursionError"):
        sendgrid_inbound.decode_form(split)


def test_a_boundary_behind_a_nested_comment_is_a_400() -> None:
    content_type = "multipart/form-data; boundary=b " + NESTED.decode()
    with pytest.raises(BadRequest, match="boundary"):
        email.split_form(b"--b--\r\n", content_type)


def _reply(in_reply_to: str | None, thread_root: str | None) -> ReplyRequested:
    return reply(
        Channel.EMAIL,
        "support@acme.example",
        "ann@example.org",
        in_reply_to=in_reply_to,
        thread_root=thread_root,
    )


@pytest.mark.parametrize(
    ("in_reply_to", "thread_root", "headers"),
    [
        ("m2@x", "m1@x", {"In-Reply-To": "<m2@x>", "References": "<m1@x> <m2@x>"}),
        ("m1@x", "m1@x", {"In-Reply-To": "<m1@x>", "References": "<m1@x>"}),
        ("m1@x", None, {"In-Reply-To": "<m1@x>", "References": "<m1@x>"}),
        (None, "m1@x", {"In-Reply-To": "<m1@x>", "References": "<m1@x>"}),
        (None, None, {}),
    ],
)
def test_a_reply_names_the_thread_root_first_then_the_mail_it_answers(
    in_reply_to: str | None, thread_root: str | None, headers: dict[str, str]
) -> None:
    assert email.threading_headers(_reply(in_reply_to, thread_root)) == headers


def test_the_customers_answer_to_our_second_reply_keeps_the_thread_root() -> None:
    """RFC 5322: the answer's References are ours, then our id; its root is their first."""
    ours = email.threading_headers(_reply("m2@x", "m1@x"))["References"]
    answer = f"{ours} <r2@acme.example>"
    assert email.thread_root("<m3@x>", "<r2@acme.example>", answer) == "m1@x"


def test_the_thread_root_is_read_from_an_email_conversations_key() -> None:
    key = email_conversation_key("support@acme.example", "m1@x")
    assert email_thread_root(Channel.EMAIL, "support@acme.example", key) == "m1@x"
    assert email_thread_root(Channel.EMAIL, "other@acme.example", key) is None
    assert email_thread_root(Channel.SMS, "support@acme.example", key) is None
