"""A replay's SLA breaches are counted as the live router counts them: against a queue's own
``first_response_sla`` where it sets one, else the domain's; both policies of a comparison
against the same targets."""

from __future__ import annotations

import msgspec

from router.engine import DomainPolicy
from router.shell.replay import Recorded, simulate, sla_targets
from schemas import Channel, Presence
from tests.engine.builders import T0, message, presence, registered


def policy(**routing: object) -> DomainPolicy:
    return msgspec.convert(routing, DomainPolicy)


QUEUES = {"default": {}, "vip": {"first_response_sla": {"sms": 5.0}}}


def recording() -> list[Recorded]:
    """Two customers, one in each queue, wait 30 s for the only agent to come online."""
    inputs = [
        Recorded(T0, 0, 1.0, registered("ann", queues=("default", "vip"))),
        Recorded(T0 + 1, 1, 2.0, message("k1", customer="c1", queue="vip")),
        Recorded(T0 + 1, 1, 3.0, message("k2", customer="c2", queue="default")),
        Recorded(T0 + 31, 0, 4.0, presence("ann", Presence.ONLINE)),
    ]
    return sorted(inputs)


def test_a_queues_own_target_counts_where_the_domain_sets_none() -> None:
    routing = policy(queues=QUEUES)
    targets = sla_targets(routing, routing)
    assert targets.of("vip", Channel.SMS) == 5.0
    assert targets.of("default", Channel.SMS) is None
    kpis = simulate("acme", routing, recording(), T0, T0 + 3600, targets)
    assert kpis.assignments == 2
    assert kpis.sla_breaches == 1  # the vip customer's 30 s; the default queue has no target


def test_the_domains_target_counts_for_queues_without_their_own() -> None:
    routing = policy(queues=QUEUES, first_response_sla={"sms": 60.0})
    kpis = simulate("acme", routing, recording(), T0, T0 + 3600, sla_targets(routing, routing))
    assert kpis.sla_breaches == 1  # vip: 30 s against 5; default: 30 s against 60


def test_both_policies_are_measured_against_the_candidates_targets() -> None:
    baseline = policy(queues={"default": {}, "vip": {}})
    candidate = policy(queues=QUEUES)
    targets = sla_targets(candidate, baseline)
    assert simulate("acme", baseline, recording(), T0, T0 + 3600, targets).sla_breaches == 1
    assert not sla_targets(baseline, baseline)
    no_targets = simulate(
        "acme", baseline, recording(), T0, T0 + 3600, sla_targets(baseline, baseline)
    )
    assert no_targets.sla_breaches is None
