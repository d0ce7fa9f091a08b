"""API tokens (create, list, rotate, revoke) and the audit log, under
``/v1/domains/{domain}/`` and ``/v1/`` (``router.api.auth`` holds the rules)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import msgspec
import structlog
from aiohttp import web

from router.api import auth
from router.api.auth import Principal, Scope
from router.api.models import (
    TOKEN_LIFETIME_MAX_SECONDS,
    TOKEN_LIFETIME_MIN_SECONDS,
    Caller,
    ErrorBody,
    PlatformTokenIn,
    RotateIn,
    TokenIn,
    TokenSecret,
    TokensPage,
    TokenView,
)
from router.api.routes import (
    API,
    bad_request,
    enter,
    guarded,
    not_found,
    query_int,
    read_json,
    require_admin,
    respond,
)
from runtime import audit
from runtime.appkeys import DB_POOL
from schemas.limits import (
    DOMAIN_MAX,
)

log = structlog.get_logger(__name__)

DOMAIN = re.compile(rf"[A-Za-z0-9_-]{{1,{DOMAIN_MAX}}}")


# -- tokens -------------------------------------------------------------------------


async def _token_owner(request: web.Request) -> tuple[str | None, Principal]:
    """Whose tokens the path names (a domain, or None: the platform's), and a principal
    that may manage them: the domain's admin or a platform principal for a domain's, a
    platform principal for the platform's."""
    if "domain" in request.match_info:
        domain, principal = await enter(request)
        require_admin(principal)
        return domain, principal
    return None, await request.app[API].auth.platform_principal(request, request.app[DB_POOL])


def _token_id(request: web.Request) -> str:
    token_id = request.match_info["token_id"]
    if not auth.TOKEN_ID.fullmatch(token_id):
        raise bad_request("token_id must be 1 to 32 lowercase hexadecimal digits")
    return token_id


def _expiry(body: PlatformTokenIn, now: float) -> datetime | None:
    if body.expires_in_seconds is not None:
        return datetime.fromtimestamp(now, UTC) + timedelta(seconds=body.expires_in_seconds)
    if body.expires_at is None:
        return None
    if not TOKEN_LIFETIME_MIN_SECONDS <= body.expires_at - now <= TOKEN_LIFETIME_MAX_SECONDS:
        raise bad_request("expires_at must lie 60 seconds to 366 days ahead")
    return datetime.fromtimestamp(body.expires_at, UTC)


def _with_secret(view: TokenView, token: str) -> TokenSecret:
    return TokenSecret(**msgspec.structs.asdict(view), token=token)


async def post_token(request: web.Request) -> web.Response:
    domain, principal = await _token_owner(request)
    body: PlatformTokenIn
    if domain is None:
        body = await read_json(request, PlatformTokenIn)
        scope, agent_id = Scope.PLATFORM, None
    else:
        body = domain_body = await read_json(request, TokenIn)
        scope, agent_id = Scope(domain_body.scope), domain_body.agent_id
    expires_at = _expiry(body, time.time())
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        token_id, token = await auth.create_token(
            conn,
            domain=domain,
            scope=scope,
            agent_id=agent_id,
            name=body.name,
            expires_at=expires_at,
            actor=principal.actor,
        )
        view = await auth.get_token(conn, token_id, where=domain)
    assert view is not None
    return respond(_with_secret(view, token), status=201)


async def get_tokens(request: web.Request) -> web.Response:
    domain, _ = await _token_owner(request)
    after = request.query.get("after", "")
    if after and not auth.TOKEN_ID.fullmatch(after):
        raise bad_request("after must be a token id (the previous page's next_after)")
    limit = query_int(request, "limit", 100, 1, auth.PAGE_MAX)
    async with request.app[DB_POOL].acquire() as conn:
        tokens, next_after = await auth.list_tokens(conn, where=domain, after=after, limit=limit)
    return respond(TokensPage(tokens=tokens, next_after=next_after))


async def get_token(request: web.Request) -> web.Response:
    domain, _ = await _token_owner(request)
    token_id = _token_id(request)
    async with request.app[DB_POOL].acquire() as conn:
        view = await auth.get_token(conn, token_id, where=domain)
    if view is None:
        raise not_found(f"no token {token_id} here")
    return respond(view)


async def post_rotate(request: web.Request) -> web.Response:
    domain, principal = await _token_owner(request)
    token_id = _token_id(request)
    body = await read_json(request, RotateIn)
    try:
        async with request.app[DB_POOL].acquire() as conn:
            rotated = await auth.rotate_token(
                conn,
                token_id,
                where=domain,
                actor=principal.actor,
                grace_seconds=body.grace_seconds,
            )
    except auth.TokenRefused as refused:
        return respond(ErrorBody(error=str(refused)), status=409)
    if rotated is None:
        raise not_found(f"no token {token_id} here")
    view, token = rotated
    return respond(_with_secret(view, token))


async def delete_token(request: web.Request) -> web.Response:
    domain, principal = await _token_owner(request)
    token_id = _token_id(request)
    async with request.app[DB_POOL].acquire() as conn:
        view = await auth.revoke_token(conn, token_id, where=domain, actor=principal.actor)
    if view is None:
        raise not_found(f"no token {token_id} here")
    return web.Response(status=204)


# -- audit log ----------------------------------------------------------------------


async def _audit_page(request: web.Request, domain: str | None) -> web.Response:
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 100, 1, audit.PAGE_MAX)
    action = request.query.get("action")
    if action is not None and not (
        len(action) <= audit.ACTION_MAX and re.fullmatch(audit.ACTION_PATTERN, action)
    ):
        raise bad_request("action must be an action name, e.g. token.create")
    async with request.app[DB_POOL].acquire() as conn:
        page = await audit.list_actions(
            conn, domain=domain, after=after, limit=limit, action=action
        )
    return respond(page)


async def get_domain_audit(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    return await _audit_page(request, domain)


async def get_audit(request: web.Request) -> web.Response:
    await request.app[API].auth.platform_principal(request, request.app[DB_POOL])
    domain = request.query.get("domain")
    if domain is not None and not DOMAIN.fullmatch(domain):
        raise bad_request(f"domain must be 1 to {DOMAIN_MAX} letters, digits, _ or -")
    return await _audit_page(request, domain)


async def get_me(request: web.Request) -> web.Response:
    """Who the caller's token is: an agent desktop learns its agent id from its token."""
    domain, principal = await enter(request)
    return respond(
        Caller(
            domain=domain,
            scope=principal.scope,
            agent_id=principal.agent_id,
            token_id=principal.token_id,
        )
    )


def token_routes(base: str) -> list[web.RouteDef]:
    """The audit log's and the tokens' routes, of a domain (``base``) and of the platform."""
    return [
        web.get(base + "/me", guarded(get_me)),
        web.get(base + "/audit", guarded(get_domain_audit)),
        web.get("/v1/audit", guarded(get_audit)),
        *(
            route
            for tokens in (base + "/tokens", "/v1/tokens")
            for route in (
                web.post(tokens, guarded(post_token)),
                web.get(tokens, guarded(get_tokens)),
                web.get(tokens + "/{token_id}", guarded(get_token)),
                web.post(tokens + "/{token_id}/rotate", guarded(post_rotate)),
                web.delete(tokens + "/{token_id}", guarded(delete_token)),
            )
        ),
    ]
