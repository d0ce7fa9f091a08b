"""The automatic wait notice: ``[domains.<name>.routing.wait_notice]``.

Configuration only: the engine does not send it (it measures nothing). The router's shell
sends one message to a customer per waiting episode when the expected wait is long, or
when the queue is closed (``router.shell.waits``; README *Live wait estimates*).

Example (TOML)::

    [domains.acme.routing.wait_notice]
    enabled = true
    min_wait = 120                              # announce waits of 2 minutes or more
    default_language = "en"

    [domains.acme.routing.wait_notice.texts.en]
    waiting = "Thanks for waiting: an agent will answer in about {minutes} minutes."
    closed = "We are closed now; we open at {opens_at}."
    clock = "12h"

    [domains.acme.routing.wait_notice.texts.fr]
    waiting = "Merci de patienter : un conseiller vous répond dans {minutes} minutes environ."
    closed = "Nous sommes fermés ; nous ouvrons à {opens_at}."
"""

from __future__ import annotations

import enum
import string

import msgspec

from schemas.limits import LANGUAGE_MAX

NOTICE_TEXT_MAX = 1000
"""Characters of one notice text (before the placeholders are filled)."""
NOTICE_LANGUAGES_MAX = 50
"""Languages one domain's notice may have texts in."""
PLACEHOLDERS = frozenset({"minutes", "opens_at"})
"""What a text may say in braces: ``{minutes}`` (the expected wait in whole minutes, at
least 1) and ``{opens_at}`` (when the closed queue opens, in its calendar's time zone)."""
MIN_WAIT_MAX = 86400.0


class Clock(enum.StrEnum):
    """How ``{opens_at}`` writes a time of day."""

    H24 = "24h"
    """``9:00``, ``17:30``."""
    H12 = "12h"
    """``9:00 AM``, ``5:30 PM``."""


def placeholders(text: str) -> set[str]:
    """The names a text puts in braces; raises ValueError on a malformed text, or on a
    placeholder with a conversion or a format (``{minutes!r}``, ``{minutes:>3}``)."""
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no conversion or format")
        names.add(name)
    return names


class WaitNoticeTexts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A notice's texts in one language (``{{`` and ``}}`` write a brace)."""

    waiting: str
    """Sent when the expected wait is at least ``min_wait``: ``{minutes}`` (and
    ``{opens_at}``, empty then) may appear; at most 1000 characters."""
    closed: str = ""
    """Sent when the queue is closed (the conversation waits for its business hours):
    ``{opens_at}`` may appear; at most 1000 characters. Empty: nothing is sent then."""
    clock: Clock = Clock.H24
    """How ``{opens_at}`` writes the time: ``24h`` (``9:00``) or ``12h`` (``9:00 AM``)."""

    def __post_init__(self) -> None:
        if not self.waiting.strip():
            raise ValueError("waiting: the text is empty")
        for name in ("waiting", "closed"):
            text = getattr(self, name)
            if len(text) > NOTICE_TEXT_MAX:
                raise ValueError(f"{name}: at most {NOTICE_TEXT_MAX} characters")
            try:
                unknown = placeholders(text) - PLACEHOLDERS
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
            if unknown:
                raise ValueError(
                    f"{name}: unknown placeholder(s) {sorted(unknown)}; "
                    f"known: {sorted(PLACEHOLDERS)}"
                )


class WaitNoticePolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The automatic message telling a waiting customer how long they will wait."""

    enabled: bool = False
    """Send the notice (off by default)."""
    min_wait: float = 120.0
    """Seconds: only an expected wait at least this long is announced (0 to 86400)."""
    default_language: str = "en"
    """Texts used when the conversation's language has none (or it has no language)."""
    texts: dict[str, WaitNoticeTexts] = {}
    """Texts by language (BCP 47: ``en``, ``fr``, ``pt-BR``; at most 50 languages); a
    conversation in ``fr-CA`` gets ``fr-CA``, else ``fr``, else ``default_language``."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_wait <= MIN_WAIT_MAX:
            raise ValueError(f"wait_notice.min_wait: 0 to {MIN_WAIT_MAX:.0f} seconds")
        if len(self.texts) > NOTICE_LANGUAGES_MAX:
            raise ValueError(f"wait_notice.texts: at most {NOTICE_LANGUAGES_MAX} languages")
        for language in (*self.texts, self.default_language):
            if not language or len(language) > LANGUAGE_MAX or not language.isascii():
                raise ValueError(
                    f"wait_notice: language {language!r} is not 1 to {LANGUAGE_MAX} ASCII "
                    "characters"
                )
        if self.enabled and self.default_language not in self.texts:
            raise ValueError(f"wait_notice.default_language {self.default_language!r} has no texts")

    def texts_for(self, language: str | None) -> WaitNoticeTexts | None:
        """The texts of ``language``, of its primary language, else of the default."""
        if language:
            found = self.texts.get(language) or self.texts.get(language.split("-")[0])
            if found is not None:
                return found
        return self.texts.get(self.default_language)
