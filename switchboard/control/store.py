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

from switchboard.config import ControlDocument
from switchboard.control.document import Change, canonical, decode, diff, encode, touched_domains

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


async def current(conn: asyncpg.Connection) -> Version | None:
    row = await conn.fetchrow(
        "SELECT version, document::text AS document FROM config_versions"
        " ORDER BY version DESC LIMIT 1"
    )
    if row is None:
        return None
    return Version(row["version"], decode(row["document"]))


async def _insert(
    conn: asyncpg.Connection,
    head: Version | None,
    document: ControlDocument,
    author: str,
    reason: str,
) -> Version:
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
        touched_domains(before, document),
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
        head = await current(conn)
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
        document=decode(row["document"]),
    )
