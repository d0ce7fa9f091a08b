"""What a failed request answers and logs (``runtime.http_errors``), and the header-driven
500s it replaced: a small app for the middleware's rules, then the real service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runtime import http_errors
from runtime.http_errors import read_limited, setup_errors
from runtime.logging import RateLimit
from tests.api.support import api_service
from tests.conftest import Infrastructure
from tests.logcapture import captured_logs, lines_of
from tests.support import make_config, running_service

EMAIL = "zoe.plantagenet@example.org"
NAME = "Zoë Plantagenet"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _fails(request: web.Request) -> web.Response:
    # A message that quotes input, as UnicodeDecodeError, KeyError and asyncpg's errors do.
    raise KeyError(f"{NAME} <{EMAIL}>")


async def _refuses(request: web.Request) -> web.Response:
    raise web.HTTPUnauthorized(text=f"who is {NAME}?")


async def _answers_404(request: web.Request) -> web.Response:
    return web.json_response({"error": f"unknown customer {EMAIL}"}, status=404)


async def _reads_body(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def _reads_limited(request: web.Request) -> web.Response:
    return web.Response(body=await read_limited(request, 1000))


async def _reads_content_type(request: web.Request) -> web.Response:
    return web.Response(text=request.content_type)


NESTED_COMMENT = "(" * 1500 + ")" * 1500
"""A comment nested past the email parser's stack: aiohttp's ``content_type`` raised
``RecursionError`` on it."""


async def _fails_mid_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"data: 1\n\n")
    raise RuntimeError(NAME)


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Clock]]:
    clock = Clock()
    app = web.Application()
    setup_errors(app, RateLimit(per_window=2, window_seconds=60, clock=clock))
    app.router.add_get("/customers/{customer_id}/fails", _fails)
    app.router.add_get("/refuses", _refuses)
    app.router.add_get("/answers-404", _answers_404)
    app.router.add_post("/reads-body", _reads_body)
    app.router.add_post("/reads-limited", _reads_limited)
    app.router.add_get("/fails-mid-stream", _fails_mid_stream)
    app.router.add_post("/reads-content-type", _reads_content_type)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, clock


def _port_of(client: tuple[TestClient[web.Request, web.Application], Clock]) -> int:
    """The test server's port, for requests written byte by byte."""
    port = client[0].server.port
    assert port is not None
    return port


async def test_an_unexpected_error_is_a_500_that_echoes_nothing_and_logs_its_type_only(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    http, _ = client
    with captured_logs([]) as buffer:
        response = await http.get(f"/customers/{EMAIL}/fails")
        body = await response.json()
    assert response.status == 500
    assert set(body) == {"error", "error_id"}
    assert body["error"] == "internal error"
    [line] = [line for line in lines_of(buffer) if line["event"] == "request_failed"]
    assert line["level"] == "error"
    assert line["error_id"] == body["error_id"]
    assert line["error"] == "KeyError"
    assert line["route"] == "/customers/{customer_id}/fails"
    assert line["exception"].startswith("Traceback")
    assert line["exception"].endswith("KeyError")
    assert EMAIL not in buffer.getvalue()
    assert "Plantagenet" not in buffer.getvalue()


async def test_client_errors_are_warnings_by_route_without_path_or_traceback(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    http, _ = client
    with captured_logs([]) as buffer:
        assert (await http.get("/refuses")).status == 401
        assert (await http.get("/answers-404")).status == 404
        assert (await http.get(f"/nowhere/{EMAIL}")).status == 404
    lines = lines_of(buffer)
    assert [(line["event"], line["level"], line["status"], line["route"]) for line in lines] == [
        ("client_error", "warning", 401, "/refuses"),
        ("client_error", "warning", 404, "/answers-404"),
        ("client_error", "warning", 404, "unmatched"),
    ]
    assert all("exception" not in line for line in lines)
    assert EMAIL not in buffer.getvalue()


async def test_aiohttps_own_404_and_405_are_json_with_their_headers(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    http, _ = client
    missing = await http.get("/nowhere")
    assert (missing.status, await missing.json()) == (404, {"error": "not found"})
    wrong_method = await http.delete("/refuses")
    assert wrong_method.status == 405
    assert await wrong_method.json() == {"error": "method not allowed"}
    assert "GET" in wrong_method.headers["Allow"]
    ours = await http.get("/refuses")  # a handler's own text stays as it wrote it
    assert (ours.status, await ours.text()) == (401, f"who is {NAME}?")


async def test_error_lines_are_rate_limited_then_counted(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    http, clock = client
    with captured_logs([]) as buffer:
        for _ in range(5):
            assert (await http.get("/refuses")).status == 401
            assert (await http.get("/customers/c1/fails")).status == 500
        clock.now = 61
        assert (await http.get("/refuses")).status == 401
        assert (await http.get("/customers/c1/fails")).status == 500
    lines = lines_of(buffer)
    assert [(line["event"], line.get("suppressed")) for line in lines] == [
        ("client_error", None),
        ("request_failed", None),
        ("client_error", None),
        ("request_failed", None),
        ("client_error", 3),
        ("request_failed", 3),
    ]


async def test_a_body_that_cannot_be_decoded_is_a_400(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    port = _port_of(client)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /reads-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nnot a chunk\r\n0\r\n\r\n"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"400"


async def test_a_content_type_the_parser_cannot_read_is_a_400_before_the_handler(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    http, _ = client
    for header in (f"text/plain; a={NESTED_COMMENT}", NESTED_COMMENT):
        with captured_logs([]) as buffer:
            response = await http.post(
                "/reads-content-type", data=b"x", headers={"Content-Type": header}
            )
            assert response.status == 400
            assert await response.json() == {"error": "malformed Content-Type header"}
        [line] = lines_of(buffer)
        assert (line["event"], line["status"], line["error"]) == (
            "client_error",
            400,
            "Content-Type",
        )
    for header, parsed in (
        ("Text/Plain; charset=utf-8 (a (nested) comment)", "text/plain"),
        ("", "application/octet-stream"),
    ):
        response = await http.post(
            "/reads-content-type", data=b"x", headers={"Content-Type": header}
        )
        assert (response.status, await response.text()) == (200, parsed)


async def test_a_body_that_pauses_is_a_408_that_closes_the_connection(
    client: tuple[TestClient[web.Request, web.Application], Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _port_of(client)
    monkeypatch.setattr(http_errors, "BODY_IDLE_SECONDS", 0.5)
    head = b"POST /reads-limited HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with captured_logs([]) as buffer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b"0123456789")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"}"), 10)
        writer.close()
        # A slow body that keeps coming is read whole, however long it takes in all.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        for _ in range(10):
            writer.write(b"0123456789")
            await writer.drain()
            await asyncio.sleep(0.2)
        in_time = await asyncio.wait_for(reader.readuntil(b"0123456789" * 10), 10)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nConnection: close\r\n" in answer, answer
    assert answer.endswith(b'{"error": "request body paused for 0.5 s"}'), answer
    assert in_time.startswith(b"HTTP/1.1 200 "), in_time
    [line] = lines_of(buffer)
    assert (line["event"], line["status"], line["route"]) == ("client_error", 408, "/reads-limited")


async def test_a_request_aiohttp_cannot_parse_is_a_400_that_quotes_nothing(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    port = _port_of(client)
    secret = b"Bearer sbt_" + b"x" * 9000
    requests = {
        "a header line too long": b"Authorization: " + secret,
        "a control character in a header": b"X-Email: zoe\x01@example.org",
        "a header without a colon": b"zoe@example.org",
    }
    with captured_logs([]) as buffer:
        for what, header in requests.items():
            status, answer = await _status_of(
                port,
                b"POST /reads-body HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n"
                b"Content-Length: 2\r\n\r\nhi",
            )
            assert status == 400, (what, answer)
            assert b"400 Bad Request: malformed request (" in answer, (what, answer)
            assert b"sbt_" not in answer, what
            assert b"example.org" not in answer, what
        status, answer = await _status_of(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        assert status == 400, answer
        assert b"aaaa" not in answer, answer
    assert "example.org" not in buffer.getvalue()
    assert "sbt_" not in buffer.getvalue()


async def test_a_failure_after_the_answer_began_ends_the_connection(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    http, _ = client
    with captured_logs([]) as buffer:
        response = await http.get("/fails-mid-stream")
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    [line] = lines_of(buffer)
    assert line["logger"] == "aiohttp.server"
    assert line["level"] == "error"
    assert line["exception"].endswith("RuntimeError")
    assert "Plantagenet" not in buffer.getvalue()


async def test_an_expect_header_other_than_100_continue_is_a_417_that_quotes_nothing(
    client: tuple[TestClient[web.Request, web.Application], Clock],
) -> None:
    port = _port_of(client)
    with captured_logs([]) as buffer:
        for path in (b"/reads-body", b"/nowhere"):
            for expect in (b"\xe9t\xe9", b"zoe@example.org", b"\xff" * 300):
                status, answer = await _status_of(
                    port,
                    b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Expect: " + expect + b"\r\nContent-Length: 2\r\n\r\nhi",
                )
                assert status == 417, answer
                assert expect not in answer
        status, answer = await _status_of(
            port,
            b"POST /reads-body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
        )
        assert answer.startswith(b"HTTP/1.1 100 Continue"), answer
    assert "error" not in {line["level"] for line in lines_of(buffer)}
    assert "example.org" not in buffer.getvalue()


# -- the real service: header-driven 500s that are now 4xx ------------------------------------


async def _status_of(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), head + b"\n" + body


async def test_an_authorization_header_that_is_not_a_token_is_a_401_with_a_reason(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url) as api:
        port = api.service.config.http.port
        foreign = api.tokens["globex"].encode()
        for token in (
            foreign + b"\xe9",  # not UTF-8: was a 500 whose log line held the whole token
            foreign + "é".encode(),
            b"a" * 600,
        ):
            status, answer = await _status_of(
                port,
                b"GET /v1/domains/acme/queues HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Bearer " + token + b"\r\n\r\n",
            )
            assert status == 401, answer
            assert b"malformed bearer token" in answer
            assert b'error="invalid_token"' in answer
            assert foreign not in answer


async def test_signature_headers_that_are_not_utf8_are_refused_not_500(
    infrastructure: Infrastructure, database_url: str
) -> None:
    channels = {
        "twilio": {"numbers": [{"number": "+14155550100", "domain": "acme"}]},
        "telegram": {"bots": [{"name": "acme_bot", "domain": "acme"}]},
    }
    config = make_config(infrastructure.bootstrap_servers, database_url, {"channels": channels})
    secrets = {
        "TWILIO_AUTH_TOKEN": "twilio-token",
        "META_APP_SECRET": "meta-secret",
        "TELEGRAM_SECRET_TOKEN": "telegram-secret",
    }
    form, json = b"application/x-www-form-urlencoded", b"application/json"
    async with running_service(config, secrets):
        for path, header, media, body in (
            (b"/webhooks/twilio/sms", b"X-Twilio-Signature", form, b"To=%2B14155550100"),
            (b"/webhooks/meta", b"X-Hub-Signature-256", json, b"{}"),
            (b"/webhooks/telegram/acme_bot", b"X-Telegram-Bot-Api-Secret-Token", json, b"{}"),
        ):
            status, answer = await _status_of(
                config.http.port,
                b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: " + media + b"\r\n" + header + b": sha256=\xe9\xff\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body,
            )
            assert status in (401, 403), (path, answer)


async def test_a_nested_comment_in_content_type_is_a_400_on_every_route_that_reads_it(
    infrastructure: Infrastructure, database_url: str
) -> None:
    """Unsigned, on the routes that read the media type before anything else."""
    channels = {
        "twilio": {"numbers": [{"number": "+14155550100", "domain": "acme"}]},
        "vonage": {"numbers": [{"number": "14155550100", "domain": "acme"}]},
        "email": {"addresses": [{"address": "help@acme.example", "domain": "acme"}]},
    }
    config = make_config(infrastructure.bootstrap_servers, database_url, {"channels": channels})
    secrets = {
        "TWILIO_AUTH_TOKEN": "twilio-token",
        "VONAGE_SIGNATURE_SECRET": "vonage-secret",
        "MAILGUN_SIGNING_KEY": "mailgun-key",
    }
    async with running_service(config, secrets):
        for path, media in (
            (b"/webhooks/twilio/sms", b"application/x-www-form-urlencoded; a="),
            (b"/webhooks/twilio/status", b"application/x-www-form-urlencoded; a="),
            (b"/webhooks/vonage/sms/inbound", b"application/x-www-form-urlencoded; a="),
            (b"/webhooks/vonage/sms/dlr", b"application/json "),
            (b"/webhooks/email/mailgun/events", b"application/json "),
            (b"/webhooks/email/mailgun", b"multipart/form-data; boundary=xYzZY "),
        ):
            body = b"--xYzZY--\r\n"
            status, answer = await _status_of(
                config.http.port,
                b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: " + media + NESTED_COMMENT.encode() + b"\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body,
            )
            assert status == 400, (path, answer)


def _length_read_within_4096() -> web.Application:
    """An app answering the length ``read_limited`` read of a body, at most 4,096 bytes
    (``null``: more)."""

    async def echo_length(request: web.Request) -> web.Response:
        body = await read_limited(request, 4096)
        return web.json_response({"length": None if body is None else len(body)})

    app = web.Application()
    app.router.add_post("/", echo_length)
    return app


async def test_a_body_that_arrives_in_segments_is_read_whole() -> None:
    """``read_limited`` reads to the end: a client (or a network) that sends a body in
    several segments gets it read whole, and one past the limit is refused as it comes."""
    async with TestServer(_length_read_within_4096()) as server:

        async def send(size: int) -> bytes:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
            for start in range(0, size, 700):
                writer.write(b"x" * min(700, size - start))
                await writer.drain()
                await asyncio.sleep(0.02)  # each segment on its own, as a slow link sends it
            answer = await reader.read(4096)
            writer.close()
            return answer

        assert b'{"length": 3000}' in await send(3000)
        assert b'{"length": null}' in await send(5000)


async def test_a_body_that_arrived_whole_is_read_and_still_bounded() -> None:
    """A body all in by the time the handler runs is taken from the buffer at once; one
    past the limit is refused there too, a chunked one (no ``Content-Length`` to refuse it
    by beforehand) included."""
    async with TestServer(_length_read_within_4096()) as server:

        async def send(head: bytes, body: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n" + body)
            answer = await reader.read(4096)
            writer.close()
            return answer

        def chunked(size: int) -> bytes:
            return b"%x\r\n%s\r\n0\r\n\r\n" % (size, b"x" * size)

        assert b'{"length": 3000}' in await send(b"Content-Length: 3000\r\n", b"x" * 3000)
        assert b'{"length": 0}' in await send(b"Content-Length: 0\r\n", b"")
        assert b'{"length": 4096}' in await send(b"Transfer-Encoding: chunked\r\n", chunked(4096))
        assert b'{"length": null}' in await send(b"Transfer-Encoding: chunked\r\n", chunked(4097))
