"""The web console: server-rendered pages on the hub's HTTP server, under /console.

It owns its pages (``routes_*``, one router per area, ``settings_*`` for the account
settings), their reads (``*_query``, ``*_data``, ``account_*``), login and sessions
(``auth``, ``session``), rendering (``render``) and the one shape of a page's database work
(``actions``: on an account or a row the user may see, in a worker thread). Routes take
``page.Page``: the request, the hub (``hub.web.deps.HubDep``) and the user (``auth.User``)
in one dependency, which also reads in a worker thread and renders. It may import the
features, the sending core, the store, ``hub.core`` and ``hub.web``; nothing imports it
but ``hub.api.app``, which mounts it on the HTTP app the composition root builds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from hub.console import (
    routes_account,
    routes_calendars,
    routes_campaign_new,
    routes_campaigns,
    routes_contacts,
    routes_history,
    routes_home,
    routes_language,
    routes_login,
    routes_mailboxes,
    routes_replies,
    routes_settings,
    routes_templates,
)
from hub.console.render import STATIC_DIR, page
from hub.core import i18n
from hub.core.i18n import gettext as _
from hub.errors import CsrfFailed, HubError, LoginRequired

if TYPE_CHECKING:
    from hub.app import Hub

PREFIX = "/console"


def _wants_html(request: Request) -> bool:
    # console.js marks its fetch calls; everything else is a browser navigating.
    return request.headers.get("x-requested-with") != "fetch"


def is_console(request: Request) -> bool:
    """True for requests to console pages (their errors are pages, not JSON)."""
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def error_page(request: Request, status: int, message: str) -> Response:
    """An error as the console shows it: a page with the reason, or text for fetch calls."""
    if not _wants_html(request):
        return JSONResponse({"error": message}, status_code=status)
    return page(request, None, "error.html.j2", status=status, message=message, code=status)


def install_console(app: FastAPI, hub: Hub) -> None:
    """Mount the console's pages, static files and error handling on APP."""
    app.state.hub = hub
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    for module in (
        routes_login,
        routes_home,
        routes_history,
        # Before routes_campaigns: /campaigns/new is not a campaign id.
        routes_campaign_new,
        routes_campaigns,
        routes_contacts,
        routes_templates,
        routes_replies,
        routes_calendars,
        routes_mailboxes,
        routes_account,
        routes_settings,
        routes_language,
    ):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        if not _wants_html(request):
            # Read by console.js (and scripts): stays English whatever the language.
            return JSONResponse({"error": "log in again"}, status_code=401)
        return RedirectResponse(f"{PREFIX}/login?next={quote(exc.next_url)}", status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        i18n.set_language(i18n.console_language(None, request.headers.get("accept-language")))
        return error_page(
            request,
            403,
            _(
                "This form is out of date (or was sent from another site). "
                "Reload the page and try again."
            ),
        )

    @app.get("/", include_in_schema=False)
    async def _root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)


def console_error(request: Request, exc: HubError, status: int) -> Response | None:
    """The console's answer to a HubError raised by one of its pages (None: not a page)."""
    if not is_console(request):
        return None
    return error_page(request, status, str(exc))
