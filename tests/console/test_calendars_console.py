"""Console calendars: add an ICS or CalDAV calendar, sync it, its reminders and problem events,
rules with a live preview, Google / Microsoft 365 sign-in, removal, and who may touch what."""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import select

from hub.console.routes_calendars import OAUTH_COOKIE
from hub.reminders.setup import add_calendar
from hub.store.db import session_scope
from hub.store.models import Calendar, ConnectorState, Message, Reminder
from tests.conftest import name_keyed_file, refuse_unlink
from tests.fakes import google_calendar, graph
from tests.servers._util import BackgroundServer

google_fake = google_calendar.google_fake
graph_fake = graph.graph_fake

PARIS = ZoneInfo("Europe/Paris")


def _ics(*events: str) -> bytes:
    body = "".join(
        f"BEGIN:VEVENT\r\n{e.strip()}\r\nDTSTAMP:20250301T000000Z\r\nEND:VEVENT\r\n" for e in events
    )
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n".encode()
    )


def _at(days: int, hour: int = 10) -> str:
    local = datetime.now(PARIS).replace(hour=hour, minute=0, second=0, microsecond=0)
    return (local + timedelta(days=days)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@pytest.fixture
def ics_url() -> Iterator[str]:
    """A real HTTP server with a calendar: Jeanne (a mobile number, named as an attendee) in
    3 days, Marc (none) in 4 days."""
    body = _ics(
        f"UID:rdv-jeanne\r\nDTSTART:{_at(3)}\r\nSUMMARY:RDV Jeanne Durand\r\n"
        "DESCRIPTION:Tel: 06 12 34 56 78\r\n"
        "ATTENDEE;CN=Jeanne Durand:mailto:jeanne@example.org",
        f"UID:rdv-marc\r\nDTSTART:{_at(4)}\r\nSUMMARY:RDV Marc Blanc\r\nLOCATION:Cabinet",
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with BackgroundServer(Handler) as server:
        yield f"{server.url}/private-3f9a/basic.ics"


def _follow(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["location"]


async def _added(hub: Any, ics_url: str, name: str = "Cabinet") -> int:
    """ICS_URL (a server on 127.0.0.1) connected to acme by the hub administrator, as
    `smshub calendars add acme NAME --type ics --set url=... --allow-private` does: the
    console refuses a private address (tests/security/test_outbound_guard.py)."""
    with session_scope(hub.engine) as s:
        settings = {"url": ics_url, "private_ok": True}
        return int(add_calendar(s, "acme", name, "ics", settings).id or 0)


async def _flash(client: Any, response: httpx.Response) -> str:
    page = await client.get(_follow(response))
    found = re.search(r'<p class="flash" role="status">(.*?)</p>', page.text, re.S)
    assert found, page.text
    return found.group(1)


def _renamed(name: str) -> dict[str, str]:
    """The rules form of a calendar renamed NAME (its other settings the defaults)."""
    return {
        "name": name,
        "offsets": "1d@09:00",
        "quiet_start": "21:00",
        "quiet_end": "08:00",
        "timezone": "Europe/Paris",
        "locale": "fr_FR",
        "enabled": "1",
    }


def _messages(hub: Any) -> list[Message]:
    with session_scope(hub.engine) as s:
        return list(s.exec(select(Message)).all())


async def test_add_ics_sync_and_see_reminders_and_problems(hub, console, ics_url):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    r = await alice.get(f"/console/calendars/{calendar_id}")
    assert r.status_code == 200 and "Cabinet" in r.text and "No reminder is planned" in r.text
    assert "/private-3f9a/basic.ics" in r.text

    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/sync"))
    assert "Synced: 2 appointments seen, 1 reminders planned" in flash
    assert "1 appointment(s) cannot get a reminder" in flash
    page = await alice.get(f"/console/calendars/{calendar_id}")
    upcoming = page.text.split('id="upcoming-title"')[1].split('id="problems-title"')[0]
    assert "+33 6 12 34 56 78" in upcoming and "1d@09:00" in upcoming
    assert "Bonjour Jeanne Durand" in upcoming
    problems = page.text.split('id="problems-title"')[1]
    assert "RDV Marc Blanc" in problems and "no mobile number" in problems
    listing = await alice.get("/console/calendars")
    assert f'href="/console/calendars/{calendar_id}"' in listing.text and "ics" in listing.text
    [sms] = _messages(hub)
    assert sms.recipient == "+33612345678" and sms.source == "calendar"


async def test_rules_preview_and_save(hub, console, ics_url):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    page = await alice.get(f"/console/calendars/{calendar_id}")
    assert f'data-preview="/console/calendars/{calendar_id}/preview"' in page.text

    template = "Bonjour {{ name }}, RDV le {{ start|date('d MMMM') }} à {{ start|time('HH:mm') }}"
    r = await alice.post(
        f"/console/calendars/{calendar_id}/preview",
        {"template": template, "offsets": "2d@09:00,3h", "quiet_start": "21:00"},
    )
    assert r.status_code == 200
    assert "For the next appointment" in r.text and "RDV Jeanne Durand" in r.text
    assert "Bonjour Jeanne Durand, RDV le" in r.text and "à 10:00" in r.text
    assert 'data-parts="1"' in r.text and 'data-cost="1"' in r.text
    assert "2d@09:00:" in r.text and "3h:" in r.text
    r = await alice.post(
        f"/console/calendars/{calendar_id}/preview",
        {"template": "{{ name ", "offsets": "demain"},
    )
    assert r.status_code == 200
    assert "reminder rule &#39;demain&#39; is not understood" in r.text
    assert "the reminder template cannot be used" in r.text

    form = {
        "name": "Cabinet Durand",
        "offsets": "2d@09:00, 3h",
        "quiet_start": "20:00",
        "quiet_end": "08:30",
        "template": template,
        "timezone": "Europe/Paris",
        "locale": "fr_FR",
        "enabled": "1",
    }
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/rules", form))
    # The 1d@09:00 reminder planned by the first sync belongs to a rule that is gone; the
    # new rules plan theirs at once (issue 17), not at the next sync.
    assert "1 reminder(s) of removed rules cancelled and refunded" in flash
    assert "0 reminders replanned, 2 newly planned" in flash
    with session_scope(hub.engine) as s:
        cal = s.get(Calendar, calendar_id)
        assert (cal.name, cal.offsets, cal.quiet_start, cal.quiet_end) == (
            "Cabinet Durand",
            "2d@09:00,3h",
            "20:00",
            "08:30",
        )
        assert cal.template == template
        statuses = sorted(r.status for r in s.exec(select(Reminder)).all())
        assert statuses == ["cancelled", "scheduled", "scheduled"]
    assert sorted(m.status for m in _messages(hub)) == ["cancelled", "queued", "queued"]
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/sync"))
    assert "0 reminders planned" in flash
    page = await alice.get(f"/console/calendars/{calendar_id}")
    assert "Bonjour Jeanne Durand, RDV le" in page.text

    bad = await alice.post(f"/console/calendars/{calendar_id}/rules", {**form, "offsets": "2x"})
    assert bad.status_code == 422 and "reminder rule &#39;2x&#39; is not understood" in bad.text
    bad = await alice.post(f"/console/calendars/{calendar_id}/rules", {**form, "locale": "xx_YY"})
    assert bad.status_code == 422 and "is not a known locale" in bad.text


async def test_preview_of_a_calendar_without_appointments_uses_a_sample(hub, console, ics_url):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    r = await alice.post(f"/console/calendars/{calendar_id}/preview", {"text": "RDV {{ name }}"})
    assert "For a sample appointment" in r.text and "RDV Jeanne Durand" in r.text


async def test_remove_cancels_and_refunds(hub, console, ics_url):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    page = await alice.get(f"/console/calendars/{calendar_id}")
    assert 'data-confirm="Remove the calendar Cabinet' in page.text
    (cached,) = (hub.config.hub.data_dir / "calendars").glob("*.ics")
    r = await alice.post(f"/console/calendars/{calendar_id}/remove")
    assert r.headers["location"] == "/console/calendars"
    flash = await _flash(alice, r)
    assert "Calendar Cabinet deleted: 1 scheduled reminder(s) cancelled" in flash
    # The last copy of the calendar (patients' appointments) goes with it; no server path.
    assert "Deleted 1 stored file(s) (cached copy of the calendar)." in flash
    assert str(cached) not in flash and not cached.exists()
    with session_scope(hub.engine) as s:
        assert s.get(Calendar, calendar_id) is None
    assert [m.status for m in _messages(hub)] == ["cancelled"]
    assert (await alice.get(f"/console/calendars/{calendar_id}")).status_code == 404


async def test_remove_keeping_history_keeps_the_files(hub, console, ics_url):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    (cached,) = (hub.config.hub.data_dir / "calendars").glob("*.ics")
    r = await alice.post(f"/console/calendars/{calendar_id}/remove", {"keep_history": "1"})
    flash = await _flash(alice, r)
    assert "Calendar Cabinet disabled" in flash and "stored file" not in flash
    assert cached.exists()


async def test_a_renamed_calendar_keeps_its_files(hub, console, ics_url, caplog):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    kept = hub.config.hub.data_dir / "calendars"
    (cached,) = kept.glob("*.ics")
    # As a hub before calendar ids left it: named after the calendar, not synced since.
    old = name_keyed_file(hub.config.hub.data_dir, "Cabinet", "ics", {"url": ics_url})
    cached.rename(old)
    caplog.set_level(logging.INFO, logger="smshub.calendars")
    r = await alice.post(f"/console/calendars/{calendar_id}/rules", _renamed("Cabinet Durand"))
    assert "Rules saved" in await _flash(alice, r)
    # Moved before the rename, after which its old name could not be told.
    assert cached.exists() and not old.exists()
    assert f"calendar 'Cabinet': moved its cached copy of the calendar from {old}" in caplog.text
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/sync"))
    assert "Synced: 2 appointments seen" in flash
    assert list(kept.iterdir()) == [cached]
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/remove"))
    assert "Deleted 1 stored file(s) (cached copy of the calendar)." in flash
    assert list(kept.iterdir()) == []


async def test_a_stored_file_that_cannot_be_deleted_is_told(hub, console, ics_url, monkeypatch):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    (cached,) = (hub.config.hub.data_dir / "calendars").glob("*.ics")
    refuse_unlink(monkeypatch, cached)
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/remove"))
    assert "Calendar Cabinet deleted" in flash
    assert "1 stored file(s) could not be deleted (cached copy of the calendar)" in flash
    assert str(cached) not in flash
    with session_scope(hub.engine) as s:
        assert s.get(Calendar, calendar_id) is None


async def test_caldav_password_is_kept_encrypted_in_the_database(hub, console):
    alice = await console("alice")
    r = await alice.post(
        "/console/calendars/add",
        {
            "kind": "caldav",
            "account": "acme-lyon",
            "name": "Agenda",
            "url": "https://cloud.example/remote.php/dav/",
            "username": "cabinet",
            "password": "app-password-123",
            "calendar": "Rendez-vous",
        },
    )
    calendar_id = int(_follow(r).rsplit("/", 1)[1])
    with session_scope(hub.engine) as s:
        cal = s.get(Calendar, calendar_id)
        settings = json.loads(cal.settings)
        rows = s.exec(select(ConnectorState)).all()
    assert "app-password-123" not in cal.settings
    assert settings["stored_secrets"] == ["password"]
    assert not (hub.config.hub.data_dir / "secrets").exists()
    # In the table, encrypted: never the password itself.
    [row] = rows
    assert (row.namespace, row.key, row.secret) == (f"calendar-{calendar_id}", "password", True)
    assert "app-password-123" not in row.value
    assert hub.state.get_secret(f"calendar-{calendar_id}", "password") == "app-password-123"
    assert settings["calendar"] == "Rendez-vous" and settings["username"] == "cabinet"
    page = await alice.get(f"/console/calendars/{calendar_id}")
    assert "app-password-123" not in page.text and row.value not in page.text
    assert "kept encrypted in the hub&#39;s database" in page.text
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/remove"))
    assert "Deleted what the hub kept for it in its database" in flash
    with session_scope(hub.engine) as s:
        assert s.exec(select(ConnectorState)).all() == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"url": "/etc/passwd"}, "files on the hub&#39;s server cannot be used"),
        ({"url": "file:///etc/passwd"}, "files on the hub&#39;s server cannot be used"),
        ({"more": "password_file=/etc/shadow"}, "can only be set with the smshub command line"),
        ({"more": "stored_secrets=password"}, "give the password in the Password field"),
        ({"more": "colour=blue"}, "unknown setting &#39;colour&#39;"),
        ({"more": "timeout"}, "&#39;timeout&#39; must be KEY=VALUE"),
        ({"offsets": "tomorrow"}, "reminder rule &#39;tomorrow&#39; is not understood"),
        ({"name": " "}, "give the calendar a name"),
        ({"kind": "google"}, "choose ics or caldav"),
    ],
)
async def test_add_form_refuses_what_it_cannot_use(hub, console, form, message):
    alice = await console("alice")
    base = {"kind": "ics", "name": "X", "url": "https://calendar.example/a.ics"}
    r = await alice.post("/console/calendars/add", {**base, **form})
    assert r.status_code == 422, r.text
    assert message in r.text
    with session_scope(hub.engine) as s:
        assert s.exec(select(Calendar)).all() == []


async def test_duplicate_name_is_refused(hub, console, ics_url):
    alice = await console("alice")
    await _added(hub, ics_url)
    r = await alice.post(
        "/console/calendars/add",
        {"kind": "ics", "account": "acme", "name": "Cabinet", "url": ics_url},
    )
    assert r.status_code == 422 and "already has a calendar named" in r.text


async def test_other_accounts_cannot_see_edit_sync_or_remove(hub, console, ics_url):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    before = [(m.id, m.status) for m in _messages(hub)]
    for name in ("lyon", "eve"):
        client = await console(name)
        listing = await client.get("/console/calendars")
        assert listing.status_code == 200
        assert f"/console/calendars/{calendar_id}" not in listing.text
        assert (await client.get(f"/console/calendars/{calendar_id}")).status_code == 404
        for action, form in (
            ("rules", {"offsets": "1h", "quiet_start": "21:00", "quiet_end": "08:00"}),
            ("preview", {"template": "x"}),
            ("sync", {}),
            ("remove", {}),
        ):
            r = await client.post(f"/console/calendars/{calendar_id}/{action}", form)
            assert r.status_code == 404, (name, action, r.status_code)
            assert "Cabinet" not in r.text
        r = await client.post(
            "/console/calendars/add",
            {"kind": "ics", "account": "acme", "name": "Pirate", "url": ics_url},
        )
        assert r.status_code == 404
        r = await client.get("/console/calendars/oauth/google/start?account=acme")
        assert r.status_code in (400, 404)
    with session_scope(hub.engine) as s:
        cal = s.get(Calendar, calendar_id)
        assert (cal.name, cal.offsets, cal.enabled) == ("Cabinet", "1d@09:00", True)
        assert [c.name for c in s.exec(select(Calendar)).all()] == ["Cabinet"]
    assert [(m.id, m.status) for m in _messages(hub)] == before
    # The sub-account's own user adds to its own account; alice (the parent) sees it too.
    lyon = await console("lyon")
    lyon_url = "https://calendar.example/lyon.ics"  # a public name (not resolvable here)
    r = await lyon.post("/console/calendars/add", {"kind": "ics", "name": "Lyon", "url": lyon_url})
    lyon_id = int(_follow(r).rsplit("/", 1)[1])
    assert (await alice.get(f"/console/calendars/{lyon_id}")).status_code == 200
    eve = await console("eve")
    assert (await eve.get(f"/console/calendars/{lyon_id}")).status_code == 404


async def test_oauth_buttons_say_which_config_keys_to_set(console):
    alice = await console("alice")
    page = await alice.get("/console/calendars")
    assert "<code>calendar_oauth.google.client_id</code>" in page.text
    assert "<code>calendar_oauth.microsoft.client_secret_env" in page.text
    assert "/console/calendars/oauth/callback" in page.text
    r = await alice.get("/console/calendars/oauth/google/start?account=acme")
    assert r.status_code == 400
    assert (
        "set calendar_oauth.google.client_id and calendar_oauth.google.client_secret_env" in r.text
    )
    assert (await alice.get("/console/calendars/oauth/yahoo/start")).status_code == 404


# -- Google and Microsoft 365 -------------------------------------------------------------------
@pytest.fixture
def google(hub: Any, google_fake: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The console's Google client pointed at the local stand-in."""
    google_fake.oauth_client("web-client.apps.googleusercontent.com", "g-secret", "1//g-refresh")
    monkeypatch.setenv("TEST_GOOGLE_SECRET", "g-secret")
    # The stand-in speaks plain HTTP; oauthlib refuses that unless told it is a test.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    section = hub.config.calendar_oauth.google
    section.client_id = "web-client.apps.googleusercontent.com"
    section.client_secret_env = "TEST_GOOGLE_SECRET"
    section.auth_url = f"{google_fake.url}/o/oauth2/auth"
    section.token_url = f"{google_fake.url}/token"
    section.api_url = f"{google_fake.url}/"
    return google_fake


def _consent(location: str, **kw: Any) -> str:
    """What the provider's consent page answers: the callback path with code and state."""
    answer = httpx.get(location, follow_redirects=False, **kw)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert back.path == "/console/calendars/oauth/callback"
    return f"{back.path}?{back.query}"


async def test_google_sign_in_connects_the_primary_calendar(hub, console, google):
    google.add_event(
        "RDV Paul Petit",
        datetime.now(UTC) + timedelta(days=3),
        description="Portable : 07 81 22 33 44",
    )
    alice = await console("alice")
    page = await alice.get("/console/calendars")
    assert 'href="/console/calendars/oauth/google/start?account=acme"' in page.text
    r = await alice.get("/console/calendars/oauth/google/start?account=acme")
    location = r.headers["location"]
    asked = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{google.url}/o/oauth2/auth?")
    assert asked["redirect_uri"] == ["http://127.0.0.1:8025/console/calendars/oauth/callback"]
    assert asked["code_challenge_method"] == ["S256"] and asked["access_type"] == ["offline"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(OAUTH_COOKIE) and "HttpOnly" in cookie

    done = await alice.get(_consent(location))
    calendar_id = int(_follow(done).rsplit("/", 1)[1])
    # The verifier's cookie is spent.
    assert any(
        c.startswith(f'{OAUTH_COOKIE}=""') and "Max-Age=0" in c
        for c in done.headers.get_list("set-cookie")
    )
    code_grant = [f for f in google.token_requests if f.get("grant_type") == "authorization_code"]
    assert len(code_grant) == 1 and code_grant[0]["code_verifier"]
    with session_scope(hub.engine) as s:
        cal = s.get(Calendar, calendar_id)
        settings = json.loads(cal.settings)
    assert (cal.name, cal.source_type, cal.account_id) == ("Google", "google", 1)
    assert settings["client_secret_env"] == "TEST_GOOGLE_SECRET"
    assert "g-secret" not in cal.settings and "1//g-refresh" not in cal.settings
    # The refresh token is kept encrypted with the calendar; the sign-in's entries are gone.
    assert settings["stored_secrets"] == ["refresh_token"]
    assert hub.state.get_secret(f"calendar-{calendar_id}", "refresh_token") == "1//g-refresh"
    with session_scope(hub.engine) as s:
        rows = s.exec(select(ConnectorState)).all()
    assert [(r.namespace, r.key) for r in rows] == [(f"calendar-{calendar_id}", "refresh_token")]
    assert "1//g-refresh" not in rows[0].value
    assert settings["calendar_id"] == "primary"
    # The refresh token works: a sync reads the calendar through it.
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/sync"))
    assert "Synced: 1 appointments seen, 1 reminders planned" in flash
    # The same answer again (replayed) is refused: its cookie is gone.
    alice.http.cookies.delete(OAUTH_COOKIE)
    again = await alice.get(_consent(location))
    assert again.status_code == 422 and "start again" in again.text


async def test_forged_or_foreign_state_is_refused(hub, console, google):
    alice = await console("alice")
    r = await alice.get("/console/calendars/oauth/google/start?account=acme&name=Agenda")
    callback = _consent(r.headers["location"])
    state = parse_qs(urlsplit(callback).query)["state"][0]
    body, signature = state.split(".")
    forged_body = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    forged = callback.replace(state, f"{forged_body}.{signature}")
    r = await alice.get(forged)
    assert r.status_code == 422 and "not valid" in r.text
    # Another user with the same answer (and even the same cookie) gets nothing.
    eve = await console("eve")
    for cookie in alice.http.cookies.jar:
        if cookie.name == OAUTH_COOKIE:
            eve.http.cookies.jar.set_cookie(cookie)
    r = await eve.get(callback)
    assert r.status_code == 403
    # Without the cookie of the browser that started it: refused too.
    lyon = await console("lyon")
    assert (await lyon.get(callback)).status_code == 422
    # Nor can a sub-account's user start a sign-in for its parent's account.
    r = await lyon.get("/console/calendars/oauth/google/start?account=acme")
    assert r.status_code == 404 and OAUTH_COOKIE not in r.headers.get("set-cookie", "")
    with session_scope(hub.engine) as s:
        assert s.exec(select(Calendar)).all() == []
    assert not [f for f in google.token_requests if f.get("grant_type") == "authorization_code"]
    # Consent refused at Google: a clear message, nothing stored.
    google.consent_error = "access_denied"
    r = await alice.get("/console/calendars/oauth/google/start?account=acme")
    flash = await _flash(alice, await alice.get(_consent(r.headers["location"])))
    assert "Google did not connect the calendar: access_denied" in flash


@pytest.fixture
def microsoft(hub: Any, graph_fake: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    graph_fake.app("11111111-2222-3333-4444-555555555555", "m-secret")
    graph_fake.add_mailbox("dr.martin@cabinet.example", "AAMkAD-second-calendar")
    graph_fake.authorize_user = "dr.martin@cabinet.example"
    monkeypatch.setenv("TEST_MS_SECRET", "m-secret")
    section = hub.config.calendar_oauth.microsoft
    section.client_id = "11111111-2222-3333-4444-555555555555"
    section.client_secret_env = "TEST_MS_SECRET"
    section.authority = graph_fake.url
    section.graph_url = f"{graph_fake.url}/v1.0"
    section.ca_file = graph_fake.ca_file
    return graph_fake


async def test_microsoft_sign_in_offers_the_calendars_then_connects_the_chosen_one(
    hub, console, microsoft
):
    microsoft.add_event(
        "dr.martin@cabinet.example",
        "RDV Anne Roux",
        datetime.now(UTC) + timedelta(days=2),
        body="Tel. 06 98 76 54 32",
        calendar_id="AAMkAD-second-calendar",
    )
    alice = await console("alice")
    r = await alice.get("/console/calendars/oauth/microsoft/start?account=acme-lyon&name=Outlook")
    location = r.headers["location"]
    assert location.startswith(f"{microsoft.url}/common/oauth2/v2.0/authorize?")
    assert parse_qs(urlsplit(location).query)["code_challenge_method"] == ["S256"]
    trust = ssl.create_default_context(cafile=microsoft.ca_file)
    choose = await alice.get(_consent(location, verify=trust))
    assert choose.status_code == 200
    assert "Which Microsoft 365 calendar?" in choose.text
    assert 'value="AAMkAD-second-calendar"' in choose.text
    pending = re.search(r'name="pending" value="([^"]+)"', choose.text).group(1)
    r = await alice.post(
        "/console/calendars/oauth/finish",
        {"pending": pending, "calendar": "AAMkAD-second-calendar"},
    )
    calendar_id = int(_follow(r).rsplit("/", 1)[1])
    with session_scope(hub.engine) as s:
        cal = s.get(Calendar, calendar_id)
        settings = json.loads(cal.settings)
    assert (cal.name, cal.source_type) == ("Outlook", "graph")
    assert settings["calendar_id"] == "AAMkAD-second-calendar"
    assert settings["client_secret_env"] == "TEST_MS_SECRET"
    namespace = f"calendar-{calendar_id}"
    assert hub.state.get_secret(namespace, "refresh_token").startswith("0.AXoA-refresh-")
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/sync"))
    assert "Synced: 1 appointments seen, 1 reminders planned" in flash
    # The choice cannot be replayed by another user, nor altered.
    eve = await console("eve")
    r = await eve.post("/console/calendars/oauth/finish", {"pending": pending, "calendar": "x"})
    assert r.status_code == 403
    r = await alice.post("/console/calendars/oauth/finish", {"pending": pending + "x"})
    assert r.status_code == 422
    # Nor made twice: the token waiting for the choice went with the first.
    r = await alice.post("/console/calendars/oauth/finish", {"pending": pending, "calendar": ""})
    assert r.status_code == 422 and "expired or was used" in r.text
    # Renamed: the next sync signs in with the newest token Microsoft handed out.
    newest = json.loads(hub.state.get_secret(namespace, "renewed_refresh_token"))["refresh_token"]
    r = await alice.post(f"/console/calendars/{calendar_id}/rules", _renamed("Outlook Martin"))
    assert "Rules saved" in await _flash(alice, r)
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/sync"))
    assert "Synced: 1 appointments seen" in flash
    assert microsoft.token_requests[-1]["refresh_token"] == newest
    # Removed: the token of the sign-in and the newest one Microsoft handed out go with it.
    flash = await _flash(alice, await alice.post(f"/console/calendars/{calendar_id}/remove"))
    assert "Deleted what the hub kept for it in its database" in flash
    with session_scope(hub.engine) as s:
        assert s.exec(select(ConnectorState)).all() == []
    assert not list((hub.config.hub.data_dir / "calendars").glob("graph-*"))
