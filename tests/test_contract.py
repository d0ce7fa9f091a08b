"""The contract and purity: generated files are fresh, old payloads still decode,
and no I/O in the contract or the engine (the layers: ``tests/test_layers.py``)."""

from __future__ import annotations

import ast
import re
import sys
import typing
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    AGENT_EVENT_DECODER,
    INBOUND_DECODER,
    ROUTING_DECODER,
    Channel,
    ConversationAssigned,
    MessageReceived,
    decode_headers,
    encode_headers,
    limits,
)
from schemas.cloudevents import _rfc3339, event_type, type_name
from schemas.generate import rendered

ROOT = Path(__file__).resolve().parents[1]


def test_generated_json_schemas_are_fresh() -> None:
    stale = [
        path.relative_to(ROOT).as_posix()
        for path, content in rendered().items()
        if not path.exists() or path.read_bytes() != content
    ]
    assert stale == [], "run `make schemas` and commit the result"


def test_a_payload_from_before_optional_fields_existed_still_decodes() -> None:
    minimal = (
        b'{"type":"message.received","id":"e1","domain":"acme","occurred_at":1700000000.0,'
        b'"channel":"sms","endpoint":"+15550001","customer_address":"+15550002",'
        b'"customer_id":"phone:+15550002","conversation_key":"sms:+15550001:+15550002",'
        b'"provider_message_id":"SM1"}'
    )
    event = INBOUND_DECODER.decode(minimal)
    assert isinstance(event, MessageReceived)
    assert (event.text, event.attachments, event.priority, event.queue) == ("", (), 0, None)


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    newer = (
        b'{"type":"agent.presence_changed","id":"e2","domain":"acme","occurred_at":1.0,'
        b'"agent_id":"ann","status":"away","reason_code":"lunch"}'
    )
    assert AGENT_EVENT_DECODER.decode(newer).agent_id == "ann"  # type: ignore[union-attr]


def test_a_record_of_another_topic_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        ROUTING_DECODER.decode(b'{"type":"message.received","id":"x"}')


MINIMAL_MESSAGE = {
    "type": "message.received",
    "id": "e1",
    "domain": "acme",
    "occurred_at": 1700000000.0,
    "channel": "sms",
    "endpoint": "+15550001",
    "customer_address": "+15550002",
    "customer_id": "phone:+15550002",
    "conversation_key": "sms:+15550001:+15550002",
    "provider_message_id": "SM1",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer_address", "+1" + "5" * limits.ADDRESS_MAX),
        ("customer_id", "c" * (limits.CUSTOMER_ID_MAX + 1)),
        ("provider_message_id", "m" * (limits.PROVIDER_MESSAGE_ID_MAX + 1)),
        ("text", "t" * (limits.TEXT_MAX + 1)),
        ("occurred_at", 1e17),
        ("occurred_at", -1.0),
        ("attachments", [{"url": "u" * (limits.URL_MAX + 1)}]),
    ],
)
def test_the_router_refuses_a_record_beyond_the_limits_as_invalid(
    field: str, value: object
) -> None:
    """The router dead-letters a record its decoder refuses, rather than failing on it."""
    assert isinstance(INBOUND_DECODER.decode(msgspec.json.encode(MINIMAL_MESSAGE)), MessageReceived)
    with pytest.raises(msgspec.ValidationError):
        INBOUND_DECODER.decode(msgspec.json.encode({**MINIMAL_MESSAGE, field: value}))


#: The longest value, in characters, of every column an index holds.
INDEXED_COLUMN_MAX = {
    "domain": limits.DOMAIN_MAX,
    "agent_id": limits.AGENT_ID_MAX,
    "owner_agent_id": limits.AGENT_ID_MAX,
    "preferred_agent_id": limits.AGENT_ID_MAX,
    "customer_id": limits.CUSTOMER_ID_MAX,
    "identity": limits.CUSTOMER_ID_MAX,
    "conversation_id": limits.CONVERSATION_ID_MAX,
    "message_id": limits.EVENT_ID_MAX,
    "assignment_id": limits.EVENT_ID_MAX,
    "event_id": limits.EVENT_ID_MAX,
    "outbound_id": limits.EVENT_ID_MAX,
    "token_id": limits.EVENT_ID_MAX,
    "token_sha256": 64,
    "provider_message_id": limits.PROVIDER_MESSAGE_ID_MAX,
    "provider": limits.CODE_MAX,
    "nonce": limits.NONCE_MAX,
    "channel": max(len(channel.value) for channel in Channel),
    "address": limits.ADDRESS_MAX,
    "endpoint": limits.ENDPOINT_MAX,
    "client_key": limits.CLIENT_KEY_MAX,
    "campaign_id": limits.CAMPAIGN_ID_MAX,
    "bot_id": limits.BOT_ID_MAX,
    "change_id": limits.EVENT_ID_MAX,
    "erasure_id": limits.EVENT_ID_MAX,
    "status": len("undelivered"),  # the longest status word a row may hold
    "kind": 32,  # retention_marks: runtime.retention's own names (CHECK in 0018)
    "subject": 32,  # topic_keys: a SHA-256 (CHECK in 0021)
    "queue": limits.QUEUE_MAX,  # workload_intervals: configured queue names
    "job_id": 64,  # planning_jobs: a uuid (CHECK in 0023)
}
FIXED_WIDTH = {"id", "seq", "partition", "opened_at", "offered_at", "accepted_at", "occurred_at",
               "created_at", "applied_at", "expires_at", "version", "changed_at",
               "requested_at", "key_id", "period", "shred_at", "ended_at",
               "interval_start", "finished_at"}  # fmt: skip
#: Keys of the router's own bookkeeping, named by the operator's configuration, not by input.
CONFIGURED = {"consumer_group", "topic", "source"}
BTREE_MAX_BYTES = 2704  # a third of an 8 kB page, less the page's own overhead


def _index_keys(sql: str) -> list[tuple[str, list[str]]]:
    keys = [
        (f"index on {table}", columns.split(","))
        for table, columns in re.findall(r"CREATE (?:UNIQUE )?INDEX \w+ ON (\w+) \(([^)]*)\)", sql)
    ]
    for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", sql, re.DOTALL):
        keys += [
            (f"key of {table}", columns.split(","))
            for columns in re.findall(r"(?:PRIMARY KEY|UNIQUE) \(([^)]*)\)", body)
        ]
        keys += [
            (f"key of {table}", [column])
            for column in re.findall(r"^\s*(\w+)\s[^,]*\b(?:PRIMARY KEY|UNIQUE)\b", body, re.M)
        ]
    return [(where, [c.strip().strip('"') for c in columns]) for where, columns in keys]


def test_no_value_within_the_limits_can_exceed_a_btree_index_row() -> None:
    """Every column an index holds has a maximum, and at 4 UTF-8 bytes a character plus a
    4-byte header each, the widest index entry stays below PostgreSQL's limit."""
    sql = "\n".join(
        path.read_text() for path in sorted((ROOT / "runtime" / "migrations").glob("*.sql"))
    )
    keys = _index_keys(sql)
    assert len(keys) > 20  # the parse found the schema's keys
    for where, columns in keys:
        if CONFIGURED & set(columns):
            continue
        size = 8  # the index tuple's header
        for column in columns:
            if column in FIXED_WIDTH:
                size += 8
            else:
                assert column in INDEXED_COLUMN_MAX, f"{column} ({where}) has no maximum"
                size += 4 + 4 * INDEXED_COLUMN_MAX[column]
        assert size <= BTREE_MAX_BYTES, (where, columns, size)


def test_cloudevents_headers_round_trip() -> None:
    event = ConversationAssigned(
        id="ev-1",
        domain="acme",
        occurred_at=1700000000.5,
        conversation_id="c1",
        channel="webchat",  # type: ignore[arg-type]
        customer_id="cu",
        queue="default",
        agent_id="ann",
        assignment_id="a1",
        strategy="preferred",  # type: ignore[arg-type]
        step="preferred",
        waited_seconds=0.0,
    )
    headers = decode_headers(encode_headers(event, source="switchboard/test", subject="c1"))
    assert (headers.id, headers.type, headers.source, headers.subject) == (
        "ev-1",
        "conversation.assigned",
        "switchboard/test",
        "c1",
    )
    assert headers.time.startswith("2023-11-14T22:13:20.5")
    assert type_name(ConversationAssigned) == "conversation.assigned"
    assert event_type(encode_headers(event, source="another")) == b"conversation.assigned"


@given(
    st.one_of(
        st.floats(min_value=0, max_value=limits.EPOCH_MAX),
        # Near a second's end, where the microseconds round up into the next one.
        st.integers(0, int(limits.EPOCH_MAX) - 1).map(lambda s: s + 0.9999995),
        st.integers(0, int(limits.EPOCH_MAX)).map(float),
    )
)
def test_ce_time_is_what_datetime_writes(epoch_seconds: float) -> None:
    """``ce_time`` is written from a second's cached text and the microseconds: byte for
    byte what ``datetime`` writes for the whole time."""
    expected = datetime.fromtimestamp(epoch_seconds, UTC).isoformat().encode()
    assert _rfc3339(epoch_seconds) == expected


@pytest.mark.parametrize("decoder", [INBOUND_DECODER, AGENT_EVENT_DECODER, ROUTING_DECODER])
def test_every_event_type_is_named_in_its_headers_as_its_tag(decoder: msgspec.json.Decoder) -> None:
    classes = typing.get_args(decoder.type)
    assert len(classes) > 1
    for cls in classes:
        assert type_name(cls) == cls.__struct_config__.tag

    with pytest.raises(ValueError, match="ce_id"):
        decode_headers([("ce_type", b"x")])


def _imports(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    return names


IO_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "subprocess",
    "time",
    "random",
    "logging",
    "os",
    "threading",
}


@pytest.mark.parametrize("package", ["schemas", "router.engine"])
def test_the_contract_and_the_engine_do_no_io(package: str) -> None:
    allowed_roots = {"msgspec", "schemas", "router", "__future__"}
    for name in _imports(package):
        root = name.split(".")[0]
        assert root not in IO_MODULES, f"{package} imports {name}"
        assert root in sys.stdlib_module_names or root in allowed_roots, f"{package} imports {name}"
        if root == "router":
            assert name.startswith("router.engine"), f"{package} imports {name}"
