"""Provider stand-ins on loopback for tests and benchmarks: Twilio's Messages API and the
WhatsApp Cloud API, as far as egress uses them, in their real request and answer shapes.

- Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded (``From``,
  ``To``, ``Body`` or ``ContentSid`` + ``ContentVariables``, ``MediaUrl``), basic auth;
  201 with the message resource (``sid``, ``status``). No idempotency key, as Twilio
  documents for a message's ``POST``: every accepted request is a message the customer
  receives.
- WhatsApp Cloud API: ``POST /{version}/{phone_number_id}/messages``, JSON, bearer token;
  200 with ``messages[0].id`` (a ``wamid``). No idempotency key: every accepted request is
  a message the customer receives.
- Messenger / Instagram Send API: ``POST /{version}/{me|account id}/messages``, JSON
  (``recipient.id``, ``messaging_type``, ``tag``, ``message``); 200 with ``recipient_id``
  and ``message_id``. No idempotency key either.
- Both Graph edges refuse what Graph refuses (``graph_refusal``): no bearer token (400,
  code 2500), a body not of the documented shape (400, code 100, the reason in
  ``error_data.details``): a Cloud API message of an unknown ``type`` or without its
  object, media without exactly one of ``id``/``link`` or captioned where the kind takes
  no caption, a ``filename`` off a document, an interactive message without body or with
  more than 3 buttons; a Send API message without ``recipient.id``, with an unknown
  ``messaging_type`` or a tag missing, with not exactly one of ``text`` and
  ``attachment``, an attachment of an unknown type or without ``payload.url``/
  ``attachment_id``, more than 13 quick replies.

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
        )
        self.requests.append(received)
        if status == 429:
            body = {"code": 20429, "message": "Too Many Requests", "status": 429}
            return web.json_response(body, status=429, headers=self._headers())
        sid = self._twilio_sid(len(self.delivered))
        self.delivered.append(received)
        await asyncio.sleep(self.delay)
        return web.json_response({"sid": sid, "status": "queued", "to": received.to}, status=201)

    async def graph(self, request: web.Request) -> web.Response:
        """The Graph API's ``messages`` edge: WhatsApp Cloud API or the Send API."""
        body = msgspec.json.decode(await request.read())
        refused = graph_refusal(body, request.headers.get("Authorization", ""))
        whatsapp = isinstance(body, dict) and body.get("messaging_product") == "whatsapp"
        # A refused request is not throttled: Graph checks the request first.
        status = refused[0] if refused is not None else (429 if self._throttle() else 200)
        recipient = body.get("recipient") if isinstance(body, dict) else None
        received = Received(
            provider="whatsapp" if whatsapp else "send_api",
            path=request.path,
            sender=request.match_info["number"],
            to=str(
                (body.get("to") or recipient or "") if whatsapp else (recipient or {}).get("id", "")
            ),
            at=time.time(),
            status=status,
            auth=request.headers.get("Authorization", ""),
            json=body,
        )
        self.requests.append(received)
        if refused is not None:
            return web.json_response({"error": refused[1]}, status=status)
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
        # Sent to a business-scoped user id, the contact is named by it, not by a number.
        named = "wa_id" if body.get("to") else "user_id"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": received.to, named: received.to}],
                "messages": [{"id": wamid}],
            }
        )


WHATSAPP_TYPES = frozenset(
    {"text", "image", "audio", "video", "document", "sticker", "location", "contacts"}
    | {"interactive", "template", "reaction"}
)
WHATSAPP_MEDIA = frozenset({"image", "audio", "video", "document", "sticker"})
WHATSAPP_CAPTIONED = frozenset({"image", "video", "document"})
SEND_API_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
SEND_API_ATTACHMENTS = frozenset({"image", "audio", "video", "file", "template"})


def graph_refusal(body: Any, authorization: str) -> tuple[int, dict[str, Any]] | None:
    """Graph's refusal of a ``messages`` call (status, error object), or None to accept."""
    if not authorization.startswith("Bearer ") or not authorization[7:].strip():
        return 400, {
            "message": "An active access token must be used to query information about the"
            " current user.",
            "type": "OAuthException",
            "code": 2500,
        }
    if not isinstance(body, dict):
        reason: str | None = "the body is not a JSON object"
    elif body.get("messaging_product") == "whatsapp":
        reason = _cloud_api_refusal(body)
    else:
        reason = _send_api_refusal(body)
    if reason is None:
        return None
    return 400, {
        "message": "(#100) Invalid parameter",
        "type": "OAuthException",
        "code": 100,
        "error_data": {"details": reason},
    }


def _text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _cloud_media(kind: str, media: dict[str, Any], *, header: bool = False) -> str | None:
    if ("id" in media) == ("link" in media):
        return f"{kind}: exactly one of id and link"
    if "caption" in media and (header or kind not in WHATSAPP_CAPTIONED):
        return f"{kind}: no caption allowed"
    if "filename" in media and kind != "document":
        return f"{kind}: filename is for documents"
    return None


def _cloud_api_refusal(body: dict[str, Any]) -> str | None:
    """What the Cloud API refuses in a ``messages`` body (None: nothing)."""
    kind = body.get("type", "text")
    # ``to`` a phone number, or ``recipient`` a business-scoped user id; ``to`` wins.
    if not _text(body.get("to"), 32) and not (
        "to" not in body and _text(body.get("recipient"), 140)
    ):
        return "to or recipient is required"
    if kind not in WHATSAPP_TYPES or not isinstance(body.get(kind), dict):
        return f"a {kind!r} message needs its {kind!r} object"
    content: dict[str, Any] = body[kind]
    if kind == "text":
        return None if _text(content.get("body"), 4096) else "text.body is required"
    if kind in WHATSAPP_MEDIA:
        return _cloud_media(kind, content)
    if kind == "location":
        coordinates = (content.get("latitude"), content.get("longitude"))
        ok = all(isinstance(c, int | float) for c in coordinates)
        return None if ok else "location needs latitude and longitude"
    if kind == "interactive":
        return _interactive_refusal(content)
    if kind == "template":
        language = content.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        named = _text(content.get("name"), 512) and _text(code, 16)
        return None if named else "a template needs its name and language.code"
    return None


def _interactive_refusal(content: dict[str, Any]) -> str | None:
    if content.get("type") != "button":
        return None  # lists, flows…: not sent by Switchboard
    if not _text((content.get("body") or {}).get("text"), 1024):
        return "interactive.body.text is required (at most 1024 characters)"
    buttons = (content.get("action") or {}).get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return "interactive.action.buttons: 1 to 3"
    for button in buttons:
        reply = button.get("reply") or {}
        if button.get("type") != "reply" or not _text(reply.get("title"), 20):
            return "each button: type reply, a title of at most 20 characters"
        if not _text(reply.get("id"), 256):
            return "each button: an id"
    header = content.get("header")
    if header is None:
        return None
    kind = header.get("type")
    if kind == "text":
        return None if _text(header.get("text"), 60) else "header.text"
    if kind not in WHATSAPP_CAPTIONED or not isinstance(header.get(kind), dict):
        return "header: text, image, video or document"
    return _cloud_media(kind, header[kind], header=True)


def _send_api_refusal(body: dict[str, Any]) -> str | None:
    """What the Send API refuses in a ``messages`` body (None: nothing)."""
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not _text(recipient.get("id"), 128):
        return "recipient.id is required"
    messaging_type = body.get("messaging_type")
    if messaging_type not in SEND_API_TYPES:
        return "messaging_type: RESPONSE, UPDATE or MESSAGE_TAG"
    if (messaging_type == "MESSAGE_TAG") != ("tag" in body):
        return "a tag goes with messaging_type MESSAGE_TAG"
    message = body.get("message")
    if not isinstance(message, dict) or ("text" in message) == ("attachment" in message):
        return "message: exactly one of text and attachment"
    if "text" in message and not _text(message["text"], 2000):
        return "message.text: 1 to 2000 characters"
    attachment = message.get("attachment")
    if attachment is not None:
        payload = attachment.get("payload") if isinstance(attachment, dict) else None
        if attachment.get("type") not in SEND_API_ATTACHMENTS or not isinstance(payload, dict):
            return "attachment: type image, audio, video, file or template, and a payload"
        url = payload.get("url")
        if not (isinstance(url, str) and url.startswith(("https://", "http://"))) and not (
            payload.get("attachment_id") or attachment["type"] == "template"
        ):
            return "attachment.payload: a url or an attachment_id"
    quick = message.get("quick_replies", [])
    if not isinstance(quick, list) or len(quick) > 13:
        return "quick_replies: at most 13"
    for option in quick:
        if option.get("content_type") == "text" and not (
            _text(option.get("title"), 20) and option.get("payload")
        ):
            return "a text quick reply needs a title (at most 20 characters) and a payload"
    return None
