"""The HTTP bot bridge (``adapters.bots``) on the session's real broker, with the bots played
by an aiohttp server on loopback: turns on ``conversations.routing`` reach the bot's
webhook signed, its answers come out on ``bots.events`` with ids that do not change when a
turn is read again, and every failure becomes one ``bot.failed`` within the turn's
deadline. A bot's hand-off whose customer waits reaches it the same way, and only the
replies of its answer come out; a failed one publishes nothing. Turns and answers are
sealed as the service seals them (``runtime.sealing``), and a turn that does not open
reaches no bot."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from adapters import bots
from adapters.bots import ANSWER_MAX_BYTES, BotBridge
from runtime import db, kafka
from runtime.config import CallbacksConfig
from runtime.metrics import Metrics
from runtime.sealing import SEALED_WITH, TopicKeys
from schemas import (
    BOT_EVENT_DECODER,
    BotEvent,
    BotFailed,
    BotHandoffRequested,
    BotReplied,
    BotResolved,
    BotTurn,
    Channel,
    ConversationHandedOff,
    Handoff,
    HandoffReason,
    topics,
)
from schemas.bot_webhook import SIGNATURE_HEADER, BotWebhook, BotWebhookRequest
from switchboard.config import Config
from tests.conftest import Infrastructure
from tests.logcapture import captured_logs, lines_of
from tests.support import TopicReader, make_config, wait_until

SECRET = "bot-signing-secret-9a3e"
ENVIRON = {"HELPER_BOT_SECRET": SECRET}
CUSTOMER = "+14155552671"
TEXT = "Where is my order 1234?"

REPLY_HANDOFF = {
    "actions": [
        {
            "type": "reply",
            "text": "Let me look that up.",
            "quick_replies": ["Yes", "No"],
            "progress": True,
        },
        {
            "type": "handoff",
            "text": "Passing you to a colleague.",
            "handoff": {
                "reason": "low_confidence",
                "summary": "Order 1234 not found.",
                "intent": "order_status",
                "skills": ["orders"],
                "attributes": {"order": "1234"},
            },
        },
        {"type": "reply", "text": "dropped: after the hand-off"},
    ]
}
RESOLVE = {"actions": [{"type": "resolve", "text": "Glad I could help.", "reason": "answered"}]}
RELAY = {
    "actions": [
        {"type": "reply", "text": "You're next in line.", "quick_replies": ["OK"]},
        {"type": "handoff", "handoff": {"reason": "customer_asked"}, "text": "dropped"},
        {"type": "reply", "text": "You can also continue by email."},
        {"type": "resolve", "text": "dropped too"},
    ]
}
"""An answer to a hand-off: its two replies are published, the rest dropped."""


# -- the bot -------------------------------------------------------------------------------


@dataclass
class BotRequest:
    behaviour: str
    headers: dict[str, str]
    body: bytes
    started: float
    ended: float | None = None

    @property
    def turn(self) -> BotTurn:
        return msgspec.json.decode(self.body, type=BotTurn)

    @property
    def event(self) -> BotWebhookRequest:
        """The request's event, a turn or a hand-off."""
        return msgspec.json.decode(self.body, type=BotWebhookRequest)


Behaviour = Callable[["FakeBot"], Awaitable[web.Response]]


async def _answer(answer: object) -> web.Response:
    return web.Response(body=msgspec.json.encode(answer), content_type="application/json")


async def _slow(bot: FakeBot) -> web.Response:
    # Until the test ends: the bridge has long given up by then.
    await bot.release.wait()
    return await _answer(RESOLVE)


async def _delayed(bot: FakeBot) -> web.Response:
    await asyncio.sleep(0.4)
    return await _answer(RESOLVE)


async def _huge(bot: FakeBot) -> web.Response:
    # A valid answer but for its size: the unknown member would be ignored.
    return await _answer({**RESOLVE, "padding": "x" * ANSWER_MAX_BYTES})


async def _error(bot: FakeBot) -> web.Response:
    return web.Response(status=500, text="boom")


async def _garbage(bot: FakeBot) -> web.Response:
    return web.Response(text="<html>not an answer</html>")


BEHAVIOURS: dict[str, Behaviour] = {
    "reply-handoff": lambda bot: _answer(REPLY_HANDOFF),
    "resolve": lambda bot: _answer(RESOLVE),
    "relay": lambda bot: _answer(RELAY),
    "slow": _slow,
    "delayed": _delayed,
    "error": _error,
    "garbage": _garbage,
    # A reply must have text or attachments.
    "invalid": lambda bot: _answer({"actions": [{"type": "reply", "text": " "}]}),
    "huge": _huge,
}


@dataclass
class FakeBot:
    """Plays the bots on loopback: ``POST /<behaviour>`` answers as ``BEHAVIOURS`` says, and
    every request is recorded."""

    requests: list[BotRequest] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{behaviour}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        behaviour = request.match_info["behaviour"]
        entry = BotRequest(behaviour, dict(request.headers), await request.read(), time.time())
        self.requests.append(entry)
        try:
            return await BEHAVIOURS[behaviour](self)
        finally:
            entry.ended = time.time()

    def of(self, behaviour: str) -> list[BotRequest]:
        return [r for r in self.requests if r.behaviour == behaviour]


# -- the harness ---------------------------------------------------------------------------


@dataclass
class Running:
    bridge: BotBridge
    metrics: Metrics
    task: asyncio.Task[None]

    def count(self, bot: str, outcome: str, domain: str = "acme") -> float:
        value = self.metrics.registry.get_sample_value(
            "switchboard_bot_webhook_calls_total",
            {"domain": domain, "bot": bot, "outcome": outcome},
        )
        return value or 0.0

    def calls_timed(self, bot: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "switchboard_bot_webhook_seconds_count", {"domain": "acme", "bot": bot}
        )
        return value or 0.0

    async def stop(self) -> None:
        self.bridge.stop()
        await asyncio.wait_for(self.task, timeout=30)


@dataclass
class Harness:
    config: Config
    producer: AIOKafkaProducer
    bot: FakeBot
    base_url: str
    pool: asyncpg.Pool
    running: list[Running] = field(default_factory=list)
    router_keys: TopicKeys = field(init=False)
    """What the routing events are sealed with: the router's keys, not the bridge's."""

    def __post_init__(self) -> None:
        self.router_keys = TopicKeys(self.pool)

    def webhook(self, behaviour: str, **options: object) -> BotWebhook:
        return msgspec.convert({"url": f"{self.base_url}/{behaviour}", **options}, BotWebhook)

    def start(
        self,
        webhooks: Mapping[str, Mapping[str, BotWebhook]],
        environ: Mapping[str, str] = ENVIRON,
    ) -> Running:
        metrics = Metrics()
        keys = TopicKeys(self.pool)
        publisher = kafka.EventPublisher(
            self.producer, self.config.topic(topics.BOTS), self.config.source, keys=keys
        )
        bridge = BotBridge(self.config, webhooks, environ, publisher, metrics, keys=keys)
        running = Running(bridge, metrics, asyncio.create_task(bridge.run()))
        self.running.append(running)
        return running

    async def send(self, *events: BotWebhookRequest) -> None:
        publisher = kafka.EventPublisher(
            self.producer,
            self.config.topic(topics.ROUTING),
            self.config.source,
            keys=self.router_keys,
        )
        await publisher.publish(events)

    async def send_raw(self, value: bytes, key: str = "acme") -> None:
        await self.producer.send_and_wait(
            self.config.topic(topics.ROUTING), value=value, key=key.encode()
        )

    def answers(self) -> TopicReader:
        return TopicReader(self.config, topics.BOTS)


@pytest.fixture
async def harness(infrastructure: Infrastructure, database_url: str) -> AsyncIterator[Harness]:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    await kafka.ensure_topics(config, {})
    producer = kafka.make_producer(config, {})
    await producer.start()
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    bot = FakeBot()
    server = TestServer(bot.app(), host="127.0.0.1")
    await server.start_server()
    harness = Harness(config, producer, bot, str(server.make_url("")).rstrip("/"), pool)
    try:
        yield harness
    finally:
        bot.release.set()
        for running in harness.running:
            if not running.task.done():
                await running.stop()
        await server.close()
        await producer.stop()
        await pool.close()


def bot_turn(
    bot_id: str = "helper",
    *,
    conversation_id: str = "c1",
    answer_by: float | None = None,
    domain: str = "acme",
    turn: int = 1,
) -> BotTurn:
    now = time.time()
    return BotTurn(
        id=str(uuid.uuid4()),
        domain=domain,
        occurred_at=now,
        conversation_id=conversation_id,
        channel=Channel.SMS,
        customer_id=f"sms:{CUSTOMER}",
        queue="support",
        bot_id=bot_id,
        answer_by=now + 30 if answer_by is None else answer_by,
        turn=turn,
        message_id=str(uuid.uuid4()),
        provider_message_id="SM" + uuid.uuid4().hex,
        text=TEXT,
        language="en",
        attributes={"tier": "gold"},
        customer_address=CUSTOMER,
    )


def handed_off(
    bot_id: str = "helper",
    *,
    conversation_id: str = "c1",
    reason: HandoffReason = HandoffReason.OUT_OF_SCOPE,
    position: int | None = 0,
    opens_at: float | None = None,
    to_agent_id: str | None = None,
) -> ConversationHandedOff:
    """The bot's hand-off of ``conversation_id``: first in line, unless told otherwise."""
    return ConversationHandedOff(
        id=str(uuid.uuid4()),
        domain="acme",
        occurred_at=time.time(),
        conversation_id=conversation_id,
        channel=Channel.SMS,
        customer_id=f"sms:{CUSTOMER}",
        queue="support",
        bot_id=bot_id,
        reason=reason,
        handoff=Handoff(reason=reason, summary="Refund for order 1234.", skills=("billing",)),
        to_agent_id=to_agent_id,
        position=position,
        agents_online=0,
        expected_wait_seconds=None if position is None else 240.0,
        opens_at=opens_at,
        continue_on=(Channel.EMAIL,),
    )


async def events_of(reader: TopicReader, count: int, timeout: float = 20) -> list[BotEvent]:
    """The first ``count`` events on ``bots.events``, once there are that many."""
    records = await reader.wait_for(lambda records: len(records) >= count, timeout=timeout)
    return [BOT_EVENT_DECODER.decode(record.value) for record in records]


def verify_switchboard_signature(
    secret: str, header: str, body: bytes, now: float | None = None
) -> bool:
    """The README's verification for a bot (*Bots over HTTP*), word for word: the header
    signs the raw body under the secret, and its time is within 5 minutes of ours."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        received = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > 300:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received, expected)


def expected_id(request: BotWebhookRequest, suffix: str) -> str:
    """The id the bridge gives an event of ``request``, a turn or a hand-off (the module's
    documented rule)."""
    namespace = uuid.UUID("d67b7eb5-635f-4102-bb58-17d93a706bd8")
    return str(uuid.uuid5(namespace, f"{request.id}/{suffix}"))


# -- an answer -----------------------------------------------------------------------------


async def test_a_reply_then_a_handoff_become_bot_events_with_the_turns_ids(
    harness: Harness,
) -> None:
    running = harness.start(
        {"acme": {"helper": harness.webhook("reply-handoff", secret_env="HELPER_BOT_SECRET")}}
    )
    turn = bot_turn()
    async with harness.answers() as reader:
        await harness.send(turn)
        replied, handoff = await events_of(reader, 2)
        await asyncio.sleep(0.5)
        assert len(await reader.poll()) == 2, "the action after the hand-off is dropped"
        assert {record.key for record in reader.records} == {b"acme"}

    assert isinstance(replied, BotReplied)
    assert (replied.id, replied.turn_id, replied.conversation_id) == (
        expected_id(turn, "0"),
        turn.id,
        "c1",
    )
    assert (replied.domain, replied.bot_id) == ("acme", "helper")
    assert replied.in_reply_to == handoff.in_reply_to == turn.provider_message_id
    assert (replied.text, replied.quick_replies, replied.progress) == (
        "Let me look that up.",
        ("Yes", "No"),
        True,
    )
    assert isinstance(handoff, BotHandoffRequested)
    assert (handoff.id, handoff.turn_id, handoff.bot_id) == (
        expected_id(turn, "1"),
        turn.id,
        "helper",
    )
    assert handoff.text == "Passing you to a colleague."
    assert handoff.handoff.reason is HandoffReason.LOW_CONFIDENCE
    assert (handoff.handoff.summary, handoff.handoff.intent) == (
        "Order 1234 not found.",
        "order_status",
    )
    assert handoff.handoff.skills == ("orders",)
    assert handoff.handoff.attributes == {"order": "1234"}
    [request] = harness.bot.requests
    assert replied.occurred_at >= request.started
    assert request.body == msgspec.json.encode(turn), "the request is the bot.turn event"
    assert request.headers["Content-Type"] == "application/json"
    assert running.count("helper", "answered") == 1
    assert running.calls_timed("helper") == 1


async def test_the_signature_is_an_hmac_of_the_timestamp_and_the_body(harness: Harness) -> None:
    harness.start({"acme": {"helper": harness.webhook("resolve", secret_env="HELPER_BOT_SECRET")}})
    async with harness.answers() as reader:
        await harness.send(bot_turn())
        await events_of(reader, 1)
    [request] = harness.bot.requests
    header = request.headers[SIGNATURE_HEADER]
    parts = dict(part.split("=", 1) for part in header.split(","))
    assert set(parts) == {"t", "v1"}
    assert abs(int(parts["t"]) - request.started) < 5
    expected = hmac.new(
        SECRET.encode(), parts["t"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert verify_switchboard_signature(SECRET, header, request.body)
    assert not verify_switchboard_signature("another secret", header, request.body)
    assert not verify_switchboard_signature(SECRET, header, request.body + b" ")
    assert not verify_switchboard_signature(SECRET, header, request.body, now=time.time() + 600)


async def test_a_bot_without_a_secret_gets_no_signature(harness: Harness) -> None:
    harness.start({"acme": {"plain": harness.webhook("resolve")}})
    async with harness.answers() as reader:
        await harness.send(bot_turn("plain"))
        [resolved] = await events_of(reader, 1)
    assert isinstance(resolved, BotResolved)
    assert (resolved.text, resolved.reason) == ("Glad I could help.", "answered")
    [request] = harness.bot.requests
    assert SIGNATURE_HEADER not in request.headers


async def test_a_secret_missing_from_the_environment_fails_the_turn_unsent(
    harness: Harness,
) -> None:
    running = harness.start(
        {"acme": {"helper": harness.webhook("resolve", secret_env="HELPER_BOT_SECRET")}},
        environ={},
    )
    turn = bot_turn()
    async with harness.answers() as reader:
        await harness.send(turn)
        [failed] = await events_of(reader, 1)
    assert isinstance(failed, BotFailed)
    assert (failed.error, failed.id, failed.turn_id) == (
        "secret_missing",
        expected_id(turn, "failed"),
        turn.id,
    )
    assert harness.bot.requests == [], "never sent unsigned"
    assert running.count("helper", "secret_missing") == 1


# -- failures --------------------------------------------------------------------------------


async def test_a_bot_too_slow_fails_with_timeout_after_its_webhook_timeout(
    harness: Harness,
) -> None:
    running = harness.start({"acme": {"slow": harness.webhook("slow", timeout=1.0)}})
    turn = bot_turn("slow")
    async with harness.answers() as reader:
        await harness.send(turn)
        [failed] = await events_of(reader, 1)
    assert isinstance(failed, BotFailed)
    assert (failed.error, failed.id, failed.turn_id) == (
        "timeout",
        expected_id(turn, "failed"),
        turn.id,
    )
    [request] = harness.bot.requests
    assert 0.9 <= failed.occurred_at - request.started < 3
    assert failed.occurred_at < turn.answer_by
    assert failed.in_reply_to == turn.provider_message_id
    assert running.count("slow", "timeout") == 1


async def test_the_call_ends_at_the_turns_answer_by_when_that_comes_first(
    harness: Harness,
) -> None:
    running = harness.start(
        {
            "acme": {
                "slow": harness.webhook("slow", timeout=60.0),
                "plain": harness.webhook("resolve"),
            }
        }
    )
    async with harness.answers() as reader:
        await harness.send(bot_turn("plain"))  # the bridge has joined once this is answered
        await events_of(reader, 1)
        turn = bot_turn("slow", conversation_id="c2", answer_by=time.time() + 2)
        await harness.send(turn)
        failed = (await events_of(reader, 2))[1]
    assert isinstance(failed, BotFailed)
    assert (failed.error, failed.turn_id) == ("timeout", turn.id)
    # The call's timeout runs on the loop's monotonic clock, answer_by on the wall clock.
    assert turn.answer_by - 0.1 <= failed.occurred_at < turn.answer_by + 1
    assert running.count("slow", "timeout") == 1


@pytest.mark.parametrize(
    ("behaviour", "error", "outcome"),
    [
        ("error", "http_500", "http_error"),
        ("garbage", "bad_answer", "bad_answer"),
        ("invalid", "bad_answer", "bad_answer"),
        ("huge", "bad_answer", "bad_answer"),
    ],
)
async def test_a_failed_answer_is_one_bot_failed(
    harness: Harness, behaviour: str, error: str, outcome: str
) -> None:
    running = harness.start({"acme": {"helper": harness.webhook(behaviour)}})
    turn = bot_turn()
    async with harness.answers() as reader:
        await harness.send(turn)
        [failed] = await events_of(reader, 1)
    assert isinstance(failed, BotFailed)
    assert (failed.error, failed.id, failed.turn_id, failed.bot_id) == (
        error,
        expected_id(turn, "failed"),
        turn.id,
        "helper",
    )
    assert running.count("helper", outcome) == 1


async def test_an_unreachable_bot_fails_with_unreachable(harness: Harness) -> None:
    closed = TestServer(web.Application(), host="127.0.0.1")
    await closed.start_server()
    url = str(closed.make_url("/gone"))
    await closed.close()  # nothing listens there now
    running = harness.start({"acme": {"helper": BotWebhook(url=url)}})
    async with harness.answers() as reader:
        await harness.send(bot_turn())
        [failed] = await events_of(reader, 1)
    assert isinstance(failed, BotFailed)
    assert failed.error == "unreachable"
    assert running.count("helper", "unreachable") == 1


async def test_a_bot_at_an_address_callbacks_does_not_allow_is_never_called(
    harness: Harness,
) -> None:
    """A domain's admin cannot make the service call what only its network reaches: with
    ``allowed_networks = ["public"]`` the loopback bot fails as unreachable, uncalled."""
    harness.config = msgspec.structs.replace(
        harness.config, callbacks=CallbacksConfig(allowed_networks=("public",))
    )
    running = harness.start({"acme": {"helper": harness.webhook("resolve")}})
    async with harness.answers() as reader:
        await harness.send(bot_turn())
        [failed] = await events_of(reader, 1)
    assert isinstance(failed, BotFailed)
    assert failed.error == "unreachable"
    assert harness.bot.requests == []
    assert running.count("helper", "unreachable") == 1


# -- what the bridge leaves alone ----------------------------------------------------------


async def test_a_late_turn_is_skipped_without_calling_the_bot(harness: Harness) -> None:
    running = harness.start({"acme": {"helper": harness.webhook("resolve")}})
    late = bot_turn(answer_by=time.time() - 1)
    on_time = bot_turn(conversation_id="c2")
    async with harness.answers() as reader:
        await harness.send(late, on_time)
        [resolved] = await events_of(reader, 1)
        await asyncio.sleep(0.5)
        assert len(await reader.poll()) == 1
    assert resolved.turn_id == on_time.id
    assert [r.turn.id for r in harness.bot.requests] == [on_time.id]
    assert running.count("helper", "skipped_late") == 1


async def test_turns_of_bots_without_a_webhook_and_other_records_are_left_alone(
    harness: Harness,
) -> None:
    running = harness.start({"acme": {"helper": harness.webhook("resolve")}})
    own = bot_turn("selfhosted")  # answers on bots.events itself
    other_domain = bot_turn("helper", domain="globex")
    answered = bot_turn("helper", conversation_id="c2")
    async with harness.answers() as reader:
        await harness.send_raw(b"{not json")
        await harness.send(own, other_domain, answered)
        [resolved] = await events_of(reader, 1)
        await asyncio.sleep(0.5)
        assert len(await reader.poll()) == 1
    assert resolved.turn_id == answered.id
    assert [r.turn.id for r in harness.bot.requests] == [answered.id]
    assert running.count("", "undecodable") == 1  # under the record key's domain


async def test_turns_and_answers_are_sealed_and_a_turn_that_does_not_open_reaches_no_bot(
    harness: Harness,
) -> None:
    erased = bot_turn()
    await harness.send(erased)
    # The customer's erasure took the turn's key; the bridge has cached none yet.
    deleted = await harness.pool.execute("DELETE FROM topic_keys")
    assert deleted == "DELETE 1", deleted
    harness.router_keys.forget()
    running = harness.start({"acme": {"helper": harness.webhook("resolve")}})
    answered = bot_turn(conversation_id="c2")
    async with harness.answers() as reader:
        await harness.send(answered)
        [resolved] = await events_of(reader, 1)
        await asyncio.sleep(0.5)
        assert len(await reader.poll()) == 1
        [record] = reader.records
    assert resolved.turn_id == answered.id
    assert [r.turn.id for r in harness.bot.requests] == [answered.id]
    assert running.count("", "undecodable") == 1  # under the record key's domain
    assert dict(record.headers).get(SEALED_WITH), "the answer is sealed"


async def test_a_new_configuration_version_reaches_the_new_bot(harness: Harness) -> None:
    running = harness.start({"acme": {"plain": harness.webhook("resolve")}})
    async with harness.answers() as reader:
        await harness.send(bot_turn("plain"))
        await events_of(reader, 1)
        running.bridge.reconfigure({"acme": {"helper": harness.webhook("reply-handoff")}})
        await harness.send(bot_turn("plain", conversation_id="c2"), bot_turn("helper"))
        events = await events_of(reader, 3)
        await asyncio.sleep(0.5)
        assert len(await reader.poll()) == 3
    assert [type(e) for e in events] == [BotResolved, BotReplied, BotHandoffRequested]
    assert [r.behaviour for r in harness.bot.requests] == ["resolve", "reply-handoff"]


async def test_with_no_webhook_bot_nothing_is_read_until_one_is_configured(
    harness: Harness,
) -> None:
    """Idle, the bridge fetches nothing (its partitions paused): a turn published before
    its bot's webhook reached this process is still there to read once it has."""
    running = harness.start({"acme": {"plain": harness.webhook("resolve")}})
    async with harness.answers() as reader:
        await harness.send(bot_turn("plain"))
        await events_of(reader, 1)  # the bridge reads the topic
        running.bridge.reconfigure({})
        await asyncio.sleep(1)  # the read in progress ends: the next step pauses
        await harness.send(bot_turn("helper", conversation_id="c2"))
        await asyncio.sleep(1.5)  # loops enough to have read and passed the turn
        assert len(harness.bot.requests) == 1
        running.bridge.reconfigure({"acme": {"helper": harness.webhook("reply-handoff")}})
        events = await events_of(reader, 3)
    assert [type(e) for e in events] == [BotResolved, BotReplied, BotHandoffRequested]
    assert [r.behaviour for r in harness.bot.requests] == ["resolve", "reply-handoff"]


# -- hand-offs: what the waiting customer is told ---------------------------------------


async def test_a_waiting_hand_off_is_posted_signed_and_only_its_replies_published(
    harness: Harness,
) -> None:
    running = harness.start(
        {"acme": {"helper": harness.webhook("relay", secret_env="HELPER_BOT_SECRET")}}
    )
    event = handed_off()
    async with harness.answers() as reader:
        await harness.send(event)
        first, second = await events_of(reader, 2)
        await asyncio.sleep(0.5)
        assert len(await reader.poll()) == 2, "the hand-off and the resolve are dropped"
        assert {record.key for record in reader.records} == {b"acme"}
    assert isinstance(first, BotReplied)
    assert isinstance(second, BotReplied)
    assert (first.id, second.id) == (expected_id(event, "0"), expected_id(event, "2"))
    assert (first.text, first.quick_replies) == ("You're next in line.", ("OK",))
    assert second.text == "You can also continue by email."
    for reply in (first, second):
        assert (reply.turn_id, reply.in_reply_to) == (None, None)
        assert (reply.domain, reply.bot_id, reply.conversation_id) == ("acme", "helper", "c1")
    [request] = harness.bot.requests
    assert request.body == msgspec.json.encode(event), "the request is the routing event"
    assert request.event == event
    assert verify_switchboard_signature(SECRET, request.headers[SIGNATURE_HEADER], request.body)
    assert running.count("helper", "answered") == 1
    assert running.calls_timed("helper") == 1


async def test_a_hand_off_read_twice_publishes_the_same_ids(harness: Harness) -> None:
    harness.start({"acme": {"helper": harness.webhook("relay")}})
    event = handed_off()
    async with harness.answers() as reader:
        await harness.send(event, event)
        events = await events_of(reader, 4)
    ids = [e.id for e in events]
    assert ids[:2] == ids[2:] == [expected_id(event, "0"), expected_id(event, "2")]


async def test_a_hand_off_until_the_queue_opens_is_posted_too(harness: Harness) -> None:
    harness.start({"acme": {"helper": harness.webhook("relay")}})
    closed = handed_off(position=None, opens_at=time.time() + 3600)
    async with harness.answers() as reader:
        await harness.send(closed)
        replies = await events_of(reader, 2)
    assert {reply.conversation_id for reply in replies} == {"c1"}
    assert [r.event for r in harness.bot.requests] == [closed]


async def test_a_takeover_or_a_hand_off_assigned_at_once_is_not_posted(
    harness: Harness,
) -> None:
    running = harness.start({"acme": {"helper": harness.webhook("relay")}})
    takeover = handed_off(
        reason=HandoffReason.TAKEOVER, to_agent_id="ann", position=None, conversation_id="c1"
    )
    # A takeover says where it stands in no line; even one that did is not the bot's to tell.
    takeover_in_line = handed_off(reason=HandoffReason.TAKEOVER, conversation_id="c2")
    assigned = handed_off(position=None, conversation_id="c3")  # a person had it at once
    other_bot = handed_off("selfhosted", conversation_id="c4")  # reads Kafka itself
    waiting = handed_off(conversation_id="c5")
    async with harness.answers() as reader:
        await harness.send(takeover, takeover_in_line, assigned, other_bot, waiting)
        replies = await events_of(reader, 2)
        await asyncio.sleep(0.5)
        assert len(await reader.poll()) == 2
    assert {reply.conversation_id for reply in replies} == {"c5"}
    assert [r.event.id for r in harness.bot.requests] == [waiting.id]
    assert running.count("helper", "answered") == 1


@pytest.mark.parametrize(
    ("behaviour", "options", "outcome"),
    [
        ("error", {}, "http_error"),
        ("garbage", {}, "bad_answer"),
        ("slow", {"timeout": 1.0}, "timeout"),
    ],
)
async def test_a_failed_hand_off_call_publishes_nothing(
    harness: Harness, behaviour: str, options: dict[str, object], outcome: str
) -> None:
    running = harness.start({"acme": {"helper": harness.webhook(behaviour, **options)}})
    async with harness.answers() as reader:
        await harness.send(handed_off())
        await wait_until(lambda: running.count("helper", outcome) == 1, what=outcome)
        await asyncio.sleep(0.5)
        assert await reader.poll() == [], "no bot.failed: people have the conversation"
    assert len(harness.bot.requests) == 1


async def test_a_hand_off_waits_for_the_conversations_turn_before_it(
    harness: Harness,
) -> None:
    harness.start(
        {"acme": {"helper": harness.webhook("delayed"), "relayer": harness.webhook("relay")}}
    )
    turn = bot_turn()
    event = handed_off("relayer")
    async with harness.answers() as reader:
        await harness.send(turn, event)
        await events_of(reader, 3)
    first, second = harness.bot.requests
    assert (first.event.id, second.event.id) == (turn.id, event.id)
    assert first.ended is not None
    assert second.started >= first.ended, "the hand-off waits for the turn before it"


# -- order, redelivery and offsets ---------------------------------------------------------


async def test_one_conversations_turns_go_in_order_and_others_in_parallel(
    harness: Harness,
) -> None:
    harness.start({"acme": {"helper": harness.webhook("delayed")}})
    first, second = bot_turn(turn=1), bot_turn(turn=2)
    elsewhere = bot_turn(conversation_id="c2")
    async with harness.answers() as reader:
        await harness.send(first, second, elsewhere)
        await events_of(reader, 3)
    by_turn = {r.turn.id: r for r in harness.bot.requests}
    assert [r.turn.id for r in harness.bot.requests if r.turn.conversation_id == "c1"] == [
        first.id,
        second.id,
    ]
    first_call, second_call, other_call = (
        by_turn[first.id],
        by_turn[second.id],
        by_turn[elsewhere.id],
    )
    assert first_call.ended is not None
    assert second_call.started >= first_call.ended, "c1's second turn waits for its first"
    assert other_call.started < first_call.ended, "c2 does not wait for c1"


async def test_a_turn_read_twice_publishes_the_same_ids(harness: Harness) -> None:
    harness.start({"acme": {"helper": harness.webhook("reply-handoff")}})
    turn = bot_turn()
    async with harness.answers() as reader:
        await harness.send(turn)
        await harness.send(turn)
        events = await events_of(reader, 4)
    assert len(harness.bot.requests) == 2
    ids = [event.id for event in events]
    assert ids[:2] == ids[2:] == [expected_id(turn, "0"), expected_id(turn, "1")]


async def test_answered_turns_are_committed_and_not_called_again(harness: Harness) -> None:
    running = harness.start({"acme": {"helper": harness.webhook("resolve")}})
    async with harness.answers() as reader:
        await harness.send(bot_turn(), bot_turn(conversation_id="c2"))
        await events_of(reader, 2)
        await asyncio.sleep(1)  # a loop or two: the commit follows the publication
        await running.stop()
        again = harness.start({"acme": {"helper": harness.webhook("resolve")}})
        later = bot_turn(conversation_id="c3")
        await harness.send(later)
        events = await events_of(reader, 3, timeout=30)  # the group's second join is slow
    assert events[2].turn_id == later.id
    assert len(harness.bot.requests) == 3, "the two answered turns are not sent again"
    assert again.count("helper", "answered") == 1


async def test_offsets_are_committed_once_an_interval_and_when_the_bridge_stops(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bots, "COMMIT_INTERVAL_SECONDS", 60.0)
    partition = TopicPartition(harness.config.topic(topics.ROUTING), 0)
    group = f"{harness.config.kafka.consumer_group}-bots"
    running = harness.start({"acme": {"helper": harness.webhook("resolve")}})
    async with harness.answers() as reader:
        await harness.send(bot_turn())
        await events_of(reader, 1)
    await asyncio.sleep(1.5)  # loops enough for a commit per batch to have happened
    assert await committed_offset(harness.config, group, partition) in (None, 0)
    await running.stop()
    assert await committed_offset(harness.config, group, partition) == 1


async def committed_offset(config: Config, group: str, partition: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(partition)
        return offset
    finally:
        await consumer.stop()


# -- logs ----------------------------------------------------------------------------------


async def test_logs_carry_neither_text_nor_address_nor_url_nor_secret_nor_answer(
    harness: Harness,
) -> None:
    query = "token=planted-query-7d1c"
    webhooks = {
        "acme": {
            "helper": msgspec.convert(
                {
                    "url": f"{harness.base_url}/reply-handoff?{query}",
                    "secret_env": "HELPER_BOT_SECRET",
                },
                BotWebhook,
            ),
            "broken": harness.webhook("error"),
        }
    }
    quiet = {"aiohttp": logging.WARNING, "aiokafka": logging.WARNING}  # the bot's access log
    with captured_logs([SECRET], quiet) as buffer:
        running = harness.start(webhooks)
        async with harness.answers() as reader:
            await harness.send(bot_turn(), bot_turn("broken", conversation_id="c2"))
            await events_of(reader, 3)
        await running.stop()
    output = buffer.getvalue()
    turns = [line for line in lines_of(buffer) if line["event"] == "bot_turn"]
    assert {(line["bot"], line["outcome"]) for line in turns} == {
        ("helper", "answered"),
        ("broken", "http_error"),
    }
    assert all(line["conversation_id"] in ("c1", "c2") for line in turns)
    for planted in (TEXT, CUSTOMER, "planted-query", "reply-handoff", SECRET):
        assert planted not in output
    for answer in ("Let me look that up", "Passing you", "Order 1234", "order_status"):
        assert answer not in output
