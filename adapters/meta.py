"""Meta ingress: WhatsApp Cloud API, Messenger and Instagram, all through one app webhook.

Signature. Meta signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
the body, keyed with the app secret>`` (the legacy ``X-Hub-Signature``, SHA-1, is not
accepted). The signature covers the body only: Meta signs no timestamp and no nonce, so
nothing tells a replayed request from Meta's own retry of it. Both are accepted, and both
yield the same event ids (each derived from Meta's own ids), so consumers drop the copy.
Subscribing is a GET with ``hub.mode=subscribe``, ``hub.verify_token`` and
``hub.challenge``; we echo the challenge when the token matches.

One POST can carry several entries, each several changes (WhatsApp) or messaging items
(Messenger, Instagram), each several messages and statuses: all are normalized. Entries
for pages or numbers that are not configured are skipped (one app serves many pages, and
a 4xx would make Meta retry the whole batch); a request with no configured entry at all
gets 404. Likewise an item holding a value no event may carry is set aside (``Unusable``,
named by its place in the notification) while the other items of the request are
published.

What becomes of each documented shape (WhatsApp ``messages`` field; Messenger and
Instagram messaging items):

- a customer's message → ``MessageReceived`` with a 24 h reply window. Every provider
  reference is kept beside ours: a WhatsApp media item becomes an ``Attachment`` whose
  ``url`` is the Graph reference that resolves it (``media_reference``: it needs the
  number's token), with Meta's ``media_id``, ``sha256``, MIME type, caption, file name
  and, when the webhook carries one, Meta's own download URL as ``provider_url``; a
  Messenger/Instagram attachment keeps its ``payload.url`` as ``url`` (a sticker its
  ``sticker_id`` as ``media_id``). WhatsApp ``location`` and Messenger's legacy location
  attachment → ``location``; WhatsApp ``contacts`` → ``contacts``; an interactive or
  template button reply → its title as text; a completed WhatsApp Flow (``nfm_reply``) →
  its fields as text; a WhatsApp ``order`` (products from the business's catalog) → its
  items and words as text; WhatsApp ``context.id`` and Messenger/Instagram
  ``reply_to.mid`` → ``in_reply_to``;
- a reaction (WhatsApp ``reaction``, an empty or absent emoji removing it; Messenger/
  Instagram ``reaction`` with ``react``/``unreact``), an edit (WhatsApp ``edit``,
  Messenger/Instagram ``message_edit``) or a deletion (WhatsApp ``revoke``, Instagram
  ``is_deleted``) → ``MessageChanged`` (``adapters.normalize.message_changed``);
- a WhatsApp status, a Messenger ``delivery`` naming its ``mids``, an Instagram ``read``
  (``messaging_seen``: it names the message read, ``read.mid``) →
  ``DeliveryStatusChanged`` with Meta's status word as ``provider_status``. A WhatsApp
  status echoes the send's ``biz_opaque_callback_data``, our outbound id, as
  ``outbound_id``; a failed one carries the first error's ``code``;
- Messenger ``read`` carries only a ``watermark`` ("every message sent before this time
  was read"): it names no message, so it is a ``read_through`` receipt for the
  conversation (``normalize.read_through``), which the router applies to every reply sent
  in it up to then (a ``delivery`` with a watermark and no ``mids`` is not reported: a
  delivery without a read says less than the read that follows). Postbacks are
  messages (their title as text). An unsupported message (WhatsApp ``unsupported``,
  Messenger/Instagram ``is_unsupported``: a poll, a GIF, a first message WhatsApp could
  not make available; a Messenger/Instagram attachment without a URL, such as a
  ``fallback`` share without payload) is a message without content, so that a person
  answers; a ``fallback`` link's URL is its ``payload.url``, else its own ``url``; WhatsApp's
  unsupported edits, reactions, pins, keep-in-chat and poll votes are not routed. Echoes:
  below. Referrals, opt-ins, typing, account linking, handovers, ``system`` messages
  other than the two below, and account-level changes are recognised and not routed;
- a WhatsApp ``system`` message ``user_changed_number`` (``system.wa_id``, the new number,
  and ``system.user_id``, the new business-scoped user id) or ``user_changed_user_id``
  (``system.user_id``) → one ``IdentityChanged`` per new address
  (``adapters.meta_whatsapp``), for the customer of the address the message comes from
  (``from``, else ``system.previous_user_id``, else ``from_user_id``): the router links
  it to them, so that their messages from it reach the agent who served them. The
  message's ``body`` (their profile name and both numbers) is not read.

Echoes (``message.is_echo``: a message the page or Instagram account sent, to the
customer who is the echo's ``recipient``) tell who sent it by ``message.app_id``. With
``meta.app_id`` configured, an echo of another app, or of none (the Page inbox, Meta
Business Suite, the Instagram app), is a person answering outside Switchboard: it becomes
``HumanReplied`` with the customer identity and conversation key the customer's own
messages get (a bot that owns the conversation hands it to people). Echoes of our app's
own sends, and every echo while ``meta.app_id`` is unset, are dropped. WhatsApp's
``smb_message_echoes`` (a number also used in the WhatsApp Business app) are the
business's messages from the app or a linked device, never from the Cloud API: each one
to a user becomes ``HumanReplied`` likewise, without ``meta.app_id``; echoes of an edit,
a deletion or a reaction answer nothing and are dropped.

WhatsApp's ``user_preferences`` change (a user stopped or resumed marketing messages in
the app's "Offers and announcements" setting: ``category`` ``marketing_messages``,
``value`` ``stop`` or ``resume``) becomes a ``ConsentReported`` of scope ``marketing``
(``opt_out`` or ``opt_in``) for the user's number, else their business-scoped user id: it
stops marketing templates alone, while utility and authentication messages still go.
Another category or value is not routed. A send Meta failed with its error ``131050``
(the user stopped marketing messages) records the same ``opt_out`` besides its status, so
the stop is known without the ``user_preferences`` field. Opt-out keywords in a WhatsApp
message are recognised as on SMS (``adapters.consent``) and cover every business-started
message.

Replies go out through ``adapters.egress`` (``whatsapp_request``, ``messenger_request``,
``instagram_request``), their attachments checked first against the limits of
``adapters.meta_catalog``, which also declares the three channels for the README.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adapters.base import (
    BadRequest,
    Normalized,
    SignatureRejected,
    Unusable,
    constant_time_equal,
    hmac_hex,
)
from adapters.config import ChannelsConfig, MetaConfig
from adapters.meta_payloads import (
    Change,
    Messaging,
    MsgMessage,
    Notification,
    NotifiedObject,
    WaContactCard,
    WaEdited,
    WaMedia,
    WaMessage,
    WaValue,
)
from adapters.meta_whatsapp import (
    MARKETING_STOPPED,
    echo_recipient,
    flow_text,
    identity_changes,
    marketing_consent,
    marketing_stop_of,
    order_text,
)
from adapters.normalize import (
    META_REPLY_WINDOW_SECONDS,
    Endpoint,
    decode_item,
    decode_json,
    delivery_status_changed,
    e164,
    find_endpoint,
    human_replied,
    message_changed,
    message_received,
    read_through,
)
from schemas import (
    Attachment,
    Channel,
    Contact,
    DeliveryStatus,
    Location,
    MessageChange,
    MessageReceived,
)
from schemas.identity import is_whatsapp_user_id

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_RECEIVED = "EVENT_RECEIVED"


# --- verification -------------------------------------------------------------------------


def verify_signature(
    app_secret: str, body: bytes, header: str | None, instagram_secret: str | None = None
) -> None:
    """Raise ``SignatureRejected`` (401 missing, 403 wrong) unless Meta signed ``body`` with
    the app secret or, for an Instagram notification, with ``instagram_secret`` (the
    Instagram app secret of an app on the Instagram API with Instagram Login)."""
    if not header:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header", status=401)
    scheme, _, given = header.strip().partition("=")
    if scheme != "sha256" or not given:
        raise SignatureRejected(f"{SIGNATURE_HEADER} must be sha256=<hex>")
    given = given.lower()
    if constant_time_equal(hmac_hex(app_secret, body, "sha256"), given):
        return
    if (
        instagram_secret is not None
        and constant_time_equal(hmac_hex(instagram_secret, body, "sha256"), given)
        and _notified_object(body) == "instagram"
    ):
        return
    raise SignatureRejected()


def _notified_object(body: bytes) -> str | None:
    """The ``object`` a body signed with the Instagram app secret names: that secret
    vouches for Instagram notifications only."""
    try:
        return decode_json(body, NotifiedObject, "Meta notification").object
    except BadRequest:
        return None


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


# --- statuses -----------------------------------------------------------------------------

#: WhatsApp Cloud API message statuses (status webhook reference, and the On-Premises
#: API's two others) → ours.
WHATSAPP_STATUS_MAP: dict[str, DeliveryStatus | None] = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    # A voice message was played: it was read, and more.
    "played": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    # On-Premises only: the customer deleted the message after receiving it (its delivery
    # stands), and a catalog warning about the message's products: neither is a step of
    # its delivery.
    "deleted": None,
    "warning": None,
}
#: What Messenger's and Instagram's webhooks report about messages we sent: a
#: ``delivery`` naming its ``mids`` (Messenger), a ``read`` naming its ``mid``
#: (Instagram ``messaging_seen``). Messenger's ``read`` has only a watermark: a
#: ``read_through`` receipt for the conversation.
SEND_API_STATUS_MAP: dict[str, DeliveryStatus | None] = {
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
}

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


_WA_MEDIA = ("image", "video", "audio", "document", "sticker")
_WA_UNSUPPORTED_CHANGES = frozenset({"edit", "reaction", "pin", "keep_in_chat", "poll_update"})
"""Unsupported kinds that act on another message or the chat rather than say something
new: not routed. Any other unsupported message (a poll, a GIF, a message WhatsApp could not
make available, error 131060: often a customer's first message from an ad to a number also
on the WhatsApp Business app) is a person writing, routed without content so that someone
answers and asks for it again."""


def media_reference(config: ChannelsConfig, media_id: str) -> str:
    """Graph URL that resolves a WhatsApp media id to a download URL (needs the bearer token)."""
    meta = config.meta
    return f"{meta.graph_api_base_url.rstrip('/')}/{meta.graph_api_version}/{media_id}"


@dataclass(frozen=True, slots=True)
class _Content:
    """What a customer message carries for an agent."""

    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    contacts: tuple[Contact, ...] = ()


def _wa_attachment(
    config: ChannelsConfig, kind: str, media: WaMedia | None, domain: str
) -> Attachment:
    if media is None or not media.id:
        raise Unusable(f"WhatsApp {kind} message without media id", domain=domain)
    return Attachment(
        url=media_reference(config, media.id),
        content_type=media.mime_type,
        filename=media.filename,
        media_id=media.id,
        provider_url=media.url,
        sha256=media.sha256,
        caption=media.caption,
    )


def _place(
    latitude: float | None,
    longitude: float | None,
    name: str | None = None,
    address: str | None = None,
    url: str | None = None,
) -> Location | None:
    """A place when both coordinates are there (``normalize`` checks their range)."""
    if latitude is None or longitude is None:
        return None
    return Location(latitude=latitude, longitude=longitude, name=name, address=address, url=url)


def whatsapp_contact(card: WaContactCard) -> Contact:
    """A WhatsApp contacts message's card (the Cloud API's, and Vonage's, which passes
    WhatsApp's shape on): its phones, by number else by WhatsApp id."""
    name = card.name
    full = None
    if name is not None:
        full = name.formatted_name or " ".join(p for p in (name.first_name, name.last_name) if p)
    return Contact(
        name=full or None,
        phones=tuple(p.phone or p.wa_id or "" for p in card.phones if p.phone or p.wa_id),
        emails=tuple(e.email for e in card.emails if e.email),
        organization=card.org.company if card.org is not None else None,
    )


def _wa_content(config: ChannelsConfig, msg: WaMessage, domain: str) -> _Content | None:
    """What a WhatsApp message carries for an agent, or None when it is not for one."""
    if msg.type == "text":
        return _Content(text=msg.text.body if msg.text else "")
    if msg.type in _WA_MEDIA:
        media: WaMedia | None = getattr(msg, msg.type)
        attachment = _wa_attachment(config, msg.type, media, domain)
        return _Content(text=attachment.caption or "", attachments=(attachment,))
    if msg.type == "location" and msg.location is not None:
        loc = msg.location
        label = " ".join(p for p in (loc.name, loc.address) if p)
        place = _place(loc.latitude, loc.longitude, loc.name, loc.address, loc.url)
        where = f"{loc.latitude},{loc.longitude} " if place is not None else ""
        return _Content(text=f"[location] {where}{label}".strip(), location=place)
    if msg.type == "contacts" and msg.contacts:
        cards = tuple(whatsapp_contact(card) for card in msg.contacts)
        names = ", ".join(c.name for c in cards if c.name)
        return _Content(text=f"[contacts] {names}".strip(), contacts=cards)
    if msg.type == "button" and msg.button is not None:
        return _Content(text=msg.button.text)
    if msg.type == "interactive" and msg.interactive is not None:
        if msg.interactive.nfm_reply is not None:
            return _Content(text=flow_text(msg.interactive.nfm_reply))
        reply = msg.interactive.button_reply or msg.interactive.list_reply
        return _Content(text=reply.title if reply else "")
    if msg.type == "order" and msg.order is not None:
        return _Content(text=order_text(msg.order))
    if msg.type in ("unsupported", "unknown"):
        kind = msg.unsupported.type if msg.unsupported is not None else None
        return None if kind in _WA_UNSUPPORTED_CHANGES else _Content(text="")
    # reaction, edit, revoke: changes (``_wa_change``); system, request_welcome,
    # ephemeral: nothing for an agent.
    return None


@dataclass(frozen=True, slots=True)
class _Change:
    """A customer's change to a message: which message, what, and the change's own id."""

    target: str
    change: MessageChange
    change_id: str
    reaction: str | None = None
    text: str | None = None


def _edited_text(edited: WaEdited | None) -> str | None:
    if edited is None:
        return None
    if edited.text is not None:
        return edited.text.body
    media = edited.image or edited.video or edited.document
    return None if media is None else media.caption


def _wa_change(msg: WaMessage) -> _Change | None:
    """The change a WhatsApp reaction, edit or revoke makes, or None for other types."""
    if msg.type == "reaction" and msg.reaction is not None:
        emoji = msg.reaction.emoji or None
        change = MessageChange.REACTED if emoji else MessageChange.UNREACTED
        return _Change(msg.reaction.message_id, change, msg.id, reaction=emoji)
    if msg.type == "edit" and msg.edit is not None:
        edit = msg.edit
        return _Change(
            edit.original_message_id, MessageChange.EDITED, msg.id, text=_edited_text(edit.message)
        )
    if msg.type == "revoke" and msg.revoke is not None:
        return _Change(msg.revoke.original_message_id, MessageChange.DELETED, msg.id)
    return None


def _changed_message(change: _Change, domain: str) -> str:
    """The id of the message changed, or ``Unusable``: a change that names no message
    changes nothing anyone can find."""
    if not change.target:
        raise Unusable(f"{change.change.value} without the message it changes", domain=domain)
    return change.target


def _wa_sender(msg: WaMessage, domain: str) -> str:
    """The customer's address: their phone number (E.164) when WhatsApp gives it, else
    their business-scoped user id (a user with a username may write without their number:
    ``schemas.identity``). Replies go to whichever it is (``adapters.meta_send``)."""
    if msg.from_:
        return e164(msg.from_)
    if msg.from_user_id is not None and is_whatsapp_user_id(msg.from_user_id):
        return msg.from_user_id
    raise Unusable(
        "the message names neither its sender's number nor a business-scoped user id",
        domain=domain,
    )


def _wa_user_id_beside_number(msg: WaMessage) -> str | None:
    """The sender's business-scoped user id when the number is their address: the router
    links it to them, so that their messages without the number (once they adopt a
    username) reach the same customer. One that is not well formed is left out."""
    user_id = msg.from_user_id
    if msg.from_ and user_id is not None and is_whatsapp_user_id(user_id):
        return user_id
    return None


_WA_FIELDS = frozenset({"messages", "smb_message_echoes", "user_preferences"})
"""The WhatsApp webhook fields that carry customers' conversations and consent."""
_NOT_ANSWERS = frozenset({"edit", "revoke", "reaction"})
"""Echoes of a business's change to a message it sent, not an answer."""


def _whatsapp(
    config: ChannelsConfig, change: Change, now: float, out: Normalized, where: str
) -> bool:
    """Collect the events of one WhatsApp ``messages`` or ``smb_message_echoes`` change;
    False if its number is unknown."""
    value = decode_item(change.value, WaValue, "WhatsApp change")
    number_id = value.metadata.phone_number_id
    endpoint = find_endpoint(config.meta.whatsapp, number_id, "phone_number_id")
    if endpoint is None:
        return False
    for index, msg in enumerate(value.messages):
        place = f"{where}.messages[{index}]"
        sent_at = _seconds(msg.timestamp)
        if msg.type == "system" and msg.system is not None:
            with out.setting_aside(place):
                out.events.extend(
                    identity_changes(config, endpoint, number_id, msg, msg.system, now, sent_at)
                )
            continue
        edit = _wa_change(msg)
        if edit is not None:
            with out.setting_aside(place):
                out.events.append(
                    message_changed(
                        config,
                        endpoint,
                        channel=Channel.WHATSAPP,
                        endpoint_key=number_id,
                        customer_address=_wa_sender(msg, endpoint.domain),
                        provider_message_id=_changed_message(edit, endpoint.domain),
                        change=edit.change,
                        change_id=edit.change_id,
                        received_at=now,
                        sent_at=sent_at,
                        reaction=edit.reaction,
                        text=edit.text,
                    )
                )
            continue
        with out.setting_aside(place):
            content = _wa_content(config, msg, endpoint.domain)
            if content is None:
                continue
            out.events.append(
                message_received(
                    config,
                    endpoint,
                    channel=Channel.WHATSAPP,
                    endpoint_key=number_id,
                    customer_address=_wa_sender(msg, endpoint.domain),
                    provider_message_id=msg.id,
                    received_at=now,
                    sent_at=sent_at,
                    text=content.text,
                    attachments=content.attachments,
                    location=content.location,
                    contacts=content.contacts,
                    in_reply_to=msg.context.id if msg.context is not None else None,
                    reply_window=META_REPLY_WINDOW_SECONDS,
                    other_address=_wa_user_id_beside_number(msg),
                )
            )
    for index, echo in enumerate(value.message_echoes):
        if echo.type in _NOT_ANSWERS:
            continue
        with out.setting_aside(f"{where}.message_echoes[{index}]"):
            as_customers = message_received(
                config,
                endpoint,
                channel=Channel.WHATSAPP,
                endpoint_key=number_id,
                customer_address=echo_recipient(echo, endpoint.domain),
                provider_message_id=echo.id,
                received_at=now,
                sent_at=_seconds(echo.timestamp),
            )
            out.events.append(human_replied(as_customers))
    for index, preference in enumerate(value.user_preferences):
        with out.setting_aside(f"{where}.user_preferences[{index}]"):
            report = marketing_consent(
                config, endpoint, number_id, preference, now, _seconds(preference.timestamp)
            )
            if report is not None:
                out.events.append(report)
    for index, st in enumerate(value.statuses):
        mapped = WHATSAPP_STATUS_MAP.get(st.status)
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
        if st.status == "failed" and str(code) == MARKETING_STOPPED:
            with out.setting_aside(f"{where}.statuses[{index}].errors[0]"):
                out.events.append(
                    marketing_stop_of(config, endpoint, number_id, st, now, _seconds(st.timestamp))
                )
    return True


def sent_by_a_person(meta: MetaConfig, echo: MsgMessage) -> bool:
    """An echo of a message no app of ours sent: another app's, or one with no app (Meta's
    inbox, the Instagram app). False whenever ``meta.app_id`` is unset."""
    if meta.app_id is None:
        return False
    return echo.app_id is None or str(echo.app_id) != meta.app_id


def _send_api_content(msg: MsgMessage) -> _Content:
    """A Messenger/Instagram message's text, attachments (their URLs as Meta sent them)
    and place (a legacy location attachment)."""
    attachments: list[Attachment] = []
    location: Location | None = None
    for item in msg.attachments:
        payload = item.payload
        coordinates = payload.coordinates if payload is not None else None
        if item.type == "location" and coordinates is not None:
            location = location or _place(
                coordinates.lat, coordinates.long, item.title, None, item.url
            )
            continue
        url = (payload.url if payload is not None else None) or item.url
        if not url:
            continue
        sticker = payload.sticker_id if payload is not None else None
        attachments.append(
            Attachment(
                url=url,
                content_type=item.type,
                media_id=None if sticker is None else str(sticker),
            )
        )
    return _Content(text=msg.text or "", attachments=tuple(attachments), location=location)


def _messaging_change(item: Messaging) -> _Change | None:
    """The change a reaction, an edit or a deletion of the customer's makes."""
    at = item.timestamp
    if item.reaction is not None:
        r = item.reaction
        change = MessageChange.UNREACTED if r.action == "unreact" else MessageChange.REACTED
        return _Change(
            r.mid, change, f"{r.mid}/reaction/{at}", reaction=r.emoji or r.reaction or None
        )
    if item.message_edit is not None:
        e = item.message_edit
        if e.num_edit is not None and str(e.num_edit) == "0":
            return None  # the message as first sent: not an edit
        revision = e.num_edit if e.num_edit is not None else at
        return _Change(e.mid, MessageChange.EDITED, f"{e.mid}/edit/{revision}", text=e.text)
    if item.message is not None and item.message.is_deleted and not item.message.is_echo:
        mid = item.message.mid
        return _Change(mid, MessageChange.DELETED, mid)
    return None


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
    customer = item.sender.id
    if customer == endpoint_key and (item.message is None or not item.message.is_echo):
        return  # our own account's doing, not a customer's
    status = functools.partial(
        delivery_status_changed, endpoint, channel=channel, received_at=now, sent_at=at
    )
    edit = _messaging_change(item)
    if edit is not None:
        with out.setting_aside(where):
            out.events.append(
                message_changed(
                    config,
                    endpoint,
                    channel=channel,
                    endpoint_key=endpoint_key,
                    customer_address=customer,
                    provider_message_id=_changed_message(edit, endpoint.domain),
                    change=edit.change,
                    change_id=edit.change_id,
                    received_at=now,
                    sent_at=at,
                    reaction=edit.reaction,
                    text=edit.text,
                )
            )
    elif item.message is not None:
        msg = item.message
        if msg.is_echo:
            # Sent by the page or account to the customer, the echo's recipient.
            to = item.recipient.id
            if sent_by_a_person(config.meta, msg) and to != endpoint_key:
                with out.setting_aside(where):
                    echo = of_customer(customer_address=to, provider_message_id=msg.mid)
                    out.events.append(human_replied(echo))
            return
        content = _send_api_content(msg)
        # Something shared without a link (a fallback without payload, a booking) is
        # still a person writing: routed without content, as an unsupported message is.
        if not (msg.is_unsupported or msg.attachments or content.text or content.location):
            return
        with out.setting_aside(where):
            out.events.append(
                of_customer(
                    customer_address=customer,
                    provider_message_id=msg.mid,
                    text=content.text,
                    attachments=content.attachments,
                    location=content.location,
                    in_reply_to=msg.reply_to.mid if msg.reply_to is not None else None,
                )
            )
    elif item.postback is not None:
        pb = item.postback
        mid = pb.mid or f"postback:{customer}:{item.timestamp}"
        with out.setting_aside(where):
            if not pb.mid and item.timestamp is None:
                # Its id would be the customer's alone, and every later one a duplicate.
                raise Unusable("postback without mid or timestamp", domain=endpoint.domain)
            out.events.append(
                of_customer(customer_address=customer, provider_message_id=mid, text=pb.title)
            )
    elif item.delivery is not None:
        for index, mid in enumerate(item.delivery.mids):
            with out.setting_aside(f"{where}.delivery.mids[{index}]"):
                out.events.append(
                    status(
                        provider_message_id=mid,
                        provider_status="delivered",
                        status=DeliveryStatus.DELIVERED,
                    )
                )
    elif item.read is not None and item.read.mid:
        # Instagram names the message read.
        with out.setting_aside(f"{where}.read"):
            out.events.append(
                status(
                    provider_message_id=item.read.mid,
                    provider_status="read",
                    status=DeliveryStatus.READ,
                )
            )
    elif item.read is not None and item.read.watermark is not None:
        # Messenger names none: everything sent in the conversation before the watermark.
        watermark = _seconds(item.read.watermark, millis=True)
        with out.setting_aside(f"{where}.read"):
            receipt = (
                None
                if watermark is None
                else read_through(
                    config,
                    endpoint,
                    channel=channel,
                    endpoint_key=endpoint_key,
                    customer_address=customer,
                    watermark=watermark,
                    received_at=now,
                )
            )
            if receipt is not None:
                out.events.append(receipt)
    # optin, referral, typing, account linking, handover …: not routed.


def parse_webhook(body: bytes, config: ChannelsConfig, now: float) -> Normalized:
    """Normalize a verified Meta notification into events (possibly none) and the items
    set aside."""
    note = decode_json(body, Notification, "Meta notification")
    out = Normalized([])
    known = False
    for e, entry in enumerate(note.entry):
        if note.object == "whatsapp_business_account":
            for c, change in enumerate(entry.changes):
                if change.field in _WA_FIELDS:
                    where = f"entry[{e}].changes[{c}]"
                    with out.setting_aside(where):
                        known |= _whatsapp(config, change, now, out, where)
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
        for i, raw in enumerate(entry.messaging):
            where = f"entry[{e}].messaging[{i}]"
            with out.setting_aside(where):
                item = decode_item(raw, Messaging, "messaging item")
                if item.sender.id:  # else a plugin's user_ref: nobody to route
                    _messaging(config, channel, endpoint, entry.id, item, now, out, where)
    if note.entry and not known and not out.events and not out.set_aside:
        if note.object == "whatsapp_business_account" and not any(
            c.field in _WA_FIELDS for e in note.entry for c in e.changes
        ):
            return out  # account-level changes (templates, quality): nothing to route
        raise BadRequest("no entry of this notification is configured in [channels]", status=404)
    return out
