"""Campaign benchmark: a business-started campaign paced by the adapters' sender, measured
where the customer would see it, at the provider.

``MESSAGES`` SMS notifications, spread over ``SENDERS`` Twilio numbers, are queued the way
the API queues them (``outbound_messages`` rows, ``queued``), and ``PROCESSES`` adapter
processes (``tools.bench.adapters_process``: the real adapters role) send them at
``RATE`` per second per number (burst ``BURST``) to a Twilio stand-in on loopback
(``tools.bench.providers``, answering after ``PROVIDER_DELAY``) that keeps each message's
receive time. Two runs, each on a fresh database:

- steady: the whole campaign. Figures: the rate achieved per number (first to last
  receive; and after the first second, without the initial burst) against the configured
  one, the most messages one number sent in any 1 s window against the bucket's bound
  (burst + rate x 1 s), duplicates (a customer receiving a message twice) and losses (a
  customer receiving none).
- restart: every adapter process is killed (SIGKILL) when half the campaign is out and
  new ones are started: claims under way wait for their lease, then are sent again.
  Twilio takes no idempotency key (nor does the stand-in): a claim whose request reached
  it before the kill is received twice. Figures: duplicates, losses, the claims under way
  at the kill, duplicates of anything else (a row recorded as sent and sent again), and the
  duration.

Nothing here is asserted: ``make bench`` prints the figures and stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
from aiohttp import web

from schemas import Answerer, Channel, NotificationRequested
from switchboard.cli import prepare
from switchboard.config import Config
from switchboard.embedded import free_port
from tools.bench.e2e_bench import (
    Services,
    drop_database,
    fresh_database,
    service_sections,
    services,
)
from tools.bench.providers import FakeProviders, Received

MESSAGES = 10_000
SENDERS = 4
RATE = 200.0
BURST = 50
PROCESSES = 3
PROVIDER_DELAY = 0.05
"""Seconds the stand-in takes to answer: a provider's round trip."""
DEADLINE = 180.0
"""Seconds a run may take before the benchmark gives up on it."""

ACCOUNT = "AC" + "0" * 31 + "1"
DOMAIN = "bench"
ENVIRON = {"TWILIO_AUTH_TOKEN": "bench-twilio-token"}


@dataclass
class Run:
    fake: FakeProviders
    seconds: float
    statuses: dict[str, int]
    claimed_at_kill: frozenset[str] = frozenset()
    """The addresses of the rows claimed (``sending``) when the processes were killed."""


def numbers() -> list[str]:
    return [f"+1555000{n:04d}" for n in range(SENDERS)]


def raw_config(services: Services, url: str, provider: str) -> dict[str, Any]:
    return {
        **service_sections(services, url, "campaign", 10),
        "domains": {DOMAIN: {"outbound": {"rates": {"sms": {"per_second": RATE, "burst": BURST}}}}},
        "channels": {
            "twilio": {
                "account_sid": ACCOUNT,
                "api_base_url": provider,
                "numbers": [{"number": n, "domain": DOMAIN} for n in numbers()],
            }
        },
    }


async def queue_campaign(url: str) -> None:
    """``MESSAGES`` notifications, as the API writes them, in one transaction."""
    now = time.time()
    senders = numbers()
    outbound: list[tuple[object, ...]] = []
    history: list[tuple[object, ...]] = []
    for index in range(MESSAGES):
        address = f"+1666{index:07d}"
        notification = NotificationRequested(
            id=str(uuid.uuid4()),
            domain=DOMAIN,
            occurred_at=now,
            conversation_id=str(uuid.uuid4()),
            customer_id=f"phone:{address}",
            channel=Channel.SMS,
            endpoint=senders[index % SENDERS],
            customer_address=address,
            text="Your appointment is tomorrow at 10:00. Reply to change it.",
            campaign_id="reminders",
            answer=Answerer(until=now + 72 * 3600),
        )
        outbound.append(
            (
                DOMAIN,
                notification.id,
                notification.conversation_id,
                "sms",
                "queued",
                "notification",
                notification.customer_id,
                notification.endpoint,
                "reminders",
                msgspec.json.encode(notification),
            )
        )
        history.append(
            (
                DOMAIN,
                notification.id,
                notification.conversation_id,
                "outbound",
                "sms",
                notification.text,
                "queued",
                datetime.fromtimestamp(now, UTC),
            )
        )
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO campaigns (domain, campaign_id, status, created_by)"
                " VALUES ($1, 'reminders', 'running', 'bench')",
                DOMAIN,
            )
            await conn.copy_records_to_table(
                "outbound_messages",
                records=outbound,
                columns=[
                    "domain",
                    "outbound_id",
                    "conversation_id",
                    "channel",
                    "status",
                    "kind",
                    "customer_id",
                    "endpoint",
                    "campaign_id",
                    "request",
                ],
            )
            await conn.copy_records_to_table(
                "messages",
                records=history,
                columns=[
                    "domain",
                    "message_id",
                    "conversation_id",
                    "direction",
                    "channel",
                    "text",
                    "status",
                    "occurred_at",
                ],
            )
    finally:
        await conn.close()


class AdaptersProcess:
    """``tools.bench.adapters_process`` in a child process."""

    def __init__(self, raw: dict[str, Any], directory: Path, name: str) -> None:
        self.port = free_port()
        self.config = msgspec.json.encode({**raw, "http": {"host": "127.0.0.1", "port": self.port}})
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tools.bench.adapters_process", self.config.decode()],
                env={**os.environ, **ENVIRON},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"adapters exited: {self.log_path.read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"adapters not ready after {timeout} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


@contextlib.asynccontextmanager
async def provider_standin() -> AsyncIterator[tuple[FakeProviders, str]]:
    fake = FakeProviders(delay=PROVIDER_DELAY)
    runner = web.AppRunner(fake.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def start_all(raw: dict[str, Any], directory: Path, tag: str) -> list[AdaptersProcess]:
    started = [AdaptersProcess(raw, directory, f"{tag}{n}") for n in range(PROCESSES)]
    for process in started:
        process.start()
    await asyncio.gather(*(process.wait_ready() for process in started))
    return started


async def run_campaign(services: Services, *, restart: bool) -> Run:
    url = await fresh_database(services)
    directory = Path(tempfile.mkdtemp(prefix="switchboard-campaign-"))
    processes: list[AdaptersProcess] = []
    try:
        async with provider_standin() as (fake, base):
            raw = raw_config(services, url, base)
            await prepare(msgspec.convert(raw, Config), ENVIRON)
            await queue_campaign(url)
            started = time.monotonic()
            processes = await start_all(raw, directory, "adapters")
            if restart:
                while len(fake.delivered) < MESSAGES // 2:
                    await asyncio.sleep(0.01)
                    if time.monotonic() - started > DEADLINE:
                        raise RuntimeError("the campaign did not reach its middle")
                for process in processes:
                    process.kill()
                claimed = await claims_under_way(url)
                processes = await start_all(raw, directory, "restarted")
            conn = await asyncpg.connect(url)
            try:
                while await conn.fetchval(
                    "SELECT count(*) FROM outbound_messages WHERE status IN ('queued', 'sending')"
                ):
                    if time.monotonic() - started > DEADLINE:
                        raise RuntimeError(f"the campaign did not finish in {DEADLINE} s")
                    await asyncio.sleep(0.2)
                rows = await conn.fetch(
                    "SELECT status, count(*) AS n FROM outbound_messages GROUP BY status"
                )
            finally:
                await conn.close()
            seconds = time.monotonic() - started
            for process in processes:
                process.terminate()
            # The processes' logs: kept only when the run failed (the exception leaves them).
            shutil.rmtree(directory, ignore_errors=True)
            statuses = {row["status"]: row["n"] for row in rows}
            return Run(fake, seconds, statuses, claimed if restart else frozenset())
    finally:
        for process in processes:
            process.kill()
        await drop_database(services, url)


async def claims_under_way(url: str) -> frozenset[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT customer_id FROM outbound_messages WHERE status = 'sending'"
        )
    finally:
        await conn.close()
    return frozenset(row["customer_id"].removeprefix("phone:") for row in rows)


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most receive times within any ``window`` seconds."""
    ordered = sorted(times)
    best = first = 0
    for last, at in enumerate(ordered):
        while at - ordered[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return best


def by_sender(delivered: Sequence[Received]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = defaultdict(list)
    for message in delivered:
        times[message.sender].append(message.at)
    return {sender: sorted(found) for sender, found in times.items()}


def duplicates_and_losses(fake: FakeProviders) -> tuple[int, int]:
    received = fake.delivered_to()
    return sum(count - 1 for count in received.values()), MESSAGES - len(received)


def steady_figures(run: Run) -> dict[str, float]:
    times = by_sender(run.fake.delivered)
    achieved = [(len(t) - 1) / (t[-1] - t[0]) for t in times.values() if t[-1] > t[0]]
    steady = [
        sum(1 for at in t if at > t[0] + 1) / (t[-1] - t[0] - 1)
        for t in times.values()
        if t[-1] - t[0] > 1
    ]
    every = sorted(message.at for message in run.fake.delivered)
    duplicates, losses = duplicates_and_losses(run.fake)
    return {
        "campaign_messages": float(MESSAGES),
        "campaign_senders": float(SENDERS),
        "campaign_adapter_processes": float(PROCESSES),
        "campaign_configured_per_sender_per_s": RATE,
        "campaign_achieved_per_sender_per_s": round(sum(achieved) / max(1, len(achieved)), 1),
        "campaign_steady_per_sender_per_s": round(sum(steady) / max(1, len(steady)), 1),
        "campaign_achieved_total_per_s": round(
            (len(every) - 1) / max(1e-9, every[-1] - every[0]), 1
        ),
        "campaign_max_1s_window_per_sender": float(max(max_in_window(t) for t in times.values())),
        "campaign_bound_1s_window_per_sender": BURST + RATE,
        "campaign_seconds": round(every[-1] - every[0], 2),
        "campaign_duplicates": float(duplicates),
        "campaign_losses": float(losses),
        "campaign_not_sent": float(sum(n for s, n in run.statuses.items() if s != "sent")),
    }


def restart_figures(run: Run) -> dict[str, float]:
    duplicates, losses = duplicates_and_losses(run.fake)
    times = by_sender(run.fake.delivered)
    return {
        "campaign_restart_seconds": round(run.seconds, 2),
        "campaign_restart_duplicates": float(duplicates),
        "campaign_restart_losses": float(losses),
        "campaign_restart_claimed_at_kill": float(len(run.claimed_at_kill)),
        "campaign_restart_duplicates_of_unclaimed": float(
            sum(
                count - 1
                for address, count in run.fake.delivered_to().items()
                if address not in run.claimed_at_kill
            )
        ),
        "campaign_restart_max_1s_window_per_sender": float(
            max(max_in_window(t) for t in times.values())
        ),
        "campaign_restart_not_sent": float(sum(n for s, n in run.statuses.items() if s != "sent")),
    }


async def run_campaign_bench_async() -> dict[str, float]:
    async with services() as running:
        steady = await run_campaign(running, restart=False)
        restarted = await run_campaign(running, restart=True)
    return {**steady_figures(steady), **restart_figures(restarted)}


def run_campaign_bench() -> dict[str, float]:
    return asyncio.run(run_campaign_bench_async())


if __name__ == "__main__":
    for key, value in run_campaign_bench().items():
        print(f"{key:44} {value}")
