"""README "Business-started messages": its curl examples (single sends, a message's status,
batches as JSON, CSV and NDJSON, campaigns, consent) against ``switchboard run`` with
``api.auth = "tokens"``, and the providers stood in for on loopback
(``tools.bench.providers``) so that the sender really sends; each command answers what the
README says it answers."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from switchboard.embedded import free_port
from tests.conftest import Infrastructure
from tests.readme.commands import README, Command, commands_run_by, parse
from tests.readme.shell import Outcome, Shell, is_setting, switchboard_run
from tests.support import to_toml, wait_until
from tools.bench.providers import FakeProviders

SECTION = "Business-started messages"
ACCOUNT = "AC00000000000000000000000000000001"
OUR_NUMBER = "+14155550100"
"""The domain's one Twilio number: an SMS may leave ``from`` out."""
WA_NUMBER_ID = "106540352242922"
CUSTOMER = "+14155552671"
SECRETS = {
    "TWILIO_AUTH_TOKEN": "readme-twilio-token",
    "META_APP_SECRET": "readme-meta-secret",
    "META_VERIFY_TOKEN": "readme-verify-token",
    "WHATSAPP_ACCESS_TOKEN": "readme-whatsapp-token",
}
TEMPLATES = [
    {
        "name": "delivery_update",
        "language": "en_US",
        "channel": "whatsapp",
        "provider_template": "delivery_update_v2",
        "body": "Hi {{1}}, your order {{2}} arrives today. Reply here with any question.",
    },
    {
        "name": "reminder",
        "language": "en",
        "channel": "sms",
        "provider_template": "HX0123456789abcdef0123456789abcdef",
        "body": "Reminder: your appointment is on {{1}}. Reply to change it.",
    },
]


def _config(tag: str, providers: str) -> dict[str, Any]:
    """Domain ``acme`` with the queue, templates and endpoints the examples name; broker
    and database come from the environment."""
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
                "routing": {"default_queue": "support", "queues": {"support": {}, "sales": {}}},
                "outbound": {
                    "templates": TEMPLATES,
                    # One SMS, then one a minute: the campaigns' messages are still queued
                    # (as in a campaign of thousands) while the examples pause, resume and
                    # cancel them.
                    "rates": {"sms": {"per_second": 1 / 60, "burst": 1}},
                },
            }
        },
        "channels": {
            "twilio": {
                "account_sid": ACCOUNT,
                "api_base_url": providers,
                "numbers": [{"number": OUR_NUMBER, "domain": "acme"}],
            },
            "meta": {
                "graph_api_base_url": providers,
                "whatsapp": [{"phone_number_id": WA_NUMBER_ID, "domain": "acme"}],
            },
        },
    }


def _status(
    code: int, check: Callable[[Any], bool] = lambda body: True
) -> Callable[[Outcome], Any]:
    def verify(outcome: Outcome) -> Any:
        assert outcome.returncode == 0, str(outcome)
        assert outcome.statuses == [code], str(outcome)
        body = outcome.json()
        assert check(body), str(outcome)
        return body

    return verify


def _queued(body: Any) -> bool:
    """``202 {"outbound_id", "conversation_id", "status": "queued", "duplicate": false}``"""
    return (
        set(body) == {"outbound_id", "conversation_id", "status", "duplicate"}
        and bool(body["outbound_id"])
        and bool(body["conversation_id"])
        and body["status"] == "queued"
        and body["duplicate"] is False
    )


def _batch(campaign_id: str, accepted: int) -> Callable[[Any], bool]:
    """``202 {"campaign_id", "accepted", "duplicates": 0, "refused": 0, "results": [{"index",
    "outbound_id", "conversation_id", "status": "queued"}, …]}``"""

    def check(body: Any) -> bool:
        results = body["results"]
        return (
            body["campaign_id"] == campaign_id
            and (body["accepted"], body["duplicates"], body["refused"]) == (accepted, 0, 0)
            and [r["index"] for r in results] == list(range(accepted))
            and all(
                set(r) == {"index", "outbound_id", "conversation_id", "status"}
                and r["status"] == "queued"
                for r in results
            )
        )

    return check


def _campaign(status: str, counts: dict[str, int]) -> Callable[[Any], bool]:
    def check(body: Any) -> bool:
        return (
            body["campaign_id"] == "spring-sale"
            and body["name"] == "Spring sale"
            and body["status"] == status
            and body["total"] == sum(counts.values())
            and body["counts"] == counts
        )

    return check


def _campaigns(body: Any) -> bool:
    """Newest first: the reminders (one CSV batch, then one NDJSON batch), then the sale."""
    found = [(c["campaign_id"], c["name"], c["status"], c["total"]) for c in body["campaigns"]]
    return body["next_cursor"] is None and found == [
        ("reminders-0601", "Reminders", "running", 2),
        ("spring-sale", "Spring sale", "running", 2),
    ]


def _message_status(body: Any) -> bool:
    """ "status, error, provider message id, times": the template went out."""
    return (
        body["status"] == "sent"
        and body["error"] is None
        and str(body["provider_message_id"]).startswith("wamid.")
        and isinstance(body["created_at"], float)
        and body["updated_at"] >= body["created_at"]
        and (body["channel"], body["endpoint"], body["agent_id"], body["client_key"])
        == ("whatsapp", WA_NUMBER_ID, "ann", "order-A-1234-delivery")
    )


def _never_recorded(body: Any) -> bool:
    """``{"consent": "opt_in", "source": null, …, "marketing": "opt_in", …} when never
    recorded``"""
    return (body["channel"], body["address"], body["consent"], body["source"]) == (
        "sms",
        CUSTOMER,
        "opt_in",
        None,
    ) and (body["changed_at"], body["marketing"]) == (None, "opt_in")


def _changes(body: Any) -> bool:
    """Newest first: consent, scope, source (keyword, provider, api), when."""
    [change] = body["changes"]
    return (
        body["next_cursor"] is None
        and (change["consent"], change["scope"], change["source"]) == ("opt_out", "all", "api")
        and isinstance(change["changed_at"], float)
    )


CHECKS: dict[str, Callable[[Outcome], Any]] = {
    r'^curl -X POST \$A/outbound -H "\$T" -d \'\{ "channel": "whatsapp"': _status(202, _queued),
    r"^curl -X POST \$A/outbound -H \"Authorization: Bearer \$ANN_TOKEN\" .*\"sms\"": _status(
        202, _queued
    ),
    r"^curl \$A/outbound/\$OUTBOUND_ID ": _status(200, _message_status),
    r"^curl -X POST \$A/outbound/batch .*\"spring-sale\"": _status(202, _batch("spring-sale", 2)),
    r"campaign_id=reminders-0601&campaign_name=Reminders.* @reminders\.csv$": _status(
        202, _batch("reminders-0601", 1)
    ),
    r"campaign_id=reminders-0601\" .* @reminders\.ndjson$": _status(
        202, _batch("reminders-0601", 1)
    ),
    r"^curl \$A/campaigns -H ": _status(200, _campaigns),
    r"^curl \$A/campaigns/spring-sale -H ": _status(200, _campaign("running", {"queued": 2})),
    # "A paused campaign's messages stay queued until it resumes."
    r"/campaigns/spring-sale/pause ": _status(200, _campaign("paused", {"queued": 2})),
    r"/campaigns/spring-sale/resume ": _status(200, _campaign("running", {"queued": 2})),
    # "Cancelling marks every message the sender has not taken yet … cancelled"
    r"/campaigns/spring-sale/cancel ": _status(200, _campaign("cancelled", {"cancelled": 2})),
    r"^curl \$A/consents/sms/\+14155552671 -H ": _status(200, _never_recorded),
    # "answers with its verdict (202 completed, or pending)"
    r"^curl -X PUT \$A/consents/sms/\+14155552671 ": _status(
        202, lambda body: body["status"] == "completed" and bool(body["event_id"])
    ),
    r"^curl -X PUT \$A/consents/whatsapp/\+14155552671 .*\"marketing\"": _status(
        202, lambda body: body["status"] == "completed" and bool(body["event_id"])
    ),
    r"^curl \$A/consents/sms/\+14155552671/changes ": _status(200, _changes),
}
"""What each command of the section answers, by a pattern of the command."""


def _check_for(command: Command) -> Callable[[Outcome], Any]:
    found = [check for pattern, check in CHECKS.items() if re.search(pattern, command.bare)]
    assert len(found) == 1, f"no single check for this README command: {command}"
    return found[0]


def _one(commands: list[Command], pattern: str) -> Command:
    found = [c for c in commands if re.search(pattern, c.bare)]
    assert len(found) == 1, (pattern, [str(c) for c in commands])
    return found[0]


def _readme_csv() -> str:
    """The section's CSV example ("For example:"), as a reader would save reminders.csv."""
    text = README.read_text()
    start = text.index(f"### {SECTION}")
    section = text[start : text.index("\n### ", start + 1)]
    block = re.search(r"For example:\n\n( *)```\n(.*?)\n *```", section, flags=re.DOTALL)
    assert block is not None, "the CSV example is gone from the README"
    indent = len(block.group(1))
    return "\n".join(line[indent:] for line in block.group(2).splitlines()) + "\n"


def _as_ndjson(table: str) -> str:
    """The same messages as NDJSON: one JSON message a line, fields as the columns name."""
    lines = []
    for row in csv.DictReader(io.StringIO(table)):
        message: dict[str, Any] = {}
        for column, cell in row.items():
            head, _, tail = column.partition(".")
            if column in ("template", "template.name"):
                message.setdefault("template", {})["name"] = cell
            elif head == "template":
                message.setdefault("template", {})[tail] = cell
            elif head == "parameters":
                message.setdefault("template", {}).setdefault("parameters", []).append(cell)
            elif head == "attributes":
                message.setdefault("attributes", {})[tail] = cell
            else:
                message[column] = cell
        lines.append(json.dumps(message))
    return "\n".join(lines) + "\n"


@pytest.fixture
async def providers() -> AsyncIterator[tuple[FakeProviders, str]]:
    fake = FakeProviders()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def test_a_quoted_body_over_several_lines_is_one_command() -> None:
    """The examples' JSON bodies span lines inside one quoted argument, as bash reads them."""
    [command] = parse('## X\n\n```sh\ncurl -d \'{\n  "a": 1,\n  "b": "#2"}\'  # it\'s sent\n```\n')
    assert command.text == 'curl -d \'{\n  "a": 1,\n  "b": "#2"}\'  # it\'s sent'
    assert command.bare == 'curl -d \'{ "a": 1, "b": "#2"}\''


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_the_business_started_examples_answer_as_documented(
    infrastructure: Infrastructure,
    database_url: str,
    tmp_path: Path,
    providers: tuple[FakeProviders, str],
) -> None:
    fake, base = providers
    commands = commands_run_by(test_the_business_started_examples_answer_as_documented)
    assert {c.section for c in commands} == {SECTION}
    assert all(c.kind == "sh" for c in commands), [str(c) for c in commands]
    whatsapp = _one(commands, r'"channel": "whatsapp"')
    ann_sms = _one(commands, r"\$ANN_TOKEN")
    spring_sale = _one(commands, r"\"spring-sale\"")
    resume = _one(commands, r"/resume ")

    table = _readme_csv()
    (tmp_path / "reminders.csv").write_text(table)
    (tmp_path / "reminders.ndjson").write_text(_as_ndjson(table))
    tag = uuid.uuid4().hex[:8]
    config = tmp_path / "switchboard.toml"
    config.write_text(to_toml(_config(tag, base)))
    port = free_port()
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
        "DATABASE_URL": database_url,
        "SWITCHBOARD_CONFIG": str(config),
        **SECRETS,
    }

    shell = Shell(tmp_path, port, {"SWITCHBOARD_CONFIG": str(config)})
    tokens = {}
    for scope, naming in (("admin", "--name crm"), ("agent", "--agent-id ann")):
        outcome = await shell.run(
            f"DATABASE_URL='{database_url}' switchboard token create --domain acme "
            f"--scope {scope} {naming}"
        )
        assert outcome.returncode == 0, str(outcome)
        [tokens[scope]] = outcome.stdout.split()
    shell.env.update(ADMIN_TOKEN=tokens["admin"], ANN_TOKEN=tokens["agent"])

    async with switchboard_run(tmp_path, port, environ) as service:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            # Ann is registered (the send names her, and she sends as herself).
            registered = await shell.run(
                f"curl -X PUT localhost:{port}/v1/domains/acme/agents/ann"
                ' -H "Authorization: Bearer $ADMIN_TOKEN" -H "Content-Type: application/json"'
                """ -d '{"name": "Ann", "queues": ["sales"], "capacity": {"sms": 2}}'"""
            )
            assert registered.statuses == [202], str(registered)
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT count(*) FROM agents WHERE domain = 'acme' AND agent_id = 'ann'"
                ),
                what="Ann registered in PostgreSQL",
            )

            first: dict[str, Any] = {}
            for command in commands:
                if is_setting(command):
                    await shell.run(command)
                    continue
                if command.bare.startswith("curl $A/outbound/$OUTBOUND_ID "):
                    await wait_until(
                        lambda: pool.fetchval(
                            "SELECT status = 'sent' FROM outbound_messages WHERE outbound_id = $1",
                            shell.env["OUTBOUND_ID"],
                        ),
                        what="the WhatsApp template sent",
                    )
                body = _check_for(command)(await shell.run(command))
                if command is whatsapp:
                    shell.env["OUTBOUND_ID"] = body["outbound_id"]
                    first = body

            # "A send whose key was used before … answers 200 with the first send's record
            # ("duplicate": true) and sends nothing": the record as it is now, sent.
            again = _status(
                200, lambda body: body == {**first, "status": "sent", "duplicate": True}
            )
            again(await shell.run(whatsapp))
            # "a cancelled campaign cannot be resumed and takes no more batches"
            cancelled = _status(409, lambda body: body == {"error": "campaign_cancelled"})
            cancelled(await shell.run(resume))
            cancelled(await shell.run(spring_sale))
            # "An address that opted out … is refused, 409 opted_out"
            opted_out = _status(409, lambda body: body == {"error": "opted_out"})
            opted_out(await shell.run(ann_sms))

            # "pause, resume and cancel are in the audit log as campaign.pause,
            # campaign.resume, campaign.cancel, and each batch as campaign.send"
            audited = await pool.fetch(
                "SELECT action, target FROM audit_log"
                " WHERE domain = 'acme' AND action LIKE 'campaign.%' ORDER BY id"
            )
            assert [(r["action"], r["target"]) for r in audited] == [
                ("campaign.send", "campaign spring-sale"),
                ("campaign.send", "campaign reminders-0601"),
                ("campaign.send", "campaign reminders-0601"),
                ("campaign.pause", "campaign spring-sale"),
                ("campaign.resume", "campaign spring-sale"),
                ("campaign.cancel", "campaign spring-sale"),
            ]

            # The sender sent the template and Ann's SMS; the campaigns' messages wait.
            await wait_until(lambda: len(fake.delivered) == 2, what="two messages at the providers")
            by_provider = {message.provider: message for message in fake.delivered}
            sent = by_provider["whatsapp"]
            assert (sent.sender, sent.to) == (WA_NUMBER_ID, CUSTOMER.lstrip("+")), sent
            template = sent.json["template"]
            assert template["name"] == "delivery_update_v2"  # the approved provider template
            assert template["language"]["code"] == "en_US"
            [component] = template["components"]
            assert [p["text"] for p in component["parameters"]] == ["Ann", "A-1234"]
            sms = by_provider["twilio"]
            assert (sms.sender, sms.to, sms.form["Body"]) == (
                OUR_NUMBER,
                CUSTOMER,
                "Your table is ready.",
            )
        finally:
            await pool.close()
        assert service.process.returncode is None
