"""The README's commands, and which test runs each one.

A command is a line of a ``sh`` block (with its continuation lines, and the lines of a
quoted string it opens, such as a JSON body), a ``$`` line of a
``console`` block, or an inline code span that starts with a program (``make …``,
``switchboard …``, ``docker …``, ``kubectl …``, …). Each one matches the first rule of
``RULES`` whose pattern it matches:

- ``Run``: a test of this package runs it as written, against a real service.
- ``Mapped``: another test runs it, or what it builds; the reason says why not here.
- ``ByMakeTest``: ``make test`` itself runs it (its dry run contains the steps).

``tests/readme/test_commands.py`` fails when a command matches no rule, and when a rule
names a test that no longer exists.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

PROGRAMS = (
    "make",
    "switchboard",
    "curl",
    "docker",
    "kubectl",
    "promtool",
    "kafka-topics.sh",
    "python",
    "pip",
    "pytest",
    "uv",
    "git",
    "openssl",
    "sh",
    "bash",
)
"""Programs whose inline code spans are commands (a bare name, without arguments, is not)."""

_FENCE = re.compile(r"^(`{3,})\s*(\S*)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$")
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_PROGRAM = "|".join(re.escape(p) for p in PROGRAMS)
_INLINE_COMMAND = re.compile(rf"^(?:\.venv/bin/\S+|(?:{_PROGRAM}))\s+\S")


@dataclass(frozen=True)
class Command:
    text: str
    """As written, continuation lines included, so that bash runs what the README shows."""
    line: int
    """README line it starts on (1-based)."""
    section: str
    """The heading it is under."""
    kind: Literal["sh", "console", "inline"]

    @property
    def flat(self) -> str:
        """One line, continuations and runs of blanks collapsed: what rules match."""
        return " ".join(self.text.replace("\\\n", " ").split())

    @property
    def bare(self) -> str:
        """``flat`` without its trailing comment."""
        return _without_comment(self.flat)

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.section}): {self.flat}"


def _without_comment(text: str) -> str:
    quote = None
    previous = " "
    for index, char in enumerate(text):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return text[:index].rstrip()
        previous = char
    return text


@dataclass(frozen=True)
class Run:
    """A test of this package runs the command as written (ports and placeholders aside)."""

    test: str
    how: str = ""


@dataclass(frozen=True)
class Mapped:
    """Another test runs the command, or checks what it would build."""

    test: str
    reason: str
    recipe: str | None = None
    """For a make target: the last line of its dry run (``make -n``), the command the
    mapped test runs."""


@dataclass(frozen=True)
class ByMakeTest:
    """``make test`` runs it: the dry run of ``target`` (or ``line``) is part of its own."""

    reason: str
    target: str | None = None
    line: str | None = None


Coverage = Run | Mapped | ByMakeTest


@dataclass(frozen=True)
class Rule:
    pattern: str
    """Searched in the command's text, on one line and without its comment."""
    coverage: Coverage
    section: str | None = None
    """Only commands under this heading."""

    def matches(self, command: Command) -> bool:
        if self.section is not None and command.section != self.section:
            return False
        return re.search(self.pattern, command.bare) is not None


QUICK_START = "tests/readme/test_quick_start.py::test_see_it_route_assigns_the_visitor_to_ann"
AGENT_API = "tests/readme/test_agent_api.py::test_the_agent_api_examples_answer_as_documented"
CHANNELS = "tests/readme/test_channel_examples.py::test_the_webhook_examples_are_accepted"
OUTBOUND = (
    "tests/readme/test_outbound_examples.py"
    "::test_the_business_started_examples_answer_as_documented"
)
DEMO = "tests/readme/test_demo.py::test_make_demo_simulates_every_channel_then_stops_the_service"
COMMANDS = "tests/readme/test_commands.py"
MANAGING = (
    "tests/readme/test_managing_configuration.py"
    "::test_the_configuration_examples_answer_as_documented"
)
TOKEN_COMMANDS = "tests/api/test_tokens.py::test_the_token_commands_create_list_rotate_and_revoke"
TOKEN_LIFECYCLE = (
    "tests/api/test_tokens.py::test_a_domain_admin_creates_lists_rotates_and_revokes_tokens"
)
AUDIT_LOG = (
    "tests/api/test_audit.py::test_admins_read_their_domain_and_platform_principals_every_entry"
)

NO_DOCKER = "no Docker engine runs where the suite runs"
NO_CLUSTER = "no Kubernetes cluster runs where the suite runs"

RULES: tuple[Rule, ...] = (
    # -- Reference bots ---------------------------------------------------------------
    Rule(
        r"^DATABASE_URL=… python -m tools\.bots\.kafka_bot ",
        Mapped(
            "tests/integration/test_bots_e2e.py::test_kafka_bot_contains_a_conversation",
            "starts `python -m tools.bots.kafka_bot` with the test database's URL in "
            "DATABASE_URL, the test broker's address, its domain and bot, as a process of its "
            "own beside the service",
        ),
    ),
    Rule(
        r"^HELPER_BOT_SECRET=… python -m tools\.bots\.http_bot ",
        Mapped(
            "tests/integration/test_bots_e2e.py::test_http_bot_contains_a_conversation",
            "starts `python -m tools.bots.http_bot` on a free port with a secret in the "
            "environment, and the service's bot bridge calls it",
        ),
    ),
    # -- Quick start and the make targets -------------------------------------------
    Rule(
        r"^make run$",
        Mapped(
            "tests/integration/test_lifecycle.py"
            "::test_sigterm_to_make_run_stops_cleanly_and_leaves_no_broker_or_postgres",
            "runs `make run` itself on the embedded broker and PostgreSQL, and stops it; the "
            "curl slice of 'See it route' runs against its command, `switchboard run` "
            f"({QUICK_START})",
            recipe="exec .venv/bin/switchboard run",
        ),
    ),
    Rule(
        r"^make test$",
        ByMakeTest("the command that runs this suite", line=".venv/bin/pytest"),
    ),
    Rule(
        r"^make install$",
        ByMakeTest("make test first builds what make install builds", target="install"),
    ),
    Rule(
        r"^make tools$",
        ByMakeTest("make test runs make tools first", target="tools"),
    ),
    Rule(
        r"^\.venv/bin/pytest tests/adapters\b",
        ByMakeTest(
            "make test's pytest collects every test under tests/, tests/adapters included",
            line=".venv/bin/pytest",
        ),
    ),
    Rule(r"^make help$", Run(f"{COMMANDS}::test_make_help_lists_the_targets_the_readme_names")),
    Rule(
        r"^\.venv/bin/pytest -n 0$",
        Run(f"{COMMANDS}::test_pytest_n_0_runs_the_tests_in_one_process", "on one test file"),
    ),
    Rule(
        r"^make demo$",
        Run(
            DEMO,
            "with a short DEMO_DURATION and a free DEMO_PORT, on the test's broker and database",
        ),
    ),
    Rule(
        r"^make lock LOCK_ARGS=",
        Mapped(
            "tests/test_lock.py::test_upgrading_one_package_moves_that_package_alone",
            "runs `make lock LOCK_ARGS=--upgrade-package msgspec` in a copy of the project "
            "(`--upgrade` is the same recipe with uv's option for every package)",
        ),
    ),
    Rule(
        r"^make lock$|^uv pip compile ",
        Mapped(
            "tests/test_lock.py::test_make_lock_reproduces_the_committed_locks",
            "runs `make lock` (uv pip compile --universal) in a copy of the project and "
            "compares the locks",
        ),
    ),
    Rule(
        r"^pip install --require-hashes --no-deps$",
        ByMakeTest("make install's recipe, which make test runs first", target="install"),
    ),
    Rule(
        r"^make schemas$",
        Mapped(
            "tests/test_contract.py::test_generated_json_schemas_are_fresh",
            "fails when `switchboard schemas` would change a file; the suite does not "
            "rewrite the working tree",
            recipe=".venv/bin/switchboard schemas",
        ),
    ),
    Rule(
        r"^make bench$",
        Mapped(
            "tests/readme/test_bench.py::test_the_benchmark_runs_at_a_small_scale",
            "the benchmark takes minutes: the test runs `python -m tools.bench` (what make bench "
            "runs) with a thousandth of its message counts",
            recipe=".venv/bin/python -m tools.bench",
        ),
    ),
    Rule(
        r"^python -m tools\.bench\.cpu_profile FILE$",
        Mapped(
            "tests/tools/test_cpu_profile.py::"
            "test_the_command_line_prints_the_summary_of_a_written_profile",
            "FILE is a profile the benchmark wrote: the test writes one and runs the command on it",
        ),
    ),
    # -- See it route -----------------------------------------------------------------
    Rule(
        r"^curl |^TOKEN=\$\(curl ",
        Run(QUICK_START, "with the service's port for 8080"),
        section="See it route",
    ),
    # -- the switchboard command ------------------------------------------------------
    Rule(r"^switchboard run$", Run(QUICK_START)),
    Rule(
        r"^switchboard (router|adapters)$",
        Run(f"{COMMANDS}::test_the_router_and_the_adapters_run_as_separate_processes"),
    ),
    Rule(r"^switchboard migrate$", Run(f"{COMMANDS}::test_switchboard_migrate_applies_and_exits")),
    Rule(
        r"^switchboard schemas$",
        Mapped(
            "tests/test_contract.py::test_generated_json_schemas_are_fresh",
            "fails when `switchboard schemas` would change a file (and "
            "tests/deploy/test_asyncapi.py for schemas/asyncapi.yaml); the suite does not "
            "rewrite the working tree",
        ),
    ),
    Rule(
        r"^switchboard token (list|rotate|revoke)\b"
        r"|^switchboard token create\b.*--(platform|expires-in)\b",
        Mapped(
            TOKEN_COMMANDS,
            "runs `switchboard token create --platform` and `--expires-in`, `list` (whole, "
            "--platform, --domain), `rotate --grace` and `revoke` on a test database, and "
            "checks what each printed, stored and audited",
        ),
    ),
    Rule(
        r".",
        Mapped(
            TOKEN_LIFECYCLE,
            "sends these requests (create, list and page, rotate with and without a grace "
            "period, revoke twice, platform tokens) to a running service with real tokens; "
            "the CLI lines are those of test_the_token_commands_create_list_rotate_and_revoke",
        ),
        section="Token lifecycle",
    ),
    Rule(
        r".",
        Mapped(
            AUDIT_LOG,
            "reads a domain's entries as its admin and every entry as a platform token, paged "
            "by after/limit and filtered by action and domain",
        ),
        section="Audit log",
    ),
    Rule(
        r"switchboard token create",
        Run(AGENT_API, "with the test's DATABASE_URL and configuration"),
    ),
    Rule(r"^switchboard simulate$", Run(DEMO, "make demo runs it")),
    Rule(
        r".",
        Run(MANAGING, "with a platform token, the service's configuration and port"),
        section="Managing configuration",
    ),
    Rule(
        r"^switchboard config apply FILE$|^switchboard config export$",
        Mapped(MANAGING, "runs `switchboard config export` and `config apply` as written there"),
    ),
    Rule(
        r"^switchboard config export --format json > current\.json$"
        r"|^switchboard config apply current\.json --dry-run$",
        Mapped(
            "tests/control/test_config_api.py::test_config_apply_and_export_through_the_api",
            "exports the current version as JSON, then applies a copy a limit refuses with"
            " --dry-run: named, not sent",
        ),
        section="Upgrading",
    ),
    Rule(
        r"^switchboard dead-letters$",
        Mapped(
            "tests/integration/test_dead_letters.py"
            "::test_an_admin_lists_inspects_and_redrives_a_dead_letter",
            "runs `switchboard dead-letters list`, `show` and `redrive` on a real dead letter",
        ),
    ),
    Rule(
        r"^switchboard retention run( --domain \S+)?$",
        Mapped(
            "tests/integration/test_retention.py::test_switchboard_retention_run_prints_the_counts",
            "runs `.venv/bin/switchboard retention run --domain acme` and the whole pass on a "
            "test database with expired rows, and checks the JSON it printed, the rows, the "
            "audit entry, a domain a router's pass holds (busy, exit 1) and an unknown domain",
        ),
    ),
    Rule(
        r"^switchboard forecast( --domain \S+)?$",
        Mapped(
            "tests/tools/test_planning_cli.py"
            "::test_forecast_prints_the_models_error_and_the_coming_days",
            "runs `.venv/bin/switchboard forecast --domain acme --days 2` (and `--json`) on a "
            "test database holding five weeks of measured workload, and checks the model "
            "line, the table's 48 intervals and the held-out error",
        ),
    ),
    Rule(
        r"^switchboard staffing$",
        Mapped(
            "tests/tools/test_planning_cli.py"
            "::test_staffing_searches_a_roster_with_progress_and_prints_it",
            "runs `.venv/bin/switchboard staffing --domain acme --roster <a TOML roster>` "
            "(and `--json`) on five weeks of measured workload, and checks the progress lines, "
            "the table and that every interval meets the target; "
            "test_the_readme_roster_is_a_staffing_request checks the README's roster file",
        ),
    ),
    Rule(
        r"^switchboard workload (backfill|show)\b",
        Mapped(
            "tests/integration/test_workload_job.py"
            "::test_backfill_then_show_print_the_measured_hour",
            "runs `.venv/bin/switchboard workload backfill --domain acme --since … --until …` "
            "and `show --interval 60 --from … --to …` on a test database holding a constructed "
            "hour of history, and checks the progress lines, the summary and every cell of the "
            "table (the README's sample line is that hour's); "
            "test_backfill_draws_one_updating_line_in_a_terminal runs it in a terminal",
        ),
    ),
    Rule(
        r"^kafka-configs\.sh --alter ",
        Mapped(
            "tests/deploy/test_topic_retention.py"
            "::test_the_topics_keep_records_no_longer_than_any_domain_keeps_them",
            "Apache Kafka's own tool, run by an operator on a real cluster; the tests check the "
            "rule it applies (the deploy files' topic retention against the domains' periods) "
            "and tests/test_retention_config.py that created topics get kafka.topic_retention_ms",
        ),
    ),
    Rule(
        r"^switchboard replay$|^switchboard --config \S+ replay |^printf '\[routing",
        Mapped(
            "tests/replay/test_replay.py::test_longer_preferred_wait_hits_more_and_waits_longer",
            "runs `switchboard --config <the service's file> replay --domain acme --routing "
            "<the same candidate>` over traffic it recorded; the README's --from/--to name "
            "the day of its own example",
        ),
    ),
    # -- Development: mutation testing ------------------------------------------------
    Rule(
        r"^make mutate$",
        Mapped(
            f"{COMMANDS}::test_make_help_lists_the_targets_the_readme_names",
            "a mutation run takes from minutes to hours (figures in 'Mutation testing'), so "
            "make test only checks the target exists and ends in `mutmut results`",
            recipe=".venv/bin/mutmut results",
        ),
    ),
    Rule(
        r"^make mutate MUTANTS=|^\.venv/bin/mutmut ",
        Mapped(
            f"{COMMANDS}::test_make_help_lists_the_targets_the_readme_names",
            "the same target with another selection, and mutmut's own reports of a run",
        ),
        section="Mutation testing",
    ),
    # -- Operations: dead letters ------------------------------------------------------
    Rule(
        r".",
        Mapped(
            "tests/integration/test_dead_letters.py"
            "::test_an_admin_lists_inspects_and_redrives_a_dead_letter",
            "makes a real dead letter (a constraint PostgreSQL enforces), then sends these "
            "API requests and runs these CLI commands with its id",
        ),
        section="Dead letters",
    ),
    # -- Agent API --------------------------------------------------------------------
    Rule(r".", Run(AGENT_API, "with real tokens, $C and the service's port"), section="Examples"),
    Rule(
        r"^curl -N ",
        Run(AGENT_API, "until the expected events came, with a real $LAST_ID"),
        section="Live stream (Server-Sent Events)",
    ),
    Rule(
        r".",
        Run(
            OUTBOUND,
            "with real tokens, a registered ann, the README's CSV example as reminders.csv "
            "(and as NDJSON), $OUTBOUND_ID from the first send, providers on loopback",
        ),
        section="Business-started messages",
    ),
    # -- Channel adapters ---------------------------------------------------------------
    *(
        Rule(r".", Run(CHANNELS, "with the README's [channels] and throwaway secrets"), section=s)
        for s in (
            "Twilio: SMS, MMS and WhatsApp through Twilio",
            "Meta: WhatsApp Cloud API, Messenger, Instagram",
            "Telegram",
            "Email (Mailgun)",
        )
    ),
    # -- Operations ---------------------------------------------------------------------
    Rule(
        r"^docker build -f deploy/docker/Dockerfile ",
        Mapped(
            "tests/deploy/test_compose.py::test_the_dockerfile_is_small_non_root_and_probes_healthz",
            f"{NO_DOCKER}: the test checks the Dockerfile it builds (base image, installs "
            "from the lock only, non-root user, HEALTHCHECK on /healthz, entry point)",
        ),
    ),
    Rule(
        r"^docker compose -f deploy/compose\.yaml up",
        Mapped(
            "tests/deploy/test_compose.py"
            "::test_the_stack_has_kafka_postgres_migrate_adapters_two_routers_prometheus_grafana",
            f"{NO_DOCKER}: tests/deploy/test_compose.py checks the file's services, commands, "
            "environment, ports and provisioning against the code",
        ),
    ),
    Rule(
        r"^kubectl -n switchboard delete job switchboard-migrate ",
        Mapped(
            "tests/deploy/test_kubernetes.py::test_the_migrate_job_runs_switchboard_migrate",
            f"{NO_CLUSTER}: the test checks the Job these commands re-run "
            "(test_commands checks its namespace and name)",
        ),
    ),
    Rule(
        r"^kubectl apply -k deploy/k8s$",
        Mapped(
            "tests/deploy/test_kubernetes.py::test_the_kustomization_lists_every_manifest",
            f"{NO_CLUSTER}: tests/deploy/test_kubernetes.py checks the manifests it applies",
        ),
    ),
    Rule(
        r"^promtool test rules$",
        Mapped(
            "tests/deploy/test_alerts.py::test_the_rule_unit_tests_pass",
            "runs `promtool test rules alerts_test.yaml`",
        ),
    ),
    Rule(
        r"^kafka-topics\.sh --alter --partitions ",
        Mapped(
            f"{COMMANDS}::test_switchboard_refuses_unequal_partition_counts",
            "Apache Kafka's own tool, run by an operator on a real cluster; the test checks "
            "what the step guards: Switchboard refuses to start when the two counts differ",
        ),
    ),
)


def _sections_and_lines(text: str) -> list[tuple[int, str, str | None, str]]:
    """Each line with its number, heading, and fence info string (None outside fences)."""
    out = []
    section = ""
    fence: str | None = None
    info = ""
    for number, line in enumerate(text.splitlines(), start=1):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence, info = opening.group(1), opening.group(2)
            continue
        if fence is not None and line.strip() == fence:
            fence = None
            continue
        if fence is None and (heading := _HEADING.match(line)):
            section = heading.group(1)
        out.append((number, section, info if fence is not None else None, line))
    return out


def _quote_after(line: str, quote: str | None) -> str | None:
    """The quote (bash's ``'`` or ``"``) still open at the end of ``line``, given the one
    open at its start: a quoted string that spans lines (a JSON body) continues the command."""
    escaped = False
    previous = " "
    for char in line:
        if escaped:
            escaped = False
        elif quote == "'":
            if char == "'":
                quote = None
        elif char == "\\":
            escaped = True
        elif quote == '"':
            if char == '"':
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            break  # a comment
        previous = char
    return quote


def parse(text: str) -> list[Command]:
    """Every command of a README text, in order."""
    commands: list[Command] = []
    paragraph: list[tuple[int, str, str]] = []
    pending: list[str] = []
    quote: str | None = None
    start = 0
    for number, section, info, line in _sections_and_lines(text):
        if info is None and line.strip() and not _HEADING.match(line):
            paragraph.append((number, section, line))
            continue
        commands.extend(_inline_commands(paragraph))
        paragraph = []
        if info not in ("sh", "console"):
            continue
        if not pending:
            if info == "console":
                if not line.startswith("$ "):
                    continue  # output
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = number
        pending.append(line)
        quote = _quote_after(line, quote)
        if quote is None and not line.endswith("\\"):
            commands.append(Command("\n".join(pending), start, section, info))  # type: ignore[arg-type]
            pending = []
    commands.extend(_inline_commands(paragraph))
    return commands


def _inline_commands(paragraph: list[tuple[int, str, str]]) -> list[Command]:
    """The commands among a paragraph's code spans (a span may cross a line break)."""
    if not paragraph:
        return []
    first, section, _ = paragraph[0]
    text = "\n".join(line for _, _, line in paragraph)
    found = []
    for span in _SPAN.finditer(text):
        code = " ".join(span.group(2).split())
        if _INLINE_COMMAND.match(code):
            found.append(
                Command(code, first + text.count("\n", 0, span.start()), section, "inline")
            )
    return found


@cache
def readme_commands() -> tuple[Command, ...]:
    return tuple(parse(README.read_text()))


def rule_for(command: Command) -> Rule | None:
    return next((rule for rule in RULES if rule.matches(command)), None)


def node_id(test: Callable[..., Any]) -> str:
    path = Path(inspect.getfile(test)).resolve().relative_to(ROOT)
    return f"{path.as_posix()}::{test.__name__}"


def commands_run_by(test: Callable[..., Any], section: str | None = None) -> list[Command]:
    """The README commands whose rule says ``test`` runs them, in README order."""
    wanted = node_id(test)
    found = []
    for command in readme_commands():
        rule = rule_for(command)
        if rule is None or not isinstance(rule.coverage, Run) or rule.coverage.test != wanted:
            continue
        if section is None or command.section == section:
            found.append(command)
    return found


def names_a_test(node: str) -> bool:
    """Whether ``path::function`` names a test function that exists."""
    path, _, name = node.partition("::")
    file = ROOT / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(
        isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name
        for item in tree.body
    )
