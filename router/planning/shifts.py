"""Shifts as planners write them (``09:00`` to ``17:30`` on weekdays, 3 agents), turned
into the agents online per interval that a staffing run simulates.

A shift covers the intervals whose start falls within ``[start, end)`` in the domain's
local time, on the given weekdays (all days when none); a shift whose end is not after its
start runs past midnight, into the next day (``22:00`` to ``06:00``). Its agents count in
each interval it covers, and the counts of a group's shifts add up. Local times skipped or
repeated by a clock change are taken as the clock shows them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import msgspec

SHIFTS_MAX = 100
AGENTS_MAX = 2000
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
_CLOCK = re.compile(r"^(\d\d):(\d\d)$")


class Shift(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    start: Clock
    """Local time ``HH:MM``."""
    end: Clock
    """Local time ``HH:MM``; not after ``start``: the next day's."""
    agents: Annotated[int, msgspec.Meta(ge=0, le=AGENTS_MAX)]
    days: Annotated[tuple[Weekday, ...], msgspec.Meta(max_length=7)] = ()
    """The weekdays it starts on (none: every day)."""


def _clock(text: str) -> time:
    match = _CLOCK.match(text)
    assert match is not None  # the Struct's pattern checked it
    return time(int(match[1]), int(match[2]))


def _covers(shift: Shift, moment: datetime) -> bool:
    start, end = _clock(shift.start), _clock(shift.end)
    local = moment.time()
    day = WEEKDAYS[moment.weekday()]
    yesterday = WEEKDAYS[(moment - timedelta(days=1)).weekday()]
    if start < end:
        return start <= local < end and (not shift.days or day in shift.days)
    # past midnight: the evening part starts today, the morning part started yesterday
    if local >= start:
        return not shift.days or day in shift.days
    return local < end and (not shift.days or yesterday in shift.days)


def staffed_from_shifts(
    shifts: Sequence[Shift], *, start: float, intervals: int, interval_seconds: int, tz: str
) -> tuple[int, ...]:
    """Agents online in each interval from ``start`` under ``shifts``."""
    zone = ZoneInfo(tz)
    counts = []
    for index in range(intervals):
        moment = datetime.fromtimestamp(start + index * interval_seconds, zone)
        counts.append(sum(shift.agents for shift in shifts if _covers(shift, moment)))
    return tuple(counts)
