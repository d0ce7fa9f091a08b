"""Webhook benchmark: the service as deployed, from a signed Twilio webhook to the routing
event, beside a raw pipeline doing the same essential work, in one run.

Three sides (``SIDES``):

- ``split``: ``switchboard adapters`` and ``switchboard router`` in two child processes
  (``tools.bench.adapters_process``: the real roles) on the embedded broker and
  PostgreSQL (or the ones named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``), a
  Twilio number of one domain configured, ``AGENTS`` agents online with capacity;
- ``run``: both roles in one process, as ``switchboard run`` serves them;
- ``raw``: an aiohttp app checking the same signature with ``hmac``, producing with
  ``acks=all`` and answering after the ack; a consumer that COPYs each batch into
  PostgreSQL in one transaction and publishes one event per message
  (``tools.bench.webhook_processes``).

The load comes from a process of its own (``tools.bench.webhook_processes load``): open
loop at ``RATE`` for ``SECONDS`` after ``WARM_MESSAGES`` (not counted), in ``ROUNDS``
rounds per side, alternating, each on fresh processes (figures: the median round's),
~``NEW_FRACTION`` of the messages from new customers, the others from customers who wrote
before. Latency runs from each request's due time to its routing event (Switchboard's
``message.routed``, recognised by its ``ce_id``, made from the MessageSid: nothing is
opened) or the raw consumer's event. CPU per message: each process's user + system time
(``/proc/<pid>/stat``) from the first request to the generator's end (the last event
read), warm-up included, divided by the messages sent; PostgreSQL's is the server's
(postmaster and every backend, ended ones included), the broker's its process's: on a
shared server they count other people's work too. The generator reports its own over the
same span: it shares the cores, and is not part of any side's total.

Then each side's maximum sustained rate (``max_sustained_rate``): probes of
``PROBE_SECONDS``, each on fresh processes and topics, up by ``PROBE_STEP`` from
``PROBE_START`` while sustained, then bisected; a rate is sustained when ≥ 99.5 % of its
webhooks are answered 2xx, every message is routed and the p99 webhook → routing event is
within ``SUSTAINED_P99_MS``. Over the probes, the routing process's resident memory per
open conversation (``bytes_per_conversation``); from the probe that sustained the maximum,
the cores the pipeline and the generator kept busy (``max_rate_figures``).

Nothing here is asserted: ``make bench`` prints the figures and stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import msgspec

from schemas import topics
from switchboard.app import Role
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
CAPACITY = 100
"""Conversations each agent takes at once: enough that every new one is assigned, in
the maximum-rate probes too (this measures the pipeline, not waiting lines)."""
PROBE_START = 400.0
PROBE_STEP = 1.5
PROBE_CEILING = 8_000.0
PROBE_REFINE = 2
PROBE_SECONDS = 5.0
PROBE_TIMEOUT = 10.0
"""Seconds a probe waits for routing events after its last request."""
SUSTAINED_P99_MS = 500.0

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

    def total_us(self) -> float:
        """The pipeline's processes together, in µs per message sent."""
        return per_message_us(sum(self.cpu_seconds.values()), self.load)

    def generator_us(self) -> float:
        """The load generator's own, in µs per message sent."""
        return per_message_us(self.load.cpu_seconds, self.load)


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


class ServiceProcess(AdaptersProcess):
    """``tools.bench.adapters_process`` running the given roles: ``adapters``, ``router``,
    or both (``switchboard run``)."""

    def __init__(
        self, raw: dict[str, Any], directory: Path, name: str, roles: tuple[Role, ...]
    ) -> None:
        super().__init__(raw, directory, name)
        self.roles = roles

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.bench.adapters_process",
                    self.config.decode(),
                    *self.roles,
                ],
                env={**os.environ, **ENVIRON},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


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


def resident_bytes(pid: int) -> int:
    """A process's resident set (``VmRSS``), 0 when it cannot be read."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# -- the pipelines ---------------------------------------------------------------------------


@dataclass
class Pipeline:
    """One side's processes, started and ready on a fresh database and topics."""

    services: Services
    database_url: str
    processes: dict[str, int]
    """Process kind (``ingress``, ``consumer``; ``service`` for ``switchboard run``) to pid."""
    load: LoadSettings
    """The load's settings at ``RATE``; a probe replaces rate and counts."""
    router: int | None = None
    """The process holding the routing state, whose memory is measured."""


@contextlib.asynccontextmanager
async def raw_pipeline(services: Services, directory: Path) -> AsyncIterator[Pipeline]:
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
            yield Pipeline(
                services,
                url,
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


@contextlib.asynccontextmanager
async def switchboard_pipeline(
    services: Services, directory: Path, *, together: bool
) -> AsyncIterator[Pipeline]:
    """``switchboard adapters`` and ``switchboard router`` in two processes, or (``together``)
    both roles in one, as ``switchboard run`` serves them."""
    url = await fresh_database(services)
    started: list[ServiceProcess] = []
    try:
        raw = switchboard_config(services, url)
        config = msgspec.convert(raw, Config)
        await prepare(config, ENVIRON)
        if together:
            started = [ServiceProcess(raw, directory, "run", (Role.ADAPTERS, Role.ROUTER))]
            kinds = {"service": started[0]}
        else:
            started = [
                ServiceProcess(raw, directory, "adapters", (Role.ADAPTERS,)),
                ServiceProcess(raw, directory, "router", (Role.ROUTER,)),
            ]
            kinds = {"ingress": started[0], "consumer": started[1]}
        for process in started:
            process.start()
        await asyncio.gather(*(process.wait_ready() for process in started))
        await register_agents(config, DOMAIN, AGENTS, CAPACITY)
        await agents_online(url, AGENTS)
        yield Pipeline(
            services,
            url,
            {kind: process.pid for kind, process in kinds.items()},
            load_settings(
                started[0].port,
                config.topic(topics.ROUTING),
                services.bootstrap,
                match_header="ce_id",
                match_type="message.routed",
            ),
            router=started[-1].pid,
        )
    finally:
        for process in started:
            process.terminate()
        await drop_database(services, url)


async def agents_online(url: str, expected: int, timeout: float = 60.0) -> None:
    """Until the router has applied ``expected`` agents' presence: it stores each agent in
    the transaction of the batch that applied it."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout
        query = "SELECT count(*) FROM agents WHERE domain = $1 AND presence = 'online'"
        while (online := await conn.fetchval(query, DOMAIN)) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{online} of {expected} agents online after {timeout} s")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


SIDES: dict[str, Callable[[Services, Path], contextlib.AbstractAsyncContextManager[Pipeline]]] = {
    "raw": raw_pipeline,
    "split": functools.partial(switchboard_pipeline, together=False),
    "run": functools.partial(switchboard_pipeline, together=True),
}
"""The raw baseline, ``switchboard adapters`` + ``switchboard router``, ``switchboard run``."""


async def measure(pipeline: Pipeline, settings: LoadSettings) -> Outcome:
    """The load, with the CPU time of the pipeline's processes and the servers around it."""
    servers = infrastructure_pids(pipeline.services)
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
    first = await asyncio.wait_for(load.stdout.readline(), 300)
    before = cpu_snapshot(pipeline.processes, servers)
    if first.strip() != SENDING.encode():
        await load.wait()
        raise RuntimeError(f"the load generator did not start ({load.returncode})")
    seconds = (settings.warm + settings.measured) / settings.rate
    out, _ = await asyncio.wait_for(load.communicate(), seconds * 4 + 300)
    after = cpu_snapshot(pipeline.processes, servers)
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed ({load.returncode})")
    figures = msgspec.json.decode(out.splitlines()[-1], type=LoadFigures)
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


async def fixed_rate_round(side: str, services: Services, directory: Path) -> Outcome:
    """One round at ``RATE`` on fresh processes."""
    async with SIDES[side](services, directory) as pipeline:
        outcome = await measure(pipeline, pipeline.load)
    if not outcome.load.accepted or not outcome.load.routed:
        raise RuntimeError(
            f"{side}: {outcome.load.accepted} webhooks accepted, {outcome.load.routed} routed"
        )
    return outcome


# -- the maximum sustained rate --------------------------------------------------------------


def sustained(load: LoadFigures, measured: int) -> bool:
    """The issue's bar for a rate: ≥ 99.5 % answered 2xx, every message routed, p99
    webhook → routing event within ``SUSTAINED_P99_MS``."""
    return (
        load.accepted >= 0.995 * measured
        and load.routed == measured
        and load.routed_p99_ms <= SUSTAINED_P99_MS
    )


@dataclass
class Probe:
    rate: float
    outcome: Outcome
    sustained: bool


@dataclass
class MaxRate:
    rate: float
    """The highest rate sustained (0: not even ``PROBE_START``)."""
    probes: list[Probe]
    rss_bytes_per_conversation: float
    """The routing process's resident memory per open conversation over the probes
    (``bytes_per_conversation``; 0 for the raw side, which keeps no state)."""
    open_conversations: int
    """The most conversations open at the end of a probe."""


async def open_conversations(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM conversations WHERE status <> 'closed'")
    finally:
        await conn.close()
    return int(count)


def per_message_us(seconds: float, load: LoadFigures) -> float:
    """CPU seconds over a load as microseconds per message sent (the warm-up's included)."""
    return seconds / load.sent * 1e6


def probe_line(probe: Probe) -> str:
    load = probe.outcome.load
    cpu = ", ".join(
        f"{kind} {per_message_us(seconds, load):.0f}"
        for kind, seconds in [*probe.outcome.cpu_seconds.items(), ("generator", load.cpu_seconds)]
    )
    return (
        f"{probe.rate:7.1f} msg/s {'sustained' if probe.sustained else 'NOT sustained'}:"
        f" {load.accepted} answered 2xx, {load.routed} routed, p50 {load.routed_p50_ms:.0f} ms,"
        f" p99 {load.routed_p99_ms:.0f} ms; CPU µs/msg {cpu}"
    )


async def max_sustained_rate(side: str, services: Services, directory: Path) -> MaxRate:
    """Probes of ``PROBE_SECONDS``, each on fresh processes, database and topics with its own
    warm-up: from ``PROBE_START``, up by ``PROBE_STEP`` while sustained (to
    ``PROBE_CEILING``), then ``PROBE_REFINE`` bisections between the last rate sustained and
    the first not.

    Fresh, because the embedded broker's cost per record grows with the record batches its
    partitions hold, slowly and then steeply (one partition of single-record batches: about
    0.1 ms a record up to 15,000 of them, 1.8 ms at 21,000, 12 ms at 24,000): probes on one
    set of topics measured how much each side had sent before as much as the rate, and a
    side that reached higher rates paid more. A Kafka broker finds an offset through its
    index. The routing state a long run accumulates is measured by the scale benchmark."""
    probes: list[Probe] = []
    passed, failed = 0.0, math.inf
    rate = PROBE_START
    refinements = 0
    held: list[tuple[int, int]] = []  # (conversations open, router's RSS) after each probe
    while True:
        measured = max(1, round(rate * PROBE_SECONDS))
        async with SIDES[side](services, directory) as pipeline:
            settings = msgspec.structs.replace(
                pipeline.load, rate=rate, measured=measured, timeout=PROBE_TIMEOUT
            )
            outcome = await measure(pipeline, settings)
            if pipeline.router is not None:
                opened = await open_conversations(pipeline.database_url)
                held.append((opened, resident_bytes(pipeline.router)))
        ok = sustained(outcome.load, measured)
        probes.append(Probe(rate, outcome, ok))
        if ok:
            passed = rate
        else:
            failed = rate
        if failed == math.inf:
            if rate >= PROBE_CEILING:
                break
            rate = min(PROBE_CEILING, rate * PROBE_STEP)
        else:
            if refinements == PROBE_REFINE:
                break
            refinements += 1
            rate = round((passed + failed) / 2) if passed else failed / PROBE_STEP
    return MaxRate(
        rate=passed,
        probes=probes,
        rss_bytes_per_conversation=bytes_per_conversation(held),
        open_conversations=max((opened for opened, _ in held), default=0),
    )


def bytes_per_conversation(held: list[tuple[int, int]]) -> float:
    """The router's resident memory per open conversation, as the slope of its resident
    set over the conversations open at the end of each probe (least squares): every
    probe starts a fresh process and warms it up alike, so what a process holds whatever
    it serves falls out, where the growth over one probe counted it (0: fewer than two
    probes, or all with as many conversations)."""
    if len(held) < 2 or len({opened for opened, _ in held}) < 2:
        return 0.0
    opened, resident = zip(*held, strict=True)
    return statistics.linear_regression(opened, resident).slope


# -- figures ---------------------------------------------------------------------------------

PREFIXES = {"raw": "webhook_raw", "split": "webhook", "run": "webhook_run"}
SERVERS = ("postgres", "broker")


def side_figures(prefix: str, rounds: list[Outcome]) -> dict[str, float]:
    """One pipeline's figures at ``RATE``: each the median of its rounds'; counts summed;
    the worst round's p99 beside the median. CPU per message for each process kind, and
    ``total`` for all of them."""
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
    for kind in rounds[0].cpu_seconds:
        result[f"{prefix}_{kind}_cpu_us_per_message"] = statistics.median(
            per_message_us(outcome.cpu_seconds[kind], outcome.load) for outcome in rounds
        )
    result[f"{prefix}_total_cpu_us_per_message"] = statistics.median(
        outcome.total_us() for outcome in rounds
    )
    result[f"{prefix}_generator_cpu_us_per_message"] = statistics.median(
        outcome.generator_us() for outcome in rounds
    )
    return {name: round(value, 2) for name, value in result.items()}


def max_rate_figures(prefix: str, found: MaxRate) -> dict[str, float]:
    """The maximum and, from the probe that sustained it, the CPU per message of the
    pipeline's processes (``total``) and of the load generator, and the cores they kept
    busy together: the machine's two cores are what a side runs out of."""
    result = {
        f"{prefix}_max_msg_per_s": found.rate,
        f"{prefix}_max_probes": float(len(found.probes)),
    }
    best = [probe for probe in found.probes if probe.sustained and probe.rate == found.rate]
    if best:
        outcome = best[-1].outcome
        total, generator = outcome.total_us(), outcome.generator_us()
        result[f"{prefix}_max_total_cpu_us_per_message"] = round(total, 1)
        result[f"{prefix}_max_generator_cpu_us_per_message"] = round(generator, 1)
        result[f"{prefix}_max_cores_busy"] = round(found.rate * (total + generator) / 1e6, 3)
    if found.open_conversations:
        result[f"{prefix}_rss_bytes_per_open_conversation"] = round(
            found.rss_bytes_per_conversation
        )
        result[f"{prefix}_rss_open_conversations"] = float(found.open_conversations)
    return result


def common_rate_figures(prefix: str, mine: MaxRate, raw: MaxRate) -> dict[str, float]:
    """At the highest rate that both this side and the raw pipeline sustained (their probes
    climb the same steps from ``PROBE_START`` until each bisects): the CPU per message of
    each side's processes there, and the ratio. A maximum is one probe's pass or fail;
    what the two sides spend at the same rate says what the gap between them is made of,
    and moves less between runs."""
    theirs = {probe.rate: probe for probe in raw.probes if probe.sustained}
    common = [probe for probe in mine.probes if probe.sustained and probe.rate in theirs]
    if not common:
        return {}
    probe = max(common, key=lambda found: found.rate)
    ours, base = probe.outcome.total_us(), theirs[probe.rate].outcome.total_us()
    return {
        f"{prefix}_common_rate_msg_per_s": probe.rate,
        f"{prefix}_common_rate_total_cpu_us_per_message": round(ours, 1),
        f"{prefix}_common_rate_raw_total_cpu_us_per_message": round(base, 1),
        f"{prefix}_common_rate_total_cpu_ratio_to_raw": round(ours / base, 3) if base > 0 else 0.0,
    }


def figures(rounds: dict[str, list[Outcome]], maxima: dict[str, MaxRate]) -> dict[str, float]:
    result: dict[str, float] = {
        "webhook_rate_per_s": RATE,
        "webhook_seconds": SECONDS,
        "webhook_rounds": float(ROUNDS),
        "webhook_measured_messages": float(round(RATE * SECONDS) * ROUNDS),
        "webhook_new_customer_fraction": NEW_FRACTION,
    }
    for side, outcomes in rounds.items():
        result.update(side_figures(PREFIXES[side], outcomes))
    for side, found in maxima.items():
        result.update(max_rate_figures(PREFIXES[side], found))
        if side != "raw" and "raw" in maxima:
            result.update(common_rate_figures(PREFIXES[side], found, maxima["raw"]))

    def ratio(mine: str, theirs: str) -> float:
        value, base = result.get(mine, 0.0), result.get(theirs, 0.0)
        return round(value / base, 3) if base > 0 else 0.0

    raw = PREFIXES["raw"]
    for kind in ("ingress", "consumer", *SERVERS, "total"):
        result[f"webhook_{kind}_cpu_ratio_to_raw"] = ratio(
            f"webhook_{kind}_cpu_us_per_message", f"{raw}_{kind}_cpu_us_per_message"
        )
    for kind in (*SERVERS, "total"):
        result[f"webhook_run_{kind}_cpu_ratio_to_raw"] = ratio(
            f"webhook_run_{kind}_cpu_us_per_message", f"{raw}_{kind}_cpu_us_per_message"
        )
    for side in ("split", "run"):
        prefix = PREFIXES[side]
        for figure in ("p50_ms", "p99_ms", "max_msg_per_s"):
            name = figure.removesuffix("_ms").removesuffix("_msg_per_s")
            result[f"{prefix}_{name}_ratio_to_raw"] = ratio(f"{prefix}_{figure}", f"{raw}_{figure}")
    return result


async def run_webhook_bench_async() -> dict[str, float]:
    """``ROUNDS`` rounds at ``RATE``, the sides alternating, each round on fresh processes,
    database and topics (what else the machine does then weighs on every side alike);
    then each side's maximum sustained rate."""
    directory = Path(tempfile.mkdtemp(prefix="switchboard-webhook-"))
    rounds: dict[str, list[Outcome]] = {side: [] for side in SIDES}
    maxima: dict[str, MaxRate] = {}
    async with services() as running:
        for _ in range(ROUNDS):
            for side in SIDES:
                rounds[side].append(await fixed_rate_round(side, running, directory))
        for side in SIDES:
            maxima[side] = await max_sustained_rate(side, running, directory)
            for probe in maxima[side].probes:
                print(f"  {side} probe {probe_line(probe)}", flush=True)
    # The processes' logs: kept only when a round failed (the exception leaves them).
    shutil.rmtree(directory, ignore_errors=True)
    return figures(rounds, maxima)


def run_webhook_bench() -> dict[str, float]:
    return asyncio.run(run_webhook_bench_async())


if __name__ == "__main__":
    for key, value in run_webhook_bench().items():
        print(f"{key:44} {value}")
