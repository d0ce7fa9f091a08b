"""A person and a bot passing a conversation between them, and the bot protocol's document.

Bots own conversations the way people do, one owner at a time (``schemas.bots``); these
commands move a conversation across, answered with the router's verdict
(``run_command``: 202 ``completed``, 409 with the router's reason, 202 ``pending``):

- ``POST …/conversations/{id}/takeover`` ``{"agent_id"?}``: a person takes a conversation
  a bot owns (mid-turn included) and owns it at once, when they could pick it up by hand;
  the bot's later answers are refused. An agent token takes it as itself; an admin token
  names the agent. 409 ``not_bot_owned``, ``unknown_agent``, ``unknown_conversation``, or
  why the agent cannot take it (``offline``, ``away``, ``at_capacity``, ``no_channel``).
- ``POST …/conversations/{id}/handback`` ``{"bot_id"?, "note"?}``: its owner (or an admin)
  hands a conversation back to a bot (the queue's, or ``bot_id``), with a note the bot
  reads in its next ``bot.turn``; the person's slot is free. 409 ``not_owner``,
  ``not_owned`` (not assigned nor idle), ``no_bot`` (none named and the queue has none),
  ``unknown_bot``, ``unknown_conversation``.

Like accept, close and transfer they are not audited: they are an agent's work on a
conversation (the routing topic records them), not administration.

A reply to a conversation a bot owns is refused before anything is sent (409
``bot_owned``, ``router.api.handling``): the person takes it over first.

``BOT_WEBHOOKS`` documents the HTTP bot protocol (``schemas.bot_webhook``) as the
OpenAPI document's ``webhooks``: what ``switchboard adapters`` posts to a bot's webhook (a
turn, ``botTurn``; its hand-off while the customer waits, ``botHandedOff``) and what the
bot answers.
"""

from __future__ import annotations

from aiohttp import web

from router.api.models import NO_CONTROLS, Accepted, HandbackIn, TakeoverIn
from router.api.operation import DOMAIN_PARAMETER, Operation, parameter
from router.api.routes import (
    acting_agent,
    bad_request,
    enter,
    guarded,
    new_event_fields,
    path_value,
    read_json,
    run_command,
)
from schemas import (
    BotTurn,
    ConversationHandbackRequested,
    ConversationHandedOff,
    ConversationTakeoverRequested,
)
from schemas.bot_webhook import SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS, BotWebhookAnswer
from schemas.limits import CONVERSATION_ID_MAX


async def post_takeover(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, TakeoverIn)
    agent_id = acting_agent(principal, body.agent_id) or body.agent_id
    if agent_id is None:
        raise bad_request("agent_id is required with an admin token")
    event = ConversationTakeoverRequested(
        **new_event_fields(domain), conversation_id=conversation_id, agent_id=agent_id
    )
    return await run_command(request, event, agent_id)


async def post_handback(request: web.Request) -> web.Response:
    domain, principal = await enter(request)
    conversation_id = path_value(request, "conversation_id", CONVERSATION_ID_MAX)
    body = await read_json(request, HandbackIn)
    acting = acting_agent(principal, None)
    event = ConversationHandbackRequested(
        **new_event_fields(domain),
        conversation_id=conversation_id,
        agent_id=acting,
        bot_id=body.bot_id,
        note=body.note,
    )
    return await run_command(request, event, acting)


def bot_routes(base: str) -> list[web.RouteDef]:
    conversation = base + "/conversations/{conversation_id}"
    return [
        web.post(conversation + "/takeover", guarded(post_takeover)),
        web.post(conversation + "/handback", guarded(post_handback)),
    ]


# -- the OpenAPI document -----------------------------------------------------------

_CONVERSATION = parameter(
    "path",
    "conversation_id",
    "No control characters",
    {"type": "string", "pattern": NO_CONTROLS, "minLength": 1, "maxLength": CONVERSATION_ID_MAX},
)
_CONV = "/v1/domains/{domain}/conversations/{conversation_id}"
_ERRORS = (400, 401, 403, 404, 409, 413, 503)
_VERDICT = (
    "202 `completed` once the router applied it, `pending` when its verdict did not come "
    "in time; 409 with the router's reason when it refused."
)

BOT_OPERATIONS = (
    Operation(
        "post",
        _CONV + "/takeover",
        "takeOverConversation",
        "Take over a conversation a bot owns: you own it at once",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        TakeoverIn,
        _ERRORS,
        "An agent token takes it as itself; an admin token names `agent_id`. Mid-turn "
        "included: the bot's pending and later answers are refused, never sent. The agent "
        "owns it at once when they could pick it up by hand (online, a free slot on its "
        "channel); `conversation.handed_off` (reason `takeover`, `to_agent_id`) says so. 409 "
        "`not_bot_owned` (no bot owns it), `unknown_agent`, `unknown_conversation`, or why "
        "the agent cannot take it (`offline`, `away`, `at_capacity`, `no_channel`). " + _VERDICT,
    ),
    Operation(
        "post",
        _CONV + "/handback",
        "handBackConversation",
        "Hand a conversation you own back to a bot (its owner, or an admin)",
        (DOMAIN_PARAMETER, _CONVERSATION),
        202,
        Accepted,
        HandbackIn,
        _ERRORS,
        "For a survey, or after hours: the bot of the conversation's queue (or `bot_id`) "
        "owns it from then on and gets a `bot.turn` with the `note`; the person's slot is "
        "free (`conversation.bot_assigned`, reason `handback`). 409 `not_owner`, "
        "`not_owned` (not assigned nor idle), `no_bot` (none named, and the queue has no "
        "bot), `unknown_bot`, `unknown_conversation`. " + _VERDICT,
    ),
)

_SIGNATURE = parameter(
    "header",
    SIGNATURE_HEADER,
    '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the bot\'s secret '
    "(`webhook.secret_env`), when it has one. Reject a `t` more than "
    f"{SIGNATURE_TOLERANCE_SECONDS} s off your clock, and compare the digest in constant time.",
    {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
)

BOT_WEBHOOKS = (
    Operation(
        "post",
        "botTurn",
        "botTurn",
        "A turn for an HTTP bot: answer the customer, hand off, or resolve",
        (_SIGNATURE,),
        200,
        BotWebhookAnswer,
        BotTurn,
        (),
        "What `switchboard adapters` POSTs to the `webhook.url` of a bot of "
        "`[domains.<d>.routing.bots.<bot>.webhook]`: the `bot.turn` routing event of a "
        "conversation the bot owns (the customer wrote, or a person handed it back with a "
        "`note`). Answer `200` with the actions to take, in order, within `webhook.timeout`; "
        "the adapter publishes them on `bots.events` for the bot. Anything else (an error "
        "status, a body that is not such an answer, no answer in time) fails the turn: "
        "people take the conversation (`bot_error`). A bot without a webhook reads "
        "`bot.turn` from `conversations.routing` and publishes on `bots.events` itself. "
        "The same URL also gets the bot's hand-offs (`botHandedOff`): tell the requests "
        "apart by `type`.",
    ),
    Operation(
        "post",
        "botHandedOff",
        "botHandedOff",
        "The bot's hand-off while the customer waits: tell them what to expect",
        (_SIGNATURE,),
        200,
        BotWebhookAnswer,
        ConversationHandedOff,
        (),
        "What `switchboard adapters` POSTs to the same `webhook.url` after the bot handed a "
        "conversation to people, while it waits for a person: the "
        "`conversation.handed_off` routing event (`position` or `opens_at` set; never a "
        "`takeover`, nor a conversation a person has at once), with `position`, "
        "`agents_online`, `expected_wait_seconds`, `opens_at` and `continue_on`. Answer "
        "`200` with `reply` actions telling the customer what to expect, within "
        "`webhook.timeout`: the adapter publishes them as `bot.replied` (no `turn_id`), "
        "and the router sends them until a person has the conversation (later ones are "
        "refused, `not_bot_owner`). `handoff` and `resolve` actions are dropped. Anything "
        "else changes nothing: people have the conversation already, and no `bot.failed` "
        "is published. A bot without a webhook reads `conversation.handed_off` from "
        "`conversations.routing` itself.",
    ),
)
"""The OpenAPI document's ``webhooks`` (``path`` is the webhook's name): requests
Switchboard makes, not operations it serves."""
