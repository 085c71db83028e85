"""A calendar sync's own reads (prebuilt Core statements on a bare connection) find what the
ORM queries they replaced find: the answers-due check, the calendar read before the source
is asked. Both databases."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from hub.core.config import Config
from hub.reminders import sync, writeback
from hub.reminders.setup import calendar_context
from hub.sending.accounts import get_account
from hub.store.db import read_connection, read_scope, session_scope
from hub.store.models import Calendar, CalendarEventRow

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _orm_due(engine: Engine, calendar_id: int, now: datetime) -> bool:
    """The claim's check as it was written with the ORM."""
    with read_scope(engine) as session:
        found = session.exec(
            select(CalendarEventRow.id)
            .where(
                CalendarEventRow.calendar_id == calendar_id,
                CalendarEventRow.answer != "",
                CalendarEventRow.answer_written == False,  # noqa: E712
                col(CalendarEventRow.answer_due_at) <= now,
            )
            .limit(1)
        ).first()
    return found is not None


def _calendars(engine: Engine, count: int) -> list[int]:
    with session_scope(engine) as s:
        account_id = get_account(s, "acme").id
        assert account_id is not None
        made = [
            Calendar(
                account_id=account_id,
                name=f"cabinet {i}",
                source_type="ics",
                settings=json.dumps({"url": f"https://example.org/{i}.ics"}) if i % 3 else "",
                cursor=None if i % 2 else f"token-{i}",
                window_days=30 + i,
            )
            for i in range(count)
        ]
        s.add_all(made)
        s.flush()
        return [c.id for c in made if c.id is not None]


def test_any_due_finds_what_the_orm_query_finds(engine: Engine, account: str) -> None:
    rng = random.Random(20)
    ids = _calendars(engine, 6)
    for trial in range(8):
        # Each round: every calendar's events dealt afresh (answered or not, written or not,
        # due before, at or after NOW, never due).
        with session_scope(engine) as s:
            for row in s.exec(select(CalendarEventRow)).all():
                s.delete(row)
            s.flush()
            for calendar_id in ids:
                for n in range(rng.randrange(0, 4)):
                    due = rng.choice(
                        [None, NOW, NOW - timedelta(minutes=5), NOW + timedelta(seconds=1)]
                    )
                    s.add(
                        CalendarEventRow(
                            calendar_id=calendar_id,
                            uid=f"ev{trial}-{n}",
                            start=NOW + timedelta(days=1),
                            answer=rng.choice(["", "confirmed", "cancelled"]),
                            answer_written=rng.random() < 0.3,
                            answer_due_at=due,
                        )
                    )
        for calendar_id in [*ids, max(ids) + 1]:
            for now in (NOW - timedelta(hours=1), NOW, NOW + timedelta(hours=1)):
                expected = _orm_due(engine, calendar_id, now)
                assert writeback.any_due(engine, calendar_id, now) == expected, (
                    trial,
                    calendar_id,
                    now,
                )
                # The same question asked with the calendar's read, as a sync begins.
                with read_connection(engine) as conn:
                    row = conn.execute(sync._LOAD, {"calendar_id": calendar_id, "now": now})
                    found = row.first()
                if found is not None:
                    assert bool(found.answers_due) == expected, (trial, calendar_id, now)


def test_load_reads_what_the_orm_calendar_says(
    engine: Engine, config: Config, account: str
) -> None:
    for calendar_id in _calendars(engine, 4):
        for full in (False, True):
            job = sync._load(engine, config, calendar_id, full)
            with read_scope(engine) as s:
                calendar = s.get(Calendar, calendar_id)
                assert calendar is not None
                ctx = calendar_context(calendar, config.hub.data_dir)
                assert job.settings == json.loads(calendar.settings or "{}")
                assert job.cursor == (None if full else calendar.cursor)
                assert job.kind == calendar.source_type
                # From a day ago to the first full hour after WINDOW_DAYS ahead.
                ahead = job.window.end - (job.window.start + timedelta(days=1))
                days = timedelta(days=calendar.window_days)
                assert days < ahead <= days + timedelta(hours=1)
                assert job.window.end.timestamp() % 3600 == 0
                assert job.answers_due is False  # these calendars have no events
            assert (job.ctx.name, job.ctx.data_dir, job.ctx.calendar_id) == (
                ctx.name,
                ctx.data_dir,
                ctx.calendar_id,
            )
            assert job.ctx.secrets == {}


def test_read_connection_takes_no_write_lock(engine: Engine) -> None:
    """A read on a bare connection while another connection writes: it neither waits for
    the writer nor blocks it (SQLite: no BEGIN IMMEDIATE; PostgreSQL: autocommit)."""
    with session_scope(engine) as writer:
        writer.connection().exec_driver_sql("SELECT 1")  # the write transaction is open
        with read_connection(engine) as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
