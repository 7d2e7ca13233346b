"""The one mapping of errors to HTTP (RFC 9457 problem+json) and the app's request class."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.plugins.htmx import HTMXRequest

from core.errors import AppError

log = logging.getLogger(__name__)


class OverwatchRequest(HTMXRequest):
    """The app's request: a JSON body that cannot be decoded is the client's error (400), always.

    Litestar maps ``msgspec.DecodeError`` to 400 but lets the decoder's ``RecursionError``
    (a body nested thousands deep) and ``UnicodeDecodeError`` (bytes that are not UTF-8)
    through as 500s.
    """

    async def json(self) -> Any:
        """The decoded JSON body; 400 with a reason for bodies too deep or not UTF-8."""
        try:
            return await super().json()
        except RecursionError:
            raise ClientException("request body: JSON nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise ClientException(f"request body: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def problem(
    status: int, title: str, detail: str, extra: dict[str, object] | None = None
) -> Response[dict[str, object]]:
    """An ``application/problem+json`` response."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if extra:
        body.update(extra)
    return Response(body, status_code=status, media_type="application/problem+json")


def app_error_handler(_request: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, object]]:
    """Map ``AppError`` subclasses to problem+json."""
    return problem(exc.status_code, exc.title, exc.detail)


def http_error_handler(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    """Map Litestar's HTTP exceptions (validation, 404, 405, 413 ...) to problem+json."""
    extra: dict[str, object] | None = None
    if isinstance(exc, ValidationException) and exc.extra:
        extra = {"errors": exc.extra}
    detail = exc.detail or "error"
    return problem(exc.status_code, _title(exc.status_code), detail, extra)


def _wants_page(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/events/", "/video/", "/health/")) or request.headers.get("hx-request"):
        return False
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def auth_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """401 → sign-in page for browsers (``HX-Redirect`` for htmx), problem+json otherwise; 403 likewise."""
    from urllib.parse import quote

    from litestar.response import Redirect

    if exc.status_code == 401:
        target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if _wants_page(request):
            return Redirect(target, status_code=303)
        response = problem(401, "Unauthorized", exc.detail or "sign in required")
        if request.headers.get("hx-request"):
            response.headers["HX-Redirect"] = target
        response.headers["WWW-Authenticate"] = 'Bearer realm="overwatch"'
        return response
    if _wants_page(request):
        from litestar.response import Template

        return Template(
            "pages/error.html",
            context={"status": exc.status_code, "title": _title(exc.status_code), "detail": exc.detail, "active": ""},
            status_code=exc.status_code,
        )
    return problem(exc.status_code, _title(exc.status_code), exc.detail or "forbidden")


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    """Log unexpected errors with a traceback; never leak internals to the client."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal Server Error", "unexpected server error (logged)")


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
