"""The topics of the contract: their names (without the deployment's prefix), the event
union each one's records decode to, and the headers of the dead-letter topic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.agents import AgentEvent
from schemas.bots import BotEvent
from schemas.inbound import InboundEvent
from schemas.outbound import OutboundEvent
from schemas.routing import RoutingEvent

INBOUND = "conversations.inbound"
AGENTS = "agents.events"
ROUTING = "conversations.routing"
OUTBOUND = "conversations.outbound"
BOTS = "bots.events"
"""Bots' answers (keyed by domain; as many partitions as the inbound topic)."""
DLQ = "switchboard.dlq"
ALL_TOPICS = (INBOUND, AGENTS, ROUTING, OUTBOUND, BOTS, DLQ)
CONFIG = "switchboard.config"
"""The current runtime configuration (one partition, compacted): every process follows
it to apply a new version without a restart. Internal to Switchboard: not an event
stream of the contract."""

#: Topic -> the tagged union its records decode to (the dead-letter topic holds raw bytes).
TOPIC_TYPES: dict[str, Any] = {
    INBOUND: InboundEvent,
    AGENTS: AgentEvent,
    ROUTING: RoutingEvent,
    OUTBOUND: OutboundEvent,
    BOTS: BotEvent,
}

# Headers of a dead letter (``switchboard.dlq``), besides the original record's own.
DLQ_REASON = "dlq_reason"
"""Why it was set aside; never quotes the value."""
DLQ_TOPIC = "dlq_topic"
"""The topic it was read from (or, for an adapter's, meant for)."""
DLQ_PARTITION = "dlq_partition"
"""The partition it was read from (records the router or the egress set aside)."""
DLQ_OFFSET = "dlq_offset"
"""Its offset there."""
DLQ_SOURCE = "dlq_source"
"""Who set aside what was never a record: ``webhook/<provider>``."""

SEALED_WITH = "sealed_with"
"""Header of a sealed record: the 16 bytes (a UUID) of the key that opens its value
(``runtime.sealing``)."""

CONFIG_VERSION = "config_version"
"""Header of an inbound record: the configuration version the adapter applied when it
made it. A router that has not applied that version yet waits for it (a queue or a
domain the record names may be new)."""


def config_version_of(headers: Sequence[tuple[str, bytes]]) -> int | None:
    """A record's ``CONFIG_VERSION`` (its last, should there be several); None: none
    readable."""
    for key, value in reversed(headers):
        if key == CONFIG_VERSION:
            try:
                return int(value)
            except ValueError:
                return None
    return None
