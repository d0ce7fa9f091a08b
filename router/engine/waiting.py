"""Where a waiting conversation stands: its place in the line it waits in, and who serves
that line.

Rules:

1. A waiting conversation is on one line: held for its preferred agent, the agent's
   ``held`` line for its channel; at a queue step, the line ``waiting[(pool, channel)]``
   of that step's pool, which every step using the same pool (in any queue) shares. A
   conversation held outside business hours is on no line.
2. Its position is 1 plus the conversations on the same line ordered before it (higher
   priority, the reply-window boost included, then longer waiting, then conversation id):
   1 is next. A preferred hold's position counts only the conversations held for that
   agent on that channel: the agent takes those first, before any queue.
3. Who serves a line: the agents online with capacity on the channel whom the step's pool
   admits and who have every skill the conversation requires; for a preferred hold, the
   preferred agent alone.

A line holds only the conversations waiting on it (``router.engine.lines.WaitLine``), so
its length is a count kept as it changes, and a position is a rank that costs
``O(log n + n / WAIT_LINE_LOAD)`` on a line of ``n`` (a bisection over its buckets, one
within a bucket, and a sum of the lengths of at most half of them): about 1 µs for a
newcomer behind 100,000 and 3 µs in the middle of them. Positions are read when
``conversation.queued`` is emitted, never on the fast path.
"""

from __future__ import annotations

from router.engine.lines import WaitLine
from router.engine.records import ConversationStatus
from router.engine.state import Agent, Conversation, DomainState, LadderStep
from schemas import Presence

_WAITING = ConversationStatus.WAITING
_PREFERRED = LadderStep.PREFERRED
_ONLINE = Presence.ONLINE


def waiting_line(state: DomainState, conversation: Conversation) -> WaitLine | None:
    """The line the conversation waits on (rule 1; None: on none)."""
    if conversation.status is not _WAITING or conversation.wait_entry is None:
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
    line = waiting_line(state, conversation)
    entry = conversation.wait_entry
    if line is None or entry is None or conversation.wait_line is not line:
        return None
    return line.rank(entry) + 1


def line_length(state: DomainState, line: WaitLine | None) -> int:
    """Conversations waiting on a line."""
    return 0 if line is None else len(line)


def step_line(state: DomainState, conversation: Conversation, step_index: int) -> WaitLine | None:
    """The line of the queue step ``step_index`` of the conversation's queue, on its
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
