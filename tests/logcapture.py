"""``runtime.logging`` configured as the CLI configures it, its output in a buffer."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import structlog

from runtime import logging as logs


@contextlib.contextmanager
def captured_logs(
    secrets: list[str], library_levels: dict[str, int] | None = None
) -> Iterator[io.StringIO]:
    """``runtime.logging.configure`` as the CLI calls it, its output in a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_hooks = (sys.excepthook, threading.excepthook)
    saved_structlog = {**structlog.get_config()}
    saved_structlog["processors"] = list(saved_structlog["processors"])
    levels = library_levels or {}
    saved_levels = {name: logging.getLogger(name).level for name in levels}
    buffer = io.StringIO()
    logs.configure("json", "DEBUG", secrets=secrets, stream=buffer)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield buffer
    finally:
        logs.configure()  # loggers cached meanwhile write to stderr again, whatever it is then
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        sys.excepthook, threading.excepthook = saved_hooks
        logging.captureWarnings(False)
        for name, saved in saved_levels.items():
            logging.getLogger(name).setLevel(saved)


def lines_of(buffer: io.StringIO) -> list[dict[str, Any]]:
    """The captured JSON lines, decoded."""
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
