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

Egress (replies and business-started messages): ``adapters.vonage_send``.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from adapters.base import (
    BadRequest,
    ChannelDeclaration,
    Normalized,
    Unusable,
)
from adapters.config import ChannelsConfig, VonageNumber, resolve_secret
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
from adapters.vonage_signatures import (
    PROVIDER,
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
)

INBOUND_PATH = "/webhooks/vonage/inbound"
STATUS_PATH = "/webhooks/vonage/status"
SMS_INBOUND_PATH = "/webhooks/vonage/sms/inbound"
SMS_DLR_PATH = "/webhooks/vonage/sms/dlr"
WHATSAPP_REPLY_WINDOW = 24 * 3600.0
"""WhatsApp and Messenger let a business answer freely for 24 h after the customer wrote."""

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
        # A content item's type is the provider's word, any text: named only when ours.
        raise BadRequest(f"{kind if kind in _MEDIA_KINDS else 'a content item'} without a url")
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
        raise BadRequest("channel is not one Switchboard handles")
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
    # Checked with the status (``delivery_status_changed``): one no event may carry sets
    # the status aside, as every provider's does, rather than leaving the code out.
    return None if code is None or code == "" else str(code)


def _status(hook: _Webhook, config: ChannelsConfig, now: float) -> list[InboundEvent]:
    channel = CHANNELS.get(hook.channel)
    if channel is None:
        raise BadRequest("channel is not one Switchboard handles")
    status = hook.status or ""
    if status not in STATUS_MAP:
        raise BadRequest("status is not one Vonage documents")
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
        raise BadRequest("status is not one Vonage documents")
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
            error_code=err if err and err != "0" else None,
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
