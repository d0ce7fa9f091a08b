"""Every README command is run by a test or mapped to one (``tests/readme/commands.py``), and
the commands that need no service of their own run here: ``make help``, ``switchboard
migrate``, ``switchboard router`` and ``switchboard adapters``."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import uuid
from contextlib import AsyncExitStack
from functools import cache
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from runtime import db, kafka
from schemas import topics
from switchboard.config import DEFAULTS_PATH
from switchboard.embedded import free_port
from tests.conftest import Infrastructure
from tests.readme.commands import (
    ROOT,
    RULES,
    ByMakeTest,
    Mapped,
    Run,
    commands_run_by,
    names_a_test,
    parse,
    readme_commands,
    rule_for,
)
from tests.readme.shell import BIN, clean_environment, switchboard_run
from tests.support import make_config, open_webchat_session, wait_until


@cache
def dry_run(target: str) -> tuple[str, ...]:
    """What ``make <target>`` would run, as if the virtual environment were out of date."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-W", "pyproject.toml", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())


# -- the classification ---------------------------------------------------------------


def test_every_readme_command_is_run_or_mapped() -> None:
    commands = readme_commands()
    assert len(commands) > 50, "the README parser lost the commands"
    unclassified = [str(c) for c in commands if rule_for(c) is None]
    assert not unclassified, (
        "README commands no test runs; run them in tests/readme or map them in "
        "tests/readme/commands.py:\n" + "\n".join(unclassified)
    )


def test_a_new_command_nobody_runs_is_caught() -> None:
    text = """## Quick start

Then `make frobnicate`, or:

```sh
curl -X DELETE localhost:8080/v1/domains/default \\
     -H 'X-Sure: yes'   # drops everything
```

```console
$ switchboard frobnicate
frobnicated
```
"""
    commands = parse(text)
    assert [(c.kind, c.line, c.bare) for c in commands] == [
        ("inline", 3, "make frobnicate"),
        ("sh", 6, "curl -X DELETE localhost:8080/v1/domains/default -H 'X-Sure: yes'"),
        ("console", 11, "switchboard frobnicate"),
    ]
    assert [rule_for(c) for c in commands] == [None, None, None]


def test_every_rule_names_a_test_that_exists() -> None:
    missing = [
        rule.coverage.test
        for rule in RULES
        if isinstance(rule.coverage, Run | Mapped) and not names_a_test(rule.coverage.test)
    ]
    assert not missing, f"rules name tests that do not exist: {missing}"
    run_elsewhere = [
        rule.coverage.test
        for rule in RULES
        if isinstance(rule.coverage, Run) and not rule.coverage.test.startswith("tests/readme/")
    ]
    assert not run_elsewhere


def test_mapped_make_targets_run_what_the_mapped_tests_run() -> None:
    for rule in RULES:
        coverage = rule.coverage
        if isinstance(coverage, Mapped) and coverage.recipe is not None:
            target = re.fullmatch(r"\^make (\w+)\$", rule.pattern)
            assert target, rule.pattern
            assert dry_run(target[1])[-1] == coverage.recipe, (rule.pattern, dry_run(target[1]))


def test_make_test_runs_what_the_readme_says_it_runs() -> None:
    steps = dry_run("test")
    for rule in RULES:
        coverage = rule.coverage
        if not isinstance(coverage, ByMakeTest):
            continue
        if coverage.line is not None:
            assert coverage.line in steps, (rule.pattern, steps)
        if coverage.target is not None:
            part = dry_run(coverage.target)
            assert part, coverage.target
            assert set(part) <= set(steps), (rule.pattern, part, steps)


def test_the_kubectl_upgrade_commands_name_the_migrate_job() -> None:
    [command] = [c for c in readme_commands() if c.bare.startswith("kubectl -n ")]
    k8s = ROOT / "deploy" / "k8s"
    namespace = yaml.safe_load((k8s / "kustomization.yaml").read_text())["namespace"]
    job = yaml.safe_load((k8s / "migrate-job.yaml").read_text())
    assert job["kind"] == "Job"
    name = job["metadata"]["name"]
    assert set(re.findall(r"-n (\S+)", command.bare)) == {namespace}
    assert set(re.findall(r"\bjob[ /](\S+)", command.bare)) == {name}
    assert "apply -k deploy/k8s" in command.bare


# -- commands run here ------------------------------------------------------------------


def test_make_help_lists_the_targets_the_readme_names() -> None:
    commands = commands_run_by(test_make_help_lists_the_targets_the_readme_names)
    assert {c.bare for c in commands} == {"make help"}
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    named = {m[1] for c in readme_commands() if (m := re.match(r"^make (\w+)", c.bare))}
    assert named <= listed, named - listed


def test_pytest_n_0_runs_the_tests_in_one_process() -> None:
    """The README's way out of the workers (for ``--pdb``): the same tests, no worker."""
    [command] = commands_run_by(test_pytest_n_0_runs_the_tests_in_one_process)
    assert command.bare == ".venv/bin/pytest -n 0"
    argv = [*shlex.split(command.bare), "-v", "tests/engine/test_rules.py"]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert re.search(r"^=+ \d+ passed", result.stdout, re.M), result.stdout[-2000:]
    # On workers, -v names the worker of each test ("[gw0] PASSED …").
    assert "[gw" not in result.stdout


@pytest.mark.integration
async def test_switchboard_migrate_applies_and_exits(infrastructure: Infrastructure) -> None:
    commands = {c.bare for c in commands_run_by(test_switchboard_migrate_applies_and_exits)}
    assert commands == {"switchboard migrate"}
    name = infrastructure.template.replace("template", "t") + f"_migrate_{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(infrastructure.server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    env = {**clean_environment(), "DATABASE_URL": db.with_database(infrastructure.server_url, name)}
    try:
        first, again = [
            await asyncio.to_thread(
                subprocess.run,
                [str(BIN / "switchboard"), "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            for _ in range(2)
        ]
    finally:
        conn = await asyncpg.connect(infrastructure.server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    assert first.returncode == 0, first.stderr
    assert re.search(r"^applied migrations: \[.+\]$", first.stdout, re.M), first.stdout
    assert again.returncode == 0, again.stderr
    assert "applied migrations: none (up to date)" in again.stdout


@pytest.mark.integration
async def test_the_router_and_the_adapters_run_as_separate_processes(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    commands = commands_run_by(test_the_router_and_the_adapters_run_as_separate_processes)
    assert {c.bare for c in commands} == {"switchboard router", "switchboard adapters"}
    bare = clean_environment()
    for role in ("router", "adapters"):  # "(needs both variables)"
        refused = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "switchboard"), role],
            env=bare,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 1, refused.stderr
        assert "set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL" in refused.stderr

    environ = _packaged_defaults(infrastructure, database_url, tmp_path)
    async with AsyncExitStack() as stack:
        router, adapters = await asyncio.gather(
            stack.enter_async_context(
                switchboard_run(tmp_path, free_port(), environ, command="router")
            ),
            stack.enter_async_context(
                switchboard_run(tmp_path, free_port(), environ, command="adapters")
            ),
        )
        agent = "/v1/domains/default/agents/ann"
        webchat = "/v1/domains/default/webchat/messages"
        message = {"message_id": "m1", "text": "Hello?"}
        async with aiohttp.ClientSession() as http:
            # The router serves the agent API, the adapters web chat; neither the other's.
            async with http.put(router.url + agent, json={"capacity": {"webchat": 1}}) as r:
                assert r.status == 202, await r.text()
            async with http.post(router.url + agent + "/presence", json={"status": "online"}) as r:
                assert r.status == 202, await r.text()
            visitor = await open_webchat_session(http, adapters.url, "default")
            async with http.post(adapters.url + webchat, json=message, headers=visitor.auth) as r:
                assert r.status == 202, await r.text()
            async with http.get(adapters.url + agent) as r:
                assert r.status == 404
            async with http.post(router.url + webchat, json=message, headers=visitor.auth) as r:
                assert r.status == 404
        conn = await asyncpg.connect(database_url)
        try:
            await wait_until(
                lambda: conn.fetchval("SELECT agent_id FROM assignments"),
                timeout=20,
                what="the conversation assigned",
            )
            assert await conn.fetchval("SELECT agent_id FROM assignments") == "ann"
        finally:
            await conn.close()


@pytest.mark.integration
async def test_switchboard_refuses_unequal_partition_counts(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(infrastructure.bootstrap_servers, database_url)
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(config.topic(topics.INBOUND), 2, 1),
                NewTopic(config.topic(topics.AGENTS), 3, 1),
            ]
        )
    finally:
        await admin.close()
    with pytest.raises(RuntimeError, match="must have the same partition count"):
        await kafka.ensure_topics(config, {})


@pytest.mark.integration
async def test_a_service_is_ready_only_once_it_listens_itself(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    """Another server answering ``/readyz`` on the chosen port is not taken for ours: ours
    cannot bind it, exits, and ``switchboard_run`` says so instead of handing the port on."""

    async def someone_else(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="someone else")

    app = aiohttp.web.Application()
    app.router.add_get("/readyz", someone_else)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    environ = _packaged_defaults(infrastructure, database_url, tmp_path)
    try:
        with pytest.raises(AssertionError, match="switchboard router exited") as refused:
            async with switchboard_run(tmp_path, port, environ, command="router"):
                pass
        assert f"cannot listen on 127.0.0.1:{port}" in str(refused.value)
    finally:
        await runner.cleanup()


def _packaged_defaults(
    infrastructure: Infrastructure, database_url: str, directory: Path
) -> dict[str, str]:
    """The environment of a service on the packaged defaults, with topics and a consumer
    group of the test's own."""
    tag = uuid.uuid4().hex[:8]
    config = directory / "switchboard.toml"
    config.write_text(DEFAULTS_PATH.read_text() + f'\n[kafka]\nconsumer_group = "readme-{tag}"\n')
    return {
        "KAFKA_BOOTSTRAP_SERVERS": infrastructure.bootstrap_servers,
        "DATABASE_URL": database_url,
        "SWITCHBOARD_TOPIC_PREFIX": f"readme{tag}.",
        "SWITCHBOARD_CONFIG": str(config),
    }
