"""A customer's history: ``GET /v1/domains/{domain}/customers/{customer_id}/history``.

Every conversation and message of every identity of the customer, on every channel,
paged backward from now (``router.api.desktop`` holds the profile, the identities, the
cursors and who sees what). The business's own first messages are in it before the
customer answers them: a notification's message belongs to a conversation that has no
row until the customer's answer opens it under the notification's conversation id; the
messages source reads those from ``outbound_messages`` until then, and from the
conversation afterwards, never both.

Entries come from one source per kind (opened, message, hand-off, assignment, closed),
each read in ``(at, id)`` order, and merged; the cursor holds the last entry's key. A
bot's replies are messages with its ``bot_id`` (``agent_id`` null); a conversation a bot
handed to people shows its latest hand-off (the one its record keeps), ranked before the
assignment it led to.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

import asyncpg
import msgspec
from aiohttp import web

from router.api.desktop import (
    Query,
    decode_cursor,
    digest,
    encode_cursor,
    micros_of,
    moment_of,
    query_one,
    readable_customer,
    refused_cursor,
)
from router.api.desktop_models import (
    ENTRY_ID_MAX,
    HISTORY_LIMIT,
    HISTORY_LIMIT_MAX,
    HistoryAssignment,
    HistoryClosed,
    HistoryCursor,
    HistoryEntry,
    HistoryHandoff,
    HistoryMessage,
    HistoryOpened,
    HistoryPage,
)
from router.api.models import epoch
from router.api.routes import enter, guarded, path_value, query_int, respond
from runtime.appkeys import DB_POOL
from schemas import Attachment, Handoff
from schemas.limits import CUSTOMER_ID_MAX, is_identifier

_attachments = msgspec.json.Decoder(tuple[Attachment, ...])
_handoff = msgspec.json.Decoder(Handoff)


def history_cursor(at: datetime, rank: int, entry_id: str, profile: str) -> str:
    micros = micros_of(at)
    check = digest("history", profile, micros, rank, entry_id)
    return encode_cursor(HistoryCursor(2, micros, rank, entry_id, check))


def history_position(cursor: HistoryCursor, profile: str) -> HistoryCursor:
    """``cursor``, if it was given for ``profile`` (else 400)."""
    if cursor.check != digest(
        "history", profile, cursor.at, cursor.rank, cursor.entry_id
    ) or not is_identifier(cursor.entry_id, ENTRY_ID_MAX):
        raise refused_cursor()
    return cursor


_CLOSED_AT = "coalesce(to_timestamp((c.record->>'closed_at')::float8), c.closed_at)"
_HANDED_OFF_AT = "to_timestamp((c.record->'handoff'->>'handed_off_at')::float8)"
_ASSIGNED_AT = "coalesce(a.offered_at, a.accepted_at)"


def _opened(row: asyncpg.Record) -> HistoryEntry:
    return HistoryOpened(
        at=row["at"].timestamp(),
        conversation_id=row["conversation_id"],
        channel=row["channel"],
        queue=row["queue"],
        customer_id=row["customer_id"],
    )


def _message(row: asyncpg.Record) -> HistoryEntry:
    return HistoryMessage(
        at=row["at"].timestamp(),
        conversation_id=row["conversation_id"],
        message_id=row["id"],
        direction=row["direction"],
        channel=row["channel"],
        agent_id=row["agent_id"],
        bot_id=row["bot_id"],
        status=row["status"],
        error=row["error"] or None,
        text=row["text"],
        attachments=_attachments.decode(row["attachments"]),
    )


def _handed_off(row: asyncpg.Record) -> HistoryEntry:
    return HistoryHandoff(
        at=row["at"].timestamp(),
        conversation_id=row["conversation_id"],
        channel=row["channel"],
        bot_id=row["bot_id"],
        handoff=_handoff.decode(row["handoff"]),
    )


def _assignment(row: asyncpg.Record) -> HistoryEntry:
    return HistoryAssignment(
        at=row["at"].timestamp(),
        conversation_id=row["conversation_id"],
        channel=row["channel"],
        assignment_id=row["id"],
        agent_id=row["agent_id"],
        strategy=row["strategy"],
        step=row["step"],
        waited_seconds=row["waited_seconds"],
        accepted_at=epoch(row["accepted_at"]),
        ended_at=epoch(row["ended_at"]),
        end_reason=row["end_reason"],
    )


def _closed(row: asyncpg.Record) -> HistoryEntry:
    return HistoryClosed(
        at=row["at"].timestamp(),
        conversation_id=row["conversation_id"],
        channel=row["channel"],
        reason=row["reason"],
    )


class _Source(NamedTuple):
    """One kind of history entry: where it is read from, and in which order."""

    rank: int
    """Its place among entries of the same instant."""
    at: str
    entry_id: str
    select: str
    """The statement up to its keyset condition ($1: domain, $2: the identities)."""
    entry: Callable[[asyncpg.Record], HistoryEntry]


# A customer's messages: those of its conversations, and its business-started messages
# whose conversation has no row yet. Once the customer's answer opens that conversation
# (under the notification's conversation id) the first part shows the message and the
# second no longer does; one source, so a message keeps its place in the order whichever
# part holds it.
_MESSAGES = (
    "SELECT m.occurred_at AS at, m.message_id AS id, m.conversation_id, m.direction,"
    " m.channel, m.agent_id, m.bot_id, m.text, m.attachments::text AS attachments,"
    " coalesce(o.status, m.status) AS status, o.error FROM messages m"
    " JOIN conversations c ON c.domain = m.domain AND c.conversation_id = m.conversation_id"
    " LEFT JOIN outbound_messages o ON o.domain = m.domain AND o.outbound_id = m.message_id"
    " WHERE m.domain = $1 AND c.customer_id = ANY($2::text[])"
    " UNION ALL"
    " SELECT m.occurred_at, m.message_id, m.conversation_id, m.direction, m.channel,"
    " m.agent_id, m.bot_id, m.text, m.attachments::text, coalesce(o.status, m.status), o.error"
    " FROM outbound_messages o"
    " JOIN messages m ON m.domain = o.domain AND m.message_id = o.outbound_id"
    " WHERE o.domain = $1 AND o.kind = 'notification' AND o.customer_id = ANY($2::text[])"
    " AND NOT EXISTS (SELECT 1 FROM conversations c"
    " WHERE c.domain = o.domain AND c.conversation_id = o.conversation_id)"
)

# The messages and assignments are read as ``router.api.stats.timeline`` reads them for
# one conversation (an outbound message's status and error are its delivery's), here for
# every conversation of the profile at once, in pages.
_SOURCES = (
    _Source(
        0,
        "c.opened_at",
        "c.conversation_id",
        "SELECT c.opened_at AS at, c.conversation_id AS id, c.conversation_id, c.channel,"
        " c.queue, c.customer_id FROM conversations c"
        " WHERE c.domain = $1 AND c.customer_id = ANY($2::text[])",
        _opened,
    ),
    _Source(1, "m.at", "m.id", f"SELECT * FROM ({_MESSAGES}) m WHERE true", _message),  # noqa: S608 -- fixed text
    # No index holds the hand-off's time: the customer's conversations (found by
    # ``conversations_by_customer``) are few, and each has one hand-off at most.
    _Source(
        2,
        _HANDED_OFF_AT,
        "c.conversation_id",
        f"SELECT {_HANDED_OFF_AT} AS at, c.conversation_id AS id, c.conversation_id,"  # noqa: S608 -- fixed text
        " c.channel, c.record->'handoff'->>'bot_id' AS bot_id,"
        " (c.record->'handoff'->'handoff')::text AS handoff FROM conversations c"
        " WHERE c.domain = $1 AND c.customer_id = ANY($2::text[])"
        " AND c.record->'handoff'->>'handed_off_at' IS NOT NULL",
        _handed_off,
    ),
    _Source(
        3,
        _ASSIGNED_AT,
        "a.assignment_id",
        f"SELECT {_ASSIGNED_AT} AS at, a.assignment_id AS id, a.conversation_id, c.channel,"  # noqa: S608 -- fixed text
        " a.agent_id, a.strategy, a.step, a.waited_seconds, a.accepted_at, a.ended_at,"
        " a.end_reason FROM assignments a JOIN conversations c"
        " ON c.domain = a.domain AND c.conversation_id = a.conversation_id"
        f" WHERE a.domain = $1 AND c.customer_id = ANY($2::text[]) AND {_ASSIGNED_AT} IS NOT NULL",
        _assignment,
    ),
    _Source(
        4,
        _CLOSED_AT,
        "c.conversation_id",
        f"SELECT {_CLOSED_AT} AS at, c.conversation_id AS id, c.conversation_id, c.channel,"  # noqa: S608 -- fixed text
        " c.record->>'close_reason' AS reason FROM conversations c"
        " WHERE c.domain = $1 AND c.customer_id = ANY($2::text[]) AND c.status = 'closed'"
        f" AND {_CLOSED_AT} IS NOT NULL",
        _closed,
    ),
)


Keyed = tuple[datetime, int, str, HistoryEntry]


async def _older(
    conn: asyncpg.Connection,
    source: _Source,
    domain: str,
    ids: list[str],
    before: HistoryCursor | None,
    limit: int,
) -> list[Keyed]:
    """One source's newest ``limit`` entries older than ``before`` (in the order
    ``(at, rank, id)``), newest first."""
    query = Query([domain, ids])
    condition = ""
    if before is not None:
        moment = query.bind(moment_of(before.at))
        if source.rank < before.rank:
            condition = f" AND {source.at} <= {moment}"
        elif source.rank > before.rank:
            condition = f" AND {source.at} < {moment}"
        else:
            condition = (
                f" AND ({source.at}, {source.entry_id}) < ({moment}, {query.bind(before.entry_id)})"
            )
    top = query.bind(limit)
    rows = await conn.fetch(
        f"{source.select}{condition} ORDER BY at DESC, id DESC LIMIT {top}", *query.params
    )
    return [(row["at"], source.rank, row["id"], source.entry(row)) for row in rows]


async def get_history(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    identity = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    limit = query_int(request, "limit", HISTORY_LIMIT, 1, HISTORY_LIMIT_MAX)
    raw_cursor = query_one(request, "cursor")
    cursor = None if raw_cursor is None else decode_cursor(raw_cursor, HistoryCursor)
    async with request.app[DB_POOL].acquire() as conn:
        customer = await readable_customer(conn, principal, domain, identity)
        if cursor is not None:
            cursor = history_position(cursor, customer.customer_id)
        sources = [
            await _older(conn, source, domain, customer.ids, cursor, limit + 1)
            for source in _SOURCES
        ]
    # Each source is in (at, id) order; ties between sources break on rank, and a merge
    # keeps each source's own order (the database's order of ids).
    merged = list(
        itertools.islice(
            heapq.merge(*sources, key=lambda keyed: (keyed[0], keyed[1]), reverse=True), limit + 1
        )
    )
    page = merged[:limit]
    next_cursor = None
    if len(merged) > limit:
        at, rank, entry_id, _ = page[-1]
        next_cursor = history_cursor(at, rank, entry_id, customer.customer_id)
    return respond(
        HistoryPage(
            customer_id=customer.customer_id,
            entries=[keyed[3] for keyed in reversed(page)],
            next_cursor=next_cursor,
        )
    )


def history_routes(base: str) -> list[web.RouteDef]:
    return [web.get(base + "/customers/{customer_id}/history", guarded(get_history))]
