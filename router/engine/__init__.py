"""The routing engine: pure, synchronous, deterministic (no I/O, no clock, no randomness).

``apply(state, event, now)`` and ``tick(state, now)`` mutate a ``DomainState`` and return
effects as data; ``restore`` rebuilds the state from the records those effects saved.
"""

from router.engine.calendar import BusinessCalendar, CompiledCalendar
from router.engine.call import NAMESPACE, make_id
from router.engine.core import (
    EngineInput,
    apply,
    identity_links,
    new_state,
    next_deadline,
    reconfigure,
    restore,
    snapshot,
    tick,
)
from router.engine.effects import (
    DropAgent,
    DropCustomer,
    Effect,
    Emit,
    SaveAgent,
    SaveAssignment,
    SaveConsent,
    SaveConversation,
    SaveCustomer,
    SaveIdentity,
    SaveMessage,
    SendReply,
)
from router.engine.errors import EngineError
from router.engine.policy import (
    AffinityPolicy,
    AfterHours,
    BotPolicy,
    ChannelWaits,
    DomainPolicy,
    InactivityPolicy,
    QueueMode,
    QueuePolicy,
    ReplyWindowPolicy,
    Returning,
    ShiftEnd,
    StepPolicy,
)
from router.engine.records import (
    AgentRecord,
    AssignmentRecord,
    ConversationRecord,
    ConversationStatus,
    CustomerRecord,
    DeadlineKind,
    IdentityRecord,
)
from router.engine.snapshots import agent_record, conversation_record, customer_record
from router.engine.state import DomainState

__all__ = [
    "NAMESPACE",
    "AffinityPolicy",
    "AfterHours",
    "AgentRecord",
    "AssignmentRecord",
    "BotPolicy",
    "BusinessCalendar",
    "ChannelWaits",
    "CompiledCalendar",
    "ConversationRecord",
    "ConversationStatus",
    "CustomerRecord",
    "DeadlineKind",
    "DomainPolicy",
    "DomainState",
    "DropAgent",
    "DropCustomer",
    "Effect",
    "Emit",
    "EngineError",
    "EngineInput",
    "IdentityRecord",
    "InactivityPolicy",
    "QueueMode",
    "QueuePolicy",
    "ReplyWindowPolicy",
    "Returning",
    "SaveAgent",
    "SaveAssignment",
    "SaveConsent",
    "SaveConversation",
    "SaveCustomer",
    "SaveIdentity",
    "SaveMessage",
    "SendReply",
    "ShiftEnd",
    "StepPolicy",
    "agent_record",
    "apply",
    "conversation_record",
    "customer_record",
    "identity_links",
    "make_id",
    "new_state",
    "next_deadline",
    "reconfigure",
    "restore",
    "snapshot",
    "tick",
]
