"""Meta conformance (WhatsApp Cloud API, Messenger, Instagram): the webhook signature, the
subscription handshake, and every documented payload shape, against Meta's documentation.

Documentation the fixtures (``tests/adapters/fixtures/meta/``) and rules are taken from:
- signature and handshake: https://developers.facebook.com/docs/graph-api/webhooks/getting-started
  ("Validating Payloads": ``X-Hub-Signature-256: sha256=`` + the hex HMAC-SHA256 of the raw
  body keyed with the app secret; "Verification Requests": ``hub.mode``,
  ``hub.verify_token``, ``hub.challenge``);
- WhatsApp: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
  (text, image, video, audio, document, sticker, location, contacts, interactive, button,
  reaction, order, unsupported, errors, status), with the example values of its parameter
  tables;
  https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids
  (``contacts[].user_id``, ``messages[].from_user_id`` and ``statuses[].recipient_user_id``
  on every webhook since April 2026; ``from`` and ``wa_id`` withheld for a user with a
  username whose number WhatsApp does not share; ``recipient`` instead of ``to`` to send
  to a business-scoped user id);
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/system
  and the platform's changelog of Aug 11, 2026 (``system`` messages ``user_changed_number``
  and ``user_changed_user_id``: the new ``wa_id`` and ``user_id``, the ``previous_user_id``;
  no ``contacts`` array);
  https://developers.facebook.com/documentation/business-messaging/whatsapp/flows/guides/flowswebhooks
  (a completed Flow: ``interactive`` ``nfm_reply`` with its fields in ``response_json``);
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/smb_message_echoes
  (``message_echoes``: what a business sends from the WhatsApp Business app or a linked
  device, for a number also on the Cloud API);
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/user_preferences
  (a user stops or resumes marketing messages: ``category`` ``marketing_messages``,
  ``value`` ``stop`` or ``resume``; ``wa_user_preferences_resume`` is the reference's
  example, ``wa_user_preferences_stop`` the same user stopping, with a business-scoped user
  id beside the number);
- Messenger: https://developers.facebook.com/docs/messenger-platform/reference/webhook-events
  (messages, message_reactions, message_reads, message_deliveries, messaging_postbacks,
  message_echoes, message_edits);
- Instagram: https://developers.facebook.com/docs/instagram-platform/webhooks/examples and
  https://developers.facebook.com/docs/messenger-platform/instagram/features/webhook
  (messages, attachments, message_reactions, messaging_seen, message_edit, deletions).

Meta publishes no signature test vector and ships no webhook validator in an SDK: the
vector below was computed with OpenSSL (``printf '%s' BODY | openssl dgst -sha256 -hmac
meta-app-secret``), independently of our code. Meta signs no timestamp and no nonce, so
there is no stale signature to refuse and no replay to tell from Meta's own retry: a
replayed request is accepted and yields the same event ids (consumers drop the copy).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters import meta, meta_catalog
from adapters.base import BadRequest
from adapters.media import MediaRefused, check_attachments
from schemas import (
    Attachment,
    Channel,
    Consent,
    ConsentReported,
    ConsentScope,
    Contact,
    DeliveryStatus,
    DeliveryStatusChanged,
    HumanReplied,
    IdentityChanged,
    InboundEvent,
    Location,
    MessageChange,
    MessageChanged,
    MessageReceived,
)
from tests.adapters.conftest import CHANNELS, ENVIRON, NOW, Harness
from tests.logcapture import captured_logs, lines_of

PATH = "/webhooks/meta"
SECRET = ENVIRON["META_APP_SECRET"]
FIXTURES = Path(__file__).parent.parent / "fixtures" / "meta"
GRAPH = "https://graph.facebook.com/v23.0"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
CONTEXT_WAMID = "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
OUT_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3MTE5MjNBNzEyQTdBMkIxQTIA"
MEDIA_URL = (
    "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256"
    "&ext=1739321026&hash=ATtKbVHG9IUDnuYBoUYLyR2ZCP3tzwTBALrTD3JuT2E8pQ"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(hook: Harness, body: bytes, header: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[meta.SIGNATURE_HEADER] = header
    resp = await hook.client.post(PATH, data=body, headers=headers)
    return resp.status, await resp.text()


def parsed(name: str) -> list[InboundEvent]:
    out = meta.parse_webhook(fixture(name), CHANNELS, NOW)
    assert out.set_aside == []
    return out.events


def one(name: str) -> Any:
    [event] = parsed(name)
    return event


# -- X-Hub-Signature-256 ------------------------------------------------------------------

VECTOR_BODY = b'{"object":"page","entry":[]}'
VECTOR = "sha256=5dcb51eb590634700c8d9cc1fde4d2d5981ca7bb83f250eb3fb71bfd849057ed"
VECTOR_SHA1 = "sha1=74bc2bbf5ab6f195d514af1b80ddf3a7c883208e"


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body_with_the_app_secret() -> None:
    assert signature(VECTOR_BODY) == VECTOR
    meta.verify_signature(SECRET, VECTOR_BODY, VECTOR)


async def test_a_correctly_signed_request_is_answered_event_received(hook: Harness) -> None:
    assert await post(hook, VECTOR_BODY, VECTOR) == (200, "EVENT_RECEIVED")
    assert hook.signature_failures("meta") == 0


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("", 401),
        ("sha256=", 403),
        ("sha256=" + "0" * 64, 403),
        (VECTOR.replace("5dcb", "5dcc"), 403),
        (VECTOR_SHA1, 403),  # the legacy X-Hub-Signature algorithm: not accepted here
        (VECTOR.removeprefix("sha256="), 403),  # no algorithm prefix
        ("sha512=" + VECTOR.removeprefix("sha256="), 403),
        (signature(VECTOR_BODY, "another-app-secret"), 403),
    ],
    ids=[
        "missing",
        "empty",
        "no-digest",
        "zeros",
        "one-digit-off",
        "sha1",
        "no-prefix",
        "wrong-prefix",
        "other-secret",
    ],
)
async def test_a_request_not_signed_by_meta_is_refused_and_nothing_is_published(
    hook: Harness, header: str | None, status: int
) -> None:
    code, _ = await post(hook, VECTOR_BODY, header)
    assert code == status
    assert hook.publisher.batches == []
    assert hook.publisher.dead_letters == []
    assert hook.signature_failures("meta") == 1


async def test_a_body_changed_after_signing_is_refused(hook: Harness) -> None:
    body = fixture("wa_text")
    header = signature(body)
    code, _ = await post(hook, body.replace(b"another color", b"another colour"), header)
    assert code == 403
    assert hook.publisher.batches == []


async def test_meta_signs_no_timestamp_so_a_replay_is_accepted_with_the_same_event_ids(
    hook: Harness,
) -> None:
    body = fixture("wa_text")
    for _ in range(2):
        assert await post(hook, body, signature(body)) == (200, "EVENT_RECEIVED")
    first, second = hook.publisher.events
    assert first.id == second.id  # downstream drops the copy


# -- the subscription handshake -----------------------------------------------------------


def handshake(**changes: str | None) -> dict[str, str]:
    """Meta's verification request, with ``changes`` (None leaves a parameter out)."""
    query: dict[str, str | None] = {
        "hub.mode": "subscribe",
        "hub.verify_token": ENVIRON["META_VERIFY_TOKEN"],
        "hub.challenge": "1158201444",
        **changes,
    }
    return {k: v for k, v in query.items() if v is not None}


async def test_the_handshake_echoes_the_challenge_as_plain_text(hook: Harness) -> None:
    resp = await hook.client.get(PATH, params=handshake())
    assert (resp.status, await resp.text()) == (200, "1158201444")


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"hub.verify_token": "not-ours"}, 403),
        ({"hub.verify_token": None}, 403),
        ({"hub.challenge": None}, 400),
        ({"hub.mode": "unsubscribe"}, 400),
        ({"hub.mode": None}, 400),
    ],
    ids=["wrong-token", "no-token", "no-challenge", "other-mode", "no-mode"],
)
async def test_a_handshake_without_our_token_or_a_challenge_is_refused(
    hook: Harness, changes: dict[str, str | None], status: int
) -> None:
    resp = await hook.client.get(PATH, params=handshake(**changes))
    assert resp.status == status
    assert "1158201444" not in await resp.text()


# -- every documented shape is accepted ---------------------------------------------------


def kind(event: InboundEvent) -> str:
    match event:
        case MessageReceived():
            return "message"
        case MessageChanged(change=change):
            return change.value
        case DeliveryStatusChanged(status=status, provider_status=word):
            return f"{status.value}:{word}"
        case HumanReplied():
            return "human_replied"
        case IdentityChanged(provider_status=word):
            return f"identity:{word}"
        case ConsentReported(consent=consent, scope=scope):
            return f"{scope.value}:{consent.value}"
    raise AssertionError(event)


EXPECTED: dict[str, list[str]] = {
    "wa_text": ["message"],
    "wa_text_user_id": ["message"],
    "wa_text_username": ["message"],
    "wa_text_reply": ["message"],
    "wa_image": ["message"],
    "wa_video": ["message"],
    "wa_audio_voice": ["message"],
    "wa_document": ["message"],
    "wa_sticker": ["message"],
    "wa_location": ["message"],
    "wa_contacts": ["message"],
    "wa_interactive_button_reply": ["message"],
    "wa_interactive_list_reply": ["message"],
    "wa_button": ["message"],
    "wa_reaction": ["reacted"],
    "wa_reaction_removed": ["unreacted"],
    "wa_edit": ["edited"],
    "wa_revoke": ["deleted"],
    "wa_interactive_flow_reply": ["message"],  # a completed WhatsApp Flow
    "wa_order": ["message"],  # a customer's order from the catalog, for an agent
    "wa_smb_message_echo": ["human_replied"],  # the business answered from the app
    "wa_system_user_changed_number": ["identity:user_changed_number"] * 2,  # number and id
    "wa_system_user_changed_user_id": ["identity:user_changed_user_id"],
    "wa_user_preferences_stop": ["marketing:opt_out"],
    "wa_user_preferences_resume": ["marketing:opt_in"],
    "wa_unsupported": [],  # an edit WhatsApp does not carry: it changes, it says nothing new
    "wa_unsupported_poll": ["message"],  # a poll: someone wrote, without content
    "wa_unsupported_unavailable": ["message"],  # 131060: a first message from an ad
    "wa_errors": [],  # an account-level error, about no message
    "wa_status_sent": ["sent:sent"],
    "wa_status_delivered": ["delivered:delivered"],
    "wa_status_delivered_user_id": ["delivered:delivered"],
    "wa_status_read": ["read:read"],
    "wa_status_played": ["read:played"],
    "wa_status_failed": ["failed:failed", "marketing:opt_out"],  # error 131050: a stop
    "messenger_message": ["message"],
    "messenger_message_reply": ["message"],
    "messenger_message_attachments": ["message"],
    "messenger_message_sticker": ["message"],
    "messenger_message_fallback": ["message"],  # a shared link
    "messenger_message_fallback_unsupported_share": ["message"],  # a share without payload
    "messenger_reaction": ["reacted"],
    "messenger_unreaction": ["unreacted"],
    "messenger_read": [],  # the docs' watermark (2016) is no believable time: nothing read
    "messenger_delivery": ["delivered:delivered"],
    "messenger_postback": ["message"],
    "messenger_echo": [],  # our app's own send (no meta.app_id here: every echo is dropped)
    "messenger_message_edit": ["edited"],
    "instagram_message": ["message"],
    "instagram_message_reply": ["message"],
    "instagram_message_attachments": ["message"],
    "instagram_reaction": ["reacted"],
    "instagram_unreaction": ["unreacted"],
    "instagram_seen": ["read:read"],
    "instagram_message_edit": ["edited"],
    "instagram_message_deleted": ["deleted"],
    "instagram_echo": [],
    "instagram_postback": ["message"],
    "instagram_message_unsupported": ["message"],
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_every_documented_shape_is_accepted(hook: Harness, name: str) -> None:
    body = fixture(name)
    assert await post(hook, body, signature(body)) == (200, "EVENT_RECEIVED")
    assert hook.publisher.dead_letters == []
    assert [kind(e) for e in hook.publisher.events] == EXPECTED[name]


# -- WhatsApp: users with a username, known by their business-scoped user id -------------

BSUID = "US.13491208655302741918"


def test_a_whatsapp_user_whose_number_is_given_is_known_by_it_as_before() -> None:
    with_id: MessageReceived = one("wa_text_user_id")
    before: MessageReceived = one("wa_text")
    assert (with_id.customer_address, with_id.customer_id, with_id.conversation_key) == (
        before.customer_address,
        before.customer_id,
        before.conversation_key,
    )
    assert with_id.customer_id == "phone:+16505551234"  # this domain links phone channels
    # The user id comes along, for the router to link to the number's customer.
    assert (with_id.other_identity, before.other_identity) == (f"whatsapp:{BSUID}", None)


def test_a_malformed_user_id_beside_the_number_is_left_out() -> None:
    payload = json.loads(fixture("wa_text_user_id"))
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["from_user_id"] = "x\u0000y"
    out = meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW)
    [message] = out.events
    assert isinstance(message, MessageReceived)
    assert (message.customer_id, message.other_identity) == ("phone:+16505551234", None)


def test_a_whatsapp_user_without_a_number_is_known_by_their_business_scoped_user_id() -> None:
    message: MessageReceived = one("wa_text_username")
    assert message.customer_address == BSUID
    # No phone number: the identity stays WhatsApp's, though the domain links phone channels.
    assert message.customer_id == f"whatsapp:{BSUID}"
    assert message.conversation_key == f"whatsapp:106540352242922:{BSUID}"
    assert message.other_identity is None
    assert message.text == "Does it come in another color?"


def test_a_reaction_without_a_number_changes_the_message_in_the_users_conversation() -> None:
    payload = json.loads(fixture("wa_reaction"))
    [message] = payload["entry"][0]["changes"][0]["value"]["messages"]
    del message["from"]
    message["from_user_id"] = BSUID
    [change] = meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW).events
    assert isinstance(change, MessageChanged)
    assert (change.customer_address, change.customer_id) == (BSUID, f"whatsapp:{BSUID}")
    assert change.conversation_key == f"whatsapp:106540352242922:{BSUID}"


def _without_number(sender: dict[str, Any]) -> bytes:
    payload = json.loads(fixture("wa_text_username"))
    [message] = payload["entry"][0]["changes"][0]["value"]["messages"]
    del message["from_user_id"]
    message.update(sender)
    second = {**message, "id": "wamid.second", "from_user_id": BSUID}
    payload["entry"][0]["changes"][0]["value"]["messages"].append(second)
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    "sender",
    [
        {},
        {"from": ""},
        {"from_user_id": ""},
        {"from_user_id": "US." + "1" * 129},
        {"from_user_id": "US.1349\u00001"},
        {"from_user_id": "not an id"},
    ],
    ids=["none", "empty-from", "empty-id", "long-id", "nul", "not-an-id"],
)
def test_a_whatsapp_message_naming_no_usable_sender_is_set_aside_alone(
    sender: dict[str, Any],
) -> None:
    out = meta.parse_webhook(_without_number(sender), CHANNELS, NOW)
    [aside] = out.set_aside
    assert "neither its sender's number nor a business-scoped user id" in aside.reason
    [kept] = out.events
    assert isinstance(kept, MessageReceived)
    assert kept.customer_address == BSUID


# -- WhatsApp: a user's new number or id is theirs ------------------------------------------

NEW_BSUID = "US.10000384916574829356"


def _system(name: str, **changes: Any) -> bytes:
    payload = json.loads(fixture(name))
    [message] = payload["entry"][0]["changes"][0]["value"]["messages"]
    for key, value in changes.items():
        if value is None:
            message["system"].pop(key, None)
            message.pop(key, None)
        elif key in ("from", "from_user_id", "id"):
            message[key] = value
        else:
            message["system"][key] = value
    return json.dumps(payload).encode()


def test_a_changed_number_names_the_new_number_and_the_new_id_for_the_customer() -> None:
    number, user_id = parsed("wa_system_user_changed_number")
    assert isinstance(number, IdentityChanged)
    assert isinstance(user_id, IdentityChanged)
    for change in (number, user_id):
        assert (change.customer_address, change.customer_id) == (
            "+16505551234",
            "phone:+16505551234",
        )
        assert change.channel is Channel.WHATSAPP
        assert change.endpoint == "106540352242922"
        assert change.provider_status == "user_changed_number"
        assert change.occurred_at == NOW  # the documented time is not believable at NOW
    # This domain links phone channels: the new number is the customer's on SMS too.
    assert number.identity == "phone:+12195555358"
    assert user_id.identity == f"whatsapp:{NEW_BSUID}"
    assert number.id != user_id.id
    # Meta's retry of the notice yields the same events.
    assert [e.id for e in parsed("wa_system_user_changed_number")] == [number.id, user_id.id]


async def test_the_webhook_line_counts_the_notices_events_and_quotes_nothing(
    hook: Harness,
) -> None:
    body = fixture("wa_system_user_changed_number")
    with captured_logs([]) as buffer:
        assert await post(hook, body, signature(body)) == (200, "EVENT_RECEIVED")
    [line] = [line for line in lines_of(buffer) if line["event"] == "webhook"]
    assert (line["messages"], line["statuses"], line["other_events"]) == (0, 0, 2)
    logged = buffer.getvalue()
    for personal in ("Sheena", "16505551234", "12195555358", NEW_BSUID, BSUID):
        assert personal not in logged


def test_the_notice_carries_neither_the_profile_name_nor_its_prose() -> None:
    for name in ("wa_system_user_changed_number", "wa_system_user_changed_user_id"):
        for event in parsed(name):
            encoded = msgspec.json.encode(event)
            assert b"Sheena" not in encoded
            assert b"changed from" not in encoded


def test_a_changed_id_without_a_number_is_known_by_the_former_id() -> None:
    change: IdentityChanged = one("wa_system_user_changed_user_id")
    assert (change.customer_address, change.customer_id) == (BSUID, f"whatsapp:{BSUID}")
    assert change.identity == f"whatsapp:{NEW_BSUID}"
    assert change.provider_status == "user_changed_user_id"


def test_a_changed_id_with_the_number_is_the_numbers_customer() -> None:
    body = _system("wa_system_user_changed_user_id", **{"from": "16505551234"})
    [change] = meta.parse_webhook(body, CHANNELS, NOW).events
    assert isinstance(change, IdentityChanged)
    assert (change.customer_id, change.identity) == ("phone:+16505551234", f"whatsapp:{NEW_BSUID}")


def test_without_the_previous_id_the_senders_id_names_the_customer() -> None:
    body = _system("wa_system_user_changed_user_id", previous_user_id=None, from_user_id=BSUID)
    [change] = meta.parse_webhook(body, CHANNELS, NOW).events
    assert isinstance(change, IdentityChanged)
    assert change.customer_id == f"whatsapp:{BSUID}"


def test_a_changed_number_without_a_usable_id_still_names_the_new_number() -> None:
    body = _system("wa_system_user_changed_number", user_id="not an id")
    [change] = meta.parse_webhook(body, CHANNELS, NOW).events
    assert isinstance(change, IdentityChanged)
    assert change.identity == "phone:+12195555358"


def test_a_notice_naming_the_address_the_user_has_changes_nothing() -> None:
    body = _system("wa_system_user_changed_number", wa_id="16505551234", user_id=None)
    out = meta.parse_webhook(body, CHANNELS, NOW)
    assert (out.events, out.set_aside) == ([], [])


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"wa_id": None, "user_id": None}, "without a usable new address"),
        ({"wa_id": "", "user_id": "US.1349\u00001"}, "without a usable new address"),
        ({"from": None, "previous_user_id": None}, "neither the user's number nor"),
        ({"from": "", "previous_user_id": "nope"}, "neither the user's number nor"),
        ({"wa_id": "1" * 1000}, "customer address"),
    ],
    ids=["no-new-address", "unusable-new-address", "no-old-address", "unusable-old", "long"],
)
def test_a_notice_that_cannot_be_carried_is_set_aside_alone(
    changes: dict[str, Any], reason: str
) -> None:
    body = _system("wa_system_user_changed_number", **changes)
    payload = json.loads(body)
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"].append(
        json.loads(fixture("wa_text"))["entry"][0]["changes"][0]["value"]["messages"][0]
    )
    out = meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW)
    [aside] = out.set_aside
    assert aside.reason.startswith("entry[0].changes[0].messages[0]: ")
    assert reason in aside.reason
    assert [type(e) for e in out.events] == [MessageReceived]


def test_other_system_notices_are_not_routed() -> None:
    body = _system("wa_system_user_changed_number", type="customer_identity_changed")
    out = meta.parse_webhook(body, CHANNELS, NOW)
    assert (out.events, out.set_aside) == ([], [])


# -- WhatsApp: a completed Flow ---------------------------------------------------------------


def test_a_completed_flow_reaches_an_agent_with_its_fields() -> None:
    form: MessageReceived = one("wa_interactive_flow_reply")
    assert form.text == (
        '[form] appointment_date: 2026-12-08, party_size: 2, services: ["haircut","colour"]'
    )
    assert "appointment-7f3a" not in form.text  # the business's flow token stays out
    assert form.in_reply_to == "gBGGEiRVVgBPAgm7FUgc73noXjo"  # the Flow message it answers


@pytest.mark.parametrize(
    ("response_json", "text"),
    [
        ("not json", "[form] Sent"),
        ("[1, 2]", "[form] Sent"),
        ('{"flow_token": "t"}', "[form]"),
        ("[" * 100_000 + "]" * 100_000, "[form] Sent"),
    ],
    ids=["not-json", "not-an-object", "token-only", "deep"],
)
def test_a_flow_response_that_is_no_object_of_fields_still_reaches_an_agent(
    response_json: str, text: str
) -> None:
    payload = json.loads(fixture("wa_interactive_flow_reply"))
    [message] = payload["entry"][0]["changes"][0]["value"]["messages"]
    message["interactive"]["nfm_reply"]["response_json"] = response_json
    [form] = meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW).events
    assert isinstance(form, MessageReceived)
    assert form.text == text


# -- WhatsApp: an order from the catalog -----------------------------------------------------


def test_an_order_reaches_an_agent_with_its_items_and_text() -> None:
    order: MessageReceived = one("wa_order")
    assert order.text == "[order] 2 x di9ozbzfi4 at 7.99 USD. Love these!"
    assert (order.customer_id, order.provider_message_id) == ("phone:+16505551234", WAMID)
    assert order.reply_window_ends_at is not None  # the customer wrote: a window opens


def _order(**order: Any) -> MessageReceived:
    payload = json.loads(fixture("wa_order"))
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["order"] = order
    [message] = meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW).events
    assert isinstance(message, MessageReceived)
    return message


def test_an_order_of_several_items_lists_each_and_may_have_no_text() -> None:
    items = [
        {"product_retailer_id": "a1", "quantity": 1, "item_price": 10, "currency": "EUR"},
        {"product_retailer_id": "b2", "quantity": 3, "item_price": 2.5, "currency": "EUR"},
    ]
    assert _order(product_items=items).text == "[order] 1 x a1 at 10 EUR, 3 x b2 at 2.5 EUR"
    assert _order(text="Just this", product_items=[]).text == "[order] Just this"
    assert _order().text == "[order]"


def test_an_order_too_long_for_whatsapp_is_cut_at_its_maximum() -> None:
    item = {"product_retailer_id": "x" * 90, "quantity": 1, "item_price": 1, "currency": "USD"}
    text = _order(product_items=[item] * 100).text
    assert len(text) == 4096
    assert text.endswith("…")


# -- unsupported messages: someone wrote what the API does not carry ------------------------


@pytest.mark.parametrize(
    "name",
    [
        "wa_unsupported_poll",
        "wa_unsupported_unavailable",
        "instagram_message_unsupported",
        "messenger_message_fallback_unsupported_share",
    ],
)
def test_an_unsupported_message_reaches_an_agent_without_content(name: str) -> None:
    """A poll, a GIF, or a first message WhatsApp could not make available (131060: often a
    customer tapping an ad to a number also on the WhatsApp Business app): a person wrote
    and waits for an answer, so it is routed, empty, for someone to ask for it again."""
    message: MessageReceived = one(name)
    assert (message.text, message.attachments, message.location) == ("", (), None)
    assert f'"{message.provider_message_id}"'.encode() in fixture(name)
    assert message.reply_window_ends_at is not None  # the customer wrote: a window opens


def test_a_shared_link_keeps_its_url_and_a_share_without_one_is_routed_empty() -> None:
    link: MessageReceived = one("messenger_message_fallback")
    assert link.text == "look at this https://example.com/offer"
    assert [(a.url, a.content_type) for a in link.attachments] == [
        ("https://l.facebook.com/l.php?u=https%3A%2F%2Fexample.com%2Foffer", "fallback")
    ]
    share: MessageReceived = one("messenger_message_fallback_unsupported_share")
    assert (share.text, share.attachments) == ("", ())


@pytest.mark.parametrize("kind", ["edit", "reaction", "pin", "keep_in_chat", "poll_update"])
def test_an_unsupported_change_to_another_message_is_not_routed(kind: str) -> None:
    payload = json.loads(fixture("wa_unsupported"))
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["unsupported"] = {"type": kind}
    assert meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW).events == []


# -- WhatsApp: a person answering from the WhatsApp Business app ---------------------------


def test_an_answer_from_the_whatsapp_business_app_is_a_person_replying() -> None:
    """The echo names the user as their own messages do, so it reaches their conversation
    (a bot that owns it hands it to people), without ``meta.app_id``: no echo of this
    webhook is a Cloud API send."""
    echo: HumanReplied = one("wa_smb_message_echo")
    own: MessageReceived = one("wa_text")
    assert (echo.customer_address, echo.customer_id, echo.conversation_key) == (
        own.customer_address,
        own.customer_id,
        own.conversation_key,
    )
    assert (echo.channel, echo.endpoint) == (Channel.WHATSAPP, "106540352242922")
    assert echo.provider_message_id == WAMID
    assert echo.id != own.id  # the echo's own id, not the customer message's
    assert b"quest" not in msgspec.json.encode(echo)  # the business's text is not carried


def _echo(**changes: Any) -> bytes:
    payload = json.loads(fixture("wa_smb_message_echo"))
    [echo] = payload["entry"][0]["changes"][0]["value"]["message_echoes"]
    for key, value in changes.items():
        if value is None:
            echo.pop(key, None)
        else:
            echo[key] = value
    return json.dumps(payload).encode()


def test_an_echo_naming_the_user_by_their_id_reaches_their_conversation() -> None:
    [echo] = meta.parse_webhook(_echo(to=None, to_user_id=BSUID), CHANNELS, NOW).events
    assert isinstance(echo, HumanReplied)
    assert (echo.customer_id, echo.conversation_key) == (
        f"whatsapp:{BSUID}",
        f"whatsapp:106540352242922:{BSUID}",
    )


@pytest.mark.parametrize("kind", ["edit", "revoke", "reaction"])
def test_an_echo_of_a_change_to_a_sent_message_answers_nothing(kind: str) -> None:
    out = meta.parse_webhook(_echo(type=kind), CHANNELS, NOW)
    assert (out.events, out.set_aside) == ([], [])


def test_an_echo_naming_no_user_is_set_aside_alone() -> None:
    payload = json.loads(_echo(to=None))
    value = payload["entry"][0]["changes"][0]["value"]
    value["message_echoes"].append({**value["message_echoes"][0], "to": "+16505551234"})
    out = meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW)
    [aside] = out.set_aside
    assert aside.reason.startswith("entry[0].changes[0].message_echoes[0]: ")
    assert [type(e) for e in out.events] == [HumanReplied]


def test_echoes_of_a_number_not_configured_are_skipped() -> None:
    payload = json.loads(fixture("wa_smb_message_echo"))
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    with pytest.raises(BadRequest) as refused:
        meta.parse_webhook(json.dumps(payload).encode(), CHANNELS, NOW)
    assert refused.value.status == 404


# -- WhatsApp: every provider reference kept ----------------------------------------------


def test_a_whatsapp_image_keeps_every_reference_meta_sent() -> None:
    message: MessageReceived = one("wa_image")
    assert message.text == "Is this the right one?"
    assert message.attachments == (
        Attachment(
            url=f"{GRAPH}/1003383421387256",  # resolves the id with the number's token
            content_type="image/jpeg",
            media_id="1003383421387256",
            provider_url=MEDIA_URL,
            sha256="6a6d1f3e0c5ef5e7b3c5f3f5e7d1c0a0b9d8c7e6f5a4b3c2d1e0f9a8b7c6d5e4",
            caption="Is this the right one?",
        ),
    )
    assert (message.provider_message_id, message.customer_address) == (WAMID, "+16505551234")


@pytest.mark.parametrize(
    ("name", "content_type", "filename", "caption"),
    [
        ("wa_video", "video/mp4", None, "It makes this noise"),
        ("wa_audio_voice", "audio/ogg; codecs=opus", None, None),
        ("wa_document", "application/pdf", "lucky-shrub-invoice.pdf", "Lucky Shrub Invoice"),
        ("wa_sticker", "image/webp", None, None),
    ],
)
def test_whatsapp_media_keep_their_id_hash_type_name_and_caption(
    name: str, content_type: str, filename: str | None, caption: str | None
) -> None:
    message: MessageReceived = one(name)
    [attachment] = message.attachments
    assert attachment.media_id is not None
    assert attachment.url == f"{GRAPH}/{attachment.media_id}"
    assert (attachment.content_type, attachment.filename, attachment.caption) == (
        content_type,
        filename,
        caption,
    )
    assert attachment.sha256 is not None
    assert attachment.provider_url == MEDIA_URL
    assert message.text == (caption or "")


def test_a_whatsapp_location_is_a_place() -> None:
    message: MessageReceived = one("wa_location")
    assert message.location == Location(
        latitude=37.44221496582,
        longitude=-122.16131591797,
        name="Lucky Shrub",
        address="101 Forest Ave, Palo Alto, CA 94301",
        url="https://www.luckyshrub.com",
    )
    assert message.text.startswith("[location] 37.44221496582,-122.16131591797 Lucky Shrub")


def test_a_whatsapp_contacts_message_is_a_contact_card() -> None:
    message: MessageReceived = one("wa_contacts")
    assert message.contacts == (
        Contact(
            name="Barbara J. Johnson",
            phones=("+16505559999", "+19175559999"),
            emails=("bjohnson@luckyshrub.com",),
            organization="Lucky Shrub",
        ),
    )
    assert message.text == "[contacts] Barbara J. Johnson"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("wa_interactive_button_reply", "Cancel"),
        ("wa_interactive_list_reply", "Priority Mail Express"),
        ("wa_button", "Unsubscribe"),
        ("wa_text_reply", "Yes, the blue one please."),
    ],
)
def test_a_whatsapp_answer_names_the_message_it_answers(name: str, text: str) -> None:
    message: MessageReceived = one(name)
    assert (message.text, message.in_reply_to) == (text, CONTEXT_WAMID)


@pytest.mark.parametrize(
    ("name", "change", "reaction", "text"),
    [
        ("wa_reaction", MessageChange.REACTED, "\U0001f44d", None),
        ("wa_reaction_removed", MessageChange.UNREACTED, None, None),
        ("wa_edit", MessageChange.EDITED, None, "Does it come in another colour?"),
        ("wa_revoke", MessageChange.DELETED, None, None),
    ],
)
def test_whatsapp_reactions_edits_and_revokes_change_the_message_they_name(
    name: str, change: MessageChange, reaction: str | None, text: str | None
) -> None:
    changed: MessageChanged = one(name)
    assert (changed.provider_message_id, changed.change_id) == (CONTEXT_WAMID, WAMID)
    assert (changed.change, changed.reaction, changed.text) == (change, reaction, text)
    # The same customer and conversation as the customer's messages.
    message: MessageReceived = one("wa_text")
    assert (changed.customer_id, changed.conversation_key) == (
        message.customer_id,
        message.conversation_key,
    )


#: The statuses the Cloud API status webhook reference documents, and the two the
#: On-Premises API also sent.
WHATSAPP_DOCUMENTED_STATUSES = ("sent", "delivered", "read", "played", "failed")
WHATSAPP_ON_PREMISES_STATUSES = ("deleted", "warning")


def test_the_whatsapp_status_map_is_total_over_the_documented_statuses() -> None:
    documented = {*WHATSAPP_DOCUMENTED_STATUSES, *WHATSAPP_ON_PREMISES_STATUSES}
    assert set(meta.WHATSAPP_STATUS_MAP) == documented
    assert all(meta.WHATSAPP_STATUS_MAP[s] is not None for s in WHATSAPP_DOCUMENTED_STATUSES)


@pytest.mark.parametrize(
    ("name", "status", "error", "outbound"),
    [
        ("wa_status_sent", DeliveryStatus.SENT, None, "3f1c1b8e-5d1e-4f7e-9a44-2f6f0d1c9b77"),
        ("wa_status_delivered", DeliveryStatus.DELIVERED, None, None),
        ("wa_status_read", DeliveryStatus.READ, None, None),
        ("wa_status_played", DeliveryStatus.READ, None, None),
        ("wa_status_failed", DeliveryStatus.FAILED, "131050", None),
    ],
)
def test_each_whatsapp_status_keeps_its_word_error_code_and_outbound_id(
    name: str, status: DeliveryStatus, error: str | None, outbound: str | None
) -> None:
    report, *_ = parsed(name)
    assert isinstance(report, DeliveryStatusChanged)
    assert report.provider_message_id == OUT_WAMID
    assert report.provider_status == name.removeprefix("wa_status_")
    assert (report.status, report.error_code, report.outbound_id) == (status, error, outbound)


def test_a_send_failed_for_a_marketing_stop_records_the_stop() -> None:
    """Meta's example of a failed status is error 131050: the user stopped marketing
    messages. Besides the status, their marketing opt-out, as ``user_preferences`` would
    report it (the stop is known even without that webhook field)."""
    status, stop = parsed("wa_status_failed")
    assert isinstance(status, DeliveryStatusChanged)
    assert isinstance(stop, ConsentReported)
    assert (stop.channel, stop.endpoint, stop.customer_address) == (
        Channel.WHATSAPP,
        "106540352242922",
        "+16505551234",
    )
    assert (stop.consent, stop.scope, stop.provider_status) == (
        Consent.OPT_OUT,
        ConsentScope.MARKETING,
        "131050",
    )
    assert stop.id != status.id


def _failed(**changes: Any) -> bytes:
    payload = json.loads(fixture("wa_status_failed"))
    [status] = payload["entry"][0]["changes"][0]["value"]["statuses"]
    for key, value in changes.items():
        if value is None:
            status.pop(key)
        else:
            status[key] = value
    return json.dumps(payload).encode()


def test_other_failures_and_a_stop_naming_no_recipient() -> None:
    other = _failed(errors=[{"code": 131026, "title": "Message undeliverable"}])
    [status] = meta.parse_webhook(other, CHANNELS, NOW).events
    assert isinstance(status, DeliveryStatusChanged)
    by_id = meta.parse_webhook(
        _failed(recipient_id=None, recipient_user_id=BSUID), CHANNELS, NOW
    ).events
    assert [type(e) for e in by_id] == [DeliveryStatusChanged, ConsentReported]
    assert by_id[1].customer_address == BSUID
    nobody = meta.parse_webhook(_failed(recipient_id=None), CHANNELS, NOW)
    assert [type(e) for e in nobody.events] == [DeliveryStatusChanged]  # the status still counts
    [aside] = nobody.set_aside
    assert "statuses[0].errors[0]" in aside.reason


def test_read_and_played_of_one_message_are_two_events() -> None:
    read, played = one("wa_status_read"), one("wa_status_played")
    assert read.id != played.id


# -- Messenger ----------------------------------------------------------------------------


def test_messenger_attachments_keep_the_url_meta_sent() -> None:
    message: MessageReceived = one("messenger_message_attachments")
    assert [
        (a.url.rpartition("/")[2], a.content_type, a.provider_url) for a in message.attachments
    ] == [
        ("image.png", "image", None),
        ("video.mp4", "video", None),
        ("audio.mp4", "audio", None),
        ("file.pdf", "file", None),
    ]


def test_a_messenger_sticker_keeps_its_sticker_id() -> None:
    message: MessageReceived = one("messenger_message_sticker")
    [sticker] = message.attachments
    assert (sticker.media_id, sticker.url) == (
        "369239263222822",
        "https://scontent.xx.fbcdn.net/v/t39.1997-6/sticker.png",
    )


def test_a_messenger_reply_names_the_message_it_answers() -> None:
    message: MessageReceived = one("messenger_message_reply")
    assert message.in_reply_to == "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU"


def test_a_legacy_messenger_location_attachment_is_a_place() -> None:
    doc = json.loads(fixture("messenger_message"))
    doc["entry"][0]["messaging"][0]["message"] = {
        "mid": "m_location",
        "attachments": [
            {
                "title": "Pinned Location",
                "url": "https://www.bing.com/maps/default.aspx?v=2&pc=FACEBK&mid=8100",
                "type": "location",
                "payload": {"coordinates": {"lat": 37.483872693672, "long": -122.14900441942}},
            }
        ],
    }
    [message] = meta.parse_webhook(msgspec.json.encode(doc), CHANNELS, NOW).events
    assert isinstance(message, MessageReceived)
    assert message.location == Location(
        latitude=37.483872693672,
        longitude=-122.14900441942,
        name="Pinned Location",
        url="https://www.bing.com/maps/default.aspx?v=2&pc=FACEBK&mid=8100",
    )
    assert message.attachments == ()


@pytest.mark.parametrize(
    ("name", "change", "reaction"),
    [
        ("messenger_reaction", MessageChange.REACTED, "\u2764\ufe0f"),
        ("messenger_unreaction", MessageChange.UNREACTED, "love"),
    ],
)
def test_messenger_reactions_change_the_message_they_name(
    name: str, change: MessageChange, reaction: str
) -> None:
    changed: MessageChanged = one(name)
    assert (changed.provider_message_id, changed.change, changed.reaction) == (
        "m_sent_by_the_page_1",
        change,
        reaction,
    )
    assert changed.customer_id == "messenger:6783125368444163"


def test_a_reaction_undone_and_done_again_are_distinct_changes() -> None:
    doc = json.loads(fixture("messenger_reaction"))
    again = json.loads(fixture("messenger_reaction"))
    again["entry"][0]["messaging"][0]["timestamp"] += 5000
    first, second = (
        meta.parse_webhook(msgspec.json.encode(d), CHANNELS, NOW).events[0] for d in (doc, again)
    )
    assert first.id != second.id


def test_a_messenger_edit_carries_the_new_text_and_its_revision() -> None:
    changed: MessageChanged = one("messenger_message_edit")
    assert (changed.change, changed.text, changed.change_id) == (
        MessageChange.EDITED,
        "hello, world! (edited)",
        "m_1457764197618:41d102a3e1ae206a38/edit/1",
    )


def test_a_messenger_delivery_reports_each_message_it_names() -> None:
    report: DeliveryStatusChanged = one("messenger_delivery")
    assert (report.provider_message_id, report.status, report.provider_status) == (
        "mid.1458668856218:ed81099e15d3f4f233",
        DeliveryStatus.DELIVERED,
        "delivered",
    )


def test_a_messenger_read_watermark_reads_the_conversation_through_its_time() -> None:
    doc = json.loads(fixture("messenger_read"))
    watermark_ms = int((NOW - 90) * 1000)
    doc["entry"][0]["messaging"][0]["read"]["watermark"] = watermark_ms
    [receipt] = meta.parse_webhook(json.dumps(doc).encode(), CHANNELS, NOW).events
    assert isinstance(receipt, DeliveryStatusChanged)
    assert receipt.status is DeliveryStatus.READ
    assert (receipt.provider_message_id, receipt.provider_status) == ("", "read")
    assert receipt.read_through == watermark_ms / 1000
    # The key the customer's messages on this page carry: the receipt finds their conversation.
    message: MessageReceived = one("messenger_message")
    assert receipt.conversation_key == message.conversation_key
    again = meta.parse_webhook(json.dumps(doc).encode(), CHANNELS, NOW).events
    assert again == [receipt]  # a redelivery is the same event


def test_a_messenger_read_watermark_at_no_believable_time_reads_nothing() -> None:
    assert parsed("messenger_read") == []


def test_a_postback_is_the_customer_choosing_its_title() -> None:
    message: MessageReceived = one("messenger_postback")
    assert message.text == "Talk to a person"


def test_a_postback_without_mid_is_told_apart_by_its_time_or_set_aside() -> None:
    """Without a ``mid`` its id is made of the customer and the time; without both it
    would be the customer's alone, and each later postback a duplicate dropped."""
    doc = json.loads(fixture("messenger_postback"))
    item = doc["entry"][0]["messaging"][0]
    item["postback"].pop("mid", None)
    first = meta.parse_webhook(json.dumps(doc).encode(), CHANNELS, NOW).events
    item["timestamp"] += 1000
    later = meta.parse_webhook(json.dumps(doc).encode(), CHANNELS, NOW).events
    assert first[0].provider_message_id != later[0].provider_message_id
    del item["timestamp"]
    out = meta.parse_webhook(json.dumps(doc).encode(), CHANNELS, NOW)
    assert out.events == []
    [unusable] = out.set_aside
    assert unusable.reason.endswith("postback without mid or timestamp")


# -- Instagram ----------------------------------------------------------------------------


def test_an_instagram_seen_event_marks_the_message_it_names_read() -> None:
    report: DeliveryStatusChanged = one("instagram_seen")
    assert report == DeliveryStatusChanged(
        id=report.id,
        domain="globex",
        occurred_at=NOW,  # Meta's example time is beyond the plausible window of NOW
        channel=Channel.INSTAGRAM,
        provider_message_id="aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxOTAw",
        status=DeliveryStatus.READ,
        provider_status="read",
    )


def test_instagram_attachments_shares_and_story_mentions_keep_their_urls() -> None:
    message: MessageReceived = one("instagram_message_attachments")
    assert [a.content_type for a in message.attachments] == [
        "image",
        "video",
        "audio",
        "file",
        "share",
        "story_mention",
    ]
    assert message.attachments[4].url == "https://www.instagram.com/p/C1a2b3c4d5e/"


@pytest.mark.parametrize(
    ("name", "change", "text"),
    [
        ("instagram_message_edit", MessageChange.EDITED, "is this in stock in blue?"),
        ("instagram_message_deleted", MessageChange.DELETED, None),
    ],
)
def test_instagram_edits_and_deletions_change_the_customers_message(
    name: str, change: MessageChange, text: str | None
) -> None:
    changed: MessageChanged = one(name)
    message: MessageReceived = one("instagram_message")
    assert changed.provider_message_id == message.provider_message_id
    assert (changed.change, changed.text) == (change, text)
    assert changed.conversation_key == message.conversation_key


def test_an_edit_numbered_zero_is_the_message_as_sent_not_an_edit() -> None:
    doc = json.loads(fixture("instagram_message_edit"))
    doc["entry"][0]["messaging"][0]["message_edit"]["num_edit"] = 0
    assert meta.parse_webhook(msgspec.json.encode(doc), CHANNELS, NOW).events == []


def test_a_change_naming_no_message_is_set_aside_alone() -> None:
    doc = json.loads(fixture("instagram_reaction"))
    good = doc["entry"][0]["messaging"][0]
    bad = json.loads(json.dumps(good))
    bad["reaction"]["mid"] = ""
    doc["entry"][0]["messaging"] = [bad, good]
    out = meta.parse_webhook(msgspec.json.encode(doc), CHANNELS, NOW)
    assert [kind(e) for e in out.events] == ["reacted"]
    [unusable] = out.set_aside
    assert unusable.reason.startswith("entry[0].messaging[0]: reacted without the message")
    assert unusable.domain == "globex"


# -- declarations and media limits --------------------------------------------------------


def test_three_declarations_one_a_channel_and_honest_about_replays() -> None:
    assert [d.channels for d in meta_catalog.DECLARATIONS] == [
        ("whatsapp",),
        ("messenger",),
        ("instagram",),
    ]
    for declaration in meta_catalog.DECLARATIONS:
        assert "X-Hub-Signature-256" in declaration.signature
        assert "no timestamp" in declaration.replay_protection


@pytest.mark.parametrize(
    ("limits", "attachment", "kind"),
    [
        (meta_catalog.WHATSAPP_MEDIA, Attachment(url="https://x.example/a.jpg"), "image"),
        (meta_catalog.WHATSAPP_MEDIA, Attachment(url="https://x.example/a.webp"), "sticker"),
        (meta_catalog.WHATSAPP_MEDIA, Attachment(url="https://x.example/label.pdf"), "document"),
        (meta_catalog.WHATSAPP_MEDIA, Attachment(url="https://x.example/a.mp4"), "video"),
        (
            meta_catalog.WHATSAPP_MEDIA,
            Attachment(url="https://x.example/a", content_type="audio/ogg"),
            "audio",
        ),
        (meta_catalog.MESSENGER_MEDIA, Attachment(url="https://x.example/a.webp"), "image"),
        (meta_catalog.MESSENGER_MEDIA, Attachment(url="https://x.example/a.zip"), "file"),
        (meta_catalog.INSTAGRAM_MEDIA, Attachment(url="https://x.example/a.gif"), "image"),
        (meta_catalog.INSTAGRAM_MEDIA, Attachment(url="https://x.example/a.mov"), "video"),
        (meta_catalog.INSTAGRAM_MEDIA, Attachment(url="https://x.example/a.pdf"), "file"),
    ],
)
def test_media_each_channel_sends(limits: Any, attachment: Attachment, kind: str) -> None:
    [(_, rule)] = check_attachments([attachment], limits)
    assert rule.kind == kind


@pytest.mark.parametrize(
    ("limits", "attachment", "reason"),
    [
        (
            meta_catalog.WHATSAPP_MEDIA,
            Attachment(url="https://x.example/a.jpg", size_bytes=5 * 1024 * 1024 + 1),
            "over WhatsApp's 5242880 for image",
        ),
        (
            meta_catalog.WHATSAPP_MEDIA,
            Attachment(url="https://x.example/a.webp", size_bytes=600 * 1024),
            "for sticker",
        ),
        (
            meta_catalog.WHATSAPP_MEDIA,
            Attachment(url="https://x.example/a.gif"),
            "does not send image/gif",
        ),
        (
            meta_catalog.MESSENGER_MEDIA,
            Attachment(url="https://x.example/a.mp4", size_bytes=25 * 1024 * 1024 + 1),
            "over Messenger's",
        ),
        (meta_catalog.INSTAGRAM_MEDIA, Attachment(url="https://x.example/a.webp"), "does not send"),
        (
            meta_catalog.INSTAGRAM_MEDIA,
            Attachment(url="https://x.example/a.png", size_bytes=8 * 1024 * 1024 + 1),
            "over Instagram's 8388608 for image",
        ),
        (meta_catalog.INSTAGRAM_MEDIA, Attachment(url="https://x.example/a.docx"), "does not send"),
    ],
)
def test_media_a_channel_refuses(limits: Any, attachment: Attachment, reason: str) -> None:
    with pytest.raises(MediaRefused, match=reason):
        check_attachments([attachment], limits)


def test_an_item_meta_shapes_otherwise_is_set_aside_alone() -> None:
    """Meta's references write some timestamps as strings and name a plugin's sender by
    ``user_ref`` alone: such items cost nothing to the notification's others (until now
    the whole notification was set aside). One that cannot be read at all is set aside by
    its place, the others routed."""
    body = json.loads(fixture("messenger_postback"))
    [good] = body["entry"][0]["messaging"]
    as_string = {**good, "timestamp": str(good["timestamp"])}
    plugin = {**good, "sender": {"user_ref": "plugin-user-1"}}
    unreadable = {**good, "postback": 5}
    body["entry"][0]["messaging"] = [plugin, unreadable, as_string]
    out = meta.parse_webhook(json.dumps(body).encode(), CHANNELS, NOW)
    [message] = out.events
    assert message.text == "Talk to a person"
    assert [u.reason.split(":")[0] for u in out.set_aside] == ["entry[0].messaging[1]"]


def test_an_unreadable_whatsapp_change_costs_the_others_nothing() -> None:
    body = json.loads(fixture("wa_text"))
    [change] = body["entry"][0]["changes"]
    broken = {**change, "value": {**change["value"], "messages": 5}}
    body["entry"][0]["changes"] = [broken, change]
    out = meta.parse_webhook(json.dumps(body).encode(), CHANNELS, NOW)
    assert len(out.events) == 1
    assert [u.reason.split(":")[0] for u in out.set_aside] == ["entry[0].changes[0]"]
