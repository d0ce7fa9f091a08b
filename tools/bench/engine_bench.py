"""Engine benchmark: the pure routing engine on one core, no I/O.

- fast path: customer messages to open conversations whose owner is online (rule 1);
- assignments: new conversations in a domain of 10,000 agents that already hold
  100,000 open conversations (index lookups, records, events, ids included);
- queued arrivals: new conversations joining a line of 20,000 waiting (the domain's one
  agent at capacity), each announced with its position (``conversation.queued``);
- memory: tracemalloc growth of the state per open conversation, per agent, and per
  customer (customers outlive conversations: each keeps its affinity list, measured
  after one resolved conversation; the per-conversation figure opens conversations of
  customers the domain already knows, and the "with new customer" one counts both).

``python -m tools.bench.engine_bench`` prints the table; ``run_engine_bench()`` returns it.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

from router.engine import DomainPolicy, DomainState, apply, new_state
from schemas import (
    AgentRegistered,
    Channel,
    ConversationCloseRequested,
    MessageReceived,
    Presence,
    PresenceChanged,
)

DOMAIN = "bench"
T0 = 1_700_000_000.0
AGENTS = 10_000
HELD = 100_000
NEW = 15_000
"""New conversations per timed round (three rounds; the best counts, as timeit does)."""
FAST = 100_000
"""Fast-path messages per timed round (three rounds; the best counts)."""
ROUNDS = 3
WAITING = 20_000
"""Conversations waiting in one line before the queued arrivals are timed."""
QUEUED = 2_000
"""Queued arrivals per timed round (three rounds; the best counts)."""
MEMORY_CONVERSATIONS = 50_000
MEMORY_AGENTS = 10_000


def _agents(state: DomainState, count: int, capacity: int, prefix: str = "agent") -> None:
    for i in range(count):
        agent_id = f"{prefix}-{i:06d}"
        apply(
            state,
            AgentRegistered(
                id=f"reg-{agent_id}",
                domain=DOMAIN,
                occurred_at=T0,
                agent_id=agent_id,
                name=f"Agent {i}",
                skills=("english",),
                queues=("default",),
                capacity={Channel.SMS: capacity, Channel.WEBCHAT: 3, Channel.EMAIL: 10},
            ),
            T0,
        )
        apply(
            state,
            PresenceChanged(
                id=f"online-{agent_id}",
                domain=DOMAIN,
                occurred_at=T0,
                agent_id=agent_id,
                status=Presence.ONLINE,
            ),
            T0,
        )


def _messages(prefix: str, count: int, *, repeat_keys: int | None = None) -> list[MessageReceived]:
    """Messages of distinct customers, or cycling over ``repeat_keys`` conversation keys."""
    out = []
    for i in range(count):
        n = i if repeat_keys is None else i % repeat_keys
        out.append(
            MessageReceived(
                id=f"{prefix}-msg-{i:08d}",
                domain=DOMAIN,
                occurred_at=T0,
                channel=Channel.SMS,
                endpoint="+15550000000",
                customer_address=f"+1555{n:07d}",
                customer_id=f"{prefix}-customer-{n:08d}",
                conversation_key=f"sms:+15550000000:+1555{n:07d}:{prefix}",
                provider_message_id=f"SM{prefix}{i:030d}",
                text="Hello, I need help with my order",
            )
        )
    return out


def _timed(run: Callable[[], None]) -> float:
    """CPU seconds of ``run`` in this process: one core, whatever else the machine runs.

    The garbage collector stays on, as in production."""
    gc.collect()
    start = time.process_time()
    run()
    return time.process_time() - start


def bench_fast_path() -> float:
    state = new_state(DOMAIN, DomainPolicy())
    _agents(state, 1_000, capacity=20)
    opening = _messages("fast", 10_000)
    for message in opening:
        apply(state, message, T0)
    follow_ups = _messages("fast", FAST, repeat_keys=10_000)
    follow_ups = [
        msgspec_replace_id(message, f"fast-follow-{i}") for i, message in enumerate(follow_ups)
    ]
    now = T0 + 1

    def run() -> None:
        for message in follow_ups:
            apply(state, message, now)

    return max(FAST / _timed(run) for _ in range(ROUNDS))


def msgspec_replace_id(message: MessageReceived, new_id: str) -> MessageReceived:
    import msgspec

    return msgspec.structs.replace(message, id=new_id)


def bench_assignments() -> float:
    state = new_state(DOMAIN, DomainPolicy())
    _agents(state, AGENTS, capacity=20)
    for message in _messages("held", HELD):
        apply(state, message, T0)
    assert len(state.conversations) == HELD
    rates = []
    for round_ in range(ROUNDS):
        fresh = _messages(f"new{round_}", NEW)
        now = T0 + 10 + round_

        def run(fresh: list[MessageReceived] = fresh, now: float = now) -> None:
            for message in fresh:
                apply(state, message, now)

        rates.append(NEW / _timed(run))
    held = sum(1 for c in state.conversations.values() if c.owner is not None)
    assert held == HELD + ROUNDS * NEW, held
    return max(rates)


def bench_queued_arrivals() -> float:
    """New conversations of new customers joining a line of ``WAITING`` (the one agent's
    one slot taken): each waits at the queue's first step and its ``conversation.queued``
    carries its position."""
    state = new_state(DOMAIN, DomainPolicy())
    _agents(state, 1, capacity=1, prefix="busy")
    for message in _messages("waiting", WAITING + 1):  # the first takes the slot
        apply(state, message, T0)
    rates = []
    for round_ in range(ROUNDS):
        fresh = _messages(f"queued{round_}", QUEUED)
        now = T0 + 1 + round_

        def run(fresh: list[MessageReceived] = fresh, now: float = now) -> None:
            for message in fresh:
                apply(state, message, now)

        rates.append(QUEUED / _timed(run))
    waiting = sum(1 for c in state.conversations.values() if c.owner is None)
    assert waiting == WAITING + ROUNDS * QUEUED, waiting
    return max(rates)


def bench_memory() -> tuple[float, float, float, float]:
    """(bytes per open conversation, per agent, per customer, per conversation of a new
    customer, customer included)."""
    gc.collect()
    tracemalloc.start()
    try:
        state = new_state(DOMAIN, DomainPolicy())
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        _agents(state, MEMORY_AGENTS, capacity=20, prefix="mem")
        gc.collect()
        with_agents = tracemalloc.get_traced_memory()[0]
        history = _messages("mem", MEMORY_CONVERSATIONS)
        for message in history:
            apply(state, message, T0)
        gc.collect()
        with_new_customers = tracemalloc.get_traced_memory()[0]
        for message in history:
            close = ConversationCloseRequested(
                id=f"close-{message.id}",
                domain=DOMAIN,
                occurred_at=T0,
                conversation_id=message.id,
                reason="resolved",
            )
            apply(state, close, T0 + 1)
        del history, message, close
        gc.collect()
        with_customers = tracemalloc.get_traced_memory()[0]
        assert not state.conversations
        messages = [
            msgspec_replace_id(message, f"again-{message.id}")
            for message in _messages("mem", MEMORY_CONVERSATIONS)
        ]
        before = tracemalloc.get_traced_memory()[0]
        for message in messages:
            apply(state, message, T0 + 2)
        del messages, message
        gc.collect()
        with_conversations = tracemalloc.get_traced_memory()[0]
        assert len(state.conversations) == MEMORY_CONVERSATIONS
        del before
    finally:
        tracemalloc.stop()
    per_agent = (with_agents - base) / MEMORY_AGENTS
    per_customer = (with_customers - with_agents) / MEMORY_CONVERSATIONS
    per_conversation = (with_conversations - with_customers) / MEMORY_CONVERSATIONS
    per_new = (with_new_customers - with_agents) / MEMORY_CONVERSATIONS
    return per_conversation, per_agent, per_customer, per_new


def run_engine_bench() -> dict[str, float]:
    """Measure and print the engine's figures; returns them keyed for ``make bench``."""
    started = time.perf_counter()
    fast = bench_fast_path()
    assignments = bench_assignments()
    queued = bench_queued_arrivals()
    per_conversation, per_agent, per_customer, per_new = bench_memory()
    results = {
        "engine_fast_path_events_per_s": round(fast),
        "engine_assignments_per_s": round(assignments),
        "engine_queued_arrivals_per_s_20k_waiting": round(queued),
        "engine_bytes_per_open_conversation": round(per_conversation),
        "engine_bytes_per_agent": round(per_agent),
        "engine_bytes_per_customer": round(per_customer),
        "engine_bytes_per_conversation_of_new_customer": round(per_new),
    }
    targets = {
        "engine_fast_path_events_per_s": ">= 100000",
        "engine_assignments_per_s": ">= 20000",
        "engine_queued_arrivals_per_s_20k_waiting": "",
        "engine_bytes_per_open_conversation": "<= 1024",
        "engine_bytes_per_agent": "",
        "engine_bytes_per_customer": "",
        "engine_bytes_per_conversation_of_new_customer": "",
    }
    print(f"{'engine figure':45} {'value':>12}  target")
    for name, value in results.items():
        print(f"{name:45} {value:>12,}  {targets[name]}")
    print(f"(engine bench took {time.perf_counter() - started:.1f} s)")
    return {name: float(value) for name, value in results.items()}


if __name__ == "__main__":
    run_engine_bench()
