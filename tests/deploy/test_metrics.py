"""The metric catalogue: a real scrape passes ``promtool check metrics``, names follow the
Prometheus conventions, labels stay low-cardinality, every metric of a domain's work carries
the bounded ``domain`` label, and the README documents every metric."""

from __future__ import annotations

import re
import subprocess

from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from runtime.config import MetricsConfig
from runtime.metrics import OTHER_DOMAINS, PROCESS_METRICS, Metrics
from tests.deploy.conftest import ROOT, exposed_names

#: Every label the catalogue may use: bounded sets, never ids.
ALLOWED_LABELS = {
    "domain",  # bounded by metrics.domain_label_limit (runtime.metrics.DomainLabels)
    "channel",
    "strategy",
    "queue",
    "outcome",
    "provider",
    "partition",
    "topic",
    "reason",
    "presence",
    "status",
    "result",
    "type",
    "limit",  # sender, domain, provider
    "consent",  # opt_out, opt_in
    "source",  # keyword, provider, api
    "scope",  # a consent's: all, marketing
    "bot",  # a domain's configured bots (at most 50 each; "other" under domain="other")
    "kind",  # retention: the tables it changes (runtime.retention, eight)
    "action",  # retention: emptied, deleted
}


def catalogue() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Exposed name -> (type, labels, help) of every metric of ``Metrics``."""
    metrics = Metrics()
    found = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        kind = metric._type  # prometheus-client keeps these private; no public accessor
        name = metric._name + ("_total" if kind == "counter" else "")
        found[name] = (kind, tuple(metric._labelnames), metric._documentation)
    return found


#: The routing metrics, which a tenant's dashboard and alerts need per domain.
ROUTING_METRICS = {
    "switchboard_inbound_messages_total",
    "switchboard_egress_messages_total",
    "switchboard_routed_messages_total",
    "switchboard_duplicate_messages_total",
    "switchboard_assignments_total",
    "switchboard_preferred_agent_hits_total",
    "switchboard_preferred_agent_misses_total",
    "switchboard_fallbacks_total",
    "switchboard_overflows_total",
    "switchboard_offers_total",
    "switchboard_offer_misses_total",
    "switchboard_conversations_closed_total",
    "switchboard_reply_windows_closed_total",
    "switchboard_commands_total",
    "switchboard_assignment_wait_seconds",
    "switchboard_sla_breaches_total",
    "switchboard_first_response_seconds",
    "switchboard_queue_waiting_conversations",
    "switchboard_open_conversations",
    "switchboard_agents",
    "switchboard_agent_occupancy_ratio",
    "switchboard_dead_letters_total",
    "switchboard_bot_conversations_total",
    "switchboard_bot_handoffs_total",
    "switchboard_bot_contained_total",
    "switchboard_bot_turns_total",
    "switchboard_bot_time_to_human_seconds",
    "switchboard_wait_estimate_error_seconds",
    "switchboard_wait_estimate_signed_error_seconds",
}


def test_promtool_accepts_the_scrape_of_a_service_that_routed(promtool: str, scrape: str) -> None:
    assert re.search(
        r'^switchboard_assignments_total\{channel="webchat",domain="acme",.*strategy="\w+"\} 1\.0$',
        scrape,
        re.M,
    )
    assert re.search(
        r'^switchboard_routed_messages_total\{channel="webchat",domain="acme"\} 1\.0$', scrape, re.M
    )
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_every_catalogue_metric_is_in_the_scrape(scrape: str) -> None:
    exposed = exposed_names(scrape)
    assert sorted(set(catalogue()) - exposed) == []


def test_the_per_partition_lag_and_outbox_metrics_exist() -> None:
    metrics = catalogue()
    assert "partition" in metrics["switchboard_consumer_lag_records"][1]
    assert "partition" in metrics["switchboard_outbox_backlog_events"][1]


def test_every_routing_metric_is_labelled_by_domain() -> None:
    metrics = catalogue()
    for name in ROUTING_METRICS:
        assert metrics[name][1][0] == "domain", f"{name} has no domain label (first)"


def test_a_metric_without_the_domain_label_is_declared_process_wide() -> None:
    """A new metric carries ``domain``, or says why not in ``PROCESS_METRICS``."""
    unlabelled = {name for name, (_, labels, _) in catalogue().items() if "domain" not in labels}
    assert unlabelled == set(PROCESS_METRICS)
    assert not ROUTING_METRICS & PROCESS_METRICS


def test_the_scrape_holds_each_routing_series_of_the_domain_that_routed(scrape: str) -> None:
    routing = {name.removesuffix("_total") for name in ROUTING_METRICS}
    for family in text_string_to_metric_families(scrape):
        if family.name in routing:
            for sample in family.samples:
                assert sample.labels.get("domain") == "acme", sample


def test_the_domain_label_takes_at_most_the_limit_and_other() -> None:
    limit = 5
    metrics = Metrics(config=MetricsConfig(domain_label_limit=limit))
    for number in range(50):
        bound = metrics.for_domain(f"tenant-{number}")
        bound.counter(metrics.assignments, "sms", "support", "queue").inc()
        bound.histogram(metrics.wait_seconds, "sms", "queue").observe(1.0)
    values = {
        sample.labels["domain"]
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
        if "domain" in sample.labels
    }
    assert values == {f"tenant-{number}" for number in range(limit)} | {OTHER_DOMAINS}


def test_names_follow_the_prometheus_conventions() -> None:
    for name, (kind, labels, documentation) in catalogue().items():
        assert name.startswith("switchboard_"), name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert documentation.strip(), f"{name} has no help text"
        if kind == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_records")), f"{name}: histograms name their unit"
        assert not re.search(r"_(milliseconds|ms|minutes|hours|bytes_total_bytes)\b", name), name
        assert set(labels) <= ALLOWED_LABELS, f"{name} has unbounded labels {labels}"


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_documents_every_metric_with_its_type_and_labels() -> None:
    rows = {}
    for line in _readme_section("Metrics").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`switchboard_"):
            name, kind, labels, meaning = cells
            names = re.findall(r"`([a-z_]+)`", labels)
            rows[name.strip("`")] = (kind, tuple(names), meaning)
    documented = {name: (kind, labels) for name, (kind, labels, _) in rows.items()}
    expected = {name: (kind, labels) for name, (kind, labels, _) in catalogue().items()}
    assert documented == expected
    assert all(meaning for _, _, meaning in rows.values())
