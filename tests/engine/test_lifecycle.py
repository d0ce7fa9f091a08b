"""Inactivity (rule 8), agent commands (rule 9), replies, deadlines, restore, policy, ids."""

from __future__ import annotations

import tomllib
import uuid

import msgspec
import pytest

from router.engine import (
    NAMESPACE,
    AgentRecord,
    ConversationRecord,
    ConversationStatus,
    CustomerRecord,
    DeadlineKind,
    DomainPolicy,
    DomainState,
    Emit,
    InactivityPolicy,
    QueueMode,
    QueuePolicy,
    Restoration,
    SaveAgent,
    SaveAssignment,
    SaveConversation,
    SaveCustomer,
    StepPolicy,
    apply,
    deadline_bound,
    deadline_due,
    make_id,
    next_deadline,
    restore,
    snapshot,
    tick,
)
from schemas import (
    Channel,
    CommandCompleted,
    CommandRejected,
    ConversationAssigned,
    ConversationClosed,
    ConversationQueued,
    ConversationReassigned,
    MessageRouted,
    Presence,
)
from tests.engine.builders import (
    DOMAIN,
    T0,
    agent,
    assigned_to,
    assignment,
    close,
    conversation,
    domain,
    emitted,
    event_types,
    fill,
    ladder_policy,
    message,
    replied,
    transfer,
)

QUIET = DomainPolicy(inactivity=InactivityPolicy(release_after=600, close_after=3600))
TIRELESS = DomainPolicy(inactivity=InactivityPolicy(release_after=None, close_after=None))


def record_of(state: DomainState, conversation_id: str) -> ConversationRecord:
    found = conversation(state, conversation_id)
    assert found is not None
    return found


# -- rule 8: inactivity ---------------------------------------------------------------


def test_an_inactive_conversation_releases_the_slot_but_stays_owned() -> None:
    state = domain([agent("ann")], policy=QUIET)
    msg = message("k1")
    apply(state, msg, T0)
    apply(state, message("k1"), T0 + 100)  # pushes the inactivity deadline
    assert tick(state, T0 + 600) == []
    effects = tick(state, T0 + 700)
    assert [type(e) for e in effects] == [SaveAgent, SaveConversation]
    record = record_of(state, msg.id)
    assert (record.status, record.owner_agent_id) == (ConversationStatus.IDLE, "ann")
    assert state.agents["ann"].load[Channel.SMS] == 0


def test_a_message_to_an_idle_conversation_takes_the_owners_slot_back() -> None:
    state = domain([agent("ann"), agent("bob")], policy=QUIET)
    msg = message("k1")
    apply(state, msg, T0)
    tick(state, T0 + 600)
    effects = apply(state, message("k1"), T0 + 900)
    assert emitted(effects, MessageRouted)[0].agent_id == "ann"
    assert assignment(effects) is None
    assert record_of(state, msg.id).status is ConversationStatus.ASSIGNED
    assert state.agents["ann"].load[Channel.SMS] == 1


def test_a_message_to_an_idle_conversation_of_a_full_owner_waits_for_them() -> None:
    ann = agent("ann", capacity={Channel.SMS: 1})
    state = domain([ann, agent("bob")], policy=QUIET)
    msg = message("k1", customer="mine")
    apply(state, msg, T0)  # ann by id
    tick(state, T0 + 600)  # idle, slot released
    fill(state, ann, T0 + 601)
    effects = apply(state, message("k1", customer="mine"), T0 + 700)
    queued = emitted(effects, ConversationQueued)[0]
    assert (queued.step, queued.preferred_agent_id) == ("preferred", "ann")


def test_an_inactive_conversation_auto_closes_and_a_new_message_opens_a_new_one() -> None:
    state = domain([agent("ann")], policy=QUIET)
    msg = message("k1")
    apply(state, msg, T0)
    tick(state, T0 + 600)
    effects = tick(state, T0 + 3600)
    closed = emitted(effects, ConversationClosed)[0]
    assert (closed.reason, closed.agent_id) == ("inactive", "ann")
    assert conversation(state, msg.id) is None
    saved = [e.record for e in effects if isinstance(e, SaveAssignment)]
    assert saved[0].end_reason == "closed:inactive"
    again = message("k1")
    effects = apply(state, again, T0 + 4000)
    assert assignment(effects) == (again.id, "ann", "preferred")


def test_an_agent_reply_marks_first_response_and_resets_inactivity() -> None:
    state = domain([agent("ann")], policy=QUIET)
    msg = message("k1")
    apply(state, msg, T0)
    effects = apply(state, replied(msg.id, "ann"), T0 + 500)
    assert [type(e) for e in effects] == [SaveConversation]
    apply(state, replied(msg.id, "ann"), T0 + 550)
    record = record_of(state, msg.id)
    assert (record.first_response_at, record.last_agent_reply_at) == (T0 + 500, T0 + 550)
    assert record.owner_agent_id == "ann"
    assert tick(state, T0 + 1100) == []
    assert record_of(state, msg.id).status is ConversationStatus.IDLE or tick(state, T0 + 1150)
    assert record_of(state, msg.id).status is ConversationStatus.IDLE


def test_a_reply_to_an_unknown_conversation_is_ignored() -> None:
    state = domain([agent("ann")])
    assert apply(state, replied("nope", "ann"), T0) == []


# -- rule 9: close --------------------------------------------------------------------


def test_the_owner_closes_a_conversation() -> None:
    state = domain([agent("ann")])
    msg = message("k1")
    apply(state, msg, T0)
    cmd = close(msg.id, "ann")
    effects = apply(state, cmd, T0 + 10)
    assert event_types(effects) == ["conversation.closed", "command.completed"]
    assert emitted(effects, CommandCompleted)[0].command_id == cmd.id
    assert state.agents["ann"].load[Channel.SMS] == 0
    saved = [e.record for e in effects if isinstance(e, SaveConversation)]
    assert saved[0].status is ConversationStatus.CLOSED


def test_closing_a_conversation_owned_by_another_agent_is_rejected_untouched() -> None:
    state = domain([agent("ann"), agent("bob")])
    msg = message("k1")
    apply(state, msg, T0)
    before = snapshot(state)
    cmd = close(msg.id, "bob")
    effects = apply(state, cmd, T0 + 1)
    rejected = emitted(effects, CommandRejected)
    assert [(r.command_id, r.reason) for r in rejected] == [(cmd.id, "not_owner")]
    assert [type(e) for e in effects] == [Emit]
    assert snapshot(state) == before


def test_commands_on_unknown_conversations_are_rejected() -> None:
    state = domain([agent("ann")])
    for command in (close("nope"), transfer("nope", to_agent="ann")):
        effects = apply(state, command, T0)
        assert emitted(effects, CommandRejected)[0].reason == "unknown_conversation"


def test_an_admin_closes_a_waiting_conversation() -> None:
    state = domain([agent("ann", busy=True)], policy=TIRELESS)
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    effects = apply(state, close(msg.id, None, reason="spam"), T0 + 1)
    assert emitted(effects, ConversationClosed)[0].reason == "spam"
    assert tick(state, T0 + 10**6) == []


# -- rule 9: transfer -----------------------------------------------------------------


def test_transfer_to_an_agent_reassigns_with_strategy_transfer() -> None:
    state = domain([agent("ann"), agent("bob")])
    msg = message("k1")
    apply(state, msg, T0)
    effects = apply(state, transfer(msg.id, "ann", to_agent="bob"), T0 + 30)
    assert event_types(effects) == [
        "conversation.reassigned",
        "conversation.assigned",
        "command.completed",
    ]
    reassigned = emitted(effects, ConversationReassigned)[0]
    assert (reassigned.from_agent_id, reassigned.to_agent_id) == ("ann", "bob")
    assert assignment(effects) == (msg.id, "bob", "transfer")
    ended = [e.record for e in effects if isinstance(e, SaveAssignment) and e.record.ended_at]
    assert [(r.agent_id, r.end_reason) for r in ended] == [("ann", "transferred")]
    assert (state.agents["ann"].load[Channel.SMS], state.agents["bob"].load[Channel.SMS]) == (0, 1)


def test_transfer_to_a_queue_puts_the_conversation_back_to_waiting_there() -> None:
    state = domain(
        [agent("ann", queues=["support", "billing"], skills=["english"])],
        policy=ladder_policy(),
    )
    msg = message("k1")
    apply(state, msg, T0)
    effects = apply(state, transfer(msg.id, "ann", to_queue="billing"), T0 + 30)
    reassigned = emitted(effects, ConversationReassigned)[0]
    assert (reassigned.to_agent_id, reassigned.to_queue, reassigned.queue) == (
        None,
        "billing",
        "billing",
    )
    queued = emitted(effects, ConversationQueued)[0]
    assert (queued.queue, queued.step, queued.wait_until) == ("billing", "billing", T0 + 330)
    assert record_of(state, msg.id).passed_over == {"ann": "transferred"}


def test_transfer_refusals_leave_the_state_untouched() -> None:
    state = domain(
        [
            agent("ann"),
            agent("bob", busy=True),
            agent("cyd", presence=Presence.OFFLINE),
            agent("dee", capacity={Channel.EMAIL: 3}),
        ]
    )
    msg = message("k1")
    apply(state, msg, T0)
    before = snapshot(state)
    cases = {
        "unknown_agent": transfer(msg.id, "ann", to_agent="zed"),
        "at_capacity": transfer(msg.id, "ann", to_agent="bob"),
        "offline": transfer(msg.id, "ann", to_agent="cyd"),
        "no_channel": transfer(msg.id, "ann", to_agent="dee"),
        "not_owner": transfer(msg.id, "bob", to_agent="cyd"),
        "unknown_queue": transfer(msg.id, "ann", to_queue="nope"),
        "already_owner": transfer(msg.id, "ann", to_agent="ann"),
        "needs_exactly_one_of_to_agent_id_or_to_queue": transfer(msg.id, "ann"),
    }
    for reason, command in cases.items():
        effects = apply(state, command, T0 + 1)
        assert [r.reason for r in emitted(effects, CommandRejected)] == [reason]
        assert snapshot(state) == before


def test_accepting_an_owned_conversation_is_rejected() -> None:
    state = domain([agent("ann"), agent("bob")])
    msg = message("k1")
    apply(state, msg, T0)
    from tests.engine.builders import accept

    assert emitted(apply(state, accept(msg.id, "bob"), T0), CommandRejected)[0].reason == (
        "owned_by_another_agent"
    )
    assert emitted(apply(state, accept(msg.id, "ann"), T0), CommandRejected)[0].reason == (
        "already_owner"
    )


# -- assignments carry the why --------------------------------------------------------


def test_an_assignment_records_strategy_step_wait_and_candidates() -> None:
    state = domain([agent("ann", busy=True), agent("bob")], preferred={"cust-1": "ann"})
    msg = message("k1")
    apply(state, msg, T0)
    effects = tick(state, T0 + 120)
    record = next(e.record for e in effects if isinstance(e, SaveAssignment))
    assert (record.strategy, record.step, record.waited_seconds) == ("fallback", "queue", 120)
    assert [(c.agent_id, c.reason) for c in record.candidates] == [
        ("ann", "at_capacity"),
        ("bob", "chosen"),
    ]
    event = emitted(effects, ConversationAssigned)[0]
    assert (event.assignment_id, event.candidates) == (record.assignment_id, record.candidates)
    assert event.preferred_agent_id == "ann"


# -- deadlines ------------------------------------------------------------------------


def test_next_deadline_is_the_earliest_live_one() -> None:
    state = domain([agent("ann", busy=True)], preferred={"a": "ann"}, policy=QUIET)
    assert next_deadline(state) == T0 + 600  # the filler conversations' release
    apply(state, message("k1", customer="a"), T0 + 1)
    assert next_deadline(state) == T0 + 121  # held for ann, sms
    apply(state, message("k2", customer="a", channel=Channel.WEBCHAT), T0 + 2)
    assert next_deadline(state) == T0 + 32  # held for ann, web chat


def test_a_deadline_moved_later_is_refiled_only_when_its_old_entry_comes_due() -> None:
    state = domain([agent("ann")], policy=QUIET)
    apply(state, message("k1"), T0)
    entries = list(state.deadlines)
    for seconds in range(1, 50):
        apply(state, message("k1"), T0 + seconds)  # each moves the inactivity deadline
        assert not deadline_due(state, T0 + seconds)
        assert deadline_bound(state) == T0 + 600  # the entry made at T0 bounds them
    assert state.deadlines == entries  # nothing re-filed meanwhile
    assert not deadline_due(state, T0 + 600)  # due by then: re-filed at the real one
    assert deadline_bound(state) == next_deadline(state) == T0 + 49 + 600
    assert deadline_due(state, T0 + 649)


def test_a_stale_deadline_is_a_no_op() -> None:
    ann = agent("ann", capacity={Channel.SMS: 1})
    state = domain([ann], policy=TIRELESS)
    (filler,) = fill(state, ann)
    msg = message("k1", customer="new")
    apply(state, msg, T0)
    apply(state, close(filler, "ann"), T0 + 5)  # assigned before any deadline
    assert [e for e in tick(state, T0 + 10**5) if isinstance(e, Emit)] == []


def test_restore_fires_a_deadline_already_past_on_the_next_tick() -> None:
    state = domain([agent("ann", busy=True), agent("bob")], preferred={"cust-1": "ann"})
    msg = message("k1")
    apply(state, msg, T0)
    agents, conversations, customers = snapshot(state)
    revived = restore(DOMAIN, state.policy, agents, conversations, customers)
    # first the rebuilt state's own due: agents with a free slot may take waiting work
    # (here none may: bob is not the preferred agent, and the hold still runs)
    assert next_deadline(revived) == 0.0
    assert tick(revived, T0 + 1) == []
    assert next_deadline(revived) == T0 + 120
    assert assignment(tick(revived, T0 + 5000)) == (msg.id, "bob", "fallback")


def test_records_round_trip_through_json() -> None:
    state = domain(
        [agent("ann"), agent("bob")],
        policy=ladder_policy(mode=QueueMode.OFFER),
        preferred={"x": "bob"},
    )
    apply(state, message("k1", customer="x"), T0)
    agents, conversations, customers = snapshot(state)
    for records, kind in (
        (agents, AgentRecord),
        (conversations, ConversationRecord),
        (customers, CustomerRecord),
    ):
        assert records
        for record in records:
            assert msgspec.json.decode(msgspec.json.encode(record), type=kind) == record
    assert conversations[0].deadline_kind is DeadlineKind.OFFER
    assert conversations[0].assignment is not None


def restored_from_json(state: DomainState, *, customers_first: bool = True) -> DomainState:
    """``state`` restored from its records as a load reads them, decoded from JSON: every
    field of a record has a float of its own. A takeover may restore the conversations
    before their customers arrive (``Restoration``)."""
    agents, conversations, customers = (
        [msgspec.json.decode(msgspec.json.encode(record), type=type(record)) for record in kind]
        for kind in snapshot(state)
    )
    if customers_first:
        return restore(DOMAIN, state.policy, agents, conversations, customers)
    restoration = Restoration(DOMAIN, state.policy, agents)
    restoration.add_conversations(conversations)
    restoration.add_customers(customers)
    return restoration.finish()


@pytest.mark.parametrize("customers_first", [True, False])
def test_a_restore_holds_one_float_and_id_per_instant_and_customer_as_the_live_state_does(
    customers_first: bool,
) -> None:
    state = domain([agent("ann")])
    msg = message("k1", customer="x")
    apply(state, msg, T0 + 0.5)  # opened, assigned and handled at one instant
    revived = restored_from_json(state, customers_first=customers_first)

    def instants(restored: DomainState) -> set[int]:
        held = restored.conversations[msg.id]
        assert held.assignment is not None
        return {
            id(instant)
            for instant in (
                held.opened_at,
                held.waiting_since,
                held.last_customer_message_at,
                held.last_activity_at,
                held.assignment.offered_at,
                held.assignment.accepted_at,
                restored.customers["x"].last_handled_at,
            )
        }

    assert snapshot(revived) == snapshot(state)
    assert len(instants(revived)) == len(instants(state)) == 1
    held = revived.conversations[msg.id]
    assert held.customer_id is revived.customers["x"].customer_id


def test_a_restored_hold_ends_its_step_and_its_deadline_at_one_instant() -> None:
    state = domain([agent("ann", busy=True), agent("bob")], preferred={"cust-1": "ann"})
    msg = message("k1")
    apply(state, msg, T0)
    held = restored_from_json(state).conversations[msg.id]
    assert held.step_until == T0 + 120
    assert held.deadline is held.step_until


def test_a_restore_keeps_a_zero_instant_signed_as_stored() -> None:
    state = domain([agent("ann")])
    msg = message("k1")
    apply(state, msg, T0)
    agents, conversations, customers = snapshot(state)
    stored = conversations[0]
    assert stored.assignment is not None
    signed = msgspec.structs.replace(
        stored,
        opened_at=0.0,
        waiting_since=-0.0,
        assignment=msgspec.structs.replace(stored.assignment, waited_seconds=-0.0),
    )
    held = restore(DOMAIN, state.policy, agents, [signed], customers).conversations[msg.id]
    assert held.assignment is not None
    # 0.0 == -0.0: not the same instant for the records saved next
    assert (repr(held.waiting_since), repr(held.assignment.waited_seconds)) == ("-0.0", "-0.0")


def test_customer_owner_set_saves_the_customer() -> None:
    from tests.engine.builders import owner_set

    state = domain([agent("ann")])
    effects = apply(state, owner_set("cust-9", "ann"), T0)
    assert [e.record.owner_agent_id for e in effects if isinstance(e, SaveCustomer)] == ["ann"]


# -- ids and policy -------------------------------------------------------------------


def test_make_id_is_uuid5_in_the_engine_namespace() -> None:
    for name in ("a/0", "deadline:x:1.5:step:preferred/3", "ünïcode/1"):
        assert make_id(name) == str(uuid.uuid5(NAMESPACE, name))


def test_the_default_policy_routes_out_of_the_box() -> None:
    policy = DomainPolicy()
    assert list(policy.queues) == ["default"]
    assert policy.preferred_wait.webchat == 30
    state = domain([agent("ann")], policy=policy)
    assert emitted(apply(state, message("k"), T0), ConversationAssigned)


POLICY_TOML = """
[domains.acme.routing]
default_queue = "support"
away_after_missed_offers = 3

[domains.acme.routing.preferred_wait]
webchat = 45
email = 7200

[domains.acme.routing.inactivity]
release_after = 1800
close_after = 86400

[domains.acme.routing.channel_inactivity.email]
release_after = 14400
close_after = 604800

[domains.acme.routing.queues.support]
skills = ["english"]
mode = "offer"
offer_timeout = 20

[[domains.acme.routing.queues.support.steps]]
name = "skilled"
wait = 60
channel_wait = { email = 3600 }

[[domains.acme.routing.queues.support.steps]]
name = "overflow"
agents_from = ["*"]
skills = []
wait = 600
"""


def test_the_policy_decodes_from_its_toml_section() -> None:
    section = tomllib.loads(POLICY_TOML)["domains"]["acme"]["routing"]
    policy = msgspec.convert(section, DomainPolicy)
    queue = policy.queues["support"]
    assert queue.mode is QueueMode.OFFER
    assert queue.steps[0].wait_for(Channel.EMAIL) == 3600
    assert queue.steps[1].agents_from == ("*",)
    assert policy.preferred_wait.webchat == 45
    assert policy.preferred_wait.sms == 120
    assert policy.inactivity_for(Channel.EMAIL).close_after == 604800


@pytest.mark.parametrize(
    "section",
    [
        {"default_queue": "missing"},
        {"queues": {"default": {"steps": []}}},
        {"queues": {"default": {"steps": [{"name": "preferred"}]}}},
        {"queues": {"default": {"steps": [{"name": "a"}, {"name": "a"}]}}},
        {"queues": {"default": {"offer_timeout": 0}}},
        {"inactivity": {"release_after": -1}},
        {"unknown_field": 1},
    ],
)
def test_an_invalid_policy_is_refused(section: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(section, DomainPolicy)


def test_a_queue_policy_step_without_skills_inherits_the_queue_skills() -> None:
    policy = DomainPolicy(
        queues={"default": QueuePolicy(skills=("vip",), steps=(StepPolicy(name="s"),))}
    )
    state = domain([agent("ann"), agent("bob", skills=["vip"])], policy=policy)
    assert assigned_to(apply(state, message("k", customer="n"), T0)) == "bob"
