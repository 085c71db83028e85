"""The calendar page shows which upcoming appointments the patients confirmed, cancelled or
left unanswered (filterable), in the calendar's own time zone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from hub.reminders.setup import add_calendar
from hub.store.db import session_scope
from hub.store.models import Message
from tests.servers._util import BackgroundServer

PARIS = ZoneInfo("Europe/Paris")
PATIENTS = {
    "anne": ("+33611111111", 3, 16, 43),
    "bruno": ("+33622222222", 4, 9, 15),
    "chloe": ("+33633333333", 5, 11, 0),
}


def _start(days: int, hour: int, minute: int) -> datetime:
    local = datetime.now(PARIS).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (local + timedelta(days=days)).astimezone(UTC)


@pytest.fixture
def ics_url() -> Iterator[str]:
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:rdv-{name}\r\nDTSTAMP:20250301T000000Z\r\n"
        f"DTSTART:{_start(d, h, m):%Y%m%dT%H%M%SZ}\r\nSUMMARY:RDV {name.title()}\r\n"
        f"DESCRIPTION:Tel: 0{number[3:]}\\nNom: {name.title()}\r\nEND:VEVENT\r\n"
        for name, (number, d, h, m) in PATIENTS.items()
    )
    body = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n"
    raw = body.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with BackgroundServer(Handler) as server:
        yield f"{server.url}/cabinet.ics"


def _rows(page: str) -> dict[str, str]:
    """Title -> the row's text, in the appointments table."""
    section = page.split('id="appointments-title"')[1].split('id="upcoming-title"')[0]
    rows = re.findall(r"<tr data-answer=\"(\w+)\">(.*?)</tr>", section, re.S)
    found = {}
    for answer, row in rows:
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
        title = re.search(r"RDV \w+", text)
        assert title, text
        found[title.group(0)] = f"{answer}: {text}"
    return found


async def test_calendar_page_shows_and_filters_answers(hub, console, ics_url):
    with session_scope(hub.engine) as s:
        calendar_id = add_calendar(
            s, "acme", "Cabinet", "ics", {"url": ics_url, "private_ok": True}
        ).id
    alice = await console("alice")
    r = await alice.post(f"/console/calendars/{calendar_id}/sync")
    assert r.status_code == 303
    with session_scope(hub.engine) as s:
        for m in s.exec(select(Message)).all():
            m.due_at = datetime.now(UTC)
    await hub.dispatcher.drain()
    sim = hub.providers["simulator"]
    await sim.receive(PATIENTS["anne"][0], "OUI")
    await sim.receive(PATIENTS["bruno"][0], "Non")

    page = await alice.get(f"/console/calendars/{calendar_id}")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert set(rows) == {"RDV Anne", "RDV Bruno", "RDV Chloe"}
    anne, bruno, chloe = rows["RDV Anne"], rows["RDV Bruno"], rows["RDV Chloe"]
    assert anne.startswith("confirmed:") and "confirmed by the patient" in anne
    assert bruno.startswith("cancelled:") and "cancelled by the patient" in bruno
    assert chloe.startswith("unanswered:") and "unanswered" in chloe
    # The calendar's own time (Paris), not UTC.
    day = _start(3, 16, 43).astimezone(PARIS)
    assert f"{day:%Y-%m-%d} 16:43 Europe/Paris" in anne
    assert "+33 6 11 11 11 11" in rows["RDV Anne"]
    # The answer is being written to the calendar (an ICS feed is read-only).
    assert "being written" in rows["RDV Anne"] or "read-only" in rows["RDV Anne"]

    for answer, titles in [
        ("confirmed", {"RDV Anne"}),
        ("cancelled", {"RDV Bruno"}),
        ("unanswered", {"RDV Chloe"}),
        ("all", {"RDV Anne", "RDV Bruno", "RDV Chloe"}),
    ]:
        page = await alice.get(f"/console/calendars/{calendar_id}?answer={answer}")
        assert set(_rows(page.text)) == titles, answer
        assert f'<strong aria-current="page">{answer}</strong>' in page.text

    bad = await alice.get(f"/console/calendars/{calendar_id}?answer=maybe")
    assert bad.status_code == 422
    assert "answer must be one of all, confirmed, cancelled, unanswered" in bad.text
