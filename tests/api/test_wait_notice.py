"""Live wait estimates through the real service: a queued conversation's expected wait on
``conversation.queued`` and in its view, and the automatic wait notice, sent once in the
customer's language where it is enabled (``acme``) and never where it is not (``globex``)."""

from __future__ import annotations

from typing import Any

from schemas import OUTBOUND_DECODER, ROUTING_DECODER, ConversationQueued, ReplyRequested
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import TopicReader, wait_until

LANGUAGE: dict[str, Any] = {
    "name": "language",
    "label": "Language",
    "kind": "language",
    "options": [{"value": "en", "label": "English"}, {"value": "fr", "label": "Français"}],
}
NOTICE: dict[str, Any] = {
    "enabled": True,
    "min_wait": 0,
    "default_language": "en",
    "texts": {
        "en": {"waiting": "An agent will answer in about {minutes} minutes."},
        "fr": {"waiting": "Un conseiller vous répond dans {minutes} min environ."},
    },
}
WEBCHAT = {"enabled": True, "prechat": [LANGUAGE]}
OVERRIDES = {
    "domains": {
        "acme": {"webchat": WEBCHAT, "routing": {"wait_notice": NOTICE}},
        "globex": {"webchat": WEBCHAT, "routing": {"wait_notice": {**NOTICE, "enabled": False}}},
    }
}
WARM_UP = 5
"""Conversations the agent finishes first: the router measures her handling rate."""


async def online(api: Api, domain: str, agent_id: str) -> None:
    who = "admin" if domain == "acme" else "globex"
    base = f"/v1/domains/{domain}/agents/{agent_id}"
    status, _ = await api.call("PUT", base, who, json={"capacity": {"webchat": 1}})
    assert status == 202
    status, _ = await api.call("POST", base + "/presence", who, json={"status": "online"})
    assert status == 202


async def writes(api: Api, domain: str, visitor: str, language: str = "en") -> str:
    message = {"session_id": visitor, "message_id": f"{visitor}-1", "text": "hello"}
    status, answer = await api.service.webchat(
        {**message, "prechat": {"language": language}}, domain
    )
    assert status == 202, answer
    key: str = answer["conversation_key"]
    return key


async def conversation(api: Api, domain: str, key: str, status: str) -> str:
    found: str = await wait_until(
        lambda: api.pool.fetchval(
            "SELECT conversation_id FROM conversations"
            " WHERE domain = $1 AND conversation_key = $2 AND status = $3",
            domain,
            key,
            status,
        ),
        what=f"{key} {status}",
    )
    return found


async def busy_after_warming_up(api: Api, domain: str) -> None:
    """Ann finishes ``WARM_UP`` conversations, then holds one (her only slot)."""
    who = "admin" if domain == "acme" else "globex"
    await online(api, domain, "ann")
    for n in range(WARM_UP):
        done = await conversation(api, domain, await writes(api, domain, f"warm-{n}"), "assigned")
        path = f"/v1/domains/{domain}/conversations/{done}/close"
        status, body = await api.call("POST", path, who, json={})
        assert (status, body["status"]) == (202, "completed"), body
    await conversation(api, domain, await writes(api, domain, "keeps-her-busy"), "assigned")


def notices(records: list[Any], conversation_id: str) -> list[ReplyRequested]:
    replies = (OUTBOUND_DECODER.decode(record.value) for record in records)
    return [
        r
        for r in replies
        if isinstance(r, ReplyRequested) and r.conversation_id == conversation_id and r.notice
    ]


def queued(records: list[Any], conversation_id: str) -> ConversationQueued | None:
    events = (ROUTING_DECODER.decode(record.value) for record in records)
    found = [
        r
        for r in events
        if isinstance(r, ConversationQueued)
        and r.conversation_id == conversation_id
        and r.expected_wait_seconds is not None
    ]
    return found[0] if found else None


async def test_a_queued_customer_is_told_the_wait_once_in_their_language(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, OVERRIDES) as api:
        config = api.service.config
        async with (
            TopicReader(config, "conversations.routing") as routing,
            TopicReader(config, "conversations.outbound") as outbound,
        ):
            for domain in ("acme", "globex"):
                await busy_after_warming_up(api, domain)
            waiting = {
                domain: await conversation(
                    api, domain, await writes(api, domain, "waits", "fr"), "waiting"
                )
                for domain in ("acme", "globex")
            }

            # Both announced with a known expected wait: the router measured Ann's rate.
            announced = {}
            for domain, conversation_id in waiting.items():
                announced[domain] = await wait_until(
                    lambda c=conversation_id: _queued(routing, c),  # type: ignore[misc]
                    what=f"{domain}'s conversation.queued with an expected wait",
                )
            for event in announced.values():
                assert event.position == 1
                assert event.expected_wait_seconds is not None
                assert 0 < event.expected_wait_seconds < 60

            # acme tells the customer, in French, once; globex (notice disabled) does not.
            acme = waiting["acme"]
            (told,) = await wait_until(
                lambda: _notices(outbound, acme), what="the wait notice to acme's customer"
            )
            assert (told.text, told.notice, told.agent_id, told.bot_id) == (
                "Un conseiller vous répond dans 1 min environ.",
                "wait_notice",
                None,
                None,
            )
            # egress takes it like any reply: recorded as sent on its way to the visitor
            row = await wait_until(
                lambda: api.pool.fetchrow(
                    "SELECT agent_id, bot_id, kind FROM outbound_messages WHERE outbound_id = $1",
                    told.id,
                ),
                what="egress's record of the notice",
            )
            assert (row["agent_id"], row["bot_id"], row["kind"]) == (None, None, "reply")
            again = {"session_id": "waits", "message_id": "waits-2", "text": "still there?"}
            status, _ = await api.service.webchat(again, "acme")
            assert status == 202
            await wait_until(
                lambda: api.pool.fetchval(
                    "SELECT (switchboard_conversation_record(c)->>'message_count')::int = 2"
                    " FROM conversations c"
                    " WHERE conversation_id = $1",
                    acme,
                ),
                what="the second message applied",
            )
            records = await outbound.poll()
            assert len(notices(records, acme)) == 1
            assert notices(records, waiting["globex"]) == []

            # The conversation's view shows the announced position and the wait left.
            status, view = await api.call("GET", f"/v1/domains/acme/conversations/{acme}")
            assert status == 200, view
            assert view["position"] == 1
            assert view["wait_estimated_at"] is not None
            assert 0 <= view["expected_wait_seconds"] <= announced["acme"].expected_wait_seconds
            # and so does the desktop's list of waiting conversations
            status, page = await api.call(
                "GET", "/v1/domains/acme/conversations", params={"status": "waiting"}
            )
            assert status == 200, page
            (item,) = [i for i in page["conversations"] if i["conversation_id"] == acme]
            assert item["position"] == 1
            assert 0 <= item["expected_wait_seconds"] <= announced["acme"].expected_wait_seconds


async def _queued(reader: TopicReader, conversation_id: str) -> ConversationQueued | None:
    return queued(await reader.poll(), conversation_id)


async def _notices(reader: TopicReader, conversation_id: str) -> list[ReplyRequested] | None:
    return notices(await reader.poll(), conversation_id) or None
