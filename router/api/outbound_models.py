"""Bodies, limits and OpenAPI operations of the business-started messages API
(``router.api.outbound``, ``router.api.outbound_routes``, ``router.api.campaigns``,
``router.api.consents``), and ``DomainOutbound``: what the composition root tells the API
of each domain's senders.

The limits are here, next to the operations, so the document states the numbers the
handlers enforce. Times are seconds since the Unix epoch (UTC), as everywhere in the API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from router.api import models
from router.api.models import NO_CONTROLS, Accepted, AttachmentIn
from router.api.operation import DOMAIN_PARAMETER, Operation, parameter
from runtime.outbound import OutboundConfig
from schemas import AnswerMode, Channel, Consent, ConsentScope
from schemas.limits import (
    ADDRESS_MAX,
    AGENT_ID_MAX,
    ANSWER_WINDOW_MAX,
    CHANNEL_TEXT_MAX,
    CUSTOMER_ID_MAX,
    ENDPOINT_MAX,
    EVENT_ID_MAX,
    LANGUAGE_MAX,
    NAME_MAX,
    QUEUE_MAX,
    REPLY_TEXT_MAX,
    SUBJECT_MAX,
    TEMPLATE_PARAMETERS_MAX,
    Attributes,
    CampaignId,
    ClientKey,
    TemplateName,
    TemplateParameter,
    checked_identifier,
    clean_text,
)

BATCH_MESSAGES_MAX = 10_000
"""Messages of one batch request (JSON ``messages``, CSV rows, NDJSON lines)."""
BATCH_BODY_MAX = 32 * 1024 * 1024
"""Bytes of a batch request's body (``api.max_body_bytes`` bounds the other requests):
10,000 messages of about 3 KB each."""
ATTACHMENTS_MAX = 10
"""Attachments of one message, as for a reply."""
PAGE_LIMIT = 50
"""Entries on a page of campaigns or consent changes, unless ``limit`` says otherwise."""
PAGE_LIMIT_MAX = 500
CURSOR_MAX = 512
"""Characters of a ``cursor``."""

AgentId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=AGENT_ID_MAX, pattern=r"^[A-Za-z0-9_.@:-]+$")
]
QueueName = Annotated[str, msgspec.Meta(min_length=1, max_length=QUEUE_MAX, pattern=NO_CONTROLS)]
TemplateLanguage = Annotated[
    str,
    msgspec.Meta(
        min_length=2, max_length=LANGUAGE_MAX, pattern=r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$"
    ),
]
"""As the provider spells it: ``en_US``, ``en-US`` and ``fr`` (``_`` and ``-`` are one)."""
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


# -- sends ------------------------------------------------------------------------


class TemplateIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A template of the domain's registry (``[domains.<d>.outbound]`` ``templates``)."""

    name: TemplateName
    language: TemplateLanguage | None = None
    """Needed when the template is registered in several languages for the channel."""
    parameters: Annotated[
        tuple[TemplateParameter, ...], msgspec.Meta(max_length=TEMPLATE_PARAMETERS_MAX)
    ] = ()
    """The values of ``{{1}}``, ``{{2}}`` … in order: as many as the template has, none
    empty, none with a new line, a tab or four spaces in a row (WhatsApp's rules)."""


class AnswerIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who answers the customer's replies, until when."""

    mode: AnswerMode | None = None
    """``sender`` (the sending agent), ``queue`` or ``last_owner`` (normal routing: the
    customer's owner or last agent first). Default: ``sender`` when there is a sending
    agent (an agent token, or an admin naming ``agent_id``), else ``last_owner``."""
    agent_id: AgentId | None = None
    """The sending agent: an admin names it (required for ``sender``); an agent token is
    its own agent and may only name itself."""
    queue: QueueName | None = None
    """The queue of ``queue`` mode (a queue of the domain)."""
    expires_in_seconds: Annotated[float, msgspec.Meta(gt=0, le=ANSWER_WINDOW_MAX)] | None = None
    """How long replies go to the answerer (default: the domain's ``answer_hours``, 72 h;
    at most 30 days); later replies take normal routing."""


class SendIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One business-started message: ``text`` or ``template``, and attachments."""

    channel: Channel
    from_: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=ENDPOINT_MAX, pattern=NO_CONTROLS)]
        | None
    ) = msgspec.field(default=None, name="from")
    """Our endpoint: a Twilio number (sms, whatsapp), a WhatsApp phone number id, a page
    id, an Instagram account id, a bot name, an email address, or ``webchat``. May be
    left out when the domain has one endpoint on the channel."""
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=CUSTOMER_ID_MAX, pattern=NO_CONTROLS)]
    """The customer's address: an E.164 number (sms, whatsapp) or a business-scoped user id
    (whatsapp), a PSID (messenger, instagram), a chat id (telegram), an email address, a
    web chat session id or ``user:<id>`` (a signed-in web chat visitor)."""
    text: Annotated[str, msgspec.Meta(max_length=REPLY_TEXT_MAX)] = ""
    template: TemplateIn | None = None
    subject: Annotated[str, msgspec.Meta(max_length=SUBJECT_MAX)] | None = None
    """Email only."""
    attachments: Annotated[tuple[AttachmentIn, ...], msgspec.Meta(max_length=ATTACHMENTS_MAX)] = ()
    attributes: Attributes = {}
    """Context the customer's reply conversation carries (``order_id``, ``campaign`` …)."""
    answer: AnswerIn = AnswerIn()
    client_key: ClientKey | None = None
    """The client's idempotency key (unique in the domain): a send with a key already used
    answers the first send's record (200, ``duplicate``) and sends nothing."""

    def __post_init__(self) -> None:
        checked_identifier("to", self.to, CUSTOMER_ID_MAX)
        if self.from_ is not None:
            checked_identifier("from", self.from_, ENDPOINT_MAX)
        msgspec.structs.force_setattr(self, "text", clean_text(self.text))
        if self.subject is not None:
            msgspec.structs.force_setattr(self, "subject", clean_text(self.subject))


class SendDefaults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields of ``SendIn`` every message of a batch takes unless it gives its own."""

    channel: Channel | msgspec.UnsetType = msgspec.UNSET
    from_: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=ENDPOINT_MAX, pattern=NO_CONTROLS)]
        | msgspec.UnsetType
    ) = msgspec.field(default=msgspec.UNSET, name="from")
    text: Annotated[str, msgspec.Meta(max_length=REPLY_TEXT_MAX)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    template: TemplateIn | msgspec.UnsetType = msgspec.UNSET
    subject: Annotated[str, msgspec.Meta(max_length=SUBJECT_MAX)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    attachments: (
        Annotated[tuple[AttachmentIn, ...], msgspec.Meta(max_length=ATTACHMENTS_MAX)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    attributes: Attributes | msgspec.UnsetType = msgspec.UNSET
    """Merged with each message's own (the message's keys first)."""
    answer: AnswerIn | msgspec.UnsetType = msgspec.UNSET


class CampaignIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The campaign of a batch: an existing one (its id) gets the messages added, a new
    one is created (running). Without an id, a new campaign with a new id."""

    id: CampaignId | None = None
    name: Annotated[str, msgspec.Meta(max_length=NAME_MAX)] = ""

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "name", clean_text(self.name))


class BatchIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Up to 10,000 messages, each as the body of ``POST …/outbound``, with ``defaults``
    for the fields they share. A message that is refused does not fail the others (see
    ``results``)."""

    campaign: CampaignIn = CampaignIn()
    defaults: SendDefaults = SendDefaults()
    messages: Annotated[list[SendIn], msgspec.Meta(max_length=BATCH_MESSAGES_MAX)]


class BatchBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``BatchIn`` as the handler reads it: each message is checked on its own."""

    campaign: CampaignIn = CampaignIn()
    defaults: SendDefaults = SendDefaults()
    messages: Annotated[list[Any], msgspec.Meta(max_length=BATCH_MESSAGES_MAX)]


class ReplyIn(models.ReplyIn, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An agent's reply to the customer: free-form text and attachments, or a template.

    ``router.api.models.ReplyIn`` with ``template`` (here, as templates are; under the same
    name, the reply API's body in ``/openapi.json``)."""

    template: TemplateIn | None = None
    """A template of the domain's registry for the conversation's channel: required on
    WhatsApp once the 24 h window has closed (its filled text is the reply's text)."""


# -- responses --------------------------------------------------------------------


class OutboundAccepted(msgspec.Struct, frozen=True, kw_only=True):
    outbound_id: str
    """The message's id: ``GET …/outbound/{outbound_id}`` follows it."""
    conversation_id: str
    """The conversation a reply of the customer opens."""
    status: str
    """``queued`` (sent at the domain's pace); for a duplicate, the first send's status."""
    duplicate: bool = False
    """The ``client_key`` was used before: this is the first send's record."""


class BatchItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What became of one message of a batch."""

    index: int
    """Its place in the request (from 0; a CSV row or NDJSON line counts from the first
    after the header)."""
    outbound_id: str | None = None
    conversation_id: str | None = None
    status: str | None = None
    duplicate: bool = False
    error: str | None = None
    """Why it was refused (nothing was sent): the reason a single send would answer."""
    http_status: int | None = None
    """The status a single send would have answered for the refusal (400, 403, 409, 503)."""


class BatchAccepted(msgspec.Struct, frozen=True, kw_only=True):
    campaign_id: str
    accepted: int
    duplicates: int
    refused: int
    results: list[BatchItem]
    """One per message, in request order."""


class OutboundView(msgspec.Struct, frozen=True, kw_only=True):
    """One outbound message: a business-started one, or an agent's reply."""

    outbound_id: str
    kind: str
    """``notification`` or ``reply``."""
    status: str
    """``accepted``, ``queued``, ``sending``, ``sent``, ``delivered``, ``read``,
    ``refused``, ``cancelled``, ``undelivered`` or ``failed``."""
    channel: Channel
    endpoint: str | None
    customer_id: str | None
    conversation_id: str
    agent_id: str | None
    campaign_id: str | None
    client_key: str | None
    provider_message_id: str | None
    attempts: int
    error: str | None
    created_at: float
    updated_at: float


class CampaignView(msgspec.Struct, frozen=True, kw_only=True):
    campaign_id: str
    name: str
    status: str
    """``running``, ``paused`` (its messages wait) or ``cancelled``."""
    created_by: str
    """The token id (``bootstrap``, ``local``) that created it."""
    created_at: float
    updated_at: float
    total: int
    """Its messages."""
    counts: dict[str, int]
    """Its messages by status (only statuses it has)."""


class CampaignsPage(msgspec.Struct, frozen=True, kw_only=True):
    campaigns: list[CampaignView]
    """Newest first."""
    next_cursor: str | None


class ConsentIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The customer's consent on the address, as an admin records it (a signed form, a
    call): applied like the customer's own keyword."""

    consent: Consent
    note: Note | None = None
    """Why, as a code (``signed_form``, ``phone_call``): kept in the audit log."""
    scope: ConsentScope = ConsentScope.ALL
    """``all``: every business-started message; ``marketing``: marketing templates alone."""


class ConsentView(msgspec.Struct, frozen=True, kw_only=True):
    channel: Channel
    address: str
    consent: Consent
    """Every business-started message (scope ``all``); ``opt_in`` when nothing was ever
    recorded."""
    source: str | None
    """``keyword``, ``provider`` or ``api``; null when nothing was recorded."""
    customer_id: str | None
    changed_at: float | None
    changed_under: str | None = None
    """The address the deciding change was recorded under: this one, or on WhatsApp
    another address of the same customer (their number, their business-scoped user id:
    one account); null when nothing was recorded."""
    marketing: Consent = Consent.OPT_IN
    """Marketing templates (scope ``marketing``): they go only when both this and
    ``consent`` are ``opt_in``."""
    marketing_source: str | None = None
    marketing_changed_at: float | None = None
    marketing_changed_under: str | None = None


class ConsentChange(msgspec.Struct, frozen=True, kw_only=True):
    change_id: str
    consent: Consent
    scope: ConsentScope
    source: str
    customer_id: str
    message_id: str | None
    """The customer's message that said so (a keyword)."""
    actor: str | None
    """Who recorded it through the API (a token id)."""
    changed_at: float


class ConsentChangesPage(msgspec.Struct, frozen=True, kw_only=True):
    channel: Channel
    address: str
    changes: list[ConsentChange]
    """Newest first."""
    next_cursor: str | None


# -- what the API knows of each domain's senders ------------------------------------


@dataclass(frozen=True, slots=True)
class DomainOutbound:
    """One domain's business-started messages: its endpoints by channel (the composition
    root reads them from the channel configuration), its ``outbound`` section, and the
    rule that names a customer by a channel address as the adapters do."""

    config: OutboundConfig = field(default_factory=OutboundConfig)
    endpoints: Mapping[Channel, frozenset[str]] = field(default_factory=dict)
    """Email addresses in lower case."""
    customer_id: Callable[[str, str], str] = field(
        default=lambda channel, address: f"{channel}:{address}"
    )
    """(channel, address) -> the customer id the channel's adapter puts on the address's
    messages (``sms:+1…``, ``phone:+1…``, ``email:…``)."""
    text_max: Mapping[tuple[Channel, str], int] = field(default_factory=dict)
    """(channel, endpoint) -> the longest text its provider takes, where that is less than
    the channel's own (``schemas.limits.PROVIDER_TEXT_MAX``)."""

    def longest_text(self, channel: Channel, endpoint: str) -> int:
        """The longest text a message from ``endpoint`` on ``channel`` may have."""
        return self.text_max.get((channel, endpoint), CHANNEL_TEXT_MAX[channel])


# -- the OpenAPI operations (``router.api.openapi`` lists them with its own) ---------

_BASE = "/v1/domains/{domain}"
_SEND_ERRORS = (400, 401, 403, 404, 409, 413, 503)


_CAMPAIGN = parameter(
    "path",
    "campaign_id",
    "A campaign's id",
    {"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$", "minLength": 1, "maxLength": 64},
)
_OUTBOUND = parameter(
    "path",
    "outbound_id",
    "An outbound message's id",
    {"type": "string", "pattern": NO_CONTROLS, "minLength": 1, "maxLength": EVENT_ID_MAX},
)
_CHANNEL = parameter(
    "path", "channel", "The channel", {"type": "string", "enum": [str(c) for c in Channel]}
)
_ADDRESS = parameter(
    "path",
    "address",
    "The customer's address on the channel: an E.164 number (sms, whatsapp), a "
    "business-scoped user id (whatsapp), an email address, a PSID, a chat id or a web "
    "chat session id",
    {"type": "string", "pattern": NO_CONTROLS, "minLength": 1, "maxLength": ADDRESS_MAX},
)
_PAGE = parameter(
    "query",
    "limit",
    "Entries on one page",
    {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX, "default": PAGE_LIMIT},
)
_CURSOR = parameter(
    "query",
    "cursor",
    "The previous page's `next_cursor` (opaque); 400 for one this listing did not give",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1, "maxLength": CURSOR_MAX},
)
_CAMPAIGN_QUERY = (
    parameter(
        "query",
        "campaign_id",
        "The batch's campaign (CSV and NDJSON; a JSON body's `campaign` wins): an existing "
        "campaign gets the messages, else a new one is created",
        {"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$", "minLength": 1, "maxLength": 64},
    ),
    parameter(
        "query",
        "campaign_name",
        "A new campaign's name",
        {"type": "string", "maxLength": NAME_MAX},
    ),
)
_RULES = (
    "Refusals (nothing is sent): 400 for an unknown `from`, a `to` that is no address of "
    "the channel, `unknown_template`, a template's wrong parameters, an unknown queue or "
    "agent; 403 when an agent token names another agent; 409 `opted_out` (the address "
    "opted out), `template_required` (WhatsApp outside the customer's 24 h window), "
    "`outside_messaging_window` (Messenger, Instagram: past 24 h, or past 7 days, or not "
    "from a human agent), `unknown_recipient` (Telegram, web chat: the customer never "
    "wrote). A message to Messenger or Instagram between 24 h and 7 days after the "
    "customer's last message goes out with Meta's `HUMAN_AGENT` tag."
)
_CAMPAIGN_CHANGE = (
    "Admin; audited. 409 `campaign_cancelled` to pause or resume a cancelled campaign."
)

OUTBOUND_OPERATIONS = (
    Operation(
        "post",
        _BASE + "/outbound",
        "sendOutbound",
        "Start a conversation: send the customer a notification they can answer",
        (DOMAIN_PARAMETER,),
        202,
        OutboundAccepted,
        SendIn,
        _SEND_ERRORS,
        "An admin, or an agent as itself. Accepted at once and sent at the domain's pace; "
        "the customer's reply opens `conversation_id` and goes to `answer` until it "
        "expires. A `client_key` already used answers 200 with the first send's record "
        "(`duplicate`), and sends nothing. " + _RULES,
        extra={
            "responses": {
                "200": {
                    "description": "A duplicate: the first send with this `client_key`",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/OutboundAccepted"}
                        }
                    },
                }
            }
        },
    ),
    Operation(
        "post",
        _BASE + "/outbound/batch",
        "sendOutboundBatch",
        "Send up to 10,000 messages as one campaign: JSON, CSV or NDJSON (admin)",
        (DOMAIN_PARAMETER, *_CAMPAIGN_QUERY),
        202,
        BatchAccepted,
        BatchIn,
        (400, 401, 403, 404, 409, 413, 503),
        "One result per message, in order: a refused message (the reason a single send "
        "would answer, with its status) does not fail the others. CSV: a header row, "
        "columns named like the JSON fields (`parameters.1`, `parameters.2` … for the "
        "template's, `attributes.<key>`, `answer.mode` …). NDJSON: one message a line. "
        "409 `campaign_cancelled` for a cancelled campaign; 503 when the broker took none "
        "of the messages (none was written). " + _RULES,
        extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}},
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
    ),
    Operation(
        "get",
        _BASE + "/outbound/{outbound_id}",
        "getOutbound",
        "One outbound message: status, error, provider message id (admin, or its agent)",
        (DOMAIN_PARAMETER, _OUTBOUND),
        200,
        OutboundView,
    ),
    Operation(
        "get",
        _BASE + "/campaigns",
        "listCampaigns",
        "The domain's campaigns with their progress, newest first (admin)",
        (
            DOMAIN_PARAMETER,
            _PAGE,
            _CURSOR,
            parameter(
                "query",
                "status",
                "Only campaigns in this status",
                {"type": "string", "enum": ["running", "paused", "cancelled"]},
            ),
        ),
        200,
        CampaignsPage,
    ),
    Operation(
        "get",
        _BASE + "/campaigns/{campaign_id}",
        "getCampaign",
        "A campaign: its status and its messages counted by status (admin)",
        (DOMAIN_PARAMETER, _CAMPAIGN),
        200,
        CampaignView,
    ),
    Operation(
        "post",
        _BASE + "/campaigns/{campaign_id}/pause",
        "pauseCampaign",
        "Pause a campaign: its waiting messages stay queued until it is resumed",
        (DOMAIN_PARAMETER, _CAMPAIGN),
        200,
        CampaignView,
        errors=(400, 401, 403, 404, 409, 503),
        description=_CAMPAIGN_CHANGE,
    ),
    Operation(
        "post",
        _BASE + "/campaigns/{campaign_id}/resume",
        "resumeCampaign",
        "Resume a paused campaign",
        (DOMAIN_PARAMETER, _CAMPAIGN),
        200,
        CampaignView,
        errors=(400, 401, 403, 404, 409, 503),
        description=_CAMPAIGN_CHANGE,
    ),
    Operation(
        "post",
        _BASE + "/campaigns/{campaign_id}/cancel",
        "cancelCampaign",
        "Cancel a campaign: every message not yet taken by the sender is cancelled",
        (DOMAIN_PARAMETER, _CAMPAIGN),
        200,
        CampaignView,
        errors=(400, 401, 403, 404, 503),
        description="Admin; audited. For good: a cancelled campaign takes no more batches.",
    ),
    Operation(
        "get",
        _BASE + "/consents/{channel}/{address}",
        "getConsent",
        "An address's consent to business-started messages (`opt_in` when never recorded)",
        (DOMAIN_PARAMETER, _CHANNEL, _ADDRESS),
        200,
        ConsentView,
    ),
    Operation(
        "put",
        _BASE + "/consents/{channel}/{address}",
        "putConsent",
        "Record an address's consent as the customer gave it another way (admin)",
        (DOMAIN_PARAMETER, _CHANNEL, _ADDRESS),
        202,
        Accepted,
        ConsentIn,
        (400, 401, 403, 404, 409, 413, 503),
        "Applied by the router like the customer's own STOP or START "
        "(`customer.consent_changed`); audited. 202 `completed` once the router applied it, "
        "`pending` when its verdict did not come in time.",
    ),
    Operation(
        "get",
        _BASE + "/consents/{channel}/{address}/changes",
        "listConsentChanges",
        "An address's consent changes, newest first (admin)",
        (DOMAIN_PARAMETER, _CHANNEL, _ADDRESS, _PAGE, _CURSOR),
        200,
        ConsentChangesPage,
    ),
)
