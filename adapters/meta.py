"""Meta ingress: WhatsApp Cloud API, Messenger and Instagram, all through one app webhook.

Meta signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 with the app
secret>``. Subscribing is a GET with ``hub.mode=subscribe``, ``hub.verify_token`` and
``hub.challenge``; we echo the challenge when the token matches.

One POST can carry several entries, each several changes (WhatsApp) or messaging items
(Messenger, Instagram), each several messages and statuses: all are normalized.
Customer messages become ``MessageReceived`` with a 24 h reply window; statuses and
deliveries become ``DeliveryStatusChanged`` (a WhatsApp status echoes the send's
``biz_opaque_callback_data``, our outbound id, as ``outbound_id``); reads, reactions,
typing and the like are recognised and not routed. Entries for pages or numbers that are
not configured are skipped (one app serves many pages, and a 4xx would make Meta retry
the whole batch); a request with no configured entry at all gets 404. Likewise an item
holding a value no event may carry is set aside (``Unusable``, named by its place in the
notification) while the other items of the request are published.

Echoes (``message.is_echo``: a message the page or Instagram account sent, to the
customer who is the echo's ``recipient``) tell who sent it by ``message.app_id``. With
``meta.app_id`` configured, an echo of another app, or of none (the Page inbox, Meta
Business Suite, the Instagram app), is a person answering outside Switchboard: it becomes
``HumanReplied`` with the customer identity and conversation key the customer's own
messages get (a bot that owns the conversation hands it to people). Echoes of our app's
own sends, and every echo while ``meta.app_id`` is unset, are dropped.

WhatsApp's ``user_preferences`` change (a user stopped or resumed marketing messages in
the app's "Offers and announcements" setting) is not normalized yet: it carries no
message, and no inbound event carries a consent on its own. Until one does, such a
notification is answered 200 and dropped like other account-level changes; opt-out
keywords in a WhatsApp message are recognised as on SMS (``adapters.consent``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import msgspec

from adapters.base import (
    BadRequest,
    Normalized,
    SignatureRejected,
    constant_time_equal,
    hmac_hex,
    inbound_event_id,
)
from adapters.config import ChannelsConfig, MetaConfig
from adapters.normalize import (
    META_REPLY_WINDOW_SECONDS,
    Endpoint,
    decode_json,
    delivery_status_changed,
    e164,
    find_endpoint,
    message_received,
)
from schemas import Attachment, Channel, DeliveryStatus, HumanReplied, MessageReceived

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_RECEIVED = "EVENT_RECEIVED"


# --- payload shapes (only the fields we read; unknown fields are ignored) -----------------


class _S(msgspec.Struct, frozen=True, kw_only=True):
    pass


class WaText(_S, frozen=True, kw_only=True):
    body: str = ""


class WaMedia(_S, frozen=True, kw_only=True):
    id: str = ""
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None


class WaLocation(_S, frozen=True, kw_only=True):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None


class WaButton(_S, frozen=True, kw_only=True):
    text: str = ""


class WaReply(_S, frozen=True, kw_only=True):
    id: str = ""
    title: str = ""


class WaInteractive(_S, frozen=True, kw_only=True):
    type: str = ""
    button_reply: WaReply | None = None
    list_reply: WaReply | None = None


class WaMessage(_S, frozen=True, kw_only=True):
    from_: str = msgspec.field(name="from")
    id: str
    timestamp: str
    type: str = "text"
    text: WaText | None = None
    image: WaMedia | None = None
    video: WaMedia | None = None
    audio: WaMedia | None = None
    document: WaMedia | None = None
    sticker: WaMedia | None = None
    location: WaLocation | None = None
    button: WaButton | None = None
    interactive: WaInteractive | None = None


class WaError(_S, frozen=True, kw_only=True):
    code: int | str | None = None


class WaStatus(_S, frozen=True, kw_only=True):
    id: str
    status: str
    timestamp: str
    recipient_id: str | None = None
    errors: list[WaError] = []
    biz_opaque_callback_data: str | None = None
    """What the send request carried in the same field: egress puts our outbound id there."""


class WaMetadata(_S, frozen=True, kw_only=True):
    phone_number_id: str
    display_phone_number: str | None = None


class WaValue(_S, frozen=True, kw_only=True):
    messaging_product: str = "whatsapp"
    metadata: WaMetadata
    messages: list[WaMessage] = []
    statuses: list[WaStatus] = []


class Change(_S, frozen=True, kw_only=True):
    field: str
    value: msgspec.Raw = msgspec.Raw(b"null")


class Party(_S, frozen=True, kw_only=True):
    id: str


class AttachmentPayload(_S, frozen=True, kw_only=True):
    url: str | None = None


class MsgAttachment(_S, frozen=True, kw_only=True):
    type: str = "file"
    payload: AttachmentPayload | None = None


class MsgMessage(_S, frozen=True, kw_only=True):
    mid: str
    text: str | None = None
    is_echo: bool = False
    app_id: int | str | None = None
    """The app that sent an echoed message (a number; none: Meta's own inbox or apps)."""
    is_deleted: bool = False
    is_unsupported: bool = False
    attachments: list[MsgAttachment] = []


class MsgPostback(_S, frozen=True, kw_only=True):
    title: str = ""
    payload: str | None = None
    mid: str | None = None


class MsgDelivery(_S, frozen=True, kw_only=True):
    mids: list[str] = []
    watermark: int | None = None


class Messaging(_S, frozen=True, kw_only=True):
    sender: Party
    recipient: Party
    timestamp: int | None = None
    message: MsgMessage | None = None
    postback: MsgPostback | None = None
    delivery: MsgDelivery | None = None


class Entry(_S, frozen=True, kw_only=True):
    id: str
    time: int | None = None
    changes: list[Change] = []
    messaging: list[Messaging] = []


class Notification(_S, frozen=True, kw_only=True):
    object: str
    entry: list[Entry]


# --- verification -------------------------------------------------------------------------


def verify_signature(app_secret: str, body: bytes, header: str | None) -> None:
    """Raise ``SignatureRejected`` (401 missing, 403 wrong) unless Meta signed ``body``."""
    if not header:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header", status=401)
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not given:
        raise SignatureRejected(f"{SIGNATURE_HEADER} must be sha256=<hex>")
    if not constant_time_equal(hmac_hex(app_secret, body, "sha256"), given.lower()):
        raise SignatureRejected()


def verify_subscription(query: Mapping[str, str], verify_token: str) -> str:
    """The ``hub.challenge`` to echo when the subscribe handshake carries our verify token."""
    if query.get("hub.mode") != "subscribe":
        raise BadRequest("hub.mode must be subscribe")
    challenge = query.get("hub.challenge")
    if not challenge:
        raise BadRequest("hub.challenge missing")
    if not constant_time_equal(verify_token, query.get("hub.verify_token", "")):
        raise SignatureRejected("verify token does not match")
    return challenge


# --- normalization ------------------------------------------------------------------------


def _seconds(raw: str | int | None, *, millis: bool = False) -> float | None:
    """A Meta timestamp (seconds as a string, or milliseconds) as seconds; None when it is
    not a number (``normalize.plausible_time`` then takes our receive time)."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None
    return value / 1000 if millis else value


_WA_STATUS = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}
#: WhatsApp message types that carry something for an agent. Reactions, system
#: notices (number changed), unsupported and ephemeral types are not routed.
_WA_MEDIA = ("image", "video", "audio", "document", "sticker")


def media_reference(config: ChannelsConfig, media_id: str) -> str:
    """Graph URL that resolves a WhatsApp media id to a download URL (needs the bearer token)."""
    meta = config.meta
    return f"{meta.graph_api_base_url.rstrip('/')}/{meta.graph_api_version}/{media_id}"


def _wa_content(
    config: ChannelsConfig, msg: WaMessage
) -> tuple[str, tuple[Attachment, ...]] | None:
    """Text and attachments of a WhatsApp message, or None when it is not for an agent."""
    if msg.type == "text":
        return (msg.text.body if msg.text else ""), ()
    if msg.type in _WA_MEDIA:
        media: WaMedia | None = getattr(msg, msg.type)
        if media is None or not media.id:
            raise BadRequest(f"WhatsApp {msg.type} message without media id")
        att = Attachment(
            url=media_reference(config, media.id),
            content_type=media.mime_type,
            filename=media.filename,
        )
        return media.caption or "", (att,)
    if msg.type == "location" and msg.location is not None:
        loc = msg.location
        label = " ".join(p for p in (loc.name, loc.address) if p)
        return f"[location] {loc.latitude},{loc.longitude} {label}".strip(), ()
    if msg.type == "button" and msg.button is not None:
        return msg.button.text, ()
    if msg.type == "interactive" and msg.interactive is not None:
        reply = msg.interactive.button_reply or msg.interactive.list_reply
        return (reply.title if reply else ""), ()
    return None


def _whatsapp(
    config: ChannelsConfig, change: Change, now: float, out: Normalized, where: str
) -> bool:
    """Collect the events of one WhatsApp ``messages`` change; False if its number is unknown."""
    value = decode_json(change.value, WaValue, "WhatsApp change")
    number_id = value.metadata.phone_number_id
    endpoint = find_endpoint(config.meta.whatsapp, number_id, "phone_number_id")
    if endpoint is None:
        return False
    for index, msg in enumerate(value.messages):
        content = _wa_content(config, msg)
        if content is None:
            continue
        text, attachments = content
        with out.setting_aside(f"{where}.messages[{index}]"):
            out.events.append(
                message_received(
                    config,
                    endpoint,
                    channel=Channel.WHATSAPP,
                    endpoint_key=number_id,
                    customer_address=e164(msg.from_),
                    provider_message_id=msg.id,
                    received_at=now,
                    sent_at=_seconds(msg.timestamp),
                    text=text,
                    attachments=attachments,
                    reply_window=META_REPLY_WINDOW_SECONDS,
                )
            )
    for index, st in enumerate(value.statuses):
        mapped = _WA_STATUS.get(st.status)
        if mapped is None:
            continue
        code = st.errors[0].code if st.errors else None
        with out.setting_aside(f"{where}.statuses[{index}]"):
            out.events.append(
                delivery_status_changed(
                    endpoint,
                    channel=Channel.WHATSAPP,
                    provider_message_id=st.id,
                    provider_status=st.status,
                    status=mapped,
                    received_at=now,
                    sent_at=_seconds(st.timestamp),
                    error_code=None if code is None else str(code),
                    outbound_id=st.biz_opaque_callback_data,
                )
            )
    return True


def sent_by_a_person(meta: MetaConfig, echo: MsgMessage) -> bool:
    """An echo of a message no app of ours sent: another app's, or one with no app (Meta's
    inbox, the Instagram app). False whenever ``meta.app_id`` is unset."""
    if meta.app_id is None:
        return False
    return echo.app_id is None or str(echo.app_id) != meta.app_id


def human_replied(as_customers: MessageReceived) -> HumanReplied:
    """A person's answer, from the echo read as if the customer had sent it
    (``as_customers``): the customer's address, id and conversation key are exactly those
    of the customer's own messages. Its id is the echo's own (``<mid>/echo``)."""
    m = as_customers
    return HumanReplied(
        id=inbound_event_id(m.domain, m.channel.value, f"{m.provider_message_id}/echo"),
        domain=m.domain,
        occurred_at=m.occurred_at,
        channel=m.channel,
        endpoint=m.endpoint,
        customer_address=m.customer_address,
        customer_id=m.customer_id,
        conversation_key=m.conversation_key,
        provider_message_id=m.provider_message_id,
    )


def _messaging(
    config: ChannelsConfig,
    channel: Channel,
    endpoint: Endpoint,
    endpoint_key: str,
    item: Messaging,
    now: float,
    out: Normalized,
    where: str,
) -> None:
    """Collect the events of one Messenger/Instagram messaging item (often none)."""
    at = _seconds(item.timestamp, millis=True)
    # How a message of the customer ``customer_address`` is read: its own messages, and
    # (for its identity) a person's echo to it.
    of_customer: Callable[..., MessageReceived] = functools.partial(
        message_received,
        config,
        endpoint,
        channel=channel,
        endpoint_key=endpoint_key,
        received_at=now,
        sent_at=at,
        reply_window=META_REPLY_WINDOW_SECONDS,
    )
    message = functools.partial(of_customer, customer_address=item.sender.id)
    if item.message is not None:
        msg = item.message
        if msg.is_echo:
            # Sent by the page or account to the customer, the echo's recipient.
            customer = item.recipient.id
            if sent_by_a_person(config.meta, msg) and customer != endpoint_key:
                with out.setting_aside(where):
                    echo = of_customer(customer_address=customer, provider_message_id=msg.mid)
                    out.events.append(human_replied(echo))
            return
        if msg.is_deleted or item.sender.id == endpoint_key:
            return
        attachments = tuple(
            Attachment(url=a.payload.url, content_type=a.type)
            for a in msg.attachments
            if a.payload is not None and a.payload.url
        )
        if not msg.text and not attachments:
            return
        with out.setting_aside(where):
            out.events.append(
                message(provider_message_id=msg.mid, text=msg.text or "", attachments=attachments)
            )
    elif item.postback is not None:
        pb = item.postback
        mid = pb.mid or f"postback:{item.sender.id}:{item.timestamp}"
        with out.setting_aside(where):
            out.events.append(message(provider_message_id=mid, text=pb.title))
    elif item.delivery is not None:
        for index, mid in enumerate(item.delivery.mids):
            with out.setting_aside(f"{where}.delivery.mids[{index}]"):
                out.events.append(
                    delivery_status_changed(
                        endpoint,
                        channel=channel,
                        provider_message_id=mid,
                        provider_status="delivered",
                        status=DeliveryStatus.DELIVERED,
                        received_at=now,
                        sent_at=at,
                    )
                )
    # read, reaction, optin, referral, typing, account linking …: not routed.


def parse_webhook(body: bytes, config: ChannelsConfig, now: float) -> Normalized:
    """Normalize a verified Meta notification into events (possibly none) and the items
    set aside."""
    note = decode_json(body, Notification, "Meta notification")
    out = Normalized([])
    known = False
    for e, entry in enumerate(note.entry):
        if note.object == "whatsapp_business_account":
            for c, change in enumerate(entry.changes):
                if change.field == "messages":
                    known |= _whatsapp(config, change, now, out, f"entry[{e}].changes[{c}]")
            continue
        endpoint: Endpoint | None
        if note.object == "page":
            channel = Channel.MESSENGER
            endpoint = find_endpoint(config.meta.messenger, entry.id, "page_id")
        elif note.object == "instagram":
            channel = Channel.INSTAGRAM
            endpoint = find_endpoint(config.meta.instagram, entry.id, "account_id")
        else:
            raise BadRequest(f"unsupported object {note.object!r}")
        if endpoint is None:
            continue
        known = True
        for i, item in enumerate(entry.messaging):
            _messaging(
                config, channel, endpoint, entry.id, item, now, out, f"entry[{e}].messaging[{i}]"
            )
    if note.entry and not known and not out.events:
        if note.object == "whatsapp_business_account" and not any(
            c.field == "messages" for e in note.entry for c in e.changes
        ):
            return out  # account-level changes (templates, quality): nothing to route
        raise BadRequest("no entry of this notification is configured in [channels]", status=404)
    return out
