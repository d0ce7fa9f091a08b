"""``runtime.callbacks``: the addresses bot webhooks and identity lookups may connect to,
checked at each connection against the address it is made to."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from runtime.callbacks import AllowedAddresses, callback_session, literal_address, parse_networks
from runtime.config import CallbacksConfig
from tests.logcapture import captured_logs, lines_of

CASES = [
    # address, allowed by default, allowed by ["public"], by ["public", "10.20.0.0/16"]
    ("93.184.215.14", True, True, True),
    ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True, True, True),
    ("10.20.1.2", True, False, True),
    ("10.30.1.2", True, False, False),
    ("172.16.0.1", True, False, False),
    ("192.168.1.1", True, False, False),
    ("fd12:3456::1", True, False, False),
    ("127.0.0.1", True, False, False),
    ("::1", True, False, False),
    ("169.254.169.254", False, False, False),  # the cloud's instance metadata
    ("::ffff:169.254.169.254", False, False, False),
    ("::ffff:127.0.0.1", True, False, False),
    ("fe80::1", False, False, False),
    ("0.0.0.0", False, False, False),  # noqa: S104 - an address checked, not bound
    ("224.0.0.1", False, False, False),
    ("100.64.0.1", False, False, False),  # shared address space: a network to name
    ("64:ff9b::a9fe:a9fe", False, False, False),  # NAT64 of 169.254.169.254
    ("2002:a14:102::1", True, False, True),  # 6to4 of 10.20.1.2
]


@pytest.mark.parametrize(("address", "default", "public", "named"), CASES)
def test_the_names_and_networks_admit_what_they_say(
    address: str, default: bool, public: bool, named: bool
) -> None:
    ip = ipaddress.ip_address(address)
    assert AllowedAddresses().allows(ip) is default
    assert AllowedAddresses(["public"]).allows(ip) is public
    assert AllowedAddresses(["public", "10.20.0.0/16"]).allows(ip) is named


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("[::1]", None), ("example.com", None)],
)
def test_legacy_ipv4_forms_are_addresses_too(host: str, address: str | None) -> None:
    """``getaddrinfo`` takes them as addresses: a check that saw a name would miss them."""
    assert literal_address(host) == address


def test_only_a_network_in_cidr_notation_admits_link_local_addresses() -> None:
    assert AllowedAddresses(["169.254.0.0/16"]).allows(ipaddress.ip_address("169.254.169.254"))


@pytest.mark.parametrize("entry", ["everything", "10.0.0.0/33", "", "localhost"])
def test_an_entry_that_is_neither_a_name_nor_a_network_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="is not 'public', 'private', 'loopback' or a network"):
        parse_networks([entry])
    with pytest.raises(ValueError, match=r"\(callbacks.allowed_networks\)"):
        CallbacksConfig(allowed_networks=(entry,))


async def answering_server() -> TestServer:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(text="reached")

    app = web.Application()
    app.router.add_post("/hook", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_connection_to_an_address_not_allowed_is_never_made(host: str) -> None:
    """By an address in the URL or by a name that resolves to it, alike; allowed, the same
    call goes through."""
    server = await answering_server()
    url = f"http://{host}:{server.port}/hook"
    try:
        with captured_logs([]) as buffer:
            async with callback_session(
                AllowedAddresses(["public"]), connections=2, total_seconds=5, user_agent="t"
            ) as session:
                with pytest.raises(aiohttp.ClientConnectorError):
                    await session.post(url)
        [line] = [line for line in lines_of(buffer) if line["event"] == "callback_address_refused"]
        assert line["level"] == "warning"
        assert line["ip"] in ("127.0.0.1", "::1")
        async with (
            callback_session(
                AllowedAddresses(["loopback"]), connections=2, total_seconds=5, user_agent="t"
            ) as session,
            session.post(url) as reply,
        ):
            assert await reply.text() == "reached"
    finally:
        await server.close()


def test_the_refusals_of_one_address_are_logged_10_times_a_minute() -> None:
    allowed = AllowedAddresses(["public"])
    info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 80))
    with captured_logs([]) as buffer:
        for _ in range(25):
            with pytest.raises(OSError, match="not an address"):
                allowed.socket_for(info)
    lines = lines_of(buffer)
    assert [line["event"] for line in lines] == ["callback_address_refused"] * 10
    assert lines[0]["ip"] == "10.0.0.1"
