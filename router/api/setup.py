"""Installs the API's routes and resources on the application.

Resources (``cleanup_ctx``, after the app's database and producer): the publisher of
``conversations.outbound``, and the routing feed (a consumer of every partition of
``conversations.routing``, without a group, opening with the app's topic keys) that
answers commands and feeds streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from router.api.auth import Authenticator
from router.api.campaigns import campaign_routes
from router.api.config import ApiConfig, AuthMode
from router.api.consents import consent_routes
from router.api.desktop import desktop_routes
from router.api.erasure import erasure_routes
from router.api.export import export_routes
from router.api.feed import RoutingFeed, pump, start_consumer
from router.api.handling import handling_routes
from router.api.history import history_routes
from router.api.openapi import get_openapi
from router.api.outbound_models import DomainOutbound
from router.api.outbound_routes import outbound_routes
from router.api.people import people_routes
from router.api.planning import planning_routes
from router.api.planning_jobs import planning_jobs_context
from router.api.routes import API, ApiContext, agent_routes, json_errors
from router.api.tokens import token_routes
from router.console import setup_console
from router.engine import DomainPolicy
from runtime import kafka
from runtime.appkeys import (
    CONFIG,
    ENVIRON,
    OUTBOUND_PUBLISHER,
    PRODUCER,
    TASK_FAILURES,
    TOPIC_KEYS,
    sealing_keys,
)
from runtime.tasks import background
from schemas import topics

log = structlog.get_logger(__name__)


def setup_api(
    app: web.Application,
    config: ApiConfig,
    policies: Mapping[str, DomainPolicy],
    outbound: Mapping[str, DomainOutbound] | None = None,
) -> None:
    """Add the API's routes, its error middleware and its resources to ``app``: the
    domains of ``policies``, each routed by its policy, sending business-started messages
    through its ``outbound`` endpoints."""
    environ = app[ENVIRON]
    bootstrap = environ.get(config.admin_token_env) if config.admin_token_env else None
    app[API] = ApiContext(
        config=config,
        policies=policies,
        auth=Authenticator(config.auth, bootstrap or None),
        feed=RoutingFeed(config.stream_buffer),
        outbound=outbound or {},
    )
    if config.auth is AuthMode.DISABLED:
        log.warning("api_auth_disabled", hint="set api.auth = 'tokens' outside local demos")
    app.middlewares.append(json_errors)
    app.cleanup_ctx.append(_outbound_publisher)
    app.cleanup_ctx.append(_routing_feed)
    app.cleanup_ctx.append(planning_jobs_context)
    app.on_shutdown.append(_end_streams)
    app.router.add_routes(api_routes())
    app.router.add_get("/openapi.json", get_openapi)
    setup_console(app)


def api_routes() -> list[web.RouteDef]:
    """Every route of the agent and operations API (``/openapi.json`` documents them)."""
    base = "/v1/domains/{domain}"
    return [
        *agent_routes(),
        *people_routes(base),
        *handling_routes(base),
        *desktop_routes(),
        *history_routes(base),
        *export_routes(base),
        *erasure_routes(base),
        *token_routes(base),
        *outbound_routes(base),
        *campaign_routes(base),
        *consent_routes(base),
        *planning_routes(base),
    ]


async def _outbound_publisher(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[OUTBOUND_PUBLISHER] = kafka.EventPublisher(
        app[PRODUCER], config.topic(topics.OUTBOUND), config.source, keys=sealing_keys(app)
    )
    yield


async def _routing_feed(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    topic = config.topic(topics.ROUTING)
    consumer = AIOKafkaConsumer(
        **kafka.client_options(config, app[ENVIRON]),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=config.kafka.fetch_max_wait_ms,
    )
    await start_consumer(consumer, topic)
    idle_seconds = config.kafka.background_fetch_max_wait_ms / 1000
    async with background(
        "routing-feed",
        pump(consumer, app[API].feed, app[TOPIC_KEYS], idle_seconds),
        failures=app.get(TASK_FAILURES),
    ):
        yield
    await kafka.stop_consumer(consumer, name="routing-feed")


async def _end_streams(app: web.Application) -> None:
    app[API].feed.close_all()
