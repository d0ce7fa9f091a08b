"""Send rates shared by every adapter process: token buckets kept in PostgreSQL.

The model (pure functions below, which ``SharedBuckets`` applies under the row's lock):

1. A bucket holds ``tokens`` at time ``at``. It refills at ``rate.per_second`` and never
   holds more than ``rate.burst``.
2. A claim of ``want`` refills the bucket up to now and takes the whole tokens it holds,
   at most ``want``: the grant. A process sends one message per granted token.
3. Tokens a claim could not use (fewer messages left than tokens, an opted-out address)
   are given back, up to the burst.
4. A provider's "slow down" (a 429) puts the bucket in debt: it holds at most
   ``-rate * seconds``, so no claimer anywhere gets a token for ``seconds``.

Invariant (``tests/adapters/test_pacing.py``): over any sequence of claims, the tokens used
in any time window ``[t1, t2]`` are at most ``burst + rate * (t2 - t1)``.

Sharing: a bucket is a row of ``send_buckets``. A claim is one short transaction: lock
the row (``FOR UPDATE``), read the database's clock (``clock_timestamp()``, once the lock
is held, so claimers are serialised in clock order), apply the model, write the row. The
clock is the database's, so adapter hosts' clocks do not matter, and N processes together
never get more than one bucket gives. (A single ``UPDATE`` computing the model in SQL
would read its clock when the statement starts, before any wait for the lock: under
contention, claims would be granted out of clock order.) The rates are configuration, passed with every claim: a
new configuration version applies at the next claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from runtime.outbound import Rate

CLAIM_PERIOD = 0.1
"""Seconds of a sender's rate one claim asks for: claims stay few (ten a second per
sender at most), sends stay spread."""
MAX_BATCH = 100
"""Tokens one claim asks for at most."""


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at: float
    """When the bucket held ``tokens`` (seconds)."""


def refilled(bucket: Bucket, rate: Rate, now: float) -> float:
    """Rule 1: what ``bucket`` holds at ``now``."""
    return min(float(rate.burst), bucket.tokens + rate.per_second * max(0.0, now - bucket.at))


def take(bucket: Bucket, rate: Rate, want: int, now: float) -> tuple[Bucket, int]:
    """Rule 2: the bucket after a claim of ``want`` at ``now``, and the grant."""
    available = refilled(bucket, rate, now)
    granted = max(0, min(want, math.floor(available)))
    return Bucket(available - granted, max(bucket.at, now)), granted


def give_back(bucket: Bucket, rate: Rate, count: int, now: float) -> Bucket:
    """Rule 3."""
    return Bucket(min(float(rate.burst), refilled(bucket, rate, now) + count), max(bucket.at, now))


def slow_down(bucket: Bucket, rate: Rate, seconds: float, now: float) -> Bucket:
    """Rule 4."""
    debt = -rate.per_second * seconds
    return Bucket(min(refilled(bucket, rate, now), debt), max(bucket.at, now))


def seconds_until(tokens: float, rate: Rate, wanted: int) -> float:
    """How long until a bucket holding ``tokens`` holds ``wanted`` (0: it does)."""
    return max(0.0, (wanted - tokens) / rate.per_second)


def batch_size(rate: Rate) -> int:
    """The tokens one claim asks for: ``CLAIM_PERIOD`` of the rate, at least one, at most
    the burst and ``MAX_BATCH``."""
    return max(1, min(MAX_BATCH, rate.burst, math.ceil(rate.per_second * CLAIM_PERIOD)))


@dataclass(frozen=True, slots=True)
class BucketKey:
    domain: str
    channel: str
    endpoint: str

    @classmethod
    def sender(cls, domain: str, channel: str, endpoint: str) -> BucketKey:
        """A sender's bucket: one number, page, account, bot or address on one channel."""
        return cls(domain, channel, endpoint)

    @classmethod
    def whole_domain(cls, domain: str) -> BucketKey:
        """All the domain's business-started sends together."""
        return cls(domain, "", "")


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    tokens: float
    """What the bucket holds after the claim (negative: in debt)."""
    at: float
    """When, on the database's clock (seconds since the epoch)."""


_CREATE = """
INSERT INTO send_buckets (domain, channel, endpoint, tokens, refilled_at)
VALUES ($1, $2, $3, $4, clock_timestamp()) ON CONFLICT DO NOTHING
"""

_LOCK = """
SELECT tokens, extract(epoch FROM refilled_at)::float8 AS at FROM send_buckets
WHERE domain = $1 AND channel = $2 AND endpoint = $3
FOR UPDATE
"""

_CLOCK = "SELECT extract(epoch FROM clock_timestamp())::float8"

_WRITE = """
UPDATE send_buckets SET tokens = $4, refilled_at = to_timestamp($5), granted = $6
WHERE domain = $1 AND channel = $2 AND endpoint = $3
"""

Change = Callable[[Bucket, float], tuple[Bucket, int]]
"""A rule applied to a bucket at a time: the bucket after it, and the tokens granted."""


class SharedBuckets:
    """The token buckets of ``send_buckets``: a bucket is created full at its first claim."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def take(self, key: BucketKey, rate: Rate, want: int) -> Grant:
        """Rule 2 (the bucket is created full at its first claim)."""
        grant = await self._change(key, lambda bucket, now: take(bucket, rate, want, now))
        if grant is None:
            await self._pool.execute(
                _CREATE, key.domain, key.channel, key.endpoint, float(rate.burst)
            )
            grant = await self._change(key, lambda bucket, now: take(bucket, rate, want, now))
            assert grant is not None, "the bucket was just created"
        return grant

    async def give_back(self, key: BucketKey, rate: Rate, count: int) -> None:
        """Rule 3."""
        if count > 0:
            await self._change(key, lambda bucket, now: (give_back(bucket, rate, count, now), 0))

    async def slow_down(self, key: BucketKey, rate: Rate, seconds: float) -> None:
        """Rule 4 (a bucket never claimed has nothing to slow down)."""
        await self._change(key, lambda bucket, now: (slow_down(bucket, rate, seconds, now), 0))

    async def _change(self, key: BucketKey, change: Change) -> Grant | None:
        """``change`` applied to the bucket under its row's lock, at the database's clock
        read once the lock is held (None: no such bucket)."""
        where = (key.domain, key.channel, key.endpoint)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_LOCK, *where)
            if row is None:
                return None
            now: float = await conn.fetchval(_CLOCK)
            bucket, granted = change(Bucket(tokens=row["tokens"], at=row["at"]), now)
            await conn.execute(_WRITE, *where, bucket.tokens, bucket.at, granted)
        return Grant(granted=granted, tokens=bucket.tokens, at=bucket.at)
