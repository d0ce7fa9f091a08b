"""The runtime configuration document: validation, entity tags, diffs, and the file round trip."""

from __future__ import annotations

import msgspec
import pytest

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
