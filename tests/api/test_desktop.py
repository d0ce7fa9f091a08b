"""The agent desktop's reads through the running service: conversation lists (filters,
``mine``, keyset pages while conversations arrive, cursors, visibility), a customer's
profile and their history across identities and channels."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from router.api.desktop_models import STATUS_VALUES
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import reply_sent, wait_until

ACME = "/v1/domains/acme"
LIST = ACME + "/conversations"
TWILIO_TOKEN = "desktop-twilio-auth-token"
ACCOUNT = "AC00000000000000000000000000000001"
OUR_NUMBER = "+14155550100"
ALICE_PHONE = "+14155552671"

# Offers (agents accept), slow to expire: nothing changes under a test but the test.
OVERRIDES: dict[str, Any] = {
    "domains": {
        "acme": {
            "webchat": {"enabled": True},
            "routing": {"queues": {"default": {"mode": "offer", "offer_timeout": 3600}}},
        },
        "globex": {"webchat": {"enabled": True}},
    },
    "channels": {
        "twilio": {
            "account_sid": ACCOUNT,
            "api_base_url": "http://127.0.0.1:9",  # nothing is sent by SMS here
            "numbers": [{"number": OUR_NUMBER, "domain": "acme"}],
        }
    },
}
SECRETS = {"TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
CAPACITY = {"webchat": 5, "sms": 5}


@dataclass
class Scene:
    """Alice (SMS, then web chat: two identities of one customer), Carol, Dave and Erin.

    Ann took Alice's SMS and closed it, then Alice's and Carol's web chats; she replied to
    Alice and closed Carol's. Bob took Dave's and holds Erin's offer. An admin linked
    Alice's phone to her web chat profile."""

    alice_sms: str
    alice_web: str
    carol: str
    dave: str
    erin: str
    alice: str
    """Alice's profile id (her web chat identity)."""
    alice_phone: str
    """Her SMS identity, linked to the profile."""
    carol_id: str
    dave_id: str
    erin_id: str
    started: float

    @property
    def everything(self) -> set[str]:
        return {self.alice_sms, self.alice_web, self.carol, self.dave, self.erin}


async def conversation_with(api: Api, text: str) -> tuple[str, str]:
    """The conversation (and its customer id) a customer's message of ``text`` opened."""
    row = await wait_until(
        lambda: api.pool.fetchrow(
            "SELECT c.conversation_id, c.customer_id FROM messages m JOIN conversations c"
            " ON c.domain = m.domain AND c.conversation_id = m.conversation_id"
            " WHERE m.text = $1",
            text,
        ),
        what=f"the conversation of {text!r}",
    )
    return row["conversation_id"], row["customer_id"]


async def offered_to(api: Api, conversation_id: str) -> str:
    agent: str = await wait_until(
        lambda: api.pool.fetchval(
            "SELECT record->>'offered_to' FROM conversations WHERE conversation_id = $1",
            conversation_id,
        ),
        what="an offer",
    )
    return agent


async def accept(api: Api, conversation_id: str) -> str:
    """The agent the conversation is offered to accepts it; that agent."""
    agent = await offered_to(api, conversation_id)
    status, body = await api.call("POST", f"{LIST}/{conversation_id}/accept", agent, json={})
    assert (status, body["status"]) == (202, "completed"), body
    return agent


async def sms_writes(api: Api, text: str) -> None:
    """Alice texts our number (Twilio's signed webhook)."""
    url = api.service.url("/webhooks/twilio/sms")
    sid = "SM" + uuid.uuid4().hex
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT,
        "From": ALICE_PHONE,
        "To": OUR_NUMBER,
        "Body": text,
        "NumMedia": "0",
    }
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    async with api.service.session.post(
        url, data=params, headers={"X-Twilio-Signature": signature}
    ) as response:
        assert response.status == 200, await response.text()


async def close(api: Api, conversation_id: str, agent: str) -> None:
    status, body = await api.call("POST", f"{LIST}/{conversation_id}/close", agent, json={})
    assert (status, body["status"]) == (202, "completed"), body


async def build_scene(api: Api) -> Scene:
    started = time.time()
    await api.register("ann", capacity=CAPACITY)
    await sms_writes(api, "alice by sms")
    alice_sms, alice_phone = await conversation_with(api, "alice by sms")
    assert await accept(api, alice_sms) == "ann"
    await close(api, alice_sms, "ann")
    await api.customer_writes("alice", "a1", "alice on the web")
    alice_web, alice = await conversation_with(api, "alice on the web")
    assert await accept(api, alice_web) == "ann"
    await api.customer_writes("carol", "c1", "carol asks")
    carol, carol_id = await conversation_with(api, "carol asks")
    assert await accept(api, carol) == "ann"
    await api.register("bob", capacity=CAPACITY)
    await api.customer_writes("dave", "d1", "dave asks")
    dave, dave_id = await conversation_with(api, "dave asks")
    assert await accept(api, dave) == "bob"  # the least occupied: Ann holds two
    await api.customer_writes("erin", "e1", "erin asks")
    erin, erin_id = await conversation_with(api, "erin asks")
    assert await offered_to(api, erin) == "bob"  # left unanswered
    status, body = await api.call(
        "POST", f"{LIST}/{alice_web}/reply", "ann", json={"text": "Hi Alice"}
    )
    assert status == 202, body
    # Sent, its status moves no more: the history is read whole, then page by page.
    await reply_sent(api.pool, body["reply_id"])
    await close(api, carol, "ann")

    # Alice is one person: her phone joins her web chat profile. The router merges the
    # SMS profile into it and writes the link to customer_identities; the closed SMS
    # conversation keeps the identity it came from.
    status, body = await api.call(
        "POST", f"{ACME}/customers/{alice}/identities", json={"identity": alice_phone}
    )
    assert (status, body["status"]) == (202, "completed"), body
    await wait_until(
        lambda: api.pool.fetchval(
            "SELECT customer_id FROM customer_identities WHERE identity = $1", alice_phone
        ),
        what="the link written by the router",
    )
    await wait_until(
        lambda: api.pool.fetchval(
            "SELECT record->>'last_agent_reply_at' IS NOT NULL FROM conversations"
            " WHERE conversation_id = $1",
            alice_web,
        ),
        what="the reply recorded by the router",
    )
    return Scene(
        alice_sms=alice_sms,
        alice_web=alice_web,
        carol=carol,
        dave=dave,
        erin=erin,
        alice=alice,
        alice_phone=alice_phone,
        carol_id=carol_id,
        dave_id=dave_id,
        erin_id=erin_id,
        started=started,
    )


async def listed(
    api: Api, who: str = "admin", path: str = LIST, params: Any = None, **query: Any
) -> list[dict[str, Any]]:
    status, body = await api.call("GET", path, who, params=params or query)
    assert status == 200, body
    assert body["next_cursor"] is None, "a test list fits one page"
    items: list[dict[str, Any]] = body["conversations"]
    return items


async def ids(api: Api, who: str = "admin", **query: Any) -> set[str]:
    return {item["conversation_id"] for item in await listed(api, who, **query)}


async def refused(api: Api, path: str, who: str = "admin", params: Any = None, **query: Any) -> str:
    status, body = await api.call("GET", path, who, params=params or query)
    assert status == 400, (query, status, body)
    reason: str = body["error"]
    return reason


def tampered(cursor: str) -> str:
    """The cursor with its position moved by a microsecond, re-encoded as a client could."""
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data[1] -= 1
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_lists_filter_page_and_keep_to_each_tokens_conversations(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(
        infrastructure.bootstrap_servers, database_url, OVERRIDES, SECRETS
    ) as api:
        scene = await build_scene(api)

        # Everything, most recently active first, with what a desktop shows.
        items = await listed(api)
        assert {i["conversation_id"] for i in items} == scene.everything
        times = [i["updated_at"] for i in items]
        assert times == sorted(times, reverse=True)
        by_id = {i["conversation_id"]: i for i in items}
        alice = by_id[scene.alice_web]
        assert (alice["status"], alice["owner_agent_id"], alice["offered_to"]) == (
            "assigned",
            "ann",
            None,
        )
        assert (alice["channel"], alice["queue"], alice["customer_id"]) == (
            "webchat",
            "default",
            scene.alice,
        )
        assert alice["message_count"] >= 1
        assert alice["last_agent_reply_at"] is not None
        assert alice["opened_at"] <= alice["last_customer_message_at"]
        assert (alice["closed_at"], alice["reply_window_closed"]) == (None, False)
        carol = by_id[scene.carol]
        assert (carol["status"], carol["owner_agent_id"]) == ("closed", None)
        assert carol["closed_at"] is not None
        erin = by_id[scene.erin]
        assert (erin["status"], erin["offered_to"], erin["owner_agent_id"]) == (
            "offered",
            "bob",
            None,
        )
        sms = by_id[scene.alice_sms]
        assert (sms["channel"], sms["status"], sms["customer_id"]) == (
            "sms",
            "closed",
            scene.alice_phone,
        )

        # Filters, alone and together.
        closed = {scene.carol, scene.alice_sms}
        assert await ids(api, status="open") == scene.everything - closed
        assert await ids(api, status="closed") == closed
        assert await ids(api, status="offered") == {scene.erin}
        assert await ids(api, status="offered,closed") == {scene.erin} | closed
        assert (
            await ids(api, params=[("status", "offered"), ("status", "closed")])
            == {scene.erin} | closed
        )
        assert await ids(api, status="assigned, offered") == {
            scene.alice_web,
            scene.dave,
            scene.erin,
        }
        assert await ids(api, status="open,closed") == scene.everything
        assert await ids(api, queue="default") == scene.everything
        assert await ids(api, queue="vip") == set()
        assert await ids(api, agent_id="ann") == {scene.alice_web}  # closed: no owner
        assert await ids(api, agent_id="bob") == {scene.dave}
        # A customer: every identity of the profile, asked by any of them (the closed SMS
        # conversation still names the phone it came from).
        alices = {scene.alice_web, scene.alice_sms}
        assert await ids(api, customer_id=scene.alice) == alices
        assert await ids(api, customer_id=scene.alice_phone) == alices
        assert await ids(api, customer_id=scene.carol_id) == {scene.carol}
        assert await ids(api, customer_id="webchat:nobody-at-all") == set()
        assert await ids(api, channel="sms") == {scene.alice_sms}
        assert await ids(api, channel="webchat") == scene.everything - {scene.alice_sms}
        # Opening times, as epoch seconds or ISO 8601.
        before = datetime.fromtimestamp(scene.started - 60, UTC).isoformat()
        assert await ids(api, since=before) == scene.everything
        assert await ids(api, since=str(time.time() + 3600)) == set()
        assert await ids(api, until=before) == set()
        assert (
            await ids(api, since=str(scene.started - 60), until=datetime.now(UTC).isoformat())
            == scene.everything
        )
        assert await ids(api, status="open", channel="webchat", agent_id="ann") == {scene.alice_web}
        assert await ids(api, customer_id=scene.alice, channel="sms", status="closed") == {
            scene.alice_sms
        }

        # mine: the caller's own open conversations, owned or offered to them.
        assert await ids(api, "ann", mine="true") == {scene.alice_web}
        assert await ids(api, "bob", mine="true") == {scene.dave, scene.erin}
        assert await ids(api, "bob", mine="true", status="offered") == {scene.erin}
        assert await ids(api, "bob", mine="false") == await ids(api, "bob")
        assert "agent token" in await refused(api, LIST, mine="true")  # an admin has no agent

        # Visibility: an agent sees what it owns, is offered or handled (the rule of
        # reading one conversation: both agree on every conversation), never another
        # domain's.
        visible = {
            "ann": {scene.alice_web, scene.carol, scene.alice_sms},
            "bob": {scene.dave, scene.erin},
        }
        for agent, theirs in visible.items():
            assert await ids(api, agent) == theirs
            for conversation_id in scene.everything:
                status, _ = await api.call("GET", f"{LIST}/{conversation_id}", agent)
                assert (status == 200) == (conversation_id in theirs), (agent, conversation_id)
        assert await ids(api, "ann", customer_id=scene.dave_id) == set()
        assert await ids(api, "ann", agent_id="bob") == set()  # Bob's are not Ann's
        assert await ids(api, "platform") == scene.everything
        assert (await api.call("GET", LIST, "globex"))[0] == 403
        assert await ids(api, "globex", path="/v1/domains/globex/conversations") == set()
        assert (await api.call("GET", LIST, None))[0] == 401

        # Keyset pages: no duplicate and no gap while new conversations arrive between
        # pages (they are newer than the first page: the next refresh shows them).
        for query in ({}, {"status": "open"}, {"channel": "webchat"}):
            expected = await ids(api, **query)
            seen: list[str] = []
            cursor: str | None = None
            pages = 0
            while True:
                params = {**query, "limit": "2", **({"cursor": cursor} if cursor else {})}
                status, page = await api.call("GET", LIST, "admin", params=params)
                assert status == 200, page
                assert len(page["conversations"]) <= 2
                seen.extend(item["conversation_id"] for item in page["conversations"])
                cursor = page["next_cursor"]
                pages += 1
                if cursor is None:
                    break
                name = f"newcomer-{len(seen)}-{pages}-{query.get('status', 'all')}"
                await api.customer_writes(name, "n1", f"{name} arrives")
                await conversation_with(api, f"{name} arrives")
            assert len(seen) == len(set(seen)), seen
            assert set(seen) == expected, (query, seen)
            assert pages == (len(expected) + 1) // 2
        status, page = await api.call("GET", LIST, "admin", params={"limit": "200"})
        assert (status, page["next_cursor"]) == (200, None)

        # Cursors: opaque, and refused (400, never 500) when edited, garbled, or sent with
        # other filters.
        status, page = await api.call("GET", LIST, "admin", params={"limit": "1"})
        cursor = page["next_cursor"]
        assert cursor
        status, _ = await api.call("GET", LIST, "admin", params={"limit": "1", "cursor": cursor})
        assert status == 200
        for bad in (
            tampered(cursor),
            cursor[:-6] + ("A" if cursor[-6] != "A" else "B") + cursor[-5:],
            cursor[: len(cursor) // 2],
            "not-a-cursor",
            "!!",
            base64.urlsafe_b64encode(b'[1, 0, "\\ud800", "0"]').decode().rstrip("="),
            "A" * 1025,
        ):
            assert "cursor" in await refused(api, LIST, limit="1", cursor=bad), bad
        assert "cursor" in await refused(api, LIST, limit="1", cursor=cursor, status="open")

        # Each filter says what is wrong with it.
        for query in (
            {"status": "pending"},
            {"status": ",".join(["open"] * (len(STATUS_VALUES) + 1))},
            {"channel": "fax"},
            {"agent_id": "not an id"},
            {"queue": "q" * 65},
            {"queue": "\x01"},
            {"customer_id": "c" * 513},
            {"since": "yesterday"},
            {"since": "-5"},
            {"until": "1e99"},
            {"since": "2030-01-01", "until": "2020-01-01"},
            {"mine": "yes"},
            {"limit": "0"},
            {"limit": "201"},
            {"limit": "ten"},
        ):
            await refused(api, LIST, **query)
        await refused(api, LIST, params=[("queue", "a"), ("queue", "b")])

        # Dave writes again to the conversation Bob holds (the activity alone is stored:
        # migration 0027): of the two assigned, it is now the most recently active, with
        # its new message count.
        assert [i["conversation_id"] for i in await listed(api, status="assigned")] == [
            scene.alice_web,
            scene.dave,
        ]
        before = {i["conversation_id"]: i for i in await listed(api)}[scene.dave]
        await api.customer_writes("dave", "d2", "dave again")

        async def dave_on_top() -> dict[str, Any] | None:
            first = (await listed(api, status="assigned"))[0]
            wrote = first["message_count"] == before["message_count"] + 1
            return first if first["conversation_id"] == scene.dave and wrote else None

        again = await wait_until(dave_on_top, what="dave's conversation on top")
        assert again["updated_at"] > before["updated_at"]
        assert again["last_customer_message_at"] > before["last_customer_message_at"]


async def test_a_customers_profile_and_history_span_identities_and_channels(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(
        infrastructure.bootstrap_servers, database_url, OVERRIDES, SECRETS
    ) as api:
        scene = await build_scene(api)
        alice_path = f"{ACME}/customers/{scene.alice}"

        # The profile: asked by either identity, it answers for the profile.
        status, profile = await api.call("GET", alice_path)
        assert status == 200, profile
        assert profile["customer_id"] == scene.alice
        identities = [(i["identity"], i["source"]) for i in profile["identities"]]
        assert identities == [(scene.alice, "profile"), (scene.alice_phone, "api")]
        assert profile["identities"][0]["linked_at"] is None
        assert profile["identities"][1]["linked_at"] > scene.started - 60
        assert (profile["owner_agent_id"], profile["last_agent_id"]) == (None, "ann")
        assert profile["last_handled_at"] > scene.started - 60
        assert [a["agent_id"] for a in profile["affinity"]] == ["ann"]  # merged, both hers
        assert profile["affinity"][0]["score"] > 0
        open_ = [c["conversation_id"] for c in profile["open_conversations"]]
        assert open_ == [scene.alice_web]
        counts = profile["counts"]
        assert (counts["conversations"], counts["open_conversations"]) == (2, 1)
        assert counts["by_channel"] == {"webchat": 1, "sms": 1}
        assert counts["messages"] >= 2
        assert counts["first_contact_at"] <= counts["last_contact_at"]
        status, by_phone = await api.call("GET", f"{ACME}/customers/{scene.alice_phone}")
        assert status == 200
        assert by_phone["customer_id"] == scene.alice
        assert by_phone["identities"] == profile["identities"]

        # Who may read it: an admin, or an agent who may read one of the customer's
        # conversations (owned, offered or handled).
        assert (await api.call("GET", alice_path, "ann"))[0] == 200
        assert (await api.call("GET", alice_path, "bob"))[0] == 403
        assert (await api.call("GET", alice_path + "/history", "bob"))[0] == 403
        carol_path = f"{ACME}/customers/{scene.carol_id}"
        assert (await api.call("GET", carol_path, "ann"))[0] == 200  # closed, handled
        assert (await api.call("GET", carol_path, "bob"))[0] == 403
        assert (await api.call("GET", carol_path + "/history", "bob"))[0] == 403
        assert (await api.call("GET", f"{ACME}/customers/{scene.erin_id}", "bob"))[0] == 200
        assert (await api.call("GET", f"{ACME}/customers/{scene.dave_id}", "ann"))[0] == 403
        assert (await api.call("GET", alice_path, "globex"))[0] == 403
        status, body = await api.call("GET", f"{ACME}/customers/webchat:never-seen")
        assert (status, body["error"]) == (404, "unknown customer")
        assert (await api.call("GET", f"{ACME}/customers/webchat:never-seen/history"))[0] == 404

        # Ann closes Alice's web chat; then the history, asked by the SMS identity.
        status, body = await api.call("POST", f"{LIST}/{scene.alice_web}/close", "ann", json={})
        assert (status, body["status"]) == (202, "completed"), body
        await wait_until(
            lambda: api.pool.fetchval(
                "SELECT status = 'closed' FROM conversations WHERE conversation_id = $1",
                scene.alice_web,
            ),
            what="closed",
        )
        history_path = f"{ACME}/customers/{scene.alice_phone}/history"
        status, history = await api.call("GET", history_path, params={"limit": "200"})
        assert status == 200, history
        assert (history["customer_id"], history["next_cursor"]) == (scene.alice, None)
        entries = history["entries"]
        assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
        web, sms = scene.alice_web, scene.alice_sms
        summary = [
            (
                e["kind"],
                e["conversation_id"],
                e["channel"],
                e.get("direction"),
                e.get("agent_id"),
                e.get("text"),
            )
            for e in entries
        ]
        expected = [
            ("opened", sms, "sms", None, None, None),
            ("message", sms, "sms", "inbound", None, "alice by sms"),
            ("assignment", sms, "sms", None, "ann", None),
            ("closed", sms, "sms", None, None, None),
            ("opened", web, "webchat", None, None, None),
            ("message", web, "webchat", "inbound", None, "alice on the web"),
            ("assignment", web, "webchat", None, "ann", None),
            ("message", web, "webchat", "outbound", "ann", "Hi Alice"),
            ("closed", web, "webchat", None, None, None),
        ]
        assert sorted(summary, key=str) == sorted(expected, key=str)
        # What certainly came before what (a conversation's opening and its customer's
        # first message carry the router's and the adapter's clocks).
        position = {item: index for index, item in enumerate(summary)}
        for earlier, later in (
            (0, 2),
            (1, 2),
            (2, 3),
            (3, 4),
            (3, 5),
            (4, 6),
            (5, 6),
            (6, 7),
            (7, 8),
        ):
            assert position[expected[earlier]] < position[expected[later]], (earlier, later)
        reply = entries[position[expected[7]]]
        assert reply["status"] in ("queued", "sent")
        opened_sms = entries[position[expected[0]]]
        assert (opened_sms["customer_id"], opened_sms["queue"]) == (scene.alice_phone, "default")
        assert entries[position[expected[4]]]["customer_id"] == scene.alice
        assert entries[position[expected[3]]]["reason"] == "resolved"
        assert entries[-1]["reason"] == "resolved"
        accepted = entries[position[expected[2]]]
        assert accepted["accepted_at"] is not None
        assert accepted["strategy"]

        # Paged backward from the newest, oldest first within a page: the pages, put back
        # in order, are the whole history.
        pages: list[list[dict[str, Any]]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            status, page = await api.call("GET", history_path, params=params)
            assert status == 200, page
            pages.append(page["entries"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [3, 3, 3]
        assert [e for p in reversed(pages) for e in p] == entries

        # History cursors: refused when edited or for another customer.
        status, page = await api.call("GET", history_path, params={"limit": "1"})
        cursor = page["next_cursor"]
        assert cursor
        assert (await api.call("GET", history_path, params={"limit": "1", "cursor": cursor}))[
            0
        ] == 200
        assert (
            await api.call("GET", alice_path + "/history", params={"limit": "1", "cursor": cursor})
        )[0] == 200  # the same profile, by its other identity
        for path, bad in (
            (history_path, tampered(cursor)),
            (history_path, "garbage"),
            (f"{ACME}/customers/{scene.carol_id}/history", cursor),
        ):
            assert "cursor" in await refused(api, path, limit="1", cursor=bad)
        status, listing = await api.call("GET", LIST, "admin", params={"limit": "1"})
        assert "cursor" in await refused(api, history_path, cursor=listing["next_cursor"])
        for query in ({"limit": "0"}, {"limit": "201"}):
            await refused(api, history_path, **query)
