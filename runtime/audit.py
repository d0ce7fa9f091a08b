"""The audit log of administrative actions (``audit_log``): who did what, when, to what.

An entry is written by ``record_action`` in the transaction of the action it records, so
that both commit or neither does. An action that is published to the broker rather than
stored (an agent's registration, a customer's owner) writes its entry, publishes, then
commits: a broker that refuses the event rolls the entry back, and only a commit that
fails after the broker took the event leaves the action without its entry.

Entries the API and the CLI write (action: target; detail):

- ``token.create``: ``token <id>``; scope, agent_id, expires_at.
- ``token.rotate``: ``token <id>``; grace_seconds.
- ``token.revoke``: ``token <id>``; scope (only when it was not revoked yet).
- ``agent.register`` / ``agent.update`` (the agent was not / was stored yet):
  ``agent <id>``; event_id, skills, queues, capacity (never its name).
- ``customer.owner.set`` / ``customer.owner.clear``: ``customer h:<digest>``; event_id,
  agent_id.
- ``dead_letter.redrive``: ``dead letter <id>``; topic, partition, offset, redrives.
- ``config.*``: the configuration API's (``switchboard.control``).
- ``campaign.send``: ``campaign <id>``; campaign_id, messages (accepted in one batch).
- ``campaign.pause`` / ``campaign.resume`` / ``campaign.cancel``: ``campaign <id>``;
  campaign_id, was (the status before), messages_cancelled.
- ``customer.consent.set``: ``customer h:<digest>``; event_id, channel, consent, note.
- ``customer.export``: ``customer h:<digest>`` (the profile's); continued (a page after
  the first), limit.
- ``retention.expire``: ``domain <id>`` (``rows of no domain`` for dead letters no domain
  owns); rows (changed, by ``<table>.<action>``), periods (``runtime.retention``).

``actor`` is ``Principal.actor`` (a token id, ``bootstrap``, or ``local`` when the API's
authentication is disabled), ``cli`` for the operator's command line, or ``retention``
for the routers' retention job. A customer is named by ``runtime.logging.fingerprint`` of
its id, as in the logs: its id may be a phone number or an email address. ``detail`` holds
ids, counts and settings only: no secret, no token, no message text, no name, no customer
address; ``record_action`` refuses the top-level keys that would carry one
(``FORBIDDEN_DETAIL_KEYS``) and any value holding an API token.

Listing pages by id like the dead letters: ``after`` the previous page's ``next_after``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from runtime.dead_letters import DeadLetterView
from runtime.logging import SECRET_KEYS, SENSITIVE_KEYS

CLI_ACTOR: Final = "cli"
"""The actor of the operator's command line, which holds the database's credentials, not
a token."""
PAGE_MAX = 1000
ACTION_MAX = 64
ACTION_PATTERN = r"^[a-z_]+(\.[a-z_]+)*$"

#: Keys that hold (or are named like) secrets, customer content or identities.
FORBIDDEN_DETAIL_KEYS = SECRET_KEYS | SENSITIVE_KEYS | {"name", "token_sha256", "sha256"}
_TOKEN_MARK = "sbt_"  # noqa: S105 -- the public prefix of API tokens, not a secret
_DETAIL_DEPTH_MAX = 4


class UnsafeDetail(ValueError):
    """``detail`` would store a secret or personal data: a bug of the caller."""


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: float
    """When the action's transaction ran (seconds since the Unix epoch)."""
    actor: str
    """A token id, ``bootstrap``, ``local`` (authentication disabled), ``cli`` or
    ``retention`` (the routers' retention job)."""
    action: str
    """``token.create``, ``agent.register``, ``dead_letter.redrive``, …"""
    domain: str | None
    """The domain acted on; null for platform-wide actions."""
    target: str
    """What was acted on: ``token 3f2a…``, ``agent ann``, ``customer h:…``, …"""
    detail: dict[str, Any]
    """Ids, counts and settings of the action; never a secret or personal data."""


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[AuditEntry]
    next_after: int | None
    """Pass as ``after`` for the next page; null on the last page."""


def _check_detail(detail: Mapping[str, object]) -> None:
    for key, value in detail.items():
        # Only the top level's keys are names we choose: nested keys are data (a capacity
        # per channel has a key ``email``).
        if key.lower() in FORBIDDEN_DETAIL_KEYS:
            raise UnsafeDetail(f"detail may not hold {key!r}")
        _check_value(value)


def _check_value(value: object, depth: int = 0) -> None:
    if depth > _DETAIL_DEPTH_MAX:
        raise UnsafeDetail("detail is nested too deeply")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_value(key, depth + 1)
            _check_value(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_value(item, depth + 1)
    elif isinstance(value, str) and _TOKEN_MARK in value:
        raise UnsafeDetail("detail may not hold an API token")


async def record_action(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    domain: str | None,
    target: str,
    detail: Mapping[str, object] | None = None,
) -> None:
    """One entry, written in the caller's transaction (the action and its entry commit
    together). ``detail`` never holds secrets or personal data: ``UnsafeDetail`` for a
    top-level key that would (``FORBIDDEN_DETAIL_KEYS``) or a value holding an API token."""
    _check_detail(detail or {})
    await conn.execute(
        "INSERT INTO audit_log (actor, action, domain, target, detail)"
        " VALUES ($1, $2, $3, $4, $5::jsonb)",
        actor,
        action,
        domain,
        target,
        msgspec.json.encode(dict(detail or {})).decode(),
    )


async def record_redrive(conn: asyncpg.Connection, *, actor: str, letter: DeadLetterView) -> None:
    """The entry of a re-drive (the API's and the CLI's), in the re-drive's transaction."""
    await record_action(
        conn,
        actor=actor,
        action="dead_letter.redrive",
        domain=letter.domain,
        target=f"dead letter {letter.id}",
        detail={
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "redrives": letter.redrives,
        },
    )


def _entry(row: asyncpg.Record) -> AuditEntry:
    moment: datetime = row["at"]
    return AuditEntry(
        id=row["id"],
        at=moment.timestamp(),
        actor=row["actor"],
        action=row["action"],
        domain=row["domain"],
        target=row["target"],
        detail=msgspec.json.decode(row["detail"]),
    )


async def list_actions(
    conn: asyncpg.Connection,
    *,
    domain: str | None,
    after: int = 0,
    limit: int = 100,
    action: str | None = None,
) -> AuditPage:
    """Entries with an id above ``after``, oldest first, at most ``limit`` (up to
    ``PAGE_MAX``): a domain's, or every one (``domain=None``: platform readers and the
    CLI); only those of ``action`` when given."""
    limit = min(max(limit, 1), PAGE_MAX)
    rows = await conn.fetch(
        "SELECT id, at, actor, action, domain, target, detail::text AS detail FROM audit_log"
        " WHERE id > $1 AND ($2::text IS NULL OR domain = $2)"
        " AND ($3::text IS NULL OR action = $3) ORDER BY id LIMIT $4",
        after,
        domain,
        action,
        limit,
    )
    entries = [_entry(row) for row in rows]
    return AuditPage(entries=entries, next_after=entries[-1].id if len(entries) == limit else None)
