"""When the router's loop lets records gather (``router.shell.gathering``), driven by a clock
of the test's own: no broker, no sleeping.

A model plays the loop: records arrive at rates that change, the loop waits what
``Gathering.wait`` says, fetches everything that arrived, and reports it. Each example
checks that a wait never passes the next deadline nor the gathering interval, that below
the threshold nothing waits, and that the decision follows the rate of the latest window.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.shell.gathering import SUSTAINED_WINDOWS, WINDOW_INTERVALS, WINDOW_SECONDS, Gathering
from router.shell.residents import RouterConfig
from tests.engine.builders import examples


def test_nothing_waits_before_a_window_has_been_counted() -> None:
    gathering = Gathering(20, 0)
    assert gathering.wait(0.0, None) == 0.0
    gathering.fetched(10_000, 0.0)
    assert not gathering.active
    assert gathering.wait(0.001, None) == 0.0


def test_fast_windows_in_a_row_make_the_loop_wait_for_the_rest_of_the_interval() -> None:
    gathering = Gathering(20, 1_000)
    gathering.fetched(0, 0.0)
    gathering.fetched(3_000, 1.0)  # 3,000 records in the first second
    assert gathering.rate == pytest.approx(3_000)
    assert not gathering.active  # one window: a burst
    gathering.fetched(2_500, 2.0)
    assert SUSTAINED_WINDOWS == 2
    assert gathering.active
    assert gathering.wait(2.005, None) == pytest.approx(0.015)
    assert gathering.wait(2.005, 0.004) == pytest.approx(0.004)  # a deadline comes first
    assert gathering.wait(2.005, -1.0) == 0.0  # a deadline already due
    assert gathering.wait(2.030, None) == 0.0  # the interval has passed


def test_a_burst_of_one_window_does_not_gather() -> None:
    gathering = Gathering(20, 1_000)
    gathering.fetched(0, 0.0)
    gathering.fetched(3_000, 1.0)
    gathering.fetched(0, 2.0)
    gathering.fetched(3_000, 3.0)
    assert not gathering.active


def test_the_threshold_rate_itself_gathers() -> None:
    gathering = Gathering(20, 1_000)
    gathering.fetched(0, 0.0)
    gathering.fetched(1_000, 1.0)
    gathering.fetched(1_000, 2.0)
    assert gathering.active


def test_gathering_stops_when_the_rate_falls_below_the_threshold() -> None:
    gathering = Gathering(20, 1_000)
    gathering.fetched(0, 0.0)
    gathering.fetched(2_000, 1.0)
    gathering.fetched(2_000, 2.0)
    assert gathering.active
    gathering.fetched(900, 3.0)
    assert not gathering.active
    assert gathering.wait(3.001, None) == 0.0


def test_a_long_interval_counts_over_several_intervals() -> None:
    gathering = Gathering(1_000, 10)
    assert gathering.window == WINDOW_INTERVALS * 1.0 > WINDOW_SECONDS
    gathering.fetched(0, 0.0)
    gathering.fetched(30, 1.0)  # the records of the first second
    assert gathering.rate == 0.0  # not counted yet: the window is longer
    gathering.fetched(30, 4.0)
    assert gathering.rate == pytest.approx(15)
    # Once waits begin, a batch holds what the consumer fetched an interval before (one
    # record), and the rest comes in the next: the window counts both.
    for second in range(5, 8):
        gathering.fetched(1, second)
        gathering.fetched(25, second + 0.01)
    gathering.fetched(1, 8.02)
    assert gathering.rate == pytest.approx(79 / 4.02)
    assert gathering.active


@pytest.mark.parametrize(("gather_ms", "above_per_s"), [(0, 0), (0, 1_000)])
def test_an_interval_of_zero_never_gathers(gather_ms: int, above_per_s: int) -> None:
    gathering = Gathering(gather_ms, above_per_s)
    gathering.fetched(0, 0.0)
    gathering.fetched(50_000, 1.0)
    assert not gathering.active
    assert gathering.wait(1.0, None) == 0.0


def test_the_settings_are_bounded() -> None:
    with pytest.raises(ValueError, match="gather_ms"):
        RouterConfig(gather_ms=1_001)
    with pytest.raises(ValueError, match="gather_above_per_s"):
        RouterConfig(gather_above_per_s=-1)


@st.composite
def arrivals(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Phases of (seconds, records per second)."""
    return draw(
        st.lists(
            st.tuples(
                st.floats(min_value=0.2, max_value=3.0),
                st.sampled_from([0.0, 50.0, 400.0, 1_499.0, 1_501.0, 3_000.0, 20_000.0]),
            ),
            min_size=1,
            max_size=6,
        )
    )


@given(
    phases=arrivals(),
    gather_ms=st.sampled_from([1, 5, 20, 100]),
    deadline_every=st.one_of(st.none(), st.floats(min_value=0.001, max_value=0.05)),
    work_per_record=st.sampled_from([0.0, 20e-6, 200e-6]),
)
@settings(max_examples=examples(200), deadline=None)
def test_waits_stay_within_the_interval_and_the_deadlines(
    phases: list[tuple[float, float]],
    gather_ms: int,
    deadline_every: float | None,
    work_per_record: float,
) -> None:
    above = 1_500
    gathering = Gathering(gather_ms, above)
    interval = gather_ms / 1000
    ends, start = [], 0.0
    for seconds, rate in phases:
        start += seconds
        ends.append((start, rate))

    def arrived_by(t: float) -> float:
        """Records arrived from 0 to ``t`` (fractional: a fluid model of arrivals)."""
        total, previous = 0.0, 0.0
        for end, rate in ends:
            total += rate * (min(t, end) - previous)
            if t <= end:
                return total
            previous = end
        return total

    now, fetched_until = 0.0, 0.0
    window_start, window_records = 0.0, 0.0
    expected_active = False
    fast_windows = 0
    last_fetch = -math.inf
    while now < ends[-1][0]:
        due_in = None
        if deadline_every is not None:
            due_in = deadline_every - now % deadline_every
        wait = gathering.wait(now, due_in)
        assert wait >= 0.0
        assert gathering.active == expected_active
        if not expected_active:
            assert wait == 0.0
        else:
            assert wait <= max(0.0, last_fetch + interval - now) + 1e-12
        if due_in is not None:
            assert wait <= due_in + 1e-12
        now += wait
        records = arrived_by(now) - arrived_by(fetched_until)
        fetched_until = now
        count = int(records)
        gathering.fetched(count, now)
        last_fetch = now
        window_records += count
        if now - window_start >= gathering.window:
            fast = window_records / (now - window_start) >= above
            fast_windows = fast_windows + 1 if fast else 0
            expected_active = fast_windows >= SUSTAINED_WINDOWS
            assert gathering.rate == pytest.approx(window_records / (now - window_start))
            window_start, window_records = now, 0.0
        # The batch's work, and a fetch that waits a little when nothing came.
        now += max(count * work_per_record, 0.0 if count else 0.01)
