"""Each Struct field's docstring is its ``description`` in the generated JSON Schema and
AsyncAPI files (``schemas.descriptions``)."""

from __future__ import annotations

from schemas import Attachment, MessageReceived
from schemas.asyncapi import document
from schemas.descriptions import field_docs
from schemas.generate import json_schema


def test_field_docstrings_are_read_with_the_bases_fields() -> None:
    docs = field_docs(MessageReceived)
    assert docs["occurred_at"].startswith("Seconds since the Unix epoch")  # from ``Event``
    assert docs["endpoint"].startswith("Our side of the exchange")
    assert "conversation_key" not in docs  # no docstring: no description


def test_the_json_schema_and_the_asyncapi_document_carry_them() -> None:
    expected = field_docs(Attachment)["media_id"]
    inbound = json_schema("conversations.inbound")["$defs"]["Attachment"]["properties"]
    assert inbound["media_id"]["description"] == expected
    components = document()["components"]["schemas"]
    assert components["Attachment"]["properties"]["media_id"]["description"] == expected
    assert "description" not in components["MessageReceived"]["properties"]["conversation_key"]
