"""Web chat: visitors POST messages as JSON and receive agents' replies on a WebSocket.

A visitor first opens a session (``adapters.webchat_routes``): the server picks the
session id and signs a session token (``adapters.webchat_tokens``) that every later
request presents. ``POST /v1/domains/{domain}/webchat/messages`` with
``Authorization: Bearer <token>`` and ``{"session_id"?, "message_id", "text",
"attachments"?, "user_id"?, "user_hash"?, "prechat"?}`` answers 202 once the broker
acknowledged the normalized message. ``session_id`` defaults to the token's; naming
another session is a 403. ``message_id`` is the client's idempotency key: a retry with
the same id is routed once.

``GET /v1/domains/{domain}/webchat/sessions/{session_id}/socket`` upgrades to a WebSocket
on which the session's replies, an agent's or a bot's, arrive as JSON, live
(``{"type": "reply", "agent_id" | "bot_id" | "notice", "quick_replies", ...}``);
replies sent while no socket was open are kept for a while and delivered on connect.
Business-started messages (``NotificationRequested``) arrive the same way as
``{"type": "notification", ...}``: to every session of a signed-in ``user:<id>`` customer
that has a socket open, else to the session the notification's address names. Every
adapter instance reads the whole ``conversations.outbound`` topic (no consumer group) so
a visitor may be connected to any instance behind the load balancer.

The customer of a message is ``webchat:<session_id>``, or ``user:<user_id>`` for a
signed-in visitor, who is the same customer across sessions and devices. A visitor
signs in in one of two ways, both under the domain's ``identity_secret_env`` secret
(computed by the customer's own backend): a signed login given when the session is
created (``adapters.webchat_tokens``: the token then carries the user), or, per message,
``user_id`` with ``user_hash`` = hex HMAC-SHA256 of the user id. A message's ``user_id``
must then be the token's user, if it has one.

``prechat`` holds the visitor's answers to the domain's pre-chat form
(``adapters.webchat_prechat``: checked against ``webchat.prechat``, 400 naming the field
otherwise); they become the message's attributes, skills, priority, queue and language,
which the router applies when the message opens a conversation.

Input limits (``schemas.limits``), all answered 4xx with the reason since the visitor's
page can fix them: ``text`` is cleaned (NUL removed, a lone surrogate read as U+FFFD) and
refused (413) beyond ``max_text_chars``; ids, the user id and attachments' URLs and media
types are refused (400) when too long or holding control characters; attachment file names
are cleaned text, cut at their maximum.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Annotated

import msgspec
import structlog
from aiohttp import WSMsgType, web

from adapters.base import (
    BadRequest,
    ChannelDeclaration,
    SignatureRejected,
    constant_time_equal,
    hmac_hex,
    inbound_event_id,
)
from adapters.config import resolve_secret
from adapters.webchat_cors import ORIGINS_MAX, Origin, check_origins
from adapters.webchat_prechat import (
    PRECHAT_FIELDS_MAX,
    PrechatField,
    check_prechat,
    prechat_context,
)
from adapters.webchat_tokens import (
    SESSION_ID,
    TOKEN_SECONDS_MAX,
    TOKEN_SECONDS_MIN,
    SessionClaims,
)
from schemas import Attachment, Channel, MessageReceived, NotificationRequested, ReplyRequested
from schemas.limits import (
    ADDRESS_MAX,
    ATTACHMENTS_MAX,
    CONTENT_TYPE_MAX,
    FILENAME_MAX,
    TEXT_MAX,
    URL_MAX,
    QueueName,
    UnusableValue,
    checked_identifier,
    clean_text,
    decode_json_text,
)

log = structlog.get_logger(__name__)

TOKEN_EXPIRED = 4001
"""The close code of a socket whose session token expired while it was open."""
SEND_SECONDS = 5.0
"""Longest one frame may take to leave: a visitor whose socket takes longer is not reading
(its buffers are full), and is cut off, the reply kept, rather than holding every other
visitor's replies behind it."""
REPLY_BACKLOG_MAX = 1000
"""Replies one session may have kept while its visitor is away."""
REPLY_BACKLOG_SECONDS_MAX = 86_400.0
"""Longest a kept reply may be kept."""

DECLARATION = ChannelDeclaration(
    provider="Switchboard web chat",
    channels=("webchat",),
    inbound="POST /v1/domains/{domain}/webchat/messages",
    outbound="the session's WebSocket (kept for a while when none is open)",
    media_in="attachments by URL (media type, file name, size)",
    media_out="attachments by URL, passed to the widget as given",
    statuses="— (a reply is on the socket or kept for the next connection)",
    read_receipts="—",
    quick_replies="`quick_replies` on the socket's reply (the bundled widget does not draw them yet)",
    signature="session token signed by the domain's secret; signed-in users by HMAC-SHA256 (`user_hash`) or a signed login",
    replay_protection="`message_id` is an idempotency key: a message sent twice is routed once",
)
"""The web chat as the README's channel matrix shows it."""


class WebchatConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    """Accept web chat messages for this domain."""
    queue: QueueName | None = None
    """Queue of web chat conversations (the domain's default queue when unset)."""
    identity_secret_env: str | None = None
    """Environment variable with the HMAC secret that signs visitors' ``user_id`` and the
    logins of the customer's backend."""
    session_secret_env: str | None = None
    """Environment variable with the secret that signs session tokens. Unset: each process
    draws one at random when it starts and logs a warning; enough for one process, but
    with several adapter processes (behind a load balancer) set it, the same in all, or
    a token works only where it was issued, and none survives a restart."""
    session_token_seconds: Annotated[
        int, msgspec.Meta(ge=TOKEN_SECONDS_MIN, le=TOKEN_SECONDS_MAX)
    ] = 86_400
    """Lifetime of a session token (60 s to 7 days); the visitor refreshes it before then."""
    allowed_origins: Annotated[tuple[Origin, ...], msgspec.Meta(max_length=ORIGINS_MAX)] = ()
    """Web sites whose pages may call the web chat (CORS and the socket's ``Origin``
    check): ``https://shop.example.com``, exact ``scheme://host[:port]``, at most 50 of
    at most 255 characters; ``*`` is refused. Empty: no cross-site page may."""
    max_text_chars: Annotated[int, msgspec.Meta(ge=1, le=TEXT_MAX)] = 4000
    """Longest message text accepted."""
    reply_backlog: Annotated[int, msgspec.Meta(ge=0, le=REPLY_BACKLOG_MAX)] = 50
    """Replies kept per session for a visitor who is not connected (0 to 1,000)."""
    reply_backlog_seconds: Annotated[float, msgspec.Meta(ge=0, le=REPLY_BACKLOG_SECONDS_MAX)] = (
        3600.0
    )
    """How long such replies are kept (0 to 86,400 seconds)."""
    prechat: Annotated[tuple[PrechatField, ...], msgspec.Meta(max_length=PRECHAT_FIELDS_MAX)] = ()
    """The pre-chat form (at most 10 fields) the widget shows before the first message;
    the answers become the conversation's routing context (``adapters.webchat_prechat``)."""

    def __post_init__(self) -> None:
        check_origins(self.allowed_origins)
        check_prechat(self.prechat)


class WebchatAttachment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str
    content_type: str | None = None
    filename: str | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """The file's size, as the page knows it (an agent's reply names it the same way)."""


class WebchatMessageIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of a web chat message POST."""

    message_id: str
    session_id: str | None = None
    """The token's session when left out."""
    text: str = ""
    attachments: Annotated[
        tuple[WebchatAttachment, ...], msgspec.Meta(max_length=ATTACHMENTS_MAX)
    ] = ()
    user_id: str | None = None
    user_hash: str | None = None
    prechat: Annotated[dict[str, str], msgspec.Meta(max_length=PRECHAT_FIELDS_MAX)] | None = None
    """Answers to the pre-chat form by field name (sent with every message of a session)."""


_decoder = msgspec.json.Decoder(WebchatMessageIn)


def parse_message(
    domain: str,
    config: WebchatConfig,
    body: bytes,
    secret: str | None,
    now: float,
    *,
    session: SessionClaims | None = None,
) -> MessageReceived:
    """Validate a web chat POST and normalize it; ``BadRequest`` says what is wrong.

    ``session``: the claims of the request's verified token; the message must be of
    that session (403 otherwise), and its customer is the token's user, if any."""
    if not config.enabled:
        raise BadRequest(f"web chat is not enabled for domain {domain!r}", status=404)
    message = _decoded(body)
    session_id = message.session_id
    if session_id is None:
        if session is None:
            raise BadRequest("session_id is required")
        session_id = session.session_id
    if not SESSION_ID.fullmatch(session_id):
        raise BadRequest("session_id must be 8 to 128 letters, digits, '-' or '_'")
    if session is not None and session_id != session.session_id:
        raise SignatureRejected("the session token is for another session")
    if not 1 <= len(message.message_id) <= 128:
        raise BadRequest("message_id must be 1 to 128 characters")
    text = clean_text(message.text)
    if not text.strip() and not message.attachments:
        raise BadRequest("a message needs text or attachments")
    if len(text) > config.max_text_chars:
        raise BadRequest(f"text longer than {config.max_text_chars} characters", status=413)
    try:
        checked_identifier("message_id", message.message_id, 128)
        if message.user_id is not None:
            checked_identifier("user_id", message.user_id, ADDRESS_MAX)
        attachments = tuple(_attachment(a) for a in message.attachments)
    except UnusableValue as error:
        raise BadRequest(str(error)) from None
    context = prechat_context(config.prechat, message.prechat)
    customer_id = f"webchat:{session_id}"
    if session is not None and session.customer_id is not None:
        customer_id = session.customer_id
    if message.user_id is not None:
        if secret is None:
            raise BadRequest("user_id is not accepted: identity verification is not configured")
        if message.user_hash is None or not constant_time_equal(
            hmac_hex(secret, message.user_id.encode()), message.user_hash
        ):
            raise SignatureRejected("user_hash does not sign user_id")
        if session is not None and session.user_id not in (None, message.user_id):
            raise SignatureRejected("user_id is not the user the session signed in")
        customer_id = f"user:{message.user_id}"
    provider_message_id = f"{session_id}/{message.message_id}"
    return MessageReceived(
        id=inbound_event_id(domain, Channel.WEBCHAT.value, provider_message_id),
        domain=domain,
        occurred_at=now,
        channel=Channel.WEBCHAT,
        endpoint="webchat",
        customer_address=session_id,
        customer_id=customer_id,
        conversation_key=f"webchat:{session_id}",
        provider_message_id=provider_message_id,
        text=text,
        attachments=attachments,
        queue=context.queue or config.queue,
        priority=context.priority,
        skills=context.skills,
        language=context.language,
        attributes=context.attributes,
    )


def _decoded(body: bytes) -> WebchatMessageIn:
    try:
        return decode_json_text(_decoder.decode, body)
    except msgspec.ValidationError as error:
        raise BadRequest(f"invalid message: {error}") from None
    except msgspec.DecodeError:
        raise BadRequest("body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None


def _attachment(attachment: WebchatAttachment) -> Attachment:
    url = checked_identifier("attachment url", attachment.url, URL_MAX)
    if not url.startswith(("https://", "http://")):
        raise UnusableValue("attachment url must be http(s)")
    content_type = attachment.content_type
    if content_type is not None:
        checked_identifier("attachment content_type", content_type, CONTENT_TYPE_MAX)
    filename = attachment.filename
    return Attachment(
        url=url,
        content_type=content_type,
        filename=None if filename is None else clean_text(filename, FILENAME_MAX),
        size_bytes=attachment.size_bytes,
    )


class WebchatHub:
    """Live sockets per (domain, session), the sessions of each signed-in user with a
    socket open here, and a bounded backlog of what could not be delivered."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_sessions: int = 100_000
    ) -> None:
        self._sockets: dict[tuple[str, str], set[web.WebSocketResponse]] = {}
        self._users: dict[tuple[str, str], dict[str, int]] = {}
        """(domain, customer id ``user:<id>``) → its sessions with a socket here, and how
        many sockets each has."""
        self._aborts: dict[web.WebSocketResponse, Callable[[], None]] = {}
        """How to drop each socket's connection at once (its request's transport)."""
        self._backlog: OrderedDict[tuple[str, str], deque[tuple[float, bytes]]] = OrderedDict()
        """Replies kept per session, (expiry time, frame); the session kept for last, last."""
        self._clock = clock
        self._max_sessions = max_sessions

    def connected(self, domain: str, session_id: str) -> int:
        return len(self._sockets.get((domain, session_id), ()))

    async def deliver(self, reply: ReplyRequested, config: WebchatConfig) -> bool:
        """Send a reply to the session's sockets; keep it when none is open. True if sent.

        The frame names who wrote it: ``agent_id`` (a person) or ``bot_id`` (a bot), the
        other null, or neither and ``notice`` (Switchboard's own, e.g. ``wait_notice``);
        ``quick_replies`` are a bot's suggested answers (the page may show them
        as buttons that send their title as the visitor's message), empty otherwise."""
        payload = msgspec.json.encode(
            {
                "type": "reply",
                "id": reply.id,
                "conversation_id": reply.conversation_id,
                "agent_id": reply.agent_id,
                "bot_id": reply.bot_id,
                "notice": reply.notice,
                "text": reply.text,
                "attachments": reply.attachments,
                "quick_replies": list(dict.fromkeys(reply.quick_replies)),  # each once
                "sent_at": reply.occurred_at,
            }
        )
        return await self._send((reply.domain, reply.customer_address), payload, config)

    async def notify(self, notification: NotificationRequested, config: WebchatConfig) -> bool:
        """Send a business-started message to its customer: to every session of a
        ``user:<id>`` customer with a socket open here, else to the session its address
        names (kept for a while when that session has no socket). True if sent."""
        payload = msgspec.json.encode(
            {
                "type": "notification",
                "id": notification.id,
                "conversation_id": notification.conversation_id,
                "agent_id": notification.agent_id,
                "text": notification.text,
                "attachments": notification.attachments,
                "subject": notification.subject,
                "sent_at": notification.occurred_at,
            }
        )
        domain = notification.domain
        sessions = list(self._users.get((domain, notification.customer_id), ()))
        if sessions:
            sent = [await self._send((domain, s), payload, config) for s in sessions]
            return any(sent)
        if not SESSION_ID.fullmatch(notification.customer_address):
            return False  # no session to keep it for
        return await self._send((domain, notification.customer_address), payload, config)

    async def _send(self, key: tuple[str, str], payload: bytes, config: WebchatConfig) -> bool:
        sockets = [ws for ws in self._sockets.get(key, ()) if not ws.closed]
        sent = False
        for ws in sockets:
            try:
                async with asyncio.timeout(SEND_SECONDS):
                    await ws.send_str(payload.decode())
                sent = True
            except TimeoutError:
                abort = self._aborts.pop(ws, None)
                if abort is not None:
                    abort()  # its handler ends, and detaches it
            except (ConnectionError, RuntimeError):
                continue
        if not sent:
            now = self._clock()
            backlog = self._backlog.setdefault(key, deque(maxlen=config.reply_backlog))
            backlog.append((now + config.reply_backlog_seconds, payload))
            self._backlog.move_to_end(key)
            while len(self._backlog) > self._max_sessions:
                self._backlog.popitem(last=False)
            self._drop_expired(now)
        return sent

    def _drop_expired(self, now: float) -> None:
        """Forget the sessions, least recently kept for first, whose every kept reply has
        expired (``reply_backlog_seconds``): not only when their visitor comes back."""
        while self._backlog:
            oldest = next(iter(self._backlog.values()))
            if oldest and oldest[-1][0] > now:
                return
            self._backlog.popitem(last=False)

    async def attach(
        self,
        domain: str,
        session_id: str,
        ws: web.WebSocketResponse,
        config: WebchatConfig,
        *,
        customer_id: str | None = None,
        abort: Callable[[], None] | None = None,
    ) -> None:
        """Hold ``ws`` for the session (of the signed-in customer ``customer_id``, if
        any) and send it what was kept for the session. ``abort`` drops its connection
        (``SEND_SECONDS``)."""
        key = (domain, session_id)
        self._sockets.setdefault(key, set()).add(ws)
        if abort is not None:
            self._aborts[ws] = abort
        if customer_id is not None:
            sessions = self._users.setdefault((domain, customer_id), {})
            sessions[session_id] = sessions.get(session_id, 0) + 1
        now = self._clock()
        kept = self._backlog.pop(key, deque())
        while kept:
            expires_at, payload = kept[0]
            if expires_at > now:
                try:
                    await ws.send_str(payload.decode())
                except (ConnectionError, RuntimeError):
                    # The socket went while catching up: what it did not get waits for
                    # the next connection.
                    later = self._backlog.get(key, ())
                    self._backlog[key] = deque([*kept, *later], maxlen=kept.maxlen)
                    raise
            kept.popleft()
        self._drop_expired(now)

    def detach(
        self,
        domain: str,
        session_id: str,
        ws: web.WebSocketResponse,
        *,
        customer_id: str | None = None,
    ) -> None:
        key = (domain, session_id)
        self._aborts.pop(ws, None)
        sockets = self._sockets.get(key)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._sockets[key]
        if customer_id is not None:
            sessions = self._users.get((domain, customer_id), {})
            left = sessions.get(session_id, 0) - 1
            if left > 0:
                sessions[session_id] = left
            else:
                sessions.pop(session_id, None)
            if not sessions:
                self._users.pop((domain, customer_id), None)

    async def close_all(self) -> None:
        for sockets in list(self._sockets.values()):
            for ws in list(sockets):
                try:
                    async with asyncio.timeout(SEND_SECONDS):
                        await ws.close(code=1001, message=b"server shutting down")
                except TimeoutError:  # not reading: not even the close frame leaves
                    abort = self._aborts.get(ws)
                    if abort is not None:
                        abort()
        self._sockets.clear()
        self._users.clear()
        self._aborts.clear()


SOCKET_PROTOCOL = "switchboard.webchat.v1"
"""The subprotocol a socket speaks; a browser offers it next to ``bearer.<token>``."""


def is_handshake(request: web.Request) -> bool:
    """Whether ``request`` opens a WebSocket aiohttp would accept (its own refusal of one that
    does not is plain text quoting the request's headers)."""
    return web.WebSocketResponse(protocols=(SOCKET_PROTOCOL,)).can_prepare(request).ok


async def socket_session(
    request: web.Request,
    hub: WebchatHub,
    domain: str,
    session_id: str,
    config: WebchatConfig,
    *,
    customer_id: str | None = None,
    expires_at: float | None = None,
    clock: Callable[[], float] = time.time,
) -> web.WebSocketResponse:
    """Serve one visitor's WebSocket until either side closes it, or its token expires
    (``expires_at``: closed with ``TOKEN_EXPIRED``, and the visitor connects again with
    the token it refreshed meanwhile). The session's token was verified by the caller;
    ``customer_id`` is its signed-in user's, if any. A client that offered subprotocols
    gets ``SOCKET_PROTOCOL`` (the caller checked it was among them)."""
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096, protocols=(SOCKET_PROTOCOL,))
    await ws.prepare(request)
    try:
        transport = request.transport
        abort = None if transport is None else transport.abort
        await hub.attach(domain, session_id, ws, config, customer_id=customer_id, abort=abort)
        left = None if expires_at is None else max(0.0, expires_at - clock())
        try:
            async with asyncio.timeout(left):
                async for message in ws:
                    if message.type == WSMsgType.TEXT and message.data == "ping":
                        await ws.send_str('{"type":"pong"}')
                    elif message.type == WSMsgType.ERROR:
                        break
        except TimeoutError:
            await ws.close(code=TOKEN_EXPIRED, message=b"session token expired")
    finally:
        hub.detach(domain, session_id, ws, customer_id=customer_id)
    return ws


def identity_secret(config: WebchatConfig, environ: Mapping[str, str]) -> str | None:
    if config.identity_secret_env is None:
        return None
    return resolve_secret(config.identity_secret_env, environ)
