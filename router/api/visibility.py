"""Which conversations a principal may read: the one rule, for one conversation and for lists.

An admin (or platform) token reads every conversation of the domain it was authenticated
for. An agent token reads a conversation it owns, is offered, or handled before (any
``assignments`` row of the agent: accepted, transferred away, or an offer it let expire).
The rule is SQL (``agent_may_read``), so that a list filters by it in the same query, and
``may_read`` asks it of one conversation: no second copy to drift from the first.
"""

from __future__ import annotations

import asyncpg

from router.api.auth import Principal


def agent_may_read(row: str, domain: str, agent: str) -> str:
    """SQL: the agent may read the ``conversations`` row ``row`` (an alias). ``domain``
    and ``agent`` are the query's placeholders (``$1``) of the domain and the agent id.

    Written as a set of conversation ids (an agent's are few beside a domain's), which the
    planner joins from either side: from the agent's assignments and open conversations
    when they are few, from a list's index order when they are many. Owners and offers
    are looked for among open conversations only, where the partial indexes are: the
    engine clears both when a conversation closes (``end_assignment``), and every owner
    period and offer has its ``assignments`` row anyway."""
    return (
        f"{row}.conversation_id IN ("  # noqa: S608 -- an alias and placeholders
        f"SELECT conversation_id FROM assignments WHERE domain = {domain} AND agent_id = {agent}"
        " UNION ALL SELECT conversation_id FROM conversations"
        f" WHERE domain = {domain} AND status <> 'closed' AND (owner_agent_id = {agent}"
        f" OR (status = 'offered' AND record->>'offered_to' = {agent})))"
    )


_MAY_READ = (
    "SELECT EXISTS (SELECT 1 FROM conversations c"  # noqa: S608 -- placeholders only
    f" WHERE c.domain = $1 AND c.conversation_id = $2 AND {agent_may_read('c', '$1', '$3')})"
)


async def may_read(
    conn: asyncpg.Connection, principal: Principal, domain: str, conversation_id: str
) -> bool:
    """Whether ``principal`` may read the conversation (of ``domain``, which the principal
    was authenticated for: ``router.api.routes.enter``)."""
    if principal.is_admin:
        return True
    if principal.agent_id is None:
        return False
    return bool(await conn.fetchval(_MAY_READ, domain, conversation_id, principal.agent_id))
