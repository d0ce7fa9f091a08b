"""README "Channel adapters": each provider's example request, signed as the README signs
it, against ``switchboard run`` configured with the README's own ``[channels]`` example."""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from switchboard.embedded import free_port
from tests.conftest import Infrastructure
from tests.readme.commands import README, commands_run_by
from tests.readme.shell import (
    Outcome,
    Shell,
    is_setting,
    read_topic,
    require_programs,
    switchboard_run,
)
from tests.support import to_toml, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRETS = {
    "TWILIO_AUTH_TOKEN": "readme-twilio-token",
    "META_APP_SECRET": "readme-meta-secret",
    "META_VERIFY_TOKEN": "readme-verify-token",
    "TELEGRAM_SECRET_TOKEN": "readme-telegram-secret",
    "MAILGUN_SIGNING_KEY": "readme-mailgun-key",
}
PUBLIC_URL = "https://switchboard.example.com"
"""The Twilio example signs for this URL ("what SWITCHBOARD_PUBLIC_URL + path gives")."""


def _answers(body: str) -> Callable[[Outcome], None]:
    def verify(outcome: Outcome) -> None:
        assert outcome.returncode == 0, str(outcome)
        assert outcome.statuses == [200], str(outcome)
        assert outcome.stdout.strip() == body, str(outcome)

    return verify


CHECKS: dict[str, Callable[[Outcome], None]] = {
    # "Reply: an empty <Response/> (TwiML)"
    r"/webhooks/twilio/sms ": _answers('<?xml version="1.0" encoding="UTF-8"?><Response/>'),
    # "Reply: EVENT_RECEIVED"
    r"/webhooks/meta -H ": _answers("EVENT_RECEIVED"),
    # "a GET with hub.mode=subscribe, hub.verify_token and hub.challenge gets the challenge back"
    r"/webhooks/meta\?hub\.mode=subscribe": _answers("42"),
    # "Reply: 200 ok"
    r"/webhooks/telegram/acme_support_bot ": _answers("ok"),
    r"/webhooks/email/mailgun ": _answers("ok"),
}
"""What each example request answers, by a pattern of the command."""

ROUTED = {
    ("sms", "phone:+14155552671", "hi"),
    ("messenger", "messenger:6783125368444163", "hello"),
    ("telegram", "telegram:1111111", "hello"),
    ("email", "email:ann@example.org", "My parcel is late"),
}
"""The four customer messages: channel, customer and text, as the router stored them."""


def _readme_channels() -> dict[str, Any]:
    text = README.read_text()
    section = text[text.index("## Channel adapters") :]
    example = re.findall(r"```toml\n(.*?)```", section, flags=re.S)[0]
    channels: dict[str, Any] = tomllib.loads(example)["channels"]
    return channels


async def test_the_webhook_examples_are_accepted(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    require_programs("openssl")
    commands = commands_run_by(test_the_webhook_examples_are_accepted)
    assert len({c.section for c in commands}) == 4, "one example per provider"
    tag = uuid.uuid4().hex[:8]
    config = tmp_path / "switchboard.toml"
    config.write_text(
        to_toml(
            {
                "kafka": {"topic_prefix": f"readme{tag}.", "consumer_group": f"readme-{tag}"},
                # the queues the README's endpoints name: an endpoint's queue must exist
                "domains": {
                    "acme": {"routing": {"queues": {"default": {}, "sms": {}, "email": {}}}}
                },
                "channels": _readme_channels(),
            }
        )
    )
    port = free_port()
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
        "DATABASE_URL": database_url,
        "SWITCHBOARD_CONFIG": str(config),
        "SWITCHBOARD_PUBLIC_URL": PUBLIC_URL,
        **SECRETS,
    }
    async with switchboard_run(tmp_path, port, environ):
        section = ""
        shell = Shell(tmp_path, port, SECRETS)
        for command in commands:
            if command.section != section:  # each block starts from a fresh terminal
                section = command.section
                shell.prelude.clear()
            if is_setting(command):
                await shell.run(command)
                continue
            checks = [
                check for pattern, check in CHECKS.items() if re.search(pattern, command.bare)
            ]
            assert len(checks) == 1, f"no check for this README command: {command}"
            checks[0](await shell.run(command))

        # Each message reached the router, which stored it in its conversation.
        await wait_until(lambda: _routed(database_url), timeout=20, what="the messages routed")
        inbound = await read_topic(
            infrastructure.bootstrap_servers, database_url, f"readme{tag}.conversations.inbound"
        )
        kinds = sorted(msgspec.json.decode(r.value)["type"] for r in inbound)
        assert kinds == ["message.received"] * 4, kinds


async def _routed(database_url: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT c.channel, c.customer_id, m.text FROM messages m JOIN conversations c"
            " USING (domain, conversation_id) WHERE m.domain = 'acme'"
        )
    finally:
        await conn.close()
    return {(r[0], r[1], r[2]) for r in rows} >= ROUTED
