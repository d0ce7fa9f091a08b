"""Customers' consent to business-started messages, per channel address.

- ``GET /v1/domains/{d}/consents/{channel}/{address}``: the address's current consent to
  every business-started message, and to marketing templates (``marketing``; ``opt_in``
  when nothing was ever recorded), as sends are checked against it
  (``runtime.outbound.LATEST_CONSENTS``): on WhatsApp the latest change under any of the
  customer's WhatsApp addresses, named by ``changed_under``. Any token of the domain: an
  agent checks before sending.
- ``PUT …/consents/{channel}/{address}`` ``{"consent": "opt_out" | "opt_in", "note"?,
  "scope"?: "all" | "marketing"}`` (admin): records the customer's answer given another
  way (a signed form, a call), for every business-started message or, with ``scope``
  ``marketing``, for marketing templates alone. The
  router applies it as it applies the customer's own STOP or START
  (``customer.consent_requested``, answered with its verdict: ``run_command``), and
  writes ``consents`` and ``consent_changes``; audited as ``customer.consent.set`` with
  the customer's digest.
- ``GET …/consents/{channel}/{address}/changes`` (admin): the address's audit trail,
  newest first, paged by ``cursor`` (a change recorded under another of a WhatsApp
  customer's addresses is in that address's trail).

The address is spelled as for a send (``router.api.outbound.channel_address``): an E.164
number for sms and whatsapp (the path's ``+`` is a plus, not a space), an email address
in any case, a PSID, a chat id, a web chat session id. Consent is per channel: a STOP by
SMS does not opt the number out of WhatsApp.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from router.api.campaigns import decode_cursor, encode_cursor
from router.api.outbound import channel_address
from router.api.outbound_models import (
    PAGE_LIMIT,
    PAGE_LIMIT_MAX,
    ConsentChange,
    ConsentChangesPage,
    ConsentIn,
    ConsentView,
    DomainOutbound,
)
from router.api.routes import (
    API,
    bad_request,
    customer_target,
    enter,
    guarded,
    new_event_fields,
    query_int,
    read_json,
    require_admin,
    respond,
    run_command,
)
from runtime import audit
from runtime.appkeys import DB_POOL
from runtime.outbound import LATEST_CONSENTS
from schemas import Channel, Consent, ConsentScope, CustomerConsentRequested
from schemas.limits import UnusableValue

_CHANNELS = ", ".join(Channel)


def _address(request: web.Request) -> tuple[Channel, str]:
    raw = request.match_info["channel"]
    if raw not in Channel.__members__.values():
        raise bad_request(f"channel must be one of {_CHANNELS}")
    channel = Channel(raw)
    try:
        return channel, channel_address(channel, request.match_info["address"])
    except UnusableValue as error:
        raise bad_request(f"address: {error}") from None


async def get_consent(request: web.Request) -> web.Response:
    domain, _ = await enter(request)
    channel, address = _address(request)
    outbound = request.app[API].outbound.get(domain) or DomainOutbound()
    customer_id = outbound.customer_id(channel.value, address)
    async with request.app[DB_POOL].acquire() as conn:
        rows = await conn.fetch(
            LATEST_CONSENTS, domain, [0], [channel.value], [address], [customer_id], [True]
        )
    by_scope = {ConsentScope(row["scope"]): row for row in rows}
    every, marketing = by_scope.get(ConsentScope.ALL), by_scope.get(ConsentScope.MARKETING)
    view = ConsentView(
        channel=channel,
        address=address,
        consent=Consent.OPT_IN if every is None else Consent(every["consent"]),
        source=None if every is None else every["source"],
        customer_id=None if every is None else every["customer_id"],
        changed_at=None if every is None else every["changed_at"].timestamp(),
        changed_under=None if every is None else every["address"],
        marketing=Consent.OPT_IN if marketing is None else Consent(marketing["consent"]),
        marketing_source=None if marketing is None else marketing["source"],
        marketing_changed_at=None if marketing is None else marketing["changed_at"].timestamp(),
        marketing_changed_under=None if marketing is None else marketing["address"],
    )
    return respond(view)


async def put_consent(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    channel, address = _address(request)
    require_admin(principal)
    body = await read_json(request, ConsentIn)
    outbound = request.app[API].outbound.get(domain) or DomainOutbound()
    customer_id = outbound.customer_id(channel.value, address)
    event = CustomerConsentRequested(
        **new_event_fields(domain),
        channel=channel,
        customer_address=address,
        customer_id=customer_id,
        consent=body.consent,
        agent_id=None,
        note=body.note,
        scope=body.scope,
    )

    async def record(conn: asyncpg.Connection) -> None:
        await audit.record_action(
            conn,
            actor=principal.actor,
            action="customer.consent.set",
            domain=domain,
            target=customer_target(customer_id),
            detail={
                "event_id": event.id,
                "channel": channel.value,
                "consent": body.consent.value,
                "scope": body.scope.value,
                "note": body.note,
            },
        )

    return await run_command(request, event, None, record)


_CHANGES = """
SELECT change_id, consent, scope, source, customer_id, message_id, actor, changed_at
FROM consent_changes WHERE domain = $1 AND channel = $2 AND address = $3
"""


async def get_changes(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    channel, address = _address(request)
    require_admin(principal)
    limit = query_int(request, "limit", PAGE_LIMIT, 1, PAGE_LIMIT_MAX)
    scope = f"consents:{domain}:{channel}:{address}"
    params: list[object] = [domain, channel.value, address]
    statement = _CHANGES
    raw = request.query.get("cursor")
    if raw is not None:
        params.extend(decode_cursor(raw, scope))
        statement += " AND (changed_at, change_id) < ($4, $5)"
    statement += f" ORDER BY changed_at DESC, change_id DESC LIMIT {limit + 1}"
    async with request.app[DB_POOL].acquire() as conn:
        rows = await conn.fetch(statement, *params)
    changes = [
        ConsentChange(
            change_id=row["change_id"],
            consent=Consent(row["consent"]),
            scope=ConsentScope(row["scope"]),
            source=row["source"],
            customer_id=row["customer_id"],
            message_id=row["message_id"],
            actor=row["actor"],
            changed_at=row["changed_at"].timestamp(),
        )
        for row in rows[:limit]
    ]
    cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        cursor = encode_cursor(scope, last["changed_at"], last["change_id"])
    return respond(
        ConsentChangesPage(channel=channel, address=address, changes=changes, next_cursor=cursor)
    )


def consent_routes(base: str) -> list[web.RouteDef]:
    consent = base + "/consents/{channel}/{address}"
    return [
        web.get(consent, guarded(get_consent)),
        web.put(consent, guarded(put_consent)),
        web.get(consent + "/changes", guarded(get_changes)),
    ]
