"""One customer across channels (link, unlink, merge), declined offers, agents who leave."""

from __future__ import annotations

from router.engine import (
    ConversationStatus,
    DropAgent,
    DropCustomer,
    QueueMode,
    SaveAssignment,
    SaveIdentity,
    apply,
    identity_links,
    restore,
    snapshot,
    tick,
)
from schemas import (
    Channel,
    CommandCompleted,
    CommandRejected,
    ConversationFallback,
    ConversationOffered,
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
    declined,
    domain,
    emitted,
    identity_changed,
    ladder_policy,
    linked,
    merged,
    message,
    owner_set,
    presence,
    removed,
    unlinked,
)

SMS = "sms:+14155550100"
EMAIL = "email:ann@example.com"
CHAT = "user:42"
CHANNELS = {Channel.SMS: 2, Channel.EMAIL: 5, Channel.WEBCHAT: 2, Channel.WHATSAPP: 2}


def rejected(effects: object) -> list[str]:
    return [event.reason for event in emitted(effects, CommandRejected)]  # type: ignore[arg-type]


# -- identity -----------------------------------------------------------------------------


def test_a_linked_email_reaches_the_agent_who_served_the_customer_by_sms() -> None:
    state = domain([agent("ann", capacity=CHANNELS), agent("bob", capacity=CHANNELS)])
    first = message("sms-thread", customer=SMS, channel=Channel.SMS)
    assert assigned_to(apply(state, first, T0)) == "ann"
    apply(state, close(first.id, "ann"), T0 + 60)
    effects = apply(state, linked(SMS, EMAIL), T0 + 61)
    assert [e.identity for e in emitted(effects, CustomerLinked)] == [EMAIL]
    assert emitted(effects, CommandCompleted)
    assert [e.record.customer_id for e in effects if isinstance(e, SaveIdentity)] == [SMS]
    mail = message("mail-thread", customer=EMAIL, channel=Channel.EMAIL)
    effects = apply(state, mail, T0 + 120)
    # bob is the less busy one, but the person is ann's customer
    assert assignment(effects) == (mail.id, "ann", "preferred")
    assert state.conversations[mail.id].customer_id == SMS


def test_linking_an_identity_with_history_merges_the_two_profiles() -> None:
    state = domain([agent("ann", capacity=CHANNELS), agent("bob", capacity=CHANNELS)])
    sms = message("sms-thread", customer=SMS, channel=Channel.SMS)
    assert assigned_to(apply(state, sms, T0)) == "ann"
    apply(state, close(sms.id, "ann"), T0 + 10)
    apply(state, owner_set(CHAT, "bob"), T0 + 15)
    chat = message("chat-thread", customer=CHAT, channel=Channel.WEBCHAT)
    assert assigned_to(apply(state, chat, T0 + 20)) == "bob"
    effects = apply(state, linked(SMS, CHAT), T0 + 30)
    merge = emitted(effects, CustomerMerged)
    assert [(m.customer_id, m.merged_customer_id) for m in merge] == [(SMS, CHAT)]
    assert merge[0].conversation_ids == (chat.id,)
    assert DropCustomer(CHAT) in effects
    assert state.conversations[chat.id].customer_id == SMS
    # the more recent handler is the last agent of the merged person; the surviving
    # profile had no explicit owner, so the merged one's is kept
    assert state.customers[SMS].last_agent_id == "bob"
    assert state.customers[SMS].owner_agent_id == "bob"
    assert CHAT not in state.customers


def test_a_merge_keeps_the_surviving_owner_and_is_idempotent() -> None:
    state = domain([agent("ann", capacity=CHANNELS), agent("bob", capacity=CHANNELS)])
    apply(state, owner_set(SMS, "ann"), T0)
    apply(state, owner_set(EMAIL, "bob"), T0)
    apply(state, linked(EMAIL, CHAT), T0)
    first = apply(state, merged(SMS, EMAIL), T0 + 1)
    assert emitted(first, CustomerMerged)[0].identities == (EMAIL, CHAT)
    assert state.customers[SMS].owner_agent_id == "ann"
    assert {i: link.customer_id for i, link in state.identities.items()} == {
        CHAT: SMS,
        EMAIL: SMS,
    }
    again = apply(state, merged(EMAIL, CHAT), T0 + 2)  # both are the same person now
    assert emitted(again, CommandCompleted)
    assert not emitted(again, CustomerMerged)
    # an explicit owner set through any identity is the person's
    apply(state, owner_set(CHAT, "bob"), T0 + 3)
    assert state.customers[SMS].owner_agent_id == "bob"


def test_an_identity_of_another_customer_is_not_taken_silently() -> None:
    state = domain([agent("ann")])
    apply(state, linked(SMS, EMAIL), T0)
    effects = apply(state, linked(CHAT, EMAIL), T0 + 1)
    assert rejected(effects) == ["identity_linked_to_another_customer"]
    assert state.identities[EMAIL].customer_id == SMS
    assert rejected(apply(state, unlinked(CHAT, EMAIL), T0 + 2)) == [
        "identity_linked_to_another_customer"
    ]
    assert rejected(apply(state, unlinked(SMS, SMS), T0 + 3)) == ["primary_identity"]


def test_an_unlinked_identity_starts_a_profile_of_its_own() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    apply(state, linked(SMS, EMAIL), T0)
    effects = apply(state, unlinked(SMS, EMAIL), T0 + 1)
    assert SaveIdentity(EMAIL, None) in effects
    assert [e.linked for e in emitted(effects, CustomerLinked)] == [False]
    assert emitted(apply(state, unlinked(SMS, EMAIL), T0 + 2), CommandCompleted)  # idempotent
    mail = message("mail-thread", customer=EMAIL, channel=Channel.EMAIL)
    apply(state, mail, T0 + 3)
    assert state.conversations[mail.id].customer_id == EMAIL


def test_identity_links_survive_a_restore() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    apply(state, linked(SMS, EMAIL), T0)
    apply(state, linked(SMS, CHAT), T0)
    agents, conversations, customers = snapshot(state)
    revived = restore(
        state.domain, state.policy, agents, conversations, customers, identity_links(state)
    )
    assert identity_links(revived) == identity_links(state)
    assert revived.customers[SMS].identities == [EMAIL, CHAT]
    assert revived.customer_of(CHAT) == SMS


# -- a provider's notice of a new address -------------------------------------------------

OLD_NUMBER = "whatsapp:+16505551234"
NEW_NUMBER = "whatsapp:+12195555358"


def test_a_customers_new_number_reaches_the_agent_who_served_them() -> None:
    state = domain([agent("ann", capacity=CHANNELS), agent("bob", capacity=CHANNELS)])
    first = message("old-thread", customer=OLD_NUMBER, channel=Channel.WHATSAPP)
    assert assigned_to(apply(state, first, T0)) == "ann"
    apply(state, close(first.id, "ann"), T0 + 60)
    effects = apply(state, identity_changed(OLD_NUMBER, NEW_NUMBER), T0 + 61)
    [link] = emitted(effects, CustomerLinked)
    assert (link.customer_id, link.identity, link.linked, link.source) == (
        OLD_NUMBER,
        NEW_NUMBER,
        True,
        "provider",
    )
    assert [e.record.customer_id for e in effects if isinstance(e, SaveIdentity)] == [OLD_NUMBER]
    assert not emitted(effects, CommandCompleted)  # a report, not a command
    later = message("new-thread", customer=NEW_NUMBER, channel=Channel.WHATSAPP)
    effects = apply(state, later, T0 + 120)
    # bob is the less busy one, but the person is ann's customer
    assert assignment(effects) == (later.id, "ann", "preferred")
    assert state.conversations[later.id].customer_id == OLD_NUMBER


def test_a_notice_of_a_linked_customers_address_links_to_their_profile() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    apply(state, linked(SMS, OLD_NUMBER), T0)
    effects = apply(state, identity_changed(OLD_NUMBER, NEW_NUMBER), T0 + 1)
    assert [(e.customer_id, e.identity) for e in emitted(effects, CustomerLinked)] == [
        (SMS, NEW_NUMBER)
    ]
    assert state.customer_of(NEW_NUMBER) == SMS
    # Meta's retry of the notice changes nothing more.
    assert apply(state, identity_changed(OLD_NUMBER, NEW_NUMBER), T0 + 2) == []


def test_a_notice_naming_the_customers_own_profile_changes_nothing() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    apply(state, linked(NEW_NUMBER, OLD_NUMBER), T0)
    assert apply(state, identity_changed(OLD_NUMBER, NEW_NUMBER), T0 + 1) == []
    assert apply(state, identity_changed(NEW_NUMBER, NEW_NUMBER), T0 + 2) == []
    assert NEW_NUMBER not in state.identities


def test_a_new_address_linked_to_someone_else_stays_theirs() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    apply(state, linked(SMS, NEW_NUMBER), T0)
    assert apply(state, identity_changed(OLD_NUMBER, NEW_NUMBER), T0 + 1) == []
    assert state.customer_of(NEW_NUMBER) == SMS


def test_a_new_address_with_a_history_of_its_own_is_not_merged() -> None:
    state = domain([agent("ann", capacity=CHANNELS), agent("bob", capacity=CHANNELS)])
    old = message("old-thread", customer=OLD_NUMBER, channel=Channel.WHATSAPP)
    assert assigned_to(apply(state, old, T0)) == "ann"
    # The number served someone else before it was this customer's.
    earlier = message("earlier-thread", customer=NEW_NUMBER, channel=Channel.WHATSAPP)
    assert assigned_to(apply(state, earlier, T0 + 1)) == "bob"
    apply(state, close(earlier.id, "bob"), T0 + 2)
    assert apply(state, identity_changed(OLD_NUMBER, NEW_NUMBER), T0 + 3) == []
    assert state.customer_of(NEW_NUMBER) == NEW_NUMBER
    assert state.customers[NEW_NUMBER].last_agent_id == "bob"
    assert NEW_NUMBER not in state.identities


# -- declined offers ---------------------------------------------------------------------


def test_a_declined_offer_moves_on_at_once_and_is_not_a_miss() -> None:
    policy = ladder_policy(mode=QueueMode.OFFER, away_after_missed_offers=1)
    state = domain(
        [agent("ann", skills=["english"]), agent("bob", skills=["english"])], policy=policy
    )
    msg = message("k1", customer="new-customer")
    offered = emitted(apply(state, msg, T0), ConversationOffered)
    assert [o.agent_id for o in offered] == ["ann"]
    effects = apply(state, declined(msg.id, "ann", "on_a_call"), T0 + 2)
    assert [o.agent_id for o in emitted(effects, ConversationOffered)] == ["bob"]
    assert emitted(effects, CommandCompleted)
    ended = [e.record for e in effects if isinstance(e, SaveAssignment)]
    assert [r.end_reason for r in ended if r.agent_id == "ann"] == ["declined:on_a_call"]
    ann = state.agents["ann"]
    assert (ann.missed_offers, ann.presence) == (0, Presence.ONLINE)
    assert state.conversations[msg.id].passed_over == {"ann": "declined"}


def test_once_everyone_at_a_step_that_never_ends_declined_a_new_round_starts() -> None:
    policy = ladder_policy(mode=QueueMode.OFFER, skilled_wait=None)
    state = domain(
        [agent("ann", skills=["english"]), agent("bob", skills=["english"])], policy=policy
    )
    msg = message("k1", customer="new-customer")
    apply(state, msg, T0)
    apply(state, declined(msg.id, "ann"), T0 + 1)
    effects = apply(state, declined(msg.id, "bob"), T0 + 2)
    assert [o.agent_id for o in emitted(effects, ConversationOffered)] == ["ann"]
    assert state.conversations[msg.id].passed_over is None


def test_agents_who_cannot_take_it_now_do_not_hold_the_new_round() -> None:
    """An agent of the pool who serves only email, or who is offline, is no one the
    conversation waits for: once everyone who could take it declined, a new round."""
    policy = ladder_policy(mode=QueueMode.OFFER, skilled_wait=None)
    state = domain(
        [
            agent("ann", skills=["english"]),
            agent("eve", skills=["english"], capacity={Channel.EMAIL: 3}),
            agent("olga", skills=["english"], presence=Presence.OFFLINE),
        ],
        policy=policy,
    )
    msg = message("k1", customer="new-customer")
    apply(state, msg, T0)
    effects = apply(state, declined(msg.id, "ann"), T0 + 1)
    assert [o.agent_id for o in emitted(effects, ConversationOffered)] == ["ann"]
    assert state.conversations[msg.id].passed_over is None


def test_only_the_agent_offered_a_conversation_may_decline_it() -> None:
    policy = ladder_policy(mode=QueueMode.OFFER)
    state = domain(
        [agent("ann", skills=["english"]), agent("bob", skills=["english"])], policy=policy
    )
    msg = message("k1", customer="new-customer")
    apply(state, msg, T0)
    assert rejected(apply(state, declined(msg.id, "bob"), T0 + 1)) == ["not_offered_to_agent"]
    assert rejected(apply(state, declined("nope", "ann"), T0 + 1)) == ["unknown_conversation"]
    assert state.conversations[msg.id].offered_to is state.agents["ann"]


# -- agents who leave ----------------------------------------------------------------------


def test_a_removed_agents_customer_is_routed_to_the_pool_at_once() -> None:
    state = domain([agent("ann"), agent("bob")])
    first = message("k1")
    assert assigned_to(apply(state, first, T0)) == "ann"
    apply(state, close(first.id, "ann"), T0 + 5)
    effects = apply(state, removed("ann"), T0 + 10)
    assert DropAgent("ann") in effects
    assert "ann" not in state.agents
    # without the removal this would wait minutes for ann (her preferred hold)
    second = message("k2")
    assert assignment(apply(state, second, T0 + 20)) == (second.id, "bob", "queue")


def test_a_removed_owner_skips_to_the_next_known_agent() -> None:
    state = domain([agent("ann"), agent("bob"), agent("cy")])
    first = message("k1")
    assert assigned_to(apply(state, first, T0)) == "ann"
    apply(state, close(first.id, "ann"), T0 + 1)
    apply(state, owner_set("cust-1", "bob"), T0 + 2)
    apply(state, removed("bob"), T0 + 3)
    again = message("k2")
    assert assignment(apply(state, again, T0 + 4)) == (again.id, "ann", "preferred")


def test_a_removed_agents_conversations_are_rehomed_offered_on_and_released() -> None:
    state = domain(
        [
            agent("ann", capacity={Channel.SMS: 3}),
            agent("bob", capacity={Channel.SMS: 3}, presence=Presence.AWAY),
        ]
    )
    owned = message("k-owned", customer="c-owned")
    assert assigned_to(apply(state, owned, T0)) == "ann"
    held = message("k-held", customer="c-owned")  # same customer, second thread
    apply(state, held, T0 + 1)
    apply(state, owner_set("c-held", "ann"), T0 + 2)
    apply(state, presence("ann", Presence.AWAY), T0 + 3)
    waiting = message("k-wait", customer="c-held")
    apply(state, waiting, T0 + 4)
    assert state.conversations[waiting.id].preferred == "ann"
    apply(state, presence("bob", Presence.ONLINE), T0 + 5)
    effects = apply(state, removed("ann"), T0 + 6)
    reasons = {(f.conversation_id, f.reason) for f in emitted(effects, ConversationFallback)}
    assert (owned.id, "agent_removed") in reasons
    assert (waiting.id, "agent_removed") in reasons
    for conversation_id in (owned.id, held.id, waiting.id):
        conversation = state.conversations[conversation_id]
        assert conversation.status is ConversationStatus.ASSIGNED
        assert conversation.owner is state.agents["bob"]
    assert not [
        e
        for e in effects
        if getattr(e, "record", None)
        and getattr(e.record, "agent_id", None) == "ann"
        and type(e).__name__ == "SaveAgent"
    ]
    agents, conversations, customers = snapshot(state)
    restore(state.domain, state.policy, agents, conversations, customers)  # nothing dangles
    assert rejected(apply(state, removed("ann"), T0 + 7)) == ["unknown_agent"]
    assert tick(state, T0 + 10_000) is not None
