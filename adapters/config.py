"""The ``[channels]`` section: provider endpoints, the domains they feed, and their secrets.

Every provider-side endpoint (a Twilio number, a WhatsApp phone number id, a Facebook
page, an Instagram account, a Telegram bot, an inbound email address) maps to one routing
domain and optionally a queue, and may give its conversations a priority, required
skills, a language and attributes. Secrets never appear in the file: each is named by the
environment variable that holds it (``*_env`` fields), and read with ``resolve_secret``.
API base URLs default to the real providers; tests point them at loopback fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from adapters.base import AdapterError
from schemas.limits import (
    LIST_MAX,
    PLAUSIBLE_PAST_SECONDS,
    Attributes,
    Endpoint,
    Language,
    Priority,
    QueueName,
    SkillName,
)

META_APP_ID = r"^[0-9]{1,32}$"
"""A Meta app id: digits (Meta's ids are numbers; TOML keeps them as strings)."""
MAILGUN_MAX_AGE_SECONDS = 30_600
"""8.5 hours: Mailgun's 8 hours of retries, each of which may carry the first signature,
and half an hour of margin for the last attempt's queueing and clock skew."""


class SecretMissing(AdapterError):
    """A secret's environment variable is unset or empty: a deployment mistake, not the client's."""

    def __init__(self, env_name: str) -> None:
        super().__init__(f"environment variable {env_name} is not set (named in [channels])")
        self.env_name = env_name


def resolve_secret(env_name: str, environ: Mapping[str, str]) -> str:
    """The secret held by ``env_name``; raises ``SecretMissing`` naming the variable."""
    value = environ.get(env_name, "")
    if not value:
        raise SecretMissing(env_name)
    return value


def _unique(keys: list[str], where: str) -> None:
    """An endpoint feeds one domain: a key listed twice is a configuration mistake."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"{key!r} is listed twice ({where})")
        seen.add(key)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class _Routed(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an endpoint tells routing about each conversation it opens."""

    priority: Priority = 0
    """Waiting priority of its conversations (higher first; -1000 to 1000)."""
    skills: Annotated[tuple[SkillName, ...], msgspec.Meta(max_length=LIST_MAX)] = ()
    """Skills an agent needs for its conversations, beyond their queue step's."""
    language: Language | None = None
    """Its customers' language (BCP 47), e.g. for a number advertised to French speakers."""
    attributes: Attributes = {}
    """Context put on each of its conversations (``brand``, ``campaign`` …)."""


class TwilioNumber(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    number: Endpoint
    """Our Twilio number in E.164 (``+15005550006``); SMS and Twilio WhatsApp to it are routed."""
    domain: str
    """Routing domain fed by this number."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""


class TwilioConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_sid: str = ""
    """Twilio Account SID (``AC…``) that sends replies (egress)."""
    auth_token_env: str = "TWILIO_AUTH_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the Auth Token: verifies ``X-Twilio-Signature`` and authenticates egress."""
    api_base_url: str = "https://api.twilio.com"
    """Base URL of Twilio's REST API (egress)."""
    status_callback_url: str | None = None
    """Status callback URL sent with each reply, e.g. ``https://host/webhooks/twilio/sms``."""
    numbers: list[TwilioNumber] = []
    """Our numbers and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([n.number for n in self.numbers], "twilio.numbers")
        for n in self.numbers:
            if not (n.number.startswith("+") and n.number[1:].isdigit()):
                raise ValueError(f"{n.number!r} is not an E.164 number (twilio.numbers)")


class WhatsAppNumber(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    phone_number_id: Endpoint
    """WhatsApp Cloud API phone number id (not the phone number itself)."""
    domain: str
    """Routing domain fed by this number."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    access_token_env: str = "WHATSAPP_ACCESS_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the system-user access token used to send replies."""


class MessengerPage(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    page_id: Endpoint
    """Facebook page id."""
    domain: str
    """Routing domain fed by this page."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    access_token_env: str = "MESSENGER_PAGE_ACCESS_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the page access token used to send replies."""


class InstagramAccount(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: Endpoint
    """Instagram professional account id (the ``entry.id`` of its webhooks)."""
    domain: str
    """Routing domain fed by this account."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    access_token_env: str = "INSTAGRAM_ACCESS_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the Instagram access token used to send replies."""


class MetaConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    app_secret_env: str = "META_APP_SECRET"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the Meta app secret: verifies ``X-Hub-Signature-256``."""
    verify_token_env: str = "META_VERIFY_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the verify token you typed in the app's webhook settings."""
    graph_api_base_url: str = "https://graph.facebook.com"
    """Graph API base URL for WhatsApp and Messenger replies."""
    instagram_api_base_url: str = "https://graph.instagram.com"
    """Instagram API base URL for Instagram replies."""
    graph_api_version: str = "v23.0"
    """Graph API version in request paths."""
    whatsapp: list[WhatsAppNumber] = []
    """WhatsApp Cloud API numbers and the domains they feed."""
    messenger: list[MessengerPage] = []
    """Facebook pages and the domains they feed."""
    instagram: list[InstagramAccount] = []
    """Instagram accounts and the domains they feed."""
    app_id: Annotated[str, msgspec.Meta(pattern=META_APP_ID)] | None = None
    """This Meta app's id (App Dashboard, App settings > Basic), quoted: ``"1517776481860111"``.
    Set, a Messenger or Instagram echo (``is_echo``: a message the page or account sent)
    whose ``app_id`` is another app's, or that has none (the Page inbox, Meta Business
    Suite, the Instagram app on a phone), means a person answered the customer outside
    Switchboard: it becomes ``message.human_replied`` (a bot that owns the conversation
    hands it to people at once); echoes of this app's own sends are dropped. Unset: every
    echo is dropped, and a person answering from elsewhere goes unnoticed. Messenger sends
    echoes to apps subscribed to the ``message_echoes`` field; Instagram with
    ``messages``."""

    def __post_init__(self) -> None:
        _unique([w.phone_number_id for w in self.whatsapp], "meta.whatsapp")
        _unique([p.page_id for p in self.messenger], "meta.messenger")
        _unique([a.account_id for a in self.instagram], "meta.instagram")


class TelegramBot(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Endpoint
    """Bot name as used in the webhook path ``/webhooks/telegram/{name}``."""
    domain: str
    """Routing domain fed by this bot."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    secret_token_env: str = "TELEGRAM_SECRET_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the ``secret_token`` given to ``setWebhook``."""
    bot_token_env: str = "TELEGRAM_BOT_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the bot token used to send replies."""
    allow_groups: bool = False
    """Also route messages from group chats (the group is then the customer)."""


class TelegramConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    api_base_url: str = "https://api.telegram.org"
    """Bot API base URL (egress)."""
    bots: list[TelegramBot] = []
    """Our bots and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([b.name for b in self.bots], "telegram.bots")


class EmailAddress(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    address: Endpoint
    """Inbound address customers write to (compared case-insensitively)."""
    domain: str
    """Routing domain fed by this address."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    sending_domain: str | None = None
    """Mailgun sending domain for replies; default: the address's domain part."""


class MailgunConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    signing_key_env: str = "MAILGUN_SIGNING_KEY"
    """Variable holding the HTTP webhook signing key: verifies route POSTs."""
    api_key_env: str = "MAILGUN_API_KEY"
    """Variable holding the API key used to send replies."""
    api_base_url: str = "https://api.mailgun.net"
    """Mailgun API base URL (``https://api.eu.mailgun.net`` for EU domains)."""
    max_age_seconds: int = MAILGUN_MAX_AGE_SECONDS
    """Refuse route POSTs signed longer ago than this, in seconds (replay guard, with the
    token cache). Default 8.5 hours: Mailgun retries a failed delivery for 8 hours, maybe
    with its first signature. Always on: 1 to 2,592,000 (30 days)."""

    def __post_init__(self) -> None:
        if not 0 < self.max_age_seconds <= PLAUSIBLE_PAST_SECONDS:
            raise ValueError(
                "email.mailgun.max_age_seconds must be 1 to 2592000 (30 days): the replay"
                " window cannot be turned off"
            )


class EmailConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mailgun: MailgunConfig = MailgunConfig()
    """Mailgun inbound routes and sending."""
    addresses: list[EmailAddress] = []
    """Our inbound addresses and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([a.address.lower() for a in self.addresses], "email.addresses")


class ChannelsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    phone_identity_domains: list[str] = []
    """Domains where SMS and WhatsApp share the customer by phone: ``customer_id`` ``phone:+E164``.

    Elsewhere ``customer_id`` is channel-scoped: ``{channel}:{address}``.
    """
    twilio: TwilioConfig = TwilioConfig()
    """Twilio Programmable Messaging (SMS, MMS, Twilio WhatsApp)."""
    meta: MetaConfig = MetaConfig()
    """WhatsApp Cloud API, Messenger and Instagram (one app webhook)."""
    telegram: TelegramConfig = TelegramConfig()
    """Telegram bots."""
    email: EmailConfig = EmailConfig()
    """Inbound email addresses."""

    def customer_id(self, domain: str, channel: str, address: str) -> str:
        """The domain's customer id for a channel identity.

        Phone channels share ``phone:+E164`` in the domains that link them; every other
        identity is channel-scoped (``telegram:123``, ``email:ann@example.com``).
        """
        if channel in ("sms", "whatsapp") and domain in self.phone_identity_domains:
            return f"phone:{address}"
        return f"{channel}:{address}"
