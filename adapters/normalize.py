"""Helpers every provider module shares to turn a provider payload into ``schemas`` events.

``message_received``, ``delivery_status_changed`` and ``usable_attachment`` are the one
place where a provider's values meet ``schemas.limits``: identifiers and addresses that
storage cannot hold make the item ``Unusable`` (set aside on the dead-letter topic, see
``adapters.webhooks``), free text is cleaned and cut at the channel's maximum, optional
descriptive values (a media type, a size) that are unusable are dropped, and a provider's
timestamp outside the plausible window is replaced by our receive time.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

import msgspec

from adapters.base import BadRequest, Unusable, inbound_event_id
from adapters.config import ChannelsConfig
from schemas import (
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    ConsentScope,
    Contact,
    DeliveryStatus,
    DeliveryStatusChanged,
    HumanReplied,
    IdentityChanged,
    Location,
    MessageChange,
    MessageChanged,
    MessageReceived,
)
from schemas.limits import (
    ADDRESS_MAX,
    ATTACHMENTS_MAX,
    CAPTION_MAX,
    CHANNEL_TEXT_MAX,
    CODE_MAX,
    CONTACT_ITEMS_MAX,
    CONTACTS_MAX,
    CONTENT_TYPE_MAX,
    CONVERSATION_KEY_MAX,
    CUSTOMER_ID_MAX,
    ENDPOINT_MAX,
    EVENT_ID_MAX,
    FILENAME_MAX,
    NAME_MAX,
    PLAUSIBLE_FUTURE_SECONDS,
    PLAUSIBLE_PAST_SECONDS,
    PROVIDER_MESSAGE_ID_MAX,
    REACTION_MAX,
    SUBJECT_MAX,
    URL_MAX,
    UnusableValue,
    checked_identifier,
    clean_text,
    decode_json_text,
    is_identifier,
)

T = TypeVar("T")

#: Meta lets a business answer freely for 24 h after the customer's last message.
META_REPLY_WINDOW_SECONDS = 24 * 3600
MAX_FORM_FIELDS = 1000
"""Fields of a url-encoded form (Twilio sends about 20, Mailgun about 30)."""
SIZE_MAX = 2**53
"""Largest attachment size believed (the largest integer JSON readers agree on)."""


class Endpoint(Protocol):
    """Any configured endpoint: it names its domain, optional queue, and the routing
    context of its conversations."""

    @property
    def domain(self) -> str: ...

    @property
    def queue(self) -> str | None: ...

    @property
    def priority(self) -> int: ...

    @property
    def skills(self) -> tuple[str, ...]: ...

    @property
    def language(self) -> str | None: ...

    @property
    def attributes(self) -> dict[str, str]: ...


E = TypeVar("E", bound=Endpoint)


def find_endpoint(endpoints: Iterable[E], key: str, attr: str) -> E | None:
    """The configured endpoint whose ``attr`` equals ``key``, else None."""
    for endpoint in endpoints:
        if getattr(endpoint, attr) == key:
            return endpoint
    return None


def unknown_endpoint(kind: str) -> BadRequest:
    return BadRequest(f"{kind} is not configured in [channels]", status=404)


def decode_json(body: bytes, type_: type[T], what: str) -> T:
    """Decode and validate a JSON body, or raise ``BadRequest`` with msgspec's reason.

    A lone surrogate escape (``"\\ud800"``) is read as U+FFFD rather than refused; a
    document nested deeper than the decoder's recursion limit (about a thousand levels,
    far beyond any provider's payload) is refused.
    """
    try:
        return decode_json_text(lambda text: msgspec.json.decode(text, type=type_), body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed {what}: {exc}") from None
    except RecursionError:
        raise BadRequest(f"malformed {what}: nested too deeply") from None


ITEM_REASON_MAX = 300
"""Characters of a malformed item's reason kept (msgspec's; the values it may quote are
left out when it is set aside: ``runtime.logging.without_values``)."""


def decode_item(raw: bytes, type_: type[T], what: str) -> T:
    """One item of a signed request, decoded on its own: one that cannot be read is
    ``Unusable``, set aside alone while the request's other items go on."""
    try:
        return decode_json(raw, type_, what)
    except BadRequest as malformed:
        raise Unusable(malformed.reason[:ITEM_REASON_MAX]) from None


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """Decode an ``application/x-www-form-urlencoded`` body, keeping repeated keys: what
    ``urllib.parse.parse_qsl`` gives with blank values kept and strict UTF-8, but
    unquoting only the names and values that hold a ``%`` or a ``+`` (most of a
    provider's fields hold neither: this runs on every webhook)."""
    try:
        text = body.decode("utf-8")
        if text.count("&") >= MAX_FORM_FIELDS:
            raise ValueError("too many fields")
        pairs = []
        for field in text.split("&"):
            if not field:
                continue
            name, _, value = field.partition("=")
            pairs.append((_unquoted(name), _unquoted(value)))
        return pairs
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(
            f"form body is not valid UTF-8 url-encoded data of at most {MAX_FORM_FIELDS} fields"
        ) from None


def _unquoted(part: str) -> str:
    if "+" in part:
        part = part.replace("+", " ")
    if "%" in part:
        # What unquote(part, errors="strict") gives, in half its time: the escapes are
        # bytes of UTF-8, and an escape or a character cut in two fails either way.
        part = urllib.parse.unquote_to_bytes(part).decode()
    return part


def first_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The first value of every key."""
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def e164(number: str) -> str:
    """A WhatsApp ``wa_id`` (digits only) as E.164 (``+`` and digits); other forms unchanged."""
    digits = number.strip()
    return "+" + digits if digits.isdigit() else digits


def plausible_time(sent_at: float | None, received_at: float) -> float:
    """The provider's time of an event when believable, else ``received_at``.

    Believable: a finite number no more than ``PLAUSIBLE_PAST_SECONDS`` (30 days) before
    and ``PLAUSIBLE_FUTURE_SECONDS`` (15 minutes) after our receive time. Anything else
    (a year 33658, a negative time, not a number) says nothing about when the customer
    wrote, and would not fit a timestamp column or a CloudEvents ``time``.
    """
    if sent_at is None or (isinstance(sent_at, float) and not math.isfinite(sent_at)):
        return received_at
    if received_at - PLAUSIBLE_PAST_SECONDS <= sent_at <= received_at + PLAUSIBLE_FUTURE_SECONDS:
        return float(sent_at)
    return received_at


def usable_attachment(attachment: Attachment) -> Attachment:
    """``attachment`` as an event may carry it: its URL must be usable (else
    ``UnusableValue``), its file name is cleaned text, and a media type or size that is
    not usable is dropped rather than losing the attachment."""
    content_type = attachment.content_type
    if content_type is not None and not is_identifier(content_type, CONTENT_TYPE_MAX):
        content_type = None
    size = attachment.size_bytes
    if size is not None and not 0 <= size <= SIZE_MAX:
        size = None
    filename = attachment.filename
    caption = attachment.caption
    return Attachment(
        url=checked_identifier("attachment url", attachment.url, URL_MAX),
        content_type=content_type,
        filename=None if filename is None else clean_text(filename, FILENAME_MAX),
        size_bytes=size,
        media_id=_optional_identifier(attachment.media_id, PROVIDER_MESSAGE_ID_MAX),
        provider_url=_optional_identifier(attachment.provider_url, URL_MAX),
        sha256=_optional_identifier(attachment.sha256, CODE_MAX),
        caption=None if caption is None else clean_text(caption, CAPTION_MAX) or None,
    )


def _optional_identifier(value: str | None, limit: int) -> str | None:
    """A provider reference kept beside ours when usable; dropped (not fatal) otherwise."""
    return value if value is not None and is_identifier(value, limit) else None


def usable_location(location: Location) -> Location | None:
    """``location`` as an event may carry it: coordinates must be finite and in range
    (else None: a place nobody can find is no place); name and address cleaned, a URL
    that is not usable dropped."""
    lat, lon = location.latitude, location.longitude
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return Location(
        latitude=lat,
        longitude=lon,
        name=_clean_optional(location.name, NAME_MAX),
        address=_clean_optional(location.address, SUBJECT_MAX),
        url=_optional_identifier(location.url, URL_MAX),
    )


def usable_contact(contact: Contact) -> Contact:
    """A contact card as an event may carry it: text cleaned, unusable entries dropped,
    at most ``CONTACT_ITEMS_MAX`` phones and emails."""
    return Contact(
        name=_clean_optional(contact.name, NAME_MAX),
        phones=tuple(p for p in contact.phones if is_identifier(p, ADDRESS_MAX))[
            :CONTACT_ITEMS_MAX
        ],
        emails=tuple(e for e in contact.emails if is_identifier(e, ADDRESS_MAX))[
            :CONTACT_ITEMS_MAX
        ],
        organization=_clean_optional(contact.organization, NAME_MAX),
    )


def _clean_optional(text: str | None, limit: int) -> str | None:
    return None if text is None else clean_text(text, limit) or None


def _identities(
    config: ChannelsConfig,
    domain: str,
    channel: Channel,
    endpoint_key: str,
    customer_address: str,
    conversation_key: str | None,
) -> tuple[str, str]:
    """The customer id and conversation key of a customer's address on an endpoint (raises
    ``UnusableValue`` when the endpoint, the address or either derived value cannot be
    carried): the one derivation every customer event shares, so a message, a change to
    it and a consent report of the same person find the same customer and conversation."""
    checked_identifier("endpoint", endpoint_key, ENDPOINT_MAX)
    customer_id = _identity_of(config, domain, channel, customer_address)
    key = checked_identifier(
        "conversation key",
        conversation_key or f"{channel.value}:{endpoint_key}:{customer_address}",
        CONVERSATION_KEY_MAX,
    )
    return customer_id, key


def _identity_of(config: ChannelsConfig, domain: str, channel: Channel, address: str) -> str:
    """The customer identity of an address on the channel (raises ``UnusableValue`` when
    the address or the identity cannot be carried)."""
    checked_identifier("customer address", address, ADDRESS_MAX)
    return checked_identifier(
        "customer id", config.customer_id(domain, channel.value, address), CUSTOMER_ID_MAX
    )


def message_received(
    config: ChannelsConfig,
    endpoint: Endpoint,
    *,
    channel: Channel,
    endpoint_key: str,
    customer_address: str,
    provider_message_id: str,
    received_at: float,
    sent_at: float | None = None,
    text: str = "",
    attachments: tuple[Attachment, ...] = (),
    subject: str | None = None,
    conversation_key: str | None = None,
    reply_window: float | None = None,
    provider_consent: Consent | None = None,
    location: Location | None = None,
    contacts: tuple[Contact, ...] = (),
    in_reply_to: str | None = None,
    other_address: str | None = None,
) -> MessageReceived:
    """One normalized customer message with its stable id and identities derived.

    ``other_address``: a second address the provider gives the sender on the channel
    (WhatsApp's business-scoped user id beside the number); its identity becomes
    ``other_identity``, which the router links to the customer.

    ``sent_at`` is the provider's time of the message (``plausible_time``);
    ``provider_consent`` what the provider says the message does to the customer's consent
    (its own opt-out signal; the domain's keywords are matched later, ``adapters.consent``).
    Raises ``Unusable`` when an identifier, an address or an attachment URL cannot be
    carried.
    """
    domain = endpoint.domain
    try:
        customer_id, key = _identities(
            config, domain, channel, endpoint_key, customer_address, conversation_key
        )
        checked_identifier("provider message id", provider_message_id, PROVIDER_MESSAGE_ID_MAX)
        usable = tuple(usable_attachment(a) for a in attachments[:ATTACHMENTS_MAX])
        other_identity = (
            None if other_address is None else _identity_of(config, domain, channel, other_address)
        )
    except UnusableValue as exc:
        raise Unusable(str(exc), domain=domain) from None
    occurred_at = plausible_time(sent_at, received_at)
    return MessageReceived(
        id=inbound_event_id(domain, channel.value, provider_message_id),
        domain=domain,
        occurred_at=occurred_at,
        channel=channel,
        endpoint=endpoint_key,
        customer_address=customer_address,
        customer_id=customer_id,
        conversation_key=key,
        provider_message_id=provider_message_id,
        text=clean_text(text, CHANNEL_TEXT_MAX[channel]),
        attachments=usable,
        subject=None if subject is None else clean_text(subject, SUBJECT_MAX),
        queue=endpoint.queue,
        priority=endpoint.priority,
        skills=endpoint.skills,
        language=endpoint.language,
        attributes=endpoint.attributes,
        reply_window_ends_at=None if reply_window is None else occurred_at + reply_window,
        consent=provider_consent,
        consent_source=None if provider_consent is None else "provider",
        location=None if location is None else usable_location(location),
        contacts=tuple(usable_contact(c) for c in contacts[:CONTACTS_MAX]),
        in_reply_to=_optional_identifier(in_reply_to, PROVIDER_MESSAGE_ID_MAX),
        other_identity=None if other_identity == customer_id else other_identity,
    )


def human_replied(as_customers: MessageReceived) -> HumanReplied:
    """A person's answer, from the echo read as if the customer had sent it
    (``as_customers``): the customer's address, id and conversation key are exactly those
    of the customer's own messages. Its id is the echo's own (``<mid>/echo``). Meta's echoes
    and a Telegram business account's own messages are read so."""
    m = as_customers
    return HumanReplied(
        id=inbound_event_id(m.domain, m.channel.value, f"{m.provider_message_id}/echo"),
        domain=m.domain,
        occurred_at=m.occurred_at,
        channel=m.channel,
        endpoint=m.endpoint,
        customer_address=m.customer_address,
        customer_id=m.customer_id,
        conversation_key=m.conversation_key,
        provider_message_id=m.provider_message_id,
    )


def consent_reported(
    config: ChannelsConfig,
    endpoint: Endpoint,
    *,
    channel: Channel,
    endpoint_key: str,
    customer_address: str,
    consent: Consent,
    provider_status: str,
    report_id: str,
    received_at: float,
    sent_at: float | None = None,
    scope: ConsentScope = ConsentScope.ALL,
) -> ConsentReported:
    """A provider's report of a customer's consent outside a message, with its stable id
    (one per ``report_id``, the provider's id of the report, and consent); identities are
    derived as ``message_received`` derives them. Raises ``Unusable`` like it."""
    domain = endpoint.domain
    try:
        customer_id, _ = _identities(config, domain, channel, endpoint_key, customer_address, None)
        checked_identifier("provider status", provider_status, CODE_MAX)
        checked_identifier("report id", report_id, PROVIDER_MESSAGE_ID_MAX)
    except UnusableValue as exc:
        raise Unusable(str(exc), domain=domain) from None
    return ConsentReported(
        id=inbound_event_id(domain, channel.value, f"{report_id}/consent/{consent.value}"),
        domain=domain,
        occurred_at=plausible_time(sent_at, received_at),
        channel=channel,
        endpoint=endpoint_key,
        customer_address=customer_address,
        customer_id=customer_id,
        consent=consent,
        provider_status=provider_status,
        scope=scope,
    )


def identity_changed(
    config: ChannelsConfig,
    endpoint: Endpoint,
    *,
    channel: Channel,
    endpoint_key: str,
    customer_address: str,
    new_address: str,
    provider_message_id: str,
    provider_status: str,
    received_at: float,
    sent_at: float | None = None,
) -> IdentityChanged | None:
    """A provider's notice that the customer of ``customer_address`` now also has
    ``new_address`` on the channel, with its stable id (one per notice and new address);
    identities are derived as ``message_received`` derives them. None when both addresses
    are one identity (nothing to link). Raises ``Unusable`` like it."""
    domain = endpoint.domain
    try:
        customer_id, _ = _identities(config, domain, channel, endpoint_key, customer_address, None)
        identity = _identity_of(config, domain, channel, new_address)
        checked_identifier("provider message id", provider_message_id, PROVIDER_MESSAGE_ID_MAX)
        checked_identifier("provider status", provider_status, CODE_MAX)
    except UnusableValue as exc:
        raise Unusable(str(exc), domain=domain) from None
    if identity == customer_id:
        return None
    return IdentityChanged(
        id=inbound_event_id(domain, channel.value, f"{provider_message_id}/identity/{identity}"),
        domain=domain,
        occurred_at=plausible_time(sent_at, received_at),
        channel=channel,
        endpoint=endpoint_key,
        customer_address=customer_address,
        customer_id=customer_id,
        identity=identity,
        provider_message_id=provider_message_id,
        provider_status=provider_status,
    )


def message_changed(
    config: ChannelsConfig,
    endpoint: Endpoint,
    *,
    channel: Channel,
    endpoint_key: str,
    customer_address: str,
    provider_message_id: str,
    change: MessageChange,
    change_id: str,
    received_at: float,
    sent_at: float | None = None,
    reaction: str | None = None,
    text: str | None = None,
    conversation_key: str | None = None,
) -> MessageChanged:
    """A customer's reaction, edit or deletion of a message, with its stable id (one per
    ``change_id``); identities are derived as ``message_received`` derives them, so the
    change finds the same conversation. Raises ``Unusable`` like it."""
    domain = endpoint.domain
    try:
        customer_id, key = _identities(
            config, domain, channel, endpoint_key, customer_address, conversation_key
        )
        checked_identifier("provider message id", provider_message_id, PROVIDER_MESSAGE_ID_MAX)
        checked_identifier("change id", change_id, PROVIDER_MESSAGE_ID_MAX)
    except UnusableValue as exc:
        raise Unusable(str(exc), domain=domain) from None
    return MessageChanged(
        id=inbound_event_id(domain, channel.value, f"{change_id}/change/{change.value}"),
        domain=domain,
        occurred_at=plausible_time(sent_at, received_at),
        channel=channel,
        endpoint=endpoint_key,
        customer_address=customer_address,
        customer_id=customer_id,
        conversation_key=key,
        provider_message_id=provider_message_id,
        change=change,
        change_id=change_id,
        reaction=_clean_optional(reaction, REACTION_MAX),
        text=None if text is None else clean_text(text, CHANNEL_TEXT_MAX[channel.value]),
    )


def delivery_status_changed(
    endpoint: Endpoint,
    *,
    channel: Channel,
    provider_message_id: str,
    provider_status: str,
    status: DeliveryStatus,
    received_at: float,
    sent_at: float | None = None,
    error_code: str | None = None,
    outbound_id: str | None = None,
) -> DeliveryStatusChanged:
    """A provider's report on a message we sent, with its stable id (one per message and
    provider status word); raises ``Unusable`` like ``message_received``.

    ``outbound_id``: our id of the message as the provider echoes it back (WhatsApp's
    ``biz_opaque_callback_data``). One that cannot be ours (empty, longer than
    ``EVENT_ID_MAX``, control characters: another application on the same account may set
    that field) is left out, and the status still counts by its provider message id."""
    domain = endpoint.domain
    try:
        checked_identifier("provider message id", provider_message_id, PROVIDER_MESSAGE_ID_MAX)
        if error_code is not None:
            checked_identifier("error code", error_code, CODE_MAX)
    except UnusableValue as exc:
        raise Unusable(str(exc), domain=domain) from None
    return DeliveryStatusChanged(
        id=inbound_event_id(
            domain, channel.value, f"{provider_message_id}/status/{provider_status}"
        ),
        domain=domain,
        occurred_at=plausible_time(sent_at, received_at),
        channel=channel,
        provider_message_id=provider_message_id,
        status=status,
        error_code=error_code,
        outbound_id=_our_id(outbound_id),
        provider_status=_optional_identifier(provider_status, CODE_MAX),
    )


def read_through(
    config: ChannelsConfig,
    endpoint: Endpoint,
    *,
    channel: Channel,
    endpoint_key: str,
    customer_address: str,
    watermark: float,
    received_at: float,
    provider_status: str = "read",
    conversation_key: str | None = None,
) -> DeliveryStatusChanged | None:
    """A read receipt naming no message (Messenger's ``read.watermark``): everything we
    sent the customer in that conversation up to ``watermark`` was read. Its id is one per
    conversation and watermark, so a redelivery is the same event. None when the watermark
    is not a plausible time (``plausible_time``: a receipt for no believable moment says
    nothing). Raises ``Unusable`` like ``message_received``."""
    if plausible_time(watermark, received_at) != watermark:
        return None
    domain = endpoint.domain
    try:
        _, key = _identities(
            config, domain, channel, endpoint_key, customer_address, conversation_key
        )
    except UnusableValue as exc:
        raise Unusable(str(exc), domain=domain) from None
    return DeliveryStatusChanged(
        id=inbound_event_id(domain, channel.value, f"{key}/read_through/{watermark!r}"),
        domain=domain,
        occurred_at=watermark,
        channel=channel,
        provider_message_id="",
        status=DeliveryStatus.READ,
        provider_status=_optional_identifier(provider_status, CODE_MAX),
        read_through=watermark,
        conversation_key=key,
    )


def _our_id(outbound_id: str | None) -> str | None:
    """An echoed outbound id when it can be one of ours, else None."""
    if outbound_id and is_identifier(outbound_id, EVENT_ID_MAX):
        return outbound_id
    return None


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value is None else value.strip()
