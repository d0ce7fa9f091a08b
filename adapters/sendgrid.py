"""SendGrid email: Inbound Parse in, Event Webhook statuses, Mail Send out.

Routes (``routes(ctx)``, registered before the generic ``/webhooks/email/{provider}``):
- ``POST /webhooks/email/sendgrid``: Inbound Parse, a ``multipart/form-data`` POST per
  mail. Parsed mode (the default) sends ``from``, ``to``, ``cc``, ``subject``, ``text``,
  ``html``, the raw ``headers`` block, ``envelope`` (JSON: ``to``, ``from``),
  ``charsets`` (JSON: each field's character set), ``attachments`` (a count),
  ``attachment-info`` (JSON) with the files as ``attachment1`` … parts, and SpamAssassin's
  ``spam_score`` / ``spam_report`` when spam checking is on (accepted, not carried: no
  event has a place for them). Raw mode ("POST the raw,
  full MIME message") sends the whole message in ``email`` with ``to``, ``from``,
  ``envelope`` and ``charsets``; it is parsed with the standard ``email`` package,
  bounded (``sendgrid_inbound.MAX_MIME_PARTS`` content types at most, no recursion).
- ``POST /webhooks/email/sendgrid/events``: the Event Webhook, a JSON array of events.

Signatures. SendGrid signs with ECDSA on P-256 over SHA-256 of the value of
``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the raw body; the signature, in
``X-Twilio-Email-Event-Webhook-Signature``, is base64 of its DER encoding; the verification
key is base64 of a DER SubjectPublicKeyInfo. The Event Webhook is signed once "Signed Event
Webhook Requests" is on (``event_public_key``, required here); Inbound Parse, with the same
headers and scheme and a key of its own, once a security policy with ``signature`` enabled
is attached to the Parse setting (``parse_public_key``). The signature is checked before
anything reads the body. The timestamp must be no older than the configured max age and no
more than ``PLAUSIBLE_FUTURE_SECONDS`` ahead; the signature is then a one-time token,
claimed in the shared token cache (``adapters.webhook_serving`` step 4) until that max age
passes. ECDSA signatures are malleable (``(r, s)`` and ``(r, n - s)`` both verify), so the
token is the digest of the timestamp, ``r`` and the low form of ``s``: a re-encoded
signature is the same token.

Inbound Parse authentication, as configured (``SendGridConfig``): the signature; HTTP
basic authentication, the credentials written into the Parse URL
(``https://user:password@host/…``, sent as ``Authorization: Basic``; no timestamp, so no
replay guard beyond the Message-Id's stable event id); both; or, only when
``parse_unauthenticated`` says so, none. With none of them configured the route answers
503 (the deployment is incomplete; SendGrid retries for 3 days).

Threading is ``adapters.email``'s: the thread root is the first usable Message-ID of
``References``, else ``In-Reply-To``, else the mail's own Message-Id, and the conversation
key ``email:{our address}:{root}``, whichever provider carried the mail. Each file is kept
as ``adapters.email`` keeps forwarded ones: our reference
(``urn:switchboard:email:{message id}:{attachmentN}``; its bytes are not stored), its file
name, media type, size and Content-ID (``media_id``).

Event Webhook: every message we send carries ``custom_args`` ``switchboard_outbound_id``
(our outbound id) and ``switchboard_endpoint`` (the address it was sent from), which
SendGrid puts on each of its events as top-level keys. An event without them was not sent
by Switchboard (another application on the account) and is ignored. ``STATUS_MAP`` maps
every documented event; ``provider_message_id`` is the ``X-Message-Id`` SendGrid answered
the send with (``sg_message_id`` is it followed by ``.`` and SendGrid's filter id, the
part before ``@`` of ``smtp-id``), so the status names the message egress recorded.

Consent: a spam report puts the address on SendGrid's spam report list and a global
unsubscribe on its global unsubscribe list, and SendGrid drops every later mail to it
(``dropped``). Besides their status, ``spamreport`` and ``unsubscribe`` of mail of ours
opt the customer out (``CONSENT_MAP``), as Mailgun's ``complained`` and ``unsubscribed``
do: a ``ConsentReported`` for the event's ``email`` spelled as a customer message's
sender is (the address alone, in lower case) on our sending address, one per
``sg_event_id``, so a redelivery is the same report. Group (un)subscribes concern one
unsubscribe group, which our mail never names: they stay statuses.

Mail Send: ``POST {api_base_url}/v3/mail/send`` (bearer API key), JSON; SendGrid answers
202 without a body, the message id in ``X-Message-Id``. Replies carry ``Message-ID``
(``<{outbound id}@{domain}>``), ``In-Reply-To`` and ``References`` as Mailgun's do.
Attachments go inline as base64, fetched before the first attempt (``prepare``), bounded by
``MEDIA_LIMITS``. SendGrid has no idempotency key: a retry after a lost 202 can send twice.
"""

from __future__ import annotations

import base64
import dataclasses
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import functools
import hashlib
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import msgspec
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from adapters import email as email_adapter
from adapters.base import (
    AdapterError,
    BadRequest,
    ChannelDeclaration,
    Nonce,
    Normalized,
    SignatureRejected,
    Unusable,
    constant_time_equal,
)
from adapters.config import (
    ChannelsConfig,
    EmailAddress,
    SecretMissing,
    SendGridConfig,
    resolve_secret,
)
from adapters.media import EVERY_MEDIA_TYPE, MediaLimits, MediaRule, check_attachments, media_type
from adapters.normalize import (
    consent_reported,
    decode_item,
    decode_json,
    delivery_status_changed,
    message_received,
)
from adapters.provider_api import (
    EgressUnroutable,
    Outbound,
    PrepareFailed,
    ProviderRequest,
    email_text,
    fetch_attachment,
    upload_name,
)
from adapters.sendgrid_inbound import (
    AttachmentInfo,
    MailFile,
    attachment_info,
    content_id_of,
    customer_of,
    decode_form,
    decoded_header,
    html_text,
    mail_header,
    parse_mime,
    recipient_of,
)
from adapters.webhook_serving import Handler, WebhookContext, parse_signed, serve
from schemas import (
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    DeliveryStatus,
    InboundEvent,
    email_conversation_key,
)
from schemas.limits import (
    ATTACHMENTS_MAX,
    CODE_MAX,
    PLAUSIBLE_FUTURE_SECONDS,
    is_identifier,
)

PROVIDER = "sendgrid"
EVENTS_PROVIDER = "sendgrid_events"
"""The Event Webhook's name in metrics and dead letters (``webhook/sendgrid_events``)."""
PARSE_PATH = "/webhooks/email/sendgrid"
EVENTS_PATH = "/webhooks/email/sendgrid/events"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MESSAGE_ID_HEADER = "X-Message-Id"
OUTBOUND_ID_ARG = "switchboard_outbound_id"
"""The ``custom_args`` key of our outbound id (events carry it back)."""
ENDPOINT_ARG = "switchboard_endpoint"
"""The ``custom_args`` key of the address a message was sent from."""

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""The order n of P-256's base point: ``s`` and ``n - s`` sign alike."""
SIGNATURE_MAX_CHARS = 200
"""A P-256 ECDSA signature is at most 72 bytes of DER: 96 characters of base64."""
TIMESTAMP_MAX_CHARS = 20
MAX_EVENTS = 10_000
"""Events of one Event Webhook POST (SendGrid batches them; the body limit binds first)."""

# --- Signatures ---------------------------------------------------------------------------


class NotConfigured(SecretMissing):
    """No way to authenticate this webhook is configured: answered 503 (the deployment is
    incomplete, and SendGrid retries), never accepted unauthenticated."""

    def __init__(self, what: str) -> None:
        AdapterError.__init__(self, f"[channels.email.sendgrid] {what} is not set")
        self.env_name = what


@dataclass(frozen=True, slots=True)
class Verified:
    """A request SendGrid signed: its one-time token, and when it was signed."""

    nonce: Nonce
    signed_at: float


@functools.lru_cache(maxsize=8)
def public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key (base64 DER SubjectPublicKeyInfo, P-256), as the
    configuration validated it (``adapters.config.SendGridConfig``)."""
    key = load_der_public_key(base64.b64decode(value, validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError("not an elliptic curve key")  # the configuration refuses it first
    return key


def verify_signature(
    key: ec.EllipticCurvePublicKey,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now: float,
    max_age_seconds: float,
) -> Verified:
    """The request's one-time token, once ``signature`` is SendGrid's ECDSA signature of
    ``timestamp`` + ``body`` and ``timestamp`` is no older than ``max_age_seconds`` nor
    more than ``PLAUSIBLE_FUTURE_SECONDS`` ahead of ``now``; else ``SignatureRejected``
    (401 missing, 403 malformed, wrong or stale)."""
    if not signature or not timestamp:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}", status=401)
    if not (len(timestamp) <= TIMESTAMP_MAX_CHARS and timestamp.isascii() and timestamp.isdigit()):
        raise SignatureRejected("timestamp is not a number of seconds")
    if len(signature) > SIGNATURE_MAX_CHARS:
        raise SignatureRejected("signature longer than an ECDSA P-256 signature")
    try:
        der = base64.b64decode(signature, validate=True)
        r, s = decode_dss_signature(der)
    except ValueError:  # binascii.Error is one
        raise SignatureRejected("signature is not base64 of a DER ECDSA signature") from None
    try:
        key.verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureRejected() from None
    signed_at = float(int(timestamp))
    if now - signed_at > max_age_seconds:
        raise SignatureRejected("signature expired")
    if signed_at - now > PLAUSIBLE_FUTURE_SECONDS:
        raise SignatureRejected("timestamp in the future")
    token = hashlib.sha256(f"{timestamp}:{r:x}:{min(s, P256_ORDER - s):x}".encode()).hexdigest()
    nonce = Nonce(provider=PROVIDER, value=token, expires_at=signed_at + max_age_seconds)
    return Verified(nonce, signed_at)


def verify_basic_auth(credentials: str, authorization: str | None) -> None:
    """Raise ``SignatureRejected`` (401 missing, 403 wrong) unless ``authorization`` is
    HTTP basic authentication with ``credentials`` (``user:password``)."""
    if not authorization:
        raise SignatureRejected("missing Authorization header (basic authentication)", status=401)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise SignatureRejected("expected basic authentication", status=401)
    expected = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    if not constant_time_equal(expected, token.strip()):
        raise SignatureRejected()


def _signature_of(
    key_b64: str, headers: Mapping[str, str], body: bytes, now: float, max_age: int
) -> Verified:
    return verify_signature(
        public_key(key_b64),
        body,
        headers.get(SIGNATURE_HEADER),
        headers.get(TIMESTAMP_HEADER),
        now,
        max_age,
    )


def authenticate_parse(
    cfg: SendGridConfig,
    environ: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
) -> Verified | None:
    """Check an Inbound Parse POST as configured: basic authentication, the signature,
    both, or (``parse_unauthenticated``) nothing. The signed request's token, or None."""
    if cfg.parse_unauthenticated:
        return None
    if not (cfg.parse_public_key or cfg.parse_basic_auth_env):
        raise NotConfigured("parse_public_key or parse_basic_auth_env")
    if cfg.parse_basic_auth_env:
        credentials = resolve_secret(cfg.parse_basic_auth_env, environ)
        verify_basic_auth(credentials, headers.get("Authorization"))
    if cfg.parse_public_key:
        return _signature_of(cfg.parse_public_key, headers, body, now, cfg.parse_max_age_seconds)
    return None


def parse_inbound(
    split: email_adapter.SplitForm,
    config: ChannelsConfig,
    now: float,
    signed_at: float | None = None,
) -> list[InboundEvent]:
    """Normalize an authenticated Inbound Parse POST (parsed or raw mode) into one
    ``MessageReceived``; ``now`` is the time we received it, ``signed_at`` when SendGrid
    signed it (None: not signed)."""
    form = decode_form(split)
    fields = form.fields
    endpoint, our_address = recipient_of(config, fields)
    if form.raw_email is not None:
        mime = parse_mime(form.raw_email, endpoint.domain)
        headers, body, files = mime.message, mime.text, mime.files
    else:
        headers = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(
            fields.get("headers", ""), headersonly=True
        )
        body = fields.get("text") or html_text(fields.get("html", ""))
        info = attachment_info(fields)
        files = []
        for upload in form.uploads:
            # ``attachment-info`` is SendGrid's word on each file's name, type, Content-ID.
            about = info.get(upload.field, AttachmentInfo())
            files.append(
                MailFile(
                    upload.field,
                    upload.filename or about.filename,
                    about.type or upload.content_type,
                    upload.size,
                    content_id_of(about.content_id),
                )
            )
    body = body.rstrip()
    subject = fields.get("subject") or decoded_header(mail_header(headers, "Subject"))
    customer = customer_of(fields, headers, endpoint.domain)
    in_reply_to, references = (
        mail_header(headers, "In-Reply-To"),
        mail_header(headers, "References"),
    )
    message_id = email_adapter.mail_id(
        mail_header(headers, "Message-Id"),
        customer,
        our_address,
        subject,
        mail_header(headers, "Date"),
        body,
    )
    root = email_adapter.thread_root(message_id, in_reply_to, references)
    answered = [
        i for i in email_adapter.message_ids(in_reply_to) if email_adapter.usable_message_id(i)
    ]
    attachments = tuple(
        email_adapter.inline_attachment(
            message_id,
            f.field,
            content_type=f.content_type,
            filename=f.filename,
            size=f.size,
            content_id=f.content_id,
        )
        for f in files
    )
    return [
        message_received(
            config,
            endpoint,
            channel=Channel.EMAIL,
            endpoint_key=our_address,
            customer_address=customer,
            provider_message_id=message_id,
            received_at=now,
            sent_at=signed_at,
            text=body,
            attachments=attachments,
            subject=subject,
            conversation_key=email_conversation_key(our_address, root),
            in_reply_to=answered[0] if answered else None,
        )
    ]


# --- Event Webhook ------------------------------------------------------------------------

#: Every event the Event Webhook documents (``bounce`` of ``type`` ``blocked`` under its
#: own name), mapped to our delivery status; None: no status of a message.
STATUS_MAP: dict[str, DeliveryStatus | None] = {
    # Accepted by SendGrid, ready to be delivered.
    "processed": DeliveryStatus.QUEUED,
    # The receiving server asked to try later; SendGrid retries for up to 72 hours.
    "deferred": DeliveryStatus.QUEUED,
    "delivered": DeliveryStatus.DELIVERED,
    # The receiving server refused the mail for good (``type`` ``bounce``) or for now
    # (``type`` ``blocked``); SendGrid retries neither.
    "bounce": DeliveryStatus.UNDELIVERED,
    "blocked": DeliveryStatus.UNDELIVERED,
    # SendGrid did not send it: a suppressed or invalid address, spam content.
    "dropped": DeliveryStatus.FAILED,
    # Opened (open tracking; Apple Mail Privacy Protection's machine opens, flagged
    # ``sg_machine_open``, are not reads and are ignored) or a link clicked.
    "open": DeliveryStatus.READ,
    "click": DeliveryStatus.READ,
    # Engagement after delivery: the mail reached the customer (the rank of ``delivered``
    # never moves a status back).
    "spamreport": DeliveryStatus.DELIVERED,
    "unsubscribe": DeliveryStatus.DELIVERED,
    # One unsubscribe group (ASM) left or joined again: the address still takes mail
    # outside that group, and our mail names no group, so no consent of ours changes.
    "group_unsubscribe": DeliveryStatus.DELIVERED,
    "group_resubscribe": DeliveryStatus.DELIVERED,
    # A compliance action on the SendGrid account: about no message.
    "account_status_change": None,
}

#: Events that also change the customer's consent (a ``ConsentReported``): global ones.
CONSENT_MAP: dict[str, Consent] = {
    "unsubscribe": Consent.OPT_OUT,  # the global unsubscribe link followed
    "spamreport": Consent.OPT_OUT,  # a mail of ours reported as spam: stop writing
}

_Scalar = str | int | float | bool | None


class _Event(msgspec.Struct, frozen=True, kw_only=True):
    event: str
    timestamp: float | str | None = None
    email: str | None = None
    sg_event_id: str | None = None
    sg_message_id: str | None = None
    smtp_id: str | None = msgspec.field(default=None, name="smtp-id")
    type: _Scalar = None
    status: _Scalar = None
    reason: _Scalar = None
    sg_machine_open: _Scalar = None
    outbound_id: str | None = msgspec.field(default=None, name=OUTBOUND_ID_ARG)
    endpoint: str | None = msgspec.field(default=None, name=ENDPOINT_ARG)


def provider_status(name: str, bounce_type: _Scalar) -> str:
    """The event's status name: ``blocked`` for a bounce of type ``blocked`` (SendGrid's
    "Blocked" event), else the event's own name."""
    return "blocked" if name == "bounce" and bounce_type == "blocked" else name


def message_id_of(sg_message_id: str | None, smtp_id: str | None) -> str | None:
    """The ``X-Message-Id`` a send was answered with: the part of ``sg_message_id``
    before SendGrid's filter suffix, which is the local part of ``smtp-id``; the whole
    ``sg_message_id`` when that cannot be told."""
    local = None
    if smtp_id:
        local = smtp_id.strip().strip("<>").rpartition("@")[0] or None
    if sg_message_id:
        if local and sg_message_id.startswith(local + "."):
            return local
        return sg_message_id
    return local


def _address(channels: ChannelsConfig, address: str) -> EmailAddress | None:
    wanted = address.strip().lower()
    for configured in channels.email.addresses:
        if configured.address.lower() == wanted:
            return configured
    return None


def _error_code(event: _Event, status: str) -> str | None:
    """The SMTP status of a bounce or block, the reason of a drop (SendGrid's short list:
    "Bounced Address", "Unsubscribed Address", …) when an event may carry it."""
    value = event.status if status in ("bounce", "blocked") else None
    if status == "dropped":
        value = event.reason
    if isinstance(value, str) and value and is_identifier(value, CODE_MAX):
        return value
    return None


def _seconds(value: float | str | None) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return value if value is None or math.isfinite(value) else None


def _event(raw: msgspec.Raw, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    event = decode_item(bytes(raw), _Event, "event")
    if not event.endpoint:
        return []  # not sent by Switchboard
    endpoint = _address(config, event.endpoint)
    if endpoint is None:
        return []  # sent from an address no longer configured
    status = provider_status(event.event, event.type)
    mapped = STATUS_MAP.get(status)
    if mapped is None or (status == "open" and event.sg_machine_open is True):
        return []  # about no message, an event SendGrid does not document, a machine open
    consent = CONSENT_MAP.get(status)
    reports: list[InboundEvent] = (
        [] if consent is None else [_consent_report(config, endpoint, event, consent, now)]
    )
    message_id = message_id_of(event.sg_message_id, event.smtp_id)
    if not message_id:
        if reports:
            # The opt-out stands without the mail it came from: only the status, which
            # would name no message, is left out.
            return reports
        raise Unusable("event without sg_message_id or smtp-id", domain=endpoint.domain)
    return [
        delivery_status_changed(
            endpoint,
            channel=Channel.EMAIL,
            provider_message_id=message_id,
            provider_status=status,
            status=mapped,
            received_at=now,
            sent_at=_seconds(event.timestamp),
            error_code=_error_code(event, status),
            outbound_id=event.outbound_id,
        ),
        *reports,
    ]


def _consent_report(
    config: ChannelsConfig, endpoint: EmailAddress, event: _Event, consent: Consent, now: float
) -> ConsentReported:
    """The customer's consent an event of mail of ours reports: for its ``email``, on the
    address that sent it, one per ``sg_event_id``."""
    if not event.sg_event_id:
        raise Unusable(f"{event.event} event without sg_event_id", domain=endpoint.domain)
    return consent_reported(
        config,
        endpoint,
        channel=Channel.EMAIL,
        endpoint_key=endpoint.address.lower(),
        customer_address=email_adapter.event_customer(event.email, endpoint.domain, "email"),
        consent=consent,
        provider_status=event.event,
        report_id=event.sg_event_id,
        received_at=now,
        sent_at=_seconds(event.timestamp),
    )


def parse_events(body: bytes, config: ChannelsConfig, now: float) -> Normalized:
    """Normalize a verified Event Webhook POST; an event that cannot be read, or holds a
    value no event may carry, is set aside and the others go on."""
    raws = decode_json(body, list[msgspec.Raw], "Event Webhook body (a JSON array of events)")
    if len(raws) > MAX_EVENTS:
        raise BadRequest(f"more than {MAX_EVENTS} events")
    normalized = Normalized(events=[])
    for number, raw in enumerate(raws):
        with normalized.setting_aside(f"event {number}"):
            normalized.events.extend(_event(raw, config, now))
    return normalized


# --- Routes -------------------------------------------------------------------------------


def _ok() -> web.Response:
    return web.Response(text="ok")


def _parse(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            cfg = ctx.channels.email.sendgrid
            now = ctx.clock()
            verified = authenticate_parse(cfg, ctx.environ, request.headers, body, now)
            content_type = request.headers.get("Content-Type")

            def parse() -> Normalized:
                split = email_adapter.split_form(body, content_type)
                signed_at = None if verified is None else verified.signed_at
                return Normalized(parse_inbound(split, ctx.channels, now, signed_at))

            return parse_signed(parse, nonce=None if verified is None else verified.nonce)

        return await serve(ctx, PROVIDER, request, work, _ok, body_limit=ctx.max_email_body_bytes)

    return handle


def _events(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            cfg = ctx.channels.email.sendgrid
            if not cfg.event_public_key:
                raise NotConfigured("event_public_key")
            now = ctx.clock()
            verified = _signature_of(
                cfg.event_public_key, request.headers, body, now, cfg.event_max_age_seconds
            )
            return parse_signed(lambda: parse_events(body, ctx.channels, now), nonce=verified.nonce)

        return await serve(ctx, EVENTS_PROVIDER, request, work, _ok)

    return handle


def routes(ctx: WebhookContext) -> list[web.RouteDef]:
    """Inbound Parse and the Event Webhook, bound to ``ctx``."""
    return [web.post(PARSE_PATH, _parse(ctx)), web.post(EVENTS_PATH, _events(ctx))]


# --- Mail Send ----------------------------------------------------------------------------

REQUEST_MAX_BYTES = 30_000_000
"""Mail Send: "the total size of your email, including attachments, must be less than
30MB", counted on the JSON request."""
ATTACHMENTS_MAX_BYTES = 20 * 1024 * 1024
"""Files of one reply together, before base64 (which adds a third): 26.7 MB of the 30 MB,
the rest for the text and headers."""
NO_SUBJECT = "(no subject)"
"""Mail Send refuses an empty subject: what a message without one is sent with."""
REPLY_SUBJECT = "Re:"
"""The subject of an answer sent without one."""

MEDIA_LIMITS = MediaLimits(
    provider="SendGrid",
    # Mail Send takes any type of file (``attachments[].type``): the size is the rule.
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
"""What a reply may attach: fetched from their URLs, sent base64 in the request."""


def sending_address(reply: Outbound, channels: ChannelsConfig) -> EmailAddress | None:
    """The configured address ``reply`` is sent from, when SendGrid sends its mail."""
    if reply.channel is not Channel.EMAIL:
        return None
    found = _address(channels, reply.endpoint)
    return found if found is not None and found.provider == PROVIDER else None


def owns(reply: Outbound, channels: ChannelsConfig) -> bool:
    """Email replies from an address configured with ``provider = "sendgrid"``."""
    return sending_address(reply, channels) is not None


def _with_attachments(
    request: ProviderRequest,
    checked: Sequence[tuple[Attachment, MediaRule]],
    allow_private: bool,
) -> Callable[[aiohttp.ClientSession], Awaitable[ProviderRequest]]:
    async def prepare(session: aiohttp.ClientSession) -> ProviderRequest:
        """The files fetched and put in the request, within SendGrid's limits."""
        files: list[dict[str, str]] = []
        room = ATTACHMENTS_MAX_BYTES
        for number, (attachment, rule) in enumerate(checked, 1):
            data = await fetch_attachment(
                attachment, min(rule.max_bytes, room), number, allow_private=allow_private
            )
            room -= len(data)
            files.append(
                {
                    "content": base64.b64encode(data).decode("ascii"),
                    "type": media_type(attachment) or "application/octet-stream",
                    "filename": upload_name(attachment, number),
                    "disposition": "attachment",
                }
            )
        body = {**(request.json or {}), "attachments": files}
        if len(msgspec.json.encode(body)) >= REQUEST_MAX_BYTES:
            raise PrepareFailed(f"SendGrid takes a mail of less than {REQUEST_MAX_BYTES} bytes")
        return dataclasses.replace(request, json=body, prepare=None)

    return prepare


def sendgrid_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The Mail Send call for ``reply`` (``EgressUnroutable``, ``SecretMissing``,
    ``MediaRefused``); its ``prepare`` fetches the attachments. The text is
    ``adapters.egress``'s for email (a place, suggested answers numbered)."""
    cfg = channels.email.sendgrid
    address = sending_address(reply, channels)
    if address is None:
        raise EgressUnroutable(reply.endpoint)
    checked = check_attachments(reply.attachments, MEDIA_LIMITS)
    key = resolve_secret(cfg.api_key_env, environ)
    sending_domain = address.sending_domain or address.address.rpartition("@")[2]
    threading = email_adapter.threading_headers(reply)
    headers = {"Message-ID": f"<{reply.id}@{sending_domain}>"} | threading
    request = ProviderRequest(
        provider=PROVIDER,
        url=f"{cfg.api_base_url.rstrip('/')}/v3/mail/send",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "personalizations": [{"to": [{"email": reply.customer_address}]}],
            "from": {"email": address.address},
            "subject": reply.subject or (REPLY_SUBJECT if threading else NO_SUBJECT),
            "content": [{"type": "text/plain", "value": email_text(reply)}],
            "headers": headers,
            "custom_args": {OUTBOUND_ID_ARG: reply.id, ENDPOINT_ARG: address.address},
        },
        message_id_header=MESSAGE_ID_HEADER,
    )
    if not checked:
        return request
    allow_private = channels.media_fetch_allow_private
    return dataclasses.replace(request, prepare=_with_attachments(request, checked, allow_private))


DECLARATION = ChannelDeclaration(
    provider="SendGrid",
    channels=(Channel.EMAIL.value,),
    inbound=f"POST {PARSE_PATH} (Inbound Parse, parsed or raw); POST {EVENTS_PATH} (Event"
    " Webhook; unsubscribe and spamreport also opt the customer out)",
    outbound="Mail Send v3 (POST /v3/mail/send), from addresses with provider = sendgrid",
    media_in="any file: our reference, file name, media type, size, Content-ID (the bytes"
    " are not stored)",
    media_out="any file type, fetched from its URL and sent base64 inline, 20 MiB together"
    " (a request under 30 MB); a location as text",
    statuses=", ".join(s for s, mapped in STATUS_MAP.items() if mapped is not None),
    read_receipts="open (open tracking; Apple MPP machine opens ignored), click",
    quick_replies="numbered list in the text",
    signature=(
        "ECDSA P-256 / SHA-256 of timestamp + body (Event Webhook; Inbound Parse with a"
        " signing security policy), or basic auth in the Inbound Parse URL"
    ),
    replay_protection=(
        "signed timestamp within a max age, signature claimed once (token cache);"
        " basic auth: none (the Message-Id dedupes)"
    ),
)
