"""HTTP routes of short links and hosted files: the public ``/s/CODE`` and the ``/v1`` API.

``GET /s/CODE`` is public (whoever has the SMS has the link), rate-limited per client
address (hub.api.public); everything under ``/v1`` needs an API token (``CallerDep``).
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import asyncio
import html
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Header, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.api.auth import CallerDep
from hub.api.public import client_address, wait_for_rate
from hub.api.support import in_session
from hub.campaigns import clicks, links
from hub.core.timeutil import as_utc
from hub.errors import NotFound
from hub.store.db import session_scope
from hub.store.models import Account, HostedFile, LinkClick, ShortLink
from hub.web.deps import HubDep
from hub.web.edge import RowId, Text

if TYPE_CHECKING:
    from hub.app import Hub

router = APIRouter()

_NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Link not found</title></head>
<body style="font-family: sans-serif; margin: 2em">
<h1>This link does not exist</h1>
<p>The address <code>{path}</code> is not a link of this service. Check that it was copied
whole from the message; links are case-sensitive.</p>
</body></html>
"""

# Served files must never be taken for something else (HTML, script) by a browser.
_FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}


class LinkBody(BaseModel):
    url: Text = Field(description="The http(s) URL the short link redirects to")
    account: Text | None = Field(None, description="A sub-account to own it (default: yours)")


# -- the public side ----------------------------------------------------------------------------
def _open(
    hub: "Hub", code: str, address: str, user_agent: str, counted: bool
) -> tuple[str, Any] | None:
    """What /s/CODE answers: ("limited", seconds), ("file", (data, type, name)),
    ("redirect", url), or None for no such link; a counted visit records its click."""
    # Read before the transaction, which holds the address's rate counter: the parser's
    # first use loads its rules (about half a second).
    agent = clicks.parse_agent(user_agent) if counted else None
    with session_scope(hub.engine) as session:
        seconds = wait_for_rate(session, hub, "links", address)
        if seconds is not None:
            return "limited", seconds
        link = links.resolve(session, code)
        if link is None:
            return None
        hosted = None
        if link.file_id is not None:
            hosted = session.get(HostedFile, link.file_id)
            if hosted is None:
                return None
        if counted:
            links.record_click(session, hub.config, link, user_agent, agent)
        if hosted is not None:
            return "file", (hosted.data, hosted.content_type, hosted.name)
        return "redirect", link.target_url


def _file_response(data: bytes, content_type: str, name: str) -> Response:
    return Response(
        data,
        media_type=content_type,
        headers={"Content-Disposition": links.content_disposition(name), **_FILE_HEADERS},
    )


async def follow(hub: "Hub", code: str, request: Request, user_agent: str) -> Response:
    """Answer a visit of /s/CODE."""
    # A HEAD is a link preview or a checker, not a person clicking: answered, not counted.
    counted = request.method == "GET"
    address = client_address(request)
    found = await asyncio.to_thread(_open, hub, code, address, user_agent, counted)
    if found is None:
        page = _NOT_FOUND_PAGE.format(path=html.escape(request.url.path))
        return HTMLResponse(page, status_code=404)
    kind, value = found
    if kind == "limited":
        return JSONResponse(
            {
                "error": f"more than {hub.config.links.requests_per_minute} short-link "
                "requests a minute from your address (links.requests_per_minute); "
                f"try again in {value} s"
            },
            status_code=429,
            headers={"Retry-After": str(value)},
        )
    if counted:
        # The click may have queued a link.clicked webhook: post it now.
        hub.webhook_sender.wake()
    if kind == "file":
        return _file_response(*value)
    return RedirectResponse(
        value,
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get("/s/{code}", tags=["links"], response_class=Response)
async def open_link(
    code: str, request: Request, hub: HubDep, user_agent: Annotated[str, Header()] = ""
) -> Response:
    """Follow a short link: redirect to its URL or show its file; counts the click."""
    return await follow(hub, code, request, user_agent)


@router.head("/s/{code}", include_in_schema=False, response_class=Response)
async def peek_link(
    code: str, request: Request, hub: HubDep, user_agent: Annotated[str, Header()] = ""
) -> Response:
    return await follow(hub, code, request, user_agent)


# -- files --------------------------------------------------------------------------------------
@router.post("/v1/files", status_code=201, tags=["links"], response_model=None)
async def upload_file(
    who: CallerDep,
    hub: HubDep,
    file: Annotated[UploadFile, File(description="A PNG, GIF, JPEG or PDF file")],
    account: Annotated[str | None, Form(description="A sub-account to own it")] = None,
) -> dict[str, Any] | JSONResponse:
    """Host a file and give it a short link (the type is read from the content)."""
    config = hub.config
    limit = links.max_file_size(config)
    # Read one byte past the limit: enough to know it is too large, never the whole file.
    data = await file.read(limit + 1)
    name = file.filename or ""

    def _upload(session: Session, owner: Account) -> dict[str, Any]:
        assert owner.id is not None
        hosted, link = links.upload(session, config, owner.id, name, data)
        return links.file_view(config, hosted, link)

    # Too large (413) and unsupported (415) are answered by hub.api.errors' table.
    return await in_session(hub, who.on_account(account, _upload))


@router.get("/v1/files/{file_id}", tags=["links"], response_class=Response)
async def download_file(file_id: RowId, who: CallerDep, hub: HubDep) -> Response:
    """A hosted file of yours (or of a sub-account), as it is served."""

    def _get(session: Session) -> tuple[bytes, str, str]:
        hosted = session.get(HostedFile, file_id)
        if hosted is None or hosted.account_id not in who.scope:
            raise NotFound(f"no file {file_id}")
        return hosted.data, hosted.content_type, hosted.name

    return _file_response(*await in_session(hub, _get))


# -- links --------------------------------------------------------------------------------------
@router.post("/v1/links", status_code=201, tags=["links"])
async def create_link(body: LinkBody, who: CallerDep, hub: HubDep) -> dict[str, Any]:
    """A short link to a URL; its clicks are counted (and sent as link.clicked webhooks)."""

    def _create(session: Session, owner: Account) -> dict[str, Any]:
        assert owner.id is not None
        return links.link_view(hub.config, links.shorten(session, owner.id, body.url), 0)

    return await in_session(hub, who.on_account(body.account, _create))


def _click_view(c: LinkClick) -> dict[str, Any]:
    return {
        "number": c.number,
        "user_agent": c.user_agent,
        "device": c.device_family,
        "os": c.os_family,
        "browser": c.browser_family,
        "bot": c.bot,
        "at": as_utc(c.clicked_at).isoformat(),
    }


def _link_with_clicks(hub: "Hub", session: Session, link: ShortLink) -> dict[str, Any]:
    total = session.exec(
        select(func.count()).select_from(LinkClick).where(LinkClick.link_id == link.id)
    ).one()
    rows = session.exec(
        select(LinkClick)
        .where(LinkClick.link_id == link.id)
        .order_by(col(LinkClick.id).desc())
        .limit(1000)
    ).all()
    data = links.link_view(hub.config, link, int(total))
    data["click_list"] = [_click_view(c) for c in rows]
    return data


@router.get("/v1/links/{code}", tags=["links"])
async def get_link(code: str, who: CallerDep, hub: HubDep) -> dict[str, Any]:
    """A short link of yours with its clicks, newest first (at most 1000)."""

    def _get(session: Session) -> dict[str, Any]:
        link = links.resolve(session, code)
        if link is None or link.account_id not in who.scope:
            raise NotFound(f"no short link {code!r}")
        return _link_with_clicks(hub, session, link)

    return await in_session(hub, _get)
