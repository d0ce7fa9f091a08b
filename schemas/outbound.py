"""``conversations.outbound``: replies for the channel adapters to deliver."""

from __future__ import annotations

import msgspec

from schemas.common import Attachments, Channel, Event
from schemas.limits import (
    Address,
    AgentId,
    ConversationId,
    Endpoint,
    ProviderMessageId,
    Subject,
    Text,
)


class ReplyRequested(Event, frozen=True, kw_only=True, tag="reply.requested"):
    """An agent's reply to send to the customer through the conversation's channel.

    ``id`` is the outbound message id: egress is idempotent on it.
    """

    conversation_id: ConversationId
    agent_id: AgentId
    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    text: Text = ""
    attachments: Attachments = ()
    subject: Subject | None = None
    in_reply_to: ProviderMessageId | None = None
    """Provider message id being answered (email threading headers)."""


OutboundEvent = ReplyRequested

OUTBOUND_DECODER: msgspec.json.Decoder[OutboundEvent] = msgspec.json.Decoder(OutboundEvent)
