"""Shifts turned into agents online per interval."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from router.planning.shifts import Shift, staffed_from_shifts

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, tzinfo=PARIS).timestamp()  # local midnight


def hourly(shifts: list[Shift], hours: int = 48, start: float = MONDAY) -> tuple[int, ...]:
    return staffed_from_shifts(
        shifts, start=start, intervals=hours, interval_seconds=3600, tz="Europe/Paris"
    )


def test_day_shifts_add_up_in_local_time() -> None:
    counts = hourly(
        [
            Shift(start="09:00", end="17:00", agents=3),
            Shift(start="12:00", end="20:30", agents=2),
        ]
    )
    monday = counts[:24]
    assert monday[8] == 0
    assert monday[9:12] == (3, 3, 3)
    assert monday[12:17] == (5,) * 5
    assert monday[17:21] == (2,) * 4  # 20:00 starts before 20:30
    assert monday[21] == 0
    assert counts[24:] == monday


def test_a_night_shift_runs_into_the_next_morning_of_its_weekday_only() -> None:
    counts = hourly([Shift(start="22:00", end="06:00", agents=4, days=("mon",))], hours=72)
    assert counts[:22] == (0,) * 22  # Monday's early hours belong to a Sunday shift
    assert counts[22:30] == (4,) * 8  # Monday 22:00 to Tuesday 06:00
    assert counts[30:] == (0,) * 42  # no Tuesday night shift


def test_weekdays_and_a_clock_change() -> None:
    saturday = datetime(2026, 10, 24, tzinfo=PARIS).timestamp()  # the clocks go back Sunday
    counts = hourly(
        [Shift(start="09:00", end="10:00", agents=1, days=("sat", "sun", "mon"))],
        hours=24 * 3 + 1,
        start=saturday,
    )
    assert counts.count(1) == 3
    assert counts[9] == 1  # Saturday 09:00
    assert counts[24 + 9] == 0  # UTC hours: Sunday 09:00 local is one hour later
    assert counts[24 + 10] == 1
    assert counts[48 + 10] == 1  # Monday 09:00 local


def test_times_are_checked() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"start": "24:00", "end": "08:00", "agents": 1}, Shift)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"start": "09:00", "end": "17:00", "agents": 1, "days": ["xyz"]}, Shift)
