"""WhatsApp's marketing stop end to end: a user stops marketing messages in WhatsApp's
"Offers and announcements" setting, and Meta's signed ``user_preferences`` notification
comes in → the router records an ``opt_out`` of scope ``marketing``
(``marketing_consents``, source ``provider``) → a marketing template to them is refused ``opted_out`` while a utility
template still goes out through the Cloud API stand-in → they resume, and the marketing
template goes too. A send Meta fails with its error ``131050`` records the same stop."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest

from tests.conftest import Infrastructure
from tests.integration.test_meta_e2e import (
    ADMIN,
    ENVIRON,
    METADATA,
    WA_NUMBER_ID,
    WA_TOKEN,
    _signed,
)
from tests.support import Service, make_config, reply_sent, running_service, wait_until
from tools.bench.providers import FakeProviders

pytestmark = pytest.mark.integration

USER = "+16505551234"
TEMPLATES = [
    {
        "name": "spring_sale",
        "language": "en",
        "channel": "whatsapp",
        "category": "marketing",
        "body": "Spring sale: {{1}} off everything until Sunday.",
    },
    {
        "name": "delivery_update",
        "language": "en",
        "channel": "whatsapp",
        "category": "utility",
        "body": "Your order {{1}} arrives today.",
    },
]


async def _preference(service: Service, value: str, at: int) -> None:
    """Meta's signed ``user_preferences`` notification of the user's ``value``."""
    change = {
        "messaging_product": "whatsapp",
        "metadata": METADATA,
        "contacts": [{"wa_id": USER.lstrip("+")}],
        "user_preferences": [
            {
                "wa_id": USER.lstrip("+"),
                "detail": f"User requested to {value} marketing messages",
                "category": "marketing_messages",
                "value": value,
                "timestamp": at,
            }
        ],
    }
    await _signed(
        service,
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [{"field": "user_preferences", "value": change}],
                }
            ],
        },
    )


def _failed_for_a_stop(at: int) -> dict[str, Any]:
    """Meta's example of a failed status: error 131050, the user stopped marketing."""
    reason = (
        "Unable to deliver the message. This recipient has chosen to stop receiving"
        " marketing messages on WhatsApp from your business"
    )
    status = {
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjNBNzEyQTdBMkIxQTIA",
        "status": "failed",
        "timestamp": str(at),
        "recipient_id": USER.lstrip("+"),
        "errors": [
            {
                "code": 131050,
                "title": reason,
                "message": reason,
                "error_data": {"details": reason},
            }
        ],
    }
    change = {"messaging_product": "whatsapp", "metadata": METADATA, "statuses": [status]}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": change}]}],
    }


async def _send(service: Service, template: str, parameter: str) -> tuple[int, Any]:
    body = {
        "channel": "whatsapp",
        "from": WA_NUMBER_ID,
        "to": USER,
        "template": {"name": template, "language": "en", "parameters": [parameter]},
    }
    async with service.session.post(
        service.url("/v1/domains/acme/outbound"), json=body, headers=ADMIN
    ) as response:
        return response.status, await response.json()


async def _marketing(pool: asyncpg.Pool, expected: str) -> bool:
    consent = await pool.fetchval(
        "SELECT consent FROM marketing_consents WHERE domain = 'acme' AND channel = 'whatsapp'"
        " AND address = $1",
        USER,
    )
    return bool(consent == expected)


async def test_a_marketing_stop_refuses_marketing_templates_until_the_user_resumes(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    fake, base = provider
    whatsapp = {"phone_number_id": WA_NUMBER_ID, "domain": "acme", "access_token_env": "WA_TOKEN"}
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "domains": {"acme": {"outbound": {"templates": TEMPLATES}}},
            "channels": {
                "phone_identity_domains": ["acme"],
                "meta": {"graph_api_base_url": base, "whatsapp": [whatsapp]},
            },
        },
    )
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with running_service(config, {**ENVIRON, "WA_TOKEN": WA_TOKEN}) as service:
            now = int(time.time())
            await _preference(service, "stop", now - 60)
            await wait_until(lambda: _marketing(pool, "opt_out"), timeout=20, what="the stop")
            assert await pool.fetchval("SELECT count(*) FROM consents WHERE domain = 'acme'") == 0
            assert await _send(service, "spring_sale", "20%") == (409, {"error": "opted_out"})
            status, sent = await _send(service, "delivery_update", "A-1042")
            assert status == 202, sent
            await reply_sent(pool, sent["outbound_id"])
            assert fake.delivered_to() == {USER.lstrip("+"): 1}

            await _preference(service, "resume", now - 30)
            await wait_until(lambda: _marketing(pool, "opt_in"), timeout=20, what="the resume")
            status, answer = await _send(service, "spring_sale", "20%")
            assert status == 202, answer

            # Stopped again, told only by a send Meta failed (Meta's example status).
            await _signed(service, _failed_for_a_stop(now - 10))
            await wait_until(lambda: _marketing(pool, "opt_out"), timeout=20, what="the failure")
            assert await _send(service, "spring_sale", "20%") == (409, {"error": "opted_out"})
    finally:
        await pool.close()
