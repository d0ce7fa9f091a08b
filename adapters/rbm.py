"""Google RCS Business Messaging (RBM): the agent webhook in, ``phones.agentMessages`` out.

Webhook (developers.google.com/business-communications/rcs-business-messaging/guides/
integrate/webhooks). RBM posts JSON shaped like a Pub/Sub push delivery::

    {"message": {"data": "<base64 JSON>", "messageId": "…", "publishTime": "…",
                 "attributes": {…}},
     "subscription": "projects/…/subscriptions/…"}

``X-Goog-Signature`` is the base64 HMAC-SHA512, keyed with the webhook's client token, of
the *decoded* ``message.data`` bytes (Google's sample: ``createHmac('sha512', CLIENT_TOKEN)
.update(Buffer.from(message.data, 'base64')).digest('base64')``). Only ``data`` is signed:
the envelope (``messageId``, ``publishTime``, ``attributes``) is not, and nothing of it is
used. The envelope is read (bounded by the body limit) and ``data`` base64-decoded to
check the signature; the inner JSON is decoded only once it matches. The partner webhook
(``POST /webhooks/rbm``) uses ``rbm.client_token_env``; an agent webhook
(``POST /webhooks/rbm/<agent_id>``) its agent's ``client_token_env`` when set.

Verification handshake: when a webhook is configured, RBM posts ``{"clientToken": …,
"secret": …}`` (no ``message``; ``X-Goog-Webhook-Type: verification``) and expects 200
with the secret as the plain-text body, given only when the client token is ours.

Inner JSON, one of (reference/rest/v1):
- ``UserMessage``: ``senderPhoneNumber`` (E.164), ``messageId`` (the guide's examples
  carry ``eventId`` instead: either names the message), ``sendTime``, ``agentId`` and one
  of ``text``, ``suggestionResponse`` (``postbackData``, ``text``, ``type``), ``location``
  (``latitude``, ``longitude``), ``userFile`` (``payload`` and ``thumbnail``:
  ``mimeType``, ``fileSizeBytes``, ``fileUri``, ``fileName``) → ``MessageReceived`` on
  ``Channel.RCS`` (a phone channel: ``customer_id`` follows ``phone_identity_domains``).
  A tapped suggestion's text is the message text (our quick replies' postback is their
  text too). The file's thumbnail has no place in an event and is dropped;
- ``UserEvent`` (``eventType`` with ``senderPhoneNumber``) and ``ServerEvent``
  (``eventType`` with ``phoneNumber``) → ``DeliveryStatusChanged`` per ``STATUS_MAP``;
  the user events ``UNSUBSCRIBE`` (the user wants no further non-essential messages of
  the agent) and ``SUBSCRIBE`` (wants them again) → ``ConsentReported`` (``CONSENT_MAP``:
  opt-out, opt-in) for ``senderPhoneNumber`` on the agent, one per ``eventId``. The
  reference notes that RBM does not send these two yet ("will be supported in a future
  release"); they are read as documented so they count once it does;
- ``AgentLaunchEvent`` (``newLaunchState``): about the agent, not a customer: ignored.

Replay protection. Nothing RBM signs can be claimed once: Pub/Sub delivers at least once,
so the same signed notification legitimately arrives again, even after our 200, and
refusing it would be retried for 7 days and hold up every agent of the partner account
(RBM queues a partner's deliveries on one queue). Instead the event ids come from the
signed ``messageId``/``eventId`` (``inbound_event_id``), so a redelivery or a replayed
capture is the same event and the router drops it as a duplicate; and a notification whose
signed ``sendTime`` is older than ``rbm.max_age_seconds`` is set aside on the dead-letter
topic, not published (set aside rather than refused: a user message's ``sendTime`` is the
phone's clock, and a refusal would be retried for 7 days).

Egress: ``POST {api_base_url}/v1/phones/{E.164}/agentMessages?messageId=…&agentId=…`` with
``{"contentMessage": …}`` and an OAuth 2.0 access token of the service account
(``prepare``: a JWT bearer grant, RS256, scope ``rcsbusinessmessaging``, ``aud`` the key's
``token_uri``; cached per process until 5 minutes before it expires). The ``messageId`` is
the outbound id (a UUID, as RBM requires; an id that is not one is mapped to a UUIDv5 of
it), and it is also the provider message id the delivery events name. RBM "ignores any
agent message sent with an ID that was used by an earlier message", so a retry after a
lost answer does not reach the customer twice; what it answers to such a retry is not
documented, and any 4xx is a failed send for egress.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from adapters.base import (
    BadRequest,
    ChannelDeclaration,
    Normalized,
    SignatureRejected,
    Unusable,
    constant_time_equal,
)
from adapters.config import ChannelsConfig, RbmAgent, resolve_secret
from adapters.media import MediaLimits, MediaRefused, MediaRule, check_attachments
from adapters.normalize import (
    consent_reported,
    decode_json,
    delivery_status_changed,
    find_endpoint,
    message_received,
    unknown_endpoint,
)
from adapters.provider_api import (
    EgressUnroutable,
    Outbound,
    ProviderRequest,
    quick_replies,
    with_numbered_options,
)
from adapters.rbm_tokens import ACCESS_TOKENS
from adapters.webhook_serving import Handler, WebhookContext, parse_signed, serve
from schemas import (
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    DeliveryStatus,
    InboundEvent,
    Location,
    ReplyRequested,
)

WEBHOOK_PATH = "/webhooks/rbm"
SIGNATURE_HEADER = "X-Goog-Signature"
WEBHOOK_TYPE_HEADER = "X-Goog-Webhook-Type"
"""``verification`` on the handshake (``message_callback`` / ``agent_callback`` otherwise);
unsigned, so only the body decides what a request is."""
AGENT_SUFFIX = "@rbm.goog"
"""How webhooks write an agent id the API takes without it (``welcome-bot@rbm.goog``)."""
SECRET_MAX = 1024
"""Longest handshake secret echoed back (Google's example: ten digits)."""
TEXT_MAX = 3072
"""Characters of an agent message's text."""
CARD_DESCRIPTION_MAX = 2000
"""Characters of a rich card's description: a file's caption."""
SUGGESTIONS_MAX = 11
"""Suggested replies and actions of one agent message."""
SUGGESTION_TEXT_MAX = 25
"""Characters of a suggestion's text."""
CAPTIONED_KINDS = frozenset({"image", "video"})
"""Media a rich card shows, so the only files that can carry text in one message."""
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)

DOCUMENTED_EVENT_TYPES = (
    # UserEvent.EventType
    "EVENT_TYPE_UNSPECIFIED",
    "DELIVERED",
    "IS_TYPING",
    "READ",
    "UNSUBSCRIBE",
    "SUBSCRIBE",
    # ServerEvent.EventType (its EVENT_TYPE_UNSPECIFIED is the same word)
    "TTL_EXPIRATION_REVOKED",
    "TTL_EXPIRATION_REVOKE_FAILED",
)
#: Every documented ``eventType`` → ours (None: ignored, for the reason given).
STATUS_MAP: dict[str, DeliveryStatus | None] = {
    "DELIVERED": DeliveryStatus.DELIVERED,
    "READ": DeliveryStatus.READ,
    # Typing says nothing about a message we sent, and there is no typing event of ours.
    "IS_TYPING": None,
    # The user unsubscribed or resubscribed in Google Messages: about no message we sent,
    # a consent change (``CONSENT_MAP``), not a status.
    "UNSUBSCRIBE": None,
    "SUBSCRIBE": None,
    # The message expired and RBM revoked it: it never reached the phone.
    "TTL_EXPIRATION_REVOKED": DeliveryStatus.UNDELIVERED,
    # Expired but not revoked: it may still arrive (a DELIVERED event follows if it does).
    "TTL_EXPIRATION_REVOKE_FAILED": None,
    # Not specified: says nothing.
    "EVENT_TYPE_UNSPECIFIED": None,
}

#: User events that change the user's consent (a ``ConsentReported``).
CONSENT_MAP: dict[str, Consent] = {
    # "doesn't want to receive further non-essential messages sent by the agent": our
    # opt-out stops business-started messages; replies to the user still go.
    "UNSUBSCRIBE": Consent.OPT_OUT,
    "SUBSCRIBE": Consent.OPT_IN,  # "wants to receive messages from the agent"
}

_MEDIA_MAX_BYTES = 100_000_000
"""100 MB: "the maximum file size for files sent through RBM"."""
MEDIA_LIMITS = MediaLimits(
    provider="RBM",
    rules=(
        MediaRule(
            "image",
            frozenset({"image/jpeg", "image/jpg", "image/gif", "image/png"}),
            _MEDIA_MAX_BYTES,
        ),
        MediaRule(
            "video",
            frozenset(
                {
                    "video/h263",
                    "video/m4v",
                    "video/mp4",
                    "video/mpeg",
                    "video/mpeg4",
                    "video/webm",
                }
            ),
            _MEDIA_MAX_BYTES,
        ),
        MediaRule(
            "audio",
            frozenset(
                {
                    "audio/aac",
                    "audio/mp3",
                    "audio/mpeg",
                    "audio/mpg",
                    "audio/mp4",
                    "audio/mp4-latm",
                    "audio/3gpp",
                    "application/ogg",
                    "audio/ogg",
                }
            ),
            _MEDIA_MAX_BYTES,
        ),
        MediaRule("document", frozenset({"application/pdf"}), _MEDIA_MAX_BYTES),
    ),
    max_count=1,  # "A single RBM message can only attach one PDF or media file."
)

DECLARATION = ChannelDeclaration(
    provider="Google RBM (RCS Business Messaging)",
    channels=(Channel.RCS.value,),
    inbound=f"POST {WEBHOOK_PATH} (partner webhook), POST {WEBHOOK_PATH}/{{agent_id}} (agent"
    " webhook): user messages, user events (UNSUBSCRIBE / SUBSCRIBE opt the user out / in),"
    " server events; the verification handshake",
    outbound="RBM API phones.agentMessages.create (service account OAuth 2.0 token, JWT bearer"
    " grant); messageId is the outbound id",
    media_in="userFile (file URI, MIME type, size, file name; the thumbnail is dropped);"
    " location (latitude/longitude); tapped suggestion (its text)",
    media_out="1 file per message by URL, 100 MB: JPEG/PNG/GIF image, H.263/M4V/MP4/MPEG/WebM"
    " video, AAC/MP3/MP4/3GPP/OGG audio, PDF; with text only an image or video (a rich card,"
    " text ≤ 2,000 characters); a location as a View location action",
    statuses=", ".join(t for t in DOCUMENTED_EVENT_TYPES if STATUS_MAP[t] is not None)
    + " (SUBSCRIBE, UNSUBSCRIBE: consent, not statuses; IS_TYPING,"
    " TTL_EXPIRATION_REVOKE_FAILED ignored)",
    read_receipts="yes: READ user events",
    quick_replies="suggested replies (at most 11 of 25 characters; otherwise listed after the"
    " text, numbered)",
    signature="X-Goog-Signature: base64 HMAC-SHA512 of the base64-decoded message.data with the"
    " webhook's client token (the envelope is not signed); handshake echoed only for our"
    " clientToken",
    replay_protection="none at the edge (Pub/Sub redelivers at least once, even after a 200):"
    " event ids come from the signed messageId/eventId, so a replay is the same event, dropped"
    " downstream; a signed sendTime older than rbm.max_age_seconds (8 days) is set aside",
)


# --- Webhook ------------------------------------------------------------------------------


# Field names below are RBM's (camelCase), so that msgspec reads them as sent.


class _PushMessage(msgspec.Struct, frozen=True):
    data: str = ""


class _Envelope(msgspec.Struct, frozen=True):
    """A webhook body: a Pub/Sub-style delivery, or the verification handshake."""

    message: _PushMessage | None = None
    clientToken: str | None = None
    secret: str | None = None


class _FileInfo(msgspec.Struct, frozen=True):
    mimeType: str | None = None
    fileSizeBytes: int | str | None = None
    fileName: str | None = None
    fileUri: str | None = None


class _UserFile(msgspec.Struct, frozen=True):
    payload: _FileInfo | None = None
    thumbnail: _FileInfo | None = None


class _LatLng(msgspec.Struct, frozen=True):
    latitude: float
    longitude: float


class _SuggestionResponse(msgspec.Struct, frozen=True):
    postbackData: str | None = None
    text: str | None = None
    type: str | None = None


class _Notification(msgspec.Struct, frozen=True):
    """The fields of every documented inner shape (UserMessage, UserEvent, ServerEvent,
    AgentLaunchEvent); which are set tells which it is."""

    agentId: str | None = None
    senderPhoneNumber: str | None = None
    phoneNumber: str | None = None
    messageId: str | None = None
    eventId: str | None = None
    eventType: str | None = None
    sendTime: str | None = None
    text: str | None = None
    suggestionResponse: _SuggestionResponse | None = None
    location: _LatLng | None = None
    userFile: _UserFile | None = None
    newLaunchState: str | None = None


def signature(client_token: str, data: bytes) -> str:
    """RBM's ``X-Goog-Signature`` of the decoded ``message.data``."""
    mac = hmac.new(client_token.encode(), data, hashlib.sha512).digest()
    return base64.b64encode(mac).decode()


def verify_signature(client_token: str, data: bytes, header: str | None) -> None:
    """Raise ``SignatureRejected`` (401 missing, 403 wrong) unless ``header`` signs ``data``."""
    if not header or not header.strip():
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header", status=401)
    if not constant_time_equal(signature(client_token, data), header.strip()):
        raise SignatureRejected()


def read_envelope(body: bytes) -> _Envelope:
    """The webhook body's outer JSON (unsigned: a malformed one is refused, 400)."""
    envelope = decode_json(body, _Envelope, "RBM webhook body")
    if envelope.message is None and envelope.clientToken is None:
        raise BadRequest("neither a message nor a verification request")
    return envelope


def message_data(envelope: _Envelope) -> bytes:
    """``message.data`` decoded: base64, standard or URL-safe, padded or not (proto3 JSON)."""
    assert envelope.message is not None
    text = envelope.message.data.strip()
    if not text:
        raise BadRequest("message.data missing")
    try:
        raw = text.replace("-", "+").replace("_", "/").encode("ascii")
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise BadRequest("message.data is not base64") from None


def answer_verification(envelope: _Envelope, client_token: str) -> str:
    """The secret to echo for a handshake carrying our client token."""
    if not constant_time_equal(client_token, envelope.clientToken or ""):
        raise SignatureRejected("clientToken is not this webhook's")
    secret = envelope.secret or ""
    if not secret or len(secret) > SECRET_MAX or not secret.isascii() or not secret.isprintable():
        raise BadRequest(f"secret must be 1 to {SECRET_MAX} printable ASCII characters")
    return secret


def parse_time(value: str | None) -> float | None:
    """An RFC 3339 timestamp (``2014-10-02T15:01:23.045123456Z``, offsets too) in epoch
    seconds; None when absent or not one."""
    match = _RFC3339.match(value or "")
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{offset}")
    except ValueError:
        return None
    return moment.timestamp() + (int(fraction.ljust(9, "0")) / 1e9 if fraction else 0.0)


def find_agent(config: ChannelsConfig, agent_id: str | None) -> RbmAgent:
    """The configured agent a notification's ``agentId`` names (with or without
    ``@rbm.goog``); 404 otherwise."""
    value = agent_id or ""
    agents = config.rbm.agents
    found = find_endpoint(agents, value, "agent_id")
    if found is None and value.endswith(AGENT_SUFFIX):
        found = find_endpoint(agents, value.removesuffix(AGENT_SUFFIX), "agent_id")
    if found is None:
        raise unknown_endpoint("this RBM agent")
    return found


def parse_notification(
    data: bytes,
    config: ChannelsConfig,
    now: float,
    *,
    route_agent: RbmAgent | None = None,
) -> list[InboundEvent]:
    """The events of a verified notification (``message.data`` decoded): a customer
    message, a delivery status, a consent report, or none. ``route_agent``: the agent
    whose own webhook received it (its notifications only)."""
    item = decode_json(data, _Notification, "RBM notification")
    if item.newLaunchState is not None:
        return []  # AgentLaunchEvent
    if item.eventType is not None:
        consent = CONSENT_MAP.get(item.eventType)
        if consent is not None:
            agent = _agent(config, item.agentId, route_agent)
            sent_at = _fresh_time(item, agent, config, now)
            return [_consent_report(item, agent, config, consent, now, sent_at)]
        status = STATUS_MAP.get(item.eventType)
        if status is None:
            return []
        agent = _agent(config, item.agentId, route_agent)
        sent_at = _fresh_time(item, agent, config, now)
        if not item.messageId:
            raise Unusable(f"{item.eventType} without messageId", domain=agent.domain)
        return [
            delivery_status_changed(
                agent,
                channel=Channel.RCS,
                provider_message_id=item.messageId,
                provider_status=item.eventType,
                status=status,
                received_at=now,
                sent_at=sent_at,
            )
        ]
    agent = _agent(config, item.agentId, route_agent)
    sent_at = _fresh_time(item, agent, config, now)
    return [_message(item, agent, config, now, sent_at)]


def _agent(config: ChannelsConfig, agent_id: str | None, route_agent: RbmAgent | None) -> RbmAgent:
    agent = find_agent(config, agent_id)
    if route_agent is not None and agent.agent_id != route_agent.agent_id:
        raise Unusable("agentId is not the agent of this webhook", domain=route_agent.domain)
    return agent


def _fresh_time(
    item: _Notification, agent: RbmAgent, config: ChannelsConfig, now: float
) -> float | None:
    """The signed ``sendTime``; ``Unusable`` when older than ``rbm.max_age_seconds``."""
    sent_at = parse_time(item.sendTime)
    if sent_at is not None and now - sent_at > config.rbm.max_age_seconds:
        raise Unusable(
            f"sendTime older than {config.rbm.max_age_seconds} s (rbm.max_age_seconds)",
            domain=agent.domain,
        )
    return sent_at


def _consent_report(
    item: _Notification,
    agent: RbmAgent,
    config: ChannelsConfig,
    consent: Consent,
    now: float,
    sent_at: float | None,
) -> ConsentReported:
    """The user's (un)subscribe: for ``senderPhoneNumber`` as a message of theirs names
    it, on the agent, one per ``eventId``."""
    phone = item.senderPhoneNumber or ""
    if not E164.match(phone):
        raise Unusable("senderPhoneNumber is not an E.164 number", domain=agent.domain)
    if not item.eventId:
        raise Unusable(f"{item.eventType} without eventId", domain=agent.domain)
    return consent_reported(
        config,
        agent,
        channel=Channel.RCS,
        endpoint_key=agent.agent_id,
        customer_address=phone,
        consent=consent,
        provider_status=item.eventType or "",
        report_id=item.eventId,
        received_at=now,
        sent_at=sent_at,
    )


def _message(
    item: _Notification,
    agent: RbmAgent,
    config: ChannelsConfig,
    now: float,
    sent_at: float | None,
) -> InboundEvent:
    phone = item.senderPhoneNumber or ""
    if not E164.match(phone):
        raise Unusable("senderPhoneNumber is not an E.164 number", domain=agent.domain)
    message_id = item.messageId or item.eventId
    if not message_id:
        raise Unusable("a user message without messageId", domain=agent.domain)
    text = ""
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    if item.text is not None:
        text = item.text
    elif item.suggestionResponse is not None:
        text = item.suggestionResponse.text or item.suggestionResponse.postbackData or ""
    elif item.location is not None:
        location = Location(latitude=item.location.latitude, longitude=item.location.longitude)
    elif item.userFile is not None and item.userFile.payload is not None:
        attachments = (_attachment(item.userFile.payload, agent),)
    else:
        raise Unusable(
            "a user message without text, suggestionResponse, location or userFile",
            domain=agent.domain,
        )
    return message_received(
        config,
        agent,
        channel=Channel.RCS,
        endpoint_key=agent.agent_id,
        customer_address=phone,
        provider_message_id=message_id,
        received_at=now,
        sent_at=sent_at,
        text=text,
        attachments=attachments,
        location=location,
    )


def _attachment(payload: _FileInfo, agent: RbmAgent) -> Attachment:
    if not payload.fileUri:
        raise Unusable("userFile without payload.fileUri", domain=agent.domain)
    size = payload.fileSizeBytes
    if isinstance(size, str):
        size = int(size) if size.isdigit() and len(size) < 20 else None
    return Attachment(
        url=payload.fileUri,
        content_type=payload.mimeType or None,
        filename=payload.fileName or None,
        size_bytes=size,
    )


def _handler(ctx: WebhookContext, per_agent: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        answer = ""

        def work(body: bytes) -> Normalized:
            nonlocal answer
            rbm = ctx.channels.rbm
            agent = None
            token_env = rbm.client_token_env
            if per_agent:
                agent = find_endpoint(rbm.agents, request.match_info["agent"], "agent_id")
                if agent is None:
                    raise unknown_endpoint("this RBM agent")
                token_env = agent.client_token_env or token_env
            envelope = read_envelope(body)
            token = resolve_secret(token_env, ctx.environ)
            if envelope.message is None:
                answer = answer_verification(envelope, token)
                return Normalized([])
            data = message_data(envelope)
            verify_signature(token, data, request.headers.get(SIGNATURE_HEADER))
            return parse_signed(
                lambda: Normalized(
                    parse_notification(data, ctx.channels, ctx.clock(), route_agent=agent)
                ),
                domain=None if agent is None else agent.domain,
            )

        handshake = request.headers.get(WEBHOOK_TYPE_HEADER, "").strip().lower() == "verification"
        return await serve(
            ctx,
            "rbm",
            request,
            work,
            lambda: web.Response(text=answer),
            empty_outcome="accepted" if handshake else "ignored",
        )

    return handle


def routes(ctx: WebhookContext) -> list[web.RouteDef]:
    """The partner webhook and the agents' own webhooks."""
    return [
        web.post(WEBHOOK_PATH, _handler(ctx, per_agent=False)),
        web.post(WEBHOOK_PATH + "/{agent}", _handler(ctx, per_agent=True)),
    ]


# --- Egress -------------------------------------------------------------------------------


def owns(reply: Outbound, channels: ChannelsConfig) -> bool:
    """RCS replies from a configured RBM agent."""
    return reply.channel is Channel.RCS and (
        find_endpoint(channels.rbm.agents, reply.endpoint, "agent_id") is not None
    )


def outbound_message_id(outbound_id: str) -> str:
    """The ``messageId`` of an outbound message: its id when a UUID (RBM requires one),
    else a UUIDv5 of it (the same every time)."""
    try:
        return str(uuid.UUID(outbound_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"switchboard:outbound:{outbound_id}"))


def _location_action(location: Location) -> dict[str, Any]:
    view: dict[str, Any] = {
        "latLong": {"latitude": location.latitude, "longitude": location.longitude}
    }
    label = location.name or location.address
    if label:
        view["label"] = label
    return {
        "action": {
            "text": "View location",
            "postbackData": "view_location",
            "viewLocationAction": view,
        }
    }


def _location_text(location: Location) -> str:
    parts = [p for p in (location.name, location.address) if p]
    return ", ".join(parts) or f"{location.latitude}, {location.longitude}"


def agent_content(reply: Outbound) -> dict[str, Any]:
    """The ``contentMessage`` that delivers ``reply``; ``MediaRefused`` when RBM cannot.

    One message holds one of text, a file (``contentInfo.fileUrl``) or a rich card; text
    with a file travels as a standalone rich card (an image or a video, its description
    the text). Quick replies are suggested replies (postback: their text) when they fit
    RBM's 11 suggestions of 25 characters, else listed after the text; a location is a
    *View location* action (RBM has no location message) after a text naming it.
    """
    checked = check_attachments(reply.attachments, MEDIA_LIMITS)
    location = reply.location if isinstance(reply, ReplyRequested) else None
    options = quick_replies(reply)
    room = SUGGESTIONS_MAX - (location is not None)
    text = reply.text
    if options and (
        len(options) > room or any(len(option) > SUGGESTION_TEXT_MAX for option in options)
    ):
        text, options = with_numbered_options(text, options), ()
    suggestions: list[dict[str, Any]] = [
        {"reply": {"text": option, "postbackData": option}} for option in options
    ]
    if location is not None:
        suggestions.append(_location_action(location))
    content: dict[str, Any]
    if checked:
        attachment, rule = checked[0]
        file = {"fileUrl": attachment.url}
        if not text:
            content = {"contentInfo": file}
        elif rule.kind in CAPTIONED_KINDS and len(text) <= CARD_DESCRIPTION_MAX:
            content = {
                "richCard": {
                    "standaloneCard": {
                        "cardOrientation": "VERTICAL",
                        "cardContent": {
                            "description": text,
                            "media": {"height": "MEDIUM", "contentInfo": file},
                        },
                    }
                }
            }
        else:
            raise MediaRefused(
                f"RBM sends text with a file only as a rich card: an image or a video and"
                f" at most {CARD_DESCRIPTION_MAX} characters"
            )
    else:
        if not text and location is not None:
            text = _location_text(location)
        if not text:
            raise MediaRefused("an RBM message needs text, a file or a location")
        if len(text) > TEXT_MAX:
            raise MediaRefused(f"RBM text is at most {TEXT_MAX} characters")
        content = {"text": text}
    if suggestions:
        content["suggestions"] = suggestions
    return content


def rbm_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The ``phones.agentMessages.create`` call of ``reply``; its token comes in ``prepare``."""
    cfg = channels.rbm
    agent = find_endpoint(cfg.agents, reply.endpoint, "agent_id")
    if agent is None:
        raise EgressUnroutable(reply.endpoint)
    key = resolve_secret(cfg.service_account_env, environ)
    content = agent_content(reply)
    message_id = outbound_message_id(reply.id)
    phone = urllib.parse.quote(reply.customer_address, safe="+")
    query = urllib.parse.urlencode({"messageId": message_id, "agentId": agent.agent_id})
    request = ProviderRequest(
        provider="rbm",
        url=f"{cfg.api_base_url.rstrip('/')}/v1/phones/{phone}/agentMessages?{query}",
        json={"contentMessage": content},
        message_id=lambda _answer: message_id,
    )

    async def prepare(session: aiohttp.ClientSession) -> ProviderRequest:
        token = await ACCESS_TOKENS.token(session, key)
        return dataclasses.replace(
            request, headers={"Authorization": f"Bearer {token}"}, prepare=None
        )

    return dataclasses.replace(request, prepare=prepare)
