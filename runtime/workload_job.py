"""The routers' workload job (``runtime.workload``): every ``[workload] interval`` seconds,
each domain's recent intervals re-measured, counted in
``switchboard_workload_intervals_total``.

Every router runs it. A domain is measured by one router at a time (a transaction-level
advisory lock per domain: another router, or a back-fill, holding it means skip) and about
once an interval whatever the number of routers (``workload_marks``: a domain measured
less than 0.9 of an interval ago is left alone).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import structlog

from runtime.metrics import Metrics
from runtime.tasks import run_every
from runtime.workload import TRY_LOCK, WorkloadJobConfig, remeasure

log = structlog.get_logger("runtime.workload")

STATEMENT_TIMEOUT: Final = "60s"
"""Longest a measurement statement runs: then that domain waits for the next run."""
RECENT: Final = 0.9
"""A domain measured less than this share of an interval ago is left alone."""

_MARK = "SELECT measured_at FROM workload_marks WHERE domain = $1"
_SET_MARK = """
INSERT INTO workload_marks (domain, measured_at) VALUES ($1, now())
ON CONFLICT (domain) DO UPDATE SET measured_at = EXCLUDED.measured_at
"""


class Outcome(enum.StrEnum):
    MEASURED = "measured"
    RECENT = "recent"
    """Another router measured it less than ``RECENT`` of an interval ago."""
    BUSY = "busy"
    """Another router or a back-fill holds its lock."""
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class Measurement:
    domain: str
    outcome: Outcome
    rows: int = 0


class WorkloadJob:
    """The routers' background task: a run every ``interval`` seconds, the first one an
    interval after start. A run that fails (the database unreachable) is logged, and the
    next one tries again."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        job: WorkloadJobConfig,
        domains: Callable[[], Iterable[str]],
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._job = job
        self._domains = domains
        self._stopping = asyncio.Event()
        self.runs = 0
        """Runs this job finished (tests wait for the next one)."""
        self.failures = 0
        """Runs that failed on the database."""

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await run_every(self._job.interval, self._stopping, self.run_once, self._failed)

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        log.warning("workload_failed", error=type(error).__name__)

    async def run_once(self) -> list[Measurement]:
        started = time.monotonic()
        done = []
        for domain in sorted(self._domains()):
            if self._stopping.is_set():
                break
            measurement = await self._measure(domain)
            if measurement.rows:
                bound = self._metrics.for_domain(domain)
                bound.counter(self._metrics.workload_intervals).inc(measurement.rows)
            done.append(measurement)
        self.runs += 1
        outcomes = collections.Counter(str(m.outcome) for m in done)
        log.debug(
            "workload_run",
            seconds=round(time.monotonic() - started, 3),
            rows=sum(m.rows for m in done),
            **outcomes,
        )
        return done

    async def _measure(self, domain: str) -> Measurement:
        """Step 1: the domain's lock, or skip. Step 2: skip when measured lately. Step 3:
        re-measure the lookback window up to the end of the current interval, and mark."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
            # Step 1
            if not await conn.fetchval(TRY_LOCK, domain):
                return Measurement(domain, Outcome.BUSY)
            # Step 2
            now: datetime = await conn.fetchval("SELECT now()")
            marked: datetime | None = await conn.fetchval(_MARK, domain)
            if marked is not None and now - marked < timedelta(seconds=self._job.interval * RECENT):
                return Measurement(domain, Outcome.RECENT)
            # Step 3
            try:
                rows = await remeasure(
                    conn, domain, now - timedelta(seconds=self._job.lookback), now
                )
            except asyncpg.QueryCanceledError:
                log.warning("workload_timed_out", domain=domain)
                return Measurement(domain, Outcome.TIMED_OUT)
            await conn.execute(_SET_MARK, domain)
            return Measurement(domain, Outcome.MEASURED, rows)
