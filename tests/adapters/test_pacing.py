"""The send-rate token buckets (``adapters.pacing``): the model's rules by value, its
invariant as a property, then the shared buckets in PostgreSQL under concurrent claimers
(several pools: several processes)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.pacing import (
    MAX_BATCH,
    Bucket,
    BucketKey,
    Grant,
    SharedBuckets,
    batch_size,
    give_back,
    seconds_until,
    slow_down,
    take,
)
from runtime.outbound import Rate

RATE = Rate(per_second=10, burst=5)
EPSILON = 1e-6


@dataclass(frozen=True)
class Use:
    """A claim's tokens that were used (granted, less what was given back), at its time."""

    at: float
    used: int


def never_more_than_the_bucket_allows(uses: Sequence[Use], rate: Rate) -> bool:
    """In every window [t_i, t_j], what was used is at most burst + rate x (t_j - t_i)."""
    ordered = sorted(uses, key=lambda use: use.at)
    for i, first in enumerate(ordered):
        used = 0
        for last in ordered[i:]:
            used += last.used
            if used > rate.burst + rate.per_second * (last.at - first.at) + EPSILON:
                return False
    return True


# -- the model, by value ----------------------------------------------------------------


def test_a_claim_takes_the_whole_tokens_up_to_what_it_wants() -> None:
    full = Bucket(tokens=5, at=0)
    assert take(full, RATE, 3, now=0) == (Bucket(tokens=2, at=0), 3)
    assert take(full, RATE, 9, now=0) == (Bucket(tokens=0, at=0), 5)
    assert take(Bucket(tokens=0.95, at=0), RATE, 1, now=0) == (Bucket(tokens=0.95, at=0), 0)


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    empty = Bucket(tokens=0, at=0)
    assert take(empty, RATE, 9, now=0.25)[1] == 2  # 2.5 tokens after a quarter second
    assert take(empty, RATE, 9, now=60)[1] == 5  # never more than the burst


def test_a_clock_that_went_back_refills_nothing() -> None:
    bucket = Bucket(tokens=1, at=10)
    assert take(bucket, RATE, 3, now=9) == (Bucket(tokens=0, at=10), 1)


def test_tokens_given_back_are_capped_at_the_burst() -> None:
    assert give_back(Bucket(tokens=1, at=0), RATE, 3, now=0) == Bucket(tokens=4, at=0)
    assert give_back(Bucket(tokens=4, at=0), RATE, 3, now=0) == Bucket(tokens=5, at=0)


def test_a_provider_slow_down_stops_every_claim_for_its_seconds() -> None:
    bucket = slow_down(Bucket(tokens=5, at=0), RATE, seconds=2, now=0)
    assert bucket.tokens == -20
    assert take(bucket, RATE, 1, now=2.0)[1] == 0
    assert take(bucket, RATE, 1, now=2.1 + EPSILON)[1] == 1
    # A second 429 meanwhile does not add its debt to the first: the longer one holds.
    assert slow_down(bucket, RATE, seconds=1, now=0) == bucket


def test_seconds_until_a_claim_can_be_served() -> None:
    assert seconds_until(5, RATE, 3) == 0
    assert seconds_until(0.5, RATE, 3) == pytest.approx(0.25)
    assert seconds_until(-20, RATE, 1) == pytest.approx(2.1)


def test_a_claim_asks_for_a_tenth_of_a_second_of_the_rate() -> None:
    assert batch_size(Rate(per_second=1)) == 1
    assert batch_size(Rate(per_second=200, burst=50)) == 20
    assert batch_size(Rate(per_second=200, burst=10)) == 10  # never above the burst
    assert batch_size(Rate(per_second=50_000, burst=50_000)) == MAX_BATCH


# -- the invariant ------------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.floats(0, 2), st.integers(0, 300)),
        st.tuples(st.just("give_back"), st.floats(0, 2), st.floats(0, 1)),
        st.tuples(st.just("slow_down"), st.floats(0, 2), st.floats(0, 5)),
    ),
    max_size=60,
)
rates = st.builds(Rate, per_second=st.floats(0.1, 1000), burst=st.integers(1, 500))


@settings(max_examples=300, deadline=None)
@given(rate=rates, script=steps)
def test_granted_tokens_never_exceed_the_burst_plus_the_rate_over_any_window(
    rate: Rate, script: list[tuple[str, float, float]]
) -> None:
    now = 1_000.0
    bucket = Bucket(tokens=float(rate.burst), at=now)  # a new bucket starts full
    uses: list[Use] = []
    for kind, dt, amount in script:
        now += dt
        if kind == "claim":
            bucket, granted = take(bucket, rate, int(amount), now)
            uses.append(Use(now, granted))
        elif kind == "give_back" and uses:
            # Part of the last claim comes back later: it was never used.
            last = uses[-1]
            count = int(last.used * amount)
            bucket = give_back(bucket, rate, count, now)
            uses[-1] = Use(last.at, last.used - count)
        elif kind == "slow_down":
            bucket = slow_down(bucket, rate, amount, now)
        assert bucket.tokens <= rate.burst
    assert never_more_than_the_bucket_allows(uses, rate)


# -- shared in PostgreSQL -------------------------------------------------------------------


@pytest.fixture
async def pools(database_url: str) -> AsyncIterator[list[asyncpg.Pool]]:
    """Three pools on one database: three adapter processes."""
    made = [await asyncpg.create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    yield made
    for pool in made:
        await pool.close()


async def test_concurrent_claimers_together_get_no_more_than_one_bucket(
    pools: list[asyncpg.Pool],
) -> None:
    rate = Rate(per_second=50, burst=10)
    key = BucketKey.sender("acme", "sms", "+14155550100")
    grants: list[tuple[int, Grant]] = []

    async def claimer(pool: asyncpg.Pool, seed: int) -> None:
        buckets, rnd = SharedBuckets(pool), random.Random(seed)
        for _ in range(150):
            want = rnd.randint(1, 7)
            grants.append((want, await buckets.take(key, rate, want)))

    await asyncio.gather(
        *(claimer(pool, 2 * i + j) for i, pool in enumerate(pools) for j in (0, 1))
    )

    assert all(grant.granted <= want for want, grant in grants)
    assert all(grant.tokens >= 0 for _, grant in grants)  # never overdrawn
    assert sum(grant.granted for _, grant in grants) >= rate.burst  # it started full
    assert never_more_than_the_bucket_allows([Use(g.at, g.granted) for _, g in grants], rate)


async def test_a_bucket_is_created_full_on_its_first_claim(pools: list[asyncpg.Pool]) -> None:
    buckets = SharedBuckets(pools[0])
    key = BucketKey.whole_domain("acme")
    first = await buckets.take(key, RATE, RATE.burst + 3)
    assert first.granted == RATE.burst


async def test_a_slow_down_by_one_process_holds_back_the_others(
    pools: list[asyncpg.Pool],
) -> None:
    one, other = SharedBuckets(pools[0]), SharedBuckets(pools[1])
    key = BucketKey.sender("acme", "whatsapp", "106540352242922")
    assert (await one.take(key, RATE, 1)).granted == 1
    await one.slow_down(key, RATE, seconds=30)
    held = await other.take(key, RATE, 1)
    assert held.granted == 0
    assert held.tokens <= -RATE.per_second * 30 + 1  # refilled for a moment at most


async def test_tokens_given_back_serve_the_next_claim_up_to_the_burst(
    pools: list[asyncpg.Pool],
) -> None:
    buckets = SharedBuckets(pools[0])
    slow = Rate(per_second=0.001, burst=5)  # no refill worth a token during the test
    key = BucketKey.sender("acme", "email", "support@acme.example")
    assert (await buckets.take(key, slow, 5)).granted == 5
    await buckets.give_back(key, slow, 3)
    assert (await buckets.take(key, slow, 5)).granted == 3
    await buckets.give_back(key, slow, 50)
    assert (await buckets.take(key, slow, 50)).granted == 5
