"""Input made under a configuration version the router has not applied yet waits for it.

An adapter applies a new runtime configuration version before it publishes anything made
under it, and stamps each record with the version (``topics.CONFIG_VERSION``). A record
may then name a queue or a domain that only that version has: the router cuts each
partition's batch before the first such record, seeks back to it and pauses the partition
until it applies that version, for at most ``CONFIG_WAIT_SECONDS``.
"""

from __future__ import annotations

import time

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas import topics

log = structlog.get_logger(__name__)

CONFIG_WAIT_SECONDS = 30.0
"""Longest a router holds input made under a configuration version it has not received:
beyond it the records are applied under the version it has (a domain it does not know
then dead-letters them, a queue it does not know routes to the default queue)."""


class ConfigHold:
    """The partitions paused for a configuration version, and which version."""

    def __init__(self) -> None:
        self.awaited: tuple[int, float] | None = None
        """(version, since when): input partitions are paused until the loop applies this
        version, which an adapter applied before publishing what they hold next."""
        self.paused: set[TopicPartition] = set()
        self.given_up = 0
        """The newest version the loop stopped waiting for (its records are applied)."""

    def hold(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        applied: int,
    ) -> None:
        """Cut each partition's records of ``fetched`` before the first one made under a
        version newer than ``applied`` (the version the loop applies), and pause it."""
        awaited = self.awaited
        if awaited is not None and (
            awaited[0] <= applied or time.monotonic() - awaited[1] > CONFIG_WAIT_SECONDS
        ):
            if awaited[0] > applied:
                log.warning("config_not_received", version=awaited[0], have=applied)
                self.given_up = awaited[0]
            self.awaited = None
            consumer.resume(*(self.paused & consumer.assignment()))
            self.paused.clear()
        accepted = max(applied, self.given_up)
        for tp, records in fetched.items():
            for index, record in enumerate(records):
                version = topics.config_version_of(record.headers)
                if version is None or version <= accepted:
                    continue
                awaited = self.awaited
                self.awaited = (
                    (version, time.monotonic())
                    if awaited is None
                    else (max(version, awaited[0]), awaited[1])
                )
                del records[index:]
                consumer.seek(tp, record.offset)
                consumer.pause(tp)
                self.paused.add(tp)
                break
