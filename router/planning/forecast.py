"""Forecast of a per-interval series (arrivals per interval, handling seconds per interval) for
the coming days and weeks, from its history, and the error of that forecast on held-out weeks.

The history maps interval starts (Unix seconds, multiples of the interval: 900, 1800 or 3600)
to values (finite, at least 0). Every interval between the first and the last key that has no
value counts as 0: a queue that saw nothing in an interval had no arrivals.

Seasonality follows the domain's local time (an IANA zone). An interval's slot is its local
weekday and local time of day, ``weekday * slots_per_day + local_seconds_of_day // interval``
(a zone whose offset is not a multiple of the interval, +05:30 with hourly intervals, puts
an interval in the slot its local start falls in). Clock changes:

- a local time skipped by a spring-forward gap has no interval that day: its slot has no
  observation that week (not a 0: the other weeks give its profile), and a forecast of
  such a day has no interval in that slot;
- a local time shown twice after the clock is turned back has two intervals: the slot's
  observation that week is their mean, and each of the two gets the slot's forecast.

Model (multiplicative seasonal, exponentially weighted, no trend). The series is cut into
periods: local weeks (Monday 00:00 to Monday 00:00) when the history spans at least
``WEEKLY_SPAN`` (two weeks), else local days (the daily profile: one shape for every day)
when it spans at least ``DAILY_SPAN``, else the forecast is the flat mean of the history.
With ``y[w, s]`` the observation of slot ``s`` in period ``w``, ``age(w)`` the number of
periods from ``w`` to the last one, and weights ``0.5 ** (age / half_life)``:

1. A first profile ``q[s]``: the profile-weighted mean of ``y[w, s]`` over the periods that
   observe ``s``, divided by its mean over the slots.
2. Each period's level, ``l[w] = sum_s y[w, s] / sum_s q[s]`` over the slots it observes (a
   ratio estimate: a partial first or last period counts for the share of volume it saw).
3. The profile ``p[s]``: the profile-weighted mean of ``y[w, s] / l[w]`` over the periods
   with ``l[w] > 0`` that observe ``s`` (``q[s]`` if there is none), divided by its mean.
   Steps 2 and 3 repeat with ``q = p`` until no slot moves by more than ``CONVERGED``, at
   most ``FIT_ROUNDS`` times (an alternating fit of ``y[w, s] = l[w] p[s]``; on histories
   that are exactly such a product, partial periods and clock changes included, it lands
   on it within about 30 rounds).
4. The level ``L = sum_w v[w] Y[w] / sum_w v[w] P[w]``, with ``Y[w] = sum_s y[w, s]`` and
   ``P[w] = sum_s p[s]`` over the slots ``w`` observes, and level weights ``v[w]``.
5. ``forecast(t) = max(0, L * p[slot(t)])``; a slot never observed (a local time every
   period skipped) takes the nearest earlier observed slot's ``p``.

Why multiplicative: demand grows and shrinks as a whole (a campaign doubles every busy hour,
not each hour by the same count), quiet slots stay near 0 and never go negative, and a
series that is zero in a slot forecasts 0 there. Why no trend: with a handful of weeks a
trend term mostly extrapolates noise; a level that follows the last weeks (half-life
``LEVEL_HALF_LIFE``) catches a step change within weeks. The profile keeps a longer memory
(``PROFILE_HALF_LIFE``) because each slot sees one noisy value a week. The daily model
serves histories under two weeks: its profile weighs them nearly alike (14 days) and its
level spans about a week (7 days), so weekdays and weekends blend. The forecast
reproduces exactly (up to rounding) a constant series and a weekly pattern repeated at a
constant level, whatever the weights, and forecasts a pattern repeated at varying weekly
levels as that pattern at the weighted level.

Errors (``backtest``): the model is fitted on the history before the last
``held_out_weeks`` whole weeks (``held_out_weeks * 7 * 24`` hours ending where the history
ends, so every slot of the week is scored once or, across a clock change, nearly) and
scored on them:

- MAPE, the mean of ``|forecast - actual| / actual`` over the intervals whose actual is
  above 0 (``mape_intervals`` of them): each interval counts the same, so a quiet night
  interval forecast at 2 that saw 1 weighs a 100% error; it explodes on small counts;
- WAPE, ``sum |forecast - actual| / sum actual`` over every held-out interval: the error
  per unit of volume, dominated by the busy intervals, which is what staffing cares about.

Maxima: ``MAX_HISTORY_SECONDS`` of history span, ``MAX_FORECAST_INTERVALS`` intervals to
forecast, ``MAX_VALUE`` per interval, ``MAX_HELD_OUT_WEEKS``, interval starts in
``[0, LAST_START]``; anything beyond, or a key that is not an aligned integer, a value that
is not a finite number of at least 0, a duplicate key, or an unknown zone, is a
``ValueError``. Deterministic: the same history (in any order) gives identical output.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from router.engine import time_zone

INTERVALS = (900, 1800, 3600)
"""Interval lengths, in seconds."""
DAY = 86_400
WEEK = 7 * DAY
DAILY_SPAN = DAY
"""A shorter history forecasts its flat mean."""
WEEKLY_SPAN = 2 * WEEK
"""A shorter history (from ``DAILY_SPAN``) forecasts with one profile for every day."""
PROFILE_HALF_LIFE = {"weekly": 4.0, "daily": 14.0}
"""Age, in periods (weeks, days), at which an observation weighs half in the profile."""
LEVEL_HALF_LIFE = {"weekly": 2.0, "daily": 7.0}
"""Age, in periods (weeks, days), at which a period weighs half in the level."""
FIT_ROUNDS = 50
"""Most rounds of steps 2 and 3."""
CONVERGED = 1e-12
"""Steps 2 and 3 stop when no slot's profile (mean 1) moves by more than this."""
MAX_HISTORY_SECONDS = 3 * 366 * DAY
"""Longest span of history, first interval to last."""
MAX_FORECAST_INTERVALS = 20_000
"""Most intervals one forecast returns (about 208 days of 15 minutes)."""
LAST_START = 4_102_444_800
"""Latest interval start (2100-01-01 UTC); the earliest is 0 (1970)."""
MAX_VALUE = 1e12
"""Largest value of one interval."""
MAX_HELD_OUT_WEEKS = 12
"""Most weeks one backtest holds out."""

Model = Literal["weekly", "daily", "flat"]


class Forecast(msgspec.Struct, frozen=True, kw_only=True):
    """``values[i]`` is the forecast of the interval starting at
    ``start + i * interval_seconds``; ``model`` is the one the history's span allowed."""

    model: Model
    start: int
    interval_seconds: int
    values: tuple[float, ...]


class Backtest(msgspec.Struct, frozen=True, kw_only=True):
    """The error of the forecast on ``[held_out_start, held_out_end)`` (definitions in the
    module docstring); ``mape`` is ``None`` without an interval whose actual is above 0,
    ``wape`` without any volume."""

    model: Model
    held_out_start: int
    held_out_end: int
    intervals: int
    mape: float | None
    mape_intervals: int
    wape: float | None
    actual_total: float
    forecast_total: float


def _interval(interval_seconds: int) -> int:
    if isinstance(interval_seconds, bool) or interval_seconds not in INTERVALS:
        raise ValueError(f"interval_seconds must be one of {INTERVALS}, got {interval_seconds!r}")
    return interval_seconds


def _aligned(name: str, value: int, interval: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value % interval
        or not 0 <= value <= LAST_START
    ):
        raise ValueError(
            f"{name} must be a multiple of {interval} in [0, {LAST_START}], got {value!r}"
        )
    return value


def _dense(
    history: Mapping[int, float] | Iterable[tuple[int, float]], interval: int
) -> list[tuple[int, float]]:
    """Every interval from the first key to the last, in time order, missing ones as 0."""
    pairs = history.items() if isinstance(history, Mapping) else history
    values: dict[int, float] = {}
    for start, value in pairs:
        _aligned("an interval start", start, interval)
        number = float(value) if isinstance(value, int | float) else math.nan
        if isinstance(value, bool) or not 0.0 <= number <= MAX_VALUE:
            raise ValueError(f"interval values must be in [0, {MAX_VALUE:g}], got {value!r}")
        if start in values:
            raise ValueError(f"interval {start} appears twice")
        values[start] = number
    if not values:
        return []
    first, last = min(values), max(values)
    if last - first + interval > MAX_HISTORY_SECONDS:
        raise ValueError(f"history spans more than {MAX_HISTORY_SECONDS} seconds")
    return [(start, values.get(start, 0.0)) for start in range(first, last + interval, interval)]


def _model(dense: list[tuple[int, float]], interval: int) -> Model:
    span = dense[-1][0] - dense[0][0] + interval if dense else 0
    if span >= WEEKLY_SPAN:
        return "weekly"
    if span >= DAILY_SPAN:
        return "daily"
    return "flat"


def _placement(start: int, zone: ZoneInfo, interval: int, model: Model) -> tuple[int, int]:
    """``(period, slot)`` of the interval starting at ``start``: local Monday-based weeks or
    local days, and the slot of the week or of the day."""
    local = dt.datetime.fromtimestamp(start, zone)
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    ordinal = local.date().toordinal()  # ordinal 1, 0001-01-01, is a Monday
    if model == "weekly":
        return (ordinal - 1) // 7, local.weekday() * (DAY // interval) + seconds // interval
    return ordinal, seconds // interval


class _Fit(msgspec.Struct, frozen=True):
    level: float
    profile: dict[int, float]
    slots: int


def _weighted_mean(pairs: list[tuple[float, float]]) -> float:
    """``sum w x / sum w`` over ``(w, x)``."""
    return math.fsum(w * x for w, x in pairs) / math.fsum(w for w, _ in pairs)


def _refine(
    shape: dict[int, float],
    by_slot: dict[int, list[tuple[int, float]]],
    by_period: dict[int, list[tuple[int, float]]],
    weight: Callable[[int, float], float],
    half_life: float,
) -> dict[int, float]:
    """Steps 2 and 3: each period's level against ``shape``, then the profile of the
    observations divided by their period's level, scaled to a mean of 1."""
    levels: dict[int, float] = {}
    for period, seen in by_period.items():
        share = math.fsum(shape[slot] for slot, _ in seen)
        if share > 0.0:
            levels[period] = math.fsum(value for _, value in seen) / share
    profile: dict[int, float] = {}
    for slot, seen in by_slot.items():
        ratios = [
            (weight(period, half_life), value / levels[period])
            for period, value in seen
            if levels.get(period, 0.0) > 0.0
        ]
        profile[slot] = _weighted_mean(ratios) if ratios else shape[slot]
    mean = math.fsum(profile.values()) / len(profile)
    return {slot: value / mean for slot, value in profile.items()}


def _fit(dense: list[tuple[int, float]], zone: ZoneInfo, interval: int, model: Model) -> _Fit:
    """Steps 1 to 4 of the module docstring."""
    slots = (WEEK if model == "weekly" else DAY) // interval
    observed: dict[tuple[int, int], list[float]] = {}
    for start, value in dense:
        observed.setdefault(_placement(start, zone, interval, model), []).append(value)
    # y[w, s]: the mean of the intervals a repeated local time gives the slot
    y = {key: math.fsum(values) / len(values) for key, values in observed.items()}
    last = max(period for period, _ in y)

    def weight(period: int, half_life: float) -> float:
        return float(0.5 ** ((last - period) / half_life))

    by_slot: dict[int, list[tuple[int, float]]] = {}
    by_period: dict[int, list[tuple[int, float]]] = {}
    for (period, slot), value in sorted(y.items()):
        by_slot.setdefault(slot, []).append((period, value))
        by_period.setdefault(period, []).append((slot, value))

    profile_life = PROFILE_HALF_LIFE[model]
    raw = {
        slot: _weighted_mean([(weight(period, profile_life), value) for period, value in seen])
        for slot, seen in by_slot.items()
    }
    mean_raw = math.fsum(raw.values()) / len(raw)
    if mean_raw == 0.0:
        return _Fit(0.0, dict.fromkeys(raw, 0.0), slots)
    first_shape = {slot: value / mean_raw for slot, value in raw.items()}

    profile = first_shape
    for _ in range(FIT_ROUNDS):
        refined = _refine(profile, by_slot, by_period, weight, profile_life)
        change = max(abs(refined[slot] - profile[slot]) for slot in profile)
        profile = refined
        if change <= CONVERGED:
            break

    level_life = LEVEL_HALF_LIFE[model]
    volume: list[float] = []
    expected: list[float] = []
    for period, seen in by_period.items():
        share = math.fsum(profile[slot] for slot, _ in seen)
        if share > 0.0:
            period_weight = weight(period, level_life)
            volume.append(period_weight * math.fsum(value for _, value in seen))
            expected.append(period_weight * share)
    level = math.fsum(volume) / math.fsum(expected) if expected else 0.0
    return _Fit(level, profile, slots)


def _shape_of(fit: _Fit, slot: int) -> float:
    """``p[slot]``, or the nearest earlier observed slot's (step 5)."""
    for back in range(fit.slots):
        found = fit.profile.get((slot - back) % fit.slots)
        if found is not None:
            return found
    return 0.0


def _predict(
    dense: list[tuple[int, float]], zone: ZoneInfo, interval: int, start: int, intervals: int
) -> Forecast:
    model = _model(dense, interval)
    if model == "flat":
        mean = math.fsum(value for _, value in dense) / len(dense) if dense else 0.0
        return Forecast(
            model=model, start=start, interval_seconds=interval, values=(mean,) * intervals
        )
    fit = _fit(dense, zone, interval, model)
    values = tuple(
        max(0.0, fit.level * _shape_of(fit, _placement(at, zone, interval, model)[1]))
        for at in range(start, start + intervals * interval, interval)
    )
    return Forecast(model=model, start=start, interval_seconds=interval, values=values)


def forecast(
    history: Mapping[int, float] | Iterable[tuple[int, float]],
    *,
    interval_seconds: int,
    tz: str,
    start: int,
    intervals: int,
) -> Forecast:
    """The forecast of ``intervals`` intervals from ``start`` (aligned to the interval), by
    the model of the module docstring fitted on the whole ``history``. An empty history
    forecasts 0."""
    interval = _interval(interval_seconds)
    zone = time_zone(tz)
    _aligned("start", start, interval)
    if isinstance(intervals, bool) or not 0 <= intervals <= MAX_FORECAST_INTERVALS:
        raise ValueError(f"intervals must be in [0, {MAX_FORECAST_INTERVALS}], got {intervals!r}")
    return _predict(_dense(history, interval), zone, interval, start, intervals)


def backtest(
    history: Mapping[int, float] | Iterable[tuple[int, float]],
    *,
    interval_seconds: int,
    tz: str,
    held_out_weeks: int = 1,
) -> Backtest:
    """The error of the model fitted on all but the last ``held_out_weeks`` whole weeks of
    ``history``, scored on them (MAPE and WAPE, defined in the module docstring).
    ``ValueError`` when the history leaves nothing to fit on."""
    interval = _interval(interval_seconds)
    zone = time_zone(tz)
    if isinstance(held_out_weeks, bool) or not 1 <= held_out_weeks <= MAX_HELD_OUT_WEEKS:
        raise ValueError(f"held_out_weeks must be in [1, {MAX_HELD_OUT_WEEKS}]")
    dense = _dense(history, interval)
    if not dense:
        raise ValueError("an empty history has nothing to fit on")
    end = dense[-1][0] + interval
    cut = end - held_out_weeks * WEEK
    fitted = [(at, value) for at, value in dense if at < cut]
    if not fitted:
        raise ValueError(f"the history is not longer than {held_out_weeks} week(s)")
    actual = [value for at, value in dense if at >= cut]
    predicted = _predict(fitted, zone, interval, cut, len(actual))
    errors = [abs(guess - seen) for guess, seen in zip(predicted.values, actual, strict=True)]
    relative = [error / seen for error, seen in zip(errors, actual, strict=True) if seen > 0.0]
    actual_total = math.fsum(actual)
    return Backtest(
        model=predicted.model,
        held_out_start=cut,
        held_out_end=end,
        intervals=len(actual),
        mape=math.fsum(relative) / len(relative) if relative else None,
        mape_intervals=len(relative),
        wape=math.fsum(errors) / actual_total if actual_total > 0.0 else None,
        actual_total=actual_total,
        forecast_total=math.fsum(predicted.values),
    )
