"""Bots: automated participants that own conversations the way people do, one owner at a time.

Rules (``DomainPolicy.bots``, ``QueuePolicy.bot``):

1. A new conversation of a bot-first queue is owned by the queue's bot (status ``bot``,
   ``conversation.bot_assigned``), at any hour, unless it answers a business-started
   message (its answerer applies) or the queue's ``returning = "last_agent"`` and the
   customer has an owner or last agent still in the domain (normal routing). A bot is no
   agent: it holds no slot, is never offered work, never preferred, never anyone's last
   agent (``Customer.last_agent_id`` only ever names people).
2. Each customer message to a bot-owned conversation is a turn (``bot.turn``, answer due
   by ``answer_by``): one of the bot's ``human_keywords`` hands off at once
   (``customer_asked``); more than ``max_turns`` turns without the bot reporting progress
   hand off (``no_progress``); no answer in time hands off (``bot_timeout``).
3. The bot answers on ``bots.events``; an answer is applied only while that bot owns the
   conversation (else ``command.rejected``, reason ``not_bot_owner``: a reply after a
   takeover is never sent). One exception: after its hand-off, until a person has the
   conversation (it waits or overflowed), the bot may still send replies, to relay what
   ``conversation.handed_off`` says the customer can expect. A reply goes to the customer through ``conversations.outbound``
   (``SendReply``); a hand-off routes the conversation to people with what the bot learned
   (skills, language, priority, attributes; the customer's last agent preferred); a resolve
   closes it (``contained`` when no person ever owned it); a failure hands off
   (``bot_error``).
4. A person takes a bot-owned conversation over (``conversation.takeover_requested``) at
   once, mid-turn included, when they could pick it up by hand (online, a free slot on
   its channel; else refused with why, as ``accept``); a person answering from a
   connected device (``message.human_replied``) hands it off to routing.
5. An owner hands an assigned or idle conversation back to a bot
   (``conversation.handback_requested``): the slot is freed, the bot gets a turn with the
   note. The queue's steps stay its human fallback.
6. A bot that failed ``down_after`` turns in a row (no answer in time, ``bot.failed``) is
   down for ``retry_after`` seconds (``bot.status_changed``): new conversations of its
   queues go straight to people instead of each waiting ``answer_timeout``. Then new
   conversations try it again; one more failure takes it down again, an answer brings it
   back up. Its health is saved (``SaveBot``), so a restored router decides the same.

Every hand-off says what the customer can be told (``conversation.handed_off``): the
position in the wait, the people online who could take it, when a closed queue opens, and
the channels the bot may offer instead; the shell adds the measured expected wait.
"""

from __future__ import annotations

from router.engine.assignment import assign, close, end_assignment, schedule_inactivity
from router.engine.call import Call
from router.engine.commands import commanded, complete, reject
from router.engine.effects import Emit, SaveBot, SendReply
from router.engine.errors import EngineError
from router.engine.events import conversation_event
from router.engine.lifecycle import set_status
from router.engine.policy import Returning
from router.engine.records import BotRecord, ConversationStatus, DeadlineKind, ExpectationRecord
from router.engine.routing import route
from router.engine.state import (
    Agent,
    Bot,
    Conversation,
    DomainState,
    LadderStep,
    WindowState,
)
from router.engine.waiting import line_position
from schemas import (
    BotEvent,
    BotFailed,
    BotHandoff,
    BotHandoffRequested,
    BotReplied,
    BotResolved,
    BotStatusChanged,
    BotTurn,
    ConversationBotAssigned,
    ConversationHandbackRequested,
    ConversationHandedOff,
    ConversationTakeoverRequested,
    Handoff,
    HandoffReason,
    HumanReplied,
    MessageReceived,
    Presence,
    ReplyRequested,
    Strategy,
    email_thread_root,
)
from schemas.limits import ATTRIBUTES_MAX, keyword_form

_WAITING = ConversationStatus.WAITING
_ASSIGNED = ConversationStatus.ASSIGNED
_IDLE = ConversationStatus.IDLE
_OVERFLOWED = ConversationStatus.OVERFLOWED
_BOT = ConversationStatus.BOT
_PREFERRED = LadderStep.PREFERRED
_AFTER_HOURS = LadderStep.AFTER_HOURS
_KEYWORD_TEXT_MAX = 100
"""Longer messages are never a "talk to a human" keyword (keywords are at most this)."""


def bot_first(
    call: Call,
    conversation: Conversation,
    message: MessageReceived,
    answered: ExpectationRecord | None,
) -> bool:
    """Rule 1: a new conversation goes to its queue's bot. False: route it as usual. One
    that answers a business-started message within its answer window goes to the
    message's answerer instead; after the window, as any other."""
    state = call.state
    queue = conversation.queue
    if queue.bot is None or (answered is not None and call.now <= answered.until):
        return False
    bot = state.compiled.bots.get(queue.bot)
    if bot is None or _is_down(state, bot.bot_id, call.now):
        return False
    if queue.returning is Returning.LAST_AGENT and _has_own_agent(state, conversation):
        return False
    to_bot(call, conversation, bot, "bot_first")
    _turn_or_hand_off(call, conversation, bot, message)
    return True


def _is_down(state: DomainState, bot_id: str, now: float) -> bool:
    health = state.bot_health.get(bot_id)
    return health is not None and health.down_until is not None and now < health.down_until


def _note_failure(call: Call, bot_id: str) -> None:
    """Rule 6: one more turn the bot failed; at ``down_after`` in a row, it is down."""
    state = call.state
    bot = state.compiled.bots.get(bot_id)
    if bot is None or bot.policy.down_after == 0:
        return
    health = state.bot_health.get(bot_id)
    failures = 1 if health is None else health.failures + 1
    down_until = None if health is None else health.down_until
    goes_down = failures >= bot.policy.down_after and (down_until is None or down_until <= call.now)
    if goes_down:
        down_until = call.now + bot.policy.retry_after
    record = BotRecord(bot_id=bot_id, failures=failures, down_until=down_until)
    state.bot_health[bot_id] = record
    call.effects.append(SaveBot(bot_id, record))
    if goes_down:
        call.emit(_status(call, bot_id, available=False, until=down_until, failures=failures))


def _note_answer(call: Call, bot_id: str) -> None:
    """Rule 6: the bot answered: whatever it failed before is forgotten."""
    health = call.state.bot_health.pop(bot_id, None)
    if health is None:
        return
    call.effects.append(SaveBot(bot_id, None))
    if health.down_until is not None:
        call.emit(_status(call, bot_id, available=True, until=None, failures=0))


def _status(
    call: Call, bot_id: str, *, available: bool, until: float | None, failures: int
) -> BotStatusChanged:
    return BotStatusChanged(
        id=call.new_id(),
        domain=call.state.domain,
        occurred_at=call.now,
        bot_id=bot_id,
        available=available,
        until=until,
        failures=failures,
    )


def _has_own_agent(state: DomainState, conversation: Conversation) -> bool:
    customer = state.customers.get(conversation.customer_id)
    if customer is None:
        return False
    return any(
        agent_id is not None and agent_id in state.agents
        for agent_id in (customer.owner_agent_id, customer.last_agent_id)
    )


def to_bot(
    call: Call,
    conversation: Conversation,
    bot: Bot,
    reason: str,
    from_agent_id: str | None = None,
    note: str = "",
) -> None:
    """The bot owns the conversation from now on (no person holds it)."""
    set_status(call, conversation, _BOT)
    conversation.bot = bot.bot_id
    conversation.bot_turn_id = None
    conversation.bot_turns = 0
    conversation.handoff_open = False
    conversation.owner = None
    conversation.offered_to = None
    conversation.preferred = None
    conversation.passed_over = None
    conversation.step_until = None
    call.state.leave_line(conversation)
    conversation.fell_back = False
    conversation.step_index = LadderStep.BOT
    call.conversations[conversation.conversation_id] = conversation
    call.emit(
        conversation_event(
            ConversationBotAssigned,
            call,
            conversation,
            bot_id=bot.bot_id,
            reason=reason,
            from_agent_id=from_agent_id,
            note=note,
        )
    )


def on_bot_message(call: Call, conversation: Conversation, message: MessageReceived) -> None:
    """Rule 2: a customer message to a bot-owned conversation."""
    bot_id = conversation.bot
    bot = None if bot_id is None else call.state.compiled.bots.get(bot_id)
    if bot is None:
        # Its bot left the configuration: people take it.
        hand_off(call, conversation, Handoff(reason=HandoffReason.BOT_ERROR))
        return
    _turn_or_hand_off(call, conversation, bot, message)


def _turn_or_hand_off(
    call: Call, conversation: Conversation, bot: Bot, message: MessageReceived
) -> None:
    text = message.text
    if len(text) <= _KEYWORD_TEXT_MAX and keyword_form(text) in bot.human_keywords:
        hand_off(call, conversation, Handoff(reason=HandoffReason.CUSTOMER_ASKED))
        return
    conversation.bot_turns += 1
    if conversation.bot_turns > bot.policy.max_turns:
        hand_off(call, conversation, Handoff(reason=HandoffReason.NO_PROGRESS))
        return
    start_turn(call, conversation, bot, message)


def start_turn(
    call: Call,
    conversation: Conversation,
    bot: Bot,
    message: MessageReceived | None,
    note: str = "",
) -> None:
    """The bot is to answer by ``answer_by`` (a ``bot`` deadline)."""
    answer_by = call.now + bot.policy.answer_timeout
    turn = conversation_event(
        BotTurn,
        call,
        conversation,
        bot_id=bot.bot_id,
        answer_by=answer_by,
        turn=conversation.bot_turns,
        message_id=None if message is None else message.id,
        provider_message_id=None if message is None else message.provider_message_id,
        text="" if message is None else message.text,
        attachments=() if message is None else message.attachments,
        subject=None if message is None else message.subject,
        note=note,
        language=conversation.language,
        attributes=dict(conversation.attributes or {}),
        customer_address=conversation.customer_address,
    )
    conversation.bot_turn_id = turn.id
    call.state.schedule(conversation, answer_by, DeadlineKind.BOT)
    call.conversations[conversation.conversation_id] = conversation
    call.emit(turn)


def fire_bot(call: Call, conversation: Conversation) -> None:
    """The bot did not answer its turn in time: people take over."""
    if conversation.status is not _BOT or conversation.bot is None:
        raise EngineError(f"bot deadline of {conversation.status} {conversation.conversation_id}")
    _note_failure(call, conversation.bot)
    hand_off(call, conversation, Handoff(reason=HandoffReason.BOT_TIMEOUT))


def on_bot_answer(call: Call, event: BotEvent) -> None:
    """Rule 3: an answer on ``bots.events``, applied only while that bot owns it."""
    conversation = call.state.conversations.get(event.conversation_id)
    refusal = None
    if conversation is None:
        refusal = "unknown_conversation"
    elif (conversation.status is not _BOT or conversation.bot != event.bot_id) and not (
        type(event) is BotReplied and _relays(conversation, event.bot_id)
    ):
        refusal = "not_bot_owner"
    elif (
        isinstance(event, BotReplied | BotHandoffRequested | BotResolved)
        and event.text
        and conversation.window_state is WindowState.CLOSED
    ):
        refusal = "reply_window_closed"  # the provider would refuse free text now
    if refusal is not None or conversation is None:
        reject(call, event.id, refusal or "unknown_conversation", event.conversation_id)
        return
    if conversation.status is not _BOT:
        assert type(event) is BotReplied
        _send(call, conversation, event, event.text, event)  # what to expect, until people come
        return
    if type(event) is BotFailed:
        _note_failure(call, event.bot_id)
    else:
        _note_answer(call, event.bot_id)
    match event:
        case BotReplied():
            _send(call, conversation, event, event.text, event)
            if event.progress:
                conversation.bot_turns = 0
            if (
                event.turn_id is not None
                and event.turn_id == conversation.bot_turn_id
                and conversation.deadline_kind is DeadlineKind.BOT
            ):
                schedule_inactivity(call.state, conversation)  # answered: the customer's turn
        case BotHandoffRequested():
            if event.text:
                _send(call, conversation, event, event.text, None)
            hand_off(call, conversation, event.handoff)
        case BotResolved():
            if event.text:
                _send(call, conversation, event, event.text, None)
            close(call, conversation, event.reason)
        case BotFailed():
            hand_off(call, conversation, Handoff(reason=HandoffReason.BOT_ERROR))


def _relays(conversation: Conversation, bot_id: str) -> bool:
    """Whether ``bot_id`` handed the conversation off and nobody has it yet: the bot may
    still tell the customer what to expect (rule 3)."""
    handoff = conversation.handoff
    return (
        conversation.handoff_open
        and handoff is not None
        and handoff.bot_id == bot_id
        and conversation.status in (_WAITING, _OVERFLOWED)
    )


def _send(
    call: Call,
    conversation: Conversation,
    answer: BotEvent,
    text: str,
    reply: BotReplied | None,
) -> None:
    conversation.last_activity_at = call.now
    call.conversations[conversation.conversation_id] = conversation
    call.effects.append(
        SendReply(
            ReplyRequested(
                id=call.new_id(),
                domain=call.state.domain,
                occurred_at=call.now,
                conversation_id=conversation.conversation_id,
                bot_id=answer.bot_id,
                channel=conversation.channel,
                endpoint=conversation.endpoint,
                customer_address=conversation.customer_address,
                text=text,
                attachments=() if reply is None else reply.attachments,
                quick_replies=() if reply is None else reply.quick_replies,
                in_reply_to=answer.in_reply_to,
                thread_root=email_thread_root(
                    conversation.channel, conversation.endpoint, conversation.key
                ),
            )
        )
    )


def hand_off(
    call: Call, conversation: Conversation, handoff: Handoff, to_agent: Agent | None = None
) -> None:
    """The bot's part ends: ``to_agent`` owns it at once (a takeover), else people route it
    (the customer's own agent preferred) with the hand-off's context. The
    ``conversation.handed_off`` event comes before the events routing makes."""
    state = call.state
    bot_id = conversation.bot
    if conversation.status is not _BOT or bot_id is None:
        raise EngineError(f"hand-off of {conversation.status} {conversation.conversation_id}")
    conversation.handoff = BotHandoff(bot_id=bot_id, handed_off_at=call.now, handoff=handoff)
    conversation.handoff_open = True
    state.schedule(conversation, None, None)
    _take_context(state, conversation, handoff)
    at = len(call.effects)
    n = call.n
    call.n += 1  # the hand-off event's id: made first, emitted before routing's events
    if to_agent is not None:
        conversation.waiting_since = call.now
        conversation.step_index = LadderStep.TAKEOVER
        assign(call, conversation, to_agent, Strategy.MANUAL, None)
    else:
        route(call, conversation, None)
    bot = state.compiled.bots.get(bot_id)
    event = ConversationHandedOff(
        id=call.id_at(n),
        domain=state.domain,
        occurred_at=call.now,
        conversation_id=conversation.conversation_id,
        channel=conversation.channel,
        customer_id=conversation.customer_id,
        queue=conversation.queue.name,
        bot_id=bot_id,
        reason=handoff.reason,
        handoff=handoff,
        to_agent_id=None if to_agent is None else to_agent.agent_id,
        position=_position(state, conversation),
        agents_online=_agents_online(state, conversation),
        opens_at=conversation.step_until if conversation.step_index == _AFTER_HOURS else None,
        continue_on=() if bot is None else bot.policy.continue_on,
    )
    call.effects.insert(at, Emit(event))


def _take_context(state: DomainState, conversation: Conversation, handoff: Handoff) -> None:
    if handoff.priority is not None:
        conversation.priority = handoff.priority
    if not (handoff.skills or handoff.language or handoff.attributes):
        return
    attributes = dict(conversation.attributes or {})
    for key in sorted(handoff.attributes):
        if key in attributes or len(attributes) < ATTRIBUTES_MAX:
            attributes[key] = handoff.attributes[key]
    conversation.set_context(
        tuple(sorted(set(conversation.skills) | set(handoff.skills))),
        handoff.language or conversation.language,
        attributes,
        state.policy.language_skill,
    )


def _position(state: DomainState, conversation: Conversation) -> int | None:
    """Conversations ahead of it on its waiting list (None: it is not on one)."""
    position = line_position(state, conversation)
    return None if position is None else position - 1


def _agents_online(state: DomainState, conversation: Conversation) -> int:
    """People online who could take it at its current step (or the queue's first)."""
    channel = conversation.channel
    if conversation.status is not _WAITING:
        return 0
    index = conversation.step_index
    if index == _PREFERRED and conversation.preferred is not None:
        agent = state.agents.get(conversation.preferred)
        return int(agent is not None and agent.presence is Presence.ONLINE)
    pool = conversation.queue.steps[max(index, 0)].pool
    return sum(
        1
        for agent in state.agents.values()
        if agent.presence is Presence.ONLINE
        and agent.capacity.get(channel, 0) > 0
        and pool.admits(agent.queues, agent.skill_set)
        and conversation.required <= agent.skill_set
    )


def on_takeover(call: Call, event: ConversationTakeoverRequested) -> None:
    """Rule 4: a person takes a bot-owned conversation at once."""
    state = call.state
    conversation = state.conversations.get(event.conversation_id)
    agent = state.agents.get(event.agent_id)
    refusal = None
    if conversation is None:
        refusal = "unknown_conversation"
    elif agent is None:
        refusal = "unknown_agent"
    elif conversation.status is not _BOT:
        refusal = "not_bot_owned"
    else:
        reason = agent.unavailable_reason(conversation.channel)
        refusal = None if reason == "chosen" else reason  # as a manual pick-up
    if refusal is not None or conversation is None or agent is None:
        reject(call, event.id, refusal or "unknown_conversation", event.conversation_id)
        return
    hand_off(call, conversation, Handoff(reason=HandoffReason.TAKEOVER), to_agent=agent)
    complete(call, event.id, conversation.conversation_id)


def on_handback(call: Call, event: ConversationHandbackRequested) -> None:
    """Rule 5: the owner (or an admin) hands the conversation back to a bot."""
    state = call.state
    conversation = commanded(call, event.id, event.conversation_id, event.agent_id)
    if conversation is None:
        return
    owner = conversation.owner
    bot_id = event.bot_id or conversation.queue.bot
    refusal = None
    if conversation.status not in (_ASSIGNED, _IDLE) or owner is None:
        refusal = "not_owned"
    elif bot_id is None:
        refusal = "no_bot"
    elif bot_id not in state.compiled.bots:
        refusal = "unknown_bot"
    if refusal is not None or owner is None or bot_id is None:
        reject(call, event.id, refusal or "not_owned", event.conversation_id)
        return
    bot = state.compiled.bots[bot_id]
    end_assignment(call, conversation, "handed_back")
    to_bot(call, conversation, bot, "handback", from_agent_id=owner.agent_id, note=event.note)
    start_turn(call, conversation, bot, None, event.note)
    complete(call, event.id, conversation.conversation_id)


def on_human_replied(call: Call, event: HumanReplied) -> None:
    """Rule 4: a person answered from elsewhere; a bot that owns it stops."""
    conversation = call.state.by_key.get(event.conversation_key)
    if conversation is None or conversation.status is not _BOT:
        return
    conversation.last_activity_at = call.now
    hand_off(call, conversation, Handoff(reason=HandoffReason.HUMAN_REPLIED))
