"""The measured workload: what each queue and channel of a domain asked of its people, per
15-minute interval, from the router's own records (table ``workload_intervals``).

Every figure is a sum or a count, so that a 30- or 60-minute interval, a day or a week is
the sum of its 15-minute rows; averages and ratios are computed from the sums when read
(``figures``). Intervals are aligned to 15 minutes UTC. A figure belongs to the interval
in which its event happened; a duration is split over the intervals it covers.

People only: bots own conversations without assignments, and their replies carry a
``bot_id``, not an ``agent_id``, so nothing a bot does is agent work. Replies a person
sent from outside Switchboard (``message.human_replied``) are not recorded, so not
measured.

Definitions (a conversation's **home queue** is the queue of its first accepted
assignment, else the queue it is in now; an **agent reply** is an ``outbound_messages``
row of kind ``reply`` with an ``agent_id``, at its ``created_at``, as the API's
first-response figure counts it):

- ``arrivals``: conversations opened (``opened_at``), under their home queue. A customer
  writing again into an open (idle) conversation is no arrival: that work shows in the
  replies.
- ``assigned``: conversations whose first accepted assignment to a person started
  (``accepted_at``), under that assignment's queue.
- ``abandoned``: conversations closed (``closed_at``) that no person ever accepted, and
  that a bot was not serving: it handed them off to people (a hand-off is recorded), or
  no bot ever replied in them. Closed while waiting, offered or overflowed: the customer
  gave up or the business closed it unanswered. An overflowed conversation still open
  is not abandoned yet: it may still be picked up.
- ``wait_count``, ``wait_seconds_sum``, ``waits_within_<L>s``: each accepted assignment
  but transfers (the customer waited for routing to find a person: the first time, and
  again when their owner was unavailable), at ``accepted_at``: the wait is the
  assignment's ``waited_seconds`` (up to the offer) plus the time the offer took to be
  accepted (0 in assign mode). ``waits_within_<L>s`` counts the waits of at most ``L``
  seconds, for each ``L`` of ``WAIT_LIMITS``: the service level for any of those targets
  is ``waits_within_<L>s / wait_count`` (fixed limits keep the rows independent of the
  configured targets, which change).
- ``agent_replies``: agent replies.
- ``active_handle_seconds``: the time people spent working, estimated from the messages.
  An agent reply at ``t`` worked from its **start** to ``t``, at most
  ``REPLY_WORK_MAX_SECONDS`` (a reply after lunch is not an hour of work): the start is
  the earliest customer message after the reply's **anchor** (the latest of the
  conversation's opening, the start of the replying agent's assignment of it, and the
  conversation's previous agent reply), else the anchor itself (a follow-up); and never
  before the same agent's previous reply in any conversation (nobody writes two replies
  at once, so the seconds of one agent never add up to more than the time that passed).
  The seconds go to the intervals they fall in, the reply's own and earlier ones.
- ``first_reply_count``, ``first_reply_seconds_sum``: from the start of an assignment to
  its agent's first reply in it (no agent reply in the conversation since the
  assignment started), at the reply. Together with the wait it makes the customer's
  first response; the API's ``median_first_response_seconds_today`` counts from the
  opening, both at once.
- ``next_reply_count``, ``next_reply_seconds_sum``: from the first customer message after
  an agent reply to the next agent reply of the same assignment (of the conversation, for
  a reply without an assignment of its agent; the first reply of an assignment is a
  first reply, not a next one), at the reply.
- ``conversation_seconds``: the seconds people owned conversations (accepted assignment
  to its end, or to now while it lasts), inside each interval. An idle conversation whose
  slot was released is still owned: owner periods do not record releases.
- ``busy_agent_seconds``: the seconds each agent owned at least one conversation of the
  queue and channel, inside each interval. Achieved concurrency is
  ``conversation_seconds / busy_agent_seconds``; an agent busy in two queues at once
  counts in both, so the concurrency of several queues summed is that of each queue.

Queues and channels are those of the event: a reply, wait or assignment counts under the
queue of its assignment (so a transfer to another team moves the work there), and a
reply without an assignment of its agent (an admin's) under the conversation's queue.

A measurement reads the rows of the window and a reply's lead-up; re-measuring gives the
same rows (``store`` replaces the window's rows), so the routers re-measure the recent
intervals every minute (late replies change them: ``runtime.workload_job``) and
``backfill`` measures history a day at a time. Retention and erasure leave the rows: they
name no customer, conversation or agent, and forecasting needs them after the routing
history they came from is gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Annotated, Final

import asyncpg
import msgspec

INTERVAL_SECONDS: Final = 900
"""The stored interval: 15 minutes, aligned to 15 minutes UTC."""
READ_INTERVALS: Final = (900, 1800, 3600)
"""The intervals ``figures`` sums rows into."""
REPLY_WORK_MAX_SECONDS: Final = 600.0
"""The most work one agent reply counts (10 minutes)."""
WAIT_LIMITS: Final = (20, 30, 60, 120, 300, 900, 3600, 14400, 86400)
"""Seconds of the ``waits_within_<L>s`` columns: chat's 20 and 30 s, SMS's minutes,
WhatsApp's 5 minutes, an hour, email's 4 hours, a day."""
DEFAULT_SERVICE_TARGET: Final = 60
"""The wait target of ``figures``' service level when the caller names none."""
FIGURES_MAX_SPAN: Final = timedelta(days=366)
"""The longest span ``figures`` reads at once."""
_DAY: Final = timedelta(days=1)
_LOCK_CLASS: Final = "switchboard.workload"
LOCK = f"SELECT pg_advisory_xact_lock(hashtext('{_LOCK_CLASS}'), hashtext($1))"
"""Waits for the domain's measuring lock, held until the transaction ends (backfill)."""
TRY_LOCK = f"SELECT pg_try_advisory_xact_lock(hashtext('{_LOCK_CLASS}'), hashtext($1))"
"""Takes the domain's measuring lock unless another transaction holds it (the job)."""

Progress = Callable[[int, int], None]
"""Called with (done, total) as a long run goes on."""


class WorkloadJobConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the routers measure the workload as they run (``[workload]``)."""

    enabled: bool = True
    """Whether the routers run the job (``switchboard workload backfill`` works either way)."""
    interval: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 60.0
    """Seconds between two measurements of each domain (1 to 3600): every router tries,
    a domain measured by any router less than 0.9 of an interval ago is left alone."""
    lookback: Annotated[int, msgspec.Meta(ge=900, le=7 * 86_400)] = 7200
    """Seconds of recent intervals each measurement re-measures (900 to 604800): late
    replies, and owner periods still running, change them."""


class WorkloadSums(msgspec.Struct, frozen=True, kw_only=True):
    """The additive figures (see the module's definitions)."""

    arrivals: int = 0
    assigned: int = 0
    abandoned: int = 0
    wait_count: int = 0
    wait_seconds_sum: float = 0.0
    waits_within: tuple[int, ...] = (0,) * len(WAIT_LIMITS)
    """Waits of at most each of ``WAIT_LIMITS`` seconds, in that order."""
    active_handle_seconds: float = 0.0
    agent_replies: int = 0
    first_reply_count: int = 0
    first_reply_seconds_sum: float = 0.0
    next_reply_count: int = 0
    next_reply_seconds_sum: float = 0.0
    conversation_seconds: float = 0.0
    busy_agent_seconds: float = 0.0


class WorkloadRow(WorkloadSums, frozen=True, kw_only=True):
    """One row of ``workload_intervals``: a queue and channel's 15-minute interval."""

    queue: str
    channel: str
    interval_start: datetime


class WorkloadFigures(WorkloadSums, frozen=True, kw_only=True):
    """One interval of ``figures``: the sums of its rows and what they give."""

    interval_start: datetime
    interval_seconds: int
    average_wait_seconds: float | None
    service_target_seconds: int
    service_level: float | None
    """Share of the waits within ``service_target_seconds``."""
    average_first_reply_seconds: float | None
    average_next_reply_seconds: float | None
    handle_seconds_per_reply: float | None
    active_agents: float
    """People working on average: ``active_handle_seconds / interval_seconds``."""
    busy_agents: float
    """People owning at least one conversation on average (``busy_agent_seconds /
    interval_seconds``, each queue and channel counted apart)."""
    concurrency: float | None
    """Conversations an owning agent held at once: ``conversation_seconds /
    busy_agent_seconds``."""


class BackfillReport(msgspec.Struct, frozen=True, kw_only=True):
    domain: str
    since: datetime
    until: datetime
    days: int
    rows: int
    """Rows stored (queue, channel and 15-minute interval with any figure)."""
    seconds: float


WITHIN_COLUMNS: Final = tuple(f"waits_within_{limit}s" for limit in WAIT_LIMITS)
_SCALARS: Final = tuple(name for name in WorkloadSums.__struct_fields__ if name != "waits_within")
COLUMNS: Final = (*_SCALARS[:5], *WITHIN_COLUMNS, *_SCALARS[5:])
"""The figure columns of ``workload_intervals``, in table order."""
_FLOATS: Final = frozenset(
    name for name in _SCALARS if isinstance(getattr(WorkloadSums(), name), float)
)


MEASURED_UNTIL: Final = datetime(9999, 12, 30, tzinfo=UTC)
"""Times later than this are taken as this: the API accepts times up to the end of 9999,
and an interval or a day past them is a date ``datetime`` cannot hold (``OverflowError``,
a 500 and a failed job before this bound). No work is recorded that late."""


def floor_interval(moment: datetime, seconds: int = INTERVAL_SECONDS) -> datetime:
    """The start of the ``seconds``-long interval (aligned UTC) holding ``moment``."""
    epoch = int(moment.timestamp() // seconds) * seconds
    return datetime.fromtimestamp(epoch, UTC)


def ceil_interval(moment: datetime, seconds: int = INTERVAL_SECONDS) -> datetime:
    floor = floor_interval(moment, seconds)
    return floor if floor == moment else floor + timedelta(seconds=seconds)


# -- measuring ------------------------------------------------------------------------
# $1 domain, $2 window start, $3 window end (aligned), $4 REPLY_WORK_MAX_SECONDS.

_BIN = "date_bin(interval '900 seconds', {}, TIMESTAMPTZ 'epoch')"

MEASURE = f"""
WITH owned AS (  -- people's owner periods overlapping the window (two index ranges)
    SELECT * FROM assignments a
    WHERE a.domain = $1 AND a.ended_at >= $2::timestamptz AND a.accepted_at < $3::timestamptz
    UNION ALL
    SELECT * FROM assignments a
    WHERE a.domain = $1 AND a.ended_at IS NULL AND a.accepted_at < $3::timestamptz
), held AS (  -- clipped to the window and to now
    SELECT a.assignment_id, a.conversation_id, a.agent_id, a.strategy,
           a.record->>'queue' AS queue, a.record->>'channel' AS channel,
           a.offered_at, a.accepted_at, a.waited_seconds,
           greatest(a.accepted_at, $2::timestamptz) AS held_from,
           least(CASE WHEN a.ended_at IS NULL THEN now()
                      ELSE greatest(a.ended_at, a.accepted_at) END, $3::timestamptz) AS held_until
    FROM owned a
), firsts AS (
    SELECT 'assigned'::text AS figure, h.queue, h.channel, h.accepted_at AS at,
           1.0::float8 AS value
    FROM held h
    WHERE h.accepted_at >= $2::timestamptz AND h.assignment_id = (
        SELECT p.assignment_id FROM assignments p
        WHERE p.domain = $1 AND p.conversation_id = h.conversation_id
          AND p.accepted_at IS NOT NULL
        ORDER BY p.accepted_at, p.assignment_id LIMIT 1)
), waits AS (
    SELECT 'wait', h.queue, h.channel, h.accepted_at,
           greatest(0.0, h.waited_seconds
               + extract(epoch FROM h.accepted_at - coalesce(h.offered_at, h.accepted_at)))::float8
    FROM held h
    WHERE h.accepted_at >= $2::timestamptz AND h.strategy <> 'transfer'
), arrivals AS (
    SELECT 'arrival', coalesce(f.queue, c.queue), c.channel, c.opened_at, 1.0
    FROM conversations c
    LEFT JOIN LATERAL (
        SELECT a.record->>'queue' AS queue FROM assignments a
        WHERE a.domain = $1 AND a.conversation_id = c.conversation_id
          AND a.accepted_at IS NOT NULL
        ORDER BY a.accepted_at, a.assignment_id LIMIT 1
    ) f ON true
    WHERE c.domain = $1 AND c.opened_at >= $2::timestamptz AND c.opened_at < $3::timestamptz
), abandons AS (
    SELECT 'abandoned', c.queue, c.channel, c.closed_at, 1.0
    FROM conversations c
    WHERE c.domain = $1 AND c.status = 'closed'
      AND c.closed_at >= $2::timestamptz AND c.closed_at < $3::timestamptz
      AND NOT EXISTS (
          SELECT 1 FROM assignments a
          WHERE a.domain = $1 AND a.conversation_id = c.conversation_id
            AND a.accepted_at IS NOT NULL)
      AND (json_typeof(c.record->'handoff') = 'object' OR NOT EXISTS (
          SELECT 1 FROM messages m
          WHERE m.domain = $1 AND m.conversation_id = c.conversation_id
            AND m.bot_id IS NOT NULL))
), replies AS (  -- a reply's work may reach back into the window from after it
    SELECT o.outbound_id, o.conversation_id, o.agent_id, o.created_at AS at,
           c.channel, c.queue AS conversation_queue, c.opened_at
    FROM outbound_messages o
    JOIN conversations c ON c.domain = o.domain AND c.conversation_id = o.conversation_id
    WHERE o.domain = $1 AND o.kind = 'reply' AND o.agent_id IS NOT NULL
      AND o.created_at >= $2::timestamptz
      AND o.created_at < $3::timestamptz + make_interval(secs => $4::float8)
), placed AS (
    SELECT r.*, coalesce(mine.queue, r.conversation_queue) AS queue,
           mine.accepted_at AS assigned_at, previous.at AS previous_at,
           own.at AS own_previous_at
    FROM replies r
    LEFT JOIN LATERAL (  -- the replying agent's assignment of the conversation
        SELECT a.accepted_at, a.record->>'queue' AS queue FROM assignments a
        WHERE a.domain = $1 AND a.conversation_id = r.conversation_id
          AND a.agent_id = r.agent_id AND a.accepted_at <= r.at
          AND (a.ended_at IS NULL OR a.ended_at >= r.at)
        ORDER BY a.accepted_at DESC, a.assignment_id DESC LIMIT 1
    ) mine ON true
    LEFT JOIN LATERAL (  -- the conversation's previous agent reply
        SELECT p.created_at AS at FROM outbound_messages p
        WHERE p.domain = $1 AND p.conversation_id = r.conversation_id
          AND p.kind = 'reply' AND p.agent_id IS NOT NULL AND p.created_at <= r.at
          AND (p.created_at < r.at OR p.outbound_id < r.outbound_id)
        ORDER BY p.created_at DESC LIMIT 1
    ) previous ON true
    LEFT JOIN LATERAL (  -- the same agent's previous reply, in any conversation
        SELECT p.created_at AS at FROM outbound_messages p
        WHERE p.domain = $1 AND p.agent_id = r.agent_id AND p.kind = 'reply'
          AND p.created_at <= r.at AND (p.created_at < r.at OR p.outbound_id < r.outbound_id)
        ORDER BY p.created_at DESC LIMIT 1
    ) own ON true
), asked AS (
    SELECT pl.*, greatest(pl.opened_at, pl.assigned_at, pl.previous_at) AS anchor, q.at AS asked_at
    FROM placed pl
    LEFT JOIN LATERAL (  -- the earliest customer message the reply answers
        SELECT min(m.occurred_at) AS at FROM messages m
        WHERE m.domain = $1 AND m.conversation_id = pl.conversation_id
          AND m.direction = 'inbound' AND m.occurred_at <= pl.at
          AND m.occurred_at > greatest(pl.opened_at, pl.assigned_at, pl.previous_at)
    ) q ON true
), worked AS (
    SELECT a.*, least($4::float8, greatest(0.0, extract(epoch FROM a.at
               - greatest(coalesce(a.asked_at, a.anchor), a.own_previous_at))))::float8 AS work
    FROM asked a
), reply_events AS (
    SELECT 'reply', w.queue, w.channel, w.at, 1.0 FROM worked w
    WHERE w.at < $3::timestamptz
    UNION ALL
    SELECT 'first_reply', w.queue, w.channel, w.at, extract(epoch FROM w.at - w.assigned_at)
    FROM worked w
    WHERE w.at < $3::timestamptz AND w.assigned_at IS NOT NULL
      AND (w.previous_at IS NULL OR w.previous_at < w.assigned_at)
    UNION ALL
    SELECT 'next_reply', w.queue, w.channel, w.at, extract(epoch FROM w.at - w.asked_at)
    FROM worked w
    WHERE w.at < $3::timestamptz AND w.asked_at IS NOT NULL
      AND w.previous_at >= coalesce(w.assigned_at, w.opened_at)
), reach AS (  -- each agent's owner periods per queue and channel, merged into islands
    SELECT h.agent_id, h.queue, h.channel, h.held_from, h.held_until,
           max(h.held_until) OVER (
               PARTITION BY h.agent_id, h.queue, h.channel ORDER BY h.held_from, h.held_until
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
    FROM held h WHERE h.held_until > h.held_from
), islands AS (
    SELECT r.*, count(*) FILTER (WHERE r.reached IS NULL OR r.held_from > r.reached) OVER (
               PARTITION BY r.agent_id, r.queue, r.channel ORDER BY r.held_from, r.held_until
               ROWS UNBOUNDED PRECEDING) AS island
    FROM reach r
), spans AS (
    SELECT 'conversation_seconds'::text AS figure, h.queue, h.channel,
           h.held_from AS span_from, h.held_until AS span_until
    FROM held h
    UNION ALL
    SELECT 'busy_agent_seconds', i.queue, i.channel, min(i.held_from), max(i.held_until)
    FROM islands i GROUP BY i.agent_id, i.queue, i.channel, i.island
    UNION ALL
    SELECT 'active_handle_seconds', w.queue, w.channel,
           greatest(w.at - make_interval(secs => w.work), $2::timestamptz),
           least(w.at, $3::timestamptz)
    FROM worked w WHERE w.work > 0
), split AS (  -- each span's seconds in each interval it covers
    SELECT s.figure, s.queue, s.channel, g.at,
           extract(epoch FROM least(s.span_until, g.at + interval '900 seconds')
                              - greatest(s.span_from, g.at))::float8 AS value
    FROM spans s
    CROSS JOIN LATERAL generate_series(
        {_BIN.format("s.span_from")}, s.span_until, interval '900 seconds') AS g(at)
    WHERE s.span_until > s.span_from
), figures AS (
    SELECT e.figure, e.queue, e.channel, {_BIN.format("e.at")} AS at, e.value
    FROM (
        SELECT * FROM firsts UNION ALL SELECT * FROM waits UNION ALL SELECT * FROM arrivals
        UNION ALL SELECT * FROM abandons UNION ALL SELECT * FROM reply_events
    ) e
    UNION ALL
    SELECT s.figure, s.queue, s.channel, s.at, s.value FROM split s WHERE s.value > 0
)
SELECT queue, channel, at AS interval_start,
       count(*) FILTER (WHERE figure = 'arrival')::int AS arrivals,
       count(*) FILTER (WHERE figure = 'assigned')::int AS assigned,
       count(*) FILTER (WHERE figure = 'abandoned')::int AS abandoned,
       count(*) FILTER (WHERE figure = 'wait')::int AS wait_count,
       coalesce(sum(value) FILTER (WHERE figure = 'wait'), 0) AS wait_seconds_sum,
       {
    ", ".join(
        f"count(*) FILTER (WHERE figure = 'wait' AND value <= {limit})::int AS {column}"
        for limit, column in zip(WAIT_LIMITS, WITHIN_COLUMNS, strict=True)
    )
},
       coalesce(sum(value) FILTER (WHERE figure = 'active_handle_seconds'), 0)
           AS active_handle_seconds,
       count(*) FILTER (WHERE figure = 'reply')::int AS agent_replies,
       count(*) FILTER (WHERE figure = 'first_reply')::int AS first_reply_count,
       coalesce(sum(value) FILTER (WHERE figure = 'first_reply'), 0) AS first_reply_seconds_sum,
       count(*) FILTER (WHERE figure = 'next_reply')::int AS next_reply_count,
       coalesce(sum(value) FILTER (WHERE figure = 'next_reply'), 0) AS next_reply_seconds_sum,
       coalesce(sum(value) FILTER (WHERE figure = 'conversation_seconds'), 0)
           AS conversation_seconds,
       coalesce(sum(value) FILTER (WHERE figure = 'busy_agent_seconds'), 0)
           AS busy_agent_seconds
FROM figures
GROUP BY queue, channel, at
ORDER BY at, queue, channel
"""  # noqa: S608 -- built from this module's constants only
"""The rows of a window's intervals that have any figure (see the module's definitions)."""


def _row(record: asyncpg.Record) -> WorkloadRow:
    return WorkloadRow(
        queue=record["queue"],
        channel=record["channel"],
        interval_start=record["interval_start"],
        waits_within=tuple(record[column] for column in WITHIN_COLUMNS),
        **{name: record[name] for name in _SCALARS},
    )


def window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole 15-minute intervals."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the window's times need a time zone")
    return floor_interval(min(start, MEASURED_UNTIL)), ceil_interval(min(end, MEASURED_UNTIL))


async def measure(
    conn: asyncpg.Connection, domain: str, start: datetime, end: datetime
) -> list[WorkloadRow]:
    """The rows of ``domain``'s 15-minute intervals in ``[start, end)`` (widened to whole
    intervals) that have any figure, ordered by interval, queue and channel."""
    start, end = window(start, end)
    async with conn.transaction():
        # The planner's estimate of the spans it splits runs high: compiling the query
        # (JIT) would take seconds, the query itself takes milliseconds.
        await conn.execute("SET LOCAL jit = off")
        records = await conn.fetch(MEASURE, domain, start, end, REPLY_WORK_MAX_SECONDS)
    return [_row(record) for record in records]


_UPSERT = f"""
INSERT INTO workload_intervals (domain, queue, channel, interval_start, {", ".join(COLUMNS)},
                                measured_at)
SELECT $1, * , now() FROM unnest($2::text[], $3::text[], $4::timestamptz[], {
    ", ".join(f"${n}::{'float8' if c in _FLOATS else 'int'}[]" for n, c in enumerate(COLUMNS, 5))
})
ON CONFLICT (domain, interval_start, queue, channel) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)}, measured_at = EXCLUDED.measured_at
"""  # noqa: S608 -- built from this module's constants only
_DELETE_OTHERS = """
DELETE FROM workload_intervals w
WHERE w.domain = $1 AND w.interval_start >= $2 AND w.interval_start < $3
  AND (w.queue, w.channel, w.interval_start) NOT IN (
      SELECT * FROM unnest($4::text[], $5::text[], $6::timestamptz[]))
"""


async def store(
    conn: asyncpg.Connection,
    domain: str,
    start: datetime,
    end: datetime,
    rows: Sequence[WorkloadRow],
) -> None:
    """Make ``rows`` the rows of ``domain``'s intervals in ``[start, end)`` (widened to
    whole intervals): upserted, and the window's other rows deleted (what they counted is
    gone: an erasure). Storing the same rows again changes nothing but ``measured_at``."""
    start, end = window(start, end)
    if any(not start <= row.interval_start < end for row in rows):
        raise ValueError("a row outside the window")
    keys = ([r.queue for r in rows], [r.channel for r in rows], [r.interval_start for r in rows])
    async with conn.transaction():
        await conn.execute(_DELETE_OTHERS, domain, start, end, *keys)
        if rows:
            await conn.execute(
                _UPSERT,
                domain,
                *keys,
                *([_value(row, column) for row in rows] for column in COLUMNS),
            )


def _value(row: WorkloadRow, column: str) -> int | float:
    if column in WITHIN_COLUMNS:
        return row.waits_within[WITHIN_COLUMNS.index(column)]
    value: int | float = getattr(row, column)
    return value


async def remeasure(conn: asyncpg.Connection, domain: str, start: datetime, end: datetime) -> int:
    """Measure and store ``domain``'s window in one transaction; the rows stored."""
    async with conn.transaction():
        rows = await measure(conn, domain, start, end)
        await store(conn, domain, start, end, rows)
    return len(rows)


# -- back-filling ---------------------------------------------------------------------


def days_of(since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """``[since, until)`` (widened to whole intervals) cut at each midnight UTC."""
    since, until = window(since, until)
    days = []
    start = since
    while start < until:
        midnight = datetime(start.year, start.month, start.day, tzinfo=UTC) + _DAY
        days.append((start, min(midnight, until)))
        start = midnight
    return days


async def days_to_measure(
    conn: asyncpg.Connection, domain: str, since: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """The days (UTC) of ``[since, until)`` a backfill measures: none before the day of the
    domain's first recorded conversation (``history_start``). There is nothing to measure
    before it, and measuring would replace the rows kept from conversations retention has
    deleted since with none (``since=0`` walked 20,800 days to do it)."""
    first = await history_start(conn, domain)
    if first is None:
        return []
    since = max(since, datetime.combine(first.astimezone(UTC).date(), dt_time(), UTC))
    return days_of(since, until) if since < until else []


async def backfill(
    pool: asyncpg.Pool,
    domain: str,
    since: datetime,
    until: datetime,
    progress: Progress | None = None,
) -> BackfillReport:
    """Measure ``domain``'s history in ``[since, until)`` (``days_to_measure``) a day (UTC)
    at a time, each day in a transaction of its own under the domain's measuring lock (the
    routers' job waits meanwhile), calling ``progress(done, total)`` after each day."""
    started = time.monotonic()
    async with pool.acquire() as conn:
        days = await days_to_measure(conn, domain, since, until)
    rows = 0
    for done, (start, end) in enumerate(days, 1):
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK, domain)
            rows += await remeasure(conn, domain, start, end)
        if progress is not None:
            progress(done, len(days))
    return BackfillReport(
        domain=domain,
        since=days[0][0] if days else since,
        until=days[-1][1] if days else until,
        days=len(days),
        rows=rows,
        seconds=round(time.monotonic() - started, 3),
    )


async def history_start(conn: asyncpg.Connection, domain: str) -> datetime | None:
    """When ``domain``'s recorded history starts: its first conversation's opening."""
    first: datetime | None = await conn.fetchval(
        "SELECT min(opened_at) FROM conversations WHERE domain = $1", domain
    )
    return first


# -- reading --------------------------------------------------------------------------

_READ = f"""
SELECT date_bin(make_interval(secs => $4), interval_start, TIMESTAMPTZ 'epoch') AS at,
       {", ".join(f"sum({c})::{'float8' if c in _FLOATS else 'bigint'} AS {c}" for c in COLUMNS)}
FROM workload_intervals
WHERE domain = $1 AND interval_start >= $2 AND interval_start < $3
  AND ($5::text IS NULL OR queue = $5) AND ($6::text IS NULL OR channel = $6)
GROUP BY 1
ORDER BY 1
"""  # noqa: S608 -- built from this module's constants only


def _ratio(part: float, whole: float) -> float | None:
    """``part / whole``, or None when there is no whole."""
    return part / whole if whole else None


def derive(
    sums: WorkloadSums, interval_start: datetime, interval_seconds: int, service_target: int
) -> WorkloadFigures:
    """An interval's figures from its sums (``service_target``: one of ``WAIT_LIMITS``)."""
    within = sums.waits_within[WAIT_LIMITS.index(service_target)]
    return WorkloadFigures(
        **msgspec.structs.asdict(sums),
        interval_start=interval_start,
        interval_seconds=interval_seconds,
        average_wait_seconds=_ratio(sums.wait_seconds_sum, sums.wait_count),
        service_target_seconds=service_target,
        service_level=_ratio(within, sums.wait_count),
        average_first_reply_seconds=_ratio(sums.first_reply_seconds_sum, sums.first_reply_count),
        average_next_reply_seconds=_ratio(sums.next_reply_seconds_sum, sums.next_reply_count),
        handle_seconds_per_reply=_ratio(sums.active_handle_seconds, sums.agent_replies),
        active_agents=sums.active_handle_seconds / interval_seconds,
        busy_agents=sums.busy_agent_seconds / interval_seconds,
        concurrency=_ratio(sums.conversation_seconds, sums.busy_agent_seconds),
    )


async def figures(
    conn: asyncpg.Connection,
    domain: str,
    *,
    start: datetime,
    end: datetime,
    interval_seconds: int = 3600,
    queue: str | None = None,
    channel: str | None = None,
    service_target: int = DEFAULT_SERVICE_TARGET,
) -> list[WorkloadFigures]:
    """Every ``interval_seconds`` interval (900, 1800 or 3600, aligned UTC) of ``[start,
    end)`` (widened to whole intervals, at most ``FIGURES_MAX_SPAN``), with the sums of its
    stored rows of ``queue`` and ``channel`` (None: all of them), zeros where none, and
    the figures derived from them."""
    if interval_seconds not in READ_INTERVALS:
        raise ValueError(f"interval_seconds is one of {READ_INTERVALS}")
    if service_target not in WAIT_LIMITS:
        raise ValueError(f"the service target is one of {WAIT_LIMITS} seconds")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the times need a time zone")
    start = floor_interval(min(start, MEASURED_UNTIL), interval_seconds)
    end = ceil_interval(min(end, MEASURED_UNTIL), interval_seconds)
    if end - start > FIGURES_MAX_SPAN:
        raise ValueError(f"at most {FIGURES_MAX_SPAN.days} days at once")
    found = {
        record["at"]: record
        for record in await conn.fetch(
            _READ, domain, start, end, float(interval_seconds), queue, channel
        )
    }
    step = timedelta(seconds=interval_seconds)
    out = []
    at = start
    while at < end:
        record = found.get(at)
        sums = (
            WorkloadSums()
            if record is None
            else WorkloadSums(
                waits_within=tuple(record[column] for column in WITHIN_COLUMNS),
                **{name: record[name] for name in _SCALARS},
            )
        )
        out.append(derive(sums, at, interval_seconds, service_target))
        at += step
    return out
