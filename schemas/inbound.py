"""``conversations.inbound``: what customers sent, normalized by the channel adapters."""

from __future__ import annotations

import enum

import msgspec

from schemas.common import Attachments, Channel, Event
from schemas.limits import (
    Address,
    Code,
    ConversationKey,
    CustomerId,
    Endpoint,
    ProviderMessageId,
    QueueName,
    Subject,
    Text,
    Timestamp,
)


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
    priority: int = 0
    reply_window_ends_at: Timestamp | None = None
    """When the provider's free-form reply window closes (WhatsApp, Meta: 24 h)."""


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class DeliveryStatusChanged(Event, frozen=True, kw_only=True, tag="delivery.status"):
    """A provider reported what became of a message we sent (not a customer message)."""

    channel: Channel
    provider_message_id: ProviderMessageId
    status: DeliveryStatus
    error_code: Code | None = None


InboundEvent = MessageReceived | DeliveryStatusChanged

INBOUND_DECODER: msgspec.json.Decoder[InboundEvent] = msgspec.json.Decoder(InboundEvent)
