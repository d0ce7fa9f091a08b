"""A conversation's routing context (priority, required skills, language, attributes), the
identity lookup's hint on a message, and snooze."""

from __future__ import annotations

from router.engine import (
    ConversationStatus,
    DomainPolicy,
    QueuePolicy,
    StepPolicy,
    apply,
    restore,
    snapshot,
    tick,
)
from router.engine.residency import customers_named
from schemas import (
    Channel,
    CommandRejected,
    ConversationSnoozed,
    ConversationUpdated,
    CustomerLinked,
    CustomerMerged,
    Presence,
)
from tests.engine.builders import (
    T0,
    agent,
    assigned_to,
    assignment,
    close,
    domain,
    emitted,
    message,
    presence,
    snoozed,
    updated,
)


def rejected(effects: object) -> list[str]:
    return [event.reason for event in emitted(effects, CommandRejected)]  # type: ignore[arg-type]


def one_step(wait: float | None = None, *, language_skill: bool = False) -> DomainPolicy:
    return DomainPolicy(
        default_queue="support",
        language_skill=language_skill,
        queues={"support": QueuePolicy(steps=(StepPolicy(name="anyone", wait=wait),))},
    )


# -- context -------------------------------------------------------------------------------


def test_a_priority_set_while_waiting_puts_the_conversation_first() -> None:
    state = domain([agent("ann", capacity={Channel.SMS: 1})], policy=one_step())
    busy = message("k0", customer="c0")
    assert assigned_to(apply(state, busy, T0)) == "ann"
    first, second = message("k1", customer="c1"), message("k2", customer="c2")
    apply(state, first, T0 + 1)
    apply(state, second, T0 + 2)
    effects = apply(state, updated(second.id, priority=10, attributes={"tier": "gold"}), T0 + 3)
    [event] = emitted(effects, ConversationUpdated)
    assert (event.priority, event.attributes) == (10, {"tier": "gold"})
    apply(state, close(busy.id, "ann"), T0 + 4)
    assert state.conversations[second.id].owner is state.agents["ann"]
    assert state.conversations[first.id].status is ConversationStatus.WAITING


def test_required_skills_wait_for_an_agent_who_has_them() -> None:
    state = domain(
        [agent("ann"), agent("bob", skills=["french"], presence=Presence.AWAY)], policy=one_step()
    )
    msg = message("k1", customer="new", skills=("french",))
    assert assigned_to(apply(state, msg, T0)) is None  # ann is free, but has no French
    effects = apply(state, presence("bob", Presence.ONLINE), T0 + 5)
    assert assignment(effects) == (msg.id, "bob", "queue")


def test_dropping_a_required_skill_lets_a_free_agent_take_it_at_once() -> None:
    state = domain([agent("ann")], policy=one_step())
    msg = message("k1", customer="new", skills=("french",))
    apply(state, msg, T0)
    effects = apply(state, updated(msg.id, skills=()), T0 + 1)
    assert assignment(effects) == (msg.id, "ann", "queue")


def test_a_language_is_a_required_skill_when_the_domain_says_so() -> None:
    state = domain(
        [agent("ann"), agent("bob", skills=["lang:fr"])], policy=one_step(language_skill=True)
    )
    msg = message("k1", customer="new", language="fr")
    assert assignment(apply(state, msg, T0)) == (msg.id, "bob", "queue")
    plain = domain([agent("ann"), agent("bob")], policy=one_step())
    other = message("k2", customer="new", language="fr")
    assert assigned_to(apply(plain, other, T0)) == "ann"


def test_the_preferred_agent_without_the_required_skill_is_not_waited_for() -> None:
    state = domain([agent("ann"), agent("bob", skills=["french"])], policy=one_step())
    first = message("k1", customer="c1")
    assert assigned_to(apply(state, first, T0)) == "ann"
    apply(state, close(first.id, "ann"), T0 + 1)
    again = message("k2", customer="c1", skills=("french",))
    assert assignment(apply(state, again, T0 + 2)) == (again.id, "bob", "fallback")


def test_only_the_owner_or_an_admin_updates_a_conversation() -> None:
    state = domain([agent("ann"), agent("bob")], policy=one_step())
    msg = message("k1", customer="c1")
    assert assigned_to(apply(state, msg, T0)) == "ann"
    assert rejected(apply(state, updated(msg.id, "bob", priority=3), T0)) == ["not_owner"]
    assert emitted(apply(state, updated(msg.id, "ann", language="de"), T0), ConversationUpdated)
    assert state.conversations[msg.id].language == "de"
    apply(state, updated(msg.id, language=""), T0)
    assert state.conversations[msg.id].language is None


def test_the_context_survives_a_restore() -> None:
    state = domain([agent("ann")], policy=one_step())
    msg = message("k1", customer="c1", skills=("french",), attributes={"order": "1234"})
    apply(state, msg, T0)
    agents, conversations, customers = snapshot(state)
    revived = restore(state.domain, state.policy, agents, conversations, customers)
    conversation = revived.conversations[msg.id]
    assert (conversation.skills, conversation.attributes) == (("french",), {"order": "1234"})
    assert conversation.required == frozenset({"french"})


# -- the identity lookup's hint ----------------------------------------------------------------


def test_a_lookup_hint_links_the_identity_before_routing() -> None:
    state = domain([agent("ann"), agent("bob")], policy=one_step())
    first = message("k1", customer="external:crm-42")
    assert assigned_to(apply(state, first, T0)) == "ann"
    apply(state, close(first.id, "ann"), T0 + 1)
    hinted = message("k2", customer="sms:+14155550100", known_customer_id="external:crm-42")
    effects = apply(state, hinted, T0 + 2)
    assert assignment(effects) == (hinted.id, "ann", "preferred")
    [link] = emitted(effects, CustomerLinked)
    assert (link.customer_id, link.identity, link.source) == (
        "external:crm-42",
        "sms:+14155550100",
        "lookup",
    )
    # a second hint naming someone else does not move a linked identity
    apply(state, close(hinted.id, "ann"), T0 + 3)
    other = message("k3", customer="sms:+14155550100", known_customer_id="external:crm-7")
    apply(state, other, T0 + 4)
    assert state.conversations[other.id].customer_id == "external:crm-42"


# -- a second identity the provider gives the sender (WhatsApp's business-scoped user id) ---

PHONE, BSUID = "phone:+14155550100", "whatsapp:US.13491208655302741918"


def test_the_providers_second_identity_is_linked_and_finds_the_customer_alone() -> None:
    state = domain([agent("ann"), agent("bob")], policy=one_step())
    first = message("k-phone", customer=PHONE, other_identity=BSUID)
    effects = apply(state, first, T0)
    assert assigned_to(effects) == "ann"
    [link] = emitted(effects, CustomerLinked)
    assert (link.customer_id, link.identity, link.source) == (PHONE, BSUID, "provider")
    apply(state, close(first.id, "ann"), T0 + 1)
    # The number hidden behind a username: the same person, the agent who served them.
    alone = message("k-bsuid", customer=BSUID)
    assert assignment(apply(state, alone, T0 + 2)) == (alone.id, "ann", "preferred")
    assert state.conversations[alone.id].customer_id == PHONE
    # Named again beside the number, it is linked already: nothing more happens.
    again = message("k-phone", customer=PHONE, other_identity=BSUID)
    assert emitted(apply(state, again, T0 + 3), CustomerLinked) == []


def test_a_second_identity_with_a_history_of_its_own_is_merged_into_the_customer() -> None:
    state = domain([agent("ann"), agent("bob")], policy=one_step())
    alone = message("k-bsuid", customer=BSUID)
    assert assigned_to(apply(state, alone, T0)) == "ann"
    # Later the number comes too: the profile begun under the user id joins the number's.
    both = message("k-phone", customer=PHONE, other_identity=BSUID)
    effects = apply(state, both, T0 + 1)
    [merged] = emitted(effects, CustomerMerged)
    assert (merged.customer_id, merged.merged_customer_id) == (PHONE, BSUID)
    assert state.conversations[alone.id].customer_id == PHONE
    assert assignment(effects) == (both.id, "ann", "preferred")


def test_a_batch_loads_the_customer_of_the_second_identity_too() -> None:
    # The router reads the customers a batch names before the engine applies it.
    both = message("k-phone", customer=PHONE, other_identity=BSUID)
    assert customers_named(both) == [PHONE, BSUID]


def test_a_second_identity_linked_to_someone_else_stays_theirs() -> None:
    state = domain([agent("ann")], policy=one_step())
    apply(state, message("k1", customer="external:crm-7", known_customer_id=None), T0)
    apply(state, message("k2", customer=BSUID, known_customer_id="external:crm-7"), T0)
    both = message("k-phone", customer=PHONE, other_identity=BSUID)
    assert emitted(apply(state, both, T0 + 1), CustomerLinked) == []
    assert state.customer_of(BSUID) == "external:crm-7"
    assert state.conversations[both.id].customer_id == PHONE


# -- snooze ---------------------------------------------------------------------------------


def test_a_snoozed_conversation_frees_its_slot_and_comes_back_to_its_owner() -> None:
    state = domain([agent("ann", capacity={Channel.SMS: 1})], policy=one_step())
    msg = message("k1", customer="c1")
    assert assigned_to(apply(state, msg, T0)) == "ann"
    effects = apply(state, snoozed(msg.id, T0 + 3600, "ann"), T0 + 10)
    [event] = emitted(effects, ConversationSnoozed)
    assert (event.agent_id, event.until) == ("ann", T0 + 3600)
    conversation = state.conversations[msg.id]
    assert conversation.status is ConversationStatus.IDLE
    other = message("k2", customer="c2")
    assert assigned_to(apply(state, other, T0 + 20)) == "ann"  # the freed slot
    apply(state, close(other.id, "ann"), T0 + 30)
    effects = tick(state, T0 + 3600)
    assert [e.until for e in emitted(effects, ConversationSnoozed)] == [None]
    assert conversation.status is ConversationStatus.ASSIGNED
    assert conversation.owner is state.agents["ann"]


def test_the_customer_writing_ends_a_snooze() -> None:
    state = domain([agent("ann")], policy=one_step())
    msg = message("k1", customer="c1")
    apply(state, msg, T0)
    apply(state, snoozed(msg.id, T0 + 3600), T0 + 10)
    effects = apply(state, message("k1", customer="c1"), T0 + 20)
    assert [e.until for e in emitted(effects, ConversationSnoozed)] == [None]
    conversation = state.conversations[msg.id]
    assert (conversation.status, conversation.snoozed_until) == (ConversationStatus.ASSIGNED, None)


def test_a_snooze_needs_an_owned_conversation_and_a_future_time() -> None:
    state = domain([agent("ann"), agent("bob")], policy=one_step())
    msg = message("k1", customer="c1")
    apply(state, msg, T0)
    assert rejected(apply(state, snoozed(msg.id, T0 + 60, "bob"), T0)) == ["not_owner"]
    assert rejected(apply(state, snoozed(msg.id, T0 - 1, "ann"), T0)) == ["until_not_in_future"]
    far = T0 + 365 * 24 * 3600
    assert rejected(apply(state, snoozed(msg.id, far, "ann"), T0)) == ["until_too_far"]
    waiting = message("k2", customer="c2")
    busy = domain([agent("cy", capacity={Channel.SMS: 0})], policy=one_step())
    apply(busy, waiting, T0)
    assert rejected(apply(busy, snoozed(waiting.id, T0 + 60), T0)) == ["not_owned"]


def test_a_snoozed_conversation_does_not_close_for_inactivity() -> None:
    policy = DomainPolicy(
        default_queue="support",
        queues={"support": QueuePolicy(steps=(StepPolicy(name="anyone"),))},
    )
    state = domain([agent("ann")], policy=policy)
    msg = message("k1", customer="c1")
    apply(state, msg, T0)
    until = T0 + 10 * 24 * 3600  # beyond any inactivity close
    apply(state, snoozed(msg.id, until), T0 + 1)
    tick(state, until - 1)
    assert state.conversations[msg.id].snoozed_until == until
    tick(state, until)
    assert state.conversations[msg.id].status is ConversationStatus.ASSIGNED
