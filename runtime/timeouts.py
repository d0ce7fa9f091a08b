"""One timeout for many concurrent awaits, with one timer per slice of time.

``asyncio.timeout`` makes a timer for each use: a ``TimerHandle`` built in Python, pushed
on the event loop's heap with Python comparisons, and cancelled again. A webhook's publish
waits for the broker's acknowledgement under a timeout, so an adapter made and cancelled
one timer per request: about 4 µs of the request, measured with 64 requests in flight.
``SharedTimeout.within`` files the waiting task under the slice of ``resolution`` seconds
its deadline falls in instead; the first to arrive in a slice sets the slice's one timer,
and a task leaves its slice when its wait ends (0.7 to 1.1 µs, measured alike).

A wait ends with ``TimeoutError`` between ``seconds`` and ``seconds + resolution`` after
it began: the same exception, and the same handling of a task cancelled from elsewhere
meanwhile, as ``asyncio.timeout``'s.

``given_up_after`` is the other bound: the work in a task of its own, its caller answered
on time even when the work, cancelled, cannot end soon.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

_GIVEN_UP: set[asyncio.Future[Any]] = set()
"""Work ``given_up_after`` cancelled and no longer waits for, held until it ends."""


async def given_up_after(work: Awaitable[T], seconds: float) -> T:
    """``work``'s outcome, or ``TimeoutError`` once ``seconds`` have passed; ``work`` is then
    cancelled and left to end on its own.

    ``asyncio.timeout`` raises only once the cancelled work has ended, and some work cannot
    end soon: asyncpg's pool, given back a connection whose statement was cancelled, waits
    for the server to confirm, without end when the server stopped answering."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), seconds)
    except (TimeoutError, asyncio.CancelledError):
        if not task.done():
            task.cancel()
            _GIVEN_UP.add(task)
            task.add_done_callback(_forget)
        raise


def _forget(task: asyncio.Future[Any]) -> None:
    _GIVEN_UP.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an error of work given up is no one's to report


class SharedTimeout:
    """Waits of at most ``seconds`` (to ``resolution`` later), sharing their timers. A task
    waits in one ``within`` of a timeout at a time (the publisher's waits do not nest)."""

    def __init__(self, seconds: float, *, resolution: float = 0.05) -> None:
        if not seconds > 0 or not resolution > 0:
            raise ValueError("seconds and resolution must be positive")
        self.seconds = seconds
        self._resolution = resolution
        self._slices: dict[int, dict[asyncio.Task[Any], int]] = {}
        """Slice number → the tasks waiting whose deadline ends it, each with how many
        cancellations it had pending when its wait began."""
        self._expired: set[asyncio.Task[Any]] = set()
        """Tasks this timeout cancelled, until their wait has seen it."""

    @property
    def waiting(self) -> int:
        """Tasks waiting now."""
        return sum(map(len, self._slices.values()))

    async def within(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result; ``TimeoutError`` once it has taken ``seconds``."""
        task = asyncio.current_task()
        assert task is not None, "within() runs in a task"
        loop = task.get_loop()
        number = math.ceil((loop.time() + self.seconds) / self._resolution)
        waiting = self._slices.get(number)
        if waiting is None:
            waiting = self._slices[number] = {}
            loop.call_at(number * self._resolution, self._expire, number)
        waiting[task] = task.cancelling()
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours alone: a cancellation from elsewhere stays one (asyncio.timeout's rule).
            if task in self._expired and task.uncancel() <= waiting.get(task, 0):
                raise TimeoutError from None
            raise
        finally:
            waiting.pop(task, None)
            self._expired.discard(task)

    def _expire(self, number: int) -> None:
        # Each ``within`` of the slice keeps the slice's dict: what each task had pending
        # stays readable there once the slice is gone.
        for task in self._slices.pop(number, {}):
            self._expired.add(task)
            task.cancel()
