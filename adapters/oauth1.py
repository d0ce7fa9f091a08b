"""OAuth 1.0a request signing (RFC 5849 §3.4) with HMAC-SHA1, as X's "Creating a signature"
and "Authorizing a request" pages apply it: the signature base string of the method, the
URL and every parameter (query, form and ``oauth_*``), keyed with the consumer secret and
the token secret, and the ``Authorization: OAuth …`` header that carries it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, repr=False)
class OAuthCredentials:
    """An app's consumer key and secret with one account's access token and secret (never
    printed: no ``repr`` of the values)."""

    consumer_key: str
    consumer_secret: str
    token: str
    token_secret: str

    def __repr__(self) -> str:
        return "OAuthCredentials(…)"


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of UTF-8: all but ``A-Z a-z 0-9 - . _ ~``, upper-case hex."""
    return urllib.parse.quote(value, safe="")


def base_string_uri(url: str) -> str:
    """The URL as signed: scheme and host lower-cased, a default port dropped, no query or
    fragment."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port is None or port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def signature_base_string(method: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """``METHOD&percent(base URL)&percent(parameter string)``: the parameters are the URL's
    query and ``params`` (a form body's fields and the ``oauth_*`` values), each name and
    value percent-encoded, sorted by name then value, joined as ``n=v`` with ``&``."""
    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True)
    encoded = sorted((percent_encode(n), percent_encode(v)) for n, v in [*query, *params])
    parameter_string = "&".join(f"{n}={v}" for n, v in encoded)
    return "&".join(
        (method.upper(), percent_encode(base_string_uri(url)), percent_encode(parameter_string))
    )


def oauth_signature(
    method: str,
    url: str,
    params: Sequence[tuple[str, str]],
    consumer_secret: str,
    token_secret: str,
) -> str:
    """The base64 HMAC-SHA1 of the signature base string, keyed by
    ``percent(consumer secret)&percent(token secret)``."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"
    base = signature_base_string(method, url, params)
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()).decode()


def authorization_header(
    method: str,
    url: str,
    credentials: OAuthCredentials,
    *,
    form: Sequence[tuple[str, str]] = (),
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The ``Authorization: OAuth …`` value of one request (``form``: the fields of an
    ``application/x-www-form-urlencoded`` body, the only body that is signed). A fresh
    random nonce and the current time unless given."""
    oauth = {
        "oauth_consumer_key": credentials.consumer_key,
        "oauth_nonce": nonce if nonce is not None else secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_token": credentials.token,
        "oauth_version": "1.0",
    }
    oauth["oauth_signature"] = oauth_signature(
        method,
        url,
        [*form, *oauth.items()],
        credentials.consumer_secret,
        credentials.token_secret,
    )
    return "OAuth " + ", ".join(
        f'{percent_encode(name)}="{percent_encode(value)}"' for name, value in sorted(oauth.items())
    )
