"""``runtime.db.HeldConnection``: one pooled connection kept between uses, given back when a
use fails, never shared by two uses at once; on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from runtime import db


@contextlib.asynccontextmanager
async def held_from(
    database_url: str, size: int, *, opened: int | None = None
) -> AsyncIterator[tuple[asyncpg.Pool, db.HeldConnection]]:
    """A pool of ``size`` connections (``opened`` of them at once, default all) and a
    ``HeldConnection`` of it; closed at the end, which would wait forever for a
    connection left out."""
    pool = await db.create_pool(
        database_url, min_size=size if opened is None else opened, max_size=size
    )
    held = db.HeldConnection(pool)
    try:
        yield pool, held
    finally:
        await held.release()
        await asyncio.wait_for(pool.close(), 10)


async def backend(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def held_backend(held: db.HeldConnection) -> int:
    async with held.acquire() as conn:
        return await backend(conn)


async def test_uses_one_after_another_keep_one_connection_out_of_the_pool(
    database_url: str,
) -> None:
    async with held_from(database_url, 2) as (pool, held):
        first = await held_backend(held)
        assert pool.get_idle_size() == 1  # kept, not given back
        for _ in range(3):
            async with held.acquire() as conn:
                assert await backend(conn) == first
        assert [row[0] for row in await held.fetch("SELECT 1 UNION ALL SELECT 2")] == [1, 2]
        assert pool.get_idle_size() == 1


async def test_a_use_that_fails_gives_the_connection_back_rolled_back(database_url: str) -> None:
    async with held_from(database_url, 1) as (pool, held):
        await pool.execute("CREATE TABLE held_probe (n int)")

        async def violate() -> None:
            async with held.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO held_probe VALUES (1)")
                await conn.execute("CREATE UNIQUE INDEX ON held_probe (n)")
                await conn.execute("INSERT INTO held_probe VALUES (1)")

        async def fail_in_between() -> None:
            async with held.acquire() as conn:
                assert not conn.is_in_transaction()
                raise RuntimeError("the caller's own error")

        with pytest.raises(asyncpg.UniqueViolationError):
            await violate()
        # Back in the pool (its only connection), and nothing of the transaction stayed.
        assert pool.get_idle_size() == 1
        assert await pool.fetchval("SELECT count(*) FROM held_probe") == 0
        with pytest.raises(RuntimeError):
            await fail_in_between()
        assert pool.get_idle_size() == 1
        async with held.acquire() as conn:
            assert await conn.fetchval("SELECT 41 + 1") == 42


async def wait_until_closed(held: db.HeldConnection) -> None:
    """Until the client has read the server's goodbye (as between two batches)."""
    for _ in range(200):
        try:
            if held._held is None or held._held.is_closed():
                return
        except asyncpg.InterfaceError:  # the pool took its proxy back
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the ended connection still looks open")


async def test_a_connection_the_server_ended_is_replaced_at_the_next_use(
    database_url: str,
) -> None:
    async with held_from(database_url, 3) as (pool, held):
        ended = await held_backend(held)
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", ended)
        await wait_until_closed(held)
        async with held.acquire() as conn:
            assert await backend(conn) != ended
        # Ended while the client does not know yet: the use in flight fails as any database
        # error does (a statement not prepared before meets it as InternalClientError),
        # and a later use takes another connection.
        ended = await held_backend(held)
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", ended)
        for attempt in range(50):
            try:
                pid = int(
                    (await held.fetch(f"SELECT pg_backend_pid() + {attempt} - {attempt}"))[0][0]
                )
            except db.DATABASE_ERRORS:
                continue
            if pid != ended:
                break
        else:
            raise AssertionError("the held connection never came back")
        # Closed without a failed use (the caller closed it): taken anew all the same.
        async with held.acquire() as conn:
            closed = await backend(conn)
            await conn.close()
        async with held.acquire() as conn:
            assert await backend(conn) != closed


async def test_overlapping_uses_never_share_a_connection(database_url: str) -> None:
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def long_use() -> int:
        async with held.acquire() as conn:
            pid = await backend(conn)
            entered.set()
            await leave.wait()
            await conn.fetchval("SELECT pg_sleep(0.05)")
            return pid

    async with held_from(database_url, 3) as (pool, held):
        task = asyncio.create_task(long_use())
        await entered.wait()
        other = await held_backend(held)
        leave.set()
        kept = await task
        assert other != kept
        async with held.acquire() as conn:
            assert await backend(conn) == kept
        assert pool.get_idle_size() == pool.get_size() - 1


async def test_a_release_during_a_use_gives_the_connection_back_when_the_use_ends(
    database_url: str,
) -> None:
    async with held_from(database_url, 2) as (pool, held):
        async with held.acquire() as conn:
            await held.release()  # a rebalance or a stop while a transaction is in flight
            assert await conn.fetchval("SELECT 1") == 1  # the use goes on
            assert pool.get_idle_size() == 1
        assert pool.get_idle_size() == 2
        first = await held_backend(held)  # the next use takes one again, and keeps it
        assert pool.get_idle_size() == 1
        assert await held_backend(held) == first


async def test_a_pool_too_small_to_keep_connections_out_is_used_as_a_pool(
    database_url: str,
) -> None:
    """Two holders of a pool of three would leave one connection for everything else: they
    do not hold, so a caller of the pool never waits for a connection kept idle."""
    async with held_from(database_url, 3) as (pool, _):
        reader, writer = db.held_connections(pool, 2)
        await held_backend(reader)
        await held_backend(writer)
        assert pool.get_idle_size() == 3  # every connection free for others
    async with held_from(database_url, 4) as (pool, _):
        holders = db.held_connections(pool, 2)
        for holder in holders:
            await held_backend(holder)
        assert pool.get_idle_size() == 2
        for holder in holders:
            await holder.release()


async def test_uses_that_start_together_never_share_a_connection(database_url: str) -> None:
    """Two uses start while nothing is held (both wait for the pool); the first ends, and
    a third starts while the second runs a statement: none shares the second's."""
    # No connection open yet: each use waits for one, and the others start meanwhile.
    async with held_from(database_url, 3, opened=0) as (pool, held):
        second_running = asyncio.Event()

        async def first() -> int:
            return await held_backend(held)

        async def second() -> int:
            async with held.acquire() as conn:
                pid = await backend(conn)
                second_running.set()
                await conn.fetchval("SELECT pg_sleep(0.3)")
                return pid

        async def third() -> int:
            await second_running.wait()
            return await held_backend(held)

        first_pid, second_pid, third_pid = await asyncio.gather(first(), second(), third())
        assert second_pid not in (first_pid, third_pid)  # the first's may serve the third
        assert pool.get_idle_size() == pool.get_size() - 1  # one kept, the others back


@pytest.mark.parametrize("given_back", [True, False], ids=["given_back", "pool.acquire"])
async def test_a_task_cancelled_while_giving_its_connection_back_ends_once_it_is_back(
    database_url: str, given_back: bool
) -> None:
    """``db.given_back``: cancelled while the pool resets its connection (held here until
    ``reset_may_end``), the task ends only once the connection is back. With
    ``pool.acquire()`` the task ends at once and the release goes on without it, which
    is why readers that may be cancelled use ``given_back``."""
    resetting, reset_may_end = asyncio.Event(), asyncio.Event()

    async def slow_reset(conn: asyncpg.Connection) -> None:
        resetting.set()
        await reset_may_end.wait()

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, reset=slow_reset)
    assert pool is not None
    try:

        async def reader() -> None:
            uses = db.given_back(pool) if given_back else pool.acquire()
            async with uses as conn:
                await conn.fetchval("SELECT 1")

        task = asyncio.create_task(reader())
        await asyncio.wait_for(resetting.wait(), 10)
        task.cancel()
        await asyncio.sleep(0.1)
        assert task.done() is not given_back
        reset_may_end.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if given_back:
            assert pool.get_idle_size() == 1  # back before the task ended
    finally:
        reset_may_end.set()
        await asyncio.wait_for(pool.close(), 10)
