"""The token cache of signed webhooks (``adapters.base.NonceStore``) in PostgreSQL.

One table, ``webhook_nonces``, shared by every adapter process and kept across restarts.
A claim is one ``INSERT … ON CONFLICT DO NOTHING RETURNING``: of two requests carrying the
same token, whichever process they reach, exactly one gets the row. Each claim first
deletes at most ``PURGE_BATCH`` expired rows of its provider (by the expiry index), so the
table stays the size of one freshness window of traffic without a periodic task.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import asyncpg

from adapters.base import NonceStoreUnavailable

PURGE_BATCH = 100
"""Expired rows deleted per claim: more than one claim adds, so the table shrinks."""
TIMEOUT_SECONDS = 5.0
"""Longest wait for a connection or a statement: then the webhook answers 503."""

_PURGE = """
DELETE FROM webhook_nonces WHERE ctid IN (
    SELECT ctid FROM webhook_nonces WHERE provider = $1 AND expires_at < now() LIMIT $2
)
"""
_CLAIM = """
INSERT INTO webhook_nonces (provider, nonce, expires_at) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING true
"""
_RELEASE = "DELETE FROM webhook_nonces WHERE provider = $1 AND nonce = $2"

# What a lost or refused connection raises: asyncpg's connection and interface errors
# (a closed pool, a dropped link), the server refusing connections now (shutting down,
# starting up, too many clients), OSError (refused, unreachable), and our timeouts.
_UNREACHABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    OSError,
    TimeoutError,
)


class PostgresNonces:
    """``NonceStore`` over the app's pool (``pool`` is called per use: the pool is made
    when the app starts, after the routes)."""

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool

    async def claim(self, provider: str, nonce: str, expires_at: float) -> bool:
        expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
        try:
            async with self._pool().acquire(timeout=TIMEOUT_SECONDS) as conn:
                await conn.execute(_PURGE, provider, PURGE_BATCH, timeout=TIMEOUT_SECONDS)
                claimed = await conn.fetchval(
                    _CLAIM, provider, nonce, expires, timeout=TIMEOUT_SECONDS
                )
        except _UNREACHABLE as exc:
            raise NonceStoreUnavailable(type(exc).__name__) from exc
        return claimed is True

    async def release(self, provider: str, nonce: str) -> None:
        try:
            async with self._pool().acquire(timeout=TIMEOUT_SECONDS) as conn:
                await conn.execute(_RELEASE, provider, nonce, timeout=TIMEOUT_SECONDS)
        except _UNREACHABLE as exc:
            raise NonceStoreUnavailable(type(exc).__name__) from exc
