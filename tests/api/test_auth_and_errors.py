"""Tokens, scopes and client errors on the real service: 401 vs 403, JSON 4xx, no 5xx."""

from __future__ import annotations

from tests.api.support import api_service
from tests.conftest import Infrastructure


async def test_tokens_scopes_and_client_errors(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        http = api.service.session
        ann = "/v1/domains/acme/agents/ann"

        # 401: no token, a malformed header, an unknown token; with the challenge.
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer nope"}):
            async with http.get(api.service.url(ann), headers=headers) as r:
                assert r.status == 401
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert "token" in (await r.json())["error"]

        # Unauthenticated surfaces stay open.
        for path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
            async with http.get(api.service.url(path)) as r:
                assert r.status == 200, path

        # 403: another domain's token; an agent token on admin-only or other agents' things.
        assert (await api.call("GET", ann, "globex"))[0] == 403
        assert (await api.call("GET", "/v1/domains/acme/queues", "globex"))[0] == 403
        status, body = await api.call("PUT", ann, "ann", json={"name": "Ann"})
        assert (status, body["error"]) == (403, "needs an admin token")
        status, _ = await api.call(
            "POST", "/v1/domains/acme/agents/bob/presence", "ann", json={"status": "online"}
        )
        assert status == 403
        assert (await api.call("GET", "/v1/domains/acme/agents/bob", "ann"))[0] == 403
        assert (await api.call("PUT", "/v1/domains/acme/customers/c1/owner", "ann"))[0] == 403
        assert (await api.call("GET", "/v1/domains/acme/stream?agent_id=bob", "ann"))[0] == 403
        status, _ = await api.call(
            "POST", "/v1/domains/acme/conversations/x/accept", "ann", json={"agent_id": "bob"}
        )
        assert status == 403

        # 404s: an unknown domain (for a token that may see every domain), agent, conversation.
        status, body = await api.call("GET", "/v1/domains/nowhere/queues", "bootstrap")
        assert (status, body) == (404, {"error": "unknown domain 'nowhere'"})
        assert (await api.call("GET", "/v1/domains/nowhere/queues", "admin"))[0] == 403
        status, body = await api.call("GET", "/v1/domains/acme/agents/zed", "admin")
        assert (status, body) == (404, {"error": "unknown agent 'zed'"})
        status, _ = await api.call("GET", "/v1/domains/acme/conversations/none", "admin")
        assert status == 404
        status, body = await api.call(
            "PUT", "/v1/domains/acme/customers/c1/owner", json={"agent_id": "zed"}
        )
        assert (status, body) == (404, {"error": "unknown agent 'zed'"})

        # 400s with the reason; 413; 405 as JSON.
        cases = [
            ("PUT", ann, b"{not json", "not valid JSON"),
            ("PUT", ann, b'{"capacity": {"fax": 1}}', "capacity"),
            ("PUT", ann, b'{"name": 3}', "name"),
            ("PUT", ann, b'{"surprise": true}', "surprise"),
            ("POST", ann + "/presence", b'{"status": "asleep"}', "status"),
            ("POST", ann + "/presence", b"{}", "status"),
            ("POST", "/v1/domains/acme/conversations/c/transfer", b"{}", "exactly one"),
            ("POST", "/v1/domains/acme/conversations/c/accept", b"{}", "agent_id"),
            ("POST", "/v1/domains/acme/conversations/c/reply", b'{"text": " "}', "text"),
            ("PUT", "/v1/domains/acme/agents/bad%20id", b"{}", "agent id"),
        ]
        for method, path, raw, reason in cases:
            status, body = await api.call(
                method, path, data=raw, headers={"Content-Type": "application/json"}
            )
            assert status == 400, (path, raw, body)
            assert reason in body["error"], (path, raw, body)
        status, body = await api.call("PUT", ann, data=b"x" * (70 * 1024))
        assert status == 413
        assert "error" in body
        status, body = await api.call("PATCH", ann)
        assert status == 405
        assert "error" in body
        status, body = await api.call("GET", "/v1/domains/acme/conversations/c?limit=0", "admin")
        assert status == 400
        assert "limit" in body["error"]

        # Nothing above reached the router: no agent was registered.
        assert await api.pool.fetchval("SELECT count(*) FROM agents") == 0


async def test_the_token_command_prints_a_working_token_once(
    infrastructure: Infrastructure, database_url: str, tmp_path: object
) -> None:
    import asyncio
    import hashlib
    import io
    import os
    from contextlib import redirect_stdout
    from pathlib import Path
    from unittest import mock

    from tools.cli import main

    assert isinstance(tmp_path, Path)
    config = tmp_path / "switchboard.toml"
    config.write_text("[domains.acme]\n")
    out = io.StringIO()
    env = {**os.environ, "DATABASE_URL": database_url, "SWITCHBOARD_CONFIG": str(config)}

    def create() -> int:
        with mock.patch.dict(os.environ, env, clear=True), redirect_stdout(out):
            return main(
                ["token", "create", "--domain", "acme", "--scope", "agent", "--agent-id", "ann"]
            )

    assert await asyncio.to_thread(create) == 0
    token = out.getvalue().strip()
    assert token.startswith("sbt_")
    assert len(token) > 40
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT domain, scope, agent_id, token_sha256 FROM api_tokens")
    finally:
        await conn.close()
    assert dict(row) == {
        "domain": "acme",
        "scope": "agent",
        "agent_id": "ann",
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
    }
    # An agent token without --agent-id is refused.
    with mock.patch.dict(os.environ, env, clear=True):
        assert main(["token", "create", "--domain", "acme", "--scope", "agent"]) == 2
