"""Writing a chunk of planned occurrences: a few Core statements whatever their number.

Rows are inserted and updated straight through the driver (``bulk_sql``: SQLite's
executemany, PostgreSQL's COPY, values converted as SQLAlchemy converts them), new
occurrence rows with their ids taken beforehand (no RETURNING, no reading them back).
Replaced and cancelled reminders' messages are cancelled and refunded together
(``outbox.cancel_queued_many``), new outbox rows inserted with one charge (one ledger row
naming the batch; each message keeps its own credits, which is what a later refund gives
back) and their reminders inserted in one statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, Table, bindparam, insert, update
from sqlmodel import Session

from hub import compliance
from hub.core.config import Config
from hub.core.segments import SegmentInfo
from hub.core.timeutil import utcnow
from hub.errors import HubError, InsufficientCredits
from hub.reminders import bulk_sql
from hub.reminders.plan_state import COMPARED, EVENTS, MESSAGES, REMINDERS
from hub.sending import credits
from hub.sending.accounts import ancestors, funding_account, get_account
from hub.sending.lookups import RecipientLookups
from hub.sending.metrics import note_submitted
from hub.sending.submit import check_text, credits_for, validate_sender
from hub.store.db import member
from hub.store.models import Account, MessageStatus, MessageType, new_id, new_ids

_INSERT_EVENT = insert(EVENTS)
# What a sync writes over: the event's fields, then the recipient's and the row's own.
_ROW_COLUMNS = (
    *COMPARED,
    "phone",
    "person",
    "person_source",
    "problem",
    "deleted",
    "updated_at",
)
_UPDATE_EVENT = (
    update(EVENTS)
    .where(EVENTS.c.id == bindparam("row_id"))
    .values({name: bindparam(f"v_{name}") for name in _ROW_COLUMNS})
)
_INSERT_REMINDER = insert(REMINDERS)
_INSERT_MESSAGE = insert(MESSAGES)
_SET_STATUS = (
    update(REMINDERS)
    .where(REMINDERS.c.id == bindparam("reminder_id"))
    .values(status=bindparam("v_status"), note=bindparam("v_note"))
)
_SET_SENT = (
    update(REMINDERS)
    .where(member(REMINDERS.c.id, "ids"), REMINDERS.c.status == "scheduled")
    .values(status="sent")
)
_MARK_DELETED = (
    update(EVENTS)
    .where(member(EVENTS.c.id, "ids"))
    .values(deleted=True, updated_at=bindparam("now"))
)
_IDS_PER_STATEMENT = 500
# The enum values every outbox row of a batch carries (an enum's .value is a property call).
_ALERT = MessageType.ALERT.value
_QUEUED = MessageStatus.QUEUED.value


def insert_rows(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert occurrence rows (all columns, one calendar's); their ids, in order.

    The ids are taken first (``bulk_sql.next_ids``: what the database would give them)
    and written with the rows: no RETURNING and no reading them back."""
    if not rows:
        return []
    conn = session.connection()
    ids = bulk_sql.next_ids(conn, EVENTS, len(rows))
    if not bulk_sql.insert_many(conn, EVENTS, rows, {"id": ids}):
        conn.execute(_INSERT_EVENT, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
    return ids


def update_rows(session: Session, rows: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """Rewrite the occurrence rows (id, values of _ROW_COLUMNS)."""
    if not rows:
        return
    conn = session.connection()
    changes = [(row_id, {k: values[k] for k in _ROW_COLUMNS}) for row_id, values in rows]
    if not bulk_sql.update_many(conn, EVENTS, "id", changes):
        conn.execute(
            _UPDATE_EVENT,
            [{"row_id": i, **{f"v_{k}": v for k, v in values.items()}} for i, values in changes],
        )


def mark_deleted(session: Session, ids: Sequence[int]) -> None:
    now = utcnow()
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        session.connection().execute(
            _MARK_DELETED, {"ids": list(ids[start : start + _IDS_PER_STATEMENT]), "now": now}
        )


def set_statuses(session: Session, changes: Sequence[tuple[int, str, str]]) -> None:
    """(reminder id, status, note) for each reminder whose status changes."""
    if not changes:
        return
    conn = session.connection()
    rows = [(i, {"status": s, "note": n[:255]}) for i, s, n in changes]
    if not bulk_sql.update_many(conn, REMINDERS, "id", rows):
        conn.execute(
            _SET_STATUS,
            [{"reminder_id": i, "v_status": v["status"], "v_note": v["note"]} for i, v in rows],
        )


def set_sent(session: Session, ids: Sequence[int]) -> None:
    """Scheduled reminders whose message left the queue: recorded as sent."""
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        session.connection().execute(
            _SET_SENT, {"ids": list(ids[start : start + _IDS_PER_STATEMENT])}
        )


def insert_reminders(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        _insert(session, REMINDERS, _INSERT_REMINDER, rows)


def _insert(
    session: Session, table: Table, fallback: Insert, rows: Sequence[dict[str, Any]]
) -> None:
    """ROWS into TABLE through the driver (``bulk_sql``), else through SQLAlchemy."""
    conn = session.connection()
    if not bulk_sql.insert_many(conn, table, rows):
        conn.execute(fallback, list(rows))


def reminder_row(
    event_id: int,
    rule: str,
    start: datetime,
    when: datetime,
    *,
    message_id: str | None = None,
    status: str = "scheduled",
    note: str = "",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "rule": rule,
        "message_id": message_id,
        "for_start": start,
        "send_at": when,
        "status": status,
        "note": note[:255],
        "created_at": utcnow(),
    }


# Slotted: one of each per planned reminder (20,000 in a first sync of 20,000 appointments).
@dataclass(slots=True)
class Submission:
    """One reminder to put in the outbox."""

    event_id: int
    rule: str
    start: datetime
    when: datetime
    phone: str
    country: str | None
    text: str
    key: str  # the idempotency key's base (the number is appended, as submit does)
    label: str  # the appointment, as problems name it


@dataclass(slots=True)
class Outcome:
    """What became of a submission: a message (new or a duplicate's) or a reason."""

    submission: Submission
    message_id: str | None = None
    reason: str = ""
    # The reason is also a problem to report (a refusal of the request, not of the number).
    problem: bool = False


def submit_reminders(
    session: Session,
    config: Config,
    account_id: int,
    sender: str | None,
    subs: Sequence[Submission],
    note: str,
    country_of: Callable[[str], str | None],
) -> list[Outcome]:
    """Put SUBS in the outbox as ``sending.submit`` would one by one (blacklist, invalid
    numbers, sender rules, part cap, idempotency keys, credits), charging them together:
    one ledger row for the batch. Returns each one's outcome, in order."""
    outcomes = [Outcome(s) for s in subs]
    if not subs:
        return outcomes
    try:
        account = get_account(session, account_id)
        # Read once in this transaction: the payer and the lookups' scope both come from it.
        chain = ancestors(session, account)
        payer = funding_account(session, account, chain)
        chosen = validate_sender(sender if sender is not None else account.default_sender)
    except HubError as exc:
        for o in outcomes:
            o.reason, o.problem = str(exc), True
        return outcomes
    assert account.id is not None and payer.id is not None
    scope = [a.id for a in chain if a.id is not None]
    lookups = RecipientLookups()
    lookups.ensure(session, scope, {s.phone for s in subs}, {f"{s.key}:{s.phone}" for s in subs})
    batch = _Batch(config, account.id, payer.id, chosen, scope, lookups, country_of)
    fresh: list[tuple[Outcome, dict[str, Any]]] = []
    for o in outcomes:
        row = batch.message_row(o)
        if row is not None:
            fresh.append((o, row))
    paid = _charge(session, config, account, payer, fresh, batch.batch_id, note)
    rows = []
    for o, row in fresh:
        if id(o) in paid:
            o.message_id = row["id"]
            rows.append(row)
    if rows:
        _insert(session, MESSAGES, _INSERT_MESSAGE, rows)
        # smshub_submitted_total, as sending.submit counts every other door's.
        note_submitted(session, "calendar", len(rows))
    return outcomes


def _id_stream() -> Iterator[str]:
    """Message ids without end, of new_id()'s form (ids left unused are never seen): made
    8, 16, ... then 512 at a time, so that a sync of a few changes makes only a few."""
    batch = 8
    while True:
        yield from new_ids(batch)
        batch = min(batch * 2, 512)


@dataclass
class _Batch:
    """What the submissions of one ``submit_reminders`` call share."""

    config: Config
    account_id: int
    payer_id: int
    sender: str | None
    scope: list[int]
    lookups: RecipientLookups
    country_of: Callable[[str], str | None]
    now: datetime = field(default_factory=utcnow)
    batch_id: str = field(default_factory=new_id)
    # The messages' ids, made a few hundred at a time (new_ids: cheaper than one by one).
    ids: Iterator[str] = field(default_factory=_id_stream)
    # Sender rules per country: None when the sender may be used there, else why not.
    refusals: dict[str | None, str | None] = field(default_factory=dict)
    # Credits per (country, parts): the same few for the whole batch.
    prices: dict[tuple[str | None, int], int] = field(default_factory=dict)
    # A message due later than this is scheduled (else it is due now).
    later: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.later = self.now + timedelta(seconds=1)

    def message_row(self, o: Outcome) -> dict[str, Any] | None:
        """The outbox row of O's message; None when there is none to write (O then says
        why, or names the message already in the outbox)."""
        s = o.submission
        try:
            text = compliance.billable_text(s.text, self.sender, _ALERT, self.config.optout_mention)
            info = check_text(self.config, text)
        except HubError as exc:
            o.reason, o.problem = str(exc), True
            return None
        if self.lookups.is_blocked(self.scope, s.phone):
            o.reason = "the number is on the account's blacklist (STOP)"
            return None
        if self.lookups.is_invalid(self.scope, s.phone):
            o.reason = "the number is on the account's invalid-number list"
            return None
        country = s.country or self.country_of(s.phone)
        refused = self._refusal(country)
        if refused is not None:
            o.reason, o.problem = refused, True
            return None
        key = f"{s.key}:{s.phone}"
        existing = self.lookups.existing.get(key)
        if existing is not None:
            o.message_id = existing  # already in the outbox: not sent again
            return None
        message_id = next(self.ids)
        self.lookups.taken(key, message_id)
        return self._row(s, message_id, key, text, info, country)

    def _refusal(self, country: str | None) -> str | None:
        if country not in self.refusals:
            try:
                compliance.require_sender(self.sender, [country])
                self.refusals[country] = None
            except HubError as exc:
                self.refusals[country] = str(exc)
        return self.refusals[country]

    def _row(
        self,
        s: Submission,
        message_id: str,
        key: str,
        text: str,
        info: SegmentInfo,
        country: str | None,
    ) -> dict[str, Any]:
        now = self.now
        scheduled = s.when > self.later
        price = self.prices.get((country, info.segments))
        if price is None:
            price = self.prices[(country, info.segments)] = credits_for(
                self.config, country, info.segments
            )
        return {
            "id": message_id,
            "account_id": self.account_id,
            "charged_account_id": self.payer_id,
            "batch_id": self.batch_id,
            "idempotency_key": key,
            "recipient": s.phone,
            "sender": self.sender,
            "text": text,
            "encoding": info.encoding,
            "segments": info.segments,
            "credits": price,
            "type": _ALERT,
            "source": "calendar",
            "campaign_id": None,
            "status": _QUEUED,
            "scheduled": scheduled,
            "created_at": now,
            "due_at": s.when if scheduled else now,
            "updated_at": now,
        }


def _charge(
    session: Session,
    config: Config,
    account: Account,
    payer: Account,
    fresh: list[tuple[Outcome, dict[str, Any]]],
    batch_id: str,
    note: str,
) -> set[int]:
    """Charge FRESH in one ledger row; when the balance cannot pay them all, those that fit
    in order are charged (as one submit after the other) and the others get the reason.
    Returns the id() of the outcomes paid for."""
    wanted = list(fresh)
    for _attempt in range(3):
        total = sum(row["credits"] for _, row in wanted)
        parts = sum(row["segments"] for _, row in wanted)
        try:
            if total:
                credits.charge(
                    session,
                    payer,
                    total,
                    origin=account,
                    batch_id=batch_id,
                    note=f"{len(wanted)} reminder SMS, {parts} part(s) via {note}",
                    config=config,
                )
            return {id(o) for o, _ in wanted}
        except InsufficientCredits:
            session.refresh(payer)
            left = payer.balance
            kept = []
            for o, row in wanted:
                if row["credits"] <= left:
                    left -= row["credits"]
                    kept.append((o, row))
                else:
                    o.reason = (
                        f"account {payer.name!r} has {left} credits, {row['credits']} are "
                        "needed; nothing was charged (top up with `smshub accounts credit`)"
                    )
                    o.problem = True
            wanted = kept
    # The balance kept moving under us (other senders): what is left is refused this time.
    for o, _ in wanted:
        o.reason, o.problem = "credits kept changing during planning; planned next sync", True
    return set()
