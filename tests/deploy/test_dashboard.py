"""The Grafana dashboard: importable as is, provisioned by the compose file, every panel's
PromQL selects metrics a real Switchboard exposes, and every query of a per-domain metric
follows the ``domain`` variable."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from schemas import Channel
from tests.deploy.conftest import (
    DEPLOY,
    load_yaml,
    missing_names,
    per_domain_names,
    promql_metric_names,
    promql_selectors,
)
from tests.deploy.conftest import exposed_names as names_in

GRAFANA = DEPLOY / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
DOMAIN_FILTER = 'domain=~"$domain"'


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GRAFANA / "switchboard.json").read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _dashboard()["templating"]["list"]}


def _domain_values_query() -> str:
    """The query of the ``domain`` variable's values."""
    query: str = _variables()["domain"]["query"]["query"]
    return query


def unfiltered_selectors(expr: str) -> list[str]:
    """Selectors of per-domain metrics in ``expr`` that do not follow the ``domain``
    variable: such a query mixes in the domains not selected."""
    per_domain = per_domain_names()
    return [
        f"{name}{{{matchers}}}"
        for name, matchers in promql_selectors(expr)
        if name in per_domain and DOMAIN_FILTER not in matchers.replace(" ", "")
    ]


def test_the_dashboard_is_an_importable_grafana_model() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "switchboard"
    assert dashboard["title"] == "Switchboard"
    assert dashboard["id"] is None  # importable: Grafana assigns the id
    assert isinstance(dashboard["schemaVersion"], int)
    variables = _variables()
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["channel"]["query"].split(",") == [c.value for c in Channel]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_the_domain_variable_offers_every_domain_exposed_several_at_once() -> None:
    variable = _variables()["domain"]
    assert variable["type"] == "query"
    assert variable["datasource"] == DATASOURCE
    assert (variable["multi"], variable["includeAll"]) == (True, True)
    # All matches every value, and the series of no domain (dead letters of none) too.
    assert variable["allValue"] == ".*"
    assert variable["current"]["value"] == ["$__all"]
    query = re.fullmatch(r"label_values\((\w+), *domain\)", _domain_values_query())
    assert query, _domain_values_query()
    assert query[1] in per_domain_names()
    assert variable["definition"] == _domain_values_query()


def test_every_query_of_a_per_domain_metric_follows_the_domain_variable() -> None:
    for panel in _panels():
        for target in panel["targets"]:
            assert unfiltered_selectors(target["expr"]) == [], panel["title"]


def test_a_query_not_filtered_by_domain_is_caught() -> None:
    assert unfiltered_selectors(
        'sum(rate(switchboard_assignments_total{channel=~"$channel"}[5m]))'
        " / sum(rate(switchboard_assignment_wait_seconds_count[5m]))"
        ' + sum(switchboard_agents{domain=~"$domain"})'
        " + max(switchboard_consumer_lag_records)"
    ) == [
        'switchboard_assignments_total{channel=~"$channel"}',
        "switchboard_assignment_wait_seconds_count{}",
    ]


def test_the_domains_can_be_told_apart() -> None:
    by_domain = {
        name
        for expr in _exprs()
        if re.search(r"by \((le, )?domain\)", expr)
        for name in promql_metric_names(expr)
    }
    assert {
        "switchboard_routed_messages_total",
        "switchboard_assignments_total",
        "switchboard_queue_waiting_conversations",
        "switchboard_assignment_wait_seconds_bucket",
        "switchboard_sla_breaches_total",
        "switchboard_agent_occupancy_ratio",
    } <= by_domain
    assert any("by (domain, topic, reason)" in expr for expr in _exprs())


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_the_dashboard_shows_what_operations_asked_for() -> None:
    used = set().union(*(promql_metric_names(expr) for expr in _exprs()))
    assert {
        "switchboard_inbound_messages_total",  # traffic by channel
        "switchboard_assignments_total",  # assignments by strategy
        "switchboard_preferred_agent_hits_total",  # preferred-agent hit ratio
        "switchboard_preferred_agent_misses_total",
        "switchboard_assignment_wait_seconds_bucket",  # waits
        "switchboard_sla_breaches_total",  # SLA
        "switchboard_queue_waiting_conversations",  # queue length
        "switchboard_agents",  # agents by presence
        "switchboard_agent_occupancy_ratio",  # occupancy
        "switchboard_overflows_total",  # overflow
        "switchboard_consumer_lag_records",  # lag
        "switchboard_outbox_backlog_events",
        "switchboard_dead_letters_total",  # errors
        "switchboard_webhook_signature_failures_total",
    } <= used
    assert any("by (strategy)" in expr for expr in _exprs())
    assert any("by (presence)" in expr for expr in _exprs())


def test_the_panels_use_only_exposed_metrics(scrape: str) -> None:
    exposed = names_in(scrape)
    for expr in [*_exprs(), _domain_values_query()]:
        assert missing_names(promql_metric_names(expr), exposed) == set(), expr


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")["services"]
    grafana = compose["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    provisioning = GRAFANA / "provisioning"
    assert all((DEPLOY / host).exists() for host in mounts), mounts
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard_mount = mounts["./grafana/switchboard.json"]

    (source,) = load_yaml(provisioning / "datasources/prometheus.yaml")["datasources"]
    assert source["type"] == "prometheus"
    port = compose["prometheus"]["ports"][0].split(":")[-1]
    assert source["url"] == f"http://prometheus:{port}"
    assert source["isDefault"] is True

    (provider,) = load_yaml(provisioning / "dashboards/switchboard.yaml")["providers"]
    assert provider["type"] == "file"
    assert dashboard_mount.rsplit("/", 1)[0] == provider["options"]["path"]


def test_the_panel_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every query, once Grafana's variables are replaced by values."""
    variables = {"$__rate_interval": "5m", "$channel": "webchat", "$domain": "acme|beta"}
    rules = []
    for number, expr in enumerate(_exprs()):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
