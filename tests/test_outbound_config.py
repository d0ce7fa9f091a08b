"""The ``[domains.<d>.outbound]`` section: its documented example, templates, keywords."""

from __future__ import annotations

import re
import tomllib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import outbound
from runtime.outbound import (
    DEFAULT_RATES,
    OutboundConfig,
    Rate,
    TemplateConfig,
    TemplateRefused,
    fill_template,
)
from schemas import Channel, Consent, TemplateCategory
from schemas.limits import keyword_form

REMINDER = TemplateConfig(
    name="reminder",
    language="en_US",
    channel=Channel.WHATSAPP,
    body="Hi {{1}}, see you on {{2}}.",
    provider_template="appointment_reminder_v3",
)


def test_the_documented_example_decodes() -> None:
    assert outbound.__doc__ is not None
    [example] = re.findall(r"Example \(TOML\)::\n\n(.*?)\n\n[A-Z]", outbound.__doc__, flags=re.S)
    section = tomllib.loads(example)["domains"]["acme"]["outbound"]
    config = msgspec.convert(section, OutboundConfig)
    assert config.rate(Channel.SMS) == Rate(per_second=1, burst=1)
    assert config.rate(Channel.WHATSAPP) == DEFAULT_RATES[Channel.WHATSAPP]
    assert config.domain_rate == Rate(per_second=50)
    template = config.template("delivery_update", "en-us", Channel.WHATSAPP)
    assert template is not None
    assert template.parameter_count == 2


def test_a_template_is_filled_in_order_and_names_the_providers_template() -> None:
    use, text = fill_template(REMINDER, ["Ann", "Tuesday"])
    assert text == "Hi Ann, see you on Tuesday."
    assert (use.provider_template, use.language, use.parameters) == (
        "appointment_reminder_v3",
        "en-US",
        ("Ann", "Tuesday"),
    )
    assert use.category is TemplateCategory.UTILITY


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        (["Ann"], "takes 2 parameters, 1 given"),
        (["Ann", " "], "may not be empty"),
        (["Ann", "Tues\nday"], "new lines"),
        (["Ann", "x" * 5000], "longer than 4096"),
    ],
)
def test_a_template_refuses_what_the_provider_would(parameters: list[str], reason: str) -> None:
    with pytest.raises(TemplateRefused, match=reason):
        fill_template(REMINDER, parameters)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("Hi {{2}}", "without gaps"),
        ("Hi {{1}} and {{3}}", "without gaps"),
        ("Hi \x07", "control characters"),
    ],
)
def test_a_template_body_must_be_what_providers_approve(body: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        TemplateConfig(name="t", language="en", channel=Channel.SMS, body=body)


def test_a_template_is_registered_once_per_language_and_channel() -> None:
    twin = msgspec.structs.replace(REMINDER, language="en-us")
    with pytest.raises(ValueError, match="registered twice"):
        OutboundConfig(templates=[REMINDER, twin])
    other = msgspec.structs.replace(REMINDER, language="fr")
    config = OutboundConfig(templates=[REMINDER, other])
    assert config.template("reminder", None, Channel.WHATSAPP) is None  # ambiguous: say which
    assert config.template("reminder", "fr", Channel.WHATSAPP) is other
    assert config.template("reminder", "en_US", Channel.SMS) is None


@pytest.mark.parametrize(
    ("text", "channel", "consent"),
    [
        ("STOP", Channel.SMS, Consent.OPT_OUT),
        ("  stop. ", Channel.WHATSAPP, Consent.OPT_OUT),
        ("Arrêt", Channel.SMS, Consent.OPT_OUT),
        ("Unsubscribe!", Channel.SMS, Consent.OPT_OUT),
        ("start", Channel.SMS, Consent.OPT_IN),
        ("please stop texting me", Channel.SMS, None),
        ("yes", Channel.SMS, None),  # answers a reminder: for an agent
        ("STOP", Channel.EMAIL, None),  # not a keyword channel by default
        ("", Channel.SMS, None),
    ],
)
def test_keywords_are_whole_messages(text: str, channel: Channel, consent: Consent | None) -> None:
    assert OutboundConfig().consent_of(channel, text) is consent


@given(st.text(alphabet=st.characters(max_codepoint=127)).map(str.strip))
def test_an_ascii_message_folds_as_through_unicode_normalisation(text: str) -> None:
    """ASCII text skips the NFKD step (nothing of it decomposes or combines): it folds as
    the same text made non-ASCII by a combining mark, which that step takes away."""
    assert keyword_form(text) == keyword_form(text + "\u0301")


def test_a_word_cannot_both_opt_out_and_opt_in() -> None:
    with pytest.raises(ValueError, match="both opt out and opt in"):
        OutboundConfig(opt_out_keywords=("STOP", "NO"), opt_in_keywords=("no",))
