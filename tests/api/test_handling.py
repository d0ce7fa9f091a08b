"""Through the running service: an agent sets a conversation's context, snoozes it, and
is refused a free-form reply once the provider's reply window has closed."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.adapters.conftest import ENVIRON
from tests.adapters.test_meta import WA_NUMBER_ID, signed, wa_notification, wa_text, wa_value
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import wait_until

pytestmark = pytest.mark.timeout(180)


async def owned_chat(api: Api, visitor: str) -> str:
    """A web chat conversation ann owns."""
    conversation_id = await api.customer_writes(visitor, "m1")

    async def owned() -> bool:
        owner = await api.pool.fetchval(
            "SELECT owner_agent_id FROM conversations WHERE domain = 'acme'"
            " AND conversation_id = $1",
            conversation_id,
        )
        return bool(owner == "ann")

    await wait_until(owned, timeout=15, what="ann owns the conversation")
    return conversation_id


async def test_the_owner_sets_context_and_snoozes_a_conversation(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        await api.register("ann")
        chat = await owned_chat(api, "visitor")
        path = f"/v1/domains/acme/conversations/{chat}"
        context = {"priority": 7, "language": "fr", "attributes": {"order_id": "A-1234"}}
        status, body = await api.call("PATCH", path, "ann", json=context)
        assert (status, body["status"]) == (202, "completed"), body
        status, view = await api.call("GET", path, "ann")
        assert status == 200
        assert (view["priority"], view["language"], view["attributes"]) == (
            7,
            "fr",
            {"order_id": "A-1234"},
        )
        listed = "/v1/domains/acme/conversations?attribute="
        status, page = await api.call("GET", listed + "order_id:A-1234")
        assert [c["conversation_id"] for c in page["conversations"]] == [chat]
        assert page["conversations"][0]["attributes"] == {"order_id": "A-1234"}
        status, page = await api.call("GET", listed + "order_id:A-9999")
        assert (status, page["conversations"]) == (200, [])
        status, _ = await api.call("GET", listed + "no-colon")
        assert status == 400
        status, body = await api.call("PATCH", path, "bob", json={"priority": 1})
        assert (status, body["error"]) == (409, "not_owner")
        for bad in ({}, {"language": "not a tag"}, {"priority": 10**6}, {"skills": ["\u0000"]}):
            status, body = await api.call("PATCH", path, "ann", json=bad)
            assert status == 400, (bad, body)

        until = time.time() + 3
        status, body = await api.call("POST", path + "/snooze", "ann", json={"until": until})
        assert (status, body["status"]) == (202, "completed"), body
        status, view = await api.call("GET", path, "ann")
        assert (view["status"], view["snoozed_until"]) == ("idle", until)

        async def back() -> bool:
            row = await api.pool.fetchrow(
                "SELECT status, record->>'snoozed_until' AS snoozed FROM conversations"
                " WHERE domain = 'acme' AND conversation_id = $1",
                chat,
            )
            return row is not None and row["status"] == "assigned" and row["snoozed"] is None

        await wait_until(back, timeout=20, what="the snooze ends")
        assert time.time() >= until
        status, body = await api.call(
            "POST", path + "/snooze", "ann", json={"until": time.time() - 10}
        )
        assert (status, body["error"]) == (409, "until_not_in_future")


async def test_a_reply_after_the_reply_window_closed_is_refused(
    infrastructure: Infrastructure, database_url: str
) -> None:
    overrides = {
        "channels": {"meta": {"whatsapp": [{"phone_number_id": WA_NUMBER_ID, "domain": "acme"}]}}
    }
    secrets = {name: ENVIRON[name] for name in ("META_APP_SECRET", "WHATSAPP_ACCESS_TOKEN")}
    async with api_service(
        infrastructure.bootstrap_servers, database_url, overrides, secrets
    ) as api:
        await api.register("ann", capacity={"whatsapp": 2})
        message = {**wa_text(f"wamid.{uuid.uuid4().hex}"), "from": "14155552671"}
        message["timestamp"] = str(int(time.time() - 25 * 3600))  # written yesterday
        body, headers = signed(wa_notification(wa_value(messages=[message])))
        service = api.service
        async with service.session.post(
            service.url("/webhooks/meta"), data=body, headers=headers
        ) as response:
            assert response.status == 200

        async def owned() -> str | None:
            value: str | None = await api.pool.fetchval(
                "SELECT conversation_id FROM conversations WHERE domain = 'acme'"
                " AND channel = 'whatsapp' AND owner_agent_id = 'ann'"
            )
            return value

        conversation = await wait_until(owned, timeout=15, what="the WhatsApp conversation")
        status, answer = await api.call(
            "POST",
            f"/v1/domains/acme/conversations/{conversation}/reply",
            "ann",
            json={"text": "Sorry for the wait"},
        )
        assert (status, answer["error"]) == (409, "reply_window_closed")
        sent = await api.pool.fetchval(
            "SELECT count(*) FROM outbound_messages WHERE domain = 'acme'"
        )
        assert sent == 0


async def test_a_token_says_whose_it_is(infrastructure: Infrastructure, database_url: str) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        status, me = await api.call("GET", "/v1/domains/acme/me", "ann")
        assert status == 200
        assert (me["domain"], me["scope"], me["agent_id"]) == ("acme", "agent", "ann")
        status, me = await api.call("GET", "/v1/domains/acme/me", "admin")
        assert (status, me["scope"], me["agent_id"]) == (200, "admin", None)
        status, _ = await api.call("GET", "/v1/domains/globex/me", "ann")
        assert status == 403
        status, _ = await api.call("GET", "/v1/domains/acme/me", None)
        assert status == 401
