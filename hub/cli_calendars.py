"""`smshub calendars` and `smshub reminders`: connect calendars, set rules, see what is planned."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

calendars_app = typer.Typer(
    help="Connected calendars and their reminder rules.", no_args_is_help=True
)
reminders_app = typer.Typer(
    help="Planned reminders and events that cannot get one.", no_args_is_help=True
)


def _cli() -> Any:
    from hub import cli

    return cli


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
    tz: Annotated[str, typer.Option(help="Calendar time zone (IANA).")] = "Europe/Paris",
    locale: Annotated[str, typer.Option(help="Language of dates in the SMS.")] = "fr_FR",
    notify_changes: Annotated[bool, typer.Option(help="SMS when a reminded RDV moves.")] = False,
    sender: Annotated[str | None, typer.Option(help="SMS sender.")] = None,
    notify_mailbox: Annotated[str, typer.Option(help="Mailbox told about OUI/NON answers.")] = "",
) -> None:
    """Connect a calendar to ACCOUNT; its appointments get reminders by the rules given."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from hub.accounts import get_account
    from hub.models import Calendar
    from hub.registry import calendar_source_types
    from hub.reminders.render import render_reminder
    from hub.reminders.rules import parse_offsets

    cli = _cli()
    if type_ not in calendar_source_types():
        cli.fail(
            f"unknown calendar type {type_!r}; installed: "
            f"{', '.join(calendar_source_types()) or 'none'}"
        )
    settings: dict[str, str] = {}
    for item in setting or []:
        key, eq, value = item.partition("=")
        if not eq:
            cli.fail(f"--set {item!r} must be KEY=VALUE")
        settings[key.strip()] = value.strip()
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        cli.fail(f"--tz {tz!r} is not a time zone name such as Europe/Paris")

    def _do(session: Any) -> str:
        acc = get_account(session, account)
        parse_offsets(offsets)
        from hub.timeutil import utcnow

        # A broken template is refused now, not at the first reminder.
        render_reminder(
            template or "", locale=locale, tz=tz, start=utcnow(), name="Test", title="", location=""
        )
        assert acc.id is not None
        cal = Calendar(
            account_id=acc.id,
            name=name,
            source_type=type_,
            settings=json.dumps(settings),
            offsets=offsets,
            template=template or "",
            timezone=tz,
            locale=locale,
            notify_changes=notify_changes,
            sender=sender,
            notify_mailbox=notify_mailbox,
        )
        session.add(cal)
        session.flush()
        return f"calendar {name} ({type_}) connected to {acc.name}; rules {offsets}"

    typer.echo(cli.run_db(_do))
    typer.echo(f"sync it now with `smshub calendars sync {account} {name}`")


@calendars_app.command("list")
def calendars_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List calendars with their last sync."""
    from sqlmodel import col, select

    from hub.models import Account, Calendar

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
    from sqlmodel import select

    from hub.accounts import get_account
    from hub.errors import NotFound
    from hub.models import Calendar

    acc = get_account(session, account)
    cal = session.exec(
        select(Calendar).where(Calendar.account_id == acc.id, Calendar.name == name)
    ).first()
    if cal is None:
        raise NotFound(
            f"account {account!r} has no calendar {name!r} (see `smshub calendars list`)"
        )
    return int(cal.id)


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


@reminders_app.command("list")
def reminders_list(
    account: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upcoming reminders, soonest first."""
    from sqlmodel import col, select

    from hub.accounts import get_account
    from hub.models import Calendar, CalendarEventRow, Message, Reminder

    cli = _cli()

    def _do(session: Any) -> list[dict[str, Any]]:
        query = (
            select(Reminder, CalendarEventRow, Message)
            .join(CalendarEventRow, col(CalendarEventRow.id) == col(Reminder.event_id))
            .join(Calendar, col(Calendar.id) == col(CalendarEventRow.calendar_id))
            .join(Message, col(Message.id) == col(Reminder.message_id))
            .where(Reminder.status == "scheduled", Message.status == "queued")
        )
        if account:
            query = query.where(Calendar.account_id == get_account(session, account).id)
        rows = session.exec(query.order_by(col(Reminder.send_at)).limit(limit)).all()
        return [
            {
                "send_at": r.send_at.isoformat(),
                "to": m.recipient,
                "person": e.person,
                "appointment": e.start.isoformat(),
                "rule": r.rule,
                "text": m.text,
                "message_id": m.id,
            }
            for r, e, m in rows
        ]

    data = cli.run_db(_do)
    cli.emit(
        data,
        as_json,
        cli._table(
            [
                [d["send_at"][:16], d["to"], d["person"], d["appointment"][:16], d["rule"]]
                for d in data
            ],
            ["SEND AT (UTC)", "TO", "WHO", "APPOINTMENT (UTC)", "RULE"],
        ),
    )


@reminders_app.command("problems")
def reminders_problems(
    account: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upcoming appointments that get no reminder, and why (no mobile number...)."""
    from sqlmodel import col, select

    from hub.accounts import get_account
    from hub.models import Calendar, CalendarEventRow
    from hub.timeutil import utcnow

    cli = _cli()

    def _do(session: Any) -> list[dict[str, Any]]:
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
        if account:
            query = query.where(Calendar.account_id == get_account(session, account).id)
        rows = session.exec(query.order_by(col(CalendarEventRow.start))).all()
        return [
            {"calendar": c, "start": e.start.isoformat(), "title": e.title, "problem": e.problem}
            for e, c in rows
        ]

    data = cli.run_db(_do)
    emit_text = cli._table(
        [[d["calendar"], d["start"][:16], d["title"][:40], d["problem"]] for d in data],
        ["CALENDAR", "START (UTC)", "TITLE", "PROBLEM"],
    )
    cli.emit(data, as_json, emit_text if data else "every upcoming appointment has a number")
