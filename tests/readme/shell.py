"""Running the README's commands as written: bash, curl, and ``switchboard run`` itself.

Commands run in bash with ``localhost:8080`` / ``127.0.0.1:8080`` pointed at the test's
service and nothing else changed. curl reports each request's status code through a
``.curlrc`` (``write-out``, to stderr) in ``CURL_HOME``, so the command line stays the
README's. A command that only sets variables (``T=…; A=…``, ``SIG=$(…)``) joins the
prelude of the commands after it, as in the reader's terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.readme.commands import Command
from tests.support import opened_records, said_listening, topic_keys

BIN = Path(sys.executable).parent
"""The virtual environment's scripts: ``switchboard`` and ``python`` as the README runs them."""

_STATUS = re.compile(r"^HTTP (\d{3})$", re.MULTILINE)
_SETTING = re.compile(
    r"""^(?:[A-Z_][A-Z0-9_]*=(?:\$\(.*\)|'[^']*'|"[^"]*"|[^\s;'"]+)\s*(?:;\s*|$))+$""", re.DOTALL
)


def clean_environment() -> dict[str, str]:
    """The test's environment without the service's settings: each test names its own."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("SWITCHBOARD_")
    }


def require_programs(*names: str) -> None:
    """Fail (never skip) when a program the README's commands use is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: the README's commands use it "
            f"(Debian: apt-get install {' '.join(missing)})",
            pytrace=False,
        )


def is_setting(command: Command) -> bool:
    """Whether the command only sets shell variables (``T=…; A=…``)."""
    return _SETTING.match(command.bare) is not None


@dataclass
class Outcome:
    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def statuses(self) -> list[int]:
        """The HTTP status of each request curl made, in order."""
        return [int(code) for code in _STATUS.findall(self.stderr)]

    def json(self) -> Any:
        return msgspec.json.decode(self.stdout)

    def __str__(self) -> str:
        return (
            f"$ {self.command}\nexit {self.returncode}\n"
            f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}"
        )


@dataclass
class Stream:
    """A command that keeps running (``curl -N``): its output lines as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def wait_for(
        self, predicate: Callable[[list[str]], bool], what: str, timeout: float = 15
    ) -> list[str]:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; got:\n" + "\n".join(self.lines)
                )
            await asyncio.sleep(0.05)
        return self.lines

    async def stop(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # bash and its curl: our own group
            await asyncio.wait_for(self.process.wait(), 10)
        if self.reader is not None:
            await self.reader


def events(lines: list[str]) -> list[dict[str, str]]:
    """Server-Sent Events from output lines: ``{"id", "event", "data"}`` per event."""
    found: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if not line:
            if "event" in current:
                found.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value
    return found


class Shell:
    """bash with the README reader's environment, pointed at one service."""

    def __init__(
        self,
        directory: Path,
        port: int,
        environ: Mapping[str, str],
        placeholders: Mapping[str, str] | None = None,
    ) -> None:
        require_programs("bash", "curl")
        self.port = port
        self.placeholders = dict(placeholders or {})
        self.directory = directory
        curl_home = directory / "curl-home"
        curl_home.mkdir(exist_ok=True)
        (curl_home / ".curlrc").write_text('write-out = "%{stderr}\\nHTTP %{http_code}\\n"\n')
        self.env = {
            **clean_environment(),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "CURL_HOME": str(curl_home),
            **environ,
        }
        self.prelude: list[str] = []

    def text_of(self, command: Command | str) -> str:
        text = command.text if isinstance(command, Command) else command
        for host in ("localhost", "127.0.0.1"):
            text = text.replace(f"{host}:8080", f"{host}:{self.port}")
        for placeholder, value in self.placeholders.items():
            text = text.replace(placeholder, value)
        return text

    def _script(self, text: str) -> str:
        return "\n".join([*self.prelude, text])

    async def run(self, command: Command | str, timeout: float = 30) -> Outcome:
        """Run one command (after the prelude); a setting joins the prelude."""
        text = self.text_of(command)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            self._script(text),
            cwd=self.directory,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise AssertionError(f"{text!r} did not finish within {timeout} s") from None
        assert process.returncode is not None
        outcome = Outcome(text, process.returncode, stdout.decode(), stderr.decode())
        if isinstance(command, Command) and is_setting(command):
            assert outcome.returncode == 0, str(outcome)
            self.prelude.append(text)
        return outcome

    async def start(self, command: Command | str) -> Stream:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            self._script(self.text_of(command)),
            cwd=self.directory,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        stream = Stream(process)

        async def read() -> None:
            assert process.stdout is not None
            async for line in process.stdout:
                stream.lines.append(line.decode().rstrip("\r\n"))

        stream.reader = asyncio.create_task(read())
        return stream


@dataclass
class Service:
    """``switchboard run`` (or another role) as a child process."""

    process: asyncio.subprocess.Process
    port: int
    log: Path
    command: str = "run"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def stop(self) -> int:
        """SIGTERM, as Ctrl-C or an orchestrator would; the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 60)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def switchboard_run(
    directory: Path,
    port: int,
    environ: Mapping[str, str],
    timeout: float = 60,
    command: str = "run",
) -> AsyncIterator[Service]:
    """``switchboard run`` (or ``command``) on the given port and environment, once
    ``/readyz`` says 200. On the way out it gets SIGTERM and must exit 0."""
    log = directory / f"switchboard-{command}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(BIN / "switchboard"),
            command,
            cwd=directory,
            env={
                **clean_environment(),
                "SWITCHBOARD_PORT": str(port),
                "SWITCHBOARD_LOG_FORMAT": "json",
                **environ,
            },
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
    service = Service(process, port, log, command)
    try:
        await _wait_ready(service, timeout)
        yield service
    except BaseException:
        await service.stop()
        raise
    code = await service.stop()
    assert code == 0, f"switchboard {command} exited {code} on SIGTERM:\n{service.output()}"


async def _wait_ready(service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if service.process.returncode is not None:
                raise AssertionError(
                    f"switchboard {service.command} exited {service.process.returncode}:\n"
                    + service.output()
                )
            if said_listening(service.log):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(service.url + "/readyz") as response:
                        if response.status == 200:
                            return
            await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz not 200 within {timeout} s:\n{service.output()}")


async def read_topic(bootstrap_servers: str, database_url: str, topic: str) -> list[Any]:
    """Every record of ``topic`` now, from the beginning of each partition to its end,
    opened with the topic keys of ``database_url`` (``tests.support.opened_records``)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        assert assigned, f"no topic {topic}"
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[Any] = []
        deadline = time.monotonic() + 15
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    async with topic_keys(database_url) as keys:
        return await opened_records(keys, records)


def event_type(record: Any) -> str:
    return str(dict(record.headers)["ce_type"].decode())
