"""The routers' workload job and ``switchboard workload`` (``runtime.workload_job``,
``tools.workload_cli``), sectioned by rule: one router measures a domain (the lock and the
mark), a database outage is retried, the CLI back-fills with progress and prints the
table, and a running service's job measures the traffic it routed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from runtime.metrics import Metrics
from runtime.workload import TRY_LOCK, WorkloadJobConfig, WorkloadRow, measure
from runtime.workload_job import Outcome, WorkloadJob
from switchboard.app import WORKLOAD_JOB
from tests.conftest import Infrastructure
from tests.integration.test_workload import stored
from tests.integration.workload_history import History, write_the_hour
from tests.readme.shell import BIN
from tests.support import (
    CuttableProxy,
    make_config,
    running_service,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

JOB = WorkloadJobConfig(interval=60, lookback=7200)
ADMIN = {"Authorization": "Bearer workload-admin"}


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert created is not None
    yield created
    await created.close()


async def last_half_hour(pool: asyncpg.Pool, domain: str) -> datetime:
    """A conversation of the last half hour, answered and closed; the database's now."""
    now: datetime = await pool.fetchval("SELECT now()")
    h = History(pool, domain)
    await h.conversation("r1", now - timedelta(minutes=30), closed=now - timedelta(minutes=5))
    await h.customer("r1", now - timedelta(minutes=30))
    await h.assignment(
        "r1-a", "r1", "ann", strategy="queue", waited=60, offered=now - timedelta(minutes=29),
        accepted=now - timedelta(minutes=29), ended=now - timedelta(minutes=5),
    )  # fmt: skip
    await h.reply("r1", "ann", now - timedelta(minutes=25))
    return now


def counted(metrics: Metrics, domain: str) -> float:
    value = metrics.registry.get_sample_value(
        "switchboard_workload_intervals_total", {"domain": domain}
    )
    return value or 0.0


# -- one router measures each domain -------------------------------------------------


async def test_of_two_routers_one_measures_each_domain(pool: asyncpg.Pool) -> None:
    now = await last_half_hour(pool, "acme")
    await last_half_hour(pool, "globex")
    routers = [Metrics(), Metrics()]
    jobs = [WorkloadJob(pool, m, JOB, lambda: ["acme", "globex"]) for m in routers]

    first, second = await asyncio.gather(jobs[0].run_once(), jobs[1].run_once())

    for domain in ("acme", "globex"):
        outcomes = [m.outcome for m in (*first, *second) if m.domain == domain]
        assert outcomes.count(Outcome.MEASURED) == 1, outcomes
        assert set(outcomes) - {Outcome.MEASURED} <= {Outcome.BUSY, Outcome.RECENT}
        async with pool.acquire() as conn:
            expected = await measure(conn, domain, now - timedelta(hours=2), now)
        assert await stored(pool, domain) == expected
        assert expected
        assert sum(counted(m, domain) for m in routers) == len(expected)
        assert sum(r.agent_replies for r in expected) == 1

    # measured less than 0.9 of an interval ago: both leave it
    again = [*(await jobs[0].run_once()), *(await jobs[1].run_once())]
    assert {m.outcome for m in again} == {Outcome.RECENT}

    # a router (or a back-fill) holding the lock: skipped, whatever the mark says
    await pool.execute("UPDATE workload_marks SET measured_at = now() - interval '1 hour'")
    async with pool.acquire() as holder, holder.transaction():
        assert await holder.fetchval(TRY_LOCK, "acme")
        busy = await jobs[0].run_once()
    assert [(m.domain, m.outcome) for m in busy] == [
        ("acme", Outcome.BUSY),
        ("globex", Outcome.MEASURED),
    ]
    [acme, _] = await jobs[1].run_once()
    assert (acme.outcome, acme.rows) == (Outcome.MEASURED, len(await stored(pool, "acme")))


async def test_a_database_outage_is_retried_at_the_next_run(database_url: str) -> None:
    proxy, proxied = await CuttableProxy.before_database(database_url)
    direct = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    through = await asyncpg.create_pool(proxied, min_size=0, max_size=2)
    assert direct is not None
    assert through is not None
    job = WorkloadJob(through, Metrics(), WorkloadJobConfig(interval=1), lambda: ["acme"])
    try:
        await last_half_hour(direct, "acme")
        proxy.cut()
        task = asyncio.create_task(job.run())
        await wait_until(lambda: job.failures >= 1, what="a failed run")
        assert job.runs == 0
        assert not task.done()
        proxy.restore()
        rows: list[WorkloadRow] = await wait_until(
            lambda: stored(direct, "acme"), what="the next run measuring acme"
        )
        assert sum(r.arrivals for r in rows) == 1
        job.stop()
        await task
    finally:
        job.stop()
        await through.close()
        await direct.close()
        await proxy.stop()


# -- switchboard workload --------------------------------------------------------------


def switchboard(environ: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "switchboard"), "workload", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_backfill_then_show_print_the_measured_hour(
    pool: asyncpg.Pool, cli_environ: dict[str, str]
) -> None:
    await write_the_hour(History(pool))
    fill = await asyncio.to_thread(
        switchboard, cli_environ, "backfill", "--domain", "acme", "--since", "2024-03-03",
        "--until", "2024-03-05",
    )  # fmt: skip
    assert fill.returncode == 0, fill.stderr
    lines = fill.stdout.splitlines()
    # From the day of the first conversation: 2024-03-03 holds none.
    assert lines[:2] == [
        "acme: 1/2 days (2024-03-04)",
        "acme: 2/2 days (2024-03-05)",
    ]
    assert lines[2].startswith("acme: measured 2 days (2024-03-04 to 2024-03-05), 7 rows, in ")
    assert len(lines) == 3

    show = await asyncio.to_thread(
        switchboard, cli_environ, "show", "--domain", "acme", "--interval", "60",
        "--from", "2024-03-04T09:00", "--to", "2024-03-04T11:00",
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    heading, nine, ten = show.stdout.splitlines()
    assert heading.split() == [
        "interval", "(UTC)", "arrivals", "assigned", "abandoned", "avg", "wait", "SL<=60s",
        "replies", "handle", "min", "1st", "reply", "next", "reply", "busy", "agents",
        "concurrency",
    ]  # fmt: skip
    # 230 s of waits over 3, 2 of 3 within 60 s, 1280 s of work, 460 s of first replies
    # over 4, 1620 s of next replies over 3, 4170 busy and 7330 owned agent-seconds
    assert nine.split() == [
        "2024-03-04", "09:00", "6", "3", "2", "76.7s", "67%", "9", "21.3", "115.0s", "540.0s",
        "1.16", "1.76",
    ]  # fmt: skip
    assert ten.split() == [
        "2024-03-04", "10:00", "0", "0", "0", "-", "-", "0", "0.0", "-", "-", "0.00", "-",
    ]  # fmt: skip

    unknown = await asyncio.to_thread(switchboard, cli_environ, "show", "--domain", "initech")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "switchboard: unknown domain 'initech'",
    )


async def test_backfill_draws_one_updating_line_in_a_terminal(
    pool: asyncpg.Pool, cli_environ: dict[str, str]
) -> None:
    await write_the_hour(History(pool))
    leader, follower = os.openpty()

    def run() -> int:
        with contextlib.closing(os.fdopen(follower, "wb")) as terminal:
            return subprocess.run(
                [str(BIN / "switchboard"), "workload", "backfill", "--domain", "acme",
                 "--since", "2024-03-04", "--until", "2024-03-06"],
                env=cli_environ, stdout=terminal, stderr=subprocess.DEVNULL, timeout=60,
                check=False,
            ).returncode  # fmt: skip

    assert await asyncio.to_thread(run) == 0
    output = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
        while chunk := os.read(leader, 65536):
            output += chunk
    os.close(leader)
    text = output.decode()
    assert text.count("\r") >= 3
    assert "\racme [##########....................] 1/3 days (2024-03-04)" in text
    assert "\racme [##############################] 3/3 days (2024-03-06)" in text
    assert "acme: measured 3 days (2024-03-04 to 2024-03-06), 7 rows" in text
    assert "measured\n" not in text.replace("\r\n", "\n")


# -- the job in a running service --------------------------------------------------------


async def test_a_running_router_measures_the_traffic_it_routes(
    infrastructure: Infrastructure, database_url: str, pool: asyncpg.Pool
) -> None:
    """Two web chat visitors reach ann through the service, she answers both; the job (every
    second) stores their arrivals, assignments and replies, and counts what it measured."""
    config = make_config(
        infrastructure.bootstrap_servers, database_url, {"workload": {"interval": 1}}
    )
    async with running_service(config, {"SWITCHBOARD_ADMIN_TOKEN": "workload-admin"}) as service:
        await service.online_agent("ann", {"webchat": 5}, ADMIN)
        conversations = []
        for visitor in ("v1", "v2"):
            status, answer = await service.webchat(
                {"session_id": visitor, "message_id": "1", "text": "Hello?"}
            )
            assert status == 202, answer
            conversations.append(answer["event_id"])
        await wait_until(
            lambda: pool.fetchval(
                "SELECT count(*) = 2 FROM conversations WHERE conversation_id = ANY($1)"
                " AND status = 'assigned'",
                conversations,
            ),
            what="both conversations assigned",
        )
        for conversation_id in conversations:
            async with service.session.post(
                service.url(f"/v1/domains/acme/conversations/{conversation_id}/reply"),
                json={"text": "On it."},
                headers=ADMIN,
            ) as response:
                assert response.status == 202, await response.text()

        async def measured() -> tuple[int, ...] | None:
            row = await pool.fetchrow(
                "SELECT sum(arrivals) AS a, sum(assigned) AS s, sum(agent_replies) AS r,"
                " sum(first_reply_count) AS f FROM workload_intervals"
                " WHERE domain = 'acme' AND queue = 'default' AND channel = 'webchat'"
            )
            figures = (row["a"], row["s"], row["r"], row["f"])
            return figures if figures == (2, 2, 2, 2) else None

        await wait_until(measured, what="the job's rows of both conversations")
        owned = await pool.fetchval(
            "SELECT sum(conversation_seconds) > 0 AND sum(busy_agent_seconds) > 0"
            " FROM workload_intervals WHERE domain = 'acme'"
        )
        assert owned
        job = service.app[WORKLOAD_JOB]
        assert job.runs >= 1
        assert counted(service.metrics, "acme") >= 1
