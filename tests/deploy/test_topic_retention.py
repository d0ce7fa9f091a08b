"""Topic retention in the deploy files: the topics, which carry message texts and
addresses, keep them no longer than the shortest retention period a domain sets, and the
compose broker's default for other topics is the same."""

from __future__ import annotations

from tests.deploy.conftest import DEPLOY, load_yaml
from tests.deploy.support import deploy_config


def test_the_topics_keep_records_no_longer_than_any_domain_keeps_them() -> None:
    config = deploy_config()
    retention_ms = config.kafka.topic_retention_ms
    assert retention_ms == 7 * 86_400 * 1000
    periods = {
        f"{name}.{period}": seconds
        for name, domain in config.domains.items()
        for period, seconds in domain.retention.periods().items()
    }
    assert periods, "the deploy configuration shows a retention section"
    assert {key: s for key, s in periods.items() if s * 1000 < retention_ms} == {}


def test_the_compose_broker_defaults_to_the_same_retention() -> None:
    kafka = load_yaml(DEPLOY / "compose.yaml")["services"]["kafka"]["environment"]
    assert int(kafka["KAFKA_LOG_RETENTION_MS"]) == deploy_config().kafka.topic_retention_ms
