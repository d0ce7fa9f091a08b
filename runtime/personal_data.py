"""Which stored values are personal data, as data: every column of every table and every
field of every event on the topics, with what it holds and whose it is.

Categories (``Category``): what a value would give away.

- ``identity``: it identifies a person or leads to one. Phone numbers, email addresses,
  channel user ids (PSID, chat id, web chat session), the customer ids made of them
  (``phone:+14155550100``, ``email:ann@example.com``, ``user:42``), thread keys that
  spell an address (``sms:{endpoint}:{address}``), providers' message ids (WhatsApp's
  ``wamid.`` is base64 of a record that spells the customer's phone number), the audit
  log's customer fingerprints (a 48-bit hash of the customer id keyed with the
  deployment's log digest key: whoever holds the key finds a phone number's by trying
  every number), and agent ids (often an email address).
- ``name``: a person's name (an agent's display name, a name on a contact card the
  customer shared, a token's holder).
- ``content``: what a person said or sent, and what others wrote about them: message
  text, subjects, captions, reactions, attachment URLs, media ids and file names,
  locations, contact cards, pre-chat answers and conversation attributes, template
  parameters, a bot's hand-off summary, a hand-back note, an admin's consent note.
- ``none``: neither identifies a person nor carries what they said: ids we generate
  (conversation, message, assignment, event ids), statuses, timestamps, counts, queue,
  skill, bot, channel and endpoint names (our side of a channel is the business's), a
  language tag. Such a value may still relate to a person, through the identity beside
  it: erasing that identity leaves it anonymous, which is the point of the split.

Subjects (``Subject``): whose data it is. ``customer`` (the person writing to the
business; what they share about others, such as a contact card, is classified as theirs:
it lives and dies with the message that carried it), ``agent`` (an employee: their id and
name, and what the platform records about their work), ``none``. A reply an agent or a bot
writes to a customer is the customer's content: it answers and often quotes them.

``COLUMNS`` classifies ``table.column`` of every table the migrations create (and
``schema_migrations``); ``FIELDS`` classifies ``Struct.field`` of every Struct on the
topics (``schemas.topics.TOPIC_TYPES``), named by the Struct that declares the field
(``Event.id``, ``ConversationEvent.customer_id``, ``MessageReceived.text``), nested
Structs included (``Attachment.url``). A field whose value holds Structs
(``MessageReceived.attachments``) is not named itself: it holds what their fields hold.
``SNAPSHOT_FIELDS`` does the same for the router's snapshots (``router.engine.records``)
stored in the ``record`` columns.

A column holding whole records (JSON snapshots, encoded events, dead letters) is
classified as holding every category its records can contain, and says which records
(``Holds.topics``, ``Holds.structs``); ``tests/test_personal_data.py`` checks that against
the records' own fields, that every column of a migrated database and every event field is
named here, and that nothing named here is gone.

The README's "Personal data" table (between the ``personal-data`` markers) is
``markdown()``'s output, checked by a test; ``python -m runtime.personal_data [README.md]``
rewrites it.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec
import msgspec.inspect as mi

from schemas import topics


class Category(enum.StrEnum):
    """What a value would give away (see the module docstring)."""

    IDENTITY = "identity"
    NAME = "name"
    CONTENT = "content"
    NONE = "none"


class Subject(enum.StrEnum):
    """Whose data a value is."""

    CUSTOMER = "customer"
    AGENT = "agent"
    NONE = "none"


class Label(NamedTuple):
    category: Category
    subject: Subject

    def __str__(self) -> str:
        return f"{self.category}/{self.subject}"


_NOT_PERSONAL_LABEL = Label(Category.NONE, Subject.NONE)


@dataclass(frozen=True, slots=True)
class Holds:
    """What one column or field holds: one label, or several for a column of records."""

    labels: frozenset[Label]
    note: str = ""
    """Why, where it is not obvious (shown under the README's tables)."""
    topics: tuple[str, ...] = ()
    """Topics whose records the column holds (every field of their events)."""
    structs: tuple[str, ...] = ()
    """Structs the column holds (``schemas`` or ``router.engine.records`` class names)."""

    @property
    def personal(self) -> bool:
        return any(label.category is not Category.NONE for label in self.labels)

    def because(self, note: str) -> Holds:
        return Holds(self.labels, note, self.topics, self.structs)

    def records(self, *, topics: Iterable[str] = (), structs: Iterable[str] = ()) -> Holds:
        """The same labels, as held by a column of these records."""
        return Holds(self.labels, self.note, tuple(topics), tuple(structs))

    def __or__(self, other: Holds) -> Holds:
        return Holds(merged(self.labels | other.labels), self.note or other.note)


def merged(labels: Iterable[Label]) -> frozenset[Label]:
    """``labels`` without ``none`` when anything else is there."""
    found = frozenset(labels)
    personal = found - {_NOT_PERSONAL_LABEL}
    return personal or frozenset({_NOT_PERSONAL_LABEL})


def _holds(category: Category, subject: Subject) -> Holds:
    return Holds(frozenset({Label(category, subject)}))


NOT_PERSONAL: Final = _holds(Category.NONE, Subject.NONE)
CUSTOMER_IDENTITY: Final = _holds(Category.IDENTITY, Subject.CUSTOMER)
CUSTOMER_NAME: Final = _holds(Category.NAME, Subject.CUSTOMER)
CUSTOMER_CONTENT: Final = _holds(Category.CONTENT, Subject.CUSTOMER)
AGENT_IDENTITY: Final = _holds(Category.IDENTITY, Subject.AGENT)
AGENT_NAME: Final = _holds(Category.NAME, Subject.AGENT)

_PROVIDER_ID = CUSTOMER_IDENTITY.because(
    "A provider's message id leads to the person through the provider, and WhatsApp's "
    "(`wamid.…`) is base64 of a record that spells the customer's phone number."
)
_THREAD_KEY = CUSTOMER_IDENTITY.because(
    "A thread key is `{channel}:{endpoint}:{customer address}` (email: the root message's "
    "Message-ID)."
)
_ATTRIBUTES = CUSTOMER_CONTENT.because(
    "Attributes come from pre-chat forms, CRM lookups and API clients: free answers "
    "(an order number, an email address) as the customer or the client gave them."
)
_NONE = NOT_PERSONAL

COLUMNS: Final[Mapping[str, Holds]] = {
    # 0001_initial.sql
    "domains.domain": _NONE,
    "domains.created_at": _NONE,
    "agents.domain": _NONE,
    "agents.agent_id": AGENT_IDENTITY,
    "agents.name": AGENT_NAME,
    "agents.presence": _NONE,
    "agents.record": (AGENT_IDENTITY | AGENT_NAME).records(structs=["AgentRecord"]),
    "agents.updated_at": _NONE,
    "customers.domain": _NONE,
    "customers.customer_id": CUSTOMER_IDENTITY,
    "customers.owner_agent_id": AGENT_IDENTITY,
    "customers.last_agent_id": AGENT_IDENTITY,
    "customers.record": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        structs=["CustomerRecord"]
    ),
    "customers.updated_at": _NONE,
    "conversations.domain": _NONE,
    "conversations.conversation_id": _NONE,
    "conversations.channel": _NONE,
    "conversations.customer_id": CUSTOMER_IDENTITY,
    "conversations.conversation_key": _THREAD_KEY,
    "conversations.queue": _NONE,
    "conversations.status": _NONE,
    "conversations.owner_agent_id": AGENT_IDENTITY,
    "conversations.preferred_agent_id": AGENT_IDENTITY,
    "conversations.opened_at": _NONE,
    "conversations.closed_at": _NONE,
    "conversations.record": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        structs=["ConversationRecord"]
    ),
    "conversations.updated_at": _NONE,
    "messages.domain": _NONE,
    "messages.message_id": _NONE,
    "messages.conversation_id": _NONE,
    "messages.direction": _NONE,
    "messages.channel": _NONE,
    "messages.provider_message_id": _PROVIDER_ID,
    "messages.agent_id": AGENT_IDENTITY,
    "messages.text": CUSTOMER_CONTENT,
    "messages.attachments": CUSTOMER_CONTENT.records(structs=["Attachment"]),
    "messages.status": _NONE,
    "messages.occurred_at": _NONE,
    "messages.created_at": _NONE,
    "assignments.domain": _NONE,
    "assignments.assignment_id": _NONE,
    "assignments.conversation_id": _NONE,
    "assignments.agent_id": AGENT_IDENTITY,
    "assignments.strategy": _NONE,
    "assignments.step": _NONE,
    "assignments.waited_seconds": _NONE,
    "assignments.candidates": AGENT_IDENTITY.records(structs=["CandidateNote"]),
    "assignments.offered_at": _NONE,
    "assignments.accepted_at": _NONE,
    "assignments.ended_at": _NONE,
    "assignments.end_reason": _NONE,
    "assignments.record": AGENT_IDENTITY.records(structs=["AssignmentRecord"]),
    "retention_marks.domain": _NONE,
    "retention_marks.kind": _NONE,
    "retention_marks.closed_at": _NONE,
    "retention_marks.conversation_id": _NONE,
    "router_offsets.consumer_group": _NONE,
    "router_offsets.topic": _NONE,
    "router_offsets.partition": _NONE,
    "router_offsets.next_offset": _NONE,
    "router_offsets.updated_at": _NONE,
    "dead_letters.id": _NONE,
    "dead_letters.topic": _NONE,
    "dead_letters.partition": _NONE,
    "dead_letters.offset": _NONE,
    "dead_letters.reason": _NONE.because("Why it was set aside: never quotes the value."),
    "dead_letters.key": _NONE.because("Our records' key is the routing domain."),
    "dead_letters.value": (
        CUSTOMER_IDENTITY | CUSTOMER_NAME | CUSTOMER_CONTENT | AGENT_IDENTITY | AGENT_NAME
    )
    .because(
        "Any record of any topic, or a provider's whole webhook request (adapters' dead "
        "letters): that holds what normalizing drops, such as the customer's profile name "
        "(WhatsApp `contacts[].profile.name`, Telegram `from.first_name`, an email's From "
        "display name)."
    )
    .records(topics=topics.TOPIC_TYPES),
    "dead_letters.created_at": _NONE,
    "outbound_messages.domain": _NONE,
    "outbound_messages.outbound_id": _NONE,
    "outbound_messages.conversation_id": _NONE,
    "outbound_messages.channel": _NONE,
    "outbound_messages.agent_id": AGENT_IDENTITY,
    "outbound_messages.status": _NONE,
    "outbound_messages.provider_message_id": _PROVIDER_ID,
    "outbound_messages.attempts": _NONE,
    "outbound_messages.error": CUSTOMER_CONTENT.because(
        "The provider's own words about a refused send: egress replaces email addresses "
        "and numbers of seven digits or more, but other quoted values (an X handle) stay."
    ),
    "outbound_messages.created_at": _NONE,
    "outbound_messages.updated_at": _NONE,
    # 0002_agent_api.sql
    "api_tokens.domain": _NONE,
    "api_tokens.token_id": _NONE,
    "api_tokens.token_sha256": _NONE,
    "api_tokens.scope": _NONE,
    "api_tokens.agent_id": AGENT_IDENTITY,
    "api_tokens.name": AGENT_NAME.because(
        "A token's label says what or who holds it: often a person's name."
    ),
    "api_tokens.created_at": _NONE,
    "api_tokens.revoked_at": _NONE,
    # 0003_partition_leases.sql
    "partition_leases.consumer_group": _NONE,
    "partition_leases.partition": _NONE,
    "partition_leases.epoch": _NONE,
    "partition_leases.owner": _NONE,
    "partition_leases.updated_at": _NONE,
    # 0004_agent_event_log.sql
    "agent_events.domain": _NONE,
    "agent_events.seq": _NONE,
    "agent_events.event_id": _NONE,
    "agent_events.type": _NONE,
    "agent_events.occurred_at": _NONE,
    "agent_events.applied_at": _NONE,
    "agent_events.payload": (
        CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY | AGENT_NAME
    ).records(topics=[topics.AGENTS]),
    # 0006_outbox_batches.sql
    "outbox.seq": _NONE,
    "outbox.partition": _NONE,
    "outbox.event_count": _NONE,
    "outbox.events": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        topics=[topics.ROUTING, topics.OUTBOUND]
    ),
    "outbox.created_at": _NONE,
    # 0007_dead_letter_redrive.sql, 0009_adapter_dead_letters.sql
    "dead_letters.domain": _NONE,
    "dead_letters.redriven_at": _NONE,
    "dead_letters.redrives": _NONE,
    "dead_letters.source": _NONE,
    "dead_letters.sealed_with": _NONE.because("The id of the key a sealed record needs."),
    # 0008_webhook_nonces.sql
    "webhook_nonces.provider": _NONE,
    "webhook_nonces.nonce": _NONE,
    "webhook_nonces.expires_at": _NONE,
    # 0010_token_lifecycle_and_audit.sql
    "api_tokens.expires_at": _NONE,
    "api_tokens.last_used_at": _NONE,
    "api_tokens.created_by": _NONE,
    "api_tokens.revoked_by": _NONE,
    "api_tokens.rotated_at": _NONE,
    "api_tokens.previous_sha256": _NONE,
    "api_tokens.previous_valid_until": _NONE,
    "audit_log.id": _NONE,
    "audit_log.at": _NONE,
    "audit_log.actor": _NONE.because("A token id, `bootstrap`, `local` or `cli`."),
    "audit_log.action": _NONE,
    "audit_log.domain": _NONE,
    "audit_log.target": (CUSTOMER_IDENTITY | AGENT_IDENTITY).because(
        "`agent <id>`, or `customer h:<digest>`: the digest is a 48-bit BLAKE2b of the "
        "customer id keyed with the deployment's log digest key "
        "(`runtime.logging.fingerprint`): whoever holds the key finds a phone number's by "
        "hashing every number, so it is pseudonymous, not anonymous (the logs use it too)."
    ),
    "audit_log.detail": (AGENT_IDENTITY | CUSTOMER_CONTENT).because(
        "Ids, counts and settings: an agent id, and the admin's note of `customer.consent.set`."
    ),
    # 0011_config_versions.sql
    "config_versions.version": _NONE,
    "config_versions.created_at": _NONE,
    "config_versions.author": _NONE,
    "config_versions.reason": _NONE,
    "config_versions.document": _NONE.because(
        "Domains, queues and the business's own endpoints; secrets only by the name of "
        "the environment variable that holds them."
    ),
    "config_versions.diff": _NONE,
    "config_versions.domains": _NONE,
    "config_sources.source": _NONE,
    "config_sources.sha256": _NONE,
    "config_sources.version": _NONE,
    # 0012_customer_identities.sql
    "customer_identities.domain": _NONE,
    "customer_identities.identity": CUSTOMER_IDENTITY,
    "customer_identities.customer_id": CUSTOMER_IDENTITY,
    "customer_identities.source": _NONE,
    "customer_identities.linked_at": _NONE,
    # 0014_business_started.sql
    "outbound_messages.kind": _NONE,
    "outbound_messages.customer_id": CUSTOMER_IDENTITY,
    "outbound_messages.endpoint": _NONE,
    "outbound_messages.campaign_id": _NONE,
    "outbound_messages.client_key": _NONE,
    "outbound_messages.request": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        structs=["NotificationRequested"]
    ),
    "outbound_messages.send_after": _NONE,
    "outbound_messages.lease_until": _NONE,
    "campaigns.domain": _NONE,
    "campaigns.campaign_id": _NONE,
    "campaigns.name": _NONE,
    "campaigns.status": _NONE,
    "campaigns.created_by": _NONE,
    "campaigns.created_at": _NONE,
    "campaigns.updated_at": _NONE,
    "erasures.domain": _NONE,
    "erasures.erasure_id": _NONE,
    "erasures.identities": CUSTOMER_IDENTITY.because(
        "Whom an erasure names, until the router has applied it: then emptied."
    ),
    "erasures.conversation_ids": _NONE,
    "erasures.requested_by": _NONE.because("A token id, `bootstrap`, `local` or `cli`."),
    "erasures.requested_at": _NONE,
    "erasures.completed_at": _NONE,
    "erasures.erased": _NONE.because("Rows deleted, counted by table."),
    "erasures.keep_consents": _NONE,
    "topic_keys.key_id": _NONE,
    "topic_keys.domain": _NONE,
    "topic_keys.subject": CUSTOMER_IDENTITY.because(
        "The SHA-256 of whose records the key seals (an identity, a conversation, a thread or "
        "a sent message): taken away when the customer is erased."
    ),
    "topic_keys.period": _NONE,
    "topic_keys.spare": _NONE,
    "topic_keys.key": _NONE.because(
        "An AES-256 key: it opens the customer's sealed records on the topics; erasure deletes it."
    ),
    "topic_keys.created_at": _NONE,
    "topic_keys.shred_at": _NONE,
    "retention_scans.domain": _NONE,
    "retention_scans.kind": _NONE,
    "retention_scans.after": CUSTOMER_IDENTITY.because(
        "Where the walk of customers stopped: a customer id, deleted when that customer is erased."
    ),
    "consents.domain": _NONE,
    "consents.channel": _NONE,
    "consents.address": CUSTOMER_IDENTITY,
    "consents.customer_id": CUSTOMER_IDENTITY,
    "consents.consent": _NONE,
    "consents.source": _NONE,
    "consents.changed_at": _NONE,
    "consent_changes.domain": _NONE,
    "consent_changes.change_id": _NONE,
    "consent_changes.channel": _NONE,
    "consent_changes.address": CUSTOMER_IDENTITY,
    "consent_changes.customer_id": CUSTOMER_IDENTITY,
    "consent_changes.consent": _NONE,
    "consent_changes.source": _NONE,
    "consent_changes.message_id": _NONE,
    "consent_changes.actor": AGENT_IDENTITY.because("The agent who recorded it, if any."),
    "consent_changes.changed_at": _NONE,
    # 0015_send_pacing.sql
    "send_buckets.domain": _NONE,
    "send_buckets.channel": _NONE,
    "send_buckets.endpoint": _NONE,
    "send_buckets.tokens": _NONE,
    "send_buckets.refilled_at": _NONE,
    "send_buckets.granted": _NONE,
    "outbound_messages.status_unreported": _NONE,
    # 0016_bots.sql
    "outbound_messages.bot_id": _NONE,
    "messages.bot_id": _NONE,
    # 0017_bot_health.sql
    "bot_health.domain": _NONE,
    "bot_health.bot_id": _NONE,
    "bot_health.record": _NONE.records(structs=["BotRecord"]),
    # runtime.db.migrate's own bookkeeping
    "schema_migrations.version": _NONE,
    "schema_migrations.name": _NONE,
    "schema_migrations.applied_at": _NONE,
}
"""``table.column`` -> what it holds, for every table in a migrated database."""

FIELDS: Final[Mapping[str, Holds]] = {
    # schemas.common
    "Event.id": _NONE,
    "Event.domain": _NONE,
    "Event.occurred_at": _NONE,
    "Attachment.url": CUSTOMER_CONTENT,
    "Attachment.content_type": _NONE,
    "Attachment.filename": CUSTOMER_CONTENT,
    "Attachment.size_bytes": _NONE,
    "Attachment.media_id": CUSTOMER_CONTENT.because("It fetches the media from the provider."),
    "Attachment.provider_url": CUSTOMER_CONTENT,
    "Attachment.sha256": _NONE,
    "Attachment.caption": CUSTOMER_CONTENT,
    "Location.latitude": CUSTOMER_CONTENT,
    "Location.longitude": CUSTOMER_CONTENT,
    "Location.name": CUSTOMER_CONTENT.because("A place's name, not a person's."),
    "Location.address": CUSTOMER_CONTENT,
    "Location.url": CUSTOMER_CONTENT,
    "Contact.name": CUSTOMER_NAME,
    "Contact.phones": CUSTOMER_IDENTITY,
    "Contact.emails": CUSTOMER_IDENTITY,
    "Contact.organization": CUSTOMER_CONTENT,
    # conversations.inbound
    "MessageReceived.channel": _NONE,
    "MessageReceived.endpoint": _NONE,
    "MessageReceived.customer_address": CUSTOMER_IDENTITY,
    "MessageReceived.customer_id": CUSTOMER_IDENTITY,
    "MessageReceived.conversation_key": _THREAD_KEY,
    "MessageReceived.provider_message_id": _PROVIDER_ID,
    "MessageReceived.text": CUSTOMER_CONTENT,
    "MessageReceived.subject": CUSTOMER_CONTENT,
    "MessageReceived.in_reply_to": _PROVIDER_ID,
    "MessageReceived.queue": _NONE,
    "MessageReceived.priority": _NONE,
    "MessageReceived.skills": _NONE,
    "MessageReceived.language": _NONE,
    "MessageReceived.attributes": _ATTRIBUTES,
    "MessageReceived.reply_window_ends_at": _NONE,
    "MessageReceived.known_customer_id": CUSTOMER_IDENTITY,
    "MessageReceived.consent": _NONE,
    "MessageReceived.consent_source": _NONE,
    "DeliveryStatusChanged.channel": _NONE,
    "DeliveryStatusChanged.provider_message_id": _PROVIDER_ID,
    "DeliveryStatusChanged.status": _NONE,
    "DeliveryStatusChanged.error_code": _NONE,
    "DeliveryStatusChanged.outbound_id": _NONE,
    "DeliveryStatusChanged.provider_status": _NONE,
    "DeliveryStatusChanged.read_through": _NONE,
    "DeliveryStatusChanged.conversation_key": _THREAD_KEY,
    "ConsentReported.channel": _NONE,
    "ConsentReported.endpoint": _NONE,
    "ConsentReported.customer_address": CUSTOMER_IDENTITY,
    "ConsentReported.customer_id": CUSTOMER_IDENTITY,
    "ConsentReported.consent": _NONE,
    "ConsentReported.provider_status": _NONE,
    "MessageChanged.channel": _NONE,
    "MessageChanged.endpoint": _NONE,
    "MessageChanged.customer_address": CUSTOMER_IDENTITY,
    "MessageChanged.customer_id": CUSTOMER_IDENTITY,
    "MessageChanged.conversation_key": _THREAD_KEY,
    "MessageChanged.provider_message_id": _PROVIDER_ID,
    "MessageChanged.change": _NONE,
    "MessageChanged.change_id": _PROVIDER_ID,
    "MessageChanged.reaction": CUSTOMER_CONTENT,
    "MessageChanged.text": CUSTOMER_CONTENT,
    "HumanReplied.channel": _NONE,
    "HumanReplied.endpoint": _NONE,
    "HumanReplied.customer_address": CUSTOMER_IDENTITY,
    "HumanReplied.customer_id": CUSTOMER_IDENTITY,
    "HumanReplied.conversation_key": _THREAD_KEY,
    "HumanReplied.provider_message_id": _PROVIDER_ID,
    # agents.events
    "ShiftInterval.day": _NONE,
    "ShiftInterval.start": _NONE,
    "ShiftInterval.end": _NONE,
    "AgentSchedule.timezone": _NONE,
    "AgentRegistered.agent_id": AGENT_IDENTITY,
    "AgentRegistered.name": AGENT_NAME,
    "AgentRegistered.skills": _NONE,
    "AgentRegistered.queues": _NONE,
    "AgentRegistered.capacity": _NONE,
    "PresenceChanged.agent_id": AGENT_IDENTITY,
    "PresenceChanged.status": _NONE,
    "CustomerOwnerSet.customer_id": CUSTOMER_IDENTITY,
    "CustomerOwnerSet.agent_id": AGENT_IDENTITY,
    "AgentRemoved.agent_id": AGENT_IDENTITY,
    "CustomerLinkRequested.customer_id": CUSTOMER_IDENTITY,
    "CustomerLinkRequested.identity": CUSTOMER_IDENTITY,
    "CustomerLinkRequested.source": _NONE,
    "CustomerUnlinkRequested.customer_id": CUSTOMER_IDENTITY,
    "CustomerUnlinkRequested.identity": CUSTOMER_IDENTITY,
    "CustomerMergeRequested.customer_id": CUSTOMER_IDENTITY,
    "CustomerMergeRequested.from_customer_id": CUSTOMER_IDENTITY,
    "ConversationAcceptRequested.conversation_id": _NONE,
    "ConversationAcceptRequested.agent_id": AGENT_IDENTITY,
    "ConversationCloseRequested.conversation_id": _NONE,
    "ConversationCloseRequested.agent_id": AGENT_IDENTITY,
    "ConversationCloseRequested.reason": _NONE,
    "ConversationTransferRequested.conversation_id": _NONE,
    "ConversationTransferRequested.agent_id": AGENT_IDENTITY,
    "ConversationTransferRequested.to_agent_id": AGENT_IDENTITY,
    "ConversationTransferRequested.to_queue": _NONE,
    "ConversationDeclineRequested.conversation_id": _NONE,
    "ConversationDeclineRequested.agent_id": AGENT_IDENTITY,
    "ConversationDeclineRequested.reason": _NONE,
    "ConversationUpdateRequested.conversation_id": _NONE,
    "ConversationUpdateRequested.agent_id": AGENT_IDENTITY,
    "ConversationUpdateRequested.priority": _NONE,
    "ConversationUpdateRequested.skills": _NONE,
    "ConversationUpdateRequested.language": _NONE,
    "ConversationUpdateRequested.attributes": _ATTRIBUTES,
    "ConversationSnoozeRequested.conversation_id": _NONE,
    "ConversationSnoozeRequested.agent_id": AGENT_IDENTITY,
    "ConversationSnoozeRequested.until": _NONE,
    "Answerer.mode": _NONE,
    "Answerer.agent_id": AGENT_IDENTITY,
    "Answerer.queue": _NONE,
    "Answerer.until": _NONE,
    "CustomerNotified.outbound_id": _NONE,
    "CustomerNotified.conversation_id": _NONE,
    "CustomerNotified.customer_id": CUSTOMER_IDENTITY,
    "CustomerNotified.channel": _NONE,
    "CustomerNotified.endpoint": _NONE,
    "CustomerNotified.customer_address": CUSTOMER_IDENTITY,
    "CustomerNotified.attributes": _ATTRIBUTES,
    "CustomerNotified.campaign_id": _NONE,
    "CustomerConsentRequested.channel": _NONE,
    "CustomerConsentRequested.customer_address": CUSTOMER_IDENTITY,
    "CustomerConsentRequested.customer_id": CUSTOMER_IDENTITY,
    "CustomerConsentRequested.consent": _NONE,
    "CustomerConsentRequested.agent_id": AGENT_IDENTITY,
    "CustomerConsentRequested.note": CUSTOMER_CONTENT.because(
        "An admin's words about the customer's consent (a signed form, a call)."
    ),
    "ConversationTakeoverRequested.conversation_id": _NONE,
    "ConversationTakeoverRequested.agent_id": AGENT_IDENTITY,
    "ConversationHandbackRequested.conversation_id": _NONE,
    "ConversationHandbackRequested.agent_id": AGENT_IDENTITY,
    "ConversationHandbackRequested.bot_id": _NONE,
    "ConversationHandbackRequested.note": CUSTOMER_CONTENT.because(
        "A person's note to the bot about the customer."
    ),
    "AgentReplied.conversation_id": _NONE,
    "AgentReplied.agent_id": AGENT_IDENTITY,
    "AgentReplied.outbound_id": _NONE,
    "AgentReplied.channel": _NONE,
    # bots.events (forwarded to agents.events)
    "Handoff.reason": _NONE,
    "Handoff.summary": CUSTOMER_CONTENT.because(
        "A bot's summary of what the customer wants: it quotes them."
    ),
    "Handoff.intent": _NONE,
    "Handoff.language": _NONE,
    "Handoff.skills": _NONE,
    "Handoff.priority": _NONE,
    "Handoff.attributes": _ATTRIBUTES,
    "BotHandoff.bot_id": _NONE,
    "BotHandoff.handed_off_at": _NONE,
    "BotAnswer.conversation_id": _NONE,
    "BotAnswer.bot_id": _NONE,
    "BotAnswer.turn_id": _NONE,
    "BotAnswer.in_reply_to": _PROVIDER_ID,
    "BotReplied.text": CUSTOMER_CONTENT,
    "BotReplied.quick_replies": CUSTOMER_CONTENT,
    "BotReplied.progress": _NONE,
    "BotHandoffRequested.text": CUSTOMER_CONTENT,
    "BotResolved.text": CUSTOMER_CONTENT,
    "BotResolved.reason": _NONE,
    "BotFailed.error": _NONE,
    # conversations.routing
    "CandidateNote.agent_id": AGENT_IDENTITY,
    "CandidateNote.reason": _NONE,
    "ConversationEvent.conversation_id": _NONE,
    "ConversationEvent.channel": _NONE,
    "ConversationEvent.customer_id": CUSTOMER_IDENTITY,
    "ConversationEvent.queue": _NONE,
    "ConversationQueued.step": _NONE,
    "ConversationQueued.preferred_agent_id": AGENT_IDENTITY,
    "ConversationQueued.wait_until": _NONE,
    "ConversationQueued.priority": _NONE,
    "ConversationQueued.reply_window_ends_at": _NONE,
    "ConversationQueued.reply_window_closed": _NONE,
    "ConversationOffered.agent_id": AGENT_IDENTITY,
    "ConversationOffered.strategy": _NONE,
    "ConversationOffered.step": _NONE,
    "ConversationOffered.expires_at": _NONE,
    "ConversationOffered.reply_window_ends_at": _NONE,
    "ConversationOffered.reply_window_closed": _NONE,
    "ConversationAssigned.agent_id": AGENT_IDENTITY,
    "ConversationAssigned.assignment_id": _NONE,
    "ConversationAssigned.strategy": _NONE,
    "ConversationAssigned.step": _NONE,
    "ConversationAssigned.waited_seconds": _NONE,
    "ConversationAssigned.preferred_agent_id": AGENT_IDENTITY,
    "ConversationAssigned.reply_window_ends_at": _NONE,
    "ConversationAssigned.reply_window_closed": _NONE,
    "ConversationFallback.from_step": _NONE,
    "ConversationFallback.to_step": _NONE,
    "ConversationFallback.preferred_agent_id": AGENT_IDENTITY,
    "ConversationFallback.reason": _NONE,
    "ConversationReassigned.from_agent_id": AGENT_IDENTITY,
    "ConversationReassigned.to_agent_id": AGENT_IDENTITY,
    "ConversationReassigned.to_queue": _NONE,
    "ConversationReassigned.strategy": _NONE,
    "ConversationReassigned.reason": _NONE,
    "ConversationOverflowed.waited_seconds": _NONE,
    "ConversationClosed.agent_id": AGENT_IDENTITY,
    "ConversationClosed.reason": _NONE,
    "ConversationClosed.bot_id": _NONE,
    "ConversationClosed.contained": _NONE,
    "MessageRouted.message_id": _NONE,
    "MessageRouted.provider_message_id": _PROVIDER_ID,
    "MessageRouted.agent_id": AGENT_IDENTITY,
    "MessageRouted.reply_window_ends_at": _NONE,
    "MessageRouted.reply_window_closed": _NONE,
    "MessageRouted.answers_outbound_id": _NONE,
    "MessageRouted.bot_id": _NONE,
    "MessageChangeRouted.change_event_id": _NONE,
    "MessageChangeRouted.provider_message_id": _PROVIDER_ID,
    "MessageChangeRouted.change": _NONE,
    "MessageChangeRouted.reaction": CUSTOMER_CONTENT,
    "MessageChangeRouted.text": CUSTOMER_CONTENT,
    "MessageChangeRouted.agent_id": AGENT_IDENTITY,
    "MessageChangeRouted.bot_id": _NONE,
    "ConversationReplyWindowClosed.reply_window_ends_at": _NONE,
    "ConversationReplyWindowClosed.status": _NONE,
    "ConversationReplyWindowClosed.agent_id": AGENT_IDENTITY,
    "ConversationOutsideHours.opens_at": _NONE,
    "ConversationOutsideHours.calendar": _NONE,
    "ConversationUpdated.agent_id": AGENT_IDENTITY,
    "ConversationUpdated.priority": _NONE,
    "ConversationUpdated.skills": _NONE,
    "ConversationUpdated.language": _NONE,
    "ConversationUpdated.attributes": _ATTRIBUTES,
    "ConversationSnoozed.agent_id": AGENT_IDENTITY,
    "ConversationSnoozed.until": _NONE,
    "ConversationBotAssigned.bot_id": _NONE,
    "ConversationBotAssigned.reason": _NONE,
    "ConversationBotAssigned.from_agent_id": AGENT_IDENTITY,
    "ConversationBotAssigned.note": CUSTOMER_CONTENT,
    "BotTurn.bot_id": _NONE,
    "BotTurn.answer_by": _NONE,
    "BotTurn.turn": _NONE,
    "BotTurn.message_id": _NONE,
    "BotTurn.provider_message_id": _PROVIDER_ID,
    "BotTurn.text": CUSTOMER_CONTENT,
    "BotTurn.subject": CUSTOMER_CONTENT,
    "BotTurn.note": CUSTOMER_CONTENT,
    "BotTurn.language": _NONE,
    "BotTurn.attributes": _ATTRIBUTES,
    "BotTurn.customer_address": CUSTOMER_IDENTITY,
    "ConversationHandedOff.bot_id": _NONE,
    "ConversationHandedOff.reason": _NONE,
    "ConversationHandedOff.to_agent_id": AGENT_IDENTITY,
    "ConversationHandedOff.position": _NONE,
    "ConversationHandedOff.agents_online": _NONE,
    "ConversationHandedOff.expected_wait_seconds": _NONE,
    "ConversationHandedOff.opens_at": _NONE,
    "ConversationHandedOff.continue_on": _NONE,
    "BotStatusChanged.bot_id": _NONE,
    "BotStatusChanged.available": _NONE,
    "BotStatusChanged.until": _NONE,
    "BotStatusChanged.failures": _NONE,
    "CustomerLinked.customer_id": CUSTOMER_IDENTITY,
    "CustomerLinked.identity": CUSTOMER_IDENTITY,
    "CustomerLinked.linked": _NONE,
    "CustomerLinked.source": _NONE,
    "CustomerMerged.customer_id": CUSTOMER_IDENTITY,
    "CustomerMerged.merged_customer_id": CUSTOMER_IDENTITY,
    "CustomerMerged.identities": CUSTOMER_IDENTITY,
    "CustomerMerged.conversation_ids": _NONE,
    "CustomerErased.erasure_id": _NONE,
    "CustomerErased.conversation_ids": _NONE,
    "CustomerErased.more_conversations": _NONE,
    "CustomerErased.identities": _NONE.because("A count."),
    "CustomerConsentChanged.customer_id": CUSTOMER_IDENTITY,
    "CustomerConsentChanged.channel": _NONE,
    "CustomerConsentChanged.customer_address": CUSTOMER_IDENTITY,
    "CustomerConsentChanged.consent": _NONE,
    "CustomerConsentChanged.source": _NONE,
    "CustomerConsentChanged.message_id": _NONE,
    "OutboundStatusChanged.channel": _NONE,
    "OutboundStatusChanged.provider_message_id": _PROVIDER_ID,
    "OutboundStatusChanged.status": _NONE,
    "OutboundStatusChanged.outbound_id": _NONE,
    "OutboundStatusChanged.error_code": _NONE,
    "OutboundStatusChanged.provider_status": _NONE,
    "OutboundStatusChanged.conversation_id": _NONE,
    "OutboundStatusChanged.read_through": _NONE,
    "CommandCompleted.command_id": _NONE,
    "CommandCompleted.conversation_id": _NONE,
    "CommandRejected.command_id": _NONE,
    "CommandRejected.reason": _NONE,
    "CommandRejected.conversation_id": _NONE,
    # conversations.outbound
    "TemplateUse.name": _NONE,
    "TemplateUse.language": _NONE,
    "TemplateUse.provider_template": _NONE,
    "TemplateUse.category": _NONE,
    "TemplateUse.parameters": CUSTOMER_CONTENT.because(
        "The values filled into a template (`Hi {{1}}`): the customer's name, an order."
    ),
    "ReplyRequested.conversation_id": _NONE,
    "ReplyRequested.agent_id": AGENT_IDENTITY,
    "ReplyRequested.channel": _NONE,
    "ReplyRequested.endpoint": _NONE,
    "ReplyRequested.customer_address": CUSTOMER_IDENTITY,
    "ReplyRequested.text": CUSTOMER_CONTENT,
    "ReplyRequested.subject": CUSTOMER_CONTENT,
    "ReplyRequested.in_reply_to": _PROVIDER_ID,
    "ReplyRequested.message_tag": _NONE,
    "ReplyRequested.bot_id": _NONE,
    "ReplyRequested.quick_replies": CUSTOMER_CONTENT,
    "NotificationRequested.conversation_id": _NONE,
    "NotificationRequested.customer_id": CUSTOMER_IDENTITY,
    "NotificationRequested.channel": _NONE,
    "NotificationRequested.endpoint": _NONE,
    "NotificationRequested.customer_address": CUSTOMER_IDENTITY,
    "NotificationRequested.text": CUSTOMER_CONTENT,
    "NotificationRequested.subject": CUSTOMER_CONTENT,
    "NotificationRequested.message_tag": _NONE,
    "NotificationRequested.agent_id": AGENT_IDENTITY,
    "NotificationRequested.campaign_id": _NONE,
    "NotificationRequested.client_key": _NONE,
    "NotificationRequested.attributes": _ATTRIBUTES,
}
"""``Struct.field`` -> what it holds, for every Struct on the topics (``TOPIC_TYPES``)."""

SNAPSHOT_FIELDS: Final[Mapping[str, Holds]] = {
    "AgentRecord.agent_id": AGENT_IDENTITY,
    "AgentRecord.name": AGENT_NAME,
    "AgentRecord.skills": _NONE,
    "AgentRecord.queues": _NONE,
    "AgentRecord.capacity": _NONE,
    "AgentRecord.presence": _NONE,
    "AgentRecord.load": _NONE,
    "AgentRecord.idle_since": _NONE,
    "AgentRecord.missed_offers": _NONE,
    "AgentRecord.pace_due": _NONE,
    "AgentRecord.shift_due": _NONE,
    "AssignmentRecord.assignment_id": _NONE,
    "AssignmentRecord.conversation_id": _NONE,
    "AssignmentRecord.agent_id": AGENT_IDENTITY,
    "AssignmentRecord.channel": _NONE,
    "AssignmentRecord.queue": _NONE,
    "AssignmentRecord.strategy": _NONE,
    "AssignmentRecord.step": _NONE,
    "AssignmentRecord.waited_seconds": _NONE,
    "AssignmentRecord.offered_at": _NONE,
    "AssignmentRecord.accepted_at": _NONE,
    "AssignmentRecord.ended_at": _NONE,
    "AssignmentRecord.end_reason": _NONE,
    "ConversationRecord.conversation_id": _NONE,
    "ConversationRecord.channel": _NONE,
    "ConversationRecord.endpoint": _NONE,
    "ConversationRecord.customer_address": CUSTOMER_IDENTITY,
    "ConversationRecord.customer_id": CUSTOMER_IDENTITY,
    "ConversationRecord.conversation_key": _THREAD_KEY,
    "ConversationRecord.queue": _NONE,
    "ConversationRecord.priority": _NONE,
    "ConversationRecord.status": _NONE,
    "ConversationRecord.owner_agent_id": AGENT_IDENTITY,
    "ConversationRecord.preferred_agent_id": AGENT_IDENTITY,
    "ConversationRecord.offered_to": AGENT_IDENTITY,
    "ConversationRecord.step": _NONE,
    "ConversationRecord.fell_back": _NONE,
    "ConversationRecord.waiting_since": _NONE,
    "ConversationRecord.opened_at": _NONE,
    "ConversationRecord.last_customer_message_at": _NONE,
    "ConversationRecord.last_agent_reply_at": _NONE,
    "ConversationRecord.first_response_at": _NONE,
    "ConversationRecord.last_activity_at": _NONE,
    "ConversationRecord.deadline": _NONE,
    "ConversationRecord.deadline_kind": _NONE,
    "ConversationRecord.step_until": _NONE,
    "ConversationRecord.passed_over": AGENT_IDENTITY.because("Agent id -> why passed over."),
    "ConversationRecord.message_count": _NONE,
    "ConversationRecord.reply_window_ends_at": _NONE,
    "ConversationRecord.reply_window_urgent": _NONE,
    "ConversationRecord.reply_window_closed": _NONE,
    "ConversationRecord.closed_at": _NONE,
    "ConversationRecord.close_reason": _NONE,
    "ConversationRecord.skills": _NONE,
    "ConversationRecord.language": _NONE,
    "ConversationRecord.attributes": _ATTRIBUTES,
    "ConversationRecord.snoozed_until": _NONE,
    "ConversationRecord.bot_id": _NONE,
    "ConversationRecord.bot_turn_id": _NONE,
    "ConversationRecord.bot_turns": _NONE,
    "ConversationRecord.handoff_open": _NONE,
    "ConversationRecord.had_human": _NONE,
    "ExpectationRecord.outbound_id": _NONE,
    "ExpectationRecord.conversation_id": _NONE,
    "ExpectationRecord.channel": _NONE,
    "ExpectationRecord.mode": _NONE,
    "ExpectationRecord.agent_id": AGENT_IDENTITY,
    "ExpectationRecord.queue": _NONE,
    "ExpectationRecord.until": _NONE,
    "ExpectationRecord.remember_until": _NONE,
    "ExpectationRecord.attributes": _ATTRIBUTES,
    "ExpectationRecord.answered": _NONE,
    "CustomerRecord.customer_id": CUSTOMER_IDENTITY,
    "CustomerRecord.owner_agent_id": AGENT_IDENTITY,
    "CustomerRecord.last_agent_id": AGENT_IDENTITY,
    "CustomerRecord.last_handled_at": _NONE,
    "AffinityEntry.agent_id": AGENT_IDENTITY,
    "AffinityEntry.rank": _NONE,
    "BotRecord.bot_id": _NONE,
    "BotRecord.failures": _NONE,
    "BotRecord.down_until": _NONE,
}
"""``Record.field`` -> what it holds, for the router's snapshots (``router.engine.records``)
kept in the ``record`` columns; Structs of the schemas they embed are in ``FIELDS``."""


# --- Walking Structs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a Struct, named by the Struct that declares it."""

    key: str
    nested: tuple[type[msgspec.Struct], ...]
    """The Structs its value can hold (then it holds what their fields hold)."""


def key_of(cls: type, name: str) -> str:
    """``Struct.field`` of ``cls``'s field ``name``: named by the class that declares it."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return f"{klass.__name__}.{name}"
    return f"{cls.__name__}.{name}"


def _structs_in(info: mi.Type) -> Iterator[type[msgspec.Struct]]:
    match info:
        case mi.StructType():
            yield info.cls
        case mi.Metadata():
            yield from _structs_in(info.type)
        case mi.UnionType():
            for member in info.types:
                yield from _structs_in(member)
        case mi.ListType() | mi.VarTupleType() | mi.SetType() | mi.FrozenSetType():
            yield from _structs_in(info.item_type)
        case mi.TupleType():
            for item in info.item_types:
                yield from _structs_in(item)
        case mi.DictType():
            yield from _structs_in(info.key_type)
            yield from _structs_in(info.value_type)
        case _:
            return


def structs_of(*roots: Any) -> tuple[type[msgspec.Struct], ...]:
    """Every Struct reachable from ``roots`` (types or unions), each once, in walk order."""
    found: dict[type[msgspec.Struct], None] = {}
    pending = [cls for root in roots for cls in _structs_in(mi.type_info(root))]
    while pending:
        cls = pending.pop(0)
        if cls in found:
            continue
        found[cls] = None
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        for field in info.fields:
            pending.extend(_structs_in(field.type))
    return tuple(found)


def fields_of(*roots: Any) -> dict[str, Field]:
    """``Struct.field`` -> ``Field`` for every field of every Struct reachable from ``roots``."""
    found: dict[str, Field] = {}
    for cls in structs_of(*roots):
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        for field in info.fields:
            key = key_of(cls, field.name)
            found[key] = Field(key, tuple(dict.fromkeys(_structs_in(field.type))))
    return found


def topic_fields() -> dict[str, Field]:
    """Every field of every Struct on the topics."""
    return fields_of(*topics.TOPIC_TYPES.values())


def labels_of(key: str, fields: Mapping[str, Field]) -> frozenset[Label]:
    """What the field ``key`` holds: its own classification, or its nested Structs' fields'."""
    field = fields[key]
    if not field.nested:
        return (FIELDS.get(key) or SNAPSHOT_FIELDS[key]).labels
    nested = fields_of(*field.nested)
    return merged(
        label for name in nested if not nested[name].nested for label in labels_of(name, nested)
    )


# --- The README's table ------------------------------------------------------------------

MARKDOWN_START = "<!-- personal-data:start (generated by runtime/personal_data.py) -->"
MARKDOWN_END = "<!-- personal-data:end -->"

_COLUMNS_OF_TABLE: tuple[tuple[str, Label], ...] = (
    ("Customer: identity", Label(Category.IDENTITY, Subject.CUSTOMER)),
    ("Customer: name", Label(Category.NAME, Subject.CUSTOMER)),
    ("Customer: content", Label(Category.CONTENT, Subject.CUSTOMER)),
    ("Agent: identity", Label(Category.IDENTITY, Subject.AGENT)),
    ("Agent: name", Label(Category.NAME, Subject.AGENT)),
)


def _row(where: Iterable[str], named: Mapping[str, frozenset[Label]]) -> str:
    cells = [
        ", ".join(f"`{name}`" for name, labels in named.items() if label in labels) or "—"
        for _, label in _COLUMNS_OF_TABLE
    ]
    return "| " + " | ".join([*where, *cells]) + " |"


def _header(*where: str) -> list[str]:
    titles = [*where, *(title for title, _ in _COLUMNS_OF_TABLE)]
    return ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]


def _table_rows() -> tuple[list[str], list[str]]:
    by_table: dict[str, dict[str, frozenset[Label]]] = {}
    for key, holds in COLUMNS.items():
        table, column = key.split(".", 1)
        by_table.setdefault(table, {})[column] = holds.labels
    rows, plain = [], []
    for table in sorted(by_table):
        columns = by_table[table]
        if any(labels != {_NOT_PERSONAL_LABEL} for labels in columns.values()):
            rows.append(_row([f"`{table}`"], columns))
        else:
            plain.append(f"`{table}`")
    return rows, plain


def _event_rows() -> tuple[list[str], list[str]]:
    fields = topic_fields()
    rows, plain = [], []
    for topic, union in topics.TOPIC_TYPES.items():
        info = mi.type_info(union)
        members = info.types if isinstance(info, mi.UnionType) else (info,)
        for member in members:
            assert isinstance(member, mi.StructType)
            named = {
                field.name: labels_of(key_of(member.cls, field.name), fields)
                for field in member.fields
            }
            tag = f"`{member.tag}`"
            if any(labels != {_NOT_PERSONAL_LABEL} for labels in named.values()):
                rows.append(_row([f"`{topic}`", tag], named))
            else:
                plain.append(tag)
    dlq = COLUMNS["dead_letters.value"].labels
    rows.append(_row([f"`{topics.DLQ}`", "any record, a provider's request"], {"value": dlq}))
    return rows, plain


def _notes() -> list[str]:
    notes: dict[str, list[str]] = {}
    for mapping in (COLUMNS, FIELDS):
        for key, holds in mapping.items():
            if holds.note:
                notes.setdefault(holds.note, []).append(f"`{key}`")
    return [f"- {', '.join(keys)}: {note}" for note, keys in notes.items()]


def markdown() -> str:
    """Where personal data is, as Markdown: the README's block, markers included."""
    table_rows, plain_tables = _table_rows()
    event_rows, plain_events = _event_rows()
    lines = [
        MARKDOWN_START,
        "**PostgreSQL** (columns holding personal data; a `record`, `payload`, `events`, "
        "`request` or `value` column holds whole records, and is listed under every category "
        "they can contain):",
        "",
        *_header("Table"),
        *table_rows,
        "",
        "No personal data: " + ", ".join(plain_tables) + ".",
        "",
        "**Kafka** (fields of each event, its common fields included; a field holding nested "
        "records, such as `attachments`, `location`, `contacts` or `handoff`, is listed under "
        "every category their fields hold):",
        "",
        *_header("Topic", "Event"),
        *event_rows,
        "",
        "No personal data: " + ", ".join(plain_events) + ".",
        "",
        "Notes:",
        "",
        *_notes(),
        MARKDOWN_END,
    ]
    return "\n".join(lines)


def with_markdown(readme: str) -> str:
    """``readme`` with its block (between the markers) replaced by ``markdown()``."""
    start = readme.index(MARKDOWN_START)
    end = readme.index(MARKDOWN_END, start) + len(MARKDOWN_END)
    return readme[:start] + markdown() + readme[end:]


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(with_markdown(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
