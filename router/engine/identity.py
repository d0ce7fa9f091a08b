"""One customer across channels: identities linked to a profile, and profiles merged.

A message's ``customer_id`` is the identity its adapter saw (``sms:+1…``,
``email:ann@…``, ``user:42``; ``schemas.identity``). A customer profile's id is the
identity it started from; ``state.identities`` maps every *other* identity linked to a
profile to that profile, so a new conversation belongs to
``state.customer_of(message.customer_id)`` and the preferred agent, the explicit owner and
affinity follow the person, whichever address they write from.

- **Link** (``customer.link_requested``) makes an identity the customer's. Linking an
  identity already linked to the customer changes nothing; one linked to another
  customer is refused (unlink it first: a link never takes an address from someone
  silently). An identity that is a profile of its own with history (records, open
  conversations) is merged into the customer.
- **Merge** (``customer.merge_requested``) folds one profile into another: identities,
  explicit owner (the surviving one's first), last agent (the more recent), affinity
  (scores added) and open conversations, which now name the surviving customer. The
  merged id becomes one of its identities. ``customer.merged`` tells other systems.
- **A provider's report** that the customer has a new address (``identity.changed``:
  WhatsApp's notice of a changed number or business-scoped user id) links the new
  identity to them, so that their messages from it reach the agent who served them. It
  is not a command: an identity linked already, or with a history of its own (a number
  that served someone else before), is left as it is; linking that is a person's
  decision (a link through the API merges it).
- **Unlink** (``customer.unlink_requested``) detaches a linked identity: its next
  conversation starts a profile of its own; open conversations finish as they are, and
  what the profile learned (last agent, affinity) stays with the profile. A profile's own
  id cannot be unlinked from it.

Every command is answered with ``command.completed`` or ``command.rejected``; a refused
one changes nothing.
"""

from __future__ import annotations

from router.engine.affinity import merge_affinity
from router.engine.call import Call
from router.engine.commands import complete, reject
from router.engine.effects import DropCustomer, SaveIdentity
from router.engine.records import IdentityRecord
from router.engine.state import Customer
from schemas import (
    CustomerLinked,
    CustomerLinkRequested,
    CustomerMerged,
    CustomerMergeRequested,
    CustomerUnlinkRequested,
    IdentityChanged,
)


def on_link(call: Call, event: CustomerLinkRequested) -> None:
    state = call.state
    target = state.customer_of(event.customer_id)
    identity = event.identity
    if state.customer_of(identity) == target:
        complete(call, event.id)
        return
    if identity in state.identities:
        reject(call, event.id, "identity_linked_to_another_customer")
        return
    _link_or_merge(call, identity, target, event.source)
    complete(call, event.id)


def link_unless_linked(
    call: Call, identity: str, known_customer_id: str, source: str = "lookup"
) -> None:
    """A message names the customer of ``identity``: its identity lookup (``lookup``), or
    its provider, which gives the sender a second identity (``provider``). Link the
    identity to that customer, unless it is linked already (an explicit link wins)."""
    state = call.state
    if identity in state.identities:
        return
    target = state.customer_of(known_customer_id)
    if target != identity:
        _link_or_merge(call, identity, target, source)


def on_identity_changed(call: Call, event: IdentityChanged) -> None:
    state = call.state
    identity = event.identity
    target = state.customer_of(event.customer_id)
    if identity == target or identity in state.identities or _has_history(call, identity):
        return
    _link(call, identity, target, "provider")
    _emit_linked(call, target, identity, "provider", linked=True)


def _link_or_merge(call: Call, identity: str, target: str, source: str) -> None:
    """Link an identity that is a profile of its own to ``target``: merged when it has a
    history, else linked."""
    if _has_history(call, identity):
        _merge(call, target, identity, source)
    else:
        _link(call, identity, target, source)
    _emit_linked(call, target, identity, source, linked=True)


def on_merge(call: Call, event: CustomerMergeRequested) -> None:
    state = call.state
    target = state.customer_of(event.customer_id)
    merged = state.customer_of(event.from_customer_id)
    if merged != target:
        _merge(call, target, merged, "merge")
    complete(call, event.id)


def on_unlink(call: Call, event: CustomerUnlinkRequested) -> None:
    state = call.state
    target = state.customer_of(event.customer_id)
    identity = event.identity
    if identity == target:
        reject(call, event.id, "primary_identity")
        return
    link = state.identities.get(identity)
    if link is None:
        complete(call, event.id)  # not linked to anyone: already done
        return
    if link.customer_id != target:
        reject(call, event.id, "identity_linked_to_another_customer")
        return
    del state.identities[identity]
    customer = call.customer(target)
    if customer.identities is not None:
        customer.identities.remove(identity)
        if not customer.identities:
            customer.identities = None
    call.effects.append(SaveIdentity(identity, None))
    _emit_linked(call, target, identity, "api", linked=False)
    complete(call, event.id)


def _emit_linked(call: Call, target: str, identity: str, source: str, *, linked: bool) -> None:
    call.emit(
        CustomerLinked(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            customer_id=target,
            identity=identity,
            linked=linked,
            source=source,
        )
    )


def _has_history(call: Call, customer_id: str) -> bool:
    state = call.state
    if customer_id in state.customers:
        return True
    return any(c.customer_id == customer_id for c in state.conversations.values())


def _link(call: Call, identity: str, customer_id: str, source: str) -> None:
    record = IdentityRecord(
        identity=identity, customer_id=customer_id, source=source, linked_at=call.now
    )
    call.state.identities[identity] = record
    customer = call.customer(customer_id)
    if customer.identities is None:
        customer.identities = []
    customer.identities.append(identity)
    customer.identities.sort()
    call.effects.append(SaveIdentity(identity, record))


def _merge(call: Call, target: str, merged: str, source: str) -> None:
    """Fold the profile ``merged`` into ``target`` (both profile ids, not linked ones)."""
    state = call.state
    into = call.customer(target)
    gone = state.customers.pop(merged, None)
    call.customers.pop(merged, None)
    moved = [merged]
    if gone is not None:
        moved.extend(gone.identities or ())
        _combine(call, into, gone)
        call.effects.append(DropCustomer(merged))
    for identity in moved:
        link = state.identities.get(identity)
        _link(call, identity, target, source if link is None else link.source)
    conversation_ids = []
    for conversation_id in sorted(state.conversations):
        conversation = state.conversations[conversation_id]
        if conversation.customer_id == merged:
            conversation.customer_id = target
            call.conversations[conversation_id] = conversation
            conversation_ids.append(conversation_id)
    call.emit(
        CustomerMerged(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=call.now,
            customer_id=target,
            merged_customer_id=merged,
            identities=tuple(into.identities or ()),
            conversation_ids=tuple(conversation_ids),
        )
    )


def _combine(call: Call, into: Customer, gone: Customer) -> None:
    if into.owner_agent_id is None:
        into.owner_agent_id = gone.owner_agent_id
    # A business-started message to the merged profile is still answered: its reply (the
    # very message whose identity lookup merges them, often) finds it on the survivor.
    kept, theirs = into.expectation, gone.expectation
    if theirs is not None and (kept is None or theirs.remember_until > kept.remember_until):
        into.expectation = theirs
    if gone.last_handled_at is not None and (
        into.last_handled_at is None or gone.last_handled_at > into.last_handled_at
    ):
        into.last_agent_id = gone.last_agent_id
        into.last_handled_at = gone.last_handled_at
    merge_affinity(call.state, into, gone)
