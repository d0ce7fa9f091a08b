"""``switchboard token``: create, list, rotate and revoke the API's bearer tokens.

A token's secret is printed once, alone on stdout (``create``, ``rotate``); only its
SHA-256 is stored. ``list`` prints JSON (never a secret). The command line acts on every
domain's tokens and on platform tokens, as an operator holding the database's
credentials; each change is in the audit log with the actor ``cli``. Needs
``DATABASE_URL`` (the database the service uses) and applies the migrations first.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import msgspec

from router.api import auth
from router.api.auth import Scope
from router.api.models import (
    ROTATE_GRACE_MAX_SECONDS,
    TOKEN_LIFETIME_MAX_SECONDS,
    TOKEN_LIFETIME_MIN_SECONDS,
    TOKEN_NAME_MAX,
    TokensPage,
    TokenView,
)
from runtime import db
from runtime.audit import CLI_ACTOR
from schemas.limits import is_identifier
from switchboard.config import Config

T = TypeVar("T")

_DURATION = re.compile(r"(\d{1,9})([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> int:
    """Seconds of ``90d``, ``12h``, ``30m``, ``45s`` or ``3600``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90d, 12h or 3600")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def add_token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="manage the API's bearer tokens")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="create a token and print it once")
    create.add_argument("--domain", help="the routing domain it acts on")
    create.add_argument("--scope", choices=[str(Scope.ADMIN), str(Scope.AGENT)])
    create.add_argument("--agent-id", help="the agent an agent token acts as")
    create.add_argument(
        "--platform",
        action="store_true",
        help="a platform token: no domain, admin of every domain (instead of --domain/--scope)",
    )
    create.add_argument("--name", default="", help="a label, e.g. who holds the token")
    create.add_argument(
        "--expires-in",
        type=duration,
        help="lifetime: 90d, 12h, 30m or seconds (60 s to 366 d; default: never expires)",
    )
    listing = actions.add_parser("list", help="tokens (never their secrets), as JSON")
    where = listing.add_mutually_exclusive_group()
    where.add_argument("--domain", help="only this domain's tokens")
    where.add_argument("--platform", action="store_true", help="only platform tokens")
    listing.add_argument("--after", default="", help="only token ids above this one")
    listing.add_argument("--limit", type=int, default=100, help="at most this many")
    revoke = actions.add_parser("revoke", help="revoke a token for good (idempotent)")
    revoke.add_argument("token_id")
    rotate = actions.add_parser(
        "rotate", help="give a token a new secret, print it once; the previous one stops working"
    )
    rotate.add_argument("token_id")
    rotate.add_argument(
        "--grace",
        type=duration,
        default=0,
        help="how long the previous secret keeps working (up to 24h; default: not at all)",
    )


def _fail(message: str, code: int = 2) -> int:
    print(f"switchboard: {message}", file=sys.stderr)
    return code


def token_command(args: argparse.Namespace, config: Config) -> int:
    url = config.database.url
    if not url:
        return _fail(f"token {args.token_command} needs DATABASE_URL")
    match args.token_command:
        case "create":
            return _create(args, config, url)
        case "list":
            return _list(args, url)
        case "revoke":
            return _revoke(args, url)
        case _:
            return _rotate(args, url)


def _create(args: argparse.Namespace, config: Config, url: str) -> int:
    if args.platform:
        if args.domain is not None or args.scope is not None or args.agent_id is not None:
            return _fail("a --platform token takes no --domain, --scope nor --agent-id")
        domain, scope = None, Scope.PLATFORM
    else:
        if args.domain is None or args.scope is None:
            return _fail("token create needs --domain and --scope, or --platform")
        if args.domain not in config.domains:
            return _fail(f"unknown domain {args.domain!r} in the config")
        domain, scope = args.domain, Scope(args.scope)
        if (scope is Scope.AGENT) != (args.agent_id is not None):
            return _fail("an agent token needs --agent-id, an admin one none")
    if args.name and not is_identifier(args.name, TOKEN_NAME_MAX):
        return _fail(f"--name must be at most {TOKEN_NAME_MAX} characters, no control character")
    lifetime = args.expires_in
    if lifetime is not None and not (
        TOKEN_LIFETIME_MIN_SECONDS <= lifetime <= TOKEN_LIFETIME_MAX_SECONDS
    ):
        return _fail("--expires-in must be from 60 seconds to 366 days")

    async def create(conn: asyncpg.Connection) -> tuple[str, str]:
        if domain is not None:
            await conn.execute(
                "INSERT INTO domains (domain) VALUES ($1) ON CONFLICT DO NOTHING", domain
            )
        expires_at = None
        if lifetime is not None:
            expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
        return await auth.create_token(
            conn,
            domain=domain,
            scope=scope,
            agent_id=args.agent_id,
            name=args.name,
            expires_at=expires_at,
            actor=CLI_ACTOR,
        )

    token_id, token = _run(url, create)
    of = f"of {domain}" if domain is not None else "of every domain"
    print(f"created token {token_id} ({scope} {of}); it is shown only once:", file=sys.stderr)
    print(token)
    return 0


def _list(args: argparse.Namespace, url: str) -> int:
    if args.after and not auth.TOKEN_ID.fullmatch(args.after):
        return _fail("--after must be a token id")
    where: auth.Where = auth.EVERY_DOMAIN
    if args.platform:
        where = None
    elif args.domain is not None:
        where = args.domain

    async def listing(conn: asyncpg.Connection) -> TokensPage:
        tokens, next_after = await auth.list_tokens(
            conn, where=where, after=args.after, limit=args.limit
        )
        return TokensPage(tokens=tokens, next_after=next_after)

    page = _run(url, listing)
    print(msgspec.json.format(msgspec.json.encode(page)).decode())
    return 0


def _revoke(args: argparse.Namespace, url: str) -> int:
    token_id = args.token_id
    if not auth.TOKEN_ID.fullmatch(token_id):
        return _fail(f"{token_id!r} is not a token id")

    async def revoke(conn: asyncpg.Connection) -> TokenView | None:
        return await auth.revoke_token(conn, token_id, where=auth.EVERY_DOMAIN, actor=CLI_ACTOR)

    view = _run(url, revoke)
    if view is None:
        return _fail(f"no token {token_id}", 1)
    print(f"token {token_id} is revoked (since {_moment(view.revoked_at)})", file=sys.stderr)
    return 0


def _rotate(args: argparse.Namespace, url: str) -> int:
    token_id = args.token_id
    if not auth.TOKEN_ID.fullmatch(token_id):
        return _fail(f"{token_id!r} is not a token id")
    if not 0 <= args.grace <= ROTATE_GRACE_MAX_SECONDS:
        return _fail("--grace must be at most 24h")

    async def rotate(conn: asyncpg.Connection) -> tuple[TokenView, str] | None:
        return await auth.rotate_token(
            conn, token_id, where=auth.EVERY_DOMAIN, actor=CLI_ACTOR, grace_seconds=args.grace
        )

    try:
        rotated = _run(url, rotate)
    except auth.TokenRefused as refused:
        return _fail(f"token {token_id} cannot be rotated: {refused}", 1)
    if rotated is None:
        return _fail(f"no token {token_id}", 1)
    _, token = rotated
    after = f"in {args.grace} s" if args.grace else "now"
    print(
        f"rotated token {token_id}; its previous secret stops working {after}; the new one is"
        " shown only once:",
        file=sys.stderr,
    )
    print(token)
    return 0


def _moment(epoch: float | None) -> str:
    return "?" if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _run(url: str, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        await db.migrate_url(url)
        conn = await asyncpg.connect(url)
        try:
            return await action(conn)
        finally:
            await conn.close()

    return asyncio.run(run())
