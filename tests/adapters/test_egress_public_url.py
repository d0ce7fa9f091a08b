"""Replies' default Twilio ``StatusCallback`` comes from the resolved ``[http] public_url``
(the configuration file's, or ``SWITCHBOARD_PUBLIC_URL`` already folded into it), as the
service hands it to egress in ``EgressEnviron``."""

from __future__ import annotations

from adapters.egress import EgressEnviron, build_request
from adapters.twilio import PUBLIC_URL_ENV
from schemas import Channel, ReplyRequested
from tests.adapters.conftest import CHANNELS, ENVIRON


def sms() -> ReplyRequested:
    return ReplyRequested(
        id="out-0001",
        domain="acme",
        occurred_at=1_700_000_000.0,
        conversation_id="conv-1",
        agent_id="ann",
        channel=Channel.SMS,
        endpoint="+14155550100",
        customer_address="+14155552671",
        text="On its way.",
    )


def status_callback(environ: EgressEnviron) -> str | None:
    form = dict(build_request(sms(), CHANNELS, environ).form or [])
    return form.get("StatusCallback")


def test_the_configured_public_url_makes_the_status_callback() -> None:
    environ = EgressEnviron(ENVIRON, "https://switchboard.example.com/")
    assert status_callback(environ) == (
        "https://switchboard.example.com/webhooks/twilio/status?outbound_id=out-0001"
    )


def test_the_configuration_is_the_only_source_of_the_public_url() -> None:
    stale = {**ENVIRON, PUBLIC_URL_ENV: "https://stale.example.com"}
    assert status_callback(EgressEnviron(stale, None)) is None
    assert status_callback(EgressEnviron(stale, "https://sb.example.com")) == (
        "https://sb.example.com/webhooks/twilio/status?outbound_id=out-0001"
    )


def test_the_secrets_are_read_through() -> None:
    environ = EgressEnviron(ENVIRON, None)
    assert environ["TWILIO_AUTH_TOKEN"] == ENVIRON["TWILIO_AUTH_TOKEN"]
    assert PUBLIC_URL_ENV not in environ
    assert dict(environ) == ENVIRON
    assert len(EgressEnviron(ENVIRON, "https://sb.example.com")) == len(ENVIRON) + 1
