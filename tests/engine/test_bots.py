"""Bots as owners (``router.engine.bots``): bot first, turns, answers, hand-off, takeover,
hand-back, deadlines, and the refusals that keep one owner at a time."""

from __future__ import annotations

import msgspec

from router.engine import (
    BotPolicy,
    ConversationStatus,
    DomainPolicy,
    InactivityPolicy,
    QueuePolicy,
    Returning,
    SaveBot,
    SendReply,
    StepPolicy,
    new_state,
    tick,
)
from schemas import (
    BotFailed,
    BotHandoffRequested,
    BotReplied,
    BotResolved,
    BotStatusChanged,
    BotTurn,
    Channel,
    CommandCompleted,
    CommandRejected,
    ConversationAssigned,
    ConversationBotAssigned,
    ConversationClosed,
    ConversationHandbackRequested,
    ConversationHandedOff,
    ConversationTakeoverRequested,
    Handoff,
    HandoffReason,
    HumanReplied,
    MessageRouted,
    Presence,
)
from tests.engine.builders import (
    DOMAIN,
    T0,
    close,
    conversation,
    emitted,
    event_types,
    message,
    next_id,
    notified,
    presence,
    registered,
    run,
)

BOT = "helper"


def bot_policy(returning: Returning = Returning.BOT, **bot: object) -> DomainPolicy:
    return DomainPolicy(
        default_queue="sales",
        inactivity=InactivityPolicy(release_after=None, close_after=3600),
        bots={BOT: msgspec.convert(bot, BotPolicy)},
        queues={
            "sales": QueuePolicy(bot=BOT, returning=returning, steps=(StepPolicy(name="team"),)),
            "other": QueuePolicy(),
        },
    )


def with_agents(policy: DomainPolicy, *agents: tuple[str, tuple[str, ...]]):  # type: ignore[no-untyped-def]
    state = new_state(DOMAIN, policy)
    for agent_id, skills in agents:
        run(state, [registered(agent_id, capacity={Channel.SMS: 2}, skills=skills)])
        run(state, [presence(agent_id, Presence.ONLINE)])
    return state


def answer(kind: type, conversation_id: str, **fields: object):  # type: ignore[no-untyped-def]
    return kind(
        id=next_id("bot"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        bot_id=fields.pop("bot_id", BOT),
        **fields,
    )


def opened(state, key: str = "k1", customer: str = "c1", text: str = "hello", at: float = T0):  # type: ignore[no-untyped-def]
    first = msgspec.structs.replace(message(key, customer=customer), text=text)
    return first.id, run(state, [first], at)


def test_a_new_conversation_of_a_bot_first_queue_goes_to_the_bot_with_its_first_turn() -> None:
    state = with_agents(bot_policy(), ("a1", ()))
    conversation_id, effects = opened(state)
    assert event_types(effects) == ["conversation.bot_assigned", "bot.turn", "message.routed"]
    turn = emitted(effects, BotTurn)[0]
    assert turn.bot_id == BOT
    assert turn.text == "hello"
    assert turn.answer_by == T0 + 20.0
    assert turn.turn == 1
    assert turn.provider_message_id is not None
    assert emitted(effects, MessageRouted)[0].bot_id == BOT
    record = conversation(state, conversation_id)
    assert record is not None
    assert record.status is ConversationStatus.BOT
    assert record.owner_agent_id is None
    assert record.step == "bot"
    assert not any(state.agents["a1"].load.values())  # a bot holds nobody's slot


def test_a_reply_goes_out_and_ends_the_turn_a_resolve_closes_contained() -> None:
    state = with_agents(bot_policy(), ("a1", ()))
    conversation_id, effects = opened(state)
    turn = emitted(effects, BotTurn)[0]
    reply = answer(
        BotReplied,
        conversation_id,
        turn_id=turn.id,
        text="Hi! How can I help?",
        in_reply_to=turn.provider_message_id,
        quick_replies=("Order",),
    )
    effects = run(state, [reply], T0 + 1)
    sent = [effect.reply for effect in effects if isinstance(effect, SendReply)]
    assert len(sent) == 1
    assert sent[0].bot_id == BOT
    assert sent[0].agent_id is None
    assert sent[0].quick_replies == ("Order",)
    assert sent[0].in_reply_to == turn.provider_message_id
    record = conversation(state, conversation_id)
    assert record is not None
    assert record.deadline_kind == "close"
    assert tick(state, T0 + 25) == []  # no bot deadline left
    effects = run(state, [answer(BotResolved, conversation_id, text="Bye")], T0 + 30)
    closed = emitted(effects, ConversationClosed)[0]
    assert closed.contained
    assert closed.bot_id == BOT
    assert closed.agent_id is None
    assert [e for e in effects if isinstance(e, SendReply)]


def test_a_hand_off_goes_to_the_customers_last_agent_with_the_bots_context_first() -> None:
    state = with_agents(bot_policy(), ("a1", ("billing",)), ("a2", ("billing",)))
    # a2 served this customer before
    earlier = message("old", customer="c1", queue="other")
    run(state, [earlier])
    owner = state.conversations[earlier.id].owner
    assert owner is not None
    last = owner.agent_id
    run(state, [close(earlier.id)])
    conversation_id, _ = opened(state, "k1", "c1")
    handoff = Handoff(
        reason=HandoffReason.OUT_OF_SCOPE,
        summary="Wants a refund for order 42",
        intent="refund",
        skills=("billing",),
        priority=7,
        attributes={"order": "42"},
    )
    effects = run(
        state, [answer(BotHandoffRequested, conversation_id, handoff=handoff, text="One moment")]
    )
    types = event_types(effects)
    assert types.index("conversation.handed_off") < types.index("conversation.assigned")
    handed = emitted(effects, ConversationHandedOff)[0]
    assert handed.reason is HandoffReason.OUT_OF_SCOPE
    assert handed.handoff == handoff
    assigned = emitted(effects, ConversationAssigned)[0]
    assert assigned.agent_id == last
    assert assigned.strategy == "preferred"
    assert assigned.handoff is not None
    assert assigned.handoff.handoff.summary.startswith("Wants")
    assert [e.reply.text for e in effects if isinstance(e, SendReply)] == ["One moment"]
    record = conversation(state, conversation_id)
    assert record is not None
    assert record.skills == ("billing",)
    assert record.priority == 7
    assert record.attributes == {"order": "42"}
    assert record.bot_id is None
    assert state.customers["c1"].last_agent_id == last


def test_answers_of_a_bot_that_no_longer_owns_it_are_refused_and_never_sent() -> None:
    state = with_agents(bot_policy(), ("a1", ()))
    conversation_id, effects = opened(state)
    turn = emitted(effects, BotTurn)[0]
    takeover = ConversationTakeoverRequested(
        id=next_id("take"),
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id=conversation_id,
        agent_id="a1",
    )
    effects = run(state, [takeover], T0 + 2)
    assert emitted(effects, ConversationHandedOff)[0].reason is HandoffReason.TAKEOVER
    assigned = emitted(effects, ConversationAssigned)[0]
    assert assigned.agent_id == "a1"
    assert assigned.step == "takeover"
    assert emitted(effects, CommandCompleted)
    late = answer(BotReplied, conversation_id, turn_id=turn.id, text="Too late")
    effects = run(state, [late], T0 + 3)
    assert not [e for e in effects if isinstance(e, SendReply)]
    assert emitted(effects, CommandRejected)[0].reason == "not_bot_owner"
    # taking over again: nobody's bot owns it now
    again = msgspec.structs.replace(takeover, id=next_id("take"))
    assert emitted(run(state, [again]), CommandRejected)[0].reason == "not_bot_owned"


def test_no_answer_by_the_deadline_hands_off_to_people() -> None:
    state = with_agents(bot_policy(answer_timeout=5.0), ("a1", ()))
    _conversation_id, _ = opened(state)
    assert tick(state, T0 + 4.9) == []
    effects = tick(state, T0 + 5)
    assert emitted(effects, ConversationHandedOff)[0].reason is HandoffReason.BOT_TIMEOUT
    assert emitted(effects, ConversationAssigned)[0].agent_id == "a1"
    failed_state = with_agents(bot_policy(), ("a1", ()))
    other_id, _ = opened(failed_state)
    effects = run(failed_state, [answer(BotFailed, other_id, error="http_500")])
    assert emitted(effects, ConversationHandedOff)[0].reason is HandoffReason.BOT_ERROR


def test_asking_for_a_person_or_going_round_in_circles_hands_off() -> None:
    state = with_agents(bot_policy(max_turns=2), ("a1", ()))
    conversation_id, effects = opened(state, text="  Talk to a HUMAN! ")
    handed = emitted(effects, ConversationHandedOff)[0]
    assert handed.reason is HandoffReason.CUSTOMER_ASKED
    assert not emitted(effects, BotTurn)
    looping = with_agents(bot_policy(max_turns=2), ("a1", ()))
    conversation_id, effects = opened(looping, "k2", "c2")
    turn = emitted(effects, BotTurn)[0]
    run(looping, [answer(BotReplied, conversation_id, turn_id=turn.id, text="?")])
    effects = run(looping, [message("k2", customer="c2")])
    assert emitted(effects, BotTurn)[0].turn == 2
    effects = run(looping, [message("k2", customer="c2")])
    assert emitted(effects, ConversationHandedOff)[0].reason is HandoffReason.NO_PROGRESS


def test_progress_resets_the_loop_guard() -> None:
    state = with_agents(bot_policy(max_turns=1), ("a1", ()))
    conversation_id, effects = opened(state)
    for _ in range(3):
        turn = emitted(effects, BotTurn)[0]
        run(state, [answer(BotReplied, conversation_id, turn_id=turn.id, text="ok", progress=True)])
        effects = run(state, [message("k1", customer="c1")])
    assert emitted(effects, BotTurn)[0].turn == 1


def test_hand_back_gives_the_bot_a_turn_with_the_note_and_frees_the_slot() -> None:
    state = with_agents(bot_policy(), ("a1", ()))
    first = message("k1", customer="c1", queue="other")
    run(state, [first])
    assert state.agents["a1"].load == {Channel.SMS: 1}

    def handback(agent_id: str | None, bot_id: str | None = None) -> ConversationHandbackRequested:
        return ConversationHandbackRequested(
            id=next_id("back"),
            domain=DOMAIN,
            occurred_at=T0,
            conversation_id=first.id,
            agent_id=agent_id,
            bot_id=bot_id,
            note="Survey please",
        )

    assert emitted(run(state, [handback("a2")]), CommandRejected)[0].reason == "not_owner"
    assert emitted(run(state, [handback("a1")]), CommandRejected)[0].reason == "no_bot"
    assert emitted(run(state, [handback("a1", "nope")]), CommandRejected)[0].reason == "unknown_bot"
    effects = run(state, [handback("a1", BOT)])
    assigned = emitted(effects, ConversationBotAssigned)[0]
    assert assigned.reason == "handback"
    assert assigned.from_agent_id == "a1"
    assert emitted(effects, BotTurn)[0].note == "Survey please"
    assert state.agents["a1"].load == {Channel.SMS: 0}
    # the survey answered and resolved: not contained (a person took part)
    effects = run(state, [answer(BotResolved, first.id)])
    assert not emitted(effects, ConversationClosed)[0].contained


def test_returning_customers_go_to_their_agent_when_the_queue_says_so() -> None:
    for returning, first_type in (
        (Returning.LAST_AGENT, "conversation.assigned"),
        (Returning.BOT, "conversation.bot_assigned"),
    ):
        state = with_agents(bot_policy(returning), ("a1", ()))
        earlier = message("old", customer="c1", queue="other")
        run(state, [earlier, close(earlier.id)])
        _, effects = opened(state, "k1", "c1")
        assert event_types(effects)[0] == first_type, returning


def test_a_person_replying_from_elsewhere_stops_the_bot() -> None:
    state = with_agents(bot_policy(), ("a1", ()))
    _conversation_id, _ = opened(state)
    echo = HumanReplied(
        id=next_id("echo"),
        domain=DOMAIN,
        occurred_at=T0,
        channel=Channel.SMS,
        endpoint="+15550000000",
        customer_address="addr:c1",
        customer_id="c1",
        conversation_key="k1",
        provider_message_id="pm-echo",
    )
    effects = run(state, [echo])
    assert emitted(effects, ConversationHandedOff)[0].reason is HandoffReason.HUMAN_REPLIED
    assert run(state, [echo]) == []  # nobody's bot owns it any more


def test_the_honest_answer_names_the_position_and_who_is_online() -> None:
    state = with_agents(bot_policy(continue_on=["email"]), ("a1", ()))
    run(state, [registered("a1", capacity={Channel.SMS: 1})])
    busy = message("busy", customer="c0", queue="other")
    run(state, [busy])
    ids = [opened(state, f"k{i}", f"c{i}")[0] for i in range(1, 4)]
    handed = []
    for seconds, conversation_id in enumerate(ids, start=1):
        effects = run(
            state,
            [
                answer(
                    BotHandoffRequested,
                    conversation_id,
                    handoff=Handoff(reason=HandoffReason.CUSTOMER_ASKED),
                )
            ],
            T0 + seconds,
        )
        handed.append(emitted(effects, ConversationHandedOff)[0])
    assert [h.position for h in handed] == [0, 1, 2]
    assert all(h.agents_online == 1 and h.continue_on == (Channel.EMAIL,) for h in handed)


def test_the_bot_may_relay_what_to_expect_until_a_person_has_it() -> None:
    state = with_agents(bot_policy(), ("a1", ()))
    run(state, [registered("a1", capacity={Channel.SMS: 1})])
    run(state, [message("busy", customer="c0", queue="other")])  # a1's only slot
    conversation_id, _ = opened(state)
    handoff = Handoff(reason=HandoffReason.CUSTOMER_ASKED)
    effects = run(state, [answer(BotHandoffRequested, conversation_id, handoff=handoff)])
    handed = emitted(effects, ConversationHandedOff)[0]
    assert handed.position == 0
    relay = answer(BotReplied, conversation_id, text="You are first in line.")
    sent = [e.reply for e in run(state, [relay]) if isinstance(e, SendReply)]
    assert [reply.text for reply in sent] == ["You are first in line."]
    assert sent[0].bot_id == BOT
    # its hand-off is done: nothing else from it is taken
    again = answer(BotHandoffRequested, conversation_id, handoff=handoff)
    assert emitted(run(state, [again]), CommandRejected)[0].reason == "not_bot_owner"
    other_bot = answer(BotReplied, conversation_id, text="hi", bot_id="other")
    assert emitted(run(state, [other_bot]), CommandRejected)[0].reason == "not_bot_owner"
    # once a person has it, the bot is silent
    run(state, [close(next(iter(c for c in state.conversations if c != conversation_id)))])
    record = conversation(state, conversation_id)
    assert record is not None
    assert record.owner_agent_id == "a1"
    late = answer(BotReplied, conversation_id, text="Still there?")
    effects = run(state, [late])
    assert not [e for e in effects if isinstance(e, SendReply)]
    assert emitted(effects, CommandRejected)[0].reason == "not_bot_owner"


def test_a_bot_that_keeps_failing_is_skipped_until_retry_after_then_tried_again() -> None:
    state = with_agents(bot_policy(answer_timeout=5.0, down_after=2, retry_after=60.0), ("a1", ()))
    run(state, [registered("a1", capacity={Channel.SMS: 10})])
    opened(state, "k1", "c1")
    assert not emitted(tick(state, T0 + 5), BotStatusChanged)  # one failure: still up
    opened(state, "k2", "c2", at=T0 + 6)
    effects = tick(state, T0 + 11)
    status = emitted(effects, BotStatusChanged)
    assert [(s.available, s.until, s.failures) for s in status] == [(False, T0 + 71, 2)]
    assert state.bot_health[BOT].down_until == T0 + 71
    # down: a new conversation goes straight to people
    _, effects = opened(state, "k3", "c3", at=T0 + 20)
    assert "conversation.bot_assigned" not in event_types(effects)
    assert emitted(effects, ConversationAssigned)[0].agent_id == "a1"
    # after retry_after the bot is tried again; its answer brings it back up
    conversation_id, effects = opened(state, "k4", "c4", at=T0 + 71)
    turn = emitted(effects, BotTurn)[0]
    reply = answer(BotReplied, conversation_id, turn_id=turn.id, text="back")
    effects = run(state, [reply], T0 + 72)
    assert [(s.available, s.failures) for s in emitted(effects, BotStatusChanged)] == [(True, 0)]
    assert BOT not in state.bot_health
    assert any(isinstance(e, SaveBot) and e.record is None for e in effects)


def test_a_reply_to_a_business_started_message_goes_to_the_bot_only_after_its_window() -> None:
    """Within the notification's answer window its answerer takes the reply, not the bot;
    after it, the reply is routed as the queue routes: to its bot."""
    for answered_at, owner in ((T0 + 600, "a1"), (T0 + 2 * 3600, None)):
        state = with_agents(bot_policy(), ("a1", ()), ("a2", ()))
        run(state, [notified("c1", "notice-1", agent_id="a1", until=T0 + 3600)])
        effects = run(state, [message("k1", customer="c1")], answered_at)
        record = conversation(state, "notice-1")
        assert record is not None
        assert record.owner_agent_id == owner, answered_at
        routed = emitted(effects, MessageRouted)
        assert [r.answers_outbound_id for r in routed] == ["out-notice-1"]
        assert [r.bot_id for r in routed] == [None if owner else BOT]
