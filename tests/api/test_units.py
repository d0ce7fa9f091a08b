"""The API's pure parts: the stream buffer, the wait estimator, configuration, tokens."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from router.api.auth import new_token, token_sha256
from router.api.config import ApiConfig, AuthMode
from router.api.feed import RoutingFeed
from runtime.stats import estimate_wait
from schemas import CommandRejected, CustomerErased, CustomerLinked, RoutingEvent
from tests.api.support import assigned


def fed(feed: RoutingFeed, *events: RoutingEvent) -> None:
    feed.feed_records(msgspec.json.encode(event) for event in events)


def test_resumption_sends_what_came_after_the_last_event_id() -> None:
    feed = RoutingFeed(buffer=3)
    fed(feed, assigned("e1"), assigned("e2"), assigned("e3"))
    after, found = feed.recent("acme", "e1")
    assert found
    assert [e.event_id for e in after] == ["e2", "e3"]
    assert feed.recent("acme", None) == ([], True)


def test_an_id_older_than_the_buffer_gets_the_whole_buffer() -> None:
    feed = RoutingFeed(buffer=2)
    fed(feed, assigned("e1"), assigned("e2"), assigned("e3"))
    after, found = feed.recent("acme", "e1")
    assert not found
    assert [e.event_id for e in after] == ["e2", "e3"]


def test_an_erasure_takes_its_conversations_and_customer_level_events_out_of_the_buffer() -> None:
    feed = RoutingFeed(buffer=10)
    theirs = msgspec.structs.replace(assigned("e1"), conversation_id="c1", customer_id="sms:+1")
    others = msgspec.structs.replace(assigned("e2"), conversation_id="c2", customer_id="sms:+2")
    link = CustomerLinked(
        id="e3",
        domain="acme",
        occurred_at=1.0,
        customer_id="sms:+1",
        identity="email:a@b.org",
        linked=True,
    )
    erased = CustomerErased(id="e4", domain="acme", occurred_at=2.0, erasure_id="x")
    erased = msgspec.structs.replace(erased, conversation_ids=("c1",))
    before = msgspec.structs.replace(assigned("e0"), conversation_id="c0")
    fed(feed, before, theirs, others, link, erased)
    after, found = feed.recent("acme", "e0")
    assert found
    assert [e.event_id for e in after] == ["e2", "e4"]
    assert b"sms:+1" not in b"".join(e.data for e in after)
    # an id taken out reads as one older than the buffer: the whole (cleaned) buffer
    assert feed.recent("acme", "e1")[1] is False


async def test_republished_duplicates_reach_subscribers_once_and_filters_see_agents() -> None:
    feed = RoutingFeed(buffer=10)
    subscriber = feed.subscribe("acme")
    fed(feed, assigned("e1", "bob"), assigned("e1", "bob"), assigned("e2", "ann"))
    first, second = subscriber.queue.get_nowait(), subscriber.queue.get_nowait()
    assert subscriber.queue.empty()
    assert (first and first.agents, second and second.agents) == ({"bob"}, {"ann"})
    other = feed.subscribe("globex")
    fed(feed, assigned("e3"))
    assert other.queue.empty()


async def test_a_verdict_settles_the_waiting_command_and_reaches_the_issuer() -> None:
    feed = RoutingFeed(buffer=10)
    future = feed.expect("cmd-1", "ann")
    rejected = CommandRejected(
        id="v1", domain="acme", occurred_at=1.0, command_id="cmd-1", reason="not_owner"
    )
    feed.feed_records([msgspec.json.encode(rejected)])
    assert future.result().reason == "not_owner"  # type: ignore[union-attr]
    (event,), _ = feed.recent("acme", "none")
    assert event.agents == {"ann"}
    feed.feed_records([b"not json", None])  # ignored


@pytest.mark.parametrize(
    ("waiting", "free", "online", "waits", "expected"),
    [
        (3, 0, 0, [1.0], None),  # nobody online
        (0, 2, 1, [], 0.0),  # free slots: at once
        (0, 2, 1, [4.0, 6.0, 100.0], 6.0),  # free slots: the recent median wait
        (5, 0, 2, [], None),  # no throughput to measure
        (5, 0, 2, [1.0] * 60, 360.0),  # 6 ahead at 60 an hour: 6 minutes
        (5, 2, 2, [1.0] * 60, 240.0),  # two free slots shorten the line
    ],
)
def test_the_wait_estimate(
    waiting: int, free: int, online: int, waits: list[float], expected: float | None
) -> None:
    assert estimate_wait(waiting, free, online, waits) == expected


def test_api_config_defaults_are_secure_and_bad_values_are_refused() -> None:
    assert ApiConfig().auth is AuthMode.TOKENS
    with pytest.raises(msgspec.ValidationError, match="command_timeout"):
        msgspec.convert({"command_timeout": 0}, ApiConfig)
    with pytest.raises(msgspec.ValidationError, match="request_timeout"):
        msgspec.convert({"command_timeout": 10, "request_timeout": 10}, ApiConfig)
    with pytest.raises(msgspec.ValidationError, match="request_timeout"):
        msgspec.convert({"request_timeout": 301}, ApiConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"auth": "maybe"}, ApiConfig)


def test_tokens_are_random_and_stored_as_their_hash() -> None:
    token = new_token()
    assert token.startswith("sbt_")
    assert token != new_token()
    assert token_sha256(token) == hashlib.sha256(token.encode()).hexdigest()


def test_the_packaged_demo_configuration_disables_auth_and_a_custom_one_does_not(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from switchboard.config import load_config

    assert load_config({}).api.auth is AuthMode.DISABLED
    assert isinstance(tmp_path, Path)
    custom = tmp_path / "c.toml"
    custom.write_text("[domains.acme]\n")
    assert load_config({}, custom).api.auth is AuthMode.TOKENS
