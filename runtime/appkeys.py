"""Typed keys of the resources the aiohttp application holds (one ``cleanup_ctx`` each)."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer

from runtime.config import ServiceConfig
from runtime.kafka import EventPublisher
from runtime.metrics import Metrics

CONFIG = web.AppKey("config", ServiceConfig)
ENVIRON: web.AppKey[Mapping[str, str]] = web.AppKey("environ")
METRICS = web.AppKey("metrics", Metrics)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
INBOUND_PUBLISHER = web.AppKey("inbound_publisher", EventPublisher)
AGENT_PUBLISHER = web.AppKey("agent_publisher", EventPublisher)
OUTBOUND_PUBLISHER = web.AppKey("outbound_publisher", EventPublisher)
