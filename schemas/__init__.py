"""The contract: every record on every Switchboard topic, as msgspec Structs.

One tagged union and one decoder per topic. Other systems read the generated JSON
Schema files under ``schemas/json/`` and the AsyncAPI document; a test fails when
those files are stale (``switchboard schemas`` rewrites them).
"""

from schemas.agents import (
    AGENT_EVENT_DECODER,
    AgentCommand,
    AgentEvent,
    AgentRegistered,
    AgentReplied,
    AgentSchedule,
    ConversationAcceptRequested,
    ConversationCloseRequested,
    ConversationTransferRequested,
    CustomerOwnerSet,
    PresenceChanged,
    ShiftInterval,
)
from schemas.cloudevents import CloudEventHeaders, decode_headers, encode_headers
from schemas.common import (
    Attachment,
    Channel,
    Presence,
    Strategy,
)
from schemas.inbound import (
    INBOUND_DECODER,
    DeliveryStatus,
    DeliveryStatusChanged,
    InboundEvent,
    MessageReceived,
)
from schemas.outbound import OUTBOUND_DECODER, OutboundEvent, ReplyRequested
from schemas.routing import (
    ROUTING_DECODER,
    CandidateNote,
    CommandCompleted,
    CommandRejected,
    ConversationAssigned,
    ConversationClosed,
    ConversationFallback,
    ConversationOffered,
    ConversationOutsideHours,
    ConversationOverflowed,
    ConversationQueued,
    ConversationReassigned,
    ConversationReplyWindowClosed,
    MessageRouted,
    RoutingEvent,
)

__all__ = [
    "AGENT_EVENT_DECODER",
    "INBOUND_DECODER",
    "OUTBOUND_DECODER",
    "ROUTING_DECODER",
    "AgentCommand",
    "AgentEvent",
    "AgentRegistered",
    "AgentReplied",
    "AgentSchedule",
    "Attachment",
    "CandidateNote",
    "Channel",
    "CloudEventHeaders",
    "CommandCompleted",
    "CommandRejected",
    "ConversationAcceptRequested",
    "ConversationAssigned",
    "ConversationCloseRequested",
    "ConversationClosed",
    "ConversationFallback",
    "ConversationOffered",
    "ConversationOutsideHours",
    "ConversationOverflowed",
    "ConversationQueued",
    "ConversationReassigned",
    "ConversationReplyWindowClosed",
    "ConversationTransferRequested",
    "CustomerOwnerSet",
    "DeliveryStatus",
    "DeliveryStatusChanged",
    "InboundEvent",
    "MessageReceived",
    "MessageRouted",
    "OutboundEvent",
    "Presence",
    "PresenceChanged",
    "ReplyRequested",
    "RoutingEvent",
    "ShiftInterval",
    "Strategy",
    "decode_headers",
    "encode_headers",
]
