"""A customer erased: ``DELETE /v1/domains/{domain}/customers/{identity}``.

The path names the customer by any identity (``schemas.identity``): the profile it
belongs to is erased whole, with every identity linked to it. A phone number's identity
(``sms:+1…``, ``whatsapp:+1…``, ``phone:+1…`` …) names the number on every phone channel:
the profiles of each are erased. Admin only, audited (``customer.erase``, the customer by
digest), and idempotent: erasing someone already erased, or never seen, completes with
nothing left to delete.

The route writes an ``erasures`` row naming the identities and the conversations
PostgreSQL holds for them, then publishes ``customer.erase_requested``, which names no
one, keyed by the domain. The router that owns the domain reads the row, forgets the
customer, deletes their rows in its batch transaction and empties the row's personal
columns (``router.engine.erasure``, ``router.shell.erasure``); ``customer.erased`` tells
other systems. The answer is 200 with what was deleted, by table, once the router is
done; 202 ``pending`` when it has not answered within the command timeout, and then
``GET /v1/domains/{domain}/erasures/{erasure_id}`` says when it is.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec
from aiohttp import web

from router.api.auth import Principal
from router.api.desktop import customer_of
from router.api.routes import (
    bad_request,
    command_verdict,
    customer_target,
    enter,
    guarded,
    new_event_fields,
    not_found,
    path_value,
    require_admin,
    respond,
)
from runtime import audit
from runtime.appkeys import DB_POOL
from runtime.db import DATABASE_ERRORS
from runtime.erasures import request_erasure
from schemas import CustomerEraseRequested
from schemas.identity import PHONE_KINDS, is_whatsapp_user_id, normalize_identity
from schemas.limits import CUSTOMER_ID_MAX, EVENT_ID_MAX, UnusableValue


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    erasure_id: str
    status: str
    """``completed``: nothing of the customer is left; ``pending``: the router has not
    applied it yet."""
    requested_at: float
    completed_at: float | None
    erased: dict[str, int] | None
    """Rows deleted, by table (null while pending)."""


def named_identities(identity: str) -> list[str]:
    """The identities a request names: a phone number's on every phone channel (a
    WhatsApp business-scoped user id is no phone number: its own alone)."""
    kind, _, value = identity.partition(":")
    if kind not in PHONE_KINDS or is_whatsapp_user_id(value):
        return [identity]
    return [identity, *(f"{other}:{value}" for other in sorted(PHONE_KINDS - {kind}))]


_READ = """
SELECT erasure_id, requested_at, completed_at, erased::text AS erased FROM erasures
WHERE domain = $1 AND erasure_id = $2
"""


async def _request(
    conn: asyncpg.Connection, principal: Principal, event: CustomerEraseRequested, identity: str
) -> tuple[str, list[str]]:
    """Write the erasure's row: the profile's id and every identity it erases."""
    domain = event.domain
    identities: dict[str, None] = {}
    profile = identity
    for named in named_identities(identity):
        customer = await customer_of(conn, domain, named)
        if named == identity:
            profile = customer.customer_id
        identities.update(dict.fromkeys([named, *customer.ids]))
    ids = list(identities)
    await request_erasure(conn, domain, event.id, ids, principal.actor)
    return profile, ids


def _erasure(row: asyncpg.Record) -> Erasure:
    completed: datetime | None = row["completed_at"]
    return Erasure(
        erasure_id=row["erasure_id"],
        status="pending" if completed is None else "completed",
        requested_at=row["requested_at"].timestamp(),
        completed_at=None if completed is None else completed.timestamp(),
        erased=None if row["erased"] is None else msgspec.json.decode(row["erased"]),
    )


async def delete_customer(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    raw = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    require_admin(principal)
    try:
        identity = normalize_identity(raw)
    except UnusableValue as error:
        raise bad_request(str(error)) from None
    event = CustomerEraseRequested(**new_event_fields(domain))
    pool = request.app[DB_POOL]
    # Committed before the command is published: the router reads it when it applies it.
    async with pool.acquire() as conn, conn.transaction():
        profile, ids = await _request(conn, principal, event, identity)

    async def record(conn: asyncpg.Connection) -> None:
        await audit.record_action(
            conn,
            actor=principal.actor,
            action="customer.erase",
            domain=domain,
            target=customer_target(profile),
            detail={"event_id": event.id, "identities": len(ids)},
        )

    try:
        await command_verdict(request, event, None, record)
    except (web.HTTPServiceUnavailable, *DATABASE_ERRORS):
        # Not published (the broker or the audit entry refused it): no router will read
        # the row, which must not keep whom it names. A request cancelled while waiting
        # for the verdict keeps it: the command may be on its way.
        async with pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM erasures WHERE domain = $1 AND erasure_id = $2", domain, event.id
            )
        raise
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_READ, domain, event.id)
    erasure = _erasure(row)
    return respond(erasure, status=200 if erasure.status == "completed" else 202)


async def get_erasure(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    erasure_id = path_value(request, "erasure_id", EVENT_ID_MAX)
    require_admin(principal)
    async with request.app[DB_POOL].acquire() as conn:
        row = await conn.fetchrow(_READ, domain, erasure_id)
    if row is None:
        raise not_found("unknown erasure")
    return respond(_erasure(row))


def erasure_routes(base: str) -> list[web.RouteDef]:
    return [
        web.delete(base + "/customers/{customer_id}", guarded(delete_customer)),
        web.get(base + "/erasures/{erasure_id}", guarded(get_erasure)),
    ]
