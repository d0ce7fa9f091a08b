"""What a provider send is made of, below egress and every provider module: the request
(``ProviderRequest``, with its ``prepare`` step), its failures, the reply's quick replies
as text, and files fetched to upload (``fetch_attachment``: from public addresses only,
unless ``[channels] media_fetch_allow_private``; ``multipart_form_data``).

Provider modules build their requests from these; ``adapters.egress`` performs them and
picks the builder for a message.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import aiohttp
import msgspec
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from runtime.callbacks import literal_address, public_address
from schemas import Attachment, Location, NotificationRequested, ReplyRequested

WHATSAPP_BUTTONS_MAX = 3
"""Reply buttons of one WhatsApp interactive message."""


WHATSAPP_BUTTON_TITLE_MAX = 20
"""Characters of a WhatsApp reply button's title."""


WHATSAPP_BUTTON_BODY_MAX = 1024
"""Characters of the body of a WhatsApp interactive message."""


Outbound = ReplyRequested | NotificationRequested
"""What egress sends: both carry the fields the provider requests use."""


class EgressUnroutable(Exception):
    """No provider is configured to send from this endpoint on this channel."""


@dataclass(frozen=True, kw_only=True)
class ProviderRequest:
    """One provider API call, ready to perform (at most one of ``json``, ``form`` and
    ``data`` is set)."""

    provider: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Mapping[str, Any] | None = None
    form: list[tuple[str, str]] | None = None
    data: bytes | None = None
    """A body built otherwise, e.g. a multipart form with files, as bytes, its
    ``Content-Type`` in ``headers`` (bytes: the same body again on a retry)."""
    method: str = "POST"
    message_id: Callable[[Any], str | None] = lambda _body: None
    """Reads the provider's message id from its decoded JSON answer."""
    message_id_header: str | None = None
    """The answer's header holding the provider's message id, for providers that answer
    without a body (SendGrid's 202 and ``X-Message-Id``); read before ``message_id``."""
    prepare: Callable[[aiohttp.ClientSession], Awaitable[ProviderRequest]] | None = None
    """The I/O a request needs before it can be sent, done once before the first attempt:
    an access token from the provider's token endpoint, attachments fetched to upload.
    Returns the request to send. Raises ``PrepareFailed`` (final, or ``retryable``)."""
    then: tuple[ProviderRequest, ...] = ()
    """Calls that deliver the rest of the same message, in order, each once the one
    before succeeded (Telegram: a second file, a location after the text), with the same
    retries and no preparation. The message's provider id is the first call's; when one
    of them fails the send fails, its error starting "sent in part"."""


class PrepareFailed(Exception):
    """A request could not be prepared: the reason (no secret, no customer data)."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def decoded_answer(raw: bytes | None) -> Any:
    """A provider's answer as JSON, or None when it is empty or not JSON (an error page):
    its status says what happened, the body only adds detail."""
    try:
        return msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        return None


def answer_value(body: Any, *path: str | int) -> Any:
    """What a decoded provider answer holds at ``path`` (keys and list indexes), or None."""
    for key in path:
        if isinstance(key, int) and isinstance(body, list) and len(body) > key:
            body = body[key]
        elif isinstance(key, str) and isinstance(body, dict):
            body = body.get(key)
        else:
            return None
    return body


def answer_text(body: Any, *path: str | int) -> str | None:
    """``answer_value`` as text (a message id may come as a number), or None."""
    found = answer_value(body, *path)
    return None if found is None else str(found)


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic authentication."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def quick_replies(reply: Outbound) -> tuple[str, ...]:
    """A reply's suggested answers, each once, in order (a business-started message has
    none)."""
    if isinstance(reply, NotificationRequested):
        return ()
    return tuple(dict.fromkeys(reply.quick_replies))


def with_numbered_options(text: str, options: Sequence[str]) -> str:
    """``text`` with ``options`` listed after it, numbered: quick replies where the channel
    has no buttons."""
    if not options:
        return text
    listed = "\n".join(f"{number}. {option}" for number, option in enumerate(options, 1))
    return f"{text}\n\n{listed}" if text else listed


def split_text(text: str, longest: int) -> list[str]:
    """``text`` in parts of at most ``longest`` characters, for a provider that takes no
    longer text in one message: each cut at its last line break or space, when that is in
    the part's second half (the break itself dropped), else where the part is full."""
    parts: list[str] = []
    while len(text) > longest:
        window = text[: longest + 1]
        cut = max(window.rfind("\n"), window.rfind(" "))
        if cut < longest // 2:
            parts.append(text[:longest])
            text = text[longest:]
        else:
            parts.append(text[:cut])
            text = text[cut + 1 :]
    parts.append(text)
    return parts


ATTACHMENT_FETCH_SECONDS = 60.0
"""How long fetching one attachment to upload may take (redirects included)."""


ATTACHMENT_REDIRECTS_MAX = 5
"""Redirects followed when fetching one attachment, each to an address checked again."""


_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES = 64 * 1024


OCTET_STREAM = "application/octet-stream"


class AddressRefused(Exception):
    """A media URL's host is, or resolves to, an address attachments are not fetched from."""


class PublicResolver(AbstractResolver):
    """Resolves a host with the event loop's ``getaddrinfo`` and refuses it
    (``AddressRefused``) when any of its addresses is not ``public_address``. The connector
    connects only to the addresses returned here, so a name whose answer changes between a
    check and the connection (DNS rebinding) reaches nothing else."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if not found or not all(public_address(result["host"]) for result in found):
            raise AddressRefused
        return found

    async def close(self) -> None:
        await self._resolver.close()


def _checked_url(url: yarl.URL, number: int, allow_private: bool) -> yarl.URL:
    """``url`` when it may be fetched: http(s) with a host, not an IP address we refuse
    (a host name is checked by ``PublicResolver`` when the connection is made)."""
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise PrepareFailed(f"attachment {number}: not an http(s) URL")
    literal = literal_address(url.raw_host)
    if not allow_private and literal is not None and not public_address(literal):
        raise AddressRefused
    return url


async def fetch_attachment_to(
    sink: IO[bytes],
    attachment: Attachment,
    limit: int,
    number: int,
    *,
    allow_private: bool,
    seconds: float = ATTACHMENT_FETCH_SECONDS,
) -> int:
    """Write the bytes at an attachment's URL to ``sink`` (a file, a buffer), for a
    provider that takes files uploaded rather than by URL; their count. The only way
    attachments are fetched:

    - from public addresses only (``public_address``), checked before connecting: an IP
      literal in the URL here, a host name's addresses by ``PublicResolver``, which the
      connection then uses; every redirect (at most ``ATTACHMENT_REDIRECTS_MAX``) is
      checked again. ``allow_private`` (``[channels] media_fetch_allow_private``) lifts
      this, for media servers on an internal network and tests;
    - at most ``limit`` bytes, refused as soon as the answer is known to be longer;
    - within ``seconds`` in all; no proxy from the environment, no cookies kept.

    Failures are ``PrepareFailed``, retryable after a connection error, a timeout, a 429
    or a 5xx; an address refused is final ("address not allowed"). Reasons name the
    attachment by its number, never its URL (it may carry a token)."""
    try:
        url = _checked_url(yarl.URL(attachment.url), number, allow_private)
        connector = aiohttp.TCPConnector(
            resolver=None if allow_private else PublicResolver(), use_dns_cache=False
        )
        async with (
            asyncio.timeout(seconds),
            aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            ) as session,
        ):
            for _ in range(ATTACHMENT_REDIRECTS_MAX + 1):
                async with session.get(url, allow_redirects=False) as resp:
                    location = resp.headers.get("Location")
                    if resp.status in _REDIRECT_STATUSES and location:
                        url = _checked_url(url.join(yarl.URL(location)), number, allow_private)
                        continue
                    if resp.status == 429 or resp.status >= 500:
                        raise PrepareFailed(
                            f"attachment {number}: HTTP {resp.status}", retryable=True
                        )
                    if not 200 <= resp.status < 300:
                        raise PrepareFailed(f"attachment {number}: HTTP {resp.status}")
                    return await _copy_bounded(resp, sink, limit, number)
            raise PrepareFailed(
                f"attachment {number}: more than {ATTACHMENT_REDIRECTS_MAX} redirects"
            )
    except AddressRefused:
        raise PrepareFailed(f"attachment {number}: address not allowed") from None
    except ValueError:  # a URL yarl or aiohttp cannot use (aiohttp.InvalidURL is one)
        raise PrepareFailed(f"attachment {number}: not an http(s) URL") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PrepareFailed(
            f"attachment {number}: connection error: {type(exc).__name__}", retryable=True
        ) from None


async def _copy_bounded(
    resp: aiohttp.ClientResponse, sink: IO[bytes], limit: int, number: int
) -> int:
    too_large = PrepareFailed(f"attachment {number}: larger than the {limit} bytes allowed")
    if resp.content_length is not None and resp.content_length > limit:
        raise too_large
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise too_large
        sink.write(chunk)
    return size


async def fetch_attachment(
    attachment: Attachment, limit: int, number: int, *, allow_private: bool
) -> bytes:
    """The bytes at an attachment's URL: ``fetch_attachment_to`` into memory."""
    buffer = io.BytesIO()
    await fetch_attachment_to(buffer, attachment, limit, number, allow_private=allow_private)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file of a ``multipart/form-data`` body."""

    name: str
    filename: str
    content_type: str
    data: bytes


def _form_quoted(value: str) -> str:
    # The HTML standard's multipart/form-data encoding of names and file names.
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def multipart_form_data(
    fields: Sequence[tuple[str, str]], files: Sequence[FilePart]
) -> tuple[str, bytes]:
    """A ``multipart/form-data`` body (RFC 7578) of ``fields`` then ``files``, and its
    ``Content-Type``: built once, so a retry sends the same bytes."""
    boundary = "switchboard-" + secrets.token_hex(16)
    while any(boundary in value for _, value in fields) or any(
        boundary.encode() in part.data for part in files
    ):
        boundary = "switchboard-" + secrets.token_hex(16)
    chunks: list[bytes] = []
    for name, value in fields:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_form_quoted(name)}"'
            f"\r\n\r\n{value}\r\n".encode()
        )
    for part in files:
        chunks.append(
            (
                f"--{boundary}\r\nContent-Disposition: form-data;"
                f' name="{_form_quoted(part.name)}"; filename="{_form_quoted(part.filename)}"'
                f"\r\nContent-Type: {part.content_type}\r\n\r\n"
            ).encode()
            + part.data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def upload_name(attachment: Attachment, number: int) -> str:
    """The attachment's file name, else its URL's last path segment, else a numbered one."""
    if attachment.filename:
        return attachment.filename
    segment = urllib.parse.unquote(urllib.parse.urlsplit(attachment.url).path.rpartition("/")[2])
    return segment or f"attachment-{number}"


def email_text(reply: Outbound) -> str:
    """An email's text: the reply's, the place it names, and its suggested answers; the
    attached files' names when there is nothing else (Mailgun wants a body)."""
    location = reply.location if isinstance(reply, ReplyRequested) else None
    parts = [reply.text] if reply.text else []
    if location is not None:
        parts.append(location_text(location))
    text = with_numbered_options("\n\n".join(parts), quick_replies(reply))
    if not text and reply.attachments:
        names = (upload_name(a, n) for n, a in enumerate(reply.attachments, 1))
        text = "Attached: " + ", ".join(names)
    return text


def location_text(location: Location) -> str:
    """A place as a line of text, for channels that cannot send one (SMS, email, Messenger,
    Instagram): its name and address, its coordinates, and its link, else a ``geo:`` URI
    (RFC 5870), which phones open in their maps."""
    named = ", ".join(part for part in (location.name, location.address) if part)
    coordinates = f"{location.latitude}, {location.longitude}"
    link = location.url or f"geo:{location.latitude},{location.longitude}"
    return f"{named} ({coordinates}) {link}" if named else f"{coordinates} {link}"
