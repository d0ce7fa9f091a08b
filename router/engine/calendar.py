"""Business-hours calendars: whether a queue is open, when it opens or closes next, and SLA
clocks that count business time only.

A calendar is configured as ``[domains.<name>.routing.calendars.<calendar>]``; the structs
below validate on construction. ``CompiledCalendar(calendar)`` answers questions about
instants: Unix seconds in, Unix seconds out, no I/O and no clock read (``zoneinfo`` reads
the tz database, which is data: the same arguments always give the same answers).

Example (TOML)::

    [domains.acme.routing.calendars.office]
    time_zone = "Europe/Paris"

    [domains.acme.routing.calendars.office.weekly]
    mon = [["09:00", "17:30"]]
    tue = [["09:00", "12:00"], ["13:00", "17:30"]]
    fri = [["22:00", "24:00"]]                  # runs on into Saturday's 00:00-06:00
    sat = [["00:00", "06:00"]]

    [[domains.acme.routing.calendars.office.holidays]]
    date = "2026-12-25"
    name = "Christmas"

    [[domains.acme.routing.calendars.office.exceptions]]
    start = "2026-12-24T09:00"                  # Christmas Eve: mornings only
    end = "2026-12-24T13:00"
    open = true

    [[domains.acme.routing.calendars.office.exceptions]]
    start = "2027-01-01T23:00"                  # a closure across midnight
    end = "2027-01-02T02:00"
    open = false

Rules:

1. Weekly hours: each weekday lists local intervals ``[start, end)`` as 24-hour ``"HH:MM"``;
   an end may be ``"24:00"``, the next local midnight. An absent or empty day is closed.
   Intervals of a day may touch but not overlap.
2. A holiday closes its whole local day.
3. An exception opens (``open = true``) or closes (``open = false``) a range of local
   date-times, whatever the weekly hours and the holidays say; it may cross midnights.
   Exceptions that overlap must agree on ``open``.
4. Local times become instants on a clock that never runs backwards: a local time is the
   first instant at which the local clock reads that time or later. Hence:

   - a time skipped by a spring-forward gap is the instant the gap ends: ``"02:30"`` on a
     day the clock jumps from 02:00 to 03:00 is 03:00, and an interval wholly inside the
     gap is empty that day;
   - a time the clock shows twice after being turned back is its first occurrence, for
     starts and ends alike: an interval ending at a repeated time closes the first time the
     clock shows it, and one spanning the repeated hour lasts an hour longer that day;
   - a day the zone skips (``Pacific/Apia`` went from 2011-12-29 to 2011-12-31) has no hours;
   - ``"24:00"`` is the first instant the clock reads the next day.

   Put another way, an instant is open when the latest time the local clock has shown
   by then falls in open local hours.
5. Open intervals that touch, across midnight or across a gap, form one open period:
   ``next_close`` sees through them.
6. Searches forward are bounded: ``next_open`` and ``add_business_seconds`` give up after
   ``SEARCH_DAYS`` local days in a row without an opening (counting from the local day of
   the instant they start from), ``next_close`` when the open period lasts more than
   ``SEARCH_DAYS`` days. ``business_seconds`` is exact over any range.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import functools
import itertools
import math
import re
import zoneinfo
from collections.abc import Iterable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

MAX_INTERVALS_PER_DAY = 16
"""Intervals one weekday may list."""
MAX_HOLIDAYS = 1000
"""Holidays one calendar may list."""
MAX_EXCEPTIONS = 1000
"""Exceptions one calendar may list."""
SEARCH_DAYS = 1500
"""How far a search looks, in local days: a calendar closed (or open) for this many days in
a row is taken to stay so. Over four years, so even a year of holidays ends within it."""

NAME_MAX = 200
"""Longest holiday name."""
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""The keys of ``weekly``, Monday first (``datetime.date.weekday`` order)."""

_DAY_MINUTES = 24 * 60
_MINUTE = dt.timedelta(minutes=1)
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]")
_CACHED_DAYS = 4096
"""Days a compiled calendar keeps (about eleven years): enough for every conversation the
engine holds, bounded so that one long ``business_seconds`` cannot grow it without end."""

Span = tuple[float, float]
"""A half-open ``[start, end)``: minutes of a local day, or Unix seconds."""


NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
"""Files of a tz database that name no zone of their own: ``localtime`` is the machine's
zone (another machine's hours would differ), ``Factory`` a placeholder."""


@functools.cache
def _zone_names() -> frozenset[str]:
    # The tz database's zone names: not its ``posix/`` and ``right/`` copies (``right/``
    # counts leap seconds, which Unix time does not).
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (ValueError: no such zone)."""
    refused = ValueError(f"time_zone {name!r} is not an IANA time zone name")
    if name not in _zone_names():
        raise refused
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a key naming a directory of the tz database ("America").
        raise refused from None


def _minute(field: str, value: str, *, end: bool) -> int:
    if end and value == "24:00":
        return _DAY_MINUTES
    match = _CLOCK.fullmatch(value)
    if match is None:
        allowed = '"HH:MM" (24-hour) or "24:00"' if end else '"HH:MM" (24-hour)'
        raise ValueError(f"{field} must be {allowed}, got {value!r}")
    return int(match[1]) * 60 + int(match[2])


def _day_hours(field: str, intervals: tuple[tuple[str, str], ...]) -> tuple[Span, ...]:
    """One weekday's intervals as minutes of the day, sorted, touching ones merged."""
    if len(intervals) > MAX_INTERVALS_PER_DAY:
        raise ValueError(
            f"{field} lists {len(intervals)} intervals, at most {MAX_INTERVALS_PER_DAY} allowed"
        )
    spans: list[tuple[int, int, int]] = []
    for index, (start, end) in enumerate(intervals):
        first = _minute(f"{field}[{index}] start", start, end=False)
        last = _minute(f"{field}[{index}] end", end, end=True)
        if first >= last:
            raise ValueError(f"{field}[{index}]: start {start!r} must be before end {end!r}")
        spans.append((first, last, index))
    spans.sort()
    for (_, earlier_end, earlier), (later_start, _, later) in itertools.pairwise(spans):
        if later_start < earlier_end:
            raise ValueError(f"{field}[{earlier}] and {field}[{later}] overlap")
    return tuple(_merge((start, end) for start, end, _ in spans))


def _date(field: str, value: str) -> dt.date:
    if _DATE.fullmatch(value):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(value)
    raise ValueError(f'{field} must be a "YYYY-MM-DD" date, got {value!r}')


def _date_time(field: str, value: str) -> dt.datetime:
    if _DATE_TIME.fullmatch(value):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(value)
    raise ValueError(f'{field} must be a local "YYYY-MM-DDTHH:MM" date-time, got {value!r}')


def _merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, empty spans dropped, overlapping or touching ones joined."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: Iterable[Span], cuts: Iterable[Span]) -> list[Span]:
    pieces = list(spans)
    for cut_start, cut_end in cuts:
        pieces = [
            piece
            for start, end in pieces
            for piece in ((start, min(end, cut_start)), (max(start, cut_end), end))
            if piece[0] < piece[1]
        ]
    return pieces


class WeeklyHours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Open hours of each weekday, as local ``[start, end)`` intervals.

    Each day lists up to ``MAX_INTERVALS_PER_DAY`` intervals ``["HH:MM", "HH:MM"]``
    (24-hour; an end may be ``"24:00"``, the next midnight) that may touch but not
    overlap; an absent or empty day is closed."""

    mon: tuple[tuple[str, str], ...] = ()
    """Monday, e.g. ``[["09:00", "12:00"], ["13:00", "17:30"]]``."""
    tue: tuple[tuple[str, str], ...] = ()
    """Tuesday."""
    wed: tuple[tuple[str, str], ...] = ()
    """Wednesday."""
    thu: tuple[tuple[str, str], ...] = ()
    """Thursday."""
    fri: tuple[tuple[str, str], ...] = ()
    """Friday."""
    sat: tuple[tuple[str, str], ...] = ()
    """Saturday."""
    sun: tuple[tuple[str, str], ...] = ()
    """Sunday."""

    def __post_init__(self) -> None:
        for name in WEEKDAYS:
            _day_hours(f"weekly.{name}", getattr(self, name))

    def minutes(self) -> tuple[tuple[Span, ...], ...]:
        """Each weekday's open minutes of the day (0 to 1440), Monday first."""
        return tuple(_day_hours(f"weekly.{name}", getattr(self, name)) for name in WEEKDAYS)


class Holiday(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A local day on which the calendar is closed, unless an exception opens part of it."""

    date: str
    """``"YYYY-MM-DD"``: closed from that local midnight to the next."""
    name: str = ""
    """For people reading the configuration (``"Christmas"``), at most ``NAME_MAX``
    characters."""

    def __post_init__(self) -> None:
        _date("date", self.date)
        if len(self.name) > NAME_MAX:
            raise ValueError(f"name is longer than {NAME_MAX} characters")


class OneOffHours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An exception: a range of local date-times open or closed whatever the weekly hours and
    the holidays say (``[[...calendars.<calendar>.exceptions]]``)."""

    start: str
    """``"YYYY-MM-DDTHH:MM"``, local: the first minute of the range."""
    end: str
    """``"YYYY-MM-DDTHH:MM"``, local, after ``start``: the range stops just before it (a
    range up to midnight ends at ``T00:00`` of the next day). It may cross midnights."""
    open: bool
    """``true``: open throughout (a Sunday opening); ``false``: closed throughout (a late
    opening, a closure across midnight)."""

    def __post_init__(self) -> None:
        start = _date_time("start", self.start)
        end = _date_time("end", self.end)
        if start >= end:
            raise ValueError(f"start {self.start!r} must be before end {self.end!r}")

    def local_range(self) -> tuple[dt.datetime, dt.datetime]:
        """``(start, end)`` as naive local date-times."""
        return _date_time("start", self.start), _date_time("end", self.end)


class BusinessCalendar(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Business hours in one time zone (``[domains.<name>.routing.calendars.<calendar>]``).

    Exceptions override holidays, which override the weekly hours."""

    time_zone: str
    """IANA time zone name (``"Europe/Paris"``) in which every hour and date is read."""
    weekly: WeeklyHours = WeeklyHours()
    """Open hours per weekday (``mon`` ... ``sun``); default: closed all week."""
    holidays: tuple[Holiday, ...] = ()
    """Whole local days closed, at most ``MAX_HOLIDAYS``."""
    exceptions: tuple[OneOffHours, ...] = ()
    """One-off open or closed ranges, at most ``MAX_EXCEPTIONS``; those that overlap must
    agree on ``open``."""

    def __post_init__(self) -> None:
        time_zone(self.time_zone)
        if len(self.holidays) > MAX_HOLIDAYS:
            raise ValueError(
                f"holidays lists {len(self.holidays)} days, at most {MAX_HOLIDAYS} allowed"
            )
        if len(self.exceptions) > MAX_EXCEPTIONS:
            raise ValueError(
                f"exceptions lists {len(self.exceptions)} ranges, at most {MAX_EXCEPTIONS} allowed"
            )
        # Sorted by start, a range contradicts an earlier-starting one exactly when it starts
        # before the furthest end reached so far by the opposite kind.
        ranges = sorted(
            (*exception.local_range(), exception.open, index)
            for index, exception in enumerate(self.exceptions)
        )
        furthest: dict[bool, tuple[dt.datetime, int]] = {}
        for start, end, is_open, index in ranges:
            other = furthest.get(not is_open)
            if other is not None and start < other[0]:
                raise ValueError(
                    f"exceptions[{index}] and exceptions[{other[1]}] overlap and disagree on open"
                )
            mine = furthest.get(is_open)
            if mine is None or end > mine[0]:
                furthest[is_open] = (end, index)


class CompiledCalendar:
    """A calendar's answers about instants, all in Unix seconds (floats).

    The work is done per local day and cached; the cache saves work only, so the answers
    do not depend on the questions asked before. Instants must be finite and within
    ``datetime``'s years. Open intervals are half-open: open at their start, closed at
    their end."""

    __slots__ = (
        "_always_open",
        "_days",
        "_exception_days",
        "_exception_reach",
        "_exceptions",
        "_holidays",
        "_settled",
        "_week_closed",
        "_weekly",
        "_zone",
        "calendar",
    )

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.calendar = calendar
        self._zone = time_zone(calendar.time_zone)
        self._weekly = calendar.weekly.minutes()
        self._holidays = frozenset(
            _date("date", holiday.date).toordinal() for holiday in calendar.holidays
        )
        exceptions: list[tuple[int, int, dt.datetime, dt.datetime, bool]] = []
        for exception in calendar.exceptions:
            start, end = exception.local_range()
            last_day = end.toordinal()  # at midnight: an empty range that day, dropped
            exceptions.append((start.toordinal(), last_day, start, end, exception.open))
        exceptions.sort()
        self._exceptions = exceptions
        self._exception_days = [first for first, *_ in exceptions]
        # reach[i]: the last day any of the first i + 1 exceptions touches, so the search
        # for the exceptions of a day can stop as soon as none before can reach it.
        reach: list[int] = []
        for _, last_day, *_ in exceptions:
            reach.append(max(last_day, reach[-1]) if reach else last_day)
        self._exception_reach = reach
        # After the last holiday and exception only the weekly hours apply.
        self._settled = max(
            [*self._holidays, *(last_day for _, last_day, *_ in exceptions)], default=0
        )
        self._week_closed = not any(self._weekly)
        self._always_open = (
            all(day == ((0, _DAY_MINUTES),) for day in self._weekly)
            and not self._holidays
            and all(is_open for *_, is_open in exceptions)
        )
        self._days: dict[int, tuple[Span, ...]] = {}

    def is_open(self, t: float) -> bool:
        """Whether the calendar is open at ``t``."""
        if self._always_open:
            return True
        ordinal = self._ordinal(t)
        # The day whose hours may hold t is the local date of t, or the next one when the
        # clock was just turned back across midnight (St. John's until 2010: 00:01 to 23:01).
        return any(
            start <= t < end for day in (ordinal, ordinal + 1) for start, end in self._day(day)
        )

    def next_open(self, t: float) -> float | None:
        """``t`` if open at ``t``, else the next instant it opens; None if it does not open
        within ``SEARCH_DAYS`` days (or never can again)."""
        if self._always_open:
            return t
        for start, end in self._spans(t):
            if end > t:
                return max(start, t)
        return None

    def next_close(self, t: float) -> float | None:
        """When the open period holding ``t`` ends (touching intervals are one period, across
        midnight too); None if closed at ``t``, or if the period lasts beyond ``SEARCH_DAYS``
        days after ``t``."""
        if self._always_open:
            return None
        close: float | None = None
        for start, end in self._spans(t):
            if close is None:
                if end <= t:
                    continue
                if start > t:
                    return None
            elif start != close:
                return close
            close = end
            if close - t > SEARCH_DAYS * 86400.0:
                return None
        return close

    def business_seconds(self, a: float, b: float) -> float:
        """Open seconds in ``[a, b)``; 0 when ``b <= a``. Exact over any range: the
        ``SEARCH_DAYS`` bound does not apply (the cost grows with the days in the range)."""
        if b <= a:
            return 0.0
        if self._always_open:
            return b - a
        total = 0.0
        for start, end in self._spans(a, until=b):
            if start >= b:
                break
            if end > a:
                total += min(end, b) - max(start, a)
        return total

    def add_business_seconds(self, t: float, seconds: float) -> float | None:
        """The earliest ``u >= t`` with ``business_seconds(t, u) == seconds``: ``t`` itself for
        0 (open or not), else an instant in open hours or the close at which the amount runs
        out (never the next opening). None if the calendar stays closed ``SEARCH_DAYS`` days
        in a row before then. ``seconds`` must be finite and >= 0 (ValueError)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        if seconds == 0 or self._always_open:
            return t + seconds
        left = seconds
        for start, end in self._spans(t):
            if end <= t:
                continue
            begin = max(start, t)
            if end - begin >= left:
                return begin + left
            left -= end - begin
        return None

    def _ordinal(self, t: float) -> int:
        return dt.datetime.fromtimestamp(t, self._zone).toordinal()

    def _spans(self, t: float, until: float | None = None) -> Iterator[Span]:
        """Open spans in order, from the local day of ``t`` (no earlier day's reach past
        ``t``: the clock read that day before): through the day after ``until``'s, or,
        without ``until``, while an opening may still come."""
        ordinal = self._ordinal(t)
        last = None if until is None else self._ordinal(until) + 1
        closed_days = 0
        while not (self._week_closed and ordinal > self._settled):
            if last is None and closed_days >= SEARCH_DAYS:
                return
            if last is not None and ordinal > last:
                return
            spans = self._day(ordinal)
            yield from spans
            closed_days = 0 if spans else closed_days + 1
            ordinal += 1

    def _day(self, ordinal: int) -> tuple[Span, ...]:
        """The open spans (Unix seconds) of one local day, from its hours (rule 4)."""
        spans = self._days.get(ordinal)
        if spans is not None:
            return spans
        minutes = self._local_hours(ordinal)
        midnight = dt.datetime.combine(dt.date.fromordinal(ordinal), dt.time())
        spans = tuple(
            _merge(
                (
                    self._instant(midnight + start * _MINUTE),
                    self._instant(midnight + end * _MINUTE),
                )
                for start, end in minutes
            )
        )
        if len(self._days) >= _CACHED_DAYS:
            self._days.clear()
        self._days[ordinal] = spans
        return spans

    def _local_hours(self, ordinal: int) -> list[Span]:
        """Open minutes (0 to 1440) of one local day: weekly hours, then holidays, then
        exceptions (rules 1 to 3)."""
        day = dt.date.fromordinal(ordinal)
        hours = [] if ordinal in self._holidays else list(self._weekly[day.weekday()])
        midnight = dt.datetime.combine(day, dt.time())
        opened: list[Span] = []
        closed: list[Span] = []
        index = bisect.bisect_right(self._exception_days, ordinal) - 1
        while index >= 0 and self._exception_reach[index] >= ordinal:
            _, last_day, start, end, is_open = self._exceptions[index]
            if last_day >= ordinal:
                span = (
                    max(0, (start - midnight) // _MINUTE),
                    min(_DAY_MINUTES, (end - midnight) // _MINUTE),
                )
                (opened if is_open else closed).append(span)
            index -= 1
        # Opening and closing exceptions never overlap (validated), so their order is moot.
        return _subtract(_merge([*hours, *opened]), closed)

    def _instant(self, local: dt.datetime) -> float:
        """The first instant at which the local clock reads ``local`` or later (rule 4)."""
        zone = self._zone
        first = local.replace(tzinfo=zone, fold=0).timestamp()
        second = local.replace(tzinfo=zone, fold=1).timestamp()
        low, high = min(first, second), max(first, second)
        if self._wall(low) >= local:
            return low
        # In a gap: the clock reads before ``local`` at ``low`` and after it at ``high``, and
        # transitions fall on whole seconds.
        below, above = int(low), int(high)
        while above - below > 1:
            middle = (below + above) // 2
            if self._wall(middle) >= local:
                above = middle
            else:
                below = middle
        return float(above)

    def _wall(self, t: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, self._zone).replace(tzinfo=None)
