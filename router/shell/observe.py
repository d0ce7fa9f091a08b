"""Routing events → Prometheus metrics, and a canonical log line per decision."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import assert_never

import structlog

from schemas import (
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
    RoutingEvent,
)
from switchboard.metrics import Metrics

log = structlog.get_logger("router.decisions")


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
            metrics.fallbacks.labels(str(event.channel), event.queue).inc()
            log.info(
                "conversation_fallback",
                domain=event.domain,
                conversation_id=event.conversation_id,
                from_step=event.from_step,
                to_step=event.to_step,
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
