"""A customer's data, exported: ``GET /v1/domains/{domain}/customers/{customer_id}/export``.

Everything PostgreSQL holds about one person (the GDPR's access and portability), found
by the profile id or any identity of it (``router.api.desktop.readable_customer``, as the
profile and the history find it): the router's customer record (owner, last agent,
affinity), every identity, the consents and consent changes of their addresses, every
conversation of every identity with its messages, assignments (the routing decisions) and
outbound messages (delivery status and error), business-started messages whose
conversation the customer has not opened yet, and the audit entries that name the customer
(by digest: ``router.api.routes.customer_target``).

Admin only (an agent token gets 403), and audited: each call writes a ``customer.export``
entry naming the customer by digest, in the transaction that reads the data (repeatable
read: one page is consistent with one moment), so the export shows itself. A GET: it
changes nothing but the audit log.

The bound: conversations are paged, the person's own sections are not. A page holds at
most ``limit`` conversations (oldest first), each whole, and closes early once its
conversations' messages reach ``EXPORT_MESSAGES_BUDGET`` (a page always holds at least one
conversation, however long). ``next_cursor`` continues; null on the last page. Every page
repeats the person's sections (identities, customer record, consents, consent changes,
audit entries, unopened notifications): they are few, and each page stands alone. The
cursor is keyed to the profile, as the history's is.

What is not exported, and why, is ``NOT_EXPORTED``; ``EXPORTED`` names what is.
``tests/api/test_customer_export.py`` checks that every table holding a customer's
personal data (``runtime.personal_data``) is in one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import asyncpg
import msgspec
from aiohttp import web

from router.api.desktop import (
    Customer,
    decode_cursor,
    digest,
    encode_cursor,
    micros_of,
    moment_of,
    query_one,
    readable_customer,
    refused_cursor,
)
from router.api.desktop_models import CustomerIdentity, Micros
from router.api.models import epoch
from router.api.routes import (
    customer_target,
    enter,
    guarded,
    path_value,
    query_int,
    require_admin,
    respond,
)
from runtime import audit
from runtime.appkeys import DB_POOL
from schemas import Attachment
from schemas.identity import PHONE_KINDS
from schemas.limits import CONVERSATION_ID_MAX, CUSTOMER_ID_MAX, is_identifier

EXPORT_LIMIT = 20
EXPORT_LIMIT_MAX = 100
"""Conversations on one page: the default and the most a client may ask for."""
EXPORT_MESSAGES_BUDGET = 5000
"""A page closes after the conversation that brings its messages to this many."""

EXPORTED: Final = frozenset(
    {
        "customers",
        "customer_identities",
        "conversations",
        "messages",
        "assignments",
        "outbound_messages",
        "consents",
        "marketing_consents",
        "consent_changes",
        "audit_log",
    }
)
"""Tables whose rows about the customer the export holds."""

NOT_EXPORTED: Final[Mapping[str, str]] = {
    "dead_letters": "Raw records set aside as unreadable or unroutable (and providers' "
    "whole webhook requests): not attributable to a customer without parsing each one, "
    "which is what failed; retention expires them.",
    "outbox": "Transient: a batch's events between its transaction and their publication, "
    "deleted once the broker has them; what they say is in the rows exported.",
    "erasures": "Requests to erase a customer: whom a request names is held only until the "
    "router has applied it, and then nobody's data is left to export.",
    "topic_keys": "Keys that seal the customer's records on the topics (named by a "
    "SHA-256 of the identity or conversation): a means of erasure, not data about them.",
    "retention_scans": "Where the retention job's walk of customers stopped: one customer id "
    "per domain, a position, not data about that customer.",
    "agent_events": "The router's replay log of the commands it applied (links, merges, "
    "owners, consents): their effects are the rows exported (customer_identities, "
    "customers, consent_changes, audit_log).",
}
"""Tables holding customer personal data that the export leaves out, with the reason."""

_ADDRESS_KINDS = PHONE_KINDS | {"email"}
"""Identities whose value is a consent's address (an E.164 number, an email address)."""

_attachments = msgspec.json.Decoder(tuple[Attachment, ...])


# -- the document -------------------------------------------------------------------


class ExportCursor(msgspec.Struct, frozen=True, array_like=True):
    """What an export's ``cursor`` holds: after which conversation the page starts."""

    version: Literal[1]
    at: Micros
    """The last conversation's ``opened_at`` (microseconds since the epoch)."""
    conversation_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CONVERSATION_ID_MAX)]
    check: str
    """Of the position and the profile: an edited cursor, or another customer's, is refused."""


class ExportMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    direction: str
    """``inbound`` (the customer's) or ``outbound`` (an agent's, a bot's, the business's)."""
    channel: str
    agent_id: str | None
    bot_id: str | None
    text: str | None
    attachments: tuple[Attachment, ...]
    status: str | None
    provider_message_id: str | None
    occurred_at: float


class ExportAssignment(msgspec.Struct, frozen=True, kw_only=True):
    """A routing decision: who was offered the conversation, how, and how it ended."""

    assignment_id: str
    agent_id: str
    strategy: str
    step: str
    waited_seconds: float
    offered_at: float | None
    accepted_at: float | None
    ended_at: float | None
    end_reason: str | None


class ExportOutbound(msgspec.Struct, frozen=True, kw_only=True):
    """A message sent to the customer: its delivery."""

    outbound_id: str
    kind: str
    channel: str
    agent_id: str | None
    bot_id: str | None
    campaign_id: str | None
    status: str
    provider_message_id: str | None
    attempts: int
    error: str | None
    created_at: float
    updated_at: float


class ExportConversation(msgspec.Struct, frozen=True, kw_only=True):
    conversation_id: str
    customer_id: str
    """The identity the conversation came from."""
    channel: str
    queue: str
    status: str
    opened_at: float
    closed_at: float | None
    record: msgspec.Raw
    """The router's record of it, as stored: context (attributes, language, skills), the
    bot's hand-off, timestamps, the agents it was offered to or passed over."""
    messages: list[ExportMessage]
    assignments: list[ExportAssignment]
    outbound: list[ExportOutbound]


class ExportNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A business-started message whose conversation the customer has not opened."""

    conversation_id: str
    outbound: ExportOutbound
    messages: list[ExportMessage]


class ExportConsent(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    address: str
    customer_id: str
    consent: str
    scope: str
    source: str
    changed_at: float


class ExportConsentChange(msgspec.Struct, frozen=True, kw_only=True):
    change_id: str
    channel: str
    address: str
    customer_id: str
    consent: str
    scope: str
    source: str
    message_id: str | None
    actor: str | None
    changed_at: float


class CustomerExport(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    """The profile's id (whichever identity was asked for)."""
    identities: list[CustomerIdentity]
    customer: msgspec.Raw | None
    """The router's customer record, as stored (owner, last agent, affinity, the latest
    business-started message's expectation); null when the router keeps none."""
    consents: list[ExportConsent]
    consent_changes: list[ExportConsentChange]
    audit: list[audit.AuditEntry]
    """Entries naming the customer (by digest), this export's own included."""
    notifications: list[ExportNotification]
    conversations: list[ExportConversation]
    """This page's: oldest first."""
    next_cursor: str | None
    """Pass as ``cursor`` for the next page of conversations; null on the last page."""


# -- the cursor ---------------------------------------------------------------------


def export_cursor(at: datetime, conversation_id: str, profile: str) -> str:
    micros = micros_of(at)
    check = digest("export", profile, micros, conversation_id)
    return encode_cursor(ExportCursor(1, micros, conversation_id, check))


def export_position(raw: str, profile: str) -> tuple[datetime, str]:
    """Where the page of ``raw`` starts (400 for a cursor not given for ``profile``)."""
    cursor = decode_cursor(raw, ExportCursor)
    if cursor.check != digest(
        "export", profile, cursor.at, cursor.conversation_id
    ) or not is_identifier(cursor.conversation_id, CONVERSATION_ID_MAX):
        raise refused_cursor()
    return moment_of(cursor.at), cursor.conversation_id


# -- reads --------------------------------------------------------------------------

_CONVERSATIONS = """
SELECT c.conversation_id, c.customer_id, c.channel, c.queue, c.status, c.opened_at,
       c.closed_at, switchboard_conversation_record(c)::text AS record,
       (SELECT count(*) FROM messages m
        WHERE m.domain = c.domain AND m.conversation_id = c.conversation_id) AS messages
FROM conversations c
WHERE c.domain = $1 AND c.customer_id = ANY($2::text[])
  AND ($3::timestamptz IS NULL OR (c.opened_at, c.conversation_id) > ($3, $4::text))
ORDER BY c.opened_at, c.conversation_id LIMIT $5
"""
_MESSAGES = """
SELECT conversation_id, message_id, direction, channel, agent_id, bot_id, text,
       attachments::text AS attachments, status, provider_message_id, occurred_at
FROM messages WHERE domain = $1 AND conversation_id = ANY($2::text[])
ORDER BY occurred_at, message_id
"""
_ASSIGNMENTS = """
SELECT conversation_id, assignment_id, agent_id, strategy, step, waited_seconds, offered_at,
       accepted_at, ended_at, end_reason
FROM assignments WHERE domain = $1 AND conversation_id = ANY($2::text[])
ORDER BY coalesce(offered_at, accepted_at), assignment_id
"""
_OUTBOUND_COLUMNS = (
    "o.conversation_id, o.outbound_id, o.kind, o.channel, o.agent_id, o.bot_id, o.campaign_id,"
    " o.status, o.provider_message_id, o.attempts, o.error, o.created_at, o.updated_at"
)
_OUTBOUND = f"""
SELECT {_OUTBOUND_COLUMNS} FROM outbound_messages o
WHERE o.domain = $1 AND o.conversation_id = ANY($2::text[])
ORDER BY o.created_at, o.outbound_id
"""  # noqa: S608 -- fixed text
# As the history reads them: a notification's conversation has no row until the
# customer's answer opens it under the notification's conversation id.
_NOTIFICATIONS = f"""
SELECT {_OUTBOUND_COLUMNS} FROM outbound_messages o
WHERE o.domain = $1 AND o.kind = 'notification' AND o.customer_id = ANY($2::text[])
  AND NOT EXISTS (SELECT 1 FROM conversations c
                  WHERE c.domain = o.domain AND c.conversation_id = o.conversation_id)
ORDER BY o.created_at, o.outbound_id
"""  # noqa: S608 -- fixed text
_CONSENTS = """
SELECT channel, address, customer_id, consent, scope, source, changed_at FROM scoped_consents
WHERE domain = $1 AND (customer_id = ANY($2::text[]) OR address = ANY($3::text[]))
ORDER BY channel, address, scope
"""
_CONSENT_CHANGES = """
SELECT change_id, channel, address, customer_id, consent, scope, source, message_id, actor,
    changed_at
FROM consent_changes
WHERE domain = $1 AND (customer_id = ANY($2::text[]) OR address = ANY($3::text[]))
ORDER BY changed_at, change_id
"""
# The audit log names a customer by digest, as the target or as a value of its detail
# (a link's ``identity``, a merge's ``merged``).
_AUDIT = """
SELECT id, at, actor, action, domain, target, detail::text AS detail FROM audit_log
WHERE domain = $1 AND (target = ANY($2::text[])
    OR EXISTS (SELECT 1 FROM jsonb_each_text(detail) d WHERE d.value = ANY($2::text[])))
ORDER BY id
"""


def _addresses(ids: list[str]) -> list[str]:
    """The consent addresses among the identities: phone numbers and email addresses."""
    found = []
    for identity in ids:
        kind, _, value = identity.partition(":")
        if kind in _ADDRESS_KINDS and value:
            found.append(value)
    return found


def _message(row: asyncpg.Record) -> ExportMessage:
    return ExportMessage(
        message_id=row["message_id"],
        direction=row["direction"],
        channel=row["channel"],
        agent_id=row["agent_id"],
        bot_id=row["bot_id"],
        text=row["text"],
        attachments=_attachments.decode(row["attachments"] or "[]"),
        status=row["status"],
        provider_message_id=row["provider_message_id"],
        occurred_at=row["occurred_at"].timestamp(),
    )


def _assignment(row: asyncpg.Record) -> ExportAssignment:
    return ExportAssignment(
        assignment_id=row["assignment_id"],
        agent_id=row["agent_id"],
        strategy=row["strategy"],
        step=row["step"],
        waited_seconds=row["waited_seconds"],
        offered_at=epoch(row["offered_at"]),
        accepted_at=epoch(row["accepted_at"]),
        ended_at=epoch(row["ended_at"]),
        end_reason=row["end_reason"],
    )


def _outbound(row: asyncpg.Record) -> ExportOutbound:
    return ExportOutbound(
        outbound_id=row["outbound_id"],
        kind=row["kind"],
        channel=row["channel"],
        agent_id=row["agent_id"],
        bot_id=row["bot_id"],
        campaign_id=row["campaign_id"],
        status=row["status"],
        provider_message_id=row["provider_message_id"],
        attempts=row["attempts"],
        error=row["error"] or None,
        created_at=row["created_at"].timestamp(),
        updated_at=row["updated_at"].timestamp(),
    )


def _audit_entry(row: asyncpg.Record) -> audit.AuditEntry:
    return audit.AuditEntry(
        id=row["id"],
        at=row["at"].timestamp(),
        actor=row["actor"],
        action=row["action"],
        domain=row["domain"],
        target=row["target"],
        detail=msgspec.json.decode(row["detail"]),
    )


def _by_conversation(rows: list[asyncpg.Record], make: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row["conversation_id"], []).append(make(row))
    return grouped


def _page(rows: list[asyncpg.Record], limit: int) -> list[asyncpg.Record]:
    """The conversations of one page: up to ``limit``, closed early by the message budget."""
    page: list[asyncpg.Record] = []
    messages = 0
    for row in rows[:limit]:
        if page and messages >= EXPORT_MESSAGES_BUDGET:
            break
        page.append(row)
        messages += row["messages"]
    return page


async def _conversations(
    conn: asyncpg.Connection, domain: str, rows: list[asyncpg.Record]
) -> list[ExportConversation]:
    ids = [row["conversation_id"] for row in rows]
    messages = _by_conversation(await conn.fetch(_MESSAGES, domain, ids), _message)
    assignments = _by_conversation(await conn.fetch(_ASSIGNMENTS, domain, ids), _assignment)
    outbound = _by_conversation(await conn.fetch(_OUTBOUND, domain, ids), _outbound)
    return [
        ExportConversation(
            conversation_id=row["conversation_id"],
            customer_id=row["customer_id"],
            channel=row["channel"],
            queue=row["queue"],
            status=row["status"],
            opened_at=row["opened_at"].timestamp(),
            closed_at=epoch(row["closed_at"]),
            record=msgspec.Raw(row["record"].encode()),
            messages=messages.get(row["conversation_id"], []),
            assignments=assignments.get(row["conversation_id"], []),
            outbound=outbound.get(row["conversation_id"], []),
        )
        for row in rows
    ]


async def _notifications(
    conn: asyncpg.Connection, domain: str, customer: Customer
) -> list[ExportNotification]:
    rows = await conn.fetch(_NOTIFICATIONS, domain, customer.ids)
    ids = sorted({row["conversation_id"] for row in rows})
    messages = _by_conversation(await conn.fetch(_MESSAGES, domain, ids), _message)
    return [
        ExportNotification(
            conversation_id=row["conversation_id"],
            outbound=_outbound(row),
            messages=[
                m
                for m in messages.get(row["conversation_id"], [])
                if m.message_id == row["outbound_id"]
            ],
        )
        for row in rows
    ]


async def _export(
    conn: asyncpg.Connection,
    domain: str,
    customer: Customer,
    after: tuple[datetime, str] | None,
    limit: int,
) -> CustomerExport:
    ids, addresses = customer.ids, _addresses(customer.ids)
    raw = await conn.fetchval(
        "SELECT record::text FROM customers WHERE domain = $1 AND customer_id = $2",
        domain,
        customer.customer_id,
    )
    start_at, start_id = after if after is not None else (None, None)
    rows = await conn.fetch(_CONVERSATIONS, domain, ids, start_at, start_id, limit + 1)
    page = _page(rows, limit)
    next_cursor = None
    if len(rows) > len(page):
        last = page[-1]
        next_cursor = export_cursor(
            last["opened_at"], last["conversation_id"], customer.customer_id
        )
    targets = [customer_target(identity) for identity in ids]
    return CustomerExport(
        customer_id=customer.customer_id,
        identities=customer.identities,
        customer=None if raw is None else msgspec.Raw(raw.encode()),
        consents=[
            ExportConsent(**{**row, "changed_at": row["changed_at"].timestamp()})
            for row in await conn.fetch(_CONSENTS, domain, ids, addresses)
        ],
        consent_changes=[
            ExportConsentChange(**{**row, "changed_at": row["changed_at"].timestamp()})
            for row in await conn.fetch(_CONSENT_CHANGES, domain, ids, addresses)
        ],
        audit=[_audit_entry(row) for row in await conn.fetch(_AUDIT, domain, targets)],
        notifications=await _notifications(conn, domain, customer),
        conversations=await _conversations(conn, domain, page),
        next_cursor=next_cursor,
    )


async def get_export(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    identity = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    require_admin(principal)
    limit = query_int(request, "limit", EXPORT_LIMIT, 1, EXPORT_LIMIT_MAX)
    raw_cursor = query_one(request, "cursor")
    async with (
        request.app[DB_POOL].acquire() as conn,
        conn.transaction(isolation="repeatable_read"),
    ):
        customer = await readable_customer(conn, principal, domain, identity)
        after = None if raw_cursor is None else export_position(raw_cursor, customer.customer_id)
        await audit.record_action(
            conn,
            actor=principal.actor,
            action="customer.export",
            domain=domain,
            target=customer_target(customer.customer_id),
            detail={"continued": after is not None, "limit": limit},
        )
        document = await _export(conn, domain, customer, after, limit)
    return respond(document)


def export_routes(base: str) -> list[web.RouteDef]:
    return [web.get(base + "/customers/{customer_id}/export", guarded(get_export))]
