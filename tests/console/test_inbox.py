"""The agent inbox (``GET /console/inbox``): served by the router with its assets only, and
a whole day of one agent in a real browser (headless Chromium) against the real service,
on the public agent API with the agent's own token. Each step is checked in the page and
in the database."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from router.console import FILES, STATIC
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.console.chromium import ARTIFACTS, chromium_page
from tests.support import wait_until

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page, Route

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ACME = "/v1/domains/acme"
OVERRIDES: dict[str, Any] = {
    "domains": {
        "acme": {
            "webchat": {"enabled": True},
            # Offers wait long enough for a slow browser; nobody misses one here.
            "routing": {"queues": {"default": {"mode": "offer", "offer_timeout": 300}}},
        },
        "globex": {"webchat": {"enabled": True}},
    }
}
HOSTILE = "<img src=x onerror=\"document.title='owned'\"> I need to change my address"
WAIT = 15_000
"""Milliseconds the page has to show a step (the router and the page's refreshes between)."""
ASSETS = ("stream.js", "inbox.js", "inbox-conversation.js", "inbox.css")
ENDED = (
    "retry: 1000\n\nid: ended-1\nevent: conversation.queued\n"
    'data: {"conversation_id": "elsewhere", "channel": "sms", "customer_id": "sms:+1",'
    ' "queue": "default", "step": "queue"}\n\n'
)
"""A stream that ends after one event (of a conversation not the agent's)."""


# -- served ----------------------------------------------------------------------------


async def test_the_inbox_page_and_its_assets_are_served_without_any_token(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        http = api.service.session
        async with http.get(api.service.url("/console/inbox")) as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            policy = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy
            assert "connect-src 'self'" in policy
            page = await r.text()
        # Everything the page loads is one of the router's own assets: no CDN, no inline code.
        loaded = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert sorted(loaded) == sorted(["#conversation", *(f"/console/{a}" for a in ASSETS)])
        assert "<script>" not in page
        assert " style=" not in page
        for name in ASSETS:
            assert name in FILES
            async with http.get(api.service.url(f"/console/{name}")) as r:
                assert r.status == 200
                kind = "javascript" if name.endswith(".js") else "text/css"
                assert kind in r.headers["Content-Type"]
        for name in ("inbox.html", "inbox.jsx", "__init__.py", "index.html"):
            async with http.get(api.service.url(f"/console/{name}")) as r:
                assert r.status == 404, name
    # Customers' text only ever goes in as text, and the files stay readable.
    for name in ("inbox.html", *ASSETS):
        source = (STATIC / name).read_text()
        assert "innerHTML" not in source
        assert "insertAdjacentHTML" not in source
        assert len(source.splitlines()) < 800, name


# -- a day in the browser ------------------------------------------------------------------


async def test_an_agent_works_a_day_in_the_inbox_with_their_own_token(
    infrastructure: Infrastructure, database_url: str
) -> None:
    from playwright.async_api import expect

    async with (
        api_service(infrastructure.bootstrap_servers, database_url, OVERRIDES) as api,
        chromium_page("inbox", viewport={"width": 1360, "height": 1000}) as browsed,
    ):
        page = browsed.page
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        api_requests: list[tuple[str, str | None]] = []
        page.on(
            "request",
            lambda r: (
                api_requests.append((r.url, r.headers.get("authorization")))
                if "/v1/" in r.url
                else None
            ),
        )
        for agent in ("ann", "bob"):
            status, body = await api.call(
                "PUT",
                f"{ACME}/agents/{agent}",
                json={"name": agent.title(), "capacity": {"webchat": 3}},
            )
            assert status == 202, body
        await wait_until(
            lambda: api.pool.fetchval("SELECT count(*) = 2 FROM agents WHERE domain = 'acme'"),
            what="ann and bob registered",
        )
        notice = page.locator("#notice")

        # Signing in: the token says whose it is, and must be an agent's of the domain.
        await page.goto(api.service.url("/console/inbox"))
        await sign_in(page, api.tokens["ann"], domain="globex")
        await expect(notice).to_contain_text("not valid in domain globex")
        await sign_in(page, api.tokens["admin"])  # may read ann, but is nobody's
        await expect(notice).to_contain_text("not an agent token")
        assert await page.evaluate("sessionStorage.getItem('switchboard.inbox.token')") is None
        # The first stream ends after one event: the page reconnects, resuming after it.
        resumed: list[str | None] = []

        async def stream(route: Route) -> None:
            if not resumed:
                resumed.append(None)
                await route.fulfill(status=200, content_type="text/event-stream", body=ENDED)
            else:
                resumed.append(await route.request.header_value("last-event-id"))
                await route.continue_()

        await page.route("**/v1/domains/acme/stream?*", stream)
        api_requests.clear()  # from here on, only ann's token
        await sign_in(page, api.tokens["ann"])
        await expect(page.locator("#me")).to_have_text("Ann (ann)")
        await wait_until(lambda: len(resumed) > 1, what="the stream resumed")
        assert resumed[1] == "ended-1"
        await page.unroute("**/v1/domains/acme/stream?*", stream)
        await expect(page.locator("#status")).to_have_text("live", timeout=WAIT)

        # Online.
        await page.click("#presence-online")
        await wait_until(lambda: presence(api, "ann", "online"), what="ann online")
        await expect(page.locator("#presence-online")).to_have_attribute("aria-pressed", "true")

        # An offer, declined with a reason: it moves on, and is no miss.
        await api.customer_writes("alice", "a1", "Where is my parcel?")
        declined = await conversation_of(api, "alice")
        offer = offer_of(page, declined)
        await expect(offer).to_contain_text("webchat", timeout=WAIT)
        await expect(offer).to_contain_text("expires in")  # its expiry comes with the event
        await page.screenshot(path=str(ARTIFACTS / "inbox-offer.png"))
        await offer.locator("select.reason").select_option("wrong_language")
        await offer.locator("button.decline").click()
        await expect(offer).to_have_count(0)
        await expect(notice).to_contain_text("Declined")
        assert await wait_until(
            lambda: api.pool.fetchval(
                "SELECT end_reason FROM assignments WHERE domain = 'acme'"
                " AND conversation_id = $1 AND agent_id = 'ann'",
                declined,
            ),
            what="the declined offer's end",
        ) == ("declined:wrong_language")

        # Another, accepted: in the list at once, and open with the customer's words.
        kept = await accepted_conversation(page, api, "carol", HOSTILE)
        row = row_of(page, kept)
        await expect(row).to_contain_text("assigned")
        await expect(row).to_contain_text("waiting")
        await expect(page.locator("#facts")).to_have_attribute("data-status", "assigned")
        await expect(page.locator("#timeline .msg.inbound")).to_contain_text(HOSTILE)
        history = page.locator("#history")
        await expect(history).to_contain_text(HOSTILE, timeout=WAIT)
        await expect(history).to_contain_text("Opened on webchat")
        await expect(history).to_contain_text("assigned to ann")
        await expect(page.locator("#customer")).to_contain_text("webchat 1")

        # A reply: it reaches the customer's web chat socket and is recorded as sent.
        visitor = await api.service.visitor("carol")
        socket = f"{ACME}/webchat/sessions/{visitor.session_id}/socket"
        async with api.service.session.ws_connect(
            api.service.url(socket), params={"token": visitor.token}
        ) as ws:
            await page.fill("#reply-text", "It ships tomorrow.")
            await page.press("#reply-text", "Control+Enter")
            delivered = await asyncio.wait_for(ws.receive_json(), 15)
        assert (delivered["type"], delivered["conversation_id"], delivered["text"]) == (
            "reply",
            kept,
            "It ships tomorrow.",
        )
        await expect(page.locator("#reply-text")).to_have_value("")
        await expect(page.locator("#timeline .msg.outbound")).to_contain_text(
            "It ships tomorrow.", timeout=WAIT
        )
        await expect(row).to_contain_text("answered", timeout=WAIT)
        sent = await wait_until(
            lambda: api.pool.fetchrow(
                "SELECT m.text, m.agent_id, o.status FROM messages m JOIN outbound_messages o"
                " ON o.domain = m.domain AND o.outbound_id = m.message_id"
                " WHERE m.domain = 'acme' AND m.conversation_id = $1 AND o.status = 'sent'",
                kept,
            ),
            what="the reply sent",
        )
        assert (sent["text"], sent["agent_id"]) == ("It ships tomorrow.", "ann")

        # Its context: priority and attributes.
        await page.fill("#priority", "5")
        await page.click("#attribute-add")
        await page.locator("#attributes .key").last.fill("order_id")
        await page.locator("#attributes .value").last.fill("A-1001")
        await page.click("#context-save")
        await recorded(
            api,
            kept,
            lambda r: r.get("priority") == 5 and r.get("attributes") == {"order_id": "A-1001"},
            "the new context",
        )
        await expect(page.locator("#facts")).to_contain_text("A-1001", timeout=WAIT)
        await expect(row).to_contain_text("priority 5", timeout=WAIT)

        # Snoozed for an hour: its slot is free, and the list says until when.
        await page.click("#snooze-hour")
        snoozed = await recorded(api, kept, lambda r: r.get("snoozed_until"), "the snooze")
        assert abs(snoozed["snoozed_until"] - (time.time() + 3600)) < 120
        assert snoozed["status"] == "idle"
        await expect(row).to_contain_text("snoozed until", timeout=WAIT)
        await expect(page.locator("#facts")).to_contain_text("Snoozed until", timeout=WAIT)

        # A third, closed.
        done = await accepted_conversation(page, api, "dora", "Please cancel my order")
        await expect(page.locator("#timeline")).to_contain_text("Please cancel my order")
        await page.click("#close")
        closed = await recorded(api, done, lambda r: r["status"] == "closed", "closed")
        assert closed["close_reason"] == "resolved"
        await expect(row_of(page, done)).to_have_count(0, timeout=WAIT)
        await expect(page.locator("#facts")).to_have_attribute(
            "data-status", "closed", timeout=WAIT
        )
        await expect(page.locator("#reply-send")).to_be_disabled()

        # Taken on ann's behalf elsewhere (here: an admin): the stream's assignment puts it
        # in her list at once, and the offer goes.
        await api.customer_writes("fred", "fred-1", "Hello?")
        handed = await conversation_of(api, "fred")
        await expect(offer_of(page, handed)).to_have_count(1, timeout=WAIT)
        status, body = await api.call(
            "POST", f"{ACME}/conversations/{handed}/accept", json={"agent_id": "ann"}
        )
        assert (status, body["status"]) == (202, "completed"), body
        await expect(row_of(page, handed)).to_contain_text("assigned", timeout=3_000)
        await expect(offer_of(page, handed)).to_have_count(0)

        # A fourth, transferred to bob; a reply after that is refused, and says why.
        moved = await accepted_conversation(page, api, "erin", "Is anyone there?")
        await api.call("POST", f"{ACME}/agents/bob/presence", json={"status": "online"})
        await wait_until(lambda: presence(api, "bob", "online"), what="bob online")
        await page.fill("#transfer-agent", "bob")
        await page.click("#transfer-to-agent")
        await recorded(
            api,
            moved,
            lambda r: "bob" in (r.get("owner_agent_id"), r.get("offered_to")),
            "the transfer to bob",
        )
        await expect(notice).to_contain_text("transferred to bob")
        await expect(row_of(page, moved)).to_have_count(0, timeout=WAIT)
        await page.fill("#reply-text", "Still there?")
        await page.click("#reply-send")
        await expect(notice).to_contain_text("you do not own this conversation")
        await expect(notice).to_contain_text("not_owner")
        assert not await api.pool.fetchval(
            "SELECT count(*) FROM messages WHERE domain = 'acme' AND conversation_id = $1"
            " AND direction = 'outbound'",
            moved,
        )

        # By keyboard, in a narrow window: back to the snoozed conversation.
        await page.set_viewport_size({"width": 380, "height": 900})
        await row.locator("button").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#conversation-title")).to_contain_text(visitor.customer_id)
        await expect(page.locator("#timeline")).to_contain_text("It ships tomorrow.")
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            "the page scrolls sideways in a narrow window"
        )
        await page.screenshot(path=str(ARTIFACTS / "inbox-narrow.png"), full_page=True)

        # A reload keeps the session (the tab's sessionStorage) and the open conversation.
        await page.set_viewport_size({"width": 1360, "height": 1000})
        await page.reload()
        await expect(page.locator("#status")).to_have_text("live", timeout=WAIT)
        await expect(row_of(page, kept)).to_contain_text("snoozed until", timeout=WAIT)
        await expect(page.locator("#conversation-title")).to_contain_text(visitor.customer_id)
        await expect(history).to_contain_text("It ships tomorrow.", timeout=WAIT)
        assert (
            await page.evaluate("sessionStorage.getItem('switchboard.inbox.token')")
            == (api.tokens["ann"])
        )

        # Text stayed text; only the public API, only with ann's token.
        assert await page.locator("img").count() == 0
        assert "owned" not in await page.title()
        assert browsed.errors == []
        assert [text for text in console_errors if "Content Security Policy" in text] == []
        assert api_requests
        ann = f"Bearer {api.tokens['ann']}"
        assert [url for url, auth in api_requests if auth != ann] == []
        assert not [url for url, _ in api_requests if "/console/" in url]
        await page.screenshot(path=str(ARTIFACTS / "inbox.png"), full_page=True)


# -- helpers -----------------------------------------------------------------------------


async def sign_in(page: Page, token: str, domain: str = "acme") -> None:
    await page.fill("#domain", domain)
    await page.fill("#token", token)
    await page.click("#signin button[type=submit]")


def offer_of(page: Page, conversation_id: str) -> Locator:
    return page.locator(f'#offers li[data-conversation-id="{conversation_id}"]')


def row_of(page: Page, conversation_id: str) -> Locator:
    return page.locator(f'#mine li[data-conversation-id="{conversation_id}"]')


async def presence(api: Api, agent: str, wanted: str) -> bool:
    value = await api.pool.fetchval(
        "SELECT presence FROM agents WHERE domain = 'acme' AND agent_id = $1", agent
    )
    return bool(value == wanted)


async def conversation_of(api: Api, visitor: str) -> str:
    """The open conversation of the web chat visitor ``visitor``."""
    customer = (await api.service.visitor(visitor)).customer_id
    found: str = await wait_until(
        lambda: api.pool.fetchval(
            "SELECT conversation_id FROM conversations WHERE domain = 'acme'"
            " AND customer_id = $1 AND status <> 'closed'",
            customer,
        ),
        what=f"{visitor}'s conversation",
    )
    return found


async def recorded(
    api: Api, conversation_id: str, holds: Callable[[dict[str, Any]], Any], what: str
) -> dict[str, Any]:
    """The conversation's stored record once ``holds`` is true of it."""

    async def found() -> dict[str, Any] | None:
        raw = await api.pool.fetchval(
            "SELECT record::text FROM conversations WHERE domain = 'acme' AND conversation_id = $1",
            conversation_id,
        )
        record: dict[str, Any] = json.loads(raw)
        return record if holds(record) else None

    result: dict[str, Any] = await wait_until(found, what=what)
    return result


async def accepted_conversation(page: Page, api: Api, visitor: str, text: str) -> str:
    """``visitor`` writes ``text``; the agent accepts the offer in the page, which opens it."""
    from playwright.async_api import expect

    await api.customer_writes(visitor, f"{visitor}-1", text)
    conversation_id = await conversation_of(api, visitor)
    offer = offer_of(page, conversation_id)
    await offer.locator("button.accept").click(timeout=WAIT)
    await recorded(
        api,
        conversation_id,
        lambda r: r["status"] == "assigned" and r.get("owner_agent_id") == "ann",
        f"{visitor}'s conversation accepted",
    )
    await expect(offer).to_have_count(0)
    await expect(row_of(page, conversation_id)).to_be_visible()
    customer = (await api.service.visitor(visitor)).customer_id
    await expect(page.locator("#conversation-title")).to_contain_text(customer, timeout=WAIT)
    await expect(page.locator("#timeline")).to_contain_text(text, timeout=WAIT)
    return conversation_id
