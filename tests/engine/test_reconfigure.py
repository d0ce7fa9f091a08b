"""A new configuration version applied to a live domain (``reconfigure``).

Under random interleavings: reconfiguring with the same policy changes no decision;
reconfiguring with another one decides exactly like a takeover under that policy (the
state restored from the persisted snapshots), keeps every routing invariant, and keeps
open conversations in their queue and step where those still exist.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.engine import (
    ConversationStatus,
    DomainPolicy,
    InactivityPolicy,
    QueueMode,
    QueuePolicy,
    StepPolicy,
    apply,
    new_state,
    next_deadline,
    reconfigure,
    snapshot,
    tick,
)
from schemas import Channel, ConversationAssigned, Presence
from tests.engine.builders import DOMAIN, T0, emitted, examples, message, presence, registered
from tests.engine.test_properties import (
    Step,
    Store,
    capacities,
    loads,
    loads_equal_holdings,
    nobody_newly_over_capacity,
    one_owner_and_a_way_to_people,
    op,
    policy_for,
    resolve,
    setup,
    step,
)


def other_policy(mode: QueueMode, variant: int) -> DomainPolicy:
    """``policy_for`` changed the ways a new version may change it."""
    base = policy_for(mode)
    support = base.queues["support"]
    bots = base.bots
    if variant == 0:  # the ladder's waits change
        steps = (
            StepPolicy(name="skilled", wait=10),
            StepPolicy(name="anyone", agents_from=("*",), skills=(), wait=30),
        )
        queues = {**base.queues, "support": QueuePolicy(**{**_fields(support), "steps": steps})}
    elif variant == 1:  # a queue goes away: its conversations fall to the default queue
        queues = {"support": support}
    elif variant == 2:  # a step goes away and a wider one comes
        steps = (StepPolicy(name="everyone", agents_from=("*",), skills=(), wait=100),)
        queues = {**base.queues, "support": QueuePolicy(**{**_fields(support), "steps": steps})}
    elif variant == 4:  # the bot goes away: its conversations are handed to people
        billing = QueuePolicy(**{**_fields(base.queues["billing"]), "bot": None})
        queues = {**base.queues, "billing": billing}
        bots = {}
    else:  # the hand-out mode flips
        flipped = QueueMode.ASSIGN if mode is QueueMode.OFFER else QueueMode.OFFER
        queues = {
            name: QueuePolicy(**{**_fields(queue), "mode": flipped})
            for name, queue in base.queues.items()
        }
    return DomainPolicy(
        default_queue="support",
        inactivity=base.inactivity,
        away_after_missed_offers=base.away_after_missed_offers,
        queues=queues,
        bots=bots,
    )


def _fields(queue: QueuePolicy) -> dict[str, object]:
    return {name: getattr(queue, name) for name in queue.__struct_fields__}


@settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    capacities=capacities,
    operations=st.lists(op, min_size=10, max_size=40),
    reconfigure_at=st.sets(st.integers(0, 39), max_size=6),
)
def test_the_same_policy_again_changes_no_decision(
    mode: QueueMode,
    capacities: list[tuple[int, int, bool]],
    operations: list[tuple[object, ...]],
    reconfigure_at: set[int],
) -> None:
    policy = policy_for(mode)
    live = new_state(DOMAIN, policy)
    reloaded = new_state(DOMAIN, policy)
    now = T0
    items: list[Step] = list(setup(mode, capacities))
    for item in items:
        assert step(reloaded, item) == step(live, item)
    for index, operation in enumerate(operations):
        if index in reconfigure_at:
            reloaded = reconfigure(reloaded, policy, now)
            # its first tick: nobody could take anything the live state left waiting
            assert tick(reloaded, now) == tick(live, now)
        if operation[0] == "advance":
            assert isinstance(operation[1], float)
            now += operation[1]
            item: Step = (None, now)
        else:
            item = resolve(live, operation, now)
        assert step(reloaded, item) == step(live, item)
    assert snapshot(reloaded) == snapshot(live)


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    capacities=capacities,
    before=st.lists(op, min_size=5, max_size=30),
    after=st.lists(op, min_size=5, max_size=30),
    variant=st.integers(0, 4),
)
def test_another_policy_decides_like_a_takeover_under_it(
    mode: QueueMode,
    capacities: list[tuple[int, int, bool]],
    before: list[tuple[object, ...]],
    after: list[tuple[object, ...]],
    variant: int,
) -> None:
    old, new = policy_for(mode), other_policy(mode, variant)
    state = new_state(DOMAIN, old)
    store = Store()
    now = T0

    def run(operations: list[tuple[object, ...]]) -> None:
        nonlocal now
        for operation in operations:
            if operation[0] == "advance":
                assert isinstance(operation[1], float)
                now += operation[1]
                item: Step = (None, now)
            else:
                item = resolve(state, operation, now)
            before_loads = loads(state)
            effects = step(state, item)
            store.save(effects)
            loads_equal_holdings(state)
            nobody_newly_over_capacity(state, before_loads)
            one_owner_and_a_way_to_people(state, item[1])

    for item in setup(mode, capacities):
        store.save(step(state, item))
    run(before)
    queues_before = {
        c.conversation_id: (c.queue.name, c.step_name) for c in state.conversations.values()
    }
    deadlines_before = {c.conversation_id: c.deadline for c in state.conversations.values()}
    state = reconfigure(state, new, now)
    taken_over = store.restore(new)
    for conversation in state.conversations.values():
        queue, step_name = queues_before[conversation.conversation_id]
        expected_queue = queue if queue in new.queues else new.default_queue
        assert conversation.queue.name == expected_queue
        if expected_queue == queue and step_name in {s.name for s in new.queues[queue].steps}:
            assert conversation.step_name == step_name
        # the running wait keeps its deadline: a changed step applies from the next one
        assert conversation.deadline == deadlines_before[conversation.conversation_id]
    # the first tick hands waiting work to agents the new pools admit, like a takeover
    first = tick(state, now)
    assert first == tick(taken_over, now)
    store.save(first)
    loads_equal_holdings(state)
    run(after)
    assert snapshot(state) == snapshot(store.restore(new))


def test_a_wider_step_hands_waiting_work_to_a_free_agent_at_once() -> None:
    narrow = DomainPolicy(
        queues={"default": QueuePolicy(steps=(StepPolicy(name="experts", skills=("expert",)),))}
    )
    wide = DomainPolicy(
        queues={"default": QueuePolicy(steps=(StepPolicy(name="anyone", agents_from=("*",)),))}
    )
    state = new_state(DOMAIN, narrow)
    apply(state, registered("ann", capacity={Channel.SMS: 1}), T0)
    apply(state, presence("ann", Presence.ONLINE), T0)
    msg = message("k1", channel=Channel.SMS)
    assert not emitted(apply(state, msg, T0 + 1), ConversationAssigned)
    state = reconfigure(state, wide, T0 + 2)
    assert next_deadline(state) == T0 + 2
    (assigned,) = emitted(tick(state, T0 + 2), ConversationAssigned)
    assert (assigned.agent_id, assigned.step) == ("ann", "anyone")  # "experts" is gone
    assert state.conversations[assigned.conversation_id].status is ConversationStatus.ASSIGNED


def test_a_removed_queue_sends_its_conversations_to_the_default_queue() -> None:
    policy = DomainPolicy(
        queues={
            "default": QueuePolicy(),
            "vip": QueuePolicy(steps=(StepPolicy(name="gold", wait=600),)),
        },
        inactivity=InactivityPolicy(),
    )
    state = new_state(DOMAIN, policy)
    msg = message("k1", channel=Channel.SMS, queue="vip")
    apply(state, msg, T0)
    (conversation,) = state.conversations.values()
    assert (conversation.queue.name, conversation.step_name) == ("vip", "gold")
    state = reconfigure(state, DomainPolicy(), T0 + 1)
    (conversation,) = state.conversations.values()
    # the step left with its queue: the ladder starts over in the default queue
    assert (conversation.queue.name, conversation.step_name) == ("default", "queue")
