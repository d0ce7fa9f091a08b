"""A service that cannot reach its broker at start says so in one line and exits 1, as it
does when PostgreSQL is out of reach: no traceback."""

from __future__ import annotations

import subprocess

from tests.readme.shell import BIN


def test_a_broker_out_of_reach_at_start_is_one_line_and_exit_1(
    cli_environ: dict[str, str],
) -> None:
    environ = {**cli_environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # nothing listens
    done = subprocess.run(
        [str(BIN / "switchboard"), "router"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "switchboard: cannot start: the broker: KafkaConnectionError" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "uncaught_exception" not in done.stdout + done.stderr
