"""Typed keys of the resources the aiohttp application holds (one ``cleanup_ctx`` each)."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer

from adapters.webchat import WebchatHub
from switchboard.config import Config
from switchboard.kafka import EventPublisher
from switchboard.metrics import Metrics

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
INBOUND_PUBLISHER = web.AppKey("inbound_publisher", EventPublisher)
AGENT_PUBLISHER = web.AppKey("agent_publisher", EventPublisher)
WEBCHAT_HUB = web.AppKey("webchat_hub", WebchatHub)
OUTBOUND_PUBLISHER = web.AppKey("outbound_publisher", EventPublisher)
