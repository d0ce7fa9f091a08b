"""The textbook staffing figures planners compare against: Erlang C (M/M/N) and Erlang A
(M/M/N+M, customers who give up).

Both models see ``servers`` identical servers, each working one customer at a time for an
exponential handling time of mean ``handle_seconds`` (rate ``mu = 1 / handle_seconds``), and
Poisson arrivals at ``arrival_rate_per_second`` (``lambda``). The offered traffic is
``a = lambda * handle_seconds`` Erlangs.

Concurrency is a fudge. ``concurrency = c`` turns each agent into ``c`` independent
servers of full speed (``servers = agents * c``), the way workforce tools size chat. Real
agents slow down when they juggle conversations and their threads are bursty, so this
over-promises; the staffing simulation runs the real engine for that reason, and these
figures are only the comparison.

Definitions, for both models (an arrival's wait is the time from its arrival until a server
takes it):

- ``probability_of_wait``: an arrival finds every server busy.
- ``service_level``: the arrival is answered (taken by a server) within ``target_seconds``.
  In Erlang A an arrival that abandons is a miss, even if it abandons before the target:
  the denominator is every arrival.
- ``average_speed_of_answer_seconds``: the mean wait of the answered arrivals, the ones
  answered at once counting zero; ``inf`` when no arrival is answered or the queue is
  unstable (Erlang C with ``servers <= a``).
- ``occupancy``: the mean fraction of servers busy (Erlang C: ``a / servers``, 1 when
  unstable).

Erlang C. The Erlang B blocking probability comes from the recursion
``B(0) = 1, B(n) = a B(n-1) / (n + a B(n-1))``, which stays in [0, 1] for any size (no
factorial, no power of ``a``), then ``C = n B / (n - a (1 - B))`` for ``n > a`` (else 1),
``service_level = 1 - C exp(-(n - a) t / handle)``, ``ASA = C handle / (n - a)``.

Erlang A, computed exactly (no approximation formula):

1. The number in system is a birth-death chain: births ``lambda``, deaths
   ``min(k, n) mu + max(k - n, 0) theta`` with ``theta = 1 / patience_seconds``. Its
   stationary weights ``pi_k`` are products of ratios ``r_k = lambda / death_k``, summed in
   log space. The death rates never decrease, so the ratios never increase: once
   ``r_{K+1} < 1`` the states above ``K`` weigh at most ``pi_K r_{K+1} / (1 - r_{K+1})``,
   and the chain is cut at the first ``K`` where that bound is below 1e-12 of the largest
   weight (so below 1e-12 of the total). More than ``MAX_STATES`` states is refused.
2. An arrival sees the stationary state (Poisson arrivals see time averages). Finding
   ``k < n`` it is answered at once. Finding ``k = n + m`` it has ``m`` customers ahead,
   and while it waits the head of the queue moves on at ``alpha + i theta`` with
   ``alpha = n mu`` and ``i`` customers ahead (a service completion or one of them giving
   up), the stages ``i = m, m-1, ..., 0``, while its own patience runs out at ``theta``.
   Each stage ends after an exponential time of rate ``alpha + (i + 1) theta``, whatever
   ends it, so, with ``beta = alpha / theta``:

   - ``P(answered | m) = prod (alpha + i theta) / (alpha + (i + 1) theta)
     = beta / (beta + m + 1)`` (the product telescopes), and
     ``P(abandons | m) = (m + 1) theta / (alpha + (m + 1) theta)``;
   - ``E[wait | answered, m] = sum_{i=0..m} 1 / (alpha + (i + 1) theta)``;
   - ``E[min(wait, patience) | m] = (m + 1) / (alpha + (m + 1) theta)``;
   - given it is answered, its wait is a sum of exponentials of rates
     ``alpha + theta + i theta``, ``i = 0..m``: an arithmetic progression, whose sum has the
     density ``c e^{-(alpha + theta) v} (1 - e^{-theta v})^m``. Substituting
     ``x = 1 - e^{-theta v}`` makes its distribution function a regularised incomplete beta
     function with an integer first parameter, which is a negative binomial tail:
     ``P(wait <= t | answered, m) = P(J > m)``, ``J ~ NegativeBinomial(r = beta + 1,
     p = e^{-theta t})``, i.e. ``P(J = j) = Gamma(r + j) / (Gamma(r) j!) p^r (1 - p)^j``.
     Its terms are positive and follow ``P(J = j) = P(J = j - 1) (r + j - 1) / j (1 - p)``
     from ``P(J = 0) = e^{-(alpha + theta) t}``; they are carried in log space (no
     overflow, no underflow of the terms that matter, no difference of huge log-gammas)
     and ``P(J > m)`` is 1 minus their running sum, exact to about 1e-15 absolute. (As
     ``theta -> 0`` it becomes the Poisson tail of Erlang C.)
3. The figures are the averages of these over ``pi``; ``occupancy = sum min(k, n) pi_k / n``.

Maxima of the inputs: ``MAX_TRAFFIC_ERLANGS``, ``MAX_SERVERS``, ``MAX_CONCURRENCY``,
``MAX_SECONDS`` (handling, target and patience), ``MAX_STATES``; beyond them, and on any
value that is not a finite number of the right sign, a ``ValueError`` says which input.
"""

from __future__ import annotations

import math

import msgspec

MAX_TRAFFIC_ERLANGS = 10_000.0
"""Largest offered traffic ``arrival_rate_per_second * handle_seconds``."""
MAX_SERVERS = 100_000
"""Largest ``agents * concurrency`` evaluated or searched."""
MAX_CONCURRENCY = 20
"""Largest number of parallel servers one agent counts as."""
MAX_SECONDS = 30 * 86_400.0
"""Largest handling time, answer target and mean patience."""
MAX_STATES = 1_000_000
"""Largest truncated Erlang A chain (a long patience with an overloaded staff needs many
queue states before abandonments balance the arrivals)."""
TAIL_PROBABILITY = 1e-12
"""Erlang A ignores the states whose total probability is below this."""


class ErlangCFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Erlang C figures for one staffing level (definitions in the module docstring)."""

    agents: int
    servers: int
    traffic_erlangs: float
    probability_of_wait: float
    service_level: float
    average_speed_of_answer_seconds: float
    occupancy: float


class ErlangAFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Erlang A figures for one staffing level (definitions in the module docstring);
    ``average_wait_seconds`` is the mean time every arrival spends waiting, until it is
    answered or gives up."""

    agents: int
    servers: int
    traffic_erlangs: float
    probability_of_wait: float
    probability_of_abandonment: float
    service_level: float
    average_speed_of_answer_seconds: float
    average_wait_seconds: float
    occupancy: float


def _finite(name: str, value: float, *, low: float, high: float, low_open: bool) -> float:
    number = float(value)
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        bound = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bound}{low:g}, {high:g}], got {value!r}")
    return number


def _count(name: str, value: int, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _traffic(arrival_rate_per_second: float, handle_seconds: float) -> tuple[float, float]:
    """Validated ``(lambda, handle_seconds)``."""
    handle = _finite("handle_seconds", handle_seconds, low=0.0, high=MAX_SECONDS, low_open=True)
    rate = _finite(
        "arrival_rate_per_second",
        arrival_rate_per_second,
        low=0.0,
        high=MAX_TRAFFIC_ERLANGS / handle,
        low_open=False,
    )
    return rate, handle


def _servers(agents: int, concurrency: int) -> int:
    _count("concurrency", concurrency, low=1, high=MAX_CONCURRENCY)
    _count("agents", agents, low=0, high=MAX_SERVERS // concurrency)
    return agents * concurrency


def _target(target_seconds: float) -> float:
    return _finite("target_seconds", target_seconds, low=0.0, high=MAX_SECONDS, low_open=False)


def _goals(service_level: float, max_occupancy: float | None) -> tuple[float, float]:
    goal = _finite("service_level", service_level, low=0.0, high=1.0, low_open=True)
    if goal >= 1.0:
        raise ValueError("service_level must be below 1: no finite staff answers everyone")
    ceiling = 1.0
    if max_occupancy is not None:
        ceiling = _finite("max_occupancy", max_occupancy, low=0.0, high=1.0, low_open=True)
    return goal, ceiling


def erlang_b(servers: int, traffic_erlangs: float) -> float:
    """Erlang B: the probability that an arrival finds all ``servers`` busy in M/M/N/N."""
    _count("servers", servers, low=0, high=MAX_SERVERS)
    traffic = _finite(
        "traffic_erlangs", traffic_erlangs, low=0.0, high=MAX_TRAFFIC_ERLANGS, low_open=False
    )
    blocking = 1.0
    for n in range(1, servers + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
        if blocking == 0.0:  # underflow: every further term stays 0
            break
    return blocking


def _erlang_c_figures(
    agents: int, servers: int, traffic: float, blocking: float, handle: float, target: float
) -> ErlangCFigures:
    """Erlang C from the Erlang B value ``blocking`` of ``servers`` at ``traffic``."""
    if traffic == 0.0:
        wait, level, answer, occupancy = 0.0, 1.0, 0.0, 0.0
    elif servers <= traffic:
        wait, level, answer, occupancy = 1.0, 0.0, math.inf, 1.0
    else:
        wait = servers * blocking / (servers - traffic * (1.0 - blocking))
        drain = (servers - traffic) / handle  # rate at which a full queue empties
        level = 1.0 - wait * math.exp(-drain * target)
        answer = wait / drain
        occupancy = traffic / servers
    return ErlangCFigures(
        agents=agents,
        servers=servers,
        traffic_erlangs=traffic,
        probability_of_wait=wait,
        service_level=level,
        average_speed_of_answer_seconds=answer,
        occupancy=occupancy,
    )


def erlang_c(
    agents: int,
    *,
    arrival_rate_per_second: float,
    handle_seconds: float,
    target_seconds: float,
    concurrency: int = 1,
) -> ErlangCFigures:
    """Erlang C figures of ``agents`` agents, each ``concurrency`` servers (the fudge)."""
    rate, handle = _traffic(arrival_rate_per_second, handle_seconds)
    target = _target(target_seconds)
    servers = _servers(agents, concurrency)
    traffic = rate * handle
    blocking = erlang_b(servers, traffic)
    return _erlang_c_figures(agents, servers, traffic, blocking, handle, target)


def agents_for_service_level(
    arrival_rate_per_second: float,
    handle_seconds: float,
    target_seconds: float,
    service_level: float,
    *,
    concurrency: int = 1,
    max_occupancy: float | None = None,
) -> ErlangCFigures:
    """The fewest agents whose Erlang C service level is at least ``service_level`` (in
    (0, 1)) and, when given, whose occupancy is at most ``max_occupancy``, with their
    figures. No traffic needs 0 agents. ``ValueError`` when more than ``MAX_SERVERS``
    servers would be needed."""
    rate, handle = _traffic(arrival_rate_per_second, handle_seconds)
    target = _target(target_seconds)
    goal, ceiling = _goals(service_level, max_occupancy)
    _count("concurrency", concurrency, low=1, high=MAX_CONCURRENCY)
    traffic = rate * handle
    if traffic == 0.0:
        return _erlang_c_figures(0, 0, 0.0, 1.0, handle, target)
    blocking = 1.0
    for servers in range(1, MAX_SERVERS + 1):
        blocking = traffic * blocking / (servers + traffic * blocking)
        if servers % concurrency or servers <= traffic:
            continue
        figures = _erlang_c_figures(
            servers // concurrency, servers, traffic, blocking, handle, target
        )
        if figures.service_level >= goal and figures.occupancy <= ceiling:
            return figures
    raise ValueError(f"more than {MAX_SERVERS} servers would be needed")


def _erlang_a_figures(
    agents: int, servers: int, rate: float, handle: float, patience: float, target: float
) -> ErlangAFigures:
    """Erlang A by the exact method of the module docstring (steps 1 to 3)."""
    traffic = rate * handle
    if rate == 0.0:
        return ErlangAFigures(
            agents=agents,
            servers=servers,
            traffic_erlangs=0.0,
            probability_of_wait=0.0,
            probability_of_abandonment=0.0,
            service_level=1.0,
            average_speed_of_answer_seconds=0.0,
            average_wait_seconds=0.0,
            occupancy=0.0,
        )
    mu = 1.0 / handle
    theta = 1.0 / patience
    log_weights = _log_stationary_weights(servers, rate, mu, theta)
    peak = max(log_weights)
    weights = [math.exp(value - peak) for value in log_weights]
    total = math.fsum(weights)
    pi = [weight / total for weight in weights]

    alpha = servers * mu
    beta = alpha / theta
    within = _answered_within(target, alpha, theta, len(pi) - servers)
    immediate = math.fsum(pi[:servers])
    busy = math.fsum(min(k, servers) * p for k, p in enumerate(pi))
    level_terms = [immediate]
    abandon_terms: list[float] = []
    answer_terms: list[float] = []
    wait_terms: list[float] = []
    mean_wait_if_answered = 0.0
    for m, p in enumerate(pi[servers:]):
        leaving = alpha + (m + 1) * theta
        mean_wait_if_answered += 1.0 / leaving
        answered = beta / (beta + m + 1)
        level_terms.append(p * answered * within[m])
        abandon_terms.append(p * (m + 1) * theta / leaving)
        answer_terms.append(p * answered * mean_wait_if_answered)
        wait_terms.append(p * (m + 1) / leaving)
    abandonment = min(1.0, math.fsum(abandon_terms))
    answered_share = 1.0 - abandonment
    return ErlangAFigures(
        agents=agents,
        servers=servers,
        traffic_erlangs=traffic,
        probability_of_wait=min(1.0, math.fsum(pi[servers:])),
        probability_of_abandonment=abandonment,
        service_level=min(1.0, math.fsum(level_terms)),
        average_speed_of_answer_seconds=(
            math.fsum(answer_terms) / answered_share if servers and answered_share > 0 else math.inf
        ),
        average_wait_seconds=math.fsum(wait_terms),
        occupancy=min(1.0, busy / servers) if servers else 0.0,
    )


def _log_stationary_weights(servers: int, rate: float, mu: float, theta: float) -> list[float]:
    """Step 1: ``log pi_k`` up to a constant, for the states up to the truncation."""
    log_rate = math.log(rate)
    logs = [0.0]
    peak = 0.0
    threshold = math.log(TAIL_PROBABILITY)
    k = 0
    while True:
        following = rate / (min(k + 1, servers) * mu + max(k + 1 - servers, 0) * theta)
        if following < 1.0 and logs[k] + math.log(following / (1.0 - following)) < (
            peak + threshold
        ):
            return logs
        if len(logs) >= MAX_STATES:
            raise ValueError(
                f"Erlang A needs more than {MAX_STATES} states here: patience too long for "
                "so few servers"
            )
        k += 1
        death = min(k, servers) * mu + max(k - servers, 0) * theta
        logs.append(logs[k - 1] + log_rate - math.log(death))
        peak = max(peak, logs[k])


def _answered_within(target: float, alpha: float, theta: float, queue_states: int) -> list[float]:
    """Step 2: ``P(wait <= target | answered, m)`` for ``m`` in ``range(queue_states)``, as
    the negative binomial tails ``P(J > m)``."""
    if queue_states <= 0:
        return []
    fail = -math.expm1(-theta * target)  # 1 - p
    if fail == 0.0:  # p == 1 (no target, or one too short to register): J is always 0
        return [0.0] * queue_states
    r = alpha / theta + 1.0
    log_term = -(alpha + theta) * target  # log P(J = 0)
    log_fail = math.log(fail)
    cumulative = math.exp(log_term)
    tails = [max(0.0, 1.0 - cumulative)]
    for j in range(1, queue_states):
        log_term += math.log((r + j - 1.0) / j) + log_fail
        cumulative += math.exp(log_term)
        tails.append(max(0.0, 1.0 - cumulative))
    return tails


def erlang_a(
    agents: int,
    *,
    arrival_rate_per_second: float,
    handle_seconds: float,
    patience_seconds: float,
    target_seconds: float,
    concurrency: int = 1,
) -> ErlangAFigures:
    """Erlang A figures of ``agents`` agents, each ``concurrency`` servers (the fudge),
    with customers whose patience is exponential of mean ``patience_seconds``."""
    rate, handle = _traffic(arrival_rate_per_second, handle_seconds)
    patience = _finite(
        "patience_seconds", patience_seconds, low=0.0, high=MAX_SECONDS, low_open=True
    )
    target = _target(target_seconds)
    servers = _servers(agents, concurrency)
    return _erlang_a_figures(agents, servers, rate, handle, patience, target)


def agents_for_service_level_with_abandonment(
    arrival_rate_per_second: float,
    handle_seconds: float,
    patience_seconds: float,
    target_seconds: float,
    service_level: float,
    *,
    concurrency: int = 1,
    max_occupancy: float | None = None,
    max_abandonment: float | None = None,
) -> ErlangAFigures:
    """The fewest agents whose Erlang A service level is at least ``service_level`` (in
    (0, 1)) and, when given, whose probability of abandonment is at most
    ``max_abandonment`` (in (0, 1]) and whose occupancy is at most ``max_occupancy``, with
    their figures. No traffic needs 0 agents.

    Abandonments count as misses, yet an overloaded staff can still meet a service level
    when impatient customers keep the queue short: ``max_abandonment`` rules that out.

    The service level grows and the abandonment falls with the staff, so the search
    doubles the staff until both are met, bisects, then steps up until the occupancy is met
    too. It starts at ``service_level * a / concurrency`` agents: every answered arrival
    holds a server for ``handle_seconds`` on average, so
    ``servers >= carried traffic >= service_level * a``. ``ValueError`` when more than
    ``MAX_SERVERS`` servers would be needed, or when a staff on the way needs more than
    ``MAX_STATES`` states (a patience thousands of times the handling time with a staff far
    below the traffic: Erlang C is the model for customers who never give up)."""
    rate, handle = _traffic(arrival_rate_per_second, handle_seconds)
    patience = _finite(
        "patience_seconds", patience_seconds, low=0.0, high=MAX_SECONDS, low_open=True
    )
    target = _target(target_seconds)
    goal, ceiling = _goals(service_level, max_occupancy)
    abandonment = 1.0
    if max_abandonment is not None:
        abandonment = _finite("max_abandonment", max_abandonment, low=0.0, high=1.0, low_open=True)
    _count("concurrency", concurrency, low=1, high=MAX_CONCURRENCY)
    most = MAX_SERVERS // concurrency
    if rate == 0.0:
        return _erlang_a_figures(0, 0, rate, handle, patience, target)

    def figures(agents: int) -> ErlangAFigures:
        return _erlang_a_figures(agents, agents * concurrency, rate, handle, patience, target)

    def meets(found: ErlangAFigures) -> bool:
        return found.service_level >= goal and found.probability_of_abandonment <= abandonment

    low = max(0, math.ceil(goal * rate * handle / concurrency) - 1)  # known to miss
    high = low + 1
    found = figures(high)
    while not meets(found):
        if high >= most:
            raise ValueError(f"more than {MAX_SERVERS} servers would be needed")
        low, high = high, min(most, 2 * high)
        found = figures(high)
    while high - low > 1:
        middle = (low + high) // 2
        candidate = figures(middle)
        if meets(candidate):
            high, found = middle, candidate
        else:
            low = middle
    while found.occupancy > ceiling:
        if found.agents >= most:
            raise ValueError(f"more than {MAX_SERVERS} servers would be needed")
        found = figures(found.agents + 1)
    return found
