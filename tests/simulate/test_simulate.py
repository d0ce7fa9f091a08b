"""A short simulation against the real service: its summary agrees with PostgreSQL."""

from __future__ import annotations

from collections import Counter

import asyncpg
import pytest

from tests.conftest import Infrastructure
from tests.simulate.demo import demo_service, options
from tools.simulate import Progress, SimulationError, simulate

pytestmark = pytest.mark.integration


async def test_a_simulation_s_summary_matches_what_postgresql_recorded(
    infrastructure: Infrastructure, database_url: str
) -> None:
    progress: list[Progress] = []
    async with demo_service(infrastructure, database_url) as service:
        summary = await simulate(options(service), progress.append)

    assert summary.errors == {}
    assert set(summary.messages_by_channel) == {"webchat", "sms", "whatsapp", "email"}
    assert summary.messages > 20
    assert summary.messages_routed == summary.messages
    assert summary.assignments > 0
    assert summary.replies > 0
    assert progress
    assert progress[-1].messages == summary.messages

    conn = await asyncpg.connect(database_url)
    try:
        inbound = await conn.fetch(
            "SELECT channel, count(*) AS n FROM messages WHERE domain = 'demo'"
            " AND direction = 'inbound' GROUP BY channel"
        )
        strategies = await conn.fetch(
            "SELECT strategy, count(*) AS n FROM assignments WHERE domain = 'demo'"
            " GROUP BY strategy"
        )
        replies = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE domain = 'demo' AND direction = 'outbound'"
        )
    finally:
        await conn.close()
    assert {r["channel"]: r["n"] for r in inbound} == summary.messages_by_channel
    assert Counter({r["strategy"]: r["n"] for r in strategies}) == Counter(
        summary.assignments_by_strategy
    )
    assert replies == summary.replies


async def test_a_wrong_token_stops_the_simulation_with_a_reason(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with demo_service(infrastructure, database_url) as service:
        with pytest.raises(SimulationError, match="401"):
            await simulate(options(service, token="not-the-token", duration=1.0))
