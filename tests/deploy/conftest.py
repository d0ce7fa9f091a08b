"""Fixtures of the deployment tests: the deploy files, promtool, and a real ``/metrics`` scrape.

The scrape comes from a real service (``tests.support.running_service``) on the session's
broker and PostgreSQL that has registered an agent and routed a web chat message, so the
names the dashboard and alerts use are checked against what Switchboard really exposes.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from runtime import db
from runtime.metrics import Metrics
from tests.conftest import Infrastructure
from tests.support import make_config, running_service, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path; missing promtool fails the tests (it never skips them)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run deploy/install-tools.sh as root "
            "(apt-get install prometheus) or put promtool on PATH",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
async def scrape(infrastructure: Infrastructure) -> AsyncIterator[str]:
    """``/metrics`` of a service that registered an agent and routed a web chat message."""
    name = infrastructure.template.replace("template", "t") + "_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(infrastructure.server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{infrastructure.template}"')
    finally:
        await conn.close()
    database_url = db.with_database(infrastructure.server_url, name)
    config = make_config(infrastructure.bootstrap_servers, database_url)
    admin = {"Authorization": "Bearer deploy-admin-token"}
    environ = {"SWITCHBOARD_ADMIN_TOKEN": "deploy-admin-token"}
    async with running_service(config, environ) as service:
        http = service.session
        agent_url = service.url("/v1/domains/acme/agents/ann")
        profile = {"name": "Ann", "capacity": {"webchat": 3}}
        async with http.put(agent_url, json=profile, headers=admin) as r:
            assert r.status == 202, await r.text()
        async with http.post(
            agent_url + "/presence", json={"status": "online"}, headers=admin
        ) as r:
            assert r.status == 202, await r.text()
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        try:
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT presence = 'online' FROM agents WHERE domain = 'acme' AND agent_id = 'ann'"
                ),
                what="ann online in PostgreSQL",
            )
        finally:
            await pool.close()
        message = {"session_id": "visitor-0001", "message_id": "m1", "text": "Where is my order?"}
        status, answer = await service.webchat(message)
        assert status == 202, answer

        async def scraped() -> str | None:
            async with http.get(service.url("/metrics")) as r:
                text = await r.text()
            routed = re.search(r"^switchboard_assignments_total\{.*\} 1\.0$", text, re.M)
            lag = re.search(r"^switchboard_consumer_lag_records\{", text, re.M)
            return text if routed and lag else None

        text: str = await wait_until(scraped, timeout=30, what="assignment and lag in /metrics")
    return text


METRIC_NAME = re.compile(r"\b(switchboard_[a-z0-9_]+|up)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exposed_names(scrape: str) -> set[str]:
    """Metric family names in a scrape (from ``# TYPE``) and every sample name."""
    names: set[str] = set()
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Switchboard's, and ``up``)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return {name for name in METRIC_NAME.findall(without_strings)}


SELECTOR = re.compile(r"\b(switchboard_[a-z0-9_]+)\b(\{[^}]*\})?")


def promql_selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers as written) of each selector of Switchboard's metrics."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: "_" * len(m[0]), expr)
    return [
        (match[1], expr[match.start(2) + 1 : match.end(2) - 1] if match[2] else "")
        for match in SELECTOR.finditer(without_strings)
    ]


def per_domain_names() -> set[str]:
    """Sample names of the metrics with a ``domain`` label (a histogram's series too)."""
    names = set()
    for metric in vars(Metrics()).values():
        # prometheus-client keeps the label names and type private; no public accessor
        if isinstance(metric, MetricWrapperBase) and "domain" in metric._labelnames:
            name = metric._name + ("_total" if metric._type == "counter" else "")
            names.add(name)
            if metric._type == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def missing_names(used: set[str], exposed: set[str]) -> set[str]:
    """Names used but not exposed; ``up`` is Prometheus's own, always there."""
    missing = set()
    for name in used - {"up"}:
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if name not in exposed and (base is None or base not in exposed):
            missing.add(name)
    return missing
