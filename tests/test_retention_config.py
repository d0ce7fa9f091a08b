"""The ``[domains.<d>.retention]`` and ``[retention]`` sections: the documented example, the
bounds of each period (named by key), the order of the periods, the default that keeps
everything, the export of the runtime configuration, and the topics' ``retention.ms``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from router.engine.outbound import REMEMBERED
from runtime import retention
from runtime.config import ConfigError, KafkaConfig, ServiceConfig
from runtime.kafka import _new_topic
from runtime.retention import (
    NOTIFICATION_ANSWERABLE,
    RetentionConfig,
    RetentionJobConfig,
)
from schemas import topics
from switchboard.config import ControlDocument, DomainConfig, load_config
from switchboard.control.document import without_defaults

DAY = 86_400


def _example() -> dict[str, object]:
    assert retention.__doc__ is not None
    [example] = re.findall(r"Example \(TOML\)::\n\n(.*?)\n\n[A-Z]", retention.__doc__, flags=re.S)
    parsed: dict[str, object] = tomllib.loads(example)
    return parsed


def test_the_documented_example_is_valid() -> None:
    example = _example()
    domain = msgspec.convert(example["domains"], dict[str, DomainConfig])["acme"]
    assert domain.retention == RetentionConfig(
        message_bodies=30 * DAY,
        routing_history=365 * DAY,
        consent_history=5 * 365 * DAY,
        dead_letters=14 * DAY,
        customer_identities=2 * 365 * DAY,
    )
    job = msgspec.convert(example["retention"], RetentionJobConfig)
    assert (job.interval, job.batch_size, job.unowned_dead_letters) == (900, 1000, 14 * DAY)


def test_unset_keeps_everything_as_before() -> None:
    assert DomainConfig().retention.periods() == {}
    assert RetentionJobConfig().unowned_dead_letters is None
    # a domain without the section exports as before: no retention key at all
    assert "retention" not in without_defaults(DomainConfig())


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "switchboard.toml"
    path.write_text("[domains.acme.webchat]\nenabled = true\n" + text)
    return load_config({}, path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("message_bodies = 3600", "domains.acme.retention.message_bodies: Expected `int` >= 86400"),
        (
            "routing_history = 86400",
            "domains.acme.retention.routing_history: Expected `int` >= 604800",
        ),
        (
            "consent_history = 86400",
            "domains.acme.retention.consent_history: Expected `int` >= 604800",
        ),
        ("dead_letters = 60", "domains.acme.retention.dead_letters: Expected `int` >= 86400"),
        (
            "customer_identities = 604800",
            "domains.acme.retention.customer_identities: Expected `int` >= 2592000",
        ),
        (
            "dead_letters = 315360001",
            "domains.acme.retention.dead_letters: Expected `int` <= 315360000",
        ),
        (
            'dead_letters = "14d"',
            "domains.acme.retention.dead_letters: Expected `int | null`, got `str`",
        ),
        ("kept = 86400", "domains.acme.retention: Object contains unknown field `kept`"),
        (
            "message_bodies = 864000\nrouting_history = 604800",
            "domains.acme.retention: message_bodies is longer than routing_history",
        ),
    ],
)
def test_a_bad_period_stops_start_up_naming_the_key(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, f"[domains.acme.retention]\n{line}\n")
    assert str(error.value).startswith(f"config: {message}"), error.value


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("interval = 0.5", "retention.interval: Expected `float` >= 1.0"),
        ("batch_size = 0", "retention.batch_size: Expected `int` >= 1"),
        ("batch_size = 10001", "retention.batch_size: Expected `int` <= 10000"),
        ("batch_pause = 11", "retention.batch_pause: Expected `float` <= 10.0"),
        ("unowned_dead_letters = 10", "retention.unowned_dead_letters: Expected `int` >= 86400"),
    ],
)
def test_the_job_section_is_bounded(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, f"[retention]\n{line}\n")
    assert str(error.value).startswith(f"config: {message}"), error.value


def test_equal_bodies_and_history_periods_are_allowed(tmp_path: Path) -> None:
    config = _load(
        tmp_path, "[domains.acme.retention]\nmessage_bodies = 604800\nrouting_history = 604800\n"
    )
    assert isinstance(config, ServiceConfig)


def test_the_runtime_document_exports_only_the_periods_that_are_set() -> None:
    document = ControlDocument(
        domains={"acme": DomainConfig(retention=RetentionConfig(message_bodies=7 * DAY))}
    )
    tree = without_defaults(document)
    assert tree["domains"]["acme"]["retention"] == {"message_bodies": 7 * DAY}
    # what `switchboard config export` prints reads back as the same document
    text = msgspec.toml.encode(tree)
    assert "[domains.acme.retention]\nmessage_bodies = 604800" in text.decode()
    assert msgspec.toml.decode(text, type=ControlDocument) == document


def test_unanswered_notifications_close_when_the_engine_stops_remembering_them() -> None:
    assert NOTIFICATION_ANSWERABLE == REMEMBERED


def test_created_topics_carry_the_configured_retention() -> None:
    config = ServiceConfig(kafka=KafkaConfig(topic_retention_ms=7 * DAY * 1000))
    inbound = _new_topic(config, config.topic(topics.INBOUND))
    assert inbound.topic_configs == {"retention.ms": "604800000"}
    assert _new_topic(config, config.topic(topics.CONFIG)).topic_configs == {
        "cleanup.policy": "compact"
    }
    assert _new_topic(ServiceConfig(), topics.INBOUND).topic_configs == {}  # the broker's
    with pytest.raises(ValueError, match="topic_retention_ms"):
        KafkaConfig(topic_retention_ms=60_000)
