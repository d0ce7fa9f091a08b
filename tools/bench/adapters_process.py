"""An adapters process for the campaign benchmark, to be killed and restarted.

``python -m tools.bench.adapters_process CONFIG_JSON [ROLE ...]`` runs the service's adapters role
(webhooks, egress, the notification sender) on the configuration (JSON of
``switchboard.config.Config``) until SIGTERM, exactly as ``switchboard adapters`` does,
logging as the configuration says (by default JSON lines at ``INFO``: a line per webhook
and per assignment, as deployed). ``ROLE``s name the roles
instead: ``router`` as ``switchboard router`` serves it, ``adapters router`` as
``switchboard run`` does. With ``SWITCHBOARD_BENCH_CPU_PROFILE`` set, it writes its CPU
profile when it stops (``tools.bench.cpu_profile``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import msgspec

from runtime import logging as logs
from switchboard.app import Role
from switchboard.cli import serve
from switchboard.config import Config
from tools.bench.cpu_profile import ENVIRONMENT, CpuProfile


def main(argv: list[str]) -> int:
    config = msgspec.json.decode(argv[0], type=Config)
    environ = dict(os.environ)
    logs.configure(config.log_format, config.log_level, secrets=logs.secret_values(config, environ))
    roles = frozenset(Role(name) for name in argv[1:]) or frozenset({Role.ADAPTERS})
    profiles = environ.get(ENVIRONMENT)
    profile = CpuProfile()
    if profiles:
        profile.start()
    try:
        asyncio.run(serve(config, environ, roles))
    finally:
        if profiles:
            profile.stop()
            name = "-".join(sorted(role.value for role in roles))
            profile.write(Path(profiles) / f"{name}-{os.getpid()}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
