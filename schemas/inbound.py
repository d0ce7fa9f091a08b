"""``conversations.inbound``: what customers sent, normalized by the channel adapters."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.common import Attachments, Channel, Event
from schemas.limits import (
    LIST_MAX,
    Address,
    Attributes,
    Code,
    ConversationKey,
    CustomerId,
    Endpoint,
    EventId,
    Language,
    Priority,
    ProviderMessageId,
    QueueName,
    SkillName,
    Subject,
    Text,
    Timestamp,
)


class Consent(enum.StrEnum):
    """A customer's answer to "may we message you?" on one channel address."""

    OPT_OUT = "opt_out"
    """STOP, UNSUBSCRIBE, ARRET, … or the provider's own opt-out signal."""
    OPT_IN = "opt_in"
    """START, UNSTOP, … : business-started messages may be sent again."""


class MessageReceived(Event, frozen=True, kw_only=True, tag="message.received"):
    """A customer wrote to us on some channel.

    ``customer_id`` is the domain's customer identity: identities of one customer on
    several channels (the same phone on SMS and WhatsApp) map to one id when the config
    links them. ``conversation_key`` says which thread the message continues: the same
    key means the same conversation while one is open.
    """

    channel: Channel
    endpoint: Endpoint
    """Our side of the exchange: the phone number, page, bot or address written to."""
    customer_address: Address
    """The customer's channel identity: E.164 phone, PSID, chat id, email address, session."""
    customer_id: CustomerId
    conversation_key: ConversationKey
    provider_message_id: ProviderMessageId
    text: Text = ""
    attachments: Attachments = ()
    subject: Subject | None = None
    queue: QueueName | None = None
    """Queue chosen by the endpoint's config; the domain's default queue when unset."""
    priority: Priority = 0
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    """Skills the conversation needs, from the endpoint's configuration or a pre-chat form."""
    language: Language | None = None
    """The customer's language (BCP 47), when the endpoint or a pre-chat form knows it."""
    attributes: Attributes = {}
    """Context for routing and reporting from the endpoint or a pre-chat form."""
    reply_window_ends_at: Timestamp | None = None
    """When the provider's free-form reply window closes (WhatsApp, Meta: 24 h)."""
    known_customer_id: CustomerId | None = None
    """The customer profile the domain's identity lookup (the platform's CRM) says
    ``customer_id`` belongs to: the router links the identity to it first, unless the
    identity is linked already (a link made through the API wins)."""
    consent: Consent | None = None
    """The message changes the customer's consent on this channel address: an opt-out
    or opt-in keyword (the domain's ``outbound`` keywords) or the provider's signal."""
    consent_source: Code | None = None
    """Where ``consent`` comes from: ``keyword`` (None says the same) or ``provider``."""


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    """The provider accepted it but could not deliver it (carrier refusal, unreachable)."""
    FAILED = "failed"


class DeliveryStatusChanged(Event, frozen=True, kw_only=True, tag="delivery.status"):
    """A provider reported what became of a message we sent (not a customer message)."""

    channel: Channel
    provider_message_id: ProviderMessageId
    status: DeliveryStatus
    error_code: Code | None = None
    outbound_id: EventId | None = None
    """Our outbound message id, when the provider echoes it back (WhatsApp
    ``biz_opaque_callback_data``, a status callback URL, Mailgun's variables) or when
    egress itself reports the outcome of its send."""


class HumanReplied(Event, frozen=True, kw_only=True, tag="message.human_replied"):
    """A person of the business answered the customer outside Switchboard: from a
    connected device or the provider's own inbox (Messenger and Instagram echoes of
    messages no app of ours sent). A bot that owns the conversation stops at once:
    people take it over (``human_replied``)."""

    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    customer_id: CustomerId
    conversation_key: ConversationKey
    provider_message_id: ProviderMessageId


InboundEvent = MessageReceived | DeliveryStatusChanged | HumanReplied

INBOUND_DECODER: msgspec.json.Decoder[InboundEvent] = msgspec.json.Decoder(InboundEvent)
