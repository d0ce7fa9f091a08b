"""The contract and the layering: generated files are fresh, old payloads still decode,
and imports go ``schemas <- engine <- shell/api <- app`` with no I/O in the engine."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import msgspec
import pytest

from schemas import (
    AGENT_EVENT_DECODER,
    INBOUND_DECODER,
    ROUTING_DECODER,
    ConversationAssigned,
    MessageReceived,
    decode_headers,
    encode_headers,
)
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


def test_adapters_know_nothing_of_routing() -> None:
    assert not any(name.split(".")[0] == "router" for name in _imports("adapters"))


def test_the_engine_and_schemas_do_not_import_the_shell_or_app() -> None:
    for package in ("schemas", "router.engine"):
        for name in _imports(package):
            assert not name.startswith(("router.shell", "router.api", "switchboard")), name
