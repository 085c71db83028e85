"""Console page /console/tokens: an account's API tokens (create, shown once; revoke)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from hub.console.actions import changed_page, on_row, settings_page
from hub.console.auth import ConsoleUser
from hub.console.page import Page
from hub.console.render import redirect
from hub.console.settings_common import layout
from hub.core.i18n import gettext as _
from hub.errors import InvalidInput
from hub.sending.accounts import create_token, revoke_token
from hub.store.models import Account, ApiToken
from hub.web.edge import RowId

router = APIRouter()
PATH = "/console/tokens"
TEMPLATE = "settings_tokens.html.j2"


def _context(session: Session, user: ConsoleUser, account: Account) -> dict[str, Any]:
    tokens = session.exec(
        select(ApiToken)
        .where(ApiToken.account_id == account.id)
        .order_by(col(ApiToken.revoked_at).is_not(None), col(ApiToken.id).desc())
    ).all()
    return {**layout(session, user, account, PATH), "tokens": tokens, "new_token": None}


@router.get("/tokens", response_class=HTMLResponse)
async def tokens_page(ui: Page, account: str = "") -> Response:
    """The account's API tokens and the form to create one."""
    return await settings_page(ui, account, TEMPLATE, lambda s, acc: _context(s, ui.user, acc))


@router.post("/tokens", response_class=HTMLResponse)
async def tokens_create(
    ui: Page,
    account: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    """Create a token and show it once, in this response only (never stored in clear)."""
    name = name.strip()
    if len(name) > 64:
        raise InvalidInput("the token name must have at most 64 characters")

    def _create(session: Session, acc: Account) -> dict[str, Any]:
        assert acc.id is not None
        new = create_token(session, acc.id, name)
        return {"new_token": new.token, "new_prefix": new.record.prefix}

    # A page, not a redirect: the token must not travel in a cookie or a URL.
    return await changed_page(
        ui,
        account,
        TEMPLATE,
        _create,
        lambda s, acc: _context(s, ui.user, acc),
    )


@router.post("/tokens/{token_id}/revoke")
async def tokens_revoke(ui: Page, token_id: RowId) -> Response:
    """Revoke a token: programs using it get 401 from now on."""

    def _revoke(session: Session, record: ApiToken, _acc: Account) -> str:
        revoke_token(session, str(token_id))
        return f"{record.prefix}… {record.name}".strip()

    label, url = await on_row(ui, ApiToken, token_id, "API token", PATH, _revoke)
    return redirect(url, _("Token %(token)s revoked.", token=label))
