"""Snapshots of engine state the shell persists (as JSONB) and hands back to ``restore``.

Records are immutable values built only when something changed; the live state is the
mutable ``__slots__`` objects of ``router.engine.state``. Persisting the latest record of
every key and calling ``restore`` rebuilds that state exactly.

Being immutable, a record holds no cycle: none is tracked by the garbage collector
(``gc=False``), which would otherwise go through each one a batch made (a message's
conversation snapshot, say) until the batch is written.
"""

from __future__ import annotations

import enum
from typing import overload

import msgspec

from schemas import (
    AgentSchedule,
    AnswerMode,
    BotHandoff,
    CandidateNote,
    Channel,
    Presence,
    Strategy,
)


class ConversationStatus(enum.StrEnum):
    """Where a conversation is in its life.

    ``waiting``: held for its preferred agent or queued at a step of its queue.
    ``bot``: owned by a bot (``bot_id``), which answers it; no person holds it.
    ``offered``: offered to one agent, who holds a capacity slot until accepting or the
    offer expires. ``assigned``: owned, and holding a slot of its owner. ``idle``: still
    owned, slot released after inactivity. ``overflowed``: nobody took it within the
    queue's final timeout; it stays open (manual pick-up, transfer, or a new customer
    message restarts routing). ``closed``: done.

    The legal moves between them, and the one setter that makes them:
    ``router.engine.lifecycle``.
    """

    WAITING = "waiting"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    IDLE = "idle"
    OVERFLOWED = "overflowed"
    BOT = "bot"
    CLOSED = "closed"


class DeadlineKind(enum.StrEnum):
    """What happens when a conversation's deadline fires."""

    STEP = "step"
    """The current step (preferred hold or queue step) gives up: fall back."""
    OFFER = "offer"
    """The pending offer expires: miss recorded, next candidate."""
    RELEASE = "release"
    """Inactivity: the owner's slot is released (assigned -> idle)."""
    CLOSE = "close"
    """Inactivity: the conversation closes (reason ``inactive``)."""
    OPENS = "opens"
    """The queue's business hours begin: routing of a conversation held outside them
    starts."""
    SNOOZE = "snooze"
    """A snoozed conversation comes back to its owner."""
    BOT = "bot"
    """The bot's answer to a turn is due: people take over (``bot_timeout``)."""


class AgentDeadlineKind(enum.StrEnum):
    """What happens when an agent's own deadline fires."""

    PACE = "pace"
    """Login pacing: the agent may take the next conversation of the backlog."""
    SHIFT = "shift"
    """A shift boundary of the agent's schedule (``rehome`` at shift end)."""


class AgentRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    agent_id: str
    name: str = ""
    skills: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    capacity: dict[Channel, int] = {}
    presence: Presence = Presence.OFFLINE
    load: dict[Channel, int] = {}
    """Slots in use per channel (assigned + offered conversations); ``restore``
    recomputes it from the conversations, so it is informational."""
    idle_since: dict[Channel, float] = {}
    """Per channel: when the agent last received a conversation (or gained the channel)."""
    missed_offers: int = 0
    """Consecutive offers that expired unanswered."""
    schedule: AgentSchedule | None = None
    pace_due: float | None = None
    """Login pacing: no automatic hand-over to this agent before then."""
    shift_due: float | None = None
    """Next shift boundary the engine acts on (``on_shift_end = "rehome"``)."""


class AssignmentRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One owner period of a conversation (an offer that was never accepted included).
    Every open conversation keeps its current one in memory (untracked, as every record:
    the module docstring)."""

    assignment_id: str
    conversation_id: str
    agent_id: str
    channel: Channel
    queue: str
    strategy: Strategy
    step: str
    waited_seconds: float
    candidates: tuple[CandidateNote, ...] = ()
    offered_at: float
    accepted_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    """``closed:<reason>``, ``transferred``, ``offer_missed``, ``owner_unavailable``..."""


class ConversationRecord(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """A conversation's snapshot. Its required fields come first and it is not
    keyword-only: the engine builds one for every customer message, and msgspec takes
    positional arguments in about a twentieth of the time of 42 keywords
    (``router.engine.snapshots``)."""

    conversation_id: str
    channel: Channel
    endpoint: str
    customer_address: str
    customer_id: str
    conversation_key: str
    queue: str
    status: ConversationStatus
    step: str
    """The current ladder step (``preferred`` or a queue step name); for an owned
    conversation, the step it was assigned at (or ``transfer``/``manual``)."""
    waiting_since: float
    opened_at: float
    last_customer_message_at: float
    last_activity_at: float
    priority: int = 0
    owner_agent_id: str | None = None
    preferred_agent_id: str | None = None
    offered_to: str | None = None
    fell_back: bool = False
    """A step already gave up on it (assignments from a pool count as ``fallback``)."""
    last_agent_reply_at: float | None = None
    first_response_at: float | None = None
    deadline: float | None = None
    deadline_kind: DeadlineKind | None = None
    step_until: float | None = None
    """When the current step gives up (kept while an offer is pending)."""
    passed_over: dict[str, str] = {}
    """Agents not to try again for this routing, with why (``offer_missed``...)."""
    assignment: AssignmentRecord | None = None
    """The current owner period (or pending offer)."""
    message_count: int = 0
    reply_window_ends_at: float | None = None
    """When the provider's free-form reply window closes (from the last customer message)."""
    reply_window_urgent: bool = False
    """Within the policy's ``urgent_within`` of closing: waiting priority boosted."""
    reply_window_closed: bool = False
    """The window closed: replies need a template."""
    closed_at: float | None = None
    close_reason: str | None = None
    skills: tuple[str, ...] = ()
    """Skills an agent needs for it, beyond its queue step's."""
    language: str | None = None
    attributes: dict[str, str] = {}
    snoozed_until: float | None = None
    """Set while the owner snoozed it (status ``idle``): when it comes back to them."""
    bot_id: str | None = None
    """The bot that owns it (status ``bot``)."""
    bot_turn_id: str | None = None
    """The bot's latest turn (``bot.turn`` id); its answer is due while the deadline
    kind is ``bot``."""
    bot_turns: int = 0
    """Customer turns since the bot last reported progress."""
    handoff: BotHandoff | None = None
    """The latest hand-off from a bot to people."""
    handoff_open: bool = False
    """Handed off, and no person assigned since."""
    had_human: bool = False
    """A person owned it at some point (then a bot's close is not containment)."""
    wait_estimate: WaitEstimate | None = None
    """While it waits: the latest ``conversation.queued`` as the router published it.
    The router's shell sets it (the engine measures nothing, and ``restore`` ignores it)."""


class ConversationActivity(msgspec.Struct, frozen=True, gc=False):
    """What a customer message changes in a conversation on the engine's fast path (owned,
    owner online): the fields of the same names in ``ConversationRecord``. The shell
    stores it beside the conversation's record, which stays as it was
    (``with_activity`` puts the two together): a fraction of the record's bytes to build,
    encode and write for every such message. Every field is written, defaults included,
    so that it replaces the record's values whatever they were, when it is the later of
    the two (``with_activity``)."""

    last_customer_message_at: float
    last_activity_at: float
    message_count: int
    reply_window_ends_at: float | None
    reply_window_urgent: bool
    reply_window_closed: bool
    deadline: float | None
    deadline_kind: DeadlineKind | None


def with_activity(
    record: ConversationRecord, activity: ConversationActivity | None
) -> ConversationRecord:
    """The conversation's current record: the record, or the activity over it when the
    activity is the later. Every customer message counts one more, and a record holds the
    count of the state it was saved from, so the later of the two has the higher count;
    at equal counts the record is the later (saved since, for another reason)."""
    if activity is None or activity.message_count <= record.message_count:
        return record
    return msgspec.structs.replace(record, **msgspec.structs.asdict(activity))


class WaitEstimate(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A waiting conversation's position and expected wait, as last announced."""

    waiting_since: float
    """The waiting episode it belongs to (the conversation's ``waiting_since``)."""
    estimated_at: float
    position: int | None = None
    """1: next in its line (``ConversationQueued.position``)."""
    expected_wait_seconds: float | None = None
    """Seconds from ``estimated_at`` to an assignment (None: unknown)."""


class ExpectationRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """The business wrote to the customer first (``customer.notified``): what their
    reply finds (``router.engine.outbound``)."""

    outbound_id: str
    conversation_id: str
    channel: Channel
    mode: AnswerMode
    agent_id: str | None = None
    queue: str | None = None
    until: float
    """The answerer applies until then."""
    remember_until: float
    """The reply still opens the notification's conversation until then."""
    attributes: dict[str, str] = {}
    answered: bool = False
    """A reply opened the notification's conversation already."""


class CustomerRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    customer_id: str
    owner_agent_id: str | None = None
    """Explicit owner (``customer.owner_set``): the preferred agent before anyone else."""
    last_agent_id: str | None = None
    """The agent who last handled this customer, on any channel."""
    last_handled_at: float | None = None
    affinity: tuple[AffinityEntry, ...] = ()
    """Agents who served this customer, best first (bounded by ``affinity.keep``)."""
    expectation: ExpectationRecord | None = None
    """The latest business-started message to them, while it matters."""


class IdentityRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """An identity linked to a customer profile other than its own (``schemas.identity``):
    messages from ``identity`` belong to ``customer_id``."""

    identity: str
    customer_id: str
    source: str
    """``api``, ``webchat_login``, ``lookup``, or ``merge`` (a merged customer's id)."""
    linked_at: float


class BotRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """How a bot has been answering lately (``router.engine.bots``, rule 6): only a bot that
    failed since its last answer has one."""

    bot_id: str
    failures: int
    """Turns it failed (no answer in time, ``bot.failed``) since it last answered."""
    down_until: float | None = None
    """Set when failures reached ``down_after``: new conversations skip it until then."""


class AffinityEntry(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    """An agent's affinity with one customer: ``rank = log2(score) + at / half_life``
    (the score at ``now`` is ``2 ** (rank - now / half_life)``; higher ranks first)."""

    agent_id: str
    rank: float


@overload
def same_instant(value: float, known: float | None) -> float: ...
@overload
def same_instant(value: float | None, known: float | None) -> float | None: ...
def same_instant(value: float | None, known: float | None) -> float | None:
    """``known`` when it is the same instant as ``value`` (else ``value``): a restored
    conversation holds one float per instant its record repeats, as a live one does (an
    event stamps every field it sets with the one ``now``), instead of one per field.
    Zeros are left alone (``0.0 == -0.0``)."""
    return value if not value or known is None or value != known else known
