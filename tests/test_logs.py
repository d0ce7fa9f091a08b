"""No log line holds a secret or a customer's data: the redaction rules, then full runs.

The rules are tested by value first (``runtime.logging``'s docstring numbers them).
Then the whole service runs through one scenario with planted secrets and customer data —
every provider's webhook valid and malformed, the API with good, wrong, foreign and
undecodable tokens, a 500 caused by a corrupt row — twice: in this process
(``running_service``, the configured handler pointed at a buffer, aiohttp's access log
switched on, anything else written to the file descriptors captured too), and as
``switchboard run`` in a child process (its own logging set-up, its stderr captured). No
planted value may appear in the output, raw, percent-encoded or JSON-escaped.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
import structlog
from aiohttp.http_exceptions import BadHttpMessage
from twilio.request_validator import RequestValidator

from adapters.webchat import SOCKET_PROTOCOL
from router.api.auth import Scope, create_token
from runtime import logging as logs
from switchboard.cli import configure, new_parser
from switchboard.config import Config
from tests.conftest import Infrastructure
from tests.logcapture import captured_logs, lines_of
from tests.support import make_raw_config, running_service, to_toml, wait_until

# -- planted values ------------------------------------------------------------------------

PHONE = "+14155557781"
EMAIL = "zoe.plantagenet@example.org"
NAME = "Zoë Plantagenet"
TEXT = "where is parcel quokka-ferntree"
USER_ID = "customer-planted-quince"
TELEGRAM_USER = 777000123
SECRETS = {
    "TWILIO_AUTH_TOKEN": "planted-twilio-auth-4c1d9a",
    "META_APP_SECRET": "planted-meta-app-secret-77e2",
    "META_VERIFY_TOKEN": "planted-meta-verify-0b5f",
    "MAILGUN_SIGNING_KEY": "planted-mailgun-key-9d3e",
    "MAILGUN_API_KEY": "planted-mailgun-api-key-3e0c",
    "TELEGRAM_SECRET_TOKEN": "planted-telegram-secret-61aa",
    "TELEGRAM_BOT_TOKEN": "424242:planted-telegram-bot-token",
    "WHATSAPP_ACCESS_TOKEN": "planted-whatsapp-access-5a8b",
    "SWITCHBOARD_ADMIN_TOKEN": "planted-bootstrap-admin-52f0",
    "WEBCHAT_IDENTITY_SECRET": "planted-webchat-identity-8e41",
    "WEBCHAT_SESSION_SECRET": "planted-webchat-session-2f7c",
}
TWILIO_NUMBER = "+14155550100"
WHATSAPP_NUMBER_ID = "106540352242922"
EGRESS_NOWHERE = "http://127.0.0.1:9"  # replies must never leave the machine

CHANNELS: dict[str, Any] = {
    "twilio": {
        "account_sid": "AC00000000000000000000000000000001",
        "api_base_url": EGRESS_NOWHERE,
        "numbers": [{"number": TWILIO_NUMBER, "domain": "acme"}],
    },
    "meta": {
        "graph_api_base_url": EGRESS_NOWHERE,
        "instagram_api_base_url": EGRESS_NOWHERE,
        "whatsapp": [{"phone_number_id": WHATSAPP_NUMBER_ID, "domain": "acme"}],
    },
    "telegram": {"api_base_url": EGRESS_NOWHERE, "bots": [{"name": "acme_bot", "domain": "acme"}]},
    "email": {
        "mailgun": {"api_base_url": EGRESS_NOWHERE},
        "addresses": [{"address": "support@acme.example", "domain": "acme"}],
    },
}
DOMAINS: dict[str, Any] = {
    "acme": {
        "webchat": {
            "enabled": True,
            "identity_secret_env": "WEBCHAT_IDENTITY_SECRET",
            "session_secret_env": "WEBCHAT_SESSION_SECRET",
            "allowed_origins": ["https://shop.example.com"],
        }
    },
    "globex": {"webchat": {"enabled": True}},
}
CAPACITY = {"webchat": 5, "sms": 5, "whatsapp": 5, "telegram": 5, "email": 5}


@dataclass
class Planted:
    """Everything a log line must never show; the scenario adds what it mints and signs."""

    values: dict[str, str] = field(
        default_factory=lambda: {
            "phone": PHONE,
            "phone digits": PHONE.lstrip("+"),
            "email": EMAIL,
            "name": NAME,
            "text": TEXT,
            "user id": USER_ID,
            "telegram user": str(TELEGRAM_USER),
            **{f"${name}": value for name, value in SECRETS.items()},
        }
    )

    def add(self, what: str, value: str) -> str:
        self.values[what] = value
        return value


def encoded_forms(value: str) -> set[str]:
    return {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


def assert_nothing_planted(output: str, planted: Planted) -> None:
    leaks = []
    for what, value in planted.values.items():
        for form in encoded_forms(value):
            at = output.find(form)
            if at >= 0:
                leaks.append(f"{what} ({form!r}): …{output[max(0, at - 200) : at + 100]}…")
    assert not leaks, "\n\n".join(leaks)


# -- rules 1 and 2: keys and patterns ------------------------------------------------------


def test_customer_keys_become_digests_and_secret_keys_disappear() -> None:
    event = logs.redact(
        None,
        "info",
        {"event": "x", "text": TEXT, "phone": PHONE, "authorization": "Bearer abc", "n": 3},
    )
    assert event["text"] == logs.fingerprint(TEXT) != logs.fingerprint(PHONE) == event["phone"]
    assert event["authorization"] == logs.REDACTED
    assert event["n"] == 3


@pytest.mark.parametrize(
    ("line", "kept", "gone"),
    [
        ("Authorization: Bearer abc.DEF-123", "Authorization: Bearer [redacted]", "abc.DEF"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic [redacted]", "dXNlcjpw"),
        ("sent sbt_Qx3-_9aZ", "sent sbt_[redacted]", "Qx3"),
        ("X-Hub-Signature-256: sha256=ab12", "X-Hub-Signature-256: [redacted]", "ab12"),
        ('"signature": "ab12cd"', '"signature": "[redacted]"', "ab12cd"),
        ("Cookie: a=1; b=2", "Cookie: [redacted]", "b=2"),
        ("GET /webhooks/meta?hub.verify_token=v1&x=2 HTTP/1.1", "meta?[query] HTTP", "v1"),
        (f"from {PHONE} to {EMAIL}", "from h:", PHONE),
        ("phone%3A%2B14155557781 and zoe%40example.org", "phone%3Ah:", "4155557781"),
        ("1 415 555 7781 or 415-555-7781 or (415) 555-7781", "or h:", "555"),
    ],
)
def test_patterns_mask_credentials_identities_and_query_strings(
    line: str, kept: str, gone: str
) -> None:
    scrubbed = logs.Redactor().scrub(line)
    assert kept in scrubbed
    # A digest is hex of a random key: three of them hold "555" about once in 140 runs.
    assert gone not in re.sub(r"h:[0-9a-f]{12}", "h:", scrubbed)


@pytest.mark.parametrize(
    "line",
    [
        "127.0.0.1:8080 answered in 12.5 ms",
        "partition 3 offset 1234567 of t1.conversations.inbound",
        "conversation 5b0a7c4e-2f61-4d0b-9a53-7c1e8d2f4a90 waited 3.25 s",
        "member aiokafka-0.14.0-ab6600d2-2345-4678-9f7e-534312345678 joined",
        "at 2026-12-01T02:36:08.499821Z",
        "what? nothing",
    ],
)
def test_ordinary_operational_text_is_left_alone(line: str) -> None:
    assert logs.Redactor(["some-secret-value"]).scrub(line) == line


def test_log_ids_are_never_taken_for_phone_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token's or a failed request's id is what its lines are found by: one the
    redaction masks (all digits, about one draw in 280) is drawn again."""
    drawn = iter(["123456789012", "000000000000", "12345678901a"])
    monkeypatch.setattr(logs.secrets_module, "token_hex", lambda _: next(drawn))
    assert logs.new_log_id() == "12345678901a"
    monkeypatch.undo()
    redactor = logs.Redactor()
    for _ in range(2_000):
        log_id = logs.new_log_id()
        assert re.fullmatch(r"[0-9a-f]{12}", log_id)
        assert redactor.scrub(f"token {log_id} revoked") == f"token {log_id} revoked"


def test_known_secret_values_are_masked_in_every_encoding() -> None:
    secret = "p@ss w/rd+é!"
    redactor = logs.Redactor([secret, "short"])
    for form in encoded_forms(secret):
        assert redactor.scrub(f"key={form};") == "key=[secret];"
    assert redactor.scrub("a short word") == "a short word"


def test_a_redactor_remembers_only_clean_strings_and_a_bounded_number_of_them() -> None:
    redactor = logs.Redactor(["planted-secret-value"])
    masked = [f"to {PHONE}", "key=planted-secret-value", "Authorization: Bearer abc123"]
    for _ in range(3):  # the second and third pass meet whatever the first one kept
        for line in masked:
            assert redactor.scrub(line) != line
        assert redactor.scrub("conversation_assigned") == "conversation_assigned"
    assert redactor.scrub(PHONE) != PHONE
    for index in range(logs.CLEAN_STRINGS_KEPT + 10):
        assert redactor.scrub(f"agent-{index:08d}") == f"agent-{index:08d}"
    assert redactor.scrub(f"to {PHONE}") != f"to {PHONE}"
    kept = redactor._clean
    assert 0 < len(kept) <= logs.CLEAN_STRINGS_KEPT
    assert not any(PHONE in text or "planted" in text or "Bearer" in text for text in kept)


def test_lines_are_stamped_in_utc_with_microseconds() -> None:
    before = time.time()
    stamp = logs.add_timestamp(None, "info", {})["timestamp"]
    after = time.time()
    assert len(stamp) == len("2026-12-04T11:35:02.123456Z")
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp.removesuffix("Z") + "+00:00").timestamp()
    assert before - 1e-6 <= parsed <= after + 1e-6


def test_the_configuration_names_its_secrets_by_variable() -> None:
    raw = make_raw_config("127.0.0.1:9092", "postgresql://sb:db-pass%21word@db/sb")
    raw |= {"domains": DOMAINS, "channels": CHANNELS}
    found = logs.secret_values(msgspec.convert(raw, Config), SECRETS)
    assert set(found) == {*SECRETS.values(), "db-pass!word"}


# -- rule 3: exceptions ----------------------------------------------------------------------


def _raise_chained() -> None:
    try:
        {}[EMAIL]
    except KeyError as error:
        raise ValueError(f"no customer {PHONE}") from error


def test_a_traceback_keeps_types_and_frames_but_no_message() -> None:
    with pytest.raises(ValueError, match="no customer") as caught:
        _raise_chained()
    rendered = logs.format_exception(caught.value)
    assert "KeyError" in rendered
    assert "direct cause" in rendered
    assert "ValueError" in rendered
    assert "_raise_chained" in rendered
    assert EMAIL not in rendered
    assert PHONE not in rendered


def test_only_our_own_classes_may_vouch_for_their_message() -> None:
    ours = type("Vouched", (Exception,), {"log_message_is_safe": True, "__module__": "router.x"})
    theirs = type("Vouched", (Exception,), {"log_message_is_safe": True, "__module__": "lib"})
    assert logs.describe_exception(ours("safe words"), ours=True) == "router.x.Vouched: safe words"
    assert logs.describe_exception(ours("safe words"), ours=False) == "router.x.Vouched"
    assert logs.describe_exception(theirs("safe words"), ours=True) == "lib.Vouched"


# -- rule 5: rate limit ------------------------------------------------------------------------


def test_the_rate_limit_lets_n_lines_through_per_window_then_counts_the_rest() -> None:
    now = [0.0]
    limit = logs.RateLimit(per_window=2, window_seconds=60, clock=lambda: now[0])
    assert [limit.admit("a") for _ in range(5)] == [0, 0, None, None, None]
    assert limit.admit("b") == 0
    now[0] = 61
    assert limit.admit("a") == 3
    assert limit.admit("a") == 0


def test_the_rate_limit_keeps_a_bounded_number_of_keys() -> None:
    limit = logs.RateLimit(per_window=1, max_keys=3, clock=lambda: 0.0)
    assert [limit.admit(n) for n in range(6)] == [0, 0, 0, 0, None, None]


# -- rules 3 and 4 through the configured handler ------------------------------------------------


def test_a_clients_malformed_request_is_a_warning_without_traceback_and_rate_limited() -> None:
    server = logging.getLogger("aiohttp.server")
    with captured_logs([]) as buffer:
        for _ in range(15):
            error = BadHttpMessage(f"Invalid header value char: b'X-Email: {EMAIL}'")
            server.error("Error handling request from %s", "10.1.2.3", exc_info=error)
    lines = lines_of(buffer)
    assert len(lines) == 10
    assert {line["level"] for line in lines} == {"warning"}
    assert all("exception" not in line for line in lines)
    assert lines[0]["error"] == "aiohttp.http_exceptions.BadHttpMessage"
    assert EMAIL not in buffer.getvalue()


def test_the_broker_clients_warnings_are_rate_limited_per_message() -> None:
    """While the broker is away aiokafka writes a line per connection attempt and fetch."""
    client = logging.getLogger("aiokafka.conn")
    with captured_logs([]) as buffer:
        for attempt in range(50):
            client.error("Unable connect to node with id %s: %s", attempt % 3, "refused")
            client.warning("Got error produce response: %s", "NotLeader")
    lines = lines_of(buffer)
    assert len(lines) == 20  # ten of each message a window
    assert {line["logger"] for line in lines} == {"aiokafka.conn"}


def test_library_exceptions_lose_their_message_and_asyncio_its_reprs() -> None:
    with captured_logs([SECRETS["TWILIO_AUTH_TOKEN"]]) as buffer:
        token = SECRETS["TWILIO_AUTH_TOKEN"]
        try:
            raise LookupError(f"no codec for {EMAIL} {token}")
        except LookupError as error:
            logging.getLogger("aiokafka").error("failed for %s", PHONE, exc_info=error)
        logging.getLogger("asyncio").error(
            f"Exception in callback deliver('{EMAIL}')\nhandle: <Handle deliver('{EMAIL}')>",
            exc_info=RuntimeError(EMAIL),
        )
        logging.getLogger("asyncpg").warning("connection to %s closed", token)
    lines = lines_of(buffer)
    assert [line["logger"] for line in lines] == ["aiokafka", "asyncio", "asyncpg"]
    assert lines[0]["event"].startswith("failed for h:")
    assert lines[0]["exception"].endswith("LookupError")
    assert lines[1]["event"] == "Exception in callback deliver"
    assert lines[1]["exception"].endswith("RuntimeError")
    assert lines[2]["event"] == "connection to [secret] closed"
    assert_nothing_planted(buffer.getvalue(), Planted())


def test_our_own_exceptions_values_and_uncaught_errors_are_rendered_safely() -> None:
    log = structlog.get_logger("tests.logs")
    with captured_logs([]) as buffer:
        try:
            raise UnicodeDecodeError("utf-8", EMAIL.encode(), 0, 1, PHONE)
        except UnicodeDecodeError as error:
            log.exception("decode_failed", error=error, payload=EMAIL.encode(), tags=[PHONE])
            sys.excepthook(type(error), error, error.__traceback__)
    decode, uncaught = lines_of(buffer)
    assert decode["error"] == "UnicodeDecodeError"
    assert decode["payload"] == f"[{len(EMAIL)} bytes]"
    assert decode["tags"] == [logs.fingerprint(PHONE)]
    assert decode["exception"].endswith("UnicodeDecodeError")
    assert uncaught["event"] == "uncaught_exception"
    assert uncaught["level"] == "critical"
    assert_nothing_planted(buffer.getvalue(), Planted())


# -- the full runs -------------------------------------------------------------------------------


def scenario_config(infrastructure: Infrastructure, database_url: str) -> dict[str, Any]:
    raw = make_raw_config(infrastructure.bootstrap_servers, database_url)
    raw["http"]["public_url"] = f"http://127.0.0.1:{raw['http']['port']}"
    return raw | {"domains": DOMAINS, "channels": CHANNELS}


def _hmac_hex(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


async def _raw_status(port: int, request: bytes) -> int:
    """Send bytes aiohttp's client would refuse to send; the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


class Scenario:
    """Drives a running service (in this process or a child) with planted values."""

    def __init__(self, base: str, session: aiohttp.ClientSession, database_url: str) -> None:
        self.base = base
        self.port = int(base.rsplit(":", 1)[1])
        self.http = session
        self.database_url = database_url
        self.planted = Planted()
        self.statuses: dict[str, int] = {}

    async def call(
        self, name: str, method: str, path: str, *, expect: int | set[int] | None = None, **kw: Any
    ) -> Any:
        async with self.http.request(method, self.base + path, **kw) as response:
            body = await response.read()
            self.statuses[name] = response.status
        if expect is not None:
            allowed = {expect} if isinstance(expect, int) else expect
            assert response.status in allowed, (name, response.status, body[:300])
        assert response.status < 500 or name == "forced 500", (name, response.status, body[:300])
        return body

    async def raw(self, name: str, request: bytes, expect: int) -> None:
        self.statuses[name] = status = await _raw_status(self.port, request)
        assert status == expect, (name, status)

    async def run(self) -> None:
        pool: asyncpg.Pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                tokens = {
                    who: (await create_token(conn, domain=domain, scope=scope, agent_id=agent))[1]
                    for who, domain, scope, agent in (
                        ("acme admin", "acme", Scope.ADMIN, None),
                        ("globex admin", "globex", Scope.ADMIN, None),
                        ("ann", "acme", Scope.AGENT, "ann"),
                    )
                }
            for who, token in tokens.items():
                self.planted.add(f"{who} token", token)
            await self.api(tokens)
            await self.webchat()
            await self.twilio()
            await self.meta()
            await self.telegram()
            await self.mailgun()
            await wait_until(
                lambda: pool.fetchval("SELECT count(DISTINCT channel) FROM conversations"),
                what="conversations routed",
            )
            # Give the router time to route what came in, so its decision lines are captured.
            await wait_until(
                lambda: pool.fetchval(
                    "SELECT count(*) >= 5 FROM conversations WHERE owner_agent_id = 'ann'"
                ),
                timeout=30,
                what="a conversation per channel assigned to ann",
            )
            await self.api_reads(tokens, pool)
        finally:
            await pool.close()

    # -- the API --------------------------------------------------------------------------

    async def api(self, tokens: dict[str, str]) -> None:
        admin = {"Authorization": f"Bearer {tokens['acme admin']}"}
        ann = "/v1/domains/acme/agents/ann"
        body = {"name": NAME, "capacity": CAPACITY}
        await self.call("register", "PUT", ann, json=body, headers=admin, expect=202)
        await self.call(
            "online",
            "POST",
            ann + "/presence",
            json={"status": "online"},
            headers=admin,
            expect=202,
        )
        await wait_until(lambda: self._online("ann"), what="ann online", timeout=20, interval=0.1)
        queues = "/v1/domains/acme/queues"
        wrong = self.planted.add("wrong token", "sbt_" + "plantedWrongToken" + uuid.uuid4().hex)
        await self.call("wrong token", "GET", queues, expect=401, headers=_bearer(wrong))
        await self.call(
            "another domain's token",
            "GET",
            queues,
            expect=403,
            headers=_bearer(tokens["globex admin"]),
        )
        bootstrap = _bearer(SECRETS["SWITCHBOARD_ADMIN_TOKEN"])
        await self.call("bootstrap token", "GET", queues, expect=200, headers=bootstrap)
        basic = base64.b64encode(b"admin:planted-basic-password").decode()
        self.planted.add("basic password", "planted-basic-password")
        self.planted.add("basic credential", basic)
        await self.call(
            "basic", "GET", queues, expect=401, headers={"Authorization": f"Basic {basic}"}
        )
        cookie = self.planted.add("cookie", "planted-cookie-5512")
        await self.call(
            "cookie", "GET", queues, expect=200, headers={**admin, "Cookie": f"session={cookie}"}
        )
        for name, header in (
            ("another domain's token, not UTF-8", tokens["globex admin"].encode() + b"\xe9"),
            ("token, not ASCII", tokens["acme admin"].encode() + "é".encode()),
            ("token, too long", tokens["acme admin"].encode() * 20),
        ):
            request = (
                b"GET /v1/domains/acme/queues HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer " + header + b"\r\n\r\n"
            )
            await self.raw(name, request, expect=401)
        await self.raw(
            "header with a control character",
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: {EMAIL}".encode() + b"\x01\r\n\r\n",
            expect=400,
        )
        verify = SECRETS["META_VERIFY_TOKEN"]
        await self.raw(
            "query not UTF-8",
            f"GET /webhooks/meta?hub.verify_token={verify}&x=".encode()
            + b"\xe9 HTTP/1.1\r\nHost: x\r\n\r\n",
            expect=400,
        )
        owner = f"/v1/domains/acme/customers/phone:{urllib.parse.quote(PHONE)}/owner"
        await self.call(
            "customer owner", "PUT", owner, json={"agent_id": "ann"}, headers=admin, expect=202
        )

    async def _online(self, agent_id: str) -> bool:
        conn = await asyncpg.connect(self.database_url)
        try:
            return bool(
                await conn.fetchval(
                    "SELECT presence = 'online' FROM agents WHERE agent_id = $1", agent_id
                )
            )
        finally:
            await conn.close()

    async def api_reads(self, tokens: dict[str, str], pool: asyncpg.Pool) -> None:
        admin = _bearer(tokens["acme admin"])
        conversation = await pool.fetchval(
            "SELECT conversation_id FROM conversations WHERE channel = 'webchat'"
        )
        path = f"/v1/domains/acme/conversations/{conversation}"
        timeline = await self.call("conversation", "GET", path, headers=admin, expect=200)
        assert TEXT.encode() in timeline  # the agent needs the text; the logs do not
        await self.call(
            "reply",
            "POST",
            path + "/reply",
            json={"text": f"{TEXT} — write to {EMAIL}"},
            headers=admin,
            expect=202,
        )
        await self.call(
            "agent's own view", "GET", "/v1/domains/acme/agents/ann", headers=_bearer(tokens["ann"])
        )
        # A fault we can cause for real: a stored record the API cannot decode. msgspec's
        # message quotes the bad value, here customer data and another domain's token.
        corrupt = f"{NAME}: {TEXT} {EMAIL} {tokens['globex admin']}"
        await pool.execute(
            "UPDATE agents SET record = jsonb_set(record::jsonb, '{presence}', to_jsonb($1::text))"
            " WHERE domain = 'acme' AND agent_id = 'ann'",
            corrupt,
        )
        answer = await self.call(
            "forced 500", "GET", "/v1/domains/acme/agents/ann", headers=admin, expect=500
        )
        assert set(json.loads(answer)) == {"error", "error_id"}

    # -- channels ---------------------------------------------------------------------------

    async def webchat(self) -> None:
        base = "/v1/domains/acme/webchat"
        origin = {"Origin": "https://shop.example.com"}
        login = {"user_id": USER_ID, "email": EMAIL, "phone": PHONE}
        login["expires_at"] = int(time.time()) + 300
        lines = ["switchboard-webchat-login-v1", "acme", USER_ID, EMAIL, PHONE]
        canonical = "\n".join([*lines, str(login["expires_at"])])
        signature = _hmac_hex(SECRETS["WEBCHAT_IDENTITY_SECRET"], canonical.encode())
        login["signature"] = self.planted.add("webchat login signature", signature)
        await self.call("webchat preflight", "OPTIONS", base + "/sessions", headers=origin)
        answer = await self.call(
            "webchat session", "POST", base + "/sessions", json={"login": login}, expect=201
        )
        session = json.loads(answer)
        sid = session["session_id"]
        token = self.planted.add("webchat token", session["token"])
        forged = {**login, "signature": self.planted.add("webchat forged login", "ab" * 32)}
        await self.call(
            "webchat forged login", "POST", base + "/sessions", json={"login": forged}, expect=403
        )
        answer = await self.call(
            "webchat refresh", "POST", f"{base}/sessions/{sid}/token", headers=_bearer(token)
        )
        token = self.planted.add("webchat refreshed token", json.loads(answer)["token"])
        bearer = {**_bearer(token), **origin}
        tampered = self.planted.add("webchat tampered token", token[:-4] + "AAAA")
        await self.call(
            "webchat tampered token",
            "POST",
            base + "/messages",
            json={"message_id": "m0", "text": TEXT},
            headers=_bearer(tampered),
            expect=401,
        )
        socket = f"{self.base}{base}/sessions/{sid}/socket"
        async with self.http.ws_connect(socket, params={"token": token}) as ws:
            await ws.close()
        async with self.http.ws_connect(socket, protocols=(SOCKET_PROTOCOL, f"bearer.{token}")):
            pass
        for name, kwargs in (
            ("webchat socket without our protocol", {"protocols": (f"bearer.{token}",)}),
            ("webchat socket, tampered", {"params": {"token": tampered}}),
        ):
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await self.http.ws_connect(socket, **kwargs)
            self.statuses[name] = 400
        path = base + "/messages"
        user_hash = _hmac_hex(SECRETS["WEBCHAT_IDENTITY_SECRET"], USER_ID.encode())
        self.planted.add("webchat user hash", user_hash)
        message = {
            "session_id": sid,
            "message_id": "m1",
            "text": f"{TEXT} {EMAIL} {PHONE}",
            "user_id": USER_ID,
            "user_hash": user_hash,
        }
        await self.call("webchat", "POST", path, json=message, headers=bearer, expect=202)
        forged = {**message, "message_id": "m2", "user_hash": "0" * 64}
        await self.call(
            "webchat forged identity", "POST", path, json=forged, headers=bearer, expect={401, 403}
        )
        nul = {**message, "message_id": "m3", "text": f"{TEXT}\u0000{EMAIL}"}
        await self.call("webchat NUL", "POST", path, json=nul, headers=bearer)
        huge = {**message, "message_id": "m4", "text": TEXT * 100_000}
        await self.call("webchat huge", "POST", path, json=huge, headers=bearer, expect=413)
        await self.call(
            "webchat not UTF-8",
            "POST",
            path,
            data=b'{"message_id": "m5", "text": "\xe9' + EMAIL.encode() + b'"}',
            headers={"Content-Type": "application/json", **bearer},
            expect=400,
        )

    async def twilio(self) -> None:
        path = "/webhooks/twilio/sms"
        url = self.base + path
        params = {
            "MessageSid": "SMplanted0000000000000000000000001",
            "AccountSid": "AC00000000000000000000000000000001",
            "From": PHONE,
            "To": TWILIO_NUMBER,
            "Body": f"{TEXT} {EMAIL}",
            "NumMedia": "0",
            "ProfileName": NAME,
        }
        signature = RequestValidator(SECRETS["TWILIO_AUTH_TOKEN"]).compute_signature(url, params)
        self.planted.add("twilio signature", signature)
        sign = {"X-Twilio-Signature": signature}
        await self.call("twilio", "POST", path, data=params, headers=sign, expect=200)
        forged = RequestValidator("not-the-token").compute_signature(url, params)
        self.planted.add("twilio forged signature", forged)
        await self.call(
            "twilio bad signature",
            "POST",
            path,
            data=params,
            headers={"X-Twilio-Signature": forged},
            expect=403,
        )
        nul = {**params, "MessageSid": "SMplanted0000000000000000000000002", "Body": "a\x00b"}
        nul_signature = RequestValidator(SECRETS["TWILIO_AUTH_TOKEN"]).compute_signature(url, nul)
        await self.call(
            "twilio NUL", "POST", path, data=nul, headers={"X-Twilio-Signature": nul_signature}
        )
        await self.call(
            "twilio not UTF-8",
            "POST",
            path,
            data=f"From={urllib.parse.quote(PHONE)}&Body=".encode() + b"\xe9\xff",
            headers={**sign, "Content-Type": "application/x-www-form-urlencoded"},
            expect={400, 403},
        )
        await self.call(
            "twilio huge",
            "POST",
            path,
            data={**params, "Body": TEXT * 100_000},
            headers=sign,
            expect=413,
        )
        await self.call(
            "twilio gzip junk",
            "POST",
            path,
            data=f"From={urllib.parse.quote(PHONE)}".encode(),
            headers={**sign, "Content-Encoding": "gzip"},
            expect={400, 415},
        )

    async def meta(self) -> None:
        verify = SECRETS["META_VERIFY_TOKEN"]
        query = {"hub.mode": "subscribe", "hub.verify_token": verify, "hub.challenge": "1158201444"}
        await self.call("meta verify", "GET", "/webhooks/meta", params=query, expect=200)
        wrong = self.planted.add("wrong verify token", "planted-wrong-verify-3c2b")
        query = {**query, "hub.verify_token": wrong}
        await self.call("meta verify wrong", "GET", "/webhooks/meta", params=query, expect=403)
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": WHATSAPP_NUMBER_ID,
                                },
                                "contacts": [
                                    {"profile": {"name": NAME}, "wa_id": PHONE.lstrip("+")}
                                ],
                                "messages": [
                                    {
                                        "from": PHONE.lstrip("+"),
                                        "id": "wamid.planted-0001",
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": f"{TEXT} {EMAIL}"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
        body = json.dumps(payload).encode()
        await self.post_meta("meta", body, expect=200)
        await self.call(
            "meta bad signature",
            "POST",
            "/webhooks/meta",
            data=body,
            headers={"X-Hub-Signature-256": "sha256=" + _hmac_hex("not-the-secret", body)},
            expect=403,
        )
        # Signed but unusable: refused or set aside, whichever the adapter decides; never 5xx.
        await self.post_meta("meta malformed", body[:-40] + EMAIL.encode())
        await self.post_meta("meta not UTF-8", b'{"object": "\xe9' + EMAIL.encode())

    async def post_meta(self, name: str, body: bytes, expect: int | None = None) -> None:
        signature = "sha256=" + _hmac_hex(SECRETS["META_APP_SECRET"], body)
        self.planted.add(f"{name} signature", signature.removeprefix("sha256="))
        headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}
        await self.call(name, "POST", "/webhooks/meta", data=body, headers=headers, expect=expect)

    async def telegram(self) -> None:
        path = "/webhooks/telegram/acme_bot"
        person = {"id": TELEGRAM_USER, "first_name": NAME, "username": "zoeplanted"}
        update = {
            "update_id": 1,
            "message": {
                "message_id": 7,
                "from": {**person, "is_bot": False},
                "chat": {**person, "type": "private"},
                "date": int(time.time()),
                "text": f"{TEXT} {PHONE}",
            },
        }
        secret = {"X-Telegram-Bot-Api-Secret-Token": SECRETS["TELEGRAM_SECRET_TOKEN"]}
        await self.call("telegram", "POST", path, json=update, headers=secret, expect=200)
        wrong = {"X-Telegram-Bot-Api-Secret-Token": "planted-wrong-telegram-secret"}
        self.planted.add("wrong telegram secret", wrong["X-Telegram-Bot-Api-Secret-Token"])
        await self.call(
            "telegram wrong secret", "POST", path, json=update, headers=wrong, expect=403
        )
        await self.call(
            "telegram malformed",
            "POST",
            path,
            data=b'{"update_id": 2, "message": {"text": "' + EMAIL.encode(),
            headers={**secret, "Content-Type": "application/json"},
        )

    async def mailgun(self) -> None:
        path = "/webhooks/email/mailgun"
        timestamp = str(int(time.time()))
        token = self.planted.add("mailgun token", "planted" + uuid.uuid4().hex + uuid.uuid4().hex)
        signature = _hmac_hex(SECRETS["MAILGUN_SIGNING_KEY"], (timestamp + token).encode())
        self.planted.add("mailgun signature", signature)
        fields = {
            "recipient": "support@acme.example",
            "sender": EMAIL,
            "from": f"{NAME} <{EMAIL}>",
            "subject": f"Re: {TEXT}",
            "body-plain": f"{TEXT}\n\n{PHONE}",
            "stripped-text": TEXT,
            "Message-Id": "<planted-0001@mail.example.org>",
            "timestamp": timestamp,
            "token": token,
            "signature": signature,
        }
        await self.call("mailgun", "POST", path, data=fields, expect=200)
        forged = {**fields, "signature": _hmac_hex("not-the-key", (timestamp + token).encode())}
        self.planted.add("mailgun forged signature", forged["signature"])
        await self.call("mailgun bad signature", "POST", path, data=forged, expect=403)
        await self.call(
            "mailgun malformed multipart",
            "POST",
            path,
            data=b'--xyz\r\nContent-Disposition: form-data; name="sender"\r\n\r\n' + EMAIL.encode(),
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
            expect={400, 401, 403, 415},
        )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_the_capture_saw_the_run(output: str) -> None:
    """The capture is real: the run's characteristic lines are in it."""
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    names = {line.get("event") for line in events}
    assert {"client_error", "request_failed", "conversation_assigned"} <= names
    failed = next(line for line in events if line.get("event") == "request_failed")
    assert failed["level"] == "error"
    assert failed["error"] == "ValidationError"
    assert failed["exception"].endswith("msgspec.ValidationError")
    parser = [line for line in events if line.get("logger") == "aiohttp.server"]
    assert parser
    assert {line["level"] for line in parser} == {"warning"}


async def test_no_log_line_of_a_full_run_holds_a_planted_value(
    infrastructure: Infrastructure, database_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    config = msgspec.convert(scenario_config(infrastructure, database_url), Config)
    library_levels = {"aiohttp.access": logging.INFO, "aiokafka": logging.INFO}
    with captured_logs(logs.secret_values(config, SECRETS), library_levels) as buffer:
        async with running_service(config, SECRETS) as service:
            scenario = Scenario(service.base_url, service.session, database_url)
            await scenario.run()
            await _fail_where_only_asyncio_sees_it()
    out, err = capfd.readouterr()
    output = buffer.getvalue() + out + err
    assert_the_capture_saw_the_run(output)
    loggers = {line.get("logger") for line in lines_of(buffer)}
    assert {"aiohttp.access", "asyncio"} <= loggers
    assert "Task exception was never retrieved" in output
    assert "Exception in callback _raise_with" in output
    assert "?[query]" in output  # the access log's Meta verification, without its token
    assert_nothing_planted(output, scenario.planted)


async def _fail_where_only_asyncio_sees_it() -> None:
    """Errors nobody awaits reach the loop's exception handler, which logs reprs."""
    loop = asyncio.get_running_loop()
    handle = loop.call_soon(_raise_with, f"{EMAIL} {SECRETS['META_APP_SECRET']}")
    task = loop.create_task(_fail_unobserved())
    await asyncio.sleep(0.05)
    del task, handle
    gc.collect()


def _raise_with(value: str) -> None:
    raise RuntimeError(value)


async def _fail_unobserved() -> None:
    raise ValueError(f"{PHONE} {SECRETS['SWITCHBOARD_ADMIN_TOKEN']}")


async def test_no_log_line_of_switchboard_run_holds_a_planted_value(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    raw = scenario_config(infrastructure, database_url)
    config_path = tmp_path / "switchboard.toml"
    config_path.write_text(to_toml(raw))
    output_path = tmp_path / "switchboard.log"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
        },
        **SECRETS,
        "SWITCHBOARD_CONFIG": str(config_path),
        "SWITCHBOARD_STATE_DIR": str(tmp_path / "state"),
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_LOG_LEVEL": "DEBUG",
        "PYTHONWARNINGS": "always",
    }
    base = f"http://127.0.0.1:{raw['http']['port']}"
    with output_path.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "switchboard.cli",
            "run",
            env=env,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                assert process.returncode is None, output_path.read_text()[-3000:]
                try:
                    async with session.get(base + "/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout=60, interval=0.2, what="switchboard run ready")
            scenario = Scenario(base, session, database_url)
            await scenario.run()
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    text = output_path.read_text(errors="backslashreplace")
    assert_the_capture_saw_the_run(text)
    assert_nothing_planted(text, scenario.planted)


def test_a_customer_digest_is_keyed_so_hashing_every_number_finds_nothing() -> None:
    unkeyed = "h:" + hashlib.blake2b(PHONE.encode(), digest_size=6).hexdigest()
    logs.configure("json", digest_key="deployment-key-one")
    keyed = logs.fingerprint(PHONE)
    assert keyed != unkeyed
    assert logs.fingerprint(PHONE) == keyed  # the same customer is followed
    logs.configure("json", digest_key="deployment-key-one")
    assert logs.fingerprint(PHONE) == keyed  # another process with the same key agrees
    logs.configure("json", digest_key="deployment-key-two")
    assert logs.fingerprint(PHONE) != keyed


def test_the_command_line_keys_the_digests_with_the_configured_variable(tmp_path: Path) -> None:
    parser, _ = new_parser()
    args = parser.parse_args(["migrate"])
    environ = {
        "SWITCHBOARD_LOG_DIGEST_KEY": "from-the-environment",
        "DATABASE_URL": "postgresql://x@127.0.0.1/x",
    }
    assert configure(args, environ) is not None
    first = logs.fingerprint(PHONE)
    logs.configure("json", digest_key="from-the-environment")
    assert logs.fingerprint(PHONE) == first
