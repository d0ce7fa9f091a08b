"""Requests and responses of the agent desktop's reads (``router.api.desktop``), and limits.

The limits are here, below both the handlers and their OpenAPI operations
(``router.api.desktop_operations``), so that the document states the numbers the handlers
enforce. Times are seconds since the Unix epoch (UTC), as everywhere in the API. History
entries extend the conversation timeline's (``router.api.models``) with the conversation
they belong to.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec

from router.api.models import TimelineAssignment, TimelineMessage
from router.engine import ConversationStatus
from schemas import BotHandoff, Channel, Handoff
from schemas.limits import (
    ATTRIBUTE_KEY_MAX,
    ATTRIBUTE_VALUE_MAX,
    CONVERSATION_ID_MAX,
    EVENT_ID_MAX,
    is_identifier,
)

LIST_LIMIT = 50
"""Conversations on a page of the list, unless ``limit`` says otherwise."""
LIST_LIMIT_MAX = 200
HISTORY_LIMIT = 50
"""Entries on a page of a customer's history, unless ``limit`` says otherwise."""
HISTORY_LIMIT_MAX = 200
CURSOR_MAX = 1024
"""Characters of a ``cursor``."""
MOMENT_MAX = 64
"""Characters of ``since`` and ``until``."""
OPEN_SHOWN_MAX = 100
"""Open conversations listed in a customer's profile (most recently active first)."""
OPEN = "open"
"""The ``status`` filter's name for every status but ``closed``."""
STATUS_VALUES = (*(str(status) for status in ConversationStatus), OPEN)
"""What ``status`` takes (repeated, or comma-separated: at most one of each)."""
OPEN_STATUSES = frozenset(s for s in ConversationStatus if s is not ConversationStatus.CLOSED)
ALL_STATUSES = frozenset(ConversationStatus)


# -- requests -----------------------------------------------------------------------


class ConversationFilters(msgspec.Struct, frozen=True, kw_only=True):
    """What a list asks for, from its query string (each ``None``: any)."""

    statuses: frozenset[ConversationStatus] = ALL_STATUSES
    queue: str | None = None
    agent_id: str | None = None
    """Owner (of an open conversation: closing ends the owner period)."""
    customer_id: str | None = None
    """Any identity of the customer's profile."""
    channel: Channel | None = None
    since: datetime | None = None
    """``opened_at`` at or after."""
    until: datetime | None = None
    """``opened_at`` before."""
    mine: str | None = None
    """This agent's open conversations: owned or offered to it."""
    attributes: tuple[tuple[str, str], ...] = ()
    """(key, value) pairs the conversation's attributes must all hold."""


ATTRIBUTE_FILTERS_MAX = 5
"""``attribute`` filters one list may combine."""
_ATTRIBUTE_KEY = re.compile(rf"[A-Za-z0-9_.-]{{1,{ATTRIBUTE_KEY_MAX}}}")


def attribute_filters(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``key:value`` filters, sorted; ``ValueError`` says what is wrong."""
    if len(values) > ATTRIBUTE_FILTERS_MAX:
        raise ValueError(f"attribute takes at most {ATTRIBUTE_FILTERS_MAX} filters")
    pairs = []
    for item in values:
        key, sep, value = item.partition(":")
        if not sep or not _ATTRIBUTE_KEY.fullmatch(key):
            raise ValueError(
                f"attribute is key:value, the key 1 to {ATTRIBUTE_KEY_MAX} of A-Z a-z 0-9 _ . -"
            )
        if not is_identifier(value, ATTRIBUTE_VALUE_MAX):
            raise ValueError(
                f"an attribute value is at most {ATTRIBUTE_VALUE_MAX} characters, none a"
                " control character"
            )
        pairs.append((key, value))
    return tuple(sorted(pairs))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
Micros = Annotated[
    int,
    msgspec.Meta(
        ge=(datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // _MICROSECOND,
        le=(datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // _MICROSECOND,
    ),
]
"""A moment as whole microseconds since the epoch: PostgreSQL's precision, exactly."""
Digest = Annotated[str, msgspec.Meta(max_length=32)]
ENTRY_ID_MAX = max(CONVERSATION_ID_MAX, EVENT_ID_MAX)
"""A history entry's id: a conversation's, an assignment's or a message's."""


class ListCursor(msgspec.Struct, frozen=True, array_like=True):
    """What a list's ``cursor`` holds (base64url JSON): after which conversation the
    page starts."""

    version: Literal[1]
    at: Micros
    conversation_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CONVERSATION_ID_MAX)]
    check: Digest
    """Of the position and the filters: an edited cursor, or one of other filters, is
    refused. Not a secret: a forged position reveals nothing (visibility is the query's)."""


class HistoryCursor(msgspec.Struct, frozen=True, array_like=True):
    """What a history's ``cursor`` holds: before which entry the page ends."""

    version: Literal[2]
    """2 since hand-offs joined the entries (their rank comes before assignments'): a
    cursor of version 1 is refused, not read with other ranks."""
    at: Micros
    rank: Annotated[int, msgspec.Meta(ge=0, le=4)]
    entry_id: Annotated[str, msgspec.Meta(min_length=1, max_length=ENTRY_ID_MAX)]
    check: Digest
    """Of the position and the profile (as ``ListCursor.check``)."""


# -- the list -----------------------------------------------------------------------


class ConversationItem(msgspec.Struct, frozen=True, kw_only=True):
    """A conversation as the desktop lists it: no message text (read the conversation
    for its timeline)."""

    conversation_id: str
    status: ConversationStatus
    channel: Channel
    queue: str
    customer_id: str
    """The identity the conversation came from (a customer's profile may have several)."""
    owner_agent_id: str | None
    """The person who owns it (null while a bot does)."""
    offered_to: str | None
    """The agent an offer waits for (status ``offered``)."""
    preferred_agent_id: str | None
    bot_id: str | None = None
    """The bot that owns it (status ``bot``)."""
    handoff: BotHandoff | None = None
    """The latest hand-off from a bot to people: what the bot learned."""
    priority: int
    opened_at: float
    last_customer_message_at: float
    last_agent_reply_at: float | None
    closed_at: float | None
    message_count: int
    reply_window_ends_at: float | None
    """When the channel's free-form reply window closes; null for channels without one."""
    reply_window_closed: bool
    """The window closed: a reply needs a template."""
    skills: tuple[str, ...] = ()
    """Skills an agent needs for it, beyond its queue step's."""
    language: str | None = None
    attributes: dict[str, str] = {}
    snoozed_until: float | None = None
    """Set while its owner snoozed it: when it comes back."""
    offer_expires_at: float | None = None
    """When the pending offer expires (status ``offered``)."""
    position: int | None = None
    """While it waits: its place in its line, 1 being next (as in the conversation's view)."""
    expected_wait_seconds: float | None = None
    """While it waits: the router's expected wait, counted down to now; null when unknown."""
    updated_at: float
    """When the router last changed the conversation (for a closed one: when it closed).
    The list's order: most recent first."""


class ConversationsPage(msgspec.Struct, frozen=True, kw_only=True):
    conversations: list[ConversationItem]
    """Most recently active first (``updated_at`` descending, then conversation id)."""
    next_cursor: str | None
    """Pass as ``cursor``, with the same filters, for the next page; null on the last."""


# -- the customer -------------------------------------------------------------------


class CustomerIdentity(msgspec.Struct, frozen=True, kw_only=True):
    identity: str
    """An address the customer reached us from (``webchat:…``, ``phone:…``, ``user:…``)."""
    source: str
    """How it was linked (the router's word for it); ``profile`` for the profile's own id."""
    linked_at: float | None
    """Null for the profile's own id."""


class AffinityAgent(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    score: float
    """Decayed to now: it grows with each assignment and resolution, and halves every
    ``routing.affinity.half_life``."""


class CustomerCounts(msgspec.Struct, frozen=True, kw_only=True):
    conversations: int
    open_conversations: int
    messages: int
    """Messages the customer wrote, in all their conversations (agents' replies are not
    counted)."""
    by_channel: dict[Channel, int]
    """Conversations per channel."""
    first_contact_at: float | None
    """When the first conversation opened."""
    last_contact_at: float | None
    """When the customer last wrote."""


class CustomerProfile(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    """The profile's id. Asked by another of its identities, the profile answers with its
    own id here: the id in the path is one of ``identities``."""
    identities: list[CustomerIdentity]
    """The profile's own id first, then every identity linked to it."""
    owner_agent_id: str | None
    """The explicit owner: preferred before anyone else."""
    last_agent_id: str | None
    """The agent who last handled the customer, on any channel."""
    last_handled_at: float | None
    affinity: list[AffinityAgent]
    """Agents who served the customer, best first."""
    open_conversations: list[ConversationItem]
    """Most recently active first, at most 100."""
    counts: CustomerCounts


# -- the history --------------------------------------------------------------------


class HistoryOpened(msgspec.Struct, frozen=True, kw_only=True, tag="opened", tag_field="kind"):
    """A conversation of the customer opened."""

    at: float
    conversation_id: str
    channel: Channel
    queue: str
    customer_id: str
    """The identity it came from."""


class HistoryAssignment(TimelineAssignment, frozen=True, kw_only=True, tag="assignment"):
    """An owner period (or an offer) of one of the customer's conversations."""

    conversation_id: str
    channel: Channel


class HistoryMessage(TimelineMessage, frozen=True, kw_only=True, tag="message"):
    """A message of one of the customer's conversations: theirs, or a reply of an agent
    (``agent_id``) or a bot (``bot_id``) with its delivery status."""

    conversation_id: str


class HistoryHandoff(msgspec.Struct, frozen=True, kw_only=True, tag="handoff", tag_field="kind"):
    """A bot handed one of the customer's conversations to people (its latest hand-off):
    what the bot learned, for whoever answers next."""

    at: float
    """When the bot handed it off."""
    conversation_id: str
    channel: Channel
    bot_id: str
    handoff: Handoff
    """Why (``reason``), and what the bot learned."""


class HistoryClosed(msgspec.Struct, frozen=True, kw_only=True, tag="closed", tag_field="kind"):
    """A conversation of the customer closed."""

    at: float
    conversation_id: str
    channel: Channel
    reason: str | None


HistoryEntry = HistoryOpened | HistoryMessage | HistoryHandoff | HistoryAssignment | HistoryClosed


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str
    """The profile's id (see the profile)."""
    entries: list[HistoryEntry]
    """Oldest first within the page; the first page holds the newest entries. At the
    same instant: opened, message, handoff, assignment, closed."""
    next_cursor: str | None
    """Pass as ``cursor`` for the page of older entries; null when there are none."""
