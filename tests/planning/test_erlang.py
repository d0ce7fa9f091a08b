"""Erlang C and Erlang A (``router/planning/erlang.py``): against exact rational arithmetic and
published tables, against each other in the limits where they meet, against the conservation
laws of the queue, against a seeded simulation of M/M/N+M, then properties of the staffing
search.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.planning.erlang import (
    MAX_SERVERS,
    MAX_TRAFFIC_ERLANGS,
    ErlangAFigures,
    ErlangCFigures,
    agents_for_service_level,
    agents_for_service_level_with_abandonment,
    erlang_a,
    erlang_b,
    erlang_c,
)
from tests.engine.builders import examples


def exact_erlang_b(servers: int, traffic: int) -> Fraction:
    """``(a^n / n!) / sum_k a^k / k!`` in integers: ``a^n / sum_k a^k n! / k!``."""
    total = 0
    falling = 1  # n! / k!, from k = n down
    for k in range(servers, -1, -1):
        total += traffic**k * falling
        falling *= k
    return Fraction(traffic**servers, total)


def exact_erlang_c(servers: int, traffic: int) -> Fraction:
    blocking = exact_erlang_b(servers, traffic)
    return servers * blocking / (servers - traffic * (1 - blocking))


def figures_c(agents: int, traffic: float, *, target: float = 20.0) -> ErlangCFigures:
    handle = 180.0
    return erlang_c(
        agents,
        arrival_rate_per_second=traffic / handle,
        handle_seconds=handle,
        target_seconds=target,
    )


# -- Erlang B and C ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "published"),
    [(11, 0.6821), (12, 0.4494), (13, 0.2853), (15, 0.1020)],
)
def test_erlang_c_matches_the_published_table_at_10_erlangs(agents: int, published: float) -> None:
    """Erlang C tables at 10 Erlangs print 0.6821, 0.4494, 0.2853 and 0.1020 (the exact value
    for 15 agents is 0.10204, not 0.1014 as sometimes quoted)."""
    figures = figures_c(agents, 10.0)
    assert round(figures.probability_of_wait, 4) == published
    assert figures.probability_of_wait == pytest.approx(
        float(exact_erlang_c(agents, 10)), rel=1e-12
    )


@pytest.mark.parametrize(
    ("servers", "traffic"), [(1, 1), (5, 3), (30, 25), (120, 100), (2050, 2000), (2200, 2000)]
)
def test_erlang_b_recursion_matches_exact_arithmetic_up_to_thousands_of_servers(
    servers: int, traffic: int
) -> None:
    assert erlang_b(servers, float(traffic)) == pytest.approx(
        float(exact_erlang_b(servers, traffic)), rel=1e-11
    )
    figures = figures_c(servers, float(traffic))
    assert figures.probability_of_wait == pytest.approx(
        float(exact_erlang_c(servers, traffic)), rel=1e-11
    )


def test_erlang_c_service_level_answer_speed_and_occupancy_follow_the_closed_forms() -> None:
    """``SL = 1 - C exp(-(n - a) t / h)``, ``ASA = C h / (n - a)``, occupancy ``a / n``."""
    figures = figures_c(12, 10.0, target=20.0)
    wait = float(exact_erlang_c(12, 10))
    assert figures.service_level == pytest.approx(1 - wait * math.exp(-2 * 20 / 180), rel=1e-12)
    assert figures.average_speed_of_answer_seconds == pytest.approx(wait * 180 / 2, rel=1e-12)
    assert figures.occupancy == pytest.approx(10 / 12)


def test_an_unstable_erlang_c_queue_never_answers_in_time() -> None:
    figures = figures_c(10, 10.0)
    assert (figures.probability_of_wait, figures.service_level, figures.occupancy) == (
        1.0,
        0.0,
        1.0,
    )
    assert figures.average_speed_of_answer_seconds == math.inf


def test_no_traffic_needs_no_agent_and_nobody_waits() -> None:
    assert agents_for_service_level(0.0, 180.0, 20.0, 0.8).agents == 0
    assert agents_for_service_level_with_abandonment(0.0, 180.0, 60.0, 20.0, 0.8).agents == 0
    quiet = erlang_a(
        3,
        arrival_rate_per_second=0.0,
        handle_seconds=180.0,
        patience_seconds=60.0,
        target_seconds=0.0,
    )
    assert (quiet.probability_of_wait, quiet.service_level, quiet.occupancy) == (0.0, 1.0, 0.0)


def test_concurrency_counts_each_agent_as_parallel_servers() -> None:
    """The chat fudge: 5 agents at concurrency 3 are 15 single servers, in both models."""
    rate = 12.0 / 600
    single = erlang_c(15, arrival_rate_per_second=rate, handle_seconds=600, target_seconds=30)
    shared = erlang_c(
        5, arrival_rate_per_second=rate, handle_seconds=600, target_seconds=30, concurrency=3
    )
    assert (shared.agents, shared.servers) == (5, 15)
    assert shared.service_level == single.service_level
    search = agents_for_service_level(rate, 600, 30, 0.9, concurrency=3)
    assert search.servers == 3 * search.agents
    assert (
        erlang_c(
            search.agents - 1,
            arrival_rate_per_second=rate,
            handle_seconds=600,
            target_seconds=30,
            concurrency=3,
        ).service_level
        < 0.9
        <= search.service_level
    )


def test_the_search_sizes_two_thousand_erlangs() -> None:
    """A large centre: 2000 Erlangs, 80% in 20 s."""
    found = agents_for_service_level(2000 / 300, 300, 20, 0.8)
    assert found.agents > 2000
    assert found.service_level >= 0.8
    assert (
        erlang_c(
            found.agents - 1,
            arrival_rate_per_second=2000 / 300,
            handle_seconds=300,
            target_seconds=20,
        ).service_level
        < 0.8
    )
    capped = agents_for_service_level(2000 / 300, 300, 20, 0.8, max_occupancy=0.95)
    assert capped.occupancy <= 0.95 < 2000 / (capped.servers - 1)


@pytest.mark.parametrize(
    "call",
    [
        lambda: erlang_c(-1, arrival_rate_per_second=1, handle_seconds=1, target_seconds=1),
        lambda: erlang_c(1, arrival_rate_per_second=-1, handle_seconds=1, target_seconds=1),
        lambda: erlang_c(1, arrival_rate_per_second=math.nan, handle_seconds=1, target_seconds=1),
        lambda: erlang_c(1, arrival_rate_per_second=1, handle_seconds=0, target_seconds=1),
        lambda: erlang_c(1, arrival_rate_per_second=1, handle_seconds=1, target_seconds=-1),
        lambda: erlang_c(
            1, arrival_rate_per_second=1, handle_seconds=1, target_seconds=1, concurrency=0
        ),
        lambda: erlang_c(
            1,
            arrival_rate_per_second=MAX_TRAFFIC_ERLANGS + 1,
            handle_seconds=1,
            target_seconds=1,
        ),
        lambda: erlang_c(
            MAX_SERVERS + 1, arrival_rate_per_second=1, handle_seconds=1, target_seconds=1
        ),
        lambda: erlang_a(
            1, arrival_rate_per_second=1, handle_seconds=1, patience_seconds=0, target_seconds=1
        ),
        lambda: agents_for_service_level(1, 1, 1, 1.0),
        lambda: agents_for_service_level(1, 1, 1, 0.0),
        lambda: agents_for_service_level(1, 1, 1, 0.8, max_occupancy=0),
        lambda: agents_for_service_level_with_abandonment(1, 1, 1, 1, 0.8, max_abandonment=0),
        lambda: erlang_b(True, 1.0),
    ],
)
def test_out_of_range_inputs_are_refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match="must be"):
        call()


# -- Erlang A ---------------------------------------------------------------------------------


def figures_a(
    agents: int, traffic: float, *, patience: float, target: float = 20.0, handle: float = 180.0
) -> ErlangAFigures:
    return erlang_a(
        agents,
        arrival_rate_per_second=traffic / handle,
        handle_seconds=handle,
        patience_seconds=patience,
        target_seconds=target,
    )


@pytest.mark.parametrize("agents", [11, 12, 15, 20])
def test_erlang_a_with_endless_patience_is_erlang_c(agents: int) -> None:
    """Against a handling time of 180 s, patience of 2.5e6 s leaves Erlang A within 2e-4 of
    Erlang C (ASA within 0.2%), and the gaps are first order in ``1 / patience``: ten times
    the patience, a tenth of the gap (measured ratios 0.100 to 0.104)."""
    textbook = figures_c(agents, 10.0)

    def gaps(patience: float) -> tuple[float, float, float]:
        patient = figures_a(agents, 10.0, patience=patience)
        return (
            textbook.probability_of_wait - patient.probability_of_wait,
            patient.service_level - textbook.service_level,
            1 - patient.average_speed_of_answer_seconds / textbook.average_speed_of_answer_seconds,
        )

    near, nearer = gaps(2.5e5), gaps(2.5e6)
    assert max(nearer[:2]) < 2e-4
    assert nearer[2] < 2e-3
    for before, after in zip(near, nearer, strict=True):
        assert 0 < after == pytest.approx(before / 10, rel=0.1)
    assert figures_a(agents, 10.0, patience=2.5e6).occupancy == pytest.approx(
        textbook.occupancy, abs=1e-4
    )


def test_erlang_a_with_a_huge_staff_has_no_waiting() -> None:
    figures = figures_a(100_000, 10.0, patience=60.0)
    assert figures.probability_of_wait == 0.0
    assert figures.probability_of_abandonment == 0.0
    assert figures.service_level == pytest.approx(1.0, abs=1e-12)
    assert figures.average_speed_of_answer_seconds == 0.0
    assert figures.occupancy == pytest.approx(10.0 / 100_000)


def stationary_queue(servers: int, traffic: float, handle: float, patience: float) -> list[float]:
    """The M/M/N+M chain by plain products, cut far out (a reference independent of the
    module's log-space truncation)."""
    rate, mu, theta = traffic / handle, 1 / handle, 1 / patience
    weights = [1.0]
    for k in range(1, servers + 2000):
        weights.append(weights[-1] * rate / (min(k, servers) * mu + max(k - servers, 0) * theta))
    total = sum(weights)
    return [weight / total for weight in weights]


@pytest.mark.parametrize(
    ("agents", "traffic", "patience"),
    [(10, 10.0, 120.0), (8, 10.0, 60.0), (14, 10.0, 600.0), (3, 8.0, 30.0), (0, 2.0, 45.0)],
)
def test_erlang_a_keeps_the_conservation_laws(agents: int, traffic: float, patience: float) -> None:
    """Little's law three ways, with the mean queue and busy servers of the chain: customers
    give up at ``theta E[Q] = lambda P(ab)``, they wait ``E[Q] = lambda E[wait]``, and the
    busy servers carry ``E[busy] = lambda (1 - P(ab)) h``. The left sides come from the chain,
    the right sides from the arriving customer's waiting-time analysis."""
    handle = 180.0
    pi = stationary_queue(agents, traffic, handle, patience)
    queue = sum((k - agents) * p for k, p in enumerate(pi) if k > agents)
    busy = sum(min(k, agents) * p for k, p in enumerate(pi))
    rate = traffic / handle
    figures = figures_a(agents, traffic, patience=patience, handle=handle)
    assert figures.probability_of_abandonment == pytest.approx(queue / patience / rate, rel=1e-9)
    assert figures.average_wait_seconds == pytest.approx(queue / rate, rel=1e-9)
    assert figures.probability_of_wait == pytest.approx(sum(pi[agents:]), rel=1e-9)
    if agents:
        assert figures.occupancy * agents == pytest.approx(busy, rel=1e-9)
        assert busy == pytest.approx(
            rate * (1 - figures.probability_of_abandonment) * handle, rel=1e-9
        )


@dataclass(frozen=True)
class Simulated:
    waited: list[bool]
    abandoned: list[bool]
    answered_in_time: list[bool]
    wait: list[float]


def simulate(
    servers: int,
    *,
    rate: float,
    handle: float,
    patience: float,
    target: float,
    arrivals: int,
    seed: int,
) -> Simulated:
    """M/M/N+M, first come first served: a customer still queued when its patience runs out
    leaves; a freed server takes the oldest customer who has not left."""
    rng = random.Random(seed)
    completions: list[float] = []
    queue: deque[tuple[float, float, int]] = deque()
    result = Simulated([False] * arrivals, [False] * arrivals, [False] * arrivals, [0.0] * arrivals)

    def free_servers_until(instant: float) -> None:
        while completions and completions[0] <= instant:
            done = heapq.heappop(completions)
            while queue:
                arrived, gives_up, who = queue.popleft()
                if gives_up > done:
                    result.wait[who] = done - arrived
                    result.answered_in_time[who] = done - arrived <= target
                    heapq.heappush(completions, done + rng.expovariate(1 / handle))
                    break
                result.abandoned[who] = True

    now = 0.0
    for who in range(arrivals):
        now += rng.expovariate(rate)
        free_servers_until(now)
        if len(completions) < servers:
            result.answered_in_time[who] = True
            heapq.heappush(completions, now + rng.expovariate(1 / handle))
        else:
            result.waited[who] = True
            queue.append((now, now + rng.expovariate(1 / patience), who))
    free_servers_until(math.inf)
    return result


@pytest.mark.parametrize(("agents", "patience", "target"), [(10, 120.0, 20.0), (8, 60.0, 30.0)])
def test_erlang_a_matches_a_seeded_simulation(agents: int, patience: float, target: float) -> None:
    """400,000 arrivals at 10 Erlangs (handling 180 s), the first 5% dropped as warm-up, the
    rest cut in 20 batches. The batch means' standard errors measured at these seeds are
    about 0.0025 (probability of waiting), 0.0013 (abandonment), 0.0026 (service level) and
    0.14 s (ASA), and the simulation landed within 1.4 standard errors of every figure; the
    tolerances are 5 standard errors, so a wrong formula (a few hundredths off) fails."""
    handle, arrivals, batches = 180.0, 400_000, 20
    rate = 10.0 / handle
    run = simulate(
        agents,
        rate=rate,
        handle=handle,
        patience=patience,
        target=target,
        arrivals=arrivals,
        seed=7,
    )
    warm = arrivals // 20
    size = (arrivals - warm) // batches
    spans = [range(warm + b * size, warm + (b + 1) * size) for b in range(batches)]

    def batch_mean(values: list[bool]) -> float:
        return statistics.fmean(statistics.fmean(values[i] for i in span) for span in spans)

    def answered_wait(span: range) -> float:
        return statistics.fmean(run.wait[i] for i in span if not run.abandoned[i])

    figures = figures_a(agents, 10.0, patience=patience, target=target, handle=handle)
    assert batch_mean(run.waited) == pytest.approx(figures.probability_of_wait, abs=0.0125)
    assert batch_mean(run.abandoned) == pytest.approx(
        figures.probability_of_abandonment, abs=0.0065
    )
    assert batch_mean(run.answered_in_time) == pytest.approx(figures.service_level, abs=0.013)
    assert statistics.fmean(answered_wait(span) for span in spans) == pytest.approx(
        figures.average_speed_of_answer_seconds, abs=0.7
    )


def test_a_tiny_staff_with_endless_patience_is_refused_not_looped() -> None:
    with pytest.raises(ValueError, match="states"):
        figures_a(1000, 2000.0, patience=2.5e6, handle=300.0)


def test_the_abandonment_cap_stops_an_overloaded_staff_from_meeting_the_level() -> None:
    """Impatient customers (60 s) keep the queue short enough that 1622 agents answer 80% of
    2000 Erlangs within 20 s while 19% give up; capping abandonment at 5% needs more."""
    loose = agents_for_service_level_with_abandonment(2000 / 300, 300, 60, 20, 0.8)
    assert loose.agents < 2000
    assert loose.probability_of_abandonment > 0.1
    capped = agents_for_service_level_with_abandonment(
        2000 / 300, 300, 60, 20, 0.8, max_abandonment=0.05
    )
    assert capped.probability_of_abandonment <= 0.05
    assert capped.agents > loose.agents
    fewer = erlang_a(
        capped.agents - 1,
        arrival_rate_per_second=2000 / 300,
        handle_seconds=300,
        patience_seconds=60,
        target_seconds=20,
    )
    assert fewer.probability_of_abandonment > 0.05


# -- properties -------------------------------------------------------------------------------

traffic = st.floats(0.1, 100.0)
handles = st.floats(30.0, 1000.0)
targets = st.floats(0.0, 600.0)
patiences = st.floats(5.0, 5000.0)
concurrencies = st.integers(1, 4)
levels = st.floats(0.05, 0.99)
property_settings = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@property_settings
@given(
    agents=st.integers(0, 150),
    traffic=traffic,
    handle=handles,
    target=targets,
    concurrency=concurrencies,
)
def test_one_more_agent_never_lowers_the_erlang_c_service_level(
    agents: int, traffic: float, handle: float, target: float, concurrency: int
) -> None:
    def figures(staff: int) -> ErlangCFigures:
        return erlang_c(
            staff,
            arrival_rate_per_second=traffic / handle,
            handle_seconds=handle,
            target_seconds=target,
            concurrency=concurrency,
        )

    fewer, more = figures(agents), figures(agents + 1)
    assert 0.0 <= fewer.probability_of_wait <= 1.0
    assert 0.0 <= fewer.service_level <= 1.0
    assert more.service_level >= fewer.service_level
    assert more.probability_of_wait <= fewer.probability_of_wait
    assert more.average_speed_of_answer_seconds <= fewer.average_speed_of_answer_seconds


@property_settings
@given(
    agents=st.integers(0, 150),
    traffic=traffic,
    handle=handles,
    patience=patiences,
    target=targets,
    concurrency=concurrencies,
)
def test_one_more_agent_never_lowers_the_erlang_a_service_level(
    agents: int, traffic: float, handle: float, patience: float, target: float, concurrency: int
) -> None:
    def figures(staff: int) -> ErlangAFigures:
        return erlang_a(
            staff,
            arrival_rate_per_second=traffic / handle,
            handle_seconds=handle,
            patience_seconds=patience,
            target_seconds=target,
            concurrency=concurrency,
        )

    fewer, more = figures(agents), figures(agents + 1)
    for found in (fewer, more):
        assert 0.0 <= found.probability_of_abandonment <= 1.0
        assert 0.0 <= found.probability_of_wait <= 1.0
        assert 0.0 <= found.service_level <= 1.0 - found.probability_of_abandonment + 1e-12
        assert 0.0 <= found.occupancy <= 1.0
    assert more.service_level >= fewer.service_level - 1e-12
    assert more.probability_of_abandonment <= fewer.probability_of_abandonment + 1e-12


@property_settings
@given(
    traffic=traffic,
    handle=handles,
    target=targets,
    level=levels,
    concurrency=concurrencies,
    ceiling=st.none() | st.floats(0.5, 1.0),
)
def test_the_erlang_c_search_meets_the_target_and_one_agent_fewer_does_not(
    traffic: float,
    handle: float,
    target: float,
    level: float,
    concurrency: int,
    ceiling: float | None,
) -> None:
    rate = traffic / handle
    found = agents_for_service_level(
        rate, handle, target, level, concurrency=concurrency, max_occupancy=ceiling
    )
    assert found.service_level >= level
    assert ceiling is None or found.occupancy <= ceiling
    fewer = erlang_c(
        found.agents - 1,
        arrival_rate_per_second=rate,
        handle_seconds=handle,
        target_seconds=target,
        concurrency=concurrency,
    )
    assert fewer.service_level < level or (ceiling is not None and fewer.occupancy > ceiling)


@property_settings
@given(
    traffic=traffic,
    handle=handles,
    patience=patiences,
    target=targets,
    level=levels,
    concurrency=concurrencies,
    ceiling=st.none() | st.floats(0.5, 1.0),
    abandonment=st.none() | st.floats(0.01, 0.5),
)
def test_the_erlang_a_search_meets_the_target_and_one_agent_fewer_does_not(
    traffic: float,
    handle: float,
    patience: float,
    target: float,
    level: float,
    concurrency: int,
    ceiling: float | None,
    abandonment: float | None,
) -> None:
    rate = traffic / handle
    found = agents_for_service_level_with_abandonment(
        rate,
        handle,
        patience,
        target,
        level,
        concurrency=concurrency,
        max_occupancy=ceiling,
        max_abandonment=abandonment,
    )
    assert found.service_level >= level
    assert ceiling is None or found.occupancy <= ceiling
    assert abandonment is None or found.probability_of_abandonment <= abandonment
    fewer = erlang_a(
        found.agents - 1,
        arrival_rate_per_second=rate,
        handle_seconds=handle,
        patience_seconds=patience,
        target_seconds=target,
        concurrency=concurrency,
    )
    assert (
        fewer.service_level < level
        or (ceiling is not None and fewer.occupancy > ceiling)
        or (abandonment is not None and fewer.probability_of_abandonment > abandonment)
    )
