"""A provider's report of a customer's consent (an unsubscribe link, a spam complaint,
WhatsApp's marketing stop) is recorded as their keyword would be, for the customer the
identity belongs to, with the scope it covers."""

from __future__ import annotations

import msgspec

from router.engine import SaveConsent, apply
from schemas import Channel, Consent, ConsentReported, ConsentScope, CustomerConsentChanged
from tests.engine.builders import DOMAIN, T0, domain, emitted, linked, next_id


def report(address: str, consent: Consent = Consent.OPT_OUT) -> ConsentReported:
    return ConsentReported(
        id=next_id("consent"),
        domain=DOMAIN,
        occurred_at=T0,
        channel=Channel.EMAIL,
        endpoint="support@example.com",
        customer_address=address,
        customer_id=f"email:{address}",
        consent=consent,
        provider_status="unsubscribed",
    )


def test_an_unsubscribe_report_records_the_opt_out_for_the_linked_customer() -> None:
    state = domain()
    apply(state, linked("crm-7", "email:ann@example.com"), T0)

    effects = apply(state, report("ann@example.com"), T0 + 1)

    (change,) = emitted(effects, CustomerConsentChanged)
    assert change.customer_id == "crm-7"
    assert (change.channel, change.customer_address) == (Channel.EMAIL, "ann@example.com")
    assert (change.consent, change.source, change.message_id) == (Consent.OPT_OUT, "provider", None)
    assert [e.change for e in effects if isinstance(e, SaveConsent)] == [change]


def test_a_subscribe_report_records_the_opt_in() -> None:
    state = domain()
    effects = apply(state, report("bob@example.com", Consent.OPT_IN), T0)
    (change,) = emitted(effects, CustomerConsentChanged)
    assert (change.customer_id, change.consent) == ("email:bob@example.com", Consent.OPT_IN)


def test_a_marketing_stop_keeps_its_scope() -> None:
    state = domain()
    stop = msgspec.structs.replace(
        report("ann@example.com"), scope=ConsentScope.MARKETING, provider_status="stop"
    )
    effects = apply(state, stop, T0)
    (change,) = emitted(effects, CustomerConsentChanged)
    assert (change.consent, change.scope) == (Consent.OPT_OUT, ConsentScope.MARKETING)
    assert [e.change for e in effects if isinstance(e, SaveConsent)] == [change]
    keyword = emitted(apply(state, report("ann@example.com"), T0 + 1), CustomerConsentChanged)
    assert [c.scope for c in keyword] == [ConsentScope.ALL]
