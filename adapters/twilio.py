"""Twilio Programmable Messaging ingress: inbound SMS/MMS (and Twilio WhatsApp), status callbacks.

Twilio posts ``application/x-www-form-urlencoded`` forms. ``X-Twilio-Signature`` is the
base64 HMAC of the full URL Twilio called followed by every POST parameter, sorted by
name, as name+value (repeated values sorted too). The key is the Auth Token; the
algorithm is HMAC-SHA1 unless ``X-Twilio-Webhooks-Signature-Settings`` names another.
Behind a proxy the URL Twilio called is ``SWITCHBOARD_PUBLIC_URL`` + path + query.

A form with ``Body`` (or status ``received``) is a customer message; a form with only
``MessageStatus`` is a status callback for a message we sent.

Consent: with Advanced Opt-Out on the number's Messaging Service, Twilio adds
``OptOutType`` to an incoming message whose whole body is one of the service's keywords:
``STOP`` (an opt-out), ``START`` (an opt-in) or ``HELP`` (neither). The message then
carries that consent (``consent_source = "provider"``): Twilio blocks sends to an
opted-out number whatever our keywords say, so its word wins over the domain's keywords
(``adapters.consent``), which apply to messages without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Sequence

from adapters.base import BadRequest, SignatureRejected, constant_time_equal
from adapters.config import ChannelsConfig, TwilioNumber
from adapters.normalize import (
    delivery_status_changed,
    find_endpoint,
    first_values,
    message_received,
    unknown_endpoint,
)
from schemas import Attachment, Channel, Consent, DeliveryStatus, InboundEvent

SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
WHATSAPP_PREFIX = "whatsapp:"
MAX_MEDIA = 10
"""Twilio delivers at most 10 media items per message."""

_DIGESTS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}

#: Twilio message statuses → ours. Anything else is not a delivery report.
STATUS_MAP = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}
_INBOUND_STATUSES = frozenset({"received", "receiving"})
#: Advanced Opt-Out's ``OptOutType`` → the consent it says (``HELP``: none).
OPT_OUT_TYPES = {"STOP": Consent.OPT_OUT, "START": Consent.OPT_IN}


def provider_consent(opt_out_type: str | None) -> Consent | None:
    """The consent Twilio's ``OptOutType`` says (None: absent, ``HELP`` or unknown)."""
    return OPT_OUT_TYPES.get((opt_out_type or "").strip().upper())


def signature_url(public_url: str | None, request_url: str, path_qs: str) -> str:
    """The URL Twilio signed: the public base URL + our path and query, else what we saw."""
    if public_url:
        return public_url.rstrip("/") + path_qs
    return request_url


def signature_algorithm(settings_header: str | None) -> str:
    """The algorithm named in ``X-Twilio-Webhooks-Signature-Settings``; HMAC_SHA1 without it."""
    for part in (settings_header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip().lower() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def compute_signature(
    token: str, url: str, params: Sequence[tuple[str, str]], algorithm: str = "HMAC_SHA1"
) -> str:
    """Twilio's request signature of ``url`` and POST ``params``."""
    digest = _DIGESTS.get(algorithm)
    if digest is None:
        raise SignatureRejected(f"unsupported signature algorithm {algorithm!r}")
    by_name: dict[str, set[str]] = {}
    for name, value in params:
        by_name.setdefault(name, set()).add(value)
    payload = url + "".join(
        name + value for name in sorted(by_name) for value in sorted(by_name[name])
    )
    mac = hmac.new(token.encode(), payload.encode(), digest).digest()
    return base64.b64encode(mac).decode()


def _port_variants(url: str) -> list[str]:
    """The URL as given, without its port and with the scheme's default port.

    Twilio may sign either form (its SDK accepts both), so we do too.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default = 443 if parts.scheme == "https" else 80
    without = parts._replace(netloc=prefix + host).geturl()
    with_port = parts._replace(netloc=f"{prefix}{host}:{port or default}").geturl()
    return list(dict.fromkeys([url, without, with_port]))


def verify_signature(
    token: str,
    url: str,
    params: Sequence[tuple[str, str]],
    signature: str | None,
    algorithm: str = "HMAC_SHA1",
) -> None:
    """Raise ``SignatureRejected`` (401 when missing, 403 when wrong) unless Twilio signed it."""
    if not signature:
        raise SignatureRejected(f"missing {SIGNATURE_HEADER} header", status=401)
    ok = False
    for candidate in _port_variants(url):
        ok |= constant_time_equal(compute_signature(token, candidate, params, algorithm), signature)
    if not ok:
        raise SignatureRejected()


def _strip_whatsapp(address: str) -> tuple[Channel, str]:
    if address.startswith(WHATSAPP_PREFIX):
        return Channel.WHATSAPP, address[len(WHATSAPP_PREFIX) :]
    return Channel.SMS, address


def _number(config: ChannelsConfig, number: str) -> TwilioNumber:
    found = find_endpoint(config.twilio.numbers, number, "number")
    if found is None:
        raise unknown_endpoint("this Twilio number")
    return found


def _media(form: dict[str, str]) -> tuple[Attachment, ...]:
    raw = form.get("NumMedia", "0") or "0"
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
        items.append(Attachment(url=url, content_type=form.get(f"MediaContentType{i}") or None))
    return tuple(items)


def parse_webhook(
    params: Sequence[tuple[str, str]], config: ChannelsConfig, now: float
) -> list[InboundEvent]:
    """Normalize a verified Twilio form into events (one message, or one status, or none).

    Twilio forms carry no timestamp: ``now`` is the time we received it.
    """
    form = first_values(params)
    sid = form.get("MessageSid") or form.get("SmsSid")
    if not sid:
        raise BadRequest("MessageSid missing")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    to, from_ = form.get("To", ""), form.get("From", "")
    if not to or not from_:
        raise BadRequest("From and To are required")

    if "Body" in form or status in _INBOUND_STATUSES:
        channel, customer = _strip_whatsapp(from_)
        _, ours = _strip_whatsapp(to)
        endpoint = _number(config, ours)
        return [
            message_received(
                config,
                endpoint,
                channel=channel,
                endpoint_key=ours,
                customer_address=customer,
                provider_message_id=sid,
                received_at=now,
                text=form.get("Body", ""),
                attachments=_media(form),
                reply_window=24 * 3600.0 if channel is Channel.WHATSAPP else None,
                provider_consent=provider_consent(form.get("OptOutType")),
            )
        ]

    if not status:
        raise BadRequest("neither a message (Body) nor a status callback (MessageStatus)")
    mapped = STATUS_MAP.get(status)
    if mapped is None:
        return []
    # A status callback reports on a message we sent: our number is the sender.
    channel, ours = _strip_whatsapp(from_)
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
        )
    ]
