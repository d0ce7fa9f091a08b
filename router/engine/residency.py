"""Which customers must be in memory: those of open work, and those an input names.

A domain's customer history grows forever; its open work does not. The engine reads a
customer profile (explicit owner, last agent, affinity, a business-started message's
expectation, identity links) in two cases only:

1. for an open conversation: its ``customer_id`` (deadlines, routing, bots, closing);
2. for an identity an input names: every field of the input typed ``CustomerId``
   (``customers_named``), resolved to its profile through its link (``customer_of``).

So ``state.customers`` and ``state.identities`` need hold no more than that. The shell
loads (2) before the input applies (``remember``), keeps (1), and may drop any other
profile once what the engine saved about it is stored (``forget``). A profile is in memory
with all its links, and a link with its profile, so ``customer_of``, merges, unlinks and
erasures decide exactly as they would with the whole history in memory: the engine's
property test runs every input against a state that holds only this and compares.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping

from router.engine.records import CustomerRecord, IdentityRecord, same_instant
from router.engine.state import Conversation, Customer, DomainState
from schemas.limits import CustomerId

_NAMING_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}
"""Per input type: its ``CustomerId`` fields, each with whether it holds several."""


def customers_named(event: object) -> list[str]:
    """The identities ``event`` names (its ``CustomerId`` fields, in field order)."""
    fields = _NAMING_FIELDS.get(type(event))
    if fields is None:
        fields = _NAMING_FIELDS[type(event)] = _naming_fields(type(event))
    named: list[str] = []
    for name, several in fields:
        value = getattr(event, name)
        if value is None:
            continue
        if several:
            named.extend(value)
        else:
            named.append(value)
    return named


def _naming_fields(kind: type) -> tuple[tuple[str, bool], ...]:
    fields = []
    for name, annotation in typing.get_type_hints(kind, include_extras=True).items():
        arguments = typing.get_args(annotation)
        if typing.get_origin(annotation) is tuple:
            if arguments and arguments[0] is CustomerId:
                fields.append((name, True))
        elif annotation is CustomerId or any(argument is CustomerId for argument in arguments):
            fields.append((name, False))
    return tuple(fields)


def remember(
    state: DomainState,
    customers: Iterable[CustomerRecord],
    links: Iterable[IdentityRecord],
    opened: Mapping[str, Conversation] | None = None,
) -> None:
    """Put stored profiles and their identity links in memory. A profile that is in
    memory already is ahead of (or equal to) its stored record: it stays as it is.

    ``opened``: by customer id, open conversations restored before their customers
    (``Restoration``), whose id string and opening instant a profile then shares, as it
    would with a conversation restored after it."""
    resident = state.customers
    fresh: set[str] = set()
    for record in customers:
        if record.customer_id in resident:
            continue
        conversation = None if opened is None else opened.get(record.customer_id)
        if conversation is None:
            customer = Customer(record.customer_id)
            customer.last_handled_at = record.last_handled_at
        else:
            customer = Customer(conversation.customer_id)
            customer.last_handled_at = same_instant(record.last_handled_at, conversation.opened_at)
        customer.owner_agent_id = _agent_id(state, record.owner_agent_id)
        customer.last_agent_id = _agent_id(state, record.last_agent_id)
        customer.expectation = record.expectation
        if record.affinity:
            customer.affinity = [
                (entry.rank, _agent_id(state, entry.agent_id) or entry.agent_id)
                for entry in record.affinity
            ]
        resident[customer.customer_id] = customer
        fresh.add(customer.customer_id)
    for link in links:
        owner = resident.get(link.customer_id)
        if owner is None:
            # a profile with links and no record of its own yet
            owner = resident[link.customer_id] = Customer(link.customer_id)
            fresh.add(link.customer_id)
        elif link.customer_id not in fresh:
            continue
        state.identities[link.identity] = link
        if owner.identities is None:
            owner.identities = []
        owner.identities.append(link.identity)
    for customer_id in fresh:
        identities = resident[customer_id].identities
        if identities is not None:
            identities.sort()


def _agent_id(state: DomainState, agent_id: str | None) -> str | None:
    """The known agent's own id string (one copy per agent, however many customers name
    them)."""
    agent = None if agent_id is None else state.agents.get(agent_id)
    return agent_id if agent is None else agent.agent_id


def forget(state: DomainState, customer_id: str) -> list[str]:
    """Drop a profile and its links from memory (not from storage); returns the ids that
    left: the profile's and its linked identities'."""
    customer = state.customers.pop(customer_id, None)
    if customer is None:
        return []
    gone = [customer_id]
    for identity in customer.identities or ():
        state.identities.pop(identity, None)
        gone.append(identity)
    return gone


def open_customers(state: DomainState) -> set[str]:
    """The profiles of the open conversations: those the engine may read on a deadline."""
    return {conversation.customer_id for conversation in state.conversations.values()}
