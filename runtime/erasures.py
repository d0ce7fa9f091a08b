"""Requests to erase a customer: the ``erasures`` row a ``customer.erase_requested``
command stands for (``router.engine.erasure``).

Written by the API (``DELETE /v1/domains/{d}/customers/{id}``) and by the retention job
(``customer_identities``), read by the router when it applies the command, which empties
whom it names and keeps what it deleted. One way to write it, for both.
"""

from __future__ import annotations

import asyncpg

from schemas.limits import ERASED_CONVERSATIONS_MAX

_LINKED = "SELECT identity FROM customer_identities WHERE domain = $1 AND customer_id = $2"
_CONVERSATIONS = """
SELECT conversation_id FROM (
    SELECT conversation_id, opened_at AS at FROM conversations
    WHERE domain = $1 AND customer_id = ANY($2::text[])
    UNION
    SELECT conversation_id, created_at AS at FROM outbound_messages
    WHERE domain = $1 AND kind = 'notification' AND customer_id = ANY($2::text[])
) known ORDER BY at DESC, conversation_id LIMIT $3
"""
_REQUEST = """
INSERT INTO erasures (domain, erasure_id, identities, conversation_ids, requested_by,
                      keep_consents)
VALUES ($1, $2, $3::text[], $4::text[], $5, $6)
"""


async def linked_identities(conn: asyncpg.Connection, domain: str, profile: str) -> list[str]:
    """The identities linked to the profile ``profile`` (its own id not among them)."""
    return [row["identity"] for row in await conn.fetch(_LINKED, domain, profile)]


async def request_erasure(
    conn: asyncpg.Connection,
    domain: str,
    erasure_id: str,
    identities: list[str],
    requested_by: str,
    *,
    keep_consents: bool = False,
) -> None:
    """Write the row of erasure ``erasure_id``: the identities, and the conversations
    PostgreSQL holds for them, newest first (one more than an event names, so that the
    router can say there were more). ``keep_consents``: their consents stay (an opt-out
    outlives a profile that expired, so that it is still honoured)."""
    rows = await conn.fetch(_CONVERSATIONS, domain, identities, ERASED_CONVERSATIONS_MAX + 1)
    conversations = [row["conversation_id"] for row in rows]
    await conn.execute(
        _REQUEST, domain, erasure_id, identities, conversations, requested_by, keep_consents
    )
