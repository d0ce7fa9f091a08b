"""A running service with tokens of two domains, and a small Server-Sent Events client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from router.api.auth import Scope, create_token
from schemas import ConversationAssigned, Strategy
from switchboard.app import Role
from tests.support import Service, make_config, running_service, wait_until

BOOTSTRAP = "bootstrap-admin-token-for-tests"
DOMAINS: dict[str, Any] = {
    "domains": {
        "acme": {"webchat": {"enabled": True}},
        "globex": {"webchat": {"enabled": True}},
    }
}


def assigned(event_id: str, agent: str = "ann") -> ConversationAssigned:
    """A routing event of domain ``acme`` concerning ``agent``."""
    return ConversationAssigned(
        id=event_id,
        domain="acme",
        occurred_at=1.0,
        conversation_id="c1",
        channel="webchat",  # type: ignore[arg-type]
        customer_id="cu",
        queue="default",
        agent_id=agent,
        assignment_id="a1",
        strategy=Strategy.QUEUE,
        step="queue",
        waited_seconds=0.0,
    )


@dataclass
class Api:
    service: Service
    pool: asyncpg.Pool
    tokens: dict[str, str] = field(default_factory=dict)
    """``admin`` (acme), ``globex`` (admin of globex), ``ann``, ``bob`` (agents of acme),
    ``platform`` (a platform token), ``bootstrap`` (the bootstrap token)."""

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(
        self, method: str, path: str, who: str | None = "admin", **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {**(self.auth(who) if who else {}), **kwargs.pop("headers", {})}
        async with self.service.session.request(
            method, self.service.url(path), headers=headers, **kwargs
        ) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return response.status, body

    async def register(self, agent_id: str, **profile: Any) -> None:
        profile.setdefault("capacity", {"webchat": 3})
        status, _ = await self.call("PUT", f"/v1/domains/acme/agents/{agent_id}", json=profile)
        assert status == 202
        status, _ = await self.call(
            "POST", f"/v1/domains/acme/agents/{agent_id}/presence", json={"status": "online"}
        )
        assert status == 202
        await wait_until(
            lambda: self.pool.fetchval(
                "SELECT presence = 'online' FROM agents WHERE domain = 'acme' AND agent_id = $1",
                agent_id,
            ),
            what=f"{agent_id} online",
        )

    async def customer_writes(self, visitor: str, message_id: str, text: str = "hi") -> str:
        """The web chat visitor ``visitor`` (a name: see ``Service.visitor``) writes; the
        message's event id."""
        status, answer = await self.service.webchat(
            {"session_id": visitor, "message_id": message_id, "text": text}
        )
        assert status == 202, answer
        event_id: str = answer["event_id"]
        return event_id


@contextlib.asynccontextmanager
async def api_service(
    bootstrap_servers: str,
    database_url: str,
    overrides: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    roles: frozenset[Role] = frozenset(Role),
) -> AsyncIterator[Api]:
    config = make_config(bootstrap_servers, database_url, {**DOMAINS, **(overrides or {})})
    environ = {"SWITCHBOARD_ADMIN_TOKEN": BOOTSTRAP, **(secrets or {})}
    async with running_service(config, environ, roles) as service:
        pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
        try:
            api = Api(service, pool, {"bootstrap": BOOTSTRAP})
            async with pool.acquire() as conn:
                for who, domain, scope, agent in (
                    ("admin", "acme", Scope.ADMIN, None),
                    ("globex", "globex", Scope.ADMIN, None),
                    ("ann", "acme", Scope.AGENT, "ann"),
                    ("bob", "acme", Scope.AGENT, "bob"),
                    ("platform", None, Scope.PLATFORM, None),
                ):
                    _, api.tokens[who] = await create_token(
                        conn, domain=domain, scope=scope, agent_id=agent
                    )
            yield api
        finally:
            await pool.close()


@dataclass
class SseEvent:
    id: str | None
    type: str | None
    data: str
    received_at: float


class SseClient:
    """Reads ``text/event-stream`` into ``events`` (and comments into ``comments``)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[SseEvent] = []
        self.comments: list[str] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        loop = asyncio.get_running_loop()
        async for raw in self.response.content:
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data:
                    self.events.append(
                        SseEvent(
                            fields.get("id"), fields.get("event"), "\n".join(data), loop.time()
                        )
                    )
                fields, data = {}, []
            elif line.startswith(":"):
                self.comments.append(line[1:].strip())
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value

    async def wait_for(self, event_type: str, timeout: float = 5) -> SseEvent:
        async def found() -> SseEvent | None:
            return next((e for e in self.events if e.type == event_type), None)

        result: SseEvent = await wait_until(found, timeout=timeout, interval=0.01, what=event_type)
        return result

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await self._task
        self.response.close()
