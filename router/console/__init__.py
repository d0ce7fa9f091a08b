"""The supervisor console: ``GET /console`` (static HTML, JS and CSS, no build step) and the
small admin-scoped JSON it needs beyond the agent API; the planning page,
``GET /console/planning``; and the agent inbox, ``GET /console/inbox``, the reference agent
desktop.

The page asks for a domain and a token (kept in ``sessionStorage``), then follows the
domain's routing stream (``/v1/domains/{domain}/stream``) with ``fetch()`` streaming, so
the token travels in the ``Authorization`` header like every other API call, and polls
``queues`` and ``console/agents`` every few seconds.

``GET /v1/domains/{domain}/console/agents`` (admin): every agent of the domain with its
presence, capacity and load per channel, from the router's stored agent records.

The planning page (admin) draws the planning API's answers (``router.api.planning``): the
forecast of arrivals beside what was measured, and staffing searches and simulations run
as jobs, followed through their progress. The charts of both pages come from one drawing
function (``figures.js``).

The inbox is an agent's whole day on the public agent API only (an agent token, no admin
endpoint, nothing of this module's JSON): sign in with domain, agent id and token (kept in
``sessionStorage``; verified with ``GET …/agents/{id}`` and a ``mine=true`` list, since no
endpoint says whose a token is), presence, offers from the agent's stream, their
conversations, one conversation with the customer's history on every channel, and the
commands on it. Its page is served with a Content-Security-Policy allowing this origin's
scripts, styles and connections only: no third-party script, and no inline script that a
customer's text could smuggle in. The planning page is served with the same policy.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from aiohttp import web

from router.api.routes import enter, guarded, require_admin, respond
from router.engine import AgentRecord
from runtime.appkeys import DB_POOL
from schemas import Channel, Presence

STATIC = Path(__file__).parent
FILES = {
    "console.js": "application/javascript",
    "stream.js": "application/javascript",
    "console.css": "text/css",
    "figures.js": "application/javascript",
    "planning.js": "application/javascript",
    "planning.css": "text/css",
    "inbox.js": "application/javascript",
    "inbox-conversation.js": "application/javascript",
    "inbox.css": "text/css",
}
"""Assets served under ``/console/{name}``; any other name is 404."""

_agent_record = msgspec.json.Decoder(AgentRecord)


class ConsoleAgent(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str
    name: str
    presence: Presence
    capacity: dict[Channel, int]
    load: dict[Channel, int]


class ConsoleAgents(msgspec.Struct, frozen=True, kw_only=True):
    domain: str
    agents: list[ConsoleAgent]


async def get_console(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers=_NO_CACHE)


async def get_inbox(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "inbox.html", headers={**_NO_CACHE, **_OWN_ORIGIN_ONLY})


async def get_planning(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "planning.html", headers={**_NO_CACHE, **_OWN_ORIGIN_ONLY})


async def get_static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={**_NO_CACHE, "Content-Type": FILES[name]})


async def get_agents(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    require_admin(principal)
    rows = await request.app[DB_POOL].fetch(
        "SELECT record::text AS record FROM agents WHERE domain = $1 ORDER BY agent_id", domain
    )
    agents = []
    for row in rows:
        record = _agent_record.decode(row["record"])
        agents.append(
            ConsoleAgent(
                agent_id=record.agent_id,
                name=record.name,
                presence=record.presence,
                capacity=record.capacity,
                load=record.load,
            )
        )
    return respond(ConsoleAgents(domain=domain, agents=agents))


_NO_CACHE = {"Cache-Control": "no-cache"}
_OWN_ORIGIN_ONLY = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def setup_console(app: web.Application) -> None:
    """Add the console's pages, their assets and the agents listing to ``app``."""
    app.router.add_get("/console", get_console)
    app.router.add_get("/console/inbox", get_inbox)  # before the assets' pattern
    app.router.add_get("/console/planning", get_planning)
    app.router.add_get("/console/{name}", get_static)
    app.router.add_get("/v1/domains/{domain}/console/agents", guarded(get_agents))
