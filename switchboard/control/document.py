"""The runtime configuration document (``ControlDocument``): every domain and endpoint.

It is the part of the configuration that the configuration API changes while the service
runs (``switchboard.control``); the rest (broker, database, HTTP, API authentication)
belongs to the deployment and stays in the file and the environment. A document is
validated as a whole before it becomes a version, so no process ever receives one that
names a queue, a domain or a calendar that does not exist.

Identity of a resource: its ``etag`` is a hash of its canonical JSON (sorted keys), so
that two processes, and a client holding an old copy, agree on it without asking anyone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from adapters.config import (
    ChannelsConfig,
    EmailAddress,
    InstagramAccount,
    MessengerPage,
    RbmAgent,
    TelegramBot,
    TwilioNumber,
    VonageNumber,
    WhatsAppNumber,
    XAccount,
)
from switchboard.config import ControlDocument

DOCUMENT_MAX_BYTES = 900 * 1024
"""Largest document, encoded: it travels as one record of the configuration topic, and
Kafka brokers refuse records over 1 MiB by default."""


@dataclass(frozen=True, slots=True)
class EndpointKind:
    """One kind of provider endpoint: where its list lives in ``ChannelsConfig``."""

    name: str
    """In API paths: ``/v1/domains/{domain}/channels/{name}/{key}``."""
    provider: str
    """The ``ChannelsConfig`` field of the provider."""
    field: str
    """The provider section's list of endpoints."""
    type: type[msgspec.Struct]
    key_field: str
    """The endpoint's identifying field (unique within the kind)."""

    @property
    def section(self) -> str:
        return f"{self.provider}.{self.field}"

    def items(self, channels: ChannelsConfig) -> list[Any]:
        items: list[Any] = getattr(getattr(channels, self.provider), self.field)
        return items

    def key_of(self, item: Any) -> str:
        key: str = getattr(item, self.key_field)
        return key.lower() if self.name == "email" else key

    def replace(self, channels: ChannelsConfig, items: list[Any]) -> ChannelsConfig:
        provider = msgspec.structs.replace(getattr(channels, self.provider), **{self.field: items})
        return msgspec.structs.replace(channels, **{self.provider: provider})


ENDPOINT_KINDS: dict[str, EndpointKind] = {
    kind.name: kind
    for kind in (
        EndpointKind("twilio", "twilio", "numbers", TwilioNumber, "number"),
        EndpointKind("whatsapp", "meta", "whatsapp", WhatsAppNumber, "phone_number_id"),
        EndpointKind("messenger", "meta", "messenger", MessengerPage, "page_id"),
        EndpointKind("instagram", "meta", "instagram", InstagramAccount, "account_id"),
        EndpointKind("telegram", "telegram", "bots", TelegramBot, "name"),
        EndpointKind("email", "email", "addresses", EmailAddress, "address"),
        EndpointKind("vonage", "vonage", "numbers", VonageNumber, "number"),
        EndpointKind("rbm", "rbm", "agents", RbmAgent, "agent_id"),
        EndpointKind("x", "x", "accounts", XAccount, "user_id"),
    )
}
"""Endpoint kinds by their name in API paths."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: EndpointKind
    key: str
    domain: str
    queue: str | None
    item: Any


def iter_endpoints(channels: ChannelsConfig) -> Iterator[Endpoint]:
    for kind in ENDPOINT_KINDS.values():
        for item in kind.items(channels):
            yield Endpoint(kind, kind.key_of(item), item.domain, item.queue, item)


# -- canonical form, etags and diffs ----------------------------------------------------


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, order="sorted")


def without_defaults(value: Any) -> Any:
    """Builtins of ``value`` leaving out every struct field at its default: what a person
    would write in the configuration file."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for field in msgspec.structs.fields(value):
            item = getattr(value, field.name)
            if field.default is not msgspec.NODEFAULT:
                default = field.default
            elif field.default_factory is not msgspec.NODEFAULT:
                default = field.default_factory()
            else:
                default = msgspec.NODEFAULT
            if default is msgspec.NODEFAULT or item != default:
                out[field.encode_name] = without_defaults(item)
        return out
    if isinstance(value, dict):
        return {to_builtins(key): without_defaults(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_defaults(item) for item in value]
    return to_builtins(value)


def canonical(value: Any) -> bytes:
    """Sorted keys, no whitespace: the same bytes in every process for the same value."""
    return msgspec.json.encode(to_builtins(value), order="sorted")


def etag(value: Any) -> str:
    """A strong entity tag of ``value`` (a struct, or None for a missing resource)."""
    return '"' + hashlib.sha256(canonical(value)).hexdigest()[:32] + '"'


def encode(document: ControlDocument) -> bytes:
    return msgspec.json.encode(document)


def decode(data: bytes | str) -> ControlDocument:
    """The document in ``data``; raises ``msgspec.ValidationError`` naming the field."""
    return msgspec.json.decode(data, type=ControlDocument)


def _diffable(document: ControlDocument) -> dict[str, Any]:
    """Builtins with each endpoint list keyed by endpoint, so that adding one number
    shows as one change rather than a new list."""
    tree: dict[str, Any] = to_builtins(document)
    channels = tree["channels"]
    for kind in ENDPOINT_KINDS.values():
        provider = channels[kind.provider]
        provider[kind.field] = {
            kind.key_of(item): to_builtins(item) for item in kind.items(document.channels)
        }
    return tree


class Change(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One difference between two versions."""

    path: str
    """Dotted path of the value, e.g. ``domains.acme.routing.queues.vip``."""
    op: str
    """``add``, ``remove`` or ``change``."""
    old: Any = None
    new: Any = None


def diff(old: ControlDocument, new: ControlDocument) -> list[Change]:
    """What changed from ``old`` to ``new``, at the deepest table level, sorted by path."""
    changes: list[Change] = []
    _diff_tree(_diffable(old), _diffable(new), "", changes)
    return changes


def _diff_tree(old: Any, new: Any, path: str, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(Change(path=where, op="remove", old=old[key]))
            elif key not in old:
                out.append(Change(path=where, op="add", new=new[key]))
            else:
                _diff_tree(old[key], new[key], where, out)
    elif old != new:
        out.append(Change(path=path, op="change", old=old, new=new))


def touched_domains(old: ControlDocument, new: ControlDocument) -> list[str]:
    """Domains a change from ``old`` to ``new`` concerns: their own section, or an
    endpoint feeding them (before or after)."""
    found = {
        name
        for name in old.domains.keys() | new.domains.keys()
        if old.domains.get(name) != new.domains.get(name)
    }
    before = {(e.kind.name, e.key): e for e in iter_endpoints(old.channels)}
    after = {(e.kind.name, e.key): e for e in iter_endpoints(new.channels)}
    for key in before.keys() | after.keys():
        was, now = before.get(key), after.get(key)
        if was is None or now is None or was.item != now.item:
            found.update(e.domain for e in (was, now) if e is not None)
    return sorted(found)
