"""From measured workload to a staffing demand."""

from __future__ import annotations

import pytest

from router.planning.demand import (
    DEFAULT_FIRST_REPLY_SECONDS,
    DEFAULT_HOLDING_SECONDS,
    HandlingHistory,
    HandlingOverrides,
    forecast_demand,
    recorded_demand,
)
from router.planning.staffing import draw_arrivals
from schemas import Channel

HOUR = 3600


def measured(**sums: float) -> HandlingHistory:
    return HandlingHistory(
        queue="support",
        channel=Channel.SMS,
        arrivals={0: 3.0, HOUR: 5.0},
        **sums,  # type: ignore[arg-type]
    )


def test_handling_comes_from_the_historys_sums() -> None:
    history = measured(
        assigned=8,
        conversation_seconds=4800.0,
        first_reply_count=4,
        first_reply_seconds_sum=200.0,
        abandoned=2,
        wait_seconds_sum=300.0,
        returning_share=0.25,
    )
    demand = recorded_demand([history], start=0, intervals=3, interval_seconds=HOUR)
    (stream,) = demand.streams
    assert stream.arrivals == (3.0, 5.0, 0.0)
    assert stream.holding_seconds == 600.0  # owned seconds per conversation assigned
    assert stream.first_reply_seconds == 50.0
    assert stream.patience_seconds == 150.0  # waited seconds per customer who gave up
    assert stream.returning_share == 0.25
    assert demand.exact_counts  # a recorded day is replayed as it came
    assert len(draw_arrivals(demand, 1)) == 8
    assert len(draw_arrivals(demand, 2)) == 8


def test_without_measurements_the_defaults_hold_and_nobody_gives_up() -> None:
    (stream,) = recorded_demand([measured()], start=0, intervals=1, interval_seconds=HOUR).streams
    assert stream.holding_seconds == DEFAULT_HOLDING_SECONDS
    assert stream.first_reply_seconds == DEFAULT_FIRST_REPLY_SECONDS
    assert stream.patience_seconds is None


def test_a_rare_abandonment_in_a_long_history_is_as_good_as_none() -> None:
    """Eight weeks of 5 an hour waiting 400 s on average, one customer gave up: the
    estimate (31 days) is past what a stream takes, and the run failed on it."""
    served = 8 * 7 * 24 * 5
    history = measured(
        assigned=served,
        conversation_seconds=served * 600.0,
        abandoned=1,
        wait_seconds_sum=served * 400.0,
    )
    (stream,) = recorded_demand([history], start=0, intervals=1, interval_seconds=HOUR).streams
    assert stream.patience_seconds is None


def test_overrides_replace_what_was_measured() -> None:
    overrides = HandlingOverrides(holding_seconds=120.0, patience_seconds=90.0, returning_share=1.0)
    (stream,) = recorded_demand(
        [measured(assigned=8, conversation_seconds=4800.0)],
        start=0,
        intervals=1,
        interval_seconds=HOUR,
        overrides=overrides,
    ).streams
    assert (stream.holding_seconds, stream.patience_seconds, stream.returning_share) == (
        120.0,
        90.0,
        1.0,
    )


def test_a_forecast_demand_draws_poisson_arrivals_and_says_how_it_was_made() -> None:
    demand, (made,) = forecast_demand(
        [measured()], start=2 * HOUR, intervals=2, interval_seconds=HOUR, tz="UTC"
    )
    assert not demand.exact_counts
    assert demand.streams[0].arrivals == (4.0, 4.0)  # an hour of history: the flat mean
    assert (made.model, made.backtest) == ("flat", None)


def test_nothing_measured_is_nothing_to_plan_for() -> None:
    with pytest.raises(ValueError, match="nothing to plan for"):
        recorded_demand([], start=0, intervals=1, interval_seconds=HOUR)
