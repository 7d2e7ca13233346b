"""Path and query parameters shared by the NATS console controllers, and the subject filter check."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Request
from litestar.params import PathParameter, QueryParameter

from core.errors import Invalid
from web.auth.guards import principal_of

Req = Request[Any, Any, Any]
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
StreamPath = Annotated[str, PathParameter(pattern=NAME_PATTERN)]
ConsumerPath = Annotated[str, PathParameter(pattern=NAME_PATTERN)]
SubjectQuery = Annotated[str, QueryParameter(max_length=255)]
# Any token a subject can hold (devices may publish '/', '?', '#', '%' ...): no whitespace or
# control characters, no '.', and '*' / '>' only as whole wildcard tokens.
_TOKEN = re.compile(r"^[^\s.*>\x00-\x1f\x7f]+$")


def check_filter(subject: str) -> str:
    """A subject filter (``*`` tokens, a final ``>``) or ``Invalid`` with the reason."""
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if tok == ">" and i == len(tokens) - 1:
            continue
        if tok != "*" and not _TOKEN.match(tok):
            raise Invalid(
                f"invalid subject filter {subject[:300]!r}: tokens are '*', a final '>', or characters other than"
                " spaces, '.', '*' and '>'"
            )
    return subject


def page_context(request: Req, tab: str, **values: Any) -> dict[str, Any]:
    """The context every stream, consumer and server page shares (active tab, purge control)."""
    principal = principal_of(request)
    return {"active": "nats", "tab": tab, "can_purge": principal.is_global_admin, **values}
