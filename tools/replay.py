"""``switchboard replay``: the pure engine over recorded traffic, under another routing config
(``router.shell.replay`` reads the recording and measures).

Two configurations are replayed over the same input: the one the service runs with
(``baseline``: the domain's ``routing`` section of the service config) and the candidate
(``[routing]`` of a TOML file). Both are measured the same way, which is why "what
happened" is the replay of the recorded config rather than the stored outcome alone: the
stored rows lack some figures (the preferred agent of ended routings, overflow events once
published) and replay approximations then cancel out. The ``recorded`` column shows the
stored assignments' figures as a fidelity check of the baseline. Progress goes to stderr
(a bar on a terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tomllib
from pathlib import Path

import asyncpg
import msgspec

from router.engine import DomainPolicy
from router.shell.replay import Kpis, load_recording, recorded_kpis, simulate, sla_targets
from switchboard.control import store as config_store
from tools.progress import TerminalProgress


class ReplayError(Exception):
    """Bad replay input (the operator's): unknown domain, bad TOML."""


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
        ("fallbacks", None, baseline.fallbacks, candidate.fallbacks),
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
    baseline: DomainPolicy | None,
    candidate: DomainPolicy,
    start: dt.datetime,
    end: dt.datetime,
) -> str:
    """The report; ``baseline``: the file's routing of the domain, which the current
    runtime configuration version replaces when there is one."""
    conn = await asyncpg.connect(database_url)
    try:
        version = await config_store.current(conn)
        if version is not None:
            current = version.document.domains.get(domain)
            baseline = None if current is None else current.routing
        if baseline is None:
            raise ReplayError(f"unknown domain {domain!r}")
        recording = await load_recording(conn, domain, start, end)
        recorded = await recorded_kpis(conn, domain, start, end)
    finally:
        await conn.close()
    sla = sla_targets(candidate, baseline)
    first = start.timestamp()
    last = end.timestamp()
    if recording:
        last = min(last, recording[-1].at + 86_400.0)
    results = []
    for name, policy in (("baseline", baseline), ("candidate", candidate)):
        # On stderr: stdout stays the report.
        progress = TerminalProgress(f"{domain} {name}", "inputs", stream=sys.stderr)
        results.append(simulate(domain, policy, recording, first, last, sla, progress))
        progress.finish()
    messages = sum(1 for r in recording if r.order == 1)
    return report(domain, (messages, len(recording) - messages), recorded, *results)


def replay_command(
    args: argparse.Namespace, database_url: str | None, policies: dict[str, DomainPolicy]
) -> int:
    """Run ``switchboard replay``; ``policies``: the configuration file's routing per
    domain (the stored runtime configuration wins)."""
    if not database_url:
        print("switchboard: replay needs DATABASE_URL")
        return 2
    start = _moment(args.start, dt.datetime.fromtimestamp(0, dt.UTC))
    end = _moment(args.end, dt.datetime.now(dt.UTC))
    try:
        candidate = load_policy(args.routing)
        baseline = policies.get(args.domain)
        print(asyncio.run(replay(database_url, args.domain, baseline, candidate, start, end)))
    except ReplayError as error:
        print(f"switchboard: {error}")
        return 2
    return 0
