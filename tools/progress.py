"""Progress of a long run in a terminal: one bar redrawn in place when the output is a
terminal, else one plain line per step, so a log or a pipe gets readable lines instead of
carriage returns."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

BAR = 30


class TerminalProgress:
    """Call it with (done, total); ``what(done)`` names the step just done."""

    def __init__(
        self,
        label: str,
        unit: str,
        what: Callable[[int], str] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.what = what
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        step = f" ({self.what(done)})" if self.what is not None and done else ""
        if self.tty:
            filled = BAR * done // total if total else 0
            bar = "#" * filled + "." * (BAR - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {self.unit}{step}")
            self.stream.flush()
            self.drawn = True
            return
        print(f"{self.label}: {done}/{total} {self.unit}{step}", file=self.stream, flush=True)

    def finish(self) -> None:
        """End the bar's line (before the next output)."""
        if self.drawn:
            print(file=self.stream)
            self.drawn = False
