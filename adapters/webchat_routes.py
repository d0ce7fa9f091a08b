"""Web chat over HTTP: the visitor's messages in, the agents' replies out over a WebSocket.

``POST /v1/domains/{domain}/webchat/messages`` publishes a visitor's message (202 with its
event id once the broker has it); ``GET …/sessions/{session_id}/socket`` opens the socket
a session's replies arrive on. Every adapter process reads every reply of
``conversations.outbound`` (``reply_pump``, no consumer group) and hands those of web chat
to the sockets it holds; the egress worker marks them sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import msgspec
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from adapters.base import BadRequest, Publisher
from adapters.webchat import (
    WebchatConfig,
    WebchatHub,
    identity_secret,
    parse_message,
    socket_session,
)
from adapters.webhooks import read_body
from runtime.http_errors import json_error
from runtime.kafka import BrokerUnavailable
from runtime.metrics import Metrics
from schemas import OUTBOUND_DECODER, Channel, ReplyRequested

log = structlog.get_logger(__name__)


def webchat_routes(
    domains: Mapping[str, WebchatConfig],
    hub: WebchatHub,
    publisher: Publisher,
    metrics: Metrics,
    environ: Mapping[str, str],
    *,
    max_body_bytes: int,
    clock: Callable[[], float] = time.time,
) -> list[web.RouteDef]:
    async def post_message(request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        config = domains.get(domain)
        if config is None:
            return json_error(404, f"unknown domain {domain!r}")
        try:
            body = await read_body(request, max_body_bytes)
            secret = identity_secret(config, environ)
            event = parse_message(domain, config, body, secret, clock())
        except BadRequest as error:
            metrics.webhook_requests.labels("webchat", "bad_request").inc()
            return json_error(error.status, error.reason)
        try:
            await publisher.publish([event])
        except BrokerUnavailable:
            metrics.webhook_requests.labels("webchat", "unavailable").inc()
            return json_error(503, "broker unavailable, retry later")
        metrics.webhook_requests.labels("webchat", "accepted").inc()
        metrics.for_domain(domain).counter(metrics.inbound_messages, "webchat").inc()
        return web.json_response(
            {"event_id": event.id, "conversation_key": event.conversation_key}, status=202
        )

    async def socket(request: web.Request) -> web.StreamResponse:
        domain = request.match_info["domain"]
        config = domains.get(domain)
        if config is None:
            return json_error(404, f"unknown domain {domain!r}")
        try:
            return await socket_session(request, hub, domain, config)
        except BadRequest as error:
            return json_error(error.status, error.reason)

    base = "/v1/domains/{domain}/webchat"
    return [
        web.post(base + "/messages", post_message),
        web.get(base + "/sessions/{session_id}/socket", socket),
    ]


async def reply_pump(
    consumer: AIOKafkaConsumer, hub: WebchatHub, domains: Mapping[str, WebchatConfig]
) -> None:
    """Hand every web chat reply read by ``consumer`` to the hub, until cancelled."""
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
                config = domains.get(reply.domain)
                if (
                    isinstance(reply, ReplyRequested)
                    and config is not None
                    and reply.channel is Channel.WEBCHAT
                ):
                    await hub.deliver(reply, config)
