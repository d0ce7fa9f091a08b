"""Helpers every provider module shares to turn a provider payload into ``schemas`` events."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

import msgspec

from adapters.base import BadRequest, inbound_event_id
from adapters.config import ChannelsConfig
from schemas import Attachment, Channel, MessageReceived

T = TypeVar("T")

#: Meta lets a business answer freely for 24 h after the customer's last message.
META_REPLY_WINDOW_SECONDS = 24 * 3600


class Endpoint(Protocol):
    """Any configured endpoint: it names its domain and optional queue."""

    @property
    def domain(self) -> str: ...

    @property
    def queue(self) -> str | None: ...


E = TypeVar("E", bound=Endpoint)


def find_endpoint(endpoints: Iterable[E], key: str, attr: str) -> E | None:
    """The configured endpoint whose ``attr`` equals ``key``, else None."""
    for endpoint in endpoints:
        if getattr(endpoint, attr) == key:
            return endpoint
    return None


def unknown_endpoint(kind: str) -> BadRequest:
    return BadRequest(f"{kind} is not configured in [channels]", status=404)


def decode_json(body: bytes, type_: type[T], what: str) -> T:
    """Decode and validate a JSON body, or raise ``BadRequest`` with msgspec's reason."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed {what}: {exc}") from None


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """Decode an ``application/x-www-form-urlencoded`` body, keeping repeated keys."""
    try:
        text = body.decode("utf-8")
        return urllib.parse.parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("form body is not valid UTF-8 url-encoded data") from None


def first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The first value of every key."""
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def e164(number: str) -> str:
    """A WhatsApp ``wa_id`` (digits only) as E.164 (``+`` and digits); other forms unchanged."""
    digits = number.strip()
    return "+" + digits if digits.isdigit() else digits


def message_received(
    config: ChannelsConfig,
    endpoint: Endpoint,
    *,
    channel: Channel,
    endpoint_key: str,
    customer_address: str,
    provider_message_id: str,
    occurred_at: float,
    text: str = "",
    attachments: tuple[Attachment, ...] = (),
    subject: str | None = None,
    conversation_key: str | None = None,
    reply_window: float | None = None,
) -> MessageReceived:
    """One normalized customer message with its stable id and identities derived."""
    domain = endpoint.domain
    return MessageReceived(
        id=inbound_event_id(domain, channel.value, provider_message_id),
        domain=domain,
        occurred_at=occurred_at,
        channel=channel,
        endpoint=endpoint_key,
        customer_address=customer_address,
        customer_id=config.customer_id(domain, channel.value, customer_address),
        conversation_key=conversation_key or f"{channel.value}:{endpoint_key}:{customer_address}",
        provider_message_id=provider_message_id,
        text=text,
        attachments=attachments,
        subject=subject,
        queue=endpoint.queue,
        reply_window_ends_at=None if reply_window is None else occurred_at + reply_window,
    )


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value is None else value.strip()
