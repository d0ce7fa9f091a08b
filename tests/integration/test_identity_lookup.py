"""The identity lookup through the running service, with a CRM on 127.0.0.1:

(a) a customer the CRM knows is published with its profile, asked once (then cached), and
    the router links the identity to it: the assignment carries the profile's id, and the
    person's agent follows them from SMS to email and web chat;
(b) a CRM that is slow, fails, answers garbage or is not listening delays the webhook by at
    most its timeout, and the message goes on without a hint;
(c) a lookup added through the configuration API reaches an adapters process of its own
    without a restart, after the API refused invalid ones naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.base import hmac_hex
from schemas import INBOUND_DECODER, MessageReceived
from schemas.topics import INBOUND, ROUTING
from switchboard.app import Role
from switchboard.config import Config
from switchboard.embedded import free_port
from tests.adapters.conftest import ENVIRON
from tests.adapters.test_email import mailgun_post
from tests.adapters.test_twilio import inbound_sms, sign
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import (
    RouterProcess,
    TopicReader,
    make_config,
    make_raw_config,
    running_service,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PUBLIC_URL = "https://switchboard.example.com"
LOOKUP_SECRET = "crm-lookup-secret-for-tests"
SECRETS = {
    "TWILIO_AUTH_TOKEN": ENVIRON["TWILIO_AUTH_TOKEN"],
    "MAILGUN_SIGNING_KEY": ENVIRON["MAILGUN_SIGNING_KEY"],
    "CRM_LOOKUP_SECRET": LOOKUP_SECRET,
}
PHONE = "+14155552671"
PROFILE = "external:crm-42"
TIMEOUT = 0.3
MARGIN = 0.5
"""What a webhook may take beyond the lookup's timeout: verify, publish, answer."""
SLOW = 2.0


@dataclass
class Crm:
    """The platform's CRM: verifies each request's signature as the README says, answers
    ``known`` identities with their profile and others with 404, and misbehaves for the
    identities in ``broken`` (``slow``, ``500``, ``garbage``)."""

    known: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        expected = "sha256=" + hmac.new(LOOKUP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Switchboard-Signature", ""), expected):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        body = json.loads(raw)
        self.requests.append(body)
        identity = body["identity"]
        match self.broken.get(identity):
            case "slow":
                await asyncio.sleep(SLOW)
            case "500":
                return web.json_response({"error": "database down"}, status=500)
            case "garbage":
                return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if identity in self.known:
            return web.json_response({"customer_id": self.known[identity]})
        return web.json_response({"customer_id": None}, status=404)

    def asked(self, identity: str) -> int:
        return sum(1 for body in self.requests if body["identity"] == identity)


@contextlib.asynccontextmanager
async def running_crm(**known: str) -> AsyncIterator[Crm]:
    crm = Crm(known=dict(known))
    app = web.Application()
    app.router.add_post("/identify", crm.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    crm.url = str(server.make_url("/identify"))
    try:
        yield crm
    finally:
        await server.close()


def lookup_section(url: str, **overrides: Any) -> dict[str, Any]:
    return {"url": url, "secret_env": "CRM_LOOKUP_SECRET", **overrides}


async def post_sms(
    session: aiohttp.ClientSession,
    base: str,
    sender: str,
    *,
    to: str = "+14155550100",
    public_url: str = PUBLIC_URL,
) -> tuple[str, float]:
    """A signed Twilio SMS from ``sender``: its MessageSid and how long the webhook took."""
    sid = f"SM{uuid.uuid4().hex}"
    params = inbound_sms(MessageSid=sid, From=sender, To=to, Body="where is my order?")
    started = time.monotonic()
    async with session.post(
        f"{base}/webhooks/twilio/sms",
        data=params,
        headers=sign(params, public_url + "/webhooks/twilio/sms"),
    ) as response:
        assert response.status == 200, await response.text()
    return sid, time.monotonic() - started


async def post_email(session: aiohttp.ClientSession, base: str) -> None:
    """A signed Mailgun email from ann@example.org starting a new thread."""
    stamp, token = str(int(time.time())), uuid.uuid4().hex + uuid.uuid4().hex[:18]
    fields = mailgun_post(
        timestamp=stamp,
        token=token,
        signature=hmac_hex(SECRETS["MAILGUN_SIGNING_KEY"], (stamp + token).encode()),
    )
    fields["Message-Id"] = f"<{uuid.uuid4().hex}@mail.example.org>"
    fields.pop("In-Reply-To")
    fields.pop("References")
    async with session.post(f"{base}/webhooks/email/mailgun", data=fields) as response:
        assert response.status == 200, await response.text()


async def published(reader: TopicReader, provider_message_id: str) -> MessageReceived:
    """The customer message with that provider id (or, for an email, whose customer is
    that identity), read back from conversations.inbound."""

    async def found() -> MessageReceived | None:
        for record in await reader.poll():
            event = INBOUND_DECODER.decode(record.value)
            if isinstance(event, MessageReceived) and provider_message_id in (
                event.provider_message_id,
                event.customer_id,
            ):
                return event
        return None

    message: MessageReceived = await wait_until(found, timeout=15, what="the published message")
    return message


def lookups_counted(metrics: Any, domain: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "switchboard_identity_lookups_total", {"domain": domain, "outcome": outcome}
    )
    return float(value or 0.0)


# -- (a) a known customer ---------------------------------------------------------------------


async def test_a_known_customer_is_published_with_its_profile_and_asked_once(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with running_crm(**{f"sms:{PHONE}": PROFILE, "email:ann@example.org": PROFILE}) as crm:
        overrides = {
            "http": {"public_url": PUBLIC_URL},
            "channels": {
                "twilio": {"numbers": [{"number": "+14155550100", "domain": "acme"}]},
                "email": {"addresses": [{"address": "support@acme.example", "domain": "acme"}]},
            },
            "domains": {
                "acme": {"webchat": {"enabled": True}, "identity_lookup": lookup_section(crm.url)},
                "globex": {"webchat": {"enabled": True}},
            },
        }
        async with (
            api_service(infrastructure.bootstrap_servers, database_url, overrides, SECRETS) as api,
            TopicReader(api.service.config, INBOUND) as inbound,
            TopicReader(api.service.config, ROUTING) as routing,
        ):
            await _known_customer(api, crm, inbound, routing)


async def _known_customer(api: Api, crm: Crm, inbound: TopicReader, routing: TopicReader) -> None:
    service = api.service
    await api.register("bob", capacity={"sms": 2, "email": 5, "webchat": 2})
    sid, _ = await post_sms(service.session, service.base_url, PHONE)
    first = await published(inbound, sid)
    assert (first.customer_id, first.known_customer_id) == (f"sms:{PHONE}", PROFILE)

    # the router linked the identity to the profile before routing
    assigned = await routing.assignment(first.id)
    assert (assigned.agent_id, assigned.customer_id) == ("bob", PROFILE)
    rows = await api.pool.fetch(
        "SELECT identity, customer_id, source FROM customer_identities WHERE domain = 'acme'"
    )
    assert [tuple(row) for row in rows] == [(f"sms:{PHONE}", PROFILE, "lookup")]

    # the same sender again: the answer comes from the cache
    sid, _ = await post_sms(service.session, service.base_url, PHONE)
    assert (await published(inbound, sid)).known_customer_id == PROFILE
    assert crm.asked(f"sms:{PHONE}") == 1
    assert crm.bad_signatures == 0
    metrics = service.metrics
    assert [lookups_counted(metrics, "acme", o) for o in ("hit", "cached")] == [1, 1]

    # the person writes by email: the CRM knows that address too, and their agent follows
    status, body = await api.call(
        "POST", f"/v1/domains/acme/conversations/{first.id}/close", json={}
    )
    assert status == 202, body
    await api.register("ann", capacity={"sms": 2, "email": 5, "webchat": 2})  # less busy
    await post_email(service.session, service.base_url)
    mail = await published(inbound, "email:ann@example.org")
    assert (mail.customer_id, mail.known_customer_id) == ("email:ann@example.org", PROFILE)
    assigned = await routing.assignment(mail.id)
    assert (assigned.agent_id, str(assigned.strategy), assigned.customer_id) == (
        "bob",
        "preferred",
        PROFILE,
    )

    # and on the web chat, whose visitor the CRM knows too
    visitor = await service.visitor("ann-browser")
    crm.known[visitor.customer_id] = PROFILE
    status, answer = await service.webchat(
        {"session_id": "ann-browser", "message_id": "w1", "text": "still nothing"}
    )
    assert status == 202, answer
    chat = await published(inbound, visitor.customer_id)
    assert (chat.id, chat.known_customer_id) == (answer["event_id"], PROFILE)
    assigned = await routing.assignment(chat.id)
    assert (assigned.agent_id, str(assigned.strategy), assigned.customer_id) == (
        "bob",
        "preferred",
        PROFILE,
    )
    assert crm.bad_signatures == 0
    assert lookups_counted(service.metrics, "acme", "hit") == 3


# -- (b) a failing CRM fails open --------------------------------------------------------------


async def test_a_failing_crm_neither_fails_nor_holds_the_webhook(
    infrastructure: Infrastructure, database_url: str
) -> None:
    phones = {"slow": "+14155550001", "500": "+14155550002", "garbage": "+14155550003"}
    async with running_crm(**{f"sms:{PHONE}": PROFILE}) as crm:
        crm.broken = {f"sms:{phone}": mode for mode, phone in phones.items()}
        nobody = f"http://127.0.0.1:{free_port()}/identify"
        config = make_config(
            infrastructure.bootstrap_servers,
            database_url,
            {
                "http": {"public_url": PUBLIC_URL},
                "channels": {
                    "twilio": {
                        "numbers": [
                            {"number": "+14155550100", "domain": "acme"},
                            {"number": "+14155550199", "domain": "globex"},
                        ]
                    }
                },
                "domains": {
                    "acme": {"identity_lookup": lookup_section(crm.url, timeout_seconds=TIMEOUT)},
                    "globex": {"identity_lookup": lookup_section(nobody, timeout_seconds=TIMEOUT)},
                },
            },
        )
        async with (
            running_service(config, SECRETS) as service,
            TopicReader(config, INBOUND) as inbound,
        ):
            session, base = service.session, service.base_url
            sid, _ = await post_sms(session, base, PHONE)  # the CRM works: warms up the path
            assert (await published(inbound, sid)).known_customer_id == PROFILE
            took: dict[str, float] = {}
            for mode, phone in phones.items():
                sid, took[mode] = await post_sms(session, base, phone)
                assert (await published(inbound, sid)).known_customer_id is None, mode
            sid, took["not listening"] = await post_sms(session, base, PHONE, to="+14155550199")
            assert (await published(inbound, sid)).known_customer_id is None
            print("webhook answered after", {mode: round(s, 3) for mode, s in took.items()})
            assert max(took.values()) < TIMEOUT + MARGIN, took
            assert took["slow"] >= TIMEOUT  # it did wait for the CRM, up to the timeout
            assert crm.asked(f"sms:{phones['slow']}") == 1
            metrics = service.metrics
            assert lookups_counted(metrics, "acme", "timeout") == 1
            assert lookups_counted(metrics, "acme", "error") == 2
            assert lookups_counted(metrics, "globex", "error") == 1


# -- (c) added through the configuration API ---------------------------------------------------


async def test_a_lookup_added_through_the_api_reaches_a_running_adapters_process(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    raw = make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "api": {"auth": "disabled"},
            "channels": {"twilio": {"numbers": [{"number": "+14155550100", "domain": "acme"}]}},
        },
    )
    adapters = RouterProcess(raw, tmp_path, "adapters", role="adapters", environ=SECRETS)
    config = msgspec.convert(raw, type=Config)
    async with (
        running_crm(**{f"sms:{PHONE}": PROFILE}) as crm,
        running_service(config, SECRETS, roles=frozenset({Role.ROUTER})) as router,
        TopicReader(config, INBOUND) as inbound,
    ):
        adapters.start()
        try:
            await adapters.wait_ready()
            await _added_through_the_api(router, f"http://127.0.0.1:{adapters.port}", crm, inbound)
        finally:
            adapters.terminate()


async def _added_through_the_api(
    router: Any, adapters: str, crm: Crm, inbound: TopicReader
) -> None:
    session: aiohttp.ClientSession = router.session
    sid, _ = await post_sms(session, adapters, PHONE, public_url=adapters)
    assert (await published(inbound, sid)).known_customer_id is None
    assert crm.requests == []

    path = router.url("/v1/domains/acme/config")
    async with session.get(path) as response:
        assert response.status == 200
        tag, domain = response.headers["ETag"], await response.json()
    for section, field_name in (
        ({"url": "ftp://crm.example/identify"}, "identity_lookup"),
        ({"url": crm.url, "timeout_seconds": 9}, "identity_lookup.timeout_seconds"),
        ({"url": crm.url, "cache_size": 0}, "identity_lookup.cache_size"),
    ):
        async with session.put(
            path, json={**domain, "identity_lookup": section}, headers={"If-Match": tag}
        ) as response:
            answer = await response.json()
            assert response.status == 400, answer
            assert f"$.{field_name}`" in answer["error"], answer

    async with session.put(
        path,
        json={**domain, "identity_lookup": lookup_section(crm.url)},
        headers={"If-Match": tag},
    ) as response:
        answer = await response.json()
        assert response.status == 200, answer
        version = answer["version"]
    changed_at = time.monotonic()

    async def adapters_at_version() -> bool:
        async with session.get(f"{adapters}/metrics") as response:
            text = await response.text()
        return f"switchboard_config_version {float(version)}" in text

    await wait_until(adapters_at_version, timeout=5, what="adapters at the new version")
    print(f"adapters at the version with the lookup after {time.monotonic() - changed_at:.3f} s")
    sid, _ = await post_sms(session, adapters, PHONE, public_url=adapters)
    assert (await published(inbound, sid)).known_customer_id == PROFILE
    assert (crm.asked(f"sms:{PHONE}"), crm.bad_signatures) == (1, 0)
