"""``switchboard replay``: the pure engine over recorded traffic, under another routing config.

Reads a domain's recorded input from PostgreSQL (I/O happens here only): the inbound
``messages`` rows (rebuilt into ``MessageReceived`` with their conversation's record) and
the ``agent_events`` log (every applied ``agents.events`` record, migration 0004). Both
carry the time the router applied them (``messages.created_at``, ``agents_events.applied_at``:
the batch transaction's time), which is the ``now`` the engine is fed; deadlines fire by
``tick`` before each input, as the shell does.

Two configurations are replayed over the same input: the one the service runs with
(``baseline``: the domain's ``routing`` section of the service config) and the candidate
(``[routing]`` of a TOML file). Both are measured the same way, which is why "what
happened" is the replay of the recorded config rather than the stored outcome alone: the
stored rows lack some figures (the preferred agent of ended routings, overflow events once
published) and replay approximations then cancel out. The ``recorded`` column shows the
stored assignments' figures as a fidelity check of the baseline.

Approximations: agent replies and closes are replayed as recorded, even if the candidate
routed the conversation to someone else (a command by an agent who is no longer the owner
is refused, as it would be live); provider reply windows are not stored, so WhatsApp,
Messenger and Instagram messages get the 24 h window from their ``occurred_at``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import msgspec

from router.engine import DomainPolicy, Emit, EngineInput, apply, new_state, next_deadline, tick
from schemas import (
    AGENT_EVENT_DECODER,
    Channel,
    ConversationAssigned,
    ConversationOverflowed,
    MessageReceived,
    Presence,
    Strategy,
)
from tools.stats import percentile

WINDOWED = frozenset({Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM})
REPLY_WINDOW = 24 * 3600.0
ROUTED = frozenset({Strategy.PREFERRED, Strategy.FALLBACK, Strategy.QUEUE})
"""Assignments the engine decided (transfers and manual pick-ups are people's)."""


class ReplayError(Exception):
    """Bad replay input (the operator's): unknown domain, bad TOML."""


@dataclass(frozen=True, order=True)
class Recorded:
    """One recorded input: applied at ``at``; agent events before messages at a tie."""

    at: float
    order: int
    seq: float
    event: EngineInput = field(compare=False)


@dataclass
class Kpis:
    assignments: int = 0
    with_preferred: int = 0
    preferred_hits: int = 0
    waits: list[float] = field(default_factory=list)
    sla_breaches: int | None = None
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
    conn: asyncpg.Connection, domain: str, start: dt.datetime, end: dt.datetime
) -> list[Recorded]:
    """Agent events up to ``end`` (earlier ones set up agents), messages in the range."""
    from router.engine.records import ConversationRecord

    out: list[Recorded] = []
    for row in await conn.fetch(_AGENT_EVENTS, domain, end):
        event = AGENT_EVENT_DECODER.decode(row["payload"])
        out.append(Recorded(row["applied_at"].timestamp(), 0, float(row["seq"]), event))
    for row in await conn.fetch(_MESSAGES, domain, start, end):
        record = msgspec.json.decode(row["record"], type=ConversationRecord)
        channel = Channel(row["channel"])
        occurred = row["occurred_at"].timestamp()
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
            reply_window_ends_at=occurred + REPLY_WINDOW if channel in WINDOWED else None,
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


def simulate(
    domain: str,
    policy: DomainPolicy,
    recording: Iterable[Recorded],
    start: float,
    end: float,
    sla: dict[Channel, float],
) -> Kpis:
    """Feed the recording to a fresh engine under ``policy``; measure from ``start``."""
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
                target = sla.get(event.channel)
                if target is not None and event.waited_seconds > target:
                    kpis.sla_breaches = (kpis.sla_breaches or 0) + 1
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
        while (due := next_deadline(state)) is not None and due <= now:
            observe(list(tick(state, due)), due)

    for item in recording:
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
    kpis.occupancy = busy / span if span else None
    return kpis


# -- the command -----------------------------------------------------------------------


def load_policy(path: str | Path) -> DomainPolicy:
    """The ``[routing]`` section of a TOML file, as a ``DomainPolicy``."""
    try:
        data = tomllib.loads(Path(path).read_text())
        return msgspec.convert(data.get("routing", {}), DomainPolicy)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError, ValueError) as error:
        raise ReplayError(f"{path}: {error}") from None


def _moment(value: str | None, default: dt.datetime) -> dt.datetime:
    if value is None:
        return default
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    except ValueError:
        moment = dt.datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def add_replay_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "replay", help="replay recorded traffic under another routing config; compare KPIs"
    )
    parser.add_argument("--domain", required=True)
    parser.add_argument("--routing", required=True, help="TOML file with a [routing] section")
    parser.add_argument("--from", dest="start", help="ISO 8601 time or epoch seconds")
    parser.add_argument("--to", dest="end", help="ISO 8601 time or epoch seconds (default: now)")


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def report(
    domain: str, counts: tuple[int, int], recorded: Kpis, baseline: Kpis, candidate: Kpis
) -> str:
    rows = [
        ("assignments", *(k.assignments for k in (recorded, baseline, candidate))),
        ("preferred_hit_ratio", None, baseline.hit_ratio, candidate.hit_ratio),
        ("wait_p50_s", *(k.wait(0.5) for k in (recorded, baseline, candidate))),
        ("wait_p95_s", *(k.wait(0.95) for k in (recorded, baseline, candidate))),
        ("sla_breaches", None, baseline.sla_breaches, candidate.sla_breaches),
        ("overflowed", None, baseline.overflowed, candidate.overflowed),
        ("occupancy", None, baseline.occupancy, candidate.occupancy),
    ]
    lines = [
        f"replay of domain {domain}: {counts[0]} customer messages, {counts[1]} agent events",
        f"{'kpi':24} {'recorded':>12} {'baseline':>12} {'candidate':>12}",
    ]
    for name, *values in rows:
        cells = " ".join(f"{_fmt(v):>12}" for v in values)  # type: ignore[arg-type]
        lines.append(f"{name:24} {cells}")
    return "\n".join(lines)


async def replay(
    database_url: str,
    domain: str,
    baseline: DomainPolicy,
    candidate: DomainPolicy,
    start: dt.datetime,
    end: dt.datetime,
) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        recording = await load_recording(conn, domain, start, end)
        recorded = await recorded_kpis(conn, domain, start, end)
    finally:
        await conn.close()
    sla = dict(candidate.first_response_sla or baseline.first_response_sla)
    first = start.timestamp()
    last = end.timestamp()
    if recording:
        last = min(last, recording[-1].at + 86_400.0)
    results = [
        simulate(domain, policy, recording, first, last, sla) for policy in (baseline, candidate)
    ]
    messages = sum(1 for r in recording if r.order == 1)
    return report(domain, (messages, len(recording) - messages), recorded, *results)


def replay_command(
    args: argparse.Namespace, database_url: str | None, policies: dict[str, DomainPolicy]
) -> int:
    """Run ``switchboard replay``; ``policies``: the service's routing per domain."""
    if not database_url:
        print("switchboard: replay needs DATABASE_URL")
        return 2
    baseline = policies.get(args.domain)
    if baseline is None:
        print(f"switchboard: unknown domain {args.domain!r}")
        return 2
    try:
        candidate = load_policy(args.routing)
    except ReplayError as error:
        print(f"switchboard: {error}")
        return 2
    start = _moment(args.start, dt.datetime.fromtimestamp(0, dt.UTC))
    end = _moment(args.end, dt.datetime.now(dt.UTC))
    print(asyncio.run(replay(database_url, args.domain, baseline, candidate, start, end)))
    return 0
