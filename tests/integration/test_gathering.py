"""The router's loop under load, through the running service (``router.shell.gathering``):
while messages come at ``router.gather_above_per_s`` or more, batches start at most one
per ``router.gather_ms`` (``switchboard_router_gathering`` says so), every message is
still routed, and a deadline due meanwhile fires on time, not at the end of the wait.

The threshold is set low (10 messages a second) and the interval long (one second), so
that a stream of 25 messages a second gathers and a late timer would show: a conversation
nobody writes in is released, then closed ``close_after`` seconds after it was assigned,
while the stream goes on (into a conversation of its own, applied at least once a second:
never inactive for ``release_after``).
"""

from __future__ import annotations

import asyncio

import pytest

from runtime.appkeys import INBOUND_PUBLISHER
from schemas import (
    ROUTING_DECODER,
    ConversationAssigned,
    ConversationClosed,
    topics,
)
from tests.conftest import Infrastructure
from tests.support import (
    Feed,
    make_config,
    running_service,
    scraped,
    sms_received,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ADMIN_TOKEN = "gathering-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GATHER_MS = 1_000
STREAM_PER_S = 25
RELEASE_AFTER = 3.0
CLOSE_AFTER = 3.5
LATE_AT_MOST = 0.25
"""Seconds a deadline may fire after its time here: a quarter of the gathering interval
(the timers fire within milliseconds on an idle machine)."""


async def test_a_fast_stream_gathers_into_fewer_batches_and_deadlines_stay_on_time(
    infrastructure: Infrastructure, database_url: str
) -> None:
    config = make_config(
        infrastructure.bootstrap_servers,
        database_url,
        {
            "router": {"gather_ms": GATHER_MS, "gather_above_per_s": 10},
            "domains": {
                "acme": {
                    "routing": {
                        "inactivity": {"release_after": RELEASE_AFTER, "close_after": CLOSE_AFTER}
                    }
                },
            },
        },
    )
    environ = {"SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN}
    async with (
        Feed(config, topics.ROUTING, ROUTING_DECODER) as feed,
        running_service(config, environ) as service,
    ):
        await service.online_agent("ann", {"sms": 1_000}, ADMIN)
        publisher = service.app[INBOUND_PUBLISHER]
        assert await scraped(service, "switchboard_router_gathering") == 0.0
        batches_before = await scraped(service, "switchboard_router_batch_records_count")

        # One customer writes into a conversation that stays open: the stream goes
        # to it, so nothing else closes while the timed ones do.
        streamed = [sms_received("+14155550100", f"message {n}") for n in range(500)]
        # Three conversations nobody writes in, opened 0.4 s apart: their deadlines fall
        # at three points of the gathering interval, so a wait that ran past them would
        # make at least one late by more than a quarter of it.
        timed = {250 + 10 * k: sms_received(f"+1415555019{k}", "anyone there?") for k in range(3)}

        async def stream() -> None:
            for n, message in enumerate(streamed):
                await publisher.publish([message])
                if n in timed:  # ten seconds in: gathering after two windows (of 4 s)
                    await publisher.publish([timed[n]])
                await asyncio.sleep(1 / STREAM_PER_S)

        streaming = asyncio.create_task(stream())
        gathered = await wait_until(
            lambda: scraped(service, "switchboard_router_gathering"),
            timeout=20,
            what="the loop gathering",
        )
        assert gathered == 1.0

        for message in timed.values():
            assigned = await feed.first(ConversationAssigned, conversation_id=message.id)
            closed = await feed.first(ConversationClosed, conversation_id=message.id, timeout=20)
            late = closed.occurred_at - assigned.occurred_at - CLOSE_AFTER
            assert 0 <= late <= LATE_AT_MOST, f"closed {late:.3f} s after its time"
        assert not streaming.done(), "the stream ended before the deadlines were due"
        await streaming

        async def all_routed() -> bool:
            routed = {e.message_id for e in await feed.poll() if hasattr(e, "message_id")}
            return {m.id for m in streamed} <= routed

        await wait_until(all_routed, timeout=20, what="every streamed message routed")
        batches = await scraped(service, "switchboard_router_batch_records_count")
        # Twenty seconds of stream: a batch a message in the first two windows (200),
        # then one or two a second; one a message (500) without gathering.
        assert batches - batches_before <= 300, f"{batches - batches_before} batches"
