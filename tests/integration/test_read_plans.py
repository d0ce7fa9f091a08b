"""The read before a batch applies (``router.shell.reads``) finds each message, identity and
customer by its primary key, whatever the tables held when PostgreSQL made the plan it
keeps for the connection: empty, small and never analyzed (a new deployment's first
minute), or large and analyzed. A plan that scans a table, or walks every row of the
domain through another index, costs the whole table at each batch."""

from __future__ import annotations

import re

import asyncpg
import pytest

from router.shell import reads
from runtime.db import json_rows

EXPECTED = {
    ("messages", "messages_pkey"),
    ("customer_identities", "customer_identities_pkey"),
    ("customers", "customers_pkey"),
    # the profile's links, by the customer the identity belongs to
    ("customer_identities", "customer_identities_of_customer"),
}


async def _populate(conn: asyncpg.Connection, rows: int) -> None:
    """``rows`` messages, customers and identity links, all of one domain (the case where
    an index that starts with the domain alone matches every row)."""
    await conn.execute(
        "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
        " occurred_at) SELECT 'acme', 'm' || i, 'c' || (i % 50), 'inbound', 'sms', now()"
        " FROM generate_series(1, $1) i",
        rows,
    )
    await conn.execute(
        "INSERT INTO customers (domain, customer_id, record)"
        " SELECT 'acme', 'phone:+' || i, '{}' FROM generate_series(1, $1) i",
        rows,
    )
    await conn.execute(
        "INSERT INTO customer_identities (domain, identity, customer_id, source, linked_at)"
        " SELECT 'acme', 'email:' || i || '@x.org', 'phone:+' || i, 'api', now()"
        " FROM generate_series(1, $1) i",
        rows,
    )


@pytest.mark.parametrize(
    ("rows", "analyzed"), [(0, False), (300, False), (5000, False), (5000, True)]
)
async def test_the_kept_plan_reads_primary_keys(
    database_url: str, rows: int, analyzed: bool
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await _populate(conn, rows)
        if analyzed:
            await conn.execute("ANALYZE messages, customers, customer_identities")
        # The plan a connection keeps after its first executions, made now.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE stored_and_customers AS {reads._STORED_AND_CUSTOMERS}")
        messages = json_rows([("acme", "m1"), ("acme", "m0")])
        identities = json_rows([("acme", "email:1@x.org"), ("acme", "phone:+2")])
        execute = f"EXECUTE stored_and_customers('{messages}', '{identities}')"
        plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {execute}"))
        found = await conn.fetch(execute)
    finally:
        await conn.close()
    assert "Seq Scan" not in plan, plan
    scans = set(re.findall(r"Scan using (\w+) on (\w+)", plan))
    assert {(table, index) for index, table in scans} == EXPECTED, plan
    stored = {row["message_id"] for row in found if row["customers"] is None}
    assert stored == ({"m1"} if rows else set())
