"""The identity lookup (``adapters.lookup``), by rule:

1. The section is validated at load, naming the field; absent means no lookup.
2. The cache: an answer lasts its TTL (known 300 s, unknown 60 s, failure 5 s), the least
   recently used goes first beyond ``cache_size``; concurrent lookups of an identity share
   one request, which a waiter giving up does not cancel.
3. Five failures in a row pause a domain's lookups for 5 s, then one request probes.
4. The protocol over HTTP: the signed body (verified here as a CRM would), the answers, and
   every failure failing open within the timeout.
5. ``annotate``: customer messages of configured domains only, concurrently, the same
   list back when there is nothing to ask; a new version keeps an unchanged domain's cache.
6. The webhooks ask before they publish; counters by outcome; no identity, answer, URL or
   secret in the logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.lookup import (
    ANSWER_MAX_BYTES,
    FAILURE_SECONDS,
    PAUSE_AFTER_FAILURES,
    SIGNATURE_HEADER,
    TIMEOUT_MAX,
    Answer,
    AnswerCache,
    DomainLookup,
    IdentityLookupConfig,
    IdentityLookups,
    LookupRequest,
    Outcome,
    read_answer,
    signature,
)
from adapters.webhooks import WebhookContext, refuse_encoded_bodies, webhook_routes
from runtime.callbacks import AllowedAddresses
from runtime.config import ConfigError
from runtime.metrics import Metrics
from schemas import Channel, DeliveryStatus, DeliveryStatusChanged, InboundEvent, MessageReceived
from switchboard.config import load_config
from switchboard.embedded import free_port
from tests.adapters.conftest import CHANNELS, ENVIRON, MemoryNonces, RecordingPublisher
from tests.adapters.test_twilio import inbound_sms, sign
from tests.logcapture import captured_logs, lines_of

SECRET = "crm-lookup-secret-5e1f"
IDENTITY = "sms:+14155552671"
PROFILE = "external:crm-42"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeCrm:
    """Plays the CRM for ``DomainLookup``: answers by identity (unknown otherwise), records
    each request, and holds them while ``gate`` is closed."""

    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[LookupRequest] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def __call__(self, config: IdentityLookupConfig, request: LookupRequest) -> Answer:
        self.requests.append(request)
        await self.gate.wait()
        return self.answers.get(request.identity, Answer(Outcome.MISS))


def config(**overrides: Any) -> IdentityLookupConfig:
    return msgspec.convert(
        {"url": "http://127.0.0.1:9/identify", **overrides}, IdentityLookupConfig
    )


def domain_lookup(clock: FakeClock, **overrides: Any) -> DomainLookup:
    return DomainLookup("acme", config(**overrides), clock)


def message(customer_id: str = IDENTITY, domain: str = "acme", number: int = 1) -> MessageReceived:
    return MessageReceived(
        id=f"m{number}",
        domain=domain,
        occurred_at=1.0,
        channel=Channel.SMS,
        endpoint="+14155550100",
        customer_address=customer_id.partition(":")[2],
        customer_id=customer_id,
        conversation_key=f"sms:+14155550100:{customer_id}",
        provider_message_id=f"SM{number}",
    )


# -- rule 1: the section -------------------------------------------------------------------


def test_the_section_has_documented_defaults() -> None:
    section = config()
    assert (
        section.timeout_seconds,
        section.cache_seconds,
        section.negative_cache_seconds,
        section.cache_size,
        section.secret_env,
    ) == (0.5, 300.0, 60.0, 100_000, None)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"url": "ftp://crm.example/x"}, "http:// or https://"),
        ({"url": "https:///identify"}, "with a host"),
        ({"url": "https://user:pw@crm.example/x"}, "user or password"),
        ({"url": "https://crm.example/" + "x" * 2048}, "at most 2048"),
        ({"url": "https://crm.example/a b"}, "printable ASCII"),
        ({"url": "https://crm.example:99999/x"}, "not a URL"),
        ({"timeout_seconds": 0}, "> 0"),
        ({"timeout_seconds": 5.5}, "<= 5"),
        ({"cache_seconds": -1}, ">= 0"),
        ({"negative_cache_seconds": 86_401}, "<= 86400"),
        ({"cache_size": 0}, ">= 1"),
        ({"cache_size": 1_000_001}, "<= 1000000"),
        ({"secret_env": "not a name"}, "names a variable"),
        ({"retries": 3}, "unknown field"),
    ],
)
def test_a_bad_section_is_refused_with_its_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=reason):
        config(**overrides)


def test_load_config_names_the_domain_and_the_field(tmp_path: Any) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text(
        '[domains.acme.identity_lookup]\nurl = "https://crm.example/x"\ntimeout_seconds = 9\n'
    )
    with pytest.raises(ConfigError, match=r"domains\.acme\.identity_lookup\.timeout_seconds"):
        load_config({}, path)
    path.write_text(
        '[domains.acme]\n[domains.globex.identity_lookup]\nurl = "https://crm.example/x"\n'
    )
    loaded = load_config({}, path)
    assert loaded.domains["acme"].identity_lookup is None
    assert loaded.domains["globex"].identity_lookup == config(url="https://crm.example/x")


# -- rule 2: the cache -----------------------------------------------------------------------


def test_an_answer_lasts_until_its_expiry() -> None:
    cache = AnswerCache(10)
    cache.put(IDENTITY, Answer(Outcome.HIT, PROFILE), expires_at=100.0, now=0.0)
    assert cache.get(IDENTITY, 99.9) == Answer(Outcome.HIT, PROFILE)
    assert cache.get(IDENTITY, 100.0) is None
    assert len(cache) == 0  # an expired answer read is dropped


def test_an_answer_already_expired_is_not_kept() -> None:
    cache = AnswerCache(10)
    cache.put(IDENTITY, Answer(Outcome.HIT, PROFILE), expires_at=100.0, now=0.0)
    cache.put(IDENTITY, Answer(Outcome.MISS), expires_at=5.0, now=5.0)  # a TTL of 0
    assert cache.get(IDENTITY, 5.0) is None


def test_beyond_its_size_the_least_recently_used_goes_first() -> None:
    cache = AnswerCache(3)
    for name in ("a", "b", "c"):
        cache.put(f"email:{name}@x.example", Answer(Outcome.MISS), 100.0, 0.0)
    assert cache.get("email:a@x.example", 1.0) is not None  # a is now the most recent
    cache.put("email:d@x.example", Answer(Outcome.MISS), 100.0, 1.0)
    assert len(cache) == 3
    assert cache.get("email:b@x.example", 1.0) is None
    assert all(cache.get(f"email:{n}@x.example", 1.0) is not None for n in ("a", "c", "d"))


async def test_a_known_identity_is_asked_once_per_cache_seconds() -> None:
    clock, crm = FakeClock(), FakeCrm({IDENTITY: Answer(Outcome.HIT, PROFILE)})
    lookup = domain_lookup(clock, cache_seconds=300)
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.HIT, PROFILE)
    clock.now += 299
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.CACHED, PROFILE)
    clock.now += 1
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.HIT, PROFILE)
    assert [r.identity for r in crm.requests] == [IDENTITY, IDENTITY]
    assert crm.requests[0] == LookupRequest(domain="acme", identity=IDENTITY, channel="sms")


async def test_an_unknown_identity_is_asked_once_per_negative_cache_seconds() -> None:
    clock, crm = FakeClock(), FakeCrm()
    lookup = domain_lookup(clock, negative_cache_seconds=60)
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.MISS, None)
    clock.now += 59
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.CACHED, None)
    clock.now += 1
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.MISS, None)
    assert len(crm.requests) == 2


async def test_a_failure_is_remembered_for_a_few_seconds_only() -> None:
    clock, crm = FakeClock(), FakeCrm({IDENTITY: Answer(Outcome.ERROR, reason="status 500")})
    lookup = domain_lookup(clock)
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.ERROR, None)
    clock.now += FAILURE_SECONDS - 0.1
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.SKIPPED, None)
    crm.answers[IDENTITY] = Answer(Outcome.HIT, PROFILE)
    clock.now += 0.1
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.HIT, PROFILE)
    assert len(crm.requests) == 2


async def test_concurrent_lookups_of_an_identity_share_one_request() -> None:
    clock, crm = FakeClock(), FakeCrm({IDENTITY: Answer(Outcome.HIT, PROFILE)})
    lookup = domain_lookup(clock)
    crm.gate.clear()
    waiting = [asyncio.create_task(lookup.lookup(IDENTITY, "sms", crm)) for _ in range(10)]
    other = asyncio.create_task(lookup.lookup("email:ann@example.org", "email", crm))
    await asyncio.sleep(0.01)
    assert len(crm.requests) == 2  # one per identity, however many wait
    crm.gate.set()
    assert await asyncio.gather(*waiting) == [(Outcome.HIT, PROFILE)] * 10
    assert await other == (Outcome.MISS, None)
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.CACHED, PROFILE)
    assert len(crm.requests) == 2


async def test_a_waiter_giving_up_does_not_cancel_the_shared_request() -> None:
    clock, crm = FakeClock(), FakeCrm({IDENTITY: Answer(Outcome.HIT, PROFILE)})
    lookup = domain_lookup(clock)
    crm.gate.clear()
    first = asyncio.create_task(lookup.lookup(IDENTITY, "sms", crm))
    second = asyncio.create_task(lookup.lookup(IDENTITY, "sms", crm))
    await asyncio.sleep(0.01)
    first.cancel()
    crm.gate.set()
    assert await second == (Outcome.HIT, PROFILE)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await lookup.lookup(IDENTITY, "sms", crm) == (Outcome.CACHED, PROFILE)
    assert len(crm.requests) == 1


# -- rule 3: a failing CRM is not stormed ----------------------------------------------------


async def test_failures_in_a_row_pause_the_domain_then_one_request_probes() -> None:
    clock, crm = FakeClock(), FakeCrm()
    lookup = domain_lookup(clock)
    failing = Answer(Outcome.TIMEOUT)
    identities = [f"sms:+1415555{n:04d}" for n in range(20)]
    crm.answers = dict.fromkeys(identities, failing)
    outcomes = [(await lookup.lookup(i, "sms", crm))[0] for i in identities[:PAUSE_AFTER_FAILURES]]
    assert outcomes == [Outcome.TIMEOUT] * PAUSE_AFTER_FAILURES
    assert await lookup.lookup(identities[10], "sms", crm) == (Outcome.SKIPPED, None)
    assert len(crm.requests) == PAUSE_AFTER_FAILURES
    clock.now += FAILURE_SECONDS
    crm.answers[identities[11]] = Answer(Outcome.HIT, PROFILE)
    assert await lookup.lookup(identities[11], "sms", crm) == (Outcome.HIT, PROFILE)
    assert await lookup.lookup(identities[12], "sms", crm) == (Outcome.TIMEOUT, None)  # no pause
    assert len(crm.requests) == PAUSE_AFTER_FAILURES + 2


async def test_a_failed_probe_pauses_again_at_once() -> None:
    clock, crm = FakeClock(), FakeCrm()
    lookup = domain_lookup(clock)
    identities = [f"sms:+1415555{n:04d}" for n in range(10)]
    crm.answers = dict.fromkeys(identities, Answer(Outcome.ERROR, reason="status 503"))
    for identity in identities[:PAUSE_AFTER_FAILURES]:
        await lookup.lookup(identity, "sms", crm)
    clock.now += FAILURE_SECONDS
    assert await lookup.lookup(identities[6], "sms", crm) == (Outcome.ERROR, None)
    assert await lookup.lookup(identities[7], "sms", crm) == (Outcome.SKIPPED, None)


# -- rule 4: the protocol over HTTP ----------------------------------------------------------


@dataclass
class HttpCrm:
    """A CRM on 127.0.0.1 that verifies the signature as the README tells CRMs to, answers
    what ``reply`` says and records each request."""

    reply: Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]
    bodies: list[dict[str, Any]] = field(default_factory=list)
    signatures_valid: list[bool] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        given = request.headers.get(SIGNATURE_HEADER, "")
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        self.signatures_valid.append(hmac.compare_digest(given, expected))
        body = json.loads(raw)
        self.bodies.append(body)
        return await self.reply(body)


@pytest.fixture
async def crm() -> AsyncIterator[HttpCrm]:
    async def known(body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"customer_id": PROFILE})

    double = HttpCrm(known)
    app = web.Application()
    app.router.add_post("/identify", double.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    double.url = str(server.make_url("/identify")) + "?tenant=acme"
    yield double
    await server.close()


@pytest.fixture
async def lookups() -> AsyncIterator[IdentityLookups]:
    subject = IdentityLookups(Metrics(), {"CRM_SECRET": SECRET})
    await subject.start()
    yield subject
    await subject.close()


def configure(lookups: IdentityLookups, url: str, **overrides: Any) -> None:
    lookups.reconfigure({"acme": config(url=url, secret_env="CRM_SECRET", **overrides)})


def count(lookups: IdentityLookups, outcome: str, domain: str = "acme") -> float:
    value = lookups.metrics.registry.get_sample_value(
        "switchboard_identity_lookups_total", {"domain": domain, "outcome": outcome}
    )
    return value or 0.0


async def test_the_request_is_signed_and_the_crm_can_verify_it(
    crm: HttpCrm, lookups: IdentityLookups
) -> None:
    configure(lookups, crm.url)
    [annotated] = await lookups.annotate([message()])
    assert isinstance(annotated, MessageReceived)
    assert annotated.known_customer_id == PROFILE
    assert crm.bodies == [{"domain": "acme", "identity": IDENTITY, "channel": "sms"}]
    assert crm.signatures_valid == [True]


async def test_without_a_secret_the_request_is_not_signed(crm: HttpCrm) -> None:
    lookups = IdentityLookups(Metrics(), {})
    await lookups.start()
    try:
        lookups.reconfigure({"acme": config(url=crm.url)})
        assert (await lookups.annotate_message(message())).known_customer_id == PROFILE
    finally:
        await lookups.close()
    assert crm.signatures_valid == [False]


async def test_a_missing_secret_fails_open(crm: HttpCrm) -> None:
    lookups = IdentityLookups(Metrics(), {})
    await lookups.start()
    try:
        lookups.reconfigure({"acme": config(url=crm.url, secret_env="CRM_SECRET")})
        assert (await lookups.annotate_message(message())).known_customer_id is None
        assert count(lookups, "error") == 1
    finally:
        await lookups.close()
    assert crm.bodies == []  # nothing unsigned leaves


def test_the_signature_is_the_hmac_of_the_exact_body() -> None:
    body = b'{"domain":"acme","identity":"sms:+14155552671","channel":"sms"}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature(SECRET, body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"customer_id": "external:crm-42"}', Answer(Outcome.HIT, PROFILE)),
        (
            b'{"customer_id": " EMAIL:Ann@Example.org ", "name": "x"}',
            Answer(Outcome.HIT, "email:ann@example.org"),
        ),
        (b'{"customer_id": null}', Answer(Outcome.MISS)),
    ],
)
def test_the_answers_of_the_protocol(raw: bytes, expected: Answer) -> None:
    assert read_answer(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"<html>oops</html>",
        b"{}",
        b'{"customer_id": 42}',
        b'["external:crm-42"]',
        b'{"customer_id": "crm-42"}',  # no kind
        b'{"customer_id": "sms:not-a-number"}',
        b'{"customer_id": "external:a\\u0000b"}',
        b"[" * 5000,
    ],
)
def test_an_unusable_answer_is_an_error(raw: bytes) -> None:
    answer = read_answer(raw)
    assert answer.outcome is Outcome.ERROR
    assert answer.customer_id is None


def _replying(
    status: int = 200, body: bytes = b"", delay: float = 0.0, **headers: str
) -> Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]:
    async def reply(_: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return web.Response(status=status, body=body, headers=headers)

    return reply


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (_replying(404), "miss"),
        (_replying(200, b'{"customer_id": null}'), "miss"),
        (_replying(500, b'{"customer_id": "external:crm-42"}'), "error"),
        (_replying(200, b"garbage"), "error"),
        (_replying(200, b'{"customer_id": "external:' + b"x" * ANSWER_MAX_BYTES + b'"}'), "error"),
        (_replying(302, Location="http://127.0.0.1:9/elsewhere"), "error"),
        (_replying(200, b'{"customer_id": "external:crm-42"}', delay=2.0), "timeout"),
    ],
    ids=["404", "null", "500", "garbage", "too-large", "redirect", "slow"],
)
async def test_every_other_answer_fails_open_within_the_timeout(
    crm: HttpCrm,
    lookups: IdentityLookups,
    reply: Callable[[dict[str, Any]], Awaitable[web.StreamResponse]],
    outcome: str,
) -> None:
    crm.reply = reply
    configure(lookups, crm.url, timeout_seconds=0.3)
    started = time.monotonic()
    annotated = await lookups.annotate_message(message())
    elapsed = time.monotonic() - started
    assert annotated.known_customer_id is None
    assert elapsed < 0.3 + 0.25
    assert count(lookups, outcome) == 1


async def test_a_crm_not_listening_fails_open_at_once(lookups: IdentityLookups) -> None:
    configure(lookups, f"http://127.0.0.1:{free_port()}/identify")
    started = time.monotonic()
    assert (await lookups.annotate_message(message())).known_customer_id is None
    assert time.monotonic() - started < 0.5
    assert count(lookups, "error") == 1


async def test_a_crm_at_an_address_callbacks_does_not_allow_is_never_asked(
    crm: HttpCrm,
) -> None:
    lookups = IdentityLookups(
        Metrics(), {"CRM_SECRET": SECRET}, allowed=AllowedAddresses(["public", "10.0.0.0/8"])
    )
    await lookups.start()
    try:
        configure(lookups, crm.url)
        assert (await lookups.annotate_message(message())).known_customer_id is None
    finally:
        await lookups.close()
    assert crm.bodies == []
    assert count(lookups, "error") == 1


# -- rule 5: annotate ------------------------------------------------------------------------


def status_event() -> DeliveryStatusChanged:
    return DeliveryStatusChanged(
        id="s1",
        domain="acme",
        occurred_at=1.0,
        channel=Channel.SMS,
        provider_message_id="SM9",
        status=DeliveryStatus.DELIVERED,
    )


async def test_only_customer_messages_of_configured_domains_are_looked_up(
    crm: HttpCrm, lookups: IdentityLookups
) -> None:
    configure(lookups, crm.url)
    events: list[InboundEvent] = [status_event(), message(domain="globex"), message(number=2)]
    annotated = await lookups.annotate(events)
    assert annotated[:2] == events[:2]
    assert annotated[2] == msgspec.structs.replace(events[2], known_customer_id=PROFILE)
    assert [body["domain"] for body in crm.bodies] == ["acme"]


async def test_nothing_to_ask_returns_the_same_list_without_waiting(
    lookups: IdentityLookups,
) -> None:
    events: list[InboundEvent] = [status_event(), message()]
    assert await lookups.annotate(events) is events  # no domain configured
    configure(lookups, "http://127.0.0.1:9/identify")
    assert await lookups.annotate(events[:1]) == events[:1]  # statuses only
    unstarted = IdentityLookups(Metrics(), {}, {"acme": config()})
    assert await unstarted.annotate(events) is events  # no session: pass unchanged


async def test_the_messages_of_one_request_are_looked_up_concurrently(
    crm: HttpCrm, lookups: IdentityLookups
) -> None:
    # The CRM answers once all five requests are in flight, not by a clock (a loaded machine
    # stretches any duration): asked one after another, the first would wait out its timeout
    # and every message would go on without a hint.
    all_in_flight = asyncio.Event()

    async def reply(_: dict[str, Any]) -> web.StreamResponse:
        if len(crm.bodies) == 5:
            all_in_flight.set()
        await all_in_flight.wait()
        return web.json_response({"customer_id": PROFILE})

    crm.reply = reply
    configure(lookups, crm.url, timeout_seconds=TIMEOUT_MAX)
    events: list[InboundEvent] = [message(f"sms:+1415555000{n}", number=n) for n in range(5)]
    annotated = await lookups.annotate(events)
    assert {e.known_customer_id for e in annotated if isinstance(e, MessageReceived)} == {PROFILE}
    assert len(crm.bodies) == 5
    assert count(lookups, "hit") == 5


async def test_a_new_version_keeps_an_unchanged_domains_cache_only(
    crm: HttpCrm, lookups: IdentityLookups
) -> None:
    configure(lookups, crm.url)
    await lookups.annotate_message(message())
    configure(lookups, crm.url)  # the same section: its cache stays
    await lookups.annotate_message(message())
    assert (len(crm.bodies), count(lookups, "cached")) == (1, 1)
    configure(lookups, crm.url, cache_seconds=600)  # changed: asked anew
    await lookups.annotate_message(message())
    assert len(crm.bodies) == 2
    lookups.reconfigure({})  # removed: not asked
    assert (await lookups.annotate_message(message())).known_customer_id is None
    assert len(crm.bodies) == 2


# -- rule 6: webhooks, counters and logs -----------------------------------------------------


async def test_the_webhook_publishes_the_hint_and_counts_the_lookup(crm: HttpCrm) -> None:
    metrics = Metrics()
    lookups = IdentityLookups(metrics, {"CRM_SECRET": SECRET})
    await lookups.start()
    publisher = RecordingPublisher()
    ctx = WebhookContext(
        channels=CHANNELS,
        environ=ENVIRON,
        publisher=publisher,
        nonces=MemoryNonces(),
        metrics=metrics,
        public_url="https://switchboard.example.com",
        lookups=lookups,
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    app.add_routes(webhook_routes(ctx))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        configure(lookups, crm.url)
        for sid in ("SM01", "SM02"):
            params = inbound_sms(MessageSid=sid)
            response = await client.post("/webhooks/twilio/sms", data=params, headers=sign(params))
            assert response.status == 200
    finally:
        await client.close()
        await lookups.close()
    # acme links SMS and WhatsApp by phone (tests.adapters.conftest)
    assert [m.known_customer_id for m in publisher.messages] == [PROFILE, PROFILE]
    assert [body["identity"] for body in crm.bodies] == ["phone:+14155552671"]
    assert [count(lookups, outcome) for outcome in ("hit", "cached")] == [1, 1]


async def test_logs_carry_neither_identity_nor_answer_nor_url_nor_secret(crm: HttpCrm) -> None:
    url = crm.url + "&token=planted-query-7d1c"
    with captured_logs([]) as buffer:
        lookups = IdentityLookups(Metrics(), {"CRM_SECRET": SECRET})
        await lookups.start()
        try:
            configure(lookups, url)
            await lookups.annotate_message(message())  # a hit
            crm.reply = _replying(200, b'{"customer_id": "planted answer"}')
            identities = [f"sms:+1415555{n:04d}" for n in range(PAUSE_AFTER_FAILURES + 1)]
            for number, identity in enumerate(identities):
                await lookups.annotate_message(message(identity, number=number))
        finally:
            await lookups.close()
    output = buffer.getvalue()
    lines = lines_of(buffer)
    assert [line["event"] for line in lines].count("identity_lookup_failed") == PAUSE_AFTER_FAILURES
    assert any(line["event"] == "identity_lookup_paused" for line in lines)
    for planted in (IDENTITY, "+14155552671", "+1415555", PROFILE, "crm-42", "planted", SECRET):
        assert planted not in output
    assert "identify" not in output
    assert "127.0.0.1" not in output
