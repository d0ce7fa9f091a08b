"""structlog, configured once: JSON in production, key=value in a terminal.

A redaction processor keeps customer data out of logs: message bodies, phone numbers and
email addresses never appear in clear, whatever key they are logged under.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys whose values are customer content or identities: replaced by a short digest.
SENSITIVE_KEYS = frozenset(
    {
        "text",
        "body",
        "subject",
        "customer_address",
        "phone",
        "email",
        "from_",
        "to",
        "address",
        "sender",
        "recipient",
    }
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: Phone-like runs of 8 to 15 digits, optionally grouped by spaces or dashes; dots are
#: not allowed so that IP addresses and decimal numbers stay readable.
_PHONE = re.compile(r"(?<![\w.])\+?\d(?:[ -]?\d){7,14}(?![\w.])")


def fingerprint(value: object) -> str:
    """A stable, non-reversible tag so the same customer can be followed across log lines."""
    return "h:" + hashlib.blake2b(str(value).encode(), digest_size=6).hexdigest()


def _scrub(text: str) -> str:
    return _PHONE.sub(
        lambda m: fingerprint(m.group()), _EMAIL.sub(lambda m: fingerprint(m.group()), text)
    )


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if key in SENSITIVE_KEYS and value is not None:
            event_dict[key] = fingerprint(value)
        elif isinstance(value, str) and key not in ("timestamp", "level", "logger"):
            event_dict[key] = _scrub(value)
    return event_dict


def configure(log_format: str | None = None, level: str = "INFO") -> None:
    """Configure structlog and the standard library once, for the whole process."""
    if log_format is None:
        log_format = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Library loggers (aiokafka, aiohttp) at WARNING, through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
