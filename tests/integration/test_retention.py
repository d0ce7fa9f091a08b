"""Retention on a real PostgreSQL (``runtime.retention``), sectioned by its rules: what each
period expires and what it never touches, statements bounded to ``batch_size`` rows, the
advisory lock between two passes, the indexes the expiry reads, the routers' job under
traffic with periods set through the configuration API, and ``switchboard retention run``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from runtime import retention
from runtime.retention import Pass, RetentionConfig, RetentionJobConfig, run_pass
from switchboard.app import RETENTION_JOB, ROUTER_WORKER
from tests.conftest import Infrastructure
from tests.readme.shell import BIN
from tests.support import (
    Service,
    make_config,
    make_raw_config,
    running_service,
    to_toml,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

DAY = 86_400
BODY = "my card number is 4111 1111 1111 1111"
ATTACHMENTS = '[{"kind": "image", "url": "https://media.example/secret.jpg"}]'
JOB = RetentionJobConfig(batch_size=10, batch_pause=0)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert created is not None
    yield created
    await created.close()


@dataclass
class Seed:
    """Rows as the router, the API and the adapters write them, with times in the past."""

    db: asyncpg.Pool
    domain: str = "acme"

    async def conversation(
        self, conversation_id: str, *, closed_days_ago: float | None, messages: int = 1
    ) -> None:
        await self.db.execute(
            "INSERT INTO conversations (domain, conversation_id, channel, customer_id,"
            " conversation_key, queue, status, opened_at, closed_at, record)"
            " VALUES ($1, $2, 'sms', 'sms:+15550001', $3, 'default', $4,"
            " now() - interval '60 days', now() - $5 * interval '1 day', '{}')",
            self.domain,
            conversation_id,
            f"key-{conversation_id}",
            "assigned" if closed_days_ago is None else "closed",
            closed_days_ago,
        )
        for number in range(messages):
            await self.message(f"{conversation_id}-m{number}", conversation_id)

    async def message(self, message_id: str, conversation_id: str, days_ago: float = 60) -> None:
        await self.db.execute(
            "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
            " text, attachments, occurred_at)"
            " VALUES ($1, $2, $3, 'inbound', 'sms', $4, $5::jsonb, now() - $6 * interval '1 day')",
            self.domain,
            message_id,
            conversation_id,
            BODY,
            ATTACHMENTS,
            days_ago,
        )

    async def assignment(self, assignment_id: str, conversation_id: str) -> None:
        await self.db.execute(
            "INSERT INTO assignments (domain, assignment_id, conversation_id, agent_id, strategy,"
            " step, waited_seconds, record) VALUES ($1, $2, $3, 'ann', 'preferred', 'preferred',"
            " 1.5, '{}')",
            self.domain,
            assignment_id,
            conversation_id,
        )

    async def outbound(
        self,
        outbound_id: str,
        conversation_id: str,
        *,
        kind: str = "reply",
        status: str = "sent",
        days_ago: float = 60,
    ) -> None:
        """A reply (its text in ``messages``), or a notification with its stored request."""
        request = BODY.encode() if kind == "notification" else None
        await self.db.execute(
            "INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel,"
            " agent_id, status, kind, request, created_at)"
            " VALUES ($1, $2, $3, 'sms', 'ann', $4, $5, $6, now() - $7 * interval '1 day')",
            self.domain,
            outbound_id,
            conversation_id,
            status,
            kind,
            request,
            days_ago,
        )
        await self.message(outbound_id, conversation_id, days_ago)

    async def agent_event(self, payload: dict[str, Any], days_ago: float) -> None:
        await self.db.execute(
            "INSERT INTO agent_events (domain, event_id, type, occurred_at, applied_at, payload)"
            " VALUES ($1, $2, $3, now() - $4 * interval '1 day', now() - $4 * interval '1 day',"
            " $5::jsonb)",
            self.domain,
            str(uuid.uuid4()),
            payload.get("type", "agent.presence_changed"),
            days_ago,
            json.dumps(payload),
        )

    async def consent_change(self, change_id: str, days_ago: float) -> None:
        await self.db.execute(
            "INSERT INTO consent_changes (domain, change_id, channel, address, customer_id,"
            " consent, source, changed_at) VALUES ($1, $2, 'sms', '+15550001', 'sms:+15550001',"
            " 'opt_out', 'keyword', now() - $3 * interval '1 day')",
            self.domain,
            change_id,
            days_ago,
        )

    async def dead_letters(self, count: int, days_ago: float, domain: str | None = "") -> None:
        await self.db.executemany(
            'INSERT INTO dead_letters (topic, partition, "offset", reason, key, value, domain,'
            " created_at) VALUES ('t.conversations.inbound', 0, $1, 'undecodable', $2, $3, $4,"
            " now() - $5 * interval '1 day')",
            [
                (number, b"acme", BODY.encode(), self.domain if domain == "" else domain, days_ago)
                for number in range(count)
            ],
        )


async def ids(db: asyncpg.Pool, sql: str, *args: Any) -> set[str]:
    return {row[0] for row in await db.fetch(sql, *args)}


async def bodies(db: asyncpg.Pool, conversation_id: str) -> set[tuple[str, str]]:
    """The distinct (text, attachments) of a conversation's messages."""
    rows = await db.fetch(
        "SELECT text, attachments::text AS a FROM messages WHERE domain = 'acme'"
        " AND conversation_id = $1",
        conversation_id,
    )
    return {(row["text"], json.dumps(json.loads(row["a"]), sort_keys=True)) for row in rows}


KEPT = {(BODY, json.dumps(json.loads(ATTACHMENTS), sort_keys=True))}
EMPTY = {("", "[]")}


async def one_pass(
    db: asyncpg.Pool, job: RetentionJobConfig = JOB, **domains: RetentionConfig
) -> dict[str | None, Pass]:
    passes = await run_pass(db, domains, job, actor="retention")
    return {p.domain: p for p in passes}


# -- Rule 2: routing_history ------------------------------------------------------------


async def test_routing_history_deletes_closed_conversations_with_their_history(
    pool: asyncpg.Pool,
) -> None:
    acme = Seed(pool)
    await acme.conversation("c-old", closed_days_ago=20, messages=35)
    await acme.assignment("a1", "c-old")
    await acme.assignment("a2", "c-old")
    await acme.outbound("r-old", "c-old")  # its text is a 36th message
    await acme.conversation("c-sending", closed_days_ago=20)
    await acme.outbound("r-sending", "c-sending", status="sending")  # still being sent
    await acme.conversation("c-recent", closed_days_ago=5)
    await acme.conversation("c-open", closed_days_ago=None, messages=3)  # open for 60 days
    await acme.assignment("a-open", "c-open")
    # business-started messages nobody answered: closed 30 days after they were sent
    await acme.outbound("n-old", "n-old-c", kind="notification", status="delivered", days_ago=45)
    await acme.outbound("n-young", "n-young-c", kind="notification", status="read", days_ago=35)
    await acme.outbound("n-queued", "n-queued-c", kind="notification", status="queued", days_ago=45)
    for _ in range(12):
        await acme.agent_event({"agent_id": "ann", "status": "online"}, days_ago=20)
    await acme.agent_event({"conversation_id": "c-old"}, days_ago=20)
    await acme.agent_event({"agent_id": "ann", "status": "away"}, days_ago=1)
    await acme.agent_event({"conversation_id": "c-open"}, days_ago=20)
    await acme.agent_event({"conversation_key": "key-c-open", "text": BODY}, days_ago=20)
    globex = Seed(pool, "globex")
    await globex.conversation("g-old", closed_days_ago=20)

    report = (
        await one_pass(
            pool, acme=RetentionConfig(routing_history=10 * DAY), globex=RetentionConfig()
        )
    )["acme"]

    assert await ids(pool, "SELECT conversation_id FROM conversations") == {
        "c-sending",
        "c-recent",
        "c-open",
        "g-old",
    }
    assert await ids(pool, "SELECT DISTINCT conversation_id FROM messages") == {
        "c-sending",
        "c-recent",
        "c-open",
        "n-young-c",
        "n-queued-c",
        "g-old",
    }
    assert await bodies(pool, "c-open") == KEPT
    assert await ids(pool, "SELECT assignment_id FROM assignments") == {"a-open"}
    assert await ids(pool, "SELECT outbound_id FROM outbound_messages") == {
        "r-sending",
        "n-young",
        "n-queued",
    }
    left = await pool.fetch("SELECT payload FROM agent_events ORDER BY seq")
    assert [json.loads(row["payload"]) for row in left] == [
        {"agent_id": "ann", "status": "away"},
        {"conversation_id": "c-open"},
        {"conversation_key": "key-c-open", "text": BODY},
    ]
    assert report.changed() == {
        "messages.deleted": 37,  # 35 + the reply of c-old + n-old's
        "assignments.deleted": 2,
        "outbound_messages.deleted": 2,
        "conversations.deleted": 1,
        "agent_events.deleted": 13,
    }
    # c-old's 36 messages in statements of at most 10 (10, 10, 10, 6), n-old's with itself
    assert report.statements["messages.deleted"] == 5
    assert report.statements["agent_events.deleted"] == 2  # 10, 3

    again = (await one_pass(pool, acme=RetentionConfig(routing_history=10 * DAY)))["acme"]
    assert again.changed() == {}


# -- Rule 1: message_bodies -------------------------------------------------------------


async def test_message_bodies_empty_closed_conversations_and_keep_their_rows(
    pool: asyncpg.Pool,
) -> None:
    acme = Seed(pool)
    await acme.conversation("c-closed", closed_days_ago=5, messages=12)
    await acme.outbound("n-answered", "c-closed", kind="notification", status="read")
    await acme.conversation("c-recent", closed_days_ago=1)
    await acme.conversation("c-open", closed_days_ago=None, messages=2)
    await acme.outbound("n-unanswered", "n-1", kind="notification", status="delivered", days_ago=35)
    await acme.outbound("n-answerable", "n-2", kind="notification", status="delivered", days_ago=20)
    before = await pool.fetchval("SELECT count(*) FROM messages")

    periods = RetentionConfig(message_bodies=2 * DAY)
    report = (await one_pass(pool, acme=periods))["acme"]

    assert await pool.fetchval("SELECT count(*) FROM messages") == before  # rows kept
    assert await bodies(pool, "c-closed") == EMPTY
    assert await bodies(pool, "n-1") == EMPTY
    for kept in ("c-recent", "c-open", "n-2"):
        assert await bodies(pool, kept) == KEPT, kept
    requests = {
        row["outbound_id"]: row["request"]
        for row in await pool.fetch("SELECT outbound_id, request FROM outbound_messages")
    }
    assert requests == {"n-answered": None, "n-unanswered": None, "n-answerable": BODY.encode()}
    assert report.changed() == {"messages.emptied": 14, "outbound_messages.emptied": 2}
    assert report.statements["messages.emptied"] == 3  # 10 and 3 of c-closed, n-unanswered's

    # the mark: the next pass reads only what closed since
    mark = await pool.fetchrow("SELECT * FROM retention_marks")
    assert (mark["domain"], mark["kind"], mark["conversation_id"]) == (
        "acme",
        "message_bodies",
        "c-closed",
    )
    await acme.conversation("c-later", closed_days_ago=3)
    again = (await one_pass(pool, acme=periods))["acme"]
    assert again.changed() == {"messages.emptied": 1}
    assert await bodies(pool, "c-later") == EMPTY


# -- Rules 3 to 5: consent history, dead letters, webhook tokens -------------------------


async def test_consent_history_dead_letters_and_expired_tokens(pool: asyncpg.Pool) -> None:
    acme = Seed(pool)
    await acme.consent_change("old-1", days_ago=20)
    await acme.consent_change("old-2", days_ago=20)
    await acme.consent_change("recent", days_ago=2)
    await acme.dead_letters(35, days_ago=2)
    await acme.dead_letters(1, days_ago=0)
    await Seed(pool, "globex").dead_letters(5, days_ago=2)
    await acme.dead_letters(3, days_ago=2, domain=None)  # its key named no domain
    await acme.dead_letters(2, days_ago=2, domain="initech")  # a domain not configured
    await pool.execute(
        "INSERT INTO webhook_nonces (provider, nonce, expires_at) VALUES"
        " ('mailgun', 'a', now() - interval '1 minute'), ('mailgun', 'b', now() - interval '1 day'),"
        " ('mailgun', 'c', now() + interval '5 minutes')"
    )
    periods = RetentionConfig(consent_history=10 * DAY, dead_letters=DAY)

    passes = await one_pass(pool, acme=periods, globex=RetentionConfig())

    assert await ids(pool, "SELECT change_id FROM consent_changes") == {"recent"}
    left = await pool.fetch("SELECT domain, count(*) FROM dead_letters GROUP BY domain")
    assert {row[0]: row[1] for row in left} == {"acme": 1, "globex": 5, None: 3, "initech": 2}
    assert passes["acme"].changed() == {"consent_changes.deleted": 2, "dead_letters.deleted": 35}
    assert passes["acme"].statements["dead_letters.deleted"] == 4  # 10, 10, 10, 5
    assert "globex" not in passes  # no period: no pass
    assert passes[None].changed() == {"webhook_nonces.deleted": 2}
    assert await ids(pool, "SELECT nonce FROM webhook_nonces") == {"c"}

    unowned = RetentionJobConfig(batch_size=10, batch_pause=0, unowned_dead_letters=DAY)
    passes = await one_pass(pool, unowned, acme=periods, globex=RetentionConfig())
    assert passes[None].changed() == {"dead_letters.deleted": 5}
    left = await pool.fetch("SELECT domain, count(*) FROM dead_letters GROUP BY domain")
    assert {row[0]: row[1] for row in left} == {"acme": 1, "globex": 5}

    entries = await pool.fetch(
        "SELECT actor, action, domain, target, detail::text AS detail FROM audit_log ORDER BY id"
    )
    assert [(e["actor"], e["action"], e["domain"], e["target"]) for e in entries] == [
        ("retention", "retention.expire", "acme", "domain acme"),
        ("retention", "retention.expire", None, "rows of no domain"),
    ]  # the tokens alone are not audited: no one's data; the second acme pass changed nothing
    assert json.loads(entries[0]["detail"]) == {
        "rows": {"consent_changes.deleted": 2, "dead_letters.deleted": 35},
        "periods": {"consent_history": 10 * DAY, "dead_letters": DAY},
    }
    assert json.loads(entries[1]["detail"]) == {
        "rows": {"dead_letters.deleted": 5},
        "periods": {"unowned_dead_letters": DAY},
    }
    assert BODY not in str([dict(e) for e in entries])


# -- The lock ------------------------------------------------------------------------------


async def test_of_two_concurrent_passes_one_does_a_domain(pool: asyncpg.Pool) -> None:
    await Seed(pool).dead_letters(35, days_ago=2)
    periods = RetentionConfig(dead_letters=DAY)
    slow = RetentionJobConfig(batch_size=10, batch_pause=0.1)  # holds the lock ~0.4 s

    first, second = await asyncio.gather(
        run_pass(pool, {"acme": periods}, slow, actor="retention"),
        run_pass(pool, {"acme": periods}, slow, actor="retention"),
    )

    acme = [p for p in (*first, *second) if p.domain == "acme"]
    assert sorted(p.busy for p in acme) == [False, True]
    assert sum(p.rows["dead_letters.deleted"] for p in acme) == 35
    assert sum(p.statements["dead_letters.deleted"] for p in acme) == 4
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0

    # a pass that holds the lock elsewhere (a router's) makes this one skip the domain
    await Seed(pool).dead_letters(3, days_ago=2)
    async with pool.acquire() as holder:
        assert await holder.fetchval(retention._TRY_LOCK, "acme")
        [busy, _] = await run_pass(pool, {"acme": periods}, JOB, actor="retention")
        assert (busy.domain, busy.busy, busy.rows.total()) == ("acme", True, 0)
        await holder.fetchval(retention._UNLOCK, "acme")
    [done, _] = await run_pass(pool, {"acme": periods}, JOB, actor="retention")
    assert done.changed() == {"dead_letters.deleted": 3}


# -- The indexes the expiry reads ------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "args", "index"),
    [
        (
            retention.CLOSED_SINCE_MARK,
            ("acme", "now", None, None, 10),
            "conversations_closed_by_time",
        ),
        (retention.CLOSED_EXPIRED, ("acme", "now", 10), "conversations_closed_by_time"),
        (retention.UNANSWERED_BODIES, ("acme", "now", 10), "outbound_notification_requests"),
        (retention.UNANSWERED_EXPIRED, ("acme", "now", 10), "outbound_notifications_by_time"),
        (retention.EXPIRED_AGENT_EVENTS, ("acme", "now", 10), "agent_events_by_time"),
        (retention.EXPIRED_CONSENT_CHANGES, ("acme", "now", 10), "consent_changes_by_time"),
        (retention.EXPIRED_DEAD_LETTERS, ("acme", "now", 10), "dead_letters_by_time"),
        (retention.CUSTOMERS_PAGE, ("acme", "", "now", 10), "customers_pkey"),
        (retention.OLD_ERASURES, ("now", 10), "erasures_by_age"),
        (
            "SELECT message_id FROM messages WHERE domain = $1 AND conversation_id = ANY($2::text[])"
            " LIMIT $3",
            ("acme", ["c1", "c2"], 10),
            "messages_of_conversation",
        ),
    ],
)
async def test_each_expiry_query_can_read_an_index(
    pool: asyncpg.Pool, query: str, args: tuple[Any, ...], index: str
) -> None:
    """With sequential scans off, the plan names the index: one exists that serves the
    query (on these empty tables the planner would rather scan). The messages are those of
    one domain, analyzed: on an empty table the primary key, which starts with the domain,
    looks as good as any index that does."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
            " occurred_at) SELECT 'acme', 'm' || i, 'c' || (i % 500), 'inbound', 'sms', now()"
            " FROM generate_series(1, 2000) i"
        )
        await conn.execute("ANALYZE messages")
        await conn.execute("SET enable_seqscan = off")
        values = [
            await conn.fetchval("SELECT now() - interval '1 day'") if a == "now" else a
            for a in args
        ]
        plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {query}", *values))
        await conn.execute("RESET enable_seqscan")
    assert index in plan, plan


# -- The routers' job under traffic ----------------------------------------------------


async def _close(service: Service, admin: dict[str, str], conversation_id: str) -> None:
    async with service.session.post(
        service.url(f"/v1/domains/acme/conversations/{conversation_id}/close"),
        json={},
        headers=admin,
    ) as response:
        assert response.status == 202, await response.text()


async def test_the_job_expires_closed_conversations_while_traffic_goes_on(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """A running service routes web chat visitors; three conversations close and are
    back-dated; the admin sets acme's periods through the configuration API; the job (every
    second, 10 rows a statement) empties and deletes them while new messages keep being
    routed, and never touches the open conversations."""
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"retention": {"interval": 1, "batch_size": 10, "batch_pause": 0.01}},
    )
    admin = {"Authorization": "Bearer retention-admin"}
    async with running_service(config, {"SWITCHBOARD_ADMIN_TOKEN": "retention-admin"}) as service:
        db = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
        assert db is not None
        try:
            await service.online_agent("ann", {"webchat": 50}, admin)

            async def send(visitor: str, text: str) -> str:
                status, answer = await service.webchat(
                    {"session_id": visitor, "message_id": str(uuid.uuid4()), "text": text}
                )
                assert status == 202, answer
                return str(answer["message_id"]) if "message_id" in answer else ""

            async def conversation_of(visitor: str) -> str:
                customer = (await service.visitor(visitor)).customer_id
                found: str = await wait_until(
                    lambda: db.fetchval(
                        "SELECT conversation_id FROM conversations WHERE domain = 'acme'"
                        " AND customer_id = $1 AND status = 'assigned'",
                        customer,
                    ),
                    what=f"{visitor}'s conversation assigned",
                )
                return found

            visitors = [f"v{n}" for n in range(5)]
            for visitor in visitors:
                for n in range(4):
                    await send(visitor, f"{BODY} ({visitor} #{n})")
            conversations = {v: await conversation_of(v) for v in visitors}
            await wait_until(
                lambda: db.fetchval("SELECT count(*) = 20 FROM messages WHERE domain = 'acme'"),
                what="the 20 messages stored",
            )
            # v0, v1 and v2 are done: their conversations close, and are made old
            for visitor in ("v0", "v1", "v2"):
                await _close(service, admin, conversations[visitor])
            closed = [conversations[v] for v in ("v0", "v1", "v2")]
            await wait_until(
                lambda: db.fetchval(
                    "SELECT count(*) = 3 FROM conversations WHERE conversation_id = ANY($1)"
                    " AND status = 'closed'",
                    closed,
                ),
                what="three conversations closed",
            )
            # v0 closed 30 days ago (history goes), v1 and v2 3 days ago (bodies go); v3's
            # open conversation started 30 days ago: it stays whole
            await db.execute(
                "UPDATE conversations SET closed_at = now() - interval '30 days',"
                " opened_at = now() - interval '31 days' WHERE conversation_id = $1",
                closed[0],
            )
            await db.execute(
                "UPDATE conversations SET closed_at = now() - interval '3 days'"
                " WHERE conversation_id = ANY($1)",
                closed[1:],
            )
            await db.execute(
                "UPDATE messages SET occurred_at = now() - interval '30 days'"
                " WHERE conversation_id = ANY($1)",
                [closed[0], conversations["v3"]],
            )
            # 35 more messages in v1's closed conversation: 4 statements of at most 10
            await db.executemany(
                "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
                " text, occurred_at) VALUES ('acme', $1, $2, 'inbound', 'webchat', $3,"
                " now() - interval '4 days')",
                [(f"extra-{n}", closed[1], BODY) for n in range(35)],
            )

            # traffic keeps coming while the admin sets the periods and the job runs
            stop = asyncio.Event()
            routed: list[str] = []

            async def traffic() -> None:
                number = 0
                while not stop.is_set():
                    visitor = f"live{number % 3}"
                    await send(visitor, f"still here #{number}")
                    routed.append(visitor)
                    number += 1
                    await asyncio.sleep(0.05)

            sender = asyncio.create_task(traffic())
            try:
                status, current, headers = await _call(
                    service, admin, "GET", "/v1/domains/acme/config"
                )
                assert status == 200
                too_short = {**current, "retention": {"routing_history": DAY}}
                status, body, _ = await _call(
                    service,
                    admin,
                    "PUT",
                    "/v1/domains/acme/config",
                    too_short,
                    {"If-Match": headers["ETag"]},
                )
                assert status == 400, body
                assert "retention.routing_history" in body["error"], body
                periods = {"message_bodies": 2 * DAY, "routing_history": 7 * DAY}
                status, body, _ = await _call(
                    service,
                    admin,
                    "PUT",
                    "/v1/domains/acme/config",
                    {**current, "retention": periods},
                    {"If-Match": headers["ETag"]},
                )
                assert status == 200, body
                assert [c["path"] for c in body["changes"]] == [
                    "domains.acme.retention.message_bodies",
                    "domains.acme.retention.routing_history",
                ]

                job = service.app[RETENTION_JOB]
                await wait_until(
                    lambda: db.fetchval(
                        "SELECT NOT EXISTS (SELECT 1 FROM conversations WHERE conversation_id = $1)"
                        " AND NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id = ANY($2)"
                        "                 AND text <> '')",
                        closed[0],
                        closed[1:],
                    ),
                    timeout=30,
                    what="the job's pass",
                )
                passes = job.passes
                await wait_until(lambda: job.passes > passes, what="one more pass")
                # the job passes every second: traffic meets its passes, however fast each is
                await wait_until(lambda: len(routed) >= 10, what="ten messages while it runs")
            finally:
                stop.set()
                await sender
            # the new messages kept being routed meanwhile, all of them
            live = [(await service.visitor(v)).customer_id for v in set(routed)]

            async def all_routed() -> bool:
                stored = await db.fetchval(
                    "SELECT count(*) FROM messages m JOIN conversations c USING (domain,"
                    " conversation_id) WHERE c.customer_id = ANY($1) AND c.status = 'assigned'",
                    live,
                )
                return bool(stored == len(routed))

            await wait_until(all_routed, what="every live message routed")
            assert len(routed) >= 10

            assert (
                await db.fetchval(
                    "SELECT count(*) FROM messages WHERE conversation_id = $1", closed[0]
                )
                == 0
            )
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM assignments WHERE conversation_id = $1", closed[0]
                )
                == 0
            )
            for conversation in closed[1:]:
                texts = await ids(
                    db, "SELECT text FROM messages WHERE conversation_id = $1", conversation
                )
                assert texts == {""}
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM messages WHERE conversation_id = $1", closed[1]
                )
                == 4 + 35
            )  # rows kept
            for visitor in ("v3", "v4"):
                texts = await ids(
                    db,
                    "SELECT text FROM messages WHERE conversation_id = $1",
                    conversations[visitor],
                )
                assert texts == {f"{BODY} ({visitor} #{n})" for n in range(4)}

            counted = _retention_rows(service)
            assert counted[("acme", "messages", "emptied")] == 8 + 35
            assert counted[("acme", "messages", "deleted")] == 4
            assert counted[("acme", "conversations", "deleted")] == 1
            entries = await db.fetch(
                "SELECT actor, detail::text AS detail FROM audit_log"
                " WHERE action = 'retention.expire'"
            )
            assert {e["actor"] for e in entries} == {"retention"}
            assert (
                sum(json.loads(e["detail"])["rows"].get("messages.emptied", 0) for e in entries)
                == 8 + 35
            )
        finally:
            await db.close()


async def _call(
    service: Any,
    headers: dict[str, str],
    method: str,
    path: str,
    body: Any = None,
    extra: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    async with service.session.request(
        method, service.url(path), json=body, headers={**headers, **(extra or {})}
    ) as response:
        data = await response.read()
        return response.status, (json.loads(data) if data else None), response.headers


def _retention_rows(service: Any) -> dict[tuple[str, str, str], float]:
    found = {}
    for family in service.metrics.registry.collect():
        if family.name == "switchboard_retention_rows":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    found[(labels["domain"], labels["kind"], labels["action"])] = sample.value
    return found


# -- switchboard retention run -----------------------------------------------------------


async def test_switchboard_retention_run_prints_the_counts(
    infrastructure: Infrastructure, database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    raw = make_raw_config(infrastructure.bootstrap_servers, database_url)
    raw["domains"] = {
        "acme": {"retention": {"dead_letters": DAY, "message_bodies": DAY}},
        "globex": {"retention": {"dead_letters": DAY}},
    }
    raw["retention"] = {"batch_size": 10}
    del raw["database"]  # from DATABASE_URL, as an operator runs it
    path = tmp_path / "switchboard.toml"
    path.write_text(to_toml(raw))
    await Seed(pool).dead_letters(12, days_ago=2)
    await Seed(pool, "globex").dead_letters(2, days_ago=2)
    await Seed(pool).conversation("c1", closed_days_ago=3, messages=2)
    environ = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database_url,
        "SWITCHBOARD_CONFIG": str(path),
        "SWITCHBOARD_LOG_FORMAT": "json",
    }

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "switchboard"), "retention", "run", *argv],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = await asyncio.to_thread(run, "--domain", "acme")
    assert done.returncode == 0, done.stderr
    assert msgspec.json.decode(done.stdout) == {
        "domains": {
            "acme": {
                "status": "done",
                "rows": {"dead_letters.deleted": 12, "messages.emptied": 2},
                # 10 and 2 dead letters; c1's messages, and its replies' requests (none)
                "statements": {
                    "dead_letters.deleted": 2,
                    "messages.emptied": 1,
                    "outbound_messages.emptied": 1,
                },
            }
        }
    }
    assert '"event":"retention_run"' in done.stderr
    assert BODY not in done.stderr
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 2  # globex's
    entry = await pool.fetchrow("SELECT actor, domain FROM audit_log")
    assert (entry["actor"], entry["domain"]) == ("cli", "acme")

    async with pool.acquire() as holder:  # a router's pass holds globex
        await holder.fetchval(retention._TRY_LOCK, "globex")
        busy = await asyncio.to_thread(run)
        await holder.fetchval(retention._UNLOCK, "globex")
    assert busy.returncode == 1
    out = msgspec.json.decode(busy.stdout)
    assert out["domains"]["globex"] == {"status": "busy"}
    assert out["domains"]["acme"]["rows"] == {}
    assert out["unowned"]["status"] == "done"

    unknown = await asyncio.to_thread(run, "--domain", "initech")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "switchboard: unknown domain 'initech'",
    )


async def test_quiet_customers_are_erased_and_their_opt_outs_kept(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """Rule 5 through the running service: of four web chat visitors, two have been quiet
    for longer than ``customer_identities`` (one with an opt-out), one wrote recently and
    one's conversation is still open. The routers' job erases the two quiet ones as the
    API would, keeps the opt-out, and leaves the others whole."""
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "retention": {"interval": 1, "batch_size": 2, "batch_pause": 0.01},
            "domains": {
                "acme": {
                    "webchat": {"enabled": True},
                    "retention": {"customer_identities": 30 * DAY},
                }
            },
        },
    )
    admin = {"Authorization": "Bearer retention-admin"}
    async with running_service(config, {"SWITCHBOARD_ADMIN_TOKEN": "retention-admin"}) as service:
        db = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
        assert db is not None
        try:
            await service.online_agent("ann", {"webchat": 50}, admin)
            profiles: dict[str, str] = {}
            for visitor in ("quiet", "opted-out", "recent", "open"):
                status, answer = await service.webchat(
                    {"session_id": visitor, "message_id": "m1", "text": f"{BODY} ({visitor})"}
                )
                assert status == 202, answer
                profiles[visitor] = (await service.visitor(visitor)).customer_id
            await wait_until(
                lambda: db.fetchval(
                    "SELECT count(*) = 4 FROM customers WHERE domain = 'acme'"
                    " AND customer_id = ANY($1)",
                    list(profiles.values()),
                ),
                what="four customers saved",
            )
            conversations = {
                visitor: await db.fetchval(
                    "SELECT conversation_id FROM conversations WHERE customer_id = $1", profile
                )
                for visitor, profile in profiles.items()
            }
            for visitor in ("quiet", "opted-out", "recent"):
                await _close(service, admin, conversations[visitor])
            await wait_until(
                lambda: db.fetchval(
                    "SELECT count(*) = 3 FROM conversations WHERE domain = 'acme'"
                    " AND status = 'closed'"
                ),
                what="three conversations closed",
            )
            old = [profiles["quiet"], profiles["opted-out"], profiles["open"]]
            await db.execute(
                "UPDATE customers SET updated_at = now() - interval '40 days'"
                " WHERE customer_id = ANY($1)",
                old,
            )
            await db.execute(
                "UPDATE conversations SET updated_at = now() - interval '40 days'"
                " WHERE customer_id = ANY($1)",
                old,
            )
            await db.execute(
                "INSERT INTO consents (domain, channel, address, customer_id, consent, source,"
                " changed_at) VALUES ('acme', 'sms', '+14155550123', $1, 'opt_out', 'api',"
                " now() - interval '60 days')",
                profiles["opted-out"],
            )
            # an erasure made long ago: what it deleted is kept 30 days, then purged
            await db.execute(
                "INSERT INTO erasures (domain, erasure_id, identities, conversation_ids,"
                " requested_by, requested_at, completed_at, erased) VALUES ('acme', 'old',"
                " '{}', '{}', 'x', now() - interval '31 days', now() - interval '31 days',"
                " '{}')"
            )

            quiet = [profiles["quiet"], profiles["opted-out"]]
            await wait_until(
                lambda: db.fetchval(
                    "SELECT count(*) = 2 FROM erasures WHERE completed_at IS NOT NULL"
                    " AND requested_by = 'retention'"
                ),
                timeout=30,
                what="two quiet customers erased",
            )
            rows = await db.fetch(
                "SELECT identities, keep_consents, erased::text AS erased FROM erasures"
                " WHERE requested_by = 'retention'"
            )
            assert all(row["keep_consents"] and row["identities"] == [] for row in rows)
            assert sorted(json.loads(row["erased"])["conversations"] for row in rows) == [1, 1]
            left = await db.fetch(
                "SELECT customer_id FROM customers WHERE domain = 'acme' ORDER BY customer_id"
            )
            assert {row["customer_id"] for row in left} == {profiles["recent"], profiles["open"]}
            assert not await db.fetchval(
                "SELECT count(*) FROM conversations WHERE customer_id = ANY($1)", quiet
            )
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM conversations WHERE customer_id = ANY($1)",
                    [profiles["recent"], profiles["open"]],
                )
                == 2
            )
            # the opt-out outlives the profile: a send to that address is still refused
            assert (
                await db.fetchval("SELECT consent FROM consents WHERE address = '+14155550123'")
                == "opt_out"
            )
            states = service.app[ROUTER_WORKER].domain_states()
            remembered = {c for state in states for c in state.customers}
            assert not remembered & set(quiet)
            assert profiles["open"] in remembered
            await wait_until(
                lambda: db.fetchval(
                    "SELECT NOT EXISTS (SELECT 1 FROM erasures WHERE erasure_id = 'old')"
                ),
                what="the old erasure purged",
            )
            # the walk reached the end of the customers: it starts over next time, and keeps
            # no one's id
            assert not await db.fetchval(
                "SELECT count(*) FROM retention_scans WHERE after = ANY($1)", quiet
            )
            erased = service.metrics.registry.get_sample_value(
                "switchboard_retention_rows_total",
                {"domain": "acme", "kind": "customers", "action": "erased"},
            )
            assert erased == 2
        finally:
            await db.close()
