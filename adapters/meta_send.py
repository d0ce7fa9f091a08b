"""Meta egress: WhatsApp Cloud API replies and templates, and Send API messages for
Messenger and Instagram (``adapters.egress`` picks the builder by channel; the rules are
in ``adapters.egress``'s module docstring)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from adapters import meta_catalog
from adapters.config import ChannelsConfig, resolve_secret
from adapters.media import MediaLimits, MediaRule, check_attachments
from adapters.normalize import find_endpoint
from adapters.provider_api import (
    WHATSAPP_BUTTON_BODY_MAX,
    WHATSAPP_BUTTON_TITLE_MAX,
    WHATSAPP_BUTTONS_MAX,
    EgressUnroutable,
    Outbound,
    ProviderRequest,
    answer_text,
    location_text,
    quick_replies,
    split_text,
    with_numbered_options,
)
from schemas import (
    Attachment,
    Location,
    NotificationRequested,
    ReplyRequested,
    TemplateUse,
)
from schemas.identity import is_whatsapp_user_id
from schemas.limits import CHANNEL_TEXT_MAX


def _whatsapp_buttons_fit(body: str, options: Sequence[str]) -> bool:
    """Reply buttons can carry ``options`` with ``body``: WhatsApp's limits."""
    return (
        0 < len(options) <= WHATSAPP_BUTTONS_MAX
        and all(len(option) <= WHATSAPP_BUTTON_TITLE_MAX for option in options)
        and 0 < len(body) <= WHATSAPP_BUTTON_BODY_MAX
    )


WHATSAPP_CAPTION_MAX = 1024
"""Characters of a WhatsApp media caption."""
WHATSAPP_CAPTIONED = frozenset({"image", "video", "document"})
"""WhatsApp media kinds that take a caption (audio and stickers do not)."""
WHATSAPP_HEADERS = WHATSAPP_CAPTIONED
"""Media kinds an interactive message's header can carry."""


def _whatsapp_media(attachment: Attachment, rule: MediaRule, caption: str = "") -> dict[str, Any]:
    """A Cloud API media message sending ``attachment`` by link."""
    media: dict[str, Any] = {"link": attachment.url}
    if caption:
        media["caption"] = caption
    if rule.kind == "document" and attachment.filename:
        media["filename"] = attachment.filename
    return {"type": rule.kind, rule.kind: media}


def _whatsapp_location(place: Location) -> dict[str, Any]:
    location: dict[str, Any] = {"latitude": place.latitude, "longitude": place.longitude}
    if place.name:
        location["name"] = place.name
    if place.address:
        location["address"] = place.address
    return {"type": "location", "location": location}


def _whatsapp_text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": text, "preview_url": False}}


def _whatsapp_template(template: TemplateUse) -> dict[str, Any]:
    content: dict[str, Any] = {
        "name": template.provider_template,
        # WhatsApp spells languages with an underscore (en_US); ours are BCP 47 (en-US).
        "language": {"code": template.language.replace("-", "_")},
    }
    if template.parameters:
        content["components"] = [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": p} for p in template.parameters],
            }
        ]
    return {"type": "template", "template": content}


def _place(reply: Outbound) -> Location | None:
    return reply.location if isinstance(reply, ReplyRequested) else None


def _whatsapp_content(reply: Outbound) -> list[dict[str, Any]]:
    """The Cloud API messages that deliver ``reply``, in order (one media item a message):

    - a template alone (the free-form window is closed);
    - with quick replies that fit reply buttons: the media (all but the first one a header
      can carry) and the place first, then the ``interactive`` message whose header is that
      media and whose body is the text (with no text, the attachments' links: a body is
      required);
    - otherwise: the text (answers numbered after it) as the caption of the first media
      when its kind takes one and it fits, else as a text message first; then each media;
      then the place.
    ``MediaRefused`` when an attachment breaks WhatsApp's limits.
    """
    if reply.template is not None:
        return [_whatsapp_template(reply.template)]
    media = check_attachments(reply.attachments, meta_catalog.WHATSAPP_MEDIA)
    place = _place(reply)
    tail = [_whatsapp_location(place)] if place is not None else []
    options = quick_replies(reply)
    body = reply.text or "\n".join(a.url for a in reply.attachments)
    if _whatsapp_buttons_fit(body, options):
        header = media[0] if media and media[0][1].kind in WHATSAPP_HEADERS else None
        interactive: dict[str, Any] = {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": o, "title": o}} for o in options]
            },
        }
        if header is not None:
            media = media[1:]
            interactive["header"] = _whatsapp_media(*header)
        before = [_whatsapp_media(a, rule) for a, rule in media]
        return [*before, *tail, {"type": "interactive", "interactive": interactive}]
    text = with_numbered_options(reply.text, options)
    parts: list[dict[str, Any]] = []
    if (
        media
        and text
        and media[0][1].kind in WHATSAPP_CAPTIONED
        and len(text) <= WHATSAPP_CAPTION_MAX
    ):
        (first, rule), media = media[0], media[1:]
        parts.append(_whatsapp_media(first, rule, caption=text))
    elif text or not (media or tail):
        # Longer than a text message (a bot's answer): the rest in further messages.
        parts += [_whatsapp_text(part) for part in split_text(text, CHANNEL_TEXT_MAX["whatsapp"])]
    parts += [_whatsapp_media(a, rule) for a, rule in media]
    return [*parts, *tail]


Call = Callable[[Mapping[str, Any], tuple[ProviderRequest, ...]], ProviderRequest]
"""One provider call of a message body, with the calls that follow it."""


def _chained(call: Call, bodies: Sequence[Mapping[str, Any]]) -> ProviderRequest:
    """The call of the first body, with the calls of the others as its ``then`` parts."""
    first, *rest = bodies
    return call(first, tuple(call(body, ()) for body in rest))


def whatsapp_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The Cloud API ``messages`` calls that deliver ``reply`` (one a message, each
    carrying our outbound id in ``biz_opaque_callback_data``)."""
    cfg = channels.meta
    number = find_endpoint(cfg.whatsapp, reply.endpoint, "phone_number_id")
    if number is None:
        raise EgressUnroutable(reply.endpoint)
    url = f"{cfg.graph_api_base_url.rstrip('/')}/{cfg.graph_api_version}/{number.phone_number_id}/messages"
    headers = {"Authorization": f"Bearer {resolve_secret(number.access_token_env, environ)}"}
    address = reply.customer_address
    envelope = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        # A user known only by a business-scoped user id gets it as ``recipient``
        # (``schemas.identity``); ``to`` is for phone numbers.
        **({"recipient": address} if is_whatsapp_user_id(address) else {"to": address.lstrip("+")}),
    }

    def call(content: Mapping[str, Any], then: tuple[ProviderRequest, ...]) -> ProviderRequest:
        return ProviderRequest(
            provider="whatsapp",
            url=url,
            headers=headers,
            json={**envelope, **content, "biz_opaque_callback_data": reply.id},
            message_id=lambda body: answer_text(body, "messages", 0, "id"),
            then=then,
        )

    return _chained(call, _whatsapp_content(reply))


def _messaging_type(reply: Outbound) -> dict[str, str]:
    """Meta's ``messaging_type``: a tagged message (outside the 24 h window), else an
    answer (``RESPONSE``) or a message the business starts (``UPDATE``)."""
    if reply.message_tag is not None:
        return {"messaging_type": "MESSAGE_TAG", "tag": reply.message_tag.value}
    if isinstance(reply, NotificationRequested):
        return {"messaging_type": "UPDATE"}
    return {"messaging_type": "RESPONSE"}


def _send_api_messages(reply: Outbound, limits: MediaLimits) -> list[dict[str, Any]]:
    """The Send API messages that deliver ``reply``, in order: the text (a place written
    after it: no location message exists), then each attachment by URL (a message carries
    either text or one attachment); the quick replies ride on the last one.
    ``MediaRefused`` when an attachment breaks the channel's limits."""
    media = check_attachments(reply.attachments, limits)
    place = _place(reply)
    text = "\n".join(p for p in (reply.text, location_text(place) if place else "") if p)
    longest = CHANNEL_TEXT_MAX[reply.channel.value]
    messages: list[dict[str, Any]] = (
        [{"text": part} for part in split_text(text, longest)] if text or not media else []
    )
    messages += [
        {"attachment": {"type": rule.kind, "payload": {"url": a.url, "is_reusable": False}}}
        for a, rule in media
    ]
    options = quick_replies(reply)
    if options:
        # The payload comes back with the tap; the title (the message's text) is what
        # routing reads, so the payload is the title too.
        messages[-1]["quick_replies"] = [
            {"content_type": "text", "title": o, "payload": o} for o in options
        ]
    return messages


def _send_api_request(
    reply: Outbound,
    base: str,
    version: str,
    node: str,
    token: str,
    provider: str,
    limits: MediaLimits,
) -> ProviderRequest:
    """The Send API calls that deliver ``reply`` from ``node`` (``me``: the page of the
    token; an Instagram account id), one a message."""

    def call(message: Mapping[str, Any], then: tuple[ProviderRequest, ...]) -> ProviderRequest:
        return ProviderRequest(
            provider=provider,
            url=f"{base.rstrip('/')}/{version}/{node}/messages",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "recipient": {"id": reply.customer_address},
                **_messaging_type(reply),
                "message": message,
            },
            message_id=lambda body: answer_text(body, "message_id"),
            then=then,
        )

    return _chained(call, _send_api_messages(reply, limits))


def messenger_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    cfg = channels.meta
    page = find_endpoint(cfg.messenger, reply.endpoint, "page_id")
    if page is None:
        raise EgressUnroutable(reply.endpoint)
    token = resolve_secret(page.access_token_env, environ)
    return _send_api_request(
        reply,
        cfg.graph_api_base_url,
        cfg.graph_api_version,
        "me",
        token,
        "messenger",
        meta_catalog.MESSENGER_MEDIA,
    )


def instagram_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    cfg = channels.meta
    account = find_endpoint(cfg.instagram, reply.endpoint, "account_id")
    if account is None:
        raise EgressUnroutable(reply.endpoint)
    token = resolve_secret(account.access_token_env, environ)
    return _send_api_request(
        reply,
        cfg.instagram_api_base_url,
        cfg.graph_api_version,
        account.account_id,
        token,
        "instagram",
        meta_catalog.INSTAGRAM_MEDIA,
    )
