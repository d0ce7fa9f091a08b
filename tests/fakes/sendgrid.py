"""SendGrid's Mail Send API on loopback (``POST /v3/mail/send``,
twilio.com/docs/sendgrid/api-reference/mail-send), checking what it receives as SendGrid
does:

- ``Authorization: Bearer {API key}`` (401 with SendGrid's "The provided authorization
  grant is invalid, expired, or revoked" otherwise);
- a JSON body (``Content-Type: application/json``) of less than 30 MB ("The total size of
  your email, including attachments, must be less than 30MB", 413 otherwise);
- ``personalizations``: 1 to 1000, each with ``to`` (at least one ``{email}``); ``from``
  with an ``email``; a ``subject`` at message level or in every personalization, of at
  least one character; ``content``: at least one ``{type, value}`` (each at least one
  character), ``text/plain`` first when present; ``headers``: strings, none of the
  reserved ones (``x-sg-id``, ``x-sg-eid``, ``received``, ``dkim-signature``,
  ``Content-Type``, ``Content-Transfer-Encoding``, ``To``, ``From``, ``Subject``,
  ``Reply-To``, ``CC``, ``BCC``); ``custom_args``: strings, less than 10,000 bytes
  together; ``attachments``: each with base64 ``content`` and a ``filename``, its
  ``disposition`` ``attachment`` or ``inline``.
Errors are 400 with SendGrid's ``{"errors": [{"message", "field", "help"}]}``. An accepted
mail is answered 202 with no body and its id in ``X-Message-Id``.

``GET /files/{name}`` serves the files of ``hosted``: where a test's attachments live.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

REQUEST_MAX_BYTES = 30_000_000
CUSTOM_ARGS_MAX_BYTES = 10_000
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)


class Invalid(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class SentMail:
    message_id: str
    json: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeSendGrid:
    api_key: str
    sent: list[SentMail] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    hosted: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Files served at ``/files/{name}``: media type and bytes."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=REQUEST_MAX_BYTES + 1024 * 1024)
        app.router.add_post("/v3/mail/send", self.mail_send)
        app.router.add_get("/files/{name}", self.file)
        return app

    def _refuse(self, status: int, message: str, field: str | None = None) -> web.Response:
        self.refused.append((status, message))
        return web.json_response(
            {"errors": [{"message": message, "field": field, "help": None}]}, status=status
        )

    async def mail_send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._refuse(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        if request.content_type != "application/json":
            return self._refuse(400, "Content-Type should be application/json.")
        raw = await request.read()
        if len(raw) >= REQUEST_MAX_BYTES:
            return self._refuse(413, "The size of your email must be less than 30MB.")
        try:
            body = msgspec.json.decode(raw)
            _check(body)
        except msgspec.DecodeError:
            return self._refuse(400, "Bad Request", None)
        except Invalid as invalid:
            return self._refuse(400, invalid.message, invalid.field)
        message_id = f"FakeSendGrid{next(self._ids):010d}Aa"
        self.sent.append(SentMail(message_id, body, dict(request.headers)))
        return web.Response(status=202, headers={"X-Message-Id": message_id})

    async def file(self, request: web.Request) -> web.Response:
        found = self.hosted.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        content_type, data = found
        return web.Response(body=data, content_type=content_type)


def _string(value: Any, field: str, *, required: bool = True) -> None:
    if not isinstance(value, str) or (required and not value):
        raise Invalid(f"The {field} must be a string at least one character in length.", field)


def _email_object(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise Invalid("The email object must be an object.", field)
    _string(value.get("email"), f"{field}.email")


def _check(body: Any) -> None:
    """Raise ``Invalid`` as Mail Send's validation would."""
    if not isinstance(body, dict):
        raise Invalid("The request body must be a JSON object.")
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
        raise Invalid(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
    for n, one in enumerate(personalizations):
        if not isinstance(one, dict) or not isinstance(one.get("to"), list) or not one["to"]:
            raise Invalid(
                "The to array is required for all personalization objects, and must have at"
                " least one email object with a valid email address.",
                f"personalizations.{n}.to",
            )
        for m, to in enumerate(one["to"]):
            _email_object(to, f"personalizations.{n}.to.{m}")
    _email_object(body.get("from"), "from")
    if "subject" in body:
        _string(body["subject"], "subject")
    elif not all("subject" in one for one in personalizations):
        raise Invalid(
            "The subject is required. You can get around this requirement if you use a"
            " template with a subject defined or if every personalization has a subject"
            " defined.",
            "subject",
        )
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise Invalid("Unless a valid template_id is provided, the content parameter is required.")
    for n, item in enumerate(content):
        if not isinstance(item, dict):
            raise Invalid("Each content object must be an object.", f"content.{n}")
        _string(item.get("type"), f"content.{n}.type")
        _string(item.get("value"), f"content.{n}.value")
    types = [item["type"] for item in content]
    if "text/plain" in types and types[0] != "text/plain":
        raise Invalid("If present, text/plain content must be first.", "content")
    headers = body.get("headers", {})
    if not isinstance(headers, dict):
        raise Invalid("The headers parameter must be an object.", "headers")
    for name, value in headers.items():
        _string(value, f"headers.{name}", required=False)
        if name.lower() in RESERVED_HEADERS:
            raise Invalid(f"The {name} header is reserved.", f"headers.{name}")
    custom_args = body.get("custom_args", {})
    if not isinstance(custom_args, dict) or not all(
        isinstance(v, str) for v in custom_args.values()
    ):
        raise Invalid("The custom_args values must be strings.", "custom_args")
    if len(msgspec.json.encode(custom_args)) >= CUSTOM_ARGS_MAX_BYTES:
        raise Invalid("The custom_args may not exceed 10,000 bytes.", "custom_args")
    for n, attachment in enumerate(body.get("attachments", [])):
        if not isinstance(attachment, dict):
            raise Invalid("Each attachment must be an object.", f"attachments.{n}")
        _string(attachment.get("filename"), f"attachments.{n}.filename")
        _string(attachment.get("content"), f"attachments.{n}.content")
        try:
            base64.b64decode(attachment["content"], validate=True)
        except binascii.Error:
            raise Invalid(
                "The attachment content must be base64 encoded.", f"attachments.{n}.content"
            ) from None
        if attachment.get("disposition", "attachment") not in ("attachment", "inline"):
            raise Invalid(
                "The disposition must be attachment or inline.", f"attachments.{n}.disposition"
            )
