"""``runtime.db.json_rows`` and ``rows_of`` against PostgreSQL: rows sent as one JSON
parameter come back as they were sent, in order: every character a string may hold
(quotes, backslashes, line breaks, characters beyond the Basic Multilingual Plane, JSON
text), NULL, and floats to the last bit."""

from __future__ import annotations

import asyncpg
import pytest

from runtime.db import json_rows, rows_of

pytestmark = pytest.mark.integration

ROWS = [
    ("plain", 'quote " back\\slash', "line\nbreak\ttab", "ünïcødé 🎉", None, 1733241234.123456),
    ("", "'single' and $1 and %s", "x" * 5000, '{"a": [1, 2]}', "y", 0.1),
    ("z", None, None, None, None, None),
    ("e", "e->>0", "--", "\\u0041", "\u2028", 5e-324),
]


async def test_rows_sent_as_one_json_parameter_come_back_as_they_were(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        table = rows_of(1, "a, b, c, d, e, f float8")
        got = await conn.fetch(f"SELECT * FROM {table} AS t", json_rows(ROWS))  # noqa: S608
    finally:
        await conn.close()
    assert [tuple(row) for row in got] == ROWS
    assert [list(row.keys()) for row in got[:1]] == [["a", "b", "c", "d", "e", "f"]]


async def test_no_rows_are_no_rows(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        got = await conn.fetch(f"SELECT * FROM {rows_of(1, 'a')} AS t", json_rows([]))  # noqa: S608
    finally:
        await conn.close()
    assert got == []
