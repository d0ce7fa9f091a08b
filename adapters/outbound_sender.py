"""The sender of business-started messages: ``queued`` notification rows → the providers,
at the pace the domain allows, shared by every adapter process.

The API writes a notification as an ``outbound_messages`` row (kind ``notification``,
``request`` = the ``NotificationRequested`` to send) and sets it ``queued``. Every adapter
process runs this sender; they share the work and the rates through PostgreSQL alone.

Every second, ``_discover``:
1. counts the pending rows per sender (domain, channel, endpoint) for the
   ``outbound_pending`` gauge, and which of them can be sent now;
2. marks ``cancelled`` the queued rows of cancelled campaigns, their statuses owed to the
   router like a send's (step 6), and returns to ``queued`` the expired claims of paused
   ones;
3. starts a drain for every sender with rows to send that has none running here.

A drain (``_drain``) repeats, oldest rows first:
1. take tokens: the sender's bucket (``OutboundConfig.rate(channel)``), then the domain's
   (``domain_rate``), one short transaction each (``adapters.pacing``); none: wait for
   the next ones;
2. claim that many rows (``FOR UPDATE SKIP LOCKED``): ``sending``, ``lease_until`` =
   now + ``LEASE_SECONDS``, renewed while this process works on them; tokens it could not
   use are given back;
3. re-check consent: an address opted out since the API accepted the row → ``refused``,
   reported like a send (step 6; paused and cancelled campaigns were checked by the claim
   itself: their rows are not claimed);
4. send each row through ``adapters.egress`` (the same provider requests as replies, with
   templates and tags; retries with backoff; a provider 429 also puts the sender's bucket
   in debt for every process, ``outbound_throttled{limit="provider"}``); rows to one
   address in order, addresses in parallel; a send still throttled after egress's retries
   goes back to ``queued`` for ``RETRY_LATER_SECONDS``;
5. record the result: ``outbound_messages`` (``sent`` with the provider's id, or
   ``failed`` with the reason) and ``messages`` (status) in one statement, flagged
   ``status_unreported``;
6. publish a ``delivery.status`` (``DeliveryStatusChanged`` with ``outbound_id``) on
   ``conversations.inbound`` (the router emits ``outbound.status_changed``), then clear the
   flag; a flag left by a process that died is published by another after
   ``REPORT_AFTER_SECONDS`` (same event id: consumers drop the duplicate), and so are the
   flags of a cancelled campaign's messages (set by the cancel, here or in the API), in
   batches of ``REPORT_BATCH``.

Restarts: SIGTERM finishes the sends under way and gives back the claimed rows not
started. A process that dies holds its claims until their lease expires
(``LEASE_SECONDS``), then another process sends them again: a row claimed but not recorded
may have reached the provider. RBM drops that second request (``messageId``, the row's
id). Twilio, Mailgun, the WhatsApp Cloud API, Messenger, Instagram and Telegram take no
idempotency key: a claimed row whose provider call reached the provider before the crash
(its answer not recorded) is sent twice there. Only the rows claimed at the moment of the
crash can be: a row recorded as sent is never sent again; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import asyncpg
import msgspec
import structlog

from adapters.config import ChannelsConfig
from adapters.egress import Egress, RetryPolicy, SendOutcome, SendResult
from adapters.pacing import BucketKey, SharedBuckets, batch_size, seconds_until
from adapters.provider_api import Outbound
from runtime.db import DATABASE_ERRORS
from runtime.kafka import BrokerUnavailable
from runtime.metrics import Metrics
from runtime.outbound import OPTED_OUT, OutboundConfig, Rate, is_marketing
from schemas import Channel, DeliveryStatus, DeliveryStatusChanged, NotificationRequested
from schemas.common import Event

log = structlog.get_logger(__name__)

DISCOVER_EVERY = 1.0
"""Seconds between two looks for senders with work (and cancelled campaigns)."""
LEASE_SECONDS = 15.0
"""A claim's lease: a process that died is replaced after this long."""
RENEW_EVERY = 5.0
"""Seconds between renewals of the leases of the rows this process is sending."""
MAX_WAIT = 1.0
"""Longest sleep of a drain waiting for tokens (a new rate applies after it)."""
BATCHES_IN_FLIGHT = 10
"""Claimed batches a drain sends at once: one second of provider latency at full rate."""
RETRY_LATER_SECONDS = 30.0
"""A message still throttled after egress's retries waits this long in the queue."""
THROTTLED_ATTEMPTS_MAX = 20
"""Provider attempts after which a throttled message fails rather than waits again."""
PROVIDER_PAUSE_SECONDS = 1.0
"""The debt a provider's 429 without ``Retry-After`` puts on the sender's bucket."""
PROVIDER_PAUSE_MAX = 60.0
REPORT_EVERY = 0.2
REPORT_AFTER_SECONDS = 10.0
"""An unreported status older than this was left by a process that died, or is a cancelled
campaign's message's: publish it."""
REPORT_BATCH = 500
ABANDONED_AFTER_SECONDS = 600.0
"""An ``accepted`` row older than this was left by an API process that died before it
answered (before setting it ``queued``): it is deleted, so the client, who got no answer,
retries with its ``client_key`` as a new send."""
FORGET_ABANDONED_EVERY = 60.0

_SENDERS_STATUSES = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.REFUSED, DeliveryStatus.CANCELLED}
)
"""The statuses the sender reports itself (the provider reports the later ones)."""
OPTED_OUT_CODE = "opted_out"
"""The ``error_code`` of a ``refused`` status: the address opted out since it was accepted."""
_STATUS_EVENT_IDS = uuid.UUID("0b1c3a52-5d0e-4d55-9b7e-2f5b8c1d7e40")
_NOTIFICATION = msgspec.json.Decoder(NotificationRequested)


def _consent_key(notification: NotificationRequested) -> tuple[str, str, bool]:
    """What a notification's consent depends on: its address, customer and whether it is
    a marketing template (``runtime.outbound.OPTED_OUT``)."""
    n = notification
    return n.customer_address, n.customer_id, is_marketing(n.template)


class StatusPublisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> None: ...


_DISCOVER = """
SELECT o.domain, o.channel, o.endpoint, count(*) AS pending,
       count(*) FILTER (
           WHERE (o.status = 'queued' OR o.lease_until < now())
             AND (o.send_after IS NULL OR o.send_after <= now())
             AND coalesce(c.status, 'running') = 'running') AS ready
FROM outbound_messages o
LEFT JOIN campaigns c ON c.domain = o.domain AND c.campaign_id = o.campaign_id
WHERE o.kind = 'notification' AND o.status IN ('queued', 'sending')
GROUP BY o.domain, o.channel, o.endpoint
"""

_CANCEL = """
WITH cancelled AS (
    UPDATE outbound_messages o
    SET status = 'cancelled', lease_until = NULL, status_unreported = true, updated_at = now()
    FROM campaigns c
    WHERE c.status = 'cancelled' AND o.domain = c.domain AND o.campaign_id = c.campaign_id
      AND o.kind = 'notification'
      AND (o.status = 'queued' OR (o.status = 'sending' AND o.lease_until < now()))
    RETURNING o.domain, o.outbound_id, o.channel
), history AS (
    UPDATE messages m SET status = 'cancelled' FROM cancelled x
    WHERE m.domain = x.domain AND m.message_id = x.outbound_id
)
SELECT domain, channel, count(*) AS cancelled FROM cancelled GROUP BY domain, channel
"""

_FORGET_ABANDONED = """
WITH gone AS (
    DELETE FROM outbound_messages
    WHERE status = 'accepted' AND kind = 'notification'
      AND created_at < now() - make_interval(secs => $1)
    RETURNING domain, outbound_id
), history AS (
    DELETE FROM messages m USING gone g WHERE m.domain = g.domain AND m.message_id = g.outbound_id
)
SELECT domain, count(*) AS gone FROM gone GROUP BY domain
"""

_UNCLAIM_PAUSED = """
UPDATE outbound_messages o SET status = 'queued', lease_until = NULL, updated_at = now()
FROM campaigns c
WHERE c.status = 'paused' AND o.domain = c.domain AND o.campaign_id = c.campaign_id
  AND o.kind = 'notification' AND o.status = 'sending' AND o.lease_until < now()
"""

_CLAIM = """
WITH picked AS (
    SELECT o.domain, o.outbound_id FROM outbound_messages o
    WHERE o.domain = $1 AND o.channel = $2 AND o.endpoint = $3 AND o.kind = 'notification'
      AND (o.status = 'queued' OR (o.status = 'sending' AND o.lease_until < now()))
      AND (o.send_after IS NULL OR o.send_after <= now())
      AND NOT EXISTS (
          SELECT 1 FROM campaigns c
          WHERE c.domain = o.domain AND c.campaign_id = o.campaign_id AND c.status <> 'running')
    ORDER BY o.created_at
    LIMIT $4
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbound_messages o
SET status = 'sending', lease_until = now() + make_interval(secs => $5), updated_at = now()
FROM picked
WHERE o.domain = picked.domain AND o.outbound_id = picked.outbound_id
RETURNING o.outbound_id, o.request, o.attempts, o.created_at
"""

_RENEW = """
UPDATE outbound_messages SET lease_until = now() + make_interval(secs => $3)
WHERE domain = $1 AND outbound_id = ANY($2::text[]) AND status = 'sending'
"""

_RELEASE = """
UPDATE outbound_messages SET status = 'queued', lease_until = NULL, updated_at = now()
WHERE domain = $1 AND outbound_id = ANY($2::text[]) AND status = 'sending'
"""

_REFUSE = """
WITH refused AS (
    UPDATE outbound_messages
    SET status = 'refused', error = 'the customer opted out', lease_until = NULL,
        status_unreported = true, updated_at = now()
    WHERE domain = $1 AND outbound_id = ANY($2::text[]) AND status = 'sending'
    RETURNING domain, outbound_id
), history AS (
    UPDATE messages m SET status = 'refused' FROM refused r
    WHERE m.domain = r.domain AND m.message_id = r.outbound_id
)
SELECT outbound_id FROM refused
"""

_RECORD = """
WITH done AS (
    UPDATE outbound_messages
    SET status = $3, provider_message_id = $4, attempts = attempts + $5, error = $6,
        lease_until = NULL, status_unreported = true, updated_at = now()
    WHERE domain = $1 AND outbound_id = $2 AND status IN ('queued', 'sending')
    RETURNING domain, outbound_id
), history AS (
    UPDATE messages m SET status = $3, provider_message_id = coalesce($4, m.provider_message_id)
    FROM done WHERE m.domain = done.domain AND m.message_id = done.outbound_id
)
SELECT count(*) FROM done
"""

_RETRY_LATER = """
UPDATE outbound_messages
SET status = 'queued', lease_until = NULL, send_after = now() + make_interval(secs => $3),
    attempts = attempts + $4, error = $5, updated_at = now()
WHERE domain = $1 AND outbound_id = $2 AND status = 'sending'
"""

_REPORTED = """
UPDATE outbound_messages o SET status_unreported = false
FROM unnest($1::text[], $2::text[]) AS r(domain, outbound_id)
WHERE o.domain = r.domain AND o.outbound_id = r.outbound_id AND o.status_unreported
"""

_STALE_REPORTS = """
WITH stale AS (
    SELECT domain, outbound_id FROM outbound_messages
    WHERE status_unreported AND updated_at < now() - make_interval(secs => $1)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE outbound_messages o SET updated_at = now() FROM stale
WHERE o.domain = stale.domain AND o.outbound_id = stale.outbound_id
RETURNING o.domain, o.outbound_id, o.channel, o.status, o.provider_message_id
"""

_WEBCHAT_SENT = """
WITH done AS (
    UPDATE outbound_messages SET status = 'sent', status_unreported = true, updated_at = now()
    WHERE domain = $1 AND outbound_id = $2 AND kind = 'notification'
      AND status IN ('accepted', 'queued')
    RETURNING domain, outbound_id
), history AS (
    UPDATE messages m SET status = 'sent' FROM done
    WHERE m.domain = done.domain AND m.message_id = done.outbound_id
)
SELECT count(*) FROM done
"""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A send's outcome owed to the router as a ``delivery.status`` event."""

    domain: str
    outbound_id: str
    channel: Channel
    status: DeliveryStatus
    provider_message_id: str | None = None
    error_code: str | None = None

    def event(self) -> DeliveryStatusChanged:
        # The same id whoever publishes it (this process, or one taking over a report
        # left by a process that died): consumers drop the duplicate.
        name = f"{self.domain}\n{self.outbound_id}\n{self.status}"
        return DeliveryStatusChanged(
            id=str(uuid.uuid5(_STATUS_EVENT_IDS, name)),
            domain=self.domain,
            occurred_at=time.time(),
            channel=self.channel,
            provider_message_id=self.provider_message_id or "",
            status=self.status,
            outbound_id=self.outbound_id,
            error_code=self.error_code,
        )


class StatusReports:
    """Step 6: statuses recorded with ``status_unreported``, published in batches."""

    def __init__(self, pool: asyncpg.Pool, publisher: StatusPublisher) -> None:
        self._pool = pool
        self._publisher = publisher
        self._owed: list[StatusReport] = []

    def add(self, report: StatusReport) -> None:
        self._owed.append(report)

    async def flush(self) -> None:
        """Publish what is owed, then clear the rows' flags; kept for the next flush when
        the broker or the database fails."""
        owed, self._owed = self._owed, []
        if not owed:
            return
        try:
            await self._publisher.publish([report.event() for report in owed])
            await self._pool.execute(
                _REPORTED, [r.domain for r in owed], [r.outbound_id for r in owed]
            )
        except (BrokerUnavailable, *DATABASE_ERRORS) as error:
            log.warning("outbound_status_report_failed", error=type(error).__name__)
            self._owed = owed + self._owed

    async def take_over_stale(self) -> int:
        """Statuses recorded but not published: by a process that died, or of the messages
        of a cancelled campaign (published in batches, not at once); how many rows."""
        rows = await self._pool.fetch(_STALE_REPORTS, REPORT_AFTER_SECONDS, REPORT_BATCH)
        for row in rows:
            status = row["status"]
            if status in _SENDERS_STATUSES:
                self.add(
                    StatusReport(
                        domain=row["domain"],
                        outbound_id=row["outbound_id"],
                        channel=Channel(row["channel"]),
                        status=DeliveryStatus(status),
                        provider_message_id=row["provider_message_id"],
                        error_code=OPTED_OUT_CODE if status == DeliveryStatus.REFUSED else None,
                    )
                )
        # A later status (delivered, read) was reported by the provider: nothing to add.
        later = [r for r in rows if r["status"] not in _SENDERS_STATUSES]
        if later:
            await self._pool.execute(
                _REPORTED, [r["domain"] for r in later], [r["outbound_id"] for r in later]
            )
        return len(rows)


async def webchat_notification_sent(
    pool: asyncpg.Pool, reports: StatusReports, notification: NotificationRequested
) -> None:
    """A web chat notification: every adapter's web chat hub delivers it from the topic;
    its row is marked ``sent`` like a web chat reply's, and reported."""
    if await pool.fetchval(_WEBCHAT_SENT, notification.domain, notification.id):
        reports.add(
            StatusReport(
                domain=notification.domain,
                outbound_id=notification.id,
                channel=notification.channel,
                status=DeliveryStatus.SENT,
            )
        )


@dataclass(frozen=True, slots=True)
class Sender:
    domain: str
    channel: str
    endpoint: str

    @property
    def bucket(self) -> BucketKey:
        return BucketKey.sender(self.domain, self.channel, self.endpoint)


@dataclass(frozen=True, slots=True)
class Claimed:
    outbound_id: str
    request: bytes | None
    attempts: int


class ClaimLedger:
    """Egress's ``SentLedger`` for notifications: the claim is the ledger check.

    A row recorded ``sent`` is never claimed again, so a message is "already sent" for
    egress unless this process holds its claim; results are recorded by the sender."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    async def already_sent(self, outbound_id: str) -> bool:
        return outbound_id not in self.held

    async def record(self, result: SendResult) -> None:
        """The sender records what egress returns (step 5)."""


class OutboundSender:
    """Steps of the module docstring; one per adapter process."""

    def __init__(
        self,
        channels: ChannelsConfig,
        outbound: Mapping[str, OutboundConfig],
        environ: Mapping[str, str],
        pool: asyncpg.Pool,
        publisher: StatusPublisher,
        metrics: Metrics,
        *,
        retry: RetryPolicy | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._channels = channels
        self._outbound = dict(outbound)
        self._environ = environ
        self._pool = pool
        self._metrics = metrics
        self._retry = retry
        self._lease = lease_seconds
        self._buckets = SharedBuckets(pool)
        self._reports = StatusReports(pool, publisher)
        self._ledger = ClaimLedger()
        self._held: dict[str, str] = {}
        """Claimed rows being sent: outbound id → domain (their leases are renewed)."""
        self._drains: dict[Sender, asyncio.Task[None]] = {}
        self._forget_abandoned_at = 0.0
        self._pending_seen: set[tuple[str, str]] = set()
        self._stopping = asyncio.Event()
        self._egress: Egress | None = None

    def stop(self) -> None:
        self._stopping.set()

    def reconfigure(self, channels: ChannelsConfig, outbound: Mapping[str, OutboundConfig]) -> None:
        """A new configuration version: endpoints and rates apply from the next claim."""
        self._channels = channels
        self._outbound = dict(outbound)
        if self._egress is not None:
            self._egress.channels = channels

    def _config(self, domain: str) -> OutboundConfig:
        return self._outbound.get(domain) or OutboundConfig()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            self._egress = Egress(
                channels=self._channels,
                environ=self._environ,
                session=session,
                metrics=self._metrics,
                ledger=self._ledger,
                retry=self._retry,
                on_throttled=self._provider_throttled,
            )
            renewing = asyncio.create_task(self._renew_leases(), name="outbound-leases")
            reporting = asyncio.create_task(self._report(), name="outbound-reports")
            try:
                while not self._stopping.is_set():
                    try:
                        await self._discover()
                    except DATABASE_ERRORS as error:
                        log.warning("outbound_discover_failed", error=type(error).__name__)
                    await self._pause(DISCOVER_EVERY)
            finally:
                await asyncio.gather(*self._drains.values(), return_exceptions=True)
                for task in (renewing, reporting):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                with contextlib.suppress(*DATABASE_ERRORS):
                    await self._reports.flush()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _discover(self) -> None:
        """Steps 1-3 of ``_discover`` in the module docstring."""
        for sender, task in list(self._drains.items()):
            if task.done():
                del self._drains[sender]
                if (error := task.exception()) is not None:
                    # A bug, not an outage: the sender stops, loudly.
                    log.error("outbound_drain_crashed", error=type(error).__name__)
                    raise error
        rows = await self._pool.fetch(_DISCOVER)
        pending: dict[tuple[str, str], int] = defaultdict(int)
        for row in rows:
            label = self._metrics.for_domain(row["domain"]).label
            pending[label, row["channel"]] += row["pending"]
            sender = Sender(row["domain"], row["channel"], row["endpoint"] or "")
            if (
                row["ready"]
                and row["endpoint"]
                and row["channel"] != Channel.WEBCHAT  # the web chat hub delivers those
                and sender not in self._drains
                and not self._stopping.is_set()
            ):
                self._drains[sender] = asyncio.create_task(
                    self._drain(sender), name=f"outbound-drain-{sender.channel}"
                )
        # A sender's series stays, at 0, once its messages are all sent.
        self._pending_seen.update(pending)
        for labels in self._pending_seen:
            self._metrics.outbound_pending.labels(*labels).set(pending.get(labels, 0))
        for row in await self._pool.fetch(_CANCEL):
            sends = self._metrics.for_domain(row["domain"])
            sends.counter(self._metrics.outbound_sends, row["channel"], "cancelled").inc(
                row["cancelled"]
            )
            log.info("campaign_messages_cancelled", domain=row["domain"], count=row["cancelled"])
        await self._pool.execute(_UNCLAIM_PAUSED)
        now = time.monotonic()
        if now >= self._forget_abandoned_at:
            self._forget_abandoned_at = now + FORGET_ABANDONED_EVERY
            for row in await self._pool.fetch(_FORGET_ABANDONED, ABANDONED_AFTER_SECONDS):
                log.warning("outbound_abandoned_deleted", domain=row["domain"], count=row["gone"])

    async def _drain(self, sender: Sender) -> None:
        """Steps 1-2 of a drain, until the sender has nothing left to claim."""
        sending: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping.is_set():
                if len(sending) >= BATCHES_IN_FLIGHT:
                    done, sending = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                    for finished in done:
                        finished.result()  # a batch's own error (a bug) ends the drain
                    continue
                config = self._config(sender.domain)
                rate = config.rate(Channel(sender.channel))
                want = batch_size(rate)
                granted, wait = await self._tokens(sender, rate, config.domain_rate, want)
                if granted:
                    claimed = await self._claim(sender, granted)
                    await self._give_back(sender, rate, config.domain_rate, granted - len(claimed))
                    if not claimed:
                        return  # discovery starts a drain again when rows are ready
                    sending.add(
                        asyncio.create_task(self._send_batch(sender, rate, config, claimed))
                    )
                if granted < want:
                    await self._pause(min(wait, MAX_WAIT))
        except DATABASE_ERRORS as error:
            log.warning("outbound_drain_failed", error=type(error).__name__)
        finally:
            if sending:
                await asyncio.gather(*sending)

    async def _tokens(
        self, sender: Sender, rate: Rate, domain_rate: Rate | None, want: int
    ) -> tuple[int, float]:
        """Step 1: tokens granted by both buckets, and how long to wait for ``want``."""
        metrics = self._metrics.for_domain(sender.domain)
        grant = await self._buckets.take(sender.bucket, rate, want)
        wait = seconds_until(grant.tokens, rate, want)
        if grant.granted < want:
            metrics.counter(self._metrics.outbound_throttled, sender.channel, "sender").inc()
        if not grant.granted or domain_rate is None:
            return grant.granted, wait
        whole = BucketKey.whole_domain(sender.domain)
        domain_grant = await self._buckets.take(whole, domain_rate, grant.granted)
        if domain_grant.granted < grant.granted:
            metrics.counter(self._metrics.outbound_throttled, sender.channel, "domain").inc()
            await self._buckets.give_back(sender.bucket, rate, grant.granted - domain_grant.granted)
            wait = max(wait, seconds_until(domain_grant.tokens, domain_rate, want))
        return domain_grant.granted, wait

    async def _give_back(
        self, sender: Sender, rate: Rate, domain_rate: Rate | None, count: int
    ) -> None:
        if count > 0:
            await self._buckets.give_back(sender.bucket, rate, count)
            if domain_rate is not None:
                whole = BucketKey.whole_domain(sender.domain)
                await self._buckets.give_back(whole, domain_rate, count)

    async def _claim(self, sender: Sender, count: int) -> list[Claimed]:
        """Step 2."""
        rows = await self._pool.fetch(
            _CLAIM, sender.domain, sender.channel, sender.endpoint, count, self._lease
        )
        rows = sorted(rows, key=lambda row: row["created_at"])
        for row in rows:
            self._held[row["outbound_id"]] = sender.domain
            self._ledger.held.add(row["outbound_id"])
        return [Claimed(row["outbound_id"], row["request"], row["attempts"]) for row in rows]

    def _let_go(self, outbound_id: str) -> None:
        self._held.pop(outbound_id, None)
        self._ledger.held.discard(outbound_id)

    async def _send_batch(
        self, sender: Sender, rate: Rate, config: OutboundConfig, claimed: list[Claimed]
    ) -> None:
        """Steps 3-5 for one claim's rows."""
        notifications: list[tuple[NotificationRequested, int]] = []
        try:
            for row in claimed:
                try:
                    notifications.append((_NOTIFICATION.decode(row.request or b""), row.attempts))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    await self._record_unreadable(sender, row.outbound_id)
            named = list(dict.fromkeys(_consent_key(n) for n, _ in notifications))
            opted_out = {
                named[row["i"]]
                for row in await self._pool.fetch(
                    OPTED_OUT,
                    sender.domain,
                    list(range(len(named))),
                    [sender.channel] * len(named),
                    [address for address, _, _ in named],
                    [customer_id for _, customer_id, _ in named],
                    [marketing for _, _, marketing in named],
                )
            }
            if opted_out:
                refused = [n.id for n, _ in notifications if _consent_key(n) in opted_out]
                await self._refuse(sender, refused)
                await self._give_back(sender, rate, config.domain_rate, len(refused))
                notifications = [p for p in notifications if _consent_key(p[0]) not in opted_out]
            by_address: dict[str, list[tuple[NotificationRequested, int]]] = defaultdict(list)
            for pair in notifications:
                by_address[pair[0].customer_address].append(pair)
            await asyncio.gather(*(self._send_in_order(sender, p) for p in by_address.values()))
        except DATABASE_ERRORS as error:
            # The rows keep their claim until the lease ends; then they are sent again.
            log.warning("outbound_batch_failed", error=type(error).__name__)
        finally:
            for row in claimed:
                self._let_go(row.outbound_id)

    async def _send_in_order(
        self, sender: Sender, notifications: list[tuple[NotificationRequested, int]]
    ) -> None:
        egress = self._egress
        assert egress is not None, "sends happen while the sender runs"
        try:
            for index, (notification, attempts) in enumerate(notifications):
                if self._stopping.is_set():
                    # Claimed, not started: another process (or this one, restarted) sends them.
                    rest = [n.id for n, _ in notifications[index:]]
                    await self._pool.execute(_RELEASE, sender.domain, rest)
                    return
                result = await egress.send(notification)
                await self._finish(sender, notification, attempts, result)
        except DATABASE_ERRORS as error:
            # The rows not recorded keep their claim until the lease ends, then are sent again.
            log.warning("outbound_record_failed", error=type(error).__name__)

    async def _finish(
        self, sender: Sender, notification: NotificationRequested, attempts: int, result: SendResult
    ) -> None:
        """Step 5 (and the retry later of a throttled send)."""
        if result.outcome is SendOutcome.DUPLICATE:
            return  # not this process's claim any more (egress did not send it)
        domain = notification.domain
        if result.throttled and attempts + result.attempts < THROTTLED_ATTEMPTS_MAX:
            await self._pool.execute(
                _RETRY_LATER,
                domain,
                notification.id,
                RETRY_LATER_SECONDS,
                result.attempts,
                result.error,
            )
            return
        status = (
            DeliveryStatus.SENT if result.outcome is SendOutcome.SENT else DeliveryStatus.FAILED
        )
        recorded = await self._pool.fetchval(
            _RECORD,
            domain,
            notification.id,
            str(status),
            result.provider_message_id,
            result.attempts,
            result.error,
        )
        if not recorded:
            return  # another process took the row over after this one's lease ended
        sends = self._metrics.for_domain(domain)
        sends.counter(self._metrics.outbound_sends, sender.channel, str(status)).inc()
        self._reports.add(
            StatusReport(
                domain=domain,
                outbound_id=notification.id,
                channel=notification.channel,
                status=status,
                provider_message_id=result.provider_message_id,
                error_code=None if result.status_code is None else str(result.status_code),
            )
        )

    async def _record_unreadable(self, sender: Sender, outbound_id: str) -> None:
        await self._pool.fetchval(
            _RECORD, sender.domain, outbound_id, "failed", None, 0, "unreadable request"
        )
        sends = self._metrics.for_domain(sender.domain)
        sends.counter(self._metrics.outbound_sends, sender.channel, "failed").inc()
        self._reports.add(
            StatusReport(
                domain=sender.domain,
                outbound_id=outbound_id,
                channel=Channel(sender.channel),
                status=DeliveryStatus.FAILED,
            )
        )

    async def _refuse(self, sender: Sender, outbound_ids: list[str]) -> None:
        """Step 3: opted out since the API accepted them."""
        refused = [
            row["outbound_id"]
            for row in await self._pool.fetch(_REFUSE, sender.domain, outbound_ids)
        ]
        for outbound_id in refused:
            self._reports.add(
                StatusReport(
                    domain=sender.domain,
                    outbound_id=outbound_id,
                    channel=Channel(sender.channel),
                    status=DeliveryStatus.REFUSED,
                    error_code=OPTED_OUT_CODE,
                )
            )
        sends = self._metrics.for_domain(sender.domain)
        sends.counter(self._metrics.outbound_sends, sender.channel, "refused").inc(len(refused))
        log.info("notifications_refused", domain=sender.domain, count=len(refused))

    async def _provider_throttled(self, message: Outbound, retry_after: float | None) -> None:
        """A provider said "slow down": every process's claims for this sender wait."""
        domain, channel = message.domain, message.channel
        sends = self._metrics.for_domain(domain)
        sends.counter(self._metrics.outbound_throttled, str(channel), "provider").inc()
        seconds = min(PROVIDER_PAUSE_MAX, retry_after or PROVIDER_PAUSE_SECONDS)
        rate = self._config(domain).rate(channel)
        with contextlib.suppress(*DATABASE_ERRORS):
            bucket = BucketKey.sender(domain, str(channel), message.endpoint)
            await self._buckets.slow_down(bucket, rate, seconds)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            by_domain: dict[str, list[str]] = defaultdict(list)
            for outbound_id, domain in list(self._held.items()):
                by_domain[domain].append(outbound_id)
            try:
                for domain, ids in by_domain.items():
                    await self._pool.execute(_RENEW, domain, ids, self._lease)
            except DATABASE_ERRORS as error:
                log.warning("outbound_lease_renewal_failed", error=type(error).__name__)

    async def _report(self) -> None:
        """Step 6, and statuses left by processes that died."""
        last_take_over = 0.0
        while True:
            await asyncio.sleep(REPORT_EVERY)
            if time.monotonic() - last_take_over >= DISCOVER_EVERY:
                try:
                    # A full batch: more are waiting (a cancelled campaign's), taken next tick.
                    if await self._reports.take_over_stale() < REPORT_BATCH:
                        last_take_over = time.monotonic()
                except DATABASE_ERRORS as error:
                    last_take_over = time.monotonic()
                    log.warning("outbound_status_take_over_failed", error=type(error).__name__)
            await self._reports.flush()
