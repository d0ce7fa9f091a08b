"""The configuration API through the real service: versions, entity tags and conditional
writes, isolation between domains, validation naming the field, the audit log, business
hours sending a conversation to its after-hours rule, the dry run, and the GitOps CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from router.api.auth import Scope, create_token
from schemas import ROUTING_DECODER, ConversationOutsideHours, ConversationQueued
from schemas.topics import ROUTING
from switchboard.config import ControlDocument
from tests.conftest import Infrastructure
from tests.logcapture import captured_logs, lines_of
from tests.support import (
    Service,
    TopicReader,
    make_config,
    running_service,
    to_toml,
    wait_until,
)
from tools.config_cli import add_config_parser, config_command

pytestmark = pytest.mark.timeout(180)

PLATFORM = "platform-token-for-tests"


class Api:
    def __init__(self, service: Service, token: str) -> None:
        self.service = service
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, Any, Any]:
        async with self.service.session.request(
            method,
            self.service.url(path),
            json=body,
            headers={**self.headers, **{k.replace("_", "-"): v for k, v in headers.items()}},
        ) as response:
            data = await response.read()
            return response.status, (msgspec.json.decode(data) if data else None), response.headers


@contextlib.asynccontextmanager
async def service_with_tokens(
    infrastructure: Infrastructure, database_url: str
) -> AsyncIterator[tuple[Service, Api, Api, Api]]:
    """acme and globex; a platform token, an acme admin and an acme agent."""
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "api": {"auth": "tokens"},
            "domains": {"acme": {"webchat": {"enabled": True}}, "globex": {}},
        },
    )
    async with running_service(config, {"SWITCHBOARD_ADMIN_TOKEN": PLATFORM}) as service:
        conn = await asyncpg.connect(database_url)
        try:
            _, admin = await create_token(conn, domain="acme", scope=Scope.ADMIN)
            _, agent = await create_token(conn, domain="acme", scope=Scope.AGENT, agent_id="ann")
        finally:
            await conn.close()
        yield service, Api(service, PLATFORM), Api(service, admin), Api(service, agent)


async def test_versions_etags_and_conditional_writes(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with service_with_tokens(infrastructure, database_url) as (_, platform, admin, _):
        status, document, headers = await platform.call("GET", "/v1/config")
        assert status == 200
        assert set(document["domains"]) == {"acme", "globex"}
        assert headers["Config-Version"] == "1"  # the file's, stored at start

        queue = {"steps": [{"name": "gold", "wait": 60}], "mode": "offer"}
        status, body, headers = await admin.call("PUT", "/v1/domains/acme/queues/vip", queue)
        assert status == 200, body  # a creation needs no If-Match
        assert body["version"] == 2
        assert [c["path"] for c in body["changes"]] == ["domains.acme.routing.queues.vip"]
        tag = headers["ETag"]

        status, body, _ = await admin.call("PUT", "/v1/domains/acme/queues/vip", queue)
        assert (status, body["error"]) == (
            428,
            "send If-Match with the ETag of the version you changed",
        )

        # the same change again: no new version
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/queues/vip", queue, If_Match=tag
        )
        assert (status, body["version"], body["changes"]) == (200, 2, [])

        # two administrators change the queue from the same copy: one wins, one gets 412
        results = await asyncio.gather(
            admin.call(
                "PUT", "/v1/domains/acme/queues/vip", {**queue, "offer_timeout": 10}, If_Match=tag
            ),
            platform.call(
                "PUT", "/v1/domains/acme/queues/vip", {**queue, "offer_timeout": 20}, If_Match=tag
            ),
        )
        assert sorted(status for status, _, _ in results) == [200, 412]
        winner = next(body for status, body, _ in results if status == 200)
        assert winner["version"] == 3

        status, page, _ = await platform.call("GET", "/v1/config/versions")
        assert [v["version"] for v in page["versions"]] == [3, 2, 1]
        assert page["versions"][-1]["author"] == "config-file"
        assert page["versions"][0]["domains"] == ["acme"]
        status, detail, _ = await platform.call("GET", "/v1/config/versions/3")
        assert detail["diff"][0]["path"] == "domains.acme.routing.queues.vip.offer_timeout"
        # the path names the version; digits that are not ASCII are no number
        status, detail, _ = await platform.call("GET", "/v1/config/versions/3?version=2")
        assert (status, detail["version"]) == (200, 3)
        for path in ("/v1/config/versions/%C2%B2", "/v1/config/versions?limit=%C2%B2"):
            status, body, _ = await platform.call("GET", path)
            assert status == 400, (path, body)
        status, domain_page, _ = await admin.call("GET", "/v1/domains/acme/config/versions")
        assert [v["version"] for v in domain_page["versions"]] == [3, 2, 1]

        # a rollback is a new version holding the old document
        _, _, headers = await platform.call("GET", "/v1/config")
        status, body, _ = await platform.call(
            "POST", "/v1/config/versions/1/restore", If_Match=headers["ETag"]
        )
        assert (status, body["version"]) == (200, 4)
        status, _, _ = await admin.call("GET", "/v1/domains/acme/queues/vip")
        assert status == 404
        status, body, _ = await platform.call(
            "POST", "/v1/config/versions/1/restore", If_Match=headers["ETag"]
        )
        assert status == 412  # made from version 3's copy

        conn = await asyncpg.connect(database_url)
        try:
            actions = [
                (row["action"], row["domain"])
                for row in await conn.fetch(
                    "SELECT action, domain FROM audit_log WHERE action LIKE 'config.%' ORDER BY id"
                )
            ]
        finally:
            await conn.close()
        assert actions == [
            ("config.queue.put", "acme"),
            ("config.queue.put", "acme"),
            ("config.restore", None),
        ]


async def test_a_domain_admin_manages_only_its_domain(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with service_with_tokens(infrastructure, database_url) as (_, platform, admin, agent):
        assert (await admin.call("GET", "/v1/domains/acme/config"))[0] == 200
        assert (await admin.call("GET", "/v1/domains/globex/config"))[0] == 403
        assert (await admin.call("GET", "/v1/config"))[0] == 403
        assert (await admin.call("GET", "/v1/config/versions"))[0] == 403
        assert (await admin.call("PUT", "/v1/domains/initech/config", {}))[0] == 403
        assert (await agent.call("GET", "/v1/domains/acme/config"))[0] == 403
        assert (await agent.call("PUT", "/v1/domains/acme/queues/vip", {}))[0] == 403
        status, body, _ = await admin.call("DELETE", "/v1/domains/acme/config")
        assert (status, body["error"]) == (403, "only a platform admin deletes domains")
        # a platform admin creates a domain; its admins then see it alone
        status, body, _ = await platform.call("PUT", "/v1/domains/initech/config", {})
        assert status == 200, body
        status, _, headers = await platform.call("GET", "/v1/domains/initech/config")
        assert status == 200
        # a PUT replaces every section: one left out returns to its defaults
        kept = {"retention": {"dead_letters": 86400}, "outbound": {"answer_hours": 24}}
        status, body, _ = await platform.call(
            "PUT", "/v1/domains/initech/config", kept, If_Match=headers["ETag"]
        )
        assert status == 200, body
        _, initech, headers = await platform.call("GET", "/v1/domains/initech/config")
        assert initech["retention"]["dead_letters"] == 86400
        assert initech["outbound"]["answer_hours"] == 24
        put = {"retention": {"dead_letters": 86400}}
        status, body, _ = await platform.call(
            "PUT", "/v1/domains/initech/config", put, If_Match=headers["ETag"]
        )
        assert status == 200, body
        _, initech, _ = await platform.call("GET", "/v1/domains/initech/config")
        assert initech["outbound"]["answer_hours"] == 72
        # an endpoint feeds one domain: acme cannot take globex's
        status, body, _ = await platform.call(
            "PUT", "/v1/domains/globex/channels/telegram/globex_bot", {}
        )
        assert status == 200, body
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/channels/telegram/globex_bot", {}
        )
        assert (status, body["error"]) == (
            409,
            "telegram endpoint 'globex_bot' feeds another domain",
        )
        status, body, _ = await admin.call("GET", "/v1/domains/acme/channels")
        assert body == {"endpoints": []}
        status, body, _ = await platform.call("DELETE", "/v1/domains/globex/config")
        assert status == 409
        assert "telegram/globex_bot" in body["error"]


async def put(api: Api, path: str, body: Any) -> tuple[int, Any]:
    """PUT ``body`` at ``path``, conditional on what is there now (if anything)."""
    status, _, headers = await api.call("GET", path)
    condition = {"If_Match": headers["ETag"]} if status == 200 else {}
    status, answer, _ = await api.call("PUT", path, body, **condition)
    return status, answer


async def test_a_domain_admin_names_no_variable_of_the_platform_or_another_domain(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """The service uses what a named variable holds on the domain's behalf (here: signing
    the identity lookups sent where the domain says), so a domain's admin may not point
    its settings at the platform's credentials or another tenant's."""
    async with service_with_tokens(infrastructure, database_url) as (_, platform, admin, _agent):
        globex_bot = {"bot_token_env": "GLOBEX_BOT_TOKEN"}
        status, body = await put(
            platform, "/v1/domains/globex/channels/telegram/globex_bot", globex_bot
        )
        assert status == 200, body
        config, bot = "/v1/domains/acme/config", "/v1/domains/acme/channels/telegram/acme_bot"

        def lookup(variable: str) -> dict[str, Any]:
            return {
                "webchat": {"enabled": True},
                "identity_lookup": {"url": "https://crm.example/lookup", "secret_env": variable},
            }

        for variable in (
            "SWITCHBOARD_ADMIN_TOKEN",
            "DATABASE_URL",
            "PGPASSWORD",
            "GLOBEX_BOT_TOKEN",
            "TWILIO_AUTH_TOKEN",
        ):
            status, body = await put(admin, config, lookup(variable))
            assert status == 400, (variable, body)
            assert body["error"].startswith(f"invalid configuration: {variable} names a variable")
            status, body = await put(admin, bot, {"bot_token_env": variable})
            assert status == 400, (variable, body)
        assert (await put(admin, config, lookup("ACME_CRM")))[0] == 200
        assert (await put(admin, bot, {"bot_token_env": "ACME_BOT"}))[0] == 200
        # a platform admin may; what the domain named before stays allowed to its admin
        assert (await put(platform, config, lookup("SWITCHBOARD_LOOKUP_SECRET")))[0] == 200
        kept = {**lookup("SWITCHBOARD_LOOKUP_SECRET"), "retention": {"dead_letters": 86400}}
        status, body = await put(admin, config, kept)
        assert status == 200, body


async def test_invalid_configuration_is_refused_naming_the_field(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with service_with_tokens(infrastructure, database_url) as (_, platform, admin, _):
        status, body, _ = await admin.call("PUT", "/v1/domains/acme/queues/vip", {"steps": []})
        assert status == 400
        assert "a queue needs at least one step" in body["error"]
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/queues/vip", {"max_per_agent": {"sms": 0}}
        )
        assert status == 400
        assert "max_per_agent" in body["error"]
        status, body, _ = await admin.call("PUT", "/v1/domains/acme/queues/vip", {"colour": "red"})
        assert status == 400
        assert "colour" in body["error"]
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/channels/whatsapp/1001", {"queue": "nope"}
        )
        assert status == 400
        assert "has no queue 'nope'" in body["error"]
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/channels/twilio/+15005550006", {"sending_domain": "x.example"}
        )
        assert status == 400
        assert "sending_domain" in body["error"]
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/calendars/office", {"time_zone": "Mars/Olympus"}
        )
        assert status == 400
        assert "time_zone" in body["error"]
        status, body, _ = await admin.call(
            "DELETE", "/v1/domains/acme/queues/default", If_Match='*, "v1"'
        )
        assert (status, body["error"]) == (400, "If-Match is * alone, or a list of ETags")
        status, body, _ = await admin.call(
            "DELETE", "/v1/domains/acme/queues/default", If_Match="*"
        )
        assert status == 409
        assert "default queue" in body["error"]
        holiday = {"date": "2026-12-25", "name": "Christ\u0000mas"}
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/calendars/office", {"time_zone": "UTC", "holidays": [holiday]}
        )
        assert status == 400
        assert "holds NUL" in body["error"]
        # a bot at the instance metadata's address: refused when set ([callbacks])
        status, acme, headers = await admin.call("GET", "/v1/domains/acme/config")
        metadata = {"helper": {"webhook": {"url": "http://169.254.169.254/latest/meta-data"}}}
        acme["routing"]["bots"] = metadata
        status, body, _ = await admin.call(
            "PUT", "/v1/domains/acme/config", acme, If_Match=headers["ETag"]
        )
        assert (status, body["error"]) == (
            400,
            "invalid configuration: domains.acme.routing.bots.helper.webhook.url:"
            " 169.254.169.254 is not an address callbacks.allowed_networks admits",
        )
        # a wait no clock can reach (it stopped the routing loop once)
        far = {"steps": [{"name": "anyone", "agents_from": ["*"], "wait": 1e308}]}
        status, body, _ = await admin.call("PUT", "/v1/domains/acme/queues/vip", far)
        assert (status, body["error"]) == (
            400,
            "invalid body: Expected `float` <= 315360000.0 - at `$.steps[0].wait`",
        )
        # a domain id in the path is refused before it reaches a query
        for domain in ("%00", "a%20b", "a" * 65):
            for method, path in (("GET", "config/versions"), ("PUT", "config")):
                status, body, _ = await platform.call(method, f"/v1/domains/{domain}/{path}", {})
                assert (status, body["error"]) == (
                    400,
                    "domain ids are 1 to 64 letters, digits, '-' and '_'",
                ), (domain, method)
        status, body, _ = await platform.call("GET", "/v1/config/versions")
        assert [v["version"] for v in body["versions"]] == [1], "nothing invalid was stored"


async def test_a_holiday_sends_a_conversation_to_its_after_hours_rule(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with service_with_tokens(infrastructure, database_url) as (service, _, admin, _):
        today = time.strftime("%Y-%m-%d", time.gmtime())
        calendar = {
            "time_zone": "UTC",
            "weekly": {
                day: [["00:00", "24:00"]]
                for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
            "holidays": [{"date": today, "name": "today"}],
        }
        status, body, _ = await admin.call("PUT", "/v1/domains/acme/calendars/office", calendar)
        assert status == 200, body
        _, _, headers = await admin.call("GET", "/v1/domains/acme/queues/default")
        status, body, _ = await admin.call(
            "PUT",
            "/v1/domains/acme/queues/default",
            {"calendar": "office", "after_hours": "notify"},
            If_Match=headers["ETag"],
        )
        assert status == 200, body
        async with TopicReader(service.config, ROUTING) as routing:
            status, answer = await service.webchat(
                {"session_id": "visitor-0001", "message_id": "m1", "text": "anyone there?"}
            )
            assert status == 202, answer

            def outside_hours(records: list[Any]) -> bool:
                return any(
                    isinstance(ROUTING_DECODER.decode(r.value), ConversationOutsideHours)
                    for r in records
                )

            records = await routing.wait_for(outside_hours)
        events = [ROUTING_DECODER.decode(r.value) for r in records]
        notice = next(e for e in events if isinstance(e, ConversationOutsideHours))
        midnight = (int(time.time()) // 86400 + 1) * 86400
        assert (notice.opens_at, notice.calendar) == (midnight, "office")
        queued = next(e for e in events if isinstance(e, ConversationQueued))
        assert (queued.step, queued.wait_until) == ("after_hours", midnight)


async def test_a_dry_run_compares_a_candidate_on_recorded_traffic(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with service_with_tokens(infrastructure, database_url) as (service, _, admin, _):
        # ann takes one web chat at a time; three visitors write: one is hers, two wait
        status, _, _ = await admin.call(
            "PUT", "/v1/domains/acme/agents/ann", {"capacity": {"webchat": 1}}
        )
        assert status == 202
        status, _, _ = await admin.call(
            "POST", "/v1/domains/acme/agents/ann/presence", {"status": "online"}
        )
        assert status == 202
        conn = await asyncpg.connect(database_url)
        try:
            await wait_until(
                lambda: conn.fetchval(
                    "SELECT presence = 'online' FROM agents WHERE agent_id = 'ann'"
                ),
                what="ann online",
            )
            for visitor in range(3):
                status, answer = await service.webchat(
                    {"session_id": f"visitor-000{visitor}", "message_id": "m1", "text": "hi"}
                )
                assert status == 202, answer
            await wait_until(
                lambda: conn.fetchval("SELECT count(*) = 3 FROM messages"), what="messages stored"
            )
        finally:
            await conn.close()
        # the candidate gives up waiting after a second: the two waiting overflow
        candidate = {"queues": {"default": {"steps": [{"name": "queue", "wait": 1}]}}}
        status, body, _ = await admin.call(
            "POST",
            "/v1/domains/acme/config/dry-run",
            # to a minute ahead: the replay runs the clock on past the last message
            {"from": time.time() - 3600, "to": time.time() + 60, "routing": candidate},
        )
        assert status == 200, body
        assert body["messages"] == 3
        assert body["agent_events"] == 2
        assert (body["current"]["assignments"], body["current"]["overflowed"]) == (1, 0)
        assert (body["candidate"]["assignments"], body["candidate"]["overflowed"]) == (1, 2)
        # the first version's routing, which is the current one: the same figures
        status, same, _ = await admin.call(
            "POST",
            "/v1/domains/acme/config/dry-run",
            {"from": time.time() - 3600, "to": time.time() + 60, "version": 1},
        )
        assert status == 200, same
        assert same["candidate"] == same["current"] == body["current"]
        # in the background: a planning job with progress, and then the same answer
        window = {"from": time.time() - 3600, "to": time.time() + 60, "routing": candidate}
        status, job, _ = await admin.call(
            "POST", "/v1/domains/acme/config/dry-run", {**window, "background": True}
        )
        assert (status, job["kind"], job["status"]) == (202, "replay", "running"), job

        async def finished() -> dict[str, Any] | None:
            _, read, _ = await admin.call("GET", f"/v1/domains/acme/planning/jobs/{job['job_id']}")
            return read if read["status"] != "running" else None

        done = await wait_until(finished, what="the dry run's job")
        assert (done["status"], done["done"], done["total"]) == ("completed", 10, 10), done
        assert done["result"]["candidate"] == body["candidate"]
        assert done["result"]["current"] == body["current"]
        status, body, _ = await admin.call(
            "POST", "/v1/domains/acme/config/dry-run", {"from": time.time() - 3600}
        )
        assert (status, body["error"]) == (
            400,
            "invalid body: give exactly one of routing and version",
        )
        status, body, _ = await admin.call(
            "POST", "/v1/domains/acme/config/dry-run", {"from": 0, "version": 1}
        )
        assert status == 400
        assert "apart" in body["error"]
        far = {"from": 1e300, "to": 1e300 + 1, "version": 1}
        status, body, _ = await admin.call("POST", "/v1/domains/acme/config/dry-run", far)
        assert status == 400
        assert "from" in body["error"]
        status, body, _ = await admin.call(
            "POST", "/v1/domains/acme/config/dry-run", {"from": time.time() - 60, "version": 99}
        )
        assert status == 404
        # beyond a bigint: no version, and a client's mistake (not a database error)
        status, body, _ = await admin.call(
            "POST", "/v1/domains/acme/config/dry-run", {"from": None, "version": 2**66}
        )
        assert status == 400, body


async def test_config_apply_and_export_through_the_api(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    async with service_with_tokens(infrastructure, database_url) as (service, platform, _, _):
        environ = {"SWITCHBOARD_ADMIN_TOKEN": PLATFORM}
        exported = await _run(["config", "export", "--url", service.base_url], environ)
        assert exported[0] == 0, exported
        document = msgspec.toml.decode(exported[1].encode(), type=ControlDocument)
        assert set(document.domains) == {"acme", "globex"}

        file = tmp_path / "runtime.toml"
        raw = msgspec.toml.decode(exported[1].encode())
        raw["domains"]["acme"]["routing"] = {"queues": {"default": {}, "vip": {"mode": "offer"}}}
        raw["kafka"] = {"partitions": 3}  # not runtime configuration: named as ignored
        file.write_text(to_toml(raw))

        code, out, err = await _run(
            ["config", "apply", str(file), "--dry-run", "--url", service.base_url], environ
        )
        assert code == 0, err
        assert "+ domains.acme.routing.queues.vip" in out
        assert "not applied (--dry-run)" in out
        assert "ignored (not runtime configuration): kafka" in err
        assert (await platform.call("GET", "/v1/domains/acme/queues/vip"))[0] == 404

        code, out, err = await _run(
            ["config", "apply", str(file), "--url", service.base_url], environ
        )
        assert code == 0, err
        assert "applied as version 2" in out
        assert (await platform.call("GET", "/v1/domains/acme/queues/vip"))[0] == 200

        code, out, _ = await _run(
            ["config", "apply", str(file), "--url", service.base_url], environ
        )
        assert (code, out.strip()) == (0, "no changes: version 2 already holds this configuration")

        code, _, err = await _run(["config", "apply", str(file), "--url", service.base_url], {})
        assert code == 1
        assert "401" in err

        # A document a release's limits refuse (README "Upgrading") is named, not sent.
        exported = await _run(
            ["config", "export", "--format", "json", "--url", service.base_url], environ
        )
        current = msgspec.json.decode(exported[1])
        current["domains"]["acme"]["routing"]["queues"]["vip"]["offer_timeout"] = 1e308
        json_file = tmp_path / "current.json"
        json_file.write_bytes(msgspec.json.encode(current))
        code, _, err = await _run(
            ["config", "apply", str(json_file), "--dry-run", "--url", service.base_url], environ
        )
        assert code == 1
        assert "Expected `float` <= 315360000.0" in err
        assert "offer_timeout" in err


async def _run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    """``switchboard config …`` as the program runs it (``asyncio.run``: in a thread,
    outside the test's loop), with ``environ`` as its environment."""
    parser = argparse.ArgumentParser()
    add_config_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = config_command(args, environ, "http://127.0.0.1:1")
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


async def test_a_stored_version_this_release_cannot_read_is_replaced_at_start(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """A version an older release stored, which a limit added since refuses (a wait of
    1e308 seconds): the service starts on the newest version it reads, stored again after
    it, instead of failing at every start."""
    vip = {"steps": [{"name": "anyone", "agents_from": ["*"], "wait": 60}]}
    async with service_with_tokens(infrastructure, database_url) as (_, platform, _, _):
        status, _, _ = await platform.call("PUT", "/v1/domains/acme/queues/vip", vip)
        assert status == 200
        _, readable, _ = await platform.call("GET", "/v1/config")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO config_versions (version, author, reason, document, diff, domains)"
            " SELECT 3, 'older-release', 'api',"
            " jsonb_set(document::jsonb, '{domains,acme,routing,queues,vip,steps,0,wait}',"
            " '1e308')::json, '[]', ARRAY['acme'] FROM config_versions WHERE version = 2"
        )
    finally:
        await conn.close()
    with captured_logs([]) as buffer:
        async with service_with_tokens(infrastructure, database_url) as (_, platform, admin, _):
            status, document, headers = await platform.call("GET", "/v1/config")
            assert (status, document, headers["Config-Version"]) == (200, readable, "4")
            _, versions, _ = await admin.call("GET", "/v1/domains/acme/config/versions")
            newest = versions["versions"][0]
            assert (newest["version"], newest["author"], newest["reason"]) == (
                4,
                "switchboard",
                "version 3 unreadable by this release: version 2 again",
            )
            status, body, _ = await platform.call("GET", "/v1/config/versions/3")
            assert status == 409
            assert body["error"].startswith("version 3 cannot be read by this release: ")
            assert body["error"].endswith("steps[0].wait`")
            status, _, _ = await platform.call("POST", "/v1/config/versions/3/restore")
            assert status == 409
    [line] = [line for line in lines_of(buffer) if line["event"] == "config_version_unreadable"]
    assert (line["level"], line["version"]) == ("error", 3)


async def test_an_endpoints_put_keeps_the_settings_its_body_cannot_name(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """A PUT of a queue on a number set up in the file with a priority and skills: the
    queue changes, the priority and skills stay (the body has no field for them)."""
    number = {"number": "+15005550006", "domain": "acme", "priority": 5, "skills": ["billing"]}
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "domains": {"acme": {"routing": {"queues": {"default": {}, "vip": {}}}}},
            "channels": {"twilio": {"numbers": [number]}},
        },
    )
    async with running_service(config, {"SWITCHBOARD_ADMIN_TOKEN": PLATFORM}) as service:
        platform = Api(service, PLATFORM)
        path = "/v1/domains/acme/channels/twilio/+15005550006"
        status, body = await put(platform, path, {"queue": "vip"})
        assert status == 200, body
        status, endpoint, _ = await platform.call("GET", path)
        settings = endpoint["settings"]
        assert (settings["queue"], settings["priority"], settings["skills"]) == (
            "vip",
            5,
            ["billing"],
        )
        # the body's own fields are replaced: left out, the queue is the default again
        status, body = await put(platform, path, {})
        assert status == 200, body
        _, endpoint, _ = await platform.call("GET", path)
        assert endpoint["settings"]["queue"] is None
        assert endpoint["settings"]["priority"] == 5
