"""Mailgun conformance: event webhooks and route POSTs as Mailgun documents them, their
signature, and the send with attachments.

Documentation the fixtures (``tests/adapters/fixtures/mailgun/``) come from:
- https://documentation.mailgun.com/docs/mailgun/user-manual/events/ ("Event Types",
  "Event Structure"; github.com/mailgun/documentation ``source/api-events.rst``): every
  sample event (``accepted``, ``accepted_routed``, ``delivered``, ``failed_permanent``,
  ``failed_permanent_delayed_bounce``, ``failed_temporary``, ``opened``, ``clicked``,
  ``unsubscribed``, ``complained``, ``stored``, ``rejected``, ``list_member_uploaded``,
  ``list_member_upload_error``, ``list_uploaded``), verbatim but made JSON: the samples'
  trailing commas removed and the comma missing after ``"event": "rejected"`` added;
- https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/ ("Payload",
  "Securing Webhooks"): ``webhook.json``, the payload example with its signature (the
  event data cut where the example cuts it);
- the same manual's "Receiving Messages via HTTP through a forward() action" and "Storing
  and Retrieving Messages" parameter tables: ``route_forward.json`` and
  ``route_store_notify.json`` hold every parameter listed, with our values (the manual
  gives no example).

The signature reference is the manual's Python sample (``mailgun_verify`` below: HMAC-
SHA256 of timestamp + token, hex, with the webhook signing key), written out here; the
official SDK (``mailgun`` on PyPI, ``Security.verify_webhook``) is not a dependency of
ours. Mailgun publishes no key for its example signature, so no vector verifies: the
example is refused as Mailgun's own signature under a key we do not hold.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters import email, webhooks
from adapters.base import SignatureRejected, inbound_event_id
from adapters.config import MAILGUN_MAX_AGE_SECONDS
from adapters.egress import Egress, InMemorySentLedger, RetryPolicy, SendOutcome
from adapters.webhooks import WebhookContext, refuse_encoded_bodies
from runtime.metrics import Metrics
from schemas import (
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    DeliveryStatus,
    DeliveryStatusChanged,
    Location,
    ReplyRequested,
)
from schemas.limits import NONCE_MAX
from tests.adapters.conftest import (
    CHANNELS,
    ENVIRON,
    NOW,
    Harness,
    MemoryNonces,
    RecordingPublisher,
)
from tests.fakes.mailgun import FakeMailgun

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mailgun"
EVENTS = "/webhooks/email/mailgun/events"
ROUTE = "/webhooks/email/mailgun"
KEY = ENVIRON["MAILGUN_SIGNING_KEY"]
OURS = "support@acme.example"

#: Mailgun's documented events ("Event Types"), ``failed`` by its two severities.
DOCUMENTED = (
    "accepted",
    "rejected",
    "delivered",
    "failed:temporary",
    "failed:permanent",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
    "stored",
    "list_member_uploaded",
    "list_member_upload_error",
    "list_uploaded",
)

#: Each event fixture: the provider status it reports, and ours (None: not routed).
EXPECTED: dict[str, tuple[str, DeliveryStatus | None]] = {
    "accepted": ("accepted", DeliveryStatus.QUEUED),
    "accepted_routed": ("accepted", DeliveryStatus.QUEUED),
    "rejected": ("rejected", DeliveryStatus.FAILED),
    "delivered": ("delivered", DeliveryStatus.DELIVERED),
    "failed_temporary": ("failed:temporary", DeliveryStatus.QUEUED),
    "failed_permanent": ("failed:permanent", DeliveryStatus.UNDELIVERED),
    "failed_permanent_delayed_bounce": ("failed:permanent", DeliveryStatus.UNDELIVERED),
    "opened": ("opened", DeliveryStatus.READ),
    "clicked": ("clicked", DeliveryStatus.READ),
    "unsubscribed": ("unsubscribed", DeliveryStatus.READ),
    "complained": ("complained", DeliveryStatus.DELIVERED),
    "stored": ("stored", None),
    "list_member_uploaded": ("list_member_uploaded", None),
    "list_member_upload_error": ("list_member_upload_error", None),
    "list_uploaded": ("list_uploaded", None),
}


#: The events that also report the customer's consent.
CONSENTS = {"unsubscribed": Consent.OPT_OUT, "complained": Consent.OPT_OUT}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def consents(hook: Harness) -> list[ConsentReported]:
    return [e for e in hook.publisher.events if isinstance(e, ConsentReported)]


def mailgun_verify(signing_key: str, token: str, timestamp: str, signature: str) -> bool:
    """The manual's Python sample, "Securing Webhooks"."""
    digest = hmac.new(
        key=signing_key.encode(),
        msg=f"{timestamp}{token}".encode(),
        digestmod=hashlib.sha256,
    ).hexdigest()
    return hmac.compare_digest(str(signature), str(digest))


def signature(timestamp: str, token: str, key: str = KEY) -> dict[str, str]:
    mac = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": mac}


def webhook(event_data: Any, **signed: str) -> dict[str, Any]:
    """An event webhook as Mailgun posts it, signed now with a fresh token."""
    fields = {"timestamp": str(int(NOW)), "token": secrets.token_hex(25), **signed}
    return {
        "signature": signature(fields["timestamp"], fields["token"]) | signed,
        "event-data": event_data,
    }


def ours(event_data: dict[str, Any], outbound_id: str = "out-0001") -> dict[str, Any]:
    """A documented event about a message we sent: our variables, as the send sets them."""
    return {
        **event_data,
        "user-variables": {"switchboard-outbound-id": outbound_id, "switchboard-domain": "acme"},
    }


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    publisher, metrics, nonces = RecordingPublisher(), Metrics(), MemoryNonces()
    ctx = WebhookContext(
        channels=CHANNELS,
        environ=ENVIRON,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        clock=lambda: NOW,
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    # The handlers ``webhook_routes`` registers (the e2e test goes through all of them).
    app.router.add_post("/webhooks/email/{provider}", webhooks._email(ctx))
    app.router.add_post(EVENTS, webhooks._mailgun_events(ctx))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Harness(client, publisher, metrics, nonces)
    await client.close()


# --- The signature ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "token"),
    [
        ("1700000000", "a" * 50),
        ("1529006854", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"),
    ],
)
def test_our_check_agrees_with_the_manuals_sample(timestamp: str, token: str) -> None:
    signed = signature(timestamp, token)
    assert mailgun_verify(KEY, token, timestamp, signed["signature"])
    nonce = email.verify_mailgun(KEY, signed, float(timestamp), MAILGUN_MAX_AGE_SECONDS)
    assert (nonce.provider, nonce.value) == ("mailgun", token)
    wrong = {**signed, "signature": signature(timestamp, token, "another-key")["signature"]}
    assert not mailgun_verify(KEY, token, timestamp, wrong["signature"])
    with pytest.raises(SignatureRejected):
        email.verify_mailgun(KEY, wrong, float(timestamp))


async def test_the_manuals_example_is_refused_under_our_key(hook: Harness) -> None:
    example = fixture("webhook")
    sig = example["signature"]
    assert not mailgun_verify(KEY, sig["token"], sig["timestamp"], sig["signature"])
    response = await hook.client.post(EVENTS, json=example)
    assert response.status == 403
    assert hook.publisher.batches == []
    assert hook.nonces.claimed == {}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"event-data": {"event": "delivered"}}, 401, "missing timestamp, token or signature"),
        (webhook(fixture("delivered"), signature="0" * 64), 403, "invalid signature"),
        (
            webhook(fixture("delivered"), **signature(str(int(NOW) - 86_400), "s" * 50)),
            403,
            "signature expired",
        ),
        (
            webhook(fixture("delivered"), **signature(str(int(NOW) + 3600), "f" * 50)),
            403,
            "timestamp in the future",
        ),
        (
            webhook(fixture("delivered"), **signature("1700000000", "t" * (NONCE_MAX + 1))),
            400,
            f"token longer than {NONCE_MAX} characters or not printable",
        ),
    ],
    ids=["missing", "bad", "stale", "future", "long-token"],
)
async def test_an_event_not_freshly_signed_is_refused_unread(
    hook: Harness, body: dict[str, Any], status: int, reason: str
) -> None:
    response = await hook.client.post(EVENTS, json=body)
    assert response.status == status
    assert (await response.json())["error"] == reason
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
    assert hook.nonces.claimed == {}


async def test_a_replayed_token_is_409(hook: Harness) -> None:
    body = webhook(ours(fixture("delivered")))
    assert (await hook.client.post(EVENTS, json=body)).status == 200
    replay = {**body, "event-data": ours(fixture("failed_permanent"))}
    response = await hook.client.post(EVENTS, json=replay)
    assert response.status == 409
    assert len(hook.publisher.statuses) == 1
    assert hook.count("mailgun", "replayed") == 1


async def test_a_route_token_cannot_be_replayed_as_an_event(hook: Harness) -> None:
    # One token cache for both: a token Mailgun signed once is used once.
    fields = {**fixture("route_forward"), **signature(str(int(NOW)), "r" * 50)}
    fields["attachment-count"] = "0"
    assert (await hook.client.post(ROUTE, data=fields)).status == 200
    event = {"signature": signature(str(int(NOW)), "r" * 50), "event-data": fixture("opened")}
    assert (await hook.client.post(EVENTS, json=event)).status == 409


async def test_not_json_is_415_and_malformed_json_400(hook: Harness) -> None:
    body = webhook(fixture("delivered"))
    response = await hook.client.post(EVENTS, data={"signature": json.dumps(body["signature"])})
    assert response.status == 415
    response = await hook.client.post(
        EVENTS, data=b'{"signature": ', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400


async def test_a_signed_event_that_cannot_be_read_is_set_aside(hook: Harness) -> None:
    signed = webhook({})["signature"]
    for body in ({"signature": signed}, {"signature": signed, "event-data": {"id": 1}}):
        body["signature"] = signature(str(int(NOW)), secrets.token_hex(25))
        response = await hook.client.post(EVENTS, json=body)
        reason = await hook.set_aside(response, "mailgun")
        assert reason.startswith("malformed Mailgun event webhook")


# --- Every documented event ------------------------------------------------------------


def test_the_status_map_is_total_over_the_documented_events() -> None:
    assert set(email.STATUS_MAP) == set(DOCUMENTED)


def test_every_event_fixture_has_an_expected_outcome() -> None:
    events = {p.stem for p in FIXTURES.glob("*.json")} - {
        "webhook",
        "route_forward",
        "route_store_notify",
    }
    assert events == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_documented_event_of_ours_maps_to_its_status(hook: Harness, name: str) -> None:
    data = fixture(name)
    provider_status, status = EXPECTED[name]
    response = await hook.client.post(EVENTS, json=webhook(ours(data)))
    assert response.status == 200
    assert hook.publisher.dead_letters == []
    if status is None:
        assert hook.publisher.batches == []
        assert hook.count("mailgun", "ignored") == 1
        return
    [event] = hook.publisher.statuses
    assert (event.status, event.provider_status) == (status, provider_status)
    assert event.channel is Channel.EMAIL
    assert event.domain == "acme"
    assert event.outbound_id == "out-0001"
    assert event.provider_message_id == data["message"]["headers"]["message-id"]
    assert [c.consent for c in consents(hook)] == ([CONSENTS[name]] if name in CONSENTS else [])


@pytest.mark.parametrize("name", sorted(n for n, (_, s) in EXPECTED.items() if s is not None))
async def test_events_of_mail_we_did_not_send_are_ignored(hook: Harness, name: str) -> None:
    # The samples as documented: no variables of ours, a sender we do not have.
    response = await hook.client.post(EVENTS, json=webhook(fixture(name)))
    assert response.status == 200
    assert hook.publisher.batches == []
    assert hook.count("mailgun", "ignored") == 1


async def test_a_failure_keeps_its_code_and_its_time(hook: Harness) -> None:
    data = ours(fixture("failed_permanent"))
    assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    [event] = hook.publisher.statuses
    assert event.error_code == "605"
    assert event.occurred_at == NOW  # the sample's 2018 is outside the plausible window
    data = ours(fixture("delivered") | {"timestamp": NOW - 30.5})
    assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    delivered = hook.publisher.statuses[1]
    assert (delivered.error_code, delivered.occurred_at) == (None, NOW - 30.5)


async def test_our_sender_alone_makes_an_event_ours(hook: Harness) -> None:
    data = fixture("delivered")
    data["message"]["headers"]["from"] = f"Acme Support <{OURS}>"
    assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    [event] = hook.publisher.statuses
    assert (event.domain, event.outbound_id) == ("acme", None)


async def test_an_event_of_ours_without_a_message_id_is_set_aside(hook: Harness) -> None:
    data = ours(fixture("opened"))
    del data["message"]
    response = await hook.client.post(EVENTS, json=webhook(data))
    assert await hook.set_aside(response, "mailgun") == "event without message.headers.message-id"


def test_a_delivery_status_changed_is_what_intake_reads() -> None:
    # The id is stable per message and provider status: repeated opens are one event.
    data = msgspec.json.encode(webhook(ours(fixture("opened"))))
    first = email.parse_mailgun_event(data, CHANNELS, NOW)
    again = email.parse_mailgun_event(data, CHANNELS, NOW + 60)
    assert isinstance(first[0], DeliveryStatusChanged)
    assert first[0].id == again[0].id


# --- Unsubscribes and complaints: the customer's consent --------------------------------


@pytest.mark.parametrize("name", sorted(CONSENTS))
async def test_an_unsubscribe_or_complaint_of_ours_opts_the_recipient_out(
    hook: Harness, name: str
) -> None:
    data = ours(fixture(name))
    assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    [status] = hook.publisher.statuses
    assert status.provider_status == name  # the status stays, besides the consent
    [report] = consents(hook)
    assert report == ConsentReported(
        id=inbound_event_id("acme", "email", f"{data['id']}/consent/opt_out"),
        domain="acme",
        occurred_at=NOW,  # the sample's 2013 is outside the plausible window
        channel=Channel.EMAIL,
        endpoint=OURS,  # the address the mail was sent from (our variables name it)
        customer_address=data["recipient"],
        customer_id=f"email:{data['recipient']}",
        consent=CONSENTS[name],
        provider_status=name,
    )
    assert len(hook.publisher.batches) == 1  # published together, in one request


@pytest.mark.parametrize("name", sorted(CONSENTS))
async def test_a_redelivered_report_is_the_same_report(hook: Harness, name: str) -> None:
    # Mailgun re-signs a retry with a fresh token; the event's id stays.
    data = ours(fixture(name))
    for _ in range(2):
        assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    first, again = consents(hook)
    assert first == again


async def test_the_recipient_is_spelled_as_the_customers_own_mail_spells_them(
    hook: Harness,
) -> None:
    fields = {**fixture("route_forward"), **signature(str(int(NOW)), "m" * 50)}
    fields["from"] = "Ann Customer <Ann.Customer@Example.ORG>"
    fields["attachment-count"] = "0"
    assert (await hook.client.post(ROUTE, data=fields)).status == 200
    [message] = hook.publisher.messages
    data = ours(fixture("unsubscribed")) | {"recipient": " Ann.Customer@Example.ORG "}
    assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    [report] = consents(hook)
    assert (report.endpoint, report.customer_address, report.customer_id) == (
        message.endpoint,
        message.customer_address,
        message.customer_id,
    )
    assert report.customer_address == "ann.customer@example.org"


async def test_our_sender_alone_makes_a_complaint_ours(hook: Harness) -> None:
    # The documented complaint names its sender: once it is one of our addresses, the
    # report is ours even without our variables.
    data = fixture("complained")
    data["message"]["headers"]["from"] = f"Acme Support <{OURS.upper()}>"
    assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    [report] = consents(hook)
    assert (report.domain, report.endpoint, report.customer_address) == (
        "acme",
        OURS,
        "foo@example.com",
    )


async def test_an_unsubscribe_without_a_message_id_still_opts_out(hook: Harness) -> None:
    data = ours(fixture("unsubscribed"))
    del data["message"]
    assert (await hook.client.post(EVENTS, json=webhook(data))).status == 200
    assert hook.publisher.statuses == []
    assert hook.publisher.dead_letters == []
    [report] = consents(hook)
    assert report.customer_address == "recipient@example.com"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"recipient": None}, "recipient is not an email address"),
        ({"recipient": "not an address"}, "recipient is not an email address"),
        ({"recipient": "a\x00b@example.com"}, "customer address"),
        ({"id": None}, "unsubscribed event without an id"),
        ({"id": "x" * 600}, "report id"),
    ],
    ids=["no-recipient", "not-an-address", "control-character", "no-id", "long-id"],
)
async def test_an_unsubscribe_that_names_no_usable_customer_is_set_aside(
    hook: Harness, change: dict[str, Any], reason: str
) -> None:
    data = ours(fixture("unsubscribed")) | change
    response = await hook.client.post(EVENTS, json=webhook(data))
    assert (await hook.set_aside(response, "mailgun")).startswith(reason)
    assert hook.publisher.batches == []


# --- Route POSTs -----------------------------------------------------------------------


async def test_a_forwarded_message_keeps_its_attachment_references(hook: Harness) -> None:
    form = aiohttp.FormData()
    for name, value in {**fixture("route_forward"), **signature(str(int(NOW)), "q" * 50)}.items():
        form.add_field(name, value)
    form.add_field(
        "attachment-1", io.BytesIO(b"\x89PNG..."), filename="box.png", content_type="image/png"
    )
    response = await hook.client.post(ROUTE, data=form)
    assert response.status == 200
    [message] = hook.publisher.messages
    [photo] = message.attachments
    assert photo == Attachment(
        url="urn:switchboard:email:CAF=reply-7@mail.example.org:attachment-1",
        content_type="image/png",
        filename="box.png",
        size_bytes=7,
        media_id="ii_lp2x9k0b0",
    )
    assert message.in_reply_to == "out-0001@acme.example"
    assert message.conversation_key == f"email:{OURS}:CAF=first-1@mail.example.org"
    assert message.text == "The box was crushed, photo attached."


async def test_a_stored_message_keeps_mailguns_urls(hook: Harness) -> None:
    fields = {**fixture("route_store_notify"), **signature(str(int(NOW)), "w" * 50)}
    response = await hook.client.post(ROUTE, data=fields)
    assert response.status == 200
    [message] = hook.publisher.messages
    invoice, logo = message.attachments
    stored = json.loads(fields["attachments"])
    assert (invoice.url, invoice.filename, invoice.size_bytes) == (
        stored[0]["url"],
        "invoice.pdf",
        48213,
    )
    assert (invoice.content_type, invoice.media_id) == ("application/pdf", None)
    assert (logo.url, logo.media_id) == (stored[1]["url"], "logo@ann")
    assert message.in_reply_to == "out-0002@acme.example"


async def test_an_unreadable_content_id_map_loses_only_the_content_ids(hook: Harness) -> None:
    fields = {**fixture("route_store_notify"), **signature(str(int(NOW)), "z" * 50)}
    fields["content-id-map"] = "{not json"
    assert (await hook.client.post(ROUTE, data=fields)).status == 200
    [message] = hook.publisher.messages
    assert [a.media_id for a in message.attachments] == [None, None]


# --- Sending with attachments ----------------------------------------------------------


@pytest.fixture
async def mailgun() -> AsyncIterator[tuple[FakeMailgun, Egress, str]]:
    fake = FakeMailgun(api_key=ENVIRON["MAILGUN_API_KEY"])
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    channels = msgspec.structs.replace(
        CHANNELS,
        email=msgspec.structs.replace(
            CHANNELS.email,
            mailgun=msgspec.structs.replace(CHANNELS.email.mailgun, api_base_url=base),
        ),
    )

    async def no_wait(_seconds: float) -> None:
        return None

    async with aiohttp.ClientSession() as session:
        yield (
            fake,
            Egress(
                channels=channels,
                environ=ENVIRON,
                session=session,
                metrics=Metrics(),
                ledger=InMemorySentLedger(),
                retry=RetryPolicy(max_attempts=2, base_delay=0.01, jitter=0.0),
                sleep=no_wait,
            ),
            base,
        )
    await server.close()


def mail(**kw: Any) -> ReplyRequested:
    return ReplyRequested(
        id=kw.pop("id", "out-0001"),
        domain="acme",
        occurred_at=NOW,
        conversation_id="conv-1",
        agent_id="ann",
        channel=Channel.EMAIL,
        endpoint=OURS,
        customer_address="ann@example.org",
        subject="Re: Order 1234",
        in_reply_to="CAF=reply-7@mail.example.org",
        **kw,
    )


async def test_attachments_are_uploaded_with_the_threaded_message(
    mailgun: tuple[FakeMailgun, Egress, str],
) -> None:
    fake, egress, base = mailgun
    label = b"%PDF-1.7 label " + bytes(range(256))  # binary, CRLF and all
    fake.hosted["label.pdf"] = ("application/pdf", label)
    fake.hosted["photo"] = ("image/jpeg", b"\xff\xd8\xff\xe0 jpeg")
    result = await egress.send(
        mail(
            text="Your label and a photo.",
            attachments=(
                Attachment(url=f"{base}/files/label.pdf"),
                Attachment(url=f"{base}/files/photo", content_type="image/jpeg", filename="b.jpg"),
            ),
        )
    )
    assert result.outcome is SendOutcome.SENT
    assert result.provider_message_id == "out-0001@acme.example"
    [sent] = fake.sent
    assert sent.content_type == "multipart/form-data"
    assert sent.fields["text"] == ["Your label and a photo."]
    assert sent.fields["h:In-Reply-To"] == ["<CAF=reply-7@mail.example.org>"]
    assert sent.fields["h:Message-Id"] == ["<out-0001@acme.example>"]
    assert sent.fields["v:switchboard-outbound-id"] == ["out-0001"]
    assert sent.fields["v:switchboard-domain"] == ["acme"]
    assert [(f.field, f.filename, f.content_type, f.data) for f in sent.files] == [
        ("attachment", "label.pdf", "application/pdf", label),
        ("attachment", "b.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 jpeg"),
    ]


async def test_without_attachments_the_form_stays_url_encoded(
    mailgun: tuple[FakeMailgun, Egress, str],
) -> None:
    fake, egress, _ = mailgun
    shop = Location(latitude=48.8584, longitude=2.2945, name="Acme Paris")
    result = await egress.send(mail(text="Come by.", location=shop, quick_replies=("Yes",)))
    assert result.outcome is SendOutcome.SENT
    [sent] = fake.sent
    assert sent.content_type == "application/x-www-form-urlencoded"
    assert sent.fields["text"] == [
        "Come by.\n\nAcme Paris (48.8584, 2.2945) geo:48.8584,2.2945\n\n1. Yes"
    ]


async def test_an_attachment_alone_gets_a_body_naming_it(
    mailgun: tuple[FakeMailgun, Egress, str],
) -> None:
    fake, egress, base = mailgun
    fake.hosted["label.pdf"] = ("application/pdf", b"%PDF")
    result = await egress.send(mail(attachments=(Attachment(url=f"{base}/files/label.pdf"),)))
    assert result.outcome is SendOutcome.SENT
    assert fake.sent[0].fields["text"] == ["Attached: label.pdf"]


async def test_a_file_of_no_known_type_goes_as_bytes(
    mailgun: tuple[FakeMailgun, Egress, str],
) -> None:
    fake, egress, base = mailgun
    fake.hosted["backup"] = ("application/x-custom", b"\x00\x01")
    result = await egress.send(
        mail(text="x", attachments=(Attachment(url=f"{base}/files/backup"),))
    )
    assert result.outcome is SendOutcome.SENT
    [file] = fake.sent[0].files
    assert (file.filename, file.content_type, file.data) == (
        "backup",
        "application/octet-stream",
        b"\x00\x01",
    )


@pytest.mark.parametrize(
    ("attachment", "error", "requests"),
    [
        (Attachment(url="{base}/files/missing.pdf"), "attachment 1: HTTP 404", 0),
        (Attachment(url="file:///etc/passwd.txt"), "attachment 1: not an http(s) URL", 0),
        (
            Attachment(url="{base}/files/huge.pdf"),
            f"attachment 1: larger than the {email.ATTACHMENTS_MAX_BYTES} bytes allowed",
            0,
        ),
        (
            Attachment(url="https://x.example/a.pdf", size_bytes=email.ATTACHMENTS_MAX_BYTES + 1),
            "over Mailgun's",
            0,
        ),
        (
            Attachment(url="https://x.example/a", content_type="multipart/mixed"),
            "attachment 1: Mailgun does not send multipart/mixed",
            0,
        ),
    ],
    ids=["not-found", "scheme", "too-large-served", "too-large-declared", "multipart"],
)
async def test_attachments_that_cannot_be_sent_fail_the_send_before_mailgun(
    mailgun: tuple[FakeMailgun, Egress, str], attachment: Attachment, error: str, requests: int
) -> None:
    fake, egress, base = mailgun
    fake.hosted["huge.pdf"] = ("application/pdf", b"0" * (email.ATTACHMENTS_MAX_BYTES + 1))
    attachment = msgspec.structs.replace(attachment, url=attachment.url.format(base=base))
    result = await egress.send(mail(text="here", attachments=(attachment,)))
    assert result.outcome is SendOutcome.FAILED
    assert error in (result.error or "")
    assert len(fake.sent) == requests
    assert fake.refused == []


def test_a_multipart_body_survives_a_standard_parser() -> None:
    from email.parser import BytesParser
    from email.policy import HTTP

    from adapters.provider_api import FilePart, multipart_form_data

    content_type, body = multipart_form_data(
        [("text", "h\u00e9llo\r\n--not-a-boundary"), ('na"me', "x")],
        [FilePart("attachment", 'in"voice\r\n.pdf', "application/pdf", b"--\r\n%PDF")],
    )
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = list(message.iter_parts())
    assert [p.get_param("name", header="content-disposition") for p in parts] == [
        "text",
        "na%22me",
        "attachment",
    ]
    assert parts[0].get_payload(decode=True) == "h\u00e9llo\r\n--not-a-boundary".encode()
    assert parts[2].get_filename() == "in%22voice%0D%0A.pdf"
    assert parts[2].get_payload(decode=True) == b"--\r\n%PDF"
