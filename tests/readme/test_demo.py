"""README "See it work": ``make demo`` itself, with a few seconds of simulation instead of two
minutes, on the test's broker and database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path

import asyncpg
import pytest

from switchboard.embedded import free_port, missing_services
from tests.readme.commands import ROOT, commands_run_by
from tests.readme.shell import clean_environment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

VENV = Path(sys.prefix)
CHANNELS = ("webchat", "sms", "whatsapp", "email")
"""demo.toml's channels: web chat, a Twilio number, a WhatsApp number, a Mailgun address."""


async def test_make_demo_simulates_every_channel_then_stops_the_service(
    database_url: str, tmp_path: Path
) -> None:
    commands = commands_run_by(test_make_demo_simulates_every_channel_then_stops_the_service)
    assert {c.bare for c in commands} == {"make demo", "switchboard simulate"}
    port = free_port()
    # A broker of its own: demo.toml keeps the default consumer groups, which the quick
    # start's service (the packaged defaults) uses on the session's broker.
    with missing_services(tmp_path, None, database_url) as (bootstrap_servers, _):
        env = {
            **clean_environment(),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "DATABASE_URL": database_url,
        }
        # This run's virtual environment, never rebuilt here (-o: its stamp is up to date).
        process = await asyncio.create_subprocess_exec(
            "make",
            "--no-print-directory",
            "-o",
            str(VENV / ".installed"),
            "demo",
            f"VENV={VENV}",
            f"DEMO_PORT={port}",
            "DEMO_DURATION=1",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 0, output[-4000:]
    # "Open http://127.0.0.1:8080/console meanwhile, with domain demo and token
    # demo-admin-token" (the port is DEMO_PORT)
    console = f"Console: http://127.0.0.1:{port}/console  (domain demo, token demo-admin-token)"
    assert console in output, output[-4000:]
    # "runs switchboard simulate against it": every channel is simulated (the Makefile sets
    # each provider's secret), and its summary comes at the end.
    assert "not simulating" not in output, output[-4000:]
    summary = re.search(r"^  messages +(\d+) \([^)]*\); routed (\d+)$", stdout.decode(), re.M)
    assert summary is not None, output[-4000:]
    assert int(summary[1]) > 0, summary[0]
    # "stops the service ... when the simulation ends": nothing listens any more.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    conn = await asyncpg.connect(database_url)
    try:
        channels = await conn.fetch(
            "SELECT DISTINCT channel FROM messages WHERE domain = 'demo' AND direction = 'inbound'"
        )
    finally:
        await conn.close()
    assert {r["channel"] for r in channels} <= set(CHANNELS)
    assert channels
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 0)
        pytest.fail("make demo left a process of its group running")
