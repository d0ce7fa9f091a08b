"""Effects: what the engine asks the shell to do, as data (imperative names).

The shell writes the ``Save*`` rows (upserts of the latest snapshot per key; within a
batch, the last one per key wins) and the ``Emit`` outbox rows in one transaction.

Effects, like the records and events they carry, are immutable and hold no cycle: none is
tracked by the garbage collector (``gc=False``), which would otherwise go through every one
a batch made until the batch is written.
"""

from __future__ import annotations

import msgspec

from router.engine.records import (
    AgentRecord,
    AssignmentRecord,
    BotRecord,
    ConversationActivity,
    ConversationRecord,
    CustomerRecord,
    IdentityRecord,
)
from schemas import CustomerConsentChanged, MessageReceived, ReplyRequested, RoutingEvent


class Emit(msgspec.Struct, frozen=True, gc=False):
    """Publish ``event`` on ``conversations.routing`` (through the outbox)."""

    event: RoutingEvent


class SaveAgent(msgspec.Struct, frozen=True, gc=False):
    record: AgentRecord


class SaveConversation(msgspec.Struct, frozen=True, gc=False):
    record: ConversationRecord


class SaveActivity(msgspec.Struct, frozen=True, gc=False):
    """Only the activity of a conversation changed (``ConversationActivity``): store it
    beside the conversation's last record."""

    conversation_id: str
    activity: ConversationActivity


class SaveCustomer(msgspec.Struct, frozen=True, gc=False):
    record: CustomerRecord


class SaveAssignment(msgspec.Struct, frozen=True, gc=False):
    record: AssignmentRecord


class SaveMessage(msgspec.Struct, frozen=True, gc=False):
    """Insert the customer message row, filed under its conversation."""

    message: MessageReceived
    conversation_id: str


class DropAgent(msgspec.Struct, frozen=True, gc=False):
    """The agent left the domain: delete their row (their assignments stay as history)."""

    agent_id: str


class DropCustomer(msgspec.Struct, frozen=True, gc=False):
    """The customer was merged into another: delete their row."""

    customer_id: str


class EraseCustomer(msgspec.Struct, frozen=True, gc=False):
    """Delete every row about these identities and conversations, after the batch's other
    writes (``router.engine.erasure``), and close the erasure's row."""

    erasure_id: str
    identities: tuple[str, ...]
    conversation_ids: tuple[str, ...]
    """Newest first: the conversations the router ended and those PostgreSQL knew."""


class SaveIdentity(msgspec.Struct, frozen=True, gc=False):
    """``identity`` is linked as ``record`` says (None: no longer linked to anyone)."""

    identity: str
    record: IdentityRecord | None


class SaveConsent(msgspec.Struct, frozen=True, gc=False):
    """Record a consent change: the address's current consent, and the audit row."""

    change: CustomerConsentChanged
    actor: str | None = None
    """Who recorded it through the API (None: the customer, or an admin token)."""


class SendReply(msgspec.Struct, frozen=True, gc=False):
    """Publish a bot's ``reply`` on ``conversations.outbound`` (through the outbox) and
    record it as the conversation's outbound message."""

    reply: ReplyRequested


class SaveBot(msgspec.Struct, frozen=True, gc=False):
    """A bot's health (``record`` None: it answered, nothing to keep)."""

    bot_id: str
    record: BotRecord | None


Effect = (
    Emit
    | SendReply
    | SaveBot
    | SaveAgent
    | SaveConversation
    | SaveActivity
    | SaveCustomer
    | SaveAssignment
    | SaveMessage
    | DropAgent
    | DropCustomer
    | SaveIdentity
    | SaveConsent
    | EraseCustomer
)
