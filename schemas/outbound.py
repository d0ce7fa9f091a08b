"""``conversations.outbound``: what the adapters deliver to customers.

Two kinds of record: an agent's reply in a conversation (``ReplyRequested``, sent at once)
and a business-started message (``NotificationRequested``: a notification, reminder or
campaign message, queued in PostgreSQL and sent at the domain's pace; the record tells
other systems it was accepted).
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.common import Attachments, Channel, Event, Location
from schemas.limits import (
    QUICK_REPLIES_MAX,
    TEMPLATE_PARAMETERS_MAX,
    Address,
    AgentId,
    Attributes,
    BotId,
    CampaignId,
    ClientKey,
    Code,
    ConversationId,
    CustomerId,
    Endpoint,
    Language,
    ProviderMessageId,
    QueueName,
    QuickReply,
    Subject,
    TemplateName,
    TemplateParameter,
    Text,
    Timestamp,
)


class TemplateCategory(enum.StrEnum):
    """WhatsApp's template categories (they set the price and who may receive it)."""

    MARKETING = "marketing"
    UTILITY = "utility"
    AUTHENTICATION = "authentication"


class TemplateUse(msgspec.Struct, frozen=True, kw_only=True):
    """A registered template, filled in: what the provider is asked to send instead of
    free-form text (WhatsApp template message, Twilio Content template)."""

    name: TemplateName
    """The domain's name for the template (its registry key with ``language``)."""
    language: Language
    provider_template: TemplateName
    """The name the provider approved (WhatsApp) or its template id (Twilio ``HX…``)."""
    category: TemplateCategory = TemplateCategory.UTILITY
    parameters: Annotated[
        tuple[TemplateParameter, ...], msgspec.Meta(max_length=TEMPLATE_PARAMETERS_MAX)
    ] = ()
    """Values of the body's placeholders ``{{1}}``, ``{{2}}``, … in order."""


class MessageTag(enum.StrEnum):
    """Meta's message tags: sending outside the 24 h window on Messenger and Instagram."""

    HUMAN_AGENT = "HUMAN_AGENT"
    """A person's answer to the customer, up to 7 days after their last message."""


class AnswerMode(enum.StrEnum):
    """Who answers the customer's replies to a business-started message."""

    SENDER = "sender"
    """The agent who sent it (the preferred agent, with the channel's wait budget)."""
    QUEUE = "queue"
    """A named queue, routed as that queue routes."""
    LAST_OWNER = "last_owner"
    """Whoever owned this customer last: the domain's normal preferred-agent rules."""


class Answerer(msgspec.Struct, frozen=True, kw_only=True):
    """Where replies to a business-started message go, until ``until``; later replies
    take normal routing."""

    mode: AnswerMode = AnswerMode.LAST_OWNER
    agent_id: AgentId | None = None
    """The sending agent (``sender``)."""
    queue: QueueName | None = None
    """The queue (``queue``)."""
    until: Timestamp
    """Replies after this take normal routing."""


class ReplyRequested(Event, frozen=True, kw_only=True, tag="reply.requested"):
    """A reply to send to the customer through the conversation's channel, from an agent
    (``agent_id``), a bot (``bot_id``), or Switchboard itself (``notice``): exactly one of
    them.

    ``id`` is the outbound message id: egress is idempotent on it.
    """

    conversation_id: ConversationId
    agent_id: AgentId | None = None
    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    text: Text = ""
    attachments: Attachments = ()
    subject: Subject | None = None
    in_reply_to: ProviderMessageId | None = None
    """Provider message id being answered (email threading headers)."""
    thread_root: ProviderMessageId | None = None
    """Email: the first Message-ID of the conversation's thread (``email_thread_root``),
    which the reply's ``References`` starts with, so the customer's answer to it stays in
    the conversation."""
    template: TemplateUse | None = None
    """Send this template instead of ``text`` (the free-form window has closed)."""
    message_tag: MessageTag | None = None
    """Meta's tag for a reply outside the 24 h window (Messenger, Instagram)."""
    bot_id: BotId | None = None
    """The bot that wrote it."""
    location: Location | None = None
    """A place to send, where the channel can (WhatsApp, Telegram, RCS, Vonage)."""
    quick_replies: Annotated[
        tuple[QuickReply, ...], msgspec.Meta(max_length=QUICK_REPLIES_MAX)
    ] = ()
    """Suggested answers, where the channel has them (a bot's)."""

    notice: Code | None = None
    """An automatic message of Switchboard's own: ``wait_notice`` (how long the customer
    will wait, README *Live wait estimates*)."""

    def __post_init__(self) -> None:
        authors = (self.agent_id, self.bot_id, self.notice)
        if sum(author is not None for author in authors) != 1:
            raise ValueError("a reply names exactly one of agent_id, bot_id and notice")


class NotificationRequested(Event, frozen=True, kw_only=True, tag="notification.requested"):
    """A business-started message was accepted: it is sent at the domain's pace, and the
    customer's replies go to ``answer``. ``id`` is the outbound message id (egress is
    idempotent on it); ``conversation_id`` is the conversation a reply opens."""

    conversation_id: ConversationId
    customer_id: CustomerId
    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    text: Text = ""
    """Free-form text, or the template's body filled in (what the customer reads)."""
    attachments: Attachments = ()
    subject: Subject | None = None
    template: TemplateUse | None = None
    message_tag: MessageTag | None = None
    agent_id: AgentId | None = None
    """The sending agent; None when a system sent it."""
    campaign_id: CampaignId | None = None
    client_key: ClientKey | None = None
    answer: Answerer
    attributes: Attributes = {}
    """Context a reply's conversation carries (campaign, order id, …)."""


OutboundEvent = ReplyRequested | NotificationRequested

OUTBOUND_DECODER: msgspec.json.Decoder[OutboundEvent] = msgspec.json.Decoder(OutboundEvent)


def email_conversation_key(our_address: str, root: str) -> str:
    """The conversation of an email thread: our address and the thread's first Message-ID."""
    return f"email:{our_address}:{root}"


def email_thread_root(channel: Channel, endpoint: str, conversation_key: str) -> str | None:
    """The thread root an email conversation's key names (None: not an email thread)."""
    prefix = email_conversation_key(endpoint, "")
    if channel is not Channel.EMAIL or not conversation_key.startswith(prefix):
        return None
    return conversation_key[len(prefix) :] or None
