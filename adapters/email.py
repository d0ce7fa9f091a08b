"""Email through Mailgun: inbound routes (``POST /webhooks/email/mailgun``), event
webhooks (``POST /webhooks/email/mailgun/events``), and what replies need (threading,
attachment limits; the send itself is ``adapters.egress.mailgun_request``).

A route's ``forward()`` (or ``store(notify=…)``) action posts the parsed message as a
form: url-encoded, or multipart when files are attached. Authenticity: ``signature`` is
the hex HMAC-SHA256 of ``timestamp`` + ``token`` keyed with the webhook signing key. It
covers neither the body nor the Message-Id, so a captured triple could carry any mail:
the timestamp must be fresh (``max_age_seconds``, and no more than 15 minutes ahead) and
the token unused (claimed once, in the shared token cache, see ``adapters.webhooks``).

Event webhooks post JSON ``{"signature": {timestamp, token, signature}, "event-data":
{…}}`` signed the same way (documentation.mailgun.com/docs/mailgun/user-manual/webhooks):
the signature object alone is read and verified, and its token claimed, before the
event is. Each event about a message we sent becomes a ``DeliveryStatusChanged``
(``STATUS_MAP``; ``provider_status`` is the event's name, with the severity of a
``failed`` one: ``failed:permanent``); our outbound id and routing domain come back in
``user-variables`` (set by the send), the provider message id is the Message-Id in
``message.headers.message-id``. Events of mail we did not send (another application on
the same Mailgun domain) are not ours and are ignored. ``unsubscribed`` (the mail's
unsubscribe link followed) and ``complained`` (reported as spam) of mail of ours also
opt the customer out (``CONSENT_MAP``): a ``ConsentReported`` besides the status, for the
event's ``recipient`` spelled as a customer message's sender is (the address alone, in
lower case) on our sending address, its id from the event's ``id``, so a redelivery is
the same report. Mailgun itself stops sending to such an address (later sends come back
``failed:permanent``); the opt-out also stops our business-started messages on any
provider before they are sent.

Threading: the thread root is the first Message-ID of ``References``, else
``In-Reply-To``, else the message's own ``Message-Id``, so every message of a thread
shares one ``conversation_key`` (``email:{our address}:{root}``). Replies we send carry
``In-Reply-To``/``References`` (see ``adapters.egress``), so the customer's answers land
in the same thread. Message-IDs are written by the customer's mailer: one that no event
may carry (longer than ``PROVIDER_MESSAGE_ID_MAX``, or holding control characters) is
passed over as a thread root, and as the message's own id it is replaced by the digest
used for mail without a Message-Id, rather than setting the customer's mail aside.

Attachments keep every reference Mailgun gives: a stored message's attachment keeps
Mailgun's URL (``url``, fetched with the API key), a forwarded file (its bytes are not
kept) our ``urn:switchboard:email:…`` reference; both keep their media type, file name,
size, and the Content-ID ``content-id-map`` gives it (``media_id``).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import email.utils
import hashlib
import quopri
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from adapters.base import (
    BadRequest,
    ChannelDeclaration,
    Nonce,
    SignatureRejected,
    Unusable,
    constant_time_equal,
    hmac_hex,
)
from adapters.config import MAILGUN_MAX_AGE_SECONDS, ChannelsConfig, EmailAddress
from adapters.media import EVERY_MEDIA_TYPE, MediaLimits, MediaRule
from adapters.normalize import (
    consent_reported,
    decode_json,
    delivery_status_changed,
    first_values,
    message_received,
    parse_form,
    unknown_endpoint,
)
from schemas import (
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    DeliveryStatus,
    InboundEvent,
    NotificationRequested,
    ReplyRequested,
    email_conversation_key,
)
from schemas.limits import (
    ATTACHMENTS_MAX,
    NONCE_MAX,
    PLAUSIBLE_FUTURE_SECONDS,
    PROVIDER_MESSAGE_ID_MAX,
    UnusableValue,
    is_identifier,
)

T = TypeVar("T")

PROVIDERS = ("mailgun",)
_MSG_ID = re.compile(r"<([^<>\s]+)>")

OUTBOUND_ID_VARIABLE = "switchboard-outbound-id"
"""The Mailgun variable (``v:…``) holding our outbound id: events echo it back."""
DOMAIN_VARIABLE = "switchboard-domain"
"""The Mailgun variable holding the routing domain of the message sent."""

MESSAGE_MAX_BYTES = 25 * 1024 * 1024
"""Mailgun's largest message: "Mailgun supports maximum messages size of 25MB"
(documentation.mailgun.com, Sending messages)."""
ATTACHMENTS_MAX_BYTES = 18 * 1024 * 1024
"""Files of one reply together: base64 makes them a third larger in the message, and
its text and headers need some room under ``MESSAGE_MAX_BYTES``."""
MEDIA_LIMITS = MediaLimits(
    provider="Mailgun",
    # Mailgun uploads any type of file (``attachment`` parts): the message size is the rule.
    rules=(
        MediaRule(
            "file",
            EVERY_MEDIA_TYPE,
            ATTACHMENTS_MAX_BYTES,
        ),
    ),
    max_count=ATTACHMENTS_MAX,
    max_total_bytes=ATTACHMENTS_MAX_BYTES,
)
"""What a reply may attach: fetched from their URLs and uploaded with the message."""

#: Mailgun events (a ``failed`` one with its severity) → our status; None: not about
#: delivering a message we sent. The documented events ("Event Types",
#: documentation.mailgun.com/docs/mailgun/user-manual/events) are all here.
STATUS_MAP: dict[str, DeliveryStatus | None] = {
    "accepted": DeliveryStatus.QUEUED,
    "rejected": DeliveryStatus.FAILED,  # Mailgun refused to send it at all
    "delivered": DeliveryStatus.DELIVERED,  # the recipient's mail server took it
    "failed:temporary": DeliveryStatus.QUEUED,  # refused for now: Mailgun retries
    # Bounced, retries exhausted, or an address Mailgun suppresses (bounced, unsubscribed,
    # complained before): accepted by Mailgun, never delivered.
    "failed:permanent": DeliveryStatus.UNDELIVERED,
    "opened": DeliveryStatus.READ,  # open tracking: the nearest email has to a receipt
    "clicked": DeliveryStatus.READ,  # a link in it followed (images may be off)
    "unsubscribed": DeliveryStatus.READ,  # its unsubscribe link followed
    "complained": DeliveryStatus.DELIVERED,  # reported as spam: it reached the mailbox
    "stored": None,  # an incoming message a route stored: not one we sent
    "list_member_uploaded": None,  # mailing-list bookkeeping: no message
    "list_member_upload_error": None,
    "list_uploaded": None,
}
#: Mailgun events that also change the customer's consent (a ``ConsentReported``).
CONSENT_MAP: dict[str, Consent] = {
    "unsubscribed": Consent.OPT_OUT,  # the unsubscribe link of a mail of ours followed
    "complained": Consent.OPT_OUT,  # a mail of ours reported as spam: stop writing
}
FAILED_OTHERWISE = DeliveryStatus.FAILED
"""A ``failed`` event of a severity not documented (``internal``)."""

DECLARATION = ChannelDeclaration(
    provider="Mailgun",
    channels=("email",),
    inbound="POST /webhooks/email/mailgun (routes: forward() or store(notify)); POST"
    " /webhooks/email/mailgun/events (event webhooks; unsubscribed and complained also opt"
    " the customer out)",
    outbound="Mailgun messages API (`/v3/{domain}/messages`), threaded by In-Reply-To / References",
    media_in="attachments: stored ones by Mailgun's URL, forwarded files by reference;"
    " media type, file name, size, Content-ID",
    media_out="any file type, fetched from its URL and uploaded (multipart `attachment`),"
    " 18 MB together (a 25 MB message); a location as text",
    statuses="accepted, rejected, delivered, failed (temporary / permanent), opened,"
    " clicked, unsubscribed, complained",
    read_receipts="`opened` (open tracking) and `clicked`, as `read`",
    quick_replies="numbered list after the text",
    signature="HMAC-SHA256 of timestamp + token with the webhook signing key (routes and events)",
    replay_protection="timestamp within `max_age_seconds` (8.5 h) and each token accepted"
    " once (shared token cache)",
)
"""Mailgun as the README's channel matrix shows it."""


MAX_PARTS = 256
"""Parts of a multipart form: Mailgun's thirty-odd fields and the attached files."""
MAX_PART_HEADER_BYTES = 8 * 1024
"""Header block of one part (a few ``Content-*`` lines)."""
PART_HEADER_ERRORS = (UnicodeError, LookupError, ValueError, TypeError, IndexError, RecursionError)
"""What reading a part's headers with the standard library's parser raises on a malformed
one: ``RecursionError`` for comments nested hundreds deep (``((((…))))``), which it
reads recursively."""
MAX_ADDRESS_LIST_CHARS = 4000
"""A ``from`` or ``recipient`` value: a few addresses with display names."""
_SIGNATURE_FIELDS = ("timestamp", "token", "signature")
_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
# The field name of a part, read before the signature is checked: a plain quoted name.
_PART_NAME = re.compile(rb'(?im)^content-disposition:[^\r\n]*?;\s*name="([^"\r\n]*)"')


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


@dataclass(frozen=True, slots=True)
class _RawPart:
    headers: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class SplitForm:
    """A form body cut into its fields, nothing decoded but what the signature needs."""

    pairs: list[tuple[str, str]] | None
    """A url-encoded body's fields (decoding them is the cheap part)."""
    parts: list[_RawPart]
    """A multipart body's parts, as bytes."""

    def signature_fields(self) -> dict[str, str]:
        """``timestamp``, ``token`` and ``signature``, as far as present."""
        if self.pairs is not None:
            return {k: v for k, v in first_values(self.pairs).items() if k in _SIGNATURE_FIELDS}
        found: dict[str, str] = {}
        for part in self.parts:
            match = _PART_NAME.search(part.headers)
            name = match.group(1).decode("ascii", "replace") if match else ""
            if name in _SIGNATURE_FIELDS and name not in found:
                found[name] = part.data.decode("utf-8", "replace")
        return found

    def decoded(self) -> Form:
        """Every field as text and every file part as an ``Upload``, or ``BadRequest``."""
        if self.pairs is not None:
            return Form(self.pairs, [])
        fields: list[tuple[str, str]] = []
        uploads: list[Upload] = []
        parser = email.parser.BytesHeaderParser(policy=email.policy.HTTP)
        for raw in self.parts:
            try:
                # Headers only: the parser never looks into a part's content, so a part
                # claiming to be multipart or message/rfc822 is not parsed recursively.
                headers = parser.parsebytes(raw.headers)
                name = headers.get_param("name", header="content-disposition")
                if not isinstance(name, str):
                    continue
                data = _transfer_decoded(raw.data, headers.get("content-transfer-encoding"))
                filename = headers.get_filename()
                if filename is not None:
                    uploads.append(Upload(name, filename, headers.get_content_type(), len(data)))
                else:
                    fields.append((name, data.decode(headers.get_content_charset() or "utf-8")))
            except PART_HEADER_ERRORS as exc:
                raise BadRequest(f"malformed multipart body: {type(exc).__name__}") from None
        return Form(fields, uploads)


def _transfer_decoded(data: bytes, encoding: str | None) -> bytes:
    name = (encoding or "").strip().lower()
    if name == "base64":
        return base64.b64decode(data)
    if name == "quoted-printable":
        return quopri.decodestring(data)
    return data


def split_form(body: bytes, content_type: str | None) -> SplitForm:
    """Cut a url-encoded or multipart/form-data body into fields, or raise ``BadRequest``.

    Linear in the body and bounded: at most ``MAX_PARTS`` parts, each with a header block
    of at most ``MAX_PART_HEADER_BYTES``; nested multipart content stays opaque bytes.
    """
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        return SplitForm(parse_form(body), [])
    if ctype != "multipart/form-data":
        raise BadRequest("expected a url-encoded or multipart/form-data body", status=415)
    boundary = _boundary(content_type or "")
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    if start < 0:
        raise BadRequest("multipart body without parts (boundary?)")
    if body.count(b"\r\n" + delimiter, start) > MAX_PARTS:
        raise BadRequest(f"multipart body of more than {MAX_PARTS} parts")
    parts: list[_RawPart] = []
    for chunk in body[start + len(delimiter) :].split(b"\r\n" + delimiter):
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        _, newline, rest = chunk.partition(b"\r\n")
        if not newline:
            raise BadRequest("malformed multipart body: a delimiter line does not end")
        if rest.startswith(b"\r\n"):
            headers, data = b"", rest[2:]
        else:
            headers, separator, data = rest.partition(b"\r\n\r\n")
            if not separator:
                raise BadRequest("malformed multipart body: a part's headers do not end")
        if len(headers) > MAX_PART_HEADER_BYTES:
            raise BadRequest(f"multipart part headers longer than {MAX_PART_HEADER_BYTES} bytes")
        parts.append(_RawPart(headers, data))
    if not parts:
        raise BadRequest("multipart body without parts (boundary?)")
    return SplitForm(None, parts)


def _boundary(content_type: str) -> bytes:
    try:
        header = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(
            f"Content-Type: {content_type}\r\n\r\n", headersonly=True
        )
        boundary = header.get_boundary()
    except RecursionError:  # comments nested past the parser's stack (PART_HEADER_ERRORS)
        raise BadRequest("multipart body without a usable boundary") from None
    # RFC 2046: 1 to 70 characters.
    if not boundary or len(boundary) > 70 or not boundary.isascii():
        raise BadRequest("multipart body without a usable boundary")
    return boundary.encode("ascii")


def verify_mailgun(
    signing_key: str,
    fields: dict[str, str],
    now: float,
    max_age_seconds: int = MAILGUN_MAX_AGE_SECONDS,
) -> Nonce:
    """The request's ``token`` to claim, once Mailgun is known to have signed ``timestamp``
    + ``token`` no longer than ``max_age_seconds`` ago and not more than
    ``PLAUSIBLE_FUTURE_SECONDS`` ahead of ``now``; else ``SignatureRejected`` (401
    missing, 403 wrong or stale) or ``BadRequest`` (a token the cache cannot hold).

    The signature covers neither the body nor the Message-Id: only the token, claimed once
    by the caller, keeps a captured triple from carrying another body.
    """
    timestamp, token, signature = (
        fields.get("timestamp"),
        fields.get("token"),
        fields.get("signature"),
    )
    if not (timestamp and token and signature):
        raise SignatureRejected("missing timestamp, token or signature", status=401)
    if not is_identifier(token, NONCE_MAX):
        # Before the signature: cheap, and no such token may reach the token cache.
        raise BadRequest(f"token longer than {NONCE_MAX} characters or not printable")
    expected = hmac_hex(signing_key, (timestamp + token).encode(), "sha256")
    if not constant_time_equal(expected, signature.lower()):
        raise SignatureRejected()
    # Seconds in ASCII digits, as Mailgun writes them: ``float`` would also take other
    # scripts' digits, underscores and exponents.
    if not _SECONDS.fullmatch(timestamp):
        raise SignatureRejected("timestamp is not a number")
    signed_at = float(timestamp)
    if now - signed_at > max_age_seconds:
        raise SignatureRejected("signature expired")
    if signed_at - now > PLAUSIBLE_FUTURE_SECONDS:
        raise SignatureRejected("timestamp in the future")
    return Nonce(provider="mailgun", value=token, expires_at=signed_at + max_age_seconds)


def message_ids(value: str | None) -> list[str]:
    """The Message-IDs in a header value, without angle brackets."""
    if not value:
        return []
    found = _MSG_ID.findall(value)
    return found if found else value.split()


def usable_message_id(value: str) -> bool:
    return is_identifier(value, PROVIDER_MESSAGE_ID_MAX)


def thread_root(message_id: str, in_reply_to: str | None, references: str | None) -> str:
    """The first usable Message-ID of References, else of In-Reply-To, else the message's
    own id."""
    for ids in (message_ids(references), message_ids(in_reply_to)):
        usable = [i for i in ids if usable_message_id(i)]
        if usable:
            return usable[0]
    return message_id


def threading_headers(reply: ReplyRequested | NotificationRequested) -> dict[str, str]:
    """``In-Reply-To`` and ``References`` of a reply we send: ``References`` names the
    thread's root, then the message answered (RFC 5322 3.6.4, the ids between them left
    out), so the customer's answer keeps the root first and stays in the conversation
    (``thread_root``); a reply with neither has none."""
    if not isinstance(reply, ReplyRequested):
        return {}
    answered, root = reply.in_reply_to, reply.thread_root
    chain = [i for i in dict.fromkeys((root, answered)) if i]
    if not chain:
        return {}
    return {
        "In-Reply-To": _angle(answered or chain[-1]),
        "References": " ".join(_angle(i) for i in chain),
    }


def _angle(message_id: str) -> str:
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def _headers(fields: dict[str, str]) -> dict[str, str]:
    """MIME headers by lower-case name: ``message-headers`` JSON, then top-level fields."""
    out: dict[str, str] = {}
    raw = fields.get("message-headers")
    if raw:
        pairs = decode_json(
            raw.encode("utf-8", "surrogatepass"),
            list[tuple[str, str]],
            "message-headers (a JSON list of [name, value])",
        )
        for name, value in pairs:
            out.setdefault(name.lower(), value)
    for name in ("Message-Id", "In-Reply-To", "References", "Date"):
        for key in (name, name.lower()):
            if fields.get(key):
                out[name.lower()] = fields[key]
    return out


def _content_ids(raw: str | None) -> dict[str, str]:
    """``content-id-map`` turned around: each attachment (its ``attachment-x`` field, or
    its stored URL) → its Content-ID without angle brackets. Descriptive only: a map that
    cannot be read is left out rather than losing the mail."""
    if not raw:
        return {}
    try:
        mapping = decode_json(raw.encode("utf-8", "surrogatepass"), dict[str, str], "map")
    except BadRequest:
        return {}
    return {target: cid.strip().strip("<>") for cid, target in mapping.items()}


class StoredAttachment(msgspec.Struct, frozen=True):
    url: str
    content_type: str | None = msgspec.field(default=None, name="content-type")
    name: str | None = None
    size: int | None = None


def _parsed(parse: Callable[[str], T], value: str) -> T:
    """``parse(value)`` (an address or address list parser of ``email.utils``), within
    ``MAX_ADDRESS_LIST_CHARS``: those parsers recurse once per nested comment."""
    if len(value) > MAX_ADDRESS_LIST_CHARS:
        raise UnusableValue(f"longer than {MAX_ADDRESS_LIST_CHARS} characters")
    try:
        return parse(value)
    except RecursionError:
        raise UnusableValue("nested too deeply") from None


def _find_address(config: ChannelsConfig, recipients: str) -> tuple[EmailAddress, str]:
    try:
        found = _parsed(lambda value: email.utils.getaddresses([value]), recipients)
    except UnusableValue as exc:
        raise BadRequest(f"recipient is not an address list: {exc}") from None
    wanted = {addr.lower() for _, addr in found if addr}
    for configured in config.email.addresses:
        key = configured.address.lower()
        if key in wanted:
            return configured, key
    raise unknown_endpoint("this recipient address")


def event_customer(value: str | None, domain: str, what: str) -> str:
    """The customer address a provider's event names, spelled as a customer message's
    sender is (``parse_mailgun``: the address alone, in lower case), so that consent and
    conversations name one address; ``Unusable`` when it names none."""
    try:
        _, address = _parsed(email.utils.parseaddr, value or "")
    except UnusableValue as exc:
        raise Unusable(f"{what}: {exc}", domain=domain) from None
    address = address.strip().lower()
    if "@" not in address:
        raise Unusable(f"{what} is not an email address", domain=domain)
    return address


def mail_id(
    message_id_header: str | None,
    customer: str,
    our_address: str,
    subject: str | None,
    date: str | None,
    body: str,
) -> str:
    """A mail's id, whichever provider posted it: its ``Message-Id``, else (rare, broken
    mailers) a digest of what a retry repeats exactly, so a redelivery is the same message."""
    own_ids = message_ids(message_id_header)
    if own_ids and usable_message_id(own_ids[0]):
        return own_ids[0]
    basis = "\n".join([customer, our_address, subject or "", date or "", body])
    return "sha256:" + hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()


def inline_attachment(
    message_id: str,
    field: str,
    *,
    content_type: str | None,
    filename: str | None,
    size: int | None,
    content_id: str | None,
) -> Attachment:
    """A file that arrived inline in a posted mail (forwarded by Mailgun, every file through
    SendGrid's Inbound Parse), by its form field: without a blob store, what it was, under
    our reference."""
    return Attachment(
        url=f"urn:switchboard:email:{message_id}:{field}",
        content_type=content_type,
        filename=filename,
        size_bytes=size,
        media_id=content_id,
    )


def parse_mailgun(form: Form, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    """Normalize a verified Mailgun route POST into one ``MessageReceived``; ``now`` is
    the time we received it."""
    fields = first_values(form.fields)
    recipient = fields.get("recipient") or fields.get("To") or ""
    if not recipient:
        raise BadRequest("recipient missing")
    endpoint, our_address = _find_address(config, recipient)
    try:
        _, customer = _parsed(
            email.utils.parseaddr, fields.get("from") or fields.get("sender") or ""
        )
    except UnusableValue as exc:
        raise Unusable(f"from: {exc}", domain=endpoint.domain) from None
    customer = customer.strip().lower()
    if "@" not in customer:
        raise BadRequest("sender address missing")
    headers = _headers(fields)
    subject = fields.get("subject") or fields.get("Subject")
    body = fields.get("stripped-text") or fields.get("body-plain") or ""
    message_id = mail_id(
        headers.get("message-id"), customer, our_address, subject, headers.get("date"), body
    )
    root = thread_root(message_id, headers.get("in-reply-to"), headers.get("references"))
    answered = [i for i in message_ids(headers.get("in-reply-to")) if usable_message_id(i)]
    content_ids = _content_ids(fields.get("content-id-map"))

    attachments: list[Attachment] = []
    if fields.get("attachments"):
        stored = decode_json(
            fields["attachments"].encode("utf-8", "surrogatepass"),
            list[StoredAttachment],
            "attachments (Mailgun's JSON list)",
        )
        attachments += [
            Attachment(
                url=a.url,
                content_type=a.content_type,
                filename=a.name,
                size_bytes=a.size,
                media_id=content_ids.get(a.url),
            )
            for a in stored
        ]
    attachments += [
        inline_attachment(
            message_id,
            u.field,
            content_type=u.content_type,
            filename=u.filename,
            size=u.size,
            content_id=content_ids.get(u.field),
        )
        for u in form.uploads
    ]
    try:
        # Mailgun signs the time it posted: the closest it gives to when the mail came.
        posted_at: float | None = float(fields.get("timestamp") or "")
    except ValueError:
        posted_at = None
    return [
        message_received(
            config,
            endpoint,
            channel=Channel.EMAIL,
            endpoint_key=our_address,
            customer_address=customer,
            provider_message_id=message_id,
            received_at=now,
            sent_at=posted_at,
            text=body,
            attachments=tuple(attachments),
            subject=subject,
            conversation_key=email_conversation_key(our_address, root),
            in_reply_to=answered[0] if answered else None,
        )
    ]


class _Signature(msgspec.Struct, frozen=True):
    timestamp: str | int
    token: str
    signature: str


class _Signed(msgspec.Struct, frozen=True):
    """A webhook body as far as its signature: the rest is skipped, not decoded."""

    signature: _Signature | None = None


def event_signature(body: bytes) -> dict[str, str]:
    """The ``timestamp``, ``token`` and ``signature`` of an event webhook's body (empty
    when it has none), for ``verify_mailgun``; ``BadRequest`` when it is not JSON."""
    signed = decode_json(body, _Signed, "Mailgun event webhook")
    if signed.signature is None:
        return {}
    sig = signed.signature
    return {"timestamp": str(sig.timestamp), "token": sig.token, "signature": sig.signature}


class _Headers(msgspec.Struct, frozen=True):
    message_id: str | None = msgspec.field(default=None, name="message-id")
    from_: str | None = msgspec.field(default=None, name="from")


class _Message(msgspec.Struct, frozen=True):
    headers: _Headers = _Headers()


class _Envelope(msgspec.Struct, frozen=True):
    sender: str | None = None


class _DeliveryStatus(msgspec.Struct, frozen=True):
    code: int | str | None = None


class EventData(msgspec.Struct, frozen=True):
    """What an event says about a message: the fields read (the rest is skipped)."""

    event: str
    id: str | None = None
    """Mailgun's id of the event (the same on every delivery of it)."""
    timestamp: float | None = None
    recipient: str | None = None
    severity: str | None = None
    message: _Message | None = None
    envelope: _Envelope | None = None
    delivery_status: _DeliveryStatus | None = msgspec.field(default=None, name="delivery-status")
    user_variables: dict[str, Any] = msgspec.field(default_factory=dict, name="user-variables")


class _Event(msgspec.Struct, frozen=True):
    event_data: EventData = msgspec.field(name="event-data")


def provider_status(event: str, severity: str | None) -> str:
    """The event's name as ``provider_status`` and ``STATUS_MAP`` know it."""
    return f"{event}:{severity or 'unknown'}" if event == "failed" else event


def _variable(data: EventData, name: str) -> str | None:
    value = data.user_variables.get(name)
    return value if isinstance(value, str) and value else None


def _sender(config: ChannelsConfig, data: EventData) -> EmailAddress | None:
    """Our address that sent the message: the ``From`` header's or the envelope's, else
    the first address of the routing domain our variables name; None: not ours."""
    headers = data.message.headers if data.message is not None else _Headers()
    envelope = data.envelope.sender if data.envelope is not None else None
    for value in (headers.from_, envelope):
        if not value:
            continue
        try:
            _, address = _parsed(email.utils.parseaddr, value)
        except UnusableValue:
            continue
        for configured in config.email.addresses:
            if configured.address.lower() == address.strip().lower():
                return configured
    domain = _variable(data, DOMAIN_VARIABLE)
    if domain is not None and _variable(data, OUTBOUND_ID_VARIABLE) is not None:
        return next((a for a in config.email.addresses if a.domain == domain), None)
    return None


def parse_mailgun_event(body: bytes, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    """Normalize a verified event webhook into at most one ``DeliveryStatusChanged`` and,
    for an unsubscribe or a complaint, one ``ConsentReported``; ``now`` is the time we
    received it."""
    data = decode_json(body, _Event, "Mailgun event webhook").event_data
    status_name = provider_status(data.event, data.severity)
    status = STATUS_MAP.get(status_name, FAILED_OTHERWISE if data.event == "failed" else None)
    if status is None:
        return []  # not about delivering a message, or an event Mailgun does not document
    endpoint = _sender(config, data)
    if endpoint is None:
        return []  # mail another application sent through the same Mailgun domain
    consent = CONSENT_MAP.get(data.event)
    reports: list[InboundEvent] = (
        [] if consent is None else [_consent_report(config, endpoint, data, consent, now)]
    )
    ids = message_ids(data.message.headers.message_id if data.message is not None else None)
    if not ids:
        if reports:
            # The opt-out stands without the mail it came from: only the status, which
            # would name no message, is left out.
            return reports
        raise Unusable("event without message.headers.message-id", domain=endpoint.domain)
    # The SMTP (or Mailgun's 6xx) code of a failure; a success's 250 says nothing more.
    code = data.delivery_status.code if data.delivery_status and data.event == "failed" else None
    return [
        delivery_status_changed(
            endpoint,
            channel=Channel.EMAIL,
            provider_message_id=ids[0],
            provider_status=status_name,
            status=status,
            received_at=now,
            sent_at=data.timestamp,
            error_code=None if code is None else str(code),
            outbound_id=_variable(data, OUTBOUND_ID_VARIABLE),
        ),
        *reports,
    ]


def _consent_report(
    config: ChannelsConfig, endpoint: EmailAddress, data: EventData, consent: Consent, now: float
) -> ConsentReported:
    """The customer's consent an event of mail of ours reports: for its ``recipient``, on
    the address that sent it, one per event ``id``."""
    if not data.id:
        raise Unusable(f"{data.event} event without an id", domain=endpoint.domain)
    return consent_reported(
        config,
        endpoint,
        channel=Channel.EMAIL,
        endpoint_key=endpoint.address.lower(),
        customer_address=event_customer(data.recipient, endpoint.domain, "recipient"),
        consent=consent,
        provider_status=data.event,
        report_id=data.id,
        received_at=now,
        sent_at=data.timestamp,
    )
