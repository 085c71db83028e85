"""The console's calendar page after issue 17: saving settings replans the reminders already
planned and says how many; the preview names the person greeted, where the name came from,
and shows an all-day appointment without a time and its hour rules as not sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from hub.store.db import session_scope
from hub.store.models import Message
from tests.console.test_calendars_console import _added, _flash, _ics, ics_url  # noqa: F401
from tests.servers._util import BackgroundServer

PARIS = ZoneInfo("Europe/Paris")


def _form(**changes: str) -> dict[str, str]:
    return {
        "name": "Cabinet",
        "offsets": "1d@09:00",
        "quiet_start": "21:00",
        "quiet_end": "08:00",
        "template": "",
        "timezone": "Europe/Paris",
        "locale": "fr_FR",
        "enabled": "1",
        **changes,
    }


def _due(hub: Any) -> list[datetime]:
    with session_scope(hub.engine) as s:
        rows = s.exec(select(Message).where(Message.status == "queued")).all()
        return [
            (m.due_at if m.due_at.tzinfo else m.due_at.replace(tzinfo=UTC)).astimezone(PARIS)
            for m in rows
        ]


async def test_saving_quiet_hours_moves_planned_reminders_and_says_how_many(
    hub,
    console,
    ics_url,  # noqa: F811
):
    alice = await console("alice")
    calendar_id = await _added(hub, ics_url)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    [due] = _due(hub)
    assert due.time() == time(9, 0)

    r = await alice.post(
        f"/console/calendars/{calendar_id}/rules", _form(quiet_start="20:00", quiet_end="09:30")
    )
    flash = await _flash(alice, r)
    assert "Rules saved. 1 reminder replanned" in flash
    [due] = _due(hub)
    assert due.time() == time(19, 59)  # the evening before quiet hours began
    # Saved again unchanged: nothing moves.
    r = await alice.post(
        f"/console/calendars/{calendar_id}/rules", _form(quiet_start="20:00", quiet_end="09:30")
    )
    assert "0 reminders replanned" in await _flash(alice, r)

    page = await alice.get(f"/console/calendars/{calendar_id}")
    assert "Jeanne Durand" in page.text and "(attendee)" in page.text
    preview = await alice.post(
        f"/console/calendars/{calendar_id}/preview", {"template": "", "offsets": "1d@09:00"}
    )
    assert "Jeanne Durand (name from attendee)" in preview.text
    assert "Bonjour Jeanne Durand, rappel de votre RDV le" in preview.text


@pytest.fixture
def all_day_url() -> Iterator[str]:
    """A calendar with one all-day appointment in 3 days, a mobile number and no name."""
    day = (datetime.now(PARIS) + timedelta(days=3)).strftime("%Y%m%d")
    body = _ics(
        f"UID:journee\r\nDTSTART;VALUE=DATE:{day}\r\nSUMMARY:Journée Mme Vert\r\n"
        "DESCRIPTION:Tel: 06 12 34 56 78"
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    with BackgroundServer(Handler) as server:
        yield f"{server.url}/journee.ics"


async def test_all_day_appointment_in_preview_and_problems(hub, console, all_day_url):
    alice = await console("alice")
    calendar_id = await _added(hub, all_day_url)
    r = await alice.post(f"/console/calendars/{calendar_id}/rules", _form(offsets="3h,1d"))
    assert "Rules saved." in await _flash(alice, r)
    await alice.post(f"/console/calendars/{calendar_id}/sync")
    [due] = _due(hub)
    assert due.time() == time(9, 0)  # 1d: the day before at 09:00
    preview = await alice.post(
        f"/console/calendars/{calendar_id}/preview", {"template": "", "offsets": "3h,1d"}
    )
    assert "all day" in preview.text and "no name found" in preview.text
    assert "3h: not sent (all-day appointment: hour rules do not apply)" in preview.text
    assert "Bonjour, rappel de votre RDV le" in preview.text and "00:00" not in preview.text
    page = await alice.get(f"/console/calendars/{calendar_id}")
    problems = page.text.split('id="problems-title"')[1]
    assert "Journée Mme Vert" in problems and "3h not sent, hour rules do not apply" in problems
