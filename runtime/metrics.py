"""Every Prometheus metric Switchboard exposes, in one place.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` base units) and
labels are low-cardinality only: channel, strategy, queue, outcome, provider, partition —
never conversation, customer or agent ids. Tests build a fresh registry each.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The metric catalogue; one instance per process (per registry)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Adapters (ingress and egress)
        self.webhook_requests = Counter(
            "switchboard_webhook_requests_total",
            "Webhook requests by provider and outcome (accepted, duplicate, ignored, "
            "dead_lettered, bad_request, bad_signature, replayed, too_large, unavailable).",
            ["provider", "outcome"],
            registry=r,
        )
        self.signature_failures = Counter(
            "switchboard_webhook_signature_failures_total",
            "Webhook requests refused because their signature did not verify.",
            ["provider"],
            registry=r,
        )
        self.inbound_messages = Counter(
            "switchboard_inbound_messages_total",
            "Customer messages published to conversations.inbound.",
            ["channel"],
            registry=r,
        )
        self.egress_messages = Counter(
            "switchboard_egress_messages_total",
            "Outbound replies by channel and final outcome (sent, failed, duplicate).",
            ["channel", "outcome"],
            registry=r,
        )
        self.egress_attempts = Counter(
            "switchboard_egress_attempts_total",
            "Provider API calls made to deliver replies, by channel and result "
            "(ok, retryable, permanent, error).",
            ["channel", "result"],
            registry=r,
        )
        self.delivery_statuses = Counter(
            "switchboard_delivery_status_updates_total",
            "Delivery status callbacks received from providers.",
            ["channel", "status"],
            registry=r,
        )
        # Router
        self.routed_messages = Counter(
            "switchboard_routed_messages_total",
            "Customer messages applied by the router (message.routed).",
            ["channel"],
            registry=r,
        )
        self.duplicate_messages = Counter(
            "switchboard_duplicate_messages_total",
            "Inbound messages dropped as provider retries of a message already routed.",
            ["channel"],
            registry=r,
        )
        self.assignments = Counter(
            "switchboard_assignments_total",
            "Conversations assigned, by channel, queue and strategy.",
            ["channel", "queue", "strategy"],
            registry=r,
        )
        self.preferred_hits = Counter(
            "switchboard_preferred_agent_hits_total",
            "Conversations with a preferred agent that went to that agent.",
            ["channel"],
            registry=r,
        )
        self.preferred_misses = Counter(
            "switchboard_preferred_agent_misses_total",
            "Conversations with a preferred agent that went to someone else.",
            ["channel"],
            registry=r,
        )
        self.fallbacks = Counter(
            "switchboard_fallbacks_total",
            "Routing steps given up (conversation.fallback), by reason (timeout, offer_missed, "
            "shift_ended, no_channel, agent_unavailable_within_budget, no_affinity_agent).",
            ["channel", "queue", "reason"],
            registry=r,
        )
        self.overflows = Counter(
            "switchboard_overflows_total",
            "Conversations nobody took within the queue's final timeout.",
            ["channel", "queue"],
            registry=r,
        )
        self.offers = Counter(
            "switchboard_offers_total",
            "Offers made to agents in offer mode.",
            ["channel", "queue"],
            registry=r,
        )
        self.offer_misses = Counter(
            "switchboard_offer_misses_total",
            "Offers that expired without being accepted.",
            ["channel", "queue"],
            registry=r,
        )
        self.closed = Counter(
            "switchboard_conversations_closed_total",
            "Conversations closed, by reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.reply_windows_closed = Counter(
            "switchboard_reply_windows_closed_total",
            "Provider reply windows that closed on open conversations (templates needed).",
            ["channel"],
            registry=r,
        )
        self.commands = Counter(
            "switchboard_commands_total",
            "Agent API commands applied by the router, by outcome (completed, rejected).",
            ["outcome"],
            registry=r,
        )
        self.wait_seconds = Histogram(
            "switchboard_assignment_wait_seconds",
            "How long the customer waited from opening to assignment.",
            ["channel", "strategy"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.sla_breaches = Counter(
            "switchboard_sla_breaches_total",
            "First responses later than the queue's first_response_sla for the channel.",
            ["channel", "queue"],
            registry=r,
        )
        self.queue_length = Gauge(
            "switchboard_queue_waiting_conversations",
            "Conversations waiting for an agent, by queue.",
            ["queue"],
            registry=r,
        )
        self.open_conversations = Gauge(
            "switchboard_open_conversations",
            "Open conversations held by this router process.",
            ["channel"],
            registry=r,
        )
        self.agents_by_presence = Gauge(
            "switchboard_agents",
            "Agents known to this router process, by presence.",
            ["presence"],
            registry=r,
        )
        self.occupancy = Gauge(
            "switchboard_agent_occupancy_ratio",
            "Used capacity over total capacity of online agents, by channel.",
            ["channel"],
            registry=r,
        )
        self.batch_size = Histogram(
            "switchboard_router_batch_records",
            "Records per router batch.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "switchboard_router_batch_seconds",
            "Time to apply, persist and publish one router batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "switchboard_consumer_lag_records",
            "Records between the router's position and the partition's high-water mark.",
            ["topic", "partition"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "switchboard_outbox_backlog_events",
            "Routing events written to the outbox and not yet published.",
            ["partition"],
            registry=r,
        )
        self.dead_letters = Counter(
            "switchboard_dead_letters_total",
            "Poison records sent to the dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=r,
        )
        self.offset_resets = Counter(
            "switchboard_offset_resets_total",
            "Stored offsets found beyond a partition's end (a broker that lost its log).",
            ["topic"],
            registry=r,
        )
        self.routing_events = Counter(
            "switchboard_routing_events_total",
            "Routing events published to conversations.routing, by type.",
            ["type"],
            registry=r,
        )
        self.partitions_owned = Gauge(
            "switchboard_router_partitions",
            "Partitions this router process owns.",
            registry=r,
        )
        self.partition_load_seconds = Histogram(
            "switchboard_partition_load_seconds",
            "Time to take over partitions: load their domains from PostgreSQL and seek.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.database_errors = Counter(
            "switchboard_database_errors_total",
            "Failed database operations the router retried.",
            registry=r,
        )
        self.first_response_seconds = Histogram(
            "switchboard_first_response_seconds",
            "From a conversation's first customer message to its agent's first reply.",
            ["channel", "queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
