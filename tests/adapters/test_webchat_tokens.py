"""Web chat credentials and settings by value (``adapters.webchat_tokens``,
``adapters.webchat_cors``, ``adapters.webchat``), sectioned by rule:

1. A session token verifies only unchanged, for its domain, before its expiry; a refusal
   never quotes the token.
2. A login's canonical string is fixed; any change of a signed field breaks the signature;
   unusable fields are 400, a bad signature 403, an expired login 401.
3. A verified login publishes one link command per identity, spelled by
   ``normalize_identity``, with ids stable across retries.
4. A message belongs to the token's session and, for a signed-in session, to its user.
5. Allowed origins are exact browser origins, validated when the configuration loads;
   CORS headers name an allowed origin only.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import webchat_cors as cors
from adapters.base import BadRequest, SignatureRejected
from adapters.config import SecretMissing
from adapters.webchat import WebchatConfig, parse_message
from adapters.webchat_tokens import (
    LOGIN_LIFETIME_MAX,
    TOKEN_MAX,
    LoginIn,
    SessionClaims,
    SessionKeys,
    TokenRejected,
    bearer_token,
    issue_token,
    link_requests,
    login_canonical,
    new_session_id,
    session_key,
    sign_login,
    verify_login,
    verify_token,
)
from schemas import AGENT_EVENT_DECODER, CustomerLinkRequested

NOW = 1_700_000_000.0
SECRET = "session-secret-for-tests"
IDENTITY = "identity-secret-for-tests"
KEY = session_key(SECRET, "acme")
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_."


def claims(**overrides: Any) -> SessionClaims:
    fields: dict[str, Any] = {
        "domain": "acme",
        "session_id": "s" * 32,
        "expires_at": int(NOW) + 3600,
        "user_id": None,
    }
    return SessionClaims(**(fields | overrides))


def login(**overrides: Any) -> LoginIn:
    fields: dict[str, Any] = {
        "user_id": "42",
        "email": "Ann@Example.com",
        "phone": "+1 (415) 555-0100",
        "expires_at": int(NOW) + 300,
        "signature": "",
    }
    unsigned = LoginIn(**(fields | overrides))
    if overrides.get("signature"):
        return unsigned
    return msgspec.structs.replace(unsigned, signature=sign_login(IDENTITY, "acme", unsigned))


# -- 1. session tokens --------------------------------------------------------------------------


def test_a_token_verifies_unchanged_for_its_domain_until_it_expires() -> None:
    issued = claims(user_id="42")
    token = issue_token(KEY, issued)
    assert re.fullmatch(r"v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", token)
    assert verify_token(KEY, token, "acme", NOW) == issued
    assert verify_token(KEY, token, "acme", issued.expires_at - 1) == issued
    with pytest.raises(TokenRejected, match="expired"):
        verify_token(KEY, token, "acme", issued.expires_at)


def test_a_token_of_one_domain_does_not_verify_in_another_even_with_the_same_secret() -> None:
    token = issue_token(KEY, claims())
    with pytest.raises(TokenRejected, match="invalid"):
        verify_token(session_key(SECRET, "globex"), token, "globex", NOW)
    # Signed with the other domain's key but claiming acme: the claims are checked too.
    globex_key = session_key(SECRET, "globex")
    with pytest.raises(TokenRejected, match="another domain"):
        verify_token(globex_key, issue_token(globex_key, claims()), "globex", NOW)


@given(position=st.integers(min_value=0), replacement=st.sampled_from(TOKEN_ALPHABET))
def test_any_changed_character_is_refused(position: int, replacement: str) -> None:
    token = issue_token(KEY, claims(user_id="42"))
    at = position % len(token)
    tampered = token[:at] + replacement + token[at + 1 :]
    if tampered == token:
        return
    with pytest.raises(TokenRejected) as refused:
        verify_token(KEY, tampered, "acme", NOW)
    assert tampered not in refused.value.reason
    assert token not in refused.value.reason


@given(st.text(max_size=3000))
def test_any_other_string_is_refused_without_being_quoted(text: str) -> None:
    with pytest.raises(TokenRejected) as refused:
        verify_token(KEY, text, "acme", NOW)
    assert refused.value.status == 401
    assert len(refused.value.reason) < 40


def test_malformed_tokens_are_refused_before_any_decoding() -> None:
    good = issue_token(KEY, claims())
    for token in (
        "",
        "v2" + good[2:],
        good + ".x",
        "v1." + "a" * TOKEN_MAX,
        good.replace(".", "$"),
    ):
        with pytest.raises(TokenRejected, match="malformed"):
            verify_token(KEY, token, "acme", NOW)


def test_the_longest_user_id_still_fits_a_token() -> None:
    issued = claims(user_id="\U0001f600" * 320, domain="d" * 64, session_id="s" * 128)
    token = issue_token(session_key(SECRET, "d" * 64), issued)
    assert len(token) <= TOKEN_MAX
    assert verify_token(session_key(SECRET, "d" * 64), token, "d" * 64, NOW) == issued


def test_new_session_ids_follow_the_session_id_rule_and_differ() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", i) for i in ids)


def test_the_bearer_header_is_required() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for header in (None, "", "Basic abc", "Bearer", "abc"):
        with pytest.raises(TokenRejected):
            bearer_token(header)


def test_keys_come_from_the_named_variable_or_a_generated_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = SessionKeys({"SESSION": SECRET})
    assert keys.key("acme", "SESSION") == KEY
    with pytest.raises(SecretMissing):
        keys.key("acme", "UNSET")
    generated = keys.key("acme", None)
    assert generated == keys.key("acme", None) != KEY
    assert keys.key("globex", None) != generated
    assert SessionKeys({}).key("acme", None) != generated  # another process, another secret


# -- 2. signed logins ---------------------------------------------------------------------------


def test_the_canonical_string_is_six_lines_in_a_fixed_order() -> None:
    signed = login(expires_at=1_700_000_300)
    assert login_canonical("acme", signed) == (
        "switchboard-webchat-login-v1\nacme\n42\nAnn@Example.com\n+1 (415) 555-0100\n1700000300"
    )
    bare = login(email=None, phone=None, expires_at=1_700_000_300)
    assert login_canonical("acme", bare) == "switchboard-webchat-login-v1\nacme\n42\n\n\n1700000300"


def test_a_verified_login_names_the_user_and_normalized_identities() -> None:
    verified = verify_login(IDENTITY, "acme", login(), NOW)
    assert verified.customer_id == "user:42"
    assert verified.identities == ("email:ann@example.com", "phone:+14155550100")
    assert verify_login(IDENTITY, "acme", login(email=None, phone=None), NOW).identities == ()


_FIELD_VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
)


@given(
    field=st.sampled_from(["user_id", "email", "phone", "expires_at", "domain"]),
    value=_FIELD_VALUES,
    seconds=st.integers(min_value=1, max_value=LOGIN_LIFETIME_MAX // 2),
)
def test_any_changed_field_breaks_the_signature(field: str, value: str, seconds: int) -> None:
    signed = login()
    domain = "acme"
    if field == "domain":
        domain = value
    elif field == "expires_at":
        changed = msgspec.structs.replace(signed, expires_at=signed.expires_at + seconds)
    else:
        if getattr(signed, field) == value or (field == "phone" and len(value) > 32):
            return
        changed = msgspec.structs.replace(signed, **{field: value})
    if field == "domain":
        if value == "acme":
            return
        changed = signed
    with pytest.raises(SignatureRejected) as refused:
        verify_login(IDENTITY, domain, changed, NOW)
    assert refused.value.status == 403
    assert signed.signature not in refused.value.reason


def test_a_login_under_another_secret_is_refused() -> None:
    with pytest.raises(SignatureRejected):
        verify_login("another-secret", "acme", login(), NOW)


def test_a_login_expires_and_may_not_reach_far_ahead() -> None:
    with pytest.raises(TokenRejected, match="expired"):
        verify_login(IDENTITY, "acme", login(expires_at=int(NOW)), NOW)
    with pytest.raises(BadRequest, match="ahead") as refused:
        verify_login(IDENTITY, "acme", login(expires_at=int(NOW) + LOGIN_LIFETIME_MAX + 1), NOW)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"email": "ann\n@example.com"}, "login email holds a control character"),
        ({"phone": "+1415\x005550100"}, "login phone holds a control character"),
        ({"email": ""}, "left out rather than empty"),
        ({"phone": ""}, "left out rather than empty"),
        ({"email": "not an address"}, "login email is unusable"),
        ({"phone": "0800 FLOWERS"}, "login phone is unusable"),
        ({"user_id": "ann smith"}, "login user_id is unusable"),
        ({"user_id": " 42"}, "login user_id is unusable"),
    ],
)
def test_unusable_fields_are_400_with_a_reason_that_quotes_nothing(
    overrides: dict[str, str], reason: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        verify_login(IDENTITY, "acme", login(**overrides), NOW)
    assert refused.value.status == 400
    assert reason in refused.value.reason
    for value in overrides.values():
        if value.strip():
            assert value not in refused.value.reason


def test_the_readme_example_signs_a_login_the_service_accepts() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Web chat") :]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)  # noqa: S102 (our own README's example)
    made = namespace["webchat_login"](IDENTITY, "acme", "42", email="ann@example.com")
    verified = verify_login(
        IDENTITY, "acme", msgspec.convert(made, LoginIn), made["expires_at"] - 1
    )
    assert verified.identities == ("email:ann@example.com",)


# -- 3. link commands ---------------------------------------------------------------------------


def test_a_login_links_each_identity_to_its_user_with_stable_ids() -> None:
    verified = verify_login(IDENTITY, "acme", login(), NOW)
    commands = link_requests("acme", verified, NOW)
    assert [(c.customer_id, c.identity, c.source, c.domain) for c in commands] == [
        ("user:42", "email:ann@example.com", "webchat_login", "acme"),
        ("user:42", "phone:+14155550100", "webchat_login", "acme"),
    ]
    assert [c.id for c in link_requests("acme", verified, NOW + 5)] == [c.id for c in commands]
    assert len({c.id for c in commands}) == 2
    decoded = AGENT_EVENT_DECODER.decode(msgspec.json.encode(commands[0]))
    assert isinstance(decoded, CustomerLinkRequested)
    assert decoded == commands[0]


# -- 4. messages of a session -------------------------------------------------------------------


def test_a_message_belongs_to_the_tokens_session_and_user() -> None:
    config = WebchatConfig(enabled=True)
    session = claims()
    anonymous = parse_message(
        "acme", config, b'{"message_id": "m1", "text": "hi"}', None, NOW, session=session
    )
    assert (anonymous.customer_address, anonymous.customer_id) == (
        session.session_id,
        f"webchat:{session.session_id}",
    )
    signed_in = parse_message(
        "acme",
        config,
        b'{"message_id": "m1", "text": "hi"}',
        None,
        NOW,
        session=claims(user_id="42"),
    )
    assert signed_in.customer_id == "user:42"
    other = msgspec.json.encode({"session_id": "t" * 32, "message_id": "m1", "text": "hi"})
    with pytest.raises(SignatureRejected, match="another session"):
        parse_message("acme", config, other, None, NOW, session=session)
    with pytest.raises(BadRequest, match="session_id is required"):
        parse_message("acme", config, b'{"message_id": "m1", "text": "hi"}', None, NOW)


# -- 5. origins ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origins",
    [
        ["https://shop.example.com", "http://127.0.0.1:8000", "https://[::1]:8443"],
        [],
    ],
)
def test_browser_origins_are_accepted(origins: list[str]) -> None:
    config = msgspec.convert({"enabled": True, "allowed_origins": origins}, WebchatConfig)
    assert config.allowed_origins == tuple(origins)


@pytest.mark.parametrize(
    ("origins", "reason"),
    [
        (["*"], "'*' is not accepted"),
        (["https://shop.example.com/"], "without a path"),
        (["https://Shop.example.com"], "lower"),
        (["shop.example.com"], "scheme://host"),
        (["ftp://shop.example.com"], "scheme://host"),
        (["https://shop.example.com:443"], "default port"),
        (["https://shop.example.com:70000"], "65535"),
        (["https://a.example", "https://a.example"], "twice"),
        ([f"https://{'a' * 250}.com"], "255"),
        ([f"https://s{n}.example" for n in range(cors.ORIGINS_MAX + 1)], "50"),
    ],
)
def test_other_origins_are_refused_when_the_configuration_loads(
    origins: list[str], reason: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(reason)):
        msgspec.convert({"enabled": True, "allowed_origins": origins}, WebchatConfig)


@pytest.mark.parametrize("seconds", [59, 7 * 24 * 3600 + 1])
def test_the_token_lifetime_is_bounded(seconds: int) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"session_token_seconds": seconds}, WebchatConfig)


def test_cors_headers_name_an_allowed_origin_only() -> None:
    origins = ("https://shop.example.com",)
    assert cors.preflight_headers("https://shop.example.com", origins) == {
        "Access-Control-Allow-Origin": "https://shop.example.com",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "authorization, content-type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }
    for origin in (None, "https://evil.example", "null", "https://shop.example.com.evil.example"):
        assert cors.preflight_headers(origin, origins) is None
        assert cors.response_headers(origin, origins) == {"Vary": "Origin"}
    assert cors.preflight_headers("https://shop.example.com", ()) is None
    assert cors.socket_refused("https://evil.example", origins)
    assert not cors.socket_refused(None, origins)
    assert not cors.socket_refused("https://evil.example", ())
