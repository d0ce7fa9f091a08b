"""The vocabulary of ``runtime.personal_data``: what a stored value would give away
(``Category``), whose it is (``Subject``), and what a column or field holds (``Holds``);
the module docstring of ``runtime.personal_data`` says what each category covers."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple


class Category(enum.StrEnum):
    """What a value would give away (see the module docstring)."""

    IDENTITY = "identity"
    NAME = "name"
    CONTENT = "content"
    NONE = "none"


class Subject(enum.StrEnum):
    """Whose data a value is."""

    CUSTOMER = "customer"
    AGENT = "agent"
    NONE = "none"


class Label(NamedTuple):
    category: Category
    subject: Subject

    def __str__(self) -> str:
        return f"{self.category}/{self.subject}"


NOT_PERSONAL_LABEL = Label(Category.NONE, Subject.NONE)


@dataclass(frozen=True, slots=True)
class Holds:
    """What one column or field holds: one label, or several for a column of records."""

    labels: frozenset[Label]
    note: str = ""
    """Why, where it is not obvious (shown under the README's tables)."""
    topics: tuple[str, ...] = ()
    """Topics whose records the column holds (every field of their events)."""
    structs: tuple[str, ...] = ()
    """Structs the column holds (``schemas`` or ``router.engine.records`` class names)."""

    @property
    def personal(self) -> bool:
        return any(label.category is not Category.NONE for label in self.labels)

    def because(self, note: str) -> Holds:
        return Holds(self.labels, note, self.topics, self.structs)

    def records(self, *, topics: Iterable[str] = (), structs: Iterable[str] = ()) -> Holds:
        """The same labels, as held by a column of these records."""
        return Holds(self.labels, self.note, tuple(topics), tuple(structs))

    def __or__(self, other: Holds) -> Holds:
        return Holds(merged(self.labels | other.labels), self.note or other.note)


def merged(labels: Iterable[Label]) -> frozenset[Label]:
    """``labels`` without ``none`` when anything else is there."""
    found = frozenset(labels)
    personal = found - {NOT_PERSONAL_LABEL}
    return personal or frozenset({NOT_PERSONAL_LABEL})


def _holds(category: Category, subject: Subject) -> Holds:
    return Holds(frozenset({Label(category, subject)}))


NOT_PERSONAL: Final = _holds(Category.NONE, Subject.NONE)
CUSTOMER_IDENTITY: Final = _holds(Category.IDENTITY, Subject.CUSTOMER)
CUSTOMER_NAME: Final = _holds(Category.NAME, Subject.CUSTOMER)
CUSTOMER_CONTENT: Final = _holds(Category.CONTENT, Subject.CUSTOMER)
AGENT_IDENTITY: Final = _holds(Category.IDENTITY, Subject.AGENT)
AGENT_NAME: Final = _holds(Category.NAME, Subject.AGENT)

PROVIDER_ID = CUSTOMER_IDENTITY.because(
    "A provider's message id leads to the person through the provider, and WhatsApp's "
    "(`wamid.…`) is base64 of a record that spells the customer's phone number."
)
THREAD_KEY = CUSTOMER_IDENTITY.because(
    "A thread key is `{channel}:{endpoint}:{customer address}` (email: the root message's "
    "Message-ID)."
)
ATTRIBUTES = CUSTOMER_CONTENT.because(
    "Attributes come from pre-chat forms, CRM lookups and API clients: free answers "
    "(an order number, an email address) as the customer or the client gave them."
)
NONE = NOT_PERSONAL
"""Short for ``NOT_PERSONAL`` in the tables."""
