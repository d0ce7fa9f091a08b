"""Retention: how long each domain keeps what it stores in PostgreSQL (``[domains.<d>.retention]``),
and the job that lets the rest go (``[retention]``).

Example (TOML)::

    [domains.acme.retention]
    message_bodies = 2592000        # 30 days after a conversation closed: its texts emptied
    routing_history = 31536000      # a year after: the conversation and its history deleted
    consent_history = 157680000     # consent changes after five years
    dead_letters = 1209600          # the domain's dead letters after 14 days
    customer_identities = 63072000  # two years quiet: the customer erased, opt-outs kept

    [retention]
    interval = 900                  # each router tries a pass every 15 minutes
    batch_size = 1000               # rows per statement at most
    unowned_dead_letters = 1209600  # dead letters no configured domain owns

Rules. Periods are whole seconds; an unset period keeps its data for ever (as before this
section existed). "Closed more than P ago" reads the conversation's ``closed_at``, which the
router sets once, when it closes it; an open conversation is never touched.

1. ``message_bodies`` (1 day to 10 years): the messages of a conversation closed more than
   P ago keep their rows (direction, channel, sender, status, times: counts, first-response
   figures, the provider-retry check) but lose their content: ``text`` becomes empty,
   ``attachments`` (media references, captions, file names) an empty list, and the stored
   request of its business-started messages (text, address, template parameters) NULL.
   A business-started message nobody answered (no conversation ever opened under its id)
   counts as closed ``NOTIFICATION_ANSWERABLE`` after it was sent, once an answer can no
   longer open its conversation; one not sent yet waits until it is.
2. ``routing_history`` (7 days to 10 years, at least ``message_bodies``): a conversation
   closed more than P ago is deleted with its messages, assignments and outbound messages
   (its row last, so an interrupted pass resumes it); one whose outbound message is still
   being sent, or whose final status is not reported yet, waits for it. Unanswered
   business-started messages go P after they count as closed (rule 1). The replay log
   (``agent_events``: presence, commands, agents' reply texts, customers' edits) loses the
   records applied more than P ago, except those naming a conversation that is still open.
   Seven days at least: message rows are how the router recognises a provider's late
   retry (WhatsApp retries a webhook for up to 7 days).
3. ``consent_history`` (7 days to 10 years): consent changes (opt-outs and opt-ins with the
   address and the message that made them) made more than P ago are deleted; the current
   consent of each address stays in ``consents``.
4. ``dead_letters`` (1 day to 10 years): the domain's dead letters (each holds the raw
   record) set aside more than P ago are deleted, re-driven or not. ``[retention]
   unowned_dead_letters`` does the same for those no configured domain owns (no domain, or
   a domain not in the configuration).
5. ``customer_identities`` (30 days to 10 years): a customer (a profile the router
   keeps) with no open conversation, no conversation active and no business-started
   message sent to any of their identities for P is erased, as ``DELETE
   /v1/domains/{d}/customers/{id}`` erases one (``runtime.erasures``, the router's
   ``router.engine.erasure``), but their consents stay: an opt-out outlives the profile.
   The job walks the domain's customers in id order, ``batch_size`` a page, at most
   ``SCAN_PAGES_PER_PASS`` pages and ``batch_size`` erasures a pass, from where the last
   pass stopped (``retention_scans``); each erasure is one command the router applies as
   the last record of its batch. Only the routers' job does it: it publishes the
   commands (``switchboard retention run`` leaves this period to it).
6. Webhook tokens (``webhook_nonces``) past their expiry are deleted, always: an expired
   token protects against nothing (each claim purges a few of its provider's already;
   this catches providers that went quiet). Erasure requests (``erasures``: what each
   deleted, never whom) are deleted ``ERASURES_KEPT`` (30 days) after they were made;
   the audit log keeps who erased whom, by digest.

The job: each router tries a pass every ``interval`` seconds. A domain's pass runs under a
PostgreSQL advisory lock of its own (``pg_try_advisory_lock``), so of two routers (or a
router and ``switchboard retention run``) one does it and the other skips it. Every
statement changes at most ``batch_size`` rows and commits alone, with ``batch_pause``
seconds between statements and a short ``lock_timeout``: the router's batches never wait
long behind it. A pass reports counts only: the ``switchboard_retention_rows_total``
counter, one ``retention_run`` log line, and one audit entry (``retention.expire``) per
domain it changed anything in.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Final

import asyncpg
import msgspec
import structlog

from runtime.audit import record_action
from runtime.erasures import linked_identities, request_erasure
from runtime.kafka import BrokerUnavailable
from schemas import CustomerEraseRequested

log = structlog.get_logger(__name__)

Erase = Callable[[CustomerEraseRequested], Awaitable[None]]
"""Publishes an erasure command on ``agents.events`` (the routers' job has one)."""

DAY: Final = 86_400
PERIOD_MAX: Final = 3650 * DAY
"""Ten years: the longest period of any kind."""
BODIES_MIN: Final = DAY
HISTORY_MIN: Final = 7 * DAY
CONSENT_MIN: Final = 7 * DAY
DEAD_LETTERS_MIN: Final = DAY
IDENTITIES_MIN: Final = 30 * DAY
ERASURES_KEPT: Final = 30 * DAY
"""Completed erasures' rows (what each deleted, never whom) are purged this long after."""
SCAN_PAGES_PER_PASS: Final = 100
"""Pages of ``batch_size`` customers the walk of ``customer_identities`` reads per pass."""
NOTIFICATION_ANSWERABLE: Final = 30 * DAY
"""How long a business-started message's answer still opens its conversation (the engine's
``router.engine.outbound.REMEMBERED``; a test keeps the two equal)."""

RETENTION_ACTOR: Final = "retention"
"""The audit actor of the routers' job (the CLI's is ``cli``)."""
AUDIT_ACTION: Final = "retention.expire"
LOCK_TIMEOUT: Final = "2s"
"""Longest a statement waits for a row lock: then the domain's pass stops until the next."""
STATEMENT_TIMEOUT: Final = "60s"
_LOCK_CLASS: Final = "switchboard.retention"
_PLATFORM_LOCK: Final = ""
"""Lock key of the rows no domain owns (a domain id is never empty)."""
_FINAL: Final = "status NOT IN ('accepted', 'queued', 'sending')"
"""An outbound message the sender is done with."""

Bodies = Annotated[int, msgspec.Meta(ge=BODIES_MIN, le=PERIOD_MAX)]
History = Annotated[int, msgspec.Meta(ge=HISTORY_MIN, le=PERIOD_MAX)]
ConsentHistory = Annotated[int, msgspec.Meta(ge=CONSENT_MIN, le=PERIOD_MAX)]
DeadLetters = Annotated[int, msgspec.Meta(ge=DEAD_LETTERS_MIN, le=PERIOD_MAX)]
Identities = Annotated[int, msgspec.Meta(ge=IDENTITIES_MIN, le=PERIOD_MAX)]


class RetentionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A domain's retention periods, in seconds; unset: kept for ever."""

    message_bodies: Bodies | None = None
    """After a conversation closed, its messages' text, attachments and stored requests are
    emptied (the rows stay); 86400 (1 day) to 315360000 (10 years)."""
    routing_history: History | None = None
    """After a conversation closed, it is deleted with its messages, assignments and
    outbound messages; the replay log's older records too; 604800 (7 days) to 10 years."""
    consent_history: ConsentHistory | None = None
    """Consent changes older than this are deleted (the current consent stays);
    604800 (7 days) to 10 years."""
    dead_letters: DeadLetters | None = None
    """The domain's dead letters older than this are deleted; 86400 (1 day) to 10 years."""
    customer_identities: Identities | None = None
    """A customer with no open conversation, none active and nothing sent to them for this
    long is erased, their consents kept; 2592000 (30 days) to 10 years."""

    def __post_init__(self) -> None:
        if (
            self.message_bodies is not None
            and self.routing_history is not None
            and self.message_bodies > self.routing_history
        ):
            raise ValueError(
                "message_bodies is longer than routing_history, which deletes the messages"
                " first (retention)"
            )

    def periods(self) -> dict[str, int]:
        """The periods that are set, by name."""
        return {
            name: value
            for name in (
                "message_bodies",
                "routing_history",
                "consent_history",
                "dead_letters",
                "customer_identities",
            )
            if (value := getattr(self, name)) is not None
        }


class RetentionJobConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the routers' retention job runs (``[retention]``)."""

    interval: Annotated[float, msgspec.Meta(ge=1, le=DAY)] = 900.0
    """Seconds between two passes of each router (1 to 86400)."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    """Rows one statement changes at most (1 to 10000); each commits on its own."""
    batch_pause: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.05
    """Seconds between two statements of a pass (0 to 10): room for the routers' batches."""
    unowned_dead_letters: DeadLetters | None = None
    """Dead letters no configured domain owns are deleted this long after they were set
    aside; unset: kept. 86400 (1 day) to 10 years."""


# -- the statements ----------------------------------------------------------------------
# $1 is the domain in each; a statement changes at most its last parameter's rows, chosen
# by primary key in a subquery (an UPDATE or DELETE has no LIMIT of its own).

_NOW = "SELECT now()"
_TRY_LOCK = f"SELECT pg_try_advisory_lock(hashtext('{_LOCK_CLASS}'), hashtext($1))"
_UNLOCK = f"SELECT pg_advisory_unlock(hashtext('{_LOCK_CLASS}'), hashtext($1))"

_MARK = "SELECT closed_at, conversation_id FROM retention_marks WHERE domain = $1 AND kind = $2"
_SET_MARK = """
INSERT INTO retention_marks (domain, kind, closed_at, conversation_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (domain, kind) DO UPDATE SET
    closed_at = EXCLUDED.closed_at, conversation_id = EXCLUDED.conversation_id
"""

# Rule 1: conversations closed before $2, after the mark ($3, $4), in closing order.
CLOSED_SINCE_MARK = """
SELECT closed_at, conversation_id FROM conversations
WHERE domain = $1 AND status = 'closed' AND closed_at < $2
  AND (closed_at, conversation_id) > (coalesce($3, '-infinity'::timestamptz), coalesce($4, ''))
ORDER BY closed_at, conversation_id
LIMIT $5
"""
_EMPTY_MESSAGES = """
UPDATE messages SET text = '', attachments = '[]'
WHERE domain = $1 AND message_id IN (
    SELECT message_id FROM messages
    WHERE domain = $1 AND conversation_id = ANY($2::text[])
      AND (text <> '' OR attachments <> '[]'::jsonb)
    LIMIT $3)
"""
_EMPTY_REQUESTS = f"""
UPDATE outbound_messages SET request = NULL
WHERE domain = $1 AND outbound_id IN (
    SELECT outbound_id FROM outbound_messages
    WHERE domain = $1 AND conversation_id = ANY($2::text[]) AND request IS NOT NULL AND {_FINAL}
    LIMIT $3)
"""  # noqa: S608 -- fixed text
# Rule 1, business-started messages no conversation ever opened under.
UNANSWERED_BODIES = f"""
SELECT o.outbound_id FROM outbound_messages o
WHERE o.domain = $1 AND o.kind = 'notification' AND o.request IS NOT NULL
  AND o.created_at < $2 AND o.{_FINAL}
  AND NOT EXISTS (SELECT 1 FROM conversations c
                  WHERE c.domain = $1 AND c.conversation_id = o.conversation_id)
ORDER BY o.created_at
LIMIT $3
"""  # noqa: S608 -- fixed text
_EMPTY_UNANSWERED = f"""
WITH picked AS ({UNANSWERED_BODIES}),
requests AS (
    UPDATE outbound_messages o SET request = NULL FROM picked
    WHERE o.domain = $1 AND o.outbound_id = picked.outbound_id
    RETURNING o.outbound_id
), bodies AS (
    UPDATE messages m SET text = '', attachments = '[]' FROM requests r
    WHERE m.domain = $1 AND m.message_id = r.outbound_id
      AND (m.text <> '' OR m.attachments <> '[]'::jsonb)
    RETURNING 1
)
SELECT (SELECT count(*) FROM requests) AS requests, (SELECT count(*) FROM bodies) AS bodies
"""  # noqa: S608 -- fixed text

# Rule 2: conversations closed before $2, oldest first, none still sending.
CLOSED_EXPIRED = f"""
SELECT c.conversation_id FROM conversations c
WHERE c.domain = $1 AND c.status = 'closed' AND c.closed_at < $2
  AND NOT EXISTS (SELECT 1 FROM outbound_messages o
                  WHERE o.domain = $1 AND o.conversation_id = c.conversation_id
                    AND (NOT o.{_FINAL} OR o.status_unreported))
ORDER BY c.closed_at, c.conversation_id
LIMIT $3
"""  # noqa: S608 -- fixed text
_DELETE_MESSAGES = """
DELETE FROM messages WHERE domain = $1 AND message_id IN (
    SELECT message_id FROM messages WHERE domain = $1 AND conversation_id = ANY($2::text[])
    LIMIT $3)
"""
_DELETE_ASSIGNMENTS = """
DELETE FROM assignments WHERE domain = $1 AND assignment_id IN (
    SELECT assignment_id FROM assignments WHERE domain = $1 AND conversation_id = ANY($2::text[])
    LIMIT $3)
"""
_DELETE_OUTBOUND = """
DELETE FROM outbound_messages WHERE domain = $1 AND outbound_id IN (
    SELECT outbound_id FROM outbound_messages
    WHERE domain = $1 AND conversation_id = ANY($2::text[])
    LIMIT $3)
"""
_DELETE_CONVERSATIONS = """
DELETE FROM conversations
WHERE domain = $1 AND conversation_id = ANY($2::text[]) AND status = 'closed' AND closed_at < $3
"""
# Rule 2, business-started messages no conversation ever opened under.
UNANSWERED_EXPIRED = f"""
SELECT o.outbound_id FROM outbound_messages o
WHERE o.domain = $1 AND o.kind = 'notification' AND o.created_at < $2
  AND o.{_FINAL} AND NOT o.status_unreported
  AND NOT EXISTS (SELECT 1 FROM conversations c
                  WHERE c.domain = $1 AND c.conversation_id = o.conversation_id)
ORDER BY o.created_at
LIMIT $3
"""  # noqa: S608 -- fixed text
_DELETE_UNANSWERED = f"""
WITH gone AS (
    DELETE FROM outbound_messages o WHERE o.domain = $1 AND o.outbound_id IN ({UNANSWERED_EXPIRED})
    RETURNING o.outbound_id
), history AS (
    DELETE FROM messages m USING gone WHERE m.domain = $1 AND m.message_id = gone.outbound_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS outbound, (SELECT count(*) FROM history) AS messages
"""  # noqa: S608 -- fixed text
# Rule 2, the replay log: records applied before $2, but none naming an open conversation
# (by id: commands; by key: agents' replies from elsewhere, customers' edits).
EXPIRED_AGENT_EVENTS = """
SELECT e.seq FROM agent_events e
WHERE e.domain = $1 AND e.applied_at < $2
  AND NOT EXISTS (SELECT 1 FROM conversations c
                  WHERE c.domain = $1 AND c.conversation_id = e.payload->>'conversation_id'
                    AND c.status <> 'closed')
  AND NOT EXISTS (SELECT 1 FROM conversations c
                  WHERE c.domain = $1 AND c.conversation_key = e.payload->>'conversation_key'
                    AND c.status <> 'closed')
ORDER BY e.applied_at
LIMIT $3
"""
_DELETE_AGENT_EVENTS = (
    f"DELETE FROM agent_events WHERE domain = $1 AND seq IN ({EXPIRED_AGENT_EVENTS})"  # noqa: S608 -- fixed text
)
# Rule 3.
EXPIRED_CONSENT_CHANGES = """
SELECT change_id FROM consent_changes WHERE domain = $1 AND changed_at < $2
ORDER BY changed_at LIMIT $3
"""
_DELETE_CONSENT_CHANGES = (
    f"DELETE FROM consent_changes WHERE domain = $1 AND change_id IN ({EXPIRED_CONSENT_CHANGES})"  # noqa: S608 -- fixed text
)
# Rule 4.
EXPIRED_DEAD_LETTERS = """
SELECT id FROM dead_letters WHERE domain = $1 AND created_at < $2 ORDER BY created_at LIMIT $3
"""
_DELETE_DEAD_LETTERS = f"DELETE FROM dead_letters WHERE id IN ({EXPIRED_DEAD_LETTERS})"  # noqa: S608 -- fixed text
# $1: the configured domains (a small table, read whole).
_DELETE_UNOWNED_DEAD_LETTERS = """
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters
    WHERE (domain IS NULL OR domain <> ALL($1::text[])) AND created_at < $2
    LIMIT $3)
"""
# Rule 5: a page of the domain's customers after the walk's mark ($2), none being erased,
# each with whether it is quiet since $3 (no open conversation, none updated since, nothing
# sent to any of its identities since).
CUSTOMERS_PAGE = """
SELECT c.customer_id, (
    c.updated_at < $3
    AND NOT EXISTS (SELECT 1 FROM conversations v
                    WHERE v.domain = $1 AND v.customer_id = c.customer_id
                      AND (v.status <> 'closed' OR v.updated_at >= $3))
    AND NOT EXISTS (SELECT 1 FROM outbound_messages o
                    WHERE o.domain = $1 AND o.kind = 'notification' AND o.created_at >= $3
                      AND (o.customer_id = c.customer_id OR o.customer_id IN (
                          SELECT i.identity FROM customer_identities i
                          WHERE i.domain = $1 AND i.customer_id = c.customer_id)))
) AS quiet
FROM customers c
WHERE c.domain = $1 AND c.customer_id > $2
  AND NOT EXISTS (SELECT 1 FROM erasures e WHERE e.domain = $1 AND e.completed_at IS NULL
                  AND c.customer_id = ANY(e.identities))
ORDER BY c.customer_id
LIMIT $4
"""
_SCAN_MARK = "SELECT after FROM retention_scans WHERE domain = $1 AND kind = $2"
_SET_SCAN_MARK = """
INSERT INTO retention_scans (domain, kind, after) VALUES ($1, $2, $3)
ON CONFLICT (domain, kind) DO UPDATE SET after = EXCLUDED.after
"""
_CLEAR_SCAN_MARK = "DELETE FROM retention_scans WHERE domain = $1 AND kind = $2"
_FORGET_REQUEST = "DELETE FROM erasures WHERE domain = $1 AND erasure_id = $2"
OLD_ERASURES = "SELECT domain, erasure_id FROM erasures WHERE requested_at < $1 LIMIT $2"
_DELETE_OLD_ERASURES = f"""
DELETE FROM erasures WHERE (domain, erasure_id) IN ({OLD_ERASURES})
"""  # noqa: S608 -- fixed text

# Rule 6 (the table holds one freshness window of tokens: read whole).
_DELETE_EXPIRED_NONCES = """
DELETE FROM webhook_nonces WHERE (provider, nonce) IN (
    SELECT provider, nonce FROM webhook_nonces WHERE expires_at < now() LIMIT $1)
"""


# -- one pass ----------------------------------------------------------------------------


@dataclass
class Pass:
    """What one pass did to one domain's rows (``domain`` None: the rows no domain owns)."""

    domain: str | None
    rows: collections.Counter[str] = field(default_factory=collections.Counter)
    """Rows changed, by ``<table>.<action>`` (``messages.emptied``, ``dead_letters.deleted``)."""
    statements: collections.Counter[str] = field(default_factory=collections.Counter)
    """Statements that changed them, by the same key (each changed at most ``batch_size``)."""
    busy: bool = False
    """Another pass held the domain's lock: this one did nothing."""
    stopped: str | None = None
    """Why the pass stopped before the end (a lock wait too long, the process stopping)."""

    def count(self, key: str, rows: int) -> None:
        self.rows[key] += rows
        self.statements[key] += 1

    def changed(self) -> dict[str, int]:
        """Rows changed by kind, the kinds that changed none left out."""
        return {key: rows for key, rows in sorted(self.rows.items()) if rows}

    def as_json(self) -> dict[str, object]:
        if self.busy:
            return {"status": "busy"}
        out: dict[str, object] = {
            "status": "stopped" if self.stopped else "done",
            "rows": self.changed(),
            "statements": dict(sorted(self.statements.items())),
        }
        if self.stopped:
            out["stopped"] = self.stopped
        return out


class _Stopped(Exception):
    pass


class _Expiry:
    """The statements of one pass on one connection, each in a transaction of its own."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        report: Pass,
        job: RetentionJobConfig,
        should_stop: Callable[[], bool],
        actor: str,
        erase: Erase | None,
    ) -> None:
        self.conn = conn
        self.report = report
        self.limit = job.batch_size
        self.pause = job.batch_pause
        self.should_stop = should_stop
        self.actor = actor
        self.erase = erase

    async def _breathe(self) -> None:
        if self.should_stop():
            raise _Stopped("stopping")
        await asyncio.sleep(self.pause)

    async def once(self, key: str, sql: str, *args: object) -> int:
        """One statement (its last parameter: ``batch_size``); the rows it changed."""
        await self._breathe()
        status: str = await self.conn.execute(sql, *args, self.limit)
        rows = int(status.rsplit(" ", 1)[-1])
        self.report.count(key, rows)
        return rows

    async def until_done(self, key: str, sql: str, *args: object) -> int:
        """``once`` again until a statement changes fewer than ``batch_size`` rows."""
        total = 0
        while True:
            rows = await self.once(key, sql, *args)
            total += rows
            if rows < self.limit:
                return total

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        await self._breathe()
        rows: list[asyncpg.Record] = await self.conn.fetch(sql, *args, self.limit)
        return rows


async def _expire_history(x: _Expiry, domain: str, cutoff: datetime) -> None:
    """Rule 2."""
    while True:
        ids = [row["conversation_id"] for row in await x.fetch(CLOSED_EXPIRED, domain, cutoff)]
        if not ids:
            break
        await x.until_done("messages.deleted", _DELETE_MESSAGES, domain, ids)
        await x.until_done("assignments.deleted", _DELETE_ASSIGNMENTS, domain, ids)
        await x.until_done("outbound_messages.deleted", _DELETE_OUTBOUND, domain, ids)
        await x._breathe()
        status = await x.conn.execute(_DELETE_CONVERSATIONS, domain, ids, cutoff)
        deleted = int(status.rsplit(" ", 1)[-1])
        x.report.count("conversations.deleted", deleted)
        if deleted == 0 or len(ids) < x.limit:
            break
    unanswered = cutoff - timedelta(seconds=NOTIFICATION_ANSWERABLE)
    while True:
        await x._breathe()
        row = await x.conn.fetchrow(_DELETE_UNANSWERED, domain, unanswered, x.limit)
        assert row is not None
        x.report.count("outbound_messages.deleted", row["outbound"])
        if row["messages"]:
            x.report.count("messages.deleted", row["messages"])
        if row["outbound"] < x.limit:
            break
    await x.until_done("agent_events.deleted", _DELETE_AGENT_EVENTS, domain, cutoff)


async def _empty_bodies(x: _Expiry, domain: str, cutoff: datetime) -> None:
    """Rule 1: conversations in closing order from the domain's mark, which moves past each
    batch once its messages are all emptied."""
    mark = await x.conn.fetchrow(_MARK, domain, "message_bodies")
    at, last = (mark["closed_at"], mark["conversation_id"]) if mark else (None, None)
    while True:
        rows = await x.fetch(CLOSED_SINCE_MARK, domain, cutoff, at, last)
        if not rows:
            break
        ids = [row["conversation_id"] for row in rows]
        await x.until_done("messages.emptied", _EMPTY_MESSAGES, domain, ids)
        await x.until_done("outbound_messages.emptied", _EMPTY_REQUESTS, domain, ids)
        at, last = rows[-1]["closed_at"], rows[-1]["conversation_id"]
        await x.conn.execute(_SET_MARK, domain, "message_bodies", at, last)
        if len(rows) < x.limit:
            break
    unanswered = cutoff - timedelta(seconds=NOTIFICATION_ANSWERABLE)
    while True:
        await x._breathe()
        row = await x.conn.fetchrow(_EMPTY_UNANSWERED, domain, unanswered, x.limit)
        assert row is not None
        if not row["requests"]:
            break
        x.report.count("outbound_messages.emptied", row["requests"])
        if row["bodies"]:
            x.report.count("messages.emptied", row["bodies"])
        if row["requests"] < x.limit:
            break


async def _expire_identities(x: _Expiry, domain: str, cutoff: datetime) -> None:
    """Rule 5: walk the domain's customers from the mark, a page at a time, and hand the
    quiet ones to erasure; at most ``batch_size`` erasures and ``SCAN_PAGES_PER_PASS``
    pages a pass. The mark is the last customer of a page that stays (an erased one's id
    would outlive them); at the end of the customers the walk starts over."""
    assert x.erase is not None
    kind = "customer_identities"
    after: str = await x.conn.fetchval(_SCAN_MARK, domain, kind) or ""
    erased = 0
    for _ in range(SCAN_PAGES_PER_PASS):
        rows = await x.fetch(CUSTOMERS_PAGE, domain, after, cutoff)
        for row in rows:
            if row["quiet"] and erased < x.limit:
                await _erase_quiet(x, domain, row["customer_id"])
                erased += 1
        staying = [row["customer_id"] for row in rows if not row["quiet"]]
        if len(rows) < x.limit:
            after = ""
            break
        after = staying[-1] if staying else after
        if erased >= x.limit:
            break
    if after:
        await x.conn.execute(_SET_SCAN_MARK, domain, kind, after)
    else:
        await x.conn.execute(_CLEAR_SCAN_MARK, domain, kind)


async def _erase_quiet(x: _Expiry, domain: str, profile: str) -> None:
    """Erase one quiet customer as the API would, their consents kept: the row first, then
    the command (a refused command takes its row back, and the pass stops)."""
    assert x.erase is not None
    await x._breathe()
    command = CustomerEraseRequested(id=str(uuid.uuid4()), domain=domain, occurred_at=time.time())
    identities = [profile, *await linked_identities(x.conn, domain, profile)]
    await request_erasure(x.conn, domain, command.id, identities, x.actor, keep_consents=True)
    try:
        await x.erase(command)
    except BrokerUnavailable:
        await x.conn.execute(_FORGET_REQUEST, domain, command.id)
        raise _Stopped("broker unavailable") from None
    x.report.count("customers.erased", 1)


async def _expire_domain(x: _Expiry, domain: str, retention: RetentionConfig) -> None:
    now: datetime = await x.conn.fetchval(_NOW)

    def cutoff(period: int) -> datetime:
        return now - timedelta(seconds=period)

    # History first: what it deletes needs no emptying.
    if retention.routing_history is not None:
        await _expire_history(x, domain, cutoff(retention.routing_history))
    if retention.message_bodies is not None:
        await _empty_bodies(x, domain, cutoff(retention.message_bodies))
    if retention.consent_history is not None:
        await x.until_done(
            "consent_changes.deleted",
            _DELETE_CONSENT_CHANGES,
            domain,
            cutoff(retention.consent_history),
        )
    if retention.dead_letters is not None:
        await x.until_done(
            "dead_letters.deleted", _DELETE_DEAD_LETTERS, domain, cutoff(retention.dead_letters)
        )
    if retention.customer_identities is not None and x.erase is not None:
        await _expire_identities(x, domain, cutoff(retention.customer_identities))


async def _expire_platform(x: _Expiry, domains: list[str], job: RetentionJobConfig) -> None:
    if job.unowned_dead_letters is not None:
        now: datetime = await x.conn.fetchval(_NOW)
        await x.until_done(
            "dead_letters.deleted",
            _DELETE_UNOWNED_DEAD_LETTERS,
            domains,
            now - timedelta(seconds=job.unowned_dead_letters),
        )
    await x.until_done("webhook_nonces.deleted", _DELETE_EXPIRED_NONCES)
    now = await x.conn.fetchval(_NOW)
    await x.until_done(
        "erasures.deleted", _DELETE_OLD_ERASURES, now - timedelta(seconds=ERASURES_KEPT)
    )


async def _locked_pass(
    pool: asyncpg.Pool,
    domain: str | None,
    job: RetentionJobConfig,
    should_stop: Callable[[], bool],
    work: Callable[[_Expiry], Awaitable[None]],
    *,
    actor: str,
    detail: Mapping[str, object],
    erase: Erase | None = None,
) -> Pass:
    """Run ``work`` under the lock of ``domain`` (None: the rows no domain owns), then write
    its audit entry when it changed anything."""
    report = Pass(domain)
    key = _PLATFORM_LOCK if domain is None else domain
    async with pool.acquire() as conn:
        if not await conn.fetchval(_TRY_LOCK, key):
            report.busy = True
            return report
        try:
            await conn.execute(
                f"SET lock_timeout = '{LOCK_TIMEOUT}'; SET statement_timeout = '{STATEMENT_TIMEOUT}'"
            )
            try:
                await work(_Expiry(conn, report, job, should_stop, actor, erase))
            except _Stopped as stopped:
                report.stopped = str(stopped)
            except (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError) as error:
                # A row the routers hold, or a statement too slow: the next pass goes on.
                report.stopped = type(error).__name__
            # Expired webhook tokens alone are no one's data: not worth an entry each pass.
            if any(not kind.startswith("webhook_nonces.") for kind in report.changed()):
                await record_action(
                    conn,
                    actor=actor,
                    action=AUDIT_ACTION,
                    domain=domain,
                    target=f"domain {domain}" if domain else "rows of no domain",
                    detail={"rows": report.changed(), **detail},
                )
        finally:
            try:
                await conn.execute("RESET lock_timeout; RESET statement_timeout")
                await conn.fetchval(_UNLOCK, key)
            except BaseException:
                # Pools do not reset what a connection holds (runtime.db.keep_session):
                # closing it ends its lock and settings with its session.
                conn.terminate()
                raise
    return report


async def run_pass(
    pool: asyncpg.Pool,
    domains: Mapping[str, RetentionConfig],
    job: RetentionJobConfig,
    *,
    actor: str,
    only: str | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    erase: Erase | None = None,
) -> list[Pass]:
    """One pass over ``domains`` (or ``only`` that one), then over the rows no domain owns
    (skipped with ``only``): what each did, or that another pass held it (``busy``).
    ``erase`` publishes an erasure command; without it, customer identities are left."""
    passes = []
    for name in sorted(domains) if only is None else [only]:
        retention = domains[name]
        if not retention.periods():
            continue

        async def work(
            x: _Expiry, name: str = name, retention: RetentionConfig = retention
        ) -> None:
            await _expire_domain(x, name, retention)

        passes.append(
            await _locked_pass(
                pool,
                name,
                job,
                should_stop,
                work,
                actor=actor,
                detail={"periods": retention.periods()},
                erase=erase,
            )
        )
        if should_stop():
            return passes
    if only is None:
        configured = sorted(domains)

        async def platform(x: _Expiry) -> None:
            await _expire_platform(x, configured, job)

        detail: dict[str, object] = {}
        if job.unowned_dead_letters is not None:
            detail["periods"] = {"unowned_dead_letters": job.unowned_dead_letters}
        passes.append(
            await _locked_pass(pool, None, job, should_stop, platform, actor=actor, detail=detail)
        )
    return passes


def summary(passes: list[Pass]) -> dict[str, object]:
    """Counts of a pass for its log line: rows by kind, domains done and busy."""
    rows: collections.Counter[str] = collections.Counter()
    for report in passes:
        rows.update(report.rows)
    return {
        "rows": {key: count for key, count in sorted(rows.items()) if count},
        "domains": sum(1 for p in passes if p.domain is not None and not p.busy),
        "busy": sum(1 for p in passes if p.busy),
        "stopped": sum(1 for p in passes if p.stopped),
    }
