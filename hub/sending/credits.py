"""Credits: every change of a balance is one ledger row written with an atomic update.

A balance never goes below zero, also under concurrent sends from several processes: the
decrement is a single ``UPDATE ... WHERE balance + delta >= 0``, which PostgreSQL and SQLite
both apply atomically, and the ledger row is written in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, text
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from hub.core.timeutil import utcnow
from hub.errors import ConflictError, InsufficientCredits, InvalidInput
from hub.sending import balance_alert
from hub.sending.accounts import ancestors, get_account
from hub.store.db import table
from hub.store.models import Account, CreditMode, LedgerEntry, LedgerKind

if TYPE_CHECKING:
    from hub.core.config import Config

# A Core statement, not an ORM object: no flush, no identity map, for every charge.
_INSERT_LEDGER = insert(table(LedgerEntry))
_APPLY = text(
    "UPDATE accounts SET balance = balance + :delta "
    "WHERE id = :id AND balance + :delta >= 0 RETURNING balance, alert_armed, alert_threshold"
)


def _apply(
    session: Session,
    account: Account,
    delta: int,
    kind: LedgerKind,
    *,
    origin: Account | None = None,
    message_id: str | None = None,
    batch_id: str | None = None,
    note: str = "",
    config: Config | None = None,
) -> int:
    """Change ACCOUNT's balance by DELTA with its ledger row, then check its balance alert.

    CONFIG lets a crossing of the alert threshold be alerted once the change is committed;
    without it the change can only re-arm the alert (see hub.sending.balance_alert).
    """
    row = session.execute(_APPLY, {"delta": delta, "id": account.id}).first()
    if row is None:
        raise _short(account, -delta, session)
    balance = int(row[0])
    assert account.id is not None
    session.connection().execute(
        _INSERT_LEDGER,
        _ledger_row(account, delta, balance, kind, origin, message_id, batch_id, note),
    )
    # The ORM copy takes the new balance as loaded, not as a change to write back; the row
    # is ours until the commit, so it stays true (and the next read needs no SELECT).
    set_committed_value(account, "balance", balance)
    _after_change(session, config, account, row)
    return balance


def _after_change(session: Session, config: Config | None, account: Account, row: Any) -> None:
    """Re-arm ACCOUNT's alert, or have a crossing alerted after the commit; ROW is what the
    change's UPDATE returned (its row lock makes it exact until the commit)."""
    balance_alert.after_change(
        session,
        config,
        account,
        balance=int(row[0]),
        armed=bool(row[1]),
        threshold=None if row[2] is None else int(row[2]),
    )


def _ledger_row(
    account: Account,
    delta: int,
    balance: int,
    kind: LedgerKind,
    origin: Account | None,
    message_id: str | None,
    batch_id: str | None,
    note: str,
) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "origin_account_id": origin.id if origin else None,
        "kind": kind.value,
        "amount": delta,
        "balance_after": balance,
        "message_id": message_id,
        "batch_id": batch_id,
        "note": note[:255],
        "created_at": utcnow(),
    }


def _short(account: Account, needed: int, session: Session) -> InsufficientCredits:
    current = session.execute(
        text("SELECT balance FROM accounts WHERE id = :id"), {"id": account.id}
    ).scalar_one()
    return InsufficientCredits(
        f"account {account.name!r} has {current} credits, {needed} are needed; "
        "nothing was charged (top up with `smshub accounts credit`)"
    )


def _positive(amount: int) -> None:
    if amount <= 0:
        raise InvalidInput(f"the amount must be a positive number of credits, not {amount}")


def top_up(
    session: Session, ref: str | int, amount: int, note: str = "", *, config: Config | None = None
) -> int:
    """Add credits to a limited account; returns the new balance."""
    _positive(amount)
    account = get_account(session, ref)
    if account.credit_mode != CreditMode.LIMITED:
        raise ConflictError(
            f"account {account.name!r} is unlimited and draws from its parent; top up the parent"
        )
    return _apply(session, account, amount, LedgerKind.TOPUP, note=note, config=config)


def transfer(
    session: Session,
    source: str | int,
    target: str | int,
    amount: int,
    *,
    config: Config | None = None,
) -> int:
    """Move credits from an account to one of its limited sub-accounts (or back up).

    With CONFIG, a source that falls below its alert threshold is alerted."""
    _positive(amount)
    src = get_account(session, source)
    dst = get_account(session, target)
    if dst.parent_id != src.id and src.parent_id != dst.id:
        raise ConflictError(
            f"credits move only between an account and its direct sub-account; "
            f"{src.name!r} and {dst.name!r} are not parent and child"
        )
    for acc in (src, dst):
        if acc.credit_mode != CreditMode.LIMITED:
            raise ConflictError(f"account {acc.name!r} is unlimited and has no balance of its own")
    _apply(session, src, -amount, LedgerKind.TRANSFER_OUT, origin=dst, config=config)
    return _apply(session, dst, amount, LedgerKind.TRANSFER_IN, origin=src, config=config)


def reset(session: Session, ref: str | int, *, config: Config | None = None) -> int:
    """Give a sub-account's whole balance back to its parent; returns the amount moved."""
    sub = get_account(session, ref)
    if sub.parent_id is None:
        raise ConflictError(f"account {sub.name!r} is a main account; only sub-accounts are reset")
    parent = get_account(session, sub.parent_id)
    session.refresh(sub)
    amount = sub.balance
    if amount <= 0:
        return 0
    _apply(session, sub, -amount, LedgerKind.RESET_OUT, origin=parent, config=config)
    _apply(session, parent, amount, LedgerKind.RESET_IN, origin=sub, config=config)
    return amount


def charge(
    session: Session,
    payer: Account,
    amount: int,
    *,
    origin: Account,
    batch_id: str,
    note: str = "",
    config: Config | None = None,
) -> int:
    """Take AMOUNT credits from PAYER for a send by ORIGIN; raises InsufficientCredits.

    With CONFIG, a charge that takes PAYER below its alert threshold is alerted after the
    commit."""
    if amount == 0:
        session.refresh(payer)
        return payer.balance
    return _apply(
        session,
        payer,
        -amount,
        LedgerKind.CHARGE,
        origin=origin,
        batch_id=batch_id,
        note=note,
        config=config,
    )


@dataclass(frozen=True)
class Charge:
    """One of several charges taken together (``charge_many``), as ``charge`` takes it."""

    amount: int
    origin: Account
    batch_id: str
    note: str = ""


def charge_many(
    session: Session, payer: Account, charges: Sequence[Charge], *, config: Config | None = None
) -> list[int]:
    """Take CHARGES from PAYER as ``charge`` one after the other would; returns the balance
    after each. Raises InsufficientCredits when PAYER cannot pay them all.

    Without a balance alert on PAYER they cost one UPDATE and one INSERT together, with one
    ledger row each as before. With an alert each is applied and checked in turn, so that the
    charge that crosses is the one alerted (after the commit); if a later one cannot be paid,
    the earlier ones stay applied: the caller rolls back.
    """
    if len(charges) == 1 or payer.alert_threshold is not None:
        return [
            charge(
                session,
                payer,
                c.amount,
                origin=c.origin,
                batch_id=c.batch_id,
                note=c.note,
                config=config,
            )
            for c in charges
        ]
    total = sum(c.amount for c in charges)
    if total == 0:
        session.refresh(payer)
        return [payer.balance] * len(charges)
    row = session.execute(_APPLY, {"delta": -total, "id": payer.id}).first()
    if row is None:
        raise _short(payer, total, session)
    balance = int(row[0])
    after: list[int] = []
    ledger: list[dict[str, Any]] = []
    running = balance + total
    for c in charges:
        running -= c.amount
        after.append(running)
        if c.amount:  # as charge(): nothing to write for a free send
            ledger.append(
                _ledger_row(
                    payer, -c.amount, running, LedgerKind.CHARGE, c.origin, None, c.batch_id, c.note
                )
            )
    session.connection().execute(_INSERT_LEDGER, ledger)
    set_committed_value(payer, "balance", balance)
    return after


def refund(
    session: Session,
    payer_id: int,
    amount: int,
    *,
    origin_id: int,
    message_id: str,
    note: str,
    config: Config | None = None,
) -> int:
    """Give back AMOUNT credits for a message that will never be sent (re-arms alerts)."""
    payer = session.get(Account, payer_id)
    origin = session.get(Account, origin_id)
    assert payer is not None
    if amount <= 0:
        return payer.balance
    return _apply(
        session,
        payer,
        amount,
        LedgerKind.REFUND,
        origin=origin,
        message_id=message_id,
        note=note,
        config=config,
    )


@dataclass(frozen=True)
class Refund:
    """One message's credits given back (``refund_many``), as ``refund`` gives them."""

    amount: int
    origin_id: int
    message_id: str
    note: str = ""


def refund_many(session: Session, payer_id: int, refunds: Sequence[Refund]) -> int:
    """Give REFUNDS back to PAYER_ID as ``refund`` one after the other would (one ledger row
    each, naming its message), in one UPDATE and one INSERT; returns the balance after."""
    payer = session.get(Account, payer_id)
    assert payer is not None
    paid = [r for r in refunds if r.amount > 0]
    if not paid:
        return payer.balance
    total = sum(r.amount for r in paid)
    applied = session.execute(_APPLY, {"delta": total, "id": payer_id}).one()
    balance = int(applied[0])
    running = balance - total
    ledger = []
    for r in paid:
        running += r.amount
        row = _ledger_row(
            payer, r.amount, running, LedgerKind.REFUND, None, r.message_id, None, r.note
        )
        row["origin_account_id"] = r.origin_id
        ledger.append(row)
    session.connection().execute(_INSERT_LEDGER, ledger)
    set_committed_value(payer, "balance", balance)
    # A refund can only re-arm the alert (as ``refund`` without a config).
    _after_change(session, None, payer, applied)
    return balance


def ledger_problems(session: Session) -> list[str]:
    """Accounts whose balance differs from the sum of their ledger, or is negative."""
    sums: dict[int, int] = {
        int(account_id): int(total or 0)
        for account_id, total in session.execute(
            select(col(LedgerEntry.account_id), func.sum(LedgerEntry.amount)).group_by(
                col(LedgerEntry.account_id)
            )
        ).all()
    }
    problems = []
    for account in session.exec(select(Account)).all():
        total = sums.get(account.id or 0, 0)
        if total != account.balance:
            problems.append(f"{account.name}: balance {account.balance}, ledger sum {total}")
        if account.balance < 0:
            problems.append(f"{account.name}: negative balance {account.balance}")
    return problems


__all__ = [
    "Charge",
    "ancestors",
    "charge",
    "charge_many",
    "ledger_problems",
    "refund",
    "refund_many",
    "reset",
    "top_up",
    "transfer",
]
