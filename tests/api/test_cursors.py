"""Cursors a client made by hand: their check is an unkeyed digest, so a client can make
one that passes it; what it holds must still be a position the database can take (400
otherwise, never a 500 or a database error)."""

from __future__ import annotations

import base64

import msgspec
import pytest
from aiohttp import web

from router.api.campaigns import decode_cursor
from router.api.desktop import digest, encode_cursor
from router.api.export import ExportCursor, export_position

BEYOND_YEAR_9999 = 2**61


def _campaign_cursor(scope: str, micros: int, key: str) -> str:
    raw = msgspec.json.encode((micros, key, digest(scope, micros, key)))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(("micros", "key"), [(BEYOND_YEAR_9999, "spring"), (0, "spr\x00ing")])
def test_a_listing_cursor_made_by_hand_is_refused(micros: int, key: str) -> None:
    with pytest.raises(web.HTTPBadRequest):
        decode_cursor(_campaign_cursor("campaigns:acme", micros, key), "campaigns:acme")


def test_a_listing_cursor_it_gave_is_taken() -> None:
    at, key = decode_cursor(_campaign_cursor("campaigns:acme", 10**15, "spring"), "campaigns:acme")
    assert (at.year, key) == (2001, "spring")


def test_an_export_cursor_made_by_hand_is_refused() -> None:
    profile, conversation = "phone:+14155552671", "conv-1"
    check = digest("export", profile, BEYOND_YEAR_9999, conversation)
    raw = encode_cursor(ExportCursor(1, BEYOND_YEAR_9999, conversation, check))
    with pytest.raises(web.HTTPBadRequest):
        export_position(raw, profile)
