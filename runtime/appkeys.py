"""Typed keys of the resources the aiohttp application holds (one ``cleanup_ctx`` each)."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer

from runtime.config import ServiceConfig
from runtime.kafka import EventPublisher
from runtime.metrics import Metrics
from runtime.sealing import TopicKeys
from runtime.tasks import TaskFailures

CONFIG = web.AppKey("config", ServiceConfig)
ENVIRON: web.AppKey[Mapping[str, str]] = web.AppKey("environ")
METRICS = web.AppKey("metrics", Metrics)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
TOPIC_KEYS = web.AppKey("topic_keys", TopicKeys)
"""The process's one cache of topic keys (``runtime.sealing``), made with the pool."""
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
INBOUND_PUBLISHER = web.AppKey("inbound_publisher", EventPublisher)
AGENT_PUBLISHER = web.AppKey("agent_publisher", EventPublisher)
OUTBOUND_PUBLISHER = web.AppKey("outbound_publisher", EventPublisher)
TASK_FAILURES = web.AppKey("task_failures", TaskFailures)
"""The background tasks that failed (``runtime.tasks.TaskFailures``): the process stops."""


def sealing_keys(app: web.Application) -> TopicKeys | None:
    """What the app's publishers seal with: None when ``kafka.seal_personal_data`` is off."""
    return app[TOPIC_KEYS] if app[CONFIG].kafka.seal_personal_data else None
