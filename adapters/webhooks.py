"""The webhooks of the providers without a module of routes of their own (Meta,
Telegram, Mailgun), and every provider's routes together (``webhook_routes``).

Each request goes through ``adapters.webhook_serving.serve``: bounded read, signature,
normalization, publication, then the provider's expected answer.
"""

from __future__ import annotations

from aiohttp import web

from adapters import email as email_adapter
from adapters import meta, rbm, sendgrid, telegram, twilio_routes, vonage, x_dm
from adapters.base import (
    BadRequest,
    Normalized,
)
from adapters.config import resolve_secret
from adapters.webhook_serving import (
    Handler,
    WebhookContext,
    error_response,
    parse_signed,
    refuse_encoded_bodies,
    serve,
)

__all__ = ["WebhookContext", "refuse_encoded_bodies", "webhook_routes"]


def _meta_post(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            config = ctx.channels.meta
            secret = resolve_secret(config.app_secret_env, ctx.environ)
            instagram = config.instagram_app_secret_env
            meta.verify_signature(
                secret,
                body,
                request.headers.get(meta.SIGNATURE_HEADER),
                None if instagram is None else resolve_secret(instagram, ctx.environ),
            )
            return parse_signed(lambda: meta.parse_webhook(body, ctx.channels, ctx.clock()))

        return await serve(
            ctx, "meta", request, work, lambda: web.Response(text=meta.EVENT_RECEIVED)
        )

    return handle


def _meta_get(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        challenge = ""

        def work(_body: bytes) -> Normalized:
            nonlocal challenge
            token = resolve_secret(ctx.channels.meta.verify_token_env, ctx.environ)
            challenge = meta.verify_subscription(request.query, token)
            return Normalized([])

        return await serve(
            ctx,
            "meta",
            request,
            work,
            lambda: web.Response(text=challenge),
            empty_outcome="accepted",  # a successful subscription handshake
        )

    return handle


def _telegram(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            bot = telegram.find_bot(ctx.channels, request.match_info["bot"])
            secret = resolve_secret(bot.secret_token_env, ctx.environ)
            telegram.verify_secret(secret, request.headers.get(telegram.SECRET_HEADER))
            return parse_signed(
                lambda: Normalized(telegram.parse_update(body, bot, ctx.channels, ctx.clock())),
                domain=bot.domain,
            )

        return await serve(ctx, "telegram", request, work, lambda: web.Response(text="ok"))

    return handle


def _email(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        if provider not in email_adapter.PROVIDERS:
            ctx.metrics.child(ctx.metrics.webhook_requests, "email", "bad_request").inc()
            return error_response(404, f"unknown email provider {provider!r}")

        def work(body: bytes) -> Normalized:
            cfg = ctx.channels.email.mailgun
            key = resolve_secret(cfg.signing_key_env, ctx.environ)
            form = email_adapter.split_form(body, request.headers.get("Content-Type"))
            now = ctx.clock()
            # Only the signature's three short fields are read before it is checked.
            nonce = email_adapter.verify_mailgun(
                key, form.signature_fields(), now, cfg.max_age_seconds
            )
            return parse_signed(
                lambda: Normalized(email_adapter.parse_mailgun(form.decoded(), ctx.channels, now)),
                nonce=nonce,
            )

        return await serve(
            ctx,
            provider,
            request,
            work,
            lambda: web.Response(text="ok"),
            body_limit=ctx.max_email_body_bytes,
        )

    return handle


def _mailgun_events(ctx: WebhookContext) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        def work(body: bytes) -> Normalized:
            if request.content_type != "application/json":
                raise BadRequest("expected application/json", status=415)
            cfg = ctx.channels.email.mailgun
            key = resolve_secret(cfg.signing_key_env, ctx.environ)
            now = ctx.clock()
            # The signature object is verified, and its token claimed, before the event
            # is decoded.
            nonce = email_adapter.verify_mailgun(
                key, email_adapter.event_signature(body), now, cfg.max_age_seconds
            )
            return parse_signed(
                lambda: Normalized(email_adapter.parse_mailgun_event(body, ctx.channels, now)),
                nonce=nonce,
            )

        return await serve(ctx, "mailgun", request, work, lambda: web.Response(text="ok"))

    return handle


def webhook_routes(ctx: WebhookContext) -> list[web.RouteDef]:
    """The provider webhooks of the public contract, bound to ``ctx`` (providers with a
    module of their own bring their routes: ``routes(ctx)``)."""
    return [
        *twilio_routes.routes(ctx),
        web.get("/webhooks/meta", _meta_get(ctx), allow_head=False),
        web.post("/webhooks/meta", _meta_post(ctx)),
        web.post("/webhooks/telegram/{bot}", _telegram(ctx)),
        *sendgrid.routes(ctx),  # before the ``{provider}`` route: its path is more specific
        web.post("/webhooks/email/{provider}", _email(ctx)),
        web.post("/webhooks/email/mailgun/events", _mailgun_events(ctx)),
        *rbm.routes(ctx),
        *x_dm.routes(ctx),
        *vonage.routes(ctx),
    ]
