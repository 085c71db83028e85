"""Sub-accounts and credit moves from the console, limited to what the user may touch.

The work is hub.sending.accounts' and hub.sending.credits' (as ``smshub accounts
create|transfer|reset|
disable`` do it); this module only decides who may ask. A console user acts on their own
account and the accounts below it: credits move between two of those (so never into their
own account from its parent: fresh credits are an admin's ``smshub accounts credit``), and
only sub-accounts below the user's own account can be reset, disabled or enabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from hub.core.i18n import gettext as _
from hub.errors import Forbidden, InvalidInput
from hub.sending import credits
from hub.sending.accounts import create_account, set_disabled
from hub.store.models import Account, CreditMode

if TYPE_CHECKING:
    from hub.console.auth import ConsoleUser
    from hub.core.config import Config


def parse_amount(value: str, *, field: str = "Amount", optional: bool = False) -> int:
    """A positive whole number of credits typed in a form (0 or empty allowed if OPTIONAL)."""
    value = value.strip()
    if optional and value in {"", "0"}:
        return 0
    try:
        amount = int(value)
    except ValueError:
        amount = 0
    if amount <= 0:
        raise InvalidInput(f"{field}: {value!r} is not a positive whole number of credits")
    return amount


def _below_own(user: ConsoleUser, account: Account) -> None:
    """Refuse the user's own account where only its sub-accounts may be changed."""
    if account.id == user.account_id:
        raise Forbidden(
            f"{account.name} is your own account; only its sub-accounts can be reset, "
            "disabled or enabled here"
        )


def create_sub_account(
    session: Session,
    config: Config,
    user: ConsoleUser,
    parent: Account,
    name: str,
    mode: str,
    initial: str,
) -> str:
    """A sub-account of PARENT, with INITIAL credits moved from PARENT (one transaction)."""
    assert parent.id is not None
    user.require(parent.id)
    amount = parse_amount(initial, field="Initial credits", optional=True)
    if mode not in {m.value for m in CreditMode}:
        raise InvalidInput(f"Credit mode: choose limited or unlimited, not {mode!r}")
    if amount and mode != CreditMode.LIMITED:
        raise InvalidInput(
            "Initial credits: an unlimited sub-account spends its parent's credits and holds "
            "none of its own; leave it empty"
        )
    try:
        account = create_account(session, name.strip(), parent=parent.id, credit_mode=mode)
    except InvalidInput as exc:
        raise InvalidInput(f"Name: {exc}") from exc
    message = _(
        "Created %(name)s (%(mode)s) under %(parent)s.",
        name=account.name,
        mode=mode,
        parent=parent.name,
    )
    if amount:
        assert account.id is not None
        credits.transfer(session, parent.id, account.id, amount, config=config)
        message += f" Moved {amount} credits to it from {parent.name}."
    return message


def move_credits(
    session: Session, config: Config, user: ConsoleUser, source: str, target: str, amount: str
) -> str:
    """AMOUNT credits from SOURCE to TARGET, an account and its direct sub-account."""
    # Both ends inside the user's scope: the parent of the user's own account is outside
    # it, so nobody can pull credits up into their own account from above.
    src = user.account(session, source)
    dst = user.account(session, target)
    credits_ = parse_amount(amount)
    assert src.id is not None and dst.id is not None
    balance = credits.transfer(session, src.id, dst.id, credits_, config=config)
    return f"Moved {credits_} credits from {src.name} to {dst.name}; {dst.name} now has {balance}."


def reset_sub_account(session: Session, config: Config, user: ConsoleUser, name: str) -> str:
    """Give a sub-account's whole balance back to its parent."""
    sub = user.account(session, name)
    _below_own(user, sub)
    if sub.credit_mode != CreditMode.LIMITED:
        raise InvalidInput(f"{sub.name} is unlimited and holds no credits of its own to reset")
    assert sub.id is not None
    moved = credits.reset(session, sub.id, config=config)
    parent = session.get(Account, sub.parent_id)
    to = parent.name if parent else "its parent"
    return f"Reset {sub.name}: {moved} credits returned to {to}."


def set_sub_account_disabled(session: Session, user: ConsoleUser, name: str, disabled: bool) -> str:
    """Disable a sub-account (it and its own sub-accounts stop sending) or enable it again."""
    sub = user.account(session, name)
    _below_own(user, sub)
    assert sub.id is not None
    set_disabled(session, sub.id, disabled)
    if disabled:
        return f"Disabled {sub.name}: it and its sub-accounts can no longer send."
    return f"Enabled {sub.name} again."
