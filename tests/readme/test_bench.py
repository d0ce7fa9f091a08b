"""README "make bench": what it runs (``python -m tools.bench``), with message counts small enough for
the suite. The figures mean nothing at this size; the test checks that every measurement
runs and that a run is appended to the results file."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

import tools.bench.__main__ as bench_main
from tests.conftest import Infrastructure
from tools.bench import campaign_bench, e2e_bench, engine_bench, scale_bench, webhook_bench
from tools.bench.cpu_profile import ENVIRONMENT, read_collapsed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(360)]

SMALL: dict[ModuleType, dict[str, float]] = {
    engine_bench: {
        "AGENTS": 200,
        "HELD": 1_000,
        "NEW": 300,
        "FAST": 2_000,
        "ROUNDS": 1,
        "MEMORY_CONVERSATIONS": 500,
        "MEMORY_AGENTS": 100,
        "WAITING": 1_000,
        "QUEUED": 100,
    },
    e2e_bench: {
        "THROUGHPUT_MESSAGES": 1_000,
        "THROUGHPUT_ROUNDS": 2,
        "NAIVE_MESSAGES": 50,
        "LATENCY_SECONDS": 1,
        "LATENCY_ROUNDS": 1,
        "WARM_MESSAGES": 200,
        "RECOVERY_CONVERSATIONS": 1_000,
    },
    campaign_bench: {"MESSAGES": 300, "SENDERS": 2, "PROCESSES": 2, "PROVIDER_DELAY": 0.01},
    webhook_bench: {
        "RATE": 20.0,
        "SECONDS": 1.0,
        "ROUNDS": 1,
        "WARM_MESSAGES": 10,
        "AGENTS": 20,
        "PROBE_START": 20.0,
        "PROBE_CEILING": 30.0,
        "PROBE_SECONDS": 1.0,
        "PROBE_REFINE": 1,
        # The mechanics are checked here, not the speed of a shared machine.
        "SUSTAINED_P99_MS": 30_000.0,
    },
    scale_bench: {
        "HISTORY_CUSTOMERS": 5_000,
        "OPEN_CONVERSATIONS": 1_000,
        "SCALE_MESSAGES": 300,
        "HISTORY_PAGE": 2_000,
    },
}


async def test_the_benchmark_runs_at_a_small_scale(
    infrastructure: Infrastructure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module, values in SMALL.items():
        for name, value in values.items():
            assert hasattr(module, name), f"{module.__name__}.{name}"
            monkeypatch.setattr(module, name, value)
    results = tmp_path / "results.json"
    earlier = {"time": "2024-05-01T00:00:00Z", "e2e_messages_per_s": 1.0}
    results.write_text(json.dumps([earlier]))
    monkeypatch.setattr(bench_main, "RESULTS", results)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", infrastructure.bootstrap_servers)
    monkeypatch.setenv("DATABASE_URL", infrastructure.server_url)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    monkeypatch.setenv(ENVIRONMENT, str(profiles))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    assert await asyncio.to_thread(bench_main.main) == 0
    assert os.listdir(scratch) == []  # nothing left behind in the temporary directory

    # Each service process that stopped wrote its CPU profile: adapters (campaign, split),
    # router (split), both roles in one (run).
    written = {path.name.rsplit("-", 1)[0] for path in profiles.glob("*.txt")}
    assert written == {"adapters", "router", "adapters-router"}
    for path in profiles.glob("*.txt"):
        assert sum(read_collapsed(path.read_text()).values()) > 0, path.name

    # "every run is appended to .bench/results.json"
    first, run = json.loads(results.read_text())
    assert first == earlier
    for figure in (
        "engine_fast_path_events_per_s",
        "engine_assignments_per_s",
        "raw_pipeline_messages_per_s",
        "naive_pipeline_messages_per_s",
        "e2e_messages_per_s",
        "e2e_router_cpu_us_per_message",
        "e2e_p99_ms_at_1000",
        "recovery_seconds_100k_open",
        "campaign_achieved_per_sender_per_s",
        "campaign_max_1s_window_per_sender",
        "campaign_restart_seconds",
        "webhook_raw_p99_ms",
        "webhook_p99_ms",
        "webhook_p99_ratio_to_raw",
        "webhook_raw_ingress_cpu_us_per_message",
        "webhook_ingress_cpu_us_per_message",
        "webhook_raw_consumer_cpu_us_per_message",
        "webhook_consumer_cpu_us_per_message",
        "webhook_total_cpu_ratio_to_raw",
        "webhook_run_p99_ms",
        "webhook_run_service_cpu_us_per_message",
        "webhook_raw_max_msg_per_s",
        "webhook_max_msg_per_s",
        "webhook_run_max_msg_per_s",
        "webhook_run_max_ratio_to_raw",
        "webhook_rss_open_conversations",
        "scale_takeover_seconds",
        "scale_returning_messages_per_s",
    ):
        assert run[figure] > 0, figure
    # The end-to-end ratio is that of the sides' median rates; the rounds' own beside it.
    assert 0 < run["e2e_ratio_to_raw_lowest_round"] <= run["e2e_ratio_to_raw_highest_round"]
    assert run["e2e_ratio_to_raw"] == pytest.approx(
        run["e2e_messages_per_s"] / run["raw_pipeline_messages_per_s"], abs=0.001
    )
    # Every traffic message named one customer identity, looked up once (none was in
    # memory: the past ones were not loaded at takeover, the new ones were never seen).
    assert run["scale_customers_read_per_message"] == 1.0
    # Every message of the webhook load is answered and routed, by every pipeline.
    measured = run["webhook_measured_messages"]
    assert measured == run["webhook_raw_accepted"] == run["webhook_raw_routed"]
    assert measured == run["webhook_accepted"] == run["webhook_routed"]
    assert measured == run["webhook_run_accepted"] == run["webhook_run_routed"]
    # At 20 to 30 messages a second every pipeline keeps up: the search climbs to its
    # ceiling in two probes.
    for prefix in ("webhook_raw", "webhook", "webhook_run"):
        assert run[f"{prefix}_max_msg_per_s"] == 30.0, prefix
        assert run[f"{prefix}_max_probes"] == 2.0, prefix
        # The load generator's CPU, and the cores the side kept busy at its maximum.
        assert run[f"{prefix}_generator_cpu_us_per_message"] > 0, prefix
        assert run[f"{prefix}_max_generator_cpu_us_per_message"] > 0, prefix
        assert run[f"{prefix}_max_total_cpu_us_per_message"] > 0, prefix
        assert run[f"{prefix}_max_cores_busy"] > 0, prefix
    # The probes of every side climbed the same steps: each Switchboard side is compared
    # with raw at the highest one both sustained.
    for prefix in ("webhook", "webhook_run"):
        assert run[f"{prefix}_common_rate_msg_per_s"] == 30.0, prefix
        assert run[f"{prefix}_common_rate_raw_total_cpu_us_per_message"] > 0, prefix
        assert run[f"{prefix}_common_rate_total_cpu_ratio_to_raw"] == pytest.approx(
            run[f"{prefix}_common_rate_total_cpu_us_per_message"]
            / run[f"{prefix}_common_rate_raw_total_cpu_us_per_message"],
            abs=0.01,
        ), prefix
    # The servers' CPU time can round to nothing over so short a load.
    for server in ("postgres", "broker"):
        for figure in (
            f"webhook_raw_{server}_cpu_us_per_message",
            f"webhook_{server}_cpu_us_per_message",
            f"webhook_{server}_cpu_ratio_to_raw",
            f"webhook_run_{server}_cpu_us_per_message",
        ):
            assert run[figure] >= 0, figure
    # Resident memory can be reused rather than grown at this small a scale.
    assert isinstance(run["router_rss_bytes_per_open_conversation"], int | float)
