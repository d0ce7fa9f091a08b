"""The audit log on the real service: one entry per administrative action, in the action's
transaction, readable by the domain's admins (their domain's) and platform principals
(every entry), never holding a secret or a customer's data."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import asyncpg
import pytest

from router.api.auth import token_sha256
from runtime import audit
from runtime.logging import fingerprint
from schemas import topics
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure

PHONE_CUSTOMER = "phone:+14155552671"


async def _id_of(api: Api, who: str) -> str:
    token_id: str = await api.pool.fetchval(
        "SELECT token_id FROM api_tokens WHERE token_sha256 = $1", token_sha256(api.tokens[who])
    )
    return token_id


async def _entries(api: Api, path: str, who: str = "admin") -> list[dict[str, Any]]:
    """Every entry of the listing, page after page of two."""
    entries: list[dict[str, Any]] = []
    after = 0
    separator = "&" if "?" in path else "?"
    while True:
        status, page = await api.call("GET", f"{path}{separator}limit=2&after={after}", who)
        assert status == 200, page
        entries += page["entries"]
        if page["next_after"] is None:
            return entries
        assert page["next_after"] == page["entries"][-1]["id"]
        after = page["next_after"]


async def _dead_letter(api: Api, domain: str) -> int:
    """A dead letter of ``domain`` read from agents.events (a record no router can read)."""
    letter_id: int = await api.pool.fetchval(
        'INSERT INTO dead_letters (topic, partition, "offset", reason, key, value, domain)'
        " VALUES ($1, 0, 0, 'undecodable', $2, '\\x7b'::bytea, $3) RETURNING id",
        api.service.config.topic(topics.AGENTS),
        domain.encode(),
        domain,
    )
    return letter_id


async def test_every_administrative_action_is_audited(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        admin = await _id_of(api, "admin")
        seeded = await api.pool.fetchval("SELECT max(id) FROM audit_log")

        # Agents: registered, then updated once the router stored it.
        profile = {"name": "Ann Example", "skills": ["en"], "queues": ["support"]}
        await api.register("ann", **profile)
        status, _ = await api.call(
            "PUT", "/v1/domains/acme/agents/ann", json={**profile, "capacity": {"email": 2}}
        )
        assert status == 202
        # Customer owners: set and cleared, the customer named by a digest.
        owner = f"/v1/domains/acme/customers/{PHONE_CUSTOMER}/owner"
        status, set_owner = await api.call("PUT", owner, json={"agent_id": "ann"})
        assert status == 202, set_owner
        status, cleared = await api.call("DELETE", owner)
        assert status == 202, cleared
        # Tokens.
        status, created = await api.call(
            "POST",
            "/v1/domains/acme/tokens",
            json={"scope": "agent", "agent_id": "ann", "name": "Ann Example's phone"},
        )
        assert status == 201
        token = created["token_id"]
        assert (await api.call("POST", f"/v1/domains/acme/tokens/{token}/rotate"))[0] == 200
        assert (await api.call("DELETE", f"/v1/domains/acme/tokens/{token}"))[0] == 204
        assert (await api.call("DELETE", f"/v1/domains/acme/tokens/{token}"))[0] == 204
        # A dead letter re-driven.
        letter = await _dead_letter(api, "acme")
        status, redriven = await api.call("POST", f"/v1/domains/acme/dead-letters/{letter}/redrive")
        assert status == 202, redriven

        rows = await api.pool.fetch(
            "SELECT actor, action, domain, target, detail::text AS detail FROM audit_log"
            " WHERE id > $1 ORDER BY id",
            seeded,
        )
        entries = [(r["actor"], r["action"], r["domain"], r["target"]) for r in rows]
        customer = f"customer {fingerprint(PHONE_CUSTOMER)}"
        assert entries == [
            (admin, "agent.register", "acme", "agent ann"),
            (admin, "agent.update", "acme", "agent ann"),
            (admin, "customer.owner.set", "acme", customer),
            (admin, "customer.owner.clear", "acme", customer),
            (admin, "token.create", "acme", f"token {token}"),
            (admin, "token.rotate", "acme", f"token {token}"),
            (admin, "token.revoke", "acme", f"token {token}"),
            (admin, "dead_letter.redrive", "acme", f"dead letter {letter}"),
        ]
        details = [json.loads(r["detail"]) for r in rows]
        assert details[1] == {
            "event_id": details[1]["event_id"],
            "skills": ["en"],
            "queues": ["support"],
            "capacity": {"email": 2},
        }
        assert details[2] == {"event_id": set_owner["event_id"], "agent_id": "ann"}
        assert details[3] == {"event_id": cleared["event_id"]}
        assert details[4] == {"scope": "agent", "agent_id": "ann", "expires_at": None}
        assert details[5] == {"grace_seconds": 0}
        assert details[7] == {
            "topic": api.service.config.topic(topics.AGENTS),
            "partition": 0,
            "offset": 0,
            "redrives": 1,
        }
        # No name, no customer id, no phone number anywhere in the log.
        everything = "\n".join(
            r["row"] for r in await api.pool.fetch("SELECT t::text AS row FROM audit_log t")
        )
        for personal in ("Ann Example", PHONE_CUSTOMER, "+14155552671", "4155552671"):
            assert personal not in everything


async def test_an_action_whose_entry_cannot_be_written_is_not_taken(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        await api.register("ann")
        letter = await _dead_letter(api, "acme")
        named = await _id_of(api, "bob")
        await api.pool.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$;"
            " CREATE TRIGGER refuse BEFORE INSERT ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        entries = await api.pool.fetchval("SELECT count(*) FROM audit_log")
        tokens = await api.pool.fetchval("SELECT count(*) FROM api_tokens")
        for method, path, body in (
            ("PUT", "/v1/domains/acme/agents/zed", {"capacity": {"webchat": 1}}),
            ("PUT", "/v1/domains/acme/customers/c1/owner", {"agent_id": "ann"}),
            ("DELETE", "/v1/domains/acme/customers/c1/owner", None),
            ("POST", "/v1/domains/acme/tokens", {"scope": "admin", "name": "x"}),
            ("POST", f"/v1/domains/acme/tokens/{named}/rotate", None),
            ("DELETE", f"/v1/domains/acme/tokens/{named}", None),
            ("POST", f"/v1/domains/acme/dead-letters/{letter}/redrive", None),
        ):
            status, refused = await api.call(method, path, json=body)
            assert (status, refused) == (503, {"error": "database unavailable, retry later"})

        # Nothing was taken: no token, rotation nor revocation, no re-drive, no event.
        assert await api.pool.fetchval("SELECT count(*) FROM api_tokens") == tokens
        unchanged = (
            "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL AND rotated_at IS NULL"
        )
        assert await api.pool.fetchval(unchanged) == tokens
        redrives = "SELECT redrives FROM dead_letters WHERE id = $1"
        assert await api.pool.fetchval(redrives, letter) == 0
        assert await api.pool.fetchval("SELECT count(*) FROM audit_log") == entries
        status, _ = await api.call("GET", "/v1/domains/acme/queues", "bob")
        assert status == 200
        # agents.events is ordered per domain: had zed's registration or the owner been
        # published, the router would have applied them before bob's registration.
        await api.pool.execute("DROP TRIGGER refuse ON audit_log")
        await api.register("bob")
        assert await api.pool.fetchval(
            "SELECT array_agg(agent_id ORDER BY agent_id) FROM agents"
        ) == ["ann", "bob"]
        assert (
            await api.pool.fetchval(
                "SELECT count(*) FROM customers WHERE owner_agent_id IS NOT NULL"
            )
            == 0
        )


async def test_admins_read_their_domain_and_platform_principals_every_entry(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        admin, globex, platform = [await _id_of(api, w) for w in ("admin", "globex", "platform")]
        for who, domain in (("admin", "acme"), ("globex", "globex")):
            status, _ = await api.call(
                "POST", f"/v1/domains/{domain}/tokens", who, json={"scope": "admin", "name": who}
            )
            assert status == 201
        status, _ = await api.call("POST", "/v1/tokens", "bootstrap", json={"name": "ops"})
        assert status == 201

        acme = await _entries(api, "/v1/domains/acme/audit")
        assert {e["domain"] for e in acme} == {"acme"}
        # The seeded tokens (the CLI's function), then the admin's own.
        assert [(e["actor"], e["action"]) for e in acme] == [
            ("cli", "token.create"),
            ("cli", "token.create"),
            ("cli", "token.create"),
            (admin, "token.create"),
        ]
        assert all(isinstance(e["at"], float) and e["id"] > 0 for e in acme)
        globex_entries = await _entries(api, "/v1/domains/globex/audit", "globex")
        assert [(e["actor"], e["domain"]) for e in globex_entries] == [
            ("cli", "globex"),
            (globex, "globex"),
        ]
        assert (await api.call("GET", "/v1/domains/acme/audit", "globex"))[0] == 403
        # A platform token reads a domain's through the domain's path, and every entry.
        assert await _entries(api, "/v1/domains/acme/audit", "platform") == acme
        everything = await _entries(api, "/v1/audit", "platform")
        assert len(everything) == 8
        assert [e["domain"] for e in everything].count(None) == 2
        assert everything[-1]["actor"] == "bootstrap"
        assert await _entries(api, "/v1/audit?domain=globex", "bootstrap") == globex_entries
        # Filtered by action.
        mine = await _entries(api, "/v1/audit?action=token.create", "platform")
        assert len(mine) == 8
        assert await _entries(api, "/v1/audit?action=agent.register", "platform") == []
        for bad in (
            "?action=Token",
            "?action=a..b",
            "?limit=0",
            "?limit=1001",
            "?after=-1",
            "?domain=a%20b",
        ):
            status, refused = await api.call("GET", "/v1/audit" + bad, "platform")
            assert status == 400, (bad, refused)
        assert platform in {e["target"].split()[-1] for e in everything}


async def test_record_action_refuses_secrets_and_personal_data(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for detail in (
            {"token": "x"},
            {"name": "Ann"},
            {"phone": "+14155552671"},
            {"Email": "a@example.org"},
            {"text": "hello"},
            {"previous": "sbt_abcdef"},
            {"nested": [{"deep": "sbt_abcdef"}]},
        ):
            with pytest.raises(audit.UnsafeDetail):
                await audit.record_action(
                    conn, actor="cli", action="test.refuse", domain=None, target="x", detail=detail
                )
        await audit.record_action(
            conn,
            actor="cli",
            action="test.accept",
            domain="acme",
            target="x",
            detail={"capacity": {"email": 2}},
        )
        page = await audit.list_actions(conn, domain=None)
        assert [(e.action, e.detail) for e in page.entries] == [
            ("test.accept", {"capacity": {"email": 2}})
        ]
    finally:
        await conn.close()


async def test_a_redrive_by_the_command_line_is_audited(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        letter = await _dead_letter(api, "globex")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tools.cli",
            "dead-letters",
            "redrive",
            str(letter),
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
                "SWITCHBOARD_LOG_FORMAT": "json",
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert json.loads(out)["redrives"] == 1
        row = await api.pool.fetchrow(
            "SELECT actor, action, domain, target FROM audit_log WHERE action = 'dead_letter.redrive'"
        )
        assert tuple(row) == ("cli", "dead_letter.redrive", "globex", f"dead letter {letter}")
        entries = await _entries(api, "/v1/domains/globex/audit", "globex")
        assert entries[-1]["action"] == "dead_letter.redrive"
