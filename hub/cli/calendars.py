"""`smshub calendars`, `smshub reminders` and `smshub calendar preview`: connect calendars,
set rules, see what is planned, and try rules on a calendar without sending anything."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.cli.calendar_auth import auth_app
from hub.cli.common import JsonOpt, emit, fail, get_config, get_engine, run_db, table

if TYPE_CHECKING:
    from hub.reminders.rules import QuietHours

calendars_app = typer.Typer(
    help="Connected calendars and their reminder rules.", no_args_is_help=True
)
reminders_app = typer.Typer(
    help="Planned reminders and events that cannot get one.", no_args_is_help=True
)
calendars_app.add_typer(auth_app, name="auth")
calendar_app = typer.Typer(
    help="Dry runs on a calendar file or URL: nothing is sent or stored.", no_args_is_help=True
)


# Said the same way by every command that takes --tz, and by the console.
TZ_HELP = (
    "The calendar's time zone (IANA) when the file names none; an ICS file's X-WR-TIMEZONE "
    "wins. All-day events and floating times are read in it, rules apply in it unless the "
    "event names its own zone, and times are shown in it."
)
# The filters of the listings of what is planned (`reminders list`, `reminders answers`).
CalendarFilterOpt = Annotated[
    str | None, typer.Option(help="Only this calendar (by name; with --account if shared).")
]
AccountFilterOpt = Annotated[str | None, typer.Option(help="Only this account's calendars.")]
SoonestLimitOpt = Annotated[int, typer.Option(min=1, help="At most this many, soonest first.")]


@calendars_app.command("add")
def calendars_add(
    account: str,
    name: str,
    type_: Annotated[str, typer.Option("--type", help="ics, caldav, google, graph or exchange.")],
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Source setting KEY=VALUE, e.g. url=https://…/cal.ics or "
            "password_env=CALDAV_PASSWORD; repeatable.",
        ),
    ] = None,
    offsets: Annotated[str, typer.Option(help="Reminder rules, e.g. '2d@09:00,3h'.")] = "1d@09:00",
    template: Annotated[str | None, typer.Option(help="Jinja2 SMS template (sandboxed).")] = None,
    tz: Annotated[str, typer.Option(help=TZ_HELP)] = "Europe/Paris",
    locale: Annotated[str, typer.Option(help="Language of dates in the SMS.")] = "fr_FR",
    notify_changes: Annotated[bool, typer.Option(help="SMS when a reminded RDV moves.")] = False,
    sender: Annotated[str | None, typer.Option(help="SMS sender.")] = None,
    notify_mailbox: Annotated[str, typer.Option(help="Mailbox told about OUI/NON answers.")] = "",
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private",
            help="Let the calendar's URL reach this machine or a private network (loopback, "
            "10.x, 192.168.x, link-local...): for a calendar server on your own network. "
            "Without it such URLs are refused (sets private_ok=true).",
        ),
    ] = False,
) -> None:
    """Connect a calendar to ACCOUNT; its appointments get reminders by the rules given.

    An ICS or CalDAV URL must reach a public address unless --allow-private is given."""
    from hub.errors import InvalidInput
    from hub.reminders.setup import add_calendar, check_source_type, check_timezone, parse_setting
    from hub.store.models import Account

    try:
        check_source_type(type_)
    except InvalidInput as exc:
        fail(str(exc))
    settings: dict[str, Any] = {}
    for item in setting or []:
        try:
            key, value = parse_setting(item)
        except InvalidInput as exc:
            fail(f"--set {exc}")
        settings[key] = value
    if allow_private:
        settings["private_ok"] = True
    try:
        check_timezone(tz)
    except InvalidInput as exc:
        fail(f"--tz {exc}")

    def _do(session: Any) -> str:
        cal = add_calendar(
            session,
            account,
            name,
            type_,
            settings,
            offsets=offsets,
            template=template or "",
            tz=tz,
            locale=locale,
            notify_changes=notify_changes,
            sender=sender,
            notify_mailbox=notify_mailbox,
        )
        acc = session.get(Account, cal.account_id)
        return f"calendar {name} ({type_}) connected to {acc.name}; rules {offsets}"

    typer.echo(run_db(_do))
    typer.echo(f"sync it now with `smshub calendars sync {account} {name}`")


@calendars_app.command("list")
def calendars_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List calendars with their last sync."""
    from sqlmodel import col, select

    from hub.store.models import Account, Calendar

    def _do(session: Any) -> list[dict[str, Any]]:
        rows = session.exec(
            select(Calendar, Account.name).join(
                Account, col(Account.id) == col(Calendar.account_id)
            )
        ).all()
        return [
            {
                "account": a,
                "name": c.name,
                "type": c.source_type,
                "offsets": c.offsets,
                "enabled": c.enabled,
                "last_sync_at": c.last_sync_at.isoformat() if c.last_sync_at else None,
                "last_error": c.last_error or None,
            }
            for c, a in rows
        ]

    data = run_db(_do)
    emit(
        data,
        as_json,
        table(
            [
                [
                    d["account"],
                    d["name"],
                    d["type"],
                    d["offsets"],
                    (d["last_sync_at"] or "never")[:19],
                    d["last_error"] or "",
                ]
                for d in data
            ],
            ["ACCOUNT", "NAME", "TYPE", "RULES", "LAST SYNC (UTC)", "ERROR"],
        ),
    )


def _calendar_id(session: Any, account: str, name: str) -> int:
    from hub.reminders.setup import find_calendar

    return find_calendar(session, account, name)


@calendars_app.command("sync")
def calendars_sync(
    account: str,
    name: str,
    full: Annotated[bool, typer.Option(help="Ignore the sync token; read everything.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Sync a calendar now and show what changed."""
    from dataclasses import asdict

    from hub.errors import HubError
    from hub.reminders.sync import sync_calendar

    calendar_id = run_db(lambda s: _calendar_id(s, account, name))
    try:
        report = asyncio.run(sync_calendar(get_engine(), get_config(), calendar_id, full=full))
    except HubError as exc:
        fail(str(exc))
    data = asdict(report)
    lines = [
        f"{report.seen} appointments seen: {report.planned} reminders planned, "
        f"{report.rescheduled} rescheduled, {report.cancelled} cancelled, "
        f"{report.skipped} skipped"
    ]
    lines += [f"problem: {p}" for p in report.problems]
    lines += [f"warning: {w}" for w in report.warnings]
    emit(data, as_json, "\n".join(lines))


@calendars_app.command("remove")
def calendars_remove(
    account: str,
    name: str,
    keep_history: Annotated[
        bool,
        typer.Option(
            "--keep-history",
            help="Only disable the calendar (no more syncs), keeping its appointments and "
            "the record of its reminders; by default they are deleted with it.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Disconnect a calendar: cancel its reminders (refunded), then delete it.

    Scheduled reminders are cancelled and their credits refunded. One that a
    dispatcher took a moment ago is already going out: it is listed apart.
    Reminders already sent stay in `smshub messages list`.
    The files the hub kept for the calendar in its data directory are deleted
    with it: the source's cached copy or renewed refresh token, and the
    password or refresh token files it names there (written by the console or
    `smshub calendars auth --output`). Files elsewhere, or that another
    calendar uses, are kept and listed.
    """
    from dataclasses import asdict

    from hub.reminders.setup import RemoveReport, remove_calendar

    data_dir = get_config().hub.data_dir

    def _do(session: Any) -> RemoveReport:
        calendar_id = _calendar_id(session, account, name)
        return remove_calendar(session, calendar_id, keep_history, data_dir=data_dir)

    # The files are deleted once the removal is committed: the report is complete after.
    data = {"account": account, "calendar": name, **asdict(run_db(_do))}
    lines = [
        f"calendar {name} of {account} {data['action']}: {len(data['cancelled'])} scheduled "
        f"reminder(s) cancelled, {data['credits_refunded']} credit(s) refunded"
    ]
    lines += [
        f"  cancelled: {d['send_at'][:16]} UTC to {d['to']} ({d['person'] or '?'}, "
        f"appointment {d['appointment'][:16]} UTC, rule {d['rule']})"
        for d in data["cancelled"]
    ]
    lines += [
        f"  already being sent, not cancelled: {d['send_at'][:16]} UTC to {d['to']}"
        for d in data["already_sending"]
    ]
    if keep_history:
        lines.append(
            "its appointments are kept; it is no longer synced "
            "(`smshub calendars sync` would plan its reminders again)"
        )
    lines += _file_lines(data)
    emit(data, as_json, "\n".join(lines))


def _file_lines(data: dict[str, Any]) -> list[str]:
    """What `calendars remove` did with the files the hub kept for the calendar."""
    lines = []
    deleted = data["files_deleted"]
    if deleted:
        lines.append(
            f"deleted {len(deleted)} stored file(s) (" + ", ".join(f["what"] for f in deleted) + ")"
        )
        lines += [f"  deleted: {f['path']} ({f['what']})" for f in deleted]
    lines += [
        f"could not delete {f['path']} ({f['what']}): {f['error']}; delete it by hand"
        for f in data["files_not_deleted"]
    ]
    lines += [f"kept {f['path']} ({f['what']}): {f['why']}" for f in data["files_kept"]]
    if data.get("stored_entries_deleted"):
        lines.append(
            f"deleted {data['stored_entries_deleted']} secret(s) or token(s) kept for it in "
            "the database"
        )
    return lines


@reminders_app.command("list")
def reminders_list(
    calendar: CalendarFilterOpt = None,
    account: AccountFilterOpt = None,
    limit: SoonestLimitOpt = 50,
    as_json: JsonOpt = False,
) -> None:
    """Upcoming reminders (scheduled and not yet sent), soonest first. Text shows each
    calendar's local time; --json gives UTC ISO times and the zone."""
    from sqlmodel import select

    from hub.core.timeutil import as_utc, local_text
    from hub.errors import NotFound
    from hub.reminders.setup import upcoming_reminders
    from hub.sending.accounts import get_account
    from hub.store.models import Account, Calendar

    def _do(session: Any) -> list[dict[str, Any]]:
        account_id = get_account(session, account).id if account else None
        if calendar:
            # An empty list must not hide a typo in the name.
            known = select(Calendar.id).where(Calendar.name == calendar)
            if account:
                known = known.where(Calendar.account_id == get_account(session, account).id)
            if session.exec(known).first() is None:
                where = f" in account {account!r}" if account else ""
                raise NotFound(f"no calendar {calendar!r}{where} (see `smshub calendars list`)")
        rows = upcoming_reminders(
            session, account_id=account_id, calendar_name=calendar, limit=limit
        )
        accounts = dict(session.exec(select(Account.id, Account.name)).all())
        return [
            {
                "account": accounts.get(c.account_id, ""),
                "calendar": c.name,
                "send_at": as_utc(r.send_at).isoformat(),
                "to": m.recipient,
                "person": e.person,
                "appointment": as_utc(e.start).isoformat(),
                "title": e.title,
                "rule": r.rule,
                "text": m.text,
                "message_id": m.id,
                # Text output shows times as the calendar's people read them.
                "timezone": c.timezone,
                "send_at_local": local_text(r.send_at, c.timezone),
                "appointment_local": local_text(e.start, c.timezone, e.all_day),
            }
            for r, e, m, c in rows
        ]

    data = run_db(_do)
    text = table(
        [
            [
                d["send_at_local"],
                d["calendar"],
                d["to"],
                d["person"],
                d["appointment_local"],
                d["rule"],
            ]
            for d in data
        ],
        ["SEND AT", "CALENDAR", "TO", "WHO", "APPOINTMENT", "RULE"],
    )
    emit(data, as_json, text if data else "no reminder is scheduled")


@reminders_app.command("problems")
def reminders_problems(
    account: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upcoming appointments that get no reminder, and why (no mobile number...)."""
    from hub.reminders.setup import problem_events
    from hub.sending.accounts import get_account

    def _do(session: Any) -> list[dict[str, Any]]:
        account_id = get_account(session, account).id if account else None
        return [
            {"calendar": c, "start": e.start.isoformat(), "title": e.title, "problem": e.problem}
            for e, c in problem_events(session, account_id=account_id)
        ]

    data = run_db(_do)
    emit_text = table(
        [[d["calendar"], d["start"][:16], d["title"][:40], d["problem"]] for d in data],
        ["CALENDAR", "START (UTC)", "TITLE", "PROBLEM"],
    )
    emit(data, as_json, emit_text if data else "every upcoming appointment has a number")


# -- dry run ----------------------------------------------------------------------------------
# The options of `smshub calendar preview`, named so that the command reads in one screen.
_PreviewFileOrUrl = Annotated[
    str,
    typer.Argument(
        help="An ICS file, or an http(s):// / webcal:// URL of one (e.g. Google's "
        "'secret address in iCal format').",
    ),
]
_PreviewRule = Annotated[
    list[str] | None,
    typer.Option(
        "--rule",
        help="A reminder rule, repeatable: 2d@09:00 (2 days before at 09:00 local), 1d "
        "(24 hours before), 3h, 30m. Default 1d@09:00.",
    ),
]
_PreviewNow = Annotated[
    str | None,
    typer.Option(
        help="Pretend it is this time (ISO 8601; without an offset, in --tz): the "
        "window and 'created too late' are computed from it."
    ),
]
_PreviewTz = Annotated[
    str,
    typer.Option(help=TZ_HELP),
]
_PreviewLocale = Annotated[str, typer.Option(help="Language of dates in the SMS.")]
_PreviewTemplate = Annotated[
    str | None,
    typer.Option(
        help="Jinja2 SMS template; fields name (a person's name, empty when none is "
        "found), title (without the number), location, start (filters "
        "date('EEEE d MMMM'), time('HH:mm')) and all_day (no time to show). "
        "Default: the hub's French reminder."
    ),
]
_PreviewRegion = Annotated[
    str | None,
    typer.Option(help="Country of national numbers in events (default: hub.default_region)."),
]
_PreviewDays = Annotated[int, typer.Option(min=1, max=366, help="Days ahead to look at.")]
_PreviewQuiet = Annotated[
    str,
    typer.Option(
        help="Quiet hours START-END, local: a reminder falling inside goes out at the "
        "last minute before them. 00:00-00:00 turns them off."
    ),
]
_PreviewMinLead = Annotated[
    float,
    typer.Option(
        min=0,
        help="Minutes: a reminder due sooner than this after --now is 'created too late'.",
    ),
]
_PreviewAsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_PreviewAllowPrivate = Annotated[
    bool,
    typer.Option(
        "--allow-private",
        help="Let the URL reach this machine or a private network (refused otherwise).",
    ),
]


def _checked_place(tz: str, locale: str, region: str | None) -> str:
    """Refuse an unknown --tz, --locale or --region; the region to read numbers in."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    import phonenumbers
    from babel import Locale, UnknownLocaleError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--tz {tz!r} is not a time zone name such as Europe/Paris")
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError):
        fail(f"--locale {locale!r} is not a known locale such as fr_FR or en_GB")
    region = (region or get_config().hub.default_region).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        fail(f"--region {region!r} is not a country code such as FR or BE")
    return region


def _quiet_hours(quiet: str) -> QuietHours:
    """--quiet START-END as quiet hours (a HubError naming the option when malformed)."""
    from hub.errors import HubError
    from hub.reminders.rules import QuietHours, parse_hhmm

    start_text, dash, end_text = quiet.partition("-")
    if not dash:
        raise HubError(f"--quiet {quiet!r} must be START-END, such as 21:00-08:00")
    return QuietHours(parse_hhmm(start_text, "--quiet start"), parse_hhmm(end_text, "--quiet end"))


@calendar_app.command("preview")
def calendar_preview(
    file_or_url: _PreviewFileOrUrl,
    rule: _PreviewRule = None,
    now: _PreviewNow = None,
    tz: _PreviewTz = "Europe/Paris",
    locale: _PreviewLocale = "fr_FR",
    template: _PreviewTemplate = None,
    region: _PreviewRegion = None,
    days: _PreviewDays = 60,
    quiet: _PreviewQuiet = "21:00-08:00",
    min_lead: _PreviewMinLead = 30.0,
    as_json: _PreviewAsJson = False,
    allow_private: _PreviewAllowPrivate = False,
) -> None:
    """Show the reminders a calendar would get; nothing is sent or stored.

    Reads FILE_OR_URL as an ICS calendar (from --now to --days later) and
    lists, for each occurrence and each --rule in the order given: event_uid,
    start and send_at (ISO 8601 with the --tz offset), all_day, to (E.164 or
    null), name and name_source (the person greeted and where the name was
    found: a Nom:/Patient: line of the description, or an attendee; empty
    when none is), title (without the number), text, and problem (null, or
    why no SMS would go out: cancelled, no mobile number, only a landline,
    created too late, an hour rule on an all-day appointment). All-day
    appointments get day rules only (a plain 2d at 09:00), and no time in
    the text. A send time moved out of quiet hours is not a problem: send_at
    shows the moved time.
    Broken events in the file are reported on standard error.
    """
    from hub.errors import HubError, SourceError
    from hub.ports.calendar import SyncWindow
    from hub.reminders import preview
    from hub.reminders.rules import parse_offset

    region = _checked_place(tz, locale, region)
    try:
        rules = [parse_offset(r) for r in (rule or ["1d@09:00"])]
        quiet_hours = _quiet_hours(quiet)
        # A broken template is reported once, before reading anything.
        preview.check_template(template or "", locale, tz)
        moment = preview.parse_now(now, tz)
    except HubError as exc:
        fail(str(exc))
    window = SyncWindow(moment, moment + timedelta(days=days))
    try:
        read = preview.read_ics(file_or_url, window, tz, allow_private=allow_private)
        result = asyncio.run(read)
    except (SourceError, HubError) as exc:
        fail(str(exc))
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    opts = preview.PreviewOptions(
        rules=rules,
        now=moment,
        tz=tz,
        locale=locale,
        template=template or "",
        region=region,
        quiet=quiet_hours,
        min_lead=timedelta(minutes=min_lead),
    )
    try:
        entries = preview.preview_entries(result.events, opts)
    except HubError as exc:
        fail(str(exc))
    if as_json:
        emit(entries, True)
        return
    if not entries:
        typer.echo(
            f"no appointment between {moment:%Y-%m-%d %H:%M} and {window.end:%Y-%m-%d %H:%M}"
        )
        return
    typer.echo("\n".join(preview.entry_lines(entries, rules)))
