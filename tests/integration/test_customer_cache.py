"""The router's customer cache, through the running service: memory follows the open work
and ``router.customer_cache``, not the domain's history (``router.shell.residents``).

With a cache of two customers, thirty customers write, are assigned and closed:

(a) with nothing open, the router keeps at most the cache's worth of them
    (``switchboard_router_customers_resident``);
(b) an identity linked to an evicted customer reaches the profile, read back from
    PostgreSQL with its links, and the profile's last agent takes it;
(c) every evicted customer who writes again is read back
    (``switchboard_router_customer_lookups_total``) and goes to their last agent;
(d) a restarted router takes over with the customers of the open conversations only (and
    their links), and reads the others when they write: they still reach their agent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from runtime.appkeys import AGENT_PUBLISHER, INBOUND_PUBLISHER
from schemas import (
    ROUTING_DECODER,
    Channel,
    CommandCompleted,
    ConversationAssigned,
    ConversationClosed,
    ConversationCloseRequested,
    CustomerLinked,
    CustomerLinkRequested,
    MessageReceived,
    MessageRouted,
    Strategy,
    topics,
)
from tests.conftest import Infrastructure
from tests.support import (
    Feed,
    Service,
    make_config,
    running_service,
    scraped,
    sms_received,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CACHE = 2
CUSTOMERS = 30
AGENTS = ("ann", "bob", "cat")
CAPACITY = {"sms": CUSTOMERS, "email": CUSTOMERS}
"""Room for every customer with every agent: a customer's last agent is always free."""
ADMIN_TOKEN = "customer-cache-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OUR_NUMBER = "+15005550006"
EMAIL = "zero@example.org"
"""The second identity of customer 0."""


def customer(n: int) -> str:
    return f"sms:{_phone(n)}"


def _phone(n: int) -> str:
    return f"+1415555{n:04d}"


def _fields() -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "domain": "acme", "occurred_at": time.time()}


def sms_from(n: int) -> MessageReceived:
    """Customer ``n`` writes by SMS (a new conversation unless one is open)."""
    return sms_received(_phone(n), "hello again", endpoint=OUR_NUMBER)


def email_from(address: str) -> MessageReceived:
    return MessageReceived(
        **_fields(),
        channel=Channel.EMAIL,
        endpoint="support@acme.example",
        customer_address=address,
        customer_id=f"email:{address}",
        conversation_key=f"email:support@acme.example:{address}",
        provider_message_id=f"<{uuid.uuid4().hex}@example.org>",
        subject="my order",
        text="it is me, from my other address",
    )


async def write(service: Service, messages: Sequence[MessageReceived]) -> list[str]:
    """Publish the messages as an adapter does; their ids (a message that opens a
    conversation gives it its id)."""
    await service.app[INBOUND_PUBLISHER].publish(messages)
    return [message.id for message in messages]


async def assignments(feed: Feed, conversation_ids: Iterable[str]) -> list[ConversationAssigned]:
    """The ``conversation.assigned`` of each conversation, in the order given."""
    wanted = list(conversation_ids)

    async def all_assigned() -> dict[str, ConversationAssigned] | None:
        found = {
            event.conversation_id: event
            for event in await feed.poll()
            if isinstance(event, ConversationAssigned) and event.conversation_id in wanted
        }
        return found if len(found) == len(wanted) else None

    found = await wait_until(all_assigned, timeout=30, what=f"{len(wanted)} assignments")
    return [found[conversation_id] for conversation_id in wanted]


async def close(service: Service, feed: Feed, assigned: Sequence[ConversationAssigned]) -> None:
    """Each conversation's agent closes it (resolved); returns once every one is closed."""
    await service.app[AGENT_PUBLISHER].publish(
        [
            ConversationCloseRequested(
                **_fields(), conversation_id=event.conversation_id, agent_id=event.agent_id
            )
            for event in assigned
        ]
    )
    wanted = {event.conversation_id for event in assigned}

    async def all_closed() -> bool:
        closed = {
            event.conversation_id
            for event in await feed.poll()
            if isinstance(event, ConversationClosed)
        }
        return wanted <= closed

    await wait_until(all_closed, timeout=30, what=f"{len(wanted)} conversations closed")


async def resident(service: Service) -> float:
    return await scraped(service, "switchboard_router_customers_resident")


async def loads(service: Service) -> float:
    return await scraped(service, "switchboard_router_customer_lookups_total")


async def residents_within(service: Service, bound: int) -> None:
    """Wait until the resident customers are at most ``bound``: a profile leaves memory
    once the batches that last used it are committed, so the gauge comes down a few
    batches after the work that filled it."""
    await _residents(service, lambda count: count <= bound, f"at most {bound}")


async def residents_reach(service: Service, expected: int) -> None:
    """Wait until exactly ``expected`` customers are resident."""
    await _residents(service, lambda count: count == expected, f"{expected}")


async def _residents(service: Service, fits: Callable[[float], bool], what: str) -> None:
    async def check() -> bool:
        return fits(await resident(service))

    try:
        await wait_until(check, timeout=15, what=f"{what} customers resident")
    except AssertionError:
        count = await resident(service)
        raise AssertionError(f"{count} customers resident, expected {what}") from None


def preferred(event: ConversationAssigned) -> tuple[str, str, str | None, str]:
    """Whose conversation it is, why it went where it went, and to whom."""
    return (event.customer_id, str(event.strategy), event.preferred_agent_id, event.agent_id)


def to_last_agent(profile: str, agent_id: str) -> tuple[str, str, str, str]:
    """``preferred`` of an assignment of ``profile``'s conversation to its last agent."""
    return (profile, str(Strategy.PREFERRED), agent_id, agent_id)


async def test_the_router_keeps_open_work_and_a_bounded_cache_and_reads_the_rest_back(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"router": {"customer_cache": CACHE}},
    )
    environ = {"SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN}
    everyone = range(CUSTOMERS)
    async with Feed(config, topics.ROUTING, ROUTING_DECODER) as feed:
        async with running_service(config, environ) as service:
            for agent_id in AGENTS:
                await service.online_agent(agent_id, CAPACITY, ADMIN)

            # Everyone writes and is assigned: open work keeps every profile in memory.
            first = await assignments(feed, await write(service, [sms_from(n) for n in everyone]))
            assert [event.customer_id for event in first] == [customer(n) for n in everyone]
            agent_of = {n: event.agent_id for n, event in zip(everyone, first, strict=True)}
            assert set(agent_of.values()) == set(AGENTS)
            await residents_reach(service, CUSTOMERS)
            # Each customer's key sealed their message and opened it: the process holds them.
            assert await scraped(service, "switchboard_topic_keys_cached") >= CUSTOMERS

            # Customer 0 gets a second identity, then is closed first: the least recently
            # used profile once the others are closed.
            link = CustomerLinkRequested(
                **_fields(), customer_id=customer(0), identity=f"email:{EMAIL}"
            )
            await service.app[AGENT_PUBLISHER].publish([link])
            await feed.first(CommandCompleted, command_id=link.id)
            linked = await feed.first(CustomerLinked, identity=f"email:{EMAIL}")
            assert (linked.customer_id, linked.linked) == (customer(0), True)
            await close(service, feed, first[:1])
            await close(service, feed, first[1:])

            # (a) nothing open: the cache's worth stays, not the thirty.
            await residents_within(service, CACHE + CACHE // 4)

            # (b) the linked identity writes: the profile and its links are read back in one
            # lookup, and the profile's last agent takes the new conversation.
            before = await loads(service)
            (by_email,) = await assignments(feed, await write(service, [email_from(EMAIL)]))
            assert preferred(by_email) == to_last_agent(customer(0), agent_of[0])
            assert await loads(service) - before == 1

            # (c) everyone else writes again: all but the cached ones are read back, and
            # each goes to their last agent.
            returning = range(1, CUSTOMERS)
            before = await loads(service)
            again = await assignments(feed, await write(service, [sms_from(n) for n in returning]))
            assert [preferred(event) for event in again] == [
                to_last_agent(customer(n), agent_of[n]) for n in returning
            ]
            assert await loads(service) - before >= len(returning) - CACHE

            # Most close again; customer 0 (by email) and the last five stay open.
            still_open = range(CUSTOMERS - 5, CUSTOMERS)
            await close(service, feed, again[: -len(still_open)])
            open_customers = 1 + len(still_open)
            await residents_within(service, CACHE + CACHE // 4 + open_customers)

        # (d) a restarted router loads the open work only: its customers and their links.
        async with running_service(config, environ) as service:
            await residents_reach(service, open_customers)
            # The linked identity is in memory with its profile: it joins the open
            # conversation without a lookup.
            (follow_up,) = await write(service, [email_from(EMAIL)])
            routed = await feed.first(MessageRouted, message_id=follow_up)
            assert (routed.conversation_id, routed.customer_id, routed.agent_id) == (
                by_email.conversation_id,
                customer(0),
                agent_of[0],
            )
            assert await loads(service) == 0

            # The closed customers were left in PostgreSQL: each is read when they write,
            # and reaches their last agent.
            back = range(1, 6)
            came_back = await assignments(feed, await write(service, [sms_from(n) for n in back]))
            assert [preferred(event) for event in came_back] == [
                to_last_agent(customer(n), agent_of[n]) for n in back
            ]
            assert await loads(service) == len(back)
