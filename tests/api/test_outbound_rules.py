"""Business-started messages: the outbound API's rules on their own, without I/O
(``router.api.outbound.draft`` and ``window_refusal``); ``test_outbound`` runs them through
the service."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from router.api.auth import Principal, Scope
from router.api.outbound import Draft, Refusal, Sender, draft, window_refusal
from router.api.outbound_models import DomainOutbound, SendIn
from router.engine import ConversationRecord, ConversationStatus
from runtime.outbound import OutboundConfig
from schemas import Channel, MessageTag

SMS_NUMBER = "+14155550100"
WA_ID = "106540352242922"
PAGE = "104727654986713"
IG = "17841400000000001"
BOT = "acme_bot"
EMAIL = "support@acme.example"
CUSTOMER = "+14155552671"
TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "delivery_update",
        "language": "en_US",
        "channel": "whatsapp",
        "provider_template": "delivery_update_v2",
        "body": "Hi {{1}}, your order {{2}} arrives today. Reply here with any question.",
    },
    {
        "name": "delivery_update",
        "language": "fr",
        "channel": "whatsapp",
        "body": "Bonjour {{1}}, votre commande {{2}} arrive aujourd'hui.",
    },
    {
        "name": "spring_sale",
        "language": "en",
        "channel": "whatsapp",
        "category": "marketing",
        "body": "Spring sale: {{1}} off everything until Sunday.",
    },
    {
        "name": "reminder",
        "language": "en",
        "channel": "sms",
        "body": "Reminder: your appointment is on {{1}}. Reply here to change it.",
    },
]

_CONFIG = msgspec.convert({"templates": TEMPLATES, "answer_hours": 48}, OutboundConfig)
_ENDPOINTS = DomainOutbound(
    config=_CONFIG,
    endpoints={
        Channel.SMS: frozenset({SMS_NUMBER}),
        Channel.WHATSAPP: frozenset({SMS_NUMBER, WA_ID}),
        Channel.MESSENGER: frozenset({PAGE}),
        Channel.EMAIL: frozenset({EMAIL}),
        Channel.WEBCHAT: frozenset({"webchat"}),
    },
)
NOW = 1_700_000_000.0


def _sender(agent: str | None = None) -> Sender:
    principal = (
        Principal(Scope.ADMIN, "acme")
        if agent is None
        else Principal(Scope.AGENT, "acme", agent_id=agent)
    )
    return Sender("acme", principal, _ENDPOINTS, {"default", "billing"}, NOW)


def _send(**fields: Any) -> SendIn:
    return msgspec.convert({"channel": "sms", "to": CUSTOMER, "text": "hi", **fields}, SendIn)


def _draft(agent: str | None = None, **fields: Any) -> Draft:
    item = draft(0, _send(**fields), _sender(agent))
    assert isinstance(item, Draft), item
    return item


def _refusal(agent: str | None = None, **fields: Any) -> tuple[int, str]:
    refusal = draft(0, _send(**fields), _sender(agent))
    assert isinstance(refusal, Refusal), refusal
    return refusal.status, refusal.reason


def _record(channel: Channel, ends_at: float | None, last: float) -> ConversationRecord:
    return ConversationRecord(
        conversation_id="c1",
        channel=channel,
        endpoint=PAGE,
        customer_address="7001",
        customer_id=f"{channel}:7001",
        conversation_key=f"{channel}:{PAGE}:7001",
        queue="default",
        status=ConversationStatus.CLOSED,
        step="queue",
        waiting_since=last,
        opened_at=last,
        last_customer_message_at=last,
        last_activity_at=last,
        reply_window_ends_at=ends_at,
    )


def _window(item: Draft, record: ConversationRecord | None) -> str | None:
    refusal = window_refusal(item, record, NOW)
    return None if refusal is None else refusal.reason


def test_addresses_and_endpoints_are_spelled_as_the_adapters_spell_them() -> None:
    item = _draft(to=" +1 (415) 555-2671 ", **{"from": "+1 415 555 0100"})
    assert (item.address, item.endpoint, item.customer_id) == (
        CUSTOMER,
        SMS_NUMBER,
        f"sms:{CUSTOMER}",
    )
    mail = _draft(channel="email", to="Ann@Example.COM", subject="Hi")
    assert (mail.address, mail.endpoint, mail.customer_id) == (
        "ann@example.com",
        EMAIL,
        "email:ann@example.com",
    )
    user = _draft(channel="webchat", to="user:42", **{"from": "webchat"})
    assert (user.address, user.customer_id) == (None, "user:42")


def test_a_whatsapp_user_may_be_named_by_their_business_scoped_user_id() -> None:
    bsuid = "US.13491208655302741918"
    item = _draft(channel="whatsapp", to=bsuid, **{"from": WA_ID})
    assert (item.address, item.customer_id) == (bsuid, f"whatsapp:{bsuid}")
    parent = "US.ENT.11815799212886844830"
    assert _draft(channel="whatsapp", to=parent, **{"from": WA_ID}).address == parent
    # Only WhatsApp has them: on SMS it is no address.
    assert _refusal(to=bsuid)[0] == 400
    assert _refusal(channel="whatsapp", to="us.1349", **{"from": WA_ID}) == (
        400,
        "to: a whatsapp address is an E.164 number: + and 7 to 15 digits,"
        " or a business-scoped user id",
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"to": "0415"}, (400, "to: a sms address is an E.164 number: + and 7 to 15 digits")),
        ({"from": "+15550009999"}, (400, "from is not a sms endpoint of this domain")),
        ({"channel": "whatsapp"}, (400, "from is required: the domain has 2 whatsapp endpoints")),
        ({"channel": "telegram"}, (400, "from is required: the domain has 0 telegram endpoints")),
        ({"text": "", "template": {"name": "nope"}}, (400, "unknown_template")),
        (
            {"text": "", "template": {"name": "reminder", "parameters": ["a", "b"]}},
            (400, "template 'reminder' takes 1 parameters, 2 given"),
        ),
        (
            {"text": "", "template": {"name": "reminder", "parameters": ["  "]}},
            (400, "template parameters may not be empty"),
        ),
        (
            {"template": {"name": "reminder", "parameters": ["x"]}},
            (400, "give text or a template, not both"),
        ),
        ({"subject": "Hello"}, (400, "subject is for email only")),
        ({"text": "x" * 1601}, (400, "text is longer than 1600 characters")),
        ({"text": " "}, (400, "a message needs text, a template or attachments")),
        (
            {"answer": {"mode": "sender"}},
            (400, "answer.agent_id is required for mode sender with an admin token"),
        ),
        ({"answer": {"mode": "queue", "queue": "sales"}}, (400, "unknown queue 'sales'")),
        ({"answer": {"mode": "queue"}}, (400, "answer.queue is required for mode queue")),
        ({"answer": {"queue": "billing"}}, (400, "answer.queue is for mode queue")),
    ],
)
def test_a_send_is_refused_before_any_io(fields: dict[str, Any], expected: tuple[int, str]) -> None:
    assert _refusal(**fields) == expected


def test_an_agent_sends_as_itself_and_answers_its_replies_by_default() -> None:
    item = _draft("ann", answer={"expires_in_seconds": 600})
    assert (item.agent_id, item.answer.mode, item.answer.agent_id) == ("ann", "sender", "ann")
    assert item.answer.until == NOW + 600
    assert _refusal("ann", answer={"agent_id": "bob"}) == (
        403,
        "an agent token sends as its own agent",
    )
    queue = _draft("ann", answer={"mode": "queue", "queue": "billing"})
    assert (queue.agent_id, queue.answer.agent_id, queue.answer.queue) == ("ann", None, "billing")
    admin = _draft()
    assert (admin.agent_id, admin.answer.mode) == (None, "last_owner")
    assert admin.answer.until == NOW + 48 * 3600
    named = _draft(answer={"agent_id": "bob"})
    assert (named.agent_id, named.answer.mode, named.answer.agent_id) == ("bob", "sender", "bob")


def test_meta_windows_need_a_human_agent_after_24_hours_and_close_after_7_days() -> None:
    day = 24 * 3600.0
    open_window = _record(Channel.MESSENGER, NOW + 60, NOW - 60)
    yesterday = _record(Channel.MESSENGER, NOW - 60, NOW - day - 60)
    last_week = _record(Channel.MESSENGER, NOW - 6 * day, NOW - 7 * day - 1)
    for record, agent, expected, tag in (
        (open_window, None, None, None),
        (yesterday, "ann", None, MessageTag.HUMAN_AGENT),
        (yesterday, None, "outside_messaging_window", None),
        (last_week, "ann", "outside_messaging_window", None),
        (None, "ann", "outside_messaging_window", None),
    ):
        item = _draft(agent, channel="messenger", to="7001")
        assert _window(item, record) == expected
        assert item.tag is tag


def test_whatsapp_takes_free_form_text_only_while_the_window_is_open() -> None:
    text = _draft(channel="whatsapp", **{"from": WA_ID})
    parameters = ["Ann", "A1"]
    template = _draft(
        channel="whatsapp",
        text="",
        template={"name": "delivery_update", "language": "en-us", "parameters": parameters},
        **{"from": WA_ID},
    )
    closed = _record(Channel.WHATSAPP, NOW - 1, NOW - 24 * 3600 - 1)
    opened = _record(Channel.WHATSAPP, NOW + 1, NOW - 1)
    assert _window(text, closed) == "template_required"
    assert _window(text, None) == "template_required"
    assert _window(text, opened) is None
    assert _window(template, None) is None
    assert template.text == "Hi Ann, your order A1 arrives today. Reply here with any question."
    assert template.template is not None
    assert (template.template.provider_template, template.template.language) == (
        "delivery_update_v2",
        "en-US",
    )


def test_a_template_of_another_language_or_channel_is_unknown() -> None:
    for name, language, channel in (
        ("delivery_update", None, "whatsapp"),  # two languages: which one?
        ("delivery_update", "de", "whatsapp"),
        ("reminder", "en", "whatsapp"),
    ):
        template = {"name": name, "language": language, "parameters": ["a", "b"]}
        refusal = _refusal(channel=channel, text="", template=template, **{"from": WA_ID})
        assert refusal == (400, "unknown_template"), (name, language)
