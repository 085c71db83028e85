"""A receptionist's day with reminder answers, in a real browser against a real hub process
(issue 17): the auto-responder is on, patients confirm and cancel their appointments by SMS
(one first writes a sentence), and the calendar page shows both answers, filterable.

Its own module, so its own hub: the reminders it sends open questions to the seeded numbers
that the other journeys' conversations must not meet.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import select

from hub.core.timeutil import utcnow
from hub.store.db import make_engine, session_scope
from hub.store.models import Message
from tests.browser.conftest import COLLEAGUE, PATIENT, LiveHub, screenshot
from tests.browser.test_journeys import log_in, nav, reload_until

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture reports it: a failure with CI=true, else a skip
    expect = None

Page = Any
PARIS = ZoneInfo("Europe/Paris")
AUTOREPLY = "Ce numéro ne lit pas les réponses."


def _calendar(hub: LiveHub) -> str:
    """Jeanne (PATIENT) in 3 days and Paul (COLLEAGUE) in 4, each with a Nom: line."""

    def stamp(days: int, hour: int) -> str:
        local = datetime.now(PARIS).replace(hour=hour, minute=0, second=0, microsecond=0)
        return f"{local + timedelta(days=days):%Y%m%dT%H%M%S}"

    body = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//smshub tests//EN"]
    for uid, start, phone, name in (
        ("rdv-jeanne", stamp(3, 9), "06 12 34 56 78", "Jeanne Durand"),
        ("rdv-paul", stamp(4, 14), "06 98 76 54 32", "Paul Martin"),
    ):
        body += [
            "BEGIN:VEVENT",
            f"UID:{uid}@cabinet.example",
            "DTSTAMP:20250101T000000Z",
            f"DTSTART;TZID=Europe/Paris:{start}",
            "DURATION:PT30M",
            f"SUMMARY:Contrôle {phone}",
            f"DESCRIPTION:Tél. : {phone}\\nNom: {name}",
            "END:VEVENT",
        ]
    body.append("END:VCALENDAR")
    return hub.ics.publish("answers.ics", "\n".join(body) + "\n")


def _engine(hub: LiveHub) -> Any:
    return make_engine(f"sqlite:///{hub.config_path.parent / 'smshub.db'}")


def _reminders_go_out(hub: LiveHub) -> None:
    """Two days pass: the planned reminders are due now, and the hub sends them."""
    engine = _engine(hub)
    try:
        with session_scope(engine) as s:
            planned = s.exec(select(Message).where(Message.source == "calendar")).all()
            assert len(planned) == 2
            for m in planned:
                m.due_at = utcnow()
        deadline = time.monotonic() + 20
        while True:
            with session_scope(engine) as s:
                statuses = [
                    m.status
                    for m in s.exec(select(Message).where(Message.source == "calendar")).all()
                ]
            if statuses == ["delivered", "delivered"]:
                return
            assert time.monotonic() < deadline, statuses
            time.sleep(0.2)
    finally:
        engine.dispose()


def _sent_by(hub: LiveHub, source: str) -> list[Message]:
    engine = _engine(hub)
    try:
        with session_scope(engine) as s:
            return list(s.exec(select(Message).where(Message.source == source)).all())
    finally:
        engine.dispose()


def test_confirm_and_cancel_by_sms_with_the_auto_responder_on(
    live_hub: LiveHub, page: Page
) -> None:
    url = _calendar(live_hub)
    # The administrator connects the practice's calendar (a server on this machine).
    live_hub.cli(
        "calendars", "add", "acme", "cabinet", "--type", "ics", "--set", f"url={url}",
        "--allow-private", "--offsets", "2d@09:00",
    )  # fmt: skip
    log_in(page, live_hub)

    # The receptionist turns the auto-responder on.
    nav(page, "Account")
    autoreply = page.get_by_role("region", name="Auto-responder")
    autoreply.get_by_label("Answer every SMS received with this text").check()
    autoreply.get_by_label("Auto-reply text").fill(AUTOREPLY)
    autoreply.get_by_role("button", name="Save auto-responder").click()
    expect(page.get_by_role("status")).to_be_visible()

    # She syncs the calendar: both patients get a reminder greeting them by name.
    nav(page, "Calendars")
    page.get_by_role("link", name="cabinet", exact=True).click()
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status")).to_contain_text("2 reminders planned")
    upcoming = page.get_by_role("region", name="Upcoming reminders")
    expect(upcoming).to_contain_text("Bonjour Jeanne Durand, rappel de votre RDV")
    expect(upcoming).to_contain_text("Paul Martin")

    _reminders_go_out(live_hub)
    # Jeanne first writes a sentence (read by the receptionist, no auto-reply), then OUI;
    # Paul answers NON.
    live_hub.inbound(PATIENT, "Bonjour, faut-il apporter la radio ?")
    live_hub.inbound(PATIENT, "OUI")
    live_hub.inbound(COLLEAGUE, "NON")

    page.reload()
    appointments = page.get_by_role("region", name="Upcoming appointments and answers")
    jeanne = appointments.get_by_role("row").filter(has_text="Jeanne Durand")
    paul = appointments.get_by_role("row").filter(has_text="Paul Martin")
    reload_until(page, jeanne, "confirmed by the patient")
    reload_until(page, paul, "cancelled by the patient")
    expect(jeanne).to_contain_text("(description)")  # where the name came from
    screenshot(page, "calendar_answers")

    # Filtered: the cancelled ones only, then the confirmed ones only.
    appointments.get_by_role("link", name="cancelled", exact=True).click()
    appointments = page.get_by_role("region", name="Upcoming appointments and answers")
    expect(appointments).to_contain_text("Paul Martin")
    expect(appointments).not_to_contain_text("Jeanne Durand")
    appointments.get_by_role("link", name="confirmed", exact=True).click()
    appointments = page.get_by_role("region", name="Upcoming appointments and answers")
    expect(appointments).to_contain_text("Jeanne Durand")
    expect(appointments).not_to_contain_text("Paul Martin")

    # The auto-responder answered neither number: each had an open reminder question.
    assert _sent_by(live_hub, "autoreply") == []
