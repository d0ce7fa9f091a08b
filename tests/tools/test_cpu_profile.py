"""The benchmark's CPU profiler samples CPU time, not wall time, and writes stacks that its
summary reads back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tools.bench.cpu_profile import CpuProfile, read_collapsed, summary


def busy(seconds: float) -> int:
    total, end = 0, time.process_time() + seconds
    while time.process_time() < end:
        total += sum(range(200))
    return total


def idle(seconds: float) -> None:
    time.sleep(seconds)


def test_samples_count_cpu_time_and_name_the_busy_function(tmp_path: Path) -> None:
    profile = CpuProfile()
    profile.start()
    try:
        idle(0.3)
        busy(0.3)
    finally:
        profile.stop()
    path = tmp_path / "profile.txt"
    profile.write(path)
    stacks = read_collapsed(path.read_text())
    assert stacks == profile.stacks
    in_busy = sum(count for stack, count in stacks.items() if any("busy (" in f for f in stack))
    in_idle = sum(count for stack, count in stacks.items() if any("idle (" in f for f in stack))
    # 0.3 s of CPU at one sample per 4 ms; sleeping costs no CPU, so draws (almost) none.
    assert in_busy >= 50
    assert in_idle <= in_busy // 20
    text = summary(stacks)
    assert f"{sum(stacks.values())} samples" in text
    inclusive = text.split("-- inclusive")[1]
    assert "busy (tools/test_cpu_profile.py)" in inclusive


def test_the_command_line_prints_the_summary_of_a_written_profile(tmp_path: Path) -> None:
    """``python -m tools.bench.cpu_profile FILE``, as the README shows it."""
    profile = CpuProfile()
    profile.start()
    try:
        busy(0.2)
    finally:
        profile.stop()
    path = tmp_path / "router-1.txt"
    profile.write(path)
    printed = subprocess.run(
        [sys.executable, "-m", "tools.bench.cpu_profile", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert printed.startswith(f"== {path}\n{sum(profile.stacks.values())} samples\n-- self\n")
    assert "busy (tools/test_cpu_profile.py)" in printed
