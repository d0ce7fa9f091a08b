"""The intake's rules by value: fetched records in, rows, outbox events and dead letters out.

Sectioned by the rules of ``router.shell.intake``. The records are plain values (the fields
of aiokafka's ``ConsumerRecord`` the intake reads), the domains are built with the engine's
builders, and time is a ``now`` passed in; no broker, no database. The properties check, for
any mix of good, poison, retried and out-of-order records: every record is applied or set
aside with its reason and never stops the others, retries never reach the engine, records
apply in their order, and the writes are what the engine decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from router.engine import (
    ConversationRecord,
    ConversationStatus,
    DomainState,
    Effect,
    Emit,
    EngineInput,
    SaveActivity,
    SaveAgent,
    SaveAssignment,
    SaveConversation,
    SaveCustomer,
    SaveMessage,
    apply,
    next_deadline,
    restore,
    snapshot,
    tick,
    with_activity,
)
from router.shell import intake as intake_module
from router.shell import store
from router.shell.erasure import ErasureRequest
from router.shell.intake import (
    ACTIVITY_ALONE_FROM,
    Batch,
    Intake,
    Unappliable,
    holds_nul,
    poison_reason,
)
from router.shell.reads import messages_named
from runtime.metrics import Metrics
from schemas import (
    ROUTING_DECODER,
    Channel,
    CustomerEraseRequested,
    DeliveryStatus,
    DeliveryStatusChanged,
    MessageReceived,
    OutboundStatusChanged,
    Presence,
    topics,
)
from schemas.cloudevents import type_name
from schemas.common import Event
from tests.engine.builders import (
    DOMAIN,
    T0,
    agent,
    domain,
    examples,
    message,
    next_id,
    presence,
    routing_events,
)

INBOUND = topics.INBOUND
AGENTS = topics.AGENTS
ROUTING = topics.ROUTING
DLQ = topics.DLQ
NUL_REASON = "invalid: a string holds U+0000 (NUL)"


# -- builders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedRecord:
    """What the intake reads of a fetched record."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def record(
    payload: Event | bytes,
    offset: int,
    *,
    topic: str | None = None,
    partition: int = 0,
    timestamp: int | None = None,
    headers: tuple[tuple[str, bytes], ...] = (),
) -> FetchedRecord:
    """A record of ``payload`` (an event, or raw bytes for the inbound topic by default),
    stamped with its offset unless told."""
    if topic is None:
        inbound = isinstance(payload, bytes | MessageReceived | DeliveryStatusChanged)
        topic = INBOUND if inbound else AGENTS
    value = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return FetchedRecord(
        topic,
        partition,
        offset,
        offset if timestamp is None else timestamp,
        DOMAIN.encode(),
        value,
        headers,
    )


def fetched(records: Iterable[FetchedRecord]) -> dict[tuple[str, int], list[FetchedRecord]]:
    """Records by (topic, partition), as ``getmany`` returns them."""
    by_partition: dict[tuple[str, int], list[FetchedRecord]] = {}
    for item in records:
        by_partition.setdefault((item.topic, item.partition), []).append(item)
    return by_partition


def new_intake(
    state: DomainState | None = None,
    *,
    partition: int = 0,
    expected: int | None = None,
    metrics: Metrics | None = None,
) -> Intake:
    """An intake owning ``state`` (a domain with agent ann) on ``partition``, expecting
    ``expected`` next on both input topics."""
    intake = Intake(
        inbound=INBOUND,
        agents=AGENTS,
        routing=ROUTING,
        dlq=DLQ,
        source="test",
        metrics=metrics or Metrics(),
    )
    intake.partitions[partition] = {DOMAIN: state if state is not None else domain([agent("ann")])}
    intake.expected[(INBOUND, partition)] = expected
    intake.expected[(AGENTS, partition)] = expected
    return intake


def collecting_intake(registry: CollectorRegistry | None = None) -> Intake:
    """An intake of no partition, for tests that hand it engine effects (``_collect``) as
    the worker does; its metrics in ``registry`` (a fresh one unless given)."""
    return Intake(
        inbound=INBOUND,
        agents=AGENTS,
        routing=ROUTING,
        dlq=DLQ,
        source="test",
        metrics=Metrics(registry or CollectorRegistry()),
        outbound="out",
    )


def run(
    intake: Intake,
    records: Iterable[FetchedRecord],
    *,
    now: float = T0,
    known: Iterable[str] = (),
) -> Batch:
    """Steps 1 and 2 of the worker's loop, without its I/O."""
    batch = intake.decode(fetched(records))
    for _ in intake.apply_events(batch, now, set(known)):
        pass
    intake.fire_deadlines(batch, now)
    return batch


def delivery(status: DeliveryStatus = DeliveryStatus.DELIVERED) -> DeliveryStatusChanged:
    return DeliveryStatusChanged(
        id=next_id("status"),
        domain=DOMAIN,
        occurred_at=T0,
        channel=Channel.SMS,
        provider_message_id=next_id("pm"),
        status=status,
    )


def with_nul(event: MessageReceived) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(event, text="a\x00b"))


def dead(batch: Batch) -> list[tuple[int, str]]:
    """(offset, reason) of the batch's dead letters."""
    return [(letter.offset, letter.reason) for letter in batch.writes.dead_letters]


def applied(batch: Batch) -> list[int]:
    return [item.offset for item in batch.decoded]


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# -- rule 1: in sequence --------------------------------------------------------------------


def test_records_already_applied_are_dropped_and_the_rest_applied() -> None:
    intake = new_intake(expected=2)
    batch = run(intake, [record(message(), offset) for offset in range(5)])
    assert applied(batch) == [2, 3, 4]
    assert batch.writes.offsets == {(INBOUND, 0): 5}
    assert intake.expected[(INBOUND, 0)] == 5


def test_a_fetch_past_the_expected_offset_is_read_again_from_there() -> None:
    intake = new_intake(expected=2)
    batch = run(intake, [record(message(), offset) for offset in (4, 5)])
    assert batch.rewinds == {(INBOUND, 0): 2}
    assert applied(batch) == []
    assert batch.writes.is_empty()
    assert intake.expected[(INBOUND, 0)] == 2


def test_records_of_a_partition_not_owned_are_left_to_its_owner() -> None:
    intake = new_intake()
    batch = run(intake, [record(message(), 0, partition=3)])
    assert batch.records == 1
    assert applied(batch) == []
    assert batch.writes.is_empty()


# -- rule 2: the poison is set aside ------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b"{not json", "invalid: JSON is malformed", id="bad_json"),
        pytest.param(b'{"type": "message.received"}', "invalid: Object missing", id="invalid"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "invalid: ", id="nested"),
        pytest.param(with_nul(message()), NUL_REASON, id="nul"),
        pytest.param(
            msgspec.json.encode(message()).replace(b'"sms"', b'"Ann +14155550123"'),
            "invalid: Invalid enum value … - at `$.channel`",
            id="value_left_out",
        ),
        pytest.param(
            msgspec.json.encode(msgspec.structs.replace(message(), domain="elsewhere")),
            "unknown domain 'elsewhere'",
            id="unknown_domain",
        ),
    ],
)
def test_a_poison_record_becomes_a_dead_letter_and_the_others_go_on(
    payload: bytes, reason: str
) -> None:
    metrics = Metrics()
    intake = new_intake(metrics=metrics)
    before, after = message("k1"), message("k2")
    poison = record(payload, 1, headers=(("trace", b"t1"), ("dlq_reason", b"old")))
    batch = run(intake, [record(before, 0), poison, record(after, 2)])
    [(offset, why)] = dead(batch)
    assert (offset, why[: len(reason)]) == (1, reason)
    assert applied(batch) == [0, 2]
    assert [m.id for m, _ in batch.writes.messages] == [before.id, after.id]
    assert batch.writes.offsets == {(INBOUND, 0): 3}
    [copy] = [e for e in batch.writes.outbox[0] if e.topic == DLQ]
    assert copy.value == payload
    assert copy.key == DOMAIN.encode()
    headers = dict(copy.headers)
    assert headers[topics.DLQ_REASON] == why.encode()
    assert headers[topics.DLQ_OFFSET] == b"1"
    assert headers["trace"] == b"t1", "the record's own headers travel with it"
    counted = why.split(":")[0].split(" ")[0]
    labels = {"domain": DOMAIN, "topic": INBOUND, "reason": counted}
    assert value(metrics, "switchboard_dead_letters_total", **labels) == 1


def test_a_dead_letter_keyed_by_a_domain_not_owned_counts_under_no_domain() -> None:
    metrics = Metrics()
    intake = new_intake(metrics=metrics)
    stranger = msgspec.json.encode(msgspec.structs.replace(message(), domain="elsewhere"))
    poison = FetchedRecord(INBOUND, 0, 0, 0, b"elsewhere", stranger)
    [(_, why)] = dead(run(intake, [poison]))
    assert why == "unknown domain 'elsewhere'"
    labels = {"topic": INBOUND, "reason": "unknown"}
    assert value(metrics, "switchboard_dead_letters_total", domain="", **labels) == 1
    assert value(metrics, "switchboard_dead_letters_total", domain="elsewhere", **labels) is None


def test_a_record_keyed_to_another_partition_than_its_domains_is_called_misplaced() -> None:
    metrics = Metrics()
    intake = new_intake(metrics=metrics)
    intake.homes = {DOMAIN: 0, "elsewhere": 2}
    stranger = msgspec.json.encode(msgspec.structs.replace(message(), domain="elsewhere"))
    nowhere = msgspec.json.encode(msgspec.structs.replace(message(), domain="nowhere"))
    batch = run(intake, [record(stranger, 0), record(nowhere, 1), record(message(), 2)])
    assert dead(batch) == [
        (
            0,
            "misplaced: domain 'elsewhere' is routed from partition 2, not 0"
            " (a record's key must be its domain)",
        ),
        (1, "unknown domain 'nowhere'"),
    ]
    assert applied(batch) == [2]
    labels = {"domain": DOMAIN, "topic": INBOUND}
    assert value(metrics, "switchboard_dead_letters_total", reason="misplaced", **labels) == 1
    assert value(metrics, "switchboard_dead_letters_total", reason="unknown", **labels) == 1


def test_a_reason_names_the_error_never_the_records_content() -> None:
    error = asyncpg.CharacterNotInRepertoireError("invalid byte sequence: 'secret text'")
    assert poison_reason(error) == "unstorable: CharacterNotInRepertoireError (SQLSTATE 22021)"
    unappliable = Unappliable()
    unappliable.__cause__ = KeyError("secret text")
    assert poison_reason(unappliable) == "unappliable: KeyError"


# -- rule 3: order --------------------------------------------------------------------------


def test_agent_events_apply_before_inbound_records_of_the_same_millisecond() -> None:
    intake = new_intake()
    records = [
        record(message("k1"), 0, timestamp=10),
        record(message("k2"), 1, timestamp=20),
        record(presence("ann", Presence.AWAY), 0, timestamp=20),
        # stamped before the record ahead of it (another producer's clock): it keeps its
        # place after it, at that one's time
        record(presence("ann", Presence.ONLINE), 1, timestamp=5),
    ]
    batch = run(intake, records)
    assert [(item.topic, item.offset) for item in batch.decoded] == [
        (INBOUND, 0),
        (AGENTS, 0),
        (AGENTS, 1),
        (INBOUND, 1),
    ]


# -- rule 4: retries and delivery statuses ------------------------------------------------


def test_a_provider_retry_is_dropped_whether_stored_or_earlier_in_the_batch() -> None:
    metrics = Metrics()
    intake = new_intake(metrics=metrics)
    stored, new = message("k1"), message("k2")
    batch = run(intake, [record(stored, 0), record(new, 1), record(new, 2)], known={stored.id})
    assert batch.messages == [(DOMAIN, stored.id), (DOMAIN, new.id), (DOMAIN, new.id)]
    assert [m.id for m, _ in batch.writes.messages] == [new.id]
    duplicates = {"domain": DOMAIN, "channel": "sms"}
    assert value(metrics, "switchboard_duplicate_messages_total", **duplicates) == 2
    assert batch.writes.offsets == {(INBOUND, 0): 3}


def test_a_record_naming_an_id_no_column_can_hold_names_no_stored_message() -> None:
    """The ids a batch's headers name are looked up before the records are opened: one
    with a NUL or not UTF-8 would fail that query, and the batch with it, at every read
    (its record is set aside when decoded)."""
    kind = ("ce_type", type_name(MessageReceived).encode())
    records = [
        record(b"{}", offset, headers=(kind, ("ce_id", event_id)))
        for offset, event_id in enumerate((b"m-1", b"m\x00-2", b"\xff-3"))
    ]
    assert messages_named({TopicPartition(INBOUND, 0): records}, INBOUND) == [(DOMAIN, "m-1")]


def test_a_delivery_status_updates_the_outbound_row_and_skips_the_engine() -> None:
    state = domain([agent("ann")])
    before = snapshot(state)
    status = delivery(DeliveryStatus.FAILED)
    metrics = Metrics()
    batch = run(new_intake(state, metrics=metrics), [record(status, 0)])
    counted = value(
        metrics, "switchboard_delivery_status_updates_total", channel="sms", status="failed"
    )
    assert counted == 1
    assert batch.writes.delivery_statuses == {
        ("", "sms", status.provider_message_id): store.DeliveryUpdate(
            status="failed", error="", provider_message_id=status.provider_message_id
        )
    }
    assert snapshot(state) == before
    assert [(e.provider_message_id, e.status) for e in batch.emitted] == [
        (status.provider_message_id, DeliveryStatus.FAILED)
    ]
    assert all(isinstance(e, OutboundStatusChanged) for e in batch.emitted)


def test_a_batch_keeps_the_furthest_status_of_a_message() -> None:
    """Statuses never go back: a late ``sent`` after ``read`` changes nothing."""
    intake = new_intake(domain([agent("ann")]))
    read = delivery(DeliveryStatus.READ)
    late = msgspec.structs.replace(
        delivery(DeliveryStatus.SENT), provider_message_id=read.provider_message_id
    )
    batch = run(intake, [record(read, 0), record(late, 1)])
    [update] = batch.writes.delivery_statuses.values()
    assert update.status == "read"
    assert len(batch.emitted) == 2


# -- rule 5: what the engine cannot apply --------------------------------------------------


def test_a_record_the_engine_fails_on_is_unappliable(monkeypatch: pytest.MonkeyPatch) -> None:
    poison = message("k2")

    def engine(state: DomainState, event: EngineInput, now: float) -> list[Effect]:
        if event.id == poison.id:
            raise RuntimeError("the engine's bug")
        return apply(state, event, now)

    monkeypatch.setattr(intake_module, "apply", engine)
    intake = new_intake()
    batch = intake.decode(fetched([record(message("k1"), 0), record(poison, 1)]))
    with pytest.raises(Unappliable) as raised:
        for _ in intake.apply_events(batch, T0, set()):
            pass
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert poison_reason(raised.value) == "unappliable: RuntimeError"


def test_the_caller_gets_a_turn_every_slice_of_records() -> None:
    intake = new_intake()
    count = 2 * intake_module.APPLY_SLICE + 1
    batch = intake.decode(fetched([record(message(f"k{i}"), i) for i in range(count)]))
    assert len(list(intake.apply_events(batch, T0, set()))) == 2
    assert len(batch.writes.messages) == count


# -- effects become writes -----------------------------------------------------------------


def test_an_assignment_becomes_rows_and_routing_events_for_the_partitions_outbox() -> None:
    intake = new_intake(domain([agent("ann")]), partition=2)
    msg = message("k1")
    batch = run(intake, [record(msg, 0, partition=2)])
    assert [m for m, _ in batch.writes.messages] == [msg]
    [(key, conversation)] = batch.writes.conversations.items()
    assert key == (DOMAIN, conversation.conversation_id)
    assert conversation.owner_agent_id == "ann"
    assert [r.agent_id for r in batch.writes.assignments.values()] == ["ann"]
    assert list(batch.writes.outbox) == [2]
    routed = batch.writes.outbox[2]
    assert [ROUTING_DECODER.decode(e.value) for e in routed] == batch.emitted
    for event_record, event in zip(routed, batch.emitted, strict=True):
        headers = dict(event_record.headers)
        assert (event_record.topic, event_record.key) == (ROUTING, DOMAIN.encode())
        assert headers["ce_id"] == event.id.encode()
        assert headers["ce_type"] == str(type(event).__struct_config__.tag).encode()
        assert headers["ce_source"] == b"test"


# -- the properties --------------------------------------------------------------------------

KINDS = (
    "message",
    "message",
    "retry",
    "stored",
    "status",
    "presence",
    "bad_json",
    "invalid",
    "nul",
    "unknown_domain",
)
POISON = {"bad_json": "invalid: ", "invalid": "invalid: ", "nul": NUL_REASON}
POISON["unknown_domain"] = "unknown domain 'elsewhere'"

draws = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 3), st.integers(0, 5)), max_size=25
)


@dataclass
class Fetch:
    """Drawn records, with what the intake should make of each."""

    records: list[FetchedRecord]
    events: dict[tuple[str, int], Event]
    """Per (topic, offset) of a record that decodes, its event."""
    known: set[str]
    reasons: dict[tuple[str, int], str]
    """Per (topic, offset) of a poison record, the start of its reason."""


def build(draw: Sequence[tuple[str, int, int]]) -> Fetch:
    offsets = {INBOUND: 0, AGENTS: 0}
    fetch = Fetch([], {}, set(), {})
    sent: list[MessageReceived] = []
    for kind, timestamp, key in draw:
        payload: Event | bytes
        inbound = kind != "presence"
        if kind == "message" or (kind == "retry" and not sent):
            payload = message(f"k{key}", customer=f"c{key}")
            sent.append(payload)
        elif kind == "retry":
            payload = sent[key % len(sent)]
        elif kind == "stored":
            payload = message(f"k{key}")
            fetch.known.add(payload.id)
        elif kind == "status":
            payload = delivery()
        elif kind == "presence":
            payload = presence("ann", (Presence.ONLINE, Presence.AWAY)[key % 2])
        elif kind == "bad_json":
            payload = b'{"type": "message.rec'
        elif kind == "invalid":
            payload = b'{"type": "message.received", "id": 5}'
        elif kind == "nul":
            payload = with_nul(message(f"k{key}"))
        else:
            payload = msgspec.json.encode(msgspec.structs.replace(message(), domain="elsewhere"))
        topic = INBOUND if inbound else AGENTS
        offset = offsets[topic]
        offsets[topic] += 1
        fetch.records.append(record(payload, offset, topic=topic, timestamp=timestamp))
        if kind in POISON:
            fetch.reasons[(topic, offset)] = POISON[kind]
        else:
            assert isinstance(payload, Event)
            fetch.events[(topic, offset)] = payload
    return fetch


def every_record_applied_or_set_aside(fetch: Fetch, batch: Batch) -> None:
    """Each record is either decoded for the engine or a dead letter with its reason, and
    the partition moves past all of them."""
    decoded = {(item.topic, item.offset) for item in batch.decoded}
    letters = {(letter.topic, letter.offset): letter.reason for letter in batch.writes.dead_letters}
    assert len(decoded) == len(batch.decoded)
    assert decoded.isdisjoint(letters)
    assert decoded | set(letters) == {(r.topic, r.offset) for r in fetch.records}
    assert set(letters) == set(fetch.reasons)
    for place, reason in letters.items():
        assert reason.startswith(fetch.reasons[place]), (place, reason)
    dlq = [e for e in batch.writes.outbox.get(0, []) if e.topic == DLQ]
    assert [dict(e.headers)[topics.DLQ_OFFSET] for e in dlq] == [
        str(letter.offset).encode() for letter in batch.writes.dead_letters
    ]
    ends = {}
    for r in fetch.records:
        ends[(r.topic, 0)] = r.offset + 1
    assert batch.writes.offsets == ends


def applied_in_order(batch: Batch) -> None:
    """By timestamp, agent events first within a millisecond, then by offset."""
    keys = [(item.timestamp, item.topic != AGENTS, item.offset) for item in batch.decoded]
    assert keys == sorted(keys)


def retries_never_reach_the_engine(fetch: Fetch, batch: Batch) -> None:
    saved = [m.id for m, _ in batch.writes.messages]
    assert len(saved) == len(set(saved))
    assert fetch.known.isdisjoint(saved)


def without_estimate(record: ConversationRecord) -> ConversationRecord:
    """The record as the engine saved it: the shell adds the wait estimate."""
    return msgspec.structs.replace(record, wait_estimate=None)


def writes_are_what_the_engine_decided(twin: DomainState, fetch: Fetch, batch: Batch) -> None:
    """The twin, fed the records that reach the engine in the order they apply (not the
    retries of a message, stored or earlier, nor the delivery statuses), decides the same;
    its effects are the batch's writes."""
    effects: list[Effect] = []
    inputs: list[EngineInput] = []
    seen = set(fetch.known)
    for item in batch.decoded:
        event = fetch.events[(item.topic, item.offset)]
        assert item.event == event
        if isinstance(event, DeliveryStatusChanged):
            effects.append(Emit(intake_module.status_changed(event)))
            continue
        if isinstance(event, MessageReceived):
            if event.id in seen:
                continue
            seen.add(event.id)
        assert isinstance(event, EngineInput)
        inputs.append(event)
        effects.extend(apply(twin, event, T0))
    due = next_deadline(twin)
    if due is not None and due <= T0:
        effects.extend(tick(twin, T0))
    assert batch.emitted == routing_events(effects)
    routed = [e for e in batch.writes.outbox.get(0, []) if e.topic == ROUTING]
    assert [ROUTING_DECODER.decode(e.value) for e in routed] == batch.emitted
    assert [m for m, _ in batch.writes.messages] == [
        e.message for e in effects if isinstance(e, SaveMessage)
    ]
    saved: dict[type, dict[object, object]] = {}
    for effect in effects:
        match effect:
            case SaveConversation(record=r):
                saved.setdefault(SaveConversation, {})[(DOMAIN, r.conversation_id)] = r
                saved.get(SaveActivity, {}).pop((DOMAIN, r.conversation_id), None)
            case SaveActivity(conversation_id=c, activity=a):
                # into the batch's record of the conversation, when it writes one
                records = saved.setdefault(SaveConversation, {})
                last = records.get((DOMAIN, c))
                if isinstance(last, ConversationRecord):
                    records[(DOMAIN, c)] = with_activity(last, a)
                else:
                    saved.setdefault(SaveActivity, {})[(DOMAIN, c)] = a
            case SaveAgent(record=r):
                saved.setdefault(SaveAgent, {})[(DOMAIN, r.agent_id)] = r
            case SaveCustomer(record=r):
                saved.setdefault(SaveCustomer, {})[(DOMAIN, r.customer_id)] = r
            case SaveAssignment(record=r):
                saved.setdefault(SaveAssignment, {})[(DOMAIN, r.assignment_id)] = r
            case Emit() | SaveMessage():
                pass
    written = batch.writes.conversations
    assert {key: without_estimate(r) for key, r in written.items()} == saved.get(
        SaveConversation, {}
    )
    for record in written.values():
        estimate = record.wait_estimate
        waiting = record.status is ConversationStatus.WAITING
        assert (estimate is not None) == waiting  # the router's estimate, while it waits
        assert estimate is None or estimate.waiting_since == record.waiting_since
    assert batch.writes.activities == saved.get(SaveActivity, {})
    assert batch.writes.agents == saved.get(SaveAgent, {})
    assert batch.writes.customers == saved.get(SaveCustomer, {})
    assert batch.writes.assignments == saved.get(SaveAssignment, {})
    assert batch.writes.agent_events == [e for e in inputs if not isinstance(e, MessageReceived)]


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(draw=draws)
def test_poison_never_stops_the_others_and_the_rest_becomes_the_engines_writes(
    draw: list[tuple[str, int, int]],
) -> None:
    state = domain([agent("ann", capacity={Channel.SMS: 2})])
    twin = restore(DOMAIN, state.policy, *snapshot(state))
    fetch = build(draw)
    batch = run(new_intake(state), fetch.records, known=fetch.known)
    every_record_applied_or_set_aside(fetch, batch)
    applied_in_order(batch)
    retries_never_reach_the_engine(fetch, batch)
    writes_are_what_the_engine_decided(twin, fetch, batch)


@settings(max_examples=examples(200), deadline=None)
@given(
    expected=st.one_of(st.none(), st.integers(0, 12)),
    start=st.integers(0, 12),
    count=st.integers(0, 6),
)
def test_a_partition_applies_each_offset_once_and_in_sequence(
    expected: int | None, start: int, count: int
) -> None:
    intake = new_intake(expected=expected)
    offsets = list(range(start, start + count))
    batch = run(intake, [record(message(f"k{o}"), o) for o in offsets])
    if expected is None:
        assert applied(batch) == offsets
    elif offsets and start > expected:
        assert batch.rewinds == {(INBOUND, 0): expected}
        assert applied(batch) == []
    else:
        assert batch.rewinds == {}
        assert applied(batch) == [o for o in offsets if o >= expected]
    moved = applied(batch)
    assert intake.expected[(INBOUND, 0)] == (moved[-1] + 1 if moved else expected)
    assert batch.writes.offsets == ({(INBOUND, 0): moved[-1] + 1} if moved else {})


texts = st.text(alphabet=st.sampled_from(["a", "u", "0", "\\", '"', "\x00", "é"]), max_size=12)


@settings(max_examples=examples(300), deadline=None)
@given(document=st.dictionaries(texts, st.one_of(texts, st.lists(texts, max_size=3)), max_size=4))
def test_nul_is_found_in_any_string_of_a_document_and_only_there(
    document: dict[str, str | list[str]],
) -> None:
    strings = [
        *document,
        *(s for v in document.values() for s in ([v] if isinstance(v, str) else v)),
    ]
    assert holds_nul(msgspec.json.encode(document)) == any("\x00" in s for s in strings)


# -- rule 6: an erasure ends its batch ------------------------------------------------------


def test_an_erasure_ends_its_batch_and_the_rest_is_read_again() -> None:
    intake = new_intake(domain([agent("ann")]))
    customer = "sms:+14155550100"
    before = message("k1", customer=customer)
    erase = CustomerEraseRequested(id=next_id("erase"), domain=DOMAIN, occurred_at=T0)
    after = message("k2", customer=customer)
    records = [
        record(before, 0, timestamp=1),
        record(erase, 0, timestamp=2),
        record(after, 1, timestamp=3),
        record(b"{not json", 2, timestamp=4),
        record(presence("ann", Presence.AWAY), 1, timestamp=5),
    ]
    batch = intake.decode(fetched(records))
    assert batch.erasures == [(DOMAIN, erase.id)]
    request = ErasureRequest((customer,), ("closed-before",))
    for _ in intake.apply_events(batch, T0, set(), {erase.id: request}):
        pass
    assert [(item.topic, item.offset) for item in batch.decoded] == [(INBOUND, 0), (AGENTS, 0)]
    again = {(INBOUND, 0): 1, (AGENTS, 0): 1}
    assert batch.rewinds == again
    assert batch.writes.offsets == again
    assert {tp: intake.expected[tp] for tp in again} == again
    # the message after it is not being written (the next batch looks it up again), and the
    # poison after it is set aside by the batch that reads it
    assert batch.messages == [(DOMAIN, before.id)]
    assert not batch.writes.dead_letters
    assert all(event.topic != DLQ for event in batch.writes.outbox[0])
    (erasure,) = batch.writes.erasures
    assert erasure[1].identities == (customer,)
    assert erasure[1].conversation_ids == (before.id, "closed-before")
    assert not batch.writes.agent_events, "an erasure keeps no one in the replay log"
    assert [type(e).__name__ for e in batch.emitted][-2:] == ["CustomerErased", "CommandCompleted"]

    rest = run(intake, [r for r in records if r.offset >= 1])
    assert [(item.topic, item.offset) for item in rest.decoded] == [(INBOUND, 1), (AGENTS, 1)]
    assert dead(rest)[0][0] == 2
    assert not rest.writes.erasures


def test_an_erasure_stamped_before_the_record_ahead_of_it_still_applies_in_turn() -> None:
    """Two producers' clocks differ: a record stamped later than the erasure after it on
    the same partition. Ordered by stamp alone, the erasure applied first and ended the
    batch before that record, which the next read put first again: the partition went
    round for ever. Within a topic's partition, offsets decide."""
    intake = new_intake(domain([agent("ann")]))
    erase = CustomerEraseRequested(id=next_id("erase"), domain=DOMAIN, occurred_at=T0)
    records = [
        record(presence("ann", Presence.AWAY), 0, timestamp=100),
        record(presence("ann", Presence.ONLINE), 1, timestamp=1170),
        record(erase, 2, timestamp=1150),
    ]
    batch = intake.decode(fetched(records))
    request = ErasureRequest(("sms:+14155550100",), ())
    for _ in intake.apply_events(batch, T0, set(), {erase.id: request}):
        pass
    assert [item.offset for item in batch.decoded] == [0, 1, 2]
    assert batch.writes.offsets == {(AGENTS, 0): 3}
    assert not batch.rewinds


def test_an_erasure_whose_row_is_gone_applies_naming_no_one() -> None:
    intake = new_intake()
    erase = CustomerEraseRequested(id=next_id("erase"), domain=DOMAIN, occurred_at=T0)
    batch = run(intake, [record(erase, 0)])
    (erasure,) = batch.writes.erasures
    assert erasure[1].identities == ()


def test_a_small_batch_saves_whole_records_and_a_large_one_the_activity_alone() -> None:
    intake = new_intake()
    opened = run(intake, [record(message("k"), 0)])
    (key,) = opened.writes.conversations
    few = run(intake, [record(message("k"), offset) for offset in range(1, 3)])
    assert list(few.writes.conversations) == [key]
    assert few.writes.activities == {}
    many = [record(message("k"), offset) for offset in range(3, 3 + ACTIVITY_ALONE_FROM)]
    large = run(intake, many)
    assert large.writes.conversations == {}
    assert list(large.writes.activities) == [key]
    (conversation,) = intake.partitions[0][DOMAIN].conversations.values()
    assert large.writes.activities[key].message_count == conversation.message_count
    assert conversation.message_count == 3 + ACTIVITY_ALONE_FROM


def test_a_large_batch_saves_whole_records_while_a_router_of_the_group_reads_no_activity() -> None:
    intake = new_intake()
    opened = run(intake, [record(message("k"), 0)])
    (key,) = opened.writes.conversations
    batches = [
        [record(message("k"), offset) for offset in range(start, start + ACTIVITY_ALONE_FROM)]
        for start in (1, 1 + ACTIVITY_ALONE_FROM)
    ]
    intake.group_reads_activity = False  # an older router joined
    mixed = run(intake, batches[0])
    assert mixed.writes.activities == {}
    (whole,) = mixed.writes.conversations.values()
    (conversation,) = intake.partitions[0][DOMAIN].conversations.values()
    assert whole.message_count == conversation.message_count == 1 + ACTIVITY_ALONE_FROM
    intake.group_reads_activity = True  # it left
    assert list(run(intake, batches[1]).writes.activities) == [key]
