"""Background tasks of the process (workers, pumps, checks), started and stopped one way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import structlog

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
