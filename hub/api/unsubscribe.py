"""The public unsubscribe page: ``GET /u/CODE`` asks, ``POST /u/CODE`` blacklists.

Whoever has the SMS has the link (the code is random and unguessable). A GET only shows the
confirmation button: mail and messaging apps, antivirus scanners and link previews fetch every
URL they see, and none of them may unsubscribe the recipient. Requests are counted per client
address in SQL, as for short links (links.requests_per_minute).
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import asyncio
import html
import math
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from hub.campaigns import unsubscribe
from hub.store import limits as limits_sql
from hub.store.db import session_scope

if TYPE_CHECKING:
    from hub.app import Hub

_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title></head>
<body style="font-family: sans-serif; margin: 2em; max-width: 36em">
{body}
</body></html>
"""

_ASK = """<h1>Ne plus recevoir ces SMS ? / Stop these text messages?</h1>
<p>Le numéro <strong>{number}</strong> ne recevra plus de SMS de cet expéditeur.<br>
The number <strong>{number}</strong> will receive no more text messages from this sender.</p>
<form method="post" action="{action}">
<button type="submit" style="font-size: 1.2em; padding: .5em 1.5em">
Me désinscrire / Unsubscribe</button>
</form>
"""

_DONE = """<h1>C'est fait / Done</h1>
<p>Le numéro <strong>{number}</strong> ne recevra plus de SMS de cet expéditeur.<br>
The number <strong>{number}</strong> will receive no more text messages from this sender.</p>
"""

_NOT_FOUND = """<h1>Lien inconnu / Unknown link</h1>
<p>Ce lien de désinscription n'existe pas : vérifiez qu'il a été copié en entier.<br>
This unsubscribe link does not exist: check that it was copied whole (it is case-sensitive).
</p>
"""

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


def masked(number: str) -> str:
    """The number with all but its last four digits hidden (the page is public)."""
    return "•" * max(0, len(number) - 4) + number[-4:]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=title, body=body), status_code=status, headers=_HEADERS)


def unsubscribe_router(hub: "Hub") -> APIRouter:
    config = hub.config
    router = APIRouter()

    async def handle(code: str, request: Request, confirm: bool) -> Response:
        # The client's own connection, never a header it writes.
        address = request.client.host if request.client else ""
        per_minute = config.links.requests_per_minute

        def _run() -> tuple[str, str | float]:
            with session_scope(hub.engine) as session:
                taken = limits_sql.take(session, f"unsub:addr:{address}", per_minute, 60.0)
                if not taken.allowed:
                    return "limited", taken.retry_after
                link = unsubscribe.find(session, code)
                if link is None:
                    return "missing", ""
                if confirm:
                    unsubscribe.confirm(session, link)
                    return "done", link.number
                return "ask", link.number

        kind, value = await asyncio.to_thread(_run)
        if kind == "limited":
            assert isinstance(value, float | int)
            seconds = max(1, math.ceil(value))
            return HTMLResponse(
                f"more than {per_minute} requests a minute from your address "
                f"(links.requests_per_minute); try again in {seconds} s",
                status_code=429,
                headers={"Retry-After": str(seconds)},
            )
        if kind == "missing":
            return _page("Lien inconnu", _NOT_FOUND, 404)
        number = html.escape(masked(str(value)))
        if kind == "done":
            # The opt-out may have queued an optout.created webhook: post it now.
            hub.webhook_sender.wake()
            return _page("Désinscription confirmée", _DONE.format(number=number))
        action = html.escape(f"/u/{code}")
        return _page("Désinscription", _ASK.format(number=number, action=action))

    @router.get("/u/{code}", tags=["opt-out"], response_class=HTMLResponse)
    async def ask(code: str, request: Request) -> Response:
        """The unsubscribe page of a marketing SMS: shows the button, changes nothing."""
        return await handle(code, request, confirm=False)

    @router.head("/u/{code}", include_in_schema=False, response_class=HTMLResponse)
    async def peek(code: str, request: Request) -> Response:
        return await handle(code, request, confirm=False)

    @router.post("/u/{code}", tags=["opt-out"], response_class=HTMLResponse)
    async def confirm(code: str, request: Request) -> Response:
        """Confirm the unsubscribe: blacklists the number for the sending account (source
        "link"), as a STOP reply would."""
        return await handle(code, request, confirm=True)

    return router
