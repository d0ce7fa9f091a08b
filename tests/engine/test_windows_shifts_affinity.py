"""Issue 7: the wait budget, reply windows, shifts, login pacing and affinity."""

from __future__ import annotations

import datetime as dt
import itertools

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from router.engine import (
    AffinityPolicy,
    ConversationStatus,
    DomainPolicy,
    ReplyWindowPolicy,
    ShiftEnd,
    apply,
    line_position,
    reconfigure,
    restore,
    snapshot,
    tick,
)
from router.engine.affinity import affinity_ranking
from router.engine.records import AgentRecord, CustomerRecord
from router.engine.state import COMPACT_SLACK
from schemas import (
    AgentSchedule,
    Channel,
    ConversationAssigned,
    ConversationFallback,
    ConversationQueued,
    ConversationReplyWindowClosed,
    Presence,
    ShiftInterval,
    Strategy,
)
from tests.engine.builders import (
    DOMAIN,
    T0,
    agent,
    close,
    conversation,
    domain,
    emitted,
    examples,
    message,
    owner_set,
    presence,
    registered,
    replied,
)

# T0 is Tuesday 2023-11-14 22:13:20 UTC.
WEEKDAYS_9_TO_17 = AgentSchedule(
    timezone="UTC",
    weekly=tuple(ShiftInterval(day=d, start="09:00", end="17:00") for d in range(5)),
)
NEXT_START = dt.datetime(2023, 11, 15, 9, tzinfo=dt.UTC).timestamp()


def windowed(key: str, *, customer: str, ends_at: float | None, channel: Channel = Channel.SMS):
    return msgspec.structs.replace(
        message(key, customer=customer, channel=channel), reply_window_ends_at=ends_at
    )


def scheduled(agent_id: str, schedule: AgentSchedule | None = WEEKDAYS_9_TO_17):
    return msgspec.structs.replace(
        registered(agent_id, capacity={Channel.SMS: 1}), schedule=schedule
    )


# -- wait budget --------------------------------------------------------------------


@settings(max_examples=examples(200), deadline=None)
@given(
    max_wait=st.floats(0, 10_000),
    sla=st.one_of(st.none(), st.floats(1, 10_000)),
    window=st.one_of(st.none(), st.floats(1, 100_000)),
)
def test_budget_never_exceeds_any_of_its_bounds(
    max_wait: float, sla: float | None, window: float | None
) -> None:
    policy = DomainPolicy(
        preferred_wait=msgspec.structs.replace(DomainPolicy().preferred_wait, sms=max_wait),
        first_response_sla={} if sla is None else {Channel.SMS: sla},
    )
    state = domain([agent("ann", busy=True)], policy=policy, preferred={"cust-1": "ann"})
    ends_at = None if window is None else T0 + window
    effects = apply(state, windowed("k", customer="cust-1", ends_at=ends_at), T0)
    (queued,) = emitted(effects, ConversationQueued)
    assert queued.step == "preferred"
    assert queued.wait_until is not None
    until = queued.wait_until
    assert T0 <= until <= T0 + max_wait
    if sla is not None:
        assert until <= T0 + sla
    if window is not None:
        assert until <= T0 + window
        assert queued.reply_window_ends_at == ends_at
    bounds = [T0 + max_wait] + [T0 + b for b in (sla, window) if b is not None]
    assert until == min(bounds)


@settings(max_examples=examples(150), deadline=None)
@given(
    offset=st.floats(-86_400, 7 * 86_400),
    max_wait=st.sampled_from([60.0, 3600.0, 12 * 3600.0, 86_400.0]),
)
def test_a_step_is_skipped_only_when_the_agent_returns_after_the_budget(
    offset: float, max_wait: float
) -> None:
    policy = DomainPolicy(
        preferred_wait=msgspec.structs.replace(DomainPolicy().preferred_wait, sms=max_wait)
    )
    now = T0 + offset
    state = domain([agent("bob")], policy=policy, preferred={"cust-1": "ann"}, now=now)
    apply(state, scheduled("ann"), now)  # registered, offline
    effects = apply(state, message("k", customer="cust-1"), now)
    skipped = [
        f
        for f in emitted(effects, ConversationFallback)
        if f.reason == "agent_unavailable_within_budget"
    ]
    from router.engine.schedule import next_start

    back = next_start(WEEKDAYS_9_TO_17, now)
    assert back is not None
    if back > now + max_wait:
        assert skipped
        assert skipped[0].from_step == "preferred"
        assert emitted(effects, ConversationAssigned)[0].agent_id == "bob"
    else:
        assert not skipped
        assert conversation(state, effects[0].conversation_id).step == "preferred"  # type: ignore[union-attr]


def test_an_offline_agent_without_schedule_is_waited_for_as_before() -> None:
    state = domain([agent("bob")], preferred={"cust-1": "ann"})
    apply(state, registered("ann"), T0)
    effects = apply(state, message("k", customer="cust-1"), T0)
    (queued,) = emitted(effects, ConversationQueued)
    assert queued.step == "preferred"
    assert queued.wait_until == T0 + 120


# -- reply windows ------------------------------------------------------------------


@settings(max_examples=examples(100), deadline=None)
@given(
    windows=st.lists(st.floats(1, 5000), min_size=1, max_size=6),
    advance=st.lists(st.floats(1, 3000), min_size=1, max_size=6),
    urgent=st.one_of(st.none(), st.floats(1, 600)),
)
def test_window_closed_conversations_are_always_flagged(
    windows: list[float], advance: list[float], urgent: float | None
) -> None:
    policy = DomainPolicy(reply_window=ReplyWindowPolicy(urgent_within=urgent))
    state = domain([agent("ann", capacity={Channel.SMS: 2})], policy=policy)
    for i, window in enumerate(windows):
        apply(state, windowed(f"k{i}", customer=f"c{i}", ends_at=T0 + window), T0)
    now = T0
    announced: set[str] = set()
    for step in advance:
        now += step
        effects = tick(state, now)
        closed_now = emitted(effects, ConversationReplyWindowClosed)
        assert not {e.conversation_id for e in closed_now} & announced, "announced twice"
        announced.update(e.conversation_id for e in closed_now)
        for record in snapshot(state)[1]:
            ends = record.reply_window_ends_at
            assert ends is not None
            assert record.reply_window_closed == (ends <= now), (record, now)
            # never silently: every closed window was announced, whatever the status
            assert record.reply_window_closed == (record.conversation_id in announced)
        for queued in emitted(effects, ConversationQueued):
            assert queued.reply_window_closed
        revived = restore(DOMAIN, policy, *snapshot(state))
        assert snapshot(revived) == snapshot(state)


def test_a_closing_window_on_an_assigned_conversation_is_announced_to_its_owner() -> None:
    state = domain([agent("ann", capacity={Channel.SMS: 2})])
    effects = apply(state, windowed("k1", customer="c1", ends_at=T0 + 3600), T0)
    assigned = emitted(effects, ConversationAssigned)[0]
    assert emitted(tick(state, T0 + 3599), ConversationReplyWindowClosed) == []
    closed = emitted(tick(state, T0 + 3600), ConversationReplyWindowClosed)
    assert [(e.conversation_id, e.agent_id, e.status, e.reply_window_ends_at) for e in closed] == [
        (assigned.conversation_id, "ann", "assigned", T0 + 3600)
    ]


def test_urgent_window_jumps_the_queue() -> None:
    policy = DomainPolicy(reply_window=ReplyWindowPolicy(urgent_within=600, urgent_boost=10))
    state = domain([agent("ann", capacity={Channel.SMS: 1}, busy=True)], policy=policy)
    apply(state, windowed("early", customer="c1", ends_at=T0 + 86_400), T0)
    late = windowed("late", customer="c2", ends_at=T0 + 1000)
    apply(state, late, T0 + 1)
    tick(state, T0 + 500)  # c2 is within 600 s of its window closing: boosted
    held = snapshot(state)[1]
    filler = next(r for r in held if r.owner_agent_id == "ann")
    effects = apply(state, close(filler.conversation_id), T0 + 501)
    assert emitted(effects, ConversationAssigned)[0].conversation_id == late.id


def test_a_window_closing_while_waiting_drops_the_boost_as_a_restore_does() -> None:
    """Closed, the window gives no boost (nobody can answer inside it any more): the
    live line is the one a restore rebuilds from the records, so after a takeover the
    agent freeing a slot takes the same conversation."""
    policy = DomainPolicy(reply_window=ReplyWindowPolicy(urgent_within=600, urgent_boost=10))
    state = domain([agent("ann", capacity={Channel.SMS: 1}, busy=True)], policy=policy)
    early = windowed("early", customer="c1", ends_at=T0 + 86_400)
    late = windowed("late", customer="c2", ends_at=T0 + 1000)
    apply(state, early, T0)
    apply(state, late, T0 + 1)
    tick(state, T0 + 500)
    assert line_position(state, state.conversations[late.id]) == 1  # urgent: boosted
    (queued,) = emitted(tick(state, T0 + 1000), ConversationQueued)
    assert (queued.conversation_id, queued.reply_window_closed) == (late.id, True)
    revived = restore(DOMAIN, policy, *snapshot(state))
    live = {key: line_position(state, c) for key, c in state.conversations.items()}
    assert live == {key: line_position(revived, c) for key, c in revived.conversations.items()}
    assert (live[early.id], live[late.id], queued.position) == (1, 2, 2)
    filler = next(r for r in snapshot(state)[1] if r.owner_agent_id == "ann")
    for either in (state, revived):
        effects = apply(either, close(filler.conversation_id), T0 + 1001)
        assert emitted(effects, ConversationAssigned)[0].conversation_id == early.id


def test_a_window_moved_later_by_every_message_leaves_no_pile_of_stale_entries() -> None:
    state = domain([agent("ann")])
    first = windowed("kB", customer="cB", ends_at=T0 + 86_400, channel=Channel.WHATSAPP)
    apply(state, first, T0)
    later = 5_000
    for n in range(1, later + 1):
        moved = windowed("kA", customer="cA", ends_at=T0 + n + 86_400, channel=Channel.WHATSAPP)
        apply(state, moved, T0 + n)
    # each message left its window's old entry behind the first conversation's window
    assert len(state.windows) <= 2 * len(state.conversations) + COMPACT_SLACK
    closed = emitted(tick(state, T0 + 86_400), ConversationReplyWindowClosed)
    assert [event.conversation_id for event in closed] == [first.id]
    assert emitted(tick(state, T0 + later + 86_399), ConversationReplyWindowClosed) == []
    closed = emitted(tick(state, T0 + later + 86_400), ConversationReplyWindowClosed)
    assert len(closed) == 1
    assert closed[0].conversation_id != first.id


# -- shifts -------------------------------------------------------------------------


def test_registering_a_scheduled_agent_again_leaves_one_shift_deadline() -> None:
    monday_9 = dt.datetime(2023, 11, 13, 9, tzinfo=dt.UTC).timestamp()
    state = domain([], policy=DomainPolicy(on_shift_end=ShiftEnd.REHOME), now=monday_9)
    for _ in range(3_000):
        apply(state, scheduled("ann"), monday_9)  # a profile saved again, the same shift
    assert len(state.agent_deadlines) <= 2 * 2 * len(state.agents) + COMPACT_SLACK
    assert len(set(state.agent_deadlines)) == 1


def test_shift_end_rehomes_only_conversations_waiting_on_the_business() -> None:
    policy = DomainPolicy(on_shift_end=ShiftEnd.REHOME)
    monday_9 = dt.datetime(2023, 11, 13, 9, tzinfo=dt.UTC).timestamp()
    state = domain([agent("bob")], policy=policy, now=monday_9)
    apply(state, msgspec.structs.replace(scheduled("ann"), capacity={Channel.SMS: 3}), monday_9)
    apply(state, presence("ann", Presence.ONLINE), monday_9)
    apply(state, presence("bob", Presence.AWAY), monday_9)
    ids = []
    for i in range(3):
        msg = message(f"k{i}", customer=f"c{i}")
        apply(state, msg, monday_9 + i)
        ids.append(msg.id)
    apply(state, replied(ids[1], "ann"), monday_9 + 10)  # waiting on the customer
    apply(state, presence("bob", Presence.ONLINE), monday_9 + 11)
    effects = tick(state, monday_9 + 8 * 3600)
    moved = {a.conversation_id: a.agent_id for a in emitted(effects, ConversationAssigned)}
    assert moved == {ids[0]: "bob", ids[2]: "bob"}
    assert conversation(state, ids[1]).owner_agent_id == "ann"  # type: ignore[union-attr]
    assert {f.reason for f in emitted(effects, ConversationFallback)} == {"shift_ended"}


def test_an_agent_whose_shift_ended_is_not_handed_a_waiting_conversation_instead() -> None:
    """Re-homing frees the agent's slot; the conversation waiting in line does not take
    it: their shift is over."""
    policy = DomainPolicy(on_shift_end=ShiftEnd.REHOME)
    monday_9 = dt.datetime(2023, 11, 13, 9, tzinfo=dt.UTC).timestamp()
    state = domain([agent("bob", presence=Presence.OFFLINE)], policy=policy, now=monday_9)
    apply(state, scheduled("ann"), monday_9)  # one SMS slot
    apply(state, presence("ann", Presence.ONLINE), monday_9)
    first, second = message("k1", customer="c1"), message("k2", customer="c2")
    apply(state, first, monday_9 + 1)
    apply(state, second, monday_9 + 2)  # waits: ann is full, bob offline
    effects = tick(state, monday_9 + 8 * 3600)
    assert emitted(effects, ConversationAssigned) == []
    assert {f.conversation_id for f in emitted(effects, ConversationFallback)} == {first.id}
    assert conversation(state, second.id).status is ConversationStatus.WAITING  # type: ignore[union-attr]


def test_a_new_policy_starts_or_stops_re_homing_at_shift_end() -> None:
    monday_9 = dt.datetime(2023, 11, 13, 9, tzinfo=dt.UTC).timestamp()
    for before, after, rehomed in (
        (ShiftEnd.KEEP, ShiftEnd.REHOME, True),
        (ShiftEnd.REHOME, ShiftEnd.KEEP, False),
    ):
        state = domain(
            [agent("bob", capacity={Channel.SMS: 3})],
            policy=DomainPolicy(on_shift_end=before),
            now=monday_9,
        )
        apply(state, scheduled("ann"), monday_9)
        apply(state, presence("ann", Presence.ONLINE), monday_9)
        apply(state, presence("bob", Presence.AWAY), monday_9)
        apply(state, message("k1", customer="c1"), monday_9 + 1)  # ann's
        apply(state, presence("bob", Presence.ONLINE), monday_9 + 2)
        state = reconfigure(state, DomainPolicy(on_shift_end=after), monday_9 + 3)
        tick(state, monday_9 + 3)
        effects = tick(state, monday_9 + 8 * 3600)
        moved = [a.agent_id for a in emitted(effects, ConversationAssigned)]
        assert moved == (["bob"] if rehomed else []), (before, after)


@settings(max_examples=examples(60), deadline=None)
@given(
    replies=st.lists(st.booleans(), min_size=1, max_size=6),
    late=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_rehoming_never_takes_a_conversation_waiting_on_the_customer(
    replies: list[bool], late: list[bool]
) -> None:
    policy = DomainPolicy(on_shift_end=ShiftEnd.REHOME)
    monday_9 = dt.datetime(2023, 11, 13, 9, tzinfo=dt.UTC).timestamp()
    state = domain([agent("bob", capacity={Channel.SMS: 10})], policy=policy, now=monday_9)
    apply(state, msgspec.structs.replace(scheduled("ann"), capacity={Channel.SMS: 10}), monday_9)
    apply(state, presence("ann", Presence.ONLINE), monday_9)
    apply(state, presence("bob", Presence.OFFLINE), monday_9)
    on_customer = set()
    for i, reply in enumerate(replies):
        msg = message(f"k{i}", customer=f"c{i}")
        apply(state, msg, monday_9 + i)
        if reply:
            apply(state, replied(msg.id, "ann"), monday_9 + 100 + i)
            if late[i]:  # the customer wrote again: waiting on the business
                apply(state, message(f"k{i}", customer=f"c{i}"), monday_9 + 200 + i)
            else:
                on_customer.add(msg.id)
    effects = tick(state, monday_9 + 8 * 3600 + 1)
    rehomed = {f.conversation_id for f in emitted(effects, ConversationFallback)}
    assert not rehomed & on_customer
    assert rehomed == {c.conversation_id for c in snapshot(state)[1]} - on_customer
    for conversation_id in on_customer:
        assert conversation(state, conversation_id).owner_agent_id == "ann"  # type: ignore[union-attr]


# -- login pacing -------------------------------------------------------------------


@settings(max_examples=examples(80), deadline=None)
@given(
    backlog=st.integers(1, 8),
    capacity=st.integers(1, 6),
    pace=st.sampled_from([5.0, 30.0, 60.0]),
    ticks=st.lists(st.floats(0.5, 40), min_size=5, max_size=40),
)
def test_pacing_hands_at_most_one_conversation_per_interval(
    backlog: int, capacity: int, pace: float, ticks: list[float]
) -> None:
    policy = DomainPolicy(login_pace=pace)
    state = domain([], policy=policy)
    apply(state, registered("ann", capacity={Channel.SMS: capacity}), T0)
    for i in range(backlog):
        apply(state, message(f"k{i}", customer=f"c{i}"), T0)
    now = T0 + 1
    times = [
        now
        for _ in emitted(apply(state, presence("ann", Presence.ONLINE), now), ConversationAssigned)
    ]
    for step in ticks:
        now += step
        if len(times) % 2 == 0:  # new work arriving mid-drain is paced too
            apply(state, message(f"new{now}", customer=f"n{now}"), now)
        times += [now for _ in emitted(tick(state, now), ConversationAssigned)]
    assert all(b - a >= pace for a, b in itertools.pairwise(times)), times
    assert len(times) <= capacity
    revived = restore(DOMAIN, policy, *snapshot(state))
    assert snapshot(revived) == snapshot(state)


def test_without_pacing_a_login_takes_the_backlog_at_once() -> None:
    state = domain([])
    apply(state, registered("ann", capacity={Channel.SMS: 3}), T0)
    for i in range(5):
        apply(state, message(f"k{i}", customer=f"c{i}"), T0)
    assert (
        len(emitted(apply(state, presence("ann", Presence.ONLINE), T0), ConversationAssigned)) == 3
    )


def test_a_paced_login_takes_what_is_held_for_the_agent_first() -> None:
    """The conversation held for the agent (their customer's, on web chat) before the
    queue's line (on email, a channel whose name sorts first)."""
    state = domain([], policy=DomainPolicy(login_pace=60))
    apply(state, registered("ann", capacity={Channel.EMAIL: 1, Channel.WEBCHAT: 1}), T0)
    apply(state, owner_set("c1", "ann"), T0)
    held = message("k1", customer="c1", channel=Channel.WEBCHAT)
    apply(state, held, T0)
    apply(state, message("k2", customer="c2", channel=Channel.EMAIL), T0)
    effects = apply(state, presence("ann", Presence.ONLINE), T0 + 5)
    assert [(a.conversation_id, a.strategy) for a in emitted(effects, ConversationAssigned)] == [
        (held.id, Strategy.PREFERRED)
    ]


def test_pacing_removed_mid_interval_hands_the_rest_at_its_end() -> None:
    state = domain([], policy=DomainPolicy(login_pace=60))
    apply(state, registered("ann", capacity={Channel.SMS: 3}), T0)
    for i in range(3):
        apply(state, message(f"k{i}", customer=f"c{i}"), T0)
    assert (
        len(emitted(apply(state, presence("ann", Presence.ONLINE), T0), ConversationAssigned)) == 1
    )
    state = reconfigure(state, DomainPolicy(), T0 + 10)
    tick(state, T0 + 10)
    assert len(emitted(tick(state, T0 + 60), ConversationAssigned)) == 2


# -- affinity -----------------------------------------------------------------------


def test_affinity_ranks_by_decayed_score_and_the_step_tries_them_in_order() -> None:
    policy = DomainPolicy(affinity=AffinityPolicy(try_top=2, half_life=86_400))
    state = domain(
        [agent(a, capacity={Channel.SMS: 1}) for a in ("ann", "bob", "cid", "dan")], policy=policy
    )
    # bob served the customer twice and resolved once, long ago; cid once, recently; ann last
    for when, who, reason in (
        (T0, "bob", "resolved"),
        (T0 + 10, "bob", "other"),
        (T0 + 3 * 86_400, "cid", "other"),
        (T0 + 3 * 86_400 + 50, "ann", "other"),
    ):
        for other in ("ann", "bob", "cid", "dan"):
            apply(state, presence(other, Presence.ONLINE if other == who else Presence.AWAY), when)
        msg = message("k", customer="cust")
        effects = apply(state, msg, when) + tick(state, when + 121)
        assert emitted(effects, ConversationAssigned)[0].agent_id == who
        apply(state, close(msg.id, reason=reason), when + 122)
    now = T0 + 3 * 86_400 + 300
    ranking = affinity_ranking(state, "cust", now)
    scores = dict(ranking)
    # bob: 3 points 3 days ago -> 3/8; cid: 1 point now -> ~1; ann: 1 point now
    assert [a for a, _ in ranking][:1] in (["ann"], ["cid"])
    assert scores["bob"] < scores["cid"]
    assert [s for _, s in ranking] == sorted((s for _, s in ranking), reverse=True)
    # ann (preferred, last agent) is away: the affinity step tries cid, then bob, not dan
    for other in ("ann", "bob", "cid", "dan"):
        apply(
            state,
            presence(other, Presence.AWAY if other in ("ann", "cid") else Presence.ONLINE),
            now,
        )
    msg = message("k", customer="cust")
    apply(state, msg, now)
    effects = tick(state, now + 120)
    assert [(f.from_step, f.to_step) for f in emitted(effects, ConversationFallback)] == [
        ("preferred", "affinity")
    ]
    assigned = emitted(effects, ConversationAssigned)[0]
    assert (assigned.agent_id, assigned.step, str(assigned.strategy)) == (
        "bob",
        "affinity",
        "fallback",
    )


def test_explicit_owner_ranks_first_and_affinity_list_is_bounded() -> None:
    policy = DomainPolicy(affinity=AffinityPolicy(try_top=1, keep=2))
    agents = [agent(f"a{i}", capacity={Channel.SMS: 1}) for i in range(4)]
    state = domain(agents, policy=policy, preferred={"cust": "a3"})
    apply(state, presence("a3", Presence.AWAY), T0)
    for i in range(3):
        for j in range(3):
            apply(state, presence(f"a{j}", Presence.ONLINE if i == j else Presence.AWAY), T0 + i)
        msg = message("k", customer="cust")
        apply(state, msg, T0 + i)
        tick(state, T0 + i + 200)
        apply(state, close(msg.id), T0 + i + 201)
    customer = next(c for c in snapshot(state)[2] if c.customer_id == "cust")
    assert len(customer.affinity) == 2
    apply(state, presence("a3", Presence.ONLINE), T0 + 1000)
    effects = apply(state, message("k", customer="cust"), T0 + 1000)
    assert emitted(effects, ConversationAssigned)[0].agent_id == "a3"


def test_old_records_still_decode() -> None:
    old_agent = b'{"agent_id":"ann","presence":"online","capacity":{"sms":2}}'
    old_customer = b'{"customer_id":"c","last_agent_id":"ann","last_handled_at":1.0}'
    assert msgspec.json.decode(old_agent, type=AgentRecord).schedule is None
    assert msgspec.json.decode(old_customer, type=CustomerRecord).affinity == ()
    status = ConversationStatus.WAITING
    assert status == "waiting"
