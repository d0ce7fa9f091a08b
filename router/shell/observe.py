"""Routing → Prometheus metrics, and a canonical log line per decision.

All the arithmetic behind the routing metrics lives here, as functions the worker calls
with what it has at hand: the events a committed batch emitted, the records the engine
saved, the domains it owns. The worker decides when (per batch, per record, now and then),
these functions decide what each figure is. Each figure of a domain's work counts under
the domain's bound label value (``Metrics.for_domain``), whose children are bound once.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import assert_never

import structlog

from router.engine import AssignmentRecord, ConversationRecord, ConversationStatus, DomainState
from router.shell.store import OutboxBatch, OutboxEvent
from runtime.metrics import Metrics
from schemas import (
    BotStatusChanged,
    BotTurn,
    Channel,
    CommandCompleted,
    CommandRejected,
    ConversationAssigned,
    ConversationBotAssigned,
    ConversationClosed,
    ConversationFallback,
    ConversationHandedOff,
    ConversationOffered,
    ConversationOutsideHours,
    ConversationOverflowed,
    ConversationQueued,
    ConversationReassigned,
    ConversationReplyWindowClosed,
    ConversationSnoozed,
    ConversationUpdated,
    CustomerConsentChanged,
    CustomerErased,
    CustomerLinked,
    CustomerMerged,
    MessageChangeRouted,
    MessageRouted,
    OutboundStatusChanged,
    Presence,
    RoutingEvent,
)
from schemas.cloudevents import event_type

log = structlog.get_logger("router.decisions")

FIRST_RESPONSES_REMEMBERED = 100_000
"""Conversations whose first response was counted, kept to count each once; past this
many the memory starts over (a conversation saved again before its second reply, by a
transfer say, may then count twice)."""


def observe_routing_events(metrics: Metrics, events: Iterable[RoutingEvent]) -> None:
    """A batch's events; ``message.routed`` (one per customer message) counted in one go."""
    routed: Counter[tuple[str, str]] = Counter()
    for event in events:
        if isinstance(event, MessageRouted):
            routed[event.domain, event.channel] += 1
        else:
            observe_routing_event(metrics, event)
    for (domain, channel), count in routed.items():
        metrics.for_domain(domain).counter(metrics.routed_messages, str(channel)).inc(count)


def observe_routing_event(metrics: Metrics, event: RoutingEvent) -> None:
    m = metrics.for_domain(event.domain)
    match event:
        case MessageRouted():
            m.counter(metrics.routed_messages, str(event.channel)).inc()
        case ConversationAssigned():
            channel, strategy = str(event.channel), str(event.strategy)
            m.counter(metrics.assignments, channel, event.queue, strategy).inc()
            m.histogram(metrics.wait_seconds, channel, strategy).observe(event.waited_seconds)
            if event.handoff is not None:
                # The first person after a bot's hand-off: the wait is the time to a person.
                bot = m.bot(event.handoff.bot_id)
                m.histogram(metrics.bot_time_to_human, bot).observe(event.waited_seconds)
            if event.preferred_agent_id is not None:
                if event.agent_id == event.preferred_agent_id:
                    m.counter(metrics.preferred_hits, channel).inc()
                else:
                    m.counter(metrics.preferred_misses, channel).inc()
            log.info(
                "conversation_assigned",
                domain=event.domain,
                conversation_id=event.conversation_id,
                agent_id=event.agent_id,
                strategy=str(event.strategy),
                step=event.step,
                waited_s=round(event.waited_seconds, 3),
            )
        case ConversationFallback():
            m.counter(metrics.fallbacks, str(event.channel), event.queue, event.reason).inc()
            log.info(
                "conversation_fallback",
                domain=event.domain,
                conversation_id=event.conversation_id,
                from_step=event.from_step,
                to_step=event.to_step,
                reason=event.reason,
            )
        case ConversationOverflowed():
            m.counter(metrics.overflows, str(event.channel), event.queue).inc()
            log.info(
                "conversation_overflowed",
                domain=event.domain,
                conversation_id=event.conversation_id,
                waited_s=round(event.waited_seconds, 3),
            )
        case ConversationOffered():
            m.counter(metrics.offers, str(event.channel), event.queue).inc()
        case ConversationClosed():
            m.counter(metrics.closed, str(event.channel), event.reason).inc()
            if event.contained and event.bot_id is not None:
                m.counter(metrics.bot_contained, m.bot(event.bot_id)).inc()
        case ConversationBotAssigned():
            m.counter(metrics.bot_conversations, m.bot(event.bot_id), event.reason).inc()
            log.info(
                "conversation_bot_assigned",
                domain=event.domain,
                conversation_id=event.conversation_id,
                bot_id=event.bot_id,
                reason=event.reason,
            )
        case BotTurn():
            m.counter(metrics.bot_turns, m.bot(event.bot_id)).inc()
        case BotStatusChanged():
            if not event.available:
                m.counter(metrics.bot_downs, m.bot(event.bot_id)).inc()
            log.warning(
                "bot_status_changed",
                domain=event.domain,
                bot_id=event.bot_id,
                available=event.available,
                failures=event.failures,
            )
        case ConversationHandedOff():
            reason = str(event.reason)
            m.counter(metrics.bot_handoffs, m.bot(event.bot_id), reason).inc()
            log.info(
                "conversation_handed_off",
                domain=event.domain,
                conversation_id=event.conversation_id,
                bot_id=event.bot_id,
                reason=reason,
                to_agent_id=event.to_agent_id,
            )
        case ConversationReplyWindowClosed():
            m.counter(metrics.reply_windows_closed, str(event.channel)).inc()
        case CommandCompleted():
            m.counter(metrics.commands, "completed").inc()
        case CommandRejected():
            m.counter(metrics.commands, "rejected").inc()
            log.info("command_rejected", domain=event.domain, reason=event.reason)
        case CustomerMerged():
            log.info(
                "customer_merged",
                domain=event.domain,
                identities=len(event.identities),
                conversations=len(event.conversation_ids),
            )
        case CustomerErased():
            m.counter(metrics.customer_erasures).inc()
            log.info(
                "customer_erased",
                domain=event.domain,
                erasure_id=event.erasure_id,
                identities=event.identities,
                conversations=len(event.conversation_ids),
            )
        case CustomerConsentChanged():
            m.counter(
                metrics.consent_changes,
                str(event.channel),
                str(event.consent),
                event.source,
                str(event.scope),
            ).inc()
            log.info(
                "consent_changed",
                domain=event.domain,
                consent=str(event.consent),
                source=event.source,
                scope=str(event.scope),
            )
        case (
            ConversationQueued()
            | OutboundStatusChanged()
            | ConversationReassigned()
            | ConversationOutsideHours()
            | ConversationUpdated()
            | ConversationSnoozed()
            | CustomerLinked()
            | MessageChangeRouted()
        ):
            pass
        case _:
            assert_never(event)


def observe_duplicate(metrics: Metrics, domain: str, channel: Channel) -> None:
    """A provider retry of a message already routed, dropped before the engine."""
    metrics.for_domain(domain).counter(metrics.duplicate_messages, str(channel)).inc()


def observe_saved_assignment(metrics: Metrics, domain: str, record: AssignmentRecord) -> None:
    """An owner period or offer the engine saved: an expired offer is a miss.

    Counted from the record rather than an event: a missed offer emits none of its own
    (the next offer or the fallback follows)."""
    if record.end_reason == "offer_missed":
        bound = metrics.for_domain(domain)
        bound.counter(metrics.offer_misses, str(record.channel), record.queue).inc()


def observe_first_response(
    metrics: Metrics,
    seen: set[tuple[str, str]],
    state: DomainState,
    record: ConversationRecord,
) -> None:
    """First-response time and SLA breaches, counted once: in the save that set it.

    Every later save of the conversation carries the same ``first_response_at``; only the
    save whose latest agent reply is that first response counts, and ``seen`` (the
    worker's memory of counted conversations) keeps a replayed save from counting twice.
    """
    answered = record.first_response_at
    if answered is None or answered != record.last_agent_reply_at:
        return
    key = (state.domain, record.conversation_id)
    if key in seen:
        return
    seen.add(key)
    if len(seen) > FIRST_RESPONSES_REMEMBERED:
        seen.clear()
    m = metrics.for_domain(state.domain)
    channel = str(record.channel)
    waited = answered - record.opened_at
    m.histogram(metrics.first_response_seconds, channel, record.queue).observe(waited)
    queue = state.compiled.queues.get(record.queue)
    target = queue.sla.get(record.channel) if queue is not None else None
    if target is None or queue is None:
        return
    if queue.calendar is not None:
        # The SLA clock of a queue with business hours counts business time only.
        waited = queue.calendar.business_seconds(record.opened_at, answered)
    if waited > target:
        m.counter(metrics.sla_breaches, channel, record.queue).inc()


_CHANNEL = operator.attrgetter("channel")
_PRESENCE = operator.attrgetter("presence")
GAUGE_SLICE = 2_000
"""Conversations or agents counted between two yields of ``gauge_slices``."""


def refresh_gauges(
    metrics: Metrics,
    states: Iterable[DomainState],
    partitions: Iterable[int],
    unpublished: Iterable[OutboxBatch],
) -> None:
    """``gauge_slices`` at once."""
    for _ in gauge_slices(metrics, states, partitions, unpublished):
        pass


def gauge_slices(
    metrics: Metrics,
    states: Iterable[DomainState],
    partitions: Iterable[int],
    unpublished: Iterable[OutboxBatch],
) -> Iterator[None]:
    """Queue length, open conversations, agents by presence, occupancy, outbox backlog.

    Counted a slice at a time: it yields after every ``GAUGE_SLICE`` conversations or
    agents, and the caller lets the loop run at each yield. 100,000 open conversations
    and 10,000 agents counted at once held the router's loop for 60 to 110 ms every few
    seconds; in slices they take about 20 ms in all, none over 2.5 ms. A domain's
    conversations and agents are those it held when its turn came, each counted as it is
    when its slice comes; the gauges are set together at the end.

    The routing gauges are this process's, by domain label value: the domains counted
    under ``other`` add up there. Every queue and every presence of each owned domain is
    set, to 0 when empty, so a queue that drains reads 0 rather than its last value;
    series of what is no longer there (a domain that moved to another router) are dropped.
    """
    waiting: Counter[tuple[str, str]] = Counter()
    open_by_channel: Counter[tuple[str, Channel]] = Counter()
    presence: Counter[tuple[str, str]] = Counter()
    used: Counter[tuple[str, str]] = Counter()
    capacity: Counter[tuple[str, str]] = Counter()
    waiting_status, online = ConversationStatus.WAITING, Presence.ONLINE
    for state in list(states):
        label = metrics.for_domain(state.domain).label
        for queue in state.compiled.queues:
            waiting[label, queue] += 0
        for status in Presence:
            presence[label, str(status)] += 0
        conversations = list(state.conversations.values())
        agents = list(state.agents.values())
        for start in range(0, len(conversations), GAUGE_SLICE):
            some = conversations[start : start + GAUGE_SLICE]
            for channel, count in Counter(map(_CHANNEL, some)).items():
                open_by_channel[label, channel] += count
            for queue, count in Counter(
                c.queue.name for c in some if c.status is waiting_status
            ).items():
                waiting[label, queue] += count
            yield
        for start in range(0, len(agents), GAUGE_SLICE):
            group = agents[start : start + GAUGE_SLICE]
            for status, count in Counter(map(_PRESENCE, group)).items():
                presence[label, str(status)] += count
            offered: dict[Channel, int] = {}
            taken: dict[Channel, int] = {}
            for agent in group:
                if agent.presence is online:
                    load = agent.load
                    for channel, count in agent.capacity.items():
                        offered[channel] = offered.get(channel, 0) + count
                        taken[channel] = taken.get(channel, 0) + load.get(channel, 0)
            for channel, count in offered.items():
                capacity[label, str(channel)] += count
                used[label, str(channel)] += taken[channel]
            yield
    backlog: Counter[int] = Counter({number: 0 for number in partitions})
    for batch in unpublished:
        backlog[batch.partition] += len(batch.events)
    m = metrics
    gauges = (m.queue_length, m.open_conversations, m.agents_by_presence, m.occupancy)
    # Cleared and set anew every few seconds, off the per-message path: ``labels()`` here.
    for gauge in (*gauges, m.outbox_backlog):
        gauge.clear()
    for labels, count in waiting.items():
        m.queue_length.labels(*labels).set(count)
    for (label, channel), count in open_by_channel.items():
        m.open_conversations.labels(label, str(channel)).set(count)
    for labels, count in presence.items():
        m.agents_by_presence.labels(*labels).set(count)
    for labels, slots in capacity.items():
        m.occupancy.labels(*labels).set(used[labels] / slots if slots else 0.0)
    for number, count in backlog.items():
        m.outbox_backlog.labels(str(number)).set(count)


def observe_dead_letter(metrics: Metrics, domain: str | None, topic: str, reason: str) -> None:
    """A poison record, labelled by the first word of its reason (``invalid``, ``unknown``),
    and by its domain when it is one this process owns (None: counted under no domain, so
    that a record naming a stranger takes no label value)."""
    bound = metrics.for_domain(domain)
    bound.counter(metrics.dead_letters, topic, reason.split(":")[0].split(" ")[0]).inc()


def observe_published(
    metrics: Metrics, events: Iterable[OutboxEvent], dead_letter_topic: str
) -> None:
    """Routing events the broker acknowledged, by their CloudEvents type (dead letters
    are counted when they are made, not here)."""
    published: dict[bytes, int] = {}
    for event in events:
        if event.topic != dead_letter_topic and (kind := event_type(event.headers)) is not None:
            published[kind] = published.get(kind, 0) + 1
    for kind, count in published.items():
        metrics.routing_events.labels(kind.decode()).inc(count)
