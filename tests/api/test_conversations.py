"""Agents, conversations, replies, commands with the router's verdicts, queues, live figures."""

from __future__ import annotations

import msgspec

from schemas import AGENT_EVENT_DECODER, OUTBOUND_DECODER, CustomerOwnerSet, ReplyRequested
from tests.api.support import api_service
from tests.conftest import Infrastructure
from tests.support import TopicReader, wait_until

ACME = "/v1/domains/acme"


async def test_an_agent_works_a_conversation_through_the_api(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with (
        api_service(infrastructure.bootstrap_servers, database_url) as api,
        TopicReader(api.service.config, "conversations.outbound") as outbound,
        TopicReader(api.service.config, "agents.events") as agents_events,
    ):
        await api.register("ann", name="Ann", skills=["en"])
        await api.customer_writes("visitor-0001", "m1", "Where is my order?")
        conversation_id = await wait_until(
            lambda: api.pool.fetchval(
                "SELECT conversation_id FROM conversations WHERE owner_agent_id = 'ann'"
            ),
            what="assigned to ann",
        )
        conv = f"{ACME}/conversations/{conversation_id}"

        # Ann reads her conversation, with the message's text; Bob (not involved) may not.
        await api.register("bob", name="Bob")
        status, view = await api.call("GET", conv, "ann")
        assert status == 200, view
        assert (view["status"], view["owner_agent_id"], view["channel"]) == (
            "assigned",
            "ann",
            "webchat",
        )
        kinds = [(e["kind"], e.get("agent_id"), e.get("text")) for e in view["timeline"]]
        assert ("assignment", "ann", None) in kinds
        assert ("message", None, "Where is my order?") in kinds
        assert (await api.call("GET", conv, "bob"))[0] == 403
        assert (await api.call("GET", conv, "globex"))[0] == 403

        # Bob cannot reply to, close or transfer Ann's conversation: the router says why.
        status, body = await api.call("POST", conv + "/reply", "bob", json={"text": "hi"})
        assert (status, body["error"]) == (409, "not_owner")
        status, body = await api.call("POST", conv + "/close", "bob", json={})
        assert (status, body["error"]) == (409, "not_owner")
        assert body["event_id"]
        status, body = await api.call(
            "POST", conv + "/transfer", "bob", json={"to_queue": "default"}
        )
        assert (status, body["error"]) == (409, "not_owner")

        # Ann replies: 202 at once, the reply goes to the outbound topic, a queued row.
        status, body = await api.call("POST", conv + "/reply", "ann", json={"text": "On its way"})
        assert status == 202, body
        reply_id = body["reply_id"]
        records = await outbound.wait_for(lambda rs: len(rs) >= 1)
        reply = OUTBOUND_DECODER.decode(records[0].value)
        assert isinstance(reply, ReplyRequested)
        assert (reply.id, reply.agent_id, reply.text, reply.channel) == (
            reply_id,
            "ann",
            "On its way",
            "webchat",
        )
        visitor = await api.service.visitor("visitor-0001")
        assert reply.customer_address == visitor.session_id
        assert reply.in_reply_to == f"{visitor.session_id}/m1"  # the provider message id
        # Recorded at once; the egress worker then marks a web chat reply sent (handed
        # to the visitor's live socket hub).
        assert await api.pool.fetchval(
            "SELECT status FROM outbound_messages WHERE outbound_id = $1", reply_id
        ) in ("queued", "sent")
        await wait_until(
            lambda: api.pool.fetchval(
                "SELECT record->>'first_response_at' IS NOT NULL FROM conversations"
                " WHERE conversation_id = $1",
                conversation_id,
            ),
            what="first response recorded by the router",
        )

        # Her live figures.
        status, me = await api.call("GET", f"{ACME}/agents/ann", "ann")
        assert status == 200, me
        assert (me["presence"], me["load"], me["capacity"]) == (
            "online",
            {"webchat": 1},
            {"webchat": 3},
        )
        figures = me["stats"]
        assert figures["open_conversations"] == 1
        assert figures["handled_today"] == 1
        assert figures["median_first_response_seconds_today"] is not None
        assert 0 <= figures["median_first_response_seconds_today"] < 30
        assert figures["offers_missed_today"] == 0
        assert figures["preferred_hit_ratio_today"] is None  # nobody preferred her yet

        # The timeline shows the reply and its delivery status.
        status, view = await api.call("GET", conv, "admin")
        outbound_entry = next(e for e in view["timeline"] if e.get("direction") == "outbound")
        assert outbound_entry["message_id"] == reply_id
        assert outbound_entry["agent_id"] == "ann"
        assert outbound_entry["status"] in ("queued", "sent")

        # Ann transfers to Bob; the router completes it; then Ann may not close it any more.
        status, body = await api.call(
            "POST", conv + "/transfer", "ann", json={"to_agent_id": "bob"}
        )
        assert (status, body["status"]) == (202, "completed"), body
        status, view = await api.call("GET", conv, "bob")
        assert (status, view["owner_agent_id"]) == (200, "bob")
        status, body = await api.call("POST", conv + "/close", "ann", json={})
        assert (status, body["error"]) == (409, "not_owner")
        status, body = await api.call("POST", conv + "/close", "bob", json={"reason": "solved"})
        assert (status, body["status"]) == (202, "completed"), body
        status, body = await api.call("POST", conv + "/reply", "bob", json={"text": "bye"})
        assert (status, body["error"]) == (409, "conversation_closed")
        status, body = await api.call("POST", f"{ACME}/conversations/nope/accept", "ann", json={})
        assert (status, body["error"]) == (409, "unknown_conversation")

        # Customer ownership goes to agents.events as customer.owner_set.
        customer = view["customer_id"]
        status, _ = await api.call(
            "PUT", f"{ACME}/customers/{customer}/owner", json={"agent_id": "ann"}
        )
        assert status == 202
        status, _ = await api.call("DELETE", f"{ACME}/customers/{customer}/owner")
        assert status == 202
        records = await agents_events.wait_for(
            lambda rs: sum(dict(r.headers)["ce_type"] == b"customer.owner_set" for r in rs) >= 2
        )
        owners = [
            e
            for e in (AGENT_EVENT_DECODER.decode(r.value) for r in records)
            if isinstance(e, CustomerOwnerSet)
        ]
        assert [(e.customer_id, e.agent_id) for e in owners] == [
            (customer, "ann"),
            (customer, None),
        ]

        # Queues: agents online and an estimate.
        status, queues = await api.call("GET", f"{ACME}/queues", "ann")
        assert status == 200
        (queue,) = queues["queues"]
        assert queue["queue"] == "default"
        assert queue["agents_online"] == 2
        assert queue["waiting"] == 0
        assert queue["assigned_last_hour"] >= 1
        assert queue["estimated_wait_seconds"] is not None


async def test_admin_picks_up_a_waiting_conversation_and_queues_show_the_wait(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        await api.customer_writes("visitor-0002", "w1", "anyone?")
        conversation_id = await wait_until(
            lambda: api.pool.fetchval(
                "SELECT conversation_id FROM conversations WHERE status = 'waiting'"
            ),
            what="waiting conversation",
        )
        status, queues = await api.call("GET", f"{ACME}/queues", "admin")
        (queue,) = queues["queues"]
        assert (queue["waiting"], queue["agents_online"]) == (1, 0)
        assert queue["oldest_wait_seconds"] is not None
        assert queue["estimated_wait_seconds"] is None  # nobody online: unknown

        conv = f"{ACME}/conversations/{conversation_id}"
        await api.register("cat", capacity={"webchat": 1})
        await wait_until(
            lambda: api.pool.fetchval(
                "SELECT owner_agent_id = 'cat' FROM conversations WHERE conversation_id = $1",
                conversation_id,
            ),
            what="the queue hands it to cat",
        )
        # Cat is full now: an admin's manual assignment to her is refused with the reason.
        await api.register("dan", capacity={"webchat": 1})
        status, body = await api.call("POST", conv + "/accept", json={"agent_id": "dan"})
        assert (status, body["error"]) == (409, "owned_by_another_agent")
        status, body = await api.call("POST", conv + "/transfer", json={"to_agent_id": "dan"})
        assert (status, body["status"]) == (202, "completed")
        status, body = await api.call("POST", conv + "/reply", json={"text": "Dan here"})
        assert status == 202, body
        status, view = await api.call("GET", conv)
        strategies = [e["strategy"] for e in view["timeline"] if e["kind"] == "assignment"]
        assert strategies == ["queue", "transfer"]
        assert msgspec.json.encode(view)  # plain JSON all the way down
