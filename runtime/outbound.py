"""Business-started messages of one domain: the ``[domains.<name>.outbound]`` section.

The API validates sends against it (templates, the answerer's default window), the
adapters read its consent keywords and egress its send rates. Every field has a default,
so a domain sends notifications out of the box at the providers' documented rates.

Example (TOML)::

    [domains.acme.outbound]
    answer_hours = 72                        # replies go to the named answerer this long
    opt_out_keywords = ["STOP", "UNSUBSCRIBE", "ARRET"]

    [domains.acme.outbound.rates.sms]        # per sending number
    per_second = 1
    burst = 1

    [domains.acme.outbound.domain_rate]      # all the domain's sends together
    per_second = 50

    [[domains.acme.outbound.templates]]
    name = "delivery_update"
    language = "en_US"
    channel = "whatsapp"
    category = "utility"
    provider_template = "delivery_update_v2"  # the name WhatsApp approved
    body = "Hi {{1}}, your order {{2}} arrives today. Reply here with any question."

Consent keywords match a whole message, ignoring case, surrounding spaces and final
punctuation ("Stop", " STOP. ") as carriers and Twilio do: "please stop calling me" is a
message for an agent, not an opt-out.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Annotated

import msgspec

from schemas import Channel, Consent, ConsentScope, TemplateCategory, TemplateUse
from schemas.limits import (
    ANSWER_WINDOW_MAX,
    CHANNEL_TEXT_MAX,
    TEMPLATE_PARAMETERS_MAX,
    TemplateName,
    keyword_form,
)

TEMPLATES_MAX = 500
"""Templates one domain may register."""
TEMPLATE_BODY_MAX = 1024
"""WhatsApp's template body limit (characters)."""
KEYWORDS_MAX = 50
KEYWORD_MAX = 32

DEFAULT_OPT_OUT_KEYWORDS = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "ARRET",
)
"""Twilio's and the CTIA's opt-out keywords, and French ``ARRET`` (also ``ARRÊT``: accents
are ignored)."""
DEFAULT_OPT_IN_KEYWORDS = ("START", "UNSTOP", "OPTIN")
"""Twilio's opt-in keywords without ``YES``: here "yes" answers a reminder, it must reach
an agent."""

_PLACEHOLDER = re.compile(r"\{\{\s*([1-9][0-9]?)\s*\}\}")


CONSENT_TABLES: Mapping[ConsentScope, str] = {
    ConsentScope.ALL: "consents",
    ConsentScope.MARKETING: "marketing_consents",
}
"""The table of each scope's current consents (migration 0030), which the router writes;
readers read both through the view ``scoped_consents``."""

LATEST_CONSENTS = """
WITH t AS (
    SELECT * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::bool[])
        AS t(i, channel, address, customer_id, marketing)
), own AS (
    SELECT t.i, c.scope, c.consent, c.source, c.address, c.customer_id, c.changed_at FROM t
    JOIN scoped_consents c
        ON c.domain = $1 AND c.channel = t.channel AND c.address = t.address
    WHERE c.scope = 'all' OR t.marketing
), profile AS (
    SELECT t.i, t.marketing, coalesce(ci.customer_id, t.customer_id) AS id FROM t
    LEFT JOIN customer_identities ci ON ci.domain = $1 AND ci.identity = t.customer_id
    WHERE t.channel = 'whatsapp'
), named AS (
    SELECT i, marketing, id AS identity FROM profile
    UNION
    SELECT p.i, p.marketing, ci.identity FROM profile p
    JOIN customer_identities ci ON ci.domain = $1 AND ci.customer_id = p.id
), theirs AS (
    SELECT n.i, c.scope, c.consent, c.source, c.address, c.customer_id, c.changed_at
    FROM named n
    JOIN scoped_consents c
        ON c.domain = $1 AND c.channel = 'whatsapp' AND c.customer_id = n.identity
    WHERE c.scope = 'all' OR n.marketing
)
SELECT DISTINCT ON (i, scope) i, scope, consent, source, address, customer_id, changed_at
FROM (SELECT * FROM own UNION ALL SELECT * FROM theirs) x
ORDER BY i, scope, changed_at DESC, address
"""
"""The consent that decides for each business-started message: ``$1`` the domain, ``$2``
to ``$6`` each message's position, channel, address, customer id and whether it is a
marketing template; a row per position and scope that has one (the ``marketing`` scope
only for marketing templates), with the address it was recorded under. An address's own
latest change of each scope decides. On WhatsApp the latest change under any WhatsApp
address of the customer (the customer's id and every identity linked to it) decides,
since a user's number and their business-scoped user id are one account
(``schemas.identity``)."""

OPTED_OUT = f"SELECT DISTINCT i FROM ({LATEST_CONSENTS}) latest WHERE consent = 'opt_out'"  # noqa: S608 -- fixed text
"""Which business-started messages go to an address that opted out (the parameters of
``LATEST_CONSENTS``): refused when the deciding change of either scope is an opt-out, the
``all`` scope for every message, the ``marketing`` scope for marketing templates too.
Checked when a message is asked for (``router.api.outbound``) and again before it is sent
(``adapters.outbound_sender``); the consent API shows the same (``router.api.consents``)."""


def is_marketing(template: TemplateUse | None) -> bool:
    """Whether a business-started message falls under a ``marketing`` consent as well."""
    return template is not None and template.category is TemplateCategory.MARKETING


class Rate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A token bucket: ``per_second`` sends on average, at most ``burst`` at once."""

    per_second: Annotated[float, msgspec.Meta(gt=0, le=100_000)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1


DEFAULT_RATES: dict[Channel, Rate] = {
    Channel.SMS: Rate(per_second=1),  # Twilio: one segment per second per long code
    Channel.WHATSAPP: Rate(per_second=80, burst=80),  # Cloud API default throughput per number
    Channel.MESSENGER: Rate(per_second=300, burst=300),  # Send API, text, per Page
    Channel.INSTAGRAM: Rate(per_second=300, burst=300),  # Send API, text, per account
    Channel.TELEGRAM: Rate(per_second=30, burst=30),  # Bot API: about 30 messages a second
    Channel.EMAIL: Rate(per_second=20, burst=20),  # conservative for a new sending domain
    Channel.WEBCHAT: Rate(per_second=1000, burst=1000),  # our own socket
    Channel.RCS: Rate(per_second=20, burst=20),  # RBM agents: conservative, quota is per project
    Channel.X: Rate(per_second=0.2, burst=10),  # X API v2 DMs: 200 per 15 minutes per user
    Channel.VIBER: Rate(per_second=30, burst=30),  # Vonage Messages API, Viber
}
"""Per sender (number, page, account, bot, address) when the domain sets none."""


class TemplateConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message template the provider approved, registered for the domain."""

    name: TemplateName
    language: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")]
    """As the provider spells it (WhatsApp: ``en_US``, ``fr``)."""
    channel: Channel
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=TEMPLATE_BODY_MAX)]
    """The approved text, placeholders ``{{1}}`` … ``{{n}}``: what the customer reads."""
    category: TemplateCategory = TemplateCategory.UTILITY
    provider_template: TemplateName | None = None
    """The provider's name or id for it (WhatsApp template name, Twilio Content SID
    ``HX…``); ``name`` when unset."""

    def __post_init__(self) -> None:
        numbers = sorted({int(n) for n in _PLACEHOLDER.findall(self.body)})
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(
                f"template {self.name!r}: placeholders must be {{{{1}}}} to {{{{n}}}} without gaps"
            )
        if len(numbers) > TEMPLATE_PARAMETERS_MAX:
            raise ValueError(
                f"template {self.name!r}: at most {TEMPLATE_PARAMETERS_MAX} parameters"
            )
        if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in self.body):
            raise ValueError(f"template {self.name!r}: control characters in the body")

    @property
    def parameter_count(self) -> int:
        return len(set(_PLACEHOLDER.findall(self.body)))


class TemplateRefused(ValueError):
    """A template cannot be filled in as asked (the reason is for the client)."""


def fill_template(template: TemplateConfig, parameters: Sequence[str]) -> tuple[TemplateUse, str]:
    """The template filled with ``parameters``, and the text the customer reads."""
    if len(parameters) != template.parameter_count:
        raise TemplateRefused(
            f"template {template.name!r} takes {template.parameter_count} parameters,"
            f" {len(parameters)} given"
        )
    for value in parameters:
        if not value.strip():
            raise TemplateRefused("template parameters may not be empty")  # WhatsApp refuses them
        if "\n" in value or "\t" in value or "    " in value:
            # WhatsApp refuses new lines, tabs and more than four spaces in a parameter.
            raise TemplateRefused("template parameters may not hold new lines, tabs or 4 spaces")
    text = _PLACEHOLDER.sub(lambda m: parameters[int(m.group(1)) - 1], template.body)
    limit = CHANNEL_TEXT_MAX[template.channel.value]
    if len(text) > limit:
        raise TemplateRefused(f"the filled template is longer than {limit} characters")
    use = TemplateUse(
        name=template.name,
        language=template.language.replace("_", "-"),
        provider_template=template.provider_template or template.name,
        category=template.category,
        parameters=tuple(parameters),
    )
    return use, text


class OutboundConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    templates: Annotated[list[TemplateConfig], msgspec.Meta(max_length=TEMPLATES_MAX)] = []
    """Approved templates: business-started WhatsApp messages, and replies after the
    24 h window, must use one."""
    answer_hours: Annotated[float, msgspec.Meta(gt=0, le=ANSWER_WINDOW_MAX / 3600)] = 72.0
    """Default time replies go to the answerer a send names (then: normal routing)."""
    opt_out_keywords: Annotated[
        tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=KEYWORD_MAX)], ...],
        msgspec.Meta(max_length=KEYWORDS_MAX),
    ] = DEFAULT_OPT_OUT_KEYWORDS
    opt_in_keywords: Annotated[
        tuple[Annotated[str, msgspec.Meta(min_length=1, max_length=KEYWORD_MAX)], ...],
        msgspec.Meta(max_length=KEYWORDS_MAX),
    ] = DEFAULT_OPT_IN_KEYWORDS
    keyword_channels: tuple[Channel, ...] = (Channel.SMS, Channel.WHATSAPP)
    """Channels whose messages are matched against the keywords."""
    rates: dict[Channel, Rate] = {}
    """Per sender and channel; ``DEFAULT_RATES`` for a channel not named."""
    domain_rate: Rate | None = None
    """All the domain's business-started sends together (None: no domain-wide limit)."""

    def __post_init__(self) -> None:
        seen: set[tuple[str, str, Channel]] = set()
        for template in self.templates:
            key = (template.name, template.language.replace("_", "-").lower(), template.channel)
            if key in seen:
                raise ValueError(
                    f"template {template.name!r} ({template.language}, {template.channel})"
                    " is registered twice"
                )
            seen.add(key)
        out = {keyword_form(k) for k in self.opt_out_keywords}
        both = out & {keyword_form(k) for k in self.opt_in_keywords}
        if both:
            raise ValueError(f"keywords both opt out and opt in: {sorted(both)}")

    def rate(self, channel: Channel) -> Rate:
        return self.rates.get(channel) or DEFAULT_RATES[channel]

    def template(self, name: str, language: str | None, channel: Channel) -> TemplateConfig | None:
        """The registered template ``name`` for ``channel`` (in ``language``, when given;
        ``en_US`` and ``en-us`` are one language)."""
        wanted = None if language is None else language.replace("_", "-").lower()
        found = [
            t
            for t in self.templates
            if t.name == name
            and t.channel is channel
            and (wanted is None or t.language.replace("_", "-").lower() == wanted)
        ]
        return found[0] if len(found) == 1 else None

    def consent_of(self, channel: Channel, text: str) -> Consent | None:
        """What a customer's message says about consent (None: nothing)."""
        if channel not in self.keyword_channels or len(text) > KEYWORD_MAX * 2:
            return None
        word = keyword_form(text)
        if not word:
            return None
        out, into = _keyword_sets(self.opt_out_keywords, self.opt_in_keywords)
        if word in out:
            return Consent.OPT_OUT
        if word in into:
            return Consent.OPT_IN
        return None


@functools.lru_cache(maxsize=64)
def _keyword_sets(
    opt_out: tuple[str, ...], opt_in: tuple[str, ...]
) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(map(keyword_form, opt_out)), frozenset(map(keyword_form, opt_in))
