"""``build_app``: wires configuration, clients, adapters, router and API into one aiohttp app.

Each resource is a ``cleanup_ctx`` entry under a typed ``AppKey`` (``switchboard.appkeys``),
so start-up and shutdown happen in order, and tests build the app the same way. Roles
select what runs in the process: ``adapters`` (webhooks, web chat, egress), ``router``
(the routing loop and the agent API), or both (``switchboard run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator, Mapping, Sequence

import msgspec
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client.aiohttp import make_aiohttp_handler

from adapters.base import BadRequest, BrokerUnavailable, DeadLetter
from adapters.webchat import WebchatHub, identity_secret, parse_message, socket_session
from adapters.webhooks import WebhookContext, read_body, refuse_encoded_bodies, webhook_routes
from router.api import setup_api
from router.api.routes import json_error
from router.shell.worker import RouterWorker
from schemas import OUTBOUND_DECODER, InboundEvent, ReplyRequested
from switchboard import db, kafka
from switchboard.appkeys import (
    AGENT_PUBLISHER,
    CONFIG,
    DB_POOL,
    INBOUND_PUBLISHER,
    METRICS,
    PRODUCER,
    WEBCHAT_HUB,
)
from switchboard.config import Config
from switchboard.dead_letters import DeadLetterRecorder
from switchboard.egress import EgressWorker
from switchboard.http_errors import setup_errors
from switchboard.metrics import Metrics
from switchboard.nonces import PostgresNonces
from switchboard.readiness import Readiness

log = structlog.get_logger(__name__)


class Role(enum.StrEnum):
    ADAPTERS = "adapters"
    ROUTER = "router"


ROUTER_WORKER = web.AppKey("router_worker", RouterWorker)
READINESS = web.AppKey("readiness", Readiness)
ENVIRON: web.AppKey[Mapping[str, str]] = web.AppKey("environ")


def build_app(
    config: Config,
    environ: Mapping[str, str],
    *,
    roles: frozenset[Role] = frozenset(Role),
    metrics: Metrics | None = None,
) -> web.Application:
    app = web.Application(
        client_max_size=config.http.max_body_bytes, middlewares=[refuse_encoded_bodies]
    )
    setup_errors(app)
    app[CONFIG] = config
    app[ENVIRON] = dict(environ)
    app[METRICS] = metrics or Metrics()
    app[WEBCHAT_HUB] = WebchatHub()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_producer)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(app[METRICS].registry))
    if Role.ADAPTERS in roles:
        app.cleanup_ctx.append(_webchat_replies)
        app.cleanup_ctx.append(_egress)
        app.cleanup_ctx.append(_dead_letter_recorder)
        app.router.add_routes(_adapter_routes(app))
    if Role.ROUTER in roles:
        app.cleanup_ctx.append(_router_worker)
        setup_api(app)
    app.cleanup_ctx.append(_readiness)  # last: it reads the router worker, when there is one
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    assert config.database.url, "the database URL is resolved before the app is built"
    pool = await db.create_pool(
        config.database.url,
        min_size=config.database.pool_min_size,
        max_size=config.database.pool_max_size,
    )
    app[DB_POOL] = pool
    yield
    await pool.close()


async def _producer(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    producer = kafka.make_producer(config, app[ENVIRON])
    await producer.start()
    app[PRODUCER] = producer
    app[INBOUND_PUBLISHER] = kafka.EventPublisher(
        producer,
        config.topic(kafka.INBOUND),
        config.source,
        dead_letter_topic=config.topic(kafka.DLQ),
    )
    app[AGENT_PUBLISHER] = kafka.EventPublisher(producer, config.topic(kafka.AGENTS), config.source)
    yield
    await producer.stop()


async def _router_worker(app: web.Application) -> AsyncIterator[None]:
    worker = RouterWorker(app[CONFIG], app[ENVIRON], app[DB_POOL], app[PRODUCER], app[METRICS])
    app[ROUTER_WORKER] = worker
    task = asyncio.create_task(worker.run(), name="router-worker")
    yield
    worker.stop()
    try:
        await asyncio.wait_for(task, timeout=30)
    except TimeoutError:
        log.error("router_stop_timed_out")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _egress(app: web.Application) -> AsyncIterator[None]:
    worker = EgressWorker(app[CONFIG], app[ENVIRON], app[DB_POOL], app[PRODUCER], app[METRICS])
    task = asyncio.create_task(worker.run(), name="egress")
    yield
    worker.stop()
    try:
        await asyncio.wait_for(task, timeout=30)
    except TimeoutError:
        log.error("egress_stop_timed_out")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _dead_letter_recorder(app: web.Application) -> AsyncIterator[None]:
    recorder = DeadLetterRecorder(app[CONFIG], app[ENVIRON], app[DB_POOL])
    task = asyncio.create_task(recorder.run(), name="dead-letter-recorder")
    yield
    recorder.stop()
    try:
        await asyncio.wait_for(task, timeout=30)
    except TimeoutError:
        log.error("dead_letter_recorder_stop_timed_out")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _webchat_replies(app: web.Application) -> AsyncIterator[None]:
    """Every adapter instance reads all replies and hands web chat ones to its sockets."""
    config = app[CONFIG]
    hub = app[WEBCHAT_HUB]
    consumer = AIOKafkaConsumer(
        config.topic(kafka.OUTBOUND),
        **kafka.client_options(config, app[ENVIRON]),
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=config.kafka.fetch_max_wait_ms,
    )
    await consumer.start()

    async def pump() -> None:
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000)
            except KafkaError as error:
                log.warning("webchat_replies_fetch_failed", error=type(error).__name__)
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    try:
                        reply = OUTBOUND_DECODER.decode(record.value or b"")
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        continue  # the egress worker dead-letters it
                    domain = config.domains.get(reply.domain)
                    if (
                        isinstance(reply, ReplyRequested)
                        and domain is not None
                        and reply.channel == "webchat"
                    ):
                        await hub.deliver(reply, domain.webchat)

    task = asyncio.create_task(pump(), name="webchat-replies")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await hub.close_all()
    await consumer.stop()


class _StartedPublisher:
    """The app's publisher once started: routes are built before the producer exists."""

    def __init__(self, app: web.Application, key: web.AppKey[kafka.EventPublisher]) -> None:
        self._app = app
        self._key = key

    async def publish(self, events: Sequence[InboundEvent]) -> None:
        await self._app[self._key].publish(events)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await self._app[self._key].dead_letter(letters)


def _adapter_routes(app: web.Application) -> list[web.RouteDef]:
    config = app[CONFIG]
    metrics = app[METRICS]
    publisher = _StartedPublisher(app, INBOUND_PUBLISHER)
    context = WebhookContext(
        channels=config.channels,
        environ=app[ENVIRON],
        publisher=publisher,
        nonces=PostgresNonces(lambda: app[DB_POOL]),
        metrics=metrics,
        public_url=config.http.public_url,
        max_body_bytes=config.http.max_body_bytes,
    )

    async def post_webchat_message(request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        domain_config = config.domains.get(domain)
        if domain_config is None:
            return json_error(404, f"unknown domain {domain!r}")
        try:
            body = await read_body(request, config.http.max_body_bytes)
            secret = identity_secret(domain_config.webchat, app[ENVIRON])
            event = parse_message(domain, domain_config.webchat, body, secret, time.time())
        except BadRequest as error:
            metrics.webhook_requests.labels("webchat", "bad_request").inc()
            return json_error(error.status, error.reason)
        try:
            await publisher.publish([event])
        except BrokerUnavailable:
            metrics.webhook_requests.labels("webchat", "unavailable").inc()
            return json_error(503, "broker unavailable, retry later")
        metrics.webhook_requests.labels("webchat", "accepted").inc()
        metrics.inbound_messages.labels("webchat").inc()
        return web.json_response(
            {"event_id": event.id, "conversation_key": event.conversation_key}, status=202
        )

    async def webchat_socket(request: web.Request) -> web.StreamResponse:
        domain = request.match_info["domain"]
        domain_config = config.domains.get(domain)
        if domain_config is None:
            return json_error(404, f"unknown domain {domain!r}")
        try:
            return await socket_session(request, app[WEBCHAT_HUB], domain, domain_config.webchat)
        except BadRequest as error:
            return json_error(error.status, error.reason)

    base = "/v1/domains/{domain}/webchat"
    return [
        web.post(base + "/messages", post_webchat_message),
        web.get(base + "/sessions/{session_id}/socket", webchat_socket),
        *webhook_routes(context),
    ]


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readiness(app: web.Application) -> AsyncIterator[None]:
    worker = app.get(ROUTER_WORKER)
    readiness = Readiness(
        # Adapters accept webhooks without PostgreSQL: only a router needs it to be ready.
        database_url=app[CONFIG].database.url if worker is not None else None,
        producer=app[PRODUCER],
        worker=worker,
    )
    app[READINESS] = readiness
    await readiness.check()
    task = asyncio.create_task(readiness.run(), name="readiness")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _readyz(request: web.Request) -> web.Response:
    ready, body = request.app[READINESS].report()
    return web.json_response(body, status=200 if ready else 503)
