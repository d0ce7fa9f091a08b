"""Mailgun replays through the real app and PostgreSQL's token cache: a captured triple is
refused with any body, before and after a restart; a stale or future signature is refused;
a delivery whose publish failed is accepted on its retry; PostgreSQL down answers 503."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from adapters.base import hmac_hex
from runtime.appkeys import DB_POOL
from runtime.metrics import Metrics
from schemas import INBOUND_DECODER, MessageReceived
from switchboard.app import Role
from switchboard.config import Config
from switchboard.embedded import EmbeddedBroker
from tests.conftest import Infrastructure
from tests.support import Service, TopicReader, make_config, running_service

KEY = "key-mailgun-signing"
ENVIRON = {"MAILGUN_SIGNING_KEY": KEY}
ADAPTERS = frozenset({Role.ADAPTERS})
PATH = "/webhooks/email/mailgun"
_TRIPLE = ("timestamp", "token", "signature")


@pytest.fixture
def config(infrastructure: Infrastructure, database_url: str) -> Config:
    address = {"address": "support@acme.example", "domain": "acme"}
    return make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"channels": {"email": {"addresses": [address]}}},
    )


def mail(
    *, timestamp: float | None = None, token: str | None = None, message_id: str = "m1@x.org"
) -> dict[str, str]:
    """A Mailgun route POST signed now (or at ``timestamp``) with a fresh (or given) token."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    return {
        "recipient": "support@acme.example",
        "from": "Ann <ann@example.org>",
        "subject": "Help",
        "body-plain": f"message {message_id}",
        "Message-Id": f"<{message_id}>",
        "timestamp": stamp,
        "token": token,
        "signature": hmac_hex(KEY, (stamp + token).encode()),
    }


async def post(service: Service, fields: dict[str, str]) -> aiohttp.ClientResponse:
    async with service.session.post(service.url(PATH), data=fields) as response:
        await response.read()
        return response


def count(metrics: Metrics, outcome: str) -> float:
    labels = {"provider": "mailgun", "outcome": outcome}
    value = metrics.registry.get_sample_value("switchboard_webhook_requests_total", labels)
    return value or 0.0


def published_message_ids(records: list[Any]) -> list[str | None]:
    events = [INBOUND_DECODER.decode(r.value) for r in records]
    return [e.provider_message_id for e in events if isinstance(e, MessageReceived)]


async def test_a_replayed_triple_with_another_body_is_refused(config: Config) -> None:
    first = mail(message_id="m1@x.org")
    forged = {**mail(message_id="forged@x.org"), **{k: first[k] for k in _TRIPLE}}
    async with (
        running_service(config, ENVIRON, ADAPTERS) as service,
        TopicReader(config, "conversations.inbound") as inbound,
    ):
        assert (await post(service, first)).status == 200
        replay = await post(service, forged)
        assert replay.status == 409
        assert count(service.metrics, "replayed") == 1
        records = await inbound.wait_for(lambda rs: len(rs) >= 1)
        assert published_message_ids(records) == ["m1@x.org"]


@pytest.mark.parametrize(
    ("age", "reason"),
    [(90 * 24 * 3600, "signature expired"), (-16 * 60, "timestamp in the future")],
)
async def test_an_old_or_future_signature_is_refused(config: Config, age: int, reason: str) -> None:
    async with running_service(config, ENVIRON, ADAPTERS) as service:
        fields = mail(timestamp=time.time() - age)
        async with service.session.post(service.url(PATH), data=fields) as response:
            assert response.status == 403
            assert (await response.json())["error"] == reason
        assert await _stored_tokens(config) == []


async def test_a_failed_publish_is_accepted_on_its_retry(database_url: str, tmp_path: Path) -> None:
    """The broker down, the first delivery is answered 503 and its token released, so
    Mailgun's retry of it (same token) goes through once the broker is back; a third post
    of the same triple is a replay."""
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        address = {"address": "support@acme.example", "domain": "acme"}
        config = make_config(
            broker.bootstrap_servers,
            database_url,
            {"channels": {"email": {"addresses": [address]}}},
        )
        fields = mail()
        async with running_service(config, ENVIRON, ADAPTERS) as service:
            broker.stop()
            response = await post(service, fields)
            assert response.status == 503
            assert response.headers["Retry-After"]
            assert await _stored_tokens(config) == []
            broker = EmbeddedBroker(tmp_path / "broker", port=broker.port)
            broker.start()
            statuses = []
            for _ in range(40):  # Mailgun retries until it gets a 2xx
                statuses.append((await post(service, fields)).status)
                if statuses[-1] == 200:
                    break
                await asyncio.sleep(0.5)
            assert statuses[-1] == 200, statuses
            assert set(statuses) <= {200, 503}, statuses
            assert await _stored_tokens(config) == [fields["token"]]
            assert (await post(service, fields)).status == 409
    finally:
        broker.stop()


async def test_tokens_survive_a_restart(config: Config) -> None:
    fields = mail()
    async with running_service(config, ENVIRON, ADAPTERS) as service:
        assert (await post(service, fields)).status == 200
    async with running_service(config, ENVIRON, ADAPTERS) as restarted:
        assert (await post(restarted, fields)).status == 409


async def test_an_over_long_token_is_400(config: Config) -> None:
    async with running_service(config, ENVIRON, ADAPTERS) as service:
        assert (await post(service, mail(token="a" * 257))).status == 400
        assert await _stored_tokens(config) == []


async def test_expired_tokens_are_purged_on_a_claim(config: Config) -> None:
    conn = await asyncpg.connect(config.database.url)
    try:
        await conn.execute(
            "INSERT INTO webhook_nonces (provider, nonce, expires_at)"
            " VALUES ('mailgun', 'old', now() - interval '1 second')"
        )
    finally:
        await conn.close()
    fields = mail()
    async with running_service(config, ENVIRON, ADAPTERS) as service:
        assert (await post(service, fields)).status == 200
    assert await _stored_tokens(config) == [fields["token"]]


async def test_postgres_down_is_503_with_retry_after(config: Config) -> None:
    async with running_service(config, ENVIRON, ADAPTERS) as service:
        await service.app[DB_POOL].close()
        async with service.session.post(service.url(PATH), data=mail()) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "60"
        assert count(service.metrics, "unavailable") == 1


async def _stored_tokens(config: Config) -> list[str]:
    conn = await asyncpg.connect(config.database.url)
    try:
        rows = await conn.fetch("SELECT nonce FROM webhook_nonces ORDER BY nonce")
    finally:
        await conn.close()
    return [row["nonce"] for row in rows]
