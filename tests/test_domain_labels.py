"""The ``domain`` label's bound: the first domains seen keep their id, the rest are ``other``.

Rules (``runtime.metrics.DomainLabels`` and ``Metrics.for_domain``):
1. The first ``limit`` distinct domains seen get their own id as label value.
2. Every later domain gets ``other``, and the first one to do so is reported once (the
   ``switchboard_domain_label_limit_reached`` gauge and a ``domain_label_limit_reached``
   warning).
3. A domain's label value never changes for the life of the process.
4. What belongs to no domain (None) takes no slot: its label value is empty.
5. The children bound for a label value are made once and reused.
6. The limit is ``[metrics] domain_label_limit``, 1 to 10000, 100 by default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.config import MetricsConfig
from runtime.metrics import NO_DOMAIN, OTHER_DOMAINS, DomainLabels, Metrics
from switchboard.config import ConfigError, load_config
from tests.logcapture import captured_logs, lines_of

LIMIT_REACHED = "switchboard_domain_label_limit_reached"


def labels_of(limit: int, domains: list[str]) -> tuple[list[str], list[str]]:
    """The label value given to each of ``domains`` in turn, and the domains reported as
    the first one counted under ``other``."""
    reported: list[str] = []
    labels = DomainLabels(limit, reported.append)
    return [labels.label(domain) for domain in domains], reported


def first_distinct(domains: list[str], count: int) -> set[str]:
    seen: list[str] = []
    for domain in domains:
        if domain not in seen:
            seen.append(domain)
    return set(seen[:count])


# -- rules 1 to 3, by example ----------------------------------------------------------------


def test_the_first_domains_keep_their_id_and_the_later_ones_are_other() -> None:
    given_labels, reported = labels_of(2, ["acme", "beta", "acme", "gamma", "delta", "beta"])
    assert given_labels == ["acme", "beta", "acme", OTHER_DOMAINS, OTHER_DOMAINS, "beta"]
    assert reported == ["gamma"]


def test_nothing_is_reported_while_the_limit_holds() -> None:
    given_labels, reported = labels_of(3, ["acme", "beta", "gamma", "acme"])
    assert given_labels == ["acme", "beta", "gamma", "acme"]
    assert reported == []


def test_a_domain_counted_under_other_stays_there() -> None:
    labels = DomainLabels(1, lambda domain: None)
    assert [labels.label(d) for d in ("acme", "beta", "beta", "acme")] == [
        "acme",
        OTHER_DOMAINS,
        OTHER_DOMAINS,
        "acme",
    ]
    assert labels.labelled == 1


def test_the_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DomainLabels(0, lambda domain: None)


# -- rules 1 to 3, for any sequence --------------------------------------------------------


def own_values_are_domains_seen(domains: list[str], given: list[str]) -> bool:
    return {label for label in given if label != OTHER_DOMAINS} <= set(domains)


def no_more_own_values_than_the_limit(limit: int, given: list[str]) -> bool:
    return len({label for label in given if label != OTHER_DOMAINS}) <= limit


def each_domain_keeps_one_value(domains: list[str], given: list[str]) -> bool:
    seen: dict[str, str] = {}
    return all(seen.setdefault(d, g) == g for d, g in zip(domains, given, strict=True))


def exactly_the_first_limit_domains_are_labelled(
    limit: int, domains: list[str], given: list[str]
) -> bool:
    own = first_distinct(domains, limit)
    return all(
        (label == domain) == (domain in own) for domain, label in zip(domains, given, strict=True)
    )


def reported_once_when_and_only_when_beyond(
    limit: int, domains: list[str], reported: list[str]
) -> bool:
    beyond = [d for d in domains if d not in first_distinct(domains, limit)]
    return reported == beyond[:1]


@given(
    limit=st.integers(min_value=1, max_value=6),
    domains=st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]), max_size=40),
)
def test_labels_are_bounded_stable_and_first_come(limit: int, domains: list[str]) -> None:
    given_labels, reported = labels_of(limit, domains)
    assert own_values_are_domains_seen(domains, given_labels)
    assert no_more_own_values_than_the_limit(limit, given_labels)
    assert each_domain_keeps_one_value(domains, given_labels)
    assert exactly_the_first_limit_domains_are_labelled(limit, domains, given_labels)
    assert reported_once_when_and_only_when_beyond(limit, domains, reported)


# -- rules 2, 4 and 5: the metrics' side --------------------------------------------------


def test_the_first_domain_under_other_sets_the_gauge_and_logs_once() -> None:
    metrics = Metrics(config=MetricsConfig(domain_label_limit=1))
    assert metrics.registry.get_sample_value(LIMIT_REACHED) == 0
    with captured_logs([]) as buffer:
        metrics.for_domain("acme")
        assert metrics.registry.get_sample_value(LIMIT_REACHED) == 0
        for domain in ("beta", "gamma", "beta"):
            assert metrics.for_domain(domain).label == OTHER_DOMAINS
    assert metrics.registry.get_sample_value(LIMIT_REACHED) == 1
    [line] = [line for line in lines_of(buffer) if line["event"] == "domain_label_limit_reached"]
    assert (line["level"], line["limit"], line["domain"]) == ("warning", 1, "beta")


def test_what_belongs_to_no_domain_takes_no_slot() -> None:
    metrics = Metrics(config=MetricsConfig(domain_label_limit=1))
    assert metrics.for_domain(None).label == NO_DOMAIN
    assert metrics.for_domain("acme").label == "acme"
    assert metrics.registry.get_sample_value(LIMIT_REACHED) == 0


def test_children_are_bound_once_per_label_value() -> None:
    metrics = Metrics(config=MetricsConfig(domain_label_limit=1))
    acme = metrics.for_domain("acme")
    assert metrics.for_domain("acme") is acme
    child = acme.counter(metrics.assignments, "sms", "support", "queue")
    assert acme.counter(metrics.assignments, "sms", "support", "queue") is child
    assert child is metrics.assignments.labels("acme", "sms", "support", "queue")
    histogram = acme.histogram(metrics.wait_seconds, "sms", "queue")
    assert acme.histogram(metrics.wait_seconds, "sms", "queue") is histogram
    # Domains beyond the limit share the children of ``other``.
    beta, gamma = metrics.for_domain("beta"), metrics.for_domain("gamma")
    assert beta is gamma
    beta.counter(metrics.assignments, "sms", "support", "queue").inc()
    gamma.counter(metrics.assignments, "sms", "support", "queue").inc(2)
    sample = {"domain": OTHER_DOMAINS, "channel": "sms", "queue": "support", "strategy": "queue"}
    assert metrics.registry.get_sample_value("switchboard_assignments_total", sample) == 3


def test_a_domain_named_like_the_bucket_within_the_limit_does_not_report_it() -> None:
    metrics = Metrics(config=MetricsConfig(domain_label_limit=2))
    assert metrics.for_domain(OTHER_DOMAINS).label == OTHER_DOMAINS
    assert metrics.registry.get_sample_value(LIMIT_REACHED) == 0


# -- rule 6: the configuration -------------------------------------------------------------


def test_the_limit_is_a_config_key_with_a_default(tmp_path: Path) -> None:
    assert load_config({}).metrics.domain_label_limit == 100
    path = tmp_path / "switchboard.toml"
    path.write_text("[domains.a]\n[metrics]\ndomain_label_limit = 250\n")
    assert load_config({}, path).metrics == MetricsConfig(domain_label_limit=250)


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[metrics]\ndomain_label_limit = 0\n", "metrics: must be between 1 and 10000"),
        ("[metrics]\ndomain_label_limit = 10001\n", "metrics: must be between 1 and 10000"),
        ('[metrics]\ndomain_label_limit = "many"\n', "metrics.domain_label_limit"),
        ("[metrics]\ndomain_labels = 10\n", "metrics"),
    ],
)
def test_a_bad_limit_stops_with_a_message_naming_the_key(
    tmp_path: Path, toml: str, named: str
) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text("[domains.a]\n" + toml)
    with pytest.raises(ConfigError) as error:
        load_config({}, path)
    assert named in str(error.value)
