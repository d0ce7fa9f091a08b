"""The agent desktop's live stream: assignments within a second, resumption without loss."""

from __future__ import annotations

import asyncio
import json

from router.api.routes import API
from router.engine import make_id
from tests.api.support import SseClient, api_service
from tests.conftest import Infrastructure
from tests.support import wait_until

STREAM = "/v1/domains/acme/stream"


async def test_an_agent_desktop_gets_its_assignment_live_and_resumes_without_loss(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        http = api.service.session
        await api.register("ann")
        await api.register("bob")
        loop = asyncio.get_running_loop()

        response = await http.get(api.service.url(STREAM), headers=api.auth("ann"))
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        desk = SseClient(response)
        admin = SseClient(await http.get(api.service.url(STREAM), headers=api.auth("admin")))
        await asyncio.sleep(0.1)
        sent = loop.time()
        await api.customer_writes("visitor-0001", "m1")
        assigned = await desk.wait_for("conversation.assigned", timeout=5)
        assert assigned.received_at - sent < 1.0, assigned.received_at - sent
        payload = json.loads(assigned.data)
        assert payload["agent_id"] in ("ann", "bob")
        mine = payload["agent_id"] == "ann"

        # Ann's desk sees only what concerns Ann; the admin's stream sees everything.
        await admin.wait_for("conversation.assigned")
        for event in desk.events:
            assert "ann" in event.data, event
        # Make sure at least one conversation is Ann's (the other agent's goes unseen).
        conversation_for_ann = None
        for n in range(2, 6):
            await api.customer_writes(f"visitor-000{n}", f"m{n}")
            await admin.wait_for("conversation.assigned")
            visitor = await api.service.visitor(f"visitor-000{n}")
            owner = await wait_until(
                lambda visitor=visitor: api.pool.fetchval(
                    "SELECT owner_agent_id FROM conversations WHERE customer_id = $1",
                    visitor.customer_id,
                ),
                what="assignment",
            )
            if owner == "ann":
                conversation_for_ann = n
                break
        assert conversation_for_ann is not None
        await wait_until(
            lambda: sum(e.type == "conversation.assigned" for e in desk.events) >= 1 + mine,
            what="ann's second assignment on her desk",
        )
        last_seen = desk.events[-1].id
        seen = [e.id for e in desk.events]
        await desk.close()

        # While the desk is away, her customer writes again.
        await api.customer_writes(f"visitor-000{conversation_for_ann}", "again")
        missed = await wait_until(
            lambda: [
                e
                for e in admin.events
                if e.type == "message.routed"
                and json.loads(e.data)["agent_id"] == "ann"
                and json.loads(e.data)["provider_message_id"].endswith("/again")
            ],
            what="the missed message on the admin stream",
        )

        # Reconnecting with Last-Event-ID replays what came after, once.
        response = await http.get(
            api.service.url(STREAM), headers={**api.auth("ann"), "Last-Event-ID": last_seen or ""}
        )
        resumed = SseClient(response)
        await wait_until(
            lambda: any(e.id == missed[0].id for e in resumed.events), what="the missed event"
        )
        ids = [e.id for e in resumed.events]
        assert len(ids) == len(set(ids))
        assert not set(ids) & set(seen)
        await resumed.close()

        # An id older than the buffer: the whole buffer, announced by a comment.
        response = await http.get(
            api.service.url(STREAM), headers={**api.auth("admin"), "Last-Event-ID": "gone"}
        )
        replay = SseClient(response)
        await wait_until(lambda: len(replay.events) >= len(admin.events), what="the buffer")
        assert any("not in the buffer" in comment for comment in replay.comments)
        assert [e.id for e in replay.events][: len(admin.events)] == [e.id for e in admin.events]
        await replay.close()
        await admin.close()


async def test_a_desk_resuming_from_another_api_process_finds_its_last_event_held_here(
    infrastructure: Infrastructure, database_url: str
) -> None:
    # With no stream open, the feed holds what it reads unopened. A desk whose last event
    # came from another API process resumes here with that event's id: it must be found
    # among the held events, and only what came after it replayed.
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        http = api.service.session
        await api.register("ann")
        feed = api.service.app[API].feed
        await api.customer_writes("visitor-0001", "m1")
        await wait_until(lambda: feed.held >= 2, what="the assignment held")
        again = await api.customer_writes("visitor-0001", "m1-again")
        await api.customer_writes("visitor-0002", "m2")
        await api.customer_writes("visitor-0003", "m3")
        await wait_until(lambda: feed.held >= 7, what="the messages' events held")

        # An owned conversation's message.routed has an id made from the message's (the
        # first of its call: ``router.engine.messages``).
        last_seen = make_id(f"{again}/0")
        response = await http.get(
            api.service.url(STREAM), headers={**api.auth("admin"), "Last-Event-ID": last_seen}
        )
        resumed = SseClient(response)

        def routed() -> list[str]:
            return [
                json.loads(e.data)["provider_message_id"].rsplit("/", 1)[-1]
                for e in resumed.events
                if e.type == "message.routed"
            ]

        await wait_until(lambda: len(routed()) >= 2, what="the messages after the last seen")
        assert routed() == ["m2", "m3"]
        assert not any("not in the buffer" in comment for comment in resumed.comments)
        ids = [e.id for e in resumed.events]
        assert last_seen not in ids
        assert len(ids) == len(set(ids))
        await resumed.close()
