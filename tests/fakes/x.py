"""A stand-in for the X API on loopback: DMs and the chunked media upload, checked the way X
checks them.

Every call must carry an OAuth 1.0a ``Authorization`` header whose HMAC-SHA1 signature is
recomputed here with oauthlib's server-side functions (not Switchboard's signer) from the
request as received: method, URL (query included) and ``oauth_*`` values, keyed by the
app's consumer secret and the access token's secret (401 otherwise, in X API v2's problem
shape). Bodies are checked against X's OpenAPI schemas: ``POST /2/dm_conversations/with/
{participant_id}/messages`` takes JSON ``text`` (at least one character) and/or
``attachments`` (one ``{"media_id": digits}`` uploaded and finalized by the same account),
nothing else; the media upload takes ``initialize`` (``media_type``, ``total_bytes``,
``media_category``), ``append`` (multipart ``segment_index`` + ``media``), ``finalize``,
and ``GET /2/media/upload?command=STATUS``. ``GET /files/{name}`` serves the files a test
puts in ``files`` (the attachments' URLs, unauthenticated like any public file host).

Sources: docs.x.com/fundamentals/authentication/oauth-1-0a/authorizing-a-request,
docs.x.com/x-api/direct-messages/manage/integrate, and X's OpenAPI document
(api.x.com/2/openapi.json): CreateDirectMessagesByParticipantIdRequest,
InitializeMediaUploadRequest, AppendMediaUploadRequest.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from oauthlib.oauth1.rfc5849 import (  # type: ignore[import-untyped]  # oauthlib ships no types
    signature,
    utils,
)

USER_ID = re.compile(r"^[0-9]{1,19}$")
MEDIA_TYPES = frozenset(
    {"video/mp4", "video/webm", "video/mp2t", "video/quicktime", "image/jpeg", "image/gif"}
    | {"image/bmp", "image/png", "image/webp", "image/pjpeg", "image/tiff"}
)
MEDIA_CATEGORIES = frozenset({"dm_image", "dm_gif", "dm_video", "tweet_image", "tweet_gif"})
TIMESTAMP_SKEW_SECONDS = 300
SEGMENT_MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class _Secrets:
    """What oauthlib's signing functions read of a client."""

    client_secret: str
    resource_owner_secret: str


@dataclass
class Upload:
    media_id: str
    owner: str
    """The access token that uploaded it (X: only that account may attach it)."""
    media_type: str
    media_category: str
    total_bytes: int
    segments: dict[int, bytes] = field(default_factory=dict)
    finalized: bool = False
    status_checks: int = 0

    @property
    def content(self) -> bytes:
        return b"".join(self.segments[i] for i in sorted(self.segments))


@dataclass
class SentDm:
    participant_id: str
    body: dict[str, Any]
    token: str
    """The access token it was sent with."""
    dm_event_id: str


@dataclass
class FakeX:
    """The fake's state: the app's credentials, the accounts' tokens, what it received."""

    consumer_key: str
    consumer_secret: str
    tokens: dict[str, str]
    """Access token → its secret."""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """Files served at ``/files/{name}``: content and media type."""
    processing_checks: int = 0
    """STATUS checks a video or GIF stays ``in_progress`` before its outcome."""
    processing_outcome: str = "succeeded"
    """What processing ends with: ``succeeded`` or ``failed``."""
    check_after_secs: int = 0
    """The ``check_after_secs`` of an upload still processing."""
    uploads: dict[str, Upload] = field(default_factory=dict)
    sent: list[SentDm] = field(default_factory=list)
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    """(path, status, reason) of every refused call."""
    calls: list[str] = field(default_factory=list)
    """``METHOD path`` of every call, in order."""
    nonces: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(
        default_factory=lambda: itertools.count(1_800_000_000_000_000_001)
    )

    @property
    def app(self) -> web.Application:
        # An APPEND segment is at most 5 MB (X's chunked upload), plus the multipart framing.
        app = web.Application(client_max_size=SEGMENT_MAX_BYTES + 64 * 1024)
        app.add_routes(
            [
                web.post("/2/dm_conversations/with/{participant_id}/messages", self._send_dm),
                web.post("/2/media/upload/initialize", self._initialize),
                web.post("/2/media/upload/{media_id}/append", self._append),
                web.post("/2/media/upload/{media_id}/finalize", self._finalize),
                web.get("/2/media/upload", self._status),
                web.get("/files/{name}", self._file),
            ]
        )
        return app

    # --- checks ---------------------------------------------------------------------------

    def _refuse(self, request: web.Request, status: int, detail: str) -> web.Response:
        self.refused.append((request.path, status, detail))
        title = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Invalid Request")
        return web.json_response(
            {"title": title, "detail": detail, "type": "about:blank", "status": status},
            status=status,
        )

    def _authorized(self, request: web.Request) -> str | web.Response:
        """The access token of a correctly signed request, or the 401 answer."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("OAuth "):
            return self._refuse(request, 401, "no OAuth Authorization header")
        params = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(header)}
        required = {
            "oauth_consumer_key",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
            "oauth_timestamp",
            "oauth_token",
            "oauth_version",
        }
        if set(params) != required:
            return self._refuse(request, 401, f"OAuth parameters {sorted(params)}")
        if params["oauth_signature_method"] != "HMAC-SHA1" or params["oauth_version"] != "1.0":
            return self._refuse(request, 401, "HMAC-SHA1 and version 1.0 expected")
        if params["oauth_consumer_key"] != self.consumer_key:
            return self._refuse(request, 401, "unknown consumer key")
        token = params["oauth_token"]
        if token not in self.tokens:
            return self._refuse(request, 401, "unknown access token")
        if abs(time.time() - int(params["oauth_timestamp"])) > TIMESTAMP_SKEW_SECONDS:
            return self._refuse(request, 401, "timestamp out of bounds")
        # X's check, with oauthlib's functions: the request as it arrived.
        uri = str(request.url)
        collected = signature.collect_parameters(
            uri_query=request.url.raw_query_string,
            headers={"Authorization": header},
            exclude_oauth_signature=True,
        )
        base = signature.signature_base_string(
            request.method,
            signature.base_string_uri(uri),
            signature.normalize_parameters(collected),
        )
        expected = signature.sign_hmac_sha1_with_client(
            base, _Secrets(self.consumer_secret, self.tokens[token])
        )
        if not bool(signature.safe_string_equals(expected, params["oauth_signature"])):
            return self._refuse(request, 401, "signature does not match")
        self.nonces.append(params["oauth_nonce"])
        return str(token)

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        if request.content_type != "application/json":
            return None
        body = await request.json()
        return body if isinstance(body, dict) else None

    def _new_id(self) -> str:
        return str(next(self._ids))

    # --- endpoints ------------------------------------------------------------------------

    async def _send_dm(self, request: web.Request) -> web.Response:
        self.calls.append(f"POST {request.path}")
        token = self._authorized(request)
        if isinstance(token, web.Response):
            return token
        participant = request.match_info["participant_id"]
        if not USER_ID.match(participant):
            return self._refuse(request, 400, "participant_id is not a user id")
        body = await self._json(request)
        if body is None:
            return self._refuse(request, 400, "a JSON object body is required")
        if set(body) - {"text", "attachments"} or not set(body) & {"text", "attachments"}:
            return self._refuse(request, 400, "text and/or attachments, nothing else")
        if "text" in body and (not isinstance(body["text"], str) or not body["text"]):
            return self._refuse(request, 400, "text must be a non-empty string")
        if "attachments" in body:
            attachments = body["attachments"]
            if not isinstance(attachments, list) or len(attachments) != 1:
                return self._refuse(request, 400, "one attachment per message")
            [attachment] = attachments
            if not isinstance(attachment, dict) or set(attachment) != {"media_id"}:
                return self._refuse(request, 400, "an attachment is {media_id}")
            upload = self.uploads.get(str(attachment["media_id"]))
            if upload is None or not upload.finalized or upload.owner != token:
                return self._refuse(request, 400, "media_id not uploaded by this user")
            if not upload.media_category.startswith("dm_"):
                return self._refuse(request, 400, "media was not uploaded for DMs")
        dm_event_id = self._new_id()
        self.sent.append(SentDm(participant, body, token, dm_event_id))
        low, high = sorted((participant, "self"))
        return web.json_response(
            {"data": {"dm_conversation_id": f"{low}-{high}", "dm_event_id": dm_event_id}},
            status=201,
        )

    async def _initialize(self, request: web.Request) -> web.Response:
        self.calls.append(f"POST {request.path}")
        token = self._authorized(request)
        if isinstance(token, web.Response):
            return token
        body = await self._json(request)
        if body is None or set(body) - {"media_type", "total_bytes", "media_category", "shared"}:
            return self._refuse(request, 400, "InitializeMediaUploadRequest expected")
        if body.get("media_type") not in MEDIA_TYPES:
            return self._refuse(request, 400, "media_type not accepted")
        if body.get("media_category") not in MEDIA_CATEGORIES:
            return self._refuse(request, 400, "media_category not accepted")
        total = body.get("total_bytes")
        if not isinstance(total, int) or total <= 0:
            return self._refuse(request, 400, "total_bytes must be a positive integer")
        media_id = self._new_id()
        self.uploads[media_id] = Upload(
            media_id, token, body["media_type"], body["media_category"], total
        )
        return web.json_response(
            {"data": {"id": media_id, "media_key": f"16_{media_id}", "expires_after_secs": 86400}}
        )

    def _upload(self, request: web.Request, token: str) -> Upload | web.Response:
        upload = self.uploads.get(request.match_info["media_id"])
        if upload is None or upload.owner != token:
            return self._refuse(request, 400, "unknown media id")
        return upload

    async def _append(self, request: web.Request) -> web.Response:
        self.calls.append(f"POST {request.path}")
        token = self._authorized(request)
        if isinstance(token, web.Response):
            return token
        upload = self._upload(request, token)
        if isinstance(upload, web.Response):
            return upload
        if request.content_type != "multipart/form-data":
            return self._refuse(request, 400, "multipart/form-data expected")
        form = await request.post()
        index, media = form.get("segment_index"), form.get("media")
        if not isinstance(index, str) or not index.isdigit() or int(index) > 999:
            return self._refuse(request, 400, "segment_index 0 to 999 expected")
        if not isinstance(media, web.FileField):
            return self._refuse(request, 400, "media file part expected")
        content = media.file.read()
        if len(content) > SEGMENT_MAX_BYTES:
            return self._refuse(request, 400, "a segment is at most 5 MB")
        upload.segments[int(index)] = content
        return web.Response(status=204)

    async def _finalize(self, request: web.Request) -> web.Response:
        self.calls.append(f"POST {request.path}")
        token = self._authorized(request)
        if isinstance(token, web.Response):
            return token
        upload = self._upload(request, token)
        if isinstance(upload, web.Response):
            return upload
        if sorted(upload.segments) != list(range(len(upload.segments))):
            return self._refuse(request, 400, "segments missing")
        if len(upload.content) != upload.total_bytes:
            return self._refuse(request, 400, "total_bytes does not match the segments")
        upload.finalized = True
        data: dict[str, Any] = {
            "id": upload.media_id,
            "media_key": f"16_{upload.media_id}",
            "size": upload.total_bytes,
            "expires_after_secs": 86400,
        }
        if upload.media_category in ("dm_video", "dm_gif"):
            data["processing_info"] = {
                "state": "pending",
                "check_after_secs": self.check_after_secs,
            }
        return web.json_response({"data": data})

    async def _status(self, request: web.Request) -> web.Response:
        self.calls.append(f"GET {request.path}")
        token = self._authorized(request)
        if isinstance(token, web.Response):
            return token
        if request.query.get("command") != "STATUS":
            return self._refuse(request, 400, "command=STATUS expected")
        upload = self.uploads.get(request.query.get("media_id", ""))
        if upload is None or upload.owner != token:
            return self._refuse(request, 400, "unknown media id")
        upload.status_checks += 1
        done = upload.status_checks > self.processing_checks
        info: dict[str, Any] = (
            {"state": self.processing_outcome, "progress_percent": 100}
            if done
            else {
                "state": "in_progress",
                "check_after_secs": self.check_after_secs,
                "progress_percent": 50,
            }
        )
        return web.json_response({"data": {"id": upload.media_id, "processing_info": info}})

    async def _file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        content, content_type = found
        return web.Response(body=content, content_type=content_type)
