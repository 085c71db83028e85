"""Reminder answers (OUI / NON) are never lost: an open reminder question outranks the
auto-responder and any later SMS to the number, the receptionist reads the calendar's own
time, and the answer reaches the calendar when it arrives (retried when the server fails)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from hub.app import Hub
from hub.core.config import Config
from hub.errors import SourceError
from hub.ports.calendar import CalendarEvent, SyncResult, SyncWindow
from hub.reminders import writeback
from hub.reminders.reconcile import reconcile
from hub.reminders.sync import sync_calendar
from hub.sending import submit as sending
from hub.sending.accounts import get_account
from hub.store.db import session_scope
from hub.store.models import Account, Calendar, CalendarEventRow, InboundMessage, Message
from tests.conftest import MakeHub, make_config
from tests.servers.radicale import RadicaleServer, radicale_fixture  # noqa: F401

PARIS = ZoneInfo("Europe/Paris")
PATIENT = "+33612345678"
RECEPTION = "accueil@cabinet.example"
AUTOREPLY = "Ce numéro ne lit pas les réponses."


def _at(days: int, hour: int, minute: int = 0) -> datetime:
    """A Paris wall-clock time DAYS from today, as aware UTC."""
    local = datetime.now(PARIS) + timedelta(days=days)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(UTC)


def _event(start: datetime, uid: str = "ev1") -> CalendarEvent:
    return CalendarEvent(
        uid=uid,
        occurrence="",
        start=start,
        end=start + timedelta(minutes=30),
        timezone="Europe/Paris",
        title="Consultation",
        description="Tel: 06 12 34 56 78\nNom: Jeanne",
    )


def _calendar(engine: Engine, **fields: Any) -> int:
    with session_scope(engine) as s:
        cal = Calendar(
            account_id=get_account(s, "acme").id,
            name="cabinet",
            source_type=fields.pop("source_type", "ics"),
            offsets="2d@09:00",
            timezone="Europe/Paris",
            notify_mailbox=RECEPTION,
            **fields,
        )
        s.add(cal)
        s.flush()
        assert cal.id is not None
        return cal.id


def _plan(engine: Engine, config: Config, calendar_id: int, start: datetime) -> None:
    """Sync one appointment and make its reminder due now."""
    window = SyncWindow(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(60))
    with session_scope(engine) as s:
        cal = s.get(Calendar, calendar_id)
        assert cal is not None
        reconcile(s, config, cal, SyncResult([_event(start)], full=True), window)
        for m in s.exec(select(Message).where(Message.source == "calendar")).all():
            m.due_at = datetime.now(UTC)


def _autoresponder_on(engine: Engine) -> None:
    with session_scope(engine) as s:
        acc = s.exec(select(Account).where(Account.name == "acme")).one()
        acc.autoreply_enabled = True
        acc.autoreply_text = AUTOREPLY


def _messages(engine: Engine, source: str) -> list[Message]:
    with session_scope(engine) as s:
        return list(s.exec(select(Message).where(Message.source == source)).all())


def _last_inbound(engine: Engine) -> InboundMessage:
    with session_scope(engine) as s:
        return s.exec(select(InboundMessage).order_by(col(InboundMessage.id).desc())).first()


def _row(engine: Engine) -> CalendarEventRow:
    with session_scope(engine) as s:
        return s.exec(select(CalendarEventRow)).one()


@pytest.fixture
def mail_config(db_url: str, tmp_path: Any, smtp_sink: Any) -> Config:
    return make_config(
        db_url, tmp_path, mail_out={"host": "127.0.0.1", "port": smtp_sink.port, "starttls": False}
    )


@pytest.fixture
async def driven(
    mail_config: Config, engine: Engine, account: str, make_hub: MakeHub
) -> AsyncIterator[Hub]:
    """A hub whose dispatcher and mail outbox the test drives."""
    hub = await make_hub(config=mail_config)
    yield hub
    await hub.stop()


async def test_non_after_a_sentence_cancels_with_the_auto_responder_on(
    driven: Hub, engine: Engine, smtp_sink: Any
) -> None:
    hub = driven
    _autoresponder_on(engine)
    calendar_id = _calendar(engine)
    start = _at(3, 16, 43)
    _plan(engine, hub.config, calendar_id, start)
    assert hub.dispatcher is not None
    await hub.dispatcher.drain()  # the reminder goes out
    sim = hub.providers["simulator"]

    # The patient first writes a sentence: the receptionist reads it, no auto-reply.
    await sim.receive(PATIENT, "Bonjour, est-ce qu'il faut apporter la radio ?")
    assert _messages(engine, "autoreply") == []
    first = _last_inbound(engine)
    assert first.handling == "forwarded" and first.forwarded_to == RECEPTION

    # Then NON: it answers the reminder, the appointment is cancelled.
    await sim.receive(PATIENT, "NON")
    assert _messages(engine, "autoreply") == []
    assert _last_inbound(engine).handling == "reminder-cancelled"
    row = _row(engine)
    assert row.answer == "cancelled" and row.answer_at is not None
    assert row.answer_due_at is not None  # queued for writing to the calendar now

    assert hub.mail_outbox is not None
    assert await hub.mail_outbox.send_due() == 2
    subjects = [m["Subject"] for m in smtp_sink.messages]
    assert subjects[0].startswith("SMS from +33 6 12 34 56 78")
    # The receptionist reads Paris time, not UTC (16:43, not 15:43 or 14:43).
    local = start.astimezone(PARIS).strftime("%Y-%m-%d 16:43 Europe/Paris")
    assert subjects[1] == f"Appointment CANCELLED: Consultation ({local})"
    assert f"on {local} by answering 'NON'" in smtp_sink.messages[1].get_content()


async def test_open_question_outranks_later_sms_to_the_number(driven: Hub, engine: Engine) -> None:
    hub = driven
    calendar_id = _calendar(engine)
    _plan(engine, hub.config, calendar_id, _at(3, 10))
    assert hub.dispatcher is not None
    await hub.dispatcher.drain()
    # Another SMS of ours to the same number after the reminder (an alert, a campaign...).
    sending.submit(
        engine,
        hub.config,
        sending.SubmitRequest(account="acme", recipients=[PATIENT], text="Le cabinet est fermé."),
    )
    await hub.dispatcher.drain()
    await hub.providers["simulator"].receive(PATIENT, "oui")
    assert _last_inbound(engine).handling == "reminder-confirmed"
    assert _row(engine).answer == "confirmed"


async def test_question_closes_when_the_appointment_starts(driven: Hub, engine: Engine) -> None:
    hub = driven
    _autoresponder_on(engine)
    calendar_id = _calendar(engine)
    _plan(engine, hub.config, calendar_id, _at(3, 10))
    assert hub.dispatcher is not None
    await hub.dispatcher.drain()
    with session_scope(engine) as s:
        row = s.exec(select(CalendarEventRow)).one()
        row.start = datetime.now(UTC) - timedelta(minutes=5)  # it has started
    await hub.providers["simulator"].receive(PATIENT, "Merci pour tout")
    # No open question any more: the auto-responder answers as for any SMS.
    assert [m.text for m in _messages(engine, "autoreply")] == [AUTOREPLY]


class FlakySource:
    """A calendar whose first write fails, as a server that is down."""

    def __init__(self) -> None:
        self.notes: list[tuple[str, str]] = []
        self.failures = 1

    async def annotate(self, event: CalendarEvent, note: str) -> bool:
        if self.failures:
            self.failures -= 1
            raise SourceError("the calendar server did not answer")
        self.notes.append((event.uid, note))
        return True

    async def close(self) -> None:
        pass


async def test_failed_write_is_retried_with_backoff(
    driven: Hub, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = driven
    calendar_id = _calendar(engine)
    _plan(engine, hub.config, calendar_id, _at(3, 10))
    assert hub.dispatcher is not None
    await hub.dispatcher.drain()
    await hub.providers["simulator"].receive(PATIENT, "Oui")
    source = FlakySource()
    monkeypatch.setattr(writeback, "build_calendar_source", lambda *a, **k: source)

    assert await writeback.write_due(engine, hub.config, hub.state) == 0
    row = _row(engine)
    assert (row.answer_written, row.answer_attempts) == (False, 1)
    assert "did not answer" in row.answer_error
    assert row.answer_due_at is not None
    wait = row.answer_due_at.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(seconds=50) < wait <= timedelta(seconds=60)
    # Not due yet: nothing is tried.
    assert await writeback.write_due(engine, hub.config, hub.state) == 0
    assert source.notes == []
    with session_scope(engine) as s:
        s.exec(select(CalendarEventRow)).one().answer_due_at = datetime.now(UTC)
    assert await writeback.write_due(engine, hub.config, hub.state) == 1
    assert source.notes == [("ev1", "SMS: confirmed by the patient")]
    row = _row(engine)
    assert (row.answer_written, row.answer_due_at, row.answer_error) == (True, None, "")
    # Written once: the next sync does not write it again.
    assert await writeback.write_due(engine, hub.config, hub.state) == 0


async def test_answer_reaches_radicale_when_it_arrives(
    mail_config: Config,
    engine: Engine,
    account: str,
    radicale: RadicaleServer,
    monkeypatch: pytest.MonkeyPatch,
    make_hub: MakeHub,
) -> None:
    monkeypatch.setenv("CALDAV_PASSWORD", radicale.password)
    dav = radicale.make_calendar("Agenda accueil")
    start = _at(3, 11).astimezone(PARIS)
    url = radicale.put_event(
        dav,
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//smshub tests//EN\r\nBEGIN:VEVENT\r\n"
        "UID:rdv-1@cabinet.example\r\nDTSTAMP:20250301T000000Z\r\n"
        f"DTSTART;TZID=Europe/Paris:{start:%Y%m%dT%H%M%S}\r\n"
        f"DTEND;TZID=Europe/Paris:{start + timedelta(minutes=30):%Y%m%dT%H%M%S}\r\n"
        "SUMMARY:Consultation 06 12 34 56 78\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "rdv.ics",
    )
    settings = {
        "url": str(dav.url),
        "username": radicale.user,
        "password_env": "CALDAV_PASSWORD",
        "private_ok": True,
        "timeout": 10,
    }
    calendar_id = _calendar(engine, source_type="caldav", settings=json.dumps(settings))
    await sync_calendar(engine, mail_config, calendar_id)
    with session_scope(engine) as s:
        for m in s.exec(select(Message).where(Message.source == "calendar")).all():
            m.due_at = datetime.now(UTC)
    # A running hub: dispatcher, mail outbox and answer writer in the background.
    hub = await make_hub(config=mail_config, background=True)
    try:
        for _ in range(100):
            if _messages(engine, "calendar")[0].status != "queued":
                break
            await asyncio.sleep(0.05)
        await hub.providers["simulator"].receive(PATIENT, "Non merci")
        assert _row(engine).answer == ""  # a sentence is forwarded, not an answer
        await hub.providers["simulator"].receive(PATIENT, "non")
        # No sync: the answer writer puts it on the event within moments.
        for _ in range(200):
            if _row(engine).answer_written:  # the note is on the server before this is set
                break
            await asyncio.sleep(0.05)
        assert "DESCRIPTION:SMS: CANCELLED by the patient" in radicale.get_event(dav, url)
        row = _row(engine)
        assert (row.answer, row.answer_written, row.answer_error) == ("cancelled", True, "")
    finally:
        await hub.stop()
