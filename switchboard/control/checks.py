"""What a changed runtime configuration document must pass before it is stored, beyond its
structs' own checks: text PostgreSQL can store, callback URLs at addresses the deployment
admits, and, from a domain's admin, no variable holding another's credential. Each refusal
is an ``Invalid`` naming the place (the API answers 400)."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable
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


RESERVED_PREFIXES = ("SWITCHBOARD_", "KAFKA_", "DATABASE_", "PG")
"""Variables a domain's admin never names: the service's own (its admin token, its
database and broker, the log key) and libpq's."""


def check_domain_variables(
    before: ControlDocument, after: ControlDocument, domain: str, service: msgspec.Struct
) -> None:
    """A change by ``domain``'s admin (not a platform admin) names no variable that holds
    someone else's credential: none the service reads itself (``RESERVED_PREFIXES``, the
    ``*_env`` of ``service``), none the providers' sections name, none another domain's
    settings or endpoints name. The service uses what a variable holds on the domain's
    behalf (signing its lookups and web chat tokens, calling its providers), so naming the
    platform's admin token as an identity lookup's secret made lookups signed with it, sent
    where that domain chose. Names the domain named before, and a field's default, stay
    allowed: a platform admin set those."""
    others = _variables(after, lambda owner: owner != domain)
    for field in msgspec.structs.fields(service):
        value = getattr(service, field.name)
        if field.name.endswith("_env") and isinstance(value, str):
            others.add(value)
        elif field.name not in ("domains", "channels"):  # those as ``after`` has them
            others |= _variables([value], None)
    had = _variables(before, lambda owner: owner == domain, explicit=True)
    for name in sorted(_variables(after, lambda owner: owner == domain, explicit=True) - had):
        if name.startswith(RESERVED_PREFIXES) or name in others:
            raise Invalid(
                f"{name} names a variable of the platform or of another domain: only a"
                " platform admin may name it in a domain's settings"
            )


def _variables(
    node: object, keep: Callable[[str | None], bool] | None, *, explicit: bool = False
) -> set[str]:
    """The variables (``*_env`` fields) of ``node``, of the parts whose owner ``keep``
    admits: a domain's settings and each endpoint are owned by their domain, the rest
    (the providers' sections, the service's settings) by None. ``keep`` None: all of
    them. ``explicit``: not a field's default."""
    found: set[str] = set()

    def visit(node: object, owner: str | None) -> None:
        if isinstance(node, ControlDocument):
            for name, settings in node.domains.items():
                visit(settings, name)
            visit(node.channels, None)
        elif isinstance(node, msgspec.Struct):
            endpoint_of = getattr(node, "domain", None)
            if isinstance(endpoint_of, str):
                owner = endpoint_of
            for field in msgspec.structs.fields(node):
                value = getattr(node, field.name)
                if field.name.endswith("_env"):
                    default = explicit and value == field.default
                    if isinstance(value, str) and not default and (keep is None or keep(owner)):
                        found.add(value)
                elif isinstance(value, msgspec.Struct | list | tuple | dict):
                    visit(value, owner)
        elif isinstance(node, dict):
            for item in node.values():
                visit(item, owner)
        elif isinstance(node, list | tuple):
            for item in node:
                visit(item, owner)

    visit(node, None)
    return found


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
