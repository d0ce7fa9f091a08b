"""Weekly working hours as UTC instants: local time zones, shifts across midnight, ``24:00``,
shifts that touch or overlap, and the boundaries ``on_shift`` reports."""

from __future__ import annotations

import datetime as dt

from router.engine.schedule import intervals, on_shift
from schemas import AgentSchedule, ShiftInterval

MONDAY = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
"""Monday 1 January 2024, 00:00 UTC (Paris is UTC+1 then)."""
HOUR = 3600.0
WEEK = 7 * 24 * HOUR


def schedule(*weekly: tuple[int, str, str], timezone: str = "UTC") -> AgentSchedule:
    return AgentSchedule(
        timezone=timezone,
        weekly=tuple(ShiftInterval(day=day, start=start, end=end) for day, start, end in weekly),
    )


def test_hours_are_read_in_the_schedules_time_zone() -> None:
    paris = schedule((0, "09:30", "17:00"), timezone="Europe/Paris")
    assert on_shift(paris, MONDAY) == (False, MONDAY + 8.5 * HOUR)
    assert on_shift(paris, MONDAY + 8.5 * HOUR) == (True, MONDAY + 16 * HOUR)
    assert on_shift(paris, MONDAY + 16 * HOUR) == (False, MONDAY + WEEK + 8.5 * HOUR)


def test_a_name_that_is_no_zone_is_read_as_utc() -> None:
    """The API refuses such a name; a schedule that comes with one anyway (a directory of
    the tz database, a made-up name) must not stop the engine."""
    for zone in ("America", "Mars/Olympus"):
        odd = schedule((0, "09:30", "17:00"), timezone=zone)
        assert on_shift(odd, MONDAY) == (False, MONDAY + 9.5 * HOUR)


def test_a_shift_that_ends_at_or_before_its_start_ends_the_next_day() -> None:
    night = schedule((0, "22:00", "06:00"))
    assert on_shift(night, MONDAY + 23 * HOUR) == (True, MONDAY + 30 * HOUR)
    sunday_night = schedule((6, "22:00", "06:00"))
    assert on_shift(sunday_night, MONDAY + 2 * HOUR) == (True, MONDAY + 6 * HOUR)
    paris_night = schedule((0, "22:00", "06:00"), timezone="Europe/Paris")
    assert on_shift(paris_night, MONDAY + 22 * HOUR) == (True, MONDAY + 29 * HOUR)
    round_the_clock = schedule((0, "09:00", "09:00"))
    assert on_shift(round_the_clock, MONDAY + 10 * HOUR) == (True, MONDAY + 33 * HOUR)


def test_24_00_is_the_midnight_that_ends_the_day() -> None:
    evening = schedule((0, "18:00", "24:00"))
    assert on_shift(evening, MONDAY + 20 * HOUR) == (True, MONDAY + 24 * HOUR)
    paris_evening = schedule((0, "18:00", "24:00"), timezone="Europe/Paris")
    assert on_shift(paris_evening, MONDAY + 18 * HOUR) == (True, MONDAY + 23 * HOUR)
    past_midnight = schedule((0, "18:00", "24:30"))
    assert on_shift(past_midnight, MONDAY + 20 * HOUR) == (True, MONDAY + 24.5 * HOUR)


def test_shifts_that_touch_or_overlap_are_one_interval() -> None:
    monday = [(MONDAY + 9 * HOUR, MONDAY + 17 * HOUR)]
    next_monday = [(start + WEEK, end + WEEK) for start, end in monday]
    touching = schedule((0, "09:00", "12:00"), (0, "12:00", "17:00"))
    inside = schedule((0, "09:00", "17:00"), (0, "10:00", "12:00"))
    assert intervals(touching, MONDAY) == monday + next_monday
    assert intervals(inside, MONDAY) == monday + next_monday


def test_every_day_of_the_schedule_counts_whatever_its_order() -> None:
    tuesday_first = schedule((1, "09:00", "10:00"), (0, "09:00", "10:00"))
    assert on_shift(tuesday_first, MONDAY) == (False, MONDAY + 9 * HOUR)


def test_no_hours_is_never_on_shift_and_never_back() -> None:
    assert on_shift(schedule(), MONDAY) == (False, None)
