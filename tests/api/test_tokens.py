"""Tokens with a lifecycle on the real service: create, list, rotate, revoke, expire; who
may manage which; ``last_used_at`` written at most once a minute; secrets shown once and
never listed nor logged."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from router.api.auth import Authenticator, Scope, create_token, token_sha256
from router.api.config import AuthMode
from router.api.routes import API
from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.logcapture import captured_logs, lines_of

ACME = "/v1/domains/acme/tokens"
GLOBEX = "/v1/domains/globex/tokens"
PLATFORM = "/v1/tokens"
VIEW_FIELDS = {
    "token_id",
    "scope",
    "domain",
    "agent_id",
    "name",
    "created_at",
    "created_by",
    "expires_at",
    "last_used_at",
    "rotated_at",
    "revoked_at",
    "revoked_by",
}


async def _works(api: Api, token: str, path: str = "/v1/domains/acme/queues") -> int:
    status, _ = await api.call("GET", path, None, headers={"Authorization": f"Bearer {token}"})
    return status


async def _error(api: Api, token: str, path: str = "/v1/domains/acme/queues") -> tuple[int, Any]:
    return await api.call("GET", path, None, headers={"Authorization": f"Bearer {token}"})


async def _token_id_of(api: Api, who: str) -> str:
    digest = token_sha256(api.tokens[who])
    token_id: str = await api.pool.fetchval(
        "SELECT token_id FROM api_tokens WHERE token_sha256 = $1", digest
    )
    return token_id


# -- lifecycle ------------------------------------------------------------------------


async def test_a_domain_admin_creates_lists_rotates_and_revokes_tokens(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        admin_id = await _token_id_of(api, "admin")

        # Created: 201 with the secret, which works at once.
        status, created = await api.call(
            "POST", ACME, json={"scope": "agent", "agent_id": "ann", "name": "ann's desk"}
        )
        assert status == 201, created
        assert set(created) == VIEW_FIELDS | {"token"}
        assert created["token"].startswith("sbt_")
        assert (created["scope"], created["domain"], created["agent_id"]) == (
            "agent",
            "acme",
            "ann",
        )
        assert (created["created_by"], created["expires_at"], created["revoked_at"]) == (
            admin_id,
            None,
            None,
        )
        token_id, secret = created["token_id"], created["token"]
        assert await _works(api, secret, "/v1/domains/acme/agents/ann") == 404  # no such agent yet
        assert await _works(api, secret) == 200

        # Listed and shown without the secret, nor its hash.
        status, page = await api.call("GET", ACME)
        assert status == 200
        listed = {t["token_id"]: t for t in page["tokens"]}
        assert set(listed[token_id]) == VIEW_FIELDS
        assert {t["domain"] for t in page["tokens"]} == {"acme"}
        assert admin_id in listed
        assert page["next_after"] is None
        status, shown = await api.call("GET", f"{ACME}/{token_id}")
        assert (status, set(shown)) == (200, VIEW_FIELDS)
        for body in (page, shown):
            text = json.dumps(body)
            assert secret not in text
            assert token_sha256(secret) not in text
        # Paged by id.
        status, first = await api.call("GET", ACME + "?limit=1")
        assert status == 200
        assert len(first["tokens"]) == 1
        status, second = await api.call("GET", f"{ACME}?limit=1&after={first['next_after']}")
        assert second["tokens"][0]["token_id"] > first["next_after"]

        # Rotated: same id, new secret; the old one stops working at once.
        status, rotated = await api.call("POST", f"{ACME}/{token_id}/rotate")
        assert status == 200, rotated
        assert rotated["token_id"] == token_id
        assert rotated["token"] != secret
        assert rotated["rotated_at"] is not None
        assert await _error(api, secret) == (401, {"error": "unknown or revoked token"})
        assert await _works(api, rotated["token"]) == 200

        # With a grace period, both work until it ends.
        status, graced = await api.call(
            "POST", f"{ACME}/{token_id}/rotate", json={"grace_seconds": 300}
        )
        assert status == 200, graced
        assert await _works(api, rotated["token"]) == 200
        assert await _works(api, graced["token"]) == 200
        await api.pool.execute(
            "UPDATE api_tokens SET previous_valid_until = now() - interval '1 second'"
            " WHERE token_id = $1",
            token_id,
        )
        assert await _works(api, rotated["token"]) == 401
        assert await _works(api, graced["token"]) == 200

        # Revoked: 204, at once, for good; again 204; a revoked token is not rotated.
        status, _ = await api.call("DELETE", f"{ACME}/{token_id}")
        assert status == 204
        assert await _error(api, graced["token"]) == (401, {"error": "unknown or revoked token"})
        status, _ = await api.call("DELETE", f"{ACME}/{token_id}")
        assert status == 204
        status, shown = await api.call("GET", f"{ACME}/{token_id}")
        assert (shown["revoked_by"], shown["revoked_at"] is not None) == (admin_id, True)
        status, refused = await api.call("POST", f"{ACME}/{token_id}/rotate")
        assert (status, refused) == (409, {"error": "the token is revoked"})
        revocations = await api.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'token.revoke' AND target = $1",
            f"token {token_id}",
        )
        assert revocations == 1

        # Unknown and malformed ids.
        assert (await api.call("GET", f"{ACME}/0123456789ab"))[0] == 404
        assert (await api.call("DELETE", f"{ACME}/0123456789ab"))[0] == 404
        assert (await api.call("POST", f"{ACME}/0123456789ab/rotate"))[0] == 404
        assert (await api.call("GET", f"{ACME}/NOT-AN-ID"))[0] == 400
        assert (await api.call("GET", ACME + "?after=zz"))[0] == 400


async def test_tokens_expire_and_expiry_bounds_are_enforced(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        status, created = await api.call(
            "POST", ACME, json={"scope": "admin", "name": "ci", "expires_in_seconds": 3600}
        )
        assert status == 201, created
        assert 3590 < created["expires_at"] - created["created_at"] <= 3600
        assert await _works(api, created["token"]) == 200
        await api.pool.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_id = $1",
            created["token_id"],
        )
        status, body = await _error(api, created["token"])
        assert (status, body) == (401, {"error": "expired token"})
        status, refused = await api.call("POST", f"{ACME}/{created['token_id']}/rotate")
        assert status == 409
        assert "expired" in refused["error"]

        status, dated = await api.call(
            "POST", ACME, json={"scope": "admin", "name": "dated", "expires_at": 4102444800.0}
        )
        assert status == 400, dated  # 2100: beyond 366 days
        refusals = [
            ({"scope": "admin", "name": "x", "expires_in_seconds": 59}, "expires_in_seconds"),
            ({"scope": "admin", "name": "x", "expires_in_seconds": 366 * 86400 + 1}, "expires"),
            ({"scope": "admin", "name": "x", "expires_at": 1_000_000.0}, "expires_at"),
            (
                {"scope": "admin", "name": "x", "expires_in_seconds": 600, "expires_at": 2e9},
                "at most one",
            ),
            ({"scope": "admin", "name": ""}, "name"),
            ({"scope": "admin", "name": "x" * 101}, "name"),
            ({"scope": "admin", "name": "a\u0007b"}, "name"),
            ({"scope": "agent", "name": "x"}, "agent_id"),
            ({"scope": "admin", "name": "x", "agent_id": "ann"}, "agent_id"),
            ({"scope": "platform", "name": "x"}, "scope"),
            ({"scope": "admin"}, "name"),
        ]
        before = await api.pool.fetchval("SELECT count(*) FROM api_tokens")
        for body, reason in refusals:
            status, refused = await api.call("POST", ACME, json=body)
            assert status == 400, (body, refused)
            assert reason in refused["error"], (body, refused)
        assert (await api.call("POST", f"{ACME}/x/rotate", json={"grace_seconds": 5}))[0] == 400
        status, _ = await api.call(
            "POST", f"{ACME}/0123456789ab/rotate", json={"grace_seconds": 86401}
        )
        assert status == 400
        assert await api.pool.fetchval("SELECT count(*) FROM api_tokens") == before


# -- who may manage which -------------------------------------------------------------


async def test_tokens_are_managed_by_their_domain_admin_or_a_platform_token(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        acme_admin = await _token_id_of(api, "admin")
        globex_admin = await _token_id_of(api, "globex")
        platform = await _token_id_of(api, "platform")
        rows_before = await api.pool.fetchval("SELECT count(*) FROM api_tokens")
        body = {"scope": "admin", "name": "x"}

        # Another domain's admin: 403 on every verb; and its own path does not reach ours.
        for method, path in (
            ("POST", ACME),
            ("GET", ACME),
            ("GET", f"{ACME}/{acme_admin}"),
            ("POST", f"{ACME}/{acme_admin}/rotate"),
            ("DELETE", f"{ACME}/{acme_admin}"),
        ):
            status, refused = await api.call(method, path, "globex", json=body)
            assert (status, refused) == (403, {"error": "the token belongs to another domain"})
        for method, path in (
            ("GET", f"{GLOBEX}/{acme_admin}"),
            ("POST", f"{GLOBEX}/{acme_admin}/rotate"),
            ("DELETE", f"{GLOBEX}/{acme_admin}"),
        ):
            assert (await api.call(method, path, "globex"))[0] == 404, (method, path)
        assert await _works(api, api.tokens["admin"]) == 200

        # An agent token manages no token, not even its own.
        ann = await _token_id_of(api, "ann")
        for method, path in (
            ("POST", ACME),
            ("GET", ACME),
            ("GET", f"{ACME}/{ann}"),
            ("POST", f"{ACME}/{ann}/rotate"),
            ("DELETE", f"{ACME}/{ann}"),
            ("GET", "/v1/domains/acme/audit"),
        ):
            status, refused = await api.call(method, path, "ann", json=body)
            assert (status, refused) == (403, {"error": "needs an admin token"}), (method, path)

        # Platform tokens, the platform's audit log: platform principals only.
        for who in ("admin", "ann"):
            for method, path in (
                ("POST", PLATFORM),
                ("GET", PLATFORM),
                ("GET", f"{PLATFORM}/{platform}"),
                ("POST", f"{PLATFORM}/{platform}/rotate"),
                ("DELETE", f"{PLATFORM}/{platform}"),
                ("GET", "/v1/audit"),
            ):
                status, refused = await api.call(method, path, who, json={"name": "x"})
                assert (status, refused) == (403, {"error": "needs a platform token"})
        for path in (PLATFORM, "/v1/audit", "/v1/tokens/abc"):
            status, refused = await api.call("GET", path, None)
            assert status == 401
            assert refused == {"error": "missing bearer token"}
        status, refused = await api.call("PATCH", PLATFORM, "platform")
        assert status == 405
        assert "error" in refused
        assert await api.pool.fetchval("SELECT count(*) FROM api_tokens") == rows_before

        # The bootstrap token creates a platform token, which is an admin of every domain.
        status, created = await api.call("POST", PLATFORM, "bootstrap", json={"name": "ops"})
        assert status == 201, created
        assert (created["scope"], created["domain"], created["created_by"]) == (
            "platform",
            None,
            "bootstrap",
        )
        ops = created["token"]
        assert await _works(api, ops) == 200
        assert await _works(api, ops, "/v1/domains/globex/queues") == 200
        assert await _works(api, ops, "/v1/audit") == 200
        status, made = await api.call(
            "POST", GLOBEX, None, json=body, headers={"Authorization": f"Bearer {ops}"}
        )
        assert (status, made["domain"], made["created_by"]) == (201, "globex", created["token_id"])

        # /v1/tokens lists platform tokens only; a domain's path never shows them.
        status, page = await api.call("GET", PLATFORM, "platform")
        assert status == 200
        assert {t["token_id"] for t in page["tokens"]} == {platform, created["token_id"]}
        assert {t["domain"] for t in page["tokens"]} == {None}
        assert (await api.call("GET", f"{ACME}/{platform}", "platform"))[0] == 404
        assert (await api.call("GET", f"{PLATFORM}/{acme_admin}", "platform"))[0] == 404

        # A platform token rotates and revokes platform tokens, and a domain's.
        status, rotated = await api.call(
            "POST", f"{PLATFORM}/{created['token_id']}/rotate", "platform"
        )
        assert status == 200, rotated
        assert await _works(api, ops) == 401
        assert await _works(api, rotated["token"]) == 200
        assert (await api.call("DELETE", f"{PLATFORM}/{created['token_id']}", "platform"))[0] == 204
        assert await _works(api, rotated["token"]) == 401
        assert (await api.call("DELETE", f"{GLOBEX}/{globex_admin}", "platform"))[0] == 204
        assert await _works(api, api.tokens["globex"], "/v1/domains/globex/queues") == 401


# -- last use -------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request(token: str) -> web.Request:
    return make_mocked_request("GET", "/", headers={"Authorization": f"Bearer {token}"})


async def test_last_use_is_written_at_most_once_a_minute_off_the_request(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            token_id, token = await create_token(conn, domain="acme", scope=Scope.ADMIN)
        clock = _Clock()
        auth = Authenticator(AuthMode.TOKENS, None, clock=clock)

        async def last_use() -> Any:
            return await pool.fetchval(
                "SELECT last_used_at FROM api_tokens WHERE token_id = $1", token_id
            )

        async def use() -> None:
            principal = await auth.principal(_request(token), pool, "acme")
            assert principal.actor == token_id
            await auth.settle()

        await use()
        first = await last_use()
        assert first is not None

        # Within the minute: no write at all (the column, emptied, stays empty).
        await pool.execute(
            "UPDATE api_tokens SET last_used_at = NULL WHERE token_id = $1", token_id
        )
        clock.now += 59
        await use()
        await use()
        assert await last_use() is None

        # A minute later: written again.
        clock.now += 2
        await use()
        assert await last_use() is not None

        # Another process (its own memory) finds a recent write and leaves it.
        recent = await last_use()
        other = Authenticator(AuthMode.TOKENS, None, clock=clock)
        await other.principal(_request(token), pool, "acme")
        await other.settle()
        assert await last_use() == recent
        await pool.execute(
            "UPDATE api_tokens SET last_used_at = now() - interval '2 minutes' WHERE token_id = $1",
            token_id,
        )
        stale = await last_use()
        third = Authenticator(AuthMode.TOKENS, None, clock=clock)
        await third.principal(_request(token), pool, "acme")
        await third.settle()
        assert await last_use() > stale

        # An expired token writes nothing.
        await pool.execute(
            "UPDATE api_tokens SET last_used_at = NULL, expires_at = now() WHERE token_id = $1",
            token_id,
        )
        clock.now += 120
        with pytest.raises(web.HTTPUnauthorized):
            await auth.principal(_request(token), pool, "acme")
        await auth.settle()
        assert await last_use() is None
    finally:
        await pool.close()


async def test_the_service_shows_when_a_token_was_last_used(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        ann = await _token_id_of(api, "ann")
        status, shown = await api.call("GET", f"{ACME}/{ann}")
        assert shown["last_used_at"] is None
        assert await _works(api, api.tokens["ann"], "/v1/domains/acme/agents/ann") == 404
        await api.service.app[API].auth.settle()
        status, shown = await api.call("GET", f"{ACME}/{ann}")
        assert status == 200
        assert shown["last_used_at"] is not None
        assert shown["last_used_at"] >= shown["created_at"]


# -- secrets --------------------------------------------------------------------------


async def test_secrets_are_never_listed_stored_or_logged(
    infrastructure: Infrastructure, database_url: str
) -> None:
    with captured_logs(secrets=[]) as buffer:
        async with api_service(infrastructure.bootstrap_servers, database_url) as api:
            status, created = await api.call("POST", ACME, json={"scope": "admin", "name": "a"})
            assert status == 201
            status, rotated = await api.call(
                "POST", f"{ACME}/{created['token_id']}/rotate", json={"grace_seconds": 60}
            )
            assert status == 200
            status, platform = await api.call("POST", PLATFORM, "platform", json={"name": "p"})
            assert status == 201
            secrets = [created["token"], rotated["token"], platform["token"], *api.tokens.values()]
            for secret in secrets:
                assert await _works(api, secret) in (200, 403)  # authenticated
            assert (await api.call("DELETE", f"{ACME}/{created['token_id']}"))[0] == 204
            listings = [
                (await api.call("GET", ACME))[1],
                (await api.call("GET", PLATFORM, "platform"))[1],
                (await api.call("GET", "/v1/audit", "platform"))[1],
            ]
            stored = await api.pool.fetch(
                "SELECT t::text AS row FROM audit_log t UNION ALL"
                " SELECT (t.token_id, t.name, t.created_by, t.revoked_by)::text FROM api_tokens t"
            )
    logged = buffer.getvalue()
    events = {line["event"] for line in lines_of(buffer)}
    assert {"token_created", "token_rotated", "token_revoked"} <= events
    assert created["token_id"] in logged
    texts = [logged, json.dumps(listings), *(row["row"] for row in stored)]
    for secret in secrets:
        for text in texts:
            assert secret not in text
            assert token_sha256(secret) not in text


# -- the CLI --------------------------------------------------------------------------


async def _switchboard(database_url: str, config: str, *arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        *arguments,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "SWITCHBOARD_CONFIG": config,
            "SWITCHBOARD_LOG_FORMAT": "json",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_token_commands_create_list_rotate_and_revoke(
    database_url: str, tmp_path: Any
) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text("[domains.acme]\n")

    async def run(*arguments: str) -> tuple[int, str, str]:
        return await _switchboard(database_url, str(config), "token", *arguments)

    code, out, err = await run("create", "--platform", "--name", "ops", "--expires-in", "90d")
    assert code == 0, err
    platform_secret = out.strip()
    assert platform_secret.startswith("sbt_")
    assert "of every domain" in err
    code, out, err = await run(
        "create", "--domain", "acme", "--scope", "agent", "--agent-id", "ann", "--expires-in", "12h"
    )
    assert code == 0, err
    agent_secret = out.strip()

    conn = await asyncpg.connect(database_url)
    try:
        rows = {
            r["scope"]: r
            for r in await conn.fetch(
                "SELECT token_id, scope, domain, agent_id, created_by, token_sha256,"
                " extract(epoch FROM expires_at - created_at) AS lifetime FROM api_tokens"
            )
        }
        assert set(rows) == {"platform", "agent"}
        assert (rows["platform"]["domain"], rows["platform"]["created_by"]) == (None, "cli")
        assert rows["platform"]["token_sha256"] == token_sha256(platform_secret)
        assert abs(float(rows["platform"]["lifetime"]) - 90 * 86400) < 5
        assert abs(float(rows["agent"]["lifetime"]) - 12 * 3600) < 5
        platform_id, agent_id = rows["platform"]["token_id"], rows["agent"]["token_id"]

        # list: JSON, never a secret; filtered by domain or platform.
        code, out, err = await run("list")
        assert code == 0, err
        page = json.loads(out)
        assert {t["token_id"] for t in page["tokens"]} == {platform_id, agent_id}
        assert platform_secret not in out
        assert agent_secret not in out
        assert "sha256" not in out
        code, out, _ = await run("list", "--platform")
        assert [t["token_id"] for t in json.loads(out)["tokens"]] == [platform_id]
        code, out, _ = await run("list", "--domain", "acme")
        assert [t["token_id"] for t in json.loads(out)["tokens"]] == [agent_id]

        # rotate: a new secret on stdout alone; the stored hash follows it.
        code, out, err = await run("rotate", agent_id, "--grace", "5m")
        assert code == 0, err
        rotated = out.strip()
        assert rotated.startswith("sbt_")
        assert rotated != agent_secret
        row = await conn.fetchrow(
            "SELECT token_sha256, previous_sha256,"
            " extract(epoch FROM previous_valid_until - rotated_at) AS grace"
            " FROM api_tokens WHERE token_id = $1",
            agent_id,
        )
        assert row["token_sha256"] == token_sha256(rotated)
        assert row["previous_sha256"] == token_sha256(agent_secret)
        assert abs(float(row["grace"]) - 300) < 5

        # revoke: idempotent; unknown ids exit 1; a revoked token is not rotated.
        for _ in range(2):
            code, out, err = await run("revoke", agent_id)
            assert (code, out) == (0, ""), err
            assert "revoked" in err
        revoked = await conn.fetchrow(
            "SELECT revoked_at IS NOT NULL AS revoked, revoked_by FROM api_tokens"
            " WHERE token_id = $1",
            agent_id,
        )
        assert (revoked["revoked"], revoked["revoked_by"]) == (True, "cli")
        code, _, err = await run("rotate", agent_id)
        assert code == 1
        assert "revoked" in err
        code, _, err = await run("revoke", "0123456789ab")
        assert code == 1
        assert "no token 0123456789ab" in err

        # Refusals before anything is written.
        for arguments in (
            ("create", "--platform", "--domain", "acme"),
            ("create", "--domain", "acme"),
            ("create", "--domain", "nowhere", "--scope", "admin"),
            ("create", "--domain", "acme", "--scope", "admin", "--expires-in", "30s"),
            ("create", "--domain", "acme", "--scope", "admin", "--expires-in", "400d"),
            ("rotate", platform_id, "--grace", "2d"),
            ("revoke", "not-an-id"),
        ):
            code, _, err = await run(*arguments)
            assert code == 2, (arguments, err)
        code, _, err = await run(
            "create", "--domain", "acme", "--scope", "admin", "--expires-in", "soon"
        )
        assert code == 2
        assert "duration" in err
        assert await conn.fetchval("SELECT count(*) FROM api_tokens") == 2

        # Each change is audited as the command line's.
        entries = [
            tuple(r)
            for r in await conn.fetch(
                "SELECT actor, action, domain, target FROM audit_log ORDER BY id"
            )
        ]
        assert entries == [
            ("cli", "token.create", None, f"token {platform_id}"),
            ("cli", "token.create", "acme", f"token {agent_id}"),
            ("cli", "token.rotate", "acme", f"token {agent_id}"),
            ("cli", "token.revoke", "acme", f"token {agent_id}"),
        ]
    finally:
        await conn.close()


async def test_principals_name_their_actor_and_platform_ones_pass_everywhere(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            admin_id, admin = await create_token(conn, domain="acme", scope=Scope.ADMIN)
            platform_id, platform = await create_token(conn, domain=None, scope=Scope.PLATFORM)
        with pytest.raises(ValueError, match="platform"):
            async with pool.acquire() as conn:
                await create_token(conn, domain="acme", scope=Scope.PLATFORM)

        local = await Authenticator(AuthMode.DISABLED, None).platform_principal(
            make_mocked_request("GET", "/"), pool
        )
        assert (local.actor, local.is_platform, local.is_admin) == ("local", True, True)

        auth = Authenticator(AuthMode.TOKENS, "the-bootstrap-secret")
        bootstrap = await auth.platform_principal(_request("the-bootstrap-secret"), pool)
        assert (bootstrap.actor, bootstrap.is_platform, bootstrap.domain) == (
            "bootstrap",
            True,
            None,
        )
        for domain in ("acme", "globex", "anything"):
            principal = await auth.principal(_request(platform), pool, domain)
            assert (principal.actor, principal.is_admin, principal.is_platform) == (
                platform_id,
                True,
                True,
            )
        assert (await auth.platform_principal(_request(platform), pool)).actor == platform_id

        acme = await auth.principal(_request(admin), pool, "acme")
        assert (acme.actor, acme.is_admin, acme.is_platform) == (admin_id, True, False)
        with pytest.raises(web.HTTPForbidden) as refused:
            await auth.platform_principal(_request(admin), pool)
        assert refused.value.text == '{"error":"needs a platform token"}'
        with pytest.raises(web.HTTPUnauthorized):
            await auth.platform_principal(make_mocked_request("GET", "/"), pool)
        with pytest.raises(web.HTTPUnauthorized):
            await auth.platform_principal(_request("sbt_unknown"), pool)
        await auth.settle()
    finally:
        await pool.close()
