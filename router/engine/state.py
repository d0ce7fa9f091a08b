"""In-memory matching state of one domain, and the indexes that keep decisions cheap.

Nothing here scans all agents or all conversations on a decision:

- ``available``: per (pool, channel), a heap of agents who are online with a free slot
  on that channel, ordered by (occupancy on the channel, idle since, agent id). Entries
  carry the agent's per-channel version; any change bumps it, so old entries are skipped
  lazily and the heap is compacted when it grows past twice its possible size.
- ``waiting``: per (pool, channel), the line (``WaitLine``) of conversations queued at a
  step using that pool, ordered by (-priority, waiting since, conversation id); the
  preferred hold lives in the preferred agent's own ``held`` line per channel. A line
  holds only live entries: a conversation names its line and entry, and leaves the line
  through ``DomainState.leave_line`` alone (re-queued, assigned, offered, fallen back,
  overflowed, closed), so a position is a rank in the line.
- ``deadlines``: a heap of (due, conversation id); the conversation's ``deadline`` is
  the truth and ``heap_due`` names its one live entry (any other entry is stale). The
  live entry may be *earlier* than the deadline (a message pushed the inactivity
  deadline later without touching the heap): popping it re-pushes at the real deadline.

Every heap key ends in an id, so the order never depends on insertion history: the
state rebuilt by ``restore`` decides exactly like the live one.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from typing import TypeVar

from router.engine.calendar import CompiledCalendar
from router.engine.lines import WaitEntry, WaitLine
from router.engine.policy import (
    ANY_AGENT,
    AfterHours,
    BotPolicy,
    DomainPolicy,
    QueueMode,
    Returning,
)
from router.engine.records import (
    AgentDeadlineKind,
    AssignmentRecord,
    BotRecord,
    ConversationStatus,
    DeadlineKind,
    ExpectationRecord,
    IdentityRecord,
)
from schemas import AgentSchedule, BotHandoff, CandidateNote, Channel, Presence
from schemas.limits import keyword_form

AgentEntry = tuple[float, float, str, int]
"""(occupancy, idle since, agent id, version) in an ``available`` heap."""
DeadlineEntry = tuple[float, str]
"""(due, conversation id) in the deadline heap."""


class LadderStep(enum.IntEnum):
    """``Conversation.step_index`` of the engine's own steps, below the queue's steps
    (``0`` to ``n - 1``; ``n`` is an overflowed conversation, named after the last step).
    Records and events carry the step's name (the member's name in lower case)."""

    PREFERRED = -1
    """The preferred-agent hold (rule 3)."""
    TRANSFER = -2
    """Assigned by a transfer to an agent."""
    MANUAL = -3
    """Assigned by a manual pick-up."""
    AFFINITY = -4
    """Handed to one of the customer's affinity agents."""
    AFTER_HOURS = -5
    """Held outside the queue's business hours, offered to nobody, until it opens."""
    TAKEOVER = -6
    """Taken from a bot by a person (``conversation.takeover_requested``)."""
    BOT = -7
    """Owned by a bot (status ``bot``)."""

    @property
    def step_name(self) -> str:
        return self.name.lower()


_SPECIAL_STEPS: dict[int, str] = {step: step.step_name for step in LadderStep}


class WindowState(enum.IntEnum):
    """``Conversation.window_state``: the provider reply window is open, about to close
    (priority boosted), or closed (replies need a template). The number is part of the
    cause of the ids made when the window fires."""

    OPEN = 0
    URGENT = 1
    CLOSED = 2


_WINDOW_OPEN = WindowState.OPEN
_WINDOW_URGENT = WindowState.URGENT
_WINDOW_CLOSED = WindowState.CLOSED

AgentDeadline = tuple[float, str, AgentDeadlineKind]
"""(due, agent id, kind) in the agent deadline heap."""

HeapEntry = TypeVar("HeapEntry", DeadlineEntry, AgentDeadline)

COMPACT_SLACK = 1024
"""Entries a heap with lazily dropped stale entries holds beyond twice its live ones
before it is compacted."""


def compact(heap: list[HeapEntry], live: Callable[[HeapEntry], object]) -> None:
    """Keep a heap's live entries only (those ``live`` says are), each once: for a heap
    whose stale entries are dropped only once they are its earliest, when it holds more
    than twice its live entries at most, and ``COMPACT_SLACK``: O(1) amortized per push.

    Without it, a reply window moved later by each customer message left one entry per
    message behind the earliest live window: a day of a WhatsApp conversation's messages,
    held until the first window of any other conversation closed."""
    heap[:] = dict.fromkeys(entry for entry in heap if live(entry))
    heapq.heapify(heap)


NONE_PASSED: dict[str, str] = {}
"""Nobody passed over: shared by every record that says so (never mutated)."""
NO_ATTRIBUTES: dict[str, str] = {}
"""No attributes: shared by every record that has none (never mutated)."""
NO_SKILLS: frozenset[str] = frozenset()


class Pool:
    """Who may take work at a step: members of some queues (or anyone), with all skills."""

    __slots__ = ("index", "queues", "skills")

    def __init__(self, index: int, queues: frozenset[str] | None, skills: frozenset[str]):
        self.index = index
        self.queues = queues
        self.skills = skills

    def admits(self, agent_queues: tuple[str, ...], agent_skills: frozenset[str]) -> bool:
        if not self.skills <= agent_skills:
            return False
        if self.queues is None or not agent_queues:
            return True
        return not self.queues.isdisjoint(agent_queues)


class Step:
    __slots__ = ("name", "pool", "waits")

    def __init__(self, name: str, pool: Pool, waits: dict[Channel, float | None]):
        self.name = name
        self.pool = pool
        self.waits = waits


class Queue:
    __slots__ = (
        "after_hours",
        "after_hours_queue",
        "bot",
        "calendar",
        "calendar_name",
        "limits",
        "name",
        "names",
        "offer",
        "offer_timeout",
        "preferred_wait",
        "returning",
        "sla",
        "step_index",
        "steps",
    )

    def __init__(
        self,
        name: str,
        steps: list[Step],
        offer: bool,
        offer_timeout: float,
        preferred_wait: dict[Channel, float],
        sla: dict[Channel, float | None] | None = None,
    ):
        self.name = name
        self.sla = sla or {}
        """First-response target per channel (None: none)."""
        self.steps = steps
        self.offer = offer
        self.offer_timeout = offer_timeout
        self.preferred_wait = preferred_wait
        self.step_index = {step.name: index for index, step in enumerate(steps)}
        self.names: dict[int, str] = {
            **_SPECIAL_STEPS,
            **{index: step.name for index, step in enumerate(steps)},
        }
        """Step index -> name; past the last step: overflowed after it (its name)."""
        self.names[len(steps)] = steps[-1].name
        self.calendar: CompiledCalendar | None = None
        """Business hours (None: always open)."""
        self.calendar_name = ""
        self.after_hours = AfterHours.HOLD
        self.after_hours_queue: Queue | None = None
        self.limits: dict[Channel, int] = {}
        """Capacity rule: the queue's conversations one agent may hold per channel."""
        self.bot: str | None = None
        """Bot first: the bot that owns its new conversations."""
        self.returning = Returning.BOT

    def index_of(self, name: str) -> int | None:
        """The step index of a step name, the engine's own steps included."""
        for index, special in _SPECIAL_STEPS.items():
            if special == name:
                return index
        return self.step_index.get(name)


class Bot:
    """A bot of the domain's policy, with its ``human_keywords`` in compared form."""

    __slots__ = ("bot_id", "human_keywords", "policy")

    def __init__(self, bot_id: str, policy: BotPolicy):
        self.bot_id = bot_id
        self.policy = policy
        self.human_keywords = frozenset(keyword_form(word) for word in policy.human_keywords)


class Compiled:
    """The policy turned into lookups: queues with their pools, per-channel timeouts."""

    __slots__ = ("bots", "close_after", "default_queue", "pools", "queues", "release_after")

    def __init__(self, policy: DomainPolicy):
        pools: dict[tuple[frozenset[str] | None, frozenset[str]], Pool] = {}
        self.queues: dict[str, Queue] = {}
        for queue_name, queue_policy in policy.queues.items():
            steps = []
            for step in queue_policy.steps:
                sources = step.agents_from or (queue_name,)
                members = None if ANY_AGENT in sources else frozenset(sources)
                skills = frozenset(queue_policy.skills if step.skills is None else step.skills)
                pool = pools.get((members, skills))
                if pool is None:
                    pool = pools[(members, skills)] = Pool(len(pools), members, skills)
                waits = {channel: step.wait_for(channel) for channel in Channel}
                steps.append(Step(step.name, pool, waits))
            preferred = {
                channel: queue_policy.preferred_wait.get(
                    channel, policy.preferred_wait.for_channel(channel)
                )
                for channel in Channel
            }
            sla = {
                channel: queue_policy.first_response_sla.get(
                    channel, policy.first_response_sla.get(channel)
                )
                for channel in Channel
            }
            self.queues[queue_name] = Queue(
                queue_name,
                steps,
                queue_policy.mode is QueueMode.OFFER,
                queue_policy.offer_timeout,
                preferred,
                sla,
            )
        calendars = {name: CompiledCalendar(c) for name, c in sorted(policy.calendars.items())}
        for queue_name, queue_policy in policy.queues.items():
            queue = self.queues[queue_name]
            if queue_policy.calendar is not None:
                queue.calendar = calendars[queue_policy.calendar]
                queue.calendar_name = queue_policy.calendar
            queue.after_hours = queue_policy.after_hours
            queue.limits = dict(queue_policy.max_per_agent)
            queue.bot = queue_policy.bot
            queue.returning = queue_policy.returning
            if queue_policy.after_hours_queue is not None:
                queue.after_hours_queue = self.queues[queue_policy.after_hours_queue]
        self.default_queue = policy.default_queue
        self.pools = list(pools.values())
        self.bots = {name: Bot(name, bot) for name, bot in sorted(policy.bots.items())}
        self.release_after = {
            channel: policy.inactivity_for(channel).release_after for channel in Channel
        }
        self.close_after = {
            channel: policy.inactivity_for(channel).close_after for channel in Channel
        }


class Agent:
    __slots__ = (
        "agent_id",
        "capacity",
        "chosen",
        "held",
        "idle_since",
        "load",
        "missed_offers",
        "name",
        "pace_due",
        "pools",
        "presence",
        "queue_load",
        "queues",
        "schedule",
        "shift_due",
        "skill_set",
        "skills",
        "version",
    )

    def __init__(self, agent_id: str):
        self.agent_id = agent_id
        self.name = ""
        self.skills: tuple[str, ...] = ()
        self.skill_set: frozenset[str] = NO_SKILLS
        self.queues: tuple[str, ...] = ()
        self.capacity: dict[Channel, int] = {}
        self.presence = Presence.OFFLINE
        self.load: dict[Channel, int] = {}
        self.queue_load: dict[tuple[str, Channel], int] = {}
        """Slots held per (queue, channel), for the queues' capacity rules."""
        self.idle_since: dict[Channel, float] = {}
        self.missed_offers = 0
        self.pools: tuple[Pool, ...] = ()
        self.version: dict[Channel, int] = {}
        self.chosen = (CandidateNote(agent_id=agent_id, reason="chosen"),)
        """The candidates of an assignment nobody else was considered for (shared)."""
        self.held: dict[Channel, WaitLine] = {}
        """Conversations held for this agent as their preferred agent (rule 3)."""
        self.schedule: AgentSchedule | None = None
        self.pace_due: float | None = None
        """Login pacing: set, no automatic hand-over until the pace deadline fires."""
        self.shift_due: float | None = None
        """The shift boundary the agent deadline heap holds for this agent."""

    def has_slot(self, channel: Channel) -> bool:
        return (
            self.presence is Presence.ONLINE
            and self.pace_due is None
            and self.load.get(channel, 0) < self.capacity.get(channel, 0)
        )

    def under_limit(self, conversation: Conversation) -> bool:
        """Whether the conversation's queue lets this agent hold one more of its
        conversations on its channel (the queue's capacity rule)."""
        limit = conversation.queue.limits.get(conversation.channel)
        if limit is None:
            return True
        key = (conversation.queue.name, conversation.channel)
        return self.queue_load.get(key, 0) < limit

    def may_take(self, conversation: Conversation) -> bool:
        """A free slot on the conversation's channel, within its queue's limit, and the
        skills the conversation itself requires."""
        return (
            self.has_slot(conversation.channel)
            and self.under_limit(conversation)
            and conversation.required <= self.skill_set
        )

    def suits(self, conversation: Conversation) -> bool:
        """Within the conversation's queue limit, with the skills it requires (not slots)."""
        return self.under_limit(conversation) and conversation.required <= self.skill_set

    def unavailable_reason(self, channel: Channel) -> str:
        """Why this agent cannot take a conversation on ``channel`` now (or ``chosen``)."""
        if self.capacity.get(channel, 0) <= 0:
            return "no_channel"
        if self.presence is Presence.OFFLINE:
            return "offline"
        if self.presence is Presence.AWAY:
            return "away"
        if self.load.get(channel, 0) >= self.capacity[channel]:
            return "at_capacity"
        return "chosen"


class Customer:
    __slots__ = (
        "affinity",
        "customer_id",
        "expectation",
        "identities",
        "last_agent_id",
        "last_handled_at",
        "owner_agent_id",
    )

    def __init__(self, customer_id: str):
        self.customer_id = customer_id
        self.identities: list[str] | None = None
        """The other identities linked to this customer, sorted (``state.identities``)."""
        self.owner_agent_id: str | None = None
        self.last_agent_id: str | None = None
        self.last_handled_at: float | None = None
        self.affinity: list[tuple[float, str]] | None = None
        """(rank key, agent id), best first. The key is ``log2(score) + at / half_life``:
        a decaying score keeps its rank against the others, so the list never needs
        re-sorting as time passes, and the score at ``now`` is
        ``2 ** (key - now / half_life)``."""
        self.expectation: ExpectationRecord | None = None
        """The latest business-started message to them, while it matters
        (``router.engine.outbound``)."""


class Conversation:
    __slots__ = (
        "assignment",
        "attributes",
        "bot",
        "bot_turn_id",
        "bot_turns",
        "channel",
        "conversation_id",
        "customer_address",
        "customer_id",
        "deadline",
        "deadline_kind",
        "endpoint",
        "fell_back",
        "first_response_at",
        "had_human",
        "handoff",
        "handoff_open",
        "heap_due",
        "key",
        "language",
        "last_activity_at",
        "last_agent_reply_at",
        "last_customer_message_at",
        "message_count",
        "offered_to",
        "opened_at",
        "owner",
        "passed_over",
        "preferred",
        "priority",
        "queue",
        "required",
        "skills",
        "snoozed_until",
        "status",
        "step_index",
        "step_until",
        "wait_entry",
        "wait_line",
        "waiting_since",
        "window_ends_at",
        "window_state",
    )

    def __init__(
        self,
        conversation_id: str,
        channel: Channel,
        endpoint: str,
        customer_address: str,
        customer_id: str,
        key: str,
        queue: Queue,
        priority: int,
        now: float,
        status: ConversationStatus = ConversationStatus.WAITING,
    ):
        """A conversation opened at ``now``: waiting (a new one), or the saved
        ``status`` of one ``restore`` rebuilds; after that, only
        ``router.engine.lifecycle.set_status`` changes the status."""
        self.conversation_id = conversation_id
        self.channel = channel
        self.endpoint = endpoint
        self.customer_address = customer_address
        self.customer_id = customer_id
        self.key = key
        self.queue = queue
        self.priority = priority
        self.status = status
        self.owner: Agent | None = None
        self.preferred: str | None = None
        self.offered_to: Agent | None = None
        self.step_index = 0
        self.fell_back = False
        self.waiting_since = now
        self.opened_at = now
        self.last_customer_message_at = now
        self.last_agent_reply_at: float | None = None
        self.first_response_at: float | None = None
        self.last_activity_at = now
        self.deadline: float | None = None
        self.deadline_kind: DeadlineKind | None = None
        self.step_until: float | None = None
        self.passed_over: dict[str, str] | None = None
        self.assignment: AssignmentRecord | None = None
        self.message_count = 1
        self.heap_due: float | None = None
        """Due time of the conversation's live deadline-heap entry (None: none)."""
        self.wait_entry: WaitEntry | None = None
        """Its entry in ``wait_line`` (None: on no line); set by ``DomainState.enqueue``,
        cleared by ``DomainState.leave_line`` alone."""
        self.wait_line: WaitLine | None = None
        self.window_ends_at: float | None = None
        self.window_state: WindowState = _WINDOW_OPEN
        self.skills: tuple[str, ...] = ()
        self.language: str | None = None
        self.attributes: dict[str, str] | None = None
        self.required: frozenset[str] = NO_SKILLS
        """The skills an agent needs for it: ``skills``, and its language's skill under
        the policy's ``language_skill`` (see ``set_context``)."""
        self.snoozed_until: float | None = None
        self.bot: str | None = None
        """The bot that owns it (status ``bot``; ``router.engine.bots``)."""
        self.bot_turn_id: str | None = None
        self.bot_turns = 0
        self.handoff: BotHandoff | None = None
        self.handoff_open = False
        self.had_human = False

    def set_context(
        self,
        skills: tuple[str, ...],
        language: str | None,
        attributes: dict[str, str] | None,
        language_skill: bool,
    ) -> None:
        """Its routing context (skills, language, attributes) and the skills it requires."""
        self.skills = skills
        self.language = language or None
        self.attributes = attributes or None
        required = set(skills)
        if language_skill and self.language:
            required.add(f"lang:{self.language}")
        self.required = frozenset(required) if required else NO_SKILLS

    @property
    def step_name(self) -> str:
        return self.queue.names[self.step_index]


class DomainState:
    """Mutable matching state of one domain (owned by exactly one writer)."""

    __slots__ = (
        "agent_deadlines",
        "agents",
        "available",
        "bot_health",
        "by_key",
        "compiled",
        "conversations",
        "customers",
        "deadlines",
        "domain",
        "identities",
        "interned",
        "policy",
        "rematch_at",
        "seq",
        "waiting",
        "windows",
    )

    def __init__(self, domain: str, policy: DomainPolicy):
        self.domain = domain
        self.policy = policy
        self.compiled = Compiled(policy)
        self.agents: dict[str, Agent] = {}
        self.customers: dict[str, Customer] = {}
        self.identities: dict[str, IdentityRecord] = {}
        """Identities linked to a customer other than their own: messages from them open
        conversations of that customer (``router.engine.identity``)."""
        self.conversations: dict[str, Conversation] = {}
        """Open conversations by id."""
        self.by_key: dict[str, Conversation] = {}
        """Open conversations by conversation key."""
        self.available: dict[tuple[int, Channel], list[AgentEntry]] = {}
        self.waiting: dict[tuple[int, Channel], WaitLine] = {}
        self.deadlines: list[DeadlineEntry] = []
        self.windows: list[DeadlineEntry] = []
        """Reply-window deadlines: (due, conversation id); stale when the conversation's
        window no longer gives that due (see ``window_due``)."""
        self.agent_deadlines: list[AgentDeadline] = []
        """Pacing and shift deadlines of agents; stale unless the agent's ``pace_due`` /
        ``shift_due`` still equals the due."""
        self.bot_health: dict[str, BotRecord] = {}
        """Bots that failed since they last answered (``router.engine.bots`` rule 6)."""
        self.interned: dict[str, str] = {}
        """One copy of strings many conversations share (endpoints)."""
        self.seq = 0
        """Source of agent versions (never observable)."""
        self.rematch_at: float | None = None
        """Set when the state was rebuilt (``restore``, ``reconfigure``): from then on, the
        next ``tick`` lets every agent with a free slot take waiting work first, as the
        rebuilt pools may admit agents the old ones did not."""

    def customer_of(self, identity: str) -> str:
        """The customer an identity belongs to (itself unless linked to another)."""
        link = self.identities.get(identity)
        return identity if link is None else link.customer_id

    # -- agents index --------------------------------------------------------------

    def reindex(self, agent: Agent, channel: Channel) -> None:
        """The agent's rank or eligibility on ``channel`` changed: replace its entries."""
        self.seq += 1
        agent.version[channel] = version = self.seq
        if not agent.has_slot(channel):
            return
        entry = (
            agent.load.get(channel, 0) / agent.capacity[channel],
            agent.idle_since.get(channel, 0.0),
            agent.agent_id,
            version,
        )
        limit = 2 * len(self.agents) + 64
        for pool in agent.pools:
            heap = self.available.get((pool.index, channel))
            if heap is None:
                heap = self.available[(pool.index, channel)] = []
            heapq.heappush(heap, entry)
            if len(heap) > limit:
                self._compact_available(heap, channel)

    def _compact_available(self, heap: list[AgentEntry], channel: Channel) -> None:
        agents = self.agents
        heap[:] = [
            entry
            for entry in heap
            if (agent := agents.get(entry[2])) is not None
            and agent.version.get(channel) == entry[3]
        ]
        heapq.heapify(heap)

    def best_agent(
        self,
        pool: Pool,
        channel: Channel,
        passed_over: dict[str, str] | None,
        conversation: Conversation | None = None,
    ) -> Agent | None:
        """Least occupancy, then longest idle, then agent id, among the pool's available
        agents on ``channel`` not passed over for this conversation (nor at its queue's
        limit)."""
        heap = self.available.get((pool.index, channel))
        if not heap:
            return None
        agents = self.agents
        skipped: list[AgentEntry] = []
        chosen: Agent | None = None
        while heap:
            entry = heap[0]
            agent = agents.get(entry[2])
            if agent is None or agent.version.get(channel) != entry[3]:
                heapq.heappop(heap)
                continue
            if (passed_over is not None and entry[2] in passed_over) or (
                conversation is not None and not agent.suits(conversation)
            ):
                skipped.append(heapq.heappop(heap))
                continue
            chosen = agent
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return chosen

    # -- waiting lines -------------------------------------------------------------

    def enqueue(self, conversation: Conversation, line: WaitLine) -> None:
        """Put the conversation on ``line``, in the order of its priority (the reply
        window's boost included), waiting since and id; off the line it was on."""
        self.leave_line(conversation)
        boost = (
            self.policy.reply_window.urgent_boost
            if conversation.window_state == _WINDOW_URGENT
            else 0
        )
        entry = (
            -conversation.priority - boost,
            conversation.waiting_since,
            conversation.conversation_id,
        )
        line.add(entry)
        conversation.wait_entry = entry
        conversation.wait_line = line

    def leave_line(self, conversation: Conversation) -> None:
        """The conversation is on no line from now on (the one way off a line: a line
        holds only the conversations waiting on it, so no entry is ever stale)."""
        entry = conversation.wait_entry
        if entry is None:
            return
        line = conversation.wait_line
        assert line is not None
        line.remove(entry)
        conversation.wait_entry = None
        conversation.wait_line = None

    def first_waiting(
        self, line: WaitLine | None, agent: Agent
    ) -> tuple[WaitEntry, Conversation] | None:
        """The first conversation of a line that ``agent`` may take (those passed over
        for it, or of a queue at its limit for it, skipped)."""
        if not line:
            return None
        agent_id = agent.agent_id
        conversations = self.conversations
        for entry in line:
            conversation = conversations[entry[2]]
            passed = conversation.passed_over
            if (passed is not None and agent_id in passed) or not agent.suits(conversation):
                continue
            return entry, conversation
        return None

    # -- deadlines -----------------------------------------------------------------

    def schedule(
        self, conversation: Conversation, due: float | None, kind: DeadlineKind | None
    ) -> None:
        """Set the conversation's deadline; the heap gets an entry only when needed."""
        conversation.deadline = due
        conversation.deadline_kind = kind if due is not None else None
        if due is None:
            return
        heap_due = conversation.heap_due
        if heap_due is None or due < heap_due:
            conversation.heap_due = due
            heapq.heappush(self.deadlines, (due, conversation.conversation_id))
            if len(self.deadlines) > 2 * len(self.conversations) + COMPACT_SLACK:
                compact(self.deadlines, self._live_deadline)

    def _live_deadline(self, entry: DeadlineEntry) -> bool:
        conversation = self.conversations.get(entry[1])
        return conversation is not None and conversation.heap_due == entry[0]

    def pop_due(self, now: float) -> list[Conversation]:
        """Conversations whose real deadline is at or before ``now``, in (deadline, waiting
        since, id) order; early entries are pushed back at their real deadline."""
        heap = self.deadlines
        conversations = self.conversations
        due: list[Conversation] = []
        while heap and heap[0][0] <= now:
            entry_due, conversation_id = heapq.heappop(heap)
            conversation = conversations.get(conversation_id)
            if conversation is None or conversation.heap_due != entry_due:
                continue
            conversation.heap_due = None
            deadline = conversation.deadline
            if deadline is None:
                continue
            if deadline > now:
                self.schedule(conversation, deadline, conversation.deadline_kind)
                continue
            due.append(conversation)
        due.sort(key=_deadline_order)
        return due

    def next_deadline(self) -> float | None:
        heap = self.deadlines
        conversations = self.conversations
        while heap:
            entry_due, conversation_id = heap[0]
            conversation = conversations.get(conversation_id)
            if conversation is None or conversation.heap_due != entry_due:
                heapq.heappop(heap)
                continue
            deadline = conversation.deadline
            if deadline is None or deadline > entry_due:
                heapq.heappop(heap)
                conversation.heap_due = None
                if deadline is not None:
                    self.schedule(conversation, deadline, conversation.deadline_kind)
                continue
            return entry_due
        return None


def window_due(conversation: Conversation, urgent_within: float | None) -> float | None:
    """When the conversation's reply window next needs the engine (urgent, then closed)."""
    ends_at = conversation.window_ends_at
    if ends_at is None or conversation.window_state == _WINDOW_CLOSED:
        return None
    if conversation.window_state == _WINDOW_OPEN and urgent_within is not None:
        return ends_at - urgent_within
    return ends_at


def _deadline_order(conversation: Conversation) -> tuple[float, float, str]:
    """Deadlines due together fire longest-waiting first: conversations held until their
    queue opens share the opening as their deadline, and an agent free at the opening
    takes the one that waited longest."""
    assert conversation.deadline is not None
    return (conversation.deadline, conversation.waiting_since, conversation.conversation_id)
