"""Configuration: one frozen Struct, read in one place (``load_config``).

Sources, later wins: built-in defaults, the TOML file named by ``SWITCHBOARD_CONFIG``
(else the packaged ``defaults.toml``), then the environment variables of the public
contract. Sections live next to the code that uses them (``router.engine.DomainPolicy``,
``adapters.config.ChannelsConfig``, ``adapters.webchat.WebchatConfig``). A bad value stops
start-up with one message naming the key.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from adapters.config import ChannelsConfig
from adapters.webchat import WebchatConfig
from router.api.config import ApiConfig
from router.engine import DomainPolicy
from schemas.limits import DOMAIN_MAX

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the problem."""


class LogFormat(enum.StrEnum):
    JSON = "json"
    CONSOLE = "console"


class KafkaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    bootstrap_servers: str | None = None
    """Kafka bootstrap servers (env ``KAFKA_BOOTSTRAP_SERVERS``); unset: start the embedded broker."""
    topic_prefix: str = ""
    """Prefix of every topic name, e.g. ``prod.`` gives ``prod.conversations.inbound``."""
    partitions: int = 6
    """Partitions of the topics Switchboard creates (inbound and agents topics must match)."""
    replication_factor: int = 1
    """Replication factor of the topics Switchboard creates."""
    create_topics: bool = True
    """Create missing topics at start-up."""
    consumer_group: str = "switchboard-router"
    """Consumer group of the router processes."""
    fetch_max_wait_ms: int = 20
    """Longest a fetch waits for data: bounds routing latency (see the README)."""
    max_batch_records: int = 2000
    """Records the router takes per batch at most."""
    session_timeout_ms: int = 10000
    """Consumer session timeout: how fast a dead router's partitions move."""
    security_protocol: str = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``."""
    sasl_mechanism: str | None = None
    """``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` when SASL is used."""
    sasl_username_env: str | None = None
    """Environment variable holding the SASL user name."""
    sasl_password_env: str | None = None
    """Environment variable holding the SASL password."""

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("must be at least 1 (partitions)")
        if not 0 <= self.fetch_max_wait_ms <= 10000:
            raise ValueError("must be between 0 and 10000 (fetch_max_wait_ms)")


class DatabaseConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None
    """PostgreSQL URL (env ``DATABASE_URL``); unset: start the embedded PostgreSQL."""
    pool_min_size: int = 1
    """Connections kept open in the pool."""
    pool_max_size: int = 10
    """Connections the pool may open."""


class HttpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    """Address the HTTP server binds (env ``SWITCHBOARD_HOST``)."""
    port: int = 8080
    """HTTP port (env ``SWITCHBOARD_PORT``)."""
    public_url: str | None = None
    """The URL providers call, for signature checks behind proxies (env ``SWITCHBOARD_PUBLIC_URL``)."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted; larger ones get 413."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("must be a port number (port)")


class DomainConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    routing: DomainPolicy = DomainPolicy()
    """How conversations of this domain are routed (queues, steps, waits)."""
    webchat: WebchatConfig = WebchatConfig()
    """The domain's web chat channel."""


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaConfig = KafkaConfig()
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    log_format: LogFormat | None = None
    """``json`` or ``console`` (env ``SWITCHBOARD_LOG_FORMAT``); default: console in a terminal."""
    log_level: str = "INFO"
    """Log level of Switchboard's own loggers."""
    state_dir: str = ".state"
    """Where the embedded broker and PostgreSQL keep their files."""
    source: str = "switchboard"
    """CloudEvents ``source`` of the events this deployment publishes."""
    domains: dict[str, DomainConfig] = {}
    """Routing domains by id; each is one independent contact centre."""
    channels: ChannelsConfig = ChannelsConfig()
    """Provider endpoints and their secrets (see Channel adapters)."""
    api: ApiConfig = ApiConfig()
    """The agent and operations API: authentication, command waits, the event stream."""

    def __post_init__(self) -> None:
        if not self.domains:
            raise ValueError("at least one domain must be configured (domains)")
        for name in self.domains:
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"domain ids are letters, digits, '-' and '_' (domains.{name})")
            if len(name) > DOMAIN_MAX:
                raise ValueError(f"domain ids are at most {DOMAIN_MAX} characters (domains.{name})")

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"


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
