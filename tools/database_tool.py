"""What the operator's commands that work on the database share: the run with its exits,
and the domains of the running configuration version."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from runtime.db import DATABASE_ERRORS
from switchboard.config import Config, ControlDocument
from switchboard.control import store


def run_with_database(
    name: str,
    config: Config,
    main: Callable[[str], Coroutine[Any, Any, int]],
    refused: tuple[type[Exception], ...] = (),
) -> int:
    """Run ``main(database_url)``. Exits: 2 without ``DATABASE_URL`` or on one of the
    ``refused`` errors (the operator's mistake, its text shown), 1 when the database
    failed, 130 when interrupted."""
    if not config.database.url:
        print(f"switchboard: {name} needs DATABASE_URL", file=sys.stderr)
        return 2
    try:
        return asyncio.run(main(config.database.url))
    except DATABASE_ERRORS as error:
        print(f"\nswitchboard: {name} failed: {type(error).__name__}", file=sys.stderr)
        return 1
    except refused as error:
        print(f"\nswitchboard: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nswitchboard: {name} interrupted", file=sys.stderr)
        return 130


async def running_document(conn: asyncpg.Connection, config: Config) -> ControlDocument:
    """The running configuration version's document (the file's when none is stored)."""
    version = await store.current(conn)
    return config.document() if version is None else version.document
