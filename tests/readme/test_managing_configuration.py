"""README "Managing configuration": its curl and ``switchboard config`` commands against
``switchboard run`` with tokens, each answering what the README says."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from switchboard.embedded import free_port
from tests.conftest import Infrastructure
from tests.readme.commands import Command, commands_run_by
from tests.readme.shell import Outcome, Shell, is_setting, switchboard_run
from tests.support import to_toml

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PLATFORM_TOKEN = "readme-platform-token"


def _answers(
    code: int, check: Callable[[Any], bool] = lambda body: True
) -> Callable[[Outcome], None]:
    def verify(outcome: Outcome) -> None:
        assert outcome.statuses == [code], str(outcome)
        assert check(outcome.json()), str(outcome)

    return verify


def _exits(check: Callable[[Outcome], bool]) -> Callable[[Outcome], None]:
    def verify(outcome: Outcome) -> None:
        assert outcome.returncode == 0, str(outcome)
        assert check(outcome), str(outcome)

    return verify


CHECKS: dict[str, Callable[[Outcome], None]] = {
    r"queues/vip .* -d '\{\"steps\": \[\{\"name\": \"gold\", \"wait\": 120\}": _answers(
        200, lambda body: body["version"] == 2
    ),
    r"channels/whatsapp/106540352242922 ": _answers(
        200,
        lambda body: (
            [c["path"] for c in body["changes"]] == ["channels.meta.whatsapp.106540352242922"]
        ),
    ),
    r"If-Match: \$ETAG.*\"wait\": 60\}": _answers(200, lambda body: body["version"] == 4),
    r"If-Match: \"an-older-etag\"": _answers(412),
    r"^curl localhost:8080/v1/config/versions ": _answers(
        200, lambda body: [v["version"] for v in body["versions"]] == [4, 3, 2, 1]
    ),
    r"config/dry-run ": _answers(
        200, lambda body: body["domain"] == "default" and "fallbacks" in body["candidate"]
    ),
    r"^switchboard config export > runtime.toml$": _exits(lambda outcome: True),
    r"^switchboard config apply runtime.toml --dry-run$": _exits(
        lambda outcome: (
            "+ domains.default.routing.queues.night" in outcome.stdout
            and "not applied (--dry-run)" in outcome.stdout
        )
    ),
    r"^switchboard config apply runtime.toml$": _exits(
        lambda outcome: "applied as version 5" in outcome.stdout
    ),
}


def _check_for(command: Command) -> Callable[[Outcome], None]:
    found = [check for pattern, check in CHECKS.items() if re.search(pattern, command.bare)]
    assert len(found) == 1, f"no check for this README command: {command}"
    return found[0]


async def test_the_configuration_examples_answer_as_documented(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    commands = commands_run_by(test_the_configuration_examples_answer_as_documented)
    assert {c.kind for c in commands} >= {"sh"}
    tag = uuid.uuid4().hex[:8]
    config = tmp_path / "switchboard.toml"
    config.write_text(
        to_toml(
            {
                "kafka": {
                    "topic_prefix": f"readme{tag}.",
                    "consumer_group": f"readme-{tag}",
                    "fetch_max_wait_ms": 10,
                },
                "api": {"auth": "tokens"},
                "domains": {"default": {"webchat": {"enabled": True}}},
            }
        )
    )
    port = free_port()
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
        "DATABASE_URL": database_url,
        "SWITCHBOARD_CONFIG": str(config),
        "SWITCHBOARD_ADMIN_TOKEN": PLATFORM_TOKEN,
    }
    # The reader's terminal: the service's configuration and port, and the token.
    shell = Shell(
        tmp_path,
        port,
        {
            "SWITCHBOARD_CONFIG": str(config),
            "SWITCHBOARD_PORT": str(port),
            "SWITCHBOARD_ADMIN_TOKEN": PLATFORM_TOKEN,
        },
    )
    async with switchboard_run(tmp_path, port, environ):
        for command in commands:
            if command.kind == "inline":
                continue
            outcome = await shell.run(command)
            if is_setting(command):
                continue
            _check_for(command)(outcome)
            if stated := re.search(r"#\s*(\d{3})\b", command.flat):  # "# 412: …"
                assert outcome.statuses == [int(stated[1])], str(outcome)
            if command.bare == "switchboard config export > runtime.toml":
                # the reader's edit of the exported file: a queue for the night
                exported = msgspec.toml.decode((tmp_path / "runtime.toml").read_bytes())
                assert "vip" in exported["domains"]["default"]["routing"]["queues"]
                exported["domains"]["default"]["routing"]["queues"]["night"] = {}
                (tmp_path / "runtime.toml").write_text(to_toml(exported))
