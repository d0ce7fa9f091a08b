"""Records about a customer sealed on the topics (``runtime.sealing``): what is sealed and
under whose key, that a sealed record opens with its key only, the router's intake
setting aside what no key opens, and the ``topic_keys`` table (one key per subject and
day whoever asks first, spare keys through an outage of PostgreSQL, keys gone after
erasure's delay or the topics' retention)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import asyncpg
import msgspec
import msgspec.inspect as mi
import pytest
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from router.shell.intake import sealed_ids
from router.shell.outbox import sealed as outbox_sealed
from router.shell.outbox import sealing_subjects
from router.shell.reads import before_applying, before_decoding
from router.shell.store import OutboxEvent
from runtime import sealing as sealing_module
from runtime.db import DATABASE_ERRORS
from runtime.sealing import (
    AHEAD_KEYS,
    CIPHERS_KEPT,
    NONCE_BYTES,
    PERSONAL_TYPES,
    SEALED_WITH,
    SECONDS_PER_PERIOD,
    SPARE_KEYS,
    SealingKey,
    TopicKeys,
    Unreadable,
    conversation_subject,
    fresh_nonces,
    open_value,
    seal,
    sealed_with,
    sealing_subject,
    sent_subject,
    subject_digest,
    sweep,
    thread_subject,
)
from schemas import topics
from schemas.agents import AgentRegistered, PresenceChanged
from schemas.inbound import DeliveryStatus, DeliveryStatusChanged, MessageReceived
from schemas.outbound import ReplyRequested
from schemas.routing import BotTurn, ConversationAssigned, CustomerErased, MessageRouted
from tests.engine.builders import DOMAIN, T0, message
from tests.shell.test_intake import applied, dead, new_intake, record, run
from tests.support import CuttableProxy, wait_until


def a_key() -> SealingKey:
    return SealingKey(uuid.uuid4().bytes, AESGCM.generate_key(bit_length=256))


# -- what is sealed, under whose key ------------------------------------------------------


def test_the_events_holding_a_customers_data_are_sealed_and_the_others_not() -> None:
    for sealed in (MessageReceived, DeliveryStatusChanged, ReplyRequested, BotTurn, MessageRouted):
        assert sealed in PERSONAL_TYPES, sealed
    for plain in (AgentRegistered, PresenceChanged, CustomerErased):
        assert plain not in PERSONAL_TYPES, plain


def _required(cls: type) -> set[str]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return {field.name for field in info.fields if field.required}


def test_every_sealed_event_names_whose_key_seals_it() -> None:
    """A sealed type names a customer, a conversation or a sent message on every record:
    never none, so never a key that no erasure finds."""
    for cls in PERSONAL_TYPES:
        names = _required(cls)
        assert names & {"customer_id", "conversation_id", "provider_message_id"}, cls.__name__


def test_a_record_is_sealed_for_its_customer_else_its_conversation_else_its_thread() -> None:
    received = message("k1", customer="sms:+14155550100")
    assert sealing_subject(received) == "sms:+14155550100"
    reply = ReplyRequested(
        id="r1",
        domain=DOMAIN,
        occurred_at=T0,
        conversation_id="c1",
        agent_id="ann",
        channel=received.channel,
        endpoint=received.endpoint,
        customer_address=received.customer_address,
        text="hello",
    )
    assert sealing_subject(reply) == conversation_subject("c1") == "conversation:c1"
    status = DeliveryStatusChanged(
        id="s1",
        domain=DOMAIN,
        occurred_at=T0,
        channel=received.channel,
        provider_message_id="SM1",
        status=DeliveryStatus.DELIVERED,
    )
    assert sealing_subject(status) == sent_subject("SM1")
    read = msgspec.structs.replace(status, provider_message_id="", conversation_key="k1")
    assert sealing_subject(read) == thread_subject("k1")
    erased = CustomerErased(id="e1", domain=DOMAIN, occurred_at=T0, erasure_id="x", identities=1)
    assert sealing_subject(erased) is None


# -- seal and open --------------------------------------------------------------------------


@given(st.binary(max_size=4096))
def test_a_sealed_value_opens_with_its_key_to_what_was_sealed(value: bytes) -> None:
    key = a_key()
    sealed = seal(key, value)
    assert len(value) < 8 or value not in sealed
    assert open_value(sealed, key.key_id, {key.key_id: key}) == value


def test_the_seals_of_one_batch_each_have_a_nonce_of_their_own() -> None:
    key = a_key()
    nonces = fresh_nonces(500)
    assert len(nonces) == 500
    assert {len(nonce) for nonce in nonces} == {NONCE_BYTES}
    assert len(set(nonces)) == 500
    sealed = [seal(key, b"same words", nonce) for nonce in nonces]
    assert [value[:NONCE_BYTES] for value in sealed] == nonces
    assert {open_value(value, key.key_id, {key.key_id: key}) for value in sealed} == {b"same words"}
    assert fresh_nonces(0) == []


async def test_keys_are_held_while_they_are_used_and_let_go_once_expired() -> None:
    """Each key held costs kilobytes: a process holds the keys used within
    ``cache_seconds``, not every key it used since it started (up to ``cache_size``)."""
    now = [T0]
    keys = TopicKeys(cast(asyncpg.Pool, None), cache_seconds=60, clock=lambda: now[0])

    def read(count: int) -> list[bytes]:
        rows = [
            {
                "key_id": uuid.uuid4(),
                "key": AESGCM.generate_key(bit_length=256),
                "domain": DOMAIN,
                "subject": subject_digest(f"phone:+1415555{n:04d}"),
                "period": int(T0 // SECONDS_PER_PERIOD),
                "created_at": None,
            }
            for n in range(count)
        ]
        return list(keys.keep_for_opening(rows))

    first = read(100)
    now[0] += 30
    second = read(100)
    # The key that opened a customer's record seals for them too: an entry in each cache.
    keys.sealing_too([(DOMAIN, "phone:+14155550000", second[0])])
    sealing = await keys.for_sealing([(DOMAIN, "phone:+14155550000")])  # no query: no pool
    assert sealing[(DOMAIN, "phone:+14155550000")].key_id == second[0]
    assert keys.cached == 201
    # The first hundred have expired: one asked for is not found (it is read again), and
    # the next keys kept let the others go.
    now[0] += 31
    assert keys.cached_for_opening(first[:1])[0] == {}
    third = read(10)
    assert keys.cached == 111
    found, missing = keys.cached_for_opening([*second, *third])
    assert (set(found), missing) == ({*second, *third}, [])
    # Nothing is kept beyond ``cache_size`` either, expired or not.
    bounded = TopicKeys(cast(asyncpg.Pool, None), cache_size=5, clock=lambda: T0)
    bounded.keep_for_opening(
        {
            "key_id": uuid.uuid4(),
            "key": AESGCM.generate_key(bit_length=256),
            "domain": None,
            "subject": None,
            "period": None,
            "created_at": None,
        }
        for _ in range(8)
    )
    assert bounded.cached == 5


def test_a_key_whose_cipher_was_let_go_makes_it_again() -> None:
    """A process keeps the ciphers of its last ``CIPHERS_KEPT`` keys made, not of every key
    it caches: the first of more keys than that still seals and opens, with the same result."""
    first = a_key()
    sealed = seal(first, b"where is my parcel?")
    others = [a_key() for _ in range(CIPHERS_KEPT)]
    for key in others:
        seal(key, b"x")
    assert len(sealing_module._with_ciphers) == CIPHERS_KEPT
    assert first not in sealing_module._with_ciphers
    assert open_value(sealed, first.key_id, {first.key_id: first}) == b"where is my parcel?"
    assert open_value(seal(first, b"again"), first.key_id, {first.key_id: first}) == b"again"


def test_a_plain_value_is_read_as_it_is() -> None:
    assert open_value(b'{"a":1}', None, {}) == b'{"a":1}'


def test_a_sealed_value_does_not_open_without_its_key_or_changed() -> None:
    key, other = a_key(), a_key()
    sealed = seal(key, b"my order has not arrived")
    headers = [(SEALED_WITH, key.key_id)]
    with pytest.raises(Unreadable, match="customer was erased"):
        open_value(sealed, sealed_with(headers), {})
    with pytest.raises(Unreadable, match="do not open"):
        open_value(sealed[:-1] + bytes([sealed[-1] ^ 1]), sealed_with(headers), {key.key_id: key})
    with pytest.raises(Unreadable, match="do not open"):
        # another key under this key's id: the id is bound into every seal
        open_value(
            sealed, sealed_with(headers), {key.key_id: SealingKey(key.key_id, other.material)}
        )
    with pytest.raises(Unreadable):
        open_value(b"short", sealed_with(headers), {key.key_id: key})


# -- the router's intake --------------------------------------------------------------------


def test_the_intake_applies_sealed_records_and_sets_aside_those_no_key_opens() -> None:
    key, gone = a_key(), a_key()
    first, second, third = message("k1"), message("k2"), message("k3")
    records = [
        record(seal(key, msgspec.json.encode(first)), 0, headers=((SEALED_WITH, key.key_id),)),
        record(seal(gone, msgspec.json.encode(second)), 1, headers=((SEALED_WITH, gone.key_id),)),
        record(third, 2),
    ]
    intake = new_intake()
    batch = intake.decode(
        {(topics.INBOUND, 0): records},  # type: ignore[dict-item]
        {key.key_id: key},
    )
    assert applied(batch) == [0, 2]
    # The key that opened the first is named for its subject; the plain third names none.
    assert batch.opened_with == [(first.domain, first.customer_id, key.key_id)]
    [(offset, reason)] = dead(batch)
    assert offset == 1
    assert reason == "sealed with a key that is gone (its customer was erased)"
    # set aside as it came: sealed, with its header
    [copy] = [e for e in batch.writes.outbox[0] if e.topic == topics.DLQ]
    assert copy.value == records[1].value
    assert (SEALED_WITH, gone.key_id) in copy.headers


def test_records_read_again_are_dropped_and_the_rest_open_with_their_own_keys() -> None:
    """A fetch that raced with a reload hands back records applied already: the key ids
    read from the fetch's headers (``sealed_ids``) follow the records that stay."""
    keys = [a_key() for _ in range(4)]
    events = [message(f"k{i}", customer=f"sms:+1415555010{i}") for i in range(4)]
    records = [
        record(seal(key, msgspec.json.encode(event)), i, headers=((SEALED_WITH, key.key_id),))
        for i, (key, event) in enumerate(zip(keys, events, strict=True))
    ]
    fetched = {(topics.INBOUND, 0): records}
    batch = new_intake(expected=2).decode(
        fetched,  # type: ignore[arg-type]
        {key.key_id: key for key in keys},
        sealed_ids(fetched),  # type: ignore[arg-type]
    )
    assert applied(batch) == [2, 3]
    assert batch.opened_with == [
        (event.domain, event.customer_id, key.key_id)
        for key, event in zip(keys[2:], events[2:], strict=True)
    ]
    assert dead(batch) == []


def test_the_intakes_events_name_whose_key_seals_them_on_publication() -> None:
    batch = run(new_intake(), [record(message("k1", customer="sms:+14155550100"), 0)])
    routed = [e for e in batch.writes.outbox[0] if e.topic == topics.ROUTING]
    assert routed
    assert {e.seal for e in routed} == {"sms:+14155550100"}
    tag = str(ConversationAssigned.__struct_config__.tag).encode()
    assert [e for e in routed if dict(e.headers)["ce_type"] == tag]


# -- the keys' table ------------------------------------------------------------------------


async def test_one_key_per_subject_and_day_whoever_asks_first(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    try:
        now = [T0]
        first = TopicKeys(pool, clock=lambda: now[0])
        others = [TopicKeys(pool, clock=lambda: T0) for _ in range(3)]
        wanted = [(DOMAIN, "sms:+14155550100"), (DOMAIN, conversation_subject("c1"))]
        wanted += [(DOMAIN, f"email:p{n}@example.org") for n in range(50)]
        one, *rest = await asyncio.gather(
            first.for_sealing(wanted), *(other.for_sealing(wanted[::-1]) for other in others)
        )
        for answer in rest:
            assert {n: k.key_id for n, k in answer.items()} == {n: k.key_id for n, k in one.items()}
        assert len({k.key_id for k in one.values()}) == len(wanted)
        rows = await pool.fetch("SELECT subject, domain FROM topic_keys")
        assert {row["subject"] for row in rows} >= {subject_digest(s) for _, s in wanted}
        assert all(b"+1415" not in row["subject"] for row in rows)

        # the same process, the next day: a new key; the old one still opens
        now[0] = T0 + SECONDS_PER_PERIOD
        tomorrow = await first.for_sealing(wanted[:1])
        assert tomorrow[wanted[0]].key_id != one[wanted[0]].key_id
        fresh = TopicKeys(pool)
        opened = await fresh.for_opening([one[wanted[0]].key_id, tomorrow[wanted[0]].key_id])
        assert len(opened) == 2

        # a key deleted opens nothing in a process that did not hold it, and nothing once
        # a process that held it forgets
        await pool.execute(
            "DELETE FROM topic_keys WHERE key_id = $1", uuid.UUID(bytes=one[wanted[0]].key_id)
        )
        assert await TopicKeys(pool).for_opening([one[wanted[0]].key_id]) == {}
        assert await fresh.for_opening([one[wanted[0]].key_id]) != {}
        fresh.forget()
        assert await fresh.for_opening([one[wanted[0]].key_id]) == {}
        assert await fresh.for_opening([b"not an id"]) == {}
    finally:
        await pool.close()


class CountingPool:
    """A pool that counts the queries ``TopicKeys`` sends through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.queries = 0
        self.namings = 0
        self.arguments: tuple[Any, ...] = ()
        """The last query's."""
        self.sent = asyncio.Event()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.queries += 1
        self.arguments = args
        self.sent.set()
        return await self.pool.fetch(query, *args)

    @contextlib.asynccontextmanager
    async def acquire(self, *, timeout: float | None = None) -> AsyncIterator[Any]:
        """A connection whose ``fetch`` is counted as the pool's (the keys' own query)."""
        async with self.pool.acquire(timeout=timeout) as conn:
            counting = self

            class Counted:
                async def fetch(self, query: str, *args: Any, timeout: float | None) -> Any:
                    counting.queries += 1
                    counting.arguments = args
                    counting.sent.set()
                    return await conn.fetch(query, *args, timeout=timeout)

            yield Counted()

    async def execute(self, query: str, *args: Any) -> str:
        """Stocking and naming spares: not counted as queries; namings counted apart."""
        if query.lstrip().startswith("UPDATE"):
            self.namings += 1
        return await self.pool.execute(query, *args)


class CountingConnections:
    """A pool whose connections count the statements sent through them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self.pool.acquire() as conn:
            yield self._counted(conn)

    def _counted(self, conn: asyncpg.Connection) -> Any:
        counting = self

        class Counted:
            async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
                counting.statements += 1
                return await conn.fetch(query, *args)

            async def fetchval(self, query: str, *args: Any) -> Any:
                counting.statements += 1
                return await conn.fetchval(query, *args)

        return Counted()


async def test_webhooks_asking_at_once_for_new_subjects_share_one_query(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        counting = CountingPool(pool)
        keys = TopicKeys(cast(asyncpg.Pool, counting))
        first = [(DOMAIN, f"sms:+1415555{n:04d}") for n in range(30)]
        second = [(DOMAIN, f"sms:+1415666{n:04d}") for n in range(30)]
        asking = [asyncio.create_task(keys.for_sealing([name])) for name in first]
        await counting.sent.wait()
        # Asked while the first query is in flight: they wait for it and share the next.
        asking += [asyncio.create_task(keys.for_sealing([name])) for name in second]
        answers = await asyncio.gather(*asking)
        assert counting.queries == 2
        stored = {
            row["subject"]: row["key_id"].bytes
            for row in await pool.fetch("SELECT subject, key_id FROM topic_keys")
        }
        for name, answer in zip(first + second, answers, strict=True):
            assert list(answer) == [name]
            assert answer[name].key_id == stored[subject_digest(name[1])]
        # Known now: no query at all.
        assert await keys.for_sealing(first[:3] + second[-3:]) == {
            name: answer[name]
            for name, answer in zip(first + second, answers, strict=True)
            if name in first[:3] + second[-3:]
        }
        assert counting.queries == 2
    finally:
        await pool.close()


async def test_a_key_that_opened_a_subjects_record_today_seals_for_it_with_no_query(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        customer, other = (DOMAIN, "sms:+14155550100"), (DOMAIN, "sms:+14155550199")
        made = await TopicKeys(pool, clock=lambda: T0).for_sealing([customer, other])
        key_id = made[customer].key_id
        counting = CountingPool(pool)
        reader = TopicKeys(cast(asyncpg.Pool, counting), clock=lambda: T0)
        assert set(await reader.for_opening([key_id])) == {key_id}
        assert counting.queries == 1
        reader.sealing_too([(*customer, key_id), (*other, key_id)])
        sealing = await reader.for_sealing([customer])
        assert sealing[customer].key_id == key_id
        assert counting.queries == 1
        # Named for another subject: not that one's key, which is asked for.
        assert (await reader.for_sealing([other]))[other].key_id == made[other].key_id
        assert counting.queries == 2
        # Tomorrow the subject has a key of its own: yesterday's is not taken.
        tomorrow = TopicKeys(pool, clock=lambda: T0 + SECONDS_PER_PERIOD)
        await tomorrow.for_opening([key_id])
        tomorrow.sealing_too([(*customer, key_id)])
        assert (await tomorrow.for_sealing([customer]))[customer].key_id != key_id
    finally:
        await pool.close()


async def test_a_spare_read_before_its_producer_named_it_seals_for_its_subject_and_is_named(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that opens a record sealed with a spare its producer has not named yet
    (spares are read ahead) seals its own events for the record's subject with that key,
    and names it as the producer would: one ``topic_keys`` row for the subject, not one
    each, and one an erasure finds should the producer die before naming it. The first
    naming stays; a key an erasure took the subject of is not taken up again."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        producer = TopicKeys(pool, clock=lambda: T0)
        await producer.stock()
        customer, other = (DOMAIN, "sms:+14155550301"), (DOMAIN, "sms:+14155550302")
        key_id = (await producer.for_sealing([customer]))[customer].key_id
        # The reader's next look at its stock is an hour away: it names the key it took up
        # soon after, as a producer names the spares it takes.
        monkeypatch.setattr("runtime.sealing.STOCK_SECONDS", 3600.0)
        reader = TopicKeys(pool, clock=lambda: T0)
        running = asyncio.create_task(reader.run())
        assert key_id in await reader.for_opening([key_id])
        reader.sealing_too([(*customer, key_id)])
        assert (await reader.for_sealing([customer]))[customer].key_id == key_id
        named = "SELECT domain, subject, period FROM topic_keys WHERE key_id = $1"
        period = int(T0 // SECONDS_PER_PERIOD)
        expected = (DOMAIN, subject_digest(customer[1]), period)

        async def reader_named_it() -> bool:
            row = await pool.fetchrow(named, uuid.UUID(bytes=key_id))
            return row is not None and tuple(row) == expected

        await wait_until(reader_named_it, what="the key taken up named by the reader")
        assert reader.unnamed == 0
        reader.stop()
        await running
        # One key for the subject, not one each.
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM topic_keys WHERE domain = $1 AND subject = $2",
                DOMAIN,
                subject_digest(customer[1]),
            )
            == 1
        )
        # The producer's naming comes second and changes nothing, whatever it says.
        producer._unnamed[key_id] = (DOMAIN, subject_digest(other[1]), period)
        await producer.stock(refill=False)
        assert tuple(await pool.fetchrow(named, uuid.UUID(bytes=key_id))) == expected

        # Erased: the key keeps its domain and loses its subject; read by id it is no
        # spare waiting for a name, and seals nothing.
        await pool.execute(
            "UPDATE topic_keys SET subject = NULL, shred_at = now() WHERE key_id = $1",
            uuid.UUID(bytes=key_id),
        )
        late = TopicKeys(pool, clock=lambda: T0)
        assert key_id in await late.for_opening([key_id])
        late.sealing_too([(*customer, key_id)])
        assert late.unnamed == 0
        assert (await late.for_sealing([customer]))[customer].key_id != key_id
    finally:
        await pool.close()


async def test_the_router_reads_the_keys_it_lacks_and_the_stored_messages_in_one_query(
    database_url: str,
) -> None:
    """Before decoding a batch, the router asks in one query for the keys of its sealed
    records that it does not hold, the spares stocked since it last asked, and the
    messages its headers name that are stored already (provider retries); nothing when it
    holds every key. A record sealed later with a spare read ahead opens with no query."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        customer = (DOMAIN, "sms:+14155550100")
        key = (await TopicKeys(pool, clock=lambda: T0).for_sealing([customer]))[customer]
        producer = TopicKeys(pool, clock=lambda: T0)
        await producer.stock()
        retried, first = message(message_id="m-retried"), message(message_id="m-first")
        await pool.execute(
            "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
            " occurred_at) VALUES ($1, $2, 'c1', 'inbound', 'sms', now())",
            DOMAIN,
            retried.id,
        )

        def sealed(
            event: MessageReceived, offset: int, *, named: bool = True, by: SealingKey = key
        ) -> Any:
            naming = (("ce_type", b"message.received"), ("ce_id", event.id.encode()))
            headers = (*(naming if named else ()), (SEALED_WITH, by.key_id))
            return record(seal(by, msgspec.json.encode(event)), offset, headers=headers)

        fetched = {TopicPartition(topics.INBOUND, 0): [sealed(retried, 0), sealed(first, 1)]}
        counting = CountingPool(pool)
        reader = TopicKeys(cast(asyncpg.Pool, counting), clock=lambda: T0)
        as_pool = cast(asyncpg.Pool, counting)

        keys, checked, stored = await before_decoding(
            reader, as_pool, fetched, topics.INBOUND, sealed_ids(fetched)
        )
        assert key.key_id in keys
        assert (stored, counting.queries) == ({retried.id}, 1)
        assert checked == {(DOMAIN, retried.id), (DOMAIN, first.id)}
        # Every key held: no query; the messages are left to ``before_applying``.
        assert await before_decoding(
            reader, as_pool, fetched, topics.INBOUND, sealed_ids(fetched)
        ) == (
            {key.key_id: keys[key.key_id]},
            set(),
            set(),
        )
        assert counting.queries == 1
        # The producer's spares came with the first query: what it seals with one opens.
        spare = (await producer.for_sealing([(DOMAIN, "sms:+14155550111")])).popitem()[1]
        later = {TopicPartition(topics.INBOUND, 0): [sealed(first, 2, by=spare)]}
        keys, checked, stored = await before_decoding(
            reader, as_pool, later, topics.INBOUND, sealed_ids(later)
        )
        assert (set(keys), checked, stored, counting.queries) == ({spare.key_id}, set(), set(), 1)
        # Spares stocked since: read along with the next key lacking, not those read before.
        await pool.execute("UPDATE topic_keys SET created_at = now() - interval '30 seconds'")
        restocked = TopicKeys(pool, clock=lambda: T0)
        await restocked.stock()
        # One of them as an erasure leaves a key it shreds later: not read ahead.
        shredding = await pool.fetchval(
            "UPDATE topic_keys SET shred_at = now() + interval '1 hour' WHERE key_id ="
            " (SELECT key_id FROM topic_keys WHERE created_at > now() - interval '10 seconds'"
            " LIMIT 1) RETURNING key_id"
        )
        reader.forget()
        await before_decoding(reader, as_pool, later, topics.INBOUND, sealed_ids(later))
        assert counting.queries == 2
        ages = await pool.fetch(
            "SELECT key_id, created_at > now() - interval '10 seconds' AS new FROM topic_keys WHERE spare"
        )
        held, missing = reader.cached_for_opening(row["key_id"].bytes for row in ages if row["new"])
        assert (len(held), missing) == (SPARE_KEYS + AHEAD_KEYS - 1, [shredding])
        held, _ = reader.cached_for_opening(row["key_id"].bytes for row in ages if not row["new"])
        assert set(held) == {spare.key_id}
    finally:
        await pool.close()


async def test_a_batch_checks_its_stored_messages_and_reads_its_customers_in_one_query(
    database_url: str,
) -> None:
    """``before_applying``: the messages stored already and the stored profiles of the
    identities named, one statement on one connection, whichever of the two is asked."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        stored_message = message(message_id="m-stored")
        await pool.execute(
            "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
            " occurred_at) VALUES ($1, $2, 'c1', 'inbound', 'sms', now())",
            DOMAIN,
            stored_message.id,
        )
        await pool.execute(
            "INSERT INTO customer_identities (domain, identity, customer_id, source, linked_at)"
            " VALUES ($1, 'sms:+14155550100', 'cust-1', 'channel', now())",
            DOMAIN,
        )
        counting = CountingConnections(pool)
        messages = [(DOMAIN, stored_message.id), (DOMAIN, "m-new")]
        identities = [(DOMAIN, "sms:+14155550100"), (DOMAIN, "sms:+14155550199")]
        stored, customers = await before_applying(
            cast(asyncpg.Pool, counting), messages, identities
        )
        assert stored == {stored_message.id}
        assert [(c.customer_id, [link.identity for link in c.links or []]) for c in customers] == [
            ("cust-1", ["sms:+14155550100"])
        ]
        assert counting.statements == 1
        assert await before_applying(cast(asyncpg.Pool, counting), messages, []) == (
            {stored_message.id},
            [],
        )
        only_customers = await before_applying(cast(asyncpg.Pool, counting), [], identities)
        assert (only_customers[0], len(only_customers[1])) == (set(), 1)
        assert counting.statements == 3
    finally:
        await pool.close()


async def test_the_sweep_deletes_shredded_keys_and_keys_older_than_the_topics(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        keys = TopicKeys(pool)
        names = [(DOMAIN, f"sms:+1415555{n:04d}") for n in range(5)]
        made = await keys.for_sealing(names)
        shredded, old, kept_later = (uuid.UUID(bytes=made[n].key_id) for n in names[:3])
        await pool.execute(
            "UPDATE topic_keys SET subject = NULL, shred_at = now() - interval '1 second'"
            " WHERE key_id = $1",
            shredded,
        )
        await pool.execute(
            "UPDATE topic_keys SET subject = NULL, shred_at = now() + interval '1 hour'"
            " WHERE key_id = $1",
            kept_later,
        )
        await pool.execute(
            "UPDATE topic_keys SET created_at = now() - interval '10 days' WHERE key_id = $1", old
        )
        assert await sweep(pool, topic_retention_ms=None) == {DOMAIN: 1}
        assert await sweep(pool, topic_retention_ms=7 * 86_400_000) == {DOMAIN: 1}
        left = {row["key_id"] for row in await pool.fetch("SELECT key_id FROM topic_keys")}
        assert shredded not in left
        assert old not in left
        assert kept_later in left
        assert len(left) == 3
    finally:
        await pool.close()


async def test_a_producer_seals_with_spare_keys_through_an_outage_and_names_them_after(
    database_url: str,
) -> None:
    proxy, proxied = await CuttableProxy.before_database(database_url)
    pool = await asyncpg.create_pool(proxied, min_size=1, max_size=2)
    stocked = SPARE_KEYS + AHEAD_KEYS
    try:
        keys = TopicKeys(pool)
        await keys.stock()
        assert await pool.fetchval("SELECT count(*) FROM topic_keys WHERE spare") == stocked
        proxy.cut()
        wanted = [(DOMAIN, f"sms:+1415555{n:04d}") for n in range(stocked)]
        during = await keys.for_sealing(wanted[:AHEAD_KEYS])  # taken ahead: no query
        during |= await keys.for_sealing(wanted[AHEAD_KEYS:])  # the query fails: the rest
        assert keys.unnamed == stocked
        with pytest.raises(DATABASE_ERRORS):
            await keys.for_sealing([(DOMAIN, "sms:+14155559999")])  # no spare left
        proxy.restore()
        await keys.stock()
        assert keys.unnamed == 0
        named = await pool.fetch(
            "SELECT key_id, subject FROM topic_keys WHERE spare AND domain = $1", DOMAIN
        )
        assert {row["key_id"].bytes: row["subject"] for row in named} == {
            during[name].key_id: subject_digest(name[1]) for name in wanted
        }
        # an erasure finds them by subject; readers open what they sealed
        opened = await TopicKeys(pool).for_opening(k.key_id for k in during.values())
        assert len(opened) == stocked
        # the stock is whole again, and unused spares are swept after a day
        assert (
            await pool.fetchval("SELECT count(*) FROM topic_keys WHERE spare AND domain IS NULL")
            == stocked
        )
        await pool.execute(
            "UPDATE topic_keys SET created_at = now() - interval '2 days'"
            " WHERE spare AND domain IS NULL"
        )
        assert await sweep(pool, topic_retention_ms=None) == {"": stocked}
    finally:
        await pool.close()
        await proxy.stop()


async def test_a_producer_seals_with_a_spare_when_postgresql_stops_answering(
    database_url: str,
) -> None:
    """A server that holds its connections open and answers nothing (stalled, or a lock
    that does not come free) costs a request a few ``QUERY_SECONDS``, then a spare;
    with none left, an error a webhook answers 503 for, not a wait without end."""
    proxy, proxied = await CuttableProxy.before_database(database_url)
    pool = await asyncpg.create_pool(proxied, min_size=2, max_size=2)
    try:
        keys = TopicKeys(pool)
        await keys.stock()
        wanted = [(DOMAIN, f"sms:+1415556{n:04d}") for n in range(SPARE_KEYS + AHEAD_KEYS)]
        await keys.for_sealing(wanted[:AHEAD_KEYS])  # taken ahead: the stock at SPARE_KEYS
        proxy.hang()
        async with asyncio.timeout(8 * sealing_module.QUERY_SECONDS):
            held = await keys.for_sealing(wanted[AHEAD_KEYS:])
            assert len(held) == SPARE_KEYS
            assert keys.unnamed == SPARE_KEYS + AHEAD_KEYS
            with pytest.raises(TimeoutError):
                await keys.for_sealing([(DOMAIN, "sms:+14155569999")])
        proxy.restore()
        await keys.stock()
        assert keys.unnamed == 0
    finally:
        proxy.restore()
        await pool.close()
        await proxy.stop()


async def test_a_producer_seals_for_a_new_subject_with_no_query_and_names_the_key_soon_after(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the reserve kept for outages, a producer seals for a subject it has no key
    for with a spare at once, and names it in the background soon after (not at the next
    look at its stock), those taken meanwhile with it, its age counted from then; the keys
    taken last are named at the stop. Once only the reserve is left, a subject waits for a
    query again."""
    monkeypatch.setattr("runtime.sealing.STOCK_SECONDS", 3600.0)
    monkeypatch.setattr("runtime.sealing.NAME_SECONDS", 1.0)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        counting = CountingPool(pool)
        keys = TopicKeys(cast(asyncpg.Pool, counting))
        await keys.stock()
        await pool.execute("UPDATE topic_keys SET created_at = now() - interval '2 hours'")
        running = asyncio.create_task(keys.run())
        wanted = [(DOMAIN, f"sms:+1415555{n:04d}") for n in range(3)]

        async def named(count: int) -> bool:
            rows = await pool.fetchval(
                "SELECT count(*) FROM topic_keys WHERE spare AND domain = $1"
                " AND created_at > now() - interval '1 hour'",
                DOMAIN,
            )
            return bool(rows == count)

        sealing = await keys.for_sealing(wanted[:1])
        await wait_until(lambda: named(1), what="the first key taken named")
        # Taken one at a time while the producer waits for its next look at the stock, an
        # hour away: named together.
        sealing |= await keys.for_sealing(wanted[1:2])
        await asyncio.sleep(0.1)
        sealing |= await keys.for_sealing(wanted[2:])
        assert counting.queries == 0
        await wait_until(lambda: named(3), what="the keys taken next named")
        assert counting.namings == 2
        stored = await pool.fetch(
            "SELECT key_id, subject FROM topic_keys WHERE spare AND domain = $1", DOMAIN
        )
        assert {row["key_id"].bytes: row["subject"] for row in stored} == {
            sealing[name].key_id: subject_digest(name[1]) for name in wanted
        }
        last = (DOMAIN, "sms:+14155550999")
        await keys.for_sealing([last])
        keys.stop()
        await running
        assert await named(4)
        assert counting.queries == 0

        reserve = TopicKeys(cast(asyncpg.Pool, counting))
        await reserve.stock()
        ahead = [(DOMAIN, f"email:p{n}@example.org") for n in range(AHEAD_KEYS)]
        await reserve.for_sealing(ahead)
        assert counting.queries == 0
        made = await reserve.for_sealing([(DOMAIN, "sms:+14155550777")])
        assert counting.queries == 1
        assert reserve.unnamed == AHEAD_KEYS
        assert made[(DOMAIN, "sms:+14155550777")].key_id not in {
            k.key_id for k in (await reserve.for_sealing(ahead)).values()
        }
    finally:
        await pool.close()


async def test_a_process_that_no_longer_holds_a_subjects_key_seals_with_another(
    database_url: str,
) -> None:
    """The README's *Sealed records on the topics*: a process keeps a key
    ``cache_seconds`` after it made or fetched it; sealing for the subject after that
    takes a spare, a key of its own for the same day, named for the subject as the first
    was (an erasure finds every one)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        now = [T0]
        keys = TopicKeys(pool, cache_seconds=60, clock=lambda: now[0])
        await keys.stock()
        name = (DOMAIN, "sms:+14155550123")
        used = []
        for _ in range(3):
            used.append((await keys.for_sealing([name]))[name].key_id)
            now[0] += 59
            assert (await keys.for_sealing([name]))[name].key_id == used[-1]  # still held
            await keys.stock()  # names the spare taken
            now[0] += 2
        assert len(set(used)) == 3
        named = await pool.fetch(
            "SELECT key_id FROM topic_keys WHERE domain = $1 AND subject = $2",
            DOMAIN,
            subject_digest(name[1]),
        )
        assert {row["key_id"].bytes for row in named} == set(used)
    finally:
        await pool.close()


def test_the_outbox_publishes_sealed_the_events_that_name_a_subject_and_the_rest_as_they_are() -> (
    None
):
    key = a_key()
    named = OutboxEvent(topics.ROUTING, b"acme", b'{"text":"hi"}', (("ce_id", b"1"),), "sms:+1")
    plain = OutboxEvent(topics.DLQ, b"acme", b"raw", (("dlq_reason", b"x"),))
    assert sealing_subjects([named, plain]) == {(b"acme", "sms:+1")}
    sent, same = outbox_sealed([named, plain], {(b"acme", "sms:+1"): key})
    assert same == plain
    assert sent.headers == (("ce_id", b"1"), (SEALED_WITH, key.key_id))
    assert open_value(sent.value, sealed_with(sent.headers), {key.key_id: key}) == b'{"text":"hi"}'
    assert outbox_sealed([plain], {}) == [plain]


def test_the_readme_states_the_stock_of_spare_keys() -> None:
    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    stocked, refilled = SPARE_KEYS + AHEAD_KEYS, SPARE_KEYS + AHEAD_KEYS // 2
    assert f"no subject yet: {stocked}, made again once {refilled} are left" in readme
    assert f"The last {SPARE_KEYS} are kept for an outage of PostgreSQL" in readme
