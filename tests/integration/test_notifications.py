"""Business-started messages through the real service: rows queued the way the API writes
them, sent by the adapters' paced sender to provider stand-ins on loopback that speak the
providers' request formats (``tools.bench.providers``), recorded, and reported as
``delivery.status`` events. Consent and campaigns are re-checked before each send; a 429
backs off without a duplicate; a restart mid-campaign sends every message exactly once.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from adapters import outbound_sender
from adapters.outbound_sender import ABANDONED_AFTER_SECONDS
from schemas import (
    INBOUND_DECODER,
    ROUTING_DECODER,
    Answerer,
    Channel,
    DeliveryStatus,
    DeliveryStatusChanged,
    MessageTag,
    NotificationRequested,
    OutboundStatusChanged,
    TemplateCategory,
    TemplateUse,
    topics,
)
from switchboard.config import Config
from tests.adapters.conftest import RecordingPublisher
from tests.conftest import Infrastructure
from tests.support import (
    RouterProcess,
    TopicReader,
    make_raw_config,
    opt_out,
    running_service,
    wait_until,
)
from tools.bench.campaign_bench import claims_under_way
from tools.bench.providers import FakeProviders

pytestmark = pytest.mark.integration

ACCOUNT = "AC00000000000000000000000000000001"
OUR_NUMBER = "+14155550100"
WA_NUMBER_ID = "106540352242922"
PAGE_ID = "1234567890"
ENVIRON = {
    "TWILIO_AUTH_TOKEN": "twilio-test-auth-token",
    "WHATSAPP_ACCESS_TOKEN": "wa-test-token",
    "MESSENGER_PAGE_ACCESS_TOKEN": "page-test-token",
}
FAST = {"per_second": 50, "burst": 50}


def service_config(
    infrastructure: Infrastructure, database_url: str, base: str, sms_rate: dict[str, Any] = FAST
) -> Config:
    return msgspec.convert(raw_config(infrastructure, database_url, base, sms_rate), Config)


def raw_config(
    infrastructure: Infrastructure, database_url: str, base: str, sms_rate: dict[str, Any] = FAST
) -> dict[str, Any]:
    return make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "domains": {
                "acme": {
                    "webchat": {"enabled": True},
                    "outbound": {"rates": {"sms": sms_rate, "whatsapp": FAST, "messenger": FAST}},
                }
            },
            "channels": {
                "twilio": {
                    "account_sid": ACCOUNT,
                    "api_base_url": base,
                    "numbers": [{"number": OUR_NUMBER, "domain": "acme"}],
                },
                "meta": {
                    "graph_api_base_url": base,
                    "whatsapp": [{"phone_number_id": WA_NUMBER_ID, "domain": "acme"}],
                    "messenger": [{"page_id": PAGE_ID, "domain": "acme"}],
                },
            },
        },
    )


async def queue_notification(
    conn: asyncpg.Connection,
    address: str,
    *,
    channel: Channel = Channel.SMS,
    endpoint: str = OUR_NUMBER,
    text: str = "Your parcel arrives today. Reply here with any question.",
    template: TemplateUse | None = None,
    message_tag: MessageTag | None = None,
    campaign_id: str | None = None,
) -> str:
    """A notification as the API writes it: its ``outbound_messages`` row (``queued``,
    ``request`` = the ``NotificationRequested``) and its ``messages`` row, in one
    transaction; the outbound id."""
    now = time.time()
    notification = NotificationRequested(
        id=str(uuid.uuid4()),
        domain="acme",
        occurred_at=now,
        conversation_id=str(uuid.uuid4()),
        customer_id=f"phone:{address}",
        channel=channel,
        endpoint=endpoint,
        customer_address=address,
        text=text,
        template=template,
        message_tag=message_tag,
        campaign_id=campaign_id,
        answer=Answerer(until=now + 72 * 3600),
    )
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel, status,"
            " kind, customer_id, endpoint, campaign_id, request)"
            " VALUES ('acme', $1, $2, $3, 'queued', 'notification', $4, $5, $6, $7)",
            notification.id,
            notification.conversation_id,
            str(channel),
            notification.customer_id,
            endpoint,
            campaign_id,
            msgspec.json.encode(notification),
        )
        await conn.execute(
            "INSERT INTO messages (domain, message_id, conversation_id, direction, channel,"
            " text, status, occurred_at) VALUES ('acme', $1, $2, 'outbound', $3, $4, 'queued',"
            " now())",
            notification.id,
            notification.conversation_id,
            str(channel),
            text,
        )
    return notification.id


async def campaign(conn: asyncpg.Connection, campaign_id: str, status: str) -> None:
    """A campaign of acme's in ``status``, as the campaign API stores it."""
    await conn.execute(
        "INSERT INTO campaigns (domain, campaign_id, status, created_by)"
        " VALUES ('acme', $1, $2, 'test')",
        campaign_id,
        status,
    )


async def statuses(conn: asyncpg.Connection, *outbound_ids: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT o.status, m.status AS history FROM unnest($1::text[]) WITH ORDINALITY"
        " AS x(id, n) JOIN outbound_messages o ON o.outbound_id = x.id"
        " JOIN messages m ON m.message_id = x.id ORDER BY x.n",
        list(outbound_ids),
    )
    # Both tables agree; the customer's history says ``queued`` until the send is recorded.
    history = {"sending": "queued", "accepted": "queued"}
    assert all(history.get(r["status"], r["status"]) == r["history"] for r in rows), rows
    return [row["status"] for row in rows]


async def all_in(conn: asyncpg.Connection, status: str, *outbound_ids: str) -> bool:
    return await statuses(conn, *outbound_ids) == [status] * len(outbound_ids)


def sends(metrics_registry: Any, channel: str, outcome: str) -> float:
    value = metrics_registry.get_sample_value(
        "switchboard_outbound_sends_total",
        {"domain": "acme", "channel": channel, "outcome": outcome},
    )
    return value or 0.0


async def test_a_whatsapp_template_notification_is_sent_in_the_cloud_api_template_shape(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    fake, base = provider
    config = service_config(infrastructure, database_url, base)
    template = TemplateUse(
        name="delivery_update",
        language="en-US",
        provider_template="delivery_update_v2",
        parameters=("Ada", "A-1042"),
    )
    content = TemplateUse(
        name="delivery_update", language="en-US", provider_template="HX" + "a" * 32,
        parameters=("Ada", "A-1042"),
    )  # fmt: skip
    conn = await asyncpg.connect(database_url)
    try:
        whatsapp = await queue_notification(
            conn,
            "+14155552671",
            channel=Channel.WHATSAPP,
            endpoint=WA_NUMBER_ID,
            text="Hi Ada, your order A-1042 arrives today.",
            template=template,
        )
        sms = await queue_notification(conn, "+14155552672", template=content)
        messenger = await queue_notification(
            conn,
            "6543210987654321",
            channel=Channel.MESSENGER,
            endpoint=PAGE_ID,
            text="Your agent answered your question.",
            message_tag=MessageTag.HUMAN_AGENT,
        )
        async with (
            running_service(config, ENVIRON) as service,
            TopicReader(config, topics.INBOUND) as inbound,
        ):
            await wait_until(
                lambda: all_in(conn, "sent", whatsapp, sms, messenger),
                timeout=30,
                what="the notifications sent",
            )
            reported = await inbound.wait_for(
                lambda records: len(_statuses(records)) == 3, timeout=30
            )
            assert sends(service.metrics.registry, "whatsapp", "sent") == 1
            await wait_until(
                lambda: conn.fetchval(
                    "SELECT count(*) = 0 FROM outbound_messages WHERE status_unreported"
                ),
                what="the reports published",
            )
        [cloud] = [r for r in fake.delivered if r.provider == "whatsapp"]
        assert cloud.path == f"/v23.0/{WA_NUMBER_ID}/messages"
        assert cloud.auth == "Bearer wa-test-token"
        assert cloud.json == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "14155552671",
            "type": "template",
            "template": {
                "name": "delivery_update_v2",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Ada"},
                            {"type": "text", "text": "A-1042"},
                        ],
                    }
                ],
            },
            "biz_opaque_callback_data": whatsapp,
        }
        [twilio] = [r for r in fake.delivered if r.provider == "twilio"]
        assert twilio.form == {
            "From": OUR_NUMBER,
            "To": "+14155552672",
            "ContentSid": "HX" + "a" * 32,
            "ContentVariables": '{"1":"Ada","2":"A-1042"}',
        }
        [send_api] = [r for r in fake.delivered if r.provider == "send_api"]
        assert send_api.json == {
            "recipient": {"id": "6543210987654321"},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": "Your agent answered your question."},
        }
        wamid = await conn.fetchval(
            "SELECT provider_message_id FROM outbound_messages WHERE outbound_id = $1", whatsapp
        )
        assert wamid.startswith("wamid.")
        by_id = {event.outbound_id: event for event in _statuses(reported)}
        assert set(by_id) == {whatsapp, sms, messenger}
        event = by_id[whatsapp]
        assert (event.status, event.channel, event.provider_message_id, event.domain) == (
            DeliveryStatus.SENT,
            Channel.WHATSAPP,
            wamid,
            "acme",
        )
    finally:
        await conn.close()


def _statuses(records: list[Any]) -> list[DeliveryStatusChanged]:
    decoded = (INBOUND_DECODER.decode(record.value) for record in records)
    return [event for event in decoded if isinstance(event, DeliveryStatusChanged)]


def _outcomes(records: list[Any]) -> dict[str, OutboundStatusChanged]:
    """The ``outbound.status_changed`` events on the routing topic, by outbound id."""
    decoded = (ROUTING_DECODER.decode(record.value) for record in records)
    return {
        event.outbound_id: event
        for event in decoded
        if isinstance(event, OutboundStatusChanged) and event.outbound_id is not None
    }


async def test_an_address_that_opted_out_meanwhile_is_refused(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    """Refused, and said so on the event stream (``outbound.status_changed``)."""
    fake, base = provider
    config = service_config(infrastructure, database_url, base)
    conn = await asyncpg.connect(database_url)
    try:
        await opt_out(conn, "sms", "+14155550001")
        stopped = await queue_notification(conn, "+14155550001")  # older: claimed first
        kept = await queue_notification(conn, "+14155550002")
        async with (
            running_service(config, ENVIRON) as service,
            TopicReader(config, topics.ROUTING) as routing,
        ):
            await wait_until(lambda: all_in(conn, "sent", kept), timeout=30, what="sent")
            assert await statuses(conn, stopped) == ["refused"]
            assert sends(service.metrics.registry, "sms", "refused") == 1
            outcomes = _outcomes(
                await routing.wait_for(lambda rs: {stopped, kept} <= _outcomes(rs).keys())
            )
            refused = outcomes[stopped]
            assert (refused.status, refused.error_code, refused.channel) == (
                DeliveryStatus.REFUSED,
                "opted_out",
                Channel.SMS,
            )
            assert outcomes[kept].status is DeliveryStatus.SENT
            assert await statuses(conn, stopped) == ["refused"]  # the report moved nothing
        assert fake.delivered_to() == {"+14155550002": 1}
    finally:
        await conn.close()


async def test_a_marketing_stop_meanwhile_refuses_marketing_templates_alone(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    """WhatsApp's marketing stop (scope ``marketing``) recorded after both were accepted:
    the marketing template is refused before it is sent, the utility one goes."""
    fake, base = provider
    config = service_config(infrastructure, database_url, base)
    address = "+14155552671"

    def template(name: str, category: TemplateCategory) -> TemplateUse:
        return TemplateUse(
            name=name, language="en", provider_template=name, category=category, parameters=()
        )

    conn = await asyncpg.connect(database_url)
    try:
        await opt_out(conn, "whatsapp", address, scope="marketing")
        queued = {
            category: await queue_notification(
                conn,
                address,
                channel=Channel.WHATSAPP,
                endpoint=WA_NUMBER_ID,
                text=f"A {category} message",
                template=template(f"{category}_update", category),
            )
            for category in (TemplateCategory.MARKETING, TemplateCategory.UTILITY)
        }
        async with running_service(config, ENVIRON):
            sent = queued[TemplateCategory.UTILITY]
            await wait_until(lambda: all_in(conn, "sent", sent), timeout=30, what="sent")
            assert await statuses(conn, queued[TemplateCategory.MARKETING]) == ["refused"]
        assert fake.delivered_to() == {address.lstrip("+"): 1}  # WhatsApp's spelling
    finally:
        await conn.close()


async def test_a_paused_campaign_waits_and_resumes(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    fake, base = provider
    config = service_config(infrastructure, database_url, base)
    conn = await asyncpg.connect(database_url)
    try:
        await campaign(conn, "spring", "paused")
        paused = [
            await queue_notification(conn, f"+1415555030{n}", campaign_id="spring")
            for n in range(3)
        ]
        other = await queue_notification(conn, "+14155550399")  # younger, in no campaign
        async with running_service(config, ENVIRON):
            await wait_until(lambda: all_in(conn, "sent", other), timeout=30, what="sent")
            assert await statuses(conn, *paused) == ["queued"] * 3
            assert fake.delivered_to() == {"+14155550399": 1}

            await conn.execute("UPDATE campaigns SET status = 'running'")
            await wait_until(
                lambda: all_in(conn, "sent", *paused), timeout=30, what="the campaign resumed"
            )
        assert sorted(fake.delivered_to().values()) == [1, 1, 1, 1]
    finally:
        await conn.close()


async def test_a_cancelled_campaign_s_messages_are_cancelled(
    infrastructure: Infrastructure,
    database_url: str,
    provider: tuple[FakeProviders, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled, and said so on the event stream once the flags are old enough to take
    (``REPORT_AFTER_SECONDS``, shortened here)."""
    monkeypatch.setattr(outbound_sender, "REPORT_AFTER_SECONDS", 1.0)
    fake, base = provider
    config = service_config(infrastructure, database_url, base)
    conn = await asyncpg.connect(database_url)
    try:
        await campaign(conn, "autumn", "cancelled")
        cancelled = [
            await queue_notification(conn, f"+1415555040{n}", campaign_id="autumn")
            for n in range(2)
        ]
        async with (
            running_service(config, ENVIRON) as service,
            TopicReader(config, topics.ROUTING) as routing,
        ):
            await wait_until(
                lambda: all_in(conn, "cancelled", *cancelled), timeout=30, what="cancelled"
            )
            assert sends(service.metrics.registry, "sms", "cancelled") == 2
            outcomes = _outcomes(
                await routing.wait_for(lambda rs: set(cancelled) <= _outcomes(rs).keys())
            )
            assert [outcomes[c].status for c in cancelled] == [DeliveryStatus.CANCELLED] * 2
            await wait_until(
                lambda: conn.fetchval(
                    "SELECT NOT bool_or(status_unreported) FROM outbound_messages"
                ),
                what="the flags cleared",
            )
        assert fake.requests == []
    finally:
        await conn.close()


async def test_rows_an_api_process_left_accepted_are_forgotten(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    """An API process that died between writing a send and setting it ``queued`` never
    answered: after ``ABANDONED_AFTER_SECONDS`` the rows go, and nothing is sent; a fresh
    ``accepted`` row (an API mid-send) stays."""
    fake, base = provider
    config = service_config(infrastructure, database_url, base)
    conn = await asyncpg.connect(database_url)
    try:
        old = await queue_notification(conn, "+14155550601")
        fresh = await queue_notification(conn, "+14155550602")
        await conn.execute(
            "UPDATE outbound_messages SET status = 'accepted', created_at = now() - $2::interval"
            " WHERE outbound_id = $1",
            old,
            timedelta(seconds=ABANDONED_AFTER_SECONDS + 60),
        )
        await conn.execute(
            "UPDATE outbound_messages SET status = 'accepted' WHERE outbound_id = $1", fresh
        )
        async with running_service(config, ENVIRON):
            await wait_until(
                lambda: conn.fetchval(
                    "SELECT count(*) = 0 FROM messages WHERE message_id = $1", old
                ),
                timeout=30,
                what="the abandoned send forgotten",
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM outbound_messages WHERE outbound_id = $1", old
                )
                == 0
            )
            assert await statuses(conn, fresh) == ["accepted"]
        assert fake.requests == []
    finally:
        await conn.close()


async def test_a_provider_429_backs_off_and_the_message_is_sent_once(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    fake, base = provider
    fake.throttled = 1
    config = service_config(infrastructure, database_url, base)
    conn = await asyncpg.connect(database_url)
    try:
        outbound_id = await queue_notification(
            conn, "+14155552671", channel=Channel.WHATSAPP, endpoint=WA_NUMBER_ID
        )
        async with running_service(config, ENVIRON) as service:
            await wait_until(lambda: all_in(conn, "sent", outbound_id), timeout=30, what="sent")
            throttled = service.metrics.registry.get_sample_value(
                "switchboard_outbound_throttled_total",
                {"domain": "acme", "channel": "whatsapp", "limit": "provider"},
            )
            assert throttled == 1
        assert [r.status for r in fake.requests] == [429, 200]
        assert fake.delivered_to() == {"14155552671": 1}
        attempts = await conn.fetchval(
            "SELECT attempts FROM outbound_messages WHERE outbound_id = $1", outbound_id
        )
        assert attempts == 2
    finally:
        await conn.close()


async def test_a_restart_mid_campaign_sends_every_message_exactly_once(
    infrastructure: Infrastructure, database_url: str, provider: tuple[FakeProviders, str]
) -> None:
    fake, base = provider
    config = service_config(
        infrastructure, database_url, base, sms_rate={"per_second": 10, "burst": 1}
    )
    conn = await asyncpg.connect(database_url)
    try:
        await campaign(conn, "winter", "running")
        ids = [
            await queue_notification(conn, f"+141555506{n:02d}", campaign_id="winter")
            for n in range(60)
        ]
        async with running_service(config, ENVIRON):
            await wait_until(lambda: len(fake.delivered) >= 10, timeout=30, what="10 sent")
        # Stopped mid-campaign: sends under way were recorded, claims not started given back.
        left = await conn.fetch(
            "SELECT status, count(*) FROM outbound_messages GROUP BY status ORDER BY status"
        )
        assert {row["status"] for row in left} == {"queued", "sent"}, left

        async with running_service(config, ENVIRON):
            await wait_until(
                lambda: all_in(conn, "sent", *ids), timeout=60, what="the campaign finished"
            )
        delivered = fake.delivered_to()
        assert len(delivered) == 60
        assert set(delivered.values()) == {1}
        assert len(fake.requests) == 60  # nothing was even asked twice
    finally:
        await conn.close()


async def test_a_sender_killed_mid_campaign_is_replaced_and_only_its_claims_go_again(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """An adapters process killed with sends under way: its claims wait for their lease,
    then a new process sends them again. The stand-in counts a request as received when it
    arrives and answers half a second later, so the killed process's last requests reached
    the provider without their answers: Twilio takes no idempotency key, and those
    customers receive the message twice. Nobody else does, and nobody receives none."""
    fake = FakeProviders(delay=0.5)
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    raw = raw_config(infrastructure, database_url, base, sms_rate={"per_second": 10, "burst": 1})
    conn = await asyncpg.connect(database_url)
    try:
        ids = [await queue_notification(conn, f"+141555507{n:02d}") for n in range(40)]
        first = RouterProcess(raw, tmp_path, "adapters1", role="adapters", environ=ENVIRON)
        first.start()
        try:
            await first.wait_ready()
            await wait_until(lambda: len(fake.delivered) >= 10, timeout=30, what="10 sent")
        finally:
            first.kill()
        claimed = await claims_under_way(database_url)
        assert claimed  # the premise: it died with claims under way

        second = RouterProcess(raw, tmp_path, "adapters2", role="adapters", environ=ENVIRON)
        second.start()
        try:
            await wait_until(
                lambda: all_in(conn, "sent", *ids), timeout=90, what="the campaign finished"
            )
        finally:
            second.terminate()
        delivered = fake.delivered_to()
        assert len(delivered) == 40  # no loss
        twice = {address for address, count in delivered.items() if count > 1}
        assert max(delivered.values()) <= 2
        assert twice <= claimed, twice - claimed
        assert twice  # the premise: some claims had reached the provider
    finally:
        await conn.close()
        await server.close()


async def test_statuses_left_unreported_are_taken_over_as_they_were_recorded(
    database_url: str,
) -> None:
    """A refused message whose report a process that died never published (and a sent
    one) is published by another process as the first would have: ``refused`` with its
    ``opted_out`` code; the flags are cleared once it is."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            refused = await queue_notification(conn, "+14155550501")
            sent = await queue_notification(conn, "+14155550502")
            await conn.execute(
                "UPDATE outbound_messages SET status = CASE outbound_id WHEN $1 THEN 'refused'"
                " ELSE 'sent' END, status_unreported = true,"
                " updated_at = now() - interval '1 minute'",
                refused,
            )
        published = RecordingPublisher()
        reports = outbound_sender.StatusReports(pool, published)
        assert await reports.take_over_stale() == 2
        await reports.flush()
        by_id = {event.outbound_id: event for event in published.events}
        assert (by_id[refused].status, by_id[refused].error_code) == (
            DeliveryStatus.REFUSED,
            "opted_out",
        )
        assert (by_id[sent].status, by_id[sent].error_code) == (DeliveryStatus.SENT, None)
        assert not await pool.fetchval("SELECT bool_or(status_unreported) FROM outbound_messages")
    finally:
        await pool.close()
