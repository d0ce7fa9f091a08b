"""Agents' weekly working hours turned into UTC instants (pure: ``now`` comes in).

``zoneinfo`` reads the tz database (the system's, or the ``tzdata`` package), which is
data, not state: the same ``now`` always gives the same answer.
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas import AgentSchedule

_DAY = dt.timedelta(days=1)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a directory
        return dt.UTC


def _clock(value: str) -> tuple[int, int]:
    hours, _, minutes = value.partition(":")
    return int(hours), int(minutes)


def _local(day: dt.date, value: str, zone: dt.tzinfo) -> float:
    hours, minutes = _clock(value)
    extra = hours == 24
    moment = dt.datetime.combine(day, dt.time(0 if extra else hours, minutes), tzinfo=zone)
    if extra:
        moment = dt.datetime.combine(day + _DAY, dt.time(0, minutes), tzinfo=zone)
    return moment.timestamp()


def intervals(schedule: AgentSchedule, now: float) -> list[tuple[float, float]]:
    """Working intervals (UTC seconds) from the day before ``now`` to 8 days after, merged."""
    zone = _zone(schedule.timezone)
    today = dt.datetime.fromtimestamp(now, zone).date()
    spans: list[tuple[float, float]] = []
    for offset in range(-1, 9):
        day = today + dt.timedelta(days=offset)
        for shift in schedule.weekly:
            if shift.day != day.weekday():
                continue
            start = _local(day, shift.start, zone)
            end = _local(day, shift.end, zone)
            if end <= start:
                end = _local(day + _DAY, shift.end, zone)
            spans.append((start, end))
    spans.sort()
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def on_shift(schedule: AgentSchedule, now: float) -> tuple[bool, float | None]:
    """(whether ``now`` is within working hours, the next boundary: end if on shift,
    else next start; None when the schedule has no hours)."""
    for start, end in intervals(schedule, now):
        if start <= now < end:
            return True, end
        if start > now:
            return False, start
    return False, None


def next_start(schedule: AgentSchedule, now: float) -> float | None:
    """When the agent is next due at work: ``now`` if on shift, else the next start."""
    working, boundary = on_shift(schedule, now)
    return now if working else boundary
