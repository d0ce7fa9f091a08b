"""Telegram Bot API: one webhook per bot (``POST /webhooks/telegram/{bot}``), and the
calls that send a reply (built here, performed by ``adapters.egress``).

Authenticity: ``setWebhook`` takes a ``secret_token`` (1-256 characters of ``A-Z``,
``a-z``, ``0-9``, ``_`` and ``-``); Telegram sends it back in
``X-Telegram-Bot-Api-Secret-Token`` on every update, and we compare it in constant time.
That is all Telegram offers: nothing is signed and there is no timestamp or nonce, so
nothing tells a replayed update from Telegram's own retry. Both carry the same
``update_id`` and ``message_id``, and event ids are derived from them (``{bot}:{chat}:
{message_id}``, ``{bot}:{update_id}``): a replay is the same event, which consumers
drop by its id.

Each POST is one ``Update`` with exactly one optional field set
(https://core.telegram.org/bots/api#update):
- ``message`` from a private chat (or a group, when the bot allows groups) becomes a
  ``MessageReceived``: its text or caption; every file it carries (the largest of a
  photo's sizes; document, audio, voice, video, video note, animation, sticker), each
  with its ``file_id`` (``Attachment.media_id``), caption, file name, MIME type and size;
  a ``location`` or ``venue`` (``Location``); a ``contact`` (``Contact``, with the phones,
  emails and organisation of its vCard); ``reply_to_message`` (``in_reply_to``).
  Telegram sets ``document`` beside ``animation`` for the same file: it is kept once.
- ``edited_message`` becomes a ``MessageChanged`` ``edited`` with the new text or
  caption. An edit without either (a live location moving) is not routed.
- ``message_reaction`` becomes one ``MessageChanged`` per reaction removed
  (``unreacted``) and per reaction added (``reacted``): ``old_reaction`` against
  ``new_reaction``. Telegram sends it only to a bot whose ``allowed_updates`` name
  ``message_reaction``.
- A business account's chats (Telegram Business: a Premium user connects the bot, which
  then reads and answers their private chats): ``business_message`` from the customer
  becomes a ``MessageReceived`` as above; one the business account wrote itself (from
  the Telegram app: ``from`` is not the chat's user) becomes a ``HumanReplied``, so a bot
  that owns the conversation hands it to people; one a bot sent on the account's behalf
  (``sender_business_bot``, our own replies among them) is not routed.
  ``edited_business_message`` from the customer becomes a ``MessageChanged`` ``edited``;
  ``deleted_business_messages`` one ``deleted`` per message id (the first
  ``DELETED_IDS_MAX``). Such a chat is independent of any chat with the bot itself, even
  with the same user: its endpoint is ``{bot}/{business_connection_id}``
  (``business_endpoint``), so its conversation, message ids and replies are its own,
  while the customer (``telegram:{chat id}``) is the same person either way. A reply
  names the connection in every call (``business_connection_id``). A business bot may
  answer only chats "that had incoming messages in the last 24 hours" (the Bot API's
  ``BusinessBotRights.can_reply``), so a business chat's message carries that reply
  window (``BUSINESS_REPLY_WINDOW``), as WhatsApp's do; the bot's own chats have none.
- Every other kind (channel posts, callback and inline queries, polls, membership,
  payments, reaction counts, business connections themselves …) is recognised and not
  routed. Telegram does not tell a bot that a user deleted a message in its own chats,
  and reports no delivery or read status to bots.

Files: a file's URL (``getFile``) holds the bot token, so it is never stored. An
attachment's ``url`` is our reference ``tg-file:{bot}/{file_id}``; its ``media_id`` is
Telegram's ``file_id`` (valid for this bot only). ``file_unique_id`` is not kept (no
field of ``Attachment`` means it).

Replies (``reply_calls``): text alone is one ``sendMessage``. Attachments go by URL,
one call each (``sendPhoto``, ``sendAnimation``, ``sendVideo``, ``sendVoice``,
``sendAudio``, ``sendDocument``), checked first against ``MEDIA_LIMITS``; the text
rides as the first one's caption when it fits Telegram's 1,024 characters, else it is
sent first as its own message. A location is a ``sendVenue`` (with a name and address)
or a ``sendLocation``, after the rest. ``sendMediaGroup`` is not used: an album cannot
carry a reply keyboard, and every call but the first may fail on its own anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from adapters.base import ChannelDeclaration, SignatureRejected, Unusable, constant_time_equal
from adapters.config import ChannelsConfig, TelegramBot
from adapters.media import MediaLimits, MediaRule, check_attachments
from adapters.normalize import (
    decode_json,
    find_endpoint,
    human_replied,
    message_changed,
    message_received,
    unknown_endpoint,
)
from adapters.provider_api import split_text
from schemas import (
    Attachment,
    Channel,
    Contact,
    InboundEvent,
    Location,
    MessageChange,
)
from schemas.limits import CHANNEL_TEXT_MAX

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
CAPTION_MAX = 1024
"""Characters of a caption (UTF-16 code units, as Telegram counts them)."""
MESSAGE_TEXT_MAX = CHANNEL_TEXT_MAX["telegram"]
"""Characters of a message's text (UTF-16 code units, as Telegram counts them)."""
VCARD_MAX = 4096
"""Characters of a contact's vCard read (Telegram sends at most 2,048 bytes)."""
BUSINESS_CONNECTION_MAX = 128
"""Characters of a ``business_connection_id`` (an opaque id; longer is set aside)."""
DELETED_IDS_MAX = 1000
"""Message ids of one ``deleted_business_messages`` routed as deletions; the rest are not."""
BUSINESS_REPLY_WINDOW = 24 * 3600.0
"""Seconds after the customer's message within which a business bot may answer the chat."""
_MB = 1024 * 1024

MEDIA_LIMITS = MediaLimits(
    provider="Telegram",
    # https://core.telegram.org/bots/api#sending-files: sent by URL, photos up to 5 MB,
    # other files up to 20 MB; sendDocument by URL takes only GIF, PDF and ZIP; sendAudio
    # MP3 or M4A; sendVoice OGG (OPUS), sent as a file above 1 MB; sendVideo MPEG4.
    rules=(
        MediaRule("photo", frozenset({"image/jpeg", "image/png"}), 5 * _MB),
        MediaRule("animation", frozenset({"image/gif"}), 20 * _MB),
        MediaRule("video", frozenset({"video/mp4"}), 20 * _MB),
        MediaRule("voice", frozenset({"audio/ogg"}), 20 * _MB),
        MediaRule(
            "audio", frozenset({"audio/mpeg", "audio/mp3", "audio/mp4", "audio/x-m4a"}), 20 * _MB
        ),
        MediaRule("document", frozenset({"application/pdf", "application/zip"}), 20 * _MB),
    ),
    max_count=10,
)
"""What a reply may carry: one Bot API call per attachment, at most 10 (the API's)."""

#: A media rule's kind → the method that sends it and the parameter holding the file.
SEND_METHODS = {
    "photo": ("sendPhoto", "photo"),
    "animation": ("sendAnimation", "animation"),
    "video": ("sendVideo", "video"),
    "voice": ("sendVoice", "voice"),
    "audio": ("sendAudio", "audio"),
    "document": ("sendDocument", "document"),
}

DECLARATION = ChannelDeclaration(
    provider="Telegram Bot API",
    channels=("telegram",),
    inbound="POST /webhooks/telegram/{bot}: messages, edits, reactions (Telegram does not"
    " tell bots of deletions); the chats of a business account connected to the bot:"
    " messages, edits, deletions, the account's own messages as a person's replies",
    outbound="Bot API sendMessage; sendPhoto, sendAnimation, sendVideo, sendVoice, sendAudio,"
    " sendDocument by URL; sendVenue / sendLocation; in a business account's chats, on its"
    " behalf (business_connection_id)",
    media_in="photo (largest size), document, audio, voice, video, video note, animation,"
    " sticker (file_id, caption, file name, MIME type, size); location, venue, contact;"
    " reply_to_message",
    media_out="up to 10 files by URL, one call each: JPEG/PNG photo ≤ 5 MB; GIF, MP4,"
    " OGG voice, MP3/M4A audio, PDF, ZIP ≤ 20 MB; the text as the first file's caption"
    " (≤ 1,024 characters, else sent first on its own); a location or venue",
    statuses="— (the Bot API reports no delivery status to bots: `sent` once it accepted the call)",
    read_receipts="— (bots are not told that a message was read)",
    quick_replies="one-time reply keyboard (`ReplyKeyboardMarkup`, one button a row)",
    signature="`X-Telegram-Bot-Api-Secret-Token` equal to setWebhook's `secret_token`"
    " (constant-time); the body is not signed",
    replay_protection="none from Telegram (no timestamp or nonce): event ids come from"
    " `message_id` / `update_id`, so a replayed update is the same event",
)
"""Telegram as the README's channel matrix shows it."""


class _S(msgspec.Struct, frozen=True, kw_only=True):
    pass


class User(_S, frozen=True, kw_only=True):
    id: int
    is_bot: bool = False


class Chat(_S, frozen=True, kw_only=True):
    id: int
    type: str = ""
    """The Bot API always sends it; the first example update of Telegram's webhook guide
    does not (``kind``)."""

    @property
    def kind(self) -> str:
        """``type``, else what the id says: a user's private chat has the user's id, a
        positive number, and groups and channels negative ones."""
        return self.type or ("private" if self.id > 0 else "group")


class PhotoSize(_S, frozen=True, kw_only=True):
    file_id: str
    width: int = 0
    height: int = 0
    file_size: int | None = None


class File(_S, frozen=True, kw_only=True):
    """Any of Document, Audio, Voice, Video, VideoNote, Animation, Sticker: the fields
    we keep (each is optional on some of them)."""

    file_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None
    is_animated: bool = False
    """Stickers: a Lottie animation (``.tgs``)."""
    is_video: bool = False
    """Stickers: a WEBM video."""


class TgLocation(_S, frozen=True, kw_only=True):
    latitude: float
    longitude: float


class Venue(_S, frozen=True, kw_only=True):
    location: TgLocation
    title: str | None = None
    address: str | None = None


class TgContact(_S, frozen=True, kw_only=True):
    phone_number: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    vcard: str | None = None


class Replied(_S, frozen=True, kw_only=True):
    """The message a message answers, in the same chat: only what names it."""

    message_id: int


class Message(_S, frozen=True, kw_only=True):
    message_id: int
    date: int
    chat: Chat
    from_: User | None = msgspec.field(default=None, name="from")
    edit_date: int | None = None
    text: str | None = None
    caption: str | None = None
    photo: list[PhotoSize] = []
    document: File | None = None
    video: File | None = None
    audio: File | None = None
    voice: File | None = None
    video_note: File | None = None
    animation: File | None = None
    sticker: File | None = None
    location: TgLocation | None = None
    venue: Venue | None = None
    contact: TgContact | None = None
    reply_to_message: Replied | None = None
    business_connection_id: str | None = None
    sender_business_bot: User | None = None
    """The bot that sent a business account's message on its behalf."""


class BusinessMessagesDeleted(_S, frozen=True, kw_only=True):
    business_connection_id: str
    chat: Chat
    message_ids: list[int] = []


class ReactionType(_S, frozen=True, kw_only=True):
    """``emoji`` (with ``emoji``), ``custom_emoji`` (with ``custom_emoji_id``) or ``paid``."""

    type: str
    emoji: str | None = None
    custom_emoji_id: str | None = None


class MessageReactionUpdated(_S, frozen=True, kw_only=True):
    chat: Chat
    message_id: int
    date: int
    user: User | None = None
    old_reaction: list[ReactionType] = []
    new_reaction: list[ReactionType] = []


class Update(_S, frozen=True, kw_only=True):
    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    message_reaction: MessageReactionUpdated | None = None
    business_message: Message | None = None
    edited_business_message: Message | None = None
    deleted_business_messages: BusinessMessagesDeleted | None = None


def verify_secret(expected: str, given: str | None) -> None:
    """Raise ``SignatureRejected`` (401 missing, 403 wrong) unless the secret token matches."""
    if not given:
        raise SignatureRejected(f"missing {SECRET_HEADER} header", status=401)
    if not constant_time_equal(expected, given):
        raise SignatureRejected("secret token does not match")


def find_bot(config: ChannelsConfig, name: str) -> TelegramBot:
    bot = find_endpoint(config.telegram.bots, name, "name")
    if bot is None:
        raise unknown_endpoint("this Telegram bot")
    return bot


def file_reference(bot: str, file_id: str) -> str:
    """Our reference to a file of ``bot``'s (its URL would hold the bot token)."""
    return f"tg-file:{bot}/{file_id}"


def business_endpoint(bot: str, connection: str) -> str:
    """The endpoint of a business account's chats, reached through ``bot``'s connection
    (bot names hold no ``/``: they are a path segment of the webhook's URL)."""
    return f"{bot}/{connection}"


def endpoint_parts(endpoint: str) -> tuple[str, str | None]:
    """The bot and the business connection (None: the bot's own chats) of an endpoint."""
    bot, _, connection = endpoint.partition("/")
    return bot, connection or None


def message_key(endpoint: str, chat: int | str, message_id: int | str) -> str:
    """A message's provider id: ``message_id`` is unique within one chat of one endpoint
    only (a bot's own chat, or a business account's chat with the same user)."""
    return f"{endpoint}:{chat}:{message_id}"


def _sticker_type(sticker: File) -> str:
    if sticker.is_animated:
        return "application/x-tgsticker"
    return "video/webm" if sticker.is_video else "image/webp"


#: Media types Telegram leaves out of a kind whose format is fixed.
_FIXED_TYPES = {"voice": "audio/ogg", "video_note": "video/mp4"}


def _attachments(bot: str, msg: Message) -> tuple[Attachment, ...]:
    items: list[Attachment] = []
    caption = msg.caption
    if msg.photo:
        # Telegram sends one PhotoSize per resolution; the agent wants the largest.
        best = max(msg.photo, key=lambda p: p.width * p.height)
        items.append(
            Attachment(
                url=file_reference(bot, best.file_id),
                content_type="image/jpeg",
                size_bytes=best.file_size,
                media_id=best.file_id,
                caption=caption,
            )
        )
    seen = {item.media_id for item in items}
    for kind in ("animation", "document", "video", "audio", "voice", "video_note", "sticker"):
        f: File | None = getattr(msg, kind)
        if f is None or f.file_id in seen:
            continue  # an animation's ``document`` twin
        seen.add(f.file_id)
        content_type = f.mime_type or _FIXED_TYPES.get(kind)
        if kind == "sticker":
            content_type = _sticker_type(f)
        items.append(
            Attachment(
                url=file_reference(bot, f.file_id),
                content_type=content_type,
                filename=f.file_name,
                size_bytes=f.file_size,
                media_id=f.file_id,
                caption=caption,
            )
        )
    return tuple(items)


def _location(msg: Message) -> Location | None:
    if msg.venue is not None:
        # Telegram also sets ``location`` beside a venue: the venue says more.
        place = msg.venue.location
        return Location(
            latitude=place.latitude,
            longitude=place.longitude,
            name=msg.venue.title,
            address=msg.venue.address,
        )
    if msg.location is not None:
        return Location(latitude=msg.location.latitude, longitude=msg.location.longitude)
    return None


def _vcard_values(vcard: str) -> dict[str, list[str]]:
    """A vCard's property values by upper-case name (``TEL``, ``EMAIL``, ``ORG``),
    unfolded (RFC 6350 §3.2), parameters dropped."""
    lines: list[str] = []
    for raw in vcard[:VCARD_MAX].splitlines():
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    values: dict[str, list[str]] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and value.strip():
            key = name.split(";", 1)[0].rsplit(".", 1)[-1].strip().upper()
            values.setdefault(key, []).append(value.strip())
    return values


def _contact(card: TgContact) -> Contact:
    vcard = _vcard_values(card.vcard) if card.vcard else {}
    phones = [card.phone_number] if card.phone_number else []
    phones += [p for p in vcard.get("TEL", []) if p not in phones]
    name = " ".join(n for n in (card.first_name, card.last_name) if n) or None
    org = vcard.get("ORG", [None])[0]
    return Contact(
        name=name,
        phones=tuple(phones),
        emails=tuple(dict.fromkeys(vcard.get("EMAIL", []))),
        organization=None if org is None else org.split(";", 1)[0] or None,
    )


def _routed(bot: TelegramBot, chat: Chat, sender: User | None) -> bool:
    """Whether the bot routes this chat's messages: private chats, groups if allowed,
    never another bot's."""
    if sender is not None and sender.is_bot:
        return False
    kind = chat.kind
    return kind == "private" or (bot.allow_groups and kind in ("group", "supergroup"))


def parse_update(
    body: bytes, bot: TelegramBot, config: ChannelsConfig, now: float
) -> list[InboundEvent]:
    """Normalize a verified Update into events; ``now`` is the time we received it."""
    update = decode_json(body, Update, "Telegram update")
    if update.message is not None:
        return _message(update.message, bot, config, now, bot.name)
    if update.edited_message is not None:
        return _edit(update.update_id, update.edited_message, bot, config, now, bot.name)
    if update.message_reaction is not None:
        return _reactions(update.update_id, update.message_reaction, bot, config, now)
    if update.business_message is not None:
        return _business_message(update.business_message, bot, config, now)
    if update.edited_business_message is not None:
        edited = update.edited_business_message
        if not _from_the_customer(edited):
            return []
        endpoint_key = _business_endpoint(bot, edited.business_connection_id)
        return _edit(update.update_id, edited, bot, config, now, endpoint_key)
    if update.deleted_business_messages is not None:
        return _deletions(update.update_id, update.deleted_business_messages, bot, config, now)
    return []


def _business_endpoint(bot: TelegramBot, connection: str | None) -> str:
    """The endpoint of a business chat's update (``Unusable`` without a usable
    connection: nothing could answer it)."""
    if not connection or len(connection) > BUSINESS_CONNECTION_MAX:
        raise Unusable(
            f"business_connection_id is not 1 to {BUSINESS_CONNECTION_MAX} characters",
            domain=bot.domain,
        )
    return business_endpoint(bot.name, connection)


def _from_the_customer(msg: Message) -> bool:
    """A business chat's message written by its customer: a private chat's own user,
    not the business account nor a bot on its behalf."""
    sender = msg.from_
    return (
        msg.sender_business_bot is None
        and msg.chat.kind == "private"
        and sender is not None
        and sender.id == msg.chat.id
    )


def _business_message(
    msg: Message, bot: TelegramBot, config: ChannelsConfig, now: float
) -> list[InboundEvent]:
    if msg.sender_business_bot is not None or msg.chat.kind != "private":
        return []  # a bot's message on the account's behalf (ours among them)
    endpoint_key = _business_endpoint(bot, msg.business_connection_id)
    if _from_the_customer(msg):
        return _message(msg, bot, config, now, endpoint_key, BUSINESS_REPLY_WINDOW)
    if not _has_content(msg):
        return []  # the account's service messages: pins, themes …
    chat = str(msg.chat.id)
    as_customers = message_received(
        config,
        bot,
        channel=Channel.TELEGRAM,
        endpoint_key=endpoint_key,
        customer_address=chat,
        provider_message_id=message_key(endpoint_key, chat, msg.message_id),
        received_at=now,
        sent_at=msg.date,
    )
    return [human_replied(as_customers)]


def _has_content(msg: Message) -> bool:
    files = (msg.document, msg.video, msg.audio, msg.voice, msg.video_note, msg.animation)
    places = (msg.sticker, msg.location, msg.venue, msg.contact)
    return bool(msg.text or msg.caption or msg.photo or any(files) or any(places))


def _message(
    msg: Message,
    bot: TelegramBot,
    config: ChannelsConfig,
    now: float,
    endpoint_key: str,
    reply_window: float | None = None,
) -> list[InboundEvent]:
    if not _routed(bot, msg.chat, msg.from_):
        return []
    attachments = _attachments(bot.name, msg)
    location = _location(msg)
    contacts = () if msg.contact is None else (_contact(msg.contact),)
    text = msg.text if msg.text is not None else (msg.caption or "")
    if not (text or attachments or location or contacts):
        return []  # service messages: joins, pins, titles …
    chat = str(msg.chat.id)
    replied = msg.reply_to_message
    in_reply_to = None if replied is None else message_key(endpoint_key, chat, replied.message_id)
    return [
        message_received(
            config,
            bot,
            channel=Channel.TELEGRAM,
            endpoint_key=endpoint_key,
            customer_address=chat,
            provider_message_id=message_key(endpoint_key, chat, msg.message_id),
            received_at=now,
            sent_at=msg.date,
            text=text,
            attachments=attachments,
            location=location,
            contacts=contacts,
            in_reply_to=in_reply_to,
            reply_window=reply_window,
        )
    ]


def _edit(
    update_id: int,
    msg: Message,
    bot: TelegramBot,
    config: ChannelsConfig,
    now: float,
    endpoint_key: str,
) -> list[InboundEvent]:
    text = msg.text if msg.text is not None else msg.caption
    if text is None or not _routed(bot, msg.chat, msg.from_):
        return []  # a live location moving, a channel, another bot
    chat = str(msg.chat.id)
    return [
        message_changed(
            config,
            bot,
            channel=Channel.TELEGRAM,
            endpoint_key=endpoint_key,
            customer_address=chat,
            provider_message_id=message_key(endpoint_key, chat, msg.message_id),
            change=MessageChange.EDITED,
            change_id=f"{bot.name}:{update_id}",
            received_at=now,
            sent_at=msg.edit_date or msg.date,
            text=text,
        )
    ]


def _deletions(
    update_id: int,
    deleted: BusinessMessagesDeleted,
    bot: TelegramBot,
    config: ChannelsConfig,
    now: float,
) -> list[InboundEvent]:
    """Messages deleted in a business chat, by either side (Telegram does not say which)."""
    if deleted.chat.kind != "private":
        return []
    endpoint_key = _business_endpoint(bot, deleted.business_connection_id)
    chat = str(deleted.chat.id)
    return [
        message_changed(
            config,
            bot,
            channel=Channel.TELEGRAM,
            endpoint_key=endpoint_key,
            customer_address=chat,
            provider_message_id=message_key(endpoint_key, chat, message_id),
            change=MessageChange.DELETED,
            change_id=f"{bot.name}:{update_id}:{number}",
            received_at=now,
        )
        for number, message_id in enumerate(deleted.message_ids[:DELETED_IDS_MAX])
    ]


def reaction_name(reaction: ReactionType) -> str:
    """An emoji, else ``custom_emoji:{id}``, else the reaction's type (``paid``)."""
    if reaction.type == "emoji" and reaction.emoji:
        return reaction.emoji
    if reaction.type == "custom_emoji" and reaction.custom_emoji_id:
        return f"custom_emoji:{reaction.custom_emoji_id}"
    return reaction.type


def _reactions(
    update_id: int,
    change: MessageReactionUpdated,
    bot: TelegramBot,
    config: ChannelsConfig,
    now: float,
) -> list[InboundEvent]:
    if not _routed(bot, change.chat, change.user):
        return []
    old = list(dict.fromkeys(reaction_name(r) for r in change.old_reaction))
    new = list(dict.fromkeys(reaction_name(r) for r in change.new_reaction))
    changes = [(MessageChange.UNREACTED, r) for r in old if r not in new] + [
        (MessageChange.REACTED, r) for r in new if r not in old
    ]
    chat = str(change.chat.id)
    return [
        message_changed(
            config,
            bot,
            channel=Channel.TELEGRAM,
            endpoint_key=bot.name,
            customer_address=chat,
            provider_message_id=message_key(bot.name, chat, change.message_id),
            change=kind,
            change_id=f"{bot.name}:{update_id}:{number}",
            received_at=now,
            sent_at=change.date,
            reaction=reaction,
        )
        for number, (kind, reaction) in enumerate(changes)
    ]


def caption_fits(text: str) -> bool:
    """Whether ``text`` fits a caption (Telegram counts UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2 <= CAPTION_MAX


def _file(attachment: Attachment, bot: str) -> str:
    """What names the file to Telegram: a file of this bot's by its ``file_id``, else
    the URL Telegram downloads."""
    ours = file_reference(bot, "")
    if attachment.url.startswith(ours) and len(attachment.url) > len(ours):
        return attachment.url[len(ours) :]
    return attachment.url


Call = tuple[str, dict[str, Any]]
"""A Bot API method and its JSON parameters."""


def reply_calls(
    bot: str,
    chat: str,
    text: str,
    attachments: Sequence[Attachment],
    location: Location | None,
    options: Sequence[str],
    *,
    business_connection: str | None = None,
) -> list[Call]:
    """The Bot API calls that send a reply, in order (the module docstring), each through
    the business connection when one is named; raises ``MediaRefused`` when an attachment
    breaks ``MEDIA_LIMITS``."""
    checked = check_attachments(attachments, MEDIA_LIMITS)
    calls: list[Call] = []
    caption = text if checked and text and caption_fits(text) else None
    if (text and caption is None) or not (checked or location):
        # A bot's answer may be longer than a message's text: the rest goes on in further
        # messages. Telegram counts UTF-16 code units, so a text holding characters beyond
        # the BMP (two units each) is cut at half as many characters.
        beyond_bmp = max(text, default="\0") > "\uffff"
        longest = MESSAGE_TEXT_MAX // 2 if beyond_bmp else MESSAGE_TEXT_MAX
        for part in split_text(text, longest):
            calls.append(("sendMessage", {"chat_id": chat, "text": part}))
    for number, (attachment, rule) in enumerate(checked):
        method, parameter = SEND_METHODS[rule.kind]
        params: dict[str, Any] = {"chat_id": chat, parameter: _file(attachment, bot)}
        if number == 0 and caption is not None:
            params["caption"] = caption
        calls.append((method, params))
    if location is not None:
        place: dict[str, Any] = {
            "chat_id": chat,
            "latitude": location.latitude,
            "longitude": location.longitude,
        }
        if location.name and location.address:
            venue = {**place, "title": location.name, "address": location.address}
            calls.append(("sendVenue", venue))
        else:
            calls.append(("sendLocation", place))
    if options:
        calls[0][1]["reply_markup"] = {
            "keyboard": [[{"text": option}] for option in options],
            "one_time_keyboard": True,
            "resize_keyboard": True,
        }
    if business_connection is not None:
        for _method, params in calls:
            params["business_connection_id"] = business_connection
    return calls
