"""The routing rules: ``apply(state, event, now)`` and ``tick(state, now)`` return effects.

Rules (the issue's numbering):

1. A message for an ``assigned`` conversation whose owner is online goes to the owner
   (``message.routed`` with ``agent_id``): the fast path. An ``idle`` conversation whose
   owner is online with a free slot takes the slot back, same owner period.
2. A new conversation, or an open one whose owner is no longer entitled (away, offline,
   or idle with no free slot), or an overflowed one, is routed: the preferred agent is
   the customer's explicit owner, else the conversation's last owner, else the agent who
   last handled the customer on any channel. Free slot: hand it to them (``preferred``).
3. Preferred agent busy, away or offline: hold it for them up to the queue's preferred
   wait for the channel (``conversation.queued`` step ``preferred``); if they free a slot
   or come online in time, they get it first. An agent without the channel at all is
   not waited for (``conversation.fallback`` reason ``no_channel`` at once).
4. At the deadline: ``conversation.fallback``, then the queue's steps in order, each with
   its pool and wait; the pick is least occupancy on the channel, then longest idle on
   the channel, then agent id (strategy ``fallback`` once a step gave up, else ``queue``).
5. Nobody eligible: wait at the step (priority, then age) for the first pool agent who
   frees a slot (strategy ``queue``). After the last step's wait: ``conversation.fallback``
   (``to_step`` None) and ``conversation.overflowed``; the conversation leaves every
   waiting list and stays open: a manual accept, a transfer, or a new customer message
   (which restarts routing) takes it from there, else it auto-closes after inactivity.
6. Offer mode: the pick is an offer (``conversation.offered``) holding the agent's slot
   until accepted (``conversation.assigned``) or expired: the miss is recorded, the
   agent is passed over for this routing, and the next candidate of the step gets it;
   N consecutive misses set the agent away.
7. Presence online/away/offline; capacity per channel. Agents going away or offline keep
   their conversations; rule 2 re-targets them when the customer writes again.
8. Inactivity (no customer message, no agent reply): an assigned conversation releases
   its slot (``idle``), later any owned or overflowed one closes (reason ``inactive``).
9. Commands: accept (an offer made to you, or a manual pick-up of a waiting/overflowed
   conversation), close (owner or admin), transfer to an agent (online, free slot:
   ``conversation.reassigned`` + ``conversation.assigned`` strategy ``transfer``) or to a
   queue (back to waiting there; the transferring agent is passed over). Each command is
   answered with ``command.completed`` or ``command.rejected`` and a reason; a refused
   command changes nothing (every check runs before the first mutation).

What a customer message does, by conversation status (``messages._ON_MESSAGE``):
``assigned`` -> rule 1 or re-route; ``idle`` -> reclaim or re-route; ``waiting`` and
``offered`` -> recorded, routing continues; ``overflowed`` -> re-route; none open -> a new
conversation whose id is the message id.

Ids are deterministic: ``uuid5(NAMESPACE, f"{cause}/{n}")`` where the cause is the input
event id, or ``deadline:<conversation>:<due>:<kind>:<step>`` for a deadline, and ``n``
counts the ids made for that cause.

This module is the entry: ``apply``, ``tick``, ``next_deadline``, ``restore`` and
``snapshot``. The rules live in ``messages`` (1, 2), ``routing`` (2 to 5, and the drain
of freed slots), ``affinity``, ``assignment`` (offers, assignments, slots, closing; 6),
``agents`` (7, pacing, shifts), ``deadlines`` (4, 6, 8), ``windows`` (reply windows),
``outbound`` (business-started conversations, consent) and ``commands`` (9); ``lifecycle`` holds the table of status moves, ``call`` the call in
progress and its ids, ``events`` the builder of routing events, ``snapshots`` the records.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from math import copysign
from typing import assert_never

import msgspec

from router.engine.agents import (
    next_agent_deadline,
    on_agent_registered,
    on_agent_removed,
    on_agent_replied,
    on_customer_owner_set,
    on_presence_changed,
    schedule_shift,
    set_profile,
    tick_agents,
)
from router.engine.bots import fire_bot, on_bot_answer, on_handback, on_human_replied, on_takeover
from router.engine.call import Call
from router.engine.commands import (
    on_accept,
    on_close,
    on_consent_requested,
    on_decline,
    on_transfer,
    on_update,
)
from router.engine.deadlines import FIRE
from router.engine.effects import Effect
from router.engine.erasure import CustomerErasure, on_erase
from router.engine.errors import EngineError
from router.engine.identity import on_identity_changed, on_link, on_merge, on_unlink
from router.engine.messages import fast_path, on_message, on_message_changed
from router.engine.outbound import on_consent_reported, on_notified
from router.engine.policy import DomainPolicy
from router.engine.records import (
    AgentDeadlineKind,
    AgentRecord,
    AssignmentRecord,
    BotRecord,
    ConversationRecord,
    ConversationStatus,
    CustomerRecord,
    DeadlineKind,
    IdentityRecord,
    same_instant,
)
from router.engine.residency import remember
from router.engine.routing import enqueue, finish
from router.engine.snapshots import agent_record, conversation_record, customer_record
from router.engine.snooze import on_snooze
from router.engine.state import Agent, Conversation, DomainState, WindowState
from router.engine.windows import next_window, push_window, tick_windows
from schemas import (
    AgentRegistered,
    AgentRemoved,
    AgentReplied,
    BotFailed,
    BotHandoffRequested,
    BotReplied,
    BotResolved,
    ConsentReported,
    ConversationAcceptRequested,
    ConversationCloseRequested,
    ConversationDeclineRequested,
    ConversationHandbackRequested,
    ConversationSnoozeRequested,
    ConversationTakeoverRequested,
    ConversationTransferRequested,
    ConversationUpdateRequested,
    CustomerConsentRequested,
    CustomerLinkRequested,
    CustomerMergeRequested,
    CustomerNotified,
    CustomerOwnerSet,
    CustomerUnlinkRequested,
    HumanReplied,
    IdentityChanged,
    MessageChanged,
    MessageReceived,
    PresenceChanged,
)

EngineInput = (
    MessageReceived
    | AgentRegistered
    | PresenceChanged
    | CustomerOwnerSet
    | ConversationAcceptRequested
    | ConversationCloseRequested
    | ConversationTransferRequested
    | ConversationDeclineRequested
    | ConversationUpdateRequested
    | ConversationSnoozeRequested
    | AgentReplied
    | AgentRemoved
    | CustomerLinkRequested
    | CustomerUnlinkRequested
    | CustomerMergeRequested
    | CustomerNotified
    | CustomerConsentRequested
    | ConversationTakeoverRequested
    | ConversationHandbackRequested
    | HumanReplied
    | MessageChanged
    | ConsentReported
    | IdentityChanged
    | BotReplied
    | BotHandoffRequested
    | BotResolved
    | BotFailed
    | CustomerErasure
)

_FIRE = {**FIRE, DeadlineKind.BOT: fire_bot}
"""``FIRE`` and the bots' answer deadline (``router.engine.bots`` sits above the
deadlines module: it hands off through routing and commands)."""

_WAITING = ConversationStatus.WAITING
_OFFERED = ConversationStatus.OFFERED
_ASSIGNED = ConversationStatus.ASSIGNED
_OVERFLOWED = ConversationStatus.OVERFLOWED
_CLOSED = ConversationStatus.CLOSED
_NO_WAIT = 0.0
"""The wait of an assignment made on arrival: one object for all of them (``restore``)."""


def new_state(domain: str, policy: DomainPolicy) -> DomainState:
    """An empty domain: no agents, no conversations."""
    return DomainState(domain, policy)


def apply(state: DomainState, event: EngineInput, now: float) -> list[Effect]:
    """Apply one input event at ``now``; returns the effects, in order."""
    if type(event) is MessageReceived:
        fast = fast_path(state, event, now)
        if fast is not None:
            return fast
    return apply_general(state, event, now)


def apply_general(state: DomainState, event: EngineInput, now: float) -> list[Effect]:
    """``apply`` without the fast path: the general path, which every input can take
    (the fast path is rule 1 without the bookkeeping, with the same effects)."""
    call = Call(state, now, event.id)
    match event:
        case MessageReceived():
            on_message(call, event)
        case AgentRegistered():
            on_agent_registered(call, event)
        case PresenceChanged():
            on_presence_changed(call, event)
        case CustomerOwnerSet():
            on_customer_owner_set(call, event)
        case ConversationAcceptRequested():
            on_accept(call, event)
        case ConversationCloseRequested():
            on_close(call, event)
        case ConversationTransferRequested():
            on_transfer(call, event)
        case AgentReplied():
            on_agent_replied(call, event)
        case ConversationDeclineRequested():
            on_decline(call, event)
        case ConversationUpdateRequested():
            on_update(call, event)
        case ConversationSnoozeRequested():
            on_snooze(call, event)
        case AgentRemoved():
            on_agent_removed(call, event)
        case CustomerLinkRequested():
            on_link(call, event)
        case CustomerUnlinkRequested():
            on_unlink(call, event)
        case CustomerMergeRequested():
            on_merge(call, event)
        case CustomerNotified():
            on_notified(call, event)
        case CustomerConsentRequested():
            on_consent_requested(call, event)
        case ConversationTakeoverRequested():
            on_takeover(call, event)
        case ConversationHandbackRequested():
            on_handback(call, event)
        case HumanReplied():
            on_human_replied(call, event)
        case MessageChanged():
            on_message_changed(call, event)
        case ConsentReported():
            on_consent_reported(call, event)
        case IdentityChanged():
            on_identity_changed(call, event)
        case BotReplied() | BotHandoffRequested() | BotResolved() | BotFailed():
            on_bot_answer(call, event)
        case CustomerErasure():
            on_erase(call, event)
        case _:
            assert_never(event)
    return finish(call)


def tick(state: DomainState, now: float) -> list[Effect]:
    """Fire every deadline due at or before ``now``: agents' pacing and shift deadlines
    (due, agent id), then reply windows (due, conversation id), then conversations'
    deadlines (earliest first, then the longest waiting, then conversation id); again
    until none is left."""
    effects: list[Effect] = []
    if state.rematch_at is not None and state.rematch_at <= now:
        state.rematch_at = None
        call = Call(state, now, f"rematch:{now!r}")
        for agent_id in sorted(state.agents):
            agent = state.agents[agent_id]
            for channel in sorted(agent.capacity):
                if agent.has_slot(channel):
                    call.drain.append((agent, channel))
        effects.extend(finish(call))
    while True:
        fired = tick_agents(state, now, effects) | tick_windows(state, now, effects)
        due = state.pop_due(now)
        if not due:
            if fired:
                continue
            return effects
        for conversation in due:
            deadline = conversation.deadline
            kind = conversation.deadline_kind
            if (
                state.conversations.get(conversation.conversation_id) is not conversation
                or conversation.heap_due is not None
                or deadline is None
                or kind is None
                or deadline > now
            ):
                continue  # an earlier firing in this batch moved or removed it
            cause = f"deadline:{conversation.conversation_id}:{deadline!r}:{kind}:"
            call = Call(state, now, cause + conversation.step_name)
            state.schedule(conversation, None, None)
            _FIRE[kind](call, conversation)
            effects.extend(finish(call))


def next_deadline(state: DomainState) -> float | None:
    """The earliest pending deadline (stale entries are dropped on the way)."""
    return _earliest(state.next_deadline(), state)


def deadline_bound(state: DomainState) -> float | None:
    """A time no pending deadline is earlier than (None: none pending); ``next_deadline``
    when no conversation's deadline moved later or went since its heap entry was made.

    A message that moves a conversation's deadline later leaves its heap entry as it is
    (``router.engine.state``): the entry, earlier than the deadline, bounds it, and
    ``next_deadline`` re-files it at the real one. Re-filed on every call, that is a heap
    pop and push for most messages under steady traffic (0.56 µs of the router's 34 per
    message at 20,000 msg/s over 2,000 conversations); asked through the bound, once per
    conversation when its entry comes due."""
    return _earliest(state.deadlines[0][0] if state.deadlines else None, state)


def deadline_due(state: DomainState, now: float) -> bool:
    """Whether a deadline is due at or before ``now``; see ``deadline_bound``."""
    bound = deadline_bound(state)
    if bound is None or bound > now:
        return False
    due = next_deadline(state)
    return due is not None and due <= now


def _earliest(found: float | None, state: DomainState) -> float | None:
    """The earliest of ``found`` and the other kinds' deadlines (the reply windows' and
    agents' stale entries are dropped on the way: nothing else would drop those earlier
    than a live one before they are due)."""
    for due in (next_window(state), next_agent_deadline(state), state.rematch_at):
        if due is not None and (found is None or due < found):
            found = due
    return found


def restore(
    domain: str,
    policy: DomainPolicy,
    agents: Iterable[AgentRecord],
    conversations: Iterable[ConversationRecord],
    customers: Iterable[CustomerRecord],
    identities: Iterable[IdentityRecord] = (),
    bots: Iterable[BotRecord] = (),
) -> DomainState:
    """Rebuild a domain from its latest persisted snapshots (open conversations only),
    the customers given with their identity links (at least those of the open
    conversations: ``router.engine.residency``) and its bots' health.

    Agent loads are recomputed from the conversations; deadlines come back from the
    records, and one already past fires on the next ``tick``, which first lets agents
    with a free slot take waiting work (the policy may differ from the one that
    queued it). ``Restoration`` does the same in parts, as the records arrive.
    """
    restoration = Restoration(domain, policy, agents, bots)
    restoration.add_customers(customers, identities)
    restoration.add_conversations(conversations)
    return restoration.finish()


class Restoration:
    """``restore`` in parts: the agents and bots first, then the customers with their
    identity links and the open conversations, in either order and each in as many parts
    as they come (a profile with all its links in one part), then ``finish``. A takeover
    restores the conversations read so far while PostgreSQL reads the rest
    (``router.shell.recovery``)."""

    __slots__ = ("_early", "_restored", "_state")

    def __init__(
        self,
        domain: str,
        policy: DomainPolicy,
        agents: Iterable[AgentRecord],
        bots: Iterable[BotRecord] = (),
    ) -> None:
        state = self._state = DomainState(domain, policy)
        self._restored: list[tuple[Conversation, float | None, DeadlineKind | None]] = []
        self._early: dict[str, Conversation] = {}
        """By customer id, conversations restored before their customer (one of each)."""
        state.bot_health = {bot.bot_id: bot for bot in bots}
        for record in agents:
            agent = Agent(record.agent_id)
            set_profile(state, agent, record.name, record.skills, record.queues, record.capacity)
            agent.presence = record.presence
            agent.idle_since = dict(record.idle_since)
            agent.missed_offers = record.missed_offers
            agent.schedule = record.schedule
            agent.pace_due = record.pace_due
            agent.shift_due = record.shift_due
            for due, kind in (
                (record.pace_due, AgentDeadlineKind.PACE),
                (record.shift_due, AgentDeadlineKind.SHIFT),
            ):
                if due is not None:
                    heapq.heappush(state.agent_deadlines, (due, agent.agent_id, kind))
            state.agents[agent.agent_id] = agent

    def add_customers(
        self, customers: Iterable[CustomerRecord], identities: Iterable[IdentityRecord] = ()
    ) -> None:
        """Customers with all their identity links (``remember``: a link is taken with the
        profiles of the same call), in as many parts as come."""
        remember(self._state, customers, identities, self._early)

    def add_conversations(self, records: Iterable[ConversationRecord]) -> None:
        state = self._state
        compiled = state.compiled
        restored = self._restored
        customers = state.customers
        early = self._early
        for record_ in records:
            if record_.status is _CLOSED:
                continue
            queue = compiled.queues.get(record_.queue) or compiled.queues[compiled.default_queue]
            # One copy of the customer's id and of the instant both hold, as in a live
            # state (``remember`` shares them with a customer that comes later).
            customer = customers.get(record_.customer_id)
            conversation = Conversation(
                record_.conversation_id,
                record_.channel,
                state.interned.setdefault(record_.endpoint, record_.endpoint),
                record_.customer_address,
                record_.customer_id if customer is None else customer.customer_id,
                record_.conversation_key,
                queue,
                record_.priority,
                same_instant(
                    record_.opened_at, None if customer is None else customer.last_handled_at
                ),
                record_.status,
            )
            if customer is None:
                early.setdefault(conversation.customer_id, conversation)
            _restore_conversation(state, conversation, record_)
            state.conversations[conversation.conversation_id] = conversation
            state.by_key[conversation.key] = conversation
            # Only what ``finish`` needs: the decoded records can go as the load ends.
            due = same_instant(
                same_instant(record_.deadline, conversation.step_until),
                conversation.snoozed_until,
            )
            restored.append((conversation, due, record_.deadline_kind))

    def finish(self) -> DomainState:
        """The restored domain (call once, after every part)."""
        state = self._state
        for agent in state.agents.values():
            for channel in sorted(set(agent.capacity) | set(agent.load)):
                state.reindex(agent, channel)
        customers = state.customers
        for conversation, deadline, deadline_kind in self._restored:
            customer = customers.get(conversation.customer_id)
            if customer is not None and conversation.customer_id is not customer.customer_id:
                # A customer's other conversations restored before it (``remember`` shared
                # its id with one of them), or a customer with links and no record.
                conversation.customer_id = customer.customer_id
            if conversation.status is _WAITING:
                enqueue(state, conversation)
            state.schedule(conversation, deadline, deadline_kind)
            push_window(state, conversation)
        self._restored = []
        self._early = {}
        state.rematch_at = 0.0
        return state


def reconfigure(state: DomainState, policy: DomainPolicy, now: float) -> DomainState:
    """The domain's state under another routing policy (a new configuration version).

    Rebuilt as ``restore`` rebuilds a domain, from the records of its agents and open
    conversations; the customers are kept as they are. So an open conversation keeps its
    queue (the default queue when its own is gone) and its step by name (the first step
    when that one is gone), and the deadline it is waiting for: a changed wait or ladder
    applies from its next step. Agents fall into the new steps' pools at once, and the
    first ``tick`` at or after ``now`` hands waiting conversations to agents the new
    pools admit (as after a takeover).
    """
    agents = [agent_record(state.agents[key]) for key in sorted(state.agents)]
    conversations = [
        conversation_record(state.conversations[key]) for key in sorted(state.conversations)
    ]
    rebuilt = restore(state.domain, policy, agents, conversations, ())
    rebuilt.customers = state.customers
    rebuilt.identities = state.identities
    rebuilt.bot_health = state.bot_health
    rebuilt.rematch_at = now
    if policy.on_shift_end is not state.policy.on_shift_end:
        # Shift ends start or stop mattering: each schedule's next boundary, or none.
        for agent_id in sorted(rebuilt.agents):
            schedule_shift(rebuilt, rebuilt.agents[agent_id], now)
    return rebuilt


def snapshot(
    state: DomainState,
) -> tuple[list[AgentRecord], list[ConversationRecord], list[CustomerRecord]]:
    """Records of everything in the state, sorted by id (what ``restore`` takes)."""
    return (
        [agent_record(state.agents[key]) for key in sorted(state.agents)],
        [conversation_record(state.conversations[key]) for key in sorted(state.conversations)],
        [customer_record(state.customers[key]) for key in sorted(state.customers)],
    )


def bot_health(state: DomainState) -> list[BotRecord]:
    """The health of the domain's bots that failed lately, sorted by bot (what ``restore``
    takes)."""
    return [state.bot_health[key] for key in sorted(state.bot_health)]


def identity_links(state: DomainState) -> list[IdentityRecord]:
    """The domain's identity links, sorted by identity (what ``restore`` takes)."""
    return [state.identities[key] for key in sorted(state.identities)]


def _restore_conversation(
    state: DomainState, conversation: Conversation, record: ConversationRecord
) -> None:
    conversation.owner = _agent_of(state, record.owner_agent_id, record)
    conversation.offered_to = _agent_of(state, record.offered_to, record)
    conversation.preferred = _shared_agent_id(state, record.preferred_agent_id)
    queue = conversation.queue
    index = queue.index_of(record.step)
    if record.status is _OVERFLOWED:
        index = len(queue.steps)
    elif index is None:
        index = 0  # the step left the config: start the ladder over
    conversation.step_index = index
    conversation.fell_back = record.fell_back
    waiting_since = same_instant(record.waiting_since, conversation.opened_at)
    customer_at = same_instant(record.last_customer_message_at, waiting_since)
    reply_at = record.last_agent_reply_at
    activity_at = same_instant(record.last_activity_at, customer_at)
    conversation.waiting_since = waiting_since
    conversation.last_customer_message_at = customer_at
    conversation.last_agent_reply_at = reply_at
    conversation.first_response_at = same_instant(record.first_response_at, reply_at)
    conversation.last_activity_at = same_instant(activity_at, reply_at)
    conversation.step_until = record.step_until
    conversation.passed_over = dict(record.passed_over) or None
    conversation.assignment = _shared_assignment(conversation, record.assignment)
    conversation.message_count = record.message_count
    if record.skills or record.language or record.attributes:
        conversation.set_context(
            record.skills,
            record.language,
            dict(record.attributes),
            state.policy.language_skill,
        )
    conversation.snoozed_until = record.snoozed_until
    conversation.bot = record.bot_id
    conversation.bot_turn_id = record.bot_turn_id
    conversation.bot_turns = record.bot_turns
    conversation.handoff = record.handoff
    conversation.handoff_open = record.handoff_open
    conversation.had_human = record.had_human
    conversation.window_ends_at = record.reply_window_ends_at
    conversation.window_state = (
        WindowState.CLOSED
        if record.reply_window_closed
        else WindowState.URGENT
        if record.reply_window_urgent
        else WindowState.OPEN
    )
    holder = (
        conversation.owner
        if record.status is _ASSIGNED
        else conversation.offered_to
        if record.status is _OFFERED
        else None
    )
    if holder is not None:
        holder.load[conversation.channel] = holder.load.get(conversation.channel, 0) + 1
        key = (conversation.queue.name, conversation.channel)
        holder.queue_load[key] = holder.queue_load.get(key, 0) + 1


def _shared_agent_id(state: DomainState, agent_id: str | None) -> str | None:
    """The agent's own id string, where the agent is known: a restored domain holds one
    copy of each agent id, as a live one does."""
    agent = None if agent_id is None else state.agents.get(agent_id)
    return agent_id if agent is None else agent.agent_id


def _shared_assignment(
    conversation: Conversation, assignment: AssignmentRecord | None
) -> AssignmentRecord | None:
    """The open assignment with the strings and instants the conversation and its agent
    hold already (the largest part of a restored conversation otherwise)."""
    holder = conversation.owner or conversation.offered_to
    if assignment is None or holder is None or assignment.agent_id != holder.agent_id:
        return assignment
    queue = conversation.queue
    candidates = assignment.candidates
    if candidates == holder.chosen:
        candidates = holder.chosen
    offered_at = same_instant(assignment.offered_at, conversation.last_activity_at)
    return msgspec.structs.replace(
        assignment,
        conversation_id=conversation.conversation_id,
        agent_id=holder.agent_id,
        queue=queue.name if assignment.queue == queue.name else assignment.queue,
        step=conversation.step_name
        if assignment.step == conversation.step_name
        else assignment.step,
        candidates=candidates,
        waited_seconds=_NO_WAIT
        if assignment.waited_seconds == 0.0 and copysign(1.0, assignment.waited_seconds) > 0
        else assignment.waited_seconds,
        offered_at=offered_at,
        accepted_at=same_instant(assignment.accepted_at, offered_at),
    )


def _agent_of(state: DomainState, agent_id: str | None, record: ConversationRecord) -> Agent | None:
    if agent_id is None:
        return None
    agent = state.agents.get(agent_id)
    if agent is None:
        raise EngineError(
            f"conversation {record.conversation_id} refers to unknown agent {agent_id}"
        )
    return agent
