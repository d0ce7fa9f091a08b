"""The web chat's pre-chat form (``adapters.webchat_prechat``), by value, sectioned by the
module's rules: the configuration and its checks, what the visitor's page is shown, and
the answers (1. unanswered and trimmed, 2. refused, 3. their effects), then the message
the adapter publishes with them."""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import BadRequest
from adapters.webchat import WebchatConfig, parse_message
from adapters.webchat_prechat import (
    PRECHAT_FIELDS_MAX,
    FieldKind,
    PrechatContext,
    PrechatField,
    PrechatOption,
    prechat_context,
    public_form,
)
from runtime.config import ConfigError
from schemas import INBOUND_DECODER, MessageReceived
from schemas.limits import ATTRIBUTE_VALUE_MAX
from switchboard.config import ControlDocument, DomainConfig, load_config
from tests.support import to_toml

README = Path(__file__).resolve().parents[2] / "README.md"
NOW = 1_700_000_000.0

TOPIC: dict[str, Any] = {
    "name": "topic",
    "label": "What can we help you with?",
    "required": True,
    "options": [
        {
            "value": "billing",
            "label": "Billing",
            "queue": "billing",
            "skills": ["billing"],
            "priority": 5,
        },
        {"value": "delivery", "label": "A delivery", "skills": ["logistics"]},
        {"value": "vip", "label": "Gold member", "queue": "vip", "priority": 9},
    ],
}
LANGUAGE: dict[str, Any] = {
    "name": "language",
    "label": "Language",
    "kind": "language",
    "options": [{"value": "en", "label": "English"}, {"value": "fr", "label": "Français"}],
}
ORDER: dict[str, Any] = {"name": "order", "label": "Order number", "max_chars": 20}
ROUTING = {"queues": {"default": {}, "billing": {}, "vip": {}}}


def form(*fields: dict[str, Any]) -> tuple[PrechatField, ...]:
    """The fields as the configuration loads them (``msgspec.convert``, constraints on)."""
    config = msgspec.convert({"enabled": True, "prechat": list(fields)}, WebchatConfig)
    return config.prechat


def refusal(fields: tuple[PrechatField, ...], answers: dict[str, str]) -> str:
    with pytest.raises(BadRequest) as refused:
        prechat_context(fields, answers)
    assert refused.value.status == 400
    return refused.value.reason


# -- configuration --------------------------------------------------------------------------


def test_the_readme_example_loads_with_its_queues() -> None:
    text = README.read_text()
    section = text[text.index("### Web chat") : text.index("### Identity lookup")]
    [example] = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    domains = tomllib.loads(example)["domains"]
    document = msgspec.convert({"domains": domains}, ControlDocument)
    [domain] = document.domains.values()
    assert [field.name for field in domain.webchat.prechat] == ["topic", "language", "order"]
    assert any(option.queue for option in domain.webchat.prechat[0].options)


def test_the_module_example_decodes() -> None:
    import adapters.webchat_prechat as module

    assert module.__doc__ is not None
    example = module.__doc__.split("Example (TOML)::")[1].split("The rules")[0]
    toml = "\n".join(line.removeprefix("    ") for line in example.splitlines())
    domains = tomllib.loads(toml)["domains"]
    config = msgspec.convert(domains["acme"], DomainConfig)
    assert [f.kind for f in config.webchat.prechat] == [
        FieldKind.ATTRIBUTE,
        FieldKind.LANGUAGE,
        FieldKind.ATTRIBUTE,
    ]


@pytest.mark.parametrize(
    ("prechat", "match"),
    [
        ([{**ORDER, "name": "order no"}], r"prechat\[0\]\.name"),
        ([{**ORDER, "label": ""}], r"prechat\[0\]\.label"),
        ([{**ORDER, "label": "x" * 201}], r"prechat\[0\]\.label"),
        ([{**ORDER, "label": "Order\nnumber"}], "field 'order': a label"),
        ([{**ORDER, "max_chars": ATTRIBUTE_VALUE_MAX + 1}], r"prechat\[0\]\.max_chars"),
        ([{**ORDER, "max_chars": 0}], r"prechat\[0\]\.max_chars"),
        ([{**TOPIC, "max_chars": 10}], "field 'topic': give options or max_chars"),
        ([{**ORDER, "kind": "email"}], r"prechat\[0\]\.kind"),
        ([{**ORDER, "colour": "red"}], "colour"),
        ([ORDER, {**ORDER, "label": "Again"}], "two fields are named 'order'"),
        ([ORDER] * (PRECHAT_FIELDS_MAX + 1), r"prechat"),
        ([{**TOPIC, "options": [TOPIC["options"][0]] * 2}], "field 'topic': two options"),
        ([{**TOPIC, "options": TOPIC["options"] * 7}], r"prechat\[0\]\.options"),
        ([{**TOPIC, "options": [{"value": "", "label": "None"}]}], r"options\[0\]\.value"),
        ([{**TOPIC, "options": [{"value": " a", "label": "A"}]}], "an option's value"),
        ([{**TOPIC, "options": [{"value": "a", "label": "A", "priority": 1001}]}], "priority"),
        ([{**TOPIC, "options": [{"value": "a", "label": "A", "language": "!"}]}], "language"),
        ([{**TOPIC, "options": [{"value": "a", "label": "A", "language": ""}]}], "language"),
        ([{**TOPIC, "options": [{"value": "a", "label": "A", "skills": [" "]}]}], "skill"),
        (
            [{**TOPIC, "options": [{"value": "a", "label": "A", "skills": ["s"] * 11}]}],
            r"options\[0\]\.skills",
        ),
        ([{**LANGUAGE, "options": []}], "field 'language': a language field offers options"),
        (
            [{**LANGUAGE, "options": [{"value": "fr_FR", "label": "Français"}]}],
            "'fr_FR' is not a BCP 47 tag",
        ),
        (
            [{**LANGUAGE, "options": [{"value": "fr", "label": "Fr", "language": "de"}]}],
            "leave out its language",
        ),
    ],
)
def test_a_bad_form_is_refused_naming_the_field(prechat: list[Any], match: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=match):
        msgspec.convert({"webchat": {"prechat": prechat}, "routing": ROUTING}, DomainConfig)


def test_an_option_names_a_queue_of_its_domain(tmp_path: Path) -> None:
    domain = {"webchat": {"enabled": True, "prechat": [TOPIC]}, "routing": {"queues": {"a": {}}}}
    domain["routing"]["default_queue"] = "a"
    with pytest.raises(
        msgspec.ValidationError,
        match=r"domains\.acme\.webchat\.prechat\[0\]\.options\[0\]\.queue: domain 'acme' has"
        " no queue 'billing'",
    ):
        msgspec.convert({"domains": {"acme": domain}}, ControlDocument)
    path = tmp_path / "switchboard.toml"
    path.write_text(to_toml({"domains": {"acme": domain}}))
    with pytest.raises(ConfigError, match=r"prechat\[0\]\.options\[0\]\.queue"):
        load_config({}, path)
    domain["routing"] = ROUTING | {"default_queue": "default"}
    path.write_text(to_toml({"domains": {"acme": domain}}))
    assert load_config({}, path).domains["acme"].webchat.prechat[0].options[0].queue == "billing"


def test_no_form_is_the_default() -> None:
    assert WebchatConfig().prechat == ()
    assert msgspec.convert({"enabled": True}, WebchatConfig).prechat == ()


# -- what the visitor's page is shown -------------------------------------------------------


def shown(fields: tuple[PrechatField, ...]) -> Any:
    """``GET …/webchat/prechat``'s answer, as the page reads it."""
    return msgspec.json.decode(msgspec.json.encode(public_form(fields)))


def test_the_page_is_shown_labels_options_and_required_flags_only() -> None:
    assert shown(form(TOPIC, LANGUAGE, ORDER)) == {
        "fields": [
            {
                "name": "topic",
                "label": "What can we help you with?",
                "required": True,
                "options": [
                    {"value": "billing", "label": "Billing"},
                    {"value": "delivery", "label": "A delivery"},
                    {"value": "vip", "label": "Gold member"},
                ],
            },
            {
                "name": "language",
                "label": "Language",
                "required": False,
                "options": [
                    {"value": "en", "label": "English"},
                    {"value": "fr", "label": "Français"},
                ],
            },
            {"name": "order", "label": "Order number", "required": False, "max_chars": 20},
        ]
    }
    assert shown(form({"name": "note", "label": "Note"})) == {
        "fields": [{"name": "note", "label": "Note", "required": False, "max_chars": 256}]
    }


# -- 1. unanswered, and trimmed -------------------------------------------------------------


def test_a_field_left_out_or_blank_is_unanswered_and_text_is_trimmed() -> None:
    fields = form({**TOPIC, "required": False}, LANGUAGE, ORDER)
    assert prechat_context(fields, None) == PrechatContext(attributes={})
    assert prechat_context(fields, {}) == PrechatContext(attributes={})
    assert prechat_context(fields, {"topic": "", "order": "  "}) == PrechatContext(attributes={})
    assert prechat_context(fields, {"order": "  A-1234 "}).attributes == {"order": "A-1234"}
    assert prechat_context((), None) == PrechatContext(attributes={})


# -- 2. refused -----------------------------------------------------------------------------


def test_what_is_refused_names_the_field_never_the_answer() -> None:
    fields = form(TOPIC, LANGUAGE, ORDER)
    ok = {"topic": "billing"}
    assert refusal(fields, {}) == "prechat.topic is required"
    assert refusal(fields, {"topic": "  "}) == "prechat.topic is required"
    assert refusal(fields, {"order": "A-1"}) == "prechat.topic is required"
    assert refusal(fields, {**ok, "colour": "red"}) == "prechat: the form has no field 'colour'"
    assert refusal(fields, {**ok, "x" * 500: "a"}) == f"prechat: the form has no field {'x' * 64!r}"
    assert refusal(fields, {"topic": "Billing"}) == "prechat.topic is not one of its options"
    assert refusal(fields, {"topic": " billing"}) == "prechat.topic is not one of its options"
    assert refusal(fields, {**ok, "language": "de"}) == "prechat.language is not one of its options"
    assert refusal(fields, {**ok, "order": "A" * 21}) == (
        "prechat.order is longer than 20 characters"
    )
    for control in ("\x00", "\n", "\x1b", "\x7f", "\ud800"):
        assert refusal(fields, {**ok, "order": f"A{control}1"}) == (
            "prechat.order holds a control character or a lone surrogate"
        )
    assert refusal((), {"topic": "billing"}) == "prechat: the form has no field 'topic'"


@dataclass(frozen=True)
class Case:
    """A form and one visitor's answers to it."""

    fields: tuple[PrechatField, ...]
    answers: dict[str, str]


SKILLS = ("billing", "logistics", "vip", "lang-fr", "refunds")
QUEUES = ("default", "billing", "vip")
LANGUAGES = ("en", "fr", "pt-BR", "zh-Hant-TW")
VALUES = st.text(string.ascii_letters + string.digits + "-_ ", min_size=1, max_size=12).map(
    lambda value: value.strip() or "x"
)


@st.composite
def options(draw: st.DrawFn, values: list[str]) -> tuple[PrechatOption, ...]:
    return tuple(
        PrechatOption(
            value=value,
            label=value.title(),
            skills=tuple(draw(st.lists(st.sampled_from(SKILLS), max_size=3, unique=True))),
            priority=draw(st.none() | st.integers(-1000, 1000)),
            queue=draw(st.none() | st.sampled_from(QUEUES)),
            language=draw(st.none() | st.sampled_from(LANGUAGES)),
        )
        for value in values
    )


@st.composite
def fields(draw: st.DrawFn) -> tuple[PrechatField, ...]:
    names = draw(
        st.lists(
            st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True),
            min_size=1,
            max_size=PRECHAT_FIELDS_MAX,
            unique=True,
        )
    )
    made = []
    for name in names:
        required = draw(st.booleans())
        shape = draw(st.sampled_from(("options", "text", "language")))
        if shape == "options":
            values = draw(st.lists(VALUES, min_size=1, max_size=6, unique=True))
            made.append(
                PrechatField(
                    name=name, label=name, required=required, options=draw(options(values))
                )
            )
        elif shape == "text":
            made.append(
                PrechatField(
                    name=name,
                    label=name,
                    required=required,
                    max_chars=draw(st.none() | st.integers(1, ATTRIBUTE_VALUE_MAX)),
                )
            )
        else:
            tags = draw(st.lists(st.sampled_from(LANGUAGES), min_size=1, unique=True))
            made.append(
                PrechatField(
                    name=name,
                    label=name,
                    required=required,
                    kind=FieldKind.LANGUAGE,
                    options=tuple(PrechatOption(value=tag, label=tag) for tag in tags),
                )
            )
    return tuple(made)


@st.composite
def accepted(draw: st.DrawFn) -> Case:
    """A form and answers it accepts: each field answered with one of its options or text
    that fits, or (unless required) left out or blank."""
    form_fields = draw(fields())
    answers: dict[str, str] = {}
    for field in form_fields:
        skip = draw(st.sampled_from(("answer", "leave out", "blank")))
        if skip != "answer" and not field.required:
            if skip == "blank":
                answers[field.name] = draw(st.sampled_from(("", " ", "\t")))
            continue
        if field.options:
            answers[field.name] = draw(st.sampled_from([o.value for o in field.options]))
        else:
            text = draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1))
            answers[field.name] = text.strip()[: field.text_max] or "answer"
    return Case(form_fields, answers)


def answered(case: Case) -> list[PrechatField]:
    return [field for field in case.fields if case.answers.get(field.name, "").strip()]


def chosen_options(case: Case) -> list[PrechatOption]:
    return [
        next(o for o in field.options if o.value == case.answers[field.name])
        for field in answered(case)
        if field.options
    ]


def attributes_are_the_answers(case: Case, context: PrechatContext) -> bool:
    return context.attributes == {
        field.name: case.answers[field.name].strip() for field in answered(case)
    }


def skills_are_the_union_of_the_chosen_options(case: Case, context: PrechatContext) -> bool:
    union = {skill for option in chosen_options(case) for skill in option.skills}
    return set(context.skills) == union and len(context.skills) == len(union)


def priority_is_the_highest_chosen(case: Case, context: PrechatContext) -> bool:
    named = [o.priority for o in chosen_options(case) if o.priority is not None]
    return context.priority == (max(named) if named else 0)


def queue_is_the_first_field_naming_one(case: Case, context: PrechatContext) -> bool:
    queues = [o.queue for o in chosen_options(case) if o.queue is not None]
    return context.queue == (queues[0] if queues else None)


def language_is_the_first_given(case: Case, context: PrechatContext) -> bool:
    given_languages = []
    for field in answered(case):
        if field.kind is FieldKind.LANGUAGE:
            given_languages.append(case.answers[field.name])
        elif field.options:
            option = next(o for o in field.options if o.value == case.answers[field.name])
            if option.language is not None:
                given_languages.append(option.language)
    return context.language == (given_languages[0] if given_languages else None)


@given(accepted())
def test_an_accepted_answer_maps_to_exactly_the_configured_effects(case: Case) -> None:
    context = prechat_context(case.fields, case.answers)
    assert attributes_are_the_answers(case, context)
    assert skills_are_the_union_of_the_chosen_options(case, context)
    assert priority_is_the_highest_chosen(case, context)
    assert queue_is_the_first_field_naming_one(case, context)
    assert language_is_the_first_given(case, context)
    # Whatever the answers, the message that carries them is valid.
    assert len(context.skills) <= 100
    assert len(context.attributes) <= 50


@given(accepted(), st.data())
def test_any_answer_outside_the_options_is_refused(case: Case, data: st.DataObject) -> None:
    choice_fields = [field for field in case.fields if field.options]
    if not choice_fields:
        return
    field = data.draw(st.sampled_from(choice_fields))
    values = {option.value for option in field.options}
    wrong = data.draw(st.text(min_size=1).filter(lambda text: text.strip() and text not in values))
    reason = refusal(case.fields, {**case.answers, field.name: wrong})
    assert reason == f"prechat.{field.name} is not one of its options"


@given(accepted(), st.data())
def test_any_text_too_long_or_a_name_not_in_the_form_is_refused(
    case: Case, data: st.DataObject
) -> None:
    text_fields = [field for field in case.fields if not field.options]
    if text_fields:
        field = data.draw(st.sampled_from(text_fields))
        too_long = "a" * (field.text_max + data.draw(st.integers(1, 50)))
        assert refusal(case.fields, {**case.answers, field.name: too_long}) == (
            f"prechat.{field.name} is longer than {field.text_max} characters"
        )
    names = {field.name for field in case.fields}
    stranger = data.draw(st.text(min_size=1, max_size=30).filter(lambda name: name not in names))
    assert refusal(case.fields, {**case.answers, stranger: "x"}).startswith(
        "prechat: the form has no field"
    )


def test_when_two_answers_name_queues_the_field_listed_first_wins() -> None:
    tier = {
        "name": "tier",
        "label": "Member?",
        "options": [{"value": "gold", "label": "Gold", "queue": "vip", "priority": 2}],
    }
    first_tier = prechat_context(form(tier, TOPIC), {"tier": "gold", "topic": "billing"})
    assert (first_tier.queue, first_tier.priority) == ("vip", 5)
    first_topic = prechat_context(form(TOPIC, tier), {"tier": "gold", "topic": "billing"})
    assert (first_topic.queue, first_topic.priority) == ("billing", 5)
    assert first_topic.skills == ("billing",)


# -- the message the adapter publishes ------------------------------------------------------


def post(config: WebchatConfig, **extra: Any) -> MessageReceived:
    body = {"session_id": "session-0001", "message_id": "m1", "text": "hi", **extra}
    return parse_message("acme", config, msgspec.json.encode(body), None, NOW)


def test_the_answers_become_the_message_routing_context() -> None:
    config = msgspec.convert(
        {"enabled": True, "queue": "default", "prechat": [TOPIC, LANGUAGE, ORDER]}, WebchatConfig
    )
    message = post(config, prechat={"topic": "billing", "language": "fr", "order": "A-1234"})
    assert (message.queue, message.priority, message.skills, message.language) == (
        "billing",
        5,
        ("billing",),
        "fr",
    )
    assert message.attributes == {"topic": "billing", "language": "fr", "order": "A-1234"}
    assert message.conversation_key == "webchat:session-0001"  # the session, as before
    # The event as the router decodes it carries the same context.
    decoded = INBOUND_DECODER.decode(msgspec.json.encode(message))
    assert decoded == message
    delivery = post(config, prechat={"topic": "delivery"})
    assert (delivery.queue, delivery.priority, delivery.skills) == ("default", 0, ("logistics",))
    assert delivery.language is None


def test_without_a_form_a_message_is_as_before_and_answers_are_refused() -> None:
    config = WebchatConfig(enabled=True)
    message = post(config)
    assert (message.queue, message.priority, message.skills, message.attributes) == (
        None,
        0,
        (),
        {},
    )
    with pytest.raises(BadRequest, match=r"^prechat: the form has no field 'topic'$"):
        post(config, prechat={"topic": "billing"})


@pytest.mark.parametrize(
    ("prechat", "reason"),
    [
        ({}, "prechat.topic is required"),
        ({"topic": "refunds"}, "prechat.topic is not one of its options"),
        ({"topic": 7}, "invalid message: Expected `str`, got `int`"),
        ({str(i): "a" for i in range(11)}, "invalid message: Expected `object` of length <= 10"),
        ("billing", "invalid message: Expected `object | null`, got `str` - at `$.prechat`"),
    ],
)
def test_bad_answers_refuse_the_message(prechat: Any, reason: str) -> None:
    config = msgspec.convert({"enabled": True, "prechat": [TOPIC]}, WebchatConfig)
    with pytest.raises(BadRequest) as refused:
        post(config, prechat=prechat)
    assert refused.value.status == 400
    assert refused.value.reason.startswith(reason)
    with pytest.raises(BadRequest, match=r"^prechat\.topic is required$"):
        post(config)


def test_an_attachment_carries_the_size_the_page_names() -> None:
    """The channel matrix's "media type, file name, size"."""
    attachment = {
        "url": "https://files.example/a.pdf",
        "content_type": "application/pdf",
        "filename": "a.pdf",
        "size_bytes": 48_213,
    }
    [carried] = post(WebchatConfig(enabled=True), attachments=[attachment]).attachments
    assert (carried.url, carried.filename, carried.size_bytes) == (
        "https://files.example/a.pdf",
        "a.pdf",
        48_213,
    )
    with pytest.raises(BadRequest):
        post(WebchatConfig(enabled=True), attachments=[{**attachment, "size_bytes": -1}])
