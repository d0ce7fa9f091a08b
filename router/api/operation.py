"""``Operation``: one documented operation of ``/openapi.json`` (``router.api.openapi``
assembles them; modules that serve routes of their own list theirs with it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.limits import DOMAIN_MAX


# Hashed by identity: ``document`` caches by its ``extra`` operations, whose parameters
# are dicts (a field-wise hash would raise).
@dataclass(frozen=True, eq=False)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    parameters: tuple[dict[str, Any], ...]
    ok_status: int
    ok_type: type | None
    request: type | None = None
    errors: tuple[int, ...] = (400, 401, 403, 404, 503)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parameter(where: str, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An operation's parameter ``name`` in the path or the query (path ones are required)."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


DOMAIN_PARAMETER = parameter(
    "path",
    "domain",
    "Routing domain id",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1, "maxLength": DOMAIN_MAX},
)
