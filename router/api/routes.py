"""The router's HTTP API under ``/v1/domains/{domain}/``, and the platform's under
``/v1/tokens`` and ``/v1/audit``.

Actions that change routing state are published to ``agents.events`` (keyed by domain)
and applied by the router that owns the domain, the single writer. Registration and
presence answer 202 once the broker has the event. Commands (accept, close, transfer)
wait up to ``api.command_timeout`` for the router's verdict on ``conversations.routing``:
202 ``completed``, 409 with the router's reason, or 202 ``pending`` when none came in
time. Replies go to ``conversations.outbound`` for the adapters' egress. Reads come from
PostgreSQL; ``stream`` serves the routing events live (Server-Sent Events).

Access: an ``admin`` token acts on its whole domain; an ``agent`` token on its own agent
(presence, figures), the conversations it owns, was offered or handled before (read;
including the messages' text, which the agent needs to answer), and its own commands and
replies. Registration, customer ownership, other agents, dead letters, the domain's
tokens and its audit log are admin only. A ``platform`` token is an admin of every domain
and alone manages platform tokens (``/v1/tokens``) and reads the whole audit log
(``/v1/audit``).

Every administrative action writes its ``runtime.audit`` entry in its own transaction:
an action whose entry cannot be written is not taken (503).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import msgspec
import structlog
from aiohttp import web

from router.api import stats
from router.api.auth import Authenticator, Principal, forbidden
from router.api.config import ApiConfig
from router.api.feed import FeedEvent, RoutingFeed, Subscriber
from router.api.models import (
    Accepted,
    AcceptIn,
    AgentIn,
    AgentView,
    CloseIn,
    CommandStatus,
    ConversationView,
    ErrorBody,
    OwnerIn,
    PresenceIn,
    QueuesView,
    TransferIn,
)
from router.api.outbound_models import DomainOutbound
from router.api.visibility import may_read
from router.engine import (
    AgentRecord,
    ConversationRecord,
    ConversationStatus,
    DomainPolicy,
    WaitEstimate,
)
from runtime import audit, dead_letters
from runtime.appkeys import AGENT_PUBLISHER, DB_POOL, PRODUCER, TOPIC_KEYS
from runtime.db import DATABASE_ERRORS
from runtime.http_errors import ERROR_LOG_LIMIT, RETRY_AFTER_SECONDS, json_error, read_limited
from runtime.kafka import BrokerUnavailable
from runtime.logging import fingerprint
from runtime.timeouts import given_up_after
from schemas import (
    AgentRegistered,
    CommandCompleted,
    CommandRejected,
    ConversationAcceptRequested,
    ConversationCloseRequested,
    ConversationTransferRequested,
    CustomerOwnerSet,
    PresenceChanged,
)
from schemas.agents import AgentCommand, AgentEvent
from schemas.limits import (
    AGENT_ID_MAX,
    CONVERSATION_ID_MAX,
    CUSTOMER_ID_MAX,
    decode_json_text,
    is_identifier,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AGENT_ID = re.compile(rf"[A-Za-z0-9_.@:-]{{1,{AGENT_ID_MAX}}}")
TIMELINE_LIMIT = 100
TIMELINE_LIMIT_MAX = 1000

_agent_record = msgspec.json.Decoder(AgentRecord)
_conversation_record = msgspec.json.Decoder(ConversationRecord)


@dataclass(slots=True)
class ApiContext:
    """The API's own resources (one per application)."""

    config: ApiConfig
    policies: Mapping[str, DomainPolicy]
    """Routing policy by domain: the domains the API serves."""
    auth: Authenticator
    feed: RoutingFeed
    outbound: Mapping[str, DomainOutbound] = field(default_factory=dict)
    """Per domain: its senders, templates and customer-id rule (business-started messages)."""


API = web.AppKey("api", ApiContext)


# -- plumbing -----------------------------------------------------------------------


def respond(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def _http_error(cls: type[web.HTTPException], reason: str) -> web.HTTPException:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if cls.status_code == 503 else None
    return cls(
        text=msgspec.json.encode({"error": reason}).decode(),
        content_type="application/json",
        headers=headers,
    )


def bad_request(reason: str) -> web.HTTPException:
    return _http_error(web.HTTPBadRequest, reason)


def not_found(reason: str) -> web.HTTPException:
    return _http_error(web.HTTPNotFound, reason)


async def read_json(request: web.Request, type_: type[T]) -> T:
    limit = request.app[API].config.max_body_bytes
    too_large = web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=request.content_length or limit + 1,
        text=msgspec.json.encode({"error": f"body larger than {limit} bytes"}).decode(),
        content_type="application/json",
    )
    body = await read_limited(request, limit)
    if body is None:
        raise too_large
    if not body.strip():
        body = b"{}"
    try:
        # A lone surrogate escape is read as U+FFFD (see schemas.limits).
        return decode_json_text(lambda text: msgspec.json.decode(text, type=type_), body)
    except msgspec.ValidationError as error:
        raise bad_request(f"invalid body: {error}") from None
    except msgspec.DecodeError:
        raise bad_request("body is not valid JSON") from None
    except RecursionError:
        raise bad_request("body is nested too deeply") from None


def agent_id_of(request: web.Request, name: str = "agent_id") -> str:
    agent_id = request.match_info[name]
    if not AGENT_ID.fullmatch(agent_id):
        raise bad_request("agent id must be 1 to 128 letters, digits or . _ @ : -")
    return agent_id


def path_value(request: web.Request, name: str, limit: int) -> str:
    """A path id no event or query would choke on: 1 to ``limit`` characters, none of
    them a control character or a lone surrogate."""
    value = request.match_info[name]
    if not value or not is_identifier(value, limit):
        raise bad_request(f"{name} must be 1 to {limit} characters, none a control character")
    return value


async def enter(request: web.Request) -> tuple[str, Principal]:
    """Authenticate (401/403) for the path's domain, then check the domain exists (404)."""
    domain = request.match_info["domain"]
    principal = await request.app[API].auth.principal(request, request.app[DB_POOL], domain)
    if domain not in request.app[API].policies:
        raise not_found(f"unknown domain {domain!r}")
    return domain, principal


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise forbidden("needs an admin token")


def require_self_or_admin(principal: Principal, agent_id: str) -> None:
    if not (principal.is_admin or principal.is_agent(agent_id)):
        raise forbidden("an agent token acts only as its own agent")


def new_event_fields(domain: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "domain": domain, "occurred_at": time.time()}


async def publish(request: web.Request, event: AgentEvent) -> None:
    try:
        await request.app[AGENT_PUBLISHER].publish([event])
    except BrokerUnavailable:
        raise _http_error(web.HTTPServiceUnavailable, "broker unavailable, retry later") from None


async def publish_accepted(request: web.Request, event: AgentEvent) -> web.Response:
    await publish(request, event)
    return respond(Accepted(event_id=event.id), status=202)


async def command_verdict(
    request: web.Request,
    event: AgentCommand,
    acting: str | None,
    record: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> CommandCompleted | CommandRejected | None:
    """Publish a command and wait for the router's verdict (None: none came within the
    command timeout). ``record`` writes what goes with the command (the audit log) in one
    transaction with its publication: a command the broker refused leaves no trace."""
    api = request.app[API]
    verdict = api.feed.expect(event.id, acting)
    try:
        if record is None:
            await publish(request, event)
        else:
            async with request.app[DB_POOL].acquire() as conn, conn.transaction():
                await record(conn)
                await publish(request, event)
        try:
            return await asyncio.wait_for(asyncio.shield(verdict), api.config.command_timeout)
        except TimeoutError:
            return None
    finally:
        api.feed.forget(event.id)


async def run_command(
    request: web.Request,
    event: AgentCommand,
    acting: str | None,
    record: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> web.Response:
    """Publish a command (``command_verdict``), then answer with the router's verdict:
    202 completed, 409 with the router's reason, or 202 pending."""
    result = await command_verdict(request, event, acting, record)
    if result is None:
        return respond(Accepted(event_id=event.id, status=CommandStatus.PENDING), status=202)
    if isinstance(result, CommandRejected):
        return respond(ErrorBody(error=result.reason, event_id=event.id), status=409)
    return respond(Accepted(event_id=event.id, status=CommandStatus.COMPLETED), status=202)


def guarded(handler: Handler, *, streams: bool = False) -> Handler:
    """A database failure answers 503 (the client may retry), never a bare 500; so does a
    request that takes longer than ``api.request_timeout``, unless it ``streams`` (the
    event stream: it lasts as long as its client listens)."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            if streams:
                return await handler(request)
            return await given_up_after(handler(request), request.app[API].config.request_timeout)
        except DATABASE_ERRORS as error:
            # The route's pattern, not the path: paths hold customer and conversation ids.
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else None
            # Rate limited as the request errors are: clients set how often this happens.
            request.app[ERROR_LOG_LIMIT].write(
                log.warning,
                "api_database_error",
                ("api_database_error", route),
                error=type(error).__name__,
                route=route,
            )
            return json_error(503, "database unavailable, retry later")

    wrapper.__name__ = handler.__name__
    return wrapper


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors of the API's paths (405, 413, unmatched routes) carry ``{"error": ...}``."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if (
            error.status < 400
            or error.content_type == "application/json"
            or not request.path.startswith(("/v1/domains/", "/v1/tokens", "/v1/audit"))
            or "/webchat/" in request.path
        ):
            raise
        reason = error.reason if error.status != 413 else "body too large"
        response = json_error(error.status, reason)
        for name in ("Allow", "WWW-Authenticate"):
            if name in error.headers:
                response.headers[name] = error.headers[name]
        return response


# -- agents -------------------------------------------------------------------------


async def put_agent(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    agent_id = agent_id_of(request)
    require_admin(principal)
    body = await read_json(request, AgentIn)
    event = AgentRegistered(
        **new_event_fields(domain),
        agent_id=agent_id,
        name=body.name,
        skills=body.skills,
        queues=body.queues,
        capacity=dict(body.capacity),
        schedule=body.schedule,
    )
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        known = await conn.fetchval(
            "SELECT 1 FROM agents WHERE domain = $1 AND agent_id = $2", domain, agent_id
        )
        await audit.record_action(
            conn,
            actor=principal.actor,
            action="agent.update" if known else "agent.register",
            domain=domain,
            target=f"agent {agent_id}",
            detail={
                "event_id": event.id,
                "skills": body.skills,
                "queues": body.queues,
                "capacity": body.capacity,
            },
        )
        await publish(request, event)
    return respond(Accepted(event_id=event.id), status=202)


async def post_presence(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    agent_id = agent_id_of(request)
    require_self_or_admin(principal, agent_id)
    body = await read_json(request, PresenceIn)
    event = PresenceChanged(**new_event_fields(domain), agent_id=agent_id, status=body.status)
    return await publish_accepted(request, event)


async def get_agent(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    agent_id = agent_id_of(request)
    require_self_or_admin(principal, agent_id)
    async with request.app[DB_POOL].acquire() as conn:
        raw = await conn.fetchval(
            "SELECT record::text FROM agents WHERE domain = $1 AND agent_id = $2",
            domain,
            agent_id,
        )
        if raw is None:
            return json_error(404, f"unknown agent {agent_id!r}")
        record = _agent_record.decode(raw)
        figures = await stats.agent_stats(conn, domain, record, time.time())
    return respond(
        AgentView(
            agent_id=record.agent_id,
            name=record.name,
            skills=record.skills,
            queues=record.queues,
            capacity=record.capacity,
            schedule=record.schedule,
            presence=record.presence,
            load=record.load,
            stats=figures,
        )
    )


async def put_owner(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    customer_id = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    require_admin(principal)
    body = await read_json(request, OwnerIn)
    event = CustomerOwnerSet(
        **new_event_fields(domain), customer_id=customer_id, agent_id=body.agent_id
    )
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        known = await conn.fetchval(
            "SELECT 1 FROM agents WHERE domain = $1 AND agent_id = $2", domain, body.agent_id
        )
        if not known:
            return json_error(404, f"unknown agent {body.agent_id!r}")
        await audit.record_action(
            conn,
            actor=principal.actor,
            action="customer.owner.set",
            domain=domain,
            target=customer_target(customer_id),
            detail={"event_id": event.id, "agent_id": body.agent_id},
        )
        await publish(request, event)
    return respond(Accepted(event_id=event.id), status=202)


async def delete_owner(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    customer_id = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    require_admin(principal)
    event = CustomerOwnerSet(**new_event_fields(domain), customer_id=customer_id, agent_id=None)
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        await audit.record_action(
            conn,
            actor=principal.actor,
            action="customer.owner.clear",
            domain=domain,
            target=customer_target(customer_id),
            detail={"event_id": event.id},
        )
        await publish(request, event)
    return respond(Accepted(event_id=event.id), status=202)


def customer_target(customer_id: str) -> str:
    """A customer as the audit log names it: its id may be a phone number or an email
    address, so a digest, the one the logs use."""
    return f"customer {fingerprint(customer_id)}"


# -- conversations ------------------------------------------------------------------


async def load_conversation(
    conn: asyncpg.Connection, domain: str, conversation_id: str
) -> ConversationRecord:
    raw = await conn.fetchval(
        "SELECT switchboard_conversation_record(c)::text FROM conversations c"
        " WHERE domain = $1 AND conversation_id = $2",
        domain,
        conversation_id,
    )
    if raw is None:
        raise not_found(f"unknown conversation {conversation_id!r}")
    return _conversation_record.decode(raw)


async def get_conversation(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    try:
        limit = int(request.query.get("limit", TIMELINE_LIMIT))
    except ValueError:
        raise bad_request("limit must be an integer") from None
    if not 1 <= limit <= TIMELINE_LIMIT_MAX:
        raise bad_request(f"limit must be between 1 and {TIMELINE_LIMIT_MAX}")
    async with request.app[DB_POOL].acquire() as conn:
        record = await load_conversation(conn, domain, conversation_id)
        if not await may_read(conn, principal, domain, record.conversation_id):
            raise forbidden("the conversation is not one of this agent's")
        entries = await stats.timeline(conn, domain, conversation_id, limit)
    now = time.time()
    estimate = waiting_estimate(record)
    return respond(
        ConversationView(
            conversation_id=record.conversation_id,
            status=str(record.status),
            channel=record.channel,
            customer_id=record.customer_id,
            queue=record.queue,
            step=record.step,
            owner_agent_id=record.owner_agent_id,
            bot_id=record.bot_id,
            handoff=record.handoff,
            preferred_agent_id=record.preferred_agent_id,
            offered_to=record.offered_to,
            opened_at=record.opened_at,
            waiting_since=record.waiting_since,
            first_response_at=record.first_response_at,
            last_customer_message_at=record.last_customer_message_at,
            last_agent_reply_at=record.last_agent_reply_at,
            closed_at=record.closed_at,
            close_reason=record.close_reason,
            message_count=record.message_count,
            priority=record.priority,
            skills=record.skills,
            language=record.language,
            attributes=record.attributes,
            snoozed_until=record.snoozed_until,
            reply_window_ends_at=record.reply_window_ends_at,
            reply_window_closed=reply_window_closed(record, now),
            position=None if estimate is None else estimate.position,
            expected_wait_seconds=remaining_wait(estimate, now),
            wait_estimated_at=None if estimate is None else estimate.estimated_at,
            timeline=entries,
        )
    )


def waiting_estimate(record: ConversationRecord) -> WaitEstimate | None:
    """The router's estimate of a waiting conversation's current wait (None: not waiting,
    or an estimate of an earlier wait)."""
    estimate = record.wait_estimate
    if record.status is not ConversationStatus.WAITING or estimate is None:
        return None
    return estimate if estimate.waiting_since == record.waiting_since else None


def remaining_wait(estimate: WaitEstimate | None, now: float) -> float | None:
    """The estimated seconds left: the estimate less the time since it was made."""
    if estimate is None or estimate.expected_wait_seconds is None:
        return None
    elapsed = max(0.0, now - estimate.estimated_at)
    return round(max(0.0, estimate.expected_wait_seconds - elapsed), 3)


def acting_agent(principal: Principal, named: str | None) -> str | None:
    """The agent a command acts as: the token's own agent, or None for an admin."""
    if principal.is_admin:
        return None
    if named is not None and named != principal.agent_id:
        raise forbidden("an agent token acts only as its own agent")
    return principal.agent_id


async def post_accept(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, AcceptIn)
    agent_id = acting_agent(principal, body.agent_id) or body.agent_id
    if agent_id is None:
        raise bad_request("agent_id is required with an admin token")
    event = ConversationAcceptRequested(
        **new_event_fields(domain), conversation_id=conversation_id, agent_id=agent_id
    )
    return await run_command(request, event, agent_id)


async def post_close(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, CloseIn)
    acting = acting_agent(principal, None)
    event = ConversationCloseRequested(
        **new_event_fields(domain),
        conversation_id=conversation_id,
        agent_id=acting,
        reason=body.reason,
    )
    return await run_command(request, event, acting)


async def post_transfer(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, TransferIn)
    if (body.to_agent_id is None) == (body.to_queue is None):
        raise bad_request("give exactly one of to_agent_id and to_queue")
    acting = acting_agent(principal, None)
    event = ConversationTransferRequested(
        **new_event_fields(domain),
        conversation_id=conversation_id,
        agent_id=acting,
        to_agent_id=body.to_agent_id,
        to_queue=body.to_queue,
    )
    return await run_command(request, event, acting)


def reply_window_closed(record: ConversationRecord, now: float) -> bool:
    """Whether the provider's free-form reply window of the conversation has closed (the
    router says so once its deadline fired; the time says so before)."""
    ends_at = record.reply_window_ends_at
    return record.reply_window_closed or (ends_at is not None and now >= ends_at)


# -- queues and stream --------------------------------------------------------------


async def get_queues(request: web.Request) -> web.Response:
    domain, _ = await enter(request)
    policy = request.app[API].policies[domain]
    now = time.time()
    async with request.app[DB_POOL].acquire() as conn:
        views = await stats.queue_views(conn, domain, policy, now)
    return respond(QueuesView(domain=domain, at=now, queues=views))


def _sse(event: FeedEvent) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.event_id.encode(),
        event.type.encode(),
        event.data.replace(b"\n", b" "),
    )


async def get_stream(request: web.Request) -> web.StreamResponse:
    domain, principal = await enter(request)
    wanted = request.query.get("agent_id")
    if wanted is not None and not AGENT_ID.fullmatch(wanted):
        raise bad_request("agent_id must be 1 to 128 letters, digits or . _ @ : -")
    if not principal.is_admin:
        if wanted is not None and wanted != principal.agent_id:
            raise forbidden("an agent token streams only its own agent's events")
        wanted = principal.agent_id
    last_event_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    api = request.app[API]
    feed = api.feed

    def shown(event: FeedEvent) -> bool:
        return wanted is None or wanted in event.agents

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    subscriber: Subscriber = feed.subscribe(domain)
    try:
        await feed.catch_up(request.app[TOPIC_KEYS])
        backlog, found = feed.recent(domain, last_event_id)
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        if not found:
            await response.write(
                b": last-event-id not in the buffer (%d most recent events kept); "
                b"replaying the whole buffer\n\n" % api.config.stream_buffer
            )
        last_seq = 0
        for event in backlog:
            last_seq = event.seq
            if shown(event):
                await response.write(_sse(event))
        while True:
            try:
                item = await asyncio.wait_for(subscriber.queue.get(), api.config.heartbeat_seconds)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if item is None:
                break
            if item.seq > last_seq and shown(item):  # else: already sent from the buffer
                await response.write(_sse(item))
            if subscriber.cut_off and subscriber.queue.empty():
                break  # too slow: the client reconnects with Last-Event-ID
        return response
    except ConnectionResetError:
        return response  # the client went away
    finally:
        feed.unsubscribe(subscriber)


# -- dead letters -------------------------------------------------------------------


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _letter_id(request: web.Request) -> int:
    raw = request.match_info["letter_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise bad_request("letter_id must be a whole number")
    return int(raw)


async def get_dead_letters(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 100, 1, dead_letters.PAGE_MAX)
    async with request.app[DB_POOL].acquire() as conn:
        page = await dead_letters.list_dead_letters(conn, domain=domain, after=after, limit=limit)
    return respond(page)


async def get_dead_letter(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    letter_id = _letter_id(request)
    async with request.app[DB_POOL].acquire() as conn:
        letter = await dead_letters.get_dead_letter(conn, letter_id, domain=domain)
    if letter is None:
        raise not_found(f"no dead letter {letter_id} in this domain")
    return respond(letter)


async def post_redrive(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    letter_id = _letter_id(request)
    try:
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            letter = await dead_letters.redrive(
                conn, request.app[PRODUCER], letter_id, domain=domain
            )
            if letter is not None:
                await audit.record_redrive(conn, actor=principal.actor, letter=letter)
    except BrokerUnavailable:
        raise _http_error(web.HTTPServiceUnavailable, "broker unavailable, retry later") from None
    except dead_letters.NotRedrivable:
        return respond(
            ErrorBody(
                error="a provider's request set aside by an adapter: only the provider"
                " can send it again"
            ),
            status=409,
        )
    if letter is None:
        raise not_found(f"no dead letter {letter_id} in this domain")
    log.info("dead_letter_redriven", domain=domain, letter_id=letter_id, topic=letter.topic)
    return respond(letter, status=202)


def agent_routes() -> list[web.RouteDef]:
    """Agents, customers, conversations, queues, the stream and dead letters (the tokens'
    and the audit log's are ``router.api.tokens``'; ``router.api.setup`` serves both)."""
    base = "/v1/domains/{domain}"
    conversation = base + "/conversations/{conversation_id}"
    return [
        web.put(base + "/agents/{agent_id}", guarded(put_agent)),
        web.get(base + "/agents/{agent_id}", guarded(get_agent)),
        web.post(base + "/agents/{agent_id}/presence", guarded(post_presence)),
        web.put(base + "/customers/{customer_id}/owner", guarded(put_owner)),
        web.delete(base + "/customers/{customer_id}/owner", guarded(delete_owner)),
        web.get(conversation, guarded(get_conversation)),
        web.post(conversation + "/accept", guarded(post_accept)),
        web.post(conversation + "/close", guarded(post_close)),
        web.post(conversation + "/transfer", guarded(post_transfer)),
        web.get(base + "/queues", guarded(get_queues)),
        web.get(base + "/stream", guarded(get_stream, streams=True), allow_head=False),
        web.get(base + "/dead-letters", guarded(get_dead_letters)),
        web.get(base + "/dead-letters/{letter_id}", guarded(get_dead_letter)),
        web.post(base + "/dead-letters/{letter_id}/redrive", guarded(post_redrive)),
    ]
