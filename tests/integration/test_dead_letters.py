"""Operators list, inspect and re-drive dead letters: the admin API for a domain's own, the
CLI for every domain's. A re-driven record is applied like any other."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import msgspec
import pytest

from tests.api.support import Api, api_service
from tests.conftest import Infrastructure
from tests.support import wait_until

pytestmark = pytest.mark.integration

REFUSE_THE_PILL = (
    "ALTER TABLE messages ADD CONSTRAINT refuses_the_pill CHECK (text <> 'poison pill')"
)


async def _cli(database_url: str, bootstrap: str, *arguments: str) -> tuple[int, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.cli",
        "dead-letters",
        *arguments,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SWITCHBOARD_LOG_FORMAT": "json",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, msgspec.json.decode(out) if out.strip() else err.decode()


async def _letters(api: Api, who: str = "admin", domain: str = "acme") -> tuple[int, Any]:
    return await api.call("GET", f"/v1/domains/{domain}/dead-letters", who=who)


async def test_an_admin_lists_inspects_and_redrives_a_dead_letter(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        await api.pool.execute(REFUSE_THE_PILL)
        await api.register("ann")
        event_id = await api.customer_writes("visitor-0001", "m1", text="poison pill")

        async def listed() -> list[dict[str, Any]]:
            status, body = await _letters(api)
            assert status == 200, body
            return list(body["dead_letters"])

        [letter] = await wait_until(listed, what="the dead letter listed")
        assert letter["reason"] == "unstorable: CheckViolationError (SQLSTATE 23514)"
        assert letter["domain"] == "acme"
        assert letter["redriven_at"] is None
        assert letter["redrives"] == 0
        assert letter["topic"].endswith("conversations.inbound")
        path = f"/v1/domains/acme/dead-letters/{letter['id']}"

        # Admins of the domain only; another domain's admin sees none of them.
        assert (await _letters(api, who="ann"))[0] == 403
        assert (await _letters(api, who="globex"))[0] == 403
        assert await _letters(api, who="globex", domain="globex") == (
            200,
            {"dead_letters": [], "next_after": None},
        )
        assert (
            await api.call("GET", f"/v1/domains/globex/dead-letters/{letter['id']}", who="globex")
        )[0] == 404
        assert (await api.call("GET", "/v1/domains/acme/dead-letters/x1"))[0] == 400
        assert (await api.call("GET", "/v1/domains/acme/dead-letters?limit=0"))[0] == 400

        status, shown = await api.call("GET", path)
        assert status == 200
        assert shown["value_base64"] is False
        # sealed on the topic and in the table, shown opened while its key exists
        assert shown["sealed"] is True
        stored_value = await api.pool.fetchval("SELECT value FROM dead_letters")
        assert b"poison pill" not in stored_value
        record = msgspec.json.decode(shown["value"])
        assert (record["id"], record["text"], shown["key"]) == (event_id, "poison pill", "acme")

        # The cause fixed, the record goes through the router again.
        await api.pool.execute("ALTER TABLE messages DROP CONSTRAINT refuses_the_pill")
        status, redriven = await api.call("POST", path + "/redrive")
        assert status == 202, redriven
        assert redriven["redrives"] == 1
        assert redriven["redriven_at"] is not None
        await wait_until(
            lambda: api.pool.fetchval(
                "SELECT owner_agent_id = 'ann' FROM conversations c"
                " JOIN messages m USING (domain, conversation_id) WHERE m.message_id = $1",
                event_id,
            ),
            what="the re-driven message assigned to ann",
        )
        assert await api.pool.fetchval("SELECT count(*) FROM dead_letters") == 1
        assert (await api.call("POST", path + "/redrive", who="ann"))[0] == 403
        assert (await api.call("POST", "/v1/domains/acme/dead-letters/99999/redrive"))[0] == 404

        # The CLI sees every domain's; a second re-drive is a provider retry to the router.
        bootstrap = infrastructure.bootstrap_servers
        code, page = await _cli(database_url, bootstrap, "list")
        assert code == 0, page
        assert [(d["id"], d["redrives"]) for d in page["dead_letters"]] == [(letter["id"], 1)]
        code, shown_by_cli = await _cli(database_url, bootstrap, "show", str(letter["id"]))
        assert code == 0, shown_by_cli
        assert shown_by_cli["value"] == shown["value"]
        code, again = await _cli(database_url, bootstrap, "redrive", str(letter["id"]))
        assert code == 0, again
        assert again["redrives"] == 2
        code, missing = await _cli(database_url, bootstrap, "show", "99999")
        assert code == 1
        assert "no dead letter 99999" in missing

        async def duplicates() -> bool:
            async with api.service.session.get(api.service.url("/metrics")) as response:
                scrape = await response.text()
            duplicates = 'switchboard_duplicate_messages_total{channel="webchat",domain="acme"} 1.0'
            return duplicates in scrape

        await wait_until(duplicates, what="the second re-drive dropped as a duplicate")
        stored = "SELECT count(*) FROM messages WHERE message_id = $1"
        assert await api.pool.fetchval(stored, event_id) == 1
        assert await api.pool.fetchval("SELECT count(*) FROM dead_letters") == 1


async def test_a_provider_request_an_adapter_set_aside_is_listed_but_not_redriven(
    infrastructure: Infrastructure, database_url: str
) -> None:
    bots = {"channels": {"telegram": {"bots": [{"name": "acme_bot", "domain": "acme"}]}}}
    secret = {"TELEGRAM_SECRET_TOKEN": "telegram-secret"}
    async with api_service(infrastructure.bootstrap_servers, database_url, bots, secret) as api:
        unreadable = b'{"update_id": "not a number"}'
        async with api.service.session.post(
            api.service.url("/webhooks/telegram/acme_bot"),
            data=unreadable,
            headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": "telegram-secret",
            },
        ) as response:
            assert response.status == 200, await response.text()

        async def listed() -> list[dict[str, Any]]:
            status, body = await _letters(api)
            assert status == 200, body
            return list(body["dead_letters"])

        [letter] = await wait_until(listed, what="the adapter's letter recorded")
        assert letter["source"] == "webhook/telegram"
        assert letter["domain"] == "acme"
        assert letter["topic"].endswith("switchboard.dlq")
        assert letter["reason"].startswith("malformed Telegram update: Expected `int`")
        path = f"/v1/domains/acme/dead-letters/{letter['id']}"
        status, shown = await api.call("GET", path)
        assert status == 200
        assert shown["value"] == unreadable.decode()

        status, refused = await api.call("POST", path + "/redrive")
        assert status == 409, refused
        assert "only the provider" in refused["error"]
        code, message = await _cli(
            database_url, infrastructure.bootstrap_servers, "redrive", str(letter["id"])
        )
        assert code == 1
        assert "only the provider can send it again" in message
        row = "SELECT redrives, source FROM dead_letters WHERE id = $1"
        assert tuple(await api.pool.fetchrow(row, letter["id"])) == (0, "webhook/telegram")

    # A second adapters process (the same consumer group, after a restart) copies nothing twice.
    async with api_service(infrastructure.bootstrap_servers, database_url, bots, secret) as api:
        await asyncio.sleep(2)
        assert await api.pool.fetchval("SELECT count(*) FROM dead_letters") == 1
