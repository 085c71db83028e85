"""`smshub calendars`, `smshub reminders` and `smshub calendar preview`: connect calendars,
set rules, see what is planned, and try rules on a calendar without sending anything."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from hub.ports.calendar import CalendarEvent
    from hub.reminders.rules import Offset, QuietHours

calendars_app = typer.Typer(
    help="Connected calendars and their reminder rules.", no_args_is_help=True
)
reminders_app = typer.Typer(
    help="Planned reminders and events that cannot get one.", no_args_is_help=True
)
auth_app = typer.Typer(
    help="Sign in to Google or Microsoft 365 once and get the refresh token a calendar needs.",
    no_args_is_help=True,
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


def _cli() -> Any:
    from hub.cli import main as cli

    return cli


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error and exit (typed NoReturn, unlike ``_cli().fail``)."""
    from hub.cli.main import fail

    fail(message, code)


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

    cli = _cli()
    try:
        check_source_type(type_)
    except InvalidInput as exc:
        cli.fail(str(exc))
    settings: dict[str, Any] = {}
    for item in setting or []:
        try:
            key, value = parse_setting(item)
        except InvalidInput as exc:
            cli.fail(f"--set {exc}")
        settings[key] = value
    if allow_private:
        settings["private_ok"] = True
    try:
        check_timezone(tz)
    except InvalidInput as exc:
        cli.fail(f"--tz {exc}")

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

    typer.echo(cli.run_db(_do))
    typer.echo(f"sync it now with `smshub calendars sync {account} {name}`")


@calendars_app.command("list")
def calendars_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List calendars with their last sync."""
    from sqlmodel import col, select

    from hub.store.models import Account, Calendar

    cli = _cli()

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

    data = cli.run_db(_do)
    cli.emit(
        data,
        as_json,
        cli._table(
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

    cli = _cli()
    calendar_id = cli.run_db(lambda s: _calendar_id(s, account, name))
    try:
        report = asyncio.run(
            sync_calendar(cli.get_engine(), cli.get_config(), calendar_id, full=full)
        )
    except HubError as exc:
        cli.fail(str(exc))
    data = asdict(report)
    lines = [
        f"{report.seen} appointments seen: {report.planned} reminders planned, "
        f"{report.rescheduled} rescheduled, {report.cancelled} cancelled, "
        f"{report.skipped} skipped"
    ]
    lines += [f"problem: {p}" for p in report.problems]
    lines += [f"warning: {w}" for w in report.warnings]
    cli.emit(data, as_json, "\n".join(lines))


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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
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

    cli = _cli()
    data_dir = cli.get_config().hub.data_dir

    def _do(session: Any) -> RemoveReport:
        calendar_id = _calendar_id(session, account, name)
        return remove_calendar(session, calendar_id, keep_history, data_dir=data_dir)

    # The files are deleted once the removal is committed: the report is complete after.
    data = {"account": account, "calendar": name, **asdict(cli.run_db(_do))}
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
    cli.emit(data, as_json, "\n".join(lines))


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
    calendar: Annotated[
        str | None, typer.Option(help="Only this calendar (by name; with --account if shared).")
    ] = None,
    account: Annotated[str | None, typer.Option(help="Only this account's calendars.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, soonest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Upcoming reminders (scheduled and not yet sent), soonest first. Text shows each
    calendar's local time; --json gives UTC ISO times and the zone."""
    from sqlmodel import select

    from hub.core.timeutil import as_utc, local_text
    from hub.errors import NotFound
    from hub.reminders.setup import upcoming_reminders
    from hub.sending.accounts import get_account
    from hub.store.models import Account, Calendar

    cli = _cli()

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

    data = cli.run_db(_do)
    table = cli._table(
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
    cli.emit(data, as_json, table if data else "no reminder is scheduled")


@reminders_app.command("problems")
def reminders_problems(
    account: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upcoming appointments that get no reminder, and why (no mobile number...)."""
    from hub.reminders.setup import problem_events
    from hub.sending.accounts import get_account

    cli = _cli()

    def _do(session: Any) -> list[dict[str, Any]]:
        account_id = get_account(session, account).id if account else None
        return [
            {"calendar": c, "start": e.start.isoformat(), "title": e.title, "problem": e.problem}
            for e, c in problem_events(session, account_id=account_id)
        ]

    data = cli.run_db(_do)
    emit_text = cli._table(
        [[d["calendar"], d["start"][:16], d["title"][:40], d["problem"]] for d in data],
        ["CALENDAR", "START (UTC)", "TITLE", "PROBLEM"],
    )
    cli.emit(data, as_json, emit_text if data else "every upcoming appointment has a number")


# -- sign-in (refresh tokens) -----------------------------------------------------------------
def _login_function(source_type: str, function: str) -> Callable[..., str]:
    """FUNCTION of the connector registered as SOURCE_TYPE.

    The hub never imports connectors/ by name: the entry point registered for the source
    (pyproject.toml, group smshub.calendar_sources) says which module implements it, and the
    sign-in helper lives next to the source class in that module.
    """
    import importlib
    from importlib.metadata import entry_points

    from hub.ports.registry import CALENDAR_GROUP

    for ep in entry_points(group=CALENDAR_GROUP):
        if ep.name == source_type:
            module = importlib.import_module(ep.module)
            found = getattr(module, function, None)
            if not callable(found):
                _fail(f"the {source_type!r} calendar connector ({ep.module}) has no {function}")
            return found
    _fail(f"no {source_type!r} calendar connector is installed (reinstall smshub)")


def _check_output(output: Path | None) -> None:
    """Refuse an unwritable --output before the user goes through the sign-in for nothing."""
    if output is None:
        return
    if output.is_dir():
        _fail(f"--output {output} is a directory; name a file such as {output}/token")
    parent = output.parent
    if not parent.is_dir():
        _fail(f"--output {output}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        _fail(f"--output {output} cannot be written (permissions)")


def _deliver_token(token: str, output: Path | None, source_type: str) -> None:
    """Print TOKEN on standard output, or store it in OUTPUT readable by its owner only."""
    if output is None:
        # Alone on stdout, so `... > file` or `$(...)` captures exactly the token.
        typer.echo(token)
        typer.echo(
            f"store it in a file or an environment variable and name it in the calendar: "
            f"--set refresh_token_file=PATH (or refresh_token_env=NAME) with --type {source_type}",
            err=True,
        )
        return
    from hub.reminders.setup import write_secret_file

    try:
        write_secret_file(output, token)
    except OSError as exc:
        # The sign-in cannot simply be repeated later (it needed a person): show the token
        # rather than lose it.
        typer.echo(token)
        _fail(f"cannot write {output} ({exc.strerror or exc}); the token is printed above")
    typer.echo(
        f"refresh token written to {output} (mode 0600); connect the calendar with "
        f"`smshub calendars add ACCOUNT NAME --type {source_type} "
        f"--set refresh_token_file={output.resolve()} ...`"
    )


def _run_login(login: Callable[..., str], **kwargs: Any) -> str:
    """Call a connector's sign-in, turning its failures into one-line errors."""
    from hub.errors import SourceError

    try:
        return login(**kwargs)
    except SourceError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("the sign-in was interrupted; nothing was stored")


OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write the refresh token to this file (created with mode 0600) instead of "
        "printing it.",
    ),
]


@auth_app.command("google")
def auth_google(
    client_id: Annotated[
        str,
        typer.Option(
            help="The OAuth client ID of a 'Desktop app' client (Google Cloud console → "
            "APIs & Services → Credentials), in a project with the Calendar API enabled."
        ),
    ],
    client_secret_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the client's secret."),
    ] = None,
    client_secret_file: Annotated[
        Path | None, typer.Option(help="File holding the client's secret.")
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(help="Ask only to read the calendar (OUI/NON answers are then not noted)."),
    ] = False,
    browser: Annotated[
        bool,
        typer.Option(help="Open the consent page in a browser (--no-browser: only print it)."),
    ] = True,
    port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Local port receiving Google's redirect (0: any free one). Reach it with an "
            "SSH tunnel when the browser runs on another machine.",
        ),
    ] = 0,
    output: OutputOpt = None,
) -> None:
    """Sign in to Google in a browser; get a Google calendar's refresh token.

    Run it once per Google account, on a machine with a browser (or with
    --no-browser and a fixed --port reached through an SSH tunnel). Then:
    smshub calendars add ACCOUNT NAME --type google --set client_id=ID
    --set client_secret_env=VAR --set refresh_token_file=FILE.
    The client secret is never an argument (it would stay in shell history).
    """
    from hub.core.config import read_secret

    if bool(client_secret_env) == bool(client_secret_file):
        _fail(
            "give the OAuth client's secret with --client-secret-env NAME (an environment "
            "variable) or --client-secret-file PATH, exactly one of them"
        )
    try:
        secret = read_secret(
            {
                "client_secret_env": client_secret_env,
                "client_secret_file": str(client_secret_file) if client_secret_file else None,
            },
            "client_secret",
            "smshub calendars auth google",
        )
    except Exception as exc:  # ConfigError, or an unreadable file
        _fail(str(exc))
    if not secret:
        where = f"${client_secret_env}" if client_secret_env else str(client_secret_file)
        _fail(f"the OAuth client secret is empty: {where} holds nothing")
    _check_output(output)
    login = _login_function("google", "installed_app_login")

    def _show(text: str) -> None:
        typer.echo(text, err=True)

    token = _run_login(
        login,
        client_id=client_id,
        client_secret=secret,
        read_only=read_only,
        open_browser=browser,
        port=port,
        show=_show,
    )
    _deliver_token(token, output, "google")


@auth_app.command("microsoft")
def auth_microsoft(
    client_id: Annotated[
        str,
        typer.Option(
            help="The Application (client) ID of an Entra ID app registration that allows "
            "public client flows, with the delegated permission Calendars.ReadWrite."
        ),
    ],
    tenant: Annotated[
        str,
        typer.Option(
            help="Directory (tenant) ID or domain; 'common' for any work or personal account."
        ),
    ] = "common",
    authority: Annotated[
        str | None,
        typer.Option(help="Sign-in service (default Microsoft's global cloud)."),
    ] = None,
    graph_url: Annotated[
        str | None,
        typer.Option(help="Graph API root (default https://graph.microsoft.com/v1.0)."),
    ] = None,
    read_only: Annotated[
        bool, typer.Option(help="Ask only Calendars.Read (OUI/NON answers are not noted).")
    ] = False,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle for a TLS-inspecting proxy.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 30.0,
    output: OutputOpt = None,
) -> None:
    """Sign in to Microsoft 365 / Outlook with a device code; get a refresh token.

    Prints a code to enter at https://microsoft.com/devicelogin in any
    browser, then waits (15 minutes at most) for the sign-in. Then:
    smshub calendars add ACCOUNT NAME --type graph --set client_id=ID
    --set tenant_id=TENANT --set refresh_token_file=FILE.
    """
    _check_output(output)
    login = _login_function("graph", "device_code_login")
    kwargs: dict[str, Any] = {
        "client_id": client_id,
        "tenant_id": tenant,
        "read_only": read_only,
        "timeout": timeout,
        "show": lambda text: typer.echo(text, err=True),
    }
    if authority:
        kwargs["authority"] = authority
    if graph_url:
        kwargs["graph_base_url"] = graph_url
    if ca_file is not None:
        kwargs["ca_file"] = str(ca_file)
    token = _run_login(login, **kwargs)
    _deliver_token(token, output, "graph")


# -- dry run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreviewOptions:
    """What `smshub calendar preview` applies, as a calendar would."""

    rules: list[Offset]
    now: datetime  # aware
    tz: str
    locale: str
    template: str
    region: str
    quiet: QuietHours
    min_lead: timedelta


def preview_entries(events: list[CalendarEvent], opts: PreviewOptions) -> list[dict[str, Any]]:
    """One entry per occurrence per rule, as the reconciler would plan it (nothing stored).

    ``problem`` says why no SMS would go out (an hour rule and an all-day appointment
    included: ``send_at`` is null then); a send time moved out of quiet hours is not a
    problem, it only shows in ``send_at``. ``name`` is the person greeted ("" when none is
    found) and ``name_source`` where it came from (description, attendee).
    """
    from zoneinfo import ZoneInfo

    from hub.ports.calendar import EventStatus
    from hub.reminders import all_day
    from hub.reminders.extract import find_recipient
    from hub.reminders.naming import naming
    from hub.reminders.render import render_reminder

    shown = ZoneInfo(opts.tz)
    entries = []
    for event in sorted(events, key=lambda e: (e.start, e.uid, e.occurrence)):
        # As Reconciler._tz: the event's own zone decides "09:00", else the calendar's.
        zone = event.timezone if event.timezone and event.timezone != "UTC" else opts.tz
        recipient = find_recipient(event, opts.region)
        named = naming(event, recipient.phone)
        text = render_reminder(
            opts.template,
            locale=opts.locale,
            tz=zone,
            start=event.start,
            name=named.name,
            title=named.title,
            location=event.location,
            all_day=event.all_day,
        )
        for rule in opts.rules:
            when = all_day.reminder_time(event.start, rule, zone, opts.quiet, event.all_day)
            problem: str | None = None
            if event.status == EventStatus.CANCELLED:
                problem = "the appointment is cancelled"
            elif recipient.phone is None:
                problem = recipient.problem
            elif when is None:
                problem = all_day.skip_note([rule.text])
            elif event.start <= opts.now:
                problem = "the appointment has already begun"
            elif when <= opts.now + opts.min_lead:
                problem = "created too late for this reminder"
            entries.append(
                {
                    "event_uid": event.uid,
                    "start": event.start.astimezone(shown).isoformat(),
                    "all_day": event.all_day,
                    "send_at": when.astimezone(shown).isoformat() if when else None,
                    "to": recipient.phone,
                    "name": named.name,
                    "name_source": named.source,
                    "title": named.title,
                    "text": text,
                    "problem": problem,
                }
            )
    return entries


def _parse_now(value: str | None, tz: str) -> datetime:
    """--now as an aware datetime (a time without offset is in --tz); now when not given."""
    from zoneinfo import ZoneInfo

    from hub.core.timeutil import utcnow

    if value is None:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--now {value!r} is not an ISO 8601 time such as 2025-03-20T12:00+01:00")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=ZoneInfo(tz))


@calendar_app.command("preview")
def calendar_preview(
    file_or_url: Annotated[
        str,
        typer.Argument(
            help="An ICS file, or an http(s):// / webcal:// URL of one (e.g. Google's "
            "'secret address in iCal format').",
        ),
    ],
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule",
            help="A reminder rule, repeatable: 2d@09:00 (2 days before at 09:00 local), 1d "
            "(24 hours before), 3h, 30m. Default 1d@09:00.",
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="Pretend it is this time (ISO 8601; without an offset, in --tz): the "
            "window and 'created too late' are computed from it."
        ),
    ] = None,
    tz: Annotated[
        str,
        typer.Option(help=TZ_HELP),
    ] = "Europe/Paris",
    locale: Annotated[str, typer.Option(help="Language of dates in the SMS.")] = "fr_FR",
    template: Annotated[
        str | None,
        typer.Option(
            help="Jinja2 SMS template; fields name (a person's name, empty when none is "
            "found), title (without the number), location, start (filters "
            "date('EEEE d MMMM'), time('HH:mm')) and all_day (no time to show). "
            "Default: the hub's French reminder."
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="Country of national numbers in events (default: hub.default_region)."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="Days ahead to look at.")] = 60,
    quiet: Annotated[
        str,
        typer.Option(
            help="Quiet hours START-END, local: a reminder falling inside goes out at the "
            "last minute before them. 00:00-00:00 turns them off."
        ),
    ] = "21:00-08:00",
    min_lead: Annotated[
        float,
        typer.Option(
            min=0,
            help="Minutes: a reminder due sooner than this after --now is 'created too late'.",
        ),
    ] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private",
            help="Let the URL reach this machine or a private network (refused otherwise).",
        ),
    ] = False,
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
    import tempfile
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    import phonenumbers
    from babel import Locale, UnknownLocaleError

    from hub.errors import HubError, SourceError
    from hub.ports.calendar import SourceContext, SyncWindow
    from hub.ports.registry import build_calendar_source
    from hub.reminders.render import render_reminder
    from hub.reminders.rules import QuietHours, parse_hhmm, parse_offset

    cli = _cli()
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        _fail(f"--tz {tz!r} is not a time zone name such as Europe/Paris")
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError):
        _fail(f"--locale {locale!r} is not a known locale such as fr_FR or en_GB")
    region = (region or cli.get_config().hub.default_region).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        _fail(f"--region {region!r} is not a country code such as FR or BE")
    start_text, dash, end_text = quiet.partition("-")
    try:
        rules = [parse_offset(r) for r in (rule or ["1d@09:00"])]
        if not dash:
            raise HubError(f"--quiet {quiet!r} must be START-END, such as 21:00-08:00")
        quiet_hours = QuietHours(
            parse_hhmm(start_text, "--quiet start"), parse_hhmm(end_text, "--quiet end")
        )
        # A broken template is reported once, before reading anything.
        render_reminder(
            template or "",
            locale=locale,
            tz=tz,
            start=_parse_now(None, tz),
            name="Test",
            title="",
            location="",
        )
    except HubError as exc:
        _fail(str(exc))
    moment = _parse_now(now, tz)
    window = SyncWindow(moment, moment + timedelta(days=days))

    async def _read() -> Any:
        # A throwaway data directory: the ICS source caches fetched files there, and a dry
        # run leaves nothing behind.
        with tempfile.TemporaryDirectory(prefix="smshub-preview-") as scratch:
            ctx = SourceContext(name="preview", data_dir=Path(scratch))
            settings: dict[str, Any] = {"url": file_or_url, "timezone": tz}
            if allow_private:
                settings["private_ok"] = True
            ics = build_calendar_source("ics", settings, ctx, "preview")
            try:
                return await ics.sync(window, None)
            finally:
                await ics.close()

    try:
        result = asyncio.run(_read())
    except (SourceError, HubError) as exc:
        _fail(str(exc))
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    opts = PreviewOptions(
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
        entries = preview_entries(result.events, opts)
    except HubError as exc:
        _fail(str(exc))
    if as_json:
        cli.emit(entries, True)
        return
    if not entries:
        typer.echo(
            f"no appointment between {moment:%Y-%m-%d %H:%M} and {window.end:%Y-%m-%d %H:%M}"
        )
        return
    lines = []
    # Entries come rule after rule for each occurrence, in the order the rules were given.
    for index, entry in enumerate(entries):
        name = rules[index % len(rules)].text
        start = entry["start"][:10] + " all day" if entry["all_day"] else entry["start"][:16]
        send = entry["send_at"][:16] if entry["send_at"] else "-"
        greeted = (
            f"{entry['name']} (from {entry['name_source']})" if entry["name"] else "no name found"
        )
        lines.append(
            f"{start}  {name:<9} send {send:<16}  to {entry['to'] or '-'}  name: {greeted}"
        )
        said = f"NOT SENT: {entry['problem']}" if entry["problem"] else entry["text"]
        lines.append(f"    {said}")
    typer.echo("\n".join(lines))
