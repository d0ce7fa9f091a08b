"""Consent through the running service: an admin records an opt-out and an opt-in (the
router applies them), sends follow them, the audit trail pages newest first, and who may
do what."""

from __future__ import annotations

import pytest

from tests.api.test_outbound import CUSTOMER, OUTBOUND, WA_ID, outbound_api
from tests.conftest import Infrastructure

pytestmark = pytest.mark.timeout(240)

CONSENT = f"/v1/domains/acme/consents/sms/{CUSTOMER}"


async def test_an_admin_records_consent_and_sends_follow_it(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        status, consent = await api.call("GET", CONSENT, "ann")
        assert (status, consent) == (
            200,
            {
                "channel": "sms",
                "address": CUSTOMER,
                "consent": "opt_in",
                "source": None,
                "customer_id": None,
                "changed_at": None,
            },
        )
        status, answer = await api.call("PUT", CONSENT, "ann", json={"consent": "opt_out"})
        assert status == 403, answer
        status, answer = await api.call(
            "PUT", CONSENT, json={"consent": "opt_out", "note": "signed_form"}
        )
        assert (status, answer["status"]) == (202, "completed"), answer
        status, consent = await api.call("GET", "/v1/domains/acme/consents/sms/+1 415-555-2671")
        assert (status, consent["consent"], consent["source"], consent["customer_id"]) == (
            200,
            "opt_out",
            "api",
            f"phone:{CUSTOMER}",
        )
        sms = {"channel": "sms", "to": CUSTOMER, "text": "Sale!"}
        status, answer = await api.call("POST", OUTBOUND, json=sms)
        assert (status, answer) == (409, {"error": "opted_out"})
        # Consent is per channel: WhatsApp still reaches the number.
        template = {"name": "delivery_update", "language": "fr", "parameters": ["Ann", "C-3"]}
        status, answer = await api.call(
            "POST",
            OUTBOUND,
            json={"channel": "whatsapp", "from": WA_ID, "to": CUSTOMER, "template": template},
        )
        assert status == 202, answer

        status, answer = await api.call("PUT", CONSENT, json={"consent": "opt_in"})
        assert (status, answer["status"]) == (202, "completed"), answer
        status, answer = await api.call("POST", OUTBOUND, json=sms)
        assert status == 202, answer

        changes = CONSENT + "/changes"
        status, page = await api.call("GET", changes)
        assert status == 200, page
        assert [(c["consent"], c["source"]) for c in page["changes"]] == [
            ("opt_in", "api"),
            ("opt_out", "api"),
        ]
        assert page["next_cursor"] is None
        status, first = await api.call("GET", changes + "?limit=1")
        assert [c["consent"] for c in first["changes"]] == ["opt_in"]
        status, second = await api.call("GET", f"{changes}?limit=1&cursor={first['next_cursor']}")
        assert ([c["consent"] for c in second["changes"]], second["next_cursor"]) == (
            ["opt_out"],
            None,
        )
        other = "/v1/domains/acme/consents/sms/+14155550000/changes"
        status, answer = await api.call("GET", f"{other}?cursor={first['next_cursor']}")
        assert status == 400, answer  # a cursor of another address
        assert (await api.call("GET", changes, "ann"))[0] == 403

        status, audit = await api.call("GET", "/v1/domains/acme/audit?action=customer.consent.set")
        details = [(e["detail"]["consent"], e["detail"]["note"]) for e in audit["entries"]]
        assert details == [("opt_out", "signed_form"), ("opt_in", None)]
        assert all(CUSTOMER not in str(e) for e in audit["entries"])


async def test_consent_paths_are_checked(infrastructure: Infrastructure, database_url: str) -> None:
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        for path, reason in (
            (
                "fax/+14155552671",
                "channel must be one of sms, whatsapp, messenger, instagram,"
                " telegram, webchat, email, rcs, x, viber",
            ),
            ("sms/0415", "address: a sms address is an E.164 number: + and 7 to 15 digits"),
            (
                "webchat/short",
                "address: a web chat address is a session id: 8 to 128 letters, digits, - or _",
            ),
        ):
            status, answer = await api.call("GET", f"/v1/domains/acme/consents/{path}")
            assert (status, answer) == (400, {"error": reason}), path
        status, consent = await api.call("GET", "/v1/domains/acme/consents/email/Ann@Example.COM")
        assert (status, consent["address"]) == (200, "ann@example.com")
        status, answer = await api.call("PUT", CONSENT, json={"consent": "maybe"})
        assert status == 400, answer
        status, answer = await api.call(
            "PUT", CONSENT, json={"consent": "opt_out", "note": "has spaces"}
        )
        assert status == 400, answer
        assert (await api.call("GET", CONSENT, "globex"))[0] == 403
