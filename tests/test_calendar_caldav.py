"""The CalDAV calendar source against a real Radicale: full listings, deltas, annotations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.calendar.caldav import CalDavSettings, CalDavSource, _State
from hub.errors import CursorExpired, SourceError
from hub.ports.calendar import (
    CalendarEvent,
    CalendarSource,
    EventStatus,
    Removed,
    SourceContext,
    SyncWindow,
)
from tests.servers._util import free_port
from tests.servers.radicale import RadicaleServer, radicale_fixture  # noqa: F401

PARIS = ZoneInfo("Europe/Paris")
WINDOW = SyncWindow(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 15, tzinfo=UTC))


def vcalendar(*vevents: str) -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{v.strip()}\r\nEND:VEVENT\r\n" for v in vevents)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//smshub tests//EN\r\n{body}END:VCALENDAR\r\n"
    )


def lines(*items: str) -> str:
    return "\r\n".join(items)


DENTIST = vcalendar(
    lines(
        "UID:dentist-1@clinic.example",
        "DTSTAMP:20250301T000000Z",
        "DTSTART;TZID=Europe/Paris:20250312T140000",
        "DTEND;TZID=Europe/Paris:20250312T143000",
        "SUMMARY:Dentiste — Paul Martin",
        "LOCATION:Salle 2",
        "ATTENDEE;CN=Paul Martin:mailto:paul.martin@example.com",
    )
)
# Weekly at 09:00 Paris over the DST change of 30 March.
KINE = vcalendar(
    lines(
        "UID:kine-1@clinic.example",
        "DTSTAMP:20250301T000000Z",
        "DTSTART;TZID=Europe/Paris:20250303T090000",
        "DTEND;TZID=Europe/Paris:20250303T093000",
        "RRULE:FREQ=WEEKLY;COUNT=6",
        "SUMMARY:Kiné — Jeanne Durand",
    )
)
OSTEO = vcalendar(
    lines(
        "UID:osteo-1@clinic.example",
        "DTSTAMP:20250301T000000Z",
        "DTSTART;TZID=Europe/Paris:20250304T170000",
        "DTEND;TZID=Europe/Paris:20250304T174500",
        "RRULE:FREQ=WEEKLY;COUNT=4",
        "SUMMARY:Ostéo — Luc Bernard",
    )
)


@pytest.fixture
def calendar(radicale: RadicaleServer) -> Any:
    return radicale.make_calendar("Agenda accueil")


@pytest.fixture
async def source(
    radicale: RadicaleServer, calendar: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CalDavSource]:
    monkeypatch.setenv("CALDAV_PASSWORD", radicale.password)
    src = make_source(tmp_path, url=str(calendar.url), username=radicale.user)
    yield src
    await src.close()


def make_source(tmp_path: Path, **settings: Any) -> CalDavSource:
    settings.setdefault("password_env", "CALDAV_PASSWORD")
    # Radicale runs on 127.0.0.1: allowed as the hub administrator allows a calendar server
    # on their own network (tests/security/ checks what happens without it).
    model = CalDavSettings.model_validate(
        {"type": "caldav", "timeout": 10, "private_ok": True, **settings}
    )
    return CalDavSource(model, SourceContext("agenda", tmp_path))


def keys(events: list[CalendarEvent]) -> list[tuple[str, str]]:
    return [e.key for e in events]


async def test_full_sync(radicale: RadicaleServer, calendar: Any, source: CalDavSource) -> None:
    assert isinstance(source, CalendarSource)
    dentist_url = radicale.put_event(calendar, DENTIST, "dentist.ics")
    radicale.put_event(calendar, KINE, "kine.ics")

    result = await source.sync(WINDOW, None)
    assert result.full and result.removed == [] and result.warnings == []
    assert keys(result.events) == [
        ("kine-1@clinic.example", "2025-03-03T08:00:00Z"),
        ("kine-1@clinic.example", "2025-03-10T08:00:00Z"),
        ("dentist-1@clinic.example", ""),
        ("kine-1@clinic.example", "2025-03-17T08:00:00Z"),
        ("kine-1@clinic.example", "2025-03-24T08:00:00Z"),
        ("kine-1@clinic.example", "2025-03-31T07:00:00Z"),
        ("kine-1@clinic.example", "2025-04-07T07:00:00Z"),
    ]
    kine = [e for e in result.events if e.uid == "kine-1@clinic.example"]
    assert {e.start.astimezone(PARIS).time().isoformat() for e in kine} == {"09:00:00"}
    assert len({e.etag for e in kine}) == 1 and kine[0].etag.startswith('"')

    dentist = next(e for e in result.events if e.uid == "dentist-1@clinic.example")
    assert dentist.start == datetime(2025, 3, 12, 14, tzinfo=PARIS)
    assert dentist.timezone == "Europe/Paris" and dentist.title == "Dentiste — Paul Martin"
    assert [(a.email, a.name) for a in dentist.attendees] == [
        ("paul.martin@example.com", "Paul Martin")
    ]
    assert dentist.raw["href"] == "/" + dentist_url.split("/", 3)[3]

    # Radicale supports sync-collection: the cursor holds its sync-token.
    assert result.cursor is not None
    state = _State.decode(result.cursor)
    assert state.token and state.token.startswith("http://radicale.org/ns/sync/")
    assert not state.no_sync


async def test_delta_after_move_delete_and_exdate(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    radicale.put_event(calendar, DENTIST, "dentist.ics")
    kine_url = radicale.put_event(calendar, KINE, "kine.ics")
    radicale.put_event(calendar, OSTEO, "osteo.ics")
    first = await source.sync(WINDOW, None)
    assert len(first.events) == 1 + 6 + 4

    # Nothing changed: an empty delta.
    same = await source.sync(WINDOW, first.cursor)
    assert not same.full and same.events == [] and same.removed == []

    # The receptionist moves the dentist to Friday, deletes the physio series and cancels
    # one osteopathy session (an EXDATE).
    radicale.put_event(calendar, DENTIST.replace("20250312T14", "20250314T10"), "dentist.ics")
    radicale.delete_event(calendar, kine_url)
    radicale.put_event(
        calendar,
        OSTEO.replace("RRULE:", "EXDATE;TZID=Europe/Paris:20250318T170000\r\nRRULE:"),
        "osteo.ics",
    )
    delta = await source.sync(WINDOW, same.cursor)
    assert not delta.full
    assert keys(delta.events) == [
        ("osteo-1@clinic.example", "2025-03-04T16:00:00Z"),
        ("osteo-1@clinic.example", "2025-03-11T16:00:00Z"),
        ("dentist-1@clinic.example", ""),
        ("osteo-1@clinic.example", "2025-03-25T16:00:00Z"),
    ]
    moved = next(e for e in delta.events if e.uid == "dentist-1@clinic.example")
    assert moved.start == datetime(2025, 3, 14, 10, tzinfo=PARIS)
    assert delta.removed == [
        Removed("kine-1@clinic.example", None),
        Removed("osteo-1@clinic.example", "2025-03-18T16:00:00Z"),
    ]

    # And the next delta is empty again.
    after = await source.sync(WINDOW, delta.cursor)
    assert after.events == [] and after.removed == []


async def test_moved_occurrence_and_cancelled_occurrence(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    url = radicale.put_event(calendar, KINE, "kine.ics")
    first = await source.sync(WINDOW, None)
    overrides = KINE.replace(
        "END:VCALENDAR",
        lines(
            "BEGIN:VEVENT",
            "UID:kine-1@clinic.example",
            "DTSTAMP:20250310T000000Z",
            "RECURRENCE-ID;TZID=Europe/Paris:20250324T090000",
            "DTSTART;TZID=Europe/Paris:20250325T140000",
            "DTEND;TZID=Europe/Paris:20250325T143000",
            "SUMMARY:Kiné — Jeanne Durand (mardi)",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:kine-1@clinic.example",
            "DTSTAMP:20250310T000000Z",
            "RECURRENCE-ID;TZID=Europe/Paris:20250407T090000",
            "DTSTART;TZID=Europe/Paris:20250407T090000",
            "STATUS:CANCELLED",
            "SUMMARY:Kiné — Jeanne Durand",
            "END:VEVENT",
            "END:VCALENDAR",
        )
        + "\r\n",
    )
    radicale.put_event(calendar, overrides, url.rsplit("/", 1)[1])
    delta = await source.sync(WINDOW, first.cursor)
    events = {e.occurrence: e for e in delta.events}
    assert sorted(events) == [
        "2025-03-03T08:00:00Z",
        "2025-03-10T08:00:00Z",
        "2025-03-17T08:00:00Z",
        "2025-03-24T08:00:00Z",
        "2025-03-31T07:00:00Z",
        "2025-04-07T07:00:00Z",
    ]
    assert events["2025-03-24T08:00:00Z"].start == datetime(2025, 3, 25, 14, tzinfo=PARIS)
    assert events["2025-04-07T07:00:00Z"].status is EventStatus.CANCELLED
    assert delta.removed == []


async def test_event_moved_out_of_the_window(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    radicale.put_event(calendar, DENTIST, "dentist.ics")
    first = await source.sync(WINDOW, None)
    # Postponed to June, beyond the window: what a full listing would say, it is gone here.
    radicale.put_event(calendar, DENTIST.replace("20250312T14", "20250612T14"), "dentist.ics")
    delta = await source.sync(WINDOW, first.cursor)
    assert delta.events == [] and delta.removed == [Removed("dentist-1@clinic.example", "")]


async def test_window_moving_onto_an_unchanged_event(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    late = DENTIST.replace("20250312T14", "20250501T09").replace("20250312T143", "20250501T093")
    radicale.put_event(calendar, late, "late.ics")
    first = await source.sync(WINDOW, None)
    assert first.events == []
    # Time passes: 1 May enters the window although nobody touched the event.
    later = SyncWindow(WINDOW.start + timedelta(days=30), WINDOW.end + timedelta(days=30))
    delta = await source.sync(later, first.cursor)
    assert not delta.full and keys(delta.events) == [("dentist-1@clinic.example", "")]
    assert delta.events[0].start == datetime(2025, 5, 1, 9, tzinfo=PARIS)


async def test_past_occurrences_are_not_reported_removed(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    url = radicale.put_event(calendar, KINE, "kine.ics")
    first = await source.sync(WINDOW, None)
    later = SyncWindow(datetime(2025, 3, 20, tzinfo=UTC), WINDOW.end)
    radicale.delete_event(calendar, url)
    delta = await source.sync(later, first.cursor)
    assert delta.removed == [Removed("kine-1@clinic.example", None)]
    # Shortening the series only removes what is still ahead.
    radicale.put_event(calendar, KINE, "kine.ics")
    again = await source.sync(later, None)
    radicale.put_event(calendar, KINE.replace("COUNT=6", "COUNT=5"), "kine.ics")
    shorter = await source.sync(later, again.cursor)
    assert shorter.removed == [Removed("kine-1@clinic.example", "2025-04-07T07:00:00Z")]
    assert keys(shorter.events) == [
        ("kine-1@clinic.example", "2025-03-24T08:00:00Z"),
        ("kine-1@clinic.example", "2025-03-31T07:00:00Z"),
    ]


async def test_expired_or_foreign_cursor(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    radicale.put_event(calendar, DENTIST, "dentist.ics")
    first = await source.sync(WINDOW, None)
    assert first.cursor is not None
    state = _State.decode(first.cursor)
    state.token = "http://radicale.org/ns/sync/" + "0" * 64
    with pytest.raises(CursorExpired, match="no longer knows the sync token"):
        await source.sync(WINDOW, state.encode())
    with pytest.raises(CursorExpired):
        await source.sync(WINDOW, '{"etag": "from an ICS source"}')
    with pytest.raises(CursorExpired):
        await source.sync(WINDOW, "caldav1:not-base64!")


async def test_annotate_single_event(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    url = radicale.put_event(calendar, DENTIST, "dentist.ics")
    (event,) = (await source.sync(WINDOW, None)).events
    assert await source.annotate(event, "SMS: confirmed by the patient") is True
    stored = radicale.get_event(calendar, url)
    assert "DESCRIPTION:SMS: confirmed by the patient" in stored
    # Writing the same note again (a retry) does not repeat it.
    assert await source.annotate(event, "SMS: confirmed by the patient") is True
    assert radicale.get_event(calendar, url).count("confirmed by the patient") == 1
    # The hub rebuilds events from its rows, without the resource's path.
    bare = CalendarEvent(uid=event.uid, occurrence="", start=event.start)
    assert await source.annotate(bare, "SMS: CANCELLED by the patient") is True
    resynced = (await source.sync(WINDOW, None)).events[0]
    assert resynced.description == ("SMS: confirmed by the patient\nSMS: CANCELLED by the patient")
    assert resynced.start == event.start and resynced.title == event.title


async def test_annotate_one_occurrence(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    url = radicale.put_event(calendar, KINE, "kine.ics")
    events = (await source.sync(WINDOW, None)).events
    target = next(e for e in events if e.occurrence == "2025-03-31T07:00:00Z")
    assert await source.annotate(target, "SMS: confirmed by the patient") is True
    stored = radicale.get_event(calendar, url)
    assert "RECURRENCE-ID;TZID=Europe/Paris:20250331T090000" in stored
    after = {e.occurrence: e for e in (await source.sync(WINDOW, None)).events}
    assert len(after) == 6
    assert after["2025-03-31T07:00:00Z"].description == "SMS: confirmed by the patient"
    assert after["2025-03-31T07:00:00Z"].start == target.start
    assert after["2025-03-31T07:00:00Z"].end == target.end
    assert {e.description for k, e in after.items() if k != "2025-03-31T07:00:00Z"} == {""}


async def test_annotate_gone_event(
    radicale: RadicaleServer, calendar: Any, source: CalDavSource
) -> None:
    url = radicale.put_event(calendar, KINE, "kine.ics")
    events = (await source.sync(WINDOW, None)).events
    # The occurrence was cancelled meanwhile (EXDATE): no override resurrects it.
    radicale.put_event(
        calendar,
        KINE.replace("RRULE:", "EXDATE;TZID=Europe/Paris:20250310T090000\r\nRRULE:"),
        "kine.ics",
    )
    excluded = next(e for e in events if e.occurrence == "2025-03-10T08:00:00Z")
    assert await source.annotate(excluded, "SMS: confirmed by the patient") is False
    assert "confirmed" not in radicale.get_event(calendar, url)
    radicale.delete_event(calendar, url)
    assert await source.annotate(events[0], "SMS: confirmed by the patient") is False


async def test_principal_url_and_calendar_name(
    radicale: RadicaleServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALDAV_PASSWORD", radicale.password)
    name = f"Cabinet {uuid.uuid4().hex[:8]}"
    calendar = radicale.make_calendar(name)
    radicale.put_event(calendar, DENTIST, "dentist.ics")
    # The display name, whatever its case, from the server's root URL.
    src = make_source(tmp_path, url=radicale.url, username=radicale.user, calendar=name.upper())
    try:
        result = await src.sync(WINDOW, None)
    finally:
        await src.close()
    assert keys(result.events) == [("dentist-1@clinic.example", "")]

    src = make_source(tmp_path, url=radicale.url, username=radicale.user, calendar="Nope")
    try:
        with pytest.raises(SourceError, match=r"has no calendar named 'Nope' \(calendars: .*"):
            await src.sync(WINDOW, None)
    finally:
        await src.close()


async def test_bad_password(
    radicale: RadicaleServer, calendar: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALDAV_PASSWORD", "not-the-password")
    src = make_source(tmp_path, url=str(calendar.url), username=radicale.user)
    try:
        with pytest.raises(SourceError) as info:
            await src.sync(WINDOW, None)
    finally:
        await src.close()
    assert str(info.value) == (
        f"{calendar.url} refused the login as 'reception' (Unauthorized): "
        "check username and password"
    )


async def test_bad_url(
    radicale: RadicaleServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALDAV_PASSWORD", radicale.password)
    missing = f"{radicale.home_url}no-such-calendar/"
    src = make_source(tmp_path, url=missing, username=radicale.user)
    try:
        with pytest.raises(SourceError) as info:
            await src.sync(WINDOW, None)
    finally:
        await src.close()
    assert str(info.value) == f"{missing}: no calendar there (404 Not Found): check the URL"

    nowhere = f"http://127.0.0.1:{free_port()}/dav/"
    src = make_source(tmp_path, url=nowhere, username=radicale.user)
    try:
        with pytest.raises(SourceError, match=rf"^cannot reach {nowhere}: "):
            await src.sync(WINDOW, None)
    finally:
        await src.close()


def test_settings() -> None:
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        CalDavSettings.model_validate({"type": "caldav", "url": "/var/cal"})
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        CalDavSettings.model_validate({"type": "caldav", "url": "https://x/", "pasword_env": "P"})
