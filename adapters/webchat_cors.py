"""Which web sites may call a domain's web chat from their pages: CORS and the socket's
``Origin`` check, from ``webchat.allowed_origins``. Pure functions, no I/O.

An origin is ``scheme://host[:port]`` exactly as a browser sends it in ``Origin``:
``http`` or ``https``, the host in lower case, no default port (``:443`` for https,
``:80`` for http), no path, not even ``/``. Matching is exact string equality: no
wildcards, no subdomains implied. ``"*"`` is refused at configuration load: every site
is listed, so that the socket's ``Origin`` check means something. No response carries
``Access-Control-Allow-Credentials``: the web chat authenticates with a bearer token in
a header (or a WebSocket subprotocol), never with cookies.

The rules:

- A preflight (``OPTIONS``) from an allowed origin is answered 204 with
  ``Access-Control-Allow-Origin: <that origin>``, ``-Allow-Methods``, ``-Allow-Headers:
  authorization, content-type``, ``-Max-Age`` and ``Vary: Origin``. Any other preflight
  (no ``Origin``, one not listed, an empty list) is a 403 with no CORS header.
- Every other web chat answer (errors included, so a page can read why) carries
  ``Access-Control-Allow-Origin`` when the request's origin is allowed, and ``Vary:
  Origin`` always; nothing else changes: the bearer token is the authorization.
- The WebSocket is refused (403) when the list is not empty and the request's ``Origin``
  is present and not listed. Browsers always send ``Origin`` on a WebSocket; other
  clients need not, and present the token like everyone else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

import msgspec

ORIGIN_MAX = 255
"""Longest configured origin (a host name is at most 253 characters)."""
ORIGINS_MAX = 50
"""Most origins one domain's web chat lists."""
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "authorization, content-type"
MAX_AGE_SECONDS = 600
"""How long a browser may reuse a preflight's answer (Chromium caps it at 7,200)."""

Origin = Annotated[str, msgspec.Meta(max_length=ORIGIN_MAX)]

_ORIGIN = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def check_origins(origins: Sequence[str]) -> None:
    """``ValueError`` naming the first origin a browser would never send as written."""
    if len(origins) > ORIGINS_MAX:
        raise ValueError(f"webchat.allowed_origins lists at most {ORIGINS_MAX} origins")
    for origin in origins:
        if origin == "*":
            raise ValueError(
                "webchat.allowed_origins: '*' is not accepted; list each site's origin"
                " (https://shop.example.com)"
            )
        match = _ORIGIN.fullmatch(origin)
        if match is None:
            raise ValueError(
                f"webchat.allowed_origins: {origin!r} is not scheme://host[:port] in lower"
                " case, without a path or a trailing '/'"
            )
        port = match["port"]
        if port is not None and (int(port) > 65535 or _DEFAULT_PORTS[match["scheme"]] == port):
            raise ValueError(
                f"webchat.allowed_origins: {origin!r}: leave out a default port, give one"
                " up to 65535 otherwise (browsers send the origin without it)"
            )
    if len(set(origins)) != len(origins):
        raise ValueError("webchat.allowed_origins lists an origin twice")


def allowed(origin: str | None, origins: Sequence[str]) -> bool:
    return origin is not None and origin in origins


def response_headers(origin: str | None, origins: Sequence[str]) -> dict[str, str]:
    """The CORS headers of an answer to a request from ``origin``."""
    if allowed(origin, origins):
        assert origin is not None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def preflight_headers(origin: str | None, origins: Sequence[str]) -> dict[str, str] | None:
    """The headers of a 204 answering a preflight from ``origin``; None: refuse it (403)."""
    if not allowed(origin, origins):
        return None
    return {
        **response_headers(origin, origins),
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
    }


def socket_refused(origin: str | None, origins: Sequence[str]) -> bool:
    """Whether a WebSocket from ``origin`` is refused (the module docstring)."""
    return bool(origins) and origin is not None and origin not in origins
