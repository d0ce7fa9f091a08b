"""Telegram's Bot API on loopback, checking what it receives as the Bot API does
(https://core.telegram.org/bots/api#making-requests, #sending-files, and each method):

- ``POST /bot{token}/{method}`` with a JSON body: an unknown token is 401
  ``Unauthorized``, an unknown method 404 ``Not Found``, a body that is not a JSON object
  400;
- ``chat_id`` is required (400 ``Bad Request: chat_id is empty``);
- ``sendMessage``: ``text`` of 1 to 4,096 characters (``message text is empty``,
  ``message is too long``);
- ``sendPhoto``, ``sendAnimation``, ``sendVideo``, ``sendVoice``, ``sendAudio``,
  ``sendDocument``: the file parameter named after the kind, an http(s) URL or a
  ``file_id`` (``there is no photo in the request``, ``wrong remote file identifier
  specified``); ``caption`` at most 1,024 characters (UTF-16 code units: ``message
  caption is too long``);
- ``sendLocation``: ``latitude`` in -90..90 and ``longitude`` in -180..180, numbers;
  ``sendVenue`` also ``title`` and ``address``;
- ``reply_markup``, when given, a ``ReplyKeyboardMarkup``: ``keyboard``, an array of
  arrays of buttons, each with ``text``;
- ``business_connection_id``, when given, a connection of the bot's (Bot API 7.2: the
  message goes out on behalf of the connected business account): an unknown one is 400
  ``business connection not found``.
Answers ``{"ok": true, "result": Message}`` with a new ``message_id``; errors as
``{"ok": false, "error_code": …, "description": …}``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

FILE_METHODS = {
    "sendPhoto": "photo",
    "sendAnimation": "animation",
    "sendVideo": "video",
    "sendVoice": "voice",
    "sendAudio": "audio",
    "sendDocument": "document",
}
PLACE_METHODS = ("sendLocation", "sendVenue")
TEXT_MAX = 4096
CAPTION_MAX = 1024


@dataclass(frozen=True)
class Call:
    """A call the API accepted."""

    token: str
    method: str
    params: dict[str, Any]
    message_id: int


@dataclass
class FakeBotApi:
    tokens: frozenset[str]
    """Bot tokens this API knows."""
    business_connections: frozenset[str] = frozenset()
    """Business connections of the bots (any of them, for this stand-in)."""
    calls: list[Call] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(500))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        return app

    def _error(self, status: int, description: str) -> web.Response:
        self.refused.append((status, description))
        body = {"ok": False, "error_code": status, "description": description}
        return web.json_response(body, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        if token not in self.tokens:
            return self._error(401, "Unauthorized")
        if method not in ("sendMessage", *FILE_METHODS, *PLACE_METHODS):
            return self._error(404, "Not Found")
        try:
            params = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return self._error(400, "Bad Request: can't parse JSON")
        if not isinstance(params, dict):
            return self._error(400, "Bad Request: parameters must be an object")
        problem = _problem(method, params)
        connection = params.get("business_connection_id")
        if (
            problem is None
            and connection is not None
            and connection not in self.business_connections
        ):
            problem = "business connection not found"
        if problem is not None:
            return self._error(400, f"Bad Request: {problem}")
        message_id = next(self._ids)
        self.calls.append(Call(token, method, params, message_id))
        result = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": int(params["chat_id"]), "type": "private"},
        }
        return web.json_response({"ok": True, "result": result})


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _problem(method: str, params: dict[str, Any]) -> str | None:
    chat = params.get("chat_id")
    if not isinstance(chat, int | str) or not str(chat).lstrip("-").isdigit():
        return "chat_id is empty"
    markup = params.get("reply_markup")
    if markup is not None and not _keyboard(markup):
        return "can't parse reply keyboard markup JSON object"
    if method == "sendMessage":
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return "message text is empty"
        return "message is too long" if _utf16_length(text) > TEXT_MAX else None
    if method in FILE_METHODS:
        file = params.get(FILE_METHODS[method])
        if not isinstance(file, str) or not file:
            return f"there is no {FILE_METHODS[method]} in the request"
        if "://" in file and not file.startswith(("http://", "https://")):
            return "wrong remote file identifier specified"
        caption = params.get("caption", "")
        if not isinstance(caption, str) or _utf16_length(caption) > CAPTION_MAX:
            return "message caption is too long"
        return None
    latitude, longitude = params.get("latitude"), params.get("longitude")
    if not (isinstance(latitude, int | float) and -90 <= latitude <= 90):
        return "wrong latitude"
    if not (isinstance(longitude, int | float) and -180 <= longitude <= 180):
        return "wrong longitude"
    if method == "sendVenue" and not (params.get("title") and params.get("address")):
        return "venue title and address are required"
    return None


def _keyboard(markup: Any) -> bool:
    rows = markup.get("keyboard") if isinstance(markup, dict) else None
    return isinstance(rows, list) and all(
        isinstance(row, list)
        and all(isinstance(b, dict) and isinstance(b.get("text"), str) for b in row)
        for row in rows
    )
