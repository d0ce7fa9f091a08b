"""Vonage egress: replies and business-started messages through the Messages API.

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
import time
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.config import ChannelsConfig, VonageConfig, resolve_secret
from adapters.media import MediaLimits, MediaRule, check_attachments
from adapters.normalize import (
    find_endpoint,
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
)
from schemas import (
    Attachment,
    Channel,
    Location,
    ReplyRequested,
)

APPLICATION_JWT_TTL = 15 * 60
"""Seconds an application JWT of ours is valid (Vonage's SDKs use 15 minutes)."""
MAP_URL = "https://www.google.com/maps/search/?api=1&query={lat},{lon}"
"""Where a location goes as a link, on channels without a location message."""


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
_CAPTION_MAX: dict[Channel, int] = {
    Channel.WHATSAPP: 3000,
    Channel.MESSENGER: 0,
    Channel.VIBER: 1000,
    Channel.SMS: 3000,  # MMS
}
"""The longest caption Vonage's Messages API takes (its SDK's models); a longer text goes
as a text message with the media's link."""
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
        fits = rule.kind in _CAPTIONED[channel] and len(caption) <= _CAPTION_MAX[channel]
        if location is None and (not caption or fits):
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
