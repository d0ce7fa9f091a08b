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

The vocabulary is in ``runtime.personal_labels``, the event fields' classification in
``runtime.personal_fields``. ``COLUMNS`` classifies ``table.column`` of every table the migrations create (and
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

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from runtime.personal_fields import FIELDS, SNAPSHOT_FIELDS
from runtime.personal_labels import (
    AGENT_IDENTITY,
    AGENT_NAME,
    CUSTOMER_CONTENT,
    CUSTOMER_IDENTITY,
    CUSTOMER_NAME,
    NONE,
    NOT_PERSONAL_LABEL,
    PROVIDER_ID,
    THREAD_KEY,
    Category,
    Holds,
    Label,
    Subject,
    merged,
)
from runtime.workload import COLUMNS as WORKLOAD_COLUMNS
from schemas import topics

COLUMNS: Final[Mapping[str, Holds]] = {
    # 0001_initial.sql
    "domains.domain": NONE,
    "domains.created_at": NONE,
    "agents.domain": NONE,
    "agents.agent_id": AGENT_IDENTITY,
    "agents.name": AGENT_NAME,
    "agents.presence": NONE,
    "agents.record": (AGENT_IDENTITY | AGENT_NAME).records(structs=["AgentRecord"]),
    "agents.updated_at": NONE,
    "customers.domain": NONE,
    "customers.customer_id": CUSTOMER_IDENTITY,
    "customers.owner_agent_id": AGENT_IDENTITY,
    "customers.last_agent_id": AGENT_IDENTITY,
    "customers.record": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        structs=["CustomerRecord"]
    ),
    "customers.updated_at": NONE,
    "conversations.domain": NONE,
    "conversations.conversation_id": NONE,
    "conversations.channel": NONE,
    "conversations.customer_id": CUSTOMER_IDENTITY,
    "conversations.conversation_key": THREAD_KEY,
    "conversations.queue": NONE,
    "conversations.status": NONE,
    "conversations.owner_agent_id": AGENT_IDENTITY,
    "conversations.preferred_agent_id": AGENT_IDENTITY,
    "conversations.opened_at": NONE,
    "conversations.closed_at": NONE,
    "conversations.record": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        structs=["ConversationRecord"]
    ),
    "conversations.updated_at": NONE,
    "conversation_activity.domain": NONE,
    "conversation_activity.conversation_id": NONE,
    "conversation_activity.activity": NONE.records(structs=["ConversationActivity"]),
    "conversation_activity.updated_at": NONE,
    "messages.domain": NONE,
    "messages.message_id": NONE,
    "messages.conversation_id": NONE,
    "messages.direction": NONE,
    "messages.channel": NONE,
    "messages.provider_message_id": PROVIDER_ID,
    "messages.agent_id": AGENT_IDENTITY,
    "messages.text": CUSTOMER_CONTENT,
    "messages.attachments": CUSTOMER_CONTENT.records(structs=["Attachment"]),
    "messages.status": NONE,
    "messages.occurred_at": NONE,
    "messages.created_at": NONE,
    "assignments.domain": NONE,
    "assignments.assignment_id": NONE,
    "assignments.conversation_id": NONE,
    "assignments.agent_id": AGENT_IDENTITY,
    "assignments.strategy": NONE,
    "assignments.step": NONE,
    "assignments.waited_seconds": NONE,
    "assignments.candidates": AGENT_IDENTITY.records(structs=["CandidateNote"]),
    "assignments.offered_at": NONE,
    "assignments.accepted_at": NONE,
    "assignments.ended_at": NONE,
    "assignments.end_reason": NONE,
    "assignments.record": AGENT_IDENTITY.records(structs=["AssignmentRecord"]),
    "retention_marks.domain": NONE,
    "retention_marks.kind": NONE,
    "retention_marks.closed_at": NONE,
    "retention_marks.conversation_id": NONE,
    "router_offsets.consumer_group": NONE,
    "router_offsets.topic": NONE,
    "router_offsets.partition": NONE,
    "router_offsets.next_offset": NONE,
    "router_offsets.updated_at": NONE,
    "dead_letters.id": NONE,
    "dead_letters.topic": NONE,
    "dead_letters.partition": NONE,
    "dead_letters.offset": NONE,
    "dead_letters.reason": NONE.because("Why it was set aside: never quotes the value."),
    "dead_letters.key": NONE.because("Our records' key is the routing domain."),
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
    "dead_letters.created_at": NONE,
    "outbound_messages.domain": NONE,
    "outbound_messages.outbound_id": NONE,
    "outbound_messages.conversation_id": NONE,
    "outbound_messages.channel": NONE,
    "outbound_messages.agent_id": AGENT_IDENTITY,
    "outbound_messages.status": NONE,
    "outbound_messages.provider_message_id": PROVIDER_ID,
    "outbound_messages.attempts": NONE,
    "outbound_messages.error": CUSTOMER_CONTENT.because(
        "The provider's own words about a refused send: egress replaces email addresses "
        "and numbers of seven digits or more, but other quoted values (an X handle) stay."
    ),
    "outbound_messages.created_at": NONE,
    "outbound_messages.updated_at": NONE,
    # 0002_agent_api.sql
    "api_tokens.domain": NONE,
    "api_tokens.token_id": NONE,
    "api_tokens.token_sha256": NONE,
    "api_tokens.scope": NONE,
    "api_tokens.agent_id": AGENT_IDENTITY,
    "api_tokens.name": AGENT_NAME.because(
        "A token's label says what or who holds it: often a person's name."
    ),
    "api_tokens.created_at": NONE,
    "api_tokens.revoked_at": NONE,
    # 0003_partition_leases.sql
    "partition_leases.consumer_group": NONE,
    "partition_leases.partition": NONE,
    "partition_leases.epoch": NONE,
    "partition_leases.owner": NONE,
    "partition_leases.updated_at": NONE,
    # 0004_agent_event_log.sql
    "agent_events.domain": NONE,
    "agent_events.seq": NONE,
    "agent_events.event_id": NONE,
    "agent_events.type": NONE,
    "agent_events.occurred_at": NONE,
    "agent_events.applied_at": NONE,
    "agent_events.payload": (
        CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY | AGENT_NAME
    ).records(topics=[topics.AGENTS]),
    # 0006_outbox_batches.sql
    "outbox.seq": NONE,
    "outbox.partition": NONE,
    "outbox.event_count": NONE,
    "outbox.events": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        topics=[topics.ROUTING, topics.OUTBOUND]
    ),
    "outbox.created_at": NONE,
    # 0007_dead_letter_redrive.sql, 0009_adapter_dead_letters.sql
    "dead_letters.domain": NONE,
    "dead_letters.redriven_at": NONE,
    "dead_letters.redrives": NONE,
    "dead_letters.source": NONE,
    "dead_letters.sealed_with": NONE.because("The id of the key a sealed record needs."),
    # 0008_webhook_nonces.sql
    "webhook_nonces.provider": NONE,
    "webhook_nonces.nonce": NONE,
    "webhook_nonces.expires_at": NONE,
    # 0010_token_lifecycle_and_audit.sql
    "api_tokens.expires_at": NONE,
    "api_tokens.last_used_at": NONE,
    "api_tokens.created_by": NONE,
    "api_tokens.revoked_by": NONE,
    "api_tokens.rotated_at": NONE,
    "api_tokens.previous_sha256": NONE,
    "api_tokens.previous_valid_until": NONE,
    "audit_log.id": NONE,
    "audit_log.at": NONE,
    "audit_log.actor": NONE.because("A token id, `bootstrap`, `local` or `cli`."),
    "audit_log.action": NONE,
    "audit_log.domain": NONE,
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
    "config_versions.version": NONE,
    "config_versions.created_at": NONE,
    "config_versions.author": NONE,
    "config_versions.reason": NONE,
    "config_versions.document": NONE.because(
        "Domains, queues and the business's own endpoints; secrets only by the name of "
        "the environment variable that holds them."
    ),
    "config_versions.diff": NONE,
    "config_versions.domains": NONE,
    "config_sources.source": NONE,
    "config_sources.sha256": NONE,
    "config_sources.version": NONE,
    # 0012_customer_identities.sql
    "customer_identities.domain": NONE,
    "customer_identities.identity": CUSTOMER_IDENTITY,
    "customer_identities.customer_id": CUSTOMER_IDENTITY,
    "customer_identities.source": NONE,
    "customer_identities.linked_at": NONE,
    # 0014_business_started.sql
    "outbound_messages.kind": NONE,
    "outbound_messages.customer_id": CUSTOMER_IDENTITY,
    "outbound_messages.endpoint": NONE,
    "outbound_messages.campaign_id": NONE,
    "outbound_messages.client_key": NONE,
    "outbound_messages.request": (CUSTOMER_IDENTITY | CUSTOMER_CONTENT | AGENT_IDENTITY).records(
        structs=["NotificationRequested"]
    ),
    "outbound_messages.send_after": NONE,
    "outbound_messages.lease_until": NONE,
    "campaigns.domain": NONE,
    "campaigns.campaign_id": NONE,
    "campaigns.name": NONE,
    "campaigns.status": NONE,
    "campaigns.created_by": NONE,
    "campaigns.created_at": NONE,
    "campaigns.updated_at": NONE,
    "erasures.domain": NONE,
    "erasures.erasure_id": NONE,
    "erasures.identities": CUSTOMER_IDENTITY.because(
        "Whom an erasure names, until the router has applied it: then emptied."
    ),
    "erasures.conversation_ids": NONE,
    "erasures.requested_by": NONE.because("A token id, `bootstrap`, `local` or `cli`."),
    "erasures.requested_at": NONE,
    "erasures.completed_at": NONE,
    "erasures.erased": NONE.because("Rows deleted, counted by table."),
    "erasures.keep_consents": NONE,
    "topic_keys.key_id": NONE,
    "topic_keys.domain": NONE,
    "topic_keys.subject": CUSTOMER_IDENTITY.because(
        "The SHA-256 of whose records the key seals (an identity, a conversation, a thread or "
        "a sent message): taken away when the customer is erased."
    ),
    "topic_keys.period": NONE,
    "topic_keys.spare": NONE,
    "topic_keys.key": NONE.because(
        "An AES-256 key: it opens the customer's sealed records on the topics; erasure deletes it."
    ),
    "topic_keys.created_at": NONE,
    "topic_keys.shred_at": NONE,
    "retention_scans.domain": NONE,
    "retention_scans.kind": NONE,
    "retention_scans.after": CUSTOMER_IDENTITY.because(
        "Where the walk of customers stopped: a customer id, deleted when that customer is erased."
    ),
    "consents.domain": NONE,
    "consents.channel": NONE,
    "consents.address": CUSTOMER_IDENTITY,
    "consents.customer_id": CUSTOMER_IDENTITY,
    "consents.consent": NONE,
    "consents.source": NONE,
    "consents.changed_at": NONE,
    "marketing_consents.domain": NONE,
    "marketing_consents.channel": NONE,
    "marketing_consents.address": CUSTOMER_IDENTITY,
    "marketing_consents.customer_id": CUSTOMER_IDENTITY,
    "marketing_consents.consent": NONE,
    "marketing_consents.source": NONE,
    "marketing_consents.changed_at": NONE,
    "consent_changes.domain": NONE,
    "consent_changes.change_id": NONE,
    "consent_changes.channel": NONE,
    "consent_changes.address": CUSTOMER_IDENTITY,
    "consent_changes.customer_id": CUSTOMER_IDENTITY,
    "consent_changes.consent": NONE,
    "consent_changes.scope": NONE,
    "consent_changes.source": NONE,
    "consent_changes.message_id": NONE,
    "consent_changes.actor": AGENT_IDENTITY.because("The agent who recorded it, if any."),
    "consent_changes.changed_at": NONE,
    # 0015_send_pacing.sql
    "send_buckets.domain": NONE,
    "send_buckets.channel": NONE,
    "send_buckets.endpoint": NONE,
    "send_buckets.tokens": NONE,
    "send_buckets.refilled_at": NONE,
    "send_buckets.granted": NONE,
    "outbound_messages.status_unreported": NONE,
    # 0016_bots.sql
    "outbound_messages.bot_id": NONE,
    "messages.bot_id": NONE,
    # 0017_bot_health.sql
    "bot_health.domain": NONE,
    "bot_health.bot_id": NONE,
    "bot_health.record": NONE.records(structs=["BotRecord"]),
    # 0022_workload.sql: counts and seconds by queue, channel and interval, nobody's
    "workload_intervals.domain": NONE,
    "workload_intervals.interval_start": NONE,
    "workload_intervals.queue": NONE,
    "workload_intervals.channel": NONE,
    **{f"workload_intervals.{column}": NONE for column in WORKLOAD_COLUMNS},
    "workload_intervals.measured_at": NONE,
    "workload_marks.domain": NONE,
    "workload_marks.measured_at": NONE,
    # 0023_planning_jobs.sql: rosters, targets and simulated figures, nobody's
    "planning_jobs.domain": NONE,
    "planning_jobs.job_id": NONE,
    "planning_jobs.kind": NONE,
    "planning_jobs.status": NONE,
    "planning_jobs.done": NONE,
    "planning_jobs.total": NONE,
    "planning_jobs.request": NONE.because(
        "A roster (group names, capacities, counts) and a target."
    ),
    "planning_jobs.result": NONE.because("Demand and simulated figures per queue and interval."),
    "planning_jobs.error": NONE,
    "planning_jobs.created_by": NONE.because("A token id, `bootstrap`, `local` or `cli`."),
    "planning_jobs.created_at": NONE,
    "planning_jobs.heartbeat_at": NONE,
    "planning_jobs.finished_at": NONE,
    # runtime.db.migrate's own bookkeeping
    "schema_migrations.version": NONE,
    "schema_migrations.name": NONE,
    "schema_migrations.applied_at": NONE,
}
"""``table.column`` -> what it holds, for every table in a migrated database."""

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
        if any(labels != {NOT_PERSONAL_LABEL} for labels in columns.values()):
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
            if any(labels != {NOT_PERSONAL_LABEL} for labels in named.values()):
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
