"""``make bench``: the engine, planning, end-to-end, campaign, webhook and scale benchmarks, printed and
saved to ``.bench/results.json`` (one object per run, appended, so runs can be compared)."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from tools.bench.campaign_bench import run_campaign_bench
from tools.bench.e2e_bench import log_as_deployed, run_e2e_bench
from tools.bench.engine_bench import run_engine_bench
from tools.bench.planning_bench import run_planning_bench
from tools.bench.scale_bench import run_scale_bench
from tools.bench.webhook_bench import run_webhook_bench

RESULTS = Path(".bench/results.json")


def main() -> int:
    figures: dict[str, float] = {}
    print("== engine (one core, no I/O)", flush=True)
    figures.update(run_engine_bench())
    print("\n== planning (the engine in simulated time, one core)", flush=True)
    figures.update(run_planning_bench())
    print("\n== end to end (embedded broker and PostgreSQL unless configured)", flush=True)
    e2e = run_e2e_bench()
    for key, value in e2e.items():
        print(f"  {key:36} {value}")
    figures.update(e2e)
    print("\n== campaign (paced notifications; adapters in child processes)", flush=True)
    campaign = run_campaign_bench()
    for key, value in campaign.items():
        print(f"  {key:44} {value}")
    figures.update(campaign)
    print(
        "\n== webhook (signed webhook -> routing event; service processes, raw beside)", flush=True
    )
    webhook = run_webhook_bench()
    for key, value in webhook.items():
        print(f"  {key:44} {value}")
    figures.update(webhook)
    print("\n== scale (10 million past customers, 100,000 open conversations)", flush=True)
    scale = run_scale_bench()
    for key, value in scale.items():
        print(f"  {key:44} {value}")
    figures.update(scale)
    paced = (
        figures["campaign_steady_per_sender_per_s"]
        / figures["campaign_configured_per_sender_per_s"]
    )
    targets = [
        ("engine_fast_path_events_per_s", figures["engine_fast_path_events_per_s"] >= 100_000),
        ("engine_assignments_per_s", figures["engine_assignments_per_s"] >= 20_000),
        (
            "engine_bytes_per_open_conversation",
            figures["engine_bytes_per_open_conversation"] <= 1024,
        ),
        ("e2e_ratio_to_raw >= 0.7", figures["e2e_ratio_to_raw"] >= 0.7),
        ("e2e_p99_ratio_to_raw <= 1.3", figures["e2e_p99_ratio_to_raw"] <= 1.3),
        (
            "webhook: adapters + router max sustained >= 0.8x raw",
            figures["webhook_max_ratio_to_raw"] >= 0.8,
        ),
        (
            "webhook: switchboard run max sustained >= 0.7x raw",
            figures["webhook_run_max_ratio_to_raw"] >= 0.7,
        ),
        ("webhook: p99 at 300 msg/s <= 1.3x raw", figures["webhook_p99_ratio_to_raw"] <= 1.3),
        (
            "webhook: router CPU per message <= 3x the raw consumer's",
            figures["webhook_consumer_cpu_ratio_to_raw"] <= 3,
        ),
        (
            "webhook: PostgreSQL CPU per message <= 5x raw",
            figures["webhook_postgres_cpu_ratio_to_raw"] <= 5,
        ),
        ("recovery_seconds_100k_open < 5", figures["recovery_seconds_100k_open"] < 5),
        (
            "takeover with 10 M past customers < 5 s",
            figures["scale_takeover_seconds"] < 5,
        ),
        (
            "router RSS per open conversation <= 2 KiB (10 M past customers)",
            figures["scale_rss_bytes_per_open_conversation"] <= 2048,
        ),
        (
            "staffing simulation >= 50x real time",
            figures["staffing_simulated_seconds_per_second"] >= 50,
        ),
        ("campaign paced within 5% of its rate", abs(paced - 1) <= 0.05),
        (
            "campaign: no duplicate, no loss",
            figures["campaign_duplicates"] == figures["campaign_losses"] == 0,
        ),
        (
            "campaign with a restart: no loss, duplicates only of claims under way at the kill",
            figures["campaign_restart_losses"]
            == figures["campaign_restart_duplicates_of_unclaimed"]
            == 0,
        ),
    ]
    print("\n== targets")
    for name, met in targets:
        print(f"  {'met   ' if met else 'MISSED'} {name}")
    RESULTS.parent.mkdir(exist_ok=True)
    history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    if isinstance(history, dict):
        history = [history]
    history.append(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": platform.python_version(),
            "machine": platform.machine(),
            **figures,
        }
    )
    RESULTS.write_text(json.dumps(history, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    log_as_deployed()
    sys.exit(main())
