"""The provider webhooks as aiohttp routes: read (bounded), verify, normalize, publish, answer.

Every request follows the same steps:
1. read the raw body, refusing more than ``max_body_bytes`` (inbound mail:
   ``max_email_body_bytes``) (413) and any body with a ``Content-Encoding`` (415, see
   ``refuse_encoded_bodies``);
2. verify the provider's signature or secret (401 missing, 403 wrong; 503 when our secret
   is unset, 404 when no endpoint of the provider is configured at all);
3. normalize into ``schemas`` events. A request refused before its signature is verified
   is a 4xx with a reason, nothing published; once verified, a request that cannot be
   read, or an item holding a value no event may carry (``adapters.base.Unusable``), is
   set aside instead (``parse_signed``);
4. claim the request's one-time token, for providers that sign one (Mailgun): 409 when
   it was already used, 503 with ``Retry-After`` when the token cache (PostgreSQL) cannot
   be reached; then mark the messages that opt the customer out or in (the provider's
   signal, else the domain's keywords: ``adapters.consent``); then ask the domain's
   identity lookup about the customer messages, when it has one (``adapters.lookup``:
   concurrently, bounded by its timeout, failing open);
   then publish the events, and the set-aside items to ``switchboard.dlq``, and wait for
   the broker's acknowledgement (503 when it cannot, and the claim is released so that
   the provider's retry of the same delivery is accepted);
5. only then answer 2xx in the provider's expected form.

Why 409 for a used token: Mailgun retries a request only when we did not answer 2xx, and
then we released its claim, so a used token is a replay, or the retry of a delivery we
accepted but whose 2xx was lost (already published). Mailgun retries a 409 at most for
its 8 hours, each refused without publishing; 406 would stop it at once, but would also
tell a genuine sender to drop mail if a token were ever claimed by mistake.

Why set aside and answer 2xx rather than refuse signed data: each provider redelivers
what it did not get a 2xx for, and the same bytes would be refused again. Meta retries
"until successfully completed" and unsubscribes an app whose webhook keeps failing
(developers.facebook.com/docs/messenger-platform/faq); Telegram retries an update "a
reasonable amount of attempts" (core.telegram.org/bots/api#setwebhook); Mailgun retries
anything but 200 and 406 for 8 hours, and on 406 drops the message
(documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-retries); Twilio does
not retry by default, so a 4xx would only lose the message in its error log
(twilio.com/docs/usage/security/availability-reliability), while connection overrides
(``#rc=``) make it retry. On the dead-letter topic the item keeps its reason and the
request body, for an operator to inspect or re-drive.

Each outcome is counted in ``switchboard_webhook_requests_total``; logs carry provider,
domains, counts and outcome, never bodies or customer identities. The ``webhook`` line of
a request is let through 10 times a minute per provider and outcome (the first one let
through after more carries ``suppressed``, how many were left out): its figures are the
counter's, and providers call as often as traffic comes.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from adapters.base import (
    BadRequest,
    Nonce,
    NonceStore,
    NonceStoreUnavailable,
    Normalized,
    Publisher,
    SignatureRejected,
    Unusable,
)
from adapters.config import ChannelsConfig, SecretMissing
from adapters.consent import consents, with_consent
from adapters.lookup import IdentityLookups
from runtime.http_errors import json_error, read_limited
from runtime.kafka import BrokerUnavailable, DeadLetter, KeysUnavailable
from runtime.logging import RateLimit, without_values
from runtime.metrics import Metrics
from runtime.outbound import OutboundConfig
from schemas import DeliveryStatusChanged, MessageReceived
from schemas.limits import CONTENT_TYPE_MAX, is_identifier

log = structlog.get_logger()

RETRY_AFTER_SECONDS = 60
"""``Retry-After`` of a webhook's 503 (the provider's own retry schedule still rules)."""


@dataclass(kw_only=True)
class WebhookContext:
    """What the webhook handlers need; built once by the app."""

    channels: ChannelsConfig
    """Replaced whole when a new configuration version arrives: a handler reads it once."""
    environ: Mapping[str, str]
    publisher: Publisher
    nonces: NonceStore
    """Tokens already used (Mailgun's), shared by every adapter process."""
    metrics: Metrics
    public_url: str | None = None
    max_body_bytes: int = 1024 * 1024
    max_email_body_bytes: int = 32 * 1024 * 1024
    """Inbound mail (``body_limit`` of its routes): whole mails with their attachments."""
    clock: Callable[[], float] = field(default=time.time)
    lookups: IdentityLookups | None = None
    """The domains' identity lookups (None: none at all)."""
    outbound: Mapping[str, OutboundConfig] = field(default_factory=dict)
    """Each domain's ``[domains.<d>.outbound]`` (its consent keywords); replaced whole when
    a new configuration version arrives. A domain not named gets the defaults."""
    log_limit: RateLimit = field(default_factory=RateLimit)
    """The ``webhook`` lines let through: 10 a minute per provider and outcome."""


class BodyTooLarge(BadRequest):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes", status=413)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, or ``BodyTooLarge`` as soon as it is known to exceed ``limit``."""
    body = await read_limited(request, limit)
    if body is None:
        raise BodyTooLarge(limit)
    return body


def error_response(status: int, reason: str) -> web.Response:
    return json_error(status, reason, retry_after_seconds=RETRY_AFTER_SECONDS)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IDENTITY_ENCODINGS = frozenset({"", "identity"})


@web.middleware
async def refuse_encoded_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """415 for a request body with a ``Content-Encoding`` other than identity, before
    anything reads it, on every route (webhooks, web chat and the API).

    No provider compresses its webhooks and our clients need not, so nothing is
    decompressed: no decompression bomb, and no error from a body that is not what its
    encoding says. The answer is sent and the connection closed at once: left open,
    aiohttp would go on reading (and decompressing) the body after the handler returns.
    """
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in IDENTITY_ENCODINGS or not request.body_exists:
        return await handler(request)
    response = web.json_response(
        {"error": "a Content-Encoding other than identity is not accepted"},
        status=415,
        headers={"Accept-Encoding": "identity"},
    )
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


Work = Callable[[bytes], Normalized]

REASONS_NAMED = 5
"""Distinct reasons a dead letter of several items names, the most frequent first."""


def dead_letters(
    provider: str, set_aside: Sequence[Unusable], body: bytes, content_type: str | None
) -> list[DeadLetter]:
    """The request's dead letters: one per domain its set-aside items belong to, naming
    their reasons without what they quote. Each holds the whole body, so one per item made
    a signed batch of 10,000 unusable items (30 KB) into 10,000 records of 30 KB."""
    if not set_aside:
        return []  # nearly every request
    reasons: dict[str | None, collections.Counter[str]] = {}
    for unusable in set_aside:
        # A reason never quotes a value (a parser's message may: "unknown value 'Ann'"),
        # as a refusal's log line does not.
        reason = without_values(unusable.reason)
        reasons.setdefault(unusable.domain, collections.Counter())[reason] += 1
    return [
        DeadLetter(
            source=f"webhook/{provider}",
            reason=_summary(counted),
            domain=domain,
            body=body,
            content_type=content_type,
        )
        for domain, counted in reasons.items()
    ]


def _log_limited(
    ctx: WebhookContext, event: str, provider: str, *, error: bool = False, **fields: object
) -> None:
    """A line every webhook meets while something is missing or away, rate limited per
    provider and event: one line each flooded the log (2,019 lines in 20 s at 100 webhooks
    a second, a broker outage)."""
    method = log.error if error else log.warning
    ctx.log_limit.write(method, event, (provider, event), provider=provider, **fields)


def _summary(reasons: collections.Counter[str]) -> str:
    """One item's reason, or ``"<n> items set aside: <reason> (<count> items); …"``."""
    total = sum(reasons.values())
    if total == 1:
        return next(iter(reasons))
    named = "; ".join(
        reason if count == 1 else f"{reason} ({count} items)"
        for reason, count in reasons.most_common(REASONS_NAMED)
    )
    others = len(reasons) - REASONS_NAMED
    return f"{total} items set aside: {named}" + (f"; {others} other reasons" if others > 0 else "")


async def serve(
    ctx: WebhookContext,
    provider: str,
    request: web.Request,
    work: Work,
    ok: Callable[[], web.Response],
    *,
    empty_outcome: str = "ignored",
    body_limit: int | None = None,
) -> web.Response:
    """Steps 1-5 of the module docstring for one request; the body is read up to
    ``body_limit`` (``ctx.max_body_bytes`` when None)."""
    m = ctx.metrics
    try:
        # Steps 1-3
        body = await read_body(request, body_limit or ctx.max_body_bytes)
        normalized = work(body)
    except BodyTooLarge as exc:
        return _refused(ctx, provider, "too_large", exc)
    except SignatureRejected as exc:
        m.child(m.signature_failures, provider).inc()
        return _refused(ctx, provider, "bad_signature", exc)
    except BadRequest as exc:
        return _refused(ctx, provider, "bad_request", exc)
    except SecretMissing as exc:
        if not ctx.channels.serves(provider):
            # No endpoint of this provider is configured: anyone's request, not a provider's.
            not_ours = BadRequest(f"no {provider} endpoint is configured in [channels]", status=404)
            return _refused(ctx, provider, "bad_request", not_ours)
        # Our deployment is incomplete: 503 keeps the provider retrying until it is fixed.
        m.child(m.webhook_requests, provider, "unavailable").inc()
        _log_limited(ctx, "webhook_secret_missing", provider, error=True, variable=exc.env_name)
        return error_response(503, "adapter not configured")

    events = normalized.events
    letters = dead_letters(provider, normalized.set_aside, body, _media_type(request))
    messages = [e for e in events if isinstance(e, MessageReceived)]
    statuses = [e for e in events if isinstance(e, DeliveryStatusChanged)]
    domains = sorted({e.domain for e in events} | {d.domain for d in letters if d.domain})
    nonce = normalized.nonce
    # Step 4
    if nonce is not None:
        try:
            fresh = await ctx.nonces.claim(nonce.provider, nonce.value, nonce.expires_at)
        except NonceStoreUnavailable:
            m.child(m.webhook_requests, provider, "unavailable").inc()
            _log_limited(ctx, "webhook_nonces_unavailable", provider, domains=domains)
            return error_response(503, "token cache unavailable, retry later")
        if not fresh:
            return _refused(ctx, provider, "replayed", BadRequest("token already used", status=409))
    published = False
    try:
        if events:
            events = with_consent(events, ctx.outbound)
            if ctx.lookups is not None:
                events = await ctx.lookups.annotate(events)
            await ctx.publisher.publish(events)
        if letters:
            await ctx.publisher.dead_letter(letters)
        published = True
    except KeysUnavailable:
        # PostgreSQL, not the broker: a new customer's key, once the spares are used up.
        m.child(m.webhook_requests, provider, "unavailable").inc()
        _log_limited(ctx, "webhook_keys_unavailable", provider, domains=domains)
        return error_response(503, "topic keys unavailable (database), retry later")
    except BrokerUnavailable:
        m.child(m.webhook_requests, provider, "unavailable").inc()
        _log_limited(ctx, "webhook_unavailable", provider, domains=domains)
        return error_response(503, "broker unavailable, retry later")
    finally:
        if nonce is not None and not published:
            await _release(ctx, nonce)
    for msg in messages:
        m.for_domain(msg.domain).counter(m.inbound_messages, msg.channel.value).inc()
    if letters:
        outcome = "dead_lettered"
        log.warning(
            "webhook_dead_lettered",
            provider=provider,
            domains=domains,
            reasons=[letter.reason for letter in letters],
        )
    else:
        outcome = "accepted" if events else empty_outcome
    m.child(m.webhook_requests, provider, outcome).inc()
    # A line per request would say what the counter says, as often as providers call:
    # a few a minute show the traffic, the next one after a pause how many were left out.
    suppressed = ctx.log_limit.admit((provider, outcome))
    if suppressed is not None:
        log.info(
            "webhook",
            provider=provider,
            outcome=outcome,
            domains=domains,
            messages=len(messages),
            statuses=len(statuses),
            # Changes to messages, consent reports, new addresses, a person's replies.
            other_events=len(events) - len(messages) - len(statuses),
            consents=consents(events),
            set_aside=len(letters),
            **({"suppressed": suppressed} if suppressed else {}),
        )
    # Step 5
    return ok()


async def _release(ctx: WebhookContext, nonce: Nonce) -> None:
    """Forget the claim of a request we did not accept, so the provider's retry is."""
    try:
        await ctx.nonces.release(nonce.provider, nonce.value)
    except NonceStoreUnavailable:
        # Broker and database down at once: this delivery's retries are refused as
        # replays until the token expires. Loud, for an operator to re-send the mail.
        log.error("webhook_nonce_not_released", provider=nonce.provider)


def _media_type(request: web.Request) -> str | None:
    """The body's media type as the dead letter records it (None when it is unusable)."""
    value = request.headers.get("Content-Type")
    if value is None or not value.isascii() or not is_identifier(value, CONTENT_TYPE_MAX):
        return None
    return value


def _refused(ctx: WebhookContext, provider: str, outcome: str, exc: BadRequest) -> web.Response:
    ctx.metrics.child(ctx.metrics.webhook_requests, provider, outcome).inc()
    # Debug only, and without what a reason quotes of the request: a client can cause this
    # line at will (the rate-limited ``client_error`` line is the one operators see).
    log.debug(
        "webhook_refused",
        provider=provider,
        outcome=outcome,
        status=exc.status,
        reason=without_values(exc.reason.split(":", 1)[0])[:120],
    )
    return error_response(exc.status, exc.reason)


def parse_signed(
    parse: Callable[[], Normalized], *, domain: str | None = None, nonce: Nonce | None = None
) -> Normalized:
    """Normalize a request whose signature was verified, with its one-time token, setting
    the whole request aside when it cannot be read: the provider sent it, and would
    redeliver the same bytes for as long as we refuse them (the module docstring)."""
    try:
        normalized = parse()
    except Unusable as unusable:
        return Normalized(events=[], set_aside=[unusable], nonce=nonce)
    except BadRequest as malformed:
        # Cut once its values are out: cut first, a long value would lose its closing quote.
        unreadable = Unusable(without_values(malformed.reason)[:500], domain=domain)
        return Normalized(events=[], set_aside=[unreadable], nonce=nonce)
    return normalized if nonce is None else dataclasses.replace(normalized, nonce=nonce)
