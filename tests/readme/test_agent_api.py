"""README "Agent API": tokens made with its ``switchboard token create`` commands, then its
Examples and Live stream commands against ``switchboard run`` with ``api.auth = "tokens"``,
each answering what the README says."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from switchboard.embedded import free_port
from tests.conftest import Infrastructure
from tests.readme.commands import Command, commands_run_by
from tests.readme.shell import Outcome, Shell, Stream, events, is_setting, switchboard_run
from tests.support import to_toml, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _config(tag: str) -> dict[str, Any]:
    """Domain ``acme`` with the queues the examples name; broker and database come from
    the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``)."""
    return {
        "kafka": {
            "topic_prefix": f"readme{tag}.",
            "consumer_group": f"readme-{tag}",
            "partitions": 2,
            "fetch_max_wait_ms": 10,
        },
        "api": {"auth": "tokens"},
        "domains": {
            "acme": {
                "webchat": {"enabled": True},
                "routing": {"default_queue": "support", "queues": {"support": {}, "billing": {}}},
            }
        },
    }


def _status(
    code: int, check: Callable[[Any], bool] = lambda body: True
) -> Callable[[Outcome], None]:
    def verify(outcome: Outcome) -> None:
        assert outcome.statuses == [code], str(outcome)
        assert check(outcome.json()), str(outcome)

    return verify


ACCEPTED = _status(202, lambda body: body["status"] == "accepted" and bool(body["event_id"]))
"""Registration, presence and customer ownership: ``202 {"event_id", "status": "accepted"}``."""

EXAMPLES: dict[str, Callable[[Outcome], None]] = {
    r"^curl -X PUT \$A/agents/ann ": ACCEPTED,
    r"^curl -X POST \$A/agents/ann/presence ": ACCEPTED,
    r"^curl \$A/agents/ann ": _status(
        200, lambda body: body["presence"] == "online" and "stats" in body
    ),
    r"^curl -X PUT \$A/customers/phone:\+14155552671/owner ": ACCEPTED,
    r"^curl \$A/conversations/\$C ": _status(200, lambda body: body["owner_agent_id"] == "ann"),
    # "answered 202 {"reply_id"} at once"
    r"^curl -X POST \$A/conversations/\$C/reply ": _status(
        202, lambda body: bool(body["reply_id"])
    ),
    # "202 {"status": "completed"}, or 409 {"error": "<reason>", "event_id"}"
    r"^curl -X POST \$A/conversations/\$C/transfer ": _status(
        202, lambda body: body["status"] == "completed"
    ),
    r"^curl -X POST \$A/conversations/\$C/close ": _status(
        409, lambda body: body["error"] == "not_owner" and bool(body["event_id"])
    ),
    r"^curl \$A/queues ": _status(
        200,
        lambda body: (
            {q["queue"]: q["waiting"] for q in body["queues"]} == {"support": 0, "billing": 1}
        ),
    ),
}
"""What each command of the Examples block answers, by a pattern of the command."""

STREAMS = {
    "ann": r"^curl -N \$A/stream -H \"Authorization: Bearer \$ANN_TOKEN\"$",
    "filtered": r"^curl -N \"\$A/stream\?agent_id=ann\" -H \"\$T\"$",
    "resumed": r"^curl -N \$A/stream -H \"\$T\" -H \"Last-Event-ID: \$LAST_ID\"$",
}
ANN_EVENTS = {
    "conversation.assigned",
    "message.routed",
    "conversation.reassigned",
    "command.completed",
    "command.rejected",
}
"""What Ann's stream shows of the examples: her assignment and message, the transfer that
took the conversation from her, and the verdicts of her own commands."""


def _one(commands: list[Command], pattern: str) -> Command:
    found = [c for c in commands if re.search(pattern, c.bare)]
    assert len(found) == 1, (pattern, [str(c) for c in commands])
    return found[0]


def _check_for(command: Command) -> Callable[[Outcome], None]:
    found = [check for pattern, check in EXAMPLES.items() if re.search(pattern, command.bare)]
    assert len(found) == 1, f"no check for this README command: {command}"
    return found[0]


async def test_the_agent_api_examples_answer_as_documented(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    commands = commands_run_by(test_the_agent_api_examples_answer_as_documented)
    token_commands = [c for c in commands if c.kind == "sh" and c.section == "Tokens and scopes"]
    examples = [c for c in commands if c.section == "Examples"]
    streams = {
        name: _one([c for c in commands if c.section.startswith("Live stream")], pattern)
        for name, pattern in STREAMS.items()
    }
    assert len(streams) == len([c for c in commands if c.section.startswith("Live stream")])
    assert {c.bare for c in commands if c.kind == "inline"} <= {"switchboard token create"}

    tag = uuid.uuid4().hex[:8]
    config = tmp_path / "switchboard.toml"
    config.write_text(to_toml(_config(tag)))
    port = free_port()
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
        "DATABASE_URL": database_url,
        "SWITCHBOARD_CONFIG": str(config),
    }

    # "Create tokens with the database and the configuration the service uses"
    shell = Shell(
        tmp_path,
        port,
        {"SWITCHBOARD_CONFIG": str(config)},
        placeholders={"postgresql://…": database_url},
    )
    tokens = {}
    for command in token_commands:
        outcome = await shell.run(command)
        assert outcome.returncode == 0, str(outcome)
        [token] = outcome.stdout.split()  # "printed once": the token alone on stdout
        scope = re.search(r"--scope (\w+)", command.bare)
        assert scope is not None
        tokens[scope.group(1)] = token
    assert set(tokens) == {"admin", "agent"}
    shell.env.update(ADMIN_TOKEN=tokens["admin"], ANN_TOKEN=tokens["agent"])

    async with switchboard_run(tmp_path, port, environ) as service:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        opened: list[Stream] = []
        try:
            [setting] = [c for c in examples if is_setting(c)]
            await shell.run(setting)
            ann = await shell.start(streams["ann"])
            filtered = await shell.start(streams["filtered"])
            opened += [ann, filtered]
            for stream in (ann, filtered):
                await stream.wait_for(lambda lines: "retry: 1000" in lines, "the stream to open")

            for command in examples:
                if is_setting(command):
                    continue
                check = _check_for(command)
                if "$C" in command.bare and "C" not in shell.env:
                    shell.env["C"] = await _conversation_of_ann(shell, filtered, port)
                if re.search(r"^curl \$A/agents/ann |/owner ", command.bare):
                    # Registration and presence went to the router through the broker.
                    await wait_until(
                        lambda: pool.fetchval(
                            "SELECT presence = 'online' FROM agents"
                            " WHERE domain = 'acme' AND agent_id = 'ann'"
                        ),
                        what="Ann online in PostgreSQL",
                    )
                outcome = await shell.run(command)
                check(outcome)
                if stated := re.search(r"#\s*(\d{3})\b", command.flat):  # "# 409 not_owner"
                    assert outcome.statuses == [int(stated[1])], str(outcome)

            # Both filters keep Ann's events: the same ones, in the same order.
            await ann.wait_for(
                lambda lines: {e["event"] for e in events(lines)} >= ANN_EVENTS,
                "Ann's events",
            )
            ann_events = events(ann.lines)
            await filtered.wait_for(
                lambda lines: [e["id"] for e in events(lines)] == [e["id"] for e in ann_events],
                "the admin's filtered stream to show the same events",
            )
            for event in ann_events:
                assert _names_ann(event), event

            # A client reconnecting with Last-Event-ID gets what came after that event.
            shell.env["LAST_ID"] = ann_events[0]["id"]
            resumed = await shell.start(streams["resumed"])
            opened.append(resumed)
            later = {e["id"] for e in ann_events[1:]}
            await resumed.wait_for(
                lambda lines: later <= {e["id"] for e in events(lines)},
                "the events after LAST_ID",
            )
            resumed_events = events(resumed.lines)
            assert ann_events[0]["id"] not in {e["id"] for e in resumed_events}
            assert not [line for line in resumed.lines if "not in the buffer" in line]
            # The admin's unfiltered stream also has events naming nobody: the
            # conversation waiting in billing.
            assert "conversation.queued" in {e["event"] for e in resumed_events}
        finally:
            for stream in opened:
                await stream.stop()
            await pool.close()
        assert service.process.returncode is None


async def _conversation_of_ann(shell: Shell, stream: Stream, port: int) -> str:
    """A visitor writes; the ``conversation.assigned`` event on the stream names ``$C``."""
    outcome = await shell.run(
        f"T=$(curl -s -X POST localhost:{port}/v1/domains/acme/webchat/sessions "
        """| python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')\n"""
        f"curl -X POST localhost:{port}/v1/domains/acme/webchat/messages "
        """-H "Authorization: Bearer $T" -H 'Content-Type: application/json' """
        """-d '{"message_id": "m1", "text": "Where is my order?"}'"""
    )
    assert outcome.statuses == [201, 202], str(outcome)
    await stream.wait_for(
        lambda lines: "conversation.assigned" in {e["event"] for e in events(lines)},
        "conversation.assigned on the stream",
    )
    assigned = next(e for e in events(stream.lines) if e["event"] == "conversation.assigned")
    data = msgspec.json.decode(assigned["data"])
    assert data["agent_id"] == "ann"
    return str(data["conversation_id"])


def _names_ann(event: dict[str, str]) -> bool:
    """ "the events naming the agent (as owner, candidate of a transfer, or preferred
    agent) and the verdicts of its own commands\""""
    if event["event"].startswith("command."):
        return True
    data = msgspec.json.decode(event["data"])
    names = ("agent_id", "from_agent_id", "to_agent_id", "preferred_agent_id")
    return "ann" in {data.get(name) for name in names}
