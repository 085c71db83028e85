"""`smshub files ...` and `smshub links ...`: hosted files, short links and their clicks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, fail, get_config, run_db, table

files_app = typer.Typer(
    help="Files (PNG, GIF, JPEG, PDF) hosted by the hub behind short links.", no_args_is_help=True
)
links_app = typer.Typer(help="Short links and who clicked them.", no_args_is_help=True)


@files_app.command("upload")
def files_upload(
    account: Annotated[str, typer.Argument(help="The account that owns the file.")],
    file: Annotated[Path, typer.Argument(help="A PNG, GIF, JPEG or PDF file.")],
    as_json: JsonOpt = False,
) -> None:
    """Host FILE and print its short link (put it in an SMS)."""
    from hub.campaigns import links
    from hub.sending.accounts import get_account

    config = get_config()
    limit = links.max_file_size(config)
    try:
        with file.open("rb") as handle:
            # One byte past the limit is enough to refuse it with the right message.
            data = handle.read(limit + 1)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")

    def _do(session: Any) -> dict[str, Any]:
        owner = get_account(session, account)
        assert owner.id is not None
        hosted, link = links.upload(session, config, owner.id, file.name, data)
        return links.file_view(config, hosted, link)

    data_out = run_db(_do)
    emit(data_out, as_json, data_out["short_url"])


@links_app.command("shorten")
def links_shorten(
    account: Annotated[str, typer.Argument(help="The account that owns the link.")],
    url: Annotated[str, typer.Argument(help="The http(s) URL to shorten.")],
    as_json: JsonOpt = False,
) -> None:
    """Make a short link to URL and print it; its clicks are counted."""
    from hub.campaigns import links
    from hub.sending.accounts import get_account

    config = get_config()

    def _do(session: Any) -> dict[str, Any]:
        owner = get_account(session, account)
        assert owner.id is not None
        return links.link_view(config, links.shorten(session, owner.id, url), 0)

    data = run_db(_do)
    emit(data, as_json, data["short_url"])


@links_app.command("clicks")
def links_clicks(
    account: Annotated[
        str | None, typer.Option(help="Only this account's links (and its sub-accounts').")
    ] = None,
    code: Annotated[str | None, typer.Option(help="Only this short link.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List clicks on short links: when, which link, which number, which device and OS (read
    from the browser string by ua-parser; link previews and crawlers show as bots)."""
    from sqlmodel import col, select

    from hub.campaigns import links
    from hub.core.timeutil import as_utc
    from hub.sending.accounts import descendant_ids, get_account
    from hub.store.models import Account, HostedFile, LinkClick, ShortLink

    config = get_config()

    def _do(session: Any) -> list[dict[str, Any]]:
        query = (
            select(LinkClick, ShortLink, Account.name, HostedFile.name)
            .join(ShortLink, col(ShortLink.id) == col(LinkClick.link_id))
            .join(Account, col(Account.id) == col(ShortLink.account_id))
            .outerjoin(HostedFile, col(HostedFile.id) == col(ShortLink.file_id))
        )
        if account:
            scope = descendant_ids(session, get_account(session, account))
            query = query.where(col(ShortLink.account_id).in_(scope))
        if code:
            query = query.where(ShortLink.code == code)
        rows = session.exec(query.order_by(col(LinkClick.id).desc()).limit(limit)).all()
        return [
            {
                "at": as_utc(click.clicked_at).isoformat(),
                "account": owner,
                "code": link.code,
                "short_url": links.short_url(config, link.code),
                "target": link.target_url or None,
                "file": file_name,
                "message_id": link.message_id,
                "number": click.number,
                "user_agent": click.user_agent,
                "device": click.device_family,
                "os": click.os_family,
                "browser": click.browser_family,
                "bot": click.bot,
            }
            for click, link, owner, file_name in rows
        ]

    data = run_db(_do)
    emit(
        data,
        as_json,
        table(
            [
                [
                    d["at"][:19],
                    d["account"],
                    d["code"],
                    d["number"] or "-",
                    (d["target"] or f"file {d['file']}")[:40],
                    "bot " + d["browser"] if d["bot"] else f"{d['device']} / {d['os']}",
                ]
                for d in data
            ],
            ["AT (UTC)", "ACCOUNT", "CODE", "NUMBER", "TARGET", "DEVICE / OS"],
        )
        if data
        else "no clicks yet",
    )
