"""``agents.events``: agents and the agent API acting on routing state.

Every record here is keyed by domain so that the router instance owning the domain
applies it, in order, as the single writer. Bots' answers arrive here too: bots publish
them on ``bots.events`` and the adapters forward them (so the router reads two topics,
and a bot's credentials reach only its own topic). Commands (``*Requested``) may be refused by
the router; it answers each with ``command.completed`` or ``command.rejected`` on
``conversations.routing``, carrying the command's ``id``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.bots import BotFailed, BotHandoffRequested, BotReplied, BotResolved
from schemas.common import Channel, Event, Presence
from schemas.inbound import Consent, ConsentScope
from schemas.limits import (
    LIST_MAX,
    SCHEDULE_MAX,
    Address,
    AgentId,
    Attributes,
    BotId,
    CampaignId,
    Code,
    ConversationId,
    CustomerId,
    Endpoint,
    EventId,
    Language,
    Name,
    Note,
    Priority,
    QueueName,
    SkillName,
    Timestamp,
    TimeZone,
)
from schemas.outbound import Answerer

_HourMinute = Annotated[str, msgspec.Meta(max_length=5)]


class ShiftInterval(msgspec.Struct, frozen=True, kw_only=True):
    """One weekly working interval in the schedule's time zone (may cross midnight)."""

    day: int
    """0 = Monday ... 6 = Sunday: the day the interval starts."""
    start: _HourMinute
    """``HH:MM`` local time."""
    end: _HourMinute
    """``HH:MM`` local time; at or before ``start``: the next day."""

    def __post_init__(self) -> None:
        if not 0 <= self.day <= 6:
            raise ValueError("day must be 0 (Monday) to 6 (Sunday)")
        for value in (self.start, self.end):
            hours, _, minutes = value.partition(":")
            if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
                raise ValueError(f"{value!r} is not HH:MM")
            if not (0 <= int(hours) <= 24 and 0 <= int(minutes) < 60):
                raise ValueError(f"{value!r} is not HH:MM")


class AgentSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's weekly working hours (shift start makes the agent "returning")."""

    timezone: TimeZone = "UTC"
    """IANA time zone name, e.g. ``Europe/Paris``."""
    weekly: Annotated[tuple[ShiftInterval, ...], msgspec.Meta(max_length=SCHEDULE_MAX)] = ()


class AgentRegistered(Event, frozen=True, kw_only=True, tag="agent.registered"):
    """An agent was registered or updated (the whole profile, not a patch)."""

    agent_id: AgentId
    name: Name = ""
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    queues: Annotated[tuple[QueueName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    capacity: dict[Channel, int] = {}
    """Concurrent conversations per channel; a channel absent here is not served."""
    schedule: AgentSchedule | None = None
    """Working hours; None: no schedule (the engine never assumes a return time)."""


class PresenceChanged(Event, frozen=True, kw_only=True, tag="agent.presence_changed"):
    agent_id: AgentId
    status: Presence


class CustomerOwnerSet(Event, frozen=True, kw_only=True, tag="customer.owner_set"):
    """An explicit owner for a customer (``agent_id`` None clears it)."""

    customer_id: CustomerId
    agent_id: AgentId | None = None


class AgentRemoved(Event, frozen=True, kw_only=True, tag="agent.removed"):
    """An agent left the domain (offboarding): never preferred again; the conversations
    they own, are offered or are held for go back to routing at once."""

    agent_id: AgentId


class CustomerLinkRequested(Event, frozen=True, kw_only=True, tag="customer.link_requested"):
    """``identity`` is also ``customer_id`` (a verified link: by the API, or by a signed
    web chat login). When the identity is itself a customer with history, the two
    profiles merge into ``customer_id``."""

    customer_id: CustomerId
    identity: CustomerId
    source: Code = "api"
    """Who vouched for the link: ``api``, ``webchat_login``, ``lookup``."""


class CustomerUnlinkRequested(Event, frozen=True, kw_only=True, tag="customer.unlink_requested"):
    """``identity`` is no longer ``customer_id``: its next conversation starts a profile
    of its own (open conversations finish as they are)."""

    customer_id: CustomerId
    identity: CustomerId


class CustomerMergeRequested(Event, frozen=True, kw_only=True, tag="customer.merge_requested"):
    """``from_customer_id`` is the same person as ``customer_id``: one profile remains."""

    customer_id: CustomerId
    from_customer_id: CustomerId


class CustomerEraseRequested(Event, frozen=True, kw_only=True, tag="customer.erase_requested"):
    """Forget a customer everywhere (``DELETE /v1/domains/{d}/customers/{id}``). The record
    names no one: whom to erase is in PostgreSQL's ``erasures`` row of this event's id,
    which the router reads when it applies the command and empties when it is done, so
    that no topic keeps the person the erasure is about."""


class ConversationAcceptRequested(
    Event, frozen=True, kw_only=True, tag="conversation.accept_requested"
):
    conversation_id: ConversationId
    agent_id: AgentId


class ConversationCloseRequested(
    Event, frozen=True, kw_only=True, tag="conversation.close_requested"
):
    conversation_id: ConversationId
    agent_id: AgentId | None = None
    """The acting agent; None when an admin closes it."""
    reason: Code = "resolved"


class ConversationTransferRequested(
    Event, frozen=True, kw_only=True, tag="conversation.transfer_requested"
):
    conversation_id: ConversationId
    agent_id: AgentId | None = None
    """The acting agent; None when an admin transfers it."""
    to_agent_id: AgentId | None = None
    to_queue: QueueName | None = None


class ConversationDeclineRequested(
    Event, frozen=True, kw_only=True, tag="conversation.decline_requested"
):
    """The agent an offer was made to turns it down: it moves on at once, not a miss."""

    conversation_id: ConversationId
    agent_id: AgentId
    reason: Code = "declined"


class ConversationUpdateRequested(
    Event, frozen=True, kw_only=True, tag="conversation.update_requested"
):
    """Set a conversation's routing context; a field left None is unchanged."""

    conversation_id: ConversationId
    agent_id: AgentId | None = None
    """The acting agent (its owner); None when an admin updates it."""
    priority: Priority | None = None
    """Higher waits less: waiting lists order by priority, then age."""
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] | None = None
    """Skills an agent needs to be offered it, beyond its queue step's (replaces the set)."""
    language: Language | None = None
    """BCP 47 tag; empty clears it. With the domain's ``language_skill``, a required skill."""
    attributes: Attributes | None = None
    """Free context (replaces the whole map)."""


class ConversationSnoozeRequested(
    Event, frozen=True, kw_only=True, tag="conversation.snooze_requested"
):
    """Put an owned conversation aside until ``until``: its slot is free meanwhile, and it
    comes back to its owner then (or when the customer writes)."""

    conversation_id: ConversationId
    agent_id: AgentId | None = None
    """The acting agent (its owner); None when an admin snoozes it."""
    until: Timestamp


class CustomerNotified(Event, frozen=True, kw_only=True, tag="customer.notified"):
    """The business wrote first (``notification.requested``): the customer's next new
    conversation on ``channel`` opens as ``conversation_id`` with ``attributes``, and
    goes to ``answer`` until ``answer.until``. A later notification replaces it."""

    outbound_id: EventId
    conversation_id: ConversationId
    customer_id: CustomerId
    """The identity written to (``sms:+1…``, ``phone:+1…``, ``email:…``)."""
    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    answer: Answerer
    attributes: Attributes = {}
    campaign_id: CampaignId | None = None


class CustomerConsentRequested(Event, frozen=True, kw_only=True, tag="customer.consent_requested"):
    """An admin records a customer's consent on one channel address (a signed form, a
    call): as if the customer had sent the keyword."""

    channel: Channel
    customer_address: Address
    customer_id: CustomerId
    consent: Consent
    agent_id: AgentId | None = None
    """Who recorded it (None: an admin token)."""
    note: Code | None = None
    scope: ConsentScope = ConsentScope.ALL


class ConversationTakeoverRequested(
    Event, frozen=True, kw_only=True, tag="conversation.takeover_requested"
):
    """A person takes a conversation a bot owns (mid-turn included): the bot's pending
    and later answers are refused, and the person owns it at once. Refused, as a manual
    pick-up is, when they are not online with a free slot on its channel."""

    conversation_id: ConversationId
    agent_id: AgentId
    """The person who takes it."""


class ConversationHandbackRequested(
    Event, frozen=True, kw_only=True, tag="conversation.handback_requested"
):
    """Its owner (or an admin) hands a conversation back to a bot: a survey, after hours.
    The person's slot is free; the bot gets a ``bot.turn`` with the note."""

    conversation_id: ConversationId
    agent_id: AgentId | None = None
    """The acting agent (its owner); None when an admin hands it back."""
    bot_id: BotId | None = None
    """The bot (None: the bot of the conversation's queue)."""
    note: Note = ""


class AgentReplied(Event, frozen=True, kw_only=True, tag="conversation.agent_replied"):
    """An agent's reply left for the customer (first response, waiting on customer)."""

    conversation_id: ConversationId
    agent_id: AgentId
    outbound_id: EventId
    channel: Channel


AgentCommand = (
    ConversationAcceptRequested
    | ConversationCloseRequested
    | ConversationTransferRequested
    | ConversationDeclineRequested
    | ConversationUpdateRequested
    | ConversationSnoozeRequested
    | AgentRemoved
    | CustomerLinkRequested
    | CustomerUnlinkRequested
    | CustomerMergeRequested
    | CustomerConsentRequested
    | ConversationTakeoverRequested
    | ConversationHandbackRequested
    | CustomerEraseRequested
)

AgentEvent = (
    AgentRegistered
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
    | CustomerEraseRequested
    | BotReplied
    | BotHandoffRequested
    | BotResolved
    | BotFailed
)
"""What the router applies from ``agents.events``: the agent API's records, and the bots'
answers that the adapters forward from ``bots.events`` (``adapters.bot_answers``)."""

AGENT_EVENT_DECODER: msgspec.json.Decoder[AgentEvent] = msgspec.json.Decoder(AgentEvent)
