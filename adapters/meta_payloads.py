"""The shapes of Meta's webhook notifications (WhatsApp Cloud API ``changes``, Messenger and
Instagram ``messaging`` items) as ``adapters.meta`` decodes them: only the fields it reads;
unknown fields are ignored, so a field Meta adds breaks nothing."""

from __future__ import annotations

import msgspec


class _S(msgspec.Struct, frozen=True, kw_only=True):
    pass


class WaText(_S, frozen=True, kw_only=True):
    body: str = ""


class WaMedia(_S, frozen=True, kw_only=True):
    id: str = ""
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    sha256: str | None = None
    url: str | None = None
    """Meta's download URL (newer webhooks carry it; fetching it needs the token too)."""


class WaLocation(_S, frozen=True, kw_only=True):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class WaContactName(_S, frozen=True, kw_only=True):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class WaContactPhone(_S, frozen=True, kw_only=True):
    phone: str | None = None
    wa_id: str | None = None


class WaContactEmail(_S, frozen=True, kw_only=True):
    email: str | None = None


class WaContactOrg(_S, frozen=True, kw_only=True):
    company: str | None = None


class WaContactCard(_S, frozen=True, kw_only=True):
    name: WaContactName | None = None
    phones: list[WaContactPhone] = []
    emails: list[WaContactEmail] = []
    org: WaContactOrg | None = None


class WaButton(_S, frozen=True, kw_only=True):
    text: str = ""
    payload: str | None = None


class WaReply(_S, frozen=True, kw_only=True):
    id: str = ""
    title: str = ""


class WaFlowReply(_S, frozen=True, kw_only=True):
    """A WhatsApp Flow the customer completed (``nfm_reply``)."""

    name: str = ""
    body: str = ""
    response_json: str = ""
    """The Flow's fields as a JSON object (its ``flow_token`` among them)."""


class WaInteractive(_S, frozen=True, kw_only=True):
    type: str = ""
    button_reply: WaReply | None = None
    list_reply: WaReply | None = None
    nfm_reply: WaFlowReply | None = None


class WaProductItem(_S, frozen=True, kw_only=True):
    product_retailer_id: str = ""
    quantity: int | float | str = ""
    item_price: int | float | str = ""
    currency: str = ""


class WaOrder(_S, frozen=True, kw_only=True):
    """A customer's order from the business's catalog (a catalog, single- or
    multi-product message)."""

    catalog_id: str = ""
    text: str = ""
    product_items: list[WaProductItem] = []


class WaReaction(_S, frozen=True, kw_only=True):
    message_id: str = ""
    emoji: str | None = None
    """Absent or empty: the customer removed their reaction."""


class WaContext(_S, frozen=True, kw_only=True):
    id: str | None = None
    """The message this one replies to (absent for a forwarded message)."""


class WaEdited(_S, frozen=True, kw_only=True):
    type: str = "text"
    text: WaText | None = None
    image: WaMedia | None = None
    video: WaMedia | None = None
    document: WaMedia | None = None


class WaEdit(_S, frozen=True, kw_only=True):
    original_message_id: str = ""
    message: WaEdited | None = None


class WaRevoke(_S, frozen=True, kw_only=True):
    original_message_id: str = ""


class WaSystem(_S, frozen=True, kw_only=True):
    """A ``system`` message: WhatsApp's notice that a user's number or business-scoped
    user id changed. Its ``body`` (the user's profile name and both numbers, in prose) is
    not read."""

    type: str = ""
    wa_id: str | None = None
    """The user's new number (``user_changed_number``)."""
    user_id: str | None = None
    """The user's new business-scoped user id."""
    previous_user_id: str | None = None
    """The business-scoped user id they had."""


class WaUnsupported(_S, frozen=True, kw_only=True):
    type: str | None = None
    """What the user sent that the Cloud API does not carry (``poll_creation``, ``gif``,
    ``edit``, ``reaction``, …)."""


class WaMessage(_S, frozen=True, kw_only=True):
    from_: str | None = msgspec.field(default=None, name="from")
    """The sender's phone number (``wa_id``): absent when WhatsApp withholds it from a user
    who adopted a username."""
    from_user_id: str | None = None
    """The sender's business-scoped user id (BSUID), on every message since April 2026."""
    id: str
    timestamp: str
    type: str = "text"
    context: WaContext | None = None
    text: WaText | None = None
    image: WaMedia | None = None
    video: WaMedia | None = None
    audio: WaMedia | None = None
    document: WaMedia | None = None
    sticker: WaMedia | None = None
    location: WaLocation | None = None
    contacts: list[WaContactCard] = []
    button: WaButton | None = None
    interactive: WaInteractive | None = None
    reaction: WaReaction | None = None
    edit: WaEdit | None = None
    revoke: WaRevoke | None = None
    system: WaSystem | None = None
    order: WaOrder | None = None
    unsupported: WaUnsupported | None = None


class WaEcho(_S, frozen=True, kw_only=True):
    """A message the business sent from the WhatsApp Business app or a linked device
    (``smb_message_echoes``: a number also on the app, Meta's "coexistence"); never one
    sent through the Cloud API. Its content is not read."""

    to: str | None = None
    """The user's number."""
    to_user_id: str | None = None
    """The user's business-scoped user id, when the echo names one."""
    id: str
    timestamp: str | int
    """Unix seconds: a number in Meta's reference of this webhook, a string in the others'."""
    type: str = "text"


class WaError(_S, frozen=True, kw_only=True):
    code: int | str | None = None


class WaStatus(_S, frozen=True, kw_only=True):
    id: str
    status: str
    timestamp: str
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    """The user's business-scoped user id, when the status names one."""
    errors: list[WaError] = []
    biz_opaque_callback_data: str | None = None
    """What the send request carried in the same field: egress puts our outbound id there."""


class WaPreference(_S, frozen=True, kw_only=True):
    """A user's change to what the business may send them (``user_preferences``): Meta
    reports ``category`` ``marketing_messages`` with ``value`` ``stop`` or ``resume``."""

    wa_id: str | None = None
    """The user's number."""
    user_id: str | None = None
    """The user's business-scoped user id, when the change names one."""
    category: str = ""
    value: str = ""
    timestamp: str | int | None = None


class WaMetadata(_S, frozen=True, kw_only=True):
    phone_number_id: str
    display_phone_number: str | None = None


class WaValue(_S, frozen=True, kw_only=True):
    messaging_product: str = "whatsapp"
    metadata: WaMetadata
    messages: list[WaMessage] = []
    statuses: list[WaStatus] = []
    message_echoes: list[WaEcho] = []
    user_preferences: list[WaPreference] = []


class Change(_S, frozen=True, kw_only=True):
    field: str
    value: msgspec.Raw = msgspec.Raw(b"null")


class Party(_S, frozen=True, kw_only=True):
    id: str = ""
    """Empty for a sender Meta names otherwise (a plugin's ``user_ref``): not routed."""


class Coordinates(_S, frozen=True, kw_only=True):
    lat: float | None = None
    long: float | None = None


class AttachmentPayload(_S, frozen=True, kw_only=True):
    url: str | None = None
    sticker_id: int | str | None = None
    coordinates: Coordinates | None = None
    """A legacy Messenger location attachment's place."""


class MsgAttachment(_S, frozen=True, kw_only=True):
    type: str = "file"
    payload: AttachmentPayload | None = None
    title: str | None = None
    url: str | None = None


class MsgReplyTo(_S, frozen=True, kw_only=True):
    mid: str | None = None


class MsgMessage(_S, frozen=True, kw_only=True):
    mid: str
    text: str | None = None
    is_echo: bool = False
    app_id: int | str | None = None
    """The app that sent an echoed message (a number; none: Meta's own inbox or apps)."""
    is_deleted: bool = False
    is_unsupported: bool = False
    attachments: list[MsgAttachment] = []
    reply_to: MsgReplyTo | None = None


class MsgPostback(_S, frozen=True, kw_only=True):
    title: str = ""
    payload: str | None = None
    mid: str | None = None


class MsgDelivery(_S, frozen=True, kw_only=True):
    mids: list[str] = []


class MsgRead(_S, frozen=True, kw_only=True):
    mid: str | None = None
    """Instagram's ``messaging_seen``: the message read."""
    watermark: int | str | None = None
    """Messenger's: every message sent before this time (ms) was read."""


class MsgReaction(_S, frozen=True, kw_only=True):
    mid: str = ""
    action: str = "react"
    reaction: str | None = None
    emoji: str | None = None


class MsgEdit(_S, frozen=True, kw_only=True):
    mid: str = ""
    text: str | None = None
    num_edit: int | str | None = None


class Messaging(_S, frozen=True, kw_only=True):
    sender: Party = Party()
    recipient: Party = Party()
    timestamp: int | str | None = None
    """Milliseconds; Meta's references write some as strings ("All JSON properties in a
    webhook notification are strings")."""
    message: MsgMessage | None = None
    postback: MsgPostback | None = None
    delivery: MsgDelivery | None = None
    read: MsgRead | None = None
    reaction: MsgReaction | None = None
    message_edit: MsgEdit | None = None


class Entry(_S, frozen=True, kw_only=True):
    id: str
    time: int | None = None
    changes: list[Change] = []
    messaging: list[msgspec.Raw] = []
    """Each item decoded on its own (``Messaging``): one Meta shapes otherwise is set aside
    alone, the notification's others go on."""


class Notification(_S, frozen=True, kw_only=True):
    object: str
    entry: list[Entry]


class NotifiedObject(_S, frozen=True, kw_only=True):
    """A notification's ``object`` alone."""

    object: str
