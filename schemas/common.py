"""Vocabulary shared by every topic: channels, presence, strategies, attachments."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.limits import (
    ATTACHMENTS_MAX,
    CONTACT_ITEMS_MAX,
    CONTACTS_MAX,
    Address,
    Caption,
    Code,
    ContentType,
    Domain,
    EventId,
    Filename,
    Name,
    ProviderMessageId,
    Subject,
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
    RCS = "rcs"
    """RCS Business Messaging (Google's RBM, through a carrier-connected agent)."""
    X = "x"
    """X (Twitter) direct messages."""
    VIBER = "viber"
    """Viber Business Messages (through Vonage)."""


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
    """A media item of a message: where to fetch it and what it is.

    ``url`` is where a consumer fetches it (for providers whose media need our
    credentials, our own reference); every reference the provider gave is kept beside it.
    """

    url: Url
    content_type: ContentType | None = None
    filename: Filename | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    media_id: ProviderMessageId | None = None
    """The provider's own id of the media (WhatsApp media id, Telegram ``file_id``, …)."""
    provider_url: Url | None = None
    """The provider's URL of the media, as it sent it, when ``url`` is not that URL."""
    sha256: Code | None = None
    """The provider's hash of the media (hex or base64, as the provider sends it)."""
    caption: Caption | None = None
    """Text the customer sent with the media."""


class Location(msgspec.Struct, frozen=True, kw_only=True):
    """A place shared in a message, or sent in a reply."""

    latitude: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    longitude: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    name: Name | None = None
    address: Subject | None = None
    url: Url | None = None


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """A contact card shared in a message."""

    name: Name | None = None
    phones: Annotated[tuple[Address, ...], msgspec.Meta(max_length=CONTACT_ITEMS_MAX)] = ()
    emails: Annotated[tuple[Address, ...], msgspec.Meta(max_length=CONTACT_ITEMS_MAX)] = ()
    organization: Name | None = None


Attachments = Annotated[tuple[Attachment, ...], msgspec.Meta(max_length=ATTACHMENTS_MAX)]
Contacts = Annotated[tuple[Contact, ...], msgspec.Meta(max_length=CONTACTS_MAX)]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Fields every record on every topic carries.

    ``id`` is unique per event (the CloudEvents ``id``): consumers drop duplicates by it.
    ``domain`` is the routing domain and the Kafka record key.

    Not tracked by the garbage collector (``gc=False``, inherited by every event): an event
    is immutable and holds no cycle, and a router's batch holds thousands of them, each
    one the collector would otherwise go through until the batch is done.
    """

    id: EventId
    domain: Domain
    occurred_at: Timestamp
    """Seconds since the Unix epoch (UTC) at which the fact happened."""
