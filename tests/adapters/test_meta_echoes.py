"""Messenger and Instagram echoes: a person answering from the Page inbox or a phone.

Meta sends an echo (``message.is_echo``) for every message the page or Instagram account
sends, with the ``app_id`` of the app that sent it (``message_echoes`` webhook reference:
``sender`` the page, ``recipient`` the customer's page-scoped id, ``message.app_id``,
``message.mid``). With ``meta.app_id`` configured, an echo of another app or of none is a
person's answer: ``message.human_replied``, for the customer and conversation the
customer's own messages name. Echoes of our app, and every echo without ``meta.app_id``,
are dropped as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters import meta
from adapters.base import inbound_event_id
from adapters.config import ChannelsConfig
from adapters.meta_payloads import MsgMessage
from adapters.webhooks import WebhookContext, refuse_encoded_bodies, webhook_routes
from runtime.metrics import Metrics
from schemas import Channel, HumanReplied
from tests.adapters.conftest import (
    CHANNELS,
    CHANNELS_TOML,
    ENVIRON,
    NOW,
    PUBLIC_URL,
    Harness,
    MemoryNonces,
    RecordingPublisher,
)
from tests.adapters.test_meta import IG_ID, PAGE_ID, PATH, page_notification, signed

OUR_APP = "1517776481860111"
PAGE_INBOX_APP = 263902037430900
"""The app id Meta gives the Page inbox (Meta Business Suite)."""
PSID = "6783125368444163"
IGSID = "1254459154682919"
TIMESTAMP_MS = 1699999752478

WITH_APP_ID = msgspec.structs.replace(
    CHANNELS, meta=msgspec.structs.replace(CHANNELS.meta, app_id=OUR_APP)
)


async def harness(channels: ChannelsConfig) -> Harness:
    """``conftest.start_harness`` with these channels."""
    publisher, metrics, nonces = RecordingPublisher(), Metrics(), MemoryNonces()
    ctx = WebhookContext(
        channels=channels,
        environ=ENVIRON,
        publisher=publisher,
        nonces=nonces,
        metrics=metrics,
        public_url=PUBLIC_URL,
        max_body_bytes=256 * 1024,
        clock=lambda: NOW,
        outbound={},
    )
    app = web.Application(middlewares=[refuse_encoded_bodies])
    app.add_routes(webhook_routes(ctx))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Harness(client, publisher, metrics, nonces)


@pytest.fixture
async def hook() -> AsyncIterator[Harness]:
    """Webhooks of an app that knows its own id."""
    started = await harness(WITH_APP_ID)
    yield started
    await started.client.close()


@pytest.fixture
async def unaware() -> AsyncIterator[Harness]:
    """Webhooks of an app with no ``meta.app_id``: as before."""
    started = await harness(CHANNELS)
    yield started
    await started.client.close()


def echo(
    app_id: int | str | None,
    *,
    mid: str = "m_echo_1",
    page: str = PAGE_ID,
    customer: str = PSID,
    text: str | None = "I'll look into it myself.",
) -> dict[str, Any]:
    """A messaging item as the ``message_echoes`` reference shows it."""
    message: dict[str, Any] = {"is_echo": True, "mid": mid}
    if app_id is not None:
        message["app_id"] = app_id
    if text is not None:
        message["text"] = text
    return {
        "sender": {"id": page},
        "recipient": {"id": customer},
        "timestamp": TIMESTAMP_MS,
        "message": message,
    }


def customer_message(mid: str = "m_customer_1") -> dict[str, Any]:
    return {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE_ID},
        "timestamp": TIMESTAMP_MS - 60_000,
        "message": {"mid": mid, "text": "Is anyone there?"},
    }


async def post(hook: Harness, *items: dict[str, Any], **kw: Any) -> None:
    body, headers = signed(page_notification(*items, **kw))
    resp = await hook.client.post(PATH, data=body, headers=headers)
    assert resp.status == 200, await resp.text()


def human_replies(hook: Harness) -> list[HumanReplied]:
    return [e for e in hook.publisher.events if isinstance(e, HumanReplied)]


# -- a person's answer ---------------------------------------------------------------------


async def test_an_echo_from_the_page_inbox_is_a_person_answering_that_customer(
    hook: Harness,
) -> None:
    await post(hook, customer_message(), echo(PAGE_INBOX_APP))
    [message] = hook.publisher.messages
    [replied] = human_replies(hook)
    assert replied == HumanReplied(
        id=inbound_event_id("acme", "messenger", "m_echo_1/echo"),
        domain="acme",
        occurred_at=TIMESTAMP_MS / 1000,
        channel=Channel.MESSENGER,
        endpoint=PAGE_ID,
        customer_address=PSID,
        customer_id="messenger:" + PSID,
        conversation_key=f"messenger:{PAGE_ID}:{PSID}",
        provider_message_id="m_echo_1",
    )
    # The customer's own message names the same customer and conversation.
    assert (replied.customer_id, replied.conversation_key, replied.endpoint) == (
        message.customer_id,
        message.conversation_key,
        message.endpoint,
    )
    assert hook.count("meta", "accepted") == 1


async def test_an_echo_with_no_app_or_no_text_is_a_person_too(hook: Harness) -> None:
    await post(
        hook,
        echo(None, mid="m_phone"),  # the Messenger app on a phone: no app id
        echo(PAGE_INBOX_APP, mid="m_sticker", text=None),  # an attachment, a sticker
    )
    assert [r.provider_message_id for r in human_replies(hook)] == ["m_phone", "m_sticker"]
    assert hook.publisher.messages == []


async def test_an_instagram_echo_names_the_account_and_its_customer(hook: Harness) -> None:
    await post(hook, echo(None, page=IG_ID, customer=IGSID), obj="instagram", entry_id=IG_ID)
    [replied] = human_replies(hook)
    assert (replied.channel, replied.domain, replied.endpoint) == (
        Channel.INSTAGRAM,
        "globex",
        IG_ID,
    )
    assert replied.customer_id == "instagram:" + IGSID
    assert replied.conversation_key == f"instagram:{IG_ID}:{IGSID}"


async def test_a_retried_echo_keeps_its_id_and_never_takes_a_messages_id(hook: Harness) -> None:
    for _ in range(2):
        await post(hook, echo(PAGE_INBOX_APP, mid="m_same"))
    first, second = human_replies(hook)
    assert first.id == second.id
    assert first.id != inbound_event_id("acme", "messenger", "m_same")


# -- echoes of our own sends ---------------------------------------------------------------


@pytest.mark.parametrize("ours", [int(OUR_APP), OUR_APP], ids=["number", "string"])
async def test_an_echo_of_our_own_send_is_dropped(hook: Harness, ours: int | str) -> None:
    await post(hook, echo(ours))
    assert hook.publisher.batches == []
    assert hook.count("meta", "ignored") == 1


async def test_without_our_app_id_every_echo_is_dropped(unaware: Harness) -> None:
    await post(unaware, echo(PAGE_INBOX_APP), echo(None, mid="m_2"), echo(int(OUR_APP), mid="m_3"))
    assert unaware.publisher.batches == []
    assert not meta.sent_by_a_person(CHANNELS.meta, MsgMessage(mid="m", is_echo=True))


# -- what cannot be carried ----------------------------------------------------------------


async def test_an_echo_to_an_address_no_event_may_carry_is_set_aside_alone(hook: Harness) -> None:
    await post(hook, echo(None, customer="x" * 1000, mid="m_bad"), echo(None, mid="m_good"))
    assert [r.provider_message_id for r in human_replies(hook)] == ["m_good"]
    [letter] = hook.publisher.dead_letters
    assert letter.reason.startswith("entry[0].messaging[0]: ")


async def test_an_echo_to_the_page_itself_is_not_a_reply_to_anyone(hook: Harness) -> None:
    await post(hook, echo(None, customer=PAGE_ID))
    assert hook.publisher.batches == []


# -- configuration -------------------------------------------------------------------------


def test_the_app_id_is_optional_and_written_as_digits() -> None:
    assert CHANNELS.meta.app_id is None
    config = msgspec.toml.decode(
        CHANNELS_TOML.replace("[meta]\n", f'[meta]\napp_id = "{OUR_APP}"\n'), type=ChannelsConfig
    )
    assert config.meta.app_id == OUR_APP
    for wrong in (f"app_id = {OUR_APP}", 'app_id = "my-app"', 'app_id = ""'):
        with pytest.raises(msgspec.ValidationError, match="app_id"):
            msgspec.toml.decode(
                CHANNELS_TOML.replace("[meta]\n", f"[meta]\n{wrong}\n"), type=ChannelsConfig
            )
