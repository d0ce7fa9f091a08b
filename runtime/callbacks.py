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
- ``public``: every globally routable unicast address (``public_address``);
- ``private``: RFC 1918's IPv4 networks and IPv6 unique local addresses (``fc00::/7``);
- ``loopback``: ``127.0.0.0/8`` and ``::1``;
- any network in CIDR notation (``10.20.0.0/16``, ``fd12:3456::/48``).

Link-local addresses (the instance metadata among them), multicast, reserved and
unspecified ones are in none of the three names: only a network given in CIDR notation
admits them. An IPv6 address that carries an IPv4 address (IPv4-mapped such as
``::ffff:169.254.169.254``, 6to4, NAT64) is checked as the IPv4 address it leads to.
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
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, NAT64), which is where
    a connection to it goes."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    embedded = ip.ipv4_mapped or ip.sixtofour
    if embedded is None and ip in _NAT64:
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return embedded


def public_address(address: str) -> bool:
    """Whether ``address`` (an IP address as text) is public: a global unicast address,
    never a loopback, private, link-local, multicast, reserved, unspecified or shared
    (100.64/10) one, nor an IPv6 address that carries such an IPv4 address. What
    ``public`` admits here, and the only addresses attachments are fetched from
    (``adapters.provider_api``)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    embedded = embedded_ipv4(ip)
    if embedded is not None and not public_address(str(embedded)):
        return False
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def literal_address(host: str) -> str | None:
    """``host`` as an IP address when it is one, legacy IPv4 forms included (``127.1``,
    ``0x7f000001``, which ``getaddrinfo`` would take as addresses too)."""
    try:
        return str(ipaddress.ip_address(host.partition("%")[0]))
    except ValueError:
        pass
    try:
        return str(ipaddress.IPv4Address(socket.inet_aton(host)))
    except (OSError, UnicodeError, ValueError):
        return None


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
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return self.allows(embedded)  # where the connection goes
        if self._public and public_address(str(address)):
            return True
        return any(address in network for network in self._networks)

    def socket_for(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """A socket for one address a connection is about to try; ``OSError`` for an
        address not allowed (the connection then tries the name's other addresses)."""
        family, kind, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(sockaddr[0])
        if not self.allows(address):
            self._refusals.write(
                log.warning, "callback_address_refused", str(address), ip=str(address)
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
