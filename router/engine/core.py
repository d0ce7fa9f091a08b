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

What a customer message does, by conversation status (the ``_ON_MESSAGE`` table):
``assigned`` -> rule 1 or re-route; ``idle`` -> reclaim or re-route; ``waiting`` and
``offered`` -> recorded, routing continues; ``overflowed`` -> re-route; none open -> a new
conversation whose id is the message id.

Ids are deterministic: ``uuid5(NAMESPACE, f"{cause}/{n}")`` where the cause is the input
event id, or ``deadline:<conversation>:<due>:<kind>:<step>`` for a deadline, and ``n``
counts the ids made for that cause.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import uuid
from collections.abc import Callable, Iterable
from typing import assert_never

import msgspec

from router.engine.effects import (
    Effect,
    Emit,
    SaveAgent,
    SaveAssignment,
    SaveConversation,
    SaveCustomer,
    SaveMessage,
)
from router.engine.errors import EngineError
from router.engine.policy import DomainPolicy, ShiftEnd
from router.engine.records import (
    AffinityEntry,
    AgentDeadlineKind,
    AgentRecord,
    AssignmentRecord,
    ConversationRecord,
    ConversationStatus,
    CustomerRecord,
    DeadlineKind,
)
from router.engine.schedule import on_shift
from router.engine.state import (
    AFFINITY_STEP,
    MANUAL_STEP,
    PREFERRED_STEP,
    TRANSFER_STEP,
    WINDOW_CLOSED,
    WINDOW_OPEN,
    WINDOW_URGENT,
    Agent,
    Conversation,
    Customer,
    DomainState,
    window_due,
)
from schemas import (
    AgentRegistered,
    AgentReplied,
    CandidateNote,
    Channel,
    CommandCompleted,
    CommandRejected,
    ConversationAcceptRequested,
    ConversationAssigned,
    ConversationClosed,
    ConversationCloseRequested,
    ConversationFallback,
    ConversationOffered,
    ConversationOverflowed,
    ConversationQueued,
    ConversationReassigned,
    ConversationReplyWindowClosed,
    ConversationTransferRequested,
    CustomerOwnerSet,
    MessageReceived,
    MessageRouted,
    Presence,
    PresenceChanged,
    RoutingEvent,
    Strategy,
)

EngineInput = (
    MessageReceived
    | AgentRegistered
    | PresenceChanged
    | CustomerOwnerSet
    | ConversationAcceptRequested
    | ConversationCloseRequested
    | ConversationTransferRequested
    | AgentReplied
)

NAMESPACE = uuid.UUID("5b0a7c4e-2f61-4d0b-9a53-7c1e8d2f4a90")
"""Namespace of every id the engine makes (events, assignments)."""
_NAMESPACE_BYTES = NAMESPACE.bytes

_ZERO = 0.0
_NONE_PASSED: dict[str, str] = {}
"""Shared by every record with nobody passed over (records are never mutated)."""
MAX_CANDIDATES = 10
"""Candidate notes kept per assignment (the chosen agent is always the last one)."""

_WAITING = ConversationStatus.WAITING
_OFFERED = ConversationStatus.OFFERED
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_OVERFLOWED = ConversationStatus.OVERFLOWED
_CLOSED = ConversationStatus.CLOSED
_ONLINE = Presence.ONLINE


_VARIANT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}
_sha1 = hashlib.sha1


def make_id(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))``, without building UUID objects (hot path)."""
    h = _sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


class _Call:
    """One ``apply`` or ``tick``: the cause of new ids and what changed (saved once)."""

    __slots__ = (
        "agents",
        "assignments",
        "cause",
        "closed",
        "conversations",
        "customers",
        "drain",
        "effects",
        "n",
        "now",
        "state",
    )

    def __init__(self, state: DomainState, now: float, cause: str):
        self.state = state
        self.now = now
        self.cause = cause
        self.n = 0
        self.effects: list[Effect] = []
        self.agents: dict[str, Agent] = {}
        self.conversations: dict[str, Conversation] = {}
        self.customers: dict[str, Customer] = {}
        self.assignments: dict[str, AssignmentRecord] = {}
        self.drain: list[tuple[Agent, Channel]] = []
        self.closed: dict[str, tuple[float, str]] = {}

    def new_id(self) -> str:
        value = make_id(f"{self.cause}/{self.n}")
        self.n += 1
        return value

    def emit(self, event: RoutingEvent) -> None:
        self.effects.append(Emit(event))

    def finish(self) -> list[Effect]:
        _drain(self)
        effects = self.effects
        for agent in self.agents.values():
            effects.append(SaveAgent(agent_record(agent)))
        closed = self.closed
        for conversation in self.conversations.values():
            record = conversation_record(conversation, closed.get(conversation.conversation_id))
            effects.append(SaveConversation(record))
        for customer in self.customers.values():
            effects.append(SaveCustomer(customer_record(customer)))
        for assignment in self.assignments.values():
            effects.append(SaveAssignment(assignment))
        return effects


# -- public API ---------------------------------------------------------------------


def new_state(domain: str, policy: DomainPolicy) -> DomainState:
    """An empty domain: no agents, no conversations."""
    return DomainState(domain, policy)


def apply(state: DomainState, event: EngineInput, now: float) -> list[Effect]:
    """Apply one input event at ``now``; returns the effects, in order."""
    if type(event) is MessageReceived:
        fast = _fast_path(state, event, now)
        if fast is not None:
            return fast
    call = _Call(state, now, event.id)
    match event:
        case MessageReceived():
            _on_message(call, event)
        case AgentRegistered():
            _on_agent_registered(call, event)
        case PresenceChanged():
            _on_presence_changed(call, event)
        case CustomerOwnerSet():
            _on_customer_owner_set(call, event)
        case ConversationAcceptRequested():
            _on_accept(call, event)
        case ConversationCloseRequested():
            _on_close(call, event)
        case ConversationTransferRequested():
            _on_transfer(call, event)
        case AgentReplied():
            _on_agent_replied(call, event)
        case _:
            assert_never(event)
    return call.finish()


def tick(state: DomainState, now: float) -> list[Effect]:
    """Fire every deadline due at or before ``now``: agents' pacing and shift deadlines
    (due, agent id), then reply windows (due, conversation id), then conversations'
    deadlines (oldest first, then conversation id); again until none is left."""
    effects: list[Effect] = []
    while True:
        fired = _tick_agents(state, now, effects) | _tick_windows(state, now, effects)
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
            call = _Call(state, now, cause + conversation.step_name)
            state.schedule(conversation, None, None)
            _FIRE[kind](call, conversation)
            effects.extend(call.finish())


def next_deadline(state: DomainState) -> float | None:
    """The earliest pending deadline (stale entries are dropped on the way)."""
    found = state.next_deadline()
    for due in (_next_window(state), _next_agent_deadline(state)):
        if due is not None and (found is None or due < found):
            found = due
    return found


def _live_window(state: DomainState, entry: tuple[float, str]) -> Conversation | None:
    conversation = state.conversations.get(entry[1])
    if conversation is None:
        return None
    urgent_within = state.policy.reply_window.urgent_within
    return conversation if window_due(conversation, urgent_within) == entry[0] else None


def _next_window(state: DomainState) -> float | None:
    heap = state.windows
    while heap:
        if _live_window(state, heap[0]) is not None:
            return heap[0][0]
        heapq.heappop(heap)
    return None


def _live_agent_deadline(state: DomainState, entry: tuple[float, str, str]) -> Agent | None:
    agent = state.agents.get(entry[1])
    if agent is None:
        return None
    current = agent.pace_due if entry[2] == AgentDeadlineKind.PACE else agent.shift_due
    return agent if current == entry[0] else None


def _next_agent_deadline(state: DomainState) -> float | None:
    heap = state.agent_deadlines
    while heap:
        if _live_agent_deadline(state, heap[0]) is not None:
            return heap[0][0]
        heapq.heappop(heap)
    return None


def _tick_agents(state: DomainState, now: float, effects: list[Effect]) -> bool:
    heap = state.agent_deadlines
    fired = False
    while heap and heap[0][0] <= now:
        entry = heapq.heappop(heap)
        agent = _live_agent_deadline(state, entry)
        if agent is None:
            continue
        due, agent_id, kind = entry
        call = _Call(state, now, f"agent-deadline:{agent_id}:{due!r}:{kind}")
        if kind == AgentDeadlineKind.PACE:
            _pace_next(call, agent)
        else:
            _fire_shift(call, agent)
        effects.extend(call.finish())
        fired = True
    return fired


def _tick_windows(state: DomainState, now: float, effects: list[Effect]) -> bool:
    heap = state.windows
    fired = False
    while heap and heap[0][0] <= now:
        entry = heapq.heappop(heap)
        conversation = _live_window(state, entry)
        if conversation is None:
            continue
        cause = f"window:{conversation.conversation_id}:{entry[0]!r}:{conversation.window_state}"
        call = _Call(state, now, cause)
        _fire_window(call, conversation)
        effects.extend(call.finish())
        fired = True
    return fired


def restore(
    domain: str,
    policy: DomainPolicy,
    agents: Iterable[AgentRecord],
    conversations: Iterable[ConversationRecord],
    customers: Iterable[CustomerRecord],
) -> DomainState:
    """Rebuild a domain from its latest persisted snapshots (open conversations only).

    Agent loads are recomputed from the conversations; deadlines come back from the
    records, and one already past fires on the next ``tick``.
    """
    state = DomainState(domain, policy)
    compiled = state.compiled
    for record in agents:
        agent = Agent(record.agent_id)
        _set_profile(state, agent, record.name, record.skills, record.queues, record.capacity)
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
    for customer_record_ in customers:
        customer = Customer(customer_record_.customer_id)
        customer.owner_agent_id = customer_record_.owner_agent_id
        customer.last_agent_id = customer_record_.last_agent_id
        customer.last_handled_at = customer_record_.last_handled_at
        if customer_record_.affinity:
            customer.affinity = [
                (entry.rank, entry.agent_id) for entry in customer_record_.affinity
            ]
        state.customers[customer.customer_id] = customer
    restored: list[tuple[Conversation, ConversationRecord]] = []
    for record_ in conversations:
        if record_.status is _CLOSED:
            continue
        queue = compiled.queues.get(record_.queue) or compiled.queues[compiled.default_queue]
        conversation = Conversation(
            record_.conversation_id,
            record_.channel,
            record_.endpoint,
            record_.customer_address,
            record_.customer_id,
            record_.conversation_key,
            queue,
            record_.priority,
            record_.opened_at,
        )
        _restore_conversation(state, conversation, record_)
        state.conversations[conversation.conversation_id] = conversation
        state.by_key[conversation.key] = conversation
        restored.append((conversation, record_))
    for agent in state.agents.values():
        for channel in sorted(set(agent.capacity) | set(agent.load)):
            state.reindex(agent, channel)
    for conversation, record_ in restored:
        if conversation.status is _WAITING:
            _enqueue(state, conversation)
        state.schedule(conversation, record_.deadline, record_.deadline_kind)
        _push_window(state, conversation)
    return state


def snapshot(
    state: DomainState,
) -> tuple[list[AgentRecord], list[ConversationRecord], list[CustomerRecord]]:
    """Records of everything in the state, sorted by id (what ``restore`` takes)."""
    return (
        [agent_record(state.agents[key]) for key in sorted(state.agents)],
        [conversation_record(state.conversations[key]) for key in sorted(state.conversations)],
        [customer_record(state.customers[key]) for key in sorted(state.customers)],
    )


# -- records ------------------------------------------------------------------------


def agent_record(agent: Agent) -> AgentRecord:
    return AgentRecord(
        agent_id=agent.agent_id,
        name=agent.name,
        skills=agent.skills,
        queues=agent.queues,
        capacity=dict(agent.capacity),
        presence=agent.presence,
        load={channel: n for channel, n in sorted(agent.load.items()) if n},
        idle_since=dict(agent.idle_since),
        missed_offers=agent.missed_offers,
        schedule=agent.schedule,
        pace_due=agent.pace_due,
        shift_due=agent.shift_due,
    )


def conversation_record(
    conversation: Conversation, closed: tuple[float, str] | None = None
) -> ConversationRecord:
    """The conversation's snapshot; ``closed`` is (when, why) for its last one."""
    owner = conversation.owner
    offered_to = conversation.offered_to
    return ConversationRecord(
        conversation_id=conversation.conversation_id,
        channel=conversation.channel,
        endpoint=conversation.endpoint,
        customer_address=conversation.customer_address,
        customer_id=conversation.customer_id,
        conversation_key=conversation.key,
        queue=conversation.queue.name,
        priority=conversation.priority,
        status=conversation.status,
        owner_agent_id=None if owner is None else owner.agent_id,
        preferred_agent_id=conversation.preferred,
        offered_to=None if offered_to is None else offered_to.agent_id,
        step=conversation.queue.names[conversation.step_index],
        fell_back=conversation.fell_back,
        waiting_since=conversation.waiting_since,
        opened_at=conversation.opened_at,
        last_customer_message_at=conversation.last_customer_message_at,
        last_agent_reply_at=conversation.last_agent_reply_at,
        first_response_at=conversation.first_response_at,
        last_activity_at=conversation.last_activity_at,
        deadline=conversation.deadline,
        deadline_kind=conversation.deadline_kind,
        step_until=conversation.step_until,
        passed_over=_NONE_PASSED
        if conversation.passed_over is None
        else dict(conversation.passed_over),
        assignment=conversation.assignment,
        message_count=conversation.message_count,
        reply_window_ends_at=conversation.window_ends_at,
        reply_window_urgent=conversation.window_state == WINDOW_URGENT,
        reply_window_closed=conversation.window_state == WINDOW_CLOSED,
        closed_at=None if closed is None else closed[0],
        close_reason=None if closed is None else closed[1],
    )


def customer_record(customer: Customer) -> CustomerRecord:
    return CustomerRecord(
        customer_id=customer.customer_id,
        owner_agent_id=customer.owner_agent_id,
        last_agent_id=customer.last_agent_id,
        last_handled_at=customer.last_handled_at,
        affinity=()
        if not customer.affinity
        else tuple(
            AffinityEntry(agent_id=agent_id, rank=rank) for rank, agent_id in customer.affinity
        ),
    )


def _restore_conversation(
    state: DomainState, conversation: Conversation, record: ConversationRecord
) -> None:
    conversation.status = record.status
    conversation.owner = _agent_of(state, record.owner_agent_id, record)
    conversation.offered_to = _agent_of(state, record.offered_to, record)
    conversation.preferred = record.preferred_agent_id
    queue = conversation.queue
    index = queue.index_of(record.step)
    if record.status is _OVERFLOWED:
        index = len(queue.steps)
    elif index is None:
        index = 0  # the step left the config: start the ladder over
    conversation.step_index = index
    conversation.fell_back = record.fell_back
    conversation.waiting_since = record.waiting_since
    conversation.last_customer_message_at = record.last_customer_message_at
    conversation.last_agent_reply_at = record.last_agent_reply_at
    conversation.first_response_at = record.first_response_at
    conversation.last_activity_at = record.last_activity_at
    conversation.step_until = record.step_until
    conversation.passed_over = dict(record.passed_over) or None
    conversation.assignment = record.assignment
    conversation.message_count = record.message_count
    conversation.window_ends_at = record.reply_window_ends_at
    conversation.window_state = (
        WINDOW_CLOSED
        if record.reply_window_closed
        else WINDOW_URGENT
        if record.reply_window_urgent
        else WINDOW_OPEN
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


def _agent_of(state: DomainState, agent_id: str | None, record: ConversationRecord) -> Agent | None:
    if agent_id is None:
        return None
    agent = state.agents.get(agent_id)
    if agent is None:
        raise EngineError(
            f"conversation {record.conversation_id} refers to unknown agent {agent_id}"
        )
    return agent


# -- customer messages --------------------------------------------------------------


def _fast_path(state: DomainState, message: MessageReceived, now: float) -> list[Effect] | None:
    """Rule 1 without the bookkeeping of a full call: owned, owner online."""
    conversation = state.by_key.get(message.conversation_key)
    if conversation is None or conversation.status is not _ASSIGNED:
        return None
    owner = conversation.owner
    if owner is None or owner.presence is not _ONLINE:
        return None
    conversation.last_customer_message_at = now
    conversation.last_activity_at = now
    conversation.message_count += 1
    if message.reply_window_ends_at is not None:
        _note_window(state, conversation, message.reply_window_ends_at, now)
    release = state.compiled.release_after[conversation.channel]
    heap_due = conversation.heap_due
    if release is not None and heap_due is not None and now + release >= heap_due:
        conversation.deadline = now + release  # the heap entry stays; it re-pushes when popped
        conversation.deadline_kind = DeadlineKind.RELEASE
    else:
        _schedule_inactivity(state, conversation)
    routed = MessageRouted(
        id=make_id(f"{message.id}/0"),
        domain=state.domain,
        occurred_at=now,
        conversation_id=conversation.conversation_id,
        channel=conversation.channel,
        customer_id=conversation.customer_id,
        queue=conversation.queue.name,
        message_id=message.id,
        provider_message_id=message.provider_message_id,
        agent_id=owner.agent_id,
        reply_window_ends_at=conversation.window_ends_at,
        reply_window_closed=conversation.window_state == WINDOW_CLOSED,
    )
    return [
        SaveMessage(message, conversation.conversation_id),
        Emit(routed),
        SaveConversation(conversation_record(conversation)),
    ]


def _on_message(call: _Call, message: MessageReceived) -> None:
    state = call.state
    now = call.now
    conversation = state.by_key.get(message.conversation_key)
    if conversation is None:
        if message.id in state.conversations:
            return  # the opening message of an open conversation, delivered again
        compiled = state.compiled
        queue = compiled.queues.get(message.queue or compiled.default_queue)
        if queue is None:
            queue = compiled.queues[compiled.default_queue]
        endpoint = state.interned.setdefault(message.endpoint, message.endpoint)
        conversation = Conversation(
            message.id,
            message.channel,
            endpoint,
            message.customer_address,
            message.customer_id,
            message.conversation_key,
            queue,
            message.priority,
            now,
        )
        state.conversations[conversation.conversation_id] = conversation
        state.by_key[conversation.key] = conversation
        call.effects.append(SaveMessage(message, conversation.conversation_id))
        if message.reply_window_ends_at is not None:
            _note_window(state, conversation, message.reply_window_ends_at, now)
        _route(call, conversation, None)
    else:
        call.effects.append(SaveMessage(message, conversation.conversation_id))
        conversation.last_customer_message_at = now
        conversation.last_activity_at = now
        conversation.message_count += 1
        if message.reply_window_ends_at is not None:
            _note_window(state, conversation, message.reply_window_ends_at, now)
        _ON_MESSAGE[conversation.status](call, conversation)
    call.conversations[conversation.conversation_id] = conversation
    owner = conversation.owner
    call.emit(
        MessageRouted(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            message_id=message.id,
            provider_message_id=message.provider_message_id,
            agent_id=owner.agent_id
            if owner is not None and conversation.status is _ASSIGNED
            else None,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == WINDOW_CLOSED,
        )
    )


def _message_to_assigned(call: _Call, conversation: Conversation) -> None:
    owner = conversation.owner
    assert owner is not None
    if owner.presence is _ONLINE:
        _schedule_inactivity(call.state, conversation)
        return
    _end_assignment(call, conversation, "owner_unavailable")
    _route(call, conversation, owner)


def _message_to_idle(call: _Call, conversation: Conversation) -> None:
    owner = conversation.owner
    assert owner is not None
    if owner.has_slot(conversation.channel):
        conversation.status = _ASSIGNED
        _take_slot(call, owner, conversation.channel)
        _schedule_inactivity(call.state, conversation)
        return
    _end_assignment(call, conversation, "owner_unavailable")
    _route(call, conversation, owner)


def _message_while_routing(call: _Call, conversation: Conversation) -> None:
    """Waiting or offered: the message is filed, routing goes on as it was."""


def _message_to_overflowed(call: _Call, conversation: Conversation) -> None:
    _route(call, conversation, None)


def _message_to_closed(call: _Call, conversation: Conversation) -> None:
    raise EngineError(f"closed conversation {conversation.conversation_id} is still indexed")


_ON_MESSAGE: dict[ConversationStatus, Callable[[_Call, Conversation], None]] = {
    _ASSIGNED: _message_to_assigned,
    _IDLE: _message_to_idle,
    _WAITING: _message_while_routing,
    _OFFERED: _message_while_routing,
    _OVERFLOWED: _message_to_overflowed,
    _CLOSED: _message_to_closed,
}


# -- routing ------------------------------------------------------------------------


def _route(call: _Call, conversation: Conversation, last_owner: Agent | None) -> None:
    """Rule 2: (re)start routing at the preferred agent, else at the first step."""
    state = call.state
    now = call.now
    channel = conversation.channel
    conversation.status = _WAITING
    conversation.owner = None
    conversation.offered_to = None
    conversation.waiting_since = now
    conversation.fell_back = False
    conversation.passed_over = None
    conversation.step_until = None
    customer = state.customers.get(conversation.customer_id)
    preferred_id: str | None = None
    if customer is not None and customer.owner_agent_id is not None:
        preferred_id = customer.owner_agent_id
    elif last_owner is not None:
        preferred_id = last_owner.agent_id
    elif customer is not None:
        preferred_id = customer.last_agent_id
    preferred = state.agents.get(preferred_id) if preferred_id is not None else None
    conversation.preferred = None if preferred is None else preferred.agent_id
    if preferred is None:
        _enter_step(call, conversation, 0)
        return
    conversation.step_index = PREFERRED_STEP
    if preferred.has_slot(channel):
        _hand_to(call, conversation, preferred, Strategy.PREFERRED)
        return
    if preferred.capacity.get(channel, 0) <= 0:
        _fall_back(call, conversation, "no_channel")
        return
    until = wait_budget_end(conversation, now)
    back = return_time(preferred, now)
    if back is not None and back > until:
        _fall_back(call, conversation, "agent_unavailable_within_budget")
        return
    conversation.step_until = until
    _wait(call, conversation)


def wait_budget_end(conversation: Conversation, now: float) -> float:
    """When the preferred hold gives up: the soonest of the queue's preferred wait for
    the channel, the first-response SLA left, and the provider's reply window left
    (never before ``now``)."""
    queue = conversation.queue
    channel = conversation.channel
    until = now + queue.preferred_wait[channel]
    sla = queue.sla.get(channel)
    if sla is not None:
        start = (
            conversation.opened_at
            if conversation.first_response_at is None
            else conversation.waiting_since
        )
        until = min(until, start + sla)
    window = conversation.window_ends_at
    if window is not None and conversation.window_state != WINDOW_CLOSED:
        until = min(until, window)
    return max(until, now)


def return_time(agent: Agent, now: float) -> float | None:
    """When an offline agent with a schedule is next due at work (None: unknown, or
    not offline, or on shift now)."""
    if agent.presence is not Presence.OFFLINE or agent.schedule is None:
        return None
    working, boundary = on_shift(agent.schedule, now)
    return None if working else boundary


def _enter_step(call: _Call, conversation: Conversation, index: int) -> None:
    queue = conversation.queue
    if index >= len(queue.steps):
        _overflow(call, conversation)
        return
    step = queue.steps[index]
    conversation.step_index = index
    wait = step.waits[conversation.channel]
    conversation.step_until = None if wait is None else call.now + wait
    _try_step(call, conversation)


def _try_step(call: _Call, conversation: Conversation) -> None:
    """Rule 4: the best available agent of the step's pool, else wait at the step."""
    step = conversation.queue.steps[conversation.step_index]
    agent = call.state.best_agent(step.pool, conversation.channel, conversation.passed_over)
    if agent is not None:
        strategy = Strategy.FALLBACK if conversation.fell_back else Strategy.QUEUE
        _hand_to(call, conversation, agent, strategy)
        return
    _wait(call, conversation)


def _wait(call: _Call, conversation: Conversation) -> None:
    state = call.state
    conversation.status = _WAITING
    _enqueue(state, conversation)
    state.schedule(conversation, conversation.step_until, DeadlineKind.STEP)
    call.conversations[conversation.conversation_id] = conversation
    _emit_queued(call, conversation)


def _emit_queued(call: _Call, conversation: Conversation) -> None:
    call.emit(
        ConversationQueued(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            step=conversation.step_name,
            preferred_agent_id=conversation.preferred,
            wait_until=conversation.step_until,
            priority=conversation.priority,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == WINDOW_CLOSED,
        )
    )


def _enqueue(state: DomainState, conversation: Conversation) -> None:
    """Put a waiting conversation on its preferred agent's hold list or its pool's."""
    channel = conversation.channel
    if conversation.step_index == PREFERRED_STEP:
        assert conversation.preferred is not None
        agent = state.agents[conversation.preferred]
        heap = agent.held.get(channel)
        if heap is None:
            heap = agent.held[channel] = []
    else:
        pool = conversation.queue.steps[conversation.step_index].pool
        key = (pool.index, channel)
        heap = state.waiting.get(key)
        if heap is None:
            heap = state.waiting[key] = []
    state.enqueue(conversation, heap)


def _fall_back(call: _Call, conversation: Conversation, reason: str) -> None:
    """The current step gave up: next step, or overflow after the last one. After the
    preferred hold comes the ``affinity`` step when configured: the customer's other
    best-scored agents with a free slot, tried at once in rank order (it never waits)."""
    conversation.wait_token = None
    queue = conversation.queue
    if conversation.step_index == PREFERRED_STEP and call.state.policy.affinity.try_top > 0:
        _emit_fallback(call, conversation, "preferred", "affinity", reason)
        conversation.fell_back = True
        conversation.step_index = AFFINITY_STEP
        call.conversations[conversation.conversation_id] = conversation
        if _try_affinity(call, conversation):
            return
        reason = "no_affinity_agent"
    index = max(conversation.step_index + 1, 0)
    call.emit(
        ConversationFallback(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=queue.name,
            from_step=conversation.step_name,
            to_step=queue.steps[index].name if index < len(queue.steps) else None,
            preferred_agent_id=conversation.preferred,
            reason=reason,
        )
    )
    conversation.fell_back = True
    call.conversations[conversation.conversation_id] = conversation
    _enter_step(call, conversation, index)


def _emit_fallback(
    call: _Call, conversation: Conversation, from_step: str, to_step: str | None, reason: str
) -> None:
    call.emit(
        ConversationFallback(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            from_step=from_step,
            to_step=to_step,
            preferred_agent_id=conversation.preferred,
            reason=reason,
        )
    )


def affinity_ranking(state: DomainState, customer_id: str, now: float) -> list[tuple[str, float]]:
    """The customer's remembered agents with their scores at ``now``, best first."""
    customer = state.customers.get(customer_id)
    if customer is None or not customer.affinity:
        return []
    half_life = state.policy.affinity.half_life
    return [(agent_id, 2.0 ** (rank - now / half_life)) for rank, agent_id in customer.affinity]


def _try_affinity(call: _Call, conversation: Conversation) -> bool:
    """Hand the conversation to the first of the customer's top-ranked agents (not the
    preferred one, not passed over, score at least ``min_score``) with a free slot."""
    state = call.state
    policy = state.policy.affinity
    customer = state.customers.get(conversation.customer_id)
    if customer is None or not customer.affinity:
        return False
    floor = (
        math.log2(policy.min_score) + call.now / policy.half_life
        if policy.min_score > 0
        else -math.inf
    )
    passed = conversation.passed_over or _NONE_PASSED
    tried = 0
    for rank, agent_id in customer.affinity:
        if agent_id == conversation.preferred or agent_id in passed:
            continue
        if tried >= policy.try_top or rank < floor:
            break
        tried += 1
        agent = state.agents.get(agent_id)
        if agent is not None and agent.has_slot(conversation.channel):
            _hand_to(call, conversation, agent, Strategy.FALLBACK)
            return True
    return False


def _bump_affinity(call: _Call, customer_id: str, agent_id: str, weight: float) -> None:
    """Add ``weight`` to the agent's decaying score for the customer; keep the best few."""
    if weight <= 0:
        return
    policy = call.state.policy.affinity
    customer = _customer(call, customer_id)
    entries = customer.affinity
    if entries is None:
        entries = customer.affinity = []
    rank = math.log2(weight) + call.now / policy.half_life
    for i, (old, known) in enumerate(entries):
        if known == agent_id:
            high, low = (old, rank) if old >= rank else (rank, old)
            rank = high + math.log2(1.0 + 2.0 ** (low - high))
            del entries[i]
            break
    entries.append((rank, agent_id))
    entries.sort(key=_affinity_order)
    del entries[policy.keep :]


def _affinity_order(entry: tuple[float, str]) -> tuple[float, str]:
    return (-entry[0], entry[1])


def _note_window(
    state: DomainState, conversation: Conversation, ends_at: float, now: float
) -> None:
    """A customer message (re)opened the provider's reply window until ``ends_at``."""
    urgent_within = state.policy.reply_window.urgent_within
    before = conversation.window_state
    conversation.window_ends_at = ends_at
    if ends_at <= now:
        conversation.window_state = WINDOW_CLOSED
    elif urgent_within is not None and ends_at - urgent_within <= now:
        conversation.window_state = WINDOW_URGENT
    else:
        conversation.window_state = WINDOW_OPEN
    _push_window(state, conversation)
    if (
        before != conversation.window_state
        and conversation.status is _WAITING
        and conversation.wait_token is not None
    ):
        _enqueue(state, conversation)  # the priority boost changed


def _push_window(state: DomainState, conversation: Conversation) -> None:
    due = window_due(conversation, state.policy.reply_window.urgent_within)
    if due is not None:
        heapq.heappush(state.windows, (due, conversation.conversation_id))


def _fire_window(call: _Call, conversation: Conversation) -> None:
    """The reply window is about to close (priority boost) or closed (flagged: replies
    need a template; a waiting conversation is announced again with the flag)."""
    state = call.state
    call.conversations[conversation.conversation_id] = conversation
    ends_at = conversation.window_ends_at
    assert ends_at is not None
    if conversation.window_state == WINDOW_OPEN and ends_at > call.now:
        conversation.window_state = WINDOW_URGENT
        _push_window(state, conversation)
        if conversation.status is _WAITING and conversation.wait_token is not None:
            _enqueue(state, conversation)
        return
    conversation.window_state = WINDOW_CLOSED
    owner = conversation.owner
    call.emit(
        ConversationReplyWindowClosed(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=call.now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            reply_window_ends_at=ends_at,
            status=str(conversation.status),
            agent_id=owner.agent_id if owner is not None else None,
        )
    )
    if conversation.status is _WAITING:
        _emit_queued(call, conversation)


def _overflow(call: _Call, conversation: Conversation) -> None:
    state = call.state
    conversation.status = _OVERFLOWED
    conversation.wait_token = None
    conversation.step_index = len(conversation.queue.steps)  # named after the last step
    conversation.step_until = None
    _schedule_inactivity(state, conversation)
    call.conversations[conversation.conversation_id] = conversation
    call.emit(
        ConversationOverflowed(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=call.now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            waited_seconds=call.now - conversation.waiting_since,
        )
    )


def _candidates(
    state: DomainState, conversation: Conversation, chosen: Agent
) -> tuple[CandidateNote, ...]:
    """Who else was considered and why they were passed over (kept short)."""
    passed = conversation.passed_over
    preferred_id = conversation.preferred
    if passed is None and (preferred_id is None or preferred_id == chosen.agent_id):
        return chosen.chosen
    passed = passed or {}
    notes: list[CandidateNote] = []
    channel = conversation.channel
    if preferred_id is not None and preferred_id != chosen.agent_id:
        reason = passed.get(preferred_id)
        if reason is None:
            preferred = state.agents.get(preferred_id)
            reason = "unknown_agent" if preferred is None else preferred.unavailable_reason(channel)
        notes.append(CandidateNote(agent_id=preferred_id, reason=reason))
    for agent_id in sorted(passed):
        if len(notes) >= MAX_CANDIDATES - 1:
            break
        if agent_id != preferred_id and agent_id != chosen.agent_id:
            notes.append(CandidateNote(agent_id=agent_id, reason=passed[agent_id]))
    notes.append(CandidateNote(agent_id=chosen.agent_id, reason="chosen"))
    return tuple(notes)


def _hand_to(call: _Call, conversation: Conversation, agent: Agent, strategy: Strategy) -> None:
    """The engine picked ``agent``: an offer in offer mode, else an assignment."""
    if conversation.queue.offer:
        _offer(call, conversation, agent, strategy)
    else:
        _assign(call, conversation, agent, strategy, None)


def _offer(call: _Call, conversation: Conversation, agent: Agent, strategy: Strategy) -> None:
    state = call.state
    now = call.now
    conversation.wait_token = None
    record = AssignmentRecord(
        assignment_id=call.new_id(),
        conversation_id=conversation.conversation_id,
        agent_id=agent.agent_id,
        channel=conversation.channel,
        queue=conversation.queue.name,
        strategy=strategy,
        step=conversation.step_name,
        waited_seconds=now - conversation.waiting_since,
        candidates=_candidates(state, conversation, agent),
        offered_at=now,
    )
    conversation.assignment = record
    call.assignments[record.assignment_id] = record
    conversation.status = _OFFERED
    conversation.offered_to = agent
    _take_slot(call, agent, conversation.channel)
    expires_at = now + conversation.queue.offer_timeout
    state.schedule(conversation, expires_at, DeadlineKind.OFFER)
    call.conversations[conversation.conversation_id] = conversation
    call.emit(
        ConversationOffered(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            agent_id=agent.agent_id,
            strategy=strategy,
            step=conversation.step_name,
            expires_at=expires_at,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == WINDOW_CLOSED,
        )
    )


def _assign(
    call: _Call,
    conversation: Conversation,
    agent: Agent,
    strategy: Strategy,
    offer: AssignmentRecord | None,
) -> None:
    """Make ``agent`` the owner; ``offer`` is the accepted offer (its slot is held)."""
    state = call.state
    now = call.now
    conversation.wait_token = None
    if offer is not None:
        record = msgspec.structs.replace(offer, accepted_at=now)
    else:
        record = AssignmentRecord(
            assignment_id=call.new_id(),
            conversation_id=conversation.conversation_id,
            agent_id=agent.agent_id,
            channel=conversation.channel,
            queue=conversation.queue.name,
            strategy=strategy,
            step=conversation.step_name,
            waited_seconds=(now - conversation.waiting_since) or _ZERO,
            candidates=_candidates(state, conversation, agent),
            offered_at=now,
            accepted_at=now,
        )
        _take_slot(call, agent, conversation.channel)
    conversation.assignment = record
    call.assignments[record.assignment_id] = record
    conversation.status = _ASSIGNED
    conversation.owner = agent
    conversation.offered_to = None
    conversation.step_until = None
    conversation.last_activity_at = now
    _schedule_inactivity(state, conversation)
    call.conversations[conversation.conversation_id] = conversation
    customer = _customer(call, conversation.customer_id)
    customer.last_agent_id = agent.agent_id
    customer.last_handled_at = now
    _bump_affinity(
        call, conversation.customer_id, agent.agent_id, state.policy.affinity.assigned_weight
    )
    call.emit(
        ConversationAssigned(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            agent_id=agent.agent_id,
            assignment_id=record.assignment_id,
            strategy=record.strategy,
            step=record.step,
            waited_seconds=record.waited_seconds,
            preferred_agent_id=conversation.preferred,
            candidates=record.candidates,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == WINDOW_CLOSED,
        )
    )


def _end_assignment(call: _Call, conversation: Conversation, reason: str) -> None:
    """Close the current owner period (or pending offer) and free its slot."""
    record = conversation.assignment
    if record is not None:
        ended = msgspec.structs.replace(record, ended_at=call.now, end_reason=reason)
        call.assignments[ended.assignment_id] = ended
        conversation.assignment = None
    if conversation.status is _ASSIGNED and conversation.owner is not None:
        _free_slot(call, conversation.owner, conversation.channel)
    elif conversation.status is _OFFERED and conversation.offered_to is not None:
        _free_slot(call, conversation.offered_to, conversation.channel)
    conversation.owner = None
    conversation.offered_to = None
    call.conversations[conversation.conversation_id] = conversation


def _take_slot(call: _Call, agent: Agent, channel: Channel) -> None:
    agent.load[channel] = agent.load.get(channel, 0) + 1
    agent.idle_since[channel] = call.now
    call.state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent


def _free_slot(call: _Call, agent: Agent, channel: Channel) -> None:
    load = agent.load.get(channel, 0)
    if load <= 0:
        raise EngineError(f"agent {agent.agent_id} has no {channel} slot to free")
    agent.load[channel] = load - 1
    call.state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    call.drain.append((agent, channel))


def _drain(call: _Call) -> None:
    """Agents who gained a free slot take waiting work: their held conversations first
    (rule 3), then the best waiter of their pools (priority, then age, then id)."""
    while call.drain:
        agent, channel = call.drain.pop(0)
        while agent.has_slot(channel) and _take_one(call, agent, channel):
            pass


def _take_one(call: _Call, agent: Agent, channel: Channel) -> bool:
    """Hand the agent (who has a free slot) one waiting conversation, if any."""
    state = call.state
    found = state.first_waiting(agent.held.get(channel), agent.agent_id)
    if found is not None:
        _hand_to(call, found[1], agent, Strategy.PREFERRED)
        return True
    best = None
    for pool in agent.pools:
        candidate = state.first_waiting(state.waiting.get((pool.index, channel)), agent.agent_id)
        if candidate is not None and (best is None or candidate[0] < best[0]):
            best = candidate
    if best is None:
        return False
    _hand_to(call, best[1], agent, Strategy.QUEUE)
    return True


def _reindex_all(state: DomainState, agent: Agent) -> None:
    for channel in sorted(set(agent.capacity) | set(agent.version)):
        state.reindex(agent, channel)


def _pace_next(call: _Call, agent: Agent) -> None:
    """Login pacing: hand the agent at most one waiting conversation now; if one was
    handed, no automatic hand-over until ``login_pace`` seconds later (a deadline)."""
    state = call.state
    agent.pace_due = None
    _reindex_all(state, agent)
    call.agents[agent.agent_id] = agent
    handed = False
    for channel in sorted(agent.capacity):
        if agent.has_slot(channel) and _take_one(call, agent, channel):
            handed = True
            break
    pace = state.policy.login_pace
    if handed and pace is not None:
        agent.pace_due = due = call.now + pace
        heapq.heappush(state.agent_deadlines, (due, agent.agent_id, AgentDeadlineKind.PACE))
        _reindex_all(state, agent)
    elif not handed:
        _drain_all(call, agent)


def _schedule_shift(state: DomainState, agent: Agent, now: float) -> None:
    """Re-homing at shift end needs the next boundary of the agent's schedule."""
    agent.shift_due = None
    if agent.schedule is None or state.policy.on_shift_end is not ShiftEnd.REHOME:
        return
    _, boundary = on_shift(agent.schedule, now)
    if boundary is not None:
        agent.shift_due = boundary
        heapq.heappush(state.agent_deadlines, (boundary, agent.agent_id, AgentDeadlineKind.SHIFT))


def waiting_on_business(conversation: Conversation) -> bool:
    """The customer wrote last: no agent reply since their last message."""
    reply = conversation.last_agent_reply_at
    return reply is None or reply < conversation.last_customer_message_at


def _fire_shift(call: _Call, agent: Agent) -> None:
    """A shift boundary: at shift end, the agent's owned conversations waiting on the
    business go back through the ladder (the agent passed over); those waiting on the
    customer stay theirs."""
    state = call.state
    schedule = agent.schedule
    call.agents[agent.agent_id] = agent
    if schedule is None:
        agent.shift_due = None
        return
    working, _ = on_shift(schedule, call.now)
    if not working:
        owned = sorted(
            (
                conversation
                for conversation in state.conversations.values()
                if conversation.owner is agent
                and conversation.status in (_ASSIGNED, _IDLE)
                and waiting_on_business(conversation)
            ),
            key=_conversation_id,
        )
        for conversation in owned:
            _rehome(call, conversation, agent)
    _schedule_shift(state, agent, call.now)


def _conversation_id(conversation: Conversation) -> str:
    return conversation.conversation_id


def _rehome(call: _Call, conversation: Conversation, agent: Agent) -> None:
    _end_assignment(call, conversation, "shift_ended")
    conversation.status = _WAITING
    conversation.waiting_since = call.now
    conversation.preferred = agent.agent_id
    conversation.passed_over = {agent.agent_id: "shift_ended"}
    conversation.step_until = None
    conversation.step_index = PREFERRED_STEP
    _fall_back(call, conversation, "shift_ended")


def _drain_all(call: _Call, agent: Agent) -> None:
    for channel in sorted(agent.capacity):
        call.drain.append((agent, channel))


def _schedule_inactivity(state: DomainState, conversation: Conversation) -> None:
    """Rule 8: release the slot of an assigned conversation, close an idle/overflowed one."""
    compiled = state.compiled
    channel = conversation.channel
    if conversation.status is _ASSIGNED:
        release = compiled.release_after[channel]
        if release is not None:
            state.schedule(
                conversation, conversation.last_activity_at + release, DeadlineKind.RELEASE
            )
            return
    close = compiled.close_after[channel]
    state.schedule(
        conversation,
        None if close is None else conversation.last_activity_at + close,
        DeadlineKind.CLOSE,
    )


def _customer(call: _Call, customer_id: str) -> Customer:
    customers = call.state.customers
    customer = customers.get(customer_id)
    if customer is None:
        customer = customers[customer_id] = Customer(customer_id)
    call.customers[customer_id] = customer
    return customer


def _close(call: _Call, conversation: Conversation, reason: str) -> None:
    state = call.state
    owner = conversation.owner
    if reason == "resolved" and owner is not None and conversation.status in (_ASSIGNED, _IDLE):
        weight = state.policy.affinity.resolved_weight
        _bump_affinity(call, conversation.customer_id, owner.agent_id, weight)
    _end_assignment(call, conversation, f"closed:{reason}")
    conversation.status = _CLOSED
    call.closed[conversation.conversation_id] = (call.now, reason)
    conversation.wait_token = None
    conversation.step_until = None
    state.schedule(conversation, None, None)
    del state.conversations[conversation.conversation_id]
    if state.by_key.get(conversation.key) is conversation:
        del state.by_key[conversation.key]
    call.emit(
        ConversationClosed(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=call.now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            agent_id=None if owner is None else owner.agent_id,
            reason=reason,
        )
    )


# -- deadlines ----------------------------------------------------------------------


def _fire_step(call: _Call, conversation: Conversation) -> None:
    if conversation.status is not _WAITING:
        raise EngineError(f"step deadline of {conversation.status} {conversation.conversation_id}")
    _fall_back(call, conversation, "timeout")


def _fire_offer(call: _Call, conversation: Conversation) -> None:
    agent = conversation.offered_to
    if conversation.status is not _OFFERED or agent is None:
        raise EngineError(f"offer deadline of {conversation.status} {conversation.conversation_id}")
    _end_assignment(call, conversation, "offer_missed")
    conversation.status = _WAITING
    passed = conversation.passed_over
    if passed is None:
        passed = conversation.passed_over = {}
    passed[agent.agent_id] = "offer_missed"
    agent.missed_offers += 1
    limit = call.state.policy.away_after_missed_offers
    if limit is not None and agent.missed_offers >= limit and agent.presence is _ONLINE:
        agent.presence = Presence.AWAY
        for channel in sorted(set(agent.capacity) | set(agent.version)):
            call.state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    if conversation.step_index in (PREFERRED_STEP, AFFINITY_STEP):
        _fall_back(call, conversation, "offer_missed")
    elif conversation.step_until is not None and conversation.step_until <= call.now:
        _fall_back(call, conversation, "timeout")
    else:
        _try_step(call, conversation)


def _fire_release(call: _Call, conversation: Conversation) -> None:
    owner = conversation.owner
    if conversation.status is not _ASSIGNED or owner is None:
        raise EngineError(f"release of {conversation.status} {conversation.conversation_id}")
    conversation.status = _IDLE
    _free_slot(call, owner, conversation.channel)
    _schedule_inactivity(call.state, conversation)
    call.conversations[conversation.conversation_id] = conversation


def _fire_close(call: _Call, conversation: Conversation) -> None:
    call.conversations[conversation.conversation_id] = conversation
    _close(call, conversation, "inactive")


_FIRE: dict[DeadlineKind, Callable[[_Call, Conversation], None]] = {
    DeadlineKind.STEP: _fire_step,
    DeadlineKind.OFFER: _fire_offer,
    DeadlineKind.RELEASE: _fire_release,
    DeadlineKind.CLOSE: _fire_close,
}


# -- agents and customers -----------------------------------------------------------


def _set_profile(
    state: DomainState,
    agent: Agent,
    name: str,
    skills: tuple[str, ...],
    queues: tuple[str, ...],
    capacity: dict[Channel, int],
) -> None:
    agent.name = name
    agent.skills = skills
    agent.queues = queues
    agent.capacity = {channel: n for channel, n in capacity.items() if n > 0}
    for channel in agent.capacity:
        agent.load.setdefault(channel, 0)  # allocated once, not on the first assignment
    skill_set = frozenset(skills)
    agent.pools = tuple(pool for pool in state.compiled.pools if pool.admits(queues, skill_set))


def _on_agent_registered(call: _Call, event: AgentRegistered) -> None:
    state = call.state
    agent = state.agents.get(event.agent_id)
    if agent is None:
        agent = state.agents[event.agent_id] = Agent(event.agent_id)
    _set_profile(state, agent, event.name, event.skills, event.queues, event.capacity)
    agent.schedule = event.schedule
    _schedule_shift(state, agent, call.now)
    for channel in agent.capacity:
        agent.idle_since.setdefault(channel, call.now)
    for channel in sorted(set(agent.capacity) | set(agent.version)):
        state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    _drain_all(call, agent)


def _on_presence_changed(call: _Call, event: PresenceChanged) -> None:
    state = call.state
    agent = state.agents.get(event.agent_id)
    if agent is None or agent.presence is event.status:
        return
    agent.presence = event.status
    if event.status is _ONLINE:
        agent.missed_offers = 0
    for channel in sorted(set(agent.capacity) | set(agent.version)):
        state.reindex(agent, channel)
    call.agents[agent.agent_id] = agent
    if event.status is _ONLINE:
        if state.policy.login_pace is not None:
            _pace_next(call, agent)
        else:
            _drain_all(call, agent)


def _on_customer_owner_set(call: _Call, event: CustomerOwnerSet) -> None:
    customer = _customer(call, event.customer_id)
    customer.owner_agent_id = event.agent_id


def _on_agent_replied(call: _Call, event: AgentReplied) -> None:
    conversation = call.state.conversations.get(event.conversation_id)
    if conversation is None:
        return
    now = call.now
    conversation.last_agent_reply_at = now
    if conversation.first_response_at is None:
        conversation.first_response_at = now
    conversation.last_activity_at = now
    if conversation.status in (_ASSIGNED, _IDLE, _OVERFLOWED):
        _schedule_inactivity(call.state, conversation)
    call.conversations[conversation.conversation_id] = conversation


# -- commands -----------------------------------------------------------------------


def _reject(call: _Call, command_id: str, reason: str, conversation_id: str | None) -> None:
    call.emit(
        CommandRejected(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            command_id=command_id,
            reason=reason,
            conversation_id=conversation_id,
        )
    )


def _complete(call: _Call, command_id: str, conversation_id: str) -> None:
    call.emit(
        CommandCompleted(
            id=call.new_id(),
            domain=call.state.domain,
            occurred_at=call.now,
            command_id=command_id,
            conversation_id=conversation_id,
        )
    )


def _on_accept(call: _Call, event: ConversationAcceptRequested) -> None:
    state = call.state
    conversation = state.conversations.get(event.conversation_id)
    agent = state.agents.get(event.agent_id)
    refusal: str | None = None
    if conversation is None:
        refusal = "unknown_conversation"
    elif agent is None:
        refusal = "unknown_agent"
    elif conversation.status is _OFFERED:
        if conversation.offered_to is not agent:
            refusal = "not_offered_to_agent"
    elif conversation.status in (_WAITING, _OVERFLOWED):
        reason = agent.unavailable_reason(conversation.channel)
        if reason != "chosen":
            refusal = reason
    elif conversation.owner is agent:
        refusal = "already_owner"
    else:
        refusal = "owned_by_another_agent"
    if refusal is not None or conversation is None or agent is None:
        _reject(call, event.id, refusal or "unknown", event.conversation_id)
        return
    if conversation.status is _OFFERED:
        offer = conversation.assignment
        assert offer is not None
        agent.missed_offers = 0
        call.agents[agent.agent_id] = agent
        _assign(call, conversation, agent, offer.strategy, offer)
    else:
        conversation.step_index = MANUAL_STEP
        _assign(call, conversation, agent, Strategy.MANUAL, None)
    _complete(call, event.id, conversation.conversation_id)


def _acting_agent_refusal(conversation: Conversation, agent_id: str | None) -> str | None:
    """Agents act only on conversations they own; ``None`` is an admin."""
    if agent_id is None:
        return None
    owner = conversation.owner
    if owner is None or owner.agent_id != agent_id:
        return "not_owner"
    return None


def _on_close(call: _Call, event: ConversationCloseRequested) -> None:
    conversation = call.state.conversations.get(event.conversation_id)
    if conversation is None:
        _reject(call, event.id, "unknown_conversation", event.conversation_id)
        return
    refusal = _acting_agent_refusal(conversation, event.agent_id)
    if refusal is not None:
        _reject(call, event.id, refusal, event.conversation_id)
        return
    call.conversations[conversation.conversation_id] = conversation
    _close(call, conversation, event.reason)
    _complete(call, event.id, conversation.conversation_id)


def _on_transfer(call: _Call, event: ConversationTransferRequested) -> None:
    state = call.state
    conversation = state.conversations.get(event.conversation_id)
    if conversation is None:
        _reject(call, event.id, "unknown_conversation", event.conversation_id)
        return
    refusal = _acting_agent_refusal(conversation, event.agent_id)
    target = None
    queue = None
    if refusal is None and (event.to_agent_id is None) == (event.to_queue is None):
        refusal = "needs_exactly_one_of_to_agent_id_or_to_queue"
    if refusal is None and event.to_agent_id is not None:
        target = state.agents.get(event.to_agent_id)
        if target is None:
            refusal = "unknown_agent"
        elif target is conversation.owner:
            refusal = "already_owner"
        elif target is conversation.offered_to:
            refusal = "already_offered"
        else:
            reason = target.unavailable_reason(conversation.channel)
            refusal = None if reason == "chosen" else reason
    if refusal is None and event.to_queue is not None:
        queue = state.compiled.queues.get(event.to_queue)
        if queue is None:
            refusal = "unknown_queue"
    if refusal is not None:
        _reject(call, event.id, refusal, event.conversation_id)
        return
    previous = conversation.owner
    was_owned = conversation.status in (_ASSIGNED, _IDLE)
    _end_assignment(call, conversation, "transferred")
    if queue is not None:
        conversation.queue = queue
    call.emit(
        ConversationReassigned(
            id=call.new_id(),
            domain=state.domain,
            occurred_at=call.now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            customer_id=conversation.customer_id,
            queue=conversation.queue.name,
            from_agent_id=None if previous is None else previous.agent_id,
            to_agent_id=None if target is None else target.agent_id,
            to_queue=event.to_queue,
        )
    )
    conversation.wait_token = None
    if was_owned:
        conversation.waiting_since = call.now
    if target is not None:
        conversation.step_index = TRANSFER_STEP
        _assign(call, conversation, target, Strategy.TRANSFER, None)
    else:
        conversation.status = _WAITING
        conversation.waiting_since = call.now
        conversation.fell_back = False
        conversation.preferred = None
        conversation.passed_over = None if previous is None else {previous.agent_id: "transferred"}
        _enter_step(call, conversation, 0)
    _complete(call, event.id, conversation.conversation_id)
