"""What the deploy files are checked against: the code's own names and numbers."""

from __future__ import annotations

import contextlib
import inspect
import io
import re
from functools import cache
from typing import Any

import msgspec

from runtime.tasks import STOP_TIMEOUT
from switchboard import app, cli
from switchboard.app import Role, build_app
from switchboard.config import ENVIRONMENT_KEYS, Config, load_config
from tests.deploy.conftest import DEPLOY

CONFIG_FILE = DEPLOY / "switchboard.toml"
#: Containers listen beyond their loopback interface.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what the deploy files must set, not a bind)
#: Variables Switchboard reads: the contract's, plus the configuration file's path.
SWITCHBOARD_VARIABLES = {*ENVIRONMENT_KEYS, "SWITCHBOARD_CONFIG"}


def is_command(name: str) -> bool:
    """``switchboard <name>`` exists (argparse exits 0 on ``--help``, 2 on a bad command)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main([name, "--help"])
        except SystemExit as exit_:
            return exit_.code == 0
    return False


def deploy_config(environ: dict[str, str] | None = None) -> Config:
    return load_config(environ or {}, CONFIG_FILE)


def secret_variables(section: str | None = None) -> set[str]:
    """Environment variables named by the ``*_env`` keys of the configuration (or of one
    of its sections: ``channels`` for the adapters, ``api`` for the routers)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("_env") and isinstance(value, str):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    tree = msgspec.to_builtins(deploy_config())
    walk(tree if section is None else tree[section])
    return found


@cache
def http_paths() -> frozenset[str]:
    """The routes of an app with every role (built, not started)."""
    config = deploy_config(
        {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "DATABASE_URL": "postgresql://x@db/x"}
    )
    application = build_app(config, {}, roles=frozenset(Role))
    return frozenset(
        route.resource.canonical for route in application.router.routes() if route.resource
    )


def router_stop_timeout() -> float:
    """Seconds the router gets to flush after SIGTERM (``_router_worker`` stops it with
    ``runtime.tasks.background``'s default grace, through ``switchboard.app._task``)."""
    source = inspect.getsource(app._router_worker)
    assert '_task(app, "router-worker", worker.run(), worker.stop)' in source
    assert "grace_seconds" not in inspect.getsource(app._task)
    return STOP_TIMEOUT


def seconds(duration: str | int) -> float:
    """``45s``, ``1m30s`` or a number of seconds."""
    if isinstance(duration, int):
        return float(duration)
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert duration, "empty duration"
    assert parts, duration
    return int(parts[1] or 0) * 60.0 + int(parts[2] or 0)
