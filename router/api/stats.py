"""Live figures read from PostgreSQL: an agent's day, a conversation's timeline, queues.

Reads only: the router is the single writer of routing state. The router writes a
batch's rows in one transaction, so each figure is consistent with some batch boundary.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import asyncpg
import msgspec

from router.api.models import (
    AgentStats,
    QueueView,
    TimelineAssignment,
    TimelineEntry,
    TimelineMessage,
    epoch,
)
from router.engine import AgentRecord, DomainPolicy
from runtime.stats import ESTIMATE_WINDOW_SECONDS, estimate_wait
from schemas import Attachment, Presence

_attachments = msgspec.json.Decoder(tuple[Attachment, ...])
_agent = msgspec.json.Decoder(AgentRecord)


def day_start(now: float) -> datetime:
    day = datetime.fromtimestamp(now, UTC)
    return day.replace(hour=0, minute=0, second=0, microsecond=0)


_AGENT_COUNTS = """
SELECT
  (SELECT count(*) FROM conversations
    WHERE domain = $1 AND owner_agent_id = $2 AND status <> 'closed') AS open,
  (SELECT count(DISTINCT conversation_id) FROM assignments
    WHERE domain = $1 AND agent_id = $2 AND accepted_at >= $3) AS handled,
  (SELECT count(*) FROM assignments
    WHERE domain = $1 AND agent_id = $2 AND offered_at >= $3 - interval '1 day'
      AND end_reason = 'offer_missed' AND ended_at >= $3) AS missed
"""

_AGENT_OFFERED = """
SELECT count(*) FROM conversations
WHERE domain = $1 AND status = 'offered' AND record->>'offered_to' = $2
"""

_FIRST_RESPONSES = """
WITH mine AS (
    SELECT DISTINCT conversation_id FROM outbound_messages
    WHERE domain = $1 AND agent_id = $2 AND created_at >= $3
), firsts AS (
    SELECT DISTINCT ON (o.conversation_id) o.conversation_id, o.agent_id, o.created_at
    FROM outbound_messages o JOIN mine USING (conversation_id)
    WHERE o.domain = $1
    ORDER BY o.conversation_id, o.created_at
)
SELECT extract(epoch FROM f.created_at - c.opened_at)::float8 AS seconds
FROM firsts f JOIN conversations c ON c.domain = $1 AND c.conversation_id = f.conversation_id
WHERE f.agent_id = $2 AND f.created_at >= $3
"""

_PREFERRED = """
SELECT
  count(DISTINCT c.conversation_id) AS routed,
  count(DISTINCT c.conversation_id) FILTER (
      WHERE a.agent_id = $2 AND a.strategy = 'preferred' AND a.accepted_at IS NOT NULL) AS hits
FROM conversations c
LEFT JOIN assignments a ON a.domain = c.domain AND a.conversation_id = c.conversation_id
WHERE c.domain = $1 AND c.preferred_agent_id = $2 AND c.opened_at >= $3
"""


async def agent_stats(
    conn: asyncpg.Connection, domain: str, record: AgentRecord, now: float
) -> AgentStats:
    start = day_start(now)
    agent_id = record.agent_id
    counts = await conn.fetchrow(_AGENT_COUNTS, domain, agent_id, start)
    offered = await conn.fetchval(_AGENT_OFFERED, domain, agent_id)
    firsts = [row["seconds"] for row in await conn.fetch(_FIRST_RESPONSES, domain, agent_id, start)]
    preferred = await conn.fetchrow(_PREFERRED, domain, agent_id, start)
    routed, hits = preferred["routed"], preferred["hits"]
    return AgentStats(
        day=start.date().isoformat(),
        open_conversations=counts["open"],
        offered_conversations=offered,
        handled_today=counts["handled"],
        median_first_response_seconds_today=(
            max(0.0, statistics.median(firsts)) if firsts else None
        ),
        preferred_routed_today=routed,
        preferred_hits_today=hits,
        preferred_hit_ratio_today=hits / routed if routed else None,
        offers_missed_today=counts["missed"],
        offers_missed_in_a_row=record.missed_offers,
    )


async def timeline(
    conn: asyncpg.Connection, domain: str, conversation_id: str, limit: int
) -> list[TimelineEntry]:
    """The conversation's assignments and messages, oldest first (the last ``limit`` of each)."""
    assignments = await conn.fetch(
        "SELECT * FROM (SELECT assignment_id, agent_id, strategy, step, waited_seconds,"
        " offered_at, accepted_at, ended_at, end_reason FROM assignments"
        " WHERE domain = $1 AND conversation_id = $2"
        " ORDER BY coalesce(offered_at, accepted_at) DESC LIMIT $3) a",
        domain,
        conversation_id,
        limit,
    )
    messages = await conn.fetch(
        "SELECT * FROM (SELECT message_id, direction, channel, agent_id, bot_id, text,"
        " attachments::text AS attachments, occurred_at, status FROM messages"
        " WHERE domain = $1 AND conversation_id = $2 ORDER BY occurred_at DESC LIMIT $3) m",
        domain,
        conversation_id,
        limit,
    )
    replies = await conn.fetch(
        "SELECT * FROM (SELECT outbound_id, status, error FROM outbound_messages"
        " WHERE domain = $1 AND conversation_id = $2 ORDER BY created_at DESC LIMIT $3) o",
        domain,
        conversation_id,
        limit,
    )
    delivery = {row["outbound_id"]: (row["status"], row["error"]) for row in replies}
    entries: list[TimelineEntry] = []
    for row in assignments:
        at = epoch(row["offered_at"]) or epoch(row["accepted_at"]) or 0.0
        entries.append(
            TimelineAssignment(
                at=at,
                assignment_id=row["assignment_id"],
                agent_id=row["agent_id"],
                strategy=row["strategy"],
                step=row["step"],
                waited_seconds=row["waited_seconds"],
                accepted_at=epoch(row["accepted_at"]),
                ended_at=epoch(row["ended_at"]),
                end_reason=row["end_reason"],
            )
        )
    for row in messages:
        status, error = delivery.get(row["message_id"], (row["status"], None))
        entries.append(
            TimelineMessage(
                at=row["occurred_at"].timestamp(),
                message_id=row["message_id"],
                direction=row["direction"],
                channel=row["channel"],
                agent_id=row["agent_id"],
                bot_id=row["bot_id"],
                status=status,
                error=error or None,
                text=row["text"],
                attachments=_attachments.decode(row["attachments"]),
            )
        )
    entries.sort(key=lambda entry: (entry.at, isinstance(entry, TimelineMessage)))
    return entries


# -- queues -------------------------------------------------------------------------

_WAITING = """
SELECT queue,
       count(*) FILTER (WHERE status = 'waiting') AS waiting,
       count(*) FILTER (WHERE status = 'offered') AS offered,
       min((record->>'waiting_since')::float8) FILTER (WHERE status = 'waiting') AS oldest
FROM conversations
WHERE domain = $1 AND status IN ('waiting', 'offered')
GROUP BY queue
"""

_RECENT = """
SELECT record->>'queue' AS queue, waited_seconds
FROM assignments
WHERE domain = $1 AND offered_at >= to_timestamp($2) AND strategy <> 'transfer'
"""


async def queue_views(
    conn: asyncpg.Connection, domain: str, policy: DomainPolicy, now: float
) -> list[QueueView]:
    waiting = {row["queue"]: row for row in await conn.fetch(_WAITING, domain)}
    recent: dict[str, list[float]] = {}
    for row in await conn.fetch(_RECENT, domain, now - ESTIMATE_WINDOW_SECONDS):
        recent.setdefault(row["queue"], []).append(row["waited_seconds"])
    online = [
        _agent.decode(row["record"])
        for row in await conn.fetch(
            "SELECT record::text AS record FROM agents WHERE domain = $1 AND presence = $2",
            domain,
            str(Presence.ONLINE),
        )
    ]
    views = []
    for name in sorted(policy.queues):
        serving = [agent for agent in online if not agent.queues or name in agent.queues]
        free = sum(
            max(0, capacity - agent.load.get(channel, 0))
            for agent in serving
            for channel, capacity in agent.capacity.items()
        )
        row = waiting.get(name)
        count = row["waiting"] if row else 0
        oldest = row["oldest"] if row else None
        waits = recent.get(name, [])
        views.append(
            QueueView(
                queue=name,
                waiting=count,
                offered=row["offered"] if row else 0,
                oldest_wait_seconds=None if oldest is None else max(0.0, round(now - oldest, 3)),
                agents_online=len(serving),
                free_slots=free,
                assigned_last_hour=len(waits),
                median_wait_seconds_last_hour=(
                    round(statistics.median(waits), 3) if waits else None
                ),
                estimated_wait_seconds=estimate_wait(count, free, len(serving), waits),
            )
        )
    return views
