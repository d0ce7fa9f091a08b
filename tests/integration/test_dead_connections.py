"""``database.dead_connection_seconds``: a pool connection whose server's host went silent
is closed by the system, so that a server gone without a word (a failover, a host lost)
holds none of the pool's connections while TCP retransmits for a quarter of an hour.

The silence is real: the pool connects through a forwarder listening on the loopback of a
network namespace of the test's own, and that loopback is then taken down, so that every
packet of the connection is lost as when its peer's host vanishes. Nothing but loopback
addresses is used. Making a namespace needs root: the first test, which reads the socket
options back, runs everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from runtime import db

pytestmark = pytest.mark.integration

SECONDS = 3
"""The setting under test: short, so that the test waits seconds, not half a minute."""
CLOSED_WITHIN = 15.0
"""A dead connection is closed at about ``SECONDS`` plus a keepalive interval; a slow
machine may take longer, and without the setting it would take about 15 minutes."""

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@contextlib.contextmanager
def in_namespace(fd: int) -> Iterator[None]:
    """Sockets this thread makes meanwhile belong to the network namespace ``fd``."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(fd)
        yield
    finally:
        _setns(back)
        os.close(back)


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=30)


class Silence:
    """A forwarder from a namespace's loopback to the PostgreSQL server, and the switch
    that takes that loopback down."""

    def __init__(self, name: str, namespace: int, upstream: tuple[str, int]) -> None:
        self.name = name
        self.namespace = namespace
        self._own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._streams: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        with in_namespace(self.namespace):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._server = await asyncio.start_server(self._forward, sock=listener)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with in_namespace(self._own):
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        await asyncio.get_running_loop().sock_connect(upstream, self._upstream)
        server_reader, server_writer = await asyncio.open_connection(sock=upstream)
        self._streams += [writer, server_writer]
        for source, sink in ((reader, server_writer), (server_reader, writer)):
            pump = asyncio.create_task(self._pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    def url(self, database_url: str) -> str:
        parts = urlsplit(database_url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def cut(self) -> None:
        _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "down")

    def mend(self) -> None:
        _ip("netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    async def close(self) -> None:
        for pump in list(self._pumps):
            pump.cancel()
        for stream in self._streams:
            stream.transport.abort()
        if self._server is not None:
            self._server.close()
        os.close(self._own)


@pytest.fixture
async def silence(database_url: str) -> AsyncIterator[Silence]:
    if os.geteuid() != 0:
        # A platform limit, not a failure: unprivileged, the silence cannot be made (the
        # socket options are still checked, by the test above).
        pytest.skip("making a network namespace needs root (CAP_SYS_ADMIN)")
    name = f"sbdead-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        namespace = os.open(f"/run/netns/{name}", os.O_RDONLY)
        parts = urlsplit(database_url)
        # The suite's servers listen on TCP.
        assert parts.hostname is not None
        assert parts.port is not None
        forwarder = Silence(name, namespace, (parts.hostname, parts.port))
        try:
            await forwarder.start()
            yield forwarder
        finally:
            await forwarder.close()
            os.close(namespace)
    finally:
        _ip("netns", "del", name)


def _options(conn: asyncpg.Connection) -> dict[str, int]:
    sock = conn._transport.get_extra_info("socket")  # type: ignore[attr-defined]
    return {
        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "probes": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    }


async def test_each_pool_connection_is_watched_as_configured(database_url: str) -> None:
    watched = await db.create_pool(database_url, min_size=2, max_size=2)
    unwatched = await db.create_pool(
        database_url, min_size=1, max_size=1, dead_connection_seconds=0
    )
    try:
        for conn in watched._holders:  # every connection, the ones made at start included
            assert conn._con is not None
            assert _options(conn._con) == {
                "keepalive": 1,
                "idle": 10,
                "interval": 5,
                "probes": 4,
                "user_timeout_ms": 30_000,
            }
        async with unwatched.acquire() as conn:
            options = _options(conn._con)  # type: ignore[attr-defined]
            assert options["keepalive"] == 0
            assert options["user_timeout_ms"] == 0
    finally:
        await watched.close()
        await unwatched.close()


async def _server_pid(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(conn.get_server_pid())


async def test_a_statement_whose_server_went_silent_fails_and_the_pool_serves_again(
    database_url: str, silence: Silence
) -> None:
    url = silence.url(database_url)
    with in_namespace(silence.namespace):  # the pools' sockets are made in the namespace
        watched = await db.create_pool(url, min_size=1, max_size=1, dead_connection_seconds=SECONDS)
        unwatched = await db.create_pool(url, min_size=1, max_size=1, dead_connection_seconds=0)
    server_pids = [await _server_pid(watched), await _server_pid(unwatched)]
    waits: list[asyncio.Task[object]] = []
    try:
        # Each awaits a result, its statement acknowledged: no byte of it waits to be.
        waits = [
            asyncio.create_task(pool.fetchval("SELECT pg_sleep(60)"))
            for pool in (watched, unwatched)
        ]
        await asyncio.sleep(0.5)
        assert not any(wait.done() for wait in waits)
        silence.cut()
        started = time.monotonic()
        done, _ = await asyncio.wait([waits[0]], timeout=CLOSED_WITHIN)
        elapsed = time.monotonic() - started
        assert done, f"the watched connection still waits after {CLOSED_WITHIN} s"
        with pytest.raises(db.DATABASE_ERRORS):
            waits[0].result()
        assert elapsed >= SECONDS - 1  # closed by the silence, not by anything sooner
        # The same statement without the setting is still waiting for its host.
        assert not waits[1].done()

        silence.mend()
        with in_namespace(silence.namespace):  # the pool's one connection is made anew
            assert await asyncio.wait_for(watched.fetchval("SELECT 1"), 10) == 1
    finally:
        for pool in (watched, unwatched):
            pool.terminate()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", server_pids
            )
        finally:
            await conn.close()
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
