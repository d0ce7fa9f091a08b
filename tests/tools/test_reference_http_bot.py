"""The reference HTTP bot (``tools.bots.http_bot``): its signature check and its answers,
through aiohttp's test client (the end-to-end tests run it as a process)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from schemas import Channel
from schemas.bot_webhook import SIGNATURE_HEADER, BotWebhookAnswer, ReplyAction
from schemas.bots import Handoff, HandoffReason
from schemas.routing import BotTurn, ConversationHandedOff
from tools.bots.http_bot import build_app, sign, verify
from tools.bots.kafka_bot import parse

SECRET = "bot-secret"
NOW = 1_700_000_000.0

BODY = msgspec.json.encode(
    BotTurn(
        id="turn-1",
        domain="acme",
        occurred_at=NOW,
        conversation_id="c1",
        channel=Channel.WEBCHAT,
        customer_id="webchat:s1",
        queue="default",
        bot_id="helper",
        answer_by=NOW + 20,
        turn=1,
        message_id="m1",
        text="order A-1001",
    )
)


def handed_off_body(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "id": "handoff-1",
        "domain": "acme",
        "occurred_at": NOW,
        "conversation_id": "c1",
        "channel": Channel.WEBCHAT,
        "customer_id": "webchat:s1",
        "queue": "default",
        "bot_id": "helper",
        "reason": HandoffReason.OUT_OF_SCOPE,
        "handoff": Handoff(reason=HandoffReason.OUT_OF_SCOPE),
        "position": 2,
        "expected_wait_seconds": 240.0,
        "continue_on": (Channel.EMAIL,),
    }
    fields.update(overrides)
    return msgspec.json.encode(msgspec.convert(fields, ConversationHandedOff))


def test_a_signature_is_the_hmac_of_the_time_and_the_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == f"t=1700000000,v1={expected}"
    assert verify(sign(BODY, SECRET, NOW), BODY, SECRET, NOW)


@pytest.mark.parametrize(
    ("header", "now"),
    [
        (None, NOW),
        ("", NOW),
        (sign(BODY, "other", NOW), NOW),
        (sign(BODY + b" ", SECRET, NOW), NOW),
        (sign(BODY, SECRET, NOW), NOW + 301),
        (sign(BODY, SECRET, NOW), NOW - 301),
        ("t=abc,v1=00", NOW),
        (sign(BODY, SECRET, NOW).split(",")[1], NOW),
        (sign(BODY, SECRET, NOW).split(",")[0], NOW),
    ],
)
def test_bad_signatures_are_refused(header: str | None, now: float) -> None:
    assert not verify(header, BODY, SECRET, now)


def test_a_signature_within_the_tolerance_or_among_several_is_accepted() -> None:
    assert verify(sign(BODY, SECRET, NOW), BODY, SECRET, NOW + 300)
    good = sign(BODY, SECRET, NOW)
    assert verify(f"t=1700000000,v1={'0' * 64},{good.split(',')[1]}", BODY, SECRET, NOW)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(build_app(SECRET, clock=lambda: NOW))) as test_client:
        yield test_client


async def test_a_signed_turn_gets_the_bots_answer(
    client: TestClient[web.Request, web.Application],
) -> None:
    headers = {SIGNATURE_HEADER: sign(BODY, SECRET, NOW), "Content-Type": "application/json"}
    response = await client.post("/switchboard", data=BODY, headers=headers)
    assert response.status == 200, await response.text()
    answer = msgspec.json.decode(await response.read(), type=BotWebhookAnswer)
    (action,) = answer.actions
    assert isinstance(action, ReplyAction)
    assert "A-1001" in action.text
    # Posted again (a retried call): the same answer.
    again = await client.post("/other/path", data=BODY, headers=headers)
    assert await again.read() == await response.read()


async def test_a_signed_hand_off_gets_what_to_tell_the_waiting_customer(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = handed_off_body()
    headers = {SIGNATURE_HEADER: sign(body, SECRET, NOW), "Content-Type": "application/json"}
    response = await client.post("/switchboard", data=body, headers=headers)
    assert response.status == 200, await response.text()
    answer = msgspec.json.decode(await response.read(), type=BotWebhookAnswer)
    assert answer.actions == (
        ReplyAction(
            text="You're number 3 in line; the expected wait is about 4 minutes."
            " You can also continue by email."
        ),
    )
    unsigned = await client.post("/switchboard", data=body)
    assert unsigned.status == 401


async def test_a_hand_off_nobody_waits_on_has_nothing_to_relay(
    client: TestClient[web.Request, web.Application],
) -> None:
    for body in (
        handed_off_body(reason=HandoffReason.TAKEOVER, to_agent_id="ann", position=None),
        handed_off_body(position=None),
    ):
        headers = {SIGNATURE_HEADER: sign(body, SECRET, NOW)}
        response = await client.post("/", data=body, headers=headers)
        assert response.status == 422
        assert "nothing to relay" in (await response.json())["error"]


async def test_an_unsigned_or_badly_signed_turn_is_refused(
    client: TestClient[web.Request, web.Application],
) -> None:
    for headers in ({}, {SIGNATURE_HEADER: sign(BODY, SECRET, NOW - 1000)}):
        response = await client.post("/", data=BODY, headers=headers)
        assert response.status == 401
        assert "signature" in (await response.json())["error"]


async def test_a_body_that_is_no_turn_is_a_bad_request(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = b'{"type": "bot.replied"}'
    response = await client.post(
        "/", data=body, headers={SIGNATURE_HEADER: sign(body, SECRET, NOW)}
    )
    assert response.status == 400
    assert (await client.get("/healthz")).status == 200


async def test_without_a_secret_nothing_is_checked() -> None:
    async with TestClient(TestServer(build_app(None))) as client:
        response = await client.post("/", data=BODY)
        assert response.status == 200


def test_the_kafka_bot_reads_its_options() -> None:
    options = parse(
        ["--bootstrap", "b:9092", "--domain", "acme", "--bot", "helper", "--delay", "1.5"],
        {"DATABASE_URL": "postgresql://db/switchboard"},
    )
    assert (options.consumer_group, options.delay, options.topic_prefix) == (
        "bot-acme-helper",
        1.5,
        "",
    )
    assert options.database_url == "postgresql://db/switchboard"
    given = ["--bootstrap", "b", "--domain", "acme", "--bot", "helper", "--database-url", "u"]
    assert parse(given, {"DATABASE_URL": "ignored"}).database_url == "u"
    assert parse(given[:6], {}).database_url is None
    with pytest.raises(SystemExit):
        parse(["--bootstrap", "b", "--domain", "acme", "--bot", "helper", "--stop-after", "0"])
