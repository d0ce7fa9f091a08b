"""The runtime configuration document: validation, entity tags, diffs, and the file round trip."""

from __future__ import annotations

import msgspec
import pytest

from router.engine import DomainPolicy
from router.engine.policy import BOOST_MAX, COUNT_MAX, DURATION_MAX
from switchboard.config import ControlDocument, DomainConfig
from switchboard.control.document import (
    diff,
    etag,
    iter_endpoints,
    touched_domains,
    without_defaults,
)


def document(raw: dict[str, object]) -> ControlDocument:
    return msgspec.convert(raw, ControlDocument)


BASE = {
    "domains": {
        "acme": {"routing": {"queues": {"default": {}, "vip": {"mode": "offer"}}}},
        "globex": {},
    },
    "channels": {
        "twilio": {"numbers": [{"number": "+15005550006", "domain": "acme", "queue": "vip"}]},
        "meta": {"whatsapp": [{"phone_number_id": "1001", "domain": "globex"}]},
        "email": {"addresses": [{"address": "Help@Acme.example", "domain": "acme"}]},
    },
}


def test_an_endpoint_must_feed_a_known_domain_and_queue() -> None:
    with pytest.raises(
        msgspec.ValidationError, match=r"twilio.numbers\[0\].domain: unknown domain 'nope'"
    ):
        document(
            {
                **BASE,
                "channels": {"twilio": {"numbers": [{"number": "+15005550006", "domain": "nope"}]}},
            }
        )
    with pytest.raises(msgspec.ValidationError, match="has no queue 'gold'"):
        document(
            {
                **BASE,
                "channels": {
                    "twilio": {
                        "numbers": [{"number": "+15005550006", "domain": "acme", "queue": "gold"}]
                    }
                },
            }
        )
    with pytest.raises(msgspec.ValidationError, match="phone_identity_domains: unknown domain"):
        document({**BASE, "channels": {"phone_identity_domains": ["nope"]}})


DURATIONS = [
    "preferred_wait.sms",
    "inactivity.release_after",
    "channel_inactivity.email.close_after",
    "queues.default.steps.0.wait",
    "queues.default.steps.0.channel_wait.sms",
    "queues.default.offer_timeout",
    "queues.default.preferred_wait.sms",
    "queues.default.first_response_sla.sms",
    "first_response_sla.sms",
    "affinity.half_life",
    "reply_window.urgent_within",
    "login_pace",
    "bots.helper.answer_timeout",
    "bots.helper.retry_after",
]


def routing_with(path: str, value: float) -> dict[str, object]:
    """acme's routing with the setting at ``path`` (dots; a number indexes a list) set."""
    routing: dict[str, object] = {
        "queues": {"default": {"steps": [{"name": "anyone", "agents_from": ["*"]}]}},
        "bots": {"helper": {}},
    }
    *parents, last = path.split(".")
    node: object = routing
    for part in parents:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            assert isinstance(node, dict)
            node = node.setdefault(part, {})
    assert isinstance(node, dict)
    node[last] = value
    return routing


@pytest.mark.parametrize("path", DURATIONS)
def test_every_duration_is_finite_and_at_most_ten_years(path: str) -> None:
    """A TOML file can write ``inf`` and ``nan``, JSON ``1e308``: none is a time a deadline
    can be made of."""
    for value in (float("inf"), float("nan"), 1e308, DURATION_MAX + 1.0):
        with pytest.raises(msgspec.ValidationError, match=f"<= {DURATION_MAX}"):
            msgspec.convert(routing_with(path, value), DomainPolicy)
    msgspec.convert(routing_with(path, DURATION_MAX), DomainPolicy)


COUNTS = [
    ("away_after_missed_offers", COUNT_MAX),
    ("affinity.keep", COUNT_MAX),
    ("queues.default.max_per_agent.sms", COUNT_MAX),
    ("bots.helper.max_turns", COUNT_MAX),
    ("bots.helper.down_after", COUNT_MAX),
    ("reply_window.urgent_boost", BOOST_MAX),
]


@pytest.mark.parametrize(("path", "most"), COUNTS)
def test_every_count_has_a_maximum(path: str, most: int) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"<= {most}"):
        msgspec.convert(routing_with(path, most + 1), DomainPolicy)
    msgspec.convert(routing_with(path, most), DomainPolicy)


def test_etags_follow_content_not_key_order() -> None:
    one = document(BASE)
    reordered = document(
        {"channels": BASE["channels"], "domains": dict(reversed(list(BASE["domains"].items())))}
    )
    assert etag(one) == etag(reordered)
    changed = document(
        {**BASE, "domains": {**BASE["domains"], "globex": {"routing": {"login_pace": 5}}}}
    )
    assert etag(changed) != etag(one)
    assert etag(None) != etag(one)


def test_a_diff_names_each_endpoint_and_setting_that_changed() -> None:
    old = document(BASE)
    new = document(
        {
            "domains": {
                "acme": {"routing": {"queues": {"default": {}, "vip": {"mode": "assign"}}}},
                "globex": {},
                "initech": {},
            },
            "channels": {
                "twilio": {
                    "numbers": [{"number": "+15005550006", "domain": "acme", "queue": "vip"}]
                },
                "meta": {
                    "whatsapp": [
                        {"phone_number_id": "1001", "domain": "globex"},
                        {"phone_number_id": "1002", "domain": "initech"},
                    ]
                },
                "email": {"addresses": [{"address": "Help@Acme.example", "domain": "acme"}]},
            },
        }
    )
    changes = {(c.path, c.op) for c in diff(old, new)}
    assert changes == {
        ("domains.acme.routing.queues.vip.mode", "change"),
        ("domains.initech", "add"),
        ("channels.meta.whatsapp.1002", "add"),
    }
    assert touched_domains(old, new) == ["acme", "initech"]
    assert diff(new, new) == []
    removed = diff(new, old)
    assert ("channels.meta.whatsapp.1002", "remove") in {(c.path, c.op) for c in removed}


def test_moving_an_endpoint_concerns_both_domains() -> None:
    old = document(BASE)
    raw = {
        **BASE,
        "channels": {
            **BASE["channels"],
            "meta": {"whatsapp": [{"phone_number_id": "1001", "domain": "acme"}]},
        },
    }
    assert touched_domains(old, document(raw)) == ["acme", "globex"]


def test_email_endpoints_are_keyed_case_insensitively() -> None:
    keys = {(e.kind.name, e.key) for e in iter_endpoints(document(BASE).channels)}
    assert ("email", "help@acme.example") in keys


def test_without_defaults_keeps_only_what_differs_and_round_trips() -> None:
    original = document(BASE)
    minimal = without_defaults(original)
    assert minimal["domains"]["globex"] == {}
    assert minimal["domains"]["acme"]["routing"]["queues"]["vip"] == {"mode": "offer"}
    assert "api_base_url" not in minimal["channels"]["twilio"]
    assert msgspec.convert(minimal, ControlDocument) == original
    assert without_defaults(DomainConfig()) == {}


def test_the_web_chat_queue_must_be_one_of_its_domain() -> None:
    with pytest.raises(
        msgspec.ValidationError, match=r"webchat\.queue: domain 'acme' has no queue"
    ):
        document({**BASE, "domains": {"acme": {"webchat": {"enabled": True, "queue": "gold"}}}})
