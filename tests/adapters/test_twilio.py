"""Twilio webhook: requests signed with twilio-python's own RequestValidator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import (  # type: ignore[import-untyped]  # twilio ships no types
    RequestValidator,
)

from adapters import twilio
from adapters.base import SignatureRejected, inbound_event_id
from runtime.logging import RateLimit
from schemas import Channel, DeliveryStatus, DeliveryStatusChanged
from tests.adapters.conftest import CHANNELS, ENVIRON, NOW, PUBLIC_URL, Harness, start_harness
from tests.logcapture import captured_logs, lines_of

PATH = "/webhooks/twilio/sms"
TOKEN = ENVIRON["TWILIO_AUTH_TOKEN"]


def inbound_sms(**overrides: str) -> dict[str, str]:
    """The fields of Twilio's documented incoming-message webhook."""
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": "Hello, my order has not arrived",
        "FromCountry": "US",
        "To": "+14155550100",
        "NumSegments": "1",
        "MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "AccountSid": "AC00000000000000000000000000000001",
        "From": "+14155552671",
        "ApiVersion": "2010-04-01",
    }
    params.update(overrides)
    return params


def sign(params: dict[str, str], url: str = PUBLIC_URL + PATH) -> dict[str, str]:
    return {twilio.SIGNATURE_HEADER: RequestValidator(TOKEN).compute_signature(url, params)}


def test_signature_matches_the_sdk_on_its_documented_example() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    expected = RequestValidator("12345").compute_signature(url, params)
    assert twilio.compute_signature("12345", url, list(params.items())) == expected
    twilio.verify_signature("12345", url, list(params.items()), expected)


@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=12)), max_size=8),
    st.sampled_from(["HMAC_SHA1", "HMAC_SHA256"]),
)
def test_signature_agrees_with_the_sdk_for_any_params(
    pairs: list[tuple[str, str]], algorithm: str
) -> None:
    url = "https://example.com/webhooks/twilio/sms?x=1"
    expected = RequestValidator(TOKEN).compute_signature(url, MultiDict(pairs), algorithm)
    assert twilio.compute_signature(TOKEN, url, pairs, algorithm) == expected


class MultiDict(dict[str, str]):
    """The multi-valued mapping shape RequestValidator reads repeated parameters from."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def test_port_variants_verify() -> None:
    params = list(inbound_sms().items())
    signed = twilio.compute_signature(TOKEN, "https://h.example.com/p", params)
    twilio.verify_signature(TOKEN, "https://h.example.com:443/p", params, signed)
    with pytest.raises(SignatureRejected):
        twilio.verify_signature(TOKEN, "https://other.example.com/p", params, signed)


async def test_inbound_sms_is_published_then_answered_with_empty_twiml(hook: Harness) -> None:
    params = inbound_sms()
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert resp.status == 200
    assert resp.content_type == "text/xml"
    assert "<Response/>" in await resp.text()
    [msg] = hook.publisher.messages
    assert msg.channel is Channel.SMS
    assert msg.domain == "acme"
    assert msg.queue == "sms"
    assert msg.endpoint == "+14155550100"
    assert msg.customer_address == "+14155552671"
    assert msg.customer_id == "phone:+14155552671"  # acme links phone identities
    assert msg.conversation_key == "sms:+14155550100:+14155552671"
    assert msg.text == "Hello, my order has not arrived"
    assert msg.provider_message_id == params["MessageSid"]
    assert msg.id == inbound_event_id("acme", "sms", params["MessageSid"])
    assert msg.occurred_at == NOW
    assert msg.reply_window_ends_at is None
    assert hook.count("twilio", "accepted") == 1
    assert (
        hook.metrics.registry.get_sample_value(
            "switchboard_inbound_messages_total", {"domain": "acme", "channel": "sms"}
        )
        == 1
    )


async def test_the_webhook_line_comes_ten_times_a_minute_then_says_how_many_were_left_out() -> None:
    minute = [0.0]
    hook = await start_harness(log_limit=RateLimit(clock=lambda: minute[0] * 60))
    try:
        with captured_logs([]) as buffer:
            for index in range(13):
                minute[0] = 1 if index == 12 else 0
                params = inbound_sms(MessageSid=f"SM{index:032d}")
                resp = await hook.client.post(PATH, data=params, headers=sign(params))
                assert resp.status == 200
        lines = [line for line in lines_of(buffer) if line["event"] == "webhook"]
    finally:
        await hook.client.close()
    # Every request is published and counted; its line is not: the counter has its figures.
    assert len(hook.publisher.messages) == 13
    assert hook.count("twilio", "accepted") == 13
    assert len(lines) == 11
    assert [line.get("suppressed") for line in lines] == [None] * 10 + [2]
    assert lines[0] == {
        "event": "webhook",
        "provider": "twilio",
        "outcome": "accepted",
        "domains": ["acme"],
        "messages": 1,
        "statuses": 0,
        "other_events": 0,
        "consents": 0,
        "set_aside": 0,
        "level": "info",
        "timestamp": lines[0]["timestamp"],
    }


async def test_a_number_gives_its_conversations_their_routing_context(hook: Harness) -> None:
    params = inbound_sms(To="+14155550142")
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert (msg.priority, msg.skills, msg.language, msg.attributes) == (
        5,
        ("billing",),
        "fr",
        {"brand": "acme-fr"},
    )


async def test_customer_id_is_channel_scoped_in_unlinked_domains(hook: Harness) -> None:
    params = inbound_sms(To="+14155550199")
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.domain == "globex"
    assert msg.customer_id == "sms:+14155552671"


async def test_mms_media_become_attachments(hook: Harness) -> None:
    params = inbound_sms(
        Body="",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
        MediaContentType1="application/pdf",
    )
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert [(a.url, a.content_type) for a in msg.attachments] == [
        (params["MediaUrl0"], "image/jpeg"),
        (params["MediaUrl1"], "application/pdf"),
    ]


async def test_twilio_whatsapp_is_the_whatsapp_channel_with_a_reply_window(
    hook: Harness,
) -> None:
    params = inbound_sms(From="whatsapp:+14155552671", To="whatsapp:+14155550100")
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert resp.status == 200
    [msg] = hook.publisher.messages
    assert msg.channel is Channel.WHATSAPP
    assert msg.customer_address == "+14155552671"
    assert msg.customer_id == "phone:+14155552671"  # same customer as on SMS
    assert msg.reply_window_ends_at == NOW + 24 * 3600


async def test_status_callback_is_a_delivery_status_not_a_message(hook: Harness) -> None:
    params = {
        "SmsSid": "SM5a1c2b",
        "SmsStatus": "delivered",
        "MessageStatus": "delivered",
        "To": "+14155552671",
        "MessageSid": "SM5a1c2b",
        "AccountSid": "AC00000000000000000000000000000001",
        "From": "+14155550100",
        "ApiVersion": "2010-04-01",
    }
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert resp.status == 200
    assert hook.publisher.messages == []
    [status] = hook.publisher.statuses
    assert status.status is DeliveryStatus.DELIVERED
    assert status.provider_message_id == "SM5a1c2b"
    assert status.domain == "acme"


def status_callback(status: str, sid: str = "SM5a1c2b", **extra: str) -> dict[str, str]:
    """Twilio's status callback of a message we sent from +14155550100."""
    return {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": "+14155552671",
        "MessageSid": sid,
        "AccountSid": "AC00000000000000000000000000000001",
        "From": "+14155550100",
        "ApiVersion": "2010-04-01",
        **extra,
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("undelivered", DeliveryStatus.UNDELIVERED),
        ("failed", DeliveryStatus.FAILED),
        ("canceled", DeliveryStatus.FAILED),
        ("sent", DeliveryStatus.SENT),
    ],
)
def test_twilio_statuses_map_to_ours(status: str, expected: DeliveryStatus) -> None:
    [event] = twilio.parse_webhook(list(status_callback(status).items()), CHANNELS, NOW)
    assert isinstance(event, DeliveryStatusChanged)
    assert event.status is expected


async def test_undelivered_is_reported_as_undelivered_with_the_carriers_error(
    hook: Harness,
) -> None:
    """The carrier refused it (30003: unreachable handset): not a failure to send."""
    params = status_callback("undelivered", ErrorCode="30003")
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert (status.status, status.error_code, status.outbound_id) == (
        DeliveryStatus.UNDELIVERED,
        "30003",
        None,
    )


async def test_bad_signature_is_403_and_nothing_published(hook: Harness) -> None:
    params = inbound_sms()
    headers = sign(inbound_sms(Body="something else"))
    resp = await hook.client.post(PATH, data=params, headers=headers)
    assert resp.status == 403
    assert "error" in await resp.json()
    assert hook.publisher.batches == []
    assert hook.signature_failures("twilio") == 1
    assert hook.count("twilio", "bad_signature") == 1


async def test_missing_signature_is_401(hook: Harness) -> None:
    resp = await hook.client.post(PATH, data=inbound_sms())
    assert resp.status == 401
    assert hook.publisher.batches == []


async def test_signature_over_the_public_url_with_query(hook: Harness) -> None:
    params = inbound_sms()
    headers = sign(params, url=PUBLIC_URL + PATH + "?tenant=acme")
    resp = await hook.client.post(PATH + "?tenant=acme", data=params, headers=headers)
    assert resp.status == 200


async def test_without_public_url_the_request_url_is_signed() -> None:
    harness = await start_harness(public_url=None)
    try:
        params = inbound_sms()
        url = str(harness.client.make_url(PATH))
        resp = await harness.client.post(PATH, data=params, headers=sign(params, url=url))
        assert resp.status == 200
    finally:
        await harness.client.close()


async def test_replay_gets_the_same_event_id(hook: Harness) -> None:
    params = inbound_sms()
    for _ in range(2):
        resp = await hook.client.post(PATH, data=params, headers=sign(params))
        assert resp.status == 200
    # Adapters are stateless: both retries are published with one id; the router drops the second.
    first, second = hook.publisher.messages
    assert first.id == second.id


async def test_a_message_to_an_unknown_number_is_set_aside(hook: Harness) -> None:
    # Twilio does not retry: a refusal would lose the message in Twilio's error log.
    params = inbound_sms(To="+19995550000")
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert "not configured" in await hook.set_aside(resp, "twilio")


@pytest.mark.parametrize(
    "params",
    [
        {"Body": "no sid", "From": "+1", "To": "+14155550100"},
        inbound_sms(NumMedia="3"),
        inbound_sms(NumMedia="lots"),
    ],
    ids=["no-sid", "media-missing", "nummedia-nan"],
)
async def test_signed_forms_that_cannot_be_read_are_set_aside(
    hook: Harness, params: dict[str, str]
) -> None:
    resp = await hook.client.post(PATH, data=params, headers=sign(params))
    assert await hook.set_aside(resp, "twilio")


async def test_non_form_body_is_415(hook: Harness) -> None:
    resp = await hook.client.post(PATH, json={"Body": "hi"})
    assert resp.status == 415


async def test_invalid_utf8_form_is_400(hook: Harness) -> None:
    body = "Body=%FF%FE&MessageSid=SM1"
    resp = await hook.client.post(
        PATH,
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            twilio.SIGNATURE_HEADER: "x",
        },
    )
    assert resp.status == 400


async def test_status_callbacks_have_their_own_route_and_name_our_message(
    hook: Harness,
) -> None:
    """Replies ask Twilio to call back on ``/webhooks/twilio/status?outbound_id=<id>``;
    the documented callback carries no ``To``."""
    params = {
        k: v for k, v in status_callback("undelivered", ErrorCode="30003").items() if k != "To"
    }
    target = twilio.STATUS_PATH + "?outbound_id=out-0001"
    resp = await hook.client.post(
        target, data=params, headers=sign(params, url=PUBLIC_URL + target)
    )
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert (status.outbound_id, status.status, status.provider_status, status.error_code) == (
        "out-0001",
        DeliveryStatus.UNDELIVERED,
        "undelivered",
        "30003",
    )


async def test_the_sms_route_still_takes_status_callbacks_with_our_id(hook: Harness) -> None:
    params = status_callback("read")
    target = PATH + "?outbound_id=out-0002"
    resp = await hook.client.post(
        target, data=params, headers=sign(params, url=PUBLIC_URL + target)
    )
    assert resp.status == 200
    [status] = hook.publisher.statuses
    assert (status.outbound_id, status.status) == ("out-0002", DeliveryStatus.READ)


def test_the_request_url_kept_is_the_one_aiohttp_makes() -> None:
    """``twilio_routes.request_url`` keeps ``str(request.url)`` by scheme, ``Host`` and
    request target: each of these changes the URL it gives, as it changes aiohttp's; and
    past ``URLS_KEPT`` targets it starts again rather than grow."""
    from aiohttp.test_utils import make_mocked_request

    from adapters import twilio_routes

    twilio_routes._urls_seen.clear()
    for host, target in [
        ("127.0.0.1:8080", "/webhooks/twilio/sms"),
        ("127.0.0.1:8080", "/webhooks/twilio/sms"),  # kept: the same answer
        ("hooks.example.com", "/webhooks/twilio/sms"),
        ("hooks.example.com:443", "/webhooks/twilio/status?outbound_id=o%201&x=+"),
        ("HOOKS.example.com", "/webhooks/twilio/sms"),
        ("x", "http://elsewhere.example/webhooks/twilio/sms"),  # absolute form
    ]:
        request = make_mocked_request("POST", target, headers={"Host": host})
        assert twilio_routes.request_url(request) == str(request.url)
    assert len(twilio_routes._urls_seen) == 5
    sizes = set()
    for n in range(twilio_routes.URLS_KEPT):
        request = make_mocked_request("POST", f"/s?n={n}", headers={"Host": "h"})
        assert twilio_routes.request_url(request) == f"http://h/s?n={n}"
        sizes.add(len(twilio_routes._urls_seen))
    assert max(sizes) == twilio_routes.URLS_KEPT
    assert len(twilio_routes._urls_seen) == 5  # started again 5 targets before the end
