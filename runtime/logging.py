"""structlog, configured once: JSON in production, key=value in a terminal, nothing secret.

Every line of the process goes through the same processors: ours, and those of the
standard library's loggers (aiohttp, aiokafka, asyncpg, asyncio, warnings), which reach
structlog through the root handler. The rules, applied to every line before it is
rendered:

1. Customer content and identities under a known key (``text``, ``phone``, ``email``, …)
   become a short stable digest (``h:…``): a customer can be followed, not read.
2. Every other string is scrubbed: the values of the secrets the configuration names
   (every ``*_env`` variable, and the password of a URL) become ``[secret]``; bearer and
   basic credentials, API tokens (``sbt_…``) and the values of authorization, cookie,
   signature and token fields become ``[redacted]``; the query string of a URL becomes
   ``?[query]`` (Meta sends its verify token in one); emails and phone numbers, also
   percent-encoded, become digests. Bytes are logged as their length only.
3. Exceptions keep their type and traceback, never their message: the messages of a
   ``UnicodeDecodeError``, a ``KeyError``, an asyncpg error or an aiohttp parser error
   quote the input that caused them. Only our own classes may vouch for their message
   (``log_message_is_safe = True``), and only on our own loggers.
4. Library text is trusted less than ours: asyncio's lines keep their first line without
   the reprs of tasks and callbacks (those embed exceptions and arguments), and a
   client's malformed request (aiohttp's parser and payload errors) is a warning without
   traceback, not an error.
5. aiohttp's error lines, which a client can cause at will, pass a ``RateLimit``: at most
   ``per_window`` a minute per exception type; the next line let through says how many
   were left out (``suppressed``). The HTTP error middleware does the same for its own.

Names and message text have no pattern: they stay out because no code logs a body or a
profile, and rule 3 drops the messages that could quote one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets as secrets_module
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Any, TextIO

import msgspec
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

#: Keys whose values are customer content or identities: replaced by a short digest.
SENSITIVE_KEYS = frozenset(
    {
        "text",
        "body",
        "subject",
        "caption",
        "filename",
        "customer_address",
        "customer_id",
        "customer_name",
        "display_name",
        "user_id",
        "phone",
        "email",
        "from_",
        "to",
        "address",
        "sender",
        "recipient",
    }
)
#: Keys whose values are credentials, or carry them: never logged at all.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "headers",
        "password",
        "query",
        "query_string",
        "secret",
        "signature",
        "token",
    }
)
#: Keys our processors and renderers own; their values are never customer data.
#: ``event`` is scrubbed for library records only: ours are static names by convention.
_PLAIN_KEYS = frozenset({"event", "timestamp", "level", "logger", "_record", "_from_structlog"})
_NUMBERS = frozenset({int, float, bool})

SECRET_MASK = "[secret]"  # noqa: S105 -- the mask, not a secret
REDACTED = "[redacted]"
#: Shorter secret values are not masked: they would blank out ordinary words and numbers.
MIN_SECRET_CHARS = 6

_PHONE = re.compile(
    # Phone-like runs of 8 to 15 digits, grouped by spaces, dashes or parentheses. Not dots,
    # so that IP addresses and decimal numbers stay readable, nor a run inside dashed words,
    # so that UUIDs do (``…-2345-4678-…``); a percent-escape before the run (``%2B1415…``,
    # ``phone%3A…``) counts as a boundary.
    r"(?:(?<![\w.-])|(?<=%[0-9A-Fa-f]{2}))(?:\+|%2[Bb])?\(?[0-9](?:[ ()-]{0,2}[0-9]){7,14}"
    r"(?![\w.]|-\w)"
)
#: Cheap test that a string may hold a phone number at all (most values hold none): any
#: ``_PHONE`` match contains such a run.
_DIGIT_RUN = re.compile(r"[0-9][0-9 ()-]{7,}")
#: Shorter strings hold no secret, credential, address or number that we mask.
_SHORTEST_MASKED = 6
#: Strings a ``Redactor`` remembers as clean, and the longest it remembers (ids and names).
CLEAN_STRINGS_KEPT = 4096
CLEAN_STRING_MAX_CHARS = 64
#: Starts where a run of address characters starts, so that a long word is scanned once.
_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
_VALUE = r"[^\s,;&\"'<>]+"
_SCHEME = r"(?:bearer|basic)[ \t]+"
_CREDENTIALS = re.compile(
    # A name (kept) and the credential after it (replaced). A cookie header's value runs to
    # the end of the line: it holds several ``name=value``.
    r"(?i)(?P<kept>\b(?:"
    rf"{_SCHEME}(?={_VALUE})"
    r"|(?:authorization|proxy-authorization|x-twilio-signature|x-hub-signature(?:-256)?"
    r"|x-telegram-bot-api-secret-token|signature|token|verify_token|secret|password|api_key)"
    rf"[\"']?\s*[=:]\s*[\"']?(?:{_SCHEME})?"
    rf"))(?P<value>{_VALUE})"
    r"|(?P<cookie>\b(?:set-)?cookie[\"']?\s*[=:]\s*[\"']?)[^\n\"']+"
)
#: Lowercase words that must be present for ``_CREDENTIALS`` to match.
_CREDENTIAL_WORDS = (
    "bearer",
    "basic",
    "authorization",
    "signature",
    "token",
    "secret",
    "password",
    "api_key",
    "cookie",
)
_API_TOKEN = re.compile(r"sbt_[A-Za-z0-9_-]+")
#: A query string: ``?`` right after a path or host character, up to the next blank or
#: quote, holding at least one ``=``.
_QUERY = re.compile(r"\?(?<=[\w/%.-]\?)(?=[^\s\"'<>]*=)[^\s\"'<>]*")


_QUOTED = re.compile(
    r"(?<!\w)'(?:[^'\\]|\\.|'(?=\w))*(?:'(?!\w)|\\?$)"
    r"|(?<!\w)\"(?:[^\"\\]|\\.|\"(?=\w))*(?:\"(?!\w)|\\?$)"
)
"""What a reason quotes (``'Ann'``, not the apostrophe of ``the DM's``), escaped quotes
and quotes inside a word within included (``repr`` writes ``'Jo "J" O\\'Roe'``), and an
opening quote never closed (to the end)."""


def without_values(reason: str) -> str:
    """``reason`` as a log line or a dead letter may hold it: what it quotes left out."""
    return _QUOTED.sub("…", reason)


def fingerprint(value: object) -> str:
    """A stable tag so the same customer can be followed across log lines, keyed
    (``configure``'s ``digest_key``): without the key it cannot be reversed, not even for a
    phone number, whose every possible value could otherwise be hashed and compared."""
    return (
        "h:"
        + hashlib.blake2b(str(value).encode(), digest_size=6, key=_active.digest_key).hexdigest()
    )


LOG_ID_BYTES = 6
"""A ``new_log_id`` is twelve hex digits."""


def new_log_id() -> str:
    """A random id that log lines name and people look up (a token's, a failed
    request's): twelve hex digits, drawn again while rule 2 would take them for a phone
    number (all digits: about one draw in 280), so that the lines carry the id a client
    was given."""
    while _PHONE.search(drawn := secrets_module.token_hex(LOG_ID_BYTES)):
        pass
    return drawn


def _fingerprint_match(match: re.Match[str]) -> str:
    return fingerprint(match.group())


def _redact_credential(match: re.Match[str]) -> str:
    return (match.group("kept") or match.group("cookie")) + REDACTED


class Redactor:
    """Scrubs one string (rule 2 of the module docstring).

    One pattern per kind, each run only when a cheap test (a substring, a short regex)
    says the string may hold one: most logged values are short ids and names of states,
    and hold none. Order matters: known secrets first, whatever they sit in; query strings
    before emails and phone numbers, which they may hold.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = sorted(_secret_forms(secrets), key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, forms))) if forms else None
        self._clean: set[str] = set()
        """Strings found holding nothing to mask (a domain, an agent's id, a state's name
        come back on line after line): a string that needed masking is never kept, so
        this holds nothing the rules hide."""

    def scrub(self, text: str) -> str:
        if len(text) < _SHORTEST_MASKED or text in self._clean:
            return text
        scrubbed = self._scrubbed(text)
        if scrubbed is text and len(text) <= CLEAN_STRING_MAX_CHARS:
            if len(self._clean) >= CLEAN_STRINGS_KEPT:
                self._clean.clear()
            self._clean.add(text)
        return scrubbed

    def _scrubbed(self, text: str) -> str:
        if self._secrets is not None and self._secrets.search(text):
            text = self._secrets.sub(SECRET_MASK, text)
        if _mentions_credential(text.lower()):
            text = _CREDENTIALS.sub(_redact_credential, text)
        if "sbt_" in text:
            text = _API_TOKEN.sub("sbt_" + REDACTED, text)
        if "?" in text:
            text = _QUERY.sub("?[query]", text)
        if "@" in text or "%40" in text:
            text = _EMAIL.sub(_fingerprint_match, text)
        if _DIGIT_RUN.search(text):
            text = _PHONE.sub(_fingerprint_match, text)
        return text


def _mentions_credential(lowered: str) -> bool:
    for word in _CREDENTIAL_WORDS:  # noqa: SIM110 -- cheaper than any() over a generator
        if word in lowered:
            return True
    return False


def _secret_forms(secrets: Iterable[str]) -> set[str]:
    """Each secret as it may appear in a line: raw, percent-encoded, JSON-escaped."""
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) < MIN_SECRET_CHARS:
            continue
        forms.add(secret)
        forms.add(urllib.parse.quote(secret, safe=""))
        forms.add(urllib.parse.quote_plus(secret, safe=""))
        forms.add(json.dumps(secret)[1:-1])
        forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return forms


def secret_values(config: msgspec.Struct, environ: Mapping[str, str]) -> list[str]:
    """The secrets a configuration names: the value of every ``*_env`` field's variable,
    and the password of every URL in it (the database URL may carry one)."""
    found: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, msgspec.Struct):
            for name in node.__struct_fields__:
                value = getattr(node, name)
                if name.endswith("_env") and isinstance(value, str):
                    if secret := environ.get(value):
                        found.append(secret)
                elif isinstance(value, str) and "://" in value:
                    if password := urllib.parse.urlsplit(value).password:
                        found.append(urllib.parse.unquote(password))
                else:
                    visit(value)
        elif isinstance(node, Mapping):
            for item in node.values():
                visit(item)
        elif isinstance(node, list | tuple):
            for item in node:
                visit(item)

    visit(config)
    return found


# -- exceptions (rule 3) ---------------------------------------------------------------

_OUR_PACKAGES = ("router.", "adapters.", "schemas.", "switchboard.")


def describe_exception(error: BaseException, *, ours: bool = False) -> str:
    """The exception's type; with its message only when our own class vouches for it."""
    cls = type(error)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    if (
        ours
        and cls.__module__.startswith(_OUR_PACKAGES)
        and getattr(error, "log_message_is_safe", False)
    ):
        return f"{name}: {error}"
    return name


def format_exception(error: BaseException, *, ours: bool = False) -> str:
    """A traceback like Python's, each exception of the chain reduced to its type."""
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = error
    link = ""
    while current is not None and len(chain) < 16 and all(current is not e for e, _ in chain):
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = (
                current.__cause__,
                "The above exception was the direct cause of the following exception:",
            )
        elif not current.__suppress_context__:
            current, link = (
                current.__context__,
                "During handling of the above exception, another exception occurred:",
            )
        else:
            current = None
    lines: list[str] = []
    for position, (exc, _) in enumerate(reversed(chain)):
        if position:
            lines.append("\n" + chain[len(chain) - position][1] + "\n\n")
        if exc.__traceback__ is not None:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_tb(exc.__traceback__))
        lines.append(describe_exception(exc, ours=ours) + "\n")
    return "".join(lines).rstrip("\n")


def _exc_info(value: object) -> BaseException | None:
    if value is True:
        value = sys.exc_info()
    if isinstance(value, tuple) and len(value) == 3:
        value = value[1]
    return value if isinstance(value, BaseException) else None


def render_exception(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Our loggers' ``exc_info``: ``exception`` is a traceback without messages (rule 3)."""
    error = _exc_info(event_dict.pop("exc_info", None))
    if error is not None:
        event_dict["exception"] = format_exception(error, ours=True)
    return event_dict


# -- library records (rules 3 and 4) ----------------------------------------------------

#: Exceptions that mean the client sent a malformed request, as aiohttp reports them.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    HttpProcessingError,
    RequestPayloadError,
    ConnectionError,
)
_ASYNCIO_REPR = re.compile(r"\s*[(<].*")


def sanitize_library_record(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A standard-library record: its message scrubbed, its exception reduced to types."""
    record: logging.LogRecord | None = event_dict.get("_record")
    name = record.name if record is not None else ""
    event_dict["logger"] = name
    message = str(event_dict.get("event", ""))
    if name == "asyncio" or name.startswith("asyncio."):
        # "Exception in callback Handle._run(<args>)", "future: <Task … exception=…>"
        message = _ASYNCIO_REPR.sub("", message.partition("\n")[0])
    event_dict["event"] = _active.redactor.scrub(message)
    error = _exc_info(event_dict.pop("exc_info", None))
    if error is not None:
        if isinstance(error, CLIENT_ERRORS):
            event_dict["error"] = describe_exception(error)
        else:
            event_dict["exception"] = format_exception(error)
    suppressed = getattr(record, "suppressed", 0)
    if suppressed:
        event_dict["suppressed"] = suppressed
    return event_dict


class RateLimit:
    """At most ``per_window`` lines per key in each window; the first line let through in
    a later window learns how many were left out. Keys are a few kinds (an exception type,
    a status and route), bounded by ``max_keys`` in case a caller builds them from input."""

    def __init__(
        self,
        per_window: int = 10,
        window_seconds: float = 60.0,
        *,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_window = per_window
        self.window_seconds = window_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._windows: dict[Hashable, list[float]] = {}
        """key -> [window start, lines let through, lines left out]"""

    def admit(self, key: Hashable) -> int | None:
        """None: leave the line out. Else the number left out since the last one let through."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None and len(self._windows) >= self._max_keys:
            self._windows = {
                k: w for k, w in self._windows.items() if now - w[0] < self.window_seconds
            }
            if len(self._windows) >= self._max_keys:
                key = "(other)"
                window = self._windows.get(key)
        if window is None or now - window[0] >= self.window_seconds:
            suppressed = int(window[2]) if window is not None else 0
            self._windows[key] = [now, 1, 0]
            return suppressed
        if window[1] < self.per_window:
            window[1] += 1
            return 0
        window[2] += 1
        return None

    def write(
        self, method: Callable[..., Any], event: str, key: Hashable, /, **fields: Any
    ) -> None:
        """``method(event, **fields)`` (a logger's ``warning``, say) when ``admit(key)`` lets
        the line through, with ``suppressed``: how many were left out before it, if any."""
        suppressed = self.admit(key)
        if suppressed is not None:
            method(event, **fields, **({"suppressed": suppressed} if suppressed else {}))


class _LibraryErrorFilter(logging.Filter):
    """aiohttp's error lines: a malformed request is a warning; each type rate limited.
    aiokafka's warnings and errors: each of its messages rate limited (while the broker is
    away it writes one per connection attempt and fetch, hundreds a second)."""

    def __init__(self, limit: RateLimit) -> None:
        super().__init__()
        self._limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("aiokafka") and record.levelno >= logging.WARNING:
            kafka_suppressed = self._limit.admit((record.name, str(record.msg)))
            if kafka_suppressed is None:
                return False
            record.suppressed = kafka_suppressed
            return True
        if not record.name.startswith("aiohttp.") or not record.exc_info:
            return True
        error = record.exc_info[1]
        if isinstance(error, CLIENT_ERRORS):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        suppressed = self._limit.admit((record.name, type(error)))
        if suppressed is None:
            return False
        record.suppressed = suppressed
        return True


# -- the redaction processor (rules 1 and 2) --------------------------------------------


class _Active:
    """What ``configure`` set last. structlog's cached loggers (``cache_logger_on_first_use``)
    hold on to their processor list and output: both stay these same objects, so that a
    second ``configure`` (a test's) reaches loggers already in use."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.redactor = Redactor()
        self.stream: TextIO | None = None
        """None: whatever ``sys.stderr`` is when a line is written (it may be replaced
        after ``configure``, by a test runner's capture for one)."""
        self.processors: list[structlog.typing.Processor] = []
        self.digest_key = secrets_module.token_bytes(32)
        """The key of ``fingerprint``: the deployment's, else one of this process's own."""

    @property
    def output(self) -> TextIO:
        return sys.stderr if self.stream is None else self.stream

    def write(self, text: str) -> int:
        return self.output.write(text)

    def flush(self) -> None:
        self.output.flush()


_active = _Active()


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _active.redactor.scrub(value)
    if value is None or type(value) in _NUMBERS:
        return value
    # Sequences first: no sequence is an exception, bytes or a mapping, whose test (an ABC)
    # costs more, and lists are what lines hold most (a webhook's domains).
    if depth < 4 and isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, depth + 1) for item in value]
    if isinstance(value, BaseException):
        return describe_exception(value, ours=True)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes]"
    if depth < 4 and isinstance(value, Mapping):
        return {str(k): _redact_value(str(k).lower(), v, depth + 1) for k, v in value.items()}
    return _active.redactor.scrub(repr(value))


def _redact_value(key: str, value: Any, depth: int = 0) -> Any:
    if value is None:
        return None
    if key in SENSITIVE_KEYS:
        return fingerprint(value)
    if key in SECRET_KEYS:
        return REDACTED
    return _clean(value, depth)


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Runs on every line: the common cases (a number, a plain string) come first, inline.
    scrub = _active.redactor.scrub
    for key, value in event_dict.items():
        if value is None:
            continue
        rule = _KEY_RULES.get(key)
        if rule is None:
            kind = type(value)
            if kind is str:
                event_dict[key] = scrub(value)
            elif kind not in _NUMBERS:
                event_dict[key] = _clean(value)
        elif rule is _SENSITIVE:
            event_dict[key] = fingerprint(value)
        elif rule is _SECRET:
            event_dict[key] = REDACTED
    return event_dict


_SENSITIVE, _SECRET, _PLAIN = "sensitive", "secret", "plain"
_KEY_RULES: dict[str, str] = {
    **dict.fromkeys(_PLAIN_KEYS, _PLAIN),
    **dict.fromkeys(SECRET_KEYS, _SECRET),
    **dict.fromkeys(SENSITIVE_KEYS, _SENSITIVE),
}
"""Each key a rule names, with the rule ``redact`` applies first: one look-up per key."""


# -- configuration ----------------------------------------------------------------------


def add_secrets(secrets: Iterable[str]) -> None:
    """Mask these values too from now on (credentials a new configuration names)."""
    new = set(secrets) - _active.secrets
    if new:
        _active.secrets |= new
        _active.redactor = Redactor(_active.secrets)


_json_line = msgspec.json.Encoder(enc_hook=repr).encode


class _Stamp:
    """The UTC second last formatted (``YYYY-MM-DDTHH:MM:SS``)."""

    second = -1
    text = ""


def add_timestamp(
    _logger: object, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``timestamp``: ISO 8601 in UTC with microseconds (``2026-12-04T11:35:02.123456Z``).
    The date and time of day are formatted once a second: this runs for every line, and
    ``datetime.now(UTC).isoformat()`` cost four times as much."""
    now = time.time()
    second = int(now)
    if second != _Stamp.second:
        _Stamp.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _Stamp.second = second
    event_dict["timestamp"] = f"{_Stamp.text}.{int((now - second) * 1_000_000):06d}Z"
    return event_dict


def render_json(_logger: object, _name: str, event: structlog.typing.EventDict) -> str:
    """The line as one JSON object, in the order its keys were added; a value JSON has no
    form for becomes its ``repr`` (structlog's ``JSONRenderer`` does the same, at several
    times the cost: this runs for every line)."""
    return _json_line(event).decode()


def configure(
    log_format: str | None = None,
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    digest_key: str | None = None,
) -> None:
    """Configure structlog and the standard library once, for the whole process.

    ``secrets`` are masked wherever they appear (``secret_values`` finds the configured
    ones); ``stream`` receives every line (default: stderr); ``digest_key`` keys the customer
    digests (``fingerprint``; None: this process's own random key).
    """
    output = sys.stderr if stream is None else stream
    if log_format is None:
        log_format = "console" if output.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=output.isatty())
        if log_format == "console"
        else render_json
    )
    _active.secrets = set(secrets)
    if digest_key:
        # blake2b takes keys of at most 64 bytes: a longer secret is hashed down to one.
        _active.digest_key = hashlib.blake2b(digest_key.encode()).digest()
    _active.redactor = Redactor(_active.secrets)
    _active.stream = stream
    _active.processors[:] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_timestamp,
        structlog.processors.StackInfoRenderer(),
        render_exception,
        redact,
        renderer,
    ]
    structlog.configure(
        processors=_active.processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # One write per line (PrintLogger writes the newline apart, and library lines could
        # land in between).
        logger_factory=structlog.WriteLoggerFactory(_active),  # type: ignore[arg-type] # a file-like forwarder
        cache_logger_on_first_use=True,
    )
    # Library loggers (aiokafka, aiohttp, asyncpg, asyncio) at WARNING, through the same
    # redaction and renderer.
    handler = logging.StreamHandler(_active)  # a file-like forwarder to the current stream
    handler.addFilter(_LibraryErrorFilter(RateLimit()))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                add_timestamp,
                sanitize_library_record,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # Warnings (ResourceWarning reprs, deprecations) and uncaught exceptions would otherwise
    # be printed to stderr in full, messages included.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(cls: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    structlog.get_logger("switchboard").critical(
        "uncaught_exception", exception=format_exception(error.with_traceback(tb))
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)
