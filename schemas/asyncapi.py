"""The AsyncAPI 3.0 document of Switchboard's topics, generated from the msgspec Structs.

``document()`` builds it: one channel per topic, one message per event type, the record
key (the routing domain), the CloudEvents headers, and payload schemas taken from
``msgspec.json.schema_components`` — the same schemas as ``schemas/json/``, so the two can't
drift. ``render()`` writes it as block-style YAML with a small emitter of our own (the
contract package depends on msgspec only), deterministically: same Structs, same bytes.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import msgspec

from schemas.cloudevents import CONTENT_TYPE, SPEC_VERSION
from schemas.descriptions import describe_fields
from schemas.topics import (
    AGENTS,
    BOTS,
    DLQ,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_SOURCE,
    DLQ_TOPIC,
    INBOUND,
    OUTBOUND,
    ROUTING,
    SEALED_WITH,
    TOPIC_TYPES,
)

ASYNCAPI_PATH = Path(__file__).with_name("asyncapi.yaml")
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
REF = "#/components/schemas/{name}"

#: Channel id (an AsyncAPI key) and description of each topic, in document order.
TOPICS: dict[str, tuple[str, str]] = {
    INBOUND: (
        "conversationsInbound",
        "Normalized customer messages and delivery statuses from every provider. The "
        "channel adapters publish here once a webhook verifies; the router consumes it.",
    ),
    AGENTS: (
        "agentsEvents",
        "Agent registrations, presence changes and agent commands (accept, close, "
        "transfer, reply, takeover, hand-back), and bots' answers forwarded from bots.events. "
        "The agent API and the adapters publish here; the router consumes it and answers "
        "each command on conversations.routing. Must have as many partitions as "
        "conversations.inbound: the same router owns partition i of both.",
    ),
    ROUTING: (
        "conversationsRouting",
        "Every routing decision, for other systems to consume: queued, offered, assigned "
        "(with strategy, step, wait and the candidates passed over), fallback, reassigned, "
        "overflowed, closed, message.routed, and command outcomes. Published by the router "
        "from its PostgreSQL outbox: at least once, so consumers drop duplicates by ce_id.",
    ),
    OUTBOUND: (
        "conversationsOutbound",
        "Agents' and bots' replies, and business-started messages, for the channel adapters "
        "to deliver through the providers' APIs. Egress is idempotent on the record's id.",
    ),
    BOTS: (
        "botsEvents",
        "Bots' answers to the bot.turn events of conversations.routing: replies, hand-offs "
        "to people (with a summary, intent and skills), resolutions and failures, keyed by "
        "domain. The adapters forward each valid answer, unchanged, to agents.events (others "
        "to switchboard.dlq); the router applies it only while the bot owns the "
        "conversation, otherwise it answers command.rejected.",
    ),
    DLQ: (
        "switchboardDlq",
        "Poison records: the original key, bytes and headers of a record the router could "
        "not decode or validate, with the reason and where it came from; and provider "
        "webhook items a channel adapter accepted but could not publish (a value no event "
        "may carry), with the reason and the request body.",
    ),
}

#: Who sends and who receives on each topic: (operation id, action, topic, summary).
OPERATIONS: tuple[tuple[str, str, str, str], ...] = (
    (
        "publishInbound",
        "send",
        INBOUND,
        "The channel adapters publish each verified provider message or status.",
    ),
    (
        "routeInbound",
        "receive",
        INBOUND,
        "The router applies customer messages to the owning domain's state.",
    ),
    (
        "publishAgentEvents",
        "send",
        AGENTS,
        "The agent API publishes agent profiles, presence and commands.",
    ),
    (
        "applyAgentEvents",
        "receive",
        AGENTS,
        "The router applies agent events and commands to the owning domain's state.",
    ),
    (
        "publishBotAnswers",
        "send",
        BOTS,
        "A bot (or, for a bot reached over HTTP, the adapters' bot bridge) answers a turn.",
    ),
    (
        "forwardBotAnswers",
        "receive",
        BOTS,
        "The adapters forward each bot answer to agents.events, where the router applies it.",
    ),
    (
        "publishRoutingEvents",
        "send",
        ROUTING,
        "The router publishes every routing decision and command outcome.",
    ),
    (
        "publishReplies",
        "send",
        OUTBOUND,
        "The agent API publishes agents' replies, the router bots' replies, for delivery.",
    ),
    (
        "deliverReplies",
        "receive",
        OUTBOUND,
        "The channel adapters send each reply through its provider.",
    ),
    (
        "publishDeadLetters",
        "send",
        DLQ,
        "The router sets poison records aside here and goes on; so do the channel adapters "
        "with webhook items they cannot publish (answering the provider 2xx, so that it "
        "does not redeliver them forever).",
    ),
)

#: The CloudEvents attributes every record carries as Kafka headers (binary content mode).
CLOUDEVENTS_HEADERS: dict[str, dict[str, Any]] = {
    "ce_specversion": {"const": SPEC_VERSION, "description": "CloudEvents version."},
    "ce_id": {
        "type": "string",
        "description": "Unique event id, stable across redelivery: drop duplicates by it.",
    },
    "ce_source": {
        "type": "string",
        "description": "The deployment that published the event (config key `source`).",
    },
    "ce_type": {"type": "string", "description": "The event type (the payload's `type`)."},
    "ce_time": {
        "type": "string",
        "format": "date-time",
        "description": "When the fact happened (the payload's `occurred_at`), RFC 3339.",
    },
    "ce_subject": {
        "type": "string",
        "description": "The conversation the event concerns, when there is one.",
    },
    "content-type": {"const": CONTENT_TYPE, "description": "Media type of the record value."},
    SEALED_WITH: {
        "type": "string",
        "description": "Present when the value is sealed (events holding a customer's "
        "personal data): the 16 raw bytes of the id (a UUID) of the key that opens it, "
        "`topic_keys.key` in the service's PostgreSQL. The value is then a 12-byte nonce "
        "followed by the AES-256-GCM ciphertext of the JSON body and its 16-byte tag, with "
        "the key id as associated data. Once the customer is erased the key is deleted "
        "and the value can no longer be opened (README: Sealed records on the topics).",
    },
}
OPTIONAL_HEADERS = frozenset({"ce_subject", SEALED_WITH})

DLQ_HEADERS: dict[str, dict[str, Any]] = {
    DLQ_REASON: {"type": "string", "description": "Why the record was refused."},
    DLQ_TOPIC: {
        "type": "string",
        "description": "Topic the record was read from (the router), or the topic a "
        "webhook item was meant for (a channel adapter).",
    },
    DLQ_PARTITION: {
        "type": "string",
        "description": "Its partition, in decimal (records the router read).",
    },
    DLQ_OFFSET: {
        "type": "string",
        "description": "Its offset, in decimal (records the router read).",
    },
    DLQ_SOURCE: {
        "type": "string",
        "description": "`webhook/<provider>` for an item a channel adapter set aside; the "
        "value is then the provider's request body and `content-type` its media type.",
    },
}
DLQ_REQUIRED = (DLQ_REASON, DLQ_TOPIC)


def _members(union: Any) -> tuple[type[msgspec.Struct], ...]:
    args = getattr(union, "__args__", None)
    return tuple(args) if args is not None else (union,)


def _tag(struct: type[msgspec.Struct]) -> str:
    tag = struct.__struct_config__.tag
    assert isinstance(tag, str), f"{struct.__name__} has no tag"
    return tag


def _summary(struct: type[msgspec.Struct]) -> str | None:
    """The first paragraph of the Struct's own docstring, as one line."""
    doc = struct.__dict__.get("__doc__")
    if not doc:
        return None
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _headers(tag: str) -> dict[str, Any]:
    properties = {name: dict(schema) for name, schema in CLOUDEVENTS_HEADERS.items()}
    properties["ce_type"] = {**properties["ce_type"], "const": tag}
    return {
        "type": "object",
        "required": [name for name in CLOUDEVENTS_HEADERS if name not in OPTIONAL_HEADERS],
        "properties": properties,
    }


def _key() -> dict[str, Any]:
    return {
        "kafka": {
            "key": {
                "type": "string",
                "description": "The routing domain: all of a domain's records share a "
                "partition, so one router applies them in order.",
            },
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _dlq_message() -> dict[str, Any]:
    return {
        "name": "dead_letter",
        "title": "Dead letter",
        "summary": "A record the router refused, or a webhook item an adapter set aside, "
        "unchanged, with why and where from.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": list(DLQ_REQUIRED),
            "properties": DLQ_HEADERS,
            "additionalProperties": {
                "description": "The original record's own headers (its CloudEvents "
                "attributes, when it had them), copied unchanged."
            },
        },
        "payload": {"description": "The original record's value: bytes, possibly not JSON."},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The original record's key (its routing domain).",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as plain data."""
    unions = list(TOPIC_TYPES.values())
    _, generated = msgspec.json.schema_components(unions, ref_template=REF)
    # Through JSON and back: plain data, as in the JSON Schema files (tuples become lists).
    components: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(generated))
    describe_fields(components, *unions)
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for topic, (channel_id, description) in TOPICS.items():
        refs: dict[str, Any] = {}
        if topic == DLQ:
            messages["DeadLetter"] = _dlq_message()
            refs["DeadLetter"] = {"$ref": "#/components/messages/DeadLetter"}
        else:
            for struct in _members(TOPIC_TYPES[topic]):
                name = struct.__name__
                tag = _tag(struct)
                message: dict[str, Any] = {"name": tag, "title": tag}
                summary = _summary(struct)
                if summary:
                    message["summary"] = summary
                message |= {
                    "contentType": CONTENT_TYPE,
                    "headers": _headers(tag),
                    "payload": {"$ref": REF.format(name=name)},
                    "bindings": _key(),
                }
                messages[name] = message
                refs[name] = {"$ref": f"#/components/messages/{name}"}
        channels[channel_id] = {
            "address": topic,
            "title": topic,
            "description": description + " The topic name takes the configured prefix "
            "(kafka.topic_prefix / SWITCHBOARD_TOPIC_PREFIX) when one is set.",
            "messages": refs,
            "bindings": {
                "kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION},
            },
        }
    operations: dict[str, Any] = {}
    for operation_id, action, topic, summary in OPERATIONS:
        channel_id = TOPICS[topic][0]
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": summary,
            "messages": [
                {"$ref": f"#/channels/{channel_id}/messages/{name}"}
                for name in channels[channel_id]["messages"]
            ],
        }
        if action == "receive" and topic not in (OUTBOUND, BOTS):
            operation["bindings"] = {
                "kafka": {
                    "groupId": {
                        "type": "string",
                        "default": "switchboard-router",
                        "description": "The routers' consumer group (kafka.consumer_group).",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        operations[operation_id] = operation
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:switchboard:topics",
        "info": {
            "title": "Switchboard topics",
            "version": "1.0.0",
            "description": "The Kafka topics of Switchboard, the conversation router. "
            "Records are keyed by routing domain, carry CloudEvents 1.0 attributes as "
            "headers (binary content mode) and a JSON body. Generated from the msgspec "
            "Structs in schemas/ by `switchboard schemas`; do not edit by hand.",
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "Your brokers: the value of KAFKA_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": dict(sorted(components.items())),
        },
    }


# -- a small deterministic YAML emitter ------------------------------------------------

#: Plain (unquoted) scalars: ASCII, starting with a letter, without the sequences that
#: end a plain scalar (``": "``, ``" #"``) or would be trimmed (trailing blank or colon).
_PLAIN = re.compile(r"[A-Za-z](?:[ -~]*[!-9;-~])?")
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_.\-$]*")
#: Words YAML 1.1 readers (PyYAML among them) take for booleans or null.
_RESERVED = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _scalar(value: Any, pattern: re.Pattern[str] = _PLAIN) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if (
            pattern.fullmatch(value)
            and ": " not in value
            and " #" not in value
            and value.lower() not in _RESERVED
        ):
            return value
        # A JSON string is a valid YAML double-quoted scalar.
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_scalar(key, _PLAIN_KEY)}:"
            if isinstance(item, dict | list) and item:
                out.append(head)
                out.extend(_lines(item, indent + 2))
            else:
                out.append(f"{head} {_inline(item)}")
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0][indent + 2 :]}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {_inline(item)}")
    return out


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(data: dict[str, Any]) -> str:
    """Block-style YAML of plain data (dicts, lists, strings, numbers, booleans, None)."""
    return "\n".join(_lines(data, 0)) + "\n"


def render() -> bytes:
    header = "# Generated by `switchboard schemas` from the Structs in schemas/; do not edit.\n"
    return (header + to_yaml(document())).encode()
