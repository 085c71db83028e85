"""The Google Calendar source: the real google-api-python-client and google-auth against a
local stand-in of the Calendar API v3 and Google's token endpoint (tests/fakes)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from connectors.calendar.google import SCOPE, GoogleCalendarSource, GoogleSettings
from hub.errors import CursorExpired, SourceError
from hub.ports.calendar import (
    CalendarSource,
    EventStatus,
    Removed,
    SourceContext,
    SyncResult,
    SyncWindow,
    occurrence_id,
)
from hub.ports.registry import build_calendar_source
from hub.reminders.calendar_store import calendar_secrets
from tests.fakes import google_calendar
from tests.fakes.google_calendar import GoogleCalendarFake

google_fake = google_calendar.google_fake  # the fixture, under its own name

PARIS = ZoneInfo("Europe/Paris")
WINDOW = SyncWindow(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 30, tzinfo=UTC))
NAME = "calendar 'Cabinet'"


def make_source(
    fake: GoogleCalendarFake, tmp_path: Path, secrets: dict[str, str] | None = None, **extra: Any
) -> GoogleCalendarSource:
    settings: dict[str, Any] = {"anonymous": True, "api_endpoint": fake.url + "/", **extra}
    if any(k in extra for k in ("client_id", "service_account_file")):
        settings.pop("anonymous")
    parsed = GoogleSettings.model_validate({"type": "google", **settings})
    return GoogleCalendarSource(parsed, SourceContext(NAME, tmp_path, secrets=secrets or {}))


async def run_sync(source: GoogleCalendarSource, cursor: str | None = None) -> SyncResult:
    return await source.sync(WINDOW, cursor)


def list_requests(fake: GoogleCalendarFake) -> list[dict[str, str]]:
    return [q for m, p, q in fake.requests if m == "GET" and p.endswith("/events")]


async def test_full_sync_follows_pages_until_the_sync_token(google_fake, tmp_path):
    base = datetime(2025, 3, 3, 8, tzinfo=UTC)
    for n in range(600):
        google_fake.add_event(f"RDV {n}", base + timedelta(hours=n))
    google_fake.add_event("Too late", datetime(2025, 6, 1, 9, tzinfo=PARIS))
    source = make_source(google_fake, tmp_path)
    assert isinstance(source, CalendarSource)
    try:
        result = await run_sync(source)
    finally:
        await source.close()

    assert result.full and result.cursor and not result.removed and not result.warnings
    assert len(result.events) == 600
    assert len({e.key for e in result.events}) == 600
    assert "Too late" not in {e.title for e in result.events}
    pages = list_requests(google_fake)
    assert len(pages) == 3  # 250 + 250 + 100
    assert all(q["singleEvents"] == "true" and q["maxResults"] == "250" for q in pages)
    assert [("pageToken" in q) for q in pages] == [False, True, True]
    assert pages[0]["timeMin"] == "2025-03-01T00:00:00Z"
    assert pages[0]["timeMax"] == "2025-04-30T00:00:00Z"


async def test_incremental_sync_reports_moves_cancellations_and_deletions(google_fake, tmp_path):
    moved = google_fake.add_event(
        "Mme Durand 06 12 34 56 78", datetime(2025, 3, 10, 9, tzinfo=PARIS)
    )
    deleted = google_fake.add_event("M. Martin", datetime(2025, 3, 11, 10, tzinfo=PARIS))
    google_fake.add_event("Unchanged", datetime(2025, 3, 12, 10, tzinfo=PARIS))
    leaving = google_fake.add_event("Leaving the window", datetime(2025, 3, 13, 10, tzinfo=PARIS))
    master, instances = google_fake.add_series(
        "Kiné", datetime(2025, 3, 3, 18, tzinfo=PARIS), count=6
    )
    source = make_source(google_fake, tmp_path)
    try:
        first = await run_sync(source)
        assert len(first.events) == 10
        keys = {e.title: e.key for e in first.events if e.title != "Kiné"}
        series = sorted((e for e in first.events if e.title == "Kiné"), key=lambda e: e.start)
        assert {e.uid for e in series} == {f"{master}@google.com"}
        assert [e.occurrence for e in series] == [
            occurrence_id(datetime(2025, 3, 3, 18, tzinfo=PARIS) + timedelta(weeks=n))
            for n in range(6)
        ]

        google_fake.move(moved, datetime(2025, 3, 14, 11, tzinfo=PARIS))
        google_fake.cancel_occurrence(instances[2])
        google_fake.move(instances[3], datetime(2025, 3, 25, 8, tzinfo=PARIS))
        google_fake.delete(deleted)
        google_fake.move(leaving, datetime(2025, 9, 1, 10, tzinfo=PARIS))
        added = google_fake.add_event("New patient", datetime(2025, 3, 20, 15, tzinfo=PARIS))

        second = await run_sync(source, first.cursor)
        assert not second.full
        by_title = {e.title: e for e in second.events}
        assert set(by_title) == {"Mme Durand 06 12 34 56 78", "Kiné", "New patient"}
        assert by_title["Mme Durand 06 12 34 56 78"].start == datetime(
            2025, 3, 14, 11, tzinfo=PARIS
        )
        assert by_title["Mme Durand 06 12 34 56 78"].key == keys["Mme Durand 06 12 34 56 78"]
        # The moved instance keeps its original start as key.
        assert by_title["Kiné"].key == series[3].key
        assert by_title["Kiné"].start == datetime(2025, 3, 25, 8, tzinfo=PARIS)
        assert by_title["New patient"].key == (f"{added}@google.com", "")
        assert set(second.removed) == {
            Removed(*series[2].key),
            Removed(*keys["M. Martin"]),
            Removed(*keys["Leaving the window"]),
        }
        sync_query = list_requests(google_fake)[-1]
        # Google refuses timeMin/timeMax with a syncToken.
        assert "syncToken" in sync_query and "timeMin" not in sync_query

        # Deleting the whole series removes every occurrence at once.
        google_fake.delete(master)
        third = await run_sync(source, second.cursor)
        assert third.events == []
        assert third.removed == [Removed(f"{master}@google.com", None)]

        # Nothing changed: an empty delta.
        fourth = await run_sync(source, third.cursor)
        assert (fourth.events, fourth.removed, fourth.full) == ([], [], False)
    finally:
        await source.close()


async def test_occurrences_entering_the_window_are_listed(google_fake, tmp_path):
    google_fake.add_event("In the window", datetime(2025, 4, 2, 9, tzinfo=PARIS))
    later = google_fake.add_event("Later", datetime(2025, 5, 5, 9, tzinfo=PARIS))
    source = make_source(google_fake, tmp_path)
    try:
        first = await run_sync(source)
        assert [e.title for e in first.events] == ["In the window"]
        moved_on = SyncWindow(WINDOW.start + timedelta(days=10), WINDOW.end + timedelta(days=10))
        second = await source.sync(moved_on, first.cursor)
        assert not second.full
        assert [e.title for e in second.events] == ["Later"]
        assert second.events[0].key == (f"{later}@google.com", "")
        # Only the new slice was listed by time, the rest came from the sync token.
        slice_query = list_requests(google_fake)[-1]
        assert slice_query["timeMin"] == "2025-04-30T00:00:00Z"
        assert slice_query["timeMax"] == "2025-05-10T00:00:00Z"
        third = await source.sync(moved_on, second.cursor)
        assert third.events == []
    finally:
        await source.close()


async def test_expired_sync_token_asks_for_a_full_sync(google_fake, tmp_path):
    google_fake.add_event("RDV", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    source = make_source(google_fake, tmp_path)
    try:
        first = await run_sync(source)
        google_fake.expire_sync_tokens()
        with pytest.raises(CursorExpired):
            await run_sync(source, first.cursor)
        again = await run_sync(source)
        assert again.full and [e.title for e in again.events] == ["RDV"]
        # A cursor that is not ours (another source type, a damaged row) is no crash either.
        with pytest.raises(CursorExpired):
            await run_sync(source, '{"sha256": "x"}')
    finally:
        await source.close()


async def test_rate_limits_are_retried_with_backoff(google_fake, tmp_path):
    google_fake.add_event("RDV", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    google_fake.fail_next(403, "rateLimitExceeded", "Rate Limit Exceeded")
    google_fake.fail_next(429, "rateLimitExceeded", "Too many requests")
    source = make_source(google_fake, tmp_path, retry_delay=0.01)
    try:
        result = await run_sync(source)
        assert [e.title for e in result.events] == ["RDV"]
        assert len(list_requests(google_fake)) == 3

        google_fake.fail_next(403, "userRateLimitExceeded", "User Rate Limit Exceeded", times=10)
        stubborn = make_source(google_fake, tmp_path, retry_delay=0.01, retries=2)
        with pytest.raises(SourceError, match="quota .* used up"):
            await run_sync(stubborn)
        await stubborn.close()
    finally:
        await source.close()


async def test_oauth_refresh_token_and_bad_credentials(google_fake, tmp_path):
    google_fake.allow_anonymous = False
    google_fake.oauth_client("123.apps.googleusercontent.com", "client-secret", "1//refresh")
    google_fake.add_event("RDV", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    oauth = {
        "client_id": "123.apps.googleusercontent.com",
        "client_secret_env": "GOOGLE_SECRET",
        "refresh_token_env": "GOOGLE_REFRESH",
        "token_uri": f"{google_fake.url}/token",
    }
    good = make_source(
        google_fake,
        tmp_path,
        {"client_secret": "client-secret", "refresh_token": "1//refresh"},
        **oauth,
    )
    try:
        assert [e.title for e in (await run_sync(good)).events] == ["RDV"]
    finally:
        await good.close()
    assert google_fake.token_requests[-1]["grant_type"] == "refresh_token"

    revoked = make_source(
        google_fake,
        tmp_path,
        {"client_secret": "client-secret", "refresh_token": "1//revoked"},
        **oauth,
    )
    with pytest.raises(SourceError) as refused:
        await run_sync(revoked)
    await revoked.close()
    message = str(refused.value)
    assert message.startswith("Google refused the credentials for calendar 'Cabinet'")
    assert "invalid_grant" in message and "expired or revoked" in message

    anonymous = make_source(google_fake, tmp_path)
    with pytest.raises(SourceError, match="Google refused the credentials .* 401"):
        await run_sync(anonymous)
    await anonymous.close()


async def test_service_account_with_delegation_through_the_registry(
    google_fake, tmp_path, monkeypatch
):
    google_fake.allow_anonymous = False
    google_fake.add_event("RDV", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(google_fake.service_account_key()))
    settings = {
        "service_account_file": str(key_file),
        "subject": "cabinet@example.org",
        "api_endpoint": f"{google_fake.url}/calendar/v3/",
    }
    ctx = SourceContext(NAME, tmp_path, secrets=calendar_secrets(settings))
    source = build_calendar_source("google", settings, ctx, NAME)
    try:
        result = await source.sync(WINDOW, None)
    finally:
        await source.close()
    assert [e.title for e in result.events] == ["RDV"]
    grant = next(iter(google_fake.access_tokens.values()))
    assert grant["sub"] == "cabinet@example.org"
    assert grant["scope"] == SCOPE

    bad_key = tmp_path / "bad.json"
    bad_key.write_text('{"type": "authorized_user"}')
    settings["service_account_file"] = str(bad_key)
    broken = build_calendar_source(
        "google", settings, SourceContext(NAME, tmp_path, calendar_secrets(settings)), NAME
    )
    with pytest.raises(SourceError, match="not a usable Google service account key"):
        await broken.sync(WINDOW, None)


async def test_missing_calendar_and_forbidden_calendar(google_fake, tmp_path):
    source = make_source(google_fake, tmp_path, calendar_id="nope@group.calendar.google.com")
    with pytest.raises(
        SourceError, match="calendar 'nope@group.calendar.google.com' was not found"
    ):
        await run_sync(source)
    await source.close()

    google_fake.fail_next(403, "forbidden", "Forbidden")
    forbidden = make_source(google_fake, tmp_path)
    with pytest.raises(SourceError, match="refused access .* shared with that account"):
        await run_sync(forbidden)
    await forbidden.close()


async def test_annotate_appends_the_note_once(google_fake, tmp_path):
    event_id = google_fake.add_event(
        "Mme Durand", datetime(2025, 3, 10, 9, tzinfo=PARIS), description="Tél 06 12 34 56 78"
    )
    _, instances = google_fake.add_series("Kiné", datetime(2025, 3, 3, 18, tzinfo=PARIS), 3)
    source = make_source(google_fake, tmp_path)
    try:
        result = await run_sync(source)
        single = next(e for e in result.events if e.title == "Mme Durand")
        assert await source.annotate(single, "SMS: confirmed by the patient")
        assert await source.annotate(single, "SMS: confirmed by the patient")
        stored = google_fake.event(event_id)
        assert stored["description"] == "Tél 06 12 34 56 78\n\nSMS: confirmed by the patient"
        assert stored["extendedProperties"]["private"]["smshubAnswer"].startswith("SMS:")
    finally:
        await source.close()

    # A new source (as after a restart) finds the occurrence from its key and start.
    fresh = make_source(google_fake, tmp_path)
    try:
        second = sorted((e for e in result.events if e.title == "Kiné"), key=lambda e: e.start)[1]
        assert await fresh.annotate(second, "SMS: CANCELLED by the patient")
        assert google_fake.event(instances[1])["description"] == "SMS: CANCELLED by the patient"
        assert not google_fake.event(instances[0]).get("description")
    finally:
        await fresh.close()

    read_only = make_source(google_fake, tmp_path, read_only=True)
    patches = len([r for r in google_fake.requests if r[0] == "PATCH"])
    assert await read_only.annotate(single, "SMS: confirmed by the patient") is False
    assert len([r for r in google_fake.requests if r[0] == "PATCH"]) == patches
    await read_only.close()


async def test_time_zones_all_day_and_fields(google_fake, tmp_path):
    google_fake.add_event(
        "Consultation",
        datetime(2025, 3, 11, 9, tzinfo=PARIS),
        location="12 rue de la Paix",
        description="<b>Patient</b>: Jeanne<br>Tél 06 12 34 56 78",
        attendees=[
            {"email": "jeanne@example.org", "displayName": "Jeanne Durand"},
            {"email": "salle-1@resource.calendar.google.com", "resource": True},
            {
                "email": "cabinet@example.org",
                "displayName": "Cabinet Durand",
                "organizer": True,
                "self": True,
            },
        ],
    )
    google_fake.add_event(
        "New York call",
        datetime(2025, 3, 12, 9, tzinfo=ZoneInfo("America/New_York")),
        timezone="America/New_York",
    )
    google_fake.add_event("Fermeture", date(2025, 3, 14))
    google_fake.add_event("Tentative", datetime(2025, 3, 15, 9, tzinfo=PARIS))
    google_fake.edit(
        next(k for k, r in google_fake.records.items() if r.resource["summary"] == "Tentative"),
        status="tentative",
    )
    # Across the change to summer time, the series stays at 09:00 in Paris.
    google_fake.add_series("Weekly", datetime(2025, 3, 24, 9, tzinfo=PARIS), 2)
    source = make_source(google_fake, tmp_path)
    try:
        events = {e.title: e for e in (await run_sync(source)).events if e.title != "Weekly"}
        weekly = sorted(
            (e for e in (await run_sync(source)).events if e.title == "Weekly"),
            key=lambda e: e.start,
        )
    finally:
        await source.close()

    consultation = events["Consultation"]
    assert consultation.start == datetime(2025, 3, 11, 8, tzinfo=UTC)
    assert consultation.start.tzinfo == PARIS and consultation.start.hour == 9
    assert consultation.end == datetime(2025, 3, 11, 10, tzinfo=PARIS)
    assert consultation.timezone == "Europe/Paris" and not consultation.all_day
    assert consultation.location == "12 rue de la Paix"
    assert consultation.description == "Patient: Jeanne\nTél 06 12 34 56 78"
    assert [(a.email, a.name) for a in consultation.attendees] == [
        ("jeanne@example.org", "Jeanne Durand")
    ]
    assert consultation.etag.startswith('"')

    new_york = events["New York call"]
    assert new_york.timezone == "America/New_York"
    assert new_york.start == datetime(2025, 3, 12, 13, tzinfo=UTC)

    closed = events["Fermeture"]
    assert closed.all_day and closed.occurrence == ""
    assert closed.start == datetime(2025, 3, 14, tzinfo=PARIS)
    assert closed.end == datetime(2025, 3, 15, tzinfo=PARIS)
    assert closed.timezone == "Europe/Paris"

    assert events["Tentative"].status == EventStatus.TENTATIVE
    assert [e.start.astimezone(UTC).hour for e in weekly] == [8, 7]
    assert [e.occurrence for e in weekly] == ["2025-03-24T08:00:00Z", "2025-03-31T07:00:00Z"]


def test_settings_say_what_is_wrong():
    with pytest.raises(ValidationError, match="exactly one way to sign in"):
        GoogleSettings.model_validate({"type": "google"})
    with pytest.raises(ValidationError, match="exactly one way to sign in"):
        GoogleSettings.model_validate(
            {
                "type": "google",
                "service_account_file": "x.json",
                "anonymous": True,
                "api_endpoint": "http://127.0.0.1:1/",
            }
        )
    with pytest.raises(ValidationError, match="needs client_id, client_secret_env"):
        GoogleSettings.model_validate({"type": "google", "client_id": "x"})
    with pytest.raises(ValidationError, match="set api_endpoint too"):
        GoogleSettings.model_validate({"type": "google", "anonymous": True})
    with pytest.raises(ValidationError, match="Extra inputs"):
        GoogleSettings.model_validate({"type": "google", "anonymous": True, "colour": "red"})
    with pytest.raises(ValidationError, match="unknown time zone"):
        GoogleSettings.model_validate(
            {"type": "google", "service_account_file": "x.json", "timezone": "Paris"}
        )
