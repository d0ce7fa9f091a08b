"""Where the URLs a domain's admins set may lead: bot webhooks and identity lookups.

The service calls those URLs from inside the deployment's network, so a domain's admin
could otherwise make it call what only that network reaches: the cloud's instance
metadata (``169.254.169.254``), a database's HTTP port, another tenant's service.
``[callbacks] allowed_networks`` names the addresses such a call may connect to. Each
connection is checked when it is made, against the address it is made to: a name is
checked whatever it resolves to at that moment (a DNS answer that changes between two
calls, DNS rebinding, is checked again), an address literal in the URL likewise, and a
connection to any other address fails as an unreachable callback would
(``callback_address_refused`` says why, at most 10 lines a minute per address).

The names of ``allowed_networks``:
- ``public``: every globally routable unicast address (``ipaddress``'s ``is_global``);
- ``private``: RFC 1918's IPv4 networks and IPv6 unique local addresses (``fc00::/7``);
- ``loopback``: ``127.0.0.0/8`` and ``::1``;
- any network in CIDR notation (``10.20.0.0/16``, ``fd12:3456::/48``).

Link-local addresses (the instance metadata among them), multicast, reserved and
unspecified ones are in none of the three names: only a network given in CIDR notation
admits them. An IPv4 address mapped into IPv6 (``::ffff:169.254.169.254``) is checked as
the IPv4 address it is.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any, Final

import aiohttp
import structlog

from runtime.logging import RateLimit

log = structlog.get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PUBLIC: Final = "public"
PRIVATE: Final = "private"
LOOPBACK: Final = "loopback"
NAMED: Final[dict[str, tuple[IPNetwork, ...]]] = {
    PRIVATE: tuple(
        ipaddress.ip_network(cidr)
        for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
    ),
    LOOPBACK: (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
}
"""The networks of each name but ``public``."""
ALLOWED_BY_DEFAULT: Final = (PUBLIC, PRIVATE, LOOPBACK)


def parse_networks(entries: Iterable[str]) -> tuple[bool, tuple[IPNetwork, ...]]:
    """(``public`` is named, the networks of the other entries); ``ValueError`` naming an
    entry that is neither a name nor a network."""
    public = False
    networks: list[IPNetwork] = []
    for entry in entries:
        if entry == PUBLIC:
            public = True
        elif entry in NAMED:
            networks.extend(NAMED[entry])
        else:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not 'public', 'private', 'loopback' or a network in CIDR"
                    " notation"
                ) from None
    return public, tuple(networks)


class AllowedAddresses:
    """The addresses ``[callbacks] allowed_networks`` admits, and the connections made to
    them (``socket_for``: aiohttp's socket factory)."""

    def __init__(self, entries: Iterable[str] = ALLOWED_BY_DEFAULT) -> None:
        self._public, self._networks = parse_networks(entries)
        self._refusals = RateLimit()

    def allows(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if self._public and address.is_global and not address.is_multicast:
            return True
        return any(address in network for network in self._networks)

    def socket_for(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """A socket for one address a connection is about to try; ``OSError`` for an
        address not allowed (the connection then tries the name's other addresses)."""
        family, kind, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(sockaddr[0])
        if not self.allows(address):
            suppressed = self._refusals.admit(str(address))
            if suppressed is not None:
                log.warning(
                    "callback_address_refused",
                    ip=str(address),
                    **({"suppressed": suppressed} if suppressed else {}),
                )
            raise OSError(f"{address} is not an address [callbacks] allowed_networks admits")
        return socket.socket(family=family, type=kind, proto=proto)


def callback_session(
    allowed: AllowedAddresses, *, connections: int, total_seconds: float, user_agent: str
) -> aiohttp.ClientSession:
    """The HTTP session that calls the URLs of several domains: connections only to
    ``allowed`` addresses, and no cookies (no tenant sees another's)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, socket_factory=allowed.socket_for),
        timeout=aiohttp.ClientTimeout(total=total_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": user_agent},
    )
