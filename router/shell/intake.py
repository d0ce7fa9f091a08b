"""The batch loop's per-record rules, without I/O: decode, keep in sequence, drop
duplicates, apply to the engine, and collect what the batch writes.

The worker hands in what it fetched and what it looked up (the records, the message ids
already stored or being written, the clock) and gets plain values back: the rows, outbox
events, dead letters and next offsets of one transaction (``store.BatchWrites``), and the
positions the consumer must seek back to. Nothing here awaits, queries or publishes.

Rules, per record of a fetch:
1. A fetch continues exactly where its partition's state stands: records before that
   position were applied already (dropped); a fetch that starts past it skipped some (the
   partition's records are dropped and it is read again from that position).
2. A record is set aside as a dead letter, with its reason, when it cannot be decoded or
   validated (``invalid: …``), holds U+0000 in a string (PostgreSQL's text and jsonb
   cannot store it: the whole transaction would fail), or names a domain this router does
   not own on that partition (``unknown domain …``; ``misplaced: …`` when the domain is
   routed from another partition, its producer having keyed it otherwise). The batch goes
   on without it.
3. Records apply in order per partition: by broker timestamp, agent events before
   inbound records of the same millisecond, then by offset. Within one topic's partition
   they never apply out of offset order: a record stamped earlier than one before it (the
   clocks of two producers differ) counts as stamped at that one's time.
4. A customer message whose id is already stored, being written, or earlier in the batch
   is a provider retry: dropped before the engine. A delivery status updates the outbound
   message's row and never reaches the engine.
5. A record the engine fails on raises ``Unappliable``: its batch cannot be written, and
   the worker finds the record by replaying one record at a time.
6. A customer erasure ends its batch: the records after it are read again by the next
   fetch, so that its deletions, made after the batch's other writes in one transaction,
   take nothing written after it (``router.engine.erasure``). Whom it erases comes from
   its ``erasures`` row, which the worker reads before the batch applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, assert_never

import msgspec
import structlog

from router.engine import (
    ConversationRecord,
    CustomerErasure,
    DomainState,
    DropAgent,
    DropCustomer,
    Effect,
    Emit,
    EngineInput,
    EraseCustomer,
    SaveActivity,
    SaveAgent,
    SaveAssignment,
    SaveBot,
    SaveConsent,
    SaveConversation,
    SaveCustomer,
    SaveIdentity,
    SaveMessage,
    SendReply,
    apply,
    conversation_record,
    deadline_due,
    make_id,
    tick,
)
from router.shell import store
from router.shell.erasure import ErasureRequest
from router.shell.observe import (
    observe_dead_letter,
    observe_duplicate,
    observe_first_response,
    observe_saved_assignment,
)
from router.shell.waits import WaitEstimates
from runtime.dead_letters import DeadRecord, invalid
from runtime.metrics import Metrics
from runtime.sealing import SealingKey, Unreadable, open_value, sealed_with, sealing_subject
from schemas import (
    AGENT_EVENT_DECODER,
    INBOUND_DECODER,
    ConversationAssigned,
    ConversationBotAssigned,
    ConversationClosed,
    ConversationHandedOff,
    ConversationOverflowed,
    ConversationQueued,
    CustomerEraseRequested,
    DeliveryStatusChanged,
    MessageReceived,
    MessageRouted,
    OutboundStatusChanged,
    ReplyRequested,
    RoutingEvent,
    topics,
)
from schemas.cloudevents import encode_headers
from schemas.common import Event

log = structlog.get_logger(__name__)

_encode = msgspec.json.Encoder().encode
APPLY_SLICE = 100
"""Records applied between two chances for the caller to let other tasks run."""
ACTIVITY_ALONE_FROM = 64
"""Records in a batch from which its customer messages on the engine's fast path save
their conversations' activity alone (``router.save_activity_alone``); a smaller batch
saves the whole records. The activity rows are one more part of the batch's statement,
with a fixed cost in PostgreSQL that a few rows do not repay: at 300 webhooks a second
(a few records a batch) PostgreSQL's CPU per message rose by about a fifth with them,
while batches of 2,000 spend less CPU in every process (``tools/bench/README.md``)."""

_WAIT_ENDED = (ConversationOverflowed, ConversationClosed, ConversationBotAssigned)
"""Events after which a conversation's wait estimates are not measured."""

InputPartition = tuple[str, int]
"""(topic, partition) of an input topic; aiokafka's ``TopicPartition`` is one."""


class Unappliable(Exception):
    """The engine, or the encoding of what it emitted, failed on one record."""


def poison_reason(error: BaseException) -> str:
    """Why a record is set aside: the error's type and SQLSTATE, never its message, which
    can quote the record's content."""
    if isinstance(error, Unappliable) and error.__cause__ is not None:
        return f"unappliable: {type(error.__cause__).__name__}"
    sqlstate = getattr(error, "sqlstate", None)
    return f"unstorable: {type(error).__name__}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")


def sealed_ids(
    fetched: Mapping[InputPartition, Sequence[Record]],
) -> dict[InputPartition, list[bytes | None]]:
    """Each fetched record's ``sealed_with`` key id (None: not sealed), in fetch order: read
    once per record, for the keys to look up (``reads.before_decoding``) and to open with
    (``Intake.decode``)."""
    return {
        tp: [sealed_with(record.headers) if record.headers else None for record in records]
        for tp, records in fetched.items()
    }


def holds_nul(value: bytes) -> bool:
    """Whether a JSON document holds U+0000 in a string (``\\u0000`` not preceded by an
    odd run of backslashes): PostgreSQL's text and jsonb cannot store it. Most records hold
    no backslash at all, and looking for one byte (memchr) is cheaper than for six."""
    if b"\\" not in value:
        return False
    start = value.find(b"\\u0000")
    while start >= 0:
        backslashes = len(value[:start]) - len(value[:start].rstrip(b"\\"))
        if backslashes % 2 == 0:
            return True
        start = value.find(b"\\u0000", start + 1)
    return False


class Record(Protocol):
    """A fetched record, as the intake reads it (aiokafka's ``ConsumerRecord`` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Decoded(msgspec.Struct, gc=False):
    """A record of the batch, decoded; not tracked by the garbage collector (a batch
    holds thousands, none in a cycle)."""

    partition: int
    topic: str
    offset: int
    timestamp: int
    event: Event


@dataclass(slots=True)
class Batch:
    """One fetch on its way through the intake: what it decoded, then what it writes."""

    writes: store.BatchWrites = field(default_factory=store.BatchWrites)
    decoded: list[Decoded] = field(default_factory=list)
    """The records to apply, in the order they apply (rule 3)."""
    messages: list[tuple[str, str]] = field(default_factory=list)
    """(domain, message id) of the customer messages among them: to look up (rule 4)."""
    erasures: list[tuple[str, str]] = field(default_factory=list)
    """(domain, erasure id) of the customer erasures among them: to look up (rule 6)."""
    emitted: list[RoutingEvent] = field(default_factory=list)
    rewinds: dict[InputPartition, int] = field(default_factory=dict)
    """Where the consumer must seek back to, per partition that skipped records (rule 1)."""
    records: int = 0
    """Records fetched, whatever became of them."""
    opened_with: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(domain, sealing subject, key id) of the sealed records opened: keys that seal
    for those subjects too (``TopicKeys.sealing_too``)."""


def status_changed(event: DeliveryStatusChanged) -> OutboundStatusChanged:
    """The routing topic's ``outbound.status_changed`` for a status report (its id is
    made from the report's, so a replay publishes the same event)."""
    return OutboundStatusChanged(
        id=make_id(f"{event.id}/status"),
        domain=event.domain,
        occurred_at=event.occurred_at,
        channel=event.channel,
        provider_message_id=event.provider_message_id,
        status=event.status,
        outbound_id=event.outbound_id,
        error_code=event.error_code,
        provider_status=event.provider_status,
    )


def _dead_letter_origin(event: store.OutboxEvent) -> tuple[str, int, int]:
    """(topic, partition, offset) of the record a dead-letter topic copy is of."""
    headers = dict(event.headers)
    return (
        headers[topics.DLQ_TOPIC].decode(),
        int(headers[topics.DLQ_PARTITION]),
        int(headers[topics.DLQ_OFFSET]),
    )


class Intake:
    """The owned domains' states and input positions, and the rules that move them."""

    def __init__(
        self,
        *,
        inbound: str,
        agents: str,
        routing: str,
        dlq: str,
        source: str,
        metrics: Metrics,
        outbound: str = "",
        save_activity_alone: bool = True,
    ) -> None:
        self._inbound = inbound
        self._save_activity_alone = save_activity_alone
        self.group_reads_activity = True
        """Every router of the consumer group reads activity saved alone
        (``router.shell.group_protocol``); the worker sets it at each assignment."""
        self._activity_alone = save_activity_alone
        """The batch being applied saves activities alone (``ACTIVITY_ALONE_FROM``)."""
        self._agents = agents
        self._routing = routing
        self._outbound = outbound
        self._dlq = dlq
        self._source = source
        self._metrics = metrics
        self.partitions: dict[int, dict[str, DomainState]] = {}
        """The owned domains' states, by input partition number."""
        self.homes: Mapping[str, int] = {}
        """Every domain the deployment routes, with its input partition number (the worker
        sets it at each load and configuration change): a record naming one of them on
        another partition was keyed wrongly by its producer."""
        self.expected: dict[InputPartition, int | None] = {}
        """The next offset to apply per input partition (None: whatever comes first)."""
        self._first_responses_seen: set[tuple[str, str]] = set()
        self.waits = WaitEstimates(metrics)
        """Live wait estimates, their calibration and the wait notices
        (``router.shell.waits``)."""

    @property
    def saves_activity_alone(self) -> bool:
        """Large batches save activity alone: the setting allows it, and every router of
        the group reads it."""
        return self._save_activity_alone and self.group_reads_activity

    def release(self, numbers: Iterable[int]) -> None:
        """Partitions another process owns now: their domains leave, and the wait
        estimates stop measuring their conversations (``WaitEstimates.release``)."""
        for number in numbers:
            domains = self.partitions.pop(number, None)
            if domains:
                self.waits.release(domains)

    def states(self) -> list[DomainState]:
        return [state for domains in self.partitions.values() for state in domains.values()]

    def domains(self) -> dict[str, DomainState]:
        """The owned domains' states by domain."""
        return {
            name: state for domains in self.partitions.values() for name, state in domains.items()
        }

    def decode(
        self,
        fetched: Mapping[InputPartition, Sequence[Record]],
        keys: Mapping[bytes, SealingKey] | None = None,
        sealed: Mapping[InputPartition, Sequence[bytes | None]] | None = None,
    ) -> Batch:
        """Rules 1 to 3: the records to apply, in order, and the dead letters and next
        offsets to write. ``keys`` open the sealed records (``runtime.sealing``): one
        whose key is gone is about an erased customer, and is set aside. ``sealed`` is
        ``sealed_ids(fetched)``, when the caller has it already."""
        keys = keys or {}
        sealed = sealed_ids(fetched) if sealed is None else sealed
        batch = Batch()
        writes, decoded, messages = batch.writes, batch.decoded, batch.messages
        for tp, records in fetched.items():
            batch.records += len(records)
            topic, number = tp
            domains = self.partitions.get(number)
            if domains is None or tp not in self.expected:
                continue  # revoked while the fetch was in flight: the new owner reads it
            in_sequence = self._in_sequence(tp, records, batch.rewinds)
            if not in_sequence:
                continue
            key_ids = iter(
                sealed[tp] if in_sequence is records else sealed_ids({tp: in_sequence})[tp]
            )
            records = in_sequence
            decoder = INBOUND_DECODER if topic == self._inbound else AGENT_EVENT_DECODER
            stamped = 0
            for record in records:
                if record.timestamp > stamped:
                    stamped = record.timestamp
                value = record.value or b""
                key_id = next(key_ids)
                try:
                    value = open_value(value, key_id, keys)
                except Unreadable as error:
                    self.dead_letter(writes, record, str(error))
                    continue
                try:
                    event: Event = decoder.decode(value)
                except (msgspec.DecodeError, msgspec.ValidationError) as error:
                    self.dead_letter(writes, record, invalid(error))
                    continue
                except RecursionError:
                    self.dead_letter(writes, record, "invalid: nested too deeply")
                    continue
                if holds_nul(value):
                    self.dead_letter(writes, record, "invalid: a string holds U+0000 (NUL)")
                    continue
                if event.domain not in domains:
                    self.dead_letter(writes, record, self._stranger(event.domain, number))
                    continue
                if key_id is not None:
                    subject = sealing_subject(event)
                    if subject is not None:
                        batch.opened_with.append((event.domain, subject, key_id))
                if isinstance(event, MessageReceived):
                    messages.append((event.domain, event.id))
                elif isinstance(event, CustomerEraseRequested):
                    batch.erasures.append((event.domain, event.id))
                decoded.append(Decoded(number, topic, record.offset, stamped, event))
            writes.offsets[(topic, number)] = records[-1].offset + 1
        agents = self._agents
        decoded.sort(key=lambda d: (d.partition, d.timestamp, d.topic != agents, d.offset))
        return batch

    def _in_sequence(
        self, tp: InputPartition, records: Sequence[Record], rewinds: dict[InputPartition, int]
    ) -> Sequence[Record]:
        """The records that continue exactly where this partition's state stands.

        A fetch that raced with a reload can hand back records from before the rewind
        (already applied: dropped) or skip ahead of it (a gap: rewind and read again).
        """
        expected = self.expected[tp]
        if expected is not None:
            if records and records[0].offset < expected:  # offsets ascend: a prefix goes
                records = [record for record in records if record.offset >= expected]
            if records and records[0].offset != expected:
                log.warning(
                    "fetch_gap_rewound",
                    topic=tp[0],
                    partition=tp[1],
                    expected=expected,
                    fetched=records[0].offset,
                )
                rewinds[tp] = expected
                return []
        if records:
            self.expected[tp] = records[-1].offset + 1
        return records

    def apply_events(
        self,
        batch: Batch,
        now: float,
        known: set[str],
        erasures: Mapping[str, ErasureRequest] | None = None,
    ) -> Iterator[None]:
        """Rules 4 to 6 for the decoded records, in order; ``known`` holds the message ids
        already stored or being written, and gains the batch's own; ``erasures`` holds the
        batch's erasure requests by id.

        Yields every ``APPLY_SLICE`` records: the caller lets other tasks run then (a
        transaction in flight advances only when the loop yields)."""
        writes, emitted = batch.writes, batch.emitted
        self._activity_alone = (
            self.saves_activity_alone and len(batch.decoded) >= ACTIVITY_ALONE_FROM
        )
        for index, item in enumerate(batch.decoded):
            if index % APPLY_SLICE == APPLY_SLICE - 1:
                yield
            event = item.event
            try:
                if type(event) is not CustomerEraseRequested:
                    self._apply(item, now, known, writes, emitted)
                    continue
                self._erase(item, event, now, erasures or {}, writes, emitted)
            except Exception as error:  # any failure on one record is that record's: isolated
                raise Unappliable() from error
            self._end_batch_after(batch, index)
            return

    def _erase(
        self,
        item: Decoded,
        event: CustomerEraseRequested,
        now: float,
        erasures: Mapping[str, ErasureRequest],
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
    ) -> None:
        """Rule 6: the engine applies the erasure with whom its row names (none when the
        row is gone: an erasure already done). It is not in the replay log: it would keep
        whom it erased."""
        request = erasures.get(event.id)
        erasure = CustomerErasure(
            id=event.id,
            domain=event.domain,
            occurred_at=event.occurred_at,
            identities=() if request is None else request.identities,
            conversation_ids=() if request is None else request.conversation_ids,
        )
        state = self.partitions[item.partition][event.domain]
        self._collect(item.partition, state, apply(state, erasure, now), writes, emitted, now)

    def _end_batch_after(self, batch: Batch, index: int) -> None:
        """Rule 6: the records after ``index`` are not this batch's: each partition is read
        again from the first of them."""
        rest = batch.decoded[index + 1 :]
        del batch.decoded[index + 1 :]
        if not rest:
            return
        again: dict[InputPartition, int] = {}
        for item in rest:
            tp = (item.topic, item.partition)
            again[tp] = min(item.offset, again.get(tp, item.offset))
        for tp, offset in again.items():
            batch.rewinds[tp] = offset
            batch.writes.offsets[tp] = offset
            self.expected[tp] = offset
        unapplied = {
            (item.event.domain, item.event.id)
            for item in rest
            if isinstance(item.event, MessageReceived)
        }
        batch.messages[:] = [m for m in batch.messages if m not in unapplied]
        self._forget_dead_letters_from(batch.writes, again)

    def _forget_dead_letters_from(
        self, writes: store.BatchWrites, again: Mapping[InputPartition, int]
    ) -> None:
        """Drop the dead letters of records that will be read again, and their copies on
        the dead-letter topic: the next batch sets them aside once."""

        def read_again(topic: str, partition: int, offset: int) -> bool:
            start = again.get((topic, partition))
            return start is not None and offset >= start

        writes.dead_letters[:] = [
            letter
            for letter in writes.dead_letters
            if not read_again(letter.topic, letter.partition, letter.offset)
        ]
        for events in writes.outbox.values():
            events[:] = [
                event
                for event in events
                if event.topic != self._dlq or not read_again(*_dead_letter_origin(event))
            ]

    def fire_deadlines(self, batch: Batch, now: float) -> None:
        """Tick every owned domain with a deadline due by ``now``."""
        for number, domains in self.partitions.items():
            for state in domains.values():
                if deadline_due(state, now):
                    self._collect(number, state, tick(state, now), batch.writes, batch.emitted, now)

    def _apply(
        self,
        item: Decoded,
        now: float,
        known: set[str],
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
    ) -> None:
        event = item.event
        state = self.partitions[item.partition][event.domain]
        if type(event) is MessageReceived:  # most records: looked for first
            if event.id in known:
                observe_duplicate(self._metrics, event.domain, event.channel)
                return
            known.add(event.id)  # a retry later in the same batch is a duplicate too
        elif isinstance(event, DeliveryStatusChanged):
            self._note_delivery(item.partition, event, writes, emitted)
            return
        else:
            assert isinstance(event, EngineInput)
            # Rule 6 applies erasures, and every customer message is exactly a MessageReceived.
            assert not isinstance(event, (CustomerErasure, CustomerEraseRequested, MessageReceived))
            writes.agent_events.append(event)  # the agent event log `switchboard replay` reads
        self._collect(item.partition, state, apply(state, event, now), writes, emitted, now)

    def _note_delivery(
        self,
        partition: int,
        event: DeliveryStatusChanged,
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
    ) -> None:
        """A report on a message we sent: the row moves forward, and the routing topic
        says so (``outbound.status_changed``)."""
        channel = str(event.channel)
        if event.read_through is not None:
            self._note_read_through(partition, event, writes, emitted)
            return
        update = store.DeliveryUpdate(
            status=str(event.status),
            error=event.error_code or "",
            provider_message_id=event.provider_message_id,
        )
        if event.outbound_id:
            writes.note_delivery((event.domain, event.outbound_id, ""), update)
        elif event.provider_message_id:  # an empty id names no message
            writes.note_delivery(("", channel, event.provider_message_id), update)
        self._metrics.child(self._metrics.delivery_statuses, channel, str(event.status)).inc()
        changed = status_changed(event)
        writes.outbox.setdefault(partition, []).append(self._outbox_event(changed))
        emitted.append(changed)

    def _note_read_through(
        self,
        partition: int,
        event: DeliveryStatusChanged,
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
    ) -> None:
        """A read receipt naming no message: every reply of the open conversation it names
        sent up to its time is read. A conversation no longer open is not looked for (its
        replies keep their status)."""
        assert event.read_through is not None
        state = self.partitions[partition][event.domain]
        conversation = state.by_key.get(event.conversation_key or "")
        self._metrics.child(
            self._metrics.delivery_statuses, str(event.channel), str(event.status)
        ).inc()
        if conversation is None:
            return
        conversation_id = conversation.conversation_id
        writes.note_read_through((event.domain, conversation_id), event.read_through)
        changed = msgspec.structs.replace(
            status_changed(event), conversation_id=conversation_id, read_through=event.read_through
        )
        writes.outbox.setdefault(partition, []).append(self._outbox_event(changed))
        emitted.append(changed)

    def _collect(
        self,
        partition: int,
        state: DomainState,
        effects: list[Effect],
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
        now: float,
    ) -> None:
        for effect in effects:
            # The effects of every customer message first, by their exact type: a class
            # pattern costs a type check and an attribute lookup per keyword.
            if type(effect) is SaveMessage:
                writes.messages.append((effect.message, effect.conversation_id))
            elif type(effect) is Emit:
                self._emit(partition, state, effect.event, writes, emitted, now)
            elif type(effect) is SaveActivity and self._activity_alone:
                writes.note_activity((state.domain, effect.conversation_id), effect.activity)
                self.waits.active(state, effect.conversation_id, now)
            else:
                self._collect_rarer(partition, state, effect, writes, now)

    def _emit(
        self,
        partition: int,
        state: DomainState,
        event: RoutingEvent,
        writes: store.BatchWrites,
        emitted: list[RoutingEvent],
        now: float,
    ) -> None:
        """An event the engine emitted, into the outbox, with what the wait estimates
        note of it."""
        notice = None
        if type(event) is MessageRouted:
            pass  # one per customer message: no wait to note
        elif type(event) is ConversationAssigned:
            self.waits.assigned(event)
        elif type(event) is ConversationQueued:
            event = self.waits.queued(state, event, now)
            notice = self.waits.notice(state, event, now)
        elif type(event) is ConversationHandedOff:
            event = self._with_expected_wait(state, event, now)
        elif isinstance(event, _WAIT_ENDED):
            self.waits.forget(state.domain, event.conversation_id)
        writes.outbox.setdefault(partition, []).append(self._outbox_event(event))
        emitted.append(event)
        if notice is not None:
            self._send_reply(partition, notice, writes)

    def _collect_rarer(
        self,
        partition: int,
        state: DomainState,
        effect: Effect,
        writes: store.BatchWrites,
        now: float,
    ) -> None:
        """The effects ``_collect`` does not take itself."""
        domain = state.domain
        match effect:
            case SaveActivity(conversation_id=conversation_id):
                # The whole record, as the general path saves it: a small batch, or
                # readers older than migration 0027 (``ACTIVITY_ALONE_FROM``).
                whole = conversation_record(state.conversations[conversation_id])
                self._save_conversation(state, whole, writes, now)
            case SaveConversation(record=record):
                self._save_conversation(state, record, writes, now)
            case SendReply(reply=reply):
                self._send_reply(partition, reply, writes)
            case SaveAgent(record=record):
                writes.agents[(domain, record.agent_id)] = record
            case SaveCustomer(record=record):
                writes.customers[(domain, record.customer_id)] = record
            case SaveAssignment(record=record):
                writes.assignments[(domain, record.assignment_id)] = record
                observe_saved_assignment(self._metrics, domain, record)
            case DropAgent(agent_id=agent_id):
                writes.agents[(domain, agent_id)] = None
            case DropCustomer(customer_id=customer_id):
                writes.customers[(domain, customer_id)] = None
            case SaveIdentity(identity=identity, record=link):
                writes.identities[(domain, identity)] = link
            case SaveConsent():
                writes.consents.append(effect)
            case SaveBot(bot_id=bot_id, record=health):
                writes.bots[(domain, bot_id)] = health
            case EraseCustomer():
                writes.erasures.append((domain, effect))
            # Last, so that the effects above are not first checked against these.
            case Emit() | SaveMessage():
                raise AssertionError(f"{type(effect).__name__} is taken by _collect")
            case _:
                assert_never(effect)

    def _save_conversation(
        self, state: DomainState, record: ConversationRecord, writes: store.BatchWrites, now: float
    ) -> None:
        record = self.waits.saved(state, record, now)
        writes.note_conversation((state.domain, record.conversation_id), record)
        observe_first_response(self._metrics, self._first_responses_seen, state, record)

    def _with_expected_wait(
        self, state: DomainState, event: ConversationHandedOff, now: float
    ) -> ConversationHandedOff:
        """The hand-off with the expected wait of the conversation's wait now (the
        estimator of ``conversation.queued``: ``router.shell.waits``)."""
        if event.position is None:
            return event
        expected = self.waits.estimate(state, event.conversation_id, now, event.position + 1)
        return msgspec.structs.replace(event, expected_wait_seconds=expected)

    def _send_reply(self, partition: int, reply: ReplyRequested, writes: store.BatchWrites) -> None:
        """A reply of a bot's or of Switchboard's own, to publish on the outbound topic and
        record as the conversation's outbound message."""
        writes.outbox.setdefault(partition, []).append(
            store.OutboxEvent(
                topic=self._outbound,
                key=reply.domain.encode(),
                value=_encode(reply),
                headers=tuple(
                    encode_headers(reply, source=self._source, subject=reply.conversation_id)
                ),
                seal=sealing_subject(reply),
            )
        )
        writes.bot_replies.append(reply)

    def _outbox_event(self, event: RoutingEvent) -> store.OutboxEvent:
        subject = getattr(event, "conversation_id", None)
        return store.OutboxEvent(
            topic=self._routing,
            key=event.domain.encode(),
            value=_encode(event),
            headers=tuple(encode_headers(event, source=self._source, subject=subject)),
            seal=sealing_subject(event),
        )

    def _stranger(self, domain: str, number: int) -> str:
        """Why a record naming ``domain`` on partition ``number`` is not applied here."""
        home = self.homes.get(domain)
        if home is None or home == number:
            return f"unknown domain {domain!r}"
        return (
            f"misplaced: domain {domain!r} is routed from partition {home}, not {number}"
            " (a record's key must be its domain)"
        )

    def dead_letter(self, writes: store.BatchWrites, record: Record, reason: str) -> None:
        """Set ``record`` aside: a ``dead_letters`` row and a copy on the dead-letter topic,
        both written with ``writes``."""
        letter = DeadRecord.read(record, reason)
        reason = letter.reason
        writes.dead_letters.append(letter)
        writes.outbox.setdefault(record.partition, []).append(
            store.OutboxEvent(
                topic=self._dlq,
                key=record.key,
                value=record.value or b"",
                headers=letter.dlq_headers(),
            )
        )
        domain = letter.domain
        owned = domain if domain in self.partitions.get(record.partition, {}) else None
        observe_dead_letter(self._metrics, owned, record.topic, reason)
        log.warning(
            "dead_letter",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
