"""The README's cross-references ("see *Memory*", "under *Operations*") name a heading of
the README or a paragraph's bold title, so a reader who follows one finds it."""

from __future__ import annotations

import re

from tests.readme.commands import README, _sections_and_lines

_REFERENCE = re.compile(r"\b(?:[Ss]ee|under) \*([^*\s][^*]*)\*")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _unresolved(text: str) -> list[str]:
    # The headings the commands are filed under: a comment in a code block is none.
    headings = {_plain(section) for _, section, _, _ in _sections_and_lines(text)}
    titles = [_plain(title).rstrip(".:") for title in _BOLD.findall(text)]
    return [
        name
        for name in (_plain(found) for found in _REFERENCE.findall(text))
        if not any(name in heading for heading in headings)
        and not any(title.startswith(name) for title in titles)
    ]


def test_every_reference_names_a_heading_or_a_titled_paragraph() -> None:
    assert _unresolved(README.read_text()) == []


def test_a_reference_to_nothing_is_found() -> None:
    text = (
        "## Memory\n\n**Kept: the pool.** It is.\n\n```sh\n# Speed\n```\n\n"
        "See *Memory*, see *Kept*, see *Speed*.\n"
    )
    assert _unresolved(text) == ["speed"]
