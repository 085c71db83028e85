"""/v1/accounts and /v1/transfers: sub-accounts and the credits they hold.

What the console lets its users do (hub.console.account_credits), with the same domain
functions (hub.sending.accounts, hub.sending.credits) and the same limits: a token sees its
own account and those below it; it creates sub-accounts below those, and moves credits
between two of them (so never into its own account from its parent). Fresh credits (a
top-up) are the hub administrator's: `smshub accounts credit`; "crediting" a sub-account
here moves credits to it from its parent's balance.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from hub.api.auth import Caller, CallerDep
from hub.api.errors import error_responses
from hub.api.support import ChangeDep, LimitDep, in_session, next_cursor
from hub.errors import Forbidden, InvalidInput
from hub.sending import credits
from hub.sending.accounts import ancestors, create_account
from hub.store.models import Account, CreditMode
from hub.store.views import account_view
from hub.web.deps import HubDep
from hub.web.edge import Text

TAG = "accounts"
router = APIRouter(tags=[TAG])


class AccountOut(BaseModel):
    name: str = Field(examples=["acme-lyon"])
    parent: str | None
    credit_mode: Literal["limited", "unlimited"]
    balance: int | None = Field(description="Its own credits (None: unlimited, draws from above)")
    available: int = Field(description="What it can spend: its balance or the payer's")
    draws_from: str | None
    disabled: bool
    default_region: str | None
    default_sender: str | None
    sub_accounts: list[str]


class AccountPage(BaseModel):
    """Your account and those below it, by name; pass ``next`` as ``after``."""

    accounts: list[AccountOut]
    next: str | None = None


class NewSubAccount(BaseModel):
    name: Text = Field(description="1-64 lower-case letters, digits, '.', '_' or '-'")
    parent: Text | None = Field(None, description="Your account (default) or a sub-account")
    credit_mode: Literal["limited", "unlimited"] = Field(
        "limited", description="unlimited: spends its parent's credits, holds none"
    )
    initial_credits: int = Field(0, ge=0, description="Moved from the parent (limited only)")
    region: Text | None = Field(None, description="Default country of national numbers")
    sender: Text | None = Field(None, description="Default sender")


class Credit(BaseModel):
    amount: int = Field(gt=0, description="Credits moved from the account's parent")


class TransferBody(BaseModel):
    source: Text = Field(alias="from", description="The account giving credits")
    target: Text = Field(alias="to", description="Its direct sub-account or parent")
    amount: int = Field(gt=0)


class Moved(BaseModel):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    amount: int
    balance: int = Field(description="The receiving account's balance after the move")


def _view(session: Session, account: Account) -> dict[str, Any]:
    return account_view(session, account, ancestors(session, account))


def _below_own(who: Caller, account: Account) -> None:
    """Refuse the caller's own account where only its sub-accounts may be changed."""
    if account.id == who.account_id:
        raise Forbidden(
            f"{account.name} is your own account; credits come to it from its parent's "
            "holder or the hub administrator (`smshub accounts credit`)"
        )


@router.get("/v1/accounts", summary="List your accounts", responses=error_responses())
async def get_accounts(
    who: CallerDep, hub: HubDep, limit: LimitDep, after: str = ""
) -> AccountPage:
    """Your account and all its sub-accounts (any depth), by name."""

    def _run(session: Session) -> AccountPage:
        query = select(Account).where(col(Account.id).in_(who.scope))
        if after:
            query = query.where(col(Account.name) > after)
        rows = session.exec(query.order_by(col(Account.name)).limit(limit)).all()
        return AccountPage(
            accounts=[AccountOut(**_view(session, a)) for a in rows],
            next=next_cursor(rows, limit, lambda r: r.name),
        )

    return await in_session(hub, _run)


@router.post(
    "/v1/accounts",
    status_code=201,
    summary="Create a sub-account",
    response_model=AccountOut,
    responses=error_responses(402, 404, 409),
)
async def create_sub_account(body: NewSubAccount, change: ChangeDep) -> Response:
    """A sub-account of your account (or of one of its sub-accounts), with
    ``initial_credits`` moved from its parent in the same transaction."""
    if body.initial_credits and body.credit_mode != CreditMode.LIMITED:
        raise InvalidInput(
            "initial_credits: an unlimited sub-account spends its parent's credits and "
            "holds none of its own; leave it 0"
        )

    def _run(session: Session, parent: Account) -> dict[str, Any]:
        assert parent.id is not None
        account = create_account(
            session,
            body.name.strip(),
            parent=parent.id,
            credit_mode=body.credit_mode,
            region=body.region,
            sender=body.sender,
        )
        assert account.id is not None
        if body.initial_credits:
            credits.transfer(
                session, parent.id, account.id, body.initial_credits, config=change.hub.config
            )
            session.refresh(account)
        return _view(session, account)

    work = change.who.on_account(body.parent, _run)
    return await change.answer(body, 201, work)


@router.get("/v1/accounts/{name}", summary="One account", responses=error_responses(404))
async def get_one(name: str, who: CallerDep, hub: HubDep) -> AccountOut:
    """Your account or a sub-account: balance, what it can spend, sub-accounts."""
    return AccountOut(**await in_session(hub, who.on_account(name, _view)))


@router.post(
    "/v1/accounts/{name}/credit",
    summary="Credit a sub-account from its parent",
    response_model=Moved,
    responses=error_responses(402, 403, 404, 409),
)
async def credit(name: str, body: Credit, change: ChangeDep) -> Response:
    """Move ``amount`` credits from the sub-account's parent to it (402 if the parent
    has too few). Your own account cannot be credited this way."""

    def _run(session: Session, sub: Account) -> dict[str, Any]:
        _below_own(change.who, sub)
        assert sub.id is not None and sub.parent_id is not None
        parent = change.who.account(session, _name_of(session, sub.parent_id))
        balance = credits.transfer(
            session, sub.parent_id, sub.id, body.amount, config=change.hub.config
        )
        return _moved(parent.name, sub.name, body.amount, balance)

    work = change.who.on_account(name, _run)
    return await change.answer(body, 200, work)


@router.post(
    "/v1/transfers",
    summary="Move credits between two of your accounts",
    response_model=Moved,
    responses=error_responses(402, 404, 409),
)
async def transfer(body: TransferBody, change: ChangeDep) -> Response:
    """Credits from an account to its direct sub-account, or back up; both must be
    yours (your account or below it)."""

    def _run(session: Session) -> dict[str, Any]:
        src = change.who.account(session, body.source)
        dst = change.who.account(session, body.target)
        assert src.id is not None and dst.id is not None
        balance = credits.transfer(session, src.id, dst.id, body.amount, config=change.hub.config)
        return _moved(src.name, dst.name, body.amount, balance)

    named = body.model_dump(by_alias=True)
    return await change.answer(named, 200, _run)


def _name_of(session: Session, account_id: int) -> str:
    found = session.get(Account, account_id)
    assert found is not None
    return str(found.name)


def _moved(source: str, target: str, amount: int, balance: int) -> dict[str, Any]:
    return {"from": source, "to": target, "amount": amount, "balance": balance}
