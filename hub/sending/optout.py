"""Opt-outs: STOP/START keywords, the blacklist, and the record of consent behind each change."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from hub.core import phone
from hub.core.config import InboundSection
from hub.errors import InvalidInput, NotFound
from hub.inbound import webhooks
from hub.sending.accounts import ancestors, get_account
from hub.store.models import Account, BlacklistEntry, OptOutEvent

_NON_ALNUM = re.compile(r"[^A-Z0-9]+")


def normalize_keyword(text: str) -> str:
    """'Arrêt !' → 'ARRET': upper case, accents and punctuation dropped, spaces folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return _NON_ALNUM.sub(" ", bare).strip()


def classify(text: str, settings: InboundSection) -> str | None:
    """'stop', 'start' or None for an inbound text."""
    norm = normalize_keyword(text)
    stops = {normalize_keyword(k) for k in settings.stop_keywords}
    starts = {normalize_keyword(k) for k in settings.start_keywords}
    if norm in stops or norm.split(" ", 1)[0] == "STOP":
        return "stop"
    if norm in starts:
        return "start"
    return None


def is_blacklisted(session: Session, account: Account, number: str) -> bool:
    """True if NUMBER is on ACCOUNT's blacklist or one of its parents'."""
    ids = [a.id for a in ancestors(session, account)]
    return (
        session.exec(
            select(BlacklistEntry.id).where(
                col(BlacklistEntry.account_id).in_(ids), BlacklistEntry.number == number
            )
        ).first()
        is not None
    )


def opt_out(session: Session, account_id: int, number: str, source: str, note: str = "") -> bool:
    """Put NUMBER on the account's blacklist; False if it already was."""
    record = OptOutEvent(
        account_id=account_id, number=number, action="stop", source=source, note=note[:500]
    )
    session.add(record)
    existing = session.exec(
        select(BlacklistEntry).where(
            BlacklistEntry.account_id == account_id, BlacklistEntry.number == number
        )
    ).first()
    if existing is not None:
        return False
    session.add(
        BlacklistEntry(account_id=account_id, number=number, source=source, note=note[:255])
    )
    session.flush()
    # optout.created, for the account's (and its parents') webhooks, in this transaction.
    webhooks.optout_event(session, record)
    return True


def opt_in(session: Session, account_id: int, number: str, source: str, reason: str) -> bool:
    """Take NUMBER off the blacklist, recording the consent REASON; False if it was not on it."""
    if not reason.strip():
        raise InvalidInput(
            "removing a number from the blacklist needs the consent reason "
            "(e.g. 'customer asked by phone on 2026-11-25')"
        )
    entry = session.exec(
        select(BlacklistEntry).where(
            BlacklistEntry.account_id == account_id, BlacklistEntry.number == number
        )
    ).first()
    session.add(
        OptOutEvent(
            account_id=account_id, number=number, action="start", source=source, note=reason[:500]
        )
    )
    if entry is None:
        return False
    session.delete(entry)
    session.flush()
    return True


@dataclass
class ImportReport:
    added: int = 0
    already: int = 0
    rejected: list[tuple[int, str, str]] | None = None  # (line, input, reason)


def _normalized(raw: str, region: str) -> tuple[str | None, str]:
    info = phone.parse_number(raw, region)
    if not info.valid or info.e164 is None:
        return None, info.reason or "not a valid phone number"
    return info.e164, ""


def add_numbers(
    session: Session,
    account: str | int,
    numbers: Iterable[str],
    *,
    source: str,
    note: str,
    region: str,
) -> ImportReport:
    """Blacklist several numbers (manual add, file import); bad lines are reported, not fatal."""
    acc = get_account(session, account)
    assert acc.id is not None
    report = ImportReport(rejected=[])
    assert report.rejected is not None
    for line, raw in enumerate(numbers, start=1):
        raw = raw.strip()
        if not raw:
            continue
        e164, why = _normalized(raw, acc.default_region or region)
        if e164 is None:
            report.rejected.append((line, raw, why))
        elif opt_out(session, acc.id, e164, source, note):
            report.added += 1
        else:
            report.already += 1
    return report


def numbers_in_file(data: bytes) -> list[str]:
    """The first column of a CSV/TXT file (comma, semicolon or tab; UTF-8 or Windows-1252)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel
    try:
        dialect = csv.Sniffer().sniff(text[:2048], delimiters=",;\t")
    except csv.Error:
        pass
    rows = csv.reader(io.StringIO(text), dialect)
    return [row[0] if row else "" for row in rows]


def remove_number(session: Session, account: str | int, raw: str, reason: str, region: str) -> str:
    """Take a number off the blacklist with the consent reason; returns it in E.164,
    NotFound if absent."""
    acc = get_account(session, account)
    assert acc.id is not None
    e164, why = _normalized(raw, acc.default_region or region)
    if e164 is None:
        raise InvalidInput(f"{raw!r}: {why}")
    if not opt_in(session, acc.id, e164, "manual", reason):
        raise NotFound(f"{e164} is not on the blacklist of {acc.name!r}")
    return e164


def blacklist_entries(
    session: Session,
    account_ids: Collection[int] | None = None,
    *,
    after: str = "",
    limit: int | None = None,
) -> list[tuple[BlacklistEntry, str]]:
    """Blacklisted numbers with their account's name: of ACCOUNT_IDS (every account when
    None) in the order they were added; with AFTER (one account's page), in number order
    after that number, at most LIMIT."""
    query = select(BlacklistEntry, Account.name).join(
        Account, col(Account.id) == col(BlacklistEntry.account_id)
    )
    if account_ids is not None:
        query = query.where(col(BlacklistEntry.account_id).in_(list(account_ids)))
    if limit is None and not after:
        query = query.order_by(col(BlacklistEntry.created_at))
    else:
        query = query.where(col(BlacklistEntry.number) > after).order_by(col(BlacklistEntry.number))
    if limit is not None:
        query = query.limit(limit)
    return [(entry, name) for entry, name in session.exec(query).all()]
