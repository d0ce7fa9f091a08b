"""Long planning runs started through the API: a staffing simulation or search, a workload
back-fill, a dry run's replay of recorded traffic. ``POST`` answers 202 with the job at once; ``GET …/planning/jobs/{job_id}``
follows its progress and finally holds its result.

A job runs in the API process that accepted it, as a task of that process (CPU-bound work
in a worker thread, so the process keeps answering). It writes its progress and a
heartbeat to ``planning_jobs`` every second, so any API process can answer for it. A job
still ``running`` whose heartbeat is older than ``STALE_SECONDS`` has lost its process (a
restart, a crash): it reads as ``interrupted`` and can be started again. Each process runs
at most ``RUNNING_MAX`` jobs at once; another start answers 429 until one finishes.
Finished jobs are purged ``KEPT_DAYS`` after they finish (by the next start in any domain).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec
import structlog
from aiohttp import web

from runtime.appkeys import DB_POOL
from runtime.db import DATABASE_ERRORS

log = structlog.get_logger(__name__)

RUNNING_MAX = 2
"""Jobs one API process runs at once."""
HEARTBEAT_SECONDS = 1.0
STALE_SECONDS = 30.0
"""A running job whose heartbeat is older than this lost its process."""
KEPT_DAYS = 30
ERROR_MAX = 512

Kind = Literal["staffing", "backfill", "replay"]
Report = Callable[[int, int], None]
"""Called by the work with (steps done, steps in all); safe from any thread."""
Work = Callable[[Report], Awaitable[bytes]]
"""The job's work: reports progress, returns its result as JSON."""


class JobFailed(Exception):
    """The work cannot be done as asked (the reason is shown to the client)."""


class JobCancelled(Exception):
    """Raised in the work's thread by its next progress report once the job is cancelled:
    a thread cannot be cancelled from outside, and a search left running would hold the
    process's shutdown."""


class PlanningJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    kind: Kind
    status: Literal["running", "completed", "failed", "interrupted"]
    """``interrupted``: its process ended before it finished; start it again."""
    done: int
    total: int
    """Steps done and in all (0 in all: not counted yet)."""
    created_at: float
    finished_at: float | None
    error: str | None
    result: msgspec.Raw | None = None
    """The work's answer once ``completed`` (see the starting operation)."""


_INSERT = """
INSERT INTO planning_jobs (domain, job_id, kind, status, request, created_by)
VALUES ($1, $2, $3, 'running', $4::jsonb, $5)
"""
_PROGRESS = """
UPDATE planning_jobs SET done = $3, total = $4, heartbeat_at = now()
WHERE domain = $1 AND job_id = $2 AND status = 'running'
"""
_FINISH = """
UPDATE planning_jobs
SET status = $3, done = $4, total = $5, result = $6::jsonb, error = $7,
    heartbeat_at = now(), finished_at = now()
WHERE domain = $1 AND job_id = $2
"""
_READ = """
SELECT job_id, kind, status, done, total, created_at, finished_at, error, result::text AS result,
       heartbeat_at < now() - make_interval(secs => $3) AS stale
FROM planning_jobs WHERE domain = $1 AND job_id = $2
"""
_PURGE = "DELETE FROM planning_jobs WHERE finished_at < now() - make_interval(days => $1)"


@dataclass(slots=True)
class _Progress:
    done: int = 0
    total: int = 0
    cancelled: bool = False


@dataclass(slots=True)
class PlanningJobs:
    """The jobs this process runs (``app[PLANNING_JOBS]``)."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    starting: int = 0
    """Starts between their check and their task (each awaits the database meanwhile)."""

    async def start(
        self,
        pool: asyncpg.Pool,
        domain: str,
        kind: Kind,
        actor: str,
        request: msgspec.Struct,
        work: Work,
    ) -> PlanningJob:
        """Record the job and run ``work`` in the background; 429 when this process runs
        ``RUNNING_MAX`` already."""
        if len(self.tasks) + self.starting >= RUNNING_MAX:
            raise web.HTTPTooManyRequests(
                text=msgspec.json.encode(
                    {"error": f"{RUNNING_MAX} planning jobs are running here; retry later"}
                ).decode(),
                content_type="application/json",
                headers={"Retry-After": "10"},
            )
        job_id = str(uuid.uuid4())
        self.starting += 1
        try:
            async with pool.acquire() as conn:
                await conn.execute(_PURGE, KEPT_DAYS)
                await conn.execute(
                    _INSERT, domain, job_id, kind, msgspec.json.encode(request).decode(), actor
                )
        finally:
            self.starting -= 1
        task = asyncio.create_task(_run(pool, domain, job_id, work), name=f"planning-{job_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        log.info("planning_job_started", domain=domain, job_id=job_id, kind=kind)
        return PlanningJob(
            job_id=job_id,
            kind=kind,
            status="running",
            done=0,
            total=0,
            created_at=time.time(),
            finished_at=None,
            error=None,
        )

    async def stop(self) -> None:
        """Cancel the running jobs (the process is ending): they read as failed."""
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


PLANNING_JOBS = web.AppKey("planning_jobs", PlanningJobs)


async def planning_jobs_context(app: web.Application) -> AsyncIterator[None]:
    app[PLANNING_JOBS] = jobs = PlanningJobs()
    yield
    await jobs.stop()


async def _run(pool: asyncpg.Pool, domain: str, job_id: str, work: Work) -> None:
    progress = _Progress()

    def report(done: int, total: int) -> None:
        if progress.cancelled:
            raise JobCancelled
        progress.done, progress.total = done, total  # read by the heartbeat below

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                async with pool.acquire() as conn:
                    await conn.execute(_PROGRESS, domain, job_id, progress.done, progress.total)
            except DATABASE_ERRORS as error:
                log.warning(
                    "planning_job_heartbeat_failed", job_id=job_id, error=type(error).__name__
                )

    beat = asyncio.create_task(heartbeat())
    status, result, error = "failed", None, None
    try:
        result = (await work(report)).decode()
        status = "completed"
    except JobFailed as failure:
        error = str(failure)[:ERROR_MAX]
    except asyncio.CancelledError:
        progress.cancelled = True
        error = "stopped: the API process shut down"
    except Exception as failure:
        # A bug in the work ends its job, not the API process: the job reads as failed.
        log.exception("planning_job_failed", job_id=job_id, error=type(failure).__name__)
        error = "internal error"
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                _FINISH, domain, job_id, status, progress.done, progress.total, result, error
            )
    except DATABASE_ERRORS as failure:
        log.warning("planning_job_not_recorded", job_id=job_id, error=type(failure).__name__)
    log.info("planning_job_finished", domain=domain, job_id=job_id, status=status)


async def read_job(conn: asyncpg.Connection, domain: str, job_id: str) -> PlanningJob | None:
    row = await conn.fetchrow(_READ, domain, job_id, STALE_SECONDS)
    if row is None:
        return None
    status = row["status"]
    if status == "running" and row["stale"]:
        status = "interrupted"
    finished: datetime | None = row["finished_at"]
    result: Any = row["result"]
    return PlanningJob(
        job_id=row["job_id"],
        kind=row["kind"],
        status=status,
        done=row["done"],
        total=row["total"],
        created_at=row["created_at"].timestamp(),
        finished_at=None if finished is None else finished.timestamp(),
        error=row["error"],
        result=None if result is None else msgspec.Raw(result.encode()),
    )


async def job_by_id(request: web.Request, domain: str, job_id: str) -> PlanningJob | None:
    async with request.app[DB_POOL].acquire() as conn:
        return await read_job(conn, domain, job_id)
