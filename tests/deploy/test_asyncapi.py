"""The AsyncAPI document: a well-formed AsyncAPI 3.0 document of every topic, whose
payloads are exactly the generated JSON Schemas, and whose headers and key are what the
code writes."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import msgspec
import pytest
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from router.shell.outbox import sealed
from router.shell.store import OutboxEvent
from runtime.dead_letters import DeadRecord
from runtime.sealing import SealingKey
from schemas import ConversationAssigned, encode_headers, topics
from schemas.asyncapi import ASYNCAPI_PATH, document, render, to_yaml
from schemas.generate import json_schema
from schemas.topics import TOPIC_TYPES
from tests.deploy.conftest import ROOT

COMPONENT_KEY = re.compile(r"^[A-Za-z0-9.\-_]+$")


def _loaded() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ASYNCAPI_PATH.read_text())
    return loaded


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_the_file_is_what_the_structs_generate_and_reads_back_as_the_same_data() -> None:
    assert ASYNCAPI_PATH.read_bytes() == render()
    assert _loaded() == json.loads(json.dumps(document()))


def test_the_yaml_emitter_round_trips_awkward_strings() -> None:
    data = {
        "plain": "conversations.inbound",
        "colon": "a: b",
        "hash": "a #b",
        "bools": ["yes", "No", "on", "off", "y", "null", "true"],
        "numbers": ["1.0", "010", "1e3", ".inf", 3, 2.5, True, None],
        "quotes": 'it\'s "quoted"',
        "unicode": "Grüße — 日本",
        "lines": "one\ntwo\n",
        "empty": ["", {}, []],
        "nested": [[1, 2], [{"a": 1, "b": [3]}]],
        "$ref": "#/components/schemas/X",
        "indicator": "- dash",
        "url": "https://example.org/x?y=1",
        "trailing": "ends with a colon:",
    }
    assert yaml.safe_load(to_yaml(data)) == data


def test_the_document_has_the_required_asyncapi_3_fields() -> None:
    doc = _loaded()
    assert doc["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(doc["info"])
    assert doc["defaultContentType"] == "application/json"
    for server in doc["servers"].values():
        assert {"host", "protocol"} <= set(server)
        assert server["protocol"] == "kafka"
    for section in ("channels", "operations"):
        assert all(COMPONENT_KEY.match(key) for key in doc[section])
    for kind in ("messages", "schemas"):
        assert all(COMPONENT_KEY.match(key) for key in doc["components"][kind])
    for operation_id, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), operation_id
        channel_ref = operation["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), operation_id
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages are those of its channel.
            assert message["$ref"].startswith(channel_ref + "/messages/"), operation_id
    for message in doc["components"]["messages"].values():
        assert {"name", "payload", "headers", "contentType"} <= set(message)
    unresolved = []
    for ref in _refs(doc):
        try:
            _resolve(doc, ref)
        except KeyError:
            unresolved.append(ref)
    assert unresolved == []


def test_every_topic_is_a_channel_with_its_send_and_receive_operations() -> None:
    doc = _loaded()
    addresses = {channel["address"]: key for key, channel in doc["channels"].items()}
    assert set(addresses) == set(topics.ALL_TOPICS)
    for address, key in addresses.items():
        assert doc["channels"][key]["bindings"]["kafka"]["topic"] == address
        used = {
            op["action"]
            for op in doc["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{key}"
        }
        assert "send" in used, address
    receives = {
        doc["channels"][op["channel"]["$ref"].split("/")[-1]]["address"]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    assert {topics.INBOUND, topics.AGENTS, topics.OUTBOUND} <= receives


@pytest.mark.parametrize("topic", sorted(TOPIC_TYPES))
def test_each_topic_carries_exactly_its_generated_payload_schemas(topic: str) -> None:
    doc = _loaded()
    (channel,) = [c for c in doc["channels"].values() if c["address"] == topic]
    schema_file = json.loads((ROOT / "schemas" / "json" / f"{topic}.schema.json").read_text())
    assert schema_file == json.loads(json.dumps(json_schema(topic)))
    if "anyOf" in schema_file:
        members = [ref["$ref"].split("/")[-1] for ref in schema_file["anyOf"]]
    else:
        members = [schema_file["$ref"].split("/")[-1]]
    messages = [_resolve(doc, ref["$ref"]) for ref in channel["messages"].values()]
    assert [m["payload"]["$ref"].split("/")[-1] for m in messages] == members
    # The payload schemas, with their references, are the JSON Schema file's definitions.
    as_json_schema = json.loads(
        json.dumps(doc["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    )
    for name, definition in schema_file["$defs"].items():
        assert as_json_schema[name] == definition, name
    for message in messages:
        tag = _resolve(doc, message["payload"]["$ref"])["properties"]["type"]["enum"][0]
        assert message["name"] == tag
        assert message["headers"]["properties"]["ce_type"]["const"] == tag
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string"
        assert "domain" in key["description"]


def test_the_headers_are_the_cloudevents_headers_the_code_writes() -> None:
    doc = _loaded()
    event = ConversationAssigned(
        id="ev-1",
        domain="acme",
        occurred_at=1700000000.0,
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
    plain = OutboxEvent(
        "t", b"acme", b"{}", tuple(encode_headers(event, source="switchboard", subject="c1")), "cu"
    )
    key = SealingKey(uuid.uuid4().bytes, AESGCM.generate_key(bit_length=256))
    # as the router publishes it: sealed (the event names a customer)
    [published] = sealed([plain], {(b"acme", "cu"): key})
    written = published.headers
    message = doc["components"]["messages"]["ConversationAssigned"]
    headers = message["headers"]
    assert set(headers["properties"]) == {name for name, _ in written}
    assert set(headers["required"]) == {name for name, _ in encode_headers(event, source="s")}
    values = dict(written)
    assert values["ce_specversion"].decode() == headers["properties"]["ce_specversion"]["const"]
    assert values["content-type"].decode() == headers["properties"]["content-type"]["const"]
    assert values["ce_type"].decode() == headers["properties"]["ce_type"]["const"]
    assert msgspec.json.decode(msgspec.json.encode(event))["type"] == message["name"]


def test_the_dead_letter_headers_are_the_ones_the_router_and_the_adapters_write() -> None:
    record = DeadRecord("conversations.inbound", 2, 7, "invalid", b"acme", b"{", (("x", b"1"),))
    by_router = {name for name, _ in record.dlq_headers()} - {"x"}
    # The adapters' letters (``runtime.kafka.EventPublisher.dead_letter``): never a record.
    by_adapters = set(
        re.findall(r"\((topics\.DLQ_[A-Z_]+),", (ROOT / "runtime" / "kafka.py").read_text())
    )
    by_adapters = {getattr(topics, name.removeprefix("topics.")) for name in by_adapters}
    doc = _loaded()
    (dlq,) = [c for c in doc["channels"].values() if c["address"] == topics.DLQ]
    (ref,) = dlq["messages"].values()
    message = _resolve(doc, ref["$ref"])
    assert set(message["headers"]["properties"]) == by_router | by_adapters
    assert by_router == {"dlq_reason", "dlq_topic", "dlq_partition", "dlq_offset"}
    assert by_adapters == {"dlq_reason", "dlq_topic", "dlq_source"}
    assert set(message["headers"]["required"]) == by_router & by_adapters
