"""Request and response bodies of the router API (also the source of ``/openapi.json``).

Times are seconds since the Unix epoch (UTC), as in the events. Request bodies keep to
``schemas.limits``: the maxima are ``msgspec.Meta`` constraints (so ``/openapi.json``
states them), identifiers holding a control character are refused (400), and free text
(an agent's name, a reply's text, subject and file names) has NUL removed and each lone
surrogate replaced by U+FFFD (``__post_init__``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec

from router.engine import time_zone
from schemas import AgentSchedule, Attachment, BotHandoff, Channel, Location, Presence
from schemas.limits import (
    AGENT_ID_MAX,
    BOT_ID_MAX,
    CODE_MAX,
    CONTENT_TYPE_MAX,
    CUSTOMER_ID_MAX,
    EPOCH_MAX,
    FILENAME_MAX,
    LIST_MAX,
    NAME_MAX,
    NOTE_MAX,
    QUEUE_MAX,
    REPLY_TEXT_MAX,
    SKILL_MAX,
    SUBJECT_MAX,
    URL_MAX,
    Attributes,
    BotId,
    Language,
    Priority,
    checked_identifier,
    clean_text,
)

#: No control characters, nor U+FFFD, which a lone surrogate escape is read as (checked
#: again after decoding: a JSON Schema ``$`` does not allow a trailing newline, Python's
#: does).
NO_CONTROLS = r"^[^\x00-\x1f\x7f\ufffd]+$"

AgentId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=AGENT_ID_MAX, pattern=r"^[A-Za-z0-9_.@:-]+$")
]
QueueName = Annotated[str, msgspec.Meta(min_length=1, max_length=QUEUE_MAX, pattern=NO_CONTROLS)]
SkillName = Annotated[str, msgspec.Meta(min_length=1, max_length=SKILL_MAX, pattern=NO_CONTROLS)]
Capacity = Annotated[int, msgspec.Meta(ge=0, le=1000)]
Reason = Annotated[
    str, msgspec.Meta(min_length=1, max_length=CODE_MAX, pattern=r"^[A-Za-z0-9_.:-]+$")
]


def _check_identifiers(field: str, values: tuple[str | None, ...], limit: int) -> None:
    for value in values:
        if value is not None:
            checked_identifier(field, value, limit)


# -- requests -----------------------------------------------------------------------


class AgentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Register or update an agent (the whole profile)."""

    name: Annotated[str, msgspec.Meta(max_length=NAME_MAX)] = ""
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    queues: Annotated[tuple[QueueName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    capacity: dict[Channel, Capacity] = {}
    """Concurrent conversations per channel; a channel absent here is not served."""
    schedule: AgentSchedule | None = None
    """Weekly working hours in an IANA time zone: routing expects the agent back at their
    next shift and, with ``on_shift_end = "rehome"``, re-homes their conversations at
    shift end. None: no schedule."""

    def __post_init__(self) -> None:
        _check_identifiers("skills", self.skills, SKILL_MAX)
        _check_identifiers("queues", self.queues, QUEUE_MAX)
        msgspec.structs.force_setattr(self, "name", clean_text(self.name))
        if self.schedule is not None:
            zone = self.schedule.timezone
            try:
                time_zone(zone)
            except ValueError:
                raise ValueError(f"unknown time zone {zone!r}") from None


class PresenceIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    status: Presence


class OwnerIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The customer's explicit owner: preferred before anyone else."""

    agent_id: AgentId

    def __post_init__(self) -> None:
        _check_identifiers("agent_id", (self.agent_id,), AGENT_ID_MAX)


class AcceptIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Accept an offer, or pick up a waiting or overflowed conversation."""

    agent_id: AgentId | None = None
    """Who takes it: an agent token takes it itself (omit, or its own id); an admin must
    name the agent."""

    def __post_init__(self) -> None:
        _check_identifiers("agent_id", (self.agent_id,), AGENT_ID_MAX)


class CloseIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason = "resolved"

    def __post_init__(self) -> None:
        _check_identifiers("reason", (self.reason,), CODE_MAX)


class DeclineIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Turn down an offer: it moves on at once, and it is not counted as a missed offer."""

    reason: Reason = "declined"
    """Why, as a code (``on_a_call``, ``wrong_language`` …): kept on the offer's record."""
    agent_id: AgentId | None = None
    """Admin only: the agent declining (an agent token declines as itself)."""

    def __post_init__(self) -> None:
        _check_identifiers("reason", (self.reason,), CODE_MAX)


class SnoozeIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Put an owned conversation aside until a time (at most 90 days ahead)."""

    until: Annotated[float, msgspec.Meta(ge=0, le=EPOCH_MAX)]
    """Seconds since the Unix epoch at which it comes back to its owner."""


class ConversationUpdateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A conversation's routing context; a field left out is unchanged."""

    priority: Priority | None = None
    """Higher waits less (-1000 to 1000)."""
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] | None = None
    """Skills an agent needs for it, beyond its queue step's (replaces the set)."""
    language: Language | None = None
    """BCP 47 tag (``fr``, ``pt-BR``); empty clears it. With the domain's
    ``language_skill``, agents need the skill ``lang:<language>``."""
    attributes: Attributes | None = None
    """Free context (``order_id``, ``campaign`` …; replaces the whole map): shown in the
    desktop API and on ``conversation.updated``."""

    def __post_init__(self) -> None:
        _check_identifiers("skills", self.skills or (), SKILL_MAX)

    def is_empty(self) -> bool:
        return (
            self.priority is None
            and self.skills is None
            and self.language is None
            and self.attributes is None
        )


class TakeoverIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Take over a conversation a bot owns: the person owns it at once."""

    agent_id: AgentId | None = None
    """Who takes it: an agent token takes it itself (omit, or its own id); an admin must
    name the agent."""

    def __post_init__(self) -> None:
        _check_identifiers("agent_id", (self.agent_id,), AGENT_ID_MAX)


class HandbackIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hand a conversation you own back to a bot (a survey, after hours)."""

    bot_id: BotId | None = None
    """The bot (a ``bots`` entry of the domain's routing); default: the bot of the
    conversation's queue."""
    note: Annotated[str, msgspec.Meta(max_length=NOTE_MAX)] = ""
    """For the bot: it comes in the ``bot.turn`` that starts its part."""

    def __post_init__(self) -> None:
        _check_identifiers("bot_id", (self.bot_id,), BOT_ID_MAX)
        msgspec.structs.force_setattr(self, "note", clean_text(self.note))


class IdentityIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An identity to link to the customer: ``kind:value`` (``schemas.identity``)."""

    identity: Annotated[
        str, msgspec.Meta(min_length=3, max_length=CUSTOMER_ID_MAX, pattern=NO_CONTROLS)
    ]


class MergeIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The customer to fold into the one in the path (the same person)."""

    from_customer_id: Annotated[
        str, msgspec.Meta(min_length=1, max_length=CUSTOMER_ID_MAX, pattern=NO_CONTROLS)
    ]

    def __post_init__(self) -> None:
        _check_identifiers("from_customer_id", (self.from_customer_id,), CUSTOMER_ID_MAX)


class TransferIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exactly one of ``to_agent_id`` and ``to_queue``."""

    to_agent_id: AgentId | None = None
    to_queue: QueueName | None = None

    def __post_init__(self) -> None:
        _check_identifiers("to_agent_id", (self.to_agent_id,), AGENT_ID_MAX)
        _check_identifiers("to_queue", (self.to_queue,), QUEUE_MAX)


class AttachmentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A media item of a reply: where the customer's channel fetches it, and what it is."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=URL_MAX, pattern=NO_CONTROLS)]
    content_type: (
        Annotated[str, msgspec.Meta(max_length=CONTENT_TYPE_MAX, pattern=NO_CONTROLS)] | None
    ) = None
    filename: Annotated[str, msgspec.Meta(max_length=FILENAME_MAX)] | None = None
    size_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        _check_identifiers("url", (self.url,), URL_MAX)
        _check_identifiers("content_type", (self.content_type,), CONTENT_TYPE_MAX)
        if self.filename is not None:
            msgspec.structs.force_setattr(self, "filename", clean_text(self.filename))

    def attachment(self) -> Attachment:
        return Attachment(
            url=self.url,
            content_type=self.content_type,
            filename=self.filename,
            size_bytes=self.size_bytes,
        )


class ReplyIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An agent's reply to the customer, sent on the conversation's channel."""

    text: Annotated[str, msgspec.Meta(max_length=REPLY_TEXT_MAX)] = ""
    attachments: Annotated[tuple[AttachmentIn, ...], msgspec.Meta(max_length=10)] = ()
    subject: Annotated[str, msgspec.Meta(max_length=SUBJECT_MAX)] | None = None
    agent_id: AgentId | None = None
    """Admin only: the agent the reply is from (default: the conversation's owner)."""
    location: Location | None = None
    """A place to send, on channels that can (see the README's channel matrix); elsewhere
    the send fails with the reason."""

    def __post_init__(self) -> None:
        _check_identifiers("agent_id", (self.agent_id,), AGENT_ID_MAX)
        msgspec.structs.force_setattr(self, "text", clean_text(self.text))
        if self.subject is not None:
            msgspec.structs.force_setattr(self, "subject", clean_text(self.subject))
        place = self.location
        if place is not None:
            _check_identifiers("location.url", (place.url,), URL_MAX)
            cleaned = msgspec.structs.replace(
                place,
                name=None if place.name is None else clean_text(place.name) or None,
                address=None if place.address is None else clean_text(place.address) or None,
            )
            msgspec.structs.force_setattr(self, "location", cleaned)


class TokenScope(enum.StrEnum):
    """What a token may do (``router.api.auth``)."""

    ADMIN = "admin"
    """Everything in its domain, its domain's tokens included."""
    AGENT = "agent"
    """Acts as one agent of its domain."""
    PLATFORM = "platform"
    """No domain: an admin of every domain, and alone manages platform tokens and reads
    across domains."""


class Caller(msgspec.Struct, frozen=True, kw_only=True):
    """Who the token of a request is (``GET /v1/domains/{domain}/me``)."""

    domain: str
    """The domain asked about."""
    scope: TokenScope
    agent_id: str | None
    """The agent an ``agent`` token acts as."""
    token_id: str | None
    """The token's id (``bootstrap`` for the bootstrap token; null without authentication)."""


class DomainTokenScope(enum.StrEnum):
    """The scopes of a domain's tokens (platform tokens are created under ``/v1/tokens``)."""

    ADMIN = "admin"
    AGENT = "agent"


TOKEN_NAME_MAX = 100
"""Characters of a token's name."""
TOKEN_LIFETIME_MIN_SECONDS = 60
"""Shortest lifetime of a token created with an expiry."""
TOKEN_LIFETIME_MAX_SECONDS = 366 * 24 * 3600
"""Longest lifetime of a token created with an expiry (a token without one never
expires: revoke it)."""
ROTATE_GRACE_MAX_SECONDS = 24 * 3600
"""Longest time a rotated token's previous secret may keep working."""

TokenName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=TOKEN_NAME_MAX, pattern=NO_CONTROLS)
]
Lifetime = Annotated[
    int, msgspec.Meta(ge=TOKEN_LIFETIME_MIN_SECONDS, le=TOKEN_LIFETIME_MAX_SECONDS)
]
Moment = Annotated[float, msgspec.Meta(gt=0, le=EPOCH_MAX)]


def _check_expiry(expires_in_seconds: int | None, expires_at: float | None) -> None:
    if expires_in_seconds is not None and expires_at is not None:
        raise ValueError("give at most one of expires_in_seconds and expires_at")


class PlatformTokenIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new platform token. Without ``expires_in_seconds`` or ``expires_at`` it never
    expires. ``expires_at`` must lie 60 s to 366 days ahead."""

    name: TokenName
    """A label: what or who holds the token (1 to 100 characters)."""
    expires_in_seconds: Lifetime | None = None
    """Lifetime from now: 60 to 31,622,400 (366 days)."""
    expires_at: Moment | None = None
    """Expiry as seconds since the Unix epoch."""

    def __post_init__(self) -> None:
        checked_identifier("name", self.name, TOKEN_NAME_MAX)
        _check_expiry(self.expires_in_seconds, self.expires_at)


class TokenIn(PlatformTokenIn, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new token of the domain: ``admin``, or ``agent`` with its ``agent_id``."""

    scope: DomainTokenScope
    agent_id: AgentId | None = None
    """The agent an agent token acts as (required for ``agent``, refused for ``admin``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_identifiers("agent_id", (self.agent_id,), AGENT_ID_MAX)
        if (self.scope is DomainTokenScope.AGENT) != (self.agent_id is not None):
            raise ValueError("an agent token needs agent_id, an admin token takes none")


class RotateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new secret for the token; the previous one stops working at once, or after
    ``grace_seconds``."""

    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=ROTATE_GRACE_MAX_SECONDS)] = 0
    """How long the previous secret keeps working (0 to 86,400; default 0: not at all),
    for clients that cannot switch at the same instant."""


# -- responses ----------------------------------------------------------------------


class CommandStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    """Published to the router, which applies it (no verdict is awaited)."""
    COMPLETED = "completed"
    """The router applied the command."""
    PENDING = "pending"
    """Published, but no verdict arrived in time: watch the stream or GET the state."""


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """The request was published to the router; ``event_id`` identifies it."""

    event_id: str
    status: CommandStatus = CommandStatus.ACCEPTED


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    error: str
    """Why the request was refused."""
    event_id: str | None = None
    """For a command the router rejected (409): the command's event id."""


class ReplyAccepted(msgspec.Struct, frozen=True, kw_only=True):
    reply_id: str
    """The outbound message id; its delivery status shows in the conversation's timeline."""
    status: str = "queued"


class AgentStats(msgspec.Struct, frozen=True, kw_only=True):
    """Live figures of one agent; "today" is the current UTC day."""

    day: str
    """The UTC day of the ``*_today`` figures (``YYYY-MM-DD``)."""
    open_conversations: int
    """Conversations the agent owns and are not closed (assigned, idle, overflowed)."""
    offered_conversations: int
    """Offers waiting for the agent's accept."""
    handled_today: int
    """Conversations the agent took (accepted or was assigned) today."""
    median_first_response_seconds_today: float | None
    """Median, over conversations the agent answered first today, of the seconds from
    the conversation's opening to that first reply; None without any."""
    preferred_routed_today: int
    """Conversations opened today whose preferred agent was this agent."""
    preferred_hits_today: int
    """Of those, the ones the agent took as the preferred agent."""
    preferred_hit_ratio_today: float | None
    """``preferred_hits_today / preferred_routed_today``; None when nothing was routed."""
    offers_missed_today: int
    """Offers to the agent that expired unanswered today."""
    offers_missed_in_a_row: int
    """Consecutive misses now (the router sets the agent away after the domain's limit)."""


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    name: str
    skills: tuple[str, ...]
    queues: tuple[str, ...]
    capacity: dict[Channel, int]
    schedule: AgentSchedule | None = None
    presence: Presence
    load: dict[Channel, int]
    """Slots in use per channel (assigned and offered conversations)."""
    stats: AgentStats


class TimelineAssignment(
    msgspec.Struct, frozen=True, kw_only=True, tag="assignment", tag_field="kind"
):
    """One owner period (or an offer) of the conversation."""

    at: float
    """When it was offered or assigned."""
    assignment_id: str
    agent_id: str
    strategy: str
    step: str
    waited_seconds: float
    accepted_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None


class TimelineMessage(msgspec.Struct, frozen=True, kw_only=True, tag="message", tag_field="kind"):
    """A message of the conversation: the customer's (inbound), or a reply of an agent or
    a bot."""

    at: float
    message_id: str
    direction: str
    """``inbound`` (customer) or ``outbound`` (a reply, or a business-started message)."""
    channel: Channel
    agent_id: str | None = None
    """The agent who wrote an outbound message (null for a bot's)."""
    bot_id: str | None = None
    """The bot that wrote an outbound message."""
    status: str | None = None
    """Outbound: ``queued``, ``sent``, ``delivered``, ``read`` or ``failed``."""
    error: str | None = None
    text: str = ""
    attachments: tuple[Attachment, ...] = ()


TimelineEntry = TimelineAssignment | TimelineMessage


class ConversationView(msgspec.Struct, frozen=True, kw_only=True):
    conversation_id: str
    status: str
    """``waiting``, ``bot``, ``offered``, ``assigned``, ``idle``, ``overflowed`` or
    ``closed``."""
    channel: Channel
    customer_id: str
    queue: str
    step: str
    owner_agent_id: str | None
    """The person who owns it (null while a bot does: ``bot_id``)."""
    bot_id: str | None = None
    """The bot that owns it (status ``bot``): a person takes it over first to reply."""
    handoff: BotHandoff | None = None
    """The latest hand-off from a bot to people: which bot, when, and what it learned
    (reason, summary, intent, language, skills, priority, attributes)."""
    preferred_agent_id: str | None
    offered_to: str | None
    opened_at: float
    waiting_since: float
    first_response_at: float | None
    last_customer_message_at: float
    last_agent_reply_at: float | None
    closed_at: float | None
    close_reason: str | None
    message_count: int
    priority: int = 0
    skills: tuple[str, ...] = ()
    """Skills an agent needs for it, beyond its queue step's."""
    language: str | None = None
    attributes: dict[str, str] = {}
    snoozed_until: float | None = None
    """Set while its owner snoozed it: when it comes back."""
    reply_window_ends_at: float | None = None
    """When the provider's free-form reply window closes (None: no such window)."""
    reply_window_closed: bool = False
    """Closed: the provider refuses free-form replies (409 ``reply_window_closed``)."""
    position: int | None = None
    """While it waits: its place in its line, 1 being next, as the router last announced
    it (``conversation.queued``, at ``wait_estimated_at``); null otherwise."""
    expected_wait_seconds: float | None = None
    """While it waits: the router's expected wait, counted down from
    ``wait_estimated_at`` to now (0 once that time has passed); null when unknown."""
    wait_estimated_at: float | None = None
    """When the router made the estimate (its latest ``conversation.queued``, or its
    latest save of the waiting conversation)."""
    timeline: list[TimelineEntry]
    """Assignments and messages, oldest first (the most recent ``limit`` of each kind)."""


class QueueView(msgspec.Struct, frozen=True, kw_only=True):
    queue: str
    waiting: int
    """Conversations waiting in the queue (held for a preferred agent included)."""
    offered: int
    """Conversations of the queue offered to an agent, not yet accepted."""
    oldest_wait_seconds: float | None
    agents_online: int
    """Online agents serving the queue (listed in ``queues``, or serving every queue)."""
    free_slots: int
    """Free capacity of those agents, all channels together."""
    assigned_last_hour: int
    median_wait_seconds_last_hour: float | None
    estimated_wait_seconds: float | None
    """Expected wait of a new conversation; None when it cannot be estimated (nobody
    online, or no throughput to measure). See ``router.api.stats.estimate_wait``."""


class QueuesView(msgspec.Struct, frozen=True, kw_only=True):
    domain: str
    at: float
    queues: list[QueueView]


class TokenView(msgspec.Struct, frozen=True, kw_only=True):
    """A token as listed: never its secret, nor the secret's hash."""

    token_id: str
    scope: TokenScope
    domain: str | None
    """Null for a platform token."""
    agent_id: str | None
    name: str
    created_at: float
    created_by: str | None
    """Audit actor: a token id, ``bootstrap``, ``local`` or ``cli``; null for tokens
    created before tokens had a lifecycle."""
    expires_at: float | None
    last_used_at: float | None
    """Last successful authentication, to the minute: written at most once a minute."""
    rotated_at: float | None
    revoked_at: float | None
    revoked_by: str | None


class TokenSecret(TokenView, frozen=True, kw_only=True):
    """A token with its secret: answered once, when created or rotated; only its SHA-256
    is kept."""

    token: str
    """``Authorization: Bearer <token>``."""


class TokensPage(msgspec.Struct, frozen=True, kw_only=True):
    tokens: list[TokenView]
    """Ordered by ``token_id``, revoked tokens included."""
    next_after: str | None
    """Pass as ``after`` for the next page; null on the last page."""


def epoch(moment: datetime | None) -> float | None:
    """A stored time as the answers give it: seconds since the epoch (None stays None)."""
    return None if moment is None else moment.timestamp()
