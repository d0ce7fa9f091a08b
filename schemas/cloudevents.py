"""CloudEvents 1.0 attributes carried as Kafka headers (binary content mode)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from schemas.common import Event

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
_SPEC_VERSION_BYTES = SPEC_VERSION.encode()
_CONTENT_TYPE_BYTES = CONTENT_TYPE.encode()


class CloudEventHeaders(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    source: str
    type: str
    time: str
    specversion: str = SPEC_VERSION
    subject: str | None = None
    content_type: str = CONTENT_TYPE


def encode_headers(
    event: Event, *, source: str, subject: str | None = None
) -> list[tuple[str, bytes]]:
    """Kafka headers for ``event`` per the CloudEvents Kafka protocol binding."""
    headers = [
        ("ce_specversion", _SPEC_VERSION_BYTES),
        ("ce_id", event.id.encode()),
        ("ce_source", _encoded_source(source)),
        ("ce_type", _type_of(type(event))),
        ("ce_time", _rfc3339(event.occurred_at)),
        ("content-type", _CONTENT_TYPE_BYTES),
    ]
    if subject is not None:
        headers.append(("ce_subject", subject.encode()))
    return headers


@functools.cache
def type_name(cls: type[Event]) -> str:
    """The CloudEvents type of an event class: its msgspec tag. Cached: msgspec builds a
    class's ``__struct_config__`` anew at every access."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str), f"{cls.__name__} has no tag"
    return tag


@functools.cache
def _type_of(cls: type[Event]) -> bytes:
    return type_name(cls).encode()


@functools.cache
def _encoded_source(source: str) -> bytes:
    return source.encode()  # a process publishes under one or two sources


_TYPE_AT = 3
"""Where ``encode_headers`` puts ``ce_type``."""


def event_type(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """The ``ce_type`` of a record's headers (None: it has none): looked for where
    ``encode_headers`` puts it first, as counting published events reads every one."""
    if len(headers) > _TYPE_AT and headers[_TYPE_AT][0] == "ce_type":
        return headers[_TYPE_AT][1]
    for name, value in headers:
        if name == "ce_type":
            return value
    return None


class _Last:
    """The time last written and its text, set together (one assignment)."""

    written: tuple[float, bytes] = (math.nan, b"")


def _rfc3339(epoch_seconds: float) -> bytes:
    """``datetime.fromtimestamp(epoch_seconds, UTC).isoformat()``, byte for byte, with the
    second's text made once (``_second``) and the microseconds rounded as ``datetime``
    rounds them (half to even, carried into the next second). The router's events of one
    batch share their time (``_Last``); an adapter's events each have a time of their own,
    which a cache of whole times missed on every webhook."""
    last, text = _Last.written
    if epoch_seconds != last:
        text = _written(epoch_seconds)
        _Last.written = (epoch_seconds, text)
    return text


def _written(epoch_seconds: float) -> bytes:
    fraction, whole = math.modf(epoch_seconds)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    day_and_time, offset = _second(int(whole))
    if not micros:
        return day_and_time + offset
    return b"%s.%06d%s" % (day_and_time, micros, offset)


@functools.lru_cache(maxsize=64)
def _second(epoch_second: int) -> tuple[bytes, bytes]:
    """A second's ISO 8601 text, split before its UTC offset."""
    text = datetime.fromtimestamp(epoch_second, UTC).isoformat().encode()
    return text[:-6], text[-6:]


def decode_headers(headers: Sequence[tuple[str, bytes]]) -> CloudEventHeaders:
    """Read the CloudEvents attributes back; raises ``ValueError`` when one is missing."""
    values = {name: value.decode("utf-8", "replace") for name, value in headers}
    try:
        return CloudEventHeaders(
            id=values["ce_id"],
            source=values["ce_source"],
            type=values["ce_type"],
            time=values["ce_time"],
            specversion=values["ce_specversion"],
            subject=values.get("ce_subject"),
            content_type=values.get("content-type", CONTENT_TYPE),
        )
    except KeyError as missing:
        raise ValueError(f"missing CloudEvents header {missing.args[0]}") from None


def encode(event: Event) -> bytes:
    return msgspec.json.encode(event)
