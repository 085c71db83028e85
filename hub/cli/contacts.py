"""`smshub contacts ...` and `smshub lists ...`: import contacts into lists, and the lists.

Each command runs in one transaction (``run_on_account``); ``--account`` may be left out
when there is only one main account.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.common import (
    AccountOpt,
    JsonOpt,
    OutputOpt,
    emit,
    fail,
    get_config,
    merge_fields,
    read_bytes,
    run_on_account,
    table,
    write_or_print,
)

contacts_app = typer.Typer(help="Import contacts into lists.", no_args_is_help=True)
lists_app = typer.Typer(
    help="Contact lists (list:NAME in a mail subject, --list in campaigns).", no_args_is_help=True
)


def _region() -> str:
    return get_config().hub.default_region


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
    report = run_on_account(
        account,
        lambda s, acc: import_contacts(
            s,
            acc,
            list_name,
            data,
            file.name,
            preview=preview,
            region=_region(),
            max_rows=limits.max_import_rows,
        ),
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

    data = run_on_account(account, list_summaries)
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

    def _do(session: Any, acc: Any) -> dict[str, Any]:
        found = get_list(session, acc, name)
        members = list_members(session, acc.id, found.name)
        return {
            "name": found.name,
            "contacts": len(members),
            "fields": field_names(members),
            "members": [{"number": n, **f} for n, f in members[:limit]],
        }

    data = run_on_account(account, _do)
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

    fields = merge_fields(field)
    report = run_on_account(
        account,
        lambda s, acc: add_numbers(s, acc, name, numbers, region=_region(), fields=fields),
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

    report = run_on_account(
        account, lambda s, acc: remove_numbers(s, acc, name, numbers, region=_region())
    )
    data = {"removed": report.removed, "not_found": [asdict(r) for r in report.not_found]}
    lines = [f"{len(report.removed)} removed from {name}"]
    lines += [f"  {r.input!r}: {r.reason}" for r in report.not_found]
    emit(data, as_json, "\n".join(lines), ok=bool(report.removed))


@lists_app.command("export")
def lists_export(
    name: str,
    output: OutputOpt = None,
    account: AccountOpt = None,
) -> None:
    """Export a list as CSV (number, then one column per merge field)."""
    from hub.campaigns.contacts import export_list

    data = run_on_account(account, lambda s, acc: export_list(s, acc, name))
    write_or_print(data, output, f"list {name}")


@lists_app.command("delete")
def lists_delete(name: str, account: AccountOpt = None) -> None:
    """Delete a list and its contacts (messages already sent are kept)."""
    from hub.campaigns.contacts import delete_list

    count = run_on_account(account, lambda s, acc: delete_list(s, acc, name))
    typer.echo(f"list {name} deleted with its {count} contact(s)")
