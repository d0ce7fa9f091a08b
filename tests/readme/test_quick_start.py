"""README "Quick start → See it route": its curl commands against ``switchboard run`` on the
packaged defaults, and what the README says follows from them."""

from __future__ import annotations

import functools
import re
import uuid
from pathlib import Path

import asyncpg
import msgspec
import pytest

from switchboard.embedded import free_port
from tests.conftest import Infrastructure
from tests.readme.commands import Command, commands_run_by
from tests.readme.shell import Outcome, Shell, event_type, read_topic, switchboard_run
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_SAMPLE = re.compile(r"^switchboard_assignments_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def _accepted(outcome: Outcome) -> None:
    """ "answered 202 once the broker has it" (the agent API: ``{"event_id", "status"}``)."""
    assert outcome.statuses == [202], str(outcome)
    assert outcome.json()["event_id"], str(outcome)


def _session_opened(outcome: Outcome) -> None:
    """The session's token, in ``$TOKEN`` for the commands after it."""
    assert outcome.returncode == 0, str(outcome)
    assert outcome.statuses == [201], str(outcome)
    assert outcome.stdout.startswith("v1."), str(outcome)


CHECKS = {
    r"-X PUT \S+/agents/ann ": _accepted,
    r"-X POST \S+/agents/ann/presence ": _accepted,
    r"^TOKEN=\$\(curl -s -X POST \S+/webchat/sessions ": _session_opened,
    r"-X POST \S+/webchat/messages ": _accepted,
}
"""What each README command must answer, by a pattern of the command."""

METRICS = r"/metrics \| grep switchboard_assignments_total$"


async def test_see_it_route_assigns_the_visitor_to_ann(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    commands = commands_run_by(test_see_it_route_assigns_the_visitor_to_ann)
    # `switchboard run` is the service itself; the `sh` block is what the reader types.
    assert {c.bare for c in commands if c.kind == "inline"} == {"switchboard run"}
    steps = [c for c in commands if c.kind == "sh"]
    assert steps, "the README has no 'See it route' block"
    prefix = f"readme{uuid.uuid4().hex[:8]}."
    port = free_port()
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
        "DATABASE_URL": database_url,
        "SWITCHBOARD_TOPIC_PREFIX": prefix,
    }
    shell = Shell(tmp_path, port, {})
    async with switchboard_run(tmp_path, port, environ) as service:
        accepted: dict[str, str] = {}
        for command in steps:
            if re.search(METRICS, command.bare):
                samples = await wait_until(
                    functools.partial(_assignments, shell, command),
                    timeout=20,
                    what="switchboard_assignments_total in the README's grep",
                )
                [(labels, value)] = samples
                assert float(value) == 1, samples
                assert 'channel="webchat"' in labels, labels
                continue
            checks = [
                check for pattern, check in CHECKS.items() if re.search(pattern, command.bare)
            ]
            assert len(checks) == 1, f"no check for this README command: {command}"
            if checks[0] is _session_opened:
                # As written, then $TOKEN for the commands after it, as in the reader's
                # terminal (a prelude would open a new session before each of them).
                outcome = await shell.run(shell.text_of(command) + '\nprintf %s "$TOKEN"')
                checks[0](outcome)
                shell.env["TOKEN"] = outcome.stdout
                continue
            outcome = await shell.run(command)
            checks[0](outcome)
            if "/webchat/messages" in command.bare:
                accepted = outcome.json()

        # "the router assigns the conversation to Ann, writes the conversation, message and
        # assignment rows"
        conn = await asyncpg.connect(database_url)
        try:
            conversations = await conn.fetch(
                "SELECT domain, owner_agent_id, status, channel FROM conversations"
            )
            messages = await conn.fetch("SELECT direction, text FROM messages")
            assignments = await conn.fetch("SELECT agent_id FROM assignments")
        finally:
            await conn.close()
        assert [tuple(r) for r in conversations] == [("default", "ann", "assigned", "webchat")]
        assert [tuple(r) for r in messages] == [("inbound", "Where is my order?")]
        assert [r["agent_id"] for r in assignments] == ["ann"]

        # "publishes conversation.assigned and message.routed to conversations.routing"
        routing = await read_topic(
            infrastructure.bootstrap_servers, database_url, f"{prefix}conversations.routing"
        )
        by_type = {event_type(r): msgspec.json.decode(r.value) for r in routing}
        assert {"conversation.assigned", "message.routed"} <= set(by_type), sorted(by_type)
        assert by_type["conversation.assigned"]["agent_id"] == "ann"
        assert by_type["message.routed"]["message_id"] == accepted["event_id"]

        # "A malformed request gets a 4xx with the reason and publishes nothing."
        malformed = await shell.run(
            f"curl -X POST localhost:{port}/v1/domains/default/webchat/messages "
            """-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' """
            """-d '{"text": "no message id"}'"""
        )
        assert malformed.statuses == [400], str(malformed)
        assert "message_id" in malformed.json()["error"], str(malformed)
        inbound = await read_topic(
            infrastructure.bootstrap_servers, database_url, f"{prefix}conversations.inbound"
        )
        assert [msgspec.json.decode(r.value)["id"] for r in inbound] == [accepted["event_id"]]
        assert service.process.returncode is None


async def _assignments(shell: Shell, command: Command) -> list[tuple[str, str]]:
    """The samples the README's ``curl … | grep`` prints (HELP and TYPE lines aside)."""
    outcome = await shell.run(command)
    assert outcome.returncode in (0, 1), str(outcome)  # grep: 1 while nothing matches
    return [
        (m["labels"], m["value"])
        for line in outcome.stdout.splitlines()
        if (m := _SAMPLE.match(line))
    ]
