"""``switchboard forecast`` and ``switchboard staffing``: workforce planning from a terminal,
on the measured workload in PostgreSQL (``switchboard workload backfill`` measures history).

- ``forecast --domain D [--interval 15|30|60] [--days N] [--history-weeks W] [--queue Q]
  [--channel C] [--time-zone Z] [--json]``: per queue and channel, the model and its error
  on the last week held out (MAPE, WAPE), then per interval of the coming days (local time
  of the zone) the forecast arrivals and workload: people actively working on average
  (forecast seconds of active handling over the interval's seconds).
- ``staffing --domain D --roster FILE [--search GROUP] [--source forecast|recorded]
  [--from YYYY-MM-DD[THH:MM]] [--days N] [--interval 15|30|60] [--seed N] [--json]``:
  simulates the roster of ``FILE`` (TOML or JSON: the body of ``POST …/staffing``, whose
  fields the options override) on the routing engine, or with ``--search`` finds the
  fewest agents of that group per interval meeting the target; prints per interval the
  simulated figures beside Erlang C and A. Progress goes to stderr (a bar on a terminal).

Both work as the API does (``router.api.planning``), with the domain's routing policy of
the running configuration version (the file's when none is stored yet). Need
``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from router.api.planning import (
    NothingMeasured,
    chart,
    checked_zone,
    domain_time_zone,
    load_histories,
    prepare_staffing,
    run_staffing,
)
from router.api.planning_models import (
    DAYS_MAX,
    FORECAST_DAYS_MAX,
    HISTORY_WEEKS_MAX,
    StaffingIn,
    StaffingResult,
)
from router.engine import DomainPolicy
from router.planning.forecast import Backtest
from switchboard.config import Config
from tools.database_tool import run_with_database, running_document
from tools.progress import TerminalProgress

ROSTER_MAX_BYTES = 1 << 20


def add_planning_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fore = commands.add_parser("forecast", help="forecast arrivals from the measured workload")
    _common(fore)
    fore.add_argument("--days", type=int, default=7, help=f"days ahead (1 to {FORECAST_DAYS_MAX})")
    fore.add_argument("--history-weeks", type=int, default=8, help="weeks of history fitted")
    fore.add_argument("--queue")
    fore.add_argument("--channel")
    fore.add_argument("--time-zone", help="IANA zone (default: the domain's calendar's, else UTC)")
    staff = commands.add_parser(
        "staffing", help="simulate a roster, or find the fewest agents meeting a target"
    )
    _common(staff)
    staff.add_argument("--roster", required=True, type=Path, help="TOML or JSON file")
    staff.add_argument("--search", help="the group whose agents per interval are searched")
    staff.add_argument("--source", choices=("forecast", "recorded"))
    staff.add_argument("--from", dest="start", type=_moment, help="YYYY-MM-DD[THH:MM] (UTC)")
    staff.add_argument("--days", type=int, help=f"days simulated (1 to {DAYS_MAX})")
    staff.add_argument("--seed", type=int)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", required=True)
    parser.add_argument("--interval", type=int, choices=(15, 30, 60), help="minutes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _moment(text: str) -> datetime:
    for shape in ("%Y-%m-%d", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text, shape).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM-DD[THH:MM]")


def planning_command(args: argparse.Namespace, config: Config) -> int:
    return run_with_database(
        args.command,
        config,
        lambda url: _run(args, config, url),
        refused=(ValueError, NothingMeasured),
    )


async def _run(args: argparse.Namespace, config: Config, url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        domain = (await running_document(conn, config)).domains.get(args.domain)
        if domain is None:
            print(f"switchboard: unknown domain {args.domain!r}", file=sys.stderr)
            return 2
        if args.command == "forecast":
            return await _forecast(conn, args, domain.routing)
        return await _staffing(conn, args, domain.routing)
    finally:
        await conn.close()


# -- forecast -----------------------------------------------------------------------------


async def _forecast(
    conn: asyncpg.Connection, args: argparse.Namespace, policy: DomainPolicy
) -> int:
    if not 1 <= args.days <= FORECAST_DAYS_MAX or not 1 <= args.history_weeks <= HISTORY_WEEKS_MAX:
        raise ValueError(
            f"--days is 1 to {FORECAST_DAYS_MAX}, --history-weeks 1 to {HISTORY_WEEKS_MAX}"
        )
    interval = (args.interval or 60) * 60
    zone = checked_zone(args.time_zone or domain_time_zone(policy))
    now = int(time.time()) // interval * interval
    histories = await load_histories(
        conn,
        args.domain,
        start=datetime.fromtimestamp(now, UTC) - timedelta(weeks=args.history_weeks),
        end=datetime.fromtimestamp(now, UTC),
        interval_seconds=interval,
        queues=[args.queue] if args.queue else (),
        channels=[args.channel] if args.channel else (),
    )
    if not histories:
        raise NothingMeasured("no measured workload in the history: nothing to forecast")
    ahead = args.days * 86400 // interval
    streams = [
        (
            f"{history.queue}/{history.channel.value}",
            chart(history.arrivals, now, 0, ahead, interval, zone),
            chart(history.handle_seconds, now, 0, ahead, interval, zone),
        )
        for history in histories
    ]
    if args.json:
        out = {
            "domain": args.domain,
            "time_zone": zone,
            "interval_seconds": interval,
            "start": now,
            "streams": [
                {
                    "stream": name,
                    "model": arrivals.model,
                    "backtest": arrivals.backtest,
                    "forecast": arrivals.forecast,
                    "handling_backtest": handling.backtest,
                    "handling_forecast": handling.forecast,
                }
                for name, arrivals, handling in streams
            ],
        }
        print(msgspec.json.encode(out).decode())
        return 0
    for name, arrivals, handling in streams:
        print(
            f"{name}: {arrivals.model} model; arrivals {_held_out(arrivals.backtest)};"
            f" workload {_held_out(handling.backtest)}"
        )
    local = ZoneInfo(zone)
    print()
    print(f"{'':<28}" + "".join(f"{name:>28}" for name, _, _ in streams))
    print(f"{'interval (' + zone + ')':<28}" + f"{'arrivals':>14}{'working':>14}" * len(streams))
    for index in range(ahead):
        moment = datetime.fromtimestamp(now + index * interval, local)
        cells = "".join(
            f"{arrivals.forecast[index]:>14.1f}{handling.forecast[index] / interval:>14.2f}"
            for _, arrivals, handling in streams
        )
        print(f"{moment:%a %Y-%m-%d %H:%M}{'':<8}{cells}")
    return 0


def _held_out(test: Backtest | None) -> str:
    if test is None:
        return "no held-out error (a week of history or less)"
    return f"last week held out: MAPE {_percent(test.mape)}, WAPE {_percent(test.wape)}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


# -- staffing -----------------------------------------------------------------------------


def read_roster(path: Path) -> dict[str, Any]:
    """The roster file: TOML (``.toml``) or JSON, at most ``ROSTER_MAX_BYTES``."""
    raw = path.read_bytes()
    if len(raw) > ROSTER_MAX_BYTES:
        raise ValueError(f"{path}: larger than {ROSTER_MAX_BYTES} bytes")
    try:
        body = tomllib.loads(raw.decode()) if path.suffix == ".toml" else msgspec.json.decode(raw)
    except (tomllib.TOMLDecodeError, msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(body, dict):
        raise ValueError(f"{path}: a table of the staffing fields is expected")
    return body


async def _staffing(
    conn: asyncpg.Connection, args: argparse.Namespace, policy: DomainPolicy
) -> int:
    fields = read_roster(args.roster)
    for option, name in (
        ("search", "search"),
        ("source", "source"),
        ("days", "days"),
        ("seed", "seed"),
    ):
        if getattr(args, option) is not None:
            fields[name] = getattr(args, option)
    if args.interval is not None:
        fields["interval_seconds"] = args.interval * 60
    if args.start is not None:
        fields["start"] = args.start.timestamp()
    try:
        body = msgspec.convert(fields, StaffingIn)
    except msgspec.ValidationError as error:
        raise ValueError(f"{args.roster}: {error}") from None
    prepared = await prepare_staffing(conn, args.domain, policy, body, time.time())
    what = "search" if body.search else "simulation"
    # On stderr: stdout stays the table or the JSON, whatever the terminal.
    progress = TerminalProgress(f"{args.domain} {what}", "steps", stream=sys.stderr)
    answer = await asyncio.to_thread(run_staffing, args.domain, policy, body, prepared, progress)
    progress.finish()
    if args.json:
        print(answer.decode())
        return 0
    _print_staffing(msgspec.json.decode(answer, type=StaffingResult), prepared.zone)
    return 0


def _print_staffing(result: StaffingResult, zone: str) -> None:
    local = ZoneInfo(zone)
    report = result.report
    print(
        f"{'interval (' + zone + ')':<26}{'arrivals':>9}{'agents':>7}{'service':>8}"
        f"{'wait p90':>9}{'hits':>6}{'occup.':>7}{'Erlang C':>9}{'Erlang A':>9}"
    )
    for outcome, erlang in zip(report.intervals, result.erlang, strict=True):
        moment = datetime.fromtimestamp(outcome.start, local)
        print(
            f"{moment:%a %Y-%m-%d %H:%M}{'':<6}{outcome.arrivals:>9}{outcome.agents:>7}"
            f"{_percent(outcome.service_level):>8}{_seconds(outcome.wait_p90_seconds):>9}"
            f"{_percent(outcome.preferred_hit_ratio):>6}{_percent(outcome.occupancy):>7}"
            f"{_count(erlang.erlang_c_agents):>9}{_count(erlang.erlang_a_agents):>9}"
            + ("  missed" if not outcome.met else "")
        )
    print(
        f"{report.arrivals} arrivals; service level {_percent(report.service_level)}"
        f" ({report.intervals_met}/{len(report.intervals)} intervals met);"
        f" preferred-agent hits {_percent(report.preferred_hit_ratio)};"
        f" occupancy {_percent(report.occupancy)}"
    )
    if report.wait_estimates:
        print(
            f"live wait estimates: {report.wait_estimates} judged, off by"
            f" {_seconds(report.wait_estimate_median_error_seconds)} at the median and"
            f" {_seconds(report.wait_estimate_p90_error_seconds)} at p90"
        )
    if result.infeasible:
        print(f"not met even with the most agents tried: intervals {list(result.infeasible)}")
    print(
        f"{result.simulations} simulation{'s' if result.simulations != 1 else ''},"
        f" {result.simulated_seconds_per_second:,.0f} simulated seconds per second"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
