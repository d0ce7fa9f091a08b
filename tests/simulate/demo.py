"""A running service configured like ``switchboard/demo.toml``, for simulations in tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.conftest import Infrastructure
from tests.support import Service, make_config, running_service
from tools.simulate import Options, secrets_from

ADMIN = "demo-admin-token-for-tests"
ENVIRON = {
    "SWITCHBOARD_ADMIN_TOKEN": ADMIN,
    "TWILIO_AUTH_TOKEN": "test-twilio-token",
    "META_APP_SECRET": "test-meta-secret",
    "MAILGUN_SIGNING_KEY": "test-mailgun-key",
}
DEMO: dict[str, Any] = {
    "api": {"auth": "tokens"},
    "domains": {
        "demo": {
            "webchat": {"enabled": True},
            "routing": {
                # Real seconds, short, so that a few seconds of simulation fall back.
                "preferred_wait": {"webchat": 1, "sms": 1, "whatsapp": 1, "email": 2},
                "default_queue": "support",
                "queues": {"support": {"steps": [{"name": "anyone", "agents_from": ["*"]}]}},
            },
        }
    },
    "channels": {
        "phone_identity_domains": ["demo"],
        "twilio": {"numbers": [{"number": "+15005550006", "domain": "demo"}]},
        "meta": {"whatsapp": [{"phone_number_id": "100000000000001", "domain": "demo"}]},
        "email": {"addresses": [{"address": "support@demo.example", "domain": "demo"}]},
    },
}


@contextlib.asynccontextmanager
async def demo_service(infrastructure: Infrastructure, database_url: str) -> AsyncIterator[Service]:
    config = make_config(infrastructure.bootstrap_servers, database_url, DEMO)
    async with running_service(config, ENVIRON) as service:
        yield service


def options(service: Service, **overrides: Any) -> Options:
    """Simulation options for ``service``; no public URL, so it signs what it calls."""
    defaults: dict[str, Any] = {
        "url": service.base_url,
        "token": ADMIN,
        "domain": "demo",
        "secrets": secrets_from(ENVIRON),
        "customers": 30,
        "agents": 4,
        "rate": 30.0,
        "duration": 4.0,
        "speed": 3000.0,
        "drain": 8.0,
        "seed": 7,
    }
    return Options(**{**defaults, **overrides})
