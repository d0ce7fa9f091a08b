"""The API's view of ``conversations.routing``: command verdicts and the live event stream.

Every API process reads every partition of the routing topic from its end, without a
consumer group (so each process sees every event, and nothing is committed), and opens
the sealed records (``runtime.sealing``): one that does not open is about an erased
customer, and no stream is handed it. Each event
1. settles the future of a command this process published (``command.completed`` or
   ``command.rejected`` carry the command's id),
2. is appended to its domain's ring of recent events (``stream_buffer`` of them, for
   ``Last-Event-ID`` resumption; duplicates of a republished event are dropped by id),
3. is handed to the domain's stream subscribers.

While no stream is open and no command awaits its verdict, nobody waits on the feed: it
reads what came every ``kafka.background_fetch_max_wait_ms``, its partitions paused in
between (a paused consumer fetches nothing), where it fetched every
``kafka.fetch_max_wait_ms`` for events nobody waited on. Nothing is skipped, so the rings
stay whole; a command or a new stream resumes reading at once. What it reads then is held
as it came, sealed and undecoded, the last ``stream_buffer`` records of each domain (the
record's key), and opened and decoded into the rings when someone needs them: a command
expected, a stream opened (``catch_up``, before its replay), a ``customer.erased`` or a
record without a key read. They came before any stream then open, so they go to the rings
only: a stream starting from now is not handed them, one resuming from one of them
replays what follows it. (Opening and decoding every routing event for rings nobody
read made the feed about 10% of the router process's CPU time at 1,000 webhooks a
second; holding them, 5%.)

A ``customer.erased`` first takes out of the ring the events of the conversations it
names and every event about a customer that names no conversation (links, merges, consent
changes: the erasure names no one, so any of them may be the erased customer's): a client
resuming after an erasure is not handed the erased customer again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from runtime.kafka import RESTED_READ_MS, rest
from runtime.sealing import TopicKeys
from schemas import (
    ROUTING_DECODER,
    CommandCompleted,
    CommandRejected,
    CustomerConsentChanged,
    CustomerErased,
    CustomerLinked,
    CustomerMerged,
    RoutingEvent,
)
from schemas.cloudevents import type_name

log = structlog.get_logger(__name__)

Verdict = CommandCompleted | CommandRejected

SUBSCRIBER_BACKLOG = 10_000
"""Events queued for one slow stream client before it is cut off (it then resumes with
``Last-Event-ID``)."""
_CUSTOMER_LEVEL = (CustomerLinked, CustomerMerged, CustomerConsentChanged)
"""Events that name a customer and no conversation."""
ISSUERS_KEPT = 10_000
"""Commands whose acting agent is remembered, so their verdicts reach that agent's stream."""
_ERASED = ("ce_type", type_name(CustomerErased).encode())
"""A ``customer.erased`` record: what is held is fed before it, as it takes events out of the
rings."""
READER = "routing-feed"

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    seq: int
    event_id: str
    type: str
    data: bytes
    agents: frozenset[str]
    """Agents the event concerns (for ``?agent_id=`` filtering)."""
    conversation_id: str | None = None
    customer_level: bool = False
    """It names a customer and no conversation (a link, a merge, a consent change)."""


@dataclass(eq=False, slots=True)
class Subscriber:
    domain: str
    queue: asyncio.Queue[FeedEvent | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_BACKLOG)
    )
    cut_off: bool = False


def _concerned(event: RoutingEvent, issuer: str | None) -> frozenset[str]:
    names = ("agent_id", "from_agent_id", "to_agent_id", "preferred_agent_id")
    found = {value for name in names if isinstance(value := getattr(event, name, None), str)}
    if issuer is not None:
        found.add(issuer)
    return frozenset(found)


class _Ring:
    def __init__(self, size: int) -> None:
        self.events: deque[FeedEvent] = deque()
        self.index: dict[str, int] = {}
        self.size = size

    def add(self, event: FeedEvent) -> bool:
        if event.event_id in self.index:
            return False
        if len(self.events) >= self.size:
            old = self.events.popleft()
            self.index.pop(old.event_id, None)
        self.events.append(event)
        self.index[event.event_id] = event.seq
        return True

    def forget_erased(self, conversation_ids: frozenset[str]) -> None:
        """Drop the events of ``conversation_ids`` and every customer-level event."""
        kept = [
            e
            for e in self.events
            if not e.customer_level and e.conversation_id not in conversation_ids
        ]
        self.events = deque(kept)
        self.index = {e.event_id: e.seq for e in kept}


class RoutingFeed:
    """Verdict futures, per-domain rings and stream subscribers, fed by one consumer."""

    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._seq = itertools.count(1)
        self._rings: dict[str, _Ring] = {}
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._waiters: dict[str, asyncio.Future[Verdict]] = {}
        self._issuers: OrderedDict[str, str] = OrderedDict()
        self.woken = asyncio.Event()
        """Set by a command expected or a stream subscribed: the pump reads on at once."""
        self._held: dict[bytes, deque[Record]] = {}
        """Records read while nobody awaited the feed, by domain (the record's key)."""
        self._feeding = asyncio.Lock()
        """Held records are fed before any record read after them."""

    # -- commands -----------------------------------------------------------------

    def expect(self, command_id: str, agent_id: str | None) -> asyncio.Future[Verdict]:
        """A future settled by the router's verdict on ``command_id`` (call before publishing)."""
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._waiters[command_id] = future
        self.woken.set()
        if agent_id is not None:
            self._issuers[command_id] = agent_id
            while len(self._issuers) > ISSUERS_KEPT:
                self._issuers.popitem(last=False)
        return future

    def forget(self, command_id: str) -> None:
        self._waiters.pop(command_id, None)

    # -- streams ------------------------------------------------------------------

    def subscribe(self, domain: str) -> Subscriber:
        subscriber = Subscriber(domain)
        self._subscribers.setdefault(domain, set()).add(subscriber)
        self.woken.set()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.get(subscriber.domain, set()).discard(subscriber)

    @property
    def held(self) -> int:
        """Records read and held, not yet fed."""
        return sum(len(held) for held in self._held.values())

    @property
    def awaited(self) -> bool:
        """A stream is open or a command awaits its verdict."""
        return bool(self._waiters) or any(self._subscribers.values())

    def recent(self, domain: str, last_event_id: str | None) -> tuple[list[FeedEvent], bool]:
        """Buffered events after ``last_event_id``, and whether that id was still buffered
        (when it was not, every buffered event)."""
        ring = self._rings.get(domain)
        if ring is None:
            return [], last_event_id is None
        if last_event_id is None:
            return [], True
        seq = ring.index.get(last_event_id)
        if seq is None:
            return list(ring.events), False
        return [event for event in ring.events if event.seq > seq], True

    def close_all(self) -> None:
        """End every stream (shutdown)."""
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.cut_off = True
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(None)

    # -- input --------------------------------------------------------------------

    async def take(self, records: Sequence[Record], keys: TopicKeys) -> None:
        """Feed the records the pump read, after those held, opened with ``keys``; while
        nobody awaits the feed, hold them instead. Opening is tried again each second while
        PostgreSQL fails: a batch given up would be verdicts that never settle their commands."""
        async with self._feeding:
            if not self.awaited and self._hold(records):
                return
            await self._feed(records, keys, persistently=True)

    async def catch_up(self, keys: TopicKeys) -> None:
        """Feed the held records (a stream's replay then starts from whole rings). Raises a
        database error when their keys cannot be read; they stay held."""
        async with self._feeding:
            await self._feed([], keys, persistently=False)

    def _hold(self, records: Sequence[Record]) -> bool:
        """Hold ``records``, unless one must be fed at once: an erasure, or one whose
        domain is not known unopened (no key)."""
        if any(record.key is None or _ERASED in record.headers for record in records):
            return False
        for record in records:
            held = self._held.get(record.key)
            if held is None:
                held = self._held[record.key] = deque(maxlen=self._buffer)
            held.append(record)
        return True

    async def _feed(
        self, records: Sequence[Record], keys: TopicKeys, *, persistently: bool
    ) -> None:
        """Open and feed the held records, then ``records``. The held ones came before
        every stream now open (none was open while they were held): they go to the rings
        only, for a client resuming from one of them."""
        held = [record for domain in self._held.values() for record in domain]
        if not held and not records:
            return
        both = [*held, *records]
        if persistently:
            opened = await keys.opened_persistently(both, reader=READER)
        else:
            opened = await keys.opened(both)
        self._held.clear()
        self.feed_records((value for _, value in opened[: len(held)] if value), live=False)
        self.feed_records(value for _, value in opened[len(held) :] if value)

    def feed(self, event: RoutingEvent, event_type: str, data: bytes, *, live: bool = True) -> None:
        """Settle the command ``event`` is the verdict on, add it to its domain's ring and,
        ``live``, hand it to the domain's streams."""
        command_id = getattr(event, "command_id", None)
        if isinstance(event, CommandCompleted | CommandRejected):
            waiter = self._waiters.pop(event.command_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        issuer = None if command_id is None else self._issuers.get(command_id)
        item = FeedEvent(
            seq=next(self._seq),
            event_id=event.id,
            type=event_type,
            data=data,
            agents=_concerned(event, issuer),
            conversation_id=getattr(event, "conversation_id", None),
            customer_level=isinstance(event, _CUSTOMER_LEVEL),
        )
        ring = self._rings.get(event.domain)
        if ring is None:
            ring = self._rings[event.domain] = _Ring(self._buffer)
        if isinstance(event, CustomerErased):
            ring.forget_erased(frozenset(event.conversation_ids))
        if not ring.add(item) or not live:
            return  # a republished duplicate, or an event older than the streams
        for subscriber in list(self._subscribers.get(event.domain, ())):
            if subscriber.cut_off:
                continue
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                subscriber.cut_off = True

    def feed_records(self, values: Iterable[bytes | None], *, live: bool = True) -> None:
        for value in values:
            try:
                event = ROUTING_DECODER.decode(value or b"")
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # not ours to judge: the router never publishes such a record
            self.feed(event, type_name(type(event)), value or b"", live=live)


async def start_consumer(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Start ``consumer`` on every partition of ``topic``, positioned at the end."""
    await consumer.start()
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.topics()  # fetch metadata
        partitions = consumer.partitions_for_topic(topic) or set()
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    await consumer.seek_to_end(*assigned)
    for tp in assigned:
        await consumer.position(tp)  # resolve now: later commands' verdicts come after it
    log.info("routing_feed_started", topic=topic, partitions=len(assigned))


async def pump(
    consumer: AIOKafkaConsumer, feed: RoutingFeed, keys: TopicKeys, idle_seconds: float
) -> None:
    """Feed every record ``consumer`` reads to ``feed``, until cancelled; while the feed is
    not ``awaited`` and has read up to the high-water mark, pause for ``idle_seconds`` or
    until ``feed.woken``."""
    while True:
        feed.woken.clear()
        try:
            if not feed.awaited and await _read_up(consumer):
                await rest(consumer, idle_seconds, feed.woken)
            # Not awaited: a few fetches' time for what came meanwhile, then paused again.
            wait_ms = 1000 if feed.awaited else RESTED_READ_MS
            batch = await consumer.getmany(timeout_ms=wait_ms)
        except KafkaError as error:
            log.warning("routing_feed_fetch_failed", error=type(error).__name__)
            await asyncio.sleep(1)
            continue
        await feed.take([record for records in batch.values() for record in records], keys)


async def _read_up(consumer: AIOKafkaConsumer) -> bool:
    """Every partition read up to the high-water mark its last fetch gave (none fetched
    yet: nothing known to be behind)."""
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None and await consumer.position(tp) < highwater:
            return False
    return True
