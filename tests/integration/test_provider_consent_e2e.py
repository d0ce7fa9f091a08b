"""A provider's consent report end to end: a business-started email goes out through a
stand-in of Mailgun's messages API (``tests.fakes.mailgun``) → the customer follows its
unsubscribe link, and Mailgun's signed ``unsubscribed`` event comes in → besides the
message's status, the router records the opt-out (``consents``, source ``provider``) and
emits ``customer.consent_changed`` → the next business-started email to that address is
refused ``opted_out``, as after a STOP keyword (``test_business_started_e2e``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from schemas import ROUTING_DECODER, Channel, Consent, CustomerConsentChanged
from tests.conftest import Infrastructure
from tests.fakes.mailgun import FakeMailgun
from tests.support import Service, TopicReader, make_config, running_service, wait_until

pytestmark = pytest.mark.integration

SIGNING_KEY = "e2e-mailgun-signing-key"
API_KEY = "e2e-mailgun-api-key"
OURS = "support@acme.example"
CUSTOMER = "ann@example.org"
ADMIN = {"Authorization": "Bearer consent-admin"}
EVENT_ID = "W3X4JOhFT-OZidZGKKr9iA"


def _signature() -> dict[str, str]:
    """Mailgun's signature of now and a fresh token ("Securing Webhooks")."""
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    mac = hmac.new(SIGNING_KEY.encode(), (timestamp + token).encode(), hashlib.sha256)
    return {"timestamp": timestamp, "token": token, "signature": mac.hexdigest()}


def _unsubscribed(message_id: str, outbound_id: str) -> dict[str, Any]:
    """Mailgun's ``unsubscribed`` event webhook for the mail we sent (the documented
    sample's shape), its recipient spelled as the customer's mail client wrote it."""
    return {
        "signature": _signature(),
        "event-data": {
            "event": "unsubscribed",
            "id": EVENT_ID,
            "timestamp": time.time(),
            "log-level": "info",
            "recipient": "Ann@Example.ORG",
            "geolocation": {"country": "US", "region": "TX", "city": "San Antonio"},
            "campaigns": [],
            "tags": [],
            "ip": "192.0.2.7",
            "client-info": {"client-type": "browser", "device-type": "desktop"},
            "message": {"headers": {"message-id": message_id}},
            "user-variables": {
                "switchboard-outbound-id": outbound_id,
                "switchboard-domain": "acme",
            },
        },
    }


async def _notify(service: Service, text: str) -> tuple[int, Any]:
    async with service.session.post(
        service.url("/v1/domains/acme/outbound"),
        json={"channel": "email", "to": CUSTOMER, "subject": "Your order", "text": text},
        headers=ADMIN,
    ) as response:
        return response.status, await response.json()


async def test_a_mailgun_unsubscribe_opts_the_address_out_of_business_started_mail(
    infrastructure: Infrastructure, database_url: str
) -> None:
    fake = FakeMailgun(api_key=API_KEY)
    mailgun = TestServer(fake.app(), host="127.0.0.1")
    await mailgun.start_server()
    base = str(mailgun.make_url("")).rstrip("/")
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "channels": {
                "email": {
                    "mailgun": {"api_base_url": base},
                    "addresses": [{"address": OURS, "domain": "acme"}],
                }
            }
        },
    )
    environ = {
        "MAILGUN_SIGNING_KEY": SIGNING_KEY,
        "MAILGUN_API_KEY": API_KEY,
        "SWITCHBOARD_ADMIN_TOKEN": "consent-admin",
    }
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running_service(config, environ) as service,
            TopicReader(config, "conversations.routing") as routing,
        ):
            # 1. A notification goes out: nothing stops it yet.
            status, first = await _notify(service, "Your order ships today.")
            assert status == 202, first
            outbound_id = first["outbound_id"]
            message_id = await wait_until(
                lambda: pool.fetchval(
                    "SELECT provider_message_id FROM outbound_messages WHERE outbound_id = $1"
                    " AND status = 'sent'",
                    outbound_id,
                ),
                timeout=30,
                what="the notification sent",
            )
            assert fake.refused == []
            [sent] = fake.sent
            assert sent.fields["to"] == [CUSTOMER]

            # 2. The customer unsubscribes: Mailgun's signed event.
            events = service.url("/webhooks/email/mailgun/events")
            async with service.session.post(
                events, json=_unsubscribed(message_id, outbound_id)
            ) as r:
                assert r.status == 200, await r.text()

            # The opt-out, recorded as a keyword's would be, with the provider as source.
            records = await routing.wait_for(
                lambda rs: any(
                    dict(r.headers)["ce_type"] == b"customer.consent_changed" for r in rs
                )
            )
            change = next(
                e
                for e in (ROUTING_DECODER.decode(r.value) for r in records)
                if isinstance(e, CustomerConsentChanged)
            )
            assert (change.channel, change.customer_address) == (Channel.EMAIL, CUSTOMER)
            assert (change.consent, change.source, change.message_id) == (
                Consent.OPT_OUT,
                "provider",
                None,
            )
            row = await wait_until(
                lambda: pool.fetchrow(
                    "SELECT consent, source, customer_id FROM consents WHERE domain = 'acme'"
                    " AND channel = 'email' AND address = $1",
                    CUSTOMER,
                ),
                what="the opt-out stored",
            )
            assert tuple(row) == ("opt_out", "provider", f"email:{CUSTOMER}")
            trail = await pool.fetch(
                "SELECT consent, source, message_id FROM consent_changes WHERE domain = 'acme'"
            )
            assert [tuple(r) for r in trail] == [("opt_out", "provider", None)]
            # Besides the consent, the event is the message's status (unsubscribed: read).
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT status = 'read' FROM outbound_messages WHERE outbound_id = $1",
                    outbound_id,
                ),
                what="the status recorded",
            )

            # 3. The next business-started mail to that address is refused, and counted.
            status, refused = await _notify(service, "A new offer for you.")
            assert (status, refused["error"]) == (409, "opted_out")
            assert len(fake.sent) == 1
            opted_out = service.metrics.registry.get_sample_value(
                "switchboard_outbound_requests_total",
                {"domain": "acme", "channel": "email", "outcome": "opted_out"},
            )
            assert opted_out == 1
    finally:
        await pool.close()
        await mailgun.close()
