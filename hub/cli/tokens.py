"""`smshub tokens ...`: API tokens, shown once and stored hashed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, run_db, table

tokens_app = typer.Typer(help="API tokens (shown once, stored hashed).", no_args_is_help=True)


@tokens_app.command("create")
def tokens_create(
    account: str,
    name: Annotated[str, typer.Option(help="A label, e.g. the app using it.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token for ACCOUNT; it is printed once and stored only as a hash."""
    from hub.sending.accounts import create_token

    def _do(session: Any) -> dict[str, Any]:
        new = create_token(session, account, name)
        return {
            "id": new.record.id,
            "token": new.token,
            "prefix": new.record.prefix,
            "account": account,
        }

    data = run_db(_do)
    emit(
        data,
        as_json,
        f"{data['token']}\n(token {data['id']} for {account}; "
        "store it now, it cannot be shown again)",
    )


@tokens_app.command("revoke")
def tokens_revoke(token: Annotated[str, typer.Argument(help="Token id or its prefix.")]) -> None:
    """Revoke an API token."""
    from hub.sending.accounts import revoke_token

    record = run_db(lambda s: revoke_token(s, token))
    typer.echo(f"token {record.id} ({record.prefix}…) revoked")


@tokens_app.command("list")
def tokens_list(
    account: Annotated[str | None, typer.Option()] = None, as_json: JsonOpt = False
) -> None:
    """List API tokens (prefixes only)."""
    from sqlmodel import select

    from hub.sending.accounts import get_account
    from hub.store.models import ApiToken

    def _do(session: Any) -> list[dict[str, Any]]:
        query = select(ApiToken)
        if account:
            query = query.where(ApiToken.account_id == get_account(session, account).id)
        return [
            {
                "id": t.id,
                "prefix": t.prefix,
                "name": t.name,
                "account_id": t.account_id,
                "revoked": t.revoked_at is not None,
            }
            for t in session.exec(query).all()
        ]

    data = run_db(_do)
    emit(
        data,
        as_json,
        table(
            [
                [d["id"], d["prefix"] + "…", d["name"], "revoked" if d["revoked"] else ""]
                for d in data
            ],
            ["ID", "PREFIX", "NAME", ""],
        ),
    )
