"""The bots in the deploy files: the dashboard's Bots row shows what operations asked for, an
alert names a failing bot of a domain, and the recording rules load with the alerts (their
PromQL is checked by ``test_alerts``, their unit tests run with ``alerts_test.yaml``)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.deploy.conftest import DEPLOY, load_yaml, promql_metric_names

PROMETHEUS = DEPLOY / "prometheus"


def _bot_panels() -> list[dict[str, Any]]:
    """The panels under the dashboard's Bots row, up to the next row."""
    panels = json.loads((DEPLOY / "grafana" / "switchboard.json").read_text())["panels"]
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Bots")
    after = next((i for i, p in enumerate(panels[start + 1 :], start + 1) if p["type"] == "row"))
    return panels[start + 1 : after]


def test_the_bots_row_shows_containment_hand_offs_time_to_a_person_turns_and_failures() -> None:
    exprs = [target["expr"] for panel in _bot_panels() for target in panel["targets"]]
    used = set().union(*(promql_metric_names(expr) for expr in exprs))
    assert {
        "switchboard_bot_contained_total",  # containment rate
        "switchboard_bot_conversations_total",
        "switchboard_bot_handoffs_total",  # hand-offs by reason
        "switchboard_bot_time_to_human_seconds_bucket",  # time to a person
        "switchboard_bot_turns_total",  # turns
        "switchboard_bot_webhook_calls_total",  # webhook failures
    } <= used
    assert any("by (reason)" in expr and "handoffs" in expr for expr in exprs)
    quantiles = [expr for expr in exprs if "switchboard_bot_time_to_human_seconds" in expr]
    assert [q.split(",")[0] for q in quantiles] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.9",
    ]
    assert any('outcome!="answered"' in expr for expr in exprs)


def test_a_failing_bot_alerts_per_domain_and_bot() -> None:
    rules = {
        rule["alert"]: rule
        for group in load_yaml(PROMETHEUS / "alerts.yaml")["groups"]
        for rule in group["rules"]
    }
    rule = rules["SwitchboardBotFailing"]
    assert {
        "switchboard_bot_webhook_calls_total",
        "switchboard_bot_handoffs_total",
    } <= promql_metric_names(rule["expr"])
    assert 'reason=~"bot_timeout|bot_error"' in rule["expr"]
    assert "[10m]" in rule["expr"]
    assert "$labels.bot" in rule["annotations"]["summary"]


def test_the_recording_rules_load_with_the_alerts(promtool: str) -> None:
    assert load_yaml(PROMETHEUS / "prometheus.yml")["rule_files"] == ["alerts.yaml", "rules.yaml"]
    assert "rules.yaml" in load_yaml(PROMETHEUS / "alerts_test.yaml")["rule_files"]
    compose = load_yaml(DEPLOY / "compose.yaml")["services"]["prometheus"]["volumes"]
    assert "./prometheus/rules.yaml:/etc/prometheus/rules.yaml:ro" in compose
    checked = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    records = [
        rule["record"]
        for group in load_yaml(PROMETHEUS / "rules.yaml")["groups"]
        for rule in group["rules"]
    ]
    assert records == ["domain_bot:switchboard_bot_contained_per_conversation:ratio_rate1h"]
