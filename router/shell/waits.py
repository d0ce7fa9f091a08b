"""Live wait estimates in the router: the expected wait on ``conversation.queued`` and on a
bot's hand-off, the estimate kept on the waiting conversation's record, the calibration
metric, and the automatic wait notice to the customer.

Rules:

1. Every ``conversation.queued`` of a conversation still waiting after the call gets
   ``expected_wait_seconds`` from ``router.planning.eta.conversation_wait`` (the engine
   gave ``position``); a hand-off (``conversation.handed_off``) gets the same estimator's.
   The measurements come from the records the engine saves (``HandlingMeter``); a queue
   line's figures (its agents' rates, free slots, holds) are read at most every
   ``LINE_SECONDS``.
2. A waiting episode is one ``waiting_since`` of one conversation. Each of its published
   estimates is a prediction: when the conversation is assigned by routing (not by a
   manual pick-up or a transfer), each prediction's error (actual wait since it was made,
   minus the estimate) is observed in ``switchboard_wait_estimate_error_seconds``
   (absolute) and ``…_signed_error_seconds``. An overflow or a close forgets them.
3. Every save of a waiting conversation carries the episode's latest estimate
   (``ConversationRecord.wait_estimate``, what the API shows); an episode the router does
   not know yet (it took the domain over since) gets one estimated then.
4. The wait notice (``DomainPolicy.wait_notice``), at most once per episode: on a
   ``conversation.queued`` whose expected wait is at least ``min_wait``, or whose queue is
   closed (step ``after_hours``: the ``closed`` text, if any), unless the provider's reply
   window is closed or a bot handed the conversation off (the bot relays). The reply
   (``notice = "wait_notice"``) is in the conversation's language, else the primary
   language, else the default; its id is made from the episode, so a router that took
   over and announces the episode again sends a reply egress already knows.

Memory is bounded: ``EPISODES_MAX`` episodes (the oldest forgotten first),
``PREDICTIONS_MAX`` predictions each, ``LINES_MAX`` cached lines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Container
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import msgspec

from router.engine import (
    ConversationRecord,
    ConversationStatus,
    DomainState,
    WaitEstimate,
    line_position,
    make_id,
)
from router.engine.state import Conversation
from router.engine.wait_notice import Clock, WaitNoticeTexts
from router.planning.eta import (
    HandlingMeter,
    LineState,
    conversation_wait,
    line_state,
    pool_rate,
)
from runtime.metrics import Metrics
from schemas import (
    ConversationAssigned,
    ConversationQueued,
    ReplyRequested,
    Strategy,
    email_thread_root,
)

EPISODES_MAX = 100_000
"""Waiting episodes remembered (predictions to measure, notices sent)."""
PREDICTIONS_MAX = 16
"""Predictions measured per episode (the first ones)."""
LINES_MAX = 10_000
LINE_SECONDS = 5.0
"""How long a queue line's figures are reused (reading them visits every agent of the
domain: about 4 ms per 1,000 agents)."""
NOTICE = "wait_notice"
"""``ReplyRequested.notice`` of the wait notice."""
AFTER_HOURS = "after_hours"

_WAITING = ConversationStatus.WAITING
_ASSIGNED = ConversationStatus.ASSIGNED
_PEOPLE_CHOSE = (Strategy.TRANSFER, Strategy.MANUAL)


@dataclass(slots=True)
class Episode:
    """One conversation's wait (one ``waiting_since``)."""

    waiting_since: float
    estimate: WaitEstimate | None = None
    predictions: list[tuple[float, float]] = field(default_factory=list)
    """(when, expected seconds) of the published estimates."""
    noticed: bool = False


class WaitEstimates:
    """The rules of the module docstring, for the domains of one router process."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.meter = HandlingMeter()
        self._episodes: dict[tuple[str, str], Episode] = {}
        self._lines: dict[tuple[str, str, int, str, frozenset[str]], tuple[float, LineState]] = {}
        self._now = 0.0

    # -- rule 1 ------------------------------------------------------------------------

    def _line(
        self, state: DomainState, conversation: Conversation, step_index: int, meter: HandlingMeter
    ) -> LineState:
        pool = conversation.queue.steps[step_index].pool
        key = (
            state.domain,
            conversation.queue.name,
            pool.index,
            conversation.channel,
            conversation.required,
        )
        cached = self._lines.get(key)
        if cached is not None and 0 <= self._now - cached[0] < LINE_SECONDS:
            return cached[1]
        if len(self._lines) >= LINES_MAX:
            self._lines.clear()
        line = line_state(state, conversation, step_index, meter)
        # Only the pool's total rate matters: one rate, not one per agent of a big pool.
        total = pool_rate(line.rates)
        line = dataclasses.replace(line, rates=() if total is None else (total,))
        self._lines[key] = (self._now, line)
        return line

    def estimate(
        self,
        state: DomainState,
        conversation_id: str,
        now: float,
        position: int | None = None,
    ) -> float | None:
        """The expected wait of a conversation waiting in ``state`` (None: unknown)."""
        conversation = state.conversations.get(conversation_id)
        if conversation is None or conversation.status is not _WAITING:
            return None
        self._now = now
        return conversation_wait(state, conversation, self.meter, now, self._line, position)

    def queued(
        self, state: DomainState, event: ConversationQueued, now: float
    ) -> ConversationQueued:
        """Rules 1 and 2: the event with its expected wait, remembered as a prediction."""
        conversation = state.conversations.get(event.conversation_id)
        if conversation is None or conversation.status is not _WAITING:
            return event
        expected = None
        if event.position is not None:
            expected = self.estimate(state, event.conversation_id, now, event.position)
        episode = self._episode(state.domain, conversation)
        episode.estimate = WaitEstimate(
            waiting_since=conversation.waiting_since,
            estimated_at=now,
            position=event.position,
            expected_wait_seconds=expected,
        )
        if expected is None:
            return event
        if len(episode.predictions) < PREDICTIONS_MAX:
            episode.predictions.append((now, expected))
        return msgspec.structs.replace(event, expected_wait_seconds=expected)

    def _episode(self, domain: str, conversation: Conversation) -> Episode:
        key = (domain, conversation.conversation_id)
        episode = self._episodes.get(key)
        if episode is None or episode.waiting_since != conversation.waiting_since:
            if episode is None and len(self._episodes) >= EPISODES_MAX:
                del self._episodes[next(iter(self._episodes))]
            episode = self._episodes[key] = Episode(conversation.waiting_since)
        return episode

    # -- rule 2 ------------------------------------------------------------------------

    def assigned(self, event: ConversationAssigned) -> None:
        """The wait is over: each prediction of the episode is measured."""
        episode = self._episodes.pop((event.domain, event.conversation_id), None)
        if episode is None or event.strategy in _PEOPLE_CHOSE:
            return
        metrics = self._metrics
        bound = metrics.for_domain(event.domain)
        absolute = bound.histogram(metrics.wait_estimate_error, event.queue)
        signed = bound.histogram(metrics.wait_estimate_signed_error, event.queue)
        for at, expected in episode.predictions:
            error = (event.occurred_at - at) - expected
            absolute.observe(abs(error))
            signed.observe(error)

    def forget(self, domain: str, conversation_id: str) -> None:
        """Overflowed, closed, or a bot's again: its predictions are not measured."""
        self._episodes.pop((domain, conversation_id), None)

    def release(self, domains: Container[str]) -> None:
        """Domains whose partition left this process: their slots are no longer measured
        here (``HandlingMeter.release``)."""
        self.meter.release(domains)

    # -- rule 3 ------------------------------------------------------------------------

    def active(self, state: DomainState, conversation_id: str, now: float) -> None:
        """A conversation's activity saved alone at ``now`` (its owner unchanged): measured
        as its record would be, so that a slot a takeover found held starts at the first
        save after it, whichever kind of save that is."""
        if self.meter.holds(state.domain, conversation_id):
            return  # by its owner: an activity alone is saved only while the owner is unchanged
        conversation = state.conversations[conversation_id]
        owner = conversation.owner
        self.meter.observe_owner(
            state.domain,
            conversation_id,
            None if owner is None or conversation.status is not _ASSIGNED else owner.agent_id,
            conversation.channel,
            conversation.queue.name,
            now,
        )

    def saved(
        self, state: DomainState, record: ConversationRecord, now: float
    ) -> ConversationRecord:
        """A record the engine saved at ``now``: measured, and given its estimate."""
        self.meter.observe(state.domain, record, now)
        if record.status is not _WAITING:
            return record
        conversation = state.conversations.get(record.conversation_id)
        if conversation is None or conversation.waiting_since != record.waiting_since:
            return record
        episode = self._episode(state.domain, conversation)
        if episode.estimate is None:
            position = line_position(state, conversation)
            episode.estimate = WaitEstimate(
                waiting_since=record.waiting_since,
                estimated_at=now,
                position=position,
                expected_wait_seconds=self.estimate(state, record.conversation_id, now, position)
                if position is not None
                else None,
            )
        return msgspec.structs.replace(record, wait_estimate=episode.estimate)

    # -- rule 4 ------------------------------------------------------------------------

    def notice(
        self, state: DomainState, event: ConversationQueued, now: float
    ) -> ReplyRequested | None:
        """The wait notice for a (filled) ``conversation.queued``, if one is due."""
        policy = state.policy.wait_notice
        if not policy.enabled or event.reply_window_closed:
            return None
        conversation = state.conversations.get(event.conversation_id)
        if conversation is None or conversation.status is not _WAITING or conversation.handoff_open:
            return None
        episode = self._episode(state.domain, conversation)
        texts = policy.texts_for(conversation.language)
        if episode.noticed or texts is None:
            return None
        text = notice_text(texts, conversation, event, policy.min_wait, now)
        if text is None:
            return None
        episode.noticed = True
        return ReplyRequested(
            id=make_id(
                f"wait-notice:{state.domain}:{conversation.conversation_id}"
                f":{conversation.waiting_since!r}"
            ),
            domain=state.domain,
            occurred_at=now,
            conversation_id=conversation.conversation_id,
            channel=conversation.channel,
            endpoint=conversation.endpoint,
            customer_address=conversation.customer_address,
            text=text,
            notice=NOTICE,
            thread_root=email_thread_root(
                conversation.channel, conversation.endpoint, conversation.key
            ),
        )


def notice_text(
    texts: WaitNoticeTexts,
    conversation: Conversation,
    event: ConversationQueued,
    min_wait: float,
    now: float,
) -> str | None:
    """The text to send for ``event`` (None: nothing to say)."""
    if event.step == AFTER_HOURS:
        opens = event.wait_until
        if not texts.closed or opens is None:
            return None
        calendar = conversation.queue.calendar
        zone = ZoneInfo("UTC" if calendar is None else calendar.calendar.time_zone)
        return texts.closed.format(
            minutes=minutes(opens - now), opens_at=opens_at(opens, now, zone, texts.clock)
        )
    expected = event.expected_wait_seconds
    if expected is None or expected < min_wait:
        return None
    return texts.waiting.format(minutes=minutes(expected), opens_at="")


def minutes(seconds: float) -> int:
    """Whole minutes, rounded up, at least 1."""
    return max(1, math.ceil(seconds / 60))


def opens_at(at: float, now: float, zone: ZoneInfo, clock: Clock) -> str:
    """The local time of ``at`` in ``zone`` (``9:00``, or ``9:00 AM`` on a 12-hour clock),
    after its local date (``2026-05-04 9:00``) when that is not today's."""
    local = dt.datetime.fromtimestamp(at, zone)
    if clock is Clock.H12:
        hour = local.hour % 12 or 12
        time = f"{hour}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
    else:
        time = f"{local.hour}:{local.minute:02d}"
    if local.date() == dt.datetime.fromtimestamp(now, zone).date():
        return time
    return f"{local.date().isoformat()} {time}"
