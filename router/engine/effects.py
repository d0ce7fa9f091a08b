"""Effects: what the engine asks the shell to do, as data (imperative names).

The shell writes the ``Save*`` rows (upserts of the latest snapshot per key; within a
batch, the last one per key wins) and the ``Emit`` outbox rows in one transaction.
"""

from __future__ import annotations

import msgspec

from router.engine.records import AgentRecord, AssignmentRecord, ConversationRecord, CustomerRecord
from schemas import MessageReceived, RoutingEvent


class Emit(msgspec.Struct, frozen=True):
    """Publish ``event`` on ``conversations.routing`` (through the outbox)."""

    event: RoutingEvent


class SaveAgent(msgspec.Struct, frozen=True):
    record: AgentRecord


class SaveConversation(msgspec.Struct, frozen=True):
    record: ConversationRecord


class SaveCustomer(msgspec.Struct, frozen=True):
    record: CustomerRecord


class SaveAssignment(msgspec.Struct, frozen=True):
    record: AssignmentRecord


class SaveMessage(msgspec.Struct, frozen=True):
    """Insert the customer message row, filed under its conversation."""

    message: MessageReceived
    conversation_id: str


Effect = Emit | SaveAgent | SaveConversation | SaveCustomer | SaveAssignment | SaveMessage
