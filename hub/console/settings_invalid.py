"""Console page /console/invalid: numbers reported invalid twice in a row (NPAI), left
out of the account's sends until removed here."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from hub.console.auth import User
from hub.console.render import page, redirect
from hub.console.settings_common import (
    back_to,
    layout,
    number_page,
    number_range,
    owned,
    page_url,
)
from hub.db import read_scope, session_scope
from hub.edge import RowId
from hub.models import Account, InvalidNumber

router = APIRouter()
PATH = "/console/invalid"


@router.get("/invalid", response_class=HTMLResponse)
async def invalid_page(
    request: Request,
    user: User,
    account: str = "",
    q: str = "",
    after: str = "",
    before: str = "",
) -> Response:
    """The account's invalid numbers, searched by number, one page at a time."""
    hub = request.app.state.hub

    def _load() -> dict[str, Any]:
        with read_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            assert acc.id is not None
            region = acc.default_region or hub.config.hub.default_region
            rows = number_page(
                session,
                InvalidNumber,
                acc.id,
                number_range(q, region),
                after=after,
                before=before,
                size=hub.config.console.page_size,
            )
            own = None if acc.id == user.account_id else acc.name
            return {
                **layout(session, user, acc, PATH),
                "entries": rows.rows,
                "q": q,
                "next_url": rows.next_after
                and page_url(PATH, account=own, q=q, after=rows.next_after),
                "prev_url": rows.prev_before
                and page_url(PATH, account=own, q=q, before=rows.prev_before),
            }

    ctx = await asyncio.to_thread(_load)
    return page(request, user, "settings_invalid.html.j2", nav="account", **ctx)


@router.post("/invalid/{entry_id}/remove")
async def invalid_remove(request: Request, user: User, entry_id: RowId) -> Response:
    """Take a number off the invalid list, so the account's sends reach it again."""
    hub = request.app.state.hub

    def _remove() -> tuple[str, str]:
        with session_scope(hub.engine) as session:
            row = owned(session, InvalidNumber, entry_id, user, "invalid number")
            acc = session.get(Account, row.account_id)
            assert acc is not None
            session.delete(row)
            return row.number, back_to(PATH, user, acc)

    number, url = await asyncio.to_thread(_remove)
    return redirect(url, f"{number} removed from the invalid list; SMS to it will go out again.")
