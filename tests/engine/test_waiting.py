"""``router.engine.waiting``: a waiting conversation's position, sectioned by its rules, and
the position on ``conversation.queued``."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from router.engine import (
    BusinessCalendar,
    DomainPolicy,
    DomainState,
    QueuePolicy,
    StepPolicy,
    apply,
    line_length,
    line_position,
    serving_agents,
    step_line,
    tick,
)
from router.engine.calendar import WeeklyHours
from schemas import ROUTING_DECODER, Channel, ConversationQueued, Presence
from tests.engine.builders import (
    T0,
    agent,
    close,
    domain,
    emitted,
    examples,
    message,
    presence,
    registered,
)

BUSY = {Channel.SMS: 1}


def queued_positions(state: DomainState, *messages_: str, now: float = T0) -> list[int | None]:
    """Each one a second after the one before (same time: the conversation id decides)."""
    positions = []
    for n, key in enumerate(messages_):
        effects = apply(state, message(key, customer=f"c-{key}"), now + n)
        (queued,) = emitted(effects, ConversationQueued)
        positions.append(queued.position)
    return positions


# -- rule 1 and 2: the line, and the place in it -----------------------------------------


def test_conversations_queue_in_arrival_order_one_being_next() -> None:
    state = domain([agent("ann", capacity=BUSY, busy=True)])
    assert queued_positions(state, "k1", "k2", "k3") == [1, 2, 3]


def test_a_higher_priority_goes_ahead_of_older_conversations() -> None:
    state = domain([agent("ann", capacity=BUSY, busy=True)])
    queued_positions(state, "k1", "k2")
    (urgent,) = emitted(
        apply(state, message("k3", customer="c-k3", priority=5), T0 + 9), ConversationQueued
    )
    assert urgent.position == 1
    assert [line_position(state, state.by_key[key]) for key in ("k1", "k2")] == [2, 3]


def test_a_position_moves_up_when_those_ahead_leave() -> None:
    state = domain([agent("ann", capacity=BUSY, busy=True)])
    queued_positions(state, "k1", "k2", "k3")
    first, third = state.by_key["k1"], state.by_key["k3"]
    apply(state, close(first.conversation_id), T0 + 5)
    assert line_position(state, third) == 2
    assert line_length(state, step_line(state, third, 0)) == 2


def test_a_preferred_hold_counts_only_the_conversations_held_for_that_agent() -> None:
    state = domain(
        [agent("ann", capacity=BUSY, busy=True), agent("bob", capacity=BUSY, busy=True)],
        preferred={"c1": "ann", "c2": "ann", "c3": "bob"},
    )
    queued_positions(state, "q1")  # in the queue, ahead of nobody held
    positions = [
        emitted(apply(state, message(key, customer=customer), T0 + n), ConversationQueued)[0]
        for n, (key, customer) in enumerate((("h1", "c1"), ("h2", "c2"), ("h3", "c3")))
    ]
    assert [(q.step, q.preferred_agent_id, q.position) for q in positions] == [
        ("preferred", "ann", 1),
        ("preferred", "ann", 2),
        ("preferred", "bob", 1),
    ]


def test_a_conversation_held_outside_business_hours_is_on_no_line() -> None:
    closed = BusinessCalendar(time_zone="UTC", weekly=WeeklyHours())
    policy = DomainPolicy(
        calendars={"never": closed},
        queues={"default": QueuePolicy(calendar="never")},
    )
    state = domain([agent("ann")], policy=policy)
    (queued,) = emitted(apply(state, message("k1"), T0), ConversationQueued)
    assert (queued.step, queued.position) == ("after_hours", None)


def test_a_fallback_announces_the_position_at_the_next_step() -> None:
    policy = DomainPolicy(
        queues={
            "default": QueuePolicy(
                steps=(
                    StepPolicy(name="team", wait=60),
                    StepPolicy(name="anyone", agents_from=("*",), wait=600),
                )
            )
        }
    )
    state = domain([agent("ann", capacity=BUSY, busy=True)], policy=policy)
    queued_positions(state, "k1", "k2")
    later = tick(state, T0 + 61)
    assert [(q.step, q.position) for q in emitted(later, ConversationQueued)] == [
        ("anyone", 1),
        ("anyone", 2),
    ]


# -- rule 3: who serves a line ---------------------------------------------------------


def test_the_line_is_served_by_online_pool_agents_with_the_channel_and_skills() -> None:
    policy = DomainPolicy(queues={"default": QueuePolicy(skills=("fr",))})
    state = domain(
        [
            agent("ann", capacity=BUSY, skills=("fr",), busy=True),
            agent("bob", capacity=BUSY, skills=("fr",), presence=Presence.AWAY),
            agent("cat", capacity={Channel.EMAIL: 3}, skills=("fr",)),
            agent("dan", capacity=BUSY, skills=("de",)),
        ],
        policy=policy,
    )
    apply(state, message("k1"), T0)
    waiting = state.by_key["k1"]
    assert [a.agent_id for a in serving_agents(state, waiting, 0)] == ["ann"]


# -- the event ---------------------------------------------------------------------------


def test_a_queued_payload_from_before_position_existed_still_decodes() -> None:
    old = {
        "type": "conversation.queued",
        "id": "e1",
        "domain": "acme",
        "occurred_at": T0,
        "conversation_id": "c1",
        "channel": "sms",
        "customer_id": "cust",
        "queue": "default",
        "step": "queue",
    }
    event = ROUTING_DECODER.decode(msgspec.json.encode(old))
    assert isinstance(event, ConversationQueued)
    assert (event.position, event.expected_wait_seconds) == (None, None)


@settings(max_examples=examples(150), deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(("arrive", "close")), st.integers(0, 9), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    )
)
def test_positions_on_a_line_are_one_to_n_in_priority_then_age_order(
    operations: list[tuple[str, int, int]],
) -> None:
    state = domain([agent("ann", capacity=BUSY, busy=True)])
    now = T0
    for kind, n, priority in operations:
        now += 1
        key = f"k{n}"
        if kind == "arrive" and key not in state.by_key:
            apply(state, message(key, customer=f"c{n}", priority=priority), now)
        elif kind == "close" and key in state.by_key:
            apply(state, close(state.by_key[key].conversation_id), now)
    waiting = [c for c in state.conversations.values() if c.wait_token is not None]
    order = sorted(waiting, key=lambda c: (-c.priority, c.waiting_since, c.conversation_id))
    assert [line_position(state, c) for c in order] == list(range(1, len(order) + 1))


def test_an_agent_freeing_a_slot_takes_position_one() -> None:
    state = domain([agent("ann", capacity=BUSY)])
    apply(state, registered("ann", capacity=BUSY), T0)
    apply(state, presence("ann", Presence.ONLINE), T0)
    apply(state, message("first", customer="c0"), T0)  # ann's one slot
    queued_positions(state, "k1", "k2")
    owned = state.by_key["first"]
    effects = apply(state, close(owned.conversation_id), T0 + 10)
    assert state.by_key["k1"].owner is not None
    assert line_position(state, state.by_key["k2"]) == 1
    assert emitted(effects, ConversationQueued) == []
