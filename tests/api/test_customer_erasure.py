"""A customer erased (``router.api.erasure``, ``router.engine.erasure``,
``router.shell.erasure``).

Through the running service, one person on SMS, email and web chat (linked identities),
with replies, a consent and an open conversation, is erased by their phone number while
other customers keep writing. Afterwards no table, nothing in the router's memory and no
event published since holds their phone number, email address, name, identities or any
text they wrote or were sent; everyone else's data is whole and their messages were
routed meanwhile. Admin only, audited by digest, idempotent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from router.api.erasure import named_identities
from router.shell import erasure
from router.shell.erasure import ERASED, KEPT, needles
from runtime.sealing import TopicKeys, sweep
from schemas import ROUTING_DECODER, ConversationClosed, CustomerErased
from schemas.topics import ALL_TOPICS, ROUTING
from switchboard.app import ROUTER_WORKER, Role
from switchboard.config import Config
from switchboard.embedded import EmbeddedBroker
from tests.api.support import Api, api_service
from tests.api.test_customer_export import (
    OTHER_TEXT,
    every_customer_table_is_in_one,
    person_on_three_channels,
)
from tests.api.test_people import CUSTOMER, EMAIL, PHONE, SECRETS, USER, channels_config
from tests.conftest import Infrastructure
from tests.support import TopicReader, wait_until

pytestmark = pytest.mark.timeout(240)

ACME = "/v1/domains/acme"
PLANTED = (
    PHONE,
    PHONE.lstrip("+"),
    "ann@example.org",
    "Ann@Example.org",
    "Ann Customer",
    CUSTOMER,
    EMAIL,
    USER,
    "my order has not arrived",
    "Still waiting",
    "still nothing",
    "Bob here, on it",
    "Order 1234",
)
"""What the person wrote, was sent, and is called, in every spelling the scene uses."""


def test_every_table_holding_customer_data_is_erased_or_kept_for_a_reason() -> None:
    every_customer_table_is_in_one(ERASED, KEPT)


def test_a_phone_number_is_named_on_every_phone_channel() -> None:
    assert set(named_identities("sms:+14155552671")) == {
        f"{kind}:+14155552671" for kind in ("sms", "phone", "whatsapp", "rcs", "viber")
    }
    assert named_identities("email:ann@example.org") == ["email:ann@example.org"]
    # A WhatsApp business-scoped user id is no phone number: no other channel has it.
    bsuid = "whatsapp:US.13491208655302741918"
    assert named_identities(bsuid) == [bsuid]


def test_dead_letters_are_searched_for_every_spelling_of_an_address() -> None:
    found = needles(("sms:+14155552671", "email:ann@example.org", "user:42"))
    for spelling in (b"+14155552671", b"%2B14155552671", b"14155552671", b"ann%40example.org"):
        assert spelling in found
    assert b"42" not in found  # too short: it would match other records


# -- every deletion reads an index -------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "args", "indexes"),
    [
        (
            erasure._DELETE_CONVERSATIONS,
            ("acme", ["sms:+1"], ["c1"]),
            ("conversations_by_customer", "conversations_pkey"),
        ),
        (erasure._DELETE_MESSAGES, ("acme", ["c1"]), ("messages_of_conversation",)),
        (
            erasure._DELETE_OUTBOUND,
            ("acme", ["c1"], ["sms:+1"]),
            ("outbound_by_conversation", "outbound_notifications_by_customer"),
        ),
        (
            erasure._DELETE_IDENTITIES,
            ("acme", ["sms:+1"]),
            ("customer_identities_pkey", "customer_identities_of_customer"),
        ),
        (
            erasure._DELETE_CONSENTS,
            ("acme", ["sms:+1"], ["+1"]),
            (
                "consents_by_customer",
                "consents_by_address",
                "marketing_consents_by_customer",
                "marketing_consents_by_address",
            ),
        ),
        (
            erasure._DELETE_CONSENT_CHANGES,
            ("acme", ["sms:+1"], ["+1"]),
            ("consent_changes_by_customer", "consent_changes_by_any_address"),
        ),
        (
            erasure._DELETE_REPLAY_LOG,
            ("acme", ["sms:+1"], ["c1"]),
            (
                "agent_events_by_customer",
                "agent_events_by_conversation",
                "agent_events_by_identity",
                "agent_events_by_merged",
            ),
        ),
    ],
)
async def test_each_erasure_statement_reads_indexes(
    database_url: str, statement: str, args: tuple[Any, ...], indexes: tuple[str, ...]
) -> None:
    """On a domain of 4,000 customers (analyzed), the plan of each statement names every
    index it needs: a customer's rows are found, not searched for, inside the router's
    batch transaction."""
    conn = await asyncpg.connect(database_url)
    try:
        await _populate(conn)
        plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN {statement}", *args))
    finally:
        await conn.close()
    for index in indexes:
        assert index in plan, plan


async def _populate(conn: asyncpg.Connection) -> None:
    n = 4000
    await conn.execute(
        "INSERT INTO conversations (domain, conversation_id, channel, customer_id,"
        " conversation_key, queue, status, opened_at, record)"
        " SELECT 'acme', 'c' || i, 'sms', 'sms:+' || (10000000 + i), 'k' || i, 'q', 'closed',"
        " now(), '{}' FROM generate_series(1, $1) i",
        n,
    )
    await conn.execute(
        "INSERT INTO messages (domain, message_id, conversation_id, direction, channel, text,"
        " occurred_at) SELECT 'acme', 'm' || i, 'c' || (i % $1), 'inbound', 'sms', 'x', now()"
        " FROM generate_series(1, 4 * $1) i",
        n,
    )
    await conn.execute(
        "INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel, status,"
        " kind, customer_id) SELECT 'acme', 'o' || i, 'c' || i, 'sms', 'sent',"
        " CASE WHEN i % 2 = 0 THEN 'notification' ELSE 'reply' END, 'sms:+' || (10000000 + i)"
        " FROM generate_series(1, $1) i",
        n,
    )
    await conn.execute(
        "INSERT INTO customer_identities (domain, identity, customer_id, source, linked_at)"
        " SELECT 'acme', 'email:' || i || '@x.org', 'sms:+' || (10000000 + i), 'api', now()"
        " FROM generate_series(1, $1) i",
        n,
    )
    for table, extra in (
        ("consents", ""),
        ("marketing_consents", ""),
        ("consent_changes", "change_id, "),
    ):
        values = "'ch' || i, " if extra else ""
        await conn.execute(
            f"INSERT INTO {table} (domain, {extra}channel, address, customer_id, consent,"  # noqa: S608
            f" source, changed_at) SELECT 'acme', {values}'sms', '+' || (10000000 + i),"
            " 'sms:+' || (10000000 + i), 'opt_out', 'api', now() FROM generate_series(1, $1) i",
            n,
        )
    await conn.execute(
        "INSERT INTO agent_events (domain, event_id, type, occurred_at, payload)"
        " SELECT 'acme', 'e' || i, 't', now(), CASE i % 4"
        " WHEN 0 THEN jsonb_build_object('customer_id', 'sms:+' || (10000000 + i))"
        " WHEN 1 THEN jsonb_build_object('conversation_id', 'c' || i)"
        " WHEN 2 THEN jsonb_build_object('customer_id', 'sms:+' || i, 'identity', 'email:' || i)"
        " ELSE jsonb_build_object('customer_id', 'sms:+' || i, 'from_customer_id', 'x' || i)"
        " END FROM generate_series(1, 4 * $1) i",
        n,
    )
    await conn.execute("ANALYZE")


# -- what the scans read ------------------------------------------------------------------


async def database_text(pool: asyncpg.Pool) -> dict[str, str]:
    """Every row of every table, as text (bytes decoded), by table: the database dump."""
    dump: dict[str, str] = {}
    async with pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        for table in sorted(row["table_name"] for row in tables):
            rows = await conn.fetch(f'SELECT * FROM "{table}"')  # noqa: S608 -- catalog names
            dump[table] = "\n".join(
                " | ".join(_text(value) for value in row.values()) for row in rows
            )
    return dump


def _text(value: object) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def strings_in(root: object) -> set[str]:
    """Every string reachable from ``root``: attributes (slots, dicts, Structs), keys,
    items."""
    found: set[str] = set()
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
            continue
        if item is None or isinstance(item, int | float | bool | bytes) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, msgspec.Struct):
            stack.extend(getattr(item, name) for name in item.__struct_fields__)
        else:
            for cls in type(item).__mro__:
                stack.extend(
                    getattr(item, name)
                    for name in getattr(cls, "__slots__", ())
                    if hasattr(item, name)
                )
            stack.extend(getattr(item, "__dict__", {}).values())
    return found


async def end_offsets(config: Config) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(config.topic(topic), number)
            for topic in ALL_TOPICS
            for number in consumer.partitions_for_topic(config.topic(topic)) or ()
        ]
        if not partitions:
            await consumer.topics()
            partitions = [
                TopicPartition(config.topic(topic), number)
                for topic in ALL_TOPICS
                for number in consumer.partitions_for_topic(config.topic(topic)) or ()
            ]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def records_since(config: Config, start: dict[TopicPartition, int]) -> list[Any]:
    """Every record published on every topic from ``start`` to the end now."""
    end = await end_offsets(config)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.kafka.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        wanted = [tp for tp, last in end.items() if last > start.get(tp, 0)]
        if not wanted:
            return []
        consumer.assign(wanted)
        for tp in wanted:
            consumer.seek(tp, start.get(tp, 0))
        found: list[Any] = []
        remaining = {tp: end[tp] for tp in wanted}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            assert batch, f"records missing: {remaining}"
            for tp, records in batch.items():
                found.extend(r for r in records if r.offset < end[tp])
                if records and records[-1].offset >= end[tp] - 1:
                    remaining.pop(tp, None)
        return found
    finally:
        await consumer.stop()


def _holding(texts: Iterable[tuple[str, str]], planted: Iterable[str]) -> list[tuple[str, str]]:
    return [(where, value) for where, text in texts for value in planted if value in text]


async def readable_texts(pool: asyncpg.Pool, records: list[Any]) -> list[tuple[str, str]]:
    """What anyone holding the database's keys can read of ``records``: opened where a key
    still exists (a process of its own: nothing cached), as they are otherwise."""
    opened = await TopicKeys(pool).opened(records)
    return [
        (
            f"{record.topic}@{record.offset}",
            _text(record.value if value is None else value)
            + "".join(_text(v) for _, v in record.headers),
        )
        for record, value in opened
    ]


# -- the erasure ------------------------------------------------------------------------


async def _others_write(api: Api, count: int) -> list[str]:
    ids = []
    for number in range(count):
        ids.append(await api.customer_writes(f"someone-{number}", f"s{number}", "hello there"))
        await asyncio.sleep(0.02)
    return ids


async def test_an_erased_customer_is_nowhere_and_everyone_else_is_routed(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with (
        api_service(
            infrastructure.bootstrap_servers, database_url, channels_config(), SECRETS
        ) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        config = api.service.config
        scenes = await person_on_three_channels(api, reader)
        await api.register("cleo", capacity={"webchat": 50})
        before = await database_text(api.pool)
        assert _holding(before.items(), PLANTED), "the scene planted nothing to erase"
        start = await end_offsets(config)
        # what is on the topics about them is sealed: readable with the keys only
        old_records = await records_since(config, {})
        raw = [(f"{r.topic}@{r.offset}", _text(r.value or b"")) for r in old_records]
        assert _holding(await readable_texts(api.pool, old_records), PLANTED)
        assert not _holding(raw, PLANTED)

        others = asyncio.create_task(_others_write(api, 20))
        await asyncio.sleep(0.1)
        status, body = await api.call("DELETE", f"{ACME}/customers/phone:{PHONE}")
        other_ids = await others
        assert status == 200, body
        assert body["status"] == "completed"
        erased = body["erased"]
        assert erased["conversations"] == 3
        assert erased["messages"] == 4  # three from them and the reply
        assert erased["customers"] == 1
        assert erased["identities"] == 2  # the email and web chat links
        assert erased["consents"] == 2  # the SMS opt-out, the WhatsApp marketing stop
        assert erased["consent_changes"] == 2
        assert erased["replay_log"] >= 4  # two links, the two consent commands
        assert erased["outbound_messages"] >= 1

        # no table holds anything of them; the other customer is whole
        after = await database_text(api.pool)
        assert not _holding(after.items(), PLANTED)
        assert _holding(after.items(), [OTHER_TEXT, scenes["other_id"]])

        # the router forgot them
        states = api.service.app[ROUTER_WORKER].domain_states()
        remembered = strings_in(states)
        assert not [s for s in remembered for value in PLANTED if value in s]
        assert scenes["other_id"] in remembered

        # other customers' messages were routed while it ran
        for conversation_id in other_ids:
            assert (await reader.assignment(conversation_id)).agent_id in ("bob", "cleo")

        # nothing published since names them; customer.erased names their conversations
        published = await records_since(config, start)
        assert not _holding(await readable_texts(api.pool, published), PLANTED)
        opened = await TopicKeys(api.pool).opened(published)
        events = [
            ROUTING_DECODER.decode(value or b"")
            for record, value in opened
            if record.topic.endswith(ROUTING)
        ]
        (told,) = [e for e in events if isinstance(e, CustomerErased)]
        assert told.erasure_id == body["erasure_id"]
        assert set(told.conversation_ids) == {scenes["sms"], scenes["email"], scenes["webchat"]}
        assert told.identities == 7  # the number on five phone channels, email, web chat

        # their topic keys lose their subject now and are deleted after the shredding
        # delay: then no record published before the erasure opens with anything left
        assert erased["topic_keys"] >= 3
        assert (
            await api.pool.fetchval(
                "SELECT count(*) FROM topic_keys WHERE subject IS NULL AND shred_at IS NOT NULL"
            )
            == erased["topic_keys"]
        )
        assert _holding(await readable_texts(api.pool, old_records), PLANTED)
        await api.pool.execute("UPDATE topic_keys SET shred_at = now() WHERE shred_at IS NOT NULL")
        assert (
            sum((await sweep(api.pool, topic_retention_ms=None)).values()) == erased["topic_keys"]
        )
        assert not _holding(await readable_texts(api.pool, old_records), PLANTED)
        others_read = await readable_texts(api.pool, old_records)
        assert _holding(others_read, [OTHER_TEXT]), "the others' records still open"
        assert not [e for e in events if isinstance(e, ConversationClosed)]
        # bob's web chat slot, taken by their open conversation, was freed: what he holds
        # now is others' (some of whom may have taken it)
        status, bob = await api.call("GET", f"{ACME}/agents/bob")
        holding = await api.pool.fetchval(
            "SELECT count(*) FROM conversations WHERE domain = 'acme' AND channel = 'webchat'"
            " AND owner_agent_id = 'bob' AND status IN ('assigned', 'offered')"
        )
        assert bob["load"].get("webchat", 0) == holding, bob

        # idempotent: again, by another identity of theirs, nothing left to delete
        status, again = await api.call("DELETE", f"{ACME}/customers/{EMAIL}")
        assert status == 200, again
        assert set(again["erased"].values()) == {0}
        status, shown = await api.call("GET", f"{ACME}/erasures/{body['erasure_id']}")
        assert (status, shown["erased"]) == (200, erased)
        status, _ = await api.call("GET", f"{ACME}/customers/{CUSTOMER}/export")
        assert status == 404

        # admin only, a usable identity only, audited by digest
        assert (await api.call("DELETE", f"{ACME}/customers/{EMAIL}", "bob"))[0] == 403
        status, refused = await api.call("DELETE", f"{ACME}/customers/ann@example.org")
        assert status == 400, refused
        assert (await api.call("GET", f"{ACME}/erasures/nope"))[0] == 404
        rows = await api.pool.fetch(
            "SELECT target, detail::text AS detail FROM audit_log"
            " WHERE action = 'customer.erase' ORDER BY id"
        )
        assert len(rows) == 2
        assert rows[0]["target"].startswith("customer h:")
        assert json.loads(rows[0]["detail"])["event_id"] == body["erasure_id"]
        rows_text = [(row["target"], row["detail"]) for row in rows]
        assert not _holding(rows_text, PLANTED)
        pending = await api.pool.fetchval(
            "SELECT count(*) FROM erasures WHERE cardinality(identities) > 0"
        )
        assert pending == 0


async def test_an_erasure_the_broker_refuses_answers_503_and_keeps_no_one(
    database_url: str, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        async with api_service(
            broker.bootstrap_servers, database_url, roles=frozenset({Role.ROUTER})
        ) as api:
            broker.stop()
            status, answer = await api.call("DELETE", f"{ACME}/customers/{CUSTOMER}")
            assert (status, answer) == (503, {"error": "broker unavailable, retry later"})
            assert await api.pool.fetchval("SELECT count(*) FROM erasures") == 0
            assert not await api.pool.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'customer.erase'"
            )
            # Back (empty): the same request goes through, once the clients reconnected.
            broker = EmbeddedBroker(tmp_path / "broker", port=broker.port)
            broker.start()

            async def erased() -> bool:
                status, _ = await api.call("DELETE", f"{ACME}/customers/{CUSTOMER}")
                return status in (200, 202)

            await wait_until(erased, timeout=60, what="the erasure accepted again")
    finally:
        broker.stop()
