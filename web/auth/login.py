"""Sign-in and sign-out pages (``/login``, ``/logout``).

The login form carries its own CSRF token (double-submit: a random cookie plus the
same value in a hidden field), since there is no session yet to bind one to. Sign-in
is rate limited per client address (in memory) and per account (lockout in SQLite).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from urllib.parse import urlparse

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Redirect, Template

from services.auth.sessions import COOKIE, cookie_secure
from services.auth.signin import SignInRefused, SignInService
from web.auth.guards import origin_of, principal_of

LOGIN_CSRF_COOKIE = "ow_login_csrf"


class LoginForm(msgspec.Struct, kw_only=True):
    """Fields of the sign-in form."""

    email: str = ""
    password: str = ""
    csrf_token: str = ""
    next: str = "/"


def safe_next(target: str) -> str:
    """Only same-site relative paths are followed after sign-in."""
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _secure(request: Request[Any, Any, Any]) -> bool:
    return cookie_secure(request)


def _form_page(
    request: Request[Any, Any, Any], next_: str, error: str = "", email: str = "", status: int = 200
) -> Template:
    """The sign-in form with a fresh form token, also set as the double-submit cookie."""
    token = secrets.token_urlsafe(24)
    return Template(
        "pages/login.html",
        context={"form_token": token, "next": safe_next(next_), "error": error, "email": email, "active": ""},
        status_code=status,
        cookies=[
            Cookie(
                key=LOGIN_CSRF_COOKIE,
                value=token,
                httponly=True,
                samesite="strict",
                secure=_secure(request),
                path="/login",
                max_age=3600,
            )
        ],
    )


class LoginController(Controller):
    """``/login`` and ``/logout``."""

    include_in_schema = False
    opt = {"public": True}

    @get("/login")
    async def login_page(
        self, request: Request[Any, Any, Any], next_: Annotated[str, QueryParameter(name="next")] = "/"
    ) -> Template:
        """The sign-in form."""
        return _form_page(request, next_)

    @post("/login", status_code=303)
    async def login(
        self,
        request: Request[Any, Any, Any],
        signin: NamedDependency[SignInService],
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        """Check the form; on success start a fresh session and go to ``next``."""
        cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        error, status = "", 400
        if not cookie_token or not secrets.compare_digest(cookie_token, data.csrf_token):
            error = "The sign-in form expired. Please try again."
        else:
            try:
                # The pre-login session (if any) ends here: rotation.
                previous = request.cookies.get(COOKIE, "")
                token = await signin.sign_in(data.email, data.password, origin_of(request), previous)
            except SignInRefused as exc:
                error, status = exc.message, exc.status
            else:
                return Redirect(
                    safe_next(data.next),
                    status_code=303,
                    cookies=[
                        Cookie(
                            key=COOKIE, value=token, httponly=True, samesite="strict", secure=_secure(request), path="/"
                        ),
                        Cookie(key=LOGIN_CSRF_COOKIE, value="", max_age=0, path="/login", secure=_secure(request)),
                    ],
                )
        return _form_page(request, data.next, error, data.email[:254], status)

    @post("/logout", status_code=303, opt={"public": False})
    async def logout(self, request: Request[Any, Any, Any], signin: NamedDependency[SignInService]) -> Redirect:
        """End the current session."""
        await signin.sign_out(principal_of(request), origin_of(request))
        return Redirect(
            "/login",
            status_code=303,
            cookies=[
                Cookie(
                    key=COOKIE,
                    value="",
                    max_age=0,
                    path="/",
                    httponly=True,
                    samesite="strict",
                    secure=_secure(request),
                )
            ],
        )
