"""`smshub templates ...`: saved SMS texts with merge fields, their preview and a free test.

``show_preview`` prints what a personalised send would cost; `campaigns create --preview` uses it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import (
    AccountOpt,
    JsonOpt,
    SenderOpt,
    emit,
    fail,
    get_config,
    merge_fields,
    run_on_account,
    table,
    text_arg,
)

templates_app = typer.Typer(
    help="Saved SMS texts with merge fields ({{ first_name }}, {{ number }}, ...).",
    no_args_is_help=True,
)


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
    data = run_on_account(
        account,
        lambda s, acc: template_view(create_template(s, acc, name, body, replace=replace)),
    )
    fields = ", ".join(data["fields"]) or "none"
    emit(data, as_json, f"template {data['name']} saved (merge fields: {fields})")


@templates_app.command("list")
def templates_list(account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """The account's templates."""
    from hub.campaigns.templates import list_templates, template_view

    data = run_on_account(
        account, lambda s, acc: [template_view(t) for t in list_templates(s, acc)]
    )
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

    data = run_on_account(account, lambda s, acc: template_view(get_template(s, acc, name)))
    emit(data, as_json, f"{data['text']}\n(merge fields: {', '.join(data['fields']) or 'none'})")


@templates_app.command("delete")
def templates_delete(name: str, account: AccountOpt = None) -> None:
    """Delete a template (campaigns keep their own copy of the text)."""
    from hub.campaigns.templates import delete_template

    run_on_account(account, lambda s, acc: delete_template(s, acc, name))
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


def show_preview(
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

    def _do(session: Any, acc: Any) -> dict[str, Any]:
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

    data = run_on_account(account, _do)
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
    show_preview(account, name, source, list_names, to, type_, sender, None, as_json)


@templates_app.command("test")
def templates_test(
    name: str,
    to: Annotated[str, typer.Option("--to", help="The account's own number.")],
    field: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE for a merge field; repeatable.")
    ] = None,
    type_: Annotated[str, typer.Option("--type", help="alert or marketing.")] = "alert",
    sender: SenderOpt = None,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the template once, free, to the account's own number to see it on a phone."""
    from hub.campaigns.templates import send_test

    fields = merge_fields(field)
    result = run_on_account(
        account,
        lambda s, acc: send_test(
            s,
            get_config(),
            acc,
            name,
            to,
            fields=fields,
            type=type_,
            sender=sender,
        ),
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
