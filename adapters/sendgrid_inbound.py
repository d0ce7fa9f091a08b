"""What a mail posted by SendGrid's Inbound Parse holds, read within bounds: the form's
fields (each text field in the character set ``charsets`` names for it) and files, a raw
mode message parsed with the standard library (``MAX_MIME_PARTS`` content types at most,
walked without recursion), an HTML body's text, and the parties the envelope and headers
name. ``adapters.sendgrid`` makes the message event of it."""

from __future__ import annotations

import codecs
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import html.parser
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from adapters import email as email_adapter
from adapters.base import (
    BadRequest,
    Unusable,
)
from adapters.config import (
    ChannelsConfig,
    EmailAddress,
)
from adapters.normalize import (
    decode_json,
    first_values,
    unknown_endpoint,
)
from schemas.limits import (
    SUBJECT_MAX,
    UnusableValue,
)

MAX_MIME_PARTS = 256
"""Content types in a raw-mode message: parts, nested multiparts and attached messages."""
HEADER_DECODE_MAX_CHARS = 4 * SUBJECT_MAX
"""An encoded header (a subject, a file name) longer than this is not decoded."""
_CHARSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,39}$")


@dataclass(frozen=True, slots=True)
class InboundForm:
    """An Inbound Parse POST's fields: text (each field in its character set), files, and
    the raw mode's whole message as bytes."""

    fields: dict[str, str]
    uploads: list[email_adapter.Upload]
    raw_email: bytes | None


class _Envelope(msgspec.Struct, frozen=True):
    to: list[str] = []
    sender: str | None = msgspec.field(default=None, name="from")


class AttachmentInfo(msgspec.Struct, frozen=True):
    filename: str | None = None
    type: str | None = None
    content_id: str | None = msgspec.field(default=None, name="content-id")


def _lenient_json(value: str | None, type_: type[Any]) -> Any:
    """An auxiliary JSON field (``envelope``, ``charsets``, ``attachment-info``), or None
    when absent or malformed: the mail is read without it."""
    if not value:
        return None
    try:
        return decode_json(value.encode("utf-8", "surrogatepass"), type_, "field")
    except BadRequest:
        return None


_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode"})
"""Text codecs that are no mail character set: the escape ones turn a sender's ``\\x00``
into U+0000 and warn on stray backslashes."""


def _text(data: bytes, charset: str | None) -> str:
    """``data`` decoded in ``charset`` (a name the codec registry knows as a text
    encoding that is a character set), else as UTF-8; undecodable bytes become U+FFFD."""
    if charset and _CHARSET.match(charset):
        try:
            if codecs.lookup(charset).name not in _NOT_CHARSETS:
                return data.decode(charset, "replace")
        except (LookupError, UnicodeError):
            pass
    return data.decode("utf-8", "replace")


def decode_form(split: email_adapter.SplitForm) -> InboundForm:
    """The fields of ``split``: each text field in the character set ``charsets`` names
    for it (SendGrid re-encodes ``to``, ``from``, ``cc`` and ``subject`` as UTF-8 but sends
    the bodies as they came), files as ``Upload``, ``email`` (raw mode) as bytes."""
    if split.pairs is not None:
        pairs = first_values(split.pairs)
        raw = pairs.get("email")
        return InboundForm(pairs, [], None if raw is None else raw.encode("utf-8"))
    parser = email.parser.BytesHeaderParser(policy=email.policy.HTTP)
    parts: list[tuple[str, str | None, str, str | None, bytes]] = []
    for raw_part in split.parts:
        try:
            # Headers only, as ``adapters.email`` reads them: content stays bytes.
            headers = parser.parsebytes(raw_part.headers)
            name = headers.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            # The decoder ``adapters.email`` reads Mailgun's parts with.
            data = email_adapter._transfer_decoded(
                raw_part.data, headers.get("content-transfer-encoding")
            )
            parts.append(
                (
                    name,
                    headers.get_filename(),
                    headers.get_content_type(),
                    headers.get_content_charset(),
                    data,
                )
            )
        except email_adapter.PART_HEADER_ERRORS as exc:
            raise BadRequest(f"malformed multipart body: {type(exc).__name__}") from None
    charsets: dict[str, str] = {}
    for name, filename, _, declared, data in parts:
        if name == "charsets" and filename is None:
            found = _lenient_json(_text(data, declared), dict[str, str])
            charsets = found if isinstance(found, dict) else {}
            break
    fields: dict[str, str] = {}
    uploads: list[email_adapter.Upload] = []
    raw_email: bytes | None = None
    for name, filename, content_type, declared, data in parts:
        if filename is not None:
            uploads.append(email_adapter.Upload(name, filename, content_type, len(data)))
        elif name == "email" and raw_email is None:
            raw_email = data
        elif name not in fields:
            fields[name] = _text(data, charsets.get(name) or declared)
    return InboundForm(fields, uploads, raw_email)


def mail_header(message: email.message.Message, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


def decoded_header(value: str | None) -> str | None:
    """A header with its RFC 2047 encoded words decoded (as written when they are not)."""
    if value is None or len(value) > HEADER_DECODE_MAX_CHARS:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (email.errors.HeaderParseError, ValueError, LookupError, UnicodeError):
        return value


class _TextOfHtml(html.parser.HTMLParser):
    """The text of an HTML body: its character data, scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skipping += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.chunks.append(data)


def html_text(markup: str) -> str:
    """The readable text of an HTML-only mail (its tags dropped, entities decoded, runs
    of blank lines made one)."""
    reader = _TextOfHtml()
    reader.feed(markup)
    reader.close()
    lines: list[str] = []
    for line in "".join(reader.chunks).splitlines():
        line = line.strip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()


@dataclass(frozen=True, slots=True)
class MailFile:
    """A file of a mail: its field (``attachmentN``), name, media type, size and
    Content-ID."""

    field: str
    filename: str | None
    content_type: str | None
    size: int | None
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Mime:
    """What a raw-mode message holds: its headers, text and files."""

    message: email.message.Message
    text: str
    files: list[MailFile]


def _payload_size(part: email.message.Message) -> int | None:
    payload = part.get_payload(decode=True)
    return len(payload) if isinstance(payload, bytes) else None


def parse_mime(raw: bytes, domain: str) -> _Mime:
    """A raw-mode message read with the standard ``email`` package, bounded: at most
    ``MAX_MIME_PARTS`` content types (each nested multipart or attached message declares
    one), walked without recursion; an attached message stays one file. Its text is the
    first ``text/plain`` part that is not an attachment, else its first HTML part's text;
    its files are the parts with a file name or an ``attachment`` disposition, and every
    part that is not text. ``Unusable`` when it nests deeper than that."""
    if raw.lower().count(b"content-type") > MAX_MIME_PARTS:
        raise Unusable(f"raw message of more than {MAX_MIME_PARTS} parts", domain=domain)
    try:
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
        leaves: list[email.message.Message] = []
        stack = [message]
        while stack:
            part = stack.pop()
            payload = part.get_payload()
            if part.get_content_maintype() == "multipart" and isinstance(payload, list):
                stack.extend(p for p in reversed(payload) if isinstance(p, email.message.Message))
            else:
                leaves.append(part)
        plain = html = None
        files: list[MailFile] = []
        for part in leaves:
            content_type = part.get_content_type()
            disposition = (part.get_content_disposition() or "").lower()
            filename = decoded_header(part.get_filename())
            if filename is None and disposition != "attachment":
                if content_type == "text/plain" and plain is None:
                    plain = part
                    continue
                if content_type == "text/html" and html is None:
                    html = part
                    continue
                if part.get_content_maintype() == "text":
                    continue  # another alternative of the text
            # An attached message is one file; its size is not worth re-encoding it.
            size = None if content_type == "message/rfc822" else _payload_size(part)
            cid = mail_header(part, "Content-ID")
            field = f"attachment{len(files) + 1}"
            files.append(MailFile(field, filename, content_type, size, content_id_of(cid)))
        text = ""
        if plain is not None:
            text = _part_text(plain)
        elif html is not None:
            text = html_text(_part_text(html))
    except (LookupError, ValueError, UnicodeError, TypeError, IndexError) as exc:
        raise BadRequest(f"malformed raw message: {type(exc).__name__}") from None
    return _Mime(message, text, files)


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return _text(data, part.get_content_charset())


def recipient_of(config: ChannelsConfig, fields: Mapping[str, str]) -> tuple[EmailAddress, str]:
    """Our configured address the mail came to: the SMTP envelope's recipient (what
    SendGrid received it for), else ``to`` and ``cc``; else 404 (set aside, signed)."""
    envelope = _lenient_json(fields.get("envelope"), _Envelope)
    candidates = []
    if isinstance(envelope, _Envelope) and envelope.to:
        candidates.append(", ".join(envelope.to))
    headers = ", ".join(v for v in (fields.get("to"), fields.get("cc")) if v)
    if headers:
        candidates.append(headers)
    for recipients in candidates:
        try:
            return email_adapter._find_address(config, recipients)
        except BadRequest:
            continue
    raise unknown_endpoint("this recipient address")


def customer_of(fields: Mapping[str, str], headers: email.message.Message, domain: str) -> str:
    envelope = _lenient_json(fields.get("envelope"), _Envelope)
    sender = fields.get("from") or mail_header(headers, "From") or ""
    if not sender and isinstance(envelope, _Envelope):
        sender = envelope.sender or ""
    try:
        _, address = email_adapter._parsed(email.utils.parseaddr, sender)
    except UnusableValue as exc:
        raise Unusable(f"from: {exc}", domain=domain) from None
    address = address.strip().lower()
    if "@" not in address:
        raise BadRequest("sender address missing")
    return address


def content_id_of(value: str | None) -> str | None:
    """A Content-ID without its angle brackets (None when empty)."""
    return value.strip().strip("<>") or None if value else None


def attachment_info(fields: Mapping[str, str]) -> dict[str, AttachmentInfo]:
    found = _lenient_json(fields.get("attachment-info"), dict[str, AttachmentInfo])
    return found if isinstance(found, dict) else {}
