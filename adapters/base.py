"""What every channel adapter shares: the publisher it hands events to, its errors, ids.

Adapters are stateless: verify the provider's signature, parse, normalize into
``schemas`` events, and publish. The HTTP answer is sent only after the broker
acknowledged (``Publisher.publish`` returns), so a provider retries anything we lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from runtime.kafka import DeadLetter
from schemas import InboundEvent
from schemas.ids import uuid5_of

#: Namespace of inbound event ids: the same provider message always gets the same id,
#: so a provider's retry is recognised downstream as the same event.
INBOUND_NAMESPACE = uuid.UUID("6f1c39a8-2f0e-4a57-9a43-3f2f0f9f5d11")


class AdapterError(Exception):
    """Root of adapter errors."""


class BadRequest(AdapterError):
    """The client's request is wrong: answered with 4xx and the reason, nothing published."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class SignatureRejected(BadRequest):
    """The request is not signed by the provider we share a secret with."""

    def __init__(self, reason: str = "invalid signature", *, status: int = 403) -> None:
        super().__init__(reason, status=status)


class Unusable(AdapterError):
    """Correctly signed provider data holding a value no event may carry (see
    ``schemas.limits``): the item is set aside on the dead-letter topic, not refused, so
    that the provider does not redeliver it forever. ``reason`` never quotes the value."""

    def __init__(self, reason: str, *, domain: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.domain = domain


class NonceStoreUnavailable(AdapterError):
    """The token cache cannot be reached: whether a token was used cannot be known, so the
    request is answered 503 and the provider retries."""


@dataclass(frozen=True, slots=True)
class Nonce:
    """A provider's one-time token of a signed request: claimed before publishing."""

    provider: str
    value: str
    """At most ``schemas.limits.NONCE_MAX`` characters, no control characters."""
    expires_at: float
    """When the signature stops being fresh: no replay can pass after that (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class Normalized:
    """What a provider request turned into: events to publish, items set aside, and the
    one-time token to claim first (providers that sign one)."""

    events: list[InboundEvent]
    set_aside: list[Unusable] = field(default_factory=list)
    nonce: Nonce | None = None

    @contextlib.contextmanager
    def setting_aside(self, where: str) -> Iterator[None]:
        """Set an item aside, named by ``where`` (its place in the request), when building
        it raises ``Unusable``: the request's other items go on."""
        try:
            yield
        except Unusable as unusable:
            self.set_aside.append(Unusable(f"{where}: {unusable.reason}", domain=unusable.domain))


class Publisher(Protocol):
    async def publish(self, events: Sequence[InboundEvent]) -> None:
        """Publish to ``conversations.inbound`` and return once the broker acknowledged all.

        Raises ``BrokerUnavailable`` when it cannot.
        """
        ...

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Publish to ``switchboard.dlq`` and return once the broker acknowledged all.

        Raises ``BrokerUnavailable`` when it cannot.
        """
        ...


class NonceStore(Protocol):
    """Tokens of signed webhook requests already used, shared by every adapter process."""

    async def claim(self, provider: str, nonce: str, expires_at: float) -> bool:
        """Record ``nonce`` as used until ``expires_at``; False when it already was.

        Raises ``NonceStoreUnavailable`` when the store cannot be reached.
        """
        ...

    async def release(self, provider: str, nonce: str) -> None:
        """Forget a claim whose request was not accepted, so the provider's retry is.

        Raises ``NonceStoreUnavailable`` when the store cannot be reached.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDeclaration:
    """What one provider adapter does, as the README's channel matrix shows it (generated
    from these declarations: ``adapters.catalog``). Each provider module declares its own
    next to the code that does it."""

    provider: str
    """The provider's name as people know it (``Twilio``, ``SendGrid``)."""
    channels: tuple[str, ...]
    """Our ``Channel`` values it carries."""
    inbound: str
    """Webhook routes customers' messages arrive on (``POST /webhooks/…``)."""
    outbound: str
    """The provider API replies are sent through, or ``—``."""
    media_in: str
    """What media customers' messages carry in (``image, video, audio, document``…)."""
    media_out: str
    """Attachments a reply can carry, with the provider's limits checked before sending."""
    statuses: str
    """Delivery statuses it reports (the provider's own names)."""
    read_receipts: str
    """Whether and how it tells that a customer read a message."""
    quick_replies: str
    """Suggested answers in replies, as the channel offers them, or ``—``."""
    signature: str
    """How its webhooks are authenticated."""
    replay_protection: str
    """What stops a captured request from being accepted twice."""


_inbound_uuid5 = uuid5_of(INBOUND_NAMESPACE)


def inbound_event_id(domain: str, channel: str, provider_message_id: str) -> str:
    """The stable event id of a provider message (dedupe key across retries):
    ``uuid5(INBOUND_NAMESPACE, "<domain>/<channel>/<provider message id>")``."""
    return _inbound_uuid5(f"{domain}/{channel}/{provider_message_id}")


def constant_time_equal(expected: str | bytes, given: str | bytes) -> bool:
    # surrogatepass: a header that is not UTF-8 reaches us as lone surrogates (aiohttp's
    # surrogateescape), and must compare unequal rather than fail to encode (a 500).
    a = expected.encode("utf-8", "surrogatepass") if isinstance(expected, str) else expected
    b = given.encode("utf-8", "surrogatepass") if isinstance(given, str) else given
    return hmac.compare_digest(a, b)


def hmac_hex(secret: str | bytes, body: bytes, digest: str = "sha256") -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, getattr(hashlib, digest)).hexdigest()


async def read_bounded(reply: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """A provider's or a hook's answer body, or None as soon as it is known to be longer
    than ``limit`` (read before parsing, never whole when too long)."""
    if reply.content_length is not None and reply.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await reply.content.readany():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
