"""``adapters.normalize.parse_form``: the url-encoded bodies of every provider's webhooks
(Twilio, Mailgun, Vonage's SMS API) read as the standard library reads them."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapters.base import BadRequest
from adapters.normalize import MAX_FORM_FIELDS, parse_form

# What a form body is made of, and what trips a parser: separators, escapes (valid,
# truncated, invalid UTF-8), spaces as "+", non-ASCII text.
_PIECES = st.sampled_from(
    [
        "&",
        "=",
        "+",
        "%",
        "%2B",
        "%20",
        "%2",
        "%zz",
        "%C3%A9",
        "%C3",
        "%FF",
        "a",
        "Body",
        "é",
        " ",
        ";",
    ]
)


def _standard(body: bytes) -> list[tuple[str, str]] | None:
    try:
        return urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        return None


def _ours(body: bytes) -> list[tuple[str, str]] | None:
    try:
        return parse_form(body)
    except BadRequest:
        return None


@given(st.lists(_PIECES, max_size=40).map("".join))
@example("a=1&&b&c=%2B1415+x&d=%C3%A9%zz")
def test_a_form_reads_as_the_standard_library_reads_it(text: str) -> None:
    body = text.encode()
    assert _ours(body) == _standard(body)


@given(st.binary(max_size=64))
def test_any_bytes_read_as_the_standard_library_reads_them(body: bytes) -> None:
    assert _ours(body) == _standard(body)


def test_too_many_fields_are_refused_like_the_standard_library_refuses_them() -> None:
    most = "&".join(["a=1"] * MAX_FORM_FIELDS).encode()
    assert len(parse_form(most)) == MAX_FORM_FIELDS
    with pytest.raises(BadRequest, match="at most 1000 fields"):
        parse_form(most + b"&a=1")
    assert _standard(most + b"&a=1") is None
