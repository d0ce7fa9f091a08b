"""Request and response bodies of the router API (also the source of ``/openapi.json``).

Times are seconds since the Unix epoch (UTC), as in the events.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas import Attachment, Channel, Presence

AgentId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@:-]+$")]
QueueName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Capacity = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


# -- requests -----------------------------------------------------------------------


class AgentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Register or update an agent (the whole profile)."""

    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    skills: Annotated[
        tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=64)], ...],
        msgspec.Meta(max_length=100),
    ] = ()
    queues: Annotated[tuple[QueueName, ...], msgspec.Meta(max_length=100)] = ()
    capacity: dict[Channel, Capacity] = {}
    """Concurrent conversations per channel; a channel absent here is not served."""


class PresenceIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Presence


class OwnerIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The customer's explicit owner: preferred before anyone else."""

    agent_id: AgentId


class AcceptIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Accept an offer, or pick up a waiting or overflowed conversation."""

    agent_id: AgentId | None = None
    """Who takes it: an agent token takes it itself (omit, or its own id); an admin must
    name the agent."""


class CloseIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason = "resolved"


class TransferIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exactly one of ``to_agent_id`` and ``to_queue``."""

    to_agent_id: AgentId | None = None
    to_queue: QueueName | None = None


class ReplyIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An agent's reply to the customer, sent on the conversation's channel."""

    text: Annotated[str, msgspec.Meta(max_length=10000)] = ""
    attachments: Annotated[tuple[Attachment, ...], msgspec.Meta(max_length=10)] = ()
    subject: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    agent_id: AgentId | None = None
    """Admin only: the agent the reply is from (default: the conversation's owner)."""


# -- responses ----------------------------------------------------------------------


class CommandStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    """Published to the router, which applies it (no verdict is awaited)."""
    COMPLETED = "completed"
    """The router applied the command."""
    PENDING = "pending"
    """Published, but no verdict arrived in time: watch the stream or GET the state."""


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """The request was published to the router; ``event_id`` identifies it."""

    event_id: str
    status: CommandStatus = CommandStatus.ACCEPTED


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    error: str
    """Why the request was refused."""
    event_id: str | None = None
    """For a command the router rejected (409): the command's event id."""


class ReplyAccepted(msgspec.Struct, frozen=True, kw_only=True):
    reply_id: str
    """The outbound message id; its delivery status shows in the conversation's timeline."""
    status: str = "queued"


class AgentStats(msgspec.Struct, frozen=True, kw_only=True):
    """Live figures of one agent; "today" is the current UTC day."""

    day: str
    """The UTC day of the ``*_today`` figures (``YYYY-MM-DD``)."""
    open_conversations: int
    """Conversations the agent owns and are not closed (assigned, idle, overflowed)."""
    offered_conversations: int
    """Offers waiting for the agent's accept."""
    handled_today: int
    """Conversations the agent took (accepted or was assigned) today."""
    median_first_response_seconds_today: float | None
    """Median, over conversations the agent answered first today, of the seconds from
    the conversation's opening to that first reply; None without any."""
    preferred_routed_today: int
    """Conversations opened today whose preferred agent was this agent."""
    preferred_hits_today: int
    """Of those, the ones the agent took as the preferred agent."""
    preferred_hit_ratio_today: float | None
    """``preferred_hits_today / preferred_routed_today``; None when nothing was routed."""
    offers_missed_today: int
    """Offers to the agent that expired unanswered today."""
    offers_missed_in_a_row: int
    """Consecutive misses now (the router sets the agent away after the domain's limit)."""


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    name: str
    skills: tuple[str, ...]
    queues: tuple[str, ...]
    capacity: dict[Channel, int]
    presence: Presence
    load: dict[Channel, int]
    """Slots in use per channel (assigned and offered conversations)."""
    stats: AgentStats


class TimelineAssignment(
    msgspec.Struct, frozen=True, kw_only=True, tag="assignment", tag_field="kind"
):
    """One owner period (or an offer) of the conversation."""

    at: float
    """When it was offered or assigned."""
    assignment_id: str
    agent_id: str
    strategy: str
    step: str
    waited_seconds: float
    accepted_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None


class TimelineMessage(msgspec.Struct, frozen=True, kw_only=True, tag="message", tag_field="kind"):
    """A message of the conversation: the customer's (inbound) or an agent's reply."""

    at: float
    message_id: str
    direction: str
    """``inbound`` (customer) or ``outbound`` (agent reply)."""
    channel: Channel
    agent_id: str | None = None
    status: str | None = None
    """Outbound: ``queued``, ``sent``, ``delivered``, ``read`` or ``failed``."""
    error: str | None = None
    text: str = ""
    attachments: tuple[Attachment, ...] = ()


TimelineEntry = TimelineAssignment | TimelineMessage


class ConversationView(msgspec.Struct, frozen=True, kw_only=True):
    conversation_id: str
    status: str
    """``waiting``, ``offered``, ``assigned``, ``idle``, ``overflowed`` or ``closed``."""
    channel: Channel
    customer_id: str
    queue: str
    step: str
    owner_agent_id: str | None
    preferred_agent_id: str | None
    offered_to: str | None
    opened_at: float
    waiting_since: float
    first_response_at: float | None
    last_customer_message_at: float
    last_agent_reply_at: float | None
    closed_at: float | None
    close_reason: str | None
    message_count: int
    timeline: list[TimelineEntry]
    """Assignments and messages, oldest first (the most recent ``limit`` of each kind)."""


class QueueView(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    waiting: int
    """Conversations waiting in the queue (held for a preferred agent included)."""
    offered: int
    """Conversations of the queue offered to an agent, not yet accepted."""
    oldest_wait_seconds: float | None
    agents_online: int
    """Online agents serving the queue (listed in ``queues``, or serving every queue)."""
    free_slots: int
    """Free capacity of those agents, all channels together."""
    assigned_last_hour: int
    median_wait_seconds_last_hour: float | None
    estimated_wait_seconds: float | None
    """Expected wait of a new conversation; None when it cannot be estimated (nobody
    online, or no throughput to measure). See ``router.api.stats.estimate_wait``."""


class QueuesView(msgspec.Struct, frozen=True, kw_only=True):
    domain: str
    at: float
    queues: list[QueueView]
