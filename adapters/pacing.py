"""Send rates shared by every adapter process: token buckets kept in PostgreSQL.

The model (pure functions below; the SQL statements compute exactly the same):

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

Sharing: a bucket is a row of ``send_buckets``, and a claim is one ``UPDATE``. The row
lock serialises claimers; the time is the database's clock (``clock_timestamp()``, read
in a sub-select that PostgreSQL evaluates again when the row changed while the statement
waited for its lock), so adapter hosts' clocks do not matter and N processes together
never get more than one bucket gives. The rates are configuration, passed with every
claim: a new configuration version applies at the next claim.
"""

from __future__ import annotations

import math
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


# Each statement reads what the bucket holds now as `r.available` ($4: per second, $5:
# burst), at `r.at`: the clock read in a sub-select of the SET, after the row's lock.
_CREATE = """
INSERT INTO send_buckets (domain, channel, endpoint, tokens, refilled_at)
VALUES ($1, $2, $3, $4, clock_timestamp()) ON CONFLICT DO NOTHING
"""

_TAKE = """
UPDATE send_buckets AS b SET (tokens, refilled_at, granted) = (
    SELECT r.available - g.granted, greatest(b.refilled_at, r.at), g.granted
    FROM (SELECT n.at, least($5::float8, b.tokens + $4::float8
                 * greatest(0, extract(epoch FROM n.at - b.refilled_at)::float8)) AS available
          FROM (SELECT clock_timestamp() AS at) AS n) AS r,
         LATERAL (SELECT greatest(0, least($6::int, floor(r.available)::int)) AS granted) AS g
)
WHERE b.domain = $1 AND b.channel = $2 AND b.endpoint = $3
RETURNING b.granted, b.tokens, extract(epoch FROM b.refilled_at)::float8 AS at
"""

_GIVE_BACK = """
UPDATE send_buckets AS b SET (tokens, refilled_at) = (
    SELECT least($5::float8, r.available + $6::int), greatest(b.refilled_at, r.at)
    FROM (SELECT n.at, least($5::float8, b.tokens + $4::float8
                 * greatest(0, extract(epoch FROM n.at - b.refilled_at)::float8)) AS available
          FROM (SELECT clock_timestamp() AS at) AS n) AS r
)
WHERE b.domain = $1 AND b.channel = $2 AND b.endpoint = $3
"""

_SLOW_DOWN = """
UPDATE send_buckets AS b SET (tokens, refilled_at) = (
    SELECT least(r.available, -$4::float8 * $6::float8), greatest(b.refilled_at, r.at)
    FROM (SELECT n.at, least($5::float8, b.tokens + $4::float8
                 * greatest(0, extract(epoch FROM n.at - b.refilled_at)::float8)) AS available
          FROM (SELECT clock_timestamp() AS at) AS n) AS r
)
WHERE b.domain = $1 AND b.channel = $2 AND b.endpoint = $3
"""


class SharedBuckets:
    """The token buckets of ``send_buckets``: a bucket is created full at its first claim."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def take(self, key: BucketKey, rate: Rate, want: int) -> Grant:
        """Rule 2, in one statement (two the first time a bucket is used)."""
        args = (key.domain, key.channel, key.endpoint, rate.per_second, float(rate.burst), want)
        row = await self._pool.fetchrow(_TAKE, *args)
        if row is None:
            await self._pool.execute(
                _CREATE, key.domain, key.channel, key.endpoint, float(rate.burst)
            )
            row = await self._pool.fetchrow(_TAKE, *args)
            assert row is not None, "the bucket was just created"
        return Grant(granted=row["granted"], tokens=row["tokens"], at=row["at"])

    async def give_back(self, key: BucketKey, rate: Rate, count: int) -> None:
        """Rule 3."""
        if count > 0:
            await self._pool.execute(
                _GIVE_BACK,
                key.domain,
                key.channel,
                key.endpoint,
                rate.per_second,
                float(rate.burst),
                count,
            )

    async def slow_down(self, key: BucketKey, rate: Rate, seconds: float) -> None:
        """Rule 4 (a bucket never claimed has nothing to slow down)."""
        await self._pool.execute(
            _SLOW_DOWN,
            key.domain,
            key.channel,
            key.endpoint,
            rate.per_second,
            float(rate.burst),
            seconds,
        )
