"""`make run` on embedded defaults: it becomes ready, and stopping it leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from switchboard.embedded import free_port

REPO = Path(__file__).resolve().parents[2]


def _environment(state_dir: Path) -> tuple[dict[str, str], int]:
    port = free_port()
    # Without XDG_RUNTIME_DIR, as in a container or CI.
    left_out = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "XDG_RUNTIME_DIR")
    env = {k: v for k, v in os.environ.items() if k not in left_out}
    # Relative, like the default `.state`: the embedded PostgreSQL must cope with that.
    state = state_dir / "state"
    state.mkdir()
    env.update(
        SWITCHBOARD_STATE_DIR=os.path.relpath(state, REPO),
        SWITCHBOARD_PORT=str(port),
        SWITCHBOARD_LOG_FORMAT="json",
    )
    return env, port


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            pytest.fail(f"exited with {process.returncode} before ready:\n{output[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"/readyz not 200 within {timeout} s")


def _infrastructure_of(pid: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() in ("postgres", "tansu") or "tansu" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # exited between the two questions
        return False


def _all_gone(processes: list[psutil.Process], timeout: float = 20) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.1)
    return alive


def test_sigterm_to_make_run_stops_cleanly_and_leaves_no_broker_or_postgres(
    service_state_dir: Path,
) -> None:
    env, port = _environment(service_state_dir)
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(port, process)
        infrastructure = _infrastructure_of(process.pid)
        names = {p.name() for p in infrastructure}
        assert "postgres" in names
        assert any("tansu" in " ".join(p.cmdline()) for p in infrastructure)
        # A client holding a webhook's body open does not hold the stop up: HTTP requests
        # get HTTP_SHUTDOWN_SECONDS, not aiohttp's 60 s (past a deployment's grace).
        held = socket.create_connection(("127.0.0.1", port))
        held.sendall(
            b"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 600\r\n\r\n"
            + b"x"
            * 20
        )
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
        held.close()
        text = output.decode(errors="replace")
        assert '"event":"router_stopped"' in text, text[-3000:]
        # A library's Python warning would be a warning line on every start.
        assert '"logger":"py.warnings"' not in text, text[-3000:]
        assert _all_gone(infrastructure) == []
    finally:
        if process.poll() is None:
            process.kill()


def test_kill_9_of_the_service_still_takes_broker_and_postgres_down(
    service_state_dir: Path,
) -> None:
    env, port = _environment(service_state_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(port, process)
        infrastructure = _infrastructure_of(process.pid)
        assert len(infrastructure) >= 2
        process.kill()
        process.wait(10)
        assert _all_gone(infrastructure) == []
    finally:
        if process.poll() is None:
            process.kill()
