"""Writing a patient's OUI / NON back to the calendar when it arrives, not at the next sync.

An answer makes its event due (``answer_due_at``); the answer writer of any instance claims
due events (``FOR UPDATE SKIP LOCKED`` and a lease pushed into ``answer_due_at``, as
hub.store.claims does for the mail outbox), writes the note through the calendar source's
``annotate`` and marks the event written. A failure is retried with backoff; after
MAX_ATTEMPTS the error stays on the event for the console to show. A sync writes the due
answers of its calendar with the source it already has open (the same claim).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, false
from sqlalchemy import select as core_select
from sqlmodel import col, select

from hub.core.config import Config
from hub.core.timeutil import as_utc, utcnow
from hub.core.workers import PollingWorker
from hub.errors import ConfigError, SourceError
from hub.ports.calendar import CalendarEvent, CalendarSource
from hub.ports.registry import build_calendar_source
from hub.ports.state import StateStore
from hub.reminders.answers import answer_note
from hub.reminders.calendar_store import resolve_secrets
from hub.reminders.setup import calendar_context
from hub.store.db import read_connection, read_scope, session_scope, table
from hub.store.models import Calendar, CalendarEventRow
from hub.store.secretbox import SecretUnreadable

log = logging.getLogger("smshub.answers")

MAX_ATTEMPTS = 12
# A claimed answer is this writer's for this long (a slow calendar server included).
CLAIM_LEASE = timedelta(minutes=5)
# Answers written per calendar per round: a burst of answers cannot hold one writer long.
BATCH = 20


def backoff(attempts: int) -> timedelta:
    """1 min, 2, 4 ... capped at 1 h: MAX_ATTEMPTS tries span about half a day."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 3600))


@dataclass(frozen=True)
class Claimed:
    row_id: int
    event: CalendarEvent
    note: str
    until: datetime


_EVENTS = table(CalendarEventRow)
# A calendar's answers due for writing at NOW: what the claim takes, and what every calendar
# sync first asks about (bound parameters calendar_id and now).
_DUE = (
    _EVENTS.c.calendar_id == bindparam("calendar_id"),
    _EVENTS.c.answer != "",
    _EVENTS.c.answer_written == false(),
    _EVENTS.c.answer_due_at <= bindparam("now"),
)
_DUE_IDS = core_select(_EVENTS.c.id).where(*_DUE)
# Whether any is due: built once (a Core statement, run on a bare connection: no ORM select
# or session per sync).
_ANY_DUE = _DUE_IDS.limit(1)
# The same question as a column of another statement (a sync asks it with the calendar's
# own read: one statement less per sync).
ANSWERS_DUE = _DUE_IDS.exists()


def any_due(engine: Engine, calendar_id: int, now: datetime) -> bool:
    """Whether CALENDAR_ID has an answer due at NOW (the claim's condition), in a read."""
    with read_connection(engine) as conn:
        found = conn.execute(_ANY_DUE, {"calendar_id": calendar_id, "now": now}).first()
    return found is not None


def _claim(engine: Engine, calendar_id: int, limit: int = BATCH) -> list[Claimed]:
    now = utcnow()
    until = now + CLAIM_LEASE
    # Every calendar sync asks: when nothing is due (the usual case), the answer comes from
    # a read, not from a transaction holding SQLite's write lock the dispatcher claims with.
    if not any_due(engine, calendar_id, now):
        return []
    with session_scope(engine) as session:
        rows = session.exec(
            select(CalendarEventRow)
            .where(*_DUE)
            .order_by(col(CalendarEventRow.answer_due_at), col(CalendarEventRow.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
            .params(calendar_id=calendar_id, now=now)
        ).all()
        claimed = []
        for row in rows:
            assert row.id is not None
            row.answer_due_at = until
            session.add(row)
            event = CalendarEvent(
                uid=row.uid,
                occurrence=row.occurrence,
                start=as_utc(row.start),
                timezone=row.timezone,
                all_day=row.all_day,
                title=row.title,
                etag=row.etag,
            )
            claimed.append(Claimed(row.id, event, answer_note(row.answer), until))
        return claimed


def _finish(engine: Engine, claim: Claimed, error: str | None, written: bool = True) -> None:
    """Record the outcome of one write, unless the row changed hands meanwhile (a new answer
    makes it due again: that one is written next, with its own note)."""
    with session_scope(engine) as session:
        row = session.exec(
            select(CalendarEventRow).where(CalendarEventRow.id == claim.row_id).with_for_update()
        ).first()
        if row is None or row.answer_due_at is None or as_utc(row.answer_due_at) != claim.until:
            return
        if error is None:
            row.answer_written = True
            row.answer_due_at = None
            row.answer_error = "" if written else "the calendar is read-only: not written there"
        else:
            row.answer_attempts += 1
            row.answer_error = error[:500]
            if row.answer_attempts >= MAX_ATTEMPTS:
                row.answer_due_at = None  # given up: the console shows the error
            else:
                row.answer_due_at = utcnow() + backoff(row.answer_attempts)
        session.add(row)


async def write_answers(engine: Engine, source: CalendarSource, calendar_id: int) -> int:
    """Write the due answers of CALENDAR_ID through SOURCE; returns how many were written."""
    done = 0
    for claim in await asyncio.to_thread(_claim, engine, calendar_id):
        try:
            written = await source.annotate(claim.event, claim.note)
        except SourceError as exc:
            log.warning("could not write %r on %s: %s", claim.note, claim.event.title, exc)
            await asyncio.to_thread(_finish, engine, claim, str(exc))
            continue
        except Exception as exc:  # a connector bug must not stop the other answers
            log.exception("writing %r on %s failed", claim.note, claim.event.title)
            await asyncio.to_thread(_finish, engine, claim, f"{type(exc).__name__}: {exc}")
            continue
        # Read-only sources answer False: nothing more to do for them either.
        await asyncio.to_thread(_finish, engine, claim, None, written)
        done += 1
    return done


def _due_calendars(engine: Engine) -> list[int]:
    with read_scope(engine) as session:
        ids = session.exec(
            select(CalendarEventRow.calendar_id)
            .join(Calendar, col(Calendar.id) == col(CalendarEventRow.calendar_id))
            .where(
                Calendar.enabled == True,  # noqa: E712
                CalendarEventRow.answer != "",
                CalendarEventRow.answer_written == False,  # noqa: E712
                col(CalendarEventRow.answer_due_at) <= utcnow(),
            )
            .distinct()
        ).all()
        return sorted(ids)


def _open(
    engine: Engine, config: Config, calendar_id: int, store: StateStore
) -> CalendarSource | None:
    """CALENDAR_ID's source, built as the sync builds it (None if it is gone)."""
    with read_scope(engine) as session:
        calendar = session.get(Calendar, calendar_id)
        if calendar is None:
            return None
        settings = json.loads(calendar.settings or "{}")
        ctx = calendar_context(calendar, config.hub.data_dir)
        kind = calendar.source_type
    ctx.secrets = resolve_secrets(settings, store, calendar_id)
    ctx.store = store
    return build_calendar_source(kind, settings, ctx, ctx.name)


def _fail_due(engine: Engine, calendar_id: int, error: str) -> None:
    """The source cannot even be opened: each due answer counts a failed try."""
    for claim in _claim(engine, calendar_id):
        _finish(engine, claim, error)


async def write_due(engine: Engine, config: Config, store: StateStore) -> int:
    """Write every due answer of every enabled calendar; returns how many were written."""
    done = 0
    for calendar_id in await asyncio.to_thread(_due_calendars, engine):
        try:
            source = await asyncio.to_thread(_open, engine, config, calendar_id, store)
        except (SourceError, ConfigError, SecretUnreadable) as exc:
            await asyncio.to_thread(_fail_due, engine, calendar_id, str(exc))
            continue
        if source is None:
            continue
        try:
            done += await write_answers(engine, source, calendar_id)
        finally:
            await source.close()
    return done


class AnswerWriter(PollingWorker):
    """Writes answers as they come (``wake`` after an inbound SMS is stored) and retries
    the failed ones every POLL_INTERVAL seconds."""

    task_name = "answer-writer"

    def __init__(
        self, engine: Engine, config: Config, store: StateStore, poll_interval: float = 30.0
    ) -> None:
        super().__init__(poll_interval)
        self.engine = engine
        self.config = config
        self.store = store

    async def _round(self) -> bool:
        await write_due(self.engine, self.config, self.store)
        return False
