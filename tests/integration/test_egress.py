"""Replies leave through the provider's real API shape, and come back as delivery statuses:
SMS in through Twilio's signed webhook, the agent's reply out through a Twilio stand-in on
loopback (``tools.bench.providers``: rate-limited once, then accepted), Twilio's signed
status callback, on the ``StatusCallback`` the reply named (from ``[http] public_url``),
marks it delivered. An egress with nothing to send rests between reads, and a reply that
comes while it rests is sent when it reads again."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from switchboard.app import EGRESS_WORKER
from switchboard.config import Config
from tests.conftest import Infrastructure
from tests.support import (
    Service,
    make_config,
    reply_sent,
    running_service,
    sent_reply,
    wait_until,
)
from tools.bench.providers import FakeProviders

TOKEN = "twilio-test-auth-token"
ACCOUNT = "AC00000000000000000000000000000001"
OUR_NUMBER = "+14155550100"
CUSTOMER = "+14155552671"
ADMIN = {"Authorization": "Bearer egress-admin"}


def _signed(url: str, params: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}


def _config(
    infrastructure: Infrastructure,
    database_url: str,
    provider: TestServer,
    kafka_settings: dict[str, Any] | None = None,
) -> Config:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    public = f"http://{config.http.host}:{config.http.port}"
    return make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "kafka": kafka_settings or {},
            "http": {"host": config.http.host, "port": config.http.port, "public_url": public},
            "channels": {
                "twilio": {
                    "account_sid": ACCOUNT,
                    "api_base_url": str(provider.make_url("")).rstrip("/"),
                    "numbers": [{"number": OUR_NUMBER, "domain": "acme"}],
                }
            },
        },
    )


async def _conversation_of_ann(service: Service, conn: asyncpg.Connection) -> str:
    """A customer's SMS in through the signed webhook, assigned to ann: its conversation."""
    await service.online_agent("ann", {"sms": 2}, ADMIN)
    inbound = {
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": ACCOUNT,
        "From": CUSTOMER,
        "To": OUR_NUMBER,
        "Body": "Is my order shipped?",
        "NumMedia": "0",
    }
    webhook = service.config.http.public_url + "/webhooks/twilio/sms"
    async with service.session.post(webhook, data=inbound, headers=_signed(webhook, inbound)) as r:
        assert r.status == 200, await r.text()
    conversation_id: str = await wait_until(
        lambda: conn.fetchval(
            "SELECT conversation_id FROM conversations WHERE owner_agent_id = 'ann'"
        ),
        what="the conversation assigned to ann",
    )
    return conversation_id


async def test_an_sms_reply_is_sent_through_twilio_and_its_delivery_recorded(
    infrastructure: Infrastructure, database_url: str
) -> None:
    fake = FakeProviders(throttled=1, twilio_sid=lambda _: "SM" + "f" * 32)
    provider = TestServer(fake.app, host="127.0.0.1")
    await provider.start_server()
    config = _config(infrastructure, database_url, provider)
    public = config.http.public_url
    environ = {"TWILIO_AUTH_TOKEN": TOKEN, "SWITCHBOARD_ADMIN_TOKEN": "egress-admin"}
    try:
        async with running_service(config, environ) as service:
            http = service.session
            conn = await asyncpg.connect(database_url)
            try:
                conversation_id = await _conversation_of_ann(service, conn)
                reply_id, _ = await sent_reply(
                    service, conn, conversation_id, {"text": "Yes, it left today."}, ADMIN
                )
                row = await conn.fetchrow(
                    "SELECT provider_message_id, attempts, channel FROM outbound_messages"
                    " WHERE outbound_id = $1",
                    reply_id,
                )
                assert dict(row) == {
                    "provider_message_id": "SM" + "f" * 32,
                    "attempts": 2,
                    "channel": "sms",
                }
                assert len(fake.requests) == 2  # rate-limited once, then accepted
                sent = fake.requests[-1]
                assert sent.account == ACCOUNT
                assert sent.form["To"] == CUSTOMER
                assert sent.form["From"] == OUR_NUMBER
                assert sent.form["Body"] == "Yes, it left today."
                assert sent.auth.startswith("Basic ")
                # The default StatusCallback is built from [http] public_url alone: the
                # environment has no SWITCHBOARD_PUBLIC_URL.
                status_url = f"{public}/webhooks/twilio/status?outbound_id={reply_id}"
                assert sent.form["StatusCallback"] == status_url

                callback = {
                    "MessageSid": "SM" + "f" * 32,
                    "MessageStatus": "delivered",
                    "AccountSid": ACCOUNT,
                    "From": OUR_NUMBER,
                    "To": CUSTOMER,
                }
                async with http.post(
                    status_url, data=callback, headers=_signed(status_url, callback)
                ) as r:
                    assert r.status == 200
                await wait_until(
                    lambda: conn.fetchval(
                        "SELECT status = 'delivered' FROM outbound_messages WHERE outbound_id = $1",
                        reply_id,
                    ),
                    what="the delivery recorded",
                )
            finally:
                await conn.close()
    finally:
        await provider.close()


async def test_a_reply_that_comes_while_the_egress_rests_is_sent_when_it_reads_again(
    infrastructure: Infrastructure, database_url: str
) -> None:
    fake = FakeProviders(twilio_sid=lambda _: "SM" + "e" * 32)
    provider = TestServer(fake.app, host="127.0.0.1")
    await provider.start_server()
    # Quiet for 4 s, the egress rests 4 s between reads: long beside posting a reply.
    config = _config(infrastructure, database_url, provider, {"background_fetch_max_wait_ms": 4000})
    environ = {"TWILIO_AUTH_TOKEN": TOKEN, "SWITCHBOARD_ADMIN_TOKEN": "egress-admin"}
    try:
        async with running_service(config, environ) as service:
            worker = service.app[EGRESS_WORKER]
            conn = await asyncpg.connect(database_url)
            try:
                conversation_id = await _conversation_of_ann(service, conn)
                await wait_until(lambda: worker.resting, timeout=30, what="the egress resting")
                reply_url = service.url(f"/v1/domains/acme/conversations/{conversation_id}/reply")
                async with service.session.post(
                    reply_url, json={"text": "It left today."}, headers=ADMIN
                ) as r:
                    assert r.status == 202, await r.text()
                    reply_id = (await r.json())["reply_id"]
                assert worker.resting
                assert fake.requests == []
                await reply_sent(conn, reply_id)
                assert [request.form["Body"] for request in fake.requests] == ["It left today."]
            finally:
                await conn.close()
    finally:
        await provider.close()
