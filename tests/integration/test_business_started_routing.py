"""The router's part of business-started messages, through the real service: a notified
customer's reply reaches the sending agent in the notification's conversation, status
reports move the outbound row forward only and reach the routing topic, and a STOP is
recorded for good (the adapters and the outbound API are played by their publishers)."""

from __future__ import annotations

import time
import uuid

import asyncpg

from runtime.appkeys import AGENT_PUBLISHER, INBOUND_PUBLISHER
from schemas import (
    ROUTING_DECODER,
    Answerer,
    AnswerMode,
    Channel,
    Consent,
    ConversationAssigned,
    CustomerConsentChanged,
    CustomerNotified,
    DeliveryStatus,
    DeliveryStatusChanged,
    MessageReceived,
    MessageRouted,
    OutboundStatusChanged,
)
from tests.conftest import Infrastructure
from tests.support import TopicReader, make_config, running_service, sms_received, wait_until

ADMIN = {"Authorization": "Bearer outbound-admin-token"}
PHONE = "+14155550123"
OUR_NUMBER = "+15005550006"
CUSTOMER = f"sms:{PHONE}"


def _message(text: str, *, consent: Consent | None = None) -> MessageReceived:
    return sms_received(PHONE, text, endpoint=OUR_NUMBER, consent=consent)


def _status(status: DeliveryStatus, outbound_id: str) -> DeliveryStatusChanged:
    return DeliveryStatusChanged(
        id=str(uuid.uuid4()),
        domain="acme",
        occurred_at=time.time(),
        channel=Channel.SMS,
        provider_message_id="SMnotice",
        status=status,
        outbound_id=outbound_id,
    )


async def test_a_notified_customers_reply_statuses_and_stop(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    outbound_id, conversation_id = str(uuid.uuid4()), str(uuid.uuid4())
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with (
            running_service(config, {"SWITCHBOARD_ADMIN_TOKEN": "outbound-admin-token"}) as service,
            TopicReader(config, "conversations.routing") as routing,
        ):
            for agent_id in ("ann", "bob"):
                await service.online_agent(agent_id, {"sms": 2}, ADMIN)
            await pool.execute(
                "INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel,"
                " agent_id, status, kind, customer_id, endpoint, provider_message_id)"
                " VALUES ('acme', $1, $2, 'sms', 'bob', 'sent', 'notification', $3, $4, 'SMnotice')",
                outbound_id,
                conversation_id,
                CUSTOMER,
                OUR_NUMBER,
            )
            # bob sends; ann is idle and would win on occupancy: replies go to bob anyway
            notified = CustomerNotified(
                id=str(uuid.uuid4()),
                domain="acme",
                occurred_at=time.time(),
                outbound_id=outbound_id,
                conversation_id=conversation_id,
                customer_id=CUSTOMER,
                channel=Channel.SMS,
                endpoint=OUR_NUMBER,
                customer_address=PHONE,
                answer=Answerer(mode=AnswerMode.SENDER, agent_id="bob", until=time.time() + 3600),
                attributes={"order": "A-1001"},
            )
            await service.app[AGENT_PUBLISHER].publish([notified])
            inbound = service.app[INBOUND_PUBLISHER]
            await inbound.publish([_status(DeliveryStatus.DELIVERED, outbound_id)])
            await inbound.publish([_status(DeliveryStatus.SENT, outbound_id)])  # late: ignored
            await inbound.publish([_message("Can I change the delivery day?")])

            records = await routing.wait_for(
                lambda rs: (
                    sum(dict(r.headers)["ce_type"] == b"outbound.status_changed" for r in rs) == 2
                    and any(dict(r.headers)["ce_type"] == b"conversation.assigned" for r in rs)
                )
            )
            events = [ROUTING_DECODER.decode(r.value) for r in records]
            assigned = next(e for e in events if isinstance(e, ConversationAssigned))
            assert (assigned.conversation_id, assigned.agent_id) == (conversation_id, "bob")
            routed = next(e for e in events if isinstance(e, MessageRouted))
            assert routed.answers_outbound_id == outbound_id
            statuses = [e.status for e in events if isinstance(e, OutboundStatusChanged)]
            assert statuses == [DeliveryStatus.DELIVERED, DeliveryStatus.SENT]
            assert (
                await pool.fetchval(
                    "SELECT status FROM outbound_messages WHERE domain = 'acme' AND outbound_id = $1",
                    outbound_id,
                )
                == "delivered"
            )
            record = await pool.fetchval(
                "SELECT record->'attributes'->>'order' FROM conversations"
                " WHERE domain = 'acme' AND conversation_id = $1",
                conversation_id,
            )
            assert record == "A-1001"

            stop = _message("STOP", consent=Consent.OPT_OUT)
            await inbound.publish([stop])
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
            assert (change.consent, change.customer_address, change.message_id) == (
                Consent.OPT_OUT,
                PHONE,
                stop.id,
            )
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT consent = 'opt_out' FROM consents"
                    " WHERE domain = 'acme' AND channel = 'sms' AND address = $1",
                    PHONE,
                ),
                what="the opt-out stored",
            )
            trail = await pool.fetch(
                "SELECT consent, source, message_id FROM consent_changes WHERE domain = 'acme'"
            )
            assert [tuple(row) for row in trail] == [("opt_out", "keyword", stop.id)]
    finally:
        await pool.close()
