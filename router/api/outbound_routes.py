"""The routes of business-started messages (``router.api.outbound`` holds their rules):
``POST /v1/domains/{d}/outbound`` (one message: an admin, or an agent as itself) and
``POST /v1/domains/{d}/outbound/batch`` (admin), whose body is one of (``Content-Type``):

- ``application/json``: ``{"campaign": {"id"?, "name"?}, "defaults": {...},
  "messages": [...]}``, each message as the body of ``POST …/outbound``; ``defaults``
  holds the fields messages share (a message's own win; ``attributes`` are merged).
- ``text/csv``: a header row, then one message a row. Columns are named like the JSON
  fields: ``channel``, ``from``, ``to``, ``text``, ``subject``, ``client_key``,
  ``template`` (or ``template.name``), ``template.language``, ``parameters.1``,
  ``parameters.2`` … (the template's), ``attributes.<key>``, ``answer.mode``,
  ``answer.agent_id``, ``answer.queue``, ``answer.expires_in_seconds``,
  ``attachments.1`` … (URLs). An empty cell is a field left out.
- ``application/x-ndjson`` (or ``application/jsonl``): one JSON message a line.

CSV and NDJSON name the campaign in the query (``campaign_id``, ``campaign_name``); so may
JSON, whose body wins. Without an id, the batch starts a new campaign. Blank rows and lines
are skipped; at most 10,000 messages. A message that cannot be read is refused on its own
(``results``), like one that breaks a rule; a body that cannot be read at all is 400.
"""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from typing import Any

import msgspec
import structlog
from aiohttp import web

from router.api.auth import Principal
from router.api.models import ErrorBody
from router.api.outbound import Campaign, Refusal, Sender, send_all
from router.api.outbound_models import (
    BATCH_BODY_MAX,
    BATCH_MESSAGES_MAX,
    BatchAccepted,
    BatchBody,
    CampaignIn,
    DomainOutbound,
    OutboundAccepted,
    SendIn,
)
from router.api.routes import (
    API,
    bad_request,
    enter,
    guarded,
    read_json,
    require_admin,
    respond,
)
from runtime.http_errors import json_error, read_limited
from schemas.limits import CAMPAIGN_ID_MAX, NAME_MAX, clean_text, decode_json_text

log = structlog.get_logger(__name__)

CSV_COLUMNS_MAX = 200
"""Columns of a CSV batch."""

_CAMPAIGN_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{CAMPAIGN_ID_MAX}}}")
_CSV = "text/csv"
_NDJSON = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")


def sender_of(request: web.Request, domain: str, principal: Principal) -> Sender:
    api = request.app[API]
    return Sender(
        domain=domain,
        principal=principal,
        outbound=api.outbound.get(domain) or DomainOutbound(),
        queues=api.policies[domain].queues,
        now=time.time(),
    )


# -- one message --------------------------------------------------------------------


async def post_outbound(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    send = await read_json(request, SendIn)
    [result] = await send_all(request, sender_of(request, domain, principal), [send])
    if result.error is not None:
        return respond(ErrorBody(error=result.error), status=result.http_status or 400)
    return respond(
        OutboundAccepted(
            outbound_id=result.outbound_id or "",
            conversation_id=result.conversation_id or "",
            status=result.status or "queued",
            duplicate=result.duplicate,
        ),
        status=200 if result.duplicate else 202,
    )


# -- batches ------------------------------------------------------------------------


def _campaign(request: web.Request, given: CampaignIn | None) -> Campaign:
    """The batch's campaign: the body's, else the query's, else a new one."""
    campaign_id = given.id if given is not None else None
    name = given.name if given is not None else ""
    if campaign_id is None:
        campaign_id = request.query.get("campaign_id")
        if campaign_id is not None and not _CAMPAIGN_ID.fullmatch(campaign_id):
            raise bad_request(
                f"campaign_id must be 1 to {CAMPAIGN_ID_MAX} letters, digits or _ . : -"
            )
    if not name:
        name = clean_text(request.query.get("campaign_name", ""))
        if len(name) > NAME_MAX:
            raise bad_request(f"campaign_name is longer than {NAME_MAX} characters")
    return Campaign(campaign_id or uuid.uuid4().hex, name)


def _convert(fields: Any, strict: bool = True) -> SendIn | Refusal:
    if not isinstance(fields, dict):
        return Refusal(400, "a message is a JSON object")
    try:
        return msgspec.convert(fields, SendIn, strict=strict)
    except msgspec.ValidationError as error:
        return Refusal(400, f"invalid message: {error}")


def _json_batch(request: web.Request, body: bytes) -> tuple[Campaign, list[SendIn | Refusal]]:
    try:
        batch = decode_json_text(lambda text: msgspec.json.decode(text, type=BatchBody), body)
    except msgspec.ValidationError as error:
        raise bad_request(f"invalid body: {error}") from None
    except msgspec.DecodeError:
        raise bad_request("body is not valid JSON") from None
    except RecursionError:
        raise bad_request("body is nested too deeply") from None
    defaults: dict[str, Any] = msgspec.to_builtins(batch.defaults)
    items: list[SendIn | Refusal] = []
    for message in batch.messages:
        if isinstance(message, dict) and defaults:
            merged = {**defaults, **message}
            if isinstance(message.get("attributes"), dict) and "attributes" in defaults:
                merged["attributes"] = {**defaults["attributes"], **message["attributes"]}
            message = merged
        items.append(_convert(message))
    given = batch.campaign if batch.campaign.id is not None or batch.campaign.name else None
    return _campaign(request, given), items


def _ndjson_batch(body: bytes) -> list[SendIn | Refusal]:
    items: list[SendIn | Refusal] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        if len(items) >= BATCH_MESSAGES_MAX:
            raise bad_request(f"a batch holds at most {BATCH_MESSAGES_MAX} messages")
        try:
            fields = decode_json_text(msgspec.json.decode, line)
        except (msgspec.DecodeError, RecursionError):
            items.append(Refusal(400, "the line is not a JSON object"))
            continue
        items.append(_convert(fields))
    return items


class _Column:
    """Where a CSV column's cells go in a message's fields."""

    __slots__ = ("path",)

    def __init__(self, name: str) -> None:
        self.path = _column_path(name)

    def put(self, fields: dict[Any, Any], cell: str) -> None:
        *parents, last = self.path
        target = fields
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = cell


_SIMPLE = ("channel", "from", "to", "text", "subject", "client_key")
_ANSWER = ("mode", "agent_id", "queue", "expires_in_seconds")


def _column_path(name: str) -> tuple[str | int, ...]:
    """A CSV header's place in a message (``ValueError`` for a name that has none)."""
    if name in _SIMPLE:
        return (name,)
    if name in ("template", "template.name"):
        return ("template", "name")
    if name == "template.language":
        return ("template", "language")
    head, _, tail = name.partition(".")
    if head in ("parameters", "template.parameters") or name.startswith("template.parameters."):
        number = name.rpartition(".")[2]
        if number.isdigit() and 1 <= int(number) <= 100:
            return ("template", "parameters", int(number))
    elif head == "attributes" and tail:
        return ("attributes", tail)
    elif head == "answer" and tail in _ANSWER:
        return ("answer", tail)
    elif head == "attachments" and tail.isdigit() and 1 <= int(tail) <= 10:
        return ("attachments", int(tail))
    raise ValueError(f"unknown CSV column {name[:64]!r}")


def _numbered(fields: dict[str, Any]) -> None:
    """Numbered cells (``parameters.2``) as lists; a gap is an empty value."""
    template = fields.get("template")
    if isinstance(template, dict) and "parameters" in template:
        numbers: dict[int, str] = template["parameters"]
        template["parameters"] = [numbers.get(n, "") for n in range(1, max(numbers) + 1)]
    if "attachments" in fields:
        urls: dict[int, str] = fields["attachments"]
        fields["attachments"] = [{"url": urls[n]} for n in sorted(urls)]


def _csv_batch(body: bytes) -> list[SendIn | Refusal]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_request("the CSV is not UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise bad_request("the CSV has no header row")
        if len(header) > CSV_COLUMNS_MAX:
            raise bad_request(f"the CSV has more than {CSV_COLUMNS_MAX} columns")
        names = [name.strip() for name in header]
        if len(set(names)) != len(names):
            raise bad_request("a CSV column is named twice")
        try:
            columns = [_Column(name) for name in names]
        except ValueError as error:
            raise bad_request(str(error)) from None
        items: list[SendIn | Refusal] = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(items) >= BATCH_MESSAGES_MAX:
                raise bad_request(f"a batch holds at most {BATCH_MESSAGES_MAX} messages")
            if len(row) != len(columns):
                items.append(
                    Refusal(400, f"the row has {len(row)} cells, the header {len(columns)}")
                )
                continue
            fields: dict[str, Any] = {}
            for column, cell in zip(columns, row, strict=True):
                if cell != "":
                    column.put(fields, cell)
            _numbered(fields)
            items.append(_convert(fields, strict=False))
    except csv.Error as error:
        raise bad_request(f"the CSV is malformed: {error}") from None
    return items


async def post_batch(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    body = await read_limited(request, BATCH_BODY_MAX)
    if body is None:
        return json_error(413, f"body larger than {BATCH_BODY_MAX} bytes")
    kind = request.content_type
    if kind == _CSV:
        items, campaign = _csv_batch(body), _campaign(request, None)
    elif kind in _NDJSON:
        items, campaign = _ndjson_batch(body), _campaign(request, None)
    elif kind in ("application/json", "application/octet-stream"):  # the latter: none given
        campaign, items = _json_batch(request, body or b"{}")
    else:
        return json_error(415, "send application/json, text/csv or application/x-ndjson")
    if not items:
        raise bad_request("the batch holds no message")
    sender = sender_of(request, domain, principal)
    started = time.monotonic()
    results = await send_all(request, sender, items, campaign)
    accepted = sum(1 for r in results if r.error is None and not r.duplicate)
    duplicates = sum(1 for r in results if r.duplicate)
    log.info(
        "outbound_batch",
        domain=domain,
        campaign_id=campaign.campaign_id,
        messages=len(results),
        accepted=accepted,
        duplicates=duplicates,
        seconds=round(time.monotonic() - started, 3),
    )
    return respond(
        BatchAccepted(
            campaign_id=campaign.campaign_id,
            accepted=accepted,
            duplicates=duplicates,
            refused=len(results) - accepted - duplicates,
            results=results,
        ),
        status=202,
    )


def outbound_routes(base: str) -> list[web.RouteDef]:
    return [
        web.post(base + "/outbound", guarded(post_outbound)),
        web.post(base + "/outbound/batch", guarded(post_batch)),
    ]
