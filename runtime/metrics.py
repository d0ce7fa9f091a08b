"""Every Prometheus metric Switchboard exposes, in one place, and the ``domain`` label's bound.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` base units) and
labels are low-cardinality only: channel, strategy, queue, outcome, provider, partition —
never conversation, customer or agent ids. The metrics about a routing domain's work also
carry ``domain``, bounded by ``DomainLabels``; the others (``PROCESS_METRICS``) are about
the process, a partition or a provider. The bot metrics carry ``bot``, the bot's id: bots
are configured (at most ``router.engine.policy.MAX_BOTS`` a domain), unlike agents, and the
domains counted under ``other`` count their bots under ``other`` too
(``DomainMetrics.bot``). Tests build a fresh registry each.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from runtime.config import MetricsConfig

log = structlog.get_logger(__name__)

WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
HANDOFF_WAIT_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 4 * 3600, 8 * 3600)
"""A customer handed off by a bot waits for a person: seconds when someone is free, hours
when the hand-off comes outside business hours."""

_ERROR_STEPS = (10, 30, 60, 120, 300, 600, 1800, 3600)
SIGNED_ERROR_BUCKETS = (*(-s for s in reversed(_ERROR_STEPS)), 0, *_ERROR_STEPS)
"""Actual minus predicted wait: served sooner than announced (below 0) or later."""

OTHER_DOMAINS = "other"
"""The ``domain`` label value of every domain beyond the limit."""
NO_DOMAIN = ""
"""The ``domain`` label value of what no domain of this process owns, such as a dead letter
whose key names none. Prometheus stores an empty label as no label, and a domain id is
never empty."""

PROCESS_METRICS = frozenset(
    {
        # Counted before the request is parsed: no domain is known yet.
        "switchboard_webhook_requests_total",
        "switchboard_webhook_signature_failures_total",
        # A provider's health, shared by the domains that use it.
        "switchboard_egress_attempts_total",
        "switchboard_delivery_status_updates_total",
        # The router's pipeline: a batch, partition, topic or outbox row mixes the domains
        # hashed to it.
        "switchboard_router_batch_records",
        "switchboard_router_batch_seconds",
        # The router's memory and the lookups that keep it bounded: the cache is shared by
        # the process's domains.
        "switchboard_router_customers_resident",
        "switchboard_router_customer_lookups_total",
        "switchboard_topic_keys_cached",
        "switchboard_consumer_lag_records",
        "switchboard_outbox_backlog_events",
        "switchboard_offset_resets_total",
        "switchboard_routing_events_total",
        # The process: its partitions, its database, the domain label's bound itself.
        "switchboard_router_partitions",
        "switchboard_router_gathering",
        "switchboard_router_saves_activity_alone",
        "switchboard_partition_load_seconds",
        "switchboard_database_errors_total",
        "switchboard_domain_label_limit_reached",
        # The runtime configuration this process applies: one version for every domain.
        "switchboard_config_version",
        "switchboard_config_applied_timestamp_seconds",
    }
)
"""Metrics without a ``domain`` label; every other metric has one (a test holds to it)."""


class DomainLabels:
    """The ``domain`` label value of each routing domain: its id for the first ``limit``
    domains seen, ``other`` for every later one, for the life of the process.

    Domains are added at run time (rebalances, new tenants), so the set is not taken from
    the configuration. A slot is never given back, so a domain's value never changes, and
    a domain beyond the limit needs no memory: it is ``other`` whenever asked.
    """

    def __init__(self, limit: int, on_first_other: Callable[[str], None]) -> None:
        if limit < 1:
            raise ValueError("the domain label limit is at least 1")
        self.limit = limit
        self._own: set[str] = set()
        self._on_first_other: Callable[[str], None] | None = on_first_other
        """Called once, with the first domain counted under ``other``."""

    @property
    def labelled(self) -> int:
        """Domains with a label value of their own."""
        return len(self._own)

    def label(self, domain: str) -> str:
        if domain in self._own:
            return domain
        if len(self._own) < self.limit:
            self._own.add(domain)
            return domain
        if self._on_first_other is not None:
            notify, self._on_first_other = self._on_first_other, None
            notify(domain)
        return OTHER_DOMAINS


class BoundChildren:
    """Metrics' children, bound on first use, for label values that begin with ``prefix``:
    ``labels()`` converts, checks and locks on every call, which costs more than the
    increment itself on the per-message path. For label values from a fixed set (a
    domain's bounded label, a provider, an outcome, a channel, a status), never from input."""

    __slots__ = ("_counters", "_histograms", "_prefix")

    def __init__(self, prefix: tuple[str, ...] = ()) -> None:
        self._prefix = prefix
        self._counters: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        self._histograms: dict[tuple[Histogram, tuple[str, ...]], Histogram] = {}

    def counter(self, metric: Counter, *labels: str) -> Counter:
        """``metric``'s child for the prefix and ``labels`` (the labels after it)."""
        key = (metric, labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metric.labels(*self._prefix, *labels)
        return child

    def histogram(self, metric: Histogram, *labels: str) -> Histogram:
        """``metric``'s child for the prefix and ``labels`` (the labels after it)."""
        key = (metric, labels)
        child = self._histograms.get(key)
        if child is None:
            child = self._histograms[key] = metric.labels(*self._prefix, *labels)
        return child


class DomainMetrics(BoundChildren):
    """The children of the per-domain metrics for one ``domain`` label value."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        super().__init__((label,))
        self.label = label

    def bot(self, bot_id: str) -> str:
        """The ``bot`` label value of ``bot_id``: its id, bounded by the domain's
        configuration, except in ``other``, whose domains are not bounded, nor their bots."""
        return OTHER_DOMAINS if self.label == OTHER_DOMAINS else bot_id


class Metrics:
    """The metric catalogue; one instance per process (per registry)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, config: MetricsConfig | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        limit = (config or MetricsConfig()).domain_label_limit
        self.domain_labels = DomainLabels(limit, self._first_other)
        self._bound: dict[str | None, DomainMetrics] = {}
        """By domain (None: no domain), each domain with a label value of its own; those
        counted under ``other`` are looked up anew (``for_domain``), to bound the memory."""
        self._by_label: dict[str, DomainMetrics] = {}
        self._children = BoundChildren()
        # The domain label's bound
        self.domain_label_limit_reached = Gauge(
            "switchboard_domain_label_limit_reached",
            "1 once a domain beyond metrics.domain_label_limit was counted under "
            'domain="other" in this process, else 0.',
            registry=r,
        )
        # Adapters (ingress and egress)
        self.webhook_requests = Counter(
            "switchboard_webhook_requests_total",
            "Webhook requests by provider and outcome (accepted, ignored, "
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
            ["domain", "channel"],
            registry=r,
        )
        self.egress_messages = Counter(
            "switchboard_egress_messages_total",
            "Outbound replies by channel and final outcome (sent, failed, duplicate).",
            ["domain", "channel", "outcome"],
            registry=r,
        )
        self.egress_attempts = Counter(
            "switchboard_egress_attempts_total",
            "Provider API calls made to deliver replies, by channel and result "
            "(ok, retryable, permanent, error).",
            ["channel", "result"],
            registry=r,
        )
        # HTTP bots (adapters.bots); ``bot`` is bounded by the configuration (at most 50
        # bots per domain), and is ``other`` under ``domain="other"``.
        self.bot_webhook_calls = Counter(
            "switchboard_bot_webhook_calls_total",
            "Turns and waiting hand-offs of HTTP bots the adapters handled, by bot and"
            " outcome (answered, timeout, unreachable, http_error, bad_answer,"
            " secret_missing, skipped_late, undecodable).",
            ["domain", "bot", "outcome"],
            registry=r,
        )
        self.bot_webhook_seconds = Histogram(
            "switchboard_bot_webhook_seconds",
            "How long HTTP bots took to answer a call, a turn's or a hand-off's (answered"
            " or failed).",
            ["domain", "bot"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 10, 15, 20, 30, 60, 120),
            registry=r,
        )
        self.identity_lookups = Counter(
            "switchboard_identity_lookups_total",
            "Identity lookups of customer messages, by outcome (hit, miss, cached, error, "
            "timeout, skipped).",
            ["domain", "outcome"],
            registry=r,
        )
        self.outbound_requests = Counter(
            "switchboard_outbound_requests_total",
            "Business-started messages asked for through the API, by channel and outcome"
            " (accepted, duplicate, opted_out, refused).",
            ["domain", "channel", "outcome"],
            registry=r,
        )
        self.outbound_sends = Counter(
            "switchboard_outbound_sends_total",
            "Business-started messages the sender finished, by channel and outcome (sent,"
            " failed, refused, cancelled).",
            ["domain", "channel", "outcome"],
            registry=r,
        )
        self.outbound_pending = Gauge(
            "switchboard_outbound_pending_messages",
            "Business-started messages waiting for their turn (queued or being sent), as the"
            " sender last counted them.",
            ["domain", "channel"],
            registry=r,
        )
        self.outbound_throttled = Counter(
            "switchboard_outbound_throttled_total",
            "Times the sender waited for a send rate (the domain's or a sender's) or a"
            " provider's 429 before sending.",
            ["domain", "channel", "limit"],
            registry=r,
        )
        self.consent_changes = Counter(
            "switchboard_consent_changes_total",
            "Customers' opt-outs and opt-ins recorded, by channel, consent, source"
            " (keyword, provider, api) and scope (all, marketing).",
            ["domain", "channel", "consent", "source", "scope"],
            registry=r,
        )
        self.delivery_statuses = Counter(
            "switchboard_delivery_status_updates_total",
            "Delivery statuses the router applied (providers' callbacks, the sender's own"
            " reports).",
            ["channel", "status"],
            registry=r,
        )
        # Router
        self.routed_messages = Counter(
            "switchboard_routed_messages_total",
            "Customer messages applied by the router (message.routed).",
            ["domain", "channel"],
            registry=r,
        )
        self.duplicate_messages = Counter(
            "switchboard_duplicate_messages_total",
            "Inbound messages dropped as provider retries of a message already routed.",
            ["domain", "channel"],
            registry=r,
        )
        self.assignments = Counter(
            "switchboard_assignments_total",
            "Conversations assigned, by channel, queue and strategy.",
            ["domain", "channel", "queue", "strategy"],
            registry=r,
        )
        self.preferred_hits = Counter(
            "switchboard_preferred_agent_hits_total",
            "Conversations with a preferred agent that went to that agent.",
            ["domain", "channel"],
            registry=r,
        )
        self.preferred_misses = Counter(
            "switchboard_preferred_agent_misses_total",
            "Conversations with a preferred agent that went to someone else.",
            ["domain", "channel"],
            registry=r,
        )
        self.fallbacks = Counter(
            "switchboard_fallbacks_total",
            "Routing steps given up (conversation.fallback), by reason (timeout, offer_missed, "
            "shift_ended, no_channel, agent_unavailable_within_budget, no_affinity_agent).",
            ["domain", "channel", "queue", "reason"],
            registry=r,
        )
        self.overflows = Counter(
            "switchboard_overflows_total",
            "Conversations nobody took within the queue's final timeout.",
            ["domain", "channel", "queue"],
            registry=r,
        )
        self.offers = Counter(
            "switchboard_offers_total",
            "Offers made to agents in offer mode.",
            ["domain", "channel", "queue"],
            registry=r,
        )
        self.offer_misses = Counter(
            "switchboard_offer_misses_total",
            "Offers that expired without being accepted.",
            ["domain", "channel", "queue"],
            registry=r,
        )
        self.closed = Counter(
            "switchboard_conversations_closed_total",
            "Conversations closed, by reason.",
            ["domain", "channel", "reason"],
            registry=r,
        )
        self.reply_windows_closed = Counter(
            "switchboard_reply_windows_closed_total",
            "Provider reply windows that closed on open conversations (templates needed).",
            ["domain", "channel"],
            registry=r,
        )
        self.commands = Counter(
            "switchboard_commands_total",
            "Agent API commands applied by the router, by outcome (completed, rejected).",
            ["domain", "outcome"],
            registry=r,
        )
        self.wait_seconds = Histogram(
            "switchboard_assignment_wait_seconds",
            "How long the customer waited from opening to assignment.",
            ["domain", "channel", "strategy"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.sla_breaches = Counter(
            "switchboard_sla_breaches_total",
            "First responses later than the queue's first_response_sla for the channel.",
            ["domain", "channel", "queue"],
            registry=r,
        )
        self.queue_length = Gauge(
            "switchboard_queue_waiting_conversations",
            "Conversations waiting for an agent, by queue.",
            ["domain", "queue"],
            registry=r,
        )
        self.open_conversations = Gauge(
            "switchboard_open_conversations",
            "Open conversations held by this router process.",
            ["domain", "channel"],
            registry=r,
        )
        self.agents_by_presence = Gauge(
            "switchboard_agents",
            "Agents known to this router process, by presence.",
            ["domain", "presence"],
            registry=r,
        )
        self.occupancy = Gauge(
            "switchboard_agent_occupancy_ratio",
            "Used capacity over total capacity of online agents, by channel.",
            ["domain", "channel"],
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
            ["domain", "topic", "reason"],
            registry=r,
        )
        self.offset_resets = Counter(
            "switchboard_offset_resets_total",
            "Stored offsets found beyond a partition's end (a broker that lost its log), or"
            " before its first record (deleted by retention before the router read them).",
            ["topic"],
            registry=r,
        )
        self.routing_events = Counter(
            "switchboard_routing_events_total",
            "Routing events published to conversations.routing, by type.",
            ["type"],
            registry=r,
        )
        self.customers_resident = Gauge(
            "switchboard_router_customers_resident",
            "Customer profiles in this router's memory: those of open conversations and the"
            " recently used ones (router.customer_cache bounds the latter).",
            registry=r,
        )
        self.topic_keys_cached = Gauge(
            "switchboard_topic_keys_cached",
            "Entries of this process's topic key caches, for sealing and for opening (a key"
            " used for both counts twice): the keys used within kafka.key_cache_seconds.",
            registry=r,
        )
        self.customer_lookups = Counter(
            "switchboard_router_customer_lookups_total",
            "Customer identities a batch named that were not in memory and were looked up in"
            " PostgreSQL.",
            registry=r,
        )
        self.partitions_owned = Gauge(
            "switchboard_router_partitions",
            "Partitions this router process owns.",
            registry=r,
        )
        self.router_gathering = Gauge(
            "switchboard_router_gathering",
            "1 while this router's input comes at router.gather_above_per_s or more and its"
            " loop lets records gather between batches (router.gather_ms), else 0.",
            registry=r,
        )
        self.saves_activity_alone = Gauge(
            "switchboard_router_saves_activity_alone",
            "1 while this router saves the activity alone of a conversation a customer message"
            " changed no more than that, in large batches (router.save_activity_alone, with"
            " every router of its consumer group reading it), else 0.",
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
        self.config_version = Gauge(
            "switchboard_config_version",
            "Runtime configuration version this process applies.",
            registry=r,
        )
        self.config_applied = Gauge(
            "switchboard_config_applied_timestamp_seconds",
            "When this process applied its current runtime configuration version.",
            registry=r,
        )
        self.first_response_seconds = Histogram(
            "switchboard_first_response_seconds",
            "From a conversation's first customer message to its agent's first reply.",
            ["domain", "channel", "queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        # Bots as routing participants (routing events; ``bot``: DomainMetrics.bot)
        self.bot_conversations = Counter(
            "switchboard_bot_conversations_total",
            "Conversations a bot took (conversation.bot_assigned), by reason (bot_first: a"
            " new conversation of a bot-first queue, handback: a person handed it back).",
            ["domain", "bot", "reason"],
            registry=r,
        )
        self.bot_handoffs = Counter(
            "switchboard_bot_handoffs_total",
            "Conversations a bot handed to people (conversation.handed_off), by reason"
            " (customer_asked, low_confidence, failed_attempts, out_of_scope, no_progress,"
            " bot_timeout, bot_error, takeover, human_replied, other).",
            ["domain", "bot", "reason"],
            registry=r,
        )
        self.bot_contained = Counter(
            "switchboard_bot_contained_total",
            "Conversations a bot closed with no person ever taking part (contained).",
            ["domain", "bot"],
            registry=r,
        )
        self.bot_downs = Counter(
            "switchboard_bot_downs_total",
            "Times a bot went down (bot.status_changed): it failed down_after turns in a"
            " row, and new conversations went straight to people for retry_after seconds.",
            ["domain", "bot"],
            registry=r,
        )
        self.bot_turns = Counter(
            "switchboard_bot_turns_total",
            "Turns a bot was asked to answer (bot.turn): customer messages and hand-backs.",
            ["domain", "bot"],
            registry=r,
        )
        self.bot_time_to_human = Histogram(
            "switchboard_bot_time_to_human_seconds",
            "From a bot's hand-off to the first assignment to a person, by the bot that"
            " handed off.",
            ["domain", "bot"],
            buckets=HANDOFF_WAIT_BUCKETS,
            registry=r,
        )

        # Live wait estimates (router.shell.waits): each prediction a conversation.queued
        # published, measured when the conversation is assigned.
        self.wait_estimate_error = Histogram(
            "switchboard_wait_estimate_error_seconds",
            "How far each published wait estimate (conversation.queued"
            " expected_wait_seconds) was from the wait that followed it: |actual - predicted|,"
            " observed when the conversation is assigned.",
            ["domain", "queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.wait_estimate_signed_error = Histogram(
            "switchboard_wait_estimate_signed_error_seconds",
            "Actual minus predicted wait of each published wait estimate (negative: the"
            " customer was served sooner than announced).",
            ["domain", "queue"],
            buckets=SIGNED_ERROR_BUCKETS,
            registry=r,
        )

        # Retention (runtime.retention): ``kind`` is the table, ``action`` emptied or deleted.
        self.retention_rows = Counter(
            "switchboard_retention_rows_total",
            "Rows the retention job emptied or deleted, by table (messages,"
            " outbound_messages, assignments, conversations, agent_events, consent_changes,"
            " dead_letters, webhook_nonces, erasures, topic_keys) and action (emptied, deleted), and"
            " customers it handed to erasure (customers, erased).",
            ["domain", "kind", "action"],
            registry=r,
        )

        # Erasure (router.engine.erasure): one per customer.erased.
        self.customer_erasures = Counter(
            "switchboard_customer_erasures_total",
            "Customers erased (customer.erased): their rows deleted, the router's memory of"
            " them gone.",
            ["domain"],
            registry=r,
        )

        # Measured workload (runtime.workload_job): rows each run re-measured and stored.
        self.workload_intervals = Counter(
            "switchboard_workload_intervals_total",
            "Rows of workload_intervals (a queue, channel and 15-minute interval) the"
            " routers' workload job measured and stored; each run re-measures the recent"
            " intervals, so a row counts once per run that measured it.",
            ["domain"],
            registry=r,
        )

    def child(self, metric: Counter, *labels: str) -> Counter:
        """``metric``'s child for ``labels``, bound on first use (``BoundChildren``), for a
        metric with no ``domain`` label."""
        return self._children.counter(metric, *labels)

    def for_domain(self, domain: str | None) -> DomainMetrics:
        """The bound children of ``domain``'s label value (None: ``NO_DOMAIN``)."""
        bound = self._bound.get(domain)
        if bound is not None:
            return bound
        label = NO_DOMAIN if domain is None else self.domain_labels.label(domain)
        bound = self._by_label.get(label)
        if bound is None:
            bound = self._by_label[label] = DomainMetrics(label)
        if label != OTHER_DOMAINS or domain == OTHER_DOMAINS:
            self._bound[domain] = bound
        return bound

    def _first_other(self, domain: str) -> None:
        self.domain_label_limit_reached.set(1)
        log.warning(
            "domain_label_limit_reached",
            limit=self.domain_labels.limit,
            domain=domain,
            label=OTHER_DOMAINS,
        )
