"""Bots as routing participants, end to end: the real service (router, API, web chat and
the HTTP bot bridge in one process, on the session's broker and PostgreSQL) with the
reference bots as processes of their own (``tools.bots``), one set over Kafka
(``kafka_bot`` reads its turns from the routing topic) and one over HTTP (``http_bot``,
called by the service's bridge, ``adapters.bots``).

Customers are web chat visitors: a visitor's session is one customer, and a message after
their conversation closed opens a new one. Every wait is for an event on a topic (or a
process's log line), with a timeout.

Lettered scenarios: (a) contained, (b) a hand-off to the customer's last person, (c) a
takeover mid-turn, (d) a bot that does not answer in time, (e) a returning customer, (f)
asking for a person, (g) a hand-off nobody can take at once, relayed by the bot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from adapters.bots import event_id
from runtime import kafka
from schemas import (
    BOT_EVENT_DECODER,
    OUTBOUND_DECODER,
    ROUTING_DECODER,
    BotReplied,
    BotTurn,
    Channel,
    CommandRejected,
    ConversationAssigned,
    ConversationBotAssigned,
    ConversationClosed,
    ConversationHandedOff,
    HandoffReason,
    MessageRouted,
    ReplyRequested,
    topics,
)
from switchboard.config import Config
from switchboard.embedded import free_port
from tests.conftest import Infrastructure
from tests.support import Feed, Service, make_config, running_service, wait_until
from tools.bots.logic import ASAP, relay

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "bots-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET_ENV = "HELPER_BOT_SECRET"
SECRET = "helper-bot-secret-0123456789"
BOT = "helper"


pytestmark = pytest.mark.integration


# -- the service and its configuration ----------------------------------------------------


def bot_config(
    infrastructure: Infrastructure,
    database_url: str,
    *,
    returning: str = "bot",
    answer_timeout: float = 15.0,
    webhook_port: int | None = None,
    continue_on: tuple[str, ...] = (),
) -> Config:
    """Domain acme whose default queue is bot first (``helper``), over Kafka, or over HTTP
    at ``webhook_port``."""
    bot: dict[str, Any] = {"answer_timeout": answer_timeout, "continue_on": list(continue_on)}
    if webhook_port is not None:
        bot["webhook"] = {
            "url": f"http://127.0.0.1:{webhook_port}/switchboard",
            "secret_env": SECRET_ENV,
            "timeout": 5.0,
        }
    routing = {
        "queues": {"default": {"bot": BOT, "returning": returning}},
        "bots": {BOT: bot},
    }
    return make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"domains": {"acme": {"webchat": {"enabled": True}, "routing": routing}}},
    )


SERVICE_ENVIRON = {"SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN, SECRET_ENV: SECRET}


@contextlib.asynccontextmanager
async def feeds(config: Config) -> AsyncIterator[tuple[Feed, Feed, Feed]]:
    """The routing, outbound and bots topics."""
    async with (
        Feed(config, "conversations.routing", ROUTING_DECODER) as routing,
        Feed(config, "conversations.outbound", OUTBOUND_DECODER) as outbound,
        Feed(config, "bots.events", BOT_EVENT_DECODER) as bots,
    ):
        yield routing, outbound, bots


def types_of(events: list[Any]) -> list[str]:
    return [type(e).__struct_config__.tag for e in events]


async def register(service: Service, agent_id: str, skills: tuple[str, ...]) -> str:
    """Register an agent for web chat (offline until told otherwise); its URL."""
    url = service.url(f"/v1/domains/acme/agents/{agent_id}")
    profile = {"name": agent_id.title(), "skills": list(skills), "capacity": {"webchat": 3}}
    async with service.session.put(url, json=profile, headers=ADMIN) as r:
        assert r.status == 202, await r.text()
    return url


async def online(
    service: Service, pool: asyncpg.Pool, *agents: tuple[str, tuple[str, ...]]
) -> None:
    """Register ``(agent id, skills)`` agents for web chat, online, as PostgreSQL shows."""
    for agent_id, skills in agents:
        url = await register(service, agent_id, skills)
        async with service.session.post(
            url + "/presence", json={"status": "online"}, headers=ADMIN
        ) as r:
            assert r.status == 202, await r.text()
    ids = [agent_id for agent_id, _ in agents]
    await wait_until(
        lambda: pool.fetchval(
            "SELECT count(*) = $2 FROM agents WHERE domain = 'acme' AND presence = 'online'"
            " AND agent_id = ANY($1)",
            ids,
            len(ids),
        ),
        what=f"{ids} online",
    )


async def say(service: Service, visitor: str, text: str) -> str:
    """The visitor writes ``text``; the message's event id."""
    status, answer = await service.webchat(
        {"session_id": visitor, "message_id": uuid.uuid4().hex, "text": text}
    )
    assert status == 202, answer
    event_id: str = answer["event_id"]
    return event_id


async def command(service: Service, conversation_id: str, action: str, body: Any) -> Any:
    url = service.url(f"/v1/domains/acme/conversations/{conversation_id}/{action}")
    async with service.session.post(url, json=body, headers=ADMIN) as r:
        answer = await r.json()
        assert (r.status, answer.get("status")) == (202, "completed"), answer
        return answer


async def customer_id(service: Service, visitor: str) -> str:
    return (await service.visitor(visitor)).customer_id


@contextlib.asynccontextmanager
async def database(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


# -- the bots as processes ------------------------------------------------------------------


class BotProcess:
    """A reference bot (``python -m tools.bots.<module>``) as a child process, its log in a
    file."""

    def __init__(self, module: str, args: list[str], log_path: Path, env: Mapping[str, str]):
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"tools.bots.{module}", *args],
            cwd=REPO,
            env={**os.environ, "SWITCHBOARD_LOG_FORMAT": "json", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_line(self, text: str, timeout: float = 20) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"bot exited {self.process.returncode}: {self.log()[-3000:]}")
            return text in self.log()

        await wait_until(seen, timeout=timeout, interval=0.05, what=f"bot log {text!r}")

    def stop(self) -> int:
        """SIGTERM, and the exit status (the bot must stop cleanly)."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            return self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self._log.close()


@contextlib.asynccontextmanager
async def kafka_bot(config: Config, tmp_path: Path, *extra: str) -> AsyncIterator[BotProcess]:
    """``tools.bots.kafka_bot`` for acme's ``helper``, once the group gave it its partitions."""
    bot = BotProcess(
        "kafka_bot",
        [
            "--bootstrap",
            str(config.kafka.bootstrap_servers),
            "--topic-prefix",
            config.kafka.topic_prefix,
            "--group",
            f"bot-{config.kafka.topic_prefix}",
            "--domain",
            "acme",
            "--bot",
            BOT,
            *extra,
        ],
        tmp_path / "kafka_bot.log",
        # The service seals the routing events: the bot opens them, and seals its answers,
        # with the service database's topic keys.
        {"DATABASE_URL": str(config.database.url)},
    )
    try:
        await bot.wait_for_line("bot_partitions_assigned")
        yield bot
    finally:
        status = bot.stop()
    assert status == 0, bot.log()[-3000:]
    assert "bot_stopped" in bot.log()


@contextlib.asynccontextmanager
async def http_bot(
    port: int, tmp_path: Path, *extra: str, secret: str = SECRET
) -> AsyncIterator[BotProcess]:
    """``tools.bots.http_bot`` on ``port``, once it answers."""
    bot = BotProcess(
        "http_bot",
        ["--port", str(port), "--secret-env", SECRET_ENV, *extra],
        tmp_path / "http_bot.log",
        {SECRET_ENV: secret},
    )

    async def healthy() -> bool:
        if bot.process.poll() is not None:
            raise AssertionError(f"http bot exited: {bot.log()[-3000:]}")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as r,
            ):
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_until(healthy, timeout=20, what="http bot healthy")
        yield bot
    finally:
        status = bot.stop()
    assert status == 0, bot.log()[-3000:]


@pytest.fixture
def webhook_port() -> int:
    return free_port()


# -- scenarios shared by both ways of reaching the bot ----------------------------------------


async def contained(service: Service, pool: asyncpg.Pool, config: Config) -> None:
    """(a) The bot answers "order status" and closes on "thanks": contained, nobody
    assigned although a person was online all along."""
    await online(service, pool, ("ann", ()))
    async with feeds(config) as (routing, outbound, _):
        visitor = await customer_id(service, "v-contained")
        first = await say(service, "v-contained", "Order status")
        assigned = await routing.first(ConversationBotAssigned, customer_id=visitor)
        conversation = assigned.conversation_id
        assert (assigned.bot_id, assigned.reason) == (BOT, "bot_first")
        turn = await routing.first(BotTurn, conversation_id=conversation, message_id=first)
        routed = await routing.first(MessageRouted, conversation_id=conversation)
        assert routed.bot_id == BOT
        asked = await outbound.first(ReplyRequested, conversation_id=conversation)
        assert (asked.bot_id, asked.agent_id) == (BOT, None)
        assert "order number" in asked.text
        assert turn.answer_by > turn.occurred_at

        await say(service, "v-contained", "Thanks!")
        closed = await routing.first(ConversationClosed, conversation_id=conversation)
        assert (closed.contained, closed.bot_id, closed.agent_id) == (True, BOT, None)
        goodbye = await outbound.first(
            ReplyRequested, lambda r: r.id != asked.id, conversation_id=conversation
        )
        assert (goodbye.bot_id, goodbye.text) == (BOT, "Glad I could help. Goodbye!")
        sequence = types_of(routing.of(conversation))
        assert "conversation.assigned" not in sequence, sequence
        assert "conversation.handed_off" not in sequence, sequence
        assert sequence.index("conversation.bot_assigned") < sequence.index("bot.turn"), sequence
        stored = await wait_until(
            lambda: pool.fetchval(
                "SELECT bot_id FROM messages WHERE conversation_id = $1"
                " AND direction = 'outbound' AND text = $2",
                conversation,
                goodbye.text,
            ),
            what="the bot's goodbye stored",
        )
        assert stored == BOT


async def first_conversation_with(
    service: Service, routing: Feed, visitor: str, agent_id: str
) -> str:
    """The visitor's first conversation: they ask for a person at once (the router hands
    off before any turn), ``agent_id`` gets it and closes it. Its id."""
    await say(service, visitor, "talk to a person")
    customer = await customer_id(service, visitor)
    assigned = await routing.first(ConversationAssigned, customer_id=customer)
    assert assigned.agent_id == agent_id
    await command(service, assigned.conversation_id, "close", {})
    await routing.first(ConversationClosed, conversation_id=assigned.conversation_id)
    return assigned.conversation_id


async def handoff_to_last_human(service: Service, pool: asyncpg.Pool, config: Config) -> None:
    """(b) The customer was served by zoe before; in a new conversation the bot hands a
    refund off to people with what it learned: zoe, their last agent with the billing
    skill, gets it although amy (billing too) would win a tie on agent id."""
    await online(service, pool, ("zoe", ("billing",)))
    async with feeds(config) as (routing, outbound, _):
        before = await first_conversation_with(service, routing, "v-refund", "zoe")
        await online(service, pool, ("amy", ("billing",)))
        customer = await customer_id(service, "v-refund")
        await say(service, "v-refund", "Hello")
        assigned = await routing.first(
            ConversationBotAssigned,
            lambda e: e.conversation_id != before,
            customer_id=customer,
        )
        conversation = assigned.conversation_id
        await outbound.first(ReplyRequested, conversation_id=conversation, bot_id=BOT)
        await say(service, "v-refund", "I want a refund for order A-1001")

        handed = await routing.first(ConversationHandedOff, conversation_id=conversation)
        assert (handed.bot_id, handed.reason) == (BOT, HandoffReason.OUT_OF_SCOPE)
        assert handed.handoff.intent == "refund"
        assert handed.handoff.skills == ("billing",)
        assert handed.handoff.attributes == {"order_id": "A-1001"}
        assert "refund for order A-1001" in handed.handoff.summary
        assert handed.to_agent_id is None
        person = await routing.first(ConversationAssigned, conversation_id=conversation)
        assert person.agent_id == "zoe"
        assert person.handoff is not None
        assert person.handoff.bot_id == BOT
        assert person.handoff.handoff == handed.handoff
        sequence = types_of(routing.of(conversation))
        assert sequence.index("conversation.handed_off") < sequence.index(
            "conversation.assigned"
        ), sequence
        told = await outbound.first(
            ReplyRequested, lambda r: "billing team" in r.text, conversation_id=conversation
        )
        assert told.bot_id == BOT


async def relay_while_nobody_can_come(
    service: Service, pool: asyncpg.Pool, config: Config, bot: BotProcess
) -> None:
    """(g) zoe, the only person with the billing skill, is offline. The customer writes
    "refund": the bot hands off, and the conversation waits first in line with nobody
    online to take it (``position`` 0, ``agents_online`` 0). The bot relays that to the
    customer (``bot.replied`` without a turn, ids from the hand-off's), and the router
    sends it. Once zoe comes online she gets the conversation; a relay then is refused."""
    await register(service, "zoe", ("billing",))
    async with feeds(config) as (routing, outbound, bots):
        customer = await customer_id(service, "v-wait")
        await say(service, "v-wait", "refund")
        assigned = await routing.first(ConversationBotAssigned, customer_id=customer)
        conversation = assigned.conversation_id
        handed = await routing.first(ConversationHandedOff, conversation_id=conversation)
        assert (handed.bot_id, handed.reason) == (BOT, HandoffReason.OUT_OF_SCOPE)
        assert (handed.position, handed.agents_online, handed.opens_at) == (0, 0, None)
        assert handed.continue_on == (Channel.EMAIL,)
        [expected] = relay(handed)
        if handed.expected_wait_seconds is None:  # a new domain: nothing measured yet
            assert expected.text == (f"You're next in line. {ASAP} You can also continue by email.")
        relayed = await bots.first(BotReplied, conversation_id=conversation, turn_id=None)
        assert (relayed.id, relayed.text, relayed.in_reply_to) == (
            event_id(handed, "0"),
            expected.text,
            None,
        )
        told = await outbound.first(
            ReplyRequested, conversation_id=conversation, text=expected.text
        )
        assert (told.bot_id, told.agent_id) == (BOT, None)
        handing = await outbound.first(
            ReplyRequested, lambda r: "billing team" in r.text, conversation_id=conversation
        )
        replies = [e for e in outbound.of(conversation) if isinstance(e, ReplyRequested)]
        assert replies.index(handing) < replies.index(told), "the hand-off's text first"
        sequence = types_of(routing.of(conversation))
        assert "conversation.assigned" not in sequence, sequence

        await online(service, pool, ("zoe", ("billing",)))
        person = await routing.first(ConversationAssigned, conversation_id=conversation)
        assert person.agent_id == "zoe"
        assert person.handoff is not None
        await bot.wait_for_line("handoff_relayed")

        # The bot speaks again, too late: a person has the conversation.
        late = BotReplied(
            id=str(uuid.uuid4()),
            domain="acme",
            occurred_at=time.time(),
            conversation_id=conversation,
            bot_id=BOT,
            text="Still there? You're next in line.",
        )
        producer = kafka.make_producer(config, {})
        await producer.start()
        try:
            await kafka.EventPublisher(producer, config.topic(topics.BOTS), "test").publish([late])
        finally:
            await producer.stop()
        rejected = await routing.first(CommandRejected, command_id=late.id)
        assert (rejected.reason, rejected.conversation_id) == ("not_bot_owner", conversation)
        replies = [e for e in outbound.of(conversation) if isinstance(e, ReplyRequested)]
        assert late.text not in [r.text for r in replies]


# -- over Kafka -------------------------------------------------------------------------------


async def test_kafka_bot_contains_a_conversation(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    config = bot_config(infrastructure, database_url)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path, "--stop-after", "2") as bot,
    ):
        await contained(service, pool, config)
        # Both turns answered: the bot leaves by itself (--stop-after 2).
        await wait_until(lambda: bot.process.poll() is not None, what="the bot done")


async def test_kafka_bot_hands_a_refund_to_the_customers_last_human(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    config = bot_config(infrastructure, database_url)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path),
    ):
        await handoff_to_last_human(service, pool, config)


async def test_kafka_bot_tells_the_waiting_customer_what_to_expect(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    config = bot_config(infrastructure, database_url, continue_on=("email",))
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path) as bot,
    ):
        await relay_while_nobody_can_come(service, pool, config, bot)


async def test_a_takeover_mid_turn_refuses_the_bots_late_reply(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """(c) The bot takes 3 s to answer; ann takes the conversation over meanwhile. She
    owns it at once, and the bot's answer, when it comes, is refused and never sent."""
    config = bot_config(infrastructure, database_url, answer_timeout=15)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path, "--delay", "3"),
        feeds(config) as (routing, outbound, bots),
    ):
        await online(service, pool, ("ann", ()))
        message = await say(service, "v-takeover", "Order status")
        turn = await routing.first(BotTurn, message_id=message)
        conversation = turn.conversation_id
        await command(service, conversation, "takeover", {"agent_id": "ann"})

        handed = await routing.first(ConversationHandedOff, conversation_id=conversation)
        assert (handed.reason, handed.to_agent_id) == (HandoffReason.TAKEOVER, "ann")
        assigned = await routing.first(ConversationAssigned, conversation_id=conversation)
        assert assigned.agent_id == "ann"
        assert assigned.handoff is not None
        assert assigned.handoff.handoff.reason is HandoffReason.TAKEOVER

        late = await bots.first(BotReplied, turn_id=turn.id, timeout=10)
        rejected = await routing.first(CommandRejected, command_id=late.id)
        assert (rejected.reason, rejected.conversation_id) == ("not_bot_owner", conversation)
        # ann's own reply goes out after the refusal: nothing of the bot's came before it.
        reply_url = service.url(f"/v1/domains/acme/conversations/{conversation}/reply")
        async with service.session.post(
            reply_url, json={"text": "Hi, Ann here."}, headers=ADMIN
        ) as r:
            assert r.status == 202, await r.text()
        await outbound.first(ReplyRequested, conversation_id=conversation, agent_id="ann")
        replies = [e for e in outbound.of(conversation) if isinstance(e, ReplyRequested)]
        assert [(r.agent_id, r.bot_id) for r in replies] == [("ann", None)]


async def test_a_bot_that_does_not_answer_hands_off_on_time(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """(d) No bot process: the turn's deadline (answer_timeout 2 s) hands the
    conversation to a person (``bot_timeout``)."""
    config = bot_config(infrastructure, database_url, answer_timeout=2)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        feeds(config) as (routing, _, _),
    ):
        await online(service, pool, ("ann", ()))
        message = await say(service, "v-down", "Hello?")
        turn = await routing.first(BotTurn, message_id=message)
        assert turn.answer_by == pytest.approx(turn.occurred_at + 2, abs=0.01)
        handed = await routing.first(
            ConversationHandedOff, conversation_id=turn.conversation_id, timeout=10
        )
        assert handed.reason is HandoffReason.BOT_TIMEOUT
        assert turn.answer_by <= handed.occurred_at < turn.answer_by + 3
        assigned = await routing.first(ConversationAssigned, conversation_id=turn.conversation_id)
        assert assigned.agent_id == "ann"
        assert assigned.handoff is not None
        assert assigned.handoff.handoff.reason is HandoffReason.BOT_TIMEOUT


async def test_a_bot_answering_after_its_deadline_is_refused(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """(d) with a slow bot: it answers 4 s after a turn due in 2 s. People have the
    conversation by then (``bot_timeout``), and the late answer is refused."""
    config = bot_config(infrastructure, database_url, answer_timeout=2)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path, "--delay", "4"),
        feeds(config) as (routing, _, bots),
    ):
        await online(service, pool, ("ann", ()))
        message = await say(service, "v-slow", "Order status")
        turn = await routing.first(BotTurn, message_id=message)
        handed = await routing.first(ConversationHandedOff, conversation_id=turn.conversation_id)
        assert handed.reason is HandoffReason.BOT_TIMEOUT
        late = await bots.first(BotReplied, turn_id=turn.id, timeout=10)
        assert late.occurred_at > turn.answer_by
        rejected = await routing.first(CommandRejected, command_id=late.id)
        assert rejected.reason == "not_bot_owner"
        assigned = await routing.first(ConversationAssigned, conversation_id=turn.conversation_id)
        assert assigned.agent_id == "ann"


@pytest.mark.parametrize("returning", ["last_agent", "bot"])
async def test_a_returning_customer_goes_to_the_queues_choice(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path, returning: str
) -> None:
    """(e) A customer whose earlier conversation ann handled writes again: with
    ``returning = "last_agent"`` straight to ann, with ``"bot"`` to the bot first.

    "Days later" is a conversation closed, then a new message: the engine's rule looks at
    the customer's last agent (who is still in the domain), not at the time gone by, so no
    clock needs to move."""
    config = bot_config(infrastructure, database_url, returning=returning)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path),
        feeds(config) as (routing, outbound, _),
    ):
        await online(service, pool, ("ann", ()), ("bob", ()))
        before = await first_conversation_with(service, routing, "v-back", "ann")
        customer = await customer_id(service, "v-back")
        message = await say(service, "v-back", "Hello again")
        routed = await routing.first(
            MessageRouted, lambda e: e.conversation_id != before, message_id=message
        )
        conversation = routed.conversation_id
        if returning == "last_agent":
            assert routed.bot_id is None
            assigned = await routing.first(ConversationAssigned, conversation_id=conversation)
            assert (assigned.agent_id, assigned.handoff) == ("ann", None)
            sequence = types_of(routing.of(conversation))
            assert "conversation.bot_assigned" not in sequence, sequence
            assert "bot.turn" not in sequence, sequence
        else:
            assert routed.bot_id == BOT
            bot_assigned = await routing.first(
                ConversationBotAssigned, conversation_id=conversation, customer_id=customer
            )
            assert bot_assigned.reason == "bot_first"
            await routing.first(BotTurn, conversation_id=conversation, message_id=message)
            greeting = await outbound.first(ReplyRequested, conversation_id=conversation)
            assert greeting.bot_id == BOT
            sequence = types_of(routing.of(conversation))
            assert "conversation.assigned" not in sequence, sequence


async def test_asking_for_a_person_hands_off_before_the_bot_sees_the_message(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """(f) "agent" is one of the bot's human keywords: people get the conversation at
    once (``customer_asked``), and the bot gets no turn for that message."""
    config = bot_config(infrastructure, database_url)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path),
        feeds(config) as (routing, outbound, _),
    ):
        await online(service, pool, ("ann", ()))
        first = await say(service, "v-agent", "hi")
        turn = await routing.first(BotTurn, message_id=first)
        conversation = turn.conversation_id
        await outbound.first(ReplyRequested, conversation_id=conversation, bot_id=BOT)
        asked = await say(service, "v-agent", "Agent!")
        handed = await routing.first(ConversationHandedOff, conversation_id=conversation)
        assert handed.reason is HandoffReason.CUSTOMER_ASKED
        assigned = await routing.first(ConversationAssigned, conversation_id=conversation)
        assert assigned.agent_id == "ann"
        await routing.first(MessageRouted, message_id=asked)
        turns = [e for e in routing.of(conversation) if isinstance(e, BotTurn)]
        assert [t.message_id for t in turns] == [first]


async def test_a_hand_back_gets_the_survey_and_its_close_is_not_contained(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """ann hands her conversation back to the bot with a note: the bot asks its survey
    (quick replies) and closes on the rating; a person took part, so it is not contained."""
    config = bot_config(infrastructure, database_url)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        kafka_bot(config, tmp_path),
        feeds(config) as (routing, outbound, _),
    ):
        await online(service, pool, ("ann", ()))
        await say(service, "v-survey", "agent")
        customer = await customer_id(service, "v-survey")
        assigned = await routing.first(ConversationAssigned, customer_id=customer)
        conversation = assigned.conversation_id
        await command(service, conversation, "handback", {"note": "Solved; please ask the survey"})

        back = await routing.first(
            ConversationBotAssigned, conversation_id=conversation, reason="handback"
        )
        assert back.from_agent_id == "ann"
        assert back.note == "Solved; please ask the survey"
        turn = await routing.first(BotTurn, conversation_id=conversation)
        assert (turn.message_id, turn.note) == (None, back.note)  # "agent" got no turn
        survey = await outbound.first(ReplyRequested, conversation_id=conversation, bot_id=BOT)
        assert survey.quick_replies == ("1", "2", "3", "4", "5")
        await say(service, "v-survey", "5")
        closed = await routing.first(ConversationClosed, conversation_id=conversation)
        assert (closed.reason, closed.bot_id, closed.contained) == (
            "survey_answered",
            BOT,
            False,
        )


# -- over HTTP ---------------------------------------------------------------------------------


async def test_http_bot_contains_a_conversation(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path, webhook_port: int
) -> None:
    config = bot_config(infrastructure, database_url, webhook_port=webhook_port)
    async with (
        database(database_url) as pool,
        http_bot(webhook_port, tmp_path) as bot,
        running_service(config, SERVICE_ENVIRON) as service,
    ):
        await contained(service, pool, config)
    assert bot.log().count("turn_answered") == 2


async def test_http_bot_hands_a_refund_to_the_customers_last_human(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path, webhook_port: int
) -> None:
    config = bot_config(infrastructure, database_url, webhook_port=webhook_port)
    async with (
        database(database_url) as pool,
        http_bot(webhook_port, tmp_path),
        running_service(config, SERVICE_ENVIRON) as service,
    ):
        await handoff_to_last_human(service, pool, config)


async def test_http_bot_tells_the_waiting_customer_what_to_expect(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path, webhook_port: int
) -> None:
    config = bot_config(
        infrastructure, database_url, webhook_port=webhook_port, continue_on=("email",)
    )
    async with (
        database(database_url) as pool,
        http_bot(webhook_port, tmp_path) as bot,
        running_service(config, SERVICE_ENVIRON) as service,
    ):
        await relay_while_nobody_can_come(service, pool, config, bot)
    assert bot.log().count("handoff_relayed") == 1


async def test_http_bot_refusing_the_bridges_signature_hands_off_as_a_bot_error(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path, webhook_port: int
) -> None:
    """The bot holds another secret than the service: it answers 401, the turn fails
    (``bot.failed``) and people take the conversation (``bot_error``)."""
    config = bot_config(infrastructure, database_url, webhook_port=webhook_port)
    async with (
        database(database_url) as pool,
        http_bot(webhook_port, tmp_path, secret="not-the-service-secret") as bot,
        running_service(config, SERVICE_ENVIRON) as service,
        feeds(config) as (routing, _, _),
    ):
        await online(service, pool, ("ann", ()))
        message = await say(service, "v-secret", "Order status")
        turn = await routing.first(BotTurn, message_id=message)
        handed = await routing.first(ConversationHandedOff, conversation_id=turn.conversation_id)
        assert handed.reason is HandoffReason.BOT_ERROR
        assigned = await routing.first(ConversationAssigned, conversation_id=turn.conversation_id)
        assert assigned.agent_id == "ann"
    assert "bad_signature" in bot.log()
    assert "turn_answered" not in bot.log()


async def test_http_bot_down_hands_off_as_a_bot_error(
    infrastructure: Infrastructure, database_url: str, webhook_port: int
) -> None:
    """Nothing listens at the webhook: the bridge fails the turn at once (``bot.failed``,
    unreachable), well before the answer's deadline."""
    config = bot_config(infrastructure, database_url, webhook_port=webhook_port)
    async with (
        database(database_url) as pool,
        running_service(config, SERVICE_ENVIRON) as service,
        feeds(config) as (routing, _, _),
    ):
        await online(service, pool, ("ann", ()))
        message = await say(service, "v-nobody", "Order status")
        turn = await routing.first(BotTurn, message_id=message)
        handed = await routing.first(ConversationHandedOff, conversation_id=turn.conversation_id)
        assert handed.reason is HandoffReason.BOT_ERROR
        assert handed.occurred_at < turn.answer_by
        assigned = await routing.first(ConversationAssigned, conversation_id=turn.conversation_id)
        assert assigned.agent_id == "ann"


async def test_a_takeover_mid_call_refuses_the_http_bots_late_answer(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path, webhook_port: int
) -> None:
    """(c) over HTTP: the bot takes 3 s to answer the bridge's call; ann takes over
    meanwhile; the answer the bridge then publishes is refused."""
    config = bot_config(infrastructure, database_url, webhook_port=webhook_port)
    async with (
        database(database_url) as pool,
        http_bot(webhook_port, tmp_path, "--delay", "3"),
        running_service(config, SERVICE_ENVIRON) as service,
        feeds(config) as (routing, outbound, bots),
    ):
        await online(service, pool, ("ann", ()))
        message = await say(service, "v-http-takeover", "Order status")
        turn = await routing.first(BotTurn, message_id=message)
        conversation = turn.conversation_id
        await command(service, conversation, "takeover", {"agent_id": "ann"})
        assigned = await routing.first(ConversationAssigned, conversation_id=conversation)
        assert assigned.agent_id == "ann"
        late = await bots.first(BotReplied, turn_id=turn.id, timeout=10)
        rejected = await routing.first(CommandRejected, command_id=late.id)
        assert rejected.reason == "not_bot_owner"
        reply_url = service.url(f"/v1/domains/acme/conversations/{conversation}/reply")
        async with service.session.post(
            reply_url, json={"text": "Hi, Ann here."}, headers=ADMIN
        ) as r:
            assert r.status == 202, await r.text()
        await outbound.first(ReplyRequested, conversation_id=conversation, agent_id="ann")
        replies = [e for e in outbound.of(conversation) if isinstance(e, ReplyRequested)]
        assert [(r.agent_id, r.bot_id) for r in replies] == [("ann", None)]
