"""Providers' webhook signatures, as the simulator signs what it sends (each checked
against the provider's own SDK in ``tests/simulate/test_signing.py``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL, then each parameter's name and
    value, sorted by name then value, repeats once (as Twilio's RequestValidator)."""
    payload = url + "".join(name + value for name, value in sorted(set(params)))
    mac = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def meta_signature(app_secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256``: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    """Mailgun's ``signature`` field: hex HMAC-SHA256 of ``timestamp`` + ``token``."""
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
