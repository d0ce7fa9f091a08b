"""A refused send's reason is the provider's own words, read from its documented error body,
bounded and without the customer's address or number.

Error bodies from each provider's documentation:
- Vonage: developer.vonage.com/en/api-errors (RFC 7807; ``type``, ``title``, ``instance``
  always, ``detail`` sometimes);
- SendGrid: twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/errors
  and …/mail-send/errors (the duplicate-recipient message);
- X API v2: docs.x.com/x-api/fundamentals/response-codes-and-errors, and the v2 400
  ``errors`` objects (X's developer forum, "Questions about error response structure");
- RBM (Google APIs): developers.google.com/business-communications/rcs-business-messaging
  reference (``error.code``, ``error.message``, ``error.status``);
- Mailgun: documentation.mailgun.com, Messages API 400 (``{"message": …}``);
- Graph: developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes;
- Telegram: core.telegram.org/bots/api#making-requests (``ok``, ``description``);
- Twilio: twilio.com/docs/errors/21211.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.egress import MAX_ERROR_CHARS, _error_reason

DOCUMENTED: list[tuple[str, int, Any, str]] = [
    (
        "vonage",
        403,
        {
            "type": "https://developer.vonage.com/api-errors#low-balance",
            "title": "You do not have enough credit",
            "detail": "Your current balance is 30, but that costs 50.",
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        },
        "You do not have enough credit: Your current balance is 30, but that costs 50.",
    ),
    (
        "vonage-title-only",
        401,
        {
            "type": "https://developer.vonage.com/api-errors#unauthorized",
            "title": "Unauthorized",
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        },
        "Unauthorized",
    ),
    (
        "sendgrid",
        400,
        {
            "errors": [
                {"field": "identifier1", "message": "error message explained"},
                {"field": "identifier2", "message": "error message explained"},
            ]
        },
        "error message explained",
    ),
    (
        "x-v2",
        400,
        {
            "title": "Invalid Request",
            "detail": "The 'query' parameter is required.",
            "type": "https://api.x.com/2/problems/invalid-request",
        },
        "Invalid Request: The 'query' parameter is required.",
    ),
    (
        "x-v2-same-words",
        401,
        {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
        "Unauthorized",
    ),
    (
        "x-errors-only",
        403,
        {"errors": [{"code": 349, "message": "You cannot send messages to this user."}]},
        "You cannot send messages to this user.",
    ),
    (
        "rbm",
        404,
        {
            "error": {
                "code": 404,
                "message": "Requested entity was not found.",
                "status": "NOT_FOUND",
            }
        },
        "NOT_FOUND: Requested entity was not found.",
    ),
    ("mailgun", 400, {"message": "'from' parameter is missing"}, "'from' parameter is missing"),
    (
        "graph",
        400,
        {
            "error": {
                "message": "(#131030) Recipient phone number not in allowed list",
                "type": "OAuthException",
                "code": 131030,
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
            }
        },
        "(#131030) Recipient phone number not in allowed list",
    ),
    (
        "telegram",
        400,
        {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
        "Bad Request: chat not found",
    ),
    ("no-body", 502, None, "HTTP 502"),
    ("unknown-shape", 400, {"error": "invalid_request", "code": 7}, "HTTP 400"),
]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [case[1:] for case in DOCUMENTED],
    ids=[case[0] for case in DOCUMENTED],
)
def test_each_provider_s_error_body_gives_its_reason(status: int, body: Any, reason: str) -> None:
    # Decoded from JSON, as egress reads the answer.
    assert _error_reason(msgspec.json.decode(msgspec.json.encode(body)), status) == reason


def test_a_customer_quoted_by_the_provider_is_left_out() -> None:
    sendgrid = {
        "errors": [
            {
                "message": "Each email address in the personalization block should be unique"
                " between to, cc, and bcc. We found the first duplicate instance of"
                " [ann.customer@example.org] in the personalizations.0.cc field.",
                "field": "personalizations.0",
            }
        ]
    }
    twilio = {
        "code": 21211,
        "message": "The 'To' number +1 (415) 555-2671 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }
    x = {
        "errors": [
            {
                "parameters": {"participant_id": ["3001969357"]},
                "message": "The `participant_id` path parameter value [3001969357] is not valid",
            }
        ]
    }
    assert "ann.customer" not in _error_reason(sendgrid, 400)
    assert "[<address>] in the personalizations.0.cc field." in _error_reason(sendgrid, 400)
    assert _error_reason(twilio, 400) == "The 'To' number <number> is not a valid phone number."
    assert _error_reason(x, 400) == (
        "The `participant_id` path parameter value [<number>] is not valid"
    )


def test_a_reason_is_bounded_and_printable() -> None:
    long = {"title": "Bad\x00Request\r\n" * 100, "detail": "x" * 5000}
    reason = _error_reason(long, 400)
    assert len(reason) == MAX_ERROR_CHARS
    assert reason.isprintable()
    assert reason.startswith("Bad Request Bad Request")
