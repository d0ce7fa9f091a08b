"""``conversations.inbound``: what customers sent, normalized by the channel adapters."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.common import Attachments, Channel, Contacts, Event, Location
from schemas.limits import (
    LIST_MAX,
    Address,
    Attributes,
    Code,
    ConversationKey,
    CustomerId,
    Endpoint,
    EventId,
    Language,
    Priority,
    ProviderMessageId,
    QueueName,
    Reaction,
    SkillName,
    Subject,
    Text,
    Timestamp,
)


class Consent(enum.StrEnum):
    """A customer's answer to "may we message you?" on one channel address."""

    OPT_OUT = "opt_out"
    """STOP, UNSUBSCRIBE, ARRET, … or the provider's own opt-out signal."""
    OPT_IN = "opt_in"
    """START, UNSTOP, … : business-started messages may be sent again."""


class ConsentScope(enum.StrEnum):
    """Which business-started messages a consent covers."""

    ALL = "all"
    """Every one: a STOP keyword, an unsubscribe link, a form."""
    MARKETING = "marketing"
    """Marketing templates alone (WhatsApp's "Offers and announcements" setting); utility
    and authentication messages still go."""


class MessageReceived(Event, frozen=True, kw_only=True, tag="message.received"):
    """A customer wrote to us on some channel.

    ``customer_id`` is the domain's customer identity: identities of one customer on
    several channels (the same phone on SMS and WhatsApp) map to one id when the config
    links them. ``conversation_key`` says which thread the message continues: the same
    key means the same conversation while one is open.
    """

    channel: Channel
    endpoint: Endpoint
    """Our side of the exchange: the phone number, page, bot or address written to."""
    customer_address: Address
    """The customer's channel identity: E.164 phone, PSID, chat id, email address, session."""
    customer_id: CustomerId
    conversation_key: ConversationKey
    provider_message_id: ProviderMessageId
    text: Text = ""
    attachments: Attachments = ()
    subject: Subject | None = None
    location: Location | None = None
    """A place the customer shared."""
    contacts: Contacts = ()
    """Contact cards the customer shared."""
    in_reply_to: ProviderMessageId | None = None
    """The provider's id of the message this one answers or quotes, when it says
    (WhatsApp ``context.id``, Messenger ``reply_to.mid``, email ``In-Reply-To``)."""
    queue: QueueName | None = None
    """Queue chosen by the endpoint's config; the domain's default queue when unset."""
    priority: Priority = 0
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    """Skills the conversation needs, from the endpoint's configuration or a pre-chat form."""
    language: Language | None = None
    """The customer's language (BCP 47), when the endpoint or a pre-chat form knows it."""
    attributes: Attributes = {}
    """Context for routing and reporting from the endpoint or a pre-chat form."""
    reply_window_ends_at: Timestamp | None = None
    """When the provider's free-form reply window closes (WhatsApp, Meta: 24 h)."""
    known_customer_id: CustomerId | None = None
    """The customer profile the domain's identity lookup (the platform's CRM) says
    ``customer_id`` belongs to: the router links the identity to it first, unless the
    identity is linked already (a link made through the API wins)."""
    other_identity: CustomerId | None = None
    """Another identity the provider gives the sender in the same message (WhatsApp's
    business-scoped user id beside the phone number, ``whatsapp:<BSUID>``): the router
    links it to the customer of ``customer_id`` unless it is linked already, so that the
    person's messages under it alone (a username hiding the number) reach that customer."""
    consent: Consent | None = None
    """The message changes the customer's consent on this channel address: an opt-out
    or opt-in keyword (the domain's ``outbound`` keywords) or the provider's signal."""
    consent_source: Code | None = None
    """Where ``consent`` comes from: ``keyword`` (None says the same) or ``provider``."""


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    """The provider accepted it but could not deliver it (carrier refusal, unreachable)."""
    FAILED = "failed"
    REFUSED = "refused"
    """A business-started message never sent: the address opted out after it was accepted."""
    CANCELLED = "cancelled"
    """A business-started message never sent: its campaign was cancelled first."""


class DeliveryStatusChanged(Event, frozen=True, kw_only=True, tag="delivery.status"):
    """A provider reported what became of a message we sent (not a customer message)."""

    channel: Channel
    provider_message_id: ProviderMessageId
    status: DeliveryStatus
    error_code: Code | None = None
    outbound_id: EventId | None = None
    """Our outbound message id, when the provider echoes it back (WhatsApp
    ``biz_opaque_callback_data``, a status callback URL, Mailgun's variables) or when
    egress itself reports the outcome of its send."""
    provider_status: Code | None = None
    """The provider's own name of the status (``undelivered``, ``bounce``, ``rejected``,
    ``READ``, …), exactly as it sent it: ``status`` is its place in our vocabulary."""
    read_through: Timestamp | None = None
    """A read receipt naming no message (Messenger's ``read.watermark``): the customer read
    everything we sent them in the conversation ``conversation_key`` names up to this time.
    ``provider_message_id`` is then empty."""
    conversation_key: ConversationKey | None = None
    """The conversation of a ``read_through`` receipt (as its messages' events name it)."""


class ConsentReported(Event, frozen=True, kw_only=True, tag="consent.reported"):
    """A provider reported a customer's consent on one channel address outside any
    message of theirs: an email's unsubscribe link or a spam complaint (Mailgun,
    SendGrid), an RCS user's unsubscribe or subscribe (RBM), a WhatsApp user stopping or
    resuming marketing messages (``scope`` ``marketing``). Recorded as a message's opt-out
    or opt-in keyword would be (``source`` ``provider``)."""

    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    customer_id: CustomerId
    consent: Consent
    provider_status: Code
    """The provider's own name of what happened (``unsubscribed``, ``complained``,
    ``spamreport``, ``UNSUBSCRIBE``, WhatsApp's ``stop`` and ``resume`` …)."""
    scope: ConsentScope = ConsentScope.ALL


class IdentityChanged(Event, frozen=True, kw_only=True, tag="identity.changed"):
    """A provider reported that the customer of ``customer_id`` now has another address on
    the channel: WhatsApp's ``system`` messages ``user_changed_number`` (a new number, and
    with it a new business-scoped user id) and ``user_changed_user_id`` (a new
    business-scoped user id). ``identity`` is the new address's identity (one event per
    new address): the router links it to the customer, unless it is linked already or has
    a history of its own (a number someone else used before is not merged silently)."""

    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    """The address the customer had: the one the provider names as the sender."""
    customer_id: CustomerId
    identity: CustomerId
    """The identity of the new address (``whatsapp:+…``, ``phone:+…``, ``whatsapp:<BSUID>``)."""
    provider_message_id: ProviderMessageId
    """The provider's id of the notice (WhatsApp's ``system`` message id)."""
    provider_status: Code
    """The provider's own name of the change (``user_changed_number``, …)."""


class MessageChange(enum.StrEnum):
    """What a customer did to a message already sent."""

    REACTED = "reacted"
    UNREACTED = "unreacted"
    EDITED = "edited"
    DELETED = "deleted"


class MessageChanged(Event, frozen=True, kw_only=True, tag="message.changed"):
    """A customer reacted to, edited or deleted (unsent) a message of the conversation,
    where the provider tells (Meta, Telegram, X, RCS …). ``provider_message_id`` is the
    message changed (the customer's own, or one we sent, for a reaction);
    ``change_id`` is the provider's id of the change itself (the dedupe key)."""

    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    customer_id: CustomerId
    conversation_key: ConversationKey
    provider_message_id: ProviderMessageId
    change: MessageChange
    change_id: ProviderMessageId
    reaction: Reaction | None = None
    """The emoji (or the provider's name of the reaction) for ``reacted``/``unreacted``."""
    text: Text | None = None
    """The message's new text for ``edited``."""


class HumanReplied(Event, frozen=True, kw_only=True, tag="message.human_replied"):
    """A person of the business answered the customer outside Switchboard: from a
    connected device or the provider's own inbox (Messenger and Instagram echoes of
    messages no app of ours sent). A bot that owns the conversation stops at once:
    people take it over (``human_replied``)."""

    channel: Channel
    endpoint: Endpoint
    customer_address: Address
    customer_id: CustomerId
    conversation_key: ConversationKey
    provider_message_id: ProviderMessageId


InboundEvent = (
    MessageReceived
    | DeliveryStatusChanged
    | HumanReplied
    | MessageChanged
    | ConsentReported
    | IdentityChanged
)

INBOUND_DECODER: msgspec.json.Decoder[InboundEvent] = msgspec.json.Decoder(InboundEvent)
