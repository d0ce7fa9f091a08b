"""The parts of WhatsApp Cloud API notifications beyond a plain message, for
``adapters.meta``: a completed Flow's fields and an order as the text an agent reads, the
customer a business's echo went to (``smb_message_echoes``), and the new addresses a
``system`` notice gives a user (``user_changed_number``, ``user_changed_user_id``) as
``IdentityChanged`` events, and a user stopping or resuming marketing messages
(``user_preferences``) as a ``ConsentReported`` of scope ``marketing``. ``adapters.meta``'s
docstring says what becomes of each."""

from __future__ import annotations

import msgspec

from adapters.base import Unusable
from adapters.config import ChannelsConfig
from adapters.meta_payloads import (
    WaEcho,
    WaFlowReply,
    WaMessage,
    WaOrder,
    WaPreference,
    WaStatus,
    WaSystem,
)
from adapters.normalize import Endpoint, consent_reported, e164, identity_changed
from schemas import Channel, Consent, ConsentReported, ConsentScope, IdentityChanged
from schemas.identity import is_whatsapp_user_id

_IDENTITY_CHANGES = frozenset({"user_changed_number", "user_changed_user_id"})
_MARKETING_CONSENTS = {"stop": Consent.OPT_OUT, "resume": Consent.OPT_IN}
"""``user_preferences`` values of the category ``marketing_messages``."""
MARKETING_STOPPED = "131050"
"""Meta's error of a send failed because "this recipient has chosen to stop receiving
marketing messages on WhatsApp from your business"."""


def flow_text(reply: WaFlowReply) -> str:
    """A completed Flow as an agent reads it: ``[form] date: 2026-12-08, seats: 2`` (its
    fields in order, the business's ``flow_token`` left out; a value that is no text or
    number as JSON). A response that is no JSON object gives ``[form]`` and its body."""
    try:
        fields = msgspec.json.decode(reply.response_json)
    except (msgspec.DecodeError, RecursionError):
        fields = None
    if not isinstance(fields, dict):
        return f"[form] {reply.body}".strip()
    parts = [
        f"{name}: {value if isinstance(value, str) else msgspec.json.encode(value).decode()}"
        for name, value in fields.items()
        if name != "flow_token"
    ]
    return f"[form] {', '.join(parts)}".strip()


def order_text(order: WaOrder) -> str:
    """An order as an agent reads it: ``[order] 2 x di9ozbzfi4 at 7.99 USD, 1 x … . Love
    these!`` (each item as the catalog names it, then the customer's words; the text is
    cut at the channel's maximum)."""
    items = ", ".join(
        f"{item.quantity} x {item.product_retailer_id} at {item.item_price} {item.currency}".strip()
        for item in order.product_items
    )
    said = f"{items}. {order.text}" if items and order.text else items or order.text
    return f"[order] {said}".strip()


def _user_address(number: str | None, user_id: str | None, domain: str, what: str) -> str:
    """A user as their own messages name them: their number (E.164) when given, else their
    business-scoped user id; ``Unusable`` when ``what`` names neither."""
    if number:
        return e164(number)
    if user_id is not None and is_whatsapp_user_id(user_id):
        return user_id
    raise Unusable(f"{what} names neither the user's number nor their id", domain=domain)


def echo_recipient(echo: WaEcho, domain: str) -> str:
    """The customer an echo went to, as their own messages name them."""
    return _user_address(echo.to, echo.to_user_id, domain, "the echo")


def marketing_consent(
    config: ChannelsConfig,
    endpoint: Endpoint,
    number_id: str,
    preference: WaPreference,
    now: float,
    sent_at: float | None,
) -> ConsentReported | None:
    """A user stopping (``opt_out``) or resuming (``opt_in``) marketing messages, of scope
    ``marketing``; None for another category or value. Its id follows the user, the
    change's time and the consent, so Meta's retry is the same event."""
    consent = _MARKETING_CONSENTS.get(preference.value)
    if preference.category != "marketing_messages" or consent is None:
        return None
    domain = endpoint.domain
    address = _user_address(preference.wa_id, preference.user_id, domain, "the preference")
    return consent_reported(
        config,
        endpoint,
        channel=Channel.WHATSAPP,
        endpoint_key=number_id,
        customer_address=address,
        consent=consent,
        provider_status=preference.value,
        report_id=f"{number_id}:{address}:{preference.timestamp}:marketing",
        received_at=now,
        sent_at=sent_at,
        scope=ConsentScope.MARKETING,
    )


def marketing_stop_of(
    config: ChannelsConfig,
    endpoint: Endpoint,
    number_id: str,
    status: WaStatus,
    now: float,
    sent_at: float | None,
) -> ConsentReported:
    """The marketing stop a send failed with ``MARKETING_STOPPED`` tells of: an ``opt_out``
    of scope ``marketing`` for its recipient, at the failure's time (a resume reported
    since is later, and stays)."""
    domain = endpoint.domain
    address = _user_address(status.recipient_id, status.recipient_user_id, domain, "the status")
    return consent_reported(
        config,
        endpoint,
        channel=Channel.WHATSAPP,
        endpoint_key=number_id,
        customer_address=address,
        consent=Consent.OPT_OUT,
        provider_status=MARKETING_STOPPED,
        report_id=f"{status.id}/{MARKETING_STOPPED}",
        received_at=now,
        sent_at=sent_at,
        scope=ConsentScope.MARKETING,
    )


def _new_addresses(system: WaSystem) -> list[str]:
    """The addresses a ``system`` message says the user now has: the new number, then the
    new business-scoped user id. A value that is neither (empty, not an id) is left out."""
    addresses = []
    if system.type == "user_changed_number" and system.wa_id:
        addresses.append(e164(system.wa_id))
    if system.user_id is not None and is_whatsapp_user_id(system.user_id):
        addresses.append(system.user_id)
    return addresses


def _previous_address(msg: WaMessage, system: WaSystem, domain: str) -> str:
    """The address the user had: their number when the message gives it, else the
    business-scoped user id they had."""
    if msg.from_:
        return e164(msg.from_)
    for user_id in (system.previous_user_id, msg.from_user_id):
        if user_id is not None and is_whatsapp_user_id(user_id):
            return user_id
    raise Unusable("the notice names neither the user's number nor their former id", domain=domain)


def identity_changes(
    config: ChannelsConfig,
    endpoint: Endpoint,
    number_id: str,
    msg: WaMessage,
    system: WaSystem,
    now: float,
    sent_at: float | None,
) -> list[IdentityChanged]:
    """The ``IdentityChanged`` events of a ``system`` message (none for other notices)."""
    if system.type not in _IDENTITY_CHANGES:
        return []
    new_addresses = _new_addresses(system)
    if not new_addresses:
        raise Unusable(f"{system.type} without a usable new address", domain=endpoint.domain)
    previous = _previous_address(msg, system, endpoint.domain)
    changes = (
        identity_changed(
            config,
            endpoint,
            channel=Channel.WHATSAPP,
            endpoint_key=number_id,
            customer_address=previous,
            new_address=address,
            provider_message_id=msg.id,
            provider_status=system.type,
            received_at=now,
            sent_at=sent_at,
        )
        for address in new_addresses
    )
    return [change for change in changes if change is not None]
