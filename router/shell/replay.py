"""Replays of recorded traffic through the pure engine under a routing policy, measured.

Reads a domain's recorded input from PostgreSQL (the only I/O): the inbound ``messages``
rows (rebuilt into ``MessageReceived`` with their conversation's record) and the
``agent_events`` log (every applied ``agents.events`` record, bots' answers included,
and ``message.human_replied`` echo, migration 0004). Both carry
the time the router applied them (``messages.created_at``, ``agent_events.applied_at``: the
batch transaction's time), which is the ``now`` the engine is fed; deadlines fire by
``tick`` at their own times, as the shell does. ``switchboard replay`` and the
configuration API's dry run both measure with ``simulate``.

Approximations: agent replies and closes are replayed as recorded, even if the policy
routed the conversation to someone else (a command by an agent who is no longer the owner
is refused, as it would be live); provider reply windows are not stored, so WhatsApp,
Messenger and Instagram messages, and those of any conversation whose record has a window
(a Telegram business chat's), get the 24 h window from their ``occurred_at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
import msgspec

from router.engine import (
    DomainPolicy,
    Emit,
    EngineInput,
    apply,
    deadline_due,
    new_state,
    next_deadline,
    tick,
)
from router.engine.records import ConversationRecord
from router.shell.store import RECORDED_DECODER
from runtime.stats import percentile
from schemas import (
    Channel,
    ConversationAssigned,
    ConversationFallback,
    ConversationOverflowed,
    CustomerEraseRequested,
    MessageReceived,
    Presence,
    Strategy,
)

WINDOWED = frozenset({Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM})
REPLY_WINDOW = 24 * 3600.0
ROUTED = frozenset({Strategy.PREFERRED, Strategy.FALLBACK, Strategy.QUEUE})
"""Assignments the engine decided (transfers and manual pick-ups are people's)."""


@dataclass(frozen=True, order=True)
class Recorded:
    """One recorded input: applied at ``at``; agent events before messages at a tie."""

    at: float
    order: int
    seq: float
    event: EngineInput = field(compare=False)


@dataclass(frozen=True)
class SlaTargets:
    """The first-response targets a replay counts breaches against, by channel: a queue's
    own where it sets one, else the domain's (as the live router counts
    ``switchboard_sla_breaches_total``). Both policies of a comparison are measured
    against the same targets (``sla_targets``), or their breaches could not be compared."""

    domain: Mapping[Channel, float] = field(default_factory=dict)
    queues: Mapping[str, Mapping[Channel, float]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.domain) or any(self.queues.values())

    def of(self, queue: str, channel: Channel) -> float | None:
        own = self.queues.get(queue, {})
        return own.get(channel, self.domain.get(channel))


def sla_targets(candidate: DomainPolicy, baseline: DomainPolicy) -> SlaTargets:
    """The candidate's targets, or the baseline's when the candidate sets none."""

    def of(policy: DomainPolicy) -> SlaTargets:
        queues = {name: dict(q.first_response_sla) for name, q in policy.queues.items()}
        return SlaTargets(dict(policy.first_response_sla), queues)

    return of(candidate) or of(baseline)


@dataclass
class Kpis:
    assignments: int = 0
    with_preferred: int = 0
    preferred_hits: int = 0
    waits: list[float] = field(default_factory=list)
    sla_breaches: int | None = None
    fallbacks: int = 0
    overflowed: int = 0
    occupancy: float | None = None

    @property
    def hit_ratio(self) -> float | None:
        return self.preferred_hits / self.with_preferred if self.with_preferred else None

    def wait(self, q: float) -> float | None:
        return percentile(self.waits, q)


# -- reading the recording (I/O) ------------------------------------------------------

_MESSAGES = """
SELECT m.message_id, m.channel, m.provider_message_id, m.text, m.occurred_at, m.created_at,
       c.record::text AS record
FROM messages m JOIN conversations c USING (domain, conversation_id)
WHERE m.domain = $1 AND m.direction = 'inbound' AND m.created_at >= $2 AND m.created_at < $3
"""
_AGENT_EVENTS = """
SELECT seq, payload::text AS payload, applied_at FROM agent_events
WHERE domain = $1 AND applied_at < $2 ORDER BY seq
"""
_ASSIGNMENTS = """
SELECT strategy, waited_seconds FROM assignments
WHERE domain = $1 AND offered_at >= $2 AND offered_at < $3
"""


async def load_recording(
    conn: asyncpg.Connection,
    domain: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    limit: int | None = None,
) -> list[Recorded]:
    """Agent events up to ``end`` (earlier ones set up agents), messages in the range;
    with ``limit``, at most that many of each."""
    out: list[Recorded] = []
    if limit is not None:
        agent_events = await conn.fetch(_AGENT_EVENTS + " LIMIT $3", domain, end, limit)
        messages = await conn.fetch(_MESSAGES + " LIMIT $4", domain, start, end, limit)
    else:
        agent_events = await conn.fetch(_AGENT_EVENTS, domain, end)
        messages = await conn.fetch(_MESSAGES, domain, start, end)
    for row in agent_events:
        event = RECORDED_DECODER.decode(row["payload"])
        if isinstance(event, CustomerEraseRequested):
            continue  # never recorded: an erasure keeps no one in the log
        out.append(Recorded(row["applied_at"].timestamp(), 0, float(row["seq"]), event))
    for row in messages:
        record = msgspec.json.decode(row["record"], type=ConversationRecord)
        channel = Channel(row["channel"])
        occurred = row["occurred_at"].timestamp()
        windowed = channel in WINDOWED or record.reply_window_ends_at is not None
        message = MessageReceived(
            id=row["message_id"],
            domain=domain,
            occurred_at=occurred,
            channel=channel,
            endpoint=record.endpoint,
            customer_address=record.customer_address,
            customer_id=record.customer_id,
            conversation_key=record.conversation_key,
            provider_message_id=row["provider_message_id"] or row["message_id"],
            text=row["text"],
            queue=record.queue,
            priority=record.priority,
            reply_window_ends_at=occurred + REPLY_WINDOW if windowed else None,
        )
        out.append(Recorded(row["created_at"].timestamp(), 1, occurred, message))
    out.sort()
    return out


async def recorded_kpis(
    conn: asyncpg.Connection, domain: str, start: dt.datetime, end: dt.datetime
) -> Kpis:
    """What the stored assignments say (no preferred agent, overflow or occupancy there)."""
    kpis = Kpis()
    for row in await conn.fetch(_ASSIGNMENTS, domain, start, end):
        if Strategy(row["strategy"]) in ROUTED:
            kpis.assignments += 1
            kpis.waits.append(row["waited_seconds"])
    return kpis


# -- the pure part ---------------------------------------------------------------------


PROGRESS_EVERY = 1000
"""Recorded inputs between two progress reports of ``simulate``."""


def simulate(
    domain: str,
    policy: DomainPolicy,
    recording: Sequence[Recorded],
    start: float,
    end: float,
    sla: SlaTargets,
    progress: Callable[[int, int], None] | None = None,
) -> Kpis:
    """Feed the recording to a fresh engine under ``policy``; measure from ``start``.
    ``progress`` is called with (inputs applied, inputs in all) every ``PROGRESS_EVERY``
    inputs and at the end."""
    state = new_state(domain, policy)
    kpis = Kpis(sla_breaches=0 if sla else None)
    busy = 0.0
    span = 0.0
    last: float | None = None

    def observe(effects: list[object], now: float) -> None:
        for effect in effects:
            if not isinstance(effect, Emit) or now < start:
                continue
            event = effect.event
            if isinstance(event, ConversationAssigned) and event.strategy in ROUTED:
                kpis.assignments += 1
                kpis.waits.append(event.waited_seconds)
                if event.preferred_agent_id is not None:
                    kpis.with_preferred += 1
                    kpis.preferred_hits += event.strategy is Strategy.PREFERRED
                target = sla.of(event.queue, event.channel)
                waited = event.waited_seconds
                queue = state.compiled.queues.get(event.queue)
                if queue is not None and queue.calendar is not None:
                    # business time only, as the SLA clock of such a queue counts
                    waited = queue.calendar.business_seconds(now - waited, now)
                if target is not None and waited > target:
                    kpis.sla_breaches = (kpis.sla_breaches or 0) + 1
            elif isinstance(event, ConversationFallback):
                kpis.fallbacks += 1
            elif isinstance(event, ConversationOverflowed):
                kpis.overflowed += 1

    def occupancy() -> float | None:
        load = capacity = 0
        for agent in state.agents.values():
            if agent.presence is Presence.ONLINE:
                load += sum(agent.load.values())
                capacity += sum(agent.capacity.values())
        return load / capacity if capacity else None

    def catch_up(now: float) -> None:
        """Fire deadlines at their own times, as the shell's timer does."""
        while deadline_due(state, now) and (due := next_deadline(state)) is not None:
            observe(list(tick(state, due)), due)

    for done, item in enumerate(recording):
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, len(recording))
        now = item.at
        if last is not None and now > last and last >= start:
            share = occupancy()
            if share is not None:
                busy += share * (now - last)
                span += now - last
        catch_up(now)
        observe(list(apply(state, item.event, now)), now)
        last = now
    catch_up(end)
    if progress is not None:
        progress(len(recording), len(recording))
    kpis.occupancy = busy / span if span else None
    return kpis
