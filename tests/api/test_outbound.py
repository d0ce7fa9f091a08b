"""Business-started messages through the running service (router role: the API and the
router, no sender, so accepted messages stay ``queued``): what is written and published,
idempotency, every refusal, the windows, agent tokens, the reply API's templates and
tags, the customer's history, and a broker that is down. The rules on their own (no I/O) are
in ``test_outbound_rules``.

Customers write by their adapters' event (``message.received`` on the inbound topic), so
that a test can say when their provider's window closes."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runtime.appkeys import INBOUND_PUBLISHER
from schemas import (
    AGENT_EVENT_DECODER,
    OUTBOUND_DECODER,
    Channel,
    CustomerNotified,
    MessageReceived,
    MessageTag,
    NotificationRequested,
    ReplyRequested,
)
from switchboard.app import Role
from switchboard.embedded import EmbeddedBroker
from tests.api.support import Api, api_service
from tests.api.test_outbound_rules import (
    BOT,
    CUSTOMER,
    EMAIL,
    IG,
    PAGE,
    SMS_NUMBER,
    TEMPLATES,
    WA_ID,
)
from tests.conftest import Infrastructure
from tests.support import TopicReader, opt_out, wait_until

pytestmark = pytest.mark.timeout(240)

OVERRIDES: dict[str, Any] = {
    "domains": {
        "acme": {
            "webchat": {"enabled": True},
            "routing": {"queues": {"default": {}, "billing": {}}},
            "outbound": {"answer_hours": 48, "templates": TEMPLATES},
        },
        "globex": {"webchat": {"enabled": True}},
    },
    "channels": {
        "phone_identity_domains": ["acme"],
        "twilio": {
            "account_sid": "AC00000000000000000000000000000001",
            "numbers": [{"number": SMS_NUMBER, "domain": "acme"}],
        },
        "meta": {
            "whatsapp": [{"phone_number_id": WA_ID, "domain": "acme"}],
            "messenger": [{"page_id": PAGE, "domain": "acme"}],
            "instagram": [{"account_id": IG, "domain": "acme"}],
        },
        "telegram": {"bots": [{"name": BOT, "domain": "acme"}]},
        "email": {"addresses": [{"address": EMAIL, "domain": "acme"}]},
    },
}
OUTBOUND = "/v1/domains/acme/outbound"


# -- the service --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def outbound_api(
    bootstrap_servers: str, database_url: str, overrides: dict[str, Any] | None = None
) -> AsyncIterator[Api]:
    """The router role (API and router) with acme's endpoints and templates, and the
    tokens of ``tests.api.support``: ``admin``, ``globex``, ``ann``, ``bob``, ``platform``."""
    async with api_service(
        bootstrap_servers,
        database_url,
        {**OVERRIDES, **(overrides or {})},
        roles=frozenset({Role.ROUTER}),
    ) as api:
        yield api


async def customer_writes(
    api: Api,
    channel: Channel,
    endpoint: str,
    address: str,
    *,
    window_ends_at: float | None = None,
    text: str = "hello",
    other_address: str | None = None,
) -> str:
    """The customer ``address`` writes to ``endpoint`` (as its adapter reports it, with
    the second address it names: a WhatsApp user's business-scoped user id beside their
    number); the conversation's id once the router stored it."""
    config = api.service.config
    if channel is Channel.WEBCHAT:
        customer_id, key = f"webchat:{address}", f"webchat:{address}"
    else:
        customer_id = config.channels.customer_id("acme", channel.value, address)
        key = f"{channel}:{endpoint}:{address}"
    message = MessageReceived(
        id=str(uuid.uuid4()),
        domain="acme",
        occurred_at=time.time(),
        channel=channel,
        endpoint=endpoint,
        customer_address=address,
        customer_id=customer_id,
        conversation_key=key,
        provider_message_id=uuid.uuid4().hex,
        text=text,
        reply_window_ends_at=window_ends_at,
        other_identity=(
            None
            if other_address is None
            else config.channels.customer_id("acme", channel.value, other_address)
        ),
    )
    await api.service.app[INBOUND_PUBLISHER].publish([message])

    async def stored() -> str | None:
        value: str | None = await api.pool.fetchval(
            "SELECT conversation_id FROM messages WHERE domain = 'acme' AND message_id = $1",
            message.id,
        )
        return value

    conversation_id: str = await wait_until(stored, timeout=20, what="the customer's message")
    return conversation_id


async def rows(api: Api, outbound_id: str) -> tuple[asyncpg.Record, asyncpg.Record]:
    outbound = await api.pool.fetchrow(
        "SELECT * FROM outbound_messages WHERE domain = 'acme' AND outbound_id = $1", outbound_id
    )
    message = await api.pool.fetchrow(
        "SELECT * FROM messages WHERE domain = 'acme' AND message_id = $1", outbound_id
    )
    assert outbound is not None
    assert message is not None
    return outbound, message


def requested(row: asyncpg.Record) -> NotificationRequested:
    event = OUTBOUND_DECODER.decode(row["request"])
    assert isinstance(event, NotificationRequested)
    return event


def counted(api: Api, channel: str, outcome: str) -> float:
    value = api.service.metrics.registry.get_sample_value(
        "switchboard_outbound_requests_total",
        {"domain": "acme", "channel": channel, "outcome": outcome},
    )
    return value or 0.0


# -- through the service ------------------------------------------------------------


async def test_a_whatsapp_template_and_an_sms_are_written_published_and_idempotent(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        await api.register("ann")
        await api.register("bob")
        config = api.service.config
        async with (
            TopicReader(config, "conversations.outbound") as outbound,
            TopicReader(config, "agents.events") as agents,
        ):
            before = time.time()
            body = {
                "channel": "whatsapp",
                "from": WA_ID,
                "to": "+1 415 555 2671",
                "template": {
                    "name": "delivery_update",
                    "language": "en_US",
                    "parameters": ["Ann", "A-1234"],
                },
                "attributes": {"order_id": "A-1234"},
                "answer": {"mode": "sender", "agent_id": "ann"},
                "client_key": "order-A-1234-delivery",
            }
            status, sent = await api.call("POST", OUTBOUND, json=body)
            assert status == 202, sent
            assert (sent["status"], sent["duplicate"]) == ("queued", False)
            row, message = await rows(api, sent["outbound_id"])
            assert (row["kind"], row["status"], row["channel"], row["endpoint"]) == (
                "notification",
                "queued",
                "whatsapp",
                WA_ID,
            )
            assert (row["customer_id"], row["agent_id"], row["client_key"]) == (
                f"phone:{CUSTOMER}",
                "ann",
                "order-A-1234-delivery",
            )
            assert row["conversation_id"] == sent["conversation_id"]
            text = "Hi Ann, your order A-1234 arrives today. Reply here with any question."
            assert (message["direction"], message["text"], message["agent_id"]) == (
                "outbound",
                text,
                "ann",
            )
            assert message["conversation_id"] == sent["conversation_id"]
            request = requested(row)
            assert request.template is not None
            assert (request.template.provider_template, request.template.parameters) == (
                "delivery_update_v2",
                ("Ann", "A-1234"),
            )
            assert (request.customer_address, request.text, request.attributes) == (
                CUSTOMER,
                text,
                {"order_id": "A-1234"},
            )
            assert request.answer.agent_id == "ann"
            assert before + 48 * 3600 <= request.answer.until <= time.time() + 48 * 3600

            # An agent's SMS: free-form, the agent answers its replies.
            status, sms = await api.call(
                "POST",
                OUTBOUND,
                "bob",
                json={"channel": "sms", "to": "+14155550199", "text": "Your table is ready"},
            )
            assert status == 202, sms
            row, _ = await rows(api, sms["outbound_id"])
            assert (row["customer_id"], row["agent_id"], requested(row).answer.mode) == (
                "phone:+14155550199",
                "bob",
                "sender",
            )

            # The same client key again: the first send's record, nothing sent.
            status, again = await api.call("POST", OUTBOUND, json=body)
            assert (status, again["duplicate"], again["outbound_id"]) == (
                200,
                True,
                sent["outbound_id"],
            )
            written = "SELECT count(*) FROM outbound_messages WHERE domain = 'acme'"
            assert await api.pool.fetchval(written) == 2
            # A later send marks the end of what the retry could have published.
            status, marker = await api.call(
                "POST", OUTBOUND, json={"channel": "sms", "to": CUSTOMER, "text": "ok"}
            )
            assert status == 202

            def has(records: list[Any], outbound_id: str) -> bool:
                return any(outbound_id.encode() in r.value for r in records)

            published = await outbound.wait_for(lambda rs: has(rs, marker["outbound_id"]))
            notified = await agents.wait_for(lambda rs: has(rs, marker["outbound_id"]))
        notifications = [OUTBOUND_DECODER.decode(r.value) for r in published]
        assert [n.id for n in notifications] == [
            sent["outbound_id"],
            sms["outbound_id"],
            marker["outbound_id"],
        ]
        assert all(dict(r.headers)["ce_type"] == b"notification.requested" for r in published)
        assert notifications[0] == request
        expected = [
            e
            for e in map(AGENT_EVENT_DECODER.decode, (r.value for r in notified))
            if isinstance(e, CustomerNotified)
        ]
        assert [e.outbound_id for e in expected] == [n.id for n in notifications]
        first = expected[0]
        assert (first.conversation_id, first.customer_id, first.customer_address) == (
            sent["conversation_id"],
            f"phone:{CUSTOMER}",
            CUSTOMER,
        )
        assert (first.answer, first.attributes) == (request.answer, {"order_id": "A-1234"})

        status, view = await api.call("GET", f"{OUTBOUND}/{sent['outbound_id']}")
        assert status == 200
        assert (view["status"], view["kind"], view["client_key"], view["campaign_id"]) == (
            "queued",
            "notification",
            "order-A-1234-delivery",
            None,
        )
        assert (await api.call("GET", f"{OUTBOUND}/{sms['outbound_id']}", "bob"))[0] == 200
        assert (await api.call("GET", f"{OUTBOUND}/{sent['outbound_id']}", "bob"))[0] == 403
        assert (await api.call("GET", f"{OUTBOUND}/nope")) == (
            404,
            {"error": "unknown outbound message 'nope'"},
        )
        assert counted(api, "whatsapp", "accepted") == 1
        assert counted(api, "sms", "accepted") == 2
        assert counted(api, "whatsapp", "duplicate") == 1


async def test_refused_sends_write_nothing_and_are_counted(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        await opt_out(api.pool, "sms", CUSTOMER)
        sms = {"channel": "sms", "to": CUSTOMER, "text": "Sale today!"}
        for body, who, expected in (
            (sms, "admin", (409, "opted_out")),
            ({**sms, "to": "+1 (415) 555-2671"}, "admin", (409, "opted_out")),
            ({**sms, "channel": "whatsapp", "from": WA_ID}, "admin", (409, "template_required")),
            (
                {**sms, "text": "", "template": {"name": "reminder", "parameters": []}},
                "admin",
                (400, "template 'reminder' takes 1 parameters, 0 given"),
            ),
            ({**sms, "to": "+14155550111", "answer": {"agent_id": "ann"}}, "bob", (403, None)),
            (
                {**sms, "to": "+14155550111", "answer": {"mode": "sender", "agent_id": "zed"}},
                "admin",
                (400, "unknown agent 'zed'"),
            ),
            ({**sms, "to": "+14155550111"}, "ann", (400, "unknown agent 'ann'")),
            (
                {"channel": "telegram", "to": "12345", "text": "hi"},
                "admin",
                (409, "unknown_recipient"),
            ),
            (
                {"channel": "webchat", "to": "session-00000001", "text": "hi"},
                "admin",
                (409, "unknown_recipient"),
            ),
            (
                {"channel": "webchat", "to": "user:42", "text": "hi"},
                "admin",
                (409, "unknown_recipient"),
            ),
            (
                {"channel": "messenger", "to": "7001", "text": "hi"},
                "admin",
                (409, "outside_messaging_window"),
            ),
            ({**sms, "to": "+14155550111", "unknown": 1}, "admin", (400, None)),
        ):
            status, answer = await api.call("POST", OUTBOUND, who, json=body)
            assert status == expected[0], (body, answer)
            if expected[1] is not None:
                assert answer == {"error": expected[1]}, body
        assert await api.pool.fetchval("SELECT count(*) FROM outbound_messages") == 0
        assert await api.pool.fetchval("SELECT count(*) FROM messages") == 0
        assert counted(api, "sms", "opted_out") == 2
        assert counted(api, "whatsapp", "refused") == 1
        status, _ = await api.call("POST", "/v1/domains/globex/outbound", json=sms)
        assert status == 403  # acme's admin
        status, answer = await api.call("POST", "/v1/domains/globex/outbound", "globex", json=sms)
        assert (status, answer["error"]) == (
            400,
            "from is required: the domain has 0 sms endpoints",
        )


async def test_windows_and_known_customers_through_the_router(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        await api.register("ann")
        now = time.time()
        await customer_writes(api, Channel.WHATSAPP, WA_ID, CUSTOMER, window_ends_at=now + 3600)
        await customer_writes(api, Channel.MESSENGER, PAGE, "7001", window_ends_at=now - 3600)
        await customer_writes(api, Channel.INSTAGRAM, IG, "8001", window_ends_at=now + 3600)
        await customer_writes(api, Channel.TELEGRAM, BOT, "-100200")
        await customer_writes(api, Channel.WEBCHAT, "webchat", "session-00000001")
        whatsapp = {"channel": "whatsapp", "from": WA_ID, "to": CUSTOMER, "text": "Any news?"}
        status, sent = await api.call("POST", OUTBOUND, json=whatsapp)
        assert status == 202, sent
        messenger = {"channel": "messenger", "to": "7001", "text": "Your order shipped"}
        status, answer = await api.call("POST", OUTBOUND, json=messenger)
        assert (status, answer["error"]) == (409, "outside_messaging_window")
        status, tagged = await api.call("POST", OUTBOUND, "ann", json=messenger)
        assert status == 202, tagged
        row, _ = await rows(api, tagged["outbound_id"])
        assert requested(row).message_tag is MessageTag.HUMAN_AGENT
        status, _ = await api.call(
            "POST", OUTBOUND, json={"channel": "instagram", "to": "8001", "text": "hi"}
        )
        assert status == 202
        status, telegram = await api.call(
            "POST", OUTBOUND, json={"channel": "telegram", "to": "-100200", "text": "hi"}
        )
        assert status == 202, telegram
        row, _ = await rows(api, telegram["outbound_id"])
        assert (row["endpoint"], row["customer_id"]) == (BOT, "telegram:-100200")
        status, chat = await api.call(
            "POST",
            OUTBOUND,
            json={"channel": "webchat", "to": "session-00000001", "text": "We are back"},
        )
        assert status == 202, chat
        row, _ = await rows(api, chat["outbound_id"])
        assert requested(row).customer_address == "session-00000001"
        assert row["customer_id"] == "webchat:session-00000001"
        status, mail = await api.call(
            "POST",
            OUTBOUND,
            json={"channel": "email", "to": "Ann@Example.com", "subject": "Hi", "text": "Hello"},
        )
        assert status == 202, mail
        row, _ = await rows(api, mail["outbound_id"])
        assert (row["customer_id"], requested(row).subject) == ("email:ann@example.com", "Hi")


async def test_a_whatsapp_users_window_is_open_under_either_of_their_addresses(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """A user wrote days ago from their number (naming their business-scoped user id
    beside it), and an hour ago under the id alone (a username hides the number): free-form
    text may go to either address; not to another user's number."""
    bsuid = "US.13491208655302741918"
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        now = time.time()
        await customer_writes(
            api,
            Channel.WHATSAPP,
            WA_ID,
            CUSTOMER,
            window_ends_at=now - 3 * 86400,
            other_address=bsuid,
        )
        await customer_writes(api, Channel.WHATSAPP, WA_ID, bsuid, window_ends_at=now + 23 * 3600)
        stranger = "+14155550199"
        await customer_writes(
            api, Channel.WHATSAPP, WA_ID, stranger, window_ends_at=now - 3 * 86400
        )
        for to in (CUSTOMER, bsuid):
            text = {"channel": "whatsapp", "from": WA_ID, "to": to, "text": "Any news?"}
            status, sent = await api.call("POST", OUTBOUND, json=text)
            assert status == 202, sent
            row, _ = await rows(api, sent["outbound_id"])
            assert requested(row).customer_address == to
        text = {"channel": "whatsapp", "from": WA_ID, "to": stranger, "text": "Any news?"}
        status, answer = await api.call("POST", OUTBOUND, json=text)
        assert (status, answer["error"]) == (409, "template_required")


async def test_text_longer_than_the_endpoints_provider_takes_is_refused_before_sending(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """WhatsApp through Twilio takes a Body of 1,600 characters (error 21617 beyond), the
    Cloud API 4,096: a longer text is a 400 from the API, for a business-started message
    and for an agent's reply, instead of a failed send later."""
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        await api.register("ann", capacity={"whatsapp": 2})
        long = "x" * 1601
        send = {"channel": "whatsapp", "to": CUSTOMER, "text": long}
        status, answer = await api.call("POST", OUTBOUND, json={**send, "from": SMS_NUMBER})
        assert (status, answer) == (400, {"error": "text is longer than 1600 characters"})
        status, answer = await api.call("POST", OUTBOUND, json={**send, "from": WA_ID})
        assert (status, answer) == (409, {"error": "template_required"})  # the length is fine

        conversation = await customer_writes(
            api, Channel.WHATSAPP, SMS_NUMBER, CUSTOMER, window_ends_at=time.time() + 3600
        )
        owner = "SELECT owner_agent_id FROM conversations WHERE conversation_id = $1"
        await wait_until(
            lambda: api.pool.fetchval(owner, conversation), what="ann owns the conversation"
        )
        reply = f"/v1/domains/acme/conversations/{conversation}/reply"
        status, answer = await api.call("POST", reply, "ann", json={"text": long})
        assert (status, answer["error"]) == (400, "text is longer than 1600 characters")
        status, _ = await api.call("POST", reply, "ann", json={"text": long[:1600]})
        assert status == 202
        # Only that reply was written: nothing of the refused ones.
        assert await api.pool.fetchval("SELECT count(*) FROM outbound_messages") == 1


async def test_the_reply_api_sends_a_template_or_a_tagged_reply_once_the_window_closed(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        await api.register("ann", capacity={"whatsapp": 2, "messenger": 2})
        yesterday = time.time() - 3600
        whatsapp = await customer_writes(
            api, Channel.WHATSAPP, WA_ID, CUSTOMER, window_ends_at=yesterday
        )
        messenger = await customer_writes(
            api, Channel.MESSENGER, PAGE, "7001", window_ends_at=yesterday
        )

        async def owned(conversation_id: str) -> bool:
            owner = await api.pool.fetchval(
                "SELECT owner_agent_id FROM conversations WHERE domain = 'acme'"
                " AND conversation_id = $1",
                conversation_id,
            )
            return bool(owner == "ann")

        for conversation in (whatsapp, messenger):
            await wait_until(lambda c=conversation: owned(c), what="ann owns it")
        reply = f"/v1/domains/acme/conversations/{whatsapp}/reply"
        status, answer = await api.call("POST", reply, "ann", json={"text": "Sorry!"})
        assert (status, answer["error"]) == (409, "reply_window_closed")
        template = {"name": "delivery_update", "language": "fr", "parameters": ["Ann", "B-2"]}
        status, answer = await api.call(
            "POST", reply, "ann", json={"text": "x", "template": template}
        )
        assert (status, answer["error"]) == (
            400,
            "give text, attachments and a location, or a template, not both",
        )
        status, answer = await api.call(
            "POST", reply, "ann", json={"template": {**template, "name": "nope"}}
        )
        assert (status, answer["error"]) == (400, "unknown_template")
        async with TopicReader(api.service.config, "conversations.outbound") as outbound:
            status, sent = await api.call("POST", reply, "ann", json={"template": template})
            assert status == 202, sent
            status, tagged = await api.call(
                "POST",
                f"/v1/domains/acme/conversations/{messenger}/reply",
                "ann",
                json={"text": "Here is the tracking link"},
            )
            assert status == 202, tagged

            def both(records: list[Any]) -> bool:
                ids = {OUTBOUND_DECODER.decode(r.value).id for r in records}
                return {sent["reply_id"], tagged["reply_id"]} <= ids

            records = await outbound.wait_for(both)
        replies = {
            e.id: e
            for e in (OUTBOUND_DECODER.decode(r.value) for r in records)
            if isinstance(e, ReplyRequested)
        }
        first = replies[sent["reply_id"]]
        assert first.template is not None
        assert (first.template.name, first.template.language, first.text) == (
            "delivery_update",
            "fr",
            "Bonjour Ann, votre commande B-2 arrive aujourd'hui.",
        )
        assert replies[tagged["reply_id"]].message_tag is MessageTag.HUMAN_AGENT
        text = await api.pool.fetchval(
            "SELECT text FROM messages WHERE domain = 'acme' AND message_id = $1", sent["reply_id"]
        )
        assert text == first.text


async def test_the_history_shows_a_notification_before_and_after_the_answer(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        await api.register("ann", capacity={"sms": 2})
        history = f"/v1/domains/acme/customers/phone:{CUSTOMER}/history"
        status, _ = await api.call("GET", history)
        assert status == 404  # never seen
        status, sent = await api.call(
            "POST",
            OUTBOUND,
            json={
                "channel": "sms",
                "to": CUSTOMER,
                "text": "Your appointment is tomorrow at 10. Reply to change it.",
                "answer": {"mode": "sender", "agent_id": "ann"},
            },
        )
        assert status == 202, sent
        status, page = await api.call("GET", history)
        assert status == 200, page
        assert [
            (e["kind"], e.get("message_id"), e["conversation_id"]) for e in page["entries"]
        ] == [("message", sent["outbound_id"], sent["conversation_id"])]
        assert (page["entries"][0]["status"], page["entries"][0]["direction"]) == (
            "queued",
            "outbound",
        )
        answered = await customer_writes(
            api, Channel.SMS, SMS_NUMBER, CUSTOMER, text="Can we do 11?"
        )
        assert (
            answered == sent["conversation_id"]
        )  # the answer opened the notification's conversation
        status, page = await api.call("GET", history)
        kinds = [(e["kind"], e.get("message_id")) for e in page["entries"]]
        assert kinds.count(("message", sent["outbound_id"])) == 1, kinds
        assert ("opened", None) in kinds
        assert len([k for k in kinds if k[0] == "message"]) == 2, kinds


async def test_a_send_while_the_broker_is_down_answers_503_and_leaves_nothing(
    database_url: str, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        async with outbound_api(broker.bootstrap_servers, database_url) as api:
            broker.stop()
            status, answer = await api.call(
                "POST", OUTBOUND, json={"channel": "sms", "to": CUSTOMER, "text": "hi"}
            )
            assert (status, answer) == (503, {"error": "broker unavailable, retry later"})
            assert await api.pool.fetchval("SELECT count(*) FROM outbound_messages") == 0
            assert await api.pool.fetchval("SELECT count(*) FROM messages") == 0
            status, answer = await api.call(
                "POST",
                OUTBOUND + "/batch",
                json={"messages": [{"channel": "sms", "to": CUSTOMER, "text": "hi"}]},
            )
            assert status == 503, answer
            assert await api.pool.fetchval("SELECT count(*) FROM outbound_messages") == 0
            assert await api.pool.fetchval("SELECT count(*) FROM campaigns") == 0
            # Back (empty): a send goes through again, once the clients reconnected.
            broker = EmbeddedBroker(tmp_path / "broker", port=broker.port)
            broker.start()

            async def sent() -> bool:
                status, _ = await api.call(
                    "POST", OUTBOUND, json={"channel": "sms", "to": CUSTOMER, "text": "hi"}
                )
                return status == 202

            await wait_until(sent, timeout=60, interval=0.5, what="a send after the outage")
            queued = "SELECT count(*) FROM outbound_messages WHERE status = 'queued'"
            assert await api.pool.fetchval(queued) == 1
    finally:
        broker.stop()


async def test_an_endpoint_added_through_the_configuration_api_sends_at_once(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        number = "+14155550177"
        sms = {"channel": "sms", "from": number, "to": CUSTOMER, "text": "From our new line"}
        status, answer = await api.call("POST", OUTBOUND, json=sms)
        assert (status, answer) == (400, {"error": "from is not a sms endpoint of this domain"})
        status, answer = await api.call(
            "PUT", f"/v1/domains/acme/channels/twilio/{number}", "platform", json={}
        )
        assert status == 200, answer

        async def sent() -> bool:
            status, _ = await api.call("POST", OUTBOUND, json=sms)
            return status == 202

        await wait_until(sent, what="a send from the new number")
