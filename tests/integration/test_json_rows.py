"""``runtime.db.json_rows`` and ``rows_of`` against PostgreSQL: rows sent as one JSON
parameter come back as they were sent, in order: every character a string may hold
(quotes, backslashes, line breaks, characters beyond the Basic Multilingual Plane, JSON
text), NULL, and floats to the last bit; with their documents apart (``document_rows``),
each row with its own document."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest

from runtime.db import document_rows, json_rows, rows_of

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


async def test_rows_with_their_documents_apart_come_back_each_with_its_own(
    database_url: str,
) -> None:
    documents = [
        msgspec.json.encode(
            {"n": i, "text": 'quote " back\\slash \u00e9 \U0001f389 \\u0041'}
        ).decode()
        for i in range(300)
    ]
    rows = [(*ROWS[i % len(ROWS)], documents[i]) for i in range(300)]
    conn = await asyncpg.connect(database_url)
    try:
        table = rows_of(1, "a, b, c, d, e, f float8", document="doc")
        got = await conn.fetch(
            f"SELECT t.*, t.doc::json->>'n' AS n FROM {table} AS t",  # noqa: S608
            *document_rows(rows),
        )
    finally:
        await conn.close()
    assert [tuple(row)[:7] for row in got] == rows
    assert [row["n"] for row in got] == [str(i) for i in range(300)]
