"""One way to turn a stored row into the Struct a service or the API returns."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

V = TypeVar("V", bound=msgspec.Struct)


def as_view(row: msgspec.Struct, view: type[V], **fields: Any) -> V:
    """``view`` built from ``row``'s fields of the same names, with ``fields`` replacing or adding some.

    Rows and views share most fields; copying them by hand field by field is how the two
    drift apart. Fields of the row the view does not have are left out.
    """
    values = {name: getattr(row, name) for name in row.__struct_fields__ if name in view.__struct_fields__}
    values.update(fields)
    return view(**values)
