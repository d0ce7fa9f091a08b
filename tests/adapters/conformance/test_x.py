"""X (Twitter) DMs against X's own documentation: CRC, webhook signatures, every documented
Account Activity payload shape, the OAuth 1.0a signer, DM sends and media uploads.

Sources (fixtures in ``tests/adapters/fixtures/x/`` are copied from them):
- CRC and signature: https://docs.x.com/x-api/webhooks/quickstart ("The CRC check",
  "Signature verification"; the Python examples there are the algorithms re-computed below).
- Payloads: https://docs.x.com/x-api/account-activity/introduction ("Payload examples":
  ``direct_message_events.json``, ``direct_message_indicate_typing_events.json``,
  ``direct_message_mark_read_events.json``, ``tweet_delete_events.json``,
  ``user_event.json``); the Message Create Object
  (https://developer.x.com/en/docs/direct-messages/sending-and-receiving/guides/message-create-object:
  ``direct_message_events_quick_reply.json``, its elided media object left out); the
  ``dm.sent`` example of https://docs.x.com/x-api/activity/event-payloads with the
  ``for_user_id`` the Account Activity API adds (``direct_message_events_sent.json``); the
  media object of the data dictionary (entities / extended entities: ``media_url_https``,
  ``type``, ``video_info.variants``) with the DM media URL of
  https://developer.x.com/en/docs/direct-messages/message-attachments/guides/retrieving-media
  (``direct_message_events_media.json``, ``direct_message_events_video.json``).
- OAuth 1.0a: https://docs.x.com/fundamentals/authentication/oauth-1-0a/creating-a-signature
  (today's page signs ``https://api.x.com/…``: ``Ls93hJiZbQ3akF3HF3x1Bz8/zU4=``; the same
  page on developer.twitter.com signed ``https://api.twitter.com/…``:
  ``hCtSmYh+iHYCEqBWrE7C7hYmtUk=``), …/authorizing-a-request (the whole header, whose
  signature ``tnnArxj06cWHq44gCs1OSKk/jLY=`` is that of the ``/1/`` URL of the original
  page), …/percent-encoding-parameters (the encoding table); oauthlib's signer is the
  reference implementation.
- Sending and media: https://docs.x.com/x-api/direct-messages/manage/integrate,
  https://docs.x.com/x-api/media/introduction, …/media/quickstart/best-practices, and X's
  OpenAPI document (``CreateDirectMessagesByParticipantIdRequest``, the media upload).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from oauthlib.oauth1 import Client  # type: ignore[import-untyped]  # oauthlib ships no types
from oauthlib.oauth1.rfc5849 import (  # type: ignore[import-untyped]
    signature as oauthlib_signature,
)
from oauthlib.oauth1.rfc5849 import utils as oauthlib_utils

from adapters import oauth1, x_dm
from adapters.base import inbound_event_id
from adapters.config import ChannelsConfig, SecretMissing
from adapters.egress import Egress, InMemorySentLedger, RetryPolicy, SendOutcome, build_request
from adapters.media import MediaRefused, MediaRule
from adapters.provider_api import EgressUnroutable, PrepareFailed
from adapters.webhooks import WebhookContext, refuse_encoded_bodies, webhook_routes
from runtime.metrics import Metrics
from schemas import (
    Attachment,
    Channel,
    DeliveryStatus,
    DeliveryStatusChanged,
    HumanReplied,
    Location,
    MessageReceived,
    ReplyRequested,
)
from tests.adapters.conftest import NOW, Harness, MemoryNonces, RecordingPublisher
from tests.fakes.x import FakeX

FIXTURES = Path(__file__).parent.parent / "fixtures" / "x"
CONSUMER_KEY = "xvz1evFS4wEEPTGEFPHBog"
CONSUMER_SECRET = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"
TOKEN = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"
TOKEN_SECRET = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"
OUR_APP = "13090192"
ACCOUNT = "4337869213"
"""The subscribed account of the documentation's examples."""
CUSTOMER = "3001969357"
ENVIRON = {
    "X_CONSUMER_KEY": CONSUMER_KEY,
    "X_CONSUMER_SECRET": CONSUMER_SECRET,
    "X_ACCESS_TOKEN": TOKEN,
    "X_ACCESS_TOKEN_SECRET": TOKEN_SECRET,
}
CHANNELS = msgspec.toml.decode(
    f"""
media_fetch_allow_private = true  # the fake X serves the files, on loopback

[x]
app_id = "{OUR_APP}"
accounts = [
  {{ user_id = "{ACCOUNT}", domain = "acme", queue = "social" }},
  {{ user_id = "1234858592", domain = "acme" }},
  {{ user_id = "1111111111111111111", domain = "globex" }},
]
""",
    type=ChannelsConfig,
)
WITHOUT_APP_ID = msgspec.structs.replace(
    CHANNELS, x=msgspec.structs.replace(CHANNELS.x, app_id=None)
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def documented_crc(consumer_secret: str, crc_token: str) -> str:
    """The docs' Python example of the CRC answer, as written there."""
    sha256_hash = hmac.new(
        consumer_secret.encode("utf-8"), crc_token.encode("utf-8"), hashlib.sha256
    ).digest()
    return "sha256=" + base64.b64encode(sha256_hash).decode("utf-8")


def documented_signature(payload: bytes, consumer_secret: str = CONSUMER_SECRET) -> str:
    """The docs' Python example of ``x-twitter-webhooks-signature``."""
    return "sha256=" + base64.b64encode(
        hmac.new(consumer_secret.encode("utf-8"), payload, hashlib.sha256).digest()
    ).decode("utf-8")


async def start(channels: ChannelsConfig = CHANNELS, environ: dict[str, str] = ENVIRON) -> Harness:
    publisher, metrics, nonces = RecordingPublisher(), Metrics(), MemoryNonces()
    ctx = WebhookContext(
        channels=channels,
        environ=environ,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        max_body_bytes=256 * 1024,
        clock=lambda: NOW,
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    app.add_routes(webhook_routes(ctx))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Harness(client, publisher, metrics, nonces)


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    harness = await start()
    yield harness
    await harness.client.close()


async def post(hook: Harness, body: bytes, signature: str | None = "sign") -> int:
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers[x_dm.SIGNATURE_HEADER] = documented_signature(body)
    elif signature is not None:
        headers[x_dm.SIGNATURE_HEADER] = signature
    async with hook.client.post("/webhooks/x", data=body, headers=headers) as response:
        return response.status


# --- CRC ---------------------------------------------------------------------------------


def test_the_crc_answer_is_the_documented_hmac() -> None:
    for token in ("challenge_string", "NjM3MzY3NTQ3NDU0MTY0ODk2", "a" * x_dm.CRC_TOKEN_MAX):
        assert x_dm.crc_response_token(CONSUMER_SECRET, token) == documented_crc(
            CONSUMER_SECRET, token
        )
    # Fixed vectors (computed once with the docs' example), so both cannot drift together.
    assert x_dm.crc_response_token(CONSUMER_SECRET, "challenge_string") == (
        "sha256=nlBfoc+sYi739ivT57rTKKl7OQM8PcJSNybJqfjoBUk="
    )


async def test_a_crc_request_is_answered_with_json(hook: Harness) -> None:
    async with hook.client.get("/webhooks/x", params={"crc_token": "challenge_string"}) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        assert await r.json() == {
            "response_token": documented_crc(CONSUMER_SECRET, "challenge_string")
        }
    assert hook.count("x", "accepted") == 1


async def test_a_crc_answer_made_with_another_secret_is_not_ours(hook: Harness) -> None:
    async with hook.client.get("/webhooks/x", params={"crc_token": "challenge_string"}) as r:
        answer = (await r.json())["response_token"]
    assert answer != documented_crc("another-consumer-secret", "challenge_string")
    assert answer == documented_crc(CONSUMER_SECRET, "challenge_string")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "crc_token missing"),
        ("crc_token=", "crc_token missing"),
        ("crc_token=a&crc_token=b", "more than once"),
        ("crc_token=" + "a" * (x_dm.CRC_TOKEN_MAX + 1), "longer than"),
        ("crc_token=ab%0Acd", "control character"),
    ],
)
async def test_crc_requests_without_one_usable_token_are_refused(
    hook: Harness, query: str, reason: str
) -> None:
    async with hook.client.get("/webhooks/x?" + query) as r:
        assert r.status == 400
        assert reason in (await r.json())["error"]
    assert hook.count("x", "bad_request") == 1


async def test_a_crc_without_the_consumer_secret_is_unavailable() -> None:
    harness = await start(environ={})
    try:
        async with harness.client.get("/webhooks/x", params={"crc_token": "t"}) as r:
            assert r.status == 503
    finally:
        await harness.client.close()


# --- signatures --------------------------------------------------------------------------


def test_the_body_signature_is_the_documented_hmac() -> None:
    body = fixture("direct_message_events.json")
    assert x_dm.body_signature(CONSUMER_SECRET, body) == documented_signature(body)
    assert documented_signature(body) == "sha256=vNj7i9V2WPc+jHMUKh+/Q3xGMnnoRlsVgZpkCGN5rJ0="
    x_dm.verify_signature(CONSUMER_SECRET, body, documented_signature(body))


async def test_a_signed_dm_is_published(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_events.json")) == 200
    [message] = hook.publisher.messages
    assert message.text == "Hello World!"


@pytest.mark.parametrize(
    ("signature", "status"),
    [
        (None, 401),
        ("", 401),
        ("sha256=", 403),
        ("sha1=" + base64.b64encode(b"x" * 20).decode(), 403),
        ("sha256=" + base64.b64encode(b"x" * 32).decode(), 403),
    ],
)
async def test_missing_and_bad_signatures_are_refused(
    hook: Harness, signature: str | None, status: int
) -> None:
    assert await post(hook, fixture("direct_message_events.json"), signature) == status
    assert hook.publisher.batches == []
    assert hook.signature_failures("x") == 1


async def test_a_signature_by_another_secret_or_of_another_body_is_refused(
    hook: Harness,
) -> None:
    body = fixture("direct_message_events.json")
    assert await post(hook, body, documented_signature(body, "another-secret")) == 403
    tampered = body.replace(b"Hello World!", b"Hello World?")
    assert await post(hook, tampered, documented_signature(body)) == 403
    assert hook.publisher.batches == []


async def test_the_signature_is_checked_before_the_body_is_read(hook: Harness) -> None:
    garbage = b'{"for_user_id": 4337869213, "direct_message_events": [{'
    assert await post(hook, garbage, "sha256=" + base64.b64encode(b"y" * 32).decode()) == 403
    assert hook.publisher.dead_letters == []
    # Signed, the same bytes are X's: set aside, not refused (X would redeliver them).
    signed = {x_dm.SIGNATURE_HEADER: documented_signature(garbage)}
    response = await hook.client.post("/webhooks/x", data=garbage, headers=signed)
    assert (await hook.set_aside(response, "x")).startswith("malformed X activity")


async def test_a_replay_is_accepted_as_the_same_event_x_signs_no_timestamp(
    hook: Harness,
) -> None:
    """Stale and replayed signatures cannot be told apart from X's own redelivery: X signs
    the body alone. The replay is accepted, and carries the same event id, which is what
    deduplicates it downstream."""
    body = fixture("direct_message_events.json")
    assert await post(hook, body) == 200
    assert await post(hook, body) == 200
    first, second = hook.publisher.messages
    assert first.id == second.id == inbound_event_id("acme", "x", "954491830116155396")
    assert hook.nonces.claimed == {}


# --- documented payloads -----------------------------------------------------------------


async def test_a_received_dm_becomes_a_customer_message(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_events.json")) == 200
    [message] = hook.publisher.events
    assert isinstance(message, MessageReceived)
    assert message.channel is Channel.X
    assert (message.domain, message.queue) == ("acme", "social")
    assert message.endpoint == ACCOUNT
    assert message.customer_address == CUSTOMER
    assert message.customer_id == f"x:{CUSTOMER}"
    assert message.conversation_key == f"x:{ACCOUNT}:{CUSTOMER}"
    assert message.provider_message_id == "954491830116155396"
    assert message.occurred_at == NOW  # 2018's created_timestamp is not believable today
    assert message.attachments == ()
    assert message.reply_window_ends_at is None


async def test_names_in_the_users_map_are_not_kept(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_events.json")) == 200
    encoded = msgspec.json.encode(hook.publisher.events)
    for name in (b"Jordan Brinks", b"furiouscamper", b"Harrison Test", b"Boulder"):
        assert name not in encoded


async def test_a_photo_dm_keeps_x_s_media_reference(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_events_media.json")) == 200
    [message] = hook.publisher.messages
    assert message.text == "Here is the receipt https://t.co/uPXpc6jW4L"
    assert message.attachments == (
        Attachment(
            url="https://ton.twitter.com/1.1/ton/data/dm/1034828552951160836/1034828533812486145/oP5p359h.jpg",
            content_type="image/jpeg",
            media_id="1034828533812486145",
        ),
    )


async def test_a_video_dm_points_at_its_best_mp4(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_events_video.json")) == 200
    [message] = hook.publisher.messages
    [video] = message.attachments
    assert video.url.endswith("/vid/1280x720/Qb8XbMgIZ9x6RkR1.mp4")
    assert (video.content_type, video.media_id) == ("video/mp4", "1034830093950406656")


async def test_a_quick_reply_tap_arrives_as_its_label(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_events_quick_reply.json")) == 200
    [message] = hook.publisher.messages
    assert (message.text, message.customer_address) == ("Blue Bird", "3805104374")
    assert b"external_id_2" not in msgspec.json.encode(message)


async def test_a_read_mark_reports_the_last_read_dm_as_read(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_mark_read_events.json")) == 200
    [status] = hook.publisher.events
    assert isinstance(status, DeliveryStatusChanged)
    assert status.status is DeliveryStatus.READ
    assert status.provider_status == "read"
    assert status.provider_message_id == "963085315333238788"
    assert (status.channel, status.domain) == (Channel.X, "acme")
    assert status.id == inbound_event_id("acme", "x", "963085315333238788/status/read")


async def test_our_own_read_marks_are_dropped(hook: Harness) -> None:
    body = fixture("direct_message_mark_read_events.json").replace(b'"199566737"', b'"4337869213"')
    assert await post(hook, body) == 200
    assert hook.publisher.events == []


@pytest.mark.parametrize(
    "name",
    ["direct_message_indicate_typing_events.json", "tweet_delete_events.json", "user_event.json"],
)
async def test_activities_that_carry_no_dm_are_answered_and_dropped(
    hook: Harness, name: str
) -> None:
    assert await post(hook, fixture(name)) == 200
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
    assert hook.count("x", "ignored") == 1


# --- DMs our account sent ----------------------------------------------------------------


async def test_a_dm_a_person_sent_from_the_x_app_is_a_human_reply(hook: Harness) -> None:
    assert await post(hook, fixture("direct_message_events_sent.json")) == 200
    [replied] = hook.publisher.events
    assert isinstance(replied, HumanReplied)
    assert replied.domain == "globex"
    assert replied.customer_address == "2244994945"
    assert replied.customer_id == "x:2244994945"
    assert replied.conversation_key == "x:1111111111111111111:2244994945"
    assert replied.provider_message_id == "2080763914820927863"
    assert replied.id == inbound_event_id("globex", "x", "2080763914820927863/echo")


async def test_echoes_of_our_own_sends_are_dropped(hook: Harness) -> None:
    ours = fixture("direct_message_events_sent.json").replace(
        b'"sender_id": "1111111111111111111",',
        b'"sender_id": "1111111111111111111", "source_app_id": "13090192",',
    )
    assert await post(hook, ours) == 200
    assert hook.publisher.events == []
    other_app = ours.replace(b'"source_app_id": "13090192"', b'"source_app_id": "268278"')
    assert await post(hook, other_app) == 200
    assert [type(e) for e in hook.publisher.events] == [HumanReplied]


async def test_without_our_app_id_every_dm_we_sent_is_dropped() -> None:
    harness = await start(WITHOUT_APP_ID)
    try:
        assert await post(harness, fixture("direct_message_events_sent.json")) == 200
        assert harness.publisher.events == []
    finally:
        await harness.client.close()


# --- unusable data -----------------------------------------------------------------------


async def test_dms_of_an_account_not_configured_are_set_aside(hook: Harness) -> None:
    body = fixture("direct_message_events.json").replace(
        b'"for_user_id": "4337869213"', b'"for_user_id": "999"'
    )
    assert await post(hook, body) == 200
    [letter] = hook.publisher.dead_letters
    assert "not configured" in letter.reason
    assert letter.body == body


async def test_dms_without_for_user_id_are_set_aside(hook: Harness) -> None:
    body = fixture("direct_message_events.json").replace(b'"for_user_id": "4337869213",', b"")
    reason = await hook.set_aside(
        await hook.client.post(
            "/webhooks/x", data=body, headers={x_dm.SIGNATURE_HEADER: documented_signature(body)}
        ),
        "x",
    )
    assert "for_user_id missing" in reason


async def test_one_unreadable_dm_is_set_aside_and_the_others_go_on(hook: Harness) -> None:
    activity = msgspec.json.decode(fixture("direct_message_events.json"))
    good = activity["direct_message_events"][0]
    bad_id = {**good, "id": "9" * 600}
    bad_sender = {
        **good,
        "id": "2",
        "message_create": {**good["message_create"], "sender_id": "30019\u000069357"},
    }
    not_an_object = 42
    activity["direct_message_events"] = [bad_id, good, bad_sender, not_an_object]
    body = msgspec.json.encode(activity)
    assert await post(hook, body) == 200
    assert [m.provider_message_id for m in hook.publisher.messages] == ["954491830116155396"]
    # One dead letter for the request (each would hold the whole body), naming each item.
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("3 items set aside: ")
    reasons = letter.reason.removeprefix("3 items set aside: ").split("; ")
    assert reasons[0].startswith("direct_message_events[0]: provider message id")
    assert reasons[1].startswith("direct_message_events[2]: ")
    assert reasons[2].startswith("direct_message_events[3]: malformed DM event")
    assert "3001969357" not in letter.reason


async def test_hostile_text_is_cleaned_and_bounded(hook: Harness) -> None:
    activity = msgspec.json.decode(fixture("direct_message_events.json"))
    activity["direct_message_events"][0]["message_create"]["message_data"]["text"] = (
        "a\u0000b" + "x" * 20_000
    )
    assert await post(hook, msgspec.json.encode(activity)) == 200
    [message] = hook.publisher.messages
    assert message.text.startswith("ab")
    assert len(message.text) == 10_000


# --- statuses and media limits -----------------------------------------------------------


def test_the_status_map_covers_every_documented_status() -> None:
    assert set(x_dm.STATUS_MAP) == set(x_dm.DOCUMENTED_STATUSES)
    assert x_dm.STATUS_MAP["read"] is DeliveryStatus.READ


@pytest.mark.parametrize(
    ("attachments", "reason"),
    [
        (
            [Attachment(url="https://h/a.png"), Attachment(url="https://h/b.png")],
            "at most 1",
        ),
        ([Attachment(url="https://h/a.png", size_bytes=5 * 1024 * 1024 + 1)], "over X's"),
        ([Attachment(url="https://h/a.gif", size_bytes=15 * 1024 * 1024 + 1)], "over X's"),
        ([Attachment(url="https://h/a.mp4", size_bytes=512 * 1024 * 1024 + 1)], "over X's"),
        ([Attachment(url="https://h/a.pdf")], "does not send application/pdf"),
        ([Attachment(url="https://h/a.mp3")], "does not send audio/mpeg"),
    ],
)
def test_replies_breaking_x_s_media_limits_are_refused_before_sending(
    attachments: list[Attachment], reason: str
) -> None:
    with pytest.raises(MediaRefused, match=reason):
        x_dm.x_request(reply(attachments=tuple(attachments)), CHANNELS, ENVIRON)


def test_documented_sizes_pass() -> None:
    for url, size in (
        ("https://h/a.jpg", 5 * 1024 * 1024),
        ("https://h/a.gif", 15 * 1024 * 1024),
        ("https://h/a.mp4", 512 * 1024 * 1024),
        ("https://h/a.mov", 1),
        ("https://h/a.webp", 1),
    ):
        request = x_dm.x_request(
            reply(attachments=(Attachment(url=url, size_bytes=size),)), CHANNELS, ENVIRON
        )
        assert request.prepare is not None


# --- OAuth 1.0a ----------------------------------------------------------------------------

DOC_NONCE = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"
DOC_TIMESTAMP = 1318622958
DOC_STATUS = [("status", "Hello Ladies + Gentlemen, a signed OAuth request!")]
DOC_CREDENTIALS = oauth1.OAuthCredentials(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET)


def doc_params() -> list[tuple[str, str]]:
    return [
        *DOC_STATUS,
        ("oauth_consumer_key", CONSUMER_KEY),
        ("oauth_nonce", DOC_NONCE),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", str(DOC_TIMESTAMP)),
        ("oauth_token", TOKEN),
        ("oauth_version", "1.0"),
    ]


def test_the_documented_signature_base_string() -> None:
    url = "https://api.x.com/1.1/statuses/update.json?include_entities=true"
    assert oauth1.signature_base_string("POST", url, doc_params()) == (
        "POST&https%3A%2F%2Fapi.x.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue"
        "%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY"
        "3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622"
        "958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version"
        "%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520"
        "OAuth%2520request%2521"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # docs.x.com, "Creating a signature" (today)
        ("https://api.x.com/1.1/statuses/update.json", "Ls93hJiZbQ3akF3HF3x1Bz8/zU4="),
        # developer.twitter.com, the same page before the rename
        ("https://api.twitter.com/1.1/statuses/update.json", "hCtSmYh+iHYCEqBWrE7C7hYmtUk="),
        # the original page's /1/ URL, whose signature "Authorizing a request" shows
        ("https://api.twitter.com/1/statuses/update.json", "tnnArxj06cWHq44gCs1OSKk/jLY="),
    ],
)
def test_the_documented_signatures(url: str, expected: str) -> None:
    signed = oauth1.oauth_signature(
        "POST", url + "?include_entities=true", doc_params(), CONSUMER_SECRET, TOKEN_SECRET
    )
    assert signed == expected
    # The page's intermediate value: the HMAC bytes before base64.
    if "api.x.com" in url:
        assert base64.b64decode(signed).hex(" ").upper() == (
            "2E CF 77 84 98 99 6D 0D DA 90 5D C7 17 7C 75 07 3F 3F CD 4E"
        )


def test_the_documented_authorization_header() -> None:
    header = oauth1.authorization_header(
        "POST",
        "https://api.twitter.com/1/statuses/update.json?include_entities=true",
        DOC_CREDENTIALS,
        form=DOC_STATUS,
        nonce=DOC_NONCE,
        timestamp=DOC_TIMESTAMP,
    )
    assert header == (
        'OAuth oauth_consumer_key="xvz1evFS4wEEPTGEFPHBog", '
        'oauth_nonce="kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg", '
        'oauth_signature="tnnArxj06cWHq44gCs1OSKk%2FjLY%3D", '
        'oauth_signature_method="HMAC-SHA1", oauth_timestamp="1318622958", '
        'oauth_token="370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb", '
        'oauth_version="1.0"'
    )


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("Ladies + Gentlemen", "Ladies%20%2B%20Gentlemen"),
        ("An encoded string!", "An%20encoded%20string%21"),
        ("Dogs, Cats & Mice", "Dogs%2C%20Cats%20%26%20Mice"),
        ("☃", "%E2%98%83"),
        ("-._~", "-._~"),
    ],
)
def test_the_documented_percent_encoding(raw: str, encoded: str) -> None:
    assert oauth1.percent_encode(raw) == encoded


def test_the_base_string_uri_follows_rfc_5849() -> None:
    assert oauth1.base_string_uri("HTTPS://API.X.com:443/2/x?a=1#f") == "https://api.x.com/2/x"
    assert oauth1.base_string_uri("http://127.0.0.1:8080/2/x") == "http://127.0.0.1:8080/2/x"
    assert oauth1.base_string_uri("http://h:80") == "http://h/"


def oauthlib_header(
    method: str, url: str, form: list[tuple[str, str]], nonce: str, timestamp: int
) -> dict[str, str]:
    """oauthlib's Authorization header of the same request, as a dict of its values."""
    client = Client(
        CONSUMER_KEY,
        client_secret=CONSUMER_SECRET,
        resource_owner_key=TOKEN,
        resource_owner_secret=TOKEN_SECRET,
        nonce=nonce,
        timestamp=str(timestamp),
    )
    body = urllib.parse.urlencode(form) if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    _, signed, _ = client.sign(url, http_method=method, body=body, headers=headers)
    return dict(oauthlib_utils.parse_authorization_header(signed["Authorization"]))


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=200)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=st.lists(st.text("abcXYZ019-._~", min_size=1, max_size=8), max_size=4),
    query=st.lists(st.tuples(TEXT.filter(bool), TEXT), max_size=4),
    form=st.lists(st.tuples(TEXT.filter(bool), TEXT), max_size=4),
    nonce=st.text("abcdefABCDEF0123456789", min_size=8, max_size=32),
    timestamp=st.integers(0, 2**31),
)
def test_our_signer_agrees_with_oauthlib(
    method: str,
    path: list[str],
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    nonce: str,
    timestamp: int,
) -> None:
    form = form if method == "POST" else []  # a body is signed on POST only (oauthlib)
    url = "https://api.x.com/" + "/".join(path)
    if query:
        url += "?" + urllib.parse.urlencode(query)
    ours = oauth1.authorization_header(
        method, url, DOC_CREDENTIALS, form=form, nonce=nonce, timestamp=timestamp
    )
    theirs = oauthlib_header(method, url, form, nonce, timestamp)
    assert dict(oauthlib_utils.parse_authorization_header(ours)) == theirs


def test_credentials_are_never_printed() -> None:
    assert CONSUMER_SECRET not in repr(DOC_CREDENTIALS)
    assert TOKEN_SECRET not in str(DOC_CREDENTIALS)


# --- sending -------------------------------------------------------------------------------


def reply(**kw: Any) -> ReplyRequested:
    return ReplyRequested(
        id=kw.pop("id", "out-0001"),
        domain="acme",
        occurred_at=NOW,
        conversation_id="conv-1",
        agent_id="ann",
        channel=Channel.X,
        endpoint=kw.pop("endpoint", ACCOUNT),
        customer_address=kw.pop("customer_address", CUSTOMER),
        text=kw.pop("text", "Your parcel ships today."),
        **kw,
    )


def verify_with_oauthlib(method: str, url: str, header: str) -> bool:
    """X's check of a request's signature, done with oauthlib's server-side functions."""
    params = signature_params(url, header)
    base = oauthlib_signature.signature_base_string(
        method,
        oauthlib_signature.base_string_uri(url),
        oauthlib_signature.normalize_parameters(params),
    )
    client = Client(CONSUMER_KEY, client_secret=CONSUMER_SECRET, resource_owner_secret=TOKEN_SECRET)
    expected = oauthlib_signature.sign_hmac_sha1_with_client(base, client)
    given = oauthlib_utils.unescape(
        dict(oauthlib_utils.parse_authorization_header(header))["oauth_signature"]
    )
    return bool(oauthlib_signature.safe_string_equals(expected, given))


def signature_params(url: str, header: str) -> list[tuple[str, str]]:
    collected: list[tuple[str, str]] = oauthlib_signature.collect_parameters(
        uri_query=urllib.parse.urlsplit(url).query, headers={"Authorization": header}
    )
    return collected


def test_a_text_reply_is_a_signed_v2_dm() -> None:
    request = x_dm.x_request(reply(), CHANNELS, ENVIRON)
    assert request.provider == "x"
    assert request.method == "POST"
    assert request.url == f"https://api.x.com/2/dm_conversations/with/{CUSTOMER}/messages"
    assert request.json == {"text": "Your parcel ships today."}
    assert request.prepare is None
    assert verify_with_oauthlib("POST", request.url, request.headers["Authorization"])
    header = dict(oauthlib_utils.parse_authorization_header(request.headers["Authorization"]))
    assert (header["oauth_consumer_key"], header["oauth_token"]) == (CONSUMER_KEY, TOKEN)
    assert request.message_id({"data": {"dm_conversation_id": "1-2", "dm_event_id": "42"}}) == "42"
    assert request.message_id({"errors": []}) is None


def test_egress_routes_x_replies_here() -> None:
    request = build_request(reply(), CHANNELS, ENVIRON)
    assert request.provider == "x"
    with pytest.raises(EgressUnroutable):
        build_request(reply(endpoint="5"), CHANNELS, ENVIRON)


def test_quick_replies_become_numbered_text() -> None:
    request = x_dm.x_request(
        msgspec.structs.replace(reply(text="Which day?"), quick_replies=("Monday", "Tuesday")),
        CHANNELS,
        ENVIRON,
    )
    assert request.json == {"text": "Which day?\n\n1. Monday\n2. Tuesday"}


def test_a_location_cannot_be_sent() -> None:
    with pytest.raises(MediaRefused, match="cannot carry a location"):
        x_dm.x_request(reply(location=Location(latitude=1.0, longitude=2.0)), CHANNELS, ENVIRON)


@pytest.mark.parametrize(
    "variable",
    ["X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"],
)
def test_each_missing_secret_is_named(variable: str) -> None:
    environ = {k: v for k, v in ENVIRON.items() if k != variable}
    with pytest.raises(SecretMissing, match=variable):
        x_dm.x_request(reply(), CHANNELS, environ)


def test_the_participant_cannot_leave_the_path() -> None:
    request = x_dm.x_request(reply(customer_address="../../2/users/me"), CHANNELS, ENVIRON)
    assert request.url.endswith("/with/..%2F..%2F2%2Fusers%2Fme/messages")


# --- sending through a fake X API --------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"v" * (x_dm.SEGMENT_BYTES + 1000)


@pytest.fixture
async def fake_x() -> AsyncIterator[tuple[FakeX, str]]:
    fake = FakeX(CONSUMER_KEY, CONSUMER_SECRET, {TOKEN: TOKEN_SECRET})
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def on(base: str) -> ChannelsConfig:
    return msgspec.structs.replace(
        CHANNELS, x=msgspec.structs.replace(CHANNELS.x, api_base_url=base)
    )


async def no_wait(_seconds: float) -> None:
    return None


async def send(base: str, message: ReplyRequested) -> Any:
    async with aiohttp.ClientSession() as session:
        egress = Egress(
            channels=on(base),
            environ=ENVIRON,
            session=session,
            metrics=Metrics(),
            ledger=InMemorySentLedger(),
            retry=RetryPolicy(max_attempts=2, base_delay=0.0, jitter=0.0),
            sleep=no_wait,
        )
        return await egress.send(message)


async def test_a_text_dm_is_accepted_by_the_fake_x(fake_x: tuple[FakeX, str]) -> None:
    fake, base = fake_x
    result = await send(base, reply())
    assert result.outcome is SendOutcome.SENT, result
    [sent] = fake.sent
    assert (sent.participant_id, sent.body, sent.token) == (
        CUSTOMER,
        {"text": "Your parcel ships today."},
        TOKEN,
    )
    assert result.provider_message_id == sent.dm_event_id


async def test_a_wrong_secret_is_refused_by_the_fake_x(fake_x: tuple[FakeX, str]) -> None:
    fake, base = fake_x
    async with aiohttp.ClientSession() as session:
        egress = Egress(
            channels=on(base),
            environ={**ENVIRON, "X_ACCESS_TOKEN_SECRET": "not-the-secret"},
            session=session,
            metrics=Metrics(),
            ledger=InMemorySentLedger(),
        )
        result = await egress.send(reply())
    assert result.outcome is SendOutcome.FAILED
    assert result.status_code == 401
    assert fake.sent == []
    assert fake.refused == [
        (f"/2/dm_conversations/with/{CUSTOMER}/messages", 401, "signature does not match")
    ]


async def test_an_image_is_uploaded_then_attached(fake_x: tuple[FakeX, str]) -> None:
    fake, base = fake_x
    fake.files["receipt.png"] = (PNG, "image/png")
    attachment = Attachment(url=f"{base}/files/receipt.png", content_type="image/png")
    result = await send(base, reply(text="", attachments=(attachment,)))
    assert result.outcome is SendOutcome.SENT, result
    [upload] = fake.uploads.values()
    assert (upload.media_type, upload.media_category, upload.content) == (
        "image/png",
        "dm_image",
        PNG,
    )
    [sent] = fake.sent
    assert sent.body == {"attachments": [{"media_id": upload.media_id}]}
    assert fake.calls == [
        "POST /2/media/upload/initialize",
        f"POST /2/media/upload/{upload.media_id}/append",
        f"POST /2/media/upload/{upload.media_id}/finalize",
        f"POST /2/dm_conversations/with/{CUSTOMER}/messages",
    ]
    assert len(set(fake.nonces)) == len(fake.nonces)


async def test_a_caption_is_the_text_of_an_attachment_without_text(
    fake_x: tuple[FakeX, str],
) -> None:
    fake, base = fake_x
    fake.files["receipt.png"] = (PNG, "image/png")
    attachment = Attachment(url=f"{base}/files/receipt.png", caption="Your receipt")
    assert (await send(base, reply(text="", attachments=(attachment,)))).outcome is SendOutcome.SENT
    [sent] = fake.sent
    assert sent.body["text"] == "Your receipt"


async def test_a_video_is_uploaded_in_segments_and_waited_for(
    fake_x: tuple[FakeX, str],
) -> None:
    fake, base = fake_x
    fake.processing_checks = 2
    fake.files["clip.mp4"] = (VIDEO, "video/mp4")
    attachment = Attachment(url=f"{base}/files/clip.mp4")
    result = await send(base, reply(attachments=(attachment,)))
    assert result.outcome is SendOutcome.SENT, result
    [upload] = fake.uploads.values()
    assert (upload.media_category, sorted(upload.segments), upload.content) == (
        "dm_video",
        [0, 1],
        VIDEO,
    )
    assert upload.status_checks == 3
    [sent] = fake.sent
    assert sent.body == {
        "text": "Your parcel ships today.",
        "attachments": [{"media_id": upload.media_id}],
    }


async def test_an_attachment_over_its_limit_is_not_uploaded(fake_x: tuple[FakeX, str]) -> None:
    fake, base = fake_x
    fake.files["big.png"] = (b"p" * (5 * 1024 * 1024 + 1), "image/png")
    result = await send(base, reply(attachments=(Attachment(url=f"{base}/files/big.png"),)))
    assert result.outcome is SendOutcome.FAILED
    assert result.error == f"attachment 1: larger than the {5 * 1024 * 1024} bytes allowed"
    assert fake.calls == []


async def test_an_attachment_that_cannot_be_fetched_fails_without_quoting_its_url(
    fake_x: tuple[FakeX, str],
) -> None:
    fake, base = fake_x
    url = f"{base}/files/missing.png?token=s3cr3t"
    result = await send(base, reply(attachments=(Attachment(url=url),)))
    assert result.outcome is SendOutcome.FAILED
    assert result.error == "attachment 1: HTTP 404"
    assert fake.calls == []


def image_rule() -> MediaRule:
    rule = x_dm.MEDIA_LIMITS.rule_for("image/png")
    assert rule is not None
    return rule


async def test_x_refusing_an_upload_fails_the_send_with_x_s_words(
    fake_x: tuple[FakeX, str],
) -> None:
    fake, base = fake_x
    fake.files["receipt.png"] = (PNG, "image/png")
    upload = x_dm.MediaUpload(
        base_url=base,
        credentials=oauth1.OAuthCredentials(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, "not-it"),
        attachment=Attachment(url=f"{base}/files/receipt.png"),
        allow_private=True,
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrepareFailed) as failed:
            await upload.run(session, image_rule())
    assert failed.value.reason == (
        "X media upload (initialize) answered HTTP 401: signature does not match"
    )
    assert failed.value.retryable is False
    assert fake.calls == ["POST /2/media/upload/initialize"]


async def test_x_unavailable_during_an_upload_is_retryable() -> None:
    async def unavailable(_request: web.Request) -> web.Response:
        return web.json_response({"title": "Service Unavailable"}, status=503)

    async def file(_request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_post("/2/media/upload/initialize", unavailable)
    app.router.add_get("/files/a.png", file)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        upload = x_dm.MediaUpload(
            base_url=base,
            credentials=DOC_CREDENTIALS,
            attachment=Attachment(url=f"{base}/files/a.png"),
            allow_private=True,
        )
        async with aiohttp.ClientSession() as session:
            with pytest.raises(PrepareFailed) as failed:
                await upload.run(session, image_rule())
        assert failed.value.retryable is True
        assert (
            failed.value.reason
            == "X media upload (initialize) answered HTTP 503: Service Unavailable"
        )
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("checks", "outcome", "check_after", "reason"),
    [
        (1, "failed", 0, "X could not process the attachment"),
        (10**6, "succeeded", 60, "X did not finish processing the attachment in time"),
        (10**6, "succeeded", 0, "X did not finish processing the attachment in time"),
    ],
)
async def test_processing_that_fails_or_never_ends_fails_the_send(
    fake_x: tuple[FakeX, str], checks: int, outcome: str, check_after: int, reason: str
) -> None:
    fake, base = fake_x
    fake.processing_checks, fake.processing_outcome = checks, outcome
    fake.check_after_secs = check_after
    fake.files["clip.mp4"] = (b"mp4" * 100, "video/mp4")
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    upload = x_dm.MediaUpload(
        base_url=base,
        credentials=DOC_CREDENTIALS,
        attachment=Attachment(url=f"{base}/files/clip.mp4"),
        allow_private=True,
        sleep=wait,
    )
    rule = x_dm.MEDIA_LIMITS.rule_for("video/mp4")
    assert rule is not None
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrepareFailed, match=reason) as failed:
            await upload.run(session, rule)
    assert failed.value.retryable is False
    assert sum(waits) <= x_dm.PROCESSING_MAX_SECONDS
    assert all(w <= x_dm.PROCESSING_CHECK_MAX_SECONDS for w in waits)
    assert len(waits) <= x_dm.PROCESSING_CHECKS_MAX


# --- configuration and edge cases --------------------------------------------------------


@pytest.mark.parametrize(
    "toml",
    [
        '[x]\naccounts = [{ user_id = "@acme", domain = "acme" }]',
        '[x]\naccounts = [{ user_id = "12345678901234567890", domain = "acme" }]',
        '[x]\napp_id = "my-app"',
        '[x]\naccounts = [{ user_id = "1", domain = "a" }, { user_id = "1", domain = "b" }]',
    ],
)
def test_x_configuration_mistakes_are_refused(toml: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(toml, type=ChannelsConfig)


async def test_a_dm_to_itself_has_no_customer(hook: Harness) -> None:
    body = fixture("direct_message_events.json").replace(b'"3001969357"', b'"4337869213"')
    assert await post(hook, body) == 200
    assert hook.publisher.events == []
    assert hook.publisher.dead_letters == []


async def test_typing_of_an_account_not_configured_is_still_only_dropped(hook: Harness) -> None:
    body = fixture("direct_message_indicate_typing_events.json").replace(
        b'"for_user_id": "4337869213"', b'"for_user_id": "999"'
    )
    assert await post(hook, body) == 200
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
