"""The planner's rows written through the driver (hub.reminders.bulk_sql) are stored exactly
as SQLAlchemy's own ``insert``/``update`` stores them, on both databases: same values, same
stored forms (SQLite's datetime strings, 0/1 booleans), same defaults for columns left out.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Table, insert, update
from sqlmodel import select

from hub.ports.calendar import CalendarEvent, EventStatus, SyncResult, SyncWindow
from hub.reminders import bulk_sql
from hub.reminders.plan_state import EVENTS, MESSAGES, REMINDERS
from hub.reminders.reconcile import reconcile_chunked
from hub.sending.accounts import get_account
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import (
    Calendar,
    CalendarEventRow,
    LedgerEntry,
    Message,
    Reminder,
    new_ids,
)

NOW = datetime.now(UTC)
# Aware (UTC and not), with and without microseconds: each stored form.
TIMES = [
    datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
    datetime(2031, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=2))),
]


def _stored(conn: Connection, table: Table, where: str) -> list[tuple[Any, ...]]:
    """TABLE's rows as the driver reads them (on SQLite: the stored strings and integers),
    with SQLite's storage class of each value."""
    names = [c.name for c in table.columns if c.name != "id"]
    cols = ", ".join(f'"{n}"' for n in names)
    if conn.dialect.name == "sqlite":
        cols += ", " + ", ".join(f'typeof("{n}")' for n in names)
    return [
        tuple(r)
        for r in conn.exec_driver_sql(f'SELECT {cols} FROM "{table.name}" {where} ORDER BY id')
    ]


def _calendar(engine: Engine, name: str) -> int:
    with session_scope(engine) as s:
        cal = Calendar(
            account_id=get_account(s, "acme").id,
            name=name,
            source_type="ics",
            offsets="2d@09:00,2h",
        )
        s.add(cal)
        s.flush()
        assert cal.id is not None
        return cal.id


def _event_rows(calendar_id: int) -> list[dict[str, Any]]:
    rows = []
    for n, start in enumerate(TIMES):
        rows.append(
            {
                "calendar_id": calendar_id,
                "uid": f"u{n}",
                "occurrence": "" if n else "20310506T070809Z",
                "start": start,
                "end": None if n == 1 else start + timedelta(minutes=30),
                "timezone": "Europe/Paris",
                "all_day": n == 2,
                "title": "Rendez-vous é 🦷",
                "location": "",
                "description": "line\nother\ttab \\N back\\slash \\",
                "attendees": "[]",
                "status": "confirmed",
                "etag": f'"{n}"',
                "phone": None if n == 2 else "+33612345678",
                "person": "Jeanne",
                "person_source": "attendee",
                "problem": "",
                "deleted": n == 1,
                "updated_at": start,
                "answer": "",
                "answer_written": False,
            }
        )
    return rows


def test_bulk_rows_are_stored_as_sqlalchemy_stores_them(engine: Engine, account: str) -> None:
    ours, theirs = _calendar(engine, "ours"), _calendar(engine, "theirs")
    with session_scope(engine) as s:
        conn = s.connection()
        conn.execute(insert(EVENTS), _event_rows(theirs))
        ids = bulk_sql.next_ids(conn, EVENTS, len(TIMES))
        rows = [{"id": i, **r} for i, r in zip(ids, _event_rows(ours), strict=True)]
        assert bulk_sql.insert_many(conn, EVENTS, rows)
        event_id = ids[0]
        reminders = [
            {
                "event_id": event_id,
                "rule": "2h",
                "message_id": None if n else f"m{n}",
                "for_start": t,
                "send_at": t - timedelta(hours=2),
                "status": "scheduled",
                "note": "n" * n,
                "created_at": t,
            }
            for n, t in enumerate(TIMES)
        ]
        conn.execute(insert(REMINDERS), reminders)
        assert bulk_sql.insert_many(conn, REMINDERS, reminders)
        payer = get_account(s, "acme").id
        messages = [
            {
                "id": f"{side}{n}",
                "account_id": payer,
                "charged_account_id": payer,
                "batch_id": "b",
                "idempotency_key": f"k:{side}{n}",
                "recipient": "+33612345678",
                "sender": None if n else "Cabinet",
                "text": "Bonjour 🦷 {}",
                "encoding": "UCS-2",
                "segments": 1,
                "credits": n,
                "type": "alert",
                "source": "calendar",
                "campaign_id": None,
                "status": "queued",
                "scheduled": n != 1,
                "created_at": t,
                "due_at": t,
                "updated_at": t,
            }
            for n, t in enumerate(TIMES)
            for side in ("a",)
        ]
        conn.execute(insert(MESSAGES), messages)
        assert bulk_sql.insert_many(
            conn,
            MESSAGES,
            [
                {**m, "id": "b" + m["id"][1:], "idempotency_key": "x" + m["idempotency_key"]}
                for m in messages
            ],
        )

        events_a = _stored(conn, EVENTS, f"WHERE calendar_id = {theirs}")
        events_b = _stored(conn, EVENTS, f"WHERE calendar_id = {ours}")
        assert [r[1:] for r in events_a] == [r[1:] for r in events_b]
        if conn.dialect.name == "sqlite":
            start = events_b[0][EVENTS.c.keys().index("start") - 1]
            assert start == "2031-05-06 07:08:09.123456"
        got = _stored(conn, REMINDERS, "")
        assert got[: len(TIMES)] == got[len(TIMES) :]
        got = _stored(conn, MESSAGES, "")
        keys = [c.name for c in MESSAGES.columns if c.name != "id"]
        skip = {keys.index("idempotency_key")}
        strip = [tuple(v for i, v in enumerate(r) if i not in skip) for r in got]
        assert strip[: len(TIMES)] == strip[len(TIMES) :]

        # Updates too (the occurrence rows a sync rewrites, reminders' statuses).
        changes = {"start": TIMES[1], "end": None, "all_day": True, "deleted": False, "title": "x"}
        a_ids = [
            i
            for (i,) in conn.exec_driver_sql(
                f"SELECT id FROM calendar_events WHERE calendar_id = {theirs} ORDER BY id"
            )
        ]
        for i in a_ids:
            conn.execute(update(EVENTS).where(EVENTS.c.id == i).values(**changes))
        assert bulk_sql.update_many(conn, EVENTS, "id", [(i, changes) for i in ids])
        events_a = _stored(conn, EVENTS, f"WHERE calendar_id = {theirs}")
        events_b = _stored(conn, EVENTS, f"WHERE calendar_id = {ours}")
        assert [r[1:] for r in events_a] == [r[1:] for r in events_b]


def _one_event(conn: Connection, calendar_id: int) -> int:
    """One occurrence row of CALENDAR_ID, written through bulk_sql; its id."""
    ids = bulk_sql.next_ids(conn, EVENTS, 1)
    assert bulk_sql.insert_many(conn, EVENTS, _event_rows(calendar_id)[:1], {"id": ids})
    return ids[0]


def test_repeated_times_are_stored_as_sqlalchemy_stores_them(engine: Engine, account: str) -> None:
    # A call's datetimes are converted once per distinct object (bulk_sql._convert_shared):
    # many rows sharing a few objects, among them equal instants in different zones (SQLite
    # stores each zone's own fields), and a column of distinct objects (no memo).
    utc = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=2)))
    assert utc == paris
    shared = [utc, paris, utc.replace(microsecond=0), utc.replace(tzinfo=None)]
    calendar_id = _calendar(engine, "repeats")
    with session_scope(engine) as s:
        conn = s.connection()
        event_id = _one_event(conn, calendar_id)
        reminders = [
            {
                "event_id": event_id,
                "rule": "2h",
                "message_id": None,
                "for_start": shared[n % 4],
                "send_at": shared[(n // 7) % 4],
                "status": "scheduled",
                "note": "",
                "created_at": utc + timedelta(microseconds=n),
            }
            for n in range(64)
        ]
        conn.execute(insert(REMINDERS), reminders)
        assert bulk_sql.insert_many(conn, REMINDERS, reminders)
        got = _stored(conn, REMINDERS, "")
        assert got[:64] == got[64:]
        if conn.dialect.name == "sqlite":
            send_at = {r[REMINDERS.c.keys().index("send_at") - 1] for r in got}
            assert "2031-05-06 09:08:09.123456" in send_at  # Paris' fields, as SQLAlchemy


def test_message_ids_made_many_at_once_are_uuid7_hex() -> None:
    for count in (0, 1, 2, 3, 500, 1000):
        ids = new_ids(count)
        assert len(ids) == len(set(ids)) == count
        for i in ids:
            parsed = uuid.UUID(hex=i)  # the form new_id() gives: a UUIDv7's hex
            assert parsed.hex == i and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    # Random in every bit below the time but the version's and variant's: each of the 74
    # takes both values over a thousand ids.
    ones = zero = 0
    for i in new_ids(1000):
        ones |= int(i, 16)
        zero |= ~int(i, 16) & ((1 << 80) - 1)
    fixed = (0xF << 76) | (0x3 << 62)
    assert (ones & ((1 << 80) - 1)) | fixed == zero | fixed == (1 << 80) - 1


def _events() -> list[CalendarEvent]:
    base = NOW.replace(microsecond=0) + timedelta(days=5)
    out = []
    for n in range(30):
        out.append(
            CalendarEvent(
                uid=f"e{n}",
                occurrence="" if n % 3 else f"2031010{n % 9}T100000Z",
                start=base + timedelta(hours=n, microseconds=n * 7),
                end=base + timedelta(hours=n, minutes=30),
                timezone="Europe/Paris",
                title=f"Kiné 06 12 34 56 {n:02d}" if n % 5 else f"RDV {n}",
                description="Nom: Mme Rose" if n % 2 else "",
                status=EventStatus.CANCELLED if n == 7 else EventStatus.CONFIRMED,
                all_day=n == 11,
            )
        )
    return out


def _plan(engine: Engine, config: Any, calendar_id: int, events: list[CalendarEvent]) -> None:
    window = SyncWindow(NOW - timedelta(days=1), NOW + timedelta(days=60))
    reconcile_chunked(engine, config, calendar_id, SyncResult(events), window, now=NOW)


def _snapshot(engine: Engine, calendar_id: int) -> dict[str, Any]:
    """What planning stored for CALENDAR_ID, through the ORM, without what differs between
    two calendars (ids, keys naming the calendar, batch ids, creation times)."""
    with session_scope(engine) as s:
        rows = s.exec(select(CalendarEventRow).where(CalendarEventRow.calendar_id == calendar_id))
        events = {}
        by_id = {}
        for r in rows:
            values = r.model_dump(exclude={"id", "calendar_id", "updated_at"})
            events[(r.uid, r.occurrence)] = values
            by_id[r.id] = (r.uid, r.occurrence)
        reminders = []
        for rem in s.exec(select(Reminder).where(Reminder.event_id.in_(list(by_id)))):  # type: ignore[attr-defined]
            message = s.get(Message, rem.message_id) if rem.message_id else None
            reminders.append(
                (
                    by_id[rem.event_id],
                    rem.rule,
                    rem.for_start,
                    rem.send_at,
                    rem.status,
                    rem.note,
                    message
                    and message.model_dump(
                        exclude={
                            "id",
                            "batch_id",
                            "idempotency_key",
                            "created_at",
                            "updated_at",
                            "final_at",
                        }
                    ),
                    # The key without the calendar id (nor a replaced reminder's id).
                    message and re.sub(r":r\d+:", ":r:", message.idempotency_key.split(":", 2)[2]),
                )
            )
        return {"events": events, "reminders": sorted(reminders, key=repr)}


def test_planning_stores_the_same_rows_through_the_driver(
    engine: Engine, config: Any, account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.sending.credits import top_up

    with session_scope(engine) as s:
        top_up(s, "acme", 1000)
    through_sqlalchemy, through_driver = _calendar(engine, "a"), _calendar(engine, "b")
    with monkeypatch.context() as m:
        m.setattr(bulk_sql, "insert_many", lambda *a: False)
        m.setattr(bulk_sql, "update_many", lambda *a: False)
        _plan(engine, config, through_sqlalchemy, _events())
    _plan(engine, config, through_driver, _events())
    before, after = _snapshot(engine, through_sqlalchemy), _snapshot(engine, through_driver)
    assert before["reminders"] and any(r[6] for r in before["reminders"])
    assert before == after
    # A re-sync with moved and cancelled appointments (updates, cancellations, refunds).
    moved = _events()
    for n in range(10):
        moved[n] = replace(moved[n], start=moved[n].start + timedelta(hours=1, microseconds=3))
    moved[12] = replace(moved[12], status=EventStatus.CANCELLED)
    del moved[20]  # gone from the calendar
    with monkeypatch.context() as m:
        m.setattr(bulk_sql, "insert_many", lambda *a: False)
        m.setattr(bulk_sql, "update_many", lambda *a: False)
        _plan(engine, config, through_sqlalchemy, moved)
    _plan(engine, config, through_driver, moved)
    assert _snapshot(engine, through_sqlalchemy) == _snapshot(engine, through_driver)
    with session_scope(engine) as s:
        assert ledger_problems(s) == []
        # One ledger row per batch, each message keeping its credits.
        charged = s.exec(select(LedgerEntry).where(LedgerEntry.kind == "charge")).all()
        assert len(charged) == len({c.batch_id for c in charged})
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            stamps = [
                v
                for row in conn.exec_driver_sql(
                    "SELECT r.for_start, r.send_at, r.created_at, m.due_at, m.created_at "
                    "FROM reminders r JOIN messages m ON m.id = r.message_id"
                )
                for v in row
            ]
        assert stamps and all(
            re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", v) for v in stamps
        )


def test_binary_copy_only_for_values_stored_alike(
    engine: Engine, account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL's COPY goes in binary form when every value's binary form stores what its
    # text form stores; a naive datetime (read in the session's zone as text) or a value of
    # another Python type than its column's keeps the text form. Either way the rows are
    # stored as SQLAlchemy stores them.
    forms: list[bool] = []
    copy = bulk_sql._copy

    def spy(conn: Connection, rows: Any, sql: str, types: Any = None) -> None:
        forms.append(types is not None)
        copy(conn, rows, sql, types)

    monkeypatch.setattr(bulk_sql, "_copy", spy)
    aware = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-5)))
    naive = aware.replace(tzinfo=None)
    cases = [
        ({}, True),
        ({"send_at": naive}, False),
        ({"note": 5}, False),
    ]
    for case, (change, binary) in enumerate(cases):
        calendar_id = _calendar(engine, f"forms{case}")
        with session_scope(engine) as s:
            conn = s.connection()
            event_id = _one_event(conn, calendar_id)
            rows = [
                {
                    "event_id": event_id,
                    "rule": "2h",
                    "message_id": None if n % 2 else f"m{n}",
                    "for_start": aware,
                    "send_at": aware - timedelta(hours=n),
                    "status": "scheduled",
                    "note": "é\\\t\n",
                    "created_at": aware,
                }
                for n in range(4)
            ]
            rows[1] = {**rows[1], **change}
            where = f"WHERE event_id = {event_id}"
            forms.clear()
            conn.execute(insert(REMINDERS), rows)
            assert bulk_sql.insert_many(conn, REMINDERS, rows)
            got = _stored(conn, REMINDERS, where)
            assert got[:4] == got[4:], change
            if conn.dialect.name == "postgresql":
                assert forms == [binary], change


def test_binary_fits_checks_each_value() -> None:
    stamp = datetime(2031, 5, 6, tzinfo=UTC)
    fits = bulk_sql._binary_fits
    assert fits([23, 1043, 1184, 16], [[1, None], ["a", None], [stamp, None], [True, None]])
    assert not fits([1184], [[stamp, stamp.replace(tzinfo=None)]])
    assert not fits([23], [[1, True]])
    assert not fits([16], [[True, 1]])
    assert not fits([1043], [["a", 1]])
    assert not fits([23], [[1, 2.0]])
