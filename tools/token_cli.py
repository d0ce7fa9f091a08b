"""``switchboard token create``: mint a bearer token of the agent API.

The token is printed once, on stdout; only its SHA-256 is stored. Needs ``DATABASE_URL``
(the database the service uses) and applies the migrations first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from router.api.auth import Scope, create_token
from runtime import db
from switchboard.config import Config


def add_token_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="manage the agent API's bearer tokens")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="create a token and print it once")
    create.add_argument("--domain", required=True, help="the routing domain it acts on")
    create.add_argument("--scope", required=True, choices=[str(s) for s in Scope])
    create.add_argument("--agent-id", help="the agent an agent token acts as")
    create.add_argument("--name", default="", help="a label, e.g. who holds the token")


def token_command(args: argparse.Namespace, config: Config) -> int:
    if not config.database.url:
        print("switchboard: token create needs DATABASE_URL", file=sys.stderr)
        return 2
    if args.domain not in config.domains:
        print(f"switchboard: unknown domain {args.domain!r} in the config", file=sys.stderr)
        return 2
    scope = Scope(args.scope)
    if (scope is Scope.AGENT) != (args.agent_id is not None):
        print("switchboard: an agent token needs --agent-id, an admin one none", file=sys.stderr)
        return 2
    token_id, token = asyncio.run(
        _create(config.database.url, args.domain, scope, args.agent_id, args.name)
    )
    print(
        f"created token {token_id} ({scope} of {args.domain}); it is shown only once:",
        file=sys.stderr,
    )
    print(token)
    return 0


async def _create(
    url: str, domain: str, scope: Scope, agent_id: str | None, name: str
) -> tuple[str, str]:
    await db.migrate_url(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO domains (domain) VALUES ($1) ON CONFLICT DO NOTHING", domain
        )
        return await create_token(conn, domain=domain, scope=scope, agent_id=agent_id, name=name)
    finally:
        await conn.close()
