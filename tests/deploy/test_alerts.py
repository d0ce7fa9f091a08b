"""Alert rules: promtool accepts them and their unit tests pass, they cover what operations
need, and they use only metrics a real Switchboard exposes."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.deploy.conftest import DEPLOY, load_yaml, missing_names, promql_metric_names
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
    } <= used
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_the_alerts_use_only_exposed_metrics(scrape: str) -> None:
    exposed = names_in(scrape)
    for rule in _rules():
        assert missing_names(promql_metric_names(rule["expr"]), exposed) == set(), rule["alert"]
