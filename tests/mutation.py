"""``make mutate``: mutmut on one embedded broker and PostgreSQL for the whole run.

mutmut starts a pytest session per mutant; the integration tests among them would each
start a broker and a PostgreSQL of their own. Started once here (unless
``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` name running ones) and handed down through
those variables, every session shares them: tests use their own database and topic prefix.
Arguments go to ``mutmut run``; the exit status is mutmut's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from switchboard.embedded import missing_services
from tests.conftest import embedded_state_dir


def main(arguments: list[str]) -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    with (
        embedded_state_dir() as state,
        missing_services(
            state, os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
        ) as (bootstrap_servers, database_url),
    ):
        environ = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "DATABASE_URL": database_url,
            # mutmut runs pytest in its own process and watches which tests call what: tests
            # on pytest-xdist's workers (pyproject's addopts) would call nothing it can see.
            "PYTEST_ADDOPTS": f"{os.environ.get('PYTEST_ADDOPTS', '')} -p no:xdist".strip(),
        }
        return subprocess.call([str(mutmut), "run", *arguments], env=environ)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
