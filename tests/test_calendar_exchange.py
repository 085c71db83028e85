"""The Exchange (EWS) calendar source: the real exchangelib against a local EWS stand-in."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from exchangelib.protocol import Protocol

from connectors.calendar.exchange import ExchangeCalendarSource, ExchangeSettings
from hub.errors import ConfigError, SourceError
from hub.ports.calendar import (
    Attendee,
    CalendarEvent,
    CalendarSource,
    EventStatus,
    SourceContext,
    SyncWindow,
)
from hub.ports.registry import build_calendar_source
from tests.fakes.ews import MAILBOX, PASSWORD, USERNAME, EwsFake, ews_fake  # noqa: F401

PARIS = ZoneInfo("Europe/Paris")
# March to mid-April 2026: Europe goes to summer time on 29 March.
WINDOW = SyncWindow(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 15, tzinfo=UTC))

Make = Callable[..., ExchangeCalendarSource]


@pytest.fixture
async def source_factory(
    ews_fake: EwsFake,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Make]:
    """Builds sources on the fake, closed at the end: source_factory(password=..., **settings)."""
    made: list[ExchangeCalendarSource] = []

    def make(password: str = PASSWORD, **overrides: Any) -> ExchangeCalendarSource:
        monkeypatch.setenv("EWS_TEST_PASSWORD", password)
        settings: dict[str, Any] = {
            "type": "exchange",
            "email": MAILBOX,
            "username": USERNAME,
            "password_env": "EWS_TEST_PASSWORD",
            "service_endpoint": ews_fake.endpoint,
            "auth_type": "basic",
            "version": "2016",
            "timeout": 5,
            "max_retry_wait": 5,
        }
        settings.update(overrides)
        source = ExchangeCalendarSource(
            ExchangeSettings.model_validate(settings),
            SourceContext(name="calendar 'Accueil'", data_dir=tmp_path),
        )
        made.append(source)
        return source

    yield make
    for source in made:
        await source.close()


def by_title(events: list[CalendarEvent]) -> dict[str, list[CalendarEvent]]:
    found: dict[str, list[CalendarEvent]] = {}
    for event in sorted(events, key=lambda e: e.start):
        found.setdefault(event.title, []).append(event)
    return found


def clinic(fake: EwsFake) -> dict[str, Any]:
    """A small clinic calendar: singles either side of DST, a weekly series, an all-day day."""
    winter = fake.add_event(
        "Dentiste — Paul Martin",
        datetime(2026, 3, 10, 9, 0),
        location="Salle 2",
        body=(
            "<html><head><style>p{}</style></head><body><p>Tél. +33 6 12 34 56 78</p>"
            "<p>Apporter la radio</p></body></html>"
        ),
        attendees=[("Paul Martin", "paul.martin@example.com")],
        optional=[("Dr Roux", "roux@clinic.example")],
    )
    summer = fake.add_event("Contrôle — Anne Petit", datetime(2026, 4, 14, 9, 0), minutes=45)
    series = fake.add_series("Kiné — Jeanne Durand", datetime(2026, 3, 2, 9, 0), count=6)
    fake.move_occurrence(series.uid, 2, datetime(2026, 3, 17, 11, 30))  # Mon 16 → Tue 17
    fake.cancel_occurrence(series.uid, 3)  # 23 March
    fake.delete_occurrence(series.uid, 4)  # 30 March
    closed = fake.add_all_day("Cabinet fermé", date(2026, 3, 20))
    new_york = fake.add_event(
        "Téléconsultation — John Smith", datetime(2026, 3, 12, 9, 0), zone="Eastern Standard Time"
    )
    tentative = fake.add_event(
        "Bilan — Luc Bernard", datetime(2026, 3, 13, 17, 0), free_busy="Tentative", body_type="Text"
    )
    return {
        "winter": winter,
        "summer": summer,
        "series": series,
        "closed": closed,
        "new_york": new_york,
        "tentative": tentative,
    }


# ---- reading ------------------------------------------------------------------------------


async def test_full_sync_lists_occurrences_with_keys_zones_and_statuses(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    made = clinic(ews_fake)
    source = source_factory()
    assert isinstance(source, CalendarSource)

    result = await source.sync(WINDOW, None)

    assert result.full is True and result.cursor is None and result.removed == []
    assert result.warnings == []
    events = by_title(result.events)

    # 09:00 in "Romance Standard Time" is 08:00 UTC in winter, 07:00 UTC in summer.
    [winter] = events["Dentiste — Paul Martin"]
    assert winter.key == (made["winter"].uid, "")
    assert winter.start == datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    assert winter.start.utcoffset() == timedelta(hours=1)  # shown in the event's own zone
    assert winter.end == datetime(2026, 3, 10, 8, 30, tzinfo=UTC)
    assert winter.timezone == "Europe/Paris"
    assert winter.location == "Salle 2"
    assert "+33 6 12 34 56 78" in winter.description
    assert "Apporter la radio" in winter.description
    assert "<p>" not in winter.description and "p{}" not in winter.description
    assert winter.attendees == (
        Attendee(email="paul.martin@example.com", name="Paul Martin"),
        Attendee(email="roux@clinic.example", name="Dr Roux"),
    )
    assert winter.status is EventStatus.CONFIRMED
    assert winter.etag == made["winter"].changekey
    [summer] = events["Contrôle — Anne Petit"]
    assert summer.start == datetime(2026, 4, 14, 7, 0, tzinfo=UTC)
    assert summer.end is not None and summer.end - summer.start == timedelta(minutes=45)

    # The series: occurrences keyed by their original start, kept at 09:00 local over DST.
    uid = made["series"].uid
    kine = events["Kiné — Jeanne Durand"]
    assert [(e.key, e.start) for e in kine] == [
        ((uid, "2026-03-02T08:00:00Z"), datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
        ((uid, "2026-03-09T08:00:00Z"), datetime(2026, 3, 9, 8, 0, tzinfo=UTC)),
        # Moved to Tuesday 11:30: still the occurrence of Monday 16.
        ((uid, "2026-03-16T08:00:00Z"), datetime(2026, 3, 17, 10, 30, tzinfo=UTC)),
        # 30 March was deleted; 6 April is in summer time.
        ((uid, "2026-04-06T07:00:00Z"), datetime(2026, 4, 6, 7, 0, tzinfo=UTC)),
    ]
    assert all(e.timezone == "Europe/Paris" and e.status is EventStatus.CONFIRMED for e in kine)
    [cancelled] = events["Canceled: Kiné — Jeanne Durand"]
    assert cancelled.key == (uid, "2026-03-23T08:00:00Z")
    assert cancelled.status is EventStatus.CANCELLED

    [closed] = events["Cabinet fermé"]
    assert closed.all_day is True
    assert closed.key == (made["closed"].uid, "")
    assert closed.start == datetime(2026, 3, 20, tzinfo=PARIS)
    assert closed.end == datetime(2026, 3, 21, tzinfo=PARIS)

    [remote] = events["Téléconsultation — John Smith"]
    assert remote.timezone == "America/New_York"
    assert remote.start == datetime(2026, 3, 12, 13, 0, tzinfo=UTC)  # EDT since 8 March

    [tentative] = events["Bilan — Luc Bernard"]
    assert tentative.status is EventStatus.TENTATIVE

    # What exchangelib asked: root and calendar folders, the view, then the details.
    assert ews_fake.operations == ["GetFolder", "GetFolder", "FindItem", "GetItem"]
    assert "<m:CalendarView" in ews_fake.bodies[2]
    assert "2026-03-01T00:00:00Z" in ews_fake.bodies[2]

    # A second sync reuses the connection and lists the same keys.
    again = await source.sync(WINDOW, None)
    assert {e.key for e in again.events} == {e.key for e in result.events}
    assert ews_fake.operations[4:] == ["FindItem", "GetItem"]


async def test_all_day_occurrences_are_keyed_by_their_date(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    series = ews_fake.add_series(
        "Garde", datetime(2026, 3, 5), count=3, minutes=24 * 60, is_all_day=True, free_busy="Free"
    )
    ews_fake.move_occurrence(series.uid, 1, datetime(2026, 3, 13))  # Thu 12 → Fri 13

    result = await source_factory().sync(WINDOW, None)

    assert [
        (e.occurrence, e.start, e.end) for e in sorted(result.events, key=lambda e: e.start)
    ] == [
        ("2026-03-05", datetime(2026, 3, 5, tzinfo=PARIS), datetime(2026, 3, 6, tzinfo=PARIS)),
        ("2026-03-12", datetime(2026, 3, 13, tzinfo=PARIS), datetime(2026, 3, 14, tzinfo=PARIS)),
        ("2026-03-19", datetime(2026, 3, 19, tzinfo=PARIS), datetime(2026, 3, 20, tzinfo=PARIS)),
    ]
    assert all(e.all_day and e.uid == series.uid for e in result.events)


async def test_a_full_view_is_split_until_nothing_is_cut(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    for day in range(25):
        ews_fake.add_event(f"Patient {day}", datetime(2026, 3, 2, 8, 0) + timedelta(days=day))
    source = source_factory(page_size=10)

    result = await source.sync(WINDOW, None)

    assert sorted(e.title for e in result.events) == sorted(f"Patient {d}" for d in range(25))
    assert ews_fake.operations.count("FindItem") > 3


async def test_without_a_version_hint_the_server_is_asked(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    ews_fake.add_event("Dentiste", datetime(2026, 3, 10, 9, 0))
    source = source_factory(version=None)

    result = await source.sync(WINDOW, None)

    assert [e.title for e in result.events] == ["Dentiste"]
    assert ews_fake.operations[0] == "ConvertId"


async def test_throttling_is_waited_out_within_the_budget(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    ews_fake.add_event("Dentiste", datetime(2026, 3, 10, 9, 0))
    ews_fake.throttle(times=2, back_off_ms=50)
    source = source_factory()

    result = await source.sync(WINDOW, None)

    assert [e.title for e in result.events] == ["Dentiste"]
    assert not ews_fake.busy


async def test_throttling_beyond_the_budget_is_a_source_error(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    ews_fake.throttle(times=1, back_off_ms=300_000)  # five minutes, as Exchange asks at worst
    source = source_factory(max_retry_wait=2)

    with pytest.raises(SourceError) as caught:
        await source.sync(WINDOW, None)

    message = str(caught.value)
    assert "127.0.0.1 is throttling" in message
    assert "300 s" in message and "max_retry_wait" in message


# ---- writing ------------------------------------------------------------------------------


async def test_annotate_appends_the_note_to_the_body(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    made = clinic(ews_fake)
    source = source_factory()
    events = by_title((await source.sync(WINDOW, None)).events)
    [winter] = events["Dentiste — Paul Martin"]

    assert await source.annotate(winter, "SMS: confirmed by the patient") is True

    item = ews_fake.item(made["winter"].item_id)
    assert item.body_type == "HTML"
    assert item.body.endswith(
        "<p>Apporter la radio</p><p>SMS: confirmed by the patient</p></body></html>"
    )
    assert ews_fake.operations[-2:] == ["GetItem", "UpdateItem"]
    # Never overwrite a concurrent edit, never mail the attendees about a note.
    assert ews_fake.updates[-1]["ConflictResolution"] == "NeverOverwrite"
    assert ews_fake.updates[-1]["SendMeetingInvitationsOrCancellations"] == "SendToNone"

    # Written once: a retry of the same note changes nothing.
    assert await source.annotate(winter, "SMS: confirmed by the patient") is True
    assert ews_fake.operations.count("UpdateItem") == 1

    # A text body gets the note on its own line.
    [tentative] = events["Bilan — Luc Bernard"]
    assert await source.annotate(tentative, "SMS: CANCELLED by the patient") is True
    assert ews_fake.item(made["tentative"].item_id).body == "SMS: CANCELLED by the patient"

    # The note shows in the next sync's description.
    again = by_title((await source.sync(WINDOW, None)).events)
    assert again["Dentiste — Paul Martin"][0].description.endswith("SMS: confirmed by the patient")


async def test_annotating_an_occurrence_keeps_its_key(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    made = clinic(ews_fake)
    uid = made["series"].uid
    # A fresh source, as after a restart: it finds the occurrence by looking around its start.
    first = await source_factory().sync(WINDOW, None)
    [second] = [e for e in first.events if e.key == (uid, "2026-03-09T08:00:00Z")]
    event = CalendarEvent(uid=second.uid, occurrence=second.occurrence, start=second.start)

    assert await source_factory().annotate(event, "SMS: confirmed by the patient") is True

    occurrence = ews_fake.occurrences(uid)[1]
    assert occurrence.kind == "Exception"  # Exchange keeps a changed occurrence apart
    assert occurrence.body == "SMS: confirmed by the patient"
    after = await source_factory().sync(WINDOW, None)
    [same] = [e for e in after.events if e.key == event.key]
    assert same.start == second.start and same.description == "SMS: confirmed by the patient"


async def test_annotate_writes_again_after_a_concurrent_edit(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    item = ews_fake.add_event(
        "Dentiste", datetime(2026, 3, 10, 9, 0), body="Notes", body_type="Text"
    )
    source = source_factory()
    [event] = (await source.sync(WINDOW, None)).events
    ews_fake.conflicts = 1  # Outlook saves the item between our GetItem and UpdateItem

    assert await source.annotate(event, "SMS: confirmed by the patient") is True

    assert ews_fake.item(item.item_id).body == "Notes\n\nSMS: confirmed by the patient"
    assert ews_fake.operations.count("UpdateItem") == 2


async def test_annotate_a_deleted_event_or_read_only_is_false(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    item = ews_fake.add_event("Dentiste", datetime(2026, 3, 10, 9, 0))
    source = source_factory()
    [event] = (await source.sync(WINDOW, None)).events

    read_only = source_factory(read_only=True)
    assert await read_only.annotate(event, "SMS: confirmed by the patient") is False
    assert "UpdateItem" not in ews_fake.operations

    with ews_fake.lock:
        del ews_fake.items[item.item_id]
    assert await source.annotate(event, "SMS: confirmed by the patient") is False
    assert await source_factory().annotate(event, "SMS: confirmed by the patient") is False
    assert "UpdateItem" not in ews_fake.operations


# ---- failures -----------------------------------------------------------------------------


async def test_a_wrong_password_is_a_readable_source_error(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    source = source_factory(password="wrong")

    with pytest.raises(SourceError) as caught:
        await source.sync(WINDOW, None)

    message = str(caught.value)
    assert "Exchange refused the login of 'CLINIC\\\\reception' on 127.0.0.1" in message
    assert "check the password (password_env EWS_TEST_PASSWORD)" in message
    assert "wrong" not in message  # never the password itself
    assert ews_fake.logins_refused == 1  # a refused login is not retried as throttling


async def test_an_unreachable_server_is_named(source_factory: Make) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/EWS/Exchange.asmx"
    source = source_factory(service_endpoint=endpoint)

    with pytest.raises(SourceError) as caught:
        await source.sync(WINDOW, None)

    message = str(caught.value)
    assert f"cannot reach the Exchange server 127.0.0.1 at {endpoint}" in message
    assert message.endswith(": Connection refused")


async def test_a_server_that_does_not_answer_is_named(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    ews_fake.delay = 1.0
    source = source_factory(timeout=0.2)

    with pytest.raises(SourceError) as caught:
        await source.sync(WINDOW, None)

    assert str(caught.value) == (
        "calendar 'Accueil': the Exchange server 127.0.0.1 did not answer within 0.2 s "
        f"({ews_fake.endpoint})"
    )


async def test_an_unknown_mailbox_is_named(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    source = source_factory(email="nobody@clinic.example")

    with pytest.raises(SourceError, match="has no mailbox 'nobody@clinic.example': check email"):
        await source.sync(WINDOW, None)


async def test_an_endpoint_that_is_not_ews_is_said_so(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    source = source_factory(service_endpoint=f"{ews_fake.url}/owa/")

    with pytest.raises(
        SourceError, match=r"did not answer as Exchange Web Services do \(HTTP 404\)"
    ):
        await source.sync(WINDOW, None)


# ---- settings -----------------------------------------------------------------------------


def test_settings_need_one_place_and_a_password() -> None:
    base = {"type": "exchange", "email": MAILBOX, "username": USERNAME}
    with pytest.raises(ValueError, match="give server"):
        ExchangeSettings.model_validate({**base, "password_env": "X"})
    with pytest.raises(ValueError, match="not both"):
        ExchangeSettings.model_validate(
            {
                **base,
                "password_env": "X",
                "server": "mail.clinic.example",
                "service_endpoint": "https://mail.clinic.example/EWS/Exchange.asmx",
            }
        )
    with pytest.raises(ValueError, match="password_env or password_file"):
        ExchangeSettings.model_validate({**base, "server": "mail.clinic.example"})
    with pytest.raises(ValueError, match="a host name only"):
        ExchangeSettings.model_validate(
            {**base, "password_env": "X", "server": "https://mail.clinic.example/EWS"}
        )
    settings = ExchangeSettings.model_validate(
        {
            **base,
            "password_env": "X",
            "server": "mail.clinic.example",
            "timezone": "Romance Standard Time",
        }
    )
    assert settings.endpoint == "https://mail.clinic.example/EWS/Exchange.asmx"
    assert settings.auth_type == "NTLM"
    assert settings.timezone == "Europe/Paris"


async def test_each_source_has_its_own_connection_dropped_on_close(
    ews_fake: EwsFake,  # noqa: F811
    source_factory: Make,
) -> None:
    checked = source_factory(ca_file="/etc/clinic-ca.pem")
    unchecked = source_factory(verify_certificate=False)
    await checked.sync(WINDOW, None)
    await unchecked.sync(WINDOW, None)
    # exchangelib would share one Protocol between equal credentials: not here.
    assert checked._protocol is not None and unchecked._protocol is not None
    assert checked._protocol is not unchecked._protocol
    assert checked._protocol.create_session().verify == "/etc/clinic-ca.pem"
    assert unchecked._protocol.create_session().verify is False
    assert checked._protocol.TIMEOUT == 5

    await checked.close()
    await unchecked.close()

    cached = [key for key in Protocol._protocol_cache if key[0] == ews_fake.endpoint]
    assert cached == []


def test_the_hub_finds_the_source_by_its_type(tmp_path: Path) -> None:
    ctx = SourceContext(name="calendar 'Accueil'", data_dir=tmp_path, secrets={"password": "x"})
    settings = {
        "email": MAILBOX,
        "username": USERNAME,
        "password_env": "EWS_PASSWORD",
        "server": "mail.clinic.example",
    }
    source = build_calendar_source("exchange", settings, ctx, "calendar 'Accueil'")
    assert isinstance(source, ExchangeCalendarSource)
    with pytest.raises(ConfigError, match="unknown setting 'tenant_id'"):
        build_calendar_source("exchange", {**settings, "tenant_id": "x"}, ctx, "calendar 'Accueil'")
