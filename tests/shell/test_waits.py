"""``router.shell.waits`` through the intake's collection of engine effects (no I/O): the
expected wait on ``conversation.queued``, the calibration metric, the estimate on the
record, the wait notice's rules; and the notice's configuration."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from router.engine import (
    BusinessCalendar,
    DomainPolicy,
    DomainState,
    EngineInput,
    QueuePolicy,
    apply,
    new_state,
)
from router.engine.calendar import WeeklyHours
from router.engine.wait_notice import Clock, WaitNoticePolicy, WaitNoticeTexts
from router.shell import store
from router.shell.waits import opens_at
from schemas import Channel, ConversationQueued, Presence, ReplyRequested, RoutingEvent
from tests.engine.builders import T0, close, message, presence, registered
from tests.shell.test_intake import collecting_intake

WEBCHAT = {Channel.WEBCHAT: 1}
NOTICE = WaitNoticePolicy(
    enabled=True,
    min_wait=60,
    texts={
        "en": WaitNoticeTexts(waiting="About {minutes} minutes.", closed="Open at {opens_at}."),
        "fr": WaitNoticeTexts(waiting="Environ {minutes} minutes."),
    },
)


class Router:
    """An intake over one domain: the engine's effects collected as the worker does."""

    def __init__(self, policy: DomainPolicy) -> None:
        self.registry = CollectorRegistry()
        self.intake = collecting_intake(self.registry)
        self.state: DomainState = new_state("acme", policy)
        self.writes = store.BatchWrites()
        self.emitted: list[RoutingEvent] = []

    def apply(self, event: EngineInput, now: float) -> None:
        effects = apply(self.state, event, now)
        self.intake._collect(0, self.state, effects, self.writes, self.emitted, now)

    def queued(self, conversation_id: str) -> list[ConversationQueued]:
        return [
            e
            for e in self.emitted
            if isinstance(e, ConversationQueued) and e.conversation_id == conversation_id
        ]

    def notices(self) -> list[ReplyRequested]:
        return [r for r in self.writes.bot_replies if r.notice is not None]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"domain": "acme", **labels})


def busy_router(policy: DomainPolicy, slot_seconds: float = 100.0) -> tuple[Router, float]:
    """Ann (one web chat slot) finished five conversations of ``slot_seconds`` each and
    holds a sixth; the time after that."""
    router = Router(policy)
    router.apply(registered("ann", capacity=WEBCHAT), T0)
    router.apply(presence("ann", Presence.ONLINE), T0)
    now = T0
    for n in range(5):
        first = message(f"warm-{n}", customer=f"warm-{n}", channel=Channel.WEBCHAT)
        router.apply(first, now)
        now += slot_seconds
        router.apply(close(first.id), now)
    router.apply(message("busy", customer="busy", channel=Channel.WEBCHAT), now)
    return router, now


def test_a_queued_conversation_gets_the_expected_wait_and_its_error_is_measured() -> None:
    router, now = busy_router(DomainPolicy())
    waiting = message("w", customer="w", channel=Channel.WEBCHAT)
    router.apply(waiting, now)
    (queued,) = router.queued(waiting.id)
    assert (queued.position, queued.expected_wait_seconds) == (1, 100.0)
    record = router.writes.conversations[("acme", waiting.id)]
    assert record.wait_estimate is not None
    assert (record.wait_estimate.position, record.wait_estimate.expected_wait_seconds) == (1, 100)

    busy = router.state.by_key["busy"].conversation_id
    router.apply(close(busy), now + 130)  # served 30 s later than announced
    assert router.writes.conversations[("acme", waiting.id)].wait_estimate is None
    error = "switchboard_wait_estimate_error_seconds"
    assert router.sample(error + "_count", queue="default") == 1
    assert router.sample(error + "_sum", queue="default") == 30.0
    signed = "switchboard_wait_estimate_signed_error_seconds"
    assert router.sample(signed + "_count", queue="default") == 1  # no _sum: buckets below 0
    assert router.sample(signed + "_bucket", queue="default", le="10.0") == 0.0
    assert router.sample(signed + "_bucket", queue="default", le="30.0") == 1.0


def test_nothing_is_estimated_before_a_rate_is_measured() -> None:
    router = Router(DomainPolicy(wait_notice=NOTICE))
    router.apply(registered("ann", capacity=WEBCHAT), T0)
    router.apply(presence("ann", Presence.ONLINE), T0)
    router.apply(message("busy", customer="busy", channel=Channel.WEBCHAT), T0)
    waiting = message("w", customer="w", channel=Channel.WEBCHAT)
    router.apply(waiting, T0 + 1)
    (queued,) = router.queued(waiting.id)
    assert (queued.position, queued.expected_wait_seconds) == (1, None)
    assert router.notices() == []


def test_the_notice_is_sent_once_per_wait_in_the_customers_language() -> None:
    router, now = busy_router(DomainPolicy(wait_notice=NOTICE))
    french = message("fr", customer="fr", channel=Channel.WEBCHAT, language="fr-CA")
    german = message("de", customer="de", channel=Channel.WEBCHAT, language="de")
    router.apply(french, now)
    router.apply(german, now)
    router.apply(message("fr", customer="fr", channel=Channel.WEBCHAT), now + 1)
    assert [(n.conversation_id, n.text, n.notice) for n in router.notices()] == [
        (french.id, "Environ 2 minutes.", "wait_notice"),  # 100 s: 2 minutes
        (german.id, "About 4 minutes.", "wait_notice"),  # second in line: 200 s
    ]


def test_a_short_wait_is_not_announced() -> None:
    router, now = busy_router(DomainPolicy(wait_notice=NOTICE), slot_seconds=30)
    router.apply(message("w", customer="w", channel=Channel.WEBCHAT), now)
    assert router.notices() == []


def test_a_closed_queue_says_when_it_opens() -> None:
    calendar = BusinessCalendar(
        time_zone="Europe/Paris",
        weekly=WeeklyHours(**{day: (("09:00", "18:00"),) for day in ("mon", "tue", "wed")}),
    )
    policy = DomainPolicy(
        calendars={"office": calendar},
        queues={"default": QueuePolicy(calendar="office")},
        wait_notice=NOTICE,
    )
    router = Router(policy)
    monday_early = dt.datetime(2026, 5, 4, 7, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    router.apply(message("k", customer="c", channel=Channel.WEBCHAT), monday_early)
    assert [n.text for n in router.notices()] == ["Open at 9:00."]


def test_opens_at_is_local_and_dated_when_not_today() -> None:
    paris = ZoneInfo("Europe/Paris")
    now = dt.datetime(2026, 5, 4, 20, 0, tzinfo=paris).timestamp()
    tomorrow = dt.datetime(2026, 5, 5, 9, 30, tzinfo=paris).timestamp()
    later = dt.datetime(2026, 5, 4, 21, 5, tzinfo=paris).timestamp()
    assert opens_at(tomorrow, now, paris, Clock.H24) == "2026-05-05 9:30"
    assert opens_at(later, now, paris, Clock.H12) == "9:05 PM"


@pytest.mark.parametrize(
    ("texts", "reason"),
    [
        ({"waiting": "in {minutes} min, {agent}"}, "unknown placeholder(s) ['agent']"),
        ({"waiting": "in {minutes!r} min"}, "takes no conversion or format"),
        ({"waiting": "in {minutes min"}, "waiting: "),
        ({"waiting": "x" * 1001}, "at most 1000 characters"),
        ({"waiting": "ok", "closed": "{opens_at:>9}"}, "closed: placeholder"),
        ({"waiting": " "}, "the text is empty"),
    ],
)
def test_notice_texts_are_refused_with_the_reason(texts: dict[str, str], reason: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(reason)):
        msgspec.convert(texts, WaitNoticeTexts)


def test_an_enabled_notice_needs_texts_in_its_default_language() -> None:
    with pytest.raises(msgspec.ValidationError, match="has no texts"):
        msgspec.convert({"enabled": True, "default_language": "nl"}, WaitNoticePolicy)
    assert msgspec.convert({"enabled": False}, WaitNoticePolicy).texts == {}
    with pytest.raises(msgspec.ValidationError, match="min_wait"):
        msgspec.convert({"min_wait": -1}, WaitNoticePolicy)
