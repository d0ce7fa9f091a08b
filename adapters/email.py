"""Email ingress through Mailgun inbound routes: ``POST /webhooks/email/mailgun``.

A route's ``forward()`` (or ``store(notify=…)``) action posts the parsed message as a
form: url-encoded, or multipart when files are attached. Authenticity: ``signature`` is
the hex HMAC-SHA256 of ``timestamp`` + ``token`` keyed with the webhook signing key.

Threading: the thread root is the first Message-ID of ``References``, else
``In-Reply-To``, else the message's own ``Message-Id``, so every message of a thread
shares one ``conversation_key`` (``email:{our address}:{root}``). Replies we send carry
``In-Reply-To``/``References`` (see ``adapters.egress``), so the customer's answers land
in the same thread.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import hashlib
import math
import re
from dataclasses import dataclass

import msgspec

from adapters.base import BadRequest, SignatureRejected, constant_time_equal, hmac_hex
from adapters.config import ChannelsConfig, EmailAddress
from adapters.normalize import first_values, message_received, parse_form, unknown_endpoint
from schemas import Attachment, Channel, InboundEvent

PROVIDERS = ("mailgun",)
_MSG_ID = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart form (its bytes are not kept)."""

    field: str
    filename: str | None
    content_type: str | None
    size: int


@dataclass(frozen=True, slots=True)
class Form:
    fields: list[tuple[str, str]]
    uploads: list[Upload]


def parse_form_body(body: bytes, content_type: str | None) -> Form:
    """Decode a url-encoded or multipart/form-data body, or raise ``BadRequest``."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        return Form(parse_form(body), [])
    if ctype != "multipart/form-data":
        raise BadRequest("expected a url-encoded or multipart/form-data body", status=415)
    head = b"Content-Type: " + (content_type or "").encode("latin-1", "replace") + b"\r\n\r\n"
    try:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not msg.is_multipart():
            raise BadRequest("multipart body without parts (boundary?)")
        fields: list[tuple[str, str]] = []
        uploads: list[Upload] = []
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            filename = part.get_filename()
            if filename is not None:
                uploads.append(Upload(name, filename, part.get_content_type(), len(data)))
            else:
                fields.append((name, data.decode(part.get_content_charset() or "utf-8")))
    except (UnicodeError, LookupError, ValueError, TypeError, IndexError) as exc:
        raise BadRequest(f"malformed multipart body: {type(exc).__name__}") from None
    return Form(fields, uploads)


def verify_mailgun(
    signing_key: str,
    fields: dict[str, str],
    now: float,
    max_age_seconds: int = 0,
) -> None:
    """Raise ``SignatureRejected`` unless Mailgun signed ``timestamp`` + ``token``."""
    timestamp, token, signature = (
        fields.get("timestamp"),
        fields.get("token"),
        fields.get("signature"),
    )
    if not (timestamp and token and signature):
        raise SignatureRejected("missing timestamp, token or signature", status=401)
    expected = hmac_hex(signing_key, (timestamp + token).encode(), "sha256")
    if not constant_time_equal(expected, signature.lower()):
        raise SignatureRejected()
    if max_age_seconds > 0:
        try:
            age = abs(now - float(timestamp))
        except ValueError:
            raise SignatureRejected("timestamp is not a number") from None
        if age > max_age_seconds:
            raise SignatureRejected("signature expired")


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs in a header value, without angle brackets."""
    if not value:
        return []
    found = _MSG_ID.findall(value)
    return found if found else value.split()


def thread_root(message_id: str, in_reply_to: str | None, references: str | None) -> str:
    """The first Message-ID of References, else In-Reply-To, else the message's own id."""
    for ids in (message_ids(references), message_ids(in_reply_to)):
        if ids:
            return ids[0]
    return message_id


def _headers(fields: dict[str, str]) -> dict[str, str]:
    """MIME headers by lower-case name: ``message-headers`` JSON, then top-level fields."""
    out: dict[str, str] = {}
    raw = fields.get("message-headers")
    if raw:
        try:
            pairs = msgspec.json.decode(raw, type=list[tuple[str, str]])
        except msgspec.DecodeError:
            raise BadRequest("message-headers is not a JSON list of [name, value]") from None
        for name, value in pairs:
            out.setdefault(name.lower(), value)
    for name in ("Message-Id", "In-Reply-To", "References", "Date"):
        for key in (name, name.lower()):
            if fields.get(key):
                out[name.lower()] = fields[key]
    return out


class StoredAttachment(msgspec.Struct, frozen=True):
    url: str
    content_type: str | None = msgspec.field(default=None, name="content-type")
    name: str | None = None
    size: int | None = None


def _find_address(config: ChannelsConfig, recipients: str) -> tuple[EmailAddress, str]:
    wanted = {addr.lower() for _, addr in email.utils.getaddresses([recipients]) if addr}
    for configured in config.email.addresses:
        key = configured.address.lower()
        if key in wanted:
            return configured, key
    raise unknown_endpoint("this recipient address")


def parse_mailgun(form: Form, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    """Normalize a verified Mailgun route POST into one ``MessageReceived``."""
    fields = first_values(form.fields)
    recipient = fields.get("recipient") or fields.get("To") or ""
    if not recipient:
        raise BadRequest("recipient missing")
    endpoint, our_address = _find_address(config, recipient)
    _, customer = email.utils.parseaddr(fields.get("from") or fields.get("sender") or "")
    customer = customer.strip().lower()
    if "@" not in customer:
        raise BadRequest("sender address missing")
    headers = _headers(fields)
    subject = fields.get("subject") or fields.get("Subject")
    body = fields.get("stripped-text") or fields.get("body-plain") or ""
    own_ids = message_ids(headers.get("message-id"))
    if own_ids:
        message_id = own_ids[0]
    else:
        # No Message-Id (rare, broken mailers): a digest of what a retry repeats exactly.
        basis = "\n".join([customer, our_address, subject or "", headers.get("date", ""), body])
        message_id = "sha256:" + hashlib.sha256(basis.encode()).hexdigest()
    root = thread_root(message_id, headers.get("in-reply-to"), headers.get("references"))

    attachments: list[Attachment] = []
    if fields.get("attachments"):
        try:
            stored = msgspec.json.decode(fields["attachments"], type=list[StoredAttachment])
        except msgspec.DecodeError:
            raise BadRequest("attachments is not Mailgun's JSON list") from None
        attachments += [
            Attachment(url=a.url, content_type=a.content_type, filename=a.name, size_bytes=a.size)
            for a in stored
        ]
    attachments += [
        # Forwarded files arrive inline; without a blob store we keep what they were.
        Attachment(
            url=f"urn:switchboard:email:{message_id}:{u.field}",
            content_type=u.content_type,
            filename=u.filename,
            size_bytes=u.size,
        )
        for u in form.uploads
    ]
    try:
        occurred_at = float(fields.get("timestamp") or now)
    except ValueError:
        raise BadRequest("timestamp is not a number") from None
    if not math.isfinite(occurred_at) or occurred_at < 0:
        raise BadRequest("timestamp is not a Unix time")
    return [
        message_received(
            config,
            endpoint,
            channel=Channel.EMAIL,
            endpoint_key=our_address,
            customer_address=customer,
            provider_message_id=message_id,
            occurred_at=occurred_at,
            text=body,
            attachments=tuple(attachments),
            subject=subject,
            conversation_key=f"email:{our_address}:{root}",
        )
    ]
