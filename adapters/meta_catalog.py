"""What the Meta channels take in a reply and what they declare: the attachments WhatsApp,
Messenger and Instagram accept (``adapters.meta_send`` checks a reply against them before
sending) and the three channels' rows of the README's channel matrix
(``adapters.catalog``)."""

from __future__ import annotations

from adapters.base import ChannelDeclaration
from adapters.media import MediaLimits, MediaRule
from schemas import Channel

MB = 1024 * 1024
WHATSAPP_MEDIA = MediaLimits(
    provider="WhatsApp",
    rules=(
        MediaRule("image", frozenset({"image/jpeg", "image/png"}), 5 * MB),
        MediaRule("sticker", frozenset({"image/webp"}), 500 * 1024),
        MediaRule(
            "audio",
            frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
            16 * MB,
        ),
        MediaRule("video", frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
        MediaRule(
            "document",
            frozenset(
                {
                    "text/plain",
                    "application/pdf",
                    "application/msword",
                    "application/vnd.ms-excel",
                    "application/vnd.ms-powerpoint",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                }
            ),
            100 * MB,
        ),
    ),
    max_count=10,
)
"""Cloud API supported media (one media item a message: a reply sends one message per
attachment, at most 10). A sticker may be 100 KB static, 500 KB animated."""
MESSENGER_MEDIA = MediaLimits(
    provider="Messenger",
    rules=(
        MediaRule("image", frozenset({"image/*"}), 25 * MB),
        MediaRule("video", frozenset({"video/*"}), 25 * MB),
        MediaRule("audio", frozenset({"audio/*"}), 25 * MB),
        MediaRule("file", frozenset({"application/*", "text/*"}), 25 * MB),
    ),
    max_count=10,
)
"""Send API attachments by URL: 25 MB each, one a message (at most 10 a reply)."""
INSTAGRAM_MEDIA = MediaLimits(
    provider="Instagram",
    rules=(
        MediaRule("image", frozenset({"image/png", "image/jpeg", "image/gif"}), 8 * MB),
        MediaRule(
            "video",
            frozenset(
                {"video/mp4", "video/ogg", "video/x-msvideo", "video/quicktime", "video/webm"}
            ),
            25 * MB,
        ),
        MediaRule(
            "audio",
            frozenset({"audio/aac", "audio/mp4", "audio/x-m4a", "audio/wav", "audio/x-wav"}),
            25 * MB,
        ),
        MediaRule("file", frozenset({"application/pdf"}), 25 * MB),
    ),
    max_count=10,
)
"""Instagram messaging media (aac/m4a/wav/mp4 audio, png/jpeg/gif images, mp4/ogg/avi/
mov/webm video, PDF files), one a message (at most 10 a reply)."""

_SIGNATURE = "X-Hub-Signature-256: HMAC-SHA256 (hex) of the raw body, keyed with the app secret"
_REPLAY = (
    "none from Meta: it signs no timestamp or nonce; a replayed or retried request yields"
    " the same event ids, which consumers drop"
)
_SEND_API_QUICK = "up to 13 quick replies (titles of at most 20 characters)"
DECLARATIONS = (
    ChannelDeclaration(
        provider="WhatsApp Cloud API (Meta)",
        channels=(Channel.WHATSAPP.value,),
        inbound="POST /webhooks/meta (GET: subscription handshake)",
        outbound="Cloud API POST /{phone-number-id}/messages",
        media_in=(
            "image, video, audio and voice notes, document, sticker (Meta's media id,"
            " SHA-256, MIME type, caption and file name kept), location, contacts; a completed"
            " Flow's fields and an order from the catalog as text"
        ),
        media_out=(
            "by link, one message each: image (JPEG, PNG ≤ 5 MB), video (MP4, 3GPP ≤ 16 MB),"
            " audio (AAC, AMR, MP3, MP4, OGG ≤ 16 MB), document (PDF, Office, text ≤ 100 MB,"
            " with file name), sticker (WebP ≤ 500 KB); the text as the first caption where"
            " allowed; a location"
        ),
        statuses="sent, delivered, read, played, failed (with the error code)",
        read_receipts="yes: read (played for a voice message)",
        quick_replies="up to 3 reply buttons (titles ≤ 20 characters), else numbered in the text",
        signature=_SIGNATURE,
        replay_protection=_REPLAY,
    ),
    ChannelDeclaration(
        provider="Messenger (Meta)",
        channels=(Channel.MESSENGER.value,),
        inbound="POST /webhooks/meta (GET: subscription handshake)",
        outbound="Send API POST /me/messages",
        media_in=(
            "image, video, audio, file, sticker, a shared link (`fallback`): the attachment"
            " URL as Meta sent it"
        ),
        media_out="image, video, audio, file by URL (≤ 25 MB), one message each after the text",
        statuses="delivered (message_deliveries naming the messages)",
        read_receipts=(
            "yes: message_reads' watermark marks every reply sent in the conversation"
            " before it read"
        ),
        quick_replies=_SEND_API_QUICK,
        signature=_SIGNATURE,
        replay_protection=_REPLAY,
    ),
    ChannelDeclaration(
        provider="Instagram (Meta)",
        channels=(Channel.INSTAGRAM.value,),
        inbound="POST /webhooks/meta (GET: subscription handshake)",
        outbound="Instagram API POST /{ig-user-id}/messages",
        media_in="image, video, audio, file, shares, story mentions, reels (URL as sent)",
        media_out=(
            "by URL, one message each after the text: image (PNG, JPEG, GIF ≤ 8 MB),"
            " video (MP4, OGG, AVI, MOV, WebM ≤ 25 MB), audio (AAC, M4A, WAV, MP4 ≤ 25 MB),"
            " PDF ≤ 25 MB"
        ),
        statuses="read (messaging_seen)",
        read_receipts="yes: messaging_seen names the message read",
        quick_replies=_SEND_API_QUICK,
        signature=(
            f"{_SIGNATURE} or, with meta.instagram_app_secret_env set, with the Instagram app"
            " secret"
        ),
        replay_protection=_REPLAY,
    ),
)
"""What the Meta adapters do, one declaration a channel (the README's channel matrix)."""
