"""The pure parts of ``runtime.workload``: intervals aligned to 15 minutes UTC, back-fills
cut into days, and the figures derived from an interval's sums."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from runtime.workload import (
    MEASURED_UNTIL,
    WAIT_LIMITS,
    WorkloadSums,
    ceil_interval,
    days_of,
    derive,
    floor_interval,
    window,
)

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def is_aligned(moment: datetime, seconds: int = 900) -> bool:
    return moment.timestamp() % seconds == 0


@given(moments, st.sampled_from([900, 1800, 3600]))
def test_an_interval_holds_the_moment_and_starts_aligned(moment: datetime, seconds: int) -> None:
    floor, ceil = floor_interval(moment, seconds), ceil_interval(moment, seconds)
    assert is_aligned(floor, seconds)
    assert is_aligned(ceil, seconds)
    assert floor <= moment < floor + timedelta(seconds=seconds)
    assert moment <= ceil < moment + timedelta(seconds=seconds)
    assert (floor == ceil) == is_aligned(moment, seconds)


@given(moments, st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=40)))
def test_a_backfill_covers_its_span_a_day_at_a_time(since: datetime, span: timedelta) -> None:
    days = days_of(since, since + span)
    assert days[0][0] == floor_interval(since)
    assert days[-1][1] == ceil_interval(since + span)
    for (_, end), (following, _) in itertools.pairwise(days):
        assert end == following  # no gap, no overlap
        assert end.time() == datetime.min.time()  # cut at midnight UTC
    for start, end in days:
        assert (
            start
            < end
            <= datetime.combine(start.date(), datetime.min.time(), UTC) + timedelta(days=1)
        )


@given(
    st.datetimes(min_value=datetime(9999, 12, 1), timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
)
def test_times_at_the_end_of_9999_are_measured_up_to_the_bound(
    until: datetime, span: timedelta
) -> None:
    """The API accepts times to 9999-12-31T23:59:59; the interval or day after them is past
    what ``datetime`` holds."""
    since = until - span
    start, end = window(since, until)
    assert end <= MEASURED_UNTIL
    assert all(day_end <= MEASURED_UNTIL for _, day_end in days_of(since, until))
    assert start == floor_interval(min(since, MEASURED_UNTIL))


@given(
    st.lists(st.integers(min_value=0, max_value=200_000), max_size=20),
    st.floats(min_value=0, max_value=10_000),
    st.floats(min_value=0, max_value=10_000),
)
def test_the_derived_figures_divide_the_sums(waits: list[int], owned: float, busy: float) -> None:
    sums = WorkloadSums(
        wait_count=len(waits),
        wait_seconds_sum=float(sum(waits)),
        waits_within=tuple(sum(w <= limit for w in waits) for limit in WAIT_LIMITS),
        conversation_seconds=owned,
        busy_agent_seconds=busy,
    )
    for target in WAIT_LIMITS:
        found = derive(sums, datetime(2024, 1, 1, tzinfo=UTC), 3600, target)
        within = sum(w <= target for w in waits)
        assert found.service_level == (within / len(waits) if waits else None)
        assert found.average_wait_seconds == (sum(waits) / len(waits) if waits else None)
        assert found.concurrency == (owned / busy if busy else None)
        assert found.busy_agents == busy / 3600
