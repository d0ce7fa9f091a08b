"""Queue capacity rules (``max_per_agent``): routing gives an agent no more of a queue's
conversations per channel than the queue allows, within the agent's own capacity."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.engine import (
    ConversationStatus,
    DomainPolicy,
    DomainState,
    QueueMode,
    QueuePolicy,
    StepPolicy,
    apply,
    new_state,
    snapshot,
)
from schemas import (
    Channel,
    ConversationAssigned,
    ConversationOffered,
    ConversationQueued,
    Presence,
    Strategy,
)
from tests.engine.builders import (
    DOMAIN,
    T0,
    close,
    emitted,
    examples,
    message,
    owner_set,
    presence,
    registered,
)
from tests.engine.test_properties import (
    Step,
    Store,
    capacities,
    loads_equal_holdings,
    op,
    policy_for,
    resolve,
    setup,
    step,
)

ROUTED = {Strategy.PREFERRED, Strategy.FALLBACK, Strategy.QUEUE}


def limited(mode: QueueMode) -> DomainPolicy:
    """``policy_for`` with a capacity rule on ``support``: one per agent and channel."""
    base = policy_for(mode)
    support = base.queues["support"]
    fields = {name: getattr(support, name) for name in support.__struct_fields__}
    queues = {
        **base.queues,
        "support": QueuePolicy(**{**fields, "max_per_agent": {Channel.SMS: 1, Channel.WEBCHAT: 1}}),
    }
    return DomainPolicy(
        default_queue=base.default_queue,
        inactivity=base.inactivity,
        away_after_missed_offers=base.away_after_missed_offers,
        queues=queues,
        bots=base.bots,
    )


def held_by_queue(state: DomainState) -> dict[tuple[str, str, Channel], int]:
    _, conversations, _ = snapshot(state)
    held: dict[tuple[str, str, Channel], int] = {}
    for record in conversations:
        holder = (
            record.owner_agent_id
            if record.status is ConversationStatus.ASSIGNED
            else record.offered_to
            if record.status is ConversationStatus.OFFERED
            else None
        )
        if holder is not None:
            key = (holder, record.queue, record.channel)
            held[key] = held.get(key, 0) + 1
    return held


def queue_loads_equal_holdings(state: DomainState) -> None:
    held = held_by_queue(state)
    for agent in state.agents.values():
        for (queue, channel), load in agent.queue_load.items():
            assert load == held.get((agent.agent_id, queue, channel), 0), (agent.agent_id, queue)
    counted = {
        (agent.agent_id, queue, channel)
        for agent in state.agents.values()
        for (queue, channel) in agent.queue_load
    }
    assert set(held) <= counted


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    capacities=capacities,
    operations=st.lists(op, min_size=15, max_size=50),
)
def test_routing_never_gives_an_agent_more_of_a_queue_than_it_allows(
    mode: QueueMode, capacities: list[tuple[int, int, bool]], operations: list[tuple[object, ...]]
) -> None:
    policy = limited(mode)
    state = new_state(DOMAIN, policy)
    store = Store()
    now = T0

    def run_step(item: Step) -> None:
        revived = store.restore(policy)
        effects = step(state, item)
        assert step(revived, item) == effects  # a takeover counts the same holdings
        store.save(effects)
        loads_equal_holdings(state)
        queue_loads_equal_holdings(state)
        held = held_by_queue(state)
        for event in emitted(effects, ConversationAssigned) + emitted(effects, ConversationOffered):
            if event.strategy in ROUTED and event.queue == "support":
                assert held.get((event.agent_id, "support", event.channel), 0) <= 1, event

    for item in setup(mode, capacities):
        run_step(item)
    for operation in operations:
        if operation[0] == "advance":
            assert isinstance(operation[1], float)
            now += operation[1]
            run_step((None, now))
        else:
            run_step(resolve(state, operation, now))


def _vip_domain() -> DomainState:
    policy = DomainPolicy(
        queues={
            "default": QueuePolicy(),
            "vip": QueuePolicy(steps=(StepPolicy(name="gold"),), max_per_agent={Channel.SMS: 1}),
        }
    )
    state = new_state(DOMAIN, policy)
    apply(state, registered("ann", capacity={Channel.SMS: 3}), T0)
    apply(state, presence("ann", Presence.ONLINE), T0)
    return state


def test_the_second_conversation_of_a_limited_queue_waits_for_the_first() -> None:
    state = _vip_domain()
    (first,) = emitted(
        apply(state, message("k1", customer="c1", queue="vip"), T0), ConversationAssigned
    )
    second = message("k2", customer="c2", queue="vip")
    effects = apply(state, second, T0 + 1)
    assert not emitted(effects, ConversationAssigned)
    assert [e.step for e in emitted(effects, ConversationQueued)] == ["gold"]
    # the agent's other slots still take other queues' work
    (other,) = emitted(apply(state, message("k3", customer="c3"), T0 + 2), ConversationAssigned)
    assert other.agent_id == "ann"
    # the first one closes: the second is hers at once
    (taken,) = emitted(
        apply(state, close(first.conversation_id, "ann"), T0 + 3), ConversationAssigned
    )
    assert (taken.agent_id, taken.queue) == ("ann", "vip")


def test_a_preferred_agent_at_the_limit_is_waited_for() -> None:
    state = _vip_domain()
    apply(state, message("k1", customer="c1", queue="vip"), T0)
    apply(state, owner_set("c2", "ann"), T0)
    effects = apply(state, message("k2", customer="c2", queue="vip"), T0 + 1)
    assert [(e.step, e.preferred_agent_id) for e in emitted(effects, ConversationQueued)] == [
        ("preferred", "ann")
    ]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="max_per_agent"):
        msgspec.convert({"max_per_agent": {"sms": 0}}, QueuePolicy)
