"""`smshub invalid ...`: the invalid-number (NPAI) lists.

A number reported ``invalid_number`` in two consecutive sends of an account goes on that
account's list (see hub.reports); later sends of the account and of its sub-accounts leave
it out. hub.cli imports this module at its bottom and mounts ``invalid_app``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

invalid_app = typer.Typer(
    help="Invalid numbers (NPAI): reported invalid twice in a row, left out of sends.",
    no_args_is_help=True,
)

_JSON = typer.Option("--json", help="Print JSON instead of text.")


@invalid_app.command("list")
def invalid_list(
    account: Annotated[
        str | None, typer.Option(help="Only this account's list (not its parents').")
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """List invalid numbers, per account."""
    from sqlmodel import col, select

    from hub.accounts import get_account
    from hub.cli import _table, emit, run_db
    from hub.models import Account, InvalidNumber

    def _do(session: Any) -> list[dict[str, Any]]:
        query = (
            select(InvalidNumber, Account)
            .join(Account, col(Account.id) == col(InvalidNumber.account_id))
            .order_by(col(Account.name), col(InvalidNumber.number))
        )
        if account:
            query = query.where(InvalidNumber.account_id == get_account(session, account).id)
        return [
            {"account": acc.name, "number": row.number, "created_at": row.created_at}
            for row, acc in session.exec(query).all()
        ]

    data = run_db(_do)
    text = _table(
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
    from sqlmodel import select

    from hub import phone
    from hub.accounts import get_account
    from hub.cli import get_config, run_db
    from hub.errors import InvalidInput, NotFound
    from hub.models import InvalidNumber

    def _do(session: Any) -> tuple[str, str]:
        acc = get_account(session, account)
        info = phone.parse_number(number, acc.default_region or get_config().hub.default_region)
        if info.e164 is None:
            raise InvalidInput(f"{number!r} is not a phone number: {info.reason}")
        row = session.exec(
            select(InvalidNumber).where(
                InvalidNumber.account_id == acc.id, InvalidNumber.number == info.e164
            )
        ).first()
        if row is None:
            raise NotFound(
                f"{info.e164} is not on the invalid list of account {acc.name!r} "
                "(see `smshub invalid list`)"
            )
        session.delete(row)
        return info.e164, acc.name

    e164, name = run_db(_do)
    typer.echo(f"{e164} removed from the invalid list of account {name}")
