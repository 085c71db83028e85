"""The invalid-number (NPAI) list, managed by hand: add numbers one by one, from a file
(CSV/TXT/XLS/XLSX, read as contact imports are, with the same per-line rejection report), or
all the numbers a campaign found invalid.

The list also fills itself (hub.sending.reports: reported invalid twice in a row); every door here
writes the same rows, and later sends of the account and its sub-accounts leave them out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from hub.campaigns.contacts import MAX_ROWS, RejectedLine, _is_number_cell, read_table
from hub.core import phone
from hub.errors import InvalidInput, NotFound
from hub.ports.sms import DeliveryReason
from hub.store.models import Account, InvalidNumber, Message

# Chunked IN lists: some drivers cap the parameters of one statement.
_CHUNK = 1000


@dataclass
class AddReport:
    """What adding numbers did: added, already listed, and the lines that were not numbers."""

    added: int = 0
    already: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    format: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "already": self.already,
            "rejected": [asdict(r) for r in self.rejected],
            "format": self.format,
        }

    def summary(self) -> str:
        text = f"{self.added} added, {self.already} already on the invalid list"
        if self.rejected:
            text += f", {len(self.rejected)} line(s) left out"
        return text + "."


def _store(session: Session, account: Account, numbers: list[str], report: AddReport) -> None:
    assert account.id is not None
    listed: set[str] = set()
    for start in range(0, len(numbers), _CHUNK):
        listed.update(
            session.exec(
                select(InvalidNumber.number).where(
                    InvalidNumber.account_id == account.id,
                    col(InvalidNumber.number).in_(numbers[start : start + _CHUNK]),
                )
            ).all()
        )
    for number in numbers:
        if number in listed:
            report.already += 1
        else:
            listed.add(number)
            report.added += 1
            session.add(InvalidNumber(account_id=account.id, number=number))
    session.flush()


def add_numbers(
    session: Session, account: Account, lines: Iterable[tuple[int, str]], region: str
) -> AddReport:
    """Put the numbers of LINES ((line, input) pairs) on ACCOUNT's invalid list; inputs that
    are not phone numbers are reported with their line, the others go on."""
    report = AddReport()
    wanted: list[str] = []
    for line, raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        info = phone.parse_number(raw, account.default_region or region)
        if not info.valid or info.e164 is None:
            report.rejected.append(RejectedLine(line, raw, info.reason or "not a phone number"))
        elif info.e164 not in wanted:
            wanted.append(info.e164)
        else:
            report.already += 1
    _store(session, account, wanted, report)
    return report


def import_file(
    session: Session,
    account: Account,
    data: bytes,
    filename: str,
    region: str,
    *,
    max_rows: int = MAX_ROWS,
    limit_name: str = "contacts.max_import_rows",
) -> AddReport:
    """Add the numbers of a file's first column (a title row is skipped), read as contact
    files are (hub.campaigns.contacts.read_table: encodings, delimiters, Excel, its row limit)."""
    kind, table = read_table(data, filename, max_rows=max_rows, limit_name=limit_name)
    if not table:
        raise InvalidInput(f"{filename} has no rows; put one number per line")
    if not _is_number_cell(table[0][1][0]):
        table = table[1:]  # a title row
    report = add_numbers(session, account, [(line, cells[0]) for line, cells in table], region)
    report.format = kind
    return report


def add_campaign_invalid(session: Session, account: Account, campaign_id: int) -> AddReport:
    """Put on ACCOUNT's list every number the campaign's sends were reported invalid for."""
    numbers = session.exec(
        select(Message.recipient)
        .where(
            Message.campaign_id == campaign_id,
            Message.reason == DeliveryReason.INVALID_NUMBER.value,
        )
        .distinct()
    ).all()
    report = AddReport()
    _store(session, account, sorted(numbers), report)
    return report


def remove_number(session: Session, account: Account, raw: str, region: str) -> str:
    """Take RAW off ACCOUNT's invalid list, so its sends go out again; returns the E.164
    number. InvalidInput for what is not a number, NotFound for one not on the list."""
    info = phone.parse_number(raw, account.default_region or region)
    if info.e164 is None:
        raise InvalidInput(f"{raw!r} is not a phone number: {info.reason}")
    row = session.exec(
        select(InvalidNumber).where(
            InvalidNumber.account_id == account.id, InvalidNumber.number == info.e164
        )
    ).first()
    if row is None:
        raise NotFound(
            f"{info.e164} is not on the invalid list of account {account.name!r} "
            "(see `smshub invalid list`)"
        )
    session.delete(row)
    session.flush()
    return info.e164


def entries(
    session: Session,
    account_ids: Collection[int] | None = None,
    *,
    after: str = "",
    limit: int | None = None,
) -> list[tuple[InvalidNumber, str]]:
    """Invalid numbers with their account's name, by account name then number: of
    ACCOUNT_IDS (all accounts when None), numbers after AFTER, at most LIMIT."""
    query = select(InvalidNumber, Account.name).join(
        Account, col(Account.id) == col(InvalidNumber.account_id)
    )
    if account_ids is not None:
        query = query.where(col(InvalidNumber.account_id).in_(list(account_ids)))
    if after:
        query = query.where(col(InvalidNumber.number) > after)
    query = query.order_by(col(Account.name), col(InvalidNumber.number))
    if limit is not None:
        query = query.limit(limit)
    return [(row, name) for row, name in session.exec(query).all()]
