"""``switchboard simulate``: the command line of ``tools.simulate`` (options, waiting for
the service, the printed summary)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from tools import simulate as simulation
from tools.simulate import (
    HOUR,
    SECRET_VARIABLES,
    Options,
    Progress,
    SimulationError,
    Summary,
    secrets_from,
    simulate,
)


async def wait_ready(url: str, within: float, pid: int | None = None) -> bool:
    """Poll ``/readyz`` until it answers 200 (True), ``within`` seconds pass or process
    ``pid`` is gone (False)."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url.rstrip("/") + "/readyz") as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            if pid is not None and not _alive(pid):
                return False
            await asyncio.sleep(0.5)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the command ----------------------------------------------------------------------


def add_simulate_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "simulate",
        help="synthetic customers and agents driving a running service",
        description=simulation.__doc__.split("\n\n")[0] if simulation.__doc__ else None,
    )
    d = Options()
    p.add_argument("--url", default=d.url, help="base URL of the service (%(default)s)")
    p.add_argument(
        "--public-url",
        help="URL the service checks webhook signatures against (default: "
        "$SWITCHBOARD_PUBLIC_URL, else --url)",
    )
    p.add_argument("--token", help="admin token (default: $SWITCHBOARD_ADMIN_TOKEN)")
    p.add_argument("--domain", default=d.domain, help="routing domain (%(default)s)")
    p.add_argument("--customers", type=int, default=d.customers, help="(%(default)s)")
    p.add_argument("--agents", type=int, default=d.agents, help="(%(default)s)")
    p.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        help="customer messages per second at most (%(default)s)",
    )
    p.add_argument(
        "--duration", type=float, default=d.duration, help="real seconds of traffic (%(default)s)"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="(%(default)s)")
    p.add_argument(
        "--speed",
        type=float,
        default=d.speed,
        help="simulated seconds per real second for customers and agents; the router's "
        "timeouts stay real (%(default)s)",
    )
    p.add_argument("--twilio-number", default=d.twilio_number)
    p.add_argument("--whatsapp-phone-number-id", default=d.whatsapp_phone_number_id)
    p.add_argument("--email-address", default=d.email_address)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the service's /readyz (make demo starts both)",
    )
    p.add_argument(
        "--service-pid",
        type=int,
        help="with --wait-ready: give up when this process (the service) has exited",
    )
    p.add_argument(
        "--console-hint",
        action="store_true",
        help="print the console's URL, domain and token before starting (make demo)",
    )


def simulate_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    options = Options(
        url=args.url,
        public_url=args.public_url or environ.get("SWITCHBOARD_PUBLIC_URL") or None,
        token=args.token or environ.get("SWITCHBOARD_ADMIN_TOKEN") or None,
        domain=args.domain,
        customers=args.customers,
        agents=args.agents,
        rate=args.rate,
        duration=args.duration,
        seed=args.seed,
        speed=args.speed,
        twilio_number=args.twilio_number,
        whatsapp_phone_number_id=args.whatsapp_phone_number_id,
        email_address=args.email_address,
        secrets=secrets_from(environ),
    )
    missing = [f"{c} (${v})" for c, v in SECRET_VARIABLES.items() if c not in options.secrets]
    if missing:
        print(f"simulate: not simulating {', '.join(missing)}: secret unset", file=sys.stderr)
    tty = sys.stderr.isatty()
    if args.wait_ready > 0 and not asyncio.run(
        wait_ready(options.url, args.wait_ready, args.service_pid)
    ):
        print(f"switchboard simulate: {options.url} not ready", file=sys.stderr)
        return 1
    if args.console_hint:
        print(
            f"Console: {options.url.rstrip('/')}/console  (domain {options.domain}, "
            f"token {options.token or 'none needed'})",
            file=sys.stderr,
            flush=True,
        )

    def show(progress: Progress) -> None:
        if tty:
            print("\r" + progress.line(), end="", file=sys.stderr, flush=True)
        elif int(progress.elapsed) % 5 == 0:
            print(progress.line(), file=sys.stderr, flush=True)

    try:
        summary = asyncio.run(simulate(options, show))
    except SimulationError as error:
        print(f"\nswitchboard simulate: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nswitchboard simulate: interrupted", file=sys.stderr)
        return 130
    if tty:
        print(file=sys.stderr)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(summary)).decode())
    else:
        print(format_summary(summary))
    return 0


def format_summary(s: Summary) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    ratio = "-" if s.preferred_hit_ratio is None else f"{s.preferred_hit_ratio:.0%}"
    strategies = ", ".join(f"{k} {v}" for k, v in s.assignments_by_strategy.items()) or "none"
    channels = ", ".join(f"{k} {v}" for k, v in s.messages_by_channel.items()) or "none"
    lines = [
        f"Simulated {s.simulated_seconds / HOUR:.1f} h in {s.real_seconds:.0f} s "
        f"(speed {s.speed:g}, seed {s.seed}): {s.customers} customers, {s.agents} agents",
        f"  messages        {s.messages} ({channels}); routed {s.messages_routed}",
        f"  conversations   {s.conversations}; channel hops {s.channel_hops}",
        f"  assignments     {s.assignments} ({strategies})",
        f"  preferred agent {ratio} hit ratio ({s.preferred_hits} hits, {s.preferred_misses} misses)",
        f"  waits           p50 {seconds(s.wait_p50_seconds)}, p95 {seconds(s.wait_p95_seconds)}",
        f"  fallbacks       {s.fallbacks}; overflowed {s.overflowed}; waiting {s.waiting_at_end}",
        f"  agents          {s.replies} replies, {s.closed} closed, "
        f"{s.presence_changes} presence changes",
    ]
    if s.errors:
        lines.append("  errors          " + ", ".join(f"{k}: {v}" for k, v in s.errors.items()))
    return "\n".join(lines)
