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

from collections.abc import Iterable, Mapping, Sequence

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
from schemas import CustomerEraseRequested
from schemas.common import Event


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The router's memory (``router`` in the configuration file)."""

    customer_cache: int = 50_000
    """Customers without an open conversation a router process keeps in memory, at most
    (least recently used first out); the others are read from PostgreSQL when they write
    again. About 1 KiB of resident memory each (500 B of objects)."""

    def __post_init__(self) -> None:
        if not 0 <= self.customer_cache <= 10_000_000:
            raise ValueError("must be between 0 and 10000000 (customer_cache)")


SWEEP_EVERY = 64
"""Batches between two counts of the open work's profiles at most (``sweep``)."""

Key = tuple[str, str]
"""(domain, customer id or identity)."""


class ResidentCustomers:
    """The profiles in memory without open work (by recent use) and the known-absent ids."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """Profiles without an open conversation kept in memory, at most (rule 3)."""
        self._recent: dict[Key, int] = {}
        """Every profile in memory, least recently marked first, with its batch number."""
        self._absent: dict[Key, int] = {}
        """Identities storage does not hold (or will not, once batch n commits)."""
        self.batch = 0
        """The number of the batch being applied (rule 2)."""
        self.committed = 0
        """Every batch up to this number is committed."""
        self._swept_at = -1
        self._count_at = 0
        """Profiles in memory at which the open work's profiles are counted again."""
        self._uncounted = 0
        """Batches since they were last counted."""
        self.loaded_total = 0
        """Profiles read from storage for batches (a measure of cache misses)."""

    def __len__(self) -> int:
        return len(self._recent)

    def adopt(self, states: Iterable[DomainState]) -> None:
        """After a load: the profiles in memory are the loaded states' (all stored)."""
        self._recent = {
            (state.domain, customer_id): 0 for state in states for customer_id in state.customers
        }
        self._absent = {}
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
        batch, recent, absent = self.batch, self._recent, self._absent
        for event in events:
            if isinstance(event, CustomerEraseRequested):
                request = erasures.get(event.id)
                named: Sequence[str] = () if request is None else request.identities
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
                    key = (domain, profile)
                    recent.pop(key, None)
                    recent[key] = batch
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
        batch, recent = self.batch, self._recent
        held: set[Key] = set()
        for stored in found:
            state = states.get(stored.domain)
            if state is None:
                continue
            records: Sequence[CustomerRecord] = () if stored.record is None else (stored.record,)
            links: Sequence[IdentityRecord] = stored.links or ()
            remember(state, records, links)
            if stored.customer_id in state.customers:
                key = (stored.domain, stored.customer_id)
                recent.pop(key, None)
                recent[key] = batch
                held.add(key)
                held.update((stored.domain, link.identity) for link in links)
                self.loaded_total += 1
        for key in asked:
            if key not in held:
                self._absent[key] = batch

    def note(self, states: Mapping[str, DomainState], writes: store.BatchWrites) -> None:
        """Rule 2: the profiles this batch saved are marked; the ids it deleted, absent."""
        batch, recent, absent = self.batch, self._recent, self._absent
        marked: list[Key] = []
        for key, record in writes.customers.items():
            recent.pop(key, None)
            absent.pop(key, None)
            if record is not None:
                marked.append(key)
            else:
                absent[key] = batch
        for key, link in writes.identities.items():
            absent.pop(key, None)
            if link is not None:
                marked.append((key[0], link.customer_id))
            else:
                absent[key] = batch
        for domain, erasure in writes.erasures:
            for identity in erasure.identities:
                key = (domain, identity)
                recent.pop(key, None)
                absent.pop(key, None)
                absent[key] = batch
        for key in marked:
            state = states.get(key[0])
            if state is not None and key[1] in state.customers:  # not merged away, erased
                recent.pop(key, None)
                recent[key] = batch

    def sweep(self, states: Mapping[str, DomainState], *, now: bool = False) -> int:
        """Rule 3 (and 4): forget the least recently used profiles without open work, down
        to the bound; returns how many left. Counting the open work's profiles takes a pass
        over the open conversations, so it is done when a quarter of the bound's profiles
        joined since the last count, or every ``SWEEP_EVERY`` batches, or ``now``."""
        committed, recent, bound = self.committed, self._recent, self.limit + self.limit // 4
        if len(recent) <= bound or self._swept_at == committed:
            self._trim_absent()
            return 0
        if not now and len(recent) < self._count_at and self._uncounted < SWEEP_EVERY:
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
            if (domain, customer_id) in recent
        )
        if len(recent) - busy <= bound:
            self._count_at = len(recent) + max(1, self.limit // 4)
            self._trim_absent()
            return 0
        self._swept_at = committed
        excess = len(recent) - busy - self.limit
        kept: dict[Key, int] = {}
        gone = 0
        for key, batch in recent.items():
            domain, customer_id = key
            state = states.get(domain)
            if state is None:
                gone += 1  # a domain no longer owned here
                continue
            if excess > 0 and batch <= committed and customer_id not in pinned[domain]:
                for identity in forget(state, customer_id):
                    self._absent.pop((domain, identity), None)
                excess -= 1
                gone += 1
                continue
            kept[key] = batch
        self._recent = kept
        self._count_at = len(kept) + max(1, self.limit // 4)
        self._trim_absent()
        return gone

    def _trim_absent(self) -> None:
        absent = self._absent
        if len(absent) <= self.limit + self.limit // 4:
            return
        committed = self.committed
        for key in list(absent):
            if len(absent) <= self.limit or absent[key] > committed:
                break
            del absent[key]
