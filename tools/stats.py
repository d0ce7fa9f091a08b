"""Figures over samples, for the tools' reports (the service computes its own in SQL and
Prometheus)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def sampled_percentile(values: Sequence[float], q: float) -> float:
    """``percentile`` of a run that must have samples (a benchmark's round)."""
    value = percentile(values, q)
    if value is None:
        raise ValueError("no samples")
    return value
