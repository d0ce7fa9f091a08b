"""One ``apply`` or ``tick`` in progress (``Call``), and the engine's deterministic ids.

Ids are ``uuid5(NAMESPACE, f"{cause}/{n}")``: the cause is what the call answers (the
input event id, or the deadline that fired), and ``n`` counts the ids made for it.
"""

from __future__ import annotations

import uuid

from router.engine.effects import (
    Effect,
    Emit,
    SaveAgent,
    SaveAssignment,
    SaveConversation,
    SaveCustomer,
)
from router.engine.records import AssignmentRecord
from router.engine.snapshots import agent_record, conversation_record, customer_record
from router.engine.state import Agent, Conversation, Customer, DomainState
from schemas import Channel, RoutingEvent
from schemas.ids import uuid5_of

NAMESPACE = uuid.UUID("5b0a7c4e-2f61-4d0b-9a53-7c1e8d2f4a90")
"""Namespace of every id the engine makes (events, assignments)."""

make_id = uuid5_of(NAMESPACE)
"""``str(uuid.uuid5(NAMESPACE, name))``: the id named ``name`` (``schemas.ids``)."""


class Call:
    """One ``apply`` or ``tick``: the cause of new ids and what changed (saved once).

    Code that changes an agent, conversation, customer or assignment marks it by putting
    it in the matching dict (``call.conversations[conversation_id] = conversation``...);
    the call ends with one save of each. ``drain`` lists the (agent, channel) pairs that
    gained a free slot: ``router.engine.routing.finish`` hands them waiting work first.
    """

    __slots__ = (
        "agents",
        "assignments",
        "cause",
        "closed",
        "conversations",
        "customers",
        "drain",
        "effects",
        "n",
        "now",
        "state",
    )

    def __init__(self, state: DomainState, now: float, cause: str):
        self.state = state
        self.now = now
        self.cause = cause
        self.n = 0
        self.effects: list[Effect] = []
        self.agents: dict[str, Agent] = {}
        self.conversations: dict[str, Conversation] = {}
        self.customers: dict[str, Customer] = {}
        self.assignments: dict[str, AssignmentRecord] = {}
        self.drain: list[tuple[Agent, Channel]] = []
        self.closed: dict[str, tuple[float, str]] = {}

    def new_id(self) -> str:
        value = make_id(f"{self.cause}/{self.n}")
        self.n += 1
        return value

    def id_at(self, n: int) -> str:
        """The ``n``-th id of the call (one reserved earlier by advancing ``n``)."""
        return make_id(f"{self.cause}/{n}")

    def emit(self, event: RoutingEvent) -> None:
        self.effects.append(Emit(event))

    def customer(self, customer_id: str) -> Customer:
        """The customer (created on first use), marked changed."""
        customers = self.state.customers
        customer = customers.get(customer_id)
        if customer is None:
            customer = customers[customer_id] = Customer(customer_id)
        self.customers[customer_id] = customer
        return customer

    def effects_and_saves(self) -> list[Effect]:
        """The effects, then one save of everything marked changed."""
        effects = self.effects
        for agent in self.agents.values():
            effects.append(SaveAgent(agent_record(agent)))
        closed = self.closed
        for conversation in self.conversations.values():
            record = conversation_record(conversation, closed.get(conversation.conversation_id))
            effects.append(SaveConversation(record))
        for customer in self.customers.values():
            effects.append(SaveCustomer(customer_record(customer)))
        for assignment in self.assignments.values():
            effects.append(SaveAssignment(assignment))
        return effects
