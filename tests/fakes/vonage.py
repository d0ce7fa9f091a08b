"""Vonage's Messages API on loopback, checking what it receives as Vonage documents it
(developer.vonage.com/en/api/messages#SendMessage, /en/messages/technical-details#authentication).

``POST /v1/messages``:
- ``Authorization: Bearer <JWT>`` that verifies (RS256, PyJWT as the independent verifier)
  with the application's public key, names the ``application_id``, carries ``iat``, ``jti``
  (each used once) and ``exp`` no more than a day after ``iat``, and has not expired;
  otherwise 401, as Vonage answers an unauthenticated request;
- ``Content-Type: application/json`` and a JSON object (else 415 / 400);
- ``channel``, ``message_type``, ``to``, ``from`` as the channel takes them (phone numbers
  7 to 15 digits without ``+``; Messenger ids of at most 50 characters), the object the
  ``message_type`` names, ``client_ref`` of at most 100 characters: the body must validate
  against the ``vonage_messages`` SDK's own model of that message and hold no key the model
  does not know (422 ``Invalid params``, Vonage's error shape, otherwise). WhatsApp
  ``custom`` messages must name a WhatsApp ``type``.

Answers ``202 {"message_uuid": <uuid>}``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgspec
import pydantic
from aiohttp import web
from vonage_messages import models  # type: ignore[import-untyped]  # no types shipped

#: (channel, message_type) → the SDK's model of that message.
MODELS: dict[tuple[str, str], type[pydantic.BaseModel]] = {
    ("sms", "text"): models.Sms,
    ("mms", "text"): models.MmsText,
    ("mms", "image"): models.MmsImage,
    ("mms", "audio"): models.MmsAudio,
    ("mms", "video"): models.MmsVideo,
    ("mms", "vcard"): models.MmsVcard,
    ("mms", "file"): models.MmsFile,
    ("mms", "content"): models.MmsContent,
    ("whatsapp", "text"): models.WhatsappText,
    ("whatsapp", "image"): models.WhatsappImage,
    ("whatsapp", "audio"): models.WhatsappAudio,
    ("whatsapp", "video"): models.WhatsappVideo,
    ("whatsapp", "file"): models.WhatsappFile,
    ("whatsapp", "template"): models.WhatsappTemplate,
    ("whatsapp", "sticker"): models.WhatsappSticker,
    ("whatsapp", "custom"): models.WhatsappCustom,
    ("messenger", "text"): models.MessengerText,
    ("messenger", "image"): models.MessengerImage,
    ("messenger", "audio"): models.MessengerAudio,
    ("messenger", "video"): models.MessengerVideo,
    ("messenger", "file"): models.MessengerFile,
    ("viber_service", "text"): models.ViberText,
    ("viber_service", "image"): models.ViberImage,
    ("viber_service", "video"): models.ViberVideo,
    ("viber_service", "file"): models.ViberFile,
}
WHATSAPP_CUSTOM_TYPES = frozenset(
    {"interactive", "location", "contacts", "template", "reaction", "sticker"}
)


@dataclass(frozen=True)
class SentMessage:
    claims: dict[str, Any]
    body: dict[str, Any]
    message_uuid: str


@dataclass
class FakeVonage:
    """Vonage's side of one application: its id and public key (PEM)."""

    application_id: str
    public_key_pem: str
    used_jti: set[str] = field(default_factory=set)
    sent: list[SentMessage] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.send)
        return app

    def _refuse(self, status: int, title: str, detail: str) -> web.Response:
        self.refused.append((status, detail))
        body = {
            "type": f"https://developer.vonage.com/api-errors#{status}",
            "title": title,
            "detail": detail,
            "instance": str(uuid.uuid4()),
        }
        return web.json_response(body, status=status)

    def _claims(self, authorization: str) -> dict[str, Any] | str:
        """The token's claims, or why it is refused."""
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            return "no Bearer token"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.public_key_pem,
                algorithms=["RS256"],
                options={"require": ["iat", "jti", "exp", "application_id"]},
            )
        except jwt.PyJWTError as exc:
            return f"token: {type(exc).__name__}"
        if claims["application_id"] != self.application_id:
            return "token of another application"
        if not claims["iat"] <= time.time() + 60 or claims["exp"] - claims["iat"] > 86_400:
            return "token lifetime"
        if claims["jti"] in self.used_jti:
            return "jti already used"
        return claims

    async def send(self, request: web.Request) -> web.Response:
        claims = self._claims(request.headers.get("Authorization", ""))
        if isinstance(claims, str):
            return self._refuse(401, "Unauthorized", claims)
        if request.content_type != "application/json":
            return self._refuse(415, "Unsupported Media Type", "expected application/json")
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return self._refuse(400, "Bad Request", "malformed JSON")
        if not isinstance(body, dict):
            return self._refuse(400, "Bad Request", "expected a JSON object")
        problem = self.problem(body)
        if problem:
            return self._refuse(422, "Invalid params", problem)
        self.used_jti.add(claims["jti"])
        message_uuid = str(uuid.uuid4())
        self.sent.append(SentMessage(claims=claims, body=body, message_uuid=message_uuid))
        return web.json_response({"message_uuid": message_uuid}, status=202)

    def problem(self, body: dict[str, Any]) -> str | None:
        """Why the body is not a message Vonage takes, or None."""
        model = MODELS.get((body.get("channel", ""), body.get("message_type", "")))
        if model is None:
            return f"no {body.get('message_type')!r} message on {body.get('channel')!r}"
        fields = {"from" if name == "from_" else name for name in model.model_fields}
        fields |= {"channel", "message_type"}
        unknown = set(body) - fields
        if unknown:
            return f"unknown keys {sorted(unknown)}"
        data = {("from_" if key == "from" else key): value for key, value in body.items()}
        data.pop("channel")
        data.pop("message_type")
        try:
            model.model_validate(data)
        except pydantic.ValidationError as exc:
            return f"invalid: {exc.errors()[0]['loc']}"
        custom = body.get("custom")
        if body["message_type"] == "custom" and (
            not isinstance(custom, dict) or custom.get("type") not in WHATSAPP_CUSTOM_TYPES
        ):
            return "custom without a WhatsApp type"
        return None
