"""Security headers on every response; a strict CSP on HTML.

Installed as an app-level ``before_send`` hook, so it also covers responses that
never reach a route (404s, 405s). No inline script or style is allowed anywhere
(htmx runs with its indicator styles and eval turned off, templates carry no
``style`` attributes). MapLibre's workers are allowed explicitly (``worker-src
blob:``). ``/embed/*`` pages may be framed by the origins in ``OVERWATCH_EMBED_ORIGINS``;
every other page by nobody. Responses over HTTPS also carry ``Strict-Transport-Security``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.types import Message, Scope

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; worker-src 'self' blob:; child-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors {ancestors}"
)
COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]

# Over HTTPS only (served directly, or by a trusted proxy): browsers then refuse plain HTTP
# to this host for 180 days. No includeSubDomains: other services may share the domain.
HSTS = (b"strict-transport-security", b"max-age=15552000")


def security_headers(embed_origins: list[str]) -> Callable[[Message, Scope], Awaitable[None]]:
    """A ``before_send`` hook adding the headers for the given embed origins."""
    page_csp = CSP.format(ancestors="'none'").encode()
    embed_csp = CSP.format(ancestors=" ".join(["'self'", *embed_origins])).encode()

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        embed = str(scope.get("path", "")).startswith("/embed/")
        headers = list(message.get("headers", []))
        names = {k.lower() for k, _ in headers}
        headers.extend(h for h in COMMON if h[0] not in names)
        if b"content-security-policy" not in names:
            headers.append((b"content-security-policy", embed_csp if embed else page_csp))
        if not embed and b"x-frame-options" not in names:
            headers.append((b"x-frame-options", b"DENY"))
        if scope.get("scheme") == "https" and b"strict-transport-security" not in names:
            headers.append(HSTS)
        message["headers"] = headers

    return add_headers
