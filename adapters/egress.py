"""Egress: deliver a ``ReplyRequested`` (an agent's or a bot's), or a business-started
``NotificationRequested``, through the provider API of its channel.

Per channel, ``build_request`` turns a message into the provider's real send call (pure,
no I/O): Twilio Messages, WhatsApp Cloud API, Messenger and Instagram Send API, Telegram
``sendMessage`` and its media methods, Mailgun messages. ``Egress.send`` performs it
(after its ``prepare``, and followed by its ``then`` calls, when it has them):
1. skip the message when the ``SentLedger`` says its id was already sent (``duplicate``);
2. call the provider; on 429, 5xx, a Graph throttling error or a connection error,
   wait (exponential backoff, bounded, ``Retry-After`` honoured up to a cap) and retry;
   any other 4xx is final. A "slow down" answer (429, Graph throttling codes) is also
   reported to ``on_throttled``, so the notification sender slows every process down;
3. record the result in the ledger and return it.

Templates and tags (a message's ``template`` / ``message_tag``, set when the provider's
free-form window is closed or was never opened):
- WhatsApp Cloud API: ``"type": "template"`` with ``template.name`` (the approved name),
  ``template.language.code`` (``en_US``) and one ``body`` component of ``text``
  parameters, in order;
- Twilio (SMS, WhatsApp): the Content template's ``ContentSid`` (``HX…``) and its
  ``ContentVariables`` (JSON ``{"1": …, "2": …}``) instead of ``Body``;
- Messenger / Instagram Send API: ``messaging_type`` ``MESSAGE_TAG`` with ``tag``
  (``HUMAN_AGENT``: a person's answer up to 7 days after the customer's last message);
  without a tag a reply is a ``RESPONSE`` and a business-started message an ``UPDATE``
  (both only inside the 24 h window);
- Telegram and email have no templates: the filled-in text (``text``) is sent.

Quick replies (a bot's suggested answers, ``ReplyRequested.quick_replies``; each sent once,
in order), as each channel offers them — a tap sends the title back as the customer's
message, which reaches the bot like any other:
- Messenger / Instagram Send API: ``message.quick_replies``, each ``{"content_type":
  "text", "title": t, "payload": t}`` (at most 13, titles of at most 20 characters);
- Telegram: a one-time ``reply_markup`` keyboard (``ReplyKeyboardMarkup``, one button a
  row, ``one_time_keyboard`` and ``resize_keyboard``) on the reply's first call;
- WhatsApp Cloud API: an ``interactive`` message of ``type`` ``button`` (reply buttons:
  ``id`` and ``title`` the answer) when there are at most 3 of at most 20 characters and
  the body fits the 1,024 characters of an interactive body; otherwise a text message with
  the answers listed after the text, numbered;
- SMS, Twilio WhatsApp and email: the answers listed after the text, numbered ("1. Yes");
- a template (the free-form window is closed) is sent without them.

Idempotency beyond the ledger: RBM takes the reply id as its ``messageId`` and ignores a
second message with it. Twilio, Mailgun, WhatsApp, Messenger, Instagram and Telegram take no idempotency
key (Twilio says so of a message's ``POST``: retried after a lost response, it can be sent
twice), so a retry after a lost response can duplicate there. Mailgun's mail carries a
``Message-Id`` built from the reply id, and a WhatsApp send the id in
``biz_opaque_callback_data``: they name the message, they do not stop a second send.
Attachments travel as media on Twilio; on Telegram by URL, one call each
(``adapters.telegram.reply_calls``); on Mailgun fetched and uploaded (``prepare``); on
WhatsApp, Messenger and Instagram by URL, one message each (``then``; WhatsApp's first
media takes the text as caption where its kind allows, the Send API's follow the text),
each checked first against ``adapters.meta``'s limits, and a WhatsApp reply's place as a
``location`` message; elsewhere their URLs are appended to the text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import msgspec
import structlog

from adapters import email as email_adapter
from adapters import rbm, sendgrid, twilio, vonage_send, x_dm
from adapters import telegram as telegram_adapter
from adapters.config import ChannelsConfig, SecretMissing, resolve_secret
from adapters.media import MediaRefused, check_attachments, media_type
from adapters.meta_send import instagram_request, messenger_request, whatsapp_request
from adapters.normalize import find_endpoint
from adapters.provider_api import (
    OCTET_STREAM,
    EgressUnroutable,
    FilePart,
    Outbound,
    PrepareFailed,
    ProviderRequest,
    answer_text,
    answer_value,
    basic_auth,
    decoded_answer,
    email_text,
    fetch_attachment,
    location_text,
    multipart_form_data,
    quick_replies,
    split_text,
    upload_name,
    with_numbered_options,
)
from adapters.twilio import WHATSAPP_PREFIX
from runtime.metrics import Metrics
from schemas import (
    Channel,
    ReplyRequested,
)

log = structlog.get_logger()

#: Graph API error codes that mean "slow down" even when the HTTP status is 400/403.
GRAPH_THROTTLING_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131048})
PAIR_RATE_LIMIT = 131056
"""WhatsApp's "pair rate limit": too many messages from the number to this one recipient.
Other recipients are not held back, so it slows no sender down; the message is tried
again after ``PAIR_RATE_WAIT`` seconds."""
PAIR_RATE_WAIT = 6.0
"""Meta: about one message every 6 seconds to the same user."""
MAX_ERROR_CHARS = 300


class SendOutcome(enum.StrEnum):
    SENT = "sent"
    FAILED = "failed"
    DUPLICATE = "duplicate"


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one outbound message."""

    outbound_id: str
    domain: str
    channel: Channel
    outcome: SendOutcome
    provider_message_id: str | None = None
    attempts: int = 0
    status_code: int | None = None
    """HTTP status of the last provider answer (None: no answer)."""
    error: str | None = None
    throttled: bool = False
    """The provider's last answer said "slow down" (429, a Graph throttling code)."""


class SentLedger(Protocol):
    """Which outbound ids were sent: the caller's guard against sending a reply twice."""

    async def already_sent(self, outbound_id: str) -> bool: ...

    async def record(self, result: SendResult) -> None: ...


class InMemorySentLedger:
    """A ``SentLedger`` for tests and single-process runs."""

    def __init__(self) -> None:
        self.results: dict[str, SendResult] = {}

    async def already_sent(self, outbound_id: str) -> bool:
        found = self.results.get(outbound_id)
        return found is not None and found.outcome is SendOutcome.SENT

    async def record(self, result: SendResult) -> None:
        if result.outcome is not SendOutcome.DUPLICATE:
            self.results[result.outbound_id] = result


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounded exponential backoff: ``base * 2**(n-1)``, capped, with proportional jitter."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    """Cap of any single wait, a provider's ``Retry-After`` included."""
    jitter: float = 0.2
    """Up to this fraction is added at random, so retries of many replies spread out."""
    timeout: float = 15.0
    """Seconds one provider call may take."""

    def delay(self, attempt: int, retry_after: float | None, rnd: float) -> float:
        backoff = self.base_delay * 2 ** (attempt - 1) * (1 + self.jitter * rnd)
        wanted: float = max(backoff, retry_after or 0.0)
        return min(wanted, self.max_delay)


def _text_with_links(reply: Outbound) -> str:
    links = [a.url for a in reply.attachments]
    return "\n".join([reply.text, *links]) if reply.text else "\n".join(links)


def twilio_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """Twilio's Messages API call. Attachments are checked against the channel's limits
    (``twilio.media_limits``: MMS up to 10 and 5 MB, WhatsApp 1); a place is a WhatsApp
    location (``PersistentAction`` ``geo:``), on SMS its name, address and ``geo:`` URI
    after the text. ``StatusCallback``: ``twilio.status_callback`` (our id in its query)."""
    cfg = channels.twilio
    whatsapp = reply.channel is Channel.WHATSAPP
    prefix = WHATSAPP_PREFIX if whatsapp else ""
    addressed = [("From", prefix + reply.endpoint), ("To", prefix + reply.customer_address)]
    form = list(addressed)
    rest: list[str] = []
    if reply.template is not None:
        # A Content template: its SID and the values of its numbered variables, no Body.
        variables = {str(n): value for n, value in enumerate(reply.template.parameters, 1)}
        form.append(("ContentSid", reply.template.provider_template))
        if variables:
            form.append(("ContentVariables", msgspec.json.encode(variables).decode()))
    else:
        check_attachments(reply.attachments, twilio.media_limits(reply.channel))
        place = reply.location if isinstance(reply, ReplyRequested) else None
        text = reply.text
        if place is not None and whatsapp:
            if reply.attachments:
                raise MediaRefused("Twilio WhatsApp sends a location without attachments")
            form.append(("PersistentAction", twilio.geo_action(place)))
            text = text or place.name or place.address or f"{place.latitude},{place.longitude}"
        elif place is not None:
            text = "\n\n".join(t for t in (text, location_text(place)) if t)
        # A place or numbered answers may take the text past Twilio's Body (1,600
        # characters, error 21617): the rest follows in further messages.
        first, *rest = split_text(
            with_numbered_options(text, quick_replies(reply)), twilio.BODY_MAX
        )
        form.append(("Body", first))
        form += [("MediaUrl", a.url) for a in reply.attachments]
    callback = twilio.status_callback(
        channels, reply.endpoint, reply.id, environ.get(twilio.PUBLIC_URL_ENV)
    )
    if callback:
        form.append(("StatusCallback", callback))
    request = ProviderRequest(
        provider="twilio",
        url=f"{cfg.api_base_url.rstrip('/')}/2010-04-01/Accounts/{cfg.account_sid}/Messages.json",
        headers={
            "Authorization": basic_auth(
                cfg.account_sid, resolve_secret(cfg.auth_token_env, environ)
            ),
        },
        form=form,
        message_id=lambda body: answer_text(body, "sid"),
    )
    if not rest:
        return request
    # The message's statuses are its first part's: the others report none.
    then = [dataclasses.replace(request, form=[*addressed, ("Body", part)]) for part in rest]
    return dataclasses.replace(request, then=tuple(then))


def telegram_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The Bot API calls of ``adapters.telegram.reply_calls``: the first, the rest as
    ``then``; ``MediaRefused`` when an attachment breaks Telegram's limits."""
    cfg = channels.telegram
    name, connection = telegram_adapter.endpoint_parts(reply.endpoint)
    bot = find_endpoint(cfg.bots, name, "name")
    if bot is None:
        raise EgressUnroutable(reply.endpoint)
    token = resolve_secret(bot.bot_token_env, environ)
    chat = reply.customer_address

    def message_id(body: Any) -> str | None:
        mid = answer_text(body, "result", "message_id")
        return None if mid is None else telegram_adapter.message_key(reply.endpoint, chat, mid)

    location = reply.location if isinstance(reply, ReplyRequested) else None
    calls = telegram_adapter.reply_calls(
        bot.name,
        chat,
        reply.text,
        reply.attachments,
        location,
        quick_replies(reply),
        business_connection=connection,
    )
    base = f"{cfg.api_base_url.rstrip('/')}/bot{token}"
    first, *rest = [
        ProviderRequest(
            provider="telegram", url=f"{base}/{method}", json=params, message_id=message_id
        )
        for method, params in calls
    ]
    return dataclasses.replace(first, then=tuple(rest))


def mailgun_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """Mailgun's messages API: a url-encoded form, or, with attachments, a multipart one
    whose files ``prepare`` fetches; ``MediaRefused`` when they break Mailgun's limits."""
    cfg = channels.email.mailgun
    address = next(
        (a for a in channels.email.addresses if a.address.lower() == reply.endpoint.lower()), None
    )
    if address is None:
        raise EgressUnroutable(reply.endpoint)
    # Mail carries any bytes: a file of no known type goes as application/octet-stream.
    typed = [
        a if media_type(a) else msgspec.structs.replace(a, content_type=OCTET_STREAM)
        for a in reply.attachments
    ]
    checked = check_attachments(typed, email_adapter.MEDIA_LIMITS)
    sending_domain = address.sending_domain or address.address.rpartition("@")[2]
    form = [
        ("from", address.address),
        ("to", reply.customer_address),
        ("subject", reply.subject or ""),
        ("text", email_text(reply)),
        ("h:Message-Id", f"<{reply.id}@{sending_domain}>"),
        (f"v:{email_adapter.OUTBOUND_ID_VARIABLE}", reply.id),
        (f"v:{email_adapter.DOMAIN_VARIABLE}", reply.domain),
    ]
    form += [(f"h:{name}", value) for name, value in email_adapter.threading_headers(reply).items()]

    def message_id(body: Any) -> str | None:
        mid = answer_text(body, "id")
        return None if mid is None else mid.strip("<>")

    request = ProviderRequest(
        provider="mailgun",
        url=f"{cfg.api_base_url.rstrip('/')}/v3/{sending_domain}/messages",
        headers={"Authorization": basic_auth("api", resolve_secret(cfg.api_key_env, environ))},
        form=form,
        message_id=message_id,
    )
    if not checked:
        return request
    allow_private = channels.media_fetch_allow_private

    async def upload(session: aiohttp.ClientSession) -> ProviderRequest:
        """The files fetched (``attachment`` parts) within Mailgun's limits."""
        files: list[FilePart] = []
        room = email_adapter.ATTACHMENTS_MAX_BYTES
        for number, (attachment, rule) in enumerate(checked, 1):
            data = await fetch_attachment(
                attachment, min(rule.max_bytes, room), number, allow_private=allow_private
            )
            room -= len(data)
            kind = media_type(attachment) or OCTET_STREAM
            files.append(FilePart("attachment", upload_name(attachment, number), kind, data))
        content_type, body = multipart_form_data(form, files)
        return dataclasses.replace(
            request,
            form=None,
            data=body,
            headers={**request.headers, "Content-Type": content_type},
            prepare=None,
        )

    return dataclasses.replace(request, prepare=upload)


Builder = Callable[[Outbound, ChannelsConfig, Mapping[str, str]], ProviderRequest]
Owns = Callable[[Outbound, ChannelsConfig], bool]
"""Whether a provider's configuration holds the endpoint a message is sent from."""


PROVIDER_SENDERS: tuple[tuple[Owns, Builder], ...] = (
    (rbm.owns, rbm.rbm_request),
    (sendgrid.owns, sendgrid.sendgrid_request),
    (x_dm.owns, x_dm.x_request),
    (vonage_send.owns, vonage_send.vonage_request),
)
"""The providers whose sending lives in their own module: whether they hold the endpoint
a message is sent from, and how to send from it (asked before the channels' builders
here)."""


def build_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The provider call that delivers ``reply``; ``EgressUnroutable`` / ``SecretMissing``."""
    for owns, provider_builder in PROVIDER_SENDERS:
        if owns(reply, channels):
            return provider_builder(reply, channels, environ)
    builder: Builder
    match reply.channel:
        case Channel.SMS:
            builder = twilio_request
        case Channel.WHATSAPP:
            on_meta = find_endpoint(channels.meta.whatsapp, reply.endpoint, "phone_number_id")
            builder = whatsapp_request if on_meta is not None else twilio_request
        case Channel.MESSENGER:
            builder = messenger_request
        case Channel.INSTAGRAM:
            builder = instagram_request
        case Channel.TELEGRAM:
            builder = telegram_request
        case Channel.EMAIL:
            builder = mailgun_request
        case Channel.WEBCHAT:
            raise EgressUnroutable("web chat replies go through the web chat socket")
        case Channel.RCS | Channel.X | Channel.VIBER:
            raise EgressUnroutable(reply.endpoint)
    if builder is twilio_request and (
        find_endpoint(channels.twilio.numbers, reply.endpoint, "number") is None
    ):
        raise EgressUnroutable(reply.endpoint)
    return builder(reply, channels, environ)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


_QUOTED_ADDRESS = re.compile(r"[^\s@<>()\[\]{}\"',;:]+@[^\s@<>()\[\]{}\"',;:]+")
"""An email address quoted in a provider's error."""
_QUOTED_NUMBER = re.compile(r"\+?\(?\d(?:[\s().-]{0,2}\d){6,}")
"""A phone number or a user id quoted in a provider's error: seven digits or more."""


def _said(body: Any, *path: str | int) -> str | None:
    """The text at ``path`` in a decoded answer, when it is non-empty text."""
    found = answer_value(body, *path)
    return found if isinstance(found, str) and found.strip() else None


def _error_reason(body: Any, status: int) -> str:
    """The provider's own words about a refused call, else ``HTTP <status>``: at most
    ``MAX_ERROR_CHARS`` printable characters. Read from each provider's documented error
    body (none of them quotes the message's text; the status is what matters):
    - Graph API (WhatsApp, Messenger, Instagram): ``error.message``;
    - Google (RBM): ``error.status`` and ``error.message``
      (``INVALID_ARGUMENT: Request contains an invalid argument.``);
    - Twilio, Mailgun: ``message``; Telegram: ``description``;
    - Vonage and X API v2 (RFC 7807 problem details): ``title`` and ``detail``
      (``Invalid params: The value of one or more parameters is invalid.``);
    - else SendGrid's and X's v1.1-style ``errors[0].message``.
    Some of these words quote the request (SendGrid names a duplicate recipient, Twilio
    the number it refused, X a parameter's value): email addresses and numbers of seven
    digits or more are replaced by ``<address>`` and ``<number>``."""
    if isinstance(answer_value(body, "error"), dict):
        parts = [_said(body, "error", "status"), _said(body, "error", "message")]
    else:
        parts = [_said(body, "message") or _said(body, "description")]
        if not parts[0]:
            parts = [_said(body, "title"), _said(body, "detail")]
        if not any(parts):
            parts = [_said(body, "errors", 0, "message")]
    said = [part for part in dict.fromkeys(parts) if part]
    reason = ": ".join(said)[: 4 * MAX_ERROR_CHARS] or f"HTTP {status}"
    reason = _QUOTED_NUMBER.sub("<number>", _QUOTED_ADDRESS.sub("<address>", reason))
    printable = "".join(c if c.isprintable() else " " for c in reason)
    return " ".join(printable.split())[:MAX_ERROR_CHARS]


def _throttling(status: int, body: Any) -> bool:
    """The provider says "slow down": 429, or a Graph throttling code (any status)."""
    if status == 429:
        return True
    code = answer_text(body, "error", "code")
    return code is not None and code.isdigit() and int(code) in GRAPH_THROTTLING_CODES


def _retryable(status: int, body: Any) -> bool:
    if status >= 500 or _throttling(status, body) or _pair_rate_limited(body):
        return True
    return answer_text(body, "error", "is_transient") == "True"


def _pair_rate_limited(body: Any) -> bool:
    return answer_text(body, "error", "code") == str(PAIR_RATE_LIMIT)


def rate_limit_reset(value: str | None, now: float) -> float | None:
    """Seconds until ``x-rate-limit-reset`` (X's 429: the Unix time its window reopens,
    and no ``Retry-After``)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    return max(0.0, int(value) - now)


Throttled = Callable[[Outbound, float | None], Awaitable[None]]
"""Told of every "slow down" answer: the message and the ``Retry-After`` seconds (None:
the provider named none)."""


class EgressEnviron(Mapping[str, str]):
    """What the request builders read besides ``channels``: the secrets of ``environ``,
    and under ``twilio.PUBLIC_URL_ENV`` the resolved ``[http] public_url`` alone (present
    only when it is set; ``SWITCHBOARD_PUBLIC_URL``, when set, is already in it), so the
    configuration file's public URL is the one replies' default ``StatusCallback`` uses."""

    def __init__(self, environ: Mapping[str, str], public_url: str | None) -> None:
        self._environ = environ
        self._public_url = public_url or None

    def __getitem__(self, name: str) -> str:
        if name != twilio.PUBLIC_URL_ENV:
            return self._environ[name]
        if self._public_url is None:
            raise KeyError(name)
        return self._public_url

    def __iter__(self) -> Iterator[str]:
        yield from (name for name in self._environ if name != twilio.PUBLIC_URL_ENV)
        if self._public_url is not None:
            yield twilio.PUBLIC_URL_ENV

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Egress:
    """Sends messages with retries; one instance per worker, sharing one ClientSession."""

    def __init__(
        self,
        *,
        channels: ChannelsConfig,
        environ: Mapping[str, str],
        session: aiohttp.ClientSession,
        metrics: Metrics,
        ledger: SentLedger,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        on_throttled: Throttled | None = None,
    ) -> None:
        self.channels = channels
        self.environ = environ
        self.session = session
        self.metrics = metrics
        self.ledger = ledger
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng
        self.on_throttled = on_throttled

    async def send(self, reply: Outbound) -> SendResult:
        """Steps 1-3 of the module docstring."""
        channel = reply.channel.value
        if await self.ledger.already_sent(reply.id):
            sent = self.metrics.for_domain(reply.domain)
            sent.counter(self.metrics.egress_messages, channel, "duplicate").inc()
            return self._result(reply, SendOutcome.DUPLICATE)
        try:
            request = build_request(reply, self.channels, self.environ)
        except EgressUnroutable:
            result = self._result(
                reply, SendOutcome.FAILED, error=f"no {channel} sender for this endpoint"
            )
        except SecretMissing as exc:
            result = self._result(reply, SendOutcome.FAILED, error=str(exc))
        except MediaRefused as refused:
            result = self._result(reply, SendOutcome.FAILED, error=refused.reason)
        else:
            result = await self._prepared(reply, request)
        sent = self.metrics.for_domain(reply.domain)
        sent.counter(self.metrics.egress_messages, channel, result.outcome.value).inc()
        kind = "reply" if isinstance(reply, ReplyRequested) else "notification"
        log.info(
            f"{kind}_sent" if result.outcome is SendOutcome.SENT else f"{kind}_failed",
            domain=reply.domain,
            channel=channel,
            attempts=result.attempts,
            status=result.status_code,
        )
        await self.ledger.record(result)
        return result

    def _result(self, reply: Outbound, outcome: SendOutcome, **kw: Any) -> SendResult:
        return SendResult(
            outbound_id=reply.id, domain=reply.domain, channel=reply.channel, outcome=outcome, **kw
        )

    async def _prepared(self, reply: Outbound, request: ProviderRequest) -> SendResult:
        """``request`` after its preparation (``ProviderRequest.prepare``), performed."""
        if request.prepare is not None:
            for attempt in range(1, self.retry.max_attempts + 1):
                try:
                    request = await request.prepare(self.session)
                    break
                except PrepareFailed as failed:
                    if not failed.retryable or attempt == self.retry.max_attempts:
                        return self._result(
                            reply, SendOutcome.FAILED, attempts=attempt, error=failed.reason
                        )
                    await self.sleep(self.retry.delay(attempt, None, self.rng()))
        result = await self._perform(reply, request)
        for later in request.then:
            if result.outcome is not SendOutcome.SENT:
                break
            rest = await self._perform(reply, later)
            result = msgspec.structs.replace(
                rest,
                provider_message_id=result.provider_message_id,
                attempts=result.attempts + rest.attempts,
                error=None if rest.error is None else f"sent in part: {rest.error}",
            )
        return result

    async def _perform(self, reply: Outbound, req: ProviderRequest) -> SendResult:
        attempts_counter = self.metrics.egress_attempts
        channel = reply.channel.value
        status: int | None = None
        error = "not attempted"
        throttled = False
        timeout = aiohttp.ClientTimeout(total=self.retry.timeout)
        for attempt in range(1, self.retry.max_attempts + 1):
            retry_after: float | None = None
            throttled = False
            try:
                async with self.session.request(
                    req.method,
                    req.url,
                    headers=dict(req.headers),
                    json=req.json,
                    data=req.form if req.data is None else req.data,
                    timeout=timeout,
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    if retry_after is None and status == 429:
                        reset = resp.headers.get("x-rate-limit-reset")
                        retry_after = rate_limit_reset(reset, time.time())
                    header_id = (
                        resp.headers.get(req.message_id_header) if req.message_id_header else None
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = None
                error = f"connection error: {type(exc).__name__}"
                attempts_counter.labels(channel=channel, result="error").inc()
            else:
                body = decoded_answer(raw)
                if 200 <= status < 300:
                    attempts_counter.labels(channel=channel, result="ok").inc()
                    return self._result(
                        reply,
                        SendOutcome.SENT,
                        provider_message_id=header_id or req.message_id(body),
                        attempts=attempt,
                        status_code=status,
                    )
                error = _error_reason(body, status)
                if not _retryable(status, body):
                    attempts_counter.labels(channel=channel, result="permanent").inc()
                    return self._result(
                        reply, SendOutcome.FAILED, attempts=attempt, status_code=status, error=error
                    )
                attempts_counter.labels(channel=channel, result="retryable").inc()
                if retry_after is None:
                    after = answer_text(body, "parameters", "retry_after")  # Telegram's 429 body
                    retry_after = float(after) if after and after.isdigit() else None
                if retry_after is None and _pair_rate_limited(body):
                    retry_after = PAIR_RATE_WAIT
                throttled = _throttling(status, body)
                if throttled and self.on_throttled is not None:
                    await self.on_throttled(reply, retry_after)
            if attempt < self.retry.max_attempts:
                await self.sleep(self.retry.delay(attempt, retry_after, self.rng()))
        return self._result(
            reply,
            SendOutcome.FAILED,
            attempts=self.retry.max_attempts,
            status_code=status,
            error=error,
            throttled=throttled,
        )
