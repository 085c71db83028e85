"""Reminders that read right (issue 17): whom they greet and where the name came from,
all-day appointments, and settings changes that move reminders already planned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlmodel import select

from hub.ports.calendar import Attendee, CalendarEvent, SyncResult, SyncWindow
from hub.reminders.reconcile import reconcile, reconcile_chunked
from hub.reminders.replan import replan, replanned_message
from hub.reminders.setup import problem_events, update_rules
from hub.sending.accounts import get_account
from hub.sending.credits import ledger_problems
from hub.store.db import make_engine, session_scope
from hub.store.models import Calendar, CalendarEventRow, Contact, ContactList, Message, Reminder
from tests.test_calendar_cli import _ics, smshub  # noqa: F401  (the CLI fixture)

PARIS = ZoneInfo("Europe/Paris")
WINDOW = SyncWindow(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=60))
NO_NAME = "Bonjour, rappel de votre RDV le "


def _day(days: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Paris wall-clock time DAYS from today, as aware Paris time."""
    local = datetime.now(PARIS) + timedelta(days=days)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0)


def _event(uid: str, start: datetime, title: str, desc: str = "", **kw: Any) -> CalendarEvent:
    return CalendarEvent(
        uid=uid,
        occurrence="",
        start=start,
        end=start + timedelta(minutes=30),
        timezone="Europe/Paris",
        title=title,
        description=desc,
        **kw,
    )


@pytest.fixture
def calendar(engine, account):
    with session_scope(engine) as s:
        cal = Calendar(
            account_id=get_account(s, "acme").id,
            name="cabinet",
            source_type="ics",
            offsets="2d@09:00",
        )
        s.add(cal)
        s.flush()
        return cal.id


def _sync(engine, config, calendar_id, events, now=None):
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar_id)
        return reconcile(s, config, cal, SyncResult(list(events)), WINDOW, now)


def _queued(engine) -> dict[str, Message]:
    with session_scope(engine) as s:
        rows = s.exec(select(Message).where(Message.status == "queued")).all()
        return {m.recipient: m for m in rows}


def _rows(engine) -> dict[str, CalendarEventRow]:
    with session_scope(engine) as s:
        return {r.uid: r for r in s.exec(select(CalendarEventRow)).all()}


def _local(value: datetime) -> datetime:
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return aware.astimezone(PARIS)


# -- whom a reminder greets ---------------------------------------------------------------
def test_name_from_attendee_contact_description_or_none(engine, config, calendar):
    with session_scope(engine) as s:
        acme = get_account(s, "acme")
        patients = ContactList(account_id=acme.id, name="patients")
        s.add(patients)
        s.flush()
        s.add(
            Contact(
                list_id=patients.id,
                number="+33698765432",
                fields=json.dumps({"first_name": "Paul", "last_name": "Blanc"}),
            )
        )
    start = _day(4, 10)
    events = [
        # An ICS ATTENDEE's CN (Google/Graph/Exchange attendee lists arrive the same way).
        _event(
            "cn",
            start,
            "Kiné 06 12 34 56 78",
            attendees=(
                Attendee("jeanne@example.org", "jeanne@example.org"),
                Attendee("jeanne@example.org", "Jeanne Durand"),
            ),
        ),
        # A contact of the account with this number.
        _event("contact", start, "Kiné M. Blanc 06 98 76 54 32"),
        # A Nom: line of the description (it wins over an attendee).
        _event(
            "line",
            start,
            "Bilan",
            "Tel: 07 81 22 33 44\nNom: Mme Rose",
            attendees=(Attendee(None, "Dr Martin"),),
        ),
        # Nothing but a title: greeted without a name, the title not taken for one.
        _event("none", start, "Journée Mme Vert 06 11 22 33 44"),
    ]
    report = _sync(engine, config, calendar, events)
    assert report.planned == 4
    texts = {number: m.text for number, m in _queued(engine).items()}
    assert texts["+33612345678"].startswith("Bonjour Jeanne Durand, rappel de votre RDV le ")
    assert texts["+33698765432"].startswith("Bonjour Paul Blanc, rappel de votre RDV le ")
    assert texts["+33781223344"].startswith("Bonjour Mme Rose, rappel de votre RDV le ")
    assert texts["+33611223344"].startswith(NO_NAME)
    assert " à 10:00." in texts["+33611223344"] and "Vert" not in texts["+33611223344"]
    rows = _rows(engine)
    assert {uid: (r.person, r.person_source) for uid, r in rows.items()} == {
        "cn": ("Jeanne Durand", "attendee"),
        "contact": ("Paul Blanc", "contact"),
        "line": ("Mme Rose", "description"),
        "none": ("", ""),
    }


def test_title_field_has_no_number(engine, config, calendar):
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar)
        cal.template = "{{ title }} / {{ name or 'inconnu' }}"
    _sync(engine, config, calendar, [_event("a", _day(4, 10), "Kiné M. Blanc 06 12 34 56 78")])
    [msg] = _queued(engine).values()
    assert msg.text == "Kiné M. Blanc / inconnu"


def test_contact_names_are_read_once_per_chunk(db_url, engine, config, calendar):
    with session_scope(engine) as s:
        acme = get_account(s, "acme")
        acme.balance = 1000
        patients = ContactList(account_id=acme.id, name="patients")
        s.add(patients)
        s.flush()
        for n in range(0, 100, 2):
            s.add(
                Contact(
                    list_id=patients.id,
                    number=f"+336120000{n:02d}",
                    fields=json.dumps({"name": f"Patient {n}"}),
                )
            )
    events = [_event(f"e{n}", _day(4, 10), f"RDV 06 12 00 00 {n:02d}", "") for n in range(0, 100)]
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        if "contacts" in statement.lower():
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        report = reconcile_chunked(
            engine, config, calendar, SyncResult(events), WINDOW, now=datetime.now(UTC)
        )
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert report.planned == 100
    # 100 appointments in one chunk: one statement reads their contacts.
    assert len(statements) == 1
    rows = _rows(engine)
    assert (rows["e4"].person, rows["e4"].person_source) == ("Patient 4", "contact")
    assert (rows["e5"].person, rows["e5"].person_source) == ("", "")


# -- all-day appointments -------------------------------------------------------------------
def test_all_day_event_has_no_time_and_gets_day_rules_only(engine, config, calendar):
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar)
        cal.offsets = "3h,1d"
    day = _day(5)  # midnight, Paris: how sources give an all-day start
    report = _sync(
        engine,
        config,
        calendar,
        [
            _event("allday", day, "Journée Mme Vert", "Tel: 06 12 34 56 78", all_day=True),
            _event("timed", _day(5, 15), "RDV", "Tel: 06 98 76 54 32\nNom: Marc"),
        ],
    )
    queued = _queued(engine)
    allday = queued["+33612345678"]
    assert allday.text.startswith(NO_NAME)
    assert "00:00" not in allday.text and " à " not in allday.text
    # 1d: the day before at 09:00 (not 24 hours before midnight); 3h: none.
    assert _local(allday.due_at) == _day(4, 9)
    with session_scope(engine) as s:
        rows = {
            (e.uid, r.rule): r
            for r, e in s.exec(
                select(Reminder, CalendarEventRow).join(
                    CalendarEventRow, CalendarEventRow.id == Reminder.event_id
                )
            ).all()
        }
        assert rows[("allday", "3h")].status == "skipped"
        assert "all-day appointment" in rows[("allday", "3h")].note
        assert rows[("allday", "1d")].status == "scheduled"
        # The timed appointment gets both.
        assert rows[("timed", "3h")].status == rows[("timed", "1d")].status == "scheduled"
        problems = problem_events(s, calendar_id=calendar)
        assert [(e.uid, e.problem) for e, _ in problems] == [
            (
                "allday",
                "all-day appointment (no time of day): 3h not sent, hour rules do not apply; "
                "day rules (1d, 2d@09:00) do",
            )
        ]
    assert report.planned == 3 and report.skipped == 1
    # Nothing moves on the next sync.
    again = _sync(
        engine,
        config,
        calendar,
        [
            _event("allday", day, "Journée Mme Vert", "Tel: 06 12 34 56 78", all_day=True),
            _event("timed", _day(5, 15), "RDV", "Tel: 06 98 76 54 32\nNom: Marc"),
        ],
    )
    assert (again.planned, again.rescheduled, again.skipped) == (0, 0, 0)


def test_all_day_day_rule_respects_quiet_hours(engine, config, calendar):
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar)
        cal.offsets = "2d"
        cal.quiet_start, cal.quiet_end = "20:00", "09:30"
    _sync(
        engine,
        config,
        calendar,
        [_event("allday", _day(6), "Journée", "Tel: 06 12 34 56 78", all_day=True)],
    )
    [msg] = _queued(engine).values()
    assert _local(msg.due_at) == _day(4, 9, 30)  # at the end of quiet hours, not at 09:00


def test_a_timed_appointment_made_all_day_loses_its_hour_reminder(engine, config, calendar):
    with session_scope(engine) as s:
        s.get(Calendar, calendar).offsets = "3h"
    _sync(engine, config, calendar, [_event("a", _day(5, 10), "RDV", "Tel: 06 12 34 56 78")])
    assert len(_queued(engine)) == 1
    _sync(
        engine,
        config,
        calendar,
        [_event("a", _day(5), "RDV", "Tel: 06 12 34 56 78", all_day=True)],
    )
    assert _queued(engine) == {}
    with session_scope(engine) as s:
        assert get_account(s, "acme").balance == 100  # refunded
        assert ledger_problems(s) == []


# -- settings changes replan ------------------------------------------------------------------
def _set(engine, calendar_id, **changes):
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar_id)
        settings = {
            "offsets": cal.offsets,
            "quiet_start": cal.quiet_start,
            "quiet_end": cal.quiet_end,
            "template": cal.template,
            "locale": cal.locale,
            "tz": cal.timezone,
            **changes,
        }
        update_rules(s, cal, **settings)


def test_settings_change_replans_planned_reminders(engine, config, calendar):
    with session_scope(engine) as s:
        s.get(Calendar, calendar).offsets = "2d@08:00"
    events = [
        _event("a", _day(4, 10), "RDV", "Tel: 06 12 34 56 78\nNom: Jeanne"),
        _event("b", _day(5, 11), "RDV", "Tel: 06 98 76 54 32\nNom: Marc"),
        _event("c", _day(6, 12), "RDV", "Tel: 07 81 22 33 44\nNom: Rose"),
    ]
    _sync(engine, config, calendar, events)
    assert {_local(m.due_at).time() for m in _queued(engine).values()} == {time(8, 0)}

    # Quiet hours now 20:00-09:00: 08:00 is inside, so every reminder moves to 19:59 the
    # evening before, now, not at the next sync.
    _set(engine, calendar, quiet_start="20:00", quiet_end="09:00")
    report = replan(engine, config, calendar)
    assert (report.rescheduled, report.planned, report.cancelled) == (3, 3, 0)
    assert replanned_message(report) == "3 reminders replanned"
    queued = _queued(engine)
    assert {_local(m.due_at).time() for m in queued.values()} == {time(19, 59)}
    assert _local(queued["+33612345678"].due_at).date() == _day(1).date()
    with session_scope(engine) as s:
        assert get_account(s, "acme").balance == 97  # the three replaced were refunded
        assert ledger_problems(s) == []
        statuses = sorted(r.status for r in s.exec(select(Reminder)).all())
        assert statuses == ["cancelled"] * 3 + ["scheduled"] * 3
        assert s.get(Calendar, calendar).planned_with != ""

    # Again: nothing moves; a full sync of the same calendar moves nothing either.
    assert replan(engine, config, calendar).rescheduled == 0
    assert _sync(engine, config, calendar, events).rescheduled == 0

    # A new template rewrites the texts; a new rule plans; a removed rule cancels.
    _set(engine, calendar, template="RDV {{ start|date('d MMMM') }}, {{ name }}")
    report = replan(engine, config, calendar)
    assert report.rescheduled == 3
    assert all(m.text.startswith("RDV ") for m in _queued(engine).values())
    _set(engine, calendar, offsets="2d@08:00,1d@10:00")
    report = replan(engine, config, calendar)
    assert (report.rescheduled, report.planned) == (0, 3)
    assert replanned_message(report) == "0 reminders replanned, 3 newly planned"
    assert len(_queued(engine)) == 3 and _count_queued(engine) == 6


def _count_queued(engine) -> int:
    with session_scope(engine) as s:
        return len(s.exec(select(Message).where(Message.status == "queued")).all())


# -- the command line ---------------------------------------------------------------------------
def test_cli_rules_replan_and_preview_shows_name_and_all_day(smshub, db_url, tmp_path):  # noqa: F811
    today = datetime.now(PARIS).replace(hour=10, minute=0, second=0, microsecond=0)
    timed = (today + timedelta(days=4)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = (today + timedelta(days=5)).strftime("%Y%m%d")
    path = tmp_path / "cabinet.ics"
    path.write_text(
        _ics(
            # The practice organizes and is listed first among the attendees: not greeted.
            f"UID:timed\r\nDTSTART:{timed}\r\nSUMMARY:Kiné 06 12 34 56 78\r\n"
            "ORGANIZER;CN=Cabinet Durand:mailto:cabinet@example.org\r\n"
            "ATTENDEE;CN=Cabinet Durand:mailto:CABINET@example.org\r\n"
            "ATTENDEE;CN=Jeanne Durand:mailto:jeanne@example.org",
            f"UID:allday\r\nDTSTART;VALUE=DATE:{day}\r\nSUMMARY:Journée Mme Vert\r\n"
            "DESCRIPTION:Tel: 06 98 76 54 32",
        )
    )
    # The dry run: the name and its source, the all-day appointment without a time.
    code, out, err = smshub(
        "calendar", "preview", str(path), "--rule", "3h", "--rule", "1d", "--json"
    )
    assert code == 0, err
    entries = {(e["event_uid"], i % 2): e for i, e in enumerate(json.loads(out))}
    jeanne = entries[("timed", 0)]
    assert (jeanne["name"], jeanne["name_source"], jeanne["title"]) == (
        "Jeanne Durand",
        "attendee",
        "Kiné",
    )
    assert jeanne["text"].startswith("Bonjour Jeanne Durand, rappel") and not jeanne["all_day"]
    vert_3h, vert_1d = entries[("allday", 0)], entries[("allday", 1)]
    assert vert_3h["all_day"] and vert_3h["send_at"] is None
    assert "hour rules do not apply" in vert_3h["problem"]
    assert vert_1d["problem"] is None and vert_1d["send_at"][10:19] == "T09:00:00"
    assert vert_1d["name"] == "" and vert_1d["text"].startswith(NO_NAME)
    assert "00:00" not in vert_1d["text"]
    code, out, err = smshub("calendar", "preview", str(path), "--rule", "3h", "--rule", "1d")
    assert code == 0, err
    assert "name: Jeanne Durand (from attendee)" in out
    assert f"{today + timedelta(days=5):%Y-%m-%d} all day  3h        send -" in out
    assert "NOT SENT: all-day appointment (no time of day): 3h not sent" in out
    assert "name: no name found" in out

    # A connected calendar: its settings change moves what is planned, and says how many.
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    assert smshub("accounts", "credit", "acme", "20")[0] == 0
    code, _, err = smshub(
        "calendars",
        "add",
        "acme",
        "cab",
        "--type",
        "ics",
        "--set",
        f"url={path}",
        "--offsets",
        "1d@08:00",
    )
    assert code == 0, err
    code, out, err = smshub("calendars", "sync", "acme", "cab", "--json")
    assert code == 0 and json.loads(out)["planned"] == 2, err
    code, out, err = smshub("calendars", "rules", "acme", "cab", "--quiet", "20:00-09:00")
    assert code == 0, err
    # The timed one's 08:00 moves to 19:59 the evening before; the all-day one's 08:00 too.
    assert out.strip() == "calendar cab updated: 2 reminders replanned"
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        due = sorted(
            _local(m.due_at).time()
            for m in s.exec(select(Message).where(Message.status == "queued")).all()
        )
        assert due == [time(19, 59), time(19, 59)]
        cal = s.exec(select(Calendar)).one()
        assert (cal.quiet_start, cal.quiet_end) == ("20:00", "09:00")
    engine.dispose()
    code, out, err = smshub("calendars", "rules", "acme", "cab", "--quiet", "20h")
    assert code == 1 and "must be START-END" in err


def test_a_sync_after_a_settings_change_moves_reminders_too(engine, config, calendar):
    # `sync --full` left a reminder at 08:00 after quiet hours became 20:00-09:00: a sync
    # now replans like the settings change itself does.
    with session_scope(engine) as s:
        s.get(Calendar, calendar).offsets = "2d@08:00"
    events = [_event("a", _day(4, 10), "RDV", "Tel: 06 12 34 56 78\nNom: Jeanne")]
    _sync(engine, config, calendar, events)
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar)
        cal.quiet_start, cal.quiet_end = "20:00", "09:00"
    assert _sync(engine, config, calendar, events).rescheduled == 1
    [msg] = _queued(engine).values()
    assert _local(msg.due_at) == _day(1, 19, 59)


def test_a_new_sender_replans_queued_reminders(engine, config, calendar):
    events = [_event("a", _day(4, 10), "RDV", "Tel: 06 12 34 56 78\nNom: Jeanne")]
    _sync(engine, config, calendar, events)
    with session_scope(engine) as s:
        s.get(Calendar, calendar).sender = "Cabinet"
    report = replan(engine, config, calendar)
    assert report.rescheduled == 1
    [msg] = _queued(engine).values()
    assert msg.sender == "Cabinet"
