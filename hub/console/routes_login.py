"""Log in and out of the console."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
import hmac
import logging
import math
import secrets
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.console import session as cookies
from hub.console.auth import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    current_user,
    end_session,
    signing_key,
)
from hub.console.page import Page
from hub.console.render import page, redirect
from hub.console.session import secure_cookies
from hub.core import i18n
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.store.db import read_scope
from hub.store.login_throttle import LoginThrottle
from hub.store.models import MailUser
from hub.web.deps import HubDep

log = logging.getLogger("smshub.console")
if TYPE_CHECKING:
    from hub.app import Hub

router = APIRouter()


def _throttle(hub: "Hub") -> LoginThrottle:
    # The counts are in the database; the settings are read at each login.
    console = hub.config.console
    return LoginThrottle(hub.engine, console.max_failed_logins, console.login_max_delay)


def _safe_next(value: str) -> str:
    # Only our own pages: an absolute or scheme-relative URL would make the login form an
    # open redirect.
    if value.startswith("/console") and not value.startswith("//"):
        return value
    return "/console/"


def _login_form(
    request: Request,
    config: Config,
    next_url: str,
    error: str = "",
    username: str = "",
    status: int = 200,
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
        secure=secure_cookies(config),
    )
    return response


@router.get("/login")
async def login_form(request: Request, hub: HubDep, next: str = "/console/") -> Response:
    """The login form (straight to the console when already logged in)."""
    try:
        await current_user(request, hub)
    except Exception:
        return _login_form(request, hub.config, next)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/login")
async def login(
    request: Request,
    hub: HubDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console/",
) -> Response:
    """Check the user name and password and start a session."""
    # No user yet: the refusals in the browser's language.
    i18n.set_language(i18n.console_language(None, request.headers.get("accept-language")))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return _login_form(
            request,
            hub.config,
            next,
            _("The login form had expired. Please try again."),
            username,
            400,
        )
    username = username.strip()
    throttle = _throttle(hub)
    # The client's own connection, never a header it writes.
    address = request.client.host if request.client else ""

    def _check() -> tuple[int, str, int] | float | None:
        attempt = throttle.attempt(username, password, address)
        if attempt.login is None:
            return attempt.retry_after or None
        with read_scope(hub.engine) as session:
            user = session.get(MailUser, attempt.login.user_id)
            assert user is not None
            return attempt.login.user_id, user.password_hash, user.session_epoch

    # scrypt and the database run in a worker thread, never on the event loop.
    found = await asyncio.to_thread(_check)
    if isinstance(found, float):
        seconds = max(1, math.ceil(found))
        log.warning("console login for %r from %s throttled (%d s)", username, address, seconds)
        refused = _login_form(
            request,
            hub.config,
            next,
            _(
                "Too many failed attempts for this user or from this address: try again in "
                "%(seconds)s s. If you forgot the password, ask your administrator to reset it.",
                seconds=seconds,
            ),
            username,
            429,
        )
        refused.headers["Retry-After"] = str(seconds)
        return refused
    if found is None:
        log.info("console login failed for %r from %s", username, address)
        return _login_form(
            request, hub.config, next, _("Wrong user name or password."), username, status=401
        )
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
        secure=secure_cookies(hub.config),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    log.info("console login for %r", username)
    return response


@router.post("/logout")
async def logout(ui: Page) -> Response:
    """End the session on the server and drop the cookie (the CSRF token proves it was this
    user)."""
    await asyncio.to_thread(end_session, ui.hub.engine, ui.request.cookies[COOKIE])
    response = redirect("/console/login", _("You are logged out."))
    response.delete_cookie(COOKIE, path="/console")
    return response
