"""Routing → Prometheus metrics, and a canonical log line per decision.

All the arithmetic behind the routing metrics lives here, as functions the worker calls
with what it has at hand: the events a committed batch emitted, the records the engine
saved, the domains it owns. The worker decides when (per batch, per record, now and then),
these functions decide what each figure is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import assert_never

import structlog

from router.engine import AssignmentRecord, ConversationRecord, ConversationStatus, DomainState
from router.shell.store import OutboxBatch, OutboxEvent
from runtime.metrics import Metrics
from schemas import (
    Channel,
    CommandCompleted,
    CommandRejected,
    ConversationAssigned,
    ConversationClosed,
    ConversationFallback,
    ConversationOffered,
    ConversationOverflowed,
    ConversationQueued,
    ConversationReassigned,
    ConversationReplyWindowClosed,
    MessageRouted,
    Presence,
    RoutingEvent,
)

log = structlog.get_logger("router.decisions")

FIRST_RESPONSES_REMEMBERED = 100_000
"""Conversations whose first response was counted, kept to count each once; past this
many the memory starts over (a conversation saved again before its second reply, by a
transfer say, may then count twice)."""


def observe_routing_events(metrics: Metrics, events: Iterable[RoutingEvent]) -> None:
    """A batch's events; ``message.routed`` (one per customer message) counted in one go."""
    routed: Counter[str] = Counter()
    for event in events:
        if isinstance(event, MessageRouted):
            routed[event.channel] += 1
        else:
            observe_routing_event(metrics, event)
    for channel, count in routed.items():
        metrics.routed_messages.labels(channel).inc(count)


def observe_routing_event(metrics: Metrics, event: RoutingEvent) -> None:
    match event:
        case MessageRouted():
            metrics.routed_messages.labels(str(event.channel)).inc()
        case ConversationAssigned():
            channel = str(event.channel)
            metrics.assignments.labels(channel, event.queue, str(event.strategy)).inc()
            metrics.wait_seconds.labels(channel, str(event.strategy)).observe(event.waited_seconds)
            if event.preferred_agent_id is not None:
                if event.agent_id == event.preferred_agent_id:
                    metrics.preferred_hits.labels(channel).inc()
                else:
                    metrics.preferred_misses.labels(channel).inc()
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
            metrics.fallbacks.labels(str(event.channel), event.queue, event.reason).inc()
            log.info(
                "conversation_fallback",
                domain=event.domain,
                conversation_id=event.conversation_id,
                from_step=event.from_step,
                to_step=event.to_step,
                reason=event.reason,
            )
        case ConversationOverflowed():
            metrics.overflows.labels(str(event.channel), event.queue).inc()
            log.info(
                "conversation_overflowed",
                domain=event.domain,
                conversation_id=event.conversation_id,
                waited_s=round(event.waited_seconds, 3),
            )
        case ConversationOffered():
            metrics.offers.labels(str(event.channel), event.queue).inc()
        case ConversationClosed():
            metrics.closed.labels(str(event.channel), event.reason).inc()
        case ConversationReplyWindowClosed():
            metrics.reply_windows_closed.labels(str(event.channel)).inc()
        case CommandCompleted():
            metrics.commands.labels("completed").inc()
        case CommandRejected():
            metrics.commands.labels("rejected").inc()
            log.info("command_rejected", domain=event.domain, reason=event.reason)
        case ConversationQueued() | ConversationReassigned():
            pass
        case _:
            assert_never(event)


def observe_duplicate(metrics: Metrics, channel: Channel) -> None:
    """A provider retry of a message already routed, dropped before the engine."""
    metrics.duplicate_messages.labels(str(channel)).inc()


def observe_saved_assignment(metrics: Metrics, record: AssignmentRecord) -> None:
    """An owner period or offer the engine saved: an expired offer is a miss.

    Counted from the record rather than an event: a missed offer emits none of its own
    (the next offer or the fallback follows)."""
    if record.end_reason == "offer_missed":
        metrics.offer_misses.labels(str(record.channel), record.queue).inc()


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
    channel = str(record.channel)
    waited = answered - record.opened_at
    metrics.first_response_seconds.labels(channel, record.queue).observe(waited)
    queue = state.compiled.queues.get(record.queue)
    target = queue.sla.get(record.channel) if queue is not None else None
    if target is not None and waited > target:
        metrics.sla_breaches.labels(channel, record.queue).inc()


def refresh_gauges(
    metrics: Metrics,
    states: Iterable[DomainState],
    partitions: Iterable[int],
    unpublished: Iterable[OutboxBatch],
) -> None:
    """Queue length, open conversations, agents by presence, occupancy, outbox backlog.

    The routing gauges are this process's: sums over the domains it owns. Every queue of
    those domains and every presence is set, to 0 when empty, so a queue that drains
    reads 0 rather than its last value; series of what is no longer there are dropped.
    """
    waiting: Counter[str] = Counter()
    open_by_channel: Counter[str] = Counter()
    presence: Counter[str] = Counter({str(p): 0 for p in Presence})
    used: Counter[str] = Counter()
    capacity: Counter[str] = Counter()
    for state in states:
        for queue in state.compiled.queues:
            waiting[queue] += 0
        for conversation in state.conversations.values():
            open_by_channel[str(conversation.channel)] += 1
            if conversation.status is ConversationStatus.WAITING:
                waiting[conversation.queue.name] += 1
        for agent in state.agents.values():
            presence[str(agent.presence)] += 1
            if agent.presence is Presence.ONLINE:
                for channel, slots in agent.capacity.items():
                    capacity[str(channel)] += slots
                    used[str(channel)] += agent.load.get(channel, 0)
    backlog: Counter[int] = Counter({number: 0 for number in partitions})
    for batch in unpublished:
        backlog[batch.partition] += len(batch.events)
    m = metrics
    for gauge in (m.queue_length, m.open_conversations, m.occupancy, m.outbox_backlog):
        gauge.clear()
    for name, count in waiting.items():
        m.queue_length.labels(name).set(count)
    for channel_name, count in open_by_channel.items():
        m.open_conversations.labels(channel_name).set(count)
    for status, count in presence.items():
        m.agents_by_presence.labels(status).set(count)
    for channel_name, slots in capacity.items():
        m.occupancy.labels(channel_name).set(used[channel_name] / slots if slots else 0.0)
    for number, count in backlog.items():
        m.outbox_backlog.labels(str(number)).set(count)


def observe_dead_letter(metrics: Metrics, topic: str, reason: str) -> None:
    """A poison record, labelled by the first word of its reason (``invalid``, ``unknown``)."""
    metrics.dead_letters.labels(topic, reason.split(":")[0].split(" ")[0]).inc()


def observe_published(
    metrics: Metrics, events: Iterable[OutboxEvent], dead_letter_topic: str
) -> None:
    """Routing events the broker acknowledged, by their CloudEvents type (dead letters
    are counted when they are made, not here)."""
    published = Counter(
        value
        for event in events
        if event.topic != dead_letter_topic
        for name, value in event.headers
        if name == "ce_type"
    )
    for event_type, count in published.items():
        metrics.routing_events.labels(event_type.decode()).inc(count)
