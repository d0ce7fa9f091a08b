"""``conversations.outbound``: replies for the channel adapters to deliver."""

from __future__ import annotations

import msgspec

from schemas.common import Attachment, Channel, Event


class ReplyRequested(Event, frozen=True, kw_only=True, tag="reply.requested"):
    """An agent's reply to send to the customer through the conversation's channel.

    ``id`` is the outbound message id: egress is idempotent on it.
    """

    conversation_id: str
    agent_id: str
    channel: Channel
    endpoint: str
    customer_address: str
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    subject: str | None = None
    in_reply_to: str | None = None
    """Provider message id being answered (email threading headers)."""


OutboundEvent = ReplyRequested

OUTBOUND_DECODER: msgspec.json.Decoder[OutboundEvent] = msgspec.json.Decoder(OutboundEvent)
