"""``Operation``: one documented operation of ``/openapi.json`` (``router.api.openapi``
assembles them; modules that serve routes of their own list theirs with it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
