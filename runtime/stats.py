"""Figures over samples (reports of the tools, the configuration API's dry run, the wait estimate of
the API's queue views and of the router's hand-offs; the
service's live figures come from SQL and Prometheus)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

ESTIMATE_WINDOW_SECONDS = 3600.0
"""Recent assignments measured for waits and throughput."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def estimate_wait(
    waiting: int, free_slots: int, agents_online: int, recent_waits: Sequence[float]
) -> float | None:
    """Expected wait of a conversation arriving now in the queue.

    - Nobody online to serve the queue: unknown (None).
    - More free slots than waiting conversations: it would be handed out at once, so the
      estimate is the median wait of the queue's assignments of the last hour (which
      includes the preferred-agent holds), or 0 without any.
    - Otherwise the conversation joins the line behind ``waiting`` others, served at the
      queue's recent throughput ``len(recent_waits) / window``: ``(waiting + 1 -
      free_slots) / throughput``, and never less than the recent median wait; with no
      assignment in the window there is no throughput to measure: unknown (None).

    A deliberately simple estimator (Little's law on the last hour); it does not model
    channels, skills or the fallback ladder separately.
    """
    if agents_online == 0:
        return None
    median = statistics.median(recent_waits) if recent_waits else 0.0
    if free_slots > waiting:
        return round(median, 3)
    if not recent_waits:
        return None
    throughput = len(recent_waits) / ESTIMATE_WINDOW_SECONDS
    return round(max(median, (waiting + 1 - free_slots) / throughput), 3)
