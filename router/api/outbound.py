"""Business-started messages: notifications, reminders and campaigns the customer can answer.

- ``POST /v1/domains/{d}/outbound``: one message (an admin, or an agent as itself):
  202 ``{outbound_id, conversation_id, status}``, or the refusal (4xx ``{"error"}``).
- ``POST /v1/domains/{d}/outbound/batch`` (admin): up to 10,000 messages as JSON
  (``{"campaign", "defaults", "messages"}``), CSV (``text/csv``, a header row) or NDJSON
  (``application/x-ndjson``, one message a line); 202 with one result per message (a
  refused message does not fail the others; ``router.api.outbound_routes`` reads them).
  Every batch belongs to a campaign (``router.api.campaigns``).

A message is accepted here and sent later, at the domain's pace, by the adapters' sender
(from the ``outbound_messages`` rows); ``router.api.campaigns`` follows it.

Rules, in the order they are checked (a refused message is not sent, and counted in
``switchboard_outbound_requests_total``):

1. Idempotency: a ``client_key`` already used in the domain answers the first send's
   record (200, ``duplicate: true``) and sends nothing; twice in one batch: 400.
2. The message: ``from`` is an endpoint of the domain on the channel (or left out when
   the domain has one), ``to`` an address of the channel (E.164 for sms and whatsapp, or a
   WhatsApp business-scoped user id, an email address in lower case, a web chat session
   id or ``user:<id>``); ``text`` within the channel's limit, or a ``template`` of the
   domain's registry for the channel (and language: 400 ``unknown_template``) filled with
   its parameters (400 with the reason); ``subject`` on email only (400).
3. The answerer: an agent token sends as itself (403 when it names another agent);
   ``sender`` mode needs the sending agent, ``queue`` mode a queue of the domain, and a
   named agent must be known (400).
4. Consent: an address whose consent is ``opt_out`` (``consents``) is refused, 409
   ``opted_out``, and a marketing template also when its marketing consent is; on
   WhatsApp the latest consent of any WhatsApp address of the customer decides
   (``runtime.outbound.OPTED_OUT``).
5. Windows, from the latest conversation of the customer on that endpoint: WhatsApp
   takes free-form text while the customer's 24 h window is open, else a template
   (409 ``template_required``); the window is the user's whichever of their WhatsApp
   addresses they wrote from (their number, their business-scoped user id: one account,
   as for consent). Messenger and Instagram take free-form text within
   24 h of the customer's last message; up to 7 days from a human agent, sent with
   Meta's ``HUMAN_AGENT`` tag; else 409 ``outside_messaging_window``. Telegram and web
   chat reach only a customer who wrote before (409 ``unknown_recipient``). SMS and email
   take free-form text at any time.

Steps of a send (``send_all``: one message, or a batch):

1. Check rules 1 to 5, reading the database in one query per rule for the whole batch.
2. In one transaction: the ``outbound_messages`` rows (kind ``notification``, status
   ``accepted``: not to be sent yet), each with its ``messages`` row (the customer's
   history), and the campaign's row.
3. Publish ``notification.requested`` (``conversations.outbound``) and
   ``customer.notified`` (``agents.events``: the router expects the reply) in chunks.
4. In one transaction: published rows become ``queued`` (the sender's); rows whose
   events the broker refused are deleted (503 when none went out: nothing happened).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec
from aiohttp import web

from router.api.auth import Principal
from router.api.outbound_models import BatchItem, DomainOutbound, SendIn, TemplateIn
from router.api.routes import reply_window_closed
from router.engine import ConversationRecord
from runtime import audit
from runtime.appkeys import AGENT_PUBLISHER, DB_POOL, METRICS, OUTBOUND_PUBLISHER
from runtime.kafka import BrokerUnavailable
from runtime.outbound import OPTED_OUT, TemplateRefused, fill_template, is_marketing
from schemas import (
    Answerer,
    AnswerMode,
    Channel,
    CustomerNotified,
    MessageTag,
    NotificationRequested,
    TemplateUse,
)
from schemas.identity import is_whatsapp_user_id, normalize_identity
from schemas.limits import (
    ADDRESS_MAX,
    UnusableValue,
    checked_identifier,
)

PUBLISH_CHUNK = 1000
"""Messages whose events go to the broker together (two records each)."""
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
"""Meta's ``HUMAN_AGENT`` tag: a person's answer up to 7 days after the customer wrote."""
USER_PREFIX = "user:"

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")
_WINDOWED = frozenset({Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM})
_KNOWN_ONLY = frozenset({Channel.TELEGRAM, Channel.WEBCHAT})
_conversation = msgspec.json.Decoder(ConversationRecord)


# -- refusals and checks without I/O ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message is not sent: the status and reason a single send answers."""

    status: int
    reason: str
    outcome: str = "refused"
    """``switchboard_outbound_requests_total``'s outcome: ``refused`` or ``opted_out``."""


@dataclass(frozen=True, slots=True)
class Sender:
    """What every message of one request shares."""

    domain: str
    principal: Principal
    outbound: DomainOutbound
    queues: Collection[str]
    now: float


@dataclass(slots=True)
class Draft:
    """A message that passed the checks made so far."""

    index: int
    send: SendIn
    endpoint: str
    address: str | None
    """None: a web chat ``user:`` whose session the database names."""
    customer_id: str
    template: TemplateUse | None
    text: str
    agent_id: str | None
    """The sending agent (a human), if any."""
    answer: Answerer
    tag: MessageTag | None = None

    @property
    def channel(self) -> Channel:
        return self.send.channel


def channel_address(channel: Channel, value: str) -> str:
    """``value`` spelled as the channel's adapter spells a customer's address;
    ``UnusableValue`` says why it is none."""
    value = value.strip()
    if channel is Channel.WHATSAPP and is_whatsapp_user_id(value):
        return value  # a user known only by a business-scoped user id (``schemas.identity``)
    if channel in (Channel.SMS, Channel.WHATSAPP):
        try:
            return normalize_identity(f"phone:{value}").partition(":")[2]
        except UnusableValue:
            raise UnusableValue(
                f"a {channel} address is an E.164 number: + and 7 to 15 digits"
                + (", or a business-scoped user id" if channel is Channel.WHATSAPP else "")
            ) from None
    if channel is Channel.EMAIL:
        try:
            return normalize_identity(f"email:{value}").partition(":")[2]
        except UnusableValue:
            raise UnusableValue("an email address is local@domain") from None
    if channel is Channel.WEBCHAT:
        if not _SESSION_ID.fullmatch(value):
            raise UnusableValue(
                "a web chat address is a session id: 8 to 128 letters, digits, - or _"
            )
        return value
    if not value or len(value) > ADDRESS_MAX or any(c.isspace() for c in value):
        raise UnusableValue(f"a {channel} address is 1 to {ADDRESS_MAX} characters, no spaces")
    return checked_identifier("to", value, ADDRESS_MAX)


def _endpoint(send: SendIn, outbound: DomainOutbound) -> str | Refusal:
    ours = outbound.endpoints.get(send.channel, frozenset())
    if send.from_ is None:
        if len(ours) == 1:
            return next(iter(ours))
        return Refusal(
            400, f"from is required: the domain has {len(ours)} {send.channel} endpoints"
        )
    key = send.from_.strip()
    if send.channel is Channel.EMAIL:
        key = key.lower()
    elif key.startswith("+"):
        key = "+" + "".join(c for c in key[1:] if c not in " -()")
    if key not in ours:
        return Refusal(400, f"from is not a {send.channel} endpoint of this domain")
    return key


def _content(
    send: SendIn, outbound: DomainOutbound, endpoint: str
) -> tuple[TemplateUse | None, str] | Refusal:
    """Rule 2's text or template."""
    channel = send.channel
    if send.subject is not None and channel is not Channel.EMAIL:
        return Refusal(400, "subject is for email only")
    if send.template is None:
        if not send.text.strip() and not send.attachments:
            return Refusal(400, "a message needs text, a template or attachments")
        longest = outbound.longest_text(channel, endpoint)
        if len(send.text) > longest:
            return Refusal(400, f"text is longer than {longest} characters")
        return None, send.text
    if send.text:
        return Refusal(400, "give text or a template, not both")
    if send.attachments:
        return Refusal(400, "a template takes no attachments")
    return filled(outbound, channel, send.template)


def filled(
    outbound: DomainOutbound, channel: Channel, wanted: TemplateIn
) -> tuple[TemplateUse, str] | Refusal:
    """The registered template ``wanted`` names for ``channel``, filled in, and its text."""
    template = outbound.config.template(wanted.name, wanted.language, channel)
    if template is None:
        return Refusal(400, "unknown_template")
    try:
        return fill_template(template, wanted.parameters)
    except TemplateRefused as error:
        return Refusal(400, str(error))


def _answerer(send: SendIn, sender: Sender) -> tuple[str | None, Answerer] | Refusal:
    """Rule 3, but for whether a named agent is known."""
    wanted = send.answer
    principal = sender.principal
    if principal.is_admin:
        agent_id = wanted.agent_id
        mode = wanted.mode or (AnswerMode.LAST_OWNER if agent_id is None else AnswerMode.SENDER)
    else:
        if wanted.agent_id not in (None, principal.agent_id):
            return Refusal(403, "an agent token sends as its own agent")
        agent_id = principal.agent_id
        mode = wanted.mode or AnswerMode.SENDER
    if mode is AnswerMode.SENDER and agent_id is None:
        return Refusal(400, "answer.agent_id is required for mode sender with an admin token")
    if mode is AnswerMode.QUEUE:
        if wanted.queue is None:
            return Refusal(400, "answer.queue is required for mode queue")
        if wanted.queue not in sender.queues:
            return Refusal(400, f"unknown queue {wanted.queue!r}")
    elif wanted.queue is not None:
        return Refusal(400, "answer.queue is for mode queue")
    seconds = wanted.expires_in_seconds or sender.outbound.config.answer_hours * 3600
    return agent_id, Answerer(
        mode=mode,
        agent_id=agent_id if mode is AnswerMode.SENDER else None,
        queue=wanted.queue,
        until=sender.now + seconds,
    )


def draft(index: int, send: SendIn, sender: Sender) -> Draft | Refusal:
    """Rules 2 and 3 (what needs no database)."""
    endpoint = _endpoint(send, sender.outbound)
    if isinstance(endpoint, Refusal):
        return endpoint
    address: str | None
    if send.channel is Channel.WEBCHAT and send.to.startswith(USER_PREFIX):
        user = send.to[len(USER_PREFIX) :]
        if not user.strip() or any(c.isspace() for c in user) or len(user) > ADDRESS_MAX:
            return Refusal(400, f"a web chat user id is 1 to {ADDRESS_MAX} characters, no spaces")
        address, customer_id = None, send.to
    else:
        try:
            address = channel_address(send.channel, send.to)
        except UnusableValue as error:
            return Refusal(400, f"to: {error}")
        customer_id = sender.outbound.customer_id(send.channel.value, address)
    content = _content(send, sender.outbound, endpoint)
    if isinstance(content, Refusal):
        return content
    answerer = _answerer(send, sender)
    if isinstance(answerer, Refusal):
        return answerer
    return Draft(
        index=index,
        send=send,
        endpoint=endpoint,
        address=address,
        customer_id=customer_id,
        template=content[0],
        text=content[1],
        agent_id=answerer[0],
        answer=answerer[1],
    )


def window_refusal(item: Draft, record: ConversationRecord | None, now: float) -> Refusal | None:
    """Rule 5 (``item`` gets its tag and, for a web chat user, its session)."""
    channel = item.channel
    open_window = (
        record is not None
        and record.reply_window_ends_at is not None
        and not reply_window_closed(record, now)
    )
    if channel is Channel.WHATSAPP:
        if item.template is None and not open_window:
            return Refusal(409, "template_required")
    elif channel in (Channel.MESSENGER, Channel.INSTAGRAM):
        if open_window:
            return None
        if (
            record is not None
            and item.agent_id is not None
            and now - record.last_customer_message_at < HUMAN_AGENT_WINDOW
        ):
            item.tag = MessageTag.HUMAN_AGENT
            return None
        return Refusal(409, "outside_messaging_window")
    elif channel in _KNOWN_ONLY:
        if record is None:
            return Refusal(409, "unknown_recipient")
        item.address = record.customer_address
    return None


def _needs_conversation(item: Draft) -> bool:
    if item.channel is Channel.WHATSAPP:
        return item.template is None
    return item.channel in _WINDOWED or item.channel in _KNOWN_ONLY


# -- the database's part of the rules -----------------------------------------------

_EXISTING = """
SELECT client_key, outbound_id, conversation_id, status FROM outbound_messages
WHERE domain = $1 AND client_key = ANY($2::text[])
"""
_AGENTS = "SELECT agent_id FROM agents WHERE domain = $1 AND agent_id = ANY($2::text[])"
# The latest conversation of each (identity, channel, endpoint, address): conversations
# carry the customer's profile id, which is the identity itself or the profile it is
# linked to. A null address: any (a web chat user's sessions, a WhatsApp user's number
# and business-scoped user id).
_LATEST = """
SELECT t.i, c.record FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[])
    AS t(i, identity, channel, endpoint, address)
CROSS JOIN LATERAL (
    SELECT switchboard_conversation_record(c)::text AS record
    FROM conversations c
    WHERE c.domain = $1
      AND c.customer_id IN (t.identity, coalesce((SELECT ci.customer_id
          FROM customer_identities ci WHERE ci.domain = $1 AND ci.identity = t.identity),
          t.identity))
      AND c.channel = t.channel AND c.record->>'endpoint' = t.endpoint
      AND (t.address IS NULL OR c.record->>'customer_address' = t.address)
    ORDER BY c.opened_at DESC LIMIT 1
) c
"""


async def _existing(
    conn: asyncpg.Connection, domain: str, keys: Collection[str]
) -> dict[str, asyncpg.Record]:
    if not keys:
        return {}
    rows = await conn.fetch(_EXISTING, domain, list(keys))
    return {row["client_key"]: row for row in rows}


async def _check_database(
    conn: asyncpg.Connection, sender: Sender, drafts: list[Draft], refused: dict[int, Refusal]
) -> list[Draft]:
    """Rules 3 (known agents), 4 and 5 for every draft; the drafts that pass."""
    domain = sender.domain
    named = {d.agent_id for d in drafts if d.agent_id is not None}
    known = (
        {r["agent_id"] for r in await conn.fetch(_AGENTS, domain, list(named))} if named else set()
    )
    wanted = [d for d in drafts if _needs_conversation(d)]
    records: dict[int, ConversationRecord] = {}
    if wanted:
        rows = await conn.fetch(
            _LATEST,
            domain,
            [d.index for d in wanted],
            [d.customer_id for d in wanted],
            [d.channel.value for d in wanted],
            [d.endpoint for d in wanted],
            [None if d.channel is Channel.WHATSAPP else d.address for d in wanted],
        )
        records = {row["i"]: _conversation.decode(row["record"]) for row in rows}
    for item in drafts:
        if item.address is None and item.index in records:
            item.address = records[item.index].customer_address
    addressed = [d for d in drafts if d.address is not None]
    opted_out: set[int] = set()
    if addressed:
        rows = await conn.fetch(
            OPTED_OUT,
            domain,
            [d.index for d in addressed],
            [d.channel.value for d in addressed],
            [d.address for d in addressed],
            [d.customer_id for d in addressed],
            [is_marketing(d.template) for d in addressed],
        )
        opted_out = {row["i"] for row in rows}
    passed = []
    for item in drafts:
        refusal: Refusal | None = None
        if item.agent_id is not None and item.agent_id not in known:
            refusal = Refusal(400, f"unknown agent {item.agent_id!r}")
        elif item.index in opted_out:
            refusal = Refusal(409, "opted_out", "opted_out")
        else:
            refusal = window_refusal(item, records.get(item.index), sender.now)
        if refusal is None:
            passed.append(item)
        else:
            refused[item.index] = refusal
    return passed


# -- writing and publishing ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Campaign:
    campaign_id: str
    name: str


_CAMPAIGN = """
INSERT INTO campaigns (domain, campaign_id, name, status, created_by)
VALUES ($1, $2, $3, 'running', $4) ON CONFLICT (domain, campaign_id) DO NOTHING
RETURNING campaign_id
"""
_DROP_CAMPAIGN = """
DELETE FROM campaigns WHERE domain = $1 AND campaign_id = $2 AND NOT EXISTS (
    SELECT 1 FROM outbound_messages o WHERE o.domain = $1 AND o.campaign_id = $2)
"""
# FOR SHARE: a cancel (which updates the row first) waits for this batch, then cancels
# its rows too; a batch that comes after the cancel sees it.
_CAMPAIGN_STATUS = "SELECT status FROM campaigns WHERE domain = $1 AND campaign_id = $2 FOR SHARE"
_INSERT = """
WITH r AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::bytea[], $10::text[], $11::text[])
        AS r(outbound_id, conversation_id, channel, agent_id, customer_id, endpoint,
             client_key, request, text, attachments)
), inserted AS (
    INSERT INTO outbound_messages (domain, outbound_id, conversation_id, channel, agent_id,
        status, kind, customer_id, endpoint, campaign_id, client_key, request, send_after)
    SELECT $1, outbound_id, conversation_id, channel, agent_id, 'accepted', 'notification',
        customer_id, endpoint, $12, client_key, request, $13 FROM r
    ON CONFLICT (domain, client_key) WHERE client_key IS NOT NULL DO NOTHING
    RETURNING outbound_id
), message AS (
    INSERT INTO messages (domain, message_id, conversation_id, direction, channel, agent_id,
                          text, attachments, status, occurred_at)
    SELECT $1, r.outbound_id, r.conversation_id, 'outbound', r.channel, r.agent_id, r.text,
        r.attachments::jsonb, 'queued', $13
    FROM r JOIN inserted USING (outbound_id)
)
SELECT outbound_id FROM inserted
"""
_QUEUED = """
UPDATE outbound_messages SET status = 'queued', updated_at = now()
WHERE domain = $1 AND outbound_id = ANY($2::text[]) AND status = 'accepted'
"""
_DELETE = """
WITH gone AS (
    DELETE FROM outbound_messages WHERE domain = $1 AND outbound_id = ANY($2::text[])
)
DELETE FROM messages WHERE domain = $1 AND message_id = ANY($2::text[])
"""


@dataclass(frozen=True, slots=True)
class Ready:
    """A message that passed every rule, with its ids and events."""

    index: int
    notification: NotificationRequested
    notified: CustomerNotified

    @property
    def outbound_id(self) -> str:
        return self.notification.id

    @property
    def conversation_id(self) -> str:
        return self.notification.conversation_id

    @property
    def client_key(self) -> str:
        return self.notification.client_key or ""

    @classmethod
    def of(cls, item: Draft, sender: Sender, campaign: Campaign | None) -> Ready:
        send = item.send
        address = item.address or ""  # _check_database named it, or refused the message
        campaign_id = None if campaign is None else campaign.campaign_id
        notification = NotificationRequested(
            id=str(uuid.uuid4()),
            domain=sender.domain,
            occurred_at=sender.now,
            conversation_id=str(uuid.uuid4()),
            customer_id=item.customer_id,
            channel=item.channel,
            endpoint=item.endpoint,
            customer_address=address,
            text=item.text,
            attachments=tuple(a.attachment() for a in send.attachments),
            subject=send.subject,
            template=item.template,
            message_tag=item.tag,
            agent_id=item.agent_id,
            campaign_id=campaign_id,
            client_key=send.client_key,
            answer=item.answer,
            attributes=dict(send.attributes),
        )
        notified = CustomerNotified(
            id=str(uuid.uuid4()),
            domain=sender.domain,
            occurred_at=sender.now,
            outbound_id=notification.id,
            conversation_id=notification.conversation_id,
            customer_id=item.customer_id,
            channel=item.channel,
            endpoint=item.endpoint,
            customer_address=address,
            answer=item.answer,
            attributes=notification.attributes,
            campaign_id=campaign_id,
        )
        return cls(item.index, notification, notified)


async def _insert(
    conn: asyncpg.Connection, sender: Sender, ready: list[Ready], campaign: Campaign | None
) -> set[str]:
    """Step 2's rows; the outbound ids written (a concurrent send may have taken a
    client key meanwhile)."""
    events = [item.notification for item in ready]
    rows = await conn.fetch(
        _INSERT,
        sender.domain,
        [e.id for e in events],
        [e.conversation_id for e in events],
        [e.channel.value for e in events],
        [e.agent_id for e in events],
        [e.customer_id for e in events],
        [e.endpoint for e in events],
        [e.client_key for e in events],
        [msgspec.json.encode(e) for e in events],
        [e.text for e in events],
        [msgspec.json.encode(e.attachments).decode() for e in events],
        None if campaign is None else campaign.campaign_id,
        datetime.fromtimestamp(sender.now, UTC),
    )
    return {row["outbound_id"] for row in rows}


async def _publish(
    request: web.Request, pairs: Sequence[tuple[NotificationRequested, CustomerNotified]]
) -> int:
    """Step 3: how many of ``pairs`` (from the first) the broker took."""
    done = 0
    if not pairs:
        return 0
    for start in range(0, len(pairs), PUBLISH_CHUNK):
        chunk = pairs[start : start + PUBLISH_CHUNK]
        results = await asyncio.gather(
            request.app[OUTBOUND_PUBLISHER].publish([n for n, _ in chunk]),
            request.app[AGENT_PUBLISHER].publish([c for _, c in chunk]),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BrokerUnavailable):
                return done
            if isinstance(result, BaseException):
                raise result
        done += len(chunk)
    return done


def _refused_item(index: int, refusal: Refusal) -> BatchItem:
    return BatchItem(index=index, error=refusal.reason, http_status=refusal.status)


def _duplicate_item(index: int, row: asyncpg.Record) -> BatchItem:
    return BatchItem(
        index=index,
        outbound_id=row["outbound_id"],
        conversation_id=row["conversation_id"],
        status=row["status"],
        duplicate=True,
    )


def _count(request: web.Request, domain: str, channel: str, outcome: str, n: int = 1) -> None:
    metrics = request.app[METRICS]
    metrics.for_domain(domain).counter(metrics.outbound_requests, channel, outcome).inc(n)


async def send_all(
    request: web.Request,
    sender: Sender,
    items: Sequence[SendIn | Refusal],
    campaign: Campaign | None = None,
) -> list[BatchItem]:
    """Steps 1 to 4 for ``items`` (a refusal: one that could not be read); one result
    each, in order. 503 when the broker took none of them."""
    domain = sender.domain
    refused: dict[int, Refusal] = {}
    keys: dict[str, int] = {}
    for index, item in enumerate(items):
        if isinstance(item, Refusal):
            refused[index] = item
        elif item.client_key is not None:
            if item.client_key in keys:
                refused[index] = Refusal(400, "client_key repeated in this batch")
            else:
                keys[item.client_key] = index
    pool: asyncpg.Pool = request.app[DB_POOL]
    async with pool.acquire() as conn:
        # Step 1.
        results = {
            keys[key]: _duplicate_item(keys[key], row)
            for key, row in (await _existing(conn, domain, keys)).items()
        }
        drafts: list[Draft] = []
        for index, item in enumerate(items):
            if index in results or index in refused or isinstance(item, Refusal):
                continue
            outcome = draft(index, item, sender)
            if isinstance(outcome, Refusal):
                refused[index] = outcome
            else:
                drafts.append(outcome)
        passed = await _check_database(conn, sender, drafts, refused)
        # Step 2.
        ready, created = await _write(conn, sender, passed, campaign, results)
        # Step 3.
        published = await _publish(request, [(d.notification, d.notified) for d in ready])
        # Step 4.
        sent, unsent = ready[:published], ready[published:]
        await _settle(conn, sender, sent, unsent, campaign, created)
    if unsent and not sent:
        raise _unavailable()
    for done in sent:
        results[done.index] = BatchItem(
            index=done.index,
            outbound_id=done.outbound_id,
            conversation_id=done.conversation_id,
            status="queued",
        )
    for index, refusal in refused.items():
        results[index] = _refused_item(index, refusal)
    for lost in unsent:
        results[lost.index] = _refused_item(
            lost.index, Refusal(503, "broker unavailable, retry later")
        )
    _count_all(request, domain, items, results, refused)
    return [results[index] for index in range(len(items))]


async def _write(
    conn: asyncpg.Connection,
    sender: Sender,
    drafts: list[Draft],
    campaign: Campaign | None,
    results: dict[int, BatchItem],
) -> tuple[list[Ready], bool]:
    """Step 2; the messages written (one whose client key a concurrent request took
    meanwhile gets that request's record in ``results``), and whether the campaign is new."""
    ready = [Ready.of(item, sender, campaign) for item in drafts]
    created = False
    async with conn.transaction():
        if campaign is not None:
            created = await _open_campaign(conn, sender, campaign)
        written = await _insert(conn, sender, ready, campaign) if ready else set()
    lost = [item for item in ready if item.outbound_id not in written]
    if lost:
        rows = await _existing(conn, sender.domain, [item.client_key for item in lost])
        for item in lost:
            row = rows.get(item.client_key)
            results[item.index] = (
                _duplicate_item(item.index, row)
                if row is not None
                else _refused_item(item.index, Refusal(409, "client_key in use: retry"))
            )
    return [item for item in ready if item.outbound_id in written], created


async def _settle(
    conn: asyncpg.Connection,
    sender: Sender,
    sent: list[Ready],
    unsent: list[Ready],
    campaign: Campaign | None,
    created: bool,
) -> None:
    """Step 4 (a campaign this request created for messages none of which went out is
    deleted with them)."""
    domain = sender.domain
    async with conn.transaction():
        if sent:
            await conn.execute(_QUEUED, domain, [item.outbound_id for item in sent])
        if unsent:
            await conn.execute(_DELETE, domain, [item.outbound_id for item in unsent])
        if campaign is not None and created and unsent and not sent:
            await conn.execute(_DROP_CAMPAIGN, domain, campaign.campaign_id)
        if campaign is not None and sent:
            await audit.record_action(
                conn,
                actor=sender.principal.actor,
                action="campaign.send",
                domain=domain,
                target=f"campaign {campaign.campaign_id}",
                detail={"campaign_id": campaign.campaign_id, "messages": len(sent)},
            )


def _count_all(
    request: web.Request,
    domain: str,
    items: Sequence[SendIn | Refusal],
    results: dict[int, BatchItem],
    refused: dict[int, Refusal],
) -> None:
    counts: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        channel = "unknown" if isinstance(item, Refusal) else item.channel.value
        result = results[index]
        if index in refused:
            outcome = refused[index].outcome
        elif result.duplicate:
            outcome = "duplicate"
        elif result.error is not None:
            outcome = "refused"  # the broker took none of its chunk
        else:
            outcome = "accepted"
        counts[channel, outcome] = counts.get((channel, outcome), 0) + 1
    for (channel, outcome), n in counts.items():
        _count(request, domain, channel, outcome, n)


def _unavailable() -> web.HTTPException:
    return web.HTTPServiceUnavailable(
        text=msgspec.json.encode({"error": "broker unavailable, retry later"}).decode(),
        content_type="application/json",
        headers={"Retry-After": "1"},
    )


async def _open_campaign(conn: asyncpg.Connection, sender: Sender, campaign: Campaign) -> bool:
    """The campaign's row, locked against a cancel; whether it is new (409 when the
    campaign was cancelled)."""
    created = await conn.fetchval(
        _CAMPAIGN, sender.domain, campaign.campaign_id, campaign.name, sender.principal.actor
    )
    status = await conn.fetchval(_CAMPAIGN_STATUS, sender.domain, campaign.campaign_id)
    if status == "cancelled":
        raise web.HTTPConflict(
            text=msgspec.json.encode({"error": "campaign_cancelled"}).decode(),
            content_type="application/json",
        )
    return created is not None
