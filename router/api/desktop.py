"""The agent desktop's reads: conversation lists, a customer's profile and history.

- ``GET /v1/domains/{domain}/conversations``: the domain's conversations, filtered, most
  recently active first, paged by an opaque keyset cursor. A bot-owned conversation
  (status ``bot``) names its bot, and one a bot handed off carries the latest hand-off
  (what the bot learned), so the person who takes it reads it first.
- ``GET /v1/domains/{domain}/customers/{customer_id}``: who the customer is (every
  identity of the profile), their owner, last agent and affinity, open conversations,
  counts.
- ``GET /v1/domains/{domain}/customers/{customer_id}/history``: every conversation and
  message of every identity of the customer, on every channel, paged backward from now
  (``router.api.history``, with the cursors and the customer lookup of this module).

Reads only: the router is the single writer of routing state, and a batch's rows are
written in one transaction, so each answer is consistent with some batch boundary.

Who sees what (``router.api.visibility``, the same rule as reading one conversation): an
admin token the whole domain; an agent token the conversations it owns, is offered or
handled before, and the profile and history of a customer one of whose conversations it
may read (all of that customer's history then: the desktop shows an agent the person, not
only its own part of their story). ``mine`` is always the calling agent's.

Identities: a customer's profile is reached from any of its identities (their links are
the router's, in ``customer_identities``): the profile of ``x`` is ``x`` unless a row
links ``x`` to another profile, and a profile's identities are its own id plus every
identity linked to it.

Paging is by keyset, never OFFSET: a cursor (base64url JSON) holds the sort key of the
last entry served and a digest of that key with the filters (or the profile) it was served
for. One that does not decode, was edited, or comes with other filters is refused (400);
it is no credential: whatever position a forged one names, visibility is the query's. A
conversation that changes while a client pages moves to the top of the order: it is not
served twice, and the next refresh shows it. Why the lists read open and closed
conversations apart: ``runtime/migrations/0013_desktop_reads.sql`` (no index may hold
``updated_at``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import msgspec
from aiohttp import web

from router.api.auth import Principal, Scope, forbidden
from router.api.desktop_models import (
    ALL_STATUSES,
    CURSOR_MAX,
    LIST_LIMIT,
    LIST_LIMIT_MAX,
    MOMENT_MAX,
    OPEN,
    OPEN_SHOWN_MAX,
    OPEN_STATUSES,
    STATUS_VALUES,
    AffinityAgent,
    ConversationFilters,
    ConversationItem,
    ConversationsPage,
    CustomerCounts,
    CustomerIdentity,
    CustomerProfile,
    ListCursor,
    attribute_filters,
)
from router.api.routes import (
    AGENT_ID,
    API,
    bad_request,
    enter,
    guarded,
    not_found,
    path_value,
    query_int,
    remaining_wait,
    reply_window_closed,
    respond,
    waiting_estimate,
)
from router.api.visibility import agent_may_read
from router.engine import ConversationRecord, ConversationStatus, CustomerRecord, DeadlineKind
from runtime.appkeys import DB_POOL
from schemas import Channel
from schemas.limits import (
    AGENT_ID_MAX,
    CONVERSATION_ID_MAX,
    CUSTOMER_ID_MAX,
    EPOCH_MAX,
    QUEUE_MAX,
    is_identifier,
)

T = TypeVar("T")

_conversation = msgspec.json.Decoder(ConversationRecord)
_customer = msgspec.json.Decoder(CustomerRecord)

_CLOSED = ConversationStatus.CLOSED

# -- cursors ------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CURSOR = re.compile(rf"[A-Za-z0-9_-]{{1,{CURSOR_MAX}}}")


def digest(*parts: object) -> str:
    return hashlib.blake2b(msgspec.json.encode(parts), digest_size=8).hexdigest()


def micros_of(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def moment_of(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _filters_digest(filters: ConversationFilters) -> str:
    return digest(
        sorted(filters.statuses),
        filters.queue,
        filters.agent_id,
        filters.customer_id,
        filters.channel,
        None if filters.since is None else micros_of(filters.since),
        None if filters.until is None else micros_of(filters.until),
        filters.mine,
        filters.attributes,
    )


def encode_cursor(cursor: msgspec.Struct) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(cursor)).rstrip(b"=").decode()


def refused_cursor() -> web.HTTPException:
    return bad_request("cursor is not one this endpoint gave for this query: start without it")


def decode_cursor(raw: str, type_: type[T]) -> T:
    """The cursor ``raw`` holds, or 400: a client may send anything."""
    if not _CURSOR.fullmatch(raw):
        raise refused_cursor()
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return msgspec.json.decode(data, type=type_)
    except (binascii.Error, msgspec.DecodeError):  # ValidationError is a DecodeError
        raise refused_cursor() from None


def list_cursor(at: datetime, conversation_id: str, filters: ConversationFilters) -> str:
    micros = micros_of(at)
    check = digest("list", _filters_digest(filters), micros, conversation_id)
    return encode_cursor(ListCursor(1, micros, conversation_id, check))


def list_position(raw: str, filters: ConversationFilters) -> tuple[datetime, str]:
    """Where the page of ``raw`` starts (400 for a cursor not given for ``filters``)."""
    cursor = decode_cursor(raw, ListCursor)
    if cursor.check != digest(
        "list", _filters_digest(filters), cursor.at, cursor.conversation_id
    ) or not is_identifier(cursor.conversation_id, CONVERSATION_ID_MAX):
        raise refused_cursor()
    return moment_of(cursor.at), cursor.conversation_id


# -- query parameters ---------------------------------------------------------------

_STATUS_NAMES = frozenset(str(status) for status in ConversationStatus)
_CHANNEL_NAMES = frozenset(str(channel) for channel in Channel)
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")


def query_one(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise bad_request(f"give {name} at most once")
    return values[0] if values else None


def _identifier(request: web.Request, name: str, limit: int) -> str | None:
    raw = query_one(request, name)
    if raw is not None and not (raw and is_identifier(raw, limit)):
        raise bad_request(f"{name} must be 1 to {limit} characters, none a control character")
    return raw


def _attributes(request: web.Request) -> tuple[tuple[str, str], ...]:
    try:
        return attribute_filters(request.query.getall("attribute", []))
    except ValueError as error:
        raise bad_request(str(error)) from None


def _statuses(request: web.Request) -> frozenset[ConversationStatus]:
    tokens = [t.strip() for value in request.query.getall("status", []) for t in value.split(",")]
    if not tokens:
        return ALL_STATUSES
    if len(tokens) > len(STATUS_VALUES):
        raise bad_request(f"status takes at most {len(STATUS_VALUES)} values")
    wanted: set[ConversationStatus] = set()
    for token in tokens:
        if token == OPEN:
            wanted |= OPEN_STATUSES
        elif token in _STATUS_NAMES:
            wanted.add(ConversationStatus(token))
        else:
            raise bad_request(f"status must be one of {', '.join(STATUS_VALUES)}")
    return frozenset(wanted)


def moment_query(request: web.Request, name: str) -> datetime | None:
    """Epoch seconds or ISO 8601 (UTC unless it names an offset), 1970 to 9999."""
    raw = query_one(request, name)
    if raw is None:
        return None
    refused = bad_request(
        f"{name} must be seconds since the Unix epoch or an ISO 8601 time, 1970 to 9999"
    )
    if len(raw) > MOMENT_MAX:
        raise refused
    if _NUMBER.fullmatch(raw):
        seconds = float(raw)
        if not (math.isfinite(seconds) and 0 <= seconds <= EPOCH_MAX):
            raise refused
        return _EPOCH + timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(raw.upper())
    except ValueError:
        raise refused from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 0 <= moment.timestamp() <= EPOCH_MAX:
        raise refused
    return moment.astimezone(UTC)


def _mine(request: web.Request, principal: Principal) -> str | None:
    """The calling agent's id when ``mine=true``; 400 for a token that is no agent's."""
    raw = query_one(request, "mine")
    if raw is None or raw == "false":
        return None
    if raw != "true":
        raise bad_request("mine must be true or false")
    if principal.scope is not Scope.AGENT or principal.agent_id is None:
        raise bad_request("mine needs an agent token: name the agent with agent_id instead")
    return principal.agent_id


def list_filters(request: web.Request, principal: Principal) -> ConversationFilters:
    """The list's filters from the query string, or 400 with the reason."""
    agent_id = query_one(request, "agent_id")
    if agent_id is not None and not AGENT_ID.fullmatch(agent_id):
        raise bad_request(f"agent_id must be 1 to {AGENT_ID_MAX} letters, digits or . _ @ : -")
    channel = query_one(request, "channel")
    if channel is not None and channel not in _CHANNEL_NAMES:
        raise bad_request(f"channel must be one of {', '.join(Channel)}")
    filters = ConversationFilters(
        statuses=_statuses(request),
        queue=_identifier(request, "queue", QUEUE_MAX),
        agent_id=agent_id,
        customer_id=_identifier(request, "customer_id", CUSTOMER_ID_MAX),
        channel=None if channel is None else Channel(channel),
        since=moment_query(request, "since"),
        until=moment_query(request, "until"),
        mine=_mine(request, principal),
        attributes=_attributes(request),
    )
    if filters.since and filters.until and filters.since > filters.until:
        raise bad_request("since is after until")
    return filters


# -- the list -----------------------------------------------------------------------


@dataclass(slots=True)
class Query:
    """Parameters of a statement being built, bound one at a time (``$1`` first)."""

    params: list[object] = field(default_factory=list)

    def bind(self, value: object) -> str:
        self.params.append(value)
        return f"${len(self.params)}"


def _conditions(
    query: Query,
    principal: Principal,
    filters: ConversationFilters,
    identities: Sequence[str] | None,
) -> list[str]:
    """The conditions on ``conversations c`` both parts of a list share (``$1``: domain)."""
    conditions = []
    if filters.queue is not None:
        conditions.append(f"c.queue = {query.bind(filters.queue)}")
    if filters.agent_id is not None:
        conditions.append(f"c.owner_agent_id = {query.bind(filters.agent_id)}")
    if identities is not None:
        conditions.append(f"c.customer_id = ANY({query.bind(list(identities))}::text[])")
    if filters.channel is not None:
        conditions.append(f"c.channel = {query.bind(str(filters.channel))}")
    if filters.since is not None:
        conditions.append(f"c.opened_at >= {query.bind(filters.since)}")
    if filters.until is not None:
        conditions.append(f"c.opened_at < {query.bind(filters.until)}")
    for key, value in filters.attributes:
        conditions.append(f"c.record->'attributes'->>{query.bind(key)} = {query.bind(value)}")
    if filters.mine is not None:
        me = query.bind(filters.mine)
        conditions.append(
            f"(c.owner_agent_id = {me} OR (c.status = 'offered' AND c.record->>'offered_to' = {me}))"
        )
    if not principal.is_admin and filters.mine is None:
        # ``mine`` (the caller's own) is the rule's owned-or-offered part already.
        conditions.append(agent_may_read("c", "$1", query.bind(principal.agent_id)))
    return conditions


def list_query(
    domain: str,
    principal: Principal,
    filters: ConversationFilters,
    identities: Sequence[str] | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[str, list[object]] | None:
    """The statement of a list page and its parameters; None when nothing can match.

    Open conversations (few: the domain's open work) are sorted by ``updated_at``; closed
    ones are read in the order of an index on ``closed_at`` (equal to their
    ``updated_at``); the two parts meet in one order."""
    query = Query([domain])
    shared = _conditions(query, principal, filters, identities)
    statuses = filters.statuses
    if filters.mine or filters.agent_id:
        statuses &= OPEN_STATUSES  # a closed conversation has no owner, nor an offer
    keyset = None if after is None else (query.bind(after[0]), query.bind(after[1]))
    top = query.bind(limit)
    parts = []
    if statuses & OPEN_STATUSES:
        conditions = ["c.status <> 'closed'", *shared]
        if statuses & OPEN_STATUSES != OPEN_STATUSES:
            wanted = sorted(statuses & OPEN_STATUSES)
            conditions.append(f"c.status = ANY({query.bind(wanted)}::text[])")
        # Last active: the later of the record's write and the activity's (migration 0027).
        parts.append(_part(_ACTIVE_AT, conditions, keyset, top, _WITH_ACTIVITY))
    if _CLOSED in statuses:
        # Every closed row has its closed_at (router.shell.store); the condition keeps a
        # row without one from leading the order with a key no cursor can hold.
        conditions = ["c.status = 'closed'", "c.closed_at IS NOT NULL", *shared]
        parts.append(_part("c.closed_at", conditions, keyset, top))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0], query.params
    union = " UNION ALL ".join(f"({part})" for part in parts)
    return (
        "SELECT record, active_at, conversation_id"  # noqa: S608 -- placeholders only
        f" FROM ({union}) page ORDER BY active_at DESC, conversation_id DESC LIMIT {top}",
        query.params,
    )


_ACTIVE_AT = "greatest(c.updated_at, a.updated_at)"
_WITH_ACTIVITY = "LEFT JOIN conversation_activity a USING (domain, conversation_id)"


def _part(
    at: str, conditions: list[str], keyset: tuple[str, str] | None, top: str, join: str = ""
) -> str:
    if keyset is not None:
        conditions = [*conditions, f"({at}, c.conversation_id) < ({keyset[0]}, {keyset[1]})"]
    return (
        "SELECT switchboard_conversation_record(c)::text AS record,"  # noqa: S608
        f" {at} AS active_at, c.conversation_id FROM conversations c {join}"
        f" WHERE c.domain = $1 AND {' AND '.join(conditions)}"
        f" ORDER BY {at} DESC, c.conversation_id DESC LIMIT {top}"
    )


def _item(raw: str, active_at: datetime, now: float) -> ConversationItem:
    record = _conversation.decode(raw)
    estimate = waiting_estimate(record)
    return ConversationItem(
        conversation_id=record.conversation_id,
        status=record.status,
        channel=record.channel,
        queue=record.queue,
        customer_id=record.customer_id,
        owner_agent_id=record.owner_agent_id,
        offered_to=record.offered_to,
        preferred_agent_id=record.preferred_agent_id,
        bot_id=record.bot_id,
        handoff=record.handoff,
        priority=record.priority,
        opened_at=record.opened_at,
        last_customer_message_at=record.last_customer_message_at,
        last_agent_reply_at=record.last_agent_reply_at,
        closed_at=record.closed_at,
        message_count=record.message_count,
        reply_window_ends_at=record.reply_window_ends_at,
        reply_window_closed=reply_window_closed(record, now),
        skills=record.skills,
        language=record.language,
        attributes=record.attributes,
        snoozed_until=record.snoozed_until,
        offer_expires_at=record.deadline if record.deadline_kind is DeadlineKind.OFFER else None,
        position=None if estimate is None else estimate.position,
        expected_wait_seconds=remaining_wait(estimate, now),
        updated_at=active_at.timestamp(),
    )


async def list_conversations(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    filters = list_filters(request, principal)
    limit = query_int(request, "limit", LIST_LIMIT, 1, LIST_LIMIT_MAX)
    raw_cursor = query_one(request, "cursor")
    after = None if raw_cursor is None else list_position(raw_cursor, filters)
    async with request.app[DB_POOL].acquire() as conn:
        identities = None
        if filters.customer_id is not None:
            identities = (await customer_of(conn, domain, filters.customer_id)).ids
        statement = list_query(domain, principal, filters, identities, after, limit + 1)
        rows = [] if statement is None else await conn.fetch(statement[0], *statement[1])
    now = time.time()
    items = [_item(row["record"], row["active_at"], now) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = list_cursor(last["active_at"], last["conversation_id"], filters)
    return respond(ConversationsPage(conversations=items, next_cursor=next_cursor))


# -- customers ----------------------------------------------------------------------

_IDENTITIES = """
WITH profile AS (
    SELECT coalesce((SELECT customer_id FROM customer_identities
                     WHERE domain = $1 AND identity = $2), $2) AS id
)
SELECT p.id AS profile, i.identity, i.source, i.linked_at
FROM profile p
LEFT JOIN customer_identities i ON i.domain = $1 AND i.customer_id = p.id AND i.identity <> p.id
ORDER BY i.linked_at, i.identity
"""


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer's profile id and identities (its own id first)."""

    customer_id: str
    identities: list[CustomerIdentity]

    @property
    def ids(self) -> list[str]:
        return [identity.identity for identity in self.identities]


async def customer_of(conn: asyncpg.Connection, domain: str, identity: str) -> Customer:
    """The profile ``identity`` belongs to, with every identity of it."""
    rows = await conn.fetch(_IDENTITIES, domain, identity)
    profile = rows[0]["profile"]
    identities = [CustomerIdentity(identity=profile, source="profile", linked_at=None)]
    identities.extend(
        CustomerIdentity(
            identity=row["identity"], source=row["source"], linked_at=row["linked_at"].timestamp()
        )
        for row in rows
        if row["identity"] is not None
    )
    return Customer(profile, identities)


# A customer the business wrote to first is known before they answer (their history
# shows the message).
_SEEN = """
SELECT EXISTS (SELECT 1 FROM customers WHERE domain = $1 AND customer_id = $2)
    OR EXISTS (SELECT 1 FROM conversations WHERE domain = $1 AND customer_id = ANY($3::text[]))
    OR EXISTS (SELECT 1 FROM outbound_messages WHERE domain = $1 AND kind = 'notification'
               AND customer_id = ANY($3::text[]))
"""
_AGENT_KNOWS = (
    "SELECT EXISTS (SELECT 1 FROM conversations c"  # noqa: S608 -- placeholders only
    " WHERE c.domain = $1 AND c.customer_id = ANY($2::text[])"
    f" AND {agent_may_read('c', '$1', '$3')})"
)


async def readable_customer(
    conn: asyncpg.Connection, principal: Principal, domain: str, identity: str
) -> Customer:
    """The customer of ``identity``: 404 when never seen, 403 when the principal may read
    none of its conversations (admins read every customer)."""
    customer = await customer_of(conn, domain, identity)
    seen = len(customer.identities) > 1 or await conn.fetchval(
        _SEEN, domain, customer.customer_id, customer.ids
    )
    if not seen:
        raise not_found("unknown customer")
    if not principal.is_admin and not await conn.fetchval(
        _AGENT_KNOWS, domain, customer.ids, principal.agent_id
    ):
        raise forbidden("none of the customer's conversations is one of this agent's")
    return customer


# Each conversation's current record read once (its activity merged: migration 0027).
_COUNTS = """
SELECT channel, count(*) AS conversations, count(*) FILTER (WHERE status <> 'closed') AS open,
       coalesce(sum((m.record->>'message_count')::bigint), 0)::bigint AS messages,
       min(opened_at) AS first, max((m.record->>'last_customer_message_at')::float8) AS last
FROM conversations c CROSS JOIN LATERAL (SELECT switchboard_conversation_record(c) AS record) m
WHERE domain = $1 AND customer_id = ANY($2::text[])
GROUP BY channel
"""
_OPEN = f"""
SELECT switchboard_conversation_record(c)::text AS record, {_ACTIVE_AT} AS active_at
FROM conversations c {_WITH_ACTIVITY}
WHERE c.domain = $1 AND c.customer_id = ANY($2::text[]) AND c.status <> 'closed'
ORDER BY active_at DESC, c.conversation_id DESC LIMIT $3
"""  # noqa: S608 -- constants


def _counts(rows: Iterable[asyncpg.Record]) -> CustomerCounts:
    rows = list(rows)
    firsts = [row["first"].timestamp() for row in rows]
    lasts = [row["last"] for row in rows if row["last"] is not None]
    return CustomerCounts(
        conversations=sum(row["conversations"] for row in rows),
        open_conversations=sum(row["open"] for row in rows),
        messages=sum(row["messages"] for row in rows),
        by_channel={Channel(row["channel"]): row["conversations"] for row in rows},
        first_contact_at=min(firsts, default=None),
        last_contact_at=max(lasts, default=None),
    )


def _affinity(record: CustomerRecord, half_life: float, now: float) -> list[AffinityAgent]:
    """Each agent's score at ``now`` (``router.engine.records.AffinityEntry``), best first."""
    scored = [
        AffinityAgent(
            agent_id=entry.agent_id,
            score=round(2.0 ** min(entry.rank - now / half_life, 1000.0), 6),
        )
        for entry in record.affinity
    ]
    return sorted(scored, key=lambda agent: (-agent.score, agent.agent_id))


async def get_customer(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    identity = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    half_life = request.app[API].policies[domain].affinity.half_life
    async with request.app[DB_POOL].acquire() as conn:
        customer = await readable_customer(conn, principal, domain, identity)
        raw = await conn.fetchval(
            "SELECT record::text FROM customers WHERE domain = $1 AND customer_id = $2",
            domain,
            customer.customer_id,
        )
        counts = _counts(await conn.fetch(_COUNTS, domain, customer.ids))
        open_rows = await conn.fetch(_OPEN, domain, customer.ids, OPEN_SHOWN_MAX)
    record = (
        CustomerRecord(customer_id=customer.customer_id) if raw is None else _customer.decode(raw)
    )
    now = time.time()
    return respond(
        CustomerProfile(
            customer_id=customer.customer_id,
            identities=customer.identities,
            owner_agent_id=record.owner_agent_id,
            last_agent_id=record.last_agent_id,
            last_handled_at=record.last_handled_at,
            affinity=_affinity(record, half_life, now),
            open_conversations=[_item(row["record"], row["active_at"], now) for row in open_rows],
            counts=counts,
        )
    )


def desktop_routes() -> list[web.RouteDef]:
    """The agent desktop's reads (``router.api.desktop_operations`` documents them)."""
    base = "/v1/domains/{domain}"
    return [
        web.get(base + "/conversations", guarded(list_conversations)),
        web.get(base + "/customers/{customer_id}", guarded(get_customer)),
    ]
