"""What a changed runtime configuration document must pass before it is stored, beyond its
structs' own checks: text PostgreSQL can store, and callback URLs at addresses the
deployment admits. Each refusal is an ``Invalid`` naming the place (the API answers 400)."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Any

import msgspec

from runtime.callbacks import AllowedAddresses, literal_address
from switchboard.config import ControlDocument
from switchboard.control.document import to_builtins

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Invalid(ValueError):
    """The document is refused; the message names the field and the rule."""


def checked(
    before: ControlDocument, after: ControlDocument, allowed: AllowedAddresses
) -> ControlDocument:
    """``after``, the change of ``before``, checked whole as a client's would be
    (``__post_init__`` of every part), with no text PostgreSQL cannot store (its diff is
    ``jsonb``) and no new callback URL at an address ``allowed`` refuses."""
    tree = to_builtins(after)
    _check_text(tree, "")
    try:
        validated = msgspec.convert(tree, ControlDocument)
    except msgspec.ValidationError as error:
        raise Invalid(str(error)) from None
    _check_callback_addresses(before, validated, allowed)
    return validated


def _callback_urls(document: ControlDocument) -> dict[str, str]:
    """The URLs a domain's admins set, which the service calls, by where they are set."""
    urls = {}
    for name, domain in document.domains.items():
        if domain.identity_lookup is not None:
            urls[f"domains.{name}.identity_lookup.url"] = domain.identity_lookup.url
        for bot_id, bot in domain.routing.bots.items():
            if bot.webhook is not None:
                urls[f"domains.{name}.routing.bots.{bot_id}.webhook.url"] = bot.webhook.url
    return urls


def _check_callback_addresses(
    before: ControlDocument, after: ControlDocument, allowed: AllowedAddresses
) -> None:
    """A URL set or changed whose host is an address ``[callbacks]`` does not admit is
    refused now, rather than failing every call (a name is checked at each connection)."""
    unchanged = _callback_urls(before)
    for where, url in _callback_urls(after).items():
        if unchanged.get(where) == url:
            continue
        literal = literal_address(urllib.parse.urlsplit(url).hostname or "")
        if literal is None:
            continue  # a name
        address = ipaddress.ip_address(literal)
        if not allowed.allows(address):
            raise Invalid(f"{where}: {address} is not an address callbacks.allowed_networks admits")


def _check_text(value: Any, path: str) -> None:
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise Invalid(f"{path or 'a value'} holds NUL or a lone surrogate")
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            _check_text(key, f"a key of {path or 'the document'}")
            _check_text(item, where)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_text(item, f"{path}[{index}]")
