"""A constructed routing history with known workload figures (``runtime.workload``), written
as the router, the API and the bots write their rows, and the rows it must measure to.

One hour, 09:00 to 10:00 UTC on 2024-03-04, domain ``acme``:

- c1 (SMS, support): ann owns it 09:00:30-09:50 (waited 30 s); the customer writes at
  09:00, 09:05, 09:10; ann replies at 09:02:30, 09:06 (next reply 60 s), 09:06:40 (a
  follow-up) and 09:35: that last one is 25 minutes after the message it answers and 14
  after her previous reply anywhere, so it counts the 10-minute cap, split 5 + 5 over
  09:15 and 09:30 (and 1500 s of next reply). A notification ann sent at 09:30 is no reply.
- c2 (SMS, support): offered to carl at 09:11 (missed), then offered to ann at 09:12
  (waited 120 s) and accepted at 09:12:20 (so 140 s of wait), owned until 10:00; ann
  replies at 09:13, 09:15:40 (a follow-up worked from 09:13: 120 s before 09:15 and 40 s
  after) and 09:21 (the customer wrote at 09:20).
- c3 (SMS, support then sales): ann owns it 09:15-09:30 (fallback, waited 60 s); the
  customer writes at 09:15:10 and ann replies at 09:16, but her reply in c2 at 09:15:40
  bounds that work to 20 s; transferred to bob (sales) 09:30-09:40, who replies at 09:34
  to the customer's 09:31 (first reply 240 s after his assignment, 180 s of work).
  From 09:15 to 09:30 ann owns c1, c2 and c3: concurrency 3.
- c4 (web chat): nobody ever took it; closed at 09:50: abandoned.
- c5 (web chat): a bot answered and closed it at 09:22: contained, not abandoned, and the
  bot's reply is no agent work.
- c6 (web chat): a bot answered, handed it to people, and it closed at 09:46 unanswered:
  abandoned.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from runtime.workload import WAIT_LIMITS, WorkloadRow


def at(clock: str, day: int = 4) -> datetime:
    """``HH:MM[:SS]`` on 2024-03-``day``, UTC."""
    text = clock if clock.count(":") == 2 else clock + ":00"
    return datetime.strptime(f"2024-03-{day:02d} {text}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


@dataclass
class History:
    db: asyncpg.Pool | asyncpg.Connection
    domain: str = "acme"
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def conversation(
        self,
        conversation_id: str,
        opened: datetime,
        *,
        channel: str = "sms",
        queue: str = "support",
        closed: datetime | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO conversations (domain, conversation_id, channel, customer_id,"
            " conversation_key, queue, status, opened_at, closed_at, record)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json)",
            self.domain,
            conversation_id,
            channel,
            f"customer-{conversation_id}",
            f"key-{conversation_id}",
            queue,
            "closed" if closed is not None else "waiting",
            opened,
            closed,
            json.dumps(record or {}),
        )

    async def customer(self, conversation_id: str, sent: datetime, channel: str = "sms") -> None:
        await self._message(conversation_id, "inbound", channel, sent, None, None)

    async def assignment(
        self,
        assignment_id: str,
        conversation_id: str,
        agent_id: str,
        *,
        strategy: str,
        waited: float,
        offered: datetime,
        accepted: datetime | None,
        ended: datetime | None = None,
        end_reason: str | None = None,
        queue: str = "support",
        channel: str = "sms",
    ) -> None:
        await self.db.execute(
            "INSERT INTO assignments (domain, assignment_id, conversation_id, agent_id,"
            " strategy, step, waited_seconds, offered_at, accepted_at, ended_at, end_reason,"
            " record) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11::json)",
            self.domain,
            assignment_id,
            conversation_id,
            agent_id,
            strategy,
            waited,
            offered,
            accepted,
            ended,
            end_reason,
            json.dumps({"queue": queue, "channel": channel}),
        )

    async def reply(
        self,
        conversation_id: str,
        agent_id: str,
        sent: datetime,
        *,
        channel: str = "sms",
        kind: str = "reply",
    ) -> None:
        """An agent's reply (or notification) as the API writes it."""
        outbound_id = await self._message(
            conversation_id, "outbound", channel, sent, agent_id, None
        )
        await self._outbound(outbound_id, conversation_id, channel, sent, agent_id, None, kind)

    async def bot_reply(
        self, conversation_id: str, bot_id: str, sent: datetime, channel: str = "webchat"
    ) -> None:
        """A bot's reply as the router writes it."""
        outbound_id = await self._message(conversation_id, "outbound", channel, sent, None, bot_id)
        await self._outbound(outbound_id, conversation_id, channel, sent, None, bot_id, "reply")

    async def _message(
        self,
        conversation_id: str,
        direction: str,
        channel: str,
        sent: datetime,
        agent_id: str | None,
        bot_id: str | None,
    ) -> str:
        message_id = f"m{next(self._ids)}"
        await self.db.execute(
            "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
            " agent_id, bot_id, text, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'hi', $8)",
            self.domain,
            message_id,
            conversation_id,
            direction,
            channel,
            agent_id,
            bot_id,
            sent,
        )
        return message_id

    async def _outbound(
        self,
        outbound_id: str,
        conversation_id: str,
        channel: str,
        sent: datetime,
        agent_id: str | None,
        bot_id: str | None,
        kind: str,
    ) -> None:
        await self.db.execute(
            "INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel,"
            " agent_id, bot_id, status, kind, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'sent', $7, $8)",
            self.domain,
            outbound_id,
            conversation_id,
            channel,
            agent_id,
            bot_id,
            kind,
            sent,
        )


async def write_the_hour(h: History) -> None:
    """The hour the module's docstring tells."""
    await h.conversation("c1", at("09:00"), closed=at("09:50"))
    for sent in ("09:00", "09:05", "09:10"):
        await h.customer("c1", at(sent))
    await h.assignment(
        "a1", "c1", "ann", strategy="preferred", waited=30, offered=at("09:00:30"),
        accepted=at("09:00:30"), ended=at("09:50"), end_reason="closed:resolved",
    )  # fmt: skip
    for sent in ("09:02:30", "09:06", "09:06:40", "09:35"):
        await h.reply("c1", "ann", at(sent))
    await h.reply("c1", "ann", at("09:30"), kind="notification")

    await h.conversation("c2", at("09:10"), closed=at("10:00"))
    for sent in ("09:10", "09:20"):
        await h.customer("c2", at(sent))
    await h.assignment(
        "x1", "c2", "carl", strategy="queue", waited=60, offered=at("09:11"), accepted=None,
        ended=at("09:11:30"), end_reason="offer_missed",
    )  # fmt: skip
    await h.assignment(
        "a2", "c2", "ann", strategy="queue", waited=120, offered=at("09:12"),
        accepted=at("09:12:20"), ended=at("10:00"), end_reason="closed:inactive",
    )  # fmt: skip
    for sent in ("09:13", "09:15:40", "09:21"):
        await h.reply("c2", "ann", at(sent))

    await h.conversation("c3", at("09:14"), closed=at("09:40"))
    for sent in ("09:14", "09:15:10", "09:31"):
        await h.customer("c3", at(sent))
    await h.assignment(
        "a3", "c3", "ann", strategy="fallback", waited=60, offered=at("09:15"),
        accepted=at("09:15"), ended=at("09:30"), end_reason="transferred",
    )  # fmt: skip
    await h.assignment(
        "b1", "c3", "bob", strategy="transfer", waited=960, offered=at("09:30"),
        accepted=at("09:30"), ended=at("09:40"), end_reason="closed:resolved", queue="sales",
    )  # fmt: skip
    await h.reply("c3", "ann", at("09:16"))
    await h.reply("c3", "bob", at("09:34"))

    await h.conversation("c4", at("09:20"), channel="webchat", closed=at("09:50"))
    await h.customer("c4", at("09:20"), "webchat")
    await h.conversation("c5", at("09:21"), channel="webchat", closed=at("09:22"))
    await h.customer("c5", at("09:21"), "webchat")
    await h.bot_reply("c5", "helper", at("09:21:05"))
    handed_off = {"handoff": {"reason": "customer_asked"}}
    await h.conversation(
        "c6", at("09:23"), channel="webchat", closed=at("09:46"), record=handed_off
    )
    await h.customer("c6", at("09:23"), "webchat")
    await h.bot_reply("c6", "helper", at("09:23:05"))


def waits(*seconds: float) -> tuple[int, ...]:
    """``waits_within`` of these waits."""
    return tuple(sum(s <= limit for s in seconds) for limit in WAIT_LIMITS)


THE_HOUR: list[WorkloadRow] = [
    WorkloadRow(
        queue="support", channel="sms", interval_start=at("09:00"),
        arrivals=3, assigned=2, wait_count=2, wait_seconds_sum=170.0, waits_within=waits(30, 140),
        active_handle_seconds=380.0, agent_replies=4,
        first_reply_count=2, first_reply_seconds_sum=160.0,
        next_reply_count=1, next_reply_seconds_sum=60.0,
        conversation_seconds=1030.0, busy_agent_seconds=870.0,
    ),
    WorkloadRow(
        queue="support", channel="sms", interval_start=at("09:15"),
        assigned=1, wait_count=1, wait_seconds_sum=60.0, waits_within=waits(60),
        active_handle_seconds=420.0, agent_replies=3,
        first_reply_count=1, first_reply_seconds_sum=60.0,
        next_reply_count=1, next_reply_seconds_sum=60.0,
        conversation_seconds=2700.0, busy_agent_seconds=900.0,
    ),
    WorkloadRow(queue="support", channel="webchat", interval_start=at("09:15"), arrivals=3),
    WorkloadRow(
        queue="sales", channel="sms", interval_start=at("09:30"),
        active_handle_seconds=180.0, agent_replies=1,
        first_reply_count=1, first_reply_seconds_sum=240.0,
        conversation_seconds=600.0, busy_agent_seconds=600.0,
    ),
    WorkloadRow(
        queue="support", channel="sms", interval_start=at("09:30"),
        active_handle_seconds=300.0, agent_replies=1,
        next_reply_count=1, next_reply_seconds_sum=1500.0,
        conversation_seconds=1800.0, busy_agent_seconds=900.0,
    ),
    WorkloadRow(
        queue="support", channel="sms", interval_start=at("09:45"),
        conversation_seconds=1200.0, busy_agent_seconds=900.0,
    ),
    WorkloadRow(queue="support", channel="webchat", interval_start=at("09:45"), abandoned=2),
]  # fmt: skip
"""What ``measure`` must find in 09:00-10:00, by interval, queue and channel."""
