"""The routing metrics' arithmetic, by value: events, records and domains in, figures out.

``tests/integration/test_kpis.py`` checks the same figures through the running service;
these tests pin each rule down on its own, so that a wrong figure names its function.
Every figure of a domain's work carries the domain's label value (``runtime.metrics``
bounds it; ``tests/test_domain_labels.py`` tests the bound itself).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import pytest

from router.engine import (
    DomainPolicy,
    QueueMode,
    QueuePolicy,
    SaveAssignment,
    SaveConversation,
    apply,
    tick,
)
from router.shell import observe as observe_module
from router.shell.observe import (
    FIRST_RESPONSES_REMEMBERED,
    gauge_slices,
    observe_dead_letter,
    observe_duplicate,
    observe_first_response,
    observe_published,
    observe_routing_event,
    observe_routing_events,
    observe_saved_assignment,
    refresh_gauges,
)
from router.shell.store import OutboxBatch, OutboxEvent
from runtime.config import MetricsConfig
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
    Strategy,
)
from schemas.cloudevents import encode_headers
from tests.engine.builders import (
    DOMAIN,
    T0,
    agent,
    domain,
    fill,
    ladder_policy,
    message,
    next_id,
    replied,
)

E = TypeVar("E", bound=RoutingEvent)


def event(kind: type[E], **fields: Any) -> E:
    """A routing event with defaults for what the figure at hand does not read."""
    defaults: dict[str, Any] = {"id": next_id(), "domain": DOMAIN, "occurred_at": T0}
    if kind not in (CommandCompleted, CommandRejected):
        defaults |= {
            "conversation_id": "c1",
            "channel": Channel.WEBCHAT,
            "customer_id": "cust-1",
            "queue": "support",
        }
    return kind(**(defaults | fields))


def assigned(
    strategy: Strategy, agent_id: str, preferred: str | None, waited: float = 0.0, **fields: Any
) -> ConversationAssigned:
    return event(
        ConversationAssigned,
        agent_id=agent_id,
        assignment_id=next_id("a"),
        strategy=strategy,
        step="s",
        waited_seconds=waited,
        preferred_agent_id=preferred,
        **fields,
    )


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The sample of ``name`` with ``labels``, of the builders' domain unless told."""
    return metrics.registry.get_sample_value(name, {"domain": DOMAIN} | labels)


# -- routing events ------------------------------------------------------------------------


def test_assignments_count_by_strategy_and_preferred_ones_split_into_hits_and_misses() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics,
        [
            assigned(Strategy.PREFERRED, "ann", preferred="ann", waited=0.0),
            assigned(Strategy.PREFERRED, "ann", preferred="ann", waited=4.0),
            assigned(Strategy.FALLBACK, "bob", preferred="ann", waited=30.0),
            assigned(Strategy.QUEUE, "bob", preferred=None, waited=2.0, channel=Channel.SMS),
        ],
    )
    webchat = {"channel": "webchat", "queue": "support"}
    assert value(metrics, "switchboard_assignments_total", **webchat, strategy="preferred") == 2
    assert value(metrics, "switchboard_assignments_total", **webchat, strategy="fallback") == 1
    assert (
        value(
            metrics,
            "switchboard_assignments_total",
            channel="sms",
            queue="support",
            strategy="queue",
        )
        == 1
    )
    assert value(metrics, "switchboard_preferred_agent_hits_total", channel="webchat") == 2
    assert value(metrics, "switchboard_preferred_agent_misses_total", channel="webchat") == 1
    assert value(metrics, "switchboard_preferred_agent_hits_total", channel="sms") is None
    assert value(metrics, "switchboard_preferred_agent_misses_total", channel="sms") is None
    wait = "switchboard_assignment_wait_seconds"
    preferred = {"channel": "webchat", "strategy": "preferred"}
    assert value(metrics, wait + "_count", **preferred) == 2
    assert value(metrics, wait + "_sum", **preferred) == 4.0
    assert value(metrics, wait + "_bucket", **preferred, le="2.0") == 1
    assert value(metrics, wait + "_bucket", **preferred, le="5.0") == 2
    assert value(metrics, wait + "_sum", channel="webchat", strategy="fallback") == 30.0
    assert value(metrics, wait + "_sum", channel="sms", strategy="queue") == 2.0


def test_each_routing_decision_counts_under_its_own_labels() -> None:
    metrics = Metrics()
    fallback = {"from_step": "preferred", "to_step": "team"}
    observe_routing_events(
        metrics,
        [
            event(ConversationFallback, **fallback, reason="timeout"),
            event(ConversationFallback, **fallback, reason="timeout"),
            event(ConversationFallback, **fallback, reason="no_channel"),
            event(ConversationOverflowed, waited_seconds=600.0),
            *[
                event(
                    ConversationOffered, agent_id="ann", strategy="queue", step="s", expires_at=T0
                )
                for _ in range(3)
            ],
            event(ConversationClosed, reason="resolved"),
            event(ConversationClosed, reason="inactive"),
            event(ConversationClosed, reason="inactive"),
            event(ConversationReplyWindowClosed, reply_window_ends_at=T0, status="assigned"),
            *[event(CommandCompleted, command_id="k") for _ in range(3)],
            event(CommandRejected, command_id="k", reason="not_owner"),
            event(ConversationQueued, step="team"),
            event(ConversationReassigned, from_agent_id="ann", to_agent_id="bob"),
        ],
    )
    webchat = {"channel": "webchat", "queue": "support"}
    assert value(metrics, "switchboard_fallbacks_total", **webchat, reason="timeout") == 2
    assert value(metrics, "switchboard_fallbacks_total", **webchat, reason="no_channel") == 1
    assert value(metrics, "switchboard_overflows_total", **webchat) == 1
    assert value(metrics, "switchboard_offers_total", **webchat) == 3
    closed = "switchboard_conversations_closed_total"
    assert value(metrics, closed, channel="webchat", reason="resolved") == 1
    assert value(metrics, closed, channel="webchat", reason="inactive") == 2
    assert value(metrics, "switchboard_reply_windows_closed_total", channel="webchat") == 1
    assert value(metrics, "switchboard_commands_total", outcome="completed") == 3
    assert value(metrics, "switchboard_commands_total", outcome="rejected") == 1


def test_routed_messages_are_counted_per_domain_and_channel() -> None:
    def routed(channel: Channel, domain: str = DOMAIN) -> MessageRouted:
        return event(
            MessageRouted, domain=domain, channel=channel, message_id="m", provider_message_id="p"
        )

    metrics = Metrics()
    observe_routing_events(
        metrics,
        [routed(Channel.WEBCHAT)] * 3 + [routed(Channel.SMS), routed(Channel.SMS, "beta")],
    )
    observe_routing_events(metrics, [routed(Channel.WEBCHAT)])
    assert value(metrics, "switchboard_routed_messages_total", channel="webchat") == 4
    assert value(metrics, "switchboard_routed_messages_total", channel="sms") == 1
    assert value(metrics, "switchboard_routed_messages_total", domain="beta", channel="sms") == 1


def test_each_domain_counts_under_its_own_label() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics,
        [
            assigned(Strategy.QUEUE, "ann", preferred=None),
            assigned(Strategy.QUEUE, "bob", preferred="bob", domain="beta"),
            assigned(Strategy.QUEUE, "bob", preferred="bob", domain="beta"),
            event(
                ConversationFallback, domain="beta", from_step="a", to_step="b", reason="timeout"
            ),
            event(CommandRejected, domain="beta", command_id="k", reason="not_owner"),
        ],
    )
    labels = {"channel": "webchat", "queue": "support", "strategy": "queue"}
    assert value(metrics, "switchboard_assignments_total", **labels) == 1
    assert value(metrics, "switchboard_assignments_total", domain="beta", **labels) == 2
    wait = "switchboard_assignment_wait_seconds_count"
    assert value(metrics, wait, domain="beta", channel="webchat", strategy="queue") == 2
    assert value(metrics, "switchboard_preferred_agent_hits_total", channel="webchat") is None
    hits = value(
        metrics, "switchboard_preferred_agent_hits_total", domain="beta", channel="webchat"
    )
    assert hits == 2
    fallbacks = {"channel": "webchat", "queue": "support", "reason": "timeout"}
    assert value(metrics, "switchboard_fallbacks_total", domain="beta", **fallbacks) == 1
    assert value(metrics, "switchboard_commands_total", domain="beta", outcome="rejected") == 1
    assert value(metrics, "switchboard_commands_total", outcome="rejected") is None


def test_domains_beyond_the_limit_count_together_under_other() -> None:
    metrics = Metrics(config=MetricsConfig(domain_label_limit=2))
    domains = [DOMAIN, "beta", "gamma", "delta", DOMAIN, "gamma"]
    observe_routing_events(
        metrics, [assigned(Strategy.QUEUE, "ann", None, domain=name) for name in domains]
    )
    labels = {"channel": "webchat", "queue": "support", "strategy": "queue"}
    assert value(metrics, "switchboard_assignments_total", **labels) == 2
    assert value(metrics, "switchboard_assignments_total", domain="beta", **labels) == 1
    assert value(metrics, "switchboard_assignments_total", domain="other", **labels) == 3
    assert value(metrics, "switchboard_assignments_total", domain="gamma", **labels) is None
    assert metrics.registry.get_sample_value("switchboard_domain_label_limit_reached") == 1


def test_a_routed_message_observed_on_its_own_counts_the_same() -> None:
    metrics = Metrics()
    routed = event(MessageRouted, channel=Channel.SMS, message_id="m", provider_message_id="p")
    observe_routing_event(metrics, routed)
    observe_routing_event(metrics, routed)
    assert value(metrics, "switchboard_routed_messages_total", channel="sms") == 2


# -- what the worker sees before and after the engine --------------------------------------


def test_duplicates_count_per_channel() -> None:
    metrics = Metrics()
    observe_duplicate(metrics, DOMAIN, Channel.SMS)
    observe_duplicate(metrics, DOMAIN, Channel.SMS)
    observe_duplicate(metrics, "beta", Channel.SMS)
    assert value(metrics, "switchboard_duplicate_messages_total", channel="sms") == 2
    assert value(metrics, "switchboard_duplicate_messages_total", domain="beta", channel="sms") == 1


def test_only_an_expired_offer_counts_as_an_offer_miss() -> None:
    policy = ladder_policy(mode=QueueMode.OFFER, offer_timeout=20.0)
    state = domain([agent("ann", skills=["english"])], policy=policy)
    offered = apply(state, message("k1"), T0)
    expired = tick(state, T0 + 21)
    records = [e.record for e in offered + expired if isinstance(e, SaveAssignment)]
    assert [record.end_reason for record in records] == [None, "offer_missed"]
    metrics = Metrics()
    for record in records:
        observe_saved_assignment(metrics, DOMAIN, record)
    assert value(metrics, "switchboard_offer_misses_total", channel="sms", queue="support") == 1


def _first_response_domain() -> Any:
    policy = DomainPolicy(
        default_queue="support",
        first_response_sla={Channel.SMS: 60.0},
        queues={"support": QueuePolicy()},
    )
    return domain([agent("ann")], policy=policy)


def _saved_conversations(effects: list[Any]) -> list[Any]:
    return [e.record for e in effects if isinstance(e, SaveConversation)]


def test_a_first_response_counts_once_and_breaches_the_sla_only_when_later() -> None:
    metrics = Metrics()
    seen: set[tuple[str, str]] = set()
    state = _first_response_domain()
    late, on_time = message("k1", customer="c1"), message("k2", customer="c2")
    for msg in (late, on_time):
        for record in _saved_conversations(apply(state, msg, T0)):
            observe_first_response(metrics, seen, state, record)  # no reply yet: nothing
    first_late = _saved_conversations(apply(state, replied(late.id, "ann"), T0 + 61))
    first_on_time = _saved_conversations(apply(state, replied(on_time.id, "ann"), T0 + 60))
    second = _saved_conversations(apply(state, replied(late.id, "ann"), T0 + 90))
    for record in first_late + first_late + first_on_time + second:
        observe_first_response(metrics, seen, state, record)
    labels = {"channel": "sms", "queue": "support"}
    assert value(metrics, "switchboard_first_response_seconds_count", **labels) == 2
    assert value(metrics, "switchboard_first_response_seconds_sum", **labels) == 121.0
    assert value(metrics, "switchboard_sla_breaches_total", **labels) == 1
    assert seen == {(DOMAIN, late.id), (DOMAIN, on_time.id)}


def test_in_a_queue_with_business_hours_the_sla_counts_business_time() -> None:
    """Open 09:00-17:00 UTC, SLA 10 minutes, written at 16:55: answered at 09:04 the next
    morning is 9 business minutes (on time), at 09:06 eleven (late)."""
    policy = msgspec.convert(
        {
            "default_queue": "support",
            "first_response_sla": {"sms": 600},
            "calendars": {
                "office": {
                    "time_zone": "UTC",
                    "weekly": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed")},
                }
            },
            "queues": {"support": {"calendar": "office"}},
        },
        DomainPolicy,
    )
    state = domain([agent("ann")], policy=policy)
    metrics = Metrics()
    seen: set[tuple[str, str]] = set()
    evening = datetime(2026, 12, 1, 16, 55, tzinfo=UTC).timestamp()  # a Tuesday
    on_time, late = message("k1", customer="c1"), message("k2", customer="c2")
    for msg in (on_time, late):
        apply(state, msg, evening)
    morning = datetime(2026, 12, 2, 9, 0, tzinfo=UTC).timestamp()
    for msg, at in ((on_time, morning + 240), (late, morning + 360)):
        for record in _saved_conversations(apply(state, replied(msg.id, "ann"), at)):
            observe_first_response(metrics, seen, state, record)
    labels = {"channel": "sms", "queue": "support"}
    assert value(metrics, "switchboard_first_response_seconds_count", **labels) == 2
    assert value(metrics, "switchboard_sla_breaches_total", **labels) == 1


def test_the_memory_of_counted_first_responses_starts_over_past_its_limit() -> None:
    metrics = Metrics()
    state = _first_response_domain()
    msg = message("k1")
    apply(state, msg, T0)
    [record] = _saved_conversations(apply(state, replied(msg.id, "ann"), T0 + 1))
    seen = {("other", str(n)) for n in range(FIRST_RESPONSES_REMEMBERED)}
    observe_first_response(metrics, seen, state, record)
    assert seen == set()
    full = {("other", str(n)) for n in range(FIRST_RESPONSES_REMEMBERED - 1)}
    observe_first_response(Metrics(), full, state, record)
    assert len(full) == FIRST_RESPONSES_REMEMBERED


def test_a_queue_without_an_sla_never_breaches() -> None:
    metrics = Metrics()
    state = domain([agent("ann")])
    msg = message("k1")
    apply(state, msg, T0)
    for record in _saved_conversations(apply(state, replied(msg.id, "ann"), T0 + 10**6)):
        observe_first_response(metrics, set(), state, record)
    labels = {"channel": "sms", "queue": "default"}
    assert value(metrics, "switchboard_first_response_seconds_count", **labels) == 1
    assert value(metrics, "switchboard_sla_breaches_total", **labels) is None


def test_poison_records_count_by_domain_source_topic_and_first_word_of_the_reason() -> None:
    metrics = Metrics(config=MetricsConfig(domain_label_limit=1))
    observe_dead_letter(metrics, None, "in", "invalid: JSON is malformed")
    observe_dead_letter(metrics, DOMAIN, "in", "invalid: JSON is malformed")
    observe_dead_letter(metrics, DOMAIN, "in", "invalid: Expected `object`")
    observe_dead_letter(metrics, DOMAIN, "in", "unknown domain 'x'")
    assert value(metrics, "switchboard_dead_letters_total", topic="in", reason="invalid") == 2
    assert value(metrics, "switchboard_dead_letters_total", topic="in", reason="unknown") == 1
    unowned = {"domain": "", "topic": "in", "reason": "invalid"}
    assert value(metrics, "switchboard_dead_letters_total", **unowned) == 1
    # A letter of no domain took no label value: the one domain allowed got its own.
    assert metrics.registry.get_sample_value("switchboard_domain_label_limit_reached") == 0


def test_published_routing_events_count_by_type_and_dead_letters_do_not() -> None:
    def outbox(topic: str, event_type: bytes) -> OutboxEvent:
        headers = (("ce_id", b"1"), ("ce_type", event_type))
        return OutboxEvent(topic=topic, key=b"acme", value=b"{}", headers=headers)

    metrics = Metrics()
    observe_published(
        metrics,
        [
            outbox("routing", b"conversation.assigned"),
            outbox("routing", b"conversation.assigned"),
            outbox("routing", b"message.routed"),
            outbox("dlq", b"message.routed"),
        ],
        "dlq",
    )

    def published(event_type: str) -> float | None:
        return metrics.registry.get_sample_value(
            "switchboard_routing_events_total", {"type": event_type}
        )

    assert published("conversation.assigned") == 2
    assert published("message.routed") == 1

    # As the intake writes them (``encode_headers``), and with no type at all.
    routed = MessageRouted(
        id="m1",
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id="c1",
        channel=Channel.SMS,
        customer_id="phone:+1",
        queue="default",
        message_id="m0",
        provider_message_id="SM0",
    )
    headers = tuple(encode_headers(routed, source="router", subject="c1"))
    untyped = (("ce_id", b"2"), ("ce_source", b"x"), ("ce_time", b"1"), ("ce_subject", b"c1"))
    observe_published(
        metrics,
        [
            OutboxEvent("routing", b"acme", b"{}", headers),
            OutboxEvent("routing", None, b"", untyped),
        ],
        "dlq",
    )
    assert published("message.routed") == 2
    assert (
        sum(
            sample.value
            for metric in metrics.registry.collect()
            if metric.name == "switchboard_routing_events"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
        == 4
    )


# -- gauges --------------------------------------------------------------------------------


def test_gauges_hold_each_domain_of_the_process() -> None:
    # acme: ann online with 1 of 5 SMS slots used, bob away, cat offline.
    ladder = domain(
        [
            agent("ann", capacity={Channel.SMS: 5}, skills=["english"]),
            agent("bob", presence=Presence.AWAY),
            agent("cat", presence=Presence.OFFLINE),
        ],
        policy=ladder_policy(),
    )
    apply(ladder, message("k1", customer="c1"), T0)
    # beta: dan online and full (1 SMS slot), one conversation waiting, eve offline.
    single = domain(
        [agent("dan", capacity={Channel.SMS: 1}), agent("eve", presence=Presence.OFFLINE)]
    )
    fill(single, agent("dan", capacity={Channel.SMS: 1}))
    apply(single, message("k2", customer="c2"), T0)
    single.domain = "beta"
    event_ = OutboxEvent(topic="routing", key=None, value=b"", headers=())
    unpublished = [OutboxBatch(1, 1, [event_, event_]), OutboxBatch(2, 1, [event_])]

    metrics = Metrics()
    refresh_gauges(metrics, [ladder, single], [0, 1], unpublished)

    assert gauge(metrics, "switchboard_queue_waiting_conversations") == {
        (DOMAIN, "support"): 0,
        (DOMAIN, "billing"): 0,
        ("beta", "default"): 1,
    }
    assert gauge(metrics, "switchboard_open_conversations") == {
        (DOMAIN, "sms"): 1,
        ("beta", "sms"): 2,
    }
    assert gauge(metrics, "switchboard_agents") == {
        (DOMAIN, "online"): 1,
        (DOMAIN, "away"): 1,
        (DOMAIN, "offline"): 1,
        ("beta", "online"): 1,
        ("beta", "away"): 0,
        ("beta", "offline"): 1,
    }
    assert gauge(metrics, "switchboard_agent_occupancy_ratio") == {
        (DOMAIN, "sms"): 1 / 5,
        ("beta", "sms"): 1.0,
    }
    assert gauge(metrics, "switchboard_outbox_backlog_events") == {("0",): 0, ("1",): 3}

    refresh_gauges(metrics, [single], [1], [])
    assert gauge(metrics, "switchboard_queue_waiting_conversations") == {("beta", "default"): 1}
    assert set(gauge(metrics, "switchboard_agents")) == {
        ("beta", "online"),
        ("beta", "away"),
        ("beta", "offline"),
    }
    assert gauge(metrics, "switchboard_outbox_backlog_events") == {("1",): 0}

    refresh_gauges(metrics, [], [], [])
    for name in (
        "switchboard_queue_waiting_conversations",
        "switchboard_open_conversations",
        "switchboard_agents",
        "switchboard_agent_occupancy_ratio",
        "switchboard_outbox_backlog_events",
    ):
        assert gauge(metrics, name) == {}, name


def test_gauges_of_domains_beyond_the_limit_add_up_under_other() -> None:
    def named(name: str, agents: list[Any], customers: int) -> Any:
        state = domain(agents)
        for number in range(customers):
            apply(state, message(f"k{number}", customer=f"c{number}"), T0)
        state.domain = name
        return state

    states = [
        named(DOMAIN, [agent("ann", capacity={Channel.SMS: 2})], 1),  # ann: 1 of 2 slots
        named("beta", [], 1),  # nobody: one waits
        named("gamma", [agent("ann", capacity={Channel.SMS: 4})], 2),  # ann: 2 of 4 slots
    ]
    metrics = Metrics(config=MetricsConfig(domain_label_limit=1))
    refresh_gauges(metrics, states, [], [])
    assert gauge(metrics, "switchboard_open_conversations") == {
        (DOMAIN, "sms"): 1,
        ("other", "sms"): 3,
    }
    assert gauge(metrics, "switchboard_agent_occupancy_ratio") == {
        (DOMAIN, "sms"): 1 / 2,
        ("other", "sms"): 2 / 4,
    }
    assert gauge(metrics, "switchboard_queue_waiting_conversations") == {
        (DOMAIN, "default"): 0,
        ("other", "default"): 1,
    }
    assert gauge(metrics, "switchboard_agents")["other", "online"] == 1


def test_gauges_are_counted_a_slice_at_a_time_and_set_together_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 7 agents and 11 conversations, 3 a slice: 4 + 3 slices, and the loop runs between.
    monkeypatch.setattr(observe_module, "GAUGE_SLICE", 3)
    state = domain([agent(f"a{i}", capacity={Channel.SMS: 2}) for i in range(7)])
    for i in range(11):
        apply(state, message(f"k{i}", customer=f"c{i}"), T0)
    at_once = Metrics()
    refresh_gauges(at_once, [state], [0], [])
    metrics = Metrics()
    slices = gauge_slices(metrics, [state], [0], [])
    for _ in range(7):
        next(slices)
        assert gauge(metrics, "switchboard_open_conversations") == {}
    with pytest.raises(StopIteration):
        next(slices)
    names = ["switchboard_open_conversations", "switchboard_queue_waiting_conversations"]
    names += ["switchboard_agents", "switchboard_agent_occupancy_ratio"]
    for name in names:
        assert gauge(metrics, name) == gauge(at_once, name)
    assert gauge(metrics, "switchboard_open_conversations") == {(DOMAIN, "sms"): 11}
    assert gauge(metrics, "switchboard_agent_occupancy_ratio") == {(DOMAIN, "sms"): 11 / 14}


def gauge(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    """A gauge's samples: label values, in the metric's label order -> value."""
    [family] = [f for f in metrics.registry.collect() if f.name == name]
    return {tuple(s.labels.values()): s.value for s in family.samples}
