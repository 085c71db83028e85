"""Connecting, configuring and disconnecting calendars, and what is planned for them.

Shared by `smshub calendars` / `smshub reminders` and the web console, so both doors check
rules, templates and settings the same way and remove a calendar with the same refunds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session, col, delete, select

from hub.accounts import get_account
from hub.errors import InvalidInput, NotFound
from hub.models import Calendar, CalendarEventRow, Message, Reminder
from hub.outbox import cancel_queued
from hub.reminders.render import render_reminder
from hub.reminders.rules import parse_hhmm, parse_offsets
from hub.timeutil import as_utc, utcnow


def parse_setting(item: str) -> tuple[str, str]:
    """'KEY=VALUE' → (KEY, VALUE), both stripped; InvalidInput when there is no '='."""
    key, eq, value = item.partition("=")
    if not eq:
        raise InvalidInput(f"{item!r} must be KEY=VALUE")
    return key.strip(), value.strip()


def check_source_type(kind: str) -> None:
    """InvalidInput unless a connector for KIND is installed."""
    from hub.registry import calendar_source_types

    if kind not in calendar_source_types():
        raise InvalidInput(
            f"unknown calendar type {kind!r}; installed: "
            f"{', '.join(calendar_source_types()) or 'none'}"
        )


def check_timezone(tz: str) -> None:
    """InvalidInput unless TZ is an IANA time zone name."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{tz!r} is not a time zone name such as Europe/Paris") from None


def check_locale(locale: str) -> None:
    """InvalidInput unless LOCALE is a language babel knows (dates in the SMS use it)."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError):
        raise InvalidInput(f"{locale!r} is not a known locale such as fr_FR or en_GB") from None


def check_template(template: str, locale: str, tz: str) -> None:
    """A broken template is refused when it is set, not at the first reminder."""
    render_reminder(
        template or "", locale=locale, tz=tz, start=utcnow(), name="Test", title="", location=""
    )


def add_calendar(
    session: Session,
    account: str | int,
    name: str,
    kind: str,
    settings: dict[str, Any],
    *,
    offsets: str = "1d@09:00",
    template: str = "",
    tz: str = "Europe/Paris",
    locale: str = "fr_FR",
    notify_changes: bool = False,
    sender: str | None = None,
    notify_mailbox: str = "",
) -> Calendar:
    """Connect a calendar to ACCOUNT with these reminder rules (checked first)."""
    acc = get_account(session, account)
    parse_offsets(offsets)
    check_template(template, locale, tz)
    assert acc.id is not None
    calendar = Calendar(
        account_id=acc.id,
        name=name,
        source_type=kind,
        settings=json.dumps(settings),
        offsets=offsets,
        template=template or "",
        timezone=tz,
        locale=locale,
        notify_changes=notify_changes,
        sender=sender,
        notify_mailbox=notify_mailbox,
    )
    session.add(calendar)
    session.flush()
    return calendar


def find_calendar(session: Session, account: str | int, name: str) -> int:
    """The id of ACCOUNT's calendar NAME; NotFound naming both."""
    acc = get_account(session, account)
    cal = session.exec(
        select(Calendar).where(Calendar.account_id == acc.id, Calendar.name == name)
    ).first()
    if cal is None:
        raise NotFound(
            f"account {account!r} has no calendar {name!r} (see `smshub calendars list`)"
        )
    return int(cal.id or 0)


@dataclass
class RemoveReport:
    action: str  # deleted | disabled
    cancelled: list[dict[str, Any]] = field(default_factory=list)
    credits_refunded: int = 0
    already_sending: list[dict[str, Any]] = field(default_factory=list)
    appointments_deleted: int = 0


def _cancel_scheduled(
    session: Session, calendar_id: int, note: str, rules: set[str] | None = None
) -> RemoveReport:
    """Cancel CALENDAR_ID's scheduled reminders (of RULES only, when given), refunded."""
    event_ids = select(CalendarEventRow.id).where(CalendarEventRow.calendar_id == calendar_id)
    query = (
        select(Reminder, CalendarEventRow)
        .join(CalendarEventRow, col(CalendarEventRow.id) == col(Reminder.event_id))
        .where(col(Reminder.event_id).in_(event_ids), Reminder.status == "scheduled")
    )
    if rules is not None:
        query = query.where(col(Reminder.rule).in_(rules))
    report = RemoveReport(action="")
    for reminder, event in session.exec(query.order_by(col(Reminder.send_at))).all():
        message = session.get(Message, reminder.message_id) if reminder.message_id else None
        entry = {
            "message_id": reminder.message_id,
            "send_at": as_utc(reminder.send_at).isoformat(),
            "to": message.recipient if message is not None else None,
            "person": event.person,
            "appointment": as_utc(event.start).isoformat(),
            "rule": reminder.rule,
        }
        # cancel_queued only wins against the dispatcher while the row is still queued;
        # one claimed a moment ago is on its way to the provider.
        if message is not None and not cancel_queued(session, message):
            reminder.status = "sent"
            report.already_sending.append(entry)
        else:
            reminder.status = "cancelled"
            reminder.note = note
            report.credits_refunded += message.credits if message is not None else 0
            report.cancelled.append(entry)
        session.add(reminder)
    return report


def remove_calendar(session: Session, calendar_id: int, keep_history: bool = False) -> RemoveReport:
    """Disconnect a calendar: cancel its scheduled reminders (refunded), then delete it with
    its appointments, or with KEEP_HISTORY only disable it."""
    report = _cancel_scheduled(session, calendar_id, "the calendar was removed")
    calendar = session.get(Calendar, calendar_id)
    if calendar is None:
        raise NotFound(f"no calendar {calendar_id}")
    event_ids = select(CalendarEventRow.id).where(CalendarEventRow.calendar_id == calendar_id)
    if keep_history:
        calendar.enabled = False
        session.add(calendar)
        report.action = "disabled"
    else:
        session.flush()
        session.execute(delete(Reminder).where(col(Reminder.event_id).in_(event_ids)))
        report.appointments_deleted = session.execute(  # type: ignore[attr-defined]
            delete(CalendarEventRow).where(col(CalendarEventRow.calendar_id) == calendar_id)
        ).rowcount
        session.delete(calendar)
        report.action = "deleted"
    return report


def update_rules(
    session: Session,
    calendar: Calendar,
    *,
    offsets: str,
    quiet_start: str,
    quiet_end: str,
    template: str,
    locale: str,
    tz: str,
) -> RemoveReport:
    """Set CALENDAR's reminder rules (all checked first). Reminders planned by a rule that is
    no longer listed are cancelled and refunded; the next sync (a full one) plans the rest
    by the new rules."""
    rules = {r.text for r in parse_offsets(offsets)}
    parse_hhmm(quiet_start, "quiet hours start")
    parse_hhmm(quiet_end, "quiet hours end")
    check_timezone(tz)
    check_locale(locale)
    check_template(template, locale, tz)
    dropped = {r.text for r in parse_offsets(calendar.offsets)} - rules
    report = RemoveReport(action="updated")
    if dropped and calendar.id is not None:
        report = _cancel_scheduled(session, calendar.id, "its rule was removed", dropped)
        report.action = "updated"
    calendar.offsets = ",".join(r.text for r in parse_offsets(offsets))
    calendar.quiet_start = quiet_start.strip()
    calendar.quiet_end = quiet_end.strip()
    calendar.template = template
    calendar.locale = locale
    calendar.timezone = tz
    # An incremental sync only sees changed appointments: the next one reads them all, so
    # every appointment is planned by the new rules.
    calendar.cursor = None
    session.add(calendar)
    return report


def upcoming_reminders(
    session: Session,
    *,
    account_id: int | None = None,
    calendar_name: str | None = None,
    calendar_id: int | None = None,
    limit: int = 50,
) -> list[tuple[Reminder, CalendarEventRow, Message, Calendar]]:
    """Scheduled reminders not sent yet, soonest first."""
    query = (
        select(Reminder, CalendarEventRow, Message, Calendar)
        .join(CalendarEventRow, col(CalendarEventRow.id) == col(Reminder.event_id))
        .join(Calendar, col(Calendar.id) == col(CalendarEventRow.calendar_id))
        .join(Message, col(Message.id) == col(Reminder.message_id))
        .where(Reminder.status == "scheduled", Message.status == "queued")
    )
    if account_id is not None:
        query = query.where(Calendar.account_id == account_id)
    if calendar_name is not None:
        query = query.where(Calendar.name == calendar_name)
    if calendar_id is not None:
        query = query.where(Calendar.id == calendar_id)
    return list(session.exec(query.order_by(col(Reminder.send_at)).limit(limit)).all())


def problem_events(
    session: Session,
    *,
    account_id: int | None = None,
    calendar_id: int | None = None,
    limit: int | None = None,
) -> list[tuple[CalendarEventRow, str]]:
    """Upcoming appointments that get no reminder (no mobile number...), with their
    calendar's name, soonest first."""
    query = (
        select(CalendarEventRow, Calendar.name)
        .join(Calendar, col(Calendar.id) == col(CalendarEventRow.calendar_id))
        .where(
            CalendarEventRow.problem != "",
            CalendarEventRow.deleted == False,  # noqa: E712
            col(CalendarEventRow.start) >= utcnow(),
            CalendarEventRow.status != "cancelled",
        )
    )
    if account_id is not None:
        query = query.where(Calendar.account_id == account_id)
    if calendar_id is not None:
        query = query.where(CalendarEventRow.calendar_id == calendar_id)
    query = query.order_by(col(CalendarEventRow.start))
    if limit is not None:
        query = query.limit(limit)
    return [(e, str(c)) for e, c in session.exec(query).all()]


def write_secret_file(path: Path, value: str) -> None:
    """Store a secret (refresh token, password) in PATH, readable by its owner only, for a
    calendar's ``*_file`` setting. OSError when it cannot be written."""
    # Created 0600 from the start (never readable by others, not even for a moment); an
    # existing file is truncated and its mode tightened too.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)
