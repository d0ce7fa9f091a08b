"""``router.shell.residents`` against the whole history (no I/O): a router that keeps few
customers in memory and commits its batches late decides exactly as an engine that holds
everything.

Each example drives two states through the same random inputs (``test_properties``'
operations, with more of those about customers). The reference holds all history. The
router under test works as the worker does: per batch, the identities its inputs name are
read from what PostgreSQL holds (the committed batches only, answered as
``reads.load_customers`` answers), the batch applies, the intake collects its writes,
they are noted and memory is swept; the batches commit in order some batches later (one
may commit while the load's query runs), and now and then the router loads its
partitions again. After every input the effects are the reference's and the identity
links are flat; after every batch each profile in memory is the reference's; whenever
everything is committed, the next sweep leaves the profiles without open work within the
cache bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.engine import (
    CustomerErasure,
    CustomerRecord,
    DomainPolicy,
    DomainState,
    Effect,
    QueueMode,
    Returning,
    customer_record,
    new_state,
    open_customers,
    remember,
)
from router.shell import reads, store
from router.shell.erasure import ErasureRequest
from router.shell.intake import Intake
from router.shell.residents import Key, ResidentCustomers
from schemas import CustomerEraseRequested, RoutingEvent
from schemas.common import Event
from tests.engine.builders import DOMAIN, T0, examples, message
from tests.engine.test_properties import (
    IDENTITIES,
    Step,
    Store,
    capacities,
    identities_are_flat,
    message_op,
    op,
    policy_for,
    policy_variant,
    resolve,
    setup,
    step,
)
from tests.shell.test_intake import collecting_intake

_stored_customers = msgspec.json.Decoder(list[reads.StoredCustomer])


def stored_customers(storage: Store, asked: Sequence[Key]) -> list[reads.StoredCustomer]:
    """What ``reads.load_customers`` answers from ``storage``: per identity asked, its
    profile (its link's customer, or itself), with the profile's record and all its links;
    nothing for a profile with neither. Through JSON, as PostgreSQL hands it back."""
    profiles: dict[str, None] = {}
    for domain, identity in asked:
        assert domain == DOMAIN
        link = storage.identities.get(identity)
        profiles[identity if link is None else link.customer_id] = None
    found = []
    for profile in profiles:
        record = storage.customers.get(profile)
        links = [link for link in storage.identities.values() if link.customer_id == profile]
        if record is not None or links:
            # PostgreSQL aggregates the links in no particular order
            found.append(reads.StoredCustomer(DOMAIN, profile, record, links[::-1] or None))
    return _stored_customers.decode(msgspec.json.encode(found))


@dataclass
class CachedRouter:
    """One domain as the worker holds it: the state, its resident customers, what
    PostgreSQL holds (committed batches only) and the batches applied but not committed."""

    policy: DomainPolicy
    limit: int
    state: DomainState = field(init=False)
    residents: ResidentCustomers = field(init=False)
    storage: Store = field(default_factory=Store)
    uncommitted: list[tuple[int, list[Effect]]] = field(default_factory=list)
    """(batch number, its effects), oldest first."""
    intake: Intake = field(init=False)

    def __post_init__(self) -> None:
        self.state = new_state(DOMAIN, self.policy)
        self.residents = ResidentCustomers(self.limit)
        self.intake = collecting_intake()

    @property
    def states(self) -> dict[str, DomainState]:
        return {DOMAIN: self.state}

    def load(self, items: Sequence[Step], commit_meanwhile: int) -> None:
        """Rule 1: read what the batch's inputs name; ``commit_meanwhile`` batches commit
        while the query runs (PostgreSQL is then ahead of ``committed``)."""
        residents = self.residents
        residents.next_batch()
        erasures: dict[str, ErasureRequest] = {}
        named: list[Event] = []
        for event, _ in items:
            if isinstance(event, CustomerErasure):
                # the worker sees the topic's record, which names no one, and its row
                erasures[event.id] = ErasureRequest(event.identities, event.conversation_ids)
                named.append(
                    CustomerEraseRequested(
                        id=event.id, domain=event.domain, occurred_at=event.occurred_at
                    )
                )
            elif event is not None:
                named.append(event)
        asked = residents.to_load(self.states, named, erasures)
        committing = self.uncommitted[:commit_meanwhile]
        for _, effects in committing:
            self.storage.save(effects)
        if asked:
            residents.loaded(self.states, asked, stored_customers(self.storage, asked))
        self._committed(committing)

    def apply(self, item: Step, writes: store.BatchWrites) -> list[Effect]:
        effects = step(self.state, item)
        emitted: list[RoutingEvent] = []
        self.intake._collect(0, self.state, effects, writes, emitted, item[1])
        return effects

    def end_batch(self, writes: store.BatchWrites, effects: list[Effect]) -> None:
        """Rules 2 and 3: the batch's writes noted, memory swept, the batch queued."""
        self.residents.note(self.states, writes)
        self.residents.sweep(self.states)
        self.uncommitted.append((self.residents.batch, effects))

    def commit(self, batches: int) -> None:
        """The oldest ``batches`` uncommitted batches commit, in order, in one transaction."""
        committing = self.uncommitted[:batches]
        for _, effects in committing:
            self.storage.save(effects)
        self._committed(committing)

    def _committed(self, batches: list[tuple[int, list[Effect]]]) -> None:
        if batches:
            del self.uncommitted[: len(batches)]
            self.residents.committed = batches[-1][0]

    def reload(self) -> None:
        """The worker loads its partitions again (a rebalance, or a failed transaction):
        the open work and its customers, as PostgreSQL holds them."""
        assert not self.uncommitted, "the worker settles its writes first"
        self.state = self.storage.resident(self.policy, None)
        self.residents.adopt([self.state])

    def idle_batch(self) -> None:
        """A batch with no input (a poll that fetched nothing): memory is swept, counted
        at once (the worker counts it within ``SWEEP_EVERY`` batches)."""
        self.residents.next_batch()
        self.residents.note(self.states, store.BatchWrites())
        self.residents.sweep(self.states, now=True)


# -- invariants ---------------------------------------------------------------------


def memory_agrees_with_history(cached: DomainState, reference: DomainState) -> None:
    """Every profile in memory, and each of its links, is the reference's."""
    for customer_id, customer in cached.customers.items():
        held = reference.customers.get(customer_id)
        assert held is not None, f"{customer_id} is in memory, not in history"
        assert customer_record(customer) == customer_record(held), customer_id
        assert customer.identities == held.identities, customer_id
    for identity, link in cached.identities.items():
        assert reference.identities.get(identity) == link, identity


def idle_profiles_within_bound(state: DomainState, limit: int) -> None:
    """Swept with everything committed: the profiles without an open conversation are
    within the cache bound and its hysteresis (a quarter more)."""
    idle = state.customers.keys() - open_customers(state)
    assert len(idle) <= limit + limit // 4, (len(idle), limit, sorted(idle))


# -- the property -------------------------------------------------------------------

staffed = st.lists(st.tuples(st.integers(1, 2), st.just(1), st.booleans()), min_size=5, max_size=5)
"""Every agent with a slot per channel: customers get agents, so profiles to remember."""
customer_op = st.one_of(
    message_op,
    st.tuples(st.just("close"), st.integers(0, 7), st.just("admin")),
    st.tuples(st.just("advance"), st.just(4000.0)),
    st.tuples(st.just("erase"), st.integers(0, len(IDENTITIES) - 1)),
    st.tuples(
        st.sampled_from(("link", "unlink", "merge")),
        st.integers(0, len(IDENTITIES) - 1),
        st.integers(0, len(IDENTITIES) - 1),
    ),
)
"""What the cache is about, more often: customers writing, their conversations ending (their
profiles become the cache's to keep or drop), erased, linked, unlinked and merged."""


@settings(
    max_examples=examples(600),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    returning=st.sampled_from(list(Returning)),
    affinity=st.booleans(),
    capacities=st.one_of(capacities, staffed),
    limit=st.integers(0, 3),
    operations=st.lists(st.one_of(op, customer_op), min_size=15, max_size=50),
    data=st.data(),
)
def test_a_bounded_cache_with_late_commits_decides_as_the_whole_history(
    mode: QueueMode,
    returning: Returning,
    affinity: bool,
    capacities: list[tuple[int, int, bool]],
    limit: int,
    operations: list[tuple[object, ...]],
    data: st.DataObject,
) -> None:
    policy = policy_variant(mode, affinity=True) if affinity else policy_for(mode, returning)
    reference = new_state(DOMAIN, policy)
    router = CachedRouter(policy, limit)
    now = T0
    # the setup in one batch, then batches of drawn sizes; an erasure ends its batch
    # (intake rule 6)
    batch: list[tuple[Step, list[Effect]]] = []

    def run_batch() -> None:
        router.load(
            [item for item, _ in batch],
            data.draw(st.integers(0, len(router.uncommitted)), label="commit during load"),
        )
        writes = store.BatchWrites()
        applied: list[Effect] = []
        for item, expected in batch:
            effects = router.apply(item, writes)
            assert effects == expected, item
            applied.extend(effects)
            identities_are_flat(router.state)
        memory_agrees_with_history(router.state, reference)  # the reference is at its end
        router.end_batch(writes, applied)
        batch.clear()
        router.commit(data.draw(st.integers(0, len(router.uncommitted)), label="commit"))
        if not router.uncommitted:
            router.idle_batch()
            idle_profiles_within_bound(router.state, limit)
            if data.draw(st.sampled_from((False, False, False, True)), label="reload"):
                router.reload()

    def add(item: Step) -> None:
        # resolved against the reference and applied to it first: the batch's inputs are
        # known before it loads
        batch.append((item, step(reference, item)))

    for item in setup(mode, capacities):
        add(item)
    run_batch()
    for operation in operations:
        if operation[0] == "advance":
            assert isinstance(operation[1], float)
            now += operation[1]
            add((None, now))
        else:
            add(resolve(reference, operation, now))
        if isinstance(batch[-1][0][0], CustomerErasure) or data.draw(
            st.booleans(), label="end of batch"
        ):
            run_batch()
    if batch:
        run_batch()
    router.commit(len(router.uncommitted))
    router.idle_batch()
    idle_profiles_within_bound(router.state, limit)


# -- rule 3 after a load: what is forgotten first ---------------------------------------


def loaded_profiles(*customer_ids: str, domain: str = DOMAIN) -> DomainState:
    """A domain as a load gives it: these stored profiles, and no open conversation."""
    state = new_state(domain, DomainPolicy())
    remember(state, [CustomerRecord(customer_id=c) for c in customer_ids], [])
    return state


def naming(residents: ResidentCustomers, states: dict[str, DomainState], *named: Key) -> None:
    """One batch whose messages name these (domain, customer) profiles, all in memory."""
    residents.next_batch()
    events = [msgspec.structs.replace(message(customer=c), domain=d) for d, c in named]
    assert residents.to_load(states, events, {}) == []


def test_the_profiles_a_load_brought_are_counted_and_forgotten_before_those_named_since() -> None:
    state = loaded_profiles("ann", "bob", "cid", "dan")
    states = {DOMAIN: state}
    residents = ResidentCustomers(limit=2)
    residents.adopt([state])
    assert len(residents) == 4
    naming(residents, states, (DOMAIN, "ann"))
    residents.committed = residents.batch
    assert residents.sweep(states, now=True) == 2
    assert set(state.customers) == {"ann", "dan"}
    assert len(residents) == 2


def test_a_profile_named_by_a_batch_not_committed_stays_after_a_load() -> None:
    state = loaded_profiles("ann", "bob")
    states = {DOMAIN: state}
    residents = ResidentCustomers(limit=0)
    residents.adopt([state])
    naming(residents, states, (DOMAIN, "ann"))
    assert residents.sweep(states, now=True) == 1
    assert set(state.customers) == {"ann"}


def test_profiles_named_since_a_load_go_by_batch_across_domains() -> None:
    here, there = loaded_profiles("ann", "cid"), loaded_profiles("bob", domain="there")
    states = {DOMAIN: here, "there": there}
    residents = ResidentCustomers(limit=1)
    residents.adopt(states.values())
    naming(residents, states, (DOMAIN, "ann"))
    naming(residents, states, ("there", "bob"))
    naming(residents, states, (DOMAIN, "cid"))
    residents.committed = residents.batch
    assert residents.sweep(states, now=True) == 2
    assert (set(here.customers), set(there.customers)) == ({"cid"}, set())
