"""Records about a customer are sealed on the topics, so that erasing the customer makes
the copies already published unreadable (crypto-shredding).

A record whose event holds a customer's personal data (``runtime.personal_data``) is
encrypted whole with AES-256-GCM under a key of its *subject*: the customer identity it
names (``customer_id``), else its conversation (``conversation:<id>``), else, for a
delivery status, the thread or the sent message it is about (``thread:<conversation
key>``, ``sent:<provider message id>``). The key lives in PostgreSQL (``topic_keys``), one
per subject and day; the record carries the key's id in the ``sealed_with`` header and
keeps its CloudEvents headers (which name no one) in clear. Erasing a customer deletes the
keys of their identities, conversations and threads (``router.shell.erasure``): after the
shredding delay, no copy of their records on any topic can be opened, whatever the
topic's retention and whoever kept a copy.

Readers open what they fetch with ``TopicKeys.opened`` (one query per fetch for the keys
not cached, which brings the spares stocked since too: ``KEYS_FOR_OPENING``); a record
without the header is read as it is, so records published before sealing was turned on,
or by a producer that does not seal, stay readable. A record whose key is gone cannot be
opened: it is about an erased customer.

Keys are cached ``cache_seconds`` by every process (so an erased key can still seal or
open for that long in a process that holds it): ``kafka.key_shred_delay_seconds`` must be
longer, so that what a producer sealed with a cached key just before an erasure can still
be read by the router. Keys older than the topics' retention seal nothing that is still
on a topic and are deleted by the retention job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runtime import personal_data
from runtime.db import DATABASE_ERRORS
from runtime.personal_labels import Category, Subject
from schemas import topics
from schemas.common import Event
from schemas.inbound import DeliveryStatusChanged

log = structlog.get_logger(__name__)

SEALED_WITH: Final = topics.SEALED_WITH
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
SECONDS_PER_PERIOD: Final = 86_400
"""A subject's key seals for one day (UTC); the next day's records get a new key."""


def _personal_types() -> frozenset[type]:
    """The event types with a field holding a customer's personal data."""
    fields = personal_data.topic_fields()
    found = set()
    for cls in personal_data.structs_of(*topics.TOPIC_TYPES.values()):
        if not issubclass(cls, Event):
            continue
        for name in cls.__struct_fields__:
            labels = personal_data.labels_of(personal_data.key_of(cls, name), fields)
            if any(
                label.subject is Subject.CUSTOMER and label.category is not Category.NONE
                for label in labels
            ):
                found.add(cls)
                break
    return frozenset(found)


PERSONAL_TYPES: Final = _personal_types()
"""The events that are sealed: a new field classified as a customer's personal data
seals its event type too."""


def sealing_subject(event: Event) -> str | None:
    """Whose key seals ``event``; None: it holds no customer's personal data."""
    if type(event) not in PERSONAL_TYPES:
        return None
    customer_id: str | None = getattr(event, "customer_id", None)
    if customer_id:
        return customer_id
    conversation_id: str | None = getattr(event, "conversation_id", None)
    if conversation_id:
        return conversation_subject(conversation_id)
    if isinstance(event, DeliveryStatusChanged) and event.conversation_key:
        return thread_subject(event.conversation_key)
    provider_message_id: str | None = getattr(event, "provider_message_id", None)
    if provider_message_id is not None:
        return sent_subject(provider_message_id)
    raise AssertionError(f"{type(event).__name__} names no customer to seal it for")


def subject_digest(subject: str) -> bytes:
    """How ``topic_keys`` names a subject: its SHA-256 (fixed width, and no address in
    clear in the table; erasure deletes it all the same)."""
    return hashlib.sha256(subject.encode()).digest()


def conversation_subject(conversation_id: str) -> str:
    return "conversation:" + conversation_id


def thread_subject(conversation_key: str) -> str:
    return "thread:" + conversation_key


def sent_subject(provider_message_id: str) -> str:
    return "sent:" + provider_message_id


@dataclass(frozen=True, slots=True)
class SealingKey:
    key_id: bytes
    """16 bytes: the ``topic_keys`` row's uuid, and the associated data of every seal."""
    material: bytes
    """The key's bytes."""
    named: tuple[str, bytes, int] | None = None
    """(domain, subject digest, day) of its row, when it was read by id for opening."""
    unnamed_spare: bool = False
    """Read for opening while it was a spare its producer had not named yet."""
    _made: AESGCM | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cipher(self) -> AESGCM:
        """The key's cipher, made when first used and kept while it is among the last
        ``CIPHERS_KEPT`` made by this process."""
        made = self._made
        if made is None:
            made = AESGCM(self.material)
            object.__setattr__(self, "_made", made)
            _with_ciphers.append(self)
            if len(_with_ciphers) > CIPHERS_KEPT:
                object.__setattr__(_with_ciphers.popleft(), "_made", None)
        return made


CIPHERS_KEPT: Final = 4_096
"""Ciphers a process keeps made, the oldest made leaving first. A cipher holds its key
schedule and contexts: a cached key with one took 2,815 B of resident memory, one without
342 B, and the keys cached are those of every customer who wrote within
``cache_seconds``. Making a cipher costs 0.7 µs, sealing a routing event with it 0.5."""

_with_ciphers: deque[SealingKey] = deque()
"""The keys holding a cipher, in the order they made it."""


def _key(
    key_id: uuid.UUID,
    material: bytes,
    named: tuple[str, bytes, int] | None = None,
    *,
    unnamed_spare: bool = False,
) -> SealingKey:
    return SealingKey(key_id.bytes, material, named, unnamed_spare)


class Unreadable(Exception):
    """A sealed record that cannot be opened: its key is gone (the customer was erased)
    or its bytes are not what was sealed."""


def seal(key: SealingKey, value: bytes, nonce: bytes | None = None) -> bytes:
    """``value`` sealed with ``key``, under ``nonce`` (one of ``fresh_nonces``) or a new one."""
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    return nonce + key.cipher.encrypt(nonce, value, key.key_id)


def fresh_nonces(count: int) -> list[bytes]:
    """``count`` random nonces from one read of the system's random source: a read per
    record costs half as much as sealing it (a system call each)."""
    pool = os.urandom(NONCE_BYTES * count)
    return [pool[start : start + NONCE_BYTES] for start in range(0, len(pool), NONCE_BYTES)]


def sealed_with(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """The key id a record was sealed with; None: it is not sealed."""
    for name, value in headers:
        if name == SEALED_WITH:
            return value
    return None


def open_value(value: bytes, key_id: bytes | None, keys: Mapping[bytes, SealingKey]) -> bytes:
    """``value`` as it was before sealing with ``key_id`` (its record's ``sealed_with``), as
    it is when not sealed (None)."""
    if key_id is None:
        return value
    key = keys.get(key_id)
    if key is None:
        raise Unreadable("sealed with a key that is gone (its customer was erased)")
    if len(value) < NONCE_BYTES + TAG_BYTES:
        raise Unreadable("sealed bytes do not open with their key")
    try:
        return key.cipher.decrypt(value[:NONCE_BYTES], value[NONCE_BYTES:], key_id)
    except InvalidTag as error:
        raise Unreadable("sealed bytes do not open with their key") from error


R = TypeVar("R")


_GET_OR_CREATE = """
INSERT INTO topic_keys (key_id, domain, subject, period, key)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[], $5::bytea[])
ON CONFLICT (domain, subject, period) WHERE NOT spare
    -- a no-op update, so that the row another process made first is returned
    DO UPDATE SET period = EXCLUDED.period
RETURNING domain, subject, key_id, key
"""
KEY_COLUMNS: Final = "key_id, key, domain, subject, period"
"""What ``TopicKeys.keep_for_opening`` takes of a ``topic_keys`` row."""
KEYS_FOR_OPENING: Final = f"""
SELECT {KEY_COLUMNS}, created_at FROM topic_keys WHERE key_id = ANY($1::uuid[])
UNION ALL
SELECT {KEY_COLUMNS}, created_at FROM topic_keys WHERE spare AND subject IS NULL
    AND created_at > coalesce($2::timestamptz, now() - make_interval(secs => $3::float8))
    AND shred_at IS NULL
"""  # noqa: S608 -- fixed text
"""The keys of the ids a reader lacks ($1), and the spares stocked since those it read last
($2; none yet: its cache's lifetime, $3), not those an erasure took the subject of (kept
until their shredding, they are read only by id, by whoever holds what they sealed):
``TopicKeys.opening_arguments`` gives the three, ``keep_for_opening`` takes the rows. A
spare is read before a record sealed with it arrives, so that a reader asks again only
once the producers have stocked more: once per few hundred new subjects, where asking by
id was a query per batch of records."""
SPARES_READ_AGAIN_SECONDS: Final = 1.0
"""How long before the newest spare it read a reader asks for spares again: stockings
commit in another order than their clocks', and one missed would be read by id."""
_STOCK_SPARES = """
INSERT INTO topic_keys (key_id, key, spare) SELECT k, v, true FROM unnest($1::uuid[], $2::bytea[]) AS s(k, v)
"""
_NAME_SPARES = """
UPDATE topic_keys k SET domain = w.domain, subject = w.subject, period = w.period,
    -- the key's age counts from its first use, as a key made then: retention deletes it
    -- once what it sealed has left the topics, not a stocking's time earlier
    created_at = now()
FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int[]) AS w(key_id, domain, subject, period)
-- the first naming stays: a reader names a spare it adopted (``sealing_too``) as its
-- producer does, and an erasure's key, which keeps its domain, is not named again
WHERE k.key_id = w.key_id AND k.spare AND k.domain IS NULL
"""

SPARE_KEYS: Final = 64
"""Keys a producer keeps in stock for PostgreSQL's outages (``TopicKeys``)."""
AHEAD_KEYS: Final = 512
"""Keys a producer keeps in stock beyond ``SPARE_KEYS`` for the subjects it has no key for
yet: it seals with one at once and names it in the background (``run``), where a request
would wait for a query (that query and its commit were a quarter of PostgreSQL's work per
webhook, measured). The stock is filled again once half of them are taken."""
SPARE_SECONDS: Final = 12 * 3600
"""A spare is used this long after it was stocked at most; the sweep deletes a spare
never named after ``SPARE_UNNAMED_SECONDS``."""
SPARE_UNNAMED_SECONDS: Final = 86_400
STOCK_SECONDS: Final = 2.0
"""How often a producer looks at its stock (``run``), besides soon after it takes keys."""
NAME_SECONDS: Final = 0.2
"""How long after taking spares a producer names them (``run``): those taken meanwhile are
named by the same statement, where naming each at once was a statement and a commit per new
customer's webhook."""
QUERY_SECONDS: Final = 1.0
"""How long a query for keys may wait for a connection, then for its answer, then to give
the connection back, before the keys are taken from the stock as in an outage: a
PostgreSQL that stopped answering (locked, stalled, overloaded) must not hold a webhook
past its provider's timeout. One query waits for the one before it, so a request waits
for keys six times this at most, then for the broker (``EventPublisher``'s timeout)."""


class _Expiring(OrderedDict[Any, tuple[float, SealingKey]]):
    """At most ``size`` keys, each for ``seconds``; least recently used leave first, and
    expired ones as soon as they are the least recently used.

    An entry's expiry is fixed when it is kept and ``fresh`` does not extend it, so an
    entry behind one that has not expired was used since that one was kept: what is held
    (as of the last ``keep``) are keys used within ``seconds``, not the last ``size`` used,
    which kept the keys of every customer a process ever saw, up to 100,000 of them."""

    def __init__(self, size: int, seconds: float) -> None:
        super().__init__()
        self.size = size
        self.seconds = seconds

    def fresh(self, name: Any, now: float) -> SealingKey | None:
        found = self.get(name)
        if found is None:
            return None
        if found[0] <= now:
            del self[name]
            return None
        self.move_to_end(name)
        return found[1]

    def keep(self, name: Any, key: SealingKey, now: float) -> None:
        self[name] = (now + self.seconds, key)
        self.move_to_end(name)
        # The entry just kept is last and expires after ``now`` when ``seconds`` > 0: the
        # loop stops at it. A cache kept for no time empties instead.
        while self and (len(self) > self.size or next(iter(self.values()))[0] <= now):
            self.popitem(last=False)


class _KeyRound:
    """Subjects of one day whose keys one query gets or makes, and its answer."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.names: dict[tuple[str, str], None] = {}
        self.made: asyncio.Future[dict[tuple[str, str], SealingKey]] = (
            asyncio.get_running_loop().create_future()
        )
        # Read here too: with every asker cancelled, nobody else would.
        self.made.add_done_callback(lambda done: done.cancelled() or done.exception())


class TopicKeys:
    """The ``topic_keys`` table, as producers and readers of the topics use it.

    A producer (a process that runs ``run``) keeps spare keys in stock: rows it made
    beforehand with no subject (``stock``), so readers can open what it seals with them.
    It takes one for a subject it has no key for today while it holds more than
    ``SPARE_KEYS`` (``AHEAD_KEYS``), and the rest while PostgreSQL cannot be reached. It
    names them (their domain, subject and day) in the background: at once when PostgreSQL
    answers, once it answers again otherwise. Until then an erasure cannot find them (a
    reader that opens one first seals for the subject with it and names it too:
    ``sealing_too``), and if they all die first, what they sealed becomes unreadable a day
    later, when the sweep deletes spares never named.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 100_000,
        clock: Any = time.time,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._sealing = _Expiring(cache_size, cache_seconds)
        self._opening = _Expiring(cache_size, cache_seconds)
        self._spares: deque[tuple[float, SealingKey]] = deque()
        """Keys stocked, with the time they were: the oldest first."""
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        """Set when keys were taken (to be named) and at the stop."""
        self._unnamed: dict[bytes, tuple[str, bytes, int]] = {}
        """Spare keys used while PostgreSQL was away: key id -> (domain, subject, day)."""
        self._gathering: _KeyRound | None = None
        """The subjects the next query gets or makes keys for (``_made``)."""
        self._in_flight: asyncio.Task[None] | None = None
        self._spares_read: datetime | None = None
        """When the newest spare read for opening was stocked (``KEYS_FOR_OPENING``)."""

    @property
    def cached(self) -> int:
        """Entries of the caches, for sealing and for opening (a key used for both counts
        twice): ``switchboard_topic_keys_cached``."""
        return len(self._sealing) + len(self._opening)

    @property
    def unnamed(self) -> int:
        """Spare keys in use that PostgreSQL does not know the subject of yet."""
        return len(self._unnamed)

    async def for_sealing(
        self, subjects: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], SealingKey]:
        """The current key of every ``(domain, subject)``, made where there is none: a
        spare taken ahead while the stock holds more than ``SPARE_KEYS`` (no query: named
        by ``run`` soon after), else got or made by a query; a spare while PostgreSQL
        cannot be reached (``DATABASE_ERRORS`` once the spares run out)."""
        now = self._clock()
        period = int(now // SECONDS_PER_PERIOD)
        found: dict[tuple[str, str], SealingKey] = {}
        missing: dict[tuple[str, str], None] = {}
        for name in subjects:
            key = self._sealing.fresh((*name, period), now)
            if key is None:
                missing[name] = None
            else:
                found[name] = key
        if not missing:
            return found
        ahead = self._take_spares(len(missing), now, keep=SPARE_KEYS)
        if ahead is not None:
            for name, key in zip(missing, ahead, strict=True):
                found[name] = key
                self._taken(name, period, key, now)
            self._wake.set()
            return found
        made = await self._made(list(missing), period)
        for name in missing:
            found[name] = made[name]
        return found

    async def _made(
        self, names: list[tuple[str, str]], period: int
    ) -> dict[tuple[str, str], SealingKey]:
        """The keys of ``names``, got or made by the next query: one query is in flight at
        a time, and the subjects asked for meanwhile wait for it and share the next one
        (under load, a webhook each asked for its own)."""
        gathering = self._gathering
        if gathering is None or gathering.period != period:
            gathering = self._gathering = _KeyRound(period)
            self._in_flight = asyncio.create_task(self._query(gathering, self._in_flight))
        gathering.names.update(dict.fromkeys(names))
        # Shielded: a request cancelled while waiting does not cancel the others' query.
        return await asyncio.shield(gathering.made)

    async def _query(self, gathering: _KeyRound, before: asyncio.Task[None] | None) -> None:
        try:
            if before is None:
                await asyncio.sleep(0)  # the other requests of this turn of the loop join
            else:
                await asyncio.wait([before])
            if self._gathering is gathering:
                self._gathering = None
            made = await self._get_or_make(gathering.names, gathering.period)
        except asyncio.CancelledError:
            if self._gathering is gathering:
                self._gathering = None
            gathering.made.cancel()
            raise
        except Exception as error:
            gathering.made.set_exception(error)
        else:
            gathering.made.set_result(made)

    async def _get_or_make(
        self, names: Iterable[tuple[str, str]], period: int
    ) -> dict[tuple[str, str], SealingKey]:
        now = self._clock()
        # In one order in every process: two inserting the same new subjects in different
        # orders would deadlock on each other's rows.
        by_digest = dict(
            sorted(
                ((domain, subject_digest(subject)), (domain, subject)) for domain, subject in names
            )
        )
        made: list[tuple[tuple[str, bytes], SealingKey]]
        try:
            # Bounded by asyncpg, not by cancelling from outside: its pool would wait
            # without end to reset a connection whose server stopped answering.
            async with self._pool.acquire(timeout=QUERY_SECONDS) as conn:
                rows = await conn.fetch(
                    _GET_OR_CREATE,
                    [uuid.uuid4() for _ in by_digest],
                    [domain for domain, _ in by_digest],
                    [digest for _, digest in by_digest],
                    [period] * len(by_digest),
                    [AESGCM.generate_key(bit_length=KEY_BYTES * 8) for _ in by_digest],
                    timeout=QUERY_SECONDS,
                )
            made = [((r["domain"], r["subject"]), _key(r["key_id"], r["key"])) for r in rows]
        except DATABASE_ERRORS:
            spares = self._take_spares(len(by_digest), now)
            if spares is None:
                raise
            found = {}
            for digested, key in zip(by_digest, spares, strict=True):
                found[by_digest[digested]] = key
                self._taken(by_digest[digested], period, key, now)
            return found
        found = {}
        for digested, key in made:
            name = by_digest[digested]
            found[name] = key
            self._sealing.keep((*name, period), key, now)
            self._opening.keep(key.key_id, key, now)
        return found

    def _taken(self, name: tuple[str, str], period: int, key: SealingKey, now: float) -> None:
        """A spare taken to seal for ``name`` today: named by the next ``stock``."""
        domain, subject = name
        self._unnamed[key.key_id] = (domain, subject_digest(subject), period)
        self._sealing.keep((*name, period), key, now)
        self._opening.keep(key.key_id, key, now)

    def _take_spares(self, count: int, now: float, *, keep: int = 0) -> list[SealingKey] | None:
        """``count`` spares, oldest first, leaving ``keep`` in stock; None: too few."""
        spares = self._fresh_spares(now)
        if len(spares) - keep < count:
            return None
        return [spares.popleft()[1] for _ in range(count)]

    def _fresh_spares(self, now: float) -> deque[tuple[float, SealingKey]]:
        """The stock, without the spares stocked ``SPARE_SECONDS`` ago or more."""
        spares = self._spares
        while spares and now - spares[0][0] >= SPARE_SECONDS:
            spares.popleft()
        return spares

    async def run(self) -> None:
        """``stock`` at once, then ``NAME_SECONDS`` after keys are taken and every
        ``STOCK_SECONDS``, until ``stop``; then the keys taken meanwhile are named once more."""
        while True:
            stopping = self._stopping.is_set()
            self._wake.clear()
            try:
                await self.stock(refill=not stopping)
            except DATABASE_ERRORS as error:
                log.warning(
                    "topic_keys_not_stocked", error=type(error).__name__, unnamed=self.unnamed
                )
                if stopping:
                    return
                # Away: asking again at each key taken would only add to its load.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), STOCK_SECONDS)
                continue
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), STOCK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), NAME_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def stock(self, *, refill: bool = True) -> None:
        """Name the spares taken (their domain, subject and day: an erasure finds them
        then), and, with ``refill``, make new ones up to ``SPARE_KEYS + AHEAD_KEYS`` once
        the stock is down to ``SPARE_KEYS + AHEAD_KEYS // 2``: a producer's background
        task (``run``)."""
        if self._unnamed:
            named = dict(self._unnamed)
            await self._pool.execute(
                _NAME_SPARES,
                [uuid.UUID(bytes=key_id) for key_id in named],
                [domain for domain, _, _ in named.values()],
                [digest for _, digest, _ in named.values()],
                [period for _, _, period in named.values()],
            )
            for key_id in named:
                self._unnamed.pop(key_id, None)
        now = self._clock()
        stocked = len(self._fresh_spares(now))
        if not refill or stocked > SPARE_KEYS + AHEAD_KEYS // 2:
            return
        wanted = SPARE_KEYS + AHEAD_KEYS - stocked
        made = [
            _key(uuid.uuid4(), AESGCM.generate_key(bit_length=KEY_BYTES * 8)) for _ in range(wanted)
        ]
        await self._pool.execute(
            _STOCK_SPARES,
            [uuid.UUID(bytes=key.key_id) for key in made],
            [key.material for key in made],
        )
        self._spares.extend((now, key) for key in made)

    async def for_opening(self, key_ids: Iterable[bytes]) -> dict[bytes, SealingKey]:
        """The keys of ``key_ids`` that still exist."""
        asked = set(key_ids)
        found, missing = self.cached_for_opening(asked)
        if missing:
            rows = await self._pool.fetch(KEYS_FOR_OPENING, *self.opening_arguments(missing))
            kept = self.keep_for_opening(rows)
            found.update((key_id, kept[key_id]) for key_id in asked if key_id in kept)
        return found

    def cached_for_opening(
        self, key_ids: Iterable[bytes]
    ) -> tuple[dict[bytes, SealingKey], list[uuid.UUID]]:
        """The keys of ``key_ids`` this process holds, and the ids of the others: what a
        reader that joins their query to one of its own reads (``KEY_COLUMNS`` of the rows
        whose ``key_id`` is one of them: ``KEYS_FOR_OPENING``) and hands to
        ``keep_for_opening``."""
        now = self._clock()
        found: dict[bytes, SealingKey] = {}
        missing: list[uuid.UUID] = []
        for key_id in set(key_ids):
            key = self._opening.fresh(key_id, now)
            if key is not None:
                found[key_id] = key
            elif len(key_id) == 16:
                missing.append(uuid.UUID(bytes=key_id))
        return found, missing

    def opening_arguments(self, missing: list[uuid.UUID]) -> tuple[Any, ...]:
        """``KEYS_FOR_OPENING``'s arguments for the keys ``cached_for_opening`` found
        missing."""
        since = self._spares_read
        if since is not None:
            since -= timedelta(seconds=SPARES_READ_AGAIN_SECONDS)
        return missing, since, self._opening.seconds

    def keep_for_opening(self, rows: Iterable[Mapping[str, Any]]) -> dict[bytes, SealingKey]:
        """The keys of ``topic_keys`` rows read for opening (``KEYS_FOR_OPENING``), kept
        for ``cache_seconds``."""
        now = self._clock()
        found: dict[bytes, SealingKey] = {}
        for row in rows:
            named = (
                None if row["subject"] is None else (row["domain"], row["subject"], row["period"])
            )
            # A spare no one named has no domain either; a key an erasure took the subject
            # of keeps its domain, and the time it was named, which is no stocking's.
            if row["domain"] is None and (
                self._spares_read is None or row["created_at"] > self._spares_read
            ):
                self._spares_read = row["created_at"]
            key = _key(row["key_id"], row["key"], named, unnamed_spare=row["domain"] is None)
            found[key.key_id] = key
            self._opening.keep(key.key_id, key, now)
        return found

    def sealing_too(self, opened: Iterable[tuple[str, str, bytes]]) -> None:
        """(domain, subject, key id) of records just opened: where that key is the
        subject's key of today, it seals for the subject too, with no query (a router
        publishes its routing events under the key its inbound message came with).

        A key read while it was a spare its producer had not named yet (``KEYS_FOR_OPENING``
        reads them ahead: the usual case for a subject new to the producer) is the
        subject's too: the producer sealed the record with it for that subject. This
        process names it as well (``stock``; the first naming stays), so that an erasure
        finds it should the producer die before naming it; a key of its own for each such
        subject was a second ``topic_keys`` row for every new customer."""
        now = self._clock()
        period = int(now // SECONDS_PER_PERIOD)
        adopted = False
        for domain, subject, key_id in set(opened):  # a batch names its customers many times
            if (domain, subject, period) in self._sealing:
                continue
            key = self._opening.fresh(key_id, now)
            if key is None:
                continue
            if key.unnamed_spare:
                self._taken((domain, subject), period, key, now)
                adopted = True
            elif key.named == (domain, subject_digest(subject), period):
                self._sealing.keep((domain, subject, period), key, now)
        if adopted:
            self._wake.set()

    def forget(self) -> None:
        """Drop every cached key (tests, and a process told that keys were shredded)."""
        self._sealing.clear()
        self._opening.clear()
        while _with_ciphers:
            object.__setattr__(_with_ciphers.popleft(), "_made", None)

    async def opened(self, records: Sequence[R]) -> list[tuple[R, bytes | None]]:
        """Each aiokafka record with its value opened; None where it cannot be opened."""
        key_ids = [sealed_with(getattr(record, "headers", ()) or ()) for record in records]
        keys = await self.for_opening(key_id for key_id in key_ids if key_id is not None)
        result: list[tuple[R, bytes | None]] = []
        for record, key_id in zip(records, key_ids, strict=True):
            value: bytes = getattr(record, "value", None) or b""
            try:
                result.append((record, open_value(value, key_id, keys)))
            except Unreadable:
                result.append((record, None))
        return result

    async def opened_persistently(
        self, records: Sequence[R], *, reader: str
    ) -> list[tuple[R, bytes | None]]:
        """``opened``, tried again each second while PostgreSQL fails (logged as
        ``topic_keys_unavailable`` with ``reader``): for a reader without a consumer group,
        which has no committed offset to go back to."""
        while True:
            try:
                return await self.opened(records)
            except DATABASE_ERRORS as error:
                log.warning("topic_keys_unavailable", reader=reader, error=type(error).__name__)
                await asyncio.sleep(1)

    async def sealed(self, events: Sequence[Event], values: Sequence[bytes]) -> list[SealedValue]:
        """``values`` (the encoded ``events``) sealed where their event is personal."""
        subjects = [
            None if (subject := sealing_subject(event)) is None else (event.domain, subject)
            for event in events
        ]
        keys = await self.for_sealing({name for name in subjects if name is not None})
        nonces = fresh_nonces(len(values))
        return [
            SealedValue(value, None)
            if name is None
            else SealedValue(seal(keys[name], value, nonce), keys[name].key_id)
            for name, value, nonce in zip(subjects, values, nonces, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class SealedValue:
    value: bytes
    key_id: bytes | None
    """The ``sealed_with`` header's value; None: not sealed."""

    def headers(self, headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        if self.key_id is not None:
            headers.append((SEALED_WITH, self.key_id))
        return headers


def with_value(record: R, value: bytes) -> R:
    """An aiokafka record (a dataclass) with ``value`` in place of its own."""
    return replace(record, value=value)  # type: ignore[type-var]


SWEEP_BATCH: Final = 1000
"""Keys one statement of the sweep deletes: the locks it takes stay short."""

_SWEEP = """
DELETE FROM topic_keys WHERE key_id IN (
    SELECT key_id FROM topic_keys
    WHERE shred_at <= now()
        OR ($1::bigint IS NOT NULL AND created_at < now() - make_interval(secs => $1::bigint))
        OR (spare AND domain IS NULL AND created_at < now() - make_interval(secs => $3::bigint))
    LIMIT $2
)
RETURNING coalesce(domain, '') AS domain
"""


async def sweep(pool: asyncpg.Pool, *, topic_retention_ms: int | None) -> dict[str, int]:
    """Delete the keys whose shredding delay has passed, the keys older than the topics'
    retention and a day (they seal nothing still on a topic) and spares never used; the
    count by domain (spares never used: under "")."""
    oldest = None if topic_retention_ms is None else topic_retention_ms // 1000 + SECONDS_PER_PERIOD
    deleted: dict[str, int] = {}
    while True:
        rows = await pool.fetch(_SWEEP, oldest, SWEEP_BATCH, SPARE_UNNAMED_SECONDS)
        for row in rows:
            deleted[row["domain"]] = deleted.get(row["domain"], 0) + 1
        if len(rows) < SWEEP_BATCH:
            return deleted
