"""Customer affinity: per customer, the agents who served them, with decaying scores.

A customer keeps (rank key, agent id) pairs, best first (``Customer.affinity``). The
key is ``log2(score) + at / half_life``: a decaying score keeps its rank against the
others, so the list never needs re-sorting as time passes, and the score at ``now`` is
``2 ** (key - now / half_life)``. Assignments and resolved closes add weight; the
``affinity`` ladder step (after the preferred hold) tries the best few agents.
"""

from __future__ import annotations

import math

from router.engine.call import Call
from router.engine.state import NONE_PASSED, Agent, Conversation, Customer, DomainState


def affinity_ranking(state: DomainState, customer_id: str, now: float) -> list[tuple[str, float]]:
    """The customer's remembered agents with their scores at ``now``, best first."""
    customer = state.customers.get(customer_id)
    if customer is None or not customer.affinity:
        return []
    half_life = state.policy.affinity.half_life
    return [(agent_id, 2.0 ** (rank - now / half_life)) for rank, agent_id in customer.affinity]


def affinity_agent(state: DomainState, conversation: Conversation, now: float) -> Agent | None:
    """The first of the customer's top-ranked agents (not the preferred one, not passed
    over, score at least ``min_score``) with a free slot, if any."""
    policy = state.policy.affinity
    customer = state.customers.get(conversation.customer_id)
    if customer is None or not customer.affinity:
        return None
    floor = (
        math.log2(policy.min_score) + now / policy.half_life if policy.min_score > 0 else -math.inf
    )
    passed = conversation.passed_over or NONE_PASSED
    tried = 0
    for rank, agent_id in customer.affinity:
        if agent_id == conversation.preferred or agent_id in passed:
            continue
        if tried >= policy.try_top or rank < floor:
            break
        tried += 1
        agent = state.agents.get(agent_id)
        if agent is not None and agent.may_take(conversation):
            return agent
    return None


def bump_affinity(call: Call, customer_id: str, agent_id: str, weight: float) -> None:
    """Add ``weight`` to the agent's decaying score for the customer; keep the best few."""
    if weight <= 0:
        return
    policy = call.state.policy.affinity
    customer = call.customer(customer_id)
    entries = customer.affinity
    if entries is None:
        entries = customer.affinity = []
    _add(entries, math.log2(weight) + call.now / policy.half_life, agent_id)
    entries.sort(key=_affinity_order)
    del entries[policy.keep :]


def merge_affinity(state: DomainState, into: Customer, merged: Customer) -> None:
    """``merged``'s agents' scores added to ``into``'s (one person: both histories count)."""
    if not merged.affinity:
        return
    entries = into.affinity
    if entries is None:
        entries = into.affinity = []
    for rank, agent_id in merged.affinity:
        _add(entries, rank, agent_id)
    entries.sort(key=_affinity_order)
    del entries[state.policy.affinity.keep :]


def _add(entries: list[tuple[float, str]], rank: float, agent_id: str) -> None:
    """Add a rank to the agent's entry (scores add: ranks are their log2)."""
    for i, (old, known) in enumerate(entries):
        if known == agent_id:
            high, low = (old, rank) if old >= rank else (rank, old)
            rank = high + math.log2(1.0 + 2.0 ** (low - high))
            del entries[i]
            break
    entries.append((rank, agent_id))


def _affinity_order(entry: tuple[float, str]) -> tuple[float, str]:
    return (-entry[0], entry[1])
