"""The API when PostgreSQL is there but does not answer: a table locked by someone else's
transaction, or a server that stopped answering on its open connections. Every request
answers 503 with ``Retry-After`` once ``api.request_timeout`` has passed, however many
wait; none holds its client, or the pool, for as long as the database stays stuck."""

from __future__ import annotations

import asyncio

from tests.api.support import Api, SseClient, api_service
from tests.conftest import Infrastructure
from tests.support import CuttableProxy, wait_until

TIMEOUTS = {"api": {"command_timeout": 0.5, "request_timeout": 1.5}}
STREAM = "/v1/domains/acme/stream"
WAITING = 16
"""More requests at once than the service's pool has connections (10, two kept by the
router): some wait for a connection, the others on the lock."""


async def _answer(api: Api, path: str) -> tuple[int, str | None, object]:
    async with api.service.session.get(
        api.service.url(path), headers=api.auth("platform")
    ) as response:
        return response.status, response.headers.get("Retry-After"), await response.json()


async def test_requests_answer_503_while_their_tables_stay_locked(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, TIMEOUTS) as api:
        await api.register("ann")
        agent, versions = "/v1/domains/acme/agents/ann", "/v1/config/versions"
        assert (await _answer(api, agent))[0] == 200
        assert (await _answer(api, versions))[0] == 200
        async with api.pool.acquire() as locker, locker.transaction():
            await locker.execute("LOCK TABLE agents, config_versions IN ACCESS EXCLUSIVE MODE")
            answers = await asyncio.gather(
                *(_answer(api, agent if n % 2 else versions) for n in range(WAITING))
            )
            # Answered while the lock is still held: none waited for it to go.
            assert await locker.fetchval("SELECT count(*) FROM pg_locks WHERE granted") > 0
        assert answers == [(503, "5", {"error": "database unavailable, retry later"})] * WAITING
        assert (await _answer(api, agent))[0] == 200
        assert (await _answer(api, versions))[0] == 200


async def test_requests_answer_503_while_the_server_answers_nothing(
    infrastructure: Infrastructure, database_url: str
) -> None:
    proxy, proxied = await CuttableProxy.before_database(database_url)
    try:
        async with api_service(infrastructure.bootstrap_servers, proxied, TIMEOUTS) as api:
            await api.register("ann")
            agent = "/v1/domains/acme/agents/ann"
            proxy.hang()
            answers = await asyncio.gather(*(_answer(api, agent) for _ in range(WAITING)))
            assert {status for status, _, _ in answers} == {503}
            proxy.restore()

            async def answered() -> bool:
                return (await _answer(api, agent))[0] == 200

            await wait_until(answered, what="an answer again")
    finally:
        proxy.restore()
        await proxy.stop()


async def test_the_event_stream_is_not_cut_at_the_request_timeout(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, TIMEOUTS) as api:
        await api.register("ann")
        stream = SseClient(
            await api.service.session.get(api.service.url(STREAM), headers=api.auth("admin"))
        )
        await asyncio.sleep(2 * TIMEOUTS["api"]["request_timeout"])
        await api.customer_writes("visitor-0001", "m1")
        await stream.wait_for("conversation.assigned", timeout=5)


async def test_a_dry_run_answers_503_while_its_token_cannot_be_read(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """The dry run's replay has no deadline; its reads do, the token's among them."""
    async with api_service(infrastructure.bootstrap_servers, database_url, TIMEOUTS) as api:
        dry_run = "/v1/domains/acme/config/dry-run"
        async with api.pool.acquire() as locker, locker.transaction():
            await locker.execute("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")
            async with api.service.session.post(
                api.service.url(dry_run), headers=api.auth("platform"), json={"version": 1}
            ) as response:
                answered = response.status, await response.json()
        assert answered == (503, {"error": "database unavailable, retry later"})
        status, _ = await api.call("POST", dry_run, "platform", json={"version": 1})
        assert status == 200
