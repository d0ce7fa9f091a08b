"""Synthetic traffic for router tests: agents and customer messages straight onto the topics,
and the checks every run must pass whatever happened in between."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from runtime.kafka import EventPublisher
from schemas import (
    ROUTING_DECODER,
    AgentRegistered,
    Channel,
    ConversationAssigned,
    MessageReceived,
    MessageRouted,
    Presence,
    PresenceChanged,
)
from schemas.topics import AGENTS, INBOUND
from switchboard.config import Config
from tests.support import TopicReader


@dataclass
class Traffic:
    config: Config
    domains: list[str]
    agents_per_domain: int = 10
    customers_per_domain: int = 100
    capacity: int = 2
    seed: int = 7
    sent: list[str] = field(default_factory=list)
    """Ids of every customer message produced (and acknowledged by the broker)."""

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def agent_ids(self, domain: str) -> list[str]:
        return [f"{domain}-agent-{i:03d}" for i in range(self.agents_per_domain)]

    async def __aenter__(self) -> Traffic:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.config.kafka.bootstrap_servers, linger_ms=5
        )
        await self._producer.start()
        self._inbound = EventPublisher(
            self._producer, self.config.topic(INBOUND), "test", timeout=30
        )
        self._agents = EventPublisher(self._producer, self.config.topic(AGENTS), "test", timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    def _fields(self, domain: str) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "domain": domain, "occurred_at": time.time()}

    async def register_agents(self, online: bool = True) -> None:
        events: list[Any] = []
        for domain in self.domains:
            for agent in self.agent_ids(domain):
                events.append(
                    AgentRegistered(
                        **self._fields(domain),
                        agent_id=agent,
                        capacity={Channel.SMS: self.capacity, Channel.WEBCHAT: self.capacity},
                    )
                )
                if online:
                    events.append(
                        PresenceChanged(
                            **self._fields(domain), agent_id=agent, status=Presence.ONLINE
                        )
                    )
        await self._agents.publish(events)

    def message(self, domain: str, customer: int) -> MessageReceived:
        address = f"+1555{customer:07d}"
        provider_id = f"SM{uuid.uuid4().hex}"
        return MessageReceived(
            **self._fields(domain),
            channel=Channel.SMS,
            endpoint="+15550000000",
            customer_address=address,
            customer_id=f"phone:{address}",
            conversation_key=f"sms:+15550000000:{address}",
            provider_message_id=provider_id,
            text="hello",
        )

    async def publish(self, messages: list[MessageReceived]) -> None:
        """Produce ``messages`` as they are, in order."""
        await self._inbound.publish(messages)
        self.sent.extend(m.id for m in messages)

    async def send_messages(self, count: int) -> None:
        batch = [
            self.message(
                self._random.choice(self.domains), self._random.randrange(self.customers_per_domain)
            )
            for _ in range(count)
        ]
        await self._inbound.publish(batch)
        self.sent.extend(m.id for m in batch)

    async def toggle_presence(self, count: int) -> None:
        events = []
        for _ in range(count):
            domain = self._random.choice(self.domains)
            agent = self._random.choice(self.agent_ids(domain))
            status = self._random.choice(
                [Presence.ONLINE, Presence.ONLINE, Presence.AWAY, Presence.OFFLINE]
            )
            events.append(PresenceChanged(**self._fields(domain), agent_id=agent, status=status))
        await self._agents.publish(events)

    async def run(self, *, seconds: float, rate: float, chunk: int = 25) -> None:
        """Messages at about ``rate`` per second, with presence changes mixed in."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            await self.send_messages(chunk)
            if self._random.random() < 0.3:
                await self.toggle_presence(3)
            await asyncio.sleep(max(0.0, chunk / rate - (time.monotonic() - started)))

    async def everyone_online(self) -> None:
        events = [
            PresenceChanged(**self._fields(domain), agent_id=agent, status=Presence.ONLINE)
            for domain in self.domains
            for agent in self.agent_ids(domain)
        ]
        await self._agents.publish(events)


async def stored_message_ids(conn: asyncpg.Connection) -> list[str]:
    return [row["message_id"] for row in await conn.fetch("SELECT message_id FROM messages")]


async def check_routing_invariants(
    conn: asyncpg.Connection, sent: list[str], routing: TopicReader
) -> None:
    """Exactly once in PostgreSQL, one owner, nobody over capacity, every event published."""
    stored = await stored_message_ids(conn)
    duplicates = [m for m, n in Counter(stored).items() if n > 1]
    assert duplicates == [], f"{len(duplicates)} messages stored twice"
    assert sorted(stored) == sorted(set(sent)), (
        f"{len(set(sent) - set(stored))} messages missing, {len(set(stored) - set(sent))} unexpected"
    )

    doubly_owned = await conn.fetch(
        "SELECT domain, conversation_id, count(*) FROM assignments WHERE ended_at IS NULL"
        " GROUP BY domain, conversation_id HAVING count(*) > 1"
    )
    if doubly_owned:
        details = await conn.fetch(
            "SELECT conversation_id, assignment_id, agent_id, strategy, step, offered_at,"
            " accepted_at, end_reason FROM assignments WHERE conversation_id = $1 ORDER BY offered_at",
            doubly_owned[0]["conversation_id"],
        )
        conversation = await conn.fetchval(
            "SELECT record::text FROM conversations WHERE conversation_id = $1",
            doubly_owned[0]["conversation_id"],
        )
        raise AssertionError(
            f"conversations with two open assignments: {doubly_owned[:5]}\n"
            + "\n".join(str(dict(r)) for r in details)
            + f"\n{conversation}"
        )

    capacity: dict[tuple[str, str], dict[str, int]] = {}
    for row in await conn.fetch("SELECT domain, agent_id, record::text AS r FROM agents"):
        capacity[(row["domain"], row["agent_id"])] = msgspec.json.decode(row["r"])["capacity"]
    load: Counter[tuple[str, str, str]] = Counter()
    for row in await conn.fetch(
        "SELECT domain, record::text AS r FROM conversations WHERE status <> 'closed'"
    ):
        record = msgspec.json.decode(row["r"])
        holder = (
            record.get("owner_agent_id")
            if record["status"] == "assigned"
            else record.get("offered_to")
        )
        if record["status"] in ("assigned", "offered") and holder:
            load[(row["domain"], holder, record["channel"])] += 1
    over = [
        (key, n, capacity[(key[0], key[1])].get(key[2], 0))
        for key, n in load.items()
        if n > capacity[(key[0], key[1])].get(key[2], 0)
    ]
    assert over == [], f"agents above capacity: {over[:5]}"

    published = await _wait_until_published(conn, routing)
    assert published.missing_routed == set(), (
        f"{len(published.missing_routed)} messages without message.routed"
    )
    assert published.missing_assigned == set(), (
        f"{len(published.missing_assigned)} assignments without conversation.assigned"
    )


@dataclass
class _Unpublished:
    missing_routed: set[str]
    missing_assigned: set[str]

    def __bool__(self) -> bool:
        return not self.missing_routed and not self.missing_assigned


async def _wait_until_published(
    conn: asyncpg.Connection, routing: TopicReader, timeout: float = 60
) -> _Unpublished:
    """Read ``conversations.routing`` until everything committed has been published: a
    ``message.routed`` per stored message, a ``conversation.assigned`` per accepted
    assignment. The router may still be committing (presence changes sent just before), and
    the outbox promises publication after the commit, not with it: so PostgreSQL is read
    first on every round, then the topic."""
    routed: set[str] = set()
    assigned: set[str] = set()
    seen = 0
    last = _Unpublished(set(), set())
    deadline = time.monotonic() + timeout
    while True:
        stored = set(await stored_message_ids(conn))
        accepted = {
            r["assignment_id"]
            for r in await conn.fetch(
                "SELECT assignment_id FROM assignments WHERE accepted_at IS NOT NULL"
            )
        }
        records = await routing.poll()
        for record in records[seen:]:
            event = ROUTING_DECODER.decode(record.value)
            if isinstance(event, MessageRouted):
                routed.add(event.message_id)
            elif isinstance(event, ConversationAssigned):
                assigned.add(event.assignment_id)
        seen = len(records)
        last = _Unpublished(stored - routed, accepted - assigned)
        if last or time.monotonic() > deadline:
            return last
