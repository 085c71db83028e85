"""Reminders follow the calendar: planned, moved, cancelled, deleted, quiet hours, problems."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from hub.errors import InvalidInput
from hub.ports.calendar import CalendarEvent, EventStatus, Removed, SyncResult, SyncWindow
from hub.reminders.extract import find_recipient
from hub.reminders.naming import Naming, naming
from hub.reminders.reconcile import Reconciler, reconcile
from hub.reminders.render import render_reminder
from hub.reminders.rules import Offset, QuietHours, parse_offset, send_time
from hub.reminders.setup import remove_calendar
from hub.sending.accounts import get_account
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import Calendar, CalendarEventRow, Message, Reminder

PARIS = ZoneInfo("Europe/Paris")


def _day(days: int, hour: int, minute: int = 0) -> datetime:
    """A Paris wall-clock time DAYS from today, as aware UTC."""
    local = datetime.now(PARIS) + timedelta(days=days)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(UTC)


def _event(
    start: datetime, uid: str = "ev1", desc: str = "Tel: 06 12 34 56 78\nNom: Jeanne", **kw: object
) -> CalendarEvent:
    fields: dict[str, object] = {"title": "Consultation", "timezone": "Europe/Paris", **kw}
    return CalendarEvent(
        uid=uid,
        occurrence="",
        start=start,
        end=start + timedelta(minutes=30),
        description=desc,
        **fields,
    )  # type: ignore[arg-type]


def _add_calendar(session) -> int:
    """The account acme's calendar 'cabinet' (reminders two days ahead at 09:00); its id."""
    cal = Calendar(
        account_id=get_account(session, "acme").id,
        name="cabinet",
        source_type="ics",
        offsets="2d@09:00",
        timezone="Europe/Paris",
        locale="fr_FR",
    )
    session.add(cal)
    session.flush()
    return cal.id


@pytest.fixture
def calendar(engine, account):
    with session_scope(engine) as s:
        return _add_calendar(s)


WINDOW = SyncWindow(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=60))


def _sync(engine, config, calendar_id, events, full=True, removed=(), now=None, **changes):
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar_id)
        for k, v in changes.items():
            setattr(cal, k, v)
        return reconcile(
            s, config, cal, SyncResult(list(events), list(removed), full=full), WINDOW, now
        )


def _queued(engine) -> list[Message]:
    with session_scope(engine) as s:
        return list(s.exec(select(Message).where(Message.status == "queued")).all())


def test_new_appointment_gets_a_localized_reminder(engine, config, calendar):
    start = _day(4, 10)
    report = _sync(engine, config, calendar, [_event(start)])
    assert report.planned == 1
    [msg] = _queued(engine)
    assert msg.recipient == "+33612345678" and msg.scheduled and msg.source == "calendar"
    due = msg.due_at.replace(tzinfo=UTC).astimezone(PARIS)
    assert (due.date(), due.time()) == (
        (start.astimezone(PARIS) - timedelta(days=2)).date(),
        time(9, 0),
    )
    assert msg.text.startswith("Bonjour Jeanne, rappel de votre RDV le ")
    assert " à 10:00." in msg.text and "OUI" in msg.text
    again = _sync(engine, config, calendar, [_event(start)])
    assert again.planned == 0 and len(_queued(engine)) == 1


def test_moved_appointment_is_rescheduled_never_both(engine, config, calendar):
    _sync(engine, config, calendar, [_event(_day(4, 10))])
    _sync(engine, config, calendar, [_event(_day(5, 15))])
    [msg] = _queued(engine)
    assert " à 15:00." in msg.text
    with session_scope(engine) as s:
        statuses = sorted(r.status for r in s.exec(select(Reminder)).all())
        assert statuses == ["cancelled", "scheduled"]
        assert get_account(s, "acme").balance == 99  # the first one was refunded
        assert ledger_problems(s) == []


def test_a_calendar_removed_and_connected_again_gets_its_reminders(engine, config, calendar):
    """Its messages stay in the history after the removal; the new calendar may get the same
    id (SQLite gives the highest id again once its row is gone): its reminders are new
    messages, not the old, cancelled ones found by their idempotency keys."""
    start = _day(4, 10)
    assert _sync(engine, config, calendar, [_event(start)]).planned == 1
    with session_scope(engine) as s:
        remove_calendar(s, calendar)
        again_id = _add_calendar(s)
    assert _sync(engine, config, again_id, [_event(start)]).planned == 1
    [msg] = _queued(engine)
    assert msg.recipient == "+33612345678"
    with session_scope(engine) as s:
        [reminder] = s.exec(select(Reminder)).all()
        assert reminder.message_id == msg.id and reminder.status == "scheduled"
        assert get_account(s, "acme").balance == 99  # the first one was refunded
        assert ledger_problems(s) == []


def test_reminder_keys_name_the_calendar_alike_whatever_zone_its_time_comes_in(config):
    """PostgreSQL gives a calendar's created_at in the session's zone, SQLite without one:
    the same instant names the calendar alike in its messages' idempotency keys."""
    made = datetime(2026, 3, 29, 0, 30, 5, 123456, tzinfo=UTC)
    keys = {
        Reconciler(
            config, Calendar(id=7, account_id=1, name="c", source_type="ics", created_at=at), "FR"
        )._keyed
        for at in (made, made.astimezone(PARIS), made.replace(tzinfo=None))
    }
    assert keys == {"7.20260329003005123456"}


def test_cancelled_or_deleted_appointment_cancels_its_reminder(engine, config, calendar):
    _sync(engine, config, calendar, [_event(_day(4, 10)), _event(_day(6, 11), uid="ev2")])
    assert len(_queued(engine)) == 2
    _sync(
        engine,
        config,
        calendar,
        [_event(_day(4, 10), status=EventStatus.CANCELLED), _event(_day(6, 11), uid="ev2")],
    )
    assert len(_queued(engine)) == 1
    _sync(engine, config, calendar, [], full=True)
    assert _queued(engine) == []
    _sync(engine, config, calendar, [_event(_day(7, 9), uid="ev3")], full=False)
    report = _sync(engine, config, calendar, [], full=False, removed=[Removed("ev3")])
    assert report.cancelled == 1 and _queued(engine) == []


def test_event_without_mobile_number_is_listed_as_a_problem(engine, config, calendar):
    report = _sync(
        engine,
        config,
        calendar,
        [
            _event(_day(4, 10), desc="Tél. fixe: 01 23 45 67 89"),
            _event(_day(4, 11), uid="ev2", desc="pas de numéro"),
        ],
    )
    assert report.planned == 0 and _queued(engine) == []
    assert any("landline" in p for p in report.problems)
    with session_scope(engine) as s:
        problems = [r.problem for r in s.exec(select(CalendarEventRow)).all()]
    assert "no mobile number in the title, location or description" in problems


def test_appointment_created_too_late_is_skipped(engine, config, calendar):
    report = _sync(engine, config, calendar, [_event(datetime.now(UTC) + timedelta(hours=5))])
    assert report.skipped == 1 and _queued(engine) == []


def test_change_notice_when_moved_after_the_reminder_went_out(engine, config, calendar):
    _sync(engine, config, calendar, [_event(_day(4, 10))])
    with session_scope(engine) as s:
        msg = s.exec(select(Message)).one()
        msg.status = "sent"
    report = _sync(engine, config, calendar, [_event(_day(6, 16))], notify_changes=True)
    assert report.changed_notices == 1
    texts = sorted(m.text for m in _queued(engine))
    assert any("déplacé" in t and "16:00" in t for t in texts)
    assert any("rappel" in t and "16:00" in t for t in texts)


def test_no_credits_is_a_problem_not_a_crash(engine, config, calendar):
    with session_scope(engine) as s:
        acc = get_account(s, "acme")
        from hub.sending.credits import charge

        charge(s, acc, 100, origin=acc, batch_id="x")
    report = _sync(engine, config, calendar, [_event(_day(4, 10))])
    assert report.skipped == 1 and "credits" in report.problems[0]


def test_rule_grammar():
    assert parse_offset("2d@09:00") == Offset("2d@09:00", 2, "d", time(9, 0))
    assert parse_offset(" 3H ") == Offset("3h", 3, "h", None)
    for bad in ["2x", "3h@09:00", "1d@25:00", "soon"]:
        with pytest.raises(InvalidInput):
            parse_offset(bad)


def test_quiet_hours_move_a_reminder_earlier():
    quiet = QuietHours(time(21, 0), time(8, 0))
    start = datetime(2026, 12, 3, 8, 30, tzinfo=PARIS).astimezone(UTC)
    when = send_time(start, parse_offset("3h"), "Europe/Paris", quiet)
    assert when.astimezone(PARIS) == datetime(2026, 12, 2, 20, 59, tzinfo=PARIS)


def test_day_rule_keeps_local_time_across_dst():
    quiet = QuietHours()
    start = datetime(2026, 3, 30, 10, 0, tzinfo=PARIS).astimezone(UTC)  # Monday after DST
    when = send_time(start, parse_offset("2d@09:00"), "Europe/Paris", quiet)
    assert when.astimezone(PARIS) == datetime(2026, 3, 28, 9, 0, tzinfo=PARIS)
    assert when.utcoffset() == timedelta(0) and when.hour == 8  # UTC+1 before the change


@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
    ),
    amount=st.integers(1, 72),
    unit=st.sampled_from(["d", "h", "m"]),
    at_hour=st.none() | st.integers(0, 23),
)
def test_send_time_is_never_in_quiet_hours_nor_after_the_start(start, amount, unit, at_hour):
    quiet = QuietHours(time(21, 0), time(8, 0))
    text = f"{amount}{unit}" if at_hour is None or unit != "d" else f"{amount}d@{at_hour}:00"
    offset = parse_offset(text)
    when = send_time(start, offset, "Europe/Paris", quiet)
    assert not quiet.contains(when.astimezone(PARIS).time())
    assert when < start


def test_recipient_extraction():
    ev = _event(_day(3, 9), desc="", title="RDV Jeanne Durand 06.98.76.54.32")
    r = find_recipient(ev, "FR")
    assert r.phone == "+33698765432"
    # The title is the receptionist's note, not a name to greet with (issue 17).
    assert naming(ev, r.phone) == Naming("RDV Jeanne Durand", "", "")
    ev = _event(_day(3, 9), desc="Mobile : +41 79 123 45 67\nPatient: M. Keller")
    assert find_recipient(ev, "FR").phone == "+41791234567"
    assert naming(ev, "+41791234567").name == "M. Keller"


def test_template_is_sandboxed_and_localized():
    start = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    text = render_reminder(
        "{{ start|date('EEEE d MMMM') }} {{ start|time('HH:mm') }}",
        locale="fr_FR",
        tz="Europe/Paris",
        start=start,
    )
    assert text == "mercredi 2 décembre 10:30"
    assert (
        render_reminder("{{ start|date('EEEE') }}", locale="de_DE", tz="Europe/Berlin", start=start)
        == "Mittwoch"
    )
    with pytest.raises(InvalidInput, match="template"):
        render_reminder("{{ ''.__class__.__mro__ }}", locale="fr_FR", tz="UTC", start=start)


class FakeSource:
    """A calendar source whose answers the test scripts."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.cursors = []

    async def sync(self, window, cursor):
        self.cursors.append(cursor)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def annotate(self, event, note):
        return False

    async def close(self):
        pass


async def test_sync_falls_back_to_full_and_records_errors(engine, config, calendar, monkeypatch):
    from hub.errors import CursorExpired, HubError, SourceError
    from hub.reminders import sync

    source = FakeSource(
        [
            SyncResult([_event(_day(4, 10))], cursor="c1"),
            CursorExpired(),
            SyncResult([_event(_day(4, 10))], cursor="c2"),
            SourceError("HTTP 401 from https://cal.example/x.ics: check the password"),
        ]
    )
    monkeypatch.setattr(sync, "build_calendar_source", lambda *a, **k: source)
    report = await sync.sync_calendar(engine, config, calendar)
    assert report.planned == 1
    await sync.sync_calendar(engine, config, calendar)
    assert source.cursors == [None, "c1", None]
    with pytest.raises(HubError, match="HTTP 401"):
        await sync.sync_calendar(engine, config, calendar)
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar)
        assert cal.cursor == "c2" and "HTTP 401" in cal.last_error
    assert len(_queued(engine)) == 1


async def test_patient_answers_oui_or_non(
    db_url, tmp_path, engine, account, calendar, smtp_sink, monkeypatch, make_hub
):
    from hub.reminders import sync
    from tests.conftest import make_config

    config = make_config(
        db_url, tmp_path, mail_out={"host": "127.0.0.1", "port": smtp_sink.port, "starttls": False}
    )
    _sync(
        engine,
        config,
        calendar,
        [_event(_day(4, 10)), _event(_day(5, 11), uid="ev2", desc="Tel: 0698765432")],
        notify_mailbox="accueil@cabinet.example",
    )
    with session_scope(engine) as s:
        for m in s.exec(select(Message)).all():
            m.due_at = datetime.now(UTC)  # due now
    hub = await make_hub(config=config)
    try:
        await hub.dispatcher.drain()
        sim = hub.providers["simulator"]
        await sim.receive("+33612345678", "Oui !")
        await sim.receive("+33698765432", "non")
        with session_scope(engine) as s:
            answers = {r.uid: r.answer for r in s.exec(select(CalendarEventRow)).all()}
        assert answers == {"ev1": "confirmed", "ev2": "cancelled"}
        assert await hub.mail_outbox.send_due() == 2
        subjects = sorted(m["Subject"] for m in smtp_sink.messages)
        assert subjects[0].startswith("Appointment CANCELLED: Consultation")
        assert subjects[1].startswith("Appointment confirmed: Consultation")

        class Annotating(FakeSource):
            notes: list[tuple[str, str]] = []

            async def annotate(self, event, note):
                self.notes.append((event.uid, note))
                return True

        source = Annotating(
            [
                SyncResult(
                    [_event(_day(4, 10)), _event(_day(5, 11), uid="ev2", desc="Tel: 0698765432")]
                )
            ]
        )
        monkeypatch.setattr(sync, "build_calendar_source", lambda *a, **k: source)
        await sync.sync_calendar(engine, config, calendar)
        assert sorted(source.notes) == [
            ("ev1", "SMS: confirmed by the patient"),
            ("ev2", "SMS: CANCELLED by the patient"),
        ]
    finally:
        await hub.stop()


def _ics_calendars(engine, count):
    """The ids of COUNT new ICS calendars of account acme, named c0, c1, ..."""
    with session_scope(engine) as s:
        owner = get_account(s, "acme").id
        cals = [Calendar(account_id=owner, name=f"c{n}", source_type="ics") for n in range(count)]
        s.add_all(cals)
        s.flush()
        return [c.id for c in cals]


async def test_due_calendars_sync_two_at_once_and_one_failing_stops_none(
    engine, config, account, monkeypatch
):
    """sync_many: every calendar synced, at most CONCURRENCY at a time, reports in the
    calendars' order, a calendar whose source fails reported as None (its error recorded)."""
    from hub.errors import SourceError
    from hub.reminders import sync

    ids = _ics_calendars(engine, 4)
    running = peak = 0

    class Slow(FakeSource):
        async def sync(self, window, cursor):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1
            return await super().sync(window, cursor)

    sources = {
        name: Slow([SyncResult([_event(_day(4 + n, 10), uid=f"u{n}")], cursor="c")])
        for n, name in enumerate(["c0", "c1", "c3"])  # calendar_source_name: "calendar 'c0'"
    }
    sources["c2"] = Slow([SourceError("HTTP 500 from the calendar")])
    monkeypatch.setattr(
        sync, "build_calendar_source", lambda kind, settings, ctx, name: sources[name[10:-1]]
    )
    reports = await sync.sync_many(engine, config, ids, concurrency=2)
    assert [r is not None and r.planned for r in reports] == [1, 1, False, 1]
    assert peak == 2
    with session_scope(engine) as s:
        assert "HTTP 500" in s.get(Calendar, ids[2]).last_error
    assert len(_queued(engine)) == 3


async def test_due_calendars_not_started_once_the_instance_is_stopping(
    engine, config, account, monkeypatch
):
    """sync_due with its STOPPING event set during a sync: that sync finishes, no other
    starts, and the calendars left stay due for the next sync (of this or another leader)."""
    from hub.reminders import sync

    ids = _ics_calendars(engine, 3)
    stopping = asyncio.Event()
    started = []

    class StopDuring(FakeSource):
        async def sync(self, window, cursor):
            started.append(cursor)
            stopping.set()  # SIGTERM arrives while the first calendar is being read
            return await super().sync(window, cursor)

    monkeypatch.setattr(
        sync,
        "build_calendar_source",
        lambda kind, settings, ctx, name: StopDuring(
            [SyncResult([_event(_day(4, 10), uid=name)], cursor="c")]
        ),
    )
    # One at a time on SQLite, two on PostgreSQL (SYNC_CONCURRENCY): those started finish.
    synced = await sync.sync_due(engine, config, stopping=stopping)
    assert synced == len(started) == (1 if engine.dialect.name == "sqlite" else 2)
    assert len(_queued(engine)) == synced
    assert len(sync.due_calendars(engine)) == len(ids) - synced
