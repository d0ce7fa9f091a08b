"""Under load, the router's loop lets records gather between its batches.

Every batch costs the router, PostgreSQL and the broker a fixed amount besides its records'
own work: a fetch, a transaction, a produce request, the bookkeeping around them. At a few
hundred records a second the loop fetches as often as records come, one or two a batch:
latency is as low as it gets, and the fixed costs take little of a core. At thousands a
second they are a large share of the machine (measured on 2 cores at 2,000 webhooks a
second: a fetch every 7 ms, 14 records a batch, and each batch about 3.5 ms of CPU between
the three processes: ``tools/bench/README.md`` has the figures).

So while records come at ``router.gather_above_per_s`` a second or more (the partitions the
process owns together, counted over windows of ``WINDOW_SECONDS``, or ``WINDOW_INTERVALS``
gathering intervals when longer, ``SUSTAINED_WINDOWS`` in a row), the loop takes a batch
no sooner than ``router.gather_ms`` after it took the previous one: fewer, larger batches.
The consumer fetches as soon as a batch is taken and holds that fetch until the next, so a
record waits up to twice ``gather_ms`` longer (one interval in the broker, one in the
consumer's hands). Below that rate nothing waits. A wait ends at the next engine deadline:
timers fire on time, gathering or not.

Pure: the loop passes the monotonic clock's readings.
"""

from __future__ import annotations

import math

WINDOW_SECONDS = 1.0
"""How long the arrival rate is counted over before it is decided again, at least."""
SUSTAINED_WINDOWS = 2
"""Windows in a row at the threshold rate before the loop gathers: a burst (a backlog read
after a restart, a campaign's first second) is not load, and leaves latency alone."""
WINDOW_INTERVALS = 4
"""Gathering intervals a window spans, at least: a batch taken after a wait holds what the
consumer fetched an interval before, so a window of one interval could count none of what
came in it."""


class Gathering:
    """Whether the loop gathers records now, and how long it waits before a fetch."""

    def __init__(self, gather_ms: int, above_per_s: int) -> None:
        self.interval = gather_ms / 1000
        self.above_per_s = above_per_s
        self.window = max(WINDOW_SECONDS, WINDOW_INTERVALS * self.interval)
        self.active = False
        """Gathering: the latest ``SUSTAINED_WINDOWS`` windows' rates were at least
        ``above_per_s``."""
        self.rate = 0.0
        """Records per second the latest window counted."""
        self._last_fetch = -math.inf
        self._window_started: float | None = None
        self._counted = 0
        self._fast_windows = 0

    def wait(self, now: float, due_in: float | None) -> float:
        """Seconds to wait before the next fetch (0: at once); ``due_in``: seconds until the
        next engine deadline (None: none)."""
        if not self.active:
            return 0.0
        wait = self._last_fetch + self.interval - now
        if due_in is not None:
            wait = min(wait, due_in)
        return max(0.0, wait)

    def fetched(self, records: int, started: float) -> None:
        """A fetch that started at ``started`` gave ``records`` records (empty fetches
        count too: they are how the rate falls)."""
        self._last_fetch = started
        if self._window_started is None:
            self._window_started = started
        self._counted += records
        elapsed = started - self._window_started
        if elapsed >= self.window:
            self.rate = self._counted / elapsed
            self._fast_windows = self._fast_windows + 1 if self.rate >= self.above_per_s else 0
            self.active = self.interval > 0 and self._fast_windows >= SUSTAINED_WINDOWS
            self._window_started, self._counted = started, 0
