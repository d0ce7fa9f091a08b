"""X (Twitter) direct messages: Account Activity API webhooks in, X API v2 DMs out.

The webhook (``/webhooks/x``: register it with ``POST /2/webhooks``, then subscribe each
account of ``[[x.accounts]]`` to it):

- CRC. X calls ``GET /webhooks/x?crc_token=…`` when the webhook is registered, every hour,
  and on ``PUT /2/webhooks/:id``, and stops delivering when the answer is wrong or late
  (3 seconds). The answer is ``{"response_token": "sha256=" + base64(HMAC-SHA256(key=the
  app's consumer secret, message=crc_token))}``. A missing or repeated token, one longer
  than ``CRC_TOKEN_MAX`` or holding a control character, is refused with 400.
- Signature. Every event is a ``POST /webhooks/x`` carrying ``x-twitter-webhooks-signature:
  sha256=<base64 HMAC-SHA256(key=consumer secret, message=the raw body)>``, checked before
  the body is parsed (401 missing, 403 wrong).
- Events. One POST concerns one subscribed account, ``for_user_id``:
  * ``direct_message_events`` (``type`` ``message_create``) from a customer become
    ``MessageReceived``: the customer's address is the sender's user id, the text as X
    delivers it (links as ``t.co``), at most one media attachment (``media_url_https``, or
    the best ``mp4`` variant of a video or GIF, with X's media id; X serves DM media only to
    requests signed with OAuth 1.0a by a participant's access token), the DM's id as the
    provider message id. A tap on a quick-reply option arrives as that option's label in
    ``text``; its ``metadata`` is not kept (we send no options, see below).
  * X also delivers the DMs our account sends (``sender_id`` is ``for_user_id``). Those of
    our own app are echoes of our sends and are dropped. With ``x.app_id`` set, one whose
    ``source_app_id`` is another app's, or missing (the X app on a phone, x.com), is a person
    answering outside Switchboard: it becomes ``HumanReplied`` for the customer (the
    recipient) and the conversation the customer's own DMs name, as Meta's echoes do
    (``adapters.meta``). Without ``x.app_id`` every DM our account sent is dropped.
  * ``direct_message_mark_read_events`` by the customer (X sends them when the customer
    has read receipts on): ``DeliveryStatusChanged`` ``read`` of ``last_read_event_id``.
    X means every earlier DM is read as well; the event names only the last one, which is
    the one reported. Read marks by our own account are dropped.
  * ``direct_message_indicate_typing_events`` are dropped: typing says nothing about any
    message's delivery, no inbound event carries it, and one arrives every few keystrokes.
  * Everything else the Account Activity API delivers (posts, likes, follows, …) is
    answered 200 and dropped.
  DM or read events for an account not in ``[[x.accounts]]``, or without ``for_user_id``,
  are set aside to the dead-letter topic, like every signed request we cannot read; within
  a request, one event that cannot be read is set aside and the others go on.
- Replays. X signs the body alone: no timestamp, no nonce, so a captured request verifies
  forever and cannot be told from X's own redelivery (X also documents that an event may
  arrive twice, to be deduplicated by its id). Event ids are made from X's DM ids
  (``inbound_event_id``), so a replayed or repeated DM is the same event downstream, where
  the router drops it; a read mark again reports the same status again (same id).
- X marks the Account Activity API as being deprecated for its X Activity API, whose
  ``dm.received`` / ``dm.sent`` / ``dm.read`` events carry the same ``direct_message_events``
  payload inside another envelope (``data.event_type``, ``data.payload``); that envelope is
  not read here yet.

Sending (``x_request``, registered in ``adapters.egress``):

- ``POST {api_base_url}/2/dm_conversations/with/{the customer's user id}/messages`` with
  JSON ``{"text": …, "attachments": [{"media_id": …}]}``; X answers 201 with
  ``data.dm_event_id``, the provider message id a read mark names later.
- Authenticated with OAuth 1.0a user context (X's "Authorizing a request" and "Creating a
  signature"): the ``Authorization: OAuth …`` header carries the app's consumer key, the
  account's access token, a nonce, a timestamp and an HMAC-SHA1 signature keyed by
  ``percent(consumer secret)&percent(token secret)`` over ``METHOD&percent(base URL)&
  percent(sorted, percent-encoded parameters)``: the URL's query and the ``oauth_*``
  values (a JSON or multipart body is not signed).
- Attachments: one per DM (image, GIF or video: ``MEDIA_LIMITS``, checked before anything
  is sent). X takes no media URL: ``prepare`` downloads the attachment
  (``adapters.provider_api.fetch_attachment_to``: public addresses only unless
  ``[channels] media_fetch_allow_private``; refused as soon as it passes its kind's
  limit), uploads it with the chunked media upload
  (``POST /2/media/upload/initialize`` with ``media_category`` ``dm_image``, ``dm_gif`` or
  ``dm_video``, ``…/{id}/append`` in segments, ``…/{id}/finalize``, then
  ``GET /2/media/upload?command=STATUS`` while X processes a video or GIF), and sends the
  DM with that media id (usable for 24 hours, by the account that uploaded it only).
- Quick replies: as numbered text after the message. X API v2 DMs have no quick-reply
  options; v1.1 ``direct_messages/events/new`` had ``quick_reply`` options, but it is no
  longer in X's documentation and not something to build on.
- Locations: X DMs cannot carry one; such a reply fails with the reason.
- Idempotency: X takes no idempotency key for DMs. The OAuth header, and so its nonce, is
  made once per send and kept across retries; X documents the nonce as how it recognises a
  request submitted more than once, but not what it does with one, so a retry after a lost
  answer may still duplicate a DM.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import math
import tempfile
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from aiohttp import web
from multidict import MultiMapping

from adapters.base import (
    BadRequest,
    ChannelDeclaration,
    Normalized,
    SignatureRejected,
    Unusable,
    constant_time_equal,
    read_bounded,
)
from adapters.config import ChannelsConfig, XAccount, XConfig, resolve_secret
from adapters.media import MediaLimits, MediaRefused, MediaRule, check_attachments, media_type
from adapters.normalize import (
    decode_json,
    delivery_status_changed,
    find_endpoint,
    human_replied,
    message_received,
    unknown_endpoint,
)
from adapters.oauth1 import (
    OAuthCredentials,
    authorization_header,
)
from adapters.provider_api import (
    EgressUnroutable,
    Outbound,
    PrepareFailed,
    ProviderRequest,
    decoded_answer,
    fetch_attachment_to,
    quick_replies,
    with_numbered_options,
)
from adapters.webhook_serving import Handler, WebhookContext, parse_signed, serve
from schemas import Attachment, Channel, DeliveryStatus, ReplyRequested

PROVIDER = "x"
SIGNATURE_HEADER = "x-twitter-webhooks-signature"
CRC_TOKEN_MAX = 1024
"""Characters of a ``crc_token`` we answer (X's are a few dozen)."""
WEBHOOK_PATH = "/webhooks/x"

#: X's names of what becomes of a DM we sent → ours. The Account Activity API reports
#: one thing on a sent DM: the customer read it (``direct_message_mark_read_events``).
#: Sending itself is X's 201 (egress records ``sent``); X reports no delivery.
STATUS_MAP: dict[str, DeliveryStatus | None] = {
    "read": DeliveryStatus.READ,
}
DOCUMENTED_STATUSES = ("read",)
"""The statuses X documents for DMs (Account Activity API data objects: read receipts)."""

MB = 1024 * 1024
#: X's media upload limits (docs.x.com/x-api/media/introduction, "Media types & size
#: restrictions"; best practices: JPG, PNG, GIF, WEBP images) and one attachment per DM
#: (docs.x.com/x-api/direct-messages/manage/integrate, "Media attachments"). Video: MP4
#: and MOV, the containers the upload's ``media_type`` takes for playable video.
MEDIA_LIMITS = MediaLimits(
    provider="X",
    rules=(
        MediaRule("gif", frozenset({"image/gif"}), 15 * MB),
        MediaRule("image", frozenset({"image/jpeg", "image/png", "image/webp"}), 5 * MB),
        MediaRule("video", frozenset({"video/mp4", "video/quicktime"}), 512 * MB),
    ),
    max_count=1,
)
MEDIA_CATEGORIES = {"gif": "dm_gif", "image": "dm_image", "video": "dm_video"}
"""The upload's ``media_category`` of each kind: DM media must be uploaded as such."""
SEGMENT_BYTES = 4 * MB
"""Bytes of one APPEND segment (X's segments are at most 5 MB; 1,000 segments at most)."""
SPOOL_MEMORY_BYTES = 8 * MB
"""An attachment being uploaded stays in memory up to this, and goes to a temporary file
beyond (a video may be 512 MB)."""
DOWNLOAD_TIMEOUT_SECONDS = 120.0
"""Seconds to download one attachment."""
UPLOAD_TIMEOUT_SECONDS = 60.0
"""Seconds of one media upload call."""
PROCESSING_MAX_SECONDS = 120.0
"""How long X may process an uploaded video or GIF before the send fails."""
PROCESSING_CHECK_MAX_SECONDS = 10.0
"""Longest wait between two processing checks, whatever ``check_after_secs`` says."""
PROCESSING_CHECKS_MAX = 60
"""Processing checks of one upload (bounded even when X says to check at once)."""
ANSWER_MAX_BYTES = 64 * 1024
"""Bytes of an X answer we read."""
REASON_MAX = 300
"""Characters of a failure's reason (X's own words included)."""

DECLARATION = ChannelDeclaration(
    provider="X (Twitter) DMs",
    channels=(Channel.X.value,),
    inbound=(
        "Account Activity API: GET /webhooks/x (CRC challenge), POST /webhooks/x (DMs, read marks)"
    ),
    outbound=(
        "X API v2 POST /2/dm_conversations/with/{participant_id}/messages (OAuth 1.0a user"
        " context, HMAC-SHA1); data.dm_event_id is the provider id"
    ),
    media_in=(
        "one media per DM: photo (media_url_https), video or GIF (its best MP4 variant), with"
        " X's media id; fetching it needs an OAuth 1.0a-signed request"
    ),
    media_out=(
        "1 attachment, uploaded first (chunked media upload, dm_image/dm_gif/dm_video):"
        " JPEG/PNG/WebP image ≤ 5 MB, GIF ≤ 15 MB, MP4/MOV video ≤ 512 MB; no location"
    ),
    statuses="read (direct_message_mark_read_events); X reports no delivery",
    read_receipts="yes: the customer's read mark, naming the last DM read (when they share read receipts)",
    quick_replies="listed after the text, numbered (X API v2 DMs have no quick-reply options)",
    signature=(
        "x-twitter-webhooks-signature: sha256= base64 HMAC-SHA256 of the body with the"
        " consumer secret; CRC answered with the same HMAC of crc_token"
    ),
    replay_protection=(
        "none signed (no timestamp or nonce): a replayed or repeated DM has the same event"
        " id, which the router drops; a repeated read mark reports the same status again"
    ),
)


# --- payload shapes (only the fields we read; unknown fields are ignored) -----------------


class _S(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Target(_S, frozen=True, kw_only=True):
    recipient_id: str


class Variant(_S, frozen=True, kw_only=True):
    content_type: str | None = None
    url: str | None = None
    bitrate: int | None = None


class VideoInfo(_S, frozen=True, kw_only=True):
    variants: list[Variant] = []


class Media(_S, frozen=True, kw_only=True):
    id_str: str | None = None
    media_url_https: str | None = None
    type: str | None = None
    """``photo``, ``video`` or ``animated_gif``."""
    video_info: VideoInfo | None = None


class MessageAttachment(_S, frozen=True, kw_only=True):
    type: str = "media"
    media: Media | None = None


class MessageData(_S, frozen=True, kw_only=True):
    text: str = ""
    attachment: MessageAttachment | None = None


class MessageCreate(_S, frozen=True, kw_only=True):
    target: Target
    sender_id: str
    source_app_id: str | None = None
    """The app that sent the DM (absent for X's own apps)."""
    message_data: MessageData = MessageData()


class DmEvent(_S, frozen=True, kw_only=True):
    type: str
    id: str
    created_timestamp: str | int | None = None
    """Milliseconds since the epoch, as a string."""
    message_create: MessageCreate | None = None


class MarkRead(_S, frozen=True, kw_only=True):
    created_timestamp: str | int | None = None
    sender_id: str
    """Who read: the customer, or our own account reading the customer's DMs."""
    target: Target
    last_read_event_id: str


class Activity(_S, frozen=True, kw_only=True):
    for_user_id: str | None = None
    direct_message_events: list[msgspec.Raw] = []
    direct_message_mark_read_events: list[msgspec.Raw] = []
    # direct_message_indicate_typing_events, users, apps and the other activities are not
    # read (see the module docstring), and ``users`` holds names: left alone.


# --- verification -------------------------------------------------------------------------


def crc_response_token(consumer_secret: str, crc_token: str) -> str:
    """The ``response_token`` that answers X's challenge ``crc_token``."""
    mac = hmac.new(consumer_secret.encode(), crc_token.encode(), hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(mac).decode()


def crc_token(query: MultiMapping[str]) -> str:
    """The challenge of a CRC request's query, or ``BadRequest`` (400)."""
    tokens = query.getall("crc_token", [])
    if not tokens or not tokens[0]:
        raise BadRequest("crc_token missing")
    if len(tokens) > 1:
        raise BadRequest("crc_token given more than once")
    token = tokens[0]
    if len(token) > CRC_TOKEN_MAX:
        raise BadRequest(f"crc_token longer than {CRC_TOKEN_MAX} characters")
    if not token.isprintable():
        raise BadRequest("crc_token holds a control character")
    return token


def body_signature(consumer_secret: str, body: bytes) -> str:
    """The ``x-twitter-webhooks-signature`` X sends with ``body``."""
    mac = hmac.new(consumer_secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(mac).decode()


def verify_signature(consumer_secret: str, body: bytes, header: str | None) -> None:
    """Raise ``SignatureRejected`` (401 missing, 403 wrong) unless X signed ``body``."""
    if not header:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header", status=401)
    if not header.strip().startswith("sha256="):
        raise SignatureRejected(f"{SIGNATURE_HEADER} must be sha256=<base64>")
    if not constant_time_equal(body_signature(consumer_secret, body), header.strip()):
        raise SignatureRejected()


# --- normalization ------------------------------------------------------------------------


def _seconds(millis: str | int | None) -> float | None:
    """An X ``created_timestamp`` (milliseconds) as seconds; None when it is not a number
    (``normalize.plausible_time`` then takes our receive time)."""
    if millis is None:
        return None
    try:
        value = float(millis)
    except (ValueError, OverflowError):
        return None
    return value / 1000 if math.isfinite(value) else None


def _attachments(data: MessageData) -> tuple[Attachment, ...]:
    """The DM's media as an attachment (a DM carries at most one)."""
    attachment = data.attachment
    if attachment is None or attachment.type != "media" or attachment.media is None:
        return ()
    media = attachment.media
    if media.type in ("video", "animated_gif") and media.video_info is not None:
        mp4 = [v for v in media.video_info.variants if v.url and v.content_type == "video/mp4"]
        if mp4:
            best = max(mp4, key=lambda v: v.bitrate or 0)
            url = best.url or ""
            return (Attachment(url=url, content_type="video/mp4", media_id=media.id_str),)
    if not media.media_url_https:
        return ()
    url = media.media_url_https
    guessed = media_type(Attachment(url=url))  # X's photo URLs end in .jpg or .png
    return (Attachment(url=url, content_type=guessed, media_id=media.id_str),)


def sent_by_a_person(config: XConfig, create: MessageCreate) -> bool:
    """A DM of our account that no app of ours sent: another app's, or one without an app
    (X's own apps). False whenever ``x.app_id`` is unset."""
    if config.app_id is None:
        return False
    return create.source_app_id is None or create.source_app_id != config.app_id


def _account(config: ChannelsConfig, activity: Activity) -> XAccount:
    if activity.for_user_id is None:
        raise BadRequest("for_user_id missing")
    account = find_endpoint(config.x.accounts, activity.for_user_id, "user_id")
    if account is None:
        raise unknown_endpoint("this X account")
    return account


def is_user_id(value: str) -> bool:
    """Whether ``value`` is an X user id (X's pattern: 1 to 19 digits)."""
    return value.isascii() and value.isdigit() and len(value) <= 19


@contextlib.contextmanager
def _unusable(domain: str) -> Iterator[None]:
    """An item that cannot be read is unusable: set aside, while the others go on."""
    try:
        yield
    except BadRequest as malformed:
        raise Unusable(malformed.reason[:REASON_MAX], domain=domain) from None


def _dm(
    config: ChannelsConfig, account: XAccount, event: DmEvent, now: float, out: Normalized
) -> None:
    """Collect the event of one DM (often none)."""
    create = event.message_create
    if event.type != "message_create" or create is None:
        return
    ours = account.user_id
    by_us = create.sender_id == ours
    if not by_us and create.target.recipient_id != ours:
        return  # neither from nor to this account: not one of its conversations
    customer = create.target.recipient_id if by_us else create.sender_id
    if customer == ours:
        return  # a note to itself: no customer
    if not is_user_id(customer):
        raise BadRequest("the DM's other participant is not an X user id")
    read_as_customers: dict[str, Any] = {
        "channel": Channel.X,
        "endpoint_key": ours,
        "customer_address": customer,
        "provider_message_id": event.id,
        "received_at": now,
        "sent_at": _seconds(event.created_timestamp),
    }
    if by_us:
        if sent_by_a_person(config.x, create):
            echo = message_received(config, account, **read_as_customers)
            out.events.append(human_replied(echo))
        return
    data = create.message_data
    attachments = _attachments(data)
    if not data.text and not attachments:
        return
    out.events.append(
        message_received(
            config, account, text=data.text, attachments=attachments, **read_as_customers
        )
    )


def _read(account: XAccount, mark: MarkRead, now: float, out: Normalized) -> None:
    """Collect the status of one read mark (none when our own account read)."""
    if mark.sender_id == account.user_id:
        return
    out.events.append(
        delivery_status_changed(
            account,
            channel=Channel.X,
            provider_message_id=mark.last_read_event_id,
            provider_status="read",
            status=DeliveryStatus.READ,
            received_at=now,
            sent_at=_seconds(mark.created_timestamp),
        )
    )


def parse_webhook(body: bytes, config: ChannelsConfig, now: float) -> Normalized:
    """Normalize a verified Account Activity API delivery into events (often none) and the
    items set aside."""
    activity = decode_json(body, Activity, "X activity")
    out = Normalized([])
    if not activity.direct_message_events and not activity.direct_message_mark_read_events:
        return out  # typing, posts, likes, follows …: nothing to route
    account = _account(config, activity)
    for index, raw in enumerate(activity.direct_message_events):
        where = f"direct_message_events[{index}]"
        with out.setting_aside(where), _unusable(account.domain):
            _dm(config, account, decode_json(raw, DmEvent, "DM event"), now, out)
    for index, raw in enumerate(activity.direct_message_mark_read_events):
        where = f"direct_message_mark_read_events[{index}]"
        with out.setting_aside(where), _unusable(account.domain):
            _read(account, decode_json(raw, MarkRead, "read event"), now, out)
    return out


# --- sending ------------------------------------------------------------------------------


def owns(reply: Outbound, channels: ChannelsConfig) -> bool:
    """Whether ``reply`` is sent from one of our X accounts."""
    return reply.channel is Channel.X and (
        find_endpoint(channels.x.accounts, reply.endpoint, "user_id") is not None
    )


def credentials(
    channels: ChannelsConfig, account: XAccount, environ: Mapping[str, str]
) -> OAuthCredentials:
    """The app's and the account's OAuth 1.0a secrets (``SecretMissing`` naming one unset)."""
    x = channels.x
    return OAuthCredentials(
        consumer_key=resolve_secret(x.consumer_key_env, environ),
        consumer_secret=resolve_secret(x.consumer_secret_env, environ),
        token=resolve_secret(account.access_token_env, environ),
        token_secret=resolve_secret(account.access_token_secret_env, environ),
    )


def dm_event_id(body: Any) -> str | None:
    """``data.dm_event_id`` of X's answer to a sent DM."""
    data = body.get("data") if isinstance(body, dict) else None
    value = data.get("dm_event_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def x_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The X API v2 call that sends ``reply`` as a DM (uploading its attachment first)."""
    account = find_endpoint(channels.x.accounts, reply.endpoint, "user_id")
    if account is None:
        raise EgressUnroutable(reply.endpoint)
    if isinstance(reply, ReplyRequested) and reply.location is not None:
        raise MediaRefused("X direct messages cannot carry a location")
    checked = check_attachments(reply.attachments, MEDIA_LIMITS)
    keys = credentials(channels, account, environ)
    participant = urllib.parse.quote(reply.customer_address, safe="")
    url = f"{channels.x.api_base_url.rstrip('/')}/2/dm_conversations/with/{participant}/messages"
    text = reply.text or next((a.caption for a in reply.attachments if a.caption), "") or ""
    text = with_numbered_options(text, quick_replies(reply))
    body: dict[str, Any] = {"text": text} if text or not checked else {}
    request = ProviderRequest(
        provider=PROVIDER,
        url=url,
        headers={"Authorization": authorization_header("POST", url, keys)},
        json=body,
        message_id=dm_event_id,
    )
    if not checked:
        return request
    [(attachment, rule)] = checked
    upload = MediaUpload(
        base_url=channels.x.api_base_url.rstrip("/"),
        credentials=keys,
        attachment=attachment,
        allow_private=channels.media_fetch_allow_private,
    )

    async def prepare(session: aiohttp.ClientSession) -> ProviderRequest:
        media_id = await upload.run(session, rule)
        return dataclasses.replace(
            request,
            # Signed now, after the upload: the timestamp is the send's, not the build's.
            headers={"Authorization": authorization_header("POST", url, keys)},
            json={**body, "attachments": [{"media_id": media_id}]},
            prepare=None,
        )

    return dataclasses.replace(request, prepare=prepare)


def _problem(body: Any) -> str:
    """X's own words about a refused call (v2 problem ``detail``/``title``, v1.1
    ``errors[0].message``), else nothing."""
    if isinstance(body, dict):
        for key in ("detail", "title"):
            if isinstance(body.get(key), str):
                return str(body[key])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message") or errors[0].get("detail")
            if isinstance(message, str):
                return message
    return ""


@dataclass(frozen=True, kw_only=True)
class MediaUpload:
    """One attachment on its way into X: downloaded, then uploaded in segments as DM media
    of the sending account. ``run`` returns X's media id, or raises ``PrepareFailed``
    (retryable when the failure is the network's or X's 429/5xx)."""

    base_url: str
    credentials: OAuthCredentials
    attachment: Attachment
    allow_private: bool = False
    """Fetch the attachment from any address (``[channels] media_fetch_allow_private``)."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How the processing checks wait (tests give their own)."""

    async def run(self, session: aiohttp.ClientSession, rule: MediaRule) -> str:
        kind = media_type(self.attachment) or ""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
            size = await fetch_attachment_to(
                spool,
                self.attachment,
                rule.max_bytes,
                1,
                allow_private=self.allow_private,
                seconds=DOWNLOAD_TIMEOUT_SECONDS,
            )
            if size == 0:
                raise PrepareFailed("attachment 1: empty")
            started = await self._call(
                session,
                "initialize",
                "POST",
                f"{self.base_url}/2/media/upload/initialize",
                json={
                    "media_type": kind,
                    "total_bytes": size,
                    "media_category": MEDIA_CATEGORIES[rule.kind],
                },
            )
            media_id = _media_id(started)
            spool.seek(0)
            for index in range(math.ceil(size / SEGMENT_BYTES)):
                form = aiohttp.FormData()
                form.add_field("segment_index", str(index))
                form.add_field(
                    "media",
                    spool.read(SEGMENT_BYTES),
                    content_type="application/octet-stream",
                    filename="media",
                )
                await self._call(
                    session,
                    "append",
                    "POST",
                    f"{self.base_url}/2/media/upload/{media_id}/append",
                    data=form,
                )
        finished = await self._call(
            session, "finalize", "POST", f"{self.base_url}/2/media/upload/{media_id}/finalize"
        )
        await self._processed(session, media_id, finished)
        return media_id

    async def _call(
        self,
        session: aiohttp.ClientSession,
        step: str,
        method: str,
        url: str,
        *,
        json: Mapping[str, Any] | None = None,
        data: aiohttp.FormData | None = None,
    ) -> Any:
        """One signed call of the media upload; X's decoded answer."""
        headers = {"Authorization": authorization_header(method, url, self.credentials)}
        timeout = aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT_SECONDS)
        try:
            async with session.request(
                method, url, headers=headers, json=json, data=data, timeout=timeout
            ) as response:
                status = response.status
                raw = await read_bounded(response, ANSWER_MAX_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PrepareFailed(
                f"X media upload ({step}) failed: {type(exc).__name__}", retryable=True
            ) from None
        body = decoded_answer(raw)
        if 200 <= status < 300:
            return body
        said = _problem(body)
        reason = f"X media upload ({step}) answered HTTP {status}" + (f": {said}" if said else "")
        raise PrepareFailed(reason[:REASON_MAX], retryable=status == 429 or status >= 500)

    async def _processed(self, session: aiohttp.ClientSession, media_id: str, answer: Any) -> None:
        """Wait while X processes the media (videos, GIFs), as its ``processing_info``
        says: at most ``PROCESSING_MAX_SECONDS`` of waits and ``PROCESSING_CHECKS_MAX``
        checks, whichever comes first."""
        waited, checks = 0.0, 0
        while True:
            info = _processing(answer)
            state = info.get("state")
            if state in (None, "succeeded"):
                return
            if state == "failed":
                raise PrepareFailed("X could not process the attachment")
            after = info.get("check_after_secs")
            delay = float(after) if isinstance(after, int | float) and after >= 0 else 1.0
            delay = min(delay, PROCESSING_CHECK_MAX_SECONDS)
            if waited + delay > PROCESSING_MAX_SECONDS or checks == PROCESSING_CHECKS_MAX:
                break
            await self.sleep(delay)
            waited, checks = waited + delay, checks + 1
            query = urllib.parse.urlencode({"command": "STATUS", "media_id": media_id})
            answer = await self._call(
                session, "status", "GET", f"{self.base_url}/2/media/upload?{query}"
            )
        raise PrepareFailed("X did not finish processing the attachment in time")


def _media_id(answer: Any) -> str:
    """``data.id`` of X's answer to INITIALIZE: digits, as X's media ids are."""
    data = answer.get("data") if isinstance(answer, dict) else None
    value = data.get("id") if isinstance(data, dict) else None
    if not isinstance(value, str) or not is_user_id(value):
        raise PrepareFailed("X media upload (initialize) answered without a media id")
    return value


def _processing(answer: Any) -> dict[str, Any]:
    data = answer.get("data") if isinstance(answer, dict) else None
    info = data.get("processing_info") if isinstance(data, dict) else None
    return info if isinstance(info, dict) else {}


# --- routes -------------------------------------------------------------------------------


def routes(ctx: WebhookContext) -> list[web.RouteDef]:
    """``GET /webhooks/x`` (CRC) and ``POST /webhooks/x`` (events), bound to ``ctx``."""
    return [
        web.get(WEBHOOK_PATH, _crc(ctx), allow_head=False),
        web.post(WEBHOOK_PATH, _events(ctx)),
    ]


def _crc(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        answer: dict[str, str] = {}

        def work(_body: bytes) -> Normalized:
            token = crc_token(request.query)
            secret = resolve_secret(ctx.channels.x.consumer_secret_env, ctx.environ)
            answer["response_token"] = crc_response_token(secret, token)
            return Normalized([])

        return await serve(
            ctx,
            PROVIDER,
            request,
            work,
            lambda: web.json_response(answer),
            empty_outcome="accepted",  # a challenge answered
        )

    return handle


def _events(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            channels = ctx.channels  # read once: a new configuration replaces it whole
            secret = resolve_secret(channels.x.consumer_secret_env, ctx.environ)
            verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER))
            return parse_signed(lambda: parse_webhook(body, channels, ctx.clock()))

        return await serve(ctx, PROVIDER, request, work, lambda: web.Response(status=200))

    return handle
