"""Fixtures of the integration tests beyond the session's broker and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from tools.bench.providers import FakeProviders


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProviders, str]]:
    """The providers' stand-in (Twilio, the Graph API) on loopback, and its base URL."""
    fake = FakeProviders()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()
