"""The Microsoft 365 / Outlook.com source: the real MSAL and httpx against a local HTTPS
stand-in of Microsoft Graph and the identity platform (tests/fakes/graph.py)."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from connectors.calendar.graph import (
    GraphCalendarSource,
    GraphSettings,
    device_code_login,
    to_event,
)
from connectors.calendar.graph_tokens import RENEWED_KEY
from hub.errors import CursorExpired, SourceError
from hub.ports.calendar import (
    CalendarSource,
    EventStatus,
    Removed,
    SourceContext,
    SyncWindow,
    occurrence_id,
)
from hub.ports.registry import build_calendar_source
from hub.ports.state import MemoryStateStore
from hub.reminders.calendar_store import calendar_secrets
from tests.fakes import graph
from tests.fakes.graph import GraphFake

graph_fake = graph.graph_fake  # the fixture, under its own name

PARIS = ZoneInfo("Europe/Paris")
WINDOW = SyncWindow(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 30, tzinfo=UTC))
NAME = "calendar 'Cabinet'"
USER = "cabinet@contoso.example"
APP = "3f1b5a2c-0000-4000-8000-00000000a001"
SECRET = "x~8Q-client-secret"


@pytest.fixture
def fake(graph_fake: GraphFake) -> GraphFake:
    graph_fake.app(APP, SECRET)
    graph_fake.add_mailbox(USER)
    return graph_fake


def settings_for(fake: GraphFake, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "client_id": APP,
        "tenant_id": fake.tenant,
        "client_secret_env": "GRAPH_SECRET",
        "user": USER,
        "graph_base_url": f"{fake.url}/v1.0",
        "authority": fake.url,
        "ca_file": fake.ca_file,
        "max_retry_wait": 0,
        **extra,
    }
    return {k: v for k, v in settings.items() if v is not None}


def make_source(
    fake: GraphFake, tmp_path: Path, secrets: dict[str, str] | None = None, **extra: Any
) -> GraphCalendarSource:
    parsed = GraphSettings.model_validate({"type": "graph", **settings_for(fake, **extra)})
    ctx = SourceContext(
        NAME, tmp_path, secrets={"client_secret": SECRET} if secrets is None else secrets
    )
    return GraphCalendarSource(parsed, ctx)


def delta_requests(fake: GraphFake) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    return [(p, q, h) for m, p, q, h in fake.requests if p.endswith("/calendarView/delta")]


async def test_full_round_follows_next_links_until_the_delta_link(fake, tmp_path):
    base = datetime(2025, 3, 3, 8, tzinfo=UTC)
    for n in range(600):
        fake.add_event(USER, f"RDV {n}", base + timedelta(hours=n))
    fake.add_event(USER, "Too late", datetime(2025, 6, 1, 9, tzinfo=PARIS))
    source = make_source(fake, tmp_path, page_size=250)
    assert isinstance(source, CalendarSource)
    try:
        result = await source.sync(WINDOW, None)
    finally:
        await source.close()
    assert result.full and result.cursor and not result.warnings
    assert len(result.events) == 600 and len({e.key for e in result.events}) == 600
    assert "Too late" not in {e.title for e in result.events}
    pages = delta_requests(fake)
    assert len(pages) == 3
    path, query, headers = pages[0]
    assert path == f"/v1.0/users/{USER}/calendarView/delta"
    assert query["startDateTime"] == "2025-03-01T00:00:00Z"
    # The range asked goes lookahead_days (7) beyond the window.
    assert query["endDateTime"] == "2025-05-07T00:00:00Z"
    assert 'outlook.timezone="UTC"' in headers["prefer"]
    assert "odata.maxpagesize=250" in headers["prefer"]
    assert headers["authorization"].startswith("Bearer ")
    assert [set(q) for _, q, _ in pages[1:]] == [{"$skiptoken"}, {"$skiptoken"}]
    assert fake.token_requests[0]["grant_type"] == "client_credentials"
    assert fake.token_requests[0]["scope"].split() == [f"{fake.url}/.default"]


async def test_delta_reports_moves_cancellations_and_deletions(fake, tmp_path):
    moved = fake.add_event(USER, "Mme Durand", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    deleted = fake.add_event(USER, "M. Martin", datetime(2025, 3, 11, 10, tzinfo=PARIS))
    called_off = fake.add_event(USER, "Réunion", datetime(2025, 3, 12, 10, tzinfo=PARIS))
    fake.add_event(USER, "Unchanged", datetime(2025, 3, 12, 14, tzinfo=PARIS))
    master, occurrences = fake.add_series(
        USER, "Kiné", datetime(2025, 3, 3, 18, tzinfo=PARIS), count=6
    )
    source = make_source(fake, tmp_path)
    try:
        first = await source.sync(WINDOW, None)
        assert len(first.events) == 10
        keys = {e.title: e.key for e in first.events if e.title != "Kiné"}
        series = sorted((e for e in first.events if e.title == "Kiné"), key=lambda e: e.start)
        assert {e.uid for e in series} == {master}
        assert [e.occurrence for e in series] == [
            occurrence_id(datetime(2025, 3, 3, 18, tzinfo=PARIS) + timedelta(weeks=n))
            for n in range(6)
        ]

        fake.move(moved, datetime(2025, 3, 14, 11, tzinfo=PARIS))
        fake.delete(occurrences[2])
        fake.move(occurrences[3], datetime(2025, 3, 25, 8, tzinfo=PARIS))
        fake.delete(deleted)
        fake.cancel_meeting(called_off)
        fake.add_event(USER, "New patient", datetime(2025, 3, 20, 15, tzinfo=PARIS))

        second = await source.sync(WINDOW, first.cursor)
        assert not second.full
        by_title = {e.title: e for e in second.events}
        assert set(by_title) == {"Mme Durand", "Kiné", "Réunion", "New patient"}
        assert by_title["Mme Durand"].key == keys["Mme Durand"]
        assert by_title["Mme Durand"].start == datetime(2025, 3, 14, 11, tzinfo=PARIS)
        assert by_title["Kiné"].key == series[3].key  # an exception keeps its original key
        assert by_title["Kiné"].start == datetime(2025, 3, 25, 8, tzinfo=PARIS)
        assert by_title["Réunion"].status == EventStatus.CANCELLED
        assert set(second.removed) == {Removed(*series[2].key), Removed(*keys["M. Martin"])}
        _, query, _ = delta_requests(fake)[-1]
        assert set(query) == {"$deltatoken"}

        # Deleting the series removes its remaining occurrences.
        fake.delete(master)
        third = await source.sync(WINDOW, second.cursor)
        assert third.events == []
        assert {r.key if hasattr(r, "key") else (r.uid, r.occurrence) for r in third.removed} == {
            e.key for e in series if e.key != series[2].key
        }

        fourth = await source.sync(WINDOW, third.cursor)
        assert (fourth.events, fourth.removed) == ([], [])
    finally:
        await source.close()


async def test_a_window_past_the_synced_range_starts_a_new_round(fake, tmp_path):
    fake.add_event(USER, "Later", datetime(2025, 5, 20, 9, tzinfo=PARIS))
    source = make_source(fake, tmp_path)
    try:
        first = await source.sync(WINDOW, None)
        assert first.events == []
        within = SyncWindow(WINDOW.start + timedelta(days=5), WINDOW.end + timedelta(days=5))
        assert not (await source.sync(within, first.cursor)).full
        beyond = SyncWindow(WINDOW.start + timedelta(days=20), WINDOW.end + timedelta(days=20))
        again = await source.sync(beyond, first.cursor)
        assert again.full and [e.title for e in again.events] == ["Later"]
    finally:
        await source.close()


async def test_expired_delta_token_asks_for_a_full_sync(fake, tmp_path):
    fake.add_event(USER, "RDV", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    source = make_source(fake, tmp_path)
    try:
        first = await source.sync(WINDOW, None)
        fake.expire_delta_tokens()
        with pytest.raises(CursorExpired, match="SyncStateNotFound"):
            await source.sync(WINDOW, first.cursor)
        again = await source.sync(WINDOW, None)
        assert again.full and [e.title for e in again.events] == ["RDV"]
        with pytest.raises(CursorExpired):
            await source.sync(WINDOW, "google1:not-ours")
    finally:
        await source.close()


async def test_throttling_waits_for_retry_after(fake, tmp_path):
    fake.add_event(USER, "RDV", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    fake.throttle_next(429, retry_after=1)
    source = make_source(fake, tmp_path, max_retry_wait=5)
    try:
        began = time.monotonic()
        result = await source.sync(WINDOW, None)
        assert time.monotonic() - began >= 1.0
        assert [e.title for e in result.events] == ["RDV"]
        assert len(delta_requests(fake)) == 2

        fake.throttle_next(503, retry_after=1, times=10)
        stubborn = make_source(fake, tmp_path, retries=2)  # max_retry_wait 0: no waiting
        with pytest.raises(SourceError, match=r"throttling or overloaded .*\(503 TooManyRequests"):
            await stubborn.sync(WINDOW, None)
        await stubborn.close()
    finally:
        await source.close()


async def test_bad_credentials_and_access_say_why(fake, tmp_path):
    wrong_secret = make_source(fake, tmp_path, secrets={"client_secret": "not-it"})
    with pytest.raises(SourceError) as refused:
        await wrong_secret.sync(WINDOW, None)
    await wrong_secret.close()
    message = str(refused.value)
    assert message.startswith(f"Microsoft refused the credentials for {NAME} (app {APP})")
    assert "invalid_client: AADSTS7000215: Invalid client secret provided" in message

    wrong_tenant = make_source(fake, tmp_path, tenant_id="contoso.example")
    with pytest.raises(SourceError, match="does not know the directory 'contoso.example'"):
        await wrong_tenant.sync(WINDOW, None)
    await wrong_tenant.close()

    fake.denied_to_apps.add(USER)
    denied = make_source(fake, tmp_path)
    with pytest.raises(SourceError, match="refused access to .*ErrorAccessDenied.*Calendars"):
        await denied.sync(WINDOW, None)
    await denied.close()

    nobody = make_source(fake, tmp_path, user="nobody@contoso.example")
    with pytest.raises(SourceError, match="does not find nobody@contoso.example.*ErrorInvalidUser"):
        await nobody.sync(WINDOW, None)
    await nobody.close()


async def test_refresh_token_rotates_and_the_newest_is_kept(fake, tmp_path, monkeypatch):
    public_app = "public-app-0001"
    fake.app(public_app, None)
    first_token = fake.refresh_token_for(public_app, USER)
    fake.add_event(USER, "RDV", datetime(2025, 3, 10, 9, tzinfo=PARIS))
    monkeypatch.setenv("GRAPH_REFRESH", first_token)
    settings = settings_for(
        fake,
        client_id=public_app,
        tenant_id="common",
        client_secret_env=None,
        user=None,
        refresh_token_env="GRAPH_REFRESH",
    )
    ctx = SourceContext(NAME, tmp_path, secrets=calendar_secrets(settings))
    source = build_calendar_source("graph", settings, ctx, NAME)
    try:
        result = await source.sync(WINDOW, None)
    finally:
        await source.close()
    assert [e.title for e in result.events] == ["RDV"]
    path, _, _ = delta_requests(fake)[0]
    assert path == "/v1.0/me/calendarView/delta"
    assert fake.token_requests[-1]["refresh_token"] == first_token
    assert fake.token_requests[-1]["scope"].split()[0] == f"{fake.url}/Calendars.ReadWrite"
    # Kept in the hub's state store (encrypted there), not on this machine's disk.
    assert list(tmp_path.glob("calendars/graph-*")) == []
    kept = json.loads(ctx.store.get_secret(ctx.namespace, RENEWED_KEY) or "{}")
    assert kept["refresh_token"] != first_token
    # The file of earlier builds is still listed for the hub (deleted with the calendar).
    parsed = GraphSettings.model_validate({"type": "graph", **settings})
    listed = GraphCalendarSource.state_files(parsed, ctx)
    tag = hashlib.sha256(f"{NAME}\n{public_app}\nNone".encode()).hexdigest()[:10]
    earlier = tmp_path / "calendars" / f"graph-calendar_Cabinet-{tag}.json"
    assert [f.path for f in listed] == [earlier, earlier.with_suffix(".tmp")]
    assert {f.what for f in listed} == {"renewed refresh token"}
    # Client credentials renew nothing: no file.
    app_only = GraphSettings.model_validate({"type": "graph", **settings_for(fake)})
    assert GraphCalendarSource.state_files(app_only, ctx) == []
    rotated = next(t for t in fake.refresh_tokens if t != first_token)

    again = build_calendar_source("graph", settings, ctx, NAME)
    try:
        await again.sync(WINDOW, None)
    finally:
        await again.close()
    assert fake.token_requests[-1]["refresh_token"] == rotated

    monkeypatch.setenv("GRAPH_REFRESH", "0.AXoA-revoked")
    revoked = build_calendar_source(
        "graph", settings, SourceContext(NAME, tmp_path, calendar_secrets(settings)), NAME
    )
    with pytest.raises(SourceError, match="refused the credentials.*invalid_grant: AADSTS70000"):
        await revoked.sync(WINDOW, None)
    await revoked.close()


async def test_the_renewed_token_follows_the_calendar_across_a_rename(fake, tmp_path, monkeypatch):
    public_app = "public-app-0002"
    fake.app(public_app, None)
    first_token = fake.refresh_token_for(public_app, USER)
    monkeypatch.setenv("GRAPH_REFRESH", first_token)
    settings = settings_for(
        fake, client_id=public_app, client_secret_env=None, refresh_token_env="GRAPH_REFRESH"
    )

    store = MemoryStateStore()  # the hub's, shared by every sync

    async def sync(name: str, calendar_id: int) -> None:
        ctx = SourceContext(
            name, tmp_path, calendar_secrets(settings), calendar_id=calendar_id, store=store
        )
        source = build_calendar_source("graph", settings, ctx, name)
        try:
            await source.sync(WINDOW, None)
        finally:
            await source.close()

    await sync(NAME, 5)
    rotated = json.loads(store.get_secret("calendar-5", RENEWED_KEY) or "{}")["refresh_token"]
    assert rotated != first_token
    # Renamed: the newest token Microsoft handed out, not the first one.
    await sync("calendar 'Cabinet Durand'", 5)
    assert fake.token_requests[-1]["refresh_token"] == rotated
    # A calendar of the same name in another account (same app, same user): its own file.
    await sync(NAME, 6)
    assert fake.token_requests[-1]["refresh_token"] == first_token
    assert store.get_secret("calendar-6", RENEWED_KEY) is not None


def test_device_code_login_returns_a_refresh_token(fake):
    fake.app("public-app-0002", None)
    fake.device_user = USER
    shown: list[str] = []
    token = device_code_login(
        "public-app-0002",
        authority=fake.url,
        graph_base_url=f"{fake.url}/v1.0",
        ca_file=fake.ca_file,
        show=shown.append,
    )
    assert fake.refresh_tokens[token] == ("public-app-0002", USER)
    assert "https://microsoft.com/devicelogin" in shown[0]

    with pytest.raises(SourceError, match="AADSTS700016"):
        device_code_login("unknown-app", authority=fake.url, ca_file=fake.ca_file)


async def test_annotate_appends_the_note_to_the_body(fake, tmp_path):
    html_id = fake.add_event(
        USER,
        "Mme Durand",
        datetime(2025, 3, 10, 9, tzinfo=PARIS),
        body="<html><head></head><body><p>Tél 06 12 34 56 78</p></body></html>",
        body_type="html",
    )
    _, occurrences = fake.add_series(USER, "Kiné", datetime(2025, 3, 3, 18, tzinfo=PARIS), 3)
    source = make_source(fake, tmp_path)
    try:
        result = await source.sync(WINDOW, None)
        single = next(e for e in result.events if e.title == "Mme Durand")
        assert single.description == "Tél 06 12 34 56 78"
        assert await source.annotate(single, "SMS: confirmed by the patient")
        assert await source.annotate(single, "SMS: confirmed by the patient")
        assert fake.events[html_id].body["content"] == (
            "<html><head></head><body><p>Tél 06 12 34 56 78</p>"
            "<p>SMS: confirmed by the patient</p></body></html>"
        )
    finally:
        await source.close()

    # After a restart the occurrence is found from its key around its start.
    fresh = make_source(fake, tmp_path)
    try:
        second = sorted((e for e in result.events if e.title == "Kiné"), key=lambda e: e.start)[1]
        assert await fresh.annotate(second, "SMS: CANCELLED by the patient")
        assert fake.events[occurrences[1]].body == {
            "contentType": "text",
            "content": "SMS: CANCELLED by the patient",
        }
        assert fake.events[occurrences[1]].type == "exception"
    finally:
        await fresh.close()

    read_only = make_source(fake, tmp_path, read_only=True)
    assert await read_only.annotate(single, "SMS: confirmed by the patient") is False
    await read_only.close()


async def test_time_zones_all_day_and_fields(fake, tmp_path):
    fake.add_event(
        USER,
        "Consultation",
        datetime(2025, 3, 11, 9, tzinfo=PARIS),
        zone="Romance Standard Time",
        location="12 rue de la Paix",
        attendees=[("Jeanne Durand", "jeanne@example.org")],
    )
    fake.add_event(
        USER,
        "New York call",
        datetime(2025, 3, 12, 9, tzinfo=ZoneInfo("America/New_York")),
        zone="America/New_York",
    )
    fake.add_event(USER, "Fermeture", date(2025, 3, 14), zone="Romance Standard Time")
    source = make_source(fake, tmp_path)
    try:
        events = {e.title: e for e in (await source.sync(WINDOW, None)).events}
    finally:
        await source.close()

    consultation = events["Consultation"]
    assert consultation.start == datetime(2025, 3, 11, 8, tzinfo=UTC)
    assert consultation.start.tzinfo == PARIS and consultation.start.hour == 9
    assert consultation.timezone == "Europe/Paris" and not consultation.all_day
    assert consultation.location == "12 rue de la Paix"
    assert [(a.email, a.name) for a in consultation.attendees] == [
        ("jeanne@example.org", "Jeanne Durand")
    ]
    assert consultation.etag.startswith("DwAAAB")

    new_york = events["New York call"]
    assert new_york.timezone == "America/New_York"
    assert new_york.start == datetime(2025, 3, 12, 13, tzinfo=UTC)

    closed = events["Fermeture"]
    assert closed.all_day and closed.timezone == "Europe/Paris"
    assert closed.start == datetime(2025, 3, 14, tzinfo=PARIS)
    assert closed.end == datetime(2025, 3, 15, tzinfo=PARIS)


def test_event_times_in_windows_zones_map_to_the_right_instant():
    item = {
        "id": "AAMk1",
        "iCalUId": "0400000082",
        "subject": "Consultation",
        "originalStartTimeZone": "Romance Standard Time",
        "start": {"dateTime": "2025-07-01T09:00:00.0000000", "timeZone": "Romance Standard Time"},
        "end": {"dateTime": "2025-07-01T09:30:00.0000000", "timeZone": "W. Europe Standard Time"},
        "isAllDay": False,
        "body": {"contentType": "html", "content": "<div>Tél&nbsp;: 06 12 34 56 78</div>"},
    }
    event = to_event(item, "UTC")
    assert event.start == datetime(2025, 7, 1, 7, tzinfo=UTC)
    assert event.end == datetime(2025, 7, 1, 7, 30, tzinfo=UTC)
    assert event.timezone == "Europe/Paris"
    assert event.description == "Tél : 06 12 34 56 78"
    # An all-day occurrence keyed by its day, whichever midnight Graph stores.
    for original in ("2025-07-01T00:00:00Z", "2025-06-30T22:00:00Z"):
        occurrence = to_event(
            {
                **item,
                "isAllDay": True,
                "seriesMasterId": "AAMkMaster",
                "originalStart": original,
                "start": {"dateTime": "2025-07-01T00:00:00.0000000", "timeZone": "UTC"},
                "end": {"dateTime": "2025-07-02T00:00:00.0000000", "timeZone": "UTC"},
            },
            "UTC",
        )
        assert occurrence.key == ("AAMkMaster", "2025-07-01")
        assert occurrence.start == datetime(2025, 7, 1, tzinfo=PARIS)


def test_settings_say_what_is_wrong():
    with pytest.raises(ValidationError, match="give client_secret_env .* or refresh_token_env"):
        GraphSettings.model_validate({"type": "graph", "client_id": "x"})
    with pytest.raises(ValidationError, match="need tenant_id"):
        GraphSettings.model_validate(
            {"type": "graph", "client_id": "x", "client_secret_env": "S", "user": "u@x"}
        )
    with pytest.raises(ValidationError, match="need user"):
        GraphSettings.model_validate(
            {"type": "graph", "client_id": "x", "client_secret_env": "S", "tenant_id": "t"}
        )
    with pytest.raises(ValidationError, match="unknown time zone"):
        GraphSettings.model_validate(
            {"type": "graph", "client_id": "x", "refresh_token_env": "R", "timezone": "Paris"}
        )
    windows = GraphSettings.model_validate(
        {
            "type": "graph",
            "client_id": "x",
            "refresh_token_env": "R",
            "timezone": "Romance Standard Time",
        }
    )
    assert windows.timezone == "Europe/Paris"
