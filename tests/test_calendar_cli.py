"""`smshub calendar preview`, `calendars remove`, `calendars auth` and `reminders list`.

The preview runs on the ICS files of tests/data/ics with a fixed --now, so its output is
exact; the others run end to end (add → sync → list → remove) on both databases.
"""

from __future__ import annotations

import json
import logging
import stat
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from hub.cli import main as cli
from hub.store.db import make_engine, session_scope
from hub.store.models import Calendar, CalendarEventRow, ConnectorState, Message, Reminder
from hub.store.state_sql import state_store
from tests.conftest import make_config, name_keyed_file, refuse_unlink
from tests.fakes import graph
from tests.servers._util import BackgroundServer

graph_fake = graph.graph_fake  # the fixture, under its own name

ICS = Path(__file__).parent / "data" / "ics"
PARIS = ZoneInfo("Europe/Paris")
KEYS = {
    "event_uid",
    "start",
    "all_day",
    "send_at",
    "to",
    "name",
    "name_source",
    "title",
    "text",
    "problem",
}
JEANNE = "6kq3c1r8d9ffm0v2lq3ot4bq5u@google.com"
TEAM = "9z8y7x6w5v4u3t2s1r0q9p8o7n@google.com"
NO_MOBILE = "no mobile number in the title, location or description"


@pytest.fixture
def smshub(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `smshub ARGS` in-process against the test database; returns (code, out, err)."""
    cfg = tmp_path / "smshub.toml"
    cfg.write_text(
        f'[hub]\ndata_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n'
        '[providers.simulator]\ntype = "simulator"\nreport_delay = 3600\n'
    )
    monkeypatch.setenv("SMSHUB_CONFIG", str(cfg))
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
        cli._state.clear()
        result = runner.invoke(cli.app, list(args), input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def _preview(smshub: Any, *args: str) -> list[dict[str, Any]]:
    code, out, err = smshub("calendar", "preview", *args, "--json")
    assert code == 0, err
    entries: list[dict[str, Any]] = json.loads(out)
    assert all(set(e) == KEYS for e in entries)
    return entries


def _of(entries: list[dict[str, Any]], uid: str, start: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["event_uid"] == uid and e["start"] == start]


# -- preview --------------------------------------------------------------------------------
def test_preview_google_export_across_the_dst_week(smshub):
    # Paris goes to summer time on Sunday 2025-03-30: rules stay on local wall-clock time.
    entries = _preview(
        smshub,
        str(ICS / "google.ics"),
        "--rule",
        "2d@09:00",
        "--rule",
        "1d@09:00",
        "--rule",
        "3h",
        "--now",
        "2025-03-20T12:00:00+01:00",
    )
    # Ten occurrences from now to now + 60 days, three rules each; nothing before --now.
    assert len(entries) == 30
    assert min(e["start"] for e in entries) == "2025-03-25T14:00:00+01:00"

    jeanne = _of(entries, JEANNE, "2025-03-31T09:00:00+02:00")
    assert [e["send_at"] for e in jeanne] == [
        "2025-03-29T09:00:00+01:00",  # 2d@09:00: still winter time
        "2025-03-30T09:00:00+02:00",  # 1d@09:00: the day of the change, 09:00 summer time
        "2025-03-30T20:59:00+02:00",  # 3h = 06:00, in quiet hours: the evening before
    ]
    for entry in jeanne:
        assert entry["to"] == "+33612345678" and entry["problem"] is None
        assert entry["text"].startswith("Bonjour Jeanne Durand, rappel de votre RDV le lundi")
        assert "lundi 31 mars à 09:00" in entry["text"]

    # A daily 09:00 meeting: 08:00 UTC in winter, 07:00 UTC once summer time began.
    team = [e for e in entries if e["event_uid"] == TEAM]
    assert [e["start"] for e in team][::3] == [
        "2025-03-27T09:00:00+01:00",
        "2025-03-28T09:00:00+01:00",
        "2025-03-29T09:00:00+01:00",
        "2025-03-30T09:00:00+02:00",
        "2025-03-31T09:00:00+02:00",
    ]
    # Its 2d@09:00 reminders: 09:00 local on both sides of the change.
    assert [e["send_at"] for e in team][::3] == [
        "2025-03-25T09:00:00+01:00",
        "2025-03-26T09:00:00+01:00",
        "2025-03-27T09:00:00+01:00",
        "2025-03-28T09:00:00+01:00",
        "2025-03-29T09:00:00+01:00",
    ]
    assert {(e["to"], e["problem"]) for e in team} == {(None, NO_MOBILE)}

    # The occurrence moved to Tuesday has its own description, without the number.
    moved = _of(entries, JEANNE, "2025-03-25T14:00:00+01:00")
    assert [e["problem"] for e in moved] == [NO_MOBILE] * 3
    cancelled = _of(entries, JEANNE, "2025-04-07T09:00:00+02:00")
    assert [e["problem"] for e in cancelled] == ["the appointment is cancelled"] * 3
    later = _of(entries, JEANNE, "2025-04-21T09:00:00+02:00")
    assert [e["send_at"] for e in later] == [
        "2025-04-19T09:00:00+02:00",
        "2025-04-20T09:00:00+02:00",
        "2025-04-20T20:59:00+02:00",
    ]


def test_preview_reminder_due_too_soon_after_now_is_created_too_late(smshub):
    entries = _preview(
        smshub,
        str(ICS / "google.ics"),
        "--rule",
        "2d@09:00",
        "--rule",
        "1d@09:00",
        "--now",
        "2025-03-29T08:45",  # no offset: in --tz (Paris, winter time)
    )
    jeanne = _of(entries, JEANNE, "2025-03-31T09:00:00+02:00")
    assert [(e["send_at"], e["problem"]) for e in jeanne] == [
        ("2025-03-29T09:00:00+01:00", "created too late for this reminder"),
        ("2025-03-30T09:00:00+02:00", None),
    ]
    assert jeanne[0]["to"] == "+33612345678"
    # The window starts at --now: the 09:00 meeting of that day is still ahead.
    assert min(e["start"] for e in entries) == "2025-03-29T09:00:00+01:00"


def test_preview_time_zone_places_floating_times_and_shows_offsets(smshub):
    entries = _preview(
        smshub,
        str(ICS / "floating.ics"),
        "--rule",
        "1d@08:30",
        "--now",
        "2025-03-20T00:00:00Z",
        "--tz",
        "America/New_York",
        "--locale",
        "en_US",
        "--template",
        "Hi{% if name %} {{ name }}{% endif %}, see you {{ start|date('EEEE d MMMM') }} at "
        "{{ start|time('h:mm a') }}",
        "--quiet",
        "00:00-00:00",
    )
    assert [(e["start"], e["send_at"]) for e in entries] == [
        # Floating 09:00 is 09:00 in New York (already on summer time since 9 March).
        ("2025-03-24T09:00:00-04:00", "2025-03-23T08:30:00-04:00"),
        ("2025-03-26T11:00:00-04:00", "2025-03-25T08:30:00-04:00"),  # 15:00Z
        ("2025-03-31T09:00:00-04:00", "2025-03-30T08:30:00-04:00"),
        ("2025-04-07T09:00:00-04:00", "2025-04-06T08:30:00-04:00"),
    ]
    # A title is no name (issue 17): greeted without one.
    assert entries[1]["text"] == "Hi, see you Wednesday 26 March at 11:00 AM"
    assert (entries[1]["name"], entries[1]["title"]) == ("", "Téléconsultation")


def _ics(*events: str) -> str:
    body = "".join(
        f"BEGIN:VEVENT\r\n{e.strip()}\r\nDTSTAMP:20250301T000000Z\r\nEND:VEVENT\r\n" for e in events
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n"


def test_preview_landline_mobile_and_region(smshub, tmp_path):
    path = tmp_path / "cabinet.ics"
    path.write_text(
        _ics(
            "UID:a\r\nDTSTART:20250402T080000Z\r\nSUMMARY:RDV Anne Roux\r\n"
            "DESCRIPTION:Tel: 01 42 68 53 00",
            "UID:b\r\nDTSTART:20250403T080000Z\r\nSUMMARY:RDV Marc Blanc\r\n"
            "DESCRIPTION:Portable : 0470 12 34 56",
        )
    )
    args = (str(path), "--rule", "1d@10:00", "--now", "2025-03-20T12:00:00Z")
    anne, marc = _preview(smshub, *args)
    assert anne["to"] is None
    assert anne["problem"] == "only a landline number (+33142685300), which cannot receive SMS"
    # 0470… is a Belgian mobile, but a landline in France (the default region).
    assert marc["to"] is None and "landline number (+33470123456)" in marc["problem"]
    _, marc = _preview(smshub, *args, "--region", "BE")
    assert marc["to"] == "+32470123456" and marc["problem"] is None
    assert marc["send_at"] == "2025-04-02T10:00:00+02:00"
    # The title "RDV Marc Blanc" is no name to greet with (issue 17).
    assert marc["text"].startswith("Bonjour, rappel de votre RDV le jeudi 3 avril à 10:00.")


def _publishing(body: bytes) -> BackgroundServer:
    """An HTTP server answering every GET with BODY, a calendar."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return BackgroundServer(Handler)


def test_preview_reads_a_url_and_stores_nothing(smshub, db_url, tmp_path):
    body = (ICS / "google.ics").read_bytes()

    args = ("--rule", "2d@09:00", "--now", "2025-03-20T12:00:00+01:00")
    with _publishing(body) as server:
        # The CLI is the administrator: it may read a server on this machine when it says so.
        from_url = _preview(smshub, f"{server.url}/cal.ics", *args, "--allow-private")
    assert from_url == _preview(smshub, str(ICS / "google.ics"), *args)
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        for table in (Calendar, CalendarEventRow, Message):
            assert s.exec(select(func.count()).select_from(table)).one() == 0
    engine.dispose()
    assert not (tmp_path / "calendars").exists()  # the ICS cache went to a scratch dir


def test_preview_text_output_and_warnings(smshub):
    code, out, err = smshub(
        "calendar", "preview", str(ICS / "malformed.ics"), "--now", "2025-03-01T00:00Z"
    )
    assert code == 0
    assert "2025-03-10T10:00  1d@09:00  send 2025-03-09T09:00  to -" in out
    assert f"NOT SENT: {NO_MOBILE}" in out
    assert "warning:" in err and "broken-start@clinic.example" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rule", "2 days"), "reminder rule '2 days' is not understood"),
        (("--rule", "3h@09:00"), "a time of day goes with days"),
        (("--now", "tomorrow"), "--now 'tomorrow' is not an ISO 8601 time"),
        (("--tz", "Mars/Olympus"), "--tz 'Mars/Olympus' is not a time zone"),
        (("--locale", "xx_YY"), "--locale 'xx_YY' is not a known locale"),
        (("--region", "ZZ"), "--region 'ZZ' is not a country code"),
        (("--quiet", "21:00"), "--quiet '21:00' must be START-END"),
        (("--template", "{{ name"), "the reminder template cannot be used"),
    ],
)
def test_preview_bad_options_are_one_line_errors(smshub, args, message):
    code, out, err = smshub("calendar", "preview", str(ICS / "google.ics"), *args, "--json")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_preview_unreadable_source(smshub, tmp_path):
    code, _, err = smshub("calendar", "preview", str(tmp_path / "missing.ics"))
    assert code == 1 and "cannot read" in err and "missing.ics" in err
    (tmp_path / "page.ics").write_text("<html>login</html>")
    code, _, err = smshub("calendar", "preview", str(tmp_path / "page.ics"))
    assert code == 1 and "is not an ICS calendar" in err


# -- add → sync → reminders list → remove -----------------------------------------------------
def _future_calendar(path: Path) -> None:
    """Three appointments 3, 4 and 5 days ahead at 10:00 Paris, with mobile numbers."""
    today = datetime.now(PARIS).replace(hour=10, minute=0, second=0, microsecond=0)
    events = []
    for n, number in ((3, "06 12 34 56 78"), (4, "06 98 76 54 32"), (5, "07 81 22 33 44")):
        start = (today + timedelta(days=n)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        events.append(f"UID:rdv{n}\r\nDTSTART:{start}\r\nSUMMARY:RDV\r\nDESCRIPTION:Tel: {number}")
    path.write_text(_ics(*events))


@pytest.fixture
def synced(smshub, tmp_path) -> Any:
    """Account acme (20 credits) with calendars cabinet (3 reminders) and other (none)."""
    _future_calendar(tmp_path / "cabinet.ics")
    (tmp_path / "empty.ics").write_text(_ics())
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    assert smshub("accounts", "credit", "acme", "20")[0] == 0
    for name, file in (("cabinet", "cabinet.ics"), ("other", "empty.ics")):
        code, _, err = smshub(
            "calendars", "add", "acme", name, "--type", "ics", "--set", f"url={tmp_path / file}"
        )
        assert code == 0, err
        code, out, err = smshub("calendars", "sync", "acme", name, "--json")
        assert code == 0, err
        assert json.loads(out)["planned"] == (3 if name == "cabinet" else 0)
    return smshub


def test_reminders_list_filters_by_calendar_and_account(synced, smshub):
    code, out, _ = smshub("reminders", "list", "--calendar", "cabinet", "--json")
    assert code == 0
    data = json.loads(out)
    assert [d["to"] for d in data] == ["+33612345678", "+33698765432", "+33781223344"]
    assert {d["calendar"] for d in data} == {"cabinet"} and {d["account"] for d in data} == {"acme"}
    first = data[0]
    assert first["rule"] == "1d@09:00" and first["send_at"].endswith("+00:00")
    assert datetime.fromisoformat(first["send_at"]).astimezone(PARIS).hour == 9
    code, out, _ = smshub("reminders", "list", "--calendar", "other", "--account", "acme", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = smshub("reminders", "list", "--account", "acme", "--limit", "2", "--json")
    assert len(json.loads(out)) == 2
    code, _, err = smshub("reminders", "list", "--calendar", "cabinett")
    assert code == 1 and "no calendar 'cabinett'" in err
    code, out, _ = smshub("reminders", "list", "--calendar", "cabinet")
    assert code == 0 and "SEND AT" in out and "+33698765432" in out
    # Text reads the calendar's own time (reminders at 09:00 Paris, appointments 10:00).
    assert "09:00 Europe/Paris" in out and "10:00 Europe/Paris" in out and "UTC" not in out


def test_reminders_answers_lists_and_filters_in_local_time(synced, smshub, db_url):
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        rows = {e.phone: e for e in s.exec(select(CalendarEventRow)).all()}
        rows["+33612345678"].answer = "confirmed"
        rows["+33698765432"].answer = "cancelled"
    engine.dispose()
    code, out, _ = smshub("reminders", "answers", "--json")
    assert code == 0
    data = json.loads(out)
    assert [(d["phone"], d["answer"]) for d in data] == [
        ("+33612345678", "confirmed"),
        ("+33698765432", "cancelled"),
        ("+33781223344", "unanswered"),
    ]
    assert data[0]["start_local"].endswith("10:00 Europe/Paris")
    code, out, _ = smshub("reminders", "answers", "--answer", "cancelled", "--calendar", "cabinet")
    assert code == 0 and "10:00 Europe/Paris" in out
    assert "+33698765432" in out and "+33612345678" not in out
    code, out, _ = smshub("reminders", "answers", "--answer", "unanswered", "--json")
    assert [d["phone"] for d in json.loads(out)] == ["+33781223344"]
    code, _, err = smshub("reminders", "answers", "--answer", "maybe")
    assert code == 1 and "answer must be one of all, confirmed, cancelled, unanswered" in err


def test_remove_cancels_scheduled_reminders_with_refunds(synced, smshub, db_url):
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        # One reminder was just claimed by a dispatcher: it is going out, not cancellable.
        taken = s.exec(select(Message).where(Message.recipient == "+33781223344")).one()
        taken.status = "submitting"
        s.add(taken)
    code, out, err = smshub("calendars", "remove", "acme", "cabinet", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["action"] == "deleted" and data["credits_refunded"] == 2
    assert [d["to"] for d in data["cancelled"]] == ["+33612345678", "+33698765432"]
    assert [d["to"] for d in data["already_sending"]] == ["+33781223344"]
    assert data["appointments_deleted"] == 3
    with session_scope(engine) as s:
        statuses = sorted(m.status for m in s.exec(select(Message)).all())
        assert statuses == ["cancelled", "cancelled", "submitting"]
        assert s.exec(select(Reminder)).all() == []
        assert s.exec(select(CalendarEventRow)).all() == []
        assert [c.name for c in s.exec(select(Calendar)).all()] == ["other"]
    engine.dispose()
    code, out, _ = smshub("accounts", "show", "acme", "--json")
    assert json.loads(out)["balance"] == 19
    assert smshub("accounts", "check")[0] == 0
    code, _, err = smshub("calendars", "remove", "acme", "cabinet")
    assert code == 1 and "has no calendar 'cabinet'" in err
    # The name is free again.
    code, _, _ = smshub("calendars", "add", "acme", "cabinet", "--type", "ics", "--set", "url=x")
    assert code == 0


def test_remove_keep_history_only_disables(synced, smshub, db_url):
    code, out, _ = smshub("calendars", "remove", "acme", "cabinet", "--keep-history")
    assert code == 0
    assert out.startswith("calendar cabinet of acme disabled: 3 scheduled reminder(s) cancelled")
    assert out.count("  cancelled: ") == 3
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        cal = s.exec(select(Calendar).where(Calendar.name == "cabinet")).one()
        assert cal.enabled is False
        assert len(s.exec(select(CalendarEventRow)).all()) == 3
        reminders = s.exec(select(Reminder)).all()
        assert {(r.status, r.note) for r in reminders} == {
            ("cancelled", "the calendar was removed")
        }
    engine.dispose()
    code, out, _ = smshub("reminders", "list", "--json")
    assert json.loads(out) == []


# -- remove: the files the hub kept for the calendar -------------------------------------------
@pytest.fixture
def ics_http(tmp_path: Path) -> Any:
    """An HTTP server publishing the three future appointments."""
    _future_calendar(tmp_path / "served.ics")
    body = (tmp_path / "served.ics").read_bytes()

    with _publishing(body) as server:
        yield f"{server.url}/private/cabinet.ics"


def _connect_ics(smshub: Any, url: str, name: str, *settings: str) -> None:
    if smshub("accounts", "show", "acme")[0] != 0:
        assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
        assert smshub("accounts", "credit", "acme", "20")[0] == 0
    extra = [arg for setting in settings for arg in ("--set", setting)]
    # The local test server: the administrator's --allow-private (private_ok).
    code, _, err = smshub(
        "calendars",
        "add",
        "acme",
        name,
        "--type",
        "ics",
        f"--set=url={url}",
        *extra,
        *(["--allow-private"] if url.startswith("http") else []),
    )
    assert code == 0, err
    code, out, err = smshub("calendars", "sync", "acme", name, "--json")
    assert code == 0, err
    assert json.loads(out)["planned"] == 3


def _secret(path: Path, value: str = "s3cret") -> Path:
    from hub.reminders.setup import write_secret_file

    path.parent.mkdir(parents=True, exist_ok=True)
    write_secret_file(path, value)
    return path


def test_remove_deletes_the_cached_copy_and_the_hubs_stored_secret(
    smshub, tmp_path, ics_http, db_url, caplog
):
    # A password file the console of an earlier build wrote: moved into the database (and
    # deleted) by the first sync.
    caplog.set_level(logging.INFO, logger="smshub.calendars")
    password = _secret(tmp_path / "secrets" / "ics-1-0123abcd.secret")
    _connect_ics(smshub, ics_http, "cabinet", f"password_file={password}", "username=cab")
    assert not password.exists()
    assert f"moved its password from {password} into the database (encrypted)" in caplog.text
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        (cal,) = s.exec(select(Calendar)).all()
        settings = json.loads(cal.settings)
        [row] = s.exec(select(ConnectorState)).all()
    engine.dispose()
    assert "password_file" not in settings and settings["stored_secrets"] == ["password"]
    assert row.secret and "s3cret" not in row.value
    cached = list((tmp_path / "calendars").glob("*.ics"))
    assert len(cached) == 1  # the last copy fetched: the patients' appointments
    code, out, err = smshub("calendars", "remove", "acme", "cabinet", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["files_deleted"] == [
        {"what": "cached copy of the calendar", "path": str(cached[0])},
    ]
    assert data["stored_entries_deleted"] == 1
    assert data["files_not_deleted"] == [] and data["files_kept"] == []
    assert not cached[0].exists()
    # The calendar file of a local ICS calendar is the administrator's: never touched.
    assert (tmp_path / "served.ics").exists()


def test_remove_text_says_which_files_were_deleted(smshub, tmp_path, ics_http):
    _connect_ics(smshub, ics_http, "cabinet")
    code, out, _ = smshub("calendars", "remove", "acme", "cabinet")
    assert code == 0
    assert "deleted 1 stored file(s) (cached copy of the calendar)" in out
    assert list((tmp_path / "calendars").glob("*.ics")) == []


def test_remove_keep_history_keeps_the_files(smshub, tmp_path, ics_http):
    password = _secret(tmp_path / "ics.secret")
    _connect_ics(smshub, ics_http, "cabinet", f"password_file={password}")
    cached = list((tmp_path / "calendars").glob("*.ics"))
    code, out, _ = smshub("calendars", "remove", "acme", "cabinet", "--keep-history", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["action"] == "disabled"
    assert data["files_deleted"] == data["files_kept"] == data["files_not_deleted"] == []
    assert password.exists() and len(cached) == 1 and cached[0].exists()


def test_remove_never_deletes_files_outside_the_data_dir_or_still_used(
    smshub, tmp_path, tmp_path_factory, ics_http
):
    # The administrator's own file (--set password_file=/etc/...): outside the data dir.
    theirs = _secret(tmp_path_factory.mktemp("etc") / "caldav.password")
    # One refresh token file named by two calendars (two calendars of one account).
    shared = _secret(tmp_path / "google.token")
    _connect_ics(smshub, ics_http, "cabinet", f"password_file={theirs}")
    _connect_ics(smshub, ics_http, "annexe", f"password_file={shared}")
    code, _, err = smshub(
        "calendars", "add", "acme", "agenda", "--type", "google",
        "--set", "client_id=x.apps", "--set", "client_secret_env=GOOGLE_SECRET",
        "--set", f"refresh_token_file={shared}",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = smshub("calendars", "remove", "acme", "cabinet")
    assert code == 0
    assert theirs.exists()
    assert f"kept {theirs} (password): outside the hub's data directory" in out
    code, out, _ = smshub("calendars", "remove", "acme", "annexe", "--json")
    data = json.loads(out)
    assert shared.exists()
    assert data["files_kept"] == [
        {"what": "password", "path": str(shared), "why": "also used by calendar 'agenda' of acme"}
    ]
    assert [f["what"] for f in data["files_deleted"]] == ["cached copy of the calendar"]
    # The last calendar using it goes: the token goes with it.
    code, out, _ = smshub("calendars", "remove", "acme", "agenda", "--json")
    assert json.loads(out)["files_deleted"] == [{"what": "refresh token", "path": str(shared)}]
    assert not shared.exists()


def test_a_file_that_cannot_be_deleted_is_reported_and_the_removal_succeeds(
    smshub, tmp_path, ics_http, db_url, monkeypatch, caplog
):
    _connect_ics(smshub, ics_http, "cabinet")
    (cached,) = (tmp_path / "calendars").glob("*.ics")
    refuse_unlink(monkeypatch, cached)
    code, out, err = smshub("calendars", "remove", "acme", "cabinet")
    assert code == 0, err
    assert f"could not delete {cached} (cached copy of the calendar): Permission denied" in out
    assert f"cannot delete {cached}" in caplog.text
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        assert s.exec(select(Calendar)).all() == []
    engine.dispose()


def test_files_are_deleted_only_once_the_removal_is_committed(smshub, db_url, tmp_path, ics_http):
    from hub.reminders.setup import remove_calendar

    _connect_ics(smshub, ics_http, "cabinet")
    (cached,) = (tmp_path / "calendars").glob("*.ics")
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        calendar_id = s.exec(select(Calendar.id)).one()
    # Rolled back: nothing is lost, the calendar and its cache are still there.
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        report = remove_calendar(s, calendar_id, data_dir=tmp_path)
        raise RuntimeError("the removal fails after the files were planned")
    assert report.files_deleted == [] and cached.exists()
    # Inside a savepoint: not before the outermost transaction commits.
    with session_scope(engine) as s:
        with s.begin_nested():
            report = remove_calendar(s, calendar_id, data_dir=tmp_path)
        assert cached.exists() and report.files_deleted == []
        s.flush()
    assert not cached.exists()
    assert [f["path"] for f in report.files_deleted] == [str(cached)]
    with session_scope(engine) as s:
        assert s.get(Calendar, calendar_id) is None
    engine.dispose()


def _graph_calendar(smshub: Any, tmp_path: Path, graph_fake: Any) -> tuple[Path, dict[str, str]]:
    """A Microsoft calendar 'Outlook' of acme, signed in with `calendars auth microsoft
    --output` into the data directory: (the token file, its settings)."""
    graph_fake.app("public-app", None)
    graph_fake.add_mailbox("cabinet@contoso.example")
    graph_fake.device_user = "cabinet@contoso.example"
    graph_fake.add_event(
        "cabinet@contoso.example",
        "RDV",
        datetime.now(UTC) + timedelta(days=2),
        body="Tel. 06 12 34 56 78",
    )
    token = tmp_path / "secrets" / "outlook.token"
    token.parent.mkdir()
    where = ["--authority", graph_fake.url, "--graph-url", f"{graph_fake.url}/v1.0"]
    code, _, err = smshub(
        "calendars", "auth", "microsoft", "--client-id", "public-app",
        "--ca-file", graph_fake.ca_file, *where, "--output", str(token),
    )  # fmt: skip
    assert code == 0, err
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    assert smshub("accounts", "credit", "acme", "20")[0] == 0
    settings = {
        "client_id": "public-app",
        "refresh_token_file": str(token),
        "authority": graph_fake.url,
        "graph_base_url": f"{graph_fake.url}/v1.0",
        "ca_file": graph_fake.ca_file,
    }
    sets = [arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]
    code, _, err = smshub("calendars", "add", "acme", "Outlook", "--type", "graph", *sets)
    assert code == 0, err
    return token, settings


def _renewed(db_url: str, data_dir: Path) -> dict[str, Any]:
    """What the hub kept of Microsoft's newest token for the (one) calendar."""
    engine = make_engine(db_url)
    try:
        with session_scope(engine) as s:
            calendar_id = s.exec(select(Calendar.id)).one()
        store = state_store(engine, make_config(db_url, data_dir))
        found = store.get_secret(f"calendar-{calendar_id}", "renewed_refresh_token")
    finally:
        engine.dispose()
    assert found is not None
    kept: dict[str, Any] = json.loads(found)
    return kept


def test_remove_deletes_the_refresh_token_and_the_renewed_one_of_a_graph_calendar(
    smshub, tmp_path, graph_fake, db_url
):
    """Signed in, synced (so Microsoft rotated the token and the hub kept the newest), then
    removed."""
    token, _ = _graph_calendar(smshub, tmp_path, graph_fake)
    code, out, err = smshub("calendars", "sync", "acme", "Outlook", "--json")
    assert code == 0, err
    assert json.loads(out)["planned"] == 1
    # The newest token Microsoft handed out is kept in the database, not on this disk.
    assert list((tmp_path / "calendars").glob("graph-*")) == []
    assert _renewed(db_url, tmp_path)["refresh_token"] != token.read_text().strip()

    code, out, err = smshub("calendars", "remove", "acme", "Outlook", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["files_deleted"] == [{"what": "refresh token", "path": str(token)}]
    assert data["stored_entries_deleted"] == 1
    assert not token.exists()
    # The administrator's CA bundle (a *_file setting the hub did not write) stays.
    assert Path(graph_fake.ca_file).exists()


def test_a_renewed_token_named_after_the_calendar_is_moved_on_the_next_sync(
    smshub, tmp_path, graph_fake, db_url, caplog
):
    """A hub before calendar ids kept Microsoft's newest token in a file named after the
    calendar's name: the first sync since moves it into the database (encrypted), deletes
    the file, and uses it."""
    _, settings = _graph_calendar(smshub, tmp_path, graph_fake)
    assert smshub("calendars", "sync", "acme", "Outlook")[0] == 0
    kept = _renewed(db_url, tmp_path)
    newest = kept["refresh_token"]
    # As a hub before ids (and before the database kept it) left it.
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        for row in s.exec(select(ConnectorState)).all():
            s.delete(row)
    engine.dispose()
    old = name_keyed_file(tmp_path, "Outlook", "graph", settings)
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text(json.dumps(kept))
    caplog.set_level(logging.INFO, logger="smshub")
    code, _, err = smshub("calendars", "sync", "acme", "Outlook")
    assert code == 0, err
    assert graph_fake.token_requests[-1]["refresh_token"] == newest
    assert "moved the renewed refresh token from" in caplog.text
    assert list((tmp_path / "calendars").iterdir()) == []
    # Renamed since: still its token (kept under the calendar's id).
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        calendar = s.exec(select(Calendar)).one()
        calendar.name = "Outlook Dr Roux"
        s.add(calendar)
    engine.dispose()
    newest = _renewed(db_url, tmp_path)["refresh_token"]
    assert smshub("calendars", "sync", "acme", "Outlook Dr Roux")[0] == 0
    assert graph_fake.token_requests[-1]["refresh_token"] == newest
    code, out, _ = smshub("calendars", "remove", "acme", "Outlook Dr Roux", "--json")
    assert json.loads(out)["stored_entries_deleted"] == 1
    assert list((tmp_path / "calendars").iterdir()) == []


def test_same_name_in_two_accounts_two_files(smshub, tmp_path, ics_http):
    _connect_ics(smshub, ics_http, "cabinet")
    assert smshub("accounts", "create", "beta", "--region", "FR")[0] == 0
    assert smshub("accounts", "credit", "beta", "20")[0] == 0
    code, _, err = smshub(
        "calendars",
        "add",
        "beta",
        "cabinet",
        "--type",
        "ics",
        f"--set=url={ics_http}",
        "--allow-private",
    )
    assert code == 0, err
    assert smshub("calendars", "sync", "beta", "cabinet")[0] == 0
    cached = sorted((tmp_path / "calendars").glob("*.ics"))
    assert len(cached) == 2
    code, out, _ = smshub("calendars", "remove", "acme", "cabinet", "--json")
    data = json.loads(out)
    assert len(data["files_deleted"]) == 1 and data["files_kept"] == []
    (left,) = (tmp_path / "calendars").glob("*.ics")
    assert left in cached and left != Path(data["files_deleted"][0]["path"])


def test_remove_also_deletes_a_file_named_after_the_calendar(smshub, tmp_path, ics_http):
    """One a hub before calendar ids left (the calendar not synced since)."""
    _connect_ics(smshub, ics_http, "cabinet")
    (cached,) = (tmp_path / "calendars").glob("*.ics")
    old = name_keyed_file(tmp_path, "cabinet", "ics", {"url": ics_http})
    old.write_bytes(cached.read_bytes())
    code, out, _ = smshub("calendars", "remove", "acme", "cabinet", "--json")
    assert code == 0
    assert [f["path"] for f in json.loads(out)["files_deleted"]] == [str(cached), str(old)]
    assert list((tmp_path / "calendars").iterdir()) == []


# -- auth -----------------------------------------------------------------------------------
def test_auth_help(smshub):
    for provider, words in (("google", "--no-browser"), ("microsoft", "--tenant")):
        code, out, _ = smshub("calendars", "auth", provider, "--help")
        assert code == 0 and "refresh token" in out and words in out and "--output" in out
    code, out, _ = smshub("calendars", "auth", "--help")
    assert code == 0 and "google" in out and "microsoft" in out


def test_auth_missing_options_are_clear(smshub, monkeypatch, tmp_path):
    code, _, err = smshub("calendars", "auth", "google")
    assert code == 2 and "Missing option '--client-id'" in err
    code, _, err = smshub("calendars", "auth", "microsoft")
    assert code == 2 and "Missing option '--client-id'" in err
    code, _, err = smshub("calendars", "auth", "google", "--client-id", "x.apps")
    assert code == 1 and "--client-secret-env NAME" in err and "--client-secret-file" in err
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    code, _, err = smshub(
        "calendars", "auth", "google", "--client-id", "x", "--client-secret-env", "NO_SUCH_SECRET"
    )
    assert code != 0 and "NO_SUCH_SECRET" in err
    monkeypatch.setenv("GOOGLE_SECRET", "s3cret")
    code, _, err = smshub(
        "calendars",
        "auth",
        "google",
        "--client-id",
        "x",
        "--client-secret-env",
        "GOOGLE_SECRET",
        "--output",
        str(tmp_path / "nowhere" / "token"),
    )
    assert code == 1 and "does not exist" in err


def test_auth_google_stores_the_token_owner_only(smshub, monkeypatch, tmp_path):
    import connectors.calendar.google as google

    seen: dict[str, Any] = {}

    def fake_login(client_id: str, client_secret: str, **kwargs: Any) -> str:
        seen.update(client_id=client_id, client_secret=client_secret, **kwargs)
        kwargs["show"]("Open this address: https://accounts.google.com/…")
        return "1//refresh-token"

    monkeypatch.setattr(google, "installed_app_login", fake_login)
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    target = tmp_path / "google.token"
    target.write_text("old")
    target.chmod(0o644)
    code, out, err = smshub(
        "calendars",
        "auth",
        "google",
        "--client-id",
        "123.apps.googleusercontent.com",
        "--client-secret-file",
        str(secret),
        "--no-browser",
        "--port",
        "8765",
        "--read-only",
        "--output",
        str(target),
    )
    assert code == 0, err
    assert target.read_text() == "1//refresh-token\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "refresh_token_file=" in out and "1//refresh-token" not in out
    assert "Open this address" in err
    assert seen["client_secret"] == "s3cret" and seen["open_browser"] is False
    assert seen["port"] == 8765 and seen["read_only"] is True


def test_auth_microsoft_prints_the_token_and_reports_failures(smshub, monkeypatch):
    import connectors.calendar.graph as graph
    from hub.errors import SourceError

    seen: dict[str, Any] = {}

    def fake_login(client_id: str, **kwargs: Any) -> str:
        seen.update(client_id=client_id, **kwargs)
        kwargs["show"]("To sign in, open https://microsoft.com/devicelogin and enter ABCD1234")
        return "M.R3_BAY.token"

    monkeypatch.setattr(graph, "device_code_login", fake_login)
    code, out, err = smshub(
        "calendars", "auth", "microsoft", "--client-id", "app-id", "--tenant", "contoso.fr"
    )
    assert code == 0
    assert out == "M.R3_BAY.token\n"  # alone on stdout: `$(smshub calendars auth …)` works
    assert "ABCD1234" in err
    assert seen["tenant_id"] == "contoso.fr" and "authority" not in seen

    def refused(client_id: str, **kwargs: Any) -> str:
        raise SourceError("the sign-in did not complete: AADSTS70016 expired")

    monkeypatch.setattr(graph, "device_code_login", refused)
    code, out, err = smshub("calendars", "auth", "microsoft", "--client-id", "app-id")
    assert code == 1 and out == ""
    assert err == "error: the sign-in did not complete: AADSTS70016 expired\n"


def test_settings_a_source_refuses_are_recorded_on_the_calendar(smshub, ics_http, db_url):
    # Settings stored by an older hub may no longer pass the source's checks: the sync says
    # so like any other error, and the calendar shows it.
    _connect_ics(smshub, ics_http, "cabinet")
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        calendar = s.exec(select(Calendar)).one()
        calendar.settings = json.dumps({"url": ics_http, "colour": "blue"})
        s.add(calendar)
    code, _, err = smshub("calendars", "sync", "acme", "cabinet")
    assert code != 0 and "could not be read" in err and "colour" in err
    with session_scope(engine) as s:
        assert "colour" in s.exec(select(Calendar)).one().last_error
    engine.dispose()
