"""``schemas.identity``: one spelling of every identity, a WhatsApp business-scoped user id
(BSUID) among them."""

from __future__ import annotations

import pytest

from schemas.identity import is_whatsapp_user_id, normalize_identity
from schemas.limits import UnusableValue


@pytest.mark.parametrize(
    ("given", "spelled"),
    [
        (" SMS : +1 (415) 555-2671 ", "sms:+14155552671"),
        ("Email:Ann@Example.COM", "email:ann@example.com"),
        ("whatsapp:+14155552671", "whatsapp:+14155552671"),
        # A BSUID is kept as WhatsApp wrote it: its letters' case is part of it.
        ("WhatsApp: US.13491208655302741918 ", "whatsapp:US.13491208655302741918"),
        ("whatsapp:US.ENT.11815799212886844830", "whatsapp:US.ENT.11815799212886844830"),
        ("whatsapp:BR.1502576394655843aZ", "whatsapp:BR.1502576394655843aZ"),
    ],
)
def test_identities_are_spelled_one_way(given: str, spelled: str) -> None:
    assert normalize_identity(given) == spelled


@pytest.mark.parametrize(
    "given",
    [
        "phone:US.13491208655302741918",  # no phone number: WhatsApp's alone
        "sms:US.13491208655302741918",
        "whatsapp:us.13491208655302741918",
        "whatsapp:USA.13491208655302741918",
        "whatsapp:US." + "1" * 129,
        "whatsapp:US.1349-1208",
        "whatsapp:US.",
    ],
)
def test_a_business_scoped_user_id_is_whatsapps_and_well_formed(given: str) -> None:
    with pytest.raises(UnusableValue):
        normalize_identity(given)


def test_a_phone_number_is_no_business_scoped_user_id() -> None:
    assert is_whatsapp_user_id("US.13491208655302741918")
    assert not is_whatsapp_user_id("+14155552671")
    assert not is_whatsapp_user_id("14155552671")
