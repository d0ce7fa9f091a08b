"""Vonage's webhook signatures, checked before a body is read.

- Messages API: ``Authorization: Bearer <JWT>``, HS256 with the account's signature
  secret, whose ``payload_hash`` is the SHA-256 of the raw body; ``iat`` within the
  window, ``exp`` not passed, each ``jti`` claimed once (``Nonce``).
- SMS API: ``sig`` over every other parameter sorted by name (``&name=value``, ``&`` and
  ``=`` in values replaced by ``_``), the MD5 of that string and the secret (``md5hash``)
  or its HMAC (md5, sha1, sha256, sha512); ``timestamp`` within the window, each nonce
  claimed once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from adapters.base import (
    BadRequest,
    Nonce,
    SignatureRejected,
    constant_time_equal,
)
from adapters.normalize import (
    MAX_FORM_FIELDS,
    decode_json,
    parse_form,
)
from schemas.limits import NONCE_MAX, PLAUSIBLE_FUTURE_SECONDS, is_identifier

PROVIDER = "vonage"
TOKEN_MAX = 8192
"""Characters of a webhook's JWT (Vonage's are about 400)."""
SMS_SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(part: str) -> bytes:
    """A JWT segment's bytes; ``ValueError`` when it is not base64url."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", part):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise SignatureRejected("malformed token")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def verify_messages_signature(
    secret: str,
    authorization: str | None,
    body: bytes,
    now: float,
    max_age_seconds: int,
    api_key: str = "",
) -> Nonce:
    """The request's ``jti`` to claim, once its JWT is known to be Vonage's (HS256 with the
    signature secret), to hash ``body`` (``payload_hash``), and to be issued no longer than
    ``max_age_seconds`` ago and not more than ``PLAUSIBLE_FUTURE_SECONDS`` ahead of ``now``
    (an ``exp`` past, an ``nbf`` that far ahead, refuse it too, as RFC 7519 says);
    else ``SignatureRejected`` (401 missing, 403 wrong, stale or another account's) or
    ``BadRequest`` (a ``jti`` the token cache cannot hold). Nothing of ``body`` is parsed."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise SignatureRejected("missing Authorization: Bearer token", status=401)
    if len(token) > TOKEN_MAX or not token.isascii():
        raise SignatureRejected("malformed token")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureRejected("malformed token")
    try:
        given = unb64url(parts[2])
        header_bytes, claims_bytes = unb64url(parts[0]), unb64url(parts[1])
    except ValueError:
        raise SignatureRejected("malformed token") from None
    expected = hmac.new(
        secret.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256
    ).digest()
    if not constant_time_equal(expected, given):
        raise SignatureRejected()
    if _json_object(header_bytes).get("alg") != "HS256":
        raise SignatureRejected("token is not HS256")
    claims = _json_object(claims_bytes)
    payload_hash = claims.get("payload_hash")
    if not isinstance(payload_hash, str):
        raise SignatureRejected("token has no payload_hash")
    if not constant_time_equal(hashlib.sha256(body).hexdigest(), payload_hash.lower()):
        raise SignatureRejected("payload_hash does not match the body")
    issued_at = _number(claims.get("iat"))
    if issued_at is None:
        raise SignatureRejected("token has no iat")
    if now - issued_at > max_age_seconds:
        raise SignatureRejected("signature expired")
    if issued_at - now > PLAUSIBLE_FUTURE_SECONDS:
        raise SignatureRejected("token issued in the future")
    expires_at = _number(claims.get("exp"))
    if "exp" in claims and (expires_at is None or now > expires_at):
        raise SignatureRejected("token expired")
    not_before = _number(claims.get("nbf"))
    if "nbf" in claims and (not_before is None or not_before - now > PLAUSIBLE_FUTURE_SECONDS):
        raise SignatureRejected("token not valid yet (nbf)")
    if api_key and claims.get("api_key", api_key) != api_key:
        raise SignatureRejected("token of another Vonage account")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or not is_identifier(jti, NONCE_MAX):
        raise BadRequest(f"jti missing, longer than {NONCE_MAX} characters or not printable")
    return Nonce(provider=PROVIDER, value=jti, expires_at=issued_at + max_age_seconds)


# --- SMS API signatures --------------------------------------------------------------


def sms_signature(secret: str, params: Mapping[str, str], method: str) -> str:
    """The SMS API's ``sig`` of ``params`` (all but ``sig``), lower-case hex."""
    signed = "".join(
        f"&{name}={value.replace('&', '_').replace('=', '_')}"
        for name, value in sorted(params.items())
        if name != "sig"
    )
    if method == "md5hash":
        return hashlib.md5((signed + secret).encode(), usedforsecurity=False).hexdigest()
    if method not in SMS_SIGNATURE_METHODS:
        raise SignatureRejected(f"unsupported signature method {method!r}")
    return hmac.new(secret.encode(), signed.encode(), method).hexdigest()


def verify_sms_signature(
    secret: str,
    params: Mapping[str, str],
    method: str,
    now: float,
    max_age_seconds: int,
    api_key: str = "",
) -> Nonce:
    """The request's ``nonce`` (else its ``sig``) to claim, once ``sig`` is known to be
    Vonage's and ``timestamp`` no older than ``max_age_seconds`` and not more than
    ``PLAUSIBLE_FUTURE_SECONDS`` ahead of ``now``; else ``SignatureRejected`` (401 missing,
    403 wrong, stale or another account's) or ``BadRequest`` (a nonce the cache cannot
    hold)."""
    signature, timestamp = params.get("sig"), params.get("timestamp")
    if not signature or not timestamp:
        raise SignatureRejected("missing sig or timestamp (signed webhooks are off?)", status=401)
    nonce = params.get("nonce") or signature
    if not is_identifier(nonce, NONCE_MAX):
        # Before the signature: cheap, and no such nonce may reach the token cache.
        raise BadRequest(f"nonce longer than {NONCE_MAX} characters or not printable")
    if not constant_time_equal(sms_signature(secret, params, method), signature.lower()):
        raise SignatureRejected()
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise SignatureRejected("timestamp is not a number")
    signed_at = float(timestamp)
    if now - signed_at > max_age_seconds:
        raise SignatureRejected("signature expired")
    if signed_at - now > PLAUSIBLE_FUTURE_SECONDS:
        raise SignatureRejected("timestamp in the future")
    if api_key and params.get("api-key", api_key) != api_key:
        raise SignatureRejected("webhook of another Vonage account")
    return Nonce(provider=f"{PROVIDER}-sms", value=nonce, expires_at=signed_at + max_age_seconds)


def sms_params(
    method: str, query: list[tuple[str, str]], content_type: str, body: bytes
) -> dict[str, str]:
    """The SMS API parameters of a request: the query of a ``GET`` (or of a ``POST``
    without a body), else the body of a ``POST``: a form, or JSON. A name given twice, or
    a JSON value that is not a string or an integer, cannot be signed unambiguously:
    ``BadRequest``."""
    if method == "GET" or not body:
        items = query
    elif content_type == "application/json":
        document = decode_json(body, dict[str, str | int], "Vonage SMS webhook")
        items = [(name, str(value)) for name, value in document.items()]
    elif content_type == "application/x-www-form-urlencoded":
        items = parse_form(body)
    else:
        raise BadRequest("expected a query, a form or JSON", status=415)
    if len(items) > MAX_FORM_FIELDS:
        raise BadRequest(f"more than {MAX_FORM_FIELDS} parameters")
    params: dict[str, str] = {}
    for name, value in items:
        if name in params:
            raise BadRequest(f"parameter {name[:40]!r} given twice")
        params[name] = value
    return params
