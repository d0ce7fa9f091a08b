"""A customer's export (``router.api.export``).

Rules, one section each:
1. Every table holding a customer's personal data (``runtime.personal_data``) is exported
   or named in ``NOT_EXPORTED`` with its reason.
2. Through the running service: one person on SMS, email and web chat (linked identities)
   is exported whole, by the profile id or by an identity, paged by conversations, and
   nothing of another customer planted alongside is in it.
3. Admin only, 404 for a customer never seen, audited with the digest alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from adapters.base import hmac_hex
from router.api.export import EXPORTED, NOT_EXPORTED
from runtime.personal_data import COLUMNS
from runtime.personal_labels import Category, Subject
from schemas.topics import ROUTING
from tests.api.support import Api, api_service
from tests.api.test_people import (
    CHANNELS,
    CUSTOMER,
    EMAIL,
    PHONE,
    SECRETS,
    USER,
    channels_config,
    close,
    email,
    sms,
)
from tests.conftest import Infrastructure
from tests.support import TopicReader, reply_sent, wait_until

pytestmark = pytest.mark.timeout(240)

ACME = "/v1/domains/acme"
OTHER_TEXT = "planted-other-customer-text"
OTHER_PHONE = "+14155550199"

# -- 1. every table of customer personal data is exported or excused ------------------


def customer_tables() -> set[str]:
    return {
        key.split(".", 1)[0]
        for key, holds in COLUMNS.items()
        if any(
            label.subject is Subject.CUSTOMER and label.category is not Category.NONE
            for label in holds.labels
        )
    }


def every_customer_table_is_in_one(covered: frozenset[str], excused: Mapping[str, str]) -> None:
    """Every table holding customer personal data is ``covered`` or ``excused`` with a
    reason, never both, and both name tables that exist."""
    tables = {key.split(".", 1)[0] for key in COLUMNS}
    missing = customer_tables() - covered - excused.keys()
    assert not missing, f"customer personal data neither covered nor excused: {missing}"
    assert not covered & excused.keys()
    assert (covered | excused.keys()) <= tables
    assert all(reason.strip() for reason in excused.values())


def test_every_table_holding_customer_data_is_exported_or_excused() -> None:
    every_customer_table_is_in_one(EXPORTED, NOT_EXPORTED)


# -- 2. the whole person, and nobody else ---------------------------------------------


async def _export(api: Api, identity: str, who: str = "admin", **query: Any) -> tuple[int, Any]:
    params = {key: str(value) for key, value in query.items()}
    return await api.call("GET", f"{ACME}/customers/{identity}/export", who, params=params)


async def _set_consent(api: Api, address: str) -> None:
    status, body = await api.call(
        "PUT", f"{ACME}/consents/sms/{address}", json={"consent": "opt_out"}
    )
    assert status == 202, body


async def person_on_three_channels(api: Api, reader: TopicReader) -> dict[str, str]:
    """Bob serves one person on three channels; another web chat visitor writes too."""
    await api.register("bob", capacity=CHANNELS)
    texting = await sms(api, "my order has not arrived")
    assert (await reader.assignment(texting)).agent_id == "bob"
    await close(api, texting)
    for identity in (EMAIL, USER):
        status, body = await api.call(
            "POST", f"{ACME}/customers/{CUSTOMER}/identities", json={"identity": identity}
        )
        assert (status, body["status"]) == (202, "completed"), body
    mail = await email(api)
    await reader.assignment(mail)
    await close(api, mail)
    status, answer = await api.service.webchat(
        {
            "session_id": "ann-browser",
            "message_id": "m1",
            "text": "still nothing",
            "user_id": "42",
            "user_hash": hmac_hex(SECRETS["WEBCHAT_IDENTITY_SECRET"], b"42"),
        }
    )
    assert status == 202, answer
    chat = answer["event_id"]
    assert (await reader.assignment(chat)).agent_id == "bob"
    status, body = await api.call(
        "POST", f"{ACME}/conversations/{chat}/reply", "bob", json={"text": "Bob here, on it"}
    )
    assert status == 202, body
    reply_id = body["reply_id"]
    await _set_consent(api, PHONE)
    status, body = await api.call(  # and a stop of WhatsApp's marketing messages
        "PUT",
        f"{ACME}/consents/whatsapp/{PHONE}",
        json={"consent": "opt_out", "scope": "marketing"},
    )
    assert status == 202, body

    # Someone else, alongside: a message, an owner (an audit entry) and a consent.
    other = await api.customer_writes("other-browser", "o1", OTHER_TEXT)
    await reader.assignment(other)
    other_id = await api.pool.fetchval(
        "SELECT customer_id FROM conversations WHERE conversation_id = $1", other
    )
    status, _ = await api.call(
        "PUT", f"{ACME}/customers/{other_id}/owner", json={"agent_id": "bob"}
    )
    assert status == 202
    await _set_consent(api, OTHER_PHONE)
    await wait_until(
        lambda: api.pool.fetchval(
            "SELECT (SELECT count(*) FROM consents WHERE address = ANY($1::text[])) = 2"
            " AND EXISTS (SELECT 1 FROM marketing_consents WHERE address = $2)",
            [PHONE, OTHER_PHONE],
            PHONE,
        ),
        what="the consents",
    )
    await wait_until(
        lambda: api.pool.fetchval("SELECT 1 FROM messages WHERE message_id = $1", reply_id),
        what="the reply's message",
    )
    # Sent, its status moves no more: the exports compared below are taken one after another.
    await reply_sent(api.pool, reply_id)
    return {
        "sms": texting,
        "email": mail,
        "webchat": chat,
        "reply": reply_id,
        "other": other,
        "other_id": other_id,
    }


def _without_audit(document: dict[str, Any]) -> dict[str, Any]:
    """The export but its audit entries (each export adds its own)."""
    return {key: value for key, value in document.items() if key != "audit"}


async def test_the_export_holds_the_whole_person_and_nobody_else(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with (
        api_service(
            infrastructure.bootstrap_servers, database_url, channels_config(), SECRETS
        ) as api,
        TopicReader(api.service.config, ROUTING) as reader,
    ):
        scene = await person_on_three_channels(api, reader)

        status, export = await _export(api, CUSTOMER)
        assert status == 200, export
        assert export["customer_id"] == CUSTOMER
        assert export["next_cursor"] is None
        assert {i["identity"] for i in export["identities"]} == {CUSTOMER, EMAIL, USER}
        assert export["customer"]["last_agent_id"] == "bob"
        conversations = {c["conversation_id"]: c for c in export["conversations"]}
        assert set(conversations) == {scene["sms"], scene["email"], scene["webchat"]}
        assert {c["channel"] for c in conversations.values()} == {"sms", "email", "webchat"}
        for conversation in conversations.values():
            assert conversation["record"]["conversation_id"] == conversation["conversation_id"]
            (assignment,) = conversation["assignments"]
            assert assignment["agent_id"] == "bob"
            assert assignment["strategy"]
            assert assignment["offered_at"] is not None
            assert any(m["direction"] == "inbound" for m in conversation["messages"])
        texts = {m["text"] for c in conversations.values() for m in c["messages"]}
        assert {"my order has not arrived", "still nothing", "Bob here, on it"} <= texts
        assert any("Still waiting." in (text or "") for text in texts)
        (outbound,) = conversations[scene["webchat"]]["outbound"]
        assert (outbound["outbound_id"], outbound["agent_id"]) == (scene["reply"], "bob")
        assert outbound["status"]
        assert [
            (c["channel"], c["address"], c["consent"], c["scope"]) for c in export["consents"]
        ] == [
            ("sms", PHONE, "opt_out", "all"),
            ("whatsapp", PHONE, "opt_out", "marketing"),
        ]
        assert [c["address"] for c in export["consent_changes"]] == [PHONE, PHONE]
        actions = [entry["action"] for entry in export["audit"]]
        assert actions.count("customer.identity.link") == 2
        assert {"customer.consent.set", "customer.export"} <= set(actions)
        assert "customer.owner.set" not in actions  # the other customer's

        dumped = json.dumps(export)
        for planted in (OTHER_TEXT, scene["other"], scene["other_id"], OTHER_PHONE):
            assert planted not in dumped

        # By an identity: the same person, the same data.
        status, by_email = await _export(api, EMAIL)
        assert status == 200, by_email
        assert _without_audit(by_email) == _without_audit(export)
        assert len(by_email["audit"]) == len(export["audit"]) + 1

        # Paged by conversations: one a page, oldest first, the same three.
        pages, cursor = [], None
        while True:
            query: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
            status, page = await _export(api, USER, **query)
            assert status == 200, page
            assert len(page["conversations"]) == 1
            pages.append(page["conversations"][0])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == export["conversations"]
        # a cursor is the profile's: another customer's export refuses it
        status, first = await _export(api, CUSTOMER, limit=1)
        status, body = await _export(api, scene["other_id"], cursor=first["next_cursor"])
        assert status == 400, body

        # -- 3. admin only, known customers only, audited by digest ---------------------
        assert (await _export(api, CUSTOMER, "bob"))[0] == 403
        assert (await _export(api, CUSTOMER, "globex"))[0] == 403
        assert (await _export(api, "email:never-seen@example.org"))[0] == 404
        rows = await api.pool.fetch(
            "SELECT target, detail::text AS detail FROM audit_log"
            " WHERE action = 'customer.export' ORDER BY id"
        )
        link_target = next(
            e["target"] for e in export["audit"] if e["action"] == "customer.identity.link"
        )
        assert rows[0]["target"] == link_target
        assert link_target.startswith("customer h:")
        for row in rows:
            for value in (row["target"], row["detail"]):
                for address in (PHONE, "ann@example.org", CUSTOMER, EMAIL, USER):
                    assert address not in value
