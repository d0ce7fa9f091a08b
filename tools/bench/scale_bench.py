"""A domain with a long history: 10 million past customers beside 100,000 open
conversations. What a router's memory and takeover cost should depend on is the open
work, not the history (``router.engine.residency``, ``router.shell.residents``).

1. **History**: ``HISTORY_CUSTOMERS`` customer rows, each with a last agent and an
   affinity entry, written by PostgreSQL itself (``generate_series``); then the open work
   of the end-to-end recovery benchmark (``e2e_bench.seed_open_work``).
2. **Takeover**: a router in a process of its own loads the partition
   (``tools.bench.takeover``): seconds to the first new record applied, and resident
   memory per open conversation. Beside ``recovery_seconds_100k_open`` and
   ``router_rss_bytes_per_open_conversation`` of the end-to-end benchmark (the same open
   work, no history), these show what the history costs.
3. **Returning customers**: ``SCALE_MESSAGES`` new conversations, ``RETURNING_SHARE`` of
   them from past customers no router has in memory (each read from PostgreSQL by its
   batch) and the rest from new customers, produced before the router starts, with two
   more slots for each agent so that the conversations are assigned; the rate
   is from the loaded partition to the broker's acknowledgement of the last
   ``message.routed``. The figures include the customers read per batch and the
   customers resident at the end.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

import asyncpg
import msgspec

from runtime.metrics import Metrics
from schemas import topics
from switchboard.cli import prepare
from tools.bench.e2e_bench import (
    Services,
    adapter_keys,
    bench_config,
    count_routed,
    drop_database,
    fresh_database,
    log_as_deployed,
    message_from,
    produce,
    published_routed,
    register_agents,
    router,
    seed_open_work,
    services,
)

HISTORY_CUSTOMERS = 10_000_000
OPEN_CONVERSATIONS = 100_000
SCALE_MESSAGES = 20_000
RETURNING_SHARE = 0.3
HISTORY_PAGE = 1_000_000
"""Customers written per statement while seeding (progress shows between them)."""

_SEED_HISTORY = """
INSERT INTO customers (domain, customer_id, last_agent_id, record)
SELECT 'bench', id, agent, json_build_object(
    'customer_id', id, 'last_agent_id', agent, 'last_handled_at', $3::float8,
    'affinity', json_build_array(json_build_array(agent, 1.0 + $3::float8 / 2592000)))
FROM (
    SELECT 'phone:' || address AS id, 'agent-' || lpad((g % $4)::text, 5, '0') AS agent
    FROM (SELECT g, '+1666' || lpad(g::text, 8, '0') AS address
          FROM generate_series($1::int, $2::int) g) numbered
) customers
"""


def past_address(index: int) -> str:
    return f"+1666{index:08d}"


def traffic_addresses(messages: int, history: int, rng: random.Random) -> list[str]:
    """One message per customer: ``RETURNING_SHARE`` of them past customers (distinct,
    drawn from the whole history), the others new; shuffled."""
    returning = round(messages * RETURNING_SHARE)
    addresses = [past_address(index) for index in rng.sample(range(history), returning + 1)]
    addresses += [f"+1777{index:08d}" for index in range(messages - returning)]
    probe, traffic = addresses[0], addresses[1:]
    rng.shuffle(traffic)
    return [probe, *traffic]


async def seed_history(url: str, customers: int, agents: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        for first in range(0, customers, HISTORY_PAGE):
            last = min(first + HISTORY_PAGE, customers) - 1
            await conn.execute(_SEED_HISTORY, first, last, time.time(), agents)
            print(f"    history: {last + 1:,} customers", file=sys.stderr, flush=True)
        # As a long-lived table is: its rows' visibility settled and on disk, so the
        # measured traffic does not pay for the seeding's writes.
        await conn.execute("VACUUM (ANALYZE) customers")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def takeover(config_json: str, open_conversations: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.bench.takeover",
        config_json,
        str(open_conversations),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    if process.returncode != 0:
        raise RuntimeError(f"the takeover measurement failed ({process.returncode})")
    figures: dict[str, float] = msgspec.json.decode(out.splitlines()[-1])
    return figures


async def bench_scale(running: Services) -> dict[str, float]:
    history, open_conversations, messages = HISTORY_CUSTOMERS, OPEN_CONVERSATIONS, SCALE_MESSAGES
    url = await fresh_database(running)
    try:
        config = bench_config(running, url, ["bench"])
        version = (await prepare(config, {})).version
        started = time.perf_counter()
        await seed_open_work(url, "bench", open_conversations)
        await seed_history(url, history, max(1, open_conversations // 10))
        seeded = time.perf_counter() - started
        probe, *addresses = traffic_addresses(messages, history, random.Random(7))
        probe_message = message_from("bench", probe, 0, "it is me again")
        async with adapter_keys(url) as keys:
            await produce(
                running.bootstrap, config.topic(topics.INBOUND), [probe_message], keys, version
            )
        loaded = await takeover(msgspec.json.encode(config).decode(), open_conversations)
        await count_routed(config, 1)
        # Room for the traffic: two more slots for each agent of the open work, so that new
        # conversations are assigned (a queue of thousands would measure the queue).
        await register_agents(config, "bench", max(1, open_conversations // 10), capacity=12)
        traffic = [
            message_from("bench", address, i + 1, "it is me again")
            for i, address in enumerate(addresses)
        ]
        async with adapter_keys(url) as keys:
            await produce(running.bootstrap, config.topic(topics.INBOUND), traffic, keys, version)
        metrics = Metrics(config=config.metrics)
        async with router(config, metrics) as worker:
            while not worker.partitions:
                await asyncio.sleep(0.005)
            begun = time.perf_counter()
            deadline = begun + 300
            # The probe was routed by the takeover's process: these metrics count the traffic.
            while published_routed(metrics) < messages:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"only {published_routed(metrics)} routed in 300 s")
                await asyncio.sleep(0.02)
            seconds = time.perf_counter() - begun
            resident = metrics.registry.get_sample_value("switchboard_router_customers_resident")
            loads = metrics.registry.get_sample_value("switchboard_router_customer_lookups_total")
        return {
            "scale_history_customers": float(history),
            "scale_open_conversations": float(open_conversations),
            "scale_seed_seconds": round(seeded, 1),
            "scale_takeover_seconds": round(loaded["seconds"], 3),
            "scale_rss_bytes_per_open_conversation": round(
                loaded["rss_bytes_per_open_conversation"]
            ),
            "scale_returning_messages_per_s": round(messages / seconds, 1),
            "scale_customers_read_per_message": round((loads or 0) / messages, 3),
            "scale_customers_resident_after": float(resident or 0),
        }
    finally:
        await drop_database(running, url)


async def run_scale_bench_async() -> dict[str, float]:
    async with services() as running:
        return await bench_scale(running)


def run_scale_bench() -> dict[str, float]:
    return asyncio.run(run_scale_bench_async())


if __name__ == "__main__":
    log_as_deployed()
    for key, value in run_scale_bench().items():
        print(f"{key:44} {value}")
