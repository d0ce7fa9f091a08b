"""Routers of this version beside one of a version before migration 0027, in one consumer
group on the real broker (``router.shell.group_protocol``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from router.engine import DomainPolicy, new_state
from router.shell import store
from runtime.kafka import partition_for
from schemas import Channel, Presence, topics
from switchboard.cli import prepare
from switchboard.config import Config
from tests.conftest import Infrastructure
from tests.engine.builders import message, presence, registered
from tests.integration.test_batch_writes import Batch
from tests.support import RouterProcess, make_raw_config, sample_value, wait_until

PARTITIONS = 2


def one_domain_a_partition() -> dict[int, str]:
    found: dict[int, str] = {}
    index = 0
    while len(found) < PARTITIONS:
        name = f"shop{index}"
        found.setdefault(partition_for(name, PARTITIONS), name)
        index += 1
    return found


async def seed_activity_saved_alone(
    conn: asyncpg.Connection, group: str, partition: int, domain: str
) -> int:
    """A conversation of ``domain`` whose latest message was saved as its activity alone,
    by an earlier router; its message count."""
    leases = await store.acquire_leases(conn, group, [partition], "earlier")
    state = new_state(domain, DomainPolicy())
    # Now: the router's deadlines (inactivity) are not due when it restores them.
    now = time.time()
    opening = Batch(state)
    for event in (
        registered("ann", capacity={Channel.SMS: 5}),
        presence("ann", Presence.ONLINE),
        message("k", customer="c"),
    ):
        opening.apply(msgspec.structs.replace(event, domain=domain, occurred_at=now - 30), now - 30)
    await store.write_batch(conn, group, leases, opening.writes)
    follow = Batch(state)
    later = msgspec.structs.replace(message("k", customer="c"), domain=domain, occurred_at=now)
    follow.apply(later, now)
    assert list(follow.writes.activities) == [(domain, state.by_key["k"].conversation_id)]
    await store.write_batch(conn, group, leases, follow.writes)
    await conn.execute("DELETE FROM outbox")  # nothing of it to publish again
    return state.by_key["k"].message_count


def said(log: Path, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


async def saving_alone(router: RouterProcess) -> float:
    """The router's ``switchboard_router_saves_activity_alone``."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{router.port}/metrics") as response,
    ):
        text = await response.text()
    value = sample_value(text, "switchboard_router_saves_activity_alone")
    assert value is not None, "switchboard_router_saves_activity_alone not exposed"
    return value


def older_router(config: Config, bootstrap: str) -> AIOKafkaConsumer:
    """A router of a version before migration 0027, as the group sees it: a consumer of the
    router's topics with the plain range assignor, which says no capabilities."""
    return AIOKafkaConsumer(
        config.topic(topics.INBOUND),
        config.topic(topics.AGENTS),
        bootstrap_servers=bootstrap,
        group_id=config.kafka.consumer_group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


async def keep_polling(consumer: AIOKafkaConsumer) -> None:
    while True:
        await consumer.getmany(timeout_ms=200)


@pytest.mark.parametrize("older_first", [False, True], ids=["router leads", "older one leads"])
async def test_no_router_saves_activity_alone_while_an_older_one_is_in_the_group(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path, older_first: bool
) -> None:
    domains = one_domain_a_partition()
    raw = make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"domains": {name: {} for name in domains.values()}},
    )
    config = msgspec.convert(raw, type=Config)
    await prepare(config, {})
    conn = await asyncpg.connect(database_url)
    router = RouterProcess(raw, tmp_path)
    older = older_router(config, infrastructure.bootstrap_servers)
    polling: asyncio.Task[None] | None = None
    try:
        counts = {
            domain: await seed_activity_saved_alone(
                conn, config.kafka.consumer_group, partition, domain
            )
            for partition, domain in domains.items()
        }

        async def saved_alone() -> set[str]:
            rows = await conn.fetch("SELECT domain FROM conversation_activity")
            return {row["domain"] for row in rows}

        async def records_count(domain: str) -> int:
            return int(
                await conn.fetchval(
                    "SELECT (record->>'message_count')::int FROM conversations WHERE domain = $1",
                    domain,
                )
            )

        def older_share() -> set[int]:
            return {tp.partition for tp in older.assignment()}

        async def older_joins() -> None:
            nonlocal polling
            await older.start()
            polling = asyncio.create_task(keep_polling(older))

        if older_first:  # the group's first member, its leader
            await older_joins()
            await wait_until(older_share, timeout=30, what="the older one's partitions")
        router.start()
        await router.wait_ready()
        if not older_first:
            # Every router of the group reads activity: it stays beside the records.
            assert await saved_alone() == set(domains.values())
            assert not said(router.log_path, "group_reads_activity")
            assert await saving_alone(router) == 1
            await older_joins()

        await wait_until(
            lambda: said(router.log_path, "group_reads_activity"),
            timeout=30,
            what="the router told an older router is in the group",
        )
        assert said(router.log_path, "group_reads_activity")[-1]["every_router"] is False
        assert await saving_alone(router) == 0
        await wait_until(lambda: len(older_share()) == 1, timeout=30, what="the partitions shared")
        (kept,) = older_share()
        (taken,) = set(domains) - {kept}

        # The partition the router took is loaded with its activity folded into the record,
        # for an older router to restore whole should it take the partition later. The
        # older router's own partition keeps its activity, saved before it joined (README,
        # *Upgrading*: roll back with the setting off first).
        async def folded() -> bool:
            return await saved_alone() == {domains[kept]}

        await wait_until(folded, timeout=30, what="the taken partition's activity folded")
        assert await records_count(domains[taken]) == counts[domains[taken]] == 2
        assert await records_count(domains[kept]) == 1

        # It leaves: every router reads activity again.
        assert polling is not None
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        polling = None
        await older.stop()
        await wait_until(
            lambda: said(router.log_path, "group_reads_activity")[-1]["every_router"] is True,
            timeout=30,
            what="the router told every router reads activity",
        )
        assert await saved_alone() == {domains[kept]}
        assert await saving_alone(router) == 1
        assert router.terminate() == 0
    finally:
        if polling is not None:
            polling.cancel()
        await older.stop()
        router.kill()
        await conn.close()
