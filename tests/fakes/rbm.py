"""Google's side of RCS Business Messaging on loopback: the OAuth 2.0 token endpoint and
``phones.agentMessages.create``, checking what they receive as Google documents it.

- ``POST /token`` (the service account key's ``token_uri``): a form with ``grant_type``
  ``urn:ietf:params:oauth:grant-type:jwt-bearer`` and ``assertion``, a JWT that must verify
  (RS256, PyJWT as the independent verifier) with the service account's public key, name
  the account as ``iss``, this endpoint as ``aud``, the ``rcsbusinessmessaging`` scope,
  and live at most an hour. Answers ``{"access_token", "expires_in", "token_type"}``;
  anything else is 400 ``invalid_grant`` / ``unsupported_grant_type``, as Google answers.
- ``POST /v1/phones/{E.164}/agentMessages?messageId=…&agentId=…``: needs ``Authorization:
  Bearer`` with a token this endpoint issued (401 otherwise), a UUID ``messageId`` and the
  ``agentId`` (400), and a JSON ``AgentMessage`` whose ``contentMessage`` holds exactly one
  of ``text`` (≤ 3,072 characters), ``fileName``, ``richCard``, ``contentInfo`` (with a
  ``fileUrl``) and at most 11 suggestions, each a ``reply`` or an ``action`` with text of
  at most 25 characters and ``postbackData``. Answers 200 with the ``AgentMessage``
  (``name`` ``phones/{E.164}/agentMessages/{messageId}``, ``sendTime``, the content). A
  ``messageId`` already used is ignored, as RBM documents: 200, nothing delivered again.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgspec
from aiohttp import web

SCOPE = "https://www.googleapis.com/auth/rcsbusinessmessaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
CONTENT_KINDS = ("text", "fileName", "richCard", "contentInfo")


@dataclass(frozen=True)
class SentMessage:
    phone: str
    message_id: str
    agent_id: str
    authorization: str
    content: dict[str, Any]


@dataclass
class FakeRbm:
    """Set ``public_key_pem`` and ``client_email`` (the service account) before use;
    ``token_url`` is this server's token endpoint, known once it listens."""

    public_key_pem: str
    client_email: str
    token_url: str = ""
    leeway: float = 0.0
    """Seconds of clock difference tolerated in the assertion's ``iat`` and ``exp``."""
    issued: set[str] = field(default_factory=set)
    grants: list[dict[str, Any]] = field(default_factory=list)
    """Claims of every accepted assertion."""
    sent: list[SentMessage] = field(default_factory=list)
    """Every message accepted and delivered (a repeated ``messageId`` is not)."""
    refused: list[tuple[int, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/phones/{phone}/agentMessages", self.agent_message)
        return app

    def _refuse(self, status: int, error: str, description: str) -> web.Response:
        self.refused.append((status, description))
        body = {"error": {"code": status, "message": description, "status": error}}
        return web.json_response(body, status=status)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            self.refused.append((400, "grant_type"))
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            claims = jwt.decode(
                str(form.get("assertion", "")),
                self.public_key_pem,
                algorithms=["RS256"],
                audience=self.token_url,
                issuer=self.client_email,
                leeway=self.leeway,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            self.refused.append((400, f"assertion: {exc}"))
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                status=400,
            )
        if claims.get("scope") != SCOPE or not 0 < claims["exp"] - claims["iat"] <= 3600:
            self.refused.append((400, "scope or lifetime"))
            return web.json_response({"error": "invalid_scope"}, status=400)
        self.grants.append(claims)
        token = f"ya29.fake-{uuid.uuid4().hex}"
        self.issued.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    async def agent_message(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.issued:
            return self._refuse(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        phone = request.match_info["phone"]
        message_id = request.query.get("messageId", "")
        agent_id = request.query.get("agentId", "")
        if not E164.match(phone):
            return self._refuse(400, "INVALID_ARGUMENT", "phone is not E.164")
        try:
            uuid.UUID(message_id)
        except ValueError:
            return self._refuse(400, "INVALID_ARGUMENT", "messageId must be a UUID")
        if not agent_id:
            return self._refuse(400, "INVALID_ARGUMENT", "agentId is required")
        if request.content_type != "application/json":
            return self._refuse(400, "INVALID_ARGUMENT", "expected application/json")
        try:
            body = msgspec.json.decode(await request.read())
        except msgspec.DecodeError:
            return self._refuse(400, "INVALID_ARGUMENT", "body is not JSON")
        problem = content_problem(body)
        if problem:
            return self._refuse(400, "INVALID_ARGUMENT", problem)
        content = body["contentMessage"]
        if all(m.message_id != message_id for m in self.sent):
            self.sent.append(SentMessage(phone, message_id, agent_id, auth, content))
        return web.json_response(
            {
                "name": f"phones/{phone}/agentMessages/{message_id}",
                "sendTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "contentMessage": content,
            }
        )


def content_problem(body: Any) -> str | None:
    """Why an ``AgentMessage`` body is not one RBM takes (None: it is)."""
    if not isinstance(body, dict) or set(body) - {"contentMessage", "expireTime", "ttl"}:
        return "body must be an AgentMessage"
    content = body.get("contentMessage")
    if not isinstance(content, dict):
        return "contentMessage is required"
    kinds = [k for k in CONTENT_KINDS if k in content]
    if len(kinds) != 1 or set(content) - {*CONTENT_KINDS, "suggestions"}:
        return "contentMessage needs exactly one of text, fileName, richCard, contentInfo"
    if "text" in content and not (
        isinstance(content["text"], str) and 0 < len(content["text"]) <= 3072
    ):
        return "text must be 1 to 3072 characters"
    if "contentInfo" in content and not isinstance(content["contentInfo"].get("fileUrl"), str):
        return "contentInfo.fileUrl is required"
    if "richCard" in content:
        card = content["richCard"].get("standaloneCard", {})
        if card.get("cardOrientation") not in ("VERTICAL", "HORIZONTAL"):
            return "standaloneCard.cardOrientation is required"
        if len(card.get("cardContent", {}).get("description", "")) > 2000:
            return "card description over 2000 characters"
    suggestions = content.get("suggestions", [])
    if not isinstance(suggestions, list) or len(suggestions) > 11:
        return "at most 11 suggestions"
    for suggestion in suggestions:
        [(kind, item)] = suggestion.items() if len(suggestion) == 1 else [("", None)]
        if kind not in ("reply", "action") or not isinstance(item, dict):
            return "a suggestion is a reply or an action"
        if not 0 < len(item.get("text", "")) <= 25 or not item.get("postbackData"):
            return "a suggestion needs text of 1 to 25 characters and postbackData"
    return None
