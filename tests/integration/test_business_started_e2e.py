"""A business-started conversation end to end, as a platform team meets it: the outbound
API, the paced sender, a WhatsApp Cloud API stand-in speaking its documented shapes, and
the customer answering through Meta's signed webhook.

- An agent's WhatsApp template notification reaches the provider as a template message;
  Meta's `delivered` status (carrying our id back) moves it on.
- The customer's reply lands on the sending agent, in the notification's conversation,
  with its attributes; the routing event says which message it answers.
- After the answer window, a reply takes normal routing (the customer's last agent).
- A STOP opts the address out: the next send is refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import msgspec
import pytest

from adapters.base import hmac_hex
from schemas import ROUTING_DECODER, ConversationAssigned, MessageRouted
from tests.conftest import Infrastructure
from tests.support import Service, TopicReader, make_config, running_service, wait_until
from tools.bench.providers import FakeProviders

pytestmark = pytest.mark.integration

WA_NUMBER_ID = "106540352242922"
CUSTOMER = "+14155552671"
SECRET = "e2e-meta-app-secret"
ENVIRON = {
    "SWITCHBOARD_ADMIN_TOKEN": "e2e-admin-token",
    "META_APP_SECRET": SECRET,
    "WHATSAPP_ACCESS_TOKEN": "wa-test-token",
}
ADMIN = {"Authorization": "Bearer e2e-admin-token"}
TEMPLATE = {
    "name": "delivery_update",
    "language": "en_US",
    "channel": "whatsapp",
    "category": "utility",
    "provider_template": "delivery_update_v2",
    "body": "Hi {{1}}, your order {{2}} arrives today. Reply here with any question.",
}


async def _call(service: Service, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with service.session.request(
        method, service.url(path), json=body, headers=ADMIN
    ) as response:
        return response.status, await response.json()


async def _meta(service: Service, value: dict[str, Any]) -> None:
    """A signed WhatsApp Cloud API webhook for our number."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": WA_NUMBER_ID},
        **value,
    }
    body = msgspec.json.encode(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"value": value, "field": "messages"}]}],
        }
    )
    headers = {
        "X-Hub-Signature-256": "sha256=" + hmac_hex(SECRET, body),
        "Content-Type": "application/json",
    }
    async with service.session.post(
        service.url("/webhooks/meta"), data=body, headers=headers
    ) as response:
        assert response.status == 200, await response.text()


async def _customer_writes(service: Service, message_id: str, text: str) -> None:
    message = {
        "from": CUSTOMER.lstrip("+"),
        "id": message_id,
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    await _meta(service, {"contacts": [{"wa_id": CUSTOMER.lstrip("+")}], "messages": [message]})


async def _notify(service: Service, sender: str, expires_in: float, order: str) -> dict[str, Any]:
    status, sent = await _call(
        service,
        "POST",
        "/v1/domains/acme/outbound",
        {
            "channel": "whatsapp",
            "to": CUSTOMER,
            "template": {"name": "delivery_update", "parameters": ["Ann", order]},
            "attributes": {"order_id": order},
            "answer": {"mode": "sender", "agent_id": sender, "expires_in_seconds": expires_in},
            "client_key": f"delivery-{order}",
        },
    )
    assert status == 202, sent
    return dict(sent)


def _routing(records: list[Any]) -> list[Any]:
    return [ROUTING_DECODER.decode(record.value) for record in records]


async def test_a_notification_is_answered_by_its_sender_then_normal_routing_then_stop(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    fake, base = provider
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "domains": {
                "acme": {
                    "outbound": {
                        "templates": [TEMPLATE],
                        "rates": {"whatsapp": {"per_second": 20, "burst": 5}},
                    }
                }
            },
            "channels": {
                "meta": {
                    "graph_api_base_url": base,
                    "whatsapp": [{"phone_number_id": WA_NUMBER_ID, "domain": "acme"}],
                }
            },
        },
    )
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running_service(config, ENVIRON) as service,
            TopicReader(config, "conversations.routing") as routing,
        ):
            for agent_id in ("ann", "bob", "carol"):
                await service.online_agent(agent_id, {"whatsapp": 3}, ADMIN)

            # 1. bob's template notification goes out as a WhatsApp template message.
            first = await _notify(service, "bob", 3600, "A-1001")
            await wait_until(lambda: len(fake.delivered) == 1, timeout=30, what="the send")
            [sent] = fake.delivered
            assert sent.json["type"] == "template"
            assert sent.json["template"]["name"] == "delivery_update_v2"
            assert sent.json["template"]["language"] == {"code": "en_US"}
            assert sent.json["biz_opaque_callback_data"] == first["outbound_id"]
            wamid = await wait_until(
                lambda: pool.fetchval(
                    "SELECT provider_message_id FROM outbound_messages WHERE outbound_id = $1"
                    " AND status = 'sent'",
                    first["outbound_id"],
                ),
                what="the send recorded",
            )
            status_update = {
                "id": wamid,
                "status": "delivered",
                "timestamp": str(int(time.time())),
                "recipient_id": CUSTOMER.lstrip("+"),
                "biz_opaque_callback_data": first["outbound_id"],
            }
            await _meta(service, {"statuses": [status_update]})
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT status = 'delivered' FROM outbound_messages WHERE outbound_id = $1",
                    first["outbound_id"],
                ),
                what="delivered",
            )

            # 2. The customer answers: bob gets it (ann and carol are as free as he is).
            await _customer_writes(service, "wamid.reply-1", "Can it come tomorrow instead?")
            records = await routing.wait_for(
                lambda rs: any(isinstance(e, ConversationAssigned) for e in _routing(rs))
            )
            events = _routing(records)
            assigned = next(e for e in events if isinstance(e, ConversationAssigned))
            assert (assigned.conversation_id, assigned.agent_id, assigned.strategy) == (
                first["conversation_id"],
                "bob",
                "preferred",
            )
            routed = next(e for e in events if isinstance(e, MessageRouted))
            assert routed.answers_outbound_id == first["outbound_id"]
            attributes = await pool.fetchval(
                "SELECT record->'attributes'->>'order_id' FROM conversations"
                " WHERE domain = 'acme' AND conversation_id = $1",
                first["conversation_id"],
            )
            assert attributes == "A-1001"
            status, _ = await _call(
                service,
                "POST",
                f"/v1/domains/acme/conversations/{first['conversation_id']}/close",
                {"reason": "resolved"},
            )
            assert status == 202

            # 3. carol's notification names her for 1 s; a later reply takes normal
            # routing: the customer's last agent, bob.
            second = await _notify(service, "carol", 1, "A-1002")
            await wait_until(lambda: len(fake.delivered) == 2, timeout=30, what="the 2nd send")
            await asyncio.sleep(1.5)
            await _customer_writes(service, "wamid.reply-2", "Thanks! One more question.")
            records = await routing.wait_for(
                lambda rs: sum(isinstance(e, ConversationAssigned) for e in _routing(rs)) == 2
            )
            later = [e for e in _routing(records) if isinstance(e, ConversationAssigned)][-1]
            assert (later.conversation_id, later.agent_id) == (second["conversation_id"], "bob")

            # 4. STOP: the address opted out, the next send is refused and counted.
            await _customer_writes(service, "wamid.stop", "STOP")
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT consent = 'opt_out' FROM consents WHERE domain = 'acme'"
                    " AND channel = 'whatsapp' AND address = $1",
                    CUSTOMER,
                ),
                what="the opt-out recorded",
            )
            status, refused = await _call(
                service,
                "POST",
                "/v1/domains/acme/outbound",
                {
                    "channel": "whatsapp",
                    "to": CUSTOMER,
                    "template": {"name": "delivery_update", "parameters": ["Ann", "A-1003"]},
                },
            )
            assert (status, refused["error"]) == (409, "opted_out")
            assert len(fake.delivered) == 2
            opted_out = service.metrics.registry.get_sample_value(
                "switchboard_outbound_requests_total",
                {"domain": "acme", "channel": "whatsapp", "outcome": "opted_out"},
            )
            assert opted_out == 1
    finally:
        await pool.close()
