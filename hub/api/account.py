"""/v1/account: the token's own account, its balance (or the payer's it draws from) and its
sub-accounts. The sub-accounts themselves are managed under /v1/accounts (``accounts``)."""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

from typing import Any

from fastapi import APIRouter

from hub.api.auth import CallerDep
from hub.api.support import in_session
from hub.sending.accounts import ancestors
from hub.store.views import account_view
from hub.web.deps import HubDep

router = APIRouter()


@router.get("/v1/account", tags=["account"])
async def get_account(who: CallerDep, hub: HubDep) -> dict[str, Any]:
    """Your account: balance (or the parent's it draws from) and sub-accounts."""

    def _get(session: Any) -> dict[str, Any]:
        account = who.account(session)
        return account_view(session, account, ancestors(session, account))

    return await in_session(hub, _get)
