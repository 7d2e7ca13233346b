"""Security headers on every response; a strict CSP on HTML.

No inline script or style is allowed anywhere (htmx runs with its indicator styles and
eval turned off, templates carry no ``style`` attributes). MapLibre's workers are
allowed explicitly (``worker-src blob:``). ``/embed/*`` pages may be framed by the
origins in ``OVERWATCH_EMBED_ORIGINS``; every other page by nobody.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

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


def security_headers(embed_origins: list[str]) -> type:
    """Build the ASGI middleware class for the given embed origins."""
    page_csp = CSP.format(ancestors="'none'").encode()
    embed_csp = CSP.format(ancestors=" ".join(["'self'", *embed_origins])).encode()

    class SecurityHeadersMiddleware:
        """Adds the headers on ``http.response.start``."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if str(scope["type"]) != "http":
                await self.app(scope, receive, send)
                return
            embed = scope["path"].startswith("/embed/")

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    names = {k.lower() for k, _ in headers}
                    headers.extend(h for h in COMMON if h[0] not in names)
                    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                    if content_type.startswith(b"text/html") or b"content-security-policy" not in names:
                        headers.append((b"content-security-policy", embed_csp if embed else page_csp))
                    if not embed:
                        headers.append((b"x-frame-options", b"DENY"))
                    message["headers"] = headers
                await send(message)

            await self.app(scope, receive, send_with_headers)

    return SecurityHeadersMiddleware
