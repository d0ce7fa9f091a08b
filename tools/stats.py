"""Figures of the benchmark's rounds (``runtime.stats`` holds the shared ones)."""

from __future__ import annotations

from collections.abc import Sequence

from runtime.stats import percentile


def sampled_percentile(values: Sequence[float], q: float) -> float:
    """``percentile`` of a run that must have samples (a benchmark's round)."""
    value = percentile(values, q)
    if value is None:
        raise ValueError("no samples")
    return value
