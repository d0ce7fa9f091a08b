"""The Erlang figures beside the simulation's, per interval."""

from __future__ import annotations

from router.planning.compare import side_by_side
from router.planning.erlang import agents_for_service_level, erlang_c
from router.planning.staffing import AgentGroup, Demand, DemandStream, ServiceTarget
from schemas import Channel

TARGET = ServiceTarget(within_seconds=60, share=0.8)


def test_one_stream_is_the_textbook_queue() -> None:
    demand = Demand(
        start=0,
        interval_seconds=3600,
        streams=(
            DemandStream(
                queue="default", channel=Channel.WEBCHAT, arrivals=(120.0, 0.0), holding_seconds=600
            ),
        ),
    )
    group = AgentGroup(name="a", capacity={Channel.WEBCHAT: 3})
    busy, quiet = side_by_side(demand, group, TARGET, [8, 0])
    expected = agents_for_service_level(120 / 3600, 600, 60, 0.8, concurrency=3)
    assert busy.erlang_c_agents == expected.agents
    assert busy.concurrency == 3
    assert busy.arrival_rate_per_hour == 120.0
    level = erlang_c(
        8, arrival_rate_per_second=120 / 3600, handle_seconds=600, target_seconds=60, concurrency=3
    )
    assert busy.erlang_c_service_level == round(level.service_level, 4)
    assert busy.erlang_a_agents is None  # nobody's patience is known
    assert (quiet.erlang_c_agents, quiet.handle_seconds, quiet.scheduled) == (0, None, 0)


def test_streams_pool_by_arrivals_and_channels_the_group_lacks_are_left_out() -> None:
    demand = Demand(
        start=0,
        interval_seconds=1800,
        streams=(
            DemandStream(
                queue="q",
                channel=Channel.WEBCHAT,
                arrivals=(30.0,),
                holding_seconds=300,
                patience_seconds=120,
            ),
            DemandStream(
                queue="q",
                channel=Channel.EMAIL,
                arrivals=(10.0,),
                holding_seconds=1500,
                patience_seconds=None,
            ),
            DemandStream(queue="q", channel=Channel.SMS, arrivals=(500.0,), holding_seconds=60),
        ),
    )
    group = AgentGroup(name="a", capacity={Channel.WEBCHAT: 2, Channel.EMAIL: 6})
    (row,) = side_by_side(demand, group, TARGET, [3])
    assert row.arrival_rate_per_hour == 80.0  # 40 per half hour; SMS is not served
    assert row.handle_seconds == (30 * 300 + 10 * 1500) / 40
    assert row.concurrency == round((30 * 2 + 10 * 6) / 40)
    assert row.patience_seconds == 120.0  # only the streams with a patience
    assert row.erlang_a_agents is not None
    assert row.erlang_a_service_level is not None


def test_traffic_beyond_the_formulas_gives_no_figure_rather_than_failing_the_run() -> None:
    """120 email conversations an hour held four days each: 11,520 Erlangs, beyond what
    the formulas take. The simulation ran; the comparison says nothing for that interval
    (it raised, and failed the whole job after the simulation)."""
    demand = Demand(
        start=0,
        interval_seconds=3600,
        streams=(
            DemandStream(
                queue="default",
                channel=Channel.EMAIL,
                arrivals=(120.0,),
                holding_seconds=4 * 86400,
                patience_seconds=3600,
            ),
        ),
    )
    group = AgentGroup(name="a", capacity={Channel.EMAIL: 1})
    (busy,) = side_by_side(demand, group, TARGET, [10])
    assert (busy.erlang_c_service_level, busy.erlang_a_service_level) == (None, None)
    assert (busy.erlang_c_agents, busy.erlang_a_agents) == (None, None)
