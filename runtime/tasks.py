"""Background tasks of the process (workers, pumps, checks), started and stopped one way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
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


class Stops:
    """The stops of a process's background tasks that may all be asked at once when it
    shuts down (``ask_all``), before its resources close one after another (each resource
    waits for its own task there): the tasks then wind down together, and the shutdown takes
    as long as the slowest of them, not their sum. Only tasks whose stop ends nothing but
    their own work belong here; one that must outlast the others (``TopicKeys.run``, which
    names the keys they took) stops in its turn."""

    def __init__(self) -> None:
        self._stops: dict[str, Callable[[], None]] = {}

    def add(self, name: str, stop: Callable[[], None]) -> None:
        self._stops[name] = stop

    def discard(self, name: str) -> None:
        self._stops.pop(name, None)

    def ask_all(self) -> None:
        for stop in list(self._stops.values()):
            stop()


class TaskFailures:
    """The background tasks of a process that ended by an error before the end of their
    block. Each is logged when it ends (``background_task_failed``: the task, the error's
    type and its traceback without messages) and ``failed`` is set: ``switchboard.cli.serve``
    then stops the process, which exits 1, so that whatever supervises it starts it again.
    A process serving on would answer webhooks and readiness with part of its work gone (a
    router with no routing loop), and only its shutdown would have told."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.failed = asyncio.Event()

    def ended(self, task: asyncio.Task[Any]) -> None:
        """``task`` ended on its own: recorded when by an error."""
        if not _failed(task):
            return
        error = task.exception()
        log.error(
            "background_task_failed",
            task=task.get_name(),
            error=type(error).__name__,
            exc_info=error,
        )
        self.names.append(task.get_name())
        self.failed.set()


@contextlib.asynccontextmanager
async def background(
    name: str,
    work: Coroutine[Any, Any, None],
    stop: Callable[[], None] | None = None,
    *,
    grace_seconds: float = STOP_TIMEOUT,
    stops: Stops | None = None,
    failures: TaskFailures | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``work`` as a task for the duration of the block; then ``stop_task`` it. With
    ``stops``, its ``stop`` may be asked earlier, with the others' (``Stops.ask_all``). With
    ``failures``, an error that ends it before the block does is reported there at once,
    rather than raised when the block ends."""
    task = asyncio.create_task(work, name=name)
    if failures is not None:
        task.add_done_callback(failures.ended)
    if stops is not None and stop is not None:
        stops.add(name, stop)
    try:
        yield task
    finally:
        if stops is not None:
            stops.discard(name)
        reported = failures is not None and _failed(task)
        if failures is not None:
            task.remove_done_callback(failures.ended)
        if not reported:
            await stop_task(task, stop, grace_seconds=grace_seconds)


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


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


async def all_finished(works: Iterable[Awaitable[None]]) -> None:
    """Await every one of ``works`` to its end, then raise the first failure. ``gather``
    raises at the first and leaves the others running: work that the caller then does
    again (a batch read again after an error) would run twice."""
    outcomes = await asyncio.gather(*works, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
