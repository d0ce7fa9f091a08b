"""The HTTP bot protocol: what ``adapters.bots`` POSTs to a bot's webhook, and what the bot
answers in the response body.

Request: ``POST <webhook.url>`` with a routing event as JSON, exactly as on
``conversations.routing`` (``BotWebhookRequest``); tell the two kinds apart by ``type``:

- ``bot.turn`` (``BotTurn``): the customer wrote to a conversation the bot owns, or a
  person handed it back. Answer with what to do: ``reply``, ``handoff``, ``resolve``.
- ``conversation.handed_off`` (``ConversationHandedOff``): the bot handed the conversation
  to people and it waits for one (``position`` or ``opens_at`` set; never a ``takeover``).
  Answer with ``reply`` actions telling the customer what to expect (``position``,
  ``expected_wait_seconds``, ``opens_at``, ``continue_on``): the router sends them until a
  person has the conversation. Other actions are dropped.

Both are signed the same way, ``X-Switchboard-Signature: t=<unix seconds>,v1=<hex
HMAC-SHA256 of "<t>.<body>">`` under the bot's secret when it has one (reject a ``t`` more
than 5 minutes off your clock).

Response: ``200`` with ``BotWebhookAnswer`` as JSON: what to do, in order. Anything else
(an error status, a body that is not such an answer, no answer within ``webhook.timeout``)
fails the call. A failed turn hands the conversation to people (``bot_error``); a failed
hand-off call changes nothing (people have the conversation already, and the customer is
told nothing more).

Configuration: ``[domains.<name>.routing.bots.<id>.webhook]`` (``BotWebhook``); a bot
without one reads ``bot.turn`` and ``conversation.handed_off`` from
``conversations.routing`` itself and answers on ``bots.events``.

Example (TOML)::

    [domains.acme.routing.bots.helper.webhook]
    url = "https://bots.example.com/switchboard"
    secret_env = "HELPER_BOT_SECRET"
    timeout = 8
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.bots import Handoff
from schemas.common import Attachments
from schemas.limits import QUICK_REPLIES_MAX, URL_MAX, Code, QuickReply, ReplyText
from schemas.routing import BotTurn, ConversationHandedOff

ACTIONS_MAX = 10
"""Actions one answer may carry."""
SIGNATURE_HEADER = "X-Switchboard-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
WEBHOOK_TIMEOUT_MAX = 120.0
"""Longest a webhook call may take (seconds)."""


class BotWebhook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=8, max_length=URL_MAX)]
    """Where each turn and waiting hand-off is POSTed (``http://`` or ``https://``)."""
    secret_env: str | None = None
    """Environment variable holding the signing secret (``X-Switchboard-Signature``);
    unset: requests are not signed (a bot on a private network)."""
    timeout: Annotated[float, msgspec.Meta(gt=0, le=WEBHOOK_TIMEOUT_MAX)] = 10.0
    """Seconds the bot has to answer one call; then a turn fails (``bot.failed``), a
    hand-off's relay is dropped."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("webhook.url must be an http:// or https:// URL")


class ReplyAction(msgspec.Struct, frozen=True, kw_only=True, tag="reply", tag_field="type"):
    """Send the customer a message (becomes ``bot.replied``)."""

    text: ReplyText = ""
    attachments: Attachments = ()
    quick_replies: Annotated[
        tuple[QuickReply, ...], msgspec.Meta(max_length=QUICK_REPLIES_MAX)
    ] = ()
    progress: bool = False
    """The conversation moved forward: resets the loop guard."""

    def __post_init__(self) -> None:
        if not self.text.strip() and not self.attachments:
            raise ValueError("a reply needs text or attachments")


class HandoffAction(msgspec.Struct, frozen=True, kw_only=True, tag="handoff", tag_field="type"):
    """Hand the conversation to people (becomes ``bot.handoff_requested``)."""

    handoff: Handoff
    text: ReplyText = ""


class ResolveAction(msgspec.Struct, frozen=True, kw_only=True, tag="resolve", tag_field="type"):
    """Close the conversation, done (becomes ``bot.resolved``)."""

    text: ReplyText = ""
    reason: Code = "resolved"


BotAction = ReplyAction | HandoffAction | ResolveAction

BotWebhookRequest = BotTurn | ConversationHandedOff
"""The body of a request to a bot's webhook, told apart by ``type``."""


class BotWebhookAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The body of a bot's ``200`` answer to one request (a turn or a hand-off)."""

    actions: Annotated[tuple[BotAction, ...], msgspec.Meta(min_length=1, max_length=ACTIONS_MAX)]
    """At least one; a hand-off or a resolve ends the bot's part (later actions are
    dropped)."""
