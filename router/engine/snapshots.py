"""Records of the live state: the snapshots the shell saves and ``restore`` takes back.

The live state is the mutable ``__slots__`` objects of ``router.engine.state``; these
functions turn one of them into its immutable record (``router.engine.records``).
"""

from __future__ import annotations

from router.engine.records import AffinityEntry, AgentRecord, ConversationRecord, CustomerRecord
from router.engine.state import (
    NO_ATTRIBUTES,
    NONE_PASSED,
    Agent,
    Conversation,
    Customer,
    WindowState,
)

_WINDOW_URGENT = WindowState.URGENT
_WINDOW_CLOSED = WindowState.CLOSED


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
        skills=conversation.skills,
        language=conversation.language,
        attributes=NO_ATTRIBUTES if conversation.attributes is None else conversation.attributes,
        snoozed_until=conversation.snoozed_until,
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
        passed_over=NONE_PASSED
        if conversation.passed_over is None
        else dict(conversation.passed_over),
        assignment=conversation.assignment,
        message_count=conversation.message_count,
        reply_window_ends_at=conversation.window_ends_at,
        reply_window_urgent=conversation.window_state == _WINDOW_URGENT,
        reply_window_closed=conversation.window_state == _WINDOW_CLOSED,
        closed_at=None if closed is None else closed[0],
        close_reason=None if closed is None else closed[1],
        bot_id=conversation.bot,
        bot_turn_id=conversation.bot_turn_id,
        bot_turns=conversation.bot_turns,
        handoff=conversation.handoff,
        handoff_open=conversation.handoff_open,
        had_human=conversation.had_human,
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
        expectation=customer.expectation,
    )
