"""The agent desktop's operations in the OpenAPI document (``router.api.desktop``).

``router.api.openapi`` lists them with its own.
"""

from __future__ import annotations

from router.api.desktop_models import (
    ATTRIBUTE_FILTERS_MAX,
    CURSOR_MAX,
    HISTORY_LIMIT,
    HISTORY_LIMIT_MAX,
    LIST_LIMIT,
    LIST_LIMIT_MAX,
    MOMENT_MAX,
    STATUS_VALUES,
    ConversationsPage,
    CustomerProfile,
    HistoryPage,
)
from router.api.erasure import Erasure
from router.api.export import EXPORT_LIMIT, EXPORT_LIMIT_MAX, EXPORT_MESSAGES_BUDGET, CustomerExport
from router.api.models import NO_CONTROLS
from router.api.operation import DOMAIN_PARAMETER, Operation, parameter
from schemas import Channel
from schemas.limits import AGENT_ID_MAX, CUSTOMER_ID_MAX, EPOCH_MAX, EVENT_ID_MAX, QUEUE_MAX

_BASE = "/v1/domains/{domain}"
_ERRORS = (400, 401, 403, 404, 503)


_CUSTOMER = parameter(
    "path",
    "customer_id",
    "Any identity of the customer (the profile answers for all of them); no control characters",
    {"type": "string", "pattern": NO_CONTROLS, "minLength": 1, "maxLength": CUSTOMER_ID_MAX},
)
_STATUS = {
    **parameter(
        "query",
        "status",
        "Only these statuses: repeat the parameter or separate with commas; `open` is every "
        "status but `closed`. Default: every status.",
        {
            "type": "array",
            "items": {"type": "string", "enum": list(STATUS_VALUES)},
            "maxItems": len(STATUS_VALUES),
        },
    ),
    "style": "form",
    "explode": True,
}
_MOMENT = {
    "oneOf": [
        {"type": "number", "minimum": 0, "maximum": EPOCH_MAX},
        {"type": "string", "format": "date-time", "maxLength": MOMENT_MAX},
    ]
}
_CURSOR = parameter(
    "query",
    "cursor",
    "The previous page's `next_cursor` (opaque); 400 for one this endpoint did not give",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1, "maxLength": CURSOR_MAX},
)
_LIST_PARAMETERS = (
    DOMAIN_PARAMETER,
    _STATUS,
    parameter(
        "query",
        "queue",
        "Only this queue's",
        {"type": "string", "pattern": NO_CONTROLS, "minLength": 1, "maxLength": QUEUE_MAX},
    ),
    parameter(
        "query",
        "agent_id",
        "Only the ones this agent owns: open ones (closing a conversation ends its owner period)",
        {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.@:-]+$",
            "minLength": 1,
            "maxLength": AGENT_ID_MAX,
        },
    ),
    parameter(
        "query",
        "customer_id",
        "Only this customer's: any identity of the customer's profile, matching all of them",
        {"type": "string", "pattern": NO_CONTROLS, "minLength": 1, "maxLength": CUSTOMER_ID_MAX},
    ),
    parameter(
        "query",
        "channel",
        "Only this channel's",
        {"type": "string", "enum": [str(channel) for channel in Channel]},
    ),
    parameter(
        "query",
        "since",
        "Only the ones opened at or after: epoch seconds, or ISO 8601 (UTC unless it has an "
        "offset), 1970 to 9999",
        _MOMENT,
    ),
    parameter("query", "until", "Only the ones opened before (as `since`)", _MOMENT),
    parameter(
        "query",
        "mine",
        "The calling agent's open conversations: owned or offered to it (an agent token; "
        "400 for any other)",
        {"type": "boolean", "default": False},
    ),
    parameter(
        "query",
        "attribute",
        "Only the ones whose attributes hold `key:value` (repeat for several, at most "
        f"{ATTRIBUTE_FILTERS_MAX}, all must hold)",
        {
            "type": "array",
            "maxItems": ATTRIBUTE_FILTERS_MAX,
            "items": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_.-]{1,64}:[^\\x00-\\x1f\\x7f]{0,256}$",
                "maxLength": 321,
            },
        },
    ),
    _CURSOR,
    parameter(
        "query",
        "limit",
        "Conversations on one page",
        {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT},
    ),
)

_VISIBILITY = (
    "An admin token sees the domain's conversations; an agent token those it owns, is "
    "offered or handled before."
)
_CUSTOMER_ACCESS = (
    "An admin token, or an agent token that may read one of the customer's conversations "
    "(owned, offered or handled before). 404 for a customer never seen."
)


DESKTOP_OPERATIONS = (
    Operation(
        "get",
        _BASE + "/conversations",
        "listConversations",
        "List and search conversations, most recently active first",
        _LIST_PARAMETERS,
        200,
        ConversationsPage,
        errors=_ERRORS,
        description=_VISIBILITY + " Filters combine (all must hold). Paged by `cursor`: a "
        "conversation that changes while you page moves to the top, and is not served twice.",
    ),
    Operation(
        "get",
        _BASE + "/customers/{customer_id}",
        "getCustomer",
        "A customer's profile: identities, owner, last agent, affinity, open conversations",
        (DOMAIN_PARAMETER, _CUSTOMER),
        200,
        CustomerProfile,
        errors=_ERRORS,
        description=_CUSTOMER_ACCESS,
    ),
    Operation(
        "get",
        _BASE + "/customers/{customer_id}/history",
        "getCustomerHistory",
        "A customer's conversations and messages on every channel, newest page first",
        (
            DOMAIN_PARAMETER,
            _CUSTOMER,
            _CURSOR,
            parameter(
                "query",
                "limit",
                "Entries on one page",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": HISTORY_LIMIT_MAX,
                    "default": HISTORY_LIMIT,
                },
            ),
        ),
        200,
        HistoryPage,
        errors=_ERRORS,
        description=_CUSTOMER_ACCESS + " Every identity of the profile, every channel: "
        "conversations opened and closed, bots' hand-offs (what the bot learned), "
        "assignments, messages with their text, attachments and delivery status (a bot's "
        "with its `bot_id`). Oldest first within a page; `next_cursor` pages back in time.",
    ),
    Operation(
        "get",
        _BASE + "/customers/{customer_id}/export",
        "exportCustomer",
        "Everything held about a customer (access and portability), conversations paged",
        (
            DOMAIN_PARAMETER,
            _CUSTOMER,
            _CURSOR,
            parameter(
                "query",
                "limit",
                "Conversations on one page",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": EXPORT_LIMIT_MAX,
                    "default": EXPORT_LIMIT,
                },
            ),
        ),
        200,
        CustomerExport,
        errors=_ERRORS,
        description="An admin token only (403 for an agent token); audited as "
        "`customer.export` with the customer's digest. 404 for a customer never seen. Every "
        "identity of the profile: the customer record, identities, consents and their "
        "changes, the audit entries naming the customer, business-started messages not "
        "answered yet, and the conversations (oldest first, each whole: messages, "
        "assignments, outbound deliveries). A page holds at most `limit` conversations and "
        f"closes early once they hold {EXPORT_MESSAGES_BUDGET} messages; `next_cursor` "
        "continues, and every page repeats the customer's own sections.",
    ),
    Operation(
        "delete",
        _BASE + "/customers/{customer_id}",
        "eraseCustomer",
        "Erase a customer everywhere: tables, the router's memory, `customer.erased`",
        (DOMAIN_PARAMETER, _CUSTOMER),
        200,
        Erasure,
        errors=(400, 401, 403, 413, 503),
        description="An admin token only; audited as `customer.erase` with the customer's "
        "digest. `customer_id` is any identity: the profile it belongs to is erased with "
        "every identity linked to it, and a phone number's identity names the number on "
        "every phone channel. Deleted: conversations, messages, replies and "
        "business-started messages, the profile, identity links, consents and their "
        "changes, the router's replay-log records naming them, dead letters holding one of "
        "their addresses; the router forgets owner, last agent and affinity, ends their "
        "open conversations (their agents' slots free at once) and publishes "
        "`customer.erased`, which names no one. Kept: assignments (agents' work, naming a "
        "conversation id only) and the audit log (digests). 200 with the rows deleted by "
        "table once the router is done; 202 with `status` `pending` when it has not "
        "answered within the command timeout (`GET …/erasures/{erasure_id}` follows it). "
        "Idempotent: someone erased or never seen completes with nothing deleted.",
    ),
    Operation(
        "get",
        _BASE + "/erasures/{erasure_id}",
        "getErasure",
        "An erasure's state: pending or completed, with the rows deleted",
        (
            DOMAIN_PARAMETER,
            parameter(
                "path",
                "erasure_id",
                "The erasure's id (the `erasure_id` of its DELETE's answer)",
                {"type": "string", "minLength": 1, "maxLength": EVENT_ID_MAX},
            ),
        ),
        200,
        Erasure,
        errors=_ERRORS,
        description="An admin token only. It names no one: an erasure keeps what it "
        "deleted, never whom.",
    ),
)
