"""Web chat over HTTP: sessions and their tokens, the visitor's messages in, the agents'
replies out over a WebSocket, CORS for the sites that embed it, and the widget script.

Routes, under ``/v1/domains/{domain}/webchat``:

- ``POST /sessions``, body empty or ``{"login"?: {...}}`` (at most 8 KiB): 201
  ``{"session_id", "token", "expires_at"}``. The server picks the session id; the token
  (``adapters.webchat_tokens``) is valid ``session_token_seconds``. With a signed login
  the session's customer is ``user:<user_id>``, and one ``customer.link_requested``
  command per email and phone of the login is published on ``agents.events`` (keyed by
  domain, ``source = "webchat_login"``) before the answer; 503 if the broker cannot
  take them, and then no token is issued.
- ``POST /sessions/{session_id}/token`` with ``Authorization: Bearer <its current,
  valid token>``: 200 with a new token for the same session and user.
- ``POST /messages`` with ``Authorization: Bearer <token>``: publishes the visitor's
  message (``adapters.webchat``), 202 with its event id once the broker has it. Its
  optional ``prechat`` holds the answers to the pre-chat form (below).
- ``GET /prechat``: the domain's pre-chat form as the visitor fills it in
  (``adapters.webchat_prechat.public_form``: labels, options, required flags, never the
  options' routing effects), ``{"fields": [...]}``, empty when there is none; public,
  cacheable for ``PRECHAT_MAX_AGE_SECONDS`` with an ``ETag``, CORS as the other routes.
  Answers are not taken at session creation: they would have to ride in the token, which
  travels in headers and a WebSocket subprotocol (``TOKEN_MAX``), and ten free-text answers
  of 256 characters do not fit. The page keeps them with the session and sends them with
  every message; the router applies them when a message opens a conversation.
- ``GET /sessions/{session_id}/socket``: the WebSocket the session's replies arrive on.
  Browsers cannot set headers on a WebSocket, so the token travels either as the
  subprotocol ``bearer.<token>``, offered next to ``switchboard.webchat.v1`` (which the
  server then selects; the widget does this), or as the ``token`` query parameter for
  clients that cannot offer subprotocols. Prefer the subprotocol: a URL ends up in the
  logs of proxies in between. Neither reaches ours: the service runs without aiohttp's
  access log, its error lines name the route pattern and never the path or query, and
  the log redaction turns any query string into ``?[query]``. A client offering
  subprotocols without ``switchboard.webchat.v1`` is refused 400 before the handshake
  (aiohttp would log the offered values).
- ``GET /widget.js``: the embeddable widget (``adapters/webchat_widget.js``), cacheable.
- ``OPTIONS`` on the POST routes: CORS preflight (``adapters.webchat_cors``).

Refusals: 404 unknown domain or web chat disabled; 401 token missing, malformed,
forged, expired or of another domain, and a login that expired (with
``WWW-Authenticate: Bearer``); 403 a valid token naming another session, a login whose
signature does not verify, an ``Origin`` the socket does not accept; 400 and 413 for the
bodies; 503 when the broker or a configured secret is missing. Reasons never quote a
token, a signature, an email or a phone number. Each outcome is counted in
``switchboard_webhook_requests_total{provider="webchat"}``.

Every adapter process reads every record of ``conversations.outbound`` (``reply_pump``,
no consumer group), opens the sealed ones (``runtime.sealing``) and hands those of web
chat, agents' replies and business-started messages, to the sockets it holds
(``WebchatHub.deliver`` and ``notify``); the egress worker records replies as sent, and
the outbound sender its notifications. A record that does not open (its customer was
erased) reaches no socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol, assert_never

import msgspec
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from adapters import webchat_cors as cors
from adapters.base import BadRequest, Publisher, SignatureRejected
from adapters.config import SecretMissing
from adapters.consent import message_consent
from adapters.lookup import IdentityLookups
from adapters.webchat import (
    SOCKET_PROTOCOL,
    WebchatConfig,
    WebchatHub,
    identity_secret,
    is_handshake,
    parse_message,
    socket_session,
)
from adapters.webchat_prechat import public_form
from adapters.webchat_tokens import (
    SESSION_ID,
    LoginIn,
    SessionClaims,
    SessionKeys,
    TokenRejected,
    VerifiedLogin,
    bearer_token,
    issue_token,
    link_requests,
    new_session_id,
    verify_login,
    verify_token,
)
from adapters.webhook_serving import BodyTooLarge, read_body
from runtime.http_errors import json_error
from runtime.kafka import BrokerUnavailable
from runtime.metrics import Metrics
from runtime.outbound import OutboundConfig
from runtime.sealing import TopicKeys
from schemas import (
    OUTBOUND_DECODER,
    Channel,
    CustomerLinkRequested,
    NotificationRequested,
    ReplyRequested,
)
from schemas.limits import decode_json_text

log = structlog.get_logger(__name__)

SESSION_BODY_MAX = 8 * 1024
"""Largest body of a session creation (a login is well under 1 KiB)."""
TOKEN_PROTOCOL_PREFIX = "bearer."  # noqa: S105 (a prefix, not a secret)
"""A WebSocket subprotocol ``bearer.<token>`` carries the session token."""
WIDGET_FILE = "webchat_widget.js"
WIDGET_MAX_AGE_SECONDS = 3600
PRECHAT_MAX_AGE_SECONDS = 60
"""How long a page may reuse the pre-chat form: a configuration change shows within a
minute (an ``ETag`` makes the revalidation cheap)."""


class LinkPublisher(Protocol):
    async def publish(self, events: Sequence[CustomerLinkRequested]) -> None:
        """Publish to ``agents.events`` and return once the broker acknowledged all.

        Raises ``BrokerUnavailable`` when it cannot.
        """
        ...


class SessionIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of a session creation (may be empty)."""

    login: LoginIn | None = None


class SessionOut(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    token: str
    expires_at: int
    """Seconds since the epoch: refresh the token before then."""


_session_decoder = msgspec.json.Decoder(SessionIn)


class Unconfigured(Exception):
    """A secret the domain's web chat names is missing: our deployment, not the visitor."""


def webchat_routes(
    domains: Mapping[str, WebchatConfig],
    hub: WebchatHub,
    publisher: Publisher,
    metrics: Metrics,
    environ: Mapping[str, str],
    *,
    links: LinkPublisher,
    max_body_bytes: int,
    clock: Callable[[], float] = time.time,
    lookups: IdentityLookups | None = None,
    outbound: Mapping[str, OutboundConfig] | None = None,
) -> list[web.RouteDef]:
    """The web chat routes (the module docstring), for the domains in ``domains`` (read at
    each request: the app replaces its content when the configuration changes)."""
    widget = resources.files("adapters").joinpath(WIDGET_FILE).read_bytes()
    routes = _Routes(
        domains=domains,
        hub=hub,
        publisher=publisher,
        links=links,
        metrics=metrics,
        environ=environ,
        keys=SessionKeys(environ),
        max_body_bytes=max_body_bytes,
        clock=clock,
        widget_body=widget,
        widget_etag='"' + hashlib.sha256(widget).hexdigest()[:32] + '"',
        lookups=lookups,
        outbound={} if outbound is None else outbound,
    )
    for name, config in domains.items():
        if config.enabled and config.session_secret_env is None:
            routes.keys.key(name, None)  # warns now, at start, rather than at first use
    base = "/v1/domains/{domain}/webchat"
    return [
        web.post(base + "/sessions", routes.create_session),
        web.options(base + "/sessions", routes.preflight),
        web.post(base + "/sessions/{session_id}/token", routes.refresh_token),
        web.options(base + "/sessions/{session_id}/token", routes.preflight),
        web.post(base + "/messages", routes.post_message),
        web.options(base + "/messages", routes.preflight),
        web.get(base + "/sessions/{session_id}/socket", routes.socket),
        web.get(base + "/widget.js", routes.widget),
        web.get(base + "/prechat", routes.prechat),
        web.options(base + "/prechat", routes.preflight),
    ]


@dataclass(kw_only=True)
class _Routes:
    domains: Mapping[str, WebchatConfig]
    hub: WebchatHub
    publisher: Publisher
    links: LinkPublisher
    metrics: Metrics
    environ: Mapping[str, str]
    keys: SessionKeys
    max_body_bytes: int
    clock: Callable[[], float]
    widget_body: bytes
    widget_etag: str
    lookups: IdentityLookups | None = None
    """The domains' identity lookups (``adapters.lookup``), asked before publishing."""
    outbound: Mapping[str, OutboundConfig] = field(default_factory=dict)
    """Each domain's ``outbound`` section: its consent keywords apply to web chat messages
    when its ``keyword_channels`` name ``webchat`` (``adapters.consent``)."""

    # -- sessions ---------------------------------------------------------------------

    async def create_session(self, request: web.Request) -> web.Response:
        """1. read the body and verify its login, if any (refused: nothing published);
        2. publish the login's link commands and wait for the broker (503, and no token,
        when it cannot); 3. answer the new session and its token."""
        domain = request.match_info["domain"]
        config = self.domains.get(domain)
        try:
            # Step 1
            config = _enabled(domain, config)
            body = await read_body(request, SESSION_BODY_MAX)
            wanted = _decoded_session(body)
            now = self.clock()
            login = self._verified_login(domain, config, wanted.login, now)
            key = self._key(domain, config)
        except BadRequest as error:
            return self._refused(request, config, error)
        except Unconfigured:
            return self._answer(request, config, json_error(503, "web chat not configured"))
        claims = SessionClaims(
            domain=domain,
            session_id=new_session_id(),
            expires_at=int(now) + config.session_token_seconds,
            user_id=None if login is None else login.user_id,
        )
        commands = [] if login is None else link_requests(domain, login, now)
        # Step 2
        if commands:
            try:
                await self.links.publish(commands)
            except BrokerUnavailable:
                return self._unavailable(request, config)
        self.metrics.child(self.metrics.webhook_requests, "webchat", "accepted").inc()
        log.info(
            "webchat_session_opened",
            domain=domain,
            signed_in=login is not None,
            links=len(commands),
        )
        # Step 3
        return self._session(request, config, key, claims, status=201)

    async def refresh_token(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        config = self.domains.get(domain)
        try:
            config = _enabled(domain, config)
            now = self.clock()
            key = self._key(domain, config)
            claims = self._claims(request, key, domain, now)
            if claims.session_id != request.match_info["session_id"]:
                raise SignatureRejected("the session token is for another session")
        except BadRequest as error:
            return self._refused(request, config, error)
        except Unconfigured:
            return self._answer(request, config, json_error(503, "web chat not configured"))
        renewed = msgspec.structs.replace(
            claims, expires_at=int(now) + config.session_token_seconds
        )
        self.metrics.child(self.metrics.webhook_requests, "webchat", "accepted").inc()
        return self._session(request, config, key, renewed, status=200)

    def _verified_login(
        self, domain: str, config: WebchatConfig, login: LoginIn | None, now: float
    ) -> VerifiedLogin | None:
        if login is None:
            return None
        secret = self._identity_secret(domain, config)
        if secret is None:
            raise BadRequest("login is not accepted: identity verification is not configured")
        return verify_login(secret, domain, login, now)

    def _session(
        self,
        request: web.Request,
        config: WebchatConfig,
        key: bytes,
        claims: SessionClaims,
        *,
        status: int,
    ) -> web.Response:
        out = SessionOut(
            session_id=claims.session_id,
            token=issue_token(key, claims),
            expires_at=claims.expires_at,
        )
        response = web.Response(
            body=msgspec.json.encode(out),
            status=status,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )
        return self._answer(request, config, response)

    # -- messages -----------------------------------------------------------------------

    async def post_message(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        config = self.domains.get(domain)
        try:
            config = _enabled(domain, config)
            now = self.clock()
            claims = self._claims(request, self._key(domain, config), domain, now)
            body = await read_body(request, self.max_body_bytes)
            secret = self._identity_secret(domain, config)
            event = parse_message(domain, config, body, secret, now, session=claims)
        except BadRequest as error:
            return self._refused(request, config, error)
        except Unconfigured:
            return self._answer(request, config, json_error(503, "web chat not configured"))
        event = message_consent(event, self.outbound)
        if self.lookups is not None:
            event = await self.lookups.annotate_message(event)
        try:
            await self.publisher.publish([event])
        except BrokerUnavailable:
            return self._unavailable(request, config)
        self.metrics.child(self.metrics.webhook_requests, "webchat", "accepted").inc()
        self.metrics.for_domain(domain).counter(self.metrics.inbound_messages, "webchat").inc()
        response = web.json_response(
            {"event_id": event.id, "conversation_key": event.conversation_key}, status=202
        )
        return self._answer(request, config, response)

    # -- the socket ---------------------------------------------------------------------

    async def socket(self, request: web.Request) -> web.StreamResponse:
        domain = request.match_info["domain"]
        session_id = request.match_info["session_id"]
        config = self.domains.get(domain)
        try:
            config = _enabled(domain, config)
            if cors.socket_refused(request.headers.get("Origin"), config.allowed_origins):
                raise BadRequest("origin not allowed", status=403)
            if not SESSION_ID.fullmatch(session_id):
                raise BadRequest("session_id must be 8 to 128 letters, digits, '-' or '_'")
            token = _socket_token(request)
            key = self._key(domain, config)
            claims = verify_token(key, token, domain, self.clock())
            if claims.session_id != session_id:
                raise SignatureRejected("the session token is for another session")
            if not is_handshake(request):
                raise BadRequest("expected a WebSocket handshake (Upgrade: websocket)")
        except BadRequest as error:
            return self._refused(request, config, error, cross_site=False)
        except Unconfigured:
            return json_error(503, "web chat not configured")
        return await socket_session(
            request,
            self.hub,
            domain,
            session_id,
            config,
            customer_id=claims.customer_id,
            expires_at=claims.expires_at,
            clock=self.clock,
        )

    # -- the widget and preflights -------------------------------------------------------

    async def widget(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        try:
            _enabled(domain, self.domains.get(domain))
        except BadRequest as error:
            return json_error(error.status, error.reason)
        headers = {
            "Cache-Control": f"public, max-age={WIDGET_MAX_AGE_SECONDS}",
            "ETag": self.widget_etag,
            "X-Content-Type-Options": "nosniff",
            # Any site may load the script: what it may then call is CORS's business.
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if self.widget_etag in _etags(request.headers.get("If-None-Match")):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=self.widget_body, content_type="text/javascript", charset="utf-8", headers=headers
        )

    async def prechat(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        config = self.domains.get(domain)
        try:
            config = _enabled(domain, config)
        except BadRequest as error:
            return self._answer(request, config, json_error(error.status, error.reason))
        body = msgspec.json.encode(public_form(config.prechat))
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"Cache-Control": f"public, max-age={PRECHAT_MAX_AGE_SECONDS}", "ETag": etag}
        if etag in _etags(request.headers.get("If-None-Match")):
            return self._answer(request, config, web.Response(status=304, headers=headers))
        response = web.Response(body=body, content_type="application/json", headers=headers)
        return self._answer(request, config, response)

    async def preflight(self, request: web.Request) -> web.Response:
        config = self.domains.get(request.match_info["domain"])
        origins = config.allowed_origins if config is not None and config.enabled else ()
        headers = cors.preflight_headers(request.headers.get("Origin"), origins)
        if headers is None:
            refused = json_error(403, "origin not allowed")
            refused.headers["Vary"] = "Origin"
            return refused
        return web.Response(status=204, headers=headers)

    # -- shared -------------------------------------------------------------------------

    def _key(self, domain: str, config: WebchatConfig) -> bytes:
        try:
            return self.keys.key(domain, config.session_secret_env)
        except SecretMissing as error:
            log.error("webchat_secret_missing", domain=domain, variable=error.env_name)
            raise Unconfigured from None

    def _identity_secret(self, domain: str, config: WebchatConfig) -> str | None:
        try:
            return identity_secret(config, self.environ)
        except SecretMissing as error:
            log.error("webchat_secret_missing", domain=domain, variable=error.env_name)
            raise Unconfigured from None

    def _claims(self, request: web.Request, key: bytes, domain: str, now: float) -> SessionClaims:
        token = bearer_token(request.headers.get("Authorization"))
        return verify_token(key, token, domain, now)

    def _answer(
        self, request: web.Request, config: WebchatConfig | None, response: web.Response
    ) -> web.Response:
        origins = config.allowed_origins if config is not None else ()
        response.headers.update(cors.response_headers(request.headers.get("Origin"), origins))
        return response

    def _refused(
        self,
        request: web.Request,
        config: WebchatConfig | None,
        error: BadRequest,
        *,
        cross_site: bool = True,
    ) -> web.Response:
        if isinstance(error, BodyTooLarge):
            outcome = "too_large"
        elif error.status in (401, 403):
            outcome = "bad_signature"
            self.metrics.child(self.metrics.signature_failures, "webchat").inc()
        else:
            outcome = "bad_request"
        self.metrics.child(self.metrics.webhook_requests, "webchat", outcome).inc()
        response = json_error(error.status, error.reason)
        if isinstance(error, TokenRejected):
            response.headers["WWW-Authenticate"] = 'Bearer realm="webchat"'
        return self._answer(request, config, response) if cross_site else response

    def _unavailable(self, request: web.Request, config: WebchatConfig) -> web.Response:
        self.metrics.child(self.metrics.webhook_requests, "webchat", "unavailable").inc()
        return self._answer(request, config, json_error(503, "broker unavailable, retry later"))


def _enabled(domain: str, config: WebchatConfig | None) -> WebchatConfig:
    if config is None:
        raise BadRequest(f"unknown domain {domain!r}", status=404)
    if not config.enabled:
        raise BadRequest(f"web chat is not enabled for domain {domain!r}", status=404)
    return config


def _decoded_session(body: bytes) -> SessionIn:
    if not body.strip():
        return SessionIn()
    try:
        return decode_json_text(_session_decoder.decode, body)
    except msgspec.ValidationError as error:
        raise BadRequest(f"invalid session request: {error}") from None
    except msgspec.DecodeError:
        raise BadRequest("body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None


def _socket_token(request: web.Request) -> str:
    """The session token a WebSocket request carries (the module docstring)."""
    offered = request.headers.getall("Sec-WebSocket-Protocol", [])
    if len(offered) > 1:
        raise BadRequest("send one Sec-WebSocket-Protocol header")
    protocols = [p.strip() for p in offered[0].split(",")] if offered else []
    if protocols and SOCKET_PROTOCOL not in protocols:
        raise BadRequest(f"Sec-WebSocket-Protocol must offer {SOCKET_PROTOCOL}")
    tokens = [
        p.removeprefix(TOKEN_PROTOCOL_PREFIX)
        for p in protocols
        if p.startswith(TOKEN_PROTOCOL_PREFIX)
    ]
    tokens += request.query.getall("token", [])
    if len(tokens) > 1:
        raise TokenRejected("give the session token once")
    if not tokens or not tokens[0]:
        raise TokenRejected(
            "a session token is required: subprotocol bearer.<token> or query parameter token"
        )
    return tokens[0]


def _etags(header: str | None) -> set[str]:
    if header is None:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


async def reply_pump(
    consumer: AIOKafkaConsumer,
    hub: WebchatHub,
    domains: Mapping[str, WebchatConfig],
    keys: TopicKeys,
) -> None:
    """Hand every web chat reply and business-started message read by ``consumer`` to
    the hub, opened with ``keys``, until cancelled. While no domain has web chat enabled
    (``domains`` changes with the configuration), the partitions are paused: nothing read
    would be for a visitor, and a paused consumer fetches nothing."""
    while True:
        enabled = any(config.enabled for config in domains.values())
        if enabled and consumer.paused():
            consumer.resume(*consumer.paused())
        elif not enabled and not consumer.paused() and consumer.assignment():
            consumer.pause(*consumer.assignment())
        try:
            batch = await consumer.getmany(timeout_ms=1000)
        except KafkaError as error:
            log.warning("webchat_replies_fetch_failed", error=type(error).__name__)
            await asyncio.sleep(1)
            continue
        fetched = [record for records in batch.values() for record in records]
        # A batch given up would be replies that never reach their visitors.
        for _, value in await keys.opened_persistently(fetched, reader="webchat-replies"):
            if value is None:
                continue  # its customer was erased: the egress worker dead-letters it
            try:
                outbound = OUTBOUND_DECODER.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # the egress worker dead-letters it
            config = domains.get(outbound.domain)
            if config is None or outbound.channel is not Channel.WEBCHAT:
                continue
            match outbound:
                case ReplyRequested():
                    await hub.deliver(outbound, config)
                case NotificationRequested():
                    await hub.notify(outbound, config)
                case _:
                    assert_never(outbound)
