"""``router.shell.store.write_batch`` against PostgreSQL: a batch's rows land in one
transaction (most of them as the parts of one joined statement), the outbox rows come back
in commit order, acknowledged rows are deleted, a conversation's activity is written
alone and read back merged, a router whose partition another router took writes
nothing at all (fencing), and a takeover restores what was written, page by page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import asyncpg
import msgspec
import pytest

from router.engine import (
    ConversationRecord,
    DomainPolicy,
    DomainState,
    EngineInput,
    apply,
    conversation_record,
    identity_links,
    new_state,
    snapshot,
)
from router.shell import reads, recovery, store
from router.shell.reads import read_open_conversations
from runtime.db import JoinedStatement
from schemas import AgentReplied, Channel, ConversationCloseRequested, Presence, RoutingEvent
from tests.engine.builders import DOMAIN, T0, linked, message, presence, registered
from tests.shell.test_intake import collecting_intake

pytestmark = pytest.mark.integration

GROUP = "routers"
INBOUND = "in"


class Batch:
    """Engine effects collected into one batch's writes, as the worker does."""

    def __init__(self, state: DomainState) -> None:
        self.intake = collecting_intake()
        self.state = state
        self.writes = store.BatchWrites()
        self.emitted: list[RoutingEvent] = []

    def apply(self, event: EngineInput, now: float = T0) -> None:
        effects = apply(self.state, event, now)
        self.intake._collect(0, self.state, effects, self.writes, self.emitted, now)


def ann_replied(conversation_id: str, at: float) -> AgentReplied:
    return AgentReplied(
        id="reply-1",
        domain=DOMAIN,
        occurred_at=at,
        agent_id="ann",
        conversation_id=conversation_id,
        outbound_id="out-1",
        channel=Channel.SMS,
    )


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    tables = ("agents", "conversations", "customers", "assignments", "messages", "outbox")
    found = {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in tables}  # noqa: S608
    found["offsets"] = await conn.fetchval("SELECT count(*) FROM router_offsets")
    return found


async def test_a_batch_lands_whole_and_its_outbox_rows_come_back_in_commit_order(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        leases = await store.acquire_leases(conn, GROUP, [0, 1], "me")
        batch = Batch(new_state(DOMAIN, DomainPolicy()))
        batch.apply(registered("ann", capacity={Channel.SMS: 5}))
        batch.apply(presence("ann", Presence.ONLINE))
        for n in range(3):
            batch.apply(message(f"k{n}", customer=f"c{n}"))
        batch.writes.offsets[(INBOUND, 0)] = 42
        batch.writes.outbox.setdefault(1, []).extend(batch.writes.outbox.get(0, [])[:1])
        outbox = await store.write_batch(conn, GROUP, leases, batch.writes)

        assert await counts(conn) == {
            "agents": 1,
            "conversations": 3,
            "customers": 3,
            "assignments": 3,
            "messages": 3,
            "outbox": 2,
            "offsets": 1,
        }
        assert [row.partition for row in outbox] == [0, 1]
        assert outbox[0].seq < outbox[1].seq
        assert outbox[0].events == batch.writes.outbox[0]
        stored = await conn.fetch(
            "SELECT message_id, conversation_id, direction, channel, text, occurred_at"
            " FROM messages ORDER BY message_id"
        )
        for row, (sent, conversation_id) in zip(
            stored, sorted(batch.writes.messages, key=lambda m: m[0].id), strict=True
        ):
            assert (row["message_id"], row["conversation_id"]) == (sent.id, conversation_id)
            assert (row["direction"], row["channel"], row["text"]) == ("inbound", "sms", sent.text)
            assert row["occurred_at"].timestamp() == sent.occurred_at
        assert await conn.fetchval("SELECT next_offset FROM router_offsets") == 42

        # The next batch deletes the rows the broker acknowledged, moves the offset on.
        later = store.BatchWrites(published=[row.seq for row in outbox], offsets={(INBOUND, 0): 43})
        assert await store.write_batch(conn, GROUP, leases, later) == []
        assert (await counts(conn))["outbox"] == 0
        assert await conn.fetchval("SELECT next_offset FROM router_offsets") == 43
    finally:
        await conn.close()


async def test_a_message_that_changes_only_the_activity_writes_only_it(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            leases = await store.acquire_leases(conn, GROUP, [0], "me")
            state = new_state(DOMAIN, DomainPolicy())
            opening = Batch(state)
            opening.apply(registered("ann", capacity={Channel.SMS: 5}))
            opening.apply(presence("ann", Presence.ONLINE))
            opening.apply(message("k", customer="c"))
            opening.apply(message("other", customer="d"))
            await store.write_batch(conn, GROUP, leases, opening.writes)
            first, other = (state.by_key[k].conversation_id for k in ("k", "other"))
            query = (
                "SELECT c.record::text AS record, a.activity::text AS activity,"
                " switchboard_conversation_record(c)::text AS current"
                " FROM conversations c LEFT JOIN conversation_activity a"
                " USING (domain, conversation_id) WHERE c.conversation_id = $1"
            )
            before = await conn.fetchrow(query, first)
            assert before["activity"] is None

            # The owner is online: the fast path, which saves the activity alone.
            follow = Batch(state)
            follow.apply(message("k", customer="c", reply_window_ends_at=T0 + 86_400), T0 + 30)
            assert not follow.writes.conversations
            assert list(follow.writes.activities) == [(DOMAIN, first)]
            await store.write_batch(conn, GROUP, leases, follow.writes)
            after = await conn.fetchrow(query, first)
            assert after["record"] == before["record"]  # the record stays as it was
            assert after["activity"] is not None
            expected = conversation_record(state.conversations[first])
            assert expected.message_count == 2
            assert expected.last_customer_message_at == T0 + 30
            assert expected.reply_window_ends_at == T0 + 86_400
            decode = msgspec.json.Decoder(ConversationRecord).decode
            assert decode(after["current"]) == expected  # PostgreSQL's merge, for readers

            # A takeover restores the current records (the router merges them itself).
            loaded = await open_records(pool)
            assert loaded[first] == expected
            assert loaded[other] == conversation_record(state.conversations[other])

            # A whole record saved since, without a customer message in between (a note
            # of the agent's last reply): it is the later, and the activity row stays.
            reply = Batch(state)
            reply.apply(ann_replied(first, T0 + 40), T0 + 40)
            assert (DOMAIN, first) in reply.writes.conversations
            await store.write_batch(conn, GROUP, leases, reply.writes)
            replied = await conn.fetchrow(query, first)
            assert replied["activity"] == after["activity"]
            whole = decode(replied["current"])
            assert (
                whole
                == decode(replied["record"])
                == conversation_record(state.conversations[first])
            )
            assert (whole.message_count, whole.last_agent_reply_at) == (2, T0 + 40)
            loaded = await open_records(pool)
            assert loaded[first] == whole

            # Closing it deletes its activity row.
            closing = Batch(state)
            closing.apply(
                ConversationCloseRequested(
                    id="close-1", domain=DOMAIN, occurred_at=T0 + 60, conversation_id=first
                ),
                T0 + 60,
            )
            await store.write_batch(conn, GROUP, leases, closing.writes)
            closed = await conn.fetchrow(query, first)
            assert closed["activity"] is None
            whole = decode(closed["current"])
            assert (whole.status, whole.message_count) == ("closed", 2)
            assert decode(closed["record"]) == whole

            # Deleting a conversation (erasure, retention) deletes its activity.
            again = Batch(state)
            again.apply(message("other", customer="d"), T0 + 90)
            await store.write_batch(conn, GROUP, leases, again.writes)
            assert await conn.fetchval("SELECT count(*) FROM conversation_activity") == 1
            await conn.execute("DELETE FROM conversations WHERE conversation_id = $1", other)
            assert await conn.fetchval("SELECT count(*) FROM conversation_activity") == 0
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("held", "renewed", "lost"),
    [
        ([], [], None),
        ([0, 1, 2], [2, 0, 1], None),
        ([3], [3, 4], None),
        ([2, 0, 1], [1], "0,2"),
        ([5], [], "5"),
    ],
)
async def test_the_fence_fails_with_the_partitions_lost_in_order(
    database_url: str, held: list[int], renewed: list[int], lost: str | None
) -> None:
    """``switchboard_fence`` (migrations 0024, 0028): 0 when every partition held was
    renewed, else error SB001 whose detail lists the lost ones in order."""
    conn = await asyncpg.connect(database_url)
    try:
        call = "SELECT switchboard_fence($1::int[], $2::int[])"
        if lost is None:
            assert await conn.fetchval(call, held, renewed) == 0
        else:
            with pytest.raises(asyncpg.PostgresError) as failed:
                await conn.fetchval(call, held, renewed)
            assert failed.value.sqlstate == "SB001"
            assert failed.value.detail == lost
    finally:
        await conn.close()


@pytest.mark.parametrize("with_read_receipt", [True, False], ids=["transaction", "one statement"])
async def test_a_router_whose_partition_was_taken_writes_nothing(
    database_url: str, with_read_receipt: bool
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        mine = await store.acquire_leases(conn, GROUP, [0, 1, 2], "me")
        before = await counts(conn)
        await store.acquire_leases(conn, GROUP, [1], "another router")
        batch = Batch(new_state(DOMAIN, DomainPolicy()))
        batch.apply(registered("ann", capacity={Channel.SMS: 5}))
        batch.apply(presence("ann", Presence.ONLINE))
        batch.apply(message("k", customer="c"))
        batch.writes.offsets[(INBOUND, 1)] = 7
        if with_read_receipt:  # a statement of its own: the batch needs a transaction
            batch.writes.note_read_through((DOMAIN, "conversation"), T0)
        assert batch.writes.needs_transaction() == with_read_receipt
        with pytest.raises(store.FencedOut) as fenced:
            await store.write_batch(conn, GROUP, mine, batch.writes)
        assert fenced.value.partitions == [1]
        assert await counts(conn) == before
        assert not conn.is_in_transaction()
    finally:
        await conn.close()


async def test_joined_parts_keep_their_own_parameters_and_return_tagged_rows(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE TABLE pairs (k text PRIMARY KEY, v int)")
        joined = JoinedStatement()
        joined.add(
            "first",
            "INSERT INTO pairs SELECT * FROM unnest($1::text[], $2::int[]) RETURNING k, v",
            ["a", "b"],
            [1, 2],
            returning="k, v",
        )
        joined.add("second", "INSERT INTO pairs VALUES ($1, $2)", "c", 3)
        joined.add("third", "DELETE FROM pairs WHERE k = $1 RETURNING k, v", "z", returning="k, v")
        assert sorted(await joined.run(conn)) == [("first", "a", 1), ("first", "b", 2)]
        assert dict(await conn.fetch("SELECT k, v FROM pairs")) == {"a": 1, "b": 2, "c": 3}
        assert await JoinedStatement().run(conn) == []
    finally:
        await conn.close()


async def test_folding_puts_each_later_activity_into_its_record_and_drops_the_rows(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        leases = await store.acquire_leases(conn, GROUP, [0], "me")
        states = {name: new_state(name, DomainPolicy()) for name in (DOMAIN, "other")}
        for name, state in states.items():
            opening = Batch(state)
            for event in (
                registered("ann", capacity={Channel.SMS: 5}),
                presence("ann", Presence.ONLINE),
                message("k", customer="c"),
                message("j", customer="d"),
            ):
                opening.apply(msgspec.structs.replace(event, domain=name))
            await store.write_batch(conn, GROUP, leases, opening.writes)
            follow = Batch(state)
            for key, customer in (("k", "c"), ("j", "d")):
                later = msgspec.structs.replace(message(key, customer=customer), domain=name)
                follow.apply(later, T0 + 30)
            assert len(follow.writes.activities) == 2
            await store.write_batch(conn, GROUP, leases, follow.writes)
        # j's record is saved again after its activity (the agent's reply): it is the later.
        state = states[DOMAIN]
        replied = state.by_key["j"].conversation_id
        reply = Batch(state)
        reply.apply(ann_replied(replied, T0 + 40), T0 + 40)
        await store.write_batch(conn, GROUP, leases, reply.writes)
        query = (
            "SELECT c.domain, c.conversation_id, c.record::text AS record,"
            " switchboard_conversation_record(c)::text AS current, a.activity IS NOT NULL AS alone"
            " FROM conversations c LEFT JOIN conversation_activity a"
            " USING (domain, conversation_id)"
        )
        before = {(r["domain"], r["conversation_id"]): r for r in await conn.fetch(query)}

        assert await recovery.fold_activities(conn, [DOMAIN]) == 1  # k's; j's record is later

        after = {(r["domain"], r["conversation_id"]): r for r in await conn.fetch(query)}
        decode = msgspec.json.Decoder(ConversationRecord).decode
        for key, row in after.items():
            # What readers see does not change; in the domain folded, the record alone says it.
            assert decode(row["current"]) == decode(before[key]["current"])
            if key[0] == DOMAIN:
                assert not row["alone"]
                assert decode(row["record"]) == decode(row["current"])
                expected = conversation_record(state.conversations[key[1]])
                assert decode(row["record"]) == expected
            else:
                assert row["alone"]
                assert row["record"] == before[key]["record"]
        assert decode(after[(DOMAIN, replied)]["record"]).last_agent_reply_at == T0 + 40
        assert await recovery.fold_activities(conn, [DOMAIN]) == 0
    finally:
        await conn.close()


async def open_records(pool: asyncpg.Pool) -> dict[str, ConversationRecord]:
    """The open conversations' records as a takeover reads them."""
    loaded: dict[str, ConversationRecord] = {}

    async def take(domain: str, records: Iterable[ConversationRecord]) -> None:
        assert domain == DOMAIN
        loaded.update((record.conversation_id, record) for record in records)

    async with pool.acquire() as conn:
        await read_open_conversations(conn, [DOMAIN], take)
    return loaded


async def test_a_takeover_restores_each_domain_as_it_was_from_pages_as_they_arrive(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of three conversations, one read ahead, over one connection: the conversations
    # stream in several parts, and the customers can only be read after the last of them.
    monkeypatch.setattr(reads, "LOAD_PAGE", 3)
    monkeypatch.setattr(reads, "PAGES_AHEAD", 1)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        state = new_state(DOMAIN, DomainPolicy())
        batch = Batch(state)
        batch.apply(registered("ann", capacity={Channel.SMS: 4}))
        batch.apply(presence("ann", Presence.ONLINE))
        for n in range(8):  # four assigned to ann, four waiting
            batch.apply(message(f"k{n}", customer=f"c{n}"), T0 + n)
        for customer, identity in (
            ("c1", "email:one"),
            ("c1", "tel:+15550001"),
            ("c6", "x:6"),
            ("c7", "x:7"),
        ):
            batch.apply(linked(customer, identity), T0 + 10)
        assert len(identity_links(state)) == 4
        follow = Batch(state)
        for n in range(0, 8, 2):  # activity rows beside some of the records
            follow.apply(message(f"k{n}", customer=f"c{n}", message_id=f"again-{n}"), T0 + 20 + n)
        assert follow.writes.activities
        async with pool.acquire() as conn:
            leases = await store.acquire_leases(conn, GROUP, [0], "me")
            await store.write_batch(conn, GROUP, leases, batch.writes)
            await store.write_batch(conn, GROUP, leases, follow.writes)
            # A profile with links and no record of its own (``remember``): c7's record
            # holds nothing but its id, so the restore must bring the same profile back.
            deleted = "DELETE FROM customers WHERE domain = $1 AND customer_id = 'c7'"
            assert await conn.execute(deleted, DOMAIN) == "DELETE 1"

        restored = await reads.restore_domains(
            pool, [DOMAIN, "quiet"], {DOMAIN: DomainPolicy(), "quiet": DomainPolicy()}
        )

        assert snapshot(restored[DOMAIN]) == snapshot(state)
        assert identity_links(restored[DOMAIN]) == identity_links(state)
        assert snapshot(restored["quiet"]) == ([], [], [])
        # and it decides as the live state does
        ann_leaves = presence("ann", Presence.OFFLINE)
        assert apply(restored[DOMAIN], ann_leaves, T0 + 60) == apply(state, ann_leaves, T0 + 60)
        assert pool.get_idle_size() == 1
    finally:
        await pool.close()


async def test_a_read_that_fails_fails_the_takeover_and_leaves_no_reader_behind(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=3, max_size=3)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await conn.execute("ALTER TABLE customer_identities RENAME TO gone")
        running = asyncio.all_tasks()
        with pytest.raises(asyncpg.UndefinedTableError):
            await reads.restore_domains(pool, [DOMAIN], {DOMAIN: DomainPolicy()})
        assert asyncio.all_tasks() <= running
        assert pool.get_idle_size() == 3
    finally:
        await pool.close()
