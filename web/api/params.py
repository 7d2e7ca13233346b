"""Shared API parameters, path-id validation and the documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter

from core.contracts.common import ID_PATTERN

Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="page size")]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000_000, description="items to skip")]
# Ids in paths follow the subject-token rule, so they can never smuggle '.', '*' or '>' into NATS.
IdPath = Annotated[str, PathParameter(pattern=ID_PATTERN, max_length=128)]
KeyPath = Annotated[str, PathParameter(max_length=300)]


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: Any = None


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=Problem, media_type="application/problem+json", description=description, generate_examples=False
    )


ERRORS: dict[int, ResponseSpec] = {
    400: _spec("Invalid request (validation errors listed in `errors`)"),
    401: _spec("Missing or invalid credentials"),
    403: _spec("Not allowed for this caller, or missing CSRF token"),
    404: _spec("Not found"),
    409: _spec("Conflict (duplicate id, concurrent change)"),
    422: _spec("Well-formed but not acceptable"),
    503: _spec("A dependency is temporarily unavailable"),
}
