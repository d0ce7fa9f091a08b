"""``runtime.db.create_pool``: a connection comes back from the pool as its last user left
it, except for a transaction left open, which is rolled back. So what a user must undo
is undone by that user (``runtime.db.keep_session``), as the takeover's load and the
retention pass do."""

from __future__ import annotations

import pytest

from router.engine import DomainPolicy
from router.shell.reads import restore_domains
from runtime import db
from runtime.retention import RetentionJobConfig, run_pass

pytestmark = pytest.mark.integration


async def test_the_pool_sends_nothing_when_a_connection_comes_back(database_url: str) -> None:
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'left behind'")
        async with pool.acquire() as conn:
            # No RESET ALL ran: the session setting is still there.
            assert await conn.fetchval("SHOW application_name") == "left behind"
            await conn.execute("RESET application_name")
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMPORARY TABLE abandoned (n int)")
        async with pool.acquire() as conn:
            # asyncpg's own part of the reset still rolls an open transaction back.
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.abandoned')") is None
    finally:
        await pool.close()


async def test_the_takeover_load_and_retention_leave_their_connection_as_they_found_it(
    database_url: str,
) -> None:
    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            before = await conn.fetch("SELECT name, setting FROM pg_settings ORDER BY name")
        await restore_domains(pool, ["a-domain"], {"a-domain": DomainPolicy()})
        await run_pass(pool, {}, RetentionJobConfig(), actor="test")
        async with pool.acquire() as conn:
            assert await conn.fetch("SELECT name, setting FROM pg_settings ORDER BY name") == before
            assert not await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid()"
            )
    finally:
        await pool.close()
