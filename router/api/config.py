"""The ``[api]`` section of the configuration: authentication and the live feed's limits.

Kept free of ``switchboard`` imports: ``switchboard.config`` imports it.
"""

from __future__ import annotations

import enum

import msgspec


class AuthMode(enum.StrEnum):
    """How the agent API authenticates requests."""

    TOKENS = "tokens"
    """Bearer tokens from ``api_tokens`` (``switchboard token create``), plus the optional
    bootstrap admin token named by ``admin_token_env``."""
    DISABLED = "disabled"
    """Every request acts as an admin of every domain: local demos only."""


class ApiConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The agent and operations API (``[api]``)."""

    auth: AuthMode = AuthMode.TOKENS
    """``tokens`` (default) or ``disabled`` (no authentication: local demos only)."""
    admin_token_env: str | None = "SWITCHBOARD_ADMIN_TOKEN"  # noqa: S105 -- a variable name
    """Environment variable holding a bootstrap admin token, valid on every domain (for
    operators and provisioning); unset or empty variable: no such token."""
    command_timeout: float = 3.0
    """Seconds an accept/close/transfer request waits for the router's verdict before it
    answers 202 with ``"status": "pending"``."""
    request_timeout: float = 10.0
    """Seconds a request may take, waiting for PostgreSQL and the broker included, before
    it answers 503 with ``Retry-After`` (the event stream once it streams excepted): a locked
    or stalled database must not hold clients, nor every connection of the pool. More than
    ``command_timeout``, whose wait it includes."""
    stream_buffer: int = 1000
    """Recent routing events kept per domain for ``Last-Event-ID`` resumption."""
    heartbeat_seconds: float = 15.0
    """Seconds between keep-alive comments on an idle event stream."""
    max_body_bytes: int = 64 * 1024
    """Largest request body of the API; larger ones get 413."""

    def __post_init__(self) -> None:
        if not 0 < self.command_timeout <= 60:
            raise ValueError("must be between 0 and 60 (command_timeout)")
        if not self.command_timeout < self.request_timeout <= 300:
            raise ValueError("must be more than command_timeout and at most 300 (request_timeout)")
        if not 1 <= self.stream_buffer <= 1_000_000:
            raise ValueError("must be between 1 and 1000000 (stream_buffer)")
        if not 0 < self.heartbeat_seconds <= 300:
            raise ValueError("must be between 0 and 300 (heartbeat_seconds)")
        if self.max_body_bytes < 1024:
            raise ValueError("must be at least 1024 (max_body_bytes)")
