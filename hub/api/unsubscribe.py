"""The public unsubscribe page: ``GET /u/CODE`` asks, ``POST /u/CODE`` blacklists.

Whoever has the SMS has the link (the code is random and unguessable). A GET only shows the
confirmation button: mail and messaging apps, antivirus scanners and link previews fetch every
URL they see, and none of them may unsubscribe the recipient. Requests are counted per client
address in SQL, as for short links (hub.api.public, links.requests_per_minute).
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import html
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.api.public import client_address, wait_for_rate
from hub.api.support import in_session
from hub.campaigns import unsubscribe
from hub.web.deps import HubDep

if TYPE_CHECKING:
    from hub.app import Hub

router = APIRouter()

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


def _visit(
    session: Session, hub: "Hub", code: str, address: str, confirm: bool
) -> tuple[str, str | int]:
    """("limited", seconds), ("missing", ""), or ("done" / "ask", the number)."""
    seconds = wait_for_rate(session, hub, "unsub", address)
    if seconds is not None:
        return "limited", seconds
    link = unsubscribe.find(session, code)
    if link is None:
        return "missing", ""
    if confirm:
        unsubscribe.confirm(session, link)
        return "done", link.number
    return "ask", link.number


async def handle(hub: "Hub", code: str, request: Request, confirm: bool) -> Response:
    """Answer a visit of /u/CODE (CONFIRM: the button was pressed)."""
    address = client_address(request)
    kind, value = await in_session(hub, lambda s: _visit(s, hub, code, address, confirm))
    if kind == "limited":
        return HTMLResponse(
            f"more than {hub.config.links.requests_per_minute} requests a minute from your "
            f"address (links.requests_per_minute); try again in {value} s",
            status_code=429,
            headers={"Retry-After": str(value)},
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
async def ask(code: str, request: Request, hub: HubDep) -> Response:
    """The unsubscribe page of a marketing SMS: shows the button, changes nothing."""
    return await handle(hub, code, request, confirm=False)


@router.head("/u/{code}", include_in_schema=False, response_class=HTMLResponse)
async def peek(code: str, request: Request, hub: HubDep) -> Response:
    return await handle(hub, code, request, confirm=False)


@router.post("/u/{code}", tags=["opt-out"], response_class=HTMLResponse)
async def confirm(code: str, request: Request, hub: HubDep) -> Response:
    """Confirm the unsubscribe: blacklists the number for the sending account (source
    "link"), as a STOP reply would."""
    return await handle(hub, code, request, confirm=True)
