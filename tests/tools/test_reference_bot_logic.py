"""The reference bot's rules (``tools.bots.logic``), by value: turns in, actions out,
sectioned by the rules of its docstring, what it relays of its hand-offs, then invariants
over random conversations and hand-offs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.bots import answer_events, relay_events, relayable
from schemas import BOT_EVENT_DECODER, BotHandoffRequested, BotReplied, BotResolved, Channel
from schemas.bot_webhook import (
    BotAction,
    BotWebhookAnswer,
    HandoffAction,
    ReplyAction,
    ResolveAction,
)
from schemas.bots import Handoff, HandoffReason
from schemas.limits import REPLY_TEXT_MAX
from schemas.routing import BotTurn, ConversationHandedOff
from tools.bots.logic import (
    ASAP,
    GREETING,
    MENU,
    NEW,
    RATINGS,
    Memories,
    Memory,
    order_number,
    order_status,
    relay,
    respond,
)

_answer_decoder = msgspec.json.Decoder(BotWebhookAnswer)


def turn(
    text: str = "hello",
    *,
    turn_id: str = "turn-1",
    conversation_id: str = "c1",
    note: str = "",
    handback: bool = False,
    language: str | None = None,
    provider_message_id: str | None = None,
) -> BotTurn:
    return BotTurn(
        id=turn_id,
        domain="acme",
        occurred_at=1_700_000_000.0,
        conversation_id=conversation_id,
        channel=Channel.WEBCHAT,
        customer_id="webchat:s1",
        queue="default",
        bot_id="helper",
        answer_by=1_700_000_020.0,
        turn=1,
        message_id=None if handback else f"m-{turn_id}",
        provider_message_id=provider_message_id,
        text="" if handback else text,
        note=note,
        language=language,
    )


MONDAY_MORNING = datetime(2026, 3, 2, 7, 30, tzinfo=UTC).timestamp()


def handed_off(**overrides: Any) -> ConversationHandedOff:
    """The bot's hand-off of a web chat conversation, first in line, no estimate yet."""
    fields: dict[str, Any] = {
        "id": "handoff-1",
        "domain": "acme",
        "occurred_at": MONDAY_MORNING,
        "conversation_id": "c1",
        "channel": Channel.WEBCHAT,
        "customer_id": "webchat:s1",
        "queue": "default",
        "bot_id": "helper",
        "reason": HandoffReason.OUT_OF_SCOPE,
        "handoff": Handoff(reason=HandoffReason.OUT_OF_SCOPE, skills=("billing",)),
        "position": 0,
        "agents_online": 0,
    }
    fields.update(overrides)
    return ConversationHandedOff(**fields)


def relayed(**overrides: Any) -> str:
    """The text of the one reply relaying a hand-off."""
    action = only(relay(handed_off(**overrides)))
    assert isinstance(action, ReplyAction)
    return action.text


def only(actions: Sequence[BotAction]) -> BotAction:
    assert len(actions) == 1, actions
    return actions[0]


def talk(*texts: str, memory: Memory = NEW) -> tuple[list[BotAction], Memory]:
    """The bot's single action for each message in turn, and its memory after them."""
    out = []
    for n, text in enumerate(texts):
        actions, memory = respond(turn(text, turn_id=f"t{n}"), memory)
        out.append(only(actions))
    return out, memory


GREETED = Memory(greeted=True)

# -- the first answer -------------------------------------------------------------------


def test_the_first_answer_starts_with_the_greeting_and_later_ones_do_not() -> None:
    (first, second), _ = talk("hello", "hello")
    assert isinstance(first, ReplyAction)
    assert first.text.startswith(GREETING)
    assert first.quick_replies == MENU
    assert not second.text.startswith(GREETING)


# -- rule 1: hand-back ------------------------------------------------------------------


def test_a_hand_back_asks_the_survey_without_a_greeting() -> None:
    actions, memory = respond(turn(handback=True, note="Customer is happy, ask survey"))
    action = only(actions)
    assert isinstance(action, ReplyAction)
    assert action.quick_replies == RATINGS
    assert "1 (poor) to 5 (great)" in action.text
    assert memory.surveying


# -- rule 2: the survey's answer --------------------------------------------------------


def test_a_rating_after_the_survey_resolves() -> None:
    _, memory = respond(turn(handback=True))
    action = only(respond(turn("4", turn_id="t2"), memory)[0])
    assert action == ResolveAction(text="Thank you for your rating!", reason="survey_answered")


def test_a_rating_without_a_survey_is_not_understood() -> None:
    (action,), memory = talk("4", memory=GREETED)
    assert isinstance(action, ReplyAction)
    assert not action.progress
    assert memory.misses == ("4",)


def test_another_message_drops_the_survey() -> None:
    _, memory = respond(turn(handback=True))
    (action, rating), _ = talk("order status", "5", memory=memory)
    assert isinstance(action, ReplyAction)
    assert isinstance(rating, ReplyAction)  # "5" is no longer an answer to the survey


# -- rule 3: a person -------------------------------------------------------------------


def test_asking_for_a_person_hands_off_customer_asked() -> None:
    for text in ("Talk to a person", "AGENT!", "can I speak to a human please", "I need someone"):
        (action,), _ = talk(text, memory=GREETED)
        assert isinstance(action, HandoffAction), text
        assert action.handoff.reason is HandoffReason.CUSTOMER_ASKED


def test_a_person_mentioned_in_passing_is_no_request() -> None:
    (action,), _ = talk("the delivery person left my parcel outside", memory=GREETED)
    assert isinstance(action, ReplyAction)


# -- rule 4: refund ---------------------------------------------------------------------


def test_a_refund_hands_off_out_of_scope_to_billing_with_what_the_bot_learned() -> None:
    (reply, action), _ = talk("Where is order A-1001?", "I want my money back", memory=GREETED)
    assert isinstance(reply, ReplyAction)
    assert isinstance(action, HandoffAction)
    handoff = action.handoff
    assert handoff.reason is HandoffReason.OUT_OF_SCOPE
    assert handoff.intent == "refund"
    assert handoff.skills == ("billing",)
    assert handoff.attributes == {"order_id": "A-1001"}
    assert "refund for order A-1001" in handoff.summary
    assert action.text


def test_a_refund_without_an_order_carries_no_order_id() -> None:
    (action,), _ = talk("Refund")
    assert isinstance(action, HandoffAction)
    assert action.handoff.attributes == {}
    assert action.text.startswith(GREETING)


def test_the_hand_off_carries_the_customers_language() -> None:
    action = only(respond(turn("refund please", language="fr"))[0])
    assert isinstance(action, HandoffAction)
    assert action.handoff.language == "fr"


# -- rules 5 and 6: orders --------------------------------------------------------------


def test_an_order_number_gets_its_status_with_progress() -> None:
    (action,), memory = talk("order a1001 please", memory=GREETED)
    assert isinstance(action, ReplyAction)
    assert action.progress
    assert action.text == f"Order A-1001 {order_status('A-1001')}. Anything else?"
    assert memory.order_id == "A-1001"


def test_order_status_asks_for_the_number_with_progress() -> None:
    (action,), _ = talk("Order status", memory=GREETED)
    assert isinstance(action, ReplyAction)
    assert action.progress
    assert "order number" in action.text


def test_order_numbers_are_found_in_their_usual_forms() -> None:
    assert order_number("A-1001") == "A-1001"
    assert order_number("it's ab1234.") == "AB-1234"
    assert order_number("order #123456") == "#123456"
    assert order_number("order 1234567") == "#1234567"
    assert order_number("covid-19 delays?") is None
    assert order_number("mp3 player") is None
    assert order_number("see x1234abc") is None


def test_the_status_is_the_same_for_the_same_number() -> None:
    assert order_status("A-1001") == order_status("A-1001")
    assert {order_status(f"A-{n}") for n in range(1000, 1010)} != {order_status("A-1001")}


# -- rule 7: thanks and bye -------------------------------------------------------------


def test_thanks_or_bye_resolves() -> None:
    for text in ("Thanks!", "thank you", "bye", "That's all", "No, thanks"):
        (action,), _ = talk(text, memory=GREETED)
        assert action == ResolveAction(text="Glad I could help. Goodbye!"), text


# -- rule 8: greetings ------------------------------------------------------------------


def test_only_the_first_greeting_is_progress() -> None:
    (first, second), _ = talk("hi", "hello there")
    assert isinstance(first, ReplyAction)
    assert isinstance(second, ReplyAction)
    assert (first.progress, second.progress) == (True, False)
    assert second.quick_replies == MENU


# -- rule 9: not understood -------------------------------------------------------------


def test_not_understood_twice_in_a_row_hands_off_low_confidence() -> None:
    (first, second), memory = talk("blue elephants", "purple ones")
    assert isinstance(first, ReplyAction)
    assert not first.progress
    assert first.quick_replies == MENU
    assert isinstance(second, HandoffAction)
    assert second.handoff.reason is HandoffReason.LOW_CONFIDENCE
    assert "«blue elephants» / «purple ones»" in second.handoff.summary
    assert memory.misses == ()


def test_an_understood_message_between_two_misses_starts_the_count_again() -> None:
    actions, _ = talk("blue elephants", "order status", "purple ones")
    assert [type(a) for a in actions] == [ReplyAction, ReplyAction, ReplyAction]


def test_long_messages_are_shortened_in_the_summary() -> None:
    (_, action), _ = talk("x" * 5000, "y" * 5000)
    assert isinstance(action, HandoffAction)
    assert len(action.handoff.summary) < 600


# -- the events -------------------------------------------------------------------------


def test_events_answer_the_turn_with_ids_of_the_turn_alone() -> None:
    the_turn = turn("A-1001", provider_message_id="<m1@example.com>")
    actions = (ReplyAction(text="one"), ReplyAction(text="two", progress=True))
    events = answer_events(the_turn, actions, now=5.0)
    assert [type(e) for e in events] == [BotReplied, BotReplied]
    assert {e.turn_id for e in events} == {the_turn.id}
    assert {e.in_reply_to for e in events} == {"<m1@example.com>"}
    assert len({e.id for e in events}) == 2
    assert [e.id for e in answer_events(the_turn, actions, now=9.0)] == [e.id for e in events]
    other = answer_events(turn("A-1001", turn_id="turn-2"), actions, now=5.0)
    assert not {e.id for e in other} & {e.id for e in events}


def test_events_stop_at_a_hand_off_or_a_resolve() -> None:
    handoff = only(talk("refund")[0])
    actions = (ReplyAction(text="one"), handoff, ReplyAction(text="dropped"))
    events = answer_events(turn(), actions, now=5.0)
    assert [type(e) for e in events] == [BotReplied, BotHandoffRequested]
    resolved = answer_events(turn(), (ResolveAction(text="bye"), ReplyAction(text="x")), now=5.0)
    assert [type(e) for e in resolved] == [BotResolved]


# -- relaying a hand-off ----------------------------------------------------------------


def test_first_in_line_without_an_estimate_is_next_as_soon_as_possible() -> None:
    assert relayed() == f"You're next in line. {ASAP}"
    assert ASAP == "A colleague will be with you as soon as possible."


def test_a_place_in_line_with_the_expected_wait() -> None:
    assert relayed(position=2, expected_wait_seconds=240.0) == (
        "You're number 3 in line; the expected wait is about 4 minutes."
    )
    assert relayed(position=0, expected_wait_seconds=75.0) == (
        "You're next in line; the expected wait is about 1 minute."
    )
    assert relayed(position=4) == f"You're number 5 in line. {ASAP}"


def test_the_expected_wait_in_words() -> None:
    def wait(seconds: float) -> str:
        return relayed(position=1, expected_wait_seconds=seconds).split("wait is ")[1]

    assert wait(0) == "less than a minute."
    assert wait(29) == "less than a minute."
    assert wait(90) == "about 2 minutes."
    assert wait(119 * 60) == "about 119 minutes."
    assert wait(3 * 3600 + 600) == "about 3 hours."


def test_a_closed_queue_says_when_it_opens_in_utc() -> None:
    nine = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
    assert relayed(position=None, opens_at=nine) == (
        "We're closed right now; we open at 09:00 UTC."
    )
    friday_evening = datetime(2026, 2, 27, 19, 0, tzinfo=UTC).timestamp()
    assert relayed(position=None, opens_at=nine, occurred_at=friday_evening) == (
        "We're closed right now; we open on Monday 2 March at 09:00 UTC."
    )
    sunday_evening = datetime(2026, 3, 1, 22, 0, tzinfo=UTC).timestamp()
    assert relayed(position=None, opens_at=nine, occurred_at=sunday_evening) == (
        "We're closed right now; we open tomorrow at 09:00 UTC."
    )
    # Closed wins over a place in line: the wait starts when it opens.
    assert relayed(position=3, opens_at=nine).startswith("We're closed right now;")


def test_other_channels_to_continue_on_are_offered_last() -> None:
    assert relayed(continue_on=(Channel.EMAIL,)) == (
        f"You're next in line. {ASAP} You can also continue by email."
    )
    assert relayed(continue_on=(Channel.WEBCHAT, Channel.EMAIL, Channel.SMS)).endswith(
        "You can also continue by email or SMS."
    ), "not the channel the customer is on"
    assert relayed(
        continue_on=(Channel.EMAIL, Channel.SMS, Channel.WHATSAPP),
        channel=Channel.TELEGRAM,
    ).endswith("You can also continue by email, SMS or WhatsApp.")
    assert relayed(continue_on=(Channel.WEBCHAT,)) == f"You're next in line. {ASAP}"


def test_nothing_is_relayed_when_nobody_waits() -> None:
    taken = handed_off(
        reason=HandoffReason.TAKEOVER,
        handoff=Handoff(reason=HandoffReason.TAKEOVER),
        to_agent_id="ann",
        position=None,
    )
    assert relay(taken) == []
    assert relay(handed_off(position=None)) == [], "a person has it already"
    assert relay(handed_off(reason=HandoffReason.TAKEOVER, position=0)) == []


def test_relayed_replies_have_no_turn_and_ids_of_the_hand_off_alone() -> None:
    event = handed_off(position=1, continue_on=(Channel.EMAIL,))
    handoff = only(talk("refund")[0])
    actions = (*relay(event), handoff, ReplyAction(text="And one more thing."))
    events = relay_events(event, actions, now=5.0)
    assert [type(e) for e in events] == [BotReplied, BotReplied], "the hand-off is dropped"
    assert [e.text for e in events] == [
        relayed(position=1, continue_on=(Channel.EMAIL,)),
        "And one more thing.",
    ]
    assert {(e.turn_id, e.in_reply_to, e.bot_id, e.conversation_id) for e in events} == {
        (None, None, "helper", "c1")
    }
    assert [e.id for e in relay_events(event, actions, now=9.0)] == [e.id for e in events]
    other = relay_events(handed_off(id="handoff-2"), actions, now=5.0)
    assert not {e.id for e in other} & {e.id for e in events}


# -- memories ---------------------------------------------------------------------------


def test_a_turn_answered_again_gets_the_same_answer_and_moves_nothing() -> None:
    memories = Memories()
    first = memories.answer(turn("blue elephants", turn_id="t1"))
    again = memories.answer(turn("blue elephants", turn_id="t1"))
    assert again == first
    # One miss only: the repeated turn did not count twice.
    second = only(memories.answer(turn("purple", turn_id="t2")))
    assert isinstance(second, HandoffAction)


def test_memories_forget_the_oldest_conversation_beyond_the_limit() -> None:
    memories = Memories(limit=2)
    for n in range(3):
        memories.answer(turn("hello", turn_id=f"t{n}", conversation_id=f"c{n}"))
    assert len(memories) == 2
    # c0 was forgotten: greeted again.
    assert only(memories.answer(turn("hello", turn_id="t9", conversation_id="c0"))).text.startswith(
        GREETING
    )
    memories.forget("c2")
    assert len(memories) == 1


# -- invariants -------------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "hi",
        "hello",
        "order status",
        "A-1001",
        "#123456",
        "refund",
        "thanks",
        "bye",
        "agent",
        "talk to a person",
        "blue",
        "elephants?",
        "4",
        "",
        "😀",
        "Ça va ?",
    ]
)
MESSAGE = st.one_of(
    st.lists(WORDS, min_size=1, max_size=3).map(" ".join),
    st.text(max_size=300),
)
STEP = st.one_of(MESSAGE.map(lambda text: ("message", text)), st.just(("handback", "")))


def valid_on_the_wire(actions: Sequence[BotAction]) -> bool:
    """The answer decodes as the HTTP protocol's answer (every limit checked)."""
    encoded = msgspec.json.encode(BotWebhookAnswer(actions=tuple(actions)))
    return _answer_decoder.decode(encoded).actions == tuple(actions)


def events_valid_on_the_wire(the_turn: BotTurn, actions: Sequence[BotAction]) -> bool:
    events = answer_events(the_turn, actions, now=1_700_000_001.0)
    return [BOT_EVENT_DECODER.decode(msgspec.json.encode(e)) for e in events] == events


def ends_the_bots_part(action: BotAction) -> bool:
    return isinstance(action, HandoffAction | ResolveAction)


def a_miss(action: BotAction) -> bool:
    return isinstance(action, ReplyAction) and action.quick_replies == MENU and not action.progress


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=12))
def test_every_answer_is_one_valid_action_and_never_two_misses_in_a_row(
    steps: list[tuple[str, str]],
) -> None:
    memory = NEW
    previous_miss = False
    for n, (kind, text) in enumerate(steps):
        the_turn = turn(text, turn_id=f"t{n}", handback=kind == "handback")
        actions, memory = respond(the_turn, memory)
        action = only(actions)
        assert valid_on_the_wire(actions)
        assert events_valid_on_the_wire(the_turn, actions)
        if isinstance(action, HandoffAction):
            assert action.handoff.reason in {
                HandoffReason.CUSTOMER_ASKED,
                HandoffReason.OUT_OF_SCOPE,
                HandoffReason.LOW_CONFIDENCE,
            }
        miss = a_miss(action) and "didn't get that" in action.text
        assert not (previous_miss and miss), steps[: n + 1]
        previous_miss = miss
        if ends_the_bots_part(action):
            memory, previous_miss = NEW, False


@settings(max_examples=100, deadline=None)
@given(st.lists(MESSAGE, min_size=1, max_size=8))
def test_the_same_conversation_gets_the_same_answers(texts: list[str]) -> None:
    assert talk(*texts) == talk(*texts)


HAND_OFFS = st.builds(
    handed_off,
    reason=st.sampled_from(HandoffReason),
    channel=st.sampled_from(Channel),
    position=st.none() | st.integers(min_value=0, max_value=10_000),
    expected_wait_seconds=st.none() | st.floats(min_value=0, max_value=7 * 86_400),
    opens_at=st.none()
    | st.floats(min_value=MONDAY_MORNING, max_value=MONDAY_MORNING + 14 * 86_400),
    continue_on=st.lists(st.sampled_from(Channel), max_size=4).map(tuple),
)


def one_reply_exactly_when_the_adapters_ask(event: ConversationHandedOff) -> bool:
    """The bot has something to say about each hand-off the adapters post, and only
    about those (the HTTP answer needs an action)."""
    return len(relay(event)) == (1 if relayable(event) else 0)


def a_short_reply(event: ConversationHandedOff) -> bool:
    return all(0 < len(action.text) < min(REPLY_TEXT_MAX, 300) for action in relay(event))


@settings(max_examples=300, deadline=None)
@given(HAND_OFFS)
def test_every_relay_is_one_valid_reply_when_someone_waits_and_the_same_each_time(
    event: ConversationHandedOff,
) -> None:
    assert one_reply_exactly_when_the_adapters_ask(event)
    assert a_short_reply(event)
    assert relay(event) == relay(event)
    if relay(event):
        assert valid_on_the_wire(relay(event))
        events = relay_events(event, relay(event), now=1_700_000_001.0)
        assert [BOT_EVENT_DECODER.decode(msgspec.json.encode(e)) for e in events] == events
