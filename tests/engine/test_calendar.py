"""Business-hours calendars, sectioned by the rules of ``router/engine/calendar.py``: weekly
hours, holidays, exceptions and their precedence, local times across DST changes, searches
and their bounds, validation; then properties over random calendars in zones with DST.

The properties draw whole or quarter seconds and every calendar boundary falls on a whole
second, so the arithmetic is exact and compared with ``==``.
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import math
import tomllib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.engine import calendar as calendar_module
from router.engine.calendar import (
    MAX_EXCEPTIONS,
    MAX_HOLIDAYS,
    MAX_INTERVALS_PER_DAY,
    SEARCH_DAYS,
    WEEKDAYS,
    BusinessCalendar,
    CompiledCalendar,
    Holiday,
    OneOffHours,
    WeeklyHours,
)
from tests.engine.builders import examples

HOUR = 3600.0
DAY = 24 * HOUR
Interval = tuple[str, str]
NINE_TO_FIVE = (("09:00", "17:00"),)
AROUND_THE_CLOCK = (("00:00", "24:00"),)


def utc(moment: str) -> float:
    """``"2026-03-29T00:30"`` in UTC, as Unix seconds."""
    return dt.datetime.fromisoformat(moment).replace(tzinfo=dt.UTC).timestamp()


def compiled(
    time_zone: str = "UTC",
    *,
    every_day: tuple[Interval, ...] = (),
    holidays: tuple[str, ...] = (),
    exceptions: tuple[tuple[str, str, bool], ...] = (),
    **weekly: tuple[Interval, ...],
) -> CompiledCalendar:
    """A compiled calendar: ``every_day`` for each weekday not given by name."""
    days = {name: weekly.get(name, every_day) for name in WEEKDAYS}
    return CompiledCalendar(
        BusinessCalendar(
            time_zone=time_zone,
            weekly=WeeklyHours(**days),
            holidays=tuple(Holiday(date=date) for date in holidays),
            exceptions=tuple(
                OneOffHours(start=start, end=end, open=is_open)
                for start, end, is_open in exceptions
            ),
        )
    )


def periods(calendar: CompiledCalendar, start: float, end: float) -> list[tuple[float, float]]:
    """The open periods that begin in ``[start, end)``, walked with next_open/next_close."""
    found: list[tuple[float, float]] = []
    t = start
    while (opens := calendar.next_open(t)) is not None and opens < end:
        closes = calendar.next_close(opens)
        assert closes is not None
        found.append((opens, closes))
        t = closes
    return found


def office_hours(calendar: CompiledCalendar, start: float, end: float) -> list[tuple[str, str]]:
    """``periods`` in UTC, to the minute: easier to check against a zone's offsets."""

    def text(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M")

    return [(text(opens), text(closes)) for opens, closes in periods(calendar, start, end)]


# Rule 1: weekly hours.


def test_weekly_hours_are_read_in_the_calendars_time_zone() -> None:
    paris = compiled("Europe/Paris", mon=NINE_TO_FIVE)
    monday = utc("2026-01-05T00:00")  # Paris is UTC+1 in January
    assert not paris.is_open(monday + 7 * HOUR + 59 * 60)
    assert paris.is_open(monday + 8 * HOUR)
    assert paris.is_open(monday + 16 * HOUR - 0.25)
    assert not paris.is_open(monday + 16 * HOUR)
    assert paris.next_open(monday) == monday + 8 * HOUR
    assert paris.next_close(monday + 9 * HOUR) == monday + 16 * HOUR
    assert paris.next_close(monday + 16 * HOUR) is None
    assert paris.next_open(monday + 16 * HOUR) == monday + 7 * DAY + 8 * HOUR


def test_a_day_may_list_several_intervals_and_absent_days_are_closed() -> None:
    split = compiled(tue=(("09:00", "12:00"), ("13:00", "17:30")))
    tuesday = utc("2026-01-06T00:00")
    assert periods(split, tuesday - 7 * DAY, tuesday + DAY) == [
        (tuesday - 7 * DAY + 9 * HOUR, tuesday - 7 * DAY + 12 * HOUR),
        (tuesday - 7 * DAY + 13 * HOUR, tuesday - 7 * DAY + 17.5 * HOUR),
        (tuesday + 9 * HOUR, tuesday + 12 * HOUR),
        (tuesday + 13 * HOUR, tuesday + 17.5 * HOUR),
    ]
    assert split.business_seconds(tuesday, tuesday + 7 * DAY) == 7.5 * HOUR


def test_24_00_ends_the_day_at_the_next_local_midnight() -> None:
    evening = compiled("America/New_York", fri=(("18:00", "24:00"),))
    friday = utc("2026-01-09T05:00")  # local midnight, UTC-5
    assert evening.next_close(friday + 20 * HOUR) == friday + DAY
    assert not evening.is_open(friday + DAY)


def test_hours_that_run_on_past_midnight_are_one_open_period() -> None:
    night = compiled(fri=(("22:00", "24:00"),), sat=(("00:00", "06:00"), ("06:00", "08:00")))
    friday = utc("2026-01-09T00:00")
    assert night.next_close(friday + 23 * HOUR) == friday + 32 * HOUR
    assert night.next_close(friday + 22 * HOUR) == friday + 32 * HOUR
    assert periods(night, friday, friday + 2 * DAY) == [(friday + 22 * HOUR, friday + 32 * HOUR)]


def test_hours_that_stop_short_of_midnight_are_two_periods() -> None:
    night = compiled(fri=(("22:00", "23:59"),), sat=(("00:00", "06:00"),))
    friday = utc("2026-01-09T00:00")
    assert night.next_close(friday + 23 * HOUR) == friday + 23 * HOUR + 59 * 60
    assert night.next_open(friday + 23 * HOUR + 59 * 60) == friday + DAY


# Rule 2: holidays.


def test_a_holiday_closes_its_whole_local_day() -> None:
    office = compiled("Europe/Paris", every_day=NINE_TO_FIVE, holidays=("2026-12-25",))
    christmas = utc("2026-12-24T23:00")  # local midnight, UTC+1
    assert not office.is_open(christmas + 10 * HOUR)
    assert office.business_seconds(christmas, christmas + DAY) == 0
    assert office.next_open(christmas) == christmas + DAY + 9 * HOUR
    assert office.business_seconds(christmas - DAY, christmas) == 8 * HOUR


def test_a_holiday_closes_the_hours_that_run_into_it_only_from_its_midnight() -> None:
    night = compiled(every_day=(("22:00", "24:00"), ("00:00", "02:00")), holidays=("2026-12-25",))
    eve = utc("2026-12-24T00:00")
    assert night.next_close(eve + 23 * HOUR) == eve + DAY
    assert night.next_open(eve + DAY) == eve + 2 * DAY


# Rule 3: exceptions, over holidays, over weekly hours.


def test_an_opening_exception_opens_a_sunday() -> None:
    office = compiled(
        "Europe/Paris",
        every_day=NINE_TO_FIVE,
        sun=(),
        exceptions=(("2026-12-20T10:00", "2026-12-20T16:00", True),),
    )
    sunday = utc("2026-12-19T23:00")
    assert periods(office, sunday, sunday + DAY) == [(sunday + 10 * HOUR, sunday + 16 * HOUR)]
    assert not office.is_open(sunday + 7 * DAY + 10 * HOUR)


def test_an_opening_exception_opens_part_of_a_holiday() -> None:
    office = compiled(
        "Europe/Paris",
        every_day=(("09:00", "17:30"),),
        holidays=("2026-12-24",),
        exceptions=(("2026-12-24T09:00", "2026-12-24T13:00", True),),
    )
    eve = utc("2026-12-23T23:00")
    assert periods(office, eve, eve + DAY) == [(eve + 9 * HOUR, eve + 13 * HOUR)]


def test_a_closing_exception_makes_a_late_opening() -> None:
    office = compiled(
        every_day=NINE_TO_FIVE, exceptions=(("2026-12-21T09:00", "2026-12-21T11:00", False),)
    )
    monday = utc("2026-12-21T00:00")
    assert office.next_open(monday + 8 * HOUR) == monday + 11 * HOUR
    assert office.business_seconds(monday, monday + DAY) == 6 * HOUR


def test_a_closure_may_cross_midnight() -> None:
    always = compiled(
        every_day=AROUND_THE_CLOCK,
        exceptions=(("2026-12-31T22:00", "2027-01-01T02:00", False),),
    )
    new_year = utc("2027-01-01T00:00")
    assert always.next_close(new_year - 3 * HOUR) == new_year - 2 * HOUR
    assert not always.is_open(new_year)
    assert always.next_open(new_year - 2 * HOUR) == new_year + 2 * HOUR
    assert always.business_seconds(new_year - DAY, new_year + DAY) == 2 * DAY - 4 * HOUR


def test_an_opening_exception_may_cross_midnight_and_join_the_weekly_hours() -> None:
    office = compiled(
        every_day=NINE_TO_FIVE,
        sat=(),
        sun=(),
        exceptions=(("2027-01-03T20:00", "2027-01-04T09:00", True),),
    )
    sunday = utc("2027-01-03T00:00")
    assert office.next_open(sunday) == sunday + 20 * HOUR
    assert office.next_close(sunday + 21 * HOUR) == sunday + DAY + 17 * HOUR


def test_exceptions_that_agree_may_overlap() -> None:
    office = compiled(
        exceptions=(
            ("2027-01-03T10:00", "2027-01-03T14:00", True),
            ("2027-01-03T12:00", "2027-01-03T16:00", True),
            ("2027-01-03T16:00", "2027-01-03T17:00", False),
        )
    )
    sunday = utc("2027-01-03T00:00")
    assert periods(office, sunday, sunday + DAY) == [(sunday + 10 * HOUR, sunday + 16 * HOUR)]


def test_a_long_exception_holds_across_shorter_ones_that_start_inside_it() -> None:
    office = compiled(
        every_day=NINE_TO_FIVE,
        exceptions=(
            ("2026-12-20T00:00", "2027-01-01T00:00", False),
            ("2026-12-21T10:00", "2026-12-21T12:00", False),
        ),
    )
    assert not office.is_open(utc("2026-12-25T10:00"))
    assert office.next_open(utc("2026-12-22T00:00")) == utc("2027-01-01T09:00")


# Rule 4: local times across DST changes. Every day here opens 01:30-03:30 and 09:00-17:00:
# ten hours, nine on a spring-forward day (01:30-03:30 lasts one), eleven on a fall-back day
# (it spans the repeated hour).

DST_DAYS = [
    pytest.param(
        "Europe/Paris",
        "2026-03-28T23:00",
        [("2026-03-29T00:30", "2026-03-29T01:30"), ("2026-03-29T07:00", "2026-03-29T15:00")],
        id="paris-spring-forward",
    ),
    pytest.param(
        "Europe/Paris",
        "2026-10-24T22:00",
        [("2026-10-24T23:30", "2026-10-25T02:30"), ("2026-10-25T08:00", "2026-10-25T16:00")],
        id="paris-fall-back",
    ),
    pytest.param(
        "America/New_York",
        "2026-03-08T05:00",
        [("2026-03-08T06:30", "2026-03-08T07:30"), ("2026-03-08T13:00", "2026-03-08T21:00")],
        id="new-york-spring-forward",
    ),
    pytest.param(
        "America/New_York",
        "2026-11-01T04:00",
        [("2026-11-01T05:30", "2026-11-01T08:30"), ("2026-11-01T14:00", "2026-11-01T22:00")],
        id="new-york-fall-back",
    ),
    pytest.param(
        "America/New_York",
        "2026-03-09T04:00",
        [("2026-03-09T05:30", "2026-03-09T07:30"), ("2026-03-09T13:00", "2026-03-09T21:00")],
        id="new-york-day-after",
    ),
]


@pytest.mark.parametrize(("time_zone", "midnight", "expected"), DST_DAYS)
def test_open_periods_on_dst_change_days(
    time_zone: str, midnight: str, expected: list[tuple[str, str]]
) -> None:
    office = compiled(time_zone, every_day=(("01:30", "03:30"), ("09:00", "17:00")))
    start = utc(midnight)
    zone = ZoneInfo(time_zone)
    day = dt.datetime.fromtimestamp(start, zone).date() + dt.timedelta(days=1)
    end = dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp()
    spans = [(utc(opens), utc(closes)) for opens, closes in expected]
    assert periods(office, start, end) == spans
    assert office.business_seconds(start, end) == sum(closes - opens for opens, closes in spans)


def test_an_opening_in_a_spring_forward_gap_opens_when_the_gap_ends() -> None:
    office = compiled("America/New_York", every_day=(("02:30", "05:00"),))
    assert office.next_open(utc("2026-03-08T05:00")) == utc("2026-03-08T07:00")  # 03:00 EDT
    assert office.next_close(utc("2026-03-08T07:00")) == utc("2026-03-08T09:00")


def test_a_close_in_a_spring_forward_gap_closes_when_the_gap_ends() -> None:
    office = compiled("Europe/Paris", every_day=(("00:00", "02:30"),))
    assert office.next_close(utc("2026-03-28T23:00")) == utc("2026-03-29T01:00")  # 03:00 CEST


def test_hours_inside_a_spring_forward_gap_are_empty_that_day() -> None:
    office = compiled("America/New_York", every_day=(("02:15", "02:45"),))
    assert office.next_open(utc("2026-03-08T05:00")) == utc("2026-03-09T06:15")
    assert office.business_seconds(utc("2026-03-07T05:00"), utc("2026-03-10T04:00")) == HOUR


def test_hours_that_touch_across_a_gap_are_one_period() -> None:
    office = compiled("Europe/Paris", every_day=(("00:00", "02:00"), ("03:00", "05:00")))
    assert office.next_close(utc("2026-03-28T23:30")) == utc("2026-03-29T03:00")
    assert office.next_close(utc("2026-03-29T23:30")) == utc("2026-03-30T00:00")


def test_a_close_at_a_repeated_time_is_its_first_occurrence() -> None:
    office = compiled("America/New_York", every_day=(("00:00", "01:30"),))
    assert office.next_close(utc("2026-11-01T04:00")) == utc("2026-11-01T05:30")  # 01:30 EDT
    assert not office.is_open(utc("2026-11-01T06:15"))  # 01:15 EST, shown a second time


def test_an_opening_at_a_repeated_time_is_its_first_occurrence() -> None:
    office = compiled("America/New_York", every_day=(("01:30", "05:00"),))
    assert office.next_open(utc("2026-11-01T04:00")) == utc("2026-11-01T05:30")  # 01:30 EDT
    assert office.is_open(utc("2026-11-01T06:15"))  # the clock turned back: still open
    assert office.next_close(utc("2026-11-01T06:15")) == utc("2026-11-01T10:00")


def test_half_hour_dst_changes_in_lord_howe() -> None:
    island = compiled("Australia/Lord_Howe", every_day=(("02:10", "03:00"),))
    # 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11).
    assert island.next_open(utc("2026-10-03T13:00")) == utc("2026-10-03T15:30")
    assert island.next_close(utc("2026-10-03T15:30")) == utc("2026-10-03T16:00")
    morning = compiled("Australia/Lord_Howe", every_day=(("01:00", "03:00"),))
    # 2026-04-05: 02:00 (+11) falls back to 01:30 (+10:30); 01:30-02:00 is shown twice.
    assert morning.next_open(utc("2026-04-04T13:00")) == utc("2026-04-04T14:00")
    assert morning.next_close(utc("2026-04-04T14:00")) == utc("2026-04-04T16:30")


def test_a_clock_turned_back_across_midnight_keeps_the_new_days_hours() -> None:
    # St. John's, 2009-11-01: 00:01 NDT (UTC-2:30) went back to Saturday 23:01 NST (UTC-3:30).
    island = compiled("America/St_Johns", sat=(("23:00", "24:00"),), sun=(("00:00", "00:30"),))
    assert office_hours(island, utc("2009-10-31T12:00"), utc("2009-11-01T12:00")) == [
        ("2009-11-01T01:30", "2009-11-01T04:00")
    ]
    assert island.is_open(utc("2009-11-01T03:00"))  # Saturday 23:31 on the clock, again
    assert island.business_seconds(utc("2009-11-01T02:30"), utc("2009-11-01T05:00")) == 1.5 * HOUR


def test_a_day_the_zone_skips_has_no_hours() -> None:
    apia = compiled("Pacific/Apia", thu=NINE_TO_FIVE, fri=NINE_TO_FIVE, sat=NINE_TO_FIVE)
    # Samoa went from Thursday 2011-12-29 (UTC-10) to Saturday 2011-12-31 (UTC+14).
    thursday = utc("2011-12-29T10:00")
    assert office_hours(apia, thursday, thursday + 3 * DAY) == [
        ("2011-12-29T19:00", "2011-12-30T03:00"),
        ("2011-12-30T19:00", "2011-12-31T03:00"),
    ]
    assert apia.business_seconds(thursday, thursday + 3 * DAY) == 16 * HOUR


# Rule 6 and the arithmetic: searches and their bounds.


def test_business_seconds_counts_open_time_in_a_half_open_range() -> None:
    office = compiled(mon=NINE_TO_FIVE)
    monday = utc("2026-01-05T00:00")
    assert office.business_seconds(monday + 10 * HOUR, monday + 11 * HOUR) == HOUR
    assert office.business_seconds(monday, monday + 9 * HOUR) == 0
    assert office.business_seconds(monday + 17 * HOUR, monday + DAY) == 0
    assert office.business_seconds(monday + 11 * HOUR, monday + 10 * HOUR) == 0


def test_add_business_seconds_runs_out_at_a_close_rather_than_the_next_opening() -> None:
    office = compiled(every_day=NINE_TO_FIVE)
    monday = utc("2026-01-05T00:00")
    assert office.add_business_seconds(monday + 9 * HOUR, 8 * HOUR) == monday + 17 * HOUR
    assert office.add_business_seconds(monday + 16 * HOUR, 2 * HOUR) == monday + DAY + 10 * HOUR
    assert office.add_business_seconds(monday + 20 * HOUR, 0.5) == monday + DAY + 9 * HOUR + 0.5


def test_adding_no_business_seconds_is_the_instant_itself_open_or_not() -> None:
    office = compiled(every_day=NINE_TO_FIVE)
    night = utc("2026-01-05T03:00")
    assert office.add_business_seconds(night, 0) == night
    assert office.add_business_seconds(night + 8 * HOUR, 0) == night + 8 * HOUR


@pytest.mark.parametrize("seconds", [-1.0, math.inf, math.nan])
def test_add_business_seconds_refuses_negative_or_endless_amounts(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        compiled(every_day=NINE_TO_FIVE).add_business_seconds(utc("2026-01-05T00:00"), seconds)


def test_a_calendar_that_never_opens_again_says_so() -> None:
    past = compiled(exceptions=(("2026-01-05T09:00", "2026-01-05T17:00", True),))
    after = utc("2026-01-06T00:00")
    assert past.next_open(utc("2026-01-05T00:00")) == utc("2026-01-05T09:00")
    assert past.next_open(after) is None
    assert past.add_business_seconds(after, 1) is None
    assert past.add_business_seconds(utc("2026-01-05T16:00"), HOUR) == utc("2026-01-05T17:00")
    assert past.add_business_seconds(utc("2026-01-05T16:00"), HOUR + 1) is None


def test_searches_look_search_days_local_days_from_the_instants_own() -> None:
    def opening_in(days: int) -> CompiledCalendar:
        day = dt.date(2026, 1, 5) + dt.timedelta(days=days)
        return compiled(exceptions=((f"{day}T09:00", f"{day}T10:00", True),))

    start = utc("2026-01-05T08:00")
    last, beyond = opening_in(SEARCH_DAYS - 1), opening_in(SEARCH_DAYS)
    assert last.next_open(start) == start + (SEARCH_DAYS - 1) * DAY + HOUR
    assert last.add_business_seconds(start, HOUR) == start + (SEARCH_DAYS - 1) * DAY + 2 * HOUR
    assert beyond.next_open(start) is None
    assert beyond.add_business_seconds(start, HOUR) is None
    assert beyond.business_seconds(start, start + (SEARCH_DAYS + 1) * DAY) == HOUR


def test_a_long_closure_ends_the_search_but_not_the_count() -> None:
    office = compiled(
        mon=(("09:00", "10:00"),),
        exceptions=(("2026-01-01T00:00", "2036-01-01T00:00", False),),
    )
    start = utc("2026-01-05T00:00")
    assert office.next_open(start) is None
    assert office.next_open(utc("2036-01-01T00:00")) == utc("2036-01-07T09:00")
    assert office.business_seconds(start, utc("2036-01-08T00:00")) == HOUR


def test_an_open_period_longer_than_the_search_has_no_close() -> None:
    start = utc("2026-01-05T00:00")
    always = compiled(every_day=AROUND_THE_CLOCK)
    assert always.next_close(start) is None
    reopened = compiled(
        every_day=AROUND_THE_CLOCK,
        holidays=("2026-01-10",),
        exceptions=(("2026-01-10T00:00", "2026-01-11T00:00", True),),
    )
    assert reopened.next_close(start) is None
    holiday = dt.date(2026, 1, 5) + dt.timedelta(days=SEARCH_DAYS - 2)
    closing = compiled(every_day=AROUND_THE_CLOCK, holidays=(str(holiday),))
    assert closing.next_close(start) == start + (SEARCH_DAYS - 2) * DAY


def test_counts_over_decades_stay_exact() -> None:
    office = compiled(mon=NINE_TO_FIVE)
    start, weeks = utc("2000-01-03T00:00"), 1100  # more days than a compiled calendar keeps
    assert office.business_seconds(start, start + weeks * 7 * DAY) == weeks * 8 * HOUR
    assert office.is_open(start + 9 * HOUR)
    assert office.add_business_seconds(start, weeks * 8 * HOUR) == (
        start + (weeks - 1) * 7 * DAY + 17 * HOUR
    )


# Validation: errors name the field.

TOO_MANY_INTERVALS = tuple(
    (f"{hour:02d}:00", f"{hour:02d}:30") for hour in range(MAX_INTERVALS_PER_DAY + 1)
)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone 'Mars/Olympus_Mons'"),
        ({"time_zone": "America"}, "time_zone 'America'"),
        ({"time_zone": "../etc/passwd"}, "time_zone"),
        # files of the tz database that are no zone of their own, or not Unix time's
        ({"time_zone": "localtime"}, "time_zone 'localtime'"),
        ({"time_zone": "Factory"}, "time_zone 'Factory'"),
        ({"time_zone": "right/UTC"}, "time_zone 'right/UTC'"),
        ({"time_zone": "posix/Europe/Paris"}, "time_zone 'posix/Europe/Paris'"),
        ({"weekly": {"mon": [["9:00", "17:00"]]}}, r"weekly\.mon\[0\] start"),
        ({"weekly": {"tue": [["09:00", "24:30"]]}}, r"weekly\.tue\[0\] end"),
        ({"weekly": {"wed": [["24:00", "24:00"]]}}, r"weekly\.wed\[0\] start"),
        ({"weekly": {"thu": [["09:00", "09:60"]]}}, r"weekly\.thu\[0\] end"),
        ({"weekly": {"fri": [["17:00", "09:00"]]}}, r"weekly\.fri\[0\]: start '17:00'"),
        ({"weekly": {"sat": [["10:00", "10:00"]]}}, r"weekly\.sat\[0\]: start"),
        (
            {"weekly": {"sun": [["13:00", "17:00"], ["09:00", "13:30"]]}},
            r"weekly\.sun\[1\] and weekly\.sun\[0\] overlap",
        ),
        ({"weekly": {"mon": TOO_MANY_INTERVALS}}, r"weekly\.mon lists 17 intervals"),
        ({"weekly": {"monday": []}}, "unknown field `monday`"),
        ({"holidays": [{"date": "2026-02-30"}]}, r"date .*'2026-02-30' - at `\$\.holidays\[0\]`"),
        ({"holidays": [{"date": "20261225"}]}, "date"),
        ({"holidays": [{"date": "2026-12-25T00:00"}]}, "date"),
        (
            {
                "exceptions": [
                    {"start": "2026-12-24 09:00", "end": "2026-12-24T13:00", "open": True}
                ]
            },
            r"start .*'2026-12-24 09:00' - at `\$\.exceptions\[0\]`",
        ),
        (
            {
                "exceptions": [
                    {"start": "2026-12-24T09:00", "end": "2026-12-24T24:00", "open": True}
                ]
            },
            "end",
        ),
        (
            {
                "exceptions": [
                    {"start": "2026-12-24T13:00", "end": "2026-12-24T13:00", "open": True}
                ]
            },
            "start '2026-12-24T13:00' must be before end",
        ),
        (
            {"exceptions": [{"start": "2026-12-24T09:00", "end": "2026-12-24T13:00"}]},
            "missing required field `open`",
        ),
        (
            {
                "exceptions": [
                    {"start": "2026-12-24T09:00", "end": "2026-12-24T13:00", "open": True},
                    {"start": "2026-12-23T18:00", "end": "2026-12-24T09:01", "open": False},
                ]
            },
            r"exceptions\[0\] and exceptions\[1\] overlap and disagree on open",
        ),
        (
            {
                "exceptions": [
                    {"start": "2026-12-24T09:00", "end": "2026-12-24T10:00", "open": False},
                    {"start": "2026-12-24T09:30", "end": "2026-12-24T12:00", "open": False},
                    {"start": "2026-12-24T11:00", "end": "2026-12-24T13:00", "open": True},
                ]
            },
            r"exceptions\[2\] and exceptions\[1\] overlap",
        ),
        (
            {"holidays": [{"date": "2026-01-01"}] * (MAX_HOLIDAYS + 1)},
            f"holidays lists {MAX_HOLIDAYS + 1} days",
        ),
        (
            {
                "exceptions": [
                    {"start": "2026-12-24T09:00", "end": "2026-12-24T13:00", "open": True}
                ]
                * (MAX_EXCEPTIONS + 1)
            },
            f"exceptions lists {MAX_EXCEPTIONS + 1} ranges",
        ),
    ],
)
def test_invalid_calendars_are_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        msgspec.convert({"time_zone": "Europe/Paris", **fields}, BusinessCalendar)


def test_calendars_at_the_limits_are_accepted() -> None:
    fields = {
        "time_zone": "America/New_York",
        "weekly": {
            "mon": TOO_MANY_INTERVALS[:MAX_INTERVALS_PER_DAY],
            "tue": [["09:00", "12:00"], ["12:00", "24:00"], ["00:00", "09:00"]],
        },
        "holidays": [{"date": "2026-01-01"}] * MAX_HOLIDAYS,
        "exceptions": [
            {"start": "2026-12-24T09:00", "end": "2026-12-24T13:00", "open": True},
            {"start": "2026-12-24T13:00", "end": "2026-12-24T18:00", "open": False},
        ]
        * (MAX_EXCEPTIONS // 2),
    }
    calendar = msgspec.convert(fields, BusinessCalendar)
    assert calendar.weekly.minutes()[1] == ((0, 1440),)
    office = CompiledCalendar(calendar)
    assert office.next_close(utc("2026-12-24T15:00")) == utc("2026-12-24T18:00")


def test_each_config_struct_validates_when_built_directly() -> None:
    with pytest.raises(ValueError, match="time_zone"):
        BusinessCalendar(time_zone="Nowhere")
    with pytest.raises(ValueError, match=r"weekly\.mon\[0\] end"):
        WeeklyHours(mon=(("09:00", "25:00"),))
    with pytest.raises(ValueError, match="date"):
        Holiday(date="2026-13-01")
    with pytest.raises(ValueError, match="end"):
        OneOffHours(start="2026-12-24T09:00", end="2026-12-24", open=True)


def test_the_documented_example_decodes_and_behaves_as_its_comments_say() -> None:
    doc = inspect.getdoc(calendar_module)
    assert doc is not None
    example = doc.split("Example (TOML)::", 1)[1].split("Rules:", 1)[0]
    document = tomllib.loads(inspect.cleandoc(example))
    config = document["domains"]["acme"]["routing"]["calendars"]["office"]
    office = CompiledCalendar(msgspec.convert(config, BusinessCalendar))
    assert office.next_close(utc("2026-12-04T22:00")) == utc("2026-12-05T05:00")  # Fri night
    assert office.next_open(utc("2026-12-24T07:00")) == utc("2026-12-24T08:00")
    assert office.next_close(utc("2026-12-24T08:00")) == utc("2026-12-24T12:00")
    # Christmas closes Friday night, not the Saturday morning hours it runs into.
    assert office.next_open(utc("2026-12-24T12:00")) == utc("2026-12-25T23:00")
    assert office.next_close(utc("2027-01-01T21:00")) == utc("2027-01-01T22:00")
    assert office.next_open(utc("2027-01-01T22:00")) == utc("2027-01-02T01:00")
    assert office.next_close(utc("2027-01-02T01:00")) == utc("2027-01-02T05:00")


# Properties over random calendars. The reference model reads the local clock directly: an
# instant is open when the latest time the clock has shown by then falls in open local hours
# (rule 4), the hours being the first exception holding that time, else closed on a holiday,
# else the weekly hours.

ZONES_AND_DAYS: dict[str, tuple[dt.date, ...]] = {
    "Europe/Paris": (dt.date(2026, 3, 29), dt.date(2026, 10, 25)),
    "America/New_York": (dt.date(2026, 3, 8), dt.date(2026, 11, 1)),
    "Australia/Lord_Howe": (dt.date(2026, 4, 5), dt.date(2026, 10, 4)),
    "America/St_Johns": (dt.date(2009, 11, 1),),
    "Pacific/Apia": (dt.date(2011, 12, 29), dt.date(2019, 4, 7), dt.date(2019, 9, 29)),
    "UTC": (dt.date(2026, 6, 1),),
}
"""Zones with their DST (or date-line) change days, around which the properties look."""

MINUTES = st.one_of(
    st.sampled_from([0, 60, 90, 120, 130, 150, 180, 210, 240, 540, 1020, 1410, 1440]),
    st.integers(0, 1440),
)
"""Minutes of a local day, with the DST change hours and midnight drawn often."""


def clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class Case:
    calendar: BusinessCalendar
    day: dt.date
    """The DST change day the calendar's holidays, exceptions and instants surround."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.calendar.time_zone)

    def local(self, days: int, minute: int) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time()) + dt.timedelta(days=days, minutes=minute)


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[Interval, ...]:
    """Intervals between consecutive drawn minutes, some kept: disjoint, some touching."""
    points = sorted(draw(st.sets(MINUTES, max_size=6)))
    pairs = list(itertools.pairwise(points))
    keep = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    return tuple((clock(a), clock(b)) for (a, b), kept in zip(pairs, keep, strict=True) if kept)


@st.composite
def exception_ranges(draw: st.DrawFn, day: dt.date) -> tuple[OneOffHours, ...]:
    """Up to four ranges near ``day``, some across midnight; one that would contradict an
    earlier one is left out."""
    kept: list[tuple[dt.datetime, dt.datetime, bool]] = []
    midnight = dt.datetime.combine(day, dt.time())
    for _ in range(draw(st.integers(0, 4))):
        start = midnight + dt.timedelta(days=draw(st.integers(-3, 3)), minutes=draw(MINUTES))
        end = start + dt.timedelta(minutes=draw(st.integers(1, 3 * 1440)))
        is_open = draw(st.booleans())
        if all(o == is_open or e <= start or end <= s for s, e, o in kept):
            kept.append((start, end, is_open))
    return tuple(
        OneOffHours(start=f"{s:%Y-%m-%dT%H:%M}", end=f"{e:%Y-%m-%dT%H:%M}", open=o)
        for s, e, o in kept
    )


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    weekly: st.SearchStrategy[WeeklyHours] | None = None,
    opening: bool = True,
) -> Case:
    """A random calendar around a DST change day; ``opening=False``: no opening exceptions."""
    zone = draw(st.sampled_from(sorted(ZONES_AND_DAYS)))
    day = draw(st.sampled_from(ZONES_AND_DAYS[zone]))
    if weekly is None:
        weekly = st.builds(WeeklyHours, **{name: day_hours() for name in WEEKDAYS})
    offsets = draw(st.lists(st.integers(-3, 4), max_size=3))
    exceptions = draw(exception_ranges(day))
    if not opening:
        exceptions = tuple(exception for exception in exceptions if not exception.open)
    calendar = BusinessCalendar(
        time_zone=zone,
        weekly=draw(weekly),
        holidays=tuple(Holiday(date=str(day + dt.timedelta(days=o))) for o in offsets),
        exceptions=exceptions,
    )
    return Case(calendar, day)


@st.composite
def instants(draw: st.DrawFn, case: Case) -> float:
    """Quarter seconds within days of the case's day: anywhere, or next to a local time the
    calendar names (either occurrence when the clock shows it twice)."""
    if draw(st.booleans()):
        local = case.local(draw(st.integers(-3, 4)), draw(MINUTES))
        fold = draw(st.integers(0, 1))
        moment = local.replace(tzinfo=case.zone, fold=fold).timestamp()
        return moment + draw(st.sampled_from([-1.0, -0.25, 0.0, 0.25, 1.0]))
    start = case.local(-4, 0).replace(tzinfo=dt.UTC).timestamp()
    return start + draw(st.integers(0, 9 * 4 * int(DAY))) / 4


def business_amounts() -> st.SearchStrategy[float]:
    return st.integers(0, 4 * 4 * int(DAY)).map(lambda quarters: quarters / 4)


def clock_reading(zone: ZoneInfo, t: float) -> dt.datetime:
    """The latest time the local clock has shown by ``t``: what it shows now, or what it
    showed just before it was turned back within the last day."""

    def offset(second: int) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(second, zone).utcoffset()

    def wall(moment: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(moment, zone).replace(tzinfo=None)

    reading = wall(t)
    later = math.floor(t)
    for _ in range(96):
        earlier = later - 900
        if offset(earlier) != offset(later):
            before, after = earlier, later  # the change is at a whole second in (before, after]
            while after - before > 1:
                middle = (before + after) // 2
                if offset(middle) == offset(later):
                    after = middle
                else:
                    before = middle
            reading = max(reading, wall(after - 1))
        later = earlier
    return reading


def open_by_the_rules(calendar: BusinessCalendar, local: dt.datetime) -> bool:
    """Rules 1-3 read literally for one local date-time."""
    for exception in calendar.exceptions:
        start, end = (dt.datetime.fromisoformat(v) for v in (exception.start, exception.end))
        if start <= local < end:
            return exception.open
    if str(local.date()) in {holiday.date for holiday in calendar.holidays}:
        return False
    midnight = dt.datetime.combine(local.date(), dt.time())
    for start_text, end_text in getattr(calendar.weekly, WEEKDAYS[local.weekday()]):
        start = midnight + dt.timedelta(hours=int(start_text[:2]), minutes=int(start_text[3:]))
        end = midnight + dt.timedelta(hours=int(end_text[:2]), minutes=int(end_text[3:]))
        if start <= local < end:
            return True
    return False


def open_in_reference(case: Case, t: float) -> bool:
    return open_by_the_rules(case.calendar, clock_reading(case.zone, t))


def open_throughout(calendar: CompiledCalendar, start: float, end: float) -> bool:
    return calendar.business_seconds(start, end) == end - start


def closed_throughout(calendar: CompiledCalendar, start: float, end: float) -> bool:
    return calendar.business_seconds(start, end) == 0


def within_its_range(calendar: CompiledCalendar, start: float, end: float) -> bool:
    return 0 <= calendar.business_seconds(start, end) <= max(0.0, end - start)


@settings(max_examples=examples(150), deadline=None)
@given(st.data())
def test_is_open_follows_the_latest_local_clock_reading(data: st.DataObject) -> None:
    case = data.draw(cases())
    calendar = CompiledCalendar(case.calendar)
    for t in data.draw(st.lists(instants(case), min_size=1, max_size=8)):
        assert calendar.is_open(t) == open_in_reference(case, t), t
        assert CompiledCalendar(case.calendar).is_open(t) == calendar.is_open(t)


@settings(max_examples=examples(150), deadline=None)
@given(st.data())
def test_business_seconds_is_additive_and_within_its_range(data: st.DataObject) -> None:
    case = data.draw(cases())
    calendar = CompiledCalendar(case.calendar)
    a, b, c = sorted(data.draw(st.lists(instants(case), min_size=3, max_size=3)))
    assert calendar.business_seconds(a, b) + calendar.business_seconds(b, c) == (
        calendar.business_seconds(a, c)
    )
    assert within_its_range(calendar, a, b)
    assert within_its_range(calendar, a, c)
    assert closed_throughout(calendar, c, a)


@settings(max_examples=examples(150), deadline=None)
@given(st.data())
def test_next_open_and_next_close_agree_with_is_open(data: st.DataObject) -> None:
    case = data.draw(cases())
    calendar = CompiledCalendar(case.calendar)
    t = data.draw(instants(case))
    opens, closes = calendar.next_open(t), calendar.next_close(t)
    if calendar.is_open(t):
        assert opens == t
        assert closes is None or (
            closes > t and not calendar.is_open(closes) and open_throughout(calendar, t, closes)
        )
    else:
        assert closes is None
        assert opens is None or (
            opens > t and calendar.is_open(opens) and closed_throughout(calendar, t, opens)
        )
        if opens is None:
            assert closed_throughout(calendar, t, t + 30 * DAY)


@settings(max_examples=examples(100), deadline=None)
@given(st.data())
def test_open_periods_walked_one_by_one_sum_to_business_seconds(data: st.DataObject) -> None:
    case = data.draw(cases())
    calendar = CompiledCalendar(case.calendar)
    a, b = sorted(data.draw(st.lists(instants(case), min_size=2, max_size=2)))
    total = 0.0
    t = a
    while (opens := calendar.next_open(t)) is not None and opens < b:
        closes = calendar.next_close(opens)
        t = b if closes is None else min(closes, b)
        total += t - opens
    assert total == calendar.business_seconds(a, b)


@settings(max_examples=examples(150), deadline=None)
@given(st.data())
def test_add_business_seconds_inverts_business_seconds(data: st.DataObject) -> None:
    case = data.draw(cases())
    calendar = CompiledCalendar(case.calendar)
    t = data.draw(instants(case))
    seconds = data.draw(business_amounts())
    u = calendar.add_business_seconds(t, seconds)
    if u is None:
        assert calendar.business_seconds(t, t + 30 * DAY) < seconds
        return
    assert u >= t
    assert calendar.business_seconds(t, u) == seconds
    if seconds == 0:
        assert u == t
    else:
        # The earliest such instant: the quarter second before it is open.
        assert open_throughout(calendar, u - 0.25, u)


def around_the_clock() -> st.SearchStrategy[WeeklyHours]:
    return st.just(WeeklyHours(**dict.fromkeys(WEEKDAYS, AROUND_THE_CLOCK)))


@st.composite
def always_open_cases(draw: st.DrawFn) -> Case:
    """Open around the clock: plainly, or with holidays each reopened by an exception."""
    case = draw(cases(weekly=around_the_clock(), opening=False))
    if draw(st.booleans()):
        return Case(msgspec.structs.replace(case.calendar, holidays=(), exceptions=()), case.day)
    days = [dt.date.fromisoformat(holiday.date) for holiday in case.calendar.holidays]
    reopened = tuple(
        OneOffHours(start=f"{day}T00:00", end=f"{day + dt.timedelta(days=1)}T00:00", open=True)
        for day in days
    )
    return Case(msgspec.structs.replace(case.calendar, exceptions=reopened), case.day)


@settings(max_examples=examples(60), deadline=None)
@given(st.data())
def test_a_calendar_open_around_the_clock_counts_wall_time(data: st.DataObject) -> None:
    case = data.draw(always_open_cases())
    calendar = CompiledCalendar(case.calendar)
    a, b = sorted(data.draw(st.lists(instants(case), min_size=2, max_size=2)))
    seconds = data.draw(business_amounts())
    assert calendar.is_open(a)
    assert calendar.next_open(a) == a
    assert calendar.next_close(a) is None
    assert calendar.business_seconds(a, b) == b - a
    assert calendar.add_business_seconds(a, seconds) == a + seconds


@settings(max_examples=examples(100), deadline=None)
@given(st.data())
def test_a_calendar_closed_all_week_never_opens_without_an_opening_exception(
    data: st.DataObject,
) -> None:
    case = data.draw(cases(weekly=st.just(WeeklyHours()), opening=False))
    calendar = CompiledCalendar(case.calendar)
    a, b = sorted(data.draw(st.lists(instants(case), min_size=2, max_size=2)))
    assert not calendar.is_open(a)
    assert calendar.next_open(a) is None
    assert calendar.next_close(a) is None
    assert closed_throughout(calendar, a, b)
    assert calendar.add_business_seconds(a, 0.25) is None
    assert calendar.add_business_seconds(a, 0) == a
