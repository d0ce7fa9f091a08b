"""The longest value of every kind of text field, and which characters a field may hold.

The event Structs carry these maxima as ``Annotated[str, msgspec.Meta(max_length=…)]``, so
the generated JSON Schemas and the AsyncAPI document state them and the router's decoders
refuse an oversize record as invalid (a dead letter, not a stalled batch). The API's
request models reuse the same types; the edges (``adapters.normalize``,
``adapters.webchat``, ``router.api``) apply ``clean_text`` and ``checked_identifier``
before anything is published.

Why these numbers. PostgreSQL refuses a btree index entry larger than 2,704 bytes (a third
of an 8 kB page) and UTF-8 takes up to 4 bytes a character. The widest index entries are
``customers`` (domain, customer_id) and ``conversations_by_customer`` (domain, customer_id,
opened_at): at most 4 * (64 + 512) + 8 = 2,312 bytes with their headers well under the
limit. Agent ids (``conversations_by_owner``, ``assignments_by_agent``: 4 * (64 + 128)),
conversation ids and event ids (primary keys: 4 * (64 + 256)) and provider message ids
(``outbound_by_provider_id``: 4 * 512 + a channel name) stay below it too. Free text is
not indexed: its bound keeps a record far below a Kafka record's 1 MiB at 4 bytes a
character. Provider limits are smaller still (``CHANNEL_TEXT_MAX``).

Which characters. PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000, and UTF-8 cannot
encode a lone surrogate (U+D800 to U+DFFF), so neither may reach an event. Free text
(message text, subjects, names, file names) is normalised by ``clean_text``: NUL removed,
a lone surrogate replaced by U+FFFD. An identifier or an address is never changed, since
that could route a message to someone else: ``checked_identifier`` refuses one that holds a
C0 control (U+0000 to U+001F), DEL or a lone surrogate, or is longer than its maximum.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Annotated, TypeVar

import msgspec

T = TypeVar("T")

DOMAIN_MAX = 64
"""Routing domain ids (configured: letters, digits, ``-`` and ``_``)."""
EVENT_ID_MAX = 128
"""Event ids (CloudEvents ``id``: UUIDs today), assignment, message and outbound ids."""
AGENT_ID_MAX = 128
"""Agent ids (the API allows letters, digits and ``. _ @ : -``)."""
QUEUE_MAX = 64
"""Queue names."""
SKILL_MAX = 64
"""Skill names."""
LIST_MAX = 100
"""Skills or queues of one agent."""
ENDPOINT_MAX = 320
"""Our side of a channel: a phone number, page, account or bot, an email address."""
ADDRESS_MAX = 320
"""A customer's channel identity. The longest real one is an email address: 64
characters of local part, ``@`` and 255 of domain."""
CUSTOMER_ID_MAX = 512
"""Customer ids: a channel or ``phone:`` prefix and an address, or ``user:`` and a web
chat visitor's signed-in user id."""
CONVERSATION_ID_MAX = 256
"""Conversation ids."""
CONVERSATION_KEY_MAX = 1024
"""Thread keys: ``{channel}:{endpoint}:{address}``, or for email
``email:{our address}:{Message-ID of the thread root}``."""
PROVIDER_MESSAGE_ID_MAX = 512
"""A provider's message id (Twilio SID, WhatsApp ``wamid``, Messenger ``mid``, an email
``Message-ID`` …)."""
TEXT_MAX = 65_536
"""Message text on any channel (email bodies are the longest; see ``CHANNEL_TEXT_MAX``)."""
REPLY_TEXT_MAX = 10_000
"""An agent's reply (the API's limit: every channel but email takes at most 4,096)."""
SUBJECT_MAX = 998
"""Email subjects (RFC 5322's line length)."""
NAME_MAX = 200
"""Display names (agents)."""
URL_MAX = 4096
"""Attachment URLs (Meta's signed CDN URLs run to several hundred characters)."""
FILENAME_MAX = 255
"""Attachment file names (the usual file system limit)."""
CONTENT_TYPE_MAX = 255
"""Media types (RFC 6838: 127 characters of type and of subtype)."""
CODE_MAX = 64
"""Error codes, reasons and other short machine words."""
NONCE_MAX = 256
"""A provider's one-time webhook token (Mailgun's ``token``: 50 characters), kept in the
``webhook_nonces`` primary key (provider, nonce): 4 * (64 + 256) bytes at most."""
TIMEZONE_MAX = 64
"""IANA time zone names."""
ATTACHMENTS_MAX = 100
CONTACTS_MAX = 10
"""Contact cards in one message."""
CONTACT_ITEMS_MAX = 20
"""Phone numbers, and email addresses, on one contact card."""
CAPTION_MAX = 4_096
"""Characters of a media item's caption (Telegram's and WhatsApp's are shorter)."""
REACTION_MAX = 32
"""Characters of a reaction (one emoji, maybe with modifiers, or a provider's name for it)."""
"""Attachments of one message (Twilio delivers at most 10; an email may carry dozens)."""
SCHEDULE_MAX = 100
ATTRIBUTES_MAX = 50
"""Free attributes on a conversation (``order_id``, ``campaign`` …)."""
ATTRIBUTE_KEY_MAX = 64
ATTRIBUTE_VALUE_MAX = 256
LANGUAGE_MAX = 35
"""A BCP 47 language tag (``fr``, ``pt-BR``, ``zh-Hant-TW``)."""
PRIORITY_MAX = 1000
"""Conversation priorities lie in ``-PRIORITY_MAX`` to ``PRIORITY_MAX`` (higher first)."""
BOT_ID_MAX = 64
"""Bot ids (configured: letters, digits, ``-`` and ``_``)."""
SUMMARY_MAX = 4000
"""A bot's hand-off summary (what the human reads first)."""
NOTE_MAX = 1000
"""A hand-back note to a bot."""
QUICK_REPLIES_MAX = 13
"""Quick replies of one message (Messenger's limit, the strictest of the channels)."""
QUICK_REPLY_MAX = 20
"""One quick reply's title (Messenger: 20 characters)."""
TEMPLATE_NAME_MAX = 512
"""A message template's name (WhatsApp: 512) or a provider's template id (Twilio Content SID)."""
TEMPLATE_PARAMETERS_MAX = 100
TEMPLATE_PARAMETER_MAX = 1024
"""One template parameter's text (WhatsApp body parameters: 1,024 characters)."""
CLIENT_KEY_MAX = 128
"""A client's idempotency key for a business-started message."""
CAMPAIGN_ID_MAX = 64
ERASED_CONVERSATIONS_MAX = 5_000
"""Conversation ids one ``customer.erased`` names (the most recent first)."""
ANSWER_WINDOW_MAX = 30 * 24 * 3600.0
"""How long, at most, replies to a business-started message go to its named answerer."""
"""Working intervals of one agent's week."""

CHANNEL_TEXT_MAX: dict[str, int] = {
    "sms": 1_600,  # Twilio's longest (concatenated) message body
    "whatsapp": 4_096,  # WhatsApp Cloud API text body
    "messenger": 2_000,  # Messenger Send API text
    "instagram": 1_000,  # Instagram messaging text
    "telegram": 4_096,  # Bot API message text (captions: 1,024)
    "webchat": TEXT_MAX,  # bounded per domain by webchat.max_text_chars (default 4,000)
    "email": TEXT_MAX,
    "rcs": 3_072,  # RBM text message
    "x": 10_000,  # X direct message text
    "viber": 1_000,  # Vonage Messages API, Viber text
}
"""Longest message text per channel (by ``Channel`` value): what the provider itself
sends at most. Provider webhooks cut longer text there (see ``clean_text``)."""

PROVIDER_TEXT_MAX: dict[tuple[str, str], int] = {
    ("twilio", "whatsapp"): CHANNEL_TEXT_MAX["sms"],  # Twilio's Body on every channel (21617)
    ("vonage", "messenger"): 640,  # Vonage Messages API, Messenger text
}
"""Where the provider an endpoint is on takes less text than its channel's own maximum
(``CHANNEL_TEXT_MAX``): by (endpoint kind, ``Channel`` value)."""

EPOCH_MAX = 253_402_300_799.0
"""9999-12-31T23:59:59Z: the last second Python's datetime (and so CloudEvents' ``time``)
can represent."""
PLAUSIBLE_PAST_SECONDS = 30 * 24 * 3600.0
"""A provider's timestamp older than this, against our receive time, is not believed:
longer than any provider redelivers (Meta up to 7 days, Mailgun 8 hours, Telegram 24 h)."""
PLAUSIBLE_FUTURE_SECONDS = 15 * 60.0
"""A provider's timestamp ahead of our receive time by more than this is not believed
(clock skew is smaller)."""

Domain = Annotated[str, msgspec.Meta(max_length=DOMAIN_MAX)]
EventId = Annotated[str, msgspec.Meta(max_length=EVENT_ID_MAX)]
AgentId = Annotated[str, msgspec.Meta(max_length=AGENT_ID_MAX)]
QueueName = Annotated[str, msgspec.Meta(max_length=QUEUE_MAX)]
SkillName = Annotated[str, msgspec.Meta(max_length=SKILL_MAX)]
Endpoint = Annotated[str, msgspec.Meta(max_length=ENDPOINT_MAX)]
Address = Annotated[str, msgspec.Meta(max_length=ADDRESS_MAX)]
CustomerId = Annotated[
    str, msgspec.Meta(max_length=CUSTOMER_ID_MAX, extra={"names": "customer identity"})
]
"""A customer identity; the ``extra`` marks the type apart from other strings of the same
length, for ``router.engine.residency`` (what an input names is loaded before it applies)."""
ConversationId = Annotated[str, msgspec.Meta(max_length=CONVERSATION_ID_MAX)]
ConversationKey = Annotated[str, msgspec.Meta(max_length=CONVERSATION_KEY_MAX)]
ProviderMessageId = Annotated[str, msgspec.Meta(max_length=PROVIDER_MESSAGE_ID_MAX)]
Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
Subject = Annotated[str, msgspec.Meta(max_length=SUBJECT_MAX)]
Caption = Annotated[str, msgspec.Meta(max_length=CAPTION_MAX)]
Reaction = Annotated[str, msgspec.Meta(max_length=REACTION_MAX)]
Name = Annotated[str, msgspec.Meta(max_length=NAME_MAX)]
Url = Annotated[str, msgspec.Meta(max_length=URL_MAX)]
Filename = Annotated[str, msgspec.Meta(max_length=FILENAME_MAX)]
ContentType = Annotated[str, msgspec.Meta(max_length=CONTENT_TYPE_MAX)]
Code = Annotated[str, msgspec.Meta(max_length=CODE_MAX)]
TimeZone = Annotated[str, msgspec.Meta(max_length=TIMEZONE_MAX)]
BotId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=BOT_ID_MAX, pattern=r"^[A-Za-z0-9_-]+$")
]
Summary = Annotated[str, msgspec.Meta(max_length=SUMMARY_MAX, pattern=r"^[^\x00]*$")]
Note = Annotated[str, msgspec.Meta(max_length=NOTE_MAX, pattern=r"^[^\x00]*$")]
ReplyText = Annotated[str, msgspec.Meta(max_length=REPLY_TEXT_MAX, pattern=r"^[^\x00]*$")]
"""A reply written by a bot (NUL refused: storage cannot hold it)."""
QuickReply = Annotated[
    str, msgspec.Meta(min_length=1, max_length=QUICK_REPLY_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=EPOCH_MAX)]
"""Seconds since the Unix epoch (UTC), no later than ``EPOCH_MAX``."""
Priority = Annotated[int, msgspec.Meta(ge=-PRIORITY_MAX, le=PRIORITY_MAX)]
Language = Annotated[
    str, msgspec.Meta(max_length=LANGUAGE_MAX, pattern=r"^([A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*)?$")
]
"""A BCP 47 tag; empty clears a conversation's language."""
AttributeKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=ATTRIBUTE_KEY_MAX, pattern=r"^[A-Za-z0-9_.-]+$")
]
AttributeValue = Annotated[
    str, msgspec.Meta(max_length=ATTRIBUTE_VALUE_MAX, pattern=r"^[^\x00-\x1f\x7f]*$")
]
Attributes = Annotated[dict[AttributeKey, AttributeValue], msgspec.Meta(max_length=ATTRIBUTES_MAX)]
"""Free attributes of a conversation: its routing and reporting context."""
TemplateName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=TEMPLATE_NAME_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")
]
TemplateParameter = Annotated[
    str, msgspec.Meta(max_length=TEMPLATE_PARAMETER_MAX, pattern=r"^[^\x00\x7f]*$")
]
ClientKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=CLIENT_KEY_MAX, pattern=r"^[\x21-\x7e]+$")
]
"""Printable ASCII, no spaces."""
CampaignId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=CAMPAIGN_ID_MAX, pattern=r"^[A-Za-z0-9_.:-]+$")
]

# U+FFFD too: a JSON decoder reads a lone surrogate escape as it (``decode_json_text``), and
# an identifier is never changed (two customers' ids cut differently would become one).
_NOT_IN_IDENTIFIERS = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffd]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# A JSON string escape of a lone UTF-16 surrogate. Escaped backslashes are matched as
# units first, so ``\\ud800`` (a backslash, then the letters ``ud800``) is left alone.
_SURROGATE_ESCAPE = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
)


class UnusableValue(ValueError):
    """A value no event may carry; the message names the field and why, never the value."""


def clean_text(value: str, max_chars: int | None = None) -> str:
    """Free text as storage can hold it: NUL removed, each lone surrogate replaced by
    U+FFFD, and cut to ``max_chars`` (ending with "…") when given and exceeded."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", value)
    if max_chars is not None and len(value) > max_chars:
        value = value[: max_chars - 1] + "…"
    return value


_KEYWORD_TRAILING = re.compile(r"[\s.!?¡¿,;:]+$")


def keyword_form(text: str) -> str:
    """How a keyword is compared with a whole message: accents, case, surrounding spaces
    and final punctuation set aside."""
    folded = text.strip()
    if not folded.isascii():
        # ASCII has no decomposition and no combining mark: most messages skip this
        # (a customer's every message is compared, 1.6 µs of 2.3 for a short one).
        folded = unicodedata.normalize("NFKD", folded)
        folded = "".join(c for c in folded if not unicodedata.combining(c))
    return _KEYWORD_TRAILING.sub("", folded).upper()


def checked_identifier(field: str, value: str, max_chars: int) -> str:
    """``value`` unchanged, or ``UnusableValue`` when it is longer than ``max_chars`` or
    holds a C0 control, DEL, a lone surrogate or U+FFFD (what JSON's lone surrogate
    escapes are read as)."""
    if len(value) > max_chars:
        raise UnusableValue(f"{field} is longer than {max_chars} characters")
    if _NOT_IN_IDENTIFIERS.search(value):
        raise UnusableValue(f"{field} holds a control character, a lone surrogate or U+FFFD")
    return value


def is_identifier(value: str, max_chars: int) -> bool:
    """Whether ``checked_identifier`` would accept ``value``."""
    return len(value) <= max_chars and not _NOT_IN_IDENTIFIERS.search(value)


def domain_of_key(key: bytes | None) -> str | None:
    """The domain a record's key names (every record of ours is keyed by domain), or None
    when the key cannot be a domain id."""
    if key is None or len(key) > DOMAIN_MAX:
        return None
    try:
        domain = key.decode()
    except UnicodeDecodeError:
        return None
    return domain if is_identifier(domain, DOMAIN_MAX) else None


def replace_lone_surrogate_escapes(body: bytes) -> bytes:
    """A JSON document with every ``\\uD800``-style escape of a lone surrogate replaced by
    ``\\uFFFD``. JSON allows such escapes (RFC 8259 §8.2) but they encode no character:
    msgspec refuses them, and a sender that cut a string inside an emoji produces them."""

    def replace(match: re.Match[bytes]) -> bytes:
        return b"\\ufffd" if match.group(1) else match.group(0)

    return _SURROGATE_ESCAPE.sub(replace, body)


def decode_json_text(decode: Callable[[bytes], T], body: bytes) -> T:
    """``decode(body)``; when that fails, once more with every lone surrogate escape read
    as U+FFFD (``replace_lone_surrogate_escapes``). Errors are ``decode``'s own."""
    try:
        return decode(body)
    except msgspec.DecodeError:
        original = bytes(body)  # ``body`` may be a ``msgspec.Raw`` slice of a document
        repaired = replace_lone_surrogate_escapes(original)
        if repaired == original:
            raise
        return decode(repaired)
