"""The webhook benchmark's maximum-rate search: every probe on a pipeline of its own, the
rates it tries, and the router's memory per conversation read over the probes."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tools.bench import webhook_bench
from tools.bench.e2e_bench import Services
from tools.bench.webhook_processes import LoadFigures, LoadSettings

LIMIT = 1_000.0
"""The rate the stand-in pipeline sustains up to."""
BASE_RSS = 80_000_000
PER_CONVERSATION = 2_500


def load_figures(sent: int, answered: int, cpu_seconds: float = 0.0) -> LoadFigures:
    """A load's figures with fixed latencies: the search reads the counts."""
    return LoadFigures(
        sent=sent,
        accepted=answered,
        routed=answered,
        accept_p50_ms=1.0,
        accept_p99_ms=2.0,
        routed_p50_ms=10.0,
        routed_p99_ms=20.0,
        cpu_seconds=cpu_seconds,
    )


def test_memory_per_conversation_is_the_slope_whatever_a_process_holds_anyway() -> None:
    held = [(opened, BASE_RSS + PER_CONVERSATION * opened) for opened in (1_600, 2_900, 5_500)]
    assert webhook_bench.bytes_per_conversation(held) == pytest.approx(PER_CONVERSATION)
    assert webhook_bench.bytes_per_conversation(held[:1]) == 0.0
    assert webhook_bench.bytes_per_conversation([(2_000, BASE_RSS), (2_000, BASE_RSS + 9)]) == 0.0


async def test_each_probe_has_fresh_processes_and_the_search_bisects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pipelines: list[int] = []
    conversations = iter(range(1_000, 100_000, 1_000))

    @contextlib.asynccontextmanager
    async def pipeline(services: Services, directory: Path) -> AsyncIterator[object]:
        pipelines.append(len(pipelines))
        yield webhook_bench.Pipeline(
            services,
            f"postgresql://bench/{len(pipelines)}",
            {"service": 1},
            webhook_bench.load_settings(8080, "routing", services.bootstrap, match_header="sid"),
            router=len(pipelines),
        )

    async def measure(
        pipeline: webhook_bench.Pipeline, settings: LoadSettings
    ) -> webhook_bench.Outcome:
        assert pipeline.router == len(pipelines), "a probe on an earlier probe's processes"
        assert settings.warm == webhook_bench.WARM_MESSAGES, "every probe warms its processes"
        answered = settings.measured if settings.rate <= LIMIT else settings.measured // 2
        load = load_figures(settings.warm + settings.measured, answered)
        return webhook_bench.Outcome(load, {"service": 1.0})

    async def open_conversations(url: str) -> int:
        return next(conversations)

    def resident_bytes(pid: int) -> int:
        return BASE_RSS + PER_CONVERSATION * 1_000 * pid

    monkeypatch.setitem(webhook_bench.SIDES, "run", pipeline)
    monkeypatch.setattr(webhook_bench, "measure", measure)
    monkeypatch.setattr(webhook_bench, "open_conversations", open_conversations)
    monkeypatch.setattr(webhook_bench, "resident_bytes", resident_bytes)

    found = await webhook_bench.max_sustained_rate(
        "run", Services("127.0.0.1:9092", "postgresql://bench/postgres"), tmp_path
    )

    rates = [probe.rate for probe in found.probes]
    assert rates == [400.0, 600.0, 900.0, 1350.0, 1125, 1012]
    assert [probe.sustained for probe in found.probes] == [True, True, True, False, False, False]
    assert found.rate == 900.0
    assert pipelines == list(range(len(rates)))
    assert found.open_conversations == 1_000 * len(rates)
    assert found.rss_bytes_per_conversation == pytest.approx(PER_CONVERSATION)


def probe(
    rate: float,
    sustained: bool,
    pipeline_seconds: float,
    *,
    answered: int = 10_000,
    generator_seconds: float = 0.0,
) -> webhook_bench.Probe:
    """A probe of 10,000 messages whose pipeline spent ``pipeline_seconds`` of CPU in all,
    half in each of its two processes."""
    load = load_figures(10_000, answered, cpu_seconds=generator_seconds)
    halves = {"ingress": pipeline_seconds / 2, "consumer": pipeline_seconds / 2}
    return webhook_bench.Probe(rate, webhook_bench.Outcome(load, halves), sustained)


def test_the_maximum_gives_the_cpu_and_the_cores_of_the_probe_that_sustained_it() -> None:
    # 9,000 of each probe's 10,000 answered; the generator spent 1.5 s.
    busy = functools.partial(probe, answered=9_000, generator_seconds=1.5)
    found = webhook_bench.MaxRate(
        rate=2_000.0,
        probes=[busy(2_000.0, True, 4.0), busy(3_000.0, False, 3.0), busy(2_500.0, False, 3.5)],
        rss_bytes_per_conversation=0.0,
        open_conversations=0,
    )

    figures = webhook_bench.max_rate_figures("webhook", found)

    assert figures["webhook_max_msg_per_s"] == 2_000.0
    assert figures["webhook_max_total_cpu_us_per_message"] == 400.0
    assert figures["webhook_max_generator_cpu_us_per_message"] == 150.0
    assert figures["webhook_max_cores_busy"] == 1.1
    assert "webhook_rss_bytes_per_open_conversation" not in figures
    nothing = webhook_bench.MaxRate(0.0, [busy(400.0, False, 1.0)], 0.0, 0)
    assert "webhook_max_cores_busy" not in webhook_bench.max_rate_figures("webhook", nothing)


def test_the_sides_are_compared_at_the_highest_rate_both_sustained() -> None:
    raw = webhook_bench.MaxRate(
        3_037.5,
        [probe(2_025.0, True, 2.0), probe(3_037.5, True, 3.0), probe(4_556.25, False, 3.5)],
        0.0,
        0,
    )
    ours = webhook_bench.MaxRate(
        2_025.0,
        [probe(900.0, True, 9.0), probe(2_025.0, True, 5.0), probe(3_037.5, False, 4.0)],
        0.0,
        0,
    )

    figures = webhook_bench.common_rate_figures("webhook", ours, raw)

    assert figures == {
        "webhook_common_rate_msg_per_s": 2_025.0,
        "webhook_common_rate_total_cpu_us_per_message": 500.0,
        "webhook_common_rate_raw_total_cpu_us_per_message": 200.0,
        "webhook_common_rate_total_cpu_ratio_to_raw": 2.5,
    }
    none_sustained = webhook_bench.MaxRate(0.0, [probe(400.0, False, 1.0)], 0.0, 0)
    assert webhook_bench.common_rate_figures("webhook", none_sustained, raw) == {}
