"""Customer identities: the channel addresses one person writes from.

An identity is ``{kind}:{value}`` — the ``customer_id`` a channel adapter puts on the
messages it normalizes (``sms:+14155550100``, ``phone:+14155550100`` where a domain
links SMS and WhatsApp, ``email:ann@example.com``, ``user:42`` for a signed-in web chat
visitor, ``messenger:<PSID>`` …). The router maps identities to customer profiles: a
profile's id is the identity it started from, and linking adds others to it.

``normalize_identity`` is the one spelling rule, used by the API for what clients send
(adapters already emit this form): kinds in lower case, email addresses in lower case,
phone numbers in E.164.

A WhatsApp user who adopted a username may write without their phone number: WhatsApp
then names them only by a *business-scoped user id* (BSUID: a country code, a period and
up to 128 letters and digits, ``US.13491208655302741918``; a parent BSUID has ``ENT.``
after the country code). Such an address is ``whatsapp:<BSUID>`` in every domain, never
``phone:``: it is no phone number, and no other channel knows it.
"""

from __future__ import annotations

import re

from schemas.limits import ADDRESS_MAX, UnusableValue, checked_identifier

PHONE_KINDS = frozenset({"phone", "sms", "whatsapp", "rcs", "viber"})
"""Identities whose value is an E.164 phone number."""
IDENTITY_KINDS = frozenset(
    {
        *PHONE_KINDS,
        "email",
        "user",
        "webchat",
        "messenger",
        "instagram",
        "telegram",
        "x",
        "external",
    }
)
"""``external``: an id in the platform's own CRM (``external:crm-123``)."""

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_WHATSAPP_USER_ID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")


def is_whatsapp_user_id(address: str) -> bool:
    """``address`` is a WhatsApp business-scoped user id (a BSUID or a parent BSUID)."""
    return _WHATSAPP_USER_ID.fullmatch(address) is not None


def normalize_identity(text: str) -> str:
    """``text`` as the one spelling of its identity, or ``UnusableValue`` saying why not."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    value = value.strip()
    if not sep or kind not in IDENTITY_KINDS:
        raise UnusableValue(
            "an identity is kind:value with kind one of " + ", ".join(sorted(IDENTITY_KINDS))
        )
    if not value:
        raise UnusableValue("the identity's value is empty")
    checked_identifier("identity", value, ADDRESS_MAX)
    if kind in PHONE_KINDS and not (kind == "whatsapp" and is_whatsapp_user_id(value)):
        digits = value.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
        if not _E164.fullmatch(digits):
            raise UnusableValue(
                f"a {kind} identity is an E.164 number: + and 7 to 15 digits"
                + (", or a business-scoped user id" if kind == "whatsapp" else "")
            )
        value = digits
    elif kind == "email":
        if not _EMAIL.fullmatch(value):
            raise UnusableValue("an email identity is local@domain")
        value = value.lower()
    elif any(c.isspace() for c in value):
        raise UnusableValue(f"a {kind} identity holds no spaces")
    return f"{kind}:{value}"
