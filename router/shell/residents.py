"""Which customers a router keeps in memory, and which a batch must load first.

The engine needs the customers of open conversations and those each input names
(``router.engine.residency``). Every other profile lives in PostgreSQL, and up to
``router.customer_cache`` of them stay in memory, least recently used first out, so
that a customer who writes again soon is not read again. Memory then follows the open
work and the cache bound, not the domain's history.

Rules, without I/O (the worker runs the query):

1. Before a batch applies, ``to_load`` lists the identities its inputs name that are
   neither in memory nor known to be absent from storage; the worker reads them in one
   query (``reads.load_customers``) and ``loaded`` puts them in memory (``remember``),
   noting the ones storage does not hold as absent.
2. Each batch has a number. A profile the batch names or saves is marked with it; an
   identity the batch deleted (an unlink, a merge, an erasure) is noted absent with it:
   its row may still be in storage until the batch commits.
3. A profile leaves memory (``forget``) only when it has no open conversation and the
   batches that marked it are committed (``committed``): storage then holds all the
   engine saved about it, so reading it back gives the same profile. Memory is swept when
   the profiles without open work pass the bound by a quarter (counted when a quarter of
   the bound joined since the last count, and at least every ``SWEEP_EVERY`` batches).
4. Absent identities are remembered up to the same bound; one forgotten early is only
   looked up again.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice, repeat
from operator import itemgetter

import msgspec

from router.engine import (
    DomainState,
    EngineInput,
    customers_named,
    forget,
    open_customers,
    remember,
)
from router.engine.records import CustomerRecord, IdentityRecord
from router.shell import reads, store
from router.shell.erasure import ErasureRequest
from schemas import CustomerEraseRequested, MessageReceived
from schemas.common import Event


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The router process's memory and batching (``router`` in the configuration file)."""

    customer_cache: int = 50_000
    """Customers without an open conversation a router process keeps in memory, at most
    (least recently used first out); the others are read from PostgreSQL when they write
    again. About 1 KiB of resident memory each (500 B of objects)."""
    gather_ms: int = 20
    """While records come at ``gather_above_per_s`` or more, the least time between two
    batches the loop takes (``router.shell.gathering``); 0: never wait."""
    gather_above_per_s: int = 1_500
    """Records a second (the process's partitions together) from which the loop gathers."""
    save_activity_alone: bool = True
    """Save only the activity of a conversation that a customer message changed no more
    than that (``router.engine.ConversationActivity``), beside its record; false: its whole
    record, which processes older than migration 0027 need to read (upgrading)."""

    def __post_init__(self) -> None:
        if not 0 <= self.customer_cache <= 10_000_000:
            raise ValueError("must be between 0 and 10000000 (customer_cache)")
        if not 0 <= self.gather_ms <= 1_000:
            raise ValueError("must be between 0 and 1000 (gather_ms)")
        if not 0 <= self.gather_above_per_s <= 10_000_000:
            raise ValueError("must be between 0 and 10000000 (gather_above_per_s)")


SWEEP_EVERY = 64
"""Batches between two counts of the open work's profiles at most (``sweep``)."""

Key = tuple[str, str]
"""(domain, customer id or identity)."""
_NONE_MARKED: dict[str, int] = {}
"""A domain with no profile marked since the load (never mutated)."""


class ResidentCustomers:
    """The profiles in memory without open work (by recent use) and the known-absent ids."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """Profiles without an open conversation kept in memory, at most (rule 3)."""
        self._marked: dict[str, dict[str, int]] = {}
        """Per domain, the profiles in memory marked since the last load, least recently
        marked first, with the batch that marked them. A profile in memory that is not
        here was loaded with the partitions and not marked since: it counts as marked by
        batch 0, before all of these, in the order loaded. So nothing is kept per profile a
        load brings (as many as the open conversations), and no key object per profile
        marked: an entry keyed by (domain, id) per profile was 4% of a router's memory
        after a takeover, measured."""
        self._absent: dict[Key, int] = {}
        """Identities storage does not hold (or will not, once batch n commits)."""
        self.batch = 0
        """The number of the batch being applied (rule 2)."""
        self.committed = 0
        """Every batch up to this number is committed."""
        self._resident = 0
        """Profiles in memory, as last counted (``adopt``, ``sweep``)."""
        self._swept_at = -1
        self._count_at = 0
        """Profiles in memory at which the open work's profiles are counted again."""
        self._uncounted = 0
        """Batches since they were last counted."""
        self.loaded_total = 0
        """Profiles read from storage for batches (a measure of cache misses)."""

    def __len__(self) -> int:
        """The profiles in memory when the latest ``adopt`` or ``sweep`` counted them."""
        return self._resident

    def adopt(self, states: Iterable[DomainState]) -> None:
        """After a load: the profiles in memory are the loaded states' (all stored), none
        marked yet."""
        self._marked = {}
        self._absent = {}
        self._resident = sum(len(state.customers) for state in states)
        self.committed = self.batch

    def next_batch(self) -> None:
        self.batch += 1

    def to_load(
        self,
        states: Mapping[str, DomainState],
        events: Iterable[Event],
        erasures: Mapping[str, ErasureRequest],
    ) -> list[Key]:
        """Rule 1: the identities the inputs name that must be read; those in memory are
        marked as used by this batch."""
        missing: dict[Key, None] = {}
        batch, absent = self.batch, self._absent
        for event in events:
            named: Sequence[str]
            if type(event) is MessageReceived:  # most inputs: looked for first
                named = customers_named(event)
            elif isinstance(event, CustomerEraseRequested):
                request = erasures.get(event.id)
                named = () if request is None else request.identities
            elif isinstance(event, EngineInput):
                named = customers_named(event)
            else:
                continue
            domain = event.domain
            state = states.get(domain)
            if state is None:
                continue
            for identity in named:
                link = state.identities.get(identity)
                profile = identity if link is None else link.customer_id
                if profile in state.customers:
                    marked = self._marked_in(domain)
                    marked.pop(profile, None)
                    marked[profile] = batch
                elif (domain, identity) not in absent:
                    missing[(domain, identity)] = None
        return list(missing)

    def loaded(
        self,
        states: Mapping[str, DomainState],
        asked: Sequence[Key],
        found: Iterable[reads.StoredCustomer],
    ) -> None:
        """Rule 1: what storage held for the identities asked, put in memory."""
        batch = self.batch
        held: set[Key] = set()
        for stored in found:
            state = states.get(stored.domain)
            if state is None:
                continue
            records: Sequence[CustomerRecord] = () if stored.record is None else (stored.record,)
            links: Sequence[IdentityRecord] = stored.links or ()
            remember(state, records, links)
            if stored.customer_id in state.customers:
                marked = self._marked_in(stored.domain)
                marked.pop(stored.customer_id, None)
                marked[stored.customer_id] = batch
                held.add((stored.domain, stored.customer_id))
                held.update((stored.domain, link.identity) for link in links)
                self.loaded_total += 1
        for key in asked:
            if key not in held:
                self._absent[key] = batch

    def note(self, states: Mapping[str, DomainState], writes: store.BatchWrites) -> None:
        """Rule 2: the profiles this batch saved are marked; the ids it deleted, absent."""
        batch, absent = self.batch, self._absent
        saved: list[Key] = []
        for key, record in writes.customers.items():
            self._unmark(key)
            absent.pop(key, None)
            if record is not None:
                saved.append(key)
            else:
                absent[key] = batch
        for key, link in writes.identities.items():
            absent.pop(key, None)
            if link is not None:
                saved.append((key[0], link.customer_id))
            else:
                absent[key] = batch
        for domain, erasure in writes.erasures:
            for identity in erasure.identities:
                key = (domain, identity)
                self._unmark(key)
                absent.pop(key, None)
                absent[key] = batch
        for domain, customer_id in saved:
            state = states.get(domain)
            if state is not None and customer_id in state.customers:  # not merged away, erased
                marked = self._marked_in(domain)
                marked.pop(customer_id, None)
                marked[customer_id] = batch

    def sweep(self, states: Mapping[str, DomainState], *, now: bool = False) -> int:
        """Rule 3 (and 4): forget the least recently used profiles without open work, down
        to the bound; returns how many it forgot. Counting the open work's profiles takes a
        pass over the open conversations, so it is done when a quarter of the bound's
        profiles joined since the last count, or every ``SWEEP_EVERY`` batches, or ``now``."""
        committed, bound = self.committed, self.limit + self.limit // 4
        for domain in [domain for domain in self._marked if domain not in states]:
            del self._marked[domain]  # a domain no longer owned here
        resident = self._resident = sum(len(state.customers) for state in states.values())
        if resident <= bound or self._swept_at == committed:
            self._trim_absent()
            return 0
        if not now and resident < self._count_at and self._uncounted < SWEEP_EVERY:
            self._uncounted += 1
            self._trim_absent()
            return 0
        self._uncounted = 0
        # Counted, not estimated from the number of open conversations: a customer may
        # have several, and one who only wrote has no profile yet.
        pinned = {domain: open_customers(state) for domain, state in states.items()}
        busy = sum(
            1
            for domain, customer_ids in pinned.items()
            for customer_id in customer_ids
            if customer_id in states[domain].customers
        )
        if resident - busy <= bound:
            self._count_at = resident + max(1, self.limit // 4)
            self._trim_absent()
            return 0
        self._swept_at = committed
        excess = resident - busy - self.limit
        idle = self._least_recent_first(states)
        gone = list(islice((key for key in idle if key[1] not in pinned[key[0]]), excess))
        for key in gone:
            domain, customer_id = key
            for identity in forget(states[domain], customer_id):
                self._absent.pop((domain, identity), None)
            self._unmark(key)
        self._resident = resident - len(gone)
        self._count_at = self._resident + max(1, self.limit // 4)
        self._trim_absent()
        return len(gone)

    def _least_recent_first(self, states: Mapping[str, DomainState]) -> Iterator[Key]:
        """The profiles in memory that storage holds as they are (marked by committed
        batches), least recently marked first: those loaded and not marked since, then
        the marked ones by batch."""
        marked = self._marked
        for domain, state in states.items():
            since = marked.get(domain, _NONE_MARKED)
            for customer_id in state.customers:
                if customer_id not in since:
                    yield domain, customer_id
        by_batch = heapq.merge(
            *(
                zip(marked[domain].values(), repeat(domain), marked[domain], strict=False)
                for domain in states
                if domain in marked
            ),
            key=itemgetter(0),
        )
        committed = self.committed
        for batch, domain, customer_id in by_batch:
            if batch > committed:
                return
            yield domain, customer_id

    def _marked_in(self, domain: str) -> dict[str, int]:
        marked = self._marked.get(domain)
        if marked is None:
            marked = self._marked[domain] = {}
        return marked

    def _unmark(self, key: Key) -> None:
        marked = self._marked.get(key[0])
        if marked is not None:
            marked.pop(key[1], None)

    def _trim_absent(self) -> None:
        absent = self._absent
        if len(absent) <= self.limit + self.limit // 4:
            return
        committed = self.committed
        for key in list(absent):
            if len(absent) <= self.limit or absent[key] > committed:
                break
            del absent[key]
