"""The fast path (rule 1 without the bookkeeping of a full call) decides exactly like the
general path: for random states and customer messages the fast path answers, the
general path (``router.engine.core.apply_general``) on a twin state gives equal effects
and leaves an equal state, which then goes on deciding alike. The fast path saves only
the conversation's activity (``SaveActivity``) where the general path saves its whole
record: that record is the conversation's previous one with the activity.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from router.engine import (
    ConversationRecord,
    ConversationStatus,
    DomainState,
    Effect,
    QueueMode,
    SaveActivity,
    SaveConversation,
    apply,
    conversation_record,
    new_state,
    next_deadline,
    snapshot,
    with_activity,
)
from router.engine.core import apply_general
from router.engine.messages import fast_path
from router.engine.state import Conversation
from schemas import Presence
from tests.engine.builders import DOMAIN, T0, agent, domain, examples, message
from tests.engine.test_properties import Step, capacities, op, policy_variant, resolve, setup, step

WINDOWS = (None, None, -5.0, 100.0, 5000.0)
"""Reply window of a follow-up message: none, or closing this long after ``now``."""

follow_up = st.tuples(
    st.just("follow-up"), st.integers(0, 7), st.sampled_from(WINDOWS), st.booleans()
)
operation = st.integers(0, 2).flatmap(lambda n: follow_up if n == 0 else op)
"""The property suite's operations, and (a third of the draws) follow-ups to the
conversations the fast path takes."""


def answered_by_fast_path(state: DomainState) -> list[Conversation]:
    """Open conversations the fast path takes a message for: assigned, owner online."""
    return sorted(
        (
            conversation
            for conversation in state.conversations.values()
            if conversation.status is ConversationStatus.ASSIGNED
            and conversation.owner is not None
            and conversation.owner.presence is Presence.ONLINE
        ),
        key=lambda conversation: conversation.conversation_id,
    )


def as_whole_record(effects: list[Effect], previous: ConversationRecord) -> list[Effect]:
    """The fast path's effects with its activity saved as the whole record would be."""
    whole: list[Effect] = []
    for effect in effects:
        if isinstance(effect, SaveActivity):
            assert effect.conversation_id == previous.conversation_id
            effect = SaveConversation(with_activity(previous, effect.activity))
        whole.append(effect)
    return whole


def internals(state: DomainState) -> object:
    """What a snapshot leaves out: the deadline and window heaps, each conversation's
    live heap entry, and the sequence behind tokens and versions."""
    return (
        state.deadlines,
        state.windows,
        state.agent_deadlines,
        {key: c.heap_due for key, c in sorted(state.conversations.items())},
        state.seq,
    )


def states_are_equal(fast: DomainState, general: DomainState) -> None:
    assert snapshot(general) == snapshot(fast)
    assert internals(general) == internals(fast)
    assert next_deadline(general) == next_deadline(fast)


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    release=st.booleans(),
    urgent=st.booleans(),
    capacities=capacities,
    operations=st.lists(operation, min_size=20, max_size=60),
)
def test_the_fast_path_and_the_general_path_have_equal_effects(
    mode: QueueMode,
    release: bool,
    urgent: bool,
    capacities: list[tuple[int, int, bool]],
    operations: list[tuple[object, ...]],
) -> None:
    policy = policy_variant(mode, release=release, urgent=urgent)
    fast = new_state(DOMAIN, policy)
    general = new_state(DOMAIN, policy)
    now = T0

    def both(item: Step) -> None:
        assert step(general, item) == step(fast, item)

    for item in setup(mode, capacities):
        both(item)
    answered = 0
    for operation in operations:
        if operation[0] == "advance":
            assert isinstance(operation[1], float)
            now += operation[1]
            both((None, now))
            continue
        if operation[0] != "follow-up":
            both(resolve(fast, operation, now))
            continue
        owned = answered_by_fast_path(fast)
        if not owned:
            continue
        index, window, named_twice = operation[1], operation[2], operation[3]
        assert isinstance(index, int)
        conversation = owned[index % len(owned)]
        follow = message(
            conversation.key,
            customer=conversation.customer_id,
            channel=conversation.channel,
            reply_window_ends_at=None if window is None else now + float(str(window)),
            # The provider's second identity, when it is the customer's own: nothing to link.
            other_identity=conversation.customer_id if named_twice else None,
        )
        previous = conversation_record(conversation)
        effects = fast_path(fast, follow, now)
        assert effects is not None, "the fast path did not answer"
        assert any(isinstance(effect, SaveActivity) for effect in effects)
        assert apply_general(general, follow, now) == as_whole_record(effects, previous)
        states_are_equal(fast, general)
        answered += 1
    event(f"fast path answered {min(answered, 5)}{'+' if answered >= 5 else ''} times")
    for _ in range(4):  # the twins go on deciding alike
        now += 1000
        both((None, now))
    states_are_equal(fast, general)


def test_apply_takes_the_fast_path_for_an_assigned_conversation_with_its_owner_online() -> None:
    """The property above compares something: a follow-up of an assigned conversation
    is answered by the fast path, and ``apply`` returns what it answers."""
    state = domain([agent("ann")])
    twin = domain([agent("ann")])
    opening = message("k")
    assert apply(state, opening, T0) == apply(twin, opening, T0)
    follow = message("k")
    answer = fast_path(state, follow, T0 + 1)
    assert answer is not None
    assert apply(twin, follow, T0 + 1) == answer
    assert any(isinstance(effect, SaveActivity) for effect in answer)


def test_a_second_identity_to_link_takes_the_general_path_once() -> None:
    state = domain([agent("ann")])
    apply(state, message("k", customer="phone:+14155550100"), T0)
    named = message("k", customer="phone:+14155550100", other_identity="whatsapp:US.1349")
    assert fast_path(state, named, T0 + 1) is None  # the general path links it
    apply(state, named, T0 + 1)
    assert state.customer_of("whatsapp:US.1349") == "phone:+14155550100"
    again = message("k", customer="phone:+14155550100", other_identity="whatsapp:US.1349")
    assert fast_path(state, again, T0 + 2) is not None
