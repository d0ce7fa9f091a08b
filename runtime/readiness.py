"""``/readyz``: whether this process can do its job now, answered at once.

What "ready" means depends on the roles the process runs:

- **adapters**: webhooks and web chat can be accepted and published. Only the broker
  counts: a webhook is answered once the broker has its event, so an adapter goes on
  accepting during a PostgreSQL outage (its egress retries on its own), and pulling it
  from a load balancer then would turn away webhooks that providers do not all redeliver.
- **router**: PostgreSQL and the broker answer, the routing loop reports no problem, and
  no owned partition has input waiting while nothing was committed for ``stall_seconds``
  (a stuck partition is named).

Every process also watches the partition counts of the topics it routes by (``topics``):
records go to partition ``hash(domain) % count``, and one router owns partition i of each,
so a count that changes while the processes run (a broker that came back empty and created
the topics anew with its own default) sends records where no router reads them. Such a
change is a problem until the processes are restarted on topics made as they should be.

The checks run in a background task every ``interval`` seconds, each bounded by
``check_timeout``, on a connection of their own (a busy router holds the pool's
connections, and waiting for one of them is not an outage). ``/readyz`` answers from the
latest results at once, so a probe never waits on a slow dependency; results older than
three intervals count as a problem of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from runtime.db import DATABASE_ERRORS

log = structlog.get_logger(__name__)


class Worker(Protocol):
    """What readiness reads of a router worker (``router.shell.worker.RouterWorker``)."""

    @property
    def partitions(self) -> list[int]: ...

    problem: str | None

    def stalled_partitions(self, seconds: float) -> list[int]: ...


@dataclass
class Readiness:
    database_url: str | None
    """Checked when set (processes that run the router)."""
    producer: AIOKafkaProducer
    worker: Worker | None = None
    topics: tuple[str, ...] = ()
    """Topics whose partition counts must stay those of the first check."""
    interval: float = 2.0
    check_timeout: float = 1.5
    stall_seconds: float = 30.0
    problems: dict[str, str] = field(default_factory=lambda: {"starting": "not checked yet"})
    checked_at: float | None = None
    _connection: asyncpg.Connection | None = None
    _partitions: dict[str, int] | None = None
    """The partition count of each of ``topics`` at the first check that saw them all."""
    _reported: str | None = None

    async def run(self) -> None:
        """Check until cancelled."""
        try:
            while True:
                await self.check()
                await asyncio.sleep(self.interval)
        finally:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()

    async def check(self) -> None:
        problems: dict[str, str] = {}
        if self.database_url is not None:
            database = await self._check_database()
            if database is not None:
                problems["database"] = database
        broker = await self._check_broker()
        if broker is not None:
            problems["broker"] = broker
        elif self.topics:
            partitions = await self._check_partitions()
            if partitions is not None:
                problems["topics"] = partitions
        self.problems = problems
        self.checked_at = time.monotonic()

    async def _check_database(self) -> str | None:
        assert self.database_url is not None
        try:
            async with asyncio.timeout(self.check_timeout):
                if self._connection is None or self._connection.is_closed():
                    self._connection = await asyncpg.connect(self.database_url)
                await self._connection.fetchval("SELECT 1")
            return None
        except DATABASE_ERRORS as error:
            if self._connection is not None:
                self._connection.terminate()
                self._connection = None
            return type(error).__name__

    async def _check_broker(self) -> str | None:
        try:
            async with asyncio.timeout(self.check_timeout):
                if not await self.producer.client.force_metadata_update():
                    return "metadata unavailable"
            return None
        except (KafkaError, OSError, TimeoutError) as error:
            return type(error).__name__

    async def _check_partitions(self) -> str | None:
        client = self.producer.client
        node = client.get_random_node()
        if node is None:
            return "no broker known"
        # Asked not to create them: a broker that lost them would, with its own default.
        asked = MetadataRequest(list(self.topics), allow_auto_topic_creation=False)
        cluster = ClusterMetadata()
        try:
            async with asyncio.timeout(self.check_timeout):
                cluster.update_metadata(await client.send(node, asked))
        except (KafkaError, OSError, TimeoutError) as error:
            return type(error).__name__
        counts = {name: len(cluster.partitions_for_topic(name) or ()) for name in self.topics}
        if self._partitions is None:
            if not all(counts.values()):
                return f"topics missing: {sorted(n for n, c in counts.items() if not c)}"
            self._partitions = counts
            return None
        problem = _changed(self._partitions, counts)
        if problem is not None and problem != self._reported:
            log.error("topic_partitions_changed", problem=problem)
        self._reported = problem
        return problem

    def report(self) -> tuple[bool, dict[str, object]]:
        """(ready, body) from the latest checks and the routing loop's own state now."""
        problems = dict(self.problems)
        if self.checked_at is not None:
            age = time.monotonic() - self.checked_at
            if age > 3 * self.interval:
                problems["checks"] = f"last run {age:.0f} s ago"
        body: dict[str, object] = {}
        if self.worker is not None:
            body["partitions"] = self.worker.partitions
            if self.worker.problem is not None:
                problems["router"] = self.worker.problem
            stalled = self.worker.stalled_partitions(self.stall_seconds)
            if stalled:
                problems["stalled"] = (
                    f"partitions {stalled} have input waiting and committed nothing for "
                    f"{self.stall_seconds:.0f} s"
                )
        if problems:
            return False, {"status": "not ready", "problems": problems, **body}
        return True, {"status": "ready", **body}


def _changed(before: Mapping[str, int], now: Mapping[str, int]) -> str | None:
    changed = [
        f"{name} has {now[name] or 'no'} partitions, {count} when this process started"
        for name, count in before.items()
        if now[name] != count
    ]
    if not changed:
        return None
    return "; ".join(changed) + ": restart the processes once the topics are as they should be"
