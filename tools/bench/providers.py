"""Provider stand-ins on loopback for tests and benchmarks: Twilio's Messages API and the
WhatsApp Cloud API, as far as egress uses them, in their real request and answer shapes.

- Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded (``From``,
  ``To``, ``Body`` or ``ContentSid`` + ``ContentVariables``, ``MediaUrl``), basic auth;
  201 with the message resource (``sid``, ``status``). A request repeating an
  ``I-Twilio-Idempotency-Token`` already accepted gets the first message back and sends
  nothing: what the token is for.
- WhatsApp Cloud API: ``POST /{version}/{phone_number_id}/messages``, JSON, bearer token;
  200 with ``messages[0].id`` (a ``wamid``). No idempotency key: every accepted request is
  a message the customer receives.
- Messenger / Instagram Send API: ``POST /{version}/{me|account id}/messages``, JSON
  (``recipient.id``, ``messaging_type``, ``tag``, ``message``); 200 with ``recipient_id``
  and ``message_id``. No idempotency key either.

``delay`` seconds pass between receiving a request (it counts from then) and answering
it: a provider far away, and a sender that can die with requests under way.
``throttled`` requests in a row are answered 429 first (Twilio's error body with
``Retry-After``; Graph's ``130429`` for WhatsApp): the provider telling egress to slow down.
Every request is kept in ``requests`` with its receive time, and every message a customer
would receive in ``delivered``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web


@dataclass(frozen=True)
class Received:
    provider: str
    """``twilio``, ``whatsapp`` or ``send_api`` (Messenger, Instagram)."""
    path: str
    sender: str
    """Our side: Twilio's ``From``, the phone number id, ``me`` or the Instagram account."""
    to: str
    at: float
    """Receive time (``time.time()``)."""
    status: int
    """What the stand-in answered."""
    auth: str = ""
    account: str | None = None
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None
    idempotency: str | None = None


class FakeProviders:
    def __init__(
        self,
        *,
        throttled: int = 0,
        retry_after: str | None = "0",
        twilio_sid: Callable[[int], str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.throttled = throttled
        self.delay = delay
        """Requests still to answer 429."""
        self.retry_after = retry_after
        self._twilio_sid = twilio_sid or (lambda n: f"SM{n:032x}")
        self.requests: list[Received] = []
        self.delivered: list[Received] = []
        self._by_token: dict[str, str] = {}
        self.app = web.Application()
        self.app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.twilio)
        self.app.router.add_post("/{version}/{number}/messages", self.graph)

    def delivered_to(self) -> Counter[str]:
        """Messages received per customer address."""
        return Counter(message.to for message in self.delivered)

    def _throttle(self) -> bool:
        if self.throttled > 0:
            self.throttled -= 1
            return True
        return False

    def _headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": self.retry_after}

    async def twilio(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        token = request.headers.get("I-Twilio-Idempotency-Token")
        status = 429 if self._throttle() else 201
        received = Received(
            provider="twilio",
            path=request.path,
            sender=form.get("From", ""),
            to=form.get("To", ""),
            at=time.time(),
            status=status,
            auth=request.headers.get("Authorization", ""),
            account=request.match_info["sid"],
            form=form,
            idempotency=token,
        )
        self.requests.append(received)
        if status == 429:
            body = {"code": 20429, "message": "Too Many Requests", "status": 429}
            return web.json_response(body, status=429, headers=self._headers())
        if token is not None and token in self._by_token:
            sid = self._by_token[token]
        else:
            sid = self._twilio_sid(len(self.delivered))
            self.delivered.append(received)
            if token is not None:
                self._by_token[token] = sid
        await asyncio.sleep(self.delay)
        return web.json_response({"sid": sid, "status": "queued", "to": received.to}, status=201)

    async def graph(self, request: web.Request) -> web.Response:
        """The Graph API's ``messages`` edge: WhatsApp Cloud API or the Send API."""
        body = msgspec.json.decode(await request.read())
        whatsapp = body.get("messaging_product") == "whatsapp"
        status = 429 if self._throttle() else 200
        received = Received(
            provider="whatsapp" if whatsapp else "send_api",
            path=request.path,
            sender=request.match_info["number"],
            to=str(body.get("to", "")) if whatsapp else str(body["recipient"]["id"]),
            at=time.time(),
            status=status,
            auth=request.headers.get("Authorization", ""),
            json=body,
        )
        self.requests.append(received)
        if status == 429:
            error = {
                "message": "(#130429) Rate limit hit",
                "type": "OAuthException",
                "code": 130429,
            }
            return web.json_response({"error": error}, status=429, headers=self._headers())
        self.delivered.append(received)
        await asyncio.sleep(self.delay)
        if not whatsapp:
            mid = f"m_{len(self.delivered):024d}"
            return web.json_response({"recipient_id": received.to, "message_id": mid})
        wamid = f"wamid.{len(self.delivered):024d}"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": received.to, "wa_id": received.to}],
                "messages": [{"id": wamid}],
            }
        )
