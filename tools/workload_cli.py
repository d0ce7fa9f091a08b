"""``switchboard workload backfill|show``: the measured workload (``runtime.workload``).

- ``backfill --domain D [--since DAY] [--until DAY]``: measures the domain's recorded
  history a day (UTC) at a time, from ``--since`` (default: the day of its first
  conversation) to ``--until`` (default: today), both included, and stores the rows the
  routers' job would have (measuring again gives the same rows). Progress goes to the
  terminal as one updating line, or as a line a day when the output is not a terminal;
  then one summary line.
- ``show --domain D [--interval 15|30|60] [--from T] [--to T] [--queue Q] [--channel C]
  [--target S] [--json]``: the stored figures per interval, as a table (or JSON). ``T``
  is ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` (UTC); a bare day in ``--to`` means its end.
  Default: today so far.

The domain must be one of the running configuration version's (the file's when none is
stored yet). Needs ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from runtime.workload import (
    DEFAULT_SERVICE_TARGET,
    WAIT_LIMITS,
    BackfillReport,
    WorkloadFigures,
    backfill,
    days_to_measure,
    figures,
    history_start,
)
from schemas.limits import QUEUE_MAX
from switchboard.config import Config
from tools.database_tool import run_with_database, running_document
from tools.progress import TerminalProgress

_DAY = timedelta(days=1)


def add_workload_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "workload", help="measure and show the workload per queue, channel and interval"
    )
    actions = parser.add_subparsers(dest="workload_command", required=True)
    fill = actions.add_parser("backfill", help="measure a domain's recorded history")
    fill.add_argument("--domain", required=True)
    fill.add_argument("--since", type=_day, help="first day, YYYY-MM-DD (UTC)")
    fill.add_argument("--until", type=_day, help="last day, YYYY-MM-DD (UTC; default: today)")
    show = actions.add_parser("show", help="print the stored figures per interval")
    show.add_argument("--domain", required=True)
    show.add_argument("--interval", type=int, choices=(15, 30, 60), default=60, help="minutes")
    show.add_argument("--from", dest="start", type=_moment, help="YYYY-MM-DD[THH:MM] (UTC)")
    show.add_argument("--to", dest="end", type=_end, help="YYYY-MM-DD[THH:MM] (UTC)")
    show.add_argument("--queue")
    show.add_argument("--channel")
    show.add_argument(
        "--target",
        type=int,
        choices=WAIT_LIMITS,
        default=DEFAULT_SERVICE_TARGET,
        help="wait target of the service level, seconds",
    )
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _day(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM-DD") from None


def _moment(text: str) -> datetime:
    if len(text) == len("YYYY-MM-DD"):
        return _day(text)
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM-DD[THH:MM]") from None


def _end(text: str) -> datetime:
    moment = _moment(text)
    return moment + _DAY if len(text) == len("YYYY-MM-DD") else moment


def workload_command(args: argparse.Namespace, config: Config) -> int:
    if len(getattr(args, "queue", None) or "") > QUEUE_MAX:
        print(f"switchboard: queue names are at most {QUEUE_MAX} characters", file=sys.stderr)
        return 2
    return run_with_database("workload", config, lambda url: _run(args, config, url))


async def _run(args: argparse.Namespace, config: Config, url: str) -> int:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            document = await running_document(conn, config)
        if args.domain not in document.domains:
            print(f"switchboard: unknown domain {args.domain!r}", file=sys.stderr)
            return 2
        if args.workload_command == "backfill":
            return await _backfill(pool, args)
        return await _show(pool, args)
    finally:
        await pool.close()


async def _backfill(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    domain: str = args.domain
    since: datetime | None = args.since
    if since is None:
        async with pool.acquire() as conn:
            first = await history_start(conn, domain)
        if first is None:
            print(f"{domain}: no recorded history: nothing to measure")
            return 0
        since = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    until = (args.until or today) + _DAY
    if until <= since:
        print("switchboard: --until is before --since", file=sys.stderr)
        return 2
    async with pool.acquire() as conn:
        days = await days_to_measure(conn, domain, since, until)
    progress = TerminalProgress(domain, "days", lambda done: days[done - 1][0].date().isoformat())
    report = await backfill(pool, domain, since, until, progress)
    progress.finish()
    print(_summary(report))
    return 0


def _summary(report: BackfillReport) -> str:
    last = (report.until - timedelta(microseconds=1)).date()  # the last day measured
    return (
        f"{report.domain}: measured {report.days} day{'' if report.days == 1 else 's'}"
        f" ({report.since.date()} to {last}),"
        f" {report.rows} rows, in {report.seconds:.1f} s"
    )


async def _show(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    start: datetime = args.start or now.replace(hour=0, minute=0, second=0, microsecond=0)
    end: datetime = args.end or now
    if end <= start:
        print("switchboard: --to is not after --from", file=sys.stderr)
        return 2
    try:
        async with pool.acquire() as conn:
            found = await figures(
                conn,
                args.domain,
                start=start,
                end=end,
                interval_seconds=args.interval * 60,
                queue=args.queue,
                channel=args.channel,
                service_target=args.target,
            )
    except ValueError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(found)).decode())
    else:
        print(table(found, args.target))
    return 0


_HEADINGS = (
    ("interval (UTC)", 16),
    ("arrivals", 8),
    ("assigned", 8),
    ("abandoned", 9),
    ("avg wait", 9),
    ("SL", 6),
    ("replies", 7),
    ("handle min", 10),
    ("1st reply", 9),
    ("next reply", 10),
    ("busy agents", 11),
    ("concurrency", 11),
)


def table(rows: list[WorkloadFigures], target: int) -> str:
    """The figures as a text table, one line per interval (``-``: nothing to divide by)."""
    headings = [name if name != "SL" else f"SL<={target}s" for name, _ in _HEADINGS]
    widths = [max(width, len(name)) for name, (_, width) in zip(headings, _HEADINGS, strict=True)]
    lines = [_line(headings, widths)]
    for row in rows:
        cells = [
            row.interval_start.strftime("%Y-%m-%d %H:%M"),
            str(row.arrivals),
            str(row.assigned),
            str(row.abandoned),
            _seconds(row.average_wait_seconds),
            "-" if row.service_level is None else f"{row.service_level:.0%}",
            str(row.agent_replies),
            f"{row.active_handle_seconds / 60:.1f}",
            _seconds(row.average_first_reply_seconds),
            _seconds(row.average_next_reply_seconds),
            f"{row.busy_agents:.2f}",
            "-" if row.concurrency is None else f"{row.concurrency:.2f}",
        ]
        lines.append(_line(cells, widths))
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    """The interval to the left, the figures to the right of their columns."""
    first, *rest = zip(cells, widths, strict=True)
    return "  ".join([first[0].ljust(first[1]), *(c.rjust(w) for c, w in rest)])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
