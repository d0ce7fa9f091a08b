"""``/openapi.json``: the OpenAPI 3.1 document of the agent API.

Request and response schemas come from the msgspec types of ``router.api.models``
(``msgspec.json.schema_components``); the operations are listed in ``OPERATIONS``, and
the requests Switchboard itself makes (the HTTP bot protocol) in ``WEBHOOKS``, the
document's ``webhooks``.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from aiohttp import web

from router.api.bots import BOT_OPERATIONS, BOT_WEBHOOKS
from router.api.desktop_operations import DESKTOP_OPERATIONS
from router.api.models import (
    NO_CONTROLS,
    Accepted,
    AcceptIn,
    AgentIn,
    AgentView,
    Caller,
    CloseIn,
    ConversationUpdateIn,
    ConversationView,
    DeclineIn,
    ErrorBody,
    IdentityIn,
    MergeIn,
    OwnerIn,
    PlatformTokenIn,
    PresenceIn,
    QueuesView,
    ReplyAccepted,
    RotateIn,
    SnoozeIn,
    TokenIn,
    TokenSecret,
    TokensPage,
    TokenView,
    TransferIn,
)
from router.api.operation import DOMAIN_PARAMETER, Operation
from router.api.outbound_models import OUTBOUND_OPERATIONS, ReplyIn
from router.api.planning_models import PLANNING_OPERATIONS
from runtime import audit
from runtime.dead_letters import PAGE_MAX, DeadLetterRecord, DeadLettersPage, DeadLetterView
from schemas.limits import AGENT_ID_MAX, CONVERSATION_ID_MAX, CUSTOMER_ID_MAX, DOMAIN_MAX

REF = "#/components/schemas/{name}"

_AGENT = {
    "name": "agent_id",
    "in": "path",
    "required": True,
    "schema": {
        "type": "string",
        "pattern": "^[A-Za-z0-9_.@:-]+$",
        "minLength": 1,
        "maxLength": AGENT_ID_MAX,
    },
}
_CUSTOMER = {
    "name": "customer_id",
    "in": "path",
    "required": True,
    "description": "No control characters",
    "schema": {
        "type": "string",
        "pattern": NO_CONTROLS,
        "minLength": 1,
        "maxLength": CUSTOMER_ID_MAX,
    },
}
_CONVERSATION = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "description": "No control characters",
    "schema": {
        "type": "string",
        "pattern": NO_CONTROLS,
        "minLength": 1,
        "maxLength": CONVERSATION_ID_MAX,
    },
}
_IDENTITY = {
    "name": "identity",
    "in": "path",
    "required": True,
    "description": "`kind:value`: `phone:+14155550100`, `email:ann@example.com`, `user:42` …",
    "schema": {
        "type": "string",
        "pattern": NO_CONTROLS,
        "minLength": 3,
        "maxLength": CUSTOMER_ID_MAX,
    },
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "Most recent assignments and messages in the timeline (each)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}
_STREAM_AGENT = {
    "name": "agent_id",
    "in": "query",
    "required": False,
    "description": "Only events concerning this agent (forced to its own for an agent token)",
    "schema": {
        "type": "string",
        "pattern": "^[A-Za-z0-9_.@:-]+$",
        "minLength": 1,
        "maxLength": AGENT_ID_MAX,
    },
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Resume after this event id (sent by EventSource on reconnection)",
    "schema": {"type": "string", "maxLength": 256},
}


_LETTER = {
    "name": "letter_id",
    "in": "path",
    "required": True,
    "description": "A dead letter's id",
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
}
_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "description": "Only dead letters with a larger id (the previous page's `next_after`)",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
}
_PAGE = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "Dead letters on one page",
    "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 100},
}


_TOKEN = {
    "name": "token_id",
    "in": "path",
    "required": True,
    "description": "A token's id (not its secret)",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{1,32}$"},
}
_TOKEN_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "description": "Only tokens with a larger id (the previous page's `next_after`)",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{1,32}$"},
}
_TOKEN_PAGE = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "Tokens on one page",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
}
_AUDIT_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "description": "Only entries with a larger id (the previous page's `next_after`)",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
}
_AUDIT_PAGE = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "Entries on one page",
    "schema": {"type": "integer", "minimum": 1, "maximum": audit.PAGE_MAX, "default": 100},
}
_ACTION = {
    "name": "action",
    "in": "query",
    "required": False,
    "description": "Only entries of this action (`token.create`, `agent.register`, …)",
    "schema": {"type": "string", "pattern": audit.ACTION_PATTERN, "maxLength": audit.ACTION_MAX},
}
_AUDIT_DOMAIN = {
    "name": "domain",
    "in": "query",
    "required": False,
    "description": "Only this domain's entries (default: every entry, platform-wide ones too)",
    "schema": {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]+$",
        "minLength": 1,
        "maxLength": DOMAIN_MAX,
    },
}


_BASE = "/v1/domains/{domain}"
_CONV = _BASE + "/conversations/{conversation_id}"
_COMMAND_ERRORS = (400, 401, 403, 404, 409, 413, 503)
_CUSTOMER_PATH = _BASE + "/customers/{customer_id}"
_VERDICT = (
    "202 `completed` once the router applied it, `pending` when its verdict did not come "
    "in time; 409 with the router's reason when it refused."
)
_READ_ERRORS = (400, 401, 403, 404, 503)
_WRITE_ERRORS = (400, 401, 403, 404, 413, 503)
_PLATFORM_ERRORS = (400, 401, 403, 503)
_ROTATION = (
    "The token keeps its id, scope and expiry; the answer holds its new secret, shown only "
    "this once. The previous secret stops working at once, or after `grace_seconds`. 409 "
    "for a revoked or an expired token."
)
_REVOCATION = (
    "The token stops working at once, for good (its previous secret too, during a rotation's "
    "grace period). Revoking a revoked token answers 204 again."
)


def _token_operations(
    path: str, params: tuple[dict[str, Any], ...], who: str
) -> tuple[Operation, ...]:
    """The five operations of a set of tokens: a domain's or the platform's."""
    domain = bool(params)
    errors = _WRITE_ERRORS if domain else (400, 401, 403, 413, 503)
    noun = "Domain" if domain else "Platform"
    return (
        Operation(
            "post",
            path,
            f"create{noun}Token",
            f"Create a token and answer its secret, shown only this once ({who})",
            params,
            201,
            TokenSecret,
            TokenIn if domain else PlatformTokenIn,
            errors,
            "Only the token's SHA-256 is stored. Without `expires_in_seconds` or `expires_at` "
            "the token never expires."
            + (" A domain's tokens are `admin` or `agent` ones." if domain else ""),
        ),
        Operation(
            "get",
            path,
            f"list{noun}Tokens",
            f"The tokens, by id, revoked ones included; never a secret ({who})",
            (*params, _TOKEN_AFTER, _TOKEN_PAGE),
            200,
            TokensPage,
            errors=_READ_ERRORS if domain else _PLATFORM_ERRORS,
        ),
        Operation(
            "get",
            path + "/{token_id}",
            f"get{noun}Token",
            f"One token; never its secret ({who})",
            (*params, _TOKEN),
            200,
            TokenView,
            errors=_READ_ERRORS,
        ),
        Operation(
            "post",
            path + "/{token_id}/rotate",
            f"rotate{noun}Token",
            f"A new secret for the token, the previous one revoked ({who})",
            (*params, _TOKEN),
            200,
            TokenSecret,
            RotateIn,
            (400, 401, 403, 404, 409, 413, 503),
            _ROTATION,
        ),
        Operation(
            "delete",
            path + "/{token_id}",
            f"revoke{noun}Token",
            f"Revoke the token ({who})",
            (*params, _TOKEN),
            204,
            None,
            errors=_READ_ERRORS,
            description=_REVOCATION,
        ),
    )


OPERATIONS = (
    Operation(
        "put",
        _BASE + "/agents/{agent_id}",
        "putAgent",
        "Register or update an agent (admin)",
        (DOMAIN_PARAMETER, _AGENT),
        202,
        Accepted,
        AgentIn,
        (400, 401, 403, 404, 413, 503),
    ),
    Operation(
        "get",
        _BASE + "/agents/{agent_id}",
        "getAgent",
        "An agent's state and live figures of the UTC day",
        (DOMAIN_PARAMETER, _AGENT),
        200,
        AgentView,
    ),
    Operation(
        "post",
        _BASE + "/agents/{agent_id}/presence",
        "postPresence",
        "Set an agent's presence (admin, or the agent itself)",
        (DOMAIN_PARAMETER, _AGENT),
        202,
        Accepted,
        PresenceIn,
        (400, 401, 403, 404, 413, 503),
    ),
    Operation(
        "put",
        _BASE + "/customers/{customer_id}/owner",
        "putCustomerOwner",
        "Set a customer's explicit owner (admin): preferred before anyone else",
        (DOMAIN_PARAMETER, _CUSTOMER),
        202,
        Accepted,
        OwnerIn,
        (400, 401, 403, 404, 413, 503),
    ),
    Operation(
        "delete",
        _BASE + "/customers/{customer_id}/owner",
        "deleteCustomerOwner",
        "Clear a customer's explicit owner (admin)",
        (DOMAIN_PARAMETER, _CUSTOMER),
        202,
        Accepted,
    ),
    Operation(
        "get",
        _CONV,
        "getConversation",
        "A conversation: status, owner, queue and timeline (with the messages' text)",
        (DOMAIN_PARAMETER, _CONVERSATION, _LIMIT),
        200,
        ConversationView,
    ),
    Operation(
        "delete",
        _BASE + "/agents/{agent_id}",
        "removeAgent",
        "Offboard an agent (admin): their tokens are revoked, what they held re-routed",
        (DOMAIN_PARAMETER, _AGENT),
        202,
        Accepted,
        None,
        _COMMAND_ERRORS,
        "The agent is nobody's preferred agent from then on. Offers made to them move on, "
        "conversations they own go through their queue's ladder with them passed over, and "
        "those held for them fall back at once. " + _VERDICT,
    ),
    Operation(
        "post",
        _CUSTOMER_PATH + "/identities",
        "linkCustomerIdentity",
        "Link an identity (phone, email, web chat user, PSID …) to the customer (admin)",
        (DOMAIN_PARAMETER, _CUSTOMER),
        202,
        Accepted,
        IdentityIn,
        _COMMAND_ERRORS,
        "Messages from the identity then belong to the customer: same preferred agent, owner "
        "and affinity on every channel. An identity that is a customer with a history of "
        "its own is merged into this one (`customer.merged`). Linking an identity already "
        "linked here changes nothing; one linked to another customer is refused (409 "
        "`identity_linked_to_another_customer`). " + _VERDICT,
    ),
    Operation(
        "delete",
        _CUSTOMER_PATH + "/identities/{identity}",
        "unlinkCustomerIdentity",
        "Unlink an identity from the customer (admin)",
        (DOMAIN_PARAMETER, _CUSTOMER, _IDENTITY),
        202,
        Accepted,
        None,
        _COMMAND_ERRORS,
        "Its next conversation starts a customer of its own; open ones finish as they are. "
        "409 `primary_identity` for the customer's own id. " + _VERDICT,
    ),
    Operation(
        "post",
        _CUSTOMER_PATH + "/merge",
        "mergeCustomers",
        "Merge another customer into this one: the same person (admin)",
        (DOMAIN_PARAMETER, _CUSTOMER),
        202,
        Accepted,
        MergeIn,
        _COMMAND_ERRORS,
        "Identities, explicit owner (this customer's first), last agent (the more recent), "
        "affinity and open conversations move here; `customer.merged` on the routing topic "
        "tells other systems. Merging the same person twice changes nothing. " + _VERDICT,
    ),
    Operation(
        "post",
        _CONV + "/snooze",
        "snoozeConversation",
        "Put a conversation you own aside until a time: its slot is free meanwhile",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        SnoozeIn,
        _COMMAND_ERRORS,
        "It comes back to its owner at `until` (through routing, with them preferred, when "
        "they cannot take it then), or earlier when the customer writes; it does not close "
        "for inactivity meanwhile. 409 `not_owner`, `not_owned`, `until_not_in_future`, "
        "`until_too_far` (over 90 days). " + _VERDICT,
    ),
    Operation(
        "patch",
        _CONV,
        "updateConversation",
        "Set a conversation's priority, required skills, language or attributes",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        ConversationUpdateIn,
        _COMMAND_ERRORS,
        "Its owner or an admin. Routing uses it at once: a waiting conversation is re-ranked "
        "by its priority, and only agents with its required skills are offered it (its "
        "preferred agent without them is not waited for). `conversation.updated` carries the "
        "whole context. " + _VERDICT,
    ),
    Operation(
        "post",
        _CONV + "/decline",
        "declineOffer",
        "Turn down an offer made to you: it moves on at once, not counted as a miss",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        DeclineIn,
        _COMMAND_ERRORS,
        "409 `not_offered_to_agent` unless the conversation is offered to the agent. " + _VERDICT,
    ),
    Operation(
        "post",
        _CONV + "/accept",
        "acceptConversation",
        "Accept an offer, or pick up a waiting or overflowed conversation",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        AcceptIn,
        _COMMAND_ERRORS,
        "202 `completed` once the router applied it, `pending` when its verdict did not "
        "come in time; 409 with the router's reason when it refused.",
    ),
    Operation(
        "post",
        _CONV + "/close",
        "closeConversation",
        "Close a conversation (its owner, or an admin)",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        CloseIn,
        _COMMAND_ERRORS,
        "Same verdicts as accept.",
    ),
    Operation(
        "post",
        _CONV + "/transfer",
        "transferConversation",
        "Transfer to an agent or a queue (its owner, or an admin)",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        TransferIn,
        _COMMAND_ERRORS,
        "Same verdicts as accept.",
    ),
    Operation(
        "post",
        _CONV + "/reply",
        "replyToConversation",
        "Reply to the customer on the conversation's channel (its owner, or an admin)",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        ReplyAccepted,
        ReplyIn,
        _COMMAND_ERRORS,
        "Answered at once; the delivery status shows in the conversation's timeline. 409 "
        "`conversation_closed`, `not_owner`, `bot_owned` (a bot owns it: take it over "
        "first, `takeover`). Once the channel's free-form window (24 h after "
        "the customer's last message) has closed: WhatsApp takes only a `template` (409 "
        "`reply_window_closed` without one); Messenger and Instagram take a reply up to 7 "
        "days after it, sent with Meta's `HUMAN_AGENT` tag, and refuse later ones (409 "
        "`reply_window_closed`). 400 `unknown_template`, or the template's wrong parameters.",
    ),
    Operation(
        "get",
        _BASE + "/queues",
        "getQueues",
        "Each queue's waiting conversations, oldest wait, agents online and estimated wait",
        (DOMAIN_PARAMETER,),
        200,
        QueuesView,
    ),
    Operation(
        "get",
        _BASE + "/stream",
        "streamRoutingEvents",
        "Server-Sent Events of the domain's routing events",
        (DOMAIN_PARAMETER, _STREAM_AGENT, _LAST_EVENT_ID),
        200,
        None,
        None,
        (400, 401, 403, 404, 503),
        "`id:` is the event id, `event:` its type, `data:` the JSON payload (see the "
        "`conversations.routing` schema). Resume with `Last-Event-ID`; a comment says so "
        "when that id is older than the buffer, which is then replayed whole. A heartbeat "
        "comment comes every 15 s.",
    ),
    Operation(
        "get",
        _BASE + "/dead-letters",
        "listDeadLetters",
        "Records of the domain the router set aside, oldest first (admin)",
        (DOMAIN_PARAMETER, _AFTER, _PAGE),
        200,
        DeadLettersPage,
    ),
    Operation(
        "get",
        _BASE + "/dead-letters/{letter_id}",
        "getDeadLetter",
        "A dead letter with its record (admin)",
        (DOMAIN_PARAMETER, _LETTER),
        200,
        DeadLetterRecord,
        description="`value` and `key` are text when they are UTF-8, else base64 "
        "(`value_base64`, `key_base64`).",
    ),
    Operation(
        "post",
        _BASE + "/dead-letters/{letter_id}/redrive",
        "redriveDeadLetter",
        "Publish a dead letter's record again to the topic it came from (admin)",
        (DOMAIN_PARAMETER, _LETTER),
        202,
        DeadLetterView,
        errors=(400, 401, 403, 404, 409, 503),
        description="For after the cause is fixed: the router applies the record like any "
        "other, or sets it aside again as a new dead letter. 409 for a letter with a "
        "`source`: a provider's request that an adapter set aside, kept for inspection.",
    ),
    *_token_operations(_BASE + "/tokens", (DOMAIN_PARAMETER,), "the domain's admin, or platform"),
    *_token_operations("/v1/tokens", (), "platform"),
    Operation(
        "get",
        _BASE + "/me",
        "getCaller",
        "Who the token is: its scope, its agent (an agent token) and its id",
        (DOMAIN_PARAMETER,),
        200,
        Caller,
        description="Any valid token of the domain (or a platform token). An agent desktop "
        "signs in with the token alone and learns its agent id here.",
    ),
    Operation(
        "get",
        _BASE + "/audit",
        "listDomainAudit",
        "The domain's audit log, oldest first (admin)",
        (DOMAIN_PARAMETER, _AUDIT_AFTER, _AUDIT_PAGE, _ACTION),
        200,
        audit.AuditPage,
        description="One entry per administrative action on the domain: tokens, agents, "
        "customer owners, dead-letter re-drives, configuration. `detail` holds ids, counts "
        "and settings, never a secret or personal data.",
    ),
    Operation(
        "get",
        "/v1/audit",
        "listAudit",
        "Every domain's audit log and the platform's, oldest first (platform)",
        (_AUDIT_AFTER, _AUDIT_PAGE, _ACTION, _AUDIT_DOMAIN),
        200,
        audit.AuditPage,
        errors=_PLATFORM_ERRORS,
    ),
    *BOT_OPERATIONS,
    *DESKTOP_OPERATIONS,
    *OUTBOUND_OPERATIONS,
    *PLANNING_OPERATIONS,
)
WEBHOOKS = BOT_WEBHOOKS
"""Requests Switchboard makes to the business's services (``path`` is the webhook's
name): ``webhooks`` of the document."""


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(type_: type) -> dict[str, Any]:
    return {"$ref": REF.format(name=type_.__name__)}


_REASONS = {
    400: "Bad request: invalid path, query or body",
    401: "Missing, unknown or revoked bearer token",
    403: "The token may not do this (scope, agent or domain)",
    404: "Unknown domain, agent, conversation or dead letter",
    409: "The router, the conversation's state or the dead letter refused the action;"
    " `error` says why",
    412: "`If-Match` names a version that is no longer the current one: read it again",
    413: "Body too large",
    415: "The body has a Content-Encoding: send it uncompressed",
    422: "Understood, but there is nothing to work on (e.g. no measured workload to plan from)",
    428: "A change needs `If-Match` with the ETag of the version it was made from",
    429: "This process runs as many long jobs as it may: retry after `Retry-After` seconds",
    503: "Broker or database unavailable: retry later",
}


EXTRA_OPERATIONS: web.AppKey[tuple[Operation, ...]] = web.AppKey("openapi_extra_operations")
"""Operations other packages serve on the same application (the configuration API)."""


@functools.cache
def document(extra: tuple[Operation, ...] = ()) -> dict[str, Any]:
    """The OpenAPI document of ``OPERATIONS`` and the ``extra`` ones."""
    operations = OPERATIONS + extra
    types: list[Any] = [ErrorBody]
    for op in operations + WEBHOOKS:
        types.extend(t for t in (op.ok_type, op.request) if t is not None)
    _, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {}
        if op.ok_status == 204:
            responses["204"] = {"description": "Done: no content"}
        elif op.ok_type is None:
            responses[str(op.ok_status)] = {
                "description": "The event stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        else:
            responses[str(op.ok_status)] = {
                "description": {200: "OK", 201: "Created"}.get(op.ok_status, "Accepted"),
                "content": _json(_ref(op.ok_type)),
            }
        # Any body with a Content-Encoding is refused before it is read.
        for status in sorted({*op.errors, *((415,) if op.request is not None else ())}):
            response: dict[str, Any] = {
                "description": _REASONS[status],
                "content": _json(_ref(ErrorBody)),
            }
            if status == 401:
                response["headers"] = {
                    "WWW-Authenticate": {"schema": {"type": "string"}, "required": True}
                }
            responses[str(status)] = response
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "parameters": list(op.parameters),
            "responses": responses,
        }
        if op.description:
            operation["description"] = op.description
        if op.request is not None:
            operation["requestBody"] = {"required": False, "content": _json(_ref(op.request))}
        for key, value in op.extra.items():  # more responses, other request media types
            known = operation.get(key)
            operation[key] = {**known, **value} if isinstance(known, dict) else value
        paths.setdefault(op.path, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard agent and operations API",
            "version": "1",
            "description": (
                "Agents, conversations, queues and the live routing stream of a routing "
                "domain. Authenticate with `Authorization: Bearer <token>` (see "
                "`switchboard token create`): an admin token acts on its domain, an agent "
                "token as its agent. Times are seconds since the Unix epoch (UTC)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "webhooks": {op.path: {op.method: _webhook(op)} for op in WEBHOOKS},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _webhook(op: Operation) -> dict[str, Any]:
    """A request Switchboard makes: its body is required, its answer is ``op.ok_type``,
    and any other answer fails it (as ``op.description`` says)."""
    assert op.request is not None
    assert op.ok_type is not None
    return {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": op.description,
        "parameters": list(op.parameters),
        "security": [],
        "requestBody": {"required": True, "content": _json(_ref(op.request))},
        "responses": {
            str(op.ok_status): {"description": "What to do", "content": _json(_ref(op.ok_type))},
            "default": {"description": "Anything else fails it (see the description)"},
        },
    }


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app.get(EXTRA_OPERATIONS, ())))
