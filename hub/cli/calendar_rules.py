"""`smshub calendars rules`: change a connected calendar's reminder rules, quiet hours,
template, language or time zone; the reminders already planned follow at once (moved,
cancelled and refunded as when an appointment moves), as from the console.

It adds its command to the ``calendars`` group of hub.cli.calendars; hub.cli.main imports it
for that."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlmodel import Session

from hub.cli.calendars import TZ_HELP, calendars_app
from hub.cli.common import JsonOpt, emit, fail, get_config, get_engine, run_db
from hub.errors import HubError, InvalidInput
from hub.reminders.replan import replan, replanned_message
from hub.reminders.setup import find_calendar, update_rules
from hub.store.models import Calendar


@calendars_app.command("rules")
def calendars_rules(
    account: str,
    name: str,
    rules: Annotated[
        str | None,
        typer.Option(
            help="Reminder rules, comma-separated: 2d@09:00 (2 days before at 09:00), 1d, 3h, "
            "30m. Hour rules do not apply to all-day appointments."
        ),
    ] = None,
    quiet: Annotated[
        str | None,
        typer.Option(help="Quiet hours START-END, local (21:00-08:00); 00:00-00:00: none."),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            help="Jinja2 SMS template (fields name, title, location, start, all_day); "
            "'' for the hub's default."
        ),
    ] = None,
    template_file: Annotated[
        Path | None, typer.Option(help="Read the template from this file.", exists=True)
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Language of dates (fr_FR).")] = None,
    tz: Annotated[str | None, typer.Option(help=TZ_HELP)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a calendar's reminder settings; what is not given stays as it is.

    The reminders already planned are replanned at once by the new settings: a
    reminder whose send time or text changes is cancelled, refunded and planned
    again; those of a removed rule are cancelled and refunded. Prints how many.
    """

    if template is not None and template_file is not None:
        fail("give --template or --template-file, not both")
    if template_file is not None:
        template = template_file.read_text(encoding="utf-8")

    def _save(session: Session) -> tuple[int, int]:
        calendar_id = find_calendar(session, account, name)
        cal = session.get(Calendar, calendar_id)
        assert cal is not None
        quiet_start, quiet_end = cal.quiet_start, cal.quiet_end
        if quiet is not None:
            start, dash, end = quiet.partition("-")
            if not dash:
                raise InvalidInput(f"--quiet {quiet!r} must be START-END, such as 21:00-08:00")
            quiet_start, quiet_end = start.strip(), end.strip()
        report = update_rules(
            session,
            cal,
            offsets=rules if rules is not None else cal.offsets,
            quiet_start=quiet_start,
            quiet_end=quiet_end,
            template=(template.strip() if template is not None else cal.template),
            locale=locale.strip() if locale is not None else cal.locale,
            tz=tz.strip() if tz is not None else cal.timezone,
        )
        return calendar_id, len(report.cancelled)

    calendar_id, dropped = run_db(_save)
    try:
        report = replan(get_engine(), get_config(), calendar_id)
    except HubError as exc:
        fail(f"settings saved, but planned reminders could not be replanned now: {exc}")
    data: dict[str, Any] = {"removed_rule_cancelled": dropped, **asdict(report)}
    text = f"calendar {name} updated: {replanned_message(report)}"
    if dropped:
        text += f"; {dropped} reminder(s) of removed rules cancelled and refunded"
    lines = [text] + [f"problem: {p}" for p in report.problems]
    emit(data, as_json, "\n".join(lines))
