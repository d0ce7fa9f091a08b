"""Configuration changed under traffic reaches every process: a queue and a WhatsApp number
added through the API route their first message within 5 s, in an adapters process of its
own, with no restart and nothing lost; restoring the first version undoes them."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from schemas import ROUTING_DECODER, ConversationAssigned, MessageRouted
from schemas.topics import ROUTING
from switchboard.app import Role
from switchboard.config import Config
from tests.adapters.test_meta import signed, wa_notification, wa_text, wa_value
from tests.conftest import Infrastructure
from tests.support import (
    RouterProcess,
    TopicReader,
    make_raw_config,
    open_webchat_session,
    running_service,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)

APP_SECRET = "meta-app-secret-for-tests"
NUMBER_ID = "109876543210"
SECRETS = {"META_APP_SECRET": APP_SECRET, "WHATSAPP_ACCESS_TOKEN": "wa-token"}


def whatsapp_message(number_id: str, sender: str) -> tuple[bytes, dict[str, str]]:
    """A WhatsApp Cloud API text message, signed with the app secret (``tests.adapters``'
    documented payload), sent now by ``sender``."""
    message = {**wa_text(f"wamid.{uuid.uuid4().hex}"), "from": sender}
    message["timestamp"] = str(int(time.time()))
    return signed(wa_notification(wa_value(messages=[message], number_id=number_id)), APP_SECRET)


async def config_version(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("switchboard_config_version "):
            return int(float(line.split()[1]))
    return 0


async def test_a_queue_and_a_number_added_under_traffic_route_within_five_seconds(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    raw = make_raw_config(
        infrastructure.bootstrap_servers,
        database_url,
        {"api": {"auth": "disabled"}},
    )
    adapters = RouterProcess(raw, tmp_path, "adapters", role="adapters", environ=SECRETS)
    config = msgspec.convert(raw, type=Config)
    async with running_service(config, SECRETS, roles=frozenset({Role.ROUTER})) as router:
        adapters.start()
        try:
            await adapters.wait_ready()
            await _scenario(router, f"http://127.0.0.1:{adapters.port}", config)
        finally:
            adapters.terminate()


async def _scenario(router: Any, adapters: str, config: Any) -> None:
    session: aiohttp.ClientSession = router.session
    for agent, queues in (("ann", ["default"]), ("vera", ["vip"])):
        async with session.put(
            router.url(f"/v1/domains/acme/agents/{agent}"),
            json={"capacity": {"webchat": 500, "whatsapp": 2}, "queues": queues},
        ) as response:
            assert response.status == 202, await response.text()
        async with session.post(
            router.url(f"/v1/domains/acme/agents/{agent}/presence"), json={"status": "online"}
        ) as response:
            assert response.status == 202, await response.text()

    accepted: list[str] = []
    stop = asyncio.Event()

    async def web_chat_traffic() -> None:
        while not stop.is_set():
            message_id = uuid.uuid4().hex
            visitor = await open_webchat_session(session, adapters)
            body = {"message_id": message_id, "text": "hi"}
            async with session.post(
                f"{adapters}/v1/domains/acme/webchat/messages", json=body, headers=visitor.auth
            ) as response:
                assert response.status == 202, await response.text()
                accepted.append((await response.json())["event_id"])
            await asyncio.sleep(0.02)

    async with TopicReader(config, ROUTING) as routing:
        traffic = asyncio.create_task(web_chat_traffic())
        await wait_until(lambda: len(accepted) > 20, timeout=30, what="traffic flowing")

        async with session.put(
            router.url("/v1/domains/acme/queues/vip"), json={"steps": [{"name": "vip"}]}
        ) as response:
            assert response.status == 200, await response.text()
        async with session.put(
            router.url(f"/v1/domains/acme/channels/whatsapp/{NUMBER_ID}"), json={"queue": "vip"}
        ) as response:
            assert response.status == 200, await response.text()
            added = (await response.json())["version"]
        changed_at = time.monotonic()

        await wait_until(
            lambda: _at_least(session, adapters, added),
            timeout=5,
            what="adapters at the new version",
        )
        propagation = time.monotonic() - changed_at
        body, headers = whatsapp_message(NUMBER_ID, "16505551234")
        async with session.post(
            f"{adapters}/webhooks/meta", data=body, headers=headers
        ) as response:
            assert response.status == 200, await response.text()

        def assigned_on_whatsapp(records: list[Any]) -> bool:
            return any(
                isinstance(event, ConversationAssigned)
                and event.channel == "whatsapp"
                and (event.queue, event.agent_id) == ("vip", "vera")
                for event in (ROUTING_DECODER.decode(r.value) for r in records)
            )

        await routing.wait_for(assigned_on_whatsapp, timeout=5 - propagation)
        first_routed = time.monotonic() - changed_at
        print(
            f"adapters at the new version after {propagation:.3f} s; first routed {first_routed:.3f} s"
        )
        assert first_routed < 5, first_routed

        # nothing lost: every web chat message accepted meanwhile reached its conversation
        stop.set()
        await traffic
        sent = set(accepted)

        def all_routed(records: list[Any]) -> bool:
            routed = {
                event.message_id
                for event in (ROUTING_DECODER.decode(r.value) for r in records)
                if isinstance(event, MessageRouted)
            }
            return sent <= routed

        await routing.wait_for(all_routed, timeout=30)

        # a rollback to the first version: the number feeds nobody again
        async with session.get(router.url("/v1/config")) as response:
            tag = response.headers["ETag"]
        async with session.post(
            router.url("/v1/config/versions/1/restore"), headers={"If-Match": tag}
        ) as response:
            assert response.status == 200, await response.text()
            restored = (await response.json())["version"]
        await wait_until(
            lambda: _at_least(session, adapters, restored), timeout=5, what="adapters rolled back"
        )
        async with session.get(router.url("/v1/domains/acme/queues/vip")) as response:
            assert response.status == 404
        body, headers = whatsapp_message(NUMBER_ID, "16505559999")
        async with session.post(
            f"{adapters}/webhooks/meta", data=body, headers=headers
        ) as response:
            assert response.status == 200
        conn = await asyncpg.connect(config.database.url)
        try:
            reason = await wait_until(
                lambda: conn.fetchval(
                    "SELECT reason FROM dead_letters WHERE source = 'webhook/meta'"
                ),
                timeout=10,
                what="the unknown number's notification set aside",
            )
        finally:
            await conn.close()
        assert reason == "no entry of this notification is configured in [channels]"


async def _at_least(session: aiohttp.ClientSession, base: str, version: int) -> bool:
    return await config_version(session, base) >= version


async def test_an_endpoint_added_with_a_credential_from_the_secrets_file_needs_no_restart(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text("")
    config = msgspec.convert(
        make_raw_config(
            infrastructure.bootstrap_servers,
            database_url,
            {"api": {"auth": "disabled"}, "secrets_file": str(secrets_file)},
        ),
        type=Config,
    )
    async with running_service(config) as service, TopicReader(config, ROUTING) as routing:
        # the credential first, then the endpoint naming it
        secrets_file.write_text('TELEGRAM_SECRET_ACME = "tg-secret-0123456789"\n')
        async with service.session.put(
            service.url("/v1/domains/acme/channels/telegram/acme_bot"),
            json={"secret_token_env": "TELEGRAM_SECRET_ACME"},
        ) as response:
            assert response.status == 200, await response.text()
        update = {
            "update_id": 1,
            "message": {
                "message_id": 7,
                "from": {"id": 4242, "is_bot": False, "first_name": "Ann"},
                "chat": {"id": 4242, "first_name": "Ann", "type": "private"},
                "date": int(time.time()),
                "text": "hello",
            },
        }
        url = service.url("/webhooks/telegram/acme_bot")
        async with service.session.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
        ) as response:
            assert response.status == 403
        async with service.session.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "tg-secret-0123456789"}
        ) as response:
            assert response.status == 200, await response.text()

        def routed_on_telegram(records: list[Any]) -> bool:
            return any(
                isinstance(event, MessageRouted) and event.channel == "telegram"
                for event in (ROUTING_DECODER.decode(r.value) for r in records)
            )

        await routing.wait_for(routed_on_telegram, timeout=10)
