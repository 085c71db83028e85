"""`smshub contacts|lists|templates|campaigns ...`: contact lists, templates, campaigns.

Each command runs in one transaction (``run_db``); ``--account`` may be left out when there
is only one main account.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.common import (
    JsonOpt,
    default_account,
    emit,
    fail,
    get_config,
    read_bytes,
    run_db,
    send_time,
    table,
    text_arg,
)

contacts_app = typer.Typer(help="Import contacts into lists.", no_args_is_help=True)
lists_app = typer.Typer(
    help="Contact lists (list:NAME in a mail subject, --list in campaigns).", no_args_is_help=True
)
templates_app = typer.Typer(
    help="Saved SMS texts with merge fields ({{ first_name }}, {{ number }}, ...).",
    no_args_is_help=True,
)
campaigns_app = typer.Typer(
    help="Personalised sends to lists, now or scheduled; reports and exports.",
    no_args_is_help=True,
)

AccountOpt = Annotated[
    str | None, typer.Option(help="The account (default: the only main account).")
]


def _acc(session: Any, account: str | None) -> Any:
    from hub.sending.accounts import get_account

    return get_account(session, account or default_account(session))


def _region() -> str:
    return get_config().hub.default_region


def _fields(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--field {item!r} must be NAME=VALUE, e.g. --field first_name=Jeanne")
        out[key.strip()] = value
    return out


def _write_or_print(data: bytes, output: Path | None, what: str) -> None:
    if output is None:
        typer.echo(data, nl=False)
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    typer.echo(f"{what} written to {output}")


def _print_rejected(rejected: list[dict[str, Any]]) -> None:
    for r in rejected:
        where = f"line {r['line']}: " if "line" in r else ""
        typer.echo(f"  {where}{r['input']!r} left out ({r['reason']})")


# -- contacts -------------------------------------------------------------------------------
@contacts_app.command("import")
def contacts_import(
    file: Annotated[Path, typer.Argument(help="CSV (comma or semicolon), TXT, XLSX or XLS.")],
    list_name: Annotated[str, typer.Option("--list", help="The list to add them to.")],
    account: AccountOpt = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Check the file and show what would happen.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import a contact file: number in the first column, other columns become merge fields."""
    from hub.campaigns.contacts import check_import_size, import_contacts
    from hub.errors import InvalidInput

    limits = get_config().contacts
    data = read_bytes(file)
    try:
        check_import_size(len(data), file.name, limits.max_import_size)
    except InvalidInput as exc:
        fail(str(exc), exc.exit_code)
    report = run_db(
        lambda s: import_contacts(
            s,
            _acc(s, account),
            list_name,
            data,
            file.name,
            preview=preview,
            region=_region(),
            max_rows=limits.max_import_rows,
        )
    )
    out = report.to_dict()
    if as_json:
        emit(out, True)
        return
    typer.echo(report.summary())
    if report.fields:
        typer.echo("merge fields: " + ", ".join(report.fields))
    _print_rejected(out["rejected"])
    for d in out["duplicate_lines"]:
        typer.echo(f"  line {d['line']}: {d['input']!r} repeats line {d['first_line']}")
    if out["preview"]:
        names = ["number", *report.fields]
        typer.echo(
            table([[row.get(n, "") for n in names] for row in out["preview"]], names).rstrip()
        )
    if preview:
        typer.echo("preview only: nothing was saved")


# -- lists ----------------------------------------------------------------------------------
@lists_app.command("list")
def lists_list(account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """The account's lists and their sizes."""
    from hub.campaigns.contacts import list_summaries

    data = run_db(lambda s: list_summaries(s, _acc(s, account)))
    emit(
        data,
        as_json,
        table(
            [[d["name"], d["contacts"], d["created_at"][:19]] for d in data],
            ["LIST", "CONTACTS", "CREATED (UTC)"],
        )
        if data
        else "no contact lists yet; create one with `smshub contacts import FILE --list NAME`",
    )


@lists_app.command("show")
def lists_show(
    name: str,
    account: AccountOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many contacts.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """The list's contacts and their merge fields."""
    from hub.campaigns.contacts import field_names, get_list, list_members

    def _do(session: Any) -> dict[str, Any]:
        acc = _acc(session, account)
        found = get_list(session, acc, name)
        members = list_members(session, acc.id, found.name)
        return {
            "name": found.name,
            "contacts": len(members),
            "fields": field_names(members),
            "members": [{"number": n, **f} for n, f in members[:limit]],
        }

    data = run_db(_do)
    names = ["number", *data["fields"]]
    lines = [f"list {data['name']}: {data['contacts']} contact(s)"]
    if data["members"]:
        lines.append(table([[m.get(n, "") for n in names] for m in data["members"]], names))
    if data["contacts"] > limit:
        lines.append(f"... {data['contacts'] - limit} more (use --limit or `lists export`)")
    emit(data, as_json, "\n".join(lines))


@lists_app.command("add")
def lists_add(
    name: str,
    numbers: Annotated[list[str], typer.Argument(help="Numbers in any format.")],
    field: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE merge field for these numbers.")
    ] = None,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add numbers to a list (created if needed)."""
    from hub.campaigns.contacts import add_numbers

    fields = _fields(field)
    report = run_db(
        lambda s: add_numbers(s, _acc(s, account), name, numbers, region=_region(), fields=fields)
    )
    out = report.to_dict()
    if as_json:
        emit(out, True)
    else:
        typer.echo(
            f"list {report.list_name}: {report.added} added, {report.updated} updated, "
            f"{report.unchanged} already there, {len(report.rejected)} left out"
        )
        _print_rejected([{"input": r["input"], "reason": r["reason"]} for r in out["rejected"]])
    if report.rejected and not (report.added or report.updated or report.unchanged):
        raise typer.Exit(1)


@lists_app.command("remove")
def lists_remove(
    name: str,
    numbers: Annotated[list[str], typer.Argument(help="Numbers in any format.")],
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take numbers off a list."""
    from dataclasses import asdict

    from hub.campaigns.contacts import remove_numbers

    report = run_db(lambda s: remove_numbers(s, _acc(s, account), name, numbers, region=_region()))
    data = {"removed": report.removed, "not_found": [asdict(r) for r in report.not_found]}
    lines = [f"{len(report.removed)} removed from {name}"]
    lines += [f"  {r.input!r}: {r.reason}" for r in report.not_found]
    emit(data, as_json, "\n".join(lines), ok=bool(report.removed))


@lists_app.command("export")
def lists_export(
    name: str,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    account: AccountOpt = None,
) -> None:
    """Export a list as CSV (number, then one column per merge field)."""
    from hub.campaigns.contacts import export_list

    data = run_db(lambda s: export_list(s, _acc(s, account), name))
    _write_or_print(data, output, f"list {name}")


@lists_app.command("delete")
def lists_delete(name: str, account: AccountOpt = None) -> None:
    """Delete a list and its contacts (messages already sent are kept)."""
    from hub.campaigns.contacts import delete_list

    count = run_db(lambda s: delete_list(s, _acc(s, account), name))
    typer.echo(f"list {name} deleted with its {count} contact(s)")


# -- templates ------------------------------------------------------------------------------
@templates_app.command("create")
def templates_create(
    name: str,
    text: Annotated[str, typer.Option(help="The text with merge fields; '-' reads stdin.")],
    replace: Annotated[bool, typer.Option(help="Replace a template of that name.")] = False,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Save a template, e.g. --text 'Bonjour {{ first_name }}, ...'."""
    from hub.campaigns.templates import create_template, template_view

    body = text_arg(text)
    data = run_db(
        lambda s: template_view(create_template(s, _acc(s, account), name, body, replace=replace))
    )
    fields = ", ".join(data["fields"]) or "none"
    emit(data, as_json, f"template {data['name']} saved (merge fields: {fields})")


@templates_app.command("list")
def templates_list(account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """The account's templates."""
    from hub.campaigns.templates import list_templates, template_view

    data = run_db(lambda s: [template_view(t) for t in list_templates(s, _acc(s, account))])
    emit(
        data,
        as_json,
        table(
            [[d["name"], ", ".join(d["fields"]), d["text"][:50]] for d in data],
            ["NAME", "FIELDS", "TEXT"],
        )
        if data
        else "no templates yet; save one with `smshub templates create NAME --text ...`",
    )


@templates_app.command("show")
def templates_show(name: str, account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """A template's text and merge fields."""
    from hub.campaigns.templates import get_template, template_view

    data = run_db(lambda s: template_view(get_template(s, _acc(s, account), name)))
    emit(data, as_json, f"{data['text']}\n(merge fields: {', '.join(data['fields']) or 'none'})")


@templates_app.command("delete")
def templates_delete(name: str, account: AccountOpt = None) -> None:
    """Delete a template (campaigns keep their own copy of the text)."""
    from hub.campaigns.templates import delete_template

    run_db(lambda s: delete_template(s, _acc(s, account), name))
    typer.echo(f"template {name} deleted")


def _print_preview(data: dict[str, Any]) -> None:
    rows = data["recipients"]
    typer.echo(
        table(
            [
                [
                    r["number"] or r["input"],
                    r["segments"] or "",
                    r["encoding"] or "",
                    r["credits"],
                    r["error"] or (r["text"] or "").replace("\n", " ")[:60],
                ]
                for r in rows
            ],
            ["NUMBER", "PARTS", "ENCODING", "CREDITS", "TEXT / WHY LEFT OUT"],
        )
    )
    t = data["totals"]
    typer.echo(
        f"{t['recipients']} recipient(s), {t['left_out']} left out, {t['segments']} part(s), "
        f"{t['credits']} credits (balance {t['balance']}"
        + ("" if t["enough_credits"] else ", NOT ENOUGH")
        + ")"
    )


def _show_preview(
    account: str | None,
    template: str | None,
    text: str | None,
    lists: list[str] | None,
    numbers: list[str] | None,
    type_: str,
    sender: str | None,
    track_links: bool | None,
    as_json: bool,
) -> None:
    """Print each recipient's text and cost of a send of TEMPLATE (by name), else TEXT."""
    from hub.campaigns.templates import get_template, preview_personalized

    config = get_config()

    def _do(session: Any) -> dict[str, Any]:
        acc = _acc(session, account)
        source = get_template(session, acc, template) if template else text or ""
        return preview_personalized(
            session,
            config,
            acc,
            source,
            lists=lists or [],
            numbers=numbers or [],
            type=type_,
            sender=sender,
            track_links=track_links,
        )

    data = run_db(_do)
    if as_json:
        emit(data, True)
    else:
        _print_preview(data)


@templates_app.command("preview")
def templates_preview(
    name: Annotated[str | None, typer.Argument(help="A saved template (or use --text).")] = None,
    text: Annotated[str | None, typer.Option(help="A text instead of a template.")] = None,
    list_names: Annotated[
        list[str] | None, typer.Option("--list", help="Recipients: a contact list; repeatable.")
    ] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="A number; repeatable.")] = None,
    type_: Annotated[str, typer.Option("--type", help="alert or marketing.")] = "alert",
    sender: Annotated[str | None, typer.Option(help="The sender the send will use.")] = None,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each recipient's text, parts and credits; sends nothing."""
    if (name is None) == (text is None):
        fail("give a template NAME or --text, not both")
    if not list_names and not to:
        fail("name recipients with --list or --to")

    source = None if name else text_arg(text or "")
    _show_preview(account, name, source, list_names, to, type_, sender, None, as_json)


@templates_app.command("test")
def templates_test(
    name: str,
    to: Annotated[str, typer.Option("--to", help="The account's own number.")],
    field: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE for a merge field; repeatable.")
    ] = None,
    type_: Annotated[str, typer.Option("--type", help="alert or marketing.")] = "alert",
    sender: Annotated[str | None, typer.Option(help="Sender name or number.")] = None,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the template once, free, to the account's own number to see it on a phone."""
    from hub.campaigns.templates import send_test

    fields = _fields(field)
    result = run_db(
        lambda s: send_test(
            s,
            get_config(),
            _acc(s, account),
            name,
            to,
            fields=fields,
            type=type_,
            sender=sender,
        )
    )
    data = result.to_dict()
    r = result.recipients[0]
    emit(
        data,
        as_json,
        f"test SMS {r.status} to {r.e164} ({result.segments} part(s), free)"
        + (f": {r.reason}" if r.reason else ""),
        ok=bool(result.accepted),
    )


# -- campaigns ------------------------------------------------------------------------------
@campaigns_app.command("create")
def campaigns_create(
    name: str,
    list_names: Annotated[
        list[str] | None, typer.Option("--list", help="A contact list; repeatable.")
    ] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="A number; repeatable.")] = None,
    text: Annotated[str | None, typer.Option(help="The text ('-' reads stdin).")] = None,
    template: Annotated[str | None, typer.Option(help="A saved template instead.")] = None,
    type_: Annotated[str, typer.Option("--type", help="marketing or alert.")] = "marketing",
    at: Annotated[str | None, typer.Option(help="Send later, ISO 8601 (UTC if no offset).")] = None,
    sender: Annotated[str | None, typer.Option(help="Sender name or number.")] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Show each recipient's text and cost; send nothing.")
    ] = False,
    track_links: Annotated[
        bool | None,
        typer.Option(
            "--track-links/--no-track-links",
            help="Replace each URL by a short link of each recipient's own, to see who "
            "clicked (default: the account's setting, `smshub accounts set --track-links`).",
        ),
    ] = None,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a campaign: one personalised SMS per recipient, charged at once."""
    from hub.campaigns.campaigns import create_campaign

    send_at = send_time(at)
    body = text_arg(text) if text is not None else None
    if (body is None) == (template is None):
        fail("give the campaign --text or --template (one of them)")
    if preview:
        _show_preview(account, template, body, list_names, to, type_, sender, track_links, as_json)
        if not as_json:
            typer.echo("preview only: nothing was sent")
        return
    config = get_config()
    result = run_db(
        lambda s: create_campaign(
            s,
            config,
            _acc(s, account),
            name,
            text=body,
            template=template,
            lists=list_names or [],
            numbers=to or [],
            type=type_,
            sender=sender,
            send_at=send_at,
            track_links=track_links,
        )
    )
    data = result.to_dict()
    if as_json:
        emit(data, True)
    else:
        _print_campaign(data)


def _print_campaign(data: dict[str, Any]) -> None:
    when = f"scheduled for {data['send_at']}" if data["status"] == "scheduled" else "sending"
    typer.echo(
        f"campaign {data['id']} {data['name']!r}: {data['recipients']} SMS, "
        f"{data['credits']} credits, {when}; balance {data['balance_after']}"
    )
    if data["track_links"]:
        typer.echo("links: a short link per recipient (clicks in `smshub campaigns report`)")
    for r in data["rejected"]:
        typer.echo(f"  {r['input']} left out ({r['reason']})")
    for w in data["warnings"]:
        typer.echo(f"warning: {w}")


@campaigns_app.command("list")
def campaigns_list(account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """Campaigns, newest first."""
    from hub.campaigns.campaigns import list_campaigns

    data = run_db(lambda s: list_campaigns(s, account))
    emit(
        data,
        as_json,
        table(
            [
                [
                    d["id"],
                    d["name"][:30],
                    d["status"],
                    (d["send_at"] or d["created_at"])[:19],
                    d["recipients"],
                    d["credits"],
                ]
                for d in data
            ],
            ["ID", "NAME", "STATUS", "AT (UTC)", "SMS", "CREDITS"],
        )
        if data
        else "no campaigns yet; create one with `smshub campaigns create`",
    )


@campaigns_app.command("report")
@campaigns_app.command("show")
def campaigns_show(campaign_id: int, account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """The campaign report: messages by status, credits, clicks (unique clickers, click
    rate, first click, devices and systems; link previews counted apart), and who opted out
    since (STOP reply, unsubscribe link) with the date."""
    from hub.campaigns.campaigns import campaign_report

    data = run_db(lambda s: campaign_report(s, campaign_id, account))
    lines = [
        f"campaign {data['id']} {data['name']!r} ({data['account']}): {data['status']}",
        f"type {data['type']}, sender {data['sender'] or '(default)'}, "
        f"send at {data['send_at'] or data['created_at']}",
        f"{data['recipients']} SMS: "
        + ", ".join(f"{n} {s}" for s, n in data["counts"].items() if n),
        f"credits: {data['credits_charged']} charged, {data['credits_refunded']} refunded, "
        f"{data['credits_net']} net",
        *_click_lines(data),
        f"opted out since: {data['opted_out']} recipient(s)",
        *(f"  {o['number']} STOP {o['stop_at']} ({o['source']})" for o in data["opt_outs"]),
        "text: " + data["text"],
    ]
    emit(data, as_json, "\n".join(lines))


def _click_lines(data: dict[str, Any]) -> list[str]:
    """The click part of `smshub campaigns report`."""
    if not data["track_links"] and not data["clicks"] and not data["bot_clicks"]:
        return ["clicks: not tracked (create the campaign with --track-links)"]
    lines = [
        f"clicks: {data['clicks']} by {data['unique_clickers']} recipient(s), click rate "
        f"{data['click_rate']:.1%}, first click {data['first_click_at'] or '-'}"
    ]
    for key, label in (("devices", "devices"), ("os", "systems"), ("browsers", "browsers")):
        if data[key]:
            lines.append(
                f"  {label}: "
                + ", ".join(f"{d['name']} {d['clicks']} ({d['clickers']})" for d in data[key])
            )
    if data["bot_clicks"]:
        lines.append(
            f"  link previews and bots (not counted): {data['bot_clicks']} ("
            + ", ".join(f"{d['name']} {d['clicks']}" for d in data["bots"])
            + ")"
        )
    return lines


@campaigns_app.command("cancel")
def campaigns_cancel(
    campaign_id: int, account: AccountOpt = None, as_json: JsonOpt = False
) -> None:
    """Cancel a campaign that has not started sending; its credits are refunded."""
    from hub.campaigns.campaigns import cancel_campaign

    data = run_db(lambda s: cancel_campaign(s, campaign_id, account))
    emit(
        data,
        as_json,
        f"campaign {campaign_id} cancelled: {data['cancelled']} SMS, "
        f"{data['credits_refunded']} credits refunded",
    )


@campaigns_app.command("export")
def campaigns_export(
    campaign_id: int,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    account: AccountOpt = None,
) -> None:
    """Per-recipient CSV: number, status, reason, parts, credits, times, clicks, text, and
    the STOP date of those who opted out since."""
    from hub.campaigns.campaigns import export_campaign

    data = run_db(lambda s: export_campaign(s, campaign_id, account))
    _write_or_print(data, output, f"campaign {campaign_id}")
