"""`smshub invalid ...`: the invalid-number (NPAI) lists.

A number reported ``invalid_number`` in two consecutive sends of an account goes on that
account's list (see hub.sending.reports); later sends of the account and of its sub-accounts leave
it out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, get_config, read_bytes, run_db, table

invalid_app = typer.Typer(
    help="Invalid numbers (NPAI): reported invalid twice in a row, left out of sends.",
    no_args_is_help=True,
)


@invalid_app.command("list")
def invalid_list(
    account: Annotated[
        str | None, typer.Option(help="Only this account's list (not its parents').")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List invalid numbers, per account."""
    from hub.sending.accounts import get_account
    from hub.sending.invalid_numbers import entries

    def _do(session: Any) -> list[dict[str, Any]]:
        ids = [get_account(session, account).id or 0] if account else None
        return [
            {"account": name, "number": row.number, "created_at": row.created_at}
            for row, name in entries(session, ids)
        ]

    data = run_db(_do)
    text = table(
        [[d["account"], d["number"], d["created_at"]] for d in data],
        ["ACCOUNT", "NUMBER", "LISTED AT"],
    )
    emit(data, as_json, text if data else "no invalid numbers")


@invalid_app.command("remove")
def invalid_remove(
    number: Annotated[str, typer.Argument(help="The number, any usual format.")],
    account: Annotated[str, typer.Option(help="The account whose list holds it.")],
) -> None:
    """Take a number off an account's invalid list, so its sends go out again."""
    from hub.sending.accounts import get_account
    from hub.sending.invalid_numbers import remove_number

    def _do(session: Any) -> tuple[str, str]:
        acc = get_account(session, account)
        return remove_number(session, acc, number, get_config().hub.default_region), acc.name

    e164, name = run_db(_do)
    typer.echo(f"{e164} removed from the invalid list of account {name}")


def _print_added(report: Any, as_json: bool, what: str) -> None:
    lines = [f"{what}: {report.summary()}"]
    lines += [f"  line {r.line}: {r.input!r} left out ({r.reason})" for r in report.rejected]
    emit(report.to_dict(), as_json, "\n".join(lines))
    if report.rejected and not (report.added or report.already):
        raise typer.Exit(1)


@invalid_app.command("add")
def invalid_add(
    numbers: Annotated[list[str], typer.Argument(help="Numbers, any usual format.")],
    account: Annotated[str, typer.Option(help="The account whose list gets them.")],
    as_json: JsonOpt = False,
) -> None:
    """Put numbers on an account's invalid list by hand: its sends (and its sub-accounts')
    leave them out. Inputs that are not numbers are listed; the others are added."""
    from hub.sending.accounts import get_account
    from hub.sending.invalid_numbers import add_numbers

    region = get_config().hub.default_region
    report = run_db(
        lambda s: add_numbers(s, get_account(s, account), list(enumerate(numbers, 1)), region)
    )
    _print_added(report, as_json, f"invalid list of {account}")


@invalid_app.command("import")
def invalid_import(
    file: Annotated[
        Path, typer.Argument(help="CSV, TXT, XLSX or XLS: numbers in the first column.")
    ],
    account: Annotated[str, typer.Option(help="The account whose list gets them.")],
    as_json: JsonOpt = False,
) -> None:
    """Import numbers onto an account's invalid list, read as `smshub contacts import` reads
    files (a title row is skipped); each line that is not a number is reported."""
    from hub.sending.accounts import get_account
    from hub.sending.invalid_numbers import import_file

    data = read_bytes(file)
    region = get_config().hub.default_region
    report = run_db(lambda s: import_file(s, get_account(s, account), data, file.name, region))
    _print_added(report, as_json, f"{file.name} ({report.format}) → invalid list of {account}")


@invalid_app.command("add-campaign")
def invalid_add_campaign(
    campaign_id: Annotated[int, typer.Argument(help="The campaign (see `smshub campaigns list`).")],
    as_json: JsonOpt = False,
) -> None:
    """Put every number a campaign's sends were reported invalid for on the list of the
    campaign's account."""
    from hub.campaigns.campaigns import get_campaign
    from hub.sending.invalid_numbers import add_campaign_invalid
    from hub.store.models import Account

    def _do(session: Any) -> Any:
        campaign = get_campaign(session, campaign_id)
        account = session.get(Account, campaign.account_id)
        return add_campaign_invalid(session, account, campaign_id)

    _print_added(run_db(_do), as_json, f"invalid numbers of campaign {campaign_id}")
