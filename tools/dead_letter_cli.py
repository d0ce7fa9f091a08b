"""``switchboard dead-letters``: list, show and re-drive the records the router set aside.

For operators, across every domain (the API's ``/dead-letters`` shows an admin its own
domain's). A re-drive is in the audit log (actor ``cli``), written in the transaction that
marks the letter. Needs ``DATABASE_URL``; ``redrive`` also needs ``KAFKA_BOOTSTRAP_SERVERS``.
Output is JSON, one document per command, for ``jq`` and scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from runtime import audit, dead_letters, kafka
from runtime.kafka import BrokerUnavailable
from switchboard.config import Config


def add_dead_letter_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "dead-letters", help="list, show and re-drive records the router set aside"
    )
    actions = parser.add_subparsers(dest="dead_letter_command", required=True)
    listing = actions.add_parser("list", help="dead letters, oldest first, as JSON")
    listing.add_argument("--domain", help="only this domain's (default: every domain's)")
    listing.add_argument("--after", type=int, default=0, help="only ids above this one")
    listing.add_argument("--limit", type=int, default=100, help="at most this many")
    show = actions.add_parser("show", help="one dead letter with its record, as JSON")
    show.add_argument("id", type=int)
    redrive = actions.add_parser(
        "redrive", help="publish a dead letter's record again to the topic it came from"
    )
    redrive.add_argument("id", type=int)


def dead_letter_command(
    args: argparse.Namespace, config: Config, environ: Mapping[str, str]
) -> int:
    if not config.database.url:
        print("switchboard: dead-letters needs DATABASE_URL", file=sys.stderr)
        return 2
    if args.dead_letter_command == "redrive" and not config.kafka.bootstrap_servers:
        print("switchboard: dead-letters redrive needs KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    try:
        found = asyncio.run(_run(args, config, environ))
    except BrokerUnavailable as error:
        print(f"switchboard: the broker did not take the record ({error})", file=sys.stderr)
        return 1
    except dead_letters.NotRedrivable as error:
        print(
            f"switchboard: dead letter {args.id} is a provider's request that an adapter set"
            f" aside ({error}): only the provider can send it again",
            file=sys.stderr,
        )
        return 1
    if found is None:
        print(f"switchboard: no dead letter {args.id}", file=sys.stderr)
        return 1
    print(msgspec.json.format(msgspec.json.encode(found)).decode())
    return 0


async def _run(
    args: argparse.Namespace, config: Config, environ: Mapping[str, str]
) -> msgspec.Struct | None:
    assert config.database.url
    conn = await asyncpg.connect(config.database.url)
    try:
        match args.dead_letter_command:
            case "list":
                return await dead_letters.list_dead_letters(
                    conn, domain=args.domain, after=args.after, limit=args.limit
                )
            case "show":
                return await dead_letters.get_dead_letter(conn, args.id, domain=None)
            case _:
                producer = AIOKafkaProducer(**kafka.client_options(config, environ))
                await producer.start()
                try:
                    async with conn.transaction():
                        letter = await dead_letters.redrive(conn, producer, args.id, domain=None)
                        if letter is not None:
                            await audit.record_redrive(conn, actor=audit.CLI_ACTOR, letter=letter)
                        return letter
                finally:
                    await producer.stop()
    finally:
        await conn.close()
