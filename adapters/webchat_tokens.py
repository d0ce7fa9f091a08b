"""Web chat credentials: the session token a visitor holds, and the signed login a
customer's backend vouches for a visitor with. Pure functions, no I/O; the routes
(``adapters.webchat_routes``) read the secrets and the clock and pass them in.

Session tokens
--------------
Stateless, so that any adapter process behind the load balancer verifies what another
issued: ``v1.<claims>.<mac>`` where ``<claims>`` is the unpadded base64url of the JSON
array ``[domain, session_id, expires_at, user_id|null]`` and ``<mac>`` the unpadded
base64url of HMAC-SHA256(key, ``"v1." + <claims>``). The key is derived per domain from
the domain's session secret: ``key = HMAC-SHA256(secret, "switchboard webchat session
v1\\x00" + domain)``, so a token of one domain never verifies in another even when two
domains share a secret. A token is at most ``TOKEN_MAX`` characters, all of them
``[A-Za-z0-9_.-]`` (an HTTP token character, so it may travel as a WebSocket
subprotocol). Verification compares MACs in constant time before it reads the claims,
then checks the domain and the expiry; it refuses with ``TokenRejected`` (401) and a
reason that never quotes the token. There is no revocation list: a token stops working
at its ``expires_at``; refreshing issues a new one with the same claims and a new expiry.

Signed login
------------
The customer's backend signs who the visitor is, with the domain's identity secret
(``identity_secret_env``), and the page hands it to session creation::

    {"user_id": "42", "email": "ann@example.com", "phone": "+14155550100",
     "expires_at": 1767225600, "signature": "<hex>"}

``signature`` is the lower-case hex HMAC-SHA256, under the identity secret, of the UTF-8
canonical string: these six lines joined by ``\\n`` (a newline, no trailing one)::

    switchboard-webchat-login-v1
    <domain>
    <user_id>
    <email, or nothing when absent>
    <phone, or nothing when absent>
    <expires_at, decimal integer seconds since the epoch>

No field may hold a control character (a newline included) and an empty ``email`` or
``phone`` is refused (leave it out instead), so two different logins never share a
canonical string. The login is refused when its ``expires_at`` has passed (401) or lies
more than ``LOGIN_LIFETIME_MAX`` seconds ahead (400): sign it just before the page needs
it, for a few minutes. A login may be replayed until it expires (it is stateless too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import msgspec
import structlog

from adapters.base import BadRequest, SignatureRejected, constant_time_equal, hmac_hex
from adapters.config import resolve_secret
from schemas import CustomerLinkRequested
from schemas.identity import normalize_identity
from schemas.limits import ADDRESS_MAX, DOMAIN_MAX, UnusableValue, checked_identifier

log = structlog.get_logger(__name__)

TOKEN_VERSION = "v1"  # noqa: S105 (the format's version, not a secret)
TOKEN_MAX = 2560
"""Longest token accepted: one issued here is at most about 2,300 characters (a user id
of 320 four-byte characters), usually under 200."""
TOKEN_SECONDS_MIN = 60
TOKEN_SECONDS_MAX = 7 * 24 * 3600
"""Bounds of ``webchat.session_token_seconds``: a minute to a week."""
LOGIN_LIFETIME_MAX = 3600
"""A login's ``expires_at`` at most an hour ahead of our clock."""
PHONE_MAX = 32
"""A login's phone number as sent (spaces, dashes, parentheses allowed around E.164)."""
SIGNATURE_MAX = 128
"""A login's signature (64 hex digits for HMAC-SHA256)."""
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")
SESSION_ID_BYTES = 24
"""Random bytes of a session id the server picks: 32 base64url characters."""
LOGIN_SOURCE = "webchat_login"

_TOKEN = re.compile(r"v1\.([A-Za-z0-9_-]{1,2500})\.([A-Za-z0-9_-]{43})")
_KEY_CONTEXT = b"switchboard webchat session v1\x00"
_LOGIN_CONTEXT = "switchboard-webchat-login-v1"
#: Event ids of link commands: the same login, retried, publishes the same ids (the
#: router drops duplicates by id).
_LINK_NAMESPACE = uuid.UUID("0d9c8a43-54f1-4b8e-8f6a-7f1f3c5be2a1")


class TokenRejected(BadRequest):
    """The request's session token is missing, malformed, forged, expired or of another
    domain: 401 with the reason, never the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=401)


class SessionClaims(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What a session token says: whose session it is and until when."""

    domain: Annotated[str, msgspec.Meta(max_length=DOMAIN_MAX)]
    session_id: Annotated[str, msgspec.Meta(pattern=f"^{SESSION_ID.pattern}$")]
    expires_at: int
    """Seconds since the epoch."""
    user_id: Annotated[str, msgspec.Meta(max_length=ADDRESS_MAX)] | None = None
    """The signed-in user (a verified login): the session's customer is ``user:<id>``."""

    @property
    def customer_id(self) -> str | None:
        return None if self.user_id is None else f"user:{self.user_id}"


_claims_decoder = msgspec.json.Decoder(SessionClaims)


def new_session_id() -> str:
    """A random session id (32 characters of ``[A-Za-z0-9_-]``)."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def session_key(secret: str | bytes, domain: str) -> bytes:
    """The key that signs ``domain``'s session tokens, derived from its secret."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, _KEY_CONTEXT + domain.encode(), hashlib.sha256).digest()


def issue_token(key: bytes, claims: SessionClaims) -> str:
    payload = _b64(msgspec.json.encode(claims))
    return f"{TOKEN_VERSION}.{payload}.{_mac(key, payload)}"


def verify_token(key: bytes, token: str, domain: str, now: float) -> SessionClaims:
    """The claims of a token that ``key`` signed for ``domain`` and that has not expired;
    ``TokenRejected`` otherwise."""
    match = _TOKEN.fullmatch(token) if len(token) <= TOKEN_MAX else None
    if match is None:
        raise TokenRejected("malformed session token")
    payload, mac = match.groups()
    if not hmac.compare_digest(_mac(key, payload), mac):
        raise TokenRejected("invalid session token")
    try:
        claims = _claims_decoder.decode(_unb64(payload))
    except (msgspec.DecodeError, msgspec.ValidationError, binascii.Error, ValueError):
        raise TokenRejected("malformed session token") from None
    if claims.domain != domain:
        raise TokenRejected("session token of another domain")
    if now >= claims.expires_at:
        raise TokenRejected("session token expired")
    return claims


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; ``TokenRejected`` when
    there is none."""
    if authorization is None:
        raise TokenRejected("an Authorization: Bearer <session token> header is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected("the Authorization header must be Bearer <session token>")
    return token.strip()


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, f"{TOKEN_VERSION}.{payload}".encode(), hashlib.sha256).digest()
    return _b64(digest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionKeys:
    """Each domain's token key: from its ``session_secret_env`` variable, else from a
    secret this process drew at random when it started (a warning says so once per
    domain: tokens then verify in this process only, and die with it)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._generated = secrets.token_bytes(32)
        self._warned: set[str] = set()

    def key(self, domain: str, secret_env: str | None) -> bytes:
        """Raises ``SecretMissing`` when the named variable is unset."""
        if secret_env is not None:
            return session_key(resolve_secret(secret_env, self._environ), domain)
        if domain not in self._warned:
            self._warned.add(domain)
            log.warning(
                "webchat_session_secret_generated",
                domain=domain,
                hint="set webchat.session_secret_env when several adapter processes serve"
                " web chat, or tokens die with this process",
            )
        return session_key(self._generated, domain)


# -- signed login -------------------------------------------------------------------------


class LoginIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A login signed by the customer's backend (the module docstring)."""

    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=ADDRESS_MAX)]
    email: Annotated[str, msgspec.Meta(max_length=ADDRESS_MAX)] | None = None
    phone: Annotated[str, msgspec.Meta(max_length=PHONE_MAX)] | None = None
    expires_at: int
    signature: Annotated[str, msgspec.Meta(max_length=SIGNATURE_MAX)]


@dataclass(frozen=True, slots=True)
class VerifiedLogin:
    user_id: str
    identities: tuple[str, ...]
    """``email:<lower case>`` and ``phone:+E164``, as ``normalize_identity`` spells them."""
    expires_at: int

    @property
    def customer_id(self) -> str:
        return f"user:{self.user_id}"


def login_canonical(domain: str, login: LoginIn) -> str:
    """The string a login's signature signs (the module docstring)."""
    return "\n".join(
        (
            _LOGIN_CONTEXT,
            domain,
            login.user_id,
            login.email or "",
            login.phone or "",
            str(login.expires_at),
        )
    )


def sign_login(secret: str, domain: str, login: LoginIn) -> str:
    """What the customer's backend computes (here for tests and examples)."""
    return hmac_hex(secret, login_canonical(domain, login).encode())


def verify_login(secret: str, domain: str, login: LoginIn, now: float) -> VerifiedLogin:
    """The login's user and identities; ``BadRequest`` (400) for an unusable field,
    ``SignatureRejected`` (403) for a wrong signature, ``TokenRejected`` (401) once it
    expired. Fields are checked before the signature: no control character may reach
    the canonical string."""
    try:
        for name, value in (("user_id", login.user_id), ("email", login.email)):
            if value is not None:
                checked_identifier(f"login {name}", value, ADDRESS_MAX)
        if login.phone is not None:
            checked_identifier("login phone", login.phone, PHONE_MAX)
    except UnusableValue as error:
        raise BadRequest(str(error)) from None
    if login.email == "" or login.phone == "":
        raise BadRequest("login email and phone are left out rather than empty")
    if login.expires_at > now + LOGIN_LIFETIME_MAX:
        raise BadRequest(f"login expires_at is more than {LOGIN_LIFETIME_MAX} s ahead")
    expected = sign_login(secret, domain, login)
    if not constant_time_equal(expected, login.signature):
        raise SignatureRejected("login signature does not verify")
    if now >= login.expires_at:
        raise TokenRejected("login expired")
    user = _identity("user", login.user_id, "login user_id")
    identities = []
    if login.email is not None:
        identities.append(_identity("email", login.email, "login email"))
    if login.phone is not None:
        identities.append(_identity("phone", login.phone, "login phone"))
    return VerifiedLogin(
        user.removeprefix("user:"), tuple(dict.fromkeys(identities)), login.expires_at
    )


def _identity(kind: str, value: str, field: str) -> str:
    try:
        identity = normalize_identity(f"{kind}:{value}")
    except UnusableValue as error:
        raise BadRequest(f"{field} is unusable: {error}") from None
    if kind == "user" and identity != f"user:{value}":
        raise BadRequest(f"{field} is unusable: it starts or ends with a blank")
    return identity


def link_event_id(domain: str, login: VerifiedLogin, identity: str) -> str:
    """The id of the link command of ``identity`` for this login (stable across retries)."""
    name = f"{domain}/{login.customer_id}/{identity}/{login.expires_at}"
    return str(uuid.uuid5(_LINK_NAMESPACE, name))


def link_requests(domain: str, login: VerifiedLogin, now: float) -> list[CustomerLinkRequested]:
    """The commands linking each identity of a verified login to its user (for the
    router, on ``agents.events``)."""
    return [
        CustomerLinkRequested(
            id=link_event_id(domain, login, identity),
            domain=domain,
            occurred_at=now,
            customer_id=login.customer_id,
            identity=identity,
            source=LOGIN_SOURCE,
        )
        for identity in login.identities
    ]
