"""Dead letters for operators: list them, inspect one, re-drive it.

The router writes a ``dead_letters`` row (and a copy on ``switchboard.dlq``) for every record
it sets aside: undecodable, invalid, of an unknown domain, unappliable or unstorable. Once
the cause is fixed (the domain configured, a version that reads the record, the data
repaired by hand), re-driving publishes the record again, with its key, to the topic it came
from; the router then applies it like any other record, or sets it aside again with a new
row. The row remembers when it was last re-driven and how often.

An adapter sets aside, on ``switchboard.dlq`` only, a provider's request it accepted but
could not use (a signed webhook whose fields no event can hold): it needs only the broker
to accept webhooks. ``DeadLetterRecorder``, in the adapters process, copies those into the
table with their ``source`` (``webhook/<provider>``). They can be listed and inspected,
not re-driven: what they hold is the provider's request, not a record of ours, and only
the provider can send it again.

Both the admin API (``/v1/domains/{domain}/dead-letters``, a domain's own letters) and the
CLI (``switchboard dead-letters``, every domain) use these functions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from runtime import kafka
from runtime.config import ServiceConfig
from runtime.db import DATABASE_ERRORS
from runtime.kafka import BrokerUnavailable
from runtime.logging import without_values
from runtime.sealing import SEALED_WITH, SealingKey, Unreadable, open_value, sealed_with
from schemas import topics
from schemas.limits import domain_of_key

log = structlog.get_logger(__name__)

_COLUMNS = (
    'id, topic, partition, "offset", reason, domain, key, value, created_at, redriven_at,'
    " redrives, source, sealed_with"
)
_MARK_REDRIVEN = (
    "UPDATE dead_letters SET redriven_at = now(), redrives = redrives + 1"  # noqa: S608  # fixed column list
    f" WHERE id = $1 RETURNING {_COLUMNS}"
)
PAGE_MAX = 1000
PUBLISH_TIMEOUT = 10.0
"""Seconds a re-drive waits for the broker's acknowledgement."""


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter as the API and the CLI show it."""

    id: int
    topic: str
    """The topic the record was read from."""
    partition: int
    offset: int
    reason: str
    domain: str | None
    """The record's key when it is a domain id (every record of ours is keyed by domain)."""
    created_at: float
    """When it was set aside (seconds since the Unix epoch)."""
    redriven_at: float | None
    redrives: int
    size: int
    """Bytes of the record's value."""
    source: str | None = None
    """``webhook/<provider>``: a provider's request an adapter accepted but could not use,
    read from ``topic`` (the dead-letter topic); it cannot be re-driven. Null when the
    router or the egress set the record aside while reading ``topic``."""


class DeadLettersPage(msgspec.Struct, frozen=True, kw_only=True):
    dead_letters: list[DeadLetterView]
    next_after: int | None
    """Pass as ``after`` for the next page; null on the last page."""


class DeadLetterRecord(DeadLetterView, frozen=True, kw_only=True):
    """A dead letter with its record: ``value`` as text when it is UTF-8 (our records are
    JSON), else base64 with ``value_base64`` true; ``key`` likewise."""

    key: str | None
    key_base64: bool = False
    value: str
    value_base64: bool = False
    sealed: bool = False
    """The record was sealed (``runtime.sealing``): ``value`` is shown opened while its key
    exists, and as the sealed bytes (base64) once its customer was erased."""


@dataclass(frozen=True)
class _Row:
    record: asyncpg.Record

    def view(self) -> DeadLetterView:
        r = self.record
        return DeadLetterView(
            id=r["id"],
            topic=r["topic"],
            partition=r["partition"],
            offset=r["offset"],
            reason=r["reason"],
            domain=r["domain"],
            created_at=_epoch(r["created_at"]),
            redriven_at=None if r["redriven_at"] is None else _epoch(r["redriven_at"]),
            redrives=r["redrives"],
            size=len(r["value"] or b""),
            source=r["source"],
        )

    def full(self, opened: bytes | None = None) -> DeadLetterRecord:
        key, key_base64 = _text(self.record["key"])
        value, value_base64 = _text(opened or self.record["value"] or b"")
        return DeadLetterRecord(
            **msgspec.structs.asdict(self.view()),
            key=key,
            key_base64=key_base64,
            value=value or "",
            value_base64=value_base64,
            sealed=self.record["sealed_with"] is not None,
        )


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _text(data: bytes | None) -> tuple[str | None, bool]:
    if data is None:
        return None, False
    try:
        return data.decode(), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), True


async def list_dead_letters(
    conn: asyncpg.Connection, *, domain: str | None, after: int = 0, limit: int = 100
) -> DeadLettersPage:
    """Dead letters with an id above ``after``, oldest first, at most ``limit`` (up to
    ``PAGE_MAX``); a domain's own, or every one (``domain=None``, the CLI)."""
    limit = min(max(limit, 1), PAGE_MAX)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters"  # noqa: S608  # fixed column list
        " WHERE id > $1 AND ($2::text IS NULL OR domain = $2) ORDER BY id LIMIT $3",
        after,
        domain,
        limit,
    )
    views = [_Row(r).view() for r in rows]
    return DeadLettersPage(
        dead_letters=views, next_after=views[-1].id if len(views) == limit else None
    )


async def get_dead_letter(
    conn: asyncpg.Connection, letter_id: int, *, domain: str | None
) -> DeadLetterRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM dead_letters"  # noqa: S608  # fixed column list
        " WHERE id = $1 AND ($2::text IS NULL OR domain = $2)",
        letter_id,
        domain,
    )
    if row is None:
        return None
    opened = None
    key_id = row["sealed_with"]
    if key_id is not None and len(key_id) == 16:
        found = await conn.fetchval(
            "SELECT key FROM topic_keys WHERE key_id = $1", uuid.UUID(bytes=key_id)
        )
        keys = {} if found is None else {key_id: SealingKey(key_id, found)}
        with contextlib.suppress(Unreadable):
            opened = open_value(row["value"] or b"", key_id, keys)
    return _Row(row).full(opened)


REASON_MAX = 500
"""Characters of a reason kept (the row, the ``dlq_reason`` header)."""
UNOPENABLE = "sealed: it does not open (its key is gone with its customer, or its bytes changed)"
"""The reason of a sealed record that ``runtime.sealing.TopicKeys.opened`` cannot open:
it names no one, and its first word labels the dead letter as the router's do."""

INSERT_RECORD = (
    "INSERT INTO dead_letters"
    ' (topic, partition, "offset", reason, key, value, domain, source, sealed_with)'
    ' VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (topic, partition, "offset")'
    " WHERE source IS NOT NULL DO NOTHING"
)
"""Stores a ``DeadRecord`` (its ``row()``); a letter with a ``source`` is stored once."""


def invalid(error: Exception) -> str:
    """The reason of a record our decoder refused: its error without the values it quotes
    (msgspec names an unknown enum value: ``Invalid enum value 'Ann'``)."""
    return f"invalid: {without_values(str(error))}"


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """A record read from a topic and set aside: the router's (written with its batch,
    through the outbox), the egress worker's and the recorder's letters are all made of
    it."""

    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    """The record's own headers, kept on its copy on the dead-letter topic."""
    source: str | None = None
    """Who set aside what was never a record of ours (``webhook/<provider>``); then the
    record is its copy on the dead-letter topic."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", self.reason[:REASON_MAX])

    @classmethod
    def read(cls, record: ConsumerRecord[bytes, bytes], reason: str) -> DeadRecord:
        """``record``, read from its topic, set aside for ``reason``."""
        return cls(
            record.topic,
            record.partition,
            record.offset,
            reason,
            record.key,
            record.value,
            tuple(record.headers),
        )

    @property
    def domain(self) -> str | None:
        return domain_of_key(self.key)

    def row(self) -> tuple[object, ...]:
        """The values of ``INSERT_RECORD``."""
        return (
            self.topic,
            self.partition,
            self.offset,
            self.reason,
            self.key,
            self.value,
            self.domain,
            self.source,
            sealed_with(self.headers),
        )

    def dlq_headers(self) -> tuple[tuple[str, bytes], ...]:
        """Headers of its copy on ``switchboard.dlq``: where it came from and why, then the
        record's own (any of those of an earlier setting aside dropped)."""
        return (
            (topics.DLQ_REASON, self.reason.encode()),
            (topics.DLQ_TOPIC, self.topic.encode()),
            (topics.DLQ_PARTITION, str(self.partition).encode()),
            (topics.DLQ_OFFSET, str(self.offset).encode()),
            *((name, value) for name, value in self.headers if not name.startswith("dlq_")),
        )


class NotRedrivable(Exception):
    """The dead letter holds a provider's request (see the module docstring)."""


async def redrive(
    conn: asyncpg.Connection,
    producer: AIOKafkaProducer,
    letter_id: int,
    *,
    domain: str | None,
) -> DeadLetterView | None:
    """Publish the record again to the topic it came from, then mark the row. The row is
    locked meanwhile, so two operators re-driving it at once publish it once each, in
    turn, never concurrently; ``BrokerUnavailable`` leaves the row unmarked;
    ``NotRedrivable`` refuses an adapter's letter."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM dead_letters"  # noqa: S608  # fixed column list
            " WHERE id = $1 AND ($2::text IS NULL OR domain = $2) FOR UPDATE",
            letter_id,
            domain,
        )
        if row is None:
            return None
        if row["source"] is not None:
            raise NotRedrivable(row["source"])
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await producer.send_and_wait(
                    row["topic"],
                    row["value"] or b"",
                    key=row["key"],
                    # sealed as it came: the readers open it with the same key
                    headers=[]
                    if row["sealed_with"] is None
                    else [(SEALED_WITH, row["sealed_with"])],
                )
        except (KafkaError, TimeoutError) as error:
            raise BrokerUnavailable(type(error).__name__) from error
        marked = await conn.fetchrow(
            _MARK_REDRIVEN,
            letter_id,
        )
    assert marked is not None
    return _Row(marked).view()


RECORDED_SOURCE_PREFIX = "webhook/"
"""``dlq_source`` of the letters the recorder copies (``kafka.EventPublisher.dead_letter``)."""


class DeadLetterRecorder:
    """Copies the adapters' letters from ``switchboard.dlq`` into ``dead_letters``.

    Consumer group ``<consumer_group>-dead-letters``; offsets are committed once the rows
    are written, and the unique index makes a copy after a crash a no-op. A database
    failure rewinds to the committed offsets and tries again a second later: the letters
    wait on the topic meanwhile. The router's and the egress's letters, already in the
    table, are skipped.
    """

    def __init__(
        self, config: ServiceConfig, environ: Mapping[str, str], pool: asyncpg.Pool
    ) -> None:
        self._config = config
        self._environ = environ
        self._pool = pool
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        kafka_config = self._config.kafka
        consumer = AIOKafkaConsumer(
            self._config.topic(topics.DLQ),
            **kafka.client_options(self._config, self._environ),
            group_id=f"{kafka_config.consumer_group}-dead-letters",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=kafka_config.background_fetch_max_wait_ms,
            session_timeout_ms=kafka_config.session_timeout_ms,
            heartbeat_interval_ms=max(100, kafka_config.session_timeout_ms // 4),
        )
        started = await kafka.start_consumer_when_reachable(
            consumer, self._stopping, name="dead-letters"
        )
        if not started:
            return
        try:
            while not self._stopping.is_set():
                try:
                    batch = await kafka.fetch(
                        consumer, self._stopping, timeout_ms=500, max_records=500
                    )
                except KafkaError as error:
                    log.warning("dead_letter_fetch_failed", error=type(error).__name__)
                    await asyncio.sleep(1)
                    continue
                if not batch:
                    continue
                rows = [
                    row
                    for records in batch.values()
                    for record in records
                    if (row := _recorded_row(record)) is not None
                ]
                try:
                    if rows:
                        await self._pool.executemany(INSERT_RECORD, rows)
                    await consumer.commit()
                except DATABASE_ERRORS as error:
                    log.warning("dead_letter_record_failed", error=type(error).__name__)
                    await asyncio.sleep(1)
                    await consumer.seek_to_committed()
                except KafkaError as error:
                    log.warning("dead_letter_commit_failed", error=type(error).__name__)
        finally:
            await kafka.stop_consumer(consumer, name="dead-letters")


def _recorded_row(record: ConsumerRecord[bytes, bytes]) -> tuple[object, ...] | None:
    headers = dict(record.headers)
    source = headers.get(topics.DLQ_SOURCE, b"").decode("utf-8", "replace")
    if not source.startswith(RECORDED_SOURCE_PREFIX):
        return None
    reason = headers.get(topics.DLQ_REASON, b"").decode("utf-8", "replace").replace("\x00", "")
    return DeadRecord(
        record.topic,
        record.partition,
        record.offset,
        reason,
        record.key,
        record.value or b"",
        source=source[:100].replace("\x00", ""),
    ).row()
