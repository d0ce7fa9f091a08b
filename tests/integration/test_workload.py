"""The measured workload on a real PostgreSQL (``runtime.workload``), sectioned by rule:
every figure of a constructed hour exactly, a window's rows independent of how the history
is cut into windows, storing idempotently, reading 30- and 60-minute intervals as sums of
the rows, and back-filling a day at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from runtime import workload
from runtime.workload import (
    WAIT_LIMITS,
    WorkloadFigures,
    WorkloadRow,
    WorkloadSums,
    backfill,
    figures,
    measure,
    remeasure,
    store,
)
from tests.integration.workload_history import THE_HOUR, History, at, write_the_hour

pytestmark = pytest.mark.timeout(120)

FIGURES = tuple(WorkloadSums.__struct_fields__)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert created is not None
    await write_the_hour(History(created))
    yield created
    await created.close()


async def stored(pool: asyncpg.Pool, domain: str = "acme") -> list[WorkloadRow]:
    records = await pool.fetch(
        "SELECT * FROM workload_intervals WHERE domain = $1"
        " ORDER BY interval_start, queue, channel",
        domain,
    )
    return [
        WorkloadRow(
            queue=r["queue"],
            channel=r["channel"],
            interval_start=r["interval_start"],
            waits_within=tuple(r[c] for c in workload.WITHIN_COLUMNS),
            **{n: r[n] for n in FIGURES if n != "waits_within"},
        )
        for r in records
    ]


# -- every figure of the constructed hour -------------------------------------------


async def test_the_hour_measures_to_its_known_figures(pool: asyncpg.Pool) -> None:
    """Arrivals, first assignments, abandonments, waits, replies, the work they took
    (capped, bounded by the agent's previous reply, split over intervals), first and next
    replies, owner periods and busy agents: see ``workload_history``. Bots' replies,
    a missed offer and an agent's notification count nowhere."""
    async with pool.acquire() as conn:
        assert await measure(conn, "acme", at("09:00"), at("10:00")) == THE_HOUR
        # ann owns three conversations through 09:15-09:30
        [row] = [r for r in THE_HOUR if r.interval_start == at("09:15") and r.channel == "sms"]
        assert row.conversation_seconds / row.busy_agent_seconds == 3.0
        assert await measure(conn, "globex", at("09:00"), at("10:00")) == []


async def test_a_window_measures_the_same_however_history_is_cut(pool: asyncpg.Pool) -> None:
    """One interval at a time gives the hour's rows: a reply after the window brings the
    work it did inside it, an owner period before it the seconds it held inside it."""
    async with pool.acquire() as conn:
        pieces: list[WorkloadRow] = []
        for quarter in range(4):
            start = at("09:00") + timedelta(minutes=15 * quarter)
            pieces += await measure(conn, "acme", start, start + timedelta(minutes=15))
        assert pieces == THE_HOUR
        # a window is widened to whole intervals
        inside = await measure(conn, "acme", at("09:20"), at("09:31"))
        assert inside == [r for r in THE_HOUR if at("09:15") <= r.interval_start < at("09:45")]
        with pytest.raises(ValueError, match="time zone"):
            await measure(conn, "acme", datetime(2024, 3, 4, 9), datetime(2024, 3, 4, 10))


async def test_an_owner_period_still_running_counts_up_to_now(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():  # one now() for the rows and the measurement
            now: datetime = await conn.fetchval("SELECT now()")
            h = History(conn, "globex")
            await h.conversation("g1", now - timedelta(minutes=20))
            await h.assignment(
                "g1-a", "g1", "dan", strategy="queue", waited=600,
                offered=now - timedelta(minutes=10), accepted=now - timedelta(minutes=10),
            )  # fmt: skip
            rows = await measure(conn, "globex", now - timedelta(hours=1), now)
    finally:
        await conn.close()
    assert sum(r.conversation_seconds for r in rows) == 600.0
    assert sum(r.busy_agent_seconds for r in rows) == 600.0
    assert (sum(r.arrivals for r in rows), sum(r.assigned for r in rows)) == (1, 1)
    assert sum(r.wait_seconds_sum for r in rows) == 600.0


@pytest.mark.parametrize(
    "index", ["assignments_by_end", "conversations_by_opening", "outbound_replies_by_time"]
)
async def test_a_measurement_reads_by_time_through_indexes(pool: asyncpg.Pool, index: str) -> None:
    """With sequential scans off, the plan names each index that reads a window by time
    (on these small tables the planner would rather scan)."""
    async with pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in await conn.fetch(
                f"EXPLAIN {workload.MEASURE}",
                "acme",
                at("09:00"),
                at("10:00"),
                workload.REPLY_WORK_MAX_SECONDS,
            )
        )
        await conn.execute("RESET enable_seqscan")
    assert index in plan, plan


# -- storing --------------------------------------------------------------------------


async def test_storing_again_gives_the_same_rows_and_drops_what_is_gone(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        assert await remeasure(conn, "acme", at("09:00"), at("10:00")) == len(THE_HOUR)
        first = await stored(pool)
        assert await remeasure(conn, "acme", at("09:00"), at("10:00")) == len(THE_HOUR)
        assert await stored(pool) == first == THE_HOUR
        # a row of the window that nothing measures any more goes; one outside it stays
        stale = WorkloadRow(queue="gone", channel="sms", interval_start=at("09:30"), arrivals=1)
        later = WorkloadRow(queue="gone", channel="sms", interval_start=at("11:00"), arrivals=1)
        await store(conn, "acme", at("09:30"), at("09:45"), [stale])
        await store(conn, "acme", at("11:00"), at("11:15"), [later])
        await remeasure(conn, "acme", at("09:00"), at("10:00"))
        assert await stored(pool) == [*THE_HOUR, later]
        with pytest.raises(ValueError, match="outside the window"):
            await store(conn, "acme", at("09:00"), at("09:15"), [later])


# -- reading 30- and 60-minute intervals ----------------------------------------------


def summed(rows: list[WorkloadRow]) -> dict[str, Any]:
    """The additive figures of ``rows`` added up."""
    out: dict[str, Any] = {}
    for name in FIGURES:
        values = [getattr(r, name) for r in rows]
        if name == "waits_within":
            out[name] = tuple(map(sum, zip(*values, strict=True))) if values else (0,) * 9
        else:
            out[name] = sum(values)
    return out


def sums_of(found: WorkloadFigures) -> dict[str, Any]:
    return {name: getattr(found, name) for name in FIGURES}


@pytest.mark.parametrize("minutes", [15, 30, 60])
async def test_each_interval_is_the_sum_of_its_rows(pool: asyncpg.Pool, minutes: int) -> None:
    async with pool.acquire() as conn:
        await remeasure(conn, "acme", at("09:00"), at("10:00"))
        found = await figures(
            conn, "acme", start=at("09:00"), end=at("10:00"), interval_seconds=minutes * 60
        )
    step = timedelta(minutes=minutes)
    assert [f.interval_start for f in found] == [
        at("09:00") + n * step for n in range(60 // minutes)
    ]
    for interval in found:
        rows = [r for r in THE_HOUR if interval.interval_start <= r.interval_start
                < interval.interval_start + step]  # fmt: skip
        assert sums_of(interval) == summed(rows)


async def test_the_derived_figures_come_from_the_sums(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await remeasure(conn, "acme", at("09:00"), at("10:00"))
        [hour, empty] = await figures(
            conn, "acme", start=at("09:00"), end=at("10:30"), service_target=60
        )
        [sales] = await figures(conn, "acme", start=at("09:00"), end=at("10:00"), queue="sales")
        [webchat] = await figures(
            conn, "acme", start=at("09:00"), end=at("10:00"), channel="webchat"
        )
        [sms_20] = await figures(
            conn, "acme", start=at("09:00"), end=at("10:00"), channel="sms", service_target=20
        )
    assert (hour.arrivals, hour.assigned, hour.abandoned, hour.agent_replies) == (6, 3, 2, 9)
    assert hour.average_wait_seconds == 230 / 3
    assert (hour.service_target_seconds, hour.service_level) == (60, 2 / 3)
    assert hour.handle_seconds_per_reply == 1280 / 9
    assert hour.average_first_reply_seconds == 460 / 4
    assert hour.average_next_reply_seconds == 1620 / 3
    assert hour.concurrency == 7330 / 4170
    assert (hour.active_agents, hour.busy_agents) == (1280 / 3600, 4170 / 3600)
    assert sums_of(empty) == msgspec.structs.asdict(WorkloadSums())
    assert (empty.interval_start, empty.concurrency, empty.service_level) == (
        at("10:00"),
        None,
        None,
    )
    assert (sales.agent_replies, sales.concurrency, sales.arrivals) == (1, 1.0, 0)
    assert (webchat.arrivals, webchat.abandoned, webchat.agent_replies) == (3, 2, 0)
    assert sms_20.service_level == 0.0


async def test_figures_refuse_what_they_cannot_answer(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for bad, match in (
            ({"interval_seconds": 600}, "interval_seconds"),
            ({"service_target": 45}, "service target"),
            ({"end": at("09:00") + timedelta(days=367)}, "at most 366 days"),
        ):
            arguments: dict[str, Any] = {"start": at("09:00"), "end": at("10:00"), **bad}
            with pytest.raises(ValueError, match=match):
                await figures(conn, "acme", **arguments)
    assert WAIT_LIMITS[2] == 60  # the default target is one of the stored limits


# -- back-filling ---------------------------------------------------------------------


async def test_backfill_measures_a_day_at_a_time_and_reports_progress(
    pool: asyncpg.Pool,
) -> None:
    await History(pool).conversation("c7", at("08:00", day=5))  # still waiting, next day
    calls: list[tuple[int, int]] = []
    report = await backfill(
        pool,
        "acme",
        datetime(2024, 3, 4, tzinfo=UTC),
        datetime(2024, 3, 6, tzinfo=UTC),
        lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 2), (2, 2)]
    next_day = WorkloadRow(
        queue="support", channel="sms", interval_start=at("08:00", day=5), arrivals=1
    )
    assert (report.days, report.rows) == (2, len(THE_HOUR) + 1)
    assert await stored(pool) == [*THE_HOUR, next_day]
    # a span that starts and ends inside days is cut at midnight, widened to intervals
    assert workload.days_of(at("22:10"), at("01:05", day=5)) == [
        (at("22:00"), datetime(2024, 3, 5, tzinfo=UTC)),
        (datetime(2024, 3, 5, tzinfo=UTC), at("01:15", day=5)),
    ]


async def test_backfill_starts_on_the_day_of_the_domains_first_conversation(
    pool: asyncpg.Pool,
) -> None:
    """Nothing before it to measure; measuring there would replace the rows kept from
    conversations retention deleted since with none."""
    earlier = datetime(2024, 1, 2, 9, tzinfo=UTC)
    kept = WorkloadRow(queue="support", channel="sms", interval_start=earlier, arrivals=3)
    async with pool.acquire() as conn:
        await store(conn, "acme", earlier, earlier + timedelta(minutes=15), [kept])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    report = await backfill(pool, "acme", epoch, at("00:00", day=5))
    first_day = datetime.combine(at("09:00").date(), datetime.min.time(), UTC)
    assert (report.since, report.days) == (first_day, 1)
    assert (await stored(pool))[0] == kept
    assert (await backfill(pool, "globex", epoch, at("00:00", day=5))).days == 0
