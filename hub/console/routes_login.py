"""Log in and out of the console."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
import hmac
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console import session as cookies
from hub.console.auth import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    LoginThrottle,
    User,
    current_user,
    end_session,
    signing_key,
)
from hub.console.render import page, redirect
from hub.db import read_scope
from hub.intake.addresses import check_login
from hub.models import MailUser

log = logging.getLogger("smshub.console")
router = APIRouter()


def _throttle(request: Request) -> LoginThrottle:
    # One per app, made at the first login (the limit is read then).
    state = request.app.state
    throttle: LoginThrottle | None = getattr(state, "login_throttle", None)
    if throttle is None:
        throttle = state.login_throttle = LoginThrottle(state.hub.config.console.max_failed_logins)
    return throttle


def _secure(request: Request) -> bool:
    config = request.app.state.hub.config
    mode = config.console.secure_cookies
    return mode == "always" or (mode == "auto" and config.hub.public_url.startswith("https:"))


def _safe_next(value: str) -> str:
    # Only our own pages: an absolute or scheme-relative URL would make the login form an
    # open redirect.
    if value.startswith("/console") and not value.startswith("//"):
        return value
    return "/console/"


def _login_form(
    request: Request, next_url: str, error: str = "", username: str = "", status: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        None,
        "login.html.j2",
        status=status,
        login_csrf=token,
        next_url=_safe_next(next_url),
        error=error,
        username=username,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "/console/") -> Response:
    """The login form (straight to the console when already logged in)."""
    try:
        await current_user(request)
    except Exception:
        return _login_form(request, next)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console/",
) -> Response:
    """Check the user name and password and start a session."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_form(
            request, next, "The login form had expired. Please try again.", username, 400
        )
    username = username.strip()
    throttle = _throttle(request)
    if throttle.blocked(username):
        log.warning("console login refused for %r: too many failed attempts", username)
        return _login_form(
            request,
            next,
            "Too many failed attempts for this user. Wait 15 minutes or ask your "
            "administrator to reset the password.",
            username,
            429,
        )
    hub = request.app.state.hub

    def _check() -> tuple[int, str, int] | None:
        with read_scope(hub.engine) as session:
            found = check_login(session, username, password)
            if found is None:
                return None
            user = session.get(MailUser, found.user_id)
            assert user is not None
            return found.user_id, user.password_hash, user.session_epoch

    found = await asyncio.to_thread(_check)
    if found is None:
        throttle.failed(username)
        log.info("console login failed for %r", username)
        return _login_form(request, next, "Wrong user name or password.", username, status=401)
    throttle.succeeded(username)
    user_id, password_hash, epoch = found
    key = await asyncio.to_thread(signing_key, hub.engine)
    data = cookies.new_session(user_id, password_hash, epoch, hub.config.console.session_hours)
    response = redirect(_safe_next(next))
    response.set_cookie(
        COOKIE,
        cookies.encode(key, data),
        max_age=int(hub.config.console.session_hours * 3600),
        path="/console",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    log.info("console login for %r", username)
    return response


@router.post("/logout")
async def logout(request: Request, user: User) -> Response:
    """End the session on the server and drop the cookie (the CSRF token proves it was this
    user)."""
    await asyncio.to_thread(end_session, request.app.state.hub.engine, request.cookies[COOKIE])
    response = redirect("/console/login", "You are logged out.")
    response.delete_cookie(COOKIE, path="/console")
    return response
