"""``/openapi.json`` describes the API, and the API keeps to it (schemathesis, bounded)."""

from __future__ import annotations

import asyncio
from collections import Counter
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


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_the_api_keeps_to_its_openapi_document(
    infrastructure: Infrastructure, database_url: str
) -> None:
    async with api_service(infrastructure.bootstrap_servers, database_url, _fast()) as api:
        await api.register("ann")
        await api.customer_writes("visitor-0001", "m1")
        base = api.service.base_url
        positive = await asyncio.to_thread(_fuzz, base, api.auth("admin"), GenerationMode.POSITIVE)
        negative = await asyncio.to_thread(_fuzz, base, api.auth("ann"), GenerationMode.NEGATIVE)
        # Every other authentication level: an agent's valid requests, another domain's
        # admin, a revoked-looking unknown token, and none at all.
        levels = {
            "agent": (api.auth("ann"), EXAMPLES),
            "other domain's admin": (api.auth("globex"), REFUSED_EXAMPLES),
            "unknown token": ({"Authorization": "Bearer sbt_unknown"}, REFUSED_EXAMPLES),
            "no token": ({}, REFUSED_EXAMPLES),
        }
        others = {
            level: await asyncio.to_thread(_fuzz, base, headers, GenerationMode.POSITIVE, examples)
            for level, (headers, examples) in levels.items()
        }
        # A platform token reaches the platform's operations too (tokens, the audit log,
        # the configuration). Last: a valid document sent with `If-Match: *` may replace
        # the whole configuration, domain acme included, which the levels above need.
        platform = await asyncio.to_thread(
            _fuzz, base, api.auth("platform"), GenerationMode.POSITIVE
        )
        print(
            "statuses",
            dict(positive),
            dict(negative),
            dict(platform),
            {k: dict(v) for k, v in others.items()},
        )
        assert positive[200] + positive[202] > 50, positive  # the handlers ran, not just errors
        assert negative[400] > 20, negative
        assert platform[201] > 0, platform
        platform_tokens = "SELECT count(*) FROM api_tokens WHERE scope = 'platform'"
        assert await api.pool.fetchval(platform_tokens) > 1  # /v1/tokens created some
        assert others["agent"][403] > 10, others["agent"]  # admin-only operations refused
        assert set(others["other domain's admin"]) <= {400, 403, 404}, others
        assert set(others["unknown token"]) <= {400, 401, 404}, others
        assert set(others["no token"]) <= {400, 401, 404}, others


def _fast() -> dict[str, Any]:
    """Commands to conversations that do not exist are refused at once; a short wait
    bounds the few that wait for nothing."""
    return {"api": {"command_timeout": 1.0}}
