"""``router.engine.waiting``: a waiting conversation's position, sectioned by its rules, the
position on ``conversation.queued``, and the lines that make it cheap (``WaitLine``)."""

from __future__ import annotations

from bisect import bisect_left, insort

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.engine import (
    BusinessCalendar,
    DomainPolicy,
    DomainState,
    QueuePolicy,
    ReplyWindowPolicy,
    StepPolicy,
    apply,
    line_length,
    line_position,
    restore,
    serving_agents,
    snapshot,
    step_line,
    tick,
)
from router.engine import lines as engine_lines
from router.engine.calendar import WeeklyHours
from router.engine.state import WaitEntry, WaitLine
from schemas import ROUTING_DECODER, Channel, ConversationQueued, Presence
from tests.engine.builders import (
    T0,
    agent,
    close,
    domain,
    emitted,
    erased,
    examples,
    message,
    owner_set,
    presence,
    registered,
    removed,
    transfer,
    updated,
)
from tests.engine.test_properties import positions_count_those_ahead

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
    waiting = [c for c in state.conversations.values() if c.wait_entry is not None]
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


# -- the lines: only the conversations waiting on them -----------------------------------


@settings(max_examples=examples(300), deadline=None)
@given(
    st.integers(1, 4),
    st.lists(
        st.tuples(st.booleans(), st.integers(-2, 2), st.integers(0, 3), st.integers(0, 40)),
        max_size=150,
    ),
)
def test_a_wait_line_keeps_its_entries_in_order_and_ranks_them(
    load: int, operations: list[tuple[bool, int, int, int]]
) -> None:
    """Against a sorted list, with buckets small enough to split and merge often."""
    line = WaitLine(load)
    naive: list[WaitEntry] = []
    for add, priority, since, n in operations:
        entry = (priority, float(since), f"c{n:02d}")
        present = [e for e in naive if e[2] == entry[2]]  # one entry per conversation
        assert line.rank(entry) == bisect_left(naive, entry)
        if add and not present:
            line.add(entry)
            insort(naive, entry)
        elif not add and present:
            line.remove(present[0])
            naive.remove(present[0])
        assert len(line) == len(naive)
        assert list(line) == naive
        assert [line.rank(e) for e in naive] == list(range(len(naive)))


LINE_CUSTOMERS = 25
LINE_AGENTS = ("ann", "bob", "cat")
LINE_POLICY = DomainPolicy(
    default_queue="support",
    queues={
        "support": QueuePolicy(
            skills=("english",),
            steps=(
                StepPolicy(name="team", wait=60),
                StepPolicy(name="anyone", agents_from=("*",), skills=(), wait=3000),
            ),
        ),
        # its one step shares the pool of support's ``anyone``: one line for both queues
        "billing": QueuePolicy(steps=(StepPolicy(name="anyone", agents_from=("*",), wait=2000),)),
    },
    reply_window=ReplyWindowPolicy(urgent_within=100, urgent_boost=3),
)
"""Two queues whose last steps share one pool (rule 1): a line of conversations of both;
reply windows turning urgent (a boost the size of a priority step) and closing."""

reply_window = st.sampled_from((None, None, 30.0, 90.0, 400.0, 2000.0))
"""Seconds from the message to the end of its reply window (None: no window)."""

arrival = st.tuples(
    st.just("arrive"),
    st.integers(0, LINE_CUSTOMERS - 1),
    st.sampled_from((0, 0, 0, 3, -1)),
    st.sampled_from(("support", "billing")),
    st.sampled_from((Channel.SMS, Channel.SMS, Channel.WEBCHAT)),
    reply_window,
)
line_operation = st.one_of(
    *[arrival] * 6,
    st.tuples(st.just("write"), st.integers(0, 59), reply_window),
    st.tuples(st.just("close"), st.integers(0, 59)),
    st.tuples(st.just("priority"), st.integers(0, 59), st.sampled_from((-2, 0, 4))),
    st.tuples(
        st.just("transfer"),
        st.integers(0, 59),
        st.sampled_from((*LINE_AGENTS, "support", "billing")),
    ),
    st.tuples(st.just("erase"), st.integers(0, LINE_CUSTOMERS - 1)),
    st.tuples(st.just("owner"), st.integers(0, LINE_CUSTOMERS - 1), st.integers(0, 3)),
    st.tuples(st.just("presence"), st.integers(0, 2), st.sampled_from(list(Presence))),
    st.tuples(
        st.just("register"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 1), st.booleans()
    ),
    st.tuples(st.just("remove"), st.integers(0, 2)),
    st.tuples(st.just("advance"), st.sampled_from((1.0, 30.0, 61.0, 1000.0))),
)
"""Arrivals of new conversations (most draws), and everything that takes a conversation
off its line or moves it: assignment (an agent online or given capacity), close, priority
change, a customer message with a new reply window, transfer, erasure, a preferred agent's
removal, fallback, overflow and reply windows turning urgent or closing (time)."""


def line_step(state: DomainState, operation: tuple[object, ...], now: float, n: int) -> None:
    """Apply one drawn operation; ``n``: its number (an arrival's conversation key)."""
    kind = operation[0]
    open_ids = sorted(state.conversations)

    def pick(index: object) -> str:
        assert isinstance(index, int)
        return open_ids[index % len(open_ids)] if open_ids else "gone"

    if kind == "arrive":
        _, customer, priority, queue, channel, window = operation
        assert isinstance(priority, int)
        assert isinstance(channel, Channel)
        event = message(
            f"k{n}",
            customer=f"c{customer}",
            channel=channel,
            queue=str(queue),
            priority=priority,
            reply_window_ends_at=window_end(window, now),
        )
        apply(state, event, now)
    elif kind == "write":
        conversation = state.conversations.get(pick(operation[1]))
        if conversation is not None:
            event = message(
                conversation.key,
                customer=conversation.customer_id,
                channel=conversation.channel,
                reply_window_ends_at=window_end(operation[2], now),
            )
            apply(state, event, now)
    elif kind == "close":
        apply(state, close(pick(operation[1])), now)
    elif kind == "priority":
        priority = operation[2]
        assert isinstance(priority, int)
        apply(state, updated(pick(operation[1]), priority=priority), now)
    elif kind == "transfer":
        target = str(operation[2])
        if target in LINE_AGENTS:
            apply(state, transfer(pick(operation[1]), to_agent=target), now)
        else:
            apply(state, transfer(pick(operation[1]), to_queue=target), now)
    elif kind == "erase":
        apply(state, erased(f"c{operation[1]}"), now)
    elif kind == "owner":
        index = operation[2]
        assert isinstance(index, int)
        owner = LINE_AGENTS[index] if index < len(LINE_AGENTS) else None
        apply(state, owner_set(f"c{operation[1]}", owner), now)
    elif kind == "presence":
        index, status = operation[1], operation[2]
        assert isinstance(index, int)
        assert isinstance(status, Presence)
        apply(state, presence(LINE_AGENTS[index], status), now)
    elif kind == "register":
        _, index, sms, chat, english = operation
        assert isinstance(index, int)
        assert isinstance(sms, int)
        assert isinstance(chat, int)
        capacity = {Channel.SMS: sms, Channel.WEBCHAT: chat}
        skills = ("english",) if english else ()
        apply(state, registered(LINE_AGENTS[index], capacity=capacity, skills=skills), now)
    elif kind == "remove":
        index = operation[1]
        assert isinstance(index, int)
        apply(state, removed(LINE_AGENTS[index]), now)
    else:
        tick(state, now)


def window_end(window: object, now: float) -> float | None:
    assert window is None or isinstance(window, float)
    return None if window is None else now + window


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.integers(1, 3),
    st.lists(arrival, min_size=5, max_size=60),
    st.lists(line_operation, min_size=10, max_size=80),
)
def test_positions_and_lengths_count_only_the_conversations_on_the_line(
    load: int, backlog: list[tuple[object, ...]], operations: list[tuple[object, ...]]
) -> None:
    """After every operation (a backlog of arrivals first, so lines get long), each
    position and line length equals the naive count of the conversations on the line;
    the same after a restore, which rebuilds the lines."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_lines, "WAIT_LINE_LOAD", load)  # buckets split and merge often
        state = domain(
            [
                agent("ann", capacity={Channel.SMS: 1, Channel.WEBCHAT: 1}, busy=True),
                agent("bob", capacity={Channel.SMS: 1}, skills=("english",), busy=True),
                agent("cat", capacity={Channel.WEBCHAT: 1}, presence=Presence.AWAY),
            ],
            policy=LINE_POLICY,
            preferred={f"c{n}": LINE_AGENTS[n % 2] for n in range(8)},  # held for them
        )
        now = T0
        for n, operation in enumerate([*backlog, *operations]):
            if operation[0] == "advance":
                assert isinstance(operation[1], float)
                now += operation[1]
            else:
                now += 0.5
            line_step(state, operation, now, n)
            positions_count_those_ahead(state)
        rebuilt = restore(state.domain, LINE_POLICY, *snapshot(state))
        positions_count_those_ahead(rebuilt)
        assert {key: line_position(rebuilt, c) for key, c in rebuilt.conversations.items()} == {
            key: line_position(state, c) for key, c in state.conversations.items()
        }
