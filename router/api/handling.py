"""An agent working a conversation: reply, decline an offer, snooze, set its context.

``POST …/conversations/{id}/reply`` sends the customer a reply on the conversation's
channel: free-form text and attachments, or a ``template`` of the domain's registry for
the channel (202 at once; 409 ``conversation_closed``, ``not_owner``, and ``bot_owned``
while a bot owns it: a person takes it over first, ``router.api.bots``). Once the
provider's 24 h window has closed (``reply_window_closed``): on WhatsApp only a template
goes out (409 ``reply_window_closed`` without one); on Messenger and Instagram a reply
within 7 days of the customer's last message goes out with Meta's ``HUMAN_AGENT`` tag,
later ones are refused (409 ``reply_window_closed``).

Commands answered with the router's verdict (``run_command``: 202 ``completed``, 409 with
the router's reason, 202 ``pending``):

- ``POST …/conversations/{id}/decline`` ``{"reason"?}``: the agent an offer was made to
  turns it down; it moves on at once and is not a missed offer.
- ``POST …/conversations/{id}/snooze`` ``{"until"}``: its owner puts it aside until
  ``until`` (seconds since the epoch, at most 90 days ahead); the slot is free meanwhile.
- ``PATCH …/conversations/{id}`` ``{"priority"?, "skills"?, "language"?, "attributes"?}``:
  its owner or an admin sets its routing context; routing uses it at once.

An agent token acts as its own agent (the engine refuses what it does not own); an admin
token acts as an admin, or names the declining agent.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog
from aiohttp import web

from router.api.auth import forbidden
from router.api.bots import bot_routes
from router.api.models import (
    ConversationUpdateIn,
    DeclineIn,
    ErrorBody,
    ReplyAccepted,
    SnoozeIn,
)
from router.api.outbound import HUMAN_AGENT_WINDOW, Refusal, filled
from router.api.outbound_models import DomainOutbound, ReplyIn
from router.api.routes import (
    API,
    acting_agent,
    bad_request,
    enter,
    guarded,
    load_conversation,
    new_event_fields,
    path_value,
    read_json,
    reply_window_closed,
    respond,
    run_command,
)
from router.engine import ConversationRecord, ConversationStatus
from runtime.appkeys import AGENT_PUBLISHER, DB_POOL, OUTBOUND_PUBLISHER
from runtime.http_errors import json_error
from runtime.kafka import BrokerUnavailable
from schemas import (
    AgentReplied,
    Channel,
    ConversationDeclineRequested,
    ConversationSnoozeRequested,
    ConversationUpdateRequested,
    MessageTag,
    ReplyRequested,
    TemplateUse,
    email_thread_root,
)
from schemas.limits import CONVERSATION_ID_MAX

log = structlog.get_logger(__name__)


async def post_decline(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, DeclineIn)
    agent_id = acting_agent(principal, body.agent_id) or body.agent_id
    if agent_id is None:
        raise bad_request("agent_id is required with an admin token")
    event = ConversationDeclineRequested(
        **new_event_fields(domain),
        conversation_id=conversation_id,
        agent_id=agent_id,
        reason=body.reason,
    )
    return await run_command(request, event, agent_id)


async def post_snooze(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, SnoozeIn)
    acting = acting_agent(principal, None)
    event = ConversationSnoozeRequested(
        **new_event_fields(domain),
        conversation_id=conversation_id,
        agent_id=acting,
        until=body.until,
    )
    return await run_command(request, event, acting)


async def patch_conversation(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, ConversationUpdateIn)
    if body.is_empty():
        raise bad_request("give at least one of priority, skills, language and attributes")
    acting = acting_agent(principal, None)
    event = ConversationUpdateRequested(
        **new_event_fields(domain),
        conversation_id=conversation_id,
        agent_id=acting,
        priority=body.priority,
        skills=body.skills,
        language=body.language,
        attributes=body.attributes,
    )
    return await run_command(request, event, acting)


_INSERT_REPLY = """
WITH message AS (
    INSERT INTO messages (domain, message_id, conversation_id, direction, channel, agent_id,
                          text, attachments, status, occurred_at)
    VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7::jsonb, 'queued', $8)
)
INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel, agent_id, status)
VALUES ($1, $2, $3, $4, $5, 'queued')
"""


async def post_reply(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, ReplyIn)
    if body.template is not None and (body.text or body.attachments or body.location):
        raise bad_request("give text, attachments and a location, or a template, not both")
    if (
        not body.text.strip()
        and not body.attachments
        and body.location is None
        and body.template is None
    ):
        raise bad_request("a reply needs text, attachments, a location or a template")
    if body.agent_id is not None and not principal.is_admin:
        raise forbidden("only an admin token names the replying agent")
    attachments = tuple(a.attachment() for a in body.attachments)
    pool: asyncpg.Pool = request.app[DB_POOL]
    async with pool.acquire() as conn:
        record = await load_conversation(conn, domain, conversation_id)
        if record.status is ConversationStatus.CLOSED:
            return respond(ErrorBody(error="conversation_closed"), status=409)
        if record.status is ConversationStatus.BOT:
            # A person takes it over first (``takeover``): else the bot's next answer
            # would go out beside theirs.
            return respond(ErrorBody(error="bot_owned"), status=409)
        template: TemplateUse | None = None
        text = body.text
        outbound = request.app[API].outbound.get(domain) or DomainOutbound()
        if body.template is not None:
            found = filled(outbound, record.channel, body.template)
            if isinstance(found, Refusal):
                raise bad_request(found.reason)
            template, text = found
        elif len(text) > (longest := outbound.longest_text(record.channel, record.endpoint)):
            # The provider would refuse it: the agent shortens it now, not after a failure.
            raise bad_request(f"text is longer than {longest} characters")
        tag = _window_tag(record, template, time.time())
        if isinstance(tag, ErrorBody):
            # The provider would refuse the message: say so now rather than fail at the
            # provider later.
            return respond(tag, status=409)
        if principal.is_admin:
            agent_id = body.agent_id or record.owner_agent_id
            if agent_id is None:
                raise bad_request("agent_id is required: the conversation has no owner")
        else:
            agent_id = principal.agent_id
            if agent_id is None or record.owner_agent_id != agent_id:
                return respond(ErrorBody(error="not_owner"), status=409)
        in_reply_to = await conn.fetchval(
            "SELECT provider_message_id FROM messages WHERE domain = $1 AND conversation_id = $2"
            " AND direction = 'inbound' ORDER BY occurred_at DESC LIMIT 1",
            domain,
            conversation_id,
        )
        now = time.time()
        reply = ReplyRequested(
            id=str(uuid.uuid4()),
            domain=domain,
            occurred_at=now,
            conversation_id=conversation_id,
            agent_id=agent_id,
            channel=record.channel,
            endpoint=record.endpoint,
            customer_address=record.customer_address,
            text=text,
            attachments=attachments,
            subject=body.subject,
            in_reply_to=in_reply_to,
            thread_root=email_thread_root(record.channel, record.endpoint, record.conversation_key),
            template=template,
            message_tag=tag,
            location=body.location,
        )
        await conn.execute(
            _INSERT_REPLY,
            domain,
            reply.id,
            conversation_id,
            str(record.channel),
            agent_id,
            text,
            msgspec.json.encode(attachments).decode(),
            datetime.fromtimestamp(now, UTC),
        )
        try:
            await request.app[OUTBOUND_PUBLISHER].publish([reply])
        except BrokerUnavailable:
            await conn.execute(
                "UPDATE outbound_messages SET status = 'failed', error = 'broker unavailable',"
                " updated_at = now() WHERE domain = $1 AND outbound_id = $2",
                domain,
                reply.id,
            )
            return json_error(503, "broker unavailable, retry later")
    replied = AgentReplied(
        **new_event_fields(domain),
        conversation_id=conversation_id,
        agent_id=agent_id,
        outbound_id=reply.id,
        channel=record.channel,
    )
    try:
        await request.app[AGENT_PUBLISHER].publish([replied])
    except BrokerUnavailable:
        # The reply is on its way; only the first-response figure misses it.
        log.warning("agent_replied_not_published", conversation_id=conversation_id)
    return respond(ReplyAccepted(reply_id=reply.id), status=202)


def _window_tag(
    record: ConversationRecord, template: TemplateUse | None, now: float
) -> MessageTag | ErrorBody | None:
    """The Meta tag a reply needs, or the refusal: the provider's rules once its 24 h
    window has closed (WhatsApp: a template; Messenger, Instagram: a person's reply
    within 7 days, tagged)."""
    if not reply_window_closed(record, now):
        return None
    if record.channel is Channel.WHATSAPP and template is not None:
        return None
    if (
        record.channel in (Channel.MESSENGER, Channel.INSTAGRAM)
        and now - record.last_customer_message_at < HUMAN_AGENT_WINDOW
    ):
        return MessageTag.HUMAN_AGENT
    return ErrorBody(error="reply_window_closed")


def handling_routes(base: str) -> list[web.RouteDef]:
    conversation = base + "/conversations/{conversation_id}"
    return [
        web.post(conversation + "/reply", guarded(post_reply)),
        web.post(conversation + "/decline", guarded(post_decline)),
        web.post(conversation + "/snooze", guarded(post_snooze)),
        web.patch(conversation, guarded(patch_conversation)),
        *bot_routes(base),
    ]
