"""The bot metrics' arithmetic, by value: routing events in, figures out.

A bot's work is read from the routing events the engine emits: ``conversation.bot_assigned``
(conversations it took), ``bot.turn`` (turns it was asked to answer),
``conversation.handed_off`` (hand-offs, by reason), ``conversation.closed`` with
``contained`` (conversations it finished alone) and the first ``conversation.assigned``
after a hand-off (``handoff`` set: the time to a person). Each figure carries the domain's
label value and the bot's id (``runtime.metrics.DomainMetrics.bot``).
"""

from __future__ import annotations

from router.shell.observe import observe_routing_event, observe_routing_events
from runtime.config import MetricsConfig
from runtime.metrics import HANDOFF_WAIT_BUCKETS, Metrics
from schemas import (
    BotHandoff,
    BotTurn,
    ConversationBotAssigned,
    ConversationClosed,
    ConversationHandedOff,
    Handoff,
    HandoffReason,
    RoutingEvent,
    Strategy,
)
from tests.engine.builders import T0
from tests.shell.test_observe import assigned, event, value


def bot_assigned(bot: str, reason: str = "bot_first", **fields: str) -> ConversationBotAssigned:
    return event(ConversationBotAssigned, bot_id=bot, reason=reason, **fields)


def turn(bot: str, **fields: str) -> BotTurn:
    return event(BotTurn, bot_id=bot, answer_by=T0 + 20, turn=1, **fields)


def handed_off(bot: str, reason: HandoffReason, **fields: str) -> ConversationHandedOff:
    return event(
        ConversationHandedOff, bot_id=bot, reason=reason, handoff=Handoff(reason=reason), **fields
    )


def after_handoff(bot: str, waited: float, **fields: str) -> RoutingEvent:
    """The first assignment to a person after ``bot`` handed the conversation off."""
    handoff = BotHandoff(
        bot_id=bot, handed_off_at=T0, handoff=Handoff(reason=HandoffReason.CUSTOMER_ASKED)
    )
    return assigned(Strategy.QUEUE, "ann", None, waited=waited, handoff=handoff, **fields)


def closed(bot: str | None, *, contained: bool, **fields: str) -> ConversationClosed:
    return event(ConversationClosed, bot_id=bot, contained=contained, reason="resolved", **fields)


# -- each figure ---------------------------------------------------------------------------


def test_conversations_a_bot_takes_count_by_reason() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics,
        [
            bot_assigned("helper"),
            bot_assigned("helper"),
            bot_assigned("helper", "handback", from_agent_id="ann"),
            bot_assigned("billing"),
        ],
    )
    taken = "switchboard_bot_conversations_total"
    assert value(metrics, taken, bot="helper", reason="bot_first") == 2
    assert value(metrics, taken, bot="helper", reason="handback") == 1
    assert value(metrics, taken, bot="billing", reason="bot_first") == 1
    assert value(metrics, taken, bot="billing", reason="handback") is None


def test_turns_count_per_bot() -> None:
    metrics = Metrics()
    observe_routing_events(metrics, [turn("helper"), turn("helper"), turn("billing")])
    observe_routing_event(metrics, turn("helper"))
    assert value(metrics, "switchboard_bot_turns_total", bot="helper") == 3
    assert value(metrics, "switchboard_bot_turns_total", bot="billing") == 1


def test_hand_offs_count_by_reason() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics,
        [
            handed_off("helper", HandoffReason.CUSTOMER_ASKED),
            handed_off("helper", HandoffReason.BOT_TIMEOUT),
            handed_off("helper", HandoffReason.BOT_TIMEOUT),
            handed_off("helper", HandoffReason.TAKEOVER, to_agent_id="ann"),
            handed_off("billing", HandoffReason.HUMAN_REPLIED),
        ],
    )
    handoffs = "switchboard_bot_handoffs_total"
    assert value(metrics, handoffs, bot="helper", reason="customer_asked") == 1
    assert value(metrics, handoffs, bot="helper", reason="bot_timeout") == 2
    assert value(metrics, handoffs, bot="helper", reason="takeover") == 1
    assert value(metrics, handoffs, bot="billing", reason="human_replied") == 1
    assert value(metrics, handoffs, bot="billing", reason="bot_timeout") is None


def test_only_a_contained_close_counts_as_contained_and_every_close_counts_as_closed() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics,
        [
            closed("helper", contained=True),
            closed("helper", contained=True),
            closed("helper", contained=False),  # a person had taken part before
            closed(None, contained=False),  # a person's conversation
        ],
    )
    assert value(metrics, "switchboard_bot_contained_total", bot="helper") == 2
    closes = value(
        metrics, "switchboard_conversations_closed_total", channel="webchat", reason="resolved"
    )
    assert closes == 4


def test_time_to_a_person_is_the_wait_of_the_first_assignment_after_a_hand_off() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics,
        [
            after_handoff("helper", waited=4.0),
            after_handoff("helper", waited=45.0),
            after_handoff("helper", waited=2 * 3600.0),
            after_handoff("billing", waited=12.0),
            assigned(Strategy.QUEUE, "bob", None, waited=900.0),  # no bot before: not counted
        ],
    )
    seconds = "switchboard_bot_time_to_human_seconds"
    assert value(metrics, seconds + "_count", bot="helper") == 3
    assert value(metrics, seconds + "_sum", bot="helper") == 4.0 + 45.0 + 7200.0
    assert value(metrics, seconds + "_bucket", bot="helper", le="5.0") == 1
    assert value(metrics, seconds + "_bucket", bot="helper", le="60.0") == 2
    assert value(metrics, seconds + "_bucket", bot="helper", le="7200.0") == 3
    assert value(metrics, seconds + "_count", bot="billing") == 1
    # The assignment's own figures count every assignment, after a hand-off or not.
    wait = "switchboard_assignment_wait_seconds_count"
    assert value(metrics, wait, channel="webchat", strategy="queue") == 5


def test_the_time_to_a_person_buckets_span_a_second_to_hours() -> None:
    assert HANDOFF_WAIT_BUCKETS[0] == 1
    assert HANDOFF_WAIT_BUCKETS[-1] >= 4 * 3600
    assert list(HANDOFF_WAIT_BUCKETS) == sorted(set(HANDOFF_WAIT_BUCKETS))


def test_containment_rate_is_contained_over_the_conversations_bots_took() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics,
        [
            *[bot_assigned("helper") for _ in range(4)],
            *[closed("helper", contained=True) for _ in range(3)],
            handed_off("helper", HandoffReason.CUSTOMER_ASKED),
        ],
    )
    taken = value(metrics, "switchboard_bot_conversations_total", bot="helper", reason="bot_first")
    contained = value(metrics, "switchboard_bot_contained_total", bot="helper")
    assert (contained, taken) == (3, 4)


# -- labels --------------------------------------------------------------------------------


def test_each_domain_counts_its_bots_under_its_own_label() -> None:
    metrics = Metrics()
    observe_routing_events(
        metrics, [bot_assigned("helper"), bot_assigned("helper", domain="beta"), turn("helper")]
    )
    taken = "switchboard_bot_conversations_total"
    assert value(metrics, taken, bot="helper", reason="bot_first") == 1
    assert value(metrics, taken, domain="beta", bot="helper", reason="bot_first") == 1
    assert value(metrics, "switchboard_bot_turns_total", domain="beta", bot="helper") is None


def test_the_bots_of_domains_beyond_the_limit_count_together_under_other() -> None:
    """Bots are bounded per domain by its configuration; the domains counted under
    ``other`` are not, so neither are their bots: they count as one, ``other``."""
    metrics = Metrics(config=MetricsConfig(domain_label_limit=1))
    observe_routing_events(
        metrics,
        [
            bot_assigned("helper"),
            bot_assigned("helper", domain="beta"),
            bot_assigned("sales", domain="gamma"),
            turn("sales", domain="gamma"),
            handed_off("sales", HandoffReason.BOT_ERROR, domain="gamma"),
            after_handoff("sales", waited=30.0, domain="gamma"),
            closed("sales", contained=True, domain="gamma"),
        ],
    )
    taken = "switchboard_bot_conversations_total"
    assert value(metrics, taken, bot="helper", reason="bot_first") == 1
    assert value(metrics, taken, domain="other", bot="other", reason="bot_first") == 2
    assert value(metrics, taken, domain="other", bot="helper", reason="bot_first") is None
    assert value(metrics, taken, domain="other", bot="sales", reason="bot_first") is None
    assert value(metrics, "switchboard_bot_turns_total", domain="other", bot="other") == 1
    handoffs = "switchboard_bot_handoffs_total"
    assert value(metrics, handoffs, domain="other", bot="other", reason="bot_error") == 1
    seconds = "switchboard_bot_time_to_human_seconds_count"
    assert value(metrics, seconds, domain="other", bot="other") == 1
    assert value(metrics, "switchboard_bot_contained_total", domain="other", bot="other") == 1
