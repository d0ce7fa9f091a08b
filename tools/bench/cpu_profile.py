"""Where a benchmark process spends its CPU time: a sampling profiler on the process's own
CPU clock.

A wall-clock sampler (py-spy, say) counts a thread that is in a system call or waits
for a core as busy: on a loaded 2-core machine it gave a loopback ``socket.send`` 22% of
the router's samples, where this profiler, which samples only while the process runs on
a core (``ITIMER_PROF``: user and system time), gives it 3%. CPU time is what the
benchmark's per-message figures count, so this is the profile to cut them by.

``SWITCHBOARD_BENCH_CPU_PROFILE=DIR`` makes each service process of the webhook and
campaign benchmarks (``tools.bench.adapters_process``) write its profile to
``DIR/<roles>-<pid>.txt`` when it stops (a process killed writes nothing): one line per
distinct Python stack, outermost frame first, frames ``;``-separated, then the number of
samples (the "collapsed" format of flame graph tools).
``python -m tools.bench.cpu_profile FILE`` prints the functions with the most samples of
their own and the most in all.

The signal handler runs in the main thread at the next bytecode: time in a C call is
charged to the Python frame that made it, and time of other threads to whatever the main
thread runs then (the service's work is all on the event loop's thread).
"""

from __future__ import annotations

import collections
import signal
import sys
from pathlib import Path
from types import FrameType

INTERVAL_SECONDS = 0.004
"""CPU time between samples: 250 a second of CPU, under 1% of overhead. The kernel counts
the timer in its ticks: a shorter interval is rounded up to one (4 ms at 250 Hz)."""
ENVIRONMENT = "SWITCHBOARD_BENCH_CPU_PROFILE"


def frame_name(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_name} ({'/'.join(Path(code.co_filename).parts[-2:])}:{frame.f_lineno})"


class CpuProfile:
    """Samples the main thread's stack every ``interval`` seconds of the process's CPU
    time, from ``start`` to ``stop``."""

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.stacks: collections.Counter[tuple[str, ...]] = collections.Counter()

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)

    def _sample(self, _signum: int, frame: FrameType | None) -> None:
        names: list[str] = []
        while frame is not None:
            names.append(frame_name(frame))
            frame = frame.f_back
        names.reverse()
        self.stacks[tuple(names)] += 1

    def collapsed(self) -> str:
        return "".join(f"{';'.join(stack)} {count}\n" for stack, count in self.stacks.items())

    def write(self, path: Path) -> None:
        path.write_text(self.collapsed())


def read_collapsed(text: str) -> collections.Counter[tuple[str, ...]]:
    stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
    for line in text.splitlines():
        if line.strip():
            stack, count = line.rsplit(" ", 1)
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def summary(stacks: collections.Counter[tuple[str, ...]], top: int = 40) -> str:
    """The ``top`` functions by samples of their own (self) and in all (inclusive, each
    counted once per stack), as percentages of all samples; lines are ignored, so a
    function's samples add up over its lines."""
    total = sum(stacks.values()) or 1
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        functions = [name.rsplit(":", 1)[0] + ")" for name in stack]
        if functions:
            own[functions[-1]] += count
        for function in set(functions):
            inclusive[function] += count
    lines = [f"{total} samples", "-- self"]
    lines += [f"{count / total:6.1%} {name}" for name, count in own.most_common(top)]
    lines.append("-- inclusive")
    lines += [f"{count / total:6.1%} {name}" for name, count in inclusive.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(f"== {argument}")
        print(summary(read_collapsed(Path(argument).read_text())))
