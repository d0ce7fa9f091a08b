"""Business-started conversations and consent: what the engine keeps of them.

Rules:

1. ``customer.notified`` (the business wrote first) gives the customer an *expectation*;
   a later notification replaces it.
2. The customer's next new conversation on the notification's channel, within
   ``REMEMBERED`` of it, *answers* it: the conversation opens under the notification's
   conversation id, carries its attributes (the message's own win on a clash), and its
   opening ``message.routed`` names it (``answers_outbound_id``). A message to an open
   conversation joins that conversation as always; the expectation waits.
3. Until ``answer.until``, the answerer applies: ``sender`` makes the sending agent the
   customer's preferred agent (before an explicit owner: they asked for the answer), with
   the channel's usual wait budget; ``queue`` opens the answering conversation in that
   queue (a queue the domain no longer has is ignored). ``last_owner``, and every reply
   after ``until``, takes normal routing.
4. A message carrying a consent (an opt-out or opt-in keyword, or the provider's signal)
   records it: ``customer.consent_changed`` and a consent row. It opens no conversation
   on its own (a STOP needs no agent); in an open conversation it is filed like any
   message. ``customer.consent_requested`` (an admin, ``commands.on_consent_requested``)
   and ``consent.reported`` (a provider's report) record one the same way. A consent
   covers every business-started message, or marketing templates alone (its ``scope``):
   one consent row per address and scope.
"""

from __future__ import annotations

from collections.abc import Container

import msgspec

from router.engine.call import Call
from router.engine.effects import SaveConsent
from router.engine.records import ExpectationRecord
from router.engine.state import Agent, Customer, DomainState
from schemas import (
    AnswerMode,
    Channel,
    Consent,
    ConsentReported,
    ConsentScope,
    CustomerConsentChanged,
    CustomerNotified,
    MessageReceived,
)
from schemas.limits import ANSWER_WINDOW_MAX

REMEMBERED = 30 * 24 * 3600.0
"""How long a notification's reply still opens the notification's conversation."""


def on_notified(call: Call, event: CustomerNotified) -> None:
    """Rule 1."""
    state = call.state
    customer = call.customer(state.customer_of(event.customer_id))
    answer = event.answer
    now = call.now
    customer.expectation = ExpectationRecord(
        outbound_id=event.outbound_id,
        conversation_id=event.conversation_id,
        channel=event.channel,
        mode=answer.mode,
        agent_id=answer.agent_id if answer.mode is AnswerMode.SENDER else None,
        queue=answer.queue if answer.mode is AnswerMode.QUEUE else None,
        until=min(answer.until, now + ANSWER_WINDOW_MAX),
        remember_until=now + REMEMBERED,
        attributes=dict(event.attributes),
    )


def answered_expectation(
    call: Call, customer_id: str, channel: Channel, taken: Container[str]
) -> ExpectationRecord | None:
    """Rule 2: the expectation a new conversation of ``customer_id`` on ``channel``
    answers, marked answered (None: it answers none). ``taken``: conversation ids in use."""
    customer = call.state.customers.get(customer_id)
    if customer is None:
        return None
    expectation = customer.expectation
    if expectation is None or expectation.answered or expectation.channel is not channel:
        return None
    if call.now > expectation.remember_until or expectation.conversation_id in taken:
        return None
    call.customers[customer_id] = customer
    customer.expectation = msgspec.structs.replace(expectation, answered=True)
    return expectation


def answering_queue(expectation: ExpectationRecord | None, now: float) -> str | None:
    """Rule 3, ``queue``: the queue the answering conversation opens in (None: the
    endpoint's)."""
    if expectation is None or expectation.queue is None or now > expectation.until:
        return None
    return expectation.queue


def intended_agent(state: DomainState, customer: Customer | None, now: float) -> Agent | None:
    """Rule 3, ``sender``: the agent a notification named to answer, while it applies
    and while they are in the domain."""
    if customer is None:
        return None
    expectation = customer.expectation
    if expectation is None or expectation.agent_id is None or now > expectation.until:
        return None
    return state.agents.get(expectation.agent_id)


def forget_expectation(call: Call, customer: Customer) -> None:
    """Drop an expectation that no longer matters (answered and past its answerer's
    time, or past ``REMEMBERED``), so the customer's record stops carrying it."""
    expectation = customer.expectation
    if expectation is None:
        return
    now = call.now
    if now > expectation.remember_until or (expectation.answered and now > expectation.until):
        customer.expectation = None
        call.customers[customer.customer_id] = customer


def record_message_consent(call: Call, customer_id: str, message: MessageReceived) -> None:
    """Rule 4, a customer's message."""
    assert message.consent is not None
    record_consent(
        call,
        customer_id,
        message.channel,
        message.customer_address,
        message.consent,
        source=message.consent_source or "keyword",
        message_id=message.id,
        actor=None,
    )


def on_consent_reported(call: Call, report: ConsentReported) -> None:
    """Rule 4, a provider's report of the customer's consent (an email's unsubscribe
    link, a spam complaint, an RCS unsubscribe): as their keyword would be."""
    record_consent(
        call,
        call.state.customer_of(report.customer_id),
        report.channel,
        report.customer_address,
        report.consent,
        source="provider",
        message_id=None,
        actor=None,
        scope=report.scope,
    )


def record_consent(
    call: Call,
    customer_id: str,
    channel: Channel,
    address: str,
    consent: Consent,
    *,
    source: str,
    message_id: str | None,
    actor: str | None,
    scope: ConsentScope = ConsentScope.ALL,
) -> None:
    change = CustomerConsentChanged(
        id=call.new_id(),
        domain=call.state.domain,
        occurred_at=call.now,
        customer_id=customer_id,
        channel=channel,
        customer_address=address,
        consent=consent,
        source=source,
        message_id=message_id,
        scope=scope,
    )
    call.emit(change)
    call.effects.append(SaveConsent(change, actor))
