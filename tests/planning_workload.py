"""A known measured workload for the planning tests: five weeks of web chat arrivals with a
weekly profile, stored as the routers store what they measure (``runtime.workload.store``)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import asyncpg

from runtime.workload import WorkloadRow, store

WEEKS = 5
HOLDING = 600.0
WORK = 150.0
"""Seconds of active work per conversation served."""


def hourly_rate(moment: datetime) -> float:
    """The known arrival process: web chat arrivals per hour by local (UTC) hour of week,
    busy on weekday afternoons, quiet at night and on Sundays."""
    hour = moment.hour
    day = 0.2 if moment.weekday() == 6 else 1.0
    return day * (4.0 + 36.0 * math.exp(-(((hour - 14) / 3.5) ** 2)))


def _draws(end: datetime, moment: datetime) -> random.Random:
    """The random draws of the hour ``moment`` of a record ending at ``end``: fixed by the
    hour's place in the record (whole weeks before ``end``, hour of the week), not by the
    clock, so that a test sees the same record whatever the hour it runs."""
    weeks_before = (end - moment - timedelta(hours=1)) // timedelta(weeks=1)
    return random.Random(f"{weeks_before}:{moment.weekday()}:{moment.hour}")


def known_rate_wape(
    drawn: Mapping[int, int], start: float, end: float, served: bool = False
) -> float:
    """The WAPE of the best forecast there can be of the hours ``[start, end)``: each
    hour's known rate (``hourly_rate``), against the arrivals drawn (0 where none were:
    hours after the record's end); with ``served``, of the work (``WORK`` seconds per
    conversation served, 9 in 10) rather than the arrivals. A model's backtest on the same
    hours can come near it, not below it by much: what is left is the Poisson noise."""
    errors = actual_total = 0.0
    for at in range(int(start), int(end), 3600):
        arrivals = drawn.get(at, 0)
        actual = WORK * (arrivals - arrivals // 10) if served else float(arrivals)
        expected = hourly_rate(datetime.fromtimestamp(at, UTC))
        errors += abs(actual - (WORK * 0.9 * expected if served else expected))
        actual_total += actual
    return errors / actual_total


def poisson(rng: random.Random, mean: float) -> int:
    count, product, limit = 0, rng.random(), math.exp(-mean)
    while product > limit:
        count += 1
        product *= rng.random()
    return count


async def seed_workload(pool: asyncpg.Pool, end: datetime) -> dict[int, int]:
    """``WEEKS`` weeks of measured web chat workload of the domain ``acme`` ending at ``end``
    (an hour), each hour's arrivals drawn from ``hourly_rate``, all at the hour's first 15
    minutes; each conversation owned ``HOLDING`` seconds and worked ``WORK`` of them, a
    tenth of them abandoned after waiting 40 s on average. Answers the arrivals of each hour (by its epoch second)."""
    start = end - timedelta(weeks=WEEKS)
    rows = []
    drawn: dict[int, int] = {}
    moment = start
    while moment < end:
        arrivals = poisson(_draws(end, moment), hourly_rate(moment))
        drawn[int(moment.timestamp())] = arrivals
        abandoned = arrivals // 10
        rows.append(
            WorkloadRow(
                queue="default",
                channel="webchat",
                interval_start=moment,
                arrivals=arrivals,
                assigned=arrivals - abandoned,
                abandoned=abandoned,
                wait_count=arrivals - abandoned,
                wait_seconds_sum=40.0 * abandoned,
                conversation_seconds=HOLDING * (arrivals - abandoned),
                busy_agent_seconds=HOLDING * (arrivals - abandoned) / 2,
                active_handle_seconds=WORK * (arrivals - abandoned),
                agent_replies=3 * (arrivals - abandoned),
            )
        )
        moment += timedelta(hours=1)
    async with pool.acquire() as conn:
        await store(conn, "acme", start, end, rows)
    return drawn
