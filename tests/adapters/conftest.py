"""Fixtures of the adapter tests: one channels config, fixed secrets, a recording publisher."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters import twilio_routes
from adapters.config import ChannelsConfig
from adapters.webchat import WebchatConfig, WebchatHub, socket_session
from adapters.webhooks import WebhookContext, refuse_encoded_bodies, webhook_routes
from runtime.kafka import BrokerUnavailable, DeadLetter, KeysUnavailable
from runtime.logging import RateLimit
from runtime.metrics import Metrics
from runtime.outbound import OutboundConfig
from schemas import DeliveryStatusChanged, InboundEvent, MessageReceived

PUBLIC_URL = "https://switchboard.example.com"
NOW = 1_700_000_000.0

ENVIRON = {
    "TWILIO_AUTH_TOKEN": "twilio-auth-token",
    "META_APP_SECRET": "meta-app-secret",
    "META_VERIFY_TOKEN": "meta-verify-token",
    "WHATSAPP_ACCESS_TOKEN": "wa-access-token",
    "MESSENGER_PAGE_ACCESS_TOKEN": "page-access-token",
    "INSTAGRAM_ACCESS_TOKEN": "ig-access-token",
    "TELEGRAM_SECRET_TOKEN": "tg-secret_token-1",
    "TELEGRAM_BOT_TOKEN": "123456:ABC-bot-token",
    "MAILGUN_SIGNING_KEY": "key-mailgun-signing",
    "MAILGUN_API_KEY": "mailgun-api-key",
    "SENDGRID_API_KEY": "SG.sendgrid-api-key",
    "VONAGE_SIGNATURE_SECRET": "vonage-signature-secret-0123456789",
    "RBM_CLIENT_TOKEN": "rbm-client-token",
    "X_CONSUMER_KEY": "x-consumer-key",
    "X_CONSUMER_SECRET": "x-consumer-secret",
}

SENDGRID_EVENT_KEY = ec.generate_private_key(ec.SECP256R1())
"""Signs the tests' SendGrid Event Webhook requests (its public key is configured below)."""
SENDGRID_PARSE_KEY = ec.generate_private_key(ec.SECP256R1())
"""Signs the tests' SendGrid Inbound Parse requests (a security policy's key)."""


def sendgrid_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """A verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


CHANNELS_TOML = """
phone_identity_domains = ["acme"]
media_fetch_allow_private = true  # the tests' media servers are on loopback

[twilio]
account_sid = "AC00000000000000000000000000000001"
numbers = [
  { number = "+14155550100", domain = "acme", queue = "sms" },
  { number = "+14155550199", domain = "globex" },
  { number = "+14155550142", domain = "acme", priority = 5, skills = ["billing"], language = "fr", attributes = { brand = "acme-fr" } },
  { number = "+14155550177", domain = "acme", webhook_url = "https://hooks.acme.example:8443/twilio/in?tenant=acme", status_callback_url = "https://hooks.acme.example/twilio/out?tenant=acme" },
]

[meta]
whatsapp = [{ phone_number_id = "106540352242922", domain = "acme", queue = "whatsapp" }]
messenger = [{ page_id = "1234567890", domain = "acme" }]
instagram = [{ account_id = "17841400000000000", domain = "globex" }]

[telegram]
bots = [
  { name = "acme_support_bot", domain = "acme" },
  { name = "groups_bot", domain = "acme", allow_groups = true },
]

[email]
addresses = [
  { address = "support@acme.example", domain = "acme", queue = "email" },
  { address = "help@acme.example", domain = "acme", provider = "sendgrid" },
]

[email.sendgrid]
event_public_key = "SENDGRID_EVENT_PUBLIC_KEY"
parse_public_key = "SENDGRID_PARSE_PUBLIC_KEY"

[vonage]
api_key = "vonage-api-key"
numbers = [
  { number = "14155550123", domain = "acme", queue = "sms" },
  { number = "AcmeInc", domain = "globex" },
]

[rbm]
agents = [{ agent_id = "acme-agent", domain = "acme", queue = "rcs" }]

[x]
app_id = "13090192"
accounts = [{ user_id = "4337869213", domain = "acme" }]
""".replace("SENDGRID_EVENT_PUBLIC_KEY", sendgrid_public_key(SENDGRID_EVENT_KEY)).replace(
    "SENDGRID_PARSE_PUBLIC_KEY", sendgrid_public_key(SENDGRID_PARSE_KEY)
)

CHANNELS = msgspec.toml.decode(CHANNELS_TOML, type=ChannelsConfig)


class RecordingPublisher:
    """Test double of the broker publisher: keeps every batch and dead letter; can play a
    broker outage."""

    def __init__(self) -> None:
        self.batches: list[list[InboundEvent]] = []
        self.dead_letters: list[DeadLetter] = []
        self.down = False
        self.keys_down = False
        """PostgreSQL away and no spare key left: what sealing raises then."""

    async def publish(self, events: Sequence[InboundEvent]) -> None:
        if self.keys_down:
            raise KeysUnavailable("topic keys unavailable: OSError (test)")
        if self.down:
            raise BrokerUnavailable("broker down (test)")
        self.batches.append(list(events))

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        if self.down:
            raise BrokerUnavailable("broker down (test)")
        self.dead_letters.extend(letters)

    @property
    def events(self) -> list[InboundEvent]:
        return [e for batch in self.batches for e in batch]

    @property
    def messages(self) -> list[MessageReceived]:
        return [e for e in self.events if isinstance(e, MessageReceived)]

    @property
    def statuses(self) -> list[DeliveryStatusChanged]:
        return [e for e in self.events if isinstance(e, DeliveryStatusChanged)]


class MemoryNonces:
    """Test double of the token cache (``adapters.nonces`` is tested on PostgreSQL in
    ``tests/integration/test_replays.py``)."""

    def __init__(self) -> None:
        self.claimed: dict[tuple[str, str], float] = {}

    async def claim(self, provider: str, nonce: str, expires_at: float) -> bool:
        if (provider, nonce) in self.claimed:
            return False
        self.claimed[provider, nonce] = expires_at
        return True

    async def release(self, provider: str, nonce: str) -> None:
        self.claimed.pop((provider, nonce), None)


@dataclass
class Harness:
    client: TestClient[web.Request, web.Application]
    publisher: RecordingPublisher
    metrics: Metrics
    nonces: MemoryNonces

    def count(self, provider: str, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "switchboard_webhook_requests_total", {"provider": provider, "outcome": outcome}
        )
        return value or 0.0

    async def set_aside(self, response: ClientResponse, provider: str) -> str:
        """Assert that ``response`` accepted a signed request but published nothing of it,
        setting it aside whole; the reason, and forget the letter."""
        assert response.status == 200, await response.text()
        assert self.publisher.batches == []
        [letter] = self.publisher.dead_letters
        assert letter.source == f"webhook/{provider}"
        self.publisher.dead_letters.clear()
        return letter.reason

    def signature_failures(self, provider: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "switchboard_webhook_signature_failures_total", {"provider": provider}
        )
        return value or 0.0


async def start_harness(
    *,
    channels: ChannelsConfig = CHANNELS,
    environ: Mapping[str, str] = ENVIRON,
    public_url: str | None = PUBLIC_URL,
    max_body_bytes: int = 256 * 1024,
    max_email_body_bytes: int | None = None,
    outbound: Mapping[str, OutboundConfig] | None = None,
    log_limit: RateLimit | None = None,
) -> Harness:
    publisher = RecordingPublisher()
    metrics = Metrics()
    nonces = MemoryNonces()
    ctx = WebhookContext(
        channels=channels,
        environ=environ,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        public_url=public_url,
        max_body_bytes=max_body_bytes,
        clock=lambda: NOW,
        **({} if max_email_body_bytes is None else {"max_email_body_bytes": max_email_body_bytes}),
        outbound=outbound or {},
        log_limit=log_limit or RateLimit(),
    )
    # as switchboard.app does
    app = web.Application(middlewares=[refuse_encoded_bodies, twilio_routes.late_paths(ctx)])
    app.add_routes(webhook_routes(ctx))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Harness(client, publisher, metrics, nonces)


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    harness = await start_harness()
    yield harness
    await harness.client.close()


@contextlib.asynccontextmanager
async def served_socket(
    hub: WebchatHub, config: WebchatConfig, session_id: str | None = None, **options: Any
) -> AsyncIterator[TestServer]:
    """A server of visitors' sockets of ``acme`` on ``/socket`` (the session ``session_id``,
    else the query's ``session``), ``socket_session`` given ``options``."""

    async def socket(request: web.Request) -> web.WebSocketResponse:
        session = session_id or request.query["session"]
        return await socket_session(request, hub, "acme", session, config, **options)

    app = web.Application()
    app.router.add_get("/socket", socket)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def frames_on_connect(
    hub: WebchatHub, config: WebchatConfig, session_id: str, count: int
) -> list[dict[str, Any]]:
    """The first ``count`` frames a visitor's socket of ``acme`` receives when it connects
    to ``hub`` (what the hub kept for the session)."""
    async with (
        served_socket(hub, config, session_id) as server,
        aiohttp.ClientSession() as session,
        session.ws_connect(server.make_url("/socket")) as ws,
    ):
        return [msgspec.json.decode(await ws.receive_str(timeout=15)) for _ in range(count)]
