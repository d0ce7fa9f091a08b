"""Egress: deliver a ``ReplyRequested`` (an agent's or a bot's), or a business-started
``NotificationRequested``, through the provider API of its channel.

Per channel, ``build_request`` turns a message into the provider's real send call (pure,
no I/O): Twilio Messages, WhatsApp Cloud API, Messenger and Instagram Send API, Telegram
``sendMessage``, Mailgun messages. ``Egress.send`` performs it:
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
- Telegram ``sendMessage``: a one-time ``reply_markup`` keyboard (``ReplyKeyboardMarkup``,
  one button a row, ``one_time_keyboard`` and ``resize_keyboard``);
- WhatsApp Cloud API: an ``interactive`` message of ``type`` ``button`` (reply buttons:
  ``id`` and ``title`` the answer) when there are at most 3 of at most 20 characters and
  the body fits the 1,024 characters of an interactive body; otherwise a text message with
  the answers listed after the text, numbered;
- SMS, Twilio WhatsApp and email: the answers listed after the text, numbered ("1. Yes");
- a template (the free-form window is closed) is sent without them.

Idempotency beyond the ledger: Twilio gets ``I-Twilio-Idempotency-Token`` (the reply id),
so a retry after a lost response is not sent twice; Mailgun gets a ``Message-Id`` built
from the reply id; WhatsApp carries the id in ``biz_opaque_callback_data``. Messenger,
Instagram and Telegram have no idempotency key: a retry after a lost response can
duplicate there. Attachments travel as media on Twilio; elsewhere their URLs are
appended to the text.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import msgspec
import structlog

from adapters.config import ChannelsConfig, SecretMissing, resolve_secret
from adapters.normalize import find_endpoint
from adapters.twilio import WHATSAPP_PREFIX
from runtime.metrics import Metrics
from schemas import Channel, NotificationRequested, ReplyRequested

log = structlog.get_logger()

#: Graph API error codes that mean "slow down" even when the HTTP status is 400/403.
GRAPH_THROTTLING_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131048, 131056})
MAX_ERROR_CHARS = 300
WHATSAPP_BUTTONS_MAX = 3
"""Reply buttons of one WhatsApp interactive message."""
WHATSAPP_BUTTON_TITLE_MAX = 20
"""Characters of a WhatsApp reply button's title."""
WHATSAPP_BUTTON_BODY_MAX = 1024
"""Characters of the body of a WhatsApp interactive message."""

Outbound = ReplyRequested | NotificationRequested
"""What egress sends: both carry the fields the provider requests use."""


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


class EgressUnroutable(Exception):
    """No provider is configured to send from this endpoint on this channel."""


@dataclass(frozen=True, kw_only=True)
class ProviderRequest:
    """One provider API call, ready to perform."""

    provider: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Mapping[str, Any] | None = None
    form: list[tuple[str, str]] | None = None
    message_id: Callable[[Any], str | None] = lambda _body: None
    """Reads the provider's message id from its decoded JSON answer."""


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic authentication."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _text_with_links(reply: Outbound) -> str:
    links = [a.url for a in reply.attachments]
    return "\n".join([reply.text, *links]) if reply.text else "\n".join(links)


def quick_replies(reply: Outbound) -> tuple[str, ...]:
    """A reply's suggested answers, each once, in order (a business-started message has
    none)."""
    if isinstance(reply, NotificationRequested):
        return ()
    return tuple(dict.fromkeys(reply.quick_replies))


def with_numbered_options(text: str, options: Sequence[str]) -> str:
    """``text`` with ``options`` listed after it, numbered: quick replies where the channel
    has no buttons."""
    if not options:
        return text
    listed = "\n".join(f"{number}. {option}" for number, option in enumerate(options, 1))
    return f"{text}\n\n{listed}" if text else listed


def _get(body: Any, *path: str | int) -> str | None:
    for key in path:
        if isinstance(key, int) and isinstance(body, list) and len(body) > key:
            body = body[key]
        elif isinstance(key, str) and isinstance(body, dict):
            body = body.get(key)
        else:
            return None
    return None if body is None else str(body)


def twilio_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    cfg = channels.twilio
    prefix = WHATSAPP_PREFIX if reply.channel is Channel.WHATSAPP else ""
    form = [("From", prefix + reply.endpoint), ("To", prefix + reply.customer_address)]
    if reply.template is not None:
        # A Content template: its SID and the values of its numbered variables, no Body.
        variables = {str(n): value for n, value in enumerate(reply.template.parameters, 1)}
        form.append(("ContentSid", reply.template.provider_template))
        if variables:
            form.append(("ContentVariables", msgspec.json.encode(variables).decode()))
    else:
        form.append(("Body", with_numbered_options(reply.text, quick_replies(reply))))
        form += [("MediaUrl", a.url) for a in reply.attachments]
    if cfg.status_callback_url:
        form.append(("StatusCallback", cfg.status_callback_url))
    return ProviderRequest(
        provider="twilio",
        url=f"{cfg.api_base_url.rstrip('/')}/2010-04-01/Accounts/{cfg.account_sid}/Messages.json",
        headers={
            "I-Twilio-Idempotency-Token": reply.id,
            "Authorization": basic_auth(
                cfg.account_sid, resolve_secret(cfg.auth_token_env, environ)
            ),
        },
        form=form,
        message_id=lambda body: _get(body, "sid"),
    )


def _whatsapp_buttons_fit(body: str, options: Sequence[str]) -> bool:
    """Reply buttons can carry ``options`` with ``body``: WhatsApp's limits."""
    return (
        0 < len(options) <= WHATSAPP_BUTTONS_MAX
        and all(len(option) <= WHATSAPP_BUTTON_TITLE_MAX for option in options)
        and 0 < len(body) <= WHATSAPP_BUTTON_BODY_MAX
    )


def _whatsapp_content(reply: Outbound) -> dict[str, Any]:
    template = reply.template
    if template is None:
        body, options = _text_with_links(reply), quick_replies(reply)
        if _whatsapp_buttons_fit(body, options):
            buttons = [{"type": "reply", "reply": {"id": o, "title": o}} for o in options]
            return {
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": body},
                    "action": {"buttons": buttons},
                },
            }
        text = with_numbered_options(body, options)
        return {"type": "text", "text": {"body": text, "preview_url": False}}
    content: dict[str, Any] = {
        "name": template.provider_template,
        # WhatsApp spells languages with an underscore (en_US); ours are BCP 47 (en-US).
        "language": {"code": template.language.replace("-", "_")},
    }
    if template.parameters:
        content["components"] = [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": p} for p in template.parameters],
            }
        ]
    return {"type": "template", "template": content}


def whatsapp_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    meta = channels.meta
    number = find_endpoint(meta.whatsapp, reply.endpoint, "phone_number_id")
    if number is None:
        raise EgressUnroutable(reply.endpoint)
    return ProviderRequest(
        provider="whatsapp",
        url=f"{meta.graph_api_base_url.rstrip('/')}/{meta.graph_api_version}/"
        f"{number.phone_number_id}/messages",
        headers={"Authorization": f"Bearer {resolve_secret(number.access_token_env, environ)}"},
        json={
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": reply.customer_address.lstrip("+"),
            **_whatsapp_content(reply),
            "biz_opaque_callback_data": reply.id,
        },
        message_id=lambda body: _get(body, "messages", 0, "id"),
    )


def _messaging_type(reply: Outbound) -> dict[str, str]:
    """Meta's ``messaging_type``: a tagged message (outside the 24 h window), else an
    answer (``RESPONSE``) or a message the business starts (``UPDATE``)."""
    if reply.message_tag is not None:
        return {"messaging_type": "MESSAGE_TAG", "tag": reply.message_tag.value}
    if isinstance(reply, NotificationRequested):
        return {"messaging_type": "UPDATE"}
    return {"messaging_type": "RESPONSE"}


def _send_api_request(
    reply: Outbound, base: str, version: str, node: str, token: str, provider: str
) -> ProviderRequest:
    message: dict[str, Any] = {"text": _text_with_links(reply)}
    options = quick_replies(reply)
    if options:
        # The payload comes back with the tap; the title (the message's text) is what
        # routing reads, so the payload is the title too.
        message["quick_replies"] = [
            {"content_type": "text", "title": o, "payload": o} for o in options
        ]
    return ProviderRequest(
        provider=provider,
        url=f"{base.rstrip('/')}/{version}/{node}/messages",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "recipient": {"id": reply.customer_address},
            **_messaging_type(reply),
            "message": message,
        },
        message_id=lambda body: _get(body, "message_id"),
    )


def messenger_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    meta = channels.meta
    page = find_endpoint(meta.messenger, reply.endpoint, "page_id")
    if page is None:
        raise EgressUnroutable(reply.endpoint)
    token = resolve_secret(page.access_token_env, environ)
    return _send_api_request(
        reply, meta.graph_api_base_url, meta.graph_api_version, "me", token, "messenger"
    )


def instagram_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    meta = channels.meta
    account = find_endpoint(meta.instagram, reply.endpoint, "account_id")
    if account is None:
        raise EgressUnroutable(reply.endpoint)
    token = resolve_secret(account.access_token_env, environ)
    return _send_api_request(
        reply,
        meta.instagram_api_base_url,
        meta.graph_api_version,
        account.account_id,
        token,
        "instagram",
    )


def telegram_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    cfg = channels.telegram
    bot = find_endpoint(cfg.bots, reply.endpoint, "name")
    if bot is None:
        raise EgressUnroutable(reply.endpoint)
    token = resolve_secret(bot.bot_token_env, environ)
    chat = reply.customer_address

    def message_id(body: Any) -> str | None:
        mid = _get(body, "result", "message_id")
        return None if mid is None else f"{bot.name}:{chat}:{mid}"

    request: dict[str, Any] = {"chat_id": chat, "text": _text_with_links(reply)}
    options = quick_replies(reply)
    if options:
        request["reply_markup"] = {
            "keyboard": [[{"text": option}] for option in options],
            "one_time_keyboard": True,
            "resize_keyboard": True,
        }
    return ProviderRequest(
        provider="telegram",
        url=f"{cfg.api_base_url.rstrip('/')}/bot{token}/sendMessage",
        json=request,
        message_id=message_id,
    )


def _angle(message_id: str) -> str:
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def mailgun_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    cfg = channels.email.mailgun
    address = next(
        (a for a in channels.email.addresses if a.address.lower() == reply.endpoint.lower()), None
    )
    if address is None:
        raise EgressUnroutable(reply.endpoint)
    sending_domain = address.sending_domain or address.address.rpartition("@")[2]
    form = [
        ("from", address.address),
        ("to", reply.customer_address),
        ("subject", reply.subject or ""),
        ("text", with_numbered_options(_text_with_links(reply), quick_replies(reply))),
        ("h:Message-Id", f"<{reply.id}@{sending_domain}>"),
        ("v:switchboard-outbound-id", reply.id),
    ]
    in_reply_to = reply.in_reply_to if isinstance(reply, ReplyRequested) else None
    if in_reply_to:
        form += [("h:In-Reply-To", _angle(in_reply_to)), ("h:References", _angle(in_reply_to))]

    def message_id(body: Any) -> str | None:
        mid = _get(body, "id")
        return None if mid is None else mid.strip("<>")

    return ProviderRequest(
        provider="mailgun",
        url=f"{cfg.api_base_url.rstrip('/')}/v3/{sending_domain}/messages",
        headers={"Authorization": basic_auth("api", resolve_secret(cfg.api_key_env, environ))},
        form=form,
        message_id=message_id,
    )


Builder = Callable[[Outbound, ChannelsConfig, Mapping[str, str]], ProviderRequest]


def build_request(
    reply: Outbound, channels: ChannelsConfig, environ: Mapping[str, str]
) -> ProviderRequest:
    """The provider call that delivers ``reply``; ``EgressUnroutable`` / ``SecretMissing``."""
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


def _error_reason(body: Any, status: int) -> str:
    reason = (
        _get(body, "error", "message")
        or _get(body, "message")
        or _get(body, "description")
        or f"HTTP {status}"
    )
    return reason[:MAX_ERROR_CHARS]


def _throttling(status: int, body: Any) -> bool:
    """The provider says "slow down": 429, or a Graph throttling code (any status)."""
    if status == 429:
        return True
    code = _get(body, "error", "code")
    return code is not None and code.isdigit() and int(code) in GRAPH_THROTTLING_CODES


def _retryable(status: int, body: Any) -> bool:
    if status >= 500 or _throttling(status, body):
        return True
    return _get(body, "error", "is_transient") == "True"


Throttled = Callable[[Outbound, float | None], Awaitable[None]]
"""Told of every "slow down" answer: the message and the ``Retry-After`` seconds (None:
the provider named none)."""


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
        else:
            result = await self._perform(reply, request)
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
                async with self.session.post(
                    req.url,
                    headers=dict(req.headers),
                    json=req.json,
                    data=req.form,
                    timeout=timeout,
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = None
                error = f"connection error: {type(exc).__name__}"
                attempts_counter.labels(channel=channel, result="error").inc()
            else:
                try:
                    body: Any = msgspec.json.decode(raw) if raw else None
                except msgspec.DecodeError:
                    body = None
                if 200 <= status < 300:
                    attempts_counter.labels(channel=channel, result="ok").inc()
                    return self._result(
                        reply,
                        SendOutcome.SENT,
                        provider_message_id=req.message_id(body),
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
                    after = _get(body, "parameters", "retry_after")  # Telegram's 429 body
                    retry_after = float(after) if after and after.isdigit() else None
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
