"""The embeddable web chat widget in a real browser (headless Chromium), on a page of
another site (another port: another origin, so CORS and the socket's ``Origin`` check are
real), against the real service: a signed-in visitor answers the pre-chat form and writes,
the conversation carries the answers, the agent's reply arrives on the socket, a reload
keeps the conversation (and the answers: no form again), and a reply sent while the page
was away arrives from the backlog."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web

from adapters.webchat_tokens import LoginIn, sign_login
from switchboard.embedded import free_port
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.console.chromium import chromium_page
from tests.support import wait_until

pytestmark = pytest.mark.integration

IDENTITY = "widget-identity-secret"
HOSTILE = "<img src=x onerror=\"document.title='owned'\"> where is my order?"
ORDER_LABEL = "<img src=x onerror=\"document.title='label'\"> Order number"
PRECHAT: list[dict[str, Any]] = [
    {
        "name": "topic",
        "label": "What can we help you with?",
        "required": True,
        "options": [
            {"value": "delivery", "label": "A delivery"},
            {
                "value": "billing",
                "label": "Billing",
                "queue": "billing",
                "skills": ["billing"],
                "priority": 5,
            },
        ],
    },
    {
        "name": "language",
        "label": "Language",
        "kind": "language",
        "options": [{"value": "en", "label": "English"}, {"value": "fr", "label": "Français"}],
    },
    {"name": "order", "label": ORDER_LABEL, "max_chars": 20},
]
ANSWERS = {"topic": "billing", "language": "fr", "order": "A-1234"}


@contextlib.asynccontextmanager
async def customer_site(service_url: str, port: int) -> AsyncIterator[str]:
    """The customer's site: a page embedding the widget, and its backend's login URL."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text=(
                "<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1>"
                f'<script src="{service_url}/v1/domains/acme/webchat/widget.js" '
                'data-domain="acme" data-login-url="/login" data-open="true" async></script>'
                "</body></html>"
            ),
            content_type="text/html",
        )

    async def login(request: web.Request) -> web.Response:
        unsigned = {"user_id": "shopper-7", "email": "Shopper@Example.com"}
        unsigned |= {"expires_at": int(time.time()) + 300, "signature": ""}
        signature = sign_login(IDENTITY, "acme", msgspec.convert(unsigned, LoginIn))
        return web.json_response({**unsigned, "signature": signature})

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/login", login)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _reply(api: Api, conversation_id: str, text: str) -> None:
    status, body = await api.call(
        "POST",
        f"/v1/domains/acme/conversations/{conversation_id}/reply",
        "ann",
        json={"text": text},
    )
    assert status == 202, body


async def test_a_visitor_chats_through_the_widget_and_a_reload_keeps_the_conversation(
    infrastructure: Infrastructure, database_url: str
) -> None:
    site_port = free_port()
    site_origin = f"http://127.0.0.1:{site_port}"
    webchat = {
        "enabled": True,
        "identity_secret_env": "WIDGET_IDENTITY",
        "session_secret_env": "WIDGET_SESSION",
        "allowed_origins": [site_origin],
        "prechat": PRECHAT,
    }
    routing = {"queues": {"default": {}, "billing": {}}}
    secrets = {"WIDGET_IDENTITY": IDENTITY, "WIDGET_SESSION": "widget-session-secret"}
    async with (
        api_service(
            infrastructure.bootstrap_servers,
            database_url,
            {"domains": {"acme": {"webchat": webchat, "routing": routing}}},
            secrets,
        ) as api,
        customer_site(api.service.base_url, site_port) as site,
    ):
        await api.register("ann", skills=["billing"])
        async with chromium_page("widget") as browsed:
            page = browsed.page
            widget = page.locator("#switchboard-webchat")

            async def connected() -> None:
                await page.wait_for_function(
                    "document.getElementById('switchboard-webchat')"
                    "?.getAttribute('data-state') === 'connected'",
                    timeout=15_000,
                )

            await page.goto(site)
            await connected()

            # The pre-chat form comes first: configured text shown as text, required checked.
            prechat = widget.locator("form.prechat")
            compose = widget.locator("form.compose")
            await prechat.wait_for(state="visible", timeout=5_000)
            assert not await compose.is_visible()
            assert await prechat.locator("label").all_inner_texts() == [
                "What can we help you with? *",
                "Language",
                ORDER_LABEL,
            ]
            assert await widget.locator("img").count() == 0
            await prechat.locator("button.prechat-submit").click()
            await prechat.locator(
                ".prechat-error", has_text="Please answer: What can we help you with?"
            ).wait_for(timeout=5_000)
            assert await prechat.locator("select[name=topic]").get_attribute("aria-invalid")
            await prechat.locator("select[name=topic]").select_option("billing")
            await prechat.locator("select[name=language]").select_option("fr")
            await prechat.locator("input[name=order]").fill("  A-1234 ")
            await prechat.locator("button.prechat-submit").click()
            await compose.wait_for(state="visible", timeout=5_000)
            assert not await prechat.is_visible()

            await compose.locator("input").fill(HOSTILE)
            await widget.locator("button.send").click()
            await widget.locator(".msg.visitor").wait_for(timeout=5_000)

            conversation_id = await wait_until(
                lambda: api.pool.fetchval(
                    "SELECT conversation_id FROM conversations WHERE owner_agent_id = 'ann'"
                ),
                what="the visitor's conversation assigned to ann",
            )
            customer = await api.pool.fetchval(
                "SELECT customer_id FROM conversations WHERE conversation_id = $1",
                conversation_id,
            )
            assert customer == "user:shopper-7"  # the login from the site's backend
            record = json.loads(
                await api.pool.fetchval(
                    "SELECT record FROM conversations WHERE conversation_id = $1",
                    conversation_id,
                )
            )
            assert (record["queue"], record["priority"], record["skills"]) == (
                "billing",
                5,
                ["billing"],
            )
            assert (record["language"], record["attributes"]) == ("fr", ANSWERS)
            await _reply(api, conversation_id, "It ships tomorrow.")
            await widget.locator(".msg.agent", has_text="It ships tomorrow.").wait_for(
                timeout=10_000
            )
            stored: dict[str, Any] = await page.evaluate(
                "JSON.parse(localStorage.getItem('switchboard.webchat.acme'))"
            )

            # Away from the page, another reply: kept for the session, delivered on connect.
            await page.goto("about:blank")
            await _reply(api, conversation_id, "Tracking number follows.")
            await page.goto(site)
            await connected()
            await widget.locator(".msg.agent", has_text="Tracking number follows.").wait_for(
                timeout=10_000
            )
            texts = await widget.locator(".msg").all_inner_texts()
            assert texts == [HOSTILE, "It ships tomorrow.", "Tracking number follows."]
            await page.reload()
            await connected()
            assert await widget.locator(".msg").all_inner_texts() == texts
            assert await compose.is_visible()
            assert not await prechat.is_visible()  # answered once for the session
            resumed = await page.evaluate(
                "JSON.parse(localStorage.getItem('switchboard.webchat.acme'))"
            )
            assert resumed["session_id"] == stored["session_id"]
            assert resumed["user_id"] == "shopper-7"
            assert resumed["prechat"] == ANSWERS

            # Text stays text: nothing the visitor typed became markup.
            assert await widget.locator("img").count() == 0
            assert await page.title() == "Shop"
            assert browsed.errors == []
            status, view = await api.call(
                "GET", f"/v1/domains/acme/conversations/{conversation_id}", "ann"
            )
            assert status == 200
            assert ("message", HOSTILE) in [(e["kind"], e.get("text")) for e in view["timeline"]]


async def test_a_form_changed_during_the_chat_is_asked_again_and_the_message_still_goes(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """The page answered an older form; the service refuses the answers to the new one.
    The widget loads the form again, asks what no longer fits, then sends the message."""
    site_port = free_port()
    webchat: dict[str, Any] = {
        "enabled": True,
        "identity_secret_env": "WIDGET_IDENTITY",
        "allowed_origins": [f"http://127.0.0.1:{site_port}"],
        "prechat": [PRECHAT[2]],  # only the optional order number
    }
    routing = {"queues": {"default": {}, "billing": {}}}
    async with (
        api_service(
            infrastructure.bootstrap_servers,
            database_url,
            {"domains": {"acme": {"webchat": webchat, "routing": routing}}},
            {"WIDGET_IDENTITY": IDENTITY},
        ) as api,
        customer_site(api.service.base_url, site_port) as site,
    ):
        await api.register("ann")
        async with chromium_page("widget-prechat-changed") as browsed:
            page = browsed.page
            widget = page.locator("#switchboard-webchat")
            prechat = widget.locator("form.prechat")
            compose = widget.locator("form.compose")
            await page.goto(site)
            await prechat.wait_for(state="visible", timeout=15_000)
            await prechat.locator("button.prechat-submit").click()  # nothing to answer
            await compose.locator("input").fill("first")
            await widget.locator("button.send").click()
            conversation_id = await wait_until(
                lambda: api.pool.fetchval(
                    "SELECT conversation_id FROM conversations WHERE owner_agent_id = 'ann'"
                ),
                what="the visitor's conversation assigned to ann",
            )

            changed = {"routing": routing, "webchat": {**webchat, "prechat": PRECHAT[:1]}}
            status, body = await api.call(
                "PUT", "/v1/domains/acme/config", json=changed, headers={"If-Match": "*"}
            )
            assert status == 200, body

            async def topic_required() -> bool:
                url = api.service.url("/v1/domains/acme/webchat/prechat")
                async with api.service.session.get(url) as response:
                    return [f["name"] for f in (await response.json())["fields"]] == ["topic"]

            await wait_until(topic_required, what="the adapters serving the new form")
            await compose.locator("input").fill("second")
            await widget.locator("button.send").click()
            await prechat.wait_for(state="visible", timeout=10_000)
            await prechat.locator("select[name=topic]").select_option("delivery")
            await prechat.locator("button.prechat-submit").click()
            await compose.wait_for(state="visible", timeout=5_000)

            async def second_routed() -> bool:
                count = await api.pool.fetchval(
                    "SELECT (switchboard_conversation_record(c)->>'message_count')::int"
                    " FROM conversations c"
                    " WHERE conversation_id = $1",
                    conversation_id,
                )
                return bool(count == 2)

            await wait_until(second_routed, what="the second message in the conversation")
            stored = await page.evaluate(
                "JSON.parse(localStorage.getItem('switchboard.webchat.acme'))"
            )
            assert stored["prechat"] == {"topic": "delivery"}
            assert [e["status"] for e in stored["history"]] == ["sent", "sent"]
            assert browsed.errors == []
