"""Vonage: the Messages API (SMS, MMS, WhatsApp, Messenger, Viber) in and out, and the SMS
API's inbound messages and delivery receipts.

Messages API webhooks (developer.vonage.com/en/messages/concepts/signed-webhooks): JSON
``POST``s to the application's Inbound URL (``/webhooks/vonage/inbound``) and Status URL
(``/webhooks/vonage/status``), each with ``Authorization: Bearer <JWT>``: HS256, keyed with
the account's signature secret, with the claims ``iat``, ``jti``, ``iss`` (``Vonage``),
``payload_hash`` (the SHA-256 hex digest of the raw body), ``api_key`` and, when an
application sent, ``application_id``. The token and the body's hash are checked before the
body is read as JSON; then ``iat`` must be at most ``vonage.max_age_seconds`` old (and not
in the future) and the ``jti`` is claimed once in the token cache, as Mailgun's token is
(``adapters.webhook_serving`` step 4). Vonage sends an unsigned callback only "in the rare case of
an internal error" and retries a 5xx; we answer it 401, as any request without a token.

Either route reads either shape (``message_type``: a customer's message; ``status``: a
report on one we sent):
- channels ``sms``, ``mms`` → ``Channel.SMS``; ``whatsapp``; ``messenger``;
  ``viber_service`` → ``Channel.VIBER``. Another channel (``rcs``) is set aside;
- ``text``; ``image``, ``audio``, ``video``, ``file``, ``vcard``, ``sticker`` (an attachment
  whose ``url`` is Vonage's media URL, its id in ``media_id`` when the URL is
  ``…/v3/media/<id>``, caption and file name kept; the caption is also the text); MMS
  ``content`` (several attachments); ``location`` (``lat``, ``long``, ``name``,
  ``address``, ``url``); ``contact`` (WhatsApp contact cards, read as WhatsApp writes them:
  ``name.formatted_name``, ``phones[].phone``, ``emails[].email``, ``org.company``);
  ``reply`` (an interactive reply: its ``title`` is the text, so a tapped quick reply
  reaches a bot as the answer) and ``button`` (a template button: its ``text``, else its
  ``payload``); ``unsupported`` (the customer sent something Vonage cannot pass on: an
  empty message, so that a person can answer); ``reaction`` (WhatsApp: ``MessageChanged``
  ``reacted``/``unreacted`` of ``context.message_uuid``). ``order`` and unknown types are
  not routed. ``context.message_uuid`` (a quoted message) becomes ``in_reply_to``;
- a status → ``DeliveryStatusChanged`` per ``STATUS_MAP``, with ``client_ref`` (our
  outbound id, set when sending) as ``outbound_id`` and the error's ``title`` as its code.

SMS API webhooks (developer.vonage.com/en/getting-started/concepts/signing-messages), to
the account's SMS settings: inbound messages (``/webhooks/vonage/sms/inbound``) and
delivery receipts (``/webhooks/vonage/sms/dlr``), as ``GET`` query parameters, a ``POST``
form or ``POST`` JSON. Signed (Vonage support enables it per account) they carry ``sig``,
``timestamp`` and ``nonce``: ``sig`` is, over every other parameter sorted by name and
written ``&name=value`` (``&`` and ``=`` in values replaced by ``_``), either the MD5 of
that string followed by the secret (``md5hash``, the default) or its HMAC keyed with the
secret (``md5``, ``sha1``, ``sha256``, ``sha512``), hex, compared case-insensitively;
``vonage.sms_signature_method`` says which. Unsigned requests are refused (401). The
``timestamp`` must be at most ``vonage.sms_max_age_seconds`` old and the ``nonce`` (else the
``sig``) is claimed once.

Concatenated SMS (``concat``, ``concat-ref``, ``concat-part``, ``concat-total``): the SMS API
delivers each part as its own signed request and we publish each as its own message, in the
order they come (parts can arrive out of order), without reassembling them: an adapter
keeps no state between requests. The parts land in the same conversation, one message
each. The Messages API joins the parts before its webhook (``sms.num_messages``): route
inbound SMS to the Messages API (dashboard, API settings) to get whole messages. A
``binary`` SMS has no text for a person and is not routed.

Egress: ``POST {messages_api_base_url}/v1/messages``, ``Authorization: Bearer <JWT>``
(RS256, signed with the application's private key: ``application_id``, ``iat``, ``jti``,
``exp`` 15 minutes on; one new token per send, made in ``prepare`` just before the first
attempt: it is signed here, not fetched, so there is nothing to cache but the parsed key).
The body is per channel (``channel``, ``message_type``, ``from`` our number, ``to`` the
customer without ``+`` or the Messenger PSID, ``client_ref`` our outbound id, echoed in
every status); Vonage answers ``202 {"message_uuid": …}``, the provider message id. A reply
carries at most one attachment (``MEDIA_LIMITS``, per channel; an SMS reply with one goes
as MMS, which Vonage sends in the US and Canada only), with the text as its caption where
the kind has one; text beside a kind without a caption (WhatsApp audio, any Messenger
media, a Viber file) is sent as a text message with the attachment's link instead. Quick
replies: WhatsApp reply buttons (a ``custom`` ``interactive`` message) when they fit (at
most 3, titles of at most 20 characters, body of at most 1,024), otherwise numbered after
the text, as on SMS, Messenger and Viber, which have no buttons through Vonage. A location
alone on WhatsApp is a ``custom`` ``location`` message; elsewhere, or with text, a map link
after the text. A WhatsApp template is Vonage's ``template`` message (``deterministic``
policy, the template's locale); elsewhere a template's filled-in text is sent.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.base import (
    BadRequest,
    ChannelDeclaration,
    Normalized,
    Unusable,
)
from adapters.config import ChannelsConfig, VonageConfig, VonageNumber, resolve_secret
from adapters.media import MediaLimits, MediaRule, check_attachments
from adapters.meta import whatsapp_contact
from adapters.meta_payloads import WaContactCard
from adapters.normalize import (
    decode_json,
    delivery_status_changed,
    e164,
    find_endpoint,
    message_changed,
    message_received,
    unknown_endpoint,
)
from adapters.provider_api import (
    WHATSAPP_BUTTON_BODY_MAX,
    WHATSAPP_BUTTON_TITLE_MAX,
    WHATSAPP_BUTTONS_MAX,
    EgressUnroutable,
    Outbound,
    PrepareFailed,
    ProviderRequest,
    quick_replies,
    with_numbered_options,
)
from adapters.vonage_signatures import (
    PROVIDER,
    b64url,
    sms_params,
    verify_messages_signature,
    verify_sms_signature,
)
from adapters.webhook_serving import Handler, WebhookContext, parse_signed, serve
from schemas import (
    Attachment,
    Channel,
    Contact,
    DeliveryStatus,
    InboundEvent,
    Location,
    MessageChange,
    ReplyRequested,
)
from schemas.limits import CODE_MAX, is_identifier

INBOUND_PATH = "/webhooks/vonage/inbound"
STATUS_PATH = "/webhooks/vonage/status"
SMS_INBOUND_PATH = "/webhooks/vonage/sms/inbound"
SMS_DLR_PATH = "/webhooks/vonage/sms/dlr"
APPLICATION_JWT_TTL = 15 * 60
"""Seconds an application JWT of ours is valid (Vonage's SDKs use 15 minutes)."""
WHATSAPP_REPLY_WINDOW = 24 * 3600.0
"""WhatsApp and Messenger let a business answer freely for 24 h after the customer wrote."""
MAP_URL = "https://www.google.com/maps/search/?api=1&query={lat},{lon}"
"""Where a location goes as a link, on channels without a location message."""

#: Vonage's ``channel`` → ours. MMS is SMS's conversation.
CHANNELS: dict[str, Channel] = {
    "sms": Channel.SMS,
    "mms": Channel.SMS,
    "whatsapp": Channel.WHATSAPP,
    "messenger": Channel.MESSENGER,
    "viber_service": Channel.VIBER,
}

#: Messages API statuses (developer.vonage.com/en/messages/concepts/messages-status-callbacks)
#: → ours. A status callback exists only for a message Vonage accepted (202), so both of
#: its failures are ``undelivered``: ``rejected`` (refused by Vonage or the provider, or its
#: TTL ran out, with an ``error``) and ``undeliverable`` (Vonage could not reach the
#: provider). ``submitted``: passed on to the provider (the SMS network, WhatsApp …).
STATUS_MAP: dict[str, DeliveryStatus | None] = {
    "submitted": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "rejected": DeliveryStatus.UNDELIVERED,
    "undeliverable": DeliveryStatus.UNDELIVERED,
}

#: SMS API delivery receipt statuses (developer.vonage.com/en/messaging/sms/guides/
#: delivery-receipts) → ours. ``accepted`` and ``buffered``: the carrier holds it, not
#: delivered yet. ``expired``, ``failed``, ``rejected``: the carrier could not or would not
#: deliver it. ``unknown`` ("no useful information available") says nothing about the
#: message: ignored.
SMS_DLR_STATUS_MAP: dict[str, DeliveryStatus | None] = {
    "accepted": DeliveryStatus.SENT,
    "buffered": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "expired": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.UNDELIVERED,
    "rejected": DeliveryStatus.UNDELIVERED,
    "unknown": None,
}


# --- Messages API webhook shapes -----------------------------------------------------


class _S(msgspec.Struct, frozen=True, kw_only=True):
    pass


class _Media(_S, frozen=True, kw_only=True):
    url: str | None = None
    name: str | None = None
    caption: str | None = None


class _ContentItem(_S, frozen=True, kw_only=True):
    type: str = ""
    url: str | None = None
    name: str | None = None
    caption: str | None = None


class _Location(_S, frozen=True, kw_only=True):
    lat: float | None = None
    long: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class _Reply(_S, frozen=True, kw_only=True):
    id: str | None = None
    title: str | None = None
    description: str | None = None


class _Button(_S, frozen=True, kw_only=True):
    payload: str | None = None
    text: str | None = None
    subtype: str | None = None


class _Reaction(_S, frozen=True, kw_only=True):
    action: str | None = None
    emoji: str | None = None


class _Context(_S, frozen=True, kw_only=True):
    message_uuid: str | None = None
    message_from: str | None = None


class _Error(_S, frozen=True, kw_only=True):
    type: str | None = None
    title: str | int | None = None
    detail: str | None = None
    code: str | int | None = None
    """The v0.1 webhooks' error code (v1: ``title``)."""


class _Webhook(_S, frozen=True, kw_only=True):
    """A Messages API (v1) inbound message or status, every field the adapter reads."""

    channel: str = ""
    message_uuid: str = ""
    to: str = ""
    from_: str = msgspec.field(name="from", default="")
    timestamp: str | None = None
    message_type: str | None = None
    status: str | None = None
    client_ref: str | None = None
    text: str | None = None
    image: _Media | None = None
    audio: _Media | None = None
    video: _Media | None = None
    file: _Media | None = None
    vcard: _Media | None = None
    sticker: _Media | None = None
    content: list[_ContentItem] = []
    location: _Location | None = None
    reply: _Reply | None = None
    button: _Button | None = None
    reaction: _Reaction | None = None
    context: _Context | None = None
    contact: WaContactCard | list[WaContactCard] | None = None
    contacts: list[WaContactCard] = []
    error: _Error | None = None


_MEDIA_KINDS = ("image", "audio", "video", "file", "vcard", "sticker")
#: Media types Vonage's webhook implies (it names none): stickers are WebP, vCards vCards.
_IMPLIED_TYPES = {"sticker": "image/webp", "vcard": "text/vcard"}
_MEDIA_PATH = re.compile(r"/v3/media/([A-Za-z0-9-]{1,128})")


def _timestamp(value: str | None) -> float | None:
    """An ISO 8601 time (``2020-01-01T14:00:00.000Z``, or the SMS API's ``YYYY-MM-DD
    HH:MM:SS``, UTC) as epoch seconds; None when it is not one."""
    if not value or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (ValueError, OverflowError):
        return None


def _media_id(url: str) -> str | None:
    """Vonage's media id in its media URL (``https://api-us.nexmo.com/v3/media/<id>``)."""
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError:
        return None
    found = _MEDIA_PATH.fullmatch(path)
    return found.group(1) if found else None


def _attachment(kind: str, url: str | None, name: str | None, caption: str | None) -> Attachment:
    if not url:
        raise BadRequest(f"{kind} without a url")
    return Attachment(
        url=url,
        content_type=_IMPLIED_TYPES.get(kind),
        filename=name,
        media_id=_media_id(url),
        caption=caption,
    )


def _customer(channel: str, address: str) -> str:
    """The customer's address as ours: E.164 on the phone channels, the PSID on Messenger."""
    return address if channel == "messenger" else e164(address)


def _vonage_number(config: ChannelsConfig, number: str) -> VonageNumber:
    found = find_endpoint(config.vonage.numbers, number, "number")
    if found is None:
        raise unknown_endpoint("this Vonage number")
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class _Content:
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    contacts: tuple[Contact, ...] = ()


def _content(hook: _Webhook) -> _Content | None:
    """What a customer's message carries; None for a type that is not routed."""
    kind = hook.message_type
    if kind == "text":
        return _Content(text=hook.text or "")
    if kind in _MEDIA_KINDS:
        media: _Media | None = getattr(hook, kind)
        if media is None:
            raise BadRequest(f"{kind} message without {kind}")
        attachment = _attachment(kind, media.url, media.name, media.caption)
        return _Content(text=media.caption or hook.text or "", attachments=(attachment,))
    if kind == "content":
        items = tuple(_attachment(i.type, i.url, i.name, i.caption) for i in hook.content)
        return _Content(text=hook.text or "", attachments=items)
    if kind == "location":
        place = hook.location
        if place is None or place.lat is None or place.long is None:
            raise BadRequest("location message without lat and long")
        location = Location(
            latitude=place.lat,
            longitude=place.long,
            name=place.name,
            address=place.address,
            url=place.url,
        )
        return _Content(location=location)
    if kind in ("contact", "contacts"):
        cards = hook.contact if isinstance(hook.contact, list) else [hook.contact]
        found = [c for c in [*cards, *hook.contacts] if c is not None]
        return _Content(contacts=tuple(whatsapp_contact(c) for c in found))
    if kind == "reply":
        reply = hook.reply
        return _Content(text="" if reply is None else (reply.title or reply.id or ""))
    if kind == "button":
        button = hook.button
        return _Content(text="" if button is None else (button.text or button.payload or ""))
    if kind == "unsupported":
        return _Content()
    return None  # order, and types Vonage adds later: nothing for a person to read


def _inbound(hook: _Webhook, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    channel = CHANNELS.get(hook.channel)
    if channel is None:
        raise BadRequest(f"channel {hook.channel[:40]!r} is not handled")
    if not (hook.message_uuid and hook.to and hook.from_):
        raise BadRequest("message_uuid, to and from are required")
    endpoint = _vonage_number(config, hook.to)
    customer = _customer(hook.channel, hook.from_)
    sent_at = _timestamp(hook.timestamp)
    if hook.message_type == "reaction":
        reaction, context = hook.reaction, hook.context
        if reaction is None or context is None or not context.message_uuid:
            raise Unusable("reaction naming no message", domain=endpoint.domain)
        return [
            message_changed(
                config,
                endpoint,
                channel=channel,
                endpoint_key=hook.to,
                customer_address=customer,
                provider_message_id=context.message_uuid,
                change=(
                    MessageChange.UNREACTED
                    if reaction.action == "unreact"
                    else MessageChange.REACTED
                ),
                change_id=hook.message_uuid,
                received_at=now,
                sent_at=sent_at,
                reaction=reaction.emoji,
            )
        ]
    content = _content(hook)
    if content is None:
        return []
    window = WHATSAPP_REPLY_WINDOW if channel in (Channel.WHATSAPP, Channel.MESSENGER) else None
    return [
        message_received(
            config,
            endpoint,
            channel=channel,
            endpoint_key=hook.to,
            customer_address=customer,
            provider_message_id=hook.message_uuid,
            received_at=now,
            sent_at=sent_at,
            text=content.text,
            attachments=content.attachments,
            reply_window=window,
            location=content.location,
            contacts=content.contacts,
            in_reply_to=None if hook.context is None else hook.context.message_uuid,
        )
    ]


def _error_code(error: _Error | None) -> str | None:
    if error is None:
        return None
    code = error.title if error.title is not None else error.code
    text = None if code is None else str(code)
    return text if text and is_identifier(text, CODE_MAX) else None


def _status(hook: _Webhook, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    channel = CHANNELS.get(hook.channel)
    if channel is None:
        raise BadRequest(f"channel {hook.channel[:40]!r} is not handled")
    status = hook.status or ""
    if status not in STATUS_MAP:
        raise BadRequest(f"unknown status {status[:40]!r}")
    mapped = STATUS_MAP[status]
    if mapped is None:
        return []
    if not (hook.message_uuid and hook.from_):
        raise BadRequest("message_uuid and from are required")
    # A status reports on a message we sent: our number is the sender.
    endpoint = _vonage_number(config, hook.from_)
    return [
        delivery_status_changed(
            endpoint,
            channel=channel,
            provider_message_id=hook.message_uuid,
            provider_status=status,
            status=mapped,
            received_at=now,
            sent_at=_timestamp(hook.timestamp),
            error_code=_error_code(hook.error),
            outbound_id=hook.client_ref,
        )
    ]


def parse_messages_webhook(body: bytes, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    """Normalize a verified Messages API webhook: a customer's message (or reaction), or a
    status of a message we sent, or nothing (a type not routed)."""
    hook = decode_json(body, _Webhook, "Vonage Messages API webhook")
    if hook.status is not None and hook.message_type is None:
        return _status(hook, config, now)
    if hook.message_type is None:
        raise BadRequest("neither a message (message_type) nor a status (status)")
    return _inbound(hook, config, now)


# --- SMS API webhook shapes ----------------------------------------------------------


def parse_sms_inbound(
    params: Mapping[str, str], config: ChannelsConfig, now: float
) -> list[InboundEvent]:
    """Normalize a verified SMS API inbound message (each part of a concatenated message
    on its own; a binary message is not routed)."""
    message_id, to, msisdn = params.get("messageId"), params.get("to"), params.get("msisdn")
    if not (message_id and to and msisdn):
        raise BadRequest("messageId, to and msisdn are required")
    if params.get("type") == "binary":
        return []
    endpoint = _vonage_number(config, to)
    return [
        message_received(
            config,
            endpoint,
            channel=Channel.SMS,
            endpoint_key=to,
            customer_address=e164(msisdn),
            provider_message_id=message_id,
            received_at=now,
            sent_at=_timestamp(params.get("message-timestamp")),
            text=params.get("text", ""),
        )
    ]


def parse_sms_dlr(
    params: Mapping[str, str], config: ChannelsConfig, now: float
) -> list[InboundEvent]:
    """Normalize a verified SMS API delivery receipt (``to`` is our number or sender id)."""
    message_id, to, status = params.get("messageId"), params.get("to"), params.get("status")
    if not (message_id and to and status):
        raise BadRequest("messageId, to and status are required")
    if status not in SMS_DLR_STATUS_MAP:
        raise BadRequest(f"unknown status {status[:40]!r}")
    mapped = SMS_DLR_STATUS_MAP[status]
    if mapped is None:
        return []
    endpoint = _vonage_number(config, to)
    err = params.get("err-code")
    return [
        delivery_status_changed(
            endpoint,
            channel=Channel.SMS,
            provider_message_id=message_id,
            provider_status=status,
            status=mapped,
            received_at=now,
            sent_at=_timestamp(params.get("message-timestamp")),
            error_code=err if err and err != "0" and is_identifier(err, CODE_MAX) else None,
            outbound_id=params.get("client-ref"),
        )
    ]


# --- Routes ---------------------------------------------------------------------------


def _ok() -> web.Response:
    return web.Response(status=200)


def _messages_handler(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            cfg = ctx.channels.vonage
            secret = resolve_secret(cfg.signature_secret_env, ctx.environ)
            now = ctx.clock()
            nonce = verify_messages_signature(
                secret,
                request.headers.get("Authorization"),
                body,
                now,
                cfg.max_age_seconds,
                cfg.api_key,
            )
            return parse_signed(
                lambda: Normalized(parse_messages_webhook(body, ctx.channels, now)), nonce=nonce
            )

        return await serve(ctx, PROVIDER, request, work, _ok)

    return handle


def _sms_handler(ctx: WebhookContext, dlr: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            cfg = ctx.channels.vonage
            secret = resolve_secret(cfg.signature_secret_env, ctx.environ)
            params = sms_params(
                request.method, list(request.query.items()), request.content_type, body
            )
            now = ctx.clock()
            nonce = verify_sms_signature(
                secret, params, cfg.sms_signature_method, now, cfg.sms_max_age_seconds, cfg.api_key
            )
            parse = parse_sms_dlr if dlr else parse_sms_inbound
            return parse_signed(lambda: Normalized(parse(params, ctx.channels, now)), nonce=nonce)

        return await serve(ctx, PROVIDER, request, work, _ok)

    return handle


def routes(ctx: WebhookContext) -> list[web.RouteDef]:
    """Vonage's webhooks: the Messages API's inbound and status URLs, the SMS API's
    inbound and delivery receipt URLs (``GET`` or ``POST``)."""
    messages = _messages_handler(ctx)
    sms_inbound, sms_dlr = _sms_handler(ctx, dlr=False), _sms_handler(ctx, dlr=True)
    return [
        web.post(INBOUND_PATH, messages),
        web.post(STATUS_PATH, messages),
        web.get(SMS_INBOUND_PATH, sms_inbound, allow_head=False),
        web.post(SMS_INBOUND_PATH, sms_inbound),
        web.get(SMS_DLR_PATH, sms_dlr, allow_head=False),
        web.post(SMS_DLR_PATH, sms_dlr),
    ]


# --- Egress ---------------------------------------------------------------------------

MB = 1024 * 1024
_OFFICE = frozenset(
    {
        "application/pdf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/rtf",
        "text/plain",
        "text/csv",
    }
)
MEDIA_LIMITS: dict[Channel, MediaLimits] = {
    Channel.WHATSAPP: MediaLimits(
        provider="Vonage WhatsApp",
        rules=(
            MediaRule("image", frozenset({"image/jpeg", "image/png"}), 5 * MB),
            MediaRule(
                "audio",
                frozenset({"audio/aac", "audio/mp4", "audio/amr", "audio/mpeg", "audio/ogg"}),
                16 * MB,
            ),
            MediaRule("video", frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
            MediaRule("file", frozenset({"application/*", "text/*"}), 100 * MB),
        ),
    ),
    Channel.MESSENGER: MediaLimits(
        provider="Vonage Messenger",
        rules=(
            MediaRule("image", frozenset({"image/jpeg", "image/png", "image/gif"}), 25 * MB),
            MediaRule("audio", frozenset({"audio/*"}), 25 * MB),
            MediaRule("video", frozenset({"video/*"}), 25 * MB),
            MediaRule("file", frozenset({"application/*", "text/*"}), 25 * MB),
        ),
    ),
    Channel.VIBER: MediaLimits(
        provider="Vonage Viber",
        rules=(
            MediaRule("image", frozenset({"image/jpeg", "image/png"}), 200 * MB),
            MediaRule("file", _OFFICE, 200 * MB),
        ),
    ),
    Channel.SMS: MediaLimits(
        provider="Vonage MMS",
        rules=(
            MediaRule("image", frozenset({"image/jpeg", "image/png", "image/gif"}), 5 * MB),
            MediaRule("vcard", frozenset({"text/vcard", "text/x-vcard"}), 5 * MB),
            MediaRule("audio", frozenset({"audio/*"}), 5 * MB),
            MediaRule("video", frozenset({"video/*"}), 5 * MB),
            MediaRule("file", frozenset({"application/pdf"}), 5 * MB),
        ),
    ),
}
"""What a reply may carry per channel: one attachment (every Messages API media message has
one; MMS ``content`` takes several, but Vonage documents no count). WhatsApp: Meta's
limits, which Vonage applies (JPEG/PNG images ≤ 5 MB, AAC/MP4/AMR/MPEG/OGG audio and
MP4/3GPP video ≤ 16 MB, documents ≤ 100 MB). Messenger: Meta's 25 MB. Viber: JPEG/PNG
images and Vonage's document list (≤ 200 MB); no video, which Vonage sends only with a
thumbnail, duration and size we do not have. MMS (US and Canada): JPEG/PNG/GIF, vCard,
audio, video, PDF; Vonage documents no size, 5 MB is the bound carriers commonly take."""

#: Media kinds whose Vonage message carries a caption, per channel.
_CAPTIONED: dict[Channel, frozenset[str]] = {
    Channel.WHATSAPP: frozenset({"image", "video", "file"}),
    Channel.MESSENGER: frozenset(),
    Channel.VIBER: frozenset({"image"}),
    Channel.SMS: frozenset({"image", "vcard", "audio", "video", "file"}),
}
_VONAGE_CHANNEL = {
    Channel.SMS: "sms",
    Channel.WHATSAPP: "whatsapp",
    Channel.MESSENGER: "messenger",
    Channel.VIBER: "viber_service",
}
VIBER_FILE_NAME_MAX = 25
"""Characters of a Viber file's name."""


def owns(reply: Outbound, channels: ChannelsConfig) -> bool:
    """Whether a Vonage number of ours sends ``reply`` (its channel through Vonage)."""
    return (
        reply.channel in _VONAGE_CHANNEL
        and find_endpoint(channels.vonage.numbers, reply.endpoint, "number") is not None
    )


@functools.lru_cache(maxsize=8)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    """The application's key, parsed once per process (``PrepareFailed`` when it is not an
    unencrypted PEM RSA key). A PEM whose newlines were written ``\\n`` (an environment
    variable set on one line) is read too."""
    if "\n" not in pem and "\\n" in pem:
        pem = pem.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PrepareFailed("the Vonage private key is not an unencrypted PEM RSA key")
    return key


def application_jwt(application_id: str, pem: str, *, now: float, jti: str) -> str:
    """An application JWT for the Messages API: RS256 over ``application_id``, ``iat``,
    ``jti`` and ``exp`` (``APPLICATION_JWT_TTL`` on)."""
    key = _private_key(pem)
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {
        "application_id": application_id,
        "iat": int(now),
        "jti": jti,
        "exp": int(now) + APPLICATION_JWT_TTL,
    }
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{b64url(signature)}"


def _links(text: str, urls: list[str]) -> str:
    return "\n".join([text, *urls]) if text else "\n".join(urls)


def _map_link(location: Location) -> str:
    return location.url or MAP_URL.format(lat=location.latitude, lon=location.longitude)


def _buttons_fit(body: str, options: tuple[str, ...]) -> bool:
    return (
        0 < len(options) <= WHATSAPP_BUTTONS_MAX
        and all(len(option) <= WHATSAPP_BUTTON_TITLE_MAX for option in options)
        and 0 < len(body) <= WHATSAPP_BUTTON_BODY_MAX
    )


def _media_message(
    channel: Channel, attachment: Attachment, kind: str, caption: str
) -> dict[str, Any]:
    media: dict[str, Any] = {"url": attachment.url}
    if caption and kind in _CAPTIONED[channel]:
        media["caption"] = caption
    name = attachment.filename
    # A Viber file's name has at most 25 characters: a longer one is left to Vonage's
    # default (the URL's).
    named = channel is Channel.WHATSAPP or (
        channel is Channel.VIBER and len(name or "") <= VIBER_FILE_NAME_MAX
    )
    if kind == "file" and name and named:
        media["name"] = name
    return {
        "channel": "mms" if channel is Channel.SMS else _VONAGE_CHANNEL[channel],
        "message_type": kind,
        kind: media,
    }


def _whatsapp_template(reply: Outbound) -> dict[str, Any] | None:
    template = reply.template
    if template is None:
        return None
    return {
        "channel": "whatsapp",
        "message_type": "template",
        "template": {"name": template.provider_template, "parameters": list(template.parameters)},
        # WhatsApp spells locales with an underscore (en_US); ours are BCP 47 (en-US).
        "whatsapp": {"policy": "deterministic", "locale": template.language.replace("-", "_")},
    }


def _message(reply: Outbound) -> dict[str, Any]:
    """The channel's part of the send body: ``channel``, ``message_type`` and its object.
    ``MediaRefused`` when an attachment breaks the channel's limits."""
    channel = reply.channel
    if channel is Channel.WHATSAPP and (template := _whatsapp_template(reply)) is not None:
        return template
    options = quick_replies(reply)
    location = reply.location if isinstance(reply, ReplyRequested) else None
    checked = check_attachments(reply.attachments, MEDIA_LIMITS[channel])
    text = reply.text
    if checked:
        attachment, rule = checked[0]
        caption = with_numbered_options(text, options)
        if location is None and (not caption or rule.kind in _CAPTIONED[channel]):
            return _media_message(channel, attachment, rule.kind, caption)
    if channel is Channel.WHATSAPP and location is not None and not (text or checked or options):
        place: dict[str, Any] = {"latitude": location.latitude, "longitude": location.longitude}
        if location.name:
            place["name"] = location.name
        if location.address:
            place["address"] = location.address
        return {
            "channel": "whatsapp",
            "message_type": "custom",
            "custom": {"type": "location", "location": place},
        }
    links = [a.url for a, _ in checked] + ([_map_link(location)] if location else [])
    body = _links(text, links)
    if channel is Channel.WHATSAPP and _buttons_fit(body, options):
        buttons = [{"type": "reply", "reply": {"id": o, "title": o}} for o in options]
        return {
            "channel": "whatsapp",
            "message_type": "custom",
            "custom": {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": body},
                    "action": {"buttons": buttons},
                },
            },
        }
    return {
        "channel": _VONAGE_CHANNEL[channel],
        "message_type": "text",
        "text": with_numbered_options(body, options),
    }


def _messenger_category(reply: Outbound) -> dict[str, str]:
    """Vonage's ``messenger`` object: Meta's messaging type as a ``category``."""
    if reply.message_tag is not None:
        return {"category": "message_tag", "tag": reply.message_tag.value}
    if isinstance(reply, ReplyRequested):
        return {"category": "response"}
    return {"category": "update"}


def _message_uuid(body: Any) -> str | None:
    value = body.get("message_uuid") if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def vonage_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The Messages API send of ``reply``: ``EgressUnroutable`` when no Vonage number of
    ours sends it, ``SecretMissing`` without the private key, ``MediaRefused`` when an
    attachment breaks the channel's limits. The JWT is made in ``prepare``."""
    cfg: VonageConfig = channels.vonage
    if not owns(reply, channels):
        raise EgressUnroutable(reply.endpoint)
    pem = resolve_secret(cfg.private_key_env, environ)
    to = reply.customer_address
    body: dict[str, Any] = {
        "from": reply.endpoint,
        "to": to if reply.channel is Channel.MESSENGER else to.lstrip("+"),
        **_message(reply),
        "client_ref": reply.id,
    }
    if reply.channel is Channel.MESSENGER:
        body["messenger"] = _messenger_category(reply)
    application_id = cfg.application_id

    async def prepare(_session: object) -> ProviderRequest:
        if not application_id:
            raise PrepareFailed("vonage.application_id is not set")
        token = application_jwt(application_id, pem, now=time.time(), jti=str(uuid.uuid4()))
        headers = {**request.headers, "Authorization": f"Bearer {token}"}
        return dataclasses.replace(request, headers=headers, prepare=None)

    request = ProviderRequest(
        provider=PROVIDER,
        url=f"{cfg.messages_api_base_url.rstrip('/')}/v1/messages",
        headers={"Accept": "application/json"},
        json=body,
        message_id=_message_uuid,
        prepare=prepare,
    )
    return request


# --- Declaration ----------------------------------------------------------------------

DECLARATION = ChannelDeclaration(
    provider="Vonage",
    channels=(
        Channel.SMS.value,
        Channel.WHATSAPP.value,
        Channel.MESSENGER.value,
        Channel.VIBER.value,
    ),
    inbound=(
        f"Messages API: POST {INBOUND_PATH}, POST {STATUS_PATH}; SMS API (GET or POST):"
        f" {SMS_INBOUND_PATH}, {SMS_DLR_PATH}"
    ),
    outbound="Messages API POST /v1/messages (application JWT, RS256)",
    media_in=(
        "image, audio, video, file, vCard, sticker (Vonage's media URL and id, caption, file"
        " name kept), MMS multi-part content, location, WhatsApp contacts; SMS API parts of a"
        " concatenated SMS arrive as separate messages"
    ),
    media_out=(
        "one attachment by URL: WhatsApp image (JPEG, PNG ≤ 5 MB), audio, video (≤ 16 MB),"
        " file (≤ 100 MB); Messenger image, audio, video, file (≤ 25 MB); Viber image (JPEG,"
        " PNG), document (≤ 200 MB); MMS (US, Canada) image, vCard, audio, video, PDF"
        " (≤ 5 MB); the text as caption where the kind has one, else a link after the text;"
        " a location (WhatsApp: a location message, elsewhere a map link)"
    ),
    statuses=(
        "Messages API: submitted, delivered, read, rejected, undeliverable (error code kept);"
        " SMS API receipts: accepted, buffered, delivered, expired, failed, rejected"
        " (unknown ignored)"
    ),
    read_receipts="yes where the channel reports them (WhatsApp, Messenger, Viber): read",
    quick_replies=(
        "WhatsApp: up to 3 reply buttons (titles ≤ 20 characters); else, and on SMS,"
        " Messenger and Viber, numbered in the text"
    ),
    signature=(
        "Messages API: JWT HS256 with the signature secret, payload_hash = SHA-256 of the"
        " body; SMS API: sig over the sorted parameters (MD5 hash or HMAC-MD5/SHA-1/SHA-256/"
        "SHA-512, per account)"
    ),
    replay_protection=(
        "JWT iat within vonage.max_age_seconds (24.5 h) and each jti accepted once; SMS API"
        " timestamp within vonage.sms_max_age_seconds (72.5 h) and each nonce accepted once"
    ),
)
