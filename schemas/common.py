"""Vocabulary shared by every topic: channels, presence, strategies, attachments."""

from __future__ import annotations

import enum

import msgspec


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

    url: str
    content_type: str | None = None
    filename: str | None = None
    size_bytes: int | None = None


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every record on every topic carries.

    ``id`` is unique per event (the CloudEvents ``id``): consumers drop duplicates by it.
    ``domain`` is the routing domain and the Kafka record key.
    """

    id: str
    domain: str
    occurred_at: float
    """Seconds since the Unix epoch (UTC) at which the fact happened."""
