"""The pre-chat form of a domain's web chat: its configuration (``webchat.prechat``), the
part of it a visitor's page is shown, and the visitor's answers turned into the routing
context of the conversation they open. Pure functions, no I/O.

Example (TOML)::

    [[domains.acme.webchat.prechat]]
    name = "topic"                      # the attribute key the answer is kept under
    label = "What can we help you with?"
    required = true

    [[domains.acme.webchat.prechat.options]]
    value = "billing"                   # what the page sends, and the attribute's value
    label = "Billing"
    queue = "billing"                   # a queue of the domain
    skills = ["billing"]
    priority = 5

    [[domains.acme.webchat.prechat.options]]
    value = "delivery"
    label = "A delivery"

    [[domains.acme.webchat.prechat]]
    name = "language"
    label = "Language"
    kind = "language"                   # the answer is the conversation's language
    options = [{ value = "en", label = "English" }, { value = "fr", label = "Français" }]

    [[domains.acme.webchat.prechat]]
    name = "order"
    label = "Order number (if you have one)"
    max_chars = 20                      # free text

The rules of the answers (``prechat_context``), an object of field name to string sent
with a message (``{"topic": "billing", "order": "A-1234"}``):

1. A field left out, or answered with a blank string, is unanswered. A free-text answer
   is trimmed; an option field's answer is one of its options' ``value``, exactly.
2. Refused (400, the reason names the field and never quotes the answer): a name that is
   no field of the form, an answer that is not among its field's options, a free-text
   answer longer than the field's ``max_chars`` or holding a control character (C0, DEL)
   or a lone surrogate, and an unanswered ``required`` field. Required answers are needed
   on every message, not only on a session's first one: the adapter keeps no state per
   session, and any message may open a conversation (the first one, or one written after
   the last conversation closed). The widget sends the answers with every message.
3. The effects, of the answered fields only: ``attributes`` holds every answer under its
   field's name; ``skills`` is the union of the chosen options' skills; ``priority`` is
   the highest priority a chosen option names (0 when none names one); ``queue`` is the
   queue named by the chosen option of the first field, in the form's order, whose chosen
   option names one (so when two answers name queues, the field listed first wins; none:
   ``webchat.queue``); ``language`` is likewise the first one given, by a ``language``
   field's answer or by a chosen option's ``language``.

The router applies a message's context only when the message opens a conversation, so
answers repeated with every message of a session change nothing later on.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec

from adapters.base import BadRequest
from schemas.limits import (
    ATTRIBUTE_VALUE_MAX,
    LIST_MAX,
    AttributeKey,
    Language,
    Priority,
    QueueName,
    SkillName,
)

PRECHAT_FIELDS_MAX = 10
"""Fields of one form."""
PRECHAT_OPTIONS_MAX = 20
"""Options of one field."""
PRECHAT_LABEL_MAX = 200
"""A field's or an option's label, as the visitor reads it."""
PRECHAT_SKILLS_MAX = LIST_MAX // PRECHAT_FIELDS_MAX
"""Skills of one option: ten, so that the union of one option per field fits the
``LIST_MAX`` skills a message carries."""

Label = Annotated[str, msgspec.Meta(min_length=1, max_length=PRECHAT_LABEL_MAX)]
OptionValue = Annotated[str, msgspec.Meta(min_length=1, max_length=ATTRIBUTE_VALUE_MAX)]

_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class FieldKind(enum.StrEnum):
    ATTRIBUTE = "attribute"
    """The answer is an attribute, and routes through its option's effects."""
    LANGUAGE = "language"
    """Also the conversation's language: the options' values are BCP 47 tags."""


class PrechatOption(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One answer a field offers, and what choosing it does to routing."""

    value: OptionValue
    """What the page sends and the conversation's attribute holds (at most 256 characters)."""
    label: Label
    """What the visitor reads (at most 200 characters)."""
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=PRECHAT_SKILLS_MAX)] = ()
    """Skills an agent needs for the conversation (at most 10)."""
    priority: Priority | None = None
    """The conversation's priority (-1000 to 1000): the highest of the chosen options'."""
    queue: QueueName | None = None
    """A queue of the domain for the conversation."""
    language: Language | None = None
    """The conversation's language (BCP 47)."""

    def __post_init__(self) -> None:
        if _CONTROL.search(self.value) or self.value != self.value.strip() or not self.value:
            raise ValueError(
                "an option's value is not blank, holds no control character and does not"
                " start or end with a blank"
            )
        _check_label(self.label, f"option {self.value!r}")
        if any(not skill.strip() for skill in self.skills):
            raise ValueError(f"option {self.value!r}: a skill name is blank")
        if self.language == "":
            raise ValueError(f"option {self.value!r}: language is a BCP 47 tag, not empty")


Options = Annotated[tuple[PrechatOption, ...], msgspec.Meta(max_length=PRECHAT_OPTIONS_MAX)]


class PrechatField(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One question of the form: a choice among ``options``, or free text."""

    name: AttributeKey
    """The attribute the answer is kept under: 1 to 64 letters, digits, ``_ . -``."""
    label: Label
    """The question, as the visitor reads it (at most 200 characters)."""
    required: bool = False
    """The visitor must answer it before chatting."""
    kind: FieldKind = FieldKind.ATTRIBUTE
    """``language``: the answer is also the conversation's language."""
    options: Options = ()
    """The answers offered (at most 20); none: free text."""
    max_chars: Annotated[int, msgspec.Meta(ge=1, le=ATTRIBUTE_VALUE_MAX)] | None = None
    """Longest free-text answer (1 to 256, the default); not with ``options``."""

    def __post_init__(self) -> None:
        where = f"field {self.name!r}"
        _check_label(self.label, where)
        if self.options and self.max_chars is not None:
            raise ValueError(f"{where}: give options or max_chars (free text), not both")
        values = [option.value for option in self.options]
        if len(set(values)) != len(values):
            raise ValueError(f"{where}: two options have the same value")
        if self.kind is FieldKind.LANGUAGE:
            if not self.options:
                raise ValueError(f"{where}: a language field offers options (BCP 47 tags)")
            for option in self.options:
                try:
                    msgspec.convert(option.value, Language)
                except msgspec.ValidationError:
                    raise ValueError(
                        f"{where}: option {option.value!r} is not a BCP 47 tag"
                    ) from None
                if option.language is not None:
                    raise ValueError(
                        f"{where}: option {option.value!r} of a language field is the"
                        " language itself: leave out its language"
                    )

    @property
    def text_max(self) -> int:
        """Longest free-text answer."""
        return ATTRIBUTE_VALUE_MAX if self.max_chars is None else self.max_chars


def _check_label(label: str, where: str) -> None:
    if not label.strip() or _CONTROL.search(label):
        raise ValueError(f"{where}: a label is not blank and holds no control character")


def check_prechat(fields: Sequence[PrechatField]) -> None:
    """``ValueError`` when two fields share a name (each answer is one attribute)."""
    seen: set[str] = set()
    for field in fields:
        if field.name in seen:
            raise ValueError(f"webchat.prechat: two fields are named {field.name!r}")
        seen.add(field.name)


def prechat_queues(fields: Sequence[PrechatField]) -> list[tuple[str, str]]:
    """Every queue the form's options name, with where: ``("prechat[0].options[1]",
    "billing")``, for the configuration's check that the domain has them."""
    return [
        (f"prechat[{i}].options[{j}]", option.queue)
        for i, field in enumerate(fields)
        for j, option in enumerate(field.options)
        if option.queue is not None
    ]


# -- what the visitor's page is shown --------------------------------------------------------


class FormOption(msgspec.Struct, frozen=True, kw_only=True):
    value: str
    label: str


class FormField(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    label: str
    required: bool
    options: tuple[FormOption, ...] = ()
    """The choices; empty: free text of at most ``max_chars``."""
    max_chars: int | None = None


class PrechatForm(msgspec.Struct, frozen=True, kw_only=True):
    """``GET …/webchat/prechat``: the questions, without their routing effects."""

    fields: tuple[FormField, ...]


def public_form(fields: Sequence[PrechatField]) -> PrechatForm:
    """What a visitor needs to fill the form in: labels, options and required flags. The
    options' skills, priorities and queues stay on our side."""
    return PrechatForm(
        fields=tuple(
            FormField(
                name=field.name,
                label=field.label,
                required=field.required,
                options=tuple(FormOption(value=o.value, label=o.label) for o in field.options),
                max_chars=None if field.options else field.text_max,
            )
            for field in fields
        )
    )


# -- the visitor's answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrechatContext:
    """The routing context of a visitor's answers (the rules in the module docstring)."""

    attributes: dict[str, str]
    skills: tuple[str, ...] = ()
    priority: int = 0
    queue: str | None = None
    language: str | None = None


def prechat_context(
    fields: Sequence[PrechatField], answers: Mapping[str, str] | None
) -> PrechatContext:
    """The context of ``answers`` to the form ``fields``; ``BadRequest`` (400) naming the
    field otherwise. Everything is checked before anything is derived."""
    given = answers or {}
    by_name = {field.name: field for field in fields}
    for name in given:
        if name not in by_name:
            raise BadRequest(f"prechat: the form has no field {name[:64]!r}")
    chosen: list[tuple[PrechatField, str, PrechatOption | None]] = []
    for field in fields:
        raw = given.get(field.name, "")
        answer = raw.strip()
        if not answer:
            if field.required:
                raise BadRequest(f"prechat.{field.name} is required")
            continue
        if field.options:
            option = next((o for o in field.options if o.value == raw), None)
            if option is None:
                raise BadRequest(f"prechat.{field.name} is not one of its options")
            chosen.append((field, option.value, option))
            continue
        if _CONTROL.search(answer):
            raise BadRequest(f"prechat.{field.name} holds a control character or a lone surrogate")
        if len(answer) > field.text_max:
            raise BadRequest(f"prechat.{field.name} is longer than {field.text_max} characters")
        chosen.append((field, answer, None))
    options = [option for _, _, option in chosen if option is not None]
    priorities = [o.priority for o in options if o.priority is not None]
    languages = [
        value if field.kind is FieldKind.LANGUAGE else option.language
        for field, value, option in chosen
        if option is not None
    ]
    return PrechatContext(
        attributes={field.name: value for field, value, _ in chosen},
        skills=tuple(dict.fromkeys(skill for o in options for skill in o.skills)),
        priority=max(priorities, default=0),
        queue=next((o.queue for o in options if o.queue is not None), None),
        language=next((language for language in languages if language), None),
    )
