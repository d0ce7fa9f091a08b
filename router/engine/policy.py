"""Routing policy of one domain: the ``[domains.<name>.routing]`` section of the config file.

Every field has a default, so ``DomainPolicy()`` routes out of the box: one queue named
``default`` whose single step offers conversations to every agent serving that queue, the
per-channel preferred-agent waits of the design, and no overflow.

Example (TOML)::

    [domains.acme.routing]
    default_queue = "support"
    away_after_missed_offers = 3

    [domains.acme.routing.preferred_wait]     # hold for the customer's own agent
    webchat = 30
    sms = 120
    email = 14400

    [domains.acme.routing.first_response_sla]  # bounds the preferred hold (wait budget)
    whatsapp = 300

    [domains.acme.routing.affinity]             # the "affinity" step after "preferred"
    try_top = 3
    half_life = 1209600                         # 14 days

    [domains.acme.routing.inactivity]
    release_after = 1800                        # idle: the agent's slot is freed
    close_after = 86400                         # then the conversation auto-closes

    [domains.acme.routing.channel_inactivity.email]
    release_after = 14400
    close_after = 604800

    [domains.acme.routing.queues.support]
    skills = ["english"]
    mode = "offer"
    offer_timeout = 20
    calendar = "office"                         # business hours (see router.engine.calendar)
    after_hours = "notify"                      # hold | notify | queue (after_hours_queue)

    [domains.acme.routing.calendars.office]
    time_zone = "Europe/Paris"
    weekly = { mon = [["09:00", "18:00"]], tue = [["09:00", "18:00"]] }

    [[domains.acme.routing.queues.support.steps]]
    name = "skilled"                            # members of "support" with its skills
    wait = 60

    [[domains.acme.routing.queues.support.steps]]
    name = "overflow"                           # then anyone in the domain
    agents_from = ["*"]
    skills = []
    wait = 600                                  # the queue's final timeout: overflowed

    [domains.acme.routing.queues.sales]
    bot = "helper"                              # bot first; the steps are the people after it
    returning = "last_agent"                    # customers with a last agent go to them

    [domains.acme.routing.bots.helper]          # see router.engine.bots
    answer_timeout = 15
    max_turns = 6
    continue_on = ["email"]
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Annotated, Final

import msgspec

from router.engine.calendar import BusinessCalendar
from router.engine.wait_notice import WaitNoticePolicy
from schemas import Channel
from schemas.bot_webhook import BotWebhook
from schemas.limits import (
    BOT_ID_MAX,
    PRIORITY_MAX,
    QUEUE_MAX,
    SKILL_MAX,
    is_identifier,
    keyword_form,
)

MAX_CALENDARS = 100
"""Calendars one domain may define."""
MAX_BOTS = 50
"""Bots one domain may define (each is a ``bot`` label value of the metrics)."""
HUMAN_KEYWORDS_MAX = 50

RESERVED_STEP_NAMES = frozenset(
    {"preferred", "affinity", "transfer", "manual", "after_hours", "takeover", "bot"}
)
"""Step names the engine uses itself (the preferred hold, transfers, manual pick-ups)."""

ANY_AGENT = "*"
"""In ``agents_from``: every agent of the domain."""


DURATION_MAX: Final = 315_360_000
"""Seconds: the longest any duration of the routing configuration may be (ten years).
Finite, so that every deadline made of one is a time the clocks, the events and PostgreSQL
can hold: a wait of 1e308 seconds once stopped the routing loop."""
Seconds = Annotated[float, msgspec.Meta(le=DURATION_MAX)]
"""A duration setting (each field says its lower bound): at most ``DURATION_MAX``; NaN and
infinity, which a TOML file can write, are refused."""
COUNT_MAX: Final = 1000
Count = Annotated[int, msgspec.Meta(le=COUNT_MAX)]
"""A count setting (turns, offers, agents, conversations per agent; each field says its
lower bound): at most ``COUNT_MAX``, as an agent's capacity is."""
BOOST_MAX: Final = 2 * PRIORITY_MAX
"""Enough to lift the lowest priority above the highest."""
WEIGHT_MAX: Final = 1_000_000.0
Weight = Annotated[float, msgspec.Meta(ge=0, le=WEIGHT_MAX)]
"""An affinity score or weight."""


class QueueMode(enum.StrEnum):
    """How a queue hands a conversation to the agent the engine picked."""

    ASSIGN = "assign"
    """The agent owns it at once."""
    OFFER = "offer"
    """The agent must accept within ``offer_timeout`` or the next candidate gets it."""


def _check_names(field: str, names: Iterable[str], limit: int) -> None:
    for name in names:
        if not name or not is_identifier(name, limit):
            raise ValueError(
                f"{field}: names are 1 to {limit} characters, none a control character"
            )


class AfterHours(enum.StrEnum):
    """What a conversation does when it reaches a queue outside the queue's business hours."""

    HOLD = "hold"
    """It waits, offered to nobody, until the queue opens; then routing starts."""
    NOTIFY = "notify"
    """As ``hold``, and a ``conversation.outside_hours`` routing event says when the queue
    opens, for the customer side to answer."""
    QUEUE = "queue"
    """It goes to the queue ``after_hours_queue`` names (a 24/7 team, a partner)."""


class ChannelWaits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Seconds to hold a conversation for the customer's preferred agent, per channel."""

    sms: Seconds = 120.0
    """SMS: an answer is expected within minutes."""
    whatsapp: Seconds = 120.0
    """WhatsApp."""
    messenger: Seconds = 120.0
    """Facebook Messenger."""
    instagram: Seconds = 120.0
    """Instagram direct messages."""
    telegram: Seconds = 120.0
    """Telegram."""
    webchat: Seconds = 30.0
    """Web chat: the customer watches the widget, seconds matter."""
    email: Seconds = 14400.0
    """Email: hours are fine."""
    rcs: Seconds = 120.0
    """RCS Business Messaging."""
    x: Seconds = 120.0
    """X direct messages."""
    viber: Seconds = 120.0
    """Viber."""

    def __post_init__(self) -> None:
        for channel in Channel:
            if getattr(self, channel.value) < 0:
                raise ValueError(f"preferred_wait.{channel.value} must be >= 0")

    def for_channel(self, channel: Channel) -> float:
        value: float = getattr(self, channel.value)
        return value


class InactivityPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What happens to an owned conversation nobody writes in (customer or agent)."""

    release_after: Seconds | None = 3600.0
    """Seconds without activity after which the owner's capacity slot is released (the
    conversation stays theirs); omit to never release."""
    close_after: Seconds | None = 86400.0
    """Seconds without activity after which the conversation closes (reason ``inactive``);
    omit to never auto-close. Also ends overflowed conversations nobody picked up."""

    def __post_init__(self) -> None:
        for name in ("release_after", "close_after"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"inactivity.{name} must be > 0")


class StepPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One rung of a queue's fallback ladder: who is eligible and for how long we try."""

    name: str
    """Shown in events and assignments (``step``); unique within the queue."""
    agents_from: tuple[str, ...] = ()
    """Queues whose agents are eligible (an agent with no queues serves every queue);
    empty: this queue; ``["*"]``: every agent of the domain."""
    skills: tuple[str, ...] | None = None
    """Skills an eligible agent has, all of them; omitted: the queue's ``skills``."""
    wait: Seconds | None = None
    """Seconds the conversation waits at this step before falling back to the next one
    (after the last step: overflowed); omit to wait without limit."""
    channel_wait: dict[Channel, Seconds] = {}
    """Per-channel override of ``wait``, e.g. ``{ email = 3600 }``."""

    def __post_init__(self) -> None:
        if not self.name or self.name in RESERVED_STEP_NAMES:
            raise ValueError(f"step name {self.name!r} is empty or reserved")
        if not is_identifier(self.name, QUEUE_MAX):
            # Step names travel in events and assignment rows.
            raise ValueError(
                f"step names are at most {QUEUE_MAX} characters, none a control character"
            )
        _check_names("skills", self.skills or (), SKILL_MAX)
        _check_names("agents_from", self.agents_from, QUEUE_MAX)
        waits = [self.wait, *self.channel_wait.values()]
        if any(value is not None and value < 0 for value in waits):
            raise ValueError(f"step {self.name!r}: waits must be >= 0")

    def wait_for(self, channel: Channel) -> float | None:
        return self.channel_wait.get(channel, self.wait)


def _default_steps() -> tuple[StepPolicy, ...]:
    return (StepPolicy(name="queue"),)


class Returning(enum.StrEnum):
    """Who a bot-first queue gives a new conversation of a customer who was served before."""

    BOT = "bot"
    """The bot, like everyone (it can hand off to their last agent, who is preferred)."""
    LAST_AGENT = "last_agent"
    """Their last agent (still in the domain) directly: normal routing, no bot."""


class BotPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An automated participant (bot, AI agent): ``[domains.<name>.routing.bots.<id>]``.

    It owns the conversations of the queues whose ``bot`` names it until it resolves
    them or hands them to people (the queue's steps). It is never anyone's preferred or
    last agent."""

    answer_timeout: Seconds = 20.0
    """Seconds the bot has to answer a turn; then people take over (``bot_timeout``)."""
    max_turns: Count = 10
    """Customer turns without the bot reporting progress after which people take over
    (``no_progress``): a bot going round in circles."""
    human_keywords: tuple[str, ...] = (
        "agent",
        "human",
        "person",
        "operator",
        "representative",
        "talk to a human",
        "talk to a person",
        "speak to a human",
        "speak to a person",
        "real person",
    )
    """A customer message that is one of these (whole message; case, accents and final
    punctuation aside) goes to people at once (``customer_asked``), before the bot."""
    continue_on: tuple[Channel, ...] = ()
    """Channels the bot may offer when people cannot come soon (in the hand-off event)."""
    down_after: Count = 3
    """Turns failed in a row (no answer in time, ``bot.failed``) after which the bot counts
    as down: new conversations go straight to people for ``retry_after`` seconds, instead
    of each waiting ``answer_timeout`` for a bot that does not answer; 0: never."""
    retry_after: Seconds = 60.0
    """Seconds a down bot is skipped; then new conversations try it again (one more
    failure: down again; an answer: up)."""
    webhook: BotWebhook | None = None
    """How to reach the bot over HTTP (``schemas.bot_webhook``); unset: it reads ``bot.turn``
    from the routing topic and answers on ``bots.events``."""

    def __post_init__(self) -> None:
        if self.answer_timeout <= 0:
            raise ValueError("answer_timeout must be > 0")
        if self.max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        if self.down_after < 0:
            raise ValueError("down_after must be >= 0 (0: never down)")
        if self.retry_after <= 0:
            raise ValueError("retry_after must be > 0")
        if len(self.human_keywords) > HUMAN_KEYWORDS_MAX:
            raise ValueError(f"at most {HUMAN_KEYWORDS_MAX} human_keywords")
        if any(not keyword_form(word) or len(word) > 100 for word in self.human_keywords):
            raise ValueError("human_keywords are 1 to 100 characters, not only punctuation")


class QueuePolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A queue: its ladder of steps after the preferred agent, and how it hands work out."""

    skills: tuple[str, ...] = ()
    """Default skills of the queue's steps."""
    steps: tuple[StepPolicy, ...] = msgspec.field(default_factory=_default_steps)
    """The fallback ladder, tried in order (default: one step ``queue``, no time limit)."""
    mode: QueueMode = QueueMode.ASSIGN
    """``assign`` (the agent owns it at once) or ``offer`` (the agent must accept)."""
    offer_timeout: Seconds = 30.0
    """Offer mode: seconds an agent has to accept before the next candidate gets it."""
    preferred_wait: dict[Channel, Seconds] = {}
    """Per-channel override of the domain's ``preferred_wait`` for this queue."""
    first_response_sla: dict[Channel, Seconds] = {}
    """Per-channel override of the domain's ``first_response_sla`` for this queue."""
    calendar: str | None = None
    """Business hours of the queue: a calendar of the domain's ``calendars``; omitted: always
    open. Outside them, conversations reaching the queue follow ``after_hours``, and its
    first-response SLA counts business time only."""
    after_hours: AfterHours = AfterHours.HOLD
    """``hold``, ``notify`` or ``queue`` (see ``AfterHours``)."""
    after_hours_queue: str | None = None
    """With ``after_hours = "queue"``: the queue that takes them."""
    max_per_agent: dict[Channel, Count] = {}
    """Capacity rule, per channel: at most this many of the queue's conversations held by
    one agent at once (offered or assigned, within the agent's own capacity); routing
    passes over an agent at the limit. A manual pick-up or a transfer to a named agent is
    not limited by it."""
    bot: str | None = None
    """Bot first: a bot of the domain's ``bots`` owns each new conversation of the queue
    (at any hour) until it resolves it or hands it off; the steps are the people after it."""
    returning: Returning = Returning.BOT
    """With ``bot``: ``bot`` (every new conversation starts with the bot) or
    ``last_agent`` (a customer whose last agent is still in the domain goes to them)."""

    def __post_init__(self) -> None:
        if any(value <= 0 for value in self.first_response_sla.values()):
            raise ValueError("first_response_sla values must be > 0")
        if (self.after_hours is AfterHours.QUEUE) != (self.after_hours_queue is not None):
            raise ValueError('after_hours_queue is set exactly when after_hours = "queue"')
        _check_names("skills", self.skills, SKILL_MAX)
        if any(value < 1 for value in self.max_per_agent.values()):
            raise ValueError("max_per_agent values must be >= 1")
        if not self.steps:
            raise ValueError("a queue needs at least one step")
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate step names in {names}")
        if self.offer_timeout <= 0:
            raise ValueError("offer_timeout must be > 0")
        if any(value < 0 for value in self.preferred_wait.values()):
            raise ValueError("preferred_wait values must be >= 0")


class ShiftEnd(enum.StrEnum):
    """What happens to an agent's conversations waiting on the business at shift end."""

    KEEP = "keep"
    """They stay owned; when the customer writes again, rule 2 re-targets them."""
    REHOME = "rehome"
    """They go back through the ladder at once (the agent is passed over)."""


class AffinityPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per customer, a short list of the agents who served them, with decaying scores.

    A score grows by ``assigned_weight`` per assignment and ``resolved_weight`` per
    conversation closed as ``resolved``, and halves every ``half_life`` seconds."""

    try_top: Count = 0
    """After the preferred hold gives up: how many of the customer's best-scored agents
    (other than the preferred one) the ``affinity`` step tries before the queue's steps;
    0 (default): no affinity step."""
    min_score: Weight = 0.0
    """Agents whose decayed score is below this are not tried."""
    keep: Count = 5
    """Agents remembered per customer (the lowest score is forgotten first)."""
    half_life: Seconds = 30 * 86400.0
    """Seconds after which a score is worth half."""
    assigned_weight: Weight = 1.0
    resolved_weight: Weight = 2.0

    def __post_init__(self) -> None:
        if self.try_top < 0 or self.keep < 1 or self.try_top > self.keep:
            raise ValueError("affinity: need 0 <= try_top <= keep and keep >= 1")
        if self.half_life <= 0 or self.min_score < 0:
            raise ValueError("affinity: half_life must be > 0 and min_score >= 0")
        if self.assigned_weight < 0 or self.resolved_weight < 0:
            raise ValueError("affinity: weights must be >= 0")


class ReplyWindowPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The provider's free-form reply window (``MessageReceived.reply_window_ends_at``)."""

    urgent_within: Seconds | None = None
    """Seconds before the window closes from which a waiting conversation's priority is
    raised by ``urgent_boost``; omit to never boost."""
    urgent_boost: Annotated[int, msgspec.Meta(ge=0, le=BOOST_MAX)] = 10

    def __post_init__(self) -> None:
        if self.urgent_within is not None and self.urgent_within <= 0:
            raise ValueError("reply_window.urgent_within must be > 0")


def _default_queues() -> dict[str, QueuePolicy]:
    return {"default": QueuePolicy()}


class DomainPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Routing configuration of one domain (``[domains.<name>.routing]``)."""

    default_queue: str = "default"
    """Queue of messages that name none (or an unknown one)."""
    queues: dict[str, QueuePolicy] = msgspec.field(default_factory=_default_queues)
    """Queues by name (default: one queue ``default``)."""
    preferred_wait: ChannelWaits = ChannelWaits()
    """Per-channel seconds to hold a conversation for its preferred agent (rule 3)."""
    inactivity: InactivityPolicy = InactivityPolicy()
    """Slot release and auto-close of quiet conversations (rule 8)."""
    channel_inactivity: dict[Channel, InactivityPolicy] = {}
    """Per-channel override of ``inactivity``."""
    away_after_missed_offers: Count | None = 3
    """Consecutive missed offers that set an agent away; omit to never do so."""
    first_response_sla: dict[Channel, Seconds] = {}
    """Per-channel first-response target in seconds: the preferred hold never outlasts
    what is left of it (the wait budget); empty: no SLA bound."""
    affinity: AffinityPolicy = AffinityPolicy()
    """The customer's decaying agent list and the ``affinity`` ladder step."""
    reply_window: ReplyWindowPolicy = ReplyWindowPolicy()
    """Priority boost of conversations whose provider reply window is about to close."""
    on_shift_end: ShiftEnd = ShiftEnd.KEEP
    """Agents with a schedule: ``keep`` their conversations at shift end, or ``rehome``
    those waiting on the business (last message from the customer, no reply since)."""
    language_skill: bool = False
    """A conversation's language ``xx`` is a skill its agents need: ``lang:xx``."""
    login_pace: Seconds | None = None
    """Seconds between two hand-overs to an agent who came online onto a backlog (one
    conversation per interval, up to capacity); omit to hand over at once."""
    calendars: dict[str, BusinessCalendar] = {}
    """Business-hours calendars by name, for the queues' ``calendar``
    (see ``router.engine.calendar``)."""
    bots: dict[str, BotPolicy] = {}
    """Automated participants by id, for the queues' ``bot`` and hand-backs
    (see ``router.engine.bots``)."""
    wait_notice: WaitNoticePolicy = WaitNoticePolicy()
    """The automatic message telling a waiting customer how long they will wait
    (see ``router.engine.wait_notice``); off by default."""

    def __post_init__(self) -> None:
        if len(self.calendars) > MAX_CALENDARS:
            raise ValueError(f"at most {MAX_CALENDARS} calendars")
        if len(self.bots) > MAX_BOTS:
            raise ValueError(f"at most {MAX_BOTS} bots")
        for name in self.bots:
            if (
                not name
                or len(name) > BOT_ID_MAX
                or not name.replace("-", "").replace("_", "").isalnum()
                or not name.isascii()
            ):
                raise ValueError(
                    f"bots.{name}: bot ids are 1 to {BOT_ID_MAX} ASCII letters, digits, '-', '_'"
                )
        for name, queue in self.queues.items():
            if queue.bot is not None and queue.bot not in self.bots:
                raise ValueError(f"queues.{name}.bot: no bot {queue.bot!r} in bots")
            if queue.calendar is not None and queue.calendar not in self.calendars:
                raise ValueError(f"queues.{name}.calendar: no calendar {queue.calendar!r}")
            target = queue.after_hours_queue
            if target is None:
                continue
            if target not in self.queues:
                raise ValueError(f"queues.{name}.after_hours_queue: no queue {target!r}")
            if self.queues[target].after_hours is AfterHours.QUEUE:
                # One hop only: a chain could come back to where it started.
                raise ValueError(
                    f"queues.{name}.after_hours_queue: queue {target!r} sends its own"
                    " after-hours conversations to another queue"
                )
        if any(value <= 0 for value in self.first_response_sla.values()):
            raise ValueError("first_response_sla values must be > 0")
        if self.login_pace is not None and self.login_pace <= 0:
            raise ValueError("login_pace must be > 0")
        if self.default_queue not in self.queues:
            raise ValueError(f"default_queue {self.default_queue!r} is not in queues")
        # Queue and calendar names travel in every event: longer ones would make them invalid.
        _check_names("queues", self.queues, QUEUE_MAX)
        _check_names("calendars", self.calendars, QUEUE_MAX)
        if self.away_after_missed_offers is not None and self.away_after_missed_offers < 1:
            raise ValueError("away_after_missed_offers must be >= 1")

    def inactivity_for(self, channel: Channel) -> InactivityPolicy:
        return self.channel_inactivity.get(channel, self.inactivity)
