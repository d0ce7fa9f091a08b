"""Consent on customer messages (``adapters.consent``), sectioned by rule:

1. A whole message that is one of the domain's keywords opts out or in: case, accents,
   surrounding spaces and final punctuation aside; anything longer is for an agent.
2. Each domain has its own lists and channels (SMS and WhatsApp by default).
3. The provider's own signal (Twilio ``OptOutType``) wins over the keywords.
4. Through the real webhook routes, signed as the providers sign: Twilio, WhatsApp,
   Messenger, Telegram.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from adapters import twilio
from adapters.consent import message_consent, with_consent
from runtime.outbound import OutboundConfig
from schemas import Channel, Consent, ConsentReported, ConsentScope, MessageReceived
from tests.adapters.conftest import CHANNELS, NOW, Harness, start_harness
from tests.adapters.test_meta import PAGE_ID, page_notification, signed, wa_notification, wa_value
from tests.adapters.test_meta import PATH as META_PATH
from tests.adapters.test_telegram import SECRET as TELEGRAM_SECRET
from tests.adapters.test_telegram import update
from tests.adapters.test_twilio import PATH as TWILIO_PATH
from tests.adapters.test_twilio import inbound_sms, sign

DEFAULTS: dict[str, OutboundConfig] = {}
"""No domain configured: everyone gets the default keywords."""


def sms(text: str, *, domain_number: str = "+14155550100", **form: str) -> MessageReceived:
    """An SMS as the Twilio module normalizes it (the keywords not yet applied)."""
    params = inbound_sms(**{"Body": text, "To": domain_number, **form})
    [message] = twilio.parse_webhook(list(params.items()), CHANNELS, NOW)
    assert isinstance(message, MessageReceived)
    return message


def consent_of(
    text: str, outbound: dict[str, OutboundConfig] = DEFAULTS
) -> tuple[Consent | None, str | None]:
    message = message_consent(sms(text), outbound)
    return message.consent, message.consent_source


# -- 1. whole-message keywords ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        "Stop",
        " sToP ",
        "STOP.",
        "Stop!!",
        "stop ?",
        "UNSUBSCRIBE",
        "Arrêt",
        "ARRET",
    ],
)
def test_an_opt_out_keyword_alone_opts_out(text: str) -> None:
    assert consent_of(text) == (Consent.OPT_OUT, "keyword")


@pytest.mark.parametrize("text", ["START", "start", "Unstop.", "OPTIN"])
def test_an_opt_in_keyword_alone_opts_in(text: str) -> None:
    assert consent_of(text) == (Consent.OPT_IN, "keyword")


@pytest.mark.parametrize(
    "text",
    [
        "please stop",
        "stop calling me",
        "STOP STOP",
        "don't stop",
        "stopped",
        "Yes",  # answers a reminder: an agent's business
        "HELP",
        "",
        "...",
        "STOP" + " " * 100,  # far longer than any keyword: not even folded
    ],
)
def test_anything_else_is_a_message_for_an_agent(text: str) -> None:
    assert consent_of(text) == (None, None)


def test_a_message_without_a_keyword_is_returned_unchanged() -> None:
    message = sms("where is my parcel?")
    assert message_consent(message, DEFAULTS) is message


# -- 2. per domain ------------------------------------------------------------------------------


def test_each_domain_has_its_own_keywords() -> None:
    acme = {
        "acme": OutboundConfig(opt_out_keywords=("BASTA", "Désabonner"), opt_in_keywords=("VA",))
    }
    assert consent_of("basta!", acme) == (Consent.OPT_OUT, "keyword")
    assert consent_of("desabonner", acme) == (Consent.OPT_OUT, "keyword")
    assert consent_of("Va", acme) == (Consent.OPT_IN, "keyword")
    assert consent_of("STOP", acme) == (None, None)  # acme's list replaced the defaults
    # globex (another number) is not configured: the defaults.
    globex = message_consent(sms("STOP", domain_number="+14155550199"), acme)
    assert (globex.domain, globex.consent) == ("globex", Consent.OPT_OUT)


def test_keywords_apply_on_the_domains_keyword_channels_only() -> None:
    whatsapp = sms("STOP", From="whatsapp:+14155552671", To="whatsapp:+14155550100")
    assert whatsapp.channel is Channel.WHATSAPP
    assert message_consent(whatsapp, DEFAULTS).consent is Consent.OPT_OUT
    telegram = msgspec.structs.replace(sms("STOP"), channel=Channel.TELEGRAM)
    assert message_consent(telegram, DEFAULTS).consent is None
    everywhere = {
        "acme": OutboundConfig(keyword_channels=(Channel.SMS, Channel.TELEGRAM, Channel.WEBCHAT))
    }
    assert message_consent(telegram, everywhere).consent is Consent.OPT_OUT
    sms_only = {"acme": OutboundConfig(keyword_channels=(Channel.SMS,))}
    assert message_consent(whatsapp, sms_only).consent is None


def test_statuses_pass_through_untouched() -> None:
    params = {
        "MessageSid": "SM5a1c2b",
        "MessageStatus": "delivered",
        "To": "+14155552671",
        "From": "+14155550100",
    }
    events = twilio.parse_webhook(list(params.items()), CHANNELS, NOW)
    assert with_consent(events, DEFAULTS) == events


# -- 3. the provider's signal -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("opt_out_type", "expected"),
    [
        ("STOP", Consent.OPT_OUT),
        ("START", Consent.OPT_IN),
        ("stop", Consent.OPT_OUT),
        ("HELP", None),
        ("", None),
        ("SOMETHING_NEW", None),
        (None, None),
    ],
)
def test_twilio_opt_out_type_says_the_consent(opt_out_type: str | None, expected: object) -> None:
    assert twilio.provider_consent(opt_out_type) is expected


def test_twilios_signal_is_the_messages_consent_and_wins_over_keywords() -> None:
    # Advanced Opt-Out with a custom keyword the domain does not list.
    custom = sms("BAJA", OptOutType="STOP")
    assert (custom.consent, custom.consent_source) == (Consent.OPT_OUT, "provider")
    assert message_consent(custom, DEFAULTS) is custom
    # The service's opt-in keyword, though the domain lists the word as an opt-out.
    contrary = {"acme": OutboundConfig(opt_out_keywords=("ALTO",), opt_in_keywords=())}
    back = message_consent(sms("ALTO", OptOutType="START"), contrary)
    assert (back.consent, back.consent_source) == (Consent.OPT_IN, "provider")
    # HELP says nothing: the keywords still apply (here: none does).
    assert message_consent(sms("HELP", OptOutType="HELP"), DEFAULTS).consent is None


# -- 4. through the webhook routes --------------------------------------------------------------


@pytest.fixture
async def configured() -> AsyncIterator[Harness]:
    """acme opts out with BASTA only, and matches keywords on Telegram too."""
    outbound = {
        "acme": OutboundConfig(
            opt_out_keywords=("BASTA",),
            keyword_channels=(Channel.SMS, Channel.WHATSAPP, Channel.TELEGRAM),
        )
    }
    harness = await start_harness(outbound=outbound)
    yield harness
    await harness.client.close()


async def post_sms(hook: Harness, **fields: str) -> None:
    params = inbound_sms(**fields)
    response = await hook.client.post(TWILIO_PATH, data=params, headers=sign(params))
    assert response.status == 200, await response.text()


async def test_twilio_keywords_and_opt_out_type_reach_the_published_message(
    hook: Harness,
) -> None:
    await post_sms(hook, Body="Stop.", MessageSid="SM01", SmsSid="SM01")
    await post_sms(hook, Body="please stop texting", MessageSid="SM02", SmsSid="SM02")
    await post_sms(hook, Body="Cancelar", OptOutType="STOP", MessageSid="SM03", SmsSid="SM03")
    await post_sms(hook, Body="START", OptOutType="START", MessageSid="SM04", SmsSid="SM04")
    await post_sms(hook, Body="HELP", OptOutType="HELP", MessageSid="SM05", SmsSid="SM05")
    assert [
        (m.provider_message_id, m.consent, m.consent_source) for m in hook.publisher.messages
    ] == [
        ("SM01", Consent.OPT_OUT, "keyword"),
        ("SM02", None, None),
        ("SM03", Consent.OPT_OUT, "provider"),
        ("SM04", Consent.OPT_IN, "provider"),
        ("SM05", None, None),
    ]
    # Still messages: routed, counted.
    assert hook.count("twilio", "accepted") == 5


async def test_each_domains_keywords_apply_to_its_own_numbers(configured: Harness) -> None:
    await post_sms(configured, Body="Basta!", MessageSid="SM11", SmsSid="SM11")
    await post_sms(configured, Body="STOP", MessageSid="SM12", SmsSid="SM12")
    await post_sms(configured, Body="STOP", To="+14155550199", MessageSid="SM13", SmsSid="SM13")
    assert [(m.domain, m.consent) for m in configured.publisher.messages] == [
        ("acme", Consent.OPT_OUT),
        ("acme", None),  # acme's list is BASTA only
        ("globex", Consent.OPT_OUT),  # globex is not configured: the defaults
    ]


async def test_whatsapp_keywords_count_and_messenger_ones_do_not_by_default(hook: Harness) -> None:
    stop = {
        "from": "16505551234",
        "id": "wamid.STOP",
        "timestamp": "1699999383",
        "type": "text",
        "text": {"body": "ARRÊT"},
    }
    body, headers = signed(wa_notification(wa_value(messages=[stop])))
    assert (await hook.client.post(META_PATH, data=body, headers=headers)).status == 200
    messenger = {
        "sender": {"id": "6783125368444163"},
        "recipient": {"id": PAGE_ID},
        "timestamp": 1699999752478,
        "message": {"mid": "m_STOP", "text": "STOP"},
    }
    body, headers = signed(page_notification(messenger))
    assert (await hook.client.post(META_PATH, data=body, headers=headers)).status == 200
    assert [(m.channel, m.consent) for m in hook.publisher.messages] == [
        (Channel.WHATSAPP, Consent.OPT_OUT),
        (Channel.MESSENGER, None),
    ]


async def test_telegram_keywords_count_where_the_domain_lists_telegram(
    hook: Harness, configured: Harness
) -> None:
    for harness in (hook, configured):
        response = await harness.client.post(
            "/webhooks/telegram/acme_support_bot",
            json=update(text="basta"),
            headers=TELEGRAM_SECRET,
        )
        assert response.status == 200
    [default] = hook.publisher.messages
    [listed] = configured.publisher.messages
    assert (default.channel, default.consent) == (Channel.TELEGRAM, None)
    assert (listed.channel, listed.consent) == (Channel.TELEGRAM, Consent.OPT_OUT)


def _preferences(*preferences: dict[str, object]) -> dict[str, object]:
    """A ``user_preferences`` notification as Meta's reference gives it."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"wa_id": "16505551234"}],
        "user_preferences": list(preferences),
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "102290129340398", "changes": [{"value": value, "field": "user_preferences"}]}
        ],
    }


def _preference(value: str, **fields: object) -> dict[str, object]:
    return {
        "wa_id": "16505551234",
        "detail": f"User requested to {value} marketing messages",
        "category": "marketing_messages",
        "value": value,
        "timestamp": 1699999700,  # a little before the tests' clock
        **fields,
    }


async def test_a_whatsapp_user_stopping_marketing_is_a_marketing_consent(hook: Harness) -> None:
    """WhatsApp's "Offers and announcements" setting: marketing templates alone stop."""
    for value in ("stop", "stop", "resume"):  # Meta's retry, then the user changes their mind
        body, headers = signed(_preferences(_preference(value)))
        assert (await hook.client.post(META_PATH, data=body, headers=headers)).status == 200
    stop, again, resume = hook.publisher.events
    assert isinstance(stop, ConsentReported)
    assert isinstance(resume, ConsentReported)
    assert (stop.channel, stop.endpoint, stop.customer_address) == (
        Channel.WHATSAPP,
        "106540352242922",
        "+16505551234",
    )
    assert stop.customer_id == "phone:+16505551234"  # this domain links phone channels
    assert (stop.consent, stop.scope, stop.provider_status) == (
        Consent.OPT_OUT,
        ConsentScope.MARKETING,
        "stop",
    )
    assert (resume.consent, resume.scope) == (Consent.OPT_IN, ConsentScope.MARKETING)
    assert again.id == stop.id != resume.id
    assert stop.occurred_at == 1699999700


async def test_a_user_known_by_their_id_alone_and_other_preferences(hook: Harness) -> None:
    bsuid = "US.13491208655302741918"
    body, headers = signed(
        _preferences(
            _preference("stop", wa_id=None, user_id=bsuid),
            _preference("stop", category="utility_messages"),  # none Meta documents
            _preference("pause"),
            _preference("stop", wa_id=None),  # names no user: set aside alone
        )
    )
    assert (await hook.client.post(META_PATH, data=body, headers=headers)).status == 200
    [report] = hook.publisher.events
    assert isinstance(report, ConsentReported)
    assert (report.customer_address, report.customer_id) == (bsuid, f"whatsapp:{bsuid}")
    assert (report.consent, report.scope) == (Consent.OPT_OUT, ConsentScope.MARKETING)
    [letter] = hook.publisher.dead_letters
    assert "names neither the user's number nor their id" in letter.reason
