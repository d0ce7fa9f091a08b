"""Configuration versions in PostgreSQL (``config_versions``).

Writers take a transaction-scoped advisory lock, so versions are numbered without gaps
and a conditional write (``If-Match``) compares against the version it replaces: of two
administrators editing the same thing, the second gets 412 instead of undoing the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec
import structlog

from switchboard.config import ControlDocument
from switchboard.control.document import Change, canonical, decode, diff, encode, touched_domains

log = structlog.get_logger(__name__)

_LOCK_ID = 0x5B0A4E  # advisory lock of configuration writers (the migrator holds 0x5B0A4D)
FILE_SOURCE = "file"


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    document: ControlDocument


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``GET /v1/config/versions``."""

    version: int
    created_at: float
    """Seconds since the Unix epoch."""
    author: str
    """Who made it: the token id, ``bootstrap``, ``local`` (no authentication) or
    ``config-file``."""
    reason: str
    """``api``, ``restore of N``, ``configuration file``…"""
    domains: list[str]
    """Domains the change concerns (empty: provider-wide settings only)."""
    changes: int
    """Number of entries in its diff."""


class VersionDetail(VersionSummary, frozen=True, kw_only=True):
    """``GET /v1/config/versions/{version}``: the summary, the diff and the document."""

    diff: list[Change]
    document: ControlDocument


def file_hash(document: ControlDocument) -> str:
    return hashlib.sha256(canonical(document)).hexdigest()


async def _lock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)


class Unreadable(Exception):
    """A stored version this release cannot read: one a limit added since refuses (a wait of
    1e308 seconds, stored before waits had a maximum, say)."""

    def __init__(self, version: int, reason: str) -> None:
        super().__init__(f"version {version} cannot be read by this release: {reason}")
        self.version = version
        self.reason = reason


def _read(version: int, document: str) -> ControlDocument:
    try:
        return decode(document)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        # msgspec names the field and the rule, never the value.
        raise Unreadable(version, str(error)) from None


async def current(conn: asyncpg.Connection) -> Version | None:
    """The newest version; ``Unreadable`` when this release cannot read it."""
    row = await conn.fetchrow(
        "SELECT version, document::text AS document FROM config_versions"
        " ORDER BY version DESC LIMIT 1"
    )
    if row is None:
        return None
    return Version(row["version"], _read(row["version"], row["document"]))


async def _readable_again(
    conn: asyncpg.Connection, unreadable: Unreadable, file: ControlDocument
) -> Version:
    """The newest version this release can read (else the file's document), stored again as
    the current one after ``unreadable``: the service starts, every process applies the
    same document, and the history keeps what was set aside."""
    log.error("config_version_unreadable", version=unreadable.version, reason=unreadable.reason)
    older = await conn.fetch(
        "SELECT version FROM config_versions WHERE version < $1 ORDER BY version DESC",
        unreadable.version,
    )
    document, source = file, "the configuration file"
    for (number,) in older:
        stored = await conn.fetchval(
            "SELECT document::text FROM config_versions WHERE version = $1", number
        )
        try:
            document, source = _read(number, stored), f"version {number}"
            break
        except Unreadable:
            continue
    log.warning("config_version_replaced", version=unreadable.version, by=source)
    # Numbered after the unreadable one, whose document cannot be read to diff against: it
    # concerns every domain, so that each domain's admins find it in their history.
    return await _insert(
        conn,
        Version(unreadable.version, document),
        document,
        "switchboard",
        f"version {unreadable.version} unreadable by this release: {source} again",
        domains=sorted(document.domains),
    )


async def _insert(
    conn: asyncpg.Connection,
    head: Version | None,
    document: ControlDocument,
    author: str,
    reason: str,
    *,
    domains: list[str] | None = None,
) -> Version:
    """Store ``document`` as the version after ``head``; ``domains``: those it concerns,
    when not those its diff touches."""
    before = head.document if head is not None else ControlDocument()
    version = (head.version if head is not None else 0) + 1
    changes = diff(before, document)
    await conn.execute(
        "INSERT INTO config_versions (version, author, reason, document, diff, domains)"
        " VALUES ($1, $2, $3, $4::json, $5::jsonb, $6)",
        version,
        author,
        reason,
        encode(document).decode(),
        msgspec.json.encode(changes).decode(),
        touched_domains(before, document) if domains is None else domains,
    )
    await conn.executemany(
        "INSERT INTO domains (domain) VALUES ($1) ON CONFLICT DO NOTHING",
        [(name,) for name in document.domains],
    )
    return Version(version, document)


async def change(
    conn: asyncpg.Connection,
    edit: Callable[[ControlDocument], ControlDocument],
    *,
    author: str,
    reason: str,
    on_insert: Callable[[asyncpg.Connection, int, list[Change]], Awaitable[None]] | None = None,
) -> tuple[Version, Version, list[Change]]:
    """Apply ``edit`` to the current document and store the result as a new version,
    unless it changes nothing. ``edit`` runs under the writers' lock, so a precondition it
    checks holds until the commit; whatever it raises aborts the change. ``on_insert``
    writes in the same transaction (the audit log). Returns (before, after, changes)."""
    async with conn.transaction():
        await _lock(conn)
        head = await current(conn)
        before = head or Version(0, ControlDocument())
        document = edit(before.document)
        changes = diff(before.document, document)
        if not changes:
            return before, before, []
        after = await _insert(conn, head, document, author, reason)
        if on_insert is not None:
            await on_insert(conn, after.version, changes)
        return before, after, changes


async def seed_from_file(conn: asyncpg.Connection, document: ControlDocument) -> Version:
    """The current version, after storing the configuration file's document as a new one
    when the file changed since it was last read (or no version exists yet). A restart
    with an unchanged file keeps what the API changed since."""
    digest = file_hash(document)
    async with conn.transaction():
        await _lock(conn)
        try:
            head = await current(conn)
        except Unreadable as unreadable:
            head = await _readable_again(conn, unreadable, document)
        seen = await conn.fetchval(
            "SELECT sha256 FROM config_sources WHERE source = $1", FILE_SOURCE
        )
        if head is not None and seen == digest:
            return head
        if head is not None and not diff(head.document, document):
            version = head
        else:
            reason = "configuration file" if head is None else "configuration file changed"
            version = await _insert(conn, head, document, "config-file", reason)
        await conn.execute(
            "INSERT INTO config_sources (source, sha256, version) VALUES ($1, $2, $3)"
            " ON CONFLICT (source) DO UPDATE SET sha256 = $2, version = $3",
            FILE_SOURCE,
            digest,
            version.version,
        )
        return version


def _summary_fields(row: asyncpg.Record) -> dict[str, object]:
    created: datetime = row["created_at"]
    return {
        "version": row["version"],
        "created_at": created.timestamp(),
        "author": row["author"],
        "reason": row["reason"],
        "domains": list(row["domains"]),
        "changes": row["changes"],
    }


async def list_versions(
    conn: asyncpg.Connection, *, domain: str | None, before: int | None, limit: int
) -> list[VersionSummary]:
    """Newest first; ``domain``: only versions concerning it; ``before``: older than it."""
    rows = await conn.fetch(
        "SELECT version, created_at, author, reason, domains, jsonb_array_length(diff) AS changes"
        " FROM config_versions"
        " WHERE ($1::text IS NULL OR domains @> ARRAY[$1::text])"
        " AND ($2::bigint IS NULL OR version < $2)"
        " ORDER BY version DESC LIMIT $3",
        domain,
        before,
        limit,
    )
    return [VersionSummary(**_summary_fields(row)) for row in rows]  # type: ignore[arg-type]


async def get_version(conn: asyncpg.Connection, version: int) -> VersionDetail | None:
    row = await conn.fetchrow(
        "SELECT version, created_at, author, reason, domains, jsonb_array_length(diff) AS changes,"
        " diff::text AS diff, document::text AS document FROM config_versions WHERE version = $1",
        version,
    )
    if row is None:
        return None
    return VersionDetail(
        **_summary_fields(row),  # type: ignore[arg-type]
        diff=msgspec.json.decode(row["diff"], type=list[Change]),
        document=_read(version, row["document"]),
    )
