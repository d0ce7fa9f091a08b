"""The HTTP bot bridge: ``bot.turn`` and ``conversation.handed_off`` on
``conversations.routing`` → the bot's webhook → its answer on ``bots.events``.

A bot with a ``webhook`` (``[domains.<d>.routing.bots.<bot>.webhook]``) does not read the
routing topic itself: the adapters call it, one request at a time, with the protocol of
``schemas.bot_webhook``. Two kinds of event are posted (the request's ``type``):

- a ``bot.turn`` of the bot: it answers the customer, hands off or resolves;
- a ``conversation.handed_off`` of the bot (``relayable``) while the conversation waits
  for a person (``position`` or ``opens_at`` set; not a ``takeover``): it tells the
  customer what to expect. Only its ``reply`` actions are published (``relay_events``);
  a ``handoff`` or ``resolve`` is dropped (the ``dropped`` count of the log line), as the
  bot's part has ended. The router sends the replies until a person has the
  conversation (``router.engine.bots``, rule 3), and refuses them after.

1. ``getmany`` from ``conversations.routing`` (consumer group ``<consumer_group>-bots``);
   nothing while no domain has a webhook bot (the partitions are paused: the bridge
   costs the broker no fetches), and from where it stopped once one has.
   Only the records of domains with a webhook bot (the record key) are opened
   (``runtime.sealing``) and decoded; of those, a ``bot.turn`` or a relayable
   ``conversation.handed_off`` of a bot with a webhook is taken, anything else passes. A
   record that does not decode is counted (``outcome="undecodable"``) and passed: it is
   the router's own output, no one's to dead-letter. So is one that does not open (its
   customer was erased): no bot is called with it. While PostgreSQL (the keys) fails,
   the batch is read again a second later.
2. Wait for the conversation's previous request: the turns and hand-offs of one
   conversation go in order, conversations in parallel (``PARALLEL_CONVERSATIONS`` at
   most). A turn whose ``answer_by`` has passed is skipped (``skipped_late``): the router
   has handed the conversation to people already. A hand-off has no deadline but the
   call's.
3. POST the event as JSON to ``webhook.url``, signed (``signature``) with the secret
   ``webhook.secret_env`` names, read at each call: the secrets file is read again with
   each configuration version. A turn's call has ``min(webhook.timeout, time left until
   answer_by)``, a hand-off's ``webhook.timeout``; the answer's body is read up to
   ``ANSWER_MAX_BYTES``.
4. Publish (acks=all) what the answer means on ``bots.events``, keyed by domain. For a
   turn: each action as an event (``answer_events``), or one ``bot.failed``
   (``failed_event``: ``timeout``, ``unreachable``, ``http_<status>``, ``bad_answer``,
   ``secret_missing``), each with the turn's id (``turn_id``) and its
   ``provider_message_id`` (``in_reply_to``: email replies thread). For a hand-off: its
   replies, ``bot.replied`` without ``turn_id`` nor ``in_reply_to``; a failure publishes
   nothing (people have the conversation already) and is only counted. Ids are
   deterministic (``event_id``): an event read again publishes the same ids. A broker
   that does not acknowledge is tried again until it does, the bot not called again.
5. Commit the offsets, per partition up to the first request not yet published, at most
   every ``COMMIT_INTERVAL_SECONDS`` (and when partitions move or the bridge stops).

The bot is not called again for an event whose answer is published and committed. It may
be called twice for one (the process stopped, or the partition moved, between the call and
the commit, up to a commit interval later; the routing topic holds an event twice): the
events then have the same ids, for the router to drop the copy. A bot that answers differently the second time still
gets ids ``<event id>/0``, ``/1`` …: a bot should answer an event id it has seen as
before.

Metrics count each call by outcome (``switchboard_bot_webhook_calls_total``): a hand-off
answered with actions dropped is ``answered`` all the same (the bot answered; it is no
failure), and its log line says how many were dropped. Logs carry the domain, bot,
conversation and turn (or hand-off) ids, the outcome and the HTTP status, never the
event's text or addresses, the URL, the secret or the bot's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never

import aiohttp
import msgspec
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from adapters.base import hmac_hex, read_bounded
from adapters.config import SecretMissing, resolve_secret
from runtime import kafka
from runtime.callbacks import AllowedAddresses, callback_session
from runtime.config import ServiceConfig
from runtime.db import DATABASE_ERRORS
from runtime.kafka import BrokerUnavailable
from runtime.metrics import Metrics
from runtime.sealing import TopicKeys
from schemas import ROUTING_DECODER, BotTurn, ConversationHandedOff, HandoffReason, topics
from schemas.bot_webhook import (
    SIGNATURE_HEADER,
    WEBHOOK_TIMEOUT_MAX,
    BotAction,
    BotWebhook,
    BotWebhookAnswer,
    BotWebhookRequest,
    HandoffAction,
    ReplyAction,
    ResolveAction,
)
from schemas.bots import BotEvent, BotFailed, BotHandoffRequested, BotReplied, BotResolved
from schemas.cloudevents import type_name

log = structlog.get_logger(__name__)

PARALLEL_CONVERSATIONS = 64
"""Conversations whose bot is being called at once, per adapter process. More than the
egress's 16: a bot (a language model behind it) takes seconds to answer, not a provider's
milliseconds."""
TRACKED_MAX = 1000
"""Requests (turns and hand-offs) read and not yet committed; beyond it the partitions
pause until they finish."""
ANSWER_MAX_BYTES = 256 * 1024
"""Largest answer body read; a longer one is ``bad_answer``."""
STOP_GRACE_SECONDS = 20.0
"""How long stopping waits for the calls in flight (under ``runtime.tasks.STOP_TIMEOUT``);
the requests still unanswered then are read again by the next process."""
PUBLISH_RETRY_MAX_SECONDS = 5.0
"""Longest pause between attempts to publish an answer the broker did not acknowledge."""
COMMIT_INTERVAL_SECONDS = 1.0
"""Offsets are committed at most this often while reading (and always when partitions
move or the bridge stops): the bridge reads the whole routing topic, and a commit per
batch was a broker round trip per fetch."""
EVENT_IDS = uuid.UUID("d67b7eb5-635f-4102-bb58-17d93a706bd8")
"""Namespace of the ids of the events published for a bot (``event_id``)."""

Webhooks = Mapping[str, Mapping[str, BotWebhook]]
"""Each domain's bots with a webhook: ``{domain: {bot_id: webhook}}``."""


class Outcome(enum.StrEnum):
    """What became of one turn or hand-off (the ``outcome`` label)."""

    ANSWERED = "answered"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    HTTP_ERROR = "http_error"
    BAD_ANSWER = "bad_answer"
    SECRET_MISSING = "secret_missing"  # noqa: S105 (an outcome, not a secret)
    SKIPPED_LATE = "skipped_late"
    UNDECODABLE = "undecodable"


class Publisher(Protocol):
    """Publishes on ``bots.events`` and waits for the broker's acknowledgement
    (``runtime.kafka.EventPublisher``); raises ``BrokerUnavailable`` when it does not come."""

    async def publish(self, events: Sequence[BotEvent]) -> None: ...


# -- the protocol (no I/O) ----------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Switchboard-Signature`` value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of
    "<t>.<body>">``. The timestamp is signed with the body so that a recorded request
    cannot be replayed later than the bot's tolerance (5 minutes)."""
    return f"t={timestamp},v1={hmac_hex(secret, f'{timestamp}.'.encode() + body)}"


def event_id(request: BotWebhookRequest, suffix: str) -> str:
    """The id of an event published for ``request`` (a turn or a hand-off): the same each
    time it is handled, so an event read again does not make new events."""
    return str(uuid.uuid5(EVENT_IDS, f"{request.id}/{suffix}"))


def relayable(handed_off: ConversationHandedOff) -> bool:
    """Whether the bot is asked what to tell the customer about its hand-off: the
    conversation waits for a person (on a waiting list, or until its queue opens), and
    no person took it over."""
    return handed_off.reason is not HandoffReason.TAKEOVER and (
        handed_off.position is not None or handed_off.opens_at is not None
    )


def _answering(request: BotWebhookRequest, suffix: str, now: float) -> dict[str, Any]:
    """The fields every event answering ``request`` carries: its deterministic id, and,
    for a turn, the turn it answers and the customer's message it threads under."""
    turn = request if isinstance(request, BotTurn) else None
    return {
        "id": event_id(request, suffix),
        "domain": request.domain,
        "occurred_at": now,
        "conversation_id": request.conversation_id,
        "bot_id": request.bot_id,
        "turn_id": None if turn is None else turn.id,
        "in_reply_to": None if turn is None else turn.provider_message_id,
    }


def _replied(fields: dict[str, Any], action: ReplyAction) -> BotReplied:
    return BotReplied(
        **fields,
        text=action.text,
        attachments=action.attachments,
        quick_replies=action.quick_replies,
        progress=action.progress,
    )


def answer_events(turn: BotTurn, actions: Sequence[BotAction], now: float) -> list[BotEvent]:
    """The ``bots.events`` of a bot's answer to ``turn``, in its order, threaded under the
    customer's message (``in_reply_to``), with ids that depend on the turn and the position
    alone; a hand-off or a resolve ends the bot's part, and the actions after it are
    dropped (the protocol of ``schemas.bot_webhook``, whatever carries the answer)."""
    events: list[BotEvent] = []
    for index, action in enumerate(actions):
        fields = _answering(turn, str(index), now)
        match action:
            case ReplyAction():
                events.append(_replied(fields, action))
            case HandoffAction():
                events.append(
                    BotHandoffRequested(**fields, handoff=action.handoff, text=action.text)
                )
                break
            case ResolveAction():
                events.append(BotResolved(**fields, text=action.text, reason=action.reason))
                break
            case _:
                assert_never(action)
    return events


def relay_events(
    handed_off: ConversationHandedOff, actions: Sequence[BotAction], now: float
) -> list[BotReplied]:
    """The ``bots.events`` of a bot's answer to its own hand-off: its ``reply`` actions,
    in order, as ``bot.replied`` without a turn (the router sends them while the
    conversation waits for a person); a ``handoff`` or a ``resolve`` is dropped (the bot's
    part has ended). Ids depend on the hand-off's id and the action's position alone."""
    return [
        _replied(_answering(handed_off, str(index), now), action)
        for index, action in enumerate(actions)
        if isinstance(action, ReplyAction)
    ]


def failed_event(turn: BotTurn, error: str, now: float) -> BotFailed:
    """``bot.failed`` for ``turn``: people take the conversation (``bot_error``)."""
    return BotFailed(**_answering(turn, "failed", now), error=error)


_ANSWER_DECODER = msgspec.json.Decoder(BotWebhookAnswer)


@dataclass(frozen=True, slots=True)
class CallResult:
    """What one call of a bot's webhook came to."""

    outcome: Outcome
    answer: BotWebhookAnswer | None = None
    """The answer (``ANSWERED`` only)."""
    error: str = ""
    """The ``bot.failed`` error code (failures only)."""


def read_answer(raw: bytes) -> CallResult:
    """A ``200``'s body as the bot's answer, or ``bad_answer``."""
    try:
        answer = _ANSWER_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return CallResult(Outcome.BAD_ANSWER, error="bad_answer")
    return CallResult(Outcome.ANSWERED, answer=answer)


async def call(
    session: aiohttp.ClientSession,
    webhook: BotWebhook,
    request: BotWebhookRequest,
    secret: str | None,
    *,
    within: float,
    now: float,
) -> CallResult:
    """One POST of ``request`` (a turn or a hand-off) to the bot (step 3), answered
    ``within`` seconds or ``timeout``; never raising for what the bot or the network
    does."""
    body = msgspec.json.encode(request)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, int(now), body)
    try:
        async with (
            asyncio.timeout(within),
            session.post(webhook.url, data=body, headers=headers, allow_redirects=False) as reply,
        ):
            if reply.status != 200:
                return CallResult(Outcome.HTTP_ERROR, error=f"http_{reply.status}")
            raw = await read_bounded(reply, ANSWER_MAX_BYTES)
    except TimeoutError:
        return CallResult(Outcome.TIMEOUT, error="timeout")
    except (aiohttp.ClientError, OSError):
        return CallResult(Outcome.UNREACHABLE, error="unreachable")
    if raw is None:
        return CallResult(Outcome.BAD_ANSWER, error="bad_answer")
    return read_answer(raw)


# -- offsets ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A turn or a hand-off read from a partition, until what its answer means is
    published."""

    offset: int
    done: bool = False


@dataclass(slots=True)
class _Partition:
    """What of a partition may be committed: every record before its first request not
    done."""

    requests: deque[_Pending] = field(default_factory=deque)
    end: int | None = None
    """The offset after the last record read (None: none read yet)."""
    committed: int | None = None

    def committable(self) -> int | None:
        while self.requests and self.requests[0].done:
            self.requests.popleft()
        return self.requests[0].offset if self.requests else self.end


# -- the worker ---------------------------------------------------------------------------


class BotBridge:
    """Calls the HTTP bots of the routing topic's turns and hand-offs and publishes their
    answers (the module docstring's steps). ``reconfigure`` follows new configuration
    versions."""

    def __init__(
        self,
        config: ServiceConfig,
        webhooks: Webhooks,
        environ: Mapping[str, str],
        publisher: Publisher,
        metrics: Metrics,
        *,
        keys: TopicKeys,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._keys = keys
        self._webhooks = webhooks
        self._environ = environ
        """Looked up at each call: the secrets file is read again with each version."""
        self._publisher = publisher
        self._metrics = metrics
        self._clock = clock
        self._topic = config.topic(topics.ROUTING)
        self._stopping = asyncio.Event()
        self._gate = asyncio.Semaphore(PARALLEL_CONVERSATIONS)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._tails: dict[tuple[str, str], asyncio.Task[None]] = {}
        """The last task (a turn's or a hand-off's) of each conversation: the next one
        waits for it."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._commit_lock = asyncio.Lock()
        self._committed_at = 0.0
        self._paused = False
        self._failure: BaseException | None = None

    def stop(self) -> None:
        self._stopping.set()

    def reconfigure(self, webhooks: Webhooks) -> None:
        """A new configuration version: turns and hand-offs from now on reach these
        bots."""
        self._webhooks = webhooks

    async def run(self) -> None:
        consumer = kafka.group_consumer(self._config, self._environ, "bots")
        consumer.subscribe([self._topic], listener=_Rebalance(self, consumer))
        if not await kafka.start_consumer_when_reachable(consumer, self._stopping, name="bots"):
            return
        try:
            async with callback_session(
                AllowedAddresses(self._config.callbacks.allowed_networks),
                connections=PARALLEL_CONVERSATIONS,
                # Each call has its own timeout; this only bounds what escapes it.
                total_seconds=WEBHOOK_TIMEOUT_MAX + 5,
                user_agent="Switchboard-bot-bridge",
            ) as session:
                while not self._stopping.is_set():
                    await self._step(consumer, session)
                await self._settle()
                await self._commit(consumer)
        finally:
            await self._cancel_all()
            await kafka.stop_consumer(consumer, name="bot-bridge")
        if self._failure is not None:
            raise self._failure

    async def _step(self, consumer: AIOKafkaConsumer, session: aiohttp.ClientSession) -> None:
        """Step 1 for one batch (steps 2-4 go on in a task per request), then step 5."""
        self._pause_or_resume(consumer)
        # Step 1
        try:
            batch = await kafka.fetch(consumer, self._stopping, timeout_ms=500, max_records=200)
        except KafkaError as error:
            log.warning("bot_bridge_fetch_failed", error=type(error).__name__)
            await asyncio.sleep(1)
            return
        webhooks = self._webhooks
        wanted = [  # the others are not opened: most of the topic is other domains' routing
            record
            for records in batch.values()
            for record in records
            if _domain_of(record) in webhooks
        ]
        try:
            opened = {
                (record.partition, record.offset): value
                for record, value in await self._keys.opened(wanted)
            }
        except DATABASE_ERRORS as error:
            log.warning("bot_bridge_open_failed", error=type(error).__name__)
            for tp, records in batch.items():
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                    consumer.seek(tp, records[0].offset)
            await asyncio.sleep(1)
            return
        for tp, records in batch.items():
            partition = self._partitions.setdefault(tp, _Partition())
            for record in records:
                if (record.partition, record.offset) in opened:
                    value = opened[record.partition, record.offset]
                    request = self._request_of(record, value)
                    if request is not None:
                        self._start(request, partition, record.offset, session)
                partition.end = record.offset + 1
        # Step 5
        if time.monotonic() - self._committed_at >= COMMIT_INTERVAL_SECONDS:
            self._committed_at = time.monotonic()
            await self._commit(consumer)

    def _request_of(
        self, record: ConsumerRecord[bytes, bytes], value: bytes | None
    ) -> BotWebhookRequest | None:
        """The record's event, its ``value`` opened (None: it does not open), when it is
        for a bot with a webhook: a turn, or a hand-off whose customer waits
        (``relayable``)."""
        webhooks = self._webhooks
        if value is None:
            self._undecodable(record, "unopenable")
            return None
        try:
            event = ROUTING_DECODER.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self._undecodable(record, type(error).__name__)
            return None
        match event:
            case BotTurn():
                request: BotWebhookRequest = event
            case ConversationHandedOff() if relayable(event):
                request = event
            case _:
                return None
        if request.bot_id not in webhooks.get(request.domain, {}):
            return None
        return request

    def _undecodable(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        domain = _domain_of(record)
        metrics = self._metrics
        metrics.for_domain(domain).counter(metrics.bot_webhook_calls, "", Outcome.UNDECODABLE).inc()
        log.warning(
            "bot_bridge_undecodable",
            domain=domain,
            partition=record.partition,
            offset=record.offset,
            error=error,
        )

    def _start(
        self,
        request: BotWebhookRequest,
        partition: _Partition,
        offset: int,
        session: aiohttp.ClientSession,
    ) -> None:
        pending = _Pending(offset)
        partition.requests.append(pending)
        key = (request.domain, request.conversation_id)
        task = asyncio.create_task(
            self._handle(request, pending, self._tails.get(key), session),
            name=f"bot-call-{request.conversation_id}",
        )
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]
        if task.cancelled() or (error := task.exception()) is None:
            return
        # Our bug, not the bot's nor the network's: stop, and say so when run() returns.
        log.error("bot_bridge_failed", error=type(error).__name__)
        self._failure = self._failure or error
        self._stopping.set()

    async def _handle(
        self,
        request: BotWebhookRequest,
        pending: _Pending,
        previous: asyncio.Task[None] | None,
        session: aiohttp.ClientSession,
    ) -> None:
        """Steps 2-4 for one request; ``pending`` is done once what its answer means is
        published."""
        # Step 2
        if previous is not None:
            await asyncio.wait([previous])
        async with self._gate:
            webhook = self._webhooks.get(request.domain, {}).get(request.bot_id)
            if webhook is None:
                pending.done = True  # the bot lost its webhook since: it reads Kafka itself
                return
            match request:
                case BotTurn():
                    done = await self._turn(session, webhook, request)
                case ConversationHandedOff():
                    done = await self._relay(session, webhook, request)
                case _:
                    assert_never(request)
            pending.done = done

    async def _turn(
        self, session: aiohttp.ClientSession, webhook: BotWebhook, turn: BotTurn
    ) -> bool:
        """Steps 2-4 of a turn, its predecessor done; False when stopping before its answer
        is published."""
        left = turn.answer_by - self._clock()
        if left <= 0:
            metrics = self._metrics
            bound = metrics.for_domain(turn.domain)
            bound.counter(
                metrics.bot_webhook_calls, bound.bot(turn.bot_id), Outcome.SKIPPED_LATE
            ).inc()
            log.info(
                "bot_turn",
                domain=turn.domain,
                bot=turn.bot_id,
                conversation_id=turn.conversation_id,
                turn_id=turn.id,
                outcome=str(Outcome.SKIPPED_LATE),
            )
            return True
        # Step 3
        result, seconds = await self._timed_call(
            session, webhook, turn, within=min(webhook.timeout, left)
        )
        # Step 4
        now = self._clock()
        if result.answer is not None:
            events = answer_events(turn, result.answer.actions, now)
        else:
            events = [failed_event(turn, result.error, now)]
        (log.info if result.answer is not None else log.warning)(
            "bot_turn",
            domain=turn.domain,
            bot=turn.bot_id,
            conversation_id=turn.conversation_id,
            turn_id=turn.id,
            outcome=str(result.outcome),
            error=result.error or None,
            events=[type_name(type(event)) for event in events],
            seconds=round(seconds, 3),
        )
        return await self._publish(turn, events)

    async def _relay(
        self,
        session: aiohttp.ClientSession,
        webhook: BotWebhook,
        handed_off: ConversationHandedOff,
    ) -> bool:
        """Steps 3-4 of a hand-off: its replies published, the rest of the answer dropped,
        a failure only counted (people have the conversation already, whatever the bot
        says). False when stopping before the replies are published."""
        # Step 3
        result, seconds = await self._timed_call(
            session, webhook, handed_off, within=webhook.timeout
        )
        # Step 4
        actions = () if result.answer is None else result.answer.actions
        events = relay_events(handed_off, actions, self._clock())
        dropped = len(actions) - len(events)
        (log.info if result.answer is not None and not dropped else log.warning)(
            "bot_relay",
            domain=handed_off.domain,
            bot=handed_off.bot_id,
            conversation_id=handed_off.conversation_id,
            handed_off_id=handed_off.id,
            outcome=str(result.outcome),
            error=result.error or None,
            events=[type_name(type(event)) for event in events],
            dropped=dropped,
            seconds=round(seconds, 3),
        )
        if not events:
            return True
        return await self._publish(handed_off, events)

    async def _timed_call(
        self,
        session: aiohttp.ClientSession,
        webhook: BotWebhook,
        request: BotWebhookRequest,
        *,
        within: float,
    ) -> tuple[CallResult, float]:
        """Step 3, counted by outcome and timed: the result and the call's seconds."""
        metrics = self._metrics
        bound = metrics.for_domain(request.domain)
        bot = bound.bot(request.bot_id)
        started = time.monotonic()
        result = await self._call(session, webhook, request, within=within)
        seconds = time.monotonic() - started
        if result.outcome is not Outcome.SECRET_MISSING:
            bound.histogram(metrics.bot_webhook_seconds, bot).observe(seconds)
        bound.counter(metrics.bot_webhook_calls, bot, result.outcome).inc()
        return result, seconds

    async def _call(
        self,
        session: aiohttp.ClientSession,
        webhook: BotWebhook,
        request: BotWebhookRequest,
        *,
        within: float,
    ) -> CallResult:
        secret = None
        if webhook.secret_env is not None:
            try:
                secret = resolve_secret(webhook.secret_env, self._environ)
            except SecretMissing as error:
                # Never unsigned when a secret is configured: a turn fails at once and
                # people take over, rather than waiting for the router's deadline.
                log.error(
                    "bot_webhook_secret_missing",
                    domain=request.domain,
                    bot=request.bot_id,
                    variable=error.env_name,
                )
                return CallResult(Outcome.SECRET_MISSING, error="secret_missing")
        return await call(session, webhook, request, secret, within=within, now=self._clock())

    async def _publish(self, request: BotWebhookRequest, events: Sequence[BotEvent]) -> bool:
        """Publish until the broker acknowledges; False when stopping first (the request
        is then read again by the next process)."""
        delay = 0.5
        while True:
            try:
                await self._publisher.publish(events)
                return True
            except BrokerUnavailable as error:
                log.warning(
                    "bot_answer_publish_failed",
                    domain=request.domain,
                    conversation_id=request.conversation_id,
                    event_id=request.id,
                    error=str(error),
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return False
            delay = min(delay * 2, PUBLISH_RETRY_MAX_SECONDS)

    def _pause_or_resume(self, consumer: AIOKafkaConsumer) -> None:
        """Stop reading while ``TRACKED_MAX`` requests wait for their commit, or while no
        domain has a webhook bot (nothing read would be for one); read on otherwise.
        Pausing keeps the group membership and fetches nothing."""
        tracked = sum(len(p.requests) for p in self._partitions.values())
        full = tracked >= TRACKED_MAX
        idle = not any(self._webhooks.values())
        if (full or idle) and not self._paused:
            consumer.pause(*consumer.assignment())
            self._paused = True
            if full:
                log.warning("bot_bridge_paused", requests=tracked)
        elif not (full or idle) and self._paused:
            consumer.resume(*consumer.paused())
            self._paused = False
            log.info("bot_bridge_resumed", requests=tracked)

    async def _commit(
        self, consumer: AIOKafkaConsumer, only: set[TopicPartition] | None = None
    ) -> None:
        """Step 5: commit each partition up to its first request not published yet."""
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            states: list[tuple[_Partition, int]] = []
            for tp, partition in self._partitions.items():
                if only is not None and tp not in only:
                    continue
                offset = partition.committable()
                if offset is not None and offset != partition.committed:
                    offsets[tp] = offset
                    states.append((partition, offset))
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except KafkaError as error:
                log.warning("bot_bridge_commit_failed", error=type(error).__name__)
                return
            for partition, offset in states:
                partition.committed = offset

    async def on_revoked(self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]) -> None:
        """Commit what is done of the partitions that go, and forget them: the requests still
        in flight finish and publish, and the next owner reads them again (same ids)."""
        await self._commit(consumer, revoked)
        for tp in revoked:
            self._partitions.pop(tp, None)
        if self._paused:
            consumer.resume(*consumer.paused())
            self._paused = False

    async def _settle(self) -> None:
        """Let the calls in flight finish, for ``STOP_GRACE_SECONDS`` at most."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_SECONDS)

    async def _cancel_all(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, bridge: BotBridge, consumer: AIOKafkaConsumer) -> None:
        self._bridge = bridge
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._bridge.on_revoked(self._consumer, revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing to do: a partition's tracking starts with its first record."""


def _domain_of(record: ConsumerRecord[bytes, bytes]) -> str:
    return (record.key or b"").decode(errors="replace")
