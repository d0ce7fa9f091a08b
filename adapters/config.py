"""The ``[channels]`` section: provider endpoints, the domains they feed, and their secrets.

Every provider-side endpoint (a Twilio number, a WhatsApp phone number id, a Facebook
page, an Instagram account, a Telegram bot, an inbound email address) maps to one routing
domain and optionally a queue, and may give its conversations a priority, required
skills, a language and attributes. Secrets never appear in the file: each is named by the
environment variable that holds it (``*_env`` fields), and read with ``resolve_secret``.
API base URLs default to the real providers; tests point them at loopback fakes.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from adapters.base import AdapterError
from schemas.identity import is_whatsapp_user_id
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

PHONE_CHANNELS = frozenset({"sms", "whatsapp", "rcs", "viber"})
"""Channels whose customer address is an E.164 phone number."""
META_APP_ID = r"^[0-9]{1,32}$"
"""A Meta app id: digits (Meta's ids are numbers; TOML keeps them as strings)."""
RBM_MAX_AGE_SECONDS = 8 * 24 * 3600
"""8 days: RBM retries a webhook delivery for 7 days, and a day of margin for the
sending phone's clock (a user message's ``sendTime`` is the phone's)."""
X_USER_ID = r"^[0-9]{1,19}$"
"""An X user id: digits (X's ids are 64-bit numbers; TOML keeps them as strings)."""
X_APP_ID = r"^[0-9]{1,32}$"
"""An X app id: digits."""
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


TWILIO_URL_MAX = 2048
"""Characters of a Twilio webhook URL in the configuration."""
_TWILIO_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")


def twilio_webhook_url(url: str, where: str) -> str:
    """``url`` when it can be a Twilio webhook URL we serve, else ``ValueError`` naming
    ``where``: ``http``/``https`` with a host, no user name or password (Twilio leaves
    them out of what it signs, and secrets stay out of the file), and a path of letters,
    digits and ``- . _ ~ /`` (it becomes a route) that is not another part's (``/v1/…``,
    ``/webhooks/…`` other than ``/webhooks/twilio/…``)."""
    parts = urllib.parse.urlsplit(url)
    if len(url) > TWILIO_URL_MAX or not url.isascii() or not url.isprintable():
        raise ValueError(
            f"{where}: not a URL of at most {TWILIO_URL_MAX} printable ASCII characters"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}: must be an http or https URL with a host")
    if "@" in parts.netloc:
        raise ValueError(
            f"{where}: leave the user name and password out (Twilio does not sign them)"
        )
    path = parts.path
    if not _TWILIO_PATH.match(path):
        raise ValueError(
            f"{where}: the path must start with / and hold only letters, digits and - . _ ~ /"
        )
    if (
        path == "/v1"
        or path.startswith("/v1/")
        or (path.startswith("/webhooks/") and not path.startswith("/webhooks/twilio/"))
    ):
        raise ValueError(f"{where}: the path {path} belongs to another part of Switchboard")
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ValueError(f"{where}: the port is not a number") from None
    return url


class TwilioNumber(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    number: Endpoint
    """Our Twilio number in E.164 (``+15005550006``); SMS and Twilio WhatsApp to it are routed."""
    domain: str
    """Routing domain fed by this number."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    webhook_url: str | None = None
    """Exactly the URL set as the number's "A message comes in" webhook in Twilio's console
    (scheme, host, port, path and query), when it is not ``SWITCHBOARD_PUBLIC_URL`` +
    ``/webhooks/twilio/sms``: Twilio signs that URL. Its path is served too (a proxy in
    front may change scheme, host and port, not the path)."""
    status_callback_url: str | None = None
    """The ``StatusCallback`` of replies from this number, exactly as Twilio is to call it;
    default ``twilio.status_callback_url``. Its path is served too; ``outbound_id=<our id>``
    is added to its query."""

    def __post_init__(self) -> None:
        if self.webhook_url is not None:
            twilio_webhook_url(self.webhook_url, f"twilio.numbers {self.number} webhook_url")
        if self.status_callback_url is not None:
            twilio_webhook_url(
                self.status_callback_url, f"twilio.numbers {self.number} status_callback_url"
            )


class TwilioSharedKey(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    """The SharedKey's id (``webhooks_sharedkey_…``), as ``X-Twilio-Webhooks-Signature-Settings``
    names it on the webhooks a Webhook Rule has Twilio sign with it."""
    secret_env: str
    """Variable holding the secret Twilio returned when the SharedKey was made."""


class TwilioConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_sid: str = ""
    """Twilio Account SID (``AC…``) that sends replies (egress)."""
    auth_token_env: str = "TWILIO_AUTH_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the Auth Token: verifies ``X-Twilio-Signature`` and authenticates egress."""
    shared_keys: Annotated[list[TwilioSharedKey], msgspec.Meta(max_length=LIST_MAX)] = []
    """SharedKeys that Webhook Rules have Twilio sign webhooks with instead of the Auth Token:
    a request whose ``X-Twilio-Webhooks-Signature-Settings`` names one is verified with its
    secret (list the old and the new key while rotating)."""
    api_base_url: str = "https://api.twilio.com"
    """Base URL of Twilio's REST API (egress)."""
    status_callback_url: str | None = None
    """The ``StatusCallback`` sent with each reply (a number's own wins), exactly as Twilio
    is to call it; its path is served too and ``outbound_id=<our id>`` is added to its
    query. Default: ``[http] public_url`` (or ``SWITCHBOARD_PUBLIC_URL``) +
    ``/webhooks/twilio/status`` when it is set, else none (Twilio then reports to the Messaging Service's own
    delivery status callback, if it has one)."""
    webhook_urls: Annotated[list[str], msgspec.Meta(max_length=LIST_MAX)] = []
    """Other URLs Twilio calls, each exactly as set in its console: a Messaging Service's
    incoming message webhook and delivery status callback, a number's fallback URL. Each
    path is served, and a request on it is verified against that URL."""
    numbers: list[TwilioNumber] = []
    """Our numbers and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([n.number for n in self.numbers], "twilio.numbers")
        _unique([k.key for k in self.shared_keys], "twilio.shared_keys")
        if self.status_callback_url is not None:
            twilio_webhook_url(self.status_callback_url, "twilio.status_callback_url")
        for url in self.webhook_urls:
            twilio_webhook_url(url, "twilio.webhook_urls")
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
    instagram_app_secret_env: str | None = None
    """Variable holding the Instagram app secret (App Dashboard, Instagram, API setup with
    Instagram login, Business login settings), for an app on the Instagram API with
    Instagram Login whose Instagram webhooks Meta signs with it rather than with the app
    secret. Set, an Instagram notification signed with either is accepted; any other
    notification still needs the app secret. Unset: the app secret alone."""
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
        for index, bot in enumerate(self.bots):
            # A business chat's endpoint is ``{bot}/{connection}`` (``adapters.telegram``).
            if not bot.name or "/" in bot.name:
                raise ValueError(f"telegram.bots[{index}].name: a bot name is not empty, no /")


class EmailAddress(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    address: Endpoint
    """Inbound address customers write to (compared case-insensitively)."""
    domain: str
    """Routing domain fed by this address."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    sending_domain: str | None = None
    """Mailgun sending domain for replies; default: the address's domain part."""
    provider: Literal["mailgun", "sendgrid"] = "mailgun"
    """Which provider sends its replies (mail arrives through either)."""


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


SENDGRID_EVENT_MAX_AGE_SECONDS = 88_200
"""24.5 hours: SendGrid retries an Event Webhook POST for 24 hours, maybe with its first
signature, and half an hour of margin."""
SENDGRID_PARSE_MAX_AGE_SECONDS = 262_800
"""73 hours: SendGrid retries an Inbound Parse POST for 3 days, and an hour of margin."""


def _p256_public_key(value: str, field: str) -> None:
    """``value`` is SendGrid's verification key (base64 of a DER SubjectPublicKeyInfo of
    a P-256 key), else ``ValueError`` naming ``field``."""
    # Imported here: only a configuration with a SendGrid key needs them.
    import base64

    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, UnsupportedAlgorithm):  # binascii.Error is a ValueError
        key = None
    if not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
        raise ValueError(
            f"email.sendgrid.{field} must be SendGrid's verification key: base64 of a P-256"
            " public key (DER), as SendGrid shows it"
        )


class SendGridConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    api_key_env: str = "SENDGRID_API_KEY"
    """Variable holding the API key used to send replies (Mail Send, ``mail.send`` scope)."""
    api_base_url: str = "https://api.sendgrid.com"
    """SendGrid API base URL (``https://api.eu.sendgrid.com`` for EU subusers)."""
    event_public_key: str = ""
    """The Signed Event Webhook's verification key (Mail Settings > Event Webhook, or
    ``GET /v3/user/webhooks/event/settings/signed``): base64, as SendGrid shows it. Public,
    not a secret. Unset: the Event Webhook route answers 503 (events are never accepted
    unsigned)."""
    event_max_age_seconds: int = SENDGRID_EVENT_MAX_AGE_SECONDS
    """Refuse Event Webhook POSTs signed longer ago than this (replay guard, with the
    signature claimed once). Default 24.5 hours: SendGrid retries for 24 hours. 1 to
    2,592,000."""
    parse_public_key: str = ""
    """The Inbound Parse security policy's verification key (``signature.public_key`` of
    ``POST /v3/user/webhooks/security/policies``), base64. Set: every Inbound Parse POST
    must carry a valid signature."""
    parse_basic_auth_env: str | None = None
    """Variable holding ``user:password``, the credentials written into the Inbound Parse
    URL (``https://user:password@host/webhooks/email/sendgrid``). Set: every Inbound Parse
    POST must carry them (``Authorization: Basic``)."""
    parse_unauthenticated: bool = False
    """Accept Inbound Parse POSTs from anyone: only when neither ``parse_public_key`` nor
    ``parse_basic_auth_env`` is set. Without any of the three, the route answers 503."""
    parse_max_age_seconds: int = SENDGRID_PARSE_MAX_AGE_SECONDS
    """Refuse signed Inbound Parse POSTs signed longer ago than this. Default 73 hours:
    SendGrid retries a failed POST for 3 days. 1 to 2,592,000."""

    def __post_init__(self) -> None:
        for field, key in (
            ("event_public_key", self.event_public_key),
            ("parse_public_key", self.parse_public_key),
        ):
            if key:
                _p256_public_key(key, field)
        for field, age in (
            ("event_max_age_seconds", self.event_max_age_seconds),
            ("parse_max_age_seconds", self.parse_max_age_seconds),
        ):
            if not 0 < age <= PLAUSIBLE_PAST_SECONDS:
                raise ValueError(
                    f"email.sendgrid.{field} must be 1 to 2592000 (30 days): the replay"
                    " window cannot be turned off"
                )
        if self.parse_unauthenticated and (self.parse_public_key or self.parse_basic_auth_env):
            raise ValueError(
                "email.sendgrid.parse_unauthenticated contradicts parse_public_key and"
                " parse_basic_auth_env: set one way of authenticating Inbound Parse"
            )


class EmailConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mailgun: MailgunConfig = MailgunConfig()
    """Mailgun inbound routes and sending."""
    sendgrid: SendGridConfig = SendGridConfig()
    """SendGrid Inbound Parse, Event Webhook and sending."""
    addresses: list[EmailAddress] = []
    """Our inbound addresses and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([a.address.lower() for a in self.addresses], "email.addresses")


VONAGE_MAX_AGE_SECONDS = 88_200
"""24.5 hours: Vonage retries a Messages API callback for 24 hours; half an hour of margin
for the last attempt's queueing and clock skew."""
VONAGE_SMS_MAX_AGE_SECONDS = 261_000
"""72.5 hours: Vonage retries SMS API delivery receipts for 72 hours (inbound SMS for 24),
each with the ``timestamp`` of its first attempt ("when Vonage started to push")."""


class VonageNumber(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    number: Endpoint
    """Our Vonage number or sender id as Vonage writes it in webhooks' ``to`` (an SMS,
    MMS, WhatsApp or Viber number in E.164 digits without ``+``, a Messenger page id, a
    Viber service id)."""
    domain: str
    """Routing domain fed by this number."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""


class VonageConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    api_key: str = ""
    """Vonage API key (the account's). Set, a webhook naming another (the JWT's
    ``api_key`` claim, the SMS API's ``api-key``) is refused even when correctly signed."""
    application_id: str = ""
    """Vonage application id: sends through the Messages API with its private key."""
    private_key_env: str = "VONAGE_PRIVATE_KEY"
    """Variable holding the application's private key (PEM): signs the Messages API's JWTs."""
    signature_secret_env: str = "VONAGE_SIGNATURE_SECRET"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the account's signature secret: verifies signed webhooks."""
    messages_api_base_url: str = "https://api.nexmo.com"
    """Messages API base URL (``https://api-eu.vonage.com`` or ``https://api-ap.vonage.com``
    for a regional endpoint); replies are ``POST {messages_api_base_url}/v1/messages``."""
    sms_signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "md5hash"
    """How the SMS API signs its webhooks (``sig``), as set in the dashboard's API settings:
    ``md5hash`` (MD5 hash, Vonage's default) or the HMAC ``md5``, ``sha1``, ``sha256``,
    ``sha512``. Messages API webhooks are always a JWT (HS256), whatever this says."""
    max_age_seconds: int = VONAGE_MAX_AGE_SECONDS
    """Refuse Messages API webhooks whose JWT was issued (``iat``) longer ago than this, in
    seconds (replay guard, with the token cache holding each ``jti``). Default 24.5 hours:
    Vonage retries a callback for 24 hours. 1 to 2,592,000 (30 days)."""
    sms_max_age_seconds: int = VONAGE_SMS_MAX_AGE_SECONDS
    """Refuse SMS API webhooks signed with a ``timestamp`` older than this, in seconds
    (replay guard, with the token cache holding each ``nonce``). Default 72.5 hours: Vonage
    retries delivery receipts for 72 hours with their first ``timestamp``. 1 to 2,592,000."""
    numbers: list[VonageNumber] = []
    """Our numbers and sender ids, and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([n.number for n in self.numbers], "vonage.numbers")
        for n in self.numbers:
            if n.number.startswith("+"):
                raise ValueError(
                    f"{n.number!r}: write Vonage numbers as Vonage does, without '+'"
                    " (vonage.numbers)"
                )
        for name in ("max_age_seconds", "sms_max_age_seconds"):
            if not 0 < getattr(self, name) <= PLAUSIBLE_PAST_SECONDS:
                raise ValueError(
                    f"vonage.{name} must be 1 to 2592000 (30 days): the replay window cannot"
                    " be turned off"
                )


class RbmAgent(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    agent_id: Endpoint
    """RBM agent id as the API's ``agentId`` takes it (``welcome-bot``); webhooks write it
    ``welcome-bot@rbm.goog``, and both forms are recognised. Replies are sent from it."""
    domain: str
    """Routing domain fed by this agent."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    client_token_env: str | None = None
    """Variable holding the client token of this agent's own webhook
    (``/webhooks/rbm/<agent_id>``); unset: the partner webhook's (``rbm.client_token_env``)."""

    def __post_init__(self) -> None:
        if not self.agent_id or "/" in self.agent_id:
            raise ValueError(f"{self.agent_id!r} is not an RBM agent id (rbm.agents)")


class RbmConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    client_token_env: str = "RBM_CLIENT_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the partner webhook's client token: verifies ``X-Goog-Signature``."""
    service_account_env: str = "RBM_SERVICE_ACCOUNT"
    """Variable holding the service account key (JSON: ``client_email``, ``private_key``,
    ``token_uri``) whose OAuth 2.0 tokens send messages."""
    api_base_url: str = "https://rcsbusinessmessaging.googleapis.com"
    """RBM API base URL (a regional one: ``https://europe-rcsbusinessmessaging.googleapis.com``)."""
    max_age_seconds: Annotated[int, msgspec.Meta(ge=60, le=int(PLAUSIBLE_PAST_SECONDS))] = (
        RBM_MAX_AGE_SECONDS
    )
    """Oldest signed ``sendTime`` accepted (seconds): an older message or event is set aside
    on the dead-letter topic, not published. Default 8 days: RBM retries for 7."""
    agents: list[RbmAgent] = []
    """Our RBM agents and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([a.agent_id for a in self.agents], "rbm.agents")


class XAccount(_Routed, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(pattern=X_USER_ID)]
    """Our X account's numeric user id (the ``for_user_id`` of its webhook events), quoted:
    ``"4337869213"``."""
    domain: str
    """Routing domain fed by this account."""
    queue: QueueName | None = None
    """Queue for its conversations; the domain's default queue when unset."""
    access_token_env: str = "X_ACCESS_TOKEN"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the account's OAuth 1.0a access token (sends its DMs)."""
    access_token_secret_env: str = "X_ACCESS_TOKEN_SECRET"  # noqa: S105 (names a variable, not a secret)
    """Variable holding that access token's secret."""


class XConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    consumer_key_env: str = "X_CONSUMER_KEY"
    """Variable holding the app's consumer (API) key."""
    consumer_secret_env: str = "X_CONSUMER_SECRET"  # noqa: S105 (names a variable, not a secret)
    """Variable holding the app's consumer secret: answers CRC checks, verifies
    ``x-twitter-webhooks-signature`` and signs sends."""
    api_base_url: str = "https://api.x.com"
    """X API base URL (DMs and media uploads)."""
    app_id: Annotated[str, msgspec.Meta(pattern=X_APP_ID)] | None = None
    """This X app's numeric id (Developer Console, the app's settings), quoted. Set, a DM
    our account sent (X delivers those too) whose ``source_app_id`` is another app's, or
    that has none (the X app on a phone, x.com), means a person answered the customer
    outside Switchboard: it becomes ``message.human_replied``; DMs this app sent are
    dropped. Unset: every DM our account sent is dropped."""
    accounts: list[XAccount] = []
    """Our X accounts and the domains they feed."""

    def __post_init__(self) -> None:
        _unique([a.user_id for a in self.accounts], "x.accounts")


class ChannelsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    phone_identity_domains: list[str] = []
    """Domains where the phone channels (SMS, WhatsApp, RCS, Viber) share the customer by
    phone: ``customer_id`` ``phone:+E164``.

    Elsewhere ``customer_id`` is channel-scoped: ``{channel}:{address}``.
    """
    media_fetch_allow_private: bool = False
    """Fetch reply attachments (uploaded to Mailgun, SendGrid and X) from any address.
    By default a URL whose host is, or resolves to, a loopback, private, link-local,
    multicast, reserved or unspecified address is refused before connecting, redirects
    included: an agent or a bot cannot make Switchboard read an internal service. Set it
    only when the media server is on the internal network (and in tests on loopback)."""
    twilio: TwilioConfig = TwilioConfig()
    """Twilio Programmable Messaging (SMS, MMS, Twilio WhatsApp)."""
    meta: MetaConfig = MetaConfig()
    """WhatsApp Cloud API, Messenger and Instagram (one app webhook)."""
    telegram: TelegramConfig = TelegramConfig()
    """Telegram bots."""
    email: EmailConfig = EmailConfig()
    """Inbound email addresses (Mailgun, SendGrid)."""
    vonage: VonageConfig = VonageConfig()
    """Vonage Messages API (SMS, MMS, WhatsApp, Messenger, Viber) and SMS API."""
    rbm: RbmConfig = RbmConfig()
    """Google RCS Business Messaging agents."""
    x: XConfig = XConfig()
    """X (Twitter) direct messages, through the Account Activity API."""

    def serves(self, provider: str) -> bool:
        """Whether any endpoint here is ``provider``'s (a webhook's provider name, as
        ``adapters.webhook_serving.serve`` counts it): the webhooks of a provider that
        feeds no domain are no provider's calls to us."""
        match provider:
            case "twilio":
                return bool(self.twilio.numbers)
            case "meta":
                return bool(self.meta.whatsapp or self.meta.messenger or self.meta.instagram)
            case "telegram":
                return bool(self.telegram.bots)
            case "mailgun" | "sendgrid":
                return any(address.provider == provider for address in self.email.addresses)
            case "sendgrid_events":
                return self.serves("sendgrid")
            case "vonage":
                return bool(self.vonage.numbers)
            case "rbm":
                return bool(self.rbm.agents)
            case "x":
                return bool(self.x.accounts)
        raise ValueError(f"no webhook provider {provider!r}")

    def customer_id(self, domain: str, channel: str, address: str) -> str:
        """The domain's customer id for a channel identity.

        Phone channels share ``phone:+E164`` in the domains that link them; every other
        identity is channel-scoped (``telegram:123``, ``email:ann@example.com``), a
        WhatsApp user known only by a business-scoped user id too (``whatsapp:US.1349…``).
        """
        if (
            channel in PHONE_CHANNELS
            and domain in self.phone_identity_domains
            and not is_whatsapp_user_id(address)
        ):
            return f"phone:{address}"
        return f"{channel}:{address}"
