"""The service's commands: run, router, adapters, migrate, schemas.

The ``switchboard`` program (``tools.cli``) adds the operator's tools to them: token,
dead-letters, replay, simulate. ``python -m switchboard.cli`` has the service's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncpg
import msgspec
import structlog
from aiohttp import web
from aiokafka.errors import KafkaError

from runtime import collector, db, kafka
from runtime import logging as logs
from runtime.appkeys import TASK_FAILURES
from runtime.config import ConfigError
from runtime.secrets import Secrets, SecretsFileError
from schemas.generate import write as write_schemas
from switchboard.app import Role, build_app
from switchboard.config import Config, load_config
from switchboard.control import store as config_store
from switchboard.control.store import Version
from switchboard.embedded import EmbeddedError, missing_services

log = structlog.get_logger("switchboard")

HTTP_SHUTDOWN_SECONDS = 10.0
"""How long requests under way may take once a stop is asked (a webhook waits at most 5 s
for the broker) before their connections are closed: a client holding a body open, which
the server waits up to 60 s for, kept a process past its deployment's 30 s grace."""

EMBEDDED_DATABASE = "switchboard"
LISTENING = "Switchboard is up"
"""How the banner begins: printed once the HTTP port is bound, and not before."""


def add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser(
        "run", help="adapters + router in one process; embedded broker and PostgreSQL when unset"
    )
    commands.add_parser("router", help="the router and agent API only")
    commands.add_parser("adapters", help="the channel adapters only")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    commands.add_parser("schemas", help="write the generated JSON Schema files")


def new_parser(
    description: str | None = __doc__,
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """The command line's parser with the service's commands; ``tools.cli`` adds its own."""
    parser = argparse.ArgumentParser(prog="switchboard", description=description)
    parser.add_argument("--config", help="TOML configuration file (default: $SWITCHBOARD_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    add_service_commands(commands)
    return parser, commands


def configure(args: argparse.Namespace, environ: Mapping[str, str]) -> Config | None:
    """The configuration, with logging set up by it; None (and a message) when invalid."""
    try:
        config = load_config(environ, args.config)
        secrets = Secrets(environ, config.secrets_file)
    except ConfigError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return None
    except SecretsFileError as error:
        print(f"switchboard: secrets_file: {error}", file=sys.stderr)
        return None
    logs.configure(
        config.log_format,
        config.log_level,
        secrets=logs.secret_values(config, secrets),
        digest_key=secrets.get(config.log_digest_key_env),
    )
    return config


def main(argv: list[str] | None = None) -> int:
    parser, _ = new_parser()
    args = parser.parse_args(argv)
    return service_command(args, dict(os.environ))


def service_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run one of ``add_service_commands``' commands."""
    if args.command == "schemas":
        for path in write_schemas():
            print(f"wrote {path}")
        return 0
    config = configure(args, environ)
    if config is None:
        return 2
    try:
        if args.command == "migrate":
            if not config.database.url:
                print("switchboard: migrate needs DATABASE_URL", file=sys.stderr)
                return 2
            applied = asyncio.run(db.migrate_url(config.database.url))
            print(f"applied migrations: {applied or 'none (up to date)'}")
            return 0
        roles = {
            "run": frozenset(Role),
            "router": frozenset({Role.ROUTER}),
            "adapters": frozenset({Role.ADAPTERS}),
        }[args.command]
        embedded = args.command == "run"
        # A broker started here starts empty (its log is in memory).
        empty_broker = embedded and not config.kafka.bootstrap_servers
        with infrastructure(config, embedded=embedded) as resolved:
            failed = asyncio.run(serve(resolved, environ, roles, empty_broker=empty_broker))
        if failed:
            print(
                f"switchboard: stopped: {', '.join(failed)} failed"
                " (its background_task_failed log line has the error)",
                file=sys.stderr,
            )
            return 1
    except EmbeddedError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as error:
        print(f"switchboard: cannot start: {error}", file=sys.stderr)
        return 1
    except KafkaError as error:  # the broker unreachable while the topics are made
        print(f"switchboard: cannot start: the broker: {type(error).__name__}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def infrastructure(config: Config, *, embedded: bool) -> Iterator[Config]:
    """Start the embedded broker / PostgreSQL for what the configuration leaves unset."""
    missing = [
        name
        for name, value in (
            ("KAFKA_BOOTSTRAP_SERVERS", config.kafka.bootstrap_servers),
            ("DATABASE_URL", config.database.url),
        )
        if not value
    ]
    if missing and not embedded:
        raise EmbeddedError(
            f"set {' and '.join(missing)} (only 'switchboard run' starts embedded ones)"
        )
    with missing_services(
        Path(config.state_dir),
        config.kafka.bootstrap_servers,
        config.database.url,
        database=EMBEDDED_DATABASE,
    ) as (bootstrap_servers, database_url):
        yield msgspec.structs.replace(
            config,
            kafka=msgspec.structs.replace(config.kafka, bootstrap_servers=bootstrap_servers),
            database=msgspec.structs.replace(config.database, url=database_url),
        )


async def prepare(
    config: Config, environ: Mapping[str, str], *, empty_broker: bool = False
) -> Version:
    """Database, migrations, topics: everything the service needs to exist; and the
    current runtime configuration version (the file's, when it changed since last read).

    With ``empty_broker`` (the embedded broker just started, its topics empty), the
    router's stored offsets are forgotten first: they count records of the broker's last
    run. Kept, they are taken for positions in the new topics as soon as those hold as
    many records (webhooks are accepted while the router starts), and the router skipped
    everything before them."""
    assert config.database.url
    await db.ensure_database(config.database.url)
    await db.migrate_url(config.database.url)
    conn = await asyncpg.connect(config.database.url)
    try:
        if empty_broker:
            forgotten = await conn.fetchval(
                "WITH gone AS (DELETE FROM router_offsets WHERE consumer_group = $1"
                " RETURNING 1) SELECT count(*) FROM gone",
                config.kafka.consumer_group,
            )
            if forgotten:
                log.warning("embedded_broker_offsets_forgotten", offsets=forgotten)
        version = await config_store.seed_from_file(conn, config.document())
    finally:
        await conn.close()
    await kafka.ensure_topics(config, environ)
    return version


async def serve(
    config: Config,
    environ: Mapping[str, str],
    roles: frozenset[Role],
    *,
    empty_broker: bool = False,
) -> list[str]:
    """Serve until SIGTERM or SIGINT, or until a background task fails; the names of those
    that failed (``runtime.tasks.TaskFailures``)."""
    version = await prepare(config, environ, empty_broker=empty_broker)
    config = config.with_document(version.document)
    app = build_app(
        config,
        environ,
        roles=roles,
        config_version=version.version,
        log_dies_with_broker=empty_broker,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, config.http.host, config.http.port, shutdown_timeout=HTTP_SHUTDOWN_SECONDS
    )
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise OSError(
            f"cannot listen on {config.http.host}:{config.http.port}: {error.strerror}"
        ) from None
    collector.settle()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    base = f"http://{config.http.host}:{config.http.port}"
    print(_banner(base, config, roles), file=sys.stderr, flush=True)
    failures = app[TASK_FAILURES]
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(failures.failed.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    log.info("shutting_down")
    await runner.cleanup()
    return failures.names


def _banner(base: str, config: Config, roles: frozenset[Role]) -> str:
    lines = [f"{LISTENING} ({', '.join(sorted(roles))}) on {base}"]
    lines.append(f"  readiness   {base}/readyz")
    lines.append(f"  metrics     {base}/metrics")
    if Role.ROUTER in roles:
        lines.append(f"  agent API   {base}/v1/domains/<domain>/agents/<agent_id>")
    if Role.ADAPTERS in roles:
        for name, domain in config.domains.items():
            if domain.webchat.enabled:
                lines.append(f"  web chat    POST {base}/v1/domains/{name}/webchat/sessions")
                lines.append(f"  widget      {base}/v1/domains/{name}/webchat/widget.js")
    lines.append(f"  kafka       {config.kafka.bootstrap_servers}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
