"""Hot reload: the configuration version a process runs, and how a new one reaches it.

A change is committed in PostgreSQL first (``store``), then published on the compacted,
single-partition topic ``switchboard.config`` as the whole document with its version.
Every process follows that topic from its beginning and applies any version newer than
its own, so a new version reaches every router and adapter process within about one
fetch wait, without anyone polling PostgreSQL. At start a process takes the current
version from PostgreSQL (``switchboard.cli.prepare``) and publishes it again: a writer
that died between its commit and its publication is caught up by the next start, and the
others ignore a version they run already.

Applying a version hands each part of the process its section at once (``subscribe``):
the adapters' endpoints, the web chat sites, the egress, the API's domains, and the
router, which applies it whole between two batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from runtime.kafka import BrokerUnavailable
from runtime.metrics import Metrics
from switchboard.config import ControlDocument

log = structlog.get_logger(__name__)

CONFIG_KEY = b"config"
"""Key of every record of the configuration topic: compaction keeps the latest one."""


class ConfigRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record of the configuration topic."""

    version: int
    document: ControlDocument


_RECORD_DECODER = msgspec.json.Decoder(ConfigRecord)

Subscriber = Callable[[ControlDocument, int], None]


class LiveConfig:
    """The version this process runs; subscribers get every newer one, in order."""

    def __init__(self, version: int, document: ControlDocument, metrics: Metrics) -> None:
        self.version = version
        self.document = document
        self._subscribers: list[Subscriber] = []
        self._metrics = metrics
        metrics.config_version.set(version)
        metrics.config_applied.set(time.time())

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def apply(self, version: int, document: ControlDocument) -> bool:
        """Run ``version`` if it is newer than the current one; True if it was."""
        if version <= self.version:
            return False
        self.version, self.document = version, document
        for subscriber in self._subscribers:
            subscriber(document, version)
        self._metrics.config_version.set(version)
        self._metrics.config_applied.set(time.time())
        log.info("config_version_applied", version=version, domains=len(document.domains))
        return True


class ConfigTopic:
    """Publishes versions on the configuration topic and follows it."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, timeout: float = 5.0) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout
        self._retrying: asyncio.Task[None] | None = None

    def retry_later(self, live: LiveConfig) -> None:
        """Publish the version this process runs once the broker takes it (a change was
        stored but its publication failed)."""
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry(live))

    async def _retry(self, live: LiveConfig) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self.publish(live.version, live.document)
            except BrokerUnavailable:
                delay = min(delay * 2, 30.0)
                continue
            log.info("config_published", version=live.version)
            return

    async def close(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()

    @property
    def topic(self) -> str:
        return self._topic

    async def publish(self, version: int, document: ControlDocument) -> None:
        """Send the version and wait for the broker's acknowledgement."""
        value = msgspec.json.encode(ConfigRecord(version=version, document=document))
        try:
            async with asyncio.timeout(self._timeout):
                await (await self._producer.send(self._topic, value=value, key=CONFIG_KEY))
        except (KafkaError, OSError, TimeoutError) as error:
            raise BrokerUnavailable(
                f"broker did not acknowledge: {type(error).__name__}"
            ) from error

    async def follow(self, consumer: AIOKafkaConsumer, live: LiveConfig) -> None:
        """Apply every newer version read by ``consumer`` (assigned to the topic's only
        partition, from its beginning), until cancelled."""
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000)
            except KafkaError as error:
                log.warning("config_fetch_failed", error=type(error).__name__)
                await asyncio.sleep(1)
                continue
            newest: ConfigRecord | None = None
            for records in batch.values():
                for record in records:
                    try:
                        decoded = _RECORD_DECODER.decode(record.value or b"")
                    except (msgspec.DecodeError, msgspec.ValidationError) as error:
                        # A version this process cannot read (a newer release's?): it keeps
                        # the one it runs rather than stop.
                        log.error(
                            "config_record_unreadable", offset=record.offset, error=str(error)[:200]
                        )
                        continue
                    if newest is None or decoded.version > newest.version:
                        newest = decoded
            if newest is not None:
                live.apply(newest.version, newest.document)


LIVE_CONFIG = web.AppKey("live_config", LiveConfig)
CONFIG_TOPIC = web.AppKey("config_topic", ConfigTopic)
