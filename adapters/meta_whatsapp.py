"""The parts of WhatsApp Cloud API notifications beyond a plain message, for
``adapters.meta``: a completed Flow's fields and an order as the text an agent reads, the
customer a business's echo went to (``smb_message_echoes``), and the new addresses a
``system`` notice gives a user (``user_changed_number``, ``user_changed_user_id``) as
``IdentityChanged`` events. ``adapters.meta``'s docstring says what becomes of each."""

from __future__ import annotations

import msgspec

from adapters.base import Unusable
from adapters.config import ChannelsConfig
from adapters.meta_payloads import WaEcho, WaFlowReply, WaMessage, WaOrder, WaSystem
from adapters.normalize import Endpoint, e164, identity_changed
from schemas import Channel, IdentityChanged
from schemas.identity import is_whatsapp_user_id

_IDENTITY_CHANGES = frozenset({"user_changed_number", "user_changed_user_id"})


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


def echo_recipient(echo: WaEcho, domain: str) -> str:
    """The customer an echo went to, as their own messages name them."""
    if echo.to:
        return e164(echo.to)
    if echo.to_user_id is not None and is_whatsapp_user_id(echo.to_user_id):
        return echo.to_user_id
    raise Unusable("the echo names neither the user's number nor their id", domain=domain)


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
