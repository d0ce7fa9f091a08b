"""What every channel adapter shares: the publisher it hands events to, its errors, ids.

Adapters are stateless: verify the provider's signature, parse, normalize into
``schemas`` events, and publish. The HTTP answer is sent only after the broker
acknowledged (``Publisher.publish`` returns), so a provider retries anything we lost.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from typing import Protocol

from schemas import InboundEvent

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


class BrokerUnavailable(AdapterError):
    """The broker did not acknowledge: answer 503 so the provider retries."""


class Publisher(Protocol):
    async def publish(self, events: Sequence[InboundEvent]) -> None:
        """Publish to ``conversations.inbound`` and return once the broker acknowledged all.

        Raises ``BrokerUnavailable`` when it cannot.
        """
        ...


def inbound_event_id(domain: str, channel: str, provider_message_id: str) -> str:
    """The stable event id of a provider message (dedupe key across retries)."""
    return str(uuid.uuid5(INBOUND_NAMESPACE, f"{domain}/{channel}/{provider_message_id}"))


def constant_time_equal(expected: str | bytes, given: str | bytes) -> bool:
    a = expected.encode() if isinstance(expected, str) else expected
    b = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(a, b)


def hmac_hex(secret: str | bytes, body: bytes, digest: str = "sha256") -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, getattr(hashlib, digest)).hexdigest()
