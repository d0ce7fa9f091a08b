"""``/readyz`` means what a load balancer and Kubernetes need: adapters are ready while they
can accept and publish webhooks (PostgreSQL aside), a router is not ready while its
dependencies fail or a partition is stalled (and says which), and the answer never waits
on a dependency that stopped answering."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from runtime import kafka
from runtime.appkeys import TOPIC_KEYS
from schemas import topics
from switchboard.app import READINESS, ROUTER_WORKER, Role
from switchboard.embedded import EmbeddedBroker, free_port
from tests.conftest import Infrastructure
from tests.support import CuttableProxy, Service, make_config, running_service, wait_until
from tests.traffic import Traffic

pytestmark = pytest.mark.integration

PROBE = aiohttp.ClientTimeout(total=3)
"""The readiness probes' timeout in deploy/k8s: an answer must come within it."""


async def _readyz(service: Service) -> tuple[int, dict[str, Any]]:
    async with service.session.get(service.url("/readyz"), timeout=PROBE) as response:
        return response.status, await response.json()


async def test_adapters_stay_ready_and_accept_webchat_while_postgresql_is_down(
    infrastructure: Infrastructure, database_url: str
) -> None:
    proxy, proxied = await CuttableProxy.before_database(database_url)
    config = make_config(infrastructure.bootstrap_servers, proxied)
    router_config = msgspec.structs.replace(
        config, http=msgspec.structs.replace(config.http, port=free_port())
    )
    try:
        async with (
            running_service(config, roles=frozenset({Role.ADAPTERS})) as adapters,
            running_service(router_config, roles=frozenset({Role.ROUTER})) as router,
        ):
            proxy.cut()

            async def router_reports_the_database() -> bool:
                status, body = await _readyz(router)
                return status == 503 and "database" in body["problems"]

            await wait_until(router_reports_the_database, what="the router not ready")
            # The API's answer to an outage asks the client to come back.
            async with router.session.get(
                router.url("/v1/domains/acme/queues"),
                headers={"Authorization": "Bearer sbt_not_checkable_without_a_database"},
            ) as response:
                assert response.status == 503, await response.text()
                assert response.headers["Retry-After"] == "5"
            for index in range(3):
                assert await _readyz(adapters) == (200, {"status": "ready"})
                status, answer = await adapters.webchat(
                    {"session_id": "visitor-0001", "message_id": f"m{index}", "text": "hi"}
                )
                assert status == 202, answer
            # sealed with spare keys (runtime.sealing), named once PostgreSQL is back, and
            # routed: the router opens them
            assert adapters.app[TOPIC_KEYS].unnamed >= 1
            proxy.restore()
            await wait_until(lambda: _ready(router), timeout=30, what="the router ready again")
            conn = await asyncpg.connect(database_url)
            try:

                async def stored() -> bool:
                    count = await conn.fetchval("SELECT count(*) FROM messages")
                    return bool(count == 3)

                await wait_until(stored, timeout=30, what="the three messages stored")
                await wait_until(
                    lambda: adapters.app[TOPIC_KEYS].unnamed == 0, what="the spares named"
                )
                named = await conn.fetchval(
                    "SELECT count(*) FROM topic_keys WHERE spare AND domain = 'acme'"
                )
                assert named >= 1
            finally:
                await conn.close()
    finally:
        await proxy.stop()


async def _ready(service: Service) -> bool:
    return (await _readyz(service))[0] == 200


async def test_a_router_whose_database_stops_answering_names_its_stalled_partitions(
    infrastructure: Infrastructure, database_url: str
) -> None:
    proxy, proxied = await CuttableProxy.before_database(database_url)
    config = make_config(infrastructure.bootstrap_servers, proxied)
    try:
        async with (
            running_service(config) as service,
            Traffic(config, ["acme"], agents_per_domain=2) as traffic,
        ):
            service.app[READINESS].stall_seconds = 2.0  # 30 s in production
            await traffic.register_agents()
            await traffic.send_messages(5)
            # The router holds the partition and has stored what it read: a partition still
            # being taken over when the database stops answering is no stalled one.
            direct = await asyncpg.connect(database_url)
            try:

                async def stored() -> bool:
                    return bool(await direct.fetchval("SELECT count(*) FROM messages") == 5)

                await wait_until(stored, timeout=30, what="the first messages stored")
            finally:
                await direct.close()
            proxy.hang()  # connections stay open, nothing answers: no error is ever raised
            try:
                await traffic.send_messages(5)
                reports: list[dict[str, Any]] = []

                async def stalled() -> bool:
                    # Input keeps coming beyond what the stuck loop took in.
                    await traffic.send_messages(1)
                    status, body = await _readyz(service)
                    reports.append(body)
                    problems = body.get("problems", {})
                    return status == 503 and {"stalled", "database"} <= problems.keys()

                await wait_until(stalled, timeout=20, what="the stalled partition named")
            finally:
                proxy.restore()  # else leaving would wait on the silent connections
            problems = reports[-1]["problems"]
            assert problems["database"] == "TimeoutError", problems
            acme = kafka.partition_for("acme", config.kafka.partitions)
            assert problems["stalled"].startswith(f"partitions [{acme}] have input waiting")
            await wait_until(lambda: _ready(service), timeout=60, what="ready again")
    finally:
        await proxy.stop()


FULL_DISK = """
CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$;
CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON router_offsets
  FOR EACH STATEMENT EXECUTE FUNCTION disk_full();
"""
"""Every transaction of the routing loop fails as on a full disk, and reads answer."""


async def test_a_router_whose_writes_fail_while_reads_answer_stays_not_ready(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """Each failure reloads the partitions, which only reads and succeeds; the router is
    not ready again until what it read again is written."""
    config = make_config(infrastructure.bootstrap_servers, database_url)
    conn = await asyncpg.connect(database_url)
    try:
        async with (
            running_service(config) as service,
            Traffic(config, ["acme"], agents_per_domain=2) as traffic,
        ):
            await traffic.register_agents()
            await traffic.send_messages(5)
            await wait_until(lambda: _ready(service), timeout=30, what="ready")
            await conn.execute(FULL_DISK)
            try:
                await traffic.send_messages(5)

                async def writes_failing() -> bool:
                    status, body = await _readyz(service)
                    return status == 503 and "DiskFullError" in body["problems"].get("router", "")

                await wait_until(writes_failing, timeout=20, what="the failing writes named")
                # Several rounds of failed write, pause and reload, each probe not ready.
                answers = []
                for _ in range(40):
                    answers.append(await _readyz(service))
                    await asyncio.sleep(0.1)
                assert [status for status, _ in answers] == [503] * len(answers), answers
                assert service.app[ROUTER_WORKER].partitions
            finally:
                await conn.execute("DROP TRIGGER disk_full ON router_offsets")
            await wait_until(lambda: _ready(service), timeout=30, what="ready again")

            async def all_stored() -> bool:
                return bool(await conn.fetchval("SELECT count(*) FROM messages") == 10)

            await wait_until(all_stored, timeout=30, what="the ten messages stored")
    finally:
        await conn.close()


async def test_topics_made_anew_with_other_partition_counts_make_every_process_not_ready(
    database_url: str, tmp_path: Path
) -> None:
    """A broker that came back empty while the processes ran: their clients' next requests
    make the topics anew with the broker's own partition count (4 for the embedded one),
    records would go to partitions no router of the old count reads, and every process
    says so."""
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        config = make_config(broker.bootstrap_servers, database_url, {"kafka": {"partitions": 1}})
        async with running_service(config) as service:
            assert await _ready(service)
            broker.stop()
            broker = EmbeddedBroker(tmp_path / "broker", port=broker.port)  # empty
            broker.start()
            changed = re.compile(
                rf"{re.escape(config.topic(topics.INBOUND))} has (\d+) partitions,"
                " 1 when this process started"
            )

            async def named() -> re.Match[str] | None:
                _, body = await _readyz(service)
                return changed.match(body.get("problems", {}).get("topics", ""))

            found = await wait_until(named, timeout=30, what="the partition counts named")
            assert found.group(1) != "1"
            assert (await _readyz(service))[0] == 503
    finally:
        broker.stop()
