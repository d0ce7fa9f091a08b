"""Background tasks of the process (workers, pumps, checks), started and stopped one way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import structlog

from runtime.db import DATABASE_ERRORS

log = structlog.get_logger(__name__)

STOP_TIMEOUT = 30.0
"""Seconds a task asked to stop may take (its last batch, its commit) before it is cancelled."""


async def stop_task(
    task: asyncio.Task[Any],
    stop: Callable[[], None] | None = None,
    *,
    grace_seconds: float = STOP_TIMEOUT,
) -> None:
    """Ask ``task`` to finish (``stop``) and wait for it; cancel it when it does not within
    ``grace_seconds``, or at once when it has no ``stop``. Its own error is raised."""
    if stop is not None:
        stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_seconds)
            return
        except TimeoutError:
            log.error("task_stop_timed_out", task=task.get_name())
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def background(
    name: str,
    work: Coroutine[Any, Any, None],
    stop: Callable[[], None] | None = None,
    *,
    grace_seconds: float = STOP_TIMEOUT,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` as a task for the duration of the block; then ``stop_task`` it."""
    task = asyncio.create_task(work, name=name)
    try:
        yield task
    finally:
        await stop_task(task, stop, grace_seconds=grace_seconds)


async def run_every(
    interval: float,
    stopping: asyncio.Event,
    once: Callable[[], Awaitable[object]],
    failed: Callable[[BaseException], None],
) -> None:
    """Await ``once`` every ``interval`` seconds, the first time an interval from now, until
    ``stopping`` is set. A run the database failed is handed to ``failed`` (to log and
    count) and the next run tries again: a background job outlives an outage."""
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), timeout=interval)
            return
        except TimeoutError:
            pass
        try:
            await once()
        except DATABASE_ERRORS as error:
            failed(error)
