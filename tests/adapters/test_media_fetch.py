"""Attachments fetched to upload (Mailgun, SendGrid, X) come from public addresses only:
a host that is, or resolves to, a loopback, private, link-local, multicast, reserved or
unspecified address is refused before any connection, unless ``[channels]
media_fetch_allow_private`` says otherwise. Real servers on loopback play the media
server and the providers, and count every request they get."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from adapters import oauth1, x_dm
from adapters.config import ChannelsConfig
from adapters.egress import Egress, InMemorySentLedger, RetryPolicy, SendOutcome
from adapters.provider_api import (
    AddressRefused,
    PrepareFailed,
    PublicResolver,
    fetch_attachment,
    fetch_attachment_to,
)
from runtime.callbacks import public_address
from runtime.metrics import Metrics
from schemas import Attachment, Channel, ReplyRequested

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
OURS = "support@acme.example"
X_ACCOUNT = "2244994945"
ENVIRON = {
    "MAILGUN_API_KEY": "mailgun-api-key",
    "SENDGRID_API_KEY": "SG.sendgrid-api-key",
    "X_CONSUMER_KEY": "consumer-key",
    "X_CONSUMER_SECRET": "consumer-secret",
    "X_ACCESS_TOKEN": "access-token",
    "X_ACCESS_TOKEN_SECRET": "access-token-secret",
}


@dataclass
class Loopback:
    """A media server and provider stand-in on 127.0.0.1: ``/files/a.png``, redirects
    (``/hop/{n}`` → … → the file, ``/to/{scheme}`` elsewhere), anything else answered
    ``{"id": …}``; every request seen, in order."""

    port: int = 0
    seen: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    state = Loopback()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        state.seen.append(f"{request.method} {request.path}")
        return await handler(request)

    async def file(_request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def hop(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound("/files/a.png" if left == 0 else f"/hop/{left - 1}")

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{request.match_info['scheme']}://files.example/a.png")

    async def provider(_request: web.Request) -> web.Response:
        return web.json_response({"id": "<sent@acme.example>", "message": "Queued"})

    app = web.Application(middlewares=[record])
    app.router.add_get("/files/a.png", file)
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/to/{scheme}", elsewhere)
    app.router.add_route("*", "/{tail:.*}", provider)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.port = server.port or 0
    yield state
    await server.close()


# --- which addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "0.0.0.0",  # noqa: S104 (an address refused, not one bound to)
        "::",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "192.0.2.1",  # documentation
        "not an address",
    ],
)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not public_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert public_address(address)


async def test_the_resolver_refuses_a_name_of_a_loopback_address() -> None:
    resolver = PublicResolver()
    with pytest.raises(AddressRefused):
        await resolver.resolve("localhost", 80)
    await resolver.close()


# --- the fetcher ----------------------------------------------------------------------


REFUSED_HOSTS = [
    "127.0.0.1",
    "[::1]",
    "10.0.0.8",
    "169.254.169.254",
    "localhost",  # a name that resolves to loopback
    "2130706433",  # 127.0.0.1 as one number
    "0x7f.1",
    "[::ffff:127.0.0.1]",
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
async def test_an_internal_address_is_refused_before_connecting(
    loopback: Loopback, host: str
) -> None:
    url = loopback.url("/files/a.png?token=s3cr3t", host)
    with pytest.raises(PrepareFailed) as failed:
        await fetch_attachment(Attachment(url=url), 10**6, 2, allow_private=False)
    assert failed.value.reason == "attachment 2: address not allowed"
    assert failed.value.retryable is False
    assert loopback.seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_operator_can_allow_internal_addresses(loopback: Loopback, host: str) -> None:
    url = loopback.url("/files/a.png", host)
    assert await fetch_attachment(Attachment(url=url), 10**6, 1, allow_private=True) == PNG
    assert loopback.seen == ["GET /files/a.png"]


async def test_redirects_are_followed_a_few_times_each_checked(loopback: Loopback) -> None:
    url = loopback.url("/hop/2")
    assert await fetch_attachment(Attachment(url=url), 10**6, 1, allow_private=True) == PNG
    assert loopback.seen == ["GET /hop/2", "GET /hop/1", "GET /hop/0", "GET /files/a.png"]
    loopback.seen.clear()

    with pytest.raises(PrepareFailed) as failed:
        await fetch_attachment(Attachment(url=loopback.url("/hop/9")), 10**6, 1, allow_private=True)
    assert failed.value.reason == "attachment 1: more than 5 redirects"
    assert len(loopback.seen) == 6

    with pytest.raises(PrepareFailed) as failed:
        await fetch_attachment(
            Attachment(url=loopback.url("/to/ftp")), 10**6, 1, allow_private=True
        )
    assert failed.value.reason == "attachment 1: not an http(s) URL"


async def test_a_file_is_fetched_to_a_file_within_its_limit(loopback: Loopback) -> None:
    attachment = Attachment(url=loopback.url("/files/a.png"))
    with tempfile.TemporaryFile() as sink:
        assert await fetch_attachment_to(sink, attachment, len(PNG), 1, allow_private=True) == len(
            PNG
        )
        sink.seek(0)
        assert sink.read() == PNG
    with pytest.raises(PrepareFailed) as failed:
        await fetch_attachment(attachment, len(PNG) - 1, 1, allow_private=True)
    assert failed.value.reason == f"attachment 1: larger than the {len(PNG) - 1} bytes allowed"


# --- the providers that upload ----------------------------------------------------------


def channels(loopback: Loopback, *, allow_private: bool) -> ChannelsConfig:
    base = loopback.url("")
    return msgspec.convert(
        {
            "media_fetch_allow_private": allow_private,
            "email": {
                "mailgun": {"api_base_url": base},
                "sendgrid": {"api_base_url": base},
                "addresses": [
                    {"address": OURS, "domain": "acme"},
                    {"address": "help@acme.example", "domain": "acme", "provider": "sendgrid"},
                ],
            },
            "x": {"api_base_url": base, "accounts": [{"user_id": X_ACCOUNT, "domain": "acme"}]},
        },
        ChannelsConfig,
    )


def reply(channel: Channel, endpoint: str, customer: str, url: str) -> ReplyRequested:
    return ReplyRequested(
        id="out-0001",
        domain="acme",
        occurred_at=1_700_000_000.0,
        conversation_id="conv-1",
        agent_id="ann",
        channel=channel,
        endpoint=endpoint,
        customer_address=customer,
        subject="Your label",
        text="Here it is.",
        attachments=(Attachment(url=url, content_type="image/png"),),
    )


async def send(config: ChannelsConfig, message: ReplyRequested) -> Any:
    async with aiohttp.ClientSession() as session:
        egress = Egress(
            channels=config,
            environ=ENVIRON,
            session=session,
            metrics=Metrics(),
            ledger=InMemorySentLedger(),
            retry=RetryPolicy(max_attempts=2, base_delay=0.0, jitter=0.0),
        )
        return await egress.send(message)


PROVIDERS = [
    (Channel.EMAIL, OURS, "ann@example.org"),  # Mailgun
    (Channel.EMAIL, "help@acme.example", "ann@example.org"),  # SendGrid
    (Channel.X, X_ACCOUNT, "3001969357"),
]


@pytest.mark.parametrize(("channel", "endpoint", "customer"), PROVIDERS)
async def test_a_send_with_an_internal_attachment_fails_before_the_provider_is_called(
    loopback: Loopback, channel: Channel, endpoint: str, customer: str
) -> None:
    message = reply(channel, endpoint, customer, loopback.url("/files/a.png", "localhost"))
    result = await send(channels(loopback, allow_private=False), message)
    assert (result.outcome, result.error, result.attempts) == (
        SendOutcome.FAILED,
        "attachment 1: address not allowed",
        1,
    )
    assert loopback.seen == []


@pytest.mark.parametrize(("channel", "endpoint", "customer"), PROVIDERS[:2])
async def test_an_allowed_internal_attachment_is_fetched_and_sent(
    loopback: Loopback, channel: Channel, endpoint: str, customer: str
) -> None:
    message = reply(channel, endpoint, customer, loopback.url("/files/a.png"))
    result = await send(channels(loopback, allow_private=True), message)
    assert result.outcome is SendOutcome.SENT, result
    assert loopback.seen[0] == "GET /files/a.png"
    assert len(loopback.seen) == 2  # the file, then the provider's send call


async def test_x_s_upload_refuses_an_internal_attachment(loopback: Loopback) -> None:
    upload = x_dm.MediaUpload(
        base_url=loopback.url(""),
        credentials=oauth1.OAuthCredentials("ck", "cs", "t", "ts"),
        attachment=Attachment(url=loopback.url("/files/a.png")),
    )
    rule = x_dm.MEDIA_LIMITS.rule_for("image/png")
    assert rule is not None
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrepareFailed) as failed:
            await upload.run(session, rule)
    assert (failed.value.reason, failed.value.retryable) == (
        "attachment 1: address not allowed",
        False,
    )
    assert loopback.seen == []
