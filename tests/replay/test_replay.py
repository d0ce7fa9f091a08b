"""``switchboard replay`` over a run of the real service: a longer preferred wait gives a
higher preferred-agent hit ratio and longer waits."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runtime.kafka import EventPublisher
from schemas import AgentRegistered, Channel, ConversationCloseRequested, Presence, PresenceChanged
from schemas.topics import AGENTS, INBOUND
from tests.conftest import Infrastructure
from tests.support import make_config, make_raw_config, running_service, to_toml, wait_until
from tests.traffic import Traffic
from tools.cli import main

pytestmark = pytest.mark.timeout(180)

RECORDED = {"domains": {"acme": {"routing": {"preferred_wait": {"sms": 1.0}}}}}


def parse(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines()[2:]:
        name, *values = line.split()
        rows[name] = values
    return rows


async def test_longer_preferred_wait_hits_more_and_waits_longer(
    infrastructure: Infrastructure,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url, RECORDED)
    agents = [f"a{i}" for i in range(3)]

    def fields() -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "domain": "acme", "occurred_at": time.time()}

    async with running_service(config), Traffic(config, ["acme"]) as traffic:
        publish_agents: EventPublisher = traffic._agents
        publish_inbound: EventPublisher = traffic._inbound
        conn = await asyncpg.connect(database_url)

        async def open_count(owned: bool) -> int:
            sql = "SELECT count(*) FROM conversations WHERE status = 'assigned'"
            return int(await conn.fetchval(sql)) if owned else 0

        async def send(customers: range) -> list[str]:
            batch = [traffic.message("acme", c) for c in customers]
            await publish_inbound.publish(batch)
            return [m.id for m in batch]

        async def close_all() -> None:
            rows = await conn.fetch(
                "SELECT conversation_id FROM conversations WHERE status <> 'closed'"
            )
            await publish_agents.publish(
                [ConversationCloseRequested(**fields(), conversation_id=r[0]) for r in rows]
            )
            await wait_until(lambda: _none_open(conn), timeout=30, what="conversations closed")

        try:
            await publish_agents.publish(
                [
                    e
                    for a in agents
                    for e in (
                        AgentRegistered(**fields(), agent_id=a, capacity={Channel.SMS: 1}),
                        PresenceChanged(**fields(), agent_id=a, status=Presence.ONLINE),
                    )
                ]
            )
            await asyncio.sleep(1)
            await send(range(3))  # customers 0-2 meet their agents
            await wait_until(lambda: _assigned(conn, 3), timeout=30, what="first round")
            await close_all()
            await send(range(10, 13))  # new customers keep every agent busy
            await wait_until(lambda: _assigned(conn, 3), timeout=30, what="agents busy")
            await publish_agents.publish(
                [
                    AgentRegistered(**fields(), agent_id="spare", capacity={Channel.SMS: 3}),
                    PresenceChanged(**fields(), agent_id="spare", status=Presence.ONLINE),
                ]
            )
            await asyncio.sleep(1)
            await send(range(3))  # customers 0-2 return: their agent is busy
            await asyncio.sleep(4)
            busy = await conn.fetch(
                "SELECT conversation_id FROM conversations WHERE status <> 'closed'"
                " AND customer_id = ANY($1::text[])",
                [f"phone:+1555{c:07d}" for c in range(10, 13)],
            )
            await publish_agents.publish(
                [ConversationCloseRequested(**fields(), conversation_id=r[0]) for r in busy]
            )
            await asyncio.sleep(3)
            del open_count
        finally:
            await conn.close()

    raw = make_raw_config(infrastructure.bootstrap_servers, database_url, RECORDED)
    service_toml = tmp_path / "service.toml"
    service_toml.write_text(to_toml(raw))
    candidate = tmp_path / "candidate.toml"
    candidate.write_text("[routing.preferred_wait]\nsms = 60\n")
    # the command reads the environment, whose DATABASE_URL wins over the file's
    monkeypatch.setenv("DATABASE_URL", database_url)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = await asyncio.to_thread(
            main,
            [
                "--config",
                str(service_toml),
                "replay",
                "--domain",
                "acme",
                "--routing",
                str(candidate),
            ],
        )
    output = out.getvalue()
    print(output)
    assert code == 0, output
    rows = parse(output)
    recorded, baseline, longer = (rows["assignments"][i] for i in range(3))
    assert int(recorded) == int(baseline) == int(longer) == 9, output
    base_hit, long_hit = (float(v) for v in rows["preferred_hit_ratio"][1:])
    assert long_hit > base_hit, output
    base_p95, long_p95 = (float(v) for v in rows["wait_p95_s"][1:])
    assert long_p95 > base_p95, output
    # progress on stderr, each replay from none to all of the recorded inputs
    progress = err.getvalue().splitlines()
    total = progress[-1].removeprefix("acme candidate: ").split("/")[0]
    assert int(total) > 9
    assert progress[0] == f"acme baseline: 0/{total} inputs"
    assert f"acme baseline: {total}/{total} inputs" in progress
    assert progress[-1] == f"acme candidate: {total}/{total} inputs"


async def _assigned(conn: asyncpg.Connection, count: int) -> bool:
    sql = "SELECT count(*) FROM conversations WHERE status = 'assigned'"
    return int(await conn.fetchval(sql)) >= count


async def _none_open(conn: asyncpg.Connection) -> bool:
    sql = "SELECT count(*) FROM conversations WHERE status <> 'closed'"
    return int(await conn.fetchval(sql)) == 0


_ = (AGENTS, INBOUND)
