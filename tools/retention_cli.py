"""``switchboard retention run [--domain D]``: one retention pass now (``runtime.retention``).

For operators: what the routers' job does every ``[retention] interval``, at once, with the
periods of the runtime configuration version the service runs (the file's when none is
stored yet). A domain whose pass a router is running meanwhile is reported ``busy`` and
left to it (exit status 1). Prints one JSON document: per domain, the rows changed and the
statements that changed them; audited with actor ``cli``. Needs ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
import msgspec
import structlog

from runtime.audit import CLI_ACTOR
from runtime.db import DATABASE_ERRORS
from runtime.retention import RetentionConfig, run_pass, summary
from switchboard.config import Config
from tools.database_tool import running_document

log = structlog.get_logger("switchboard")


def add_retention_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "retention", help="expire what the domains' retention periods no longer keep"
    )
    actions = parser.add_subparsers(dest="retention_command", required=True)
    run = actions.add_parser("run", help="one pass now; prints the counts as JSON")
    run.add_argument("--domain", help="only this domain (default: every domain, and unowned rows)")


def retention_command(args: argparse.Namespace, config: Config) -> int:
    if not config.database.url:
        print("switchboard: retention needs DATABASE_URL", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, config, config.database.url))
    except DATABASE_ERRORS as error:
        print(f"switchboard: retention failed: {type(error).__name__}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, config: Config, url: str) -> int:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            document = await running_document(conn, config)
        domains: dict[str, RetentionConfig] = {
            name: domain.retention for name, domain in document.domains.items()
        }
        if args.domain is not None and args.domain not in domains:
            print(f"switchboard: unknown domain {args.domain!r}", file=sys.stderr)
            return 2
        passes = await run_pass(pool, domains, config.retention, actor=CLI_ACTOR, only=args.domain)
    finally:
        await pool.close()
    log.info("retention_run", **summary(passes))
    out: dict[str, object] = {
        "domains": {p.domain: p.as_json() for p in passes if p.domain is not None}
    }
    for report in passes:
        if report.domain is None:
            out["unowned"] = report.as_json()  # the rows no domain owns, and webhook tokens
    print(msgspec.json.format(msgspec.json.encode(out)).decode())
    return 1 if any(p.busy for p in passes) else 0
