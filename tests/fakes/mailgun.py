"""Mailgun's messages API on loopback (``POST /v3/{domain}/messages``,
documentation.mailgun.com, "Sending messages"), checking what it receives as Mailgun does:

- HTTP basic authentication ``api:{API key}`` (401 ``Forbidden`` otherwise);
- a url-encoded or ``multipart/form-data`` body; files only as multipart parts ("You
  must use multipart/form-data encoding when sending attachments"), each ``attachment``
  part a file with a file name;
- ``from`` and ``to`` required, and one of ``text``, ``html``, ``template`` (400 with
  Mailgun's ``{"message": "'from' parameter is missing"}``, "Need at least one of
  'text', 'html' or 'template' parameters specified");
- at most 25 MB in all ("Mailgun supports maximum messages size of 25MB").
Answers 200 ``{"id": "<Message-Id>", "message": "Queued. Thank you."}``: the id is the
``h:Message-Id`` given, else a new one.

``GET /files/{name}`` serves the files of ``hosted``: where a test's attachments live.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field

from aiohttp import web

MESSAGE_MAX_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class Upload:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class SentMail:
    domain: str
    content_type: str
    fields: dict[str, list[str]]
    files: list[Upload]


@dataclass
class FakeMailgun:
    api_key: str
    sent: list[SentMail] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    hosted: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Files served at ``/files/{name}``: media type and bytes."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MESSAGE_MAX_BYTES + 1024 * 1024)
        app.router.add_post("/v3/{domain}/messages", self.messages)
        app.router.add_get("/files/{name}", self.file)
        return app

    def _refuse(self, status: int, message: str) -> web.Response:
        self.refused.append((status, message))
        return web.json_response({"message": message}, status=status)

    async def messages(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            self.refused.append((401, "Forbidden"))
            return web.Response(status=401, text="Forbidden")
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return self._refuse(400, "expected a form")
        if (request.content_length or 0) > MESSAGE_MAX_BYTES:
            return self._refuse(413, "message size exceeds 25MB")
        fields: dict[str, list[str]] = {}
        files: list[Upload] = []
        for name, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                files.append(Upload(name, value.filename, value.content_type, value.file.read()))
            else:
                fields.setdefault(name, []).append(str(value))
        for required in ("from", "to"):
            if not fields.get(required, [""])[0]:
                return self._refuse(400, f"'{required}' parameter is missing")
        if not any(fields.get(body, [""])[0] for body in ("text", "html", "template")):
            return self._refuse(
                400, "Need at least one of 'text', 'html' or 'template' parameters specified"
            )
        if "attachment" in fields:
            return self._refuse(400, "'attachment' parameter is not a file")
        message_id = fields.get("h:Message-Id", [f"<{next(self._ids)}.fake@mailgun.test>"])[0]
        self.sent.append(
            SentMail(request.match_info["domain"], request.content_type, fields, files)
        )
        return web.json_response({"id": message_id, "message": "Queued. Thank you."})

    async def file(self, request: web.Request) -> web.Response:
        found = self.hosted.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        content_type, data = found
        return web.Response(body=data, content_type=content_type)
