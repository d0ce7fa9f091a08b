"""Builders with defaults for engine tests: events, a populated domain, effect readers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from router.engine import (
    ConversationRecord,
    CustomerErasure,
    DomainPolicy,
    DomainState,
    Effect,
    Emit,
    EngineInput,
    QueueMode,
    QueuePolicy,
    StepPolicy,
    apply,
    new_state,
    snapshot,
)
from schemas import (
    AgentRegistered,
    AgentRemoved,
    AgentReplied,
    Answerer,
    AnswerMode,
    Channel,
    ConversationAcceptRequested,
    ConversationAssigned,
    ConversationCloseRequested,
    ConversationDeclineRequested,
    ConversationSnoozeRequested,
    ConversationTransferRequested,
    ConversationUpdateRequested,
    CustomerLinkRequested,
    CustomerMergeRequested,
    CustomerNotified,
    CustomerOwnerSet,
    CustomerUnlinkRequested,
    IdentityChanged,
    MessageReceived,
    Presence,
    PresenceChanged,
    RoutingEvent,
)

T0 = 1_700_000_000.0
DOMAIN = "acme"
_ids = itertools.count(1)

E = TypeVar("E", bound=RoutingEvent)


def examples(count: int) -> int:
    """Hypothesis examples for a property: ``count``, or a fifth of it under mutation testing
    (mutmut sets ``MUTANT_UNDER_TEST``), where every engine call goes through mutmut's
    trampoline and each surviving mutant reruns every property; the mutants a property
    catches, it catches within its first examples."""
    return max(10, count // 5) if "MUTANT_UNDER_TEST" in os.environ else count


def next_id(prefix: str = "evt") -> str:
    return f"{prefix}-{next(_ids)}"


@dataclass(frozen=True)
class AgentSpec:
    agent_id: str
    capacity: dict[Channel, int] = field(
        default_factory=lambda: {Channel.SMS: 2, Channel.WEBCHAT: 2, Channel.EMAIL: 5}
    )
    skills: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    presence: Presence = Presence.ONLINE
    busy: bool = False
    """Fill every slot with conversations of other customers."""

    def registered(self) -> AgentRegistered:
        return registered(
            self.agent_id, capacity=self.capacity, skills=self.skills, queues=self.queues
        )


def agent(
    agent_id: str,
    *,
    capacity: dict[Channel, int] | None = None,
    skills: Sequence[str] = (),
    queues: Sequence[str] = (),
    presence: Presence = Presence.ONLINE,
    busy: bool = False,
) -> AgentSpec:
    if capacity is None:
        return AgentSpec(
            agent_id, skills=tuple(skills), queues=tuple(queues), presence=presence, busy=busy
        )
    return AgentSpec(agent_id, dict(capacity), tuple(skills), tuple(queues), presence, busy)


def registered(
    agent_id: str,
    *,
    capacity: dict[Channel, int] | None = None,
    skills: Sequence[str] = (),
    queues: Sequence[str] = (),
) -> AgentRegistered:
    return AgentRegistered(
        id=next_id("reg"),
        domain=DOMAIN,
        occurred_at=T0,
        agent_id=agent_id,
        name=agent_id.title(),
        skills=tuple(skills),
        queues=tuple(queues),
        capacity=dict(capacity) if capacity is not None else {Channel.SMS: 2},
    )


def presence(agent_id: str, status: Presence) -> PresenceChanged:
    return PresenceChanged(
        id=next_id("presence"), domain=DOMAIN, occurred_at=T0, agent_id=agent_id, status=status
    )


def message(
    key: str = "key-1",
    *,
    customer: str = "cust-1",
    channel: Channel = Channel.SMS,
    queue: str | None = None,
    priority: int = 0,
    message_id: str | None = None,
    reply_window_ends_at: float | None = None,
    **context: Any,
) -> MessageReceived:
    """A customer message; ``context``: ``skills``, ``language``, ``attributes``,
    ``known_customer_id``."""
    return MessageReceived(
        id=message_id or next_id("msg"),
        domain=DOMAIN,
        occurred_at=T0,
        channel=channel,
        endpoint="+15550000000",
        customer_address=f"addr:{customer}",
        customer_id=customer,
        conversation_key=key,
        provider_message_id=next_id("pm"),
        text="hello",
        queue=queue,
        priority=priority,
        reply_window_ends_at=reply_window_ends_at,
        **context,
    )


def owner_set(customer: str, agent_id: str | None) -> CustomerOwnerSet:
    return CustomerOwnerSet(
        id=next_id("owner"), domain=DOMAIN, occurred_at=T0, customer_id=customer, agent_id=agent_id
    )


def accept(conversation_id: str, agent_id: str) -> ConversationAcceptRequested:
    return ConversationAcceptRequested(
        id=next_id("accept"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id=agent_id,
    )


def close(
    conversation_id: str, agent_id: str | None = None, reason: str = "resolved"
) -> ConversationCloseRequested:
    return ConversationCloseRequested(
        id=next_id("close"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id=agent_id,
        reason=reason,
    )


def transfer(
    conversation_id: str,
    agent_id: str | None = None,
    *,
    to_agent: str | None = None,
    to_queue: str | None = None,
) -> ConversationTransferRequested:
    return ConversationTransferRequested(
        id=next_id("transfer"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id=agent_id,
        to_agent_id=to_agent,
        to_queue=to_queue,
    )


def replied(conversation_id: str, agent_id: str, channel: Channel = Channel.SMS) -> AgentReplied:
    return AgentReplied(
        id=next_id("reply"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id=agent_id,
        outbound_id=next_id("out"),
        channel=channel,
    )


def ladder_policy(
    *,
    mode: QueueMode = QueueMode.ASSIGN,
    skilled_wait: float | None = 60.0,
    overflow_wait: float | None = 600.0,
    offer_timeout: float = 20.0,
    away_after_missed_offers: int | None = 3,
) -> DomainPolicy:
    """Queue ``support``: members with skill ``english``, then anyone, then overflow."""
    return DomainPolicy(
        default_queue="support",
        away_after_missed_offers=away_after_missed_offers,
        queues={
            "support": QueuePolicy(
                skills=("english",),
                mode=mode,
                offer_timeout=offer_timeout,
                steps=(
                    StepPolicy(name="skilled", wait=skilled_wait),
                    StepPolicy(name="anyone", agents_from=("*",), skills=(), wait=overflow_wait),
                ),
            ),
            "billing": QueuePolicy(steps=(StepPolicy(name="billing", wait=300.0),)),
        },
    )


def domain(
    agents: Iterable[AgentSpec] = (),
    *,
    policy: DomainPolicy | None = None,
    preferred: dict[str, str] | None = None,
    now: float = T0,
) -> DomainState:
    """A domain with registered agents (online unless told), busy ones at capacity,
    and explicit customer owners from ``preferred``."""
    state = new_state(DOMAIN, policy or DomainPolicy())
    specs = list(agents)
    for spec in specs:
        apply(state, spec.registered(), now)
        if spec.presence is not Presence.OFFLINE:
            apply(state, presence(spec.agent_id, spec.presence), now)
    for spec in specs:
        if spec.busy:
            fill(state, spec, now)
    for customer, agent_id in (preferred or {}).items():
        apply(state, owner_set(customer, agent_id), now)
    return state


def fill(state: DomainState, spec: AgentSpec, now: float = T0) -> list[str]:
    """Give ``spec`` conversations until every slot is taken; returns their ids."""
    opened = []
    for channel, slots in spec.capacity.items():
        for i in range(slots):
            customer = f"filler-{spec.agent_id}-{channel}-{i}"
            apply(state, owner_set(customer, spec.agent_id), now)
            msg = message(f"fill:{customer}", customer=customer, channel=channel)
            apply(state, msg, now)
            opened.append(msg.id)
    return opened


def run(state: DomainState, events: Iterable[EngineInput], now: float = T0) -> list[Effect]:
    effects: list[Effect] = []
    for event in events:
        effects.extend(apply(state, event, now))
    return effects


def emitted(effects: Iterable[Effect], kind: type[E]) -> list[E]:
    return [e.event for e in effects if isinstance(e, Emit) and isinstance(e.event, kind)]


def routing_events(effects: Iterable[Effect]) -> list[RoutingEvent]:
    return [e.event for e in effects if isinstance(e, Emit)]


def event_types(effects: Iterable[Effect]) -> list[str]:
    return [str(type(event).__struct_config__.tag) for event in routing_events(effects)]


def assignment(effects: Iterable[Effect]) -> tuple[str, str, str] | None:
    """(conversation, agent, strategy) of the one assignment in ``effects``, if any."""
    assigned = emitted(effects, ConversationAssigned)
    assert len(assigned) <= 1, assigned
    if not assigned:
        return None
    event = assigned[0]
    return (event.conversation_id, event.agent_id, str(event.strategy))


def assigned_to(effects: Iterable[Effect]) -> str | None:
    """The agent of the one assignment in ``effects``, if any."""
    found = assignment(effects)
    return None if found is None else found[1]


def conversation(state: DomainState, conversation_id: str) -> ConversationRecord | None:
    """The snapshot of an open conversation (None once closed)."""
    return next((r for r in snapshot(state)[1] if r.conversation_id == conversation_id), None)


def declined(
    conversation_id: str, agent_id: str, reason: str = "busy"
) -> ConversationDeclineRequested:
    return ConversationDeclineRequested(
        id=next_id("decline"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id=agent_id,
        reason=reason,
    )


def removed(agent_id: str) -> AgentRemoved:
    return AgentRemoved(id=next_id("removed"), domain=DOMAIN, occurred_at=T0, agent_id=agent_id)


def erased(*identities: str, conversation_ids: tuple[str, ...] = ()) -> CustomerErasure:
    """An erasure as the shell hands it in: whom, read from its ``erasures`` row."""
    return CustomerErasure(
        id=next_id("erase"),
        domain=DOMAIN,
        occurred_at=T0,
        identities=identities,
        conversation_ids=conversation_ids,
    )


def linked(customer: str, identity: str) -> CustomerLinkRequested:
    return CustomerLinkRequested(
        id=next_id("link"), domain=DOMAIN, occurred_at=T0, customer_id=customer, identity=identity
    )


def identity_changed(customer: str, identity: str) -> IdentityChanged:
    """A provider's notice that ``customer`` now also has ``identity`` (WhatsApp's)."""
    return IdentityChanged(
        id=next_id("changed"),
        domain=DOMAIN,
        occurred_at=T0,
        channel=Channel.WHATSAPP,
        endpoint="+15550000000",
        customer_address=f"addr:{customer}",
        customer_id=customer,
        identity=identity,
        provider_message_id=next_id("pm"),
        provider_status="user_changed_number",
    )


def unlinked(customer: str, identity: str) -> CustomerUnlinkRequested:
    return CustomerUnlinkRequested(
        id=next_id("unlink"), domain=DOMAIN, occurred_at=T0, customer_id=customer, identity=identity
    )


def merged(customer: str, from_customer: str) -> CustomerMergeRequested:
    return CustomerMergeRequested(
        id=next_id("merge"),
        domain=DOMAIN,
        occurred_at=T0,
        customer_id=customer,
        from_customer_id=from_customer,
    )


def updated(
    conversation_id: str, agent_id: str | None = None, **context: Any
) -> ConversationUpdateRequested:
    return ConversationUpdateRequested(
        id=next_id("update"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id=agent_id,
        **context,
    )


def snoozed(
    conversation_id: str, until: float, agent_id: str | None = None
) -> ConversationSnoozeRequested:
    return ConversationSnoozeRequested(
        id=next_id("snooze"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id=agent_id,
        until=until,
    )


def notified(
    customer: str,
    conversation_id: str,
    *,
    mode: AnswerMode = AnswerMode.SENDER,
    agent_id: str | None = None,
    queue: str | None = None,
    until: float = T0 + 72 * 3600,
    channel: Channel = Channel.SMS,
    attributes: dict[str, str] | None = None,
) -> CustomerNotified:
    """The outbound API's word that ``customer`` was sent a business-started message."""
    return CustomerNotified(
        id=next_id("notify"),
        domain=DOMAIN,
        occurred_at=T0,
        outbound_id=f"out-{conversation_id}",
        conversation_id=conversation_id,
        customer_id=customer,
        channel=channel,
        endpoint="+15550000000",
        customer_address=f"addr:{customer}",
        answer=Answerer(mode=mode, agent_id=agent_id, queue=queue, until=until),
        attributes=attributes or {},
    )
