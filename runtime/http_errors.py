"""The outermost middleware: what a failed request answers, and the one line it logs.

Every route of the process (webhooks, web chat, the API, the console, probes) runs inside
it, so these rules hold whoever wrote the handler:

- A client's mistake is a 4xx with a reason, in JSON: aiohttp's own plain-text answers
  (a path no route has, a method a route does not take) are turned into JSON too. That
  includes a body aiohttp cannot decode (junk under ``Content-Encoding: gzip``, a broken
  chunked encoding): 400, or 413 when it inflates past aiohttp's limit. It logs
  ``client_error`` at warning, without traceback:
  status, method and route pattern, never the path (it holds customer and conversation
  ids) nor the query.
- Anything else is our bug: 500 ``{"error": "internal error", "error_id": …}``, nothing of
  the request echoed, and ``request_failed`` at error with the exception's type and a
  traceback without messages (``runtime.logging.format_exception``), under the same
  ``error_id``.
- Both lines are rate limited per kind (status and route, or exception type and route):
  a client can cause them at will, and must not be able to flood the logs.
- An ``Expect`` header other than ``100-continue`` is a 417 that does not quote it. aiohttp
  handles ``Expect`` before any middleware, and its own 417 quotes the header: a value that
  is not UTF-8 then fails to encode and became a 500 with an error-level traceback.
- A request aiohttp cannot parse (a line over its 8,190 bytes, a header with a control
  character) is answered by aiohttp itself, before any middleware: its answer names the
  error's kind and quotes nothing (``answer_unparsable``).
- Every body is read by ``read_limited``: past its limit, None (the caller's 413); paused
  for ``BODY_IDLE_SECONDS``, a 408 and the connection closed after it.
- A ``Content-Type`` that cannot be parsed is a 400 before any handler runs. aiohttp
  parses it (``request.content_type``) with the standard library's email parser, which
  reads a comment recursively: ``((((…))))`` a thousand deep raised ``RecursionError`` in
  whichever handler asked, a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import structlog
from aiohttp import hdrs, web, web_protocol, web_urldispatcher
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import DecompressSizeError, HttpProcessingError

from runtime.logging import RateLimit, format_exception, new_log_id

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_LOG_LIMIT = web.AppKey("error_log_limit", RateLimit)


RETRY_AFTER_SECONDS = 5
"""What a 503 (an outage of the broker or the database) asks clients to wait, unless the
caller knows better (providers' webhooks: ``adapters.webhooks``)."""


def json_error(
    status: int, reason: str, *, retry_after_seconds: int = RETRY_AFTER_SECONDS
) -> web.Response:
    """``{"error": reason}``; a 503 says when to come back (``Retry-After``)."""
    headers = {"Retry-After": str(retry_after_seconds)} if status == 503 else None
    return web.json_response({"error": reason}, status=status, headers=headers)


def route_of(request: web.Request) -> str:
    """The matched route's pattern (``/v1/domains/{domain}/queues``), or ``unmatched``."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _log_client_error(request: web.Request, status: int, error: str | None = None) -> None:
    route = route_of(request)
    request.app[ERROR_LOG_LIMIT].write(
        log.warning,
        "client_error",
        ("client_error", status, route),
        status=status,
        method=request.method,
        route=route,
        **({"error": error} if error else {}),
    )


@web.middleware
async def contain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if hdrs.CONTENT_TYPE in request.headers:
        try:
            request.content_type  # noqa: B018 -- parsed once here, kept by aiohttp for the handler
        except RecursionError:
            _log_client_error(request, 400, "Content-Type")
            return web.json_response({"error": "malformed Content-Type header"}, status=400)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if 400 <= error.status < 500:
            _log_client_error(request, error.status)
            if error.text == f"{error.status}: {error.reason}":
                # aiohttp's own answer (no such route, a method not allowed): in JSON, as
                # every other error is, with its headers (``Allow``).
                kept = {
                    name: value
                    for name, value in error.headers.items()
                    if name.lower() not in ("content-type", "content-length")
                }
                return web.json_response(
                    {"error": error.reason.lower()}, status=error.status, headers=kept
                )
        raise
    except (HttpProcessingError, web.RequestPayloadError) as error:
        # Raised while reading the body: the bytes the client sent cannot be decoded.
        cause = error.__cause__ if isinstance(error, web.RequestPayloadError) else error
        too_large = isinstance(cause, DecompressSizeError)
        status = 413 if too_large else 400
        _log_client_error(request, status, type(cause or error).__name__)
        reason = "body too large once decompressed" if too_large else "malformed request body"
        return web.json_response({"error": reason}, status=status)
    except ConnectionError:
        # The client went away: there is no one to answer. aiohttp's own line for it is a
        # warning without traceback (runtime.logging).
        raise
    except Exception as error:
        if request.writer.output_size > 0:
            # The answer has begun: no error response can follow. aiohttp logs it (without
            # the message, through runtime.logging) and closes the connection.
            raise
        error_id = new_log_id()
        route = route_of(request)
        request.app[ERROR_LOG_LIMIT].write(
            log.error,
            "request_failed",
            ("request_failed", type(error), route),
            error_id=error_id,
            method=request.method,
            route=route,
            error=type(error).__name__,
            exception=format_exception(error, ours=True),
        )
        return web.json_response({"error": "internal error", "error_id": error_id}, status=500)
    if 400 <= response.status < 500:
        _log_client_error(request, response.status)
    return response


async def answer_expect(request: web.Request) -> None:
    """aiohttp's default ``Expect`` handling, with a 417 that echoes nothing."""
    if request.version != HttpVersion11:
        return
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not begun
        return
    raise web.HTTPExpectationFailed(
        text='{"error": "only Expect: 100-continue is supported"}',
        content_type="application/json",
    )


_aiohttp_handle_error = web_protocol.RequestHandler.handle_error


def answer_unparsable(
    handler: web_protocol.RequestHandler,
    request: web.BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """aiohttp's answer to a request it could not parse, naming the error's kind only: its
    own quotes the offending bytes (``Got more than 8190 bytes when reading: b'Bearer
    …'``), which may be a credential or an address."""
    if status != HTTPStatus.INTERNAL_SERVER_ERROR:
        kind = f" ({type(exc).__name__})" if exc is not None else ""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        message = f"{status} {phrase}: malformed request{kind}"
    return _aiohttp_handle_error(handler, request, status, exc, message)


def setup_errors(app: web.Application, limit: RateLimit | None = None) -> None:
    """Install ``contain_errors`` as the outermost middleware (call before any other)."""
    app[ERROR_LOG_LIMIT] = limit or RateLimit()
    # Every route, including those aiohttp makes for unmatched paths, takes the module's
    # default when it is created; no public hook reaches the latter.
    web_urldispatcher._default_expect_handler = answer_expect
    # Requests that never reach a route are answered by the protocol handler itself.
    web_protocol.RequestHandler.handle_error = answer_unparsable  # type: ignore[method-assign,assignment]
    app.middlewares.insert(0, contain_errors)


READ_CHUNK = 64 * 1024
BODY_IDLE_SECONDS = 60.0
"""Longest a request's body may pause, once its headers have come, before the request is a
``408`` and its connection closed (nginx's ``client_body_timeout``): a client that stops
sending mid-body would otherwise hold its connection and its handler for ever. A slow
upload that keeps coming is read to its end. Headers that never end are not timed here:
that is the ingress's (nginx's ``client_header_timeout``)."""


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed ``limit`` bytes; a body
    that pauses for ``BODY_IDLE_SECONDS`` is a ``408``.

    Read to its end: one ``read(n)`` answers what has arrived so far, which for a body
    that comes in several segments is only its beginning."""
    if request.content_length is not None and request.content_length > limit:
        return None
    content = request.content
    if content.is_eof():
        # All of it arrived before the handler ran (a small body usually does): taken
        # from the buffer at once, with no iterator and no await.
        body = content.read_nowait()
        return body if len(body) <= limit else None
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(BODY_IDLE_SECONDS):
                chunk = await content.read(READ_CHUNK)
        except TimeoutError:
            timed_out = web.HTTPRequestTimeout(
                text=f'{{"error": "request body paused for {BODY_IDLE_SECONDS:g} s"}}',
                content_type="application/json",
            )
            # Closed after the answer: what may still come is no next request.
            timed_out.force_close()
            raise timed_out from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
