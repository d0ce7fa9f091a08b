"""Python's cyclic garbage collector, set for a process that runs for weeks.

``settle`` runs once, when a service process has started (``switchboard.cli.serve``):

1. What start-up built (the modules, the configuration, the application, its resources)
   lives as long as the process. After one last collection it is frozen (``gc.freeze``):
   no later collection scans it again. A router's takeover freezes what it loaded in the
   same way (``router.shell.recovery``).
2. The youngest generation is collected once ``YOUNG_THRESHOLD`` more container objects
   have been made than freed, where CPython's default is 700. A webhook or a batch makes
   and frees thousands of objects, and nearly all of them go by reference counting. At
   700, the collector still ran every 40 or so webhooks, at about 1.3 ms a time.
   Measured in one benchmark round of 11,000 webhooks at 1,000 msg/s
   (``tools/bench/webhook_bench.py``, three rounds each way):
   - the adapters spent 0.50 to 0.59 s collecting, about 50 µs per webhook (8% of
     their CPU); at 10,000, 0.05 s;
   - the router spent 0.23 to 0.27 s; at 10,000, 0.11 to 0.12 s.

   A router working through a backlog takes batches of up to 2,000 records, and each
   record's container objects live until its batch is handed to the writer: at 10,000 the
   collector went through each batch's live records several times, 285 to 300 ms of every
   100,000 messages (7% of the router's time, ``tools/bench/e2e_bench.py``); at 50,000,
   57 to 94 ms. At 2,000 webhooks a second, where batches are small, the two cost the same
   (CPU per message within 1%), and the router's resident memory was 2.4 MB higher.

Cyclic garbage then waits longer before it is freed: at most about ``YOUNG_THRESHOLD``
objects' worth, a few megabytes.

Apart from ``settle``, the immutable values a router's batch makes by the thousand (events,
engine records and effects, decoded records) are never tracked: their classes say
``gc=False`` (``tests/test_collector.py`` checks every one).
"""

from __future__ import annotations

import gc
from typing import Final

import structlog

log = structlog.get_logger(__name__)

YOUNG_THRESHOLD: Final = 50_000
"""Container objects made and not freed since the last collection before the youngest
generation is collected (CPython's default: 700)."""


def settle() -> None:
    """Freeze what exists now, after collecting what of it is garbage, and collect the
    youngest generation at ``YOUNG_THRESHOLD`` from now on (the module docstring)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    log.info("collector_settled", frozen=gc.get_freeze_count(), young_threshold=YOUNG_THRESHOLD)
