"""What the router reads from PostgreSQL besides its batches' writes: a partition's
domains when it takes them over (``restore_domains``), and what a batch needs before it
applies: the keys of its sealed records that it lacks (``before_decoding``; rarely any, as
spares are read ahead), then which of its messages are stored already and the stored
customers it names (``before_applying``, for ``router.shell.residents``): one query each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import asyncpg
import msgspec
from aiokafka import ConsumerRecord, TopicPartition

from router.engine import (
    AgentRecord,
    BotRecord,
    ConversationActivity,
    ConversationRecord,
    CustomerRecord,
    DomainPolicy,
    DomainState,
    IdentityRecord,
    Restoration,
    with_activity,
)
from runtime.db import HeldConnection, given_back, json_rows, rows_of
from runtime.sealing import KEYS_FOR_OPENING, SealingKey, TopicKeys
from schemas import MessageReceived
from schemas.cloudevents import type_name

R = TypeVar("R")


class RecordPages(Generic[R]):
    """Stored records as pages of JSON, decoded a page at a time as they are iterated.

    A load then holds at most one page of decoded records beside the state it builds (the
    identity links excepted: ``_restore_customers`` holds them, by customer, until their
    profile's page comes), and the state keeps nothing of the pages it was built from:
    the memory a takeover leaves behind is the state's, not the records' (decoding
    everything first left their memory in use for good, a third of the router's resident
    memory, measured)."""

    __slots__ = ("_decode", "_pages")

    def __init__(self, decode: Callable[[bytes], Iterable[R]], pages: list[bytes]) -> None:
        self._decode = decode
        self._pages = pages

    def __iter__(self) -> Iterator[R]:
        for page in self._pages:
            yield from self._decode(page)

    def by_page(self) -> Iterator[Iterable[R]]:
        for page in self._pages:
            yield self._decode(page)


_decode_conversations = msgspec.json.Decoder(
    list[tuple[ConversationRecord, ConversationActivity | None]]
).decode


def _conversations(page: bytes) -> Iterator[ConversationRecord]:
    """A page of (record, activity) pairs as the conversations' current records."""
    for record, activity in _decode_conversations(page):
        yield with_activity(record, activity)


_OF_OPEN_WORK = """(
    SELECT x.* FROM (
        SELECT DISTINCT domain, customer_id FROM conversations
        WHERE domain = ANY($1::text[]) AND status <> 'closed'
    ) o CROSS JOIN LATERAL (
        SELECT * FROM {table} x WHERE x.domain = o.domain AND x.customer_id = o.customer_id
        OFFSET 0
    ) x
)"""
"""Only the rows of the open conversations' customers (``router.engine.residency``), each
found by its index: ``OFFSET 0`` keeps the planner from turning the lookups into a scan
of the whole history (10 s for 10 million customers, measured). The rest of the history
is read when an input names it (``load_customers``)."""

LOAD_PAGE = 2_000
"""Records per page of a partition load (``RecordPages``)."""

PAGES_AHEAD = 2
"""Pages of open conversations read ahead of their restore: a takeover's read holds this
many at most, whatever the size of the partition."""

_LOAD_QUERY = """
SELECT domain, convert_to(json_agg(record)::text, 'UTF8') AS records FROM (
    SELECT t.domain, {record} AS record, (row_number() OVER (PARTITION BY t.domain) - 1) / $2 AS page
    FROM {table} t WHERE t.domain = ANY($1::text[])
) paged GROUP BY domain, page
"""

_OPEN_CONVERSATIONS = """
SELECT c.domain, convert_to(json_build_array(c.record, a.activity)::text, 'UTF8') AS record
FROM conversations c LEFT JOIN conversation_activity a USING (domain, conversation_id)
WHERE c.domain = ANY($1::text[]) AND c.status <> 'closed'
"""
"""Open conversations' records with their latest activity (migration 0027), a row each:
merged by the router (``with_activity``), not by PostgreSQL, whose jsonb merge costs
about 20 µs a row."""


async def _read_pages(
    conn: asyncpg.Connection,
    domains: list[str],
    table: str,
    decode: Callable[[bytes], Iterable[R]],
    *,
    source: str | None = None,
    record: str = "t.record",
) -> dict[str, RecordPages[R]]:
    """A table's records of the domains, as pages of JSON per domain."""
    query = _LOAD_QUERY.format(table=source or table, record=record)
    async with conn.transaction():
        # Compiling these plans takes longer than running them (1.2 s, measured).
        await conn.execute("SET LOCAL jit = off")
        rows = await conn.fetch(query, domains, LOAD_PAGE)
    pages: dict[str, list[bytes]] = {}
    for row in rows:
        pages.setdefault(row["domain"], []).append(row["records"])
    return {domain: RecordPages(decode, found) for domain, found in pages.items()}


async def read_open_conversations(
    conn: asyncpg.Connection,
    domains: list[str],
    take: Callable[[str, RecordPages[ConversationRecord]], Awaitable[None]],
) -> None:
    """The domains' open conversations, current (``with_activity``), handed to ``take``
    as they arrive: up to ``LOAD_PAGE`` of one domain at a time, decoded as iterated.

    Read from a cursor, so PostgreSQL reads the next rows while ``take``'s consumer
    restores those before (read whole, a takeover waited for PostgreSQL, then for the
    restore)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL jit = off")
        cursor = await conn.cursor(_OPEN_CONVERSATIONS, domains)
        while rows := await cursor.fetch(LOAD_PAGE):
            by_domain: dict[str, list[bytes]] = {}
            for domain, record in rows:
                by_domain.setdefault(domain, []).append(record)
            del rows
            for domain, records in by_domain.items():
                await take(domain, RecordPages(_conversations, [b"[" + b",".join(records) + b"]"]))


class _Customers(NamedTuple):
    found: dict[str, RecordPages[CustomerRecord]]


class _Identities(NamedTuple):
    found: dict[str, RecordPages[IdentityRecord]]


class _Conversations(NamedTuple):
    domain: str
    records: RecordPages[ConversationRecord]


class _Done(NamedTuple):
    failure: Exception | None


async def restore_domains(
    pool: asyncpg.Pool, domains: list[str], policies: Mapping[str, DomainPolicy]
) -> dict[str, DomainState]:
    """The domains restored from their latest snapshots: agents, bots' health, open
    conversations, and the open conversations' customers with their identity links.

    The agents and bots come first (the other records refer to them). Then the open
    conversations are restored as they arrive (``read_open_conversations``, read at most
    ``PAGES_AHEAD`` pages ahead), while the customers and their links load beside them,
    each on a connection of its own, and are restored once both are in. Call this only
    once the partitions' leases are committed (no previous owner can write any more).
    """
    async with pool.acquire() as conn:
        agents = await _read_pages(conn, domains, "agents", _decode_agents)
        bots = await _read_pages(conn, domains, "bot_health", _decode_bots)
    restorations = {
        domain: Restoration(domain, policies[domain], agents.get(domain, ()), bots.get(domain, ()))
        for domain in domains
    }
    del agents, bots
    parts: asyncio.Queue[_Conversations | _Customers | _Identities | _Done]
    parts = asyncio.Queue(PAGES_AHEAD)

    async def conversations() -> None:
        async def take(domain: str, records: RecordPages[ConversationRecord]) -> None:
            await parts.put(_Conversations(domain, records))

        async with given_back(pool) as conn:
            await read_open_conversations(conn, domains, take)

    async def of_open_work(
        table: str,
        decode: Callable[[bytes], Iterable[Any]],
        as_part: Callable[[dict[str, RecordPages[Any]]], _Customers | _Identities],
        record: str = "t.record",
    ) -> None:
        async with given_back(pool) as conn:
            found = await _read_pages(
                conn,
                domains,
                table,
                decode,
                source=_OF_OPEN_WORK.format(table=table),
                record=record,
            )
        await parts.put(as_part(found))

    async def reporting(read: Awaitable[None]) -> None:
        try:
            await read
        except Exception as failure:  # raised by the restore, which stops the others
            await parts.put(_Done(failure))
        else:
            await parts.put(_Done(None))

    readers = [
        asyncio.create_task(reporting(read))
        for read in (
            conversations(),
            of_open_work("customers", _decode_customers, _Customers),
            of_open_work(
                "customer_identities",
                _decode_identities,
                _Identities,
                record=_LINK_RECORD.replace("i.", "t."),
            ),
        )
    ]
    try:
        reading = len(readers)
        profiles: dict[str, RecordPages[CustomerRecord]] | None = None
        links: dict[str, RecordPages[IdentityRecord]] | None = None
        while reading:
            part = await parts.get()
            if isinstance(part, _Conversations):
                restorations[part.domain].add_conversations(part.records)
            elif isinstance(part, _Customers):
                profiles = part.found
            elif isinstance(part, _Identities):
                links = part.found
            elif part.failure is not None:
                raise part.failure
            else:
                reading -= 1
            del part  # its page, once restored
            if profiles is not None and links is not None:
                for domain, restoration in restorations.items():
                    await _restore_customers(restoration, profiles.get(domain), links.get(domain))
                profiles = links = None
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return {domain: restoration.finish() for domain, restoration in restorations.items()}


async def _restore_customers(
    restoration: Restoration,
    profiles: RecordPages[CustomerRecord] | None,
    links: RecordPages[IdentityRecord] | None,
) -> None:
    """A domain's customers, a page at a time with a turn of the event loop between pages
    (at once, 100,000 of them held it for most of a second, measured). ``remember`` takes
    a profile's links in the call that has the profile: the links go by customer, and those
    of customers without a record of their own come last."""
    by_customer: dict[str, list[IdentityRecord]] = {}
    for link in links or ():
        by_customer.setdefault(link.customer_id, []).append(link)
    for page in profiles.by_page() if profiles is not None else ():
        records = list(page)
        restoration.add_customers(
            records, [link for r in records for link in by_customer.pop(r.customer_id, ())]
        )
        await asyncio.sleep(0)
    restoration.add_customers((), [link for found in by_customer.values() for link in found])


_decode_agents = msgspec.json.Decoder(list[AgentRecord]).decode
_decode_bots = msgspec.json.Decoder(list[BotRecord]).decode
_decode_customers = msgspec.json.Decoder(list[CustomerRecord]).decode
_decode_identities = msgspec.json.Decoder(list[IdentityRecord]).decode


class StoredCustomer(msgspec.Struct, frozen=True):
    """A profile as stored: its record (None: only links so far) and its identity links."""

    domain: str
    customer_id: str
    record: CustomerRecord | None = None
    links: list[IdentityRecord] | None = None


_LINK_RECORD = (
    "json_build_object('identity', i.identity, 'customer_id', i.customer_id,"
    " 'source', i.source, 'linked_at', extract(epoch FROM i.linked_at))"
)

_CUSTOMERS = """(
WITH named AS {named},
profiles AS (
    SELECT DISTINCT n.domain, coalesce(i.customer_id, n.identity) AS customer_id
    FROM named n
    LEFT JOIN LATERAL (
        SELECT i.customer_id FROM customer_identities i
        WHERE i.domain = n.domain AND i.identity = n.identity OFFSET 0
    ) i ON true
)
SELECT convert_to(coalesce(json_agg(json_build_object(
    'domain', p.domain, 'customer_id', p.customer_id, 'record', c.record, 'links', l.links
)), '[]')::text, 'UTF8')
FROM profiles p
LEFT JOIN LATERAL (
    SELECT c.record FROM customers c
    WHERE c.domain = p.domain AND c.customer_id = p.customer_id OFFSET 0
) c ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('identity', i.identity, 'customer_id', i.customer_id,
        'source', i.source, 'linked_at', extract(epoch FROM i.linked_at))) AS links
    FROM customer_identities i
    WHERE i.domain = p.domain AND i.customer_id = p.customer_id
) l ON true
WHERE c.record IS NOT NULL OR l.links IS NOT NULL
)"""
"""The stored profiles of (domain, identity) pairs as one JSON array of ``StoredCustomer``.

Each pair's identity link and profile is looked up by its primary key, one row at a time
(``LATERAL … OFFSET 0``, as in ``_STORED``)."""
_LOAD_CUSTOMERS = "SELECT " + _CUSTOMERS.format(named=rows_of(1, "domain, identity"))
_STORED_CUSTOMERS = msgspec.json.Decoder(list[StoredCustomer])


async def load_customers(
    conn: asyncpg.Connection, identities: Sequence[tuple[str, str]]
) -> list[StoredCustomer]:
    """The stored profiles of these (domain, identity) pairs, each with all its links:
    what ``router.shell.residents`` puts in memory before a batch applies. One query."""
    if not identities:
        return []
    value = await conn.fetchval(_LOAD_CUSTOMERS, json_rows(identities))
    return _STORED_CUSTOMERS.decode(value)


async def known_message_ids(conn: asyncpg.Connection, ids: list[tuple[str, str]]) -> set[str]:
    """The (domain, message id) pairs already stored: provider retries to drop."""
    if not ids:
        return set()
    rows = await conn.fetch(_STORED.format(pairs=rows_of(1, "d, id")), json_rows(ids))
    return {row["message_id"] for row in rows}


_STORED = """
SELECT m.message_id FROM {pairs} AS i
CROSS JOIN LATERAL (
    SELECT m.message_id FROM messages m WHERE m.domain = i.d AND m.message_id = i.id OFFSET 0
) m
"""
"""The ids of the (domain, message id) pairs already stored (``pairs``: ``rows_of`` a
``json_rows`` parameter; as two text arrays, asyncpg's checks of each element cost the
router 0.6 µs a message), each looked up by the primary key (``LATERAL … OFFSET 0``: one
probe per pair). The plan a connection keeps is made after the statement's first runs,
and as a join it was a hash join over the whole table when made while the tables were
small and not analyzed yet: 1.6 ms a batch and 150 µs of PostgreSQL's time per message
at 1,000 msg/s, where the probes take 12 µs (``tests/integration/test_read_plans.py``;
migration 0026 keeps the primary key the only index of ``messages`` that starts with the
domain)."""


_MESSAGE_TYPE = type_name(MessageReceived).encode()


def messages_named(
    fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], inbound: str
) -> list[tuple[str, str]]:
    """The (domain, message id) of each customer message of ``inbound`` in a fetched batch,
    as its record's key and CloudEvents headers name it, before its record is opened. A
    record whose key or id no column can hold (not UTF-8, a NUL) names none: its body is
    set aside when it is decoded, and a query carrying it would fail the whole batch, again
    at every read."""
    named: list[tuple[str, str]] = []
    for tp, records in fetched.items():
        if tp.topic != inbound:
            continue
        for record in records:
            if not record.headers or record.key is None:
                continue
            event_type = event_id = None
            for name, value in record.headers:
                if name == "ce_type":
                    event_type = value
                elif name == "ce_id":
                    event_id = value
            if event_type == _MESSAGE_TYPE and event_id:
                try:
                    pair = (record.key.decode(), event_id.decode())
                except UnicodeDecodeError:
                    continue
                if "\x00" not in pair[0] and "\x00" not in pair[1]:
                    named.append(pair)
    return named


_KEYS_AND_STORED = f"""
SELECT k.*, NULL::text AS message_id FROM ({KEYS_FOR_OPENING}) k
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, s.message_id
FROM ({_STORED.format(pairs=rows_of(4, "d, id"))}) s
"""  # noqa: S608 -- fixed text


async def before_decoding(
    keys: TopicKeys,
    pool: asyncpg.Pool | HeldConnection,
    fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    inbound: str,
    sealed: Mapping[tuple[str, int], Sequence[bytes | None]],
) -> tuple[dict[bytes, SealingKey], set[tuple[str, str]], set[str]]:
    """The keys that open a fetched batch's sealed records (``sealed``: their key ids,
    ``intake.sealed_ids``) and, when some must be read (``KEYS_FOR_OPENING``), which of the
    messages its headers name (``messages_named``) are stored already, in the same query:
    the keys, the messages checked, and the stored ones' ids. The messages not checked here
    are checked by ``before_applying``; with every key held (spares are read ahead), that
    is the batch's only read."""
    found, missing = keys.cached_for_opening(
        key_id for key_ids in sealed.values() for key_id in key_ids if key_id is not None
    )
    if not missing:
        return found, set(), set()
    named = messages_named(fetched, inbound)
    rows = await pool.fetch(_KEYS_AND_STORED, *keys.opening_arguments(missing), json_rows(named))
    found.update(keys.keep_for_opening(row for row in rows if row["key_id"] is not None))
    stored = {row["message_id"] for row in rows if row["key_id"] is None}
    return found, set(named), stored


_STORED_AND_CUSTOMERS = f"""
SELECT message_id, NULL::bytea AS customers FROM ({_STORED.format(pairs=rows_of(1, "d, id"))}) s
UNION ALL
SELECT NULL, {_CUSTOMERS.format(named=rows_of(2, "domain, identity"))}
"""  # noqa: S608 -- fixed text


async def before_applying(
    pool: asyncpg.Pool | HeldConnection,
    messages: list[tuple[str, str]],
    identities: list[tuple[str, str]],
) -> tuple[set[str], list[StoredCustomer]]:
    """What a batch reads before the engine applies it, in one query: which of
    ``messages`` are stored already (provider retries) and the stored profiles of the
    identities it names that are not in memory (``load_customers``)."""
    async with pool.acquire() as conn:
        if not identities:
            return await known_message_ids(conn, messages), []
        if not messages:
            return set(), await load_customers(conn, identities)
        rows = await conn.fetch(_STORED_AND_CUSTOMERS, json_rows(messages), json_rows(identities))
    stored = {row["message_id"] for row in rows if row["customers"] is None}
    customers = next(row["customers"] for row in rows if row["customers"] is not None)
    return stored, _STORED_CUSTOMERS.decode(customers)
