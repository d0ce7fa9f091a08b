"""Campaigns, and what became of each business-started message.

- ``GET /v1/domains/{d}/campaigns`` (admin): the domain's campaigns, newest first, with
  their progress; ``status`` filters, ``cursor`` pages (keyset, never OFFSET).
- ``GET /v1/domains/{d}/campaigns/{campaign_id}`` (admin): one campaign: its status and
  its messages counted by status.
- ``POST …/campaigns/{campaign_id}/pause``, ``/resume``, ``/cancel`` (admin, audited as
  ``campaign.pause``, ``campaign.resume``, ``campaign.cancel``): the sender leaves a
  paused campaign's messages waiting, and sends them again once it is resumed; a cancel
  marks every message not yet taken by the sender (``accepted``, ``queued``)
  ``cancelled``, for good: a cancelled campaign takes no more batches (409
  ``campaign_cancelled``) and cannot be resumed.
- ``GET /v1/domains/{d}/outbound/{outbound_id}``: one outbound message (a notification
  or a reply): status, error, provider message id, times. An admin, or the agent who sent
  it.

A campaign is created by its first batch (``router.api.outbound_routes``). The cursor is
base64url JSON of the last entry's sort key with a digest of that key and what it pages
(a campaign list, an address's consent changes): one that was edited or comes from
another listing is refused (400).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
from aiohttp import web

from router.api.auth import forbidden
from router.api.desktop import digest
from router.api.desktop_models import Micros
from router.api.models import ErrorBody
from router.api.outbound_models import (
    CURSOR_MAX,
    PAGE_LIMIT,
    PAGE_LIMIT_MAX,
    CampaignsPage,
    CampaignView,
    OutboundView,
)
from router.api.routes import (
    bad_request,
    enter,
    guarded,
    not_found,
    path_value,
    query_int,
    require_admin,
    respond,
)
from runtime import audit
from runtime.appkeys import DB_POOL
from schemas import Channel
from schemas.limits import CAMPAIGN_ID_MAX, EVENT_ID_MAX, is_identifier

CAMPAIGN_STATUSES = ("running", "paused", "cancelled")
_CAMPAIGN_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{CAMPAIGN_ID_MAX}}}")
_CURSOR = re.compile(rf"[A-Za-z0-9_-]{{1,{CURSOR_MAX}}}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# -- cursors ------------------------------------------------------------------------


def encode_cursor(scope: str, at: datetime, key: str) -> str:
    """A cursor after the entry ``(at, key)`` of the listing ``scope``."""
    micros = (at - _EPOCH) // _MICROSECOND
    raw = msgspec.json.encode((micros, key, digest(scope, micros, key)))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(raw: str, scope: str) -> tuple[datetime, str]:
    """The entry a cursor of the listing ``scope`` names (400 for any other)."""
    refused = bad_request("cursor is not one this endpoint gave for this query: start without it")
    if not _CURSOR.fullmatch(raw):
        raise refused
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        micros, key, check = msgspec.json.decode(data, type=tuple[Micros, str, str])
    except (binascii.Error, msgspec.DecodeError):  # ValidationError is a DecodeError
        raise refused from None
    # The check is no secret: a cursor made by hand must still hold a storable position.
    if check != digest(scope, micros, key) or not is_identifier(key, CURSOR_MAX):
        raise refused
    return _EPOCH + micros * _MICROSECOND, key


# -- campaigns ----------------------------------------------------------------------

_COLUMNS = "campaign_id, name, status, created_by, created_at, updated_at"
_COUNTS = """
SELECT campaign_id, status, count(*)::bigint AS n FROM outbound_messages
WHERE domain = $1 AND campaign_id = ANY($2::text[]) GROUP BY campaign_id, status
"""
_CANCEL_MESSAGES = """
WITH cancelled AS (
    UPDATE outbound_messages SET status = 'cancelled', status_unreported = true, updated_at = now()
    WHERE domain = $1 AND campaign_id = $2 AND status IN ('accepted', 'queued')
    RETURNING outbound_id
), history AS (
    UPDATE messages m SET status = 'cancelled' FROM cancelled x
    WHERE m.domain = $1 AND m.message_id = x.outbound_id
)
SELECT count(*) FROM cancelled
"""


def campaign_id_of(request: web.Request) -> str:
    campaign_id = request.match_info["campaign_id"]
    if not _CAMPAIGN_ID.fullmatch(campaign_id):
        raise bad_request(f"campaign_id must be 1 to {CAMPAIGN_ID_MAX} letters, digits or _ . : -")
    return campaign_id


async def _views(
    conn: asyncpg.Connection, domain: str, rows: list[asyncpg.Record]
) -> list[CampaignView]:
    counts: dict[str, dict[str, int]] = {row["campaign_id"]: {} for row in rows}
    if rows:
        for row in await conn.fetch(_COUNTS, domain, list(counts)):
            counts[row["campaign_id"]][row["status"]] = row["n"]
    return [
        CampaignView(
            campaign_id=row["campaign_id"],
            name=row["name"],
            status=row["status"],
            created_by=row["created_by"],
            created_at=row["created_at"].timestamp(),
            updated_at=row["updated_at"].timestamp(),
            total=sum(counts[row["campaign_id"]].values()),
            counts=dict(sorted(counts[row["campaign_id"]].items())),
        )
        for row in rows
    ]


async def _campaign(conn: asyncpg.Connection, domain: str, campaign_id: str) -> CampaignView:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM campaigns WHERE domain = $1 AND campaign_id = $2",  # noqa: S608 -- fixed text
        domain,
        campaign_id,
    )
    if row is None:
        raise not_found(f"unknown campaign {campaign_id!r}")
    [view] = await _views(conn, domain, [row])
    return view


async def get_campaign(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    campaign_id = campaign_id_of(request)
    async with request.app[DB_POOL].acquire() as conn:
        return respond(await _campaign(conn, domain, campaign_id))


async def list_campaigns(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    limit = query_int(request, "limit", PAGE_LIMIT, 1, PAGE_LIMIT_MAX)
    status = request.query.get("status")
    if status is not None and status not in CAMPAIGN_STATUSES:
        raise bad_request(f"status must be one of {', '.join(CAMPAIGN_STATUSES)}")
    scope = f"campaigns:{domain}:{status}"
    raw = request.query.get("cursor")
    conditions: list[str] = ["domain = $1"]
    params: list[object] = [domain]
    if status is not None:
        params.append(status)
        conditions.append(f"status = ${len(params)}")
    if raw is not None:
        at, after = decode_cursor(raw, scope)
        params.extend((at, after))
        conditions.append(f"(created_at, campaign_id) < (${len(params) - 1}, ${len(params)})")
    statement = (
        f"SELECT {_COLUMNS} FROM campaigns WHERE {' AND '.join(conditions)}"  # noqa: S608 -- placeholders only
        f" ORDER BY created_at DESC, campaign_id DESC LIMIT {limit + 1}"
    )
    async with request.app[DB_POOL].acquire() as conn:
        rows = await conn.fetch(statement, *params)
        views = await _views(conn, domain, rows[:limit])
    cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        cursor = encode_cursor(scope, last["created_at"], last["campaign_id"])
    return respond(CampaignsPage(campaigns=views, next_cursor=cursor))


async def _change(request: web.Request, action: str) -> web.Response:
    """Pause, resume or cancel: the campaign's row (and a cancel's messages) and the
    audit entry in one transaction."""
    domain, principal = await enter(request)
    require_admin(principal)
    campaign_id = campaign_id_of(request)
    target = {"pause": "paused", "resume": "running", "cancel": "cancelled"}[action]
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM campaigns WHERE domain = $1 AND campaign_id = $2 FOR UPDATE",
            domain,
            campaign_id,
        )
        if status is None:
            raise not_found(f"unknown campaign {campaign_id!r}")
        if status == "cancelled" and action != "cancel":
            return respond(ErrorBody(error="campaign_cancelled"), status=409)
        cancelled = 0
        if status != target:
            await conn.execute(
                "UPDATE campaigns SET status = $3, updated_at = now()"
                " WHERE domain = $1 AND campaign_id = $2",
                domain,
                campaign_id,
                target,
            )
        if action == "cancel":
            cancelled = await conn.fetchval(_CANCEL_MESSAGES, domain, campaign_id)
        await audit.record_action(
            conn,
            actor=principal.actor,
            action=f"campaign.{action}",
            domain=domain,
            target=f"campaign {campaign_id}",
            detail={"campaign_id": campaign_id, "was": status, "messages_cancelled": cancelled},
        )
        view = await _campaign(conn, domain, campaign_id)
    return respond(view)


async def post_pause(request: web.Request) -> web.Response:
    return await _change(request, "pause")


async def post_resume(request: web.Request) -> web.Response:
    return await _change(request, "resume")


async def post_cancel(request: web.Request) -> web.Response:
    return await _change(request, "cancel")


# -- one message --------------------------------------------------------------------

_OUTBOUND = """
SELECT outbound_id, kind, status, channel, endpoint, customer_id, conversation_id, agent_id,
       campaign_id, client_key, provider_message_id, attempts, error, created_at, updated_at
FROM outbound_messages WHERE domain = $1 AND outbound_id = $2
"""


async def get_outbound(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    outbound_id = path_value(request, "outbound_id", EVENT_ID_MAX)
    async with request.app[DB_POOL].acquire() as conn:
        row = await conn.fetchrow(_OUTBOUND, domain, outbound_id)
    if row is None:
        raise not_found(f"unknown outbound message {outbound_id!r}")
    if not principal.is_admin and row["agent_id"] != principal.agent_id:
        raise forbidden("an agent token reads only the messages its agent sent")
    return respond(
        OutboundView(
            outbound_id=row["outbound_id"],
            kind=row["kind"],
            status=row["status"],
            channel=Channel(row["channel"]),
            endpoint=row["endpoint"],
            customer_id=row["customer_id"],
            conversation_id=row["conversation_id"],
            agent_id=row["agent_id"],
            campaign_id=row["campaign_id"],
            client_key=row["client_key"],
            provider_message_id=row["provider_message_id"],
            attempts=row["attempts"],
            error=row["error"],
            created_at=row["created_at"].timestamp(),
            updated_at=row["updated_at"].timestamp(),
        )
    )


def campaign_routes(base: str) -> list[web.RouteDef]:
    campaign = base + "/campaigns/{campaign_id}"
    return [
        web.get(base + "/campaigns", guarded(list_campaigns)),
        web.get(campaign, guarded(get_campaign)),
        web.post(campaign + "/pause", guarded(post_pause)),
        web.post(campaign + "/resume", guarded(post_resume)),
        web.post(campaign + "/cancel", guarded(post_cancel)),
        web.get(base + "/outbound/{outbound_id}", guarded(get_outbound)),
    ]
