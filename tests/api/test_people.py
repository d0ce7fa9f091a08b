"""Through the running service: one person on SMS, email and web chat, linked by the API,
reaches the same agent; a declined offer moves on without a miss; a removed agent's
customer goes to the pool at once; a schedule set by the API re-homes at shift end."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest

from adapters.base import hmac_hex
from schemas import ROUTING_DECODER, CustomerLinked, CustomerMerged
from schemas.topics import ROUTING
from tests.adapters.conftest import ENVIRON
from tests.adapters.test_email import mailgun_post
from tests.adapters.test_twilio import inbound_sms, sign
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import TopicReader, wait_until

pytestmark = pytest.mark.timeout(240)

PUBLIC_URL = "https://switchboard.example.com"
PHONE = "+14155552671"
CUSTOMER = f"sms:{PHONE}"
EMAIL = "email:ann@example.org"
USER = "user:42"
SECRETS = {
    "TWILIO_AUTH_TOKEN": ENVIRON["TWILIO_AUTH_TOKEN"],
    "MAILGUN_SIGNING_KEY": ENVIRON["MAILGUN_SIGNING_KEY"],
    "WEBCHAT_IDENTITY_SECRET": "webchat-identity-secret",
}
CHANNELS = {"sms": 2, "email": 5, "webchat": 2}


def channels_config() -> dict[str, Any]:
    return {
        "http": {"public_url": PUBLIC_URL},
        "channels": {
            "twilio": {"numbers": [{"number": "+14155550100", "domain": "acme"}]},
            "email": {"addresses": [{"address": "support@acme.example", "domain": "acme"}]},
        },
        "domains": {
            "acme": {
                "webchat": {"enabled": True, "identity_secret_env": "WEBCHAT_IDENTITY_SECRET"}
            },
            "globex": {"webchat": {"enabled": True}},
        },
    }


async def routed(reader: TopicReader, kind: type[Any]) -> list[Any]:
    events = (ROUTING_DECODER.decode(record.value) for record in await reader.poll())
    return [event for event in events if isinstance(event, kind)]


async def sms(api: Api, body: str) -> str:
    params = inbound_sms(Body=body, MessageSid=f"SM{uuid.uuid4().hex}", From=PHONE)
    service = api.service
    async with service.session.post(
        service.url("/webhooks/twilio/sms"),
        data=params,
        headers=sign(params, PUBLIC_URL + "/webhooks/twilio/sms"),
    ) as response:
        assert response.status == 200, await response.text()
    return await _conversation_of(api, CUSTOMER)


async def email(api: Api) -> str:
    stamp, token = str(int(time.time())), uuid.uuid4().hex + uuid.uuid4().hex[:18]
    fields = mailgun_post(
        timestamp=stamp,
        token=token,
        signature=hmac_hex(SECRETS["MAILGUN_SIGNING_KEY"], (stamp + token).encode()),
    )
    fields["Message-Id"] = f"<{uuid.uuid4().hex}@mail.example.org>"
    fields.pop("In-Reply-To")
    fields.pop("References")
    service = api.service
    async with service.session.post(
        service.url("/webhooks/email/mailgun"), data=fields
    ) as response:
        assert response.status == 200, await response.text()
    return await _conversation_of(api, EMAIL, channel="email")


async def _conversation_of(api: Api, customer: str, channel: str = "sms") -> str:
    """The newest open conversation on ``channel`` whose first message came from ``customer``."""

    async def found() -> str | None:
        value: str | None = await api.pool.fetchval(
            "SELECT m.conversation_id FROM messages m JOIN conversations c"
            " ON c.domain = m.domain AND c.conversation_id = m.conversation_id"
            " WHERE m.domain = 'acme' AND c.channel = $1 AND c.status <> 'closed'"
            " AND c.record->>'customer_address' = $2 ORDER BY m.occurred_at DESC LIMIT 1",
            channel,
            customer.partition(":")[2],
        )
        return value

    result: str = await wait_until(found, timeout=15, what=f"{channel} conversation")
    return result


async def close(api: Api, conversation_id: str) -> None:
    status, body = await api.call(
        "POST", f"/v1/domains/acme/conversations/{conversation_id}/close", json={}
    )
    assert status == 202, body


async def test_one_person_on_sms_email_and_web_chat_reaches_the_same_agent(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with (
        api_service(
            infrastructure.bootstrap_servers, database_url, channels_config(), SECRETS
        ) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        await api.register("bob", capacity=CHANNELS)
        first = await sms(api, "my order has not arrived")
        assert (await reader.assignment(first)).agent_id == "bob"
        await close(api, first)
        await api.register("ann", capacity=CHANNELS)  # idle longer, less busy than bob now

        for identity in (EMAIL, USER):
            status, body = await api.call(
                "POST",
                f"/v1/domains/acme/customers/{CUSTOMER}/identities",
                json={"identity": identity},
            )
            assert (status, body["status"]) == (202, "completed"), body
        again, body = await api.call(  # idempotent
            "POST", f"/v1/domains/acme/customers/{CUSTOMER}/identities", json={"identity": EMAIL}
        )
        assert (again, body["status"]) == (202, "completed")

        async def both_linked() -> list[CustomerLinked] | None:
            found = await routed(reader, CustomerLinked)
            return found if len(found) >= 2 else None

        links = await wait_until(both_linked, timeout=10, what="customer.linked events")
        assert {(e.customer_id, e.identity) for e in links} == {(CUSTOMER, EMAIL), (CUSTOMER, USER)}

        mail = await email(api)
        assigned = await reader.assignment(mail)
        assert (assigned.agent_id, str(assigned.strategy)) == ("bob", "preferred")
        assert assigned.customer_id == CUSTOMER
        await close(api, mail)

        visitor = await api.service.visitor("ann-browser")
        status, answer = await api.service.webchat(
            {
                "session_id": "ann-browser",
                "message_id": "m1",
                "text": "still nothing",
                "user_id": "42",
                "user_hash": hmac_hex(SECRETS["WEBCHAT_IDENTITY_SECRET"], b"42"),
            }
        )
        assert status == 202, answer
        chat = answer["event_id"]
        assigned = await reader.assignment(chat)
        assert (assigned.agent_id, str(assigned.strategy)) == ("bob", "preferred")
        assert assigned.customer_id == CUSTOMER
        del visitor

        rows = await api.pool.fetch(
            "SELECT identity, customer_id, source FROM customer_identities WHERE domain = 'acme'"
            " ORDER BY identity"
        )
        assert [tuple(row) for row in rows] == [(EMAIL, CUSTOMER, "api"), (USER, CUSTOMER, "api")]
        owners = await api.pool.fetch(
            "SELECT DISTINCT customer_id FROM conversations WHERE domain = 'acme'"
        )
        assert [row["customer_id"] for row in owners] == [CUSTOMER]
        # the desktop shows one person: the history asked by the email reaches all three
        status, history = await api.call("GET", f"/v1/domains/acme/customers/{EMAIL}/history")
        assert status == 200, history
        assert history["customer_id"] == CUSTOMER
        assert {entry["channel"] for entry in history["entries"]} == {"sms", "email", "webchat"}
        status, history = await api.call("GET", f"/v1/domains/acme/customers/{USER}/history", "bob")
        assert (status, history["customer_id"]) == (200, CUSTOMER)  # bob served the person

        # an agent may not link; an identity of another customer is not taken silently
        status, _ = await api.call(
            "POST",
            f"/v1/domains/acme/customers/{CUSTOMER}/identities",
            "ann",
            json={"identity": "email:x@example.org"},
        )
        assert status == 403
        status, body = await api.call(
            "POST",
            "/v1/domains/acme/customers/email:other@example.org/identities",
            json={"identity": USER},
        )
        assert (status, body["error"]) == (409, "identity_linked_to_another_customer")
        status, body = await api.call(
            "POST",
            f"/v1/domains/acme/customers/{CUSTOMER}/identities",
            json={"identity": "fax:123"},
        )
        assert status == 400, body


async def test_merging_two_customers_moves_their_open_conversations(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with (
        api_service(infrastructure.bootstrap_servers, database_url) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        await api.register("ann")
        chat = await api.customer_writes("first-device", "m1")
        await reader.assignment(chat)
        visitor = await api.service.visitor("first-device")
        other = "email:someone@example.org"
        status, body = await api.call(
            "POST",
            f"/v1/domains/acme/customers/{other}/merge",
            json={"from_customer_id": visitor.customer_id},
        )
        assert (status, body["status"]) == (202, "completed"), body
        merge = await wait_until(
            lambda: _first(reader, CustomerMerged), timeout=10, what="customer.merged"
        )
        assert (merge.customer_id, merge.merged_customer_id) == (other, visitor.customer_id)
        assert merge.conversation_ids == (chat,)
        owner = await api.pool.fetchval(
            "SELECT customer_id FROM conversations WHERE domain = 'acme' AND conversation_id = $1",
            chat,
        )
        assert owner == other
        audit = await api.pool.fetch(
            "SELECT action, target, detail::text AS detail FROM audit_log"
            " WHERE domain = 'acme' AND action = 'customer.merge'"
        )
        assert len(audit) == 1
        assert "someone@example.org" not in audit[0]["target"] + audit[0]["detail"]


async def _first(reader: TopicReader, kind: type[Any]) -> Any:
    items = await routed(reader, kind)
    return items[0] if items else None


async def test_a_declined_offer_moves_on_without_a_miss(
    infrastructure: Infrastructure, database_url: str
) -> None:
    overrides = {
        "domains": {
            "acme": {
                "webchat": {"enabled": True},
                "routing": {
                    "away_after_missed_offers": 1,
                    "queues": {"default": {"mode": "offer", "offer_timeout": 60}},
                },
            },
            "globex": {"webchat": {"enabled": True}},
        }
    }
    async with api_service(infrastructure.bootstrap_servers, database_url, overrides) as api:
        await api.register("ann")
        await api.register("bob")
        chat = await api.customer_writes("visitor", "m1")
        first = await _offered_to(api, chat)
        other = "bob" if first == "ann" else "ann"
        status, body = await api.call(
            "POST", f"/v1/domains/acme/conversations/{chat}/decline", other, json={}
        )
        assert (status, body["error"]) == (409, "not_offered_to_agent")
        status, body = await api.call(
            "POST",
            f"/v1/domains/acme/conversations/{chat}/decline",
            first,
            json={"reason": "on_a_call"},
        )
        assert (status, body["status"]) == (202, "completed"), body
        assert await _offered_to(api, chat) == other
        # not a miss: with away_after_missed_offers = 1 a miss would have set them away
        presence = await api.pool.fetchval(
            "SELECT presence FROM agents WHERE domain = 'acme' AND agent_id = $1", first
        )
        assert presence == "online"
        reason = await api.pool.fetchval(
            "SELECT end_reason FROM assignments WHERE domain = 'acme' AND conversation_id = $1"
            " AND agent_id = $2",
            chat,
            first,
        )
        assert reason == "declined:on_a_call"


async def _offered_to(api: Api, conversation_id: str) -> str:
    async def found() -> str | None:
        value: str | None = await api.pool.fetchval(
            "SELECT record->>'offered_to' FROM conversations WHERE domain = 'acme'"
            " AND conversation_id = $1 AND status = 'offered'",
            conversation_id,
        )
        return value

    result: str = await wait_until(found, timeout=15, what="an offer")
    return result


async def test_a_removed_agents_customer_is_routed_to_the_pool_at_once(
    infrastructure: Infrastructure, database_url: str
) -> None:
    overrides = {
        "domains": {
            "acme": {
                "webchat": {"enabled": True},
                "routing": {"preferred_wait": {"webchat": 3600}},
            },
            "globex": {"webchat": {"enabled": True}},
        }
    }
    async with (
        api_service(infrastructure.bootstrap_servers, database_url, overrides) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        await api.register("ann")
        first = await api.customer_writes("visitor", "m1")
        assert (await reader.assignment(first)).agent_id == "ann"
        await close(api, first)
        await api.register("bob")
        status, body = await api.call("DELETE", "/v1/domains/acme/agents/ann")
        assert (status, body["status"]) == (202, "completed"), body
        status, _ = await api.call("GET", "/v1/domains/acme/agents/ann", "ann")
        assert status == 401  # the agent's token was revoked with them
        status, _ = await api.call("GET", "/v1/domains/acme/agents/ann")
        assert status == 404
        status, _ = await api.call("DELETE", "/v1/domains/acme/agents/ann")
        assert status == 404
        # without the removal the customer would be held an hour for ann
        again = await api.customer_writes("visitor", "m2")
        assigned = await reader.assignment(again)
        assert (assigned.agent_id, str(assigned.strategy)) == ("bob", "queue")


async def test_a_schedule_set_by_the_api_rehomes_at_shift_end(
    infrastructure: Infrastructure, database_url: str
) -> None:
    overrides = {
        "domains": {
            "acme": {"webchat": {"enabled": True}, "routing": {"on_shift_end": "rehome"}},
            "globex": {"webchat": {"enabled": True}},
        }
    }
    now = dt.datetime.now(dt.UTC)
    end = (now + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (end - now).total_seconds() < 4:
        end += dt.timedelta(minutes=1)
    start = now - dt.timedelta(hours=1)
    schedule = {
        "timezone": "UTC",
        "weekly": [
            {"day": start.weekday(), "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}
        ],
    }
    async with (
        api_service(infrastructure.bootstrap_servers, database_url, overrides) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        await api.register("ann", schedule=schedule)
        status, body = await api.call("GET", "/v1/domains/acme/agents/ann")
        assert status == 200
        assert body["schedule"]["weekly"][0]["end"] == end.strftime("%H:%M")
        chat = await api.customer_writes("visitor", "m1")
        assert (await reader.assignment(chat)).agent_id == "ann"
        await api.register("bob")

        async def rehomed() -> str | None:
            value: str | None = await api.pool.fetchval(
                "SELECT owner_agent_id FROM conversations WHERE domain = 'acme'"
                " AND conversation_id = $1 AND owner_agent_id = 'bob'",
                chat,
            )
            return value

        await wait_until(rehomed, timeout=90, what="re-homed at shift end")
        assert time.time() >= end.timestamp()

        # Not a zone: unknown, a directory of the tz database, the machine's own.
        for zone in ("Mars/Olympus", "America", "localtime"):
            bad = {**schedule, "timezone": zone}
            status, body = await api.call(
                "PUT",
                "/v1/domains/acme/agents/cy",
                json={"capacity": {"webchat": 1}, "schedule": bad},
            )
            assert status == 400, (zone, body)
            assert repr(zone) in body["error"]


async def test_identity_links_survive_a_restart(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = channels_config()
    async with (
        api_service(infrastructure.bootstrap_servers, database_url, config, SECRETS) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        await api.register("bob", capacity=CHANNELS)
        first = await sms(api, "hello")
        assert (await reader.assignment(first)).agent_id == "bob"
        await close(api, first)
        status, body = await api.call(
            "POST", f"/v1/domains/acme/customers/{CUSTOMER}/identities", json={"identity": EMAIL}
        )
        assert (status, body["status"]) == (202, "completed"), body
    # the same database, a new router: the links come back with the customers (without
    # them, the email would go to bob as a stranger: strategy queue, not preferred)
    async with (
        api_service(infrastructure.bootstrap_servers, database_url, config, SECRETS) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        await api.register("ann", capacity=CHANNELS)
        mail = await email(api)
        assigned = await reader.assignment(mail)
        assert (assigned.agent_id, str(assigned.strategy)) == ("bob", "preferred")
        assert assigned.customer_id == CUSTOMER
