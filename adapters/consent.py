"""Consent on customer messages: does this message opt the customer out, or back in?

A message says so in one of two ways, and the first that speaks wins:
1. the provider's own signal, set by the provider module while normalizing (Twilio's
   Advanced Opt-Out ``OptOutType``: ``consent_source = "provider"``); the provider
   already acts on it (Twilio blocks sends to an opted-out number), so our keywords
   neither add to it nor contradict it;
2. else the domain's keywords (``[domains.<d>.outbound]`` ``opt_out_keywords`` and
   ``opt_in_keywords``, on the channels of ``keyword_channels``, SMS and WhatsApp by
   default), matched against the whole text as ``OutboundConfig.consent_of`` does: case,
   accents, surrounding spaces and final punctuation are ignored, so "Stop." and "arrêt"
   are opt-outs and "please stop calling me" is a message for an agent
   (``consent_source = "keyword"``).

Webhooks apply it to every request (``adapters.webhooks``), the web chat to every message
(``adapters.webchat_routes``), both before the identity lookup and publishing. The
message is published as any other: the router records the consent and opens no
conversation for a bare keyword (``router.engine.outbound`` rule 4).

A domain that no configuration version names (an endpoint added before its domain) gets
the default keywords: a STOP is honoured before anyone configured it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from runtime.outbound import OutboundConfig
from schemas import ConsentReported, InboundEvent, MessageReceived

DEFAULT_OUTBOUND = OutboundConfig()
KEYWORD_SOURCE = "keyword"


def message_consent(
    message: MessageReceived, outbound: Mapping[str, OutboundConfig]
) -> MessageReceived:
    """``message`` with the consent its domain's keywords give it, unless the provider
    already gave one (the same message when nothing changes)."""
    if message.consent is not None:
        return message
    config = outbound.get(message.domain, DEFAULT_OUTBOUND)
    consent = config.consent_of(message.channel, message.text)
    if consent is None:
        return message
    return msgspec.structs.replace(message, consent=consent, consent_source=KEYWORD_SOURCE)


def with_consent(
    events: Sequence[InboundEvent], outbound: Mapping[str, OutboundConfig]
) -> list[InboundEvent]:
    """``events`` with ``message_consent`` applied to each customer message."""
    return [
        message_consent(event, outbound) if isinstance(event, MessageReceived) else event
        for event in events
    ]


def consents(events: Sequence[InboundEvent]) -> int:
    """How many of ``events`` change a consent (for the request's log line): customer
    messages carrying one, and providers' consent reports."""
    return sum(
        1
        for e in events
        if isinstance(e, ConsentReported)
        or (isinstance(e, MessageReceived) and e.consent is not None)
    )
