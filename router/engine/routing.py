"""The ladder (rules 2 to 5): preferred agent, the affinity step, the queue's steps, overflow.

``route`` (re)starts routing at the preferred agent, else at the first step; each step
hands the conversation to the best available agent of its pool or waits there until its
deadline gives up (``fall_back``). Agents who free a slot take waiting work when the call
finishes (``finish``): their held conversations first, then the best waiter of their
pools.
"""

from __future__ import annotations

from router.engine.affinity import affinity_agent
from router.engine.assignment import end_assignment, hand_to, schedule_inactivity, take_slot
from router.engine.call import Call
from router.engine.effects import Effect
from router.engine.events import conversation_event
from router.engine.lifecycle import set_status
from router.engine.lines import WaitEntry, WaitLine
from router.engine.outbound import intended_agent
from router.engine.policy import AfterHours
from router.engine.records import ConversationStatus, DeadlineKind
from router.engine.schedule import on_shift
from router.engine.state import (
    Agent,
    Conversation,
    DomainState,
    LadderStep,
    WindowState,
)
from router.engine.waiting import line_position
from schemas import (
    Channel,
    ConversationFallback,
    ConversationOutsideHours,
    ConversationOverflowed,
    ConversationQueued,
    Presence,
    Strategy,
)

_WAITING = ConversationStatus.WAITING
_ASSIGNED = ConversationStatus.ASSIGNED
_OVERFLOWED = ConversationStatus.OVERFLOWED
_PREFERRED = LadderStep.PREFERRED
_AFFINITY = LadderStep.AFFINITY
_AFTER_HOURS = LadderStep.AFTER_HOURS
_WINDOW_CLOSED = WindowState.CLOSED


def route(
    call: Call, conversation: Conversation, last_owner: Agent | None, since: float | None = None
) -> None:
    """Rule 2: (re)start routing at the preferred agent, else at the first step; outside
    the queue's business hours, its after-hours rule first (``held_outside_hours``).
    ``since``: when the conversation started waiting, if before now."""
    state = call.state
    now = call.now
    channel = conversation.channel
    set_status(call, conversation, _WAITING)
    conversation.owner = None
    conversation.offered_to = None
    conversation.waiting_since = now if since is None else since
    conversation.fell_back = False
    conversation.passed_over = None
    conversation.step_until = None
    if held_outside_hours(call, conversation):
        return
    preferred = _preferred_agent(state, conversation, last_owner, call.now)
    conversation.preferred = None if preferred is None else preferred.agent_id
    if preferred is None:
        enter_step(call, conversation, 0)
        return
    conversation.step_index = _PREFERRED
    if preferred.may_take(conversation):
        hand_to(call, conversation, preferred, Strategy.PREFERRED)
        return
    if preferred.capacity.get(channel, 0) <= 0:
        fall_back(call, conversation, "no_channel")
        return
    if not conversation.required <= preferred.skill_set:
        fall_back(call, conversation, "missing_skill")
        return
    until = wait_budget_end(conversation, now)
    back = return_time(preferred, now)
    if back is not None and back > until:
        fall_back(call, conversation, "agent_unavailable_within_budget")
        return
    conversation.step_until = until
    wait(call, conversation)


def _preferred_agent(
    state: DomainState, conversation: Conversation, last_owner: Agent | None, now: float
) -> Agent | None:
    """The agent a business-started message named to answer (``router.engine.outbound``
    rule 3), else the customer's explicit owner, else the conversation's last owner, else
    the agent who last handled the customer: the first of them still in the domain (an
    agent who left is nobody's preferred agent)."""
    agents = state.agents
    customer = state.customers.get(conversation.customer_id)
    intended = intended_agent(state, customer, now)
    if intended is not None:
        return intended
    if customer is not None and customer.owner_agent_id is not None:
        owner = agents.get(customer.owner_agent_id)
        if owner is not None:
            return owner
    if last_owner is not None and agents.get(last_owner.agent_id) is last_owner:
        return last_owner
    if customer is not None and customer.last_agent_id is not None:
        return agents.get(customer.last_agent_id)
    return None


def reclaim(call: Call, conversation: Conversation) -> None:
    """An idle conversation needs its owner again: they take its slot back when they may,
    else it is routed with them as its last owner (rule 3: the customer's explicit owner,
    if any, comes before them)."""
    owner = conversation.owner
    assert owner is not None
    if owner.may_take(conversation):
        set_status(call, conversation, _ASSIGNED)
        take_slot(call, owner, conversation)
        schedule_inactivity(call.state, conversation)
        return
    end_assignment(call, conversation, "owner_unavailable")
    route(call, conversation, owner)


def held_outside_hours(call: Call, conversation: Conversation) -> bool:
    """Outside its queue's business hours, a conversation reaching the queue follows the
    queue's after-hours rule: on to its ``after_hours_queue`` (whose own hours then
    apply), or held, offered to nobody, until the queue opens (``notify`` says so with a
    ``conversation.outside_hours`` event). True when it is held."""
    queue = conversation.queue
    calendar = queue.calendar
    if calendar is None or calendar.is_open(call.now):
        return False
    if queue.after_hours_queue is not None:
        conversation.queue = queue.after_hours_queue
        call.conversations[conversation.conversation_id] = conversation
        return held_outside_hours(call, conversation)
    opens = calendar.next_open(call.now)
    conversation.step_index = _AFTER_HOURS
    conversation.preferred = None
    conversation.step_until = opens
    call.state.leave_line(conversation)
    call.conversations[conversation.conversation_id] = conversation
    call.state.schedule(conversation, opens, DeadlineKind.OPENS)
    emit_queued(call, conversation)
    if queue.after_hours is AfterHours.NOTIFY:
        call.emit(
            conversation_event(
                ConversationOutsideHours,
                call,
                conversation,
                opens_at=opens,
                calendar=queue.calendar_name,
            )
        )
    return True


def wait_budget_end(conversation: Conversation, now: float) -> float:
    """When the preferred hold gives up: the soonest of the queue's preferred wait for
    the channel, the first-response SLA left (in business time when the queue has
    business hours), and the provider's reply window left (never before ``now``)."""
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
        calendar = queue.calendar
        due = start + sla if calendar is None else calendar.add_business_seconds(start, sla)
        if due is not None:
            until = min(until, due)
    window = conversation.window_ends_at
    if window is not None and conversation.window_state != _WINDOW_CLOSED:
        until = min(until, window)
    return max(until, now)


def return_time(agent: Agent, now: float) -> float | None:
    """When an offline agent with a schedule is next due at work (None: unknown, or
    not offline, or on shift now)."""
    if agent.presence is not Presence.OFFLINE or agent.schedule is None:
        return None
    working, boundary = on_shift(agent.schedule, now)
    return None if working else boundary


def enter_step(call: Call, conversation: Conversation, index: int) -> None:
    queue = conversation.queue
    if index >= len(queue.steps):
        _overflow(call, conversation)
        return
    step = queue.steps[index]
    conversation.step_index = index
    step_wait = step.waits[conversation.channel]
    conversation.step_until = None if step_wait is None else call.now + step_wait
    try_step(call, conversation)


def try_step(call: Call, conversation: Conversation) -> None:
    """Rule 4: the best available agent of the step's pool, else wait at the step."""
    step = conversation.queue.steps[conversation.step_index]
    agent = call.state.best_agent(
        step.pool, conversation.channel, conversation.passed_over, conversation
    )
    if agent is not None:
        strategy = Strategy.FALLBACK if conversation.fell_back else Strategy.QUEUE
        hand_to(call, conversation, agent, strategy)
        return
    wait(call, conversation)


def wait(call: Call, conversation: Conversation) -> None:
    state = call.state
    set_status(call, conversation, _WAITING)
    enqueue(state, conversation)
    state.schedule(conversation, conversation.step_until, DeadlineKind.STEP)
    emit_queued(call, conversation)


def emit_queued(call: Call, conversation: Conversation) -> None:
    call.emit(
        conversation_event(
            ConversationQueued,
            call,
            conversation,
            step=conversation.step_name,
            preferred_agent_id=conversation.preferred,
            wait_until=conversation.step_until,
            priority=conversation.priority,
            reply_window_ends_at=conversation.window_ends_at,
            reply_window_closed=conversation.window_state == _WINDOW_CLOSED,
            position=line_position(call.state, conversation),
        )
    )


def enqueue(state: DomainState, conversation: Conversation) -> None:
    """Put a waiting conversation on its preferred agent's hold line or its pool's (one
    held outside business hours waits on no line)."""
    channel = conversation.channel
    if conversation.step_index == _AFTER_HOURS:
        state.leave_line(conversation)
        return
    if conversation.step_index == _PREFERRED:
        assert conversation.preferred is not None
        agent = state.agents[conversation.preferred]
        line = agent.held.get(channel)
        if line is None:
            line = agent.held[channel] = WaitLine()
    else:
        pool = conversation.queue.steps[conversation.step_index].pool
        key = (pool.index, channel)
        line = state.waiting.get(key)
        if line is None:
            line = state.waiting[key] = WaitLine()
    state.enqueue(conversation, line)


def fall_back(call: Call, conversation: Conversation, reason: str) -> None:
    """The current step gave up: next step, or overflow after the last one. After the
    preferred hold comes the ``affinity`` step when configured: the customer's other
    best-scored agents with a free slot, tried at once in rank order (it never waits)."""
    call.state.leave_line(conversation)
    queue = conversation.queue
    if conversation.step_index == _PREFERRED and call.state.policy.affinity.try_top > 0:
        _emit_fallback(call, conversation, conversation.step_name, _AFFINITY.step_name, reason)
        conversation.fell_back = True
        conversation.step_index = _AFFINITY
        call.conversations[conversation.conversation_id] = conversation
        agent = affinity_agent(call.state, conversation, call.now)
        if agent is not None:
            hand_to(call, conversation, agent, Strategy.FALLBACK)
            return
        reason = "no_affinity_agent"
    index = max(conversation.step_index + 1, 0)
    to_step = queue.steps[index].name if index < len(queue.steps) else None
    _emit_fallback(call, conversation, conversation.step_name, to_step, reason)
    conversation.fell_back = True
    call.conversations[conversation.conversation_id] = conversation
    enter_step(call, conversation, index)


def _emit_fallback(
    call: Call, conversation: Conversation, from_step: str, to_step: str | None, reason: str
) -> None:
    call.emit(
        conversation_event(
            ConversationFallback,
            call,
            conversation,
            from_step=from_step,
            to_step=to_step,
            preferred_agent_id=conversation.preferred,
            reason=reason,
        )
    )


def _overflow(call: Call, conversation: Conversation) -> None:
    state = call.state
    set_status(call, conversation, _OVERFLOWED)
    state.leave_line(conversation)
    conversation.step_index = len(conversation.queue.steps)  # named after the last step
    conversation.step_until = None
    schedule_inactivity(state, conversation)
    call.emit(
        conversation_event(
            ConversationOverflowed,
            call,
            conversation,
            waited_seconds=call.now - conversation.waiting_since,
        )
    )


def finish(call: Call) -> list[Effect]:
    """End a call: agents who gained a free slot take waiting work (``drain``), then the
    call's effects and saves."""
    _drain(call)
    return call.effects_and_saves()


def _drain(call: Call) -> None:
    """Agents who gained a free slot take waiting work: their held conversations first
    (rule 3), then the best waiter of their pools (priority, then age, then id)."""
    while call.drain:
        agent, channel = call.drain.pop(0)
        while agent.has_slot(channel) and take_one(call, agent, channel):
            pass


def take_held(call: Call, agent: Agent, channel: Channel) -> bool:
    """Hand the agent (who has a free slot) the first conversation held for them, if any."""
    found = call.state.first_waiting(agent.held.get(channel), agent)
    if found is None:
        return False
    hand_to(call, found[1], agent, Strategy.PREFERRED)
    return True


def take_one(call: Call, agent: Agent, channel: Channel) -> bool:
    """Hand the agent (who has a free slot) one waiting conversation, if any."""
    state = call.state
    if take_held(call, agent, channel):
        return True
    best: tuple[WaitEntry, Conversation] | None = None
    for pool in agent.pools:
        candidate = state.first_waiting(state.waiting.get((pool.index, channel)), agent)
        if candidate is not None and (best is None or candidate[0] < best[0]):
            best = candidate
    if best is None:
        return False
    hand_to(call, best[1], agent, Strategy.QUEUE)
    return True
