"""A customer's reaction, edit or deletion reaches whoever has the open conversation
(``message.change_routed``) and changes nothing about routing."""

from __future__ import annotations

from router.engine import ConversationStatus, snapshot
from schemas import Channel, MessageChange, MessageChanged, MessageChangeRouted
from tests.engine.builders import (
    DOMAIN,
    T0,
    agent,
    conversation,
    domain,
    emitted,
    message,
    next_id,
    run,
)


def change(
    key: str = "key-1",
    *,
    kind: MessageChange = MessageChange.REACTED,
    reaction: str | None = "👍",
    text: str | None = None,
) -> MessageChanged:
    return MessageChanged(
        id=next_id("chg"),
        domain=DOMAIN,
        occurred_at=T0,
        channel=Channel.SMS,
        endpoint="+15550000000",
        customer_address="addr:cust-1",
        customer_id="cust-1",
        conversation_key=key,
        provider_message_id="pm-target",
        change=kind,
        change_id=next_id("pc"),
        reaction=reaction,
        text=text,
    )


def test_a_reaction_reaches_the_owner_of_the_open_conversation() -> None:
    state = domain([agent("ann")])
    first = message("key-1", message_id="m1")
    run(state, [first])
    before = snapshot(state)
    reaction = change("key-1")

    effects = run(state, [reaction], T0 + 5)

    (routed,) = emitted(effects, MessageChangeRouted)
    assert routed.conversation_id == "m1"
    assert routed.agent_id == "ann"
    assert routed.change is MessageChange.REACTED
    assert routed.reaction == "👍"
    assert routed.change_event_id == reaction.id
    assert routed.provider_message_id == "pm-target"
    assert [type(e).__name__ for e in effects] == ["Emit"]
    assert snapshot(state) == before


def test_an_edit_in_a_waiting_conversation_carries_the_new_text_and_no_owner() -> None:
    state = domain()
    run(state, [message("key-1", message_id="m1")])
    found = conversation(state, "m1")
    assert found is not None
    assert found.status is ConversationStatus.WAITING

    effects = run(state, [change("key-1", kind=MessageChange.EDITED, reaction=None, text="new")])

    (routed,) = emitted(effects, MessageChangeRouted)
    assert (routed.agent_id, routed.text, routed.change) == (None, "new", MessageChange.EDITED)


def test_a_change_to_a_conversation_not_open_reaches_nobody() -> None:
    state = domain()
    assert run(state, [change("no-such-key", kind=MessageChange.DELETED, reaction=None)]) == []
