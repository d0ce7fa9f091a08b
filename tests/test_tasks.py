"""``runtime.tasks.all_finished``: every work ends before a failure is raised."""

from __future__ import annotations

import asyncio

import pytest

from runtime.tasks import all_finished


async def test_a_failure_is_raised_once_every_other_work_has_ended() -> None:
    ended: list[str] = []

    async def fails() -> None:
        raise ConnectionResetError("the database went away")

    async def backs_off() -> None:
        await asyncio.sleep(0.05)  # a send waiting to retry
        ended.append("sent")

    with pytest.raises(ConnectionResetError):
        await all_finished([fails(), backs_off()])
    assert ended == ["sent"]


async def test_nothing_is_raised_when_every_work_succeeds() -> None:
    ended: list[int] = []

    async def work(n: int) -> None:
        ended.append(n)

    await all_finished(work(n) for n in range(3))
    assert sorted(ended) == [0, 1, 2]
