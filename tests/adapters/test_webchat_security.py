"""Web chat security on the real service (broker and PostgreSQL), sectioned by rule:

1. A session's token posts and opens the socket of that session only, in its domain, until
   it expires, unchanged; it can be refreshed while valid.
2. Sites not listed in ``allowed_origins`` get no CORS header and no socket.
3. A signed login publishes its link commands on ``agents.events`` and makes the session
   its user's; a bad one is refused and publishes nothing.
4. The widget script is served cacheable, typed and ``nosniff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from adapters.webchat import SOCKET_PROTOCOL
from adapters.webchat_tokens import LoginIn, SessionClaims, issue_token, session_key, sign_login
from schemas import AGENT_EVENT_DECODER, INBOUND_DECODER, CustomerLinkRequested, MessageReceived
from tests.conftest import Infrastructure
from tests.support import (
    Service,
    TopicReader,
    WebchatSession,
    make_config,
    open_webchat_session,
    running_service,
)

pytestmark = pytest.mark.integration

SHOP = "https://shop.example.com"
EVIL = "https://evil.example"
SECRETS = {"WEBCHAT_SESSION": "webchat-session-secret", "WEBCHAT_IDENTITY": "identity-secret"}
DOMAINS = {
    "domains": {
        "acme": {
            "webchat": {
                "enabled": True,
                "session_secret_env": "WEBCHAT_SESSION",
                "identity_secret_env": "WEBCHAT_IDENTITY",
                "allowed_origins": [SHOP],
            }
        },
        "globex": {"webchat": {"enabled": True, "session_secret_env": "WEBCHAT_SESSION"}},
    }
}
ACCESS_CONTROL = "Access-Control-"


@pytest.fixture
async def service(infrastructure: Infrastructure, database_url: str) -> AsyncIterator[Service]:
    config = make_config(infrastructure.bootstrap_servers, database_url, DOMAINS)
    async with running_service(config, SECRETS) as running:
        yield running


async def post(
    service: Service, path: str, body: Any = None, **headers: str
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with service.session.post(service.url(path), json=body, headers=headers) as r:
        answer = await r.json() if r.content_type == "application/json" else None
        return r.status, answer, r.headers


def message(session_id: str | None = None, message_id: str = "m1") -> dict[str, str]:
    body = {"message_id": message_id, "text": "hello"}
    return body if session_id is None else {**body, "session_id": session_id}


async def socket_status(service: Service, path: str, **kwargs: Any) -> int:
    """101 when the socket opened (and is closed again), else the refusal's status."""
    try:
        async with service.session.ws_connect(service.url(path), **kwargs) as ws:
            assert ws.protocol == (SOCKET_PROTOCOL if "protocols" in kwargs else None)
            return 101
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status


def socket_path(session: WebchatSession) -> str:
    return f"/v1/domains/{session.domain}/webchat/sessions/{session.session_id}/socket"


# -- 1. a token is its session's, in its domain, until it expires ------------------------------


async def test_a_token_posts_and_listens_for_its_own_session_only(service: Service) -> None:
    ann = await service.visitor("ann")
    bob = await service.visitor("bob")
    other = await service.visitor("gus", "globex")
    messages = "/v1/domains/acme/webchat/messages"

    assert (await post(service, messages, message(), **ann.auth))[0] == 202
    assert (await post(service, messages, message(ann.session_id, "m2"), **ann.auth))[0] == 202
    status, answer, _ = await post(service, messages, message(bob.session_id), **ann.auth)
    assert (status, answer["error"]) == (403, "the session token is for another session")

    expired = issue_token(
        session_key(SECRETS["WEBCHAT_SESSION"], "acme"),
        SessionClaims(domain="acme", session_id=ann.session_id, expires_at=int(time.time()) - 1),
    )
    tampered = ann.token[:-2] + ("AA" if not ann.token.endswith("AA") else "BB")
    for auth, reason in (
        ({}, "Authorization: Bearer"),
        ({"Authorization": f"Basic {ann.token}"}, "Bearer"),
        ({"Authorization": f"Bearer {tampered}"}, "invalid session token"),
        ({"Authorization": f"Bearer {expired}"}, "session token expired"),
        (other.auth, "invalid session token"),
    ):
        status, answer, headers = await post(service, messages, message(), **auth)
        assert (status, reason in answer["error"]) == (401, True), (auth, answer)
        assert headers["WWW-Authenticate"].startswith("Bearer")
        for token in (ann.token, tampered, expired, other.token):
            assert token not in answer["error"]
    status, _, _ = await post(service, "/v1/domains/globex/webchat/messages", message(), **ann.auth)
    assert status == 401

    # The socket: the token as a subprotocol or a query parameter, for its session only.
    mine = socket_path(ann)
    assert (
        await socket_status(service, mine, protocols=(SOCKET_PROTOCOL, f"bearer.{ann.token}"))
        == 101
    )
    assert await socket_status(service, mine, params={"token": ann.token}) == 101
    assert await socket_status(service, socket_path(bob), params={"token": ann.token}) == 403
    assert await socket_status(service, mine) == 401
    assert await socket_status(service, mine, params={"token": tampered}) == 401
    assert await socket_status(service, mine, params={"token": expired}) == 401
    assert await socket_status(service, socket_path(other), params={"token": ann.token}) == 401
    # a plain GET with the right token: a 400 in JSON, as every refusal is
    async with service.session.get(service.url(mine), params={"token": ann.token}) as plain:
        assert plain.status == 400
        assert await plain.json() == {
            "error": "expected a WebSocket handshake (Upgrade: websocket)"
        }
    # Offered protocols must include ours (else aiohttp would log the offered token).
    assert await socket_status(service, mine, protocols=(f"bearer.{ann.token}",)) == 400

    # Refreshing: a valid token of the session gets a new one; nothing else does.
    refresh = f"/v1/domains/acme/webchat/sessions/{ann.session_id}/token"
    await asyncio.sleep(1.1)  # expiries are whole seconds
    status, renewed, headers = await post(service, refresh, **ann.auth)
    assert status == 200, renewed
    assert renewed["session_id"] == ann.session_id
    assert renewed["token"] != ann.token
    assert renewed["expires_at"] > ann.expires_at
    assert headers["Cache-Control"] == "no-store"
    fresh = {"Authorization": f"Bearer {renewed['token']}"}
    assert (await post(service, messages, message(message_id="m3"), **fresh))[0] == 202
    assert (await post(service, refresh, **bob.auth))[0] == 403
    assert (await post(service, refresh, **{"Authorization": f"Bearer {expired}"}))[0] == 401
    assert (await post(service, refresh))[0] == 401


async def test_sessions_get_random_ids_and_unknown_domains_none(service: Service) -> None:
    first = await open_webchat_session(service.session, service.base_url)
    second = await open_webchat_session(service.session, service.base_url)
    assert first.session_id != second.session_id
    assert first.expires_at - time.time() == pytest.approx(86_400, abs=5)
    status, _, _ = await post(service, "/v1/domains/nowhere/webchat/sessions", {})
    assert status == 404
    status, answer, _ = await post(service, "/v1/domains/acme/webchat/sessions", {"x": 1})
    assert status == 400, answer
    # Input limits: the body, and each login field.
    huge = {"login": {**_login("7"), "note": "x" * 9000}}
    assert (await post(service, "/v1/domains/acme/webchat/sessions", huge))[0] == 413
    for field, value in (("user_id", "u" * 321), ("email", "e" * 321), ("phone", "1" * 33)):
        long = {"login": {**_login("7"), field: value}}
        status, answer, _ = await post(service, "/v1/domains/acme/webchat/sessions", long)
        assert (status, field in answer["error"]) == (400, True), answer
    status, answer, _ = await post(
        service, "/v1/domains/globex/webchat/sessions", {"login": _login("7")}
    )
    assert (status, answer["error"]) == (
        400,
        "login is not accepted: identity verification is not configured",
    )


# -- 2. CORS and the socket's Origin ------------------------------------------------------------


async def test_listed_origins_get_cors_headers_and_others_none(service: Service) -> None:
    http = service.session
    sessions = service.url("/v1/domains/acme/webchat/sessions")
    preflight = {"Access-Control-Request-Method": "POST"}
    async with http.options(sessions, headers={**preflight, "Origin": SHOP}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == SHOP
        assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
        assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        assert r.headers["Access-Control-Max-Age"] == "600"
        assert r.headers["Vary"] == "Origin"
        assert "Access-Control-Allow-Credentials" not in r.headers
    for headers in ({**preflight, "Origin": EVIL}, preflight, {"Origin": "null"}):
        async with http.options(sessions, headers=headers) as r:
            assert r.status == 403
            assert not [h for h in r.headers if h.startswith(ACCESS_CONTROL)]
    async with http.options(
        service.url("/v1/domains/globex/webchat/messages"), headers={"Origin": SHOP}
    ) as r:
        assert r.status == 403  # globex lists no origin

    # Actual answers: the listed origin is named, on success and on refusal alike.
    async with http.post(sessions, json={}, headers={"Origin": SHOP}) as r:
        assert r.status == 201
        assert r.headers["Access-Control-Allow-Origin"] == SHOP
        assert r.headers["Vary"] == "Origin"
        session = await r.json()
    async with http.post(sessions, json={}, headers={"Origin": EVIL}) as r:
        assert r.status == 201  # the token is the authorization; the browser hides the answer
        assert not [h for h in r.headers if h.startswith(ACCESS_CONTROL)]
    messages = service.url("/v1/domains/acme/webchat/messages")
    async with http.post(messages, json=message(), headers={"Origin": SHOP}) as r:
        assert r.status == 401
        assert r.headers["Access-Control-Allow-Origin"] == SHOP
    bearer = {"Authorization": f"Bearer {session['token']}"}
    async with http.post(messages, json=message(), headers={**bearer, "Origin": SHOP}) as r:
        assert r.status == 202
        assert r.headers["Access-Control-Allow-Origin"] == SHOP

    # The socket: a browser from another site is refused, the listed one and non-browser
    # clients (no Origin) are not.
    path = f"/v1/domains/acme/webchat/sessions/{session['session_id']}/socket"
    token = {"params": {"token": session["token"]}}
    assert await socket_status(service, path, headers={"Origin": EVIL}, **token) == 403
    assert await socket_status(service, path, headers={"Origin": SHOP}, **token) == 101
    assert await socket_status(service, path, **token) == 101


# -- 3. signed logins ---------------------------------------------------------------------------


def _login(user_id: str, **fields: Any) -> dict[str, Any]:
    unsigned = {"user_id": user_id, "expires_at": int(time.time()) + 300, "signature": ""}
    unsigned |= fields
    signature = sign_login(SECRETS["WEBCHAT_IDENTITY"], "acme", msgspec.convert(unsigned, LoginIn))
    return {**unsigned, "signature": signature}


async def test_a_signed_login_links_its_identities_and_the_messages_carry_its_user(
    service: Service,
) -> None:
    async with (
        TopicReader(service.config, "agents.events") as agents,
        TopicReader(service.config, "conversations.inbound") as inbound,
    ):
        login = _login("42", email="Ann@Example.COM", phone="+1 415-555-0100")
        status, session, _ = await post(
            service, "/v1/domains/acme/webchat/sessions", {"login": login}
        )
        assert status == 201, session
        records = await agents.wait_for(lambda rs: len(rs) >= 2)
        links = [AGENT_EVENT_DECODER.decode(r.value) for r in records]
        assert all(isinstance(link, CustomerLinkRequested) for link in links)
        assert sorted((link.customer_id, link.identity, link.source) for link in links) == [
            ("user:42", "email:ann@example.com", "webchat_login"),
            ("user:42", "phone:+14155550100", "webchat_login"),
        ]
        assert {r.key for r in records} == {b"acme"}

        bearer = {"Authorization": f"Bearer {session['token']}"}
        status, answer, _ = await post(
            service, "/v1/domains/acme/webchat/messages", message(), **bearer
        )
        assert status == 202, answer
        [record] = await inbound.wait_for(lambda rs: len(rs) >= 1)
        event = INBOUND_DECODER.decode(record.value)
        assert isinstance(event, MessageReceived)
        assert (event.customer_id, event.customer_address) == ("user:42", session["session_id"])

        # Refused logins publish nothing.
        for bad, expected in (
            ({**login, "signature": "0" * 64}, 403),
            ({**login, "email": "ann@example.org"}, 403),
            (_login("43", expires_at=int(time.time()) - 1), 401),
            (_login("43", expires_at=int(time.time()) + 7200), 400),
            (_login("43", email="no-at-sign"), 400),
            (_login("43", phone="12"), 400),
            ({**login, "extra": 1}, 400),
        ):
            status, answer, _ = await post(
                service, "/v1/domains/acme/webchat/sessions", {"login": bad}
            )
            assert status == expected, (bad, answer)
            assert login["signature"] not in answer["error"]
        await asyncio.sleep(1)
        assert len(await agents.poll()) == 2


# -- 4. the widget ------------------------------------------------------------------------------


async def test_the_widget_script_is_served_cacheable_and_typed(service: Service) -> None:
    url = service.url("/v1/domains/acme/webchat/widget.js")
    async with service.session.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "public, max-age=3600"
        etag = r.headers["ETag"]
        script = await r.text()
    assert "switchboard.webchat.v1" in script
    assert "innerHTML" not in script
    async with service.session.get(url, headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with service.session.get(service.url("/v1/domains/nowhere/webchat/widget.js")) as r:
        assert r.status == 404


async def test_a_stopping_service_closes_open_sockets_at_once(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """A visitor's open socket is a request handler aiohttp waits for before its cleanups:
    the hub tells it to go (1001) when the shutdown starts, so stopping takes seconds,
    not the handlers' grace of about a minute (past a pod's 30 s before SIGKILL)."""
    config = make_config(infrastructure.bootstrap_servers, database_url, DOMAINS)
    async with contextlib.AsyncExitStack() as stack:
        service = await stack.enter_async_context(running_service(config, SECRETS))
        status, session, _ = await post(service, "/v1/domains/acme/webchat/sessions", {})
        assert status == 201, session
        path = f"/v1/domains/acme/webchat/sessions/{session['session_id']}/socket"
        async with aiohttp.ClientSession() as visitor:
            ws = await visitor.ws_connect(service.url(path), params={"token": session["token"]})
            started = time.monotonic()
            await stack.aclose()  # the service stops, the visitor still connected
            stopped = time.monotonic() - started
            frame = await ws.receive(timeout=5)
            await ws.close()
    assert stopped < 20, stopped
    assert (frame.type, frame.data) == (aiohttp.WSMsgType.CLOSE, 1001)
