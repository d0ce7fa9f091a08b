"""Configuration: one frozen Struct, read in one place (``load_config``).

Sources, later wins: built-in defaults, the TOML file named by ``SWITCHBOARD_CONFIG``
(else the packaged ``defaults.toml``), then the environment variables of the public
contract. Sections live next to the code that uses them (``router.engine.DomainPolicy``,
``adapters.config.ChannelsConfig``, ``adapters.webchat.WebchatConfig``). A bad value stops
start-up with one message naming the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from adapters.config import ChannelsConfig
from adapters.lookup import IdentityLookupConfig
from adapters.webchat import WebchatConfig
from adapters.webchat_prechat import prechat_queues
from router.api.config import ApiConfig
from router.engine import DomainPolicy
from router.shell.residents import RouterConfig
from runtime.config import ConfigError, ServiceConfig
from runtime.outbound import OutboundConfig
from runtime.retention import RetentionConfig, RetentionJobConfig
from runtime.workload import WorkloadJobConfig
from schemas.limits import DOMAIN_MAX

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")


class DomainConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    routing: DomainPolicy = DomainPolicy()
    """How conversations of this domain are routed (queues, steps, waits)."""
    webchat: WebchatConfig = WebchatConfig()
    """The domain's web chat channel."""
    identity_lookup: IdentityLookupConfig | None = None
    """Ask the platform's CRM who each customer is (``adapters.lookup``); unset: never."""
    outbound: OutboundConfig = OutboundConfig()
    """Business-started messages: templates, consent keywords, send rates
    (``runtime.outbound``)."""
    retention: RetentionConfig = RetentionConfig()
    """How long the domain's message bodies, routing history, consent history and dead
    letters are kept in PostgreSQL (``runtime.retention``); unset periods: for ever."""


def check_domain_id(name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"domain ids are letters, digits, '-' and '_' (domains.{name})")
    if len(name) > DOMAIN_MAX:
        raise ValueError(f"domain ids are at most {DOMAIN_MAX} characters (domains.{name})")


def check_references(domains: Mapping[str, DomainConfig], channels: ChannelsConfig) -> None:
    """Every endpoint feeds a configured domain and one of its queues, and every queue the
    web chat or a pre-chat option names is one of its domain's."""
    for name, config in domains.items():
        check_domain_id(name)
        queue = config.webchat.queue
        if queue is not None and queue not in config.routing.queues:
            raise ValueError(
                f"domains.{name}.webchat.queue: domain {name!r} has no queue {queue!r}"
            )
        for where, queue in prechat_queues(config.webchat.prechat):
            if queue not in config.routing.queues:
                raise ValueError(
                    f"domains.{name}.webchat.{where}.queue: domain {name!r} has no queue {queue!r}"
                )
    sections: tuple[tuple[str, Sequence[Any]], ...] = (
        ("twilio.numbers", channels.twilio.numbers),
        ("meta.whatsapp", channels.meta.whatsapp),
        ("meta.messenger", channels.meta.messenger),
        ("meta.instagram", channels.meta.instagram),
        ("telegram.bots", channels.telegram.bots),
        ("email.addresses", channels.email.addresses),
    )
    for section, endpoints in sections:
        for index, endpoint in enumerate(endpoints):
            where = f"channels.{section}[{index}]"
            domain = domains.get(endpoint.domain)
            if domain is None:
                raise ValueError(f"{where}.domain: unknown domain {endpoint.domain!r}")
            if endpoint.queue is not None and endpoint.queue not in domain.routing.queues:
                raise ValueError(
                    f"{where}.queue: domain {endpoint.domain!r} has no queue {endpoint.queue!r}"
                )
    for name in channels.phone_identity_domains:
        if name not in domains:
            raise ValueError(f"channels.phone_identity_domains: unknown domain {name!r}")


class ControlDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The configuration the configuration API manages while the service runs: the
    ``domains`` and ``channels`` sections (``switchboard.control``)."""

    domains: dict[str, DomainConfig] = {}
    """Routing domains by id (tenants)."""
    channels: ChannelsConfig = ChannelsConfig()
    """Provider settings and every endpoint, with the domain and queue it feeds."""

    def __post_init__(self) -> None:
        check_references(self.domains, self.channels)


class Config(ServiceConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    domains: dict[str, DomainConfig] = {}
    """Routing domains by id; each is one independent contact centre."""
    channels: ChannelsConfig = ChannelsConfig()
    """Provider endpoints and their secrets (see Channel adapters)."""
    api: ApiConfig = ApiConfig()
    """The agent and operations API: authentication, command waits, the event stream."""
    retention: RetentionJobConfig = RetentionJobConfig()
    """How the routers' retention job runs: interval, batch size, the dead letters no
    domain owns (``runtime.retention``)."""
    workload: WorkloadJobConfig = WorkloadJobConfig()
    """How the routers measure the workload as they run: interval, lookback
    (``runtime.workload``)."""
    router: RouterConfig = RouterConfig()
    """The router's memory: how many customers without open work it keeps
    (``router.shell.residents``)."""

    def __post_init__(self) -> None:
        if not self.domains:
            raise ValueError("at least one domain must be configured (domains)")
        check_references(self.domains, self.channels)

    def document(self) -> ControlDocument:
        """The file's domains and channels: the first version of the runtime configuration."""
        return ControlDocument(domains=self.domains, channels=self.channels)

    def with_document(self, document: ControlDocument) -> Config:
        return msgspec.structs.replace(self, domains=document.domains, channels=document.channels)


#: Environment variables of the public contract and the key each one sets.
ENVIRONMENT_KEYS: dict[str, tuple[str, ...]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "DATABASE_URL": ("database", "url"),
    "SWITCHBOARD_HOST": ("http", "host"),
    "SWITCHBOARD_PORT": ("http", "port"),
    "SWITCHBOARD_PUBLIC_URL": ("http", "public_url"),
    "SWITCHBOARD_LOG_FORMAT": ("log_format",),
    "SWITCHBOARD_LOG_LEVEL": ("log_level",),
    "SWITCHBOARD_STATE_DIR": ("state_dir",),
    "SWITCHBOARD_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "SWITCHBOARD_SECRETS_FILE": ("secrets_file",),
}


def _set(tree: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    for key in path[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config: {key} must be a table")
        tree = node
    tree[path[-1]] = value


def load_config(environ: Mapping[str, str], path: str | Path | None = None) -> Config:
    """Read and validate the configuration; raise ``ConfigError`` naming the bad key."""
    if path is None:
        path = environ.get("SWITCHBOARD_CONFIG") or DEFAULTS_PATH
    path = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} not found (SWITCHBOARD_CONFIG)") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config: {path} is not valid TOML: {error}") from None
    for variable, key in ENVIRONMENT_KEYS.items():
        value = environ.get(variable)
        if value:
            _set(raw, key, value)
    # Domains one by one, so that an error names the domain (msgspec says ``domains[...]``).
    domains = raw.get("domains")
    if isinstance(domains, dict):
        converted = {}
        for name, section in domains.items():
            try:
                converted[name] = msgspec.convert(section, DomainConfig, strict=False)
            except msgspec.ValidationError as error:
                raise ConfigError(f"config: {_readable(str(error), f'domains.{name}')}") from None
        raw["domains"] = converted
    try:
        return msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as error:
        raise ConfigError(f"config: {_readable(str(error))}") from None


def _readable(message: str, prefix: str = "") -> str:
    """``Expected `int`, got `str` - at `$.http.port``` -> ``http.port: Expected `int`...``"""
    text, sep, where = message.rpartition(" - at `$")
    if not sep:
        return f"{prefix}: {message}" if prefix else message
    key = where.rstrip("`").lstrip(".").replace("`", "")
    return f"{'.'.join(p for p in (prefix, key) if p)}: {text}"
