"""Telegram Bot API ingress: one webhook per bot, ``POST /webhooks/telegram/{bot}``.

``setWebhook`` takes a ``secret_token``; Telegram sends it back in
``X-Telegram-Bot-Api-Secret-Token`` on every update, which is all the authentication
Telegram offers. Each POST is one ``Update`` with exactly one optional field set.

Only ``message`` from a private chat (and from groups when the bot allows them) becomes
a ``MessageReceived``; edits, channel posts, callback queries, membership changes and
other update kinds are recognised and not routed. Files carry no URL without the bot
token, so attachments reference them as ``tg-file:{bot}/{file_id}`` for ``getFile``.
"""

from __future__ import annotations

import msgspec

from adapters.base import SignatureRejected, constant_time_equal
from adapters.config import ChannelsConfig, TelegramBot
from adapters.normalize import decode_json, find_endpoint, message_received, unknown_endpoint
from schemas import Attachment, Channel, InboundEvent

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)


class _S(msgspec.Struct, frozen=True, kw_only=True):
    pass


class User(_S, frozen=True, kw_only=True):
    id: int
    is_bot: bool = False


class Chat(_S, frozen=True, kw_only=True):
    id: int
    type: str


class PhotoSize(_S, frozen=True, kw_only=True):
    file_id: str
    width: int = 0
    height: int = 0
    file_size: int | None = None


class File(_S, frozen=True, kw_only=True):
    file_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class Message(_S, frozen=True, kw_only=True):
    message_id: int
    date: int
    chat: Chat
    from_: User | None = msgspec.field(default=None, name="from")
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


class Update(_S, frozen=True, kw_only=True):
    update_id: int
    message: Message | None = None


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
    return f"tg-file:{bot}/{file_id}"


def _attachments(bot: str, msg: Message) -> tuple[Attachment, ...]:
    items: list[Attachment] = []
    if msg.photo:
        # Telegram sends one PhotoSize per resolution; the agent wants the largest.
        best = max(msg.photo, key=lambda p: p.width * p.height)
        items.append(
            Attachment(
                url=file_reference(bot, best.file_id),
                content_type="image/jpeg",
                size_bytes=best.file_size,
            )
        )
    for kind in ("document", "video", "audio", "voice", "video_note", "animation", "sticker"):
        f: File | None = getattr(msg, kind)
        if f is not None:
            items.append(
                Attachment(
                    url=file_reference(bot, f.file_id),
                    content_type=f.mime_type,
                    filename=f.file_name,
                    size_bytes=f.file_size,
                )
            )
    return tuple(items)


def parse_update(
    body: bytes, bot: TelegramBot, config: ChannelsConfig, now: float
) -> list[InboundEvent]:
    """Normalize a verified Update into events (at most one message); ``now`` is the
    time we received it."""
    update = decode_json(body, Update, "Telegram update")
    msg = update.message
    if msg is None:
        return []
    if msg.chat.type != "private" and not (
        bot.allow_groups and msg.chat.type in ("group", "supergroup")
    ):
        return []
    if msg.from_ is not None and msg.from_.is_bot:
        return []
    attachments = _attachments(bot.name, msg)
    text = msg.text if msg.text is not None else (msg.caption or "")
    if not text and not attachments:
        return []  # service messages: joins, pins, titles …
    chat = str(msg.chat.id)
    return [
        message_received(
            config,
            bot,
            channel=Channel.TELEGRAM,
            endpoint_key=bot.name,
            customer_address=chat,
            # message_id is unique within one bot's chat only.
            provider_message_id=f"{bot.name}:{chat}:{msg.message_id}",
            received_at=now,
            sent_at=msg.date,
            text=text,
            attachments=attachments,
        )
    ]
