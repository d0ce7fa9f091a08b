"""``runtime.timeouts``: ``SharedTimeout`` (``asyncio.timeout``'s outcomes, one timer per
slice) and ``given_up_after`` (on time even when the work cannot end soon)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest

from runtime.timeouts import SharedTimeout, given_up_after


async def test_a_wait_that_ends_in_time_gives_its_result_and_leaves_nothing_armed() -> None:
    timeout = SharedTimeout(0.05, resolution=0.01)
    assert await timeout.within(asyncio.sleep(0.001, result="done")) == "done"
    assert timeout.waiting == 0
    # The slice's timer still fires, and finds no one: this task goes on uncancelled.
    await asyncio.sleep(0.1)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_wait_past_its_seconds_is_a_timeout_error_and_the_task_goes_on() -> None:
    timeout = SharedTimeout(0.05, resolution=0.01)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await timeout.within(asyncio.sleep(10))
    assert time.monotonic() - started >= 0.045  # the timer may fire a clock tick early
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0.01)  # no cancellation is left pending for the next await
    assert timeout.waiting == 0


async def test_concurrent_waits_in_one_slice_share_one_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    # A slice far longer than starting the waits takes: they all fall in one or two.
    timeout = SharedTimeout(0.2, resolution=1.0)
    timers: list[float] = []
    call_at = loop.call_at

    def counted(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        # The loop's other users (the test runner's own timers) are not counted.
        if getattr(callback, "__self__", None) is timeout:
            timers.append(when)
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counted)
    never = loop.create_future()
    waits = [asyncio.create_task(timeout.within(asyncio.shield(never))) for _ in range(200)]
    await asyncio.sleep(0)
    assert timeout.waiting == 200
    assert 1 <= len(timers) <= 2
    outcomes = await asyncio.gather(*waits, return_exceptions=True)
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes)
    assert timeout.waiting == 0
    never.cancel()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    timeout = SharedTimeout(10.0)
    waiting = asyncio.create_task(timeout.within(asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert timeout.waiting == 0


async def test_a_cancellation_from_elsewhere_at_the_deadline_is_not_taken_for_a_timeout() -> None:
    timeout = SharedTimeout(0.05, resolution=0.01)
    outcome: list[BaseException] = []

    async def wait() -> None:
        try:
            await timeout.within(asyncio.sleep(10))
        except BaseException as error:
            outcome.append(error)
            raise

    task = asyncio.create_task(wait())
    await asyncio.sleep(0)
    # Due with the slice's timer, so both run before the task does: two cancellations.
    (number,) = timeout._slices
    asyncio.get_running_loop().call_at(number * 0.01, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(outcome) == 1
    assert type(outcome[0]) is asyncio.CancelledError
    assert timeout.waiting == 0


async def test_a_wait_in_cleanup_after_a_cancellation_times_out_as_asyncio_timeout_does() -> None:
    """A task cancelled before (its cleanup awaiting, the cancellation still counted) meets
    a ``TimeoutError`` from a wait that takes too long, like ``asyncio.timeout`` gives."""
    timeout = SharedTimeout(0.05, resolution=0.01)
    outcomes: list[str] = []

    async def cleanup(wait: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            try:
                await wait()
            except TimeoutError:
                outcomes.append("timeout")

    async def ours() -> None:
        await timeout.within(asyncio.sleep(10))

    async def asyncio_timeout() -> None:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(10)

    for wait in (asyncio_timeout, ours):
        task = asyncio.create_task(cleanup(wait))
        await asyncio.sleep(0)
        task.cancel()
        await task
    assert outcomes == ["timeout", "timeout"]


def test_seconds_and_resolution_must_be_positive() -> None:
    for seconds, resolution in [(0.0, 0.05), (-1.0, 0.05), (1.0, 0.0), (float("nan"), 0.05)]:
        with pytest.raises(ValueError, match="positive"):
            SharedTimeout(seconds, resolution=resolution)


async def test_given_up_after_gives_the_works_outcome() -> None:
    assert await given_up_after(asyncio.sleep(0, result="done"), 1.0) == "done"
    with pytest.raises(KeyError):
        await given_up_after(_fails(), 1.0)


async def _fails() -> None:
    raise KeyError("no")


async def test_given_up_after_answers_on_time_when_the_cancelled_work_cannot_end() -> None:
    """The work holds on through its cancellation (as asyncpg's pool does, resetting a
    connection whose server stopped answering): the caller is answered at its seconds, and
    the work, cancelled, ends later on its own with its error retrieved."""
    released = asyncio.Event()
    cancelled = asyncio.Event()
    ended = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            await released.wait()  # cleaning up, and no sooner done than this
            ended.set()
            raise RuntimeError("ended late") from None
        return "never"

    with pytest.raises(TimeoutError):
        await given_up_after(stubborn(), 0.05)
    await asyncio.wait_for(cancelled.wait(), 1)
    assert not ended.is_set()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    released.set()
    await asyncio.wait_for(ended.wait(), 1)
    await asyncio.sleep(0)
    gc.collect()  # an unretrieved error is reported when its task is collected
    assert reported == []


async def test_given_up_after_passes_a_cancellation_on_to_the_work() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.create_task(given_up_after(work(), 10))
    await started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(cancelled.wait(), 1)
