"""Rendering console pages: the Jinja2 environment, flash messages and security headers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from hub.console.session import secure_cookies
from hub.core import i18n
from hub.core.i18n import lazy_gettext
from hub.core.phone import format_international
from hub.core.timeutil import as_utc, local_text
from hub.ports.oauth_flow import STATE_SECONDS

if TYPE_CHECKING:
    from hub.console.auth import ConsoleUser
    from hub.core.config import Config
    from hub.ports.oauth_flow import Started

FLASH_COOKIE = "smshub_flash"
STATIC_DIR = Path(__file__).parent / "static"

# Pages are rendered on the server; the only script is our own static file, so a strict
# policy costs nothing and stops injected markup from running anything.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    """A UTC time as an ISO string for <time datetime=...> (console.js shows it locally)."""
    return as_utc(value).isoformat() if value else ""


def _when_text(value: datetime | None) -> str:
    # Shown until console.js writes the reader's local time: UTC, the reader's way.
    return f"{i18n.format_datetime(as_utc(value), 'UTC', 'short')} UTC" if value else "—"


# Message states as the console shows them (the stored value stays the English word).
_STATUS_LABELS = {
    "queued": lazy_gettext("queued"),
    "claimed": lazy_gettext("claimed"),
    "submitting": lazy_gettext("submitting"),
    "sent": lazy_gettext("sent"),
    "delivered": lazy_gettext("delivered"),
    "undelivered": lazy_gettext("undelivered"),
    "dr_unavailable": lazy_gettext("dr_unavailable"),
    "failed": lazy_gettext("failed"),
    "cancelled": lazy_gettext("cancelled"),
    "unknown": lazy_gettext("unknown"),
    "scheduled": lazy_gettext("scheduled"),
    "rejected": lazy_gettext("rejected"),
}


def translated(labels: Mapping[str, Any], value: str) -> str:
    """VALUE (a stored English word) in the reader's language, from LABELS (lazy texts);
    VALUE itself when LABELS does not have it."""
    label = labels.get(value)
    return str(label) if label is not None else value


def status_label(value: str) -> str:
    """A message state in the reader's language."""
    return translated(_STATUS_LABELS, value)


def request_language(request: Request, user: ConsoleUser | None) -> str:
    """The language of a console page: the user's choice, else the browser's."""
    chosen = getattr(request.state, "language", None)
    if chosen:
        return str(chosen)
    return i18n.console_language(
        user.language if user else None, request.headers.get("accept-language")
    )


def _local(value: datetime | None, tz: str, all_day: bool = False) -> str:
    """A time in zone TZ (a calendar's): what the receptionist's wall clock says."""
    return local_text(value, tz, all_day) if value else "—"


def _phone(value: str | None) -> str:
    if not value:
        return "—"
    try:
        return format_international(value)
    except Exception:
        return value


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The console's templates (templates/console), HTML-escaped."""
    env = Environment(
        loader=PackageLoader("templates", "console"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["when_text"] = _when_text
    env.filters["phone"] = _phone
    env.filters["local"] = _local
    i18n.install(env)
    env.globals["status_label"] = status_label
    env.globals["languages"] = list(i18n.LANGUAGE_NAMES.items())
    env.globals["static_version"] = str(
        int(max((p.stat().st_mtime for p in STATIC_DIR.iterdir()), default=0))
    )
    return env


def page(
    request: Request,
    user: ConsoleUser | None,
    template: str,
    *,
    status: int = 200,
    nav: str = "",
    **context: Any,
) -> HTMLResponse:
    """A full console page (or a fragment, for templates that do not extend the layout)."""
    flash = request.cookies.get(FLASH_COOKIE)
    with i18n.use(request_language(request, user)):
        html = (
            environment()
            .get_template(template)
            .render(
                request=request,
                user=user,
                csrf_token=user.csrf if user else "",
                nav=nav,
                flash=unquote(flash) if flash else "",
                **context,
            )
        )
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/console")
    return response


def csv_download(body: bytes, filename: str) -> Response:
    """BODY as a CSV file the browser saves as FILENAME."""
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def sign_in_redirect(started: Started, cookie: str, path: str, config: Config) -> RedirectResponse:
    """303 to the provider's sign-in page of a STARTED flow, with the flow's state in COOKIE:
    sent back only to PATH (the flow's callback), and SameSite=Lax so that the provider's
    redirect carries it."""
    response = RedirectResponse(started.url, status_code=303)
    response.set_cookie(
        cookie,
        started.cookie,
        max_age=STATE_SECONDS,
        path=path,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(config),
    )
    return response


def redirect(url: str, flash: str = "") -> RedirectResponse:
    """303 to URL after a form post, with a one-time message shown on the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(
            FLASH_COOKIE, quote(flash), max_age=60, path="/console", httponly=True, samesite="lax"
        )
    return response
