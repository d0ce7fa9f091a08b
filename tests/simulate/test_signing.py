"""The simulation signs webhooks exactly as the providers do: checked against Twilio's own
SDK and against the adapters' verifiers."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from adapters import email, meta, twilio
from runtime.stats import percentile
from tools.simulate_signing import mailgun_signature, meta_signature, twilio_signature

URL = "https://switchboard.example.com/webhooks/twilio/sms"
PARAMS = [
    ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
    ("From", "+15550100001"),
    ("To", "+15005550006"),
    ("Body", "Où est ma commande ? 📦"),
    ("NumMedia", "0"),
]


def test_the_twilio_signature_is_the_one_twilio_s_sdk_computes_and_validates() -> None:
    signature = twilio_signature("auth-token", URL, PARAMS)
    validator = RequestValidator("auth-token")
    assert signature == validator.compute_signature(URL, dict(PARAMS))
    assert validator.validate(URL, dict(PARAMS), signature)
    twilio.verify_signature("auth-token", URL, PARAMS, signature)


def test_a_twilio_signature_with_another_token_is_refused() -> None:
    signature = twilio_signature("other-token", URL, PARAMS)
    assert not RequestValidator("auth-token").validate(URL, dict(PARAMS), signature)
    with pytest.raises(twilio.SignatureRejected):
        twilio.verify_signature("auth-token", URL, PARAMS, signature)


def test_the_meta_signature_verifies() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    header = meta_signature("app-secret", body)
    assert header.startswith("sha256=")
    meta.verify_signature("app-secret", body, header)
    with pytest.raises(meta.SignatureRejected):
        meta.verify_signature("app-secret", body + b" ", header)


def test_the_mailgun_signature_verifies() -> None:
    fields = {"timestamp": "1700000000", "token": "a" * 50}
    fields["signature"] = mailgun_signature("signing-key", fields["timestamp"], fields["token"])
    email.verify_mailgun("signing-key", fields, now=1700000010, max_age_seconds=60)
    with pytest.raises(email.SignatureRejected):
        email.verify_mailgun("another-key", fields, now=1700000010)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
