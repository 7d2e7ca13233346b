"""Reading HTML forms into typed structs (repeated fields become lists)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from core.errors import Invalid

T = TypeVar("T")


async def read_form(request: Request[Any, Any, Any], type_: type[T], lists: tuple[str, ...] = ()) -> T:
    """Parse the submitted form into ``type_``; fields named in ``lists`` collect every value."""
    form = await request.form()
    data: dict[str, Any] = {}
    for key in form:
        if key == "csrf_token":
            continue
        data[key] = [v for v in form.getall(key) if isinstance(v, str)] if key in lists else form.get(key)
    for key in lists:
        data.setdefault(key, [])
    try:
        return msgspec.convert(data, type_, strict=False)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid form: {exc}") from None
