"""Routing KPIs through the real service: a scripted day in two domains, then ``/metrics``.

The day is driven through the public HTTP API and webhooks only, step by step: each step
waits for the routing events it causes before the next one starts, so the figures at the
end are known exactly. Every routing metric of the catalogue is asserted, and the numbers
are chosen so that swapping two counters, dropping an increment or doubling one changes an
asserted value (hits 2 against misses 4 in north, offers 4 against misses 2, ...), and
every figure of a domain's work is asserted under its ``domain`` label, so that counting
it under another domain changes one too. Waits are real seconds, short: they are checked
within the latency of the loop that fires deadlines.

``north`` assigns: a preferred hold of 1.5 s, one step ``team`` of 1 s (then overflow;
WhatsApp waits there for good), a first-response SLA of 2.5 s. ``south`` offers: offers
expire after 1.2 s, one step ``desk`` without limit, an SLA of 1 s. Both name their queue
``support``: only the domain label tells their figures apart. The default configuration's
``acme`` stays idle (its gauges read 0). Conversations are named by domain and order: N1-N5 and W1-W2 (WhatsApp) in
north, S1-S3 in south.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from adapters.base import hmac_hex, inbound_event_id
from adapters.webchat import WebchatConfig, parse_message
from schemas import (
    ROUTING_DECODER,
    ConversationAssigned,
    ConversationFallback,
    ConversationOffered,
    ConversationOverflowed,
    ConversationQueued,
    ConversationReplyWindowClosed,
    RoutingEvent,
    Strategy,
)
from tests.conftest import Infrastructure
from tests.support import Service, TopicReader, make_config, running_service, wait_until

ADMIN_TOKEN = "kpi-admin-token"
META_SECRET = "kpi-meta-secret"
WHATSAPP_NUMBER_ID = "100000000000042"
ENVIRON = {"SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN, "META_APP_SECRET": META_SECRET}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

PREFERRED_WAIT = 1.5
STEP_WAIT = 1.0
NORTH_SLA = 2.5
OFFER_TIMEOUT = 1.2
SOUTH_SLA = 1.0
LATENCY = 0.5
"""How late a deadline may fire or a scripted reply land, at most, on a busy machine."""
WHATSAPP_WINDOW = 24 * 3600

OVERRIDES: dict[str, Any] = {
    "domains": {
        "north": {
            "webchat": {"enabled": True},
            "routing": {
                "default_queue": "support",
                "preferred_wait": {"webchat": PREFERRED_WAIT},
                "first_response_sla": {"webchat": NORTH_SLA},
                "queues": {
                    "support": {
                        "steps": [
                            {"name": "team", "wait": STEP_WAIT, "channel_wait": {"whatsapp": 3600}}
                        ]
                    }
                },
            },
        },
        "south": {
            "webchat": {"enabled": True},
            "routing": {
                "default_queue": "support",
                "first_response_sla": {"webchat": SOUTH_SLA},
                "queues": {
                    "support": {
                        "mode": "offer",
                        "offer_timeout": OFFER_TIMEOUT,
                        "steps": [{"name": "desk"}],
                    }
                },
            },
        },
    },
    "channels": {
        "meta": {"whatsapp": [{"phone_number_id": WHATSAPP_NUMBER_ID, "domain": "north"}]}
    },
}

#: (domain, agent, capacity, online at the start)
AGENTS = [
    ("north", "ann", {"webchat": 1}, True),
    ("north", "bob", {"webchat": 2, "whatsapp": 1}, True),
    ("north", "cat", {"sms": 1}, True),
    ("north", "dot", {"webchat": 2}, False),
    ("north", "hal", {"webchat": 1}, False),
    ("south", "dan", {"webchat": 1}, True),
    ("south", "eve", {"webchat": 2}, True),
    ("south", "fay", {"webchat": 1}, False),
]
#: (domain, web chat session, explicit owner): the customers with a preferred agent.
OWNERS = [
    ("north", "north-visitor-1", "ann"),
    ("north", "north-visitor-2", "ann"),
    ("north", "north-visitor-3", "cat"),
    ("north", "north-visitor-4", "ann"),
    ("north", "north-visitor-5", "ann"),
    ("south", "south-visitor-2", "dan"),
]

E = TypeVar("E", bound=RoutingEvent)


class Day:
    """The scripted day's HTTP calls, and waits for the routing events they cause."""

    def __init__(self, service: Service, routing: TopicReader, pool: asyncpg.Pool) -> None:
        self.service = service
        self.routing = routing
        self.pool = pool

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.service.session.request(
            method, self.service.url(path), json=body, headers=ADMIN
        ) as response:
            return response.status, await response.json(content_type=None)

    async def register(self, domain: str, agent_id: str, capacity: dict[str, int]) -> None:
        body = {"name": agent_id.title(), "capacity": capacity}
        status, answer = await self.call("PUT", f"/v1/domains/{domain}/agents/{agent_id}", body)
        assert status == 202, answer

    async def presence(self, domain: str, agent_id: str, presence: str) -> None:
        path = f"/v1/domains/{domain}/agents/{agent_id}/presence"
        status, answer = await self.call("POST", path, {"status": presence})
        assert status == 202, answer
        await wait_until(
            lambda: self.pool.fetchval(
                "SELECT presence = $3 FROM agents WHERE domain = $1 AND agent_id = $2",
                domain,
                agent_id,
                presence,
            ),
            what=f"{agent_id} {presence} in PostgreSQL",
        )

    async def webchat(self, domain: str, visitor: str, message_id: str = "1") -> str:
        """A message of the visitor so named; its event id (a new conversation's id)."""
        body = {"session_id": visitor, "message_id": message_id, "text": "Hello?"}
        status, answer = await self.service.webchat(body, domain)
        assert status == 202, answer
        event_id: str = answer["event_id"]
        return event_id

    async def whatsapp(self, sender: str, message_id: str, sent_at: int) -> str:
        """A signed WhatsApp Cloud API message to north's number; the conversation's id."""
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100", "phone_number_id": WHATSAPP_NUMBER_ID},
            "messages": [
                {
                    "from": sender,
                    "id": message_id,
                    "timestamp": str(sent_at),
                    "type": "text",
                    "text": {"body": "Hello?"},
                }
            ],
        }
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
        }
        body = msgspec.json.encode(payload)
        headers = {
            "X-Hub-Signature-256": "sha256=" + hmac_hex(META_SECRET, body),
            "Content-Type": "application/json",
        }
        async with self.service.session.post(
            self.service.url("/webhooks/meta"), data=body, headers=headers
        ) as response:
            assert response.status == 200, await response.text()
        return inbound_event_id("north", "whatsapp", message_id)

    async def command(self, domain: str, conversation_id: str, action: str, body: Any) -> int:
        """accept, close or transfer; the HTTP status once the router decided (202 or 409)."""
        path = f"/v1/domains/{domain}/conversations/{conversation_id}/{action}"
        status, answer = await self.call("POST", path, body)
        assert answer.get("status") != "pending", answer
        return status

    async def reply(self, domain: str, conversation_id: str) -> None:
        """The owner's reply, and the router having taken note of it."""
        path = f"/v1/domains/{domain}/conversations/{conversation_id}/reply"
        status, answer = await self.call("POST", path, {"text": "On it."})
        assert status == 202, answer
        await wait_until(
            lambda: self.pool.fetchval(
                "SELECT record->>'first_response_at' IS NOT NULL FROM conversations"
                " WHERE domain = $1 AND conversation_id = $2",
                domain,
                conversation_id,
            ),
            what=f"first response of {conversation_id}",
        )

    async def expect(self, kind: type[E], conversation_id: str, **fields: Any) -> E:
        """Wait for the routing event of ``kind`` about the conversation with ``fields``."""

        def found(records: list[Any]) -> E | None:
            for record in records:
                event = ROUTING_DECODER.decode(record.value)
                if (
                    isinstance(event, kind)
                    and getattr(event, "conversation_id", None) == conversation_id
                    and all(getattr(event, name) == value for name, value in fields.items())
                ):
                    return event
            return None

        await self.routing.wait_for(lambda records: found(records) is not None)
        event = found(self.routing.records)
        assert event is not None
        return event


async def test_every_routing_kpi_is_exact_after_a_scripted_day(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url, OVERRIDES)
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running_service(config, ENVIRON) as service,
            TopicReader(config, "conversations.routing") as routing,
        ):
            day = Day(service, routing, pool)
            await _staff_and_customers(day)
            await _north(day)
            await _south(day)
            inbound = config.topic("conversations.inbound")
            await _poison_records(config.kafka.bootstrap_servers, inbound)
            expected = {
                **EXPECTED,
                # All keyed by north: its letters, also the one naming a stranger.
                "switchboard_dead_letters_total": {
                    ("north", "invalid", inbound): 2,
                    ("north", "unknown", inbound): 1,
                },
            }
            scrape = await _settled_scrape(service, expected)
    finally:
        await pool.close()

    assert exact_figures(scrape, expected) == expected
    # Waits: deadline-driven ones at least their deadline, and at most LATENCY late.
    wait = "switchboard_assignment_wait_seconds"
    assert histogram(scrape, wait, "webchat", "north", "preferred") == (2, within(0, 2 * LATENCY))
    assert counts(scrape, wait, "webchat", "fallback") == {"north": 2, "south": 1}
    assert across_domains(scrape, wait, "webchat", "fallback") == (
        3,
        within(PREFERRED_WAIT + OFFER_TIMEOUT, PREFERRED_WAIT + OFFER_TIMEOUT + 2 * LATENCY),
    )
    assert histogram(scrape, wait, "webchat", "south", "queue") == (
        1,
        within(OFFER_TIMEOUT, OFFER_TIMEOUT + LATENCY),
    )
    overflowed_at = PREFERRED_WAIT + STEP_WAIT
    assert histogram(scrape, wait, "webchat", "north", "manual") == (
        1,
        within(overflowed_at, overflowed_at + 8 * LATENCY),
    )
    assert histogram(scrape, wait, "webchat", "north", "transfer") == (1, 0)
    assert histogram(scrape, wait, "whatsapp", "north", "queue") == (1, 0)
    # First responses: N2 and N3 at once (within their SLA), N5 after its overflow, S1 and
    # S2 after a missed offer each.
    first_responses = "switchboard_first_response_seconds"
    assert counts(scrape, first_responses, "webchat", "support") == {"north": 3, "south": 2}
    assert across_domains(scrape, first_responses, "webchat", "support") == (
        5,
        within(overflowed_at + 2 * OFFER_TIMEOUT, overflowed_at + 2 * OFFER_TIMEOUT + 8 * LATENCY),
    )
    within_two_seconds = sum(
        value
        for (channel, _, queue, le), value in samples(scrape, first_responses + "_bucket").items()
        if (channel, queue, le) == ("webchat", "support", "2.0")
    )
    assert within_two_seconds == within(2, 4)


async def _staff_and_customers(day: Day) -> None:
    for domain, agent_id, capacity, _ in AGENTS:
        await day.register(domain, agent_id, capacity)
    for domain, agent_id, _, online in AGENTS:
        if online:
            await day.presence(domain, agent_id, "online")
    await wait_until(
        lambda: day.pool.fetchval("SELECT count(*) = $1 FROM agents", len(AGENTS)),
        what="every agent in PostgreSQL",
    )
    for domain, visitor, agent_id in OWNERS:
        session = await day.service.visitor(visitor, domain)
        path = f"/v1/domains/{domain}/customers/{session.customer_id}/owner"
        status, answer = await day.call("PUT", path, {"agent_id": agent_id})
        assert status == 202, answer
    await wait_until(
        lambda: day.pool.fetchval(
            "SELECT count(*) = $1 FROM customers WHERE owner_agent_id IS NOT NULL", len(OWNERS)
        ),
        what="every owner in PostgreSQL",
    )


async def _north(day: Day) -> None:
    """ann takes N1 and, once N1 closes, N2 she was held for (hits); N3's owner has no web
    chat and N4's is busy past the hold: bob takes both (misses, fallbacks ``no_channel``
    and ``timeout``). N5 waits out the hold and the step (two ``timeout`` fallbacks) and
    overflows; dot picks it up by hand and answers late (an SLA breach)."""
    n1 = await day.webchat("north", "north-visitor-1")
    await day.expect(ConversationAssigned, n1, agent_id="ann", strategy=Strategy.PREFERRED)
    for _ in range(2):
        await day.webchat("north", "north-visitor-1")  # provider retries: duplicates
    await day.webchat("north", "north-visitor-1", "2")  # to the owner at once

    n2 = await day.webchat("north", "north-visitor-2")
    await day.expect(ConversationQueued, n2, step="preferred")
    assert await day.command("north", n1, "close", {"reason": "resolved"}) == 202
    await day.expect(ConversationAssigned, n2, agent_id="ann", strategy=Strategy.PREFERRED)
    await day.reply("north", n2)

    n3 = await day.webchat("north", "north-visitor-3")
    await day.expect(ConversationFallback, n3, reason="no_channel")
    await day.expect(ConversationAssigned, n3, agent_id="bob", strategy=Strategy.FALLBACK)
    await day.reply("north", n3)

    # The window of a message sent a day ago closes within two seconds.
    sent_at = int(time.time()) - WHATSAPP_WINDOW + 2
    w1 = await day.whatsapp("15550000001", "wamid.kpi-1", sent_at)
    await day.expect(ConversationAssigned, w1, agent_id="bob", strategy=Strategy.QUEUE)

    n4 = await day.webchat("north", "north-visitor-4")
    await day.expect(ConversationQueued, n4, step="preferred")
    n5 = await day.webchat("north", "north-visitor-5")
    await day.expect(ConversationQueued, n5, step="preferred")
    await day.expect(ConversationAssigned, n4, agent_id="bob", strategy=Strategy.FALLBACK)
    await day.expect(ConversationQueued, n5, step="team")
    await day.expect(ConversationOverflowed, n5)
    await day.expect(ConversationReplyWindowClosed, w1)

    await day.presence("north", "dot", "online")
    assert await day.command("north", n5, "accept", {"agent_id": "dot"}) == 202
    await day.expect(ConversationAssigned, n5, agent_id="dot", strategy=Strategy.MANUAL)
    await day.reply("north", n5)
    assert await day.command("north", n2, "transfer", {"to_agent_id": "dot"}) == 202
    await day.expect(ConversationAssigned, n2, agent_id="dot", strategy=Strategy.TRANSFER)
    assert await day.command("north", n3, "close", {"reason": "abandoned"}) == 202
    assert await day.command("north", "no-such-conversation", "close", {}) == 409

    # bob's one WhatsApp slot is W1's: W2 waits at the step (for good, on WhatsApp).
    w2 = await day.whatsapp("15550000002", "wamid.kpi-2", int(time.time()))
    await day.expect(ConversationQueued, w2, step="team")


async def _south(day: Day) -> None:
    """dan lets two offers expire (S1 then goes to eve; S2, his own customer's, falls back
    with ``offer_missed`` to eve); eve answers both after the 1 s SLA. dan goes away and
    eve is full: S3 waits."""
    s1 = await day.webchat("south", "south-visitor-1")
    await day.expect(ConversationOffered, s1, agent_id="dan", strategy=Strategy.QUEUE)
    await day.expect(ConversationOffered, s1, agent_id="eve", strategy=Strategy.QUEUE)
    assert await day.command("south", s1, "accept", {"agent_id": "eve"}) == 202
    await day.expect(ConversationAssigned, s1, agent_id="eve", strategy=Strategy.QUEUE)
    await day.reply("south", s1)

    s2 = await day.webchat("south", "south-visitor-2")
    await day.expect(ConversationOffered, s2, agent_id="dan", strategy=Strategy.PREFERRED)
    await day.expect(ConversationFallback, s2, reason="offer_missed")
    await day.expect(ConversationOffered, s2, agent_id="eve", strategy=Strategy.FALLBACK)
    assert await day.command("south", s2, "accept", {"agent_id": "eve"}) == 202
    await day.expect(ConversationAssigned, s2, agent_id="eve", strategy=Strategy.FALLBACK)
    await day.reply("south", s2)

    await day.presence("south", "dan", "away")
    s3 = await day.webchat("south", "south-visitor-3")
    await day.expect(ConversationQueued, s3, step="desk")


async def _poison_records(bootstrap_servers: str, inbound_topic: str) -> None:
    """Two undecodable records and a message for a domain nobody configured."""
    stranger = parse_message(
        "nowhere",
        WebchatConfig(enabled=True),
        b'{"session_id": "stranger-1", "message_id": "1", "text": "hi"}',
        None,
        time.time(),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for value in (b"{not json", b"[]", msgspec.json.encode(stranger)):
            await producer.send_and_wait(inbound_topic, value, key=b"north")
    finally:
        await producer.stop()


# -- what the scrape must say ------------------------------------------------------------

NORTH_WEBCHAT = ("webchat", "north")
SOUTH_WEBCHAT = ("webchat", "south")
NORTH_WHATSAPP = ("whatsapp", "north")
EXPECTED: dict[str, dict[tuple[str, ...], float]] = {
    # 9 web chat messages (N1 twice, N2-N5, S1-S3) and 2 WhatsApp ones; N1's first message
    # came three times.
    "switchboard_routed_messages_total": {NORTH_WEBCHAT: 6, SOUTH_WEBCHAT: 3, NORTH_WHATSAPP: 2},
    "switchboard_duplicate_messages_total": {NORTH_WEBCHAT: 2},
    "switchboard_assignments_total": {
        ("webchat", "north", "support", "preferred"): 2,  # N1, N2
        ("webchat", "north", "support", "fallback"): 2,  # N3, N4
        ("webchat", "south", "support", "fallback"): 1,  # S2
        ("webchat", "south", "support", "queue"): 1,  # S1
        ("webchat", "north", "support", "manual"): 1,  # N5
        ("webchat", "north", "support", "transfer"): 1,  # N2 to dot
        ("whatsapp", "north", "support", "queue"): 1,  # W1
    },
    # Misses: N3, N4, N5 and N2's transfer (preferred: cat, ann, ann, ann), S2 (dan).
    "switchboard_preferred_agent_hits_total": {NORTH_WEBCHAT: 2},
    "switchboard_preferred_agent_misses_total": {NORTH_WEBCHAT: 4, SOUTH_WEBCHAT: 1},
    "switchboard_fallbacks_total": {
        ("webchat", "north", "support", "no_channel"): 1,  # N3
        ("webchat", "north", "support", "timeout"): 3,  # N4's hold, N5's hold and step
        ("webchat", "south", "support", "offer_missed"): 1,  # S2
    },
    "switchboard_overflows_total": {("webchat", "north", "support"): 1},
    "switchboard_offers_total": {("webchat", "south", "support"): 4},
    "switchboard_offer_misses_total": {("webchat", "south", "support"): 2},
    "switchboard_conversations_closed_total": {
        ("webchat", "north", "resolved"): 1,
        ("webchat", "north", "abandoned"): 1,
    },
    "switchboard_reply_windows_closed_total": {NORTH_WHATSAPP: 1},
    # Completed: two closes, a transfer and N5's accept in north, S1's and S2's accepts in
    # south; rejected: north's unknown conversation.
    "switchboard_commands_total": {
        ("north", "completed"): 4,
        ("south", "completed"): 2,
        ("north", "rejected"): 1,
    },
    "switchboard_sla_breaches_total": {
        ("webchat", "north", "support"): 1,  # N5
        ("webchat", "south", "support"): 2,  # S1, S2
    },
    # Counted as the broker acknowledges the outbox: for the process, not per domain.
    "switchboard_routing_events_total": {
        ("message.routed",): 11,
        ("conversation.assigned",): 9,
        ("conversation.queued",): 6,
        ("conversation.fallback",): 5,
        ("conversation.overflowed",): 1,
        ("conversation.offered",): 4,
        ("conversation.closed",): 2,
        ("conversation.reassigned",): 1,
        ("conversation.reply_window_closed",): 1,
        ("command.completed",): 6,
        ("command.rejected",): 1,
    },
    # Histograms: how many, and in which buckets (cumulative, as Prometheus counts them).
    "switchboard_assignment_wait_seconds_bucket": {
        ("webchat", "north", "preferred", "1.0"): 2,
        ("webchat", "north", "fallback", "0.5"): 1,  # N3, at once
        ("webchat", "north", "fallback", "1.0"): 1,
        ("webchat", "north", "fallback", "2.0"): 2,
        ("webchat", "south", "fallback", "1.0"): 0,
        ("webchat", "south", "fallback", "2.0"): 1,
        ("webchat", "south", "queue", "1.0"): 0,
        ("webchat", "south", "queue", "2.0"): 1,
        ("webchat", "north", "manual", "2.0"): 0,  # N5, picked up after its overflow
        ("webchat", "north", "manual", "10.0"): 1,
        ("webchat", "north", "transfer", "0.5"): 1,
        ("whatsapp", "north", "queue", "0.5"): 1,
    },
    "switchboard_first_response_seconds_bucket": {
        ("webchat", "north", "support", "10.0"): 3,
        ("webchat", "south", "support", "10.0"): 2,
    },
    # Gauges of the router process, per domain it owns (acme idle: every figure 0).
    "switchboard_queue_waiting_conversations": {
        ("north", "support"): 1,  # W2
        ("south", "support"): 1,  # S3
        ("acme", "default"): 0,
    },
    "switchboard_open_conversations": {
        NORTH_WEBCHAT: 3,  # N2, N4, N5
        SOUTH_WEBCHAT: 3,
        NORTH_WHATSAPP: 2,
    },
    "switchboard_agents": {
        ("acme", "online"): 0,
        ("acme", "away"): 0,
        ("acme", "offline"): 0,
        ("north", "online"): 4,
        ("north", "away"): 0,
        ("north", "offline"): 1,
        ("south", "online"): 1,
        ("south", "away"): 1,
        ("south", "offline"): 1,
    },
    # Online slots: north's web chat ann 0/1, bob 1/2, dot 2/2; south's eve 2/2.
    "switchboard_agent_occupancy_ratio": {
        NORTH_WEBCHAT: 3 / 5,
        SOUTH_WEBCHAT: 1.0,
        NORTH_WHATSAPP: 1.0,
        ("sms", "north"): 0.0,
    },
    "switchboard_outbox_backlog_events": {("0",): 0, ("1",): 0},
}
"""Every exact figure, by sample name: label values (by label name, a bucket's ``le`` last)
-> value. Dead letters are added by the test: their label is the run's topic name."""


def samples(scrape: str, name: str) -> dict[tuple[str, ...], float]:
    """The samples called ``name``: label values by label name, a bucket's ``le`` last."""
    return {
        tuple(value for label, value in sorted(sample.labels.items()) if label != "le")
        + tuple(sample.labels[label] for label in ("le",) if label in sample.labels): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == name
    }


def exact_figures(
    scrape: str, expected: dict[str, dict[tuple[str, ...], float]]
) -> dict[str, dict[tuple[str, ...], float]]:
    """The scrape's figures of every series ``expected`` names (and of every bucket it
    names: the other buckets are not pinned down by the day)."""
    figures = {name: samples(scrape, name) for name in expected}
    for name, series in expected.items():
        if name.endswith("_bucket"):
            figures[name] = {labels: figures[name].get(labels, -1) for labels in series}
    return figures


def histogram(scrape: str, name: str, *labels: str) -> tuple[float, float]:
    """(count, sum) of one series."""
    return samples(scrape, name + "_count")[labels], samples(scrape, name + "_sum")[labels]


def counts(scrape: str, name: str, channel: str, label: str) -> dict[str, float]:
    """A histogram's count by domain, of the series of ``channel`` and ``label`` (the label
    after ``domain`` by name: a strategy or a queue)."""
    return {
        domain: count
        for (channel_, domain, label_), count in samples(scrape, name + "_count").items()
        if (channel_, label_) == (channel, label)
    }


def across_domains(scrape: str, name: str, channel: str, label: str) -> tuple[float, float]:
    """(count, sum) of a histogram's series of ``channel`` and ``label``, every domain's."""
    sums = samples(scrape, name + "_sum")
    return sum(counts(scrape, name, channel, label).values()), sum(
        value
        for (channel_, _, label_), value in sums.items()
        if (channel_, label_) == (channel, label)
    )


class within:
    """Equal to any number in [low, high]."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int | float) and self.low <= other <= self.high

    def __repr__(self) -> str:
        return f"within({self.low}, {self.high})"


async def _settled_scrape(
    service: Service, expected: dict[str, dict[tuple[str, ...], float]], timeout: float = 10
) -> str:
    """``/metrics`` once it says ``expected`` (the router refreshes its gauges every few
    seconds and counts a batch once it is committed), or as it is at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        async with service.session.get(service.url("/metrics")) as response:
            scrape = await response.text()
        if exact_figures(scrape, expected) == expected or time.monotonic() > deadline:
            return scrape
        await asyncio.sleep(0.1)
