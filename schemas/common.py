"""Vocabulary shared by every topic: channels, presence, strategies, attachments."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.limits import (
    ATTACHMENTS_MAX,
    ContentType,
    Domain,
    EventId,
    Filename,
    Timestamp,
    Url,
)


class Channel(enum.StrEnum):
    """A customer-facing messaging channel."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    EMAIL = "email"


class Presence(enum.StrEnum):
    """An agent's availability as the agent (or their desktop) declares it."""

    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class Strategy(enum.StrEnum):
    """Why a conversation went to its agent."""

    PREFERRED = "preferred"
    FALLBACK = "fallback"
    QUEUE = "queue"
    TRANSFER = "transfer"
    MANUAL = "manual"


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A media item of a message: where to fetch it and what it is."""

    url: Url
    content_type: ContentType | None = None
    filename: Filename | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None


Attachments = Annotated[tuple[Attachment, ...], msgspec.Meta(max_length=ATTACHMENTS_MAX)]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every record on every topic carries.

    ``id`` is unique per event (the CloudEvents ``id``): consumers drop duplicates by it.
    ``domain`` is the routing domain and the Kafka record key.
    """

    id: EventId
    domain: Domain
    occurred_at: Timestamp
    """Seconds since the Unix epoch (UTC) at which the fact happened."""
