"""The service's own configuration sections: clients, HTTP, logging, metrics, callbacks.

The sections of the router and the adapters live next to the code that uses them; the
composition root (``switchboard.config``) puts them all together and reads the files and
the environment.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from runtime.callbacks import ALLOWED_BY_DEFAULT, parse_networks


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the problem."""


LOG_LEVEL = r"(?i)^(debug|info|warning|error|critical)$"


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
    topic_retention_ms: int | None = None
    """``retention.ms`` of the topics Switchboard creates, all but ``switchboard.config``
    (they carry message texts and addresses); None: the broker's default. At most the
    shortest retention period any domain sets (see ``runtime.retention``)."""
    seal_personal_data: bool = True
    """Seal records holding a customer's personal data with a key of the customer's, so
    that erasing the customer makes the copies on the topics unreadable
    (``runtime.sealing``). Readers open sealed and plain records alike."""
    key_cache_seconds: float = 60.0
    """How long a process keeps a topic key it fetched (``runtime.sealing``)."""
    key_shred_delay_seconds: int = 300
    """How long an erased customer's topic keys are kept before they are deleted: longer
    than ``key_cache_seconds``, so that a record a producer sealed with a cached key just
    before the erasure is still read by the router; 0 deletes them at once."""
    consumer_group: str = "switchboard-router"
    """Consumer group of the router processes."""
    fetch_max_wait_ms: int = 20
    """Longest a fetch waits for data: bounds routing latency (see the README)."""
    background_fetch_max_wait_ms: int = 500
    """The same for consumers no one waits on (the configuration follower, the dead-letter
    recorder, and an API process's routing feed while it has no stream open and no command
    awaiting its verdict: it then reads this often, paused between reads): on a broker
    whose fetches do not wake on new data, each consumer polling every
    ``fetch_max_wait_ms`` costs the broker and its own process CPU while idle."""
    max_batch_records: int = 2000
    """Records the router takes per batch at most."""
    session_timeout_ms: int = 10000
    """Consumer session timeout: how fast a dead router's partitions move. The embedded
    broker answers a consumer group's first join after half of it: a router on it starts
    reading that much later."""
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
        if not 0 <= self.background_fetch_max_wait_ms <= 10000:
            raise ValueError("must be between 0 and 10000 (background_fetch_max_wait_ms)")
        if self.topic_retention_ms is not None and self.topic_retention_ms < 3_600_000:
            # Shorter, a router that is down for a while loses records it did not read yet.
            raise ValueError("must be at least 3600000, one hour (topic_retention_ms)")
        if not 0 < self.key_cache_seconds <= 3600:
            raise ValueError("must be more than 0 and at most 3600 (key_cache_seconds)")
        if self.key_shred_delay_seconds and self.key_shred_delay_seconds <= self.key_cache_seconds:
            raise ValueError("must be 0 or longer than key_cache_seconds (key_shred_delay_seconds)")
        if not 0 <= self.key_shred_delay_seconds <= 86_400:
            raise ValueError("must be between 0 and 86400 (key_shred_delay_seconds)")


class DatabaseConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None
    """PostgreSQL URL (env ``DATABASE_URL``); unset: start the embedded PostgreSQL."""
    pool_min_size: int = 1
    """Connections kept open in the pool."""
    pool_max_size: int = 10
    """Connections the pool may open."""
    dead_connection_seconds: int = 30
    """A pool connection whose server's host has answered nothing for this long is closed
    (TCP keepalive and ``TCP_USER_TIMEOUT``): a server gone without closing its
    connections (a failover, a host lost) holds none of the pool's connections until the
    system's TCP gives up, which takes about 15 minutes. 0 leaves the system's settings."""

    def __post_init__(self) -> None:
        if self.dead_connection_seconds and not 2 <= self.dead_connection_seconds <= 3600:
            raise ValueError("must be 0 or between 2 and 3600 (dead_connection_seconds)")


class HttpConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    """Address the HTTP server binds (env ``SWITCHBOARD_HOST``)."""
    port: int = 8080
    """HTTP port (env ``SWITCHBOARD_PORT``)."""
    public_url: str | None = None
    """The URL providers call, for signature checks behind proxies (env ``SWITCHBOARD_PUBLIC_URL``)."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted; larger ones get 413."""
    max_email_body_bytes: int = 32 * 1024 * 1024
    """Largest inbound mail a provider posts (Mailgun's routes, SendGrid's Inbound Parse):
    the whole mail, attachments included (Mailgun takes mails of up to 25 MB, SendGrid of
    up to 30 MB); larger ones get 413."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("must be a port number (port)")


class MetricsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What ``/metrics`` exposes (``[metrics]``).

    Example (TOML)::

        [metrics]
        domain_label_limit = 250
    """

    domain_label_limit: int = 100
    """Routing domains that get a ``domain`` label value of their own, per process: the
    first ones seen; every later domain is counted under ``domain="other"``. Each one
    adds a set of series to every per-domain metric."""

    def __post_init__(self) -> None:
        if not 1 <= self.domain_label_limit <= 10000:
            raise ValueError("must be between 1 and 10000 (domain_label_limit)")


class CallbacksConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the URLs a domain's admins set (bot webhooks, identity lookups) may lead
    (``[callbacks]``; ``runtime.callbacks``).

    Example (TOML)::

        [callbacks]
        allowed_networks = ["public", "10.20.0.0/16"]
    """

    allowed_networks: tuple[str, ...] = ALLOWED_BY_DEFAULT
    """The addresses such a call may connect to: ``public``, ``private``, ``loopback`` or
    networks in CIDR notation. The default admits all three names, not the link-local
    instance metadata; a deployment serving several teams names only what their bots and
    CRMs need."""

    def __post_init__(self) -> None:
        if len(self.allowed_networks) > 100:
            raise ValueError("at most 100 entries (callbacks.allowed_networks)")
        try:
            parse_networks(self.allowed_networks)
        except ValueError as error:
            raise ValueError(f"{error} (callbacks.allowed_networks)") from None


class ServiceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every part of the service reads: clients, logging, event source, topic names.

    The deployment's whole configuration (``switchboard.config.Config``) extends it with
    the sections of the router and the adapters.
    """

    kafka: KafkaConfig = KafkaConfig()
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    metrics: MetricsConfig = MetricsConfig()
    """What ``/metrics`` exposes: the bound of the ``domain`` label."""
    callbacks: CallbacksConfig = CallbacksConfig()
    """The addresses bot webhooks and identity lookups may connect to."""
    log_format: LogFormat | None = None
    """``json`` or ``console`` (env ``SWITCHBOARD_LOG_FORMAT``); default: console in a terminal."""
    log_level: Annotated[str, msgspec.Meta(pattern=LOG_LEVEL)] = "INFO"
    """Log level of Switchboard's own loggers: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or
    ``CRITICAL``, in any case."""
    log_digest_key_env: str = "SWITCHBOARD_LOG_DIGEST_KEY"
    """Variable holding the key of the customer digests in logs and the audit log (``h:…``):
    the same in every process, one customer's digest is the same everywhere and across
    restarts. Unset, each process draws a key of its own at start. Keyed, a digest of a
    phone number cannot be found by hashing every number."""
    state_dir: str = ".state"
    """Where the embedded broker and PostgreSQL keep their files."""
    source: str = "switchboard"
    """CloudEvents ``source`` of the events this deployment publishes."""
    secrets_file: str | None = None
    """A TOML file of credentials, or a directory with one file per credential, for the
    variable names the configuration gives (``*_env``) that the environment lacks; read
    again with every new runtime configuration version (see ``runtime.secrets``)."""

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"
