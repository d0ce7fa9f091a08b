"""A stand-in for Twilio's Messages API on loopback that checks requests the way Twilio
does, then answers like ``tools.bench.providers.FakeProviders`` (which it wraps); and that
calls a message's ``StatusCallback`` back as Twilio would, signed.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded: HTTP basic auth
with the path's Account SID and the Auth Token (401, code 20003, otherwise); ``To``
required (21604); ``From`` or ``MessagingServiceSid`` (21603); ``Body``, ``MediaUrl`` or
``ContentSid`` (21602), a ``Body`` of at most 1,600 characters (21617); each
``MediaUrl`` an absolute http(s) URL, at most 10, and 1 on WhatsApp (21620, 21623);
``StatusCallback`` an absolute http(s) URL (21609); ``PersistentAction`` only ``geo:…``
on WhatsApp. Twilio's error body: ``{"code", "message", "more_info", "status"}``.

Sources: twilio.com/docs/messaging/api/message-resource (create parameters),
twilio.com/docs/api/errors (the codes), twilio.com/docs/usage/webhooks/webhooks-security
(the callback's signature), twilio.com/docs/messaging/guides/track-outbound-message-status
(the callback's parameters).
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from dataclasses import dataclass

from aiohttp import web
from twilio.request_validator import (  # type: ignore[import-untyped]  # twilio ships no types
    RequestValidator,
)

from tools.bench.providers import FakeProviders

MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"
WHATSAPP = "whatsapp:"


@dataclass(frozen=True)
class Callback:
    """A status callback as Twilio would make it: where, what, and its signature."""

    url: str
    params: dict[str, str]
    signature: str

    @property
    def path_qs(self) -> str:
        """Path and query: what a proxy in front of Switchboard passes on."""
        parts = urllib.parse.urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


def _absolute(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str, providers: FakeProviders) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.providers = providers
        self.refused: list[tuple[int, str]] = []
        """(Twilio error code, message) of every request refused."""
        self.sent: dict[str, dict[str, str]] = {}
        """The form of every message accepted, by the SID given to it."""
        self.app = web.Application()
        self.app.router.add_post(MESSAGES_PATH, self.messages)

    def _error(self, status: int, code: int, message: str) -> web.Response:
        self.refused.append((code, message))
        body = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return web.json_response(body, status=status)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (user, password) == (request.match_info["sid"], self.auth_token) and (
            user == self.account_sid
        )

    async def messages(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        if request.content_type != "application/x-www-form-urlencoded":
            return self._error(400, 20001, "expected a form")
        form = await request.post()
        to, sender = form.get("To"), form.get("From")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not sender and not form.get("MessagingServiceSid"):
            return self._error(400, 21603, "A 'From' phone number is required.")
        media = [str(m) for m in form.getall("MediaUrl", [])]
        if not form.get("Body") and not media and not form.get("ContentSid"):
            return self._error(400, 21602, "Message body is required.")
        if len(str(form.get("Body", ""))) > 1600:
            return self._error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if any(not _absolute(url) for url in media) or len(media) > 10:
            return self._error(400, 21620, "Invalid media URL(s)")
        whatsapp = str(to).startswith(WHATSAPP)
        if whatsapp and len(media) > 1:
            return self._error(400, 21623, "WhatsApp sends one media per message")
        actions = [str(a) for a in form.getall("PersistentAction", [])]
        if actions and (not whatsapp or not all(a.startswith("geo:") for a in actions)):
            return self._error(400, 21626, "Invalid PersistentAction")
        callback = form.get("StatusCallback")
        if callback is not None and not _absolute(str(callback)):
            return self._error(400, 21609, "Invalid StatusCallback")
        response = await self.providers.twilio(request)  # reads the same, cached, form
        if response.status == 201 and isinstance(response.body, bytes):
            sid = str(json.loads(response.body)["sid"])
            self.sent[sid] = {key: str(value) for key, value in form.items()}
        return response

    def status_callback(self, sid: str, status: str, **extra: str) -> Callback:
        """Twilio's status callback of the message ``sid`` to the ``StatusCallback`` it
        was sent with, signed with the Auth Token (``KeyError``: sent without one)."""
        sent = self.sent[sid]
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": sent["From"],
            "To": sent["To"],
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            **extra,
        }
        url = sent["StatusCallback"]
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        return Callback(url, params, signature)
