"""Bearer tokens of the API: who a request acts as, and the tokens' lifecycle.

A token is ``sbt_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored (``api_tokens``): a slow hash adds nothing to a secret that cannot be guessed.
Scopes:

- ``agent``: one agent of one domain (its own presence and figures, conversations it
  owns or was offered, its replies).
- ``admin``: everything of one domain, its tokens included.
- ``platform``: no domain; an admin of every domain, and the only scope that manages
  platform tokens and reads across domains (``platform_principal``). The optional
  bootstrap token (``api.admin_token_env``) is a platform principal, and so is every
  request when authentication is disabled.

A token never reaches another domain. 401 means no, a malformed, an unknown, a revoked or
an expired token; 403 a valid token that may not do this.

Lifecycle: a token may expire (``expires_at``); it is revoked for good (``revoked_at``,
idempotent); rotation gives the same token id a new secret, the previous one working on
only for the grace period asked for (none by default). Every change is written with its
``runtime.audit`` entry in one transaction. ``last_used_at`` is written off the
request's path, at most once a minute per token and process (``Authenticator``), and the
``UPDATE`` itself skips a row written less than a minute ago, so that several processes
do not multiply the writes.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import asyncpg
import msgspec
import structlog
from aiohttp import web

from router.api.config import AuthMode
from router.api.models import TokenScope, TokenView, epoch
from runtime.audit import CLI_ACTOR, record_action
from runtime.db import DATABASE_ERRORS
from runtime.logging import new_log_id

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "sbt_"  # noqa: S105 -- a public prefix, not a secret
REALM = 'Bearer realm="switchboard"'
MAX_TOKEN_CHARS = 512
#: Visible ASCII: wider than RFC 6750's b64token, so that an operator's bootstrap token may
#: hold any punctuation. Anything else (non-ASCII, controls, and the lone surrogates aiohttp
#: decodes bytes that are not UTF-8 to) is refused before it is hashed or compared.
_TOKEN = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_CHARS}}}")
TOKEN_ID = re.compile(r"[0-9a-f]{1,32}")

BOOTSTRAP_ACTOR: Final = "bootstrap"
LOCAL_ACTOR: Final = "local"

LAST_USED_EVERY_SECONDS = 60.0
"""``last_used_at`` is written at most this often per token."""
PAGE_MAX = 1000

Scope = TokenScope
"""The scopes, under the name callers have always imported from here."""


class _Every(enum.Enum):
    DOMAIN = "every domain"


EVERY_DOMAIN: Final = _Every.DOMAIN
"""Where a token is looked for: every domain's and the platform's (the CLI)."""
Where = str | None | Literal[_Every.DOMAIN]
"""A domain, ``None`` for platform tokens, or ``EVERY_DOMAIN``."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as."""

    scope: Scope
    domain: str | None
    """The token's domain; None: every domain (a platform principal)."""
    agent_id: str | None = None
    token_id: str | None = None
    """The token's id, ``bootstrap`` for the bootstrap token, None without authentication."""

    @property
    def is_admin(self) -> bool:
        """Acts on everything of the domain it was authenticated for."""
        return self.scope in (Scope.ADMIN, Scope.PLATFORM)

    @property
    def is_platform(self) -> bool:
        return self.scope is Scope.PLATFORM

    @property
    def actor(self) -> str:
        """Who the audit log says acted: the token id, ``bootstrap`` or ``local``."""
        return self.token_id or LOCAL_ACTOR

    def is_agent(self, agent_id: str) -> bool:
        return self.scope is Scope.AGENT and self.agent_id == agent_id


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- the tokens' lifecycle ----------------------------------------------------------

_VIEW = (
    "token_id, scope, domain, agent_id, name, created_at, created_by, expires_at,"
    " last_used_at, rotated_at, revoked_at, revoked_by"
)
#: ``$1``: look in every domain; ``$2``: else this domain (NULL: platform tokens).
_WHERE = "($1::boolean OR domain IS NOT DISTINCT FROM $2::text)"
# The f-strings below join fixed column lists and conditions: no value is formatted in.
_GET = f"SELECT {_VIEW} FROM api_tokens WHERE {_WHERE} AND token_id = $3"  # noqa: S608
_LIST = (
    f"SELECT {_VIEW} FROM api_tokens WHERE {_WHERE} AND token_id > $3"  # noqa: S608
    " ORDER BY token_id LIMIT $4"
)
_LOCK = (
    "SELECT revoked_at IS NOT NULL AS revoked, coalesce(expires_at <= now(), false)"  # noqa: S608
    f" AS expired, token_sha256, domain FROM api_tokens WHERE {_WHERE} AND token_id = $3"
    " FOR UPDATE"
)
_ROTATE = (
    "UPDATE api_tokens SET token_sha256 = $2, rotated_at = now(),"  # noqa: S608
    " previous_sha256 = CASE WHEN $4::integer > 0 THEN $3 END,"
    " previous_valid_until = CASE WHEN $4::integer > 0"
    " THEN now() + $4::integer * interval '1 second' END"
    f" WHERE token_id = $1 RETURNING {_VIEW}"
)
_REVOKE = (
    "UPDATE api_tokens SET revoked_at = now(), revoked_by = $4,"  # noqa: S608
    " previous_sha256 = NULL, previous_valid_until = NULL"
    f" WHERE {_WHERE} AND token_id = $3 AND revoked_at IS NULL RETURNING {_VIEW}"
)


class TokenRefused(Exception):
    """The token cannot be rotated (revoked, or expired): the caller's mistake."""


def _view(row: asyncpg.Record) -> TokenView:
    return TokenView(
        token_id=row["token_id"],
        scope=Scope(row["scope"]),
        domain=row["domain"],
        agent_id=row["agent_id"],
        name=row["name"],
        created_at=row["created_at"].timestamp(),
        created_by=row["created_by"],
        expires_at=epoch(row["expires_at"]),
        last_used_at=epoch(row["last_used_at"]),
        rotated_at=epoch(row["rotated_at"]),
        revoked_at=epoch(row["revoked_at"]),
        revoked_by=row["revoked_by"],
    )


def _where(where: Where) -> tuple[bool, str | None]:
    return (True, None) if where is EVERY_DOMAIN else (False, where)


async def create_token(
    conn: asyncpg.Connection,
    *,
    domain: str | None,
    scope: Scope,
    agent_id: str | None = None,
    name: str = "",
    expires_at: datetime | None = None,
    actor: str = CLI_ACTOR,
) -> tuple[str, str]:
    """Store a new token and its audit entry; return ``(token_id, token)``. The token
    is not kept anywhere. A platform token has no domain, every other one has one."""
    if (scope is Scope.AGENT) != (agent_id is not None):
        raise ValueError("an agent token needs --agent-id, an admin token takes none")
    if (scope is Scope.PLATFORM) != (domain is None):
        raise ValueError("a platform token has no domain, every other token has one")
    token = new_token()
    token_id = new_log_id()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO api_tokens (domain, token_id, token_sha256, scope, agent_id, name,"
            " expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            domain,
            token_id,
            token_sha256(token),
            str(scope),
            agent_id,
            name,
            expires_at,
            actor,
        )
        await record_action(
            conn,
            actor=actor,
            action="token.create",
            domain=domain,
            target=f"token {token_id}",
            detail={"scope": str(scope), "agent_id": agent_id, "expires_at": epoch(expires_at)},
        )
    log.info("token_created", token_id=token_id, scope=str(scope), domain=domain, actor=actor)
    return token_id, token


async def get_token(conn: asyncpg.Connection, token_id: str, *, where: Where) -> TokenView | None:
    every, domain = _where(where)
    row = await conn.fetchrow(
        _GET,
        every,
        domain,
        token_id,
    )
    return None if row is None else _view(row)


async def list_tokens(
    conn: asyncpg.Connection, *, where: Where, after: str = "", limit: int = 100
) -> tuple[list[TokenView], str | None]:
    """Tokens with an id above ``after``, by id, at most ``limit`` (up to ``PAGE_MAX``),
    revoked ones included; and the ``after`` of the next page (None on the last)."""
    limit = min(max(limit, 1), PAGE_MAX)
    every, domain = _where(where)
    rows = await conn.fetch(
        _LIST,
        every,
        domain,
        after,
        limit,
    )
    views = [_view(row) for row in rows]
    return views, views[-1].token_id if len(views) == limit else None


async def rotate_token(
    conn: asyncpg.Connection,
    token_id: str,
    *,
    where: Where,
    actor: str,
    grace_seconds: int = 0,
) -> tuple[TokenView, str] | None:
    """A new secret for the token (None: no such token there); the previous secret works
    on for ``grace_seconds`` only. ``TokenRefused`` for a revoked or an expired token."""
    every, domain = _where(where)
    token = new_token()
    async with conn.transaction():
        row = await conn.fetchrow(
            _LOCK,
            every,
            domain,
            token_id,
        )
        if row is None:
            return None
        if row["revoked"]:
            raise TokenRefused("the token is revoked")
        if row["expired"]:
            raise TokenRefused("the token expired: create another one")
        updated = await conn.fetchrow(
            _ROTATE,
            token_id,
            token_sha256(token),
            row["token_sha256"],
            grace_seconds,
        )
        assert updated is not None
        await record_action(
            conn,
            actor=actor,
            action="token.rotate",
            domain=row["domain"],
            target=f"token {token_id}",
            detail={"grace_seconds": grace_seconds},
        )
    log.info("token_rotated", token_id=token_id, grace_seconds=grace_seconds, actor=actor)
    return _view(updated), token


async def revoke_token(
    conn: asyncpg.Connection, token_id: str, *, where: Where, actor: str
) -> TokenView | None:
    """Revoke the token for good (None: no such token there). Revoking a revoked token
    changes nothing and records nothing."""
    every, domain = _where(where)
    async with conn.transaction():
        row = await conn.fetchrow(
            _REVOKE,
            every,
            domain,
            token_id,
            actor,
        )
        if row is None:
            return await get_token(conn, token_id, where=where)
        view = _view(row)
        await record_action(
            conn,
            actor=actor,
            action="token.revoke",
            domain=view.domain,
            target=f"token {token_id}",
            detail={"scope": str(view.scope)},
        )
    log.info("token_revoked", token_id=token_id, actor=actor)
    return view


# -- authentication -----------------------------------------------------------------


def _error(status: int, reason: str, **headers: str) -> web.HTTPException:
    cls = web.HTTPUnauthorized if status == 401 else web.HTTPForbidden
    return cls(
        text=msgspec.json.encode({"error": reason}).decode(),
        content_type="application/json",
        headers=headers,
    )


def forbidden(reason: str) -> web.HTTPException:
    return _error(403, reason)


def _invalid(reason: str) -> web.HTTPException:
    return _error(401, reason, **{"WWW-Authenticate": REALM + ', error="invalid_token"'})


_LOOKUP = (
    "SELECT domain, token_id, scope, agent_id, coalesce(expires_at <= now(), false) AS expired"
    " FROM api_tokens WHERE revoked_at IS NULL AND (token_sha256 = $1"
    " OR (previous_sha256 = $1 AND previous_valid_until > now()))"
)
_TOUCH = (
    "UPDATE api_tokens SET last_used_at = now() WHERE token_id = $1"
    " AND (last_used_at IS NULL OR last_used_at < now() - $2::float8 * interval '1 second')"
)


class Authenticator:
    """Turns a request's ``Authorization`` header into a ``Principal`` (or 401/403)."""

    def __init__(
        self,
        mode: AuthMode,
        bootstrap_token: str | None,
        *,
        last_used_every: float = LAST_USED_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mode = mode
        self._bootstrap = token_sha256(bootstrap_token) if bootstrap_token else None
        self._last_used_every = last_used_every
        self._clock = clock
        self._touched: dict[str, float] = {}
        """Token id -> when this process last wrote (or tried to write) its last use."""
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def mode(self) -> AuthMode:
        return self._mode

    async def principal(self, request: web.Request, pool: asyncpg.Pool, domain: str) -> Principal:
        """The principal for ``domain`` (a platform principal passes as its admin);
        raises 401 or 403 as a JSON error."""
        principal = await self._authenticate(request, pool)
        if not principal.is_platform and principal.domain != domain:
            raise forbidden("the token belongs to another domain")
        return principal

    async def platform_principal(self, request: web.Request, pool: asyncpg.Pool) -> Principal:
        """A platform principal (platform or bootstrap token, or no authentication);
        401 without a valid token, 403 for any other valid token."""
        principal = await self._authenticate(request, pool)
        if not principal.is_platform:
            raise forbidden("needs a platform token")
        return principal

    async def settle(self) -> None:
        """Wait for the ``last_used_at`` writes under way."""
        while self._writes:
            await asyncio.gather(*self._writes)

    async def _authenticate(self, request: web.Request, pool: asyncpg.Pool) -> Principal:
        if self._mode is AuthMode.DISABLED:
            return Principal(scope=Scope.PLATFORM, domain=None)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _error(401, "missing bearer token", **{"WWW-Authenticate": REALM})
        if not _TOKEN.fullmatch(token):
            raise _invalid(
                f"malformed bearer token: at most {MAX_TOKEN_CHARS} visible ASCII characters"
            )
        digest = token_sha256(token)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(scope=Scope.PLATFORM, domain=None, token_id=BOOTSTRAP_ACTOR)
        row = await pool.fetchrow(_LOOKUP, digest)
        if row is None:
            raise _invalid("unknown or revoked token")
        if row["expired"]:
            raise _invalid("expired token")
        self._touch(pool, row["token_id"])
        return Principal(
            scope=Scope(row["scope"]),
            domain=row["domain"],
            agent_id=row["agent_id"],
            token_id=row["token_id"],
        )

    def _touch(self, pool: asyncpg.Pool, token_id: str) -> None:
        now = self._clock()
        if now - self._touched.get(token_id, -self._last_used_every) < self._last_used_every:
            return
        self._touched[token_id] = now
        task = asyncio.create_task(self._write_last_use(pool, token_id))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_last_use(self, pool: asyncpg.Pool, token_id: str) -> None:
        try:
            await pool.execute(_TOUCH, token_id, self._last_used_every)
        except DATABASE_ERRORS as error:
            # The next request tries again; the figure is informative, the request served.
            self._touched.pop(token_id, None)
            log.warning("token_last_use_not_written", token_id=token_id, error=type(error).__name__)
