"""Consent through the running service: an admin records an opt-out and an opt-in (the
router applies them), sends follow them, the audit trail pages newest first, and who may
do what."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from runtime.appkeys import INBOUND_PUBLISHER
from runtime.outbound import CONSENT_TABLES, OPTED_OUT
from schemas import Channel, Consent, ConsentReported, ConsentScope
from tests.api.test_outbound import CUSTOMER, OUTBOUND, WA_ID, outbound_api
from tests.conftest import Infrastructure
from tests.support import wait_until

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
                "changed_under": None,
                "marketing": "opt_in",
                "marketing_source": None,
                "marketing_changed_at": None,
                "marketing_changed_under": None,
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


async def test_a_whatsapp_user_is_one_account_under_their_number_and_their_user_id(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """WhatsApp names a user with a username by a business-scoped user id: the same account
    as their number (the router links the two: ``other_identity``). A STOP under either
    stops business-started WhatsApp messages to both; the latest change decides, and the
    consent read under either address is the one sends are checked against."""
    bsuid = "US.13491208655302741918"
    template = {"name": "delivery_update", "language": "fr", "parameters": ["Ann", "C-3"]}

    def whatsapp(to: str) -> dict[str, object]:
        return {"channel": "whatsapp", "from": WA_ID, "to": to, "template": template}

    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        status, answer = await api.call(
            "POST",
            f"/v1/domains/acme/customers/phone:{CUSTOMER}/identities",
            json={"identity": f"whatsapp:{bsuid}"},
        )
        assert (status, answer["status"]) == (202, "completed"), answer
        under_id = f"/v1/domains/acme/consents/whatsapp/{bsuid}"
        status, answer = await api.call("PUT", under_id, json={"consent": "opt_out"})
        assert (status, answer["status"]) == (202, "completed"), answer

        for to in (bsuid, CUSTOMER):
            status, answer = await api.call("POST", OUTBOUND, json=whatsapp(to))
            assert (status, answer) == (409, {"error": "opted_out"}), to
        under_number = f"/v1/domains/acme/consents/whatsapp/{CUSTOMER}"
        for path in (under_id, under_number):
            status, view = await api.call("GET", path)
            assert status == 200, view
            assert (view["consent"], view["source"]) == ("opt_out", "api"), path
            assert (view["changed_under"], view["customer_id"]) == (bsuid, f"phone:{CUSTOMER}")
            assert (view["marketing"], view["marketing_changed_under"]) == ("opt_in", None)
        status, page = await api.call("GET", under_number + "/changes")
        assert page["changes"] == [], page  # the trail stays the address's own
        # Per channel still: SMS to the number is not WhatsApp's to refuse.
        sms = {"channel": "sms", "to": CUSTOMER, "text": "Your parcel is here."}
        assert (await api.call("POST", OUTBOUND, json=sms))[0] == 202

        # A later START under the number: the latest change decides for the account.
        status, answer = await api.call("PUT", under_number, json={"consent": "opt_in"})
        assert (status, answer["status"]) == (202, "completed"), answer
        for to in (bsuid, CUSTOMER):
            status, answer = await api.call("POST", OUTBOUND, json=whatsapp(to))
            assert status == 202, (to, answer)
        for path in (under_id, under_number):
            status, view = await api.call("GET", path)
            assert (view["consent"], view["changed_under"]) == ("opt_in", CUSTOMER), path

        # Someone else's user id opting out changes nothing for this customer.
        stranger = "/v1/domains/acme/consents/whatsapp/GB.99"
        assert (await api.call("PUT", stranger, json={"consent": "opt_out"}))[0] == 202
        assert (await api.call("POST", OUTBOUND, json=whatsapp(CUSTOMER)))[0] == 202
        status, view = await api.call("GET", under_number)
        assert (view["consent"], view["changed_under"]) == ("opt_in", CUSTOMER)
        status, view = await api.call("GET", stranger)
        assert (view["consent"], view["changed_under"]) == ("opt_out", "GB.99")


BSUID = "US.13491208655302741918"


async def _with_linked_user_id(database_url: str) -> asyncpg.Connection:
    """A connection to a database where the WhatsApp user id ``BSUID`` is linked to the
    customer of ``CUSTOMER``'s number, as the router links it."""
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        "INSERT INTO customer_identities VALUES ('acme', $1, $2, 'provider', now())",
        f"whatsapp:{BSUID}",
        f"phone:{CUSTOMER}",
    )
    return conn


async def test_the_consent_query_takes_the_latest_change_of_the_whatsapp_account(
    database_url: str,
) -> None:
    """The outbound sender checks consent again just before sending (``OPTED_OUT``, the
    API's query too): on the rows as the router writes them (a consent names the customer it was
    recorded for, an identity linked to a customer names that customer)."""
    bsuid, phone = BSUID, f"phone:{CUSTOMER}"
    conn = await _with_linked_user_id(database_url)
    try:
        await conn.execute(
            "INSERT INTO consents VALUES ('acme', 'whatsapp', $1, $2, 'opt_out', 'keyword',"
            " now() - interval '1 minute')",
            bsuid,
            f"whatsapp:{bsuid}",
        )

        async def opted_out(channel: str, *named: tuple[str, str]) -> set[str]:
            rows = await conn.fetch(
                OPTED_OUT,
                "acme",
                list(range(len(named))),
                [channel] * len(named),
                [address for address, _ in named],
                [customer for _, customer in named],
                [False] * len(named),
            )
            return {named[row["i"]][0] for row in rows}

        stranger = ("+14155550000", "phone:+14155550000")
        assert await opted_out("whatsapp", (CUSTOMER, phone), stranger) == {CUSTOMER}
        assert await opted_out("sms", (CUSTOMER, phone)) == set()
        await conn.execute(
            "INSERT INTO consents VALUES ('acme', 'whatsapp', $1, $2, 'opt_in', 'keyword', now())",
            CUSTOMER,
            phone,
        )
        assert await opted_out("whatsapp", (CUSTOMER, phone), (bsuid, f"whatsapp:{bsuid}")) == set()
    finally:
        await conn.close()


async def test_an_opt_out_under_a_former_number_holds_for_the_new_one(database_url: str) -> None:
    """A user who changed their number (WhatsApp's ``user_changed_number``): the router
    links the new number to the customer (``identity.changed``), so the opt-out given
    under the former number still stops business-started WhatsApp messages to the new
    one, on the rows as the router writes them."""
    former, new = CUSTOMER, "+12195555358"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO customer_identities VALUES ('acme', $1, $2, 'provider', now())",
            f"phone:{new}",
            f"phone:{former}",
        )
        await conn.execute(
            "INSERT INTO consents VALUES ('acme', 'whatsapp', $1, $2, 'opt_out', 'keyword', now())",
            former,
            f"phone:{former}",
        )
        rows = await conn.fetch(
            OPTED_OUT,
            "acme",
            [0, 1],
            ["whatsapp", "sms"],
            [new, new],
            [f"phone:{new}"] * 2,
            [False, False],
        )
        # WhatsApp's account decides on WhatsApp; SMS consent stays per address.
        assert [row["i"] for row in rows] == [0]
    finally:
        await conn.close()


async def test_a_marketing_stop_holds_for_marketing_templates_alone(database_url: str) -> None:
    """WhatsApp's "Offers and announcements" stop (scope ``marketing``) refuses marketing
    templates, under either of the user's addresses; a STOP (scope ``all``) refuses every
    message. Each scope's latest change decides for itself: a START does not resume
    marketing, a marketing resume does not undo a STOP."""
    bsuid, phone = BSUID, f"phone:{CUSTOMER}"
    conn = await _with_linked_user_id(database_url)
    try:

        async def consent(address: str, customer: str, value: str, scope: str) -> None:
            table = CONSENT_TABLES[ConsentScope(scope)]
            await conn.execute(
                f"INSERT INTO {table} (domain, channel, address, customer_id, consent, source,"  # noqa: S608 (a constant)
                " changed_at) VALUES ('acme', 'whatsapp', $1, $2, $3, 'provider',"
                " clock_timestamp())"
                " ON CONFLICT (domain, channel, address) DO UPDATE SET"
                " consent = EXCLUDED.consent, changed_at = EXCLUDED.changed_at",
                address,
                customer,
                value,
            )

        async def refused() -> list[tuple[str, bool]]:
            sends = [(to, marketing) for to in (CUSTOMER, bsuid) for marketing in (False, True)]
            rows = await conn.fetch(
                OPTED_OUT,
                "acme",
                list(range(len(sends))),
                ["whatsapp"] * len(sends),
                [to for to, _ in sends],
                [phone if to == CUSTOMER else f"whatsapp:{bsuid}" for to, _ in sends],
                [marketing for _, marketing in sends],
            )
            return sorted(sends[row["i"]] for row in rows)

        await consent(bsuid, f"whatsapp:{bsuid}", "opt_out", "marketing")
        assert await refused() == [(CUSTOMER, True), (bsuid, True)]
        await consent(CUSTOMER, phone, "opt_in", "all")  # a START resumes no marketing
        assert await refused() == [(CUSTOMER, True), (bsuid, True)]
        await consent(CUSTOMER, phone, "opt_out", "all")  # a STOP: nothing goes
        assert await refused() == [
            (CUSTOMER, False),
            (CUSTOMER, True),
            (bsuid, False),
            (bsuid, True),
        ]
        await consent(bsuid, f"whatsapp:{bsuid}", "opt_in", "marketing")  # resume, still STOP
        assert await refused() == [
            (CUSTOMER, False),
            (CUSTOMER, True),
            (bsuid, False),
            (bsuid, True),
        ]
        await consent(CUSTOMER, phone, "opt_in", "all")
        assert await refused() == []
    finally:
        await conn.close()


async def test_marketing_consent_through_the_service(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """WhatsApp reports a user stopping marketing messages (``consent.reported``, scope
    ``marketing``): the router records it apart from their consent to every message; a
    marketing template is refused and a utility one still goes; an admin records the
    resume the same way (``scope`` in the ``PUT``)."""
    marketing = {"name": "spring_sale", "language": "en", "parameters": ["20%"]}
    utility = {"name": "delivery_update", "language": "fr", "parameters": ["Ann", "C-3"]}

    def whatsapp(template: dict[str, object]) -> dict[str, object]:
        return {"channel": "whatsapp", "from": WA_ID, "to": CUSTOMER, "template": template}

    consent = f"/v1/domains/acme/consents/whatsapp/{CUSTOMER}"
    async with outbound_api(infrastructure.bootstrap_servers, database_url) as api:
        report = ConsentReported(
            id=str(uuid.uuid4()),
            domain="acme",
            occurred_at=time.time(),
            channel=Channel.WHATSAPP,
            endpoint=WA_ID,
            customer_address=CUSTOMER,
            customer_id=f"phone:{CUSTOMER}",
            consent=Consent.OPT_OUT,
            provider_status="stop",
            scope=ConsentScope.MARKETING,
        )
        await api.service.app[INBOUND_PUBLISHER].publish([report])

        async def recorded() -> dict[str, object] | None:
            status, view = await api.call("GET", consent)
            assert status == 200, view
            return view if view["marketing"] == "opt_out" else None

        view = await wait_until(recorded, timeout=20, what="the marketing stop")
        assert (view["consent"], view["marketing_source"]) == ("opt_in", "provider")
        labels = {"channel": "whatsapp", "consent": "opt_out", "source": "provider"}
        registry = api.service.metrics.registry
        assert [
            registry.get_sample_value(
                "switchboard_consent_changes_total", {"domain": "acme", **labels, "scope": scope}
            )
            for scope in ("marketing", "all")
        ] == [1.0, None]
        assert view["source"] is None
        status, answer = await api.call("POST", OUTBOUND, json=whatsapp(marketing))
        assert (status, answer) == (409, {"error": "opted_out"})
        status, answer = await api.call("POST", OUTBOUND, json=whatsapp(utility))
        assert status == 202, answer

        status, answer = await api.call(
            "PUT", consent, json={"consent": "opt_in", "scope": "marketing", "note": "web_form"}
        )
        assert (status, answer["status"]) == (202, "completed"), answer
        status, view = await api.call("GET", consent)
        assert (view["marketing"], view["marketing_source"]) == ("opt_in", "api")
        status, answer = await api.call("POST", OUTBOUND, json=whatsapp(marketing))
        assert status == 202, answer
        status, page = await api.call("GET", consent + "/changes")
        assert [(c["consent"], c["scope"], c["source"]) for c in page["changes"]] == [
            ("opt_in", "marketing", "api"),
            ("opt_out", "marketing", "provider"),
        ]
        status, answer = await api.call(
            "PUT", consent, json={"consent": "opt_out", "scope": "promotions"}
        )
        assert status == 400, answer


BEFORE_0030 = """
INSERT INTO consents (domain, channel, address, customer_id, consent, source, changed_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::timestamptz[])
ON CONFLICT (domain, channel, address) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, consent = EXCLUDED.consent, source = EXCLUDED.source,
    changed_at = EXCLUDED.changed_at
WHERE consents.changed_at <= EXCLUDED.changed_at
"""
"""How a router of the version before migration 0030 writes consents."""


async def test_a_router_of_the_version_before_marketing_consents_writes_as_it_did(
    database_url: str,
) -> None:
    """Migrations expand the schema (README, *Upgrading*): while the routers roll, one of
    the previous version records a STOP on the new schema, and a marketing stop beside it
    changes nothing of it."""
    conn = await asyncpg.connect(database_url)
    try:
        for consent in ("opt_out", "opt_in"):
            await conn.execute(
                BEFORE_0030,
                ["acme"],
                ["whatsapp"],
                [CUSTOMER],
                [f"phone:{CUSTOMER}"],
                [consent],
                ["keyword"],
                [datetime.now(UTC)],
            )
        await conn.execute(
            "INSERT INTO marketing_consents VALUES ('acme', 'whatsapp', $1, $2, 'opt_out',"
            " 'provider', now())",
            CUSTOMER,
            f"phone:{CUSTOMER}",
        )
        rows = await conn.fetch("SELECT consent FROM consents WHERE address = $1", CUSTOMER)
        assert [row["consent"] for row in rows] == ["opt_in"]
    finally:
        await conn.close()


async def test_the_consent_query_reads_indexes(database_url: str) -> None:
    """Checked for every send: on 20,000 consents of each scope (analyzed), every consent
    table is read through an index of the address or of the customer, never scanned."""
    conn = await asyncpg.connect(database_url)
    try:
        for table in CONSENT_TABLES.values():
            await conn.execute(
                f"INSERT INTO {table} (domain, channel, address, customer_id, consent, source,"  # noqa: S608 (a constant)
                " changed_at) SELECT 'acme', 'whatsapp', '+1' || (4155550000 + i),"
                " 'phone:+1' || (4155550000 + i), 'opt_out', 'keyword', now()"
                " FROM generate_series(1, 20000) i"
            )
        await conn.execute("ANALYZE")
        plan = "\n".join(
            row[0]
            for row in await conn.fetch(
                "EXPLAIN " + OPTED_OUT,
                "acme",
                [0, 1],
                ["whatsapp", "sms"],
                [CUSTOMER, CUSTOMER],
                [f"phone:{CUSTOMER}"] * 2,
                [True, False],
            )
        )
    finally:
        await conn.close()
    assert "Seq Scan on consents" not in plan, plan
    assert "Seq Scan on marketing_consents" not in plan, plan
    for index in (
        "consents_by_address",
        "marketing_consents_by_address",
        "consents_whatsapp_by_customer",
        "marketing_consents_by_customer",
    ):
        assert index in plan, plan
