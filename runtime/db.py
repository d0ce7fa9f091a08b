"""PostgreSQL: connection pools and versioned migrations.

Migrations are the numbered ``migrations/NNNN_name.sql`` files, applied in order inside
one transaction each, under an advisory lock so that several processes starting at once
apply each one exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import structlog

from runtime.config import DatabaseConfig

log = structlog.get_logger(__name__)

DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
"""What a database call that failed raises, whatever the cause (unreachable, refused,
timed out, or the statement's own error): what a caller that tries again later catches.
asyncpg raises ``InternalClientError`` when the server ends a connection while a new
statement is being prepared on it ("cannot switch to state ...")."""

Row = TypeVar("Row")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")
_LOCK_ID = 0x5B0A4D  # advisory lock key of the migrator
_encode_json = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text()))
    return found


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the migrations not applied yet; return their versions."""
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.version)
            log.info("migration_applied", version=migration.version, name=migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


async def ensure_database(url: str) -> None:
    """Create the URL's database when it does not exist (embedded and test set-ups)."""
    name = urlsplit(url).path.lstrip("/") or "postgres"
    conn = await asyncpg.connect(with_database(url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def column_arrays(rows: Iterable[Sequence[object]], width: int) -> list[list[object]]:
    """Rows as ``width`` columns: the arrays a statement ``unnest``s, one parameter each."""
    columns: list[list[object]] = [[] for _ in range(width)]
    for row in rows:
        for index, value in enumerate(row):
            columns[index].append(value)
    return columns


def json_rows(rows: Iterable[Sequence[object]]) -> str:
    """Rows as one JSON parameter, an array of arrays, that a statement reads with
    ``rows_of``. For the parts written per message: asyncpg checks each element of an
    array parameter in Python (two ``isinstance`` calls against ``collections.abc``), about
    0.5 µs a value, where msgspec encodes the same rows in C. An enum member is written as
    its value."""
    return _encode_json(list(rows)).decode()


def document_rows(rows: Iterable[Sequence[object]]) -> tuple[str, list[str]]:
    """Rows whose last column is a JSON document (a record's encoding), as the two
    parameters ``rows_of(..., document=...)`` reads: the other columns as ``json_rows``, the
    documents as a text array.

    A document inside the JSON parameter would be a string in it: escaped here, then
    lexed by PostgreSQL twice (the parameter, then the document as ``json``) and copied
    between. Apart, PostgreSQL lexes it once: 12.0 against 9.3 µs of its CPU per
    conversation row of about 900 bytes (50-row batches, medians of three; the client 3.6
    against 3.3)."""
    columns: list[Sequence[object]] = []
    documents: list[str] = []
    for row in rows:
        columns.append(row[:-1])
        documents.append(row[-1])  # type: ignore[arg-type] # the caller's documents are str
    return json_rows(columns), documents


def rows_of(parameter: int, columns: str, *, document: str | None = None) -> str:
    """SQL for the rows of JSON parameter ``$parameter`` (``json_rows``) as a table with
    ``columns``: names, each text unless a type follows it (``"d, c, op float8"``). It goes
    where a table would: ``FROM {rows_of(1, ...)} AS t``. With ``document`` (a column
    name), the rows' documents follow as text in parameter ``$parameter + 1``
    (``document_rows``): that column, last."""
    selected = []
    for index, column in enumerate(part.split() for part in columns.split(",")):
        value = f"e->>{index}"
        selected.append(
            f"{value} AS {column[0]}"
            if len(column) == 1
            else f"({value})::{column[1]} AS {column[0]}"
        )
    elements = f"jsonb_array_elements(${parameter}::jsonb)"
    if document is None:
        return f"(SELECT {', '.join(selected)} FROM {elements} AS e)"  # noqa: S608 -- constants
    selected.append(f"x AS {document}")
    zipped = f"ROWS FROM ({elements}, unnest(${parameter + 1}::text[])) AS z(e, x)"
    return f"(SELECT {', '.join(selected)} FROM {zipped})"  # noqa: S608 -- constants


class JoinedStatement:
    """Data-modifying statements joined as the parts (CTEs) of one statement: one round
    trip for all of them, where each was one.

    Every part runs on the same snapshot and none sees another's changes, so no two parts
    may touch the same row (the caller writes each row once). A part given ``returning``
    gives its ``RETURNING`` rows, tagged with its name.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[object] = []
        self.returning: list[tuple[str, str]] = []

    def add(self, name: str, statement: str, *args: object, returning: str = "") -> None:
        """Add ``statement`` (parameters ``$1`` … as its own); ``returning``: the columns
        its ``RETURNING`` gives, as ``a, b`` (two, the second may be NULL)."""
        offset = len(self.args)
        numbered = _PARAMETER.sub(lambda m: f"${int(m.group(1)) + offset}", statement.strip())
        # Prefixed: a part named as a table would hide that table from the later parts.
        self.parts.append(f"{self.part(name)} AS ({numbered})")
        self.args.extend(args)
        if returning:
            self.returning.append((name, returning))

    @staticmethod
    def part(name: str) -> str:
        """How a later part's statement names part ``name``'s ``RETURNING`` rows."""
        return f"part_{name}"

    def add_rows(
        self,
        name: str,
        rows: dict[tuple[str, str], Row | None],
        upsert: str,
        columns_of: Callable[[str, Row], Sequence[object]],
        delete: str,
        *,
        document: bool = False,
    ) -> None:
        """Upsert the rows with a record (``upsert`` reads them with ``rows_of(1, ...)``;
        with ``document``, their last column is a document, read with
        ``rows_of(1, ..., document=...)``), delete those whose key maps to None (``delete``
        unnests ``$1`` and ``$2``)."""
        kept = [columns_of(domain, record) for (domain, _), record in rows.items() if record]
        gone = [key for key, record in rows.items() if record is None]
        if kept:
            self.add(
                f"{name}_kept", upsert, *(document_rows(kept) if document else [json_rows(kept)])
            )
        if gone:
            self.add(f"{name}_gone", delete, *column_arrays(gone, 2))

    async def run(self, conn: asyncpg.Connection) -> list[tuple[str, Any, Any]]:
        """Run it: the ``returning`` parts' rows as (name, first, second)."""
        if not self.parts:
            return []
        results = " UNION ALL ".join(
            # Names and columns are the caller's constants, never input.
            f"SELECT '{name}'::text, {columns} FROM {self.part(name)}"  # noqa: S608
            for name, columns in self.returning
        )
        query = f"WITH {', '.join(self.parts)} {results or 'SELECT NULL::text, 0, 0 WHERE false'}"
        return [(row[0], row[1], row[2]) for row in await conn.fetch(query, *self.args)]


_PARAMETER = re.compile(r"\$(\d+)")


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pools' reset of a connection given back: nothing more than asyncpg's own (a
    transaction left open is rolled back).

    asyncpg's default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every return to the pool: a round trip and a statement per use, a tenth of the
    adapters' and the router's time under load (profiled). So code using a pooled
    connection leaves no session state behind: settings are ``SET LOCAL`` in a
    transaction, and whoever takes a session lock or setting undoes it, closing the
    connection when that fails (``runtime.retention``); nothing LISTENs or opens a
    cursor outside a transaction.
    """


class HeldConnection:
    """One of a pool's connections, kept between uses by a caller that sends one statement
    (or transaction) at a time, such as the router's reads and its writer: each use skips
    the pool's acquire and release, which cost more CPU than a short query's own client
    work (60 against 115 us, measured on a loaded 2-core machine).

    A use that raises gives the connection back to the pool, which closes a broken one and
    rolls back a transaction left open; the next use takes another. A use that starts while
    another is in flight takes a pooled connection of its own, so overlapping uses stay
    correct, only not cheaper. ``release`` gives the connection back (at the end of the use
    in flight, if any); the next use takes one again. Call it before the pool closes
    (``Pool.close`` waits for every connection out) and before work that needs the pool's
    other connections. With ``hold=False`` every use takes a pooled connection and gives it
    back, as ``pool.acquire()`` does: for a pool too small to keep one out.
    """

    def __init__(self, pool: asyncpg.Pool, *, hold: bool = True) -> None:
        self.pool = pool
        self.hold = hold
        self._held: asyncpg.Connection | None = None
        self._in_use = False
        self._give_back = False
        """Released while a use was in flight: that use gives the connection back."""

    def acquire(self) -> _HeldUse:
        return _HeldUse(self)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

    async def release(self) -> None:
        if self._in_use:
            self._give_back = True
            return
        held, self._held = self._held, None
        if held is not None:
            await self.pool.release(held)


class _HeldUse:
    __slots__ = ("_conn", "_holder", "_shared")

    def __init__(self, holder: HeldConnection) -> None:
        self._holder = holder
        self._conn: asyncpg.Connection | None = None
        self._shared = False

    async def __aenter__(self) -> asyncpg.Connection:
        holder = self._holder
        if holder._in_use or not holder.hold:
            self._conn = await holder.pool.acquire()
            return self._conn
        holder._in_use = self._shared = True  # before any await: a use meanwhile takes its own
        try:
            held = holder._held
            if held is not None and not _usable(held):
                holder._held = None
                with contextlib.suppress(asyncpg.InterfaceError):  # given back already
                    await holder.pool.release(held)
                held = None
            if held is None:
                held = holder._held = await holder.pool.acquire()
        except BaseException:
            holder._in_use = self._shared = False
            raise
        self._conn = held
        return held

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        holder, conn = self._holder, self._conn
        assert conn is not None
        if not self._shared:
            await holder.pool.release(conn)
            return
        holder._in_use = False
        if error is not None or holder._give_back:
            holder._held, holder._give_back = None, False
            await holder.pool.release(conn)


@contextlib.asynccontextmanager
async def given_back(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """``pool.acquire()`` for a task that may be cancelled: the task ends only once its
    connection is back in the pool. asyncpg gives a connection back under
    ``asyncio.shield``, so a task cancelled while giving it back ends at once while the
    release goes on behind it (a caller that cancels its readers and returns would leave
    that release running)."""
    conn = await pool.acquire()
    try:
        yield conn
    finally:
        release = asyncio.ensure_future(pool.release(conn))
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            await release
            raise


def held_connections(pool: asyncpg.Pool, count: int) -> list[HeldConnection]:
    """``count`` ``HeldConnection``s of ``pool``, which hold only while the pool has two
    more connections for everything else: with fewer, a caller waiting for a connection
    could wait for one kept by a holder with nothing to do."""
    hold = pool.get_max_size() >= count + 2
    return [HeldConnection(pool, hold=hold) for _ in range(count)]


def _usable(conn: asyncpg.Connection) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # closed through the pool's proxy: given back already
        return False


DEAD_CONNECTION_SECONDS = DatabaseConfig().dead_connection_seconds


def close_when_dead(conn: asyncpg.Connection, seconds: int) -> None:
    """Have the system close ``conn`` once its server's host has answered nothing for about
    ``seconds``, whether a statement's bytes wait to be acknowledged (``TCP_USER_TIMEOUT``)
    or its result is awaited on an idle socket (keepalive probes every ``seconds`` / 6,
    from ``seconds`` / 3 of silence). A server that is merely slow or busy still answers
    them: its system acknowledges what it is sent.

    Without it, a statement on a connection to a server gone without a word (a failover,
    a host lost) waits for the system's TCP to give up, about 15 minutes, and so do
    asyncpg's pool and the caller that gave the connection back."""
    # asyncpg gives no public way to the socket (its own TCP_NODELAY is set like this).
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket: the server's host is this one
    idle = max(1, seconds // 3)
    interval = max(1, seconds // 6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = (
        # macOS names the idle time TCP_KEEPALIVE and has no TCP_USER_TIMEOUT.
        (getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None)), idle),
        (getattr(socket, "TCP_KEEPINTVL", None), interval),
        (getattr(socket, "TCP_KEEPCNT", None), max(1, math.ceil((seconds - idle) / interval))),
        (getattr(socket, "TCP_USER_TIMEOUT", None), seconds * 1000),
    )
    for option, value in options:
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    dead_connection_seconds: int = DEAD_CONNECTION_SECONDS,
) -> asyncpg.Pool:
    """A pool of connections to ``url``, each closed by the system once its server has
    answered nothing for ``dead_connection_seconds`` (0: the system's settings)."""

    async def init(conn: asyncpg.Connection) -> None:
        if dead_connection_seconds:
            close_when_dead(conn, dead_connection_seconds)

    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, reset=keep_session, init=init
    )
    assert pool is not None
    return pool


async def migrate_url(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
