"""Generated contract files: one JSON Schema per topic, written under ``schemas/json/``,
and the AsyncAPI document of the topics (``schemas/asyncapi.yaml``, see ``schemas.asyncapi``).

``switchboard schemas`` rewrites them; a test fails when the committed files differ from
what the Structs generate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from schemas import asyncapi
from schemas.descriptions import describe_fields
from schemas.topics import TOPIC_TYPES

JSON_DIR = Path(__file__).with_name("json")


def json_schema(topic: str) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(TOPIC_TYPES[topic])
    describe_fields(schema.get("$defs", {}), TOPIC_TYPES[topic])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://switchboard.dev/schemas/{topic}.schema.json",
        "title": f"Records of the {topic} topic",
        **schema,
    }


def rendered() -> dict[Path, bytes]:
    """Every generated file and its exact content."""
    return {
        **{
            JSON_DIR / f"{topic}.schema.json": msgspec.json.format(
                msgspec.json.encode(json_schema(topic)), indent=2
            )
            + b"\n"
            for topic in TOPIC_TYPES
        },
        asyncapi.ASYNCAPI_PATH: asyncapi.render(),
    }


def write() -> list[Path]:
    JSON_DIR.mkdir(exist_ok=True)
    written = []
    for path, content in rendered().items():
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            written.append(path)
    return written
