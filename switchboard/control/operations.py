"""The configuration API's operations in the OpenAPI document (``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from router.api.openapi import REF
from router.api.operation import Operation
from router.engine import BusinessCalendar, QueuePolicy
from schemas.limits import DOMAIN_MAX, QUEUE_MAX
from switchboard.config import ControlDocument, DomainConfig
from switchboard.control import store
from switchboard.control.document import ENDPOINT_KINDS
from switchboard.control.models import (
    ConfigChanged,
    DryRunIn,
    DryRunView,
    EndpointSettings,
    EndpointsView,
    EndpointView,
    VersionsPage,
)

DOMAIN_PATH = "/v1/domains/{domain}"
PAGE_MAX = 500
"""Versions on one page at most."""


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


_DOMAIN_PARAM = _path(
    "domain",
    "Routing domain id",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1, "maxLength": DOMAIN_MAX},
)
_QUEUE_PARAM = _path(
    "queue", "Queue name", {"type": "string", "minLength": 1, "maxLength": QUEUE_MAX}
)
_CALENDAR_PARAM = _path(
    "calendar", "Calendar name", {"type": "string", "minLength": 1, "maxLength": QUEUE_MAX}
)
_KIND_PARAM = _path("kind", "Endpoint kind", {"type": "string", "enum": list(ENDPOINT_KINDS)})
_KEY_PARAM = _path(
    "key",
    "The number, id, bot name or address (email: compared case-insensitively)",
    {"type": "string", "minLength": 1, "maxLength": 256},
)
_VERSION_PARAM = _path("version", "A configuration version", {"type": "integer", "minimum": 1})
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The ETag read with the resource; required to change or delete one that exists",
    "schema": {"type": "string", "maxLength": 1024},
}
_PAGE_PARAMS = (
    {
        "name": "before",
        "in": "query",
        "required": False,
        "description": "Only versions older than this one (the previous page's `next_before`)",
        "schema": {"type": "integer", "minimum": 1},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": 50},
    },
)
_PREVIEW = {
    "name": "preview",
    "in": "query",
    "required": False,
    "description": "`true`: validate and answer the diff without storing anything",
    "schema": {"type": "boolean"},
}
_READ = (400, 401, 403, 404, 503)
_WRITE = (400, 401, 403, 404, 409, 412, 413, 428, 503)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/v1/config",
        "getConfig",
        "The runtime configuration (platform admin)",
        (),
        200,
        ControlDocument,
        errors=_READ,
    ),
    Operation(
        "put",
        "/v1/config",
        "putConfig",
        "Replace the runtime configuration (platform admin)",
        (_IF_MATCH, _PREVIEW),
        200,
        ConfigChanged,
        ControlDocument,
        errors=_WRITE,
    ),
    Operation(
        "get",
        "/v1/config/versions",
        "listConfigVersions",
        "Configuration versions, newest first (platform admin)",
        _PAGE_PARAMS,
        200,
        VersionsPage,
        errors=_READ,
    ),
    Operation(
        "get",
        "/v1/config/versions/{version}",
        "getConfigVersion",
        "One version: author, time, diff and document (platform admin)",
        (_VERSION_PARAM,),
        200,
        store.VersionDetail,
        errors=_READ,
    ),
    Operation(
        "post",
        "/v1/config/versions/{version}/restore",
        "restoreConfigVersion",
        "Make a version's document the current one again, as a new version (platform admin)",
        (_VERSION_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        errors=_WRITE,
    ),
    Operation(
        "get",
        DOMAIN_PATH + "/config",
        "getDomainConfig",
        "A domain's routing and web chat configuration (admin)",
        (_DOMAIN_PARAM,),
        200,
        DomainConfig,
        errors=_READ,
    ),
    Operation(
        "put",
        DOMAIN_PATH + "/config",
        "putDomainConfig",
        "Create (platform admin) or replace (admin) a domain's configuration",
        (_DOMAIN_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        DomainConfig,
        errors=_WRITE,
    ),
    Operation(
        "delete",
        DOMAIN_PATH + "/config",
        "deleteDomainConfig",
        "Delete a domain no endpoint feeds any more (platform admin)",
        (_DOMAIN_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        errors=_WRITE,
    ),
    Operation(
        "get",
        DOMAIN_PATH + "/config/versions",
        "listDomainConfigVersions",
        "Configuration versions that changed this domain, newest first (admin)",
        (_DOMAIN_PARAM, *_PAGE_PARAMS),
        200,
        VersionsPage,
        errors=_READ,
    ),
    Operation(
        "post",
        DOMAIN_PATH + "/config/dry-run",
        "dryRunDomainConfig",
        "Replay recorded traffic under the current and a candidate routing (admin)",
        (_DOMAIN_PARAM,),
        200,
        DryRunView,
        DryRunIn,
        errors=(400, 401, 403, 404, 413, 429, 503),
        description="Nothing is changed. The candidate is a `routing` section, or the"
        " domain's routing in an earlier `version`; the KPIs of both come from the same"
        " replay of the window's recorded messages and agent events through the engine."
        " With `background`, 202 with a planning job at once: `GET"
        " …/planning/jobs/{job_id}` shows the replay's progress, then this answer; 429"
        " when this process runs its most jobs already.",
        extra={
            "responses": {
                "202": {
                    "description": "Started as a planning job (`background`)",
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(name="PlanningJob")}}
                    },
                }
            }
        },
    ),
    Operation(
        "get",
        DOMAIN_PATH + "/queues/{queue}",
        "getQueue",
        "A queue's routing: steps, waits, skills, mode (admin)",
        (_DOMAIN_PARAM, _QUEUE_PARAM),
        200,
        QueuePolicy,
        errors=_READ,
    ),
    Operation(
        "put",
        DOMAIN_PATH + "/queues/{queue}",
        "putQueue",
        "Create or replace a queue (admin)",
        (_DOMAIN_PARAM, _QUEUE_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        QueuePolicy,
        errors=_WRITE,
    ),
    Operation(
        "delete",
        DOMAIN_PATH + "/queues/{queue}",
        "deleteQueue",
        "Delete a queue no endpoint names, other than the default one (admin)",
        (_DOMAIN_PARAM, _QUEUE_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        errors=_WRITE,
    ),
    Operation(
        "get",
        DOMAIN_PATH + "/calendars/{calendar}",
        "getCalendar",
        "A business-hours calendar: weekly hours in a time zone, holidays, exceptions (admin)",
        (_DOMAIN_PARAM, _CALENDAR_PARAM),
        200,
        BusinessCalendar,
        errors=_READ,
    ),
    Operation(
        "put",
        DOMAIN_PATH + "/calendars/{calendar}",
        "putCalendar",
        "Create or replace a business-hours calendar (admin)",
        (_DOMAIN_PARAM, _CALENDAR_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        BusinessCalendar,
        errors=_WRITE,
    ),
    Operation(
        "delete",
        DOMAIN_PATH + "/calendars/{calendar}",
        "deleteCalendar",
        "Delete a calendar no queue keeps its hours in (admin)",
        (_DOMAIN_PARAM, _CALENDAR_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        errors=_WRITE,
    ),
    Operation(
        "get",
        DOMAIN_PATH + "/channels",
        "listEndpoints",
        "The provider endpoints feeding the domain (admin)",
        (_DOMAIN_PARAM,),
        200,
        EndpointsView,
        errors=_READ,
    ),
    Operation(
        "get",
        DOMAIN_PATH + "/channels/{kind}/{key}",
        "getEndpoint",
        "One endpoint (admin)",
        (_DOMAIN_PARAM, _KIND_PARAM, _KEY_PARAM),
        200,
        EndpointView,
        errors=_READ,
    ),
    Operation(
        "put",
        DOMAIN_PATH + "/channels/{kind}/{key}",
        "putEndpoint",
        "Add or change an endpoint feeding the domain (admin)",
        (_DOMAIN_PARAM, _KIND_PARAM, _KEY_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        EndpointSettings,
        errors=_WRITE,
    ),
    Operation(
        "delete",
        DOMAIN_PATH + "/channels/{kind}/{key}",
        "deleteEndpoint",
        "Remove an endpoint: its webhooks are refused from then on (admin)",
        (_DOMAIN_PARAM, _KIND_PARAM, _KEY_PARAM, _IF_MATCH),
        200,
        ConfigChanged,
        errors=_WRITE,
    ),
)
