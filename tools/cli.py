"""The ``switchboard`` program: the service's commands (``switchboard.cli``: run, router,
adapters, migrate, schemas) and the operator's tools: token, dead-letters, retention, replay,
simulate, workload, forecast, staffing."""

from __future__ import annotations

import os
import sys

from switchboard.cli import configure, new_parser, service_command
from tools.config_cli import add_config_parser, config_command
from tools.dead_letter_cli import add_dead_letter_parser, dead_letter_command
from tools.planning_cli import add_planning_parsers, planning_command
from tools.replay import add_replay_parser, replay_command
from tools.retention_cli import add_retention_parser, retention_command
from tools.simulate_cli import add_simulate_parser, simulate_command
from tools.token_cli import add_token_parser, token_command
from tools.workload_cli import add_workload_parser, workload_command


def main(argv: list[str] | None = None) -> int:
    parser, commands = new_parser(__doc__)
    add_token_parser(commands)
    add_config_parser(commands)
    add_dead_letter_parser(commands)
    add_retention_parser(commands)
    add_replay_parser(commands)
    add_simulate_parser(commands)
    add_workload_parser(commands)
    add_planning_parsers(commands)
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.command == "simulate":  # a client of a running service: needs no configuration
        return simulate_command(args, environ)
    tools = ("token", "dead-letters", "retention", "replay", "config", "workload")
    if args.command not in (*tools, "forecast", "staffing"):
        return service_command(args, environ)
    config = configure(args, environ)
    if config is None:
        return 2
    if args.command == "config":
        # A wildcard address is where the service listens, not where to reach it.
        wildcard = config.http.host in ("0.0.0.0", "::", "")  # noqa: S104
        host = "127.0.0.1" if wildcard else config.http.host
        return config_command(args, environ, f"http://{host}:{config.http.port}")
    if args.command == "token":
        return token_command(args, config)
    if args.command == "dead-letters":
        return dead_letter_command(args, config, environ)
    if args.command == "retention":
        return retention_command(args, config)
    if args.command == "workload":
        return workload_command(args, config)
    if args.command in ("forecast", "staffing"):
        return planning_command(args, config)
    policies = {name: domain.routing for name, domain in config.domains.items()}
    return replay_command(args, config.database.url, policies)


if __name__ == "__main__":
    sys.exit(main())
