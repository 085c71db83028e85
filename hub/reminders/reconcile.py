"""Keeping reminders in step with the calendar.

New occurrence → reminders planned (as scheduled outbox messages); moved → the old reminder
cancelled and a new one planned, never both; cancelled or deleted → cancelled; moved after
its reminder went out → optionally an "appointment changed" SMS. Each reminder message has
the idempotency key event + occurrence + rule + start, so a repeated sync plans nothing twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from hub import sending
from hub.calendars import CalendarEvent, EventStatus, SyncResult, SyncWindow
from hub.config import Config
from hub.errors import HubError
from hub.models import Calendar, CalendarEventRow, Message, MessageStatus, Reminder
from hub.outbox import cancel_queued
from hub.reminders.extract import find_recipient
from hub.reminders.render import CHANGED_TEMPLATE, render_reminder
from hub.reminders.rules import QuietHours, parse_hhmm, parse_offsets, send_time
from hub.timeutil import as_utc, utcnow

log = logging.getLogger("smshub.reminders")


@dataclass
class ReconcileReport:
    """What one sync changed, for logs and `smshub calendars sync`."""

    seen: int = 0
    planned: int = 0
    rescheduled: int = 0
    cancelled: int = 0
    skipped: int = 0
    changed_notices: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _iso(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Applies one SyncResult to one calendar inside the caller's transaction."""

    def __init__(
        self, session: Session, config: Config, calendar: Calendar, now: datetime | None = None
    ) -> None:
        self.session = session
        self.config = config
        self.calendar = calendar
        self.now = now or utcnow()
        self.offsets = parse_offsets(calendar.offsets)
        self.quiet = QuietHours(
            parse_hhmm(calendar.quiet_start, "quiet_start"),
            parse_hhmm(calendar.quiet_end, "quiet_end"),
        )
        self.report = ReconcileReport()
        account_region = None
        from hub.models import Account

        account = session.get(Account, calendar.account_id)
        if account is not None:
            account_region = account.default_region
        self.region = account_region or config.hub.default_region

    # -- entry point ---------------------------------------------------------------------
    def apply(self, result: SyncResult, window: SyncWindow) -> ReconcileReport:
        self.report.warnings.extend(result.warnings)
        rows = {
            (r.uid, r.occurrence): r
            for r in self.session.exec(
                select(CalendarEventRow).where(CalendarEventRow.calendar_id == self.calendar.id)
            ).all()
        }
        seen: set[tuple[str, str]] = set()
        for event in result.events:
            seen.add(event.key)
            self.report.seen += 1
            self._upsert(rows, event)
        gone: list[CalendarEventRow] = []
        if result.full:
            gone = [
                r
                for k, r in rows.items()
                if k not in seen and not r.deleted and window.start <= as_utc(r.start) <= window.end
            ]
        for removed in result.removed:
            gone += [
                r
                for (uid, occ), r in rows.items()
                if uid == removed.uid
                and (removed.occurrence is None or occ == removed.occurrence)
                and not r.deleted
            ]
        for row in gone:
            row.deleted = True
            row.updated_at = self.now
            self.session.add(row)
            self._cancel_all(row, "the appointment was deleted")
        return self.report

    # -- one occurrence --------------------------------------------------------------------
    def _upsert(self, rows: dict[tuple[str, str], CalendarEventRow], event: CalendarEvent) -> None:
        row = rows.get(event.key)
        if row is None:
            row = CalendarEventRow(
                calendar_id=self.calendar.id or 0,
                uid=event.uid,
                occurrence=event.occurrence,
                start=event.start,
            )
            rows[event.key] = row
        old_start = as_utc(row.start) if row.id is not None else None
        row.start = as_utc(event.start)
        row.end = as_utc(event.end) if event.end else None
        row.timezone = event.timezone
        row.all_day = event.all_day
        row.title = event.title[:500]
        row.location = event.location[:500]
        row.description = event.description
        row.attendees = json.dumps([{"email": a.email, "name": a.name} for a in event.attendees])
        row.status = event.status.value
        row.etag = event.etag[:255]
        row.deleted = False
        row.updated_at = self.now
        recipient = find_recipient(event, self.region)
        row.phone, row.person, row.problem = (
            recipient.phone,
            recipient.name[:255],
            recipient.problem,
        )
        self.session.add(row)
        self.session.flush()
        if event.status == EventStatus.CANCELLED:
            self._cancel_all(row, "the appointment was cancelled")
            return
        if row.phone is None:
            self._cancel_all(row, f"no number: {row.problem}")
            if as_utc(row.start) > self.now:
                self.report.problems.append(f"{event.title or event.uid}: {row.problem}")
            return
        for offset in self.offsets:
            self._plan(
                row, offset.text, send_time(row.start, offset, self._tz(row), self.quiet), old_start
            )

    def _tz(self, row: CalendarEventRow) -> str:
        # The calendar's zone decides "09:00" unless the event carries its own.
        return row.timezone if row.timezone and row.timezone != "UTC" else self.calendar.timezone

    def _text(self, row: CalendarEventRow, template: str) -> str:
        return render_reminder(
            template,
            locale=self.calendar.locale,
            tz=self._tz(row),
            start=as_utc(row.start),
            max_parts=self.config.sending.max_parts,
            name=row.person,
            title=row.title,
            location=row.location,
        )

    def _plan(
        self, row: CalendarEventRow, rule: str, when: datetime, old_start: datetime | None
    ) -> None:
        assert row.id is not None
        start = as_utc(row.start)
        current = self.session.exec(
            select(Reminder)
            .where(
                Reminder.event_id == row.id,
                Reminder.rule == rule,
                col(Reminder.status).in_(["scheduled", "sent"]),
            )
            .order_by(col(Reminder.id).desc())
        ).first()
        try:
            text = self._text(row, self.calendar.template)
        except HubError as exc:
            # This event's text cannot be sent (too long for sending.max_parts, say): the
            # reminder is skipped and reported; the other events go on.
            self._skip(row, rule, start, when, str(exc)[:255])
            self.report.problems.append(f"{row.title or row.uid}: {exc}")
            return
        if current is not None:
            message = self.session.get(Message, current.message_id) if current.message_id else None
            went_out = message is not None and message.status != MessageStatus.QUEUED
            if went_out:
                current.status = "sent"
                self.session.add(current)
                if as_utc(current.for_start) != start:
                    self._changed_notice(row, rule, start)
                    # The new time's reminder, if still ahead, is planned below.
                else:
                    return
            elif (
                as_utc(current.for_start) == start
                and message is not None
                and message.text == text
                and message.recipient == row.phone
            ):
                return  # unchanged
            else:
                if message is not None and not cancel_queued(self.session, message):
                    return  # the dispatcher took it a moment ago: it is going out
                current.status = "cancelled"
                current.note = "replaced: the appointment or its text changed"
                self.session.add(current)
                self.report.rescheduled += 1
        if when <= self.now + timedelta(minutes=self.calendar.min_lead_minutes):
            if start > self.now and current is None:
                self._skip(row, rule, start, when, "created too late for this reminder")
            return
        self._submit(row, rule, start, when, text)

    def _submit(
        self, row: CalendarEventRow, rule: str, start: datetime, when: datetime, text: str
    ) -> None:
        assert row.id is not None and row.phone is not None
        key = f"reminder:{self.calendar.id}:{row.uid}:{row.occurrence}:{rule}:{_iso(start)}"
        try:
            with self.session.begin_nested():
                result = sending.submit_in(
                    self.session,
                    self.config,
                    sending.SubmitRequest(
                        account=self.calendar.account_id,
                        recipients=[row.phone],
                        text=text,
                        sender=self.calendar.sender,
                        send_at=when,
                        source="calendar",
                        idempotency_key=key,
                    ),
                )
        except HubError as exc:
            self._skip(row, rule, start, when, str(exc)[:255])
            self.report.problems.append(f"{row.title or row.uid}: {exc}")
            return
        outcome = result.recipients[0]
        if outcome.message_id is None:
            self._skip(row, rule, start, when, outcome.reason or "refused")
            return
        self.session.add(
            Reminder(
                event_id=row.id,
                rule=rule,
                message_id=outcome.message_id,
                for_start=start,
                send_at=when,
            )
        )
        self.report.planned += 1

    def _skip(
        self, row: CalendarEventRow, rule: str, start: datetime, when: datetime, why: str
    ) -> None:
        assert row.id is not None
        exists = self.session.exec(
            select(Reminder).where(
                Reminder.event_id == row.id,
                Reminder.rule == rule,
                Reminder.for_start == start,
                Reminder.status == "skipped",
            )
        ).first()
        if exists is None:
            self.session.add(
                Reminder(
                    event_id=row.id,
                    rule=rule,
                    for_start=start,
                    send_at=when,
                    status="skipped",
                    note=why[:255],
                )
            )
            self.report.skipped += 1

    def _changed_notice(self, row: CalendarEventRow, rule: str, start: datetime) -> None:
        if not self.calendar.notify_changes or start <= self.now or row.phone is None:
            return
        key = f"changed:{self.calendar.id}:{row.uid}:{row.occurrence}:{_iso(start)}"
        try:
            with self.session.begin_nested():
                sending.submit_in(
                    self.session,
                    self.config,
                    sending.SubmitRequest(
                        account=self.calendar.account_id,
                        recipients=[row.phone],
                        text=self._text(row, CHANGED_TEMPLATE),
                        sender=self.calendar.sender,
                        source="calendar",
                        idempotency_key=key,
                    ),
                )
            self.report.changed_notices += 1
        except HubError as exc:
            self.report.problems.append(f"{row.title or row.uid}: change notice not sent: {exc}")

    def _cancel_all(self, row: CalendarEventRow, why: str) -> None:
        if row.id is None:
            return
        for reminder in self.session.exec(
            select(Reminder).where(Reminder.event_id == row.id, Reminder.status == "scheduled")
        ).all():
            message = (
                self.session.get(Message, reminder.message_id) if reminder.message_id else None
            )
            if message is not None and not cancel_queued(self.session, message):
                reminder.status = "sent"
            else:
                reminder.status = "cancelled"
                reminder.note = why[:255]
                self.report.cancelled += 1
            self.session.add(reminder)


def reconcile(
    session: Session,
    config: Config,
    calendar: Calendar,
    result: SyncResult,
    window: SyncWindow,
    now: datetime | None = None,
) -> ReconcileReport:
    """Apply RESULT to CALENDAR's stored events and reminders (in SESSION's transaction)."""
    return Reconciler(session, config, calendar, now).apply(result, window)
