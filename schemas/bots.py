"""``bots.events``: what automated participants (bots, AI agents) answer.

A bot owns a conversation the way a person does, one owner at a time: it receives the
conversation's turns as ``bot.turn`` on ``conversations.routing`` and answers here, keyed
by domain. The adapters forward each answer to ``agents.events`` (``adapters.bot_answers``),
so the router that owns the domain applies it in order with the customer's messages and
the agents' commands. The router accepts an answer only while the bot owns the
conversation: a reply that arrives after a person took over is refused
(``command.rejected`` with the answer's id), never sent.

An HTTP bot is reached by ``switchboard adapters`` (``adapters.bots``), which posts each
turn to the bot's webhook and publishes the answer here on its behalf.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.common import Attachments, Event
from schemas.limits import (
    LIST_MAX,
    QUICK_REPLIES_MAX,
    Attributes,
    BotId,
    Code,
    ConversationId,
    EventId,
    Language,
    Priority,
    ProviderMessageId,
    QuickReply,
    ReplyText,
    SkillName,
    Summary,
    Timestamp,
)


class HandoffReason(enum.StrEnum):
    """Why a conversation went from a bot to people."""

    CUSTOMER_ASKED = "customer_asked"
    """The customer asked for a person (also: one of the bot's ``human_keywords``)."""
    LOW_CONFIDENCE = "low_confidence"
    """The bot is not sure it understood."""
    FAILED_ATTEMPTS = "failed_attempts"
    """The bot tried and did not get there."""
    OUT_OF_SCOPE = "out_of_scope"
    """Not something the bot handles."""
    NO_PROGRESS = "no_progress"
    """The router's loop guard: ``max_turns`` customer turns without the bot reporting
    progress."""
    BOT_TIMEOUT = "bot_timeout"
    """The router's deadline: the bot did not answer a turn within ``answer_timeout``."""
    BOT_ERROR = "bot_error"
    """The bot failed (its webhook answered an error or nonsense, ``bot.failed``)."""
    TAKEOVER = "takeover"
    """A person took the conversation over (``conversation.takeover_requested``)."""
    HUMAN_REPLIED = "human_replied"
    """A person answered the customer from a connected device or the provider's inbox."""
    OTHER = "other"


class Handoff(msgspec.Struct, frozen=True, kw_only=True):
    """What the bot learned, for the person who takes over and for routing."""

    reason: HandoffReason
    summary: Summary = ""
    """What the customer wants and what was tried, in a few lines."""
    intent: Code | None = None
    """The bot's name for what the customer wants (``refund``, ``password_reset``)."""
    language: Language | None = None
    """The customer's language (BCP 47): with ``language_skill``, a required skill."""
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    """Skills the person needs (added to the conversation's)."""
    priority: Priority | None = None
    """A new priority for the wait (None: unchanged)."""
    attributes: Attributes = {}
    """Context merged into the conversation's attributes (order id, account tier)."""


class BotHandoff(msgspec.Struct, frozen=True, kw_only=True):
    """A hand-off as the person receives it: which bot, when, and what it learned."""

    bot_id: BotId
    handed_off_at: Timestamp
    handoff: Handoff


class BotAnswer(Event, frozen=True, kw_only=True):
    """Fields every bot answer carries."""

    conversation_id: ConversationId
    bot_id: BotId
    turn_id: EventId | None = None
    """The ``bot.turn`` answered (None: the bot speaks on its own)."""
    in_reply_to: ProviderMessageId | None = None
    """The turn's ``provider_message_id``: email replies thread under it."""


class BotReplied(BotAnswer, frozen=True, kw_only=True, tag="bot.replied"):
    """A message from the bot to the customer. The router sends it (as ``reply.requested``
    with ``bot_id`` on ``conversations.outbound``) while the bot owns the conversation, where
    answering the latest turn ends its deadline; and after the bot's own hand-off until a
    person has the conversation, to relay what ``conversation.handed_off`` says."""

    text: ReplyText = ""
    attachments: Attachments = ()
    quick_replies: Annotated[
        tuple[QuickReply, ...], msgspec.Meta(max_length=QUICK_REPLIES_MAX)
    ] = ()
    """Suggested answers where the channel has them (elsewhere: listed in the text)."""
    progress: bool = False
    """The conversation moved forward (a step of the bot's flow done): resets the loop
    guard. A bot that never says so hands off after ``max_turns`` customer turns."""

    def __post_init__(self) -> None:
        if not self.text.strip() and not self.attachments:
            raise ValueError("a bot reply needs text or attachments")


class BotHandoffRequested(BotAnswer, frozen=True, kw_only=True, tag="bot.handoff_requested"):
    """The bot hands the conversation to people, with what it learned. ``text``, if any,
    is sent to the customer first ("I'm passing you to a colleague")."""

    handoff: Handoff
    text: ReplyText = ""


class BotResolved(BotAnswer, frozen=True, kw_only=True, tag="bot.resolved"):
    """The bot finished: the conversation closes (contained: no person was needed).
    ``text``, if any, is sent to the customer first."""

    text: ReplyText = ""
    reason: Code = "resolved"


class BotFailed(BotAnswer, frozen=True, kw_only=True, tag="bot.failed"):
    """The bot could not answer the turn (its webhook failed, timed out or answered
    nonsense): people take the conversation at once (``bot_error``)."""

    error: Code


BotEvent = BotReplied | BotHandoffRequested | BotResolved | BotFailed

BOT_EVENT_DECODER: msgspec.json.Decoder[BotEvent] = msgspec.json.Decoder(BotEvent)
