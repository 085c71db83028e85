"""Console page /console/tokens: an account's API tokens (create, shown once; revoke)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from hub.console.auth import ConsoleUser, User
from hub.console.render import page, redirect
from hub.console.settings_common import back_to, layout, owned
from hub.core.i18n import gettext as _
from hub.errors import InvalidInput
from hub.sending.accounts import create_token, revoke_token
from hub.store.db import read_scope, session_scope
from hub.store.models import Account, ApiToken
from hub.web.edge import RowId

router = APIRouter()
PATH = "/console/tokens"


def _context(session: Session, user: ConsoleUser, account: Account) -> dict[str, Any]:
    tokens = session.exec(
        select(ApiToken)
        .where(ApiToken.account_id == account.id)
        .order_by(col(ApiToken.revoked_at).is_not(None), col(ApiToken.id).desc())
    ).all()
    return {**layout(session, user, account, PATH), "tokens": tokens, "new_token": None}


@router.get("/tokens", response_class=HTMLResponse)
async def tokens_page(request: Request, user: User, account: str = "") -> Response:
    """The account's API tokens and the form to create one."""
    hub = request.app.state.hub

    def _load() -> dict[str, Any]:
        with read_scope(hub.engine) as session:
            return _context(session, user, user.account(session, account or None))

    ctx = await asyncio.to_thread(_load)
    return page(request, user, "settings_tokens.html.j2", nav="account", **ctx)


@router.post("/tokens", response_class=HTMLResponse)
async def tokens_create(
    request: Request,
    user: User,
    account: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    """Create a token and show it once, in this response only (never stored in clear)."""
    hub = request.app.state.hub
    name = name.strip()
    if len(name) > 64:
        raise InvalidInput("the token name must have at most 64 characters")

    def _create() -> dict[str, Any]:
        with session_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            assert acc.id is not None
            new = create_token(session, acc.id, name)
            token, prefix = new.token, new.record.prefix
        with read_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            ctx = _context(session, user, acc)
        return {**ctx, "new_token": token, "new_prefix": prefix}

    ctx = await asyncio.to_thread(_create)
    # A page, not a redirect: the token must not travel in a cookie or a URL.
    return page(request, user, "settings_tokens.html.j2", nav="account", **ctx)


@router.post("/tokens/{token_id}/revoke")
async def tokens_revoke(request: Request, user: User, token_id: RowId) -> Response:
    """Revoke a token: programs using it get 401 from now on."""
    hub = request.app.state.hub

    def _revoke() -> tuple[str, str]:
        with session_scope(hub.engine) as session:
            record = owned(session, ApiToken, token_id, user, "API token")
            revoke_token(session, str(token_id))
            acc = session.get(Account, record.account_id)
            assert acc is not None
            label = f"{record.prefix}… {record.name}".strip()
            return label, back_to(PATH, user, acc)

    label, url = await asyncio.to_thread(_revoke)
    return redirect(url, _("Token %(token)s revoked.", token=label))
