"""Calendars for the console: the user's calendars, adding an ICS or CalDAV one, a
calendar's settings as shown, the reminder preview, and the secret files the console keeps.

Secrets typed into the console (a CalDAV password, a refresh token from a sign-in) are
kept in the database encrypted (hub/reminders/calendar_store.py, hub/store/secretbox.py), so every
instance can use them, and the calendar names them in its ``stored_secrets`` setting; they
never reach the logs nor the pages. Settings that name server files or environment variables
cannot be set from the console: a customer could otherwise make the hub read and send them
anywhere.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.core.config import Config
from hub.core.i18n import LANGUAGES
from hub.core.phone import parse_number
from hub.core.timeutil import utcnow
from hub.errors import ConfigError, InvalidInput, NotFound, TemplateLimitExceeded
from hub.ports.registry import calendar_settings as check_settings
from hub.reminders import preview
from hub.reminders.render import default_template
from hub.reminders.rules import QuietHours, parse_hhmm, parse_offsets
from hub.reminders.setup import (
    check_locale,
    check_timezone,
    parse_setting,
    stored_settings,
)
from hub.sending import submit as sending
from hub.sending.preview import preview_for
from hub.store.models import Account, Calendar

# Calendars a console user may add with a URL (the others need OAuth or server secrets).
URL_TYPES = ("ics", "caldav")
_ICS_SCHEMES = ("http", "https", "webcal", "webcals")


def files_message(report: dict[str, Any]) -> str:
    """What removing a calendar did with the files the hub kept for it, for the flash: what
    they held, never where (the console shows no server paths; the log names them)."""
    told = [
        (report["files_deleted"], "Deleted {n} stored file(s) ({what})."),
        (
            report["files_not_deleted"],
            "{n} stored file(s) could not be deleted ({what}): the hub's administrator will "
            "find them in its log.",
        ),
    ]
    said = "".join(
        " " + text.format(n=len(files), what=", ".join(f["what"] for f in files))
        for files, text in told
        if files
    )
    if report.get("stored_entries_deleted"):
        said += " Deleted what the hub kept for it in its database (passwords, tokens)."
    return said


# -- reading --------------------------------------------------------------------------------------
def scoped_calendar(session: Session, scope: Collection[int], calendar_id: int) -> Calendar:
    """Calendar CALENDAR_ID if it belongs to one of SCOPE's accounts; NotFound otherwise, so
    other customers' calendar ids cannot be probed."""
    calendar = session.exec(
        select(Calendar).where(Calendar.id == calendar_id, col(Calendar.account_id).in_(scope))
    ).first()
    if calendar is None:
        raise NotFound(f"no calendar {calendar_id} among your accounts' calendars")
    return calendar


def calendars_page(
    session: Session, scope: Collection[int], after: int | None, limit: int
) -> tuple[list[tuple[Calendar, str]], int | None]:
    """(calendar, account name) of SCOPE by id after AFTER; the cursor of the next page."""
    query = (
        select(Calendar, Account.name)
        .join(Account, col(Account.id) == col(Calendar.account_id))
        .where(col(Calendar.account_id).in_(scope))
    )
    if after is not None:
        query = query.where(col(Calendar.id) > after)
    rows = [(c, str(n)) for c, n in session.exec(query.order_by(col(Calendar.id)).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1][0].id if more and rows else None)


def shown_settings(calendar: Calendar) -> list[tuple[str, str]]:
    """A calendar's settings as the page shows them: no passwords in URLs, no file paths."""
    shown = []
    for key, value in sorted(stored_settings(calendar).items()):
        if key == "stored_secrets":
            key, text = "secrets", f"{', '.join(value)}: kept encrypted in the hub's database"
        elif key.endswith("_file"):
            text = "kept in a file on the hub"
        elif key.endswith("_env"):
            text = f"from the hub's environment variable {value}"
        elif key == "private_ok":
            text = "may reach the hub's own network (set by the administrator)"
            if str(value).strip().lower() not in ("true", "1", "yes", "on"):
                text = "no"
        elif key == "url" and isinstance(value, str):
            parts = urlsplit(value)
            host = parts.hostname or ""
            if parts.port:
                host += f":{parts.port}"
            text = urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))
        else:
            text = str(value)
        shown.append((key, text))
    return shown


def name_is_free(session: Session, account_id: int, name: str) -> None:
    taken = session.exec(
        select(Calendar.id).where(Calendar.account_id == account_id, Calendar.name == name)
    ).first()
    if taken is not None:
        raise InvalidInput(f"this account already has a calendar named {name!r}: choose another")


def check_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > 64:
        raise InvalidInput("give the calendar a name of 1 to 64 characters, such as Cabinet")
    return name


def free_name(session: Session, account_id: int, base: str) -> str:
    """BASE, or BASE (2), (3)... the first name ACCOUNT_ID does not use yet."""
    used = set(session.exec(select(Calendar.name).where(Calendar.account_id == account_id)).all())
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base} ({n})"
    return name


# -- adding a calendar by URL -----------------------------------------------------------------
def url_settings(
    kind: str, url: str, username: str, calendar: str, more: str, password_placeholder: bool
) -> dict[str, Any]:
    """The settings of an ICS or CalDAV calendar typed in the form, checked by its connector
    (the password file is only a placeholder here)."""
    if kind not in URL_TYPES:
        raise InvalidInput("choose ics or caldav (Google and Microsoft 365: use Connect)")
    settings: dict[str, Any] = {}
    for line in more.splitlines():
        if not line.strip():
            continue
        key, value = parse_setting(line)
        if key == "stored_secrets":
            raise InvalidInput("give the password in the Password field")
        if key.endswith(("_env", "_file")):
            raise InvalidInput(
                f"setting {key!r} names a file or variable of the hub's server; it can only "
                "be set with the smshub command line (give a password in the Password field)"
            )
        if key == "private_ok":
            raise InvalidInput(
                "setting 'private_ok' lets a calendar reach the hub's own network; only the "
                "hub administrator can set it (`smshub calendars add ... --allow-private`)"
            )
        settings[key] = value
    settings["url"] = url.strip()
    if username.strip():
        settings["username"] = username.strip()
    if kind == "caldav" and calendar.strip():
        settings["calendar"] = calendar.strip()
    if kind == "ics" and urlsplit(settings["url"]).scheme.lower() not in _ICS_SCHEMES:
        raise InvalidInput(
            "the calendar's address must start with https:// (or http://, webcal://); "
            "files on the hub's server cannot be used from the console"
        )
    if password_placeholder:
        # The password itself is stored with the calendar, encrypted (calendar_store).
        settings["stored_secrets"] = ["password"]
    try:
        check_settings(kind, settings, "the calendar")
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    return settings


# -- the reminder preview -----------------------------------------------------------------------
def reminder_preview(
    session: Session,
    config: Config,
    calendar: Calendar,
    *,
    template: str,
    offsets: str,
    quiet_start: str,
    quiet_end: str,
    tz: str,
    locale: str,
) -> dict[str, Any]:
    """What the rules being edited would send for the next appointment: the SMS text, its
    parts and cost, and when each rule sends it; mistakes come back in ``errors``."""
    errors: list[str] = []

    def attempt(check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except TemplateLimitExceeded:
            raise  # the whole preview is refused (422), naming the limit
        except InvalidInput as exc:
            errors.append(str(exc))
            return None

    try:
        check_timezone(tz)
    except InvalidInput as exc:
        errors.append(f"time zone: {exc}")
        tz = calendar.timezone
    try:
        check_locale(locale)
    except InvalidInput as exc:
        errors.append(f"language: {exc}")
        locale = calendar.locale
    rules = attempt(parse_offsets, offsets) or []
    start_at = attempt(parse_hhmm, quiet_start, "quiet hours start")
    end_at = attempt(parse_hhmm, quiet_end, "quiet hours end")
    event = preview.next_appointment(session, calendar, tz)
    opts = preview.PreviewOptions(
        rules=rules,
        now=utcnow(),
        tz=tz,
        locale=locale,
        template=template,
        quiet=QuietHours(start_at, end_at) if start_at and end_at else QuietHours(),
        max_parts=config.sending.max_parts,
    )
    text = attempt(preview.reminder_text, event, opts) or ""
    account = session.get(Account, calendar.account_id)
    region = (account.default_region if account else None) or config.hub.default_region
    country = parse_number(event.phone, region).country if event.phone else region
    shown = preview_for(config, text, calendar.sender, "alert", country)
    zone = ZoneInfo(event.zone)
    sends = [(rule.text, preview.send_time(event, rule, opts)) for rule in rules]
    return {
        "event": event,
        "event_local": event.start.astimezone(zone),
        "text": text,
        "shown": shown,
        "cost": sending.credits_for(config, country, shown["segments"]),
        "recipients": 1 if event.phone else 0,
        "invalid": [],
        "max_parts": config.sending.max_parts,
        "sends": [(rule, when.astimezone(zone) if when else None) for rule, when in sends],
        "errors": errors,
    }


def effective_template(calendar: Calendar) -> str:
    """The template a calendar uses (its own, else the hub's default)."""
    return calendar.template or default_template(calendar.locale)


def stored_template(text: str) -> str:
    """What to store for a template typed in the form: "" when it is the default, so the
    calendar keeps following the hub's default text."""
    cleaned = text.replace("\r\n", "\n").strip()
    defaults = {" ".join(default_template(language).split()) for language in LANGUAGES}
    return "" if " ".join(cleaned.split()) in defaults else cleaned
