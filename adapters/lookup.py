"""Identity lookup: the platform's CRM says which customer profile a message's sender is.

A domain with an ``identity_lookup`` section asks the platform's HTTP endpoint about the
``customer_id`` (an identity of ``schemas.identity``: ``sms:+14155550100``,
``email:ann@example.com`` …) of every customer message its webhooks and web chat
normalize, and sets ``MessageReceived.known_customer_id`` to the answer; the router links
the identity to that profile before routing, so the person's own agent follows them
across addresses. Without the section nothing is asked and nothing waits.

Example (TOML)::

    [domains.acme.identity_lookup]
    url = "https://crm.acme.example/switchboard/identify"
    timeout_seconds = 0.5          # then the message goes on without a hint
    cache_seconds = 300            # a known identity's answer is reused this long
    negative_cache_seconds = 60    # an unknown identity's too
    cache_size = 100000            # identities remembered per domain (least recent go)
    secret_env = "ACME_CRM_LOOKUP_SECRET"   # signs each request (optional)

Protocol. ``POST {url}`` with ``Content-Type: application/json`` and the body
``{"domain": "acme", "identity": "sms:+14155550100", "channel": "sms"}``; with
``secret_env`` the header ``X-Switchboard-Signature: sha256=<hex>`` carries the
HMAC-SHA256 of the exact body bytes under the secret (compare it in constant time).
Answers:

- ``200 {"customer_id": "external:crm-42"}``: the identity belongs to that profile. Any
  identity of ``schemas.identity`` will do; it is normalized (``normalize_identity``), and
  one that cannot be is an error. Other members of the object are ignored.
- ``200 {"customer_id": null}`` or ``404``: the identity is unknown.
- anything else is an error: another status (redirects are not followed), a body that is
  not that JSON object or is larger than ``ANSWER_MAX_BYTES``, a refused connection, no
  answer within ``timeout_seconds`` (which also covers waiting for one of the process's
  ``CONNECTIONS`` connections).

Failures fail open: the message is published without a hint, at the latest
``timeout_seconds`` after the lookup started; the provider never sees a 5xx because of the
CRM, and nothing is retried. A failure is remembered for ``FAILURE_SECONDS`` (5 s) for its
identity, and after ``PAUSE_AFTER_FAILURES`` failures in a row the domain's lookups pause
for as long (one request then probes the CRM again): a failing CRM is not stormed, and
messages meanwhile go on at once.

Answers are cached per domain and identity (``AnswerCache``: least recently used first
out, ``cache_size`` at most, each answer for its TTL), and concurrent lookups of one
identity share one request. A domain whose section changes (a new configuration version)
starts with an empty cache; the others keep theirs.

Each lookup is counted once in ``switchboard_identity_lookups_total{domain,outcome}``:
``hit`` and ``miss`` (known, unknown) and ``error`` and ``timeout`` were answered by a
request (their own, or one shared with concurrent lookups of the same identity),
``cached`` from the cache, ``skipped`` not asked because of a recent failure. Logs name
the domain, the outcome and the failure's kind, never the identity, the answer, the URL
or the secret.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

import aiohttp
import msgspec
import structlog

from adapters.base import hmac_hex, read_bounded
from adapters.config import SecretMissing, resolve_secret
from runtime.callbacks import AllowedAddresses, callback_session
from runtime.metrics import Metrics
from schemas import InboundEvent, MessageReceived
from schemas.identity import normalize_identity
from schemas.limits import UnusableValue

log = structlog.get_logger(__name__)

URL_MAX = 2048
"""Longest lookup URL."""
TIMEOUT_MAX = 5.0
"""Longest ``timeout_seconds``: a webhook waits for it before it answers the provider."""
TTL_MAX = 86_400.0
"""Longest ``cache_seconds`` and ``negative_cache_seconds`` (a day)."""
CACHE_SIZE_MAX = 1_000_000
"""Most identities a domain's cache may hold (about 350 bytes each, per adapter process)."""
ANSWER_MAX_BYTES = 16 * 1024
"""Largest answer body read (an identity is at most a few hundred characters)."""
CONNECTIONS = 100
"""Connections to the CRMs of all domains, per adapter process."""
FAILURE_SECONDS = 5.0
"""How long a failure is remembered: for its identity, and a domain's pause."""
PAUSE_AFTER_FAILURES = 5
"""Failures in a row after which a domain's lookups pause for ``FAILURE_SECONDS``."""
SIGNATURE_HEADER = "X-Switchboard-Signature"
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

Seconds = Annotated[float, msgspec.Meta(ge=0, le=TTL_MAX)]


class IdentityLookupConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[domains.<name>.identity_lookup]``: where to ask who a customer is (see the module
    docstring for the protocol). Absent: no lookup."""

    url: str
    """The CRM's endpoint, ``http://`` or ``https://``, at most 2048 characters, without
    user or password (sign with ``secret_env`` instead). Its query string is never logged."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=TIMEOUT_MAX)] = 0.5
    """Longest wait for an answer, connection included (0 to 5): then the message goes on
    without a hint. A webhook's answer to its provider waits for it."""
    cache_seconds: Seconds = 300.0
    """How long a known identity's answer is reused (0 to 86400; 0: ask every time)."""
    negative_cache_seconds: Seconds = 60.0
    """How long an unknown identity's answer is reused (0 to 86400)."""
    cache_size: Annotated[int, msgspec.Meta(ge=1, le=CACHE_SIZE_MAX)] = 100_000
    """Identities the domain's cache holds at most (1 to 1,000,000; about 350 bytes each);
    the least recently used go first. Each adapter process keeps its own."""
    secret_env: str | None = None
    """Variable (or secrets-file entry) holding the secret that signs each request
    (``X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body>``); unset: unsigned."""

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.secret_env is not None and not _SECRET_NAME.fullmatch(self.secret_env):
            raise ValueError(
                "identity_lookup.secret_env names a variable: letters, digits and _, at most 128"
            )


def _check_url(url: str) -> None:
    if (
        len(url) > URL_MAX
        or not url.isascii()
        or any(c.isspace() or c < " " or c == "\x7f" for c in url)
    ):
        raise ValueError(
            f"identity_lookup.url must be at most {URL_MAX} printable ASCII characters"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        raise ValueError("identity_lookup.url is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("identity_lookup.url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "identity_lookup.url must not hold a user or password: sign with secret_env"
        )


class Outcome(enum.StrEnum):
    """What became of one lookup (the ``outcome`` label)."""

    HIT = "hit"
    MISS = "miss"
    CACHED = "cached"
    ERROR = "error"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Answer:
    """The CRM's answer about one identity, or why there is none."""

    outcome: Outcome
    """``HIT``, ``MISS``, ``ERROR`` or ``TIMEOUT``."""
    customer_id: str | None = None
    """The profile (``HIT`` only)."""
    reason: str = ""
    """What went wrong (``ERROR``, ``TIMEOUT``), for the log: never a value of the request
    or of the answer."""

    @property
    def failed(self) -> bool:
        return self.outcome in (Outcome.ERROR, Outcome.TIMEOUT)


# -- the cache (no I/O, time passed in) ---------------------------------------------------


class AnswerCache:
    """Answers by identity, each until its expiry, the least recently used dropped first
    beyond ``size``. Expired answers are dropped when read or pushed out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[float, Answer]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, identity: str, now: float) -> Answer | None:
        entry = self._entries.get(identity)
        if entry is None:
            return None
        expires_at, answer = entry
        if now >= expires_at:
            del self._entries[identity]
            return None
        self._entries.move_to_end(identity)
        return answer

    def put(self, identity: str, answer: Answer, expires_at: float, now: float) -> None:
        if expires_at <= now:
            self._entries.pop(identity, None)
            return
        self._entries[identity] = (expires_at, answer)
        self._entries.move_to_end(identity)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


# -- one request -------------------------------------------------------------------------


class LookupRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The body of a lookup request."""

    domain: str
    identity: str
    channel: str


class _AnswerBody(msgspec.Struct, frozen=True, kw_only=True):
    customer_id: str | None


_ENCODER = msgspec.json.Encoder()
_ANSWER_DECODER = msgspec.json.Decoder(_AnswerBody)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Switchboard-Signature`` value of ``body``: ``sha256=`` and the hex HMAC."""
    return "sha256=" + hmac_hex(secret, body)


async def ask(
    session: aiohttp.ClientSession,
    config: IdentityLookupConfig,
    request: LookupRequest,
    secret: str | None,
) -> Answer:
    """One request to the CRM (the module docstring's protocol), never raising for what the
    CRM or the network does."""
    body = _ENCODER.encode(request)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        async with (
            asyncio.timeout(config.timeout_seconds),
            session.post(config.url, data=body, headers=headers, allow_redirects=False) as reply,
        ):
            if reply.status == 404:
                return Answer(Outcome.MISS)
            if reply.status != 200:
                return Answer(Outcome.ERROR, reason=f"status {reply.status}")
            raw = await read_bounded(reply, ANSWER_MAX_BYTES)
    except TimeoutError:
        return Answer(Outcome.TIMEOUT, reason=f"no answer within {config.timeout_seconds} s")
    except (aiohttp.ClientError, OSError) as error:
        return Answer(Outcome.ERROR, reason=type(error).__name__)
    if raw is None:
        return Answer(Outcome.ERROR, reason=f"answer larger than {ANSWER_MAX_BYTES} bytes")
    return read_answer(raw)


def read_answer(raw: bytes) -> Answer:
    """A 200 answer's body as an ``Answer`` (``ERROR`` when it is not the protocol's)."""
    try:
        answer = _ANSWER_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return Answer(Outcome.ERROR, reason='answer is not {"customer_id": string or null}')
    if answer.customer_id is None:
        return Answer(Outcome.MISS)
    try:
        return Answer(Outcome.HIT, normalize_identity(answer.customer_id))
    except UnusableValue:
        return Answer(Outcome.ERROR, reason="answer's customer_id is not an identity")


# -- a domain's lookups -------------------------------------------------------------------

Send = Callable[[IdentityLookupConfig, LookupRequest], Awaitable[Answer]]
"""Makes one request (``IdentityLookups`` sends with its session; tests play the CRM)."""


class DomainLookup:
    """The lookups of one domain: its section, its cache, its requests in flight and its
    run of failures."""

    def __init__(
        self, domain: str, config: IdentityLookupConfig, clock: Callable[[], float]
    ) -> None:
        self.domain = domain
        self.config = config
        self.cache = AnswerCache(config.cache_size)
        self._clock = clock
        self._in_flight: dict[str, asyncio.Task[Answer]] = {}
        self._failures = 0
        """Failed requests in a row."""
        self._paused_until = 0.0

    async def lookup(self, identity: str, channel: str, send: Send) -> tuple[Outcome, str | None]:
        """The outcome of one lookup of ``identity`` and the profile it names, if any;
        ``send`` makes the request."""
        now = self._clock()
        cached = self.cache.get(identity, now)
        if cached is not None:
            if cached.failed:
                return Outcome.SKIPPED, None
            return Outcome.CACHED, cached.customer_id
        task = self._in_flight.get(identity)
        if task is None:
            if now < self._paused_until:
                return Outcome.SKIPPED, None
            request = LookupRequest(domain=self.domain, identity=identity, channel=channel)
            task = asyncio.create_task(self._request(request, send))
            self._in_flight[identity] = task
            task.add_done_callback(lambda _: self._in_flight.pop(identity, None))
        # Shielded: a lookup given up by its caller (a client gone) does not cancel the
        # request the others share; the request's own timeout bounds it.
        answer = await asyncio.shield(task)
        return answer.outcome, answer.customer_id

    async def _request(self, request: LookupRequest, send: Send) -> Answer:
        """Ask, and remember the answer once, whoever waits for it."""
        answer = await send(self.config, request)
        now = self._clock()
        config = self.config
        if answer.outcome is Outcome.HIT:
            ttl = config.cache_seconds
        elif answer.outcome is Outcome.MISS:
            ttl = config.negative_cache_seconds
        else:
            ttl = FAILURE_SECONDS
        self.cache.put(request.identity, answer, now + ttl, now)
        self._note(answer, now)
        return answer

    def _note(self, answer: Answer, now: float) -> None:
        if not answer.failed:
            if self._failures >= PAUSE_AFTER_FAILURES:
                log.info("identity_lookup_resumed", domain=self.domain)
            self._failures = 0
            return
        self._failures += 1
        log.warning(
            "identity_lookup_failed",
            domain=self.domain,
            outcome=str(answer.outcome),
            reason=answer.reason,
        )
        if self._failures >= PAUSE_AFTER_FAILURES:
            self._paused_until = now + FAILURE_SECONDS
            log.warning(
                "identity_lookup_paused",
                domain=self.domain,
                failures=self._failures,
                seconds=FAILURE_SECONDS,
            )

    def cancel(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()


# -- the process's lookups -----------------------------------------------------------------


class IdentityLookups:
    """Every domain's lookups in one adapter process, and their HTTP session.

    Built with the app, started (``start``: the session) and closed with it; until then,
    and for a domain without a section, messages pass unchanged.
    """

    def __init__(
        self,
        metrics: Metrics,
        environ: Mapping[str, str],
        configs: Mapping[str, IdentityLookupConfig] | None = None,
        *,
        allowed: AllowedAddresses | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self._environ = environ
        """Looked up at each request: the secrets file is read again with each version."""
        self._allowed = allowed or AllowedAddresses()
        """Where the CRMs may be (``[callbacks]``)."""
        self._clock = clock
        self._domains: dict[str, DomainLookup] = {}
        self._session: aiohttp.ClientSession | None = None
        self.reconfigure(configs or {})

    def reconfigure(self, configs: Mapping[str, IdentityLookupConfig]) -> None:
        """Follow a new configuration version: a domain whose section is unchanged keeps
        its cache; a changed one starts anew; a removed one stops asking."""
        domains: dict[str, DomainLookup] = {}
        for domain, config in configs.items():
            current = self._domains.get(domain)
            if current is not None and current.config == config:
                domains[domain] = current
            else:
                domains[domain] = DomainLookup(domain, config, self._clock)
        self._domains = domains

    async def start(self) -> None:
        self._session = callback_session(
            self._allowed,
            connections=CONNECTIONS,
            # Each request has its domain's timeout; this only bounds what escapes it.
            total_seconds=TIMEOUT_MAX,
            user_agent="Switchboard-identity-lookup",
        )

    async def close(self) -> None:
        for lookup in self._domains.values():
            lookup.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def annotate(self, events: list[InboundEvent]) -> list[InboundEvent]:
        """``events`` with ``known_customer_id`` set on each customer message of a domain
        with a lookup whose CRM knows the sender; the lookups of one batch run concurrently.
        Without any such message the same list comes back, nothing awaited."""
        domains = self._domains
        if not domains:
            return events
        wanted = [
            (index, event)
            for index, event in enumerate(events)
            if isinstance(event, MessageReceived) and event.domain in domains
        ]
        if not wanted or self._session is None:
            return events
        known = await asyncio.gather(*(self._known(message) for _, message in wanted))
        annotated = list(events)
        for (index, message), customer_id in zip(wanted, known, strict=True):
            if customer_id is not None:
                annotated[index] = msgspec.structs.replace(message, known_customer_id=customer_id)
        return annotated

    async def annotate_message(self, message: MessageReceived) -> MessageReceived:
        """``annotate`` for one message."""
        if message.domain not in self._domains or self._session is None:
            return message
        known = await self._known(message)
        if known is None:
            return message
        return msgspec.structs.replace(message, known_customer_id=known)

    async def _known(self, message: MessageReceived) -> str | None:
        lookup = self._domains.get(message.domain)
        if lookup is None:
            return None
        outcome, known = await lookup.lookup(message.customer_id, message.channel.value, self._ask)
        metrics = self.metrics
        metrics.for_domain(message.domain).counter(metrics.identity_lookups, outcome).inc()
        return known

    async def _ask(self, config: IdentityLookupConfig, request: LookupRequest) -> Answer:
        session = self._session
        if session is None:
            return Answer(Outcome.ERROR, reason="stopped")
        secret = None
        if config.secret_env is not None:
            try:
                secret = resolve_secret(config.secret_env, self._environ)
            except SecretMissing as error:
                log.error(
                    "identity_lookup_secret_missing",
                    domain=request.domain,
                    variable=error.env_name,
                )
                return Answer(Outcome.ERROR, reason="secret missing")
        return await ask(session, config, request, secret)
