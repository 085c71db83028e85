"""The message history's filters and keyset pages over (created_at, id), newest first.

Pages never use OFFSET: a page starts after the (created_at, id) of the last row shown
(``before``, older rows) or of the first row shown (``after``, newer rows). Every index
the history walks ends with ``created_at, id``, so a page is a short backward index scan
even inside a batch of 100,000 rows that share their creation time.

Each account of the scope is read as its own branch of one UNION ALL, each branch walking
its ``(account_id, [status | source,] created_at, id)`` index and stopping after a page: a
plain ``account_id IN (…) ORDER BY created_at`` would read and sort every row of the
accounts, since no index is ordered by time across accounts. A number, campaign or batch
filter instead walks that column's ``(…, created_at, id)`` index with the accounts as a
filter: those rows are few per value, while a branch per account would scan a whole
account that has none of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Select, and_, func, or_, union_all
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, select

from hub.console.forms import optional_row_id
from hub.core.phone import parse_number
from hub.core.timeutil import as_utc
from hub.errors import InvalidInput
from hub.store.db import read_scope
from hub.store.models import Account, Message, MessageStatus

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from hub.console.auth import ConsoleUser

# The doors that submit messages (Message.source), in the order the filter lists them.
SOURCES = (
    "api",
    "mail",
    "calendar",
    "console",
    "campaign",
    "reply",
    "autoreply",
    "optout",
    "alert",
    "cli",
    "test",
)
STATES = tuple(s.value for s in MessageStatus)
# Per-state counts are shown when at most this many messages match (an index-only scan of
# at most this many entries); above it they would cost more than a page is allowed to.
COUNT_CAP = 10_000
# More accounts than this in one query: one IN (...) query instead of a branch per account.
MAX_BRANCHES = 50
_SOURCE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")
_BATCH_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
FILTER_FIELDS = ("state", "source", "number", "since", "until", "account", "campaign", "batch")


@dataclass(frozen=True)
class Cursor:
    """A position in the history: the (created_at, id) of a row."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        micros = round(as_utc(self.created_at).timestamp() * 1_000_000)
        return f"{micros}~{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        micros, sep, message_id = value.partition("~")
        if not sep or not micros.lstrip("-").isdigit() or not re.fullmatch(r"\w{1,32}", message_id):
            raise InvalidInput(
                "this page link is damaged; go back to the first page of the history"
            )
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
        return cls(when, message_id)

    @classmethod
    def of(cls, message: Message) -> Cursor:
        return cls(as_utc(message.created_at), message.id)


@dataclass(frozen=True)
class FilterForm:
    """The filter values as typed (shown back in the form and kept in page links)."""

    state: str = ""
    source: str = ""
    number: str = ""
    since: str = ""
    until: str = ""
    account: str = ""
    campaign: str = ""
    batch: str = ""
    tz: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> FilterForm:
        return cls(**{k: str(params.get(k, "")).strip() for k in (*FILTER_FIELDS, "tz")})

    def query(self, **extra: str) -> str:
        """The query string of these filters plus EXTRA (empty values left out)."""
        values = {k: getattr(self, k) for k in (*FILTER_FIELDS, "tz")}
        values.update(extra)
        return urlencode({k: v for k, v in values.items() if v})

    @property
    def active(self) -> bool:
        return any(getattr(self, k) for k in FILTER_FIELDS)


@dataclass(frozen=True)
class HistoryFilter:
    """The filters as the queries use them; ACCOUNTS is never empty."""

    accounts: tuple[int, ...]
    state: str | None = None
    source: str | None = None
    number: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    campaign_id: int | None = None
    batch_id: str | None = None

    @property
    def narrow(self) -> bool:
        """A number, campaign or batch: few rows, best found through their own index."""
        return bool(self.number or self.campaign_id is not None or self.batch_id)

    def conditions(self, *, state: bool = True) -> list[ColumnElement[bool]]:
        """WHERE terms besides the account (STATE=False: without the state filter)."""
        terms: list[ColumnElement[bool]] = []
        if state and self.state:
            terms.append(col(Message.status) == self.state)
        if self.source:
            terms.append(col(Message.source) == self.source)
        if self.number:
            terms.append(col(Message.recipient) == self.number)
        if self.since:
            terms.append(col(Message.created_at) >= self.since)
        if self.until:
            terms.append(col(Message.created_at) < self.until)
        if self.campaign_id is not None:
            terms.append(col(Message.campaign_id) == self.campaign_id)
        if self.batch_id:
            terms.append(col(Message.batch_id) == self.batch_id)
        return terms


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day(value: str, label: str, tz: ZoneInfo, *, end: bool) -> datetime | None:
    """A date (or date and time) typed in the filter, in UTC; END: the day after a date."""
    if not value:
        return None
    try:
        if len(value) <= 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day + timedelta(days=1 if end else 0), time(), tzinfo=tz)
            return start.astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{label} {value!r} is not a date: use the date picker or type YYYY-MM-DD"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(UTC)


def _accounts(session: Session, user: ConsoleUser, name: str) -> tuple[int, ...]:
    """The accounts a filter reads: account NAME if the user may see it, else all of theirs."""
    if name:
        return (int(user.account(session, name).id or 0),)
    return tuple(sorted(user.scope))


def _check_choices(form: FilterForm) -> None:
    """The filter's state and source: words the menus offer."""
    if form.state and form.state not in STATES:
        raise InvalidInput(f"state {form.state!r} is not one of: {', '.join(STATES)}")
    if form.source and not _SOURCE_RE.match(form.source):
        raise InvalidInput(f"source {form.source!r} is not one of: {', '.join(SOURCES)}")


def _number(session: Session, form: FilterForm, accounts: tuple[int, ...], region: str) -> str:
    """The filter's number in E.164, read in the chosen account's region (else REGION)."""
    if form.account:
        acc = session.get(Account, accounts[0])
        region = (acc.default_region if acc else None) or region
    info = parse_number(form.number, region)
    if not info.valid or not info.e164:
        raise InvalidInput(
            f"number {form.number!r} is not a phone number ({info.reason}); type it as "
            "+33612345678 or as a national number such as 06 12 34 56 78"
        )
    return info.e164


def parse_filter(
    session: Session, user: ConsoleUser, form: FilterForm, region: str
) -> HistoryFilter:
    """FORM checked against what exists and what USER may see; InvalidInput says what is wrong."""
    accounts = _accounts(session, user, form.account)
    _check_choices(form)
    number = _number(session, form, accounts, region) if form.number else None
    campaign_id = optional_row_id(
        form.campaign, f"campaign {form.campaign!r} must be a campaign number such as 12"
    )
    if form.batch and not _BATCH_RE.match(form.batch):
        raise InvalidInput(f"batch {form.batch!r} is not a batch id (32 letters and digits)")
    tz = _zone(form.tz)
    since = _day(form.since, "from date", tz, end=False)
    until = _day(form.until, "to date", tz, end=True)
    if since and until and since >= until:
        raise InvalidInput("the 'from' date is after the 'to' date; swap them")
    return HistoryFilter(
        accounts=accounts,
        state=form.state or None,
        source=form.source or None,
        number=number,
        since=since,
        until=until,
        campaign_id=campaign_id,
        batch_id=form.batch or None,
    )


# -- pages ------------------------------------------------------------------------------------
@dataclass
class Page:
    """One page of messages and the cursors of its neighbours (None at either end)."""

    rows: list[Message]
    older: Cursor | None
    newer: Cursor | None


def _past(cursor: Cursor, older: bool) -> ColumnElement[bool]:
    # The first term alone is an index range condition; the OR only sorts out rows that
    # share the cursor's creation time (a batch's rows all do).
    created, mid = col(Message.created_at), col(Message.id)
    if older:
        return and_(
            created <= cursor.created_at,
            or_(created < cursor.created_at, mid < cursor.id),
        )
    return and_(
        created >= cursor.created_at,
        or_(created > cursor.created_at, mid > cursor.id),
    )


def _walk(
    f: HistoryFilter,
    columns: tuple[Any, ...],
    limit: int,
    cursor: Cursor | None = None,
    *,
    older: bool = True,
    state: bool = True,
) -> list[Select[Any]]:
    """COLUMNS of the LIMIT rows of F next to CURSOR, as one query or one per account.

    Each query walks one index in the page's order and stops after LIMIT rows (the
    caller merges per-account queries). STATE=False leaves the state filter out.
    """
    terms = f.conditions(state=state)
    if cursor is not None:
        terms.append(_past(cursor, older))
    created, mid = col(Message.created_at), col(Message.id)
    order = (created.desc(), mid.desc()) if older else (created.asc(), mid.asc())
    if f.narrow or len(f.accounts) == 1 or len(f.accounts) > MAX_BRANCHES:
        groups: list[Any] = [col(Message.account_id).in_(f.accounts)]
    else:
        groups = [col(Message.account_id) == account_id for account_id in f.accounts]
    return [
        sql_select(*columns).where(group, *terms).order_by(*order).limit(limit) for group in groups
    ]


def key_query(
    f: HistoryFilter, limit: int, cursor: Cursor | None = None, *, older: bool = True
) -> Select[Any]:
    """(id, created_at) of the LIMIT rows next to CURSOR, in the page's order."""
    queries = _walk(f, (col(Message.id), col(Message.created_at)), limit, cursor, older=older)
    if len(queries) == 1:
        return queries[0]
    # Each branch is wrapped in a subquery: SQLite refuses ORDER BY/LIMIT in a UNION member.
    branches = [q.subquery() for q in queries]
    union = union_all(*(sql_select(b.c.id, b.c.created_at) for b in branches)).subquery()
    created, mid = union.c.created_at, union.c.id
    order = (created.desc(), mid.desc()) if older else (created.asc(), mid.asc())
    return sql_select(union.c.id, union.c.created_at).order_by(*order).limit(limit)


def _load(session: Session, ids: list[str]) -> list[Message]:
    if not ids:
        return []
    found = {m.id: m for m in session.exec(select(Message).where(col(Message.id).in_(ids)))}
    return [found[i] for i in ids if i in found]


def history_page(
    session: Session,
    f: HistoryFilter,
    size: int,
    *,
    before: Cursor | None = None,
    after: Cursor | None = None,
) -> Page:
    """The page of SIZE messages older than BEFORE, newer than AFTER, or the newest."""
    if after is not None:
        keys = session.execute(key_query(f, size + 1, after, older=False)).all()
        if len(keys) > size:
            ids = [k[0] for k in reversed(keys[:size])]
            rows = _load(session, ids)
            if rows:
                return Page(rows, Cursor.of(rows[-1]), Cursor.of(rows[0]))
        # Fewer than a page of newer rows: the first page, which has no newer one.
        before = None
    keys = session.execute(key_query(f, size + 1, before)).all()
    rows = _load(session, [k[0] for k in keys[:size]])
    older = Cursor.of(rows[-1]) if len(keys) > size and rows else None
    newer = Cursor.of(rows[0]) if before is not None and rows else None
    return Page(rows, older, newer)


def state_counts(session: Session, f: HistoryFilter) -> dict[str, int] | None:
    """Messages per state for F without its state filter; None when over COUNT_CAP match.

    The newest COUNT_CAP + 1 matches are read in index order (account by account, like a
    page, stopping as soon as the cap is passed), so the cost is bounded whatever the
    filter; on PostgreSQL the indexes carry the status, so nothing else is read.
    """
    counts: Counter[str] = Counter()
    for query in _walk(f, (col(Message.status).label("status"),), COUNT_CAP + 1, state=False):
        rows = query.subquery()
        for status, n in session.execute(
            sql_select(rows.c.status, func.count()).group_by(rows.c.status)
        ).all():
            counts[str(status)] += int(n)
        if sum(counts.values()) > COUNT_CAP:
            return None
    return dict(counts)


def iter_history(
    engine: Engine, f: HistoryFilter, chunk: int = 1000, first: int = 200
) -> Iterator[list[Message]]:
    """Every message of F, newest first: FIRST, then CHUNK at a time (one read each).

    The small first chunk lets a download start at once; the later, larger ones keep the
    number of round trips down.
    """
    cursor: Cursor | None = None
    size = first
    while True:
        with read_scope(engine) as session:
            page = history_page(session, f, size, before=cursor)
        if page.rows:
            yield page.rows
        if page.older is None:
            return
        cursor = page.older
        size = chunk


def sample_statements(scope: list[int]) -> list[tuple[str, Select[Any]]]:
    """The history's statements on typical filters (bench/console.py --explain prints plans)."""
    base = HistoryFilter(accounts=tuple(sorted(scope)))
    deep = Cursor(datetime(2025, 6, 1, tzinfo=UTC), "8" * 32)
    return [
        ("first page", key_query(base, 51)),
        ("state=failed", key_query(replace(base, state="failed"), 51)),
        ("source=reply", key_query(replace(base, source="reply"), 51)),
        ("number", key_query(replace(base, number="+33612345678"), 51)),
        ("campaign=201", key_query(replace(base, campaign_id=201), 51)),
        ("batch=bigcampaign", key_query(replace(base, batch_id="bigcampaign"), 51)),
        ("deep page", key_query(base, 51, deep)),
        ("newer page", key_query(base, 51, deep, older=False)),
    ]
