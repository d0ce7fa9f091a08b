"""A router's takeover of a partition, measured in a process of its own: what a real
takeover costs, without the memory the benchmark used to build the data.

``python -m tools.bench.takeover CONFIG_JSON OPEN`` starts a router on the configuration
(JSON of ``switchboard.config.Config``), waits until the partition's state is loaded and
the first new record applied, and prints JSON: ``seconds`` from start to that record, and
``rss_bytes_per_open_conversation``, the growth of the process's resident memory over
that time divided by ``OPEN``, the open conversations the domain holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import msgspec

from switchboard.config import Config
from tools.bench.e2e_bench import log_as_deployed, router


def resident_bytes() -> int:
    """This process's resident memory now (Linux: ``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def measure(config: Config, open_conversations: int) -> dict[str, float]:
    async with router(config) as worker:
        # The clients are up and the worker's loop has not loaded anything yet.
        rss_before = resident_bytes()
        while worker.first_applied_after_load is None:
            await asyncio.sleep(0.005)
        rss_after = resident_bytes()
        assert worker.last_load_started is not None
        seconds = worker.first_applied_after_load - worker.last_load_started
    return {
        "seconds": seconds,
        "rss_bytes_per_open_conversation": (rss_after - rss_before) / open_conversations,
    }


def main(argv: list[str]) -> int:
    log_as_deployed()
    config = msgspec.json.decode(argv[0], type=Config)
    print(json.dumps(asyncio.run(measure(config, int(argv[1])))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
