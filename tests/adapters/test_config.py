"""The ``[channels]`` section: defaults, the README example, unknown keys, secrets."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from adapters.config import ChannelsConfig, SecretMissing, resolve_secret

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_are_valid_and_point_at_the_real_providers() -> None:
    config = ChannelsConfig()
    assert config.twilio.api_base_url == "https://api.twilio.com"
    assert config.meta.graph_api_base_url == "https://graph.facebook.com"
    assert config.telegram.api_base_url == "https://api.telegram.org"
    assert config.email.mailgun.api_base_url == "https://api.mailgun.net"
    assert config.twilio.numbers == []


def test_the_readme_example_decodes() -> None:
    text = README.read_text()
    section = text[text.index("## Channel adapters") :]
    [example] = re.findall(r"```toml\n(.*?)```", section, flags=re.S)[:1]
    channels = tomllib.loads(example)["channels"]
    config = msgspec.convert(channels, ChannelsConfig)
    assert config.twilio.numbers[0].domain
    assert config.meta.whatsapp
    assert config.meta.messenger
    assert config.meta.instagram
    assert config.telegram.bots
    assert config.email.addresses


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="auth_token"):
        msgspec.convert({"twilio": {"auth_token": "secret-in-file"}}, ChannelsConfig)


def test_customer_identity_linking() -> None:
    config = ChannelsConfig(phone_identity_domains=["acme"])
    assert config.customer_id("acme", "whatsapp", "+1555") == "phone:+1555"
    assert config.customer_id("acme", "sms", "+1555") == "phone:+1555"
    assert config.customer_id("acme", "telegram", "42") == "telegram:42"
    assert config.customer_id("globex", "sms", "+1555") == "sms:+1555"


def test_resolve_secret_names_the_missing_variable() -> None:
    assert resolve_secret("X_TOKEN", {"X_TOKEN": "v"}) == "v"
    with pytest.raises(SecretMissing, match="X_TOKEN"):
        resolve_secret("X_TOKEN", {"X_TOKEN": ""})


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"twilio": {"numbers": [{"number": "4155550100", "domain": "a"}]}}, "E.164"),
        (
            {"telegram": {"bots": [{"name": "b", "domain": "a"}, {"name": "b", "domain": "c"}]}},
            "listed twice",
        ),
        # A business chat's endpoint is {bot}/{connection}: a bot's name holds no /.
        ({"telegram": {"bots": [{"name": "a/b", "domain": "a"}]}}, "no /"),
        ({"telegram": {"bots": [{"name": "", "domain": "a"}]}}, "not empty"),
        (
            {
                "email": {
                    "addresses": [
                        {"address": "S@x.example", "domain": "a"},
                        {"address": "s@x.example", "domain": "b"},
                    ]
                }
            },
            "listed twice",
        ),
    ],
)
def test_ambiguous_or_malformed_endpoints_are_refused(
    section: dict[str, object], match: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=match):
        msgspec.convert(section, ChannelsConfig)
