"""A customer erased (``router.engine.erasure``): the engine forgets them whole, frees what
they held for others, and publishes nothing that names them."""

from __future__ import annotations

from router.engine import EraseCustomer, apply
from schemas import (
    Channel,
    CommandCompleted,
    ConversationAssigned,
    ConversationClosed,
    CustomerErased,
)
from schemas.limits import ERASED_CONVERSATIONS_MAX
from tests.engine.builders import (
    T0,
    agent,
    assigned_to,
    close,
    domain,
    emitted,
    erased,
    linked,
    message,
    owner_set,
    routing_events,
)

SMS = "sms:+14155550100"
EMAIL = "email:ann@example.com"
OTHER = "sms:+14155550199"
CHANNELS = {Channel.SMS: 1, Channel.EMAIL: 5}


def _erasure(effects: list[object]) -> EraseCustomer:
    (found,) = [e for e in effects if isinstance(e, EraseCustomer)]
    return found


def test_the_customer_is_forgotten_and_their_agent_takes_the_next_in_line() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    texting = message("sms-thread", customer=SMS, channel=Channel.SMS)
    assert assigned_to(apply(state, texting, T0)) == "ann"
    apply(state, linked(SMS, EMAIL), T0 + 1)
    mail = message("mail-thread", customer=EMAIL, channel=Channel.EMAIL)
    assert assigned_to(apply(state, mail, T0 + 2)) == "ann"
    apply(state, owner_set(SMS, "ann"), T0 + 3)
    waiting = message("other-thread", customer=OTHER, channel=Channel.SMS)
    assert assigned_to(apply(state, waiting, T0 + 4)) is None  # ann's one SMS slot is taken

    effects = apply(state, erased(EMAIL, conversation_ids=("closed-long-ago",)), T0 + 10)

    # whom: the profile the named identity belongs to, with every identity of it
    erasure = _erasure(effects)
    assert erasure.identities == (EMAIL, SMS)
    assert erasure.conversation_ids == (mail.id, texting.id, "closed-long-ago")
    (told,) = emitted(effects, CustomerErased)
    assert told.conversation_ids == erasure.conversation_ids
    assert (told.identities, told.more_conversations) == (2, False)
    assert emitted(effects, CommandCompleted)[0].command_id == erasure.erasure_id
    # their open conversations ended without a conversation.closed naming them
    assert not emitted(effects, ConversationClosed)
    for event in routing_events(effects):
        assert getattr(event, "customer_id", None) not in (SMS, EMAIL)
    # the freed SMS slot went to the customer waiting
    (assigned,) = emitted(effects, ConversationAssigned)
    assert (assigned.conversation_id, assigned.agent_id) == (waiting.id, "ann")
    # nothing of them is left in memory
    assert SMS not in state.customers
    assert EMAIL not in state.customers
    assert not state.identities
    assert {c.customer_id for c in state.conversations.values()} == {OTHER}
    assert not any(SMS in key or EMAIL in key for key in state.by_key)
    assert state.agents["ann"].load == {Channel.SMS: 1, Channel.EMAIL: 0}

    # writing again, they are someone new: no owner, no last agent, no affinity
    apply(state, close(waiting.id, "ann"), T0 + 20)
    again = message("sms-again", customer=SMS, channel=Channel.SMS)
    (fresh,) = emitted(apply(state, again, T0 + 30), ConversationAssigned)
    assert fresh.strategy != "preferred"
    assert state.conversations[again.id].preferred is None


def test_the_erased_conversations_are_named_the_most_recent_first_whatever_their_ids() -> None:
    # A conversation's id is its first message's: in production a random UUID.
    state = domain([agent("ann", capacity=CHANNELS)])
    apply(state, message("sms-thread", customer=SMS, message_id="z-opened-first"), T0)
    apply(state, linked(SMS, EMAIL), T0 + 1)
    mail = message("mail-thread", customer=EMAIL, channel=Channel.EMAIL, message_id="a-then")
    apply(state, mail, T0 + 2)

    effects = apply(state, erased(SMS, conversation_ids=("older-closed",)), T0 + 10)

    assert _erasure(effects).conversation_ids == ("a-then", "z-opened-first", "older-closed")


def test_erasing_someone_unknown_or_already_erased_completes_with_nothing_to_forget() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    effects = apply(state, erased("email:never@example.com"), T0)
    assert _erasure(effects).identities == ("email:never@example.com",)
    (told,) = emitted(effects, CustomerErased)
    assert (told.conversation_ids, told.identities) == ((), 1)
    assert emitted(effects, CommandCompleted)
    # an erasure whose row is gone (done before) names no one: nothing at all
    effects = apply(state, erased(), T0 + 1)
    assert _erasure(effects).identities == ()
    assert emitted(effects, CommandCompleted)


def test_an_event_names_at_most_so_many_conversations_and_says_there_were_more() -> None:
    state = domain([agent("ann", capacity=CHANNELS)])
    known = tuple(f"c{i}" for i in range(ERASED_CONVERSATIONS_MAX + 3))
    effects = apply(state, erased(SMS, conversation_ids=known), T0)
    (told,) = emitted(effects, CustomerErased)
    assert told.conversation_ids == known[:ERASED_CONVERSATIONS_MAX]
    assert told.more_conversations
    assert _erasure(effects).conversation_ids == known  # the shell deletes them all
