"""Who calls the /v1 API: the one bearer-token check, and the accounts a token may act on.

A token belongs to one account. It acts on that account and on every sub-account below it
(at any depth), as the web console's users do; never on a parent or another customer.
Things of accounts outside that scope are answered 404, exactly like missing ones, so
their ids and names cannot be probed. Every router takes the caller from ``CallerDep``.
"""

# No `from __future__ import annotations` here: FastAPI resolves dependency annotations at
# runtime.

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session, select

from hub.errors import NotFound
from hub.sending.accounts import authenticate, descendant_ids
from hub.store.db import session_scope
from hub.store.models import Account
from hub.web.deps import HubDep

T = TypeVar("T")

_NO_TOKEN = "send 'Authorization: Bearer <token>' (create one with `smshub tokens create ACCOUNT`)"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

# auto_error=False: the 401 is ours (it says how to get a token); the scheme documents the
# header in /openapi.json and gives /docs its "Authorize" button.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token of your account: `smshub tokens create ACCOUNT`, or the "
    "console's API tokens page.",
)


@dataclass(frozen=True)
class Caller:
    """The account a request's token belongs to, and the accounts it may act on."""

    account_id: int
    account_name: str
    scope: frozenset[int]  # the caller's account and all its sub-accounts

    def account(self, session: Session, name: str | None = None) -> Account:
        """The caller's account, or NAME if it is the caller's or one of its sub-accounts."""
        if not name or name == self.account_name:
            found = session.get(Account, self.account_id)
        else:
            found = session.exec(select(Account).where(Account.name == name)).first()
            if found is None or found.id not in self.scope:
                raise NotFound(f"no account named {name!r} among yours")
        assert found is not None and found.id is not None
        return found

    def on_account(
        self, name: str | None, work: Callable[[Session, Account], T]
    ) -> Callable[[Session], T]:
        """WORK given the account NAME (a route's ``?account=``; None: the caller's own),
        looked up with ``account`` in the session WORK runs in."""
        return lambda session: work(session, self.account(session, name))

    def owns(self, account_id: int | None, what: str) -> None:
        """NotFound (WHAT names the thing) unless ACCOUNT_ID is in the caller's scope."""
        if account_id not in self.scope:
            raise NotFound(f"no {what} among your accounts")


def caller_for(engine: Engine, token: str) -> Caller:
    """The Caller of TOKEN; a 401 for an unknown or revoked token."""
    with session_scope(engine) as session:
        account = authenticate(session, token)
        if account is None:
            raise HTTPException(401, "unknown or revoked API token", headers=_CHALLENGE)
        assert account.id is not None
        return Caller(
            account_id=account.id,
            account_name=account.name,
            scope=frozenset(descendant_ids(session, account)),
        )


async def current_caller(
    hub: HubDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The dependency of every /v1 route: the token's account and scope, else a 401."""
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(401, _NO_TOKEN, headers=_CHALLENGE)
    return await asyncio.to_thread(caller_for, hub.engine, credentials.credentials.strip())


CallerDep = Annotated[Caller, Depends(current_caller)]

#: The ?account= of a route: one of the caller's sub-accounts (default: the token's own).
AccountQuery = Annotated[
    str | None,
    Query(description="A sub-account to act on (default: the token's own account)"),
]
