"""``/openapi.json`` describes the API, and the API keeps to it (schemathesis, bounded)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from router.api.openapi import document
from tests.api.support import api_service
from tests.conftest import Infrastructure

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 20
REFUSED_EXAMPLES = 5
"""Examples per operation for callers answered before any handler runs (another domain's
admin, an unknown token, none): the refusal does not depend on the request."""


def test_every_route_of_the_api_is_documented() -> None:
    from aiohttp import web

    from router.api.setup import api_routes

    doc = document()
    assert doc["openapi"] == "3.1.0"
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    routes = {
        (route.method.lower(), route.path)
        for route in api_routes()
        if isinstance(route, web.RouteDef)
    }
    assert routes == documented
    schemathesis.openapi.from_dict(doc).validate()


def _fuzz(
    base_url: str, headers: dict[str, str], mode: GenerationMode, examples: int = EXAMPLES
) -> Counter[int]:
    """Bounded examples per operation; returns how often each status was answered."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/stream"):
            continue  # endless by design: covered by tests/api/test_stream.py

        @hypothesis.given(
            case=operation.as_strategy(generation_mode=mode, path_parameters={"domain": "acme"})
        )
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        check()
    return statuses


@dataclass(frozen=True)
class Caller:
    """Who fuzzes the API, how, and what its answers must show."""

    who: str | None
    """The token's holder (``tests.api.support``), or a header of its own, or none."""
    mode: GenerationMode
    examples: int
    check: Callable[[Counter[int]], bool]
    headers: dict[str, str] | None = None


CALLERS = {
    # The handlers ran, not just errors.
    "admin": Caller("admin", GenerationMode.POSITIVE, EXAMPLES, lambda s: s[200] + s[202] > 50),
    "invalid requests": Caller("ann", GenerationMode.NEGATIVE, EXAMPLES, lambda s: s[400] > 20),
    # An agent's valid requests: the admin-only operations are refused.
    "agent": Caller("ann", GenerationMode.POSITIVE, EXAMPLES, lambda s: s[403] > 10),
    "other domain's admin": Caller(
        "globex", GenerationMode.POSITIVE, REFUSED_EXAMPLES, lambda s: set(s) <= {400, 403, 404}
    ),
    "unknown token": Caller(
        None,
        GenerationMode.POSITIVE,
        REFUSED_EXAMPLES,
        lambda s: set(s) <= {400, 401, 404},
        headers={"Authorization": "Bearer sbt_unknown"},
    ),
    "no token": Caller(
        None, GenerationMode.POSITIVE, REFUSED_EXAMPLES, lambda s: set(s) <= {400, 401, 404}
    ),
    # A platform token reaches the platform's operations too (tokens, the audit log, the
    # configuration); a valid document sent with `If-Match: *` may replace the whole
    # configuration, which is why every caller has a service of its own.
    "platform": Caller("platform", GenerationMode.POSITIVE, EXAMPLES, lambda s: s[201] > 0),
}
"""Each caller on a service of its own: the cases run side by side on the suite's workers,
and none depends on what another's requests changed."""


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@pytest.mark.parametrize("name", list(CALLERS))
async def test_the_api_keeps_to_its_openapi_document(
    infrastructure: Infrastructure, database_url: str, name: str
) -> None:
    caller = CALLERS[name]
    async with api_service(infrastructure.bootstrap_servers, database_url, _fast()) as api:
        await api.register("ann")
        await api.customer_writes("visitor-0001", "m1")
        headers = caller.headers or (api.auth(caller.who) if caller.who else {})
        statuses = await asyncio.to_thread(
            _fuzz, api.service.base_url, headers, caller.mode, caller.examples
        )
        print("statuses", name, dict(statuses))
        assert statuses, "no request was made"
        assert caller.check(statuses), statuses
        if name == "platform":  # /v1/tokens created some
            platform_tokens = "SELECT count(*) FROM api_tokens WHERE scope = 'platform'"
            assert await api.pool.fetchval(platform_tokens) > 1


def _fast() -> dict[str, Any]:
    """Commands to conversations that do not exist are refused at once; a short wait
    bounds the few that wait for nothing."""
    return {"api": {"command_timeout": 1.0}}
