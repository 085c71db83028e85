"""One page of an account's ledger, newest first, by keyset on the ledger's id."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from hub.core.i18n import lazy_gettext
from hub.store.models import Account, LedgerEntry, LedgerKind

# Each kind in words: alone, and naming the other account of the row.
_WHAT: dict[str, tuple[object, object]] = {
    LedgerKind.TOPUP: (lazy_gettext("Top-up"), lazy_gettext("Top-up")),
    LedgerKind.TRANSFER_IN: (lazy_gettext("Transfer in"), lazy_gettext("Transfer from {other}")),
    LedgerKind.TRANSFER_OUT: (lazy_gettext("Transfer out"), lazy_gettext("Transfer to {other}")),
    LedgerKind.RESET_IN: (lazy_gettext("Reset of a sub-account"), lazy_gettext("Reset of {other}")),
    LedgerKind.RESET_OUT: (
        lazy_gettext("Reset, returned to the parent"),
        lazy_gettext("Reset, returned to {other}"),
    ),
    LedgerKind.CHARGE: (lazy_gettext("Sending"), lazy_gettext("Sending by {other}")),
    LedgerKind.REFUND: (lazy_gettext("Refund"), lazy_gettext("Refund for {other}")),
}


@dataclass(frozen=True)
class LedgerRow:
    id: int
    at: datetime
    kind: str
    what: str
    amount: int
    balance_after: int
    note: str
    batch_id: str | None


@dataclass(frozen=True)
class LedgerPage:
    rows: list[LedgerRow]
    # Ids for the "Older" (?before=) and "Newer" (?after=) links; None at either end.
    older: int | None
    newer: int | None


def _describe(kind: str, other: str | None) -> str:
    # Translated when the page is built (the reader's language).
    plain, named = (str(t) for t in _WHAT.get(kind, (kind, kind)))
    return plain if other is None else named.format(other=other)


def ledger_page(
    session: Session,
    account: Account,
    visible: Collection[int],
    size: int,
    *,
    before: int | None = None,
    after: int | None = None,
) -> LedgerPage:
    """SIZE ledger rows of ACCOUNT older than BEFORE (or newer than AFTER), newest first.

    The other account of a row is named only if it is in VISIBLE or is ACCOUNT's parent:
    nobody learns the names of accounts beside their own through a ledger.
    """
    query = select(LedgerEntry).where(LedgerEntry.account_id == account.id)
    if after is not None:
        query = query.where(col(LedgerEntry.id) > after).order_by(col(LedgerEntry.id))
    else:
        if before is not None:
            query = query.where(col(LedgerEntry.id) < before)
        query = query.order_by(col(LedgerEntry.id).desc())
    entries = list(session.exec(query.limit(size + 1)).all())
    more = len(entries) > size
    entries = entries[:size]
    if after is not None:
        entries.reverse()
    shown_ids = {e.origin_account_id for e in entries if e.origin_account_id is not None}
    names: dict[int, str] = {}
    if shown_ids:
        allowed = set(visible) | ({account.parent_id} if account.parent_id else set())
        wanted = shown_ids & allowed
        if wanted:
            names = {
                a.id: a.name
                for a in session.exec(select(Account).where(col(Account.id).in_(wanted))).all()
                if a.id is not None
            }
    rows = [
        LedgerRow(
            id=e.id or 0,
            at=e.created_at,
            kind=e.kind,
            what=_describe(
                e.kind,
                None
                if e.origin_account_id in (None, account.id)
                else names.get(e.origin_account_id or 0, "another account"),
            ),
            amount=e.amount,
            balance_after=e.balance_after,
            note=e.note,
            batch_id=e.batch_id,
        )
        for e in entries
    ]
    if not rows:
        return LedgerPage(rows=[], older=None, newer=None)
    if after is not None:
        return LedgerPage(rows=rows, older=rows[-1].id, newer=rows[0].id if more else None)
    return LedgerPage(
        rows=rows,
        older=rows[-1].id if more else None,
        newer=rows[0].id if before is not None else None,
    )
