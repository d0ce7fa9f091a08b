"""Every stored column and every event field is classified (``runtime.personal_data``).

Rules, one section each:
1. Every column of a migrated database is named in ``COLUMNS``, and every name there is a
   column of it (a real PostgreSQL migrated by ``runtime.db``, not the SQL files read).
2. Every field of every Struct on the topics is named in ``FIELDS`` (a field holding
   Structs is not: their fields are), and every name there is such a field.
3. The same for the router's snapshots kept in ``record`` columns (``SNAPSHOT_FIELDS``).
4. A column of records holds exactly the categories its records' fields hold.
5. The classification finds a sample customer's phone, email, name and text personal,
   wherever a ``MessageReceived`` carries them.
6. The README's "Personal data" block is ``markdown()``'s output.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from router.engine import records
from runtime.personal_data import (
    COLUMNS,
    Field,
    fields_of,
    key_of,
    labels_of,
    markdown,
    structs_of,
    topic_fields,
    with_markdown,
)
from runtime.personal_fields import FIELDS, SNAPSHOT_FIELDS
from runtime.personal_labels import Category, Label, Subject, merged
from schemas import Attachment, Channel, Contact, Location, MessageReceived
from schemas.topics import TOPIC_TYPES

README = Path(__file__).resolve().parent.parent / "README.md"


def differences(kind: str, found: Iterable[str], named: Iterable[str]) -> list[str]:
    """What exists but is not classified, and what is classified but does not exist."""
    found, named = set(found), set(named)
    problems = [
        f"{kind} not classified in runtime/personal_data.py (columns) or"
        f" runtime/personal_fields.py (fields): {key}"
        for key in found - named
    ]
    problems += [f"classified {kind} that no longer exists: {key}" for key in named - found]
    return sorted(problems)


def plain(fields: Mapping[str, Field]) -> set[str]:
    """The fields that are classified themselves (not holders of nested Structs)."""
    return {key for key, field in fields.items() if not field.nested}


# --- Rule 1: table columns -----------------------------------------------------------------


async def test_every_column_of_a_migrated_database_is_classified(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t"
            "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        )
    finally:
        await conn.close()
    columns = {f"{row['table_name']}.{row['column_name']}" for row in rows}
    assert len(columns) > 100, "the template database is not migrated"
    problems = differences("column", columns, COLUMNS)
    assert not problems, "\n".join(problems)


# --- Rule 2: event fields ------------------------------------------------------------------


def test_every_field_on_the_topics_is_classified() -> None:
    fields = topic_fields()
    problems = differences("event field", plain(fields), FIELDS)
    assert not problems, "\n".join(problems)


def test_fields_holding_structs_are_classified_by_their_structs_fields() -> None:
    fields = topic_fields()
    holders = sorted(key for key in FIELDS if key in fields and fields[key].nested)
    assert holders == [], "classify the fields of the Structs these hold instead"


# --- Rule 3: the router's snapshots --------------------------------------------------------


def named_structs() -> dict[str, type[msgspec.Struct]]:
    """The Structs the columns of records name: the schemas' and the router's snapshots."""
    schema = {cls.__name__: cls for cls in structs_of(*TOPIC_TYPES.values())}
    found: dict[str, type[msgspec.Struct]] = {}
    for key, holds in COLUMNS.items():
        for name in holds.structs:
            cls = schema.get(name) or getattr(records, name, None)
            assert cls is not None, f"{key} holds {name}: no such Struct"
            found[name] = cls
    return found


def snapshot_fields() -> dict[str, Field]:
    snapshots = [cls for cls in named_structs().values() if cls.__module__ == records.__name__]
    return fields_of(*snapshots)


def test_every_field_of_the_stored_snapshots_is_classified() -> None:
    fields = plain(snapshot_fields())
    unclassified = fields - set(FIELDS)
    problems = differences("snapshot field", unclassified, SNAPSHOT_FIELDS)
    assert not problems, "\n".join(problems)
    assert not set(FIELDS) & set(SNAPSHOT_FIELDS)


# --- Rule 4: columns of records ------------------------------------------------------------


def test_a_column_of_records_holds_what_its_records_fields_hold() -> None:
    structs = named_structs()
    problems = []
    for key, holds in COLUMNS.items():
        if not (holds.topics or holds.structs):
            continue
        roots = [TOPIC_TYPES[topic] for topic in holds.topics]
        roots += [structs[name] for name in holds.structs]
        fields = fields_of(*roots)
        held = merged(label for name in plain(fields) for label in labels_of(name, fields))
        if held != holds.labels:
            declared = ", ".join(sorted(map(str, holds.labels)))
            problems.append(
                f"{key}: classified {declared}, holds {', '.join(sorted(map(str, held)))}"
            )
    assert not problems, "\n".join(problems)


# --- Rule 5: a sample message --------------------------------------------------------------

PHONE = "+14155550123"
EMAIL = "ann.example@example.com"
NAME = "Ann Example"
TEXT = "my parcel never arrived"
PLANTED = (PHONE, PHONE[1:], EMAIL, NAME, TEXT)
WAMID = "wamid." + base64.b64encode(b"\x1c\x18\x0b" + PHONE[1:].encode() + b"\x15\x02").decode()


def sample_message() -> MessageReceived:
    """A WhatsApp message carrying one person's phone, email, name and text everywhere a
    customer can put them."""
    return MessageReceived(
        id="ev-1",
        domain="acme",
        occurred_at=1_700_000_000.0,
        channel=Channel.WHATSAPP,
        endpoint="+15550000001",
        customer_address=PHONE,
        customer_id=f"phone:{PHONE}",
        conversation_key=f"whatsapp:+15550000001:{PHONE}",
        provider_message_id=WAMID,
        in_reply_to=WAMID,
        known_customer_id=f"email:{EMAIL}",
        text=f"Hi, {NAME} here ({EMAIL}): {TEXT}",
        subject=f"{NAME}: {TEXT}",
        attachments=(
            Attachment(
                url=f"https://media.example.com/{NAME}.jpg",
                filename=f"{NAME}.jpg",
                caption=TEXT,
            ),
        ),
        location=Location(latitude=48.85, longitude=2.35, name=f"{NAME}'s home"),
        contacts=(Contact(name=NAME, phones=(PHONE,), emails=(EMAIL,)),),
        attributes={"email": EMAIL, "name": NAME},
    )


def readable(value: str) -> str:
    """``value``, and for a WhatsApp message id the record it encodes."""
    if value.startswith("wamid."):
        return value + " " + base64.b64decode(value[6:]).decode(errors="replace")
    return value


def strings(value: object) -> Iterator[str]:
    if isinstance(value, msgspec.Struct):
        yield from strings(msgspec.to_builtins(value))
    elif isinstance(value, str):
        yield readable(value)
    elif isinstance(value, dict):
        for item in value.items():
            yield from strings(item)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from strings(item)


def carriers(obj: msgspec.Struct) -> Iterator[tuple[str, Any]]:
    """(``Struct.field``, value) of every field of ``obj`` and of the Structs it holds."""
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        yield key_of(type(obj), name), value
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, msgspec.Struct):
                yield from carriers(item)


def test_a_sample_customers_phone_email_name_and_text_are_personal_wherever_they_are() -> None:
    message = sample_message()
    fields = fields_of(MessageReceived)
    carrying = {
        key
        for key, value in carriers(message)
        if any(planted in text for text in strings(value) for planted in PLANTED)
    }
    assert {
        "MessageReceived.customer_address",
        "MessageReceived.provider_message_id",
        "MessageReceived.text",
        "MessageReceived.contacts",
        "Contact.name",
        "Attachment.filename",
    } <= carrying, "the sample plants nothing"
    labels = {key: labels_of(key, fields) for key in carrying}
    not_personal = sorted(key for key, held in labels.items() if held == merged(()))
    assert not not_personal, f"carry the customer's phone, email, name or text: {not_personal}"
    categories = {label.category for held in labels.values() for label in held}
    assert categories == {Category.IDENTITY, Category.NAME, Category.CONTENT}
    assert {label.subject for held in labels.values() for label in held} == {Subject.CUSTOMER}


def test_not_everything_is_personal_nor_nothing() -> None:
    kinds = [holds.labels for holds in (*COLUMNS.values(), *FIELDS.values())]
    assert any(Label(Category.NONE, Subject.NONE) in labels for labels in kinds)
    assert any(Label(Category.IDENTITY, Subject.AGENT) in labels for labels in kinds)
    assert any(Label(Category.NAME, Subject.AGENT) in labels for labels in kinds)


# --- Rule 6: the README --------------------------------------------------------------------


def test_the_readme_table_is_generated() -> None:
    readme = README.read_text(encoding="utf-8")
    assert markdown() in readme, "run: .venv/bin/python -m runtime.personal_data"
    assert with_markdown(readme) == readme
