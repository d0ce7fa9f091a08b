"""Through the running service: a bot-first queue's conversations as people see them.

A person takes a conversation over from the bot and hands it back; a reply to a
conversation a bot owns is refused (``bot_owned``); a bot's replies and its hand-off show
in the conversation, the lists, the customer's profile and history; the document states
the operations and the bot protocol (``webhooks``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from router.api.openapi import document
from runtime.appkeys import PRODUCER
from runtime.kafka import EventPublisher
from schemas import BotHandoffRequested, BotReplied, Handoff, HandoffReason
from schemas.bots import BotEvent
from schemas.topics import BOTS
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import wait_until

pytestmark = pytest.mark.timeout(180)

ACME = "/v1/domains/acme"
BOT_FIRST: dict[str, Any] = {
    "domains": {
        "acme": {
            "webchat": {"enabled": True},
            "routing": {
                # The bot never answers by itself here: no turn may time out mid-test.
                "bots": {"helper": {"answer_timeout": 600}},
                "queues": {"default": {"bot": "helper"}},
            },
        },
        "globex": {"webchat": {"enabled": True}},
    }
}


async def bot_chat(api: Api, visitor: str) -> str:
    """A web chat conversation the bot ``helper`` owns: the visitor's first message."""
    await api.customer_writes(visitor, "m1", "hello")
    customer = (await api.service.visitor(visitor)).customer_id

    async def owned_by_the_bot() -> str | None:
        found: str | None = await api.pool.fetchval(
            "SELECT conversation_id FROM conversations WHERE domain = 'acme'"
            " AND customer_id = $1 AND status = 'bot' AND record->>'bot_id' = 'helper'",
            customer,
        )
        return found

    conversation: str = await wait_until(owned_by_the_bot, timeout=15, what="the bot owns it")
    return conversation


async def bot_says(api: Api, *events: BotEvent) -> None:
    """Publish what the bot answers on ``bots.events``, as a bot (or the adapters) would."""
    config = api.service.config
    publisher = EventPublisher(api.service.app[PRODUCER], config.topic(BOTS), "test-bot")
    await publisher.publish(events)


def bot_fields(conversation_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "domain": "acme",
        "occurred_at": time.time(),
        "conversation_id": conversation_id,
        "bot_id": "helper",
    }


async def stored(api: Api, conversation_id: str) -> tuple[str, str | None, str | None]:
    """The conversation's stored status, owner and bot."""
    row = await api.pool.fetchrow(
        "SELECT status, owner_agent_id, record->>'bot_id' AS bot_id FROM conversations"
        " WHERE domain = 'acme' AND conversation_id = $1",
        conversation_id,
    )
    assert row is not None
    return row["status"], row["owner_agent_id"], row["bot_id"]


# -- takeover, hand-back, replies ---------------------------------------------------


async def test_a_person_takes_over_from_the_bot_and_hands_it_back(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, BOT_FIRST) as api:
        await api.register("ann")
        await api.register("bob")
        chat = await bot_chat(api, "visitor-takeover")
        path = f"{ACME}/conversations/{chat}"

        status, view = await api.call("GET", path)
        assert status == 200
        assert (view["status"], view["bot_id"], view["owner_agent_id"]) == ("bot", "helper", None)
        assert view["handoff"] is None
        status, page = await api.call("GET", f"{ACME}/conversations?status=bot")
        assert status == 200
        assert [(c["conversation_id"], c["bot_id"]) for c in page["conversations"]] == [
            (chat, "helper")
        ]
        status, _ = await api.call("GET", path, "ann")
        assert status == 403  # visibility stays: ann neither owns nor handled it

        # Nobody talks over the bot: a person takes it over first.
        for who in ("ann", "admin"):
            status, body = await api.call("POST", path + "/reply", who, json={"text": "Hi"})
            assert (status, body["error"]) == (409, "bot_owned"), (who, body)
        sent = "SELECT count(*) FROM outbound_messages WHERE domain = 'acme'"
        assert await api.pool.fetchval(sent) == 0

        status, body = await api.call("POST", path + "/takeover", "ann", json={})
        assert (status, body["status"]) == (202, "completed"), body
        assert await stored(api, chat) == ("assigned", "ann", None)
        status, view = await api.call("GET", path, "ann")
        assert status == 200
        assert (view["status"], view["owner_agent_id"], view["bot_id"]) == (
            "assigned",
            "ann",
            None,
        )
        assert view["handoff"]["bot_id"] == "helper"
        assert view["handoff"]["handoff"]["reason"] == "takeover"
        status, body = await api.call("POST", path + "/reply", "ann", json={"text": "Ann here"})
        assert status == 202, body

        status, body = await api.call("POST", path + "/takeover", "bob", json={})
        assert (status, body["error"]) == (409, "not_bot_owned"), body
        status, body = await api.call("POST", path + "/handback", "bob", json={})
        assert (status, body["error"]) == (409, "not_owner"), body
        status, body = await api.call("POST", path + "/handback", "ann", json={"bot_id": "nope"})
        assert (status, body["error"]) == (409, "unknown_bot"), body

        note = {"note": "Asked for the satisfaction survey"}
        status, body = await api.call("POST", path + "/handback", "ann", json=note)
        assert (status, body["status"]) == (202, "completed"), body
        assert await stored(api, chat) == ("bot", None, "helper")
        status, body = await api.call("POST", path + "/reply", "ann", json={"text": "Still me"})
        assert (status, body["error"]) == (409, "bot_owned"), body

        # An admin names who takes it over, and hands it back as an admin.
        status, body = await api.call("POST", path + "/takeover", "admin", json={})
        assert status == 400, body
        status, body = await api.call("POST", path + "/takeover", json={"agent_id": "nobody"})
        assert (status, body["error"]) == (409, "unknown_agent"), body
        status, body = await api.call("POST", path + "/takeover", json={"agent_id": "bob"})
        assert (status, body["status"]) == (202, "completed"), body
        assert await stored(api, chat) == ("assigned", "bob", None)
        status, body = await api.call("POST", path + "/handback", json={})
        assert (status, body["status"]) == (202, "completed"), body
        assert await stored(api, chat) == ("bot", None, "helper")

        missing = f"{ACME}/conversations/no-such-conversation"
        status, body = await api.call("POST", missing + "/takeover", "ann", json={})
        assert (status, body["error"]) == (409, "unknown_conversation"), body
        status, body = await api.call("POST", missing + "/handback", "ann", json={})
        assert (status, body["error"]) == (409, "unknown_conversation"), body


async def test_the_api_refuses_malformed_takeovers_and_handbacks(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, BOT_FIRST) as api:
        path = f"{ACME}/conversations/any"
        for who, suffix, body, expected in (
            ("ann", "/takeover", {"agent_id": "bob"}, 403),  # an agent acts as itself
            ("admin", "/takeover", {"agent_id": "bad id"}, 400),
            ("ann", "/takeover", {"bot_id": "helper"}, 400),
            ("ann", "/handback", {"agent_id": "ann"}, 400),  # not a field: ann is the token
            ("ann", "/handback", {"bot_id": "not a bot id"}, 400),
            ("ann", "/handback", {"bot_id": "helper\n"}, 400),
            ("ann", "/handback", {"note": "x" * 1001}, 400),
            ("globex", "/handback", {}, 403),
            (None, "/takeover", {}, 401),
        ):
            status, answer = await api.call("POST", path + suffix, who, json=body)
            assert status == expected, (who, suffix, body, answer)
        assert await api.pool.fetchval("SELECT count(*) FROM dead_letters") == 0


# -- what the bot did, as people read it --------------------------------------------


async def test_the_bots_replies_and_its_handoff_show_where_people_read(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, BOT_FIRST) as api:
        await api.register("ann")
        chat = await bot_chat(api, "visitor-handoff")
        customer = (await api.service.visitor("visitor-handoff")).customer_id

        reply = BotReplied(**bot_fields(chat), text="Which order is it about?")
        await bot_says(api, reply)

        async def bot_reply_stored() -> bool:
            return bool(
                await api.pool.fetchval(
                    "SELECT count(*) FROM messages WHERE domain = 'acme'"
                    " AND conversation_id = $1 AND bot_id = 'helper' AND agent_id IS NULL",
                    chat,
                )
            )

        await wait_until(bot_reply_stored, timeout=15, what="the bot's reply stored")

        learned = Handoff(
            reason=HandoffReason.LOW_CONFIDENCE,
            summary="Wants a refund for order A-1234; already tried the return form.",
            intent="refund",
            language="fr",
            attributes={"order_id": "A-1234"},
        )
        handoff = BotHandoffRequested(
            **bot_fields(chat), handoff=learned, text="Je vous passe un collègue."
        )
        await bot_says(api, handoff)

        async def with_ann() -> bool:
            return await stored(api, chat) == ("assigned", "ann", None)

        await wait_until(with_ann, timeout=15, what="ann owns it after the hand-off")

        status, view = await api.call("GET", f"{ACME}/conversations/{chat}", "ann")
        assert status == 200
        assert view["bot_id"] is None
        assert view["handoff"]["bot_id"] == "helper"
        assert view["handoff"]["handed_off_at"] > 0
        assert view["handoff"]["handoff"] == {
            "reason": "low_confidence",
            "summary": learned.summary,
            "intent": "refund",
            "language": "fr",
            "skills": [],
            "priority": None,
            "attributes": {"order_id": "A-1234"},
        }

        status, page = await api.call("GET", f"{ACME}/conversations?mine=true", "ann")
        assert status == 200
        (item,) = page["conversations"]
        assert (item["conversation_id"], item["handoff"]["handoff"]["intent"]) == (chat, "refund")

        status, profile = await api.call("GET", f"{ACME}/customers/{customer}", "ann")
        assert status == 200
        (open_one,) = profile["open_conversations"]
        assert open_one["handoff"]["handoff"]["summary"] == learned.summary

        status, history = await api.call("GET", f"{ACME}/customers/{customer}/history", "ann")
        assert status == 200, history
        kinds = [entry["kind"] for entry in history["entries"]]
        assert kinds.index("handoff") < kinds.index("assignment"), kinds
        (handed,) = [entry for entry in history["entries"] if entry["kind"] == "handoff"]
        assert (handed["conversation_id"], handed["bot_id"]) == (chat, "helper")
        assert handed["handoff"]["reason"] == "low_confidence"
        bots = [
            (entry["text"], entry["agent_id"])
            for entry in history["entries"]
            if entry["kind"] == "message" and entry.get("bot_id") == "helper"
        ]
        assert ("Which order is it about?", None) in bots, history["entries"]

        # The history pages through the hand-off like any other entry.
        seen: list[str] = []
        cursor: str | None = None
        while True:
            query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
            status, page = await api.call(
                "GET", f"{ACME}/customers/{customer}/history{query}", "ann"
            )
            assert status == 200, page
            seen.extend(entry["kind"] for entry in page["entries"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert list(reversed(seen)) == kinds

        # The conversation's own timeline names the bot too.
        said = [
            (entry["text"], entry["agent_id"])
            for entry in view["timeline"]
            if entry["kind"] == "message" and entry.get("bot_id") == "helper"
        ]
        assert ("Which order is it about?", None) in said, view["timeline"]


# -- the document -------------------------------------------------------------------


def test_the_document_states_the_bot_operations_and_protocol() -> None:
    doc = document()
    paths = doc["paths"]
    base = "/v1/domains/{domain}/conversations/{conversation_id}"
    takeover = paths[base + "/takeover"]["post"]
    handback = paths[base + "/handback"]["post"]
    schemas = doc["components"]["schemas"]
    assert takeover["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TakeoverIn"
    )
    assert "not_bot_owned" in takeover["description"]
    assert {"not_owner", "no_bot", "unknown_bot"} <= {
        word.strip("`,.()") for word in handback["description"].split()
    }
    assert set(schemas["HandbackIn"]["properties"]) == {"bot_id", "note"}
    assert "bot_owned" in paths[base + "/reply"]["post"]["description"]
    assert "bot" in schemas["ConversationStatus"]["enum"]
    assert "handoff" in schemas["ConversationView"]["properties"]
    turn = doc["webhooks"]["botTurn"]["post"]
    assert turn["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/BotTurn")
    assert turn["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/BotWebhookAnswer"
    )
    assert [p["name"] for p in turn["parameters"]] == ["X-Switchboard-Signature"]
    assert schemas["BotTurn"]["properties"]["type"]["enum"] == ["bot.turn"]
    actions = schemas["BotWebhookAnswer"]["properties"]["actions"]
    assert actions["minItems"] == 1
    handed_off = doc["webhooks"]["botHandedOff"]["post"]
    assert handed_off["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ConversationHandedOff"
    )
    assert handed_off["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/BotWebhookAnswer"
    )
    assert [p["name"] for p in handed_off["parameters"]] == ["X-Switchboard-Signature"]
    assert {"position", "expected_wait_seconds", "opens_at", "continue_on"} <= set(
        schemas["ConversationHandedOff"]["properties"]
    )
    assert "botHandedOff" in turn["description"], "one URL, two kinds of request"
