"""Google service-account access tokens for the RBM API: the OAuth 2.0 JWT bearer grant
(an RS256 assertion signed with the account's private key, exchanged at its ``token_uri``),
cached per process and replaced ``TOKEN_MARGIN_SECONDS`` before they expire
(``adapters.rbm`` asks for one in ``prepare``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable

import aiohttp
import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.base import (
    read_bounded,
)
from adapters.provider_api import (
    PrepareFailed,
    decoded_answer,
)

SCOPE = "https://www.googleapis.com/auth/rcsbusinessmessaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME_SECONDS = 3600
"""What the assertion asks for (Google's maximum)."""
TOKEN_MARGIN_SECONDS = 300
"""A cached access token is replaced this long before it expires."""
TOKEN_ANSWER_MAX = 64 * 1024
TOKEN_TIMEOUT_SECONDS = 15.0


class ServiceAccount(msgspec.Struct, frozen=True, kw_only=True):
    """What a service account key (the JSON Google hands out) gives for a JWT grant; its
    other fields (``type``, ``project_id``, ``client_id`` …) are not needed."""

    client_email: str
    private_key: str
    token_uri: str
    private_key_id: str | None = None

    @classmethod
    def parse(cls, raw: str) -> ServiceAccount:
        """The key in ``raw``; ``PrepareFailed`` (never quoting it) when it is not one."""
        try:
            account = msgspec.json.decode(raw, type=cls)
        except msgspec.DecodeError:
            raise PrepareFailed(
                "the RBM service account key is not JSON with client_email, private_key"
                " and token_uri"
            ) from None
        if not (account.client_email and account.private_key and account.token_uri):
            raise PrepareFailed("the RBM service account key has an empty field")
        return account


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(account: ServiceAccount, now: float) -> str:
    """The signed JWT (RS256) of a JWT bearer grant for the RBM scope."""
    try:
        key = serialization.load_pem_private_key(account.private_key.encode(), password=None)
    except (ValueError, TypeError):
        raise PrepareFailed("the RBM service account's private_key is not a PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PrepareFailed("the RBM service account's private_key is not an RSA key")
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME_SECONDS,
    }
    signing_input = f"{_b64url(msgspec.json.encode(header))}.{_b64url(msgspec.json.encode(claims))}"
    signed = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signed)}"


class AccessTokens:
    """Access tokens per service account key, fetched when missing or about to expire;
    one fetch at a time per key."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def token(self, session: aiohttp.ClientSession, raw_key: str) -> str:
        """A valid access token of the key ``raw_key`` holds; ``PrepareFailed`` when none
        can be had (``retryable`` when the token endpoint may answer later)."""
        cache_key = hashlib.sha256(raw_key.encode()).hexdigest()
        lock = self._locks.setdefault(cache_key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(cache_key)
            if cached is not None and cached[1] - TOKEN_MARGIN_SECONDS > self._clock():
                return cached[0]
            account = ServiceAccount.parse(raw_key)
            now = self._clock()
            token, lifetime = await _fetch_token(session, account, assertion(account, now))
            self._tokens[cache_key] = (token, now + lifetime)
            return token


async def _fetch_token(
    session: aiohttp.ClientSession, account: ServiceAccount, signed: str
) -> tuple[str, float]:
    """POST the grant to the key's ``token_uri``: the access token and its lifetime."""
    form = {"grant_type": JWT_BEARER, "assertion": signed}
    try:
        async with session.post(
            account.token_uri,
            data=form,
            timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_SECONDS),
        ) as answer:
            status = answer.status
            raw = await read_bounded(answer, TOKEN_ANSWER_MAX)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PrepareFailed(
            f"RBM token endpoint unreachable: {type(exc).__name__}", retryable=True
        ) from None
    body = decoded_answer(raw)
    fields = body if isinstance(body, dict) else {}
    if status != 200:
        error = fields.get("error")
        word = error[:64] if isinstance(error, str) and error.isprintable() else ""
        raise PrepareFailed(
            f"RBM token endpoint answered HTTP {status} {word}".rstrip(),
            retryable=status == 429 or status >= 500,
        )
    token, lifetime = fields.get("access_token"), fields.get("expires_in", TOKEN_LIFETIME_SECONDS)
    if not isinstance(token, str) or not token or not token.isprintable():
        raise PrepareFailed("RBM token endpoint answered without an access_token", retryable=True)
    if not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = TOKEN_LIFETIME_SECONDS
    return token, float(lifetime)


ACCESS_TOKENS = AccessTokens()
"""This process's token cache (``rbm_request``'s ``prepare``)."""
