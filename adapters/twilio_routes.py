"""Twilio's webhook routes: incoming messages and status callbacks, on our paths and on
the path of every URL configured for Twilio (``adapters.twilio`` says which URL is
verified on each).

Routes are made when the service starts, for the paths configured then. A URL added to
the configuration later is served at once all the same: on a path already routed its
request is verified against it, and on a new path ``late_paths`` hands the request that
no route took to the same handler. Every request follows
``adapters.webhook_serving.serve``'s steps; the answer is an empty TwiML ``<Response/>``.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import MatchInfoError

from adapters import twilio
from adapters.base import BadRequest, Normalized
from adapters.normalize import parse_form
from adapters.webhook_serving import Handler, WebhookContext, parse_signed, serve

TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
URLS_KEPT = 1024

_urls_seen: dict[tuple[str, str, str], str] = {}


def request_url(request: web.Request) -> str:
    """``str(request.url)``, kept by what aiohttp makes it of (scheme, ``Host``, request
    target): webhooks arrive on a few URLs, and building one costs more than the lookup.
    Forgotten all at once past ``URLS_KEPT`` (a status callback's query differs each time)."""
    seen = (request.scheme, request.host, request.raw_path)
    url = _urls_seen.get(seen)
    if url is None:
        if len(_urls_seen) >= URLS_KEPT:
            _urls_seen.clear()
        url = _urls_seen[seen] = str(request.url)
    return url


def routes(ctx: WebhookContext) -> list[web.RouteDef]:
    """``POST`` on ``/webhooks/twilio/sms``, ``/webhooks/twilio/status`` and each
    configured URL's path, all with one handler (a form says what it is)."""
    handler = _handler(ctx)
    return [web.post(path, handler) for path in twilio.served_paths(ctx.channels)]


def late_paths(ctx: WebhookContext) -> Middleware:
    """A middleware serving the paths of Twilio URLs configured since the routes were
    made: a ``POST`` no route took (aiohttp's 404) on such a path goes to the Twilio
    handler. Every other request passes through as it came."""
    twilio_handler = _handler(ctx)

    @web.middleware  # aiohttp passes the next handler by this name: ``handler``
    async def serve_late_paths(request: web.Request, handler: Handler) -> web.StreamResponse:
        unmatched = request.match_info
        if (
            isinstance(unmatched, MatchInfoError)
            and unmatched.http_exception.status == 404
            and request.method == "POST"
            and twilio.is_configured_path(ctx.channels, request.path)
        ):
            return await twilio_handler(request)
        return await handler(request)

    return serve_late_paths


def _handler(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            channels = ctx.channels  # replaced whole on a new configuration: read once
            token, algorithm = twilio.signing_secret(
                channels.twilio, ctx.environ, request.headers.get(twilio.SIGNATURE_SETTINGS_HEADER)
            )
            signature = request.headers.get(twilio.SIGNATURE_HEADER)
            urls = twilio.signature_urls(
                channels, ctx.public_url, request_url(request), request.raw_path
            )
            params: list[tuple[str, str]] | None
            if request.content_type == twilio.FORM:
                params = parse_form(body)
                signed = twilio.verified_url(token, urls, params, signature, algorithm)
            elif request.content_type == twilio.JSON and twilio.BODY_HASH in request.query:
                # Signed through the URL: nothing of the body is read before both checks.
                signed = twilio.verified_json_url(token, urls, body, signature, algorithm)
                params = None
            else:
                raise BadRequest(
                    f"expected {twilio.FORM} (or {twilio.JSON} signed with {twilio.BODY_HASH})",
                    status=415,
                )
            outbound_id = twilio.query_value(signed, twilio.OUTBOUND_ID)

            def parse() -> Normalized:
                fields = params if params is not None else twilio.json_params(body)
                events = twilio.parse_webhook(
                    fields, channels, ctx.clock(), outbound_id=outbound_id
                )
                return Normalized(events)

            return parse_signed(parse)

        return await serve(
            ctx,
            "twilio",
            request,
            work,
            lambda: web.Response(text=TWIML_EMPTY, content_type="text/xml"),
        )

    return handle
