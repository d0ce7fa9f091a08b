"""Business-started conversations and consent, by rule of ``router.engine.outbound``."""

from __future__ import annotations

from typing import Any

from router.engine import SaveConsent, SaveCustomer, apply, restore, snapshot
from router.engine.outbound import REMEMBERED
from schemas import (
    AnswerMode,
    Channel,
    CommandCompleted,
    Consent,
    ConversationAssigned,
    CustomerConsentChanged,
    CustomerConsentRequested,
    CustomerNotified,
    MessageRouted,
)
from tests.engine.builders import (
    DOMAIN,
    T0,
    agent,
    assignment,
    close,
    domain,
    emitted,
    ladder_policy,
    message,
    next_id,
)
from tests.engine.builders import notified as notice

CUSTOMER = "sms:+14155550100"
HOURS = 3600.0


def notified(
    mode: AnswerMode = AnswerMode.SENDER,
    *,
    agent_id: str | None = "ann",
    conversation_id: str = "notice-1",
    attributes: dict[str, str] | None = None,
    **kwargs: Any,
) -> CustomerNotified:
    return notice(
        CUSTOMER,
        conversation_id,
        mode=mode,
        agent_id=agent_id,
        attributes={"campaign": "spring"} if attributes is None else attributes,
        **kwargs,
    )


def reply(key: str = "sms-thread", **kwargs: object) -> object:
    return message(key, customer=CUSTOMER, channel=Channel.SMS, **kwargs)  # type: ignore[arg-type]


# -- rules 1 to 3: who answers a reply ----------------------------------------------------


def test_a_reply_within_the_window_opens_the_notification_conversation_for_the_sender() -> None:
    # bob is less busy, and ann is not the customer's last agent: ann sent the notice
    state = domain([agent("ann", busy=False), agent("bob")])
    apply(state, notified(), T0)
    answer = reply()
    effects = apply(state, answer, T0 + 600)  # type: ignore[arg-type]
    assert assignment(effects) == ("notice-1", "ann", "preferred")
    routed = emitted(effects, MessageRouted)
    assert [r.answers_outbound_id for r in routed] == ["out-notice-1"]
    conversation = state.conversations["notice-1"]
    assert conversation.attributes == {"campaign": "spring"}
    assert state.customers[CUSTOMER].expectation is not None
    assert state.customers[CUSTOMER].expectation.answered


def test_the_sender_is_waited_for_like_any_preferred_agent() -> None:
    state = domain([agent("ann", busy=True), agent("bob")])
    apply(state, notified(), T0)
    effects = apply(state, reply(), T0 + 600)  # type: ignore[arg-type]
    assert not emitted(effects, ConversationAssigned)
    assert state.conversations["notice-1"].preferred == "ann"


def test_after_the_window_a_reply_takes_normal_routing_but_keeps_the_context() -> None:
    state = domain([agent("ann", busy=True), agent("bob")])
    apply(state, notified(until=T0 + HOURS), T0)
    effects = apply(state, reply(), T0 + 2 * HOURS)  # type: ignore[arg-type]
    assert assignment(effects) == ("notice-1", "bob", "queue")
    assert [r.answers_outbound_id for r in emitted(effects, MessageRouted)] == ["out-notice-1"]


def test_an_expectation_is_forgotten_once_answered_and_past_its_window() -> None:
    state = domain([agent("ann"), agent("bob")])
    apply(state, notified(until=T0 + HOURS), T0)
    first = reply("t1")
    apply(state, first, T0 + 60)  # type: ignore[arg-type]
    assert state.customers[CUSTOMER].expectation is not None  # the sender still answers
    apply(state, close("notice-1", "ann"), T0 + 120)
    effects = apply(state, reply("t2"), T0 + 2 * HOURS)  # type: ignore[arg-type]
    assert state.customers[CUSTOMER].expectation is None
    saved = [e.record for e in effects if isinstance(e, SaveCustomer)]
    assert [r.expectation for r in saved if r.customer_id == CUSTOMER] == [None]


def test_an_unanswered_expectation_is_forgotten_after_thirty_days() -> None:
    state = domain([agent("ann")])
    apply(state, notified(), T0)
    apply(state, message("mail", customer=CUSTOMER, channel=Channel.EMAIL), T0 + REMEMBERED + 1)
    assert state.customers[CUSTOMER].expectation is None


def test_a_queue_answerer_opens_the_reply_in_that_queue() -> None:
    state = domain(
        [agent("ann", skills=("english",), queues=("support",)), agent("bea", queues=("billing",))],
        policy=ladder_policy(),
    )
    apply(state, notified(AnswerMode.QUEUE, agent_id=None, queue="billing"), T0)
    effects = apply(state, reply(), T0 + 60)  # type: ignore[arg-type]
    assert state.conversations["notice-1"].queue.name == "billing"
    assert assignment(effects) == ("notice-1", "bea", "queue")


def test_an_unknown_queue_is_ignored() -> None:
    state = domain([agent("ann")], policy=ladder_policy())
    apply(state, notified(AnswerMode.QUEUE, agent_id=None, queue="gone"), T0)
    apply(state, reply(), T0 + 60)  # type: ignore[arg-type]
    assert state.conversations["notice-1"].queue.name == "support"
    # the message's own queue (its endpoint's) comes before the default
    state = domain([agent("ann")], policy=ladder_policy())
    apply(state, notified(AnswerMode.QUEUE, agent_id=None, queue="gone"), T0)
    apply(state, reply(queue="billing"), T0 + 60)  # type: ignore[arg-type]
    assert state.conversations["notice-1"].queue.name == "billing"


def test_a_reply_whose_identity_lookup_merges_the_profile_still_answers_the_notice() -> None:
    """The reply names the customer's CRM identity (``known_customer_id``): the notified
    profile is merged into it, and the notice goes with it."""
    state = domain([agent("ann", busy=False), agent("bob")])
    apply(state, notified(), T0)
    effects = apply(state, reply(known_customer_id="user:42"), T0 + 600)  # type: ignore[arg-type]
    assert assignment(effects) == ("notice-1", "ann", "preferred")
    assert [r.answers_outbound_id for r in emitted(effects, MessageRouted)] == ["out-notice-1"]


def test_last_owner_mode_routes_to_the_customers_last_agent() -> None:
    state = domain([agent("ann"), agent("bob")])
    first = reply("old-thread")
    apply(state, first, T0)  # type: ignore[arg-type]
    last = state.conversations[first.id].owner  # type: ignore[attr-defined]
    assert last is not None
    apply(state, close(first.id, last.agent_id), T0 + 10)  # type: ignore[attr-defined]
    apply(state, notified(AnswerMode.LAST_OWNER, agent_id=None), T0 + 20)
    effects = apply(state, reply(), T0 + 60)  # type: ignore[arg-type]
    assert assignment(effects) == ("notice-1", last.agent_id, "preferred")


def test_a_reply_on_another_channel_or_to_an_open_conversation_does_not_answer_it() -> None:
    state = domain([agent("ann"), agent("bob")])
    open_one = reply("open-thread")
    apply(state, open_one, T0)  # type: ignore[arg-type]
    apply(state, notified(agent_id="bob"), T0 + 1)
    again = reply("open-thread")
    effects = apply(state, again, T0 + 2)  # type: ignore[arg-type]
    assert [r.conversation_id for r in emitted(effects, MessageRouted)] == [open_one.id]  # type: ignore[attr-defined]
    assert [r.answers_outbound_id for r in emitted(effects, MessageRouted)] == [None]
    email = message("mail-thread", customer=CUSTOMER, channel=Channel.EMAIL)
    effects = apply(state, email, T0 + 3)
    assert "notice-1" not in state.conversations
    assert not state.customers[CUSTOMER].expectation.answered  # type: ignore[union-attr]


def test_only_the_first_new_conversation_answers_and_a_later_notice_replaces_it() -> None:
    state = domain([agent("ann"), agent("bob")])
    apply(state, notified(conversation_id="n1"), T0)
    apply(state, notified(conversation_id="n2", agent_id="bob"), T0 + 5)
    first = reply("t1")
    effects = apply(state, first, T0 + 10)  # type: ignore[arg-type]
    assert assignment(effects) == ("n2", "bob", "preferred")
    apply(state, close("n2", "bob"), T0 + 20)
    second = reply("t2")
    effects = apply(state, second, T0 + 30)  # type: ignore[arg-type]
    assert [r.conversation_id for r in emitted(effects, MessageRouted)] == [second.id]  # type: ignore[attr-defined]
    assert [r.answers_outbound_id for r in emitted(effects, MessageRouted)] == [None]


def test_a_departed_sender_is_nobodys_preferred_agent() -> None:
    state = domain([agent("bob")])
    apply(state, notified(agent_id="ann"), T0)
    effects = apply(state, reply(), T0 + 60)  # type: ignore[arg-type]
    assert assignment(effects) == ("notice-1", "bob", "queue")


def test_the_expectation_survives_a_restart() -> None:
    state = domain([agent("ann"), agent("bob")])
    effects = apply(state, notified(), T0)
    saved = [e.record for e in effects if isinstance(e, SaveCustomer)]
    assert saved
    assert saved[0].expectation is not None
    agents, conversations, customers = snapshot(state)
    rebuilt = restore(DOMAIN, state.policy, agents, conversations, customers)
    effects = apply(rebuilt, reply(), T0 + 60)  # type: ignore[arg-type]
    assert assignment(effects) == ("notice-1", "ann", "preferred")


# -- rule 4: consent ------------------------------------------------------------------------


def test_a_stop_records_the_opt_out_and_opens_no_conversation() -> None:
    state = domain([agent("ann")])
    stop = reply(consent=Consent.OPT_OUT)
    effects = apply(state, stop, T0)  # type: ignore[arg-type]
    changes = emitted(effects, CustomerConsentChanged)
    assert [(c.consent, c.source, c.message_id) for c in changes] == [
        (Consent.OPT_OUT, "keyword", stop.id)  # type: ignore[attr-defined]
    ]
    assert [e.change for e in effects if isinstance(e, SaveConsent)] == changes
    assert not state.conversations
    assert not emitted(effects, MessageRouted)


def test_a_stop_in_an_open_conversation_is_also_filed_for_its_agent() -> None:
    state = domain([agent("ann")])
    first = reply()
    apply(state, first, T0)  # type: ignore[arg-type]
    effects = apply(state, reply(consent=Consent.OPT_OUT, consent_source="provider"), T0 + 5)  # type: ignore[arg-type]
    assert [r.agent_id for r in emitted(effects, MessageRouted)] == ["ann"]
    assert [c.source for c in emitted(effects, CustomerConsentChanged)] == ["provider"]


def test_an_admin_records_consent_through_a_command() -> None:
    state = domain([agent("ann")])
    command = CustomerConsentRequested(
        id=next_id("consent"),
        domain=DOMAIN,
        occurred_at=T0,
        channel=Channel.SMS,
        customer_address="+14155550100",
        customer_id=CUSTOMER,
        consent=Consent.OPT_IN,
    )
    effects = apply(state, command, T0)
    assert [(c.consent, c.source) for c in emitted(effects, CustomerConsentChanged)] == [
        (Consent.OPT_IN, "api")
    ]
    assert [c.command_id for c in emitted(effects, CommandCompleted)] == [command.id]
