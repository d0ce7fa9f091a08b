"""A background task that fails stops its process, which exits 1, so that whatever
supervises it starts it again: before, a router whose routing loop had failed went on
answering webhooks and readiness, and routed nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from switchboard.embedded import free_port
from tests.conftest import Infrastructure

REPO = Path(__file__).resolve().parents[2]

# The routing loop fails as a defect would make it fail, its message naming a customer.
FAILING_ROUTER = """
import sys
from router.shell.worker import RouterWorker

async def run(self):
    raise RuntimeError("+14155550123 wrote: my card number is 4111")

RouterWorker.run = run
from switchboard.cli import main
sys.exit(main())
"""


def test_a_router_whose_loop_fails_exits_1_naming_the_task_and_no_customer(
    infrastructure: Infrastructure, database_url: str
) -> None:
    environ = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
        "DATABASE_URL": database_url,
        "SWITCHBOARD_PORT": str(free_port()),
        "SWITCHBOARD_TOPIC_PREFIX": f"failing{uuid.uuid4().hex[:6]}.",
        "SWITCHBOARD_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-c", FAILING_ROUTER, "router"],
        env=environ,
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 1, output[-3000:]
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    [failed] = [line for line in lines if line["event"] == "background_task_failed"]
    assert (failed["level"], failed["task"], failed["error"]) == (
        "error",
        "router-worker",
        "RuntimeError",
    )
    assert [line["event"] for line in lines].count("shutting_down") == 1
    assert "switchboard: stopped: router-worker failed" in done.stderr.decode()
    assert "4155550123" not in output
    assert "card number" not in output
