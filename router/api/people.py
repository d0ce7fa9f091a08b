"""Who is who: customer identity links and merges, and agents who leave.

Each route validates, writes what must outlive the request (the audit log, revoked
tokens), publishes a command on ``agents.events`` keyed by the domain, and answers with
the router's verdict (``run_command``): 202 ``completed``, 409 with the router's reason,
or 202 ``pending`` when the router has not answered within the command timeout.

- ``POST /v1/domains/{d}/customers/{customer_id}/identities`` ``{"identity"}``: the
  identity (``schemas.identity``: ``email:…``, ``phone:+…``, ``user:…`` …) is this
  customer's; one with history of its own merges into the customer.
- ``DELETE /v1/domains/{d}/customers/{customer_id}/identities/{identity}``: no longer.
- ``POST /v1/domains/{d}/customers/{customer_id}/merge`` ``{"from_customer_id"}``.
- ``DELETE /v1/domains/{d}/agents/{agent_id}``: offboarding. The agent's API tokens are
  revoked at once; the router re-homes what they held (``router.engine.agents``).

Customer links and merges are admin-only and audited with the customers' digests (their
ids are phone numbers and email addresses).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from router.api.auth import Principal
from router.api.models import IdentityIn, MergeIn
from router.api.routes import (
    agent_id_of,
    bad_request,
    customer_target,
    enter,
    guarded,
    new_event_fields,
    not_found,
    path_value,
    read_json,
    require_admin,
    run_command,
)
from runtime import audit
from schemas import (
    AgentCommand,
    AgentRemoved,
    CustomerLinkRequested,
    CustomerMergeRequested,
    CustomerUnlinkRequested,
)
from schemas.identity import normalize_identity
from schemas.limits import CUSTOMER_ID_MAX, UnusableValue


def _identity(value: str) -> str:
    try:
        return normalize_identity(value)
    except UnusableValue as error:
        raise bad_request(str(error)) from None


def _audited(
    principal: Principal,
    action: str,
    event: AgentCommand,
    customer_id: str,
    **others: str,
) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """The audit entry of a customer command; customers appear as digests."""

    async def record(conn: asyncpg.Connection) -> None:
        await audit.record_action(
            conn,
            actor=principal.actor,
            action=action,
            domain=event.domain,
            target=customer_target(customer_id),
            detail={
                "event_id": event.id,
                **{name: customer_target(value) for name, value in others.items()},
            },
        )

    return record


async def post_identity(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    customer_id = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    require_admin(principal)
    body = await read_json(request, IdentityIn)
    identity = _identity(body.identity)
    event = CustomerLinkRequested(
        **new_event_fields(domain), customer_id=customer_id, identity=identity
    )
    return await run_command(
        request,
        event,
        None,
        _audited(principal, "customer.identity.link", event, customer_id, identity=identity),
    )


async def delete_identity(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    customer_id = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    identity = _identity(path_value(request, "identity", CUSTOMER_ID_MAX))
    require_admin(principal)
    event = CustomerUnlinkRequested(
        **new_event_fields(domain), customer_id=customer_id, identity=identity
    )
    return await run_command(
        request,
        event,
        None,
        _audited(principal, "customer.identity.unlink", event, customer_id, identity=identity),
    )


async def post_merge(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    customer_id = path_value(request, "customer_id", CUSTOMER_ID_MAX)
    require_admin(principal)
    body = await read_json(request, MergeIn)
    event = CustomerMergeRequested(
        **new_event_fields(domain),
        customer_id=customer_id,
        from_customer_id=body.from_customer_id,
    )
    return await run_command(
        request,
        event,
        None,
        _audited(principal, "customer.merge", event, customer_id, merged=body.from_customer_id),
    )


_REVOKE_AGENT_TOKENS = """
UPDATE api_tokens SET revoked_at = now(), revoked_by = $3
WHERE domain = $1 AND agent_id = $2 AND scope = 'agent' AND revoked_at IS NULL
RETURNING token_id
"""


async def delete_agent(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    agent_id = agent_id_of(request)
    require_admin(principal)
    event = AgentRemoved(**new_event_fields(domain), agent_id=agent_id)

    async def record(conn: asyncpg.Connection) -> None:
        known = await conn.fetchval(
            "SELECT 1 FROM agents WHERE domain = $1 AND agent_id = $2", domain, agent_id
        )
        if not known:
            raise not_found(f"unknown agent {agent_id!r}")
        revoked = await conn.fetch(_REVOKE_AGENT_TOKENS, domain, agent_id, principal.actor)
        await audit.record_action(
            conn,
            actor=principal.actor,
            action="agent.remove",
            domain=domain,
            target=f"agent {agent_id}",
            detail={"event_id": event.id, "tokens_revoked": [r["token_id"] for r in revoked]},
        )

    return await run_command(request, event, None, record)


def people_routes(base: str) -> list[web.RouteDef]:
    customer = base + "/customers/{customer_id}"
    return [
        web.post(customer + "/identities", guarded(post_identity)),
        web.delete(customer + "/identities/{identity}", guarded(delete_identity)),
        web.post(customer + "/merge", guarded(post_merge)),
        web.delete(base + "/agents/{agent_id}", guarded(delete_agent)),
    ]
