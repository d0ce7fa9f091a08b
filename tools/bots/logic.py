"""The reference bot's rules: a pure function from a ``bot.turn`` (and what the bot
remembers of the conversation) to the actions of its answer (``respond``), and another
from its own ``conversation.handed_off`` to what the customer is told while they wait
(``relay``). No I/O and no clock: ``tools.bots.kafka_bot`` and ``tools.bots.http_bot`` put
them on the wire.

Rules, first match wins (``text`` is the customer's message, compared word by word with
case, accents and punctuation set aside):

1. A turn without a message is a hand-back (a person gave the conversation back, with a
   note): ask the one-question survey, ratings 1 to 5 as quick replies.
2. After the survey question, a rating ``1``..``5`` is thanked and the conversation
   resolved (``survey_answered``); anything else drops the survey and goes on below.
3. The customer asks for a person ("talk to a person", "agent", "human"): hand off
   (``customer_asked``). The router usually does it first (the bot's ``human_keywords``
   match the whole message); the bot does it whatever those are set to.
4. "refund" or "money back": hand off (``out_of_scope``) to people with the ``billing``
   skill, with a summary, intent ``refund`` and the order id when known.
5. An order number (``A-1001``, ``#123456``): its status (progress).
6. "order", "status", "tracking", "parcel", "delivery": ask for the order number
   (progress).
7. "thanks", "bye", "that's all": resolve (``resolved``) with a goodbye.
8. A greeting ("hi", "hello"): greet and offer the menu ("Order status", "Refund", "Talk
   to a person"); progress the first time only, so a customer who only ever says hello
   meets the router's loop guard (``max_turns``).
9. Anything else is not understood: the first time, say so and offer the menu; the
   second time in a row, hand off (``low_confidence``) with both messages in the summary.

The bot's first answer in a conversation starts with its greeting. Every understood
message reports progress, so the router's turn count stays low while the bot gets
somewhere.

After the bot hands a conversation off, while it waits for a person, the bot relays what
``conversation.handed_off`` says, in one reply (``relay``): the queue is closed and opens
at ``opens_at`` (UTC); else the customer's place in line (``position`` 0: "You're next in
line") and the expected wait, or "as soon as possible" when it is unknown; then the
channels of ``continue_on`` other than the conversation's own. Nothing for a takeover nor
for a conversation a person has already (no ``position`` nor ``opens_at``).
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from schemas.bot_webhook import BotAction, HandoffAction, ReplyAction, ResolveAction
from schemas.bots import (
    Handoff,
    HandoffReason,
)
from schemas.common import Channel
from schemas.routing import BotTurn, ConversationHandedOff

MENU = ("Order status", "Refund", "Talk to a person")
"""The quick replies of the greeting and of a message not understood."""
RATINGS = ("1", "2", "3", "4", "5")
GREETING = "Hi, I'm the Acme assistant."
SURVEY = "Thanks for talking with us. How did we do today, from 1 (poor) to 5 (great)?"
QUOTE_MAX = 200
"""Characters of a customer's message quoted in a hand-off summary."""

_ORDER = re.compile(
    r"(?<![A-Za-z0-9])(?:#\s?(\d{4,12})|(\d{5,12})|([A-Za-z]{1,3})-?(\d{3,10}))(?![A-Za-z0-9])"
)
_SEPARATORS = re.compile(r"[^a-z0-9]+")

_PERSON_ALONE = frozenset({"agent", "agents", "human", "operator", "representative"})
"""Words that ask for a person on their own."""
_PERSON = frozenset({"person", "someone", "somebody", "colleague"})
"""Words for a person that ask for one with a verb of ``_ASKING`` ("the delivery person"
does not)."""
_ASKING = frozenset({"talk", "speak", "chat", "want", "need", "real", "get"})
_REFUND = frozenset({"refund", "refunds", "reimburse", "reimbursement", "chargeback"})
_ORDER_WORDS = frozenset(
    {"order", "orders", "status", "tracking", "track", "parcel", "package", "delivery"}
)
_THANKS = frozenset({"thanks", "thank", "thx", "ty", "bye", "goodbye", "cheers"})
_GREETINGS = frozenset({"hi", "hello", "hey", "hiya", "morning", "evening", "afternoon"})

ASAP = "A colleague will be with you as soon as possible."
_CHANNEL_NAMES = {
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.MESSENGER: "Messenger",
    Channel.INSTAGRAM: "Instagram",
    Channel.TELEGRAM: "Telegram",
    Channel.WEBCHAT: "web chat",
    Channel.EMAIL: "email",
    Channel.RCS: "RCS",
    Channel.X: "X",
    Channel.VIBER: "Viber",
}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
"""Names of their own, not ``strftime``'s: the text does not depend on the locale."""


class Memory(msgspec.Struct, frozen=True, kw_only=True):
    """What the bot remembers of one conversation between its turns."""

    greeted: bool = False
    misses: tuple[str, ...] = ()
    """The messages not understood in a row (rule 9)."""
    order_id: str | None = None
    """The last order number the customer gave (for the refund hand-off)."""
    surveying: bool = False
    """The survey question was asked and not answered yet (rule 2)."""


NEW = Memory()


def respond(turn: BotTurn, memory: Memory = NEW) -> tuple[tuple[BotAction, ...], Memory]:
    """The actions answering ``turn`` (one, for this bot) and what to remember next."""
    if turn.message_id is None and not turn.text.strip() and not turn.attachments:
        # Rule 1: a hand-back.
        reply = ReplyAction(text=SURVEY, quick_replies=RATINGS, progress=True)
        return (reply,), msgspec.structs.replace(memory, greeted=True, surveying=True, misses=())
    normal = _normal(turn.text)
    words = frozenset(normal.split())
    order_id = order_number(turn.text) or memory.order_id
    surveying, memory = memory.surveying, msgspec.structs.replace(memory, surveying=False)
    action: BotAction
    if surveying and turn.text.strip() in RATINGS:
        # Rule 2.
        action = ResolveAction(text="Thank you for your rating!", reason="survey_answered")
    elif _asks_for_person(words):
        # Rule 3.
        action = HandoffAction(
            text="Of course, I'm passing you to a colleague.",
            handoff=Handoff(
                reason=HandoffReason.CUSTOMER_ASKED,
                summary="The customer asked for a person.",
                language=turn.language,
                attributes=_order_attributes(order_id),
            ),
        )
    elif words & _REFUND or " money back " in f" {normal} ":
        # Rule 4.
        about = f" for order {order_id}" if order_id else ""
        action = HandoffAction(
            text="Refunds are handled by our billing team: I'm passing you to a colleague.",
            handoff=Handoff(
                reason=HandoffReason.OUT_OF_SCOPE,
                summary=f"The customer asks for a refund{about}. Refunds are for billing.",
                intent="refund",
                language=turn.language,
                skills=("billing",),
                attributes=_order_attributes(order_id),
            ),
        )
    elif (number := order_number(turn.text)) is not None:
        # Rule 5.
        action = ReplyAction(
            text=f"Order {number} {order_status(number)}. Anything else?",
            quick_replies=("Refund", "No, thanks"),
            progress=True,
        )
    elif words & _ORDER_WORDS:
        # Rule 6.
        action = ReplyAction(
            text="Sure. What is your order number? It looks like A-1001.", progress=True
        )
    elif words & _THANKS or " thats all " in f" {normal} ":
        # Rule 7.
        action = ResolveAction(text="Glad I could help. Goodbye!")
    elif words & _GREETINGS:
        # Rule 8.
        action = ReplyAction(
            text="How can I help?", quick_replies=MENU, progress=not memory.greeted
        )
    else:
        # Rule 9.
        misses = (*memory.misses, _quote(turn.text))
        if len(misses) >= 2:
            quoted = " / ".join(f"«{text}»" for text in misses[-2:])
            action = HandoffAction(
                text="I'm not sure I understand: I'm passing you to a colleague.",
                handoff=Handoff(
                    reason=HandoffReason.LOW_CONFIDENCE,
                    summary=f"I did not understand the customer twice: {quoted}.",
                    language=turn.language,
                    attributes=_order_attributes(order_id),
                ),
            )
            misses = ()
        else:
            action = ReplyAction(
                text="Sorry, I didn't get that. I can help with these:", quick_replies=MENU
            )
        return _greeted(action, memory), msgspec.structs.replace(
            memory, greeted=True, misses=misses, order_id=order_id
        )
    return _greeted(action, memory), msgspec.structs.replace(
        memory, greeted=True, misses=(), order_id=order_id
    )


def relay(event: ConversationHandedOff) -> list[ReplyAction]:
    """What to tell the customer while they wait for a person after the bot's hand-off
    (the module docstring's last paragraph): one reply, or none when nobody waits."""
    position, wait = event.position, event.expected_wait_seconds
    if event.reason is HandoffReason.TAKEOVER:
        return []
    if event.opens_at is not None:
        said = f"We're closed right now; we open {_opening(event.opens_at, event.occurred_at)}."
    elif position is not None:
        place = "You're next in line" if position <= 0 else f"You're number {position + 1} in line"
        said = (
            f"{place}. {ASAP}" if wait is None else f"{place}; the expected wait is {_wait(wait)}."
        )
    else:
        return []  # a person has it already
    others = [channel for channel in event.continue_on if channel != event.channel]
    if others:
        said += f" You can also continue by {_either(others)}."
    return [ReplyAction(text=said)]


class Memories:
    """What the bot remembers per conversation, ``limit`` conversations at most (the
    least recently answered forgotten first). A turn answered before gets the same
    answer again without moving the conversation on: a record read twice, a webhook
    call retried."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._memories: OrderedDict[str, tuple[str, tuple[BotAction, ...], Memory]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._memories)

    def answer(self, turn: BotTurn) -> tuple[BotAction, ...]:
        """The actions answering ``turn``, remembered."""
        previous = self._memories.get(turn.conversation_id)
        if previous is not None and previous[0] == turn.id:
            return previous[1]
        memory = NEW if previous is None else previous[2]
        actions, memory = respond(turn, memory)
        self._memories[turn.conversation_id] = (turn.id, actions, memory)
        self._memories.move_to_end(turn.conversation_id)
        while len(self._memories) > self._limit:
            self._memories.popitem(last=False)
        return actions

    def forget(self, conversation_id: str) -> None:
        """The conversation starts over with this bot (new, handed off, closed)."""
        self._memories.pop(conversation_id, None)


def order_number(text: str) -> str | None:
    """The first order number in ``text``: ``A-1001`` (``a1001`` too) or ``#123456``
    (``123456`` too)."""
    match = _ORDER.search(text)
    if match is None:
        return None
    hashed, bare, letters, number = match.groups()
    if letters is not None:
        return f"{letters.upper()}-{number}"
    return f"#{hashed or bare}"


def order_status(number: str) -> str:
    """A made-up status, always the same for the same number."""
    statuses = (
        "is being prepared and ships tomorrow",
        "has shipped and should arrive within 2 days",
        "was delivered yesterday",
    )
    return statuses[sum(int(c) for c in number if c.isdigit()) % len(statuses)]


def _normal(text: str) -> str:
    """``text``'s words in lower case without accents, apostrophes or punctuation, one
    space apart (``That's all!`` is ``thats all``)."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    folded = folded.replace("'", "").replace("’", "")
    return " ".join(word for word in _SEPARATORS.split(folded) if word)


def _asks_for_person(words: frozenset[str]) -> bool:
    return bool(words & _PERSON_ALONE or (words & _PERSON and words & _ASKING))


def _order_attributes(order_id: str | None) -> dict[str, str]:
    return {} if order_id is None else {"order_id": order_id}


def _quote(text: str) -> str:
    """``text`` on one line, without control characters, shortened to ``QUOTE_MAX``."""
    printable = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    flat = " ".join(printable.split())
    return flat if len(flat) <= QUOTE_MAX else flat[: QUOTE_MAX - 1] + "…"


def _wait(seconds: float) -> str:
    """``seconds`` of expected wait in words: "less than a minute", "about 4 minutes",
    "about 2 hours" (from two hours on)."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 120:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {round(minutes / 60)} hours"


def _opening(opens_at: float, now: float) -> str:
    """When a closed queue opens, from ``now``'s day: "at 09:00 UTC", "tomorrow at 09:00
    UTC", "on Monday 2 March at 09:00 UTC"."""
    when = datetime.fromtimestamp(opens_at, UTC)
    days = (when.date() - datetime.fromtimestamp(now, UTC).date()).days
    time = f"at {when:%H:%M} UTC"
    if days <= 0:
        return time
    if days == 1:
        return f"tomorrow {time}"
    return f"on {_DAYS[when.weekday()]} {when.day} {_MONTHS[when.month - 1]} {time}"


def _either(channels: Sequence[Channel]) -> str:
    """``email``, ``email or SMS``, ``email, SMS or WhatsApp``."""
    names = [_CHANNEL_NAMES.get(channel, str(channel)) for channel in dict.fromkeys(channels)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _greeted(action: BotAction, memory: Memory) -> tuple[BotAction, ...]:
    """``action``, its text led by the greeting on the bot's first answer."""
    if memory.greeted:
        return (action,)
    text = f"{GREETING} {action.text}" if action.text else GREETING
    return (msgspec.structs.replace(action, text=text),)
