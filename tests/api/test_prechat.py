"""The web chat's pre-chat form through the running service (broker, PostgreSQL, router,
adapters): the answers a visitor posts with a message become the routing context of the
conversation it opens, a bad answer is refused, the form is served to pages (CORS,
cacheable), and it is runtime configuration, checked and applied by the configuration
API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import wait_until

pytestmark = pytest.mark.integration

SHOP = "https://shop.example.com"
TOPIC: dict[str, Any] = {
    "name": "topic",
    "label": "What can we help you with?",
    "required": True,
    "options": [
        {
            "value": "billing",
            "label": "Billing",
            "queue": "billing",
            "skills": ["billing"],
            "priority": 5,
        },
        {"value": "delivery", "label": "A delivery"},
    ],
}
LANGUAGE: dict[str, Any] = {
    "name": "language",
    "label": "Language",
    "kind": "language",
    "options": [{"value": "en", "label": "English"}, {"value": "fr", "label": "Français"}],
}
ORDER: dict[str, Any] = {"name": "order", "label": "Order number", "max_chars": 20}
ACME: dict[str, Any] = {
    "routing": {"queues": {"default": {}, "billing": {}}},
    "webchat": {"enabled": True, "allowed_origins": [SHOP], "prechat": [TOPIC, LANGUAGE, ORDER]},
}
OVERRIDES = {"domains": {"acme": ACME, "globex": {"webchat": {"enabled": True}}}}
ANSWERS = {"topic": "billing", "language": "fr", "order": "A-1234"}


async def conversation_of(api: Api, agent_id: str) -> dict[str, Any] | None:
    row = await api.pool.fetchrow(
        "SELECT conversation_id, switchboard_conversation_record(c) AS record"
        " FROM conversations c WHERE owner_agent_id = $1",
        agent_id,
    )
    if row is None:
        return None
    record: dict[str, Any] = json.loads(row["record"])
    return record


async def test_a_visitor_answering_billing_reaches_an_agent_with_the_skill(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, OVERRIDES) as api:
        await api.register("ann")  # no skill; first by id, so she would get it otherwise
        await api.register("bob", skills=["billing"])
        first = {"session_id": "visitor", "message_id": "m1", "text": "my invoice is wrong"}
        status, answer = await api.service.webchat({**first, "prechat": ANSWERS})
        assert status == 202, answer
        session = await api.service.visitor("visitor")
        assert answer["conversation_key"] == f"webchat:{session.session_id}"

        record = await wait_until(
            lambda: conversation_of(api, "bob"), what="the billing conversation assigned to bob"
        )
        assert record["queue"] == "billing"
        assert record["priority"] == 5
        assert record["skills"] == ["billing"]
        assert record["language"] == "fr"
        assert record["attributes"] == ANSWERS
        assert record["status"] == "assigned"
        assert await conversation_of(api, "ann") is None
        assert await api.pool.fetchval("SELECT count(*) FROM conversations") == 1
        assert (
            await api.pool.fetchval("SELECT count(*) FROM assignments WHERE agent_id = 'ann'") == 0
        )

        # The answers travel with every message; they change nothing once it is open.
        status, answer = await api.service.webchat(
            {
                "session_id": "visitor",
                "message_id": "m2",
                "text": "still there?",
                "prechat": ANSWERS,
            }
        )
        assert status == 202, answer

        async def second_message_filed() -> dict[str, Any] | None:
            again = await conversation_of(api, "bob")
            return again if again is not None and again["message_count"] == 2 else None

        again = await wait_until(second_message_filed, what="the second message filed")
        assert (again["conversation_id"], again["queue"], again["attributes"]) == (
            record["conversation_id"],
            "billing",
            ANSWERS,
        )

        # A visitor who chose another topic waits in the default queue, with no skill.
        status, answer = await api.service.webchat(
            {
                "session_id": "other",
                "message_id": "m1",
                "text": "parcel",
                "prechat": {"topic": "delivery"},
            }
        )
        assert status == 202, answer
        delivery = await wait_until(
            lambda: conversation_of(api, "ann"), what="the delivery conversation assigned"
        )
        # (A record leaves out what has its default: priority 0, no skills, no language.)
        assert delivery["queue"] == "default"
        assert (delivery.get("priority"), delivery.get("skills"), delivery.get("language")) == (
            None,
            None,
            None,
        )
        assert delivery["attributes"] == {"topic": "delivery"}


BAD_ANSWERS: list[tuple[dict[str, str] | None, str]] = [
    (None, "prechat.topic is required"),
    ({"language": "fr"}, "prechat.topic is required"),
    ({"topic": "refunds"}, "prechat.topic is not one of its options"),
    ({"topic": "billing", "colour": "red"}, "prechat: the form has no field 'colour'"),
    ({"topic": "billing", "order": "A" * 21}, "prechat.order is longer than 20 characters"),
    (
        {"topic": "billing", "order": "A-1\n2"},
        "prechat.order holds a control character or a lone surrogate",
    ),
]


async def test_a_bad_answer_is_refused_and_nothing_is_routed(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, OVERRIDES) as api:
        session = await api.service.visitor("visitor")
        for index, (prechat, reason) in enumerate(BAD_ANSWERS):
            message: dict[str, Any] = {
                "session_id": "visitor",
                "message_id": f"m{index}",
                "text": "hi",
            }
            if prechat is not None:
                message["prechat"] = prechat
            status, answer = await api.service.webchat(message)
            assert (status, answer) == (400, {"error": reason}), prechat
            async with api.service.session.post(
                api.service.url("/v1/domains/acme/webchat/messages"),
                json={**message, "session_id": session.session_id},
                headers={**session.auth, "Origin": SHOP},
            ) as response:
                assert response.status == 400
                # the page reads why
                assert response.headers["Access-Control-Allow-Origin"] == SHOP
        assert await api.pool.fetchval("SELECT count(*) FROM conversations") == 0


async def test_the_form_is_served_to_pages_and_changes_with_the_configuration(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, OVERRIDES) as api:
        http = api.service.session
        url = api.service.url("/v1/domains/acme/webchat/prechat")
        async with http.get(url, headers={"Origin": SHOP}) as response:
            assert response.status == 200
            form = await response.json()
            headers = response.headers
        assert headers["Cache-Control"] == "public, max-age=60"
        assert headers["Access-Control-Allow-Origin"] == SHOP
        assert headers["Vary"] == "Origin"
        assert [field["name"] for field in form["fields"]] == ["topic", "language", "order"]
        assert form["fields"][0] == {
            "name": "topic",
            "label": "What can we help you with?",
            "required": True,
            "options": [
                {"value": "billing", "label": "Billing"},
                {"value": "delivery", "label": "A delivery"},
            ],
        }
        assert "queue" not in json.dumps(form)  # the effects stay on our side
        async with http.get(url, headers={"If-None-Match": headers["ETag"]}) as response:
            assert response.status == 304
        async with http.get(url, headers={"Origin": "https://evil.example"}) as response:
            assert response.status == 200
            assert "Access-Control-Allow-Origin" not in response.headers
        async with http.options(
            url, headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"}
        ) as response:
            assert response.status == 204
        async with http.get(api.service.url("/v1/domains/globex/webchat/prechat")) as response:
            assert (response.status, await response.json()) == (200, {"fields": []})
        async with http.get(api.service.url("/v1/domains/nope/webchat/prechat")) as response:
            assert response.status == 404

        # Session creation takes no answers: the page sends them with each message.
        async with http.post(
            api.service.url("/v1/domains/acme/webchat/sessions"),
            json={"prechat": {"topic": "billing"}},
        ) as response:
            assert response.status == 400
            assert "prechat" in (await response.json())["error"]

        # The configuration API checks the form's queues, and running adapters follow it.
        changed = {**ACME, "webchat": {**ACME["webchat"], "prechat": [ORDER]}}
        broken = {
            **ACME,
            "webchat": {
                **ACME["webchat"],
                "prechat": [
                    {**TOPIC, "options": [{"value": "vip", "label": "VIP", "queue": "vip"}]}
                ],
            },
        }
        status, body = await api.call(
            "PUT", "/v1/domains/acme/config", json=broken, headers={"If-Match": "*"}
        )
        assert status == 400
        assert (
            "webchat.prechat[0].options[0].queue: domain 'acme' has no queue 'vip'"
            in (body["error"])
        )
        status, body = await api.call(
            "PUT", "/v1/domains/acme/config", json=changed, headers={"If-Match": "*"}
        )
        assert status == 200, body

        async def only_the_order() -> bool:
            async with http.get(url) as response:
                fields = (await response.json())["fields"]
            return [field["name"] for field in fields] == ["order"]

        await wait_until(only_the_order, what="the adapters serving the new form")
        status, answer = await api.service.webchat(
            {"session_id": "visitor", "message_id": "m1", "text": "hi"}
        )
        assert status == 202, answer  # no required field any more
