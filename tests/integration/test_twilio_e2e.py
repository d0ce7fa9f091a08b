"""Twilio end to end through the real service: a number whose webhook URL is a proxy's
(another host and port, its own path, a query string) → the message routed to an agent →
the agent's reply sent to a Twilio stand-in that checks it as Twilio does
(``tests.fakes.twilio``) with a ``StatusCallback`` naming our outbound id → Twilio's signed
status callback on ``/webhooks/twilio/status`` → ``delivery.status`` with that id and
Twilio's word, and ``outbound.status_changed`` on the routing topic."""

from __future__ import annotations

import urllib.parse

import asyncpg
from aiohttp.test_utils import TestServer
from twilio.request_validator import (  # type: ignore[import-untyped]  # twilio ships no types
    RequestValidator,
)

from schemas import (
    INBOUND_DECODER,
    ROUTING_DECODER,
    DeliveryStatus,
    DeliveryStatusChanged,
    MessageReceived,
    OutboundStatusChanged,
)
from tests.conftest import Infrastructure
from tests.fakes.twilio import FakeTwilio
from tests.support import TopicReader, make_config, reply_sent, running_service, wait_until
from tools.bench.providers import FakeProviders

TOKEN = "twilio-e2e-auth-token"
ACCOUNT = "AC" + "0" * 31 + "2"
OUR_NUMBER = "+14155550100"
CUSTOMER = "+14155552671"
PUBLIC = "https://switchboard.example.com:8443"
"""Where Twilio reaches Switchboard (``SWITCHBOARD_PUBLIC_URL``): replies' callbacks."""
WEBHOOK = "https://twilio-gw.example.com/proxy/twilio/inbound?tenant=acme&region=eu-1"
"""The number's "A message comes in" URL in Twilio's console: a proxy that passes the
path and query on to Switchboard."""
ADMIN = {"Authorization": "Bearer twilio-e2e-admin"}
SID = "SM" + "e" * 32


def forwarded(url: str) -> str:
    """What the proxy in front of Switchboard passes on of ``url``: path and query."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_a_proxied_number_routes_replies_and_reports_their_delivery(
    infrastructure: Infrastructure, database_url: str
) -> None:
    fake = FakeTwilio(ACCOUNT, TOKEN, FakeProviders(twilio_sid=lambda _: SID))
    provider = TestServer(fake.app, host="127.0.0.1")
    await provider.start_server()
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "http": {"public_url": PUBLIC},
            "channels": {
                "twilio": {
                    "account_sid": ACCOUNT,
                    "api_base_url": str(provider.make_url("")).rstrip("/"),
                    "numbers": [{"number": OUR_NUMBER, "domain": "acme", "webhook_url": WEBHOOK}],
                }
            },
        },
    )
    environ = {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "SWITCHBOARD_ADMIN_TOKEN": "twilio-e2e-admin",
        "SWITCHBOARD_PUBLIC_URL": PUBLIC,
    }
    conn = await asyncpg.connect(database_url)
    try:
        async with (
            running_service(config, environ) as service,
            TopicReader(config, "conversations.inbound") as inbound,
            TopicReader(config, "conversations.routing") as routing,
        ):
            http = service.session
            await service.online_agent("ann", {"sms": 2}, ADMIN)

            # 1. Twilio posts the customer's SMS to the proxy URL, signed for that URL.
            message = {
                "MessageSid": "SM" + "1" * 32,
                "SmsSid": "SM" + "1" * 32,
                "AccountSid": ACCOUNT,
                "From": CUSTOMER,
                "To": OUR_NUMBER,
                "Body": "Is my order shipped?",
                "NumMedia": "0",
                "NumSegments": "1",
                "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
            }
            signature = RequestValidator(TOKEN).compute_signature(WEBHOOK, message)
            async with http.post(
                service.url(forwarded(WEBHOOK)),
                data=message,
                headers={"X-Twilio-Signature": signature},
            ) as r:
                assert r.status == 200, await r.text()
                assert "<Response/>" in await r.text()
            conversation_id = await wait_until(
                lambda: conn.fetchval(
                    "SELECT conversation_id FROM conversations WHERE owner_agent_id = 'ann'"
                ),
                what="the conversation assigned to ann",
            )
            assigned = await routing.assignment(conversation_id)
            assert assigned.agent_id == "ann"
            [received] = [
                e
                for e in map(INBOUND_DECODER.decode, (r.value for r in await inbound.poll()))
                if isinstance(e, MessageReceived)
            ]
            assert (received.endpoint, received.customer_address, received.text) == (
                OUR_NUMBER,
                CUSTOMER,
                "Is my order shipped?",
            )

            # 2. ann replies; Twilio is asked to call back on our status route with its id.
            reply_url = service.url(f"/v1/domains/acme/conversations/{conversation_id}/reply")
            async with http.post(
                reply_url, json={"text": "Yes, it left today."}, headers=ADMIN
            ) as r:
                assert r.status == 202, await r.text()
                reply_id = (await r.json())["reply_id"]
            await wait_until(lambda: SID in fake.sent, timeout=20, what="the reply at Twilio")
            assert fake.refused == []
            sent = fake.sent[SID]
            assert (sent["From"], sent["To"], sent["Body"]) == (
                OUR_NUMBER,
                CUSTOMER,
                "Yes, it left today.",
            )
            assert sent["StatusCallback"] == (
                f"{PUBLIC}/webhooks/twilio/status?"
                + urllib.parse.urlencode({"outbound_id": reply_id})
            )
            await reply_sent(conn, reply_id)

            # 3. Twilio calls the StatusCallback back, signed: the carrier delivered it.
            callback = fake.status_callback(SID, "delivered", RawDlrDoneDate="2408241132")
            async with http.post(
                service.url(callback.path_qs),
                data=callback.params,
                headers={"X-Twilio-Signature": callback.signature},
            ) as r:
                assert r.status == 200, await r.text()

            def reports() -> list[DeliveryStatusChanged]:
                return [
                    e
                    for e in map(INBOUND_DECODER.decode, (r.value for r in inbound.records))
                    if isinstance(e, DeliveryStatusChanged)
                ]

            await inbound.wait_for(lambda _: bool(reports()))
            [report] = reports()
            assert (report.outbound_id, report.status, report.provider_status) == (
                reply_id,
                DeliveryStatus.DELIVERED,
                "delivered",
            )

            def changes() -> list[OutboundStatusChanged]:
                return [
                    e
                    for e in map(ROUTING_DECODER.decode, (r.value for r in routing.records))
                    if isinstance(e, OutboundStatusChanged) and e.status is DeliveryStatus.DELIVERED
                ]

            await routing.wait_for(lambda _: bool(changes()))
            [changed] = changes()
            assert (changed.outbound_id, changed.provider_message_id) == (reply_id, SID)
            await wait_until(
                lambda: conn.fetchval(
                    "SELECT status = 'delivered' FROM outbound_messages WHERE outbound_id = $1",
                    reply_id,
                ),
                what="the delivery recorded",
            )
    finally:
        await conn.close()
        await provider.close()
