"""The ICS calendar source: real-world exports, recurrences, time zones, HTTP, bad input."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.calendar.ics import IcsSettings, IcsSource, expand_events, read_calendar
from hub.errors import SourceError
from hub.ports.calendar import (
    CalendarEvent,
    CalendarSource,
    EventStatus,
    SourceContext,
    StateFile,
    SyncResult,
    SyncWindow,
    move_name_keyed_files,
)
from tests.servers._util import BackgroundServer

DATA = Path(__file__).parent / "data" / "ics"
PARIS = ZoneInfo("Europe/Paris")
MARCH = SyncWindow(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC))
AUTUMN = SyncWindow(datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC))

KINE = "6kq3c1r8d9ffm0v2lq3ot4bq5u@google.com"
DENTIST = "2b9r3l0hq4m8a7c6s5e1u0t9k8@google.com"
CLOSED = "0a1b2c3d4e5f6g7h8i9j0k1l2m@google.com"
STANDUP = "9z8y7x6w5v4u3t2s1r0q9p8o7n@google.com"
OSTEO = "5c4n3c3l3d2e1v0e9n8t7x6y5z@google.com"


def source(url: str | Path, tmp_path: Path, **extra: object) -> IcsSource:
    # The test servers run on 127.0.0.1: allowed as the hub administrator allows a calendar
    # server on their own network (tests/security/ checks what happens without it).
    settings = IcsSettings.model_validate(
        {"type": "ics", "url": str(url), "private_ok": True, **extra}
    )
    return IcsSource(settings, SourceContext("test", tmp_path / "data"))


async def sync_file(
    name: str, tmp_path: Path, window: SyncWindow = MARCH, **extra: object
) -> SyncResult:
    src = source(name if "/" in name else DATA / name, tmp_path, **extra)
    try:
        return await src.sync(window, None)
    finally:
        await src.close()


def by_key(events: list[CalendarEvent]) -> dict[tuple[str, str], CalendarEvent]:
    keys = [e.key for e in events]
    assert len(keys) == len(set(keys)), f"duplicate occurrence keys: {keys}"
    return {e.key: e for e in events}


def local(event: CalendarEvent) -> datetime:
    return event.start.astimezone(ZoneInfo(event.timezone))


# ---- a Google Calendar export -------------------------------------------------------------


async def test_google_export_recurring_series(tmp_path: Path) -> None:
    result = await sync_file("google.ics", tmp_path)
    assert result.full and result.warnings == [] and result.removed == []
    series = {e.occurrence: e for e in result.events if e.uid == KINE}
    # Weekly on Mondays 09:00 Paris, COUNT=8 from 3 March; 17 March is an EXDATE.
    assert sorted(series) == [
        "2025-03-03T08:00:00Z",
        "2025-03-10T08:00:00Z",
        "2025-03-24T08:00:00Z",
        "2025-03-31T07:00:00Z",
        "2025-04-07T07:00:00Z",
        "2025-04-14T07:00:00Z",
        "2025-04-21T07:00:00Z",
    ]
    # DST started on 30 March: still 09:00 local, one hour earlier in UTC.
    for key in ("2025-03-03T08:00:00Z", "2025-03-31T07:00:00Z", "2025-04-21T07:00:00Z"):
        event = series[key]
        assert event.timezone == "Europe/Paris"
        assert local(event).time().isoformat() == "09:00:00"
        assert event.end is not None and event.end - event.start == timedelta(minutes=30)
        assert event.status is EventStatus.CONFIRMED
    assert series["2025-03-03T08:00:00Z"].start == datetime(2025, 3, 3, 8, tzinfo=UTC)
    assert series["2025-03-31T07:00:00Z"].start == datetime(2025, 3, 31, 7, tzinfo=UTC)

    # The moved occurrence keeps the key of its original start and gets its new time.
    moved = series["2025-03-24T08:00:00Z"]
    assert moved.start == datetime(2025, 3, 25, 14, tzinfo=PARIS)
    assert moved.description == "Déplacé au mardi (jour férié du cabinet)."
    # Google marks a cancelled occurrence with an override whose STATUS is CANCELLED.
    assert series["2025-04-07T07:00:00Z"].status is EventStatus.CANCELLED
    assert series["2025-04-07T07:00:00Z"].start == datetime(2025, 4, 7, 9, tzinfo=PARIS)

    first = series["2025-03-03T08:00:00Z"]
    assert first.title == "Kiné — Jeanne Durand"
    assert first.location == "Cabinet Durand, 12 rue de la Paix, 75002 Paris"
    assert first.description.startswith("Séance de kinésithérapie hebdomadaire. Apporter")
    assert "l'ordonnance et la carte Vitale. Tél. patient : +33 6 12 34 56 78" in first.description
    assert [(a.email, a.name) for a in first.attendees] == [
        ("jeanne.durand@example.org", "Jeanne Durand")
    ]
    assert first.etag and first.etag != series["2025-03-10T08:00:00Z"].etag


async def test_google_export_single_all_day_and_cancelled(tmp_path: Path) -> None:
    events = by_key((await sync_file("google.ics", tmp_path)).events)
    dentist = events[DENTIST, ""]
    # A UTC time in a calendar whose zone is Europe/Paris: shown in Paris.
    assert dentist.start == datetime(2025, 3, 12, 13, tzinfo=UTC)
    assert dentist.timezone == "Europe/Paris" and local(dentist).hour == 14
    assert not dentist.all_day and dentist.status is EventStatus.CONFIRMED
    assert [(a.email, a.name) for a in dentist.attendees] == [
        ("paul.martin@example.com", "Paul Martin"),
        ("cabinet.durand@example.fr", "cabinet.durand@example.fr"),
    ]

    closed = events[CLOSED, ""]
    assert closed.all_day
    assert closed.start == datetime(2025, 3, 14, tzinfo=PARIS)
    assert closed.start.utcoffset() == timedelta(hours=1)
    assert closed.end == datetime(2025, 3, 15, tzinfo=PARIS)

    assert events[OSTEO, ""].status is EventStatus.CANCELLED


async def test_x_wr_timezone_rebases_utc_recurrences(tmp_path: Path) -> None:
    """Google writes some series in UTC: X-WR-TIMEZONE keeps them at 09:00 local over DST."""
    events = (await sync_file("google.ics", tmp_path)).events
    standup = [e for e in events if e.uid == STANDUP]
    assert [e.occurrence for e in standup] == [
        "2025-03-27T08:00:00Z",
        "2025-03-28T08:00:00Z",
        "2025-03-29T08:00:00Z",
        "2025-03-30T07:00:00Z",
        "2025-03-31T07:00:00Z",
    ]
    assert {local(e).time().isoformat() for e in standup} == {"09:00:00"}


# ---- an Outlook export ----------------------------------------------------------------------


async def test_outlook_export_windows_time_zone(tmp_path: Path) -> None:
    result = await sync_file("outlook.ics", tmp_path, AUTUMN)
    assert result.warnings == []
    series = [e for e in result.events if e.title == "Orthophonie — Léa Petit"]
    # "Romance Standard Time" is Europe/Paris; 13 October is an EXDATE; DST ended 26 October.
    assert [e.occurrence for e in series] == [
        "2025-10-06T07:00:00Z",
        "2025-10-20T07:00:00Z",
        "2025-10-27T08:00:00Z",
        "2025-11-03T08:00:00Z",
        "2025-11-10T08:00:00Z",
    ]
    for event in series:
        assert event.timezone == "Europe/Paris"
        assert local(event).time().isoformat() == "09:00:00"
        assert event.end is not None and event.end - event.start == timedelta(minutes=45)
    assert series[0].uid.startswith("040000008200E00074C5B7101A82E008")
    assert series[0].uid.endswith("1F2E3D4C5B6A79880716253443526170")  # unfolded


async def test_event_crossing_the_dst_change(tmp_path: Path) -> None:
    """22:00 to 04:00 on the night clocks go back: seven hours, both ends in local time."""
    events = (await sync_file("outlook.ics", tmp_path, AUTUMN)).events
    (night,) = [e for e in events if e.title.startswith("Garde de nuit")]
    assert night.occurrence == ""
    assert night.start == datetime(2025, 10, 25, 22, tzinfo=PARIS)
    assert night.start.utcoffset() == timedelta(hours=2)
    assert night.end is not None
    assert night.end.astimezone(PARIS).replace(tzinfo=None) == datetime(2025, 10, 26, 4)
    assert night.end.utcoffset() == timedelta(hours=1)
    # (Subtracting two datetimes of the same zone gives wall-clock time: compare in UTC.)
    assert night.end.astimezone(UTC) - night.start.astimezone(UTC) == timedelta(hours=7)


async def test_outlook_all_day_uses_its_only_time_zone(tmp_path: Path) -> None:
    events = (await sync_file("outlook.ics", tmp_path, AUTUMN)).events
    (holiday,) = [e for e in events if e.all_day]
    assert holiday.start == datetime(2025, 11, 1, tzinfo=PARIS)
    assert holiday.timezone == "Europe/Paris"


# ---- floating times and the timezone setting ---------------------------------------------


async def test_floating_times_use_the_timezone_setting(tmp_path: Path) -> None:
    result = await sync_file("floating.ics", tmp_path, timezone="America/New_York")
    events = by_key(result.events)
    weekly = [e for e in result.events if e.uid == "floating-weekly@clinic.example"]
    # New York's DST started 9 March: 09:00 EDT is 13:00 UTC.
    assert [e.occurrence for e in weekly] == [
        "2025-03-24T13:00:00Z",
        "2025-03-31T13:00:00Z",
        "2025-04-07T13:00:00Z",
    ]
    assert {local(e).time().isoformat() for e in weekly} == {"09:00:00"}
    utc = events["utc-single@clinic.example", ""]
    assert utc.start == datetime(2025, 3, 26, 15, tzinfo=UTC)
    assert utc.timezone == "America/New_York"


async def test_floating_times_default_to_utc(tmp_path: Path) -> None:
    events = (await sync_file("floating.ics", tmp_path)).events
    first = events[0]
    assert first.start == datetime(2025, 3, 24, 9, tzinfo=UTC) and first.timezone == "UTC"


# ---- windows --------------------------------------------------------------------------------


async def test_only_occurrences_overlapping_the_window(tmp_path: Path) -> None:
    window = SyncWindow(
        datetime(2025, 3, 10, 8, 15, tzinfo=UTC), datetime(2025, 3, 14, tzinfo=PARIS)
    )
    events = (await sync_file("google.ics", tmp_path, window)).events
    # The 10 March session (08:00-08:30 UTC) overlaps the start; the all-day event of
    # 14 March starts exactly at the end and is out.
    assert [e.key for e in events] == [(KINE, "2025-03-10T08:00:00Z"), (DENTIST, "")]


# ---- bad input --------------------------------------------------------------------------------


async def test_malformed_events_are_skipped_with_warnings(tmp_path: Path) -> None:
    result = await sync_file("malformed.ics", tmp_path)
    assert [e.uid for e in result.events] == [
        "good-1@clinic.example",
        "good-2@clinic.example",
        "unknown-zone@clinic.example",
    ]
    where = str(DATA / "malformed.ics")
    assert result.warnings == [
        f"{where}: event 'broken-start@clinic.example' (line 12) skipped: "
        "DTSTART: Wrong datetime format: 2025-03-11 10:00",
        f"{where}: event 'no-start@clinic.example' (line 18) skipped: it has no DTSTART",
        f"{where}: event 'bad-rule@clinic.example' (line 23) skipped: "
        "RRULE: Expected frequency, got: SOMETIMES",
        f"{where}: event 'good-2@clinic.example' (line 30): ignored a line: Content line could "
        "not be parsed into parts: 'THIS LINE IS NOT A PROPERTY': Invalid content line",
        f"{where}: event 'unknown-zone@clinic.example' (line 38): unknown time zone "
        "'Mars/Olympus_Mons', read as Europe/Paris",
    ]
    unknown = result.events[2]
    assert unknown.start == datetime(2025, 3, 14, 11, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "it is empty"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "it starts with '<!DOCTYPE html>"),
        (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jeanne\r\nEND:VCARD\r\n", "instead of BEGIN:VCALENDAR"),
        (
            b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\n",
            "ends without END:VCALENDAR (cut short?)",
        ),
    ],
)
async def test_not_a_calendar(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "export.ics"
    path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        await sync_file(str(path), tmp_path)
    assert str(info.value).startswith(f"{path} is not an ICS calendar: ")
    assert reason in str(info.value)


async def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"cannot read .*nowhere\.ics: No such file"):
        await sync_file(str(tmp_path / "nowhere.ics"), tmp_path)


async def test_unchanged_file_is_a_delta(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    shutil.copy(DATA / "google.ics", path)
    src = source(path, tmp_path)
    first = await src.sync(MARCH, None)
    again = await src.sync(MARCH, first.cursor)
    assert again.events == [] and not again.full and again.cursor == first.cursor
    path.write_bytes(path.read_bytes().replace(b"Dentiste", b"Orthodontiste"))
    changed = await src.sync(MARCH, again.cursor)
    assert changed.full and by_key(changed.events)[DENTIST, ""].title.startswith("Orthodontiste")


def test_settings() -> None:
    ok = IcsSettings.model_validate(
        {"type": "ics", "url": "webcal://example.org/c.ics", "timezone": "Romance Standard Time"}
    )
    assert ok.timezone == "Europe/Paris"
    src = IcsSource(ok, SourceContext("x", Path("/nonexistent")))
    assert src.url == "https://example.org/c.ics"
    assert isinstance(src, CalendarSource)
    with pytest.raises(ValidationError, match="unknown time zone 'Paris'"):
        IcsSettings.model_validate({"type": "ics", "url": "/a.ics", "timezone": "Paris"})
    with pytest.raises(ValidationError, match="unsupported URL scheme 'ftp'"):
        IcsSettings.model_validate({"type": "ics", "url": "ftp://example.org/a.ics"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        IcsSettings.model_validate({"type": "ics", "url": "/a.ics", "user": "me"})


async def test_annotate_is_not_possible(tmp_path: Path) -> None:
    src = source(DATA / "google.ics", tmp_path)
    event = (await src.sync(MARCH, None)).events[0]
    assert await src.annotate(event, "confirmed") is False


# ---- over HTTP --------------------------------------------------------------------------------


@dataclass
class IcsServer:
    """A stdlib HTTP server publishing one ICS body, with ETag and Last-Modified."""

    body: bytes
    content_type: str = "text/calendar; charset=utf-8"
    status: int = 200
    credentials: tuple[str, str] | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/calendar/private-3f9a/basic.ics"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@pytest.fixture
def ics_server() -> Iterator[IcsServer]:
    state = IcsServer(body=(DATA / "google.ics").read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.requests.append({k.lower(): v for k, v in self.headers.items()})
            if state.credentials is not None:
                import base64

                user, password = state.credentials
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {token}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="calendar"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            if state.status != 200:
                self.send_response(state.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.headers.get("If-None-Match") == state.etag:
                self.send_response(304)
                self.send_header("ETag", state.etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", state.content_type)
            self.send_header("ETag", state.etag)
            self.send_header("Last-Modified", "Sat, 01 Mar 2025 10:15:00 GMT")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with BackgroundServer(Handler) as server:
        state.port = server.port
        yield state


async def test_http_conditional_get(ics_server: IcsServer, tmp_path: Path) -> None:
    src = source(ics_server.url, tmp_path)
    try:
        first = await src.sync(MARCH, None)
        assert first.full and len(first.events) == 15
        assert "if-none-match" not in ics_server.requests[0]

        # Unchanged: a 304, and a delta with nothing in it.
        second = await src.sync(MARCH, first.cursor)
        assert ics_server.requests[1]["if-none-match"] == ics_server.etag
        assert ics_server.requests[1]["if-modified-since"] == "Sat, 01 Mar 2025 10:15:00 GMT"
        assert second == SyncResult(events=[], full=False, cursor=first.cursor)

        # Still unchanged, but the window moved on by a week: the occurrences that entered
        # it (and only those) are in the delta.
        later = SyncWindow(MARCH.start + timedelta(days=7), MARCH.end + timedelta(days=7))
        third = await src.sync(later, second.cursor)
        # (Both series ended before 1 May: nothing new; the next test has some.)
        assert len(ics_server.requests) == 3
        assert third.events == [] and not third.full and third.cursor != second.cursor

        # Changed: a full listing again.
        ics_server.body = ics_server.body.replace(b"Dentiste", b"Orthodontiste")
        fourth = await src.sync(later, third.cursor)
        assert fourth.full and by_key(fourth.events)[DENTIST, ""].title.startswith("Orthodon")
    finally:
        await src.close()


async def test_state_files_are_where_the_cache_is_kept(
    ics_server: IcsServer, tmp_path: Path
) -> None:
    src = source(ics_server.url, tmp_path)
    try:
        await src.sync(MARCH, None)
    finally:
        await src.close()
    cached = list((tmp_path / "data" / "calendars").iterdir())
    listed = IcsSource.state_files(src.settings, src.ctx)
    assert [f.path for f in listed] == [cached[0], cached[0].with_suffix(".tmp")]
    assert {f.what for f in listed} == {"cached copy of the calendar"}
    # The name of existing caches does not change: readable name, digest of name and URL.
    tag = hashlib.sha256(f"test\n{ics_server.url}".encode()).hexdigest()[:10]
    assert cached == [tmp_path / "data" / "calendars" / f"test-{tag}.ics"]
    # webcal:// is fetched as https://, and cached under that URL.
    webcal = IcsSettings.model_validate({"type": "ics", "url": "webcal://cal.example/a.ics"})
    ctx = SourceContext("calendar 'Dr. Roux'", tmp_path)
    tag = hashlib.sha256(b"calendar 'Dr. Roux'\nhttps://cal.example/a.ics").hexdigest()[:10]
    expected = tmp_path / "calendars" / f"calendar_Dr._Roux-{tag}.ics"
    assert IcsSource.state_files(webcal, ctx)[0].path == expected
    assert IcsSource(webcal, ctx)._cache == expected


async def test_a_stored_calendar_keeps_its_cache_under_its_id_whatever_its_name(
    ics_server: IcsServer, tmp_path: Path
) -> None:
    settings = IcsSettings.model_validate(
        {"type": "ics", "url": ics_server.url, "private_ok": True}
    )
    data = tmp_path / "data"

    async def synced(name: str, calendar_id: int, cursor: str | None) -> SyncResult:
        src = IcsSource(settings, SourceContext(name, data, calendar_id=calendar_id))
        try:
            return await src.sync(MARCH, cursor)
        finally:
            await src.close()

    first = await synced("calendar 'Cabinet'", 7, None)
    (cached,) = (data / "calendars").iterdir()
    tag = hashlib.sha256(f"calendar-7\n{ics_server.url}".encode()).hexdigest()[:10]
    assert cached.name == f"calendar-7-{tag}.ics"
    # Renamed: the same copy, so a 304 is enough.
    renamed = await synced("calendar 'Cabinet Durand'", 7, first.cursor)
    assert ics_server.requests[-1]["if-none-match"] == ics_server.etag
    assert not renamed.full and list((data / "calendars").iterdir()) == [cached]
    # Another calendar of that name (another account), same URL: its own copy.
    other = await synced("calendar 'Cabinet'", 8, None)
    assert other.full and len(list((data / "calendars").glob("*.ics"))) == 2


async def test_a_cache_named_after_the_calendar_moves_under_its_id(
    ics_server: IcsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = IcsSettings.model_validate(
        {"type": "ics", "url": ics_server.url, "private_ok": True}
    )
    before = SourceContext("calendar 'Cabinet'", tmp_path)  # as hubs before calendar ids
    src = IcsSource(settings, before)
    try:
        first = await src.sync(MARCH, None)
    finally:
        await src.close()
    (old,) = (tmp_path / "calendars").iterdir()

    def listed(ctx: SourceContext) -> list[StateFile]:
        return IcsSource.state_files(settings, ctx)

    assert move_name_keyed_files(before, listed) == []  # no id: nothing to move
    now = SourceContext("calendar 'Cabinet'", tmp_path, calendar_id=3)
    with caplog.at_level(logging.INFO, logger="smshub.calendars"):
        [(moved, new)] = move_name_keyed_files(now, listed)
    assert (moved, new) == (old, listed(now)[0].path) and not old.exists() and new.exists()
    assert f"calendar 'Cabinet': moved its cached copy of the calendar from {old} to {new}" in (
        caplog.text
    )
    assert move_name_keyed_files(now, listed) == []  # once
    src = IcsSource(settings, now)
    try:
        second = await src.sync(MARCH, first.cursor)
    finally:
        await src.close()
    assert ics_server.requests[-1]["if-none-match"] == ics_server.etag and not second.full
    # Both there (an old copy came back): the one named after the id wins, the other stays.
    old.write_bytes(b"stale")
    assert move_name_keyed_files(now, listed) == [] and new.read_bytes() == ics_server.body


def test_a_local_file_keeps_no_state(tmp_path: Path) -> None:
    for url in (str(DATA / "google.ics"), (DATA / "google.ics").as_uri()):
        settings = IcsSettings.model_validate({"type": "ics", "url": url})
        assert IcsSource.state_files(settings, SourceContext("test", tmp_path)) == []


async def test_window_moving_onto_new_occurrences_of_an_unchanged_file(
    ics_server: IcsServer, tmp_path: Path
) -> None:
    src = source(ics_server.url, tmp_path)
    try:
        early = SyncWindow(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 20, tzinfo=UTC))
        first = await src.sync(early, None)
        assert (KINE, "2025-03-24T08:00:00Z") not in by_key(first.events)
        later = SyncWindow(datetime(2025, 3, 8, tzinfo=UTC), datetime(2025, 3, 29, tzinfo=UTC))
        delta = await src.sync(later, first.cursor)
        assert not delta.full and delta.removed == []
        assert [e.key for e in delta.events] == [
            (KINE, "2025-03-24T08:00:00Z"),  # moved to the 25th, still in
            (STANDUP, "2025-03-27T08:00:00Z"),
            (STANDUP, "2025-03-28T08:00:00Z"),
        ]
    finally:
        await src.close()


async def test_304_without_the_cached_file_fetches_it_again(
    ics_server: IcsServer, tmp_path: Path
) -> None:
    src = source(ics_server.url, tmp_path)
    first = await src.sync(MARCH, None)
    await src.close()
    # Another machine (or a wiped data dir): the cursor alone cannot answer a 304.
    other = source(ics_server.url, tmp_path / "elsewhere")
    try:
        result = await other.sync(MARCH, first.cursor)
    finally:
        await other.close()
    assert "if-none-match" not in ics_server.requests[1]
    # The same file: reported as unchanged.
    assert result.events == [] and not result.full


async def test_http_errors(ics_server: IcsServer, tmp_path: Path) -> None:
    shown = ics_server.url
    ics_server.status = 404
    with pytest.raises(SourceError) as info:
        await sync_file(ics_server.url, tmp_path)
    assert str(info.value) == (
        f"{shown} was not found (404 Not Found): check the URL (was the link reset?)"
    )
    ics_server.status = 503
    with pytest.raises(SourceError, match=r"answered 503 Service Unavailable$"):
        await sync_file(ics_server.url, tmp_path)


async def test_http_basic_auth(
    ics_server: IcsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ics_server.credentials = ("accueil", "s3cret")
    monkeypatch.setenv("ICS_PASSWORD", "wrong")
    with pytest.raises(SourceError, match=r"refused access \(401 Unauthorized\): check username"):
        await sync_file(ics_server.url, tmp_path, username="accueil", password_env="ICS_PASSWORD")
    with pytest.raises(SourceError, match=r"needs a username and password"):
        await sync_file(ics_server.url, tmp_path)
    monkeypatch.setenv("ICS_PASSWORD", "s3cret")
    result = await sync_file(
        ics_server.url, tmp_path, username="accueil", password_env="ICS_PASSWORD"
    )
    assert len(result.events) == 15


async def test_http_login_page_instead_of_calendar(ics_server: IcsServer, tmp_path: Path) -> None:
    ics_server.body = b"<html><body><form>Sign in</form></body></html>"
    ics_server.content_type = "text/html; charset=utf-8"
    with pytest.raises(SourceError, match=r"is not an ICS calendar: the server sent a web page"):
        await sync_file(ics_server.url, tmp_path)


async def test_unreachable_server(tmp_path: Path) -> None:
    from tests.servers._util import free_port

    url = f"http://127.0.0.1:{free_port()}/cal.ics"
    with pytest.raises(SourceError, match=r"^cannot fetch http://127\.0\.0\.1:\d+/cal\.ics: "):
        await sync_file(url, tmp_path)


# ---- recurrence against dateutil ----------------------------------------------------------

ZONES = ["Europe/Paris", "America/New_York", "Australia/Sydney", "UTC"]
WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


@st.composite
def series(draw: st.DrawFn) -> dict[str, object]:
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)))
    # Office hours: never inside a DST gap or overlap, where libraries may legitimately differ.
    start = datetime.combine(day, datetime.min.time()).replace(
        hour=draw(st.integers(7, 19)), minute=draw(st.sampled_from([0, 15, 30, 45]))
    )
    freq = draw(st.sampled_from(["DAILY", "WEEKLY"]))
    byday = (
        draw(st.lists(st.sampled_from(WEEKDAYS), min_size=0, max_size=3, unique=True))
        if freq == "WEEKLY" and draw(st.booleans())
        else []
    )
    if byday and WEEKDAYS[start.weekday()] not in byday:
        # RFC 5545 leaves a DTSTART that the rule does not produce undefined.
        byday.append(WEEKDAYS[start.weekday()])
    return {
        "zone": zone,
        "start": start,
        "freq": freq,
        "interval": draw(st.integers(1, 3)),
        "count": draw(st.integers(1, 40)),
        "byday": byday,
        "window_from": draw(st.integers(-10, 120)),
        "window_days": draw(st.integers(1, 150)),
    }


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series())
def test_recurrence_matches_dateutil(case: dict[str, object]) -> None:
    zone = str(case["zone"])
    start = case["start"]
    assert isinstance(start, datetime)
    byday = list(case["byday"])  # type: ignore[call-overload]
    rule = f"FREQ={case['freq']};INTERVAL={case['interval']};COUNT={case['count']}"
    if byday:
        rule += ";BYDAY=" + ",".join(byday)
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:prop@test\r\nDTSTAMP:20200101T000000Z\r\n"
        f"DTSTART;TZID={zone}:{start:%Y%m%dT%H%M%S}\r\nDURATION:PT30M\r\n"
        f"RRULE:{rule}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    tz = ZoneInfo(zone)
    origin = start.replace(tzinfo=tz)
    window_start = origin + timedelta(days=int(case["window_from"]))  # type: ignore[call-overload]
    window = SyncWindow(
        window_start,
        window_start + timedelta(days=int(case["window_days"])),  # type: ignore[call-overload]
    )

    expected_rule = rrule.rrule(
        {"DAILY": rrule.DAILY, "WEEKLY": rrule.WEEKLY}[str(case["freq"])],
        dtstart=start,
        interval=int(case["interval"]),  # type: ignore[call-overload]
        count=int(case["count"]),  # type: ignore[call-overload]
        byweekday=[getattr(rrule, d) for d in byday] or None,
    )
    expected = []
    for naive in expected_rule:
        begins = naive.replace(tzinfo=tz)
        if begins + timedelta(minutes=30) > window.start and begins < window.end:
            key = begins.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            expected.append((key, begins.astimezone(UTC)))

    events, warnings = expand_events(
        read_calendar(ics, "property test"), window, where="property test"
    )
    assert warnings == []
    assert [(e.occurrence, e.start.astimezone(UTC)) for e in events] == expected
    assert all(e.timezone == zone and e.start.astimezone(tz).time() == start.time() for e in events)


NO_UID = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//published//EN
BEGIN:VEVENT
DTSTART:20250310T090000Z
DTEND:20250310T093000Z
SUMMARY:Kiné 0612345678
RRULE:FREQ=WEEKLY;COUNT=3
END:VEVENT
BEGIN:VEVENT
DTSTART:20250311T090000Z
SUMMARY:Dentiste 0698765432
END:VEVENT
BEGIN:VEVENT
DTSTART:20250311T090000Z
SUMMARY:Dentiste 0698765432
END:VEVENT
END:VCALENDAR
"""


def test_events_without_uid_get_a_stable_identity() -> None:
    """Published files often lack UIDs: such events still get reminders, and the same file
    read again gives them the same identities (so reconciliation sees no change)."""
    first, warnings = expand_events(read_calendar(NO_UID, "test.ics"), MARCH, where="test.ics")
    again, _ = expand_events(read_calendar(NO_UID, "test.ics"), MARCH, where="test.ics")
    assert len(first) == 5  # three weekly occurrences and two same-looking events
    assert [(e.uid, e.occurrence) for e in first] == [(e.uid, e.occurrence) for e in again]
    assert len({e.uid for e in first}) == 3
    assert all(e.uid.startswith("derived-") for e in first)
    assert sum("identified as 'derived-" in w for w in warnings) == 3
    moved = NO_UID.replace("20250310T090000Z", "20250317T100000Z", 1)
    after, _ = expand_events(read_calendar(moved, "test.ics"), MARCH, where="test.ics")
    assert {e.uid for e in after} - {e.uid for e in first}  # a move is a new identity
