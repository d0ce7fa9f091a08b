"""PostgreSQL side of the router: one transaction per batch, and recovery loads.

A batch's writes — the engine's row snapshots, the customer messages, the events to
publish (the outbox), dead letters and the next input offsets — are written in ONE
transaction, with one statement per table, never one round trip per row; the tables
nearly every batch writes are the parts of one joined statement
(``runtime.db.JoinedStatement``): BEGIN, that statement and COMMIT are a batch's round
trips. A crash before the commit loses nothing (the input is consumed again from
the stored offsets); a crash after it republishes from the outbox.

The row snapshots and messages go as one JSON parameter per table (``runtime.db.json_rows``),
the rarer writes as ``unnest`` arrays or COPY. Sent as arrays, a column value at a time, the
write cost the router about twice the CPU: for batches of 15, 500 and 2,000 messages from new
customers, 52-62, 35-42 and 29-31 µs per message against 35-36, 18-20 and 16-18 as JSON
(PostgreSQL's own CPU the same within what runs vary by; ``write_batch`` against the local
PostgreSQL, two runs each).

A customer message on the engine's fast path changes only its conversation's activity,
and only that is written (``BatchWrites.activities``): a narrow row of
``conversation_activity`` (migration 0027), updated in place, instead of the whole record
again; readers take the later of the two (``router.engine.with_activity``).

The outbox keeps one row per batch and partition, its events packed in one msgpack value:
a batch's events are published together and deleted together once the broker
acknowledged all of them, so a row per event would only add index work to the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

import asyncpg
import msgspec

from router.engine import (
    AgentRecord,
    AssignmentRecord,
    BotRecord,
    ConversationActivity,
    ConversationRecord,
    ConversationStatus,
    CustomerRecord,
    EraseCustomer,
    IdentityRecord,
    SaveConsent,
    with_activity,
)
from router.shell.erasure import erase
from runtime.db import JoinedStatement, column_arrays, document_rows, json_rows, rows_of
from runtime.dead_letters import INSERT_RECORD, DeadRecord
from runtime.outbound import CONSENT_TABLES
from schemas import (
    AgentEvent,
    ConsentReported,
    HumanReplied,
    IdentityChanged,
    MessageChanged,
    MessageReceived,
    ReplyRequested,
    RoutingEvent,
)
from schemas.cloudevents import type_name

_encode = msgspec.json.Encoder().encode
_CLOSED = ConversationStatus.CLOSED


class FencedOut(Exception):
    """Another router took some of these partitions since this one loaded them."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"partitions {partitions} are owned by another router now")
        self.partitions = partitions


_ACQUIRE_LEASES = """
INSERT INTO partition_leases (consumer_group, partition, epoch, owner)
SELECT $1, p, 1, $3 FROM unnest($2::int[]) AS p ORDER BY p
ON CONFLICT (consumer_group, partition) DO UPDATE SET
    epoch = partition_leases.epoch + 1, owner = EXCLUDED.owner, updated_at = now()
RETURNING partition, epoch
"""

_CHECK_LEASES = """
UPDATE partition_leases l SET updated_at = now()
FROM unnest($2::int[], $3::bigint[]) AS mine(p, e)
WHERE l.consumer_group = $1 AND l.partition = mine.p AND l.epoch = mine.e
RETURNING l.partition
"""

# Fails the statement, with SQLSTATE _FENCED_OUT and the lost partitions as its detail,
# when a lease was not renewed (migration 0024).
_FENCE = f"""
SELECT switchboard_fence($1::int[], ARRAY(SELECT partition FROM {JoinedStatement.part("leases")}))
    AS fenced
"""  # noqa: S608 (a constant: the lease part's name)
_FENCED_OUT = "SB001"


async def acquire_leases(
    conn: asyncpg.Connection, consumer_group: str, partitions: list[int], owner: str
) -> dict[int, int]:
    """Take the partitions (call inside the transaction that then loads them)."""
    rows = await conn.fetch(_ACQUIRE_LEASES, consumer_group, sorted(partitions), owner)
    return {row["partition"]: row["epoch"] for row in rows}


class OutboxEvent(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One record to publish, as the producer takes it."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    seal: str | None = None
    """Whose key seals ``value`` as it is published (``runtime.sealing``); None: not
    sealed. The outbox row keeps it in clear, for the second it lives."""


@dataclass(slots=True)
class OutboxBatch:
    """The events one batch transaction decided for one partition: one outbox row."""

    seq: int
    partition: int
    events: list[OutboxEvent]


_encode_events = msgspec.msgpack.Encoder().encode
_decode_events = msgspec.msgpack.Decoder(list[OutboxEvent]).decode


RecordedEvent = AgentEvent | HumanReplied | MessageChanged | ConsentReported | IdentityChanged
"""The inputs besides customer messages, in the ``agent_events`` log (``switchboard replay``)."""
RECORDED_DECODER: msgspec.json.Decoder[RecordedEvent] = msgspec.json.Decoder(RecordedEvent)


@dataclass(slots=True)
class BatchWrites:
    """Everything one batch writes, with later snapshots of a row replacing earlier ones."""

    agents: dict[tuple[str, str], AgentRecord | None] = field(default_factory=dict)
    """Latest snapshot per (domain, agent id); None: the agent left (row deleted)."""
    conversations: dict[tuple[str, str], ConversationRecord] = field(default_factory=dict)
    """Latest record per (domain, conversation id): ``note_conversation``."""
    activities: dict[tuple[str, str], ConversationActivity] = field(default_factory=dict)
    """Latest activity of conversations whose record the batch does not write
    (``note_activity``): a conversation is here or in ``conversations``, never in both
    (a closed one's activity row is deleted, and the batch's statement may touch a row
    only once)."""
    customers: dict[tuple[str, str], CustomerRecord | None] = field(default_factory=dict)
    """Latest snapshot per (domain, customer id); None: merged into another (deleted)."""
    identities: dict[tuple[str, str], IdentityRecord | None] = field(default_factory=dict)
    """Identity links per (domain, identity); None: unlinked (deleted)."""
    bots: dict[tuple[str, str], BotRecord | None] = field(default_factory=dict)
    """Bots' health per (domain, bot id); None: it answered (deleted)."""
    assignments: dict[tuple[str, str], AssignmentRecord] = field(default_factory=dict)
    messages: list[tuple[MessageReceived, str]] = field(default_factory=list)
    outbox: dict[int, list[OutboxEvent]] = field(default_factory=dict)
    """Events to publish, by input partition."""
    dead_letters: list[DeadRecord] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    delivery_statuses: dict[tuple[str, str, str], DeliveryUpdate] = field(default_factory=dict)
    """What became of messages we sent, by (domain, outbound id, '') or ('', channel,
    provider message id): the furthest status a batch reported wins."""
    reads_through: dict[tuple[str, str], float] = field(default_factory=dict)
    """(domain, conversation id) → the latest time up to which the customer read every
    reply of the conversation (receipts naming no message: Messenger's watermark)."""
    consents: list[SaveConsent] = field(default_factory=list)
    """Consent changes, in order."""
    published: list[int] = field(default_factory=list)
    """Outbox rows (``seq``) whose events the broker acknowledged: deleted here."""
    agent_events: list[RecordedEvent] = field(default_factory=list)
    """Applied ``agents.events`` records (bots' answers included) and echoes, appended to
    ``agent_events`` (for replay)."""
    bot_replies: list[ReplyRequested] = field(default_factory=list)
    """Bots' replies on their way out: the conversation's outbound messages."""
    erasures: list[tuple[str, EraseCustomer]] = field(default_factory=list)
    """Customers erased, by domain: their rows are deleted after every other write."""

    def absorb(self, later: BatchWrites) -> None:
        """Add a later batch's writes: its snapshots replace this one's, rows append."""
        self.agents.update(later.agents)
        for conversation, record in later.conversations.items():
            self.note_conversation(conversation, record)
        for conversation, activity in later.activities.items():
            self.note_activity(conversation, activity)
        self.customers.update(later.customers)
        self.identities.update(later.identities)
        self.bots.update(later.bots)
        self.assignments.update(later.assignments)
        self.messages.extend(later.messages)
        for partition, events in later.outbox.items():
            self.outbox.setdefault(partition, []).extend(events)
        self.dead_letters.extend(later.dead_letters)
        self.offsets.update(later.offsets)
        for key, update in later.delivery_statuses.items():
            self.note_delivery(key, update)
        for conversation, through in later.reads_through.items():
            self.note_read_through(conversation, through)
        self.consents.extend(later.consents)
        self.published.extend(later.published)
        self.agent_events.extend(later.agent_events)
        self.bot_replies.extend(later.bot_replies)
        self.erasures.extend(later.erasures)

    def note_conversation(self, key: tuple[str, str], record: ConversationRecord) -> None:
        """A conversation's whole record: it holds the latest activity too."""
        self.conversations[key] = record
        if self.activities:
            self.activities.pop(key, None)

    def note_activity(self, key: tuple[str, str], activity: ConversationActivity) -> None:
        """A conversation's latest activity: into its record when the batch writes that."""
        record = self.conversations.get(key)
        if record is None:
            self.activities[key] = activity
        else:
            self.conversations[key] = with_activity(record, activity)

    def note_delivery(self, key: tuple[str, str, str], update: DeliveryUpdate) -> None:
        """Keep the furthest status reported for one message (statuses never go back)."""
        known = self.delivery_statuses.get(key)
        if known is None or STATUS_RANK.get(update.status, 0) > STATUS_RANK.get(known.status, 0):
            self.delivery_statuses[key] = update

    def note_read_through(self, conversation: tuple[str, str], through: float) -> None:
        """Keep the latest read-through time of a conversation."""
        self.reads_through[conversation] = max(through, self.reads_through.get(conversation, 0.0))

    def is_empty(self) -> bool:
        """Nothing to write: every field (each a collection) is empty."""
        return not any(getattr(self, f.name) for f in fields(self))

    def needs_transaction(self) -> bool:
        """Some writes are statements of their own (``_write_rarer_parts``): the batch's
        joined statement and they commit together."""
        return bool(
            self.agent_events
            or self.bot_replies
            or self.dead_letters
            or self.delivery_statuses
            or self.reads_through
            or self.consents
            or self.erasures
        )


@dataclass(slots=True)
class WriteJob:
    """Applied batches to commit in one transaction: what the router's writer task takes
    (``router.shell.worker``)."""

    writes: BatchWrites
    emitted: list[RoutingEvent]
    records: int
    started: float
    message_ids: set[str]
    batch: int = 0
    """The number of the latest batch it holds (``router.shell.residents``)."""

    def absorb(self, later: WriteJob) -> None:
        self.batch = later.batch
        self.writes.absorb(later.writes)
        self.emitted.extend(later.emitted)
        self.records += later.records
        self.message_ids.update(later.message_ids)


_UPSERT_AGENTS = f"""
INSERT INTO agents (domain, agent_id, name, presence, record, updated_at)
SELECT d, a, n, p, r::json, now() FROM {rows_of(1, "d, a, n, p", document="r")} AS t
ON CONFLICT (domain, agent_id) DO UPDATE SET
    name = EXCLUDED.name, presence = EXCLUDED.presence, record = EXCLUDED.record, updated_at = now()
"""  # noqa: S608 -- fixed text

_UPSERT_CUSTOMERS = f"""
INSERT INTO customers (domain, customer_id, owner_agent_id, last_agent_id, record, updated_at)
SELECT d, c, o, l, r::json, now() FROM {rows_of(1, "d, c, o, l", document="r")} AS t
ON CONFLICT (domain, customer_id) DO UPDATE SET
    owner_agent_id = EXCLUDED.owner_agent_id, last_agent_id = EXCLUDED.last_agent_id,
    record = EXCLUDED.record, updated_at = now()
"""  # noqa: S608 -- fixed text

_UPSERT_IDENTITIES = f"""
INSERT INTO customer_identities (domain, identity, customer_id, source, linked_at)
SELECT d, i, c, s, to_timestamp(t) FROM {rows_of(1, "d, i, c, s, t float8")} AS u
ON CONFLICT (domain, identity) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, source = EXCLUDED.source, linked_at = EXCLUDED.linked_at
"""  # noqa: S608 -- fixed text

_INSERT_BOT_REPLIES = """
WITH replies AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::float8[]) AS t(d, i, c, ch, b, x, a, o)
), message AS (
    INSERT INTO messages (domain, message_id, conversation_id, direction, channel, bot_id,
                          text, attachments, status, occurred_at)
    SELECT d, i, c, 'outbound', ch, b, x, a::jsonb, 'queued', to_timestamp(o) FROM replies
    ON CONFLICT DO NOTHING
)
INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel, bot_id, status)
SELECT d, i, c, ch, b, 'queued' FROM replies
ON CONFLICT DO NOTHING
"""

_UPSERT_BOTS = f"""
INSERT INTO bot_health (domain, bot_id, record)
SELECT d, b, r::json FROM {rows_of(1, "d, b", document="r")} AS t
ON CONFLICT (domain, bot_id) DO UPDATE SET record = EXCLUDED.record
"""  # noqa: S608 -- fixed text

_DELETE_BOTS = """
DELETE FROM bot_health USING unnest($1::text[], $2::text[]) AS t(d, k)
WHERE bot_health.domain = t.d AND bot_health.bot_id = t.k
"""

_DELETE_AGENTS = """
DELETE FROM agents USING unnest($1::text[], $2::text[]) AS t(d, k)
WHERE agents.domain = t.d AND agents.agent_id = t.k
"""

_DELETE_CUSTOMERS = """
DELETE FROM customers USING unnest($1::text[], $2::text[]) AS t(d, k)
WHERE customers.domain = t.d AND customers.customer_id = t.k
"""

_DELETE_IDENTITIES = """
DELETE FROM customer_identities USING unnest($1::text[], $2::text[]) AS t(d, k)
WHERE customer_identities.domain = t.d AND customer_identities.identity = t.k
"""

_UPSERT_CONVERSATIONS = f"""
INSERT INTO conversations (domain, conversation_id, channel, customer_id, conversation_key, queue,
    status, owner_agent_id, preferred_agent_id, opened_at, closed_at, record, updated_at)
SELECT d, c, ch, cu, k, q, s, o, p, to_timestamp(op),
       CASE WHEN s = 'closed' THEN now() END, r::json, now()
FROM {rows_of(1, "d, c, ch, cu, k, q, s, o, p, op float8", document="r")} AS t
ON CONFLICT (domain, conversation_id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, queue = EXCLUDED.queue, status = EXCLUDED.status,
    owner_agent_id = EXCLUDED.owner_agent_id,
    preferred_agent_id = EXCLUDED.preferred_agent_id,
    closed_at = CASE WHEN EXCLUDED.status = 'closed'
                     THEN coalesce(conversations.closed_at, now()) END,
    record = EXCLUDED.record, updated_at = now()
"""  # noqa: S608 -- fixed text

# A closed conversation's activity row goes (an open one's stays, updated in place: the
# record saved after it has the higher message count, or the same, and wins).
_DELETE_ACTIVITIES = """
DELETE FROM conversation_activity USING unnest($1::text[], $2::text[]) AS t(d, c)
WHERE conversation_activity.domain = t.d AND conversation_activity.conversation_id = t.c
"""

# Only conversations stored: a record the router could not store (a dead letter) has no
# row, and the foreign key would fail the whole batch.
_UPSERT_ACTIVITIES = f"""
INSERT INTO conversation_activity (domain, conversation_id, activity)
SELECT t.d, t.c, t.a::json FROM {rows_of(1, "d, c", document="a")} AS t
WHERE EXISTS (SELECT 1 FROM conversations v WHERE v.domain = t.d AND v.conversation_id = t.c)
ON CONFLICT (domain, conversation_id) DO UPDATE SET
    activity = EXCLUDED.activity, updated_at = now()
"""  # noqa: S608 -- fixed text

_UPSERT_ASSIGNMENTS = f"""
INSERT INTO assignments (domain, assignment_id, conversation_id, agent_id, strategy, step,
    waited_seconds, candidates, offered_at, accepted_at, ended_at, end_reason, record)
SELECT d, a, c, ag, st, sp, w, ca::jsonb, to_timestamp(o), to_timestamp(ac), to_timestamp(e), er,
       r::json
FROM {rows_of(1, "d, a, c, ag, st, sp, w float8, ca, o float8, ac float8, e float8, er", document="r")} AS t
ON CONFLICT (domain, assignment_id) DO UPDATE SET
    accepted_at = EXCLUDED.accepted_at, ended_at = EXCLUDED.ended_at,
    end_reason = EXCLUDED.end_reason, record = EXCLUDED.record
"""  # noqa: S608 -- fixed text

_UPSERT_OFFSETS = """
INSERT INTO router_offsets (consumer_group, topic, partition, next_offset, updated_at)
SELECT $1, t, p, o, now() FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
    next_offset = EXCLUDED.next_offset, updated_at = now()
"""

STATUS_RANK: dict[str, int] = {
    "accepted": 0,
    "queued": 0,
    "sending": 0,
    "sent": 1,
    "delivered": 2,
    "undelivered": 3,
    "failed": 3,
    "read": 4,
}
"""How far a sent message got: a status report moves it forward only (a late ``sent``
after ``delivered`` changes nothing). Refused and cancelled messages were never sent: any
other status ranks above every one here, so their rows keep it."""

_RANK_SQL = (
    "CASE {} " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in STATUS_RANK.items()) + " ELSE 9 END"
)


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    status: str
    error: str
    provider_message_id: str


_UPDATE_DELIVERY_BY_ID = f"""
UPDATE outbound_messages o SET status = u.s, error = coalesce(nullif(u.e, ''), o.error),
    provider_message_id = coalesce(o.provider_message_id, nullif(u.pid, '')), updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(d, oid, s, e, pid)
WHERE o.domain = u.d AND o.outbound_id = u.oid
    AND {_RANK_SQL.format("u.s")} > {_RANK_SQL.format("o.status")}
"""  # noqa: S608 -- fixed text

_UPDATE_READ_THROUGH = f"""
UPDATE outbound_messages o SET status = 'read', updated_at = now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(d, cid, through)
WHERE o.domain = u.d AND o.conversation_id = u.cid AND o.created_at <= u.through
    AND {_RANK_SQL.format("'read'")} > {_RANK_SQL.format("o.status")}
"""  # noqa: S608 -- fixed text
"""Every reply of a conversation sent up to a read receipt's watermark becomes ``read``
(through ``outbound_by_conversation``)."""

_UPDATE_DELIVERY_BY_PROVIDER_ID = f"""
UPDATE outbound_messages o SET status = u.s, error = coalesce(nullif(u.e, ''), o.error),
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(ch, pid, s, e)
WHERE o.channel = u.ch AND o.provider_message_id = u.pid
    AND {_RANK_SQL.format("u.s")} > {_RANK_SQL.format("o.status")}
"""  # noqa: S608 -- fixed text

_UPSERT_CONSENTS = """
INSERT INTO {0} AS c (domain, channel, address, customer_id, consent, source, changed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::timestamptz[])
ON CONFLICT (domain, channel, address) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, consent = EXCLUDED.consent, source = EXCLUDED.source,
    changed_at = EXCLUDED.changed_at
WHERE c.changed_at <= EXCLUDED.changed_at
"""
"""Into the table of the consents' scope (``runtime.outbound.CONSENT_TABLES``)."""

_INSERT_CONSENT_CHANGES = """
INSERT INTO consent_changes (domain, change_id, channel, address, customer_id, consent, source,
    message_id, actor, changed_at, scope)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[])
ON CONFLICT DO NOTHING
"""

_INSERT_OUTBOX = """
INSERT INTO outbox (partition, event_count, events)
SELECT * FROM unnest($1::int[], $2::int[], $3::bytea[]) ORDER BY 1
RETURNING seq, partition
"""

_DELETE_PUBLISHED = "DELETE FROM outbox WHERE seq = ANY($1::bigint[])"

_INSERT_MESSAGES = f"""
INSERT INTO messages (domain, message_id, conversation_id, direction, channel,
    provider_message_id, text, attachments, occurred_at)
SELECT d, m, c, 'inbound', ch, p, x, a::jsonb, to_timestamp(o)
FROM {rows_of(1, "d, m, c, ch, p, x, a, o float8")} AS t
"""  # noqa: S608 -- fixed text


async def write_batch(
    conn: asyncpg.Connection,
    consumer_group: str,
    leases: dict[int, int],
    writes: BatchWrites,
    *,
    key_shred_delay: int = 0,
) -> list[OutboxBatch]:
    """Write a batch's effects, outbox, dead letters and offsets atomically; return the
    outbox rows written, to publish. The common parts are one statement (atomic alone: one
    round trip); the rarer ones join it in a transaction.

    Raises ``FencedOut`` (and writes nothing) when another router took a partition.
    """
    joined = JoinedStatement()
    if leases:
        joined.add("leases", _CHECK_LEASES, consumer_group, list(leases), list(leases.values()))
        joined.add("fence", _FENCE, list(leases), returning="fenced, NULL::bigint")
    if writes.agents:
        joined.add_rows(
            "agents",
            writes.agents,
            _UPSERT_AGENTS,
            lambda d, r: (d, r.agent_id, r.name, str(r.presence), _encode(r).decode()),
            _DELETE_AGENTS,
            document=True,
        )
    if writes.customers:
        joined.add_rows(
            "customers",
            writes.customers,
            _UPSERT_CUSTOMERS,
            lambda d, r: (d, r.customer_id, r.owner_agent_id, r.last_agent_id, _encode(r).decode()),
            _DELETE_CUSTOMERS,
            document=True,
        )
    if writes.identities:
        joined.add_rows(
            "identities",
            writes.identities,
            _UPSERT_IDENTITIES,
            lambda d, r: (d, r.identity, r.customer_id, r.source, r.linked_at),
            _DELETE_IDENTITIES,
        )
    if writes.bots:
        joined.add_rows(
            "bots",
            writes.bots,
            _UPSERT_BOTS,
            lambda d, r: (d, r.bot_id, _encode(r).decode()),
            _DELETE_BOTS,
            document=True,
        )
    if writes.conversations:
        joined.add(
            "conversations",
            _UPSERT_CONVERSATIONS,
            *document_rows(
                (
                    d,
                    r.conversation_id,
                    r.channel,
                    r.customer_id,
                    r.conversation_key,
                    r.queue,
                    r.status,
                    r.owner_agent_id,
                    r.preferred_agent_id,
                    r.opened_at,
                    _encode(r).decode(),
                )
                for (d, _), r in writes.conversations.items()
            ),
        )
    closed = [key for key, record in writes.conversations.items() if record.status is _CLOSED]
    if closed:
        joined.add("activities_closed", _DELETE_ACTIVITIES, *column_arrays(closed, 2))
    if writes.activities:
        joined.add(
            "activities",
            _UPSERT_ACTIVITIES,
            *document_rows(
                (d, c, _encode(activity).decode()) for (d, c), activity in writes.activities.items()
            ),
        )
    if writes.assignments:
        joined.add(
            "assignments",
            _UPSERT_ASSIGNMENTS,
            *document_rows(
                (
                    d,
                    r.assignment_id,
                    r.conversation_id,
                    r.agent_id,
                    r.strategy,
                    r.step,
                    r.waited_seconds,
                    _encode(r.candidates).decode(),
                    r.offered_at,
                    r.accepted_at,
                    r.ended_at,
                    r.end_reason,
                    _encode(r).decode(),
                )
                for (d, _), r in writes.assignments.items()
            ),
        )
    if writes.messages:
        joined.add(
            "messages",
            _INSERT_MESSAGES,
            json_rows(
                (
                    m.domain,
                    m.id,
                    conversation_id,
                    m.channel,
                    m.provider_message_id,
                    m.text,
                    _encode(m.attachments).decode(),
                    m.occurred_at,
                )
                for m, conversation_id in writes.messages
            ),
        )
    if writes.outbox:
        partitions = sorted(writes.outbox)
        joined.add(
            "outbox",
            _INSERT_OUTBOX,
            partitions,
            [len(writes.outbox[p]) for p in partitions],
            [_encode_events(writes.outbox[p]) for p in partitions],
            returning="partition, seq",
        )
    if writes.published:
        joined.add("published", _DELETE_PUBLISHED, writes.published)
    if writes.offsets:
        joined.add(
            "offsets",
            _UPSERT_OFFSETS,
            consumer_group,
            *column_arrays(((t, p, o) for (t, p), o in writes.offsets.items()), 3),
        )
    try:
        if writes.needs_transaction():
            async with conn.transaction():
                returned = await joined.run(conn)
                await _write_rarer_parts(conn, writes, key_shred_delay)
        else:
            # One statement is atomic by itself: no BEGIN and COMMIT round trips.
            returned = await joined.run(conn)
    except asyncpg.PostgresError as error:
        if error.sqlstate == _FENCED_OUT:
            detail = error.detail or ""
            raise FencedOut([int(p) for p in detail.split(",")]) from None
        raise
    outbox = [
        OutboxBatch(seq, partition, writes.outbox[partition])
        for name, partition, seq in returned
        if name == "outbox"
    ]
    return sorted(outbox, key=lambda batch: batch.seq)


async def _write_rarer_parts(
    conn: asyncpg.Connection, writes: BatchWrites, key_shred_delay: int
) -> None:
    """The writes that are not parts of the joined statement, in its transaction (the
    erasures last: they delete what the rest wrote)."""
    if writes.agent_events:
        await conn.copy_records_to_table(
            "agent_events",
            columns=["domain", "event_id", "type", "occurred_at", "payload"],
            records=[
                (
                    e.domain,
                    e.id,
                    type_name(type(e)),
                    _timestamp(e.occurred_at),
                    _encode(e).decode(),
                )
                for e in writes.agent_events
            ],
        )
    if writes.bot_replies:
        await conn.execute(
            _INSERT_BOT_REPLIES,
            *column_arrays(
                (
                    (
                        r.domain,
                        r.id,
                        r.conversation_id,
                        str(r.channel),
                        r.bot_id,
                        r.text,
                        _encode(r.attachments).decode(),
                        r.occurred_at,
                    )
                    for r in writes.bot_replies
                ),
                8,
            ),
        )
    if writes.dead_letters:
        await conn.executemany(INSERT_RECORD, [d.row() for d in writes.dead_letters])
    if writes.delivery_statuses:
        await _write_deliveries(conn, writes.delivery_statuses)
    if writes.reads_through:
        await conn.execute(
            _UPDATE_READ_THROUGH,
            *column_arrays(
                (
                    (domain, conversation_id, _timestamp(through))
                    for (domain, conversation_id), through in writes.reads_through.items()
                ),
                3,
            ),
        )
    if writes.consents:
        await _write_consents(conn, writes.consents)
    for domain, erasure in writes.erasures:
        await erase(conn, domain, erasure, key_shred_delay=key_shred_delay)


async def _write_deliveries(
    conn: asyncpg.Connection, updates: dict[tuple[str, str, str], DeliveryUpdate]
) -> None:
    by_id = [
        (domain, outbound_id, u.status, u.error, u.provider_message_id)
        for (domain, outbound_id, pid), u in updates.items()
        if domain
    ]
    by_provider_id = [
        (channel, pid, u.status, u.error)
        for (domain, channel, pid), u in updates.items()
        if not domain
    ]
    if by_id:
        await conn.execute(_UPDATE_DELIVERY_BY_ID, *column_arrays(by_id, 5))
    if by_provider_id:
        await conn.execute(_UPDATE_DELIVERY_BY_PROVIDER_ID, *column_arrays(by_provider_id, 4))


async def _write_consents(conn: asyncpg.Connection, saved: list[SaveConsent]) -> None:
    # An upsert changes a row once a statement: the last change of each address and scope.
    changes = [(item.change, item.actor) for item in saved]
    latest = {(c.domain, c.channel, c.customer_address, c.scope): c for c, _ in changes}
    for scope, table in CONSENT_TABLES.items():
        rows = [
            (
                c.domain,
                str(c.channel),
                c.customer_address,
                c.customer_id,
                str(c.consent),
                c.source,
                _timestamp(c.occurred_at),
            )
            for c in latest.values()
            if c.scope is scope
        ]
        if rows:
            await conn.execute(_UPSERT_CONSENTS.format(table), *column_arrays(rows, 7))
    await conn.execute(
        _INSERT_CONSENT_CHANGES,
        *column_arrays(
            (
                (
                    c.domain,
                    c.id,
                    str(c.channel),
                    c.customer_address,
                    c.customer_id,
                    str(c.consent),
                    c.source,
                    c.message_id,
                    actor,
                    _timestamp(c.occurred_at),
                    str(c.scope),
                )
                for c, actor in changes
            ),
            11,
        ),
    )


async def delete_published(conn: asyncpg.Connection, published: list[int]) -> None:
    if published:
        await conn.execute(_DELETE_PUBLISHED, published)


async def stored_offsets(
    conn: asyncpg.Connection, consumer_group: str, topics: list[str], partitions: list[int]
) -> dict[tuple[str, int], int]:
    rows = await conn.fetch(
        "SELECT topic, partition, next_offset FROM router_offsets"
        " WHERE consumer_group = $1 AND topic = ANY($2::text[]) AND partition = ANY($3::int[])",
        consumer_group,
        topics,
        partitions,
    )
    return {(row["topic"], row["partition"]): row["next_offset"] for row in rows}


async def reset_offsets(
    conn: asyncpg.Connection, consumer_group: str, offsets: dict[tuple[str, int], int]
) -> None:
    await conn.execute(
        _UPSERT_OFFSETS,
        consumer_group,
        *column_arrays(((t, p, o) for (t, p), o in offsets.items()), 3),
    )


async def unpublished(conn: asyncpg.Connection, partitions: list[int]) -> list[OutboxBatch]:
    rows = await conn.fetch(
        "SELECT seq, partition, events FROM outbox WHERE partition = ANY($1::int[]) ORDER BY seq",
        partitions,
    )
    return [
        OutboxBatch(row["seq"], row["partition"], _decode_events(row["events"])) for row in rows
    ]


def _timestamp(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
