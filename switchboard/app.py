"""``build_app``: wires configuration, clients, adapters, router and API into one aiohttp app.

Each resource is a ``cleanup_ctx`` entry under a typed ``AppKey`` (``runtime.appkeys``),
so start-up and shutdown happen in order, and tests build the app the same way. Roles
select what runs in the process: ``adapters`` (webhooks, web chat, egress, HTTP bots),
``router`` (the routing loop and the agent API), or both (``switchboard run``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any

import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.aiohttp import make_aiohttp_handler

from adapters import twilio_routes
from adapters.bot_answers import BotAnswerForwarder
from adapters.bots import BotBridge
from adapters.egress import EgressEnviron
from adapters.egress_worker import EgressWorker
from adapters.lookup import IdentityLookupConfig, IdentityLookups
from adapters.nonces import PostgresNonces
from adapters.outbound_sender import OutboundSender
from adapters.webchat import WebchatConfig, WebchatHub
from adapters.webchat_routes import reply_pump, webchat_routes
from adapters.webhooks import WebhookContext, refuse_encoded_bodies, webhook_routes
from router.api.outbound_models import DomainOutbound
from router.api.routes import API
from router.api.setup import setup_api
from router.engine import DomainPolicy
from router.shell.worker import RouterWorker
from runtime import db, kafka
from runtime import logging as logs
from runtime.appkeys import (
    AGENT_PUBLISHER,
    CONFIG,
    DB_POOL,
    ENVIRON,
    INBOUND_PUBLISHER,
    METRICS,
    PRODUCER,
    TASK_FAILURES,
    TOPIC_KEYS,
    sealing_keys,
)
from runtime.callbacks import AllowedAddresses
from runtime.dead_letters import DeadLetterRecorder
from runtime.http_errors import setup_errors
from runtime.kafka import BrokerUnavailable, DeadLetter
from runtime.metrics import Metrics
from runtime.outbound import OutboundConfig
from runtime.readiness import Readiness
from runtime.retention import RetentionConfig
from runtime.retention_job import RetentionJob
from runtime.sealing import TopicKeys
from runtime.secrets import Secrets
from runtime.tasks import Stops, TaskFailures, background
from runtime.workload_job import WorkloadJob
from schemas import topics
from schemas.bot_webhook import BotWebhook
from schemas.common import Channel, Event
from schemas.limits import PROVIDER_TEXT_MAX
from switchboard.config import Config, ControlDocument
from switchboard.control.api import setup_control
from switchboard.control.document import iter_endpoints
from switchboard.control.live import CONFIG_TOPIC, LIVE_CONFIG, ConfigTopic, LiveConfig

log = structlog.get_logger(__name__)


class Role(enum.StrEnum):
    ADAPTERS = "adapters"
    ROUTER = "router"


ROUTER_WORKER = web.AppKey("router_worker", RouterWorker)
EGRESS_WORKER = web.AppKey("egress_worker", EgressWorker)
OUTBOUND_SENDER = web.AppKey("outbound_sender", OutboundSender)
BOT_BRIDGE = web.AppKey("bot_bridge", BotBridge)
BOT_ANSWERS = web.AppKey("bot_answers", BotAnswerForwarder)
RETENTION_JOB = web.AppKey("retention_job", RetentionJob)
WORKLOAD_JOB = web.AppKey("workload_job", WorkloadJob)

READINESS = web.AppKey("readiness", Readiness)
STOPS = web.AppKey("stops", Stops)
"""The background tasks asked to stop together when the process shuts down (``_ask_stops``)."""
WEBCHAT_HUB = web.AppKey("webchat_hub", WebchatHub)
IDENTITY_LOOKUPS = web.AppKey("identity_lookups", IdentityLookups)


def build_app(
    config: Config,
    environ: Mapping[str, str],
    *,
    roles: frozenset[Role] = frozenset(Role),
    metrics: Metrics | None = None,
    config_version: int = 0,
    log_dies_with_broker: bool = False,
) -> web.Application:
    """The service's application; ``config`` holds configuration version ``config_version``
    (0: the file's, not stored yet), and newer versions are applied as they come. With
    ``log_dies_with_broker`` (``switchboard run``'s embedded broker), the router reads its
    partitions to their ends before it stops (``RouterWorker``'s ``drain_on_stop``)."""
    app = web.Application(
        client_max_size=config.http.max_body_bytes, middlewares=[refuse_encoded_bodies]
    )
    setup_errors(app)
    app[CONFIG] = config
    app[ENVIRON] = secrets = Secrets(environ, config.secrets_file)
    app[METRICS] = metrics or Metrics(config=config.metrics)
    app[LIVE_CONFIG] = live = LiveConfig(config_version, config.document(), app[METRICS])

    def reload_secrets(document: ControlDocument, version: int) -> None:
        # A new endpoint may name a credential added to the secrets file since.
        secrets.reload()
        logs.add_secrets(logs.secret_values(document, secrets))

    live.subscribe(reload_secrets)
    app[STOPS] = Stops()
    app[TASK_FAILURES] = TaskFailures()
    app.on_shutdown.append(_ask_stops)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_producer)
    app.cleanup_ctx.append(_config_follower)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(app[METRICS].registry))
    if Role.ADAPTERS in roles:
        app[WEBCHAT_HUB] = WebchatHub()
        # Open sockets are request handlers: aiohttp waits for them before its cleanups,
        # so they are told to go (1001) when the shutdown starts, not after its grace.
        app.on_shutdown.append(_close_webchat_sockets)
        webchats = _webchats(config.document())
        app.cleanup_ctx.append(functools.partial(_webchat_replies, config, webchats))
        app.cleanup_ctx.append(functools.partial(_egress, config))
        app.cleanup_ctx.append(_bot_bridge)
        app.cleanup_ctx.append(_bot_answers)
        app.cleanup_ctx.append(_outbound_sender)
        app.cleanup_ctx.append(_dead_letter_recorder)
        app[IDENTITY_LOOKUPS] = IdentityLookups(
            app[METRICS],
            secrets,
            _lookups(config.document()),
            allowed=AllowedAddresses(config.callbacks.allowed_networks),
        )
        app.cleanup_ctx.append(_identity_lookups)
        outbounds = _outbounds(config.document())
        context, routes = _adapter_routes(app, config, webchats, outbounds)
        app.router.add_routes(routes)
        app.middlewares.append(twilio_routes.late_paths(context))

        def reconfigure_adapters(document: ControlDocument, version: int) -> None:
            context.channels = document.channels
            webchats.clear()
            webchats.update(_webchats(document))
            outbounds.clear()
            outbounds.update(_outbounds(document))
            if (egress := app.get(EGRESS_WORKER)) is not None:
                egress.reconfigure(document.channels)
            if (sender := app.get(OUTBOUND_SENDER)) is not None:
                sender.reconfigure(document.channels, _outbounds(document))
            if (bridge := app.get(BOT_BRIDGE)) is not None:
                bridge.reconfigure(_bot_webhooks(document))
            if (forwarder := app.get(BOT_ANSWERS)) is not None:
                forwarder.reconfigure(_any_bot(document))
            app[IDENTITY_LOOKUPS].reconfigure(_lookups(document))

        live.subscribe(reconfigure_adapters)
    if Role.ROUTER in roles:
        app.cleanup_ctx.append(functools.partial(_router_worker, config, log_dies_with_broker))
        app.cleanup_ctx.append(functools.partial(_retention, config))
        if config.workload.enabled:
            app.cleanup_ctx.append(functools.partial(_workload, config))
        setup_api(app, config.api, _policies(config.document()), _api_outbound(config.document()))
        setup_control(app)

        def reconfigure_router(document: ControlDocument, version: int) -> None:
            policies = _policies(document)
            app[API].policies = policies
            app[API].outbound = _api_outbound(document)
            if (worker := app.get(ROUTER_WORKER)) is not None:
                worker.reconfigure(policies, version)

        live.subscribe(reconfigure_router)
    app.cleanup_ctx.append(_readiness)  # last: it reads the router worker, when there is one
    return app


def _policies(document: ControlDocument) -> dict[str, DomainPolicy]:
    return {name: domain.routing for name, domain in document.domains.items()}


_ENDPOINT_CHANNELS: dict[str, tuple[Channel, ...]] = {
    "twilio": (Channel.SMS, Channel.WHATSAPP),  # Twilio numbers send SMS and WhatsApp
    "whatsapp": (Channel.WHATSAPP,),
    "messenger": (Channel.MESSENGER,),
    "instagram": (Channel.INSTAGRAM,),
    "telegram": (Channel.TELEGRAM,),
    "email": (Channel.EMAIL,),
    # Vonage numbers send on every channel of the Messages API
    "vonage": (Channel.SMS, Channel.WHATSAPP, Channel.MESSENGER, Channel.VIBER),
    "rbm": (Channel.RCS,),
    "x": (Channel.X,),
}


def _api_outbound(document: ControlDocument) -> dict[str, DomainOutbound]:
    """What the API needs of each domain to send business-started messages: its endpoints
    by channel, its ``outbound`` section and the adapters' customer-id rule."""
    endpoints: dict[str, dict[Channel, set[str]]] = {name: {} for name in document.domains}
    text_max: dict[str, dict[tuple[Channel, str], int]] = {}
    for endpoint in iter_endpoints(document.channels):
        for channel in _ENDPOINT_CHANNELS[endpoint.kind.name]:
            endpoints.setdefault(endpoint.domain, {}).setdefault(channel, set()).add(endpoint.key)
            longest = PROVIDER_TEXT_MAX.get((endpoint.kind.name, channel.value))
            if longest is not None:
                text_max.setdefault(endpoint.domain, {})[(channel, endpoint.key)] = longest
    for name, domain in document.domains.items():
        if domain.webchat.enabled:
            endpoints[name][Channel.WEBCHAT] = {"webchat"}
    return {
        name: DomainOutbound(
            config=domain.outbound,
            endpoints={c: frozenset(keys) for c, keys in endpoints[name].items()},
            customer_id=functools.partial(document.channels.customer_id, name),
            text_max=text_max.get(name, {}),
        )
        for name, domain in document.domains.items()
    }


def _retention_periods(document: ControlDocument) -> dict[str, RetentionConfig]:
    return {name: domain.retention for name, domain in document.domains.items()}


def _webchats(document: ControlDocument) -> dict[str, WebchatConfig]:
    return {name: domain.webchat for name, domain in document.domains.items()}


def _outbounds(document: ControlDocument) -> dict[str, OutboundConfig]:
    """Each domain's ``outbound`` section: the adapters read its consent keywords."""
    return {name: domain.outbound for name, domain in document.domains.items()}


def _lookups(document: ControlDocument) -> dict[str, IdentityLookupConfig]:
    return {
        name: domain.identity_lookup
        for name, domain in document.domains.items()
        if domain.identity_lookup is not None
    }


def _bot_webhooks(document: ControlDocument) -> dict[str, dict[str, BotWebhook]]:
    """Each domain's bots reached over HTTP (``adapters.bots``); domains without any left out."""
    webhooks = {
        name: {
            bot: policy.webhook
            for bot, policy in domain.routing.bots.items()
            if policy.webhook is not None
        }
        for name, domain in document.domains.items()
    }
    return {name: bots for name, bots in webhooks.items() if bots}


def _any_bot(document: ControlDocument) -> bool:
    return any(domain.routing.bots for domain in document.domains.values())


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    assert config.database.url, "the database URL is resolved before the app is built"
    pool = await db.create_pool(
        config.database.url,
        min_size=config.database.pool_min_size,
        max_size=config.database.pool_max_size,
        dead_connection_seconds=config.database.dead_connection_seconds,
    )
    app[DB_POOL] = pool
    # A pool of its own: publishing, which needs a key, happens while a request holds a
    # connection of the main pool; sharing it, a burst of requests would starve.
    keys_pool = await db.create_pool(
        config.database.url,
        min_size=1,
        max_size=2,
        dead_connection_seconds=config.database.dead_connection_seconds,
    )
    keys = app[TOPIC_KEYS] = TopicKeys(keys_pool, cache_seconds=config.kafka.key_cache_seconds)
    app[METRICS].topic_keys_cached.set_function(lambda: keys.cached)
    if not config.kafka.seal_personal_data:
        yield
    else:
        # Spare keys in stock before anything is published: the adapters keep accepting
        # messages through an outage of PostgreSQL.
        with contextlib.suppress(*db.DATABASE_ERRORS):
            await keys.stock()
        async with _task(app, "topic-keys", keys.run(), keys.stop, asked_early=False):
            yield
    await keys_pool.close()
    await pool.close()


def _task(
    app: web.Application,
    name: str,
    work: Coroutine[Any, Any, None],
    stop: Callable[[], None] | None = None,
    *,
    asked_early: bool = True,
) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    """``runtime.tasks.background`` for a task of this process: its failure stops the
    process (``TaskFailures``), and its ``stop`` is asked with the others' when the process
    shuts down (``Stops``), unless it must outlast them (``asked_early=False``)."""
    return background(
        name,
        work,
        stop,
        stops=app[STOPS] if asked_early else None,
        failures=app[TASK_FAILURES],
    )


async def _ask_stops(app: web.Application) -> None:
    app[STOPS].ask_all()


async def _close_webchat_sockets(app: web.Application) -> None:
    await app[WEBCHAT_HUB].close_all()


async def _producer(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    producer = kafka.make_producer(config, app[ENVIRON])
    await producer.start()
    app[PRODUCER] = producer
    app[INBOUND_PUBLISHER] = kafka.EventPublisher(
        producer,
        config.topic(topics.INBOUND),
        config.source,
        dead_letter_topic=config.topic(topics.DLQ),
        config_version=lambda: app[LIVE_CONFIG].version,
        keys=sealing_keys(app),
    )
    app[AGENT_PUBLISHER] = kafka.EventPublisher(
        producer, config.topic(topics.AGENTS), config.source, keys=sealing_keys(app)
    )
    yield
    await producer.stop()


async def _config_follower(app: web.Application) -> AsyncIterator[None]:
    """Publish the version this process starts with (it may be the first to), then follow
    the configuration topic for newer ones."""
    config = app[CONFIG]
    live = app[LIVE_CONFIG]
    topic = app[CONFIG_TOPIC] = ConfigTopic(app[PRODUCER], config.topic(topics.CONFIG))
    if live.version:
        try:
            await topic.publish(live.version, live.document)
        except BrokerUnavailable:
            log.warning("config_publish_failed", version=live.version)
    consumer = AIOKafkaConsumer(
        **kafka.client_options(config, app[ENVIRON]),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=config.kafka.background_fetch_max_wait_ms,
    )
    await consumer.start()
    consumer.assign([TopicPartition(topic.topic, 0)])
    await consumer.seek_to_beginning(TopicPartition(topic.topic, 0))
    async with _task(app, "config-follower", topic.follow(consumer, live)):
        yield
    await topic.close()
    await kafka.stop_consumer(consumer, name="config-follower")


async def _router_worker(
    config: Config, drain_on_stop: bool, app: web.Application
) -> AsyncIterator[None]:
    live = app[LIVE_CONFIG]
    worker = RouterWorker(
        app[CONFIG],
        _policies(live.document),
        app[ENVIRON],
        app[DB_POOL],
        app[PRODUCER],
        app[METRICS],
        config_version=live.version,
        keys=app[TOPIC_KEYS],
        router_config=config.router,
        drain_on_stop=drain_on_stop,
    )
    app[ROUTER_WORKER] = worker
    app[METRICS].router_gathering.set_function(lambda: float(worker.gathering.active))
    async with _task(app, "router-worker", worker.run(), worker.stop):
        yield


async def _retention(config: Config, app: web.Application) -> AsyncIterator[None]:
    """The retention job: every router tries, a PostgreSQL lock per domain lets one do each
    domain's pass; it reads the domains' periods of the version the process runs."""
    live = app[LIVE_CONFIG]
    job = app[RETENTION_JOB] = RetentionJob(
        app[DB_POOL],
        app[METRICS],
        config.retention,
        lambda: _retention_periods(live.document),
        topic_retention_ms=config.kafka.topic_retention_ms,
        erase=lambda command: app[AGENT_PUBLISHER].publish([command]),
    )
    async with _task(app, "retention", job.run(), job.stop):
        yield


async def _workload(config: Config, app: web.Application) -> AsyncIterator[None]:
    """The workload job: every router tries, a PostgreSQL lock per domain lets one measure
    each domain; it measures the domains of the version the process runs."""
    live = app[LIVE_CONFIG]
    job = app[WORKLOAD_JOB] = WorkloadJob(
        app[DB_POOL], app[METRICS], config.workload, lambda: live.document.domains
    )
    async with _task(app, "workload", job.run(), job.stop):
        yield


async def _egress(config: Config, app: web.Application) -> AsyncIterator[None]:
    worker = app[EGRESS_WORKER] = EgressWorker(
        config,
        app[LIVE_CONFIG].document.channels,
        EgressEnviron(app[ENVIRON], config.http.public_url),
        app[DB_POOL],
        app[PRODUCER],
        app[METRICS],
        statuses=app[INBOUND_PUBLISHER],
        keys=app[TOPIC_KEYS],
    )
    async with _task(app, "egress", worker.run(), worker.stop):
        yield


async def _bot_bridge(app: web.Application) -> AsyncIterator[None]:
    """HTTP bots: their turns posted to their webhooks, their answers on ``bots.events``."""
    config = app[CONFIG]
    live = app[LIVE_CONFIG]
    bridge = app[BOT_BRIDGE] = BotBridge(
        config,
        _bot_webhooks(live.document),
        app[ENVIRON],
        kafka.EventPublisher(
            app[PRODUCER],
            config.topic(topics.BOTS),
            config.source,
            config_version=lambda: live.version,
            keys=sealing_keys(app),
        ),
        app[METRICS],
        keys=app[TOPIC_KEYS],
    )
    async with _task(app, "bot-bridge", bridge.run(), bridge.stop):
        yield


async def _bot_answers(app: web.Application) -> AsyncIterator[None]:
    """Bots' answers forwarded from ``bots.events`` to the router's ``agents.events``."""
    forwarder = app[BOT_ANSWERS] = BotAnswerForwarder(
        app[CONFIG],
        app[ENVIRON],
        app[DB_POOL],
        app[PRODUCER],
        app[METRICS],
        app[TOPIC_KEYS],
        bots=_any_bot(app[LIVE_CONFIG].document),
    )
    async with _task(app, "bot-answers", forwarder.run(), forwarder.stop):
        yield


async def _outbound_sender(app: web.Application) -> AsyncIterator[None]:
    """Business-started messages, paced; statuses on the inbound topic for the router."""
    live = app[LIVE_CONFIG]
    sender = app[OUTBOUND_SENDER] = OutboundSender(
        live.document.channels,
        _outbounds(live.document),
        EgressEnviron(app[ENVIRON], app[CONFIG].http.public_url),
        app[DB_POOL],
        app[INBOUND_PUBLISHER],
        app[METRICS],
    )
    async with _task(app, "outbound-sender", sender.run(), sender.stop):
        yield


async def _identity_lookups(app: web.Application) -> AsyncIterator[None]:
    """The HTTP session of the identity lookups (one per process, its connections bounded)."""
    lookups = app[IDENTITY_LOOKUPS]
    await lookups.start()
    yield
    await lookups.close()


async def _dead_letter_recorder(app: web.Application) -> AsyncIterator[None]:
    recorder = DeadLetterRecorder(app[CONFIG], app[ENVIRON], app[DB_POOL])
    async with _task(app, "dead-letter-recorder", recorder.run(), recorder.stop):
        yield


async def _webchat_replies(
    config: Config, webchats: Mapping[str, WebchatConfig], app: web.Application
) -> AsyncIterator[None]:
    """Every adapter instance reads all replies and hands web chat ones to its sockets."""
    hub = app[WEBCHAT_HUB]
    consumer = AIOKafkaConsumer(
        config.topic(topics.OUTBOUND),
        **kafka.client_options(config, app[ENVIRON]),
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=config.kafka.fetch_max_wait_ms,
    )
    await consumer.start()
    async with _task(app, "webchat-replies", reply_pump(consumer, hub, webchats, app[TOPIC_KEYS])):
        yield
    await hub.close_all()
    await kafka.stop_consumer(consumer, name="webchat-replies")


class _StartedPublisher:
    """The app's publisher once started: routes are built before the producer exists."""

    def __init__(self, app: web.Application, key: web.AppKey[kafka.EventPublisher]) -> None:
        self._app = app
        self._key = key

    async def publish(self, events: Sequence[Event]) -> None:
        await self._app[self._key].publish(events)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await self._app[self._key].dead_letter(letters)


def _adapter_routes(
    app: web.Application,
    config: Config,
    webchats: Mapping[str, WebchatConfig],
    outbounds: Mapping[str, OutboundConfig],
) -> tuple[WebhookContext, list[web.RouteDef]]:
    publisher = _StartedPublisher(app, INBOUND_PUBLISHER)
    context = WebhookContext(
        channels=config.channels,
        environ=app[ENVIRON],
        publisher=publisher,
        nonces=PostgresNonces(lambda: app[DB_POOL]),
        metrics=app[METRICS],
        public_url=config.http.public_url,
        max_body_bytes=config.http.max_body_bytes,
        max_email_body_bytes=config.http.max_email_body_bytes,
        lookups=app[IDENTITY_LOOKUPS],
        outbound=outbounds,
    )
    return context, [
        *webchat_routes(
            webchats,
            app[WEBCHAT_HUB],
            publisher,
            app[METRICS],
            app[ENVIRON],
            links=_StartedPublisher(app, AGENT_PUBLISHER),
            max_body_bytes=config.http.max_body_bytes,
            lookups=app[IDENTITY_LOOKUPS],
            outbound=outbounds,
        ),
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
        topics=(app[CONFIG].topic(topics.INBOUND), app[CONFIG].topic(topics.AGENTS)),
    )
    app[READINESS] = readiness
    await readiness.check()
    async with _task(app, "readiness", readiness.run()):
        yield


async def _readyz(request: web.Request) -> web.Response:
    ready, body = request.app[READINESS].report()
    return web.json_response(body, status=200 if ready else 503)
