"""Where a waiting conversation stands: its place in the line it waits in, and who serves
that line.

Rules:

1. A waiting conversation is on one line: held for its preferred agent, the agent's
   ``held`` heap for its channel; at a queue step, the heap ``waiting[(pool, channel)]``
   of that step's pool, which every step using the same pool (in any queue) shares. A
   conversation held outside business hours is on no line.
2. Its position is 1 plus the conversations on the same line ordered before it (higher
   priority, the reply-window boost included, then longer waiting, then conversation id):
   1 is next. A preferred hold's position counts only the conversations held for that
   agent on that channel: the agent takes those first, before any queue.
3. Who serves a line: the agents online with capacity on the channel whom the step's pool
   admits and who have every skill the conversation requires; for a preferred hold, the
   preferred agent alone.

Reading a position costs one pass over the line's heap (stale entries included), made
when ``conversation.queued`` is emitted, never on the fast path.
"""

from __future__ import annotations

from router.engine.records import ConversationStatus
from router.engine.state import Agent, Conversation, DomainState, LadderStep, WaitEntry
from schemas import Presence

_WAITING = ConversationStatus.WAITING
_PREFERRED = LadderStep.PREFERRED
_ONLINE = Presence.ONLINE


def waiting_line(state: DomainState, conversation: Conversation) -> list[WaitEntry] | None:
    """The heap the conversation waits on (rule 1; None: on none)."""
    if conversation.status is not _WAITING or conversation.wait_token is None:
        return None
    channel = conversation.channel
    if conversation.step_index == _PREFERRED:
        agent = state.agents.get(conversation.preferred or "")
        return None if agent is None else agent.held.get(channel)
    if not 0 <= conversation.step_index < len(conversation.queue.steps):
        return None
    pool = conversation.queue.steps[conversation.step_index].pool
    return state.waiting.get((pool.index, channel))


def line_position(state: DomainState, conversation: Conversation) -> int | None:
    """Rule 2: the conversation's position on its line, 1 being next (None: on no line)."""
    heap = waiting_line(state, conversation)
    if not heap:
        return None
    token = conversation.wait_token
    mine: WaitEntry | None = None
    for entry in reversed(heap):  # a new arrival sits near the end of the heap's list
        if entry[3] == token:
            mine = entry
            break
    if mine is None:
        return None
    conversations = state.conversations
    ahead = 0
    for entry in heap:
        if entry < mine:
            other = conversations.get(entry[2])
            if other is not None and other.wait_token == entry[3]:
                ahead += 1
    return ahead + 1


def line_length(state: DomainState, heap: list[WaitEntry] | None) -> int:
    """Conversations waiting on a line (its live entries)."""
    if not heap:
        return 0
    conversations = state.conversations
    return sum(
        1
        for entry in heap
        if (other := conversations.get(entry[2])) is not None and other.wait_token == entry[3]
    )


def step_line(
    state: DomainState, conversation: Conversation, step_index: int
) -> list[WaitEntry] | None:
    """The heap of the queue step ``step_index`` of the conversation's queue, on its
    channel: the line it joins at that step."""
    pool = conversation.queue.steps[step_index].pool
    return state.waiting.get((pool.index, conversation.channel))


def serving_agents(state: DomainState, conversation: Conversation, step_index: int) -> list[Agent]:
    """Rule 3 for the queue step ``step_index`` of the conversation's queue (one pass over
    the domain's agents)."""
    channel = conversation.channel
    pool = conversation.queue.steps[step_index].pool
    required = conversation.required
    return [
        agent
        for agent in state.agents.values()
        if agent.presence is _ONLINE
        and agent.capacity.get(channel, 0) > 0
        and pool in agent.pools
        and required <= agent.skill_set
    ]
