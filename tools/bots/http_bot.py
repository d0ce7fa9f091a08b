"""The reference bot over HTTP: the webhook ``switchboard adapters`` calls with each turn,
and with each of its hand-offs whose customer waits for a person.

``python -m tools.bots.http_bot --port 8085 --secret-env HELPER_BOT_SECRET``

A bot with ``[domains.<d>.routing.bots.<bot>.webhook]`` takes part this way (the protocol:
``schemas.bot_webhook``):

1. ``POST`` (any path) with a ``bot.turn`` or ``conversation.handed_off`` event as JSON
   (``schemas.bot_webhook.BotWebhookRequest``). With a secret, the request
   must carry ``X-Switchboard-Signature: t=<unix seconds>,v1=<hex>``, the hex being the
   HMAC-SHA256 of ``"<t>.<body>"`` under the secret, with ``t`` within 300 seconds of
   this bot's clock; otherwise ``401``. Several ``v1`` (a secret being rotated): one
   matching is enough. Without ``--secret-env`` nothing is checked (a bot on a private
   network).
2. A body that is neither: ``400``.
3. ``200`` with the answer (``BotWebhookAnswer``): for a turn, the rules of
   ``tools.bots.logic`` (``respond``); a turn posted again (a retried call) gets the same
   answer. For a hand-off, what the waiting customer can expect (``logic.relay``), and
   the conversation is forgotten; a hand-off nobody waits on (a takeover, a person has
   it already: the adapters never post those) has nothing to relay: ``422``.

``GET /healthz`` answers 200 once the bot listens. ``--delay SECONDS`` answers that much
later (to see the webhook's ``timeout`` fail a turn). SIGTERM or SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import assert_never

import msgspec
import structlog
from aiohttp import web

from runtime import logging as logs
from schemas.bot_webhook import (
    SIGNATURE_HEADER,
    SIGNATURE_TOLERANCE_SECONDS,
    BotAction,
    BotWebhookAnswer,
    BotWebhookRequest,
)
from schemas.routing import BotTurn, ConversationHandedOff
from tools.bots.logic import Memories, relay

log = structlog.get_logger(__name__)

_request_decoder: msgspec.json.Decoder[BotWebhookRequest] = msgspec.json.Decoder(BotWebhookRequest)


def sign(body: bytes, secret: str, now: float) -> str:
    """The ``X-Switchboard-Signature`` value of ``body`` at ``now``."""
    t = int(now)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(header: str | None, body: bytes, secret: str, now: float) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` at a time within the tolerance
    of ``now`` (digests compared in constant time)."""
    if not header:
        return False
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            digests.append(value)
    if timestamp is None or not digests:
        return False
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    # Every candidate is compared, so the time taken does not say which one matched.
    matches = [hmac.compare_digest(expected.encode(), d.encode()) for d in digests]
    return any(matches)


BOT = web.AppKey("bot", Memories)


def build_app(
    secret: str | None, *, delay: float = 0.0, clock: Callable[[], float] = time.time
) -> web.Application:
    """The bot's application: ``secret`` None checks no signature."""

    async def post_turn(request: web.Request) -> web.Response:
        body = await request.read()
        # Step 1
        if secret is not None and not verify(
            request.headers.get(SIGNATURE_HEADER), body, secret, clock()
        ):
            log.warning("turn_refused", reason="bad_signature")
            return web.json_response({"error": "bad or missing signature"}, status=401)
        # Step 2
        try:
            event = _request_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            return web.json_response(
                {"error": f"not a bot.turn nor a conversation.handed_off: {error}"}, status=400
            )
        # Step 3
        actions: tuple[BotAction, ...]
        match event:
            case BotTurn():
                actions = request.app[BOT].answer(event)
                if delay > 0:
                    await asyncio.sleep(delay)
                log.info(
                    "turn_answered",
                    conversation_id=event.conversation_id,
                    turn_id=event.id,
                    actions=[type(a).__struct_config__.tag for a in actions],
                )
            case ConversationHandedOff():
                request.app[BOT].forget(event.conversation_id)
                actions = tuple(relay(event))
                if not actions:
                    return web.json_response(
                        {"error": "nothing to relay: nobody waits for a person"}, status=422
                    )
                log.info(
                    "handoff_relayed",
                    conversation_id=event.conversation_id,
                    handed_off_id=event.id,
                )
            case _:
                assert_never(event)
        return web.Response(
            body=msgspec.json.encode(BotWebhookAnswer(actions=actions)),
            content_type="application/json",
        )

    async def get_health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app[BOT] = Memories()
    app.router.add_get("/healthz", get_health)
    app.router.add_post("/{path:.*}", post_turn)
    return app


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bots.http_bot",
        description="The reference bot as a signed webhook (schemas.bot_webhook): its"
        " turns, and its hand-offs while the customer waits.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--secret-env", help="variable holding the signing secret (unset: requests unchecked)"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    if args.delay < 0:
        parser.error("--delay must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    secret: str | None = None
    if args.secret_env is not None:
        secret = os.environ.get(args.secret_env)
        if not secret:
            print(f"http_bot: {args.secret_env} is not set", file=sys.stderr)
            return 2
    logs.configure(os.environ.get("SWITCHBOARD_LOG_FORMAT"), secrets=[secret] if secret else [])
    if secret is None:
        log.warning("signatures_unchecked")
    log.info("bot_starting", host=args.host, port=args.port)
    web.run_app(
        build_app(secret, delay=args.delay),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
