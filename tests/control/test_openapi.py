"""Every route of the configuration API is in the OpenAPI document, which is valid."""

from __future__ import annotations

import schemathesis
from aiohttp import web

from router.api.openapi import EXTRA_OPERATIONS, document
from switchboard.control.api import OPERATIONS, setup_control


def test_every_configuration_route_is_documented() -> None:
    app = web.Application()
    setup_control(app)
    assert app[EXTRA_OPERATIONS] == OPERATIONS
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert routes == documented
    doc = document(OPERATIONS)
    assert documented <= {(m, p) for p, ops in doc["paths"].items() for m in ops}
    schemathesis.openapi.from_dict(doc).validate()
