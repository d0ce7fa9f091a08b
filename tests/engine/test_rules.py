"""The routing rules, one behaviour per test (rules 1-7; inactivity and commands elsewhere)."""

from __future__ import annotations

from typing import Any

from router.engine import (
    ConversationRecord,
    ConversationStatus,
    DomainPolicy,
    DomainState,
    Effect,
    Emit,
    QueueMode,
    QueuePolicy,
    SaveActivity,
    SaveAssignment,
    SaveMessage,
    apply,
    make_id,
    next_deadline,
    snapshot,
    tick,
)
from schemas import (
    CandidateNote,
    Channel,
    CommandCompleted,
    CommandRejected,
    ConversationAssigned,
    ConversationFallback,
    ConversationOffered,
    ConversationOverflowed,
    ConversationQueued,
    MessageRouted,
    Presence,
)
from tests.engine.builders import (
    T0,
    accept,
    agent,
    assigned_to,
    assignment,
    close,
    conversation,
    domain,
    emitted,
    event_types,
    fill,
    ladder_policy,
    message,
    owner_set,
    presence,
    registered,
    run,
)


def record(state: DomainState, conversation_id: str) -> ConversationRecord:
    found = conversation(state, conversation_id)
    assert found is not None
    return found


def load_of(state: DomainState, agent_id: str, channel: Channel = Channel.SMS) -> int:
    return state.agents[agent_id].load.get(channel, 0)


# -- rule 1: the fast path ------------------------------------------------------------


def test_routes_a_message_of_an_owned_conversation_to_its_online_owner() -> None:
    state = domain([agent("ann")], preferred={"cust-1": "ann"})
    first = message("k1")
    apply(state, first, T0)
    follow_up = message("k1")
    effects = apply(state, follow_up, T0 + 5)
    assert [type(e) for e in effects] == [SaveMessage, Emit, SaveActivity]
    routed = emitted(effects, MessageRouted)[0]
    assert (routed.conversation_id, routed.agent_id) == (first.id, "ann")
    assert routed.id == make_id(f"{follow_up.id}/0")
    snap = record(state, first.id)
    assert snap.last_customer_message_at == T0 + 5
    assert snap.message_count == 2
    assert load_of(state, "ann") == 1


# -- rule 2: the preferred agent ------------------------------------------------------


def test_assigns_a_new_conversation_to_the_customers_explicit_owner() -> None:
    state = domain([agent("ann"), agent("bob")], preferred={"cust-1": "bob"})
    msg = message("k1")
    effects = apply(state, msg, T0)
    assert assignment(effects) == (msg.id, "bob", "preferred")
    assert emitted(effects, MessageRouted)[0].agent_id == "bob"


def test_assigns_a_returning_customer_to_the_agent_who_last_handled_them_on_any_channel() -> None:
    state = domain([agent("ann"), agent("bob")])
    first = message("sms-thread", channel=Channel.SMS)
    assert assignment(apply(state, first, T0)) == (first.id, "ann", "queue")
    apply(state, close(first.id, "ann"), T0 + 10)
    # bob is now the less busy one, but the customer comes back to ann on web chat
    apply(state, registered("ann", capacity={Channel.WEBCHAT: 2, Channel.SMS: 2}), T0 + 11)
    apply(state, registered("bob", capacity={Channel.WEBCHAT: 2, Channel.SMS: 2}), T0 + 11)
    again = message("chat-thread", channel=Channel.WEBCHAT)
    assert assignment(apply(state, again, T0 + 20)) == (again.id, "ann", "preferred")


def test_the_explicit_owner_beats_the_last_agent() -> None:
    state = domain([agent("ann"), agent("bob")])
    first = message("k1")
    assert assigned_to(apply(state, first, T0)) == "ann"
    apply(state, close(first.id, "ann"), T0 + 1)
    apply(state, owner_set("cust-1", "bob"), T0 + 2)
    second = message("k2")
    assert assignment(apply(state, second, T0 + 3)) == (second.id, "bob", "preferred")


def test_a_new_customer_goes_to_the_queue_with_strategy_queue() -> None:
    state = domain([agent("ann")])
    msg = message("k1", customer="nobody-knows-me")
    assert assignment(apply(state, msg, T0)) == (msg.id, "ann", "queue")
    assert record(state, msg.id).step == "queue"


# -- rule 3: hold for the preferred agent ---------------------------------------------


def test_holds_for_a_busy_preferred_agent_until_the_channel_wait() -> None:
    state = domain([agent("ann", busy=True), agent("bob")], preferred={"cust-1": "ann"})
    effects = apply(state, message("k1", channel=Channel.SMS), T0)
    assert assignment(effects) is None
    queued = emitted(effects, ConversationQueued)[0]
    assert (queued.step, queued.preferred_agent_id, queued.wait_until) == (
        "preferred",
        "ann",
        T0 + 120,
    )
    assert next_deadline(state) == T0 + 120


def test_default_preferred_waits_follow_the_channel() -> None:
    waits = {}
    for channel in (Channel.WEBCHAT, Channel.SMS, Channel.WHATSAPP, Channel.EMAIL):
        state = domain([agent("ann", busy=True, capacity={channel: 1})], preferred={"c": "ann"})
        queued = emitted(
            apply(state, message("k", customer="c", channel=channel), T0), ConversationQueued
        )
        wait_until = queued[0].wait_until
        assert wait_until is not None
        waits[channel] = wait_until - T0
    assert waits == {
        Channel.WEBCHAT: 30,
        Channel.SMS: 120,
        Channel.WHATSAPP: 120,
        Channel.EMAIL: 4 * 3600,
    }


def test_falls_back_only_after_the_preferred_deadline() -> None:
    state = domain([agent("ann", busy=True), agent("bob")], preferred={"cust-1": "ann"})
    msg = message("c1", customer="cust-1", channel=Channel.SMS)
    apply(state, msg, T0)
    assert tick(state, T0 + 119) == []
    effects = tick(state, T0 + 120)
    assert assignment(effects) == (msg.id, "bob", "fallback")
    fallback = emitted(effects, ConversationFallback)[0]
    assert (fallback.from_step, fallback.to_step, fallback.reason) == (
        "preferred",
        "queue",
        "timeout",
    )
    assert event_types(effects) == ["conversation.fallback", "conversation.assigned"]


def test_a_preferred_agent_who_frees_a_slot_in_time_gets_the_conversation() -> None:
    ann = agent("ann", capacity={Channel.SMS: 1})
    state = domain([ann, agent("bob")])
    (filler,) = fill(state, ann)
    apply(state, owner_set("cust-1", "ann"), T0)
    msg = message("k1")
    apply(state, msg, T0)
    effects = apply(state, close(filler, "ann"), T0 + 60)
    assigned = emitted(effects, ConversationAssigned)[0]
    assert (assigned.conversation_id, assigned.agent_id, assigned.strategy) == (
        msg.id,
        "ann",
        "preferred",
    )
    assert assigned.waited_seconds == 60
    assert tick(state, T0 + 500) == []


def test_a_preferred_agent_who_comes_online_in_time_gets_the_conversation() -> None:
    state = domain(
        [agent("ann", presence=Presence.OFFLINE), agent("bob")], preferred={"cust-1": "ann"}
    )
    msg = message("k1")
    queued = emitted(apply(state, msg, T0), ConversationQueued)
    assert queued[0].preferred_agent_id == "ann"
    assert assignment(apply(state, presence("ann", Presence.ONLINE), T0 + 100)) == (
        msg.id,
        "ann",
        "preferred",
    )


def test_a_preferred_agent_passed_over_for_a_skill_is_noted_so() -> None:
    """They had a free slot: the note says what they lacked, not ``chosen``."""
    state = domain(
        [agent("ann", skills=["english"]), agent("bob", skills=["french"])],
        preferred={"cust-1": "ann"},
    )
    msg = message("k1", skills=("french",))
    effects = apply(state, msg, T0)
    assert assignment(effects) == (msg.id, "bob", "fallback")
    notes = emitted(effects, ConversationAssigned)[0].candidates
    assert notes == (
        CandidateNote(agent_id="ann", reason="missing_skill"),
        CandidateNote(agent_id="bob", reason="chosen"),
    )


def test_does_not_wait_for_a_preferred_agent_without_the_channel() -> None:
    state = domain(
        [agent("ann", capacity={Channel.EMAIL: 5}), agent("bob")], preferred={"cust-1": "ann"}
    )
    msg = message("k1", channel=Channel.SMS)
    effects = apply(state, msg, T0)
    fallback = emitted(effects, ConversationFallback)[0]
    assert fallback.reason == "no_channel"
    assert assignment(effects) == (msg.id, "bob", "fallback")
    notes = emitted(effects, ConversationAssigned)[0].candidates
    assert notes == (
        CandidateNote(agent_id="ann", reason="no_channel"),
        CandidateNote(agent_id="bob", reason="chosen"),
    )


# -- rule 4: the ladder ---------------------------------------------------------------


def test_fallback_walks_the_queue_steps_in_order_each_with_its_wait() -> None:
    policy = ladder_policy(skilled_wait=60, overflow_wait=600)
    state = domain(
        [
            agent("ann", skills=["english"], busy=True),
            agent("bob", skills=["french"], busy=True),
        ],
        policy=policy,
        preferred={"cust-1": "ann"},
    )
    msg = message("k1")
    apply(state, msg, T0)
    first = tick(state, T0 + 120)
    assert [(f.from_step, f.to_step) for f in emitted(first, ConversationFallback)] == [
        ("preferred", "skilled")
    ]
    assert emitted(first, ConversationQueued)[0].wait_until == T0 + 180
    assert tick(state, T0 + 179) == []
    second = tick(state, T0 + 180)
    assert [(f.from_step, f.to_step) for f in emitted(second, ConversationFallback)] == [
        ("skilled", "anyone")
    ]
    assert emitted(second, ConversationQueued)[0].wait_until == T0 + 780
    assert record(state, msg.id).step == "anyone"


def test_a_skills_step_only_considers_agents_with_the_skills_in_the_queue() -> None:
    policy = ladder_policy()
    state = domain(
        [
            agent("ann", skills=["french"]),
            agent("bob", skills=["english"], queues=["billing"]),
            agent("cyd", skills=["english"], queues=["support"]),
        ],
        policy=policy,
    )
    msg = message("k1", customer="new")
    assert assignment(apply(state, msg, T0)) == (msg.id, "cyd", "queue")


def test_picks_the_lowest_occupancy_then_the_longest_idle_then_the_agent_id() -> None:
    state = domain([agent("cyd"), agent("bob"), agent("ann")])
    picks = []
    for i in range(6):
        effects = apply(state, message(f"k{i}", customer=f"c{i}"), T0 + i)
        picks.append(assigned_to(effects))
    # all equal: agent id; then the one with the lowest occupancy; then the longest idle
    assert picks == ["ann", "bob", "cyd", "ann", "bob", "cyd"]


def test_occupancy_is_a_share_of_the_channel_capacity() -> None:
    state = domain(
        [agent("ann", capacity={Channel.SMS: 4}), agent("bob", capacity={Channel.SMS: 2})]
    )
    picks = [
        assigned_to(apply(state, message(f"k{i}", customer=f"c{i}"), T0 + i)) for i in range(3)
    ]
    # ann 0/4, bob 0/2 -> ann; ann 1/4 < bob 0/2? no: bob 0 -> bob; ann 1/4 < bob 1/2 -> ann
    assert picks == ["ann", "bob", "ann"]


# -- rule 5: waiting in the queue and overflow ----------------------------------------


def test_a_queued_conversation_goes_to_the_first_agent_who_frees_a_slot() -> None:
    ann = agent("ann", capacity={Channel.SMS: 1})
    state = domain([ann])
    (filler,) = fill(state, ann)
    msg = message("k1", customer="new")
    effects = apply(state, msg, T0)
    assert emitted(effects, ConversationQueued)[0].step == "queue"
    assert assignment(apply(state, close(filler, "ann"), T0 + 30)) == (msg.id, "ann", "queue")


def test_the_queue_serves_priority_then_age() -> None:
    ann = agent("ann", capacity={Channel.SMS: 1})
    state = domain([ann])
    (filler,) = fill(state, ann)
    old = message("old", customer="a")
    vip = message("vip", customer="b", priority=5)
    apply(state, old, T0)
    apply(state, vip, T0 + 1)
    first = assignment(apply(state, close(filler, "ann"), T0 + 2))
    assert first == (vip.id, "ann", "queue")
    second = assignment(apply(state, close(vip.id, "ann"), T0 + 3))
    assert second == (old.id, "ann", "queue")


def test_preferred_waiters_get_their_agent_before_queue_waiters() -> None:
    ann = agent("ann", capacity={Channel.SMS: 1})
    state = domain([ann])
    (filler,) = fill(state, ann)
    queued = message("older", customer="stranger")
    apply(state, queued, T0)
    apply(state, owner_set("loyal", "ann"), T0)
    mine = message("mine", customer="loyal")
    apply(state, mine, T0 + 10)
    assert assignment(apply(state, close(filler, "ann"), T0 + 20)) == (mine.id, "ann", "preferred")


def test_overflows_after_the_queues_final_timeout_and_stays_open() -> None:
    state = domain([agent("ann", skills=["english"], busy=True)], policy=ladder_policy())
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    tick(state, T0 + 60)  # skilled -> anyone
    assert tick(state, T0 + 659) == []
    effects = tick(state, T0 + 660)
    assert event_types(effects) == ["conversation.fallback", "conversation.overflowed"]
    assert emitted(effects, ConversationFallback)[0].to_step is None
    assert emitted(effects, ConversationOverflowed)[0].waited_seconds == 660
    assert record(state, msg.id).status is ConversationStatus.OVERFLOWED
    # nobody gets it automatically any more, even with free slots
    apply(state, registered("zed", capacity={Channel.SMS: 3}, skills=["english"]), T0 + 700)
    assert assignment(apply(state, presence("zed", Presence.ONLINE), T0 + 700)) is None


def test_an_overflowed_conversation_can_be_picked_up_manually() -> None:
    state = domain([agent("ann", skills=["english"], busy=True)], policy=ladder_policy())
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    tick(state, T0 + 60)
    tick(state, T0 + 660)
    apply(state, registered("zed", capacity={Channel.SMS: 3}), T0 + 700)
    apply(state, presence("zed", Presence.ONLINE), T0 + 700)
    effects = apply(state, accept(msg.id, "zed"), T0 + 710)
    assert assignment(effects) == (msg.id, "zed", "manual")
    assert emitted(effects, CommandCompleted)[0].conversation_id == msg.id


def test_a_single_slot_takes_one_manual_pick_up_and_refuses_the_next() -> None:
    state = domain([agent("ann", skills=["english"], busy=True)], policy=ladder_policy())
    first, second = message("k1", customer="c1"), message("k2", customer="c2")
    for msg in (first, second):
        apply(state, msg, T0)
    tick(state, T0 + 60)
    tick(state, T0 + 660)
    apply(state, registered("zed", capacity={Channel.SMS: 1}), T0 + 700)
    apply(state, presence("zed", Presence.ONLINE), T0 + 700)
    picked = apply(state, accept(first.id, "zed"), T0 + 710)
    assert assignment(picked) == (first.id, "zed", "manual")
    refused = apply(state, accept(second.id, "zed"), T0 + 720)
    assert [event.reason for event in emitted(refused, CommandRejected)] == ["at_capacity"]


def test_a_new_message_restarts_routing_of_an_overflowed_conversation() -> None:
    state = domain([agent("ann", skills=["english"], busy=True)], policy=ladder_policy())
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    tick(state, T0 + 60)
    tick(state, T0 + 660)
    apply(state, registered("zed", capacity={Channel.SMS: 3}, skills=["english"]), T0 + 700)
    apply(state, presence("zed", Presence.ONLINE), T0 + 700)
    effects = apply(state, message("k1", customer="new"), T0 + 800)
    assert assignment(effects) == (msg.id, "zed", "queue")
    assert emitted(effects, ConversationAssigned)[0].waited_seconds == 0


# -- rule 6: offer mode ---------------------------------------------------------------


def offer_domain(**kwargs: Any) -> DomainState:
    return domain(
        [agent("ann", skills=["english"]), agent("bob", skills=["english"])],
        policy=ladder_policy(mode=QueueMode.OFFER, **kwargs),
    )


def test_offer_mode_offers_and_assigns_on_accept() -> None:
    state = offer_domain()
    msg = message("k1", customer="new")
    effects = apply(state, msg, T0)
    offered = emitted(effects, ConversationOffered)[0]
    assert (offered.agent_id, offered.expires_at, offered.step) == ("ann", T0 + 20, "skilled")
    assert assignment(effects) is None
    assert load_of(state, "ann") == 1  # the offer holds the slot
    accepted = apply(state, accept(msg.id, "ann"), T0 + 5)
    assert assignment(accepted) == (msg.id, "ann", "queue")
    assert event_types(accepted) == ["conversation.assigned", "command.completed"]
    saved = [e.record for e in accepted if isinstance(e, SaveAssignment)]
    assert (saved[0].offered_at, saved[0].accepted_at) == (T0, T0 + 5)


def test_an_expired_offer_moves_to_the_next_candidate_and_records_the_miss() -> None:
    state = offer_domain()
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    assert tick(state, T0 + 19) == []
    effects = tick(state, T0 + 20)
    offered = emitted(effects, ConversationOffered)[0]
    assert offered.agent_id == "bob"
    missed = [e.record for e in effects if isinstance(e, SaveAssignment)]
    assert [(r.agent_id, r.end_reason) for r in missed if r.end_reason] == [("ann", "offer_missed")]
    assert state.agents["ann"].missed_offers == 1
    assert load_of(state, "ann") == 0
    accepted = apply(state, accept(msg.id, "bob"), T0 + 25)
    assigned = emitted(accepted, ConversationAssigned)[0]
    assert CandidateNote(agent_id="ann", reason="offer_missed") in assigned.candidates


def test_consecutive_missed_offers_set_the_agent_away() -> None:
    state = domain(
        [agent("ann")], policy=ladder_policy(mode=QueueMode.OFFER, away_after_missed_offers=2)
    )
    apply(state, registered("ann", skills=["english"]), T0)
    now = T0
    for i in range(2):
        apply(state, message(f"k{i}", customer=f"c{i}"), now)
        now += 20
        tick(state, now)
    assert state.agents["ann"].presence is Presence.AWAY
    assert snapshot(state)[0][0].presence is Presence.AWAY


def test_accepting_an_offer_made_to_someone_else_is_rejected() -> None:
    state = offer_domain()
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    before = snapshot(state)
    effects = apply(state, accept(msg.id, "bob"), T0 + 1)
    assert emitted(effects, CommandRejected)[0].reason == "not_offered_to_agent"
    assert [type(e) for e in effects] == [Emit]
    assert snapshot(state) == before


def test_a_missed_preferred_offer_falls_back_at_once() -> None:
    state = offer_domain()
    apply(state, owner_set("cust-1", "bob"), T0)
    msg = message("k1")
    offered = emitted(apply(state, msg, T0), ConversationOffered)[0]
    assert (offered.agent_id, offered.strategy, offered.step) == ("bob", "preferred", "preferred")
    effects = tick(state, T0 + 20)
    fallback = emitted(effects, ConversationFallback)[0]
    assert (fallback.from_step, fallback.reason) == ("preferred", "offer_missed")
    assert emitted(effects, ConversationOffered)[0].agent_id == "ann"


# -- rule 7: presence -----------------------------------------------------------------


def test_an_owner_going_offline_keeps_the_conversation_until_the_customer_writes() -> None:
    state = domain([agent("ann"), agent("bob")], preferred={"cust-1": "ann"})
    msg = message("k1")
    apply(state, msg, T0)
    apply(state, owner_set("cust-1", None), T0)
    effects = apply(state, presence("ann", Presence.OFFLINE), T0 + 10)
    assert routing_events_of(effects) == []
    assert record(state, msg.id).owner_agent_id == "ann"
    assert load_of(state, "ann") == 1


def routing_events_of(effects: list[Effect]) -> list[Emit]:
    return [e for e in effects if isinstance(e, Emit)]


def test_a_customer_writing_to_an_offline_owner_waits_for_them_as_preferred() -> None:
    state = domain([agent("ann"), agent("bob")])
    msg = message("k1")
    assert assigned_to(apply(state, msg, T0)) == "ann"
    apply(state, presence("ann", Presence.OFFLINE), T0 + 10)
    effects = apply(state, message("k1"), T0 + 20)
    queued = emitted(effects, ConversationQueued)[0]
    assert (queued.step, queued.preferred_agent_id) == ("preferred", "ann")
    assert emitted(effects, MessageRouted)[0].agent_id is None
    assert load_of(state, "ann") == 0
    back = apply(state, presence("ann", Presence.ONLINE), T0 + 60)
    assert assignment(back) == (msg.id, "ann", "preferred")


def test_a_customer_of_an_away_owner_falls_back_after_the_wait() -> None:
    state = domain([agent("ann"), agent("bob")])
    msg = message("k1")
    apply(state, msg, T0)
    apply(state, presence("ann", Presence.AWAY), T0 + 10)
    apply(state, message("k1"), T0 + 20)
    effects = tick(state, T0 + 140)
    assert assignment(effects) == (msg.id, "bob", "fallback")
    assert emitted(effects, ConversationAssigned)[0].candidates[0] == CandidateNote(
        agent_id="ann", reason="away"
    )


def test_raising_capacity_takes_waiting_work() -> None:
    ann = agent("ann", capacity={Channel.SMS: 1})
    state = domain([ann])
    fill(state, ann)
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    effects = apply(state, registered("ann", capacity={Channel.SMS: 2}), T0 + 5)
    assert assignment(effects) == (msg.id, "ann", "queue")


def test_lowering_capacity_below_the_load_keeps_the_conversations() -> None:
    state = domain([agent("ann", capacity={Channel.SMS: 3}, busy=True)])
    apply(state, registered("ann", capacity={Channel.SMS: 1}), T0 + 5)
    assert load_of(state, "ann") == 3
    assert emitted(apply(state, message("k1", customer="new"), T0 + 6), ConversationQueued)


def test_an_unknown_queue_falls_back_to_the_default_queue() -> None:
    state = domain([agent("ann")], policy=DomainPolicy(queues={"default": QueuePolicy()}))
    msg = message("k1", customer="new", queue="nonexistent")
    assert assignment(apply(state, msg, T0)) == (msg.id, "ann", "queue")
    assert record(state, msg.id).queue == "default"


def test_conversation_and_event_ids_are_deterministic() -> None:
    events = [message("k1", customer="new"), message("k2", customer="other")]
    first = run(domain([agent("ann")]), events)
    second = run(domain([agent("ann")]), events)
    assert first == second
    assert emitted(first, ConversationAssigned)[0].conversation_id == events[0].id
    assert emitted(first, ConversationAssigned)[0].id == make_id(f"{events[0].id}/1")
