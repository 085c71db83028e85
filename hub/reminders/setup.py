"""Connecting, configuring and disconnecting calendars, and what is planned for them.

Shared by `smshub calendars` / `smshub reminders` and the web console, so both doors check
rules, templates and settings the same way and remove a calendar with the same refunds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session, col, delete, select

from hub.core.timeutil import as_utc, utcnow
from hub.errors import ConfigError, InvalidInput, NotFound
from hub.outbound import OutboundRefused, check_url
from hub.ports.calendar import (
    SourceContext,
    StateFile,
    calendar_source_name,
    move_name_keyed_files,
)
from hub.ports.registry import calendar_source_types, calendar_state_files
from hub.ports.state import calendar_namespace
from hub.reminders.render import render_reminder
from hub.reminders.rules import parse_hhmm, parse_offsets
from hub.sending.accounts import get_account
from hub.sending.outbox import cancel_queued
from hub.store.db import after_commit
from hub.store.models import Account, Calendar, CalendarEventRow, Message, Reminder
from hub.store.state_sql import delete_namespace_in

log = logging.getLogger("smshub.calendars")

# The ``*_file`` settings whose file the hub writes itself (write_secret_file): the refresh
# token of `smshub calendars auth ... --output FILE`, and those the console of earlier builds
# wrote to DATA_DIR/secrets (the console now keeps them in the database: calendar_store). With
# what they hold, for the user. Other ``*_file`` settings (OAuth client secrets, service
# account keys, CA bundles) are the administrator's, often shared: never deleted.
WRITTEN_SECRETS = {"password_file": "password", "refresh_token_file": "refresh token"}


def parse_setting(item: str) -> tuple[str, str]:
    """'KEY=VALUE' → (KEY, VALUE), both stripped; InvalidInput when there is no '='."""
    key, eq, value = item.partition("=")
    if not eq:
        raise InvalidInput(f"{item!r} must be KEY=VALUE")
    return key.strip(), value.strip()


def check_source_type(kind: str) -> None:
    """InvalidInput unless a connector for KIND is installed."""
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
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError):
        raise InvalidInput(f"{locale!r} is not a known locale such as fr_FR or en_GB") from None


def check_template(template: str, locale: str, tz: str) -> None:
    """A broken template is refused when it is set, not at the first reminder."""
    render_reminder(
        template or "", locale=locale, tz=tz, start=utcnow(), name="Test", title="", location=""
    )


# Calendar types whose `url` a customer gives: fetched through the outbound guard.
URL_SOURCES = ("ics", "caldav")
_FETCHED_SCHEMES = ("http", "https", "webcal", "webcals")


def allows_private(settings: Mapping[str, Any]) -> bool:
    """The calendar's ``private_ok`` setting (the administrator's), as the source reads it."""
    try:
        return TypeAdapter(bool).validate_python(settings.get("private_ok", False))
    except ValidationError:
        raise InvalidInput(
            f"private_ok={settings.get('private_ok')!r} must be true or false"
        ) from None


def check_calendar_url(kind: str, settings: Mapping[str, Any]) -> None:
    """Refuse now (OutboundRefused) an ICS / CalDAV URL whose host is, or already resolves
    to, an address every sync would refuse (unless ``private_ok``); a name that does not
    resolve yet is accepted, every sync checks it again."""
    url = settings.get("url")
    if kind not in URL_SOURCES or not isinstance(url, str) or allows_private(settings):
        return
    if urlsplit(url.strip()).scheme.lower() not in _FETCHED_SCHEMES:
        return  # a file of the hub's (the CLI's only), or a URL its connector refuses
    try:
        check_url(url)
    except OutboundRefused as exc:
        raise OutboundRefused(
            f"calendar URL refused: {exc.reason}; use a public address (the hub "
            "administrator may allow this one: `smshub calendars add ... --allow-private`)"
        ) from None


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
    check_calendar_url(kind, settings)
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
    # The files the hub kept for a deleted calendar (its source's cached copy or renewed
    # token, the secret files the hub wrote for it), once the removal is committed: each
    # {"what", "path"}; with "error", those that could not be deleted; with "why", those
    # left alone (outside the data directory, or still used by another calendar).
    files_deleted: list[dict[str, str]] = field(default_factory=list)
    files_not_deleted: list[dict[str, str]] = field(default_factory=list)
    files_kept: list[dict[str, str]] = field(default_factory=list)
    # Entries of its namespace in the hub's state store (stored secrets, renewed tokens).
    stored_entries_deleted: int = 0


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


def remove_calendar(
    session: Session,
    calendar_id: int,
    keep_history: bool = False,
    *,
    data_dir: Path | None = None,
) -> RemoveReport:
    """Disconnect a calendar: cancel its scheduled reminders (refunded), then delete it with
    its appointments, or with KEEP_HISTORY only disable it (everything is kept).

    When it is deleted and DATA_DIR (the hub's data directory) is given, the files the hub
    kept for it there (see calendar_files) are deleted too, once SESSION's transaction is
    committed, so a removal rolled back loses nothing; the report's ``files_*`` lists are
    filled in then."""
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
        if data_dir is not None:
            doomed = _files_to_delete(session, calendar, data_dir, report)
            _delete_after_commit(session, doomed, report)
        session.flush()
        session.execute(delete(Reminder).where(col(Reminder.event_id).in_(event_ids)))
        report.appointments_deleted = session.execute(  # type: ignore[attr-defined]
            delete(CalendarEventRow).where(col(CalendarEventRow.calendar_id) == calendar_id)
        ).rowcount
        # Its secrets and renewed tokens in the database go in the same transaction.
        report.stored_entries_deleted = delete_namespace_in(
            session, calendar_namespace(calendar_id)
        )
        session.delete(calendar)
        report.action = "deleted"
    return report


def stored_settings(calendar: Calendar) -> dict[str, Any]:
    """CALENDAR's settings as stored (JSON); empty when unreadable."""
    try:
        data = json.loads(calendar.settings or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def calendar_context(
    calendar: Calendar, data_dir: Path, secrets: Mapping[str, str] | None = None
) -> SourceContext:
    """The context CALENDAR's source is given: named after the calendar in its messages,
    the files it keeps in DATA_DIR named after the calendar's id."""
    return source_context(calendar.name, calendar.id, data_dir, secrets)


def source_context(
    name: str, calendar_id: int | None, data_dir: Path, secrets: Mapping[str, str] | None = None
) -> SourceContext:
    """``calendar_context`` from the calendar's NAME and id (a sync reads just those)."""
    where = calendar_source_name(name)
    return SourceContext(where, data_dir, dict(secrets or {}), calendar_id=calendar_id)


def source_state_files(
    kind: str, settings: dict[str, Any]
) -> Callable[[SourceContext], list[StateFile]]:
    """The files a KIND source with SETTINGS keeps for a context (its ``state_files``);
    ConfigError when the settings are not valid."""
    return lambda ctx: calendar_state_files(kind, settings, ctx, ctx.name)


def adopt_name_keyed_files(calendar: Calendar, data_dir: Path) -> list[tuple[Path, Path]]:
    """Move the files a hub before calendar ids kept for CALENDAR under its current name to
    where its source looks for them now (blocking): done by each sync, and before a rename,
    after which the old names could no longer be told."""
    listed = source_state_files(calendar.source_type, stored_settings(calendar))
    return move_name_keyed_files(calendar_context(calendar, data_dir), listed)


def calendar_files(calendar: Calendar, data_dir: Path) -> list[StateFile]:
    """The files the hub may keep for CALENDAR, existing or not: the secret files the hub
    writes that its settings name (WRITTEN_SECRETS), and those its source keeps in DATA_DIR
    (the source's ``state_files``), named after its id, or after its name by a hub before
    calendar ids (not synced since)."""
    settings = stored_settings(calendar)
    files = [
        StateFile(Path(value), what)
        for key, what in WRITTEN_SECRETS.items()
        if isinstance(value := settings.get(key), str) and value.strip()
    ]
    ctx = calendar_context(calendar, data_dir)
    listed = source_state_files(calendar.source_type, settings)
    try:
        files += listed(ctx)
        if (earlier := ctx.name_keyed()) is not None:
            files += listed(earlier)
    except ConfigError as exc:
        # Settings no longer valid (a connector changed): where its source kept files is
        # unknown; the secrets above are still known.
        log.warning("%s: cannot tell which files its source keeps: %s", ctx.name, exc)
    return files


def _files_in_use(session: Session, calendar_id: int, data_dir: Path) -> dict[Path, str]:
    """Files other calendars use (any ``*_file`` setting, their sources' files), resolved,
    with the first such calendar named."""
    used: dict[Path, str] = {}
    others = session.exec(
        select(Calendar, Account.name)
        .join(Account, col(Account.id) == col(Calendar.account_id))
        .where(Calendar.id != calendar_id)
        .order_by(col(Calendar.id))
    ).all()
    for other, account in others:
        named = [
            Path(value)
            for key, value in stored_settings(other).items()
            if key.endswith("_file") and isinstance(value, str) and value.strip()
        ]
        for path in [*named, *(f.path for f in calendar_files(other, data_dir))]:
            used.setdefault(path.resolve(), f"calendar {other.name!r} of {account}")
    return used


def _entry(file: StateFile, path: Path, **more: str) -> dict[str, str]:
    return {"what": file.what, "path": str(path), **more}


def _files_to_delete(
    session: Session, calendar: Calendar, data_dir: Path, report: RemoveReport
) -> list[tuple[StateFile, Path]]:
    """CALENDAR's files that may be deleted with it, resolved: only in DATA_DIR (a secret
    file elsewhere is the administrator's) and used by no other calendar. Existing files
    left alone are listed in REPORT.files_kept."""
    root = data_dir.resolve()
    in_use: dict[Path, str] | None = None
    doomed: list[tuple[StateFile, Path]] = []
    seen: set[Path] = set()
    for file in calendar_files(calendar, data_dir):
        path = file.path.resolve()
        if path in seen:
            continue
        seen.add(path)
        if path == root or not path.is_relative_to(root):
            if path.exists():
                why = f"outside the hub's data directory {root}: delete it yourself if unused"
                report.files_kept.append(_entry(file, path, why=why))
            continue
        if in_use is None:
            in_use = _files_in_use(session, int(calendar.id or 0), data_dir)
        if path in in_use:
            if path.exists():
                report.files_kept.append(_entry(file, path, why=f"also used by {in_use[path]}"))
            continue
        doomed.append((file, path))
    return doomed


def _delete_files(files: Iterable[tuple[StateFile, Path]], report: RemoveReport) -> None:
    """Delete FILES, listing in REPORT those deleted and those that could not be (each
    logged as a warning naming it); a file already gone is not listed."""
    for file, path in files:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            error = exc.strerror or str(exc)
            log.warning("cannot delete %s (%s) of a removed calendar: %s", path, file.what, error)
            report.files_not_deleted.append(_entry(file, path, error=error))
        else:
            log.info("deleted %s (%s) of a removed calendar", path, file.what)
            report.files_deleted.append(_entry(file, path))


def _delete_after_commit(
    session: Session, files: list[tuple[StateFile, Path]], report: RemoveReport
) -> None:
    """Delete FILES once SESSION's current (outermost) transaction is committed; never if it
    is rolled back (``hub.store.db.after_commit``)."""
    if not files:
        return

    def delete_files() -> None:
        try:
            _delete_files(files, report)
        except Exception:  # the removal is committed: this must not undo the caller's success
            log.exception("deleting the files of a removed calendar failed")

    after_commit(session, delete_files)


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
    no longer listed are cancelled and refunded; once committed, ``hub.reminders.replan``
    moves the others to the new rules (else the next sync, a full one, does)."""
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
