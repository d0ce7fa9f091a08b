"""Twilio Programmable Messaging ingress: inbound SMS/MMS and Twilio WhatsApp, status
callbacks, their signatures; and what replies through Twilio may carry.

Webhook URLs. Twilio calls exactly the URL set in its console (a number's "A message comes
in", a Messaging Service's incoming message and delivery status URLs) or given as a
reply's ``StatusCallback``, and signs that URL. Served: ``POST /webhooks/twilio/sms``,
``POST /webhooks/twilio/status``, and the path of every configured URL
(``numbers[].webhook_url``, ``numbers[].status_callback_url``, ``status_callback_url``,
``webhook_urls``). A request is verified against each configured URL with its path (with
the query it arrived with, e.g. a status callback's ``outbound_id``; as configured when a
proxy dropped the query), then against ``SWITCHBOARD_PUBLIC_URL`` + path + query, else the
URL we saw; each as given, without its port and with the scheme's default port (what
twilio-python's ``RequestValidator`` accepts), and without a ``#`` fragment (connection
overrides). A URL with a new path added to the configuration is served after a restart.

Signature (``X-Twilio-Signature``): base64 of the HMAC of that URL followed by every POST
parameter sorted by name, as name+value (repeated values sorted too): HMAC-SHA1 keyed with
the Auth Token, or, when a Webhook Rule has Twilio sign with a SharedKey, keyed with that
key's secret with the algorithm ``X-Twilio-Webhooks-Signature-Settings`` names beside it
(``twilio.shared_keys``; twilio.com/docs/usage/webhooks/webhook-shared-keys).
A JSON body (``application/json``) is signed through the URL: Twilio adds
``bodySHA256=<hex SHA-256 of the body>`` to its query and signs the URL alone; we check
the URL's signature, then the body's hash, and only then decode it (a flat object of the
same parameters as the form).

Replays: Twilio signs no timestamp and no nonce, so a captured request stays valid. The
``I-Twilio-Idempotency-Token`` header seen on Twilio's webhook requests is outside the
signature (a replay can change or drop it) and Twilio's webhook documentation does not
describe it: a claim on it would stop only replays that keep it unchanged (and Twilio's
own retries, which the event id already makes harmless), so it is not used. A replayed message carries the same ``MessageSid``, hence the same event
id, and the router drops it; a replayed status repeats a status already recorded.

A form with ``MessageStatus`` other than ``received``/``receiving`` is a status callback
for a message we sent (our number is ``From``; ``To`` may be absent); any other form with
``Body``, ``NumMedia``, a shared place or a button answer, or status ``received``, is a
customer message. Every documented ``MessageStatus`` is in ``STATUS_MAP``.

Consent: with Advanced Opt-Out on the number's Messaging Service, Twilio adds
``OptOutType`` to an incoming message whose whole body is one of the service's keywords:
``STOP`` (an opt-out), ``START`` (an opt-in) or ``HELP`` (neither). The message then
carries that consent (``consent_source = "provider"``): Twilio blocks sends to an
opted-out number whatever our keywords say, so its word wins over the domain's keywords
(``adapters.consent``), which apply to messages without it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from adapters.base import (
    BadRequest,
    ChannelDeclaration,
    SignatureRejected,
    Unusable,
    constant_time_equal,
)
from adapters.config import ChannelsConfig, TwilioConfig, TwilioNumber, resolve_secret
from adapters.media import MediaLimits, MediaRule
from adapters.normalize import (
    MAX_FORM_FIELDS,
    decode_json,
    delivery_status_changed,
    find_endpoint,
    first_values,
    message_received,
    unknown_endpoint,
)
from schemas import Attachment, Channel, Consent, DeliveryStatus, InboundEvent, Location
from schemas.limits import CHANNEL_TEXT_MAX

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
WHATSAPP_PREFIX = "whatsapp:"
MAX_MEDIA = 10
"""Twilio delivers at most 10 media items per message."""
BODY_MAX = CHANNEL_TEXT_MAX["sms"]
"""The longest ``Body`` of one message, on every channel (error 21617 beyond)."""
SMS_PATH = "/webhooks/twilio/sms"
"""Incoming messages (and, as before, status callbacks)."""
STATUS_PATH = "/webhooks/twilio/status"
"""Status callbacks: replies' default ``StatusCallback``."""
BODY_HASH = "bodySHA256"
"""The query parameter carrying the hex SHA-256 of a JSON body Twilio signed."""
OUTBOUND_ID = "outbound_id"
"""The query parameter of a reply's ``StatusCallback`` carrying our outbound id."""
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
REPLY_WINDOW_SECONDS = 24 * 3600.0
"""WhatsApp lets a business answer freely for 24 h after the customer's last message."""

_DIGESTS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}

DOCUMENTED_STATUSES = (
    "accepted",
    "scheduled",
    "canceled",
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "read",
    "partially_delivered",
    "delivery_unknown",
)
"""Every ``MessageStatus`` Twilio documents (the Message resource's ``status``, and
``delivery_unknown`` reported when no final receipt came)."""

#: Twilio's ``MessageStatus`` → ours; ``provider_status`` carries Twilio's word as is.
STATUS_MAP: dict[str, DeliveryStatus | None] = {
    # Still with Twilio: a Messaging Service choosing a sender, a scheduled send, the queue.
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    # Handed to the carrier (or WhatsApp). delivery_unknown: it left Twilio and no final
    # receipt came back, which says no more than sent.
    "sent": DeliveryStatus.SENT,
    "delivery_unknown": DeliveryStatus.SENT,
    # partially_delivered: some of its parts reached the handset; the customer has it,
    # perhaps incomplete (provider_status says which).
    "delivered": DeliveryStatus.DELIVERED,
    "partially_delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    # The carrier could not deliver what Twilio accepted (ErrorCode says why).
    "undelivered": DeliveryStatus.UNDELIVERED,
    # Never sent: refused by Twilio, or a scheduled message canceled before it left.
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
    # A customer's message on its way in: not a report on anything we sent.
    "receiving": None,
    "received": None,
}
_INBOUND_STATUSES = frozenset({"received", "receiving"})
_MESSAGE_FIELDS = ("Body", "NumMedia", "Latitude", "ButtonText", "ButtonPayload")
"""Any of these makes a form without a delivery status a customer message."""
#: Advanced Opt-Out's ``OptOutType`` → the consent it says (``HELP``: none).
OPT_OUT_TYPES = {"STOP": Consent.OPT_OUT, "START": Consent.OPT_IN}

_MB = 1024 * 1024
_MMS_IMAGES = frozenset({"image/jpeg", "image/jpg", "image/gif", "image/png"})
_MMS_OTHERS = frozenset(
    {
        "audio/basic",
        "audio/l24",
        "audio/mp4",
        "audio/mpeg",
        "audio/ogg",
        "audio/vnd.rn-realaudio",
        "audio/vnd.wave",
        "audio/3gpp",
        "audio/3gpp2",
        "audio/ac3",
        "audio/webm",
        "audio/amr-nb",
        "audio/amr",
        "audio/aac",
        "video/mpeg",
        "video/mp4",
        "video/quicktime",
        "video/webm",
        "video/3gpp",
        "video/3gpp2",
        "video/3gpp-tt",
        "video/h261",
        "video/h263",
        "video/h263-1998",
        "video/h263-2000",
        "video/h264",
        "image/bmp",
        "image/tiff",
        "text/vcard",
        "text/x-vcard",
        "text/csv",
        "text/rtf",
        "text/richtext",
        "text/calendar",
        "text/directory",
        "application/pdf",
        "application/vcard",
        "application/vnd.apple.pkpass",
    }
)
MMS_LIMITS = MediaLimits(
    provider="Twilio MMS",
    rules=(
        MediaRule("image", _MMS_IMAGES, 5 * _MB),
        MediaRule("file", _MMS_OTHERS, 5 * _MB),
    ),
    max_count=MAX_MEDIA,
    max_total_bytes=5 * _MB,
)
"""twilio.com/docs/messaging/guides/accepted-mime-types: at most 10 media and 5 MB in all;
JPEG, PNG and GIF are formatted for the handset, the other accepted types sent as they are."""
WHATSAPP_LIMITS = MediaLimits(
    provider="Twilio WhatsApp",
    rules=(
        MediaRule("image", frozenset({"image/jpeg", "image/jpg", "image/png"}), 5 * _MB),
        MediaRule(
            "audio",
            frozenset(
                {"audio/ogg", "audio/amr", "audio/3gpp", "audio/aac", "audio/mpeg", "audio/mp4"}
            ),
            16 * _MB,
        ),
        MediaRule("video", frozenset({"video/mp4"}), 16 * _MB),
        MediaRule(
            "document",
            frozenset(
                {
                    "application/pdf",
                    "application/msword",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                }
            ),
            16 * _MB,
        ),
        MediaRule("contact", frozenset({"text/vcard", "text/x-vcard"}), 16 * _MB),
    ),
    max_count=1,
    max_total_bytes=16 * _MB,
)
"""twilio.com/docs/whatsapp/guidance-whatsapp-media-messages: one media per message,
16 MB (images 5 MB): JPEG, PNG; OGG (Opus), AMR, 3GP, AAC, MPEG audio; PDF, DOC(X), PPTX,
XLSX; MP4 (H.264 + AAC); vCard. WebP is for stickers only, not sent."""
MEDIA_LIMITS = MMS_LIMITS
"""The SMS/MMS limits; a reply on Twilio WhatsApp is checked against ``WHATSAPP_LIMITS``."""


def media_limits(channel: Channel) -> MediaLimits:
    """What a reply through Twilio on ``channel`` may carry."""
    return WHATSAPP_LIMITS if channel is Channel.WHATSAPP else MMS_LIMITS


DECLARATION = ChannelDeclaration(
    provider="Twilio",
    channels=(Channel.SMS.value, Channel.WHATSAPP.value),
    inbound=(
        f"POST {SMS_PATH}, POST {STATUS_PATH}, and the path of each configured"
        " webhook_url / status_callback_url / webhook_urls"
    ),
    outbound="Messages API (POST /2010-04-01/Accounts/{AccountSid}/Messages.json)",
    media_in=(
        "MMS: up to 10 media (MediaUrlN, MediaContentTypeN, media SID); WhatsApp: image,"
        " audio, video, document, shared location (Latitude/Longitude/Address/Label)"
    ),
    media_out=(
        "MMS: up to 10 attachments, 5 MB in all (JPEG, PNG, GIF formatted for the handset;"
        " audio, video, vCard, PDF … as they are); WhatsApp: 1 attachment (JPEG/PNG 5 MB;"
        " audio, MP4, PDF/Office documents, vCard 16 MB), location (PersistentAction geo:);"
        " a location on SMS is written out (name, address, geo: URI)"
    ),
    statuses=", ".join(s for s in DOCUMENTED_STATUSES if STATUS_MAP[s] is not None),
    read_receipts="WhatsApp: status read (EventType READ); SMS/MMS: none",
    quick_replies="listed after the text, numbered (buttons need a Content template)",
    signature=(
        "X-Twilio-Signature: HMAC-SHA1 of the exact URL + sorted POST parameters, Auth Token"
        " (or the SharedKey and algorithm, HMAC-SHA1 or SHA-256, that"
        " X-Twilio-Webhooks-Signature-Settings names); JSON bodies: the URL with bodySHA256,"
        " then the body's SHA-256"
    ),
    replay_protection=(
        "none signed (no timestamp or nonce): a replayed message has the same event id,"
        " which the router drops"
    ),
)


PUBLIC_URL_ENV = "SWITCHBOARD_PUBLIC_URL"
"""Where egress reads the public base URL of replies' default ``StatusCallback``: the
service gives its builders ``adapters.egress.EgressEnviron``, which holds the resolved
``[http] public_url`` there (the file's value, or this variable's when it is set)."""


def with_query(url: str, name: str, value: str) -> str:
    """``url`` with ``name=value`` added to its query (its own query and fragment kept
    as written: Twilio signs the URL as we give it)."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode({name: value})
    return parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra).geturl()


def status_callback(
    config: ChannelsConfig, number: str, outbound_id: str, public_url: str | None
) -> str | None:
    """The ``StatusCallback`` of a reply from ``number``: the number's own, else
    ``status_callback_url``, else the public base URL + ``/webhooks/twilio/status``; with
    ``outbound_id`` in its query, so that its statuses name our message. None: no URL."""
    found = find_endpoint(config.twilio.numbers, number, "number")
    base = (found.status_callback_url if found else None) or config.twilio.status_callback_url
    if base is None and public_url:
        base = public_url.rstrip("/") + STATUS_PATH
    return None if base is None else with_query(base, OUTBOUND_ID, outbound_id)


def geo_action(location: Location) -> str:
    """A WhatsApp location as Twilio's ``PersistentAction``: ``geo:{lat},{lon}|{label}``
    (twilio.com/docs/whatsapp/message-features, location messages)."""
    label = (location.name or location.address or "").replace("|", " ").strip()
    point = f"geo:{location.latitude},{location.longitude}"
    return f"{point}|{label}" if label else point


def provider_consent(opt_out_type: str | None) -> Consent | None:
    """The consent Twilio's ``OptOutType`` says (None: absent, ``HELP`` or unknown)."""
    return OPT_OUT_TYPES.get((opt_out_type or "").strip().upper())


def signature_settings(header: str | None) -> tuple[str | None, str]:
    """What ``X-Twilio-Webhooks-Signature-Settings`` says: (the SharedKey's id, the
    algorithm). Without the header (or with it empty) Twilio signed with the Auth Token and
    HMAC-SHA1: (None, ``HMAC_SHA1``). With it, with the SharedKey it names (``""``: none)
    and the algorithm it names (``HMAC_SHA1`` when none), as twilio-python reads it."""
    if not header or not header.strip():
        return None, "HMAC_SHA1"
    key, algorithm = "", "HMAC_SHA1"
    for part in header.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not value:
            continue
        if name == "key" and not key:
            key = value
        elif name == "algorithm":
            algorithm = value.upper()
    return key, algorithm


def signing_secret(
    config: TwilioConfig, environ: Mapping[str, str], settings_header: str | None
) -> tuple[str, str]:
    """The secret and algorithm Twilio signed a request with (``signature_settings``): the
    Auth Token's, or the secret of the SharedKey the header names, which must be one of
    ``twilio.shared_keys`` (``SignatureRejected``, 403, when it is not: no other secret
    can have signed it). ``SecretMissing`` when the secret's variable is unset."""
    key, algorithm = signature_settings(settings_header)
    if key is None:
        return resolve_secret(config.auth_token_env, environ), algorithm
    for shared in config.shared_keys:
        if shared.key == key:
            return resolve_secret(shared.secret_env, environ), algorithm
    raise SignatureRejected(
        f"signed with a SharedKey ({SIGNATURE_SETTINGS_HEADER}) that twilio.shared_keys"
        " does not name"
    )


def compute_signature(
    token: str, url: str, params: Sequence[tuple[str, str]], algorithm: str = "HMAC_SHA1"
) -> str:
    """Twilio's request signature of ``url`` and POST ``params``."""
    return _signed(token, url, signed_params(params), algorithm)


def signed_params(params: Sequence[tuple[str, str]]) -> str:
    """What Twilio's signature covers of POST ``params``: each distinct (name, value) pair,
    sorted by name and then value, concatenated. The same for every URL a request may have
    been signed for: made once per request."""
    return "".join([name + value for name, value in sorted(set(params))])


def _signed(token: str, url: str, signed: str, algorithm: str) -> str:
    digest = _DIGESTS.get(algorithm)
    if digest is None:
        raise SignatureRejected(f"unsupported signature algorithm {algorithm!r}")
    # hmac.digest: OpenSSL's one-shot, with no HMAC object made per candidate URL
    mac = hmac.digest(token.encode(), (url + signed).encode(), digest)
    return base64.b64encode(mac).decode()


@functools.lru_cache(maxsize=4096)
def _port_variants(url: str) -> tuple[str, ...]:
    """The URL as given, without its port and with the scheme's default port, each also
    without a ``#`` fragment: the forms twilio-python's validator accepts, and connection
    overrides (``#rc=3``) that never reach us."""
    forms = [url]
    parts = urllib.parse.urlsplit(url)
    if parts.fragment:
        forms.append(parts._replace(fragment="").geturl())
    out: list[str] = []
    for form in forms:
        out.append(form)
        split = urllib.parse.urlsplit(form)
        try:
            port = split.port
        except ValueError:
            continue
        # The host as written (``hostname`` lowercases it): twilio-python's variants keep it.
        netloc = split.netloc.rpartition("@")[2]
        host = (
            netloc[: netloc.find("]") + 1] if netloc.startswith("[") else netloc.partition(":")[0]
        )
        default = 443 if split.scheme == "https" else 80
        out.append(split._replace(netloc=host).geturl())
        out.append(split._replace(netloc=f"{host}:{port or default}").geturl())
    return tuple(dict.fromkeys(out))


def configured_urls(config: ChannelsConfig) -> list[str]:
    """Every URL the configuration says Twilio calls us on, each once."""
    twilio = config.twilio
    urls = [*twilio.webhook_urls]
    if twilio.status_callback_url:
        urls.append(twilio.status_callback_url)
    for number in twilio.numbers:
        urls += [u for u in (number.webhook_url, number.status_callback_url) if u]
    return list(dict.fromkeys(urls))


def served_paths(config: ChannelsConfig) -> list[str]:
    """The routes Twilio's webhooks arrive on: ours, and each configured URL's path."""
    paths = [urllib.parse.urlsplit(url).path for url in configured_urls(config)]
    return list(dict.fromkeys([SMS_PATH, STATUS_PATH, *paths]))


def signature_urls(
    config: ChannelsConfig, public_url: str | None, request_url: str, raw_path: str
) -> list[str]:
    """The URLs Twilio may have signed for a request on ``raw_path`` (path and query as
    received): each configured URL with that path, with the query that arrived (the
    ``outbound_id`` a reply's callback carries, a JSON body's ``bodySHA256``), or as
    configured when none arrived (a proxy that drops it); then the public base URL + path
    + query, else the URL we saw. With a query, configured URLs differing only in theirs
    give one candidate: many numbers on one path cost one signature check, not one each."""
    path, _, query = raw_path.partition("?")
    urls: list[str] = []
    for url, parts in _urls_on_path(config, path):
        urls.append(parts._replace(query=query, fragment="").geturl() if query else url)
    urls.append(public_url.rstrip("/") + raw_path if public_url else request_url)
    return list(dict.fromkeys(urls))


class _UrlIndex:
    """The configured URLs by path, for the configuration last asked about: built once per
    configuration version, not once per request (a platform may have thousands of numbers)."""

    config: ChannelsConfig | None = None
    by_path: dict[str, list[tuple[str, urllib.parse.SplitResult]]] = {}


def _urls_on_path(config: ChannelsConfig, path: str) -> list[tuple[str, urllib.parse.SplitResult]]:
    if _UrlIndex.config is not config:
        by_path: dict[str, list[tuple[str, urllib.parse.SplitResult]]] = {}
        for url in configured_urls(config):
            parts = urllib.parse.urlsplit(url)
            by_path.setdefault(parts.path, []).append((url, parts))
        _UrlIndex.by_path, _UrlIndex.config = by_path, config
    return _UrlIndex.by_path.get(path, [])


def is_configured_path(config: ChannelsConfig, path: str) -> bool:
    """Whether a URL of the configuration has this path (one lookup in the cached index)."""
    return bool(_urls_on_path(config, path))


def signature_url(public_url: str | None, request_url: str, path_qs: str) -> str:
    """The URL Twilio signed without configured URLs: the public base URL + our path and
    query, else what we saw."""
    if public_url:
        return public_url.rstrip("/") + path_qs
    return request_url


def verified_url(
    token: str,
    urls: Sequence[str],
    params: Sequence[tuple[str, str]],
    signature: str | None,
    algorithm: str = "HMAC_SHA1",
) -> str:
    """The one of ``urls`` Twilio signed with ``params``; ``SignatureRejected`` (401 when
    missing, 403 when no URL matches)."""
    if not signature:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header", status=401)
    signed = signed_params(params)
    for url in urls:
        for candidate in _port_variants(url):
            if constant_time_equal(_signed(token, candidate, signed, algorithm), signature):
                return url
    raise SignatureRejected()


def verify_signature(
    token: str,
    url: str,
    params: Sequence[tuple[str, str]],
    signature: str | None,
    algorithm: str = "HMAC_SHA1",
) -> None:
    """Raise ``SignatureRejected`` (401 when missing, 403 when wrong) unless Twilio signed it."""
    verified_url(token, [url], params, signature, algorithm)


def query_value(url: str, name: str) -> str | None:
    """The first value of ``name`` in ``url``'s query (None: absent)."""
    query = urllib.parse.urlsplit(url).query
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


def verified_json_url(
    token: str,
    urls: Sequence[str],
    body: bytes,
    signature: str | None,
    algorithm: str = "HMAC_SHA1",
) -> str:
    """The URL Twilio signed for a JSON ``body``: its signature alone (no parameters),
    then ``bodySHA256`` in it against the body's hash (403 when it differs)."""
    signed = verified_url(
        token, [u for u in urls if query_value(u, BODY_HASH) is not None], [], signature, algorithm
    )
    claimed = (query_value(signed, BODY_HASH) or "").strip().lower()
    if not constant_time_equal(hashlib.sha256(body).hexdigest(), claimed):
        raise SignatureRejected("the body does not match the signed bodySHA256")
    return signed


def json_params(body: bytes) -> list[tuple[str, str]]:
    """The parameters of a JSON webhook body: a flat object, as the form would carry them
    (numbers and booleans as text, nested values as their JSON, null left out)."""
    fields = decode_json(body, dict[str, Any], "Twilio JSON webhook")
    if len(fields) > MAX_FORM_FIELDS:
        raise BadRequest(f"JSON webhook of more than {MAX_FORM_FIELDS} fields")
    params: list[tuple[str, str]] = []
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            params.append((name, "true" if value else "false"))
        elif isinstance(value, str):
            params.append((name, value))
        elif isinstance(value, int | float):
            params.append((name, str(value)))
        else:
            params.append((name, msgspec.json.encode(value).decode()))
    return params


def _split_address(address: str) -> tuple[Channel, str]:
    """A Twilio address's channel and its address on it (``whatsapp:+1…`` → WhatsApp)."""
    if address.startswith(WHATSAPP_PREFIX):
        return Channel.WHATSAPP, address[len(WHATSAPP_PREFIX) :]
    prefix, sep, _ = address.partition(":")
    if sep and prefix.isalpha():
        # rcs:, messenger: … : channels we do not carry through Twilio.
        raise Unusable(f"Twilio channel {prefix[:16]!r} is not carried")
    return Channel.SMS, address


def _number(config: ChannelsConfig, number: str) -> TwilioNumber:
    found = find_endpoint(config.twilio.numbers, number, "number")
    if found is None:
        raise unknown_endpoint("this Twilio number")
    return found


def _media_id(url: str) -> str | None:
    """The media SID (``ME…``) of a Twilio media URL: ``…/Messages/{sid}/Media/{sid}``."""
    segments = urllib.parse.urlsplit(url).path.rstrip("/").split("/")
    if len(segments) >= 2 and segments[-2] == "Media" and segments[-1]:
        return segments[-1]
    return None


def _media(form: dict[str, str]) -> tuple[Attachment, ...]:
    raw = (form.get("NumMedia") or "0").strip()
    if not raw.isdigit():
        raise BadRequest("NumMedia is not a number")
    count = int(raw)
    if count > MAX_MEDIA:
        raise BadRequest(f"NumMedia over {MAX_MEDIA}")
    items = []
    for i in range(count):
        url = form.get(f"MediaUrl{i}")
        if not url:
            raise BadRequest(f"MediaUrl{i} missing while NumMedia is {count}")
        items.append(
            Attachment(
                url=url,
                content_type=form.get(f"MediaContentType{i}") or None,
                media_id=_media_id(url),
            )
        )
    return tuple(items)


def _coordinate(form: dict[str, str], name: str) -> float:
    try:
        value = float(form[name])
    except ValueError:
        raise Unusable(f"{name} is not a number") from None
    if not math.isfinite(value):
        raise Unusable(f"{name} is not a finite number")
    return value


def _location(form: dict[str, str]) -> Location | None:
    """A place the customer shared on WhatsApp (``Latitude``, ``Longitude``, ``Address``,
    ``Label``), else None."""
    if "Latitude" not in form or "Longitude" not in form:
        return None
    return Location(
        latitude=_coordinate(form, "Latitude"),
        longitude=_coordinate(form, "Longitude"),
        name=form.get("Label") or None,
        address=form.get("Address") or None,
    )


def parse_webhook(
    params: Sequence[tuple[str, str]],
    config: ChannelsConfig,
    now: float,
    *,
    outbound_id: str | None = None,
) -> list[InboundEvent]:
    """Normalize a verified Twilio form into events (one message, or one status, or none).

    Twilio forms carry no timestamp: ``now`` is the time we received it. ``outbound_id``:
    our id of the message a status reports on, from the signed callback URL's query.
    """
    form = first_values(params)
    sid = form.get("MessageSid") or form.get("SmsSid") or form.get("SmsMessageSid")
    if not sid:
        raise BadRequest("MessageSid missing")
    message_status = (form.get("MessageStatus") or "").strip().lower()
    status = message_status or (form.get("SmsStatus") or "").strip().lower()
    if message_status and message_status not in _INBOUND_STATUSES:
        return _status(form, sid, message_status, config, now, outbound_id)
    if status in _INBOUND_STATUSES or any(name in form for name in _MESSAGE_FIELDS):
        return [_message(form, sid, config, now)]
    if status:
        return _status(form, sid, status, config, now, outbound_id)
    raise BadRequest("neither a message (Body) nor a status callback (MessageStatus)")


def _message(form: dict[str, str], sid: str, config: ChannelsConfig, now: float) -> InboundEvent:
    to, from_ = form.get("To", ""), form.get("From", "")
    if not to or not from_:
        raise BadRequest("From and To are required")
    channel, customer = _split_address(from_)
    _, ours = _split_address(to)
    endpoint = _number(config, ours)
    try:
        location = _location(form)
    except Unusable as unusable:
        raise Unusable(unusable.reason, domain=endpoint.domain) from None
    return message_received(
        config,
        endpoint,
        channel=channel,
        endpoint_key=ours,
        customer_address=customer,
        provider_message_id=sid,
        received_at=now,
        # A quick-reply button's answer has its title in ButtonText (and usually Body).
        text=form.get("Body") or form.get("ButtonText") or "",
        attachments=_media(form),
        reply_window=REPLY_WINDOW_SECONDS if channel is Channel.WHATSAPP else None,
        provider_consent=provider_consent(form.get("OptOutType")),
        location=location,
        in_reply_to=form.get("OriginalRepliedMessageSid") or None,
    )


def _status(
    form: dict[str, str],
    sid: str,
    status: str,
    config: ChannelsConfig,
    now: float,
    outbound_id: str | None,
) -> list[InboundEvent]:
    if status not in STATUS_MAP:
        return []  # a status Twilio does not document (yet): nothing to say about it
    mapped = STATUS_MAP[status]
    if mapped is None:
        return []
    # A status callback reports on a message we sent: our number is the sender.
    from_ = form.get("From", "")
    if not from_:
        # Only a Messaging Service's message can be reported on before a sender is chosen,
        # and we always send from a number: a report on a message someone else sent.
        return []
    channel, ours = _split_address(from_)
    if form.get("ChannelPrefix", "").strip().lower() == "whatsapp":
        channel = Channel.WHATSAPP
    endpoint = _number(config, ours)
    return [
        delivery_status_changed(
            endpoint,
            channel=channel,
            provider_message_id=sid,
            provider_status=status,
            status=mapped,
            received_at=now,
            error_code=form.get("ErrorCode") or None,
            outbound_id=outbound_id,
        )
    ]
