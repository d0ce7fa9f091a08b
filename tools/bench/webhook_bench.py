"""Webhook benchmark: the service as deployed, from a signed Twilio webhook to the routing
event, beside a raw pipeline doing the same essential work, in one run.

- Switchboard: ``switchboard adapters`` and ``switchboard router`` in two child processes
  (``tools.bench.adapters_process``: the real roles) on the embedded broker and
  PostgreSQL (or the ones named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``), a
  Twilio number of one domain configured, ``AGENTS`` agents online with capacity.
- raw: an aiohttp app checking the same signature with ``hmac``, producing with
  ``acks=all`` and answering after the ack; a consumer that COPYs each batch into
  PostgreSQL in one transaction and publishes one event per message
  (``tools.bench.webhook_processes``).

The load comes from a process of its own (``tools.bench.webhook_processes load``): open
loop at ``RATE`` for ``SECONDS`` after ``WARM_MESSAGES`` (not counted), in ``ROUNDS``
rounds per pipeline, alternating (figures: the median round's), ~``NEW_FRACTION``
of the messages from new customers, the others from customers who wrote before. Latency
runs from each request's due time to its routing event (Switchboard's
``message.routed``, recognised by its ``ce_id``, made from the MessageSid: nothing is
opened) or the raw consumer's event. CPU per message: each process's user + system time
(``/proc/<pid>/stat``) from the first request to the generator's end (the last event
read), warm-up included, divided by the messages sent; PostgreSQL's is the server's
(postmaster and every backend, ended ones included), the broker's its process's: on a
shared server they count other people's work too.

Nothing here is asserted: ``make bench`` prints the figures and stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import msgspec

from schemas import topics
from switchboard.cli import prepare
from switchboard.config import Config
from switchboard.embedded import free_port
from tools.bench.campaign_bench import AdaptersProcess
from tools.bench.e2e_bench import (
    Services,
    create_topics,
    drop_database,
    fresh_database,
    register_agents,
    service_sections,
    services,
)
from tools.bench.webhook_processes import SENDING, LoadFigures, LoadSettings, RawSettings

RATE = 300.0
SECONDS = 10.0
ROUNDS = 3
"""Rounds per pipeline: on a shared machine one round can meet a burst of other work;
the figures are the median round's."""
WARM_MESSAGES = 1_000
NEW_FRACTION = 0.3
AGENTS = 200
CAPACITY = 20
"""Conversations each agent takes at once: enough that every new one is assigned."""

DOMAIN = "bench"
NUMBER = "+15550001000"
ACCOUNT = "AC" + "0" * 31 + "2"
TOKEN = "bench-twilio-token"  # noqa: S105 - the benchmark's own, on loopback
ENVIRON = {"TWILIO_AUTH_TOKEN": TOKEN}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Outcome:
    load: LoadFigures
    cpu_seconds: dict[str, float]
    """Per process kind: ``ingress``, ``consumer``, ``postgres``, ``broker``."""


# -- CPU time of processes -----------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state is [0])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def own_cpu(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICKS


def server_cpu(pid: int | None) -> float:
    """A server's CPU seconds: its own, its children's that ended (cutime, cstime) and its
    living children's (PostgreSQL's backends and workers)."""
    if pid is None or (fields := _stat(pid)) is None:
        return 0.0
    total = sum(int(value) for value in fields[11:15]) / TICKS
    for entry in Path("/proc").iterdir():
        child = _stat(int(entry.name)) if entry.name.isdigit() else None
        if child is not None and int(child[1]) == pid:
            total += (int(child[11]) + int(child[12])) / TICKS
    return total


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (None: none of ours can be seen)."""
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in sockets:
                        return int(entry.name)
    return None


def infrastructure_pids(services: Services) -> dict[str, int | None]:
    broker_port = int(services.bootstrap.split(",")[0].rsplit(":", 1)[1])
    return {
        "postgres": listening_pid(urlsplit(services.server_url).port or 5432),
        "broker": listening_pid(broker_port),
    }


def cpu_snapshot(processes: dict[str, int], servers: dict[str, int | None]) -> dict[str, float]:
    return {
        **{name: own_cpu(pid) for name, pid in processes.items()},
        **{name: server_cpu(pid) for name, pid in servers.items()},
    }


# -- processes -------------------------------------------------------------------------------


class RouterProcess(AdaptersProcess):
    """``switchboard router``: the router role in a child process."""

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.bench.adapters_process",
                    self.config.decode(),
                    "router",
                ],
                env={**os.environ, **ENVIRON},
                stdout=log,
                stderr=subprocess.STDOUT,
            )


@contextlib.contextmanager
def child(kind: str, settings: msgspec.Struct, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``tools.bench.webhook_processes KIND``, terminated on the way out."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.bench.webhook_processes",
                kind,
                msgspec.json.encode(settings).decode(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{log.name} exited ({process.returncode}): see {log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/"):
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{log.name} not listening after 60 s")


async def measure(
    services: Services,
    processes: dict[str, int],
    settings: LoadSettings,
) -> Outcome:
    """The load, with the CPU time of ``processes`` and the servers around it."""
    servers = infrastructure_pids(services)
    load = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.bench.webhook_processes",
        "load",
        msgspec.json.encode(settings).decode(),
        stdout=asyncio.subprocess.PIPE,
    )
    assert load.stdout is not None
    # From the first request: the generator's start-up is not the services' load.
    first = await asyncio.wait_for(load.stdout.readline(), 120)
    before = cpu_snapshot(processes, servers)
    if first.strip() != SENDING.encode():
        await load.wait()
        raise RuntimeError(f"the load generator did not start ({load.returncode})")
    out, _ = await asyncio.wait_for(load.communicate(), SECONDS * 4 + 300)
    after = cpu_snapshot(processes, servers)
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed ({load.returncode})")
    figures = msgspec.json.decode(out.splitlines()[-1], type=LoadFigures)
    if not figures.accepted or not figures.routed:
        raise RuntimeError(f"{figures.accepted} webhooks accepted, {figures.routed} routed")
    return Outcome(figures, {name: after[name] - before[name] for name in after})


def load_settings(port: int, topic: str, bootstrap: str, **matching: Any) -> LoadSettings:
    return LoadSettings(
        url=f"http://127.0.0.1:{port}/webhooks/twilio/sms",
        token=TOKEN,
        account_sid=ACCOUNT,
        number=NUMBER,
        domain=DOMAIN,
        rate=RATE,
        warm=WARM_MESSAGES,
        measured=round(RATE * SECONDS),
        new_fraction=NEW_FRACTION,
        bootstrap=bootstrap,
        topic=topic,
        **matching,
    )


# -- the two pipelines -----------------------------------------------------------------------


async def bench_raw(services: Services, directory: Path) -> Outcome:
    url = await fresh_database(services)
    try:
        tag = uuid.uuid4().hex[:6]
        source, sink = f"rawhook{tag}.in", f"rawhook{tag}.out"
        await create_topics(services.bootstrap, [source, sink])
        port = free_port()
        common = {"token": TOKEN, "domain": DOMAIN, "bootstrap": services.bootstrap}
        app_log, consumer_log = directory / "raw-app.log", directory / "raw-consumer.log"
        with (
            child("raw-app", RawSettings(port=port, topic=source, **common), app_log) as app,
            child(
                "raw-consumer",
                RawSettings(port=0, topic=source, sink=sink, url=url, **common),
                consumer_log,
            ) as consumer,
        ):
            await wait_listening(port, app, app_log)
            conn = await asyncpg.connect(url)
            try:
                # The consumer makes its table once connected: then it is started.
                while not await conn.fetchval("SELECT to_regclass('raw_messages') IS NOT NULL"):
                    if consumer.poll() is not None:
                        raise RuntimeError(f"raw consumer exited: see {consumer_log}")
                    await asyncio.sleep(0.1)
            finally:
                await conn.close()
            await asyncio.sleep(1)
            return await measure(
                services,
                {"ingress": app.pid, "consumer": consumer.pid},
                load_settings(port, sink, services.bootstrap, match_header="sid"),
            )
    finally:
        await drop_database(services, url)


def switchboard_config(services: Services, url: str) -> dict[str, Any]:
    return {
        **service_sections(services, url, "webhook", 10),
        "domains": {DOMAIN: {}},
        "channels": {
            "twilio": {"account_sid": ACCOUNT, "numbers": [{"number": NUMBER, "domain": DOMAIN}]}
        },
    }


async def bench_switchboard(services: Services, directory: Path) -> Outcome:
    url = await fresh_database(services)
    adapters: AdaptersProcess | None = None
    router: RouterProcess | None = None
    try:
        raw = switchboard_config(services, url)
        config = msgspec.convert(raw, Config)
        await prepare(config, ENVIRON)
        adapters = AdaptersProcess(raw, directory, "adapters")
        router = RouterProcess(raw, directory, "router")
        adapters.start()
        router.start()
        await asyncio.gather(adapters.wait_ready(), router.wait_ready())
        await register_agents(config, DOMAIN, AGENTS, CAPACITY)
        await asyncio.sleep(2)  # the router applies the agents' presence
        assert adapters.process is not None
        assert router.process is not None
        return await measure(
            services,
            {"ingress": adapters.process.pid, "consumer": router.process.pid},
            load_settings(
                adapters.port,
                config.topic(topics.ROUTING),
                services.bootstrap,
                match_header="ce_id",
                match_type="message.routed",
            ),
        )
    finally:
        for process in (adapters, router):
            if process is not None:
                process.terminate()
        await drop_database(services, url)


PROCESS_KINDS = ("ingress", "consumer", "postgres", "broker")


def side_figures(prefix: str, rounds: list[Outcome]) -> dict[str, float]:
    """One pipeline's figures: each the median of its rounds'; counts summed; the worst
    round's p99 beside the median."""
    loads = [outcome.load for outcome in rounds]
    result = {
        f"{prefix}_accepted": float(sum(load.accepted for load in loads)),
        f"{prefix}_routed": float(sum(load.routed for load in loads)),
        f"{prefix}_accept_p50_ms": statistics.median(load.accept_p50_ms for load in loads),
        f"{prefix}_accept_p99_ms": statistics.median(load.accept_p99_ms for load in loads),
        f"{prefix}_p50_ms": statistics.median(load.routed_p50_ms for load in loads),
        f"{prefix}_p99_ms": statistics.median(load.routed_p99_ms for load in loads),
        f"{prefix}_p99_ms_worst_round": max(load.routed_p99_ms for load in loads),
    }
    for kind in PROCESS_KINDS:
        result[f"{prefix}_{kind}_cpu_us_per_message"] = statistics.median(
            outcome.cpu_seconds[kind] / outcome.load.sent * 1e6 for outcome in rounds
        )
    result[f"{prefix}_total_cpu_us_per_message"] = statistics.median(
        sum(outcome.cpu_seconds[kind] for kind in PROCESS_KINDS) / outcome.load.sent * 1e6
        for outcome in rounds
    )
    return {name: round(value, 2) for name, value in result.items()}


def figures(raw: list[Outcome], ours: list[Outcome]) -> dict[str, float]:
    def ratio(name: str) -> float:
        mine, theirs = result[f"webhook_{name}"], result[f"webhook_raw_{name}"]
        return round(mine / theirs, 3) if theirs > 0 else 0.0

    result: dict[str, float] = {
        "webhook_rate_per_s": RATE,
        "webhook_seconds": SECONDS,
        "webhook_rounds": float(ROUNDS),
        "webhook_measured_messages": float(round(RATE * SECONDS) * ROUNDS),
        "webhook_new_customer_fraction": NEW_FRACTION,
        **side_figures("webhook_raw", raw),
        **side_figures("webhook", ours),
    }
    for kind in (*PROCESS_KINDS, "total"):
        result[f"webhook_{kind}_cpu_ratio_to_raw"] = ratio(f"{kind}_cpu_us_per_message")
    result["webhook_p50_ratio_to_raw"] = ratio("p50_ms")
    result["webhook_p99_ratio_to_raw"] = ratio("p99_ms")
    return result


async def run_webhook_bench_async() -> dict[str, float]:
    """``ROUNDS`` rounds, raw and Switchboard alternating, each on fresh processes,
    database and topics: what else the machine does then weighs on both sides alike."""
    directory = Path(tempfile.mkdtemp(prefix="switchboard-webhook-"))
    raw: list[Outcome] = []
    ours: list[Outcome] = []
    async with services() as running:
        for _ in range(ROUNDS):
            raw.append(await bench_raw(running, directory))
            ours.append(await bench_switchboard(running, directory))
    return figures(raw, ours)


def run_webhook_bench() -> dict[str, float]:
    return asyncio.run(run_webhook_bench_async())


if __name__ == "__main__":
    for key, value in run_webhook_bench().items():
        print(f"{key:44} {value}")
