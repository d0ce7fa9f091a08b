"""The routers' retention job (``runtime.retention``): a pass every ``[retention]
interval`` seconds, counted in ``switchboard_retention_rows_total`` and logged as one
``retention_run`` line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import asyncpg
import structlog

from runtime.metrics import Metrics
from runtime.retention import (
    RETENTION_ACTOR,
    Erase,
    Pass,
    RetentionConfig,
    RetentionJobConfig,
    run_pass,
    summary,
)
from runtime.sealing import sweep
from runtime.tasks import run_every

log = structlog.get_logger("runtime.retention")


class RetentionJob:
    """The routers' background task: a pass every ``interval`` seconds, the first one an
    interval after start. A failed pass (the database unreachable) is logged and the next
    one tries again."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        job: RetentionJobConfig,
        domains: Callable[[], Mapping[str, RetentionConfig]],
        *,
        topic_retention_ms: int | None = None,
        erase: Erase | None = None,
    ) -> None:
        self._erase = erase
        self._pool = pool
        self._metrics = metrics
        self._job = job
        self._domains = domains
        self._topic_retention_ms = topic_retention_ms
        self._stopping = asyncio.Event()
        self._warned: set[str] = set()
        self.passes = 0
        """Passes this job finished (tests wait for the next one)."""

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await run_every(self._job.interval, self._stopping, self.run_once, self._failed)

    def _failed(self, error: BaseException) -> None:
        log.warning("retention_failed", error=type(error).__name__)

    async def run_once(self) -> list[Pass]:
        started = time.monotonic()
        domains = self._domains()
        self._warn_about_topics(domains)
        passes = await run_pass(
            self._pool,
            domains,
            self._job,
            actor=RETENTION_ACTOR,
            should_stop=self._stopping.is_set,
            erase=self._erase,
        )
        for report in passes:
            bound = self._metrics.for_domain(report.domain)
            for key, rows in report.rows.items():
                if rows:
                    kind, action = key.split(".")
                    bound.counter(self._metrics.retention_rows, kind, action).inc(rows)
        shredded = await sweep(self._pool, topic_retention_ms=self._topic_retention_ms)
        for domain, rows in shredded.items():
            bound = self._metrics.for_domain(domain)
            bound.counter(self._metrics.retention_rows, "topic_keys", "deleted").inc(rows)
        self.passes += 1
        log.info(
            "retention_run",
            seconds=round(time.monotonic() - started, 3),
            topic_keys_deleted=sum(shredded.values()),
            **summary(passes),
        )
        return passes

    def _warn_about_topics(self, domains: Mapping[str, RetentionConfig]) -> None:
        """Once per domain and process: a period shorter than the topics' retention, which
        keep the same data on Kafka longer (see the README's topic retention rule)."""
        if self._topic_retention_ms is None:
            return
        topics_seconds = self._topic_retention_ms // 1000
        for name, retention in domains.items():
            periods = retention.periods()
            shortest = min(periods.values(), default=None)
            if shortest is None or shortest >= topics_seconds or name in self._warned:
                continue
            self._warned.add(name)
            log.warning(
                "retention_shorter_than_topics",
                domain=name,
                period_seconds=shortest,
                topic_retention_seconds=topics_seconds,
            )
