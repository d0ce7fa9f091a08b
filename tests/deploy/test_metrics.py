"""The metric catalogue: a real scrape passes ``promtool check metrics``, names follow the
Prometheus conventions, labels stay low-cardinality, and the README documents every metric."""

from __future__ import annotations

import re
import subprocess

from prometheus_client.metrics import MetricWrapperBase

from runtime.metrics import Metrics
from tests.deploy.conftest import ROOT, exposed_names

#: Every label the catalogue may use: bounded sets, never ids.
ALLOWED_LABELS = {
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


def test_promtool_accepts_the_scrape_of_a_service_that_routed(promtool: str, scrape: str) -> None:
    assert re.search(
        r'^switchboard_assignments_total\{channel="webchat",.*strategy="\w+"\} 1\.0$', scrape, re.M
    )
    assert re.search(r'^switchboard_routed_messages_total\{channel="webchat"\} 1\.0$', scrape, re.M)
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
