"""Factories for integration tests: configurations, a running service, topic readers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import msgspec
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from runtime import db
from runtime.appkeys import TASK_FAILURES
from runtime.metrics import Metrics
from runtime.outbound import CONSENT_TABLES
from runtime.sealing import TopicKeys, with_value
from schemas import (
    ROUTING_DECODER,
    Channel,
    ConsentScope,
    ConversationAssigned,
    MessageReceived,
)
from switchboard import cli
from switchboard.app import Role, build_app
from switchboard.cli import prepare
from switchboard.config import Config
from switchboard.embedded import free_port

DEFAULT_TOML: dict[str, Any] = {"domains": {"acme": {"webchat": {"enabled": True}}}}

SESSION_TIMEOUT_MS = 6000 if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else 2000
"""The consumer groups' session timeout in test configurations. The embedded broker answers
a group's first JoinGroup after half the joining member's session timeout (measured: 1 s at
2,000 ms, 3 s at 6,000, 5 s at 10,000), so every service a test starts waits that long
before its router reads anything: at 2,000 the suite ran in 11.6 minutes instead of 15.1.
A broker the suite is pointed at may refuse a session under its
``group.min.session.timeout.ms`` (Apache Kafka's default: 6,000)."""


def make_config(
    bootstrap_servers: str, database_url: str, overrides: Mapping[str, Any] | None = None
) -> Config:
    """A configuration on the given services with a unique topic prefix and group."""
    return msgspec.convert(make_raw_config(bootstrap_servers, database_url, overrides), Config)


def make_raw_config(
    bootstrap_servers: str, database_url: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``make_config``'s input, for writing a TOML file for a router process."""
    tag = uuid.uuid4().hex[:8]
    raw: dict[str, Any] = {
        **DEFAULT_TOML,
        "kafka": {
            "bootstrap_servers": bootstrap_servers,
            "topic_prefix": f"t{tag}.",
            "consumer_group": f"router-{tag}",
            "partitions": 2,
            "fetch_max_wait_ms": 10,
            "session_timeout_ms": SESSION_TIMEOUT_MS,
        },
        "database": {"url": database_url, "pool_max_size": 5},
        "http": {"host": "127.0.0.1", "port": free_port()},
    }
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for test configurations: nested tables of scalars and lists."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((f"{prefix}{key}", value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        out += f"\n[{name}]\n" + to_toml(table, f"{name}.")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


@dataclass(frozen=True)
class WebchatSession:
    """A web chat session as ``POST …/webchat/sessions`` answered it."""

    domain: str
    session_id: str
    token: str
    expires_at: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def customer_id(self) -> str:
        return f"webchat:{self.session_id}"


async def open_webchat_session(
    http: aiohttp.ClientSession, base_url: str, domain: str = "acme", **body: Any
) -> WebchatSession:
    """A new web chat session of ``domain`` (``body``: e.g. ``login={...}``)."""
    url = f"{base_url}/v1/domains/{domain}/webchat/sessions"
    async with http.post(url, json=body) as response:
        assert response.status == 201, await response.text()
        answer = await response.json()
    return WebchatSession(domain, answer["session_id"], answer["token"], answer["expires_at"])


@dataclass
class Service:
    config: Config
    app: web.Application
    base_url: str
    session: aiohttp.ClientSession
    metrics: Metrics
    visitors: dict[tuple[str, str], WebchatSession] = field(default_factory=dict)
    """Web chat sessions by (domain, the test's name for the visitor)."""

    def url(self, path: str) -> str:
        return self.base_url + path

    async def visitor(self, name: str, domain: str = "acme") -> WebchatSession:
        """The web chat session of the test's visitor ``name``, opened at first use (the
        server picks session ids: tests name visitors, not sessions)."""
        if (domain, name) not in self.visitors:
            self.visitors[domain, name] = await open_webchat_session(
                self.session, self.base_url, domain
            )
        return self.visitors[domain, name]

    async def online_agent(
        self,
        agent_id: str,
        capacity: Mapping[str, int],
        headers: Mapping[str, str],
        domain: str = "acme",
    ) -> None:
        """Register ``agent_id`` of ``domain`` with ``capacity``, set it online through the
        API, and wait until PostgreSQL's ``agents`` shows it online."""
        agent = self.url(f"/v1/domains/{domain}/agents/{agent_id}")
        async with self.session.put(
            agent, json={"capacity": dict(capacity)}, headers=headers
        ) as response:
            assert response.status == 202, await response.text()
        async with self.session.post(
            agent + "/presence", json={"status": "online"}, headers=headers
        ) as response:
            assert response.status == 202, await response.text()
        assert self.config.database.url is not None, "no database URL in the configuration"
        conn = await asyncpg.connect(self.config.database.url)
        try:
            await wait_until(
                lambda: conn.fetchval(
                    "SELECT presence = 'online' FROM agents WHERE domain = $1 AND agent_id = $2",
                    domain,
                    agent_id,
                ),
                what=f"{agent_id} online",
            )
        finally:
            await conn.close()

    async def webchat(self, message: Mapping[str, Any], domain: str = "acme") -> tuple[int, Any]:
        """POST a web chat message as the visitor its ``session_id`` names (see
        ``visitor``); the status and the JSON answer."""
        session = await self.visitor(message["session_id"], domain)
        body = {**message, "session_id": session.session_id}
        async with self.session.post(
            self.url(f"/v1/domains/{domain}/webchat/messages"), json=body, headers=session.auth
        ) as response:
            return response.status, await response.json()


@contextlib.asynccontextmanager
async def running_service(
    config: Config,
    environ: Mapping[str, str] | None = None,
    roles: frozenset[Role] = frozenset(Role),
    *,
    log_dies_with_broker: bool = False,
) -> AsyncIterator[Service]:
    environ = dict(environ or {})
    version = await prepare(config, environ)
    metrics = Metrics(config=config.metrics)
    app = build_app(
        config.with_document(version.document),
        environ,
        roles=roles,
        metrics=metrics,
        config_version=version.version,
        log_dies_with_broker=log_dies_with_broker,
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    await site.start()
    base = f"http://{config.http.host}:{config.http.port}"
    async with aiohttp.ClientSession() as session:
        try:
            await wait_until(lambda: _ready(session, base), timeout=30, what="service ready")
            yield Service(config, app, base, session, metrics)
        finally:
            await runner.cleanup()
    # Whatever a test did to the service (outages, kills, poison), no background task may
    # have failed: `switchboard` would have stopped for it (runtime.tasks.TaskFailures).
    assert app[TASK_FAILURES].names == [], f"background tasks failed: {app[TASK_FAILURES].names}"


async def _ready(session: aiohttp.ClientSession, base: str) -> bool:
    async with session.get(base + "/readyz") as response:
        return response.status == 200


def sms_received(
    phone: str, text: str = "hello", *, endpoint: str = "+15005550006", **fields: Any
) -> MessageReceived:
    """An SMS from ``phone`` to our number ``endpoint`` of domain ``acme``, as the Twilio
    adapter publishes it (``fields``: any other of its fields)."""
    return MessageReceived(
        id=str(uuid.uuid4()),
        domain="acme",
        occurred_at=time.time(),
        channel=Channel.SMS,
        endpoint=endpoint,
        customer_address=phone,
        customer_id=f"sms:{phone}",
        conversation_key=f"sms:{endpoint}:{phone}",
        provider_message_id="SM" + uuid.uuid4().hex,
        text=text,
        **fields,
    )


def sample_value(text: str, name: str) -> float | None:
    """The first sample called ``name`` in a ``/metrics`` text (None: not exposed)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


async def scraped(service: Service, name: str) -> float:
    """A sample of the service's ``/metrics`` (0 when not exposed yet)."""
    async with service.session.get(service.url("/metrics")) as response:
        assert response.status == 200
        text = await response.text()
    value = sample_value(text, name)
    return 0.0 if value is None else value


async def wait_until(
    check: Callable[[], Any],
    *,
    timeout: float = 15,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


async def reply_sent(conn: asyncpg.Connection | asyncpg.Pool, outbound_id: str) -> None:
    """Wait until the egress has sent ``outbound_id`` (its row says ``sent``)."""
    await wait_until(
        lambda: conn.fetchval(
            "SELECT status = 'sent' FROM outbound_messages WHERE outbound_id = $1", outbound_id
        ),
        timeout=20,
        what="the reply sent",
    )


async def sent_reply(
    service: Service,
    db: asyncpg.Connection | asyncpg.Pool,
    conversation_id: str,
    reply: Mapping[str, Any],
    headers: Mapping[str, str],
) -> tuple[str, str]:
    """A reply to ``acme``'s conversation through the API (``headers`` authorise it), once
    the egress sent it: our outbound id and the provider's message id."""
    url = service.url(f"/v1/domains/acme/conversations/{conversation_id}/reply")
    async with service.session.post(url, json=reply, headers=headers) as response:
        assert response.status == 202, await response.text()
        reply_id: str = (await response.json())["reply_id"]
    sent_id: str = await wait_until(
        lambda: db.fetchval(
            "SELECT provider_message_id FROM outbound_messages"
            " WHERE outbound_id = $1 AND status = 'sent'",
            reply_id,
        ),
        timeout=20,
        what="the reply sent",
    )
    return reply_id, sent_id


R = TypeVar("R")


@contextlib.asynccontextmanager
async def topic_keys(database_url: str) -> AsyncIterator[TopicKeys]:
    """The topic keys of ``database_url`` (``runtime.sealing``), as a reader of the topics
    in a process of its own holds them."""
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        yield TopicKeys(pool)
    finally:
        await pool.close()


async def opened_records(keys: TopicKeys, records: Sequence[R]) -> list[R]:
    """``records``, each with its value opened; one that does not open (its key is gone)
    keeps its sealed bytes."""
    return [
        record if value is None else with_value(record, value)
        for record, value in await keys.opened(records)
    ]


class TopicReader:
    """Reads every record of a topic from the beginning, without a consumer group; each
    comes opened (``opened_records``) with the keys of the configuration's database."""

    def __init__(self, config: Config, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            config.topic(topic),
            bootstrap_servers=config.kafka.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
        )
        assert config.database.url, "no database URL in the configuration: no topic keys"
        self._database_url = config.database.url
        self._keys: TopicKeys | None = None
        self._pool: asyncpg.Pool | None = None
        self.records: list[Any] = []

    async def __aenter__(self) -> TopicReader:
        self._pool = await db.create_pool(self._database_url, min_size=1, max_size=2)
        self._keys = TopicKeys(self._pool)
        try:
            await self._consumer.start()
        except BaseException:
            await self._pool.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()
        if self._pool is not None:
            await self._pool.close()

    async def poll(self) -> list[Any]:
        assert self._keys is not None, "poll within `async with`"
        batch = await self._consumer.getmany(timeout_ms=100)
        fetched = [record for records in batch.values() for record in records]
        self.records.extend(await opened_records(self._keys, fetched))
        return self.records

    async def wait_for(
        self, predicate: Callable[[list[Any]], bool], timeout: float = 15
    ) -> list[Any]:
        async def check() -> bool:
            return predicate(await self.poll())

        await wait_until(check, timeout=timeout, what="records")
        return self.records

    async def assignment(self, conversation_id: str) -> ConversationAssigned:
        """The ``conversation.assigned`` of ``conversation_id`` on this routing topic, once
        it comes."""

        async def found() -> ConversationAssigned | None:
            for record in await self.poll():
                event = ROUTING_DECODER.decode(record.value)
                if isinstance(event, ConversationAssigned) and (
                    event.conversation_id == conversation_id
                ):
                    return event
            return None

        event: ConversationAssigned = await wait_until(found, timeout=15, what="assignment")
        return event


T = TypeVar("T")


class Feed:
    """One topic's events, opened (``TopicReader``) and decoded, from its beginning."""

    def __init__(self, config: Config, topic: str, decoder: msgspec.json.Decoder[Any]) -> None:
        self._reader = TopicReader(config, topic)
        self._decoder = decoder
        self.events: list[Any] = []

    async def __aenter__(self) -> Feed:
        await self._reader.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._reader.__aexit__(*exc)

    async def poll(self) -> list[Any]:
        records = await self._reader.poll()
        for record in records[len(self.events) :]:
            self.events.append(self._decoder.decode(record.value))
        return self.events

    async def first(
        self,
        kind: type[T],
        where: Callable[[T], bool] = lambda _: True,
        *,
        timeout: float = 15,
        **fields: Any,
    ) -> T:
        """The first event of type ``kind`` with these field values (and ``where``)."""

        async def found() -> T | None:
            for event in await self.poll():
                if (
                    isinstance(event, kind)
                    and all(getattr(event, k) == v for k, v in fields.items())
                    and where(event)
                ):
                    return event
            return None

        event: T = await wait_until(found, timeout=timeout, what=f"{kind.__name__} {fields}")
        return event

    def of(self, conversation_id: str) -> list[Any]:
        """The events of one conversation read so far, in topic order."""
        return [e for e in self.events if getattr(e, "conversation_id", None) == conversation_id]


def said_listening(log: Path) -> bool:
    """Whether the service writing ``log`` has bound its port: its banner says so
    (``switchboard.cli.LISTENING``), and until then whatever answers there is not it."""
    return cli.LISTENING in log.read_text(errors="replace")


class RouterProcess:
    """``switchboard router`` (or another role) as a child process, to be killed and
    restarted."""

    def __init__(
        self,
        raw_config: Mapping[str, Any],
        directory: Any,
        name: str = "router",
        *,
        role: str = "router",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        import os

        self.port = free_port()
        raw = {**raw_config, "http": {"host": "127.0.0.1", "port": self.port}}
        self.config_path = Path(directory) / f"{name}.toml"
        self.config_path.write_text(to_toml(raw))
        self.log_path = Path(directory) / f"{name}.log"
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
            },
            "SWITCHBOARD_CONFIG": str(self.config_path),
            "SWITCHBOARD_LOG_FORMAT": "json",
            **(environ or {}),
        }
        self.role = role
        self.process: Any = None

    def start(self) -> None:
        import subprocess
        import sys

        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard.cli", self.role],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float = 60) -> None:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.role} exited: {self.log_path.read_text()[-3000:]}")
                if not said_listening(self.log_path):
                    return False  # whatever answers on the port is not our process yet
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout=timeout, interval=0.1, what=f"{self.role} ready")

    def kill(self) -> None:
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        import signal

        if self.process is None or self.process.poll() is not None:
            return int(self.process.returncode) if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return int(self.process.wait(timeout))


class CuttableProxy:
    """A TCP proxy on loopback that a test can cut (drop every connection, refuse new ones)."""

    @classmethod
    async def before_database(cls, database_url: str) -> tuple[CuttableProxy, str]:
        """A started proxy in front of ``database_url``'s server, and the URL through it."""
        target = urlsplit(database_url)
        proxy = cls(target.hostname or "127.0.0.1", target.port or 5432)
        await proxy.start()
        through = database_url.replace(
            f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}"
        )
        return proxy, through

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self._hung = asyncio.Event()
        self._hung.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        await self._hung.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self._hung.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def hang(self) -> None:
        """Keep every connection open but carry nothing: a server that stopped answering."""
        self._hung.clear()

    def restore(self) -> None:
        self._cut = False
        self._hung.set()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def opt_out(
    db: asyncpg.Connection | asyncpg.Pool, channel: str, address: str, scope: str = "all"
) -> None:
    """``address`` opted out on ``channel`` in domain acme, as the router records a STOP
    (``consents``; with ``scope`` ``marketing``, WhatsApp's marketing stop:
    ``marketing_consents``); its customer id is the phone identity."""
    table = CONSENT_TABLES[ConsentScope(scope)]
    await db.execute(
        f"INSERT INTO {table} (domain, channel, address, customer_id, consent, source,"  # noqa: S608 (a constant)
        " changed_at) VALUES ('acme', $1, $2, $3, 'opt_out', 'keyword', now())",
        channel,
        address,
        f"phone:{address}",
    )
