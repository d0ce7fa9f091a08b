"""``conversations.routing``: every routing outcome, for other systems to consume.

Every payload names its conversation, domain, channel and time. ``conversation.assigned``
also says why: the strategy, the step, the customer's wait, and the candidates passed
over with the reason for each.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.bots import BotHandoff, Handoff, HandoffReason
from schemas.common import Attachments, Channel, Event, Strategy
from schemas.inbound import Consent, ConsentScope, DeliveryStatus, MessageChange
from schemas.limits import (
    ERASED_CONVERSATIONS_MAX,
    Address,
    AgentId,
    Attributes,
    BotId,
    Code,
    ConversationId,
    CustomerId,
    EventId,
    Language,
    Note,
    ProviderMessageId,
    QueueName,
    Reaction,
    Subject,
    Text,
)


class CandidateNote(msgspec.Struct, frozen=True, kw_only=True):
    """One agent considered for an assignment and why they were passed over."""

    agent_id: AgentId
    reason: str
    """``at_capacity``, ``away``, ``offline``, ``missing_skill``, ``at_queue_limit`` (the
    queue's ``max_per_agent``), ``paced`` (login pacing), ``offer_missed``,
    ``not_in_queue``, ``no_channel``, or ``chosen``."""


class ConversationEvent(Event, frozen=True, kw_only=True):
    conversation_id: ConversationId
    channel: Channel
    customer_id: CustomerId
    queue: QueueName


class ConversationQueued(ConversationEvent, frozen=True, kw_only=True, tag="conversation.queued"):
    """The conversation waits: for its preferred agent, or for anyone in its queue."""

    step: str
    preferred_agent_id: AgentId | None = None
    wait_until: float | None = None
    """When this step gives up waiting (None: until the queue's final timeout)."""
    priority: int = 0
    reply_window_ends_at: float | None = None
    """When the provider's free-form reply window closes (None: no such window)."""
    reply_window_closed: bool = False
    """The window has closed: a reply now needs an approved template."""
    position: int | None = None
    """Its place in the line it waits in, 1 being next: among the conversations waiting at
    its step for the same agents and channel (priority, then age, then id), or, held for
    its preferred agent, among those held for that agent on the channel. None: on no line
    (held outside business hours)."""
    expected_wait_seconds: float | None = None
    """The router's estimate of the seconds until an agent is assigned, from now (see the
    README's *Live wait estimates*); None: unknown (nobody online serves it, no handling
    rate measured yet, or held outside business hours)."""


class ConversationOffered(ConversationEvent, frozen=True, kw_only=True, tag="conversation.offered"):
    agent_id: AgentId
    strategy: Strategy
    step: str
    expires_at: float
    reply_window_ends_at: float | None = None
    """When the provider's free-form reply window closes (None: no such window)."""
    reply_window_closed: bool = False
    """The window has closed: a reply now needs an approved template."""


class ConversationAssigned(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.assigned"
):
    agent_id: AgentId
    assignment_id: EventId
    strategy: Strategy
    step: str
    waited_seconds: float
    preferred_agent_id: AgentId | None = None
    candidates: tuple[CandidateNote, ...] = ()
    reply_window_ends_at: float | None = None
    """When the provider's free-form reply window closes (None: no such window)."""
    reply_window_closed: bool = False
    """The window has closed: a reply now needs an approved template."""
    handoff: BotHandoff | None = None
    """Set on the first assignment to a person after a bot handed the conversation off:
    what the bot learned (``waited_seconds`` is then the time to a person)."""


class ConversationFallback(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.fallback"
):
    """A step gave up: the conversation moves down the queue's ladder."""

    from_step: str
    to_step: str | None
    preferred_agent_id: AgentId | None = None
    reason: str = "timeout"


class ConversationReassigned(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.reassigned"
):
    from_agent_id: AgentId | None
    to_agent_id: AgentId | None
    to_queue: QueueName | None = None
    strategy: Strategy = Strategy.TRANSFER
    reason: str = "transfer"


class ConversationOverflowed(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.overflowed"
):
    """Nobody took it within the queue's final timeout: another system should."""

    waited_seconds: float


class ConversationClosed(ConversationEvent, frozen=True, kw_only=True, tag="conversation.closed"):
    agent_id: AgentId | None = None
    reason: str = "resolved"
    bot_id: BotId | None = None
    """The bot that owned it when it closed."""
    contained: bool = False
    """A bot owned it to the end and no person ever took part: the bot contained it."""


class MessageRouted(ConversationEvent, frozen=True, kw_only=True, tag="message.routed"):
    """A customer message reached its conversation (and its owner, when it has one)."""

    message_id: EventId
    provider_message_id: ProviderMessageId
    agent_id: AgentId | None = None
    reply_window_ends_at: float | None = None
    """When the provider's free-form reply window closes (None: no such window)."""
    reply_window_closed: bool = False
    """The window has closed: a reply now needs an approved template."""
    answers_outbound_id: EventId | None = None
    """The business-started message (``notification.requested``) this message answers:
    set on the message that opened the notification's conversation."""
    bot_id: BotId | None = None
    """The bot that owns the conversation and gets the message (as ``bot.turn``)."""


class MessageChangeRouted(
    ConversationEvent, frozen=True, kw_only=True, tag="message.change_routed"
):
    """The customer reacted to, edited or deleted a message of an open conversation: the
    desktop of its owner (or its bot) shows it. A change to a message of a conversation
    that is no longer open is not routed."""

    change_event_id: EventId
    """The inbound ``message.changed`` event's id."""
    provider_message_id: ProviderMessageId
    """The message changed."""
    change: MessageChange
    reaction: Reaction | None = None
    text: Text | None = None
    agent_id: AgentId | None = None
    bot_id: BotId | None = None


class ConversationReplyWindowClosed(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.reply_window_closed"
):
    """The provider's free-form reply window closed (WhatsApp, Meta, a Telegram business
    chat: 24 h after the customer's last message): replies now need an approved template
    (WhatsApp), a person's tagged answer (Messenger, Instagram), or none can go (a
    Telegram business chat)."""

    reply_window_ends_at: float
    status: str
    """The conversation's status when it closed (``assigned``, ``idle``, ``waiting``...)."""
    agent_id: AgentId | None = None
    """The owner, who can no longer answer freely."""


class ConversationOutsideHours(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.outside_hours"
):
    """The conversation reached its queue while the queue's business hours are closed, and
    waits for them (the queue's ``after_hours = "notify"``): the customer side can tell
    the customer when someone will answer."""

    opens_at: float | None
    """When the queue opens and routing starts (None: its calendar never opens again)."""
    calendar: str
    """The queue's business-hours calendar."""


class ConversationUpdated(ConversationEvent, frozen=True, kw_only=True, tag="conversation.updated"):
    """The conversation's routing context changed: its whole current context."""

    agent_id: AgentId | None = None
    """Its owner (or the agent it is offered to), if any."""
    priority: int = 0
    skills: tuple[str, ...] = ()
    language: str | None = None
    attributes: dict[str, str] = {}


class ConversationSnoozed(ConversationEvent, frozen=True, kw_only=True, tag="conversation.snoozed"):
    """The owner put the conversation aside until ``until`` (its slot free meanwhile);
    ``until`` None: it is back (the time came, or the customer wrote)."""

    agent_id: AgentId
    until: float | None


class ConversationBotAssigned(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.bot_assigned"
):
    """A bot owns the conversation now: a new conversation of a bot-first queue
    (``reason`` ``bot_first``), or a person handed it back (``handback``, with their
    note). Nobody else answers the customer while it does."""

    bot_id: BotId
    reason: Code
    from_agent_id: AgentId | None = None
    """The person who handed it back."""
    note: Note = ""


class BotTurn(ConversationEvent, frozen=True, kw_only=True, tag="bot.turn"):
    """The bot that owns the conversation is to answer: the customer wrote (``message_id``
    and the message), or a person handed it back (``note``). Answer on ``bots.events``
    with ``turn_id`` = this event's ``id`` before ``answer_by``, or people take over
    (``bot_timeout``)."""

    bot_id: BotId
    answer_by: float
    turn: int
    """Customer turns since the bot last reported progress (the loop guard's count)."""
    message_id: EventId | None = None
    provider_message_id: ProviderMessageId | None = None
    """The provider's id of the message: answer with it as ``in_reply_to``."""
    text: Text = ""
    attachments: Attachments = ()
    subject: Subject | None = None
    note: Note = ""
    """A hand-back's note from the person."""
    language: Language | None = None
    attributes: Attributes = {}
    """The conversation's context."""
    customer_address: Address = ""
    """The customer's channel identity (to greet a known customer, look up an order)."""


class ConversationHandedOff(
    ConversationEvent, frozen=True, kw_only=True, tag="conversation.handed_off"
):
    """The conversation went from a bot to people, with what the bot learned, and what the
    customer can be told now: ``position`` in the wait, ``expected_wait_seconds`` (None:
    unknown), ``opens_at`` when the queue is closed, and the channels the customer may
    continue on instead (``continue_on``)."""

    bot_id: BotId
    reason: HandoffReason
    handoff: Handoff
    to_agent_id: AgentId | None = None
    """Set when a named person took it over (``takeover``)."""
    position: int | None = None
    """Conversations ahead of it at its step (0: first in line; None: not waiting)."""
    agents_online: int = 0
    """People online who could take it at its step (with the channel)."""
    expected_wait_seconds: float | None = None
    """The queue's measured estimate (see the README's Bots section); None: unknown."""
    opens_at: float | None = None
    """When its queue opens, if it is closed now."""
    continue_on: tuple[Channel, ...] = ()
    """Channels the bot may offer instead of waiting (the bot's ``continue_on``)."""


class BotStatusChanged(Event, frozen=True, kw_only=True, tag="bot.status_changed"):
    """A bot went down (``available`` False: it failed ``down_after`` turns in a row; new
    conversations go straight to people until ``until``) or answered again (True)."""

    bot_id: BotId
    available: bool
    until: float | None = None
    failures: int = 0
    """Turns failed in a row."""


class CustomerLinked(Event, frozen=True, kw_only=True, tag="customer.linked"):
    """``identity`` now reaches the customer ``customer_id`` (``linked`` False: no
    longer)."""

    customer_id: CustomerId
    identity: CustomerId
    linked: bool = True
    source: str = "api"


class CustomerMerged(Event, frozen=True, kw_only=True, tag="customer.merged"):
    """``merged_customer_id`` was the same person as ``customer_id``: its identities,
    owner, last agent, affinity and open conversations are ``customer_id``'s now, and
    the merged id names that customer from here on (consumers re-key what they hold)."""

    customer_id: CustomerId
    merged_customer_id: CustomerId
    identities: tuple[CustomerId, ...] = ()
    """Every identity of the surviving customer after the merge."""
    conversation_ids: tuple[ConversationId, ...] = ()
    """The merged customer's open conversations, now ``customer_id``'s."""


class CustomerErased(Event, frozen=True, kw_only=True, tag="customer.erased"):
    """A customer was erased (``customer.erase_requested``): Switchboard holds nothing of
    them any more: no profile, identity, conversation, message, consent or replay record,
    and the router forgot their owner, last agent and affinity. It names no one. Systems
    that keep what they consumed erase it by these conversation ids."""

    erasure_id: EventId
    """The id of the ``customer.erase_requested`` command (``erasures.erasure_id``)."""
    conversation_ids: Annotated[
        tuple[ConversationId, ...], msgspec.Meta(max_length=ERASED_CONVERSATIONS_MAX)
    ] = ()
    """Every conversation of the customer the router knew of, the most recent first (at
    most ``ERASED_CONVERSATIONS_MAX``). The open ones among them ended with the erasure
    without a ``conversation.closed`` (which would name the customer)."""
    more_conversations: bool = False
    """The customer had more conversations than ``conversation_ids`` names."""
    identities: int = 0
    """How many identities the erasure covered: those named (a phone number on every
    phone channel) and every identity linked to them."""


class CustomerConsentChanged(Event, frozen=True, kw_only=True, tag="customer.consent_changed"):
    """A customer opted out of (or back in to) business-started messages on one channel
    address: sends to it are refused (``opt_out``) or allowed again (``opt_in``)."""

    customer_id: CustomerId
    """The customer profile."""
    channel: Channel
    customer_address: Address
    consent: Consent
    source: str
    """``keyword`` (the customer's message), ``provider`` (its own opt-out signal), ``api``."""
    message_id: EventId | None = None
    """The customer's message that said so."""
    scope: ConsentScope = ConsentScope.ALL
    """Every business-started message, or marketing templates alone."""


class OutboundStatusChanged(Event, frozen=True, kw_only=True, tag="outbound.status_changed"):
    """What became of a message we sent: egress's send (``sent``, ``failed``), the
    provider's later reports (``delivered``, ``read``, ``undelivered``, ``failed``), and a
    business-started message never sent (``refused``: the address opted out after it was
    accepted; ``cancelled``: its campaign was cancelled first)."""

    channel: Channel
    provider_message_id: ProviderMessageId
    status: DeliveryStatus
    outbound_id: EventId | None = None
    """Our outbound message id, when known."""
    error_code: Code | None = None
    provider_status: Code | None = None
    """The provider's own name of the status, exactly as it sent it."""
    conversation_id: ConversationId | None = None
    """For a ``read_through`` receipt: the conversation whose messages it covers."""
    read_through: float | None = None
    """Every message we sent in ``conversation_id`` up to this time was read (a receipt
    naming no message: Messenger's watermark); ``provider_message_id`` is then empty."""


class CommandCompleted(Event, frozen=True, kw_only=True, tag="command.completed"):
    """The router applied an agent API command (``command_id`` is the command's id)."""

    command_id: EventId
    conversation_id: ConversationId | None = None


class CommandRejected(Event, frozen=True, kw_only=True, tag="command.rejected"):
    """The router refused an agent API command in the current state, with the reason."""

    command_id: EventId
    reason: str
    conversation_id: ConversationId | None = None


RoutingEvent = (
    ConversationQueued
    | ConversationOffered
    | ConversationAssigned
    | ConversationFallback
    | ConversationReassigned
    | ConversationOverflowed
    | ConversationClosed
    | MessageRouted
    | MessageChangeRouted
    | ConversationReplyWindowClosed
    | ConversationOutsideHours
    | ConversationUpdated
    | ConversationSnoozed
    | ConversationBotAssigned
    | BotTurn
    | ConversationHandedOff
    | BotStatusChanged
    | CustomerLinked
    | CustomerMerged
    | CustomerErased
    | CustomerConsentChanged
    | OutboundStatusChanged
    | CommandCompleted
    | CommandRejected
)

ROUTING_DECODER: msgspec.json.Decoder[RoutingEvent] = msgspec.json.Decoder(RoutingEvent)
