"""A customer erased: the engine forgets them (``customer.erase_requested``).

The shell hands the command in as ``CustomerErasure``, with the identities the API named
and the conversation ids PostgreSQL knew (``router.shell.intake``): the record on the
topic names no one. Erasing:

1. Whom: every identity given, the profile each belongs to (``state.customer_of``), and
   every identity linked to those profiles.
2. Their open conversations end (reason ``erased``): the owner's or offered agent's slot
   is free at once and goes to waiting work, deadlines and waiting-list entries die. No
   ``conversation.closed`` is published for them, as it would name the customer;
   ``customer.erased`` names them instead.
3. The profiles (owner, last agent, affinity, the expectation of a business-started
   message) and the identity links leave the state.
4. ``EraseCustomer`` asks the shell to delete every row about them in the batch's
   transaction, and ``customer.erased`` tells other systems, naming conversations only.

An erasure of someone the router never saw still completes: the rows PostgreSQL may hold
(consents of an address, business-started messages) go too, and asking again is harmless.
"""

from __future__ import annotations

from router.engine.assignment import close
from router.engine.call import Call
from router.engine.commands import complete
from router.engine.effects import EraseCustomer
from schemas import CustomerErased
from schemas.common import Event
from schemas.limits import ERASED_CONVERSATIONS_MAX, CustomerId


class CustomerErasure(Event, frozen=True, kw_only=True, tag="customer.erasure"):
    """What the engine applies for a ``customer.erase_requested`` (same id): whom, as
    the shell read it from the erasure's row."""

    identities: tuple[CustomerId, ...]
    """The identities the request named (a phone number's on every phone channel)."""
    conversation_ids: tuple[str, ...] = ()
    """Their conversations PostgreSQL held when the request was made, newest first."""


def erased_identities(call: Call, named: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """Rule 1: the profiles the named identities belong to, and every identity of them."""
    state = call.state
    profiles = sorted({state.customer_of(identity) for identity in named})
    identities = {*named, *profiles}
    for profile in profiles:
        customer = state.customers.get(profile)
        if customer is not None and customer.identities:
            identities.update(customer.identities)
    return profiles, identities


def on_erase(call: Call, event: CustomerErasure) -> None:
    state = call.state
    profiles, identities = erased_identities(call, event.identities)
    # Oldest first; the event names them the most recent first. Not by id: a conversation's
    # id is its first message's, which says nothing of when it opened.
    ended = sorted(
        (c for c in state.conversations.values() if c.customer_id in identities),
        key=lambda c: (c.opened_at, c.conversation_id),
    )
    for conversation in ended:
        close(call, conversation, "erased", announce=False)
    for profile in profiles:
        state.customers.pop(profile, None)
        call.customers.pop(profile, None)
    for identity in identities:
        state.identities.pop(identity, None)
    named = [c.conversation_id for c in reversed(ended)]
    seen = set(named)
    named.extend(c for c in event.conversation_ids if c not in seen)
    erased = tuple(sorted(identities))
    call.effects.append(EraseCustomer(event.id, erased, tuple(named)))
    call.emit(
        CustomerErased(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=call.now,
            erasure_id=event.id,
            conversation_ids=tuple(named[:ERASED_CONVERSATIONS_MAX]),
            more_conversations=len(named) > ERASED_CONVERSATIONS_MAX,
            identities=len(erased),
        )
    )
    complete(call, event.id)
