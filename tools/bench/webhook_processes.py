"""The webhook benchmark's own processes: the load generator and the raw baseline.

``python -m tools.bench.webhook_processes KIND SETTINGS_JSON``, ``KIND`` one of:

- ``load``: signed Twilio SMS webhooks (``tools.simulate_signing.twilio_signature``)
  over keep-alive HTTP (one ``aiohttp.ClientSession``, a pool of ``connections``),
  open-loop: request ``i`` is due at ``start + i / rate`` and is sent then whether or not
  earlier ones were answered, so a slow server cannot slow the load down (no coordinated
  omission). A consumer of the output topic in this process notes when each message's
  output record is read. Latencies run from the due time: to the HTTP answer
  (acceptance) and to the output record (routing). The first ``warm`` requests are sent
  the same way and not counted. Prints ``sending`` just before the first request, then
  its figures as one JSON line, on stdout.
- ``raw-app``: the raw baseline's ingress: an aiohttp app that checks the same Twilio
  signature with ``hmac``, produces the message to a topic (``acks=all``, the service's
  linger) and answers after the broker's acknowledgement.
- ``raw-consumer``: the raw baseline's consumer, ``tools.bench.e2e_bench.raw_pipeline``
  (COPY of each batch in one transaction, one event per message), until SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import random
import signal
import sys
import time
import uuid
from urllib.parse import urlencode

import aiohttp
import msgspec
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from adapters.base import inbound_event_id
from router.engine import make_id
from runtime import collector
from runtime.stats import percentile
from schemas import Channel, MessageReceived
from tools.bench.e2e_bench import Services, raw_pipeline
from tools.simulate_signing import twilio_signature

SENDING = "sending"
"""The line the load prints on stdout just before its first request."""
TWIML = "<?xml version='1.0' encoding='UTF-8'?><Response/>"


class LoadSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    """The webhook URL, as signed."""
    token: str
    account_sid: str
    number: str
    domain: str
    rate: float
    warm: int
    measured: int
    new_fraction: float
    bootstrap: str
    topic: str
    """The output topic read for each message's record."""
    match_header: str
    """The header identifying a message's output record: ``ce_id`` (Switchboard's
    ``message.routed``: an id made from the message's event id, which is made from the
    MessageSid) or ``sid`` (the raw baseline copies the MessageSid there)."""
    match_type: str | None = None
    """The ``ce_type`` header an output record must have, when set."""
    connections: int = 64
    seed: int = 22
    timeout: float = 60.0
    """Seconds after the last request that output records are waited for."""


class LoadFigures(msgspec.Struct, frozen=True, kw_only=True):
    """What the load saw; the percentiles are of the measured requests, 0 when none was
    answered or routed (the counts say so)."""

    sent: int
    """Requests sent, the warm-up's included."""
    accepted: int
    """Measured requests answered 2xx."""
    routed: int
    """Measured messages whose output record was read."""
    accept_p50_ms: float
    accept_p99_ms: float
    routed_p50_ms: float
    routed_p99_ms: float
    cpu_seconds: float = 0.0
    """The generator's own user + system time, from its first request to its end: it shares
    the machine's cores with the pipeline it loads."""


def routed_ids(domain: str, sid: str) -> list[bytes]:
    """The ids the message's ``message.routed`` may have: the engine numbers the events
    it makes for a message (``router.engine.call``), and a new customer's message makes
    its conversation first, so the routed event is among the first few."""
    message_id = inbound_event_id(domain, str(Channel.SMS), sid)
    return [make_id(f"{message_id}/{n}").encode() for n in range(4)]


def phone(number: int) -> str:
    return f"+1666{number:07d}"


def customers(settings: LoadSettings) -> list[str]:
    """Each request's customer phone: the warm-up's are all new; then a new customer
    with probability ``new_fraction``, else one who wrote before (returning)."""
    draw = random.Random(settings.seed)
    phones: list[str] = []
    known: list[str] = []
    for index in range(settings.warm + settings.measured):
        if index < settings.warm or not known or draw.random() < settings.new_fraction:
            known.append(phone(len(known)))
            phones.append(known[-1])
        else:
            phones.append(draw.choice(known))
    return phones


def signed_request(settings: LoadSettings, sid: str, customer: str) -> tuple[bytes, dict[str, str]]:
    """An inbound SMS webhook as Twilio sends it: the form body and its headers."""
    form = [
        ("AccountSid", settings.account_sid),
        ("MessageSid", sid),
        ("SmsMessageSid", sid),
        ("From", customer),
        ("To", settings.number),
        ("Body", "Hello, where is my parcel?"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
    ]
    headers = {
        "X-Twilio-Signature": twilio_signature(settings.token, settings.url, form),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return urlencode(form).encode(), headers


async def run_load(settings: LoadSettings) -> LoadFigures:
    total = settings.warm + settings.measured
    phones = customers(settings)
    sids = [f"SM{uuid.uuid4().hex}" for _ in range(total)]
    # Built and signed before the clock starts: the generator's own work stays out of
    # the paced loop, so it keeps pace at rates the services cannot.
    requests = [
        signed_request(settings, sid, customer) for sid, customer in zip(sids, phones, strict=True)
    ]
    index_of: dict[bytes, int] = {}
    for index, sid in enumerate(sids):
        if settings.match_header == "ce_id":
            for key in routed_ids(settings.domain, sid):
                index_of[key] = index
        else:
            index_of[sid.encode()] = index
    due = [0.0] * total
    answered = [0.0] * total
    routed = [0.0] * total
    statuses = [0] * total
    reader = AIOKafkaConsumer(
        settings.topic,
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    await reader.start()
    await reader.seek_to_end()
    finished = asyncio.Event()
    match_type = settings.match_type.encode() if settings.match_type else None

    async def read() -> None:
        remaining = total
        while remaining:
            batch = await reader.getmany(timeout_ms=50)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    headers = dict(record.headers)
                    if match_type is not None and headers.get("ce_type") != match_type:
                        continue
                    index = index_of.get(headers.get(settings.match_header, b""), -1)
                    if index >= 0 and not routed[index]:
                        routed[index] = now
                        remaining -= 1
        finished.set()

    async def send(session: aiohttp.ClientSession, index: int) -> None:
        body, headers = requests[index]
        try:
            async with session.post(settings.url, data=body, headers=headers) as response:
                await response.read()
                statuses[index] = response.status
        except aiohttp.ClientError:
            statuses[index] = 599
        answered[index] = time.perf_counter()

    reading = asyncio.create_task(read())
    connector = aiohttp.TCPConnector(limit=settings.connections)
    sending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector) as session:
        # The parent starts its CPU clocks on this line: the start-up before it is not load.
        print(SENDING, flush=True)
        cpu_started = time.process_time()
        start = time.perf_counter() + 0.1
        for index in range(total):
            due[index] = start + index / settings.rate
            delay = due[index] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(session, index))
            sending.add(task)
            task.add_done_callback(sending.discard)
        while sending:
            await asyncio.gather(*list(sending))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), settings.timeout)
    reading.cancel()
    await reader.stop()
    measured = range(settings.warm, total)
    accept = [(answered[i] - due[i]) * 1000 for i in measured if 200 <= statuses[i] < 300]
    route = [(routed[i] - due[i]) * 1000 for i in measured if routed[i]]
    return LoadFigures(
        sent=total,
        accepted=len(accept),
        routed=len(route),
        accept_p50_ms=percentile(accept, 0.5) or 0.0,
        accept_p99_ms=percentile(accept, 0.99) or 0.0,
        routed_p50_ms=percentile(route, 0.5) or 0.0,
        routed_p99_ms=percentile(route, 0.99) or 0.0,
        cpu_seconds=time.process_time() - cpu_started,
    )


# -- the raw baseline --------------------------------------------------------------------


class RawSettings(msgspec.Struct, frozen=True, kw_only=True):
    port: int
    token: str
    domain: str
    bootstrap: str
    topic: str
    sink: str = ""
    url: str = ""
    """The consumer's database."""


def signature_ok(token: str, url: str, form: list[tuple[str, str]], given: str) -> bool:
    payload = url + "".join(name + value for name, value in sorted(set(form)))
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), given)


def raw_app(settings: RawSettings, producer: AIOKafkaProducer) -> web.Application:
    async def webhook(request: web.Request) -> web.Response:
        form = [(name, str(value)) for name, value in (await request.post()).items()]
        given = request.headers.get("X-Twilio-Signature", "")
        if not signature_ok(settings.token, str(request.url), form, given):
            return web.Response(status=403)
        fields = dict(form)
        sid, phone = fields["MessageSid"], fields["From"]
        event = MessageReceived(
            id=inbound_event_id(settings.domain, str(Channel.SMS), sid),
            domain=settings.domain,
            occurred_at=time.time(),
            channel=Channel.SMS,
            endpoint=fields["To"],
            customer_address=phone,
            customer_id=f"phone:{phone}",
            conversation_key=f"sms:{phone}",
            provider_message_id=sid,
            text=fields.get("Body", ""),
        )
        await producer.send_and_wait(
            settings.topic,
            value=msgspec.json.encode(event),
            key=settings.domain.encode(),
            headers=[("sid", sid.encode())],
        )
        return web.Response(text=TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/twilio/sms", webhook)
    return app


async def serve_raw_app(settings: RawSettings) -> None:
    # The service's producer settings (``runtime.kafka.make_producer``): concurrent
    # webhooks share a produce request.
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        linger_ms=2,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    runner = web.AppRunner(raw_app(settings, producer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    collector.settle()  # as the service's processes do (``switchboard.cli.serve``)
    try:
        await until_terminated()
    finally:
        await runner.cleanup()
        await producer.stop()


async def serve_raw_consumer(settings: RawSettings) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await raw_pipeline(
        Services(settings.bootstrap, ""),
        settings.url,
        settings.topic,
        settings.sink,
        10**9,
        stop=stop,
    )


async def until_terminated() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def main(argv: list[str]) -> int:
    kind, settings = argv
    if kind == "load":
        figures = asyncio.run(run_load(msgspec.json.decode(settings, type=LoadSettings)))
        print(msgspec.json.encode(figures).decode(), flush=True)
    elif kind == "raw-app":
        asyncio.run(serve_raw_app(msgspec.json.decode(settings, type=RawSettings)))
    elif kind == "raw-consumer":
        asyncio.run(serve_raw_consumer(msgspec.json.decode(settings, type=RawSettings)))
    else:
        raise SystemExit(f"unknown process kind {kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
