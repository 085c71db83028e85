"""`smshub blacklist ...`: numbers an account never sends to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, get_config, read_bytes, run_db, table

blacklist_app = typer.Typer(
    help="Numbers an account never sends to (STOP and manual opt-outs).", no_args_is_help=True
)


@blacklist_app.command("list")
def blacklist_list(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List blacklisted numbers with when and why."""
    from hub.sending.accounts import get_account
    from hub.sending.optout import blacklist_entries

    def _do(session: Any) -> list[dict[str, Any]]:
        ids = [get_account(session, account).id or 0] if account else None
        return [
            {
                "account": name,
                "number": e.number,
                "source": e.source,
                "note": e.note,
                "since": e.created_at.isoformat(),
            }
            for e, name in blacklist_entries(session, ids)
        ]

    data = run_db(_do)
    emit(
        data,
        as_json,
        table(
            [
                [d["account"], d["number"], d["source"], d["since"][:19], d["note"][:40]]
                for d in data
            ],
            ["ACCOUNT", "NUMBER", "SOURCE", "SINCE (UTC)", "NOTE"],
        ),
    )


@blacklist_app.command("add")
def blacklist_add(
    account: str,
    numbers: Annotated[list[str], typer.Argument(help="Numbers in any format.")],
    note: Annotated[str, typer.Option(help="Why (kept with each entry).")] = "",
) -> None:
    """Blacklist numbers by hand."""
    from hub.sending.optout import add_numbers

    region = get_config().hub.default_region
    report = run_db(
        lambda s: add_numbers(s, account, numbers, source="manual", note=note, region=region)
    )
    _print_import(report)


@blacklist_app.command("import")
def blacklist_import(
    account: str,
    file: Annotated[Path, typer.Argument(help="CSV or TXT; the number is in the first column.")],
    note: Annotated[str, typer.Option(help="Why (kept with each entry).")] = "",
) -> None:
    """Blacklist every number of a file; lines that are not numbers are reported."""
    from hub.sending.optout import add_numbers, numbers_in_file

    region = get_config().hub.default_region
    numbers = numbers_in_file(read_bytes(file))
    report = run_db(
        lambda s: add_numbers(
            s,
            account,
            numbers,
            source="import",
            note=note or f"import of {file.name}",
            region=region,
        )
    )
    _print_import(report)


def _print_import(report: Any) -> None:
    typer.echo(f"{report.added} added, {report.already} already on the blacklist")
    for line, raw, why in report.rejected or []:
        typer.echo(f"  line {line}: {raw!r} left out ({why})")


@blacklist_app.command("remove")
def blacklist_remove(
    account: str,
    number: str,
    reason: Annotated[str, typer.Option(help="The recorded consent: who asked, how, when.")],
) -> None:
    """Take a number off the blacklist; the consent reason is recorded."""
    from hub.sending.optout import remove_number

    region = get_config().hub.default_region
    run_db(lambda s: remove_number(s, account, number, reason, region))
    typer.echo(f"{number} removed from the blacklist of {account}")
