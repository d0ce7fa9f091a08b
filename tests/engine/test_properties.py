"""Invariants under random interleavings of messages, presence, capacity, commands and time.

Each example drives one domain through a random sequence and checks, after every step:
nobody over capacity, nobody owned twice (loads equal holdings), no fallback before its
deadline, nobody waits while an agent who may take it has a free slot (so a preferred
agent who frees a slot in time always gets the conversation), every position and line
length counts the conversations waiting on the line (none gone), persisted snapshots equal
the live state and a restored state continues identically; at the end, every waiting
conversation gets assigned or overflowed, and a replay yields the same effects.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.engine import (
    AffinityPolicy,
    AgentRecord,
    BotPolicy,
    BotRecord,
    ConversationRecord,
    ConversationStatus,
    CustomerRecord,
    DeadlineKind,
    DomainPolicy,
    DomainState,
    DropAgent,
    DropCustomer,
    Effect,
    EngineInput,
    EraseCustomer,
    IdentityRecord,
    InactivityPolicy,
    QueueMode,
    QueuePolicy,
    ReplyWindowPolicy,
    Restoration,
    Returning,
    SaveActivity,
    SaveAgent,
    SaveBot,
    SaveConversation,
    SaveCustomer,
    SaveIdentity,
    StepPolicy,
    apply,
    bot_health,
    customers_named,
    deadline_bound,
    deadline_due,
    identity_links,
    line_length,
    line_position,
    new_state,
    next_deadline,
    remember,
    restore,
    snapshot,
    tick,
    with_activity,
)
from router.engine.state import Conversation, LadderStep, WindowState
from schemas import (
    AnswerMode,
    BotFailed,
    BotHandoffRequested,
    BotReplied,
    BotResolved,
    Channel,
    Consent,
    ConversationFallback,
    ConversationHandbackRequested,
    ConversationTakeoverRequested,
    Handoff,
    HandoffReason,
    HumanReplied,
    Presence,
)
from tests.engine.builders import (
    DOMAIN,
    T0,
    accept,
    close,
    declined,
    emitted,
    erased,
    examples,
    identity_changed,
    linked,
    merged,
    message,
    next_id,
    notified,
    owner_set,
    presence,
    registered,
    removed,
    replied,
    routing_events,
    snoozed,
    transfer,
    unlinked,
    updated,
)

AGENTS = ("a0", "a1", "a2", "a3", "a4")
CUSTOMERS = ("c0", "c1", "c2", "c3", "c4")
KEYS = tuple(f"k{i}" for i in range(8))
IDENTITIES = (*CUSTOMERS, "email:e0", "email:e1")
"""Customers that write (``CUSTOMERS``) and identities that never do, to link and merge."""
CHANNELS = (Channel.SMS, Channel.WEBCHAT)
ADVANCES = (1.0, 5.0, 20.0, 31.0, 61.0, 125.0, 310.0, 1000.0, 4000.0)


BOT = "helper"
BOT_TIMEOUT = 30.0


def policy_for(mode: QueueMode, returning: Returning = Returning.BOT) -> DomainPolicy:
    """Two queues of people; ``billing`` is bot first (its steps: the human fallback)."""
    return DomainPolicy(
        bots={BOT: BotPolicy(answer_timeout=BOT_TIMEOUT, max_turns=3, down_after=2)},
        default_queue="support",
        inactivity=InactivityPolicy(release_after=900, close_after=3600),
        away_after_missed_offers=2,
        queues={
            "support": QueuePolicy(
                skills=("english",),
                mode=mode,
                offer_timeout=20,
                steps=(
                    StepPolicy(name="skilled", wait=60),
                    StepPolicy(name="anyone", agents_from=("*",), skills=(), wait=300),
                ),
            ),
            "billing": QueuePolicy(
                mode=mode,
                offer_timeout=20,
                steps=(StepPolicy(name="billing"),),
                bot=BOT,
                returning=returning,
            ),
        },
    )


def policy_variant(
    mode: QueueMode, *, affinity: bool = False, release: bool = True, urgent: bool = False
) -> DomainPolicy:
    """``policy_for``, with the affinity step, without slot release (an assigned
    conversation then closes straight from ``assigned``), or with an urgent reply-window
    boost."""
    base = policy_for(mode)
    return DomainPolicy(
        bots=base.bots,
        default_queue=base.default_queue,
        queues=base.queues,
        away_after_missed_offers=base.away_after_missed_offers,
        inactivity=InactivityPolicy(release_after=900 if release else None, close_after=3600),
        affinity=AffinityPolicy(try_top=2 if affinity else 0),
        reply_window=ReplyWindowPolicy(urgent_within=600 if urgent else None),
    )


def eligible(agent: AgentRecord, queue: str, step: str) -> bool:
    """The pools of ``policy_for``, restated independently of the engine."""
    if step == "skilled":
        return "english" in agent.skills and (not agent.queues or "support" in agent.queues)
    if step == "anyone":
        return True
    if step == "billing":
        return not agent.queues or "billing" in agent.queues
    raise AssertionError(step)


# -- operations ---------------------------------------------------------------------

message_op = st.tuples(st.just("msg"), st.integers(0, len(KEYS) - 1), st.sampled_from((0, 0, 5)))
op = st.one_of(
    message_op,
    message_op,
    message_op,
    st.tuples(st.just("presence"), st.integers(0, 4), st.sampled_from(list(Presence))),
    st.tuples(st.just("presence"), st.integers(0, 4), st.sampled_from(list(Presence))),
    st.tuples(
        st.just("register"),
        st.integers(0, 4),
        st.integers(0, 3),
        st.integers(0, 2),
        st.booleans(),
        st.sampled_from(((), ("support",), ("billing",))),
    ),
    st.tuples(st.just("owner"), st.integers(0, 4), st.one_of(st.none(), st.integers(0, 4))),
    st.tuples(st.just("accept"), st.integers(0, 9), st.one_of(st.none(), st.integers(0, 4))),
    st.tuples(st.just("close"), st.integers(0, 9), st.sampled_from(("owner", "admin", "other"))),
    st.tuples(
        st.just("transfer"),
        st.integers(0, 9),
        st.sampled_from(("owner", "admin", "other")),
        st.one_of(st.integers(0, 4), st.sampled_from(("support", "billing", "nope"))),
    ),
    st.tuples(st.just("reply"), st.integers(0, 9), st.integers(0, 4)),
    st.tuples(st.just("decline"), st.integers(0, 9), st.one_of(st.none(), st.integers(0, 4))),
    st.tuples(st.just("remove"), st.integers(0, 4)),
    st.tuples(
        st.just("update"),
        st.integers(0, 9),
        st.sampled_from(("owner", "admin", "other")),
        st.sampled_from((None, 5, -3)),
        st.sampled_from((None, (), ("english",), ("french",))),
    ),
    st.tuples(
        st.just("snooze"),
        st.integers(0, 9),
        st.sampled_from(("owner", "admin", "other")),
        st.sampled_from((30.0, 600.0, 5000.0, -1.0)),
    ),
    st.tuples(st.just("erase"), st.integers(0, len(IDENTITIES) - 1)),
    st.tuples(
        st.sampled_from(("link", "unlink", "merge", "changed")),
        st.integers(0, len(IDENTITIES) - 1),
        st.integers(0, len(IDENTITIES) - 1),
    ),
    st.tuples(
        st.just("notify"),
        st.integers(0, len(CUSTOMERS) - 1),
        st.sampled_from(list(AnswerMode)),
        st.integers(0, 4),
        st.sampled_from(("billing", "nope")),
        st.sampled_from((60.0, 3600.0)),
    ),
    st.tuples(st.just("consent"), st.integers(0, len(KEYS) - 1), st.sampled_from(list(Consent))),
    st.tuples(st.just("advance"), st.sampled_from(ADVANCES)),
    st.tuples(st.just("advance"), st.sampled_from(ADVANCES)),
    st.tuples(st.just("botmsg"), st.integers(0, len(KEYS) - 1), st.sampled_from(("hi", "agent"))),
    st.tuples(st.just("botmsg"), st.integers(0, len(KEYS) - 1), st.just("hi")),
    st.tuples(st.just("bot_reply"), st.integers(0, 9), st.booleans(), st.booleans()),
    st.tuples(
        st.just("bot_handoff"),
        st.integers(0, 9),
        st.sampled_from(((), ("english",), ("french",))),
        st.sampled_from((None, 9)),
    ),
    st.tuples(st.sampled_from(("bot_resolve", "bot_fail", "echo")), st.integers(0, 9)),
    st.tuples(st.just("takeover"), st.integers(0, 9), st.integers(0, 4)),
    st.tuples(
        st.just("handback"),
        st.integers(0, 9),
        st.sampled_from(("owner", "admin", "other")),
        st.sampled_from((None, BOT, "nope")),
    ),
)

Step = tuple[EngineInput | None, float]
"""An input applied at a time, or ``None``: a tick at that time."""


def resolve(state: DomainState, operation: tuple[object, ...], now: float) -> Step:
    """Turn a drawn operation into a concrete input (conversations picked among the open)."""
    kind = operation[0]
    open_ids = sorted(state.conversations)

    def pick(index: object) -> str:
        assert isinstance(index, int)
        return open_ids[index % len(open_ids)] if open_ids and index < 8 else "gone"

    def holder(conversation_id: str) -> str | None:
        conversation = state.conversations.get(conversation_id)
        if conversation is None:
            return None
        agent = conversation.owner or conversation.offered_to
        return None if agent is None else agent.agent_id

    if kind == "msg":
        index, priority = operation[1], operation[2]
        assert isinstance(index, int)
        assert isinstance(priority, int)
        return (
            message(
                KEYS[index],
                customer=CUSTOMERS[index % len(CUSTOMERS)],
                channel=CHANNELS[index % 2],
                priority=priority,
            ),
            now,
        )
    if kind == "presence":
        index, status = operation[1], operation[2]
        assert isinstance(index, int)
        assert isinstance(status, Presence)
        return presence(AGENTS[index], status), now
    if kind == "register":
        _, index, sms, chat, english, queues = operation
        assert isinstance(index, int)
        assert isinstance(sms, int)
        assert isinstance(chat, int)
        assert isinstance(queues, tuple)
        return (
            registered(
                AGENTS[index],
                capacity={Channel.SMS: sms, Channel.WEBCHAT: chat},
                skills=("english",) if english else (),
                queues=queues,
            ),
            now,
        )
    if kind == "owner":
        customer, agent = operation[1], operation[2]
        assert isinstance(customer, int)
        owner = AGENTS[agent] if isinstance(agent, int) else None
        return owner_set(CUSTOMERS[customer], owner), now
    if kind == "accept":
        conversation_id = pick(operation[1])
        agent = operation[2]
        offered = state.conversations.get(conversation_id)
        if agent is None and offered is not None and offered.offered_to is not None:
            return accept(conversation_id, offered.offered_to.agent_id), now
        return accept(conversation_id, AGENTS[agent if isinstance(agent, int) else 0]), now
    if kind in ("close", "transfer"):
        conversation_id = pick(operation[1])
        actor = {"owner": holder(conversation_id), "admin": None, "other": "a4"}[str(operation[2])]
        if kind == "close":
            return close(conversation_id, actor), now
        target = operation[3]
        if isinstance(target, int):
            return transfer(conversation_id, actor, to_agent=AGENTS[target]), now
        return transfer(conversation_id, actor, to_queue=str(target)), now
    if kind == "decline":
        conversation_id = pick(operation[1])
        agent = operation[2]
        if agent is None:
            return declined(conversation_id, holder(conversation_id) or AGENTS[0]), now
        assert isinstance(agent, int)
        return declined(conversation_id, AGENTS[agent]), now
    if kind == "update":
        conversation_id = pick(operation[1])
        actor = {"owner": holder(conversation_id), "admin": None, "other": "a4"}[str(operation[2])]
        priority, skills = operation[3], operation[4]
        assert priority is None or isinstance(priority, int)
        assert skills is None or isinstance(skills, tuple)
        return updated(conversation_id, actor, priority=priority, skills=skills), now
    if kind == "snooze":
        conversation_id = pick(operation[1])
        actor = {"owner": holder(conversation_id), "admin": None, "other": "a4"}[str(operation[2])]
        delay = operation[3]
        assert isinstance(delay, float)
        return snoozed(conversation_id, now + delay, actor), now
    if kind == "remove":
        agent = operation[1]
        assert isinstance(agent, int)
        return removed(AGENTS[agent]), now
    if kind == "erase":
        named = operation[1]
        assert isinstance(named, int)
        return erased(IDENTITIES[named]), now
    if kind in ("link", "unlink", "merge", "changed"):
        first, second = operation[1], operation[2]
        assert isinstance(first, int)
        assert isinstance(second, int)
        build = {
            "link": linked,
            "unlink": unlinked,
            "merge": merged,
            "changed": identity_changed,
        }[str(kind)]
        return build(IDENTITIES[first], IDENTITIES[second]), now
    if kind == "notify":
        _, customer, mode, agent, queue, window = operation
        assert isinstance(customer, int)
        assert isinstance(agent, int)
        assert isinstance(mode, AnswerMode)
        assert isinstance(window, float)
        notice = notified(
            CUSTOMERS[customer],
            f"notice-{now!r}-{customer}",
            mode=mode,
            agent_id=AGENTS[agent] if mode is AnswerMode.SENDER else None,
            queue=str(queue) if mode is AnswerMode.QUEUE else None,
            until=now + window,
            channel=CHANNELS[customer % 2],
            attributes={"campaign": "spring"},
        )
        return notice, now
    if kind == "consent":
        index, consent = operation[1], operation[2]
        assert isinstance(index, int)
        assert isinstance(consent, Consent)
        keyword = message(
            KEYS[index],
            customer=CUSTOMERS[index % len(CUSTOMERS)],
            channel=CHANNELS[index % 2],
            consent=consent,
        )
        return keyword, now
    if kind == "reply":
        agent = operation[2]
        assert isinstance(agent, int)
        return replied(pick(operation[1]), AGENTS[agent]), now
    if kind == "botmsg":
        index, text = operation[1], operation[2]
        assert isinstance(index, int)
        written = message(
            KEYS[index],
            customer=CUSTOMERS[index % len(CUSTOMERS)],
            channel=CHANNELS[index % 2],
            queue="billing",
        )
        return msgspec.structs.replace(written, text=str(text)), now
    if kind == "takeover":
        agent = operation[2]
        assert isinstance(agent, int)
        return (
            ConversationTakeoverRequested(
                id=next_id("take"),
                domain=DOMAIN,
                occurred_at=now,
                conversation_id=pick(operation[1]),
                agent_id=AGENTS[agent],
            ),
            now,
        )
    if kind == "handback":
        conversation_id = pick(operation[1])
        actor = {"owner": holder(conversation_id), "admin": None, "other": "a4"}[str(operation[2])]
        bot = operation[3]
        return (
            ConversationHandbackRequested(
                id=next_id("back"),
                domain=DOMAIN,
                occurred_at=now,
                conversation_id=conversation_id,
                agent_id=actor,
                bot_id=None if bot is None else str(bot),
                note="survey",
            ),
            now,
        )
    if kind == "echo":
        conversation = state.conversations.get(pick(operation[1]))
        return (
            HumanReplied(
                id=next_id("echo"),
                domain=DOMAIN,
                occurred_at=now,
                channel=Channel.SMS if conversation is None else conversation.channel,
                endpoint="+15550000000",
                customer_address="addr",
                customer_id="c0" if conversation is None else conversation.customer_id,
                conversation_key="gone" if conversation is None else conversation.key,
                provider_message_id=next_id("echo-pm"),
            ),
            now,
        )
    if kind in ("bot_reply", "bot_handoff", "bot_resolve", "bot_fail"):
        conversation_id = pick(operation[1])
        current = state.conversations.get(conversation_id)
        turn_id = None if current is None else current.bot_turn_id
        common = {
            "id": next_id("bot"),
            "domain": DOMAIN,
            "occurred_at": now,
            "conversation_id": conversation_id,
            "bot_id": BOT,
        }
        if kind == "bot_reply":
            progress, answers_turn = operation[2], operation[3]
            assert isinstance(progress, bool)
            return (
                BotReplied(
                    **common,
                    turn_id=turn_id if answers_turn else None,
                    text="ok",
                    progress=progress,
                ),
                now,
            )
        if kind == "bot_handoff":
            skills, priority = operation[2], operation[3]
            assert isinstance(skills, tuple)
            assert priority is None or isinstance(priority, int)
            handoff = Handoff(
                reason=HandoffReason.LOW_CONFIDENCE, summary="s", skills=skills, priority=priority
            )
            return BotHandoffRequested(**common, turn_id=turn_id, handoff=handoff), now
        if kind == "bot_resolve":
            return BotResolved(**common, turn_id=turn_id, text="bye"), now
        return BotFailed(**common, turn_id=turn_id, error="http_500"), now
    raise AssertionError(kind)


# -- persisted snapshots ------------------------------------------------------------


@dataclass
class Store:
    """What the shell would have in Postgres: the last saved record per key."""

    agents: dict[str, AgentRecord] = field(default_factory=dict)
    conversations: dict[str, ConversationRecord] = field(default_factory=dict)
    customers: dict[str, CustomerRecord] = field(default_factory=dict)
    identities: dict[str, IdentityRecord] = field(default_factory=dict)
    bots: dict[str, BotRecord] = field(default_factory=dict)

    def save(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, SaveAgent):
                self.agents[effect.record.agent_id] = effect.record
            elif isinstance(effect, DropAgent):
                del self.agents[effect.agent_id]
            elif isinstance(effect, SaveCustomer):
                self.customers[effect.record.customer_id] = effect.record
            elif isinstance(effect, DropCustomer):
                self.customers.pop(effect.customer_id, None)
            elif isinstance(effect, SaveIdentity):
                if effect.record is None:
                    del self.identities[effect.identity]
                else:
                    self.identities[effect.identity] = effect.record
            elif isinstance(effect, SaveBot):
                if effect.record is None:
                    del self.bots[effect.bot_id]
                else:
                    self.bots[effect.bot_id] = effect.record
            elif isinstance(effect, SaveActivity):
                saved = self.conversations.get(effect.conversation_id)
                if saved is not None:
                    self.conversations[effect.conversation_id] = with_activity(
                        saved, effect.activity
                    )
            elif isinstance(effect, SaveConversation):
                record = effect.record
                if record.status is ConversationStatus.CLOSED:
                    self.conversations.pop(record.conversation_id, None)
                else:
                    self.conversations[record.conversation_id] = record
            elif isinstance(effect, EraseCustomer):
                self.erase(set(effect.identities))

    def erase(self, gone: set[str]) -> None:
        """What the shell's erasure deletes (``router.shell.erasure``)."""
        self.customers = {k: r for k, r in self.customers.items() if k not in gone}
        self.identities = {
            k: r for k, r in self.identities.items() if k not in gone and r.customer_id not in gone
        }
        self.conversations = {
            k: r for k, r in self.conversations.items() if r.customer_id not in gone
        }

    def restore(self, policy: DomainPolicy) -> DomainState:
        return restore(
            DOMAIN,
            policy,
            self.agents.values(),
            self.conversations.values(),
            self.customers.values(),
            self.identities.values(),
            self.bots.values(),
        )

    def resident(self, policy: DomainPolicy, event: object | None) -> DomainState:
        """The state a router holds to apply ``event``: the open conversations' customers,
        and those the event names, loaded as the shell loads them (by identity, each
        profile with all its links); no other history."""
        open_ids = {record.customer_id for record in self.conversations.values()}
        # Copies: the records share mutable parts with the live state and ``revived``,
        # which PostgreSQL's would not. In parts, as a takeover restores them: some
        # conversations before the customers arrive, the rest after.
        conversations = [copy.deepcopy(c) for c in self.conversations.values()]
        restoration = Restoration(
            DOMAIN, policy, [copy.deepcopy(a) for a in self.agents.values()], self.bots.values()
        )
        restoration.add_conversations(conversations[: len(conversations) // 2])
        # The customers in two parts too, each profile with its links, and the links of
        # profiles without a record last (``router.shell.reads``).
        profiles = [c for c in self.customers.values() if c.customer_id in open_ids]
        links = [link for link in self.identities.values() if link.customer_id in open_ids]
        for part in (profiles[: len(profiles) // 2], profiles[len(profiles) // 2 :]):
            ids = {c.customer_id for c in part}
            restoration.add_customers(part, [link for link in links if link.customer_id in ids])
        with_record = {c.customer_id for c in profiles}
        restoration.add_customers((), [lk for lk in links if lk.customer_id not in with_record])
        restoration.add_conversations(conversations[len(conversations) // 2 :])
        state = restoration.finish()
        named = customers_named(event) if event is not None else []
        profiles = {self.identities[i].customer_id if i in self.identities else i for i in named}
        remember(
            state,
            [self.customers[p] for p in sorted(profiles) if p in self.customers],
            [link for link in self.identities.values() if link.customer_id in profiles],
        )
        return state

    def snapshot(self) -> Snapshot:
        return (
            [self.agents[k] for k in sorted(self.agents)],
            [self.conversations[k] for k in sorted(self.conversations)],
            [self.customers[k] for k in sorted(self.customers)],
            [self.identities[k] for k in sorted(self.identities)],
            [self.bots[k] for k in sorted(self.bots)],
        )


Snapshot = tuple[
    list[AgentRecord],
    list[ConversationRecord],
    list[CustomerRecord],
    list[IdentityRecord],
    list[BotRecord],
]


def full_snapshot(state: DomainState) -> Snapshot:
    return (*snapshot(state), identity_links(state), bot_health(state))


def identities_are_flat(state: DomainState) -> None:
    """Every identity belongs to one customer profile, directly: open conversations name
    profiles, never linked identities, and each profile lists exactly its links."""
    for identity, link in state.identities.items():
        assert link.customer_id not in state.identities, (identity, link)
        customer = state.customers[link.customer_id]
        assert customer.identities is not None
        assert identity in customer.identities
    for customer in state.customers.values():
        assert customer.customer_id not in state.identities
        for identity in customer.identities or ():
            assert state.identities[identity].customer_id == customer.customer_id
    for conversation in state.conversations.values():
        assert conversation.customer_id not in state.identities, conversation.conversation_id


def nothing_left_of_the_erased(state: DomainState, effects: Sequence[Effect]) -> None:
    """After an erasure, the state names none of the erased identities, and no event
    published for it names them either."""
    for effect in effects:
        if not isinstance(effect, EraseCustomer):
            continue
        gone = set(effect.identities)
        assert not gone & state.customers.keys()
        assert not gone & state.identities.keys()
        assert not any(link.customer_id in gone for link in state.identities.values())
        assert not any(c.customer_id in gone for c in state.conversations.values())
        for event in routing_events(effects):
            assert getattr(event, "customer_id", None) not in gone, event


def step(state: DomainState, item: Step) -> list[Effect]:
    event, now = item
    return tick(state, now) if event is None else apply(state, event, now)


# -- invariants ---------------------------------------------------------------------


def loads_equal_holdings(state: DomainState) -> None:
    """Nobody is owned twice: each agent's load is the conversations they hold."""
    _, conversations, _ = snapshot(state)
    held: dict[tuple[str, Channel], int] = {}
    for record in conversations:
        if record.status is ConversationStatus.ASSIGNED:
            assert record.owner_agent_id is not None
            assert record.offered_to is None
            key = (record.owner_agent_id, record.channel)
        elif record.status is ConversationStatus.OFFERED:
            assert record.offered_to is not None
            assert record.owner_agent_id is None
            key = (record.offered_to, record.channel)
        else:
            if record.status is not ConversationStatus.IDLE:
                assert record.owner_agent_id is None, record
            assert record.offered_to is None
            continue
        held[key] = held.get(key, 0) + 1
    for agent in state.agents.values():
        for channel, load in agent.load.items():
            assert load == held.get((agent.agent_id, channel), 0), (agent.agent_id, channel)
    keys = [record.conversation_key for record in conversations]
    assert len(keys) == len(set(keys)), "two open conversations share a key"


def nobody_newly_over_capacity(state: DomainState, before: dict[tuple[str, Channel], int]) -> None:
    """An agent given work in this step has it within capacity."""
    for agent in state.agents.values():
        for channel, load in agent.load.items():
            if load > before.get((agent.agent_id, channel), 0):
                assert load <= agent.capacity.get(channel, 0), (agent.agent_id, channel)


def no_fallback_before_deadline(
    effects: Sequence[Effect], before: dict[str, ConversationRecord], now: float
) -> None:
    for fallback in emitted(effects, ConversationFallback):
        if fallback.reason != "timeout":
            continue
        record = before.get(fallback.conversation_id)
        assert record is not None
        assert record.step_until is not None
        assert record.step_until <= now, (record.step_until, now)


def nobody_waits_for_a_free_agent(state: DomainState) -> None:
    """Work conservation: a held conversation's preferred agent has no free slot, and
    no agent of a waiting conversation's pool (not passed over) has one either."""
    agents, conversations, _ = snapshot(state)
    free = [
        agent
        for agent in agents
        if agent.presence is Presence.ONLINE
        and any(
            agent.load.get(channel, 0) < capacity for channel, capacity in agent.capacity.items()
        )
    ]
    for record in conversations:
        if record.status is not ConversationStatus.WAITING:
            continue
        for agent in free:
            if agent.load.get(record.channel, 0) >= agent.capacity.get(record.channel, 0):
                continue
            if record.step == "preferred":
                assert agent.agent_id != record.preferred_agent_id, (record, agent)
            elif agent.agent_id not in record.passed_over and set(record.skills) <= set(
                agent.skills
            ):
                assert not eligible(agent, record.queue, record.step), (record, agent)


def positions_count_those_ahead(state: DomainState) -> None:
    """``router.engine.waiting`` rules 1 and 2, counted naively from the conversations
    themselves: every waiting conversation not held outside business hours is on the
    preferred agent's line for its channel, or on its step's pool line for its channel;
    its position is 1 plus those on that line ordered before it (priority with the
    urgent window's boost, then waiting since, then id); any other conversation has no
    position; each line's length is the number of conversations on it."""
    boost = state.policy.reply_window.urgent_boost
    lines: dict[tuple[object, ...], list[tuple[tuple[int, float, str], Conversation]]] = {}
    for conversation in state.conversations.values():
        if (
            conversation.status is not ConversationStatus.WAITING
            or conversation.step_index == LadderStep.AFTER_HOURS
        ):
            assert line_position(state, conversation) is None, conversation.conversation_id
            continue
        channel = conversation.channel
        if conversation.step_index == LadderStep.PREFERRED:
            line: tuple[object, ...] = ("held", conversation.preferred, channel)
        else:
            pool = conversation.queue.steps[conversation.step_index].pool
            line = ("pool", pool.index, channel)
        urgent = conversation.window_state == WindowState.URGENT
        order = (
            -conversation.priority - (boost if urgent else 0),
            conversation.waiting_since,
            conversation.conversation_id,
        )
        lines.setdefault(line, []).append((order, conversation))
    for members in lines.values():
        for order, conversation in members:
            ahead = sum(1 for other, _ in members if other < order)
            assert line_position(state, conversation) == ahead + 1, conversation.conversation_id
    for (pool_index, channel), pool_line in state.waiting.items():
        expected = len(lines.get(("pool", pool_index, channel), ()))
        assert line_length(state, pool_line) == expected, (pool_index, channel)
    for agent in state.agents.values():
        for channel, held in agent.held.items():
            expected = len(lines.get(("held", agent.agent_id, channel), ()))
            assert line_length(state, held) == expected, (agent.agent_id, channel)


def one_owner_and_a_way_to_people(state: DomainState, now: float) -> None:
    """A bot owns a conversation exactly when its status says so, and then nobody else
    holds it; it always has a way on to people (its queue's steps) and a deadline while
    its answer is due (or the inactivity close); a bot is nobody's last agent."""
    for conversation in state.conversations.values():
        owned_by_bot = conversation.status is ConversationStatus.BOT
        assert (conversation.bot is not None) == owned_by_bot, conversation.conversation_id
        if not owned_by_bot:
            assert conversation.bot_turn_id is None
            continue
        assert conversation.owner is None
        assert conversation.offered_to is None
        assert conversation.queue.steps
        assert conversation.deadline is not None
        if conversation.deadline_kind is DeadlineKind.BOT:
            assert conversation.deadline <= now + BOT_TIMEOUT
        else:
            assert conversation.deadline_kind is DeadlineKind.CLOSE
    for customer in state.customers.values():
        assert customer.last_agent_id is None or customer.last_agent_id in AGENTS
        assert customer.owner_agent_id != BOT


def the_deadline_bound_bounds(state: DomainState) -> None:
    """``deadline_bound`` is never later than the next deadline, and ``deadline_due`` says
    exactly what ``next_deadline`` does; once re-filed, the bound is the deadline."""
    bound = deadline_bound(state)
    due_at_bound = None if bound is None else deadline_due(state, bound)
    exact = next_deadline(state)
    if exact is None:
        assert not due_at_bound  # a bound from entries that are all stale
    else:
        assert bound is not None
        assert bound <= exact
        assert due_at_bound == (exact == bound)
        assert deadline_due(state, exact)
    assert deadline_bound(state) == exact


def loads(state: DomainState) -> dict[tuple[str, Channel], int]:
    return {
        (agent.agent_id, channel): load
        for agent in state.agents.values()
        for channel, load in agent.load.items()
    }


# -- the properties -----------------------------------------------------------------


def setup(mode: QueueMode, capacities: Sequence[tuple[int, int, bool]]) -> list[Step]:
    items: list[Step] = []
    for agent_id, (sms, chat, english) in zip(AGENTS, capacities, strict=True):
        items.append(
            (
                registered(
                    agent_id,
                    capacity={Channel.SMS: sms, Channel.WEBCHAT: chat},
                    skills=("english",) if english else (),
                ),
                T0,
            )
        )
        items.append((presence(agent_id, Presence.ONLINE), T0))
    return items


capacities = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 1), st.booleans()), min_size=5, max_size=5
)


@settings(
    max_examples=examples(250),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    mode=st.sampled_from(list(QueueMode)),
    returning=st.sampled_from(list(Returning)),
    capacities=capacities,
    operations=st.lists(op, min_size=15, max_size=50),
)
def test_routing_invariants_hold_at_every_step(
    mode: QueueMode,
    returning: Returning,
    capacities: list[tuple[int, int, bool]],
    operations: list[tuple[object, ...]],
) -> None:
    policy = policy_for(mode, returning)
    state = new_state(DOMAIN, policy)
    store = Store()
    history: list[Step] = []
    outputs: list[list[Effect]] = []
    now = T0

    def run_step(item: Step) -> None:
        before_records = {r.conversation_id: r for r in snapshot(state)[1]}
        before_loads = loads(state)
        revived = store.restore(policy)
        resident = store.resident(policy, item[0])
        effects = step(state, item)
        # restored from the persisted snapshots, the state continues identically, and so
        # does one holding only open work and the customers the input names
        assert step(revived, item) == effects
        assert step(resident, item) == effects
        history.append(item)
        outputs.append(effects)
        store.save(effects)
        assert store.snapshot() == full_snapshot(state), "a change was not saved"
        identities_are_flat(state)
        nothing_left_of_the_erased(state, effects)
        loads_equal_holdings(state)
        nobody_newly_over_capacity(state, before_loads)
        no_fallback_before_deadline(effects, before_records, item[1])
        nobody_waits_for_a_free_agent(state)
        positions_count_those_ahead(state)
        positions_count_those_ahead(revived)
        one_owner_and_a_way_to_people(state, item[1])
        the_deadline_bound_bounds(state)

    for item in setup(mode, capacities):
        run_step(item)
    for operation in operations:
        if operation[0] == "advance":
            assert isinstance(operation[1], float)
            now += operation[1]
            run_step((None, now))
        else:
            run_step(resolve(state, operation, now))

    # everyone available: every waiting conversation ends up assigned or overflowed
    for index, agent_id in enumerate(AGENTS):
        run_step(
            (
                registered(
                    agent_id, capacity={c: 50 for c in CHANNELS}, skills=("english", "french")
                ),
                now,
            )
        )
        run_step((presence(agent_id, Presence.ONLINE), now))
        del index
    for _ in range(12):
        for conversation in sorted(state.conversations.values(), key=lambda c: c.conversation_id):
            if conversation.status is ConversationStatus.OFFERED:
                assert conversation.offered_to is not None
                run_step(
                    (accept(conversation.conversation_id, conversation.offered_to.agent_id), now)
                )
        for agent_id in AGENTS:
            run_step((presence(agent_id, Presence.ONLINE), now))
        now += 400
        run_step((None, now))
    stuck = [
        r
        for r in snapshot(state)[1]
        if r.status in (ConversationStatus.WAITING, ConversationStatus.OFFERED)
    ]
    assert not stuck, stuck

    # a replay of the same inputs at the same times decides exactly the same
    replay = new_state(DOMAIN, policy)
    assert [step(replay, item) for item in history] == outputs
