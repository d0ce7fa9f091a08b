"""Egress against fake provider APIs on 127.0.0.1: request shapes, retries, idempotency."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from adapters.config import ChannelsConfig
from adapters.egress import (
    Egress,
    InMemorySentLedger,
    RetryPolicy,
    SendOutcome,
    parse_retry_after,
)
from adapters.provider_api import split_text
from runtime.metrics import Metrics
from schemas import Attachment, Channel, Location, ReplyRequested
from tests.adapters.conftest import CHANNELS, ENVIRON
from tests.fakes.twilio import FakeTwilio
from tools.bench.providers import FakeProviders


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]
    json: Any


@dataclass
class FakeProvider:
    """Answers from a script (status, JSON body, headers), then 200 with ``ok_body``."""

    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    ok_body: Any = None
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        form: dict[str, list[str]] = {}
        data: Any = None
        if request.content_type == "application/x-www-form-urlencoded":
            for k, v in (await request.post()).items():
                form.setdefault(k, []).append(str(v))
        elif raw:
            data = msgspec.json.decode(raw)
        self.seen.append(Seen(request.path, dict(request.headers), form, data))
        if self.script:
            status, body, headers = self.script.pop(0)
            return web.json_response(body, status=status, headers=headers)
        return web.json_response(self.ok_body)


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    app = web.Application()
    app.router.add_post("/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def pointed_at(base: str) -> ChannelsConfig:
    """The test channels with every provider API base URL on the fake server."""
    return msgspec.structs.replace(
        CHANNELS,
        twilio=msgspec.structs.replace(CHANNELS.twilio, api_base_url=base),
        meta=msgspec.structs.replace(
            CHANNELS.meta, graph_api_base_url=base, instagram_api_base_url=base
        ),
        telegram=msgspec.structs.replace(CHANNELS.telegram, api_base_url=base),
        email=msgspec.structs.replace(
            CHANNELS.email,
            mailgun=msgspec.structs.replace(CHANNELS.email.mailgun, api_base_url=base),
        ),
    )


@dataclass
class Rig:
    egress: Egress
    ledger: InMemorySentLedger
    metrics: Metrics
    sleeps: list[float]


@pytest.fixture
async def rig(provider: tuple[FakeProvider, str]) -> AsyncIterator[Rig]:
    _, base = provider
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    metrics, ledger = Metrics(), InMemorySentLedger()
    async with aiohttp.ClientSession() as session:
        egress = Egress(
            channels=pointed_at(base),
            environ=ENVIRON,
            session=session,
            metrics=metrics,
            ledger=ledger,
            retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=2.0, jitter=0.0),
            sleep=sleep,
        )
        yield Rig(egress, ledger, metrics, sleeps)


def reply(channel: Channel, endpoint: str, customer: str, **kw: Any) -> ReplyRequested:
    return ReplyRequested(
        id=kw.pop("id", "out-0001"),
        domain="acme",
        occurred_at=1_700_000_000.0,
        conversation_id="conv-1",
        agent_id=kw.pop("agent_id", "ann"),
        channel=channel,
        endpoint=endpoint,
        customer_address=customer,
        text=kw.pop("text", "Your parcel ships today."),
        **kw,
    )


SMS = reply(Channel.SMS, "+14155550100", "+14155552671")


async def test_twilio_sms_shape_and_auth(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.ok_body = {"sid": "SM0123456789abcdef", "status": "queued"}
    sms = reply(
        Channel.SMS,
        "+14155550100",
        "+14155552671",
        attachments=(Attachment(url="https://cdn.example.com/label.pdf"),),
    )
    result = await rig.egress.send(sms)
    assert result.outcome is SendOutcome.SENT
    assert (result.provider_message_id, result.attempts, result.status_code) == (
        "SM0123456789abcdef",
        1,
        200,
    )
    [req] = fake.seen
    assert req.path == "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json"
    assert req.form == {
        "From": ["+14155550100"],
        "To": ["+14155552671"],
        "Body": ["Your parcel ships today."],
        "MediaUrl": ["https://cdn.example.com/label.pdf"],
    }
    # Twilio takes no idempotency key for a message: none is sent as if it did.
    assert not any("idempotency" in name.lower() for name in req.headers)
    user, _, token = (
        base64.b64decode(req.headers["Authorization"].split()[1]).decode().partition(":")
    )
    assert (user, token) == ("AC00000000000000000000000000000001", ENVIRON["TWILIO_AUTH_TOKEN"])


async def test_whatsapp_cloud_api_shape(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.ok_body = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3"}],
    }
    result = await rig.egress.send(reply(Channel.WHATSAPP, "106540352242922", "+16505551234"))
    assert result.provider_message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3"
    [req] = fake.seen
    assert req.path == "/v23.0/106540352242922/messages"
    assert req.headers["Authorization"] == "Bearer " + ENVIRON["WHATSAPP_ACCESS_TOKEN"]
    assert req.json["messaging_product"] == "whatsapp"
    assert req.json["to"] == "16505551234"
    assert req.json["type"] == "text"
    assert req.json["text"]["body"] == "Your parcel ships today."


async def test_twilio_whatsapp_number_goes_through_twilio(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"sid": "SMwa"}
    result = await rig.egress.send(reply(Channel.WHATSAPP, "+14155550100", "+14155552671"))
    assert result.outcome is SendOutcome.SENT
    assert fake.seen[0].form["From"] == ["whatsapp:+14155550100"]
    assert fake.seen[0].form["To"] == ["whatsapp:+14155552671"]


async def test_messenger_and_instagram_send_api_shape(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.ok_body = {"recipient_id": "6783125368444163", "message_id": "m_sent"}
    result = await rig.egress.send(reply(Channel.MESSENGER, "1234567890", "6783125368444163"))
    assert result.provider_message_id == "m_sent"
    result = await rig.egress.send(
        reply(Channel.INSTAGRAM, "17841400000000000", "1254459154682919", id="out-ig")
    )
    assert result.outcome is SendOutcome.SENT
    fb, ig = fake.seen
    assert fb.path == "/v23.0/me/messages"
    assert fb.json == {
        "recipient": {"id": "6783125368444163"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Your parcel ships today."},
    }
    assert fb.headers["Authorization"] == "Bearer " + ENVIRON["MESSENGER_PAGE_ACCESS_TOKEN"]
    assert ig.path == "/v23.0/17841400000000000/messages"
    assert ig.headers["Authorization"] == "Bearer " + ENVIRON["INSTAGRAM_ACCESS_TOKEN"]


async def test_telegram_send_message(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.ok_body = {"ok": True, "result": {"message_id": 77, "chat": {"id": 1111111}}}
    result = await rig.egress.send(reply(Channel.TELEGRAM, "acme_support_bot", "1111111"))
    assert result.provider_message_id == "acme_support_bot:1111111:77"
    [req] = fake.seen
    assert req.path == f"/bot{ENVIRON['TELEGRAM_BOT_TOKEN']}/sendMessage"
    assert req.json == {"chat_id": "1111111", "text": "Your parcel ships today."}


async def test_mailgun_threads_the_reply(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.ok_body = {"id": "<20240101.1@acme.example>", "message": "Queued. Thank you."}
    mail = reply(
        Channel.EMAIL,
        "support@acme.example",
        "ann@example.org",
        subject="Re: Order 1234",
        in_reply_to="CAF=reply-2@mail.example.org",
    )
    result = await rig.egress.send(mail)
    assert result.provider_message_id == "20240101.1@acme.example"
    [req] = fake.seen
    assert req.path == "/v3/acme.example/messages"
    assert req.form["from"] == ["support@acme.example"]
    assert req.form["to"] == ["ann@example.org"]
    assert req.form["subject"] == ["Re: Order 1234"]
    assert req.form["h:In-Reply-To"] == ["<CAF=reply-2@mail.example.org>"]
    assert req.form["h:References"] == ["<CAF=reply-2@mail.example.org>"]
    assert req.form["h:Message-Id"] == ["<out-0001@acme.example>"]


async def test_a_twilio_body_past_1600_characters_goes_on_in_a_second_message(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    """A place written after the text can take it past Twilio's Body (error 21617): the rest
    follows in a message of its own, without the media or a status callback of its own."""
    fake, _ = provider
    fake.ok_body = {"sid": "SMfirst", "status": "queued"}
    place = Location(latitude=37.7955, longitude=-122.3937, name="Ferry Building")
    sms = reply(
        Channel.SMS,
        "+14155550100",
        "+14155552671",
        text="word " * 318,
        location=place,
        attachments=(Attachment(url="https://cdn.example.com/map.png"),),
    )
    result = await rig.egress.send(sms)
    assert (result.outcome, result.provider_message_id) == (SendOutcome.SENT, "SMfirst")
    first, second = fake.seen
    assert len(first.form["Body"][0]) <= 1600
    assert first.form["MediaUrl"] == ["https://cdn.example.com/map.png"]
    assert second.form.keys() == {"From", "To", "Body"}
    # Cut at a space, which the parts leave out.
    assert "Ferry Building" in first.form["Body"][0] + " " + second.form["Body"][0]


async def test_twilios_stand_in_takes_every_part_of_a_long_whatsapp_answer() -> None:
    """Against the stand-in that refuses as Twilio does (21617 past 1,600 characters): a
    bot's answer with its numbered choices, 2,000 characters in all, arrives in two."""
    fake = FakeTwilio(CHANNELS.twilio.account_sid, ENVIRON["TWILIO_AUTH_TOKEN"], FakeProviders())
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            egress = Egress(
                channels=pointed_at(str(server.make_url("")).rstrip("/")),
                environ=ENVIRON,
                session=session,
                metrics=Metrics(),
                ledger=InMemorySentLedger(),
            )
            answer = reply(
                Channel.WHATSAPP,
                "+14155550100",
                "+14155552671",
                agent_id=None,
                bot_id="helper",
                text="choose " * 280,
                quick_replies=("Yes", "No"),
            )
            result = await egress.send(answer)
        assert result.outcome is SendOutcome.SENT, result.error
        assert fake.refused == []
        bodies = [message.form["Body"] for message in fake.providers.delivered]
        assert len(bodies) == 2
        assert bodies[1].endswith("1. Yes\n2. No")
    finally:
        await server.close()


@given(text=st.text(alphabet="ab \n", max_size=400), longest=st.integers(2, 60))
def test_a_split_text_loses_nothing_but_the_breaks_it_cuts_at(text: str, longest: int) -> None:
    parts = split_text(text, longest)
    assert all(len(part) <= longest for part in parts)

    def letters(value: str) -> str:
        return value.replace(" ", "").replace("\n", "")

    assert letters("".join(parts)) == letters(text)
    if max(map(len, text.split()), default=0) < longest // 2:
        assert " ".join(parts).split() == text.split()  # no word cut in two


async def test_429_then_success_honours_retry_after(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.script = [(429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "1"})]
    fake.ok_body = {"sid": "SMok"}
    result = await rig.egress.send(SMS)
    assert (result.outcome, result.attempts) == (SendOutcome.SENT, 2)
    assert rig.sleeps == [1.0]
    assert len(fake.seen) == 2
    assert [s.form for s in fake.seen] == [fake.seen[0].form] * 2  # the same message again
    assert (
        rig.metrics.registry.get_sample_value(
            "switchboard_egress_attempts_total", {"channel": "sms", "result": "retryable"}
        )
        == 1
    )


async def test_retry_after_is_capped(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.script = [(503, None, {"Retry-After": "3600"})]
    fake.ok_body = {"sid": "SMok"}
    assert (await rig.egress.send(SMS)).outcome is SendOutcome.SENT
    assert rig.sleeps == [2.0]


async def test_500_then_success_backs_off(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.script = [(500, {"message": "oops"}, {}), (502, None, {})]
    fake.ok_body = {"sid": "SMok"}
    result = await rig.egress.send(SMS)
    assert (result.outcome, result.attempts) == (SendOutcome.SENT, 3)
    assert rig.sleeps == [0.01, 0.02]


async def test_telegram_429_reads_retry_after_from_the_body(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.script = [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            },
            {},
        )
    ]
    fake.ok_body = {"ok": True, "result": {"message_id": 1}}
    result = await rig.egress.send(reply(Channel.TELEGRAM, "acme_support_bot", "1111111"))
    assert result.outcome is SendOutcome.SENT
    assert rig.sleeps == [1.0]


async def test_graph_throttling_error_is_retried(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    fake.script = [
        (
            400,
            {
                "error": {
                    "message": "(#4) Application request limit reached",
                    "type": "OAuthException",
                    "code": 4,
                }
            },
            {},
        )
    ]
    fake.ok_body = {"message_id": "m_ok"}
    result = await rig.egress.send(reply(Channel.MESSENGER, "1234567890", "6783125368444163"))
    assert (result.outcome, result.attempts) == (SendOutcome.SENT, 2)


async def test_a_429_without_retry_after_waits_for_xs_rate_limit_reset(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    """X answers 429 with ``x-rate-limit-reset`` (when its window reopens), no
    ``Retry-After``: the wait is until then (capped), not the back-off's."""
    fake, _ = provider
    reset = str(int(time.time()) + 600)
    fake.script = [(429, {"title": "Too Many Requests"}, {"x-rate-limit-reset": reset})]
    fake.ok_body = {"sid": "SMok"}
    assert (await rig.egress.send(SMS)).outcome is SendOutcome.SENT
    assert rig.sleeps == [2.0]


async def test_whatsapps_pair_rate_limit_waits_and_slows_no_sender(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    """131056: too many messages to this one user. Other customers of the number are not
    held back (no "slow down" for the sender); this one is tried again a while later."""
    fake, _ = provider
    error = {"message": "(#131056) (Business Account, Consumer Account) pair rate limit hit"}
    fake.script = [(400, {"error": error | {"code": 131056}}, {})]
    fake.ok_body = {"messages": [{"id": "wamid.ok"}]}
    slowed: list[float | None] = []

    async def throttled(_: Any, retry_after: float | None) -> None:
        slowed.append(retry_after)

    rig.egress.on_throttled = throttled
    result = await rig.egress.send(reply(Channel.WHATSAPP, "106540352242922", "+16505551234"))
    assert (result.outcome, result.attempts) == (SendOutcome.SENT, 2)
    assert (rig.sleeps, slowed) == ([2.0], [])


async def test_permanent_400_is_not_retried(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.script = [(400, {"code": 21211, "message": "The 'To' number is not valid."}, {})]
    result = await rig.egress.send(SMS)
    assert result.outcome is SendOutcome.FAILED
    assert (result.attempts, result.status_code) == (1, 400)
    assert result.error == "The 'To' number is not valid."
    assert rig.sleeps == []
    assert len(fake.seen) == 1
    assert (
        rig.metrics.registry.get_sample_value(
            "switchboard_egress_messages_total",
            {"domain": "acme", "channel": "sms", "outcome": "failed"},
        )
        == 1
    )


async def test_gives_up_after_max_attempts(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.script = [(503, None, {})] * 4
    result = await rig.egress.send(SMS)
    assert (result.outcome, result.attempts, result.status_code) == (SendOutcome.FAILED, 4, 503)
    assert len(rig.sleeps) == 3


async def test_connection_errors_are_retried_then_fail() -> None:
    # A port nothing listens on (bound and closed): every attempt is refused.
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    await server.close()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with aiohttp.ClientSession() as session:
        egress = Egress(
            channels=pointed_at(base),
            environ=ENVIRON,
            session=session,
            metrics=Metrics(),
            ledger=InMemorySentLedger(),
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, jitter=0.0),
            sleep=sleep,
        )
        result = await egress.send(SMS)
    assert (result.outcome, result.attempts, result.status_code) == (SendOutcome.FAILED, 3, None)
    assert result.error is not None
    assert result.error.startswith("connection error")
    assert len(sleeps) == 2


async def test_already_sent_ids_are_skipped(rig: Rig, provider: tuple[FakeProvider, str]) -> None:
    fake, _ = provider
    fake.ok_body = {"sid": "SMok"}
    first = await rig.egress.send(SMS)
    again = await rig.egress.send(SMS)
    assert first.outcome is SendOutcome.SENT
    assert again.outcome is SendOutcome.DUPLICATE
    assert len(fake.seen) == 1
    assert await rig.ledger.already_sent("out-0001")


async def test_unconfigured_endpoint_or_missing_secret_fails_without_a_call(
    rig: Rig, provider: tuple[FakeProvider, str]
) -> None:
    fake, _ = provider
    result = await rig.egress.send(reply(Channel.SMS, "+19995550000", "+14155552671"))
    assert result.outcome is SendOutcome.FAILED
    assert result.attempts == 0
    assert fake.seen == []
    rig.egress.environ = {}
    result = await rig.egress.send(SMS)
    assert result.outcome is SendOutcome.FAILED
    assert "TWILIO_AUTH_TOKEN" in (result.error or "")


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
