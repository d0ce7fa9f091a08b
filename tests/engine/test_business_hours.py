"""Queues with business hours: the after-hours rules, and SLA clocks in business time."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from router.engine import (
    AfterHours,
    DomainPolicy,
    QueuePolicy,
    StepPolicy,
    apply,
    new_state,
    restore,
    snapshot,
    tick,
)
from router.engine.state import DomainState
from schemas import (
    Channel,
    ConversationAssigned,
    ConversationOutsideHours,
    ConversationQueued,
    Presence,
)
from tests.engine.builders import (
    DOMAIN,
    close,
    emitted,
    message,
    owner_set,
    presence,
    registered,
    transfer,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


OFFICE = {
    "time_zone": "UTC",
    "weekly": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": [{"date": "2026-12-25", "name": "Christmas"}],
}
ALWAYS = {
    "time_zone": "UTC",
    "weekly": {
        day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    },
}


def policy(**queue: object) -> DomainPolicy:
    return msgspec.convert(
        {
            "calendars": {"office": OFFICE, "always": ALWAYS},
            "queues": {
                "default": {"calendar": "office", **queue},
                "night": {"calendar": "always"},
            },
        },
        DomainPolicy,
    )


def online(state: DomainState, agent_id: str, now: float, queues: tuple[str, ...] = ()) -> None:
    apply(state, registered(agent_id, capacity={Channel.SMS: 1}, queues=queues), now)
    apply(state, presence(agent_id, Presence.ONLINE), now)


def test_a_holiday_holds_the_conversation_until_the_queue_opens_and_says_when() -> None:
    state = new_state(DOMAIN, policy(after_hours="notify"))
    christmas = at("2026-12-25T10:00:00")  # a Friday, within the weekly hours
    online(state, "ann", christmas)
    effects = apply(state, message("k1"), christmas)
    opens = at("2026-12-28T09:00:00")  # Monday: the weekend is closed too
    (queued,) = emitted(effects, ConversationQueued)
    assert (queued.step, queued.wait_until) == ("after_hours", opens)
    (notice,) = emitted(effects, ConversationOutsideHours)
    assert (notice.opens_at, notice.calendar, notice.queue) == (opens, "office", "default")
    assert not emitted(effects, ConversationAssigned), "ann is free, but the queue is closed"
    assert not emitted(tick(state, opens - 1), ConversationAssigned)
    (assigned,) = emitted(tick(state, opens), ConversationAssigned)
    assert assigned.agent_id == "ann"
    assert assigned.waited_seconds == opens - christmas  # counted from its arrival


def test_at_the_opening_the_longest_waiting_goes_first() -> None:
    """Held conversations share the opening as their deadline; a conversation's id is its
    first message's (a hash, in no order of time), so the one free agent must get the
    one that waited longest, and the rest wait on the line in arrival order."""
    state = new_state(DOMAIN, policy(after_hours="hold"))
    evening = at("2026-12-01T20:00:00")
    online(state, "ann", evening)
    arrivals = ["m-5", "m-9", "m-1", "m-7", "m-3"]  # ids in no order of arrival
    for minute, message_id in enumerate(arrivals):
        apply(state, message(f"k-{message_id}", message_id=message_id), evening + 60 * minute)
    opens = at("2026-12-02T09:00:00")
    (assigned,) = emitted(tick(state, opens), ConversationAssigned)
    served = [assigned.conversation_id]
    while len(served) < len(arrivals):  # ann closes each; the line gives her the next
        effects = apply(state, close(served[-1], "ann"), opens + 60 * len(served))
        (assigned,) = emitted(effects, ConversationAssigned)
        served.append(assigned.conversation_id)
    assert served == arrivals


def test_hold_is_silent() -> None:
    state = new_state(DOMAIN, policy(after_hours="hold"))
    effects = apply(state, message("k1"), at("2026-12-01T20:00:00"))
    assert [e.step for e in emitted(effects, ConversationQueued)] == ["after_hours"]
    assert not emitted(effects, ConversationOutsideHours)


def test_within_hours_routing_is_unchanged() -> None:
    state = new_state(DOMAIN, policy(after_hours="notify"))
    now = at("2026-12-01T10:00:00")
    online(state, "ann", now)
    (assigned,) = emitted(apply(state, message("k1"), now), ConversationAssigned)
    assert (assigned.agent_id, assigned.step) == ("ann", "queue")


def test_after_hours_queue_takes_them_at_once() -> None:
    state = new_state(DOMAIN, policy(after_hours="queue", after_hours_queue="night"))
    now = at("2026-12-01T20:00:00")
    online(state, "nora", now, queues=("night",))
    online(state, "ann", now, queues=("default",))
    (assigned,) = emitted(apply(state, message("k1"), now), ConversationAssigned)
    assert (assigned.agent_id, assigned.queue) == ("nora", "night")


def test_a_transfer_into_a_closed_queue_follows_its_rule() -> None:
    state = new_state(
        DOMAIN,
        msgspec.convert(
            {
                "calendars": {"office": OFFICE},
                "queues": {
                    "default": {},
                    "billing": {"calendar": "office", "after_hours": "notify"},
                },
            },
            DomainPolicy,
        ),
    )
    now = at("2026-12-01T20:00:00")
    online(state, "ann", now)
    (assigned,) = emitted(apply(state, message("k1"), now), ConversationAssigned)
    effects = apply(state, transfer(assigned.conversation_id, "ann", to_queue="billing"), now + 1)
    (notice,) = emitted(effects, ConversationOutsideHours)
    assert notice.opens_at == at("2026-12-02T09:00:00")


def test_the_first_response_sla_counts_business_time_only() -> None:
    """The preferred hold is bounded by the SLA left: 10 minutes from 16:55 end at 09:05
    the next business day, not at 17:05."""
    raw = {
        "calendars": {"office": OFFICE},
        "preferred_wait": {"sms": 86400},
        "queues": {"default": {"calendar": "office", "first_response_sla": {"sms": 600}}},
    }
    state = new_state(DOMAIN, msgspec.convert(raw, DomainPolicy))
    now = at("2026-12-01T16:55:00")
    apply(state, registered("ann", capacity={Channel.SMS: 1}), now)  # offline: held for her
    apply(state, owner_set("cust-1", "ann"), now)
    (queued,) = emitted(apply(state, message("k1"), now), ConversationQueued)
    assert (queued.step, queued.wait_until) == ("preferred", at("2026-12-02T09:05:00"))
    without_hours = msgspec.convert(
        {**raw, "queues": {"default": raw["queues"]["default"] | {"calendar": None}}}, DomainPolicy
    )
    plain = new_state(DOMAIN, without_hours)
    apply(plain, registered("ann", capacity={Channel.SMS: 1}), now)
    apply(plain, owner_set("cust-1", "ann"), now)
    (queued,) = emitted(apply(plain, message("k1"), now), ConversationQueued)
    assert queued.wait_until == now + 600


def test_a_held_conversation_survives_a_takeover() -> None:
    held_policy = policy(after_hours="notify")
    state = new_state(DOMAIN, held_policy)
    evening = at("2026-12-01T20:00:00")
    online(state, "ann", evening)
    apply(state, message("k1"), evening)
    revived = restore(DOMAIN, held_policy, *snapshot(state))
    assert tick(revived, evening + 1) == tick(state, evening + 1) == []
    opens = at("2026-12-02T09:00:00")
    assert tick(revived, opens) == tick(state, opens)
    assert snapshot(revived) == snapshot(state)


@pytest.mark.parametrize(
    "queue",
    [
        {"calendar": "nope"},
        {"after_hours": "queue"},
        {"after_hours_queue": "night"},
        {"after_hours": "queue", "after_hours_queue": "nope"},
    ],
)
def test_after_hours_settings_are_checked(queue: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        policy(**queue)


def test_an_after_hours_queue_does_not_pass_them_on_again() -> None:
    raw = {
        "calendars": {"office": OFFICE},
        "queues": {
            "default": {"calendar": "office", "after_hours": "queue", "after_hours_queue": "b"},
            "b": {"calendar": "office", "after_hours": "queue", "after_hours_queue": "default"},
        },
    }
    with pytest.raises(msgspec.ValidationError, match="sends its own after-hours"):
        msgspec.convert(raw, DomainPolicy)


def test_policy_steps_cannot_take_the_after_hours_name() -> None:
    with pytest.raises(ValueError, match="reserved"):
        StepPolicy(name="after_hours")
    assert AfterHours("notify") is AfterHours.NOTIFY
    assert QueuePolicy().calendar is None


@pytest.mark.parametrize(
    "raw",
    [
        {"queues": {"default": {"steps": [{"name": "a\x00b"}]}}},
        {"queues": {"default": {"steps": [{"name": "s" * 65}]}}},
        {"queues": {"default": {"skills": ["x\n"]}}},
        {"queues": {"default": {"steps": [{"name": "ok", "skills": ["k" * 65]}]}}},
        {"queues": {"default": {}, "q" * 65: {}}},
        {"calendars": {"c" * 65: OFFICE}},
        {
            "calendars": {
                "office": {**OFFICE, "holidays": [{"date": "2026-12-25", "name": "n" * 201}]}
            }
        },
    ],
)
def test_names_that_travel_in_events_and_rows_are_bounded(raw: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, DomainPolicy)
