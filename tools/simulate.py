"""``switchboard simulate``: a synthetic contact centre driving a running service.

Customers write on web chat, SMS, WhatsApp and email, pause, come back hours later
(simulated) and sometimes hop channels; agents work shifts, take breaks, answer within a
reply time and close conversations. Everything goes through the service's public
surfaces only, exactly as in production:

- SMS: Twilio's form webhook, signed with ``X-Twilio-Signature`` (HMAC-SHA1 of the URL
  plus the sorted parameters, keyed with the Auth Token);
- WhatsApp: the Cloud API webhook, signed with ``X-Hub-Signature-256`` (HMAC-SHA256 of
  the raw body, keyed with the app secret);
- email: a Mailgun route POST carrying ``timestamp``, ``token`` and ``signature`` (HMAC-
  SHA256 of timestamp + token, keyed with the webhook signing key);
- web chat: a session (``POST /v1/domains/{domain}/webchat/sessions``), then
  ``POST /v1/domains/{domain}/webchat/messages`` with the session's bearer token;
- agents: the agent API (register, presence, reply, close) with an admin token, and the
  domain's Server-Sent Events stream to follow assignments.

Simulated time runs ``speed`` times faster than real time: customers' pauses and returns,
agents' reply times, shifts and breaks are divided by it. The router's own timeouts
(preferred-agent waits, fallback steps, inactivity) are real seconds: at speed 600 a
30 s web chat wait lasts 5 simulated hours. The demo configuration
(``switchboard/demo.toml``) shortens them so that fallbacks show within a minute.

The summary counts what the routing stream reported while the simulation ran (it only
sees events from the moment it connected), and the messages the service accepted (2xx).
After the traffic stops, the simulation keeps following the stream until every message
is routed and every step or offer deadline the router announced (a queued conversation's
``wait_until``, an offer's ``expires_at``) within ``drain`` seconds has played out, so
that a later reader of the same stream sees nothing the summary missed.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from runtime.stats import percentile
from tools.simulate_signing import mailgun_signature, meta_signature, twilio_signature

CHANNELS = ("webchat", "sms", "whatsapp", "email")
CHANNEL_WEIGHTS = {"webchat": 0.35, "sms": 0.25, "whatsapp": 0.25, "email": 0.15}
CAPACITY = {"webchat": 3, "sms": 2, "whatsapp": 2, "email": 4}
HOP_PROBABILITY = 0.25
"""Chance that a returning customer writes on another channel than last time."""
SECRET_VARIABLES = {
    "sms": "TWILIO_AUTH_TOKEN",
    "whatsapp": "META_APP_SECRET",
    "email": "MAILGUN_SIGNING_KEY",
}
"""The variables holding each provider's secret, as named by ``switchboard/demo.toml``."""

MINUTE = 60.0
HOUR = 3600.0
AGENT_NAMES = (
    "Ann", "Bob", "Chen", "Dora", "Emeka", "Fatima", "Gus", "Hana", "Ivan", "Jade",
    "Kofi", "Lena", "Mateo", "Noor", "Olga", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
)  # fmt: skip
PHRASES = (
    "Where is my order?",
    "I was charged twice this month.",
    "Can I change my delivery address?",
    "The app will not let me log in.",
    "Is the blue one back in stock?",
    "Thanks, and what about the refund?",
    "Still waiting on this, any news?",
    "OK, that worked. One more thing...",
)


def _error_reason(body: bytes) -> str:
    """`` <reason>`` of an API error body (a 409 says why), or nothing."""
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return ""
    error = answer.get("error") if isinstance(answer, dict) else None
    return f" {error}" if isinstance(error, str) else ""


# -- options, figures, summary ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Options:
    url: str = "http://127.0.0.1:8080"
    """Base URL of the running service."""
    public_url: str | None = None
    """The URL the service checks webhook signatures against (its SWITCHBOARD_PUBLIC_URL);
    default: ``url``."""
    token: str | None = None
    """Admin token of the domain (or the bootstrap one); None when auth is disabled."""
    domain: str = "demo"
    customers: int = 40
    agents: int = 8
    rate: float = 5.0
    """Customer messages per second, at most."""
    duration: float = 60.0
    """Real seconds of customer traffic (then the router gets ``drain`` seconds to finish)."""
    seed: int = 1
    speed: float = 600.0
    """Simulated seconds per real second."""
    drain: float = 10.0
    twilio_number: str = "+15005550006"
    whatsapp_phone_number_id: str = "100000000000001"
    email_address: str = "support@demo.example"
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Provider secrets by channel (``sms``, ``whatsapp``, ``email``); a channel without
    one is not simulated."""

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c in CHANNELS if c == "webchat" or self.secrets.get(c))

    @property
    def signed_base(self) -> str:
        return (self.public_url or self.url).rstrip("/")


class Summary(msgspec.Struct, kw_only=True):
    """What a simulation did and what the router decided, as the stream reported it."""

    domain: str
    seed: int
    speed: float
    real_seconds: float
    simulated_seconds: float
    customers: int
    agents: int
    messages: int
    """Customer messages the service accepted (2xx)."""
    messages_by_channel: dict[str, int]
    messages_routed: int
    """``message.routed`` events seen."""
    conversations: int
    """Distinct conversations seen on the stream."""
    assignments: int
    assignments_by_strategy: dict[str, int]
    preferred_hits: int
    preferred_misses: int
    preferred_hit_ratio: float | None
    """Of assignments of conversations with a preferred agent, the share to that agent."""
    wait_p50_seconds: float | None
    wait_p95_seconds: float | None
    fallbacks: int
    overflowed: int
    waiting_at_end: int
    replies: int
    closed: int
    presence_changes: int
    channel_hops: int
    errors: dict[str, int]
    """Failed requests by ``"<what> <status>"``."""


@dataclass(frozen=True, slots=True)
class Progress:
    elapsed: float
    messages: int
    assigned: int
    waiting: int
    hit_ratio: float | None

    def line(self) -> str:
        ratio = "-" if self.hit_ratio is None else f"{self.hit_ratio:.0%}"
        return (
            f"{self.elapsed:5.0f}s  messages {self.messages:6d}  assigned {self.assigned:5d}"
            f"  waiting {self.waiting:4d}  hit ratio {ratio:>4}"
        )


@dataclass
class Figures:
    """Counters updated by the stream reader, the customers and the agents."""

    messages: Counter[str] = field(default_factory=Counter)
    routed: int = 0
    conversations: set[str] = field(default_factory=set)
    strategies: Counter[str] = field(default_factory=Counter)
    hits: int = 0
    misses: int = 0
    waits: list[float] = field(default_factory=list)
    fallbacks: int = 0
    overflowed: int = 0
    waiting: set[str] = field(default_factory=set)
    deadlines: dict[str, float] = field(default_factory=dict)
    """Conversations the router will act on by itself, and when (its clock, epoch
    seconds): a step's ``wait_until`` or an offer's ``expires_at``."""
    replies: int = 0
    closed: int = 0
    presence_changes: int = 0
    hops: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    last_event: float = 0.0

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


# -- the routing stream -------------------------------------------------------------


class StreamEvent(msgspec.Struct, kw_only=True):
    """The fields of routing events the simulation reads (others are ignored)."""

    conversation_id: str | None = None
    channel: str | None = None
    agent_id: str | None = None
    strategy: str | None = None
    waited_seconds: float | None = None
    preferred_agent_id: str | None = None
    wait_until: float | None = None
    expires_at: float | None = None
    from_agent_id: str | None = None
    to_agent_id: str | None = None


_stream_event = msgspec.json.Decoder(StreamEvent)
_DEADLINE_REPLACED = frozenset(
    {
        "conversation.queued",
        "conversation.offered",
        "conversation.fallback",
        "conversation.assigned",
        "conversation.reassigned",
        "conversation.overflowed",
        "conversation.closed",
    }
)
"""Events after which a conversation's pending step or offer deadline no longer stands
(``conversation.queued`` and ``conversation.offered`` announce the next one, if any)."""


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, bytes]]:
    """``(event type, data)`` of a Server-Sent Events response, comments skipped."""
    kind, data = "message", b""
    async for raw in response.content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield kind, data
            kind, data = "message", b""
        elif line.startswith(b"event:"):
            kind = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data += line[5:].strip()


# -- the simulation -----------------------------------------------------------------


@dataclass
class Customer:
    index: int
    phone: str
    email: str
    channel: str
    webchat_token: str | None = None
    """The web chat session's token, once the customer opened one."""
    email_thread: str | None = None


@dataclass
class Agent:
    agent_id: str
    name: str
    shift_start: float
    shift_end: float
    online: bool = False
    conversations: dict[str, int] = field(default_factory=dict)
    """Conversations the agent owns and the replies it still means to write."""
    busy: set[str] = field(default_factory=set)
    """Conversations with a reply being written."""


class Simulation:
    def __init__(self, options: Options, session: aiohttp.ClientSession) -> None:
        self.o = options
        self.http = session
        self.rng = random.Random(options.seed)
        self.run_id = uuid.uuid4().hex[:8]  # message ids must not repeat across runs
        self.figures = Figures()
        self.stopping = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.api = f"{options.url.rstrip('/')}/v1/domains/{options.domain}"
        self.headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
        self._next_send = 0.0
        self._t0 = 0.0
        channels = options.channels
        weights = [CHANNEL_WEIGHTS[c] for c in channels]
        self.customers = [
            Customer(
                index=i,
                phone=f"+1555{options.seed % 100:02d}{i:05d}",
                email=f"customer{i:05d}.s{options.seed}@example.com",
                channel=self.rng.choices(channels, weights)[0],
            )
            for i in range(options.customers)
        ]
        self.agents = {a.agent_id: a for a in self._make_agents()}

    def _make_agents(self) -> list[Agent]:
        span = self.o.duration * self.o.speed
        agents = []
        for i in range(self.o.agents):
            if i < max(1, round(self.o.agents * 0.75)):
                start = -self.rng.uniform(0, 5 * HOUR)  # already on shift
            else:
                start = self.rng.uniform(0.1, 0.6) * span  # comes in later
            name = AGENT_NAMES[i % len(AGENT_NAMES)]
            agent_id = f"sim-{name.lower()}-{i:03d}"
            agents.append(Agent(agent_id, name, start, start + 8 * HOUR))
        return agents

    # -- time --

    def now(self) -> float:
        """Simulated seconds since the start."""
        return (time.monotonic() - self._t0) * self.o.speed

    async def pause(self, simulated: float) -> bool:
        """Sleep ``simulated`` seconds of simulated time; False when the run is ending."""
        try:
            await asyncio.wait_for(self.stopping.wait(), max(0.0, simulated / self.o.speed))
        except TimeoutError:
            return True
        return False

    async def _throttle(self) -> None:
        now = time.monotonic()
        at = max(now, self._next_send)
        self._next_send = at + 1.0 / self.o.rate
        if at > now:
            await asyncio.sleep(at - now)

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- requests --

    async def _request(
        self, what: str, method: str, url: str, ok: int | tuple[int, ...], **kwargs: Any
    ) -> bool:
        try:
            async with self.http.request(method, url, **kwargs) as response:
                body = await response.read()
                if response.status in (ok if isinstance(ok, tuple) else (ok,)):
                    return True
                reason = _error_reason(body) if response.status == 409 else ""
                self.figures.errors[f"{what} {response.status}{reason}"] += 1
        except (aiohttp.ClientError, TimeoutError) as error:
            self.figures.errors[f"{what} {type(error).__name__}"] += 1
        return False

    async def api_call(self, what: str, method: str, path: str, body: Any) -> bool:
        return await self._request(
            what, method, self.api + path, (200, 202), json=body, headers=self.headers
        )

    # -- customers --

    async def send(self, customer: Customer, text: str) -> None:
        """One customer message on the customer's current channel, signed as its provider."""
        await self._throttle()
        if self.stopping.is_set():
            return
        channel = customer.channel
        message_id = f"{self.run_id}{uuid.UUID(int=self.rng.getrandbits(128)).hex}"
        match channel:
            case "webchat":
                sent = await self._webchat(customer, message_id, text)
            case "sms":
                sent = await self._twilio(customer, message_id[:32], text)
            case "whatsapp":
                sent = await self._whatsapp(customer, message_id, text)
            case _:
                sent = await self._mailgun(customer, message_id, text)
        if sent:
            self.figures.messages[channel] += 1

    async def _webchat(self, customer: Customer, message_id: str, text: str) -> bool:
        if customer.webchat_token is None:
            try:
                async with self.http.post(self.api + "/webchat/sessions", json={}) as response:
                    if response.status != 201:
                        self.figures.errors[f"webchat session {response.status}"] += 1
                        return False
                    customer.webchat_token = (await response.json())["token"]
            except (aiohttp.ClientError, TimeoutError) as error:
                self.figures.errors[f"webchat session {type(error).__name__}"] += 1
                return False
        body = {"message_id": message_id, "text": text}
        auth = {"Authorization": f"Bearer {customer.webchat_token}"}
        return await self._request(
            "webchat", "POST", self.api + "/webchat/messages", 202, json=body, headers=auth
        )

    async def _twilio(self, customer: Customer, sid: str, text: str) -> bool:
        path = "/webhooks/twilio/sms"
        params = [
            ("MessageSid", "SM" + sid),
            ("SmsSid", "SM" + sid),
            ("AccountSid", "AC" + "0" * 32),
            ("From", customer.phone),
            ("To", self.o.twilio_number),
            ("Body", text),
            ("NumMedia", "0"),
            ("SmsStatus", "received"),
        ]
        signature = twilio_signature(self.o.secrets["sms"], self.o.signed_base + path, params)
        return await self._request(
            "twilio",
            "POST",
            self.o.url.rstrip("/") + path,
            200,
            data=params,
            headers={"X-Twilio-Signature": signature},
        )

    async def _whatsapp(self, customer: Customer, message_id: str, text: str) -> bool:
        wa_id = customer.phone.lstrip("+")
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550000000",
                "phone_number_id": self.o.whatsapp_phone_number_id,
            },
            "contacts": [{"profile": {"name": f"Customer {customer.index}"}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": f"wamid.{message_id}",
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
        note = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA-SIM", "changes": [{"field": "messages", "value": value}]}],
        }
        body = msgspec.json.encode(note)
        signature = meta_signature(self.o.secrets["whatsapp"], body)
        return await self._request(
            "meta",
            "POST",
            self.o.url.rstrip("/") + "/webhooks/meta",
            200,
            data=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        )

    async def _mailgun(self, customer: Customer, message_id: str, text: str) -> bool:
        own = f"<{message_id}@mail.example.com>"
        timestamp, token = str(int(time.time())), uuid.uuid4().hex + uuid.uuid4().hex[:18]
        fields = {
            "recipient": self.o.email_address,
            "sender": customer.email,
            "from": f"Customer {customer.index} <{customer.email}>",
            "subject": "Re: my order" if customer.email_thread else "My order",
            "body-plain": text,
            "stripped-text": text,
            "Message-Id": own,
            "timestamp": timestamp,
            "token": token,
            "signature": mailgun_signature(self.o.secrets["email"], timestamp, token),
        }
        if customer.email_thread:
            fields["In-Reply-To"] = customer.email_thread
            fields["References"] = customer.email_thread
        else:
            customer.email_thread = own
        return await self._request(
            "mailgun",
            "POST",
            self.o.url.rstrip("/") + "/webhooks/email/mailgun",
            200,
            data=fields,
        )

    async def customer(self, customer: Customer) -> None:
        """Arrive, write a few messages, go away for hours, come back (maybe elsewhere)."""
        rng = self.rng
        if not await self.pause(rng.uniform(0, 0.4) * self.o.duration * self.o.speed):
            return
        while True:
            for _ in range(rng.randint(1, 4)):
                await self.send(customer, rng.choice(PHRASES))
                gap = rng.uniform(10, 60) * MINUTE if customer.channel == "email" else 0
                if not await self.pause(gap + rng.uniform(20, 120)):
                    return
            if not await self.pause(rng.uniform(1, 6) * HOUR):
                return
            channels = self.o.channels
            if len(channels) > 1 and rng.random() < HOP_PROBABILITY:
                customer.channel = rng.choice([c for c in channels if c != customer.channel])
                self.figures.hops += 1
            if customer.channel == "email" and rng.random() < 0.5:
                customer.email_thread = None  # a new email thread rather than a reply

    # -- agents --

    async def register_agents(self) -> None:
        capacity = {c: CAPACITY[c] for c in self.o.channels}
        await asyncio.gather(
            *(
                self.api_call(
                    "register",
                    "PUT",
                    f"/agents/{a.agent_id}",
                    {"name": a.name, "capacity": capacity},
                )
                for a in self.agents.values()
            )
        )

    async def set_presence(self, agent: Agent, status: str) -> None:
        if await self.api_call(
            "presence", "POST", f"/agents/{agent.agent_id}/presence", {"status": status}
        ):
            agent.online = status == "online"
            self.figures.presence_changes += 1

    async def shift(self, agent: Agent) -> None:
        """Log in at the shift's start, take breaks, log out at its end."""
        rng = self.rng
        if agent.shift_start > 0 and not await self.pause(agent.shift_start):
            return
        await self.set_presence(agent, "online")
        while True:
            work = rng.uniform(1, 3) * HOUR
            if self.now() + work >= agent.shift_end:
                if await self.pause(agent.shift_end - self.now()):
                    await self.set_presence(agent, "offline")
                return
            if not await self.pause(work):
                return
            await self.set_presence(agent, "away")
            if not await self.pause(rng.uniform(10, 20) * MINUTE):
                return
            await self.set_presence(agent, "online")

    async def answer(self, agent: Agent, conversation_id: str, channel: str) -> None:
        """Write a reply after the agent's reply time; close after the last one."""
        if conversation_id in agent.busy:
            return
        agent.busy.add(conversation_id)
        try:
            think = (
                self.rng.uniform(5, 40) * MINUTE if channel == "email" else self.rng.uniform(15, 90)
            )
            if not await self.pause(think) or not agent.online:
                return
            left = agent.conversations.get(conversation_id)
            if left is None:
                return  # moved on meanwhile
            if await self.api_call(
                "reply",
                "POST",
                f"/conversations/{conversation_id}/reply",
                {"text": "Let me check that for you.", "agent_id": agent.agent_id},
            ):
                self.figures.replies += 1
            if left > 1:
                agent.conversations[conversation_id] = left - 1
                return
            if not await self.pause(self.rng.uniform(1, 5) * MINUTE):
                return
            if conversation_id in agent.conversations:
                await self.api_call(
                    "close",
                    "POST",
                    f"/conversations/{conversation_id}/close",
                    {"reason": "resolved"},
                )
        finally:
            agent.busy.discard(conversation_id)

    # -- the stream --

    def on_event(self, kind: str, data: bytes) -> None:
        f = self.figures
        f.last_event = time.monotonic()
        try:
            event = _stream_event.decode(data)
        except msgspec.DecodeError:
            return
        cid = event.conversation_id
        if cid is None:
            return
        f.conversations.add(cid)
        agent = self.agents.get(event.agent_id or "")
        if kind in _DEADLINE_REPLACED:
            f.deadlines.pop(cid, None)
        match kind:
            case "message.routed":
                f.routed += 1
                if agent is not None and cid in agent.conversations:
                    self.spawn(self.answer(agent, cid, event.channel or ""))
            case "conversation.queued":
                f.waiting.add(cid)
                if event.wait_until is not None:
                    f.deadlines[cid] = event.wait_until
            case "conversation.fallback":
                f.fallbacks += 1
            case "conversation.assigned":
                f.waiting.discard(cid)
                f.strategies[event.strategy or "unknown"] += 1
                f.waits.append(event.waited_seconds or 0.0)
                if event.preferred_agent_id is not None:
                    if event.preferred_agent_id == event.agent_id:
                        f.hits += 1
                    else:
                        f.misses += 1
                self._drop(cid)
                if agent is not None:
                    agent.conversations[cid] = self.rng.randint(1, 3)
                    self.spawn(self.answer(agent, cid, event.channel or ""))
            case "conversation.offered":
                if event.expires_at is not None:
                    f.deadlines[cid] = event.expires_at
                if agent is not None:
                    self.spawn(
                        self.api_call(
                            "accept",
                            "POST",
                            f"/conversations/{cid}/accept",
                            {"agent_id": agent.agent_id},
                        )
                    )
            case "conversation.reassigned":
                self._drop(cid)
            case "conversation.overflowed":
                f.waiting.discard(cid)
                f.overflowed += 1
            case "conversation.closed":
                f.waiting.discard(cid)
                f.closed += 1
                self._drop(cid)

    def _drop(self, conversation_id: str) -> None:
        for agent in self.agents.values():
            agent.conversations.pop(conversation_id, None)

    async def follow(self, connected: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.http.get(self.api + "/stream", headers=self.headers, timeout=timeout) as r:
            if r.status != 200:
                raise SimulationError(f"stream: {r.status} {(await r.text())[:200]}")
            connected.set()
            async for kind, data in sse_events(r):
                self.on_event(kind, data)

    # -- the run --

    def progress(self) -> Progress:
        f = self.figures
        return Progress(
            elapsed=time.monotonic() - self._t0,
            messages=sum(f.messages.values()),
            assigned=sum(f.strategies.values()),
            waiting=len(f.waiting),
            hit_ratio=f.hit_ratio,
        )

    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> Summary:
        connected = asyncio.Event()
        stream = asyncio.create_task(self.follow(connected))
        try:
            waiter = asyncio.create_task(connected.wait())
            await asyncio.wait({stream, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if stream.done():
                stream.result()  # raises the stream's error
            if not connected.is_set():
                raise SimulationError("the routing stream did not answer within 10 s")
            await self.register_agents()
            self._t0 = time.monotonic()
            for agent in self.agents.values():
                self.spawn(self.shift(agent))
            for customer in self.customers:
                self.spawn(self.customer(customer))
            end = self._t0 + self.o.duration
            while (left := end - time.monotonic()) > 0:
                await asyncio.sleep(min(1.0, left))
                if stream.done():
                    stream.result()
                if on_progress is not None:
                    on_progress(self.progress())
            real = time.monotonic() - self._t0
            self.stopping.set()
            await self._drain(stream, on_progress)
            return self.summary(real)
        finally:
            self.stopping.set()
            for task in [*self.tasks, stream]:
                task.cancel()
            await asyncio.gather(*self.tasks, stream, return_exceptions=True)

    async def _drain(
        self, stream: asyncio.Task[None], on_progress: Callable[[Progress], None] | None
    ) -> None:
        """Let in-flight requests finish, then wait for the router to route every message,
        to act on every deadline it announced that falls within the drain, and for the
        stream to go quiet (at most ``drain`` seconds)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.o.drain / 2)
        deadline = time.monotonic() + self.o.drain
        # Announced deadlines are on the router's clock (epoch seconds). One due later
        # than the drain cannot be waited for: what it brings is after the summary.
        drain_ends_at = time.time() + self.o.drain
        f = self.figures
        while time.monotonic() < deadline and not stream.done():
            quiet = time.monotonic() - f.last_event > 0.75
            pending = any(due <= drain_ends_at for due in f.deadlines.values())
            if f.routed >= sum(f.messages.values()) and quiet and not pending and not self.tasks:
                break
            await asyncio.sleep(0.1)
        if on_progress is not None:
            on_progress(self.progress())

    def summary(self, real: float) -> Summary:
        f = self.figures
        return Summary(
            domain=self.o.domain,
            seed=self.o.seed,
            speed=self.o.speed,
            real_seconds=round(real, 2),
            simulated_seconds=round(real * self.o.speed, 1),
            customers=self.o.customers,
            agents=self.o.agents,
            messages=sum(f.messages.values()),
            messages_by_channel=dict(sorted(f.messages.items())),
            messages_routed=f.routed,
            conversations=len(f.conversations),
            assignments=sum(f.strategies.values()),
            assignments_by_strategy=dict(sorted(f.strategies.items())),
            preferred_hits=f.hits,
            preferred_misses=f.misses,
            preferred_hit_ratio=None if f.hit_ratio is None else round(f.hit_ratio, 4),
            wait_p50_seconds=_round(percentile(f.waits, 0.5)),
            wait_p95_seconds=_round(percentile(f.waits, 0.95)),
            fallbacks=f.fallbacks,
            overflowed=f.overflowed,
            waiting_at_end=len(f.waiting),
            replies=f.replies,
            closed=f.closed,
            presence_changes=f.presence_changes,
            channel_hops=f.hops,
            errors=dict(sorted(f.errors.items())),
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class SimulationError(Exception):
    """The service cannot be simulated against (unreachable, refused the token, ...)."""


async def simulate(
    options: Options, on_progress: Callable[[Progress], None] | None = None
) -> Summary:
    """Run one simulation against the service at ``options.url``."""
    if options.rate <= 0 or options.speed <= 0 or options.duration <= 0:
        raise SimulationError("rate, speed and duration must be positive")
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            return await Simulation(options, session).run(on_progress)
        except aiohttp.ClientConnectionError as error:
            raise SimulationError(f"cannot reach {options.url}: {error}") from None


def secrets_from(environ: Mapping[str, str]) -> dict[str, str]:
    return {c: environ[v] for c, v in SECRET_VARIABLES.items() if environ.get(v)}
