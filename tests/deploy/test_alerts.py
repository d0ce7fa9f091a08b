"""Alert rules: promtool accepts them and their unit tests pass, they cover what operations
need, the alerts on a domain's work fire per domain, and they use only metrics a real
Switchboard exposes."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from tests.deploy.conftest import (
    DEPLOY,
    load_yaml,
    missing_names,
    per_domain_names,
    promql_metric_names,
)
from tests.deploy.conftest import exposed_names as names_in

PROMETHEUS = DEPLOY / "prometheus"


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )


def _rules() -> list[dict[str, Any]]:
    return [
        rule for group in load_yaml(PROMETHEUS / "alerts.yaml")["groups"] for rule in group["rules"]
    ]


def test_promtool_checks_the_rules_and_the_compose_prometheus_config(promtool: str) -> None:
    rules = _promtool(promtool, "check", "rules", "alerts.yaml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = _promtool(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_rule_unit_tests_pass(promtool: str) -> None:
    tested = _promtool(promtool, "test", "rules", "alerts_test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def _fired_labels() -> dict[str, list[dict[str, str]]]:
    """The labels of every alert the unit tests expect, by alert name."""
    fired: dict[str, list[dict[str, str]]] = {}
    for test in load_yaml(PROMETHEUS / "alerts_test.yaml")["tests"]:
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts") or []:
                fired.setdefault(case["alertname"], []).append(alert["exp_labels"])
    return fired


def groupings_without_domain(expr: str) -> list[str]:
    """The aggregations of ``expr`` that drop the ``domain`` label (``sum``, ``max``... without
    a ``by`` that keeps it): such an alert mixes the domains, and names none."""
    dropped = []
    for match in re.finditer(r"\b(sum|max|min|avg|count)\s*(by\s*\(([^)]*)\))?\s*\(", expr):
        kept = {label.strip() for label in (match[3] or "").split(",")}
        if "domain" not in kept:
            dropped.append(match[0])
    return dropped


def _per_domain_rules() -> list[dict[str, Any]]:
    per_domain = per_domain_names()
    return [rule for rule in _rules() if promql_metric_names(rule["expr"]) & per_domain]


def test_the_alerts_on_a_domains_work_fire_per_domain() -> None:
    rules = _per_domain_rules()
    assert {rule["alert"] for rule in rules} >= {
        "SwitchboardSLABreachRateHigh",
        "SwitchboardQueueWaitHigh",
        "SwitchboardEmailQueueWaitHigh",
        "SwitchboardEgressFailing",
        "SwitchboardDeadLettersGrowing",
    }
    for rule in rules:
        assert groupings_without_domain(rule["expr"]) == [], rule["alert"]
        assert "$labels.domain" in rule["annotations"]["summary"], rule["alert"]


def test_an_alert_that_drops_the_domain_is_caught() -> None:
    assert groupings_without_domain(
        "sum by (channel) (rate(switchboard_sla_breaches_total[10m]))"
        " / sum by (domain, channel) (rate(switchboard_assignments_total[10m]))"
        " + max(switchboard_agents)"
    ) == ["sum by (channel) (", "max("]


def test_the_unit_tests_fire_the_per_domain_alerts_for_one_domain() -> None:
    fired = _fired_labels()
    for rule in _per_domain_rules():
        assert any(labels.get("domain") for labels in fired[rule["alert"]]), rule["alert"]


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = load_yaml(PROMETHEUS / "alerts_test.yaml")["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _rules()} <= fired


def test_the_alerts_cover_what_operations_asked_for() -> None:
    used = set().union(*(promql_metric_names(rule["expr"]) for rule in _rules()))
    assert {
        "switchboard_sla_breaches_total",  # SLA breach rate
        "switchboard_assignment_wait_seconds_bucket",  # queue wait
        "switchboard_consumer_lag_records",  # lag
        "switchboard_dead_letters_total",  # DLQ growth
        "switchboard_outbox_backlog_events",  # outbox backlog
        "switchboard_webhook_signature_failures_total",  # signature failures
        "switchboard_router_partitions",  # no ready router
        "switchboard_domain_label_limit_reached",  # tenants merged under domain="other"
    } <= used
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_the_alerts_use_only_exposed_metrics(scrape: str) -> None:
    exposed = names_in(scrape)
    for rule in _rules():
        assert missing_names(promql_metric_names(rule["expr"]), exposed) == set(), rule["alert"]
