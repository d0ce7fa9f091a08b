"""Bearer-token authentication and the two scopes of the agent API.

A token is ``sbt_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored (``api_tokens``): a slow hash adds nothing to a secret that cannot be guessed.
Each token belongs to one domain and has a scope: ``admin`` acts on everything of its
domain, ``agent`` acts as one agent (its own presence and figures, conversations it owns
or was offered, its replies). A token never reaches another domain. The optional
bootstrap admin token (``api.admin_token_env``) is an operator's credential valid on
every domain. 401 means no, a malformed or an unknown token; 403 a valid token that may
not do this.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

import asyncpg
import msgspec
from aiohttp import web

from router.api.config import AuthMode

TOKEN_PREFIX = "sbt_"  # noqa: S105 -- a public prefix, not a secret
REALM = 'Bearer realm="switchboard"'
MAX_TOKEN_CHARS = 512
#: Visible ASCII: wider than RFC 6750's b64token, so that an operator's bootstrap token may
#: hold any punctuation. Anything else (non-ASCII, controls, and the lone surrogates aiohttp
#: decodes bytes that are not UTF-8 to) is refused before it is hashed or compared.
_TOKEN = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_CHARS}}}")


class Scope(enum.StrEnum):
    ADMIN = "admin"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as."""

    scope: Scope
    domain: str | None
    """The token's domain; None: every domain (bootstrap token, or auth disabled)."""
    agent_id: str | None = None
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope is Scope.ADMIN

    def is_agent(self, agent_id: str) -> bool:
        return self.scope is Scope.AGENT and self.agent_id == agent_id


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    conn: asyncpg.Connection,
    *,
    domain: str,
    scope: Scope,
    agent_id: str | None = None,
    name: str = "",
) -> tuple[str, str]:
    """Store a new token; return ``(token_id, token)``. The token is not kept anywhere."""
    if (scope is Scope.AGENT) != (agent_id is not None):
        raise ValueError("an agent token needs --agent-id, an admin token takes none")
    token = new_token()
    token_id = uuid.uuid4().hex[:12]
    await conn.execute(
        "INSERT INTO api_tokens (domain, token_id, token_sha256, scope, agent_id, name)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        domain,
        token_id,
        token_sha256(token),
        str(scope),
        agent_id,
        name,
    )
    return token_id, token


def _error(status: int, reason: str, **headers: str) -> web.HTTPException:
    cls = web.HTTPUnauthorized if status == 401 else web.HTTPForbidden
    return cls(
        text=msgspec.json.encode({"error": reason}).decode(),
        content_type="application/json",
        headers=headers,
    )


def forbidden(reason: str) -> web.HTTPException:
    return _error(403, reason)


class Authenticator:
    """Turns a request's ``Authorization`` header into a ``Principal`` (or 401/403)."""

    def __init__(self, mode: AuthMode, bootstrap_token: str | None) -> None:
        self._mode = mode
        self._bootstrap = token_sha256(bootstrap_token) if bootstrap_token else None

    @property
    def mode(self) -> AuthMode:
        return self._mode

    async def principal(self, request: web.Request, pool: asyncpg.Pool, domain: str) -> Principal:
        """The principal for ``domain``; raises 401 or 403 as a JSON error."""
        if self._mode is AuthMode.DISABLED:
            return Principal(scope=Scope.ADMIN, domain=None)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _error(401, "missing bearer token", **{"WWW-Authenticate": REALM})
        if not _TOKEN.fullmatch(token):
            raise _error(
                401,
                f"malformed bearer token: at most {MAX_TOKEN_CHARS} visible ASCII characters",
                **{"WWW-Authenticate": REALM + ', error="invalid_token"'},
            )
        digest = token_sha256(token)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return Principal(scope=Scope.ADMIN, domain=None, token_id="bootstrap")  # noqa: S106 -- a label
        row = await pool.fetchrow(
            "SELECT domain, token_id, scope, agent_id FROM api_tokens"
            " WHERE token_sha256 = $1 AND revoked_at IS NULL",
            digest,
        )
        if row is None:
            raise _error(
                401,
                "unknown or revoked token",
                **{"WWW-Authenticate": REALM + ', error="invalid_token"'},
            )
        if row["domain"] != domain:
            raise forbidden("the token belongs to another domain")
        return Principal(
            scope=Scope(row["scope"]),
            domain=row["domain"],
            agent_id=row["agent_id"],
            token_id=row["token_id"],
        )
